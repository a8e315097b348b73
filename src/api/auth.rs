//! Authentication on the client API: the check every request passes, and the endpoints
//! that manage tokens and certificate users.
//!
//! [`authenticate`] runs ahead of every handler. While authentication is off it lets
//! everything through; once on, it works out what the request would do
//! ([`access_of`]: read a key, write one, scan a range, administer) and what it
//! presents (an `Authorization: Bearer` token, and a client certificate naming a user,
//! which `HeadGuard` records for the connection), and refuses it with 401
//! `unauthenticated` (no credential the cluster knows; `WWW-Authenticate: Bearer`) or
//! 403 `permission_denied` before any handler runs. The check reads only the node's copy
//! of the state ([`AuthCache`]), so it costs a hash and a map lookup and never waits.
//!
//! The endpoints (admin role, once authentication is on):
//!
//! | route | does |
//! |---|---|
//! | `GET /v1/auth` | whether it is on, the version, every token (id, name, role, prefix) and user |
//! | `POST /v1/auth/enable`, `/v1/auth/disable` | switches it on or off for the whole cluster (409 `no_admin_credential` while nothing could log in) |
//! | `POST /v1/auth/tokens` `{"name","role","prefix"?}` | makes a token; the answer's `token` is its only appearance |
//! | `DELETE /v1/auth/tokens/{id}` | revokes it: refused on every node within one heartbeat |
//! | `PUT /v1/auth/users/{name}` `{"role","prefix"?}` | gives a certificate user a grant |
//! | `DELETE /v1/auth/users/{name}` | takes it away |
//!
//! Every change goes to the placement driver, which records it through raft; the node
//! that asked takes the new state from the answer at once, the others from their next
//! heartbeat.
//!
//! The answers are [`AuthView`] and, for a new token, [`CreatedTokenView`]; `tinykv-ctl`
//! reads them into these same types.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{http::Method, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::admin::parse_json;
use super::pd::PD_REQUEST_TIMEOUT;
use super::request::{key_from_path, parse_scan_request};
use super::ApiState;
use crate::auth::{
    Access, AuthCache, AuthSet, Credential, Grant, NewToken, PresentedToken, Refusal, Role,
    TokenRecord, UserRecord,
};
use crate::error::{Error, Result};
use crate::pd::{AuthChange, PdRequest};

/// The user a connection's client certificate names, recorded when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateUser(pub String);

/// The middleware; see the module documentation.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> std::result::Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(cache) = req.app_data::<web::Data<AuthCache>>() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let set = cache.current();
    if set.enabled {
        let default_limits;
        let limits = match req.app_data::<web::Data<ApiState>>() {
            Some(state) => &state.limits,
            None => {
                default_limits = crate::config::ApiConfig::default();
                &default_limits
            }
        };
        let access_owned = access_of(
            req.method(),
            req.match_info().as_str(),
            req.path(),
            req.query_string(),
            limits,
        );
        let credentials = credentials_of(req.request());
        if let Err(refusal) = set.authorize(&credentials, access_owned.as_access()) {
            let (error, challenge) = match refusal {
                Refusal::Unauthenticated(why) => (Error::Unauthenticated(why), true),
                Refusal::Denied(why) => (
                    Error::Forbidden {
                        code: "permission_denied",
                        message: why,
                    },
                    false,
                ),
            };
            let mut response = req.error_response(error);
            if challenge {
                response.headers_mut().insert(
                    actix_web::http::header::WWW_AUTHENTICATE,
                    actix_web::http::header::HeaderValue::from_static("Bearer realm=\"tinykv\""),
                );
            }
            return Ok(response);
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// What a request would do, owning its keys (see [`Access`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAccess {
    /// [`Access::Open`].
    Open,
    /// [`Access::Read`].
    Read(Vec<u8>),
    /// [`Access::Write`].
    Write(Vec<u8>),
    /// [`Access::Scan`].
    Scan(Vec<u8>, Vec<u8>),
    /// [`Access::Admin`].
    Admin,
    /// [`Access::Other`].
    Other,
}

impl RequestAccess {
    /// The borrowed form the policy takes.
    pub fn as_access(&self) -> Access<'_> {
        match self {
            RequestAccess::Open => Access::Open,
            RequestAccess::Read(key) => Access::Read(key),
            RequestAccess::Write(key) => Access::Write(key),
            RequestAccess::Scan(start, end) => Access::Scan { start, end },
            RequestAccess::Admin => Access::Admin,
            RequestAccess::Other => Access::Other,
        }
    }
}

/// What a request with `method` and `query` would do. `routed` is its path as the router
/// matches it (percent-escapes of plain characters decoded: `/v1/%61dmin` reaches the
/// admin API), `raw` the path as sent, from which the key handlers take their key. A key
/// or scan the API would refuse as malformed is [`RequestAccess::Other`]: any valid
/// credential may learn that it is malformed, and no handler reads data for it.
pub fn access_of(
    method: &Method,
    routed: &str,
    raw: &str,
    query: &str,
    limits: &crate::config::ApiConfig,
) -> RequestAccess {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    match routed {
        "/health" | "/metrics" | "/v1/openapi.json" | "/ui" | "/ui/" | "/ui/app.js"
        | "/ui/style.css" => RequestAccess::Open,
        "/v1/kv" if reads => match parse_scan_request(query, limits) {
            Ok(scan) => RequestAccess::Scan(scan.start, scan.end),
            Err(_) => RequestAccess::Other,
        },
        p if p.starts_with("/v1/kv/") => match (key_from_path(raw), method) {
            (Ok(key), _) if reads => RequestAccess::Read(key),
            (Ok(key), &Method::PUT | &Method::DELETE) => RequestAccess::Write(key),
            _ => RequestAccess::Other,
        },
        // A transaction's keys are in its body: it needs write access to every key.
        "/v1/txn" | "/v1/txn/commit" => RequestAccess::Write(Vec::new()),
        // Locks name any key of any transaction.
        "/v1/txn/locks" => RequestAccess::Admin,
        p if p.starts_with("/v1/admin") || p.starts_with("/v1/auth") => RequestAccess::Admin,
        _ => RequestAccess::Other,
    }
}

/// What a request presents: its bearer token and its connection's certificate user.
fn credentials_of(req: &HttpRequest) -> Vec<Credential> {
    let mut credentials = Vec::new();
    let bearer = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .and_then(PresentedToken::parse);
    credentials.extend(bearer.map(Credential::Token));
    if let Some(user) = req.conn_data::<CertificateUser>() {
        credentials.push(Credential::User(user.0.clone()));
    }
    credentials
}

/// `GET /v1/auth`.
pub async fn show(state: web::Data<ApiState>) -> Result<HttpResponse> {
    change(&state, AuthChange::Show).await
}

/// `POST /v1/auth/enable`.
pub async fn enable(state: web::Data<ApiState>) -> Result<HttpResponse> {
    change(&state, AuthChange::Enable).await
}

/// `POST /v1/auth/disable`.
pub async fn disable(state: web::Data<ApiState>) -> Result<HttpResponse> {
    change(&state, AuthChange::Disable).await
}

/// The body of `POST /v1/auth/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    name: String,
    role: Role,
    #[serde(default)]
    prefix: Option<String>,
}

/// `POST /v1/auth/tokens`.
pub async fn create_token(state: web::Data<ApiState>, body: web::Bytes) -> Result<HttpResponse> {
    let body: NewTokenBody = parse_json(&body)?;
    let made = NewToken::generate().map_err(Error::Io)?;
    let record = TokenRecord {
        id: made.id.clone(),
        name: body.name,
        grant: Grant {
            role: body.role,
            prefix: body.prefix,
        },
        secret_sha256: made.secret_sha256,
        created_ms: now_ms(),
    };
    let set = apply(
        &state,
        AuthChange::CreateToken {
            record: record.clone(),
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedTokenView {
        token: made.token,
        info: TokenView::of(&record),
        version: set.version,
    }))
}

/// `DELETE /v1/auth/tokens/{id}`.
pub async fn revoke_token(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    change(&state, AuthChange::RevokeToken { id }).await
}

/// The body of `PUT /v1/auth/users/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    role: Role,
    #[serde(default)]
    prefix: Option<String>,
}

/// `PUT /v1/auth/users/{name}`.
pub async fn set_user(
    req: HttpRequest,
    state: web::Data<ApiState>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let name = req.match_info().get("name").unwrap_or_default().to_string();
    let body: UserBody = parse_json(&body)?;
    let record = UserRecord {
        name,
        grant: Grant {
            role: body.role,
            prefix: body.prefix,
        },
    };
    change(&state, AuthChange::SetUser { record }).await
}

/// `DELETE /v1/auth/users/{name}`.
pub async fn delete_user(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let name = req.match_info().get("name").unwrap_or_default().to_string();
    change(&state, AuthChange::DeleteUser { name }).await
}

/// Makes `change` and answers with the state afterwards, as [`view`] shows it.
async fn change(state: &ApiState, change: AuthChange) -> Result<HttpResponse> {
    let set = apply(state, change).await?;
    Ok(HttpResponse::Ok().json(view(&set)))
}

/// Asks the PD to make `change`; takes the state it answers with.
async fn apply(state: &ApiState, change: AuthChange) -> Result<AuthSet> {
    let answer = state
        .pd
        .call(&PdRequest::Auth(change), PD_REQUEST_TIMEOUT)
        .await?;
    let set: AuthSet = serde_json::from_value(answer)
        .map_err(|e| Error::Io(format!("the PD answered with a garbled auth state: {e}")))?;
    state.auth.update(set.clone());
    Ok(set)
}

/// The answer of `GET /v1/auth` and of every change but making a token: the state, with
/// no digests of secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthView {
    /// Whether requests need a credential.
    pub enabled: bool,
    /// Raised by every change.
    pub version: u64,
    /// Every token, by id (always sent; a missing list reads as empty).
    #[serde(default)]
    pub tokens: Vec<TokenView>,
    /// Every certificate user with a grant, by name (always sent; a missing list reads
    /// as empty).
    #[serde(default)]
    pub users: Vec<UserView>,
}

/// A token as the API lists it: never its secret nor its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Its public id (`root` for the root token).
    pub id: String,
    /// What it is for, as its creator named it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The keys it reaches: those beginning with this; `None` (`null`): all.
    pub prefix: Option<String>,
    /// When it was made, in Unix milliseconds.
    pub created_ms: u64,
}

/// A certificate user with a grant, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// The name its certificate carries (`tinykv://user/<name>`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The keys it reaches: those beginning with this; `None` (`null`): all.
    pub prefix: Option<String>,
}

/// The answer of `POST /v1/auth/tokens`: the new token, its secret included this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTokenView {
    /// The token to hand the client: shown this once, kept nowhere.
    pub token: String,
    /// The token as the cluster lists it from now on (its fields appear at the top
    /// level).
    #[serde(flatten)]
    pub info: TokenView,
    /// The state's version after the change.
    pub version: u64,
}

impl TokenView {
    /// The listing of `record`.
    pub fn of(record: &TokenRecord) -> TokenView {
        TokenView {
            id: record.id.clone(),
            name: record.name.clone(),
            role: record.grant.role,
            prefix: record.grant.prefix.clone(),
            created_ms: record.created_ms,
        }
    }
}

/// The state as the API shows it: no digests of secrets.
pub fn view(set: &AuthSet) -> AuthView {
    AuthView {
        enabled: set.enabled,
        version: set.version,
        tokens: set.tokens.values().map(TokenView::of).collect(),
        users: set
            .users
            .values()
            .map(|user| UserView {
                name: user.name.clone(),
                role: user.grant.role,
                prefix: user.grant.prefix.clone(),
            })
            .collect(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Registers the endpoints.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let not_allowed = super::error::method_not_allowed;
    cfg.service(
        web::scope("/v1/auth")
            .service(
                web::resource("")
                    .get(show)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/enable")
                    .post(enable)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/disable")
                    .post(disable)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/tokens")
                    .post(create_token)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/tokens/{id}")
                    .delete(revoke_token)
                    .default_service(not_allowed("DELETE")),
            )
            .service(
                web::resource("/users/{name}")
                    .put(set_user)
                    .delete(delete_user)
                    .default_service(not_allowed("PUT, DELETE")),
            ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiConfig;

    #[test]
    fn requests_are_classified_by_what_they_would_touch() {
        let limits = ApiConfig::default();
        let access = |method: Method, path: &str, query: &str| {
            access_of(&method, path, path, query, &limits)
        };
        assert_eq!(access(Method::GET, "/health", ""), RequestAccess::Open);
        assert_eq!(access(Method::GET, "/ui/app.js", ""), RequestAccess::Open);
        assert_eq!(
            access(Method::GET, "/v1/kv/a%2Fb", ""),
            RequestAccess::Read(b"a/b".to_vec())
        );
        assert_eq!(
            access(Method::HEAD, "/v1/kv/k", ""),
            RequestAccess::Read(b"k".to_vec())
        );
        assert_eq!(
            access(Method::PUT, "/v1/kv/k", ""),
            RequestAccess::Write(b"k".to_vec())
        );
        assert_eq!(
            access(Method::DELETE, "/v1/kv/k", ""),
            RequestAccess::Write(b"k".to_vec())
        );
        assert_eq!(access(Method::POST, "/v1/kv/k", ""), RequestAccess::Other);
        // A transaction's keys are in its body: it needs every key (no prefix grant).
        for path in ["/v1/txn", "/v1/txn/commit"] {
            assert_eq!(
                access(Method::POST, path, ""),
                RequestAccess::Write(Vec::new())
            );
        }
        assert_eq!(
            access(Method::POST, "/v1/txn/begin", ""),
            RequestAccess::Other
        );
        assert_eq!(access(Method::GET, "/v1/kv/%zz", ""), RequestAccess::Other);
        assert_eq!(
            access(Method::GET, "/v1/kv", "start=a&end=b"),
            RequestAccess::Scan(b"a".to_vec(), b"b".to_vec())
        );
        assert_eq!(
            access(Method::GET, "/v1/kv", "start=%zz"),
            RequestAccess::Other
        );
        assert_eq!(
            access(Method::POST, "/v1/admin/regions/1/split", ""),
            RequestAccess::Admin
        );
        assert_eq!(access(Method::GET, "/v1/auth", ""), RequestAccess::Admin);
        assert_eq!(access(Method::GET, "/v1/authx", ""), RequestAccess::Admin);
        assert_eq!(access(Method::GET, "/nowhere", ""), RequestAccess::Other);
        // The path as the router sees it: no second decoding, no dot segments.
        assert_eq!(
            access(Method::GET, "/v1/kv/../admin", ""),
            RequestAccess::Read(b"../admin".to_vec())
        );
        // The router decodes escapes of plain characters; so does the classification.
        let routed = "/v1/admin/regions/1/split";
        let raw = "/v1/%61dmin/regions/1/split";
        assert_eq!(
            access_of(&Method::POST, routed, raw, "", &limits),
            RequestAccess::Admin
        );
        assert_eq!(
            access_of(&Method::PUT, "/v1/kv/k", "/v1/%6Bv/k", "", &limits),
            RequestAccess::Other,
            "the key handler refuses a raw path outside /v1/kv/ (400 bad_path)"
        );
    }
}
