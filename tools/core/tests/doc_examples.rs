//! The C example programs of `Documentation/*.rst` (the `code-block:: c` blocks
//! with a `main`; others are excerpts) compile against the UAPI header (`-Wall
//! -Werror`), so the documentation cannot drift from the ABI unnoticed.

use std::path::PathBuf;
use std::process::Command;

/// The bodies of the `.. code-block:: c` blocks of an rst text (indented lines after
/// the directive, indentation removed).
fn c_blocks(rst: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = rst.lines().peekable();
    while let Some(l) = lines.next() {
        if l.trim() != ".. code-block:: c" {
            continue;
        }
        let mut body = String::new();
        while let Some(&n) = lines.peek() {
            if !n.is_empty() && !n.starts_with(' ') {
                break;
            }
            body += n.strip_prefix("   ").unwrap_or(n);
            body.push('\n');
            lines.next();
        }
        blocks.push(body);
    }
    blocks
}

#[test]
fn c_examples_compile() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let docs = manifest.join("../../Documentation");
    let include = manifest.join("../include/uapi");
    let dir = std::env::temp_dir().join(format!("memkit-doc-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut n = 0;
    for e in std::fs::read_dir(&docs).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "rst") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let programs = c_blocks(&text)
            .into_iter()
            .filter(|b| b.contains("int main("));
        for (i, block) in programs.enumerate() {
            let src = dir.join(format!(
                "{}-{i}.c",
                path.file_stem().unwrap().to_string_lossy()
            ));
            std::fs::write(&src, block).unwrap();
            let out = Command::new(&cc)
                .args([
                    "-std=gnu11",
                    "-Wall",
                    "-Werror",
                    "-c",
                    "-o",
                    "/dev/null",
                    "-I",
                ])
                .arg(&include)
                .arg(&src)
                .output()
                .expect("run the C compiler");
            assert!(
                out.status.success(),
                "{} example {i} does not compile:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(n >= 2, "found only {n} C examples");
}
