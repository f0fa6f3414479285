//! The transactions the benchmarks run: how many ranges of how many bytes, and where.

/// A transaction shape: `ranges` ranges of `len` bytes each, at distinct offsets
/// aligned to `len` (so they never overlap within a transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The name in results: `1x64B`, `8x64B`, `1x4KiB`.
    pub name: &'static str,
    /// Ranges per transaction.
    pub ranges: usize,
    /// Bytes per range.
    pub len: usize,
}

/// Every workload, in report order.
pub const ALL: [Workload; 3] = [
    Workload {
        name: "1x64B",
        ranges: 1,
        len: 64,
    },
    Workload {
        name: "8x64B",
        ranges: 8,
        len: 64,
    },
    Workload {
        name: "1x4KiB",
        ranges: 1,
        len: 4096,
    },
];

/// Most ranges of any workload.
pub const MAX_RANGES: usize = 8;

impl Workload {
    /// Payload bytes per transaction.
    pub fn payload(&self) -> u64 {
        (self.ranges * self.len) as u64
    }
}

/// Parses a comma-separated list of workload names.
pub fn parse_list(s: &str) -> Result<Vec<Workload>, String> {
    s.split(',')
        .map(|name| {
            ALL.iter()
                .find(|w| w.name.eq_ignore_ascii_case(name.trim()))
                .copied()
                .ok_or_else(|| {
                    let names: Vec<&str> = ALL.iter().map(|w| w.name).collect();
                    format!("unknown workload '{name}' (known: {})", names.join(", "))
                })
        })
        .collect()
}

/// A small deterministic generator (xorshift64*): both sides of a comparison get the
/// same offsets from the same seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`; the bias is negligible for the `n` used here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Offsets for `ntx` transactions of `w` inside `base..base + region`: transaction
/// `t` uses `offsets[t * w.ranges..(t + 1) * w.ranges]`, each aligned to `w.len`
/// and distinct within the transaction. Scattered uniformly over the region.
///
/// Panics if the region holds fewer than `w.ranges` aligned slots.
pub fn offsets(w: &Workload, base: u64, region: u64, ntx: usize, seed: u64) -> Vec<u64> {
    let len = w.len as u64;
    let slots = region / len;
    assert!(
        slots >= w.ranges as u64,
        "region of {region} bytes is too small for {}",
        w.name
    );
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(ntx * w.ranges);
    for _ in 0..ntx {
        let first = out.len();
        while out.len() < first + w.ranges {
            let off = base + rng.below(slots) * len;
            if !out[first..].contains(&off) {
                out.push(off);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(parse_list("1x64B,8x64b").unwrap(), [ALL[0], ALL[1]]);
        assert!(parse_list("2x64B").is_err());
    }

    #[test]
    fn offsets_are_aligned_distinct_and_in_range() {
        for w in ALL {
            let offs = offsets(&w, 1 << 20, 1 << 22, 1000, 7);
            assert_eq!(offs.len(), 1000 * w.ranges);
            for tx in offs.chunks(w.ranges) {
                for (i, &o) in tx.iter().enumerate() {
                    assert_eq!(o % w.len as u64, 0);
                    assert!(o >= 1 << 20 && o + w.len as u64 <= (1 << 20) + (1 << 22));
                    assert!(!tx[..i].contains(&o));
                }
            }
            assert_eq!(offs, offsets(&w, 1 << 20, 1 << 22, 1000, 7));
        }
    }

    #[test]
    fn offsets_spread_over_the_region() {
        let offs = offsets(&ALL[0], 0, 1 << 24, 10_000, 1);
        let upper = offs.iter().filter(|&&o| o >= 1 << 23).count();
        assert!((4000..6000).contains(&upper), "{upper}");
    }
}
