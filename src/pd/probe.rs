//! Asking whoever listens at an address who it is, before believing what a request says
//! about it.
//!
//! The placement driver's records decide where every node sends raft traffic (and with it
//! clients' values) and where replicas go, so a request that would change them is checked
//! against the addresses it names, over connections the driver opens itself:
//!
//! - a **join** names the new node's peer address and a token; the node listening there
//!   must be a node of this cluster that has not joined yet and shows that same token
//!   ([`Probe::check_joiner`]), so a join for addresses where no joining node listens
//!   creates no store;
//! - a **heartbeat that moves a store** is believed only if the store no longer answers
//!   at its recorded peer address and does answer, as itself, at the new ones
//!   ([`Probe::check_move`]): a store cannot be in two places, so a forged heartbeat for a
//!   running store cannot redirect its traffic.
//!
//! Whoever controls the new address can still answer for a store that is truly gone:
//! without authentication (the TLS work) that is the limit of what an address can prove.

use std::time::Duration;

use crate::config::StoreAddress;
use crate::error::{error_chain, Error, Result};
use crate::security::{NodeHttp, Tls};
use crate::server::peer_api::{IdentityView, IDENTITY_PATH};

/// How long a probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks nodes who they are; see the module documentation.
#[derive(Clone)]
pub struct Probe {
    http: NodeHttp,
    cluster_id: u64,
}

impl Probe {
    /// A probe for the nodes of cluster `cluster_id`, reaching them with `tls`
    /// (plaintext if `None`).
    pub fn new(cluster_id: u64, tls: Option<&Tls>) -> Result<Probe> {
        let http = NodeHttp::build(tls, PROBE_TIMEOUT, "probe's", |builder| {
            builder.timeout(PROBE_TIMEOUT)
        })?;
        Ok(Probe { http, cluster_id })
    }

    /// Checks that a node of this cluster that has not joined yet listens at `raft_addr`
    /// and shows `token`.
    pub async fn check_joiner(&self, raft_addr: &str, token: &str) -> Result<()> {
        let refuse = |why: String| {
            Err(Error::Conflict {
                code: "join_unverified",
                message: format!("cannot verify the joining node at {raft_addr}: {why}"),
            })
        };
        if token.is_empty() {
            return refuse("the join request carries no token".into());
        }
        match self.identity(raft_addr).await {
            Ok(view) if view.cluster_id != self.cluster_id => {
                refuse(format!("it belongs to cluster {}", view.cluster_id))
            }
            Ok(view) if view.store_id != 0 => {
                refuse(format!("it is store {} already", view.store_id))
            }
            Ok(view) if view.join_token != token => refuse("it shows another token".into()),
            Ok(_) => Ok(()),
            Err(why) => refuse(why),
        }
    }

    /// Checks that store `recorded.id` moved to `reported`: it answers as itself at the
    /// new addresses, and no longer at its recorded peer address if that changed.
    pub async fn check_move(&self, recorded: &StoreAddress, reported: &StoreAddress) -> Result<()> {
        let id = recorded.id;
        let refuse = |why: String| {
            Err(Error::Conflict {
                code: "address_conflict",
                message: format!(
                    "store {id} reports addresses {} / {} instead of {} / {}: {why}",
                    reported.raft_addr, reported.http_addr, recorded.raft_addr, recorded.http_addr
                ),
            })
        };
        if reported.raft_addr != recorded.raft_addr {
            if let Ok(view) = self.identity(&recorded.raft_addr).await {
                if view.cluster_id == self.cluster_id && view.store_id == id {
                    return refuse(format!(
                        "store {id} still answers at {}",
                        recorded.raft_addr
                    ));
                }
            }
            match self.identity(&reported.raft_addr).await {
                Ok(view) if view.cluster_id == self.cluster_id && view.store_id == id => {}
                Ok(view) => {
                    return refuse(format!(
                        "store {} of cluster {} answers at {}",
                        view.store_id, view.cluster_id, reported.raft_addr
                    ))
                }
                Err(why) => return refuse(why),
            }
        }
        if reported.http_addr != recorded.http_addr {
            match self.health_store_id(&reported.http_addr).await {
                Ok(answering) if answering == id => {}
                Ok(answering) => {
                    return refuse(format!(
                        "store {answering} answers at {}",
                        reported.http_addr
                    ))
                }
                Err(why) => return refuse(why),
            }
        }
        Ok(())
    }

    /// The identity of the node whose peer listener is at `raft_addr`.
    async fn identity(&self, raft_addr: &str) -> std::result::Result<IdentityView, String> {
        let url = self.http.url(raft_addr, IDENTITY_PATH);
        let response = self
            .http
            .client()
            .get(url)
            .send()
            .await
            .map_err(|e| format!("nothing answers at {raft_addr}: {}", error_chain(&e)))?;
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{raft_addr} did not answer: {}", error_chain(&e)))?;
        serde_json::from_slice(&body)
            .map_err(|e| format!("{raft_addr} is not a TinyKV-rs peer listener: {e}"))
    }

    /// The store id a node's `GET /health` at `http_addr` names.
    async fn health_store_id(&self, http_addr: &str) -> std::result::Result<u64, String> {
        let url = self.http.url(http_addr, "/health?live");
        let response = self
            .http
            .client()
            .get(url)
            .send()
            .await
            .map_err(|e| format!("nothing answers at {http_addr}: {}", error_chain(&e)))?;
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{http_addr} did not answer: {}", error_chain(&e)))?;
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{http_addr} is not a TinyKV-rs node: {e}"))?;
        json["store_id"]
            .as_u64()
            .ok_or_else(|| format!("{http_addr} names no store"))
    }
}
