//! Batch splits: one raft command that cuts a region into many, the way the admin API
//! makes many regions at once and the size check cuts a region that grew far past its
//! maximum. The pieces must cover the range exactly, survive restarts, reach a store that
//! was cut off while they were made, and a command built from an old view of the region
//! must change nothing.

use tinykv_actors::{Cf, Error, RaftStoreConfig};
use tinykv_integration::cluster::Cluster;
use tinykv_integration::network::PartitionFilter;
use tinykv_proto::metapb;
use tinykv_proto::raft_cmdpb::{RaftCmdRequest, RaftRequestHeader};

fn key(i: usize) -> Vec<u8> {
    format!("k{i:03}").into_bytes()
}

/// The split keys k005, k010, ..., k095: twenty pieces of the key space k000..k099 (the
/// first also holds everything below k005, the last everything from k095 on).
fn split_keys() -> Vec<Vec<u8>> {
    (1..20).map(|i| key(5 * i)).collect()
}

/// Asserts that `regions`, in key order, tile the whole key space with boundaries at
/// exactly `keys`, each with a peer on every one of `stores`.
fn assert_tiles(regions: &[metapb::Region], keys: &[Vec<u8>], stores: &[u64]) {
    assert_eq!(regions.len(), keys.len() + 1, "{regions:?}");
    let mut bounds = vec![vec![]];
    bounds.extend(keys.iter().cloned());
    bounds.push(vec![]);
    for (region, bound) in regions.iter().zip(bounds.windows(2)) {
        assert_eq!(
            (&region.start_key, &region.end_key),
            (&bound[0], &bound[1]),
            "{region:?}"
        );
        let mut on: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
        on.sort_unstable();
        assert_eq!(on, stores, "{region:?}");
    }
}

#[actix_rt::test]
async fn a_batch_split_reaches_a_store_cut_off_while_it_was_made() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    for i in 0..100 {
        client.must_put(&key(i), b"before").await;
    }
    let original = cluster.region_for_key(&key(0)).await;
    cluster
        .network()
        .add_filter(PartitionFilter::isolate(3, cluster.store_ids()));
    let keys = split_keys();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    cluster.must_split(original.id, &refs).await;
    assert_tiles(&cluster.regions().await, &keys, &[1, 2, 3]);

    // Every piece serves reads of what was written before, and takes new writes.
    for i in 0..100 {
        assert_eq!(
            client.must_get(&key(i)).await.as_deref(),
            Some(&b"before"[..])
        );
        client.must_put(&key(i), b"after").await;
    }
    // Once the partition heals, the cut-off store creates every piece and applies
    // the writes made to each of them.
    cluster.network().clear_filters();
    for i in (0..100).step_by(5) {
        cluster
            .wait_engine_value(3, Cf::Default, &key(i), Some(b"after"))
            .await;
    }
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_batch_split_survives_a_crash_of_every_store() {
    tinykv_integration::init_test_logging();
    let mut cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    for i in 0..100 {
        client.must_put(&key(i), b"v").await;
    }
    let original = cluster.region_for_key(&key(0)).await;
    // Store 2 is down while the split is made: it learns it from the log on its return.
    cluster.stop_store(2).await;
    let keys = split_keys();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    cluster.must_split(original.id, &refs).await;
    cluster.start_store(2).await;
    cluster.restart_all().await;

    let client = cluster.client();
    for i in 0..100 {
        assert_eq!(client.must_get(&key(i)).await.as_deref(), Some(&b"v"[..]));
    }
    assert_tiles(&cluster.regions().await, &keys, &[1, 2, 3]);
    client.must_put(&key(99), b"w").await;
    cluster
        .wait_engine_value(2, Cf::Default, &key(99), Some(b"w"))
        .await;
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_batch_split_from_an_old_view_or_with_bad_keys_changes_nothing() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(3, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    client.must_put(b"k050", b"v").await;
    let original = cluster.region_for_key(b"k050").await;
    cluster.must_split(original.id, &[b"k050"]).await;
    let (leader, left) = cluster.leader_region(original.id).await.unwrap();

    let batch = |epoch, keys: Vec<Vec<u8>>| {
        let ids: Vec<u64> = (0..keys.len() * 4).map(|_| cluster.alloc_id()).collect();
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: original.id,
                region_epoch: epoch,
                ..Default::default()
            }),
            admin_request: Some(tinykv_actors::split_request(keys, &ids)),
            ..Default::default()
        }
    };
    // Built from the region before the first split: its version is stale.
    let stale = batch(
        original.region_epoch,
        vec![b"k010".to_vec(), b"k020".to_vec()],
    );
    let refused = cluster.command_on(leader.store_id, stale).await;
    assert!(
        matches!(refused, Some(Error::EpochNotMatch { .. })),
        "{refused:?}"
    );
    // Current epoch, but a key past the region's end (k050): nothing may be cut.
    let outside = batch(left.region_epoch, vec![b"k010".to_vec(), b"k060".to_vec()]);
    let refused = cluster.command_on(leader.store_id, outside).await;
    assert!(
        matches!(refused, Some(Error::KeyNotInRegion { .. })),
        "{refused:?}"
    );
    // Keys out of order are refused before they reach the log.
    let unordered = batch(left.region_epoch, vec![b"k020".to_vec(), b"k010".to_vec()]);
    let refused = cluster.command_on(leader.store_id, unordered).await;
    assert!(
        matches!(refused, Some(Error::InvalidRequest(_))),
        "{refused:?}"
    );
    let (_, now) = cluster.leader_region(original.id).await.unwrap();
    assert_eq!(now, left, "a refused split changed the region");
    assert_eq!(cluster.regions().await.len(), 2);
    cluster.shutdown().await;
}
