//! Reading a request body, within a size limit and a time limit.
//!
//! actix reads a body as fast as the client sends it, for as long as it takes: a client
//! that sends one byte a second holds a connection, a worker's attention and a growing
//! buffer for ever. So every body goes through [`ReadBody`], an extractor that takes its
//! limits from the scope's [`BodyLimit`]: a body announced larger than the limit is refused
//! before a byte of it is read (413), one that grows past it is cut off (413), and one that
//! has not arrived completely within the time limit is abandoned (408 `body_timeout`).
//! Either way nothing was executed.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::StreamExt;

use crate::error::{Error, Result};

/// The limits of the bodies of one scope of routes (its `app_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit {
    /// Largest body, in bytes.
    pub bytes: usize,
    /// Longest time the whole body may take to arrive.
    pub timeout: Duration,
}

impl BodyLimit {
    /// The limit where a scope names none: small JSON bodies.
    const FALLBACK: BodyLimit = BodyLimit {
        bytes: 64 * 1024,
        timeout: Duration::from_secs(10),
    };
}

/// A whole request body, read within the scope's [`BodyLimit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBody(pub Bytes);

impl FromRequest for ReadBody {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<ReadBody>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .copied()
            .unwrap_or(BodyLimit::FALLBACK);
        let announced = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if announced.is_some_and(|len| len > limit.bytes as u64) {
                return Err(too_large(limit.bytes));
            }
            let capacity = announced.map_or(0, |len| len as usize);
            let read = async {
                let mut body = BytesMut::with_capacity(capacity);
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(|e| {
                        Error::bad_request("bad_body", format!("cannot read the request body: {e}"))
                    })?;
                    if body.len() + chunk.len() > limit.bytes {
                        return Err(too_large(limit.bytes));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(ReadBody(body.freeze()))
            };
            match tokio::time::timeout(limit.timeout, read).await {
                Ok(read) => read,
                Err(_) => Err(Error::BodyTimeout(format!(
                    "the request body did not arrive within {} ms (api.body_read_timeout_ms)",
                    limit.timeout.as_millis()
                ))),
            }
        })
    }
}

fn too_large(limit: usize) -> Error {
    Error::TooLarge(format!("request body is larger than {limit} bytes"))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    async fn read(request: TestRequest, limit: BodyLimit) -> Result<ReadBody> {
        let (req, mut payload) = request.app_data(limit).to_http_parts();
        ReadBody::from_request(&req, &mut payload).await
    }

    #[actix_rt::test]
    async fn bodies_are_read_within_their_limits() {
        let limit = BodyLimit {
            bytes: 8,
            timeout: Duration::from_secs(5),
        };
        let body = read(TestRequest::put().set_payload("12345678"), limit).await;
        assert_eq!(body.unwrap().0, "12345678");
        let err = read(TestRequest::put().set_payload("123456789"), limit)
            .await
            .unwrap_err();
        assert_eq!((err.code(), err.status().as_u16()), ("too_large", 413));
    }

    #[actix_rt::test]
    async fn a_body_that_never_arrives_times_out() {
        let limit = BodyLimit {
            bytes: 8,
            timeout: Duration::from_millis(50),
        };
        let (sender, payload) = actix_http::h1::Payload::create(false);
        let (req, _) = TestRequest::put().app_data(limit).to_http_parts();
        let mut payload = Payload::from(payload);
        let err = ReadBody::from_request(&req, &mut payload)
            .await
            .unwrap_err();
        assert_eq!((err.code(), err.status().as_u16()), ("body_timeout", 408));
        drop(sender);
    }
}
