//! The placement driver, embedded: where it runs, what it stores, how nodes talk to it.
//!
//! [`crate::pd`] is the PD's pure core (cluster model, operators, schedulers). This
//! module runs it inside the nodes, with no extra process:
//!
//! - [`meta`]: the PD's durable records live in the replicated keyspace, in a *meta
//!   region* covering the reserved keys from `0xFF` on; its leader is the PD leader;
//! - [`server`]: each node's [`PdServer`], active while the node leads the meta region:
//!   takes over (reads or first writes the records), handles heartbeats, joins and
//!   drains, and writes every change through raft before acting on it;
//! - [`client`]: [`PdClient`] finds the leader (following `not_pd_leader` hints) and
//!   sends it a request; the admin API and the heartbeat loop use it;
//! - [`heartbeat`]: each node reports its store and the regions it leads, and carries
//!   out the PD's answers (add or remove a peer, transfer a leadership);
//! - [`probe`]: asks the node at an address who it is, before a join or a store's move
//!   is believed;
//! - [`tso`]: the timestamp oracle, strictly increasing timestamps for transactions;
//! - [`wire`]: the requests and answers; [`views`]: the admin API's JSON views.
//!
//! A new node joins with [`join`]: it asks any node named in `cluster.join` for a store
//! id, which the PD allocates and records before answering.

mod auth_records;
pub mod client;
pub mod heartbeat;
pub mod meta;
pub mod probe;
pub mod server;
pub mod tso;
pub mod views;
pub mod wire;

use std::time::Duration;

pub use client::{PdClient, PD_PATH};
pub use heartbeat::{spawn_heartbeats, LocalStore};
pub use meta::{is_reserved_key, META_REGION_START};
pub use server::{PdServer, PdSetup};
pub use wire::{AuthChange, JoinReply, PdRequest};

use crate::address_book::AddressBook;
use crate::config::{Config, StoreAddress};
use crate::error::{Error, Result};
use crate::security::Tls;

/// How long a joining node keeps trying to reach the PD.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Asks the cluster for a store id for the node at `own`, through the nodes named in
/// `cluster.join` (and `cluster.stores`). `join_token` is the token the node's identity
/// endpoint shows meanwhile, for the PD to check. With `tls`, the node asks for the store
/// id its certificate names (and the PD gives no other).
pub async fn join(
    config: &Config,
    own: &StoreAddress,
    join_token: &str,
    tls: Option<&Tls>,
) -> Result<JoinReply> {
    let client = PdClient::new(
        None,
        0,
        AddressBook::new(config.cluster.stores.iter().cloned()),
        config.cluster.join.clone(),
        config.api.service_timeouts().attempt,
        tls,
    )?;
    let requested = tls.and_then(|tls| tls.identity().store_id()).unwrap_or(0);
    let request = PdRequest::Join {
        cluster_id: config.node.cluster_id,
        raft_addr: own.raft_addr.clone(),
        http_addr: own.http_addr.clone(),
        join_token: join_token.to_string(),
        store_id: requested,
    };
    let answer = client.call(&request, JOIN_TIMEOUT).await.map_err(|e| {
        Error::Io(format!(
            "cannot join the cluster through {:?}: {e}",
            config.cluster.join
        ))
    })?;
    let reply: JoinReply = serde_json::from_value(answer)
        .map_err(|e| Error::Io(format!("the PD answered the join with garbage: {e}")))?;
    if requested != 0 && reply.store_id != requested {
        return Err(Error::Io(format!(
            "asked to join as store {requested} (the store the certificate names), the PD \
             answered store {}",
            reply.store_id
        )));
    }
    Ok(reply)
}
