//! The snapshot stream: one raft snapshot, cut into chunks, on a connection of its own.
//!
//! A snapshot can be as large as a region (tens of MiB), far more than any other raft
//! message. Sent inside a `BatchRaftMessage` frame it would hold up every heartbeat and
//! append queued behind it, and it could not exceed a frame. So the transport gives each
//! snapshot a connection of its own and this module speaks the protocol on it, TinyKV's
//! `Snapshot(stream SnapshotChunk) -> Done` over length-delimited frames:
//!
//! 1. the first `SnapshotChunk` carries the `MsgSnapshot` `RaftMessage` with its snapshot
//!    data moved out, and the first piece of that data;
//! 2. every further chunk carries only the next piece, [`SNAPSHOT_CHUNK_BYTES`] at most;
//! 3. an empty chunk (neither message nor data) ends the stream. An explicit end marker,
//!    not end-of-file, because a sender that dies mid-stream also ends its connection
//!    cleanly, and a truncated snapshot must never be mistaken for a whole one;
//! 4. the receiver puts the data back into the message, delivers it, and answers with one
//!    frame holding an encoded `Done`.
//!
//! The sender writes every piece straight from the snapshot's buffer, behind a small header
//! it encodes by hand, so sending copies nothing. The receiver grows its buffer only as data
//! arrives and refuses a stream past a size limit, so a peer cannot make it reserve memory by
//! announcing a size. Every read and write, and the wait for `Done`, is bounded by
//! [`SNAPSHOT_IO_TIMEOUT`]: a stalled peer costs a stream, never a stuck task.
//!
//! Connecting, the connection preface, how many streams run at once and logging belong to
//! the transport; this module only knows the bytes of one stream.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use prost::Message;
use tinykv_proto::eraftpb::MessageType;
use tinykv_proto::raft_serverpb::{Done, RaftMessage, SnapshotChunk};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Framed, FramedRead, LengthDelimitedCodec};

/// Snapshot bytes carried by one chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest snapshot a receiver accepts; a longer stream is cut off.
pub const MAX_SNAPSHOT_BYTES: usize = 1024 * 1024 * 1024;
/// Longest wait for one chunk to be written or read, or for the receiver's `Done`.
pub const SNAPSHOT_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest frame a snapshot stream accepts: one piece of data and the message, which is
/// small once its data is moved out.
const MAX_CHUNK_FRAME_BYTES: usize = 4 * SNAPSHOT_CHUNK_BYTES;
/// Key of `SnapshotChunk.message` (field 1, length-delimited).
const MESSAGE_KEY: u8 = (1 << 3) | 2;
/// Key of `SnapshotChunk.data` (field 2, length-delimited).
const DATA_KEY: u8 = (2 << 3) | 2;

/// Whether `msg` carries a snapshot, and so travels on a snapshot stream.
pub fn is_snapshot(msg: &RaftMessage) -> bool {
    msg.message
        .as_ref()
        .is_some_and(|m| m.msg_type() == MessageType::MsgSnapshot)
}

/// The size of the snapshot `msg` carries.
pub fn snapshot_len(msg: &RaftMessage) -> usize {
    msg.message
        .as_ref()
        .and_then(|m| m.snapshot.as_ref())
        .map_or(0, |s| s.data.len())
}

/// What one snapshot stream carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streamed {
    /// Snapshot data bytes.
    pub bytes: usize,
    /// Chunks, the end marker not counted.
    pub chunks: usize,
}

/// Streams the snapshot message `msg` on `stream` and waits for the receiver's `Done`.
pub async fn send<S>(mut stream: S, mut msg: RaftMessage) -> Result<Streamed, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let data = msg
        .message
        .as_mut()
        .and_then(|m| m.snapshot.as_mut())
        .map(|s| std::mem::take(&mut s.data))
        .unwrap_or_default();
    let mut pieces = data.chunks(SNAPSHOT_CHUNK_BYTES);
    write_chunk(&mut stream, Some(&msg), pieces.next().unwrap_or_default()).await?;
    let mut chunks = 1;
    for piece in pieces {
        write_chunk(&mut stream, None, piece).await?;
        chunks += 1;
    }
    write_chunk(&mut stream, None, &[]).await?;
    stream
        .flush()
        .await
        .map_err(|e| format!("writing the end marker: {e}"))?;

    let mut answers = FramedRead::new(stream, codec());
    let answer = match tokio::time::timeout(SNAPSHOT_IO_TIMEOUT, answers.next()).await {
        Err(_) => return Err("the receiver did not acknowledge in time".to_string()),
        Ok(None) => return Err("closed by the receiver before it acknowledged".to_string()),
        Ok(Some(Err(e))) => return Err(format!("reading the acknowledgement: {e}")),
        Ok(Some(Ok(answer))) => answer,
    };
    Done::decode(answer).map_err(|e| format!("undecodable acknowledgement: {e}"))?;
    Ok(Streamed {
        bytes: data.len(),
        chunks,
    })
}

/// What [`receive`] delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The snapshot's region.
    pub region_id: u64,
    /// The store that sent it.
    pub from_store: u64,
    /// The size of the stream.
    pub streamed: Streamed,
}

/// Reads one snapshot stream from `stream`, hands the reassembled message to `deliver` and
/// acknowledges it. Refuses a stream carrying more than `max_bytes` of data, or one that
/// does not start with a snapshot message; nothing is delivered then.
pub async fn receive<S, F>(stream: S, max_bytes: usize, deliver: F) -> Result<Received, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(RaftMessage),
{
    let mut frames = Framed::new(stream, codec());
    let first = next_chunk(&mut frames)
        .await?
        .ok_or("the stream ended before its first chunk")?;
    let mut msg = first.message.ok_or("the first chunk carries no message")?;
    if !is_snapshot(&msg) {
        return Err("the first chunk carries a message that is not a snapshot".to_string());
    }
    let mut data = first.data;
    if data.len() > max_bytes {
        return Err(format!("the snapshot exceeds {max_bytes} bytes"));
    }
    let mut chunks = 1;
    loop {
        let chunk = next_chunk(&mut frames)
            .await?
            .ok_or("the stream ended before its end marker")?;
        if chunk.message.is_some() {
            return Err("a chunk after the first carries a message".to_string());
        }
        if chunk.data.is_empty() {
            break;
        }
        if chunk.data.len() > max_bytes - data.len() {
            return Err(format!("the snapshot exceeds {max_bytes} bytes"));
        }
        data.extend_from_slice(&chunk.data);
        chunks += 1;
    }

    let streamed = Streamed {
        bytes: data.len(),
        chunks,
    };
    if !data.is_empty() {
        let raft_msg = msg.message.get_or_insert_with(Default::default);
        raft_msg.snapshot.get_or_insert_with(Default::default).data = data;
    }
    let received = Received {
        region_id: msg.region_id,
        from_store: msg.from_peer.as_ref().map_or(0, |p| p.store_id),
        streamed,
    };
    deliver(msg);

    let done = Bytes::from(Done {}.encode_to_vec());
    match tokio::time::timeout(SNAPSHOT_IO_TIMEOUT, frames.send(done)).await {
        Ok(Ok(())) => Ok(received),
        Ok(Err(e)) => Err(format!("acknowledging a delivered snapshot: {e}")),
        Err(_) => Err("acknowledging a delivered snapshot: timed out".to_string()),
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_CHUNK_FRAME_BYTES)
        .new_codec()
}

/// The next chunk of `frames`; `None` at end-of-file.
async fn next_chunk<S>(
    frames: &mut Framed<S, LengthDelimitedCodec>,
) -> Result<Option<SnapshotChunk>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(SNAPSHOT_IO_TIMEOUT, frames.next()).await {
        Err(_) => Err("no chunk arrived in time".to_string()),
        Ok(None) => Ok(None),
        Ok(Some(Err(e))) => Err(format!("reading a chunk: {e}")),
        Ok(Some(Ok(frame))) => SnapshotChunk::decode(frame.freeze())
            .map(Some)
            .map_err(|e| format!("undecodable chunk: {e}")),
    }
}

/// Writes `SnapshotChunk { message, data }` as one frame, `data` straight from its slice.
async fn write_chunk<W>(
    writer: &mut W,
    message: Option<&RaftMessage>,
    data: &[u8],
) -> Result<(), String>
where
    W: AsyncWrite + Unpin,
{
    let mut frame = chunk_frame_head(message, data.len())?.chain(data);
    match tokio::time::timeout(SNAPSHOT_IO_TIMEOUT, writer.write_all_buf(&mut frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing a chunk: {e}")),
        Err(_) => Err("writing a chunk: timed out".to_string()),
    }
}

/// The frame of `SnapshotChunk { message, data }` without the bytes of `data`, which
/// follow it: frame length, then the encoded message field, then the key and length of the
/// data field. Empty fields are left out, as protobuf encodes them.
fn chunk_frame_head(message: Option<&RaftMessage>, data_len: usize) -> Result<Bytes, String> {
    let message_field_len = message.map_or(0, |m| {
        let len = m.encoded_len();
        1 + prost::length_delimiter_len(len) + len
    });
    let data_head_len = match data_len {
        0 => 0,
        len => 1 + prost::length_delimiter_len(len),
    };
    let body_len = u32::try_from(message_field_len + data_head_len + data_len)
        .map_err(|_| "a snapshot chunk larger than a frame".to_string())?;
    let mut head = BytesMut::with_capacity(4 + message_field_len + data_head_len);
    head.put_u32(body_len);
    if let Some(message) = message {
        head.put_u8(MESSAGE_KEY);
        message
            .encode_length_delimited(&mut head)
            .expect("the buffer grows as needed");
    }
    if data_len > 0 {
        head.put_u8(DATA_KEY);
        prost::encode_length_delimiter(data_len, &mut head).expect("the buffer grows as needed");
    }
    Ok(head.freeze())
}

#[cfg(test)]
mod tests {
    use tinykv_proto::eraftpb::{self, ConfState, SnapshotMetadata};
    use tinykv_proto::metapb::Peer;
    use tokio::io::DuplexStream;
    use tokio_util::codec::FramedWrite;

    use super::*;

    fn snapshot_message(data: Vec<u8>) -> RaftMessage {
        RaftMessage {
            region_id: 5,
            from_peer: Some(Peer {
                id: 11,
                store_id: 1,
            }),
            to_peer: Some(Peer {
                id: 12,
                store_id: 2,
            }),
            message: Some(eraftpb::Message {
                msg_type: MessageType::MsgSnapshot as i32,
                to: 12,
                from: 11,
                term: 3,
                snapshot: Some(eraftpb::Snapshot {
                    data,
                    metadata: Some(SnapshotMetadata {
                        conf_state: Some(ConfState {
                            voters: vec![11, 12, 13],
                            ..Default::default()
                        }),
                        index: 40,
                        term: 3,
                    }),
                }),
                ..Default::default()
            }),
            start_key: b"a".to_vec(),
            end_key: b"m".to_vec(),
            ..Default::default()
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        let mut data = (0..=250u8).collect::<Vec<u8>>().repeat(len / 251 + 1);
        data.truncate(len);
        data
    }

    /// Runs `receive` on one end of a pipe; returns its result and what it delivered.
    async fn receive_on(
        stream: DuplexStream,
        max_bytes: usize,
    ) -> (Result<Received, String>, Option<RaftMessage>) {
        let mut delivered = None;
        let result = receive(stream, max_bytes, |msg| delivered = Some(msg)).await;
        (result, delivered)
    }

    /// Writes raw chunk frames on `stream`, then leaves it open until the receiver is done.
    async fn write_frames(stream: DuplexStream, chunks: Vec<SnapshotChunk>) -> DuplexStream {
        let mut frames = FramedWrite::new(stream, codec());
        for chunk in chunks {
            frames
                .send(Bytes::from(chunk.encode_to_vec()))
                .await
                .unwrap();
        }
        frames.into_inner()
    }

    #[test]
    fn a_chunk_frame_is_a_length_delimited_snapshot_chunk() {
        let msg = snapshot_message(Vec::new());
        let data = pattern(300);
        for (message, data) in [
            (Some(&msg), &data[..]),
            (Some(&msg), &[][..]),
            (None, &data[..]),
            (None, &[][..]),
        ] {
            let mut frame = chunk_frame_head(message, data.len()).unwrap().to_vec();
            frame.extend_from_slice(data);
            let body = SnapshotChunk {
                message: message.cloned(),
                data: data.to_vec(),
            }
            .encode_to_vec();
            let mut expected = (body.len() as u32).to_be_bytes().to_vec();
            expected.extend_from_slice(&body);
            assert_eq!(frame, expected);
        }
    }

    #[tokio::test]
    async fn a_snapshot_crosses_a_stream_in_chunks() {
        let msg = snapshot_message(pattern(3 * SNAPSHOT_CHUNK_BYTES + SNAPSHOT_CHUNK_BYTES / 2));
        let (sender_end, receiver_end) = tokio::io::duplex(64 * 1024);
        let (sent, (received, delivered)) = tokio::join!(
            send(sender_end, msg.clone()),
            receive_on(receiver_end, MAX_SNAPSHOT_BYTES)
        );
        let expected = Streamed {
            bytes: snapshot_len(&msg),
            chunks: 4,
        };
        assert_eq!(sent, Ok(expected));
        assert_eq!(
            received,
            Ok(Received {
                region_id: 5,
                from_store: 1,
                streamed: expected
            })
        );
        assert!(delivered == Some(msg), "the snapshot arrives intact");
    }

    #[tokio::test]
    async fn a_snapshot_without_data_is_one_chunk() {
        let msg = snapshot_message(Vec::new());
        let (sender_end, receiver_end) = tokio::io::duplex(64 * 1024);
        let (sent, (_, delivered)) = tokio::join!(
            send(sender_end, msg.clone()),
            receive_on(receiver_end, MAX_SNAPSHOT_BYTES)
        );
        assert_eq!(
            sent,
            Ok(Streamed {
                bytes: 0,
                chunks: 1
            })
        );
        assert_eq!(delivered, Some(msg));
    }

    #[tokio::test]
    async fn a_stream_over_the_size_limit_is_refused() {
        let msg = snapshot_message(pattern(3 * SNAPSHOT_CHUNK_BYTES));
        let (sender_end, receiver_end) = tokio::io::duplex(64 * 1024);
        let (sent, (received, delivered)) = tokio::join!(
            send(sender_end, msg),
            receive_on(receiver_end, 2 * SNAPSHOT_CHUNK_BYTES + 1)
        );
        assert!(received.unwrap_err().contains("exceeds"));
        assert!(sent.is_err(), "the sender learns that it failed");
        assert!(delivered.is_none());
    }

    #[tokio::test]
    async fn a_first_chunk_without_a_snapshot_message_is_refused() {
        let mut not_a_snapshot = snapshot_message(Vec::new());
        not_a_snapshot.message.as_mut().unwrap().msg_type = MessageType::MsgAppend as i32;
        for first in [
            SnapshotChunk {
                message: None,
                data: pattern(10),
            },
            SnapshotChunk {
                message: Some(not_a_snapshot.clone()),
                data: pattern(10),
            },
        ] {
            let (sender_end, receiver_end) = tokio::io::duplex(64 * 1024);
            let (_sender_end, (received, delivered)) = tokio::join!(
                write_frames(sender_end, vec![first, SnapshotChunk::default()]),
                receive_on(receiver_end, MAX_SNAPSHOT_BYTES)
            );
            assert!(received.is_err());
            assert!(delivered.is_none());
        }
    }

    #[tokio::test]
    async fn a_stream_cut_before_its_end_marker_delivers_nothing() {
        let (sender_end, receiver_end) = tokio::io::duplex(64 * 1024);
        let first = SnapshotChunk {
            message: Some(snapshot_message(Vec::new())),
            data: pattern(10),
        };
        let writer = async { drop(write_frames(sender_end, vec![first]).await) };
        let ((), (received, delivered)) =
            tokio::join!(writer, receive_on(receiver_end, MAX_SNAPSHOT_BYTES));
        assert_eq!(
            received,
            Err("the stream ended before its end marker".to_string())
        );
        assert!(delivered.is_none());
    }
}
