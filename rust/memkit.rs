// SPDX-License-Identifier: GPL-2.0

//! memkit: persistent-memory micro-journals, remote-memory prefetch and checkpoint
//! dirty tracking, as three misc devices.
//!
//! This file is the crate root of `memkit.ko`: it registers `/dev/memkit-journal`,
//! `/dev/memkit-rmem` and `/dev/memkit-ckpt`. Each device lives in a file of its own;
//! `uapi.rs` is the boundary that copies ABI structs in and out; `pure/` holds the logic
//! shared with the host tools (no `unsafe`, no kernel dependency).

use kernel::{
    miscdevice::{
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*,
};

mod ckpt;
mod dax;
mod edge;
mod event;
mod journal;
mod mm;
pub mod pure;
mod rmem;
mod uapi;

module! {
    type: Memkit,
    name: "memkit",
    authors: ["memkit developers"],
    description: "Persistent-memory journals, remote-memory prefetch, checkpoint dirty tracking",
    license: "GPL",
}

/// The loaded module: its three devices, registered in order and deregistered in
/// reverse order when it is dropped.
///
/// Device nodes are created by devtmpfs with its default mode, 0600 root:root: only
/// root opens them.
#[pin_data]
struct Memkit {
    #[pin]
    _journal: MiscDeviceRegistration<journal::JournalDevice>,
    #[pin]
    _rmem: MiscDeviceRegistration<rmem::RmemDevice>,
    #[pin]
    _ckpt: MiscDeviceRegistration<ckpt::CkptDevice>,
    /// The journal's module-wide state: dropped after the devices are gone.
    _journal_state: journal::Registration,
    /// Remote memory's workqueue: destroyed (drained) after the devices are gone.
    _rmem_state: rmem::Registration,
}

impl kernel::InPlaceModule for Memkit {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _journal_state: journal::Registration::new()?,
            _rmem_state: rmem::Registration::new()?,
            _journal <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"memkit-journal",
            }),
            _rmem <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"memkit-rmem",
            }),
            _ckpt <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"memkit-ckpt",
            }),
        })
    }
}
