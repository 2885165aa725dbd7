//! The hand-off's part of the job state machine: wanting one, who may send it (a claim with a
//! lease), and recording it sent. Transitions of the [`StatusDocument`] that holds the record,
//! so that the job's end, a claim and the `sent` mark are written by the same conditional
//! writes as the rest of the document.

use chrono::{DateTime, Utc};

use super::record::{HandoffRecord, HandoffState};
use crate::jobs::status::{StatusDocument, TransitionError};

impl StatusDocument {
    /// Marks a job that has not ended as owing a hand-off when it ends. Done when the job is
    /// created with `COMPLETION_QUEUE` set; every later ending turns it owed by itself.
    pub fn want_handoff(&mut self) -> Result<(), TransitionError> {
        if self.status.is_terminal() {
            return Err(TransitionError::Terminal(self.status));
        }
        self.internals
            .handoff
            .get_or_insert_with(HandoffRecord::wanted);
        Ok(())
    }

    /// Whether this job's hand-off is still to be sent.
    pub fn handoff_owed(&self) -> bool {
        self.internals
            .handoff
            .as_ref()
            .is_some_and(|record| record.state == HandoffState::Owed)
    }

    /// The owed hand-off's record.
    fn owed_handoff(&mut self) -> Result<&mut HandoffRecord, TransitionError> {
        self.internals
            .handoff
            .as_mut()
            .filter(|record| record.state == HandoffState::Owed)
            .ok_or(TransitionError::NoHandoffOwed)
    }

    /// Takes the claim to send the owed hand-off until `at + lease`, and returns its number.
    /// Refused while another claim holds. Without a claim yet, `quiet_before` (for an instance
    /// that did not end the job) also asks the job to have ended before it.
    pub fn claim_handoff(
        &mut self,
        at: DateTime<Utc>,
        lease: chrono::Duration,
        quiet_before: Option<DateTime<Utc>>,
    ) -> Result<u32, TransitionError> {
        let ended = self.finished_at.unwrap_or(self.updated_at);
        self.owed_handoff()?
            .lease
            .take(at, lease, ended, quiet_before)
            .ok_or(TransitionError::HandoffClaimed)
    }

    /// Keeps claim number `claim` for another `lease`, while its holder sends.
    pub fn renew_handoff_claim(
        &mut self,
        claim: u32,
        at: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<(), TransitionError> {
        if self.owed_handoff()?.lease.renew(claim, at, lease) {
            Ok(())
        } else {
            Err(TransitionError::Superseded)
        }
    }

    /// Records the message on the queue, whoever holds the claim by now: it was sent, and is
    /// not sent again.
    pub fn handoff_sent(&mut self) -> Result<(), TransitionError> {
        let record = self.owed_handoff()?;
        record.state = HandoffState::Sent;
        record.lease.release();
        Ok(())
    }
}
