//! What the holder of a claim does with storage: the status writes it makes (claim, renewals,
//! the record of its work), and keeping its claim renewed while it works.
//!
//! Work under a lease (a completion callback's delivery, a hand-off's send) reaches storage only
//! through [`StatusWrites`], the status writes of whoever runs it (the job runner, which retries
//! them as it retries every storage call), so the work's module knows nothing of the runner.

use std::future::Future;
use std::time::Duration;

use crate::jobs::id::JobId;
use crate::jobs::repository::RepositoryError;
use crate::jobs::status::{StatusDocument, TransitionError};

/// The status writes a holder makes: `change` applied to `job`'s stored status document with a
/// conditional write, retried while storage may get over its failure.
pub trait StatusWrites: Sync {
    fn update<T, F>(
        &self,
        job: JobId,
        change: F,
    ) -> impl Future<Output = Result<(StatusDocument, T), RepositoryError>> + Send
    where
        T: Send,
        F: Fn(&mut StatusDocument) -> Result<T, TransitionError> + Send + Sync;
}

/// Why a claim could no longer be renewed.
#[derive(Debug)]
pub enum ClaimLost {
    /// The renewal was refused: another instance holds a later claim, or the work is no longer
    /// owed (its holder recorded it done).
    Refused(TransitionError),
    /// The job is gone (purged): nothing is owed any more.
    JobGone,
    /// Storage did not take the renewal; the claim lapses unless the work ends first.
    Unrenewed(RepositoryError),
}

/// Renews a claim every `every` with `renew` (a transition that keeps the claim for another
/// lease); returns only when it cannot. Run beside the work, which ends the claim by finishing.
pub async fn keep_renewed<W, F>(writes: &W, job: JobId, every: Duration, renew: F) -> ClaimLost
where
    W: StatusWrites,
    F: Fn(&mut StatusDocument) -> Result<(), TransitionError> + Send + Sync,
{
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match writes.update(job, &renew).await {
            Ok(_) => {}
            Err(RepositoryError::Transition(reason)) => return ClaimLost::Refused(reason),
            Err(RepositoryError::NotFound) => return ClaimLost::JobGone,
            Err(error) => return ClaimLost::Unrenewed(error),
        }
    }
}
