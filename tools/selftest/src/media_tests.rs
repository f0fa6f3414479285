//! Corrupted media: journal images with random bit flips, zeroed and truncated
//! ranges, and crafted superblocks and MJs (huge counts, offsets past the end, ids
//! that overflow, duplicate ids, checksums recomputed to match garbage), attached one
//! after another through `/dev/memkit-journal` as a user would.
//!
//! Each image is derived from `(seed, index)` alone ([`make_image`]): a journal
//! formatted and written by the pure engine (`memkit_core::journal`, the code the
//! module runs) on memory, with a simulated crash that loses some in-place writes,
//! then corrupted by a few recipes that are printed with it. Before attaching, the
//! image goes through `memkit journal check`'s library function
//! ([`memkit::image::check_image`]) on a file of the device's size; its verdict is
//! what the kernel must do: refuse with the same errno (and say why in the kernel
//! log), or recover with the same plan (replayed, discarded, stale, incomplete and
//! empty MJs, low-water mark, next id) to the data region the check predicts (the
//! image's data region with the replayed MJs applied), read back through the device.
//! A recovered journal must then take a commit and recover it again.
//!
//! The images occupy the first [`WINDOW`] bytes of the pmem device; every geometry a
//! recipe can make valid stays inside it, so the rest of the device (other tests'
//! leftovers) is never part of a journal. The case ends with a freshly formatted
//! journal, detached.
//!
//! `MEMKIT_MEDIA_SEED` (default: from the clock) and `MEMKIT_MEDIA_IMAGES` (default
//! [`DEFAULT_IMAGES`]) choose the images; `memkit-selftest --media-image SEED INDEX
//! FILE [DEV_SIZE]` writes one of them to a file for `memkit journal check`.

use crate::ktap::{Outcome, TestResult};
use memkit::dev::{Device, DeviceKind};
use memkit::image::{self, CheckReport};
use memkit_core::crc32c::Crc32c;
use memkit_core::journal::engine::{self, Journal, Mode, OpenScratch, Range, Slot};
use memkit_core::journal::format::{
    self, entry_header, entry_size, Geometry, MjHeader, Superblock, MJ_HEADER_SIZE, SB_AREA,
    SB_SIZE,
};
use memkit_core::journal::pmem::Pmem;
use memkit_core::journal::recovery::SlotScan;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// Bytes at the start of the device the images occupy.
pub const WINDOW: usize = 64 * 1024;
/// Images per run unless `MEMKIT_MEDIA_IMAGES` says otherwise.
pub const DEFAULT_IMAGES: u64 = 150;
/// Where the image is written for the check.
const IMAGE_FILE: &str = "/tmp/memkit-media.img";

// --- Randomness ----------------------------------------------------------------------

/// SplitMix64: small, fast and the same everywhere, so a seed names the same images
/// on the host and in the guest.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 for `n == 0`).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.index(xs.len())]
    }
}

// --- Persistent memory on the host side ----------------------------------------------

/// Memory of `len` bytes of which the first `bytes.len()` are real (the rest read as
/// zero, like the sparse check file). Stores stay pending until a fence; a crash keeps
/// a random subset of them.
struct MemPmem {
    bytes: Vec<u8>,
    len: u64,
    pending: Vec<(usize, Vec<u8>)>,
}

impl MemPmem {
    fn new(bytes: Vec<u8>, len: u64) -> MemPmem {
        MemPmem {
            bytes,
            len,
            pending: Vec::new(),
        }
    }

    fn store(bytes: &mut [u8], off: usize, data: &[u8]) {
        // Outside the real bytes: dropped (nothing valid reaches there).
        let end = (off + data.len()).min(bytes.len());
        if off < end {
            bytes[off..end].copy_from_slice(&data[..end - off]);
        }
    }

    /// The durable bytes after a crash that kept each pending store with odds 1/2.
    fn crash(mut self, rng: &mut Rng) -> Vec<u8> {
        for (off, data) in std::mem::take(&mut self.pending) {
            if rng.chance(1, 2) {
                MemPmem::store(&mut self.bytes, off, &data);
            }
        }
        self.bytes
    }
}

impl Pmem for MemPmem {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, off: u64, buf: &mut [u8]) {
        buf.fill(0);
        let off = off as usize;
        let end = (off + buf.len()).min(self.bytes.len());
        if off < end {
            buf[..end - off].copy_from_slice(&self.bytes[off..end]);
        }
        for (p, data) in &self.pending {
            let (lo, hi) = ((*p).max(off), (p + data.len()).min(off + buf.len()));
            if lo < hi {
                buf[lo - off..hi - off].copy_from_slice(&data[lo - p..hi - p]);
            }
        }
    }

    fn write_flushed(&mut self, off: u64, data: &[u8]) {
        self.pending.push((off as usize, data.to_vec()));
    }

    fn fence(&mut self) {
        for (off, data) in std::mem::take(&mut self.pending) {
            MemPmem::store(&mut self.bytes, off, &data);
        }
    }
}

/// The engine with its slot table and staging buffer on the heap.
type Engine = Journal<Vec<Slot>, Vec<u8>>;

fn open_journal(
    pm: &mut MemPmem,
    mode: Mode,
    n: usize,
    mj_size: usize,
) -> Result<(Engine, memkit_core::journal::recovery::Plan), engine::JournalError> {
    let (mut scans, mut order, mut mj) = (vec![SlotScan::Empty; n], vec![0; n], vec![0; mj_size]);
    let scratch = OpenScratch {
        scans: &mut scans,
        order: &mut order,
        mj: &mut mj,
    };
    Journal::open(
        pm,
        mode,
        vec![Slot::default(); n],
        vec![0; mj_size],
        scratch,
    )
}

// --- The images ----------------------------------------------------------------------

/// One corrupted image and how it was made.
pub struct MediaImage {
    /// The first [`WINDOW`] bytes of the device.
    pub bytes: Vec<u8>,
    /// What was done, one item per step.
    pub recipe: Vec<String>,
    /// The data region every acknowledged transaction leaves, if the corruption
    /// cannot have changed it (no recipe applied): recovery must give exactly this.
    pub model: Option<Vec<u8>>,
}

/// A random transaction that fits `geo`: up to four ranges of up to 48 bytes.
fn random_tx(rng: &mut Rng, geo: &Geometry) -> Vec<(u64, Vec<u8>)> {
    let n = rng.range(1, u64::from(geo.max_ranges().min(4)));
    let (mut tx, mut used) = (Vec::new(), 0usize);
    for _ in 0..n {
        let len = rng.range(1, geo.data_size.min(48));
        let size = entry_size(len as u32).unwrap_or(usize::MAX);
        if used + size > geo.mj_capacity() {
            break;
        }
        used += size;
        let off = rng.below(geo.data_size - len + 1);
        tx.push((off, rng.bytes(len as usize)));
    }
    if tx.is_empty() {
        tx.push((rng.below(geo.data_size), rng.bytes(1)));
    }
    tx
}

fn apply(model: &mut [u8], tx: &[(u64, Vec<u8>)]) {
    for (off, data) in tx {
        let off = *off as usize;
        model[off..off + data.len()].copy_from_slice(data);
    }
}

/// A journal written by the engine on `WINDOW` bytes of garbage, with a history of
/// commit groups, detaches and crash recoveries, ending in a crash. Returns the
/// durable bytes, the superblock, the expected data region and a description.
fn base_image(rng: &mut Rng, dev_len: u64) -> (Vec<u8>, Superblock, Vec<u8>, String) {
    let mj_count = rng.pick(&[2u32, 3, 4, 8, 16]);
    let mj_size = rng.pick(&[256u32, 512, 1024]);
    let data_offset = (SB_AREA + u64::from(mj_count * mj_size)).next_multiple_of(4096);
    let room = WINDOW as u64 - data_offset;
    let data_size = rng.range(1, room.min(16384));
    let geo = Geometry::new(data_offset + data_size, mj_count, mj_size).expect("valid geometry");
    let uuid: [u8; 16] = rng.bytes(16).try_into().expect("16 bytes");
    let mut pm = MemPmem::new(rng.bytes(WINDOW), dev_len);
    let sb = engine::format(&mut pm, geo, uuid).expect("format");
    let mode = if rng.chance(1, 4) {
        Mode::Strict
    } else {
        Mode::Coalesced
    };
    let n = mj_count as usize;
    let (mut j, _) = open_journal(&mut pm, mode, n, mj_size as usize).expect("open");
    let mut model = vec![0u8; data_size as usize];
    pm.read(geo.data_offset, &mut model);
    let (mut txs, mut events) = (0u64, String::new());
    for _ in 0..rng.below(3 * u64::from(mj_count) + 2) {
        if rng.chance(1, 12) {
            // A detach and attach, or a crash and attach.
            if rng.chance(1, 2) {
                j.sync(&mut pm);
                events.push_str(" detach");
            } else {
                let keep = std::mem::replace(&mut pm, MemPmem::new(Vec::new(), 0));
                pm = MemPmem::new(keep.crash(rng), dev_len);
                events.push_str(" crash");
            }
            j = open_journal(&mut pm, mode, n, mj_size as usize)
                .expect("recovery of an uncorrupted journal")
                .0;
        }
        if j.free_mjs() == 0 {
            j.sync(&mut pm);
        }
        let group = rng.range(1, j.free_mjs().min((n / 2).max(1)) as u64);
        let tx: Vec<Vec<(u64, Vec<u8>)>> = (0..group).map(|_| random_tx(rng, &geo)).collect();
        let ranges: Vec<Vec<Range<'_>>> = tx
            .iter()
            .map(|t| {
                t.iter()
                    .map(|(offset, data)| Range {
                        offset: *offset,
                        data,
                    })
                    .collect()
            })
            .collect();
        let mut refs: Vec<&[Range<'_>]> = ranges.iter().map(|r| &r[..]).collect();
        let mut ids = vec![0; refs.len()];
        j.commit(&mut pm, &mut refs[..], &mut ids).expect("commit");
        tx.iter().for_each(|t| apply(&mut model, t));
        txs += group;
    }
    if rng.chance(1, 4) {
        j.sync(&mut pm);
        events.push_str(" detach");
    }
    let bytes = pm.crash(rng);
    let what = format!(
        "base: {mj_count} MJs x {mj_size} B, data {data_size} B, {mode:?}, {txs} tx,{} crash",
        events
    );
    (bytes, sb, model, what)
}

/// What the scan of the base image found: `(slot, id, payload_len)` of each valid MJ.
fn valid_mjs(bytes: &[u8], sb: &Superblock) -> Vec<(u32, u64, u32)> {
    let mut out = Vec::new();
    for slot in 0..sb.geo.mj_count {
        let off = sb.geo.mj_at(slot).expect("slot") as usize;
        if let Ok(m) = format::decode_mj(sb, &bytes[off..off + sb.geo.mj_size as usize]) {
            out.push((slot, m.header.commit_id, m.header.payload_len));
        }
    }
    out
}

fn encode_entries(tx: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (offset, data) in tx {
        let start = payload.len();
        payload.extend_from_slice(&entry_header(*offset, data.len() as u32));
        payload.extend_from_slice(data);
        payload.resize(start + entry_size(data.len() as u32).unwrap_or(0), 0);
    }
    payload
}

/// Writes an MJ with `header` (entry count and payload length as given) and
/// `payload` into `slot`, its checksum computed over `payload` and `uuid`: it
/// matches whatever the bytes are.
fn put_mj(bytes: &mut [u8], sb: &Superblock, uuid: &[u8; 16], slot: u32, h: MjHeader, p: &[u8]) {
    let off = sb.geo.mj_at(slot).expect("slot") as usize;
    let cap = sb.geo.mj_capacity();
    let p = &p[..p.len().min(cap)];
    bytes[off..off + MJ_HEADER_SIZE].copy_from_slice(&h.encode(uuid, p));
    bytes[off + MJ_HEADER_SIZE..off + MJ_HEADER_SIZE + p.len()].copy_from_slice(p);
}

/// A well-formed header for `payload` of `entries` entries.
fn header(id: u64, lwm: u64, entries: u32, payload: &[u8]) -> MjHeader {
    MjHeader {
        commit_id: id,
        lwm,
        entry_count: entries,
        payload_len: payload.len() as u32,
        group_first: id,
        group_len: 1,
    }
}

/// Flips 1 to `most` random bits of `bytes[lo..hi]`; returns their bit numbers.
fn flip_bits(rng: &mut Rng, bytes: &mut [u8], lo: usize, hi: usize, most: u64) -> Vec<usize> {
    let mut bits = Vec::new();
    for _ in 0..rng.range(1, most) {
        let bit = lo * 8 + rng.index((hi - lo) * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        bits.push(bit);
    }
    bits
}

/// A superblock with `geo` as its raw fields (consistent or not), checksum fixed.
fn put_sb(bytes: &mut [u8], uuid: [u8; 16], geo: Geometry) {
    bytes[..SB_SIZE].copy_from_slice(&Superblock { uuid, geo }.encode());
}

fn fix_sb_checksum(bytes: &mut [u8]) {
    let crc = Crc32c::new().update(&bytes[..SB_SIZE - 4]).finish();
    bytes[SB_SIZE - 4..SB_SIZE].copy_from_slice(&crc.to_le_bytes());
}

/// Applies one random corruption to `bytes` (a journal `sb`); returns what it did.
fn corrupt(rng: &mut Rng, bytes: &mut [u8], sb: &Superblock, dev_len: u64) -> String {
    let geo = sb.geo;
    let dev = geo.dev_size as usize;
    let valid = valid_mjs(bytes, sb);
    let max_id = valid.iter().map(|v| v.1).max().unwrap_or(0);
    let slot = if !valid.is_empty() && rng.chance(3, 4) {
        valid[rng.index(valid.len())].0
    } else {
        rng.below(u64::from(geo.mj_count)) as u32
    };
    let slot_off = geo.mj_at(slot).expect("slot") as usize;
    let data_tx = |rng: &mut Rng| random_tx(rng, &geo);
    match rng.below(16) {
        0 => {
            let bits = flip_bits(rng, bytes, 0, SB_SIZE, 3);
            format!("superblock bit flips {bits:?}")
        }
        1 | 2 => {
            let len = MJ_HEADER_SIZE + rng.index(geo.mj_size as usize - MJ_HEADER_SIZE);
            let bits = flip_bits(rng, bytes, slot_off, slot_off + len, 4);
            format!("MJ slot {slot} bit flips {bits:?}")
        }
        3 => {
            let bits = flip_bits(rng, bytes, geo.data_offset as usize, dev, 8);
            format!("data bit flips {bits:?}")
        }
        4 => {
            let off = rng.index(dev);
            let len = rng.range(1, 8192).min((WINDOW - off) as u64) as usize;
            bytes[off..off + len].fill(0);
            format!("zeroed {len} B at {off}")
        }
        5 => {
            // Truncated: nothing after `at` was ever written.
            let at = if rng.chance(1, 8) {
                rng.index(SB_SIZE)
            } else {
                SB_AREA as usize + rng.index(dev - SB_AREA as usize)
            };
            bytes[at..].fill(0);
            format!("truncated at {at}")
        }
        6 | 7 => {
            let mut g = geo;
            let what = match rng.below(10) {
                0 => {
                    g.mj_count = rng.pick(&[65536, 65537, u32::MAX]);
                    let mj = u64::from(g.mj_count) * u64::from(g.mj_size);
                    g.data_offset = (SB_AREA + mj).next_multiple_of(4096);
                    g.data_size = g.dev_size.wrapping_sub(g.data_offset);
                    "huge MJ count"
                }
                1 => {
                    g.mj_count = rng.pick(&[0, 1]);
                    "MJ count 0 or 1"
                }
                2 => {
                    g.mj_size = rng.pick(&[0, 100, 192, 1 << 25, u32::MAX]);
                    "bad MJ size"
                }
                3 => {
                    g.dev_size = dev_len + rng.range(1, 1 << 20);
                    g.data_size = g.dev_size - g.data_offset;
                    "device size past the end"
                }
                4 => {
                    g.dev_size = u64::MAX - rng.below(4096);
                    g.data_size = g.dev_size - g.data_offset;
                    "device size near 2^64"
                }
                5 => {
                    g.data_offset = rng.pick(&[g.dev_size + 4096, u64::MAX - 4095, 0]);
                    "data offset past the end"
                }
                6 => {
                    if rng.chance(1, 2) {
                        g.data_size += 1;
                    } else {
                        g.mj_offset = rng.pick(&[0, 8192, u64::MAX]);
                    }
                    "data size or MJ offset off"
                }
                7 => {
                    // Consistent and smaller: MJs writing past the new end turn invalid.
                    g = Geometry::new(
                        geo.data_offset + rng.range(1, geo.data_size),
                        geo.mj_count,
                        geo.mj_size,
                    )
                    .expect("smaller geometry");
                    "device size shrunk"
                }
                8 => {
                    g = Geometry::new(
                        rng.range(geo.dev_size, WINDOW as u64),
                        geo.mj_count,
                        geo.mj_size,
                    )
                    .expect("larger geometry");
                    "device size grown"
                }
                _ => {
                    put_sb(bytes, rng.bytes(16).try_into().expect("uuid"), g);
                    return "superblock with a new uuid (checksum matches)".into();
                }
            };
            put_sb(bytes, sb.uuid, g);
            format!("crafted superblock: {what} {g:?} (checksum matches)")
        }
        8 => {
            let what = match rng.below(5) {
                0 => {
                    bytes[8..12].copy_from_slice(&rng.pick(&[0u32, 2, u32::MAX]).to_le_bytes());
                    "version"
                }
                1 => {
                    bytes[12..16].copy_from_slice(&rng.pick(&[0u32, 64, 4096]).to_le_bytes());
                    "superblock size"
                }
                2 => {
                    let at = 72 + rng.index(52);
                    bytes[at] |= 1 << rng.below(8);
                    "reserved byte"
                }
                3 => {
                    bytes[rng.index(8)] ^= 0x20;
                    "magic"
                }
                _ => {
                    bytes[SB_SIZE..SB_AREA as usize].copy_from_slice(&rng.bytes(4096 - SB_SIZE));
                    "garbage after the superblock (ignored)"
                }
            };
            fix_sb_checksum(bytes);
            format!("crafted superblock field: {what} (checksum matches)")
        }
        9 => {
            let id = rng.pick(&[
                u64::MAX,
                u64::MAX - 1,
                u64::MAX - 2,
                u64::MAX - 3,
                u64::MAX - 4,
                1 << 63,
            ]);
            let p = encode_entries(&data_tx(rng));
            let n = p.len();
            let entries = u32::try_from(n).map(|_| count_entries(&p)).unwrap_or(1);
            let lwm = rng.range(1, id);
            put_mj(bytes, sb, &sb.uuid, slot, header(id, lwm, entries, &p), &p);
            format!("MJ slot {slot}: id {id:#x}, lwm {lwm:#x}")
        }
        10 => {
            if let Some(&(from, id, _)) = valid.get(rng.index(valid.len().max(1))) {
                let to = (from + 1 + rng.below(u64::from(geo.mj_count - 1)) as u32) % geo.mj_count;
                let (a, b) = (geo.mj_at(from).expect("slot"), geo.mj_at(to).expect("slot"));
                let copy = bytes[a as usize..a as usize + geo.mj_size as usize].to_vec();
                bytes[b as usize..b as usize + copy.len()].copy_from_slice(&copy);
                format!("MJ slot {from} (id {id}) copied to slot {to}")
            } else {
                let p = encode_entries(&data_tx(rng));
                let h = header(max_id + 1, 1, count_entries(&p), &p);
                put_mj(bytes, sb, &sb.uuid, 0, h, &p);
                put_mj(bytes, sb, &sb.uuid, 1, h, &p);
                format!("MJ slots 0 and 1 both id {}", max_id + 1)
            }
        }
        11 => {
            let p = encode_entries(&data_tx(rng));
            let mut h = header(max_id + 1, rng.range(1, max_id + 1), count_entries(&p), &p);
            let what = match rng.below(9) {
                0 => {
                    h.entry_count = rng.pick(&[0, h.entry_count + 1, 1025, u32::MAX]);
                    "entry count"
                }
                1 => {
                    h.entry_count = rng.pick(&[h.entry_count + 1, 1 << 16, 1 << 20]);
                    "entry count past the entries"
                }
                2 => {
                    h.group_len = rng.pick(&[0, geo.mj_count + 1, u32::MAX]);
                    "group length"
                }
                3 => {
                    h.group_first = u64::MAX - 1;
                    h.commit_id = u64::MAX - 1;
                    h.group_len = 5.min(geo.mj_count);
                    h.lwm = 1;
                    "group end overflows"
                }
                4 => {
                    h.lwm = rng.pick(&[0, h.group_first + 1, u64::MAX]);
                    "low-water mark"
                }
                5 => {
                    h.commit_id = 0;
                    h.group_first = 0;
                    "commit id 0"
                }
                6 => {
                    h.group_first = h.commit_id + 1;
                    "commit id before its group"
                }
                7 => {
                    h.group_first = h.commit_id.saturating_sub(u64::from(geo.mj_count) + 1);
                    "commit id after its group"
                }
                _ => {
                    // A raw byte in the 16-bit fields (entry count, position in the
                    // group), whatever it makes of them.
                    let mut hb = h.encode_unsummed();
                    let at = 4 + rng.index(4);
                    hb[at] = rng.bytes(1)[0];
                    let off = slot_off;
                    let mut c = Crc32c::new();
                    c.update(&sb.uuid)
                        .update(&p)
                        .update(&hb[..format::MJ_SUMMED]);
                    format::set_mj_checksum(&mut hb, c.finish());
                    bytes[off..off + MJ_HEADER_SIZE].copy_from_slice(&hb);
                    bytes[off + MJ_HEADER_SIZE..off + MJ_HEADER_SIZE + p.len()].copy_from_slice(&p);
                    return format!("MJ slot {slot}: header byte {at} raw (checksum matches)");
                }
            };
            put_mj(bytes, sb, &sb.uuid, slot, h, &p);
            format!("MJ slot {slot}: bad {what} {h:?} (checksum matches)")
        }
        12 => {
            let mut tx = data_tx(rng);
            let (what, mut p) = match rng.below(7) {
                0 => {
                    tx[0].0 = geo.data_size - rng.below(tx[0].1.len() as u64);
                    ("range past the data region", encode_entries(&tx))
                }
                1 => {
                    tx[0].0 = u64::MAX - rng.below(tx[0].1.len() as u64);
                    ("offset past 40 bits", encode_entries(&tx))
                }
                2 => {
                    // The 24-bit length, in the top 3 bytes of the entry header.
                    let mut p = encode_entries(&tx);
                    let len = rng.pick(&[0u32, 0xff_ffff, 1 << 20]);
                    p[5..8].copy_from_slice(&len.to_le_bytes()[..3]);
                    ("bad length", p)
                }
                3 => {
                    // A length one padding unit longer: the entries run into what
                    // follows them.
                    let mut p = encode_entries(&tx);
                    p[5] = p[5].wrapping_add(8);
                    ("length past its entry", p)
                }
                4 => {
                    tx[0].1.truncate(1);
                    let mut p = encode_entries(&tx);
                    p[format::ENTRY_HEADER_SIZE + 1] = 0xff;
                    ("padding not zero", p)
                }
                5 => {
                    let mut p = encode_entries(&tx);
                    p.extend_from_slice(&[0u8; 8]);
                    ("bytes after the last entry", p)
                }
                _ => {
                    let n = rng.range(16, (geo.mj_capacity() as u64).min(512)) as usize;
                    ("garbage payload", rng.bytes(n))
                }
            };
            p.truncate(geo.mj_capacity());
            let entries = if what == "garbage payload" {
                rng.range(1, 8) as u32
            } else {
                count_entries(&encode_entries(&tx))
            };
            let h = header(max_id + 1, rng.range(1, max_id + 1), entries, &p);
            put_mj(bytes, sb, &sb.uuid, slot, h, &p);
            format!("MJ slot {slot}: {what} (checksum matches)")
        }
        13 => {
            // A valid transaction nobody committed: replayed if at or above the LWM.
            let p = encode_entries(&data_tx(rng));
            let id = max_id + rng.range(1, 3);
            let lwm = if rng.chance(1, 2) {
                id
            } else {
                rng.range(1, id)
            };
            put_mj(
                bytes,
                sb,
                &sb.uuid,
                slot,
                header(id, lwm, count_entries(&p), &p),
                &p,
            );
            format!("MJ slot {slot}: crafted valid id {id}, lwm {lwm}")
        }
        14 => {
            // A group of 2-3 of which only this member is there.
            let p = encode_entries(&data_tx(rng));
            let len = rng.range(2, 3).min(u64::from(geo.mj_count)) as u32;
            let first = max_id + 1;
            let mut h = header(
                first + rng.below(u64::from(len)),
                first,
                count_entries(&p),
                &p,
            );
            h.group_first = first;
            h.group_len = len;
            put_mj(bytes, sb, &sb.uuid, slot, h, &p);
            format!(
                "MJ slot {slot}: lone member {} of group {first}+{len}",
                h.commit_id
            )
        }
        _ => {
            // An MJ left by an earlier format (another uuid).
            let p = encode_entries(&data_tx(rng));
            let uuid: [u8; 16] = rng.bytes(16).try_into().expect("uuid");
            put_mj(
                bytes,
                sb,
                &uuid,
                slot,
                header(max_id + 1, 1, count_entries(&p), &p),
                &p,
            );
            format!("MJ slot {slot}: from another format")
        }
    }
}

/// The number of entries of a payload built by [`encode_entries`].
fn count_entries(p: &[u8]) -> u32 {
    let (mut n, mut at) = (0u32, 0usize);
    while at + format::ENTRY_HEADER_SIZE <= p.len() {
        let word = u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
        // Lossless: 24 bits.
        let len = (word >> format::OFFSET_BITS) as u32;
        at += entry_size(len).unwrap_or(usize::MAX / 2);
        n += 1;
    }
    n.max(1)
}

/// Image `index` of `seed`, for a device of `dev_len` bytes.
pub fn make_image(seed: u64, index: u64, dev_len: u64) -> MediaImage {
    let mut rng = Rng::new(seed, index);
    let (mut bytes, base, model, what) = base_image(&mut rng, dev_len);
    let mut recipe = vec![what];
    // One image in 16 is left alone: it must recover to every acknowledged write.
    let steps = if rng.chance(1, 16) {
        0
    } else {
        rng.range(1, 3)
    };
    for _ in 0..steps {
        recipe.push(corrupt(&mut rng, &mut bytes, &base, dev_len));
    }
    MediaImage {
        bytes,
        recipe,
        model: (steps == 0).then_some(model),
    }
}

// --- The check's prediction ------------------------------------------------------------

/// The data region recovery leaves according to `report`: the image's, with the MJs
/// the check replays applied in its order.
fn predicted_data(bytes: &[u8], report: &CheckReport, dev_len: u64) -> Result<Vec<u8>, String> {
    let g = report.geometry.as_ref().ok_or("no geometry")?;
    let rec = report.recovery.as_ref().ok_or("no recovery plan")?;
    let mut all = bytes.to_vec();
    all.resize(g.dev_size as usize, 0);
    let sb = Superblock::decode(&all, dev_len).map_err(|e| format!("superblock: {e:?}"))?;
    let mut data = all[g.data_offset as usize..].to_vec();
    for m in &rec.replay {
        let off = sb.geo.mj_at(m.slot).ok_or("slot")? as usize;
        let mj = format::decode_mj(&sb, &all[off..off + g.mj_size as usize])
            .map_err(|e| format!("replayed slot {} does not decode: {e:?}", m.slot))?;
        for e in mj.entries() {
            let o = e.offset as usize;
            data[o..o + e.data.len()].copy_from_slice(e.data);
        }
    }
    Ok(data)
}

/// Compares a recovery the kernel (or the engine) reports with the check's.
fn compare_plan(report: &CheckReport, got: [u64; 7]) -> Result<(), String> {
    let rec = report.recovery.as_ref().ok_or("no recovery plan")?;
    let want = [
        rec.replay.len() as u64,
        rec.torn.len() as u64,
        rec.stale.len() as u64,
        rec.incomplete.len() as u64,
        u64::from(rec.empty),
        rec.lwm,
        rec.next_id,
    ];
    if got != want {
        return Err(format!(
            "recovery [replayed, discarded, stale, incomplete, empty, lwm, next id] {got:?}, \
             check says {want:?}"
        ));
    }
    Ok(())
}

/// Writes `bytes` at the start of a sparse file of `dev_len` bytes and checks it.
fn check(path: &Path, bytes: &[u8], dev_len: u64) -> Result<CheckReport, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(dev_len)
        .map_err(|e| format!("size image file: {e}"))?;
    f.write_all_at(bytes, 0)
        .map_err(|e| format!("write image file: {e}"))?;
    drop(f);
    image::check_image(path)
}

// --- In the guest ------------------------------------------------------------------------

fn pmem_path() -> String {
    std::env::var("MEMKIT_PMEM").unwrap_or_else(|_| "/dev/pmem0".into())
}

/// The kernel log from now on (`/dev/kmsg`, non-blocking, from its end).
struct Kmsg(std::fs::File);

impl Kmsg {
    fn open() -> Result<Kmsg, String> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .map_err(|e| format!("/dev/kmsg: {e}"))?;
        f.seek(SeekFrom::End(0))
            .map_err(|e| format!("seek /dev/kmsg: {e}"))?;
        Ok(Kmsg(f))
    }

    /// The messages logged since the last call.
    fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let msg = rec.split_once(';').map_or(&*rec, |(_, m)| m);
                    out.push(msg.lines().next().unwrap_or("").to_string());
                }
                // EPIPE: records were overwritten meanwhile; the read continues.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        out
    }
}

/// Kernel log lines that mean the kernel misbehaved.
fn alarming(line: &str) -> bool {
    [
        "WARNING",
        "BUG",
        "KASAN",
        "Oops",
        "lockdep",
        "circular locking",
        "UBSAN",
    ]
    .iter()
    .any(|w| line.contains(w))
}

fn write_device(path: &str, bytes: &[u8]) -> Result<(), String> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("open {path}: {e}"))?;
    f.write_all_at(bytes, 0)
        .map_err(|e| format!("write {path}: {e}"))?;
    f.sync_all().map_err(|e| format!("sync {path}: {e}"))
}

fn read_data(dev: &Device, len: u64) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len as usize];
    let mut at = 0usize;
    while at < buf.len() {
        match dev.read_at(&mut buf[at..], at as u64) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read data region at {at}: {e}")),
        }
    }
    buf.truncate(at);
    Ok(buf)
}

fn status_plan(s: &memkit_core::abi::JournalStatus) -> [u64; 7] {
    [
        s.rec_replayed,
        s.rec_discarded,
        s.rec_stale,
        s.rec_incomplete,
        s.rec_empty,
        s.rec_lwm,
        s.next_id,
    ]
}

fn first_diff(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("first difference at {i}: {:#04x} vs {:#04x}", a[i], b[i]),
        None => format!("lengths {} and {}", a.len(), b.len()),
    }
}

/// Outcome counts of a run.
#[derive(Default)]
struct Tally {
    refused: u64,
    recovered: u64,
    replayed_some: u64,
    untouched: u64,
    errnos: std::collections::BTreeMap<&'static str, u64>,
}

/// Attaches image `index` in the kernel and compares with the check; `Err` is a
/// disagreement or a kernel misbehaviour.
fn attach_one(
    dev: &Device,
    kmsg: &mut Kmsg,
    img: &MediaImage,
    dev_len: u64,
    tally: &mut Tally,
) -> Result<String, String> {
    let path = Path::new(IMAGE_FILE);
    let report = check(path, &img.bytes, dev_len)?;
    let predicted = if report.recoverable {
        let p = predicted_data(&img.bytes, &report, dev_len)?;
        if let Some(model) = &img.model {
            if &p != model {
                return Err(format!(
                    "the check's recovery of an uncorrupted image loses acknowledged writes: {}",
                    first_diff(&p, model)
                ));
            }
        }
        Some(p)
    } else {
        None
    };
    write_device(&pmem_path(), &img.bytes)?;
    kmsg.drain();
    let attached = dev.journal_attach(Path::new(&pmem_path()), false, 0, 0);
    let log = kmsg.drain();
    if let Some(bad) = log.iter().find(|l| alarming(l)) {
        return Err(format!("kernel log: {bad}"));
    }
    let said = log
        .iter()
        .find(|l| l.contains("journal:") && l.contains(&pmem_path()))
        .cloned();
    match (attached, predicted) {
        (Err(e), None) => {
            let want = report.errno.ok_or("the check refused without an errno")?;
            if e.raw_os_error() != Some(want.code) {
                return Err(format!(
                    "attach refused with {e}, the check says {} ({})",
                    want.name,
                    report.reason.as_deref().unwrap_or("")
                ));
            }
            let said = said.ok_or("attach refused without a kernel log message")?;
            tally.refused += 1;
            *tally.errnos.entry(want.name).or_default() += 1;
            Ok(format!("refused {}: {said}", want.name))
        }
        (Err(e), Some(_)) => Err(format!(
            "attach refused with {e}, the check says recoverable"
        )),
        (Ok(()), None) => {
            dev.journal_detach().ok();
            Err(format!(
                "attach succeeded, the check says {} ({})",
                report.errno.map_or("refused", |e| e.name),
                report.reason.as_deref().unwrap_or("")
            ))
        }
        (Ok(()), Some(want)) => {
            let r = recovered(dev, kmsg, &report, &want);
            dev.journal_detach().ok();
            let rec = report.recovery.as_ref().ok_or("no plan")?;
            tally.recovered += 1;
            if rec.replay.is_empty() {
                tally.untouched += 1;
            } else {
                tally.replayed_some += 1;
            }
            r.map(|()| {
                format!(
                    "recovered: replayed {}, discarded {}, next id {}",
                    rec.replay.len(),
                    rec.torn.len(),
                    rec.next_id
                )
            })
        }
    }
}

/// Checks an attached recovery against the check, then that it takes a commit that
/// survives another detach and attach.
fn recovered(
    dev: &Device,
    kmsg: &mut Kmsg,
    report: &CheckReport,
    want: &[u8],
) -> Result<(), String> {
    let s = dev.journal_status().map_err(|e| format!("status: {e}"))?;
    compare_plan(report, status_plan(&s))?;
    let g = report.geometry.as_ref().ok_or("no geometry")?;
    if (s.dev_size, s.data_size, s.mj_count, s.mj_size)
        != (g.dev_size, g.data_size, g.mj_count, g.mj_size)
    {
        return Err(format!("attached geometry {s:?}, check says {g:?}"));
    }
    let got = read_data(dev, s.data_size)?;
    if got != want {
        return Err(format!(
            "data region after recovery differs from the check's: {}",
            first_diff(&got, want)
        ));
    }
    // The recovered journal works: a commit, then recovery again.
    let at = s.data_size - 1;
    let byte = [!want[at as usize]];
    match dev.journal_tx(&[(at, &byte)]) {
        Ok(_) => {}
        // The last ids stay for recovery's seals (a crafted id near 2^64 gets there).
        Err(e) if e.raw_os_error() == Some(libc::EOVERFLOW) && s.next_id >= u64::MAX - 1 => {
            return Ok(());
        }
        Err(e) => return Err(format!("commit after recovery: {e}")),
    }
    dev.journal_detach().map_err(|e| format!("detach: {e}"))?;
    dev.journal_attach(Path::new(&pmem_path()), false, 0, 0)
        .map_err(|e| format!("attach after a commit on the recovered journal: {e}"))?;
    if let Some(bad) = kmsg.drain().iter().find(|l| alarming(l)) {
        return Err(format!("kernel log: {bad}"));
    }
    let mut again = want.to_vec();
    again[at as usize] = byte[0];
    let got = read_data(dev, s.data_size)?;
    if got != again {
        return Err(format!(
            "data region after commit and re-attach: {}",
            first_diff(&got, &again)
        ));
    }
    Ok(())
}

fn env_u64(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let n = if let Some(hex) = v.strip_prefix("0x") {
                u64::from_str_radix(hex, 16)
            } else {
                v.parse()
            };
            n.map(Some).map_err(|e| format!("{name}={v}: {e}"))
        }
        Err(_) => Ok(None),
    }
}

pub fn journal_corrupted_media(_: &crate::Options) -> TestResult {
    let pmem = pmem_path();
    if !Path::new(&pmem).exists() {
        return Ok(Outcome::Skip(format!("no {pmem}")));
    }
    let seed = match env_u64("MEMKIT_MEDIA_SEED")? {
        Some(s) => s,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    let images = env_u64("MEMKIT_MEDIA_IMAGES")?.unwrap_or(DEFAULT_IMAGES);
    println!("seed {seed:#x}, {images} images (MEMKIT_MEDIA_SEED={seed:#x} reproduces)");
    let dev = Device::open(DeviceKind::Journal).map_err(|e| format!("open: {e}"))?;
    match dev.journal_detach() {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
        Err(e) => return Err(format!("detach: {e}")),
    }
    // The device's DAX length, which a formatted journal uses whole.
    dev.journal_attach(Path::new(&pmem), true, 2, 256)
        .map_err(|e| format!("attach with format: {e}"))?;
    let dev_len = dev
        .journal_status()
        .map_err(|e| format!("status: {e}"))?
        .dev_size;
    dev.journal_detach().map_err(|e| format!("detach: {e}"))?;
    if dev_len < WINDOW as u64 {
        return Ok(Outcome::Skip(format!(
            "{pmem} is smaller than {WINDOW} bytes"
        )));
    }
    let mut kmsg = Kmsg::open()?;
    let (mut tally, mut failures) = (Tally::default(), Vec::new());
    let started = Instant::now();
    for index in 0..images {
        let img = make_image(seed, index, dev_len);
        match attach_one(&dev, &mut kmsg, &img, dev_len, &mut tally) {
            Ok(what) => println!("image {index}: {what}"),
            Err(why) => {
                println!("image {index}: FAIL: {why}");
                for step in &img.recipe {
                    println!("    {step}");
                }
                failures.push(index);
            }
        }
    }
    let errnos: Vec<String> = tally
        .errnos
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    println!(
        "{images} images in {:.1} s: {} refused ({}), {} recovered ({} with replay, {} without); \
         {} disagreements",
        started.elapsed().as_secs_f64(),
        tally.refused,
        errnos.join(", "),
        tally.recovered,
        tally.replayed_some,
        tally.untouched,
        failures.len()
    );
    std::fs::remove_file(IMAGE_FILE).ok();
    // Leave a fresh, detached journal for whoever comes next.
    dev.journal_detach().ok();
    dev.journal_attach(Path::new(&pmem), true, 0, 0)
        .and_then(|()| dev.journal_detach())
        .map_err(|e| format!("format at the end: {e}"))?;
    if !failures.is_empty() {
        return Err(format!(
            "seed {seed:#x}: images {failures:?} disagree with the check (recipes above; \
             `memkit-selftest --media-image {seed:#x} INDEX FILE {dev_len}` writes one)"
        ));
    }
    Ok(Outcome::Pass)
}

/// `memkit-selftest --media-image SEED INDEX FILE [DEV_SIZE]`: writes image `INDEX` of
/// `SEED` (for a device of `DEV_SIZE` bytes, default 256 MiB) to `FILE`, sized
/// `DEV_SIZE` (sparse), and prints its recipe.
pub fn media_image_main(args: &[String]) -> ExitCode {
    let num = |s: &str| {
        s.strip_prefix("0x")
            .map_or_else(|| s.parse(), |h| u64::from_str_radix(h, 16))
            .ok()
    };
    let (seed, index, file, dev_len) = match args {
        [s, i, f] => (num(s), num(i), f, Some(256 << 20)),
        [s, i, f, d] => (num(s), num(i), f, num(d)),
        _ => (None, None, &String::new(), None),
    };
    let (Some(seed), Some(index), Some(dev_len)) = (seed, index, dev_len) else {
        eprintln!("usage: memkit-selftest --media-image SEED INDEX FILE [DEV_SIZE]");
        return ExitCode::from(2);
    };
    let img = make_image(seed, index, dev_len);
    for step in &img.recipe {
        println!("{step}");
    }
    let written = std::fs::File::create(file)
        .and_then(|f| f.set_len(dev_len).and(f.write_all_at(&img.bytes, 0)));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{file}: {e}");
            ExitCode::FAILURE
        }
    }
}

// --- The same images on the host, the kernel replaced by the engine --------------------

#[cfg(test)]
mod tests {
    use super::*;
    use memkit_core::journal::recovery;

    /// What the kernel's attach does, with the pure engine: `Journal::open` on the
    /// device (here memory of the device's length).
    fn engine_attach(img: &MediaImage, dev_len: u64, report: &CheckReport) -> Result<(), String> {
        let mut pm = MemPmem::new(img.bytes.clone(), dev_len);
        let sb = engine::read_superblock(&pm);
        let opened = sb.map_err(engine::JournalError::Format).and_then(|sb| {
            open_journal(
                &mut pm,
                Mode::Coalesced,
                sb.geo.mj_count as usize,
                sb.geo.mj_size as usize,
            )
        });
        match opened {
            Err(e) => {
                let got = image::journal_errno(e);
                if report.errno != Some(got) {
                    return Err(format!(
                        "engine refuses with {e:?} ({got:?}), check: {report:?}"
                    ));
                }
                Ok(())
            }
            Ok((j, plan)) => {
                let want = predicted_data(&img.bytes, report, dev_len)?;
                compare_plan(
                    report,
                    [
                        plan.replay.into(),
                        plan.discarded.into(),
                        plan.stale.into(),
                        plan.incomplete.into(),
                        plan.empty.into(),
                        plan.lwm,
                        j.next_id(),
                    ],
                )?;
                if let Some(model) = &img.model {
                    if &want != model {
                        return Err(format!("uncorrupted: {}", first_diff(&want, model)));
                    }
                }
                let geo = j.superblock().geo;
                let mut got = vec![0u8; geo.data_size as usize];
                pm.read(geo.data_offset, &mut got);
                if got != want {
                    return Err(format!("data: {}", first_diff(&got, &want)));
                }
                // Recovering the recovered journal changes nothing.
                pm.fence();
                let opened2 = open_journal(
                    &mut pm,
                    Mode::Coalesced,
                    geo.mj_count as usize,
                    geo.mj_size as usize,
                );
                let (j2, plan2) = match opened2 {
                    // Each recovery's seal takes an id: a crafted id near 2^64 runs out.
                    Err(engine::JournalError::Plan(recovery::PlanError::IdsExhausted))
                        if j.next_id() == u64::MAX =>
                    {
                        return Ok(())
                    }
                    other => other.map_err(|e| format!("second recovery: {e:?}"))?,
                };
                pm.read(geo.data_offset, &mut got);
                if got != want
                    || plan2.replay > 1
                    || j2.next_id() != j.next_id() + u64::from(plan.seal_id.is_some())
                {
                    return Err(format!(
                        "second recovery: {plan2:?}, {}",
                        first_diff(&got, &want)
                    ));
                }
                Ok(())
            }
        }
    }

    #[test]
    fn corrupted_images_agree_with_the_check() {
        let dev_len = 256 << 20;
        let dir = std::env::temp_dir().join(format!("memkit-media-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img");
        let (mut refused, mut recovered) = (0, 0);
        let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
        for seed in [1u64, 0xfeed, 0x5eed_1234] {
            for index in 0..400 {
                let img = make_image(seed, index, dev_len);
                let report = check(&path, &img.bytes, dev_len).unwrap();
                if report.recoverable {
                    recovered += 1;
                    let replayed = report.recovery.as_ref().map_or(0, |r| r.replay.len());
                    *outcomes
                        .entry(format!("recovered, replay {}", replayed.min(3)))
                        .or_default() += 1;
                } else {
                    refused += 1;
                    let name = report.errno.map_or("none", |e| e.name);
                    *outcomes.entry(format!("refused {name}")).or_default() += 1;
                }
                if let Err(e) = engine_attach(&img, dev_len, &report) {
                    panic!(
                        "seed {seed:#x} image {index}: {e}\nrecipe: {:#?}",
                        img.recipe
                    );
                }
            }
        }
        std::fs::remove_dir_all(&dir).ok();
        println!("{outcomes:#?}");
        // Both outcomes are well represented.
        assert!(
            refused > 200 && recovered > 200,
            "{refused} refused, {recovered} recovered"
        );
    }

    #[test]
    fn images_are_a_function_of_seed_and_index() {
        let a = make_image(7, 3, 1 << 20);
        let b = make_image(7, 3, 1 << 20);
        assert_eq!((&a.bytes, &a.recipe), (&b.bytes, &b.recipe));
        assert_ne!(make_image(7, 4, 1 << 20).bytes, b.bytes);
    }
}
