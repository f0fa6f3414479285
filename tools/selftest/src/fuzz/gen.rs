//! The ioctl fuzzer's pure half: a seeded generator of command numbers, struct sizes
//! and field values for every memkit ioctl, biased to the edges of what the ABI
//! accepts. It makes no system call: addresses are symbolic ([`Ptr`]) and resolved by
//! the runtime (`fuzz/mod.rs`), and the bytes it writes go to the slices it is given,
//! so the host can check that it is deterministic from its seed.
//!
//! The generator never reads back what the kernel answered, except through [`Hints`]
//! (sizes the runtime learnt), which change values but never how many random numbers
//! a plan draws: a thread's sequence of operations depends only on the seed.

use memkit_core::abi::{self, UapiStruct};

/// Bytes of a page.
pub const PAGE: u64 = 4096;

/// The tools' SplitMix64 (`memkit::workload::Rng`: small, fast, the same
/// everywhere) with what the fuzzer draws.
#[derive(Clone, Debug)]
pub struct Rng(memkit::workload::Rng);

impl Rng {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(memkit::workload::Rng(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        // Lossless: a slice length fits in u64, and the index is below it.
        items[self.below(items.len() as u64) as usize]
    }

    /// An independent generator for stream `n` (a thread, a child process).
    pub fn split(&self, n: u64) -> Rng {
        let mut r = Rng::new(self.0 .0 ^ n.wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next_u64();
        r
    }
}

/// Values where arithmetic and memkit's limits have their edges.
pub const EDGES_U64: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    63,
    64,
    255,
    256,
    4095,
    4096,
    4097,
    8192,
    65535,
    65536,
    1 << 18,
    (1 << 18) + 1,
    1 << 20,
    1 << 24,
    (1 << 31) - 1,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    (1 << 32) + 1,
    (1 << 32) + 4096,
    1 << 40,
    1 << 52,
    (1 << 63) - 1,
    1 << 63,
    u64::MAX - 4095,
    u64::MAX - 7,
    u64::MAX - 1,
    u64::MAX,
    // Negative numbers as unsigned.
    -4096i64 as u64,
    -22i64 as u64,
    i32::MIN as u64,
    u32::MAX as u64,
    abi::RMEM_MAX_NS,
    abi::RMEM_MAX_NS + 1,
    abi::RMEM_MAX_PAGE_NS,
    abi::RMEM_MAX_PAGE_NS + 1,
];

/// [`EDGES_U64`] for 32-bit fields.
pub const EDGES_U32: &[u32] = &[
    0,
    1,
    2,
    3,
    16,
    63,
    64,
    65,
    255,
    256,
    257,
    1024,
    1025,
    4095,
    4096,
    4097,
    65535,
    65536,
    65537,
    1 << 24,
    (1 << 24) + 64,
    (1 << 31) - 1,
    1 << 31,
    u32::MAX - 1,
    u32::MAX,
    -22i32 as u32,
];

/// A value biased to the edges: a listed edge (maybe off by one), a value around one
/// of `hints`, a small number, a page multiple, or anything.
pub fn edge_u64(rng: &mut Rng, hints: &[u64]) -> u64 {
    let kind = rng.below(16);
    let delta = rng.pick(&[0i64, 0, 0, 1, -1, 4096, -4096, 8, -8]);
    let hint = if hints.is_empty() { 0 } else { rng.pick(hints) };
    let any = rng.next_u64();
    match kind {
        0..=4 => rng
            .pick(EDGES_U64)
            .wrapping_add_signed(if kind == 0 { delta } else { 0 }),
        5..=8 if !hints.is_empty() => hint.wrapping_add_signed(delta),
        5..=10 => any % 64,
        11..=12 => any % (64 * PAGE),
        13..=14 => (any % 1024) * PAGE,
        _ => any,
    }
}

/// [`edge_u64`] for a 32-bit field.
pub fn edge_u32(rng: &mut Rng, hints: &[u32]) -> u32 {
    let kind = rng.below(16);
    let delta = rng.pick(&[0i32, 0, 0, 1, -1, 64, -64]);
    let hint = if hints.is_empty() { 0 } else { rng.pick(hints) };
    // Truncation intended: 32 random bits.
    let any = rng.next_u64() as u32;
    match kind {
        0..=5 => rng
            .pick(EDGES_U32)
            .wrapping_add_signed(if kind == 0 { delta } else { 0 }),
        6..=9 if !hints.is_empty() => hint.wrapping_add_signed(delta),
        6..=11 => any % 64,
        _ => any,
    }
}

/// Flags: mostly 0 or a combination of the `known` bits, sometimes a bit the ABI
/// does not define, or all of them.
pub fn flags(rng: &mut Rng, known: u32) -> u32 {
    let any = rng.next_u64();
    match rng.below(20) {
        0..=9 => 0,
        // Truncation intended: random bits of the known ones.
        10..=15 => any as u32 & known,
        16..=17 => 1 << (any % 32),
        18 => u32::MAX,
        _ => (any >> 32) as u32,
    }
}

/// A padding field: almost always 0.
fn pad_u32(rng: &mut Rng) -> u32 {
    if rng.chance(92) {
        0
    } else {
        edge_u32(rng, &[])
    }
}

/// An address, before the runtime knows where its buffers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ptr {
    /// 0.
    Null,
    /// An address below `mmap_min_addr`: never mapped.
    Low(u64),
    /// A kernel address (direct map, text, vmalloc, the last page).
    Kernel(u64),
    /// Not canonical on x86-64, or past the user address space.
    Wild(u64),
    /// At this offset in the read-only page (the kernel may read, never write).
    ReadOnly(u64),
    /// This many bytes before an inaccessible page.
    BeforeGuard(u64),
    /// At this offset of the thread's struct area.
    Struct(u64),
    /// At this offset of the thread's array area (ranges, page indexes, paths).
    Array(u64),
    /// At this offset of the thread's data area (what a transaction writes).
    Data(u64),
    /// At this offset of the thread's output area (what the kernel writes).
    Out(u64),
    /// The read-only copy of a valid struct of the plan's command (struct placement
    /// only).
    Prefilled,
    /// Into one of the live memkit mappings: which (modulo their number) and where.
    Mapping {
        /// Chooses the mapping.
        pick: u64,
        /// Byte offset in it (modulo its length).
        off: u64,
    },
}

/// Addresses no process can use, for [`Ptr::Kernel`] and [`Ptr::Wild`].
const KERNEL_ADDRS: &[u64] = &[
    0xffff_8880_0000_0000,
    0xffff_ffff_8100_0000,
    0xffff_c900_0000_0000,
    0xffff_ffff_ffff_f000,
];
const WILD_ADDRS: &[u64] = &[
    0x0000_8000_0000_0000,
    0x0000_7fff_ffff_f000,
    0x0000_7fff_ffff_fffc,
    0x8000_0000_0000_0000,
    u64::MAX - 3,
    u64::MAX,
];

/// A pointer that is bad in one of many ways.
pub fn bad_ptr(rng: &mut Rng) -> Ptr {
    let low = rng.pick(&[1u64, 8, 16, 4095, 4096, 0x1000 - 4, 0xfff0]);
    let kernel = rng.pick(KERNEL_ADDRS);
    let wild = rng.pick(WILD_ADDRS);
    let ro = rng.below(2 * PAGE);
    let guard = rng.pick(&[0u64, 1, 4, 8, 16, 31]);
    match rng.below(8) {
        0 => Ptr::Null,
        1 => Ptr::Low(low),
        2 => Ptr::Kernel(kernel),
        3 => Ptr::Wild(wild),
        4 | 5 => Ptr::ReadOnly(ro),
        _ => Ptr::BeforeGuard(guard),
    }
}

/// A buffer the kernel writes to: mostly the output area, sometimes a mapping, the
/// read-only page, the edge of a guard page or a bad pointer.
pub fn out_ptr(rng: &mut Rng) -> Ptr {
    let off = rng.pick(&[0u64, 0, 0, 8, 1, 4096 - 8, 4096]);
    let pick = rng.next_u64();
    let moff = rng.pick(&[0u64, 0, 4096, 4096 * 3 - 8, 1]);
    let guard = rng.pick(&[8u64, 64, 4096]);
    match rng.below(20) {
        0..=12 => Ptr::Out(off),
        13..=14 => Ptr::Mapping { pick, off: moff },
        15 => Ptr::BeforeGuard(guard),
        16 => Ptr::Null,
        _ => bad_ptr(rng),
    }
}

/// Bytes of the thread's areas the generator writes into.
pub const STRUCT_AREA: usize = 16 << 10;
/// See [`STRUCT_AREA`].
pub const ARRAY_AREA: usize = 576 << 10;
/// See [`STRUCT_AREA`].
pub const DATA_AREA: usize = 64 << 10;
/// See [`STRUCT_AREA`].
pub const OUT_AREA: usize = 1 << 20;

/// One memkit device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dev {
    /// `/dev/memkit-journal`.
    Journal,
    /// `/dev/memkit-rmem`.
    Rmem,
    /// `/dev/memkit-ckpt`.
    Ckpt,
}

impl Dev {
    /// Every device.
    pub const ALL: [Dev; 3] = [Dev::Journal, Dev::Rmem, Dev::Ckpt];

    /// Its node.
    pub fn path(self) -> &'static str {
        match self {
            Dev::Journal => "/dev/memkit-journal",
            Dev::Rmem => "/dev/memkit-rmem",
            Dev::Ckpt => "/dev/memkit-ckpt",
        }
    }
}

/// A memkit ioctl as the ABI defines it.
#[derive(Clone, Copy, Debug)]
pub struct CmdSpec {
    /// `MEMKIT_IOC_*` without the prefix.
    pub name: &'static str,
    /// Its command number.
    pub cmd: u32,
    /// The struct's size.
    pub size: usize,
    /// The struct's first published size.
    pub ver0: usize,
}

macro_rules! spec {
    ($name:literal, $cmd:expr, $ty:ty) => {
        CmdSpec {
            name: $name,
            cmd: $cmd,
            size: <$ty as UapiStruct>::SIZE,
            ver0: <$ty as UapiStruct>::SIZE_VER0,
        }
    };
}

/// Every memkit ioctl; the index in this table is a command's id in [`Plan`].
pub const CMDS: [CmdSpec; 15] = [
    spec!("VERSION", abi::IOC_VERSION, abi::Version),
    spec!(
        "JOURNAL_ATTACH",
        abi::IOC_JOURNAL_ATTACH,
        abi::JournalAttach
    ),
    spec!(
        "JOURNAL_DETACH",
        abi::IOC_JOURNAL_DETACH,
        abi::JournalDetach
    ),
    spec!(
        "JOURNAL_STATUS",
        abi::IOC_JOURNAL_STATUS,
        abi::JournalStatus
    ),
    spec!("JOURNAL_TX", abi::IOC_JOURNAL_TX, abi::JournalTx),
    spec!("RMEM_CONFIGURE", abi::IOC_RMEM_CONFIGURE, abi::RmemConfig),
    spec!("RMEM_STATS", abi::IOC_RMEM_STATS, abi::RmemStats),
    spec!("CKPT_CREATE", abi::IOC_CKPT_CREATE, abi::CkptCreate),
    spec!("CKPT_START", abi::IOC_CKPT_START, abi::CkptStart),
    spec!("CKPT_COLLECT", abi::IOC_CKPT_COLLECT, abi::CkptCollect),
    spec!("CKPT_HISTORY", abi::IOC_CKPT_HISTORY, abi::CkptHistory),
    spec!("CKPT_COPY", abi::IOC_CKPT_COPY, abi::CkptCopy),
    spec!("CKPT_STATS", abi::IOC_CKPT_STATS, abi::CkptStats),
    spec!("CKPT_DIFF_SET", abi::IOC_CKPT_DIFF_SET, abi::CkptDiffSet),
    spec!("CKPT_COPY_DIFF", abi::IOC_CKPT_COPY_DIFF, abi::CkptCopyDiff),
];

/// Indexes into [`CMDS`].
pub mod id {
    /// `VERSION`.
    pub const VERSION: usize = 0;
    /// `JOURNAL_ATTACH`.
    pub const JOURNAL_ATTACH: usize = 1;
    /// `JOURNAL_DETACH`.
    pub const JOURNAL_DETACH: usize = 2;
    /// `JOURNAL_STATUS`.
    pub const JOURNAL_STATUS: usize = 3;
    /// `JOURNAL_TX`.
    pub const JOURNAL_TX: usize = 4;
    /// `RMEM_CONFIGURE`.
    pub const RMEM_CONFIGURE: usize = 5;
    /// `RMEM_STATS`.
    pub const RMEM_STATS: usize = 6;
    /// `CKPT_CREATE`.
    pub const CKPT_CREATE: usize = 7;
    /// `CKPT_START`.
    pub const CKPT_START: usize = 8;
    /// `CKPT_COLLECT`.
    pub const CKPT_COLLECT: usize = 9;
    /// `CKPT_HISTORY`.
    pub const CKPT_HISTORY: usize = 10;
    /// `CKPT_COPY`.
    pub const CKPT_COPY: usize = 11;
    /// `CKPT_STATS`.
    pub const CKPT_STATS: usize = 12;
    /// `CKPT_DIFF_SET`.
    pub const CKPT_DIFF_SET: usize = 13;
    /// `CKPT_COPY_DIFF`.
    pub const CKPT_COPY_DIFF: usize = 14;
}

/// The commands a device serves, weighted (a command listed twice is drawn twice as
/// often).
fn device_cmds(dev: Dev) -> &'static [usize] {
    use id::*;
    match dev {
        Dev::Journal => &[
            VERSION,
            JOURNAL_ATTACH,
            JOURNAL_DETACH,
            JOURNAL_STATUS,
            JOURNAL_STATUS,
            JOURNAL_TX,
            JOURNAL_TX,
            JOURNAL_TX,
            JOURNAL_TX,
            JOURNAL_TX,
        ],
        Dev::Rmem => &[
            VERSION,
            RMEM_CONFIGURE,
            RMEM_CONFIGURE,
            RMEM_CONFIGURE,
            RMEM_STATS,
            RMEM_STATS,
        ],
        Dev::Ckpt => &[
            VERSION,
            CKPT_CREATE,
            CKPT_CREATE,
            CKPT_START,
            CKPT_COLLECT,
            CKPT_COLLECT,
            CKPT_COLLECT,
            CKPT_HISTORY,
            CKPT_COPY,
            CKPT_COPY,
            CKPT_STATS,
            CKPT_DIFF_SET,
            CKPT_COPY_DIFF,
            CKPT_COPY_DIFF,
        ],
    }
}

// The generic `_IOC` layout of x86-64.
const SIZE_SHIFT: u32 = 16;
const SIZE_MASK: u32 = 0x3fff << SIZE_SHIFT;
const DIR_SHIFT: u32 = 30;
const TYPE_SHIFT: u32 = 8;

/// Type bytes of ioctls the VFS answers for every file before the driver sees them
/// (`FIOCLEX`, `FIONBIO`, `FIFREEZE`, `FS_IOC_*`, `FICLONE`, `FIBMAP`...): a fuzzer
/// must not freeze devtmpfs.
const VFS_TYPES: &[u32] = &[0x00, 0x12, 0x15, 0x54, 0x58, 0x66, 0x94];

/// `cmd` with a type byte the VFS does not answer.
fn vfs_safe(cmd: u32) -> u32 {
    let ty = (cmd >> TYPE_SHIFT) & 0xff;
    if VFS_TYPES.contains(&ty) {
        (cmd & !(0xff << TYPE_SHIFT)) | (0xe6 << TYPE_SHIFT)
    } else {
        cmd
    }
}

/// The command number to pass for `spec`: mostly its own, otherwise with other size
/// bits (memkit ignores them), another direction, number or type byte, or random.
pub fn command_number(rng: &mut Rng, spec: &CmdSpec) -> u32 {
    let kind = rng.below(100);
    let any = rng.next_u64();
    // Truncation intended: random bits.
    let (lo, hi) = (any as u32, (any >> 32) as u32);
    let cmd = spec.cmd;
    match kind {
        0..=71 => cmd,
        72..=77 => {
            // Lossless: the struct sizes are below 4096.
            let size = spec.size as u32;
            let bits = [0, 1, size - 1, size + 8, 4096, 0x3fff, lo & 0x3fff][(hi % 7) as usize];
            (cmd & !SIZE_MASK) | (bits << SIZE_SHIFT)
        }
        78..=83 => {
            let dir = (cmd >> DIR_SHIFT) & 3;
            (cmd & !(3 << DIR_SHIFT)) | (((dir + 1 + lo % 3) & 3) << DIR_SHIFT)
        }
        84..=89 => {
            let nr = cmd & 0xff;
            let new = [
                0x01,
                0x0f,
                0x14,
                0x22,
                0x38,
                0xff,
                nr + 1,
                nr.wrapping_sub(1) & 0xff,
                lo & 0xff,
            ][(hi % 9) as usize];
            (cmd & !0xff) | new
        }
        90..=95 => vfs_safe((cmd & !(0xff << TYPE_SHIFT)) | ((lo & 0xff) << TYPE_SHIFT)),
        96 => 0,
        _ => vfs_safe(lo),
    }
}

/// What the runtime learnt from earlier answers, to aim values near the edges of the
/// current state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hints {
    /// Pages of the file's region (checkpoint or remote memory), 0 if unknown.
    pub region_pages: u64,
    /// The attached journal's data-region size, 0 if unknown.
    pub data_size: u64,
    /// The attached journal's MJ size.
    pub mj_size: u64,
    /// The attached journal's most ranges per transaction.
    pub max_ranges: u64,
}

/// What the generator needs besides randomness.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The file may get an agent-backed remote-memory region (whose faults wait for
    /// an agent: only for files that are never mapped).
    pub allow_agent: bool,
    /// Attaches may name the pmem device (the runtime writes its path).
    pub pmem_ok: bool,
}

/// Paths an attach may name, besides the pmem device (index 0, filled in by the
/// runtime). None of them is a DAX block device.
pub const PATHS: &[&[u8]] = &[
    b"",
    b"/dev/null",
    b"/dev/memkit-journal",
    b"/dev/memkit-ckpt",
    b"/nonexistent/pmem0",
    b"dev/pmem0",
    b"/proc/self/mem",
];

/// One ioctl, generated.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Index in [`CMDS`] of the command whose struct `bytes` is.
    pub base: usize,
    /// The command number passed.
    pub cmd: u32,
    /// Where the struct goes.
    pub arg: Ptr,
    /// The struct's bytes (its `size` field first), tail included.
    pub bytes: Vec<u8>,
    /// Pointer fields of the struct: byte offset in `bytes`, and what to point to.
    pub ptrs: Vec<(usize, Ptr)>,
    /// Pointer fields in the array area (a transaction's data pointers): byte offset
    /// in the area, and what to point to.
    pub array_ptrs: Vec<(usize, Ptr)>,
    /// The attach names the pmem device: the runtime writes its path at the start of
    /// the array area.
    pub pmem_path: bool,
}

/// The area of a thread the generator fills: arrays (ranges, page indexes, paths).
/// Transaction data is whatever the data area holds.
pub struct Areas<'a> {
    /// [`ARRAY_AREA`] bytes.
    pub array: &'a mut [u8],
}

/// Chooses a command for a file of device `dev`: mostly one it serves, sometimes one
/// of another device.
pub fn pick_command(rng: &mut Rng, dev: Dev) -> usize {
    let own = rng.pick(device_cmds(dev));
    let other = rng.below(CMDS.len() as u64) as usize;
    if rng.chance(88) {
        own
    } else {
        other
    }
}

/// The `size` field and how many bytes to write: exact, too small, larger with a zero
/// or a non-zero tail, over the maximum.
fn size_field(rng: &mut Rng, spec: &CmdSpec) -> (u32, usize, bool) {
    // Lossless: struct sizes are below 4096.
    let size = spec.size as u32;
    let ver0 = spec.ver0 as u32;
    let k = 8 * (1 + rng.below(8) as u32);
    let any = rng.below(8192) as u32;
    let (field, nonzero) = match rng.below(100) {
        0..=54 => (size, false),
        55..=58 => (0, false),
        59..=61 => (4, false),
        62..=64 => (ver0 - 1, false),
        65..=66 => (1, false),
        67..=74 => (size + k, false),
        75..=81 => (size + k, true),
        82..=85 => (abi::STRUCT_SIZE_MAX, false),
        86..=88 => (abi::STRUCT_SIZE_MAX, true),
        89..=91 => (abi::STRUCT_SIZE_MAX + 1, false),
        92..=94 => (u32::MAX, false),
        _ => (any, rng.chance(50)),
    };
    // Lossless: at most 8192.
    let bytes = (field.min(abi::STRUCT_SIZE_MAX + 8) as usize).max(spec.size);
    (field, bytes, nonzero)
}

/// Page indexes into `array`: mostly valid for a region of `pages` pages, sometimes
/// past it, repeated, or huge. Returns the pointer to them.
fn page_list(rng: &mut Rng, areas: &mut Areas<'_>, count: u64, pages: u64, unique: bool) -> Ptr {
    // Past the entries written, the kernel reads what earlier plans left (or zeros):
    // writing 65536 indexes every time costs too much under TCG.
    let n = count.min(LIST_WRITTEN);
    let start = rng.below(pages.max(1));
    let stride = rng.pick(&[1u64, 1, 2, 7]);
    let repeat = !unique || rng.chance(10);
    let spoil = rng.chance(10);
    for i in 0..n {
        let v = if repeat && i % 5 == 4 {
            start
        } else if pages > 0 {
            (start + i * stride) % pages
        } else {
            i
        };
        // Lossless: `i < ARRAY_AREA / 8`.
        let at = i as usize * 8;
        areas.array[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
    if spoil && n > 0 {
        let at = rng.below(n) as usize * 8;
        let bad = edge_u64(rng, &[pages]);
        areas.array[at..at + 8].copy_from_slice(&bad.to_ne_bytes());
    }
    if rng.chance(94) {
        Ptr::Array(0)
    } else {
        bad_ptr(rng)
    }
}

/// Most page indexes or ranges a plan writes into the array area.
pub const LIST_WRITTEN: u64 = 256;

/// A count of pages: mostly small and valid, sometimes at an edge.
fn page_count(rng: &mut Rng, pages: u64, max: u64) -> u64 {
    let small = 1 + rng.below(16);
    let edge = edge_u64(rng, &[pages, max, max + 1]);
    if rng.chance(85) {
        small
    } else {
        edge
    }
}

/// A region size in bytes: mostly a few pages, sometimes more, sometimes the
/// largest, sometimes invalid.
fn region_bytes(rng: &mut Rng, max: u64) -> u64 {
    let small = (1 + rng.below(64)) * PAGE;
    let medium = (64 + rng.below(2048)) * PAGE;
    let edge = edge_u64(rng, &[max, max + PAGE, max - PAGE]);
    match rng.below(1000) {
        0..=649 => small,
        650..=749 => medium,
        // The largest region, rarely: it costs megabytes of bookkeeping, and
        // seconds to set up under TCG.
        750 => max,
        _ if edge <= max && edge > (1 << 24) => edge % (1 << 24),
        _ => edge,
    }
}

/// Generates the ioctl of command `base` (an index in [`CMDS`]).
pub fn plan(
    rng: &mut Rng,
    base: usize,
    hints: &Hints,
    limits: &Limits,
    areas: &mut Areas<'_>,
) -> Plan {
    let spec = &CMDS[base];
    let cmd = command_number(rng, spec);
    let (size, len, nonzero_tail) = size_field(rng, spec);
    let mut bytes = vec![0u8; len];
    let mut pmem_path = false;
    let mut array_ptrs = Vec::new();
    // The struct's pointer fields (offset, what they point at).
    let mut ptrs = Vec::new();
    let pages = hints.region_pages;
    match base {
        id::VERSION => abi::Version {
            flags: flags(rng, 0),
            pad: pad_u32(rng),
            ..Default::default()
        }
        .encode(&mut bytes),
        id::JOURNAL_ATTACH => {
            let fmt = if rng.chance(50) {
                abi::JOURNAL_ATTACH_FORMAT
            } else {
                0
            };
            let fl = flags(rng, abi::JOURNAL_ATTACH_FLAGS) | fmt;
            // The pmem device 3 times in 13, each other path once, a path longer
            // than PATH_MAX, one cut by a guard page, a bad pointer.
            let n = PATHS.len() as u64;
            let which = rng.below(n + 6);
            let guard = rng.pick(&[0u64, 1, 16]);
            let bad = bad_ptr(rng);
            let path = if which < 3 && limits.pmem_ok {
                pmem_path = true;
                Ptr::Array(0)
            } else if which < 3 + n {
                // Lossless: below the table's length.
                let p = PATHS[which.saturating_sub(3) as usize];
                areas.array[..p.len()].copy_from_slice(p);
                areas.array[p.len()] = 0;
                Ptr::Array(0)
            } else if which == 3 + n {
                // Longer than PATH_MAX.
                areas.array[..5000].fill(b'a');
                areas.array[5000] = 0;
                Ptr::Array(0)
            } else if which == 4 + n {
                Ptr::BeforeGuard(guard)
            } else {
                bad
            };
            abi::JournalAttach {
                flags: fl,
                path: 0,
                // Mostly a usable geometry, so that transactions get through.
                mj_count: if rng.chance(70) {
                    rng.pick(&[0, 16, 64])
                } else {
                    edge_u32(rng, &[2, 16, 64, 1 << 16])
                },
                mj_size: if rng.chance(70) {
                    rng.pick(&[0, 4096, 65536])
                } else {
                    edge_u32(rng, &[256, 4096, 65536, 1 << 24])
                },
                ..Default::default()
            }
            .encode(&mut bytes);
            ptrs = vec![(8, path)];
        }
        id::JOURNAL_DETACH => abi::JournalDetach {
            flags: flags(rng, 0),
            ..Default::default()
        }
        .encode(&mut bytes),
        id::JOURNAL_STATUS => {
            abi::JournalStatus {
                flags: flags(rng, 0),
                ..Default::default()
            }
            .encode(&mut bytes);
            if rng.chance(20) {
                // Junk in the output fields.
                let junk = rng.next_u64();
                for (i, b) in bytes.iter_mut().enumerate().take(spec.size).skip(8) {
                    *b = (junk >> (i % 8 * 8)) as u8;
                }
            }
        }
        id::JOURNAL_TX => {
            let max_ranges = hints.max_ranges.max(1);
            let nr = if rng.chance(75) {
                1 + rng.below(4)
            } else {
                edge_u64(rng, &[max_ranges, 1024, 1025])
            };
            let written = nr.min(LIST_WRITTEN);
            let data_size = hints.data_size;
            let mj = hints.mj_size.max(256);
            // What fits one MJ when every range is that long: its header, 16 bytes
            // per range.
            let fits = ((mj - 64) / nr.clamp(1, 64)).saturating_sub(16);
            for i in 0..written {
                let sane = rng.chance(85);
                let off = if sane {
                    rng.below(data_size.saturating_sub(8192).max(1))
                } else {
                    edge_u64(rng, &[data_size, data_size - 1, data_size - 8])
                };
                let rlen = if sane {
                    1 + rng.below(fits.clamp(1, 256))
                } else {
                    edge_u64(rng, &[mj, mj - 64, mj - 80, DATA_AREA as u64])
                };
                let data = if rng.chance(95) {
                    Ptr::Data(rng.below(DATA_AREA as u64 / 2))
                } else {
                    bad_ptr(rng)
                };
                let r = abi::JournalRange {
                    offset: off,
                    len: rlen,
                    data: 0,
                };
                // Lossless: below LIST_WRITTEN.
                array_ptrs.push((i as usize * 24 + 16, data));
                // Lossless: below LIST_WRITTEN.
                r.encode(&mut areas.array[i as usize * 24..]);
            }
            let ranges = if rng.chance(94) {
                Ptr::Array(0)
            } else {
                bad_ptr(rng)
            };
            abi::JournalTx {
                flags: flags(rng, 0),
                // Truncation intended: edges of the 32-bit field.
                nr_ranges: nr as u32,
                pad: pad_u32(rng),
                commit_id: if rng.chance(10) { rng.next_u64() } else { 0 },
                ..Default::default()
            }
            .encode(&mut bytes);
            ptrs = vec![(8, ranges)];
        }
        id::RMEM_CONFIGURE => {
            let rbytes = region_bytes(rng, abi::RMEM_MAX_BYTES);
            let rpages = rbytes / PAGE;
            let budget = if rng.chance(70) {
                1 + rng.below(rpages.max(1))
            } else {
                edge_u64(
                    rng,
                    &[
                        rpages,
                        rpages + 1,
                        abi::RMEM_MAX_BUDGET,
                        abi::RMEM_MAX_BUDGET + 1,
                    ],
                )
            };
            let backend = match rng.below(20) {
                0..=15 => abi::RMEM_BACKEND_EMULATED,
                16 | 17 if limits.allow_agent => abi::RMEM_BACKEND_AGENT,
                _ => edge_u32(rng, &[2]).max(2),
            };
            let policy = if rng.chance(85) {
                rng.below(u64::from(abi::RMEM_POLICIES)) as u32
            } else {
                edge_u32(rng, &[abi::RMEM_POLICIES])
            };
            let small_ns = rng.pick(&[0u64, 1, 1000, 20_000, 100_000]);
            let deadline = if rng.chance(70) {
                small_ns
            } else {
                edge_u64(rng, &[abi::RMEM_MAX_NS, abi::RMEM_MAX_NS + 1])
            };
            let lat = |rng: &mut Rng, max: u64| {
                let small = rng.pick(&[0u64, 0, 1000, 10_000, 50_000]);
                let edge = edge_u64(rng, &[max, max + 1]);
                // A valid but long latency makes every fault of a mapped region slow:
                // only invalid values are taken at the edges.
                if rng.chance(80) || edge <= max {
                    small
                } else {
                    edge
                }
            };
            let lat_base_ns = lat(rng, abi::RMEM_MAX_NS);
            let lat_page_ns = lat(rng, abi::RMEM_MAX_PAGE_NS);
            let (lat_base_ns, lat_page_ns) = if backend == abi::RMEM_BACKEND_AGENT && rng.chance(80)
            {
                (0, 0)
            } else {
                (lat_base_ns, lat_page_ns)
            };
            abi::RmemConfig {
                flags: flags(rng, abi::RMEM_CONFIG_FLAGS),
                bytes: rbytes,
                budget,
                backend,
                policy,
                deadline_ns: deadline,
                degree: if rng.chance(70) {
                    rng.below(65) as u32
                } else {
                    edge_u32(rng, &[64, 65])
                },
                max_inflight: if rng.chance(70) {
                    1 + rng.below(256) as u32
                } else {
                    edge_u32(rng, &[256, 257])
                },
                lat_base_ns,
                lat_page_ns,
                mmap_offset: if rng.chance(90) {
                    0
                } else {
                    edge_u64(rng, &[])
                },
                ..Default::default()
            }
            .encode(&mut bytes)
        }
        id::RMEM_STATS => abi::RmemStats {
            flags: flags(rng, abi::RMEM_STATS_GLOBAL),
            bytes: if rng.chance(10) { rng.next_u64() } else { 0 },
            ..Default::default()
        }
        .encode(&mut bytes),
        id::CKPT_CREATE => abi::CkptCreate {
            flags: flags(rng, 0),
            bytes: region_bytes(rng, abi::CKPT_MAX_BYTES),
            mmap_offset: if rng.chance(10) { rng.next_u64() } else { 0 },
            ..Default::default()
        }
        .encode(&mut bytes),
        id::CKPT_START => abi::CkptStart {
            // Fixing the recording mode lets snapshot collects through.
            flags: flags(rng, abi::CKPT_START_SCAN | abi::CKPT_START_RECORD),
            ..Default::default()
        }
        .encode(&mut bytes),
        id::CKPT_COLLECT => {
            let (first, count) = page_range(rng, pages);
            let bitmap = count.div_ceil(64).wrapping_mul(8);
            let runs = count.div_ceil(2).wrapping_mul(16);
            let buf_len = edge_u64(rng, &[bitmap, bitmap - 1, runs, 16, 0]);
            let buf = if rng.chance(10) {
                Ptr::Null
            } else {
                out_ptr(rng)
            };
            abi::CkptCollect {
                flags: flags(rng, abi::CKPT_COLLECT_FLAGS),
                first,
                count,
                buf_len,
                dirty: if rng.chance(10) { rng.next_u64() } else { 0 },
                ..Default::default()
            }
            .encode(&mut bytes);
            ptrs = vec![(24, buf)];
        }
        id::CKPT_HISTORY => {
            let (first, count) = page_range(rng, pages);
            let need = count.wrapping_mul(8);
            let buf = out_ptr(rng);
            abi::CkptHistory {
                flags: flags(rng, 0),
                first,
                count,
                buf_len: edge_u64(rng, &[need, need - 1, need + 8]),
                ..Default::default()
            }
            .encode(&mut bytes);
            ptrs = vec![(24, buf)];
        }
        id::CKPT_COPY => {
            let count = page_count(rng, pages, abi::CKPT_COPY_MAX_PAGES);
            let list = page_list(rng, areas, count, pages, false);
            let need = count.wrapping_mul(PAGE);
            let buf = out_ptr(rng);
            abi::CkptCopy {
                flags: flags(rng, 0),
                count,
                buf_len: edge_u64(rng, &[need, need - 1, need + 1]),
                bytes: if rng.chance(10) { rng.next_u64() } else { 0 },
                ..Default::default()
            }
            .encode(&mut bytes);
            ptrs = vec![(8, list), (24, buf)];
        }
        id::CKPT_STATS => abi::CkptStats {
            flags: flags(rng, 0),
            collects: if rng.chance(10) { rng.next_u64() } else { 0 },
            ..Default::default()
        }
        .encode(&mut bytes),
        id::CKPT_DIFF_SET => {
            let count = if rng.chance(10) {
                0
            } else {
                page_count(rng, pages, abi::CKPT_COPY_MAX_PAGES)
            };
            let list = page_list(rng, areas, count, pages, false);
            let fl = flags(rng, abi::CKPT_DIFF_SET_RESET | abi::CKPT_DIFF_SET_REMOVE);
            abi::CkptDiffSet {
                flags: fl,
                count,
                ..Default::default()
            }
            .encode(&mut bytes);
            ptrs = vec![(8, list)];
        }
        id::CKPT_COPY_DIFF => {
            let count = page_count(rng, pages, abi::CKPT_COPY_DIFF_MAX_PAGES);
            let list = page_list(rng, areas, count, pages, true);
            let rec = (PAGE + 16).wrapping_mul(count);
            let buf = out_ptr(rng);
            abi::CkptCopyDiff {
                flags: flags(rng, 0),
                count,
                buf_len: edge_u64(rng, &[rec, rec - 1]),
                segment: if rng.chance(75) {
                    rng.pick(&[64u32, 128, 256, 512, 1024, 4096])
                } else {
                    edge_u32(rng, &[64, 4096, 8192, 32, 96])
                },
                max_changed: if rng.chance(75) {
                    rng.below(65) as u32
                } else {
                    edge_u32(rng, &[64])
                },
                bytes: if rng.chance(10) { rng.next_u64() } else { 0 },
                ..Default::default()
            }
            .encode(&mut bytes);
            ptrs = vec![(8, list), (24, buf)];
        }
        _ => {}
    }
    finish(
        rng,
        base,
        cmd,
        size,
        nonzero_tail,
        bytes,
        ptrs,
        array_ptrs,
        pmem_path,
    )
}

/// A page range `(first, count)` of a region of `pages` pages: mostly inside it,
/// sometimes across its end, empty or overflowing.
fn page_range(rng: &mut Rng, pages: u64) -> (u64, u64) {
    let first = rng.below(pages.max(1));
    let count = 1 + rng.below(pages.saturating_sub(first).max(1));
    let efirst = edge_u64(rng, &[0, pages, pages - 1]);
    let ecount = edge_u64(rng, &[pages, pages + 1, pages - first, 0]);
    match rng.below(10) {
        0..=5 => (first, count),
        6 => (0, pages),
        7 => (first, ecount),
        8 => (efirst, count),
        _ => (efirst, ecount),
    }
}

/// Sets the `size` field, the tail and the placement of the struct.
#[expect(clippy::too_many_arguments)]
fn finish(
    rng: &mut Rng,
    base: usize,
    cmd: u32,
    size: u32,
    nonzero_tail: bool,
    mut bytes: Vec<u8>,
    ptrs: Vec<(usize, Ptr)>,
    array_ptrs: Vec<(usize, Ptr)>,
    pmem_path: bool,
) -> Plan {
    bytes[..4].copy_from_slice(&size.to_ne_bytes());
    let ksize = CMDS[base].size;
    if nonzero_tail && bytes.len() > ksize {
        let at = ksize + rng.below((bytes.len() - ksize) as u64) as usize;
        bytes[at] = 1 + rng.below(255) as u8;
    }
    let arg = match rng.below(100) {
        0..=79 => Ptr::Struct(0),
        80..=83 => Ptr::Struct(1 + rng.below(7)),
        84..=86 => Ptr::BeforeGuard(rng.pick(&[2u64, 4, 8, 12, 16, 24, 32])),
        87..=89 => Ptr::Prefilled,
        90..=91 => Ptr::Mapping {
            pick: rng.next_u64(),
            off: rng.pick(&[0u64, 8, 4096 - 8]),
        },
        _ => bad_ptr(rng),
    };
    Plan {
        base,
        cmd,
        arg,
        bytes,
        ptrs,
        array_ptrs,
        pmem_path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan's command, number, placement, bytes and pointer fields.
    type Drawn = (usize, u32, Ptr, Vec<u8>, Vec<(usize, Ptr)>);

    fn plans(seed: u64, n: usize) -> Vec<Drawn> {
        let mut rng = Rng::new(seed);
        let mut array = vec![0u8; ARRAY_AREA];
        let hints = Hints {
            region_pages: 64,
            data_size: 1 << 20,
            mj_size: 4096,
            max_ranges: 60,
        };
        let limits = Limits {
            allow_agent: false,
            pmem_ok: true,
        };
        (0..n)
            .map(|i| {
                let dev = Dev::ALL[i % 3];
                let base = pick_command(&mut rng, dev);
                let p = plan(
                    &mut rng,
                    base,
                    &hints,
                    &limits,
                    &mut Areas { array: &mut array },
                );
                (p.base, p.cmd, p.arg, p.bytes, p.ptrs)
            })
            .collect()
    }

    #[test]
    fn same_seed_same_plans() {
        assert_eq!(plans(42, 3000), plans(42, 3000));
        assert_ne!(plans(42, 50), plans(43, 50));
        // A thread's stream does not depend on how many others there are.
        let master = Rng::new(7);
        let (mut a, mut b) = (master.split(1), master.split(1));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(master.split(1).next_u64(), master.split(2).next_u64());
    }

    #[test]
    fn rng_below_stays_below() {
        let mut rng = Rng::new(1);
        assert!((0..10_000).all(|_| rng.below(7) < 7));
        assert_eq!(rng.below(0), 0);
        let mut seen = [false; 7];
        (0..1000).for_each(|_| seen[rng.below(7) as usize] = true);
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn values_are_biased_to_edges() {
        let mut rng = Rng::new(3);
        let n = 20_000;
        let vals: Vec<u64> = (0..n).map(|_| edge_u64(&mut rng, &[])).collect();
        let edges = vals.iter().filter(|v| EDGES_U64.contains(v)).count();
        // Uniform 64-bit values would almost never be listed edges.
        assert!(edges > n / 4, "{edges} of {n} at an edge");
        for must in [0, 1, 4095, 4096, 4097, u64::MAX, 1 << 63, -4096i64 as u64] {
            assert!(vals.contains(&must), "{must:#x} never drawn");
        }
        // Around a hint: the hint itself and its neighbours.
        let hint = 123_456_789;
        let vals: Vec<u64> = (0..n).map(|_| edge_u64(&mut rng, &[hint])).collect();
        for must in [hint - 1, hint, hint + 1, hint + 4096] {
            assert!(vals.contains(&must), "{must} never drawn");
        }
        let v32: Vec<u32> = (0..n).map(|_| edge_u32(&mut rng, &[])).collect();
        for must in [0, 1, u32::MAX, 1 << 31, 65536] {
            assert!(v32.contains(&must), "{must:#x} never drawn");
        }
    }

    #[test]
    fn command_numbers_valid_and_invalid_never_vfs() {
        let mut rng = Rng::new(5);
        let mut exact = 0;
        let mut other_memkit = 0;
        let n = 20_000;
        for i in 0..n {
            let spec = &CMDS[i % CMDS.len()];
            let cmd = command_number(&mut rng, spec);
            let ty = (cmd >> TYPE_SHIFT) & 0xff;
            // 0 is no VFS command (FIBMAP is 1, FIGETBSZ 2).
            assert!(
                cmd == 0 || !VFS_TYPES.contains(&ty),
                "{cmd:#x} would reach the VFS"
            );
            if cmd == spec.cmd {
                exact += 1;
            } else if abi::Command::decode(cmd) == abi::Command::decode(spec.cmd) {
                // Other size bits: the same command to the module.
                other_memkit += 1;
            }
        }
        assert!(exact > n * 6 / 10 && exact < n * 8 / 10, "{exact} exact");
        assert!(other_memkit > n / 50, "{other_memkit} with other size bits");
    }

    #[test]
    fn struct_sizes_cover_every_rule() {
        let all = plans(9, 20_000);
        let size = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let (mut exact, mut small, mut zero_tail, mut dirty_tail, mut over) = (0, 0, 0, 0, 0);
        for (base, _, _, bytes, _) in &all {
            let (s, k) = (size(bytes) as usize, CMDS[*base].size);
            assert!(bytes.len() >= k);
            match s {
                _ if s == k => exact += 1,
                _ if s < CMDS[*base].ver0 => small += 1,
                _ if s > abi::STRUCT_SIZE_MAX as usize => over += 1,
                _ if s > k && bytes[k..s.min(bytes.len())].iter().all(|&b| b == 0) => {
                    zero_tail += 1
                }
                _ if s > k => dirty_tail += 1,
                _ => {}
            }
        }
        for (what, n) in [
            ("exact", exact),
            ("too small", small),
            ("zero tail", zero_tail),
            ("non-zero tail", dirty_tail),
            ("over the maximum", over),
        ] {
            assert!(n > 200, "{what}: {n}");
        }
    }

    #[test]
    fn every_command_and_placement_is_drawn() {
        let all = plans(11, 30_000);
        for (base, spec) in CMDS.iter().enumerate() {
            assert!(all.iter().any(|p| p.0 == base), "{} never drawn", spec.name);
        }
        let has = |f: fn(&Ptr) -> bool| all.iter().any(|p| f(&p.2));
        assert!(has(|p| matches!(p, Ptr::Struct(0))));
        assert!(has(|p| matches!(p, Ptr::Struct(o) if *o > 0)));
        assert!(has(|p| matches!(p, Ptr::Prefilled)));
        assert!(has(|p| matches!(p, Ptr::BeforeGuard(_))));
        assert!(has(|p| matches!(p, Ptr::Mapping { .. })));
        assert!(has(|p| matches!(p, Ptr::Kernel(_))));
        assert!(has(|p| matches!(p, Ptr::Null)));
        // Buffers point at bad memory too.
        let bad_buf = all.iter().any(|p| {
            p.4.iter()
                .any(|(_, q)| matches!(q, Ptr::ReadOnly(_) | Ptr::Kernel(_) | Ptr::Wild(_)))
        });
        assert!(bad_buf);
    }

    #[test]
    fn agent_backend_only_where_allowed() {
        let mut rng = Rng::new(13);
        let mut array = vec![0u8; ARRAY_AREA];
        let hints = Hints::default();
        for allow_agent in [false, true] {
            let limits = Limits {
                allow_agent,
                pmem_ok: false,
            };
            let mut agents = 0;
            for _ in 0..5000 {
                let p = plan(
                    &mut rng,
                    id::RMEM_CONFIGURE,
                    &hints,
                    &limits,
                    &mut Areas { array: &mut array },
                );
                let c = abi::RmemConfig::decode(&p.bytes);
                agents += usize::from(c.backend == abi::RMEM_BACKEND_AGENT);
            }
            assert_eq!(agents > 0, allow_agent, "{agents} agent configs");
        }
    }

    #[test]
    fn attach_names_every_path() {
        let mut rng = Rng::new(17);
        let mut array = vec![0u8; ARRAY_AREA];
        let limits = Limits {
            allow_agent: false,
            pmem_ok: true,
        };
        let mut seen = vec![false; PATHS.len()];
        let (mut pmem, mut long) = (0, 0);
        for _ in 0..3000 {
            array[..8].fill(0xff);
            let p = plan(
                &mut rng,
                id::JOURNAL_ATTACH,
                &Hints::default(),
                &limits,
                &mut Areas { array: &mut array },
            );
            if p.pmem_path {
                pmem += 1;
                continue;
            }
            let end = array.iter().position(|&b| b == 0).unwrap_or(0);
            if let Some(i) = PATHS.iter().position(|q| *q == &array[..end]) {
                seen[i] = true;
            }
            long += usize::from(end > 4096);
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
        assert!(pmem > 300 && long > 50, "pmem {pmem}, long {long}");
    }
}
