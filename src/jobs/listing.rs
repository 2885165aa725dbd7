//! Listing jobs newest first, a page at a time, and reading the recent ones for metrics:
//! [`StatusRepository::list`] and [`StatusRepository::created_since`].
//!
//! Both walk the index (`jobs/index/`), whose names sort newest first, and read only the status
//! documents they answer with: a list of `top` jobs costs one listing and `top` reads (the
//! listing asks for one name more, which says whether a next page exists), and
//! metrics cost the jobs of the window, whatever the number of jobs kept. A status filter reads
//! further, but at most [`ListFilter::read_budget`] documents per page; a page that reached the
//! bound may hold fewer than `top` jobs and carries a continuation.

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::id::JobId;
use super::repository::{
    index_blob, parse_index_blob, RepositoryError, StatusRepository, Versioned, INDEX_PREFIX,
};
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

    /// The most status documents one page reads while a status filter skips jobs.
    fn read_budget(&self) -> usize {
        self.top * 5 + 20
    }
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
        // Index names sort like jobs newest first, so "after the position" is "a greater name".
        let mut floor = filter
            .after
            .as_ref()
            .map(|at| index_blob(at.created_at, at.job_id).as_str().to_owned());
        // Unfiltered from the start, the first `top + 1` names are all that is needed.
        let page_size = if filter.status.is_none() && floor.is_none() {
            filter.top as u32 + 1
        } else {
            1000
        };
        // Entries of this instance's jobs still being written count as listed.
        let pending = self.pending_index_entries();
        let mut jobs = Vec::new();
        let mut read = 0;
        let mut marker = None;
        loop {
            let page = self.store.list(INDEX_PREFIX, marker, page_size).await?;
            // The names this page covers: up to its last one while more pages follow.
            let ceiling = page
                .next_marker
                .as_ref()
                .and(page.items.last())
                .map(|item| item.name.as_str().to_owned());
            let in_range = |name: &str| {
                floor.as_deref().is_none_or(|floor| name > floor)
                    && ceiling.as_deref().is_none_or(|ceiling| name <= ceiling)
            };
            let names: std::collections::BTreeSet<&str> = page
                .items
                .iter()
                .map(|item| item.name.as_str())
                .chain(pending.iter().map(String::as_str))
                .filter(|name| in_range(name))
                .collect();
            let mut entries = names
                .into_iter()
                .filter_map(parse_index_blob)
                .map(|(created_at, job_id)| ListPosition { created_at, job_id })
                .peekable();
            while entries.peek().is_some() {
                // Unfiltered, exactly the documents still wanted are read: the entries that
                // follow say whether there is a next page.
                let wanted = match filter.status {
                    None => filter.top - jobs.len(),
                    Some(_) => READS_IN_FLIGHT,
                };
                let loaded: Vec<_> = futures::stream::iter(entries.by_ref().take(wanted))
                    .map(|position| async move {
                        let loaded = self.load(position.job_id).await;
                        (position, loaded)
                    })
                    .buffered(READS_IN_FLIGHT)
                    .collect()
                    .await;
                for (position, loaded) in loaded {
                    read += 1;
                    let Some(document) = readable(position.job_id, loaded)? else {
                        continue;
                    };
                    if filter.status.is_none_or(|status| document.status == status) {
                        if jobs.len() == filter.top {
                            let next = jobs.last().map(ListPosition::of);
                            return Ok(JobPage { jobs, next });
                        }
                        jobs.push(document);
                    }
                    if filter.status.is_some() && read >= filter.read_budget() {
                        return Ok(JobPage {
                            jobs,
                            next: Some(position),
                        });
                    }
                }
                if filter.status.is_none() && jobs.len() == filter.top {
                    let more = entries.peek().is_some() || page.next_marker.is_some();
                    let next = more.then(|| jobs.last().map(ListPosition::of)).flatten();
                    return Ok(JobPage { jobs, next });
                }
            }
            match page.next_marker {
                Some(next) => {
                    marker = Some(next);
                    floor = ceiling;
                }
                None => return Ok(JobPage { jobs, next: None }),
            }
        }
    }

    /// The jobs created at or after `since`: the index is listed back to `since` only, and the
    /// entries this instance is still writing are added.
    pub async fn created_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<StatusDocument>, RepositoryError> {
        let pending = self.pending_index_entries();
        let mut ids = std::collections::HashSet::new();
        let mut marker = None;
        'listing: loop {
            let page = self.store.list(INDEX_PREFIX, marker, 250).await?;
            for item in &page.items {
                let Some((created_at, id)) = parse_index_blob(item.name.as_str()) else {
                    continue;
                };
                if created_at < since {
                    break 'listing;
                }
                ids.insert(id);
            }
            match page.next_marker {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        ids.extend(
            pending
                .iter()
                .filter_map(|name| parse_index_blob(name))
                .filter(|(created_at, _)| *created_at >= since)
                .map(|(_, id)| id),
        );
        let loaded: Vec<_> = futures::stream::iter(ids)
            .map(|id| async move { (id, self.load(id).await) })
            .buffer_unordered(READS_IN_FLIGHT)
            .collect()
            .await;
        let mut documents = Vec::with_capacity(loaded.len());
        for (id, loaded) in loaded {
            if let Some(document) = readable(id, loaded)? {
                if document.created_at >= since {
                    documents.push(document);
                }
            }
        }
        Ok(documents)
    }
}

/// A loaded document, or `None` when it is gone (an index entry outlives its job briefly while
/// it is purged) or cannot be read, which is logged and skipped.
fn readable(
    id: JobId,
    loaded: Result<Option<Versioned>, RepositoryError>,
) -> Result<Option<StatusDocument>, RepositoryError> {
    match loaded {
        Ok(found) => Ok(found.map(|versioned| versioned.document)),
        Err(RepositoryError::Corrupt(error)) => {
            tracing::warn!(
                blob = %super::repository::status_blob(id),
                error = %crate::telemetry::Chain(&error),
                "skipping a status document that does not parse"
            );
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeDelta;

    use super::*;
    use crate::jobs::request::{JobRequest, Limit, Priority, Source};
    use crate::jobs::status::SubredditOutcome;
    use crate::reddit::Subreddit;
    use crate::store::local::LocalDirStore;
    use crate::store::steered::Steered;
    use crate::store::BlobStore;

    fn finished(created_at: DateTime<Utc>) -> StatusDocument {
        let subreddit = Subreddit::parse("technology").unwrap();
        let request = JobRequest {
            source: Source::Reddit,
            topics: vec![subreddit.clone()],
            limit: Limit::DEFAULT,
            priority: Priority::Normal,
            callback_url: None,
        };
        let mut doc = StatusDocument::queued(JobId::new(), request, None, created_at);
        doc.claim(created_at, 0).unwrap();
        doc.record(
            SubredditOutcome::success(subreddit, 1, "x.json".into()),
            created_at,
        )
        .unwrap();
        doc.finish(created_at).unwrap();
        doc
    }

    #[tokio::test]
    async fn list_and_metrics_cost_what_they_answer_with_not_every_job_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Steered::new(dir.path(), ()));
        store.ensure_container().await.unwrap();
        let repository = StatusRepository::new(store.clone());
        let now = crate::jobs::status::now();
        // 1,000 jobs kept: 980 from the last month, 20 from the last 24 hours.
        let mut newest = None;
        for n in 0..1000 {
            let age = if n < 20 {
                TimeDelta::minutes(n * 30)
            } else {
                TimeDelta::hours(25 + n)
            };
            let doc = finished(now - age);
            newest.get_or_insert(doc.job_id);
            repository.create(&doc).await.unwrap();
        }
        // Every list entry in storage, none left for the list to take from memory.
        repository.finish_index_writes().await;
        store.take_calls();

        let filter = ListFilter {
            status: None,
            top: 1,
            after: None,
        };
        let page = repository.list(&filter).await.unwrap();
        let list_requests = store.take_calls();
        assert_eq!(page.jobs.len(), 1);
        assert_eq!(Some(page.jobs[0].job_id), newest);
        assert!(page.next.is_some());
        assert_eq!(list_requests, 2, "list top=1: one listing, one read");

        let recent = repository
            .created_since(now - TimeDelta::hours(24))
            .await
            .unwrap();
        let metrics_requests = store.take_calls();
        assert_eq!(recent.len(), 20);
        assert!(
            metrics_requests <= 50,
            "metrics made {metrics_requests} requests"
        );
    }

    #[tokio::test]
    async fn pages_follow_one_another_newest_first_with_and_without_a_status_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn BlobStore> =
            Arc::new(LocalDirStore::new(dir.path().to_owned(), "hot-topics"));
        store.ensure_container().await.unwrap();
        let repository = StatusRepository::new(store);
        let now = crate::jobs::status::now();
        let mut expected = Vec::new();
        for n in 0..7 {
            let created = now - TimeDelta::minutes(n);
            let doc = if n % 2 == 0 {
                finished(created)
            } else {
                let mut doc = finished(created);
                doc.status = JobStatus::Failed;
                doc
            };
            expected.push((doc.job_id, doc.status));
            repository.create(&doc).await.unwrap();
        }
        for status in [None, Some(JobStatus::Failed)] {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = repository
                    .list(&ListFilter {
                        status,
                        top: 2,
                        after: after.clone(),
                    })
                    .await
                    .unwrap();
                seen.extend(page.jobs.iter().map(|doc| doc.job_id));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            let wanted: Vec<JobId> = expected
                .iter()
                .filter(|(_, s)| status.is_none_or(|status| *s == status))
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(seen, wanted, "status filter {status:?}");
        }
    }

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
