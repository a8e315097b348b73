//! TinyKV's TestTransferLeader3B: leadership moves to each store in turn on request.

use tinykv_actors::RaftStoreConfig;
use tinykv_integration::cluster::Cluster;
use tinykv_proto::metapb::Peer;

#[actix_rt::test]
async fn transfer_leader() {
    tinykv_integration::init_test_logging();
    let cluster = Cluster::start(5, RaftStoreConfig::for_tests()).await;
    let client = cluster.client();
    for id in 1..=5u64 {
        cluster
            .must_transfer_leader(1, Peer { id, store_id: id })
            .await;
        // The new leader serves.
        let key = format!("after-transfer-{id}");
        client.must_put(key.as_bytes(), b"v").await;
        assert_eq!(
            client.must_get(key.as_bytes()).await.as_deref(),
            Some(&b"v"[..])
        );
    }
    cluster.shutdown().await;
}
