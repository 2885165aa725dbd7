//! What people read: tickets, status documents, the results table and the job list, as text,
//! or (with `--json`) as the documents the API sent, one per line.
//!
//! Everything here goes to stdout: it is the command's output, and a script may capture it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use super::progress::{progress_line, Display};
use crate::client::{Fetched, JobList, Ticket};
use crate::jobs::status::OutcomeStatus;
use crate::jobs::{JobStatus, StatusDocument, SubredditOutcome};

/// A ticket from a submit or a retry.
pub fn ticket(ticket: &Fetched<Ticket>, display: Display) {
    if display == Display::Json {
        return json(&ticket.raw);
    }
    let parsed = &ticket.parsed;
    let retry = parsed
        .retry_of
        .map(|old| format!(" (retry of {old})"))
        .unwrap_or_default();
    println!(
        "job {} {}{retry}: {}, limit {}",
        parsed.job_id,
        parsed.status,
        subreddit_list(parsed.topics_requested.iter().map(String::as_str)),
        parsed.limit
    );
}

/// A status document, as `handler status` shows it.
pub fn status(status: &Fetched<StatusDocument>, display: Display) {
    if display == Display::Json {
        return json(&status.raw);
    }
    let document = &status.parsed;
    let request = &document.request;
    let mut fields = vec![
        ("job", document.job_id.to_string()),
        ("status", document.status.to_string()),
        (
            "progress",
            format!(
                "{}/{} {}",
                document.progress.completed, document.progress.total, document.progress.step
            ),
        ),
        (
            "request",
            format!(
                "{}, limit {}, priority {}",
                subreddit_list(request.topics.iter().map(|name| name.as_str())),
                request.limit.get(),
                wire_name(request.priority)
            ),
        ),
        ("created", timestamp(Some(document.created_at))),
        ("started", timestamp(document.started_at)),
        ("finished", timestamp(document.finished_at)),
    ];
    if let Some(old) = document.retry_of {
        fields.push(("retry of", old.to_string()));
    }
    if let Some(at) = document.cancel_requested_at {
        if !document.status.is_terminal() {
            fields.push(("cancel", format!("requested {}", timestamp(Some(at)))));
        }
    }
    if let Some(error) = &document.error {
        fields.push(("error", error.clone()));
    }
    for (name, value) in fields {
        println!("{name:<9} {value}");
    }
    if let Some(results) = &document.results {
        println!();
        print!("{}", results_table(&results.results));
    }
}

/// How a followed job ended: one summary line and the results table. (With `--json` the final
/// document was already printed while following.)
pub fn finished(last: &Fetched<StatusDocument>, display: Display) {
    if display == Display::Json {
        return;
    }
    let document = &last.parsed;
    let took = document
        .finished_at
        .map(|end| end - document.started_at.unwrap_or(document.created_at))
        .and_then(|took| took.to_std().ok())
        .map(|took| format!(" in {:.1}s", took.as_secs_f64()))
        .unwrap_or_default();
    let (succeeded, topics) = document
        .results
        .as_ref()
        .map(|results| {
            let succeeded = results
                .results
                .iter()
                .filter(|outcome| outcome.status == OutcomeStatus::Success)
                .count();
            (succeeded, results.total_topics)
        })
        .unwrap_or((0, 0));
    println!(
        "job {} {}{took}: {succeeded} of {} subreddits, {topics} topics",
        document.job_id,
        document.status,
        document.request.topics.len()
    );
    if let Some(error) = &document.error {
        println!("error: {error}");
    }
    if let Some(results) = &document.results {
        print!("{}", results_table(&results.results));
    }
}

/// The answer to a cancel.
pub fn cancelled(status: &Fetched<StatusDocument>, display: Display) {
    if display == Display::Json {
        return json(&status.raw);
    }
    let document = &status.parsed;
    if document.status == JobStatus::Cancelled {
        println!("job {} cancelled", document.job_id);
    } else {
        println!(
            "cancel requested: job {} fetches nothing more and ends cancelled (now {})",
            document.job_id,
            progress_line(document)
        );
    }
}

/// A page of the job list.
pub fn list(list: &Fetched<JobList>, display: Display) {
    if display == Display::Json {
        return json(&list.raw);
    }
    let jobs = &list.parsed.jobs;
    if jobs.is_empty() {
        println!("no jobs");
    } else {
        let rows = jobs
            .iter()
            .map(|job| {
                vec![
                    job.job_id.to_string(),
                    job.status.to_string(),
                    format!("{}/{}", job.progress.completed, job.progress.total),
                    timestamp(Some(job.created_at)),
                    subreddit_list(job.request.topics.iter().map(|name| name.as_str())),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["JOB", "STATUS", "DONE", "CREATED", "SUBREDDITS"], rows)
        );
    }
    if let Some(token) = &list.parsed.continuation {
        println!("more: add --continuation {token}");
    }
}

/// One line per subreddit: what became of it, and its blob or its error.
pub fn results_table(outcomes: &[SubredditOutcome]) -> String {
    let rows = outcomes
        .iter()
        .map(|outcome| {
            vec![
                outcome.subreddit.to_string(),
                wire_name(outcome.status),
                outcome
                    .topics_count
                    .map_or_else(|| "-".to_owned(), |count| count.to_string()),
                outcome
                    .blob_name
                    .clone()
                    .or_else(|| outcome.error.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(&["SUBREDDIT", "STATUS", "TOPICS", "BLOB OR ERROR"], rows)
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (index, (cell, width)) in cells.into_iter().zip(&widths).enumerate() {
            if index == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut text = line(headers.to_vec());
    for row in &rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

fn subreddit_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|name| format!("r/{name}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn timestamp(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |at| at.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// A value's name in the API's JSON (`high`, `fetch_failed`), so text and JSON agree.
fn wire_name(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}

fn json(value: &Value) {
    println!("{value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reddit::Subreddit;

    #[test]
    fn the_results_table_shows_the_blob_of_a_success_and_the_error_of_a_failure() {
        let outcomes = [
            SubredditOutcome::success(
                Subreddit::parse("technology").unwrap(),
                10,
                "20250811_135221_reddit_technology.json".into(),
            ),
            SubredditOutcome::failed(
                Subreddit::parse("privatesub").unwrap(),
                OutcomeStatus::FetchFailed,
                "r/privatesub is private (HTTP 403)".into(),
            ),
        ];
        assert_eq!(
            results_table(&outcomes),
            "\
SUBREDDIT   STATUS        TOPICS  BLOB OR ERROR
technology  success       10      20250811_135221_reddit_technology.json
privatesub  fetch_failed  -       r/privatesub is private (HTTP 403)
"
        );
    }
}
