// SPDX-License-Identifier: GPL-2.0

//! Counters: each region's and the module's (`/sys/kernel/debug/memkit/rmem`).

use super::*;

/// The contents of `/sys/kernel/debug/memkit/rmem`: the module's counters, one
/// `name value` per line.
pub(super) struct GlobalStats;

impl core::fmt::Debug for GlobalStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut s = abi::RmemStats::default();
        GLOBAL.snapshot(&mut s);
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        writeln!(f, "regions {}", r(&GLOBAL.regions))?;
        for (name, v) in [
            ("faults_sync", s.faults_sync),
            ("faults_local", s.faults_local),
            ("faults_wait", s.faults_wait),
            ("prefetches", s.prefetches),
            ("installed", s.installed),
            ("hits", s.hits),
            ("late", s.late),
            ("wasted", s.wasted),
            ("evictions", s.evictions),
            ("writebacks", s.writebacks),
            ("bytes_in", s.bytes_in),
            ("bytes_out", s.bytes_out),
        ] {
            writeln!(f, "{name} {v}")?;
        }
        write!(f, "lat_hist_us_log2")?;
        for n in s.lat_hist {
            write!(f, " {n}")?;
        }
        writeln!(f)
    }
}

/// Counters of one region, or of the module.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) regions: AtomicU64,
    pub(super) faults_sync: AtomicU64,
    pub(super) faults_local: AtomicU64,
    pub(super) faults_wait: AtomicU64,
    pub(super) prefetches: AtomicU64,
    pub(super) installed: AtomicU64,
    pub(super) hits: AtomicU64,
    pub(super) late: AtomicU64,
    pub(super) wasted: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) writebacks: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) lat_hist: [AtomicU64; abi::RMEM_LAT_BUCKETS],
}

impl Counters {
    pub(super) const fn new() -> Counters {
        Counters {
            regions: AtomicU64::new(0),
            faults_sync: AtomicU64::new(0),
            faults_local: AtomicU64::new(0),
            faults_wait: AtomicU64::new(0),
            prefetches: AtomicU64::new(0),
            installed: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            late: AtomicU64::new(0),
            wasted: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            writebacks: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            lat_hist: [const { AtomicU64::new(0) }; abi::RMEM_LAT_BUCKETS],
        }
    }

    pub(super) fn snapshot(&self, out: &mut abi::RmemStats) {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.faults_sync = r(&self.faults_sync);
        out.faults_local = r(&self.faults_local);
        out.faults_wait = r(&self.faults_wait);
        out.prefetches = r(&self.prefetches);
        out.installed = r(&self.installed);
        out.hits = r(&self.hits);
        out.late = r(&self.late);
        out.wasted = r(&self.wasted);
        out.evictions = r(&self.evictions);
        out.writebacks = r(&self.writebacks);
        out.bytes_in = r(&self.bytes_in);
        out.bytes_out = r(&self.bytes_out);
        for (o, c) in out.lat_hist.iter_mut().zip(self.lat_hist.iter()) {
            *o = r(c);
        }
    }
}

/// The module's totals, over every region, closed ones too.
pub(super) static GLOBAL: Counters = Counters::new();

/// Adds `n` to a counter of `region` and to the module's.
pub(super) fn bump(region: &Counters, field: fn(&Counters) -> &AtomicU64, n: u64) {
    field(region).fetch_add(n, Ordering::Relaxed);
    field(&GLOBAL).fetch_add(n, Ordering::Relaxed);
}

impl Region {
    pub(super) fn stats(&self, out: &mut abi::RmemStats) {
        self.stats.snapshot(out);
        out.bytes = self.cfg.pages * logic::PAGE_SIZE;
        out.budget = self.cfg.budget;
        out.local = self.inner.lock().local.len() as u64;
    }
}
