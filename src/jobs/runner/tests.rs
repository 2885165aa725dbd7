//! The runner over a local directory store, with a topic source or a store of the test's
//! making.

mod cancel;
mod handoff;
mod idempotency;
mod panics;
mod queue;
