//! memkit's userspace library: opening the devices and calling their ioctls, and
//! the checkpointer, backup replica and stream built on them; offline work on journal
//! images ([`image`]: what `memkit journal format` and `check` do).
//!
//! The ABI itself (structs, command numbers, rules) is [`memkit_core::abi`], the same
//! Rust file the kernel module compiles.

pub mod ckpt_log;
pub mod dev;
pub mod image;
pub mod nbd;
pub mod pmem_file;
pub mod primary;
pub mod regions;
pub mod replica;
pub mod rmem_agent;
pub mod rmem_nbd;
pub mod signature;
pub mod stream;
pub mod target;
pub mod track;
pub mod workload;

pub use memkit_core as core;
