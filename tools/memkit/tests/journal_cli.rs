//! End-to-end tests of `memkit journal …` on the host: the `memkit` binary formats and
//! checks image files; transactions are committed into the images with the same
//! engine the module runs (`memkit_core::journal::engine`) over an in-memory `Pmem`;
//! the device subcommands run against a regular file standing in for
//! `/dev/memkit-journal` (`MEMKIT_DEV_DIR`), which answers `pread` but not ioctls.

use memkit_core::journal::engine::{Journal, Mode, OpenScratch, Range, Slot};
use memkit_core::journal::format::{ENTRY_HEADER_SIZE, MJ_HEADER_SIZE};
use memkit_core::journal::pmem::Pmem;
use memkit_core::journal::recovery::{Plan, SlotScan};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_memkit");
/// The geometry of the small test journals: 4 MJs of 256 bytes.
const MJ_COUNT: usize = 4;
const MJ_SIZE: usize = 256;
const MJ_OFFSET: usize = 4096;

/// A fresh, empty directory for one test.
fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("journal-cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn memkit(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn memkit_dev(dev_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("MEMKIT_DEV_DIR", dev_dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `memkit --json journal check IMG`: exit code and the parsed report.
fn check(img: &Path) -> (i32, Value) {
    let o = memkit(&["--json", "journal", "check", img.to_str().unwrap()]);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&o), stderr(&o)));
    (o.status.code().unwrap_or(-1), v)
}

/// Formats a 1 MiB test image with the small geometry; returns the format report.
fn format_small(img: &Path) -> Value {
    let o = memkit(&[
        "--json",
        "journal",
        "format",
        img.to_str().unwrap(),
        "--size",
        "1M",
        "--mj-count",
        &MJ_COUNT.to_string(),
        "--mj-size",
        &MJ_SIZE.to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// An image held in memory.
struct MemPmem(Vec<u8>);

impl Pmem for MemPmem {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        let off = off as usize;
        buf.copy_from_slice(&self.0[off..off + buf.len()]);
    }
    fn write_flushed(&mut self, off: u64, data: &[u8]) {
        let off = off as usize;
        self.0[off..off + data.len()].copy_from_slice(data);
    }
    fn fence(&mut self) {}
}

/// Opens (recovers) the journal in `pm` in coalesced mode, as the kernel does on attach.
fn open(pm: &mut MemPmem) -> (Journal<Vec<Slot>, Vec<u8>>, Plan) {
    let mut scans = vec![SlotScan::Empty; MJ_COUNT];
    let mut order = vec![0u32; MJ_COUNT];
    let mut mj = vec![0u8; MJ_SIZE];
    let scratch = OpenScratch {
        scans: &mut scans,
        order: &mut order,
        mj: &mut mj,
    };
    Journal::open(
        pm,
        Mode::Coalesced,
        vec![Slot::default(); MJ_COUNT],
        vec![0; MJ_SIZE],
        scratch,
    )
    .unwrap()
}

/// Commits one group of single-range transactions: `(offset, data)` each.
fn commit(j: &mut Journal<Vec<Slot>, Vec<u8>>, pm: &mut MemPmem, txs: &[(u64, &[u8])]) -> Vec<u64> {
    let ranges: Vec<[Range<'_>; 1]> = txs
        .iter()
        .map(|&(offset, data)| [Range { offset, data }])
        .collect();
    let mut group: Vec<&[Range<'_>]> = ranges.iter().map(|r| &r[..]).collect();
    let mut ids = vec![0u64; txs.len()];
    j.commit(pm, &mut group[..], &mut ids).unwrap();
    ids
}

/// `[(slot, commit_id)]` of a list in the check report.
fn slots(v: &Value) -> Vec<(u64, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["slot"].as_u64().unwrap(),
                m["commit_id"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Formats an image, commits ids 1..=3 one at a time and ids 4 and 5 as one group,
/// writes the image (`grouped`), then commits ids 6 and 7 one at a time and writes
/// it again (`later`).
///
/// A commit takes the most recently freed MJ, and a group's MJs are freed at the
/// next barrier, so (slot ← id): 0←1, 1←2, 0←3, then the group 1←4, 2←5, then
/// 0←6 and 1←7; slot 2 keeps id 5, stale once 7's low-water mark (6) is past it.
fn image_with_commits(dir: &Path) -> (PathBuf, PathBuf) {
    let grouped = dir.join("grouped.img");
    let later = dir.join("later.img");
    format_small(&grouped);
    let mut pm = MemPmem(std::fs::read(&grouped).unwrap());
    let (mut j, plan) = open(&mut pm);
    assert_eq!(plan.next_id, 1);
    let single = |j: &mut Journal<Vec<Slot>, Vec<u8>>, pm: &mut MemPmem, k: u64| {
        let data = vec![k as u8; 10 * k as usize];
        assert_eq!(commit(j, pm, &[(100 * k, &data)]), [k]);
    };
    for k in 1..=3u64 {
        single(&mut j, &mut pm, k);
    }
    assert_eq!(
        commit(&mut j, &mut pm, &[(0, b"four"), (4096, b"five!!")]),
        [4, 5]
    );
    std::fs::write(&grouped, &pm.0).unwrap();
    for k in 6..=7u64 {
        single(&mut j, &mut pm, k);
    }
    std::fs::write(&later, &pm.0).unwrap();
    (grouped, later)
}

#[test]
fn a_formatted_image_checks_as_an_empty_journal() {
    let dir = test_dir("empty");
    let img = dir.join("j.img");
    let f = format_small(&img);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1 << 20);
    assert_eq!(f["created"], true);
    assert_eq!(f["geometry"]["mj_count"], MJ_COUNT);
    assert_eq!(f["geometry"]["data_offset"], 8192);

    let (code, r) = check(&img);
    assert_eq!(code, 0);
    assert_eq!(r["recoverable"], true);
    assert_eq!(r["uuid"], f["uuid"]);
    assert_eq!(r["geometry"], f["geometry"]);
    let rec = &r["recovery"];
    assert_eq!(rec["next_id"], 1);
    assert_eq!(rec["seal_id"], serde_json::Value::Null);
    assert_eq!(rec["lwm"], 0);
    assert_eq!(rec["empty"], MJ_COUNT);
    for list in ["replay", "stale", "incomplete", "torn"] {
        assert_eq!(rec[list], serde_json::json!([]), "{list}");
    }

    let o = memkit(&["journal", "check", img.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(o.status.success());
    assert!(text.contains("next commit id 1"), "{text}");
    assert!(text.contains("replay: nothing"), "{text}");
    assert!(text.contains("empty 4"), "{text}");
    assert!(text.ends_with("recoverable\n"), "{text}");
}

#[test]
fn two_formats_get_different_uuids() {
    let dir = test_dir("uuids");
    let a = format_small(&dir.join("a.img"));
    let b = format_small(&dir.join("b.img"));
    assert_ne!(a["uuid"], b["uuid"]);
}

#[test]
fn committed_transactions_are_replayed_from_the_low_water_mark() {
    let dir = test_dir("replay");
    let (grouped, later) = image_with_commits(&dir);

    let (code, r) = check(&grouped);
    assert_eq!(code, 0, "{r}");
    let rec = &r["recovery"];
    assert_eq!(rec["lwm"], 3);
    assert_eq!((&rec["seal_id"], &rec["next_id"]), (&6.into(), &7.into()));
    assert_eq!(slots(&rec["replay"]), [(0, 3), (1, 4), (2, 5)]);
    assert_eq!(slots(&rec["stale"]), []);
    assert_eq!(rec["empty"], 1);
    assert_eq!(rec["replay"][0]["entries"], 1);
    assert_eq!(rec["replay"][0]["data_bytes"], 30);
    let four = &rec["replay"][1];
    assert_eq!(
        (&four["group_first"], &four["group_len"]),
        (&4.into(), &2.into())
    );
    assert_eq!(rec["replay"][2]["data_bytes"], 6);
    let text = stdout(&memkit(&["journal", "check", grouped.to_str().unwrap()]));
    assert!(text.contains("replay 3 MJs in this order:"), "{text}");
    assert!(
        text.contains("slot 1 id 4 (group 4-5, lwm 3): 1 ranges, 4 bytes"),
        "{text}"
    );

    let (code, r) = check(&later);
    assert_eq!(code, 0, "{r}");
    let rec = &r["recovery"];
    assert_eq!(rec["lwm"], 6);
    assert_eq!((&rec["seal_id"], &rec["next_id"]), (&8.into(), &9.into()));
    assert_eq!(slots(&rec["replay"]), [(0, 6), (1, 7)]);
    assert_eq!(slots(&rec["stale"]), [(2, 5)]);
    assert_eq!(rec["empty"], 1);
    assert_eq!(rec["replay"][1]["data_bytes"], 70);

    let o = memkit(&["journal", "check", later.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(text.contains("replay 2 MJs in this order:"), "{text}");
    assert!(
        text.contains("low-water mark 6, sealed by commit id 8, next commit id 9"),
        "{text}"
    );
    assert!(text.contains("stale 1: slot 2 (id 5)"), "{text}");

    // What check predicts is what recovery does.
    let mut pm = MemPmem(std::fs::read(&later).unwrap());
    let (j, plan) = open(&mut pm);
    assert_eq!((plan.replay, plan.stale, plan.lwm), (2, 1, 6));
    assert_eq!((plan.seal_id, plan.next_id, j.next_id()), (Some(8), 9, 9));
}

#[test]
fn a_torn_mj_is_discarded_and_its_group_skipped() {
    let dir = test_dir("torn");
    let (grouped, _) = image_with_commits(&dir);
    let mut bytes = std::fs::read(&grouped).unwrap();
    // Id 5 is in slot 2: flip a byte of its entry data.
    bytes[MJ_OFFSET + 2 * MJ_SIZE + MJ_HEADER_SIZE + ENTRY_HEADER_SIZE] ^= 0x01;
    std::fs::write(&grouped, &bytes).unwrap();

    let (code, r) = check(&grouped);
    assert_eq!(code, 0, "torn MJs are normal after a crash: {r}");
    let rec = &r["recovery"];
    assert_eq!(
        rec["torn"],
        serde_json::json!([{ "slot": 2, "error": "BadChecksum" }])
    );
    assert_eq!(slots(&rec["incomplete"]), [(1, 4)]);
    assert_eq!(slots(&rec["replay"]), [(0, 3)]);
    assert_eq!(rec["empty"], 1);
    // The torn id 5 is reused by the seal: its MJ is zeroed first.
    assert_eq!((&rec["seal_id"], &rec["next_id"]), (&5.into(), &6.into()));

    let text = stdout(&memkit(&["journal", "check", grouped.to_str().unwrap()]));
    assert!(text.contains("torn 1\n    slot 2: BadChecksum\n"), "{text}");
    assert!(text.contains("incomplete-group 1: slot 1 (id 4)"), "{text}");

    // A bad magic is named too.
    bytes[MJ_OFFSET] ^= 0xff;
    std::fs::write(&grouped, &bytes).unwrap();
    let (_, r) = check(&grouped);
    assert_eq!(
        r["recovery"]["torn"][0],
        serde_json::json!({ "slot": 0, "error": "BadMagic" })
    );
}

#[test]
fn duplicate_commit_ids_are_not_recoverable() {
    let dir = test_dir("duplicate");
    let (_, later) = image_with_commits(&dir);
    let mut bytes = std::fs::read(&later).unwrap();
    // Copy slot 0 (id 6) over slot 3 (empty).
    bytes.copy_within(MJ_OFFSET..MJ_OFFSET + MJ_SIZE, MJ_OFFSET + 3 * MJ_SIZE);
    std::fs::write(&later, &bytes).unwrap();
    let (code, r) = check(&later);
    assert_eq!(code, 4, "not recoverable has its own exit status");
    assert_eq!(r["recoverable"], false);
    assert_eq!(
        r["reason"],
        "duplicate commit id 6 in slots 0 and 3: not written by memkit"
    );
    // The errno the kernel's attach fails with for the same image.
    assert_eq!(r["errno"]["name"], "EUCLEAN");
    assert_eq!(r["errno"]["code"], libc::EUCLEAN);
    let o = memkit(&["journal", "check", later.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stdout(&o).ends_with(
        "NOT recoverable: duplicate commit id 6 in slots 0 and 3: not written by memkit \
         (attach fails: EUCLEAN)\n"
    ));
}

#[test]
fn a_bad_superblock_is_not_recoverable_and_says_why() {
    let dir = test_dir("superblock");
    let img = dir.join("j.img");
    format_small(&img);
    let good = std::fs::read(&img).unwrap();

    let cases: [(&str, Vec<u8>); 6] = [
        (
            "bad superblock: format version 1, this tool reads version 2: recover the \
             journal with the memkit that wrote it",
            {
                // A version 1 superblock, its checksum right.
                let mut b = good.clone();
                b[8..12].copy_from_slice(&1u32.to_le_bytes());
                let crc = memkit_core::crc32c::Crc32c::new()
                    .update(&b[..124])
                    .finish();
                b[124..128].copy_from_slice(&crc.to_le_bytes());
                b
            },
        ),
        ("bad superblock: superblock checksum mismatch", {
            let mut b = good.clone();
            b[40] ^= 1;
            b
        }),
        ("bad superblock: bad magic: not a memkit journal", {
            let mut b = good.clone();
            b[..8].copy_from_slice(b"garbage!");
            b
        }),
        (
            "bad superblock: the image is only 10 bytes",
            b"0123456789".to_vec(),
        ),
        ("bad superblock: the image is only 0 bytes", Vec::new()),
        (
            "bad superblock: the image is smaller than the device size it records",
            good[..1 << 19].to_vec(),
        ),
    ];
    for (want, bytes) in cases {
        std::fs::write(&img, &bytes).unwrap();
        let (code, r) = check(&img);
        assert_eq!(code, 4, "{want}: {r}");
        assert_eq!(r["recoverable"], false);
        let reason = r["reason"].as_str().unwrap();
        assert!(reason.starts_with(want), "{reason:?} is not {want:?}");
        assert!(!reason.contains('\n'));
    }
}

#[test]
fn garbage_never_panics_check() {
    let dir = test_dir("garbage");
    let img = dir.join("j.img");
    format_small(&img);
    let good = std::fs::read(&img).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..40 {
        let mut bytes = good.clone();
        // Every other round leaves the superblock alone, so the MJ scan sees garbage.
        let start = if round % 2 == 0 { 0 } else { MJ_OFFSET };
        let end = MJ_OFFSET + MJ_COUNT * MJ_SIZE;
        for _ in 0..(1 + next() % 64) {
            let at = start + (next() as usize) % (end - start);
            bytes[at] = next() as u8;
        }
        std::fs::write(&img, &bytes).unwrap();
        let (code, r) = check(&img);
        assert!(code == 0 || code == 4, "round {round}: exit {code}: {r}");
        assert_eq!(r["recoverable"], code == 0);
    }
}

#[test]
fn format_creates_extends_and_refuses_what_it_should() {
    let dir = test_dir("format");
    let img = dir.join("j.img");
    let p = img.to_str().unwrap();

    let o = memkit(&["journal", "format", p]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist: give --size to create it"));
    assert!(!img.exists());

    // The defaults: 64 MJs of 64 KiB.
    std::fs::write(&img, b"").unwrap();
    let o = memkit(&["--json", "journal", "format", p, "--size", "8M"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["created"], false);
    assert_eq!(f["geometry"]["mj_count"], 64);
    assert_eq!(f["geometry"]["mj_size"], 65536);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 8 << 20);

    let o = memkit(&["journal", "format", p, "--size", "4M"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refusing to shrink it"),
        "{}",
        stderr(&o)
    );

    let o = memkit(&["journal", "format", p, "--mj-size", "1000"]);
    assert!(stderr(&o).contains("multiple of 64"), "{}", stderr(&o));
    let o = memkit(&["journal", "format", p, "--mj-count", "1000"]);
    assert!(
        stderr(&o).contains("too small for 1000 MJs"),
        "{}",
        stderr(&o)
    );
    // A refused format leaves the journal alone.
    assert_eq!(check(&img).0, 0);

    let o = memkit(&["journal", "format", "/dev/null"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a regular file or a block device"));

    let o = memkit(&["journal", "format", p, "--size", "12Q"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown suffix 'Q'"), "{}", stderr(&o));
}

#[test]
fn tx_ranges_are_parsed_before_the_device_is_opened() {
    let dir = test_dir("tx");
    let file = dir.join("data.bin");
    std::fs::write(&file, b"from a file").unwrap();

    let bad = [
        ("0:hex:zz", "'z' at position 0 is not a hex digit"),
        ("0:hex:abc", "odd number of hex digits"),
        ("0:str:", "no data"),
        ("12", "expected OFFSET:DATA"),
        (
            "0:base64:AAAA",
            "DATA must be hex:DIGITS, str:TEXT or @FILE",
        ),
        ("0:@/nonexistent/x", "cannot read /nonexistent/x"),
    ];
    for (range, want) in bad {
        let o = memkit_dev(&dir, &["journal", "tx", "--range", range]);
        assert_eq!(o.status.code(), Some(2), "{range}");
        assert!(stderr(&o).contains(want), "{range}: {}", stderr(&o));
    }

    // Good ranges get as far as opening the device, which is missing here.
    let at = format!("4K:@{}", file.display());
    let o = memkit_dev(
        &dir,
        &[
            "journal",
            "tx",
            "--range",
            "0:hex:00ff",
            "--range",
            "8:str:x:y",
            "--range",
            &at,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("memkit-journal: No such file or directory"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("is memkit.ko loaded?"));
}

#[test]
fn read_and_status_through_a_stand_in_device() {
    let dir = test_dir("device");
    std::fs::write(dir.join("memkit-journal"), b"hello journal\x00\x01\x02tail").unwrap();

    let o = memkit_dev(&dir, &["journal", "read", "6", "7", "--hex"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "6a6f75726e616c\n");

    let o = memkit_dev(&dir, &["journal", "read", "0", "16"]);
    assert_eq!(
        stdout(&o),
        "00000000: 6865 6c6c 6f20 6a6f 7572 6e61 6c00 0102  hello journal...\n"
    );

    let o = memkit_dev(&dir, &["journal", "read", "0x10", "100", "--raw"]);
    assert!(o.status.success());
    assert_eq!(o.stdout, b"tail");
    assert!(
        stderr(&o).contains("short read: 4 of 100 bytes"),
        "{}",
        stderr(&o)
    );

    let o = memkit_dev(&dir, &["--json", "journal", "read", "13", "3"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hex"], "000102");
    assert_eq!(v["len"], 3);

    // A regular file answers ioctls with ENOTTY.
    let o = memkit_dev(&dir, &["--json", "journal", "status"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("not a memkit journal device"), "{err}");
}

/// Makes `path` a file of `size` bytes holding an ext4 filesystem: a real one from
/// `mkfs.ext4` when the host has it, else an ext2 superblock that is only its magic
/// (0xEF53 at byte 1080), which libblkid still recognises (as `ext2`). Returns the
/// TYPE libblkid reports.
fn filesystem_image(path: &Path, size: u64) -> &'static str {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(size).unwrap();
    drop(file);
    let mkfs = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if let Some(mkfs) = mkfs {
        let o = Command::new(mkfs)
            .args(["-q", "-F", "-E", "nodiscard"])
            .arg(path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        "ext4"
    } else {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[1080..1082].copy_from_slice(&0xef53u16.to_le_bytes());
        std::fs::write(path, &bytes).unwrap();
        "ext2"
    }
}

#[test]
fn format_refuses_a_file_holding_a_filesystem_unless_forced() {
    let dir = test_dir("format-fs");
    let img = dir.join("fs.img");
    let fs = filesystem_image(&img, 8 << 20);
    let p = img.to_str().unwrap();
    let before = std::fs::read(&img).unwrap();

    let o = memkit(&["journal", "format", p]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "memkit: {p} holds a filesystem (blkid TYPE={fs}); \
             --force to format it anyway\n"
        )
    );
    assert!(
        std::fs::read(&img).unwrap() == before,
        "a refused format wrote"
    );
    // Not even extended.
    let o = memkit(&["journal", "format", p, "--size", "16M"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        std::fs::read(&img).unwrap() == before,
        "a refused format wrote"
    );

    let o = memkit(&["journal", "format", p, "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(check(&img).0, 0);
}

#[test]
fn format_refuses_a_memkit_journal_unless_forced() {
    let dir = test_dir("format-journal");
    let img = dir.join("j.img");
    let p = img.to_str().unwrap();
    let first = format_small(&img);
    let before = std::fs::read(&img).unwrap();
    let small = ["--mj-count", "4", "--mj-size", "256"];

    let o = memkit(&[&["journal", "format", p][..], &small].concat());
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "memkit: {p} holds a memkit journal (uuid {}); --force to format it anyway\n",
            first["uuid"].as_str().unwrap()
        )
    );
    assert!(
        std::fs::read(&img).unwrap() == before,
        "a refused format wrote"
    );
    // --json reports the refusal as the error.
    let o = memkit(&[&["--json", "journal", "format", p][..], &small].concat());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("memkit journal"),
        "{v}"
    );

    let o = memkit(&[&["--json", "journal", "format", p, "--force"][..], &small].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let second: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(second["uuid"], first["uuid"]);
}

#[test]
fn format_takes_a_zeroed_file_without_force() {
    let dir = test_dir("format-zeroed");
    let img = dir.join("zero.img");
    std::fs::write(&img, vec![0u8; 8 << 20]).unwrap();
    let o = memkit(&["journal", "format", img.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(check(&img).0, 0);
}

/// `attach --format` decides as `format` does, before the ioctl: the stand-in device
/// answers the ioctl with ENOTTY, so reaching it shows as "not a memkit journal device".
#[test]
fn attach_format_refuses_as_format_does_before_the_ioctl() {
    let dir = test_dir("attach-format");
    let img = dir.join("fs.img");
    filesystem_image(&img, 8 << 20);
    let p = img.to_str().unwrap();
    std::fs::write(dir.join("memkit-journal"), b"").unwrap();
    let before = std::fs::read(&img).unwrap();

    let refused = memkit(&["journal", "format", p]);
    let o = memkit_dev(&dir, &["journal", "attach", p, "--format"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stderr(&o), stderr(&refused), "not refused the same way");
    assert!(std::fs::read(&img).unwrap() == before);

    let o = memkit_dev(&dir, &["journal", "attach", p, "--format", "--force"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a memkit journal device"),
        "--force did not reach the ioctl: {}",
        stderr(&o)
    );
    // Attaching without --format formats nothing, so nothing is probed.
    let o = memkit_dev(&dir, &["journal", "attach", p]);
    assert!(
        stderr(&o).contains("not a memkit journal device"),
        "{}",
        stderr(&o)
    );

    // An existing journal is refused too.
    let j = dir.join("j.img");
    let f = format_small(&j);
    let o = memkit_dev(
        &dir,
        &["journal", "attach", j.to_str().unwrap(), "--format"],
    );
    assert_eq!(o.status.code(), Some(1));
    let uuid = f["uuid"].as_str().unwrap();
    assert!(
        stderr(&o).contains(&format!("holds a memkit journal (uuid {uuid})")),
        "{}",
        stderr(&o)
    );

    // --force only means something with --format.
    let o = memkit_dev(&dir, &["journal", "attach", p, "--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
