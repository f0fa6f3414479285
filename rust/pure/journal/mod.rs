// SPDX-License-Identifier: GPL-2.0

//! The micro-journal: on-media format, recovery planning and the commit protocol,
//! over an abstract persistent memory ([`pmem::Pmem`]).

pub mod engine;
pub mod format;
pub mod pmem;
pub mod recovery;
