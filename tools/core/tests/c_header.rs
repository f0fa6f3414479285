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
    for (name, rust) in expect {
        assert_eq!(c.get(*name), Some(rust), "{name}: C header vs Rust mirror");
    }
    assert_eq!(
        c.len(),
        expect.len(),
        "the probe printed values this test does not compare"
    );
}
