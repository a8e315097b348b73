//! Measuring a region and choosing where to split it.
//!
//! A region's size is the bytes of the keys and values in its range, in all three client
//! column families. If it exceeds the maximum size, the split keys are the keys of the
//! `default` column family at which the running total of that column family passes each
//! multiple of the split size, so every part but the last holds about `split_size` bytes:
//! a region that grew far past the maximum (a bulk load) is cut into all its pieces by one
//! batch split, not halved again and again. A transactional key's versions are never
//! split apart: the cut goes before the key's first version ([`keys::split_point`]). At most [`MAX_SPLIT_KEYS`] keys are chosen;
//! the scan stops early once they are known and the maximum is exceeded. Runs on a
//! blocking thread.

use tinykv_proto::metapb;

use crate::engine::{Cf, Engine};
use crate::error::Result;
use crate::keys;

/// What a size check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes of data in the region (a lower bound if the scan stopped early).
    pub size: u64,
    /// Where to split, ascending; empty unless the region is too big.
    pub split_keys: Vec<Vec<u8>>,
    /// The region version the check ran against; a split proposal for another version is
    /// stale.
    pub region_version: u64,
}

/// Most split keys one check chooses (what is left splits at the next check).
pub const MAX_SPLIT_KEYS: usize = 64;

/// Measures `region` and picks split keys if it exceeds `max_size`.
pub fn check(
    engine: &Engine,
    region: &metapb::Region,
    max_size: u64,
    split_size: u64,
) -> Result<Outcome> {
    let (start, end) = (region.start_key.as_slice(), region.end_key.as_slice());
    let mut size = 0u64;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    let mut next_cut = split_size;
    engine.scan(Cf::Default, start, end, |k, v| {
        size += (k.len() + v.len()) as u64;
        // A transactional key splits before all of its versions.
        let point = keys::split_point(k);
        let past_last = candidates.last().is_none_or(|last| point > last.as_slice());
        if candidates.len() < MAX_SPLIT_KEYS && size > next_cut && point > start && past_last {
            candidates.push(point.to_vec());
            next_cut = size.saturating_add(split_size);
        }
        !(candidates.len() == MAX_SPLIT_KEYS && size > max_size)
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
    if size <= max_size {
        candidates.clear();
    }
    Ok(Outcome {
        size,
        split_keys: candidates,
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
        assert_eq!((small.size, small.split_keys), (100, vec![]));
        let big = check(&engine, &region, 90, 50).unwrap();
        // The running total passes 50 bytes at the sixth pair.
        assert_eq!(big.split_keys, vec![b"k5".to_vec()]);
        assert_eq!(big.region_version, 3);
        // Far past the maximum: a cut after every 25 bytes, at the third, sixth and ninth
        // pair (the first pair is the region's start and never a split key).
        let huge = check(&engine, &region, 40, 25).unwrap();
        let expected: Vec<Vec<u8>> = vec![b"k2".to_vec(), b"k5".to_vec(), b"k8".to_vec()];
        assert_eq!(huge.split_keys, expected);
    }
}
