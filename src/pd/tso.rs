//! The timestamp oracle: strictly increasing cluster-wide timestamps from the PD leader.
//!
//! Transactions need a total order that every node agrees on: a start timestamp for what
//! a transaction reads, a commit timestamp for when its writes become visible. The PD
//! leader hands them out, as TiKV's PD does. A timestamp is a hybrid of wall-clock time
//! and a counter: the physical part is milliseconds since the Unix epoch, shifted left by
//! [`LOGICAL_BITS`], and the logical part counts the timestamps given out within that
//! millisecond. So a timestamp says roughly when it was taken, and up to 2^18 of them fit
//! in one millisecond.
//!
//! **Never backwards, not even across leaders.** Every timestamp a leadership hands out
//! has a physical part below a *limit* recorded through raft in the meta region
//! (`\xFFpd/tso-limit`). The limit is raised [`WINDOW_MS`] ahead of the clock before a
//! timestamp would reach it, so one raft write serves every request of a few seconds. A
//! new leadership reads the limit and starts at it (or at its clock, if later): above
//! anything the previous leader could have given. A clock that steps back does not make
//! timestamps go back either; they keep counting from the last one until the clock
//! catches up.
//!
//! The leadership itself is confirmed before each batch is handed out (see the PD
//! server): a deposed leader that has not noticed cannot give out timestamps lower than
//! its successor's later ones.

/// Bits of a timestamp that hold its logical part.
pub const LOGICAL_BITS: u32 = 18;

/// How many timestamps fit in one millisecond.
pub const LOGICAL_PER_MS: u64 = 1 << LOGICAL_BITS;

/// How far ahead of the clock the recorded limit is raised.
pub const WINDOW_MS: u64 = 3_000;

/// The limit is raised once a timestamp comes within this of it, before it is reached,
/// so that requests rarely wait for the write.
pub const RAISE_MARGIN_MS: u64 = WINDOW_MS / 3;

/// Most timestamps one request may take.
pub const MAX_BATCH: u64 = 1 << 16;

/// The timestamp of physical time `physical_ms` and logical count `logical`.
pub fn compose(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << LOGICAL_BITS) | logical
}

/// The physical (milliseconds) and logical parts of timestamp `ts`.
pub fn split(ts: u64) -> (u64, u64) {
    (ts >> LOGICAL_BITS, ts & (LOGICAL_PER_MS - 1))
}

/// A batch of consecutive timestamps: `first` and the `count - 1` after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamps {
    /// The first timestamp of the batch.
    pub first: u64,
    /// How many there are.
    pub count: u64,
}

impl Timestamps {
    /// The last timestamp of the batch.
    pub fn last(&self) -> u64 {
        self.first + self.count - 1
    }
}

/// What [`TimestampOracle::take`] needs before it can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The batch, already counted as given out.
    Given(Timestamps),
    /// The limit must first be raised to this, durably
    /// ([`TimestampOracle::limit_raised`]), and the request taken again.
    RaiseLimit(u64),
}

/// One leadership's oracle: where the next timestamp starts, and the recorded limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampOracle {
    /// Physical part of the next timestamp to give out.
    physical: u64,
    /// Logical part of the next timestamp to give out.
    logical: u64,
    /// The recorded limit: every timestamp given out has a physical part below it.
    limit: u64,
}

impl TimestampOracle {
    /// The oracle of a leadership that found `recorded_limit` in the meta region (0 if the
    /// cluster never gave out a timestamp): it starts at the limit, above anything given
    /// out before.
    pub fn resume(recorded_limit: u64) -> TimestampOracle {
        TimestampOracle {
            physical: recorded_limit,
            logical: 0,
            limit: recorded_limit,
        }
    }

    /// Takes `count` (1 to [`MAX_BATCH`]) consecutive timestamps at clock time `now_ms`, or
    /// says which limit must be recorded first.
    pub fn take(&mut self, count: u64, now_ms: u64) -> Take {
        debug_assert!((1..=MAX_BATCH).contains(&count));
        let (mut physical, mut logical) = if now_ms > self.physical {
            (now_ms, 0)
        } else {
            (self.physical, self.logical)
        };
        if logical + count > LOGICAL_PER_MS {
            physical += 1;
            logical = 0;
        }
        if physical + RAISE_MARGIN_MS >= self.limit {
            return Take::RaiseLimit(physical + WINDOW_MS);
        }
        self.physical = physical;
        self.logical = logical + count;
        Take::Given(Timestamps {
            first: compose(physical, logical),
            count,
        })
    }

    /// The limit is now recorded as `limit` (a raise never lowers it).
    pub fn limit_raised(&mut self, limit: u64) {
        self.limit = self.limit.max(limit);
    }

    /// The recorded limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `count` timestamps at `now`, raising the limit whenever asked.
    fn take(oracle: &mut TimestampOracle, count: u64, now: u64) -> (Timestamps, usize) {
        let mut raises = 0;
        loop {
            match oracle.take(count, now) {
                Take::Given(batch) => return (batch, raises),
                Take::RaiseLimit(limit) => {
                    assert!(limit > oracle.limit(), "a raise raises");
                    oracle.limit_raised(limit);
                    raises += 1;
                }
            }
        }
    }

    #[test]
    fn timestamps_increase_strictly_and_carry_the_clock() {
        let mut oracle = TimestampOracle::resume(0);
        let (a, raises) = take(&mut oracle, 1, 1_000_000);
        assert_eq!(raises, 1, "a fresh oracle records a limit first");
        assert_eq!(split(a.first), (1_000_000, 0));
        let (b, raises) = take(&mut oracle, 10, 1_000_000);
        assert_eq!(raises, 0, "within the window nothing is written");
        assert_eq!(b.first, a.last() + 1);
        assert_eq!(b.count, 10);
        // The clock moves on: the logical part starts again.
        let (c, _) = take(&mut oracle, 1, 1_000_005);
        assert_eq!(split(c.first), (1_000_005, 0));
        assert!(c.first > b.last());
    }

    #[test]
    fn a_clock_that_steps_back_does_not_take_timestamps_back() {
        let mut oracle = TimestampOracle::resume(0);
        let (a, _) = take(&mut oracle, 5, 2_000_000);
        let (b, _) = take(&mut oracle, 5, 1_999_000);
        assert_eq!(b.first, a.last() + 1);
    }

    #[test]
    fn a_full_millisecond_moves_to_the_next() {
        let mut oracle = TimestampOracle::resume(0);
        let (a, _) = take(&mut oracle, MAX_BATCH, 3_000_000);
        let (b, _) = take(&mut oracle, MAX_BATCH, 3_000_000);
        let (c, _) = take(&mut oracle, MAX_BATCH, 3_000_000);
        let (d, _) = take(&mut oracle, MAX_BATCH, 3_000_000);
        assert_eq!(split(d.last()), (3_000_000, LOGICAL_PER_MS - 1));
        let (e, _) = take(&mut oracle, 2, 3_000_000);
        assert_eq!(split(e.first), (3_000_001, 0));
        for (x, y) in [(a, b), (b, c), (c, d), (d, e)] {
            assert!(y.first > x.last());
        }
    }

    #[test]
    fn the_limit_is_raised_ahead_of_the_clock_and_bounds_every_timestamp() {
        let mut oracle = TimestampOracle::resume(0);
        let start = 5_000_000;
        let mut raises = 0;
        let mut last = 0;
        // Ten seconds of requests, one every millisecond.
        for now in start..start + 10_000 {
            let (batch, r) = take(&mut oracle, 3, now);
            raises += r;
            assert!(batch.first > last);
            last = batch.last();
            assert!(split(last).0 < oracle.limit(), "below the recorded limit");
        }
        // One raise per two seconds or so, not one per request.
        assert!((4..=7).contains(&raises), "{raises} raises");
    }

    #[test]
    fn a_new_leadership_starts_above_everything_the_last_one_gave() {
        let mut old = TimestampOracle::resume(0);
        let clock = 7_000_000;
        let (given, _) = take(&mut old, 100, clock);
        // The successor's clock is behind (or the same): it still starts above.
        let mut new = TimestampOracle::resume(old.limit());
        let (next, _) = take(&mut new, 1, clock - 500);
        assert!(next.first > given.last());
        assert!(split(next.first).0 >= old.limit());
    }
}
