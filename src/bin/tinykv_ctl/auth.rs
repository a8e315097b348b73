//! Authentication: the answers of the `/v1/auth` endpoints, and how `tinykv-ctl auth`
//! shows them.
//!
//! `GET /v1/auth` and every change answer with the whole state ([`AuthView`]): whether
//! authentication is on, its version (raised by every change), every token (id, name,
//! role, key prefix and when it was made, never a secret: the cluster keeps only
//! digests) and every certificate user with a grant. `POST /v1/auth/tokens` answers with
//! the new token ([`CreatedTokenView`]), whose `token` field is the only time its secret
//! ever appears: [`render_created`] puts it on a line of its own and says so.
//!
//! The answer has no `now_ms`, so a token's creation time is shown as a UTC date rather
//! than an age measured against this machine's clock. Names and prefixes are the
//! server's text, shown with control characters escaped ([`printable`]).
//!
//! The answers are read into the server's own view types ([`tinykv::api::auth`]); a role
//! is shown as the API spells it ([`json_name`]).

use tinykv::api::auth::{AuthView, CreatedTokenView, TokenView, UserView};

use crate::format::{json_name, printable, utc_time};
use crate::table::{render_fields, Column, Table};

/// `on` or `off`.
fn on_off(enabled: bool) -> &'static str {
    if enabled {
        "on"
    } else {
        "off"
    }
}

/// A grant's prefix as shown: the prefix, or `-` for every key.
fn prefix_cell(prefix: &Option<String>) -> String {
    prefix.as_deref().map_or_else(|| "-".to_string(), printable)
}

/// `auth token list`: one row per token, or a line saying there is none.
pub fn render_tokens(tokens: &[TokenView]) -> String {
    if tokens.is_empty() {
        return "no tokens\n".to_string();
    }
    let mut table = Table::new(vec![
        Column::left("ID"),
        Column::left("NAME"),
        Column::left("ROLE"),
        Column::left("PREFIX"),
        Column::left("CREATED"),
    ]);
    for token in tokens {
        table.push_row(vec![
            printable(&token.id),
            printable(&token.name),
            printable(&json_name(&token.role)),
            prefix_cell(&token.prefix),
            utc_time(token.created_ms),
        ]);
    }
    table.render()
}

/// The certificate users: one row per user, or a line saying there is none.
pub fn render_users(users: &[UserView]) -> String {
    if users.is_empty() {
        return "no certificate users\n".to_string();
    }
    let mut table = Table::new(vec![
        Column::left("NAME"),
        Column::left("ROLE"),
        Column::left("PREFIX"),
    ]);
    for user in users {
        table.push_row(vec![
            printable(&user.name),
            printable(&json_name(&user.role)),
            prefix_cell(&user.prefix),
        ]);
    }
    table.render()
}

/// `auth status`: whether it is on and the version, then the tokens, then the users.
pub fn render_status(answer: &AuthView) -> String {
    let mut out = render_fields(&[
        ("authentication", on_off(answer.enabled).to_string()),
        ("version", answer.version.to_string()),
        ("tokens", answer.tokens.len().to_string()),
        ("certificate users", answer.users.len().to_string()),
    ]);
    out.push_str("\ntokens:\n");
    out.push_str(&render_tokens(&answer.tokens));
    out.push_str("\ncertificate users:\n");
    out.push_str(&render_users(&answer.users));
    out
}

/// `auth enable` and `auth disable`: the state it is now in.
pub fn render_switched(answer: &AuthView) -> String {
    let effect = if answer.enabled {
        "every request but /health, /metrics and the dashboard's files needs a token or a \
         certificate user"
    } else {
        "requests need no credential"
    };
    format!(
        "authentication is {} (version {}): {effect}; the other nodes follow within a \
         heartbeat\n",
        on_off(answer.enabled),
        answer.version
    )
}

/// `auth token create`: the token on a line of its own, and that it is shown only once.
pub fn render_created(created: &CreatedTokenView) -> String {
    let info = &created.info;
    let mut out = format!(
        "created token {} (name {}, role {}, prefix {}; version {})\n\n",
        printable(&info.id),
        printable(&info.name),
        printable(&json_name(&info.role)),
        prefix_cell(&info.prefix),
        created.version
    );
    out.push_str(&format!("    {}\n\n", printable(&created.token)));
    out.push_str(&format!(
        "This is the only time the token is shown: the cluster keeps only a digest of it.\n\
         Store it now (clients send it as Authorization: Bearer <token>; tinykv-ctl reads\n\
         --token or TINYKV_TOKEN). Revoke it with: tinykv-ctl auth token revoke {}\n",
        printable(&info.id)
    ));
    out
}

/// `auth token revoke ID`: what was revoked, then the tokens left.
pub fn render_revoked(id: &str, answer: &AuthView) -> String {
    format!(
        "revoked token {} (version {}); the other nodes refuse it within a heartbeat\n\n{}",
        printable(id),
        answer.version,
        render_tokens(&answer.tokens)
    )
}

/// `auth user set NAME`: the user's grant as the cluster now keeps it, then every user.
pub fn render_user_set(name: &str, answer: &AuthView) -> String {
    let grant = answer
        .users
        .iter()
        .find(|user| user.name == name)
        .map(|user| {
            format!(
                "role {}, prefix {}",
                printable(&json_name(&user.role)),
                prefix_cell(&user.prefix)
            )
        })
        .unwrap_or_else(|| "not listed in the answer".to_string());
    format!(
        "certificate user {}: {grant} (version {})\n\n{}",
        printable(name),
        answer.version,
        render_users(&answer.users)
    )
}

/// `auth user delete NAME`: whose grant was taken away, then the users left.
pub fn render_user_deleted(name: &str, answer: &AuthView) -> String {
    format!(
        "removed certificate user {} (version {})\n\n{}",
        printable(name),
        answer.version,
        render_users(&answer.users)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const SECRET: &str =
        "tkv_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    /// A state as `GET /v1/auth` answers it: the root token, an app token, one user.
    fn sample(enabled: bool) -> Value {
        json!({"enabled": enabled, "version": 7, "tokens": [
            {"id": "0123456789abcdef", "name": "app", "role": "readwrite", "prefix": "app/",
             "created_ms": 1_764_000_000_000u64},
            {"id": "root", "name": "root (security.root_token)", "role": "admin",
             "prefix": null, "created_ms": 1_763_999_000_000u64}],
            "users": [{"name": "ops", "role": "read", "prefix": null}]})
    }

    fn answer(enabled: bool) -> AuthView {
        serde_json::from_value(sample(enabled)).unwrap()
    }

    #[test]
    fn status_shows_the_switch_the_tokens_and_the_users() {
        let text = render_status(&answer(true));
        let expected = "\
authentication:    on
version:           7
tokens:            2
certificate users: 1

tokens:
ID                NAME                        ROLE       PREFIX  CREATED
----------------  --------------------------  ---------  ------  -----------------------
0123456789abcdef  app                         readwrite  app/    2025-11-24 16:00:00 UTC
root              root (security.root_token)  admin      -       2025-11-24 15:43:20 UTC

certificate users:
NAME  ROLE  PREFIX
----  ----  ------
ops   read  -
";
        assert_eq!(text, expected);
        assert!(!text.contains("sha256"));
        let empty: AuthView =
            serde_json::from_value(json!({"enabled": false, "version": 0})).unwrap();
        let text = render_status(&empty);
        assert!(text.starts_with("authentication:    off\n"), "{text}");
        assert!(text.ends_with("tokens:\nno tokens\n\ncertificate users:\nno certificate users\n"));
    }

    #[test]
    fn a_new_token_is_shown_on_its_own_line_once() {
        let mut created = sample(true)["tokens"][0].clone();
        created["token"] = json!(SECRET);
        created["version"] = json!(8);
        let created: CreatedTokenView = serde_json::from_value(created).unwrap();
        let text = render_created(&created);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "created token 0123456789abcdef (name app, role readwrite, prefix app/; version 8)"
        );
        assert_eq!((lines[1], lines[3]), ("", ""));
        assert_eq!(lines[2], format!("    {SECRET}"));
        assert!(lines[4].starts_with("This is the only time the token is shown"));
        assert!(text.ends_with("tinykv-ctl auth token revoke 0123456789abcdef\n"));
        assert_eq!(text.matches(SECRET).count(), 1);
    }

    #[test]
    fn changes_say_what_changed_and_show_what_is_left() {
        let text = render_switched(&answer(true));
        assert!(text.starts_with("authentication is on (version 7): every request"));
        assert!(render_switched(&answer(false)).starts_with("authentication is off (version 7)"));
        let text = render_revoked("feedfacefeedface", &answer(true));
        assert!(text.starts_with("revoked token feedfacefeedface (version 7);"));
        assert_eq!(text.lines().count(), 2 + 2 + 2, "{text}");
        let text = render_user_set("ops", &answer(true));
        assert!(text.starts_with("certificate user ops: role read, prefix - (version 7)\n"));
        assert!(text.ends_with("ops   read  -\n"), "{text}");
        let text = render_user_deleted("ops", &answer(true));
        assert!(text.starts_with("removed certificate user ops (version 7)\n"));
        assert_eq!(render_tokens(&[]), "no tokens\n");
    }

    #[test]
    fn text_from_the_server_cannot_drive_the_terminal() {
        let mut state = sample(true);
        state["tokens"][0]["name"] = json!("evil\u{1b}[2J");
        state["users"][0]["prefix"] = json!("p\n");
        let text = render_status(&serde_json::from_value(state).unwrap());
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            text.contains("evil\\u{1b}[2J") && text.contains("p\\u{a}"),
            "{text}"
        );
    }
}
