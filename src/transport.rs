//! The TCP transport: raft messages between stores.
//!
//! Raft asks little of its network: messages may be lost, duplicated or delayed, but a
//! message that arrives must be intact, and sending must never stall the PeerFsm that
//! sends. So [`TcpTransport::send`] only pushes the message onto a bounded queue for the
//! destination store and returns; a full queue drops the message, as a congested network
//! would. Each destination has one connection task on the tokio runtime the transport was
//! built on. It waits for a message, drains whatever else is queued (up to
//! [`BATCH_MAX_MSGS`] messages or [`BATCH_MAX_BYTES`]), and writes them as one
//! `BatchRaftMessage` in one length-delimited frame: under load, many messages share one
//! write and one wake-up of the receiver.
//!
//! When the connection fails, the task drops it and everything queued meanwhile. Raft
//! retransmits what matters, and a burst of stale appends and votes delivered after an
//! outage is worse than none. It reconnects when the next message comes, backing off from
//! 50 ms to 1 s between failed attempts, and warns once per outage rather than once per
//! attempt. The receiver never writes on the connection, so the sender also watches the
//! socket for end-of-file to notice a closed peer before it writes into the void.
//!
//! [`serve_raft`] is the receiving side: it accepts connections, decodes each frame and
//! hands every message to the store's router. A frame that does not decode closes its
//! connection (the sender will reconnect and start clean).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use prost::Message;
use tinykv_actors::{StoreRouter, Transport};
use tinykv_proto::raft_serverpb::{BatchRaftMessage, RaftMessage};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::address_book::AddressBook;

/// Largest frame either side accepts.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Messages queued for one destination before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Most messages written in one frame.
pub const BATCH_MAX_MSGS: usize = 4096;
/// Encoded bytes after which a frame takes no more messages.
pub const BATCH_MAX_BYTES: usize = 4 * 1024 * 1024;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends raft messages to other stores over TCP; see the module documentation.
pub struct TcpTransport {
    addresses: AddressBook,
    runtime: Handle,
    queues: RwLock<HashMap<u64, Arc<Queue>>>,
}

/// The sending end of one destination's queue.
struct Queue {
    tx: mpsc::Sender<RaftMessage>,
    /// Set while messages are being dropped, so a full queue is reported once.
    overflowing: AtomicBool,
}

impl TcpTransport {
    /// A transport that finds stores in `addresses` and runs its connection tasks on
    /// `runtime`.
    pub fn new(addresses: AddressBook, runtime: Handle) -> TcpTransport {
        TcpTransport {
            addresses,
            runtime,
            queues: RwLock::new(HashMap::new()),
        }
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
            .spawn(run_connection(store_id, self.addresses.clone(), rx));
        let queue = Arc::new(Queue {
            tx,
            overflowing: AtomicBool::new(false),
        });
        queues.insert(store_id, queue.clone());
        queue
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

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

/// The connection task of one destination store; ends when the transport is dropped.
async fn run_connection(
    store_id: u64,
    addresses: AddressBook,
    mut rx: mpsc::Receiver<RaftMessage>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut in_outage = false;
    while let Some(first) = rx.recv().await {
        let stream = match connect(store_id, &addresses).await {
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

async fn connect(store_id: u64, addresses: &AddressBook) -> Result<TcpStream, String> {
    let addr = addresses
        .raft_addr(store_id)
        .ok_or_else(|| format!("store {store_id} is not in the address book"))?;
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(format!("connecting to {addr}: {e}")),
        Err(_) => return Err(format!("connecting to {addr}: timed out")),
    };
    stream
        .set_nodelay(true)
        .map_err(|e| format!("setting TCP_NODELAY on {addr}: {e}"))?;
    Ok(stream)
}

/// Writes batches on `stream` until the queue closes (`Ok`) or the connection fails.
async fn pump(
    stream: TcpStream,
    first: RaftMessage,
    rx: &mut mpsc::Receiver<RaftMessage>,
) -> Result<(), String> {
    let (mut reader, writer) = stream.into_split();
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

/// Accepts raft connections on `listener` and delivers every received message to
/// `router`. Runs until dropped; dropping it also closes every accepted connection.
pub async fn serve_raft(listener: TcpListener, router: StoreRouter) {
    serve_frames(listener, move |msg| router.deliver(msg)).await
}

/// [`serve_raft`] with any sink for the messages.
async fn serve_frames<F>(listener: TcpListener, deliver: F)
where
    F: Fn(RaftMessage) + Clone + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(receive(stream, peer, deliver.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a raft connection failed");
                    tokio::time::sleep(BACKOFF_MIN).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Reads frames from one connection until it closes or sends garbage.
async fn receive<F: Fn(RaftMessage)>(stream: TcpStream, peer: SocketAddr, deliver: F) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
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

#[cfg(test)]
mod tests {
    use tinykv_proto::metapb::Peer;
    use tokio::io::AsyncWriteExt;
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;
    use crate::config::StoreAddress;

    const WAIT: Duration = Duration::from_secs(10);

    fn message(to_store: u64, region_id: u64) -> RaftMessage {
        RaftMessage {
            region_id,
            to_peer: Some(Peer {
                id: to_store,
                store_id: to_store,
            }),
            ..Default::default()
        }
    }

    fn address(id: u64, addr: SocketAddr) -> StoreAddress {
        StoreAddress {
            id,
            raft_addr: addr.to_string(),
            http_addr: "127.0.0.1:1".into(),
        }
    }

    /// Starts a receiver on `listener`; returns its task and the messages it delivers.
    fn start_receiver(
        listener: TcpListener,
    ) -> (tokio::task::JoinHandle<()>, UnboundedReceiver<RaftMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve_frames(listener, move |msg| {
            let _ = tx.send(msg);
        }));
        (task, rx)
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
        let (_task1, mut inbox1) = start_receiver(listener1);
        let (_task2, mut inbox2) = start_receiver(listener2);
        let transport1 = TcpTransport::new(book.clone(), Handle::current());
        let transport2 = TcpTransport::new(book, Handle::current());

        for region in 1..=100 {
            transport1.send(message(2, region));
        }
        transport2.send(message(1, 7));
        for region in 1..=100 {
            assert_eq!(next(&mut inbox2).await.region_id, region, "order is kept");
        }
        assert_eq!(next(&mut inbox1).await.region_id, 7);
    }

    #[tokio::test]
    async fn a_sender_reconnects_after_the_receiver_restarts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let transport = TcpTransport::new(AddressBook::new([address(2, addr)]), Handle::current());
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
        garbage
            .write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, garbage.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the receiver closes the connection");

        let transport = TcpTransport::new(AddressBook::new([address(2, addr)]), Handle::current());
        transport.send(message(2, 3));
        assert_eq!(next(&mut inbox).await.region_id, 3);
    }
}
