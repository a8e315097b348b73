//! `tinykv-ctl`: the admin command-line tool of TinyKV-rs.
//!
//! ```text
//! tinykv-ctl [--addr HOST:PORT|URL] [--json] [--token TOKEN]
//!            [--cacert FILE [--cert FILE --key FILE]] <command>
//!   cluster                                  the PD's view: settings, operator counts, stores
//!   stores                                   the asked node's address book and reachability
//!   store offline <ID>                       drain a store (it becomes Tombstone once empty)
//!   store drain-leaders <ID> [--timeout 60] [--no-wait]
//!                                            move its leaderships away before stopping it
//!   store resume-leaders <ID>                let it lead again
//!   regions [--pd]                           the regions the asked node holds (--pd: the PD's, all)
//!   region <ID>                              one of them, field by field
//!   operators                                the PD's operators in flight and recently ended
//!   split <REGION_ID> <KEY>                  split a region at a percent-encoded key
//!   add-peer <REGION_ID> <STORE_ID>          add a peer of a region on a store
//!   remove-peer <REGION_ID> <PEER_ID>        remove a peer of a region
//!   transfer-leader <REGION_ID> <PEER_ID>    make a peer lead its region
//!   txn safe-point                           garbage collection's safe point and its age
//!   txn locks [--start K] [--end K] [--limit N] [--max-ts TS]
//!                                            transactions' locks in a key range
//!   auth status                              on or off, the version, every token and user
//!   auth enable | auth disable               switch authentication on or off (whole cluster)
//!   auth token create --name NAME --role read|readwrite|admin [--prefix P]
//!                                            make a token (printed once, never again)
//!   auth token list                          every token: id, name, role, prefix, created
//!   auth token revoke <ID>                   revoke a token on every node
//!   auth user set <NAME> --role ROLE [--prefix P]
//!                                            give certificate user NAME a role
//!   auth user delete <NAME>                  take it away
//!   certs ca --dir DIR [--force]             a new CA: DIR/ca.pem, DIR/ca.key
//!   certs node --dir DIR --store ID --host H [--host H ...] [--days 365] [--force]
//!                                            a node's certificate: DIR/store-ID.pem, .key
//!   certs client --dir DIR --user NAME [--days 365] [--force]
//!                                            a user's: DIR/user-NAME.pem, .key
//!   certs dev --dir DIR --stores 1,2,3       what a local cluster lacks (CA, nodes on
//!                                            loopback, user admin); keeps what exists
//! ```
//!
//! Each command but `certs` and the leader drain's (which finds the store's own node
//! through the asked one, see [`drain`]) is one request to one node's REST admin API (`--addr`, else
//! `$TINYKV_ADDR`, else `127.0.0.1:8081`); any node accepts every command. Answers are
//! shown as tables, or as the server's JSON with `--json`. With `--cacert` (else
//! `$TINYKV_CACERT`) the request goes over HTTPS, checking the node's certificate against
//! that CA and the host dialled, as `curl --cacert` does; `--cert` and `--key` (else
//! `$TINYKV_CERT`, `$TINYKV_KEY`) add a client certificate for a cluster that requires
//! one. With `--token` (else `$TINYKV_TOKEN`) every request carries
//! `Authorization: Bearer <token>`, for a cluster with authentication on; a 401 or 403
//! answer is reported with the server's code and message and what to do about it.
//! `certs` makes those files and asks no node. The exit status is 0 on success, 1
//! when the command failed (the reason, with the server's error code and message, goes
//! to stderr after `error: `) and 2 on wrong arguments or options that do not go
//! together.
//!
//! Modules: [`cli`] (options), [`commands`] (request and rendering of each command),
//! [`client`] (HTTP and error answers), [`error`] (the error type), [`certs`] (the
//! `certs` files), [`cluster`], [`regions`], [`operators`], [`txn`] and [`auth`] (how the
//! answers are shown), [`table`] (text layout) and [`format`](mod@format) (sizes, ages,
//! dates, keys).
//!
//! Answers are read into the library's own view types, the ones the routes serialize
//! (`tinykv::api::admin`, `tinykv::pd::views`, `tinykv::api::auth`, `tinykv::api::txn`,
//! the leader drain's `DrainStatus`), so a change to a view is a compile error here, not a
//! silent mismatch. Only [`operators`] keeps shapes of its own, to list a newer server's
//! operators (see there).

mod auth;
mod certs;
mod cli;
mod client;
mod cluster;
mod commands;
mod drain;
mod error;
mod format;
mod operators;
mod regions;
mod table;
mod txn;

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

/// Parses the command line, runs the command and prints its result or error.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(&cli).await {
        Ok(text) => print_output(&text),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

/// Writes `text` to stdout. A closed pipe (`tinykv-ctl regions | head`) is not an
/// error; another write failure is reported and exits with status 1.
fn print_output(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}
