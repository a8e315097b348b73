//! The client listener's guard on request heads, ahead of actix.
//!
//! actix answers a request head it cannot take (larger than its buffer, or not complete
//! within its timeout) with a bare `431` or `408` and no body, where every other error of
//! the API is JSON naming its problem. So every client connection is wrapped in a
//! [`HeadGuard`], which follows the requests on it as their bytes arrive, and refuses a
//! head first, with the API's JSON error:
//!
//! - a head longer than [`MAX_HEAD_BYTES`] (a key of a megabyte in the URL, a flood of
//!   headers): 431 `header_too_large`;
//! - a head not complete within the head timeout of its connection (a client that sends
//!   a byte a second): 408 `header_timeout`.
//!
//! The guard reads the same bytes actix reads, no copy kept but a head's own: it finds
//! where each head ends (the empty line), then skips its body by its `Content-Length` or
//! its chunks, and watches the next head. A refused head is never completed for actix:
//! the guard hands actix the bytes before the limit, then end-of-file, and actix closes
//! the connection; the guard writes its answer when actix shuts the connection down (or,
//! if actix just drops it, as it goes). A request whose framing the guard cannot follow
//! (an unknown transfer coding, a malformed chunk) is left entirely to actix: the guard
//! stops watching that connection.
//!
//! When actix closes a connection in the middle of a request body (it answered early: a
//! 503 `overloaded`, a 413, a 408 `body_timeout`), the client may still be sending.
//! Closing a socket with unread bytes makes the kernel send a reset, which throws away
//! the answer before the client reads it: it sees "connection reset" instead of the
//! JSON error. So the guard closes such a connection the way nginx's lingering close
//! does: it shuts down its sending side, then reads and discards what still arrives,
//! for at most [`LINGER_TIME`] and [`LINGER_BYTES`], with at most [`MAX_LINGERING`]
//! connections lingering at once (past that, it closes at once as before).
//!
//! The guard sits on the decrypted side of a TLS connection, so it reads the same bytes
//! on HTTPS. There, a refusal can only be written through the TLS session, when actix
//! shuts the connection down (not as the connection is dropped), and a lingering close
//! discards ciphertext.

use std::future::Future;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::api::error::error_body;
use crate::error::Error;
use crate::security::Conn;

/// Longest request head the client listener takes (actix's own buffer holds 128 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Longest a connection closed mid-body keeps reading what its client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(3);

/// Most bytes a connection closed mid-body reads (and discards) before it closes.
pub const LINGER_BYTES: u64 = 64 * 1024 * 1024;

/// Most connections lingering at once.
pub const MAX_LINGERING: usize = 256;

/// Connections lingering now.
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// Where the guard is in the stream of requests.
enum Phase {
    /// Reading a head: its bytes so far, and how far into the closing `\r\n\r\n`.
    Head { bytes: Vec<u8>, matched: usize },
    /// Skipping a body of this many more bytes.
    Body(u64),
    /// Skipping a chunked body.
    Chunked(Chunk),
    /// Not watching any more (framing it cannot follow).
    Off,
}

/// Where the guard is in a chunked body.
enum Chunk {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    /// Skipping this many more bytes of chunk data.
    Data(u64),
    /// Skipping the CRLF after a chunk's data (bytes left).
    DataEnd(u8),
    /// Reading trailer lines after the last chunk (the current line's length).
    Trailer(usize),
}

/// A client connection with its heads watched; see the module documentation.
pub struct HeadGuard {
    inner: Conn,
    phase: Phase,
    timeout: Duration,
    /// Runs while a head is being read.
    timer: Option<Pin<Box<Sleep>>>,
    /// The refusal to write once actix closes the connection (actix reads end-of-file).
    refusal: Option<Vec<u8>>,
}

impl HeadGuard {
    /// The user the connection's client certificate names, if any.
    pub fn certificate_user(&self) -> Option<String> {
        match self.inner.peer_identity()? {
            crate::security::CertIdentity::User(name) => Some(name),
            crate::security::CertIdentity::Store(_) => None,
        }
    }

    /// Guards `inner`, each head of which must arrive within `timeout`.
    pub fn new(inner: Conn, timeout: Duration) -> HeadGuard {
        HeadGuard {
            inner,
            phase: Phase::Head {
                bytes: Vec::new(),
                matched: 0,
            },
            timeout,
            timer: Some(Box::pin(tokio::time::sleep(timeout))),
            refusal: None,
        }
    }

    /// Follows `data`, just read; returns how many of its bytes actix may have (fewer if a
    /// head is refused in it).
    fn follow(&mut self, data: &[u8]) -> usize {
        let mut at = 0;
        while at < data.len() {
            match &mut self.phase {
                Phase::Off => return data.len(),
                Phase::Head { bytes, matched } => {
                    if bytes.is_empty() && self.timer.is_none() {
                        self.timer = Some(Box::pin(tokio::time::sleep(self.timeout)));
                    }
                    let byte = data[at];
                    at += 1;
                    bytes.push(byte);
                    *matched = match (*matched, byte) {
                        (0 | 2, b'\r') => *matched + 1,
                        (1 | 3, b'\n') => *matched + 1,
                        (_, b'\r') => 1,
                        _ => 0,
                    };
                    if *matched == 4 {
                        let head = std::mem::take(bytes);
                        self.timer = None;
                        self.phase = body_phase(&head);
                    } else if bytes.len() > MAX_HEAD_BYTES {
                        self.refuse(Error::HeaderTooLarge(format!(
                            "the request head is longer than {MAX_HEAD_BYTES} bytes (a key belongs in the URL only up to api.max_key_bytes)"
                        )));
                        return at - 1;
                    }
                }
                Phase::Body(left) => {
                    let take = (*left).min((data.len() - at) as u64);
                    *left -= take;
                    at += take as usize;
                    if *left == 0 {
                        self.phase = next_head();
                    }
                }
                Phase::Chunked(chunk) => {
                    let byte = data[at];
                    match chunk {
                        Chunk::Data(left) => {
                            let take = (*left).min((data.len() - at) as u64);
                            *left -= take;
                            at += take as usize;
                            if *left == 0 {
                                *chunk = Chunk::DataEnd(2);
                            }
                            continue;
                        }
                        Chunk::DataEnd(left) => {
                            *left -= 1;
                            if *left == 0 {
                                *chunk = Chunk::Size(Vec::new());
                            }
                        }
                        Chunk::Size(line) => {
                            if byte == b'\n' {
                                match chunk_size(line) {
                                    Some(0) => *chunk = Chunk::Trailer(0),
                                    Some(size) => *chunk = Chunk::Data(size),
                                    None => self.phase = Phase::Off,
                                }
                            } else if line.len() > 1024 {
                                self.phase = Phase::Off;
                            } else {
                                line.push(byte);
                            }
                        }
                        Chunk::Trailer(len) => match byte {
                            b'\n' if *len == 0 => self.phase = next_head(),
                            b'\n' => *len = 0,
                            b'\r' => {}
                            _ => *len += 1,
                        },
                    }
                    at += 1;
                }
            }
        }
        data.len()
    }

    /// Refuses the head being read: actix gets end-of-file, the client `error`.
    fn refuse(&mut self, error: Error) {
        tracing::debug!(code = error.code(), "refusing a request head");
        self.refusal = Some(response_bytes(&error));
        self.phase = Phase::Off;
        self.timer = None;
    }

    /// Writes the refusal straight to the socket, as far as it goes without waiting (on
    /// plaintext only: TLS needs the session, which is going away).
    fn write_refusal_now(&mut self) {
        if let (Some(refusal), Conn::Plain(tcp)) = (self.refusal.take(), &self.inner) {
            let _ = tcp.try_write(&refusal);
        }
    }
}

/// The phase after a head: its body, if it announces one.
fn body_phase(head: &[u8]) -> Phase {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let mut length = None;
    let mut chunked = false;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim() {
            "content-length" => match value.trim().parse::<u64>() {
                Ok(len) if length.is_none_or(|l| l == len) => length = Some(len),
                _ => return Phase::Off,
            },
            "transfer-encoding" if value.trim() == "chunked" => chunked = true,
            "transfer-encoding" => return Phase::Off,
            _ => {}
        }
    }
    match (chunked, length) {
        (true, Some(_)) => Phase::Off,
        (true, None) => Phase::Chunked(Chunk::Size(Vec::new())),
        (false, Some(len)) if len > 0 => Phase::Body(len),
        _ => next_head(),
    }
}

fn next_head() -> Phase {
    Phase::Head {
        bytes: Vec::new(),
        matched: 0,
    }
}

/// The size of a chunk-size line (hex digits, maybe extensions after `;`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let digits = text.trim_end_matches('\r').split(';').next()?.trim();
    u64::from_str_radix(digits, 16).ok()
}

/// A whole HTTP/1.1 response carrying `error` as the API's JSON error, closing the
/// connection.
fn response_bytes(error: &Error) -> Vec<u8> {
    let body = error_body(error).to_string();
    let status = error.status();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.refusal.is_some() {
            return Poll::Ready(Ok(())); // End-of-file for actix.
        }
        if let Some(timer) = this.timer.as_mut() {
            if timer.as_mut().poll(cx).is_ready() {
                let seconds = this.timeout.as_secs_f64();
                this.refuse(Error::HeaderTimeout(format!(
                    "the request head did not arrive within {seconds} s"
                )));
                return Poll::Ready(Ok(()));
            }
        }
        let filled_before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = buf.filled()[filled_before..].to_vec();
                let allowed = this.follow(&new);
                if allowed < new.len() {
                    buf.set_filled(filled_before + allowed);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while let Some(refusal) = this.refusal.as_mut() {
            match Pin::new(&mut this.inner).poll_write(cx, refusal) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => this.refusal = None,
                Poll::Ready(Ok(n)) => {
                    refusal.drain(..n);
                    if refusal.is_empty() {
                        this.refusal = None;
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl HeadGuard {
    /// Whether the client may still be sending when the connection closes: it is in the
    /// middle of a body or of a head (between requests, nothing is unread).
    fn mid_request(&self) -> bool {
        match &self.phase {
            Phase::Head { bytes, .. } => !bytes.is_empty(),
            Phase::Body(_) | Phase::Chunked(_) | Phase::Off => true,
        }
    }

    /// Closes the connection without a reset: see the module documentation. The socket
    /// lives on in a task through a duplicate of its descriptor.
    fn linger(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if LINGERING.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
            LINGERING.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let duplicate = self
            .inner
            .tcp()
            .as_fd()
            .try_clone_to_owned()
            .map(std::net::TcpStream::from);
        let Ok(socket) = duplicate else {
            LINGERING.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        runtime.spawn(async move {
            let _ = socket.shutdown(std::net::Shutdown::Write);
            if let Ok(mut socket) = socket
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(socket))
            {
                let mut sink = vec![0u8; 64 * 1024];
                let mut read = 0u64;
                let _ = tokio::time::timeout(LINGER_TIME, async {
                    while read < LINGER_BYTES {
                        match socket.read(&mut sink).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => read += n as u64,
                        }
                    }
                })
                .await;
            }
            LINGERING.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

impl Drop for HeadGuard {
    fn drop(&mut self) {
        self.write_refusal_now();
        if self.mid_request() {
            self.linger();
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A guarded connection, and the client's end of it.
    async fn pair(timeout: Duration) -> (HeadGuard, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (HeadGuard::new(Conn::Plain(server), timeout), client)
    }

    /// Everything the guard lets through until end-of-file.
    async fn read_all(guard: &mut HeadGuard) -> Vec<u8> {
        let mut seen = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), guard.read_to_end(&mut seen)).await;
        seen
    }

    #[tokio::test]
    async fn requests_with_bodies_pass_untouched() {
        let (mut guard, mut client) = pair(Duration::from_secs(5)).await;
        let requests = b"PUT /v1/kv/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n\r\n";
        client.write_all(requests).await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(read_all(&mut guard).await, requests.to_vec());
        assert!(guard.refusal.is_none());
    }

    #[tokio::test]
    async fn a_long_head_is_refused_with_json() {
        let (mut guard, mut client) = pair(Duration::from_secs(5)).await;
        let mut request = b"GET /v1/kv/".to_vec();
        request.extend(vec![b'k'; MAX_HEAD_BYTES + 10]);
        request.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        // A body that looks like a head does not count: only the second request's head.
        let small = b"PUT /v1/kv/b HTTP/1.1\r\nContent-Length: 4\r\n\r\n\r\n\r\n";
        client.write_all(small).await.unwrap();
        client.write_all(&request).await.unwrap();
        let seen = read_all(&mut guard).await;
        assert!(
            seen.len() < small.len() + MAX_HEAD_BYTES + 1,
            "the long head is cut"
        );
        guard.shutdown().await.unwrap();
        drop(guard);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(answer.contains(r#""code":"header_too_large""#), "{answer}");
    }

    #[tokio::test]
    async fn a_head_that_trickles_is_refused_with_json() {
        let (mut guard, mut client) = pair(Duration::from_millis(200)).await;
        client.write_all(b"GET /v1/kv/a HT").await.unwrap();
        let seen = read_all(&mut guard).await;
        assert_eq!(seen, b"GET /v1/kv/a HT");
        drop(guard);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(answer.contains(r#""code":"header_timeout""#), "{answer}");
    }

    #[tokio::test]
    async fn an_early_answer_reaches_a_client_still_sending_its_body() {
        let (mut guard, mut client) = pair(Duration::from_secs(5)).await;
        let head = b"PUT /v1/kv/a HTTP/1.1\r\nContent-Length: 8388608\r\n\r\n";
        client.write_all(head).await.unwrap();
        let mut seen = vec![0u8; head.len()];
        guard.read_exact(&mut seen).await.unwrap();
        // Answered without reading the body, then closed, as actix does.
        guard
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        guard.shutdown().await.unwrap();
        drop(guard);
        let body = vec![b'v'; 8 * 1024 * 1024];
        client
            .write_all(&body)
            .await
            .expect("no reset while sending");
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("no reset");
        assert!(answer.starts_with(b"HTTP/1.1 503 "));
    }
}
