//! `memkit rmem server` on loopback: every region (connection) has its own namespace
//! of pages, a kept namespace is reattached by name, the hello is versioned and
//! checked, and the server's limits hold.

use memkit::rmem_agent::{serve, unique_namespace, Client, Hello, Limits, Server};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

/// A server on 127.0.0.1 with `limits`, its connections served by threads here so that
/// the test sees its counts.
fn start(limits: Limits) -> (String, Arc<Server>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let server = Arc::new(Server::new(limits));
    let s = server.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let s = s.clone();
            std::thread::spawn(move || s.serve_connection(conn.unwrap()));
        }
    });
    (addr, server)
}

fn hello(namespace: &str, pages: u64, keep: bool) -> Hello<'_> {
    Hello {
        namespace,
        pages,
        keep,
    }
}

/// Connects, retrying while the namespace is still attached to a connection the test
/// closed (the server sees the close a moment later).
fn reconnect(addr: &str, h: &Hello) -> Client {
    let t0 = Instant::now();
    loop {
        match Client::connect(addr, h) {
            Ok(c) => return c,
            Err(e) if e.to_string().contains("in use") && t0.elapsed().as_secs() < 10 => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("connect {}: {e}", h.namespace),
        }
    }
}

/// Waits until `f` holds (the server's side of a close is asynchronous).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed().as_secs() < 10, "{what} after 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn get(c: &mut Client, page: u64) -> [u8; PAGE] {
    let mut out = [0u8; PAGE];
    c.get(page, &mut out).unwrap();
    out
}

/// A hello as the wire has it.
fn raw_hello(version: u16, flags: u16, pages: u64, name_len: u16, name: &[u8]) -> Vec<u8> {
    let mut h = b"MKRM".to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(&pages.to_le_bytes());
    h.extend_from_slice(&name_len.to_le_bytes());
    h.extend_from_slice(name);
    h
}

/// Sends `bytes` and reads the hello's reply: status and message.
fn exchange(addr: &str, bytes: &[u8]) -> (u8, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    let mut r = [0u8; 18];
    s.read_exact(&mut r).unwrap();
    assert_eq!(&r[..4], b"MKRM", "reply magic");
    assert_eq!(u16::from_le_bytes([r[4], r[5]]), 2, "server's version");
    let mut msg = vec![0u8; usize::from(u16::from_le_bytes([r[16], r[17]]))];
    s.read_exact(&mut msg).unwrap();
    (r[6], String::from_utf8(msg).unwrap())
}

/// Sends `bytes` and expects the server to close the connection without a reply.
fn closed_silently(addr: &str, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    let mut r = [0u8; 1];
    match s.read(&mut r) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!(
            "after {:02x?}: {other:?}, want the connection closed",
            &bytes[..4]
        ),
    }
}

#[test]
fn two_regions_keep_their_own_pages() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || serve(l, Limits::default()));
    let (na, nb) = (unique_namespace(), unique_namespace());
    assert_ne!(na, nb, "two agents' default namespaces");
    let mut a = Client::connect(&addr, &hello(&na, 16, false)).unwrap();
    let mut b = Client::connect(&addr, &hello(&nb, 16, false)).unwrap();
    a.put(3, &[0xaa; PAGE]).unwrap();
    b.put(3, &[0xbb; PAGE]).unwrap();
    let out = get(&mut a, 3);
    assert_eq!(out[0], 0xaa, "region a reads page 3 as region b wrote it");
    let out = get(&mut b, 3);
    assert_eq!(out[0], 0xbb, "region b reads page 3 as region a wrote it");
    assert_eq!(get(&mut a, 4), [0; PAGE], "a page never written");
}

#[test]
fn same_namespace_reattaches() {
    let (addr, server) = start(Limits::default());
    let kept = hello("vm1.heap", 8, true);
    let mut c = Client::connect(&addr, &kept).unwrap();
    assert!(!c.reattached());
    c.put(5, &[0x55; PAGE]).unwrap();
    // Attached to one connection at a time: a second region naming it is refused.
    let e = Client::connect(&addr, &kept)
        .err()
        .expect("a second attach");
    assert!(
        e.to_string().contains("namespace vm1.heap is in use"),
        "{e}"
    );
    drop(c);
    let mut c = reconnect(&addr, &kept);
    assert!(c.reattached(), "a kept namespace, named again");
    assert_eq!(c.stored(), 1);
    assert_eq!(get(&mut c, 5), [0x55; PAGE], "its page after the reattach");
    drop(c);

    // Not kept: it goes with its connection, pages freed.
    let gone = hello("scratch", 8, false);
    let mut c = Client::connect(&addr, &gone).unwrap();
    c.put(1, &[0x11; PAGE]).unwrap();
    assert_eq!(server.stored(), 2);
    drop(c);
    eventually("the namespace dropped", || {
        server.stored() == 1 && server.namespaces() == 1
    });
    let mut c = reconnect(&addr, &gone);
    assert!(!c.reattached(), "a namespace not kept");
    assert_eq!(get(&mut c, 1), [0; PAGE]);
}

#[test]
fn version_mismatch_refused() {
    let (addr, _server) = start(Limits::default());
    for v in [1u16, 3, u16::MAX] {
        let (st, msg) = exchange(&addr, &raw_hello(v, 0, 8, 1, b"a"));
        assert_eq!(st, 1, "version {v}");
        assert!(
            msg.contains(&format!("protocol version {v} is not supported"))
                && msg.contains("speaks version 2"),
            "{msg}"
        );
    }
    // A version-1 agent sends a request first: the server closes, the agent's read
    // ends instead of waiting.
    let mut get = vec![1u8];
    get.extend_from_slice(&0u64.to_le_bytes());
    closed_silently(&addr, &get);
    let mut put = vec![2u8];
    put.extend_from_slice(&0u64.to_le_bytes());
    put.extend_from_slice(&[7; PAGE]);
    closed_silently(&addr, &put);

    // A version-1 server: reads a 9-byte request, finds an unknown operation, closes.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let old = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let mut conn = conn.unwrap();
            let mut head = [0u8; 9];
            let _ = conn.read_exact(&mut head);
        }
    });
    let e = Client::connect(&old, &hello("a", 8, false))
        .err()
        .expect("a version-1 server");
    assert!(
        e.to_string()
            .contains("not a memkit rmem server speaking protocol version 2"),
        "{e}"
    );
}

#[test]
fn malformed_hello_refused() {
    let (addr, server) = start(Limits {
        pages: 64,
        ..Limits::default()
    });
    let long = [b'x'; 65];
    let cases: [(&str, Vec<u8>, &str); 7] = [
        ("empty name", raw_hello(2, 0, 8, 0, b""), "name of 0 bytes"),
        (
            "long name",
            raw_hello(2, 0, 8, 65, &long),
            "name of 65 bytes",
        ),
        (
            "huge name length",
            raw_hello(2, 0, 8, u16::MAX, b""),
            "name of 65535 bytes",
        ),
        (
            "bad characters",
            raw_hello(2, 0, 8, 4, b"../x"),
            "only ASCII letters",
        ),
        (
            "unknown flags",
            raw_hello(2, 6, 8, 1, b"a"),
            "unknown hello flags",
        ),
        ("no pages", raw_hello(2, 0, 0, 1, b"a"), "region of 0 pages"),
        (
            "too many pages",
            raw_hello(2, 0, 65, 1, b"a"),
            "region of 65 pages: this server serves 1 to 64",
        ),
    ];
    for (what, bytes, want) in cases {
        let (st, msg) = exchange(&addr, &bytes);
        assert_eq!(st, 1, "{what}: {msg}");
        assert!(msg.contains(want), "{what}: {msg:?}, want {want:?}");
    }
    // Not the magic: closed without a reply.
    let mut bad = raw_hello(2, 0, 8, 1, b"a");
    bad[..4].copy_from_slice(b"GET ");
    closed_silently(&addr, &bad);
    // Cut short: closed when the client's side ends.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&raw_hello(2, 0, 8, 10, b"abc")).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(s.read(&mut [0u8; 1]).unwrap(), 0, "a hello cut short");
    // The client refuses a bad name before sending it.
    let e = Client::connect(&addr, &hello("a b", 8, false))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // Nothing was attached, and the server still serves.
    assert_eq!(server.namespaces(), 0);
    let mut c = Client::connect(&addr, &hello("ok", 8, false)).unwrap();
    c.put(7, &[1; PAGE]).unwrap();
    assert_eq!(get(&mut c, 7), [1; PAGE]);
    // The refusal as the client reports it.
    let e = Client::connect(&addr, &hello("big", 65, false))
        .err()
        .expect("a region past the limit");
    assert!(
        e.to_string()
            .contains("refused namespace big: a region of 65 pages"),
        "{e}"
    );
}

#[test]
fn limits_enforced() {
    let (addr, server) = start(Limits {
        pages: 8,
        namespaces: 2,
        stored: 3,
    });
    let mut a = Client::connect(&addr, &hello("a", 8, true)).unwrap();
    let mut b = Client::connect(&addr, &hello("b", 4, false)).unwrap();
    let e = Client::connect(&addr, &hello("c", 8, false))
        .err()
        .expect("a third namespace");
    assert!(
        e.to_string()
            .contains("the server holds its most namespaces (2)"),
        "{e}"
    );
    // Pages at or past the region's are refused, both ways.
    let mut out = [0u8; PAGE];
    for (which, past) in [(0, 8u64), (1, 4), (0, u64::MAX)] {
        let c = if which == 0 { &mut a } else { &mut b };
        let e = c.get(past, &mut out).expect_err("a page past the region");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("past the region's pages"), "{e}");
        let e = c.put(past, &[9; PAGE]).expect_err("a page past the region");
        assert!(e.to_string().contains("past the region's pages"), "{e}");
    }
    // Three pages stored over every namespace.
    a.put(0, &[1; PAGE]).unwrap();
    a.put(1, &[2; PAGE]).unwrap();
    b.put(0, &[3; PAGE]).unwrap();
    let e = b.put(1, &[4; PAGE]).expect_err("a fourth page");
    assert!(
        e.to_string().contains("the server stores its most pages"),
        "{e}"
    );
    let e = a.put(2, &[4; PAGE]).expect_err("a fourth page");
    assert!(
        e.to_string().contains("the server stores its most pages"),
        "{e}"
    );
    assert_eq!(server.stored(), 3);
    // A page stored already can still change, and every refusal left the connection
    // in step.
    a.put(1, &[5; PAGE]).unwrap();
    assert_eq!(get(&mut a, 1), [5; PAGE]);
    assert_eq!(get(&mut a, 2), [0; PAGE]);
    assert_eq!(get(&mut b, 0), [3; PAGE]);
    // b's namespace goes with its connection: its page and its slot come back.
    drop(b);
    eventually("b's namespace dropped", || server.stored() == 2);
    let mut c = reconnect(&addr, &hello("c", 8, false));
    c.put(7, &[7; PAGE]).unwrap();
    assert_eq!(get(&mut c, 7), [7; PAGE]);
    assert_eq!(server.stored(), 3);
    assert_eq!(server.namespaces(), 2);
}

/// `memkit rmem server`, the binary: its first line says where it listens and that
/// loopback only reaches it; its options are the server's limits.
#[test]
fn server_cli_says_loopback() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_memkit");
    let first_line = |args: &[&str]| {
        let mut c = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(c.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (c, line)
    };
    let (mut c, line) = first_line(&["rmem", "server", "--listen", "127.0.0.1:0"]);
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(
        line.starts_with("listening on 127.0.0.1:")
            && line.contains("loopback only: reachable from this machine only"),
        "{line:?}"
    );
    let (mut c, line) = first_line(&[
        "--json",
        "rmem",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--pages",
        "16",
        "--max-namespaces",
        "1",
    ]);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let res = std::panic::catch_unwind(|| {
        assert_eq!(v["loopback"], true, "{v}");
        assert_eq!(v["protocol"], 2, "{v}");
        let addr = v["listen"].as_str().unwrap();
        let e = Client::connect(addr, &hello("a", 17, false))
            .err()
            .expect("17 pages");
        assert!(e.to_string().contains("serves 1 to 16"), "{e}");
        let _a = Client::connect(addr, &hello("a", 16, false)).unwrap();
        let e = Client::connect(addr, &hello("b", 16, false))
            .err()
            .expect("a second namespace");
        assert!(e.to_string().contains("most namespaces (1)"), "{e}");
    });
    c.kill().unwrap();
    c.wait().unwrap();
    res.unwrap();
}

/// `memkit rmem agent --namespace` with a name the protocol cannot carry fails before
/// anything starts.
#[test]
fn agent_cli_refuses_bad_namespace() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memkit"))
        .args([
            "rmem",
            "agent",
            "--server",
            "127.0.0.1:1",
            "--namespace",
            "vm 1",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("namespace name \"vm 1\""), "{err}");
}
