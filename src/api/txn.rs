//! The transaction endpoints; for now the timestamp oracle.
//!
//! - `GET /v1/txn/ts?count=N`: `N` consecutive timestamps (1 by default, at most
//!   [`MAX_BATCH`]) from the placement driver's timestamp oracle, answered as
//!   `{"ts": first, "count": N, "physical_ms": .., "logical": ..}`: `ts` to
//!   `ts + N - 1` are the caller's. Every timestamp is greater than every timestamp
//!   answered before this request was sent, by any node, across PD leader changes (see
//!   [`crate::placement::tso`]). Any node answers: it relays to the PD leader.
//!
//! Taking timestamps reads and changes no key, so any valid credential may (see
//! [`crate::auth::policy`]).

use actix_web::{web, HttpRequest, HttpResponse};

use super::request::parse_query;
use super::ApiState;
use crate::error::{Error, Result};
use crate::placement::tso::MAX_BATCH;
use crate::placement::PdRequest;

/// `GET /v1/txn/ts`.
pub async fn timestamps(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse> {
    let count = parse_count(req.query_string())?;
    let reply = state
        .pd
        .call(
            &PdRequest::Timestamps { count },
            super::placement::PD_REQUEST_TIMEOUT,
        )
        .await?;
    Ok(HttpResponse::Ok().json(reply))
}

/// The `count` parameter of a timestamp request: 1 if absent.
fn parse_count(query: &str) -> Result<u64> {
    let params = parse_query(query, &["count"])?;
    let Some(raw) = params.get("count") else {
        return Ok(1);
    };
    std::str::from_utf8(raw)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|count| (1..=MAX_BATCH).contains(count))
        .ok_or_else(|| {
            Error::bad_request(
                "invalid_count",
                format!("count must be an integer from 1 to {MAX_BATCH}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::parse_count;

    #[test]
    fn count_is_one_by_default_and_bounded() {
        assert_eq!(parse_count("").unwrap(), 1);
        assert_eq!(parse_count("count=100").unwrap(), 100);
        assert_eq!(parse_count("count=65536").unwrap(), 65536);
        for bad in [
            "count=0",
            "count=65537",
            "count=-1",
            "count=x",
            "count=",
            "n=3",
        ] {
            let err = parse_count(bad).unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{bad}");
        }
        assert_eq!(
            parse_count("count=7&count=8").unwrap_err().code(),
            "duplicate_parameter"
        );
    }
}
