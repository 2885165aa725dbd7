//! The callback record: where a job's completion callback stands, kept in its status document
//! so that a callback owed outlives the instance that owes it.
//!
//! `owed → delivered | abandoned`. The record is written `owed` by the same conditional write
//! that makes the job terminal. An instance sends only while it holds the claim (a
//! [`Lease`](crate::jobs::lease::Lease) it renews while it sends), taken with a conditional
//! write, so one instance sends at a time; a claim whose holder died lapses and another
//! instance takes it over. Every request sent is counted, whoever sent it, and the callback is
//! abandoned after [`MAX_ATTEMPTS`](super::MAX_ATTEMPTS) of them.
//!
//! The record is public: answers and `status.json` show it. The lease is for instances only:
//! it is kept with the job's other internals, in its status blob's metadata
//! ([`crate::jobs::status::stored`]).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackState {
    /// Not delivered yet: some instance will send it.
    Owed,
    /// A receiver answered 2xx.
    Delivered,
    /// Every attempt failed; it is not sent again.
    Abandoned,
}

/// The `callback` object of a terminal job that has a `callback_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRecord {
    pub state: CallbackState,
    /// Requests sent so far, by every instance together.
    pub attempts: u32,
    /// Why the last request failed.
    pub last_error: Option<String>,
}

impl CallbackRecord {
    pub fn owed() -> Self {
        Self {
            state: CallbackState::Owed,
            attempts: 0,
            last_error: None,
        }
    }
}
