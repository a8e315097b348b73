//! The peer listener: the one port (`raft_addr`) where a node hears from other nodes.
//!
//! Clients use a node's HTTP API on `http_addr`; nodes use each other only here. Keeping
//! the two apart lets an operator expose the client port and firewall this one to the
//! cluster's own hosts, and lets each side trust what it must: the client plane trusts
//! nothing, and this plane accepts only what is consistent with what the node knows.
//!
//! Every connection announces its kind in its first four bytes:
//!
//! - `TKVR`: a stream of raft message batches, from the sender's [`TcpTransport`];
//! - `TKVS`: one snapshot stream (see `snapshot_stream`);
//! - the start of an HTTP/1.1 method (`GET `, `POST`, ...): the node-to-node API of
//!   [`crate::server::peer_api`]: forwarded key-value operations, raft commands, the placement
//!   driver's requests and the node's identity;
//! - anything else is closed unread.
//!
//! A raft or snapshot stream then carries a [`Hello`]: the sender's cluster and store. A
//! stream from another cluster, from this store's own id, or from a store this node's
//! address book does not know is closed before any message is read, and every message on
//! an accepted stream must come from the store the hello named and be addressed to this
//! one; others are dropped (and counted). Without TLS this is not authentication (anyone
//! who can reach the port can claim a store id), but it keeps stray and careless traffic
//! out, and it is what the raftstore's own checks build on.
//!
//! With TLS (see [`crate::security`]) every connection starts with a mutual TLS handshake,
//! before its preface: a peer without a certificate the cluster's CA signed cannot send a
//! byte, and one whose certificate names no store (a client's, say) is closed at once. The
//! store the certificate names is then the only store the connection may speak for: a
//! raft or snapshot stream whose hello claims another is refused, and the node-to-node API
//! learns the caller's store (see [`crate::server::peer_api`]). Refusals are logged with the
//! certificate's identity and counted in `tinykv_connections_refused_total`.
//!
//! While the node starts (and, for a joining node, until the cluster gave it a store id)
//! raft streams are closed unread and the HTTP API answers only `GET
//! /internal/v1/identity`; [`PeerListener::serve_raft`] and [`PeerListener::serve_api`]
//! open the rest once the store runs.
//!
//! Raft streams are served on the runtime the listener runs on (the raft side's first
//! thread, next to the Router: a message goes from socket to PeerFsm without waking another
//! thread); HTTP connections are served on the runtime given for them, so that decoding and
//! encoding requests never delays raft (a plaintext one is moved there whole; a TLS one,
//! whose session cannot move, stays registered with the raft runtime's I/O driver, which
//! only wakes it).
//!
//! [`TcpTransport`]: crate::server::raft_transport::TcpTransport

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message;
use tinykv_proto::raft_serverpb::{BatchRaftMessage, RaftMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::codec::FramedRead;

use crate::security::{CertIdentity, Conn, Tls};
use crate::server::address_book::AddressBook;
use crate::server::peer_api::PeerApi;
use crate::server::raft_transport::{
    codec, Hello, MAX_RECEIVING_SNAPSHOTS, MAX_SNAPSHOT_BYTES, RAFT_PREFACE, SNAPSHOT_PREFACE,
};
use crate::server::snapshot_stream;

/// How long an accepted connection may take to name its kind (and introduce itself).
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (typically: out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long an HTTP client may take to send a request head.
const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How an HTTP/1.1 request begins: the first four bytes of each method.
const HTTP_PREFACES: [&[u8; 4]; 9] = [
    b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"TRAC", b"CONN",
];

/// Where a raft message received from another store goes.
pub type Deliver = Arc<dyn Fn(RaftMessage) + Send + Sync>;

/// What raft and snapshot streams need: who this store is, which stores exist, and where
/// their messages go.
pub struct RaftInbound {
    /// This store (its cluster and id).
    pub own: Hello,
    /// The stores that may open streams.
    pub addresses: AddressBook,
    /// Delivers one accepted message.
    pub deliver: Deliver,
}

/// The node's peer listener; see the module documentation. Clones share it.
#[derive(Clone)]
pub struct PeerListener {
    inner: Arc<Inner>,
}

struct Inner {
    identity: crate::server::peer_api::Identity,
    raft: OnceLock<RaftInbound>,
    api: OnceLock<Arc<PeerApi>>,
    http_runtime: Handle,
    snapshot_streams: Semaphore,
    tls: Option<Tls>,
}

impl PeerListener {
    /// A listener for the node introduced by `identity`, serving HTTP connections on
    /// `http_runtime`, with mutual TLS if `tls` is given. Until
    /// [`PeerListener::serve_raft`] and [`PeerListener::serve_api`], it answers only who
    /// the node is.
    pub fn new(
        identity: crate::server::peer_api::Identity,
        http_runtime: Handle,
        tls: Option<Tls>,
    ) -> PeerListener {
        PeerListener {
            inner: Arc::new(Inner {
                identity,
                raft: OnceLock::new(),
                api: OnceLock::new(),
                http_runtime,
                snapshot_streams: Semaphore::new(MAX_RECEIVING_SNAPSHOTS),
                tls,
            }),
        }
    }

    /// The node's identity, as `GET /internal/v1/identity` answers it.
    pub fn identity(&self) -> &crate::server::peer_api::Identity {
        &self.inner.identity
    }

    /// Starts accepting raft and snapshot streams (once; later calls change nothing).
    pub fn serve_raft(&self, inbound: RaftInbound) {
        let _ = self.inner.raft.set(inbound);
    }

    /// Starts serving the whole node-to-node API (once).
    pub fn serve_api(&self, api: Arc<PeerApi>) {
        let _ = self.inner.api.set(api);
    }

    /// Accepts connections on `listener` until dropped; dropping it also closes every
    /// accepted raft and snapshot stream.
    pub async fn run(self, listener: TcpListener) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(self.clone().receive(stream, peer));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a peer connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }

    /// Opens TLS on one connection (if the node uses it), reads its preface and serves it
    /// as the kind it announces.
    async fn receive(self, tcp: TcpStream, peer: SocketAddr) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        // A sender that vanished without closing would hold this reader forever.
        crate::server::raft_transport::detect_dead_peers(&tcp);
        let (mut stream, caller) = match &self.inner.tls {
            None => (Conn::Plain(tcp), None),
            Some(tls) => match tls.accept_peer(tcp).await {
                Ok(conn) => match conn.peer_identity() {
                    Some(CertIdentity::Store(store_id)) => (conn, Some(store_id)),
                    other => {
                        tracing::warn!(
                            %peer,
                            certificate = ?other,
                            "refusing a peer connection whose certificate names no store"
                        );
                        crate::metrics::connection_refused("peer", "not_a_store");
                        return;
                    }
                },
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake on the peer listener failed");
                    crate::metrics::connection_refused("peer", "tls_handshake");
                    return;
                }
            },
        };
        let mut preface = [0u8; 4];
        match tokio::time::timeout(PREFACE_TIMEOUT, stream.read_exact(&mut preface)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "peer connection closed before its preface");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "peer connection sent no preface in time; closing it");
                return;
            }
        }
        match preface {
            RAFT_PREFACE | SNAPSHOT_PREFACE => {
                self.receive_raft(stream, peer, caller, preface).await
            }
            p if HTTP_PREFACES.contains(&&p) => self.hand_over_http(stream, peer, caller, preface),
            unknown => tracing::debug!(
                %peer,
                preface = ?unknown,
                "unknown peer connection preface; closing the connection"
            ),
        }
    }

    /// Serves a raft or snapshot stream, once its hello shows a known store of this
    /// cluster (and, with TLS, the store the `caller`'s certificate names).
    async fn receive_raft(
        &self,
        mut stream: Conn,
        peer: SocketAddr,
        caller: Option<u64>,
        preface: [u8; 4],
    ) {
        let Some(inbound) = self.inner.raft.get() else {
            tracing::debug!(%peer, "a raft stream before the store runs; closing it");
            return;
        };
        let hello = match tokio::time::timeout(PREFACE_TIMEOUT, Hello::read(&mut stream)).await {
            Ok(Ok(hello)) => hello,
            _ => {
                tracing::debug!(%peer, "a raft stream without its hello; closing it");
                return;
            }
        };
        if let Err(why) = inbound.check_hello(&hello) {
            tracing::warn!(%peer, claimed_store = hello.store_id, "refusing a raft stream: {why}");
            return;
        }
        if let Some(certified) = caller.filter(|&id| id != hello.store_id) {
            tracing::warn!(
                %peer,
                claimed_store = hello.store_id,
                certified_store = certified,
                "refusing a raft stream that claims another store than its certificate names"
            );
            crate::metrics::connection_refused("peer", "identity_mismatch");
            return;
        }
        let deliver = |msg: RaftMessage| inbound.accept(&hello, peer, msg);
        if preface == RAFT_PREFACE {
            receive_batches(stream, peer, deliver).await;
        } else {
            receive_snapshot(stream, peer, deliver, &self.inner.snapshot_streams).await;
        }
    }

    /// Serves an HTTP connection on the HTTP runtime; a plaintext one is moved there.
    fn hand_over_http(
        &self,
        stream: Conn,
        peer: SocketAddr,
        caller: Option<u64>,
        preface: [u8; 4],
    ) {
        let listener = self.clone();
        let stream = match stream {
            Conn::Plain(tcp) => tcp,
            tls => {
                self.inner.http_runtime.spawn(async move {
                    listener
                        .serve_http(Rewind::new(preface, tls), peer, caller)
                        .await;
                });
                return;
            }
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot hand an HTTP connection over");
                return;
            }
        };
        self.inner.http_runtime.spawn(async move {
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot serve an HTTP connection");
                    return;
                }
            };
            listener
                .serve_http(Rewind::new(preface, Conn::Plain(stream)), peer, caller)
                .await;
        });
    }

    /// Serves HTTP/1.1 requests on one connection with the node-to-node API; `caller` is
    /// the store the connection's certificate names (`None` without TLS).
    async fn serve_http(self, io: Rewind<Conn>, peer: SocketAddr, caller: Option<u64>) {
        use hyper::server::conn::http1;
        use hyper_util::rt::{TokioIo, TokioTimer};
        let service = hyper::service::service_fn(move |request| {
            let listener = self.clone();
            async move {
                let api = listener.inner.api.get().cloned();
                let identity = &listener.inner.identity;
                let response =
                    crate::server::peer_api::respond(api.as_deref(), identity, caller, request)
                        .await;
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let served = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HTTP_HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(io), service)
            .await;
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "peer HTTP connection ended with an error");
        }
    }
}

impl RaftInbound {
    /// Whether a stream introduced by `hello` may be read: this cluster, another store,
    /// one the address book knows.
    fn check_hello(&self, hello: &Hello) -> Result<(), String> {
        if hello.cluster_id != self.own.cluster_id {
            return Err(format!(
                "it belongs to cluster {}, this is cluster {}",
                hello.cluster_id, self.own.cluster_id
            ));
        }
        if hello.store_id == self.own.store_id {
            return Err("it claims to come from this very store".into());
        }
        if self.addresses.get(hello.store_id).is_none() {
            return Err(format!(
                "store {} is not in the address book",
                hello.store_id
            ));
        }
        Ok(())
    }

    /// Delivers `msg`, read from a stream that `hello` introduced, if it comes from that
    /// store and is addressed to this one.
    fn accept(&self, hello: &Hello, peer: SocketAddr, msg: RaftMessage) {
        let from = msg.from_peer.map(|p| p.store_id);
        let to = msg.to_peer.map(|p| p.store_id);
        if from != Some(hello.store_id) || to != Some(self.own.store_id) {
            tracing::debug!(
                %peer,
                stream_of = hello.store_id,
                ?from,
                ?to,
                region = msg.region_id,
                "dropping a raft message that does not match its stream"
            );
            tinykv_actors::metrics::message_refused("wrong_store");
            return;
        }
        (self.deliver)(msg);
    }
}

/// Reads one snapshot stream, once one of `snapshot_streams` is free, and delivers it.
pub(crate) async fn receive_snapshot<S, F>(
    stream: S,
    peer: SocketAddr,
    deliver: F,
    snapshot_streams: &Semaphore,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(RaftMessage),
{
    let Ok(_stream_permit) = snapshot_streams.acquire().await else {
        return; // The semaphore is never closed.
    };
    let started = Instant::now();
    let received = snapshot_stream::receive(stream, MAX_SNAPSHOT_BYTES, deliver).await;
    tinykv_actors::metrics::snapshot("receive", received.is_ok());
    match received {
        Ok(received) => tracing::info!(
            %peer,
            region = received.region_id,
            from_store = received.from_store,
            bytes = received.streamed.bytes,
            chunks = received.streamed.chunks,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "raft snapshot received"
        ),
        Err(why) => tracing::warn!(
            %peer,
            error = %why,
            "raft snapshot stream failed; discarding it"
        ),
    }
}

/// Reads `BatchRaftMessage` frames from one connection until it closes or sends garbage.
pub(crate) async fn receive_batches<S, F>(stream: S, peer: SocketAddr, deliver: F)
where
    S: AsyncRead + Unpin,
    F: Fn(RaftMessage),
{
    let mut frames = FramedRead::new(stream, codec());
    while let Some(frame) = frames.next().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(%peer, error = %e, "malformed raft frame; closing the connection");
                return;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "raft connection failed");
                return;
            }
        };
        match BatchRaftMessage::decode(frame.freeze()) {
            Ok(batch) => batch.msgs.into_iter().for_each(&deliver),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "undecodable raft frame; closing the connection");
                return;
            }
        }
    }
}

/// A stream whose first bytes were already read: they are read again first.
struct Rewind<S> {
    prefix: [u8; 4],
    consumed: usize,
    inner: S,
}

impl<S> Rewind<S> {
    fn new(prefix: [u8; 4], inner: S) -> Rewind<S> {
        Rewind {
            prefix,
            consumed: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.consumed < self.prefix.len() {
            let rest = &self.prefix[self.consumed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.consumed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
