//! Command-line options of `tinykv-ctl`.
//!
//! One subcommand per admin endpoint; `--addr` and `--json` are global, so they may come
//! before or after it. The node defaults to `$TINYKV_ADDR`, else `127.0.0.1:8081` (the
//! first node of `make run`); the variable is read here rather than through clap's `env`
//! feature, which the workspace does not enable, and [`resolve_addr`] keeps the choice a
//! pure function for tests. Wrong arguments make clap print usage and exit with status 2.

use clap::{Parser, Subcommand};

/// The node asked when neither `--addr` nor `$TINYKV_ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8081";

/// The environment variable giving the node to ask.
pub const ADDR_ENV: &str = "TINYKV_ADDR";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "tinykv-ctl",
    version,
    about = "Admin tool of TinyKV-rs: inspect the cluster, stores, regions and operators, \
             and move regions around"
)]
pub struct Cli {
    /// HTTP address of the node to ask [default: $TINYKV_ADDR, else 127.0.0.1:8081]
    #[arg(long, global = true, value_name = "HOST:PORT", value_parser = parse_addr)]
    pub addr: Option<String>,
    /// Print the server's JSON answer (pretty-printed) instead of tables
    #[arg(long, global = true)]
    pub json: bool,
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
}

/// What `store` can do to a store.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum StoreCommand {
    /// Start draining a store: its regions move away, then it becomes Tombstone
    Offline {
        /// The store's id
        id: u64,
    },
}

impl Cli {
    /// The node to ask: `--addr`, else `$TINYKV_ADDR`, else [`DEFAULT_ADDR`].
    pub fn node_addr(&self) -> String {
        resolve_addr(
            self.addr.as_deref(),
            std::env::var(ADDR_ENV).ok().as_deref(),
        )
    }
}

/// The node to ask given the `--addr` flag and the environment variable: the flag wins,
/// then a non-blank variable, then [`DEFAULT_ADDR`].
pub fn resolve_addr(flag: Option<&str>, env: Option<&str>) -> String {
    flag.or(env.map(str::trim).filter(|addr| !addr.is_empty()))
        .unwrap_or(DEFAULT_ADDR)
        .to_string()
}

/// Checks an `--addr` value: `HOST:PORT`, or an `http://` URL.
fn parse_addr(raw: &str) -> Result<String, String> {
    let addr = raw.trim();
    if addr.is_empty() || addr.contains(char::is_whitespace) {
        return Err(format!("{raw:?} is not a HOST:PORT address"));
    }
    if addr.starts_with("https://") {
        return Err("TinyKV-rs serves plain HTTP: give HOST:PORT or an http:// URL".to_string());
    }
    Ok(addr.to_string())
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
        assert!(parse(&["--addr", "https://h:1", "cluster"]).is_err());
    }

    #[test]
    fn the_flag_wins_over_the_environment_over_the_default() {
        assert_eq!(resolve_addr(Some("a:1"), Some("b:2")), "a:1");
        assert_eq!(resolve_addr(None, Some(" b:2 ")), "b:2");
        assert_eq!(resolve_addr(None, Some("  ")), DEFAULT_ADDR);
        assert_eq!(resolve_addr(None, None), "127.0.0.1:8081");
    }
}
