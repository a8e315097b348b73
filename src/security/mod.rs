//! Transport security: TLS on the client listener, mutual TLS between nodes, and which
//! store each node is allowed to be.
//!
//! With `[security]` naming a CA, a certificate and a key, every connection a node
//! accepts or opens is TLS (rustls, TLS 1.2 and 1.3):
//!
//! - the **client listener** serves HTTPS with the node's certificate (which names the
//!   host names and addresses clients dial); with `security.client_cert_auth` it also
//!   requires a client certificate signed by the cluster's CA;
//! - the **peer listener** requires a client certificate that names a store
//!   (`tinykv://store/<id>`, see [`identity`]): a raft or snapshot stream must
//!   introduce itself as that very store, a placement-driver heartbeat must be about it,
//!   and a joining node becomes it. Anyone without such a certificate cannot open a
//!   connection at all, so a forged tombstone or heartbeat from outside the cluster is
//!   refused before a byte of it is read;
//! - **outgoing** connections (raft batches, snapshots, forwarded requests, placement
//!   driver calls) present the node's certificate and accept only a peer whose
//!   certificate the CA signed and which names a store (`verify::ClusterServers`); the
//!   raft transport also checks it is the store it dialled.
//!
//! Without `[security]`, everything is plaintext, which a node allows only when all its
//! listeners are on loopback addresses, or when `security.insecure = true` says so in
//! as many words (see [`check_plaintext_allowed`]).
//!
//! [`Conn`] is a connection either way, so the listeners and the transport handle one
//! type. Certificates are reloaded when their files change ([`credentials`]); `certs`
//! makes a CA and certificates for a cluster.

pub mod certs;
mod client_tls;
pub mod credentials;
pub mod identity;
mod node_http;
#[cfg(test)]
mod tests;
mod verify;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::config::SecurityConfig;
use crate::error::{Error, Result};
pub use client_tls::ClientTlsFiles;
pub use credentials::{Credentials, TlsFiles};
pub use identity::CertIdentity;
pub use node_http::NodeHttp;

/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cryptography every TLS configuration of the node uses (ring).
///
/// rustls 0.23.48 marks ring's provider deprecated because it lacks the post-quantum
/// key exchange aws-lc-rs has; ring builds with nothing but a C compiler (aws-lc-rs needs
/// cmake and far longer builds), and its classical suites (X25519, P-256, AES-GCM,
/// ChaCha20) are what TLS 1.3 deployments use today.
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            // The HTTP client (reqwest) builds its TLS setup from the process's default
            // provider, even for a client that only ever speaks plain HTTP.
            let _ = CryptoProvider::install_default((*provider).clone());
            provider
        })
        .clone()
}

/// A builder of an HTTP client (reqwest) that uses no proxy, for tools and tests; the
/// process's crypto provider is installed first, which reqwest needs to build any client.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    crypto_provider();
    reqwest::Client::builder().no_proxy()
}

/// A node's TLS setup; see the module documentation. Clones share it.
#[derive(Clone)]
pub struct Tls {
    credentials: Arc<Credentials>,
    /// The peer listener's: a client certificate is required.
    peer_server: Arc<ServerConfig>,
    /// The client listener's.
    client_server: Arc<ServerConfig>,
    /// Outgoing connections to other nodes.
    peer_client: Arc<ClientConfig>,
}

impl Tls {
    /// The TLS setup `security` describes, or `None` for plaintext.
    pub fn from_config(security: &SecurityConfig) -> Result<Option<Tls>> {
        let Some(files) = security.tls_files() else {
            return Ok(None);
        };
        let credentials = Credentials::load(files, crypto_provider())
            .map_err(|why| Error::Config(format!("security: {why}")))?;
        Tls::new(Arc::new(credentials), security.client_cert_auth).map(Some)
    }

    /// A TLS setup with `credentials`; `client_cert_auth` makes the client listener
    /// require a client certificate.
    pub fn new(credentials: Arc<Credentials>, client_cert_auth: bool) -> Result<Tls> {
        let provider = credentials.provider().clone();
        let versions = rustls::DEFAULT_VERSIONS;
        let config_error = |e: rustls::Error| Error::Config(format!("security: {e}"));
        let key = Arc::new(verify::CurrentKey(credentials.clone()));
        let mut peer_server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(config_error)?
            .with_client_cert_verifier(Arc::new(verify::ClusterClients(credentials.clone())))
            .with_cert_resolver(key.clone());
        peer_server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(config_error)?;
        let mut client_server = if client_cert_auth {
            builder
                .with_client_cert_verifier(Arc::new(verify::ClusterClients(credentials.clone())))
                .with_cert_resolver(key.clone())
        } else {
            builder
                .with_no_client_auth()
                .with_cert_resolver(key.clone())
        };
        client_server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut peer_client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::ClusterServers(credentials.clone())))
            .with_client_cert_resolver(key);
        peer_client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            credentials,
            peer_server: Arc::new(peer_server),
            client_server: Arc::new(client_server),
            peer_client: Arc::new(peer_client),
        })
    }

    /// Whom this node's certificate names.
    pub fn identity(&self) -> CertIdentity {
        self.credentials.identity()
    }

    /// The TLS configuration of outgoing node-to-node connections (for an HTTP client).
    pub fn peer_client_config(&self) -> ClientConfig {
        (*self.peer_client).clone()
    }

    /// Accepts a TLS connection from another node (its certificate required).
    pub async fn accept_peer(&self, tcp: TcpStream) -> std::io::Result<Conn> {
        accept(self.peer_server.clone(), tcp).await
    }

    /// Accepts a TLS connection on the client listener.
    pub async fn accept_client(&self, tcp: TcpStream) -> std::io::Result<Conn> {
        accept(self.client_server.clone(), tcp).await
    }

    /// Opens TLS on `tcp`, a connection to the node at `addr`.
    pub async fn connect(&self, tcp: TcpStream, addr: &str) -> std::io::Result<Conn> {
        let name = server_name(addr);
        let connector = TlsConnector::from(self.peer_client.clone());
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        Ok(Conn::Tls(Box::new(TlsStream::Client(stream))))
    }

    /// Checks the files every `interval` and takes new ones (see [`credentials`]), in a
    /// task that runs until it is aborted. A set that does not load is reported once, not
    /// at every check.
    pub fn reload_every(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let credentials = self.credentials.clone();
        tokio::spawn(async move {
            let mut reported = None;
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match credentials.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!("TLS certificate and key reloaded");
                        reported = None;
                    }
                    Ok(false) => {}
                    Err(why) if reported.as_ref() != Some(&why) => {
                        tracing::warn!(
                            "the TLS files changed but do not load; keeping the ones in use: {why}"
                        );
                        reported = Some(why);
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

async fn accept(config: Arc<ServerConfig>, tcp: TcpStream) -> std::io::Result<Conn> {
    let acceptor = TlsAcceptor::from(config);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
    Ok(Conn::Tls(Box::new(TlsStream::Server(stream))))
}

/// The name to ask for when dialling `addr` (`host:port`): its IP address, or its host
/// name (a certificate's name is not what identifies a node; see [`verify`]).
fn server_name(addr: &str) -> ServerName<'static> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into()))
}

/// Refuses to run in plaintext on a non-loopback address, unless `insecure`.
pub fn check_plaintext_allowed(addresses: &[(&str, &str)], insecure: bool) -> Result<()> {
    if insecure {
        return Ok(());
    }
    for (key, addr) in addresses {
        let loopback = addr
            .parse::<SocketAddr>()
            .map(|a| a.ip().is_loopback())
            .unwrap_or_else(|_| addr.starts_with("localhost:"));
        if !loopback {
            return Err(Error::Config(format!(
                "{key} {addr:?} is not a loopback address, and there is no [security] \
                 section: set security.ca_path, cert_path and key_path for TLS (see \
                 docs/security.md), or security.insecure = true to serve plaintext anyway"
            )));
        }
    }
    Ok(())
}

/// A connection, plaintext or TLS.
pub enum Conn {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS, either side.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Whom the other side's certificate names (`None`: plaintext, no certificate, or
    /// one naming nobody).
    pub fn peer_identity(&self) -> Option<CertIdentity> {
        let Conn::Tls(tls) = self else {
            return None;
        };
        let cert = tls.get_ref().1.peer_certificates()?.first()?;
        CertIdentity::of_certificate(cert).ok()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write(cx, data),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(tcp) => tcp.is_write_vectored(),
            Conn::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
