//! Who may do what: roles, the credentials that carry them, and the check every client
//! request passes when authentication is on.
//!
//! Three roles, each including the one before:
//!
//! | role | may |
//! |---|---|
//! | `read` | read keys and scan (`GET`/`HEAD` under `/v1/kv`) |
//! | `readwrite` | also write and delete keys |
//! | `admin` | everything: the admin API (`/v1/admin`), authentication (`/v1/auth`) |
//!
//! Any valid credential may take timestamps (`GET /v1/txn/ts`): they read and change no
//! key. A `read` or `readwrite` grant may carry a key prefix (as etcd's key permissions do):
//! then it reaches only keys that begin with it, and a scan only within it. `/health`,
//! `/metrics`, `/v1/openapi.json` and the dashboard page itself need no credential
//! (they show no data: the dashboard's own requests carry the user's token), so load
//! balancers and scrapers keep working. Every other route needs a valid credential, so
//! a stranger learns nothing, not even which routes exist.
//!
//! The credentials are a bearer token (see [`super::token`]) and, with
//! `security.client_cert_auth`, a client certificate naming a user
//! (`tinykv://user/<name>`) that has a grant in [`AuthSet::users`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::token::PresentedToken;

/// A role; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads keys.
    Read,
    /// Reads and writes keys.
    Readwrite,
    /// Everything.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "read" => Ok(Role::Read),
            "readwrite" => Ok(Role::Readwrite),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected read, readwrite or admin"
            )),
        }
    }
}

/// What a credential may do: a role, and for `read` and `readwrite` perhaps a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The role.
    pub role: Role,
    /// The keys it reaches: those beginning with this (UTF-8) prefix; `None`: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl Grant {
    /// Checks that the grant is one the cluster keeps: an admin reaches everything, so
    /// it has no prefix, and a prefix is not empty.
    pub fn check(&self) -> Result<(), String> {
        match (&self.role, &self.prefix) {
            (Role::Admin, Some(_)) => Err("an admin grant cannot have a key prefix".into()),
            (_, Some(prefix)) if prefix.is_empty() => {
                Err("a key prefix must not be empty (leave it out for every key)".into())
            }
            _ => Ok(()),
        }
    }
}

/// A token as the cluster keeps it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id.
    pub id: String,
    /// What it is for, as its creator named it.
    pub name: String,
    /// What it may do.
    #[serde(flatten)]
    pub grant: Grant,
    /// SHA-256 of its secret, hex.
    pub secret_sha256: String,
    /// When it was made, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A user whose client certificate (`tinykv://user/<name>`) carries a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The user's name, as the certificate names it.
    pub name: String,
    /// What the user may do.
    #[serde(flatten)]
    pub grant: Grant,
}

/// The cluster's authentication state: whether it is on, and every credential. The
/// placement driver keeps it in the meta region; every node enforces a copy
/// ([`super::AuthCache`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSet {
    /// Whether requests need a credential.
    pub enabled: bool,
    /// Raised by every change; nodes ask for the set when theirs is older.
    pub version: u64,
    /// Tokens by id.
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenRecord>,
    /// Certificate users by name.
    #[serde(default)]
    pub users: BTreeMap<String, UserRecord>,
    /// Whether the root token of `security.root_token` was ever recorded: it is recorded
    /// once, so revoking it is for good.
    #[serde(default)]
    pub root_recorded: bool,
}

/// What a request would do, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// Needs no credential (health, metrics, the dashboard page).
    Open,
    /// Reads one key.
    Read(&'a [u8]),
    /// Writes or deletes one key.
    Write(&'a [u8]),
    /// Scans `[start, end)` (`end` empty: to the end of the key space).
    Scan {
        /// First key.
        start: &'a [u8],
        /// End, exclusive.
        end: &'a [u8],
    },
    /// The admin or authentication API.
    Admin,
    /// A route that does not exist: any valid credential may learn that.
    Other,
}

/// What a request presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token.
    Token(PresentedToken),
    /// A client certificate naming this user.
    User(String),
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credential, or none the cluster knows (401).
    Unauthenticated(String),
    /// A valid credential without the permission (403).
    Denied(String),
}

impl AuthSet {
    /// The grant of the first of `credentials` the cluster knows.
    pub fn resolve(&self, credentials: &[Credential]) -> Option<&Grant> {
        credentials.iter().find_map(|credential| match credential {
            Credential::Token(presented) => self
                .tokens
                .get(&presented.id)
                .filter(|record| record.secret_sha256 == presented.secret_sha256)
                .map(|record| &record.grant),
            Credential::User(name) => self.users.get(name).map(|user| &user.grant),
        })
    }

    /// Whether a request presenting `credentials` may do `access`.
    pub fn authorize(&self, credentials: &[Credential], access: Access) -> Result<(), Refusal> {
        if !self.enabled || access == Access::Open {
            return Ok(());
        }
        let Some(grant) = self.resolve(credentials) else {
            return Err(Refusal::Unauthenticated(if credentials.is_empty() {
                "authentication is on: send Authorization: Bearer <token>".into()
            } else {
                "the token (or client certificate) is not one this cluster knows, or it was \
                 revoked"
                    .into()
            }));
        };
        grant.permits(access).map_err(Refusal::Denied)
    }
}

impl Grant {
    /// Whether the grant allows `access`; the error says why not.
    pub fn permits(&self, access: Access) -> Result<(), String> {
        let role_allows = match access {
            Access::Open | Access::Other | Access::Read(_) | Access::Scan { .. } => true,
            Access::Write(_) => self.role >= Role::Readwrite,
            Access::Admin => self.role == Role::Admin,
        };
        if !role_allows {
            let needed = if matches!(access, Access::Admin) {
                "admin"
            } else {
                "readwrite"
            };
            return Err(format!(
                "this needs the {needed} role; the credential has {}",
                serde_json::to_value(self.role).unwrap_or_default()
            ));
        }
        let Some(prefix) = &self.prefix else {
            return Ok(());
        };
        let prefix = prefix.as_bytes();
        let within = match access {
            Access::Read(key) | Access::Write(key) => key.starts_with(prefix),
            Access::Scan { start, end } => {
                start.starts_with(prefix)
                    && !end.is_empty()
                    && prefix_end(prefix).is_none_or(|limit| end <= limit.as_slice())
            }
            _ => true,
        };
        if within {
            Ok(())
        } else {
            Err(format!(
                "the credential reaches only keys beginning with {:?} (a scan must start and \
                 end within them)",
                String::from_utf8_lossy(prefix)
            ))
        }
    }
}

/// The first key after every key that begins with `prefix` (`None`: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::{root_token_sha256, NewToken};

    fn set_with(grant: Grant) -> (AuthSet, Vec<Credential>) {
        let made = NewToken::generate().unwrap();
        let mut set = AuthSet {
            enabled: true,
            version: 1,
            ..Default::default()
        };
        set.tokens.insert(
            made.id.clone(),
            TokenRecord {
                id: made.id.clone(),
                name: "test".into(),
                grant,
                secret_sha256: made.secret_sha256.clone(),
                created_ms: 0,
            },
        );
        let presented = PresentedToken::parse(&made.token).unwrap();
        (set, vec![Credential::Token(presented)])
    }

    fn grant(role: Role, prefix: Option<&str>) -> Grant {
        Grant {
            role,
            prefix: prefix.map(String::from),
        }
    }

    #[test]
    fn each_role_includes_the_one_before() {
        let kinds = [
            Access::Read(b"k"),
            Access::Scan {
                start: b"a",
                end: b"z",
            },
            Access::Write(b"k"),
            Access::Admin,
        ];
        for (role, allowed) in [(Role::Read, 2), (Role::Readwrite, 3), (Role::Admin, 4)] {
            let (set, credentials) = set_with(grant(role, None));
            for (i, access) in kinds.iter().enumerate() {
                let outcome = set.authorize(&credentials, *access);
                assert_eq!(
                    outcome.is_ok(),
                    i < allowed,
                    "{role:?} {access:?}: {outcome:?}"
                );
                if i >= allowed {
                    assert!(matches!(outcome, Err(Refusal::Denied(_))));
                }
            }
        }
    }

    #[test]
    fn strangers_and_revoked_tokens_are_unauthenticated() {
        let (mut set, credentials) = set_with(grant(Role::Admin, None));
        assert!(matches!(
            set.authorize(&[], Access::Read(b"k")),
            Err(Refusal::Unauthenticated(_))
        ));
        let forged =
            Credential::Token(PresentedToken::parse(&NewToken::generate().unwrap().token).unwrap());
        assert!(matches!(
            set.authorize(&[forged], Access::Read(b"k")),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(set.authorize(&[], Access::Open).is_ok());
        set.tokens.clear();
        assert!(matches!(
            set.authorize(&credentials, Access::Read(b"k")),
            Err(Refusal::Unauthenticated(_))
        ));
        set.enabled = false;
        assert!(
            set.authorize(&[], Access::Admin).is_ok(),
            "off: everything goes"
        );
    }

    #[test]
    fn the_root_token_and_certificate_users_resolve() {
        let mut set = AuthSet {
            enabled: true,
            ..Default::default()
        };
        set.tokens.insert(
            "root".into(),
            TokenRecord {
                id: "root".into(),
                name: "root".into(),
                grant: grant(Role::Admin, None),
                secret_sha256: root_token_sha256("a long operator secret"),
                created_ms: 0,
            },
        );
        set.users.insert(
            "ops".into(),
            UserRecord {
                name: "ops".into(),
                grant: grant(Role::Read, None),
            },
        );
        let root = Credential::Token(PresentedToken::parse("a long operator secret").unwrap());
        assert!(set.authorize(&[root], Access::Admin).is_ok());
        let wrong = Credential::Token(PresentedToken::parse("a long operator guess").unwrap());
        assert!(set.authorize(&[wrong], Access::Admin).is_err());
        let ops = Credential::User("ops".into());
        assert!(set
            .authorize(std::slice::from_ref(&ops), Access::Read(b"k"))
            .is_ok());
        assert!(matches!(
            set.authorize(&[ops], Access::Write(b"k")),
            Err(Refusal::Denied(_))
        ));
        assert!(matches!(
            set.authorize(&[Credential::User("eve".into())], Access::Read(b"k")),
            Err(Refusal::Unauthenticated(_))
        ));
    }

    #[test]
    fn a_prefix_bounds_keys_and_scans() {
        let (set, credentials) = set_with(grant(Role::Readwrite, Some("app/")));
        let ok = |access| set.authorize(&credentials, access).is_ok();
        assert!(ok(Access::Write(b"app/x")));
        assert!(!ok(Access::Write(b"apq")));
        assert!(!ok(Access::Read(b"other")));
        assert!(ok(Access::Scan {
            start: b"app/",
            end: b"app0"
        }));
        assert!(ok(Access::Scan {
            start: b"app/a",
            end: b"app/m"
        }));
        assert!(!ok(Access::Scan {
            start: b"app/",
            end: b""
        }));
        assert!(!ok(Access::Scan {
            start: b"app/",
            end: b"app1"
        }));
        assert!(!ok(Access::Scan {
            start: b"a",
            end: b"app0"
        }));
        assert!(grant(Role::Admin, Some("x")).check().is_err());
        assert!(grant(Role::Read, Some("")).check().is_err());
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
