//! How an accepted job reaches a worker: the [`Dispatch`] trait, with one implementation per
//! mode of `JOB_DISPATCH`, and [`Process`], what this process is as far as jobs go.
//!
//! The runner does what is the same in every mode: it stores the job before the ticket, claims
//! it with a conditional write when a worker starts it, runs it (fetches, outcomes,
//! heartbeats, cancel), delivers its callback, and scans for jobs that sat still. A mode
//! answers only the questions on which the modes differ:
//!
//! | question | method | `inline` ([`InlineDispatch`]) | `queue` ([`QueueDispatch`]) |
//! |---|---|---|---|
//! | what takes jobs in this process | [`start`](Dispatch::start) | `MAX_CONCURRENT_JOBS` workers | the queue listener, in a standalone server; nothing under the host (it delivers to `RunJob`) |
//! | what a ticket does once the status document is written | [`hand_over`](Dispatch::hand_over) | waits in this process, high priority first | one message on the Storage queue |
//! | whether a repeated `Idempotency-Key` hands its `queued` job over again | [`repeat_hands_over`](Dispatch::repeat_hands_over) | yes | no: its message was sent, or the scan sends it |
//! | what the stale-job scan does with a quiet job | [`quiet_job`](Dispatch::quiet_job) | an idle worker adopts it | its message is sent again, once; quiet again after that, it is ended `failed` |
//! | how long a job's storage calls are retried | [`storage_retry_budget`](Dispatch::storage_retry_budget) | until storage answers | `JOB_STALE_AFTER_SECONDS`, then the delivery fails and comes back |
//! | which delivery of a job's message is the last | [`last_delivery`](Dispatch::last_delivery) | the host's default | `host.json`'s `maxDequeueCount` |
//! | whether each GetHotTopics run scans too | [`scans_at_each_timer_run`](Dispatch::scans_at_each_timer_run) | no: the process that runs the timer scans anyway | yes: a plan that scales to zero may have no instance up between runs |
//! | how many messages its queues hold, for the metrics | [`queue_depth`](Dispatch::queue_depth) | none: no queue (`null`) | the job queue's and the poison queue's approximate counts |
//!
//! The mode is chosen once, in the composition root (`startup::Services::dispatch`), from the
//! settings and the [`Process`]; nothing else asks which mode it is.
//!
//! **Adding a mode** (say Service Bus, which the original design names for high-volume
//! periods) takes one new file, `src/jobs/runner/<mode>.rs`, with a type that implements
//! [`Dispatch`] (a mode that delivers messages hands each delivery to
//! [`JobRunner::run_delivered`], as [`QueueDispatch`] does), and one arm in
//! `startup::Services::dispatch` that builds it; its setting is read with the others in
//! `config/queues.rs`.
//!
//! [`InlineDispatch`]: super::InlineDispatch
//! [`QueueDispatch`]: super::QueueDispatch

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::JobRunner;
use crate::jobs::id::JobId;
use crate::jobs::metrics::QueueDepth;
use crate::jobs::repository::RepositoryError;
use crate::jobs::status::StatusDocument;
use crate::meter::Reading;
use crate::store::StoreError;

/// What this process is, as far as jobs go: the one fact from which the runner decides whether
/// it scans for other workers' stale jobs and whether it takes job messages itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The handler under the Functions host: the host's queue listener delivers job messages
    /// (`RunJob`); the process scans for stale jobs.
    HostedServer,
    /// The handler on its own (a container, `make run`): no host delivers messages, so it takes
    /// them itself; it scans for stale jobs.
    StandaloneServer,
    /// `handler collect`: runs the one job it submits, in this process, whatever the app's
    /// dispatch, and touches no other worker's job, however long it runs.
    OneOffCollection,
}

impl Process {
    /// Whether this process looks for, and takes care of, jobs that sat still.
    pub fn scans_for_stale_jobs(self) -> bool {
        matches!(self, Process::HostedServer | Process::StandaloneServer)
    }

    /// Whether this process takes job messages from their queue itself: nobody else delivers
    /// them to it.
    pub fn takes_messages(self) -> bool {
        self == Process::StandaloneServer
    }
}

/// One way for accepted jobs to reach a worker (see the module documentation).
#[async_trait]
pub trait Dispatch: Send + Sync + fmt::Debug {
    /// The mode's name, as `JOB_DISPATCH` spells it, for logs.
    fn name(&self) -> &'static str;

    /// Starts what takes jobs in this process, if the mode has anything here, as tasks of the
    /// runner's tracker that end with its shutdown.
    fn start(self: Arc<Self>, runner: &JobRunner);

    /// Hands a stored, `queued` job over to whatever runs it. An error means nothing will: the
    /// runner ends the job and refuses the submit.
    async fn hand_over(
        &self,
        runner: &JobRunner,
        document: &StatusDocument,
    ) -> Result<(), StoreError>;

    /// The requests a hand-over sends when it succeeds at once: the ticket's document is
    /// charged with them before they are sent (docs/cost.md).
    fn hand_over_requests(&self) -> Reading {
        Reading::default()
    }

    /// Whether a repeated `Idempotency-Key` whose job is still `queued` hands the job over
    /// again: stored by a submit that never heard back, the job may never have been handed
    /// over. A worker's claim is conditional, so a job handed over twice still runs once.
    fn repeat_hands_over(&self) -> bool;

    /// Whether `job` waits or runs in this process already: the stale-job scan leaves it alone.
    fn holds(&self, _job: JobId) -> bool {
        false
    }

    /// What the stale-job scan does with a job that is not over and whose status blob has not
    /// been written for `JOB_STALE_AFTER_SECONDS`. Returns whether it handed the job over or
    /// ended it (the scan counts them).
    async fn quiet_job(
        &self,
        runner: &JobRunner,
        document: &StatusDocument,
    ) -> Result<bool, RepositoryError>;

    /// How long the storage calls of a running job are retried before the run gives up;
    /// `None`: until storage answers.
    fn storage_retry_budget(&self, stale_after: Duration) -> Option<Duration>;

    /// The delivery of a job's message that is the last: a failure then ends the job `failed`
    /// before the message is parked. The host's default unless the mode knows better.
    fn last_delivery(&self) -> u32 {
        super::ListenerSettings::default().max_dequeue_count
    }

    /// Whether each GetHotTopics run scans for stale jobs too.
    fn scans_at_each_timer_run(&self) -> bool;

    /// How many messages the mode's queues hold now, for the metrics answer; `None` for a
    /// mode without a queue. A count that cannot be read is logged and left `None` in the
    /// answer: the metrics call still answers.
    async fn queue_depth(&self) -> Option<QueueDepth>;
}
