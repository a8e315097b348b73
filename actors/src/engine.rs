//! The storage engine: one fjall database per store.
//!
//! fjall is an LSM-tree with one write-ahead journal shared by all of its keyspaces, so a
//! batch that touches several keyspaces is atomic, and one fsync makes every earlier write
//! durable too. The store uses five keyspaces:
//!
//! - `default`, `lock`, `write`: the column families a client's request names (`cf`);
//! - `raft`: raft log entries and each region's `RaftLocalState`;
//! - `meta`: `RaftApplyState`, `RegionLocalState`, the `StoreIdent`, the id allocator and
//!   the regions' session journals (see [`crate::session`]).
//!
//! Writes through [`Engine::write`] say whether they must be fsynced. fjall's own default
//! is to buffer, which is what applied data wants (it can be replayed from the raft log);
//! the raft-log writer asks for `SyncData`.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use prost::Message;

use crate::error::{Error, Result};

/// Name of the default column family.
pub const CF_DEFAULT: &str = "default";
/// Name of the lock column family.
pub const CF_LOCK: &str = "lock";
/// Name of the write column family.
pub const CF_WRITE: &str = "write";
/// The column families a client may name.
pub const DATA_CFS: [&str; 3] = [CF_DEFAULT, CF_LOCK, CF_WRITE];

/// Identifies one keyspace of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cf {
    /// Client column family `default`.
    Default,
    /// Client column family `lock`.
    Lock,
    /// Client column family `write`.
    Write,
    /// Raft log entries and raft state.
    Raft,
    /// Apply state, region state and store-wide metadata.
    Meta,
}

impl Cf {
    /// Parses a client-facing column family name (`default`, `lock` or `write`).
    pub fn from_name(name: &str) -> Result<Cf> {
        match name {
            "" | CF_DEFAULT => Ok(Cf::Default),
            CF_LOCK => Ok(Cf::Lock),
            CF_WRITE => Ok(Cf::Write),
            other => Err(Error::InvalidRequest(format!(
                "unknown column family {other:?}: expected one of default, lock, write"
            ))),
        }
    }

    /// The client column families, in a fixed order.
    pub const DATA: [Cf; 3] = [Cf::Default, Cf::Lock, Cf::Write];
}

/// One change of a write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Set `key` to `value` in `cf`.
    Put {
        /// Target keyspace.
        cf: Cf,
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key` from `cf`.
    Delete {
        /// Target keyspace.
        cf: Cf,
        /// The key.
        key: Vec<u8>,
    },
    /// Remove every key of `cf` in `[start, end)` (empty `end`: unbounded) that exists
    /// when the batch is written, except keys the same batch puts.
    DeleteRange {
        /// Target keyspace.
        cf: Cf,
        /// First key removed.
        start: Vec<u8>,
        /// Exclusive end.
        end: Vec<u8>,
    },
}

impl Mutation {
    /// A put of an encoded protobuf message.
    pub fn put_msg(cf: Cf, key: Vec<u8>, msg: &impl Message) -> Mutation {
        Mutation::Put {
            cf,
            key,
            value: msg.encode_to_vec(),
        }
    }

    /// Bytes this mutation adds to a batch, for batch-size limits and statistics.
    pub fn size(&self) -> usize {
        match self {
            Mutation::Put { key, value, .. } => key.len() + value.len(),
            Mutation::Delete { key, .. } => key.len(),
            Mutation::DeleteRange { start, end, .. } => start.len() + end.len(),
        }
    }
}

/// Refuses a mutation the engine would assert on: an empty key, a key longer than
/// 65,535 bytes or a value longer than 4 GiB. Commands are validated long before they get
/// here (see [`crate::validation`]); this is the last line.
fn check_storable(mutation: &Mutation) -> Result<()> {
    let (key, value_len) = match mutation {
        Mutation::Put { key, value, .. } => (key, value.len()),
        Mutation::Delete { key, .. } => (key, 0),
        Mutation::DeleteRange { .. } => return Ok(()),
    };
    if key.is_empty() || key.len() > u16::MAX as usize || u32::try_from(value_len).is_err() {
        return Err(Error::InvalidRequest(format!(
            "the engine cannot store a key of {} bytes with a value of {value_len} bytes",
            key.len()
        )));
    }
    Ok(())
}

struct Inner {
    path: PathBuf,
    // Keyspaces are declared before the database so that they drop first.
    default: Keyspace,
    lock: Keyspace,
    write: Keyspace,
    raft: Keyspace,
    meta: Keyspace,
    db: Database,
    /// Set by [`Engine::fail_writes`].
    #[cfg(test)]
    fail_writes: std::sync::atomic::AtomicBool,
}

/// A cheaply clonable handle to the store's database.
///
/// The directory stays locked while any clone is alive: an in-process restart must drop
/// every handle (and every actor holding one) before opening the same path again.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// A consistent, read-only view of the whole engine at one instant.
pub struct EngineSnapshot {
    engine: Engine,
    snapshot: fjall::Snapshot,
}

/// The LSM-tree's housekeeping at one moment ([`Engine::housekeeping`]). fjall stalls
/// writers when it falls behind: with four sealed memtables in a keyspace waiting to be
/// flushed (100 ms sleeps), or twenty runs of tables in its first level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Housekeeping {
    /// Journal files (the active one and those whose data awaits a flush).
    pub journals: usize,
    /// Memtable flushes queued or running.
    pub flushes_queued: usize,
    /// Sealed memtables not flushed yet, over all keyspaces.
    pub sealed_memtables: usize,
    /// Table files, over all keyspaces.
    pub tables: usize,
    /// Compactions running.
    pub compactions_running: usize,
    /// Compactions completed since the engine opened.
    pub compactions_done: usize,
}

impl Engine {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Engine> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::Engine(format!("cannot create {}: {e}", path.display())))?;
        let db = Database::builder(&path)
            .manual_journal_persist(true)
            .open()
            .map_err(|e| open_error(&path, e))?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| open_error(&path, e))
        };
        Ok(Engine {
            inner: Arc::new(Inner {
                default: ks(CF_DEFAULT)?,
                lock: ks(CF_LOCK)?,
                write: ks(CF_WRITE)?,
                raft: ks("raft")?,
                meta: ks("meta")?,
                db,
                path,
                #[cfg(test)]
                fail_writes: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Makes every later write fail, as a full or failing disk would (tests of the
    /// writers' failure path).
    #[cfg(test)]
    pub(crate) fn fail_writes(&self) {
        self.inner
            .fail_writes
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Bytes held in memtables (written, not yet flushed to tables).
    pub fn write_buffer_bytes(&self) -> u64 {
        self.inner.db.write_buffer_size()
    }

    /// Bytes the block cache holds.
    pub fn block_cache_bytes(&self) -> u64 {
        self.inner.db.cache_size()
    }

    /// The LSM-tree's housekeeping now: what a write may be waiting behind.
    pub fn housekeeping(&self) -> Housekeeping {
        let inner = &self.inner;
        let keyspaces = [
            &inner.default,
            &inner.lock,
            &inner.write,
            &inner.raft,
            &inner.meta,
        ];
        Housekeeping {
            journals: inner.db.journal_count(),
            flushes_queued: inner.db.outstanding_flushes(),
            sealed_memtables: keyspaces.iter().map(|k| k.sealed_memtable_count()).sum(),
            tables: keyspaces.iter().map(|k| k.table_count()).sum(),
            compactions_running: inner.db.active_compactions(),
            compactions_done: inner.db.compactions_completed(),
        }
    }

    /// The directory of this database.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn keyspace(&self, cf: Cf) -> &Keyspace {
        match cf {
            Cf::Default => &self.inner.default,
            Cf::Lock => &self.inner.lock,
            Cf::Write => &self.inner.write,
            Cf::Raft => &self.inner.raft,
            Cf::Meta => &self.inner.meta,
        }
    }

    /// Reads one value.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !is_storable_key(key) {
            return Ok(None);
        }
        Ok(self.keyspace(cf).get(key)?.map(|v| v.to_vec()))
    }

    /// Reads and decodes one protobuf message.
    pub fn get_msg<M: Message + Default>(&self, cf: Cf, key: &[u8]) -> Result<Option<M>> {
        if !is_storable_key(key) {
            return Ok(None);
        }
        match self.keyspace(cf).get(key)? {
            Some(v) => Ok(Some(M::decode(v.as_ref())?)),
            None => Ok(None),
        }
    }

    /// Applies `mutations` atomically; with `sync` the journal is fsynced before returning,
    /// which also makes every earlier unsynced write durable.
    pub fn write(&self, mutations: &[Mutation], sync: bool) -> Result<()> {
        self.write_all(mutations, sync)
    }

    /// Like [`Engine::write`], for mutations gathered from several places (the batched
    /// writers combine many tasks into one atomic batch).
    pub fn write_all<'a>(
        &self,
        mutations: impl IntoIterator<Item = &'a Mutation>,
        sync: bool,
    ) -> Result<()> {
        let mutations: Vec<&Mutation> = mutations.into_iter().collect();
        #[cfg(test)]
        if self
            .inner
            .fail_writes
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Error::Engine(
                "No space left on device (os error 28) (injected)".into(),
            ));
        }
        // fjall asserts these instead of failing: refuse the batch before it gets there.
        mutations.iter().try_for_each(|m| check_storable(m))?;
        let mut batch = self.inner.db.batch();
        let has_ranges = mutations
            .iter()
            .any(|m| matches!(m, Mutation::DeleteRange { .. }));
        // Entries of one batch share a sequence number, so a key must not be both removed
        // and inserted in it: a range delete spares the keys the batch puts.
        let put_keys: HashSet<(Cf, &[u8])> = if has_ranges {
            mutations
                .iter()
                .filter_map(|m| match m {
                    Mutation::Put { cf, key, .. } => Some((*cf, key.as_slice())),
                    _ => None,
                })
                .collect()
        } else {
            HashSet::new()
        };
        for m in mutations.iter().copied() {
            match m {
                Mutation::Put { cf, key, value } => {
                    batch.insert(self.keyspace(*cf), key.as_slice(), value.as_slice())
                }
                Mutation::Delete { cf, key } => batch.remove(self.keyspace(*cf), key.as_slice()),
                Mutation::DeleteRange { cf, start, end } if is_empty_range(start, end) => {}
                Mutation::DeleteRange { cf, start, end } => {
                    let keyspace = self.keyspace(*cf);
                    for guard in keyspace.range::<&[u8], _>(bounds(start, end)) {
                        let key = guard.key()?;
                        if !put_keys.contains(&(*cf, key.as_ref())) {
                            batch.remove(keyspace, key);
                        }
                    }
                }
            }
        }
        if sync {
            batch = batch.durability(Some(PersistMode::SyncData));
        }
        batch.commit()?;
        Ok(())
    }

    /// Takes a consistent snapshot of every keyspace.
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            engine: self.clone(),
            snapshot: self.inner.db.snapshot(),
        }
    }

    /// Visits the pairs of `cf` in `[start, end)` (empty `end`: unbounded) in key order
    /// until `f` returns false.
    pub fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        if is_empty_range(start, end) {
            return Ok(());
        }
        scan_iter(self.keyspace(cf).range::<&[u8], _>(bounds(start, end)), f)
    }

    /// Whether no client data and no region state exist: a store may only bootstrap then.
    pub fn is_empty(&self) -> Result<bool> {
        for cf in [Cf::Default, Cf::Lock, Cf::Write, Cf::Raft, Cf::Meta] {
            if !self.keyspace(cf).is_empty()? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl EngineSnapshot {
    /// Reads and decodes one protobuf message as of the snapshot.
    pub fn get_msg<M: Message + Default>(&self, cf: Cf, key: &[u8]) -> Result<Option<M>> {
        match self.get(cf, key)? {
            Some(v) => Ok(Some(M::decode(v.as_slice())?)),
            None => Ok(None),
        }
    }

    /// Reads one value as of the snapshot.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if !is_storable_key(key) {
            return Ok(None);
        }
        Ok(self
            .snapshot
            .get(self.engine.keyspace(cf), key)?
            .map(|v| v.to_vec()))
    }

    /// Visits the pairs of `cf` in `[start, end)` as of the snapshot, until `f` returns
    /// false.
    pub fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        if is_empty_range(start, end) {
            return Ok(());
        }
        scan_iter(
            self.snapshot
                .range::<&[u8], _>(self.engine.keyspace(cf), bounds(start, end)),
            f,
        )
    }
}

/// Classifies a failure to open the database at `path`: an I/O error (permissions, a
/// missing disk) or another process holding the lock is an engine error; anything fjall
/// found wrong in the files themselves (a checksum mismatch in the journal or a table, an
/// unreadable manifest, missing tables, an unknown format version) is corruption.
fn open_error(path: &Path, e: fjall::Error) -> Error {
    match e {
        fjall::Error::Io(_)
        | fjall::Error::Storage(fjall::LsmError::Io(_))
        | fjall::Error::Locked => Error::Engine(format!(
            "cannot open the database in {}: {e}",
            path.display()
        )),
        e => Error::Corruption(format!(
            "the database in {} is damaged: {e}",
            path.display()
        )),
    }
}

/// Longest key the engine stores (it asserts on longer keys, in reads too).
const MAX_STORED_KEY: usize = u16::MAX as usize;

/// Whether the engine could hold `key`: 1 to [`MAX_STORED_KEY`] bytes. No other key
/// exists, so a read of one finds nothing without asking the engine.
fn is_storable_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_STORED_KEY
}

/// The engine's bounds for `[start, end)` (empty `end`: unbounded). A bound longer than
/// any stored key (which the engine would assert on) is replaced by an equivalent one:
/// every stored key is at most [`MAX_STORED_KEY`] bytes, so it is at least a longer
/// `start` exactly when it exceeds that key's prefix of that length, and below a longer
/// `end` exactly when it does not exceed `end`'s prefix.
fn bounds<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let lower = if start.len() > MAX_STORED_KEY {
        Bound::Excluded(&start[..MAX_STORED_KEY])
    } else {
        Bound::Included(start)
    };
    let upper = if end.is_empty() {
        Bound::Unbounded
    } else if end.len() > MAX_STORED_KEY {
        Bound::Included(&end[..MAX_STORED_KEY])
    } else {
        Bound::Excluded(end)
    };
    (lower, upper)
}

/// Whether `[start, end)` holds no key at all (then the engine is not asked: it may not
/// take bounds in the wrong order).
fn is_empty_range(start: &[u8], end: &[u8]) -> bool {
    !end.is_empty() && start >= end
}

fn scan_iter(iter: fjall::Iter, mut f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
    for guard in iter {
        let (k, v) = guard.into_inner()?;
        if !f(&k, &v) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_atomic_across_keyspaces_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = Engine::open(dir.path()).unwrap();
            assert!(engine.is_empty().unwrap());
            engine
                .write(
                    &[
                        Mutation::Put {
                            cf: Cf::Default,
                            key: b"a".to_vec(),
                            value: b"1".to_vec(),
                        },
                        Mutation::Put {
                            cf: Cf::Lock,
                            key: b"a".to_vec(),
                            value: b"L".to_vec(),
                        },
                    ],
                    true,
                )
                .unwrap();
            engine
                .write(
                    &[Mutation::Delete {
                        cf: Cf::Lock,
                        key: b"a".to_vec(),
                    }],
                    true,
                )
                .unwrap();
        }
        let engine = Engine::open(dir.path()).unwrap();
        assert_eq!(engine.get(Cf::Default, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(engine.get(Cf::Lock, b"a").unwrap(), None);
        assert!(!engine.is_empty().unwrap());
    }

    #[test]
    fn snapshot_is_isolated_from_later_writes_and_scans_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let put = |k: &str, v: &str| Mutation::Put {
            cf: Cf::Write,
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
        };
        engine
            .write(&[put("b", "2"), put("a", "1"), put("d", "4")], false)
            .unwrap();
        let snap = engine.snapshot();
        engine.write(&[put("c", "3")], false).unwrap();
        let mut seen = vec![];
        snap.scan(Cf::Write, b"a", b"d", |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        let mut live = vec![];
        engine
            .scan(Cf::Write, b"b", b"", |k, _| {
                live.push(k.to_vec());
                live.len() < 2
            })
            .unwrap();
        assert_eq!(live, vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(snap.get(Cf::Write, b"c").unwrap(), None);
    }

    #[test]
    fn delete_range_spares_keys_the_batch_puts() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let put = |k: &str| Mutation::Put {
            cf: Cf::Default,
            key: k.as_bytes().to_vec(),
            value: b"old".to_vec(),
        };
        engine
            .write(&[put("a"), put("b"), put("c"), put("d")], false)
            .unwrap();
        engine
            .write(
                &[
                    Mutation::DeleteRange {
                        cf: Cf::Default,
                        start: b"b".to_vec(),
                        end: vec![],
                    },
                    Mutation::Put {
                        cf: Cf::Default,
                        key: b"c".to_vec(),
                        value: b"new".to_vec(),
                    },
                ],
                false,
            )
            .unwrap();
        let mut left = vec![];
        engine
            .scan(Cf::Default, b"", b"", |k, v| {
                left.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(
            left,
            vec![
                (b"a".to_vec(), b"old".to_vec()),
                (b"c".to_vec(), b"new".to_vec())
            ]
        );
    }

    /// Table files carry block checksums: a damaged one is refused when it is opened or
    /// read, never returned as data.
    #[test]
    fn a_damaged_table_is_detected_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let value = |i: u32| format!("value-{i:05}-{}", "x".repeat(64)).into_bytes();
        {
            let engine = Engine::open(dir.path()).unwrap();
            let puts: Vec<Mutation> = (0..2000)
                .map(|i| Mutation::Put {
                    cf: Cf::Default,
                    key: format!("key{i:05}").into_bytes(),
                    value: value(i),
                })
                .collect();
            engine.write(&puts, true).unwrap();
            // Move the data from the journal into a table file.
            engine.inner.default.rotate_memtable_and_wait().unwrap();
        }
        let mut tables = vec![];
        for keyspace in std::fs::read_dir(dir.path().join("keyspaces")).unwrap() {
            let keyspace = keyspace.unwrap().path();
            if keyspace.file_name().unwrap() == "0" {
                continue; // fjall's own metadata
            }
            if let Ok(files) = std::fs::read_dir(keyspace.join("tables")) {
                tables.extend(files.map(|f| f.unwrap().path()));
            }
        }
        assert_eq!(tables.len(), 1, "one flushed table: {tables:?}");
        let mut bytes = std::fs::read(&tables[0]).unwrap();
        let middle = bytes.len() / 3;
        bytes[middle..middle + 64].fill(0x55);
        std::fs::write(&tables[0], bytes).unwrap();

        let engine = match Engine::open(dir.path()) {
            Ok(engine) => engine,
            Err(e) => {
                assert!(matches!(e, Error::Corruption(_)), "{e}");
                return;
            }
        };
        let (mut good, mut failed) = (0, 0);
        for i in 0..2000 {
            match engine.get(Cf::Default, format!("key{i:05}").as_bytes()) {
                Ok(got) => {
                    assert_eq!(got, Some(value(i)), "key{i:05} read back wrong");
                    good += 1;
                }
                Err(_) => failed += 1,
            }
        }
        assert!(failed > 0, "the damaged block went unnoticed ({good} good)");
        let scanned = engine.scan(Cf::Default, b"", b"", |_, _| true);
        assert!(scanned.is_err(), "a scan over the damaged block fails");
    }

    #[test]
    fn a_batch_the_engine_cannot_store_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        for bad in [vec![], vec![b'k'; u16::MAX as usize + 1]] {
            let batch = [
                Mutation::Put {
                    cf: Cf::Default,
                    key: b"fine".to_vec(),
                    value: b"v".to_vec(),
                },
                Mutation::Delete {
                    cf: Cf::Default,
                    key: bad,
                },
            ];
            let err = engine.write(&batch, true).unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
            assert_eq!(
                engine.get(Cf::Default, b"fine").unwrap(),
                None,
                "nothing written"
            );
        }
    }

    #[test]
    fn reads_of_keys_the_engine_cannot_hold_find_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let longest = vec![b'k'; MAX_STORED_KEY];
        let mutations = [b"k".to_vec(), longest.clone(), b"l".to_vec()].map(|key| Mutation::Put {
            cf: Cf::Default,
            key,
            value: b"v".to_vec(),
        });
        engine.write(&mutations, true).unwrap();
        let too_long = vec![b'k'; MAX_STORED_KEY + 1];
        assert_eq!(engine.get(Cf::Default, &too_long).unwrap(), None);
        assert_eq!(engine.get(Cf::Default, b"").unwrap(), None);
        assert_eq!(engine.snapshot().get(Cf::Default, &too_long).unwrap(), None);
        let scanned = |start: &[u8], end: &[u8]| {
            let mut keys = Vec::new();
            engine
                .scan(Cf::Default, start, end, |k, _| {
                    keys.push(k.len());
                    true
                })
                .unwrap();
            keys
        };
        assert_eq!(
            scanned(&too_long, b""),
            vec![1],
            "after the longest key: only l"
        );
        assert_eq!(scanned(b"", &too_long), vec![1, MAX_STORED_KEY]);
        assert_eq!(
            scanned(b"l", b"a"),
            Vec::<usize>::new(),
            "bounds in the wrong order"
        );
    }

    #[test]
    fn unknown_cf_is_rejected_by_name() {
        assert_eq!(Cf::from_name("lock").unwrap(), Cf::Lock);
        assert_eq!(Cf::from_name("").unwrap(), Cf::Default);
        let err = Cf::from_name("raft").unwrap_err().to_string();
        assert!(err.contains("raft"), "{err}");
    }
}
