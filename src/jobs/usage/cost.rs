//! Usage in US dollars: list prices of the Flex Consumption plan and of Storage, applied to a
//! job's [`Usage`](super::Usage). Where each price comes from, and its date, is in
//! docs/cost.md; change them there and here together.

use serde::Serialize;

use super::Usage;

/// The prices an estimate used, shown with it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prices {
    /// Flex Consumption, on demand: per GB-second of instance memory while executing.
    pub usd_per_gb_second: f64,
    /// The instance memory the template deploys (2,048 MB), in GB.
    pub instance_gb: f64,
    /// Blob write operations (also what a listing costs), hot tier, LRS: per request.
    pub usd_per_write: f64,
    /// Blob read operations (and deletions, at most this), hot tier, LRS: per request.
    pub usd_per_read: f64,
    /// Queue operations: per request (docs/cost.md says which price stands in).
    pub usd_per_queue_request: f64,
}

/// The prices of docs/cost.md (checked 2026-12-08).
pub const PRICES: Prices = Prices {
    usd_per_gb_second: 0.000026,
    instance_gb: 2.0,
    usd_per_write: 0.05 / 10_000.0,
    usd_per_read: 0.004 / 10_000.0,
    usd_per_queue_request: 0.05 / 10_000.0,
};

impl Prices {
    /// What `usage` costs at these prices, before any free grant, in US dollars.
    pub fn of(&self, usage: &Usage) -> f64 {
        let requests = &usage.storage_requests;
        let compute = usage.handler_seconds * self.instance_gb * self.usd_per_gb_second;
        let storage = (requests.write + requests.list) as f64 * self.usd_per_write
            + (requests.read + requests.delete) as f64 * self.usd_per_read
            + requests.queue as f64 * self.usd_per_queue_request;
        compute + storage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::{Reading, Request};

    #[test]
    fn a_standard_job_costs_its_writes_reads_and_seconds_at_the_listed_prices() {
        let mut usage = Usage::default();
        for _ in 0..18 {
            usage.add(Reading::one(Request::Write), 0.0);
        }
        usage.add(Reading::one(Request::Read), 1.5);
        // 18 writes at $0.05 per 10,000, one read at $0.004 per 10,000, 3 GB-s at $0.000026.
        let expected = 18.0 * 0.000005 + 0.0000004 + 3.0 * 0.000026;
        assert!(
            (PRICES.of(&usage) - expected).abs() < 1e-12,
            "{}",
            PRICES.of(&usage)
        );
    }
}
