//! Status documents and output blobs on a [`BlobStore`].
//!
//! Every status write is conditional: creation with `If-None-Match: *`, updates with `If-Match`
//! on the ETag that was read (or that this process's own last write returned). An update that loses a race reads again and re-applies its
//! transition, so no update is lost; a transition refused by the state machine (the job became
//! terminal meanwhile) writes nothing.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::id::JobId;
use super::request::IdempotencyKey;
use super::status::stored::{self, Unreadable};
use super::status::{StatusDocument, TransitionError};
use super::usage;
use crate::meter::{Reading, Request};
use crate::retry::Verdict;
use crate::store::{BlobName, BlobStore, ETag, StoreError, WriteCondition};

const JSON: &str = "application/json";

/// Everything under `jobs/` belongs to the job machinery.
pub const JOBS_PREFIX: &str = "jobs/";
/// `Idempotency-Key` records: the SHA-256 of the key, pointing at the job it started.
const IDEMPOTENCY_PREFIX: &str = "jobs/idempotency/";
/// The list index: one empty blob per job, `jobs/index/<inverted created_at>_<job_id>`, whose
/// names sort newest first, so a list reads only the names it needs (docs/storage.md).
pub(crate) const INDEX_PREFIX: &str = "jobs/index/";
/// Microseconds since the epoch are subtracted from this, so later jobs get smaller names; 17
/// digits last until the year 5138.
const INDEX_NEWEST: i64 = 99_999_999_999_999_999;

/// The app's own secret for keys no caller may predict (the timer's idempotency keys): made
/// once, at random, by the first instance that needs it.
const APP_SECRET: &str = "jobs/secret/app-key";

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("job not found")]
    NotFound,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored document cannot be read")]
    Corrupt(#[source] Unreadable),
    #[error("status document kept changing; gave up after {0} attempts")]
    Contended(u32),
}

impl RepositoryError {
    /// Whether storage trouble (not the job's state) caused this.
    pub fn is_retryable(&self) -> bool {
        match self {
            RepositoryError::Store(error) => error.is_retryable(),
            RepositoryError::Contended(_) => true,
            _ => false,
        }
    }

    /// What this failure means for another attempt: storage's own verdict
    /// ([`StoreError::verdict`], which honours a `Retry-After`); contention is worth another
    /// round after a backoff; anything else is final.
    pub fn verdict(&self) -> Verdict {
        match self {
            RepositoryError::Store(error) => error.verdict(),
            error => Verdict::retry_if(error.is_retryable()),
        }
    }
}

/// What came of trying to adopt a quiet job.
#[derive(Debug)]
pub enum StaleClaim {
    /// This worker now owns the job (claimed with `If-Match`).
    Adopted(Box<StatusDocument>),
    /// The job is over; it will never need adopting.
    Finished,
    /// Alive after all, gone, or another worker got there first.
    Declined,
}

/// A status document with the ETag it was read at.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub document: StatusDocument,
    pub etag: ETag,
}

#[derive(Clone)]
pub struct StatusRepository {
    pub(super) store: Arc<dyn BlobStore>,
    /// List entries being written in the background, shared by every clone.
    pub(super) index_writes: Arc<index::IndexWrites>,
    /// This process's last write of each job it is writing, shared by every clone.
    last_writes: Arc<last_write::LastWrites>,
}

/// How many read-modify-write rounds an update tries before giving up on a hot document.
const MAX_UPDATE_ROUNDS: u32 = 32;

/// The name of a job's status document, `jobs/<id>/status.json`.
pub(crate) fn status_blob(id: JobId) -> BlobName {
    BlobName::parse(format!("{JOBS_PREFIX}{id}/status.json")).expect("job ids make valid names")
}

/// The job whose status document `name` is (`jobs/<id>/status.json`), if it is one.
fn job_of_status_blob(name: &str) -> Option<JobId> {
    let rest = name.strip_prefix(JOBS_PREFIX)?;
    let (id, file) = rest.split_once('/')?;
    if file == "status.json" {
        JobId::parse(id).ok()
    } else {
        None
    }
}

/// The index entry of the job `id` created at `created_at`.
pub fn index_blob(created_at: DateTime<Utc>, id: JobId) -> BlobName {
    let inverted = INDEX_NEWEST - created_at.timestamp_micros();
    BlobName::parse(format!("{INDEX_PREFIX}{inverted:017}_{id}")).expect("digits and a job id")
}

/// The creation time and job of an index entry's name.
pub(crate) fn parse_index_blob(name: &str) -> Option<(DateTime<Utc>, JobId)> {
    let (inverted, id) = name.strip_prefix(INDEX_PREFIX)?.split_once('_')?;
    let micros = INDEX_NEWEST.checked_sub(inverted.parse::<i64>().ok()?)?;
    Some((
        DateTime::from_timestamp_micros(micros)?,
        JobId::parse(id).ok()?,
    ))
}

fn idempotency_blob(key: &IdempotencyKey) -> BlobName {
    let digest = hex::encode(Sha256::digest(key.as_str().as_bytes()));
    BlobName::parse(format!("{IDEMPOTENCY_PREFIX}{digest}.json")).expect("hex makes valid names")
}

#[derive(Serialize, Deserialize)]
struct IdempotencyRecord {
    job_id: JobId,
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("our documents always serialise"))
}

impl StatusRepository {
    pub fn new(store: Arc<dyn BlobStore>) -> Self {
        Self {
            store,
            index_writes: Default::default(),
            last_writes: Default::default(),
        }
    }

    /// Writes `document` (its public part and its internals, [`stored`]) under `condition`,
    /// charged first with what its work used since the last write and with this write
    /// ([`usage::charge`]; `ahead`: requests about to be sent for it unmetered).
    async fn write(
        &self,
        document: &mut StatusDocument,
        ahead: Reading,
        condition: WriteCondition,
    ) -> Result<ETag, StoreError> {
        let charged = usage::charge(document, ahead);
        let etag = self
            .store
            .put_with_metadata(
                &status_blob(document.job_id),
                charged.body.clone(),
                JSON,
                &charged.metadata,
                condition,
            )
            .await?;
        charged.landed();
        Ok(etag)
    }

    /// Writes `document` over the stored one only if that is still the version `etag` names.
    async fn replace(&self, document: &mut StatusDocument, etag: ETag) -> Result<ETag, StoreError> {
        self.write(document, Reading::default(), WriteCondition::IfMatch(etag))
            .await
    }

    /// Stores a new job's first document: the one write a ticket waits for. Fails rather
    /// than overwrite an existing job.
    ///
    /// The job's list entry is written after it, in the background (see [`index`]; a ticket
    /// waits for a slot only while 64 entries are being written already): until it
    /// lands this instance's lists show the job from memory, and a job whose entry never lands
    /// (the process died first) gets it from the next stale-job scan ([`Self::quiet_since`]).
    ///
    /// Returns the document as stored: charged with its own write, the list entry's, which
    /// runs unmetered, and `ahead`, what the caller sends for the job right after it (a queue
    /// message).
    pub async fn create_ahead_of(
        &self,
        mut document: StatusDocument,
        ahead: Reading,
    ) -> Result<StatusDocument, RepositoryError> {
        let ahead = ahead.plus(Reading::one(Request::Write));
        let etag = self
            .write(&mut document, ahead, WriteCondition::IfNotExists)
            .await?;
        self.last_writes.keep(&document, etag);
        self.write_index_entry_later(document.created_at, document.job_id)
            .await;
        Ok(document)
    }

    /// [`Self::create_ahead_of`] nothing more.
    pub async fn create(
        &self,
        document: &StatusDocument,
    ) -> Result<StatusDocument, RepositoryError> {
        self.create_ahead_of(document.clone(), Reading::default())
            .await
    }

    /// Jobs whose status document was last written before `before`: the only ones that can
    /// have lost their worker. One listing of `jobs/`, no reads: a running job's heartbeat
    /// rewrites its document, so its blob's last-modified time is its last sign of life.
    ///
    /// The same listing shows which quiet jobs have no list entry (their process died between
    /// the document and the entry, or they were stored before the index existed); those
    /// entries are written here, a read and a write each.
    pub async fn quiet_since(&self, before: DateTime<Utc>) -> Result<Vec<JobId>, RepositoryError> {
        let items = self.list_all(JOBS_PREFIX).await?;
        let indexed: std::collections::HashSet<JobId> = items
            .iter()
            .filter_map(|item| parse_index_blob(item.name.as_str()))
            .map(|(_, id)| id)
            .collect();
        let quiet: Vec<JobId> = items
            .iter()
            .filter(|item| item.last_modified <= before)
            .filter_map(|item| job_of_status_blob(item.name.as_str()))
            .collect();
        for &id in quiet.iter().filter(|id| !indexed.contains(id)) {
            self.backfill_index_entry(id).await;
        }
        Ok(quiet)
    }

    /// Claims a job whose worker is presumed dead: one conditional write, so of several
    /// instances trying at once exactly one succeeds.
    pub async fn claim_stale(
        &self,
        id: JobId,
        stale_before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<StaleClaim, RepositoryError> {
        let Some(Versioned { mut document, etag }) = self.load(id).await? else {
            return Ok(StaleClaim::Declined);
        };
        if document.status.is_terminal() {
            return Ok(StaleClaim::Finished);
        }
        if document.updated_at > stale_before {
            return Ok(StaleClaim::Declined);
        }
        let seen = document.attempts;
        if document.claim(at, seen).is_err() {
            return Ok(StaleClaim::Declined);
        }
        match self.replace(&mut document, etag).await {
            Ok(etag) => {
                self.last_writes.keep(&document, etag);
                Ok(StaleClaim::Adopted(Box::new(document)))
            }
            Err(StoreError::ConditionFailed) => Ok(StaleClaim::Declined),
            Err(error) => Err(error.into()),
        }
    }

    /// Records that `key` started `job`. When the key was used before, returns the job it
    /// started then and writes nothing.
    pub async fn reserve_idempotency_key(
        &self,
        key: &IdempotencyKey,
        job: JobId,
    ) -> Result<Option<JobId>, RepositoryError> {
        let name = idempotency_blob(key);
        let record = to_json(&IdempotencyRecord { job_id: job });
        match self
            .store
            .put(&name, record, JSON, WriteCondition::IfNotExists)
            .await
        {
            Ok(_) => Ok(None),
            Err(StoreError::ConditionFailed) => {
                let blob = self
                    .store
                    .get(&name)
                    .await?
                    .ok_or(RepositoryError::NotFound)?;
                let record: IdempotencyRecord = serde_json::from_slice(&blob.body)
                    .map_err(|error| RepositoryError::Corrupt(error.into()))?;
                Ok(Some(record.job_id))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The app's own secret, created at random and stored (create-only, so all instances
    /// agree on the first one written) the first time it is asked for.
    pub async fn app_secret(&self) -> Result<Bytes, RepositoryError> {
        let name = BlobName::parse(APP_SECRET).expect("a valid name");
        if let Some(blob) = self.store.get(&name).await? {
            return Ok(blob.body);
        }
        let fresh = Bytes::from(hex::encode(rand::random::<[u8; 32]>()));
        match self
            .store
            .put(
                &name,
                fresh.clone(),
                "text/plain",
                WriteCondition::IfNotExists,
            )
            .await
        {
            Ok(_) => Ok(fresh),
            Err(StoreError::ConditionFailed) => Ok(self
                .store
                .get(&name)
                .await?
                .ok_or(RepositoryError::NotFound)?
                .body),
            Err(error) => Err(error.into()),
        }
    }

    /// Forgets an idempotency key (its job could not be created).
    pub async fn release_idempotency_key(
        &self,
        key: &IdempotencyKey,
    ) -> Result<(), RepositoryError> {
        Ok(self.store.delete(&idempotency_blob(key)).await?)
    }

    pub async fn load(&self, id: JobId) -> Result<Option<Versioned>, RepositoryError> {
        let Some(blob) = self.store.get(&status_blob(id)).await? else {
            return Ok(None);
        };
        let document =
            stored::decode(&blob.body, &blob.metadata).map_err(RepositoryError::Corrupt)?;
        Ok(Some(Versioned {
            document,
            etag: blob.etag,
        }))
    }

    /// Applies `change` to the stored document and writes it back under `If-Match`, re-reading
    /// and re-applying when another writer got there first. Returns the document as written and
    /// what `change` returned.
    ///
    /// When this process wrote the document last, the change is first applied to that version
    /// and written with its ETag, without a read: it lands only if nobody wrote since (see
    /// [`last_write`]).
    pub async fn update<T>(
        &self,
        id: JobId,
        mut change: impl FnMut(&mut StatusDocument) -> Result<T, TransitionError>,
    ) -> Result<(StatusDocument, T), RepositoryError> {
        if let Some(Versioned { mut document, etag }) = self.last_writes.take(id) {
            // A change refused on the remembered version is tried on the stored one below,
            // which decides.
            if let Ok(answer) = change(&mut document) {
                match self.replace(&mut document, etag).await {
                    Ok(etag) => {
                        self.last_writes.keep(&document, etag);
                        return Ok((document, answer));
                    }
                    Err(StoreError::ConditionFailed) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        for _ in 0..MAX_UPDATE_ROUNDS {
            let Versioned { mut document, etag } =
                self.load(id).await?.ok_or(RepositoryError::NotFound)?;
            let answer = change(&mut document)?;
            match self.replace(&mut document, etag).await {
                Ok(etag) => {
                    self.last_writes.keep(&document, etag);
                    return Ok((document, answer));
                }
                Err(StoreError::ConditionFailed) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(RepositoryError::Contended(MAX_UPDATE_ROUNDS))
    }

    /// The ids of stored jobs, a page at a time, in id order.
    async fn list_ids(
        &self,
        marker: Option<String>,
        max: u32,
    ) -> Result<(Vec<JobId>, Option<String>), RepositoryError> {
        let page = self.store.list(JOBS_PREFIX, marker, max).await?;
        let ids = page
            .items
            .iter()
            .filter_map(|item| job_of_status_blob(item.name.as_str()))
            .collect();
        Ok((ids, page.next_marker))
    }

    /// Deletes terminal jobs that finished before `cutoff`: every blob under `jobs/<id>/` and
    /// the idempotency records that point at them. Output topic blobs are kept: they belong to
    /// the next pipeline stage. Returns how many jobs went.
    pub async fn purge_finished_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<usize, RepositoryError> {
        let mut expired = std::collections::HashMap::new();
        let mut marker = None;
        loop {
            let (ids, next) = self.list_ids(marker, 1000).await?;
            for id in ids {
                let document = match self.load(id).await {
                    Ok(Some(Versioned { document, .. })) => document,
                    Ok(None) => continue,
                    // A document this version cannot read (a newer version's, or damaged) is
                    // left alone: it must not stop the purge of the jobs listed after it.
                    Err(RepositoryError::Corrupt(error)) => {
                        tracing::warn!(
                            blob = %status_blob(id),
                            error = %crate::telemetry::Chain(&error),
                            "skipping a status document that does not parse"
                        );
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                if document.status.is_terminal()
                    && document.finished_at.is_some_and(|at| at < cutoff)
                {
                    expired.insert(id, document.created_at);
                }
            }
            match next {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        if expired.is_empty() {
            return Ok(0);
        }
        // Idempotency records first: a record must never outlive its job's status (a repeat
        // of its key would then recreate the purged job).
        for item in self.list_all(IDEMPOTENCY_PREFIX).await? {
            if let Some(blob) = self.store.get(&item.name).await? {
                if serde_json::from_slice::<IdempotencyRecord>(&blob.body)
                    .is_ok_and(|record| expired.contains_key(&record.job_id))
                {
                    self.store.delete(&item.name).await?;
                }
            }
        }
        for (&id, &created_at) in &expired {
            self.store.delete(&index_blob(created_at, id)).await?;
            for item in self.list_all(&format!("{JOBS_PREFIX}{id}/")).await? {
                self.store.delete(&item.name).await?;
            }
        }
        Ok(expired.len())
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<crate::store::BlobItem>, RepositoryError> {
        let mut items = Vec::new();
        let mut marker = None;
        loop {
            let page = self.store.list(prefix, marker, 1000).await?;
            items.extend(page.items);
            match page.next_marker {
                Some(next) => marker = Some(next),
                None => return Ok(items),
            }
        }
    }
}

mod index;
mod last_write;
mod output;
#[cfg(test)]
mod tests;
