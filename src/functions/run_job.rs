//! RunJob: the queue-triggered function of queue dispatch (docs/api.md section 9). Each
//! delivery of a job's message runs the job to a terminal state, resuming from its status
//! document; see [`crate::jobs::JobRunner::run_delivered`] for what a delivery does.

use serde_json::Value;
use tracing::Instrument;

use super::FunctionContext;
use crate::jobs::runner::{Delivered, JobMessage};
use crate::telemetry::Chain;

/// Runs the job `message` names. `Ok` with the invocation's log lines when the message is done
/// with (including messages that name no job, which no delivery could ever run); `Err` with the
/// reason when the message is to be delivered again.
pub async fn run(
    context: &FunctionContext,
    message: &Value,
    dequeue_count: u32,
) -> Result<Vec<String>, String> {
    let job = match JobMessage::job_of(message) {
        Ok(job) => job,
        Err(reason) => {
            tracing::error!(
                function = "RunJob",
                reason,
                "a queue message that names no job; dropping it"
            );
            return Ok(vec![format!(
                "Dropped a message that names no job: {reason}"
            )]);
        }
    };
    let span = tracing::info_span!("job", job_id = %job, dequeue_count);
    match context
        .jobs
        .run_delivered(job, dequeue_count)
        .instrument(span)
        .await
    {
        Ok(delivered) => Ok(vec![describe(job, &delivered)]),
        Err(error) => Err(format!("Job {job} could not be run: {}", Chain(&error))),
    }
}

fn describe(job: crate::jobs::JobId, delivered: &Delivered) -> String {
    match delivered {
        Delivered::Ran(status) => format!("Job {job} ran to {status}."),
        Delivered::AlreadyOver(status) => format!("Job {job} was {status} already."),
        Delivered::TakenOver => format!("Job {job} was taken over by another worker."),
        Delivered::RunningElsewhere => format!("Job {job} runs elsewhere."),
        Delivered::UnknownJob => format!("No job {job}; message dropped."),
        Delivered::Unreadable => format!("Job {job}'s status cannot be read; message dropped."),
    }
}
