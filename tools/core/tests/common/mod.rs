//! Test support shared by the journal's integration tests.
//!
//! - [`sim`]: a simulated persistent memory that tracks, per 64-byte cache line, what
//!   is durable and what a crash may leave behind, and records crash points at every
//!   persistence barrier; plus a fault-injecting wrapper used to show that the
//!   explorer can fail.
//! - [`explorer`]: the crash-state explorer: runs workloads through the real engine
//!   on the simulator, recovers every (or a sample of every) crash image, and checks
//!   the result against a model of the data region.
//! - [`rng`]: a small seeded generator, so that randomised runs are reproducible.

pub mod explorer;
pub mod rng;
pub mod sim;
