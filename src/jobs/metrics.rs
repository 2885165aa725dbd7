//! The metrics answer (docs/api.md section 4): counts by status, success rate, mean and p95
//! duration, and failures by subreddit over the jobs of the last 24 hours; and, under queue
//! dispatch, how many messages wait on the job queue and the poison queue now.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::status::{JobStatus, StatusDocument};
use super::usage::cost::{Prices, PRICES};
use super::usage::Usage;

#[derive(Debug, Serialize)]
pub struct Metrics {
    pub since: DateTime<Utc>,
    pub total_jobs: usize,
    pub by_status: HashMap<&'static str, usize>,
    /// Completed among terminal jobs; `null` when none is terminal.
    pub success_rate: Option<f64>,
    pub mean_duration_seconds: Option<f64>,
    pub p95_duration_seconds: Option<f64>,
    pub failures_by_subreddit: HashMap<String, usize>,
    /// The queues' message counts now; `null` under a dispatch without a queue (inline).
    pub queue_depth: Option<QueueDepth>,
    /// What these jobs used together, as far as their documents recorded it.
    pub usage: Usage,
    /// That usage in US dollars at the list prices of docs/cost.md, before free grants.
    pub cost: Cost,
}

/// The cost figures of the metrics answer.
#[derive(Debug, Serialize)]
pub struct Cost {
    pub estimated_usd: f64,
    /// Over the jobs counted; `null` when there are none.
    pub estimated_usd_per_job: Option<f64>,
    pub prices: Prices,
}

/// About how many messages queue dispatch's queues hold, as the metrics answer shows them.
///
/// A count that could not be read (storage unavailable) is `None`, shown as `null`, rather
/// than a failed metrics call: the figures are for people watching, nothing decides on them,
/// and the rest of the answer is still worth having. The dispatch logs why it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Messages on the job queue: jobs waiting for a worker, and jobs being run (a message is
    /// deleted when its delivery ends).
    pub jobs: Option<u64>,
    /// Messages on the poison queue: jobs whose every delivery failed.
    pub poison: Option<u64>,
}

impl Metrics {
    /// The metrics of `documents`, the jobs created since `since`, with the queue depth the
    /// dispatch gave.
    pub fn of(
        documents: &[StatusDocument],
        since: DateTime<Utc>,
        queue_depth: Option<QueueDepth>,
    ) -> Self {
        let mut by_status: HashMap<&'static str, usize> = JobStatus::ALL
            .iter()
            .map(|status| (status.as_str(), 0))
            .collect();
        let mut failures_by_subreddit: HashMap<String, usize> = HashMap::new();
        let mut durations: Vec<f64> = Vec::new();
        for doc in documents {
            *by_status.entry(doc.status.as_str()).or_default() += 1;
            if let (Some(started), Some(finished)) = (doc.started_at, doc.finished_at) {
                durations.push((finished - started).num_milliseconds() as f64 / 1000.0);
            }
            for outcome in doc.results.iter().flat_map(|results| &results.results) {
                if outcome.error.is_some() {
                    *failures_by_subreddit
                        .entry(outcome.subreddit.as_str().to_ascii_lowercase())
                        .or_default() += 1;
                }
            }
        }
        let terminal = documents
            .iter()
            .filter(|doc| doc.status.is_terminal())
            .count();
        let completed = by_status[JobStatus::Completed.as_str()];
        durations.sort_by(f64::total_cmp);
        let mean =
            (!durations.is_empty()).then(|| durations.iter().sum::<f64>() / durations.len() as f64);
        let p95 = (!durations.is_empty()).then(|| {
            let rank = ((durations.len() as f64) * 0.95).ceil() as usize;
            durations[rank.clamp(1, durations.len()) - 1]
        });
        let usage = Usage::sum(documents.iter().map(|doc| &doc.usage));
        let estimated_usd = PRICES.of(&usage);
        let cost = Cost {
            estimated_usd,
            estimated_usd_per_job: (!documents.is_empty())
                .then(|| estimated_usd / documents.len() as f64),
            prices: PRICES,
        };
        Self {
            usage,
            cost,
            since,
            total_jobs: documents.len(),
            by_status,
            success_rate: (terminal > 0).then(|| completed as f64 / terminal as f64),
            mean_duration_seconds: mean,
            p95_duration_seconds: p95,
            failures_by_subreddit,
            queue_depth,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::request::{default_subreddits, JobRequest, Limit, Priority, Source};
    use crate::jobs::status::{OutcomeStatus, SubredditOutcome};
    use crate::jobs::JobId;
    use chrono::TimeDelta;

    fn job_that_ran(seconds: i64, succeeded: bool) -> StatusDocument {
        let at = crate::jobs::status::now();
        let request = JobRequest {
            source: Source::Reddit,
            topics: default_subreddits()[..1].to_vec(),
            limit: Limit::DEFAULT,
            priority: Priority::Normal,
            callback_url: None,
        };
        let subreddit = request.topics[0].clone();
        let mut doc = StatusDocument::queued(JobId::new(), request, None, at);
        doc.claim(at, 0).unwrap();
        let outcome = if succeeded {
            SubredditOutcome::success(subreddit, 3, "blob.json".into())
        } else {
            SubredditOutcome::failed(subreddit, OutcomeStatus::FetchFailed, "gone".into())
        };
        doc.record(outcome, at).unwrap();
        doc.finish(at + TimeDelta::seconds(seconds)).unwrap();
        doc
    }

    #[test]
    fn the_numbers_follow_from_the_jobs() {
        let mut jobs: Vec<StatusDocument> = (1..=19).map(|s| job_that_ran(s, true)).collect();
        jobs.push(job_that_ran(100, false));
        let metrics = Metrics::of(&jobs, Utc::now(), None);
        assert_eq!(metrics.total_jobs, 20);
        assert_eq!(metrics.by_status["completed"], 19);
        assert_eq!(metrics.by_status["failed"], 1);
        assert_eq!(metrics.by_status["queued"], 0);
        assert_eq!(metrics.success_rate, Some(0.95));
        // 1 + 2 + ... + 19 + 100 seconds over 20 jobs; the 95th percentile of 20 is the 19th.
        assert_eq!(metrics.mean_duration_seconds, Some(290.0 / 20.0));
        assert_eq!(metrics.p95_duration_seconds, Some(19.0));
        assert_eq!(metrics.failures_by_subreddit["technology"], 1);
    }

    #[test]
    fn usage_and_its_cost_are_summed_over_the_jobs() {
        use crate::meter::{Reading, Request};
        let mut jobs: Vec<StatusDocument> = (1..=3).map(|s| job_that_ran(s, true)).collect();
        for (index, job) in jobs.iter_mut().enumerate() {
            job.usage.add(Reading::one(Request::Write), index as f64);
        }
        let metrics = Metrics::of(&jobs, Utc::now(), None);
        assert_eq!(metrics.usage.storage_requests.write, 3);
        assert_eq!(metrics.usage.handler_seconds, 3.0);
        let each: f64 = jobs.iter().map(|job| PRICES.of(&job.usage)).sum();
        assert!((metrics.cost.estimated_usd - each).abs() < 1e-12);
        assert_eq!(
            metrics.cost.estimated_usd_per_job,
            Some(metrics.cost.estimated_usd / 3.0)
        );
        assert_eq!(
            Metrics::of(&[], Utc::now(), None)
                .cost
                .estimated_usd_per_job,
            None
        );
    }

    #[test]
    fn no_jobs_means_no_rates() {
        let metrics = Metrics::of(&[], Utc::now(), None);
        assert_eq!(metrics.total_jobs, 0);
        assert_eq!(metrics.success_rate, None);
        assert_eq!(metrics.p95_duration_seconds, None);
    }

    #[test]
    fn the_queue_depth_is_null_without_a_queue_and_two_counts_with_one() {
        let answer = |depth| serde_json::to_value(Metrics::of(&[], Utc::now(), depth)).unwrap();
        assert_eq!(answer(None)["queue_depth"], serde_json::Value::Null);
        let counted = QueueDepth {
            jobs: Some(3),
            poison: Some(1),
        };
        assert_eq!(
            answer(Some(counted))["queue_depth"],
            serde_json::json!({"jobs": 3, "poison": 1})
        );
        let poison_unread = QueueDepth {
            jobs: Some(0),
            poison: None,
        };
        assert_eq!(
            answer(Some(poison_unread))["queue_depth"],
            serde_json::json!({"jobs": 0, "poison": null})
        );
    }
}
