//! The peer's one timer: raft ticks, and counted in ticks the raft-log garbage
//! collection, the size check that proposes splits, and the snapshot progress check.

use super::*;

impl Peer {
    /// raft-rs pauses a follower while a snapshot is on its way and only resumes when the
    /// follower answers; a snapshot lost in the network would pause it forever. A snapshot
    /// not acknowledged within a few election timeouts is reported failed, so raft sends a
    /// fresh one.
    pub(super) fn check_snapshot_progress(&mut self) {
        if !self.is_leader() {
            self.snapshot_waits.clear();
            return;
        }
        let patience = self.env.cfg.election_timeout() * 4;
        let now = Instant::now();
        let in_snapshot: Vec<u64> = self
            .raft
            .raft
            .prs()
            .iter()
            .filter(|(_, p)| p.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snapshot_waits.retain(|id, _| in_snapshot.contains(id));
        for id in in_snapshot {
            let since = *self.snapshot_waits.entry(id).or_insert(now);
            if now.duration_since(since) > patience {
                debug!(to = id, "snapshot not acknowledged, sending a new one");
                self.raft.report_snapshot(id, SnapshotStatus::Failure);
                self.snapshot_waits.remove(&id);
            }
        }
    }

    /// The log-GC tick: samples the commit-to-apply lag, checks snapshots in flight, and
    /// compacts the log if it is due ([`Peer::propose_log_compaction`]).
    pub(super) fn on_log_gc_tick(&mut self) {
        self.check_snapshot_progress();
        let lag = self.raft.raft.raft_log.committed;
        let lag = lag.saturating_sub(self.raft.store().applied_index());
        metrics::COMMIT_APPLY_LAG.observe(lag as f64);
        self.propose_log_compaction();
    }

    /// Leader only: proposes compacting the log once enough applied entries sit in it
    /// (`raft_log_gc_count_limit`) or the log holds enough bytes
    /// (`raft_log_gc_size_threshold`, or the hard `raft_log_gc_size_limit`). The
    /// compaction point is the lowest index every follower has, unless a follower lags so
    /// far that keeping the log for it would exceed a limit: then it compacts up to the
    /// applied index and the follower gets a snapshot.
    pub(super) fn propose_log_compaction(&mut self) {
        if !self.is_leader() || self.is_merging() || !self.log_gc_due() {
            return;
        }
        let storage = self.raft.store();
        let applied = storage.applied_index();
        let first = storage.first_log_index();
        let limit = self.env.cfg.raft_log_gc_count_limit;
        let over_size = self.log_size_hint >= self.env.cfg.raft_log_gc_size_limit;
        let min_match = self
            .raft
            .raft
            .prs()
            .iter()
            .map(|(_, p)| p.matched)
            .min()
            .unwrap_or(applied);
        let truncated = first - 1;
        let mut compact = applied.min(min_match);
        // A follower that lacks entries the log no longer holds needs a snapshot anyway;
        // one that holds exactly what was compacted before only needs the rest.
        let needs_snapshot = compact < truncated;
        if needs_snapshot || applied - compact >= limit || over_size {
            compact = applied;
        }
        if compact <= truncated {
            // Every follower still needs everything the log holds.
            return;
        }
        if let Some((proposed_term, proposed_index)) = self.compact_proposed {
            if proposed_term == self.term() && proposed_index > truncated {
                // The previous compaction has not applied yet.
                return;
            }
        }
        let Ok(term) = self.raft.raft.raft_log.term(compact) else {
            return;
        };
        let request = self.own_admin_command(AdminRequest {
            cmd_type: AdminCmdType::CompactLog as i32,
            compact_log: Some(CompactLogRequest {
                compact_index: compact,
                compact_term: term,
            }),
            ..Default::default()
        });
        let (callback, _) = tokio::sync::oneshot::channel();
        debug!(compact, first, applied, "proposing log compaction");
        self.compact_proposed = Some((self.term(), compact));
        self.propose_write(request, callback);
        self.schedule_ready();
    }

    /// Whether the log holds enough applied entries (`raft_log_gc_count_limit`) or bytes
    /// (`raft_log_gc_size_threshold` or `raft_log_gc_size_limit`) to compact.
    pub(super) fn log_gc_due(&self) -> bool {
        let storage = self.raft.store();
        let (applied, first) = (storage.applied_index(), storage.first_log_index());
        applied >= first
            && (applied - first >= self.env.cfg.raft_log_gc_count_limit
                || self.log_past_size_threshold())
    }

    /// Whether the log holds enough bytes to compact: `raft_log_gc_size_threshold`, or
    /// the hard `raft_log_gc_size_limit` if that is smaller.
    pub(super) fn log_past_size_threshold(&self) -> bool {
        let cfg = &self.env.cfg;
        self.log_size_hint
            >= cfg
                .raft_log_gc_size_threshold
                .min(cfg.raft_log_gc_size_limit)
    }

    /// Hands the deletion of the log entries up to `compacted` to the RaftLogGcWriter.
    ///
    /// The first compaction after this peer started deletes everything below the bound:
    /// a crash may have lost an earlier, unsynced deletion, leaving entries below the
    /// truncated index, and a range delete finds them (by scanning). Later ones delete the
    /// entries from the previous bound one key at a time, which costs no scan (unless
    /// there are more than [`MAX_POINT_DELETES`] of them).
    pub(super) fn delete_compacted_entries(&mut self, compacted: u64) {
        let region_id = self.region_id;
        let mutations = match self.log_deleted_below {
            Some(from) if from > compacted => return,
            Some(from) if compacted - from < MAX_POINT_DELETES => (from..=compacted)
                .map(|index| Mutation::Delete {
                    cf: Cf::Raft,
                    key: keys::raft_log_key(region_id, index),
                })
                .collect(),
            _ => vec![Mutation::DeleteRange {
                cf: Cf::Raft,
                start: keys::raft_log_key(region_id, 0),
                end: keys::raft_log_key(region_id, compacted + 1),
            }],
        };
        self.log_deleted_below = Some(compacted + 1);
        self.outbox.push(Effect::DeleteLog(LogGcTask {
            region_id,
            mutations,
        }));
    }

    /// Scales the log size hint down by the share of entries a compaction up to `compacted`
    /// removed from the log that started at `first`.
    pub(super) fn shrink_log_size_hint(&mut self, first: u64, compacted: u64) {
        let last = self.raft.raft.raft_log.last_index();
        if compacted < first || last < first {
            return;
        }
        let total = last - first + 1;
        let remaining = last.saturating_sub(compacted);
        self.log_size_hint =
            (self.log_size_hint as u128 * remaining as u128 / total as u128) as u64;
    }

    /// Leader only: once the region grew by an eighth of the split size since the last
    /// check, measures it off-thread and splits it if it exceeds `region_max_size`.
    pub(super) fn on_split_check_tick(&mut self) {
        let cfg = &self.env.cfg;
        if !self.is_leader()
            || self.checking_size
            || !self.raft.store().is_initialized()
            || self.is_merging()
        {
            return;
        }
        if self.approximate_size.is_some() && self.size_diff_hint < cfg.region_split_size / 8 {
            return;
        }
        self.checking_size = true;
        self.size_diff_hint = 0;
        let (max_size, split_size) = (cfg.region_max_size, cfg.region_split_size);
        let region = self.region().clone();
        self.outbox.push(Effect::CheckSize {
            region,
            max_size,
            split_size,
        });
    }

    /// The size check of [`Effect::CheckSize`] finished.
    pub fn on_split_check_done(&mut self, outcome: Result<split_check::Outcome>) {
        self.checking_size = false;
        match outcome {
            Ok(outcome) => self.on_split_check(outcome),
            Err(e) => warn!("size check failed: {e}"),
        }
    }

    fn on_split_check(&mut self, outcome: split_check::Outcome) {
        self.approximate_size = Some(outcome.size);
        self.report_leadership();
        if outcome.split_keys.is_empty()
            || !self.is_leader()
            || outcome.region_version != self.region().region_epoch.map_or(0, |e| e.version)
        {
            return;
        }
        let peers = self.region().peers.len();
        let ids = match self.env.ids.alloc(outcome.split_keys.len() * (1 + peers)) {
            Ok(ids) => ids,
            Err(e) => return warn!("cannot allocate ids for a split: {e}"),
        };
        info!(
            size = outcome.size,
            keys = outcome.split_keys.len(),
            first = ?String::from_utf8_lossy(&outcome.split_keys[0]),
            "splitting region by size"
        );
        let request = self.own_admin_command(util::split_request(outcome.split_keys, &ids));
        let (callback, _) = tokio::sync::oneshot::channel();
        self.propose_split(request, callback);
        self.schedule_ready();
    }

    /// Starts the tick timer: as the peer starts awake, and as it wakes. A peer ticks
    /// exactly while it is awake, [`Effect::Asleep`] stopping the timer.
    pub(super) fn start_ticking(&mut self) {
        self.outbox.push(Effect::StartTicking);
    }

    /// One base tick: raft's clock, reads waiting too long, and every so many ticks the
    /// leader's log GC and size check; a quiet leader asks its followers to sleep instead.
    /// One base tick of the timer [`Effect::StartTicking`] started.
    pub fn on_tick(&mut self) {
        if self.destroyed {
            return;
        }
        self.expire_follower_reads();
        if self.try_hibernate() {
            return;
        }
        self.ticks += 1;
        if self.applying_snapshot() {
            // raft's log starts after the snapshot, but raft has not applied it yet: an
            // election timing out now would make raft look for membership changes in the
            // entries the snapshot replaced, which it treats as fatal. The election clock
            // waits until the snapshot is applied (its write is on its way to disk).
            return;
        }
        match self.contain_raft(|| "a tick".to_string(), |raft| raft.tick()) {
            Some(true) => self.schedule_ready(),
            Some(false) => {}
            None => return,
        }
        let cfg = &self.env.cfg;
        let every = |ms: u64| (ms / cfg.raft_base_tick_ms).max(1);
        let (gc_every, split_every) = (
            every(cfg.raft_log_gc_tick_ms),
            every(cfg.split_check_tick_ms),
        );
        if self.ticks.is_multiple_of(gc_every) {
            self.on_log_gc_tick();
            self.report_leadership();
        }
        if self.ticks.is_multiple_of(split_every) {
            self.on_split_check_tick();
        }
        self.on_merge_tick();
    }

    /// Whether a snapshot this peer accepted is not applied yet: raft's log begins after
    /// the snapshot while raft's applied index is still below it.
    pub(super) fn applying_snapshot(&self) -> bool {
        let log = &self.raft.raft.raft_log;
        self.persisting_snapshot.is_some() || log.applied + 1 < log.first_index()
    }
}
