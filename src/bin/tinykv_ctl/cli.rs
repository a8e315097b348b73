//! Command-line options of `tinykv-ctl`.
//!
//! One subcommand per admin endpoint, plus `auth` (the `/v1/auth` endpoints) and `certs`,
//! which makes certificates and asks no node. `--addr`, `--json`, `--token` and the TLS
//! options are global, so they may come before or after the subcommand. The node
//! defaults to `$TINYKV_ADDR`, else `127.0.0.1:8081` (the first node of `make run`); the
//! variables are read here rather than through clap's `env` feature, which the workspace
//! does not enable, and [`resolve_addr`], [`resolve_token`], [`resolve_tls`] and
//! [`node_url`] keep the choices pure functions for tests.
//!
//! `--token TOKEN` (else `$TINYKV_TOKEN`; a blank variable counts as unset) is sent as
//! `Authorization: Bearer TOKEN` with every request, for a cluster with authentication
//! on. The variable is the better place for it: a flag shows in the process list.
//!
//! TLS, named as curl names it: `--cacert FILE` (else `$TINYKV_CACERT`) is the CA that
//! signed the node's certificate, and switches to HTTPS: a bare `HOST:PORT` becomes
//! `https://HOST:PORT`, and the node's certificate must name that host. `--cert FILE` and
//! `--key FILE` (else `$TINYKV_CERT`, `$TINYKV_KEY`) are a client certificate, for a
//! cluster with `security.client_cert_auth`; they go together and need `--cacert`. An
//! `https://` address without `--cacert`, or an `http://` one with it, is refused rather
//! than guessed at. Wrong arguments make clap print usage and exit with status 2, and so
//! do options that do not go together ([`CtlError::Usage`]).

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use tinykv::security::ClientTlsFiles;

use crate::error::CtlError;

/// The node asked when neither `--addr` nor `$TINYKV_ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8081";

/// The environment variable giving the node to ask.
pub const ADDR_ENV: &str = "TINYKV_ADDR";

/// The environment variable giving the CA certificate when `--cacert` does not.
pub const CACERT_ENV: &str = "TINYKV_CACERT";

/// The environment variable giving the client certificate when `--cert` does not.
pub const CERT_ENV: &str = "TINYKV_CERT";

/// The environment variable giving the client key when `--key` does not.
pub const KEY_ENV: &str = "TINYKV_KEY";

/// The environment variable giving the API token when `--token` does not.
pub const TOKEN_ENV: &str = "TINYKV_TOKEN";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "tinykv-ctl",
    version,
    about = "Admin tool of TinyKV-rs: inspect the cluster, stores, regions and operators, \
             move regions around, and manage authentication"
)]
pub struct Cli {
    /// Address of the node to ask: HOST:PORT, http://HOST:PORT or https://HOST:PORT
    /// [default: $TINYKV_ADDR, else 127.0.0.1:8081]
    #[arg(long, global = true, value_name = "HOST:PORT", value_parser = parse_addr)]
    pub addr: Option<String>,
    /// Print the server's JSON answer (pretty-printed) instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// CA certificate (PEM) that signed the node's certificate; talk HTTPS
    /// [default: $TINYKV_CACERT]
    #[arg(long, global = true, value_name = "FILE", value_parser = parse_file)]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), for a cluster that requires one; needs --key and
    /// --cacert [default: $TINYKV_CERT]
    #[arg(long = "cert", global = true, value_name = "FILE", value_parser = parse_file)]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of --cert [default: $TINYKV_KEY]
    #[arg(long = "key", global = true, value_name = "FILE", value_parser = parse_file)]
    pub key_file: Option<PathBuf>,
    /// API token, sent as `Authorization: Bearer TOKEN`, for a cluster with
    /// authentication on (prefer the variable: a flag shows in the process list)
    /// [default: $TINYKV_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN", value_parser = parse_token)]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, one per admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// The PD's view of the cluster: settings, operator counts and every store
    Cluster,
    /// The stores of the asked node's address book, and whether it can reach them
    Stores,
    /// Change a store
    #[command(subcommand)]
    Store(StoreCommand),
    /// The regions the asked node holds a peer of (with --pd: every region of the cluster,
    /// as the placement driver knows them from their leaders)
    Regions {
        /// Ask the placement driver instead of the node
        #[arg(long)]
        pd: bool,
    },
    /// One region the asked node holds a peer of
    Region {
        /// The region's id
        id: u64,
    },
    /// The PD's operators in flight and recently ended
    Operators,
    /// Split a region at a key
    Split {
        /// The region to split
        region_id: u64,
        /// The split key, percent-encoded as the region tables show keys (`a%20b`)
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Add a peer of a region on a store
    AddPeer {
        /// The region to grow
        region_id: u64,
        /// The store to place the new peer on
        store_id: u64,
    },
    /// Remove a peer of a region
    RemovePeer {
        /// The region to shrink
        region_id: u64,
        /// The peer to remove (see `region <ID>`)
        peer_id: u64,
    },
    /// Make a peer the leader of its region (waits until it leads)
    TransferLeader {
        /// The region
        region_id: u64,
        /// The peer that should lead
        peer_id: u64,
    },
    /// Transactions: garbage collection's safe point, the locks of a key range
    #[command(subcommand)]
    Txn(TxnCommand),
    /// Authentication: switch it on or off, make and revoke tokens, give certificate
    /// users a role (needs an admin credential once it is on)
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Make a CA and the certificates it signs for nodes and users (asks no node)
    #[command(subcommand)]
    Certs(CertsCommand),
}

/// What `auth` does: one subcommand per `/v1/auth` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AuthCommand {
    /// Whether authentication is on, every token (never its secret) and certificate user
    Status,
    /// Switch authentication on for the whole cluster (an admin credential must exist)
    Enable,
    /// Switch authentication off for the whole cluster
    Disable,
    /// Make, list and revoke API tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Give certificate users (tinykv://user/NAME) a role, or take it away
    #[command(subcommand)]
    User(UserCommand),
}

/// What `auth token` does.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TokenCommand {
    /// Make a token; it is printed once and cannot be shown again
    Create {
        /// What the token is for (shown in listings)
        #[arg(long, value_name = "NAME")]
        name: String,
        /// What it may do: read (keys and scans), readwrite (also writes), admin
        /// (everything)
        #[arg(long, value_enum, value_name = "ROLE")]
        role: RoleArg,
        /// Limit it to the keys that begin with this (UTF-8) prefix (read and readwrite
        /// only)
        #[arg(long, value_name = "P", allow_hyphen_values = true)]
        prefix: Option<String>,
    },
    /// Every token: id, name, role, prefix and when it was made
    List,
    /// Revoke a token: every node refuses it within a heartbeat
    Revoke {
        /// The token's id (see `auth token list`; `root` for the root token)
        id: String,
    },
}

/// What `auth user` does.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum UserCommand {
    /// Give the user whose client certificate names tinykv://user/NAME a role (replacing
    /// any it had)
    Set {
        /// The user's name, as its certificate names it
        name: String,
        /// What it may do: read, readwrite or admin
        #[arg(long, value_enum, value_name = "ROLE")]
        role: RoleArg,
        /// Limit it to the keys that begin with this (UTF-8) prefix (read and readwrite
        /// only)
        #[arg(long, value_name = "P", allow_hyphen_values = true)]
        prefix: Option<String>,
    },
    /// Take a certificate user's role away
    Delete {
        /// The user's name
        name: String,
    },
}

/// A role, as `--role` takes it and the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Read keys and scan.
    Read,
    /// Also write and delete keys.
    Readwrite,
    /// Everything: the admin and authentication APIs too.
    Admin,
}

impl RoleArg {
    /// The role's name in the API: `read`, `readwrite` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleArg::Read => "read",
            RoleArg::Readwrite => "readwrite",
            RoleArg::Admin => "admin",
        }
    }
}

/// What `txn` shows.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TxnCommand {
    /// Garbage collection's safe point, and how old it is
    SafePoint,
    /// The locks of transactions in a key range (expired ones belong to coordinators that
    /// went away)
    Locks {
        /// First key, percent-encoded (default: the first)
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        start: String,
        /// Exclusive end key, percent-encoded (default: the last)
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        end: String,
        /// Most locks to show
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only locks of transactions started at or before this timestamp
        #[arg(long)]
        max_ts: Option<u64>,
    },
}

/// What `store` can do to a store.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum StoreCommand {
    /// Start draining a store: its regions move away, then it becomes Tombstone
    Offline {
        /// The store's id
        id: u64,
    },
    /// Move every leadership off a store before stopping it (a rolling restart): asks the
    /// store's own node, then waits until it leads no region
    DrainLeaders {
        /// The store's id
        id: u64,
        /// Give up after this many seconds (the store keeps draining)
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
        /// Start draining and return at once
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop draining a store's leaderships (a restarted store is not draining anyway)
    ResumeLeaders {
        /// The store's id
        id: u64,
    },
}

/// What `certs` makes. Every command writes PEM files into `--dir`: certificates as
/// `NAME.pem`, their private keys as `NAME.key` (mode 0600), and overwrites none
/// without `--force`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum CertsCommand {
    /// A new CA: DIR/ca.pem and DIR/ca.key (keep the key off the nodes)
    Ca {
        /// The directory to write into (created if missing)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Overwrite existing files
        #[arg(long)]
        force: bool,
    },
    /// A node's certificate, signed by DIR/ca.pem and DIR/ca.key: DIR/store-ID.pem and
    /// DIR/store-ID.key
    Node {
        /// The directory holding the CA, and to write into
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The store the node is (the certificate names tinykv://store/ID)
        #[arg(long = "store", value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
        store_id: u64,
        /// A DNS name or IP address clients and peers dial the node by, without a port;
        /// repeat for each
        #[arg(long = "host", value_name = "H", required = true)]
        hosts: Vec<String>,
        /// Days the certificate is valid
        #[arg(long, default_value_t = 365, value_parser = parse_days)]
        days: i64,
        /// Overwrite existing files
        #[arg(long)]
        force: bool,
    },
    /// A user's client certificate, signed by DIR/ca.pem and DIR/ca.key:
    /// DIR/user-NAME.pem and DIR/user-NAME.key
    Client {
        /// The directory holding the CA, and to write into
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The user (letters, digits, '.', '_', '-'); the certificate names
        /// tinykv://user/NAME
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Days the certificate is valid
        #[arg(long, default_value_t = 365, value_parser = parse_days)]
        days: i64,
        /// Overwrite existing files
        #[arg(long)]
        force: bool,
    },
    /// Everything a local cluster needs, making only what is missing: the CA, a node
    /// certificate for 127.0.0.1, localhost and ::1 per store, and user admin's
    Dev {
        /// The directory to write into (created if missing)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The stores, comma-separated (1,2,3)
        #[arg(
            long,
            value_name = "IDS",
            value_delimiter = ',',
            required = true,
            value_parser = clap::value_parser!(u64).range(1..)
        )]
        stores: Vec<u64>,
    },
}

/// TLS files as the flags, or the environment, name them, before they are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPaths {
    /// `--cacert` / `$TINYKV_CACERT`.
    pub cacert: Option<PathBuf>,
    /// `--cert` / `$TINYKV_CERT`.
    pub cert: Option<PathBuf>,
    /// `--key` / `$TINYKV_KEY`.
    pub key: Option<PathBuf>,
}

/// The node to ask and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    /// The address as given, for messages.
    pub addr: String,
    /// `http://host:port` or `https://host:port`, without a trailing slash.
    pub base_url: String,
    /// The TLS files, `None` for plain HTTP.
    pub tls: Option<ClientTlsFiles>,
    /// The API token to send, if any.
    pub token: Option<Token>,
}

/// An API token: its text, which `Debug` leaves out so that no log or panic shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token's text, to send.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Cli {
    /// The node to ask: `--addr`, else `$TINYKV_ADDR`, else [`DEFAULT_ADDR`].
    pub fn node_addr(&self) -> String {
        resolve_addr(
            self.addr.as_deref(),
            std::env::var(ADDR_ENV).ok().as_deref(),
        )
    }

    /// The TLS files the flags, else the environment, name ([`resolve_tls`]).
    pub fn tls_files(&self) -> Result<Option<ClientTlsFiles>, CtlError> {
        let flags = TlsPaths {
            cacert: self.cacert.clone(),
            cert: self.cert_file.clone(),
            key: self.key_file.clone(),
        };
        let env = |name| std::env::var_os(name).map(PathBuf::from);
        let env = TlsPaths {
            cacert: env(CACERT_ENV),
            cert: env(CERT_ENV),
            key: env(KEY_ENV),
        };
        resolve_tls(&flags, &env)
    }

    /// The API token: `--token`, else `$TINYKV_TOKEN` ([`resolve_token`]).
    pub fn api_token(&self) -> Result<Option<Token>, CtlError> {
        let env = std::env::var_os(TOKEN_ENV).map(|v| v.to_string_lossy().into_owned());
        resolve_token(self.token.as_deref(), env.as_deref())
    }

    /// The node to ask, its URL, and the TLS files and token to talk to it with.
    pub fn node_target(&self) -> Result<NodeTarget, CtlError> {
        let addr = self.node_addr();
        let tls = self.tls_files()?;
        let base_url = node_url(&addr, tls.is_some())?;
        Ok(NodeTarget {
            addr,
            base_url,
            tls,
            token: self.api_token()?,
        })
    }
}

/// The node to ask given the `--addr` flag and the environment variable: the flag wins,
/// then a non-blank variable, then [`DEFAULT_ADDR`].
pub fn resolve_addr(flag: Option<&str>, env: Option<&str>) -> String {
    flag.or(env.map(str::trim).filter(|addr| !addr.is_empty()))
        .unwrap_or(DEFAULT_ADDR)
        .to_string()
}

/// The API token given the `--token` flag and the environment variable: the flag wins
/// (clap has checked it), then a non-blank variable (trimmed); `None` without either. A
/// variable that cannot be sent in an HTTP header (a control character, say) is refused
/// rather than sent mangled.
pub fn resolve_token(flag: Option<&str>, env: Option<&str>) -> Result<Option<Token>, CtlError> {
    if let Some(flag) = flag {
        return Ok(Some(Token(flag.trim().to_string())));
    }
    let Some(env) = env.map(str::trim).filter(|token| !token.is_empty()) else {
        return Ok(None);
    };
    check_token(env)
        .map(|()| Some(Token(env.to_string())))
        .map_err(|problem| CtlError::Usage(format!("${TOKEN_ENV}: {problem}")))
}

/// Checks a token's text: printable ASCII without spaces, as tokens are (a generated one
/// is `tkv_<id>_<secret>`; a root token is whatever the operator chose, so spaces inside
/// it are allowed), and something that fits an HTTP header.
fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(format!("the token is longer than {MAX_TOKEN_LEN} bytes"));
    }
    if !token.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(
            "the token has a character an HTTP header cannot carry (control or non-ASCII)".into(),
        );
    }
    Ok(())
}

/// The longest token the nodes read (longer ones are refused as no credential).
const MAX_TOKEN_LEN: usize = 1024;

/// Checks a `--token` value ([`check_token`]), trimmed.
fn parse_token(raw: &str) -> Result<String, String> {
    let token = raw.trim();
    check_token(token)?;
    Ok(token.to_string())
}

/// The TLS files given the flags and the environment variables: each flag wins over its
/// variable, and a blank variable counts as unset. `None` without a CA (plain HTTP).
/// `--cert` and `--key` go together, and need `--cacert`: a client certificate is only
/// ever sent over TLS.
pub fn resolve_tls(flags: &TlsPaths, env: &TlsPaths) -> Result<Option<ClientTlsFiles>, CtlError> {
    fn pick(flag: &Option<PathBuf>, env: &Option<PathBuf>) -> Option<PathBuf> {
        let env = env
            .as_ref()
            .filter(|path| !path.as_os_str().to_string_lossy().trim().is_empty());
        flag.as_ref().or(env).cloned()
    }
    let cacert = pick(&flags.cacert, &env.cacert);
    let cert = pick(&flags.cert, &env.cert);
    let key = pick(&flags.key, &env.key);
    let cert_and_key = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(CtlError::Usage(format!(
                "--cert and --key (or ${CERT_ENV} and ${KEY_ENV}) go together: give the \
                 client certificate and its key, or neither"
            )))
        }
    };
    match (cacert, cert_and_key) {
        (Some(ca), cert_and_key) => Ok(Some(ClientTlsFiles { ca, cert_and_key })),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(CtlError::Usage(format!(
            "--cert and --key need --cacert FILE (or ${CACERT_ENV}): the CA that signed \
             the node's certificate"
        ))),
    }
}

/// The URL prefix of the node at `addr` (`HOST:PORT`, `http://…` or `https://…`), without
/// a trailing slash: a bare address gets `https://` with TLS, `http://` without. An
/// `https://` URL without TLS, an `http://` one with it, or another scheme is refused.
pub fn node_url(addr: &str, tls: bool) -> Result<String, CtlError> {
    let addr = addr.trim().trim_end_matches('/');
    if let Some(rest) = addr.strip_prefix("https://") {
        if !tls {
            return Err(CtlError::Usage(format!(
                "{addr} is an https:// address: give --cacert FILE (or ${CACERT_ENV}), the CA \
                 that signed the node's certificate"
            )));
        }
        return Ok(format!("https://{rest}"));
    }
    if addr.starts_with("http://") {
        if tls {
            return Err(CtlError::Usage(format!(
                "{addr} is a plain http:// address, but --cacert (or ${CACERT_ENV}) asks for \
                 TLS: give https://… or HOST:PORT, or drop the CA"
            )));
        }
        return Ok(addr.to_string());
    }
    if let Some((scheme, _)) = addr.split_once("://") {
        return Err(CtlError::Usage(format!(
            "{addr}: unknown scheme {scheme:?}, give HOST:PORT, http:// or https://"
        )));
    }
    let scheme = if tls { "https" } else { "http" };
    Ok(format!("{scheme}://{addr}"))
}

/// Checks an `--addr` value: `HOST:PORT`, or an `http://` or `https://` URL (whether
/// the scheme fits the TLS options is [`node_url`]'s to say).
fn parse_addr(raw: &str) -> Result<String, String> {
    let addr = raw.trim();
    if addr.is_empty() || addr.contains(char::is_whitespace) {
        return Err(format!("{raw:?} is not a HOST:PORT address"));
    }
    if let Some((scheme, _)) = addr.split_once("://") {
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "unknown scheme {scheme:?}: give HOST:PORT, an http:// or an https:// URL"
            ));
        }
    }
    Ok(addr.to_string())
}

/// Checks a file option: a non-empty path.
fn parse_file(raw: &str) -> Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("the file name is empty".into());
    }
    Ok(Path::new(raw).to_path_buf())
}

/// Checks `--days`: from 1 to 3650, the CA's own ten years.
fn parse_days(raw: &str) -> Result<i64, String> {
    match raw.trim().parse::<i64>() {
        Ok(days) if (1..=3650).contains(&days) => Ok(days),
        _ => Err(format!("{raw:?} is not a number of days from 1 to 3650")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["tinykv-ctl"], args].concat())
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let cli = parse(&["--addr", "10.0.0.2:8082", "transfer-leader", "5", "7"]).unwrap();
        assert_eq!(cli.addr.as_deref(), Some("10.0.0.2:8082"));
        assert!(!cli.json);
        assert_eq!(
            cli.command,
            Command::TransferLeader {
                region_id: 5,
                peer_id: 7
            }
        );
        let cli = parse(&["store", "offline", "3", "--json"]).unwrap();
        assert!(cli.json && cli.addr.is_none());
        assert_eq!(cli.command, Command::Store(StoreCommand::Offline { id: 3 }));
    }

    #[test]
    fn split_keys_may_start_with_a_dash() {
        let cli = parse(&["split", "1", "-a%20b"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Split {
                region_id: 1,
                key: "-a%20b".into()
            }
        );
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        let missing = parse(&["add-peer", "5"]).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::MissingRequiredArgument);
        assert!(missing.to_string().contains("<STORE_ID>"), "{missing}");
        assert_eq!(missing.exit_code(), 2);
        let not_a_number = parse(&["region", "five"]).unwrap_err();
        assert_eq!(not_a_number.kind(), ErrorKind::ValueValidation);
        assert!(parse(&[]).is_err());
        assert!(parse(&["--addr", "ftp://h:1", "cluster"]).is_err());
        assert!(parse(&["--cacert", "", "cluster"]).is_err());
        assert!(parse(&["certs", "node", "--dir", "d", "--store", "1"]).is_err());
        assert!(parse(&["certs", "node", "--dir", "d", "--store", "0", "--host", "h"]).is_err());
        assert!(parse(&["certs", "client", "--dir", "d", "--user", "u", "--days", "0"]).is_err());
        assert!(parse(&["certs", "dev", "--dir", "d"]).is_err());
    }

    #[test]
    fn tls_options_are_global_and_the_split_key_stays_positional() {
        let cli = parse(&[
            "--cacert", "ca.pem", "split", "1", "k", "--cert", "u.pem", "--key", "u.key",
        ])
        .unwrap();
        assert_eq!(cli.cacert, Some(PathBuf::from("ca.pem")));
        assert_eq!(cli.cert_file, Some(PathBuf::from("u.pem")));
        assert_eq!(cli.key_file, Some(PathBuf::from("u.key")));
        assert_eq!(
            cli.command,
            Command::Split {
                region_id: 1,
                key: "k".into()
            }
        );
        let cli = parse(&["--addr", "https://node1:8080", "cluster"]).unwrap();
        assert_eq!(cli.addr.as_deref(), Some("https://node1:8080"));
    }

    #[test]
    fn certs_commands_parse() {
        let cli = parse(&[
            "certs", "node", "--dir", "certs", "--store", "2", "--host", "node2", "--host",
            "10.0.0.2",
        ])
        .unwrap();
        assert_eq!(
            cli.command,
            Command::Certs(CertsCommand::Node {
                dir: "certs".into(),
                store_id: 2,
                hosts: vec!["node2".into(), "10.0.0.2".into()],
                days: 365,
                force: false,
            })
        );
        let cli = parse(&["certs", "dev", "--dir", "c", "--stores", "1,2,3"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Certs(CertsCommand::Dev {
                dir: "c".into(),
                stores: vec![1, 2, 3],
            })
        );
        let cli = parse(&["certs", "ca", "--dir", "c", "--force"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Certs(CertsCommand::Ca {
                dir: "c".into(),
                force: true
            })
        );
    }

    fn paths(cacert: Option<&str>, cert: Option<&str>, key: Option<&str>) -> TlsPaths {
        TlsPaths {
            cacert: cacert.map(PathBuf::from),
            cert: cert.map(PathBuf::from),
            key: key.map(PathBuf::from),
        }
    }

    #[test]
    fn tls_flags_win_over_the_environment() {
        let none = TlsPaths::default();
        assert_eq!(resolve_tls(&none, &none).unwrap(), None);
        let env = paths(Some("env-ca.pem"), Some("env.pem"), Some("env.key"));
        let tls = resolve_tls(&paths(Some("ca.pem"), None, None), &env)
            .unwrap()
            .unwrap();
        assert_eq!(tls.ca, PathBuf::from("ca.pem"));
        assert_eq!(
            tls.cert_and_key,
            Some((PathBuf::from("env.pem"), PathBuf::from("env.key")))
        );
        let tls = resolve_tls(&none, &paths(Some("env-ca.pem"), None, None))
            .unwrap()
            .unwrap();
        assert_eq!(tls.ca, PathBuf::from("env-ca.pem"));
        assert_eq!(tls.cert_and_key, None);
        // A blank variable is unset.
        assert_eq!(
            resolve_tls(&none, &paths(Some(" "), None, None)).unwrap(),
            None
        );
    }

    #[test]
    fn cert_and_key_go_together_and_need_a_ca() {
        let none = TlsPaths::default();
        for half in [
            paths(Some("ca"), Some("u.pem"), None),
            paths(Some("ca"), None, Some("u.key")),
        ] {
            let err = resolve_tls(&half, &none).unwrap_err();
            assert!(matches!(err, CtlError::Usage(_)), "{err}");
            assert!(err.to_string().contains("--cert and --key"), "{err}");
        }
        let err = resolve_tls(&none, &paths(None, Some("u.pem"), None)).unwrap_err();
        assert!(err.to_string().contains("TINYKV_KEY"), "{err}");
        let err = resolve_tls(&paths(None, Some("u.pem"), Some("u.key")), &none).unwrap_err();
        assert!(err.to_string().contains("need --cacert"), "{err}");
        assert_eq!(err.exit_status(), 2);
    }

    #[test]
    fn addresses_get_the_scheme_tls_asks_for() {
        assert_eq!(
            node_url("127.0.0.1:8081", false).unwrap(),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            node_url("127.0.0.1:8081", true).unwrap(),
            "https://127.0.0.1:8081"
        );
        assert_eq!(
            node_url("http://node-2:8082/", false).unwrap(),
            "http://node-2:8082"
        );
        assert_eq!(
            node_url("https://node-2:8082/", true).unwrap(),
            "https://node-2:8082"
        );
        let err = node_url("https://node-2:8082", false).unwrap_err();
        assert!(matches!(err, CtlError::Usage(_)));
        assert!(err.to_string().contains("--cacert"), "{err}");
        let err = node_url("http://node-2:8082", true).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
        assert!(node_url("ftp://node-2:8082", false).is_err());
    }

    #[test]
    fn the_token_flag_wins_over_the_environment_and_blank_is_unset() {
        let secret = |token: Option<Token>| token.map(|t| t.secret().to_string());
        let token = resolve_token(Some("tkv_flag"), Some("tkv_env")).unwrap();
        assert_eq!(secret(token), Some("tkv_flag".into()));
        let token = resolve_token(None, Some("  tkv_env \n")).unwrap();
        assert_eq!(secret(token), Some("tkv_env".into()));
        assert_eq!(resolve_token(None, Some(" \t ")).unwrap(), None);
        assert_eq!(resolve_token(None, None).unwrap(), None);
        // A root token is any string the operator chose, spaces included.
        let token = resolve_token(None, Some("correct horse battery staple")).unwrap();
        assert_eq!(secret(token), Some("correct horse battery staple".into()));
        let err = resolve_token(None, Some("tkv_a\u{7}b")).unwrap_err();
        assert!(matches!(err, CtlError::Usage(_)), "{err}");
        assert!(err.to_string().starts_with("$TINYKV_TOKEN: "), "{err}");
        assert!(resolve_token(None, Some("pässwort-pässwort")).is_err());
    }

    #[test]
    fn tokens_are_global_checked_and_never_debug_printed() {
        let cli = parse(&["auth", "status", "--token", " tkv_abc "]).unwrap();
        assert_eq!(cli.token.as_deref(), Some("tkv_abc"));
        assert_eq!(cli.command, Command::Auth(AuthCommand::Status));
        let cli = parse(&["--token", "tkv_abc", "cluster"]).unwrap();
        assert_eq!(cli.token.as_deref(), Some("tkv_abc"));
        assert!(parse(&["--token", " ", "cluster"]).is_err());
        assert!(parse(&["--token", "a\nb", "cluster"]).is_err());
        assert!(parse(&["--token", &"x".repeat(1025), "cluster"]).is_err());
        let shown = format!("{:?}", resolve_token(Some("tkv_secret"), None).unwrap());
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn auth_commands_parse() {
        let words = "auth token create --name app --role readwrite --prefix app/";
        let cli = parse(&words.split(' ').collect::<Vec<_>>()).unwrap();
        assert_eq!(
            cli.command,
            Command::Auth(AuthCommand::Token(TokenCommand::Create {
                name: "app".into(),
                role: RoleArg::Readwrite,
                prefix: Some("app/".into()),
            }))
        );
        let cli = parse(&["auth", "token", "revoke", "0123456789abcdef", "--json"]).unwrap();
        assert!(cli.json);
        assert_eq!(
            cli.command,
            Command::Auth(AuthCommand::Token(TokenCommand::Revoke {
                id: "0123456789abcdef".into()
            }))
        );
        let cli = parse(&[
            "auth", "user", "set", "ops", "--role", "read", "--prefix", "-x",
        ]);
        assert_eq!(
            cli.unwrap().command,
            Command::Auth(AuthCommand::User(UserCommand::Set {
                name: "ops".into(),
                role: RoleArg::Read,
                prefix: Some("-x".into()),
            }))
        );
        for (args, expected) in [
            (&["auth", "enable"][..], AuthCommand::Enable),
            (&["auth", "disable"], AuthCommand::Disable),
            (
                &["auth", "token", "list"],
                AuthCommand::Token(TokenCommand::List),
            ),
            (
                &["auth", "user", "delete", "ops"],
                AuthCommand::User(UserCommand::Delete { name: "ops".into() }),
            ),
        ] {
            assert_eq!(parse(args).unwrap().command, Command::Auth(expected));
        }
        let bad_role = parse(&["auth", "token", "create", "--name", "a", "--role", "root"]);
        let err = bad_role.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert!(err.to_string().contains("readwrite"), "{err}");
        assert!(parse(&["auth", "token", "create", "--role", "read"]).is_err());
        assert!(parse(&["auth", "user", "set", "ops"]).is_err());
        assert!(parse(&["auth", "token", "revoke"]).is_err());
    }

    #[test]
    fn role_names_are_the_servers() {
        for role in RoleArg::value_variants() {
            let server: tinykv::auth::Role = role.as_str().parse().unwrap();
            assert_eq!(serde_json::to_value(server).unwrap(), role.as_str());
            let possible = role.to_possible_value().unwrap();
            assert_eq!(possible.get_name(), role.as_str());
        }
    }

    #[test]
    fn the_flag_wins_over_the_environment_over_the_default() {
        assert_eq!(resolve_addr(Some("a:1"), Some("b:2")), "a:1");
        assert_eq!(resolve_addr(None, Some(" b:2 ")), "b:2");
        assert_eq!(resolve_addr(None, Some("  ")), DEFAULT_ADDR);
        assert_eq!(resolve_addr(None, None), "127.0.0.1:8081");
    }
}
