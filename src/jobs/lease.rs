//! A claim with a lease: which instance may do a piece of work an ended job still owes, and
//! that must be done by one instance at a time (send its completion callback, put its hand-off
//! message on the completion queue).
//!
//! A claim is taken with a conditional write of the job's status document, so of several
//! instances trying at once one wins. It holds until its lease runs out; its holder renews it
//! while it works, so a claim whose holder died lapses and another instance takes over. Claims
//! are numbered, so a holder whose claim lapsed and was taken over knows it.
//!
//! The lease is for instances only: it is kept with the job's other internals, in its status
//! blob's metadata ([`crate::jobs::status::stored`]). [`writes`] holds what a holder does with
//! it: the status writes it makes, and keeping its claim renewed.

use chrono::{DateTime, Utc};

pub mod writes;

/// Who may do the work: the instance holding the current claim, until it lapses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    /// Claims taken so far; the number of the current one.
    pub claims: u32,
    /// While an instance holds the claim: until when (it renews it while it works).
    pub claimed_until: Option<DateTime<Utc>>,
}

impl Lease {
    /// Takes the next claim, until `at + length`, and returns its number; `None` while another
    /// claim holds. Without any claim yet, `quiet_before` (for an instance that did not end the
    /// job) also asks the job to have ended (`ended`) before it: the instance that ended the
    /// job claims at once, and is given that long to do so.
    pub fn take(
        &mut self,
        at: DateTime<Utc>,
        length: chrono::Duration,
        ended: DateTime<Utc>,
        quiet_before: Option<DateTime<Utc>>,
    ) -> Option<u32> {
        let free = match self.claimed_until {
            Some(until) => until <= at,
            None => quiet_before.is_none_or(|before| ended <= before),
        };
        if !free {
            return None;
        }
        self.claims += 1;
        self.claimed_until = Some(at + length);
        Some(self.claims)
    }

    /// Keeps claim number `claim` for another `length` from `at`; `false` when a later claim
    /// was taken meanwhile.
    pub fn renew(&mut self, claim: u32, at: DateTime<Utc>, length: chrono::Duration) -> bool {
        if !self.is_current(claim) {
            return false;
        }
        self.claimed_until = Some(at + length);
        true
    }

    /// Whether `claim` is the latest claim taken.
    pub fn is_current(&self, claim: u32) -> bool {
        self.claims == claim
    }

    /// The work is done: nobody holds it any more, and nobody needs to.
    pub fn release(&mut self) {
        self.claimed_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn one_claim_holds_at_a_time_and_a_lapsed_one_is_taken_over() {
        let length = chrono::Duration::seconds(5);
        let mut lease = Lease::default();
        let ended = at(0);
        // Another instance waits for the job to be quiet; the one that ended it need not.
        assert_eq!(lease.take(at(0), length, ended, Some(at(-1))), None);
        assert_eq!(lease.take(at(0), length, ended, None), Some(1));
        assert_eq!(lease.take(at(4), length, ended, None), None);
        assert!(lease.renew(1, at(4), length), "the holder keeps it");
        assert_eq!(lease.take(at(6), length, ended, Some(at(6))), None);
        assert_eq!(lease.take(at(9), length, ended, Some(at(9))), Some(2));
        assert!(!lease.renew(1, at(9), length), "claim 1 was taken over");
        assert!(lease.is_current(2) && !lease.is_current(1));
        lease.release();
        assert_eq!(lease.claimed_until, None);
    }
}
