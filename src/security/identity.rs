//! Who a certificate speaks for.
//!
//! Every certificate of a TinyKV-rs cluster is signed by the cluster's CA, so a valid
//! chain says only "someone the operator trusts". What it may do depends on whom it
//! names, and that name is a URI in its subject alternative names:
//!
//! - `tinykv://store/<id>`: a node, which may only ever be store `<id>`. Its raft streams
//!   must introduce themselves as that store, its placement-driver heartbeats must be
//!   about that store, and a joining node gets exactly that id;
//! - `tinykv://user/<name>`: a person or program using the client API (a client
//!   certificate of `tinykv-ctl` or an application).
//!
//! A URI and not the common name, because a certificate may carry its host names and IP
//! addresses next to it (clients check those against the address they dial), and
//! `openssl` writes one as easily as the other (`subjectAltName=URI:tinykv://store/3,
//! IP:10.0.0.3`). A certificate naming two identities, or none, stands for nobody.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The scheme and authority every identity URI starts with.
const PREFIX: &str = "tinykv://";

/// Longest user name a certificate may carry.
pub const MAX_USER_NAME_LEN: usize = 128;

/// Checks a user name as certificates, grants and `tinykv-ctl certs client` take it: 1
/// to [`MAX_USER_NAME_LEN`] ASCII letters, digits, `.`, `_` or `-`. The error says so.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_USER_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "a user name has 1 to {MAX_USER_NAME_LEN} letters, digits, '.', '_' or '-'"
        ))
    }
}

/// Whom a certificate speaks for; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertIdentity {
    /// A node, which is this store.
    Store(u64),
    /// A user of the client API.
    User(String),
}

impl CertIdentity {
    /// The identity `der` (one certificate) names, or why it names none.
    pub fn of_certificate(der: &[u8]) -> Result<CertIdentity, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("the certificate does not parse: {e}"))?;
        let names = cert
            .subject_alternative_name()
            .map_err(|e| format!("its subject alternative names do not parse: {e}"))?;
        let mut found = Vec::new();
        for name in names.iter().flat_map(|ext| ext.value.general_names.iter()) {
            if let GeneralName::URI(uri) = name {
                if uri.starts_with(PREFIX) {
                    found.push(CertIdentity::from_uri(uri)?);
                }
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(format!(
                "the certificate names no {PREFIX}store/<id> or {PREFIX}user/<name> URI"
            )),
            _ => Err("the certificate names more than one TinyKV identity".into()),
        }
    }

    /// Parses `tinykv://store/<id>` or `tinykv://user/<name>`.
    pub fn from_uri(uri: &str) -> Result<CertIdentity, String> {
        let rest = uri
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("{uri:?} does not start with {PREFIX}"))?;
        if let Some(id) = rest.strip_prefix("store/") {
            return match id.parse::<u64>() {
                Ok(id) if id > 0 => Ok(CertIdentity::Store(id)),
                _ => Err(format!("{uri:?} does not name a store id above 0")),
            };
        }
        if let Some(name) = rest.strip_prefix("user/") {
            return check_user_name(name)
                .map(|()| CertIdentity::User(name.to_string()))
                .map_err(|why| format!("{uri:?} does not name a user: {why}"));
        }
        Err(format!("{uri:?} names neither a store nor a user"))
    }

    /// The URI a certificate carries for this identity.
    pub fn uri(&self) -> String {
        match self {
            CertIdentity::Store(id) => format!("{PREFIX}store/{id}"),
            CertIdentity::User(name) => format!("{PREFIX}user/{name}"),
        }
    }

    /// The store this identity is, if it is a node's.
    pub fn store_id(&self) -> Option<u64> {
        match self {
            CertIdentity::Store(id) => Some(*id),
            CertIdentity::User(_) => None,
        }
    }
}

impl fmt::Display for CertIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertIdentity::Store(id) => write!(f, "store {id}"),
            CertIdentity::User(name) => write!(f, "user {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_stores_and_users_and_nothing_else() {
        assert_eq!(
            CertIdentity::from_uri("tinykv://store/3"),
            Ok(CertIdentity::Store(3))
        );
        assert_eq!(
            CertIdentity::from_uri("tinykv://user/ops-1"),
            Ok(CertIdentity::User("ops-1".into()))
        );
        for bad in [
            "tinykv://store/0",
            "tinykv://store/3x",
            "tinykv://store/",
            "tinykv://user/",
            "tinykv://user/a b",
            "tinykv://admin/1",
            "https://store/3",
        ] {
            assert!(CertIdentity::from_uri(bad).is_err(), "{bad}");
        }
        for identity in [CertIdentity::Store(7), CertIdentity::User("bob".into())] {
            assert_eq!(CertIdentity::from_uri(&identity.uri()), Ok(identity));
        }
    }
}
