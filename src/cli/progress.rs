//! Following a job until it ends, shown the way the output can take it.
//!
//! At a terminal, a live bar: elapsed time since the job was accepted, subreddits done of
//! total, status and current step. When stdout is a file or a pipe, a bar would be a mess of
//! control characters, so each change becomes one plain line (`running 3/7 processing
//! r/gadgets`). With `--json`, each changed status document is printed as one JSON line.
//! Heartbeats change only `updated_at`, which is not a change worth showing.

use std::future::Future;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::Fetched;
use crate::jobs::{JobStatus, StatusDocument};

/// How often the job's status is read while following it.
const POLL_EVERY: Duration = Duration::from_millis(500);

const BAR_TEMPLATE: &str = "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}";

/// How progress (and everything else the command line prints) is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A live progress bar: stdout is a terminal.
    Bar,
    /// One plain line per change: stdout is a file or a pipe.
    Lines,
    /// `--json`: documents as the API sends them, one per line.
    Json,
}

impl Display {
    pub fn choose(json: bool, terminal: bool) -> Self {
        match (json, terminal) {
            (true, _) => Display::Json,
            (false, true) => Display::Bar,
            (false, false) => Display::Lines,
        }
    }
}

/// Reads the job's status with `fetch` until it is terminal, showing each change, and returns
/// the terminal document. An error ends the following at once.
pub async fn follow<F, Fut, E>(display: Display, mut fetch: F) -> Result<Fetched<StatusDocument>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Fetched<StatusDocument>, E>>,
{
    let mut view = View::new(display);
    loop {
        let fetched = match fetch().await {
            Ok(fetched) => fetched,
            Err(error) => {
                view.abandon();
                return Err(error);
            }
        };
        view.show(&fetched);
        if fetched.parsed.status.is_terminal() {
            view.finish();
            return Ok(fetched);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// What a person sees change: the status and the progress.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: JobStatus,
    completed: u32,
    total: u32,
    step: String,
}

impl Seen {
    fn of(document: &StatusDocument) -> Self {
        Self {
            status: document.status,
            completed: document.progress.completed,
            total: document.progress.total,
            step: document.progress.step.to_string(),
        }
    }
}

/// The plain line for one state of a job.
pub fn progress_line(document: &StatusDocument) -> String {
    let progress = &document.progress;
    format!(
        "{} {}/{} {}",
        document.status, progress.completed, progress.total, progress.step
    )
}

struct View {
    display: Display,
    last: Option<Seen>,
    /// Made at the first document, so its clock can start when the job was accepted.
    bar: Option<ProgressBar>,
}

impl View {
    fn new(display: Display) -> Self {
        Self {
            display,
            last: None,
            bar: None,
        }
    }

    fn show(&mut self, fetched: &Fetched<StatusDocument>) {
        let document = &fetched.parsed;
        let seen = Seen::of(document);
        if self.last.as_ref() == Some(&seen) {
            return;
        }
        match self.display {
            Display::Bar => {
                let bar = self.bar.get_or_insert_with(|| new_bar(document));
                bar.set_length(u64::from(seen.total));
                bar.set_position(u64::from(seen.completed));
                bar.set_message(format!("{} · {}", seen.status, seen.step));
            }
            Display::Lines => println!("{}", progress_line(document)),
            Display::Json => println!("{}", fetched.raw),
        }
        self.last = Some(seen);
    }

    /// Leaves the final bar on screen.
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }

    /// Leaves the bar as it was, so the error printed after it reads as what stopped it.
    fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

fn new_bar(document: &StatusDocument) -> ProgressBar {
    let age = (chrono::Utc::now() - document.created_at)
        .to_std()
        .unwrap_or_default();
    let style = ProgressStyle::with_template(BAR_TEMPLATE)
        .expect("the template is valid")
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(
        Some(u64::from(document.progress.total)),
        ProgressDrawTarget::stdout(),
    )
    .with_style(style)
    .with_elapsed(age);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobId, JobRequest, Limit, Priority, Source};
    use crate::reddit::Subreddit;

    fn document() -> StatusDocument {
        let request = JobRequest {
            source: Source::Reddit,
            topics: ["technology", "gadgets"]
                .iter()
                .map(|name| Subreddit::parse(name).unwrap())
                .collect(),
            limit: Limit::DEFAULT,
            priority: Priority::Normal,
            callback_url: None,
        };
        StatusDocument::queued(JobId::new(), request, None, crate::jobs::status::now())
    }

    #[test]
    fn without_a_terminal_progress_is_plain_lines_and_json_wins_over_both() {
        assert_eq!(Display::choose(false, true), Display::Bar);
        assert_eq!(Display::choose(false, false), Display::Lines);
        assert_eq!(Display::choose(true, true), Display::Json);
        assert_eq!(Display::choose(true, false), Display::Json);
    }

    #[test]
    fn a_progress_line_names_the_status_the_count_and_the_step() {
        let mut document = document();
        document.status = JobStatus::Running;
        document.progress.completed = 1;
        document.progress.step = crate::jobs::ProgressStep::Processing(
            crate::reddit::Subreddit::parse("gadgets").unwrap(),
        );
        assert_eq!(progress_line(&document), "running 1/2 processing r/gadgets");
    }

    #[test]
    fn a_heartbeat_is_not_a_change() {
        let mut document = document();
        let before = Seen::of(&document);
        document.updated_at += chrono::Duration::seconds(30);
        assert_eq!(Seen::of(&document), before);
        document.progress.completed = 1;
        assert_ne!(Seen::of(&document), before);
    }
}
