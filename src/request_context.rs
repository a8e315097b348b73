//! The identity and the timeline of one client request, as it crosses the node.
//!
//! Every request on the client listener gets a [`RequestContext`] from the request-log
//! middleware ([`crate::api::request_log`]): its id, and the times the layers below fill
//! in as they run it (which store served it, after how many attempts; for a write, the
//! time it spent in each raftstore stage). The context is a task-local
//! ([`RequestContext::scope`]), so the service records into it without every function
//! between the handler and the raftstore passing it along; the middleware reads it back
//! to write the access log and to explain a slow request.
//!
//! **The id** ([`RequestId`]) is the client's `X-Request-Id` when it sends one (1 to 128
//! visible ASCII characters; anything else is refused with 400 `invalid_request_id`),
//! else the trace id of a valid W3C `traceparent` header, else 32 random hex digits (the
//! shape of a W3C trace id). It is answered in the `X-Request-Id` response header and in
//! every JSON error body (`error.request_id`, see [`crate::api::error::error_body`]).
//! It travels on: a forwarded request carries it to the other node in the same header
//! (whose log lines for it then carry the same id), and, if the client chose it, a
//! write's raft command carries it in each request's `trace_id`, so every replica's apply
//! log (at `debug`) names it.
//! It is not the write's `Idempotency-Key`: that one changes what the store does, the
//! request id only what it logs.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Header that carries a request's id, in requests and in answers.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Header a node adds to a request it forwards when the request's id was made up by the
/// node, not chosen by the client (value `node`): the other node then keeps it out of
/// the raft log too.
pub const REQUEST_ID_SOURCE_HEADER: &str = "x-request-id-source";

/// W3C Trace Context header naming the trace a request belongs to.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Longest request id a client may send.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A request's id: printable ASCII, at most [`MAX_REQUEST_ID_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    text: Arc<str>,
    /// Whether the client chose it (`X-Request-Id` or `traceparent`), rather than the
    /// node.
    chosen_by_client: bool,
}

impl RequestId {
    /// The id a request is known by, from its `X-Request-Id` and `traceparent` headers
    /// (either may be absent). An `X-Request-Id` that is not 1 to 128 visible ASCII
    /// characters is an error naming what is wrong; a `traceparent` that is not valid is
    /// ignored, as the W3C specification asks.
    pub fn from_headers(
        request_id: Option<&[u8]>,
        traceparent: Option<&[u8]>,
    ) -> Result<RequestId, String> {
        if let Some(given) = request_id {
            return RequestId::parse(given);
        }
        Ok(traceparent
            .and_then(trace_id_of)
            .map(|trace| RequestId {
                text: trace.into(),
                chosen_by_client: true,
            })
            .unwrap_or_else(RequestId::generate))
    }

    /// `given` as an id, if it is 1 to 128 visible ASCII characters.
    pub fn parse(given: &[u8]) -> Result<RequestId, String> {
        if given.is_empty() {
            return Err("the X-Request-Id header is empty".into());
        }
        if given.len() > MAX_REQUEST_ID_LEN {
            return Err(format!(
                "the X-Request-Id header is {} bytes, longer than {MAX_REQUEST_ID_LEN}",
                given.len()
            ));
        }
        if !given.iter().all(|b| b.is_ascii_graphic()) {
            return Err("the X-Request-Id header holds characters other than visible ASCII".into());
        }
        let text = std::str::from_utf8(given).map_err(|e| e.to_string())?;
        Ok(RequestId {
            text: text.into(),
            chosen_by_client: true,
        })
    }

    /// The id another node forwarded a request with (its `X-Request-Id` and
    /// `X-Request-Id-Source` headers), or `None` if it sent none or a malformed one.
    pub fn forwarded(id: Option<&[u8]>, source: Option<&[u8]>) -> Option<RequestId> {
        let mut id = RequestId::parse(id?).ok()?;
        id.chosen_by_client = source != Some(b"node".as_slice());
        Some(id)
    }

    /// A fresh id: 128 random bits as 32 lowercase hex digits.
    pub fn generate() -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bits = rand::random::<u128>();
        let mut text = [0u8; 32];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = HEX[((bits >> (4 * (31 - i))) & 0xf) as usize];
        }
        // Only hex digits were written.
        RequestId {
            text: String::from_utf8_lossy(&text).into(),
            chosen_by_client: false,
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the client chose the id (`X-Request-Id` or `traceparent`); only such ids
    /// are written into a write's raft command (see [`RequestContext::raft_trace_id`]).
    pub fn chosen_by_client(&self) -> bool {
        self.chosen_by_client
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The trace id of a valid W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`,
/// neither id all zeros), or `None`.
pub fn trace_id_of(traceparent: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(traceparent).ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    // Version ff is forbidden; version 00 has exactly four fields, later ones may add some.
    let fields_ok = parts.next().is_none() || version != "00";
    (hex(version, 2)
        && version != "ff"
        && fields_ok
        && hex(trace, 32)
        && nonzero(trace)
        && hex(parent, 16)
        && nonzero(parent)
        && hex(flags, 2))
    .then_some(trace)
}

/// How a request went: filled in by the layers that run it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestTimeline {
    /// The store whose raftstore ran the last attempt (this node's, or the one the
    /// request was forwarded to).
    pub served_by: Option<u64>,
    /// Attempts made (retries after "not leader", a timeout, ...).
    pub attempts: u32,
    /// For a write proposed by this node in the last attempt: its raftstore stages.
    pub write: Option<WriteTimes>,
}

/// The time a write spent in each raftstore stage, at the node that proposed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteTimes {
    /// Each stage's duration, in the order of [`STAGES`]; they follow each other.
    pub stages: [Duration; 4],
    /// Within the `raft` stage, starting with it: how long the leader's own log write
    /// took to be durable (its raft-log writer's batch and fsync), for a write proposed
    /// at the leader.
    pub persist: Option<Duration>,
    /// When the last stage ended (the write's answer reached this node).
    pub ended_at: Instant,
}

/// The stages of a write, as [`WriteTimes::stages`] orders them: the wait in the
/// mailboxes until proposed (`queue`), raft until the entry is committed (`raft`: the log's
/// fsync, replication, quorum), the ApplyFsm until applied (`apply`), the apply writer's
/// batch until answered (`write`).
pub const STAGES: [&str; 4] = ["queue", "raft", "apply", "write"];

impl RequestTimeline {
    /// The write's stages as text, e.g. `queue 0.1 ms, raft 3.2 ms (persist 2.9 ms),
    /// apply 0.3 ms, write 0.9 ms`; empty if none were recorded.
    pub fn stages_text(&self) -> String {
        let Some(write) = &self.write else {
            return String::new();
        };
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let mut text = String::new();
        for (i, (stage, took)) in STAGES.iter().zip(&write.stages).enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            let _ = write!(text, "{stage} {:.1} ms", ms(took));
            if let (&"raft", Some(persist)) = (stage, &write.persist) {
                let _ = write!(text, " (persist {:.1} ms)", ms(persist));
            }
        }
        text
    }
}

/// One request's id and timeline; see the module documentation.
#[derive(Debug)]
pub struct RequestContext {
    id: RequestId,
    timeline: Mutex<RequestTimeline>,
}

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

impl RequestContext {
    /// A context for the request known as `id`.
    pub fn new(id: RequestId) -> Arc<RequestContext> {
        Arc::new(RequestContext {
            id,
            timeline: Mutex::new(RequestTimeline::default()),
        })
    }

    /// The request's id.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// What has been recorded so far.
    pub fn timeline(&self) -> RequestTimeline {
        self.timeline.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Runs `future` with `context` as the current request's.
    pub fn scope<F: Future>(
        context: Arc<RequestContext>,
        future: F,
    ) -> impl Future<Output = F::Output> {
        CURRENT.scope(context, future)
    }

    /// The context of the request the current task is running, if any.
    pub fn current() -> Option<Arc<RequestContext>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// The id of the request the current task is running, if any.
    pub fn current_id() -> Option<RequestId> {
        CURRENT.try_with(|c| c.id.clone()).ok()
    }

    /// What a write's raft command carries as `trace_id` for the current request: its id
    /// if the client chose it, else nothing. An id the node made up is left out: carried
    /// on every write, its 32 bytes through every replica's log, apply and network cost
    /// measurably, and a client that wants to follow a write sends its own id.
    pub fn raft_trace_id() -> Vec<u8> {
        CURRENT
            .try_with(|c| {
                if c.id.chosen_by_client {
                    c.id.as_str().as_bytes().to_vec()
                } else {
                    Vec::new()
                }
            })
            .unwrap_or_default()
    }

    /// Records, in the current request's context if there is one, an attempt run by
    /// store `served_by`.
    pub fn record_attempt(served_by: u64) {
        Self::update(|t| {
            t.attempts += 1;
            t.served_by = Some(served_by);
            t.write = None;
        });
    }

    /// Records, in the current request's context if there is one, the time the write
    /// spent in each stage (in the order of [`STAGES`]) and, within `raft`, the leader's
    /// own log write if it is known.
    pub fn record_stages(stages: [Duration; 4], persist: Option<Duration>) {
        let ended_at = Instant::now();
        Self::update(|t| {
            t.write = Some(WriteTimes {
                stages,
                persist,
                ended_at,
            })
        });
    }

    fn update(f: impl FnOnce(&mut RequestTimeline)) {
        let _ = CURRENT.try_with(|c| {
            if let Ok(mut timeline) = c.timeline.lock() {
                f(&mut timeline);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_kept_if_visible_ascii_and_refused_otherwise() {
        let id = RequestId::from_headers(Some(b"order-17/retry.2"), None).unwrap();
        assert_eq!(id.as_str(), "order-17/retry.2");
        assert!(id.chosen_by_client());
        assert!(!RequestId::from_headers(None, None)
            .unwrap()
            .chosen_by_client());
        for bad in [
            &b""[..],
            b"has space",
            b"tab\there",
            "é".as_bytes(),
            &[b'a'; 129],
        ] {
            assert!(RequestId::from_headers(Some(bad), None).is_err(), "{bad:?}");
        }
        assert!(RequestId::parse(&[b'a'; 128]).is_ok());
    }

    #[test]
    fn a_valid_traceparent_names_the_trace_and_an_invalid_one_is_ignored() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let header = format!("00-{trace}-00f067aa0ba902b7-01");
        let id = RequestId::from_headers(None, Some(header.as_bytes())).unwrap();
        assert_eq!(id.as_str(), trace);
        // X-Request-Id wins over traceparent.
        let id = RequestId::from_headers(Some(b"mine"), Some(header.as_bytes())).unwrap();
        assert_eq!(id.as_str(), "mine");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(trace_id_of(bad.as_bytes()), None, "{bad}");
            let id = RequestId::from_headers(None, Some(bad.as_bytes())).unwrap();
            assert_eq!(id.as_str().len(), 32, "a fresh id for {bad}");
            assert_ne!(id.as_str(), trace);
        }
        // A later version may add fields.
        let later = format!("01-{trace}-00f067aa0ba902b7-01-more");
        assert_eq!(trace_id_of(later.as_bytes()), Some(trace));
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(RequestId::generate(), RequestId::generate());
    }

    #[tokio::test]
    async fn the_timeline_is_recorded_only_inside_a_request() {
        RequestContext::record_attempt(9); // outside any request: nothing happens
        let context = RequestContext::new(RequestId::parse(b"r1").unwrap());
        let seen = RequestContext::scope(context.clone(), async {
            RequestContext::record_attempt(2);
            RequestContext::record_attempt(3);
            RequestContext::record_stages(
                [
                    Duration::from_micros(100),
                    Duration::from_millis(3),
                    Duration::ZERO,
                    Duration::from_micros(900),
                ],
                Some(Duration::from_micros(2_500)),
            );
            RequestContext::current_id()
        })
        .await;
        assert_eq!(seen.unwrap().as_str(), "r1");
        let timeline = context.timeline();
        assert_eq!((timeline.attempts, timeline.served_by), (2, Some(3)));
        assert_eq!(
            timeline.stages_text(),
            "queue 0.1 ms, raft 3.0 ms (persist 2.5 ms), apply 0.0 ms, write 0.9 ms"
        );
        assert!(RequestContext::current_id().is_none());
    }
}
