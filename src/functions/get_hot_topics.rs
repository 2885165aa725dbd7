//! GetHotTopics: the 6-hourly timer (docs/api.md section 1).
//!
//! A run submits the configured collection job to SummaryWomble over HTTP with the function
//! key, logs the ticket, checks the job's status once after a delay, purges expired jobs, and
//! returns without waiting for the job. Each run sends an `Idempotency-Key` derived from its
//! schedule slot, so a doubled or retried run cannot start a second job for the same slot. The
//! key is an HMAC of the slot under the app's own secret (kept in storage), so no caller can
//! predict it and use it first to suppress a scheduled run.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::host_wire::{self, Invocation, TimerInfo};
use super::FunctionContext;
use crate::client::ClientError;
use crate::jobs::{JobStatus, RequestedJob, Source, StatusDocument};
use crate::schedule::Schedule;

/// Standalone mode's own timer: runs GetHotTopics at each occurrence of `schedule`, one run at
/// a time (an occurrence that passes during a long run is skipped, as the host does), until
/// `stop` is cancelled.
pub async fn run_on_schedule(
    context: FunctionContext,
    schedule: Schedule,
    stop: CancellationToken,
) {
    tracing::info!(schedule = %schedule, "GetHotTopics runs on its own schedule (standalone mode)");
    loop {
        let now = Utc::now();
        let Some(due) = schedule.next_after(now) else {
            return tracing::warn!(schedule = %schedule, "the schedule has no next occurrence");
        };
        let wait = (due - now).to_std().unwrap_or_default();
        tracing::info!(next_run = %due.to_rfc3339(), "GetHotTopics scheduled");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let next = schedule.next_after(due);
        let invocation = Invocation {
            data: [(
                "mytimer".to_owned(),
                json!({
                    "Schedule": {"AdjustForDST": false},
                    "ScheduleStatus": {
                        "Last": due.to_rfc3339(),
                        "Next": next.map(|next| next.to_rfc3339()),
                        "LastUpdated": Utc::now().to_rfc3339(),
                    },
                    "IsPastDue": false,
                }),
            )]
            .into(),
            metadata: Default::default(),
        };
        // `Next` names the following occurrence, which identifies this one's slot uniquely.
        match run(&context, &invocation).await {
            Ok(_) => tracing::info!("scheduled GetHotTopics run finished"),
            Err((error, _)) => {
                tracing::error!(error = %crate::telemetry::Chain(&error), "scheduled GetHotTopics run failed")
            }
        }
    }
}

/// A run's log: every line goes to the handler's log and into the invocation's `Logs`.
#[derive(Debug, Default)]
pub struct RunLog {
    pub lines: Vec<String>,
}

impl RunLog {
    fn info(&mut self, line: String) {
        tracing::info!(function = "GetHotTopics", "{line}");
        self.lines.push(line);
    }

    fn warn(&mut self, line: String) {
        tracing::warn!(function = "GetHotTopics", "{line}");
        self.lines.push(line);
    }
}

/// Why a run failed; the host records the invocation as failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the timer invocation is malformed: {0}")]
    BadInvocation(String),
    #[error("SummaryWomble could not be reached: {0}")]
    Unreachable(String),
    #[error("SummaryWomble refused the job (HTTP {status}): {body}")]
    Refused { status: u16, body: String },
    #[error("the app's secret could not be read from storage: {0}")]
    Secret(String),
}

/// The schedule slot a run belongs to: `ScheduleStatus.Next` when the host sent it (the next
/// occurrence identifies this one uniquely), else the time of the invocation rounded down to
/// the 6-hour slot.
pub fn slot_key(timer: &TimerInfo, utc_now: Option<&str>) -> String {
    if let Some(next) = timer
        .schedule_status
        .as_ref()
        .and_then(|status| status.next.as_deref())
        .and_then(|next| DateTime::parse_from_rfc3339(next).ok())
    {
        return format!(
            "GetHotTopics:next:{}",
            next.with_timezone(&Utc).to_rfc3339()
        );
    }
    let at = utc_now
        .and_then(|now| DateTime::parse_from_rfc3339(now).ok())
        .map(|now| now.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    let slot = at
        .duration_trunc(TimeDelta::hours(6))
        .expect("six hours divides a day");
    format!("GetHotTopics:slot:{}", slot.to_rfc3339())
}

/// The `Idempotency-Key` of a slot: the hex HMAC-SHA256 of [`slot_key`] under the app's own
/// secret. The slot is predictable; the key is not, except to the app.
pub fn slot_idempotency_key(secret: &[u8], slot: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(slot.as_bytes());
    format!("GetHotTopics:{}", hex::encode(mac.finalize().into_bytes()))
}

/// One timer run. `Ok` holds the log lines; the caller answers the host.
pub async fn run(
    context: &FunctionContext,
    invocation: &Invocation,
) -> Result<RunLog, (RunError, RunLog)> {
    let mut log = RunLog::default();
    let timer: TimerInfo = match invocation.data.get("mytimer") {
        Some(value) => match host_wire::binding(value) {
            Ok(timer) => timer,
            Err(error) => return Err((RunError::BadInvocation(error.to_string()), log)),
        },
        None => return Err((RunError::BadInvocation("no mytimer binding".into()), log)),
    };
    let utc_now = invocation
        .metadata
        .sys
        .as_ref()
        .and_then(|sys| sys.utc_now.clone());
    if timer.is_past_due {
        log.warn("GetHotTopics is running late (past due): a scheduled run was missed".into());
    }
    let secret = match context.jobs.repository().app_secret().await {
        Ok(secret) => secret,
        Err(error) => {
            let error = RunError::Secret(crate::telemetry::Chain(&error).to_string());
            return Err((error, log));
        }
    };
    let key = slot_idempotency_key(&secret, &slot_key(&timer, utc_now.as_deref()));
    let submitted = submit_and_check(context, &key, &mut log).await;
    // A failed submit does not skip the purge: retention must not depend on SummaryWomble.
    purge_expired(context, &mut log).await;
    scan_for_stale_jobs(context, &mut log).await;
    match submitted {
        Ok(()) => Ok(log),
        Err(error) => Err((error, log)),
    }
}

async fn submit_and_check(
    context: &FunctionContext,
    idempotency_key: &str,
    log: &mut RunLog,
) -> Result<(), RunError> {
    let timer = &context.settings.timer;
    let requested = RequestedJob {
        source: Some(Source::Reddit.name().to_owned()),
        topics: Some(timer.subreddits.iter().map(ToString::to_string).collect()),
        limit: Some(u64::from(timer.limit.get())),
        ..RequestedJob::default()
    };
    log.info(format!(
        "Submitting the scheduled collection of {} subreddits (limit {}) to SummaryWomble",
        timer.subreddits.len(),
        timer.limit.get()
    ));
    let ticket = context
        .summary_womble
        .submit(&requested, Some(idempotency_key))
        .await
        .map_err(RunError::from)?
        .parsed;
    let job_id = ticket.job_id;
    log.info(format!(
        "Job {job_id} accepted for topics {}",
        ticket.topics_requested.join(", ")
    ));

    tokio::time::sleep(timer.status_check_delay).await;
    match context.summary_womble.status(job_id).await {
        Err(error) => log.warn(format!("Status check of job {job_id} failed: {error}")),
        Ok(fetched) => log_status(log, &fetched.parsed),
    }
    Ok(())
}

/// What the one status check found.
fn log_status(log: &mut RunLog, status: &StatusDocument) {
    let job_id = status.job_id;
    let progress = &status.progress;
    log.info(format!(
        "Job {job_id} is {} ({} of {} subreddits, step {})",
        status.status, progress.completed, progress.total, progress.step
    ));
    match status.status {
        JobStatus::Completed => {
            for outcome in status.results.iter().flat_map(|results| &results.results) {
                log.info(format!(
                    "  r/{}: {}{}",
                    outcome.subreddit,
                    outcome.status.as_str(),
                    outcome
                        .topics_count
                        .map(|n| format!(", {n} topics"))
                        .unwrap_or_default()
                ));
            }
        }
        JobStatus::Failed => log.warn(format!(
            "Job {job_id} failed: {}",
            status.error.as_deref().unwrap_or("no reason given")
        )),
        _ => {}
    }
}

impl From<ClientError> for RunError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Api { status, message } => RunError::Refused {
                status,
                body: message.chars().take(300).collect(),
            },
            other => RunError::Unreachable(other.to_string()),
        }
    }
}

/// A dispatch whose jobs may sit still with no instance up to scan for them (a plan that scales
/// to zero) has each timer run scan once too.
async fn scan_for_stale_jobs(context: &FunctionContext, log: &mut RunLog) {
    match context.jobs.scan_at_timer_run().await {
        None | Some(Ok(0)) => {}
        Some(Ok(taken)) => log.info(format!(
            "Took care of {taken} jobs that sat still (sent again or ended)"
        )),
        Some(Err(error)) => log.warn(format!(
            "Scanning for jobs that sat still failed: {}",
            crate::telemetry::Chain(&error)
        )),
    }
}

async fn purge_expired(context: &FunctionContext, log: &mut RunLog) {
    let days = context.settings.jobs.retention_days;
    let cutoff = Utc::now() - TimeDelta::days(i64::from(days));
    match context
        .jobs
        .repository()
        .purge_finished_before(cutoff)
        .await
    {
        Ok(purged) => log.info(format!(
            "Purged {purged} finished jobs older than {days} days"
        )),
        Err(error) => log.warn(format!(
            "Purging expired jobs failed: {}",
            crate::telemetry::Chain(&error)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::host_wire::ScheduleStatus;

    fn timer(next: Option<&str>) -> TimerInfo {
        TimerInfo {
            schedule_status: next.map(|next| ScheduleStatus {
                next: Some(next.to_owned()),
            }),
            is_past_due: false,
        }
    }

    #[test]
    fn the_slot_key_comes_from_the_next_occurrence_when_known() {
        let a = slot_key(
            &timer(Some("2026-11-28T12:00:00+00:00")),
            Some("2026-11-28T06:00:01Z"),
        );
        let b = slot_key(
            &timer(Some("2026-11-28T12:00:00Z")),
            Some("2026-11-28T06:03:00Z"),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn the_idempotency_key_of_a_slot_depends_on_the_secret() {
        let slot = slot_key(&timer(Some("2026-11-28T12:00:00Z")), None);
        let key = slot_idempotency_key(b"secret", &slot);
        assert_eq!(key, slot_idempotency_key(b"secret", &slot));
        assert_ne!(key, slot_idempotency_key(b"another", &slot));
        assert!(!key.contains("2026"), "{key}");
        // A valid Idempotency-Key: printable ASCII, at most 200 characters.
        assert!(crate::jobs::IdempotencyKey::parse(key.as_bytes()).is_ok());
    }

    #[test]
    fn without_schedule_status_the_slot_is_the_six_hour_window() {
        let a = slot_key(&timer(None), Some("2026-11-28T06:00:00.1Z"));
        let b = slot_key(&timer(None), Some("2026-11-28T11:59:59Z"));
        let c = slot_key(&timer(None), Some("2026-11-28T12:00:00Z"));
        assert_eq!(a, b);
        assert_ne!(b, c);
    }
}
