//! The C header `tools/include/uapi/linux/memkit.h` and the Rust mirror
//! (`rust/pure/abi.rs`) agree: sizes, offsets, constants and command numbers.
//!
//! The test compiles a small C program against the header with the host C compiler
//! (which also evaluates the header's `_Static_assert`s) and compares what it prints
//! with the Rust values.

use memkit_core::abi::{self, UapiStruct};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

const PROBE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <linux/memkit.h>
#define P(name, value) printf("%s %llu\n", name, (unsigned long long)(value))
#define OFF(s, f) P(#s "." #f, offsetof(struct s, f))
int main(void)
{
	P("MEMKIT_ABI_MAJOR", MEMKIT_ABI_MAJOR);
	P("MEMKIT_ABI_MINOR", MEMKIT_ABI_MINOR);
	P("MEMKIT_IOC_MAGIC", MEMKIT_IOC_MAGIC);
	P("MEMKIT_STRUCT_SIZE_MAX", MEMKIT_STRUCT_SIZE_MAX);
	P("MEMKIT_DEV_JOURNAL", MEMKIT_DEV_JOURNAL);
	P("MEMKIT_DEV_RMEM", MEMKIT_DEV_RMEM);
	P("MEMKIT_DEV_CKPT", MEMKIT_DEV_CKPT);
	P("MEMKIT_FEAT_JOURNAL_TX", MEMKIT_FEAT_JOURNAL_TX);
	P("MEMKIT_FEAT_RMEM_PREFETCH", MEMKIT_FEAT_RMEM_PREFETCH);
	P("MEMKIT_FEAT_CKPT_DIRTY", MEMKIT_FEAT_CKPT_DIRTY);
	P("MEMKIT_FEATURES_KNOWN", MEMKIT_FEATURES_KNOWN);
	P("MEMKIT_IOC_VERSION", MEMKIT_IOC_VERSION);
	P("sizeof.memkit_version", sizeof(struct memkit_version));
	P("MEMKIT_VERSION_SIZE_VER0", MEMKIT_VERSION_SIZE_VER0);
	OFF(memkit_version, size);
	OFF(memkit_version, flags);
	OFF(memkit_version, abi_major);
	OFF(memkit_version, abi_minor);
	OFF(memkit_version, features);
	OFF(memkit_version, device);
	OFF(memkit_version, __pad);
	P("MEMKIT_JOURNAL_ATTACH_FORMAT", MEMKIT_JOURNAL_ATTACH_FORMAT);
	P("MEMKIT_JOURNAL_ATTACH_FLAGS", MEMKIT_JOURNAL_ATTACH_FLAGS);
	P("MEMKIT_JOURNAL_LAT_BUCKETS", MEMKIT_JOURNAL_LAT_BUCKETS);
	P("MEMKIT_JOURNAL_MODE_COALESCED", MEMKIT_JOURNAL_MODE_COALESCED);
	P("MEMKIT_JOURNAL_MODE_STRICT", MEMKIT_JOURNAL_MODE_STRICT);
	P("MEMKIT_IOC_JOURNAL_ATTACH", MEMKIT_IOC_JOURNAL_ATTACH);
	P("MEMKIT_IOC_JOURNAL_DETACH", MEMKIT_IOC_JOURNAL_DETACH);
	P("MEMKIT_IOC_JOURNAL_STATUS", MEMKIT_IOC_JOURNAL_STATUS);
	P("MEMKIT_IOC_JOURNAL_TX", MEMKIT_IOC_JOURNAL_TX);
	P("sizeof.memkit_journal_attach", sizeof(struct memkit_journal_attach));
	P("MEMKIT_JOURNAL_ATTACH_SIZE_VER0", MEMKIT_JOURNAL_ATTACH_SIZE_VER0);
	OFF(memkit_journal_attach, size);
	OFF(memkit_journal_attach, flags);
	OFF(memkit_journal_attach, path);
	OFF(memkit_journal_attach, mj_count);
	OFF(memkit_journal_attach, mj_size);
	P("sizeof.memkit_journal_detach", sizeof(struct memkit_journal_detach));
	P("MEMKIT_JOURNAL_DETACH_SIZE_VER0", MEMKIT_JOURNAL_DETACH_SIZE_VER0);
	OFF(memkit_journal_detach, size);
	OFF(memkit_journal_detach, flags);
	P("sizeof.memkit_journal_status", sizeof(struct memkit_journal_status));
	P("MEMKIT_JOURNAL_STATUS_SIZE_VER0", MEMKIT_JOURNAL_STATUS_SIZE_VER0);
#define S(f) OFF(memkit_journal_status, f)
	S(size); S(flags); S(attached); S(mode); S(dev_size); S(data_offset); S(data_size);
	S(mj_count); S(mj_size); S(max_ranges); S(max_tx_bytes); S(sync_dax); S(__pad);
	S(next_id); S(rec_replayed); S(rec_discarded); S(rec_stale); S(rec_incomplete);
	S(rec_empty); S(rec_lwm); S(rec_ns); S(transactions); S(groups); S(barriers);
	S(device_flushes); S(journal_bytes); S(inplace_bytes); S(payload_bytes);
	S(lines_written_back); S(lat_hist);
	P("sizeof.memkit_journal_range", sizeof(struct memkit_journal_range));
	OFF(memkit_journal_range, offset);
	OFF(memkit_journal_range, len);
	OFF(memkit_journal_range, data);
	P("sizeof.memkit_journal_tx", sizeof(struct memkit_journal_tx));
	P("MEMKIT_JOURNAL_TX_SIZE_VER0", MEMKIT_JOURNAL_TX_SIZE_VER0);
	OFF(memkit_journal_tx, size);
	OFF(memkit_journal_tx, flags);
	OFF(memkit_journal_tx, ranges);
	OFF(memkit_journal_tx, nr_ranges);
	OFF(memkit_journal_tx, __pad);
	OFF(memkit_journal_tx, commit_id);
	return 0;
}
"#;

fn c_values() -> HashMap<String, u64> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let include = manifest.join("../include/uapi");
    let dir = std::env::temp_dir().join(format!("memkit-c-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    let exe = dir.join("probe");
    std::fs::write(&src, PROBE).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-Wpadded", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "the C header does not compile cleanly");
    let out = Command::new(&exe).output().expect("run the probe");
    std::fs::remove_dir_all(&dir).ok();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn header_matches_rust_mirror() {
    let c = c_values();
    let expect: &[(&str, u64)] = &[
        ("MEMKIT_ABI_MAJOR", abi::ABI_MAJOR.into()),
        ("MEMKIT_ABI_MINOR", abi::ABI_MINOR.into()),
        ("MEMKIT_IOC_MAGIC", abi::IOC_MAGIC.into()),
        ("MEMKIT_STRUCT_SIZE_MAX", abi::STRUCT_SIZE_MAX.into()),
        ("MEMKIT_DEV_JOURNAL", abi::DEV_JOURNAL.into()),
        ("MEMKIT_DEV_RMEM", abi::DEV_RMEM.into()),
        ("MEMKIT_DEV_CKPT", abi::DEV_CKPT.into()),
        ("MEMKIT_FEAT_JOURNAL_TX", abi::FEAT_JOURNAL_TX),
        ("MEMKIT_FEAT_RMEM_PREFETCH", abi::FEAT_RMEM_PREFETCH),
        ("MEMKIT_FEAT_CKPT_DIRTY", abi::FEAT_CKPT_DIRTY),
        ("MEMKIT_FEATURES_KNOWN", abi::FEATURES_KNOWN),
        ("MEMKIT_IOC_VERSION", abi::IOC_VERSION.into()),
        ("sizeof.memkit_version", abi::Version::SIZE as u64),
        ("MEMKIT_VERSION_SIZE_VER0", abi::Version::SIZE_VER0 as u64),
        (
            "memkit_version.size",
            std::mem::offset_of!(abi::Version, size) as u64,
        ),
        (
            "memkit_version.flags",
            std::mem::offset_of!(abi::Version, flags) as u64,
        ),
        (
            "memkit_version.abi_major",
            std::mem::offset_of!(abi::Version, abi_major) as u64,
        ),
        (
            "memkit_version.abi_minor",
            std::mem::offset_of!(abi::Version, abi_minor) as u64,
        ),
        (
            "memkit_version.features",
            std::mem::offset_of!(abi::Version, features) as u64,
        ),
        (
            "memkit_version.device",
            std::mem::offset_of!(abi::Version, device) as u64,
        ),
        (
            "memkit_version.__pad",
            std::mem::offset_of!(abi::Version, pad) as u64,
        ),
    ];
    use abi::{
        JournalAttach as JA, JournalDetach as JD, JournalRange as JR, JournalStatus as JS,
        JournalTx as JT,
    };
    use std::mem::{offset_of, size_of};
    let mut expect = expect.to_vec();
    let more: Vec<(&str, usize)> = vec![
        ("MEMKIT_JOURNAL_LAT_BUCKETS", abi::JOURNAL_LAT_BUCKETS),
        ("sizeof.memkit_journal_attach", JA::SIZE),
        ("MEMKIT_JOURNAL_ATTACH_SIZE_VER0", JA::SIZE_VER0),
        ("memkit_journal_attach.size", offset_of!(JA, size)),
        ("memkit_journal_attach.flags", offset_of!(JA, flags)),
        ("memkit_journal_attach.path", offset_of!(JA, path)),
        ("memkit_journal_attach.mj_count", offset_of!(JA, mj_count)),
        ("memkit_journal_attach.mj_size", offset_of!(JA, mj_size)),
        ("sizeof.memkit_journal_detach", JD::SIZE),
        ("MEMKIT_JOURNAL_DETACH_SIZE_VER0", JD::SIZE_VER0),
        ("memkit_journal_detach.size", offset_of!(JD, size)),
        ("memkit_journal_detach.flags", offset_of!(JD, flags)),
        ("sizeof.memkit_journal_status", JS::SIZE),
        ("MEMKIT_JOURNAL_STATUS_SIZE_VER0", JS::SIZE_VER0),
        ("memkit_journal_status.size", offset_of!(JS, size)),
        ("memkit_journal_status.flags", offset_of!(JS, flags)),
        ("memkit_journal_status.attached", offset_of!(JS, attached)),
        ("memkit_journal_status.mode", offset_of!(JS, mode)),
        ("memkit_journal_status.dev_size", offset_of!(JS, dev_size)),
        (
            "memkit_journal_status.data_offset",
            offset_of!(JS, data_offset),
        ),
        ("memkit_journal_status.data_size", offset_of!(JS, data_size)),
        ("memkit_journal_status.mj_count", offset_of!(JS, mj_count)),
        ("memkit_journal_status.mj_size", offset_of!(JS, mj_size)),
        (
            "memkit_journal_status.max_ranges",
            offset_of!(JS, max_ranges),
        ),
        (
            "memkit_journal_status.max_tx_bytes",
            offset_of!(JS, max_tx_bytes),
        ),
        ("memkit_journal_status.sync_dax", offset_of!(JS, sync_dax)),
        ("memkit_journal_status.__pad", offset_of!(JS, pad)),
        ("memkit_journal_status.next_id", offset_of!(JS, next_id)),
        (
            "memkit_journal_status.rec_replayed",
            offset_of!(JS, rec_replayed),
        ),
        (
            "memkit_journal_status.rec_discarded",
            offset_of!(JS, rec_discarded),
        ),
        ("memkit_journal_status.rec_stale", offset_of!(JS, rec_stale)),
        (
            "memkit_journal_status.rec_incomplete",
            offset_of!(JS, rec_incomplete),
        ),
        ("memkit_journal_status.rec_empty", offset_of!(JS, rec_empty)),
        ("memkit_journal_status.rec_lwm", offset_of!(JS, rec_lwm)),
        ("memkit_journal_status.rec_ns", offset_of!(JS, rec_ns)),
        (
            "memkit_journal_status.transactions",
            offset_of!(JS, transactions),
        ),
        ("memkit_journal_status.groups", offset_of!(JS, groups)),
        ("memkit_journal_status.barriers", offset_of!(JS, barriers)),
        (
            "memkit_journal_status.device_flushes",
            offset_of!(JS, device_flushes),
        ),
        (
            "memkit_journal_status.journal_bytes",
            offset_of!(JS, journal_bytes),
        ),
        (
            "memkit_journal_status.inplace_bytes",
            offset_of!(JS, inplace_bytes),
        ),
        (
            "memkit_journal_status.payload_bytes",
            offset_of!(JS, payload_bytes),
        ),
        (
            "memkit_journal_status.lines_written_back",
            offset_of!(JS, lines_written_back),
        ),
        ("memkit_journal_status.lat_hist", offset_of!(JS, lat_hist)),
        ("sizeof.memkit_journal_range", size_of::<JR>()),
        ("memkit_journal_range.offset", offset_of!(JR, offset)),
        ("memkit_journal_range.len", offset_of!(JR, len)),
        ("memkit_journal_range.data", offset_of!(JR, data)),
        ("sizeof.memkit_journal_tx", JT::SIZE),
        ("MEMKIT_JOURNAL_TX_SIZE_VER0", JT::SIZE_VER0),
        ("memkit_journal_tx.size", offset_of!(JT, size)),
        ("memkit_journal_tx.flags", offset_of!(JT, flags)),
        ("memkit_journal_tx.ranges", offset_of!(JT, ranges)),
        ("memkit_journal_tx.nr_ranges", offset_of!(JT, nr_ranges)),
        ("memkit_journal_tx.__pad", offset_of!(JT, pad)),
        ("memkit_journal_tx.commit_id", offset_of!(JT, commit_id)),
    ];
    expect.extend(more.into_iter().map(|(k, v)| (k, v as u64)));
    expect.extend([
        (
            "MEMKIT_JOURNAL_ATTACH_FORMAT",
            abi::JOURNAL_ATTACH_FORMAT.into(),
        ),
        (
            "MEMKIT_JOURNAL_ATTACH_FLAGS",
            abi::JOURNAL_ATTACH_FLAGS.into(),
        ),
        (
            "MEMKIT_JOURNAL_MODE_COALESCED",
            abi::JOURNAL_MODE_COALESCED.into(),
        ),
        (
            "MEMKIT_JOURNAL_MODE_STRICT",
            abi::JOURNAL_MODE_STRICT.into(),
        ),
        ("MEMKIT_IOC_JOURNAL_ATTACH", abi::IOC_JOURNAL_ATTACH.into()),
        ("MEMKIT_IOC_JOURNAL_DETACH", abi::IOC_JOURNAL_DETACH.into()),
        ("MEMKIT_IOC_JOURNAL_STATUS", abi::IOC_JOURNAL_STATUS.into()),
        ("MEMKIT_IOC_JOURNAL_TX", abi::IOC_JOURNAL_TX.into()),
    ]);
    for (name, rust) in &expect {
        assert_eq!(c.get(*name), Some(rust), "{name}: C header vs Rust mirror");
    }
    assert_eq!(
        c.len(),
        expect.len(),
        "the probe printed values this test does not compare"
    );
}
