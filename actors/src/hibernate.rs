//! Hibernation: a region nobody uses stops costing CPU.
//!
//! An awake peer ticks every `raft_base_tick_ms`, and a leader sends a heartbeat to each
//! follower every few ticks, which each answers: with thousands of regions that is most
//! of a core spent on nothing. After TiKV's "hibernate regions", a region with nothing to
//! do goes to sleep: its peers stop their tick timer, so the leader sends no heartbeats
//! and the followers count no election timeout, until a message or a request wakes them.
//!
//! **Going to sleep.** A leader that is quiet on a tick (its whole log committed and
//! applied, nothing proposed, read, forwarded, persisted, snapshotted or measured in
//! flight, no leadership transfer or membership change under way) asks each follower with
//! a [`MsgHibernateRequest`](tinykv_proto::raft_serverpb::ExtraMessageType) naming its
//! term and last log index. A follower agrees ([`follower_agrees`]) if that is its leader,
//! in its term, and its own log ends at that index with everything committed and applied;
//! it then sleeps itself. The leader sleeps once every follower agreed to the same round,
//! or is down: not heard from for [`DOWN_AFTER_ELECTION_TIMEOUTS`] election timeouts (a
//! dead store must not keep its regions awake on the others). A quorum must have agreed.
//!
//! **Waking.** Any raft message but these two, any command, or a wake-up from the node
//! wakes a peer: its timer starts again. A woken leader makes sure every follower hears
//! from it at once, which wakes them too: a region is awake within one round trip. A
//! woken follower makes sure its leader hears from it ([`MsgRegionWakeUp`]), so that the
//! leader's heartbeats resume before the follower's election timeout runs out. Usually
//! what woke the peer does that by itself: a write woken leader's append goes to every
//! follower, a follower's forwarded write or read goes to its leader. So a peer woken by
//! a command or by a follower's message announces itself (a leader's heartbeat round, a
//! follower's wake-up message) only if the ready that follows sends no such message; a
//! region written now and then sleeps between writes, and this spares each write a
//! round of heartbeats.
//!
//! **Elections stay correct.** A follower's election clock does not run while it sleeps,
//! so on waking it adds the ticks it slept ([`caught_up_election_elapsed`]), stopping one
//! tick short of the election timeout: it does not campaign (or let another win its vote)
//! on the instant it wakes, but after one more tick without news from its leader it
//! treats the leader as gone, as it would had it stayed awake. A sleeping leader dying is
//! thus noticed once someone needs the region, or once the node learns from the placement
//! driver that the leader's store is down and wakes the regions it led. A leader's read
//! lease is measured in wall-clock time and so expires during sleep as it would awake,
//! and check-quorum resumes with the leader's ticks: sleeping weakens no guarantee.
//!
//! **Restarting.** A store that starts over its data starts the peers of regions that
//! may sleep asleep: none of them ticks or campaigns until a message or a request wakes
//! it. A restarted follower has no leader to hear from yet, and were all of them awake,
//! ten thousand regions would time out together and campaign at once, waking every
//! region on every other store too: an election storm that keeps the whole cluster busy
//! (and its heartbeats late, which causes more elections) for minutes. Asleep, a region
//! costs nothing until it is used: a message from its leader wakes it as a follower of
//! that leader; a request wakes it knowing no leader (the store was down for an unknown
//! time), so it campaigns at once, which wakes the other peers; a live leader then keeps
//! its leadership (pre-vote fails against it) and its heartbeat makes the restarted peer
//! its follower, and a dead one is replaced. If the restarted peer led the region, its
//! followers, asked for their votes by the very peer they follow, know it leads no more
//! and grant them without waiting for their election clocks: the region is led again
//! within a few round trips of the first request. A region
//! whose leader was on the restarted store is led again when first used, or when the
//! placement driver, having found the store silent, has the other stores wake it. A
//! restarted peer left asleep still checks once, without waking anyone, that it is a
//! member of its region (see [`crate::msg::CheckMembership`]): one removed while its store
//! was down would hear of it from nobody.
//!
//! [`MsgRegionWakeUp`]: tinykv_proto::raft_serverpb::ExtraMessageType

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A follower not heard from for this many election timeouts counts as down: the leader
/// may sleep without its agreement.
pub const DOWN_AFTER_ELECTION_TIMEOUTS: u32 = 2;

/// A peer's hibernation state; see the module documentation.
#[derive(Debug, Default)]
pub struct Hibernation {
    asleep_since: Option<Instant>,
    /// Asleep since its store started: how long it went without news of its leader is
    /// unknown (the store was down before), so it wakes as after a long sleep.
    asleep_since_start: bool,
    /// Leader: the round asked, as (term, last index), and the followers that agreed.
    round: Option<(u64, u64)>,
    agreed: HashSet<u64>,
    /// Leader: when each follower was last heard from. Dropped while asleep (at ten
    /// thousand regions such maps are megabytes): after waking, a follower counts as heard
    /// from when the leader first asks it again.
    last_heard: HashMap<u64, Instant>,
    leading: bool,
}

impl Hibernation {
    /// Whether the peer sleeps.
    pub fn is_asleep(&self) -> bool {
        self.asleep_since.is_some()
    }

    /// Whether the peer leads (as last told by [`Hibernation::on_leadership`]).
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// Leader: whether a round of asking is open (opened on the last tick).
    pub fn round_is_open(&self) -> bool {
        self.round.is_some()
    }

    /// The peer goes to sleep at `now`.
    pub fn sleep(&mut self, now: Instant) {
        self.asleep_since.get_or_insert(now);
        self.round = None;
        self.agreed = HashSet::new();
        self.last_heard = HashMap::new();
    }

    /// The peer, loaded from disk as its store starts, begins asleep at `now`; when it
    /// wakes it counts as having slept longer than any election timeout.
    pub fn sleep_from_start(&mut self, now: Instant) {
        self.sleep(now);
        self.asleep_since_start = true;
    }

    /// The peer wakes at `now`; the whole ticks of `base_tick` it slept, or `None` if it
    /// was awake.
    pub fn wake(&mut self, now: Instant, base_tick: Duration) -> Option<usize> {
        let since = self.asleep_since.take()?;
        if std::mem::take(&mut self.asleep_since_start) {
            return Some(usize::MAX);
        }
        let slept = now.saturating_duration_since(since);
        Some((slept.as_nanos() / base_tick.as_nanos().max(1)) as usize)
    }

    /// The peer became leader (or stopped being one: `false`).
    pub fn on_leadership(&mut self, leading: bool) {
        self.leading = leading;
        self.last_heard.clear();
        self.round = None;
        self.agreed.clear();
    }

    /// A message from peer `from` arrived at `now`.
    pub fn heard_from(&mut self, from: u64, now: Instant) {
        if self.leading {
            self.last_heard.insert(from, now);
        }
    }

    /// Leader, quiet on a tick at `now`: the round for its `term` and `last_index` (a new
    /// one if either changed), and the followers still to ask. A follower seen here for
    /// the first time (a new leadership, a peer just added) counts as heard from now, so
    /// it has the whole down time to answer.
    pub fn ask(&mut self, term: u64, last_index: u64, followers: &[u64], now: Instant) -> Vec<u64> {
        for id in followers {
            self.last_heard.entry(*id).or_insert(now);
        }
        if self.round != Some((term, last_index)) {
            self.round = Some((term, last_index));
            self.agreed.clear();
        }
        followers
            .iter()
            .copied()
            .filter(|id| !self.agreed.contains(id))
            .collect()
    }

    /// Leader, not quiet: any round is over.
    pub fn cancel_round(&mut self) {
        self.round = None;
        self.agreed.clear();
    }

    /// Leader: follower `from` agreed to sleep at (`term`, `index`); counted if that is
    /// the round being asked.
    pub fn on_agreement(&mut self, from: u64, term: u64, index: u64) {
        if self.round == Some((term, index)) {
            self.agreed.insert(from);
        }
    }

    /// Leader: whether it may sleep now, with `followers` the other voters and
    /// `election_timeout` the raft timeout: a round is open, a quorum of the voters
    /// (counting the leader) agreed, and every follower that did not is down.
    pub fn leader_may_sleep(
        &self,
        followers: &[u64],
        now: Instant,
        election_timeout: Duration,
    ) -> bool {
        if self.round.is_none() {
            return false;
        }
        let voters = followers.len() + 1;
        let agreed = 1 + followers
            .iter()
            .filter(|id| self.agreed.contains(id))
            .count();
        if agreed <= voters / 2 {
            return false;
        }
        let down_after = election_timeout * DOWN_AFTER_ELECTION_TIMEOUTS;
        followers.iter().all(|id| {
            self.agreed.contains(id)
                || self
                    .last_heard
                    .get(id)
                    .is_some_and(|heard| now.saturating_duration_since(*heard) >= down_after)
        })
    }
}

/// What a follower knows of itself when asked to sleep.
#[derive(Debug, Clone, Copy)]
pub struct FollowerView {
    /// Its term.
    pub term: u64,
    /// The leader it follows (0: none).
    pub leader_id: u64,
    /// Its last log index.
    pub last_index: u64,
    /// Its commit index.
    pub committed: u64,
    /// Its applied index.
    pub applied: u64,
    /// Nothing is in flight (see the module documentation).
    pub quiet: bool,
}

/// Whether a follower agrees to sleep when `from` asks at (`term`, `index`): `from` is its
/// leader, in its term, and its log ends at `index`, all committed and applied.
pub fn follower_agrees(view: &FollowerView, from: u64, term: u64, index: u64) -> bool {
    view.quiet
        && from != 0
        && view.leader_id == from
        && view.term == term
        && view.last_index == index
        && view.committed == index
        && view.applied == index
}

/// A woken follower's election clock: `elapsed` plus the ticks it slept, but at most one
/// short of `election_timeout` (and never less than it was).
pub fn caught_up_election_elapsed(elapsed: usize, slept: usize, election_timeout: usize) -> usize {
    elapsed
        .saturating_add(slept)
        .min(election_timeout.saturating_sub(1))
        .max(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);
    const TIMEOUT: Duration = Duration::from_secs(1);

    fn view() -> FollowerView {
        FollowerView {
            term: 3,
            leader_id: 1,
            last_index: 10,
            committed: 10,
            applied: 10,
            quiet: true,
        }
    }

    #[test]
    fn a_follower_agrees_only_to_its_leader_in_its_term_holding_the_whole_log() {
        assert!(follower_agrees(&view(), 1, 3, 10));
        assert!(!follower_agrees(&view(), 2, 3, 10), "not its leader");
        assert!(!follower_agrees(&view(), 1, 4, 10), "another term");
        assert!(!follower_agrees(&view(), 1, 3, 11), "its log is shorter");
        assert!(!follower_agrees(&view(), 1, 3, 9), "its log is longer");
        let unapplied = FollowerView {
            applied: 9,
            ..view()
        };
        assert!(!follower_agrees(&unapplied, 1, 3, 10));
        let uncommitted = FollowerView {
            committed: 9,
            ..view()
        };
        assert!(!follower_agrees(&uncommitted, 1, 3, 10));
        let busy = FollowerView {
            quiet: false,
            ..view()
        };
        assert!(!follower_agrees(&busy, 1, 3, 10));
        let leaderless = FollowerView {
            leader_id: 0,
            ..view()
        };
        assert!(!follower_agrees(&leaderless, 0, 3, 10));
    }

    #[test]
    fn the_leader_sleeps_once_every_follower_agreed_to_the_same_round() {
        let now = Instant::now();
        let mut h = Hibernation::default();
        h.on_leadership(true);
        let followers = [2, 3];
        assert!(
            !h.leader_may_sleep(&followers, now, TIMEOUT),
            "no round yet"
        );
        assert_eq!(h.ask(5, 10, &followers, now), vec![2, 3]);
        h.on_agreement(2, 5, 10);
        assert_eq!(h.ask(5, 10, &followers, now), vec![3]);
        assert!(!h.leader_may_sleep(&followers, now, TIMEOUT), "3 is alive");
        h.on_agreement(3, 5, 9);
        assert!(
            !h.leader_may_sleep(&followers, now, TIMEOUT),
            "an old round"
        );
        h.on_agreement(3, 5, 10);
        assert!(h.leader_may_sleep(&followers, now, TIMEOUT));
        // A new entry starts a new round: earlier agreements no longer count.
        assert_eq!(h.ask(5, 11, &followers, now), vec![2, 3]);
        assert!(!h.leader_may_sleep(&followers, now, TIMEOUT));
        h.cancel_round();
        h.on_agreement(2, 5, 11);
        assert!(!h.leader_may_sleep(&followers, now, TIMEOUT));
    }

    #[test]
    fn a_down_follower_does_not_keep_the_region_awake_but_a_quorum_must_agree() {
        let start = Instant::now();
        let mut h = Hibernation::default();
        h.on_leadership(true);
        let followers = [2, 3];
        h.heard_from(2, start);
        h.ask(5, 10, &followers, start);
        h.on_agreement(2, 5, 10);
        let soon = start + TIMEOUT;
        assert!(!h.leader_may_sleep(&followers, soon, TIMEOUT));
        let later = start + TIMEOUT * DOWN_AFTER_ELECTION_TIMEOUTS;
        assert!(h.leader_may_sleep(&followers, later, TIMEOUT), "3 is down");
        // Hearing from 3 again makes it count.
        h.heard_from(3, later);
        assert!(!h.leader_may_sleep(&followers, later, TIMEOUT));
        // With both followers down, no quorum agreed: the leader stays awake (and
        // check-quorum makes it step down).
        let mut alone = Hibernation::default();
        alone.on_leadership(true);
        alone.ask(5, 10, &followers, start);
        assert!(!alone.leader_may_sleep(&followers, later, TIMEOUT));
        // A follower just added counts as heard from when first asked.
        let mut grown = Hibernation::default();
        grown.on_leadership(true);
        grown.ask(5, 10, &[2], start);
        grown.on_agreement(2, 5, 10);
        assert!(grown.leader_may_sleep(&[2], later, TIMEOUT));
        grown.ask(5, 10, &[2, 3], later);
        assert!(!grown.leader_may_sleep(&[2, 3], later, TIMEOUT));
        let much_later = later + TIMEOUT * DOWN_AFTER_ELECTION_TIMEOUTS;
        assert!(grown.leader_may_sleep(&[2, 3], much_later, TIMEOUT));
    }

    #[test]
    fn waking_reports_the_ticks_slept_once() {
        let start = Instant::now();
        let mut h = Hibernation::default();
        assert_eq!(h.wake(start, TICK), None);
        h.sleep(start);
        assert!(h.is_asleep());
        h.sleep(start + TICK * 3);
        assert_eq!(h.wake(start + TICK * 7 + TICK / 2, TICK), Some(7));
        assert!(!h.is_asleep());
        assert_eq!(h.wake(start + TICK * 9, TICK), None);
    }

    #[test]
    fn a_peer_asleep_since_its_store_started_wakes_with_its_election_clock_run_out() {
        let start = Instant::now();
        let mut h = Hibernation::default();
        h.sleep_from_start(start);
        assert!(h.is_asleep());
        // Woken at once, it still counts as having slept past any timeout ...
        let slept = h.wake(start, TICK).unwrap();
        assert_eq!(caught_up_election_elapsed(0, slept, 10), 9);
        // ... but only that once: a later sleep is measured again.
        h.sleep(start + TICK);
        assert_eq!(h.wake(start + TICK * 3, TICK), Some(2));
    }

    #[test]
    fn a_woken_follower_stops_one_tick_short_of_the_election_timeout() {
        assert_eq!(caught_up_election_elapsed(2, 3, 10), 5);
        assert_eq!(caught_up_election_elapsed(2, 300, 10), 9);
        assert_eq!(caught_up_election_elapsed(9, 0, 10), 9);
        // Never moves the clock back.
        assert_eq!(caught_up_election_elapsed(12, 5, 10), 12);
        assert_eq!(caught_up_election_elapsed(0, usize::MAX, 10), 9);
    }
}
