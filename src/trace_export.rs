//! Exporting request traces to OpenTelemetry (OTLP over HTTP), when `log.otlp_endpoint`
//! names a collector.
//!
//! The node's `tracing` spans become OpenTelemetry spans through `tracing-opentelemetry`
//! ([`init`] answers the layer): a request's `request` span (with its `request_id`), the
//! `forward` span of an attempt sent to another node (`to_store`), and any span opened
//! while serving it. A write's raftstore stages happened inside actors that serve many
//! requests at once, so they are not spans there; [`export_stages`] adds them to the
//! request's trace afterwards as child spans with their measured start and end (`queue`,
//! `raft`, `apply`, `write`; see [`crate::request_context::STAGES`]), plus `persist`,
//! the leader's own log write, which starts with `raft` and runs beside replication.
//!
//! A request whose `traceparent` header names a trace joins it ([`join_client_trace`]):
//! its spans carry the client's trace id and hang under the client's span, and the
//! client's sampling decision holds. Other requests are sampled at
//! `log.otlp_sample_ratio`.
//!
//! Spans are batched and sent by the SDK's own thread; the HTTP requests run on a small
//! runtime of their own ([`TraceExport`] owns both), so exporting never runs on an HTTP
//! worker or an actor. A collector that is down costs dropped spans (the SDK's queue is
//! bounded), never a slower request. [`TraceExport::shutdown`] sends what is queued.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogConfig;
use crate::request_context::{RequestTimeline, STAGES};

/// How long one export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The tracer of the process's export, once [`init`] set one up.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The export's machinery: dropping it (or [`TraceExport::shutdown`]) sends what is
/// queued.
pub struct TraceExport {
    provider: SdkTracerProvider,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TraceExport {
    /// Sends every span still queued and stops exporting.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "trace export did not shut down cleanly");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            self.stop();
        }
    }
}

/// The `tracing` layer that turns spans into exported OpenTelemetry spans.
pub type ExportLayer<S> = tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>;

/// The OpenTelemetry layer for `config`'s endpoint, and what keeps it exporting; `None`
/// when `log.otlp_endpoint` is empty.
pub fn init<S>(config: &LogConfig) -> Result<Option<(ExportLayer<S>, TraceExport)>, String>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    if config.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the trace export's runtime: {e}"))?;
    let client = ExportClient {
        client: crate::security::http_client_builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the trace export's HTTP client: {e}"))?,
        runtime: runtime.handle().clone(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(config.otlp_endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.otlp_sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.otlp_service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("tinykv");
    // The first export set up in a process serves the synthesized stage spans.
    let _ = TRACER.set(tracer.clone());
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((
        layer,
        TraceExport {
            provider,
            runtime: Some(runtime),
        },
    )))
}

/// Makes `span` join the trace a W3C `traceparent` header names, if it is valid.
pub fn join_client_trace(span: &tracing::Span, traceparent: Option<&[u8]>) {
    let Some(value) = traceparent.and_then(|v| std::str::from_utf8(v).ok()) else {
        return;
    };
    if TRACER.get().is_none() {
        return;
    }
    let context = TraceContextPropagator::new().extract(&Traceparent(value));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Whether traces are exported.
pub fn is_on() -> bool {
    TRACER.get().is_some()
}

/// Describes an answered request in its exported span: method, route, status, the store
/// that served it, and (for a write) its raftstore stages as child spans.
pub fn describe(
    span: &tracing::Span,
    method: &str,
    route: Option<&str>,
    status: u16,
    timeline: &RequestTimeline,
) {
    if !is_on() {
        return;
    }
    span.set_attribute("http.request.method", method.to_string());
    if let Some(route) = route {
        span.set_attribute("http.route", route.to_string());
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if let Some(store) = timeline.served_by {
        span.set_attribute("tinykv.served_by", store as i64);
    }
    span.set_attribute("tinykv.attempts", i64::from(timeline.attempts));
    export_stages(span, timeline);
}

/// Adds a write's raftstore stages to `span`'s trace as child spans, if the trace is
/// exported and sampled.
pub fn export_stages(span: &tracing::Span, timeline: &RequestTimeline) {
    let (Some(tracer), Some(write)) = (TRACER.get(), &timeline.write) else {
        return;
    };
    let parent = span.context();
    if !parent.span().span_context().is_sampled() {
        return;
    }
    let total: Duration = write.stages.iter().sum();
    let ended = write.ended_at;
    let mut start = wall_clock(ended.checked_sub(total).unwrap_or(ended));
    let child = |name: &'static str, start: SystemTime, end: SystemTime| {
        let mut span = tracer
            .span_builder(Cow::Borrowed(name))
            .with_start_time(start)
            .start_with_context(tracer, &parent);
        span.end_with_timestamp(end);
    };
    for (stage, took) in STAGES.iter().zip(write.stages) {
        let end = start + took;
        child(stage, start, end);
        if let (&"raft", Some(persist)) = (stage, write.persist) {
            // The leader's own log write, alongside replication.
            child("persist", start, start + persist);
        }
        start = end;
    }
}

/// The wall-clock time of `at`.
fn wall_clock(at: Instant) -> SystemTime {
    let now = (Instant::now(), SystemTime::now());
    now.1 - now.0.saturating_duration_since(at)
}

/// A `traceparent` header, as the propagator reads it.
struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == crate::request_context::TRACEPARENT_HEADER).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![crate::request_context::TRACEPARENT_HEADER]
    }
}

/// The exporter's HTTP client: the node's `reqwest`, run on the export's own runtime
/// (the SDK's batch thread has none).
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let client = self.client.clone();
        // The whole request runs on the export's runtime: reqwest needs its timers.
        let answer = self
            .runtime
            .spawn(async move {
                let response = client
                    .request(parts.method, parts.uri.to_string())
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await??;
        let (status, headers, body) = answer;
        let mut response = Response::builder().status(status);
        if let Some(map) = response.headers_mut() {
            *map = headers;
        }
        Ok(response.body(body)?)
    }
}
