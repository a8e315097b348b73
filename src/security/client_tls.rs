//! TLS for clients of a node's REST API: `tinykv-ctl`, `tinykv-bench`, the chaos runner
//! and the tests.
//!
//! A client is not a node: it checks a node's certificate the way a browser or `curl
//! --cacert` does (signed by the cluster's CA, naming the host it dialled), and it
//! presents a certificate of its own only when the cluster requires one
//! (`security.client_cert_auth`). [`ClientTlsFiles`] names the files (`--cacert`,
//! `--cert`, `--key`, as curl calls them); [`ClientTlsFiles::http_client_builder`] gives an
//! HTTP client that uses them.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::ClientConfig;

/// The TLS files of a REST client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The CA certificate(s) to trust, PEM.
    pub ca: PathBuf,
    /// The client's certificate chain and key, PEM, for a cluster that requires client
    /// certificates.
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
}

impl ClientTlsFiles {
    /// The rustls configuration these files make.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let roots = super::credentials::root_store(&self.ca)?;
        let builder = ClientConfig::builder_with_provider(super::crypto_provider())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(|e| e.to_string())?
            .with_root_certificates(Arc::new(roots));
        let mut config = match &self.cert_and_key {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = super::credentials::certificates(cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("the key file {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| format!("the certificate and key do not go together: {e}"))?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// An HTTP client builder (no proxy) that speaks TLS with these files.
    pub fn http_client_builder(&self) -> Result<reqwest::ClientBuilder, String> {
        let config = self.client_config()?;
        Ok(super::http_client_builder().tls_backend_preconfigured(config))
    }
}
