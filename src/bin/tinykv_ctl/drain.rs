//! `store drain-leaders` and `store resume-leaders`: the commands that ask two nodes.
//!
//! A leader drain is the state of one node (the server's `leader_drain` module), so its
//! requests must reach the store's own node, which need not be the node `--addr` names.
//! The command asks that node's address book (`GET /v1/admin/stores`) for the store's
//! HTTP address, then sends the drain there with the same TLS files and token. Unless
//! `--no-wait` is given, it then polls the store (`GET /v1/admin/drain-leaders`) every
//! [`POLL_INTERVAL`] until it leads no region, and fails after `--timeout` seconds naming
//! what is left (the store keeps draining). With the store at zero leaderships, stopping
//! it costs clients nothing: every region keeps a leader and a majority elsewhere.
//!
//! The answers are read into the server's own types: the address book into
//! [`StoresView`] and a drain's state into [`DrainStatus`].

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use tinykv::api::admin::StoresView;
use tinykv::server::leader_drain::DrainStatus;

use crate::cli::{node_url, NodeTarget, StoreCommand};
use crate::client::{AdminClient, Call};
use crate::error::CtlError;

/// How often the command asks whether the store still leads anything.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The drain endpoint of a node.
const DRAIN_PATH: &str = "/v1/admin/drain-leaders";

/// Runs `command` (`DrainLeaders` or `ResumeLeaders`) through the node `asked`; returns
/// the text to print (the last answer's JSON with `json`).
pub async fn run(
    asked: &NodeTarget,
    command: &StoreCommand,
    json: bool,
) -> Result<String, CtlError> {
    let (id, method) = match command {
        StoreCommand::DrainLeaders { id, .. } => (*id, Method::POST),
        StoreCommand::ResumeLeaders { id } => (*id, Method::DELETE),
        StoreCommand::Offline { .. } => {
            return Err(CtlError::Usage("store offline is a single request".into()))
        }
    };
    let store = store_node(asked, id).await?;
    let client = AdminClient::new(&store)?;
    let mut answer = client.send(&Call::new(method, DRAIN_PATH.into())).await?;
    let mut status = decode(&store, &answer)?;
    if status.store_id != id {
        return Err(CtlError::UnexpectedAnswer {
            addr: store.addr,
            request: format!("POST {DRAIN_PATH}"),
            problem: format!("it is store {}, not store {id}", status.store_id),
        });
    }
    if let StoreCommand::DrainLeaders {
        timeout,
        no_wait: false,
        ..
    } = command
    {
        let deadline = Instant::now() + Duration::from_secs(*timeout);
        while status.leader_count > 0 {
            if Instant::now() >= deadline {
                return Err(CtlError::DrainIncomplete {
                    store_id: id,
                    seconds: *timeout,
                    leader_count: status.leader_count,
                    stuck_regions: status.stuck_regions,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
            answer = client
                .send(&Call::new(Method::GET, DRAIN_PATH.into()))
                .await?;
            status = decode(&store, &answer)?;
        }
    }
    if json {
        return Ok(crate::commands::render_json(&answer));
    }
    Ok(render(&status))
}

/// The text shown for a drain's final `status`.
pub fn render(status: &DrainStatus) -> String {
    let id = status.store_id;
    match (status.draining, status.leader_count) {
        (true, 0) => format!(
            "store {id} leads no region: it can be stopped without errors (it keeps draining \
             until it restarts or `store resume-leaders {id}`)\n"
        ),
        (true, n) => format!("store {id} is draining; it still leads {n} region(s)\n"),
        (false, n) => format!("store {id} is not draining; it leads {n} region(s)\n"),
    }
}

/// The node of store `id`, reached like `asked` (same scheme, TLS files and token), found
/// in `asked`'s address book.
async fn store_node(asked: &NodeTarget, id: u64) -> Result<NodeTarget, CtlError> {
    let call = Call::new(Method::GET, "/v1/admin/stores".into());
    let answer = AdminClient::new(asked)?.send(&call).await?;
    let book: StoresView =
        serde_json::from_value(answer).map_err(|e| CtlError::UnexpectedAnswer {
            addr: asked.addr.clone(),
            request: call.label(),
            problem: e.to_string(),
        })?;
    let Some(store) = book.stores.into_iter().find(|s| s.id == id) else {
        return Err(CtlError::Usage(format!(
            "store {id} is not in the address book of node {}",
            asked.addr
        )));
    };
    if store.local {
        return Ok(asked.clone());
    }
    Ok(NodeTarget {
        base_url: node_url(&store.http_addr, asked.tls.is_some())?,
        addr: store.http_addr,
        tls: asked.tls.clone(),
        token: asked.token.clone(),
    })
}

fn decode(node: &NodeTarget, answer: &Value) -> Result<DrainStatus, CtlError> {
    serde_json::from_value(answer.clone()).map_err(|e| CtlError::UnexpectedAnswer {
        addr: node.addr.clone(),
        request: DRAIN_PATH.into(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_says_whether_the_store_may_stop() {
        let status = |draining, leader_count| DrainStatus {
            store_id: 2,
            draining,
            leader_count,
            stuck_regions: vec![],
        };
        assert!(render(&status(true, 0)).contains("can be stopped without errors"));
        assert!(render(&status(true, 3)).contains("still leads 3 region(s)"));
        assert!(render(&status(false, 3)).contains("is not draining"));
        let incomplete = CtlError::DrainIncomplete {
            store_id: 2,
            seconds: 5,
            leader_count: 1,
            stuck_regions: vec![7],
        };
        let text = incomplete.to_string();
        assert!(
            text.contains("store 2 still leads 1 region(s) after 5s"),
            "{text}"
        );
        assert!(text.contains("[7]"), "{text}");
        assert_eq!(incomplete.exit_status(), 1);
    }
}
