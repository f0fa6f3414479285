//! The C header `tools/include/uapi/linux/memkit.h` and the Rust mirror
//! (`rust/pure/abi.rs`) agree: sizes, offsets, constants and command numbers.
//!
//! The test compiles a small C program against the header with the host C compiler
//! (which also evaluates the header's `_Static_assert`s) and compares what it prints
//! with the Rust values.

use memkit_core::abi::{self, UapiStruct};
use memkit_core::ckpt::diff as ckpt_diff;
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
	P("MEMKIT_FEAT_FDINFO", MEMKIT_FEAT_FDINFO);
	P("MEMKIT_FEAT_CKPT_RECORD", MEMKIT_FEAT_CKPT_RECORD);
	P("MEMKIT_FEAT_CKPT_SNAPSHOT", MEMKIT_FEAT_CKPT_SNAPSHOT);
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
	P("MEMKIT_CKPT_MAX_BYTES", MEMKIT_CKPT_MAX_BYTES);
	P("MEMKIT_CKPT_COLLECT_CLEAR", MEMKIT_CKPT_COLLECT_CLEAR);
	P("MEMKIT_CKPT_COLLECT_RANGES", MEMKIT_CKPT_COLLECT_RANGES);
	P("MEMKIT_CKPT_COLLECT_SNAPSHOT", MEMKIT_CKPT_COLLECT_SNAPSHOT);
	P("MEMKIT_CKPT_COLLECT_ALL", MEMKIT_CKPT_COLLECT_ALL);
	P("MEMKIT_CKPT_COLLECT_FLAGS", MEMKIT_CKPT_COLLECT_FLAGS);
	P("MEMKIT_CKPT_COPY_MAX_PAGES", MEMKIT_CKPT_COPY_MAX_PAGES);
	P("MEMKIT_IOC_CKPT_CREATE", MEMKIT_IOC_CKPT_CREATE);
	P("MEMKIT_IOC_CKPT_START", MEMKIT_IOC_CKPT_START);
	P("MEMKIT_IOC_CKPT_COLLECT", MEMKIT_IOC_CKPT_COLLECT);
	P("MEMKIT_IOC_CKPT_HISTORY", MEMKIT_IOC_CKPT_HISTORY);
	P("MEMKIT_IOC_CKPT_COPY", MEMKIT_IOC_CKPT_COPY);
	P("MEMKIT_IOC_CKPT_STATS", MEMKIT_IOC_CKPT_STATS);
	P("sizeof.memkit_ckpt_create", sizeof(struct memkit_ckpt_create));
	P("MEMKIT_CKPT_CREATE_SIZE_VER0", MEMKIT_CKPT_CREATE_SIZE_VER0);
	OFF(memkit_ckpt_create, bytes);
	OFF(memkit_ckpt_create, mmap_offset);
	P("sizeof.memkit_ckpt_start", sizeof(struct memkit_ckpt_start));
	P("MEMKIT_CKPT_START_SIZE_VER0", MEMKIT_CKPT_START_SIZE_VER0);
	P("sizeof.memkit_ckpt_range", sizeof(struct memkit_ckpt_range));
	OFF(memkit_ckpt_range, first);
	OFF(memkit_ckpt_range, count);
	P("sizeof.memkit_ckpt_collect", sizeof(struct memkit_ckpt_collect));
	P("MEMKIT_CKPT_COLLECT_SIZE_VER0", MEMKIT_CKPT_COLLECT_SIZE_VER0);
#define C(f) OFF(memkit_ckpt_collect, f)
	C(first); C(count); C(buf); C(buf_len); C(dirty); C(nr_ranges);
	P("sizeof.memkit_ckpt_history", sizeof(struct memkit_ckpt_history));
	P("MEMKIT_CKPT_HISTORY_SIZE_VER0", MEMKIT_CKPT_HISTORY_SIZE_VER0);
	OFF(memkit_ckpt_history, first);
	OFF(memkit_ckpt_history, count);
	OFF(memkit_ckpt_history, buf);
	OFF(memkit_ckpt_history, buf_len);
	P("sizeof.memkit_ckpt_copy", sizeof(struct memkit_ckpt_copy));
	P("MEMKIT_CKPT_COPY_SIZE_VER0", MEMKIT_CKPT_COPY_SIZE_VER0);
#define Y(f) OFF(memkit_ckpt_copy, f)
	Y(pages); Y(count); Y(buf); Y(buf_len); Y(bytes);
	P("sizeof.memkit_ckpt_stats", sizeof(struct memkit_ckpt_stats));
	P("MEMKIT_CKPT_STATS_SIZE_VER0", MEMKIT_CKPT_STATS_SIZE_VER0);
#define T(f) OFF(memkit_ckpt_stats, f)
	T(bytes); T(pages_allocated); T(collects); T(intervals); T(dirty_reported);
	T(dirty_unmapped); T(pages_copied); T(pages_diffed); T(record_bytes);
	T(mode); T(mode_fixed); T(mode_switches); T(write_faults); T(wp_pages);
	T(snapshot_pages); T(cow_copies);
	P("MEMKIT_CKPT_START_SCAN", MEMKIT_CKPT_START_SCAN);
	P("MEMKIT_CKPT_START_RECORD", MEMKIT_CKPT_START_RECORD);
	P("MEMKIT_CKPT_MODE_SCAN", MEMKIT_CKPT_MODE_SCAN);
	P("MEMKIT_CKPT_MODE_RECORD", MEMKIT_CKPT_MODE_RECORD);
	P("MEMKIT_CKPT_DIFF_SET_RESET", MEMKIT_CKPT_DIFF_SET_RESET);
	P("MEMKIT_CKPT_DIFF_SET_REMOVE", MEMKIT_CKPT_DIFF_SET_REMOVE);
	P("MEMKIT_CKPT_REC_FULL", MEMKIT_CKPT_REC_FULL);
	P("MEMKIT_CKPT_REC_DIFF", MEMKIT_CKPT_REC_DIFF);
	P("MEMKIT_CKPT_REC_HEADER", MEMKIT_CKPT_REC_HEADER);
	P("MEMKIT_CKPT_REC_MAX", MEMKIT_CKPT_REC_MAX);
	P("MEMKIT_CKPT_COPY_DIFF_MAX_PAGES", MEMKIT_CKPT_COPY_DIFF_MAX_PAGES);
	P("MEMKIT_IOC_CKPT_DIFF_SET", MEMKIT_IOC_CKPT_DIFF_SET);
	P("MEMKIT_IOC_CKPT_COPY_DIFF", MEMKIT_IOC_CKPT_COPY_DIFF);
	P("sizeof.memkit_ckpt_diff_set", sizeof(struct memkit_ckpt_diff_set));
	P("MEMKIT_CKPT_DIFF_SET_SIZE_VER0", MEMKIT_CKPT_DIFF_SET_SIZE_VER0);
	OFF(memkit_ckpt_diff_set, pages);
	OFF(memkit_ckpt_diff_set, count);
	P("sizeof.memkit_ckpt_copy_diff", sizeof(struct memkit_ckpt_copy_diff));
	P("MEMKIT_CKPT_COPY_DIFF_SIZE_VER0", MEMKIT_CKPT_COPY_DIFF_SIZE_VER0);
#define D(f) OFF(memkit_ckpt_copy_diff, f)
	D(pages); D(count); D(buf); D(buf_len); D(segment); D(max_changed); D(bytes); D(diffed);
	P("MEMKIT_RMEM_MAX_BYTES", MEMKIT_RMEM_MAX_BYTES);
	P("MEMKIT_RMEM_MAX_BUDGET", MEMKIT_RMEM_MAX_BUDGET);
	P("MEMKIT_RMEM_MAX_DEGREE", MEMKIT_RMEM_MAX_DEGREE);
	P("MEMKIT_RMEM_MAX_INFLIGHT", MEMKIT_RMEM_MAX_INFLIGHT);
	P("MEMKIT_RMEM_MAX_NS", MEMKIT_RMEM_MAX_NS);
	P("MEMKIT_RMEM_MAX_PAGE_NS", MEMKIT_RMEM_MAX_PAGE_NS);
	P("MEMKIT_RMEM_KEEP_LATE", MEMKIT_RMEM_KEEP_LATE);
	P("MEMKIT_RMEM_CONFIG_FLAGS", MEMKIT_RMEM_CONFIG_FLAGS);
	P("MEMKIT_RMEM_BACKEND_EMULATED", MEMKIT_RMEM_BACKEND_EMULATED);
	P("MEMKIT_RMEM_BACKEND_AGENT", MEMKIT_RMEM_BACKEND_AGENT);
	P("MEMKIT_RMEM_POLICY_NONE", MEMKIT_RMEM_POLICY_NONE);
	P("MEMKIT_RMEM_POLICY_PTLINE", MEMKIT_RMEM_POLICY_PTLINE);
	P("MEMKIT_RMEM_POLICY_PTLINE_HISTORY", MEMKIT_RMEM_POLICY_PTLINE_HISTORY);
	P("MEMKIT_RMEM_POLICY_WINDOW", MEMKIT_RMEM_POLICY_WINDOW);
	P("MEMKIT_RMEM_POLICY_TREND", MEMKIT_RMEM_POLICY_TREND);
	P("MEMKIT_RMEM_POLICIES", MEMKIT_RMEM_POLICIES);
	P("MEMKIT_RMEM_STATS_GLOBAL", MEMKIT_RMEM_STATS_GLOBAL);
	P("MEMKIT_RMEM_LAT_BUCKETS", MEMKIT_RMEM_LAT_BUCKETS);
	P("MEMKIT_IOC_RMEM_CONFIGURE", MEMKIT_IOC_RMEM_CONFIGURE);
	P("MEMKIT_IOC_RMEM_STATS", MEMKIT_IOC_RMEM_STATS);
	P("sizeof.memkit_rmem_config", sizeof(struct memkit_rmem_config));
	P("MEMKIT_RMEM_CONFIG_SIZE_VER0", MEMKIT_RMEM_CONFIG_SIZE_VER0);
#define R(f) OFF(memkit_rmem_config, f)
	R(size); R(flags); R(bytes); R(budget); R(backend); R(policy); R(deadline_ns);
	R(degree); R(max_inflight); R(lat_base_ns); R(lat_page_ns); R(mmap_offset);
	P("MEMKIT_RMEM_MSG_FETCH", MEMKIT_RMEM_MSG_FETCH);
	P("MEMKIT_RMEM_MSG_WRITEBACK", MEMKIT_RMEM_MSG_WRITEBACK);
	P("sizeof.memkit_rmem_msg", sizeof(struct memkit_rmem_msg));
	OFF(memkit_rmem_msg, id); OFF(memkit_rmem_msg, kind); OFF(memkit_rmem_msg, status);
	OFF(memkit_rmem_msg, page); OFF(memkit_rmem_msg, __pad);
	P("sizeof.memkit_rmem_stats", sizeof(struct memkit_rmem_stats));
	P("MEMKIT_RMEM_STATS_SIZE_VER0", MEMKIT_RMEM_STATS_SIZE_VER0);
#define RS(f) OFF(memkit_rmem_stats, f)
	RS(size); RS(flags); RS(bytes); RS(budget); RS(local); RS(faults_sync); RS(faults_local);
	RS(faults_wait); RS(prefetches); RS(installed); RS(hits); RS(late); RS(wasted);
	RS(evictions); RS(writebacks); RS(bytes_in); RS(bytes_out); RS(lat_hist);
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
        ("MEMKIT_FEAT_FDINFO", abi::FEAT_FDINFO),
        ("MEMKIT_FEAT_CKPT_RECORD", abi::FEAT_CKPT_RECORD),
        ("MEMKIT_FEAT_CKPT_SNAPSHOT", abi::FEAT_CKPT_SNAPSHOT),
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
    let ckpt: Vec<(&str, usize)> = vec![
        ("sizeof.memkit_ckpt_create", abi::CkptCreate::SIZE),
        ("MEMKIT_CKPT_CREATE_SIZE_VER0", abi::CkptCreate::SIZE_VER0),
        (
            "memkit_ckpt_create.bytes",
            offset_of!(abi::CkptCreate, bytes),
        ),
        (
            "memkit_ckpt_create.mmap_offset",
            offset_of!(abi::CkptCreate, mmap_offset),
        ),
        ("sizeof.memkit_ckpt_start", abi::CkptStart::SIZE),
        ("MEMKIT_CKPT_START_SIZE_VER0", abi::CkptStart::SIZE_VER0),
        ("sizeof.memkit_ckpt_range", abi::CkptRange::SIZE),
        ("memkit_ckpt_range.first", offset_of!(abi::CkptRange, first)),
        ("memkit_ckpt_range.count", offset_of!(abi::CkptRange, count)),
        ("sizeof.memkit_ckpt_collect", abi::CkptCollect::SIZE),
        ("MEMKIT_CKPT_COLLECT_SIZE_VER0", abi::CkptCollect::SIZE_VER0),
        (
            "memkit_ckpt_collect.first",
            offset_of!(abi::CkptCollect, first),
        ),
        (
            "memkit_ckpt_collect.count",
            offset_of!(abi::CkptCollect, count),
        ),
        ("memkit_ckpt_collect.buf", offset_of!(abi::CkptCollect, buf)),
        (
            "memkit_ckpt_collect.buf_len",
            offset_of!(abi::CkptCollect, buf_len),
        ),
        (
            "memkit_ckpt_collect.dirty",
            offset_of!(abi::CkptCollect, dirty),
        ),
        (
            "memkit_ckpt_collect.nr_ranges",
            offset_of!(abi::CkptCollect, nr_ranges),
        ),
        ("sizeof.memkit_ckpt_history", abi::CkptHistory::SIZE),
        ("MEMKIT_CKPT_HISTORY_SIZE_VER0", abi::CkptHistory::SIZE_VER0),
        (
            "memkit_ckpt_history.first",
            offset_of!(abi::CkptHistory, first),
        ),
        (
            "memkit_ckpt_history.count",
            offset_of!(abi::CkptHistory, count),
        ),
        ("memkit_ckpt_history.buf", offset_of!(abi::CkptHistory, buf)),
        (
            "memkit_ckpt_history.buf_len",
            offset_of!(abi::CkptHistory, buf_len),
        ),
        ("sizeof.memkit_ckpt_copy", abi::CkptCopy::SIZE),
        ("MEMKIT_CKPT_COPY_SIZE_VER0", abi::CkptCopy::SIZE_VER0),
        ("memkit_ckpt_copy.pages", offset_of!(abi::CkptCopy, pages)),
        ("memkit_ckpt_copy.count", offset_of!(abi::CkptCopy, count)),
        ("memkit_ckpt_copy.buf", offset_of!(abi::CkptCopy, buf)),
        (
            "memkit_ckpt_copy.buf_len",
            offset_of!(abi::CkptCopy, buf_len),
        ),
        ("memkit_ckpt_copy.bytes", offset_of!(abi::CkptCopy, bytes)),
        ("sizeof.memkit_ckpt_stats", abi::CkptStats::SIZE),
        ("MEMKIT_CKPT_STATS_SIZE_VER0", abi::CkptStats::SIZE_VER0),
        ("memkit_ckpt_stats.bytes", offset_of!(abi::CkptStats, bytes)),
        (
            "memkit_ckpt_stats.pages_allocated",
            offset_of!(abi::CkptStats, pages_allocated),
        ),
        (
            "memkit_ckpt_stats.collects",
            offset_of!(abi::CkptStats, collects),
        ),
        (
            "memkit_ckpt_stats.intervals",
            offset_of!(abi::CkptStats, intervals),
        ),
        (
            "memkit_ckpt_stats.dirty_reported",
            offset_of!(abi::CkptStats, dirty_reported),
        ),
        (
            "memkit_ckpt_stats.dirty_unmapped",
            offset_of!(abi::CkptStats, dirty_unmapped),
        ),
        (
            "memkit_ckpt_stats.pages_copied",
            offset_of!(abi::CkptStats, pages_copied),
        ),
        (
            "MEMKIT_CKPT_COPY_MAX_PAGES",
            abi::CKPT_COPY_MAX_PAGES as usize,
        ),
        (
            "memkit_ckpt_stats.pages_diffed",
            offset_of!(abi::CkptStats, pages_diffed),
        ),
        (
            "memkit_ckpt_stats.record_bytes",
            offset_of!(abi::CkptStats, record_bytes),
        ),
        ("memkit_ckpt_stats.mode", offset_of!(abi::CkptStats, mode)),
        (
            "memkit_ckpt_stats.mode_fixed",
            offset_of!(abi::CkptStats, mode_fixed),
        ),
        (
            "memkit_ckpt_stats.mode_switches",
            offset_of!(abi::CkptStats, mode_switches),
        ),
        (
            "memkit_ckpt_stats.write_faults",
            offset_of!(abi::CkptStats, write_faults),
        ),
        (
            "memkit_ckpt_stats.wp_pages",
            offset_of!(abi::CkptStats, wp_pages),
        ),
        (
            "memkit_ckpt_stats.snapshot_pages",
            offset_of!(abi::CkptStats, snapshot_pages),
        ),
        (
            "memkit_ckpt_stats.cow_copies",
            offset_of!(abi::CkptStats, cow_copies),
        ),
        ("sizeof.memkit_ckpt_diff_set", abi::CkptDiffSet::SIZE),
        (
            "MEMKIT_CKPT_DIFF_SET_SIZE_VER0",
            abi::CkptDiffSet::SIZE_VER0,
        ),
        (
            "memkit_ckpt_diff_set.pages",
            offset_of!(abi::CkptDiffSet, pages),
        ),
        (
            "memkit_ckpt_diff_set.count",
            offset_of!(abi::CkptDiffSet, count),
        ),
        ("sizeof.memkit_ckpt_copy_diff", abi::CkptCopyDiff::SIZE),
        (
            "MEMKIT_CKPT_COPY_DIFF_SIZE_VER0",
            abi::CkptCopyDiff::SIZE_VER0,
        ),
        (
            "memkit_ckpt_copy_diff.pages",
            offset_of!(abi::CkptCopyDiff, pages),
        ),
        (
            "memkit_ckpt_copy_diff.count",
            offset_of!(abi::CkptCopyDiff, count),
        ),
        (
            "memkit_ckpt_copy_diff.buf",
            offset_of!(abi::CkptCopyDiff, buf),
        ),
        (
            "memkit_ckpt_copy_diff.buf_len",
            offset_of!(abi::CkptCopyDiff, buf_len),
        ),
        (
            "memkit_ckpt_copy_diff.segment",
            offset_of!(abi::CkptCopyDiff, segment),
        ),
        (
            "memkit_ckpt_copy_diff.max_changed",
            offset_of!(abi::CkptCopyDiff, max_changed),
        ),
        (
            "memkit_ckpt_copy_diff.bytes",
            offset_of!(abi::CkptCopyDiff, bytes),
        ),
        (
            "memkit_ckpt_copy_diff.diffed",
            offset_of!(abi::CkptCopyDiff, diffed),
        ),
        ("MEMKIT_CKPT_REC_FULL", ckpt_diff::KIND_FULL as usize),
        ("MEMKIT_CKPT_REC_DIFF", ckpt_diff::KIND_DIFF as usize),
        ("MEMKIT_CKPT_REC_HEADER", ckpt_diff::HEADER),
        ("MEMKIT_CKPT_REC_MAX", ckpt_diff::MAX_RECORD),
        (
            "MEMKIT_CKPT_COPY_DIFF_MAX_PAGES",
            abi::CKPT_COPY_DIFF_MAX_PAGES as usize,
        ),
    ];
    macro_rules! offsets {
        ($c:literal, $t:ty, $($f:ident),*) => {
            [$((concat!($c, ".", stringify!($f)), offset_of!($t, $f))),*]
        };
    }
    let rmem = [
        ("sizeof.memkit_rmem_config", abi::RmemConfig::SIZE),
        ("MEMKIT_RMEM_CONFIG_SIZE_VER0", abi::RmemConfig::SIZE_VER0),
        ("sizeof.memkit_rmem_stats", abi::RmemStats::SIZE),
        ("MEMKIT_RMEM_STATS_SIZE_VER0", abi::RmemStats::SIZE_VER0),
        ("MEMKIT_RMEM_LAT_BUCKETS", abi::RMEM_LAT_BUCKETS),
        ("MEMKIT_RMEM_MSG_FETCH", abi::RMEM_MSG_FETCH as usize),
        (
            "MEMKIT_RMEM_MSG_WRITEBACK",
            abi::RMEM_MSG_WRITEBACK as usize,
        ),
        ("sizeof.memkit_rmem_msg", abi::RmemMsg::SIZE),
        ("memkit_rmem_msg.__pad", offset_of!(abi::RmemMsg, pad)),
    ]
    .into_iter()
    .chain(offsets!(
        "memkit_rmem_config",
        abi::RmemConfig,
        size,
        flags,
        bytes,
        budget,
        backend,
        policy,
        deadline_ns,
        degree,
        max_inflight,
        lat_base_ns,
        lat_page_ns,
        mmap_offset
    ))
    .chain(offsets!(
        "memkit_rmem_msg",
        abi::RmemMsg,
        id,
        kind,
        status,
        page
    ))
    .chain(offsets!(
        "memkit_rmem_stats",
        abi::RmemStats,
        size,
        flags,
        bytes,
        budget,
        local,
        faults_sync,
        faults_local,
        faults_wait,
        prefetches,
        installed,
        hits,
        late,
        wasted,
        evictions,
        writebacks,
        bytes_in,
        bytes_out,
        lat_hist
    ));
    let more: Vec<(&str, usize)> = more.into_iter().chain(ckpt).chain(rmem).collect();
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
        ("MEMKIT_RMEM_MAX_BYTES", abi::RMEM_MAX_BYTES),
        ("MEMKIT_RMEM_MAX_BUDGET", abi::RMEM_MAX_BUDGET),
        ("MEMKIT_RMEM_MAX_DEGREE", abi::RMEM_MAX_DEGREE.into()),
        ("MEMKIT_RMEM_MAX_INFLIGHT", abi::RMEM_MAX_INFLIGHT.into()),
        ("MEMKIT_RMEM_MAX_NS", abi::RMEM_MAX_NS),
        ("MEMKIT_RMEM_MAX_PAGE_NS", abi::RMEM_MAX_PAGE_NS),
        ("MEMKIT_RMEM_KEEP_LATE", abi::RMEM_KEEP_LATE.into()),
        ("MEMKIT_RMEM_CONFIG_FLAGS", abi::RMEM_CONFIG_FLAGS.into()),
        (
            "MEMKIT_RMEM_BACKEND_EMULATED",
            abi::RMEM_BACKEND_EMULATED.into(),
        ),
        ("MEMKIT_RMEM_BACKEND_AGENT", abi::RMEM_BACKEND_AGENT.into()),
        ("MEMKIT_RMEM_POLICY_NONE", abi::RMEM_POLICY_NONE.into()),
        ("MEMKIT_RMEM_POLICY_PTLINE", abi::RMEM_POLICY_PTLINE.into()),
        (
            "MEMKIT_RMEM_POLICY_PTLINE_HISTORY",
            abi::RMEM_POLICY_PTLINE_HISTORY.into(),
        ),
        ("MEMKIT_RMEM_POLICY_WINDOW", abi::RMEM_POLICY_WINDOW.into()),
        ("MEMKIT_RMEM_POLICY_TREND", abi::RMEM_POLICY_TREND.into()),
        ("MEMKIT_RMEM_POLICIES", abi::RMEM_POLICIES.into()),
        ("MEMKIT_RMEM_STATS_GLOBAL", abi::RMEM_STATS_GLOBAL.into()),
        ("MEMKIT_IOC_RMEM_CONFIGURE", abi::IOC_RMEM_CONFIGURE.into()),
        ("MEMKIT_IOC_RMEM_STATS", abi::IOC_RMEM_STATS.into()),
        ("MEMKIT_CKPT_MAX_BYTES", abi::CKPT_MAX_BYTES),
        ("MEMKIT_CKPT_COLLECT_CLEAR", abi::CKPT_COLLECT_CLEAR.into()),
        (
            "MEMKIT_CKPT_COLLECT_RANGES",
            abi::CKPT_COLLECT_RANGES.into(),
        ),
        (
            "MEMKIT_CKPT_COLLECT_SNAPSHOT",
            abi::CKPT_COLLECT_SNAPSHOT.into(),
        ),
        ("MEMKIT_CKPT_COLLECT_ALL", abi::CKPT_COLLECT_ALL.into()),
        ("MEMKIT_CKPT_COLLECT_FLAGS", abi::CKPT_COLLECT_FLAGS.into()),
        ("MEMKIT_CKPT_START_SCAN", abi::CKPT_START_SCAN.into()),
        ("MEMKIT_CKPT_START_RECORD", abi::CKPT_START_RECORD.into()),
        ("MEMKIT_CKPT_MODE_SCAN", abi::CKPT_MODE_SCAN.into()),
        ("MEMKIT_CKPT_MODE_RECORD", abi::CKPT_MODE_RECORD.into()),
        ("MEMKIT_IOC_CKPT_CREATE", abi::IOC_CKPT_CREATE.into()),
        ("MEMKIT_IOC_CKPT_START", abi::IOC_CKPT_START.into()),
        ("MEMKIT_IOC_CKPT_COLLECT", abi::IOC_CKPT_COLLECT.into()),
        ("MEMKIT_IOC_CKPT_HISTORY", abi::IOC_CKPT_HISTORY.into()),
        ("MEMKIT_IOC_CKPT_COPY", abi::IOC_CKPT_COPY.into()),
        ("MEMKIT_IOC_CKPT_STATS", abi::IOC_CKPT_STATS.into()),
        ("MEMKIT_IOC_CKPT_DIFF_SET", abi::IOC_CKPT_DIFF_SET.into()),
        ("MEMKIT_IOC_CKPT_COPY_DIFF", abi::IOC_CKPT_COPY_DIFF.into()),
        (
            "MEMKIT_CKPT_DIFF_SET_RESET",
            abi::CKPT_DIFF_SET_RESET.into(),
        ),
        (
            "MEMKIT_CKPT_DIFF_SET_REMOVE",
            abi::CKPT_DIFF_SET_REMOVE.into(),
        ),
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
