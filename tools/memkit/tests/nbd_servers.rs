//! The NBD backend of `memkit rmem agent --nbd` against the real NBD servers, run on
//! this host by the test itself: `qemu-nbd` (a file), `nbdkit` with its `memory`
//! plugin, and `nbd-server` (a file), each on a Unix socket, and `qemu-nbd` over TCP
//! on 127.0.0.1. `make setup` installs them (qemu-utils, nbdkit, nbd-server).
//!
//! The test plays the kernel's side of the agent-backed region: a datagram socket
//! pair stands in for the region's file (one datagram a read's batch of requests,
//! one a reply), so every request and reply is checked without the module. The guest
//! selftests run the same backend against the module itself.

use memkit::nbd::Uri;
use memkit::rmem_nbd::{NbdBackend, NbdOptions, NbdReport};
use memkit_core::abi::{self, UapiStruct};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const HDR: usize = abi::RmemMsg::SIZE;

struct Server {
    child: Child,
    /// A server that daemonizes (nbd-server: without -d it serves one client only)
    /// writes its pid here.
    pid_file: Option<PathBuf>,
    dir: PathBuf,
    uri: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = self
            .pid_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
        {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn need(prog: &str) -> String {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = Path::new(dir).join(prog);
        if p.exists() {
            return p.to_string_lossy().into_owned();
        }
    }
    panic!("{prog} is not installed: `make setup` installs the NBD servers the tests run");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts `kind` serving an export of `bytes`; a file-backed one starts filled with
/// 0xab (what a region must never show).
fn start(kind: &str, bytes: u64) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "memkit-nbd-{kind}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("export.img");
    std::fs::write(&file, vec![0xabu8; bytes as usize]).unwrap();
    let sock = dir.join("nbd.sock");
    let s = sock.to_str().unwrap();
    let f = file.to_str().unwrap();
    let (mut cmd, uri) = match kind {
        "qemu-nbd" => {
            let mut c = Command::new(need("qemu-nbd"));
            c.args([
                "-f",
                "raw",
                "-t",
                "--discard=unmap",
                "-x",
                "pages",
                "-k",
                s,
                f,
            ]);
            (c, format!("nbd+unix:///pages?socket={s}"))
        }
        "qemu-nbd-tcp" => {
            let port = free_port();
            let mut c = Command::new(need("qemu-nbd"));
            c.args(["-f", "raw", "-t", "-x", "pages", "-b", "127.0.0.1"])
                .args(["-p", &port.to_string(), f]);
            (c, format!("nbd://127.0.0.1:{port}/pages"))
        }
        "nbdkit" => {
            let mut c = Command::new(need("nbdkit"));
            c.args(["-f", "-U", s, "memory", &bytes.to_string()]);
            (c, format!("nbd+unix:///?socket={s}"))
        }
        "nbd-server" | "nbd-server-tcp" => {
            let conf = dir.join("nbd-server.conf");
            let port = free_port();
            // With unixsock set, nbd-server listens on the socket only.
            let listen = if kind == "nbd-server" {
                format!("unixsock = {s}")
            } else {
                format!("listenaddr = 127.0.0.1\n    port = {port}")
            };
            std::fs::write(
                &conf,
                format!(
                    "[generic]\n    {listen}\n[pages]\n    exportname = {f}\n    trim = true\n"
                ),
            )
            .unwrap();
            let uri = if kind == "nbd-server" {
                format!("nbd+unix:///pages?socket={s}")
            } else {
                format!("nbd://127.0.0.1:{port}/pages")
            };
            // It forks a daemon (its -d serves a single connection, then exits).
            let mut c = Command::new(need("nbd-server"));
            c.args(["-C", conf.to_str().unwrap(), "-p"])
                .arg(dir.join("nbd-server.pid"));
            (c, uri)
        }
        k => panic!("no server {k}"),
    };
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = kind
        .starts_with("nbd-server")
        .then(|| dir.join("nbd-server.pid"));
    let server = Server {
        child,
        pid_file,
        dir,
        uri,
    };
    let parsed = Uri::parse(&server.uri).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while memkit::nbd::Stream::connect(&parsed.target).is_err() {
        assert!(Instant::now() < end, "{kind} did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// The kernel's side of a region served by `backend`.
struct Region {
    k: UnixDatagram,
    backend: Arc<NbdBackend>,
    next_id: u64,
}

impl Region {
    fn new(uri: &str, pages: u64, keep: bool) -> Result<Region, String> {
        let (k, agent) = UnixDatagram::pair().unwrap();
        let opts = NbdOptions { keep, inflight: 16 };
        let backend = NbdBackend::connect(&Uri::parse(uri)?, pages, opts)?;
        backend.start(&agent).unwrap();
        let b = backend.clone();
        std::thread::spawn(move || {
            let _keep_open = agent;
            let _ = b.serve();
        });
        k.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Ok(Region {
            k,
            backend,
            next_id: 1,
        })
    }

    /// Sends requests in batches of 16, then reads as many replies: (page, status,
    /// data) in the order they came.
    fn requests(&mut self, reqs: &[(u32, u64, Option<Vec<u8>>)]) -> Vec<(u64, u32, Vec<u8>)> {
        let mut sent = std::collections::HashMap::new();
        for batch in reqs.chunks(16) {
            let mut d = Vec::new();
            for (kind, page, data) in batch {
                let m = abi::RmemMsg {
                    id: self.next_id,
                    kind: *kind,
                    page: *page,
                    ..Default::default()
                };
                sent.insert(self.next_id, (*kind, *page));
                self.next_id += 1;
                let mut h = [0u8; HDR];
                m.encode(&mut h);
                d.extend_from_slice(&h);
                if let Some(p) = data {
                    d.extend_from_slice(p);
                }
            }
            self.k.send(&d).unwrap();
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; HDR + PAGE + 1];
        for _ in 0..reqs.len() {
            let n = self.k.recv(&mut buf).expect("a reply in 30 s");
            let m = abi::RmemMsg::decode(&buf[..HDR]);
            let (kind, page) = sent.remove(&m.id).expect("a reply to a request sent, once");
            assert_eq!(
                (m.kind, m.page),
                (kind, page),
                "the reply names its request"
            );
            let with_data = kind == abi::RMEM_MSG_FETCH && m.status == 0;
            assert_eq!(n, HDR + if with_data { PAGE } else { 0 });
            out.push((page, m.status, buf[HDR..n].to_vec()));
        }
        out
    }
}

fn tag(page: u64, round: u8) -> Vec<u8> {
    (0..PAGE)
        .map(|i| (page as u8).wrapping_mul(31) ^ (i as u8) ^ round)
        .collect()
}

fn writes(pages: std::ops::Range<u64>, round: u8) -> Vec<(u32, u64, Option<Vec<u8>>)> {
    pages
        .map(|p| (abi::RMEM_MSG_WRITEBACK, p, Some(tag(p, round))))
        .collect()
}

fn fetches(pages: std::ops::Range<u64>) -> Vec<(u32, u64, Option<Vec<u8>>)> {
    pages.map(|p| (abi::RMEM_MSG_FETCH, p, None)).collect()
}

/// Writes, reads back (written pages hold their data, the others read as zeros, not
/// the export's old bytes), overwrites and reads again; the end trims what was
/// written.
fn integrity(kind: &str) -> NbdReport {
    let pages = 256u64;
    let server = start(kind, 4 << 20);
    let mut r = Region::new(&server.uri, pages, false).unwrap();
    for (p, st, _) in r.requests(&writes(0..128, 0)) {
        assert_eq!(st, 0, "{kind}: write-back of page {p}");
    }
    for (p, st, data) in r.requests(&fetches(0..pages)) {
        assert_eq!(st, 0, "{kind}: fetch of page {p}");
        let want = if p < 128 { tag(p, 0) } else { vec![0; PAGE] };
        assert!(data == want, "{kind}: page {p} read back wrong");
    }
    r.requests(&writes(0..32, 1));
    for (p, st, data) in r.requests(&fetches(0..64)) {
        assert_eq!(st, 0);
        assert!(
            data == tag(p, u8::from(p < 32)),
            "{kind}: page {p} after overwrite"
        );
    }
    let rep = r.backend.finish();
    assert!(rep.lost.is_none(), "{kind}: {rep:?}");
    assert_eq!(
        (rep.writebacks, rep.fetches, rep.zero_fills, rep.failed),
        (160, 192, 128, 0),
        "{kind}: {rep:?}"
    );
    assert!(
        rep.peak_inflight > 1,
        "{kind}: one request at a time: {rep:?}"
    );
    let hist: u64 = rep.fetch_latency_us.iter().map(|b| b[1]).sum();
    assert_eq!(hist, rep.fetches, "{kind}: every fetch in the histogram");
    if r.backend.export().can_trim() {
        assert_eq!(rep.trimmed_bytes, 128 * PAGE as u64, "{kind}: {rep:?}");
    }
    if kind != "nbdkit" {
        // The pages past the written ones are the file's own: never touched.
        let img = std::fs::read(server.dir.join("export.img")).unwrap();
        assert!(
            img[128 * PAGE..].iter().all(|&b| b == 0xab),
            "{kind}: wrote past its pages"
        );
    }
    rep
}

#[test]
fn integrity_qemu_nbd() {
    let rep = integrity("qemu-nbd");
    assert!(rep.structured_replies, "qemu-nbd offers structured replies");
}

#[test]
fn integrity_qemu_nbd_tcp() {
    integrity("qemu-nbd-tcp");
}

#[test]
fn integrity_nbdkit_memory() {
    let rep = integrity("nbdkit");
    assert!(rep.structured_replies, "nbdkit offers structured replies");
}

#[test]
fn integrity_nbd_server() {
    integrity("nbd-server");
}

#[test]
fn integrity_nbd_server_tcp() {
    integrity("nbd-server-tcp");
}

#[test]
fn export_smaller_than_the_region_is_refused() {
    let server = start("nbdkit", 64 * PAGE as u64);
    let err = Region::new(&server.uri, 65, false).err().expect("refused");
    assert!(err.contains("the region needs"), "{err}");
    assert!(Region::new(&server.uri, 64, false).is_ok());
}

#[test]
fn unknown_export_is_refused_with_the_server_reason() {
    let server = start("qemu-nbd", 1 << 20);
    let uri = server.uri.replace("/pages?", "/nosuch?");
    let err = Region::new(&uri, 16, false).err().expect("refused");
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn keep_holds_pages_across_agents() {
    let server = start("qemu-nbd", 1 << 20);
    let mut a = Region::new(&server.uri, 64, true).unwrap();
    a.requests(&writes(0..8, 7));
    let rep = a.backend.finish();
    assert!(rep.flushed && rep.trimmed_bytes == 0, "{rep:?}");
    let mut b = Region::new(&server.uri, 64, true).unwrap();
    for (p, st, data) in b.requests(&fetches(0..8)) {
        assert_eq!(st, 0);
        assert!(data == tag(p, 7), "page {p} not kept");
    }
    // Pages never written show the export's bytes with keep (its contents are the
    // region's).
    let got = b.requests(&fetches(8..9));
    assert!(got[0].2.iter().all(|&x| x == 0xab));
}

#[test]
fn lost_connection_fails_fetches_never_zeros() {
    let mut server = start("qemu-nbd", 1 << 20);
    let mut r = Region::new(&server.uri, 64, false).unwrap();
    r.requests(&writes(0..4, 3));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for (p, st, data) in r.requests(&fetches(0..4)) {
        assert_eq!(st, (-libc::EIO) as u32, "page {p} after the server went");
        assert!(data.is_empty());
    }
    let rep = r.backend.finish();
    assert!(rep.lost.is_some(), "{rep:?}");
    assert_eq!(rep.failed, 4, "{rep:?}");
}

#[test]
fn requests_of_a_page_stay_in_order() {
    // A write-back taken back by a fault and evicted again, then a fetch: all three
    // in flight together. qemu-nbd runs requests concurrently; the backend must
    // hold the later ones back so that the fetch sees the second write.
    let server = start("qemu-nbd", 1 << 20);
    let mut r = Region::new(&server.uri, 64, false).unwrap();
    let mut reqs = Vec::new();
    for p in 0..16u64 {
        reqs.push((abi::RMEM_MSG_WRITEBACK, p, Some(tag(p, 1))));
        reqs.push((abi::RMEM_MSG_WRITEBACK, p, Some(tag(p, 2))));
        reqs.push((abi::RMEM_MSG_FETCH, p, None));
    }
    for (p, st, data) in r.requests(&reqs) {
        assert_eq!(st, 0);
        if !data.is_empty() {
            assert!(
                data == tag(p, 2),
                "page {p}: the fetch overtook the last write"
            );
        }
    }
    let rep = r.backend.finish();
    // A page's three requests come in one read of the region: the later two wait
    // (all of them but where a batch of 16 splits a page's requests).
    assert!(rep.held_back >= 16, "{rep:?}");
}
