//! Counting what a piece of work costs: the storage and Reddit requests it sends and the bytes it
//! writes, for the cost of a job (`crate::jobs::usage`).
//!
//! The work runs inside [`metered`] with a [`Meter`]; the clients count each request they send
//! with [`count`] (each attempt, retries included) and do nothing outside a metered scope. The
//! scope is task-local: a task spawned by the work is counted only when it runs inside
//! [`metered`] too.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A request sent on behalf of the metered work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A blob read (each request of a ranged download, and a properties read).
    Read,
    /// A blob write, or a container creation.
    Write,
    /// One page of a blob listing.
    List,
    /// A blob deletion.
    Delete,
    /// Any request to a storage queue.
    Queue,
    /// Any request to Reddit (a listing, or a token).
    Reddit,
}

impl Request {
    const ALL: [Request; 6] = [
        Request::Read,
        Request::Write,
        Request::List,
        Request::Delete,
        Request::Queue,
        Request::Reddit,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts at one moment, or the difference between two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    requests: [u64; 6],
    pub bytes_written: u64,
}

impl Reading {
    pub fn requests(&self, kind: Request) -> u64 {
        self.requests[kind.index()]
    }

    /// One request of `kind`.
    pub fn one(kind: Request) -> Self {
        let mut reading = Self::default();
        reading.requests[kind.index()] = 1;
        reading
    }

    pub fn plus(mut self, other: Reading) -> Self {
        for kind in Request::ALL {
            self.requests[kind.index()] += other.requests(kind);
        }
        self.bytes_written += other.bytes_written;
        self
    }

    /// What `self` counted beyond `earlier` (never below zero).
    pub fn since(mut self, earlier: Reading) -> Self {
        for kind in Request::ALL {
            self.requests[kind.index()] =
                self.requests(kind).saturating_sub(earlier.requests(kind));
        }
        self.bytes_written = self.bytes_written.saturating_sub(earlier.bytes_written);
        self
    }
}

/// The counts of one piece of work, and how much of them has been recorded ("flushed") where
/// the work keeps its totals.
#[derive(Debug)]
pub struct Meter {
    /// What the counts belong to (a job id), so a record is charged only with its own work.
    owner: u128,
    requests: [AtomicU64; 6],
    bytes_written: AtomicU64,
    flushed: Mutex<Flushed>,
}

#[derive(Debug, Default)]
struct Flushed {
    reading: Reading,
    /// While the clock runs: when the time since was last flushed (or the clock started).
    clock: Option<Instant>,
}

/// What is still to be recorded: counts, and seconds on the clock.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Unflushed {
    pub reading: Reading,
    pub seconds: f64,
    /// The instant the seconds run to; passed back to [`Meter::flushed`].
    until: Option<Instant>,
}

impl Meter {
    pub fn new(owner: u128) -> Arc<Self> {
        Arc::new(Self {
            owner,
            requests: Default::default(),
            bytes_written: AtomicU64::new(0),
            flushed: Mutex::default(),
        })
    }

    pub fn owner(&self) -> u128 {
        self.owner
    }

    /// Everything counted so far.
    pub fn reading(&self) -> Reading {
        let mut reading = Reading::default();
        for kind in Request::ALL {
            reading.requests[kind.index()] = self.requests[kind.index()].load(Ordering::SeqCst);
        }
        reading.bytes_written = self.bytes_written.load(Ordering::SeqCst);
        reading
    }

    /// Starts counting wall seconds (a run of the work begins).
    pub fn start_clock(&self) {
        self.flushed.lock().expect("meter lock").clock = Some(Instant::now());
    }

    /// Stops counting wall seconds; those not flushed yet are dropped.
    pub fn stop_clock(&self) {
        self.flushed.lock().expect("meter lock").clock = None;
    }

    /// What was counted and not yet recorded.
    pub fn unflushed(&self) -> Unflushed {
        let flushed = self.flushed.lock().expect("meter lock");
        let now = Instant::now();
        Unflushed {
            reading: self.reading().since(flushed.reading),
            seconds: flushed
                .clock
                .map_or(0.0, |since| now.duration_since(since).as_secs_f64()),
            until: flushed.clock.map(|_| now),
        }
    }

    /// `recorded` is now part of the work's totals: `unflushed` as it was taken, plus
    /// `extra`, the requests of the write that recorded it.
    pub fn flushed(&self, recorded: Unflushed, extra: Reading) {
        let mut flushed = self.flushed.lock().expect("meter lock");
        flushed.reading = flushed.reading.plus(recorded.reading).plus(extra);
        if let (Some(_), Some(until)) = (flushed.clock, recorded.until) {
            flushed.clock = Some(until);
        }
    }

    fn count(&self, kind: Request) {
        self.requests[kind.index()].fetch_add(1, Ordering::SeqCst);
    }

    fn count_written(&self, bytes: u64) {
        self.bytes_written.fetch_add(bytes, Ordering::SeqCst);
    }
}

tokio::task_local! {
    static CURRENT: Arc<Meter>;
}

/// Runs `work` with its requests counted on `meter`.
pub async fn metered<F: Future>(meter: Arc<Meter>, work: F) -> F::Output {
    CURRENT.scope(meter, work).await
}

/// `work`, metered as the work under way is (for a task it spawns).
pub fn inherited<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let meter = current();
    async move {
        match meter {
            Some(meter) => metered(meter, work).await,
            None => work.await,
        }
    }
}

/// The meter of the work under way, if it is metered.
pub fn current() -> Option<Arc<Meter>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Counts one request of `kind` sent by the work under way (nothing when it is not metered).
pub fn count(kind: Request) {
    let _ = CURRENT.try_with(|meter| meter.count(kind));
}

/// Counts a write request of `bytes` bytes of content sent by the work under way.
pub fn count_write(bytes: usize) {
    let _ = CURRENT.try_with(|meter| {
        meter.count(Request::Write);
        meter.count_written(bytes as u64);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_counted_inside_the_scope_only_and_flushed_once() {
        let meter = Meter::new(7);
        count(Request::Read);
        metered(meter.clone(), async {
            count(Request::Read);
            count_write(10);
            count(Request::Reddit);
        })
        .await;
        let pending = meter.unflushed();
        assert_eq!(pending.reading.requests(Request::Read), 1);
        assert_eq!(pending.reading.requests(Request::Write), 1);
        assert_eq!(pending.reading.requests(Request::Reddit), 1);
        assert_eq!(pending.reading.bytes_written, 10);
        assert_eq!(pending.seconds, 0.0, "no clock runs");

        meter.flushed(pending, Reading::default());
        assert_eq!(meter.unflushed().reading, Reading::default());
        metered(meter.clone(), async { count(Request::List) }).await;
        assert_eq!(meter.unflushed().reading, Reading::one(Request::List));
    }

    #[tokio::test]
    async fn the_requests_of_the_write_that_records_them_are_not_counted_twice() {
        let meter = Meter::new(7);
        metered(meter.clone(), async {
            count(Request::Read);
            let pending = meter.unflushed();
            // The recording write itself, sent once and counted by the store.
            count_write(5);
            let mut itself = Reading::one(Request::Write);
            itself.bytes_written = 5;
            meter.flushed(pending, itself);
            // A retry the store made inside the same call: still to be recorded.
            count_write(5);
        })
        .await;
        let left = meter.unflushed().reading;
        assert_eq!(left.requests(Request::Write), 1);
        assert_eq!(left.requests(Request::Read), 0);
        assert_eq!(left.bytes_written, 5);
    }

    #[test]
    fn the_clock_counts_seconds_from_its_start_and_from_each_flush() {
        let meter = Meter::new(7);
        assert_eq!(meter.unflushed().seconds, 0.0);
        let before = Instant::now();
        meter.start_clock();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let first = meter.unflushed();
        assert!(first.seconds >= 0.02, "{}", first.seconds);
        meter.flushed(first, Reading::default());
        let second = meter.unflushed();
        // The second reading starts where the first ended: together they never exceed the
        // time since the start.
        assert!(first.seconds + second.seconds <= before.elapsed().as_secs_f64());
        meter.stop_clock();
        assert_eq!(meter.unflushed().seconds, 0.0);
    }
}
