//! The warp filters every route shares: matching a function's route, the function-key check
//! of standalone mode, the request body under a size limit, and the method check. Each refuses
//! with an [`ApiError`] (wrapped in [`Refused`]), which `recover` turns into the JSON answer.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::Method;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::{Filter, Rejection};

use crate::config::{Mode, Settings};
use crate::functions::ApiError;

/// A rejection carrying the API error it stands for.
#[derive(Debug)]
pub struct Refused(pub ApiError);
impl warp::reject::Reject for Refused {}

fn refuse(error: ApiError) -> Rejection {
    warp::reject::custom(Refused(error))
}

/// A function's route. The host matches routes without regard to case and forwards the
/// caller's own spelling, so we match the same way.
pub fn route(path: &'static str) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(move |full: warp::path::FullPath| async move {
            if full
                .as_str()
                .trim_end_matches('/')
                .eq_ignore_ascii_case(path)
            {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// The request's method, refused (naming it) unless it is one of `allowed`.
pub fn methods(
    allowed: &'static [Method],
) -> impl Filter<Extract = (Method,), Error = Rejection> + Clone {
    warp::method().and_then(move |method: Method| async move {
        if allowed.contains(&method) {
            Ok(method)
        } else {
            Err(refuse(ApiError::MethodNotAllowed {
                used: method,
                allowed,
            }))
        }
    })
}

/// The query string, empty when there is none.
pub fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

pub fn parse_query(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// How much of an oversized body is read and thrown away before answering 413, so the client
/// (still sending) gets the JSON answer rather than a reset connection. Beyond this the
/// connection is simply closed.
const MAX_DRAIN_BYTES: u64 = 4 * 1024 * 1024;

/// The request body, refused with 413 once it passes `limit` bytes, whether or not the
/// client sent a Content-Length (the host may send envelopes chunked).
pub fn limited_body(limit: usize) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    let declared = warp::header::optional::<u64>("content-length").and_then(
        |length: Option<u64>| async move {
            match length {
                Some(length) if length > MAX_DRAIN_BYTES => Err(refuse(ApiError::PayloadTooLarge)),
                _ => Ok(()),
            }
        },
    );
    declared
        .untuple_one()
        .and(warp::body::stream())
        .and_then(move |stream| async move { collect_limited(stream, limit).await })
}

async fn collect_limited<S, B>(stream: S, limit: usize) -> Result<Bytes, Rejection>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    let mut body = BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| {
            refuse(ApiError::BadRequest(
                "The request body could not be read.".into(),
            ))
        })?;
        seen += chunk.remaining() as u64;
        if seen > MAX_DRAIN_BYTES {
            break;
        }
        if seen > limit as u64 {
            // Over the limit: keep reading (and dropping) so the answer can be heard.
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    if seen > limit as u64 {
        return Err(refuse(ApiError::PayloadTooLarge));
    }
    Ok(body.freeze())
}

/// Standalone mode with `FUNCTION_KEYS`: the key from `x-functions-key`, or from `code` when
/// the header is absent (the host's order), compared in constant time. Under the host, and
/// without configured keys, every call passes.
pub fn authorized(settings: Arc<Settings>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-functions-key")
        .and(raw_query())
        .and_then(move |header: Option<String>, query: String| {
            let settings = settings.clone();
            async move {
                let Mode::Standalone {
                    function_keys: Some(keys),
                    ..
                } = &settings.mode
                else {
                    return Ok(());
                };
                let presented = header.or_else(|| {
                    parse_query(&query)
                        .into_iter()
                        .find(|(name, _)| name == "code")
                        .map(|(_, value)| value)
                });
                if presented.is_some_and(|key| key_matches(keys, &key)) {
                    Ok(())
                } else {
                    Err(refuse(ApiError::Unauthorized))
                }
            }
        })
        .untuple_one()
}

/// Compares against every key without stopping early, so timing tells nothing about which
/// key or how much of it matched. The SHA-256 digests are compared rather than the keys, so
/// that every comparison is of 32 bytes whatever the keys' lengths: a byte-wise comparison of
/// unequal lengths returns at once and tells the key's length.
fn key_matches(keys: &[secrecy::SecretString], presented: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    keys.iter().fold(false, |matched, key| {
        let key = Sha256::digest(key.expose_secret().as_bytes());
        let equal: bool = key.ct_eq(&presented).into();
        matched | equal
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_matches_only_when_equal_to_one_of_the_configured_keys() {
        let keys = [
            secrecy::SecretString::from("first-key".to_owned()),
            secrecy::SecretString::from("second".to_owned()),
        ];
        assert!(key_matches(&keys, "first-key"));
        assert!(key_matches(&keys, "second"));
        for wrong in [
            "",
            "first",
            "first-key ",
            "FIRST-KEY",
            "second-key",
            "secon",
        ] {
            assert!(!key_matches(&keys, wrong), "{wrong:?}");
        }
    }
}
