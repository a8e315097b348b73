//! What each subcommand asks and how its answer is shown.
//!
//! A command runs in three steps: [`call_for`] says which request it makes (method, path,
//! body), the [`AdminClient`] sends it and returns the answer's JSON, and
//! [`render_answer`] turns that JSON into text, or [`render_json`] pretty-prints it for
//! `--json`. The first and last steps are pure functions, tested without a node; only
//! [`run`] touches the network. `auth` commands are rendered by [`crate::auth`]. `certs`
//! asks no node: [`run`] hands it to [`crate::certs`].
//!
//! Answers are decoded into the library's own view types (`tinykv::api::admin`,
//! `tinykv::pd::views`, `tinykv::api::auth`, `tinykv::api::txn`, the leader drain's
//! status), the types the routes serialize, so the tool and the API cannot drift apart
//! unnoticed.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Method;
use serde::de::{DeserializeOwned, Error as _};
use serde_json::{json, Value};
use tinykv::api::admin::{OkView, RegionInfo, RegionsView};
use tinykv::api::auth::AuthView;
use tinykv::pd::views::{OfflineView, RegionsView as PdRegionsView};

use crate::auth::{
    render_created, render_revoked, render_status, render_switched, render_tokens,
    render_user_deleted, render_user_set,
};
use crate::certs;
use crate::cli::{
    AuthCommand, Cli, Command, RoleArg, StoreCommand, TokenCommand, TxnCommand, UserCommand,
};
use crate::client::{AdminClient, Call};
use crate::cluster::{render_cluster, render_offline, render_stores};
use crate::error::CtlError;
use crate::operators::render_operators;
use crate::regions::{from_pd, render_region, render_regions};
use crate::txn::{now_ms, render_locks, render_safe_point};

/// Characters left as they are in a path segment (a token id, a user name): RFC 3986's
/// unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `text` as one path segment, percent-encoded.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// The body of a grant: `{"role", "prefix"?}`, plus the token's `name`.
fn grant_body(name: Option<&str>, role: RoleArg, prefix: &Option<String>) -> Value {
    let mut body = json!({ "role": role.as_str() });
    if let Some(name) = name {
        body["name"] = json!(name);
    }
    if let Some(prefix) = prefix {
        body["prefix"] = json!(prefix);
    }
    body
}

/// The request of an `auth` command.
fn auth_call(command: &AuthCommand) -> Call {
    match command {
        AuthCommand::Status | AuthCommand::Token(TokenCommand::List) => {
            Call::new(Method::GET, "/v1/auth".into())
        }
        AuthCommand::Enable => Call::with_body(Method::POST, "/v1/auth/enable".into(), json!({})),
        AuthCommand::Disable => Call::with_body(Method::POST, "/v1/auth/disable".into(), json!({})),
        AuthCommand::Token(TokenCommand::Create { name, role, prefix }) => Call::with_body(
            Method::POST,
            "/v1/auth/tokens".into(),
            grant_body(Some(name), *role, prefix),
        ),
        AuthCommand::Token(TokenCommand::Revoke { id }) => {
            Call::new(Method::DELETE, format!("/v1/auth/tokens/{}", segment(id)))
        }
        AuthCommand::User(UserCommand::Set { name, role, prefix }) => Call::with_body(
            Method::PUT,
            format!("/v1/auth/users/{}", segment(name)),
            grant_body(None, *role, prefix),
        ),
        AuthCommand::User(UserCommand::Delete { name }) => {
            Call::new(Method::DELETE, format!("/v1/auth/users/{}", segment(name)))
        }
    }
}

/// The text an `auth` command prints for its successful `answer`.
fn render_auth(command: &AuthCommand, answer: Value) -> Result<String, serde_json::Error> {
    if let AuthCommand::Token(TokenCommand::Create { .. }) = command {
        return Ok(render_created(&decode(answer)?));
    }
    let state: AuthView = decode(answer)?;
    Ok(match command {
        AuthCommand::Status => render_status(&state),
        AuthCommand::Enable | AuthCommand::Disable => render_switched(&state),
        AuthCommand::Token(TokenCommand::List) => render_tokens(&state.tokens),
        AuthCommand::Token(TokenCommand::Revoke { id }) => render_revoked(id, &state),
        AuthCommand::User(UserCommand::Set { name, .. }) => render_user_set(name, &state),
        AuthCommand::User(UserCommand::Delete { name }) => render_user_deleted(name, &state),
        AuthCommand::Token(TokenCommand::Create { .. }) => unreachable!("rendered above"),
    })
}

/// The request `command` makes; `None` for `certs`, which asks no node, and for the
/// leader drain, which asks two (see [`crate::drain`]).
pub fn call_for(command: &Command) -> Option<Call> {
    Some(match command {
        Command::Cluster => Call::new(Method::GET, "/v1/admin/cluster".into()),
        Command::Stores => Call::new(Method::GET, "/v1/admin/stores".into()),
        Command::Store(StoreCommand::Offline { id }) => {
            Call::new(Method::POST, format!("/v1/admin/stores/{id}/offline"))
        }
        // Two nodes are asked: see `crate::drain`.
        Command::Store(StoreCommand::DrainLeaders { .. } | StoreCommand::ResumeLeaders { .. }) => {
            return None
        }
        Command::Regions { pd: false } => Call::new(Method::GET, "/v1/admin/regions".into()),
        Command::Regions { pd: true } => Call::new(Method::GET, "/v1/admin/cluster/regions".into()),
        Command::Region { id } => Call::new(Method::GET, format!("/v1/admin/regions/{id}")),
        Command::Operators => Call::new(Method::GET, "/v1/admin/operators".into()),
        Command::Split { region_id, key } => Call::with_body(
            Method::POST,
            format!("/v1/admin/regions/{region_id}/split"),
            json!({ "key": key }),
        ),
        Command::AddPeer {
            region_id,
            store_id,
        } => Call::with_body(
            Method::POST,
            format!("/v1/admin/regions/{region_id}/peers"),
            json!({ "store_id": store_id }),
        ),
        Command::RemovePeer { region_id, peer_id } => Call::new(
            Method::DELETE,
            format!("/v1/admin/regions/{region_id}/peers/{peer_id}"),
        ),
        Command::TransferLeader { region_id, peer_id } => Call::with_body(
            Method::POST,
            format!("/v1/admin/regions/{region_id}/transfer-leader"),
            json!({ "peer_id": peer_id }),
        ),
        Command::Auth(command) => auth_call(command),
        Command::Txn(TxnCommand::SafePoint) => Call::new(Method::GET, "/v1/txn/safe-point".into()),
        Command::Txn(TxnCommand::Locks {
            start,
            end,
            limit,
            max_ts,
        }) => {
            // The keys come percent-encoded, as the tables show them: passed on as they are.
            let mut path = format!("/v1/txn/locks?limit={limit}&start={start}&end={end}");
            if let Some(max_ts) = max_ts {
                path.push_str(&format!("&max_ts={max_ts}"));
            }
            Call::new(Method::GET, path)
        }
        Command::Certs(_) => return None,
    })
}

/// Reads an answer into the type that describes it.
fn decode<T: DeserializeOwned>(answer: Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(answer)
}

/// The text `command` prints for its successful `answer`, or why the answer does not
/// have the expected shape.
pub fn render_answer(command: &Command, answer: Value) -> Result<String, serde_json::Error> {
    Ok(match command {
        Command::Cluster => render_cluster(&decode(answer)?),
        Command::Stores => render_stores(&decode(answer)?),
        Command::Store(StoreCommand::Offline { .. }) => {
            let Some(store) = decode::<OfflineView>(answer)?.store else {
                return Err(serde_json::Error::custom(
                    "invalid type: null, expected a store",
                ));
            };
            render_offline(&store)
        }
        Command::Store(StoreCommand::DrainLeaders { .. } | StoreCommand::ResumeLeaders { .. }) => {
            crate::drain::render(&decode(answer)?)
        }
        Command::Regions { pd: true } => {
            let regions = decode::<PdRegionsView>(answer)?.regions;
            render_regions(&regions.into_iter().map(from_pd).collect::<Vec<_>>())
        }
        Command::Regions { pd: false } | Command::Split { .. } => {
            render_regions(&decode::<RegionsView>(answer)?.regions)
        }
        Command::Region { .. } | Command::AddPeer { .. } | Command::RemovePeer { .. } => {
            render_region(&decode::<RegionInfo>(answer)?)
        }
        Command::Operators => render_operators(&decode(answer)?),
        Command::TransferLeader { region_id, peer_id } => {
            if !decode::<OkView>(answer)?.ok {
                return Err(serde_json::Error::custom("expected \"ok\": true"));
            }
            format!("region {region_id} is now led by peer {peer_id}\n")
        }
        Command::Auth(command) => render_auth(command, answer)?,
        Command::Txn(TxnCommand::SafePoint) => render_safe_point(&decode(answer)?, now_ms()),
        Command::Txn(TxnCommand::Locks { .. }) => render_locks(&decode(answer)?, now_ms()),
        // Never asked: `certs` sends no request. Its answer would be shown as JSON.
        Command::Certs(_) => render_json(&answer),
    })
}

/// The answer pretty-printed, for `--json` (object keys come out sorted: the workspace's
/// `serde_json` does not keep their order).
pub fn render_json(answer: &Value) -> String {
    let mut text = serde_json::to_string_pretty(answer).unwrap_or_else(|_| answer.to_string());
    text.push('\n');
    text
}

/// Runs the command line's command against its node and returns what to print.
pub async fn run(cli: &Cli) -> Result<String, CtlError> {
    if let Command::Certs(command) = &cli.command {
        return certs::run(command);
    }
    if let Command::Store(
        command @ (StoreCommand::DrainLeaders { .. } | StoreCommand::ResumeLeaders { .. }),
    ) = &cli.command
    {
        return crate::drain::run(&cli.node_target()?, command, cli.json).await;
    }
    let Some(call) = call_for(&cli.command) else {
        return Err(CtlError::Usage("this command asks no node".into()));
    };
    let target = cli.node_target()?;
    let client = AdminClient::new(&target)?;
    let answer = client.send(&call).await?;
    if cli.json {
        return Ok(render_json(&answer));
    }
    render_answer(&cli.command, answer).map_err(|e| CtlError::UnexpectedAnswer {
        addr: target.addr,
        request: call.label(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_their_endpoints() {
        let split = Command::Split {
            region_id: 5,
            key: "a%20b".into(),
        };
        assert_eq!(
            call_for(&split).unwrap(),
            Call::with_body(
                Method::POST,
                "/v1/admin/regions/5/split".into(),
                json!({"key": "a%20b"})
            )
        );
        let add = call_for(&Command::AddPeer {
            region_id: 5,
            store_id: 4,
        })
        .unwrap();
        assert_eq!(add.body, Some(json!({"store_id": 4})));
        let remove = call_for(&Command::RemovePeer {
            region_id: 5,
            peer_id: 9,
        })
        .unwrap();
        assert_eq!(remove.label(), "DELETE /v1/admin/regions/5/peers/9");
        let transfer = call_for(&Command::TransferLeader {
            region_id: 5,
            peer_id: 9,
        })
        .unwrap();
        assert_eq!(transfer.label(), "POST /v1/admin/regions/5/transfer-leader");
        assert_eq!(transfer.body, Some(json!({"peer_id": 9})));
        let offline = call_for(&Command::Store(StoreCommand::Offline { id: 3 })).unwrap();
        assert_eq!(offline.label(), "POST /v1/admin/stores/3/offline");
        assert_eq!(offline.body, None);
        assert_eq!(
            call_for(&Command::Operators).unwrap().label(),
            "GET /v1/admin/operators"
        );
        let certs = Command::Certs(crate::cli::CertsCommand::Ca {
            dir: "certs".into(),
            force: false,
        });
        assert_eq!(call_for(&certs), None, "certs asks no node");
        let locks = Command::Txn(TxnCommand::Locks {
            start: "a%20b".into(),
            end: String::new(),
            limit: 5,
            max_ts: Some(9),
        });
        assert_eq!(
            call_for(&locks).unwrap().label(),
            "GET /v1/txn/locks?limit=5&start=a%20b&end=&max_ts=9"
        );
        assert_eq!(
            call_for(&Command::Txn(TxnCommand::SafePoint))
                .unwrap()
                .label(),
            "GET /v1/txn/safe-point"
        );
    }

    #[test]
    fn operation_answers_are_rendered() {
        let region = json!({"id":5,"start_key":"","end_key":"m","epoch":{"conf_ver":2,"version":1},
            "peers":[{"id":6,"store_id":1},{"id":9,"store_id":4}],"leader":null,"term":null,
            "commit_index":null,"applied_index":null,"last_index":null,"truncated_index":null,
            "approximate_size":null});
        let add = Command::AddPeer {
            region_id: 5,
            store_id: 4,
        };
        let text = render_answer(&add, region.clone()).unwrap();
        assert!(text.contains("peers:            6@s1,9@s4\n"), "{text}");
        let split = Command::Split {
            region_id: 5,
            key: "g".into(),
        };
        let text = render_answer(&split, json!({"regions": [region.clone(), region]})).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        let transfer = Command::TransferLeader {
            region_id: 5,
            peer_id: 9,
        };
        assert_eq!(
            render_answer(&transfer, json!({"ok": true})).unwrap(),
            "region 5 is now led by peer 9\n"
        );
        assert!(render_answer(&transfer, json!({"ok": false})).is_err());
    }

    #[test]
    fn auth_commands_map_to_their_endpoints() {
        let auth = |command: AuthCommand| call_for(&Command::Auth(command)).unwrap();
        assert_eq!(auth(AuthCommand::Status).label(), "GET /v1/auth");
        assert_eq!(
            auth(AuthCommand::Token(TokenCommand::List)).label(),
            "GET /v1/auth"
        );
        let enable = auth(AuthCommand::Enable);
        assert_eq!(
            (enable.label(), enable.body),
            ("POST /v1/auth/enable".to_string(), Some(json!({})))
        );
        assert_eq!(auth(AuthCommand::Disable).label(), "POST /v1/auth/disable");
        let create = auth(AuthCommand::Token(TokenCommand::Create {
            name: "app".into(),
            role: RoleArg::Readwrite,
            prefix: Some("app/".into()),
        }));
        assert_eq!(
            create,
            Call::with_body(
                Method::POST,
                "/v1/auth/tokens".into(),
                json!({"name": "app", "role": "readwrite", "prefix": "app/"})
            )
        );
        let create = auth(AuthCommand::Token(TokenCommand::Create {
            name: "ops".into(),
            role: RoleArg::Admin,
            prefix: None,
        }));
        assert_eq!(create.body, Some(json!({"name": "ops", "role": "admin"})));
        let revoke = auth(AuthCommand::Token(TokenCommand::Revoke {
            id: "0123456789abcdef".into(),
        }));
        assert_eq!(revoke.label(), "DELETE /v1/auth/tokens/0123456789abcdef");
        let odd = auth(AuthCommand::Token(TokenCommand::Revoke {
            id: "a/b c".into(),
        }));
        assert_eq!(odd.label(), "DELETE /v1/auth/tokens/a%2Fb%20c");
        let set = auth(AuthCommand::User(UserCommand::Set {
            name: "ops.team-1".into(),
            role: RoleArg::Read,
            prefix: None,
        }));
        assert_eq!(
            (set.label(), set.body),
            (
                "PUT /v1/auth/users/ops.team-1".to_string(),
                Some(json!({"role": "read"}))
            )
        );
        let delete = auth(AuthCommand::User(UserCommand::Delete {
            name: "ops".into(),
        }));
        assert_eq!(
            (delete.label(), delete.body),
            ("DELETE /v1/auth/users/ops".to_string(), None)
        );
    }

    #[test]
    fn auth_answers_are_rendered_by_command() {
        let state = json!({"enabled": true, "version": 3, "tokens": [
            {"id": "root", "name": "root (security.root_token)", "role": "admin",
             "prefix": null, "created_ms": 0}], "users": []});
        let render = |command: AuthCommand, answer: &Value| {
            render_answer(&Command::Auth(command), answer.clone()).unwrap()
        };
        assert!(render(AuthCommand::Status, &state).starts_with(
            "authentication:    on
"
        ));
        assert!(render(AuthCommand::Enable, &state).starts_with("authentication is on"));
        let list = render(AuthCommand::Token(TokenCommand::List), &state);
        assert!(
            list.starts_with("ID    NAME")
                && list.contains(
                    "
root  root"
                ),
            "{list}"
        );
        let revoke = AuthCommand::Token(TokenCommand::Revoke { id: "x".into() });
        assert!(render(revoke, &state).starts_with("revoked token x (version 3)"));
        let delete = AuthCommand::User(UserCommand::Delete { name: "ops".into() });
        assert!(render(delete, &state).ends_with("no certificate users\n"));
        let create = AuthCommand::Token(TokenCommand::Create {
            name: "app".into(),
            role: RoleArg::Read,
            prefix: None,
        });
        let created = json!({"token": "tkv_x", "id": "x", "name": "app", "role": "read",
            "prefix": null, "created_ms": 0, "version": 4});
        assert!(render(create.clone(), &created).contains("\n    tkv_x\n"));
        assert!(
            render_answer(&Command::Auth(create), state).is_err(),
            "a state is not a new token"
        );
        assert!(render_answer(&Command::Auth(AuthCommand::Status), json!({"on": 1})).is_err());
    }

    #[test]
    fn unexpected_shapes_are_errors_and_json_is_pretty() {
        let err = render_answer(&Command::Cluster, json!({"cluster_id": "one"})).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        assert!(render_answer(&Command::Regions { pd: false }, json!([])).is_err());
        let pd_regions = Command::Regions { pd: true };
        assert_eq!(
            call_for(&pd_regions).unwrap().label(),
            "GET /v1/admin/cluster/regions"
        );
        let pd_answer = json!({"now_ms": 1, "regions": [{
            "id": 77, "start_key": "a", "end_key": "b", "epoch": {"conf_ver": 1, "version": 2},
            "peers": [{"id": 5, "store_id": 1}], "leader": {"id": 5, "store_id": 1},
            "pending_peers": [], "approximate_size": 300
        }]});
        let text = render_answer(&pd_regions, pd_answer).unwrap();
        assert!(text.contains("5@s1*") && text.contains("1/2"), "{text}");
        assert_eq!(render_json(&json!({"ok": true})), "{\n  \"ok\": true\n}\n");
    }
}
