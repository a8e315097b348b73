//! The HTTP client a node reaches other nodes with.
//!
//! Nodes call each other over HTTP for forwarded requests, the placement driver, identity
//! probes and health probes. With TLS those calls are HTTPS: the client presents the
//! node's certificate (the peer listener requires one that names a store) and accepts
//! only a server whose certificate the cluster's CA signed and which names a store
//! (`super::verify::ClusterServers`). Without TLS they are plain HTTP. [`NodeHttp`] keeps
//! the client and the scheme together, so that no caller can pair a TLS client with an
//! `http://` URL or the other way round.

use std::time::Duration;

use super::Tls;
use crate::error::{Error, Result};

/// An HTTP client for node-to-node calls and the scheme of their URLs. Clones share one
/// connection pool.
#[derive(Clone)]
pub struct NodeHttp {
    client: reqwest::Client,
    scheme: &'static str,
}

impl NodeHttp {
    /// A client that uses `tls` (plaintext if `None`), never a proxy, with
    /// `connect_timeout`; `configure` sets whatever else the caller needs (timeouts,
    /// pooling). `purpose` names the client in the error if it cannot be built.
    pub fn build(
        tls: Option<&Tls>,
        connect_timeout: Duration,
        purpose: &str,
        configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<NodeHttp> {
        let mut builder = super::http_client_builder().connect_timeout(connect_timeout);
        if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured(tls.peer_client_config());
        }
        let client = configure(builder)
            .build()
            .map_err(|e| Error::Io(format!("cannot build the {purpose} HTTP client: {e}")))?;
        Ok(NodeHttp {
            client,
            scheme: if tls.is_some() { "https" } else { "http" },
        })
    }

    /// The client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The URL of `path` (with its query, if any) on the node listening at `addr`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }
}
