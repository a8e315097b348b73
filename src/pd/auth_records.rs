//! The placement driver's side of authentication: how a change to the cluster's
//! [`AuthSet`] is checked and made.
//!
//! The whole set is one record in the meta region (`\xFFpd/auth`, see [`super::meta`]),
//! so a change is one raft write: the driver computes the next set here, writes it, and
//! only then takes it as its own. Every change raises the version, which is how nodes
//! notice it (their heartbeats report the version they enforce).
//!
//! Rules the driver keeps, whatever a caller asks:
//!
//! - authentication cannot be switched on while no admin credential exists (a token or
//!   a certificate user with the admin role), and the last admin credential cannot be
//!   removed while it is on: a cluster never locks everyone out;
//! - grants are valid ([`Grant::check`]), token ids unique, names and counts bounded;
//! - the root token of `security.root_token` is recorded the first time a driver leads
//!   with one configured ([`bootstrap_root`]); a damaged record is replaced by a closed
//!   one ([`closed_after_damage`]): on, with the root token only.

use crate::auth::token::ROOT_TOKEN_ID;
use crate::auth::{AuthSet, Grant, Role, TokenRecord};
use crate::error::{Error, Result};

use super::wire::AuthChange;

/// Most tokens the cluster keeps.
pub const MAX_TOKENS: usize = 10_000;
/// Most certificate users the cluster keeps.
pub const MAX_USERS: usize = 10_000;
/// Longest token or user name.
pub const MAX_NAME_LEN: usize = 128;

/// The set after `change`, or `None` if it changes nothing ([`AuthChange::Show`]).
pub fn apply(set: &AuthSet, change: AuthChange) -> Result<Option<AuthSet>> {
    let mut next = set.clone();
    match change {
        AuthChange::Show => return Ok(None),
        AuthChange::Enable => {
            if !has_admin(&next) {
                return Err(conflict(
                    "no_admin_credential",
                    "authentication cannot be switched on before an admin credential exists: \
                     set security.root_token on the nodes, or create an admin token or user \
                     first",
                ));
            }
            next.enabled = true;
        }
        AuthChange::Disable => next.enabled = false,
        AuthChange::CreateToken { record } => {
            check_name(&record.name)?;
            record.grant.check().map_err(invalid)?;
            if record.id == ROOT_TOKEN_ID || next.tokens.contains_key(&record.id) {
                return Err(conflict("token_exists", "a token with this id exists"));
            }
            if next.tokens.len() >= MAX_TOKENS {
                return Err(conflict(
                    "too_many_tokens",
                    format!("the cluster keeps at most {MAX_TOKENS} tokens; revoke some"),
                ));
            }
            next.tokens.insert(record.id.clone(), record);
        }
        AuthChange::RevokeToken { id } => {
            if next.tokens.remove(&id).is_none() {
                return Err(Error::NoSuchResource {
                    code: "token_not_found",
                    message: format!("no token has id {id:?}"),
                });
            }
        }
        AuthChange::SetUser { record } => {
            check_user_name(&record.name)?;
            record.grant.check().map_err(invalid)?;
            if !next.users.contains_key(&record.name) && next.users.len() >= MAX_USERS {
                return Err(conflict(
                    "too_many_users",
                    format!("the cluster keeps at most {MAX_USERS} certificate users"),
                ));
            }
            next.users.insert(record.name.clone(), record);
        }
        AuthChange::DeleteUser { name } => {
            if next.users.remove(&name).is_none() {
                return Err(Error::NoSuchResource {
                    code: "user_not_found",
                    message: format!("no certificate user is named {name:?}"),
                });
            }
        }
    }
    if next.enabled && !has_admin(&next) {
        return Err(conflict(
            "last_admin_credential",
            "this would remove the last admin credential while authentication is on; \
             create another admin credential first, or switch authentication off",
        ));
    }
    next.version = set.version + 1;
    Ok(Some(next))
}

/// The set with the root token (SHA-256 `root_sha256`) recorded, if one never was; `None`
/// if it was (even if it has been revoked since), or there is none to record.
pub fn bootstrap_root(set: &AuthSet, root_sha256: Option<&str>, now_ms: u64) -> Option<AuthSet> {
    let sha = root_sha256?;
    if set.root_recorded || set.tokens.contains_key(ROOT_TOKEN_ID) {
        return None;
    }
    let mut next = set.clone();
    next.root_recorded = true;
    next.tokens
        .insert(ROOT_TOKEN_ID.to_string(), root_record(sha, now_ms));
    next.version = set.version + 1;
    Some(next)
}

/// What replaces a damaged record: authentication on, the root token (if configured) its
/// only credential, a version above any a node can hold (so every node takes it).
pub fn closed_after_damage(root_sha256: Option<&str>, now_ms: u64) -> AuthSet {
    let mut set = AuthSet {
        enabled: true,
        version: now_ms.max(1) << 16,
        root_recorded: true,
        ..Default::default()
    };
    if let Some(sha) = root_sha256 {
        set.tokens
            .insert(ROOT_TOKEN_ID.to_string(), root_record(sha, now_ms));
    }
    set
}

fn root_record(sha: &str, now_ms: u64) -> TokenRecord {
    TokenRecord {
        id: ROOT_TOKEN_ID.to_string(),
        name: "root (security.root_token)".to_string(),
        grant: Grant {
            role: Role::Admin,
            prefix: None,
        },
        secret_sha256: sha.to_string(),
        created_ms: now_ms,
    }
}

fn has_admin(set: &AuthSet) -> bool {
    set.tokens.values().any(|t| t.grant.role == Role::Admin)
        || set.users.values().any(|u| u.grant.role == Role::Admin)
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "a name has 1 to {MAX_NAME_LEN} bytes and no control characters"
        )));
    }
    Ok(())
}

fn check_user_name(name: &str) -> Result<()> {
    crate::security::identity::check_user_name(name).map_err(|why| {
        invalid(format!(
            "{why} (as in its certificate's tinykv://user/<name>)"
        ))
    })
}

fn invalid(message: impl Into<String>) -> Error {
    Error::bad_request("invalid_grant", message.into())
}

fn conflict(code: &'static str, message: impl Into<String>) -> Error {
    Error::Conflict {
        code,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserRecord;

    fn token(id: &str, role: Role) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            name: format!("token {id}"),
            grant: Grant { role, prefix: None },
            secret_sha256: "00".into(),
            created_ms: 1,
        }
    }

    #[test]
    fn the_cluster_never_locks_everyone_out() {
        let empty = AuthSet::default();
        let err = apply(&empty, AuthChange::Enable).unwrap_err();
        assert_eq!(err.code(), "no_admin_credential");
        let with_reader = apply(
            &empty,
            AuthChange::CreateToken {
                record: token("aa", Role::Read),
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(with_reader.version, 1);
        assert!(apply(&with_reader, AuthChange::Enable).is_err());
        let with_admin = apply(
            &with_reader,
            AuthChange::SetUser {
                record: UserRecord {
                    name: "ops".into(),
                    grant: Grant {
                        role: Role::Admin,
                        prefix: None,
                    },
                },
            },
        )
        .unwrap()
        .unwrap();
        let on = apply(&with_admin, AuthChange::Enable).unwrap().unwrap();
        assert!(on.enabled);
        assert_eq!(on.version, 3);
        let err = apply(&on, AuthChange::DeleteUser { name: "ops".into() }).unwrap_err();
        assert_eq!(err.code(), "last_admin_credential");
        let off = apply(&on, AuthChange::Disable).unwrap().unwrap();
        assert!(apply(&off, AuthChange::DeleteUser { name: "ops".into() }).is_ok());
        assert_eq!(apply(&on, AuthChange::Show).unwrap(), None);
    }

    #[test]
    fn bad_changes_are_refused() {
        let set = AuthSet::default();
        let mut bad = token("bb", Role::Admin);
        bad.grant.prefix = Some("x".into());
        assert!(apply(&set, AuthChange::CreateToken { record: bad }).is_err());
        assert!(apply(
            &set,
            AuthChange::CreateToken {
                record: token("root", Role::Read)
            }
        )
        .is_err());
        assert_eq!(
            apply(&set, AuthChange::RevokeToken { id: "cc".into() })
                .unwrap_err()
                .code(),
            "token_not_found"
        );
        let user = |name: &str| AuthChange::SetUser {
            record: UserRecord {
                name: name.into(),
                grant: Grant {
                    role: Role::Read,
                    prefix: None,
                },
            },
        };
        assert!(apply(&set, user("a b")).is_err());
        assert!(apply(&set, user("")).is_err());
        assert!(apply(&set, user("ops.team-1")).is_ok());
    }

    #[test]
    fn the_root_token_is_recorded_once_and_damage_closes_the_cluster() {
        let set = AuthSet::default();
        assert_eq!(bootstrap_root(&set, None, 5), None);
        let rooted = bootstrap_root(&set, Some("abc"), 5).unwrap();
        assert_eq!(rooted.tokens["root"].secret_sha256, "abc");
        assert_eq!(rooted.version, 1);
        assert_eq!(bootstrap_root(&rooted, Some("def"), 6), None, "only once");
        let mut revoked = rooted.clone();
        revoked.tokens.clear();
        assert_eq!(
            bootstrap_root(&revoked, Some("abc"), 7),
            None,
            "revoked for good"
        );
        let closed = closed_after_damage(Some("abc"), 1_000);
        assert!(closed.enabled && closed.version > rooted.version);
        assert_eq!(closed.tokens.len(), 1);
    }
}
