//! Measuring a region and choosing where to split it.
//!
//! A region's size is the bytes of the keys and values in its range, in all three client
//! column families. If it exceeds the maximum size, the split key is the first key of the
//! `default` column family at which the running total of that column family exceeds the
//! split size, so the left part holds about `split_size` bytes. The scan stops early once
//! both the split key is known and the maximum is exceeded. Runs on a blocking thread.

use tinykv_proto::metapb;

use crate::engine::{Cf, Engine};
use crate::error::Result;

/// What a size check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes of data in the region (a lower bound if the scan stopped early).
    pub size: u64,
    /// Where to split, if the region is too big.
    pub split_key: Option<Vec<u8>>,
    /// The region version the check ran against; a split proposal for another version is
    /// stale.
    pub region_version: u64,
}

/// Measures `region` and picks a split key if it exceeds `max_size`.
pub fn check(
    engine: &Engine,
    region: &metapb::Region,
    max_size: u64,
    split_size: u64,
) -> Result<Outcome> {
    let (start, end) = (region.start_key.as_slice(), region.end_key.as_slice());
    let mut size = 0u64;
    let mut candidate = None;
    engine.scan(Cf::Default, start, end, |k, v| {
        size += (k.len() + v.len()) as u64;
        if candidate.is_none() && size > split_size && k != start {
            candidate = Some(k.to_vec());
        }
        !(candidate.is_some() && size > max_size)
    })?;
    for cf in [Cf::Lock, Cf::Write] {
        if size > max_size {
            break;
        }
        engine.scan(cf, start, end, |k, v| {
            size += (k.len() + v.len()) as u64;
            size <= max_size
        })?;
    }
    let split_key = if size > max_size { candidate } else { None };
    Ok(Outcome {
        size,
        split_key,
        region_version: region.region_epoch.map_or(0, |e| e.version),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Mutation;

    #[test]
    fn splits_only_past_max_size_at_the_split_size_point() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let region = metapb::Region {
            id: 1,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 3,
            }),
            ..Default::default()
        };
        // Ten pairs of 10 bytes each ("k0".."k9" + 8-byte values).
        let puts: Vec<Mutation> = (0..10)
            .map(|i| Mutation::Put {
                cf: Cf::Default,
                key: format!("k{i}").into_bytes(),
                value: vec![b'v'; 8],
            })
            .collect();
        engine.write(&puts, false).unwrap();
        let small = check(&engine, &region, 200, 50).unwrap();
        assert_eq!((small.size, small.split_key), (100, None));
        let big = check(&engine, &region, 90, 50).unwrap();
        // The running total passes 50 bytes at the sixth pair.
        assert_eq!(big.split_key, Some(b"k5".to_vec()));
        assert_eq!(big.region_version, 3);
    }
}
