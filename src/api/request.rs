//! Reading a client's request: keys, column families and scan parameters, as bytes.
//!
//! Keys are arbitrary bytes, so they travel percent-encoded and are decoded here, not by
//! actix: a key is everything after `/v1/kv/` in the raw request path, percent-decoded to
//! bytes, so `%2F` is a slash inside the key and `%FF` a byte that is not UTF-8. Query
//! parameters are decoded the same way from the raw query string. Only percent-escapes
//! are decoded; a `+` is a literal plus, not a space (this is a URI, not an HTML form).
//! A `%` not followed by two hexadecimal digits is refused (`bad_escape`): taken
//! literally, `a%` and `a%25` would name the same key.
//!
//! Everything here is a pure function of the request's text and the API limits, so the
//! rules (empty key, key too long, unknown or repeated parameter, bad `cf`, bad `limit`)
//! are tested without a server. Each rejection is a 400 with its own code.
//!
//! Keys from byte `0xFE` on are not the raw API's: transactions keep their versions,
//! locks and commit records from `0xFE` (see [`crate::txn::keys`]) and the placement
//! driver its records from `0xFF` (see [`crate::pd::meta`]). A key naming one is
//! refused (`reserved_key`), and a scan stops where they begin.

use std::collections::HashMap;

use tinykv_actors::Cf;

use crate::config::ApiConfig;
use crate::error::{Error, Result};
use crate::txn::keys::TXN_KEYS_START;

/// Path prefix of single-key requests.
pub const KEY_PATH_PREFIX: &str = "/v1/kv/";

/// Query parameters a single-key request accepts.
pub const KEY_PARAMS: &[&str] = &["cf", "ts"];

/// Query parameters a scan accepts.
pub const SCAN_PARAMS: &[&str] = &["cf", "start", "end", "limit", "encoding", "ts"];

/// A single-key request: which key of which column family.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRequest {
    /// The column family.
    pub cf: Cf,
    /// The key.
    pub key: Vec<u8>,
    /// For a read of the transactional keys: the timestamp to read at.
    pub ts: Option<ReadTs>,
}

/// The `ts` of a read of the transactional keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTs {
    /// `ts=latest`: a fresh timestamp, so the read sees every transaction committed
    /// before it was sent.
    Latest,
    /// `ts=N`: as of timestamp `N`.
    At(u64),
}

/// The `ts` parameter, if given; with it, `cf` may not be (a transactional read has no
/// column family).
fn parse_ts(params: &HashMap<&'static str, Vec<u8>>) -> Result<Option<ReadTs>> {
    let Some(raw) = params.get("ts") else {
        return Ok(None);
    };
    if params.contains_key("cf") {
        return Err(Error::bad_request(
            "invalid_parameter",
            "cf does not apply to a read at a timestamp (of the transactional keys)",
        ));
    }
    if raw.as_slice() == b"latest" {
        return Ok(Some(ReadTs::Latest));
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|&ts| ts > 0)
        .map(|ts| Some(ReadTs::At(ts)))
        .ok_or_else(|| {
            Error::bad_request(
                "invalid_ts",
                "ts must be a timestamp (a positive integer) or latest",
            )
        })
}

/// How a scan's keys and values are written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As UTF-8 strings (fails for bytes that are not UTF-8).
    Utf8,
    /// As standard base64.
    Base64,
}

impl Encoding {
    /// The name clients use in `encoding=`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf8",
            Encoding::Base64 => "base64",
        }
    }
}

/// A scan request.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRequest {
    /// The column family.
    pub cf: Cf,
    /// First key (empty: from the beginning).
    pub start: Vec<u8>,
    /// Exclusive end (empty: to the end).
    pub end: Vec<u8>,
    /// Most pairs to return.
    pub limit: usize,
    /// How to write keys and values.
    pub encoding: Encoding,
    /// For a scan of the transactional keys: the timestamp to read at. Its `end` is then
    /// the client's end as given (empty: to the end).
    pub ts: Option<ReadTs>,
}

/// Reads the key and column family of a request to `/v1/kv/{key}?cf=...`, given its raw
/// path and query string.
pub fn parse_key_request(
    raw_path: &str,
    raw_query: &str,
    limits: &ApiConfig,
) -> Result<KeyRequest> {
    let key = key_from_path(raw_path)?;
    check_key(&key, limits)?;
    let params = parse_query(raw_query, KEY_PARAMS)?;
    Ok(KeyRequest {
        cf: parse_cf(params.get("cf").map(Vec::as_slice))?,
        ts: parse_ts(&params)?,
        key,
    })
}

/// Reads the parameters of a scan request from its raw query string.
pub fn parse_scan_request(raw_query: &str, limits: &ApiConfig) -> Result<ScanRequest> {
    let mut params = parse_query(raw_query, SCAN_PARAMS)?;
    let start = params.remove("start").unwrap_or_default();
    let end = params.remove("end").unwrap_or_default();
    for (name, key) in [("start", &start), ("end", &end)] {
        // One byte more than a key: a page's `next` is its last key with a 0 appended.
        if key.len() > limits.max_key_bytes + 1 {
            return Err(Error::bad_request(
                "key_too_large",
                format!(
                    "{name} is {} bytes, more than the limit of {}",
                    key.len(),
                    limits.max_key_bytes
                ),
            ));
        }
    }
    if !end.is_empty() && end < start {
        return Err(Error::bad_request(
            "invalid_range",
            "end must not be before start",
        ));
    }
    if is_reserved_key(&start) {
        return Err(reserved_key_error("start"));
    }
    let ts = parse_ts(&params)?;
    let end = if ts.is_some() { end } else { raw_scan_end(end) };
    let limit = match params.get("limit") {
        None => limits.default_scan_limit,
        Some(raw) => std::str::from_utf8(raw)
            .ok()
            .and_then(|text| text.parse::<usize>().ok())
            .filter(|&limit| (1..=limits.max_scan_limit).contains(&limit))
            .ok_or_else(|| {
                Error::bad_request(
                    "invalid_limit",
                    format!(
                        "limit must be an integer from 1 to {}",
                        limits.max_scan_limit
                    ),
                )
            })?,
    };
    let encoding = match params.get("encoding").map(Vec::as_slice) {
        None | Some(b"utf8") => Encoding::Utf8,
        Some(b"base64") => Encoding::Base64,
        Some(other) => {
            return Err(Error::bad_request(
                "invalid_encoding",
                format!(
                    "unknown encoding {:?}: expected utf8 or base64",
                    String::from_utf8_lossy(other)
                ),
            ))
        }
    };
    Ok(ScanRequest {
        cf: parse_cf(params.get("cf").map(Vec::as_slice))?,
        start,
        end,
        limit,
        encoding,
        ts,
    })
}

/// The key bytes of a raw `/v1/kv/{key}` path.
pub fn key_from_path(raw_path: &str) -> Result<Vec<u8>> {
    let raw_key = raw_path.strip_prefix(KEY_PATH_PREFIX).ok_or_else(|| {
        Error::bad_request(
            "bad_path",
            format!("expected a path under {KEY_PATH_PREFIX}"),
        )
    })?;
    percent_decode(raw_key, "the key")
}

/// Decodes the percent-escapes of `raw`, which `what` names in errors; a `%` that does
/// not start an escape of two hexadecimal digits is a 400 `bad_escape`.
pub fn percent_decode(raw: &str, what: &str) -> Result<Vec<u8>> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'%' {
            decoded.push(bytes[at]);
            at += 1;
            continue;
        }
        let hex = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
        match (hex(at + 1), hex(at + 2)) {
            (Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                at += 3;
            }
            _ => {
                return Err(Error::bad_request(
                    "bad_escape",
                    format!(
                        "{what} has a malformed percent-escape at byte {at}: a % must be followed by two hexadecimal digits (write %25 for a literal %)"
                    ),
                ))
            }
        }
    }
    Ok(decoded)
}

/// Checks a key against the API limits.
pub fn check_key(key: &[u8], limits: &ApiConfig) -> Result<()> {
    if key.is_empty() {
        return Err(Error::bad_request("empty_key", "the key must not be empty"));
    }
    if key.len() > limits.max_key_bytes {
        return Err(Error::bad_request(
            "key_too_large",
            format!(
                "the key is {} bytes, more than the limit of {}",
                key.len(),
                limits.max_key_bytes
            ),
        ));
    }
    if is_reserved_key(key) {
        return Err(reserved_key_error("the key"));
    }
    Ok(())
}

/// Where a raw scan asked to end at `end` (empty: unbounded) stops: the reserved keys are
/// never shown, so at the latest where they begin.
pub fn raw_scan_end(end: Vec<u8>) -> Vec<u8> {
    if end.is_empty() || is_reserved_key(&end) {
        TXN_KEYS_START.to_vec()
    } else {
        end
    }
}

/// Whether `key` lies beyond the raw API's keys: from `0xFE` on.
pub fn is_reserved_key(key: &[u8]) -> bool {
    key >= TXN_KEYS_START
}

fn reserved_key_error(what: &str) -> Error {
    Error::bad_request(
        "reserved_key",
        format!(
            "{what} starts with byte 0xFE or 0xFF: keys from 0xFE on are reserved for \
             transactions (0xFE) and the cluster's metadata (0xFF)"
        ),
    )
}

/// Parses a `cf` parameter; absent means `default`.
pub fn parse_cf(value: Option<&[u8]>) -> Result<Cf> {
    match value {
        None | Some(b"default") => Ok(Cf::Default),
        Some(b"lock") => Ok(Cf::Lock),
        Some(b"write") => Ok(Cf::Write),
        Some(other) => Err(Error::bad_request(
            "invalid_cf",
            format!(
                "unknown column family {:?}: expected default, lock or write",
                String::from_utf8_lossy(other)
            ),
        )),
    }
}

/// Splits and percent-decodes a raw query string, accepting only the parameter names in
/// `allowed`, each at most once.
pub fn parse_query(raw: &str, allowed: &[&'static str]) -> Result<HashMap<&'static str, Vec<u8>>> {
    let mut params = HashMap::new();
    for pair in raw.split('&').filter(|pair| !pair.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(raw_name, "a query parameter's name")?;
        let Some(&known) = allowed.iter().find(|a| a.as_bytes() == name.as_slice()) else {
            return Err(Error::bad_request(
                "unknown_parameter",
                format!(
                    "unknown query parameter {:?}: expected one of {}",
                    String::from_utf8_lossy(&name),
                    allowed.join(", ")
                ),
            ));
        };
        let value = percent_decode(raw_value, "a query parameter's value")?;
        if params.insert(known, value).is_some() {
            return Err(Error::bad_request(
                "duplicate_parameter",
                format!("query parameter {known:?} is given more than once"),
            ));
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ApiConfig {
        ApiConfig {
            max_key_bytes: 8,
            max_scan_limit: 100,
            default_scan_limit: 10,
            ..Default::default()
        }
    }

    #[test]
    fn keys_are_percent_decoded_bytes() {
        let request = parse_key_request("/v1/kv/a%2Fb", "", &limits()).unwrap();
        assert_eq!(request.key, b"a/b");
        assert_eq!(request.cf, Cf::Default);
        assert_eq!(
            key_from_path("/v1/kv/%FF%00x").unwrap(),
            vec![0xff, 0, b'x']
        );
        assert_eq!(key_from_path("/v1/kv/a/b+c").unwrap(), b"a/b+c");
        assert_eq!(key_from_path("/v1/kv/50%25").unwrap(), b"50%");
        assert_eq!(key_from_path("/v1/kv/%e9%E9").unwrap(), vec![0xe9, 0xe9]);
    }

    #[test]
    fn malformed_escapes_are_refused_not_taken_literally() {
        for raw in ["/v1/kv/%zz", "/v1/kv/a%", "/v1/kv/a%4", "/v1/kv/%%41"] {
            let err = key_from_path(raw).unwrap_err();
            assert_eq!(
                (err.code(), err.status().as_u16()),
                ("bad_escape", 400),
                "{raw}"
            );
        }
        let err = parse_scan_request("start=a%zz", &limits()).unwrap_err();
        assert_eq!(err.code(), "bad_escape");
        let err = parse_key_request("/v1/kv/k", "c%f=lock", &limits()).unwrap_err();
        assert_eq!(err.code(), "bad_escape");
    }

    #[test]
    fn bad_keys_are_rejected_with_their_own_code() {
        let err = parse_key_request("/v1/kv/", "", &limits()).unwrap_err();
        assert_eq!(err.code(), "empty_key");
        let err = parse_key_request("/v1/kv/123456789", "", &limits()).unwrap_err();
        assert_eq!(err.code(), "key_too_large");
        assert_eq!(err.status(), 400);
        // Nine bytes encoded as escapes are still nine bytes.
        let err =
            parse_key_request("/v1/kv/%61%61%61%61%61%61%61%61%61", "", &limits()).unwrap_err();
        assert_eq!(err.code(), "key_too_large");
        for reserved in ["/v1/kv/%FFpd", "/v1/kv/%FE", "/v1/kv/%FE%00"] {
            let err = parse_key_request(reserved, "", &limits()).unwrap_err();
            assert_eq!((err.code(), err.status().as_u16()), ("reserved_key", 400));
        }
        assert!(parse_key_request("/v1/kv/%FD%FF", "", &limits()).is_ok());
    }

    #[test]
    fn column_families_and_parameters_are_checked() {
        let request = parse_key_request("/v1/kv/k", "cf=lock", &limits()).unwrap();
        assert_eq!(request.cf, Cf::Lock);
        for (query, code) in [
            ("cf=raft", "invalid_cf"),
            ("cf=", "invalid_cf"),
            ("cf=write&cf=lock", "duplicate_parameter"),
            ("colour=blue", "unknown_parameter"),
            ("limit=3", "unknown_parameter"),
        ] {
            let err = parse_key_request("/v1/kv/k", query, &limits()).unwrap_err();
            assert_eq!(err.code(), code, "{query}");
        }
        let err = parse_key_request("/v1/kv/k", "colour=blue", &limits()).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn scan_parameters_have_defaults_and_bounds() {
        let scan = parse_scan_request("", &limits()).unwrap();
        assert_eq!(
            scan,
            ScanRequest {
                cf: Cf::Default,
                start: vec![],
                end: vec![0xfe],
                limit: 10,
                encoding: Encoding::Utf8,
                ts: None,
            }
        );
        // At a timestamp, a scan of the transactional keys keeps its end as given.
        let at = parse_scan_request("ts=42&end=k", &limits()).unwrap();
        assert_eq!((at.ts, at.end), (Some(ReadTs::At(42)), b"k".to_vec()));
        let latest = parse_scan_request("ts=latest", &limits()).unwrap();
        assert_eq!((latest.ts, latest.end), (Some(ReadTs::Latest), vec![]));
        for bad in ["ts=0", "ts=x", "ts=", "ts=1&cf=lock"] {
            assert_eq!(
                parse_scan_request(bad, &limits())
                    .unwrap_err()
                    .status()
                    .as_u16(),
                400,
                "{bad}"
            );
        }
        let scan = parse_scan_request(
            "start=a%2F&end=%FF%FF&limit=100&encoding=base64&cf=write",
            &limits(),
        )
        .unwrap();
        assert_eq!(
            (scan.start.as_slice(), scan.end.as_slice()),
            (&b"a/"[..], &[0xfe][..]),
            "a scan stops where the transactional keys begin"
        );
        assert_eq!(
            (scan.limit, scan.encoding, scan.cf),
            (100, Encoding::Base64, Cf::Write)
        );
        for (query, code) in [
            ("limit=101", "invalid_limit"),
            ("limit=0", "invalid_limit"),
            ("limit=ten", "invalid_limit"),
            ("encoding=hex", "invalid_encoding"),
            ("start=b&end=a", "invalid_range"),
            ("start=1234567890", "key_too_large"),
            ("start=%FF", "reserved_key"),
            ("reverse=true", "unknown_parameter"),
        ] {
            let err = parse_scan_request(query, &limits()).unwrap_err();
            assert_eq!(err.code(), code, "{query}");
        }
    }
}
