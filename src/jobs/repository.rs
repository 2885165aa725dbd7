//! Status documents and output blobs on a [`BlobStore`].
//!
//! Every status write is conditional: creation with `If-None-Match: *`, updates with `If-Match`
//! on the ETag that was read. An update that loses a race reads again and re-applies its
//! transition, so no update is lost; a transition refused by the state machine (the job became
//! terminal meanwhile) writes nothing.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::id::JobId;
use super::request::IdempotencyKey;
use super::status::{StatusDocument, TransitionError};
use crate::store::{BlobName, BlobStore, ETag, StoreError, WriteCondition};

const JSON: &str = "application/json";

/// Everything under `jobs/` belongs to the job machinery.
pub const JOBS_PREFIX: &str = "jobs/";
/// `Idempotency-Key` records: the SHA-256 of the key, pointing at the job it started.
const IDEMPOTENCY_PREFIX: &str = "jobs/idempotency/";

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("job not found")]
    NotFound,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored status document is not valid JSON")]
    Corrupt(#[source] serde_json::Error),
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
    store: Arc<dyn BlobStore>,
}

/// How many read-modify-write rounds an update tries before giving up on a hot document.
const MAX_UPDATE_ROUNDS: u32 = 32;

fn status_blob(id: JobId) -> BlobName {
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
        Self { store }
    }

    /// Stores a new job's first document: the one write a ticket waits for. Fails rather
    /// than overwrite an existing job.
    /// Writes `document` over the stored one only if that is still the version `etag` names.
    async fn replace(&self, document: &StatusDocument, etag: ETag) -> Result<ETag, StoreError> {
        self.store
            .put(
                &status_blob(document.job_id),
                to_json(document),
                JSON,
                WriteCondition::IfMatch(etag),
            )
            .await
    }

    pub async fn create(&self, document: &StatusDocument) -> Result<(), RepositoryError> {
        self.store
            .put(
                &status_blob(document.job_id),
                to_json(document),
                JSON,
                WriteCondition::IfNotExists,
            )
            .await?;
        Ok(())
    }

    /// Jobs whose status document was last written before `before`: the only ones that can
    /// have lost their worker. One listing of `jobs/`, no reads: a running job's heartbeat
    /// rewrites its document, so its blob's last-modified time is its last sign of life.
    pub async fn quiet_since(&self, before: DateTime<Utc>) -> Result<Vec<JobId>, RepositoryError> {
        Ok(self
            .list_all(JOBS_PREFIX)
            .await?
            .iter()
            .filter(|item| item.last_modified <= before)
            .filter_map(|item| job_of_status_blob(item.name.as_str()))
            .collect())
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
        match self.replace(&document, etag).await {
            Ok(_) => Ok(StaleClaim::Adopted(Box::new(document))),
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
                let record: IdempotencyRecord =
                    serde_json::from_slice(&blob.body).map_err(RepositoryError::Corrupt)?;
                Ok(Some(record.job_id))
            }
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
        let document = serde_json::from_slice(&blob.body).map_err(RepositoryError::Corrupt)?;
        Ok(Some(Versioned {
            document,
            etag: blob.etag,
        }))
    }

    /// Applies `change` to the stored document and writes it back under `If-Match`, re-reading
    /// and re-applying when another writer got there first. Returns the document as written and
    /// what `change` returned.
    pub async fn update<T>(
        &self,
        id: JobId,
        mut change: impl FnMut(&mut StatusDocument) -> Result<T, TransitionError>,
    ) -> Result<(StatusDocument, T), RepositoryError> {
        for _ in 0..MAX_UPDATE_ROUNDS {
            let Versioned { mut document, etag } =
                self.load(id).await?.ok_or(RepositoryError::NotFound)?;
            let answer = change(&mut document)?;
            match self.replace(&document, etag).await {
                Ok(_) => return Ok((document, answer)),
                Err(StoreError::ConditionFailed) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(RepositoryError::Contended(MAX_UPDATE_ROUNDS))
    }

    /// The ids of stored jobs, a page at a time, in id order.
    pub async fn list_ids(
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
        let mut expired = std::collections::HashSet::new();
        let mut marker = None;
        loop {
            let (ids, next) = self.list_ids(marker, 1000).await?;
            for id in ids {
                let Some(Versioned { document, .. }) = self.load(id).await? else {
                    continue;
                };
                if document.status.is_terminal()
                    && document.finished_at.is_some_and(|at| at < cutoff)
                {
                    expired.insert(id);
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
                    .is_ok_and(|record| expired.contains(&record.job_id))
                {
                    self.store.delete(&item.name).await?;
                }
            }
        }
        for id in &expired {
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

    /// Stores a job's topics for one subreddit as `<stamp>_<source>_<name>.json`, never over
    /// another job's blob: when the name is taken by another job, `_<first 8 of job id>` is
    /// appended. When the blob was already written by this same job (a resumed run), its name
    /// is returned and nothing is written again.
    pub async fn store_output<T: Serialize>(
        &self,
        job: JobId,
        stem: &str,
        body: &T,
    ) -> Result<String, RepositoryError> {
        let body = to_json(body);
        // The plain name, then the job's short id, then (for two jobs whose ids share their
        // first 8 characters) its whole id, which no other job has.
        for candidate in [
            format!("{stem}.json"),
            format!("{stem}_{}.json", job.short()),
            format!("{stem}_{job}.json"),
        ] {
            let name = BlobName::parse(candidate.clone()).expect("stems are made of safe parts");
            match self
                .store
                .put(&name, body.clone(), JSON, WriteCondition::IfNotExists)
                .await
            {
                Ok(_) => return Ok(candidate),
                Err(StoreError::ConditionFailed) => {
                    if self.written_by(&name, job).await? {
                        return Ok(candidate);
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(RepositoryError::Store(StoreError::ConditionFailed))
    }

    async fn written_by(&self, name: &BlobName, job: JobId) -> Result<bool, RepositoryError> {
        #[derive(serde::Deserialize)]
        struct Owner {
            job_id: Option<JobId>,
        }
        let Some(blob) = self.store.get(name).await? else {
            return Ok(false);
        };
        Ok(serde_json::from_slice::<Owner>(&blob.body)
            .ok()
            .and_then(|owner| owner.job_id)
            == Some(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::LocalDirStore;

    #[tokio::test]
    async fn jobs_of_one_second_never_share_an_output_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::new(dir.path(), "hot-topics"));
        store.ensure_container().await.unwrap();
        let repository = StatusRepository::new(store);
        // Three jobs, two of whose ids begin alike.
        let jobs = [
            "6ce324a8-0502-4b0c-b729-12e10f0f22f6",
            "0badcafe-0000-4000-8000-000000000001",
            "0badcafe-0000-4000-8000-000000000002",
        ]
        .map(|id| JobId::parse(id).unwrap());
        let mut names = Vec::new();
        for job in jobs {
            let body = serde_json::json!({"job_id": job});
            let name = repository
                .store_output(job, "20250811_135221_reddit_technology", &body)
                .await
                .unwrap();
            names.push(name);
        }
        assert_eq!(
            names,
            [
                "20250811_135221_reddit_technology.json",
                "20250811_135221_reddit_technology_0badcafe.json",
                "20250811_135221_reddit_technology_0badcafe-0000-4000-8000-000000000002.json",
            ]
        );
        // A job that stores again (resumed after a kill) finds its own blob.
        let again = repository
            .store_output(
                jobs[2],
                "20250811_135221_reddit_technology",
                &serde_json::json!({"job_id": jobs[2]}),
            )
            .await
            .unwrap();
        assert_eq!(again, names[2]);
    }
}
