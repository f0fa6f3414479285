//! The agent backend of remote-memory regions, in userspace: a TCP memory server
//! (`memkit rmem server`) that stores pages, and the agent loop (`memkit rmem agent`)
//! that reads a region's requests from its file, asks the server, and writes the
//! replies back.
//!
//! The server's protocol, version 2, over one TCP connection per agent (all integers
//! little-endian):
//!
//! - the hello, first on every connection: `"MKRM"`, version `u16`, flags `u16`
//!   ([`HELLO_KEEP`]: the namespace outlives the connection), the region's pages
//!   `u64`, the namespace's name length `u16` (1 to [`MAX_NAME`]) and the name (ASCII
//!   letters, digits and `-_.:@`) → `"MKRM"`, the server's version `u16`, status `u8`
//!   (0: attached, 1: refused), flags `u8` (bit 0: the namespace existed), pages
//!   stored in the namespace `u64`, message length `u16` and message (UTF-8: why it
//!   was refused). A refused connection is closed. A connection that does not start
//!   with the magic (a version-1 agent, which sends a request first) is closed
//!   without a reply;
//! - then requests, answered in order: `GET`: `1u8`, page `u64` → status `u8` (0: ok,
//!   then the page's 4096 bytes; 1: page at or past the region's pages); `PUT`: `2u8`,
//!   page `u64`, 4096 bytes → status `u8` (0: stored; 1: out of range; 2: the server
//!   stores its most pages).
//!
//! Each connection works on its namespace's pages only; a page never written reads as
//! zeros. A namespace is attached to one connection at a time. Without
//! [`HELLO_KEEP`] it goes (its pages freed) when its connection closes; with it, it
//! stays and a later connection naming it gets its pages back.

use crate::dev::Device;
use memkit_core::abi::{self, UapiStruct};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const PAGE: usize = 4096;
const OP_GET: u8 = 1;
const OP_PUT: u8 = 2;
const ST_OK: u8 = 0;
const ST_RANGE: u8 = 1;
const ST_FULL: u8 = 2;

/// The protocol version this server and client speak (version 1 had no hello).
pub const PROTOCOL_VERSION: u16 = 2;
/// The first bytes of a hello and of its reply.
pub const MAGIC: [u8; 4] = *b"MKRM";
/// Hello flag: the namespace stays when the connection closes.
pub const HELLO_KEEP: u16 = 1;
/// The longest namespace name, bytes.
pub const MAX_NAME: usize = 64;
/// The hello's fixed part: magic, version, flags, pages, name length.
const HELLO_LEN: usize = 4 + 2 + 2 + 8 + 2;
/// The hello reply's fixed part: magic, version, status, flags, stored, message length.
const REPLY_LEN: usize = 4 + 2 + 1 + 1 + 8 + 2;
const REPLY_REATTACHED: u8 = 1;
/// How long either side waits for the other's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server holds at most.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Pages of a namespace: a hello for a larger region is refused.
    pub pages: u64,
    /// Namespaces, attached or kept.
    pub namespaces: usize,
    /// Pages stored over every namespace: a `PUT` of a new page past it is refused.
    pub stored: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        // A region's largest size (4 GiB), its pages in all, 64 namespaces.
        Limits {
            pages: 1 << 20,
            namespaces: 64,
            stored: 1 << 20,
        }
    }
}

type Pages = HashMap<u64, Box<[u8; PAGE]>>;

struct Entry {
    pages: Arc<Mutex<Pages>>,
    attached: bool,
    keep: bool,
}

/// A memory server's namespaces, shared by its connections.
pub struct Server {
    limits: Limits,
    namespaces: Mutex<HashMap<String, Entry>>,
    stored: AtomicU64,
}

/// Locks `m`, poisoned or not: no section under these locks leaves a half-done
/// change behind.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A namespace attached to a connection; detached when dropped.
struct Attached<'a> {
    server: &'a Server,
    name: String,
    pages: Arc<Mutex<Pages>>,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.server.namespaces);
        let Some(e) = map.get_mut(&self.name) else {
            return;
        };
        e.attached = false;
        if !e.keep {
            let n = lock(&e.pages).len() as u64;
            map.remove(&self.name);
            self.server.stored.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// A namespace name is 1 to [`MAX_NAME`] bytes of ASCII letters, digits and `-_.:@`.
pub fn valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-_.:@".contains(&c))
}

/// Why a connection is closed.
enum Close {
    /// Not our protocol: closed without a reply.
    Silent(String),
    /// Refused with this message in the hello's reply.
    Refuse(String),
    /// The connection failed.
    Io(io::Error),
}

impl From<io::Error> for Close {
    fn from(e: io::Error) -> Close {
        Close::Io(e)
    }
}

impl Server {
    /// A server with no namespace yet.
    pub fn new(limits: Limits) -> Server {
        Server {
            limits,
            namespaces: Mutex::default(),
            stored: AtomicU64::new(0),
        }
    }

    /// Pages stored over every namespace.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Namespaces held, attached or kept.
    pub fn namespaces(&self) -> usize {
        lock(&self.namespaces).len()
    }

    fn attach(&self, name: &str, keep: bool) -> Result<(Attached<'_>, bool, u64), String> {
        let mut map = lock(&self.namespaces);
        let held = map.len();
        let (e, existed) = match map.get_mut(name) {
            Some(e) if e.attached => {
                return Err(format!("namespace {name} is in use by another connection"))
            }
            Some(e) => (e, true),
            None if held >= self.limits.namespaces => {
                return Err(format!(
                    "the server holds its most namespaces ({held}); {name} is not one of them"
                ))
            }
            None => (
                map.entry(name.to_string()).or_insert(Entry {
                    pages: Arc::default(),
                    attached: false,
                    keep,
                }),
                false,
            ),
        };
        e.attached = true;
        e.keep = keep;
        let stored = lock(&e.pages).len() as u64;
        let pages = e.pages.clone();
        Ok((
            Attached {
                server: self,
                name: name.to_string(),
                pages,
            },
            existed,
            stored,
        ))
    }

    /// Takes one page more from the server's limit, if there is one left.
    fn reserve(&self) -> bool {
        let max = self.limits.stored;
        self.stored
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (s < max).then(|| s + 1)
            })
            .is_ok()
    }

    /// Reads and checks the hello; attaches its namespace.
    fn hello(&self, conn: &mut TcpStream) -> Result<(Attached<'_>, u64), Close> {
        let mut magic = [0u8; 4];
        conn.read_exact(&mut magic)?;
        if magic != MAGIC {
            return Err(Close::Silent(format!(
                "no hello (first bytes {magic:02x?}): not a memkit rmem agent, or one \
                 older than protocol version {PROTOCOL_VERSION}"
            )));
        }
        let mut version = [0u8; 2];
        conn.read_exact(&mut version)?;
        let version = u16::from_le_bytes(version);
        if version != PROTOCOL_VERSION {
            return Err(Close::Refuse(format!(
                "protocol version {version} is not supported: this server speaks version \
                 {PROTOCOL_VERSION}"
            )));
        }
        let mut rest = [0u8; HELLO_LEN - 6];
        conn.read_exact(&mut rest)?;
        let flags = u16::from_le_bytes([rest[0], rest[1]]);
        let pages = u64::from_le_bytes(rest[2..10].try_into().expect("8 bytes"));
        let name_len = usize::from(u16::from_le_bytes([rest[10], rest[11]]));
        if flags & !HELLO_KEEP != 0 {
            return Err(Close::Refuse(format!("unknown hello flags {flags:#x}")));
        }
        if name_len == 0 || name_len > MAX_NAME {
            return Err(Close::Refuse(format!(
                "a namespace name of {name_len} bytes: 1 to {MAX_NAME}"
            )));
        }
        let mut name = [0u8; MAX_NAME];
        conn.read_exact(&mut name[..name_len])?;
        let name = &name[..name_len];
        if !valid_name(name) {
            return Err(Close::Refuse(format!(
                "namespace name {:?}: only ASCII letters, digits and -_.:@",
                String::from_utf8_lossy(name)
            )));
        }
        let name = std::str::from_utf8(name).expect("ASCII");
        if pages == 0 || pages > self.limits.pages {
            return Err(Close::Refuse(format!(
                "a region of {pages} pages: this server serves 1 to {} per namespace",
                self.limits.pages
            )));
        }
        let (att, existed, stored) = self
            .attach(name, flags & HELLO_KEEP != 0)
            .map_err(Close::Refuse)?;
        let mut reply = Vec::with_capacity(REPLY_LEN);
        reply.extend_from_slice(&MAGIC);
        reply.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        reply.push(0);
        reply.push(if existed { REPLY_REATTACHED } else { 0 });
        reply.extend_from_slice(&stored.to_le_bytes());
        reply.extend_from_slice(&0u16.to_le_bytes());
        conn.write_all(&reply)?;
        if existed {
            eprintln!(
                "memkit rmem server: {}: namespace {name} reattached, {stored} pages stored",
                peer(conn)
            );
        }
        Ok((att, pages))
    }

    /// Serves one agent's connection until it closes: its hello, then its requests.
    pub fn serve_connection(&self, mut conn: TcpStream) -> io::Result<()> {
        conn.set_nodelay(true)?;
        conn.set_read_timeout(Some(HELLO_TIMEOUT))?;
        let (ns, pages) = match self.hello(&mut conn) {
            Ok(a) => a,
            Err(Close::Io(e)) => return Err(hello_error(e)),
            Err(Close::Silent(why)) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
            Err(Close::Refuse(why)) => {
                refuse(&mut conn, &why);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("refused: {why}"),
                ));
            }
        };
        conn.set_read_timeout(None)?;
        let mut head = [0u8; 9];
        loop {
            match conn.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            let page = u64::from_le_bytes(head[1..9].try_into().expect("8 bytes"));
            let ok = page < pages;
            match head[0] {
                OP_GET => {
                    let mut out = vec![if ok { ST_OK } else { ST_RANGE }];
                    if ok {
                        match lock(&ns.pages).get(&page) {
                            Some(p) => out.extend_from_slice(&p[..]),
                            None => out.resize(1 + PAGE, 0),
                        }
                    }
                    conn.write_all(&out)?;
                }
                OP_PUT => {
                    let mut data = Box::new([0u8; PAGE]);
                    conn.read_exact(&mut data[..])?;
                    let st = if !ok {
                        ST_RANGE
                    } else {
                        let mut map = lock(&ns.pages);
                        if let Some(p) = map.get_mut(&page) {
                            *p = data;
                            ST_OK
                        } else if self.reserve() {
                            map.insert(page, data);
                            ST_OK
                        } else {
                            ST_FULL
                        }
                    };
                    conn.write_all(&[st])?;
                }
                op => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unknown operation {op}"),
                    ))
                }
            }
        }
    }
}

fn peer(conn: &TcpStream) -> String {
    conn.peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string())
}

fn hello_error(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(e.kind(), format!("no whole hello in {HELLO_TIMEOUT:?}"))
        }
        io::ErrorKind::UnexpectedEof => {
            io::Error::new(e.kind(), "the connection closed in its hello")
        }
        _ => e,
    }
}

/// Answers the hello with a refusal and closes, after reading what the client still
/// sends (closing with unread data would reset the connection, which can drop the
/// reply before the client reads it).
fn refuse(conn: &mut TcpStream, why: &str) {
    let msg = &why.as_bytes()[..why.len().min(1024)];
    let mut reply = Vec::with_capacity(REPLY_LEN + msg.len());
    reply.extend_from_slice(&MAGIC);
    reply.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    reply.push(1);
    reply.push(0);
    reply.extend_from_slice(&0u64.to_le_bytes());
    reply.extend_from_slice(&(msg.len() as u16).to_le_bytes());
    reply.extend_from_slice(msg);
    if conn.write_all(&reply).is_err() || conn.shutdown(Shutdown::Write).is_err() {
        return;
    }
    // At most a second and a MiB.
    let end = std::time::Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut left = 1usize << 20;
    while left > 0 {
        let now = std::time::Instant::now();
        if now >= end || conn.set_read_timeout(Some(end - now)).is_err() {
            break;
        }
        match conn.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Accepts agents on `listener` forever, one thread each.
pub fn serve(listener: TcpListener, limits: Limits) -> io::Result<()> {
    let server = Arc::new(Server::new(limits));
    for conn in listener.incoming() {
        let conn = conn?;
        let server = server.clone();
        std::thread::spawn(move || {
            let who = peer(&conn);
            if let Err(e) = server.serve_connection(conn) {
                eprintln!("memkit rmem server: {who}: {e}");
            }
        });
    }
    Ok(())
}

/// What a connection asks for in its hello.
#[derive(Clone, Copy, Debug)]
pub struct Hello<'a> {
    /// The namespace: [`valid_name`].
    pub namespace: &'a str,
    /// The region's pages: requests must be below.
    pub pages: u64,
    /// The namespace outlives the connection, for a later one to reattach.
    pub keep: bool,
}

/// A namespace name no other agent picks by accident: `agent-PID-RANDOM`.
pub fn unique_namespace() -> String {
    let mut r = [0u8; 8];
    // SAFETY: getrandom writes at most `r.len()` bytes into `r`.
    let n = unsafe { libc::getrandom(r.as_mut_ptr().cast(), r.len(), 0) };
    let mut r = u64::from_le_bytes(r);
    if n != 8 {
        // No random bytes: the clock's nanoseconds.
        r = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    format!("agent-{}-{r:016x}", std::process::id())
}

/// A connection to a memory server, attached to a namespace.
pub struct Client {
    conn: TcpStream,
    reattached: bool,
    stored: u64,
}

fn closed_in_hello(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the server closed the connection at the hello: not a memkit rmem server \
                 speaking protocol version {PROTOCOL_VERSION} (an older memkit?)"
            ),
        ),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer to the hello in {HELLO_TIMEOUT:?}: not a memkit rmem server?"),
        ),
        _ => e,
    }
}

impl Client {
    /// Connects to the server at `addr` and attaches `hello`'s namespace: an error
    /// says why the server refused it.
    pub fn connect(addr: &str, hello: &Hello) -> io::Result<Client> {
        if !valid_name(hello.namespace.as_bytes()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "namespace name {:?}: 1 to {MAX_NAME} ASCII letters, digits and -_.:@",
                    hello.namespace
                ),
            ));
        }
        let mut conn = TcpStream::connect(addr)?;
        conn.set_nodelay(true)?;
        let flags = if hello.keep { HELLO_KEEP } else { 0 };
        let mut req = Vec::with_capacity(HELLO_LEN + hello.namespace.len());
        req.extend_from_slice(&MAGIC);
        req.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        req.extend_from_slice(&flags.to_le_bytes());
        req.extend_from_slice(&hello.pages.to_le_bytes());
        req.extend_from_slice(&(hello.namespace.len() as u16).to_le_bytes());
        req.extend_from_slice(hello.namespace.as_bytes());
        conn.set_read_timeout(Some(HELLO_TIMEOUT))?;
        conn.write_all(&req).map_err(closed_in_hello)?;
        let mut r = [0u8; REPLY_LEN];
        conn.read_exact(&mut r).map_err(closed_in_hello)?;
        if r[..4] != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the server answered the hello with {:02x?}: not a memkit rmem server",
                    &r[..4]
                ),
            ));
        }
        let version = u16::from_le_bytes([r[4], r[5]]);
        let stored = u64::from_le_bytes(r[8..16].try_into().expect("8 bytes"));
        let msg_len = usize::from(u16::from_le_bytes([r[16], r[17]]));
        let mut msg = vec![0u8; msg_len];
        conn.read_exact(&mut msg).map_err(closed_in_hello)?;
        let msg = String::from_utf8_lossy(&msg);
        if r[6] != 0 {
            return Err(io::Error::other(format!(
                "the server (protocol version {version}) refused namespace {}: {msg}",
                hello.namespace
            )));
        }
        if version != PROTOCOL_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the server speaks protocol version {version}, this client \
                     {PROTOCOL_VERSION}"
                ),
            ));
        }
        conn.set_read_timeout(None)?;
        Ok(Client {
            conn,
            reattached: r[7] & REPLY_REATTACHED != 0,
            stored,
        })
    }

    /// Whether the namespace existed (kept by an earlier connection).
    pub fn reattached(&self) -> bool {
        self.reattached
    }

    /// Pages the namespace held when it was attached.
    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// The request's status; a refusal is an `InvalidInput` error.
    fn status(&mut self, page: u64) -> io::Result<()> {
        let mut st = [0u8; 1];
        self.conn.read_exact(&mut st)?;
        let why = match st[0] {
            ST_OK => return Ok(()),
            ST_RANGE => "past the region's pages",
            ST_FULL => "the server stores its most pages",
            s => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the server answered with status {s}"),
                ))
            }
        };
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the server refused page {page}: {why}"),
        ))
    }

    /// The page's contents.
    pub fn get(&mut self, page: u64, out: &mut [u8; PAGE]) -> io::Result<()> {
        let mut req = [OP_GET; 9];
        req[1..].copy_from_slice(&page.to_le_bytes());
        self.conn.write_all(&req)?;
        self.status(page)?;
        self.conn.read_exact(out)
    }

    /// Stores the page.
    pub fn put(&mut self, page: u64, data: &[u8; PAGE]) -> io::Result<()> {
        let mut req = Vec::with_capacity(9 + PAGE);
        req.push(OP_PUT);
        req.extend_from_slice(&page.to_le_bytes());
        req.extend_from_slice(data);
        self.conn.write_all(&req)?;
        self.status(page)
    }
}
/// What an agent loop did.
#[derive(Clone, Copy, Debug, Default)]
pub struct AgentCounts {
    /// Fetch requests served.
    pub fetches: u64,
    /// Write-back requests served.
    pub writebacks: u64,
    /// Replies the region refused: late (`ETIME`) or for requests that went.
    pub refused: u64,
    /// Requests the server refused, answered with `-EIO` (the first one is logged).
    pub failed: u64,
}

impl AgentCounts {
    fn server_refused(&mut self, e: &io::Error) -> u32 {
        if self.failed == 0 {
            eprintln!("memkit rmem agent: {e} (answered with EIO; later ones are not logged)");
        }
        self.failed += 1;
        (-libc::EIO) as u32
    }
}

/// Serves the requests of the agent-backed region of `dev` from `server` until a
/// read ends (the region's file went) or fails. A request the server cannot serve is
/// answered with `-EIO`.
pub fn run_agent(dev: &Device, server: &mut Client, counts: &mut AgentCounts) -> io::Result<()> {
    let hdr = abi::RmemMsg::SIZE;
    let mut buf = vec![0u8; 64 * (hdr + PAGE)];
    let mut page = [0u8; PAGE];
    loop {
        // SAFETY: reads into `buf`, which is valid for its length.
        let n = unsafe { libc::read(dev.as_fd().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= hdr {
            let m = abi::RmemMsg::decode(&msgs[..hdr]);
            msgs = &msgs[hdr..];
            let mut reply = abi::RmemMsg { status: 0, ..m };
            let mut out = Vec::with_capacity(hdr + PAGE);
            match m.kind {
                abi::RMEM_MSG_FETCH => {
                    counts.fetches += 1;
                    match server.get(m.page, &mut page) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                            reply.status = counts.server_refused(&e)
                        }
                        Err(e) => return Err(e),
                    }
                }
                abi::RMEM_MSG_WRITEBACK => {
                    counts.writebacks += 1;
                    if msgs.len() < PAGE {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a write-back request without its page",
                        ));
                    }
                    let data = msgs[..PAGE].try_into().expect("a page");
                    match server.put(m.page, data) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                            reply.status = counts.server_refused(&e)
                        }
                        Err(e) => return Err(e),
                    }
                    msgs = &msgs[PAGE..];
                }
                k => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("request of unknown kind {k}"),
                    ))
                }
            }
            out.resize(hdr, 0);
            reply.encode(&mut out[..hdr]);
            if m.kind == abi::RMEM_MSG_FETCH && reply.status == 0 {
                out.extend_from_slice(&page);
            }
            // SAFETY: writes `out`, valid for its length.
            let w = unsafe { libc::write(dev.as_fd().as_raw_fd(), out.as_ptr().cast(), out.len()) };
            if w < 0 {
                // A late reply (ETIME) or one for a request that went (ENOENT):
                // the region refused it and nothing changed.
                counts.refused += 1;
            }
        }
    }
}
