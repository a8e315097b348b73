//! The TCP transport: raft messages between stores.
//!
//! Raft asks little of its network: messages may be lost, duplicated or delayed, but a
//! message that arrives must be intact, and sending must never stall the PeerFsm that
//! sends. So [`TcpTransport::send`] only hands the message on and returns. Messages travel
//! on two kinds of connection, because one kind of message is unlike the others: a
//! snapshot can weigh tens of MiB, where a heartbeat or an append weighs bytes or KiB.
//!
//! Ordinary messages go onto a bounded queue for the destination store; a full queue drops
//! the message, as a congested network would. Each destination has one connection task on
//! the tokio runtime the transport was built on. It waits for a message, drains whatever
//! else is queued (up to [`BATCH_MAX_MSGS`] messages or [`BATCH_MAX_BYTES`]), and writes
//! them as one `BatchRaftMessage` in one length-delimited frame: under load, many messages
//! share one write and one wake-up of the receiver.
//!
//! When that connection fails, the task drops it and everything queued meanwhile. Raft
//! retransmits what matters, and a burst of stale appends and votes delivered after an
//! outage is worse than none. It reconnects when the next message comes, backing off from
//! 50 ms to 1 s between failed attempts, and warns once per outage rather than once per
//! attempt. The receiver never writes on the connection, so the sender also watches the
//! socket for end-of-file to notice a closed peer before it writes into the void. A peer
//! that vanishes without closing (its host lost power, its address moved to another
//! machine, a link cut for good) sends no end-of-file: the kernel would retransmit for a
//! quarter of an hour before giving up, while every message queued for that store is
//! dropped. So each connection gives up once sent data stays unacknowledged for
//! [`TCP_USER_TIMEOUT`] (Linux's `TCP_USER_TIMEOUT`), and probes an idle peer with
//! keep-alives; the task then reconnects, resolving the store's address (a host name is
//! looked up again) from scratch.
//!
//! A snapshot (`MsgSnapshot`) never enters that queue: on it, it would hold up every
//! heartbeat and append behind it for as long as it takes to send, and it could not exceed
//! [`MAX_FRAME_BYTES`]. Each snapshot gets a task and a connection of its own instead, and
//! is streamed there in chunks of [`SNAPSHOT_CHUNK_BYTES`], as TinyKV's
//! `Snapshot(stream SnapshotChunk) -> Done` call does; the receiver reassembles it, delivers
//! it like any message and acknowledges it with `Done`. At most [`MAX_SENDING_SNAPSHOTS`]
//! streams of one transport run at once; further snapshots wait, and beyond
//! [`MAX_WAITING_SNAPSHOTS`] waiting ones they are dropped. A lost snapshot costs little:
//! the PeerFsm reports a snapshot that was never acknowledged as failed after a few
//! election timeouts, and raft sends a fresh one.
//!
//! The receiving side is the node's peer listener (`peer_listener`). Every connection
//! opens with a 4-byte preface naming its kind (`TKVR` for the message stream, `TKVS` for a
//! snapshot stream) and a [`Hello`] naming the sender's cluster and store; the receiver
//! closes a stream from another cluster or an unknown store, decodes each frame, and hands
//! every message that comes from the store the hello named to the store's router. A frame
//! that does not decode closes its connection (the sender will reconnect and start clean).
//! Snapshot streams are read by tasks of their own, at most [`MAX_RECEIVING_SNAPSHOTS`] at
//! once, each refusing more than [`MAX_SNAPSHOT_BYTES`]; message streams keep flowing
//! meanwhile.
//!
//! With TLS (`[security]`, see [`crate::security`]) every connection is mutual TLS: the
//! sender presents its store's certificate and accepts the receiver only if the cluster's
//! CA signed its certificate and that certificate names the very store it dialled, so a
//! wrong address in the address book cannot divert raft traffic (client values included)
//! to anyone else. The receiver, for its part, refuses a hello that claims another store
//! than the sender's certificate names.
//!
//! For tests, both sides obey a [`Faults`] switch (see [`crate::server::network_faults`]): messages to a
//! blocked store are dropped in [`TcpTransport::send`], and messages from one are dropped
//! on arrival, before they reach the router.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::SinkExt;
use prost::Message;
use tinykv_actors::Transport;
use tinykv_proto::raft_serverpb::{BatchRaftMessage, RaftMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::{FramedWrite, LengthDelimitedCodec};

use crate::security::{CertIdentity, Conn, Tls};
use crate::server::address_book::AddressBook;
use crate::server::network_faults::Faults;
use crate::server::snapshot_stream;
pub use crate::server::snapshot_stream::{MAX_SNAPSHOT_BYTES, SNAPSHOT_CHUNK_BYTES};

/// Largest frame either side accepts.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Messages queued for one destination before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Most messages written in one frame.
pub const BATCH_MAX_MSGS: usize = 4096;
/// Encoded bytes after which a frame takes no more messages.
pub const BATCH_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Snapshot streams one transport sends at once.
pub const MAX_SENDING_SNAPSHOTS: usize = 4;
/// Snapshots that may wait for a sending stream; more are dropped.
pub const MAX_WAITING_SNAPSHOTS: usize = 16;
/// Snapshot streams one server receives at once; more wait before being read.
pub const MAX_RECEIVING_SNAPSHOTS: usize = 4;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long data sent on a raft connection may stay unacknowledged before the connection
/// is dropped as dead (then reopened). Longer than any pause a live peer makes: raft
/// itself gives up on a silent leader after an election timeout, about 2 s.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle time before the first keep-alive probe, and between probes; three unanswered
/// probes drop the connection.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Makes a dead peer visible on `tcp`: a user timeout on unacknowledged data and
/// keep-alive probes (see the module documentation). Best effort: a platform without
/// them keeps the kernel's defaults.
pub fn detect_dead_peers(tcp: &TcpStream) {
    let socket = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE)
        .with_interval(KEEPALIVE)
        .with_retries(3);
    if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!("cannot set TCP keep-alive: {e}");
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = socket.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT)) {
        tracing::debug!("cannot set TCP_USER_TIMEOUT: {e}");
    }
}
/// First bytes of a connection carrying `BatchRaftMessage` frames.
pub(crate) const RAFT_PREFACE: [u8; 4] = *b"TKVR";
/// First bytes of a connection carrying one snapshot stream.
pub(crate) const SNAPSHOT_PREFACE: [u8; 4] = *b"TKVS";

/// Sends raft messages to other stores over TCP; see the module documentation.
pub struct TcpTransport {
    /// Opens connections to other stores.
    dialer: Dialer,
    runtime: Handle,
    queues: RwLock<HashMap<u64, Arc<Queue>>>,
    /// One permit per snapshot stream that may run now.
    snapshot_streams: Arc<Semaphore>,
    /// Snapshots handed over but still waiting for a permit.
    waiting_snapshots: Arc<AtomicUsize>,
    /// Stores cut off by fault injection.
    faults: Faults,
}

/// The sending end of one destination's queue.
struct Queue {
    tx: mpsc::Sender<RaftMessage>,
    /// Set while messages are being dropped, so a full queue is reported once.
    overflowing: AtomicBool,
}

impl TcpTransport {
    /// A transport of the store `hello` names, that finds stores in `addresses` and runs
    /// its connection tasks on `runtime`.
    pub fn new(addresses: AddressBook, hello: Hello, runtime: Handle) -> TcpTransport {
        TcpTransport {
            dialer: Dialer {
                addresses,
                hello,
                tls: None,
            },
            runtime,
            queues: RwLock::new(HashMap::new()),
            snapshot_streams: Arc::new(Semaphore::new(MAX_SENDING_SNAPSHOTS)),
            waiting_snapshots: Arc::new(AtomicUsize::new(0)),
            faults: Faults::disabled(),
        }
    }

    /// The same transport, opening TLS connections with `tls` (plaintext if `None`).
    pub fn with_tls(mut self, tls: Option<Tls>) -> TcpTransport {
        self.dialer.tls = tls;
        self
    }

    /// The same transport, dropping messages to the stores `faults` blocks.
    pub fn with_faults(mut self, faults: Faults) -> TcpTransport {
        self.faults = faults;
        self
    }

    /// The queue of `store_id`, starting its connection task if there is none (or the
    /// previous one died).
    fn queue(&self, store_id: u64) -> Arc<Queue> {
        if let Some(queue) = self
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&store_id)
        {
            if !queue.tx.is_closed() {
                return queue.clone();
            }
        }
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = queues.get(&store_id) {
            if !queue.tx.is_closed() {
                return queue.clone();
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        self.runtime
            .spawn(run_connection(store_id, self.dialer.clone(), rx));
        let queue = Arc::new(Queue {
            tx,
            overflowing: AtomicBool::new(false),
        });
        queues.insert(store_id, queue.clone());
        queue
    }

    /// Streams the snapshot message `msg` to `store_id` on a connection of its own, once
    /// one of the transport's snapshot streams is free.
    fn send_snapshot(&self, store_id: u64, msg: RaftMessage) {
        let region = msg.region_id;
        let bytes = snapshot_stream::snapshot_len(&msg);
        if bytes > MAX_SNAPSHOT_BYTES {
            tracing::warn!(
                to_store = store_id,
                region,
                bytes,
                "dropping a raft snapshot larger than any receiver accepts"
            );
            tinykv_actors::metrics::snapshot("send", false);
            return;
        }
        if self.waiting_snapshots.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING_SNAPSHOTS {
            self.waiting_snapshots.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(
                to_store = store_id,
                region,
                bytes,
                "too many raft snapshots waiting to be sent; dropping this one"
            );
            tinykv_actors::metrics::snapshot("send", false);
            return;
        }
        let waiting = WaitingSnapshot(self.waiting_snapshots.clone());
        let streams = self.snapshot_streams.clone();
        let dialer = self.dialer.clone();
        self.runtime.spawn(async move {
            let Ok(_stream) = streams.acquire_owned().await else {
                return; // The semaphore is never closed.
            };
            drop(waiting);
            let started = Instant::now();
            let sent = stream_snapshot(store_id, &dialer, msg).await;
            tinykv_actors::metrics::snapshot("send", sent.is_ok());
            match sent {
                Ok(sent) => tracing::info!(
                    to_store = store_id,
                    region,
                    bytes = sent.bytes,
                    chunks = sent.chunks,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "raft snapshot sent"
                ),
                Err(why) => tracing::warn!(
                    to_store = store_id,
                    region,
                    bytes,
                    error = %why,
                    "sending a raft snapshot failed; raft will send another"
                ),
            }
        });
    }
}

/// Counts one snapshot among those waiting for a stream, until dropped.
struct WaitingSnapshot(Arc<AtomicUsize>);

impl Drop for WaitingSnapshot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Transport for TcpTransport {
    fn send(&self, msg: RaftMessage) {
        let Some(store_id) = msg.to_peer.as_ref().map(|p| p.store_id) else {
            tracing::debug!(
                region = msg.region_id,
                "dropping raft message without a destination"
            );
            return;
        };
        if self.faults.is_blocked(store_id) {
            return;
        }
        if snapshot_stream::is_snapshot(&msg) {
            self.send_snapshot(store_id, msg);
            return;
        }
        let queue = self.queue(store_id);
        match queue.tx.try_send(msg) {
            Ok(()) => {
                if queue.overflowing.load(Ordering::Relaxed) {
                    queue.overflowing.store(false, Ordering::Relaxed);
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !queue.overflowing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        to_store = store_id,
                        "raft message queue full; dropping messages"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!(to_store = store_id, "connection task gone; message dropped");
            }
        }
    }
}

/// The length-delimited framing of raft message streams.
pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

/// The connection task of one destination store; ends when the transport is dropped.
async fn run_connection(store_id: u64, dialer: Dialer, mut rx: mpsc::Receiver<RaftMessage>) {
    let mut backoff = BACKOFF_MIN;
    let mut in_outage = false;
    while let Some(first) = rx.recv().await {
        let stream = match dialer.connect(store_id, RAFT_PREFACE).await {
            Ok(stream) => stream,
            Err(why) => {
                if !in_outage {
                    tracing::warn!(to_store = store_id, error = %why, "store unreachable; dropping its raft messages until it is back");
                    in_outage = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                discard_queued(&mut rx);
                continue;
            }
        };
        if std::mem::take(&mut in_outage) {
            tracing::info!(to_store = store_id, "raft connection re-established");
        } else {
            tracing::debug!(to_store = store_id, "raft connection established");
        }
        backoff = BACKOFF_MIN;
        match pump(stream, first, &mut rx).await {
            Ok(()) => return,
            Err(why) => {
                // A lost connection starts an outage: reported here, not per failed retry.
                tracing::warn!(to_store = store_id, error = %why, "raft connection lost; reconnecting");
                in_outage = true;
                discard_queued(&mut rx);
            }
        }
    }
}

/// Opens connections to other stores: where they are, who this store is, and TLS.
#[derive(Clone)]
struct Dialer {
    addresses: AddressBook,
    /// This store, as it introduces itself on every connection it opens.
    hello: Hello,
    tls: Option<Tls>,
}

impl Dialer {
    /// A connection to the raft address of `store_id` that has announced its kind with
    /// `preface` and its sender with the hello; with TLS, only if the certificate of
    /// whoever answers names `store_id`.
    async fn connect(&self, store_id: u64, preface: [u8; 4]) -> Result<Conn, String> {
        let addr = self
            .addresses
            .raft_addr(store_id)
            .ok_or_else(|| format!("store {store_id} is not in the address book"))?;
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(format!("connecting to {addr}: {e}")),
            Err(_) => return Err(format!("connecting to {addr}: timed out")),
        };
        tcp.set_nodelay(true)
            .map_err(|e| format!("setting TCP_NODELAY on {addr}: {e}"))?;
        detect_dead_peers(&tcp);
        let mut stream = match &self.tls {
            None => Conn::Plain(tcp),
            Some(tls) => {
                let conn = tls
                    .connect(tcp, &addr)
                    .await
                    .map_err(|e| format!("TLS with {addr}: {e}"))?;
                let answered = conn.peer_identity();
                if answered != Some(CertIdentity::Store(store_id)) {
                    return Err(format!(
                        "the certificate of the node at {addr} names {}, not store {store_id}",
                        answered.map_or("nobody".to_string(), |who| who.to_string())
                    ));
                }
                conn
            }
        };
        let mut opening = preface.to_vec();
        opening.extend_from_slice(&self.hello.encode());
        stream
            .write_all(&opening)
            .await
            .map_err(|e| format!("writing the preface to {addr}: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("writing the preface to {addr}: {e}"))?;
        Ok(stream)
    }
}

/// Connects to `store_id` and streams the snapshot message `msg` there.
async fn stream_snapshot(
    store_id: u64,
    dialer: &Dialer,
    msg: RaftMessage,
) -> Result<snapshot_stream::Streamed, String> {
    let stream = dialer.connect(store_id, SNAPSHOT_PREFACE).await?;
    snapshot_stream::send(stream, msg).await
}

/// Writes batches on `stream` until the queue closes (`Ok`) or the connection fails.
async fn pump(
    stream: Conn,
    first: RaftMessage,
    rx: &mut mpsc::Receiver<RaftMessage>,
) -> Result<(), String> {
    let (mut reader, writer) = tokio::io::split(stream);
    let mut frames = FramedWrite::new(writer, codec());
    let mut next = Some(first);
    let mut probe = [0u8; 1];
    loop {
        let msg = match next.take() {
            Some(msg) => msg,
            None => tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => msg,
                    None => return Ok(()),
                },
                read = reader.read(&mut probe) => return Err(match read {
                    Ok(0) => "closed by the peer".to_string(),
                    Ok(_) => "the peer sent unexpected data".to_string(),
                    Err(e) => e.to_string(),
                }),
            },
        };
        let batch = collect_batch(msg, rx);
        let len = batch.encoded_len();
        if len > MAX_FRAME_BYTES {
            tracing::warn!(
                bytes = len,
                msgs = batch.msgs.len(),
                "dropping raft batch larger than a frame"
            );
            continue;
        }
        let mut buf = BytesMut::with_capacity(len);
        batch
            .encode(&mut buf)
            .expect("the buffer has the encoded length");
        frames.send(buf.freeze()).await.map_err(|e| e.to_string())?;
    }
}

/// `first` and whatever else is queued, up to the batch limits.
fn collect_batch(first: RaftMessage, rx: &mut mpsc::Receiver<RaftMessage>) -> BatchRaftMessage {
    let mut bytes = first.encoded_len();
    let mut msgs = vec![first];
    while msgs.len() < BATCH_MAX_MSGS && bytes < BATCH_MAX_BYTES {
        match rx.try_recv() {
            Ok(msg) => {
                bytes += msg.encoded_len();
                msgs.push(msg);
            }
            Err(_) => break,
        }
    }
    BatchRaftMessage { msgs }
}

fn discard_queued(rx: &mut mpsc::Receiver<RaftMessage>) {
    let mut dropped = 0usize;
    while rx.try_recv().is_ok() {
        dropped += 1;
    }
    if dropped > 0 {
        tracing::debug!(dropped, "discarded raft messages queued while disconnected");
    }
}

/// Who opens a raft or snapshot stream, written right after the stream's preface: the
/// sender's cluster and store (16 bytes, big-endian). The receiver refuses a stream from
/// another cluster or an unknown store, and every message from a store other than the
/// one named (see `peer_listener`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's cluster.
    pub cluster_id: u64,
    /// The sender's store.
    pub store_id: u64,
}

impl Hello {
    /// The 16 bytes of the hello.
    pub fn encode(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.cluster_id.to_be_bytes());
        bytes[8..].copy_from_slice(&self.store_id.to_be_bytes());
        bytes
    }

    /// Reads a hello from `stream`.
    pub async fn read<R: tokio::io::AsyncRead + Unpin>(stream: &mut R) -> std::io::Result<Hello> {
        let mut bytes = [0u8; 16];
        stream.read_exact(&mut bytes).await?;
        let (cluster, store) = bytes.split_at(8);
        let number = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
        Ok(Hello {
            cluster_id: number(cluster),
            store_id: number(store),
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tinykv_proto::eraftpb::{self, ConfState, MessageType, SnapshotMetadata};
    use tinykv_proto::metapb::{Peer, RegionEpoch};
    use tinykv_proto::raft_serverpb::{Done, SnapshotChunk};
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;
    use crate::config::StoreAddress;
    use crate::server::peer_api::Identity;
    use crate::server::peer_listener::{
        receive_batches, receive_snapshot, PeerListener, RaftInbound,
    };
    use futures::StreamExt;
    use std::net::SocketAddr;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    const WAIT: Duration = Duration::from_secs(10);

    /// A message of region `region_id` from store 1 to store `to_store`.
    fn message(to_store: u64, region_id: u64) -> RaftMessage {
        RaftMessage {
            region_id,
            from_peer: Some(Peer { id: 1, store_id: 1 }),
            to_peer: Some(Peer {
                id: to_store,
                store_id: to_store,
            }),
            ..Default::default()
        }
    }

    /// `msg`, sent by store `store_id` instead.
    fn from(store_id: u64, msg: RaftMessage) -> RaftMessage {
        RaftMessage {
            from_peer: Some(Peer {
                id: store_id,
                store_id,
            }),
            ..msg
        }
    }

    /// Store `store_id` of cluster 1.
    fn hello(store_id: u64) -> Hello {
        Hello {
            cluster_id: 1,
            store_id,
        }
    }

    /// A snapshot message for region `region_id` on `to_store` carrying `len` bytes of data.
    fn snapshot_message(to_store: u64, region_id: u64, len: usize) -> RaftMessage {
        // A pattern whose period does not divide the chunk size, so misplaced chunks show.
        let mut data = (0..=250u8).collect::<Vec<u8>>().repeat(len / 251 + 1);
        data.truncate(len);
        RaftMessage {
            from_peer: Some(Peer {
                id: 100 + region_id,
                store_id: 1,
            }),
            to_peer: Some(Peer {
                id: to_store,
                store_id: to_store,
            }),
            region_epoch: Some(RegionEpoch {
                conf_ver: 2,
                version: 3,
            }),
            message: Some(eraftpb::Message {
                msg_type: MessageType::MsgSnapshot as i32,
                to: to_store,
                from: 100 + region_id,
                term: 6,
                snapshot: Some(eraftpb::Snapshot {
                    data,
                    metadata: Some(SnapshotMetadata {
                        conf_state: Some(ConfState {
                            voters: vec![100 + region_id, to_store],
                            ..Default::default()
                        }),
                        index: 77,
                        term: 6,
                    }),
                }),
                ..Default::default()
            }),
            start_key: b"b".to_vec(),
            end_key: b"k".to_vec(),
            ..message(to_store, region_id)
        }
    }

    /// Asserts that `received` equals `sent`, without printing megabytes when it does not.
    fn assert_same_snapshot(received: &RaftMessage, sent: &RaftMessage) {
        let data = |m: &RaftMessage| snapshot_stream::snapshot_len(m);
        assert_eq!(data(received), data(sent), "snapshot sizes");
        assert!(received == sent, "the snapshot arrives intact");
    }

    fn address(id: u64, addr: SocketAddr) -> StoreAddress {
        StoreAddress {
            id,
            raft_addr: addr.to_string(),
            http_addr: "127.0.0.1:1".into(),
        }
    }

    /// Every store a test's receiver knows: stores 1 to 3, wherever they listen.
    fn known_stores() -> AddressBook {
        AddressBook::new((1..=3).map(|id| StoreAddress {
            id,
            raft_addr: format!("127.0.0.1:{}", 10 + id),
            http_addr: "127.0.0.1:1".into(),
        }))
    }

    /// Starts store `own`'s peer listener on `listener`, delivering to `deliver`.
    fn start_listener(
        listener: TcpListener,
        own: u64,
        deliver: impl Fn(RaftMessage) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let peers = PeerListener::new(Identity::new(1, own), Handle::current(), None);
        peers.serve_raft(RaftInbound {
            own: hello(own),
            addresses: known_stores(),
            deliver: Arc::new(deliver),
        });
        tokio::spawn(peers.run(listener))
    }

    /// Starts store `own`'s receiver on `listener`; returns its task and the messages it
    /// delivers.
    fn start_receiver_of(
        listener: TcpListener,
        own: u64,
    ) -> (tokio::task::JoinHandle<()>, UnboundedReceiver<RaftMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = start_listener(listener, own, move |msg| {
            let _ = tx.send(msg);
        });
        (task, rx)
    }

    /// Starts store 2's receiver on `listener`.
    fn start_receiver(
        listener: TcpListener,
    ) -> (tokio::task::JoinHandle<()>, UnboundedReceiver<RaftMessage>) {
        start_receiver_of(listener, 2)
    }

    async fn next(rx: &mut UnboundedReceiver<RaftMessage>) -> RaftMessage {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a message within the timeout")
            .expect("the receiver is running")
    }

    #[tokio::test]
    async fn two_stores_exchange_batches() {
        let listener1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let book = AddressBook::new([
            address(1, listener1.local_addr().unwrap()),
            address(2, listener2.local_addr().unwrap()),
        ]);
        let (_task1, mut inbox1) = start_receiver_of(listener1, 1);
        let (_task2, mut inbox2) = start_receiver_of(listener2, 2);
        let transport1 = TcpTransport::new(book.clone(), hello(1), Handle::current());
        let transport2 = TcpTransport::new(book, hello(2), Handle::current());

        for region in 1..=100 {
            transport1.send(message(2, region));
        }
        transport2.send(from(2, message(1, 7)));
        for region in 1..=100 {
            assert_eq!(next(&mut inbox2).await.region_id, region, "order is kept");
        }
        assert_eq!(next(&mut inbox1).await.region_id, 7);
    }

    #[tokio::test]
    async fn a_partition_drops_messages_both_ways_until_healed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The receiver is store 2, partitioned from store 3; store 1 sends, partitioned
        // from store 2, and so does store 3.
        let receiver_faults = Faults::enabled();
        receiver_faults.partition([3]).unwrap();
        let (tx, mut inbox) = mpsc::unbounded_channel();
        let blocked = receiver_faults.clone();
        let _task = start_listener(listener, 2, move |msg: RaftMessage| {
            if !blocked.is_blocked(msg.from_peer.map_or(0, |p| p.store_id)) {
                let _ = tx.send(msg);
            }
        });
        let sender_faults = Faults::enabled();
        sender_faults.partition([2]).unwrap();
        let book = AddressBook::new([address(2, addr)]);
        let transport = TcpTransport::new(book.clone(), hello(1), Handle::current())
            .with_faults(sender_faults.clone());
        let transport3 = TcpTransport::new(book, hello(3), Handle::current());

        transport.send(message(2, 1));
        sender_faults.heal().unwrap();
        // Frames from store 3 are dropped on arrival, those from store 1 delivered.
        transport3.send(from(3, message(2, 2)));
        transport.send(message(2, 3));
        assert_eq!(next(&mut inbox).await.region_id, 3);
        receiver_faults.heal().unwrap();
        transport3.send(from(3, message(2, 4)));
        assert_eq!(next(&mut inbox).await.region_id, 4);
        assert!(inbox.try_recv().is_err(), "nothing else arrived");
    }

    #[tokio::test]
    async fn streams_from_strangers_and_messages_from_other_stores_are_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_task, mut inbox) = start_receiver(listener);
        let book = AddressBook::new([address(2, addr)]);
        let other_cluster = Hello {
            cluster_id: 9,
            store_id: 1,
        };
        let strangers = [other_cluster, hello(7), hello(2)];
        let transports: Vec<TcpTransport> = strangers
            .iter()
            .map(|h| TcpTransport::new(book.clone(), *h, Handle::current()))
            .collect();
        for (transport, h) in transports.iter().zip(strangers) {
            transport.send(from(h.store_id, message(2, 1)));
        }
        // Store 1's stream is accepted, but it may only carry store 1's messages, for
        // store 2.
        let own = TcpTransport::new(book, hello(1), Handle::current());
        own.send(from(3, message(2, 2)));
        own.send(RaftMessage {
            to_peer: Some(Peer { id: 5, store_id: 5 }),
            ..message(2, 3)
        });
        own.send(message(2, 4));
        assert_eq!(
            next(&mut inbox).await.region_id,
            4,
            "only store 1's own message"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(inbox.try_recv().is_err(), "nothing else arrived");
    }

    #[tokio::test]
    async fn a_sender_reconnects_after_the_receiver_restarts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let transport = TcpTransport::new(
            AddressBook::new([address(2, addr)]),
            hello(1),
            Handle::current(),
        );
        let (task, mut inbox) = start_receiver(listener);
        transport.send(message(2, 1));
        assert_eq!(next(&mut inbox).await.region_id, 1);

        task.abort();
        let _ = task.await;
        let (_task, mut inbox) = start_receiver(TcpListener::bind(addr).await.unwrap());
        // Messages sent before the sender notices the outage are lost; keep sending until
        // one arrives through the new connection.
        let delivered = tokio::time::timeout(WAIT, async {
            loop {
                transport.send(message(2, 2));
                if let Ok(Some(msg)) =
                    tokio::time::timeout(Duration::from_millis(100), inbox.recv()).await
                {
                    return msg;
                }
            }
        })
        .await
        .expect("the sender reconnects");
        assert_eq!(delivered.region_id, 2);
    }

    #[tokio::test]
    async fn a_malformed_frame_closes_only_its_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_task, mut inbox) = start_receiver(listener);

        let mut garbage = TcpStream::connect(addr).await.unwrap();
        garbage.write_all(&RAFT_PREFACE).await.unwrap();
        garbage.write_all(&hello(1).encode()).await.unwrap();
        garbage
            .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, garbage.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the receiver closes the connection");

        let transport = TcpTransport::new(
            AddressBook::new([address(2, addr)]),
            hello(1),
            Handle::current(),
        );
        transport.send(message(2, 3));
        assert_eq!(next(&mut inbox).await.region_id, 3);
    }

    #[tokio::test]
    async fn an_unknown_preface_closes_only_its_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_task, mut inbox) = start_receiver(listener);

        // A well-formed batch behind the wrong preface: it must not be delivered.
        let batch = BatchRaftMessage {
            msgs: vec![message(2, 1)],
        }
        .encode_to_vec();
        let mut stranger = TcpStream::connect(addr).await.unwrap();
        stranger.write_all(b"HTTP").await.unwrap();
        stranger
            .write_all(&(batch.len() as u32).to_be_bytes())
            .await
            .unwrap();
        stranger.write_all(&batch).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, stranger.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the receiver closes the connection");

        let transport = TcpTransport::new(
            AddressBook::new([address(2, addr)]),
            hello(1),
            Handle::current(),
        );
        transport.send(message(2, 3));
        assert_eq!(next(&mut inbox).await.region_id, 3, "nothing came before");
        assert!(inbox.try_recv().is_err(), "nothing came after");
    }

    #[tokio::test]
    async fn a_snapshot_is_streamed_in_chunks_on_a_connection_of_its_own() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let transport = TcpTransport::new(
            AddressBook::new([address(2, listener.local_addr().unwrap())]),
            hello(1),
            Handle::current(),
        );
        let sent = snapshot_message(2, 9, 3 * SNAPSHOT_CHUNK_BYTES + SNAPSHOT_CHUNK_BYTES / 2);
        transport.send(sent.clone());

        let (mut stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the snapshot connection within the timeout")
            .unwrap();
        let mut preface = [0u8; 4];
        stream.read_exact(&mut preface).await.unwrap();
        assert_eq!(preface, SNAPSHOT_PREFACE);
        assert_eq!(Hello::read(&mut stream).await.unwrap(), hello(1));

        let mut frames = tokio_util::codec::Framed::new(stream, codec());
        let mut chunks = Vec::new();
        loop {
            let frame = tokio::time::timeout(WAIT, frames.next())
                .await
                .expect("a chunk within the timeout")
                .expect("the stream goes on until its end marker")
                .unwrap();
            let chunk = SnapshotChunk::decode(frame.freeze()).unwrap();
            if chunk == SnapshotChunk::default() {
                break;
            }
            chunks.push(chunk);
        }
        assert_eq!(chunks.len(), 4, "3.5 MiB make four chunks");
        let first = chunks[0]
            .message
            .clone()
            .expect("the first chunk carries the message");
        assert_eq!(snapshot_stream::snapshot_len(&first), 0, "without its data");
        assert!(chunks[1..].iter().all(|c| c.message.is_none()));
        assert!(chunks.iter().all(|c| c.data.len() <= SNAPSHOT_CHUNK_BYTES));

        let mut reassembled = first;
        reassembled
            .message
            .as_mut()
            .and_then(|m| m.snapshot.as_mut())
            .expect("the snapshot's metadata stays")
            .data = chunks.into_iter().flat_map(|c| c.data).collect();
        assert_same_snapshot(&reassembled, &sent);
        frames
            .send(Bytes::from(Done {}.encode_to_vec()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_snapshot_arrives_intact() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_task, mut inbox) = start_receiver(listener);
        let transport = TcpTransport::new(
            AddressBook::new([address(2, addr)]),
            hello(1),
            Handle::current(),
        );

        let sent = snapshot_message(2, 9, 3 * SNAPSHOT_CHUNK_BYTES + SNAPSHOT_CHUNK_BYTES / 2);
        transport.send(sent.clone());
        assert_same_snapshot(&next(&mut inbox).await, &sent);
    }

    #[tokio::test]
    async fn a_snapshot_larger_than_a_frame_arrives_intact() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_task, mut inbox) = start_receiver(listener);
        let transport = TcpTransport::new(
            AddressBook::new([address(2, addr)]),
            hello(1),
            Handle::current(),
        );

        let sent = snapshot_message(2, 9, MAX_FRAME_BYTES + 6 * SNAPSHOT_CHUNK_BYTES);
        transport.send(sent.clone());
        assert_same_snapshot(&next(&mut inbox).await, &sent);
    }

    #[tokio::test]
    async fn messages_overtake_a_snapshot_that_is_still_streaming() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (inbox_tx, mut inbox) = mpsc::unbounded_channel();
        let deliver = move |msg| {
            let _ = inbox_tx.send(msg);
        };
        // A receiver that serves message streams but holds snapshot streams unread, so the
        // snapshot cannot finish until the test lets it.
        let (held_tx, mut held) = mpsc::unbounded_channel();
        let serve_messages = deliver.clone();
        let _server = tokio::spawn(async move {
            loop {
                let (mut stream, peer) = listener.accept().await.unwrap();
                let mut preface = [0u8; 4];
                stream.read_exact(&mut preface).await.unwrap();
                Hello::read(&mut stream).await.unwrap();
                match preface {
                    SNAPSHOT_PREFACE => held_tx.send((stream, peer)).unwrap(),
                    _ => {
                        tokio::spawn(receive_batches(stream, peer, serve_messages.clone()));
                    }
                }
            }
        });
        let transport = TcpTransport::new(
            AddressBook::new([address(2, addr)]),
            hello(1),
            Handle::current(),
        );

        let snapshot = snapshot_message(2, 9, 16 * SNAPSHOT_CHUNK_BYTES);
        transport.send(snapshot.clone());
        transport.send(message(2, 10));
        let (stream, peer) = tokio::time::timeout(WAIT, held.recv())
            .await
            .expect("the snapshot connection within the timeout")
            .unwrap();
        assert_eq!(
            next(&mut inbox).await.region_id,
            10,
            "the message arrives while the snapshot is held"
        );

        let streams = Semaphore::new(1);
        let receiving = tokio::spawn(async move {
            receive_snapshot(stream, peer, deliver, &streams).await;
        });
        assert_same_snapshot(&next(&mut inbox).await, &snapshot);
        receiving.await.unwrap();
    }
}
