//! Property tests of the journal's on-media format and recovery planning
//! (`journal::format`, `journal::recovery`), with `proptest`.
//!
//! - the decoders (`decode_mj`, `Superblock::decode`) never panic, on arbitrary bytes
//!   and on "nearly valid" images whose checksum has been fixed up so that every
//!   later check is reached;
//! - whatever validates is canonical: re-encoding the decoded MJ (or superblock) with
//!   the public encoders gives back exactly the bytes, so no image can validate as a
//!   different transaction than its bytes spell out;
//! - the MJs the engine writes decode to exactly the transactions committed;
//! - flipping any single bit of a valid MJ or superblock makes it invalid;
//! - `recovery::plan` never panics, its replay order is strictly increasing, at or
//!   above the low-water mark and made of whole groups, and on the scans a real
//!   journal can produce it matches a reference model exactly;
//! - `plan_tx` never panics, accepts exactly the transactions that fit, and every
//!   refusal is justified by the case its error documents.
//! - with commit ids near 2^64, every acknowledged commit still leaves a journal that
//!   recovers (a regression the guest's corrupted-media test found).

use memkit_core::journal::engine::{self, Journal, OpenScratch, Range, Slot};
use memkit_core::journal::format::{
    self, decode_mj, entry_header, entry_size, set_mj_checksum, Geometry, MjError, MjHeader,
    Superblock, TxError, ENTRY_HEADER_SIZE, MJ_HEADER_SIZE, SB_SIZE,
};
use memkit_core::journal::pmem::Pmem;
use memkit_core::journal::recovery::{self, PlanError, SlotScan};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeMap, BTreeSet};

// --- Building blocks ----------------------------------------------------------------

/// A geometry of `mj_count` MJs of `mj_lines` cache lines and `data_size` data bytes.
fn geometry(mj_count: u32, mj_lines: u32, data_size: u64) -> Geometry {
    let data_offset = Geometry::new(u64::MAX / 2, mj_count, mj_lines * 64)
        .unwrap()
        .data_offset;
    Geometry::new(data_offset + data_size, mj_count, mj_lines * 64).unwrap()
}

/// Small journals: 2-16 MJs of 256-1024 bytes, a data region of up to 8 KiB.
fn small_geometry() -> impl Strategy<Value = Geometry> {
    (2u32..=16, 4u32..=16, 1u64..=8192).prop_map(|(n, lines, data)| geometry(n, lines, data))
}

fn superblock() -> impl Strategy<Value = Superblock> {
    (any::<[u8; 16]>(), small_geometry()).prop_map(|(uuid, geo)| Superblock { uuid, geo })
}

/// The payload (entries) of a transaction, encoded with the public format functions.
fn encode_entries(tx: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (offset, data) in tx {
        let len = u32::try_from(data.len()).unwrap();
        let start = payload.len();
        payload.extend_from_slice(&entry_header(*offset, len));
        payload.extend_from_slice(data);
        payload.resize(start + entry_size(len).unwrap(), 0);
    }
    payload
}

/// An MJ slot (`mj_size` bytes) holding `header` over `tx`, with `filler` after the
/// payload; `entry_count` and `payload_len` are set from `tx`.
fn encode_mj(sb: &Superblock, mut header: MjHeader, tx: &[(u64, Vec<u8>)], filler: u8) -> Vec<u8> {
    let payload = encode_entries(tx);
    header.entry_count = tx.len() as u32;
    header.payload_len = payload.len() as u32;
    let mut slot = header.encode(&sb.uuid, &payload).to_vec();
    slot.extend_from_slice(&payload);
    slot.resize(sb.geo.mj_size as usize, filler);
    slot
}

/// The `(offset, data)` ranges of a decoded MJ.
fn entries_of(m: &format::Mj<'_>) -> Vec<(u64, Vec<u8>)> {
    m.entries().map(|e| (e.offset, e.data.to_vec())).collect()
}

/// The bytes a valid MJ should consist of, rebuilt from what `decode_mj` returned.
fn reencode(sb: &Superblock, m: &format::Mj<'_>) -> Vec<u8> {
    let payload = encode_entries(&entries_of(m));
    let mut bytes = m.header.encode(&sb.uuid, &payload).to_vec();
    bytes.extend_from_slice(&payload);
    bytes
}

/// Checks that a decoded MJ is canonical and inside the journal's limits.
fn assert_canonical(sb: &Superblock, slot: &[u8], m: &format::Mj<'_>) -> Result<(), TestCaseError> {
    let h = m.header;
    let len = MJ_HEADER_SIZE + h.payload_len as usize;
    prop_assert_eq!(reencode(sb, m), slot[..len].to_vec(), "not canonical");
    prop_assert_eq!(m.entries().count(), h.entry_count as usize);
    for e in m.entries() {
        prop_assert!(!e.data.is_empty());
        prop_assert!(e.offset + e.data.len() as u64 <= sb.geo.data_size);
    }
    prop_assert!(h.commit_id >= 1 && h.lwm >= 1 && h.lwm <= h.group_first);
    prop_assert!(h.group_first <= h.commit_id);
    prop_assert!(h.commit_id - h.group_first < u64::from(h.group_len));
    prop_assert!(h.group_len >= 1 && h.group_len <= sb.geo.mj_count);
    Ok(())
}

/// A valid transaction for `geo`: 1 to 4 ranges of 1 to 60 bytes, trimmed to fit.
fn valid_tx(geo: Geometry) -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
    prop::collection::vec(
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..=60)),
        1..=4,
    )
    .prop_map(move |ranges| {
        let mut tx = Vec::new();
        for (at, data) in ranges {
            let len = (data.len() as u64).min(geo.data_size);
            let offset = at.index((geo.data_size - len + 1) as usize) as u64;
            let mut candidate = tx.clone();
            candidate.push((offset, data[..len as usize].to_vec()));
            let shape = candidate.iter().map(|(o, d)| (*o, d.len() as u64));
            if format::plan_tx(&geo, shape).is_ok() {
                tx = candidate;
            }
        }
        tx
    })
    .prop_filter("at least one range fits", |tx| !tx.is_empty())
}

/// A valid header for a journal of `mj_count` MJs (counts and length left to
/// [`encode_mj`]).
fn valid_header(mj_count: u32) -> impl Strategy<Value = MjHeader> {
    (1u64..1000, 1..=mj_count, any::<Index>(), any::<Index>()).prop_map(
        |(group_first, group_len, member, lwm)| MjHeader {
            commit_id: group_first + member.index(group_len as usize) as u64,
            lwm: 1 + lwm.index(group_first as usize) as u64,
            entry_count: 0,
            payload_len: 0,
            group_first,
            group_len,
        },
    )
}

/// A valid MJ slot with its superblock.
fn valid_mj() -> impl Strategy<Value = (Superblock, Vec<u8>)> {
    superblock().prop_flat_map(|sb| {
        (valid_header(sb.geo.mj_count), valid_tx(sb.geo), any::<u8>())
            .prop_map(move |(h, tx, filler)| (sb, encode_mj(&sb, h, &tx, filler)))
    })
}

// --- Nearly valid MJs ---------------------------------------------------------------

/// One entry as raw fields, each usually right and sometimes wrong.
#[derive(Clone, Debug)]
struct RawEntry {
    offset: u64,
    /// The length field; usually `data.len()` (24 bits are stored).
    len: u32,
    data: Vec<u8>,
    /// The padding bytes; usually the right number of zeros.
    pad: Vec<u8>,
}

/// A raw entry for a data region of `data_size` bytes: usually inside it.
fn raw_entry(data_size: u64) -> impl Strategy<Value = RawEntry> {
    let offset = prop_oneof![
        8 => any::<Index>().prop_map(move |i| i.index(data_size as usize) as u64),
        1 => (0u64..64).prop_map(move |d| data_size.saturating_sub(d)),
        1 => any::<u64>(),
    ];
    let len_error = prop::option::weighted(0.05, any::<u32>());
    let pad_error = prop::option::weighted(0.05, prop::collection::vec(any::<u8>(), 0..10));
    (
        offset,
        prop::collection::vec(any::<u8>(), 1..40),
        len_error,
        pad_error,
    )
        .prop_map(|(offset, data, len_error, pad_error)| {
            let pad_len = data.len().next_multiple_of(8) - data.len();
            RawEntry {
                offset,
                len: len_error.unwrap_or(data.len() as u32),
                pad: pad_error.unwrap_or_else(|| vec![0; pad_len]),
                data,
            }
        })
}

/// Header bytes of the two 16-bit fields (entry count, the commit id's position in
/// its group), which a mutation may overwrite directly.
const HEADER_NARROW: std::ops::Range<usize> = 4..8;

/// Bytes of the `count` entries at the front of `payload` as `decode_mj` bounds its
/// checksum: each header's 24-bit length, padded, until one runs past the end.
fn covered_len(payload: &[u8], count: u32) -> Option<usize> {
    let mut at = 0usize;
    for _ in 0..count {
        let word = u64::from_le_bytes(payload.get(at..at + 8)?.try_into().ok()?);
        at += ENTRY_HEADER_SIZE + ((word >> 40) as usize).next_multiple_of(8);
        if at > payload.len() {
            return None;
        }
    }
    Some(at)
}

/// An MJ slot built from raw entries and a header that is usually valid, sometimes
/// with one field (or byte of a 16-bit field) replaced, and always with a correct
/// checksum.
fn nearly_valid_mj() -> impl Strategy<Value = (Superblock, Vec<u8>)> {
    superblock().prop_flat_map(|sb| {
        (
            valid_header(sb.geo.mj_count),
            prop_oneof![
                1 => Just(Vec::new()),
                9 => prop::collection::vec(raw_entry(sb.geo.data_size), 1..4),
            ],
            prop::option::weighted(0.2, (0usize..9, any::<u64>())),
            any::<u8>(),
        )
            .prop_map(move |(mut h, entries, mutation, filler)| {
                let mut payload = Vec::new();
                for e in &entries {
                    let word = (e.offset & (format::DATA_SIZE_MAX - 1))
                        | (u64::from(e.len) << format::OFFSET_BITS);
                    payload.extend_from_slice(&word.to_le_bytes());
                    payload.extend_from_slice(&e.data);
                    payload.extend_from_slice(&e.pad);
                }
                h.entry_count = entries.len() as u32;
                let mut narrow_byte = None;
                if let Some((field, v)) = mutation {
                    match field {
                        0 => h.commit_id = v % 1100,
                        1 => h.lwm = v % 1100,
                        2 => h.group_first = v % 1100,
                        3 => h.group_len = (v % 20) as u32,
                        4 => h.entry_count = (v % 8) as u32,
                        5 => h.entry_count = (v % 2000) as u32,
                        6 => h.commit_id = v,
                        7 => h.group_first = v,
                        _ => narrow_byte = Some(v),
                    }
                }
                let mut header = h.encode_unsummed();
                if let Some(v) = narrow_byte {
                    let at = HEADER_NARROW.start + v as usize % HEADER_NARROW.len();
                    header[at] = (v >> 8) as u8;
                }
                let mut slot = header.to_vec();
                slot.extend_from_slice(&payload);
                slot.resize(sb.geo.mj_size as usize, filler);
                // The checksum over what `decode_mj` will take as the payload.
                let count = u32::from(u16::from_le_bytes([header[4], header[5]]));
                let body = &slot[MJ_HEADER_SIZE..];
                let end = MJ_HEADER_SIZE + covered_len(body, count).unwrap_or(0);
                let crc = format::mj_checksum(&sb.uuid, &slot[MJ_HEADER_SIZE..end], &header);
                set_mj_checksum(&mut header, crc);
                slot[..MJ_HEADER_SIZE].copy_from_slice(&header);
                (sb, slot)
            })
    })
}

// --- A persistent memory that is just memory ------------------------------------------

/// Plain memory: enough to run the engine and read back what it wrote.
struct Mem(Vec<u8>);

impl Pmem for Mem {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0[off as usize..off as usize + buf.len()]);
    }
    fn write_flushed(&mut self, off: u64, data: &[u8]) {
        self.0[off as usize..off as usize + data.len()].copy_from_slice(data);
    }
    fn fence(&mut self) {}
}

/// Default case counts; no failure persistence (proptest cannot locate a source
/// directory for integration tests, and a failure prints its minimal input anyway).
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The engine with its slot table and staging buffer on the heap.
type Jrnl = Journal<Vec<Slot>, Vec<u8>>;

/// Opens (recovers) the journal of geometry `geo` on `pm`, in coalesced mode, with
/// scratch and slot tables of its size.
fn open_journal(
    pm: &mut Mem,
    geo: Geometry,
) -> Result<(Jrnl, recovery::Plan), engine::JournalError> {
    let n = geo.mj_count as usize;
    let (mut scans, mut order) = (vec![SlotScan::Empty; n], vec![0; n]);
    let mut mj = vec![0; geo.mj_size as usize];
    let scratch = OpenScratch {
        scans: &mut scans,
        order: &mut order,
        mj: &mut mj,
    };
    Journal::open(
        pm,
        engine::Mode::Coalesced,
        vec![Slot::default(); n],
        vec![0; geo.mj_size as usize],
        scratch,
    )
}

/// Formats a journal of geometry `geo` on plain memory (initially garbage), opens
/// it and commits `group` as one group; returns the superblock, the memory and the
/// commit ids.
fn commit_on_fresh_journal(
    geo: Geometry,
    uuid: [u8; 16],
    group: &[Vec<(u64, Vec<u8>)>],
) -> (Superblock, Mem, Vec<u64>) {
    let mut pm = Mem(vec![0xa5; geo.dev_size as usize]);
    let sb = engine::format(&mut pm, geo, uuid).unwrap();
    let (mut j, _) = open_journal(&mut pm, geo).unwrap();
    let ranges = ranges_of(group);
    let mut txs: Vec<&[Range<'_>]> = ranges.iter().map(|r| &r[..]).collect();
    let mut ids = vec![0; txs.len()];
    j.commit(&mut pm, &mut txs[..], &mut ids).unwrap();
    (sb, pm, ids)
}

/// The ranges of each transaction of `group`, borrowing its data.
fn ranges_of(group: &[Vec<(u64, Vec<u8>)>]) -> Vec<Vec<Range<'_>>> {
    group
        .iter()
        .map(|tx| {
            tx.iter()
                .map(|(offset, data)| Range {
                    offset: *offset,
                    data,
                })
                .collect()
        })
        .collect()
}

/// Transactions prepared as the module prepares them: MJ images (header room, then
/// the entries) checksummed with `uuid`.
struct PreparedGroup {
    images: Vec<Vec<u8>>,
    crcs: Vec<u32>,
    uuid: [u8; 16],
}

impl PreparedGroup {
    fn new(group: &[Vec<(u64, Vec<u8>)>], uuid: [u8; 16]) -> PreparedGroup {
        let images: Vec<Vec<u8>> = group
            .iter()
            .map(|tx| {
                let mut image = vec![0; MJ_HEADER_SIZE];
                for (offset, data) in tx {
                    image.extend_from_slice(&entry_header(*offset, data.len() as u32));
                    image.extend_from_slice(data);
                    image.extend_from_slice(&format::ENTRY_PAD[..format::entry_pad(data.len())]);
                }
                image
            })
            .collect();
        let crcs = images
            .iter()
            .map(|i| engine::payload_crc(&uuid, &i[MJ_HEADER_SIZE..], memkit_core::crc32c::append))
            .collect();
        PreparedGroup { images, crcs, uuid }
    }
}

impl engine::Group for PreparedGroup {
    fn len(&self) -> usize {
        self.images.len()
    }

    fn ranges(&self, _i: usize) -> impl Iterator<Item = Range<'_>> {
        // Never read: every transaction is prepared.
        core::iter::empty()
    }

    fn prepared(&mut self, i: usize) -> Option<engine::Prepared<'_>> {
        let (crc, uuid) = (self.crcs[i], self.uuid);
        self.images
            .get_mut(i)
            .map(|image| engine::Prepared { image, crc, uuid })
    }
}

/// A format zeroes the whole superblock area (journal.rst: "the rest of the first 4
/// KiB is zero"), so that an earlier filesystem's signature there (ext4's magic at
/// byte 1080, swap's at 4086) does not survive for blkid and udev to find.
#[test]
fn format_zeroes_the_superblock_area() {
    let geo = geometry(4, 4, 1 << 16);
    let mut pm = Mem(vec![0xa5; geo.dev_size as usize]);
    engine::format(&mut pm, geo, [7; 16]).unwrap();
    let area = &pm.0[format::SB_SIZE..format::SB_AREA as usize];
    assert!(
        area.iter().all(|&b| b == 0),
        "bytes left in the superblock area after a format: {:?}",
        area.iter()
            .position(|&b| b != 0)
            .map(|p| p + format::SB_SIZE)
    );
}

// --- Properties -----------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decode_mj_never_panics_on_arbitrary_bytes(
        sb in superblock(),
        slot in prop::collection::vec(any::<u8>(), 0..1200),
    ) {
        let _ = decode_mj(&sb, &slot);
    }

    #[test]
    fn superblock_decode_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        dev_size in any::<u64>(),
    ) {
        let _ = Superblock::decode(&bytes, dev_size);
    }

    /// Nearly valid MJs reach every check past the checksum; whatever validates must
    /// be canonical.
    #[test]
    fn a_validating_mj_is_canonical((sb, slot) in nearly_valid_mj()) {
        if let Ok(m) = decode_mj(&sb, &slot) {
            assert_canonical(&sb, &slot, &m)?;
        }
    }

    /// MJs built from valid transactions validate, decode to the transaction, and
    /// the bytes after the payload do not matter.
    #[test]
    fn a_valid_mj_decodes_to_its_transaction(
        (sb, h, tx, filler) in superblock().prop_flat_map(|sb| {
            (Just(sb), valid_header(sb.geo.mj_count), valid_tx(sb.geo), any::<u8>())
        }),
    ) {
        let slot = encode_mj(&sb, h, &tx, filler);
        let m = decode_mj(&sb, &slot).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(entries_of(&m), tx);
        prop_assert_eq!(m.header.commit_id, h.commit_id);
        prop_assert_eq!(m.header.lwm, h.lwm);
        prop_assert_eq!((m.header.group_first, m.header.group_len), (h.group_first, h.group_len));
        assert_canonical(&sb, &slot, &m)?;
    }

    /// A single flipped bit anywhere in the header or the payload invalidates an MJ.
    #[test]
    fn any_single_bit_flip_invalidates_an_mj((sb, slot) in valid_mj()) {
        let m = decode_mj(&sb, &slot).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let covered = MJ_HEADER_SIZE + m.header.payload_len as usize;
        let mut bad = slot.clone();
        for bit in 0..covered * 8 {
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_mj(&sb, &bad).is_err(), "bit {} flipped still validates", bit);
            bad[bit / 8] ^= 1 << (bit % 8);
        }
    }

    /// The MJs the engine writes for a commit group decode to exactly the group's
    /// transactions, with consecutive ids and the group's bounds.
    #[test]
    fn the_engine_writes_canonical_mjs(
        (geo, group) in small_geometry().prop_flat_map(|g| {
            (Just(g), prop::collection::vec(valid_tx(g), 1..=(g.mj_count as usize).min(4)))
        }),
        uuid in any::<[u8; 16]>(),
    ) {
        let (sb, pm, ids) = commit_on_fresh_journal(geo, uuid, &group);
        let mut found = BTreeMap::new();
        for slot in 0..geo.mj_count {
            let at = geo.mj_at(slot).unwrap() as usize;
            let bytes = &pm.0[at..at + geo.mj_size as usize];
            if let Ok(m) = decode_mj(&sb, bytes) {
                assert_canonical(&sb, bytes, &m)?;
                found.insert(m.header.commit_id, (m.header, entries_of(&m)));
            }
        }
        prop_assert_eq!(found.len(), group.len());
        for (i, ((id, (h, tx)), want)) in found.iter().zip(&group).enumerate() {
            prop_assert_eq!(*id, ids[i]);
            prop_assert_eq!((h.group_first, h.group_len), (ids[0], group.len() as u32));
            prop_assert_eq!(tx, want);
        }
    }

    /// A group whose transactions were prepared by their callers (the module's path:
    /// copied into their MJ images and checksummed before queueing) leaves exactly the
    /// bytes, ids and counters of the same group staged by the engine, MJs and data in
    /// place alike; prepared against another journal identity (a re-attach between
    /// the preparation and the commit), its checksum is computed again.
    #[test]
    fn a_prepared_group_writes_what_a_staged_group_writes(
        (geo, group) in small_geometry().prop_flat_map(|g| {
            (Just(g), prop::collection::vec(valid_tx(g), 1..=(g.mj_count as usize).min(4)))
        }),
        uuid in any::<[u8; 16]>(),
        stale in any::<bool>(),
    ) {
        let mut other = uuid;
        other[0] ^= 1;
        let ranges = ranges_of(&group);
        let mut staged: Vec<&[Range<'_>]> = ranges.iter().map(|r| &r[..]).collect();
        let mut prepared = PreparedGroup::new(&group, if stale { other } else { uuid });
        let mut runs = Vec::new();
        for prepare in [false, true] {
            let mut pm = Mem(vec![0xa5; geo.dev_size as usize]);
            engine::format(&mut pm, geo, uuid).unwrap();
            let (mut j, _) = open_journal(&mut pm, geo).unwrap();
            let mut ids = vec![0; group.len()];
            if prepare {
                j.commit(&mut pm, &mut prepared, &mut ids).unwrap();
            } else {
                j.commit(&mut pm, &mut staged[..], &mut ids).unwrap();
            }
            runs.push((pm.0, ids, j.counters()));
        }
        prop_assert_eq!(&runs[0].1, &runs[1].1, "commit ids");
        prop_assert_eq!(runs[0].2, runs[1].2, "counters");
        prop_assert!(runs[0].0 == runs[1].0, "a prepared group left other bytes than a staged one");
    }

    /// An image that is not a transaction's entries is refused before anything is
    /// written: an empty payload, a range past the data region, padding that is not
    /// zero, bytes after the last entry that are not an entry, or more than an MJ.
    #[test]
    fn a_prepared_image_that_is_not_its_entries_is_refused(
        (geo, tx) in small_geometry().prop_flat_map(|g| (Just(g), valid_tx(g))),
        uuid in any::<[u8; 16]>(),
        damage in 0usize..5,
    ) {
        let mut pm = Mem(vec![0xa5; geo.dev_size as usize]);
        engine::format(&mut pm, geo, uuid).unwrap();
        let (mut j, _) = open_journal(&mut pm, geo).unwrap();
        let mut prepared = PreparedGroup::new(std::slice::from_ref(&tx), uuid);
        let image = &mut prepared.images[0];
        let first_len = tx[0].1.len();
        match damage {
            0 => image.truncate(MJ_HEADER_SIZE),
            1 => image[MJ_HEADER_SIZE..MJ_HEADER_SIZE + ENTRY_HEADER_SIZE]
                .copy_from_slice(&entry_header(geo.data_size, first_len as u32)),
            2 => {
                if first_len % 8 == 0 {
                    // No padding to damage: damage the next entry's header instead.
                    image.extend_from_slice(&[1; ENTRY_HEADER_SIZE]);
                } else {
                    image[MJ_HEADER_SIZE + ENTRY_HEADER_SIZE + first_len] = 1;
                }
            }
            3 => image.extend_from_slice(&[0; ENTRY_HEADER_SIZE]),
            _ => image.resize(MJ_HEADER_SIZE + geo.mj_capacity() + 8, 0),
        }
        let before = pm.0.clone();
        let mut ids = vec![0; 1];
        let r = j.commit(&mut pm, &mut prepared, &mut ids);
        prop_assert!(matches!(r, Err(engine::JournalError::Tx { index: 0, .. })), "{:?}", r);
        prop_assert!(pm.0 == before, "a refused image wrote something");
    }

    /// Superblocks round-trip, refuse a device smaller than their geometry, and are
    /// canonical even when crafted with a fixed-up checksum.
    #[test]
    fn superblock_round_trips_and_is_canonical(
        sb in superblock(),
        slack in 0u64..100,
        edits in prop::collection::vec((0usize..SB_SIZE - 4, any::<u8>()), 0..3),
    ) {
        let bytes = sb.encode();
        prop_assert_eq!(Superblock::decode(&bytes, sb.geo.dev_size + slack), Ok(sb));
        prop_assert_eq!(
            Superblock::decode(&bytes, sb.geo.dev_size - 1),
            Err(format::FormatError::TooSmall)
        );
        let mut crafted = bytes;
        for (at, v) in edits {
            crafted[at] = v;
        }
        let crc = memkit_core::crc32c::crc32c(&crafted[..SB_SIZE - 4]);
        crafted[SB_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
        if let Ok(got) = Superblock::decode(&crafted, u64::MAX) {
            prop_assert_eq!(got.encode(), crafted, "a crafted superblock is not canonical");
        }
    }

    #[test]
    fn any_single_bit_flip_invalidates_a_superblock(sb in superblock(), bit in 0..SB_SIZE * 8) {
        let mut bytes = sb.encode();
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(Superblock::decode(&bytes, u64::MAX).is_err());
    }
}

// --- Recovery planning ----------------------------------------------------------------

/// A slot scan: empty, invalid, or valid with arbitrary (possibly inconsistent)
/// fields, ids small so that groups and duplicates occur, sometimes huge.
fn arbitrary_scan() -> impl Strategy<Value = SlotScan> {
    let id = prop_oneof![8 => 0u64..24, 1 => Just(u64::MAX), 1 => any::<u64>()];
    let valid =
        (id.clone(), id.clone(), id, 0u32..6).prop_map(|(id, lwm, group_first, group_len)| {
            SlotScan::Valid {
                id,
                lwm,
                group_first,
                group_len,
            }
        });
    prop_oneof![
        1 => Just(SlotScan::Empty),
        1 => Just(SlotScan::Invalid(MjError::BadChecksum)),
        4 => valid,
    ]
}

/// The scan of a journal-like history: consecutive commit groups of 1-4 ids (with
/// gaps, as left by groups whose MJs were all reused), each group sharing a low-water
/// mark at or below its start, each member valid or torn, plus empty slots, rarely a
/// duplicate id, in a random slot order. Every valid scan is one `decode_mj` could
/// produce: `1 <= lwm <= group_first <= id < group_first + group_len`.
fn journal_like_scans() -> impl Strategy<Value = Vec<SlotScan>> {
    let group = (
        1u32..=4,
        0u64..3,
        any::<Index>(),
        prop::collection::vec(prop::bool::weighted(0.8), 4),
    );
    (
        prop::collection::vec(group, 0..6),
        0usize..3,
        prop::option::weighted(0.1, any::<Index>()),
    )
        .prop_flat_map(|(groups, empty, duplicate)| {
            let mut scans = vec![SlotScan::Empty; empty];
            let mut first = 1u64;
            for (len, gap, lwm, present) in groups {
                first += gap;
                let lwm = 1 + lwm.index(first as usize) as u64;
                for k in 0..len {
                    scans.push(if present[k as usize] {
                        SlotScan::Valid {
                            id: first + u64::from(k),
                            lwm,
                            group_first: first,
                            group_len: len,
                        }
                    } else {
                        SlotScan::Invalid(MjError::BadChecksum)
                    });
                }
                first += u64::from(len);
            }
            if let Some(i) = duplicate {
                if !scans.is_empty() {
                    scans.push(scans[i.index(scans.len())]);
                }
            }
            Just(scans).prop_shuffle()
        })
}

/// `(id, lwm, group_first, group_len)` of a valid scan.
fn fields(s: &SlotScan) -> Option<(u64, u64, u64, u32)> {
    match *s {
        SlotScan::Valid {
            id,
            lwm,
            group_first,
            group_len,
        } => Some((id, lwm, group_first, group_len)),
        _ => None,
    }
}

/// What recovery must decide for well-formed scans: `(lwm, replayed ids in order,
/// stale, incomplete, next_id)`, or the error.
type Decision = (u64, Vec<u64>, u32, u32, u64);

fn reference_plan(scans: &[SlotScan]) -> Result<Decision, PlanError> {
    let valid: Vec<(u64, u64, u64, u32)> = scans.iter().filter_map(fields).collect();
    let mut ids: Vec<u64> = valid.iter().map(|v| v.0).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(PlanError::DuplicateId(w[0]));
    }
    let lwm = valid.iter().map(|v| v.1).max().unwrap_or(0);
    // Recovery seals with the id after the largest, if any MJ is valid.
    let next_id = match ids.last() {
        None => 1,
        Some(&max) => max.checked_add(2).ok_or(PlanError::IdsExhausted)?,
    };
    let group_of: BTreeMap<u64, (u64, u32)> = valid.iter().map(|v| (v.0, (v.2, v.3))).collect();
    // A group is replayed when it starts at or above the low-water mark and every
    // member is valid and names it.
    let complete = |first: u64, len: u32| {
        first >= lwm
            && (0..u64::from(len)).all(|k| group_of.get(&(first + k)) == Some(&(first, len)))
    };
    let live: Vec<&(u64, u64, u64, u32)> = valid.iter().filter(|v| v.0 >= lwm).collect();
    let mut replay: Vec<u64> = live
        .iter()
        .filter(|v| complete(v.2, v.3))
        .map(|v| v.0)
        .collect();
    replay.sort_unstable();
    let stale = (valid.len() - live.len()) as u32;
    let incomplete = (live.len() - replay.len()) as u32;
    Ok((lwm, replay, stale, incomplete, next_id))
}

/// Runs `recovery::plan` and returns its decision, or its error.
fn run_plan(scans: &[SlotScan]) -> Result<(recovery::Plan, Vec<u64>), PlanError> {
    let mut order = vec![u32::MAX; scans.len()];
    let p = recovery::plan(scans, &mut order)?;
    let ids = order[..p.replay as usize]
        .iter()
        .map(|&slot| {
            fields(&scans[slot as usize])
                .expect("replays valid MJs only")
                .0
        })
        .collect();
    Ok((p, ids))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn plan_is_sound_on_arbitrary_scans(scans in prop::collection::vec(arbitrary_scan(), 0..12)) {
        let Ok((p, ids)) = run_plan(&scans) else { return Ok(()) };
        let valid: Vec<_> = scans.iter().filter_map(fields).collect();
        prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "not strictly increasing: {:?}", ids);
        prop_assert!(ids.iter().all(|&id| id >= p.lwm));
        prop_assert_eq!(p.lwm, valid.iter().map(|v| v.1).max().unwrap_or(0));
        match valid.iter().map(|v| v.0).max() {
            None => prop_assert_eq!((p.seal_id, p.next_id), (None, 1)),
            Some(max) => prop_assert_eq!((p.seal_id, p.next_id), (Some(max + 1), max + 2)),
        }
        prop_assert_eq!((p.replay + p.stale + p.incomplete) as usize, valid.len());
        prop_assert_eq!((p.discarded + p.empty) as usize + valid.len(), scans.len());
        // Whole groups: every replayed MJ's group is replayed in full, members naming
        // the same group.
        let replayed: BTreeSet<u64> = ids.iter().copied().collect();
        for v in valid.iter().filter(|v| replayed.contains(&v.0)) {
            let (first, len) = (v.2, v.3);
            for k in 0..u64::from(len) {
                let member = valid.iter().find(|w| w.0 == first + k);
                prop_assert!(
                    member.is_some_and(|w| (w.2, w.3) == (first, len) && replayed.contains(&w.0)),
                    "id {} replayed without member {} of its group", v.0, first + k
                );
            }
        }
    }

    #[test]
    fn plan_matches_the_reference_on_journal_like_scans(scans in journal_like_scans()) {
        let got = run_plan(&scans).map(|(p, ids)| (p.lwm, ids, p.stale, p.incomplete, p.next_id));
        prop_assert_eq!(got, reference_plan(&scans));
    }

    #[test]
    fn plan_refuses_a_short_order_buffer(scans in prop::collection::vec(arbitrary_scan(), 1..8)) {
        let mut order = vec![0; scans.len() - 1];
        prop_assert_eq!(recovery::plan(&scans, &mut order), Err(PlanError::OrderTooShort));
    }
}

// --- Transaction planning -------------------------------------------------------------

/// Offsets and lengths around the interesting edges: zero, small, the data region's
/// end, `u32` and `u64` overflow.
fn edgy(data_size: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..200,
        2 => (0u64..64).prop_map(move |d| data_size.saturating_sub(d)),
        1 => (0u64..64).prop_map(move |d| data_size + d),
        1 => (0u64..4).prop_map(|d| u64::from(u32::MAX) - 1 + d),
        1 => (0u64..4).prop_map(|d| u64::MAX - d),
    ]
}

fn tx_request() -> impl Strategy<Value = (Geometry, Vec<(u64, u64)>)> {
    (2u32..=8, 4u32..=8, 1u64..=4096).prop_flat_map(|(n, lines, data)| {
        let geo = geometry(n, lines, data);
        let range = (edgy(geo.data_size), edgy(geo.data_size));
        let many = geo.max_ranges() as usize + 2;
        (Just(geo), prop::collection::vec(range, 0..many))
    })
}

/// Bytes the entry for a range of `len` takes, if its length can be encoded.
fn entry_bytes(len: u64) -> Option<usize> {
    u32::try_from(len).ok().and_then(entry_size)
}

fn range_ok(geo: &Geometry, (offset, len): (u64, u64)) -> bool {
    len > 0
        && offset
            .checked_add(len)
            .is_some_and(|end| end <= geo.data_size)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn plan_tx_accepts_exactly_what_fits((geo, ranges) in tx_request()) {
        let got = format::plan_tx(&geo, ranges.iter().copied());
        let fits = !ranges.is_empty()
            && ranges.len() <= geo.max_ranges() as usize
            && ranges.iter().all(|&r| range_ok(&geo, r))
            && ranges
                .iter()
                .map(|&(_, len)| entry_bytes(len))
                .sum::<Option<usize>>()
                .is_some_and(|total| total <= geo.mj_capacity());
        match got {
            Ok(payload) => {
                prop_assert!(fits, "accepted {:?}", ranges);
                let total: usize = ranges.iter().map(|&(_, len)| entry_bytes(len).unwrap()).sum();
                prop_assert_eq!(payload as usize, total);
            }
            Err(e) => {
                prop_assert!(!fits, "refused {:?} with {:?}", ranges, e);
                // The refusal names a case that holds.
                match e {
                    TxError::Empty => prop_assert!(ranges.is_empty()),
                    TxError::TooManyRanges => {
                        prop_assert!(ranges.len() > geo.max_ranges() as usize)
                    }
                    TxError::BadRange(i) => {
                        prop_assert!(!range_ok(&geo, ranges[i as usize]))
                    }
                    TxError::TooLarge => {
                        // Some prefix of valid ranges needs more than one MJ.
                        let mut total = 0usize;
                        let mut over = false;
                        for &(_, len) in &ranges {
                            match entry_bytes(len) {
                                Some(b) => total += b,
                                None => over = true,
                            }
                            if total > geo.mj_capacity() {
                                over = true;
                            }
                        }
                        prop_assert!(over);
                    }
                }
            }
        }
    }
}

/// The nearly-valid generator must produce valid MJs often enough for
/// `a_validating_mj_is_canonical` to test something, and invalid ones too.
#[test]
fn nearly_valid_generator_covers_both_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = nearly_valid_mj();
    let (mut valid, total) = (0, 2000);
    for _ in 0..total {
        let (sb, slot) = strategy.new_tree(&mut runner).unwrap().current();
        valid += usize::from(decode_mj(&sb, &slot).is_ok());
    }
    assert!(valid * 10 >= total, "only {valid} of {total} validate");
    assert!(valid * 10 <= total * 9, "{valid} of {total} validate");
    println!("nearly valid MJs: {valid} of {total} validate");
}

/// Entry header layout sanity: what `entry_header` writes is what `decode_mj` reads.
#[test]
fn entry_header_is_offset_then_length() {
    let e = entry_header(0x01_0203_0405, 0x0a_0b0c);
    assert_eq!(e.len(), ENTRY_HEADER_SIZE);
    assert_eq!(e, [0x05, 0x04, 0x03, 0x02, 0x01, 0x0c, 0x0b, 0x0a]);
}

/// Offsets are 40 bits: the data region of a journal on a larger device stops at
/// 1 TiB, and the superblock of such a journal decodes.
#[test]
fn the_data_region_stops_at_one_tib() {
    let geo = Geometry::new(u64::MAX / 2, 4, 256).unwrap();
    assert_eq!(geo.data_size, format::DATA_SIZE_MAX);
    assert_eq!(geo.dev_size, geo.data_offset + format::DATA_SIZE_MAX);
    let sb = Superblock { uuid: [3; 16], geo };
    assert_eq!(Superblock::decode(&sb.encode(), u64::MAX / 2), Ok(sb));
    let last = format::DATA_SIZE_MAX - 8;
    assert!(format::plan_tx(&geo, [(last, 8)]).is_ok());
    assert_eq!(
        format::plan_tx(&geo, [(last, 9)]),
        Err(TxError::BadRange(0))
    );
}

/// A version 1 superblock (64-byte MJ headers, 16-byte entry headers) is refused by
/// its version number, so that an older journal is never misread.
#[test]
fn a_version_1_superblock_is_refused_by_version() {
    let geo = geometry(4, 4, 4096);
    let mut b = Superblock { uuid: [5; 16], geo }.encode();
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = memkit_core::crc32c::Crc32c::new()
        .update(&b[..SB_SIZE - 4])
        .finish();
    b[SB_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        Superblock::decode(&b, geo.dev_size),
        Err(format::FormatError::BadVersion(1))
    );
}

/// Regression (found by the guest's corrupted-media test): with commit ids near 2^64
/// (a crafted MJ), a commit could take the last id recovery's seal needs, and the
/// acknowledged transaction then left a journal that recovery refuses
/// (`IdsExhausted`). Every acknowledged commit must leave a journal that opens, with
/// the transaction in it; commits are refused before that.
#[test]
fn regression_an_acknowledged_commit_leaves_ids_for_the_seal() {
    let geo = geometry(4, 4, 64);
    let uuid = [7; 16];
    let mut pm = Mem(vec![0; geo.dev_size as usize]);
    let sb = engine::format(&mut pm, geo, uuid).unwrap();
    let id = u64::MAX - 5;
    let slot = encode_mj(&sb, valid_header_with(id), &[(0, vec![1])], 0);
    let off = geo.mj_at(0).unwrap() as usize;
    pm.0[off..off + slot.len()].copy_from_slice(&slot);
    let (mut j, _) = open_journal(&mut pm, geo).unwrap();
    let mut committed = 0;
    for value in 2u8.. {
        let data = [value];
        let mut ids = [0];
        let tx = [Range {
            offset: 0,
            data: &data,
        }];
        match j.commit(&mut pm, &mut [&tx[..]][..], &mut ids) {
            Ok(()) => committed += 1,
            Err(engine::JournalError::IdsExhausted) => break,
            Err(e) => panic!("commit: {e:?}"),
        }
        // A crash now: recovery must take the journal back, with the commit in it.
        let mut crashed = Mem(pm.0.clone());
        let (_, plan) = open_journal(&mut crashed, geo).unwrap_or_else(|e| {
            panic!(
                "commit id {} acknowledged, then recovery refuses: {e:?}",
                ids[0]
            )
        });
        assert!(plan.seal_id.is_some());
        assert_eq!(crashed.0[geo.data_offset as usize], value);
    }
    assert!(committed >= 1, "no commit fitted");
}

/// A well-formed single-transaction header with commit id `id` (also its LWM and group).
fn valid_header_with(id: u64) -> MjHeader {
    MjHeader {
        commit_id: id,
        lwm: id,
        entry_count: 0,
        payload_len: 0,
        group_first: id,
        group_len: 1,
    }
}
