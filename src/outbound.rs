//! What may be said about a failed outbound HTTP call.
//!
//! reqwest's error text names the URL, which can carry a function key (`code=`) or other
//! request details; logs, status documents and timer output get only the kind of failure.

/// The kind of failure, in words a person reading a log understands.
pub fn failure(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off"
    } else {
        "request failed"
    }
}
