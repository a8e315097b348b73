//! Request ids, the access log and slow-request explanations: what a client sees in the
//! answers, what the logs say, and how far the id travels (to the node a request is
//! forwarded to, and into the write's raft entry).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, App};
use prost::Message;
use tinykv_actors::{keys, Cf};
use tinykv_proto::eraftpb::Entry;
use tinykv_proto::raft_cmdpb::RaftCmdRequest;

use super::{json, put_op, until_elected, SingleStore};
use crate::api::configure;
use crate::api::request_log::{request_log, RequestLog};
use crate::kv_service::Forwarder;
use crate::request_context::{RequestContext, RequestId};

/// Log output captured by a test's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the log lines written on this thread while the guard lives.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

macro_rules! app_with {
    ($node:expr, $log:expr) => {
        test::init_service(
            App::new()
                .app_data($log)
                .wrap(actix_web::middleware::from_fn(request_log))
                .configure(configure($node.state.clone())),
        )
        .await
    };
}

fn header<'a>(response: &'a actix_web::dev::ServiceResponse, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[actix_rt::test]
async fn every_answer_names_its_request_id_and_every_error_body_too() {
    let node = SingleStore::start().await;
    let quiet = RequestLog {
        access_log: false,
        slow_request: Duration::MAX,
    };
    let app = app_with!(node, quiet);

    // The client's own id is kept.
    let response = test::call_service(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/a")
            .insert_header(("X-Request-Id", "order-17/retry.2"))
            .set_payload("1")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-request-id"), "order-17/retry.2");

    // Without one, a fresh id; each request its own.
    let fresh = |response: &actix_web::dev::ServiceResponse| {
        let id = header(response, "x-request-id").to_string();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        id
    };
    let first =
        test::call_service(&app, test::TestRequest::get().uri("/v1/kv/a").to_request()).await;
    let second =
        test::call_service(&app, test::TestRequest::get().uri("/v1/kv/a").to_request()).await;
    assert_ne!(fresh(&first), fresh(&second));

    // A W3C traceparent names the trace.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/v1/kv/a")
            .insert_header(("traceparent", format!("00-{trace}-00f067aa0ba902b7-01")))
            .to_request(),
    )
    .await;
    assert_eq!(header(&response, "x-request-id"), trace);

    // Errors, from a handler and from the router, name the id in the body as well.
    for (request, code) in [
        (
            test::TestRequest::get().uri("/v1/kv/a?cf=nope"),
            "invalid_cf",
        ),
        (
            test::TestRequest::get().uri("/v2/nothing"),
            "route_not_found",
        ),
    ] {
        let response = test::call_service(
            &app,
            request
                .insert_header(("X-Request-Id", "err-1"))
                .to_request(),
        )
        .await;
        assert!(response.status().is_client_error());
        assert_eq!(header(&response, "x-request-id"), "err-1");
        let body = json(&test::read_body(response).await);
        assert_eq!(body["error"]["code"], code);
        assert_eq!(body["error"]["request_id"], "err-1");
    }

    // An id that is too long is refused before anything runs, and nothing is written.
    let response = test::call_service(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/b")
            .insert_header(("X-Request-Id", "x".repeat(129)))
            .set_payload("2")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let id = header(&response, "x-request-id").to_string();
    let body = json(&test::read_body(response).await);
    assert_eq!(body["error"]["code"], "invalid_request_id");
    assert_eq!(body["error"]["request_id"], id.as_str());
    let response =
        test::call_service(&app, test::TestRequest::get().uri("/v1/kv/b").to_request()).await;
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "the refused write changed nothing"
    );

    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn the_access_log_and_a_slow_request_say_who_served_it_and_where_the_time_went() {
    let node = SingleStore::start().await;
    let everything = RequestLog {
        access_log: true,
        slow_request: Duration::ZERO,
    };
    let app = app_with!(node, everything);
    // Let the store elect itself, so the logged write takes one attempt.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        let response = test::call_service(
            &app,
            test::TestRequest::get().uri("/v1/kv/warm").to_request(),
        )
        .await;
        status = response.status();
        if status == StatusCode::NOT_FOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (logs, guard) = capture_logs();
    let response = test::call_service(
        &app,
        test::TestRequest::put()
            .uri("/v1/kv/logged")
            .insert_header(("X-Request-Id", "log-me-1"))
            .set_payload("value")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    drop(guard);
    let text = logs.text();
    let access = text
        .lines()
        .find(|l| l.contains("access") && l.contains("tinykv::access"))
        .unwrap_or_else(|| panic!("no access line in:\n{text}"));
    for field in [
        "request_id=log-me-1",
        "method=\"PUT\"",
        "path=\"/v1/kv/logged\"",
        "route=\"/v1/kv/{key:.*}\"",
        "status=200",
        "served_by=1",
        "attempts=1",
        "millis=",
    ] {
        assert!(access.contains(field), "{field} missing from: {access}");
    }
    let slow = text
        .lines()
        .find(|l| l.contains("slow request") && l.contains("WARN"))
        .unwrap_or_else(|| panic!("no slow-request line in:\n{text}"));
    assert!(slow.contains("request_id=log-me-1"), "{slow}");
    for stage in ["queue ", "raft ", "(persist ", "apply ", "write "] {
        assert!(slow.contains(stage), "stage {stage}missing from: {slow}");
    }

    drop(app);
    node.stop().await;
}

#[actix_rt::test]
async fn the_id_travels_with_a_forwarded_write_into_its_raft_entry() {
    let node = SingleStore::start().await;
    let served = node.serve().await;
    let forwarder = served.forwarder();
    let put = put_op(b"traced");
    let context = RequestContext::new(RequestId::parse(b"fwd-7").unwrap());
    until_elected(|| RequestContext::scope(context.clone(), forwarder.forward(1, put.clone())))
        .await
        .unwrap();
    // An id the node made up is not written into the log.
    let untraced = put_op(b"untraced");
    let made_up = RequestContext::new(RequestId::generate());
    RequestContext::scope(made_up, forwarder.forward(1, untraced))
        .await
        .unwrap();

    // The other node proposed the write with the id it was forwarded with.
    let mut traced = Vec::new();
    let prefix = keys::raft_log_prefix(1);
    let mut end = prefix.clone();
    end.push(0xff);
    node.store
        .engine()
        .scan(Cf::Raft, &prefix, &end, |_, value| {
            let entry = Entry::decode(value).unwrap();
            if let Ok(command) = RaftCmdRequest::decode(entry.data.as_ref()) {
                for request in command.requests {
                    if let Some(put) = &request.put {
                        traced.push((put.key.clone(), request.trace_id.clone()));
                    }
                }
            }
            true
        })
        .unwrap();
    assert!(
        traced.contains(&(b"traced".to_vec(), b"fwd-7".to_vec())),
        "{traced:?}"
    );
    assert!(
        traced.contains(&(b"untraced".to_vec(), Vec::new())),
        "{traced:?}"
    );

    served.stop().await;
    node.stop().await;
}

/// An OTLP/HTTP trace receiver on a free local port, on a thread and runtime of its own
/// (the exporter's shutdown blocks the test's thread while it sends).
struct OtlpReceiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
}

impl OtlpReceiver {
    fn start() -> OtlpReceiver {
        use http_body_util::{BodyExt, Full};
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let received = spans.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (io, _) = listener.accept().await.unwrap();
                    let received = received.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |request: hyper::Request<hyper::body::Incoming>| {
                                let received = received.clone();
                                async move {
                                    assert_eq!(request.uri().path(), "/v1/traces");
                                    let body = request.into_body().collect().await?.to_bytes();
                                    let export = ExportTraceServiceRequest::decode(body).unwrap();
                                    for resource in export.resource_spans {
                                        for scope in resource.scope_spans {
                                            received.lock().unwrap().extend(scope.spans);
                                        }
                                    }
                                    let answer =
                                        ExportTraceServiceResponse::default().encode_to_vec();
                                    Ok::<_, hyper::Error>(
                                        hyper::Response::builder()
                                            .header("content-type", "application/x-protobuf")
                                            .body(Full::new(bytes::Bytes::from(answer)))
                                            .unwrap(),
                                    )
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                            .await;
                    });
                }
            });
        });
        OtlpReceiver { endpoint, spans }
    }
}

#[actix_rt::test]
async fn a_traced_write_is_exported_with_its_stages_under_the_clients_span() {
    use tracing_subscriber::layer::SubscriberExt;

    let receiver = OtlpReceiver::start();
    let config = crate::config::LogConfig {
        otlp_endpoint: receiver.endpoint.clone(),
        otlp_sample_ratio: 0.0,
        ..Default::default()
    };
    let (layer, export) = crate::trace_export::init(&config).unwrap().unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    let guard = tracing::subscriber::set_default(subscriber);

    let node = SingleStore::start().await;
    let quiet = RequestLog {
        access_log: false,
        slow_request: Duration::MAX,
    };
    let app = app_with!(node, quiet);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let unsampled = "11111111111111111111111111111111";
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for attempt in 0..100 {
        // The store may still be electing itself.
        let response = test::call_service(
            &app,
            test::TestRequest::put()
                .uri("/v1/kv/traced")
                .insert_header(("traceparent", format!("00-{trace}-{client_span}-01")))
                .insert_header(("X-Request-Id", format!("put-{attempt}")))
                .set_payload("v")
                .to_request(),
        )
        .await;
        status = response.status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK);
    // The client decided not to sample this one; the ratio (0) samples nothing else.
    for (uri, traceparent) in [
        (
            "/v1/kv/traced",
            Some(format!("00-{unsampled}-{client_span}-00")),
        ),
        ("/v1/kv/traced", None),
    ] {
        let mut request = test::TestRequest::get().uri(uri);
        if let Some(traceparent) = traceparent {
            request = request.insert_header(("traceparent", traceparent));
        }
        assert_eq!(
            test::call_service(&app, request.to_request())
                .await
                .status(),
            StatusCode::OK
        );
    }
    drop(guard);
    export.shutdown();

    let spans = receiver.spans.lock().unwrap().clone();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) == trace),
        "only the sampled trace is exported: {:?}",
        spans
            .iter()
            .map(|s| (&s.name, hex(&s.trace_id)))
            .collect::<Vec<_>>()
    );
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
            .map(|v| format!("{v:?}"))
            .unwrap_or_default()
    };
    let request = spans
        .iter()
        .filter(|s| s.name == "request")
        .find(|s| attribute(s, "http.response.status_code").contains("200"))
        .unwrap_or_else(|| panic!("no successful request span in {spans:?}"));
    assert_eq!(
        hex(&request.parent_span_id),
        client_span,
        "under the client's span"
    );
    assert!(
        attribute(request, "request_id").contains("put-"),
        "{request:?}"
    );
    assert!(
        attribute(request, "http.route").contains("/v1/kv/"),
        "{request:?}"
    );
    assert!(
        attribute(request, "tinykv.served_by").contains('1'),
        "{request:?}"
    );
    let stages: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == request.span_id && s.name != "persist")
        .collect();
    // The leader's own log write starts with raft, alongside replication.
    let persist = spans
        .iter()
        .find(|s| s.parent_span_id == request.span_id && s.name == "persist")
        .expect("the leader's log write is a span");
    let raft = spans
        .iter()
        .find(|s| s.parent_span_id == request.span_id && s.name == "raft")
        .expect("a raft span");
    assert_eq!(persist.start_time_unix_nano, raft.start_time_unix_nano);
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    for stage in crate::request_context::STAGES {
        assert!(names.contains(&stage), "{stage} missing from {names:?}");
    }
    // The stages follow each other inside the request.
    let mut stages = stages;
    stages.sort_by_key(|s| s.start_time_unix_nano);
    for pair in stages.windows(2) {
        assert!(pair[0].end_time_unix_nano <= pair[1].start_time_unix_nano + 1_000);
    }
    assert!(stages[0].start_time_unix_nano >= request.start_time_unix_nano);
    assert!(stages[3].end_time_unix_nano <= request.end_time_unix_nano);

    drop(app);
    node.stop().await;
}
