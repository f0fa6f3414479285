// SPDX-License-Identifier: GPL-2.0

//! On-media format v2 of the micro-journal (`Documentation/journal.rst` has the byte
//! map): the superblock, micro-journal (MJ) headers and their redo entries.
//!
//! Everything read from the medium is untrusted: every number is range-checked with
//! checked arithmetic before it is used, and every decoder returns a specific error
//! instead of panicking. All integers are little-endian.

use crate::pure::crc32c::Crc32c;

/// Superblock magic, at offset 0 of the device.
pub const SB_MAGIC: [u8; 8] = *b"MKJRNL\0\x01";
/// The format version this code writes and reads. Version 1 (a 64-byte MJ header
/// and 16-byte entry headers) is recognised and refused by version number.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of the superblock (the checksum is its last 4 bytes).
pub const SB_SIZE: usize = 128;
/// Bytes reserved for the superblock at the start of the device; MJs follow.
pub const SB_AREA: u64 = 4096;
/// Bytes of an MJ header: half a cache line, so that a small transaction's first
/// entry shares the header's line.
pub const MJ_HEADER_SIZE: usize = 32;
/// MJ header magic ("MKM2").
pub const MJ_MAGIC: u32 = u32::from_le_bytes(*b"MKM2");
/// Bytes of the MJ header the checksum covers: all but the checksum itself, which is
/// the header's last field.
pub const MJ_SUMMED: usize = MJ_HEADER_SIZE - 4;
/// Bytes of an entry header: one little-endian `u64`, the target offset in its low
/// [`OFFSET_BITS`] bits and the length above them.
pub const ENTRY_HEADER_SIZE: usize = 8;
/// Bits of an entry's target offset: the data region is at most 1 TiB.
pub const OFFSET_BITS: u32 = 40;
/// Largest data region: offsets must fit [`OFFSET_BITS`]. A journal on a larger device
/// uses only its first `data_offset + DATA_SIZE_MAX` bytes.
pub const DATA_SIZE_MAX: u64 = 1 << OFFSET_BITS;
/// Entry data is padded to this alignment.
pub const ENTRY_ALIGN: usize = 8;
/// The persistence granule the layout aligns to: a CPU cache line.
pub const LINE: u64 = 64;
/// Fewest MJs a journal may have (two alternate in the single-threaded case).
pub const MJ_COUNT_MIN: u32 = 2;
/// Most MJs a journal may have.
pub const MJ_COUNT_MAX: u32 = 1 << 16;
/// Smallest MJ (header included).
pub const MJ_SIZE_MIN: u32 = 256;
/// Largest MJ (header included).
pub const MJ_SIZE_MAX: u32 = 1 << 24;
/// Most ranges one transaction may carry.
pub const TX_RANGES_MAX: u32 = 1024;

/// Why an image or a request does not fit the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The superblock magic is wrong: not a memkit journal.
    BadMagic,
    /// A format version this code does not know.
    BadVersion(u32),
    /// The superblock checksum does not match.
    BadChecksum {
        /// The checksum on the medium.
        stored: u32,
        /// The checksum of the bytes on the medium.
        computed: u32,
    },
    /// A geometry number is out of range or inconsistent; says which.
    BadGeometry(&'static str),
    /// A reserved field is not zero.
    NonZeroReserved,
    /// The device or image is smaller than the superblock says or needs.
    TooSmall,
}

/// Where everything lives on the device. All offsets are from the device start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes of the device the journal uses.
    pub dev_size: u64,
    /// Number of MJs.
    pub mj_count: u32,
    /// Bytes per MJ, header included; a multiple of [`LINE`].
    pub mj_size: u32,
    /// Offset of MJ 0 (= [`SB_AREA`]).
    pub mj_offset: u64,
    /// Offset of the data region: after the MJs, page-aligned.
    pub data_offset: u64,
    /// Bytes of the data region: the rest of the device.
    pub data_size: u64,
}

const PAGE: u64 = 4096;

impl Geometry {
    /// Lays out a journal of `mj_count` MJs of `mj_size` bytes on `dev_size` bytes.
    /// The data region stops at [`DATA_SIZE_MAX`]; the device bytes after it are not
    /// part of the journal (`dev_size` says how many are).
    pub fn new(dev_size: u64, mj_count: u32, mj_size: u32) -> Result<Geometry, FormatError> {
        if !(MJ_COUNT_MIN..=MJ_COUNT_MAX).contains(&mj_count) {
            return Err(FormatError::BadGeometry("MJ count out of range"));
        }
        if !(MJ_SIZE_MIN..=MJ_SIZE_MAX).contains(&mj_size) || u64::from(mj_size) % LINE != 0 {
            return Err(FormatError::BadGeometry(
                "MJ size out of range or not a multiple of 64",
            ));
        }
        let mj_bytes = u64::from(mj_count)
            .checked_mul(u64::from(mj_size))
            .ok_or(FormatError::BadGeometry("MJ area overflows"))?;
        let data_offset = SB_AREA
            .checked_add(mj_bytes)
            .and_then(|end| end.checked_next_multiple_of(PAGE))
            .ok_or(FormatError::BadGeometry("MJ area overflows"))?;
        if dev_size <= data_offset {
            return Err(FormatError::TooSmall);
        }
        let dev_size = dev_size.min(data_offset.saturating_add(DATA_SIZE_MAX));
        Ok(Geometry {
            dev_size,
            mj_count,
            mj_size,
            mj_offset: SB_AREA,
            data_offset,
            data_size: dev_size - data_offset,
        })
    }

    /// Device offset of MJ `slot`, or `None` past the last MJ.
    pub fn mj_at(&self, slot: u32) -> Option<u64> {
        if slot >= self.mj_count {
            return None;
        }
        u64::from(slot)
            .checked_mul(u64::from(self.mj_size))
            .and_then(|o| o.checked_add(self.mj_offset))
    }

    /// Payload bytes an MJ holds after its header: the byte limit of a transaction,
    /// entry headers and padding included.
    pub fn mj_capacity(&self) -> usize {
        // Lossless: `mj_size <= MJ_SIZE_MAX` (16 MiB).
        (self.mj_size as usize).saturating_sub(MJ_HEADER_SIZE)
    }

    /// Most ranges one transaction may carry in this geometry.
    pub fn max_ranges(&self) -> u32 {
        let smallest = ENTRY_HEADER_SIZE + ENTRY_ALIGN;
        let fit = u32::try_from(self.mj_capacity() / smallest).unwrap_or(u32::MAX);
        fit.min(TX_RANGES_MAX)
    }
}

fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut raw = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        raw.copy_from_slice(s);
    }
    u32::from_le_bytes(raw)
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut raw = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        raw.copy_from_slice(s);
    }
    u64::from_le_bytes(raw)
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(off..off + v.len()) {
        d.copy_from_slice(v);
    }
}

/// The superblock: identity and geometry of a formatted journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Random identity chosen at format time; mixed into every MJ checksum, so MJs
    /// left over from an earlier format never validate.
    pub uuid: [u8; 16],
    /// The layout.
    pub geo: Geometry,
}

// Superblock field offsets.
const SB_VERSION: usize = 8;
const SB_HDR_SIZE: usize = 12;
const SB_UUID: usize = 16;
const SB_DEV_SIZE: usize = 32;
const SB_MJ_OFFSET: usize = 40;
const SB_MJ_SIZE: usize = 48;
const SB_MJ_COUNT: usize = 52;
const SB_DATA_OFFSET: usize = 56;
const SB_DATA_SIZE: usize = 64;
const SB_RESERVED: usize = 72;
const SB_CRC: usize = SB_SIZE - 4;

impl Superblock {
    /// The superblock's bytes.
    pub fn encode(&self) -> [u8; SB_SIZE] {
        let mut b = [0u8; SB_SIZE];
        put(&mut b, 0, &SB_MAGIC);
        put(&mut b, SB_VERSION, &FORMAT_VERSION.to_le_bytes());
        put(&mut b, SB_HDR_SIZE, &(SB_SIZE as u32).to_le_bytes());
        put(&mut b, SB_UUID, &self.uuid);
        put(&mut b, SB_DEV_SIZE, &self.geo.dev_size.to_le_bytes());
        put(&mut b, SB_MJ_OFFSET, &self.geo.mj_offset.to_le_bytes());
        put(&mut b, SB_MJ_SIZE, &self.geo.mj_size.to_le_bytes());
        put(&mut b, SB_MJ_COUNT, &self.geo.mj_count.to_le_bytes());
        put(&mut b, SB_DATA_OFFSET, &self.geo.data_offset.to_le_bytes());
        put(&mut b, SB_DATA_SIZE, &self.geo.data_size.to_le_bytes());
        let crc = Crc32c::new().update(&b[..SB_CRC]).finish();
        put(&mut b, SB_CRC, &crc.to_le_bytes());
        b
    }

    /// Decodes and validates the superblock at the start of `bytes`, for a device of
    /// `dev_size` bytes.
    pub fn decode(bytes: &[u8], dev_size: u64) -> Result<Superblock, FormatError> {
        let b = bytes.get(..SB_SIZE).ok_or(FormatError::TooSmall)?;
        if b[..8] != SB_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let stored = get_u32(b, SB_CRC);
        let computed = Crc32c::new().update(&b[..SB_CRC]).finish();
        if stored != computed {
            return Err(FormatError::BadChecksum { stored, computed });
        }
        let version = get_u32(b, SB_VERSION);
        if version != FORMAT_VERSION {
            return Err(FormatError::BadVersion(version));
        }
        if get_u32(b, SB_HDR_SIZE) != SB_SIZE as u32 {
            return Err(FormatError::BadGeometry("superblock size"));
        }
        if b[SB_RESERVED..SB_CRC].iter().any(|&x| x != 0) {
            return Err(FormatError::NonZeroReserved);
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[SB_UUID..SB_UUID + 16]);
        let stored_geo = Geometry {
            dev_size: get_u64(b, SB_DEV_SIZE),
            mj_count: get_u32(b, SB_MJ_COUNT),
            mj_size: get_u32(b, SB_MJ_SIZE),
            mj_offset: get_u64(b, SB_MJ_OFFSET),
            data_offset: get_u64(b, SB_DATA_OFFSET),
            data_size: get_u64(b, SB_DATA_SIZE),
        };
        // The stored layout must be exactly what the format derives from its inputs.
        let geo = Geometry::new(stored_geo.dev_size, stored_geo.mj_count, stored_geo.mj_size)?;
        if geo != stored_geo {
            return Err(FormatError::BadGeometry(
                "offsets disagree with MJ count and size",
            ));
        }
        if geo.dev_size > dev_size {
            return Err(FormatError::TooSmall);
        }
        Ok(Superblock { uuid, geo })
    }
}

/// Why an MJ is not a valid committed transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MjError {
    /// The header is all zero: the MJ was never written since format.
    Empty,
    /// The magic is wrong: garbage or a torn header.
    BadMagic,
    /// A header field is out of range; says which.
    BadHeader(&'static str),
    /// The checksum does not match: a torn or corrupted MJ.
    BadChecksum,
    /// Entry `index` is malformed; says why.
    BadEntry {
        /// Index of the entry in the MJ.
        index: u32,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// The header of a committed MJ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MjHeader {
    /// The transaction's commit id (GAID at commit); never 0.
    pub commit_id: u64,
    /// Low-water mark: every transaction with a smaller id was durable in place when
    /// this one committed.
    pub lwm: u64,
    /// Number of entries.
    pub entry_count: u32,
    /// Bytes of entries after the header. Not stored: [`decode_mj`] derives it from
    /// the entries' lengths, and [`MjHeader::encode_unsummed`] ignores it.
    pub payload_len: u32,
    /// First commit id of the group this transaction was committed with (one
    /// persistence barrier per group).
    pub group_first: u64,
    /// Number of transactions in the group: ids `group_first..group_first + group_len`.
    pub group_len: u32,
}

// MJ header field offsets.
const MJ_ENTRY_COUNT: usize = 4;
const MJ_GROUP_POS: usize = 6;
const MJ_COMMIT_ID: usize = 8;
const MJ_LWM: usize = 16;
const MJ_GROUP_LEN: usize = 24;
const MJ_CRC: usize = MJ_SUMMED;

impl MjHeader {
    /// The header's bytes, checksum included; `payload` is the entries it covers.
    pub fn encode(&self, uuid: &[u8; 16], payload: &[u8]) -> [u8; MJ_HEADER_SIZE] {
        let mut h = self.encode_unsummed();
        let crc = mj_checksum(uuid, payload, &h);
        put(&mut h, MJ_CRC, &crc.to_le_bytes());
        h
    }

    /// The header's bytes without the checksum (zero there).
    ///
    /// The entry count and the commit id's position in its group are stored in 16
    /// bits: a valid header has at most [`TX_RANGES_MAX`] entries and a group of at
    /// most [`MJ_COUNT_MAX`] transactions. Out-of-range values are stored as
    /// `u16::MAX`, which [`decode_mj`] refuses (the entry count) or which no longer
    /// names this commit id (the position): the engine never encodes either.
    pub fn encode_unsummed(&self) -> [u8; MJ_HEADER_SIZE] {
        let narrow = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
        let pos = self.commit_id.wrapping_sub(self.group_first);
        let mut h = [0u8; MJ_HEADER_SIZE];
        put(&mut h, 0, &MJ_MAGIC.to_le_bytes());
        put(
            &mut h,
            MJ_ENTRY_COUNT,
            &narrow(u64::from(self.entry_count)).to_le_bytes(),
        );
        put(&mut h, MJ_GROUP_POS, &narrow(pos).to_le_bytes());
        put(&mut h, MJ_COMMIT_ID, &self.commit_id.to_le_bytes());
        put(&mut h, MJ_LWM, &self.lwm.to_le_bytes());
        put(&mut h, MJ_GROUP_LEN, &self.group_len.to_le_bytes());
        h
    }
}

/// The MJ checksum: CRC-32C over the journal's uuid, the payload, then the header's
/// first [`MJ_SUMMED`] bytes.
pub fn mj_checksum(uuid: &[u8; 16], payload: &[u8], header: &[u8; MJ_HEADER_SIZE]) -> u32 {
    Crc32c::new()
        .update(uuid)
        .update(payload)
        .update(&header[..MJ_SUMMED])
        .finish()
}

/// Sets the checksum field of an encoded header to `crc`.
pub fn set_mj_checksum(header: &mut [u8; MJ_HEADER_SIZE], crc: u32) {
    put(header, MJ_CRC, &crc.to_le_bytes());
}

/// Bytes an entry of `len` data bytes takes in an MJ (header, data, padding).
pub fn entry_size(len: u32) -> Option<usize> {
    let len = usize::try_from(len).ok()?;
    len.checked_next_multiple_of(ENTRY_ALIGN)?
        .checked_add(ENTRY_HEADER_SIZE)
}

const OFFSET_MASK: u64 = DATA_SIZE_MAX - 1;

/// The 8 header bytes of an entry writing `len` bytes at data-region offset `offset`.
///
/// [`plan_tx`] guarantees the fields fit: `offset + len` inside a data region of at
/// most [`DATA_SIZE_MAX`] bytes, `len` inside an MJ of at most [`MJ_SIZE_MAX`] bytes
/// (24 bits). Bits that do not fit are dropped, which [`decode_mj`] then refuses or
/// the checksum catches; the engine never encodes such an entry.
pub fn entry_header(offset: u64, len: u32) -> [u8; ENTRY_HEADER_SIZE] {
    ((offset & OFFSET_MASK) | (u64::from(len) << OFFSET_BITS)).to_le_bytes()
}

/// One redo entry of a valid MJ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Target offset in the data region.
    pub offset: u64,
    /// The bytes to write there.
    pub data: &'a [u8],
}

/// A valid, committed MJ read from the medium.
#[derive(Clone, Copy, Debug)]
pub struct Mj<'a> {
    /// Its header.
    pub header: MjHeader,
    payload: &'a [u8],
}

impl<'a> Mj<'a> {
    /// Its entries, in the order they are to be applied. Already validated by
    /// [`decode_mj`].
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            rest: self.payload,
            left: self.header.entry_count,
        }
    }
}

/// Iterator over the entries of a validated MJ.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    rest: &'a [u8],
    left: u32,
}

/// Splits one entry off the front of `rest`, checking it against `data_size`.
fn parse_entry(rest: &[u8], data_size: u64) -> Result<(Entry<'_>, &[u8]), &'static str> {
    let head = rest
        .get(..ENTRY_HEADER_SIZE)
        .ok_or("truncated entry header")?;
    let word = get_u64(head, 0);
    let offset = word & OFFSET_MASK;
    // Lossless: 64 - OFFSET_BITS = 24 bits.
    let len = (word >> OFFSET_BITS) as u32;
    if len == 0 {
        return Err("zero length");
    }
    let end = offset
        .checked_add(u64::from(len))
        .ok_or("offset + length overflows")?;
    if end > data_size {
        return Err("range past the data region");
    }
    let size = entry_size(len).ok_or("length overflows")?;
    let body = rest
        .get(ENTRY_HEADER_SIZE..size)
        .ok_or("truncated entry data")?;
    let (data, pad) = body.split_at(len as usize);
    if pad.iter().any(|&b| b != 0) {
        return Err("padding not zero");
    }
    Ok((Entry { offset, data }, &rest[size..]))
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.left == 0 {
            return None;
        }
        // Validated by `decode_mj`; `u64::MAX` as the bound re-checks only the shape.
        let (entry, rest) = parse_entry(self.rest, u64::MAX).ok()?;
        self.rest = rest;
        self.left -= 1;
        Some(entry)
    }
}

/// Bytes of the `count` entries at the front of `payload`, from their headers' lengths
/// alone; `None` if they do not fit. Nothing else is checked: this only bounds what
/// the checksum covers.
fn entries_len(payload: &[u8], count: u32) -> Option<usize> {
    let mut at = 0usize;
    for _ in 0..count {
        let head = payload.get(at..at.checked_add(ENTRY_HEADER_SIZE)?)?;
        // Lossless: 24 bits.
        let len = (get_u64(head, 0) >> OFFSET_BITS) as u32;
        at = at.checked_add(entry_size(len)?)?;
        if at > payload.len() {
            return None;
        }
    }
    Some(at)
}

/// Decodes the MJ in `slot` (its `mj_size` bytes) of the journal `sb`.
///
/// Succeeds only for an MJ whose every byte is as a commit wrote it: magic, header
/// within range, checksum over uuid, entries and header, and entries each inside the
/// data region with zero padding. The header does not store the payload's length:
/// the entries' own lengths give it, bounded by the MJ, and an MJ whose entries run
/// past its end is as torn as one whose checksum does not match.
pub fn decode_mj<'a>(sb: &Superblock, slot: &'a [u8]) -> Result<Mj<'a>, MjError> {
    let h = slot
        .get(..MJ_HEADER_SIZE)
        .ok_or(MjError::BadHeader("truncated"))?;
    if h.iter().all(|&b| b == 0) {
        return Err(MjError::Empty);
    }
    if get_u32(h, 0) != MJ_MAGIC {
        return Err(MjError::BadMagic);
    }
    let field16 = |off: usize| u16::from_le_bytes([h[off], h[off + 1]]);
    let entry_count = u32::from(field16(MJ_ENTRY_COUNT));
    let commit_id = get_u64(h, MJ_COMMIT_ID);
    let body = slot
        .get(MJ_HEADER_SIZE..)
        .and_then(|b| b.get(..sb.geo.mj_capacity().min(b.len())))
        .ok_or(MjError::BadHeader("truncated"))?;
    let payload_len = entries_len(body, entry_count).ok_or(MjError::BadChecksum)?;
    let payload = &body[..payload_len];
    let mut hdr = [0u8; MJ_HEADER_SIZE];
    hdr.copy_from_slice(h);
    if get_u32(h, MJ_CRC) != mj_checksum(&sb.uuid, payload, &hdr) {
        return Err(MjError::BadChecksum);
    }
    let header = MjHeader {
        commit_id,
        lwm: get_u64(h, MJ_LWM),
        entry_count,
        // Lossless: at most `mj_capacity() < MJ_SIZE_MAX`.
        payload_len: payload_len as u32,
        group_first: commit_id.wrapping_sub(u64::from(field16(MJ_GROUP_POS))),
        group_len: get_u32(h, MJ_GROUP_LEN),
    };
    // Checksummed, so written by a commit of this journal; still check the shape, so
    // that a crafted image with a matching checksum is refused too.
    if header.commit_id == 0 {
        return Err(MjError::BadHeader("commit id 0"));
    }
    if header.group_len == 0 || header.group_len > sb.geo.mj_count {
        return Err(MjError::BadHeader("group length out of range"));
    }
    let group_end = header.group_first.checked_add(u64::from(header.group_len));
    if header.group_first == 0
        || header.group_first > header.commit_id
        || group_end.is_none_or(|e| header.commit_id >= e)
    {
        return Err(MjError::BadHeader("commit id outside its group"));
    }
    if header.lwm == 0 || header.lwm > header.group_first {
        return Err(MjError::BadHeader("low-water mark outside 1..=group start"));
    }
    if header.entry_count == 0 || header.entry_count > sb.geo.max_ranges() {
        return Err(MjError::BadHeader("entry count out of range"));
    }
    let mut rest = payload;
    for index in 0..header.entry_count {
        let (_, r) =
            parse_entry(rest, sb.geo.data_size).map_err(|why| MjError::BadEntry { index, why })?;
        rest = r;
    }
    Ok(Mj { header, payload })
}

/// Zero bytes for an entry's padding (at most `ENTRY_ALIGN - 1` of them).
pub const ENTRY_PAD: [u8; ENTRY_ALIGN] = [0; ENTRY_ALIGN];

/// Bytes of zero padding after an entry of `len` data bytes.
pub fn entry_pad(len: usize) -> usize {
    len.wrapping_neg() % ENTRY_ALIGN
}

/// Checks an MJ payload laid out by a transaction's caller (entries: [`entry_header`],
/// the data, zero padding to [`ENTRY_ALIGN`]) as [`plan_tx`] checks ranges, and that
/// its bytes are exactly those entries; returns how many there are.
pub fn check_payload(geo: &Geometry, payload: &[u8]) -> Result<u32, TxError> {
    if payload.is_empty() {
        return Err(TxError::Empty);
    }
    if payload.len() > geo.mj_capacity() {
        return Err(TxError::TooLarge);
    }
    let mut rest = payload;
    let mut count: u32 = 0;
    while !rest.is_empty() {
        let (_, r) = parse_entry(rest, geo.data_size).map_err(|_| TxError::BadRange(count))?;
        rest = r;
        count = count.checked_add(1).ok_or(TxError::TooManyRanges)?;
        if count > geo.max_ranges() {
            return Err(TxError::TooManyRanges);
        }
    }
    Ok(count)
}

/// The entries of a payload [`check_payload`] accepted, in order: its bytes are
/// entries to the end, so they run until the payload is used up.
pub fn payload_entries(payload: &[u8]) -> Entries<'_> {
    Entries {
        rest: payload,
        left: u32::MAX,
    }
}

/// Why a transaction request is refused (before anything is written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// No ranges.
    Empty,
    /// More ranges than [`Geometry::max_ranges`].
    TooManyRanges,
    /// The entries do not fit in one MJ.
    TooLarge,
    /// A range has length 0, overflows, or reaches past the data region.
    BadRange(u32),
}

/// Checks a transaction's ranges `(offset, len)` against the geometry and returns the
/// MJ payload length they need.
pub fn plan_tx<I>(geo: &Geometry, ranges: I) -> Result<u32, TxError>
where
    I: IntoIterator<Item = (u64, u64)>,
{
    let mut count: u32 = 0;
    let mut payload: usize = 0;
    for (offset, len) in ranges {
        let index = count;
        count = count.checked_add(1).ok_or(TxError::TooManyRanges)?;
        if count > geo.max_ranges() {
            return Err(TxError::TooManyRanges);
        }
        let end = offset.checked_add(len).ok_or(TxError::BadRange(index))?;
        if len == 0 || end > geo.data_size {
            return Err(TxError::BadRange(index));
        }
        let size = u32::try_from(len)
            .ok()
            .and_then(entry_size)
            .ok_or(TxError::TooLarge)?;
        payload = payload.checked_add(size).ok_or(TxError::TooLarge)?;
        if payload > geo.mj_capacity() {
            return Err(TxError::TooLarge);
        }
    }
    if count == 0 {
        return Err(TxError::Empty);
    }
    // Lossless: at most `mj_capacity() < MJ_SIZE_MAX`.
    Ok(payload as u32)
}
