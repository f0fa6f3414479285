//! memkit's pure logic, built for the host from the same files the kernel module
//! compiles (`rust/pure/`), so that it can be tested and fuzzed here.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[path = "../../../rust/pure/mod.rs"]
mod pure;

pub use pure::*;
