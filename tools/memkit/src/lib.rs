//! memkit's userspace library: opening the devices and calling their ioctls.
//!
//! The ABI itself (structs, command numbers, rules) is [`memkit_core::abi`], the same
//! Rust file the kernel module compiles.

pub mod dev;
pub mod track;

pub use memkit_core as core;
