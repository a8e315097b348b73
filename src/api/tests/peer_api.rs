//! The node-to-node API on the peer listener: protobuf KV operations, forwarded requests,
//! raw raft commands, and reaching the store that holds a region.

use super::*;

#[actix_rt::test]
async fn the_node_to_node_api_speaks_protobuf_on_the_peer_listener_only() {
    let node = SingleStore::start().await;
    let served = node.serve().await;
    let protobuf = crate::server::forward::PROTOBUF_CONTENT_TYPE;
    let post = |path: &'static str, body: Vec<u8>| post_peer(served.peer, path, protobuf, body);

    let put = RawPutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    // The store may still be electing itself.
    let mut answer = RawPutResponse::default();
    for _ in 0..100 {
        let (status, body) = post("/internal/v1/raw/put", put.encode_to_vec()).await;
        assert_eq!(status, 200);
        answer = RawPutResponse::decode(body).unwrap();
        if answer == RawPutResponse::default() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer, RawPutResponse::default());

    let get = |key: &[u8], cf: &str| RawGetRequest {
        key: key.to_vec(),
        cf: cf.into(),
        ..Default::default()
    };
    let (_, body) = post("/internal/v1/raw/get", get(b"k", "default").encode_to_vec()).await;
    let response = RawGetResponse::decode(body).unwrap();
    assert_eq!(
        (response.value.as_slice(), response.not_found),
        (&b"v"[..], false)
    );
    let (_, body) = post("/internal/v1/raw/get", get(b"nope", "").encode_to_vec()).await;
    assert!(RawGetResponse::decode(body).unwrap().not_found);
    let (_, body) = post("/internal/v1/raw/get", get(b"k", "raft").encode_to_vec()).await;
    assert!(RawGetResponse::decode(body)
        .unwrap()
        .error
        .starts_with("invalid_request: "));

    // The client API's key rules hold here too: no empty, oversized or reserved keys.
    for key in [&b""[..], &[b'x'; 33][..], b"\xffpd/cluster"] {
        let put = RawPutRequest {
            key: key.to_vec(),
            value: b"not json".to_vec(),
            ..Default::default()
        };
        let (_, body) = post("/internal/v1/raw/put", put.encode_to_vec()).await;
        let error = RawPutResponse::decode(body).unwrap().error;
        assert!(
            ["empty_key", "key_too_large", "reserved_key"]
                .iter()
                .any(|code| error.starts_with(code)),
            "{key:?}: {error}"
        );
    }
    assert_eq!(
        node.store
            .engine()
            .get(Cf::Default, b"\xffpd/cluster")
            .unwrap(),
        None
    );

    let (status, body) = post("/internal/v1/raw/get", vec![0xff, 0xff]).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_protobuf"));
    let (status, body) = post_peer(served.peer, "/internal/v1/raw/get", "text/plain", vec![]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (415, "unsupported_media_type")
    );
    let (status, body) = post("/internal/v1/nothing", vec![]).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "route_not_found")
    );

    // None of it is on the client listener.
    let app = test::init_service(App::new().configure(configure(node.state.clone()))).await;
    let (status, body) = call!(
        &app,
        test::TestRequest::post()
            .uri("/internal/v1/raw/put")
            .insert_header(("content-type", protobuf))
            .set_payload(put.encode_to_vec())
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "route_not_found")
    );

    drop(app);
    served.stop().await;
    node.stop().await;
}

#[actix_rt::test]
async fn a_forwarded_request_executes_on_the_target_node() {
    let node = SingleStore::start().await;
    let served = node.serve().await;

    let forwarder = served.forwarder();
    let put = put_op(b"k");
    let outcome = until_elected(|| forwarder.forward(1, put.clone())).await;
    assert_eq!(outcome.unwrap(), KvOutcome::Written { replayed: false });
    assert_eq!(
        forwarder.forward(1, put.clone()).await.unwrap(),
        KvOutcome::Written { replayed: true },
        "the same request again is a replay"
    );
    let get = |key: &[u8]| KvOp::Get {
        cf: Cf::Default,
        key: key.to_vec(),
    };
    assert_eq!(
        forwarder.forward(1, get(b"k")).await.unwrap(),
        KvOutcome::Value(Some(b"v".to_vec()))
    );
    assert_eq!(
        forwarder.forward(1, get(b"absent")).await.unwrap(),
        KvOutcome::Value(None)
    );
    let scan = KvOp::ScanRegion {
        cf: Cf::Default,
        start: vec![],
        end: vec![],
        limit: 10,
        max_bytes: 1024,
    };
    assert_eq!(
        forwarder.forward(1, scan).await.unwrap(),
        KvOutcome::Pairs {
            pairs: vec![(b"k".to_vec(), b"v".to_vec())],
            region_end: vec![],
        }
    );

    served.stop().await;
    node.stop().await;
}

/// A read of region `region_id`, as a raw command: answered by its leader with the region.
fn region_read(region_id: u64) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id,
            ..Default::default()
        }),
        requests: vec![Request {
            cmd_type: CmdType::Snap as i32,
            snap: Some(SnapRequest {}),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn header_error(response: &RaftCmdResponse) -> Option<tinykv_actors::Error> {
    response
        .header
        .as_ref()
        .and_then(|h| h.error.as_ref())
        .map(tinykv_actors::Error::from_pb)
}

#[actix_rt::test]
async fn a_raw_command_round_trips_through_the_internal_endpoint() {
    let node = SingleStore::start().await;
    let served = node.serve().await;
    let book = AddressBook::new([served.address(1)]);
    let forwarder = HttpForwarder::new(book, Duration::from_secs(3), None).unwrap();

    // The store may still be electing itself: a read succeeds once it leads.
    let mut response = forwarder.forward_command(1, region_read(1)).await.unwrap();
    for _ in 0..100 {
        match header_error(&response) {
            Some(e) if e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                response = forwarder.forward_command(1, region_read(1)).await.unwrap();
            }
            _ => break,
        }
    }
    assert_eq!(header_error(&response).map(|e| e.to_string()), None);
    let region = response.responses[0]
        .snap
        .as_ref()
        .unwrap()
        .region
        .as_ref()
        .unwrap();
    assert_eq!((region.id, region.peers.len()), (1, 1));

    let response = forwarder.forward_command(1, region_read(9)).await.unwrap();
    assert!(
        matches!(
            header_error(&response),
            Some(tinykv_actors::Error::RegionNotFound(9))
        ),
        "{response:?}"
    );

    let (status, body) = post_peer(
        served.peer,
        crate::server::forward::RAFT_CMD_PATH,
        crate::server::forward::PROTOBUF_CONTENT_TYPE,
        vec![0xff, 0xff],
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_protobuf"));

    served.stop().await;
    node.stop().await;
}

#[actix_rt::test]
async fn a_store_without_the_region_reaches_the_store_that_has_it() {
    let holder = SingleStore::start().await;
    let served = holder.serve().await;
    let book = AddressBook::new([served.address(1), unreachable_address(2)]);
    let empty = SingleStore::start_as(2, &[1], book).await;
    assert!(empty
        .state
        .service
        .store()
        .regions()
        .await
        .unwrap()
        .is_empty());

    let service = &empty.state.service;
    service
        .put(
            Cf::Default,
            b"k".to_vec(),
            b"v".to_vec(),
            service.new_session(None),
        )
        .await
        .unwrap();
    assert_eq!(
        service.get(Cf::Default, b"k".to_vec()).await.unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(
        holder
            .state
            .service
            .execute_local(KvOp::Get {
                cf: Cf::Default,
                key: b"k".to_vec(),
            })
            .await
            .unwrap(),
        KvOutcome::Value(Some(b"v".to_vec())),
        "the write landed on the store holding the region"
    );
    assert_eq!(
        service
            .scan(Cf::Default, vec![], vec![], 10, 1024)
            .await
            .unwrap()
            .pairs,
        vec![(b"k".to_vec(), b"v".to_vec())]
    );

    let admin = &empty.state.admin;
    admin.transfer_leader(1, 1).await.unwrap();
    let err = admin.add_peer(1, 1).await.unwrap_err();
    assert_eq!(err.code(), "peer_exists", "{err}");
    let err = admin.remove_peer(1, 3).await.unwrap_err();
    assert_eq!(err.code(), "peer_not_found", "{err}");
    let err = admin.transfer_leader(5, 1).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NoSuchResource {
                code: "region_not_found",
                ..
            }
        ),
        "{err:?}"
    );

    empty.stop().await;
    served.stop().await;
    holder.stop().await;
}
