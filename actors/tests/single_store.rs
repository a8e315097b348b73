//! One store, one region: the whole write and read path through the actors, and a restart
//! over the same directory.

use std::sync::Arc;
use std::time::Duration;

use tinykv_actors::ensure_bootstrapped;
use tinykv_actors::{start_store, Engine, RaftStoreConfig, SequentialIds, Transport};
use tinykv_proto::raft_cmdpb::{CmdType, GetRequest, PutRequest, RaftCmdRequest, Request};
use tinykv_proto::raft_serverpb::RaftMessage;

struct NoNetwork;

impl Transport for NoNetwork {
    fn send(&self, _: RaftMessage) {
        panic!("a single-peer region sends no messages");
    }
}

fn put(key: &[u8], value: &[u8]) -> RaftCmdRequest {
    RaftCmdRequest {
        requests: vec![Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: "default".into(),
                key: key.to_vec(),
                value: value.to_vec(),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn get(key: &[u8]) -> RaftCmdRequest {
    RaftCmdRequest {
        requests: vec![Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: "default".into(),
                key: key.to_vec(),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

const T: Duration = Duration::from_secs(10);

#[actix_rt::test]
async fn writes_are_read_back_and_survive_restart() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    for round in 0..2u32 {
        let engine = Engine::open(dir.path()).unwrap();
        ensure_bootstrapped(&engine, 1, 1, &[1]).unwrap();
        let store = start_store(
            RaftStoreConfig::for_tests(),
            engine,
            Arc::new(NoNetwork),
            Arc::new(SequentialIds::starting_at(1000)),
        )
        .await
        .unwrap();
        let router = store.router();
        if round == 0 {
            for i in 0..100u32 {
                let key = format!("k{i:03}");
                let resp = router
                    .key_command(key.clone().into_bytes(), put(key.as_bytes(), b"v"), T)
                    .await
                    .unwrap();
                assert!(resp.err().is_none(), "{:?}", resp.err());
                assert_eq!(resp.response.responses.len(), 1);
            }
        }
        for i in [0u32, 50, 99] {
            let key = format!("k{i:03}").into_bytes();
            let resp = router.key_command(key.clone(), get(&key), T).await.unwrap();
            assert!(resp.err().is_none(), "{:?}", resp.err());
            assert_eq!(resp.response.responses[0].get.as_ref().unwrap().value, b"v");
        }
        let status = router.region_status(1).await.unwrap().unwrap();
        assert!(status.applied_index >= 105, "{status:?}");
        store.shutdown().await;
    }
}
