//! Durability of the real binary: acknowledged writes survive kill -9, damaged data
//! directories are refused, and a full disk stops a node before it acknowledges anything
//! it could not write.
//!
//! - Writers put unique keys through REST while single nodes are killed with SIGKILL and
//!   restarted, then the whole cluster is killed at once and restarted: every write that
//!   was answered 2xx is there. A write answered otherwise, or cut off by a kill, is a
//!   "maybe" and may or may not be there. Each writer `w` writes key `w{w}-{n}` once with
//!   value `v{n}`, so the check is simply that every acknowledged key holds its value and
//!   that nothing else appeared.
//! - A stopped node's data directory is damaged in several ways (database deleted,
//!   journal or table files overwritten, raft state made inconsistent); started again, the
//!   node must exit with status 1 within seconds, saying what is wrong and naming the data
//!   directory, without a panic and without serving.
//! - With the data directory on a small tmpfs (only where this test may mount one, i.e.
//!   as root; elsewhere it says so and passes), writes fill the disk: the node exits with
//!   status 74 (`WRITE_FAILURE_EXIT_CODE`) and, moved to a larger disk, still holds every
//!   acknowledged write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tinykv_actors::engine::{Cf, Engine, Mutation};
use tinykv_actors::keys;
use tinykv_actors::WRITE_FAILURE_EXIT_CODE;
use tinykv_integration::process::ProcessCluster;
use tinykv_proto::raft_serverpb::RaftLocalState;

/// Writers running at once.
const WRITERS: usize = 16;

/// What the writers learned: key → value of every acknowledged write, and of every write
/// whose outcome is unknown.
#[derive(Debug, Default)]
struct Outcomes {
    acked: BTreeMap<String, String>,
    maybe: BTreeMap<String, String>,
}

impl Outcomes {
    fn merge(&mut self, other: Outcomes) {
        self.acked.extend(other.acked);
        self.maybe.extend(other.maybe);
    }
}

fn client() -> reqwest::Client {
    tinykv::security::http_client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Writer `w`: puts `{prefix}w{w}-{n}` = `v{n}` for n = 0, 1, ... through a random node
/// until `stop`, counting acknowledgements in `acks`.
async fn writer(
    w: usize,
    prefix: String,
    urls: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> Outcomes {
    let http = client();
    let mut outcomes = Outcomes::default();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let (key, value) = (format!("{prefix}w{w}-{n}"), format!("v{n}"));
        n += 1;
        let node = rand::thread_rng().gen_range(0..urls.len());
        let sent = http
            .put(format!("{}/v1/kv/{key}", urls[node]))
            .body(value.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                outcomes.acked.insert(key, value);
                acks.fetch_add(1, Ordering::SeqCst);
            }
            // 504 (outcome unknown), a cut connection, or any other refusal: it may or
            // may not have been applied.
            _ => {
                outcomes.maybe.insert(key, value);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    outcomes
}

/// [`WRITERS`] writers over every node of `cluster`.
struct Load {
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Outcomes>>,
}

impl Load {
    fn start(cluster: &ProcessCluster, prefix: &str) -> Load {
        let urls = Arc::new(
            cluster
                .nodes()
                .iter()
                .map(|n| cluster.url(n.id))
                .collect::<Vec<_>>(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicUsize::new(0));
        let tasks = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    w,
                    prefix.to_string(),
                    urls.clone(),
                    stop.clone(),
                    acks.clone(),
                ))
            })
            .collect();
        Load { stop, acks, tasks }
    }

    fn acks(&self) -> usize {
        self.acks.load(Ordering::SeqCst)
    }

    async fn stop(self) -> Outcomes {
        self.stop.store(true, Ordering::SeqCst);
        let mut outcomes = Outcomes::default();
        for task in self.tasks {
            outcomes.merge(task.await.unwrap());
        }
        outcomes
    }
}

async fn wait_all_healthy(cluster: &ProcessCluster) {
    let http = client();
    for node in cluster.nodes() {
        cluster.wait_healthy(node.id, &http).await;
    }
}

/// Every pair of the key space, scanned through node `id` page by page (retrying while
/// the restarted cluster elects leaders).
async fn scan_all(cluster: &ProcessCluster, id: u64) -> BTreeMap<String, String> {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = BTreeMap::new();
    let mut start = String::new();
    loop {
        let url = format!("{}/v1/kv?start={start}&limit=10000", cluster.url(id));
        let page: serde_json::Value = loop {
            match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    break serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                }
                other => {
                    let status = other.map(|r| r.status().to_string());
                    assert!(Instant::now() < deadline, "scan {url}: {status:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let kvs = page["kvs"].as_array().expect("a page of pairs");
        let Some(last) = kvs.last() else {
            return found;
        };
        start = format!("{}%00", last["key"].as_str().unwrap());
        for kv in kvs {
            let key = kv["key"].as_str().unwrap().to_string();
            found.insert(key, kv["value"].as_str().unwrap().to_string());
        }
    }
}

/// Every acknowledged write is present with its value; every key present was written
/// (acknowledged or maybe) with that value.
fn check(outcomes: &Outcomes, found: &BTreeMap<String, String>) {
    let lost: Vec<_> = outcomes
        .acked
        .iter()
        .filter(|(k, v)| found.get(*k) != Some(*v))
        .map(|(k, v)| (k, v, found.get(k)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost (key, value, found): {:?}",
        lost.len(),
        outcomes.acked.len(),
        &lost[..lost.len().min(20)]
    );
    for (key, value) in found {
        let written = outcomes.acked.get(key).or(outcomes.maybe.get(key));
        assert_eq!(written, Some(value), "{key} holds a value never written");
    }
    let maybe_present = outcomes
        .maybe
        .keys()
        .filter(|k| found.contains_key(*k))
        .count();
    println!(
        "{} acknowledged writes all present; {} of {} maybe-writes present",
        outcomes.acked.len(),
        maybe_present,
        outcomes.maybe.len()
    );
}

/// (1a) Writers keep writing while single nodes are killed and restarted, then the whole
/// cluster is killed at once, mid-load, and restarted.
#[tokio::test]
async fn acknowledged_writes_survive_minority_kills_and_a_full_cluster_kill() {
    let mut cluster = ProcessCluster::start(3);
    wait_all_healthy(&cluster).await;
    let load = Load::start(&cluster, "");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let victim = rand::thread_rng().gen_range(1..=3);
        cluster.kill_node(victim);
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.start_node(victim);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.kill_all();
    let outcomes = load.stop().await;
    assert!(
        outcomes.acked.len() >= 200,
        "too few writes acknowledged to mean anything: {}",
        outcomes.acked.len()
    );

    for id in 1..=3 {
        cluster.start_node(id);
    }
    wait_all_healthy(&cluster).await;
    check(&outcomes, &scan_all(&cluster, 1).await);
}

/// (1b) The whole cluster is killed the instant a burst of writes has been acknowledged,
/// with no quiet period for anything to settle; twice.
#[tokio::test]
async fn a_full_cluster_kill_right_after_a_burst_loses_nothing() {
    let mut cluster = ProcessCluster::start(3);
    wait_all_healthy(&cluster).await;
    let mut outcomes = Outcomes::default();
    for cycle in 0..2 {
        let load = Load::start(&cluster, &format!("c{cycle}-"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while load.acks() < 300 {
            assert!(Instant::now() < deadline, "the burst was not acknowledged");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        cluster.kill_all();
        outcomes.merge(load.stop().await);
        for id in 1..=3 {
            cluster.start_node(id);
        }
        wait_all_healthy(&cluster).await;
        check(&outcomes, &scan_all(&cluster, 1 + cycle).await);
    }
}

/// Starts stopped node `id` and asserts that it refuses: it exits with status 1 within a
/// few seconds, its log names the problem (every one of `expected`) and has no panic, and
/// it never reported serving.
fn assert_refuses_to_start(cluster: &mut ProcessCluster, id: u64, expected: &[&str]) {
    let before = cluster.log(id).len();
    cluster.start_node(id);
    let status = cluster.wait_exit(id, Duration::from_secs(10));
    let log = cluster.log(id)[before..].to_string();
    let Some(status) = status else {
        cluster.kill_node(id);
        panic!("node {id} did not exit; log:\n{log}");
    };
    assert_eq!(status.code(), Some(1), "exit status {status}; log:\n{log}");
    for text in expected {
        assert!(log.contains(text), "the log lacks {text:?}:\n{log}");
    }
    assert!(
        !log.contains("panic"),
        "a panic instead of a refusal:\n{log}"
    );
    assert!(
        !log.contains("TinyKV node serving"),
        "it served before refusing:\n{log}"
    );
}

/// Copies directory `from` into `to` (created), keeping sparse files sparse.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg("--sparse=always")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp {} {}", from.display(), to.display());
}

/// Replaces `dir` by a copy of `pristine`.
fn restore(pristine: &Path, dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    copy_dir(pristine, dir);
}

/// The files under `dir` (recursively) that `matches`, sorted.
fn files_in(dir: &Path, matches: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_in(&path, matches));
        } else if matches(&path) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// A one-node cluster holding `canary` = `value`, stopped, with a pristine copy of its
/// data directory beside it.
async fn stopped_node_with_data(canary: &str, value: &str) -> (ProcessCluster, PathBuf) {
    let mut cluster = ProcessCluster::start(1);
    wait_all_healthy(&cluster).await;
    let put = client()
        .put(format!("{}/v1/kv/{canary}", cluster.url(1)))
        .body(value.to_string())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    cluster.kill_node(1);
    let pristine = cluster.dir().join("pristine");
    copy_dir(&cluster.data_dir(1), &pristine);
    (cluster, pristine)
}

async fn assert_serves(cluster: &mut ProcessCluster, key: &str, value: &str) {
    cluster.start_node(1);
    wait_all_healthy(cluster).await;
    let found = scan_all(cluster, 1).await;
    assert_eq!(found.get(key).map(String::as_str), Some(value));
}

/// (2a) The database deleted, or emptied, under a data directory that has an identity.
#[tokio::test]
async fn a_store_whose_database_is_gone_refuses_to_start() {
    let (mut cluster, pristine) = stopped_node_with_data("canary", "still-here").await;
    let data_dir = cluster.data_dir(1);
    let identity = format!(
        "data directory {} belongs to store 1 of cluster 1 but its database",
        data_dir.display()
    );
    let expected = [identity.as_str(), "must not rejoin with empty state"];

    std::fs::remove_dir_all(data_dir.join("db")).unwrap();
    assert_refuses_to_start(&mut cluster, 1, &expected);
    assert!(!data_dir.join("db").exists(), "the refusal created nothing");

    // An empty database in its place (a fresh fjall directory) is refused the same way.
    Engine::open(data_dir.join("db")).unwrap();
    assert_refuses_to_start(&mut cluster, 1, &expected);

    restore(&pristine, &data_dir);
    assert_serves(&mut cluster, "canary", "still-here").await;
}

/// (2b) fjall's files damaged: a journal batch overwritten (checksum mismatch), the
/// journal's head overwritten (fjall takes it for a torn tail and recovers nothing, which
/// the identity file catches), a table of fjall's metadata truncated.
#[tokio::test]
async fn a_store_whose_files_are_damaged_refuses_to_start() {
    let canary = "canary-value-0123456789abcdef";
    let (mut cluster, pristine) = stopped_node_with_data("canary", canary).await;
    let data_dir = cluster.data_dir(1);
    let damaged = format!(
        "cannot open the database of data directory {}",
        data_dir.display()
    );
    let journals = |dir: &Path| files_in(dir, &|p| p.extension().is_some_and(|e| e == "jnl"));

    // A byte inside a batch: the batch's checksum no longer matches.
    let journal = journals(&data_dir).pop().expect("a journal file");
    let mut bytes = std::fs::read(&journal).unwrap();
    let at = bytes
        .windows(canary.len())
        .position(|w| w == canary.as_bytes())
        .expect("the canary is in the journal");
    bytes[at + 3] ^= 0xff;
    std::fs::write(&journal, &bytes).unwrap();
    assert_refuses_to_start(
        &mut cluster,
        1,
        &[damaged.as_str(), "is damaged", "ChecksumMismatch"],
    );

    // The journal's first bytes overwritten: fjall discards everything from there as a
    // torn write, so the database comes up empty.
    restore(&pristine, &data_dir);
    let journal = journals(&data_dir).pop().unwrap();
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[..64].fill(0x55);
    std::fs::write(&journal, &bytes).unwrap();
    assert_refuses_to_start(
        &mut cluster,
        1,
        &[
            "belongs to store 1 of cluster 1 but its database",
            "missing or empty",
        ],
    );

    // A table file of fjall's own metadata cut short.
    restore(&pristine, &data_dir);
    let tables = files_in(&data_dir.join("db").join("keyspaces").join("0"), &|p| {
        p.parent().is_some_and(|d| d.ends_with("tables"))
    });
    let table = tables.last().expect("a metadata table");
    std::fs::OpenOptions::new()
        .write(true)
        .open(table)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert_refuses_to_start(&mut cluster, 1, &[damaged.as_str(), "is damaged"]);

    restore(&pristine, &data_dir);
    assert_serves(&mut cluster, "canary", canary).await;
}

/// (2c) Raft state that contradicts itself: region 1's apply state deleted, or its commit
/// index past the end of its log (which raft-rs would meet with a panic).
#[tokio::test]
async fn a_store_whose_raft_state_is_inconsistent_refuses_to_start() {
    let (mut cluster, pristine) = stopped_node_with_data("canary", "v").await;
    let data_dir = cluster.data_dir(1);
    let loading = format!(
        "cannot load the regions of data directory {}",
        data_dir.display()
    );

    {
        let engine = Engine::open(data_dir.join("db")).unwrap();
        let delete = Mutation::Delete {
            cf: Cf::Meta,
            key: keys::apply_state_key(1),
        };
        engine.write(&[delete], true).unwrap();
    }
    assert_refuses_to_start(
        &mut cluster,
        1,
        &[
            loading.as_str(),
            "region 1: raft state present: true, apply state present: false",
        ],
    );

    restore(&pristine, &data_dir);
    {
        let engine = Engine::open(data_dir.join("db")).unwrap();
        let mut state: RaftLocalState = engine
            .get_msg(Cf::Raft, &keys::raft_state_key(1))
            .unwrap()
            .expect("region 1's raft state");
        state.hard_state.as_mut().unwrap().commit = state.last_index + 10;
        let put = Mutation::put_msg(Cf::Raft, keys::raft_state_key(1), &state);
        engine.write(&[put], true).unwrap();
    }
    assert_refuses_to_start(
        &mut cluster,
        1,
        &[
            loading.as_str(),
            "region 1: commit index",
            "past the end of the raft log",
        ],
    );

    restore(&pristine, &data_dir);
    assert_serves(&mut cluster, "canary", "v").await;
}

/// A tmpfs mounted over a directory, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) over `dir`, or says why not.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// (3) A disk that fills up: the node stops with [`WRITE_FAILURE_EXIT_CODE`] and logs why,
/// and every write it acknowledged is on what it left behind.
#[tokio::test]
async fn a_full_disk_stops_the_node_without_losing_acknowledged_writes() {
    let mut cluster = ProcessCluster::start(1);
    wait_all_healthy(&cluster).await;
    cluster.kill_node(1);
    let data_dir = cluster.data_dir(1);
    let saved = cluster.dir().join("saved");
    copy_dir(&data_dir, &saved);
    let mount = match Tmpfs::mount(&data_dir, "3m") {
        Ok(mount) => mount,
        Err(why) => {
            println!("skipped: cannot mount a small tmpfs to fill ({why})");
            return;
        }
    };
    copy_dir(&saved, &data_dir);
    cluster.start_node(1);
    wait_all_healthy(&cluster).await;

    let http = client();
    // Random, so that fjall's compression cannot shrink it.
    let value = || -> String {
        let rng = rand::thread_rng();
        rng.sample_iter(&rand::distributions::Alphanumeric)
            .take(64 * 1024)
            .map(char::from)
            .collect()
    };
    let mut outcomes = Outcomes::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0.. {
        assert!(Instant::now() < deadline, "the disk never filled up");
        let (key, value) = (format!("big-{n}"), value());
        let put = http
            .put(format!("{}/v1/kv/{key}", cluster.url(1)))
            .body(value.clone())
            .send()
            .await;
        match put {
            Ok(r) if r.status().is_success() => {
                outcomes.acked.insert(key, value);
            }
            _ => {
                outcomes.maybe.insert(key, value);
                if let Some(status) = cluster.wait_exit(1, Duration::from_millis(500)) {
                    assert_eq!(
                        status.code(),
                        Some(WRITE_FAILURE_EXIT_CODE),
                        "exit status {status}; log:\n{}",
                        cluster.log(1)
                    );
                    break;
                }
            }
        }
    }
    let log = cluster.log(1);
    assert!(
        log.contains("write failed:")
            && log.contains("stopping the node so no unwritten data is acknowledged"),
        "{log}"
    );
    assert!(!log.contains("panic"), "{log}");
    let failure = log.lines().find(|l| l.contains("write failed:"));
    println!("the node stopped: {}", failure.unwrap_or_default());
    assert!(outcomes.acked.len() > 3, "{} acked", outcomes.acked.len());

    // Moved to a disk with room, the store has every acknowledged write.
    let full = cluster.dir().join("full");
    copy_dir(&data_dir, &full);
    drop(mount);
    std::fs::remove_dir_all(&data_dir).unwrap();
    copy_dir(&full, &data_dir);
    cluster.start_node(1);
    wait_all_healthy(&cluster).await;
    check(&outcomes, &scan_all(&cluster, 1).await);
}
