//! `tinykv-ctl certs`: the files of a cluster's CA and of the certificates it signs, made
//! without OpenSSL and without a running node.
//!
//! Every file goes into one directory: a certificate as `NAME.pem`, its private key as
//! `NAME.key`, created with mode 0600 (whatever the umask allows of it). The CA is
//! `ca.pem` and `ca.key`, a node's certificate `store-<id>.pem` (it names
//! `tinykv://store/<id>` and the hosts the node is dialled by), a user's `user-<name>.pem`
//! (`tinykv://user/<name>`); the certificates themselves come from
//! [`tinykv::security::certs`]. No command overwrites a file unless given `--force`, and
//! a command checks every file it would write before writing the first, so a refusal
//! leaves the directory as it was.
//!
//! `certs dev` makes whatever a local cluster is missing and keeps the rest, so running
//! it again writes nothing; a file it keeps must still be usable (its pair complete, its
//! certificate signed by the directory's CA and not expired), else it stops and says
//! which file to remove.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tinykv::security::certs::{CertAuthority, IssuedCert};
use tinykv::security::CertIdentity;

use crate::cli::CertsCommand;
use crate::error::CtlError;

/// The name (common name) of a CA `certs ca` and `certs dev` make.
pub const CA_NAME: &str = "TinyKV-rs CA";

/// The hosts a `certs dev` node certificate names: a local cluster is dialled on
/// loopback.
pub const DEV_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

/// The user `certs dev` makes a client certificate for.
pub const DEV_USER: &str = "admin";

/// How long `certs dev` certificates are valid, in days.
pub const DEV_DAYS: i64 = 365;

/// What a command did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It wrote the file.
    Wrote(PathBuf),
    /// The file existed and was kept.
    Kept(PathBuf),
}

/// A certificate file and its key file: `DIR/NAME.pem` and `DIR/NAME.key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPair {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

impl PemPair {
    /// `DIR/NAME.pem` and `DIR/NAME.key`.
    pub fn new(dir: &Path, name: &str) -> PemPair {
        PemPair {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// The CA's files: `DIR/ca.pem`, `DIR/ca.key`.
    pub fn ca(dir: &Path) -> PemPair {
        PemPair::new(dir, "ca")
    }

    /// A node's files: `DIR/store-ID.pem`, `DIR/store-ID.key`.
    pub fn store(dir: &Path, store_id: u64) -> PemPair {
        PemPair::new(dir, &format!("store-{store_id}"))
    }

    /// A user's files: `DIR/user-NAME.pem`, `DIR/user-NAME.key`.
    pub fn user(dir: &Path, name: &str) -> PemPair {
        PemPair::new(dir, &format!("user-{name}"))
    }

    /// Whether both files exist (`false`: neither does); half a pair is an error.
    fn exists(&self) -> Result<bool, CtlError> {
        match (exists(&self.cert)?, exists(&self.key)?) {
            (true, true) => Ok(true),
            (false, false) => Ok(false),
            (true, false) => Err(CtlError::HalfPair {
                present: self.cert.clone(),
                missing: self.key.clone(),
            }),
            (false, true) => Err(CtlError::HalfPair {
                present: self.key.clone(),
                missing: self.cert.clone(),
            }),
        }
    }

    /// Refuses if either file exists, unless `force`.
    fn check_writable(&self, force: bool) -> Result<(), CtlError> {
        if force {
            return Ok(());
        }
        for path in [&self.cert, &self.key] {
            if exists(path)? {
                return Err(CtlError::FileExists(path.clone()));
            }
        }
        Ok(())
    }

    /// Writes `issued` (the key first, mode 0600; then the certificate).
    fn write(&self, issued: &IssuedCert, force: bool) -> Result<Vec<Outcome>, CtlError> {
        write_file(&self.key, issued.key_pem.as_bytes(), 0o600, force)?;
        write_file(&self.cert, issued.cert_pem.as_bytes(), 0o644, force)?;
        Ok(vec![
            Outcome::Wrote(self.cert.clone()),
            Outcome::Wrote(self.key.clone()),
        ])
    }

    fn kept(&self) -> Vec<Outcome> {
        vec![
            Outcome::Kept(self.cert.clone()),
            Outcome::Kept(self.key.clone()),
        ]
    }
}

/// Runs a `certs` command and returns what to print: one line per file written or kept.
pub fn run(command: &CertsCommand) -> Result<String, CtlError> {
    let outcomes = match command {
        CertsCommand::Ca { dir, force } => make_ca(dir, *force)?,
        CertsCommand::Node {
            dir,
            store_id,
            hosts,
            days,
            force,
        } => make_node(dir, *store_id, hosts, *days, *force)?,
        CertsCommand::Client {
            dir,
            user,
            days,
            force,
        } => make_client(dir, user, *days, *force)?,
        CertsCommand::Dev { dir, stores } => make_dev(dir, stores)?,
    };
    Ok(render(&outcomes))
}

/// `wrote PATH` or `kept PATH (exists)`, a line each.
pub fn render(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            Outcome::Wrote(path) => format!("wrote {}\n", path.display()),
            Outcome::Kept(path) => format!("kept {} (exists)\n", path.display()),
        })
        .collect()
}

/// A new CA in `dir` (created if missing): `ca.pem` and `ca.key`.
pub fn make_ca(dir: &Path, force: bool) -> Result<Vec<Outcome>, CtlError> {
    let pair = PemPair::ca(dir);
    pair.check_writable(force)?;
    create_dir(dir)?;
    let ca = CertAuthority::generate(CA_NAME).map_err(CtlError::Certificate)?;
    pair.write(&ca.issued, force)
}

/// A certificate for store `store_id`, for `hosts` (DNS names or IP addresses), valid
/// for `days`, signed by the CA in `dir`: `store-ID.pem` and `store-ID.key`.
pub fn make_node(
    dir: &Path,
    store_id: u64,
    hosts: &[String],
    days: i64,
    force: bool,
) -> Result<Vec<Outcome>, CtlError> {
    if store_id == 0 {
        return Err(CtlError::Usage("--store must be greater than 0".into()));
    }
    if hosts.is_empty() {
        return Err(CtlError::Usage(
            "--host: name at least one host the node is dialled by".into(),
        ));
    }
    let hosts = hosts
        .iter()
        .map(|host| check_host(host))
        .collect::<Result<Vec<_>, _>>()?;
    let pair = PemPair::store(dir, store_id);
    pair.check_writable(force)?;
    let ca = load_ca(dir)?;
    let issued = ca
        .issue(&CertIdentity::Store(store_id), &hosts, days)
        .map_err(CtlError::Certificate)?;
    pair.write(&issued, force)
}

/// A client certificate for `user`, valid for `days`, signed by the CA in `dir`:
/// `user-NAME.pem` and `user-NAME.key`.
pub fn make_client(
    dir: &Path,
    user: &str,
    days: i64,
    force: bool,
) -> Result<Vec<Outcome>, CtlError> {
    check_user(user)?;
    let pair = PemPair::user(dir, user);
    pair.check_writable(force)?;
    let ca = load_ca(dir)?;
    let issued = ca
        .issue(&CertIdentity::User(user.to_string()), &[], days)
        .map_err(CtlError::Certificate)?;
    pair.write(&issued, force)
}

/// What a local cluster of `stores` needs in `dir`, making only what is missing: the CA,
/// a node certificate per store for [`DEV_HOSTS`], and [`DEV_USER`]'s client
/// certificate. Writes nothing when everything is there; refuses, writing nothing, when
/// a file it would keep is half a pair or not signed by the CA (or expired).
pub fn make_dev(dir: &Path, stores: &[u64]) -> Result<Vec<Outcome>, CtlError> {
    let mut stores = stores.to_vec();
    stores.sort_unstable();
    stores.dedup();
    if stores.is_empty() || stores.contains(&0) {
        return Err(CtlError::Usage(
            "--stores: give store ids greater than 0 (1,2,3)".into(),
        ));
    }
    let hosts: Vec<String> = DEV_HOSTS.iter().map(|h| h.to_string()).collect();
    let mut wanted: Vec<(PemPair, CertIdentity, &[String])> = stores
        .iter()
        .map(|&id| (PemPair::store(dir, id), CertIdentity::Store(id), &hosts[..]))
        .collect();
    wanted.push((
        PemPair::user(dir, DEV_USER),
        CertIdentity::User(DEV_USER.into()),
        &[],
    ));

    // Look at everything before writing anything.
    let ca_pair = PemPair::ca(dir);
    let ca_exists = ca_pair.exists()?;
    let mut present = Vec::with_capacity(wanted.len());
    for (pair, ..) in &wanted {
        present.push(pair.exists()?);
    }
    if ca_exists {
        let ca_pem = read(&ca_pair.cert)?;
        for ((pair, ..), _) in wanted.iter().zip(&present).filter(|(_, &p)| p) {
            check_signed_by(&ca_pem, &pair.cert).map_err(|why| {
                CtlError::Certificate(format!(
                    "{} cannot be kept: {why}; remove it (and its key) to make a new one",
                    pair.cert.display()
                ))
            })?;
        }
    } else if let Some(((pair, ..), _)) = wanted.iter().zip(&present).find(|(_, &p)| p) {
        return Err(CtlError::Certificate(format!(
            "{} exists but {} does not: it was signed by another CA; remove the \
             certificates in {} to start over",
            pair.cert.display(),
            ca_pair.cert.display(),
            dir.display()
        )));
    }

    let mut outcomes = Vec::new();
    // The CA to sign with: a new one, or the directory's, loaded once something needs it.
    let mut ca = None;
    if ca_exists {
        outcomes.extend(ca_pair.kept());
    } else {
        create_dir(dir)?;
        let new = CertAuthority::generate(CA_NAME).map_err(CtlError::Certificate)?;
        outcomes.extend(ca_pair.write(&new.issued, false)?);
        ca = Some(new);
    }
    for ((pair, identity, hosts), exists) in wanted.iter().zip(present) {
        if exists {
            outcomes.extend(pair.kept());
            continue;
        }
        let signer = match ca.take() {
            Some(signer) => signer,
            None => load_ca(dir)?,
        };
        let issued = signer
            .issue(identity, hosts, DEV_DAYS)
            .map_err(CtlError::Certificate)?;
        ca = Some(signer);
        outcomes.extend(pair.write(&issued, false)?);
    }
    Ok(outcomes)
}

/// Checks a `--host`: an IP address (brackets allowed around IPv6) or a DNS name
/// (letters, digits and `-` in dot-separated labels, a first label `*` for a wildcard),
/// without a port or scheme; returns it as the certificate names it.
pub fn check_host(raw: &str) -> Result<String, CtlError> {
    let host = raw.trim();
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let refuse = |why: &str| Err(CtlError::Usage(format!("--host {raw:?}: {why}")));
    if host.contains("://") {
        return refuse("give a host name or IP address, not a URL");
    }
    if host.contains(':') {
        return refuse("give the host without a port");
    }
    if host.is_empty() || host.len() > 253 {
        return refuse("a host name has 1 to 253 characters");
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    for (i, label) in host.split('.').enumerate() {
        let wildcard = i == 0 && label == "*";
        let valid = wildcard
            || (!label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !valid {
            return refuse("not an IP address or DNS name (letters, digits and '-' between dots)");
        }
    }
    Ok(host.to_ascii_lowercase())
}

/// Checks a `--user` name as certificates take it
/// ([`tinykv::security::identity::check_user_name`]).
pub fn check_user(name: &str) -> Result<(), CtlError> {
    tinykv::security::identity::check_user_name(name)
        .map_err(|why| CtlError::Usage(format!("--user {name:?}: {why}")))
}

/// The CA in `dir`, to sign with.
fn load_ca(dir: &Path) -> Result<CertAuthority, CtlError> {
    let pair = PemPair::ca(dir);
    for path in [&pair.cert, &pair.key] {
        if !exists(path)? {
            return Err(CtlError::Certificate(format!(
                "{} not found: make the CA first (tinykv-ctl certs ca --dir {})",
                path.display(),
                dir.display()
            )));
        }
    }
    let cert = read(&pair.cert)?;
    let key = read(&pair.key)?;
    CertAuthority::load(&cert, &key)
        .map_err(|why| CtlError::Certificate(format!("the CA in {}: {why}", dir.display())))
}

/// Why the certificate at `cert` would not be accepted under the CA `ca_pem` (not signed
/// by it, expired, not for client authentication, not PEM), if it would not.
fn check_signed_by(ca_pem: &str, cert: &Path) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| format!("the CA certificate is not PEM: {e}"))?;
        roots
            .add(ca)
            .map_err(|e| format!("the CA certificate: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        tinykv::security::crypto_provider(),
    )
    .build()
    .map_err(|e| format!("the CA certificate: {e}"))?;
    let der = CertificateDer::from_pem_file(cert).map_err(|e| format!("not PEM: {e}"))?;
    verifier
        .verify_client_cert(&der, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| format!("the CA does not accept it ({e})"))
}

/// Whether `path` exists (a dangling symbolic link counts: it would not be replaced).
fn exists(path: &Path) -> Result<bool, CtlError> {
    match path.symlink_metadata() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CtlError::File {
            action: "look at",
            path: path.to_path_buf(),
            cause: e.to_string(),
        }),
    }
}

fn read(path: &Path) -> Result<String, CtlError> {
    std::fs::read_to_string(path).map_err(|e| CtlError::File {
        action: "read",
        path: path.to_path_buf(),
        cause: e.to_string(),
    })
}

/// Creates `dir` and its parents if missing; a directory it creates is private (0700),
/// as it will hold keys.
fn create_dir(dir: &Path) -> Result<(), CtlError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CtlError::File {
            action: "create the directory",
            path: dir.to_path_buf(),
            cause: e.to_string(),
        })
}

/// Writes a new file with `mode`. An existing file is an error, unless `force`: then it
/// is removed first, so the new file gets `mode` whatever the old one had.
fn write_file(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), CtlError> {
    let fail = |action, e: std::io::Error| CtlError::File {
        action,
        path: path.to_path_buf(),
        cause: e.to_string(),
    };
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(fail("replace", e)),
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => CtlError::FileExists(path.to_path_buf()),
            _ => fail("create", e),
        })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("write", e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use tinykv::security::{Credentials, TlsFiles};

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn identity(path: &Path) -> CertIdentity {
        let der = CertificateDer::from_pem_slice(&std::fs::read(path).unwrap()).unwrap();
        CertIdentity::of_certificate(&der).unwrap()
    }

    fn wrote(outcomes: &[Outcome]) -> Vec<PathBuf> {
        outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Wrote(path) => Some(path.clone()),
                Outcome::Kept(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_ca_is_two_files_with_a_private_key_and_is_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let outcomes = make_ca(&dir, false).unwrap();
        let ca = PemPair::ca(&dir);
        assert_eq!(wrote(&outcomes), [ca.cert.clone(), ca.key.clone()]);
        assert_eq!(mode(&ca.key), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let first = std::fs::read(&ca.cert).unwrap();
        let der = CertificateDer::from_pem_slice(&first).unwrap();
        assert!(
            CertIdentity::of_certificate(&der).is_err(),
            "a CA is nobody"
        );

        let err = make_ca(&dir, false).unwrap_err();
        assert!(matches!(err, CtlError::FileExists(_)), "{err}");
        assert!(err.to_string().contains("ca.pem") && err.to_string().contains("--force"));
        assert_eq!(std::fs::read(&ca.cert).unwrap(), first, "left as it was");

        // --force replaces both, and a key loosened meanwhile comes back private.
        std::fs::set_permissions(&ca.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        make_ca(&dir, true).unwrap();
        assert_ne!(std::fs::read(&ca.cert).unwrap(), first);
        assert_eq!(mode(&ca.key), 0o600);
    }

    #[test]
    fn node_certificates_name_their_store_and_load_as_a_nodes_credentials() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let hosts = vec!["node3.tinykv.internal".to_string(), "10.0.0.3".to_string()];
        let err = make_node(dir, 3, &hosts, 30, false).unwrap_err();
        assert!(err.to_string().contains("certs ca"), "{err}");

        make_ca(dir, false).unwrap();
        let outcomes = make_node(dir, 3, &hosts, 30, false).unwrap();
        let pair = PemPair::store(dir, 3);
        assert_eq!(wrote(&outcomes), [pair.cert.clone(), pair.key.clone()]);
        assert_eq!(identity(&pair.cert), CertIdentity::Store(3));
        assert_eq!(mode(&pair.key), 0o600);
        let credentials = Credentials::load(
            TlsFiles {
                ca: PemPair::ca(dir).cert,
                cert: pair.cert.clone(),
                key: pair.key.clone(),
            },
            tinykv::security::crypto_provider(),
        )
        .unwrap();
        assert_eq!(credentials.identity(), CertIdentity::Store(3));
        let ca_pem = std::fs::read_to_string(PemPair::ca(dir).cert).unwrap();
        check_signed_by(&ca_pem, &pair.cert).unwrap();

        let before = std::fs::read(&pair.key).unwrap();
        let err = make_node(dir, 3, &hosts, 30, false).unwrap_err();
        assert!(err.to_string().contains("store-3.pem"), "{err}");
        assert_eq!(std::fs::read(&pair.key).unwrap(), before);
        make_node(dir, 3, &hosts, 30, true).unwrap();
        assert_ne!(std::fs::read(&pair.key).unwrap(), before);
    }

    #[test]
    fn client_certificates_name_their_user_whose_name_is_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        make_ca(dir, false).unwrap();
        for bad in ["", "a b", "../x", "ops/1", "bob@example", &"x".repeat(129)] {
            let err = make_client(dir, bad, 1, false).unwrap_err();
            assert!(matches!(err, CtlError::Usage(_)), "{bad}: {err}");
        }
        make_client(dir, "ops-1.x_y", 1, false).unwrap();
        let pair = PemPair::user(dir, "ops-1.x_y");
        assert_eq!(identity(&pair.cert), CertIdentity::User("ops-1.x_y".into()));
        assert_eq!(mode(&pair.key), 0o600);
        assert!(matches!(
            make_client(dir, "ops-1.x_y", 1, false),
            Err(CtlError::FileExists(_))
        ));
    }

    #[test]
    fn hosts_are_ip_addresses_or_dns_names_without_ports() {
        assert_eq!(check_host("10.0.0.1").unwrap(), "10.0.0.1");
        assert_eq!(check_host("[::1]").unwrap(), "::1");
        assert_eq!(
            check_host("Node1.TinyKV.internal").unwrap(),
            "node1.tinykv.internal"
        );
        assert_eq!(
            check_host("*.tinykv.internal").unwrap(),
            "*.tinykv.internal"
        );
        let port = check_host("node1:8080").unwrap_err().to_string();
        assert!(port.contains("without a port"), "{port}");
        let url = check_host("https://node1").unwrap_err().to_string();
        assert!(url.contains("not a URL"), "{url}");
        for bad in ["", "-node", "node_1", "a..b", "a.*.b", "node 1"] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dev_makes_what_is_missing_and_nothing_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let outcomes = make_dev(&dir, &[1, 2, 3]).unwrap();
        // The CA, three nodes and the admin user, two files each.
        assert_eq!(wrote(&outcomes).len(), 10);
        for id in [1, 2, 3] {
            let pair = PemPair::store(&dir, id);
            assert_eq!(identity(&pair.cert), CertIdentity::Store(id));
            assert_eq!(mode(&pair.key), 0o600);
        }
        let admin = PemPair::user(&dir, DEV_USER);
        assert_eq!(identity(&admin.cert), CertIdentity::User("admin".into()));
        assert_eq!(mode(&PemPair::ca(&dir).key), 0o600);

        let before = std::fs::read(PemPair::store(&dir, 2).cert).unwrap();
        let again = make_dev(&dir, &[3, 2, 1, 1]).unwrap();
        assert!(wrote(&again).is_empty(), "{again:?}");
        assert_eq!(again.len(), 10);
        assert!(render(&again).starts_with("kept "), "{}", render(&again));
        assert_eq!(std::fs::read(PemPair::store(&dir, 2).cert).unwrap(), before);

        // A store added later gets its certificate from the same CA.
        let more = make_dev(&dir, &[1, 2, 3, 4]).unwrap();
        let store4 = PemPair::store(&dir, 4);
        assert_eq!(wrote(&more), [store4.cert.clone(), store4.key.clone()]);
        let ca_pem = std::fs::read_to_string(PemPair::ca(&dir).cert).unwrap();
        check_signed_by(&ca_pem, &store4.cert).unwrap();
    }

    #[test]
    fn dev_refuses_files_it_cannot_keep_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        make_dev(dir, &[1]).unwrap();
        // Half a pair.
        std::fs::remove_file(PemPair::store(dir, 1).key).unwrap();
        let err = make_dev(dir, &[1, 2]).unwrap_err();
        assert!(matches!(err, CtlError::HalfPair { .. }), "{err}");
        assert!(!PemPair::store(dir, 2).cert.exists(), "nothing written");
        std::fs::remove_file(PemPair::store(dir, 1).cert).unwrap();

        // A certificate of another CA.
        let other = tempfile::tempdir().unwrap();
        make_dev(other.path(), &[1]).unwrap();
        for path in [PemPair::store(dir, 1).cert, PemPair::store(dir, 1).key] {
            let name = path.file_name().unwrap();
            std::fs::copy(other.path().join(name), &path).unwrap();
        }
        let err = make_dev(dir, &[1, 2]).unwrap_err().to_string();
        assert!(err.contains("store-1.pem cannot be kept"), "{err}");
        assert!(!PemPair::store(dir, 2).cert.exists(), "nothing written");

        // Certificates without their CA.
        std::fs::remove_file(PemPair::ca(dir).cert).unwrap();
        std::fs::remove_file(PemPair::ca(dir).key).unwrap();
        let err = make_dev(dir, &[1]).unwrap_err().to_string();
        assert!(err.contains("signed by another CA"), "{err}");
        assert!(!PemPair::ca(dir).cert.exists(), "nothing written");
    }
}
