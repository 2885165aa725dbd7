//! The hand-off record: where a job's message to the next stage stands, kept with the job's
//! internals so that a hand-off owed outlives the instance that owes it.
//!
//! `wanted → owed → sent`. A job created while `COMPLETION_QUEUE` is set wants a hand-off; the
//! conditional write that makes it terminal turns that into `owed` (whichever path ends it:
//! [`StatusDocument::end`](crate::jobs::status::StatusDocument) does it, so no ending needs the
//! settings). An instance sends only while it holds the claim (a [`Lease`] it renews while it
//! sends), and records `sent` with a conditional write once the queue has the message.
//!
//! The whole record is for instances only: the next stage hears of a job from its message, and
//! `status.json` stays as it is. It is kept in the status blob's metadata
//! ([`crate::jobs::status::stored`]).

use crate::jobs::lease::Lease;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffState {
    /// The job has not ended yet; when it does, its hand-off is owed.
    Wanted,
    /// The job has ended and its message is not known to be on the queue yet.
    Owed,
    /// The message is on the queue; it is not sent again.
    Sent,
}

impl HandoffState {
    const ALL: [HandoffState; 3] = [HandoffState::Wanted, HandoffState::Owed, HandoffState::Sent];

    /// The stable text form, as the status blob's metadata holds it.
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffState::Wanted => "wanted",
            HandoffState::Owed => "owed",
            HandoffState::Sent => "sent",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

/// A job's hand-off: its state, and who may send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffRecord {
    pub state: HandoffState,
    pub lease: Lease,
}

impl HandoffRecord {
    /// The record of a job that will owe a hand-off when it ends.
    pub fn wanted() -> Self {
        Self {
            state: HandoffState::Wanted,
            lease: Lease::default(),
        }
    }

    /// The job ended: a wanted hand-off is owed from this write on.
    pub fn job_ended(&mut self) {
        if self.state == HandoffState::Wanted {
            self.state = HandoffState::Owed;
        }
    }
}
