//! Builds the PMDK peer (`pmdk/pmdk_bench.c`) and links libpmemobj and libpmem
//! (Debian: `libpmemobj-dev`, which `scripts/setup-host.sh` installs).

fn main() {
    println!("cargo:rerun-if-changed=pmdk/pmdk_bench.c");
    println!("cargo:rerun-if-changed=pmdk/pmdk_bench.h");
    cc::Build::new()
        .file("pmdk/pmdk_bench.c")
        .flag("-std=gnu11")
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("memkit_pmdk_bench");
    println!("cargo:rustc-link-lib=dylib=pmemobj");
    println!("cargo:rustc-link-lib=dylib=pmem");
}
