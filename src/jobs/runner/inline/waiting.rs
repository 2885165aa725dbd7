//! The jobs of this instance that wait for one of its workers (inline dispatch): high priority
//! first, then the oldest.

use std::collections::{BinaryHeap, HashSet};

use crate::jobs::id::JobId;
use crate::jobs::request::Priority;

/// A job waiting for a worker. Ordered so the heap pops high priority first, then the oldest.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Waiting {
    pub(super) priority: Priority,
    pub(super) sequence: u64,
    pub(super) job: JobId,
    pub(super) start: Start,
}

/// How the worker that takes a waiting job claims it. Either way the claim is made by that
/// worker, when it starts the job, never earlier: a claimed job always has a live worker
/// heartbeating it, so it never looks stale while it waits here.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// Submitted here: claimed only while its claim count is still `seen_attempts` (another
    /// instance may have adopted it while it waited).
    Submitted { seen_attempts: u32 },
    /// Found stale by a scan: claimed only if it is still stale when the worker starts.
    Stale,
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.sequence.cmp(&self.sequence))
    }
}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub(super) struct WaitingJobs {
    pub(super) waiting: BinaryHeap<Waiting>,
    /// Every job waiting here or run by a worker here, so a scan does not adopt our own.
    pub(super) ours: HashSet<JobId>,
    /// Workers running a job now; the others are idle or about to take a waiting job.
    pub(super) busy: usize,
    pub(super) sequence: u64,
}
