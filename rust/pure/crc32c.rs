// SPDX-License-Identifier: GPL-2.0

//! CRC-32C (Castagnoli), the checksum of memkit's on-media structures.
//!
//! Table-driven (slicing-by-8: eight bytes per step through eight tables) and
//! allocation-free, so the module and the host compute the same value with the same
//! code.

const POLY: u32 = 0x82f6_3b78; // Reflected 0x1EDC6F41.

/// `TABLES[0]` is the classic byte table; `TABLES[k][b]` is the CRC of byte `b`
/// followed by `k` zero bytes, so eight bytes fold in with eight lookups.
const TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// The table entry for the low byte of `x`.
#[inline(always)]
fn at(table: &[u32; 256], x: u32) -> u32 {
    table[(x & 0xff) as usize]
}

/// A running CRC-32C.
#[derive(Clone, Copy, Debug)]
pub struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    /// A fresh checksum.
    pub const fn new() -> Self {
        Crc32c(!0)
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        let [t0, t1, t2, t3, t4, t5, t6, t7] = &TABLES;
        let mut c = self.0;
        let (words, tail) = bytes.as_chunks::<8>();
        for w in words {
            let lo = c ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
            c = at(t7, lo)
                ^ at(t6, lo >> 8)
                ^ at(t5, lo >> 16)
                ^ at(t4, lo >> 24)
                ^ at(t3, hi)
                ^ at(t2, hi >> 8)
                ^ at(t1, hi >> 16)
                ^ at(t0, hi >> 24);
        }
        for &b in tail {
            c = at(t0, c ^ u32::from(b)) ^ (c >> 8);
        }
        self.0 = c;
        self
    }

    /// The checksum of everything added so far.
    pub fn finish(&self) -> u32 {
        !self.0
    }
}

/// CRC-32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    Crc32c::new().update(bytes).finish()
}

/// CRC-32C of `a ++ bytes` from `crc = crc32c(a)`: the form CPU-instruction
/// implementations take (the `crc32c` crate's `crc32c_append`; the kernel's
/// `~crc32c(~crc, ...)`), and the oracle they are tested against.
pub fn append(crc: u32, bytes: &[u8]) -> u32 {
    Crc32c(!crc).update(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // RFC 3720 (iSCSI), appendix B.4.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn append_continues_a_finished_checksum() {
        let data = b"memkit micro-journal";
        for split in 0..=data.len() {
            assert_eq!(append(crc32c(&data[..split]), &data[split..]), crc32c(data));
        }
        assert_eq!(append(0, b"123456789"), 0xe306_9283);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data = b"memkit micro-journal";
        let mut c = Crc32c::new();
        c.update(&data[..5]).update(&data[5..]);
        assert_eq!(c.finish(), crc32c(data));
    }

    /// Bit at a time, straight from the definition.
    fn reference(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn slicing_by_8_equals_bitwise_at_every_length_and_split() {
        let mut x = 0x9e37_79b9u32;
        let data: std::vec::Vec<u8> = (0..203)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for len in 0..data.len() {
            let want = reference(&data[..len]);
            assert_eq!(crc32c(&data[..len]), want, "length {len}");
            for split in 0..=len {
                let mut c = Crc32c::new();
                c.update(&data[..split]).update(&data[split..len]);
                assert_eq!(c.finish(), want, "length {len} split {split}");
            }
        }
    }
}
