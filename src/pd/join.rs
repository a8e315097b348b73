//! Joining: how a new node gets a store id from the cluster.
//!
//! A node started without a store id asks any node named in `cluster.join` (or
//! `cluster.stores`) for one; the PD allocates and records it before answering, and probes
//! the address the node says it has (see [`super::probe`]).

use std::time::Duration;

use super::{JoinReply, PdClient, PdRequest};
use crate::config::{Config, StoreAddress};
use crate::error::{Error, Result};
use crate::security::Tls;
use crate::server::address_book::AddressBook;

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
