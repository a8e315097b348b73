//! A node's TLS credentials: the CA it trusts, its own certificate and key, and who that
//! certificate says it is; reloaded when the files change.
//!
//! Certificates expire and keys leak, so replacing them must not need a restart. The
//! node checks the three files' modification times and sizes every
//! `security.reload_interval_ms`; when one changed, it loads all three again and, if they
//! make a valid set, uses them for every handshake from then on (connections already
//! open keep theirs). A set that does not load (a file half written, a key that does not
//! match its certificate, a certificate naming another store) is refused with a warning
//! and the old set stays: a botched rotation never takes a node off the network, and a
//! node never becomes another store.
//!
//! Every handshake reads the current set through the resolvers and verifiers of
//! `super::verify`, so the rustls configurations are built once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::identity::CertIdentity;

/// Where a node's TLS files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate(s) the node trusts, PEM.
    pub ca: PathBuf,
    /// The node's certificate chain, PEM (its own certificate first).
    pub cert: PathBuf,
    /// The node's private key, PEM.
    pub key: PathBuf,
}

/// One loaded, consistent set of credentials.
pub(super) struct Loaded {
    /// The trusted CAs.
    pub roots: Arc<RootCertStore>,
    /// The node's certificate chain and key.
    pub key: Arc<CertifiedKey>,
    /// Whom the node's certificate names.
    pub identity: CertIdentity,
    /// Verifies a client certificate, which must be present.
    pub client_required: Arc<dyn ClientCertVerifier>,
    /// What the files looked like when they were read.
    stamp: Vec<Option<(SystemTime, u64)>>,
}

/// A node's credentials; see the module documentation.
pub struct Credentials {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
}

impl Credentials {
    /// Loads `files`; fails naming the file and the problem.
    pub fn load(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Credentials, String> {
        let loaded = load(&files, &provider)?;
        Ok(Credentials {
            files,
            provider,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// Whom this node's certificate names.
    pub fn identity(&self) -> CertIdentity {
        self.current().identity.clone()
    }

    /// The cryptography in use.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// The set in use now.
    pub(super) fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Loads the files again if they changed since they were read: `Ok(true)` if a new
    /// set is in use, `Ok(false)` if nothing changed, `Err` (the old set staying in use)
    /// if the new files do not make a valid set for this same identity.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let current = self.current();
        if stamp(&self.files) == current.stamp {
            return Ok(false);
        }
        let loaded = load(&self.files, &self.provider)?;
        if loaded.identity != current.identity {
            return Err(format!(
                "the new certificate names {}, this node is {}",
                loaded.identity, current.identity
            ));
        }
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(loaded);
        Ok(true)
    }
}

/// The modification time and size of each file (`None` if it cannot be read).
fn stamp(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    [&files.ca, &files.cert, &files.key]
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

fn load(files: &TlsFiles, provider: &Arc<CryptoProvider>) -> Result<Loaded, String> {
    let stamp = stamp(files);
    let roots = Arc::new(root_store(&files.ca)?);
    let chain = certificates(&files.cert)?;
    let identity = CertIdentity::of_certificate(&chain[0])
        .map_err(|why| format!("{}: {why}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: no private key: {e}", files.key.display()))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unusable private key: {e}", files.key.display()))?;
    let key = CertifiedKey::new(chain, signing_key);
    key.keys_match().map_err(|e| {
        format!(
            "{} does not belong to {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    let client_required =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| format!("{}: {e}", files.ca.display()))?;
    Ok(Loaded {
        roots,
        key: Arc::new(key),
        identity,
        client_required,
        stamp,
    })
}

/// The CA certificates of the PEM file at `path` (at least one), as trust anchors.
pub(super) fn root_store(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// Every certificate in the PEM file at `path` (at least one).
pub(super) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}
