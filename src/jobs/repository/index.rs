//! Writing list entries (`jobs/index/…`) after the ticket, and repairing missing ones.
//!
//! A ticket waits for its status document only; the entry is written right after it by a
//! tracked background task, so the ticket costs one write's wait. Until the entry lands, this
//! instance's lists take it from [`IndexWrites::pending`]; another instance's list sees the job
//! once the entry is written. When the entry never lands (the process died first, or storage
//! stayed away longer than the retries), the stale-job scan writes it: the job's document goes
//! quiet, [`StatusRepository::quiet_since`] finds it without an entry and calls
//! [`StatusRepository::backfill_index_entry`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::{index_blob, RepositoryError, StatusRepository, Versioned};
use crate::jobs::id::JobId;
use crate::retry::{retry, Backoff};
use crate::store::{retried_by_caller, BlobName, StoreError, WriteCondition};

/// Entries written at once, at most. A ticket that finds them all in flight waits for a slot:
/// without the bound, tickets arriving faster than storage takes writes would pile up entry
/// writes without end, and the status writes of later tickets would wait behind them until they
/// time out.
const ENTRIES_IN_FLIGHT: usize = 64;

/// Entries are retried for about a minute; past that the stale-job scan repairs them.
const ENTRY_RETRY: Backoff = Backoff::new(Duration::from_millis(100))
    .max_delay(Duration::from_secs(10))
    .max_elapsed(Duration::from_secs(60));

/// The list entries this process is writing in the background.
pub(crate) struct IndexWrites {
    /// Names of the entries not yet written, which lists merge with what they read.
    pending: Mutex<BTreeSet<String>>,
    /// One permit per entry write in flight.
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl Default for IndexWrites {
    fn default() -> Self {
        Self {
            pending: Mutex::default(),
            slots: Arc::new(Semaphore::new(ENTRIES_IN_FLIGHT)),
            tracker: TaskTracker::new(),
        }
    }
}

impl StatusRepository {
    /// Writes the list entry of a job just created, in a task of its own; waits only while
    /// [`ENTRIES_IN_FLIGHT`] entries are being written already.
    pub(super) async fn write_index_entry_later(&self, created_at: DateTime<Utc>, id: JobId) {
        let slot = self
            .index_writes
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let entry = index_blob(created_at, id);
        self.index_writes
            .pending
            .lock()
            .expect("pending entries lock")
            .insert(entry.as_str().to_owned());
        let this = self.clone();
        self.index_writes.tracker.spawn(async move {
            let written = retry(
                &ENTRY_RETRY,
                None,
                |_| retried_by_caller(this.write_index_entry(&entry)),
                StoreError::verdict,
                |_, _| {},
            )
            .await;
            this.index_writes
                .pending
                .lock()
                .expect("pending entries lock")
                .remove(entry.as_str());
            drop(slot);
            if let Err(error) = written {
                tracing::warn!(
                    job_id = %id,
                    error = %crate::telemetry::Chain(&error),
                    "the job's list entry could not be written; the stale-job scan will write it"
                );
            }
        });
    }

    /// One create-only write of an entry; an entry that exists already is as good.
    async fn write_index_entry(&self, entry: &BlobName) -> Result<(), StoreError> {
        match self
            .store
            .put(
                entry,
                Bytes::new(),
                "application/octet-stream",
                WriteCondition::IfNotExists,
            )
            .await
        {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Writes the missing list entry of a stored job, from its document's `created_at`.
    /// Failures are logged: the next scan tries again.
    pub(super) async fn backfill_index_entry(&self, id: JobId) {
        let written = match self.load(id).await {
            Ok(Some(Versioned { document, .. })) => self
                .write_index_entry(&index_blob(document.created_at, id))
                .await
                .map_err(RepositoryError::from),
            // Purged meanwhile: nothing to list.
            Ok(None) => return,
            Err(error) => Err(error),
        };
        match written {
            Ok(()) => tracing::info!(job_id = %id, "wrote the missing list entry of a job"),
            Err(error) => tracing::warn!(
                job_id = %id,
                error = %crate::telemetry::Chain(&error),
                "the missing list entry of a job could not be written"
            ),
        }
    }

    /// The entries still being written, for a list to merge in.
    pub(crate) fn pending_index_entries(&self) -> BTreeSet<String> {
        self.index_writes
            .pending
            .lock()
            .expect("pending entries lock")
            .clone()
    }

    /// Waits for the list entries being written (at shutdown): each is short, and one left
    /// unwritten would keep its job out of lists until a stale-job scan.
    pub async fn finish_index_writes(&self) {
        self.index_writes.tracker.close();
        self.index_writes.tracker.wait().await;
    }
}
