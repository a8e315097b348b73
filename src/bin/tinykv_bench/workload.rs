//! What each request does: the operation mix, the keys and the values.
//!
//! Every choice comes from a seeded RNG, one per client ([`client_rng`]), so a run is
//! reproducible in what it asks for (not, of course, in how the system answers). Keys are
//! `<prefix><index>` with the index zero-padded to the width of the largest index, so
//! their byte order is their numeric order and every key of a key space has the same
//! length. Indexes are drawn uniformly. Values are slices of one random buffer made at
//! start-up ([`ValuePool`]): cheap (no allocation or randomness per request, which would
//! steal CPU from the systems under test on a small machine) yet not all alike.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The kind of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A point read.
    Read,
    /// A put (an insert or an update).
    Write,
    /// A transfer between two keys in a transaction: read both, then write both if
    /// neither changed since (retried until it commits).
    Transfer,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 3] = [OpKind::Read, OpKind::Write, OpKind::Transfer];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Transfer => "transfer",
        }
    }

    /// Position in [`OpKind::ALL`].
    pub fn index(self) -> usize {
        match self {
            OpKind::Read => 0,
            OpKind::Write => 1,
            OpKind::Transfer => 2,
        }
    }
}

/// Chooses reads and writes in a fixed proportion, or only transfers.
#[derive(Debug, Clone, Copy)]
pub struct OpMix {
    read_ratio: f64,
    transfers: bool,
}

impl OpMix {
    /// A mix with this fraction of reads (clamped to `[0, 1]`).
    pub fn new(read_ratio: f64) -> OpMix {
        OpMix {
            read_ratio: read_ratio.clamp(0.0, 1.0),
            transfers: false,
        }
    }

    /// Only transfers.
    pub fn transfers() -> OpMix {
        OpMix {
            read_ratio: 0.0,
            transfers: true,
        }
    }

    /// The next operation's kind.
    pub fn next(&self, rng: &mut impl Rng) -> OpKind {
        if self.transfers {
            return OpKind::Transfer;
        }
        // Exact at the ends: 0.0 never reads, 1.0 always reads.
        if rng.gen::<f64>() < self.read_ratio {
            OpKind::Read
        } else {
            OpKind::Write
        }
    }
}

/// The keys a run touches.
#[derive(Debug, Clone)]
pub struct KeySpace {
    prefix: String,
    count: u64,
    width: usize,
}

impl KeySpace {
    /// `count` keys (at least one) named `prefix` + zero-padded index.
    pub fn new(prefix: &str, count: u64) -> KeySpace {
        let count = count.max(1);
        KeySpace {
            prefix: prefix.to_string(),
            count,
            width: (count - 1).to_string().len(),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// The key of `index` (taken modulo the key space size).
    pub fn key(&self, index: u64) -> String {
        format!(
            "{}{:0width$}",
            self.prefix,
            index % self.count,
            width = self.width
        )
    }

    /// A uniformly chosen key.
    pub fn random_key(&self, rng: &mut impl Rng) -> String {
        self.key(rng.gen_range(0..self.count))
    }
}

/// Values of a fixed size, sliced from one random buffer.
#[derive(Debug, Clone)]
pub struct ValuePool {
    buffer: Bytes,
    size: usize,
}

/// How many distinct starting offsets the pool offers.
const POOL_SPREAD: usize = 4096;

impl ValuePool {
    /// A pool of `size`-byte values of printable ASCII, made from `seed`.
    pub fn new(size: usize, seed: u64) -> ValuePool {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0f7a_1e55);
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let buffer: Vec<u8> = (0..size + POOL_SPREAD)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
            .collect();
        ValuePool {
            buffer: Bytes::from(buffer),
            size,
        }
    }

    /// A value (a zero-copy slice of the pool).
    pub fn value(&self, rng: &mut impl Rng) -> Bytes {
        let start = rng.gen_range(0..POOL_SPREAD);
        self.buffer.slice(start..start + self.size)
    }
}

/// The RNG of client `client` of a run seeded with `seed`: distinct, well-mixed streams
/// (splitmix64 of the pair) that do not depend on how many clients there are.
pub fn client_rng(seed: u64, client: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix64(
        seed ^ splitmix64(client.wrapping_add(0x9e37_79b9)),
    ))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_fraction(ratio: f64, seed: u64, n: usize) -> f64 {
        let mix = OpMix::new(ratio);
        let mut rng = client_rng(seed, 0);
        let reads = (0..n)
            .filter(|_| mix.next(&mut rng) == OpKind::Read)
            .count();
        reads as f64 / n as f64
    }

    #[test]
    fn mix_proportions() {
        for (ratio, tolerance) in [(0.5, 0.01), (0.95, 0.005)] {
            let got = read_fraction(ratio, 7, 100_000);
            assert!(
                (got - ratio).abs() < tolerance,
                "ratio {ratio}: got {got} reads"
            );
        }
        assert_eq!(read_fraction(1.0, 7, 10_000), 1.0);
        assert_eq!(read_fraction(0.0, 7, 10_000), 0.0);
    }

    #[test]
    fn mix_is_reproducible_per_seed() {
        let mix = OpMix::new(0.5);
        let draw = |seed, client| {
            let mut rng = client_rng(seed, client);
            (0..64).map(|_| mix.next(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, 3), draw(1, 3));
        assert_ne!(draw(1, 3), draw(2, 3));
        assert_ne!(draw(1, 3), draw(1, 4));
    }

    #[test]
    fn keys_are_padded_and_ordered() {
        let keys = KeySpace::new("bench-", 10_000);
        assert_eq!(keys.key(0), "bench-0000");
        assert_eq!(keys.key(42), "bench-0042");
        assert_eq!(keys.key(9_999), "bench-9999");
        assert_eq!(keys.key(10_000), "bench-0000", "wraps around");
        assert!(keys.key(99) < keys.key(100));
        assert_eq!(KeySpace::new("k", 1).key(5), "k0");
        assert_eq!(KeySpace::new("k", 11).key(3), "k03");
    }

    #[test]
    fn random_keys_stay_in_range_and_cover_it() {
        let keys = KeySpace::new("k", 100);
        let mut rng = client_rng(1, 0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let key = keys.random_key(&mut rng);
            assert_eq!(key.len(), 3);
            seen.insert(key);
        }
        assert_eq!(seen.len(), 100);
    }

    #[test]
    fn values_have_the_size_and_vary() {
        let pool = ValuePool::new(128, 1);
        let mut rng = client_rng(1, 0);
        let a = pool.value(&mut rng);
        let b = pool.value(&mut rng);
        assert_eq!((a.len(), b.len()), (128, 128));
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_alphanumeric));
        assert!(ValuePool::new(0, 1).value(&mut rng).is_empty());
    }
}
