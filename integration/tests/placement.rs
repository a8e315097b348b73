//! The embedded placement driver against real processes: a dead store's replicas are
//! rebuilt elsewhere, a joining store gets a fair share, a drained store ends up a
//! tombstone, emptied regions merge back, region and peer ids come from the PD, and no
//! data is lost along the way.
//!
//! Each scenario writes enough data through REST for the key space to split into about a
//! dozen small regions, waits until the placement driver has settled it (every region
//! with exactly three replicas), changes the cluster, and waits for the new placement,
//! observed from the regions' leaders and the PD's own view (`GET /v1/admin/cluster`).
//! Heartbeats are fast (200 ms) and a store is down after 4 s of silence, so each
//! scenario takes seconds, not the production defaults' minutes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use tinykv_integration::process::{ctl_binary, ProcessCluster};
use tinykv_integration::rest::{eventually, get_json, must_get, must_put, post_json};

const SMALL_REGIONS: &str =
    "region_max_size = 65536\nregion_split_size = 49152\nsplit_check_tick_ms = 200\n";
const FAST_PD: &str = "[pd]\nheartbeat_interval_ms = 200\nbalance_interval_ms = 200\n\
    max_store_disconnect_time_ms = 1000\nmax_store_down_time_ms = 4000\n";
const KEYS: u64 = 1500;

fn value_of(i: u64) -> String {
    format!("{i:05}-{}", "v".repeat(400))
}

/// Starts `count` nodes and writes [`KEYS`] keys through them.
async fn loaded_cluster(count: u64) -> (ProcessCluster, reqwest::Client) {
    let cluster = ProcessCluster::start_with_raftstore_and_config(count, SMALL_REGIONS, FAST_PD);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for id in 1..=count {
        cluster.wait_healthy(id, &http).await;
    }
    futures::stream::iter(0..KEYS)
        .map(|i| {
            let (http, cluster) = (&http, &cluster);
            async move {
                must_put(
                    http,
                    cluster,
                    1 + i % count,
                    &format!("key{i:05}"),
                    &value_of(i),
                )
                .await
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
    (cluster, http)
}

/// Reads every key back through node `via`.
async fn assert_all_data(http: &reqwest::Client, cluster: &ProcessCluster, via: u64) {
    let mut found = 0u64;
    let mut start = String::new();
    loop {
        let url = format!("{}/v1/kv?start={start}&limit=1000", cluster.url(via));
        let page = get_json(http, &url).await;
        let kvs = page["kvs"]
            .as_array()
            .unwrap_or_else(|| panic!("{url}: {page}"));
        for kv in kvs {
            assert_eq!(kv["key"], format!("key{found:05}"));
            assert_eq!(kv["value"], value_of(found));
            found += 1;
        }
        if kvs.len() < 1000 {
            break;
        }
        start = format!("{}%00", kvs.last().unwrap()["key"].as_str().unwrap());
    }
    assert_eq!(found, KEYS, "every key is still there");
}

/// A region as its leader reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LedRegion {
    start: String,
    end: String,
    stores: BTreeSet<u64>,
}

/// The regions as their leaders on the `live` nodes report them, by start key; `None`
/// unless they tile the key space (every region has a leader that answered).
async fn led_regions(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    live: &[u64],
) -> Option<BTreeMap<String, LedRegion>> {
    let mut regions = BTreeMap::new();
    for &id in live {
        let url = format!("{}/v1/admin/regions", cluster.url(id));
        let Ok(response) = http.get(&url).send().await else {
            return None;
        };
        let body: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
        for region in body["regions"].as_array()? {
            if region["leader"]["store_id"].as_u64() != Some(id) {
                continue;
            }
            let led = LedRegion {
                start: region["start_key"].as_str()?.to_string(),
                end: region["end_key"].as_str()?.to_string(),
                stores: region["peers"]
                    .as_array()?
                    .iter()
                    .filter_map(|p| p["store_id"].as_u64())
                    .collect(),
            };
            regions.insert(led.start.clone(), led);
        }
    }
    // Keys are shown percent-encoded, so the map's order is not the key order: follow
    // the chain of ranges from the first region instead.
    let mut start = String::new();
    for visited in 1..=regions.len() {
        start = regions.get(&start)?.end.clone();
        if start.is_empty() {
            return (visited == regions.len()).then_some(regions);
        }
    }
    None
}

/// Waits until every region has exactly three replicas, all on `allowed` stores (asked
/// of the `live` nodes) and `also` holds for the PD's cluster view and those regions;
/// returns the regions.
async fn wait_for_placement(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    live: &[u64],
    allowed: &[u64],
    timeout: Duration,
    also: impl Fn(&Value, &BTreeMap<String, LedRegion>) -> bool,
) -> BTreeMap<String, LedRegion> {
    let deadline = Instant::now() + timeout;
    loop {
        let regions = led_regions(http, cluster, live).await;
        let view = get_json(http, &format!("{}/v1/admin/cluster", cluster.url(live[0]))).await;
        if let Some(regions) = &regions {
            let placed = regions
                .values()
                .all(|r| r.stores.len() == 3 && r.stores.iter().all(|s| allowed.contains(s)));
            if placed && also(&view, regions) {
                return regions.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "placement not reached in {timeout:?}: regions {regions:#?}\nPD view {view}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Store `id` in the PD's cluster view.
fn pd_store(view: &Value, id: u64) -> &Value {
    view["stores"]
        .as_array()
        .and_then(|stores| stores.iter().find(|s| s["id"] == id))
        .unwrap_or(&Value::Null)
}

async fn post(http: &reqwest::Client, url: String) -> (u16, Value) {
    let response = http
        .post(&url)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_stores_replicas_are_rebuilt_on_the_other_stores() {
    let (mut cluster, http) = loaded_cluster(5).await;
    let all = [1, 2, 3, 4, 5];
    // Region 1 started with a peer on each of the five stores: the PD trims every region
    // to three replicas.
    // Splits run while the PD places: wait for both.
    let split = |_: &Value, regions: &BTreeMap<String, LedRegion>| regions.len() >= 6;
    let regions =
        wait_for_placement(&http, &cluster, &all, &all, Duration::from_secs(90), split).await;
    assert!(
        regions.len() >= 6,
        "the data split into regions: {regions:#?}"
    );

    // Kill the store holding the most replicas, for good.
    let victim = *all
        .iter()
        .max_by_key(|&&id| regions.values().filter(|r| r.stores.contains(&id)).count())
        .unwrap();
    cluster.kill_node(victim);
    let live: Vec<u64> = all.iter().copied().filter(|&id| id != victim).collect();
    wait_for_placement(
        &http,
        &cluster,
        &live,
        &live,
        Duration::from_secs(120),
        |view, _| {
            pd_store(view, victim)["is_down"] == true && pd_store(view, victim)["region_count"] == 0
        },
    )
    .await;
    assert_all_data(&http, &cluster, live[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_store_receives_a_fair_share_of_the_replicas() {
    let (mut cluster, http) = loaded_cluster(3).await;
    let regions = wait_for_placement(
        &http,
        &cluster,
        &[1, 2, 3],
        &[1, 2, 3],
        Duration::from_secs(60),
        |_, regions| regions.len() >= 6,
    )
    .await;
    assert!(
        regions.len() >= 6,
        "the data split into regions: {regions:#?}"
    );

    let joined = cluster.add_joining_node();
    cluster.wait_healthy(joined, &http).await;
    let health = get_json(&http, &format!("{}/health?live", cluster.url(joined))).await;
    assert_eq!(
        health["store_id"], joined,
        "the PD gave it the next store id"
    );

    let all = [1, 2, 3, joined];
    let fair = |view: &Value, _: &BTreeMap<String, LedRegion>| {
        let counts: Vec<u64> = all
            .iter()
            .map(|&id| pd_store(view, id)["region_count"].as_u64().unwrap_or(0))
            .collect();
        let total: u64 = counts.iter().sum();
        // Balance-region stops once the stores differ by at most two regions' worth.
        counts[3] + 2 >= total / 4 && counts[3] > 0
    };
    let regions =
        wait_for_placement(&http, &cluster, &all, &all, Duration::from_secs(120), fair).await;
    let on_joined = regions
        .values()
        .filter(|r| r.stores.contains(&joined))
        .count();
    assert!(on_joined > 0, "{regions:#?}");

    // Its identity survives a restart, and the cluster keeps it.
    cluster.kill_node(joined);
    cluster.start_node(joined);
    cluster.wait_healthy(joined, &http).await;
    let health = get_json(&http, &format!("{}/health?live", cluster.url(joined))).await;
    assert_eq!(health["store_id"], joined);
    assert_all_data(&http, &cluster, joined).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_taken_offline_is_drained_and_becomes_a_tombstone() {
    let (cluster, http) = loaded_cluster(4).await;
    let all = [1, 2, 3, 4];
    wait_for_placement(
        &http,
        &cluster,
        &all,
        &all,
        Duration::from_secs(90),
        |view, _| pd_store(view, 4)["region_count"].as_u64() > Some(0),
    )
    .await;

    let (status, body) = post(
        &http,
        format!("{}/v1/admin/stores/4/offline", cluster.url(2)),
    )
    .await;
    assert_eq!(
        (status, &body["store"]["state"]),
        (200, &Value::from("Offline")),
        "{body}"
    );

    let rest = [1, 2, 3];
    wait_for_placement(
        &http,
        &cluster,
        &all,
        &rest,
        Duration::from_secs(120),
        |view, _| pd_store(view, 4)["state"] == "Tombstone",
    )
    .await;
    assert_all_data(&http, &cluster, 1).await;

    // A tombstone stays one, and the last three stores cannot be drained.
    let (status, body) = post(
        &http,
        format!("{}/v1/admin/stores/4/offline", cluster.url(1)),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &Value::from("store_tombstone")),
        "{body}"
    );
    let (status, body) = post(
        &http,
        format!("{}/v1/admin/stores/1/offline", cluster.url(3)),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &Value::from("not_enough_stores")),
        "{body}"
    );
    let view = get_json(&http, &format!("{}/v1/admin/cluster", cluster.url(1))).await;
    assert_eq!(
        pd_store(&view, 1)["state"],
        "Up",
        "a refused drain changes nothing"
    );

    // The same through tinykv-ctl.
    let ctl = |args: &[&str]| {
        let addr = cluster.url(3).replace("http://", "");
        let output = std::process::Command::new(ctl_binary())
            .args(["--addr", &addr])
            .args(args)
            .output()
            .expect("run tinykv-ctl");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr),
        )
    };
    let (code, stdout, _) = ctl(&["cluster"]);
    assert_eq!(code, Some(0));
    let store_4 = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("4 "))
        .unwrap_or_else(|| panic!("no row for store 4:\n{stdout}"));
    assert!(store_4.contains("Tombstone"), "{stdout}");
    let (code, _, stderr) = ctl(&["store", "offline", "4"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("store_tombstone"), "{stderr}");
}

/// Deletes `key` through node `id`, retrying until it is acknowledged.
async fn must_delete(http: &reqwest::Client, cluster: &ProcessCluster, id: u64, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = http
            .delete(format!("{}/v1/kv/{key}", cluster.url(id)))
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() || r.status() == 404 => return,
            Ok(r) => assert!(
                r.status().is_server_error() && Instant::now() < deadline,
                "delete {key} on node {id}: {}",
                r.status()
            ),
            Err(e) => assert!(Instant::now() < deadline, "delete {key} on node {id}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 16: deleting data shrinks the region count again. Regions split as the keys
/// arrive; once they are deleted, the placement driver merges the emptied neighbours
/// (each pair once both have been known for a second) until one data region is left
/// beside the meta region, and the data written afterwards lands in it.
#[tokio::test]
async fn regions_emptied_by_deletes_merge_back_into_one() {
    const MERGING_PD: &str = "[pd]\nheartbeat_interval_ms = 200\nbalance_interval_ms = 200\n\
        max_store_disconnect_time_ms = 1000\nmax_store_down_time_ms = 4000\n\
        max_merge_region_size = 16384\nsplit_merge_interval_ms = 1000\n";
    const COUNT: u64 = 3;
    let cluster = ProcessCluster::start_with_raftstore_and_config(COUNT, SMALL_REGIONS, MERGING_PD);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for id in 1..=COUNT {
        cluster.wait_healthy(id, &http).await;
    }
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key{i:05}")).collect();
    futures::stream::iter(keys.iter().enumerate())
        .map(|(i, key)| {
            let (http, cluster) = (&http, &cluster);
            async move {
                must_put(
                    http,
                    cluster,
                    1 + i as u64 % COUNT,
                    key,
                    &value_of(i as u64),
                )
                .await
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
    let live: Vec<u64> = (1..=COUNT).collect();
    let count_regions = || async { led_regions(&http, &cluster, &live).await.map(|r| r.len()) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let split = loop {
        if let Some(n) = count_regions().await.filter(|n| *n >= 6) {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "the keys never split into regions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    futures::stream::iter(keys.iter().enumerate())
        .map(|(i, key)| {
            let (http, cluster) = (&http, &cluster);
            async move { must_delete(http, cluster, 1 + i as u64 % COUNT, key).await }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // One data region and the meta region.
        if count_regions().await == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{split} regions did not merge back (now {:?})",
            count_regions().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing but merges takes regions away; the PD's operator history is not asked
    // for, as a change of PD leadership (which starts an empty one) may come between.
    for (i, key) in keys.iter().enumerate().step_by(97) {
        assert_eq!(
            must_get(&http, &cluster, 1 + i as u64 % COUNT, key).await,
            None
        );
    }
    must_put(&http, &cluster, 2, "after-merge", "v").await;
    assert_eq!(
        must_get(&http, &cluster, 3, "after-merge").await.as_deref(),
        Some("v")
    );
}

/// Splits region `region` at `key` through node `via`, within the admin deadline plus a
/// margin for the elections a stopped node leaves behind; returns the new regions.
async fn must_split(
    http: &reqwest::Client,
    cluster: &ProcessCluster,
    via: u64,
    region: u64,
    key: &str,
) -> Vec<Value> {
    let url = format!("{}/v1/admin/regions/{region}/split", cluster.url(via));
    eventually(
        &format!("split region {region} at {key:?} through node {via}"),
        Duration::from_secs(30),
        || async {
            let (status, body) = post_json(http, &url, &serde_json::json!({ "key": key })).await;
            assert!(status == 200 || status >= 500, "{status}: {body}");
            (status == 200).then(|| body["regions"].as_array().cloned().unwrap_or_default())
        },
    )
    .await
}

/// Every region id and peer id in `regions` (a split's answer).
fn ids_of(regions: &[Value]) -> Vec<u64> {
    let mut ids = Vec::new();
    for region in regions {
        ids.push(region["id"].as_u64().unwrap());
        for peer in region["peers"].as_array().unwrap() {
            ids.push(peer["id"].as_u64().unwrap());
        }
    }
    ids
}

/// Region and peer ids come from the placement driver, as in TinyKV: small numbers from
/// 1000 on, never handed out twice, not after the PD's leader dies and not to a node
/// that restarts with an empty pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_and_peer_ids_come_from_the_placement_driver() {
    let mut cluster = ProcessCluster::start_with_raftstore_and_config(3, "", FAST_PD);
    let http = tinykv::security::http_client_builder().build().unwrap();
    for id in 1..=3 {
        cluster.wait_healthy(id, &http).await;
    }
    let mut handed_out = Vec::new();
    let mut record = |regions: &[Value]| {
        // The region that was split keeps its id; the new one is the PD's.
        let new: Vec<Value> = regions.iter().filter(|r| r["id"] != 1).cloned().collect();
        assert_eq!(new.len(), 1, "{regions:?}");
        let ids = ids_of(&new);
        assert_eq!(ids.len(), 4, "a region id and three peer ids: {new:?}");
        for id in &ids {
            assert!(
                (1000..1 << 40).contains(id),
                "id {id} is not the PD's: {new:?}"
            );
        }
        handed_out.extend(ids);
    };
    record(&must_split(&http, &cluster, 1, 1, "f").await);

    let view = get_json(&http, &format!("{}/v1/admin/cluster", cluster.url(1))).await;
    let pd_leader = view["pd_leader_store"].as_u64().expect("a PD leader");
    assert!(cluster.stop_node(pd_leader), "node {pd_leader} stopped");
    let other = (1..=3).find(|id| *id != pd_leader).unwrap();
    record(&must_split(&http, &cluster, other, 1, "d").await);

    // Restarted, the node has no ids at hand until the (new) PD gives it some.
    cluster.start_node(pd_leader);
    cluster.wait_healthy(pd_leader, &http).await;
    record(&must_split(&http, &cluster, pd_leader, 1, "b").await);

    let mut distinct = handed_out.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        handed_out.len(),
        "an id was handed out twice: {handed_out:?}"
    );
}
