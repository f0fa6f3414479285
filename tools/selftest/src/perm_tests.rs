//! Permissions and limits in the guest (Documentation/security.rst): the nodes are
//! root-only as the module makes them; with the modes of the shipped udev rules
//! (`tools/udev/70-memkit.rules`) an unprivileged user works with rmem and ckpt
//! regions of its own and reaches nothing of another process's; the journal's
//! attach and detach need `CAP_SYS_ADMIN` (not uid 0), what changes the medium needs
//! a descriptor open for writing, and a group given the journal node commits
//! transactions; the memory a region makes the kernel allocate is charged to the
//! memory cgroup of its user.
//!
//! The unprivileged sides are forked children that switch to `nobody` (which drops
//! every capability) or drop `CAP_SYS_ADMIN` alone. Each case restores the nodes'
//! modes it changed.

use crate::ktap::{expect_errno, Outcome, TestResult};
use crate::race_tests::{ckpt_region, fork_child, rmem_config, wait_ok, word, SharedWords, PAGE};
use memkit::dev::{CkptMap, Device, DeviceKind};
use memkit_core::abi;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The shipped udev rules; the cases give the nodes the modes they set.
const RULES: &str = include_str!("../../udev/70-memkit.rules");
/// `nobody`.
const NOBODY: u32 = 65534;
/// A group the journal node is given in `perm_journal_admin_needs_cap_sys_admin`.
const JOURNAL_GROUP: u32 = 4242;
const CAP_SYS_ADMIN: u32 = 21;

fn needs_root() -> Option<Outcome> {
    // SAFETY: getuid has no preconditions.
    (unsafe { libc::getuid() } != 0)
        .then(|| Outcome::Skip("needs root to switch to an unprivileged user".into()))
}

/// Switches the calling (forked) process to `uid`:`gid` with the supplementary
/// `groups` only. A process of uid 0 that takes non-zero uids loses every capability;
/// checked.
pub(crate) fn become_user(uid: u32, gid: u32, groups: &[u32]) -> Result<(), String> {
    let os = || std::io::Error::last_os_error();
    // SAFETY: `groups` is valid for `groups.len()` gids.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(format!("setgroups: {}", os()));
    }
    // SAFETY: no pointer arguments.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(format!("setresgid {gid}: {}", os()));
    }
    // SAFETY: no pointer arguments.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(format!("setresuid {uid}: {}", os()));
    }
    let caps = capabilities()?;
    if caps.iter().any(|c| c.effective != 0 || c.permitted != 0) {
        return Err(format!("uid {uid} kept capabilities: {caps:?}"));
    }
    Ok(())
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`; version 3 uses two (capabilities 0-31, 32-63).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The calling thread's capability sets (`capget`).
fn capabilities() -> Result<[CapData; 2], String> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a version-3 header and the two data structs it takes.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) } != 0 {
        return Err(format!("capget: {}", std::io::Error::last_os_error()));
    }
    Ok(data)
}

/// Drops capability `cap` from every set of the calling (forked, single-threaded)
/// process, keeping its uid.
fn drop_capability(cap: u32) -> Result<(), String> {
    let mut data = capabilities()?;
    let bit = 1u32 << (cap % 32);
    let d = &mut data[(cap / 32) as usize];
    d.effective &= !bit;
    d.permitted &= !bit;
    d.inheritable &= !bit;
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: a version-3 header and the two data structs it takes.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) } != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    if capabilities()?[(cap / 32) as usize].effective & bit != 0 {
        return Err(format!("capability {cap} still effective"));
    }
    Ok(())
}

/// The modes, owners and groups of the device nodes, put back when dropped.
pub(crate) struct SavedNodes(Vec<(PathBuf, u32, u32, u32)>);

impl SavedNodes {
    pub(crate) fn save() -> Result<SavedNodes, String> {
        let mut v = Vec::new();
        for k in DeviceKind::ALL {
            let p = k.path();
            let m = std::fs::metadata(&p).map_err(|e| format!("stat {}: {e}", p.display()))?;
            v.push((p, m.mode() & 0o7777, m.uid(), m.gid()));
        }
        Ok(SavedNodes(v))
    }
}

impl Drop for SavedNodes {
    fn drop(&mut self) {
        for (p, mode, uid, gid) in &self.0 {
            let _ = std::os::unix::fs::chown(p, Some(*uid), Some(*gid));
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode));
        }
    }
}

/// The `(node name, mode)` pairs of [`RULES`].
fn rule_modes() -> Vec<(String, u32)> {
    RULES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (mut name, mut mode) = (None, None);
            for kv in l.split(',').map(str::trim) {
                if let Some(v) = kv.strip_prefix("KERNEL==") {
                    name = Some(v.trim_matches('"').to_string());
                } else if let Some(v) = kv.strip_prefix("MODE=") {
                    mode = u32::from_str_radix(v.trim_matches('"'), 8).ok();
                }
            }
            Some((name?, mode?))
        })
        .collect()
}

/// Gives the nodes the modes of the shipped rules (what udev does when the rules are
/// installed), after checking that they are the documented model: rmem and ckpt
/// open to everyone, the journal left as the module makes it.
fn apply_rules() -> Result<(), String> {
    let modes = rule_modes();
    let want = [
        ("memkit-rmem".to_string(), 0o666),
        ("memkit-ckpt".to_string(), 0o666),
    ];
    if modes != want {
        return Err(format!(
            "tools/udev/70-memkit.rules sets {modes:?}; the documented model is {want:?}"
        ));
    }
    for (name, mode) in modes {
        let p = Path::new("/dev").join(&name);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {mode:o} {}: {e}", p.display()))?;
    }
    Ok(())
}

fn open_as_user_denied(k: DeviceKind) -> Result<(), String> {
    expect_errno(
        &format!("open {} as uid {NOBODY}", k.path().display()),
        Device::open(k),
        libc::EACCES,
    )?;
    expect_errno(
        &format!("open {} read-only as uid {NOBODY}", k.path().display()),
        Device::open_read_only(k),
        libc::EACCES,
    )
}

/// `perm_nodes_root_only_by_default`: the module makes its nodes character devices
/// of mode 0600 owned by root:root, which `nobody` cannot open, read-only or not.
pub fn perm_nodes_root_only_by_default(_: &crate::Options) -> TestResult {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    for k in DeviceKind::ALL {
        let p = k.path();
        let m = std::fs::metadata(&p).map_err(|e| format!("stat {}: {e}", p.display()))?;
        let fmt = m.mode() & libc::S_IFMT;
        if fmt != libc::S_IFCHR || m.mode() & 0o7777 != 0o600 || m.uid() != 0 || m.gid() != 0 {
            return Err(format!(
                "{}: mode {:o}, owner {}:{} (want a character device 0600 root:root)",
                p.display(),
                m.mode(),
                m.uid(),
                m.gid()
            ));
        }
    }
    let pid = fork_child(|| {
        become_user(NOBODY, NOBODY, &[])?;
        DeviceKind::ALL
            .into_iter()
            .try_for_each(open_as_user_denied)
    })?;
    wait_ok(pid, "the unprivileged child")?;
    Ok(Outcome::Pass)
}

/// Waits until the parent set word 0 of `shared`.
fn wait_ready(shared: &SharedWords) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(60);
    while shared.get(0).load(Ordering::Acquire) == 0 {
        if Instant::now() > end {
            return Err("the parent never made its regions".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// What the unprivileged child of `perm_unprivileged_own_regions_only` checks:
/// `other_rmem` and `other_ckpt` are the mmap offsets of the parent's regions.
fn unprivileged_regions(other_rmem: u64, other_ckpt: u64, debugfs: bool) -> Result<(), String> {
    const PAGES: u64 = 16;
    open_as_user_denied(DeviceKind::Journal)?;
    // An rmem region of its own: evictions, write-backs and fetches work.
    let cfg = rmem_config(PAGES, 4, abi::RMEM_POLICY_PTLINE);
    let dev = Device::open(DeviceKind::Rmem).map_err(|e| format!("open rmem: {e}"))?;
    let off = dev
        .rmem_configure(&cfg)
        .map_err(|e| format!("RMEM_CONFIGURE: {e}"))?;
    let map = CkptMap::new(&dev, off, cfg.bytes as usize).map_err(|e| format!("mmap: {e}"))?;
    for p in 0..PAGES {
        map.write_u64(p as usize * PAGE, word(p, 0, 7));
    }
    for p in 0..PAGES {
        let got = map.read_u64(p as usize * PAGE);
        if got != word(p, 0, 7) {
            return Err(format!("rmem page {p}: read {got:#x}"));
        }
    }
    let st = dev
        .rmem_stats(false)
        .map_err(|e| format!("RMEM_STATS: {e}"))?;
    if st.writebacks == 0 || st.faults_sync == 0 {
        return Err(format!("no fetch or write-back counted: {st:?}"));
    }
    expect_errno(
        "RMEM_STATS of the module's totals",
        dev.rmem_stats(true),
        libc::EPERM,
    )?;
    // No mapping reaches outside its own window: not the other region's, not the
    // pages around its own.
    let bytes = cfg.bytes;
    for (what, at, len) in [
        ("the other region's window", other_rmem, PAGE),
        ("the page before its window", off - PAGE as u64, PAGE),
        ("past its window", off + bytes - PAGE as u64, 2 * PAGE),
    ] {
        expect_errno(
            &format!("rmem mmap of {what}"),
            CkptMap::new(&dev, at, len),
            libc::EINVAL,
        )?;
    }
    // A ckpt region of its own: the pages it wrote are the pages collected.
    let (cdev, cmap, coff) = ckpt_region(8)?;
    cdev.ckpt_start().map_err(|e| format!("CKPT_START: {e}"))?;
    cmap.write_u64(PAGE, 1);
    cmap.write_u64(3 * PAGE, 3);
    let (bitmap, dirty) = cdev
        .ckpt_collect(0, 8, true)
        .map_err(|e| format!("CKPT_COLLECT: {e}"))?;
    if bitmap != [0b1010] || dirty != 2 {
        return Err(format!(
            "collected {bitmap:x?} ({dirty} pages), want pages 1 and 3"
        ));
    }
    for (what, at, len) in [
        ("the other region's window", other_ckpt, PAGE),
        ("past its window", coff + 7 * PAGE as u64, 2 * PAGE),
    ] {
        expect_errno(
            &format!("ckpt mmap of {what}"),
            CkptMap::new(&cdev, at, len),
            libc::EINVAL,
        )?;
    }
    if debugfs {
        expect_errno(
            "open /sys/kernel/debug/memkit/rmem",
            std::fs::File::open("/sys/kernel/debug/memkit/rmem"),
            libc::EACCES,
        )?;
    }
    Ok(())
}

/// `perm_unprivileged_own_regions_only`: with the nodes as the shipped udev rules
/// make them, `nobody` cannot open the journal, but makes, maps, writes and collects
/// rmem and ckpt regions of its own; it cannot map another process's region through
/// its own descriptor (the other window, or past its own: `EINVAL`), nor read the
/// module's rmem totals (`EPERM`) or its debugfs file; the other process's data is
/// untouched.
pub fn perm_unprivileged_own_regions_only(_: &crate::Options) -> TestResult {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let _nodes = SavedNodes::save()?;
    apply_rules()?;
    let debugfs = Path::new("/sys/kernel/debug/memkit/rmem").exists();
    // Word 0: the parent's regions are ready; 1, 2: their mmap offsets. The child is
    // forked first so that it inherits neither their descriptors nor their mappings.
    let shared = SharedWords::new(3)?;
    let pid = fork_child(|| {
        become_user(NOBODY, NOBODY, &[])?;
        wait_ready(&shared)?;
        unprivileged_regions(
            shared.get(1).load(Ordering::Relaxed),
            shared.get(2).load(Ordering::Relaxed),
            debugfs,
        )
    })?;
    let parent = || -> Result<_, String> {
        let cfg = rmem_config(8, 8, abi::RMEM_POLICY_NONE);
        let rdev = Device::open(DeviceKind::Rmem).map_err(|e| format!("open rmem: {e}"))?;
        let roff = rdev
            .rmem_configure(&cfg)
            .map_err(|e| format!("RMEM_CONFIGURE: {e}"))?;
        let rmap = CkptMap::new(&rdev, roff, cfg.bytes as usize).map_err(|e| e.to_string())?;
        let (cdev, cmap, coff) = ckpt_region(8)?;
        for p in 0..8 {
            rmap.write_u64(p * PAGE, word(p as u64, 1, 99));
            cmap.write_u64(p * PAGE, word(p as u64, 2, 99));
        }
        shared.get(1).store(roff, Ordering::Relaxed);
        shared.get(2).store(coff, Ordering::Relaxed);
        shared.get(0).store(1, Ordering::Release);
        Ok((rdev, rmap, cdev, cmap))
    };
    let made = parent();
    if made.is_err() {
        shared.get(0).store(1, Ordering::Release);
    }
    let child = wait_ok(pid, "the unprivileged child");
    let (_rdev, rmap, _cdev, cmap) = made?;
    child?;
    for p in 0..8 {
        if rmap.read_u64(p * PAGE) != word(p as u64, 1, 99)
            || cmap.read_u64(p * PAGE) != word(p as u64, 2, 99)
        {
            return Err(format!("the parent's page {p} changed"));
        }
    }
    Ok(Outcome::Pass)
}

/// `perm_journal_admin_needs_cap_sys_admin`: attach and detach need
/// `CAP_SYS_ADMIN` — uid 0 without it gets `EPERM`, and so does `nobody` holding a
/// descriptor root opened (before the path is even looked up); such a descriptor
/// still reads the status and commits transactions. A read-only descriptor, even
/// root's, commits nothing and detaches nothing (`EBADF`). A group given the node
/// (mode 0660) opens it and commits; a user outside the group cannot open it.
pub fn perm_journal_admin_needs_cap_sys_admin(_: &crate::Options) -> TestResult {
    if let Some(skip) = needs_root() {
        return Ok(skip);
    }
    let Some(journal) = crate::race_tests::journal_attached()? else {
        return Ok(Outcome::Skip("no persistent-memory device".into()));
    };
    let pmem = PathBuf::from(std::env::var("MEMKIT_PMEM").unwrap_or_else(|_| "/dev/pmem0".into()));
    let st = journal
        .journal_status()
        .map_err(|e| format!("status: {e}"))?;
    // The last 64 bytes of the data region: no other case uses them.
    let off = st.data_size.checked_sub(64).ok_or("empty data region")?;
    let commit = |dev: &Device, byte: u8| -> Result<(), String> {
        dev.journal_tx(&[(off, &[byte; 64])])
            .map_err(|e| format!("JOURNAL_TX: {e}"))?;
        let mut back = [0u8; 64];
        dev.read_at(&mut back, off)
            .map_err(|e| format!("pread: {e}"))?;
        if back != [byte; 64] {
            return Err(format!("read back {back:x?}, want {byte:#x}"));
        }
        Ok(())
    };
    let admin_denied = |dev: &Device, errno: i32, who: &str| -> Result<(), String> {
        for path in [pmem.as_path(), Path::new("/nonexistent/pmem")] {
            expect_errno(
                &format!("attach {} by {who}", path.display()),
                dev.journal_attach(path, false, 0, 0),
                errno,
            )?;
        }
        expect_errno(&format!("detach by {who}"), dev.journal_detach(), errno)
    };
    let _nodes = SavedNodes::save()?;

    let pid = fork_child(|| {
        drop_capability(CAP_SYS_ADMIN)?;
        let dev = Device::open(DeviceKind::Journal).map_err(|e| format!("open: {e}"))?;
        admin_denied(&dev, libc::EPERM, "uid 0 without CAP_SYS_ADMIN")?;
        commit(&dev, 0xa1)
    })?;
    wait_ok(pid, "uid 0 without CAP_SYS_ADMIN")?;

    let pid = fork_child(|| {
        become_user(NOBODY, NOBODY, &[])?;
        open_as_user_denied(DeviceKind::Journal)?;
        admin_denied(&journal, libc::EPERM, "nobody with root's descriptor")?;
        let st = journal
            .journal_status()
            .map_err(|e| format!("status: {e}"))?;
        if st.attached != 1 {
            return Err(format!("status as nobody: {st:?}"));
        }
        commit(&journal, 0xb2)
    })?;
    wait_ok(pid, "nobody with root's descriptor")?;

    let ro = Device::open_read_only(DeviceKind::Journal).map_err(|e| format!("open: {e}"))?;
    admin_denied(&ro, libc::EBADF, "root with a read-only descriptor")?;
    expect_errno(
        "JOURNAL_TX on a read-only descriptor",
        ro.journal_tx(&[(off, &[0xee; 64])]),
        libc::EBADF,
    )?;
    let mut back = [0u8; 64];
    ro.read_at(&mut back, off)
        .map_err(|e| format!("pread read-only: {e}"))?;
    if back != [0xb2; 64] {
        return Err(format!("after the read-only descriptor's tries: {back:x?}"));
    }

    let node = DeviceKind::Journal.path();
    std::os::unix::fs::chown(&node, Some(0), Some(JOURNAL_GROUP))
        .map_err(|e| format!("chown {}: {e}", node.display()))?;
    std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("chmod {}: {e}", node.display()))?;
    let pid = fork_child(|| {
        become_user(NOBODY, NOBODY, &[JOURNAL_GROUP])?;
        let dev = Device::open(DeviceKind::Journal).map_err(|e| format!("open: {e}"))?;
        admin_denied(&dev, libc::EPERM, "a member of the node's group")?;
        commit(&dev, 0xc3)
    })?;
    wait_ok(pid, "a member of the journal node's group")?;
    let pid = fork_child(|| {
        become_user(NOBODY, NOBODY, &[])?;
        open_as_user_denied(DeviceKind::Journal)
    })?;
    wait_ok(pid, "a user outside the journal node's group")?;

    let st = journal
        .journal_status()
        .map_err(|e| format!("status: {e}"))?;
    if st.attached != 1 {
        return Err("the journal is no longer attached".into());
    }
    Ok(Outcome::Pass)
}

/// `perm_region_ids_reused`: a region's id (its window of mmap offsets) goes back to
/// the pool when its file is closed, so that creating and closing regions in a loop
/// — what any user may do once the nodes are open to all — never runs the ids out:
/// 300 regions of each kind made one after another use a handful of windows.
pub fn perm_region_ids_reused(_: &crate::Options) -> TestResult {
    const ROUNDS: usize = 300;
    for kind in [DeviceKind::Rmem, DeviceKind::Ckpt] {
        let mut offsets = std::collections::BTreeSet::new();
        for i in 0..ROUNDS {
            let dev = Device::open(kind).map_err(|e| format!("open {kind:?}: {e}"))?;
            let off = match kind {
                DeviceKind::Rmem => dev.rmem_configure(&rmem_config(1, 1, abi::RMEM_POLICY_NONE)),
                _ => dev.ckpt_create(PAGE as u64),
            }
            .map_err(|e| format!("{kind:?} region {i}: {e}"))?;
            offsets.insert(off);
        }
        println!("{kind:?}: {ROUNDS} regions in {} windows", offsets.len());
        if offsets.len() > 4 {
            return Err(format!(
                "{kind:?}: {ROUNDS} regions made and closed one after another took {} \
                 windows (ids are not reused)",
                offsets.len()
            ));
        }
    }
    Ok(Outcome::Pass)
}

// ---------------------------------------------------------------------------------
// Memory cgroup charges.

/// Mounts cgroup2 at `/sys/fs/cgroup` if nothing is there, enables the memory
/// controller for its children and makes the group `name` in it.
fn memory_cgroup(name: &str) -> Result<PathBuf, String> {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.controllers").exists() {
        std::fs::create_dir_all(root).map_err(|e| format!("mkdir {root:?}: {e}"))?;
        // SAFETY: NUL-terminated literals; no data argument.
        let rc = unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/sys/fs/cgroup".as_ptr(),
                c"cgroup2".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "mount cgroup2: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let ctl = root.join("cgroup.subtree_control");
    std::fs::write(&ctl, "+memory").map_err(|e| format!("{ctl:?} +memory: {e}"))?;
    let cg = root.join(name);
    if !cg.exists() {
        std::fs::create_dir(&cg).map_err(|e| format!("mkdir {cg:?}: {e}"))?;
    }
    Ok(cg)
}

fn cg_read(cg: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(cg.join(file)).map_err(|e| format!("{:?}: {e}", cg.join(file)))
}

/// Forks a child that joins `cg`, runs `fill` and exits 0, after printing the
/// group's `memory.current`; returns the child's wait status.
fn run_in(cg: &Path, fill: fn() -> Result<(), String>) -> Result<i32, String> {
    let procs = cg.join("cgroup.procs");
    let pid = fork_child(|| {
        std::fs::write(&procs, "0").map_err(|e| format!("{procs:?}: {e}"))?;
        fill()?;
        println!("memory.current {}", cg_read(cg, "memory.current")?.trim());
        Ok(())
    })?;
    crate::race_tests::wait_status(pid)
}

/// A region of 8 MiB, filled, is charged to its user's memory cgroup: with no
/// limit the group's peak is at least 6 MiB; in a group limited to 4 MiB the
/// filling process ends in the group's OOM killer.
fn charged_to_cgroup(name: &str, fill: fn() -> Result<(), String>) -> TestResult {
    let cg = memory_cgroup(name)?;
    let run = || -> TestResult {
        std::fs::write(cg.join("memory.max"), "max").map_err(|e| format!("memory.max: {e}"))?;
        let status = run_in(&cg, fill)?;
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("unlimited group: child status {status:#x}"));
        }
        let peak: u64 = cg_read(&cg, "memory.peak")?.trim().parse().unwrap_or(0);
        println!("unlimited: memory.peak {peak}");
        if peak < 6 << 20 {
            return Err(format!(
                "an 8 MiB region filled: the group's peak is only {peak} bytes (not charged)"
            ));
        }
        let limit: u64 = 4 << 20;
        std::fs::write(cg.join("memory.max"), limit.to_string())
            .map_err(|e| format!("memory.max: {e}"))?;
        let status = run_in(&cg, fill)?;
        let events = cg_read(&cg, "memory.events")?;
        let oom_kills = events
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        println!("limited to {limit}: child status {status:#x}, oom_kill {oom_kills}");
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            return Err(format!(
                "an 8 MiB region filled within a {limit}-byte memory cgroup"
            ));
        }
        if !libc::WIFSIGNALED(status) || oom_kills == 0 {
            return Err(format!(
                "limited group: child status {status:#x}, oom_kill {oom_kills} (expected the \
                 group's OOM killer)"
            ));
        }
        Ok(Outcome::Pass)
    };
    let r = run();
    let _ = std::fs::remove_dir(&cg);
    r
}

/// Pages of the 8 MiB regions the charge cases fill.
const CHARGE_PAGES: u64 = 2048;

/// `rmem_memory_charged_to_cgroup`: the pages an rmem region keeps (and its tables)
/// are charged to the memory cgroup of the task that makes it allocate them, so a
/// region takes no more memory than its user's cgroup allows.
pub fn rmem_memory_charged_to_cgroup(_: &crate::Options) -> TestResult {
    charged_to_cgroup("memkit-rmem-charge", || {
        let cfg = rmem_config(CHARGE_PAGES, CHARGE_PAGES, abi::RMEM_POLICY_NONE);
        let (_dev, map) = crate::race_tests::rmem_region(&cfg)?;
        for p in 0..CHARGE_PAGES as usize {
            map.write_u64(p * PAGE, p as u64);
        }
        Ok(())
    })
}

/// `ckpt_memory_charged_to_cgroup`: the same for a checkpoint region's pages, its
/// tracking tables and the copies it keeps for diffs.
pub fn ckpt_memory_charged_to_cgroup(_: &crate::Options) -> TestResult {
    charged_to_cgroup("memkit-ckpt-charge", || {
        let (_dev, map, _) = ckpt_region(CHARGE_PAGES)?;
        for p in 0..CHARGE_PAGES as usize {
            map.write_u64(p * PAGE, p as u64);
        }
        Ok(())
    })
}
