//! A lean HTTP/1.1 client: one keep-alive connection, one request at a time.
//!
//! A load generator shares the machine with what it measures, so every microsecond it
//! spends per request is taken from the servers and shows up as their slowness. A general
//! HTTP client pays for what a benchmark does not need: a connection pool behind a lock,
//! a request builder and header map per request, a body stream, redirect and proxy logic,
//! and on a multi-threaded runtime a wake-up across threads for every answer. Measured
//! against the same node with wrk's own request, `tinykv-bench` on `reqwest` spent 20-24
//! µs of CPU per request where wrk spends 10-11; on this client it spends 10-11 too (see
//! `docs/performance.md`).
//!
//! This module does what wrk does instead. A [`Connection`] belongs to one benchmark
//! client and carries that client's requests one after another over one TCP (or TLS)
//! stream: the caller writes the whole request into a buffer it keeps
//! ([`write_request`]), [`Connection::exchange`] sends it with one write and reads the
//! answer into a buffer the connection keeps, parsing the head with `httparse` and
//! taking the body by `Content-Length` or chunked encoding. Nothing is allocated per
//! request beyond the body handed back.
//!
//! Errors say how far the exchange got, because that decides what the caller may do:
//! [`ExchangeError::NoAnswer`] means not one byte of an answer arrived (the connection was
//! refused, reset or closed, or the time ran out), so the request may be sent elsewhere;
//! [`ExchangeError::Broken`] means an answer began and was cut off or malformed. Either
//! way the connection is spent and the caller drops it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The largest answer body accepted: the value-size sweep reads values of 1 MiB, and
/// anything far beyond that is a misbehaving server, not a value.
const MAX_BODY_BYTES: usize = 64 << 20;

/// The most header lines an answer may have.
const MAX_HEADERS: usize = 32;

/// How much the read buffer grows by when it is full.
const READ_CHUNK: usize = 16 << 10;

/// Where one endpoint is and how to speak to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port`, to dial and for the `Host` header.
    pub authority: String,
    /// The name the server's certificate must carry, for an `https://` endpoint.
    server_name: Option<ServerName<'static>>,
}

impl Endpoint {
    /// Parses a base URL, `http://host:port` or `https://host:port` (no path).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (tls, rest) = match url.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            _ => return Err(format!("endpoint {url:?}: expected http:// or https://")),
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("endpoint {url:?}: expected scheme://host:port"));
        }
        // A port is the digits after the last colon; without one, the scheme's default.
        let (host, authority) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                (host, authority.to_string())
            }
            _ => (
                authority,
                format!("{authority}:{}", if tls { 443 } else { 80 }),
            ),
        };
        let server_name = if tls {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some(
                ServerName::try_from(host.to_string())
                    .map_err(|e| format!("endpoint {url:?}: {e}"))?,
            )
        } else {
            None
        };
        Ok(Endpoint {
            authority,
            server_name,
        })
    }
}

/// What opens connections: the TLS configuration, if any, and the connect time limit.
#[derive(Clone)]
pub struct Connector {
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Connector {
    /// A connector that speaks TLS with `tls` (for `https://` endpoints) and gives up on
    /// a connection not made within `connect_timeout`.
    pub fn new(tls: Option<rustls::ClientConfig>, connect_timeout: Duration) -> Connector {
        Connector {
            tls: tls.map(|config| TlsConnector::from(Arc::new(config))),
            connect_timeout,
        }
    }

    /// Opens a connection to `endpoint` (Nagle off: requests are written whole).
    pub async fn connect(&self, endpoint: &Endpoint) -> io::Result<Connection> {
        let connect = async {
            let tcp = TcpStream::connect(&endpoint.authority).await?;
            tcp.set_nodelay(true)?;
            let stream = match (&endpoint.server_name, &self.tls) {
                (None, _) => Stream::Plain(tcp),
                (Some(name), Some(tls)) => {
                    Stream::Tls(Box::new(tls.connect(name.clone(), tcp).await?))
                }
                (Some(_), None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an https:// endpoint needs a CA (--cacert)",
                    ))
                }
            };
            Ok(Connection {
                stream,
                read: BytesMut::with_capacity(READ_CHUNK),
            })
        };
        tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }
}

/// The byte stream under a connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read_buf(buf).await,
            Stream::Tls(s) => s.read_buf(buf).await,
        }
    }
}

/// One keep-alive connection to one endpoint.
pub struct Connection {
    stream: Stream,
    /// Bytes read but not yet consumed.
    read: BytesMut,
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

/// Why an exchange failed; the connection is spent either way.
#[derive(Debug)]
pub enum ExchangeError {
    /// Not one byte of an answer arrived.
    NoAnswer(io::Error),
    /// An answer began but was cut off or does not parse.
    Broken(String),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::NoAnswer(e) => write!(f, "{e}"),
            ExchangeError::Broken(message) => write!(f, "broken answer: {message}"),
        }
    }
}

/// Writes a whole request into `out` (cleared first): the request line, `Host`,
/// `Content-Length` when there is a body, the extra `headers`, and the body.
pub fn write_request<'a>(
    out: &mut Vec<u8>,
    method: &str,
    authority: &str,
    path: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) {
    out.clear();
    for part in [method, " ", path, " HTTP/1.1\r\nHost: ", authority, "\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    if !body.is_empty() || method != "GET" {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        for part in [name, ": ", value, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// How an answer's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl Connection {
    /// Sends `request` (as [`write_request`] wrote it) and reads the whole answer.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Response, ExchangeError> {
        self.read.clear();
        self.stream
            .write_all(request)
            .await
            .map_err(ExchangeError::NoAnswer)?;
        let (status, framing, keep_alive, head_len) = loop {
            if let Some(head) = parse_head(&self.read)? {
                break head;
            }
            let first = self.read.is_empty();
            match self.fill().await {
                Ok(()) => {}
                Err(e) if first => return Err(ExchangeError::NoAnswer(e)),
                Err(e) => return Err(ExchangeError::Broken(e.to_string())),
            }
        };
        let _head = self.read.split_to(head_len);
        let (body, keep_alive) = match framing {
            _ if status == 204 || status == 304 => (Bytes::new(), keep_alive),
            Framing::Length(len) => {
                while self.read.len() < len {
                    self.fill().await.map_err(broken)?;
                }
                (self.read.split_to(len).freeze(), keep_alive)
            }
            Framing::Chunked => (self.read_chunked().await?, keep_alive),
            Framing::UntilClose => loop {
                match self.fill().await {
                    Ok(()) if self.read.len() > MAX_BODY_BYTES => {
                        return Err(ExchangeError::Broken("body too large".into()))
                    }
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        break (self.read.split().freeze(), false)
                    }
                    Err(e) => return Err(broken(e)),
                }
            },
        };
        Ok(Response {
            status,
            body,
            keep_alive,
        })
    }

    /// Reads more bytes into the buffer; the end of the stream is an error.
    async fn fill(&mut self) -> io::Result<()> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        match self.stream.read_buf(&mut self.read).await? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            )),
            _ => Ok(()),
        }
    }

    /// Reads a chunked body and its trailer, leaving the buffer after it.
    async fn read_chunked(&mut self) -> Result<Bytes, ExchangeError> {
        let mut body = BytesMut::new();
        loop {
            let (consumed, size) = loop {
                match httparse::parse_chunk_size(&self.read) {
                    Ok(httparse::Status::Complete((consumed, size))) => break (consumed, size),
                    Ok(httparse::Status::Partial) => self.fill().await.map_err(broken)?,
                    Err(_) => return Err(ExchangeError::Broken("bad chunk size".into())),
                }
            };
            let size = usize::try_from(size)
                .ok()
                .filter(|size| body.len() + size <= MAX_BODY_BYTES)
                .ok_or_else(|| ExchangeError::Broken("body too large".into()))?;
            while self.read.len() < consumed + size + 2 {
                self.fill().await.map_err(broken)?;
            }
            let _ = self.read.split_to(consumed);
            if size == 0 {
                // The last chunk: skip trailer lines up to the empty one.
                loop {
                    if let Some(end) = self.read.windows(2).position(|w| w == b"\r\n") {
                        let _ = self.read.split_to(end + 2);
                        if end == 0 {
                            return Ok(body.freeze());
                        }
                    } else {
                        self.fill().await.map_err(broken)?;
                    }
                }
            }
            body.extend_from_slice(&self.read[..size]);
            if &self.read[size..size + 2] != b"\r\n" {
                return Err(ExchangeError::Broken("chunk not followed by CRLF".into()));
            }
            let _ = self.read.split_to(size + 2);
        }
    }
}

fn broken(e: io::Error) -> ExchangeError {
    ExchangeError::Broken(e.to_string())
}

/// Parses an answer's head if the buffer holds all of it: status, framing, keep-alive
/// and the head's length.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, Framing, bool, usize)>, ExchangeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ExchangeError::Broken(format!("bad answer head: {e}"))),
    };
    let status = response.code.unwrap_or_default();
    let mut keep_alive = response.version == Some(1);
    let mut framing = Framing::UntilClose;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(header.value)
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok())
                .filter(|len| *len <= MAX_BODY_BYTES)
                .ok_or_else(|| ExchangeError::Broken("bad or too large Content-Length".into()))?;
            framing = Framing::Length(len);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if header.value.eq_ignore_ascii_case(b"chunked") {
                framing = Framing::Chunked;
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            if header.value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if header.value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    if matches!(framing, Framing::UntilClose) {
        keep_alive = false;
    }
    Ok(Some((status, framing, keep_alive, head_len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that reads one request head per answer in `answers` and writes the
    /// answer (in pieces of `piece` bytes, to exercise partial reads), then closes.
    async fn serve(answers: Vec<&'static [u8]>, piece: usize) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            for answer in answers {
                let mut request = Vec::new();
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut byte = [0u8; 1024];
                    let n = socket.read(&mut byte).await.unwrap();
                    request.extend_from_slice(&byte[..n]);
                }
                for part in answer.chunks(piece) {
                    socket.write_all(part).await.unwrap();
                    socket.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        Endpoint::parse(&format!("http://{address}")).unwrap()
    }

    fn get(endpoint: &Endpoint) -> Vec<u8> {
        let mut request = Vec::new();
        write_request(&mut request, "GET", &endpoint.authority, "/k", [], b"");
        request
    }

    #[tokio::test]
    async fn keep_alive_answers_by_length_and_chunks_share_one_connection() {
        let endpoint = serve(
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n",
                b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\nbye",
            ],
            3,
        )
        .await;
        let connector = Connector::new(None, Duration::from_secs(5));
        let mut conn = connector.connect(&endpoint).await.unwrap();
        let request = get(&endpoint);
        let first = conn.exchange(&request).await.unwrap();
        assert_eq!(
            (first.status, &first.body[..], first.keep_alive),
            (200, &b"hello"[..], true)
        );
        let second = conn.exchange(&request).await.unwrap();
        assert_eq!((second.status, second.body.len()), (404, 0));
        let third = conn.exchange(&request).await.unwrap();
        assert_eq!((third.status, &third.body[..]), (200, &b"abcde"[..]));
        let fourth = conn.exchange(&request).await.unwrap();
        assert_eq!(
            (fourth.status, &fourth.body[..], fourth.keep_alive),
            (503, &b"bye"[..], false)
        );
        // The server has closed: nothing of an answer comes.
        assert!(matches!(
            conn.exchange(&request).await,
            Err(ExchangeError::NoAnswer(_))
        ));
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_broken_not_missing() {
        let endpoint = serve(
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal"],
            64,
        )
        .await;
        let connector = Connector::new(None, Duration::from_secs(5));
        let mut conn = connector.connect(&endpoint).await.unwrap();
        let error = conn.exchange(&get(&endpoint)).await.unwrap_err();
        assert!(matches!(error, ExchangeError::Broken(_)), "{error}");
    }

    #[test]
    fn requests_are_written_whole() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "PUT",
            "h:1",
            "/v1/kv/a",
            [("Idempotency-Key", "x")],
            b"v",
        );
        assert_eq!(
            out,
            b"PUT /v1/kv/a HTTP/1.1\r\nHost: h:1\r\nContent-Length: 1\r\nIdempotency-Key: x\r\n\r\nv"
        );
        write_request(&mut out, "GET", "h:1", "/k", [], b"");
        assert_eq!(out, b"GET /k HTTP/1.1\r\nHost: h:1\r\n\r\n");
    }

    #[test]
    fn endpoints_parse() {
        let plain = Endpoint::parse("http://127.0.0.1:8081").unwrap();
        assert_eq!(plain.authority, "127.0.0.1:8081");
        assert!(plain.server_name.is_none());
        let tls = Endpoint::parse("https://localhost/").unwrap();
        assert_eq!(tls.authority, "localhost:443");
        assert!(tls.server_name.is_some());
        assert!(Endpoint::parse("ftp://x:1").is_err());
        assert!(Endpoint::parse("http://x:1/path").is_err());
    }
}
