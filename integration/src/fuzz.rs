//! Arbitrary input for fuzz tests: what a careless or hostile peer could send.
//!
//! A [`Fuzzer`] draws values from a seeded random generator, so a failing run can be
//! replayed with its seed (`TINYKV_FUZZ_SEED`); `TINYKV_FUZZ_CASES` scales how many cases
//! each test draws. The values are structured where structure gets past decoding (raft
//! commands with every field filled at random, raft messages with plausible envelopes,
//! JSON shaped like the placement driver's requests) and raw where it does not (random
//! bytes after a valid preface). Edge values (empty, the longest a field may be, one
//! longer, zero, the largest integers) come up far more often than uniform sampling would
//! give them, since that is where the bugs are.

use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tinykv_proto::eraftpb;
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, BatchSplitRequest, ChangePeerRequest, CmdType, CompactLogRequest,
    DeleteRequest, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request, SnapRequest,
    SplitRequest, TransferLeaderRequest, WriteSession,
};
use tinykv_proto::raft_serverpb::RaftMessage;

/// A seeded source of arbitrary input; see the module documentation.
pub struct Fuzzer {
    rng: StdRng,
    seed: u64,
}

/// How many cases a fuzz test draws by default, scaled by `TINYKV_FUZZ_CASES`.
pub fn cases(default: usize) -> usize {
    std::env::var("TINYKV_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Fuzzer {
    /// A fuzzer seeded from `TINYKV_FUZZ_SEED`, or at random (the seed is printed, to
    /// replay a failure).
    pub fn from_env(test: &str) -> Fuzzer {
        let seed = std::env::var("TINYKV_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(rand::random);
        eprintln!("{test}: TINYKV_FUZZ_SEED={seed}");
        Fuzzer {
            rng: StdRng::seed_from_u64(seed),
            seed,
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    /// An integer that is often an edge value.
    pub fn number(&mut self) -> u64 {
        match self.rng.gen_range(0..8) {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => self.rng.gen_range(0..10),
            4 => 1 << self.rng.gen_range(0..64),
            _ => self.rng.gen(),
        }
    }

    /// A term or log index: mostly near where a young region's are (so that messages get
    /// past the first checks and into raft), sometimes an edge value.
    pub fn term_or_index(&mut self) -> u64 {
        if self.chance(0.85) {
            self.rng.gen_range(0..30)
        } else {
            self.number()
        }
    }

    /// Bytes of a length that is often an edge (empty, 65,535, 65,536) and otherwise
    /// short.
    pub fn bytes(&mut self) -> Vec<u8> {
        let len = match self.rng.gen_range(0..12) {
            0 => 0,
            1 => u16::MAX as usize,
            2 => u16::MAX as usize + 1,
            3 => self.rng.gen_range(0..300_000),
            _ => self.rng.gen_range(1..24),
        };
        self.raw(len)
    }

    /// `len` random bytes; sometimes the reserved `0xFF` prefix.
    pub fn raw(&mut self, len: usize) -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..len).map(|_| self.rng.gen()).collect();
        if !bytes.is_empty() && self.chance(0.2) {
            bytes[0] = 0xff;
        }
        bytes
    }

    /// Fewer than `max` random bytes.
    pub fn short(&mut self, max: usize) -> Vec<u8> {
        let len = self.rng.gen_range(0..max);
        self.raw(len)
    }

    /// A column family name: the real ones, the internal ones, or nonsense.
    pub fn cf(&mut self) -> String {
        let names = [
            "", "default", "lock", "write", "raft", "meta", "DEFAULT", "\u{0}",
        ];
        names[self.rng.gen_range(0..names.len())].to_string()
    }

    fn peer(&mut self) -> metapb::Peer {
        metapb::Peer {
            id: self.number(),
            store_id: self.number(),
        }
    }

    fn epoch(&mut self) -> Option<metapb::RegionEpoch> {
        self.chance(0.8).then(|| metapb::RegionEpoch {
            conf_ver: self.rng.gen_range(0..4),
            version: self.rng.gen_range(0..4),
        })
    }

    /// One request of any type, its fields filled at random (sometimes missing).
    pub fn request(&mut self) -> Request {
        let cmd_type = self.rng.gen_range(0..7);
        let mut request = Request {
            cmd_type,
            ..Default::default()
        };
        let filled = self.chance(0.9);
        match CmdType::try_from(cmd_type) {
            Ok(CmdType::Put) if filled => {
                request.put = Some(PutRequest {
                    cf: self.cf(),
                    key: self.bytes(),
                    value: self.bytes(),
                })
            }
            Ok(CmdType::Delete) if filled => {
                request.delete = Some(DeleteRequest {
                    cf: self.cf(),
                    key: self.bytes(),
                })
            }
            Ok(CmdType::Get) if filled => {
                request.get = Some(GetRequest {
                    cf: self.cf(),
                    key: self.bytes(),
                })
            }
            Ok(CmdType::Snap) if filled => request.snap = Some(SnapRequest {}),
            _ => {}
        }
        if self.chance(0.5) {
            request.session = Some(self.session());
        }
        request
    }

    /// A write session: sometimes sane, sometimes with an empty or overlong id, a TTL
    /// beyond the limit, a time of 0 or far away; ids from a small set, so that some
    /// repeat.
    pub fn session(&mut self) -> WriteSession {
        let request_id = match self.rng.gen_range(0..4) {
            0 => Vec::new(),
            1 => self.raw(tinykv_actors::MAX_REQUEST_ID_BYTES + 1),
            _ => format!("id-{}", self.rng.gen_range(0..4)).into_bytes(),
        };
        let issued_ms = match self.rng.gen_range(0..3) {
            0 => 0,
            1 => u64::MAX,
            _ => self.rng.gen_range(1..1_000_000),
        };
        let ttl_ms = match self.rng.gen_range(0..3) {
            0 => u64::MAX,
            _ => self.rng.gen_range(0..10_000),
        };
        WriteSession {
            request_id,
            issued_ms,
            ttl_ms,
        }
    }

    /// An admin request of any type, its fields filled at random.
    pub fn admin(&mut self) -> AdminRequest {
        let cmd_type = [0, 1, 3, 4, 10, 11, 99][self.rng.gen_range(0..7)];
        let mut admin = AdminRequest {
            cmd_type,
            ..Default::default()
        };
        match AdminCmdType::try_from(cmd_type) {
            Ok(AdminCmdType::ChangePeer) => {
                admin.change_peer = Some(ChangePeerRequest {
                    change_type: self.rng.gen_range(0..4),
                    peer: self.chance(0.9).then(|| self.peer()),
                })
            }
            Ok(AdminCmdType::CompactLog) => {
                admin.compact_log = Some(CompactLogRequest {
                    compact_index: self.number(),
                    compact_term: self.number(),
                })
            }
            Ok(AdminCmdType::TransferLeader) => {
                admin.transfer_leader = Some(TransferLeaderRequest {
                    peer: self.chance(0.9).then(|| self.peer()),
                })
            }
            Ok(AdminCmdType::Split) => admin.split = Some(self.split()),
            Ok(AdminCmdType::BatchSplit) => {
                let count = self.rng.gen_range(0..4);
                admin.batch_split = Some(BatchSplitRequest {
                    requests: (0..count).map(|_| self.split()).collect(),
                })
            }
            _ => {}
        }
        admin
    }

    /// A random split: any key, any ids.
    fn split(&mut self) -> SplitRequest {
        let count = self.rng.gen_range(0..5);
        SplitRequest {
            split_key: self.bytes(),
            new_region_id: self.number(),
            new_peer_ids: (0..count).map(|_| self.number()).collect(),
        }
    }

    /// A command for region `region_id`: a random header (term, metadata mark, epoch,
    /// peer), random requests and sometimes an admin request too.
    pub fn command(&mut self, region_id: u64) -> RaftCmdRequest {
        let header = RaftRequestHeader {
            region_id,
            peer: self.chance(0.2).then(|| self.peer()),
            uuid: if self.chance(0.5) {
                self.raw(16)
            } else {
                Vec::new()
            },
            region_epoch: self.epoch(),
            term: if self.chance(0.2) { self.number() } else { 0 },
            metadata: self.chance(0.2),
            leader_only: self.chance(0.2),
        };
        let count = self.rng.gen_range(0..4);
        RaftCmdRequest {
            header: self.chance(0.95).then_some(header),
            requests: (0..count).map(|_| self.request()).collect(),
            admin_request: self.chance(0.3).then(|| self.admin()),
        }
    }

    /// A raft message of any type between `from` and `to` of region `region_id`, with
    /// random indexes, terms, entries and snapshot, in an envelope with a random epoch.
    pub fn raft_message(
        &mut self,
        region_id: u64,
        from: metapb::Peer,
        to: metapb::Peer,
    ) -> RaftMessage {
        let entries = (0..self.rng.gen_range(0..4))
            .map(|_| eraftpb::Entry {
                entry_type: self.rng.gen_range(0..3),
                term: self.term_or_index(),
                index: self.term_or_index(),
                data: if self.chance(0.5) {
                    self.command(region_id).encode_to_vec()
                } else {
                    self.short(64)
                },
                ..Default::default()
            })
            .collect();
        let snapshot = self.chance(0.2).then(|| eraftpb::Snapshot {
            data: self.short(256),
            metadata: Some(eraftpb::SnapshotMetadata {
                conf_state: Some(eraftpb::ConfState {
                    voters: (0..self.rng.gen_range(0..4))
                        .map(|_| self.number())
                        .collect(),
                    learners: (0..self.rng.gen_range(0..2))
                        .map(|_| self.number())
                        .collect(),
                    ..Default::default()
                }),
                index: self.term_or_index(),
                term: self.term_or_index(),
            }),
        });
        let message = eraftpb::Message {
            msg_type: self.rng.gen_range(0..20),
            to: if self.chance(0.9) {
                to.id
            } else {
                self.number()
            },
            from: if self.chance(0.9) {
                from.id
            } else {
                self.number()
            },
            term: self.term_or_index(),
            log_term: self.term_or_index(),
            index: self.term_or_index(),
            entries,
            commit: self.term_or_index(),
            snapshot,
            request_snapshot: self.term_or_index(),
            reject: self.chance(0.3),
            reject_hint: self.term_or_index(),
            context: self.short(16),
            ..Default::default()
        };
        RaftMessage {
            region_id,
            from_peer: Some(from),
            to_peer: Some(to),
            message: self.chance(0.9).then_some(message),
            region_epoch: self.epoch(),
            is_tombstone: self.chance(0.1),
            start_key: self.short(4),
            end_key: self.short(4),
            ..Default::default()
        }
    }

    /// A JSON value shaped like a placement-driver request (a heartbeat, a join, a
    /// drain, a view) with fields of random types and values, or arbitrary JSON.
    pub fn pd_json(&mut self) -> Value {
        let any = |f: &mut Fuzzer| f.json(2);
        match self.rng.gen_range(0..6) {
            0 => json!({
                "type": "heartbeat",
                "store": {
                    "store_id": self.json_number(), "raft_addr": any(self),
                    "http_addr": any(self), "region_count": self.json_number(),
                    "used_size": any(self)
                },
                "regions": (0..self.rng.gen_range(0..4)).map(|_| json!({
                    "id": self.json_number(), "start_key": any(self), "end_key": any(self),
                    "conf_ver": self.json_number(), "version": self.json_number(),
                    "peers": any(self), "leader": {"id": self.json_number(), "store_id": self.json_number()},
                    "pending_peers": [], "approximate_size": any(self)
                })).collect::<Vec<_>>()
            }),
            1 => json!({
                "type": "join", "cluster_id": self.json_number(),
                "raft_addr": any(self), "http_addr": any(self), "join_token": any(self)
            }),
            2 => json!({ "type": "set_store_offline", "store_id": self.json_number() }),
            3 => {
                let kinds = ["cluster", "regions", "operators", "health", "region"];
                let kind = kinds[self.rng.gen_range(0..kinds.len())];
                json!({ "type": kind, "region_id": any(self) })
            }
            _ => self.json(3),
        }
    }

    fn json_number(&mut self) -> Value {
        match self.rng.gen_range(0..5) {
            0 => json!(-1),
            1 => json!(1.5),
            2 => json!("7"),
            _ => json!(self.number()),
        }
    }

    /// Arbitrary JSON, nested up to `depth`.
    pub fn json(&mut self, depth: u32) -> Value {
        let pick = if depth == 0 {
            self.rng.gen_range(0..4)
        } else {
            self.rng.gen_range(0..6)
        };
        match pick {
            0 => Value::Null,
            1 => json!(self.chance(0.5)),
            2 => json!(self.number()),
            3 => json!(String::from_utf8_lossy(&self.short(12))),
            4 => Value::Array(
                (0..self.rng.gen_range(0..4))
                    .map(|_| self.json(depth - 1))
                    .collect(),
            ),
            _ => {
                let keys = [
                    "type",
                    "store_id",
                    "store",
                    "regions",
                    "raft_addr",
                    "id",
                    "x",
                ];
                let mut object = serde_json::Map::new();
                for _ in 0..self.rng.gen_range(0..4) {
                    let key = keys[self.rng.gen_range(0..keys.len())];
                    object.insert(key.to_string(), self.json(depth - 1));
                }
                Value::Object(object)
            }
        }
    }
}
