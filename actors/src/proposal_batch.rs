//! Proposal batching: many clients' writes to one region, proposed as one raft entry.
//!
//! Under load a PeerFsm handles many write commands between two rounds of raft work.
//! Proposing each as its own entry costs a log key, an encode, a decode, an apply and a
//! round of bookkeeping per client write, on every replica. Instead, the PeerFsm adds the
//! writes it receives to a [`ProposalBatch`] and proposes the batch as one command when it
//! next processes raft's ready (or when the batch is full). The combined command's
//! requests are the clients' requests in order; when it applies, [`fan_out`] splits the
//! one response back into each client's share (or gives every client the command's error:
//! a batch applies entirely or not at all, like any command).
//!
//! Only plain client writes join a batch: requests without an admin command, a term, a
//! uuid or the metadata mark, whose header (region and epoch, as the PeerFsm stamped it)
//! matches the batch's.
//! A batch of one is proposed as it came, with its own callback.

use tinykv_proto::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use tokio::sync::oneshot;

use crate::msg::{Callback, CmdResponse};

/// Writes waiting to be proposed together; see the module documentation.
#[derive(Default)]
pub struct ProposalBatch {
    /// Boxed: a PeerFsm holds a batch whether or not it leads, and a command is large.
    request: Option<Box<RaftCmdRequest>>,
    /// Each client's callback, and how many of the batch's requests are its own.
    callbacks: Vec<(Callback, usize)>,
    bytes: usize,
}

impl ProposalBatch {
    /// Whether `request` may join a batch at all.
    pub fn accepts(request: &RaftCmdRequest) -> bool {
        let header = request.header.as_ref();
        request.admin_request.is_none()
            && !request.requests.is_empty()
            && header.is_none_or(|h| h.term == 0 && h.uuid.is_empty() && !h.metadata)
    }

    /// Whether `request` would join this batch (same header) rather than needing a new
    /// one.
    pub fn fits(&self, request: &RaftCmdRequest) -> bool {
        match &self.request {
            Some(batch) => batch.header == request.header,
            None => true,
        }
    }

    /// Adds a client's write; the caller checked [`ProposalBatch::accepts`] and
    /// [`ProposalBatch::fits`].
    pub fn push(&mut self, request: RaftCmdRequest, callback: Callback) {
        self.bytes += request
            .requests
            .iter()
            .map(|r| {
                r.put.as_ref().map_or(0, |p| p.key.len() + p.value.len())
                    + r.delete.as_ref().map_or(0, |d| d.key.len())
            })
            .sum::<usize>();
        let count = request.requests.len();
        match &mut self.request {
            Some(batch) => batch.requests.extend(request.requests),
            None => self.request = Some(Box::new(request)),
        }
        self.callbacks.push((callback, count));
    }

    /// Bytes of keys and values in the batch.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.request.is_none()
    }

    /// Empties the batch: the command to propose and the callback to answer it with. The
    /// callback of a batch of several writes answers each client through [`fan_out`],
    /// which this spawns on the current runtime.
    pub fn take(&mut self) -> Option<(RaftCmdRequest, Callback)> {
        let request = *self.request.take()?;
        self.bytes = 0;
        let mut callbacks = std::mem::take(&mut self.callbacks);
        if callbacks.len() == 1 {
            let (callback, _) = callbacks.pop().expect("one callback");
            return Some((request, callback));
        }
        let (callback, answer) = oneshot::channel();
        tokio::spawn(fan_out(answer, callbacks));
        Some((request, callback))
    }
}

/// Waits for a batch's answer and gives each client its share: its responses in order,
/// or the command's error. It gives up once every client stopped waiting (a write lost
/// on its way to the leader is never answered), which lets the batch's own callback go.
pub async fn fan_out(
    mut answer: oneshot::Receiver<CmdResponse>,
    mut callbacks: Vec<(Callback, usize)>,
) {
    let all_gone = async {
        for (callback, _) in callbacks.iter_mut() {
            callback.closed().await;
        }
    };
    let answer = tokio::select! {
        answer = &mut answer => answer,
        () = all_gone => return,
    };
    let Ok(answer) = answer else {
        return;
    };
    let failed = answer
        .response
        .header
        .as_ref()
        .is_some_and(|h| h.error.is_some());
    let mut responses = answer.response.responses.into_iter();
    for (callback, count) in callbacks {
        let response = RaftCmdResponse {
            header: answer.response.header.clone(),
            responses: if failed {
                Vec::new()
            } else {
                responses.by_ref().take(count).collect()
            },
            admin_response: None,
        };
        let _ = callback.send(CmdResponse {
            response,
            snapshot: None,
            // Each write of the batch went through the raftstore with it.
            stages: answer.stages,
        });
    }
}

#[cfg(test)]
mod tests {
    use tinykv_proto::raft_cmdpb::{
        CmdType, PutRequest, PutResponse, RaftRequestHeader, RaftResponseHeader, Request, Response,
    };

    use super::*;
    use crate::error::Error;

    fn put(key: &str) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: 1,
                ..Default::default()
            }),
            requests: vec![Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: "default".into(),
                    key: key.into(),
                    value: b"v".to_vec(),
                }),
                ..Default::default()
            }],
            admin_request: None,
        }
    }

    #[tokio::test]
    async fn a_batch_is_one_command_and_each_client_gets_its_share() {
        let mut batch = ProposalBatch::default();
        let mut waiters = Vec::new();
        for key in ["a", "b", "c"] {
            let request = put(key);
            assert!(ProposalBatch::accepts(&request) && batch.fits(&request));
            let (callback, waiter) = oneshot::channel();
            batch.push(request, callback);
            waiters.push(waiter);
        }
        assert_eq!(batch.bytes(), 6);
        let mut other_region = put("d");
        other_region.header.as_mut().unwrap().region_id = 2;
        assert!(!batch.fits(&other_region));
        let (command, callback) = batch.take().expect("a batch");
        assert!(batch.is_empty() && batch.take().is_none());
        let keys: Vec<&[u8]> = command
            .requests
            .iter()
            .map(|r| r.put.as_ref().unwrap().key.as_slice())
            .collect();
        assert_eq!(keys, vec![&b"a"[..], b"b", b"c"]);

        let done = Response {
            cmd_type: CmdType::Put as i32,
            put: Some(PutResponse {}),
            ..Default::default()
        };
        let _ = callback.send(CmdResponse {
            response: RaftCmdResponse {
                header: Some(RaftResponseHeader::default()),
                responses: vec![done; 3],
                admin_response: None,
            },
            snapshot: None,
            stages: Some(crate::msg::WriteStages {
                proposed_at: std::time::Instant::now(),
                committed_at: std::time::Instant::now(),
                persisted_at: None,
                applied_at: std::time::Instant::now(),
            }),
        });
        for waiter in waiters {
            let answer = waiter.await.expect("answered");
            assert_eq!(answer.response.responses.len(), 1);
            assert!(answer.err().is_none());
            assert!(
                answer.stages.is_some(),
                "each write gets the batch's stages"
            );
        }
    }

    #[tokio::test]
    async fn a_batch_nobody_waits_for_lets_its_callback_go() {
        let mut batch = ProposalBatch::default();
        let (first, first_waiter) = oneshot::channel();
        let (second, second_waiter) = oneshot::channel();
        batch.push(put("a"), first);
        batch.push(put("b"), second);
        let (_, mut callback) = batch.take().unwrap();
        drop((first_waiter, second_waiter));
        tokio::time::timeout(std::time::Duration::from_secs(5), callback.closed())
            .await
            .expect("the fan-out gave up");
    }

    #[tokio::test]
    async fn an_error_reaches_every_client_and_a_single_write_keeps_its_callback() {
        let mut batch = ProposalBatch::default();
        let (first, first_waiter) = oneshot::channel();
        let (second, second_waiter) = oneshot::channel();
        batch.push(put("a"), first);
        batch.push(put("b"), second);
        let (_, callback) = batch.take().unwrap();
        let _ = callback.send(CmdResponse::error(&Error::StaleCommand, 3));
        for waiter in [first_waiter, second_waiter] {
            let answer = waiter.await.unwrap();
            assert!(matches!(answer.err(), Some(Error::StaleCommand)));
            assert!(answer.response.responses.is_empty());
        }

        let mut fenced = put("c");
        fenced.header.as_mut().unwrap().term = 7;
        assert!(
            !ProposalBatch::accepts(&fenced),
            "a term-pinned command stays alone"
        );
        let (single, single_waiter) = oneshot::channel();
        batch.push(put("c"), single);
        let (_, callback) = batch.take().unwrap();
        let _ = callback.send(CmdResponse::error(&Error::Timeout, 3));
        assert!(matches!(
            single_waiter.await.unwrap().err(),
            Some(Error::Timeout)
        ));
    }
}
