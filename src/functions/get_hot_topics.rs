//! GetHotTopics: the 6-hourly timer (api.md section 1).
//!
//! A run submits the configured collection job to SummaryWomble over HTTP with the function
//! key, logs the ticket, checks the job's status once after a delay, purges expired jobs, and
//! returns without waiting for the job. Each run sends an `Idempotency-Key` derived from its
//! schedule slot, so a doubled or retried run cannot start a second job for the same slot.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::envelope::{Invocation, TimerInfo};
use super::FunctionContext;
use crate::outbound::failure;

/// A 6-field NCRONTAB schedule (`sec min hour day month weekday`, UTC), as the Functions host
/// reads `function.json`'s `schedule`.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    text: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a 6-field NCRONTAB schedule: {reason}")]
pub struct InvalidSchedule {
    text: String,
    reason: String,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, InvalidSchedule> {
        let invalid = |reason: String| InvalidSchedule {
            text: text.to_owned(),
            reason,
        };
        if text.split_whitespace().count() != 6 {
            return Err(invalid("it needs exactly 6 fields".into()));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|error| invalid(error.to_string()))?;
        Ok(Self {
            cron,
            text: text.to_owned(),
        })
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

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
            Err((error, _)) => tracing::error!(error = %error, "scheduled GetHotTopics run failed"),
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

/// One timer run. `Ok` holds the log lines; the caller answers the host.
pub async fn run(
    context: &FunctionContext,
    invocation: &Invocation,
) -> Result<RunLog, (RunError, RunLog)> {
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

async fn submit_and_check(
    context: &FunctionContext,
    idempotency_key: &str,
    log: &mut RunLog,
) -> Result<(), RunError> {
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
        .map_err(|error| RunError::Unreachable(failure(&error).to_owned()))?;
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
        Err(error) => log.warn(format!(
            "Status check of job {job_id} failed: {}",
            failure(&error)
        )),
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
                    for outcome in status["results"]["results"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
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
    match context
        .jobs
        .repository()
        .purge_finished_before(cutoff)
        .await
    {
        Ok(purged) => log.info(format!(
            "Purged {purged} finished jobs older than {days} days"
        )),
        Err(error) => log.warn(format!("Purging expired jobs failed: {error}")),
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

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_six_hourly_schedule_fires_at_00_06_12_and_18_utc() {
        let schedule = Schedule::parse("0 0 */6 * * *").unwrap();
        let mut next = at("2026-11-28T05:59:59Z");
        let mut seen = Vec::new();
        for _ in 0..5 {
            next = schedule.next_after(next).unwrap();
            seen.push(next.to_rfc3339());
        }
        assert_eq!(
            seen,
            [
                "2026-11-28T06:00:00+00:00",
                "2026-11-28T12:00:00+00:00",
                "2026-11-28T18:00:00+00:00",
                "2026-11-29T00:00:00+00:00",
                "2026-11-29T06:00:00+00:00",
            ]
        );
        // An occurrence itself is not "after" itself.
        assert_eq!(
            schedule.next_after(at("2026-11-28T06:00:00Z")).unwrap(),
            at("2026-11-28T12:00:00Z")
        );
    }

    #[test]
    fn ncrontab_weekdays_count_from_sunday_as_0() {
        // Every Monday at 09:30:15. 2026-11-28 is a Saturday.
        let schedule = Schedule::parse("15 30 9 * * 1").unwrap();
        assert_eq!(
            schedule.next_after(at("2026-11-28T00:00:00Z")).unwrap(),
            at("2026-11-30T09:30:15Z")
        );
        let sunday = Schedule::parse("0 0 12 * * 0").unwrap();
        assert_eq!(
            sunday.next_after(at("2026-11-28T00:00:00Z")).unwrap(),
            at("2026-11-29T12:00:00Z")
        );
    }

    #[test]
    fn schedules_that_are_not_six_fields_are_refused() {
        for bad in [
            "",
            "0 */6 * * *",
            "0 0 */6 * * * 2026",
            "a b c d e f",
            "0 0 25 * * *",
            "61 0 0 * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
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
    fn without_schedule_status_the_slot_is_the_six_hour_window() {
        let a = slot_key(&timer(None), Some("2026-11-28T06:00:00.1Z"));
        let b = slot_key(&timer(None), Some("2026-11-28T11:59:59Z"));
        let c = slot_key(&timer(None), Some("2026-11-28T12:00:00Z"));
        assert_eq!(a, b);
        assert_ne!(b, c);
    }
}
