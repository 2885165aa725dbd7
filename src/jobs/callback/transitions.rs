//! The completion callback's part of the job state machine: who may send it (a claim with a
//! lease), and how each attempt is recorded, until it is delivered or abandoned. Transitions of
//! the [`StatusDocument`] that holds the record, so that a claim and the job's end are written
//! by the same conditional writes.

use chrono::{DateTime, Utc};

use super::record::{CallbackRecord, CallbackState};
use crate::jobs::lease::Lease;
use crate::jobs::status::{StatusDocument, TransitionError};

impl StatusDocument {
    /// Whether this job's callback is still to be delivered.
    pub fn callback_owed(&self) -> bool {
        self.callback
            .as_ref()
            .is_some_and(|record| record.state == CallbackState::Owed)
    }

    /// The owed callback's record and lease.
    fn owed_callback(&mut self) -> Result<(&mut CallbackRecord, &mut Lease), TransitionError> {
        let record = self
            .callback
            .as_mut()
            .filter(|record| record.state == CallbackState::Owed)
            .ok_or(TransitionError::NoCallbackOwed)?;
        Ok((record, &mut self.internals.callback_lease))
    }

    /// Takes the claim to send the owed callback until `at + lease`, and returns its number.
    /// Refused while another claim holds. Without a claim yet, `quiet_before` (for an instance
    /// that did not end the job) also asks the job to have ended before it: the instance that
    /// ended it claims the callback at once, and is given that long to do so.
    pub fn claim_callback(
        &mut self,
        at: DateTime<Utc>,
        lease: chrono::Duration,
        quiet_before: Option<DateTime<Utc>>,
    ) -> Result<u32, TransitionError> {
        let ended = self.finished_at.unwrap_or(self.updated_at);
        let (_, held) = self.owed_callback()?;
        held.take(at, lease, ended, quiet_before)
            .ok_or(TransitionError::CallbackClaimed)
    }

    /// Keeps claim number `claim` for another `lease`, while its holder sends.
    pub fn renew_callback_claim(
        &mut self,
        claim: u32,
        at: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<(), TransitionError> {
        let (_, held) = self.owed_callback()?;
        if held.renew(claim, at, lease) {
            Ok(())
        } else {
            Err(TransitionError::Superseded)
        }
    }

    /// Records one request sent under claim number `claim`: a success settles the callback
    /// (whoever holds the claim by now: it was delivered); a failure counts, and the callback
    /// is abandoned once `max_attempts` requests have failed.
    pub fn callback_sent(
        &mut self,
        claim: u32,
        outcome: Result<(), String>,
        max_attempts: u32,
    ) -> Result<CallbackState, TransitionError> {
        let (record, held) = self.owed_callback()?;
        match outcome {
            Ok(()) => {
                record.attempts += 1;
                record.state = CallbackState::Delivered;
                held.release();
            }
            Err(failure) => {
                if !held.is_current(claim) {
                    return Err(TransitionError::Superseded);
                }
                record.attempts += 1;
                record.last_error = Some(failure);
                if record.attempts >= max_attempts {
                    record.state = CallbackState::Abandoned;
                    held.release();
                }
            }
        }
        Ok(record.state)
    }
}
