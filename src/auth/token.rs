//! API tokens: how they look, how they are made, and how a presented one is checked.
//!
//! A token is `tkv_<id>_<secret>`: a 16-hex-digit public id, which names the token in
//! listings and revocations, and a 32-byte random secret (64 hex digits), which only the
//! client ever holds. The cluster keeps the SHA-256 of the secret, never the secret:
//! whoever reads the meta region, the node's `AUTH` file or a backup learns which tokens
//! exist, not how to use one. The root token, set by the operator in
//! `security.root_token`, is any string of at least [`MIN_ROOT_TOKEN_LEN`] characters;
//! it is kept under the id [`ROOT_TOKEN_ID`] as the SHA-256 of the whole string.
//!
//! A secret is 256 bits from the operating system's generator, so a digest compared in
//! the open reveals nothing worth a timing attack: finding a preimage of even one byte of
//! it is the whole problem.

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

/// The id the root token is kept under.
pub const ROOT_TOKEN_ID: &str = "root";

/// The shortest root token a node accepts in its config.
pub const MIN_ROOT_TOKEN_LEN: usize = 16;

const PREFIX: &str = "tkv_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// A token presented by a client, split into the id it claims and the digest of its
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedToken {
    /// The id of the token it claims to be.
    pub id: String,
    /// SHA-256 of its secret (of the whole string, for the root token), hex.
    pub secret_sha256: String,
}

impl PresentedToken {
    /// Reads a bearer token: `tkv_<id>_<secret>`, or anything else as a root token
    /// candidate. `None` for an empty or absurdly long string.
    pub fn parse(text: &str) -> Option<PresentedToken> {
        let text = text.trim();
        if text.is_empty() || text.len() > 1024 {
            return None;
        }
        let structured = text.strip_prefix(PREFIX).and_then(|rest| {
            let (id, secret) = rest.split_once('_')?;
            let hex =
                |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
            (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then(|| PresentedToken {
                id: id.to_ascii_lowercase(),
                secret_sha256: sha256_hex(secret.to_ascii_lowercase().as_bytes()),
            })
        });
        Some(structured.unwrap_or_else(|| PresentedToken {
            id: ROOT_TOKEN_ID.to_string(),
            secret_sha256: sha256_hex(text.as_bytes()),
        }))
    }
}

/// A freshly made token: the string to hand the client (once) and what the cluster keeps.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// `tkv_<id>_<secret>`: shown to the client once, kept nowhere.
    pub token: String,
    /// Its public id.
    pub id: String,
    /// SHA-256 of its secret, hex.
    pub secret_sha256: String,
}

impl NewToken {
    /// A new random token; `Err` only if the operating system's generator fails.
    pub fn generate() -> Result<NewToken, String> {
        let random = SystemRandom::new();
        let mut id = [0u8; ID_HEX / 2];
        let mut secret = [0u8; SECRET_HEX / 2];
        random
            .fill(&mut id)
            .and_then(|()| random.fill(&mut secret))
            .map_err(|_| "the system's random number generator failed".to_string())?;
        let (id, secret) = (hex(&id), hex(&secret));
        Ok(NewToken {
            token: format!("{PREFIX}{id}_{secret}"),
            secret_sha256: sha256_hex(secret.as_bytes()),
            id,
        })
    }
}

/// SHA-256 of the root token `text`, hex: what the cluster keeps of it.
pub fn root_token_sha256(text: &str) -> String {
    sha256_hex(text.trim().as_bytes())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest(&SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_reads_back_as_its_id_and_digest() {
        let made = NewToken::generate().unwrap();
        assert!(made.token.starts_with("tkv_"));
        assert_eq!(made.token.len(), 4 + 16 + 1 + 64);
        let presented = PresentedToken::parse(&made.token).unwrap();
        assert_eq!(presented.id, made.id);
        assert_eq!(presented.secret_sha256, made.secret_sha256);
        assert!(
            !made.secret_sha256.contains(&made.token[21..]),
            "the secret is not kept"
        );
        let other = NewToken::generate().unwrap();
        assert_ne!(other.id, made.id);
    }

    #[test]
    fn anything_else_is_a_root_token_candidate() {
        let root = PresentedToken::parse("  correct horse battery staple ").unwrap();
        assert_eq!(root.id, ROOT_TOKEN_ID);
        assert_eq!(
            root.secret_sha256,
            root_token_sha256("correct horse battery staple")
        );
        // A token-shaped string with a wrong length is not a token.
        let short = PresentedToken::parse("tkv_0123_abcd").unwrap();
        assert_eq!(short.id, ROOT_TOKEN_ID);
        assert!(PresentedToken::parse("").is_none());
        assert!(PresentedToken::parse(&"x".repeat(2000)).is_none());
    }
}
