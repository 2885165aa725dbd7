//! The output blobs: a job's topics for one subreddit, never written over another job's.

use serde::Serialize;

use super::{to_json, RepositoryError, StatusRepository, JSON};
use crate::jobs::id::JobId;
use crate::store::{BlobName, StoreError, WriteCondition};

impl StatusRepository {
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
