//! TinyKV's `GenericTest`: concurrent clients appending and scanning under chaos.
//!
//! A 5-store cluster runs three iterations. In each, every client loops: with equal
//! chance it appends (puts key `"<client> <j>"` = `"x <client> <j> y"`, then j += 1) or it
//! scans its own keys and checks that the values are exactly its acknowledged appends, in
//! order — a per-client linearizability check. Meanwhile, depending on the scenario, a
//! chaos task repartitions the stores at random and/or drops a growing share of messages.
//! After the iteration's time is up the chaos stops and the network heals before the
//! clients finish their last operation, the cluster optionally crashes
//! (every store stopped and restarted over its data), and each client's keys are scanned
//! one last time: every acknowledged append must be there exactly once and in order. The
//! keys are then deleted so the next iteration starts empty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tinykv_actors::RaftStoreConfig;

use crate::cluster::{Cluster, ClusterClient};
use crate::network::{DropFilter, PartitionFilter, SimNetwork};

/// One scenario; see the module documentation. Build with [`GenericTest::new`] and the
/// `with_*` methods, then [`GenericTest::run`].
#[derive(Debug, Clone)]
pub struct GenericTest {
    /// Concurrent clients.
    pub clients: usize,
    /// Drop messages (an accumulating 10% per chaos round).
    pub unreliable: bool,
    /// Stop and restart every store at the end of each iteration.
    pub crash: bool,
    /// Repartition the stores at random every election timeout.
    pub partitions: bool,
    /// Stores in the cluster.
    pub stores: u64,
    /// Iterations.
    pub iterations: usize,
    /// How long clients run in each iteration.
    pub run_for: Duration,
    /// Compact the log every this many entries, and check it stays within twice that.
    pub max_raft_log: Option<u64>,
    /// Add and remove random peers of random regions throughout.
    pub conf_change: bool,
    /// Use tiny regions (split at 300 bytes) and check that splits happened.
    pub split: bool,
    /// Raftstore settings.
    pub config: RaftStoreConfig,
}

impl GenericTest {
    /// A reliable, crash-free scenario with `clients` clients, as TinyKV configures it.
    pub fn new(clients: usize) -> GenericTest {
        GenericTest {
            clients,
            unreliable: false,
            crash: false,
            partitions: false,
            stores: 5,
            iterations: 3,
            run_for: Duration::from_secs(5),
            max_raft_log: None,
            conf_change: false,
            split: false,
            config: RaftStoreConfig::for_tests(),
        }
    }

    /// Adds message loss.
    pub fn unreliable(mut self) -> Self {
        self.unreliable = true;
        self
    }

    /// Adds a full-cluster crash and restart per iteration.
    pub fn crash(mut self) -> Self {
        self.crash = true;
        self
    }

    /// Compacts the raft log every `limit` entries and checks the logs stay bounded.
    pub fn max_raft_log(mut self, limit: u64) -> Self {
        self.max_raft_log = Some(limit);
        self.config.raft_log_gc_count_limit = limit;
        self
    }

    /// Adds random membership changes.
    pub fn conf_change(mut self) -> Self {
        self.conf_change = true;
        self
    }

    /// Uses tiny regions (max 300 bytes, split at 200) so they split constantly.
    pub fn split(mut self) -> Self {
        self.split = true;
        self.config.region_max_size = 300;
        self.config.region_split_size = 200;
        self
    }

    /// Adds random partitions.
    pub fn partitions(mut self) -> Self {
        self.partitions = true;
        self
    }

    /// Runs the scenario, panicking on the first violated expectation.
    pub async fn run(self) {
        crate::init_test_logging();
        let election = self.config.election_timeout();
        let mut cluster = Cluster::start(self.stores, self.config.clone()).await;
        let mut written = 0u64;
        for iteration in 0..self.iterations {
            tracing::info!(iteration, "starting iteration");
            let done = Arc::new(AtomicBool::new(false));
            let clients: Vec<_> = (0..self.clients)
                .map(|cli| tokio::spawn(client_loop(cli, cluster.client(), done.clone())))
                .collect();
            let chaos = (self.unreliable || self.partitions).then(|| {
                tokio::spawn(chaos_loop(
                    cluster.network().clone(),
                    cluster.store_ids(),
                    election,
                    self.unreliable,
                    self.partitions,
                    done.clone(),
                ))
            });
            let cluster_ref = &cluster;
            let conf_changer = async {
                if self.conf_change {
                    conf_change_loop(cluster_ref, done.clone()).await;
                }
            };
            let timer = async {
                tokio::time::sleep(self.run_for).await;
                done.store(true, Ordering::SeqCst);
            };
            futures::join!(conf_changer, timer);
            // As in TinyKV: stop the chaos and heal the network first, then wait for each
            // client to finish the operation it is in (it may need the healed network).
            if let Some(chaos) = chaos {
                chaos.await.expect("chaos task panicked");
            }
            cluster.network().clear_filters();
            let mut appended = Vec::with_capacity(clients.len());
            for client in clients {
                appended.push(client.await.expect("client panicked"));
            }
            if self.crash {
                cluster.restart_all().await;
            }
            let client = cluster.client();
            for (cli, &count) in appended.iter().enumerate() {
                check_appends(&cluster, &client, cli, count).await;
                for j in 0..count {
                    client
                        .must_delete_cf(tinykv_actors::Cf::Default, key(cli, j).as_bytes())
                        .await;
                }
            }
            if let Some(limit) = self.max_raft_log {
                cluster.wait_all_logs_bounded(2 * limit).await;
            }
            written += appended
                .iter()
                .enumerate()
                .flat_map(|(cli, &n)| (0..n).map(move |j| key(cli, j).len() + value(cli, j).len()))
                .sum::<usize>() as u64;
            // Once twice the maximum region size has been written, a split was due (and
            // splits are never undone).
            if self.split && written > 2 * self.config.region_max_size {
                let first = cluster.region_for_key(b"").await;
                assert!(
                    !first.end_key.is_empty(),
                    "{written} bytes written but the first region never split: {first:?}"
                );
            }
            tracing::info!(iteration, ?appended, "iteration passed");
        }
        cluster.shutdown().await;
    }
}

fn key(cli: usize, j: usize) -> String {
    format!("{cli} {j:08}")
}

fn value(cli: usize, j: usize) -> String {
    format!("x {cli} {j} y")
}

fn client_range(cli: usize) -> (Vec<u8>, Vec<u8>) {
    (
        key(cli, 0).into_bytes(),
        format!("{cli} 99999999").into_bytes(),
    )
}

/// Appends and scans until `done`; returns how many appends were acknowledged.
async fn client_loop(cli: usize, client: ClusterClient, done: Arc<AtomicBool>) -> usize {
    let mut appended = 0;
    let mut expected = String::new();
    while !done.load(Ordering::SeqCst) {
        if rand::thread_rng().gen_bool(0.5) {
            let v = value(cli, appended);
            client
                .must_put(key(cli, appended).as_bytes(), v.as_bytes())
                .await;
            expected.push_str(&v);
            appended += 1;
        } else {
            let (start, _) = client_range(cli);
            let end = key(cli, appended).into_bytes();
            let pairs = client.must_scan(&start, &end).await;
            let got: String = pairs
                .iter()
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect();
            assert_eq!(
                got, expected,
                "client {cli}: scan does not match its appends"
            );
        }
    }
    appended
}

/// Every acknowledged append of `cli` is present exactly once, in order, and nothing else.
async fn check_appends(cluster: &Cluster, client: &ClusterClient, cli: usize, count: usize) {
    let (start, end) = client_range(cli);
    let pairs = client.must_scan(&start, &end).await;
    let values: Vec<String> = pairs
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    let expected: Vec<String> = (0..count).map(|j| value(cli, j)).collect();
    if values != expected {
        explain_mismatch(cluster, client, cli, count, &pairs).await;
    }
    assert_eq!(
        values.len(),
        expected.len(),
        "client {cli}: {} values stored but {count} appends acknowledged",
        values.len()
    );
    for (j, (got, want)) in values.iter().zip(&expected).enumerate() {
        assert_eq!(
            got, want,
            "client {cli}: append {j} is missing, duplicated or out of order"
        );
    }
}

/// Logs what a failed final check needs to be understood: the keys missing from the scan,
/// the region holding each and every peer's view of it, each running store's own copy of
/// the key, and whether a second scan a moment later finds it (a stale read) or not (a
/// lost write).
async fn explain_mismatch(
    cluster: &Cluster,
    client: &ClusterClient,
    cli: usize,
    count: usize,
    pairs: &[(Vec<u8>, Vec<u8>)],
) {
    let scanned: std::collections::HashSet<&[u8]> =
        pairs.iter().map(|(k, _)| k.as_slice()).collect();
    let missing: Vec<usize> = (0..count)
        .filter(|&j| !scanned.contains(key(cli, j).as_bytes()))
        .collect();
    tracing::error!(
        cli,
        count,
        ?missing,
        "final scan misses acknowledged appends"
    );
    for &j in &missing {
        let k = key(cli, j);
        let region = cluster.region_for_key(k.as_bytes()).await;
        let on_stores: Vec<(u64, bool)> = cluster
            .store_ids()
            .into_iter()
            .map(|id| {
                let held = cluster
                    .engine_get(id, tinykv_actors::Cf::Default, k.as_bytes())
                    .is_some();
                (id, held)
            })
            .collect();
        let statuses = cluster.region_statuses(region.id).await;
        tracing::error!(key = %k, ?region, ?on_stores, ?statuses, "missing append");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = client
        .must_scan(&client_range(cli).0, &client_range(cli).1)
        .await;
    tracing::error!(
        first = pairs.len(),
        again = again.len(),
        "the same scan two seconds later"
    );
}

/// TinyKV's conf changer: every 0–200 ms, picks a random region and store; removes the
/// region's peer there if it has one and more than one peer, else adds a peer there. A
/// change that cannot complete within 3 s (the network may be partitioned) is abandoned.
async fn conf_change_loop(cluster: &Cluster, done: Arc<AtomicBool>) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stores = cluster.store_ids();
    while !done.load(Ordering::SeqCst) {
        let regions = cluster.regions().await;
        let (region, store) = {
            let mut rng = rand::thread_rng();
            let region = regions[rng.gen_range(0..regions.len())].clone();
            (region, stores[rng.gen_range(0..stores.len())])
        };
        let timeout = Duration::from_secs(3);
        match region.peers.iter().find(|p| p.store_id == store) {
            Some(peer) if region.peers.len() > 1 => {
                cluster.try_remove_peer(region.id, *peer, timeout).await;
            }
            Some(_) => {}
            None => {
                let peer = tinykv_proto::metapb::Peer {
                    id: cluster.alloc_id(),
                    store_id: store,
                };
                cluster.try_add_peer(region.id, peer, timeout).await;
            }
        }
        let pause = rand::thread_rng().gen_range(0..200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Every election timeout (plus up to 200 ms), re-partitions the stores at random and/or
/// adds another 10% message loss.
async fn chaos_loop(
    network: Arc<SimNetwork>,
    stores: Vec<u64>,
    election: Duration,
    unreliable: bool,
    partitions: bool,
    done: Arc<AtomicBool>,
) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    while !done.load(Ordering::SeqCst) {
        if partitions {
            network.clear_filters();
            let (left, right): (Vec<u64>, Vec<u64>) = stores
                .iter()
                .partition(|_| rand::thread_rng().gen_bool(0.5));
            network.add_filter(PartitionFilter::new(left, right));
        }
        if unreliable {
            network.add_filter(DropFilter { rate: 0.1 });
        }
        let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..200));
        tokio::time::sleep(election + jitter).await;
    }
}
