// SPDX-License-Identifier: GPL-2.0

//! [`Event`]: a wait queue with a sequence number, for waits that must not hold the
//! lock of the state they wait on, or must be killable.
//!
//! `kernel::sync::CondVar` of 7.3 sleeps with its lock released and re-taken, and
//! only uninterruptibly or interruptibly. A page fault needs two other things: to
//! sleep with no lock at all (after dropping the mmap lock, before `VM_FAULT_RETRY`)
//! and to sleep killably (when it cannot drop the mmap lock). A waiter here samples
//! [`Event::seq`] while it holds the lock that orders the state it waits on, drops
//! every lock, and sleeps until the sequence moves; a notifier changes that state,
//! then calls [`Event::notify_all`], which bumps the sequence before it wakes. A
//! change made after the sample always moves the sequence after it, so no wake-up is
//! lost. The wait queue lives in `rmem_edge.c`'s helpers (`wait_event_*_timeout` are
//! macros).

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{
    bindings,
    ffi::{c_int, c_long},
    prelude::*,
    types::Opaque,
};

// In C (`rmem_edge.c`): `init_waitqueue_head` and `wait_event_*_timeout` are macros.
extern "C" {
    fn memkit_event_init(wq: *mut bindings::wait_queue_head);
    fn memkit_event_wake_all(wq: *mut bindings::wait_queue_head);
    fn memkit_event_wait(
        wq: *mut bindings::wait_queue_head,
        seq: *const u64,
        seen: u64,
        interruptible: bool,
        timeout: c_long,
    ) -> c_int;
}

/// How a wait may be interrupted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Sleep {
    /// By any signal.
    Interruptible,
    /// By a fatal signal only.
    Killable,
}

/// A signal ended the wait.
#[derive(Debug)]
pub(crate) struct Interrupted;

/// A wait queue and the sequence number its notifications bump.
#[pin_data]
pub(crate) struct Event {
    #[pin]
    wq: Opaque<bindings::wait_queue_head>,
    seq: AtomicU64,
}

// SAFETY: the wait queue is made to be used from any thread (it has its own lock).
unsafe impl Send for Event {}
// SAFETY: as above.
unsafe impl Sync for Event {}

impl Event {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Event {
            // SAFETY: `slot` is valid for writes and pinned; `init_waitqueue_head`
            // initialises it in place.
            wq <- Opaque::ffi_init(|slot| unsafe { memkit_event_init(slot) }),
            seq: AtomicU64::new(0),
        })
    }

    /// The current sequence number: sample it under the lock of the state waited on.
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Wakes every waiter; call after the state change (with or without its lock).
    pub(crate) fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::AcqRel);
        // SAFETY: the wait queue was initialised by `new` and lives as long as `self`.
        unsafe { memkit_event_wake_all(self.wq.get()) };
    }

    /// Sleeps until the sequence differs from `seen`, `timeout` jiffies pass
    /// (`MAX_SCHEDULE_TIMEOUT`: none), or a signal `how` allows. The caller holds no
    /// spinlock (it sleeps).
    pub(crate) fn wait(&self, seen: u64, how: Sleep, timeout: c_long) -> Result<(), Interrupted> {
        // SAFETY: the wait queue is initialised and lives as long as `self`; `seq`
        // is a valid, aligned u64 for the whole call (read with READ_ONCE).
        let ret = unsafe {
            memkit_event_wait(
                self.wq.get(),
                self.seq.as_ptr(),
                seen,
                how == Sleep::Interruptible,
                timeout,
            )
        };
        if ret == 0 {
            Ok(())
        } else {
            Err(Interrupted)
        }
    }
}
