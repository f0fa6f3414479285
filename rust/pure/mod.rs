// SPDX-License-Identifier: GPL-2.0

//! memkit's pure logic: code with no `unsafe` and no kernel dependency.
//!
//! Everything under `rust/pure/` is compiled twice: into `memkit.ko` as the module
//! `crate::pure`, and on the host as the `memkit-core` crate of `tools/`, where it is
//! unit-tested, property-tested and fuzzed. It may use `core` only: no allocation, no
//! locks, no I/O. The kernel side wraps it in thin boundary files.

pub mod abi;
pub mod ckpt;
pub mod crc32c;
pub mod journal;
pub mod rmem;
pub mod sort;
