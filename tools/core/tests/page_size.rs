//! The kernel side of memkit supports 4 KiB pages only, and says so at build time:
//! `Kbuild` refuses a kernel that is not x86_64, `rust/edge.rs` and `rust/helpers.c`
//! assert `PAGE_SIZE == 4096`. Everywhere else the module uses the kernel's page
//! shift and size by name: no literal page shift or page size in code of `rust/`
//! outside the pure logic (whose 4 KiB page is the ABI's) and that assertion, so that
//! a port to other page sizes has one place to start from and nothing hidden.

use std::path::PathBuf;

fn rust_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rust")
}

/// The code of a line: without a `//` comment (and the C block-comment lines).
fn code(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('*') || t.starts_with("/*") {
        return "";
    }
    line.split("//").next().unwrap_or("")
}

#[test]
fn no_literal_page_size_in_kernel_code() {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(rust_dir()).expect("rust/") {
        let path = entry.expect("entry").path();
        let ext = path.extension().and_then(|e| e.to_str());
        if !matches!(ext, Some("rs" | "c" | "h")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        for (n, line) in text.lines().enumerate() {
            let c = code(line);
            // The assertion itself, and a path length that happens to be 4096.
            let assertion = c.contains("PAGE_SIZE == 4096") || c.contains("PATH_MAX");
            let literal = c.contains("<< 12")
                || c.contains(">> 12")
                || c.contains("- 12)")
                || (c.contains("4096") && !assertion);
            if literal {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "literal 4 KiB page shifts or sizes in kernel code (use PAGE_SHIFT / PAGE_SIZE):\n{}",
        found.join("\n")
    );
}

#[test]
fn build_refuses_other_page_sizes() {
    let read = |f: &str| std::fs::read_to_string(rust_dir().join(f)).expect(f);
    let kbuild = std::fs::read_to_string(rust_dir().join("../Kbuild")).expect("Kbuild");
    assert!(
        kbuild.contains("ifneq ($(CONFIG_X86_64),y)") && kbuild.contains("$(error"),
        "Kbuild must refuse kernels other than x86_64"
    );
    assert!(
        read("helpers.c").contains("static_assert(PAGE_SIZE == 4096"),
        "helpers.c must assert 4 KiB pages"
    );
    let edge = read("edge.rs");
    assert!(
        edge.contains("const _: () = assert!(") && edge.contains("kernel::page::PAGE_SIZE == 4096"),
        "edge.rs must assert 4 KiB pages at build time"
    );
}
