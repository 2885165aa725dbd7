//! What a job used, recorded in its status document (`usage`, docs/api.md section 3): storage
//! requests by kind, bytes written, Reddit requests, and the handler's wall seconds on it.
//!
//! The requests are counted by the clients themselves ([`crate::meter`]) while the job's work
//! runs metered: its ticket, its runs, a cancel of it, its callback's delivery. Each status
//! write adds what was counted since the last one, and itself
//! ([`StatusRepository`](super::StatusRepository) does it in the one place it writes status
//! documents), so what a document shows is everything up to and including its own write.
//! docs/cost.md turns the totals into money.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::id::JobId;
use super::status::{stored, StatusDocument};
use crate::meter::{self, Meter, Reading, Request, Unflushed};
use crate::store::Metadata;

/// The `usage` object of a status document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub storage_requests: StorageRequests,
    /// Content bytes sent by the job's blob writes.
    pub bytes_written: u64,
    /// Listing and token requests sent to Reddit.
    pub reddit_requests: u64,
    /// Wall-clock seconds the handler spent running the job, every run together (to the
    /// millisecond).
    pub handler_seconds: f64,
}

/// Storage requests by kind; each attempt of a retried call counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageRequests {
    pub read: u64,
    pub write: u64,
    pub list: u64,
    pub delete: u64,
    pub queue: u64,
}

impl StorageRequests {
    pub fn total(&self) -> u64 {
        self.read + self.write + self.list + self.delete + self.queue
    }
}

impl Usage {
    /// Nothing used (not even a write: never a stored document's).
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }

    /// Adds `reading`'s counts and `seconds` on the clock.
    pub fn add(&mut self, reading: Reading, seconds: f64) {
        let storage = &mut self.storage_requests;
        storage.read += reading.requests(Request::Read);
        storage.write += reading.requests(Request::Write);
        storage.list += reading.requests(Request::List);
        storage.delete += reading.requests(Request::Delete);
        storage.queue += reading.requests(Request::Queue);
        self.reddit_requests += reading.requests(Request::Reddit);
        self.bytes_written += reading.bytes_written;
        self.handler_seconds = ((self.handler_seconds + seconds) * 1000.0).round() / 1000.0;
    }

    /// The sum of many jobs' usage.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Usage>) -> Usage {
        let mut total = Usage::default();
        for usage in all {
            let storage = &mut total.storage_requests;
            storage.read += usage.storage_requests.read;
            storage.write += usage.storage_requests.write;
            storage.list += usage.storage_requests.list;
            storage.delete += usage.storage_requests.delete;
            storage.queue += usage.storage_requests.queue;
            total.reddit_requests += usage.reddit_requests;
            total.bytes_written += usage.bytes_written;
            total.handler_seconds += usage.handler_seconds;
        }
        total.handler_seconds = (total.handler_seconds * 1000.0).round() / 1000.0;
        total
    }
}

/// A fresh meter for work on `job`.
pub fn meter_for(job: JobId) -> std::sync::Arc<Meter> {
    Meter::new(job.as_u128())
}

/// A status write about to be sent: the stored form of the charged document, and what to tell
/// the meter once it landed.
pub(crate) struct ChargedWrite {
    pub body: Bytes,
    pub metadata: Metadata,
    meter: Option<std::sync::Arc<Meter>>,
    pending: Unflushed,
    itself: Reading,
}

impl ChargedWrite {
    /// The write landed: what it recorded is not to be recorded again.
    pub fn landed(self) {
        if let Some(meter) = self.meter {
            meter.flushed(self.pending, self.itself);
        }
    }
}

/// Charges `document` with what the metered work on it counted and did not record yet, with
/// `ahead` (requests the caller is about to send unmetered, counted now), and with the write
/// that will store it: one write request of exactly the bytes of its own content.
pub(crate) fn charge(document: &mut StatusDocument, ahead: Reading) -> ChargedWrite {
    let meter = meter::current().filter(|meter| meter.owner() == document.job_id.as_u128());
    let pending = meter
        .as_ref()
        .map(|meter| meter.unflushed())
        .unwrap_or_default();
    document
        .usage
        .add(pending.reading.plus(ahead), pending.seconds);
    document.usage.storage_requests.write += 1;
    // The content's size depends on the number written into it: settle on a size that
    // describes the content it is written in.
    // (Each round can only lengthen the number, so two or three rounds settle it.)
    let base = document.usage.bytes_written;
    let mut size = 0;
    let mut rounds = 0;
    let (body, metadata) = loop {
        document.usage.bytes_written = base + size;
        let (body, metadata) = stored::encode(document);
        rounds += 1;
        if body.len() as u64 == size || rounds == 8 {
            break (body, metadata);
        }
        size = body.len() as u64;
    };
    let mut itself = Reading::one(Request::Write);
    itself.bytes_written = size;
    ChargedWrite {
        body,
        metadata,
        meter,
        pending,
        itself,
    }
}

pub mod cost;
#[cfg(test)]
mod tests;
