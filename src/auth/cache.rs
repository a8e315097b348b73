//! A node's copy of the cluster's authentication state, which it enforces.
//!
//! The placement driver keeps the authoritative [`AuthSet`] in the meta region; every
//! node holds a copy here and checks every client request against it, without asking
//! anyone. The copy is refreshed by the placement driver's heartbeat answers: a node
//! reports the version it has, and the answer carries the whole set when the driver's is
//! newer, so a change (a revoked token, auth switched on) reaches every node within one
//! heartbeat interval. A node that made a change through the admin API takes the new set
//! from the driver's answer at once.
//!
//! The copy is also kept in `<data_dir>/AUTH` (written to a temporary file, fsynced and
//! renamed), so that a node restarting while auth is on enforces it from its first
//! request, not from its first heartbeat. It holds digests of token secrets, never the
//! secrets. A node without the file is either the first start of a new cluster (auth
//! off: there is nothing to enforce yet) or a node that just joined, which got the set
//! with its store id.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::policy::AuthSet;
use crate::error::{Error, Result};

/// Name of the file in a data directory.
pub const AUTH_FILE: &str = "AUTH";

/// A node's copy of the authentication state; see the module documentation.
pub struct AuthCache {
    current: RwLock<Arc<AuthSet>>,
    /// Where the copy is kept, if anywhere.
    file: Option<PathBuf>,
}

impl AuthCache {
    /// The copy kept in `data_dir` (auth off, version 0, if there is none yet). A file
    /// that does not read is an error: a node must not start open when it was closed.
    pub fn open(data_dir: &Path) -> Result<AuthCache> {
        let file = data_dir.join(AUTH_FILE);
        let set = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Io(format!(
                    "{} is damaged ({e}); it holds the cluster's authentication state: \
                     restore it or delete it (the node then learns the state from the \
                     placement driver, and enforces nothing until it has)",
                    file.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuthSet::default(),
            Err(e) => return Err(Error::Io(format!("cannot read {}: {e}", file.display()))),
        };
        Ok(AuthCache {
            current: RwLock::new(Arc::new(set)),
            file: Some(file),
        })
    }

    /// A copy kept only in memory, starting as `set` (for tests).
    pub fn in_memory(set: AuthSet) -> AuthCache {
        AuthCache {
            current: RwLock::new(Arc::new(set)),
            file: None,
        }
    }

    /// The state in force.
    pub fn current(&self) -> Arc<AuthSet> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The version of the state in force.
    pub fn version(&self) -> u64 {
        self.current().version
    }

    /// Takes `set` if it is newer than the state in force; returns whether it did.
    pub fn update(&self, set: AuthSet) -> bool {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if set.version <= current.version {
            return false;
        }
        if let Some(file) = &self.file {
            if let Err(e) = write_durably(file, &set) {
                tracing::warn!(
                    file = %file.display(),
                    error = %e,
                    "cannot keep the authentication state on disk; enforcing it anyway"
                );
            }
        }
        tracing::info!(
            version = set.version,
            enabled = set.enabled,
            tokens = set.tokens.len(),
            users = set.users.len(),
            "authentication state updated"
        );
        *current = Arc::new(set);
        true
    }
}

/// Writes `set` to `file` through a temporary file, fsynced and renamed.
fn write_durably(file: &Path, set: &AuthSet) -> std::io::Result<()> {
    let temporary = file.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(set).map_err(std::io::Error::other)?;
    let mut out = std::fs::File::create(&temporary)?;
    out.write_all(&bytes)?;
    out.sync_all()?;
    std::fs::rename(&temporary, file)?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_state_is_kept_across_restarts_and_an_older_one_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AuthCache::open(dir.path()).unwrap();
        assert_eq!(*cache.current(), AuthSet::default());
        let on = AuthSet {
            enabled: true,
            version: 3,
            ..Default::default()
        };
        assert!(cache.update(on.clone()));
        assert!(!cache.update(AuthSet {
            version: 2,
            ..Default::default()
        }));
        assert!(
            !cache.update(on.clone()),
            "the same version changes nothing"
        );
        let reopened = AuthCache::open(dir.path()).unwrap();
        assert_eq!(*reopened.current(), on);
        std::fs::write(dir.path().join(AUTH_FILE), "{not json").unwrap();
        assert!(
            AuthCache::open(dir.path()).is_err(),
            "never start open by accident"
        );
    }
}
