//! Finding the placement driver and asking it something.
//!
//! The PD runs wherever the meta region's leader is, which moves. A [`PdClient`] sends a
//! [`PdRequest`] (to another node: `POST /internal/v1/pd` on its peer listener, see
//! [`crate::server::peer_api`]) to the node it last found leading, else tries its own node (directly,
//! without HTTP), then every store of the address book, then the seed addresses a joining
//! node was configured with. A node that does not lead answers `not_pd_leader` naming
//! the leader it knows, and the client goes there next. Nodes that cannot answer (down,
//! no leader elected yet) are skipped; after a full round the client pauses and starts
//! again, until the deadline. A real refusal (a 4xx: unknown store, not enough stores)
//! is returned at once, with its status and code, as the PD leader gave it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::PdServer;
use super::wire::PdRequest;
use crate::admin_service::RegionDirectory;
use crate::config::StoreAddress;
use crate::error::{error_chain, Error, Result};
use crate::security::{NodeHttp, Tls};
use crate::server::address_book::AddressBook;

/// Path of the PD endpoint on every node.
pub const PD_PATH: &str = "/internal/v1/pd";

/// Pause between rounds over every known node.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// A node to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// This node's own [`PdServer`].
    Local,
    /// Another node, by peer address (its `raft_addr`, where the node-to-node API is).
    Remote(String),
}

/// A client of the placement driver; see the module documentation.
pub struct PdClient {
    local: Option<PdServer>,
    local_store_id: u64,
    addresses: AddressBook,
    seeds: Vec<String>,
    http: NodeHttp,
    leader: Mutex<Option<Target>>,
}

impl PdClient {
    /// A client on node `local_store_id` (its own server `local`, if it runs one) that
    /// knows the nodes of `addresses` and, failing those, `seeds` (peer addresses).
    pub fn new(
        local: Option<PdServer>,
        local_store_id: u64,
        addresses: AddressBook,
        seeds: Vec<String>,
        attempt_timeout: Duration,
        tls: Option<&Tls>,
    ) -> Result<PdClient> {
        let http = NodeHttp::build(tls, attempt_timeout, "PD client's", |builder| {
            builder.timeout(attempt_timeout)
        })?;
        Ok(PdClient {
            local,
            local_store_id,
            addresses,
            seeds,
            http,
            leader: Mutex::new(None),
        })
    }

    /// This node's own PD server, if it runs one.
    pub fn local(&self) -> Option<&PdServer> {
        self.local.as_ref()
    }

    /// Sends `request` to the PD leader, finding it first; gives up after `timeout`.
    pub async fn call(&self, request: &PdRequest, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            let mut queue = self.candidates();
            let mut asked = Vec::new();
            while let Some(target) = queue.pop() {
                if asked.contains(&target) {
                    continue;
                }
                asked.push(target.clone());
                match self.ask(&target, request).await {
                    Ok(answer) => {
                        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = Some(target);
                        return Ok(answer);
                    }
                    Err(Error::NotPdLeader {
                        leader: Some(leader),
                    }) => queue.push(self.target_of(&leader)),
                    Err(e) if is_unavailable(&e) => last_error = Some(e),
                    Err(e) => return Err(e),
                }
            }
            *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = None;
            if Instant::now() + ROUND_PAUSE >= deadline {
                return Err(last_error.unwrap_or(Error::NotPdLeader { leader: None }));
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }

    /// Everyone worth asking, the most promising last (the queue pops from the end).
    fn candidates(&self) -> Vec<Target> {
        let mut targets: Vec<Target> = self.seeds.iter().cloned().map(Target::Remote).collect();
        for store in self.addresses.all().into_iter().rev() {
            targets.push(self.target_of(&store));
        }
        if self.local.is_some() {
            targets.push(Target::Local);
        }
        if let Some(leader) = self
            .leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            targets.push(leader);
        }
        targets
    }

    fn target_of(&self, store: &StoreAddress) -> Target {
        match &self.local {
            Some(_) if store.id == self.local_store_id => Target::Local,
            _ => Target::Remote(store.raft_addr.clone()),
        }
    }

    async fn ask(&self, target: &Target, request: &PdRequest) -> Result<Value> {
        match (target, &self.local) {
            (Target::Local, Some(server)) => server.handle(request.clone()).await,
            (Target::Local, None) => Err(Error::NotPdLeader { leader: None }),
            (Target::Remote(addr), _) => self.post(addr, request).await,
        }
    }

    async fn post(&self, addr: &str, request: &PdRequest) -> Result<Value> {
        let unreachable = |e: reqwest::Error| Error::Forward {
            store_id: 0,
            message: format!("the node at {addr}: {}", error_chain(&e)),
            maybe_delivered: false,
        };
        let response = self
            .http
            .client()
            .post(self.http.url(addr, PD_PATH))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(request).expect("requests serialize"))
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| Error::Forward {
            store_id: 0,
            message: format!("the node at {addr} answered {status} with garbage: {e}"),
            maybe_delivered: true,
        })?;
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        let code = error["code"].as_str().unwrap_or("internal");
        if code == "not_pd_leader" {
            let leader = match (
                error["leader_store_id"].as_u64(),
                error["leader_raft_addr"].as_str(),
            ) {
                (Some(id), Some(raft_addr)) if !raft_addr.is_empty() => Some(StoreAddress {
                    id,
                    raft_addr: raft_addr.to_string(),
                    http_addr: error["leader_http_addr"].as_str().unwrap_or("").to_string(),
                }),
                _ => None,
            };
            return Err(Error::NotPdLeader { leader });
        }
        let message = error["message"].as_str().unwrap_or("(no message)");
        Err(Error::relayed(
            status.as_u16(),
            code,
            format!("{message} (answered by {addr})"),
        ))
    }
}

/// Whether another node might answer where this one could not.
fn is_unavailable(error: &Error) -> bool {
    match error {
        Error::NotPdLeader { .. } | Error::Forward { .. } => true,
        Error::Store(e) => e.is_retryable(),
        Error::Relayed { status, .. } => *status == 503,
        _ => false,
    }
}

/// The placement driver as the admin service's [`RegionDirectory`]: asked whether a region
/// exists when no store within reach holds it. Weak, since the PD's server holds the admin
/// service.
pub struct PdDirectory(pub std::sync::Weak<PdClient>);

/// How long an admin operation waits for the PD to say whether a region exists.
const REGION_QUESTION_TIMEOUT: Duration = Duration::from_secs(1);

impl RegionDirectory for PdDirectory {
    fn region_known(&self, region_id: u64) -> futures::future::BoxFuture<'static, Option<bool>> {
        let pd = self.0.clone();
        Box::pin(async move {
            let pd = pd.upgrade()?;
            let answer = pd
                .call(&PdRequest::Region { region_id }, REGION_QUESTION_TIMEOUT)
                .await
                .ok()?;
            answer["known"].as_bool()
        })
    }
}

/// The PD leader's timestamp oracle, as the transaction coordinator takes timestamps.
///
/// Requests made while one is on its way to the PD wait, and the next call asks for all
/// of them at once (`count` = their sum) and hands each its own consecutive range: under
/// load, one round trip to the PD serves every transaction that started meanwhile.
pub struct PdTimestamps {
    call: CallOracle,
    queue: std::sync::Arc<Mutex<TimestampQueue>>,
}

/// Asks the oracle for `count` timestamps; answers the first.
type CallOracle =
    std::sync::Arc<dyn Fn(u64) -> futures::future::BoxFuture<'static, Result<u64>> + Send + Sync>;

/// The timestamp requests waiting for the next call to the PD.
#[derive(Default)]
struct TimestampQueue {
    waiting: Vec<(u64, tokio::sync::oneshot::Sender<Result<u64>>)>,
    /// Whether a task is calling the PD (and will serve what waits when it returns).
    calling: bool,
}

impl PdTimestamps {
    /// Timestamps from the PD that `client` reaches.
    pub fn new(client: std::sync::Arc<PdClient>) -> PdTimestamps {
        PdTimestamps::calling(std::sync::Arc::new(move |count| {
            let client = client.clone();
            Box::pin(async move { Self::call(&client, count).await })
        }))
    }

    /// Timestamps from `call` (tests: an oracle of their own).
    fn calling(call: CallOracle) -> PdTimestamps {
        PdTimestamps {
            call,
            queue: Default::default(),
        }
    }

    /// Serves the waiting requests, a batch per call, until none waits.
    async fn serve(call: CallOracle, queue: std::sync::Arc<Mutex<TimestampQueue>>) {
        loop {
            let batch = {
                let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
                if queue.waiting.is_empty() {
                    queue.calling = false;
                    return;
                }
                // At most one PD batch per call; the rest waits for the next.
                let mut total = 0;
                let split = queue
                    .waiting
                    .iter()
                    .position(|(count, _)| {
                        total += count;
                        total > super::tso::MAX_BATCH
                    })
                    .unwrap_or(queue.waiting.len())
                    .max(1);
                queue.waiting.drain(..split).collect::<Vec<_>>()
            };
            let total: u64 = batch.iter().map(|(count, _)| count).sum();
            match call(total).await {
                Ok(mut next) => {
                    for (count, answer) in batch {
                        let _ = answer.send(Ok(next));
                        next += count;
                    }
                }
                Err(e) => {
                    for (_, answer) in batch {
                        let _ = answer.send(Err(e.replicate()));
                    }
                }
            }
        }
    }

    async fn call(client: &PdClient, count: u64) -> Result<u64> {
        let reply = client
            .call(
                &PdRequest::Timestamps { count },
                crate::api::pd::PD_REQUEST_TIMEOUT,
            )
            .await?;
        let reply: super::wire::TimestampsReply = serde_json::from_value(reply)
            .map_err(|e| Error::Io(format!("the PD answered timestamps garbled: {e}")))?;
        if reply.count < count || reply.ts == 0 {
            return Err(Error::Io("the PD answered too few timestamps".into()));
        }
        Ok(reply.ts)
    }
}

impl crate::txn::client::TimestampSource for PdTimestamps {
    fn timestamps(&self, count: u64) -> futures::future::BoxFuture<'static, Result<u64>> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue
                .waiting
                .push((count.clamp(1, super::tso::MAX_BATCH), answer));
            !std::mem::replace(&mut queue.calling, true)
        };
        if start {
            tokio::spawn(Self::serve(self.call.clone(), self.queue.clone()));
        }
        Box::pin(async move {
            answered
                .await
                .map_err(|_| Error::Io("the timestamp request was dropped".into()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::txn::client::TimestampSource;

    #[tokio::test]
    async fn concurrent_timestamp_requests_share_calls_and_never_a_timestamp() {
        let next = Arc::new(AtomicU64::new(1_000));
        let calls = Arc::new(AtomicU64::new(0));
        let oracle = {
            let (next, calls) = (next.clone(), calls.clone());
            PdTimestamps::calling(Arc::new(move |count| {
                let (next, calls) = (next.clone(), calls.clone());
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    Ok(next.fetch_add(count, Ordering::SeqCst))
                })
            }))
        };
        let oracle = Arc::new(oracle);
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let oracle = oracle.clone();
                tokio::spawn(async move {
                    let count = 1 + i % 3;
                    (oracle.timestamps(count).await.unwrap(), count)
                })
            })
            .collect();
        let mut given = HashSet::new();
        for task in tasks {
            let (first, count) = task.await.unwrap();
            for ts in first..first + count {
                assert!(given.insert(ts), "timestamp {ts} given twice");
            }
        }
        assert_eq!(given.len() as u64, next.load(Ordering::SeqCst) - 1_000);
        let calls = calls.load(Ordering::SeqCst);
        assert!(calls < 50, "{calls} calls for 200 requests");
        // A failed call fails every request it would have served; the next call works.
        let failing = PdTimestamps::calling(Arc::new(|_| {
            Box::pin(async { Err(Error::Io("the oracle is away".into())) })
        }));
        assert!(failing.timestamps(1).await.is_err());
        assert!(oracle.timestamps(1).await.is_ok());
    }
}
