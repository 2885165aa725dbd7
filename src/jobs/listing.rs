//! Listing jobs newest first, a page at a time, and reading the recent ones for metrics:
//! [`StatusRepository::list`] and [`StatusRepository::created_since`].
//!
//! Ordering by creation time needs every status document: the cost is one read per stored
//! job, bounded by retention.

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::id::JobId;
use super::repository::{RepositoryError, StatusRepository};
use super::status::{JobStatus, StatusDocument};

/// Status documents read at once while listing.
const READS_IN_FLIGHT: usize = 16;

/// Which jobs a list call wants.
#[derive(Debug, Clone, PartialEq)]
pub struct ListFilter {
    pub status: Option<JobStatus>,
    /// 1 to [`ListFilter::MAX_TOP`].
    pub top: usize,
    /// Only jobs after this position (the previous page's continuation).
    pub after: Option<ListPosition>,
}

impl ListFilter {
    pub const DEFAULT_TOP: usize = 20;
    pub const MAX_TOP: usize = 100;
}

/// Where a page ended: jobs are ordered newest first, ties by id. Its token is the opaque
/// continuation a list answer hands out.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPosition {
    pub created_at: DateTime<Utc>,
    pub job_id: JobId,
}

impl ListPosition {
    pub fn token(&self) -> String {
        hex::encode(format!("{}|{}", self.created_at.to_rfc3339(), self.job_id))
    }

    pub fn parse(token: &str) -> Option<Self> {
        let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
        let (at, id) = text.split_once('|')?;
        Some(Self {
            created_at: DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
            job_id: JobId::parse(id).ok()?,
        })
    }

    fn of(document: &StatusDocument) -> Self {
        Self {
            created_at: document.created_at,
            job_id: document.job_id,
        }
    }

    /// Whether `self` comes after `other` in newest-first order.
    fn is_after(&self, other: &ListPosition) -> bool {
        (other.created_at, other.job_id) > (self.created_at, self.job_id)
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct JobPage {
    pub jobs: Vec<StatusDocument>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ListPosition>,
}

impl StatusRepository {
    /// The jobs `filter` selects, newest first.
    pub async fn list(&self, filter: &ListFilter) -> Result<JobPage, RepositoryError> {
        let mut jobs: Vec<StatusDocument> = self
            .load_all()
            .await?
            .into_iter()
            .filter(|doc| filter.status.is_none_or(|status| doc.status == status))
            .filter(|doc| {
                filter
                    .after
                    .as_ref()
                    .is_none_or(|after| ListPosition::of(doc).is_after(after))
            })
            .collect();
        jobs.sort_by_key(|doc| std::cmp::Reverse((doc.created_at, doc.job_id)));
        let more = jobs.len() > filter.top;
        jobs.truncate(filter.top);
        let next = more.then(|| jobs.last().map(ListPosition::of)).flatten();
        Ok(JobPage { jobs, next })
    }

    /// The jobs created at or after `since`.
    pub async fn created_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<StatusDocument>, RepositoryError> {
        let mut documents = self.load_all().await?;
        documents.retain(|doc| doc.created_at >= since);
        Ok(documents)
    }

    /// Every stored status document; one that does not parse is skipped with a warning.
    async fn load_all(&self) -> Result<Vec<StatusDocument>, RepositoryError> {
        let mut ids = Vec::new();
        let mut marker = None;
        loop {
            let (page, next) = self.list_ids(marker, 1000).await?;
            ids.extend(page);
            match next {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        let loaded: Vec<_> = futures::stream::iter(ids)
            .map(|id| async move { (id, self.load(id).await) })
            .buffer_unordered(READS_IN_FLIGHT)
            .collect()
            .await;
        let mut documents = Vec::with_capacity(loaded.len());
        for (id, result) in loaded {
            match result {
                Ok(Some(versioned)) => documents.push(versioned.document),
                Ok(None) => {}
                Err(RepositoryError::Corrupt(error)) => tracing::warn!(
                    job_id = %id,
                    error = %crate::telemetry::Chain(&error),
                    "skipping a status document that does not parse"
                ),
                Err(error) => return Err(error),
            }
        }
        Ok(documents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_tokens_round_trip_and_garbage_is_refused() {
        let position = ListPosition {
            created_at: crate::jobs::status::now(),
            job_id: JobId::new(),
        };
        assert_eq!(ListPosition::parse(&position.token()), Some(position));
        assert!(ListPosition::parse("zz").is_none());
        assert!(ListPosition::parse(&hex::encode("no-separator")).is_none());
    }
}
