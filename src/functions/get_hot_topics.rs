//! GetHotTopics: the 6-hourly timer (api.md section 1).
//!
//! A run submits the configured collection job to SummaryWomble over HTTP with the function
//! key, logs the ticket, checks the job's status once after a delay, purges expired jobs, and
//! returns without waiting for the job. Each run sends an `Idempotency-Key` derived from its
//! schedule slot, so a doubled or retried run cannot start a second job for the same slot.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::envelope::{Invocation, TimerInfo};
use super::FunctionContext;

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
        return format!("GetHotTopics:next:{}", next.with_timezone(&Utc).to_rfc3339());
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

/// One timer run. `Ok` holds the log lines; the caller answers the host.
pub async fn run(context: &FunctionContext, invocation: &Invocation) -> Result<RunLog, (RunError, RunLog)> {
    let mut log = RunLog::default();
    let timer: TimerInfo = match invocation.data.get("mytimer") {
        Some(value) => match super::envelope::binding(value) {
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
    let key = slot_key(&timer, utc_now.as_deref());
    match submit_and_check(context, &key, &mut log).await {
        Ok(()) => {}
        Err(error) => return Err((error, log)),
    }
    purge_expired(context, &mut log).await;
    Ok(log)
}

fn summary_womble_url(context: &FunctionContext) -> String {
    match &context.settings.timer.summary_womble_url {
        Some(url) => url.to_string(),
        None => format!(
            "http://127.0.0.1:{}/api/SummaryWomble",
            context.settings.mode.port()
        ),
    }
}

async fn submit_and_check(context: &FunctionContext, idempotency_key: &str, log: &mut RunLog) -> Result<(), RunError> {
    let timer = &context.settings.timer;
    let url = summary_womble_url(context);
    let topics: Vec<&str> = timer.subreddits.iter().map(|s| s.as_str()).collect();
    let body = json!({"source": "reddit", "topics": topics, "limit": timer.limit});
    log.info(format!(
        "Submitting the scheduled collection of {} subreddits (limit {}) to SummaryWomble",
        topics.len(),
        timer.limit
    ));
    let mut request = context
        .http
        .post(&url)
        .header("Idempotency-Key", idempotency_key)
        .json(&body);
    if let Some(key) = &timer.summary_womble_key {
        request = request.header("x-functions-key", key.expose_secret());
    }
    let answer = request
        .send()
        .await
        .map_err(|error| RunError::Unreachable(describe(&error)))?;
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap_or_default();
    let document: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match status {
        202 => {}
        200 => {
            // An older SummaryWomble answered synchronously with the finished results.
            log.info(format!(
                "SummaryWomble answered synchronously (HTTP 200): status {}, {} topics",
                document["status"].as_str().unwrap_or("unknown"),
                document["total_topics"]
            ));
            return Ok(());
        }
        _ => {
            return Err(RunError::Refused {
                status,
                body: text.chars().take(300).collect(),
            })
        }
    }
    let Some(job_id) = document["job_id"].as_str() else {
        return Err(RunError::Refused {
            status,
            body: "the ticket has no job_id".into(),
        });
    };
    log.info(format!(
        "Job {job_id} accepted for topics {}",
        document["topics_requested"]
    ));

    tokio::time::sleep(timer.status_check_delay).await;
    let mut check = context
        .http
        .post(&url)
        .json(&json!({"action": "status", "job_id": job_id}));
    if let Some(key) = &timer.summary_womble_key {
        check = check.header("x-functions-key", key.expose_secret());
    }
    match check.send().await {
        Err(error) => log.warn(format!("Status check of job {job_id} failed: {}", describe(&error))),
        Ok(answer) if !answer.status().is_success() => log.warn(format!(
            "Status check of job {job_id} answered HTTP {}",
            answer.status().as_u16()
        )),
        Ok(answer) => {
            let status: Value = answer.json().await.unwrap_or(Value::Null);
            let progress = &status["progress"];
            log.info(format!(
                "Job {job_id} is {} ({} of {} subreddits, step {})",
                status["status"].as_str().unwrap_or("unknown"),
                progress["completed"],
                progress["total"],
                progress["step"]
            ));
            match status["status"].as_str() {
                Some("completed") => {
                    for outcome in status["results"]["results"].as_array().into_iter().flatten() {
                        log.info(format!(
                            "  r/{}: {}{}",
                            outcome["subreddit"].as_str().unwrap_or("?"),
                            outcome["status"].as_str().unwrap_or("?"),
                            outcome["topics_count"]
                                .as_u64()
                                .map(|n| format!(", {n} topics"))
                                .unwrap_or_default()
                        ));
                    }
                }
                Some("failed") => log.warn(format!(
                    "Job {job_id} failed: {}",
                    status["error"].as_str().unwrap_or("no reason given")
                )),
                _ => {}
            }
        }
    }
    Ok(())
}

async fn purge_expired(context: &FunctionContext, log: &mut RunLog) {
    let days = context.settings.jobs.retention_days;
    let cutoff = Utc::now() - TimeDelta::days(i64::from(days));
    match context.jobs.repository().purge_finished_before(cutoff).await {
        Ok(purged) => log.info(format!(
            "Purged {purged} finished jobs older than {days} days"
        )),
        Err(error) => log.warn(format!("Purging expired jobs failed: {error}")),
    }
}

/// reqwest's errors name the URL, which may carry a `code`; keep only the kind.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::envelope::ScheduleStatus;

    fn timer(next: Option<&str>) -> TimerInfo {
        TimerInfo {
            schedule: None,
            schedule_status: next.map(|next| ScheduleStatus {
                last: None,
                next: Some(next.to_owned()),
                last_updated: None,
            }),
            is_past_due: false,
        }
    }

    #[test]
    fn the_slot_key_comes_from_the_next_occurrence_when_known() {
        let a = slot_key(&timer(Some("2026-11-28T12:00:00+00:00")), Some("2026-11-28T06:00:01Z"));
        let b = slot_key(&timer(Some("2026-11-28T12:00:00Z")), Some("2026-11-28T06:03:00Z"));
        assert_eq!(a, b);
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
