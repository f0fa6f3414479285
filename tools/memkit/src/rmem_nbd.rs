//! The NBD backend of agent-backed regions (`memkit rmem agent --nbd URI`): page `p`
//! of the region is bytes `p × 4096 ..` of the export; a fetch is an `NBD_CMD_READ`,
//! a write-back an `NBD_CMD_WRITE`.
//!
//! Many requests are in flight on the one connection: a sender (the thread that
//! calls [`NbdBackend::serve`]) reads the region's requests and writes NBD requests,
//! each with a cookie of its own; a receiver thread reads the replies in whatever
//! order the server sends them, matches them by cookie and answers the region. A
//! server's error answers that request with `-EIO` (a failed fetch is a `SIGBUS` for
//! the faulting process; a failed write-back leaves the page local). A lost
//! connection is reported once on stderr and answers every request in flight and
//! every later one with `-EIO`: nothing is ever served as zeros that the server did
//! not say were zeros.
//!
//! Contents: unless `keep`, the region starts zeroed like every memkit region: a
//! page this agent never wrote back is answered with zeros without asking the server
//! (the export's old bytes never show through), and when the agent ends the pages it
//! wrote are trimmed (`NBD_CMD_TRIM`, when the export supports it). With `keep`, the
//! export holds the region's pages across agents: every fetch reads the export, and
//! the end is an `NBD_CMD_FLUSH`.

use crate::nbd::{self, ChunkData, Export, Reply, Stream, Uri};
use memkit_core::abi::{self, UapiStruct};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
/// Latency histogram buckets: bucket `i` counts fetches of less than 2^i µs; the last
/// one the rest.
const BUCKETS: usize = 24;
/// How long the end waits for the trim or flush to be answered.
const END_TIMEOUT: Duration = Duration::from_secs(30);

/// How the backend behaves.
#[derive(Clone, Copy, Debug)]
pub struct NbdOptions {
    /// The export keeps the region's pages across agents (see the module's comment).
    pub keep: bool,
    /// Most NBD requests in flight.
    pub inflight: usize,
}

/// What the backend did: `memkit rmem agent --report`'s JSON.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NbdReport {
    /// The export.
    pub uri: String,
    /// Its size.
    pub export_bytes: u64,
    /// Structured replies were negotiated.
    pub structured_replies: bool,
    /// Fetches sent to the server.
    pub fetches: u64,
    /// Fetches of pages never written, answered with zeros by the agent.
    pub zero_fills: u64,
    /// Write-backs sent to the server.
    pub writebacks: u64,
    /// Requests answered with `-EIO`: the server refused them or the connection was lost.
    pub failed: u64,
    /// Replies the region refused (late, or for a request that went).
    pub refused: u64,
    /// Most NBD requests in flight at once.
    pub peak_inflight: usize,
    /// Requests held back until an earlier request of their page was answered.
    pub held_back: u64,
    /// Fetch latency, request sent to reply read: `[bound_us, count]` for each
    /// non-empty bucket, counting fetches under `bound_us` (the last bound is the
    /// largest latency seen).
    pub fetch_latency_us: Vec<[u64; 2]>,
    /// The bucket bound the median fetch falls under.
    pub fetch_latency_p50_us: u64,
    /// The bucket bound the 99th-percentile fetch falls under.
    pub fetch_latency_p99_us: u64,
    /// Bytes trimmed at the end.
    pub trimmed_bytes: u64,
    /// The end's flush (`keep`) was answered.
    pub flushed: bool,
    /// Why the connection ended early, if it did.
    pub lost: Option<String>,
}

enum What {
    Fetch(abi::RmemMsg, Box<[u8; PAGE]>, u32),
    WriteBack(abi::RmemMsg),
    /// The end's trim or flush.
    End,
}

/// A request to send.
struct Req {
    what: What,
    cmd: u16,
    offset: u64,
    len: u32,
    /// The region page it concerns (not the end's trim or flush).
    page: Option<u64>,
}

struct Pending {
    what: What,
    offset: u64,
    len: u32,
    page: Option<u64>,
    sent: Instant,
    error: Option<String>,
}

/// A request held back behind an earlier one of its page, with a write's data.
struct Deferred {
    req: Req,
    data: Vec<u8>,
}

struct State {
    pending: HashMap<u64, Pending>,
    /// Pages with a request in flight, and the requests of the page that wait for it:
    /// the server may complete requests in any order, the region needs a page's in
    /// order (a write-back taken back by a fault and evicted again must not be
    /// overtaken by the older one; a fetch must see the last write).
    busy: HashMap<u64, VecDeque<Deferred>>,
    next_cookie: u64,
    lost: Option<String>,
    /// The agent sent `NBD_CMD_DISC`: the server closing the connection is the end.
    closing: bool,
    /// Pages written back by this agent (bit per page).
    written: Vec<u64>,
    report: NbdReport,
    hist: [u64; BUCKETS],
    max_latency_us: u64,
}

/// A region served from an NBD export.
pub struct NbdBackend {
    uri: Uri,
    export: Export,
    opts: NbdOptions,
    pages: u64,
    /// The connection, for the threads' handles and for shutting it down.
    conn: Stream,
    /// Requests for the writer thread: whoever sends never blocks on the socket (a
    /// receiver blocked writing while the server blocks writing its replies to it
    /// would be a deadlock).
    to_writer: Mutex<mpsc::Sender<Vec<u8>>>,
    writer_queue: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    state: Mutex<State>,
    changed: Condvar,
    /// The agent-backed region's file, from [`NbdBackend::start`].
    region: OnceLock<File>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn eio() -> u32 {
    (-libc::EIO) as u32
}

impl NbdBackend {
    /// Connects to `uri` and checks that its export can hold `pages` pages and be
    /// written.
    pub fn connect(uri: &Uri, pages: u64, opts: NbdOptions) -> Result<Arc<NbdBackend>, String> {
        let mut s = Stream::connect(&uri.target).map_err(|e| format!("{uri}: connect: {e}"))?;
        s.set_read_timeout(Some(nbd::HANDSHAKE_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let export = nbd::connect(&mut s, &uri.export).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                format!(
                    "{uri}: no answer in {:?}: not an NBD server?",
                    nbd::HANDSHAKE_TIMEOUT
                )
            } else {
                format!("{uri}: {e}")
            }
        })?;
        s.set_read_timeout(None).map_err(|e| e.to_string())?;
        let need = pages.checked_mul(PAGE as u64).ok_or("region too large")?;
        if export.size < need {
            return Err(format!(
                "{uri}: the export has {} bytes, the region needs {need} ({pages} pages): \
                 export a larger file or memory (qemu-nbd serves a file as large as it is; \
                 nbdkit memory takes a size)",
                export.size
            ));
        }
        if export.read_only() {
            return Err(format!(
                "{uri}: the export is read-only; write-backs need to write"
            ));
        }
        if export.min_block > PAGE as u32 || !(export.min_block.is_power_of_two()) {
            return Err(format!(
                "{uri}: the export's minimum block size is {} bytes; pages are {PAGE}",
                export.min_block
            ));
        }
        let words = usize::try_from(pages.div_ceil(64)).map_err(|_| "region too large")?;
        let (to_writer, writer_queue) = mpsc::channel();
        Ok(Arc::new(NbdBackend {
            uri: uri.clone(),
            export,
            opts: NbdOptions {
                inflight: opts.inflight.max(1),
                ..opts
            },
            pages,
            conn: s,
            to_writer: Mutex::new(to_writer),
            writer_queue: Mutex::new(Some(writer_queue)),
            state: Mutex::new(State {
                pending: HashMap::new(),
                busy: HashMap::new(),
                next_cookie: 1,
                lost: None,
                closing: false,
                written: vec![0; words],
                report: NbdReport {
                    uri: uri.to_string(),
                    export_bytes: export.size,
                    structured_replies: export.structured,
                    ..NbdReport::default()
                },
                hist: [0; BUCKETS],
                max_latency_us: 0,
            }),
            changed: Condvar::new(),
            region: OnceLock::new(),
        }))
    }

    /// Where the export is.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The export the handshake ended on.
    pub fn export(&self) -> Export {
        self.export
    }

    /// Serves `region` (the agent-backed region's file): starts the receiver and
    /// writer threads, once; then [`NbdBackend::serve`] reads its requests.
    pub fn start(self: &Arc<Self>, region: &impl AsFd) -> io::Result<()> {
        let queue = lock(&self.writer_queue)
            .take()
            .ok_or_else(|| io::Error::other("the NBD backend is started already"))?;
        let file = File::from(region.as_fd().try_clone_to_owned()?);
        let _ = self.region.set(file);
        let (reader, mut writer) = (self.conn.try_clone()?, self.conn.try_clone()?);
        let me = Arc::clone(self);
        std::thread::spawn(move || me.receive(reader));
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            for buf in queue {
                if let Err(e) = writer.write_all(&buf) {
                    me.lose(format!("sending requests: {e}"));
                    break;
                }
            }
        });
        Ok(())
    }

    /// One reply to the region; a refusal (late, or the request went) is counted.
    fn answer(&self, st: &mut State, msg: &abi::RmemMsg, status: u32, data: Option<&[u8]>) {
        let mut out = [0u8; abi::RmemMsg::SIZE + PAGE];
        let reply = abi::RmemMsg { status, ..*msg };
        reply.encode(&mut out[..abi::RmemMsg::SIZE]);
        let mut len = abi::RmemMsg::SIZE;
        if let (0, Some(d)) = (status, data) {
            out[len..len + PAGE].copy_from_slice(d);
            len += PAGE;
        }
        if status != 0 {
            st.report.failed += 1;
        }
        // One write(2) is one reply.
        let Some(mut region) = self.region.get() else {
            return;
        };
        if region.write(&out[..len]).is_err() {
            st.report.refused += 1;
        }
    }

    /// The connection is gone: said once, and everything in flight fails.
    fn lose(&self, why: String) {
        let mut st = lock(&self.state);
        if st.closing && st.pending.is_empty() {
            return;
        }
        if st.lost.is_none() {
            eprintln!(
                "memkit rmem agent: {}: {why}; requests in flight and later fail with EIO \
                 (SIGBUS for a fetch)",
                self.uri
            );
            st.report.lost = Some(why.clone());
            st.lost = Some(why);
        }
        let pending: Vec<What> = st.pending.drain().map(|(_, p)| p.what).collect();
        let deferred: Vec<What> = st
            .busy
            .drain()
            .flat_map(|(_, q)| q.into_iter().map(|d| d.req.what))
            .collect();
        for what in pending.into_iter().chain(deferred) {
            if let What::Fetch(m, ..) | What::WriteBack(m) = what {
                self.answer(&mut st, &m, eio(), None);
            }
        }
        drop(st);
        self.changed.notify_all();
        self.conn.shutdown();
    }

    /// The receiver: replies, matched by cookie, until the connection ends.
    fn receive(&self, mut r: Stream) {
        let why = loop {
            let reply = match nbd::read_reply(&mut r) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    break "the server closed the connection".to_string()
                }
                Err(e) => break format!("reading a reply: {e}"),
            };
            let (cookie, done) = match reply {
                Reply::Simple { cookie, error } => {
                    // A successful read's data follows the header.
                    let reading = {
                        let st = lock(&self.state);
                        match st.pending.get(&cookie) {
                            None => break format!("a reply for unknown cookie {cookie}"),
                            Some(p) => matches!(p.what, What::Fetch(..)),
                        }
                    };
                    let mut data = None;
                    if reading && error == 0 {
                        let mut page = Box::new([0u8; PAGE]);
                        if let Err(e) = r.read_exact(&mut page[..]) {
                            break format!("reading a page: {e}");
                        }
                        data = Some(page);
                    }
                    let mut st = lock(&self.state);
                    let Some(p) = st.pending.get_mut(&cookie) else {
                        break format!("a reply for unknown cookie {cookie}");
                    };
                    if error != 0 {
                        p.error = Some(format!("error {error}"));
                    } else if let (What::Fetch(_, page, covered), Some(d)) = (&mut p.what, data) {
                        *page = d;
                        *covered = PAGE as u32;
                    }
                    (cookie, true)
                }
                Reply::Chunk {
                    cookie,
                    flags,
                    kind,
                    payload,
                } => {
                    let mut st = lock(&self.state);
                    let Some(p) = st.pending.get_mut(&cookie) else {
                        break format!("a reply chunk for unknown cookie {cookie}");
                    };
                    match nbd::chunk_data(kind, &payload, p.offset, p.len) {
                        Err(e) => break format!("{e}"),
                        Ok(ChunkData::Error { errno, message }) => {
                            p.error = Some(format!("errno {errno}: {message}"))
                        }
                        Ok(ChunkData::Data { at, bytes }) => match &mut p.what {
                            What::Fetch(_, page, covered) => {
                                page[at..at + bytes.len()].copy_from_slice(bytes);
                                *covered += bytes.len() as u32;
                            }
                            _ => break "read data in the reply to a write".to_string(),
                        },
                        Ok(ChunkData::Hole { at, len }) => match &mut p.what {
                            What::Fetch(_, page, covered) => {
                                page[at..at + len].fill(0);
                                *covered += len as u32;
                            }
                            _ => break "a hole in the reply to a write".to_string(),
                        },
                        Ok(ChunkData::None) => {}
                    }
                    (cookie, flags & nbd::REPLY_FLAG_DONE != 0)
                }
            };
            if done {
                self.complete(cookie);
            }
        };
        self.lose(why);
    }

    /// A request's last reply arrived: the region is answered.
    fn complete(&self, cookie: u64) {
        let mut st = lock(&self.state);
        let Some(p) = st.pending.remove(&cookie) else {
            return;
        };
        // The page's next request goes now (it takes this one's place in flight).
        let mut next = Vec::new();
        if let Some(page) = p.page {
            match st.busy.get_mut(&page).and_then(VecDeque::pop_front) {
                Some(d) => {
                    let cookie = Self::track(&mut st);
                    nbd::encode_request(
                        &mut next,
                        d.req.cmd,
                        cookie,
                        d.req.offset,
                        d.req.len,
                        &d.data,
                    );
                    st.pending.insert(cookie, Self::pending(d.req));
                }
                None => {
                    st.busy.remove(&page);
                }
            }
        }
        match p.what {
            What::Fetch(m, page, covered) => {
                let us = u64::try_from(p.sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                let b = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
                st.hist[b] += 1;
                st.max_latency_us = st.max_latency_us.max(us);
                let error = p.error.or_else(|| {
                    (covered != PAGE as u32)
                        .then(|| format!("the reply covered {covered} of {PAGE} bytes"))
                });
                match error {
                    None => self.answer(&mut st, &m, 0, Some(&page[..])),
                    Some(why) => {
                        if st.report.failed == 0 {
                            eprintln!(
                                "memkit rmem agent: {}: read of page {} failed: {why} \
                                 (answered with EIO; later failures are not logged)",
                                self.uri, m.page
                            );
                        }
                        self.answer(&mut st, &m, eio(), None)
                    }
                }
            }
            What::WriteBack(m) => match p.error {
                None => self.answer(&mut st, &m, 0, None),
                Some(why) => {
                    if st.report.failed == 0 {
                        eprintln!(
                            "memkit rmem agent: {}: write of page {} failed: {why} \
                             (the page stays local; later failures are not logged)",
                            self.uri, m.page
                        );
                    }
                    self.answer(&mut st, &m, eio(), None)
                }
            },
            What::End => {
                if let Some(why) = p.error {
                    eprintln!("memkit rmem agent: {}: at the end: {why}", self.uri);
                }
            }
        }
        drop(st);
        self.send(&mut next);
        self.changed.notify_all();
    }

    /// A new cookie, counted in flight.
    fn track(st: &mut State) -> u64 {
        let cookie = st.next_cookie;
        st.next_cookie += 1;
        st.report.peak_inflight = st.report.peak_inflight.max(st.pending.len() + 1);
        cookie
    }

    fn pending(req: Req) -> Pending {
        Pending {
            what: req.what,
            offset: req.offset,
            len: req.len,
            page: req.page,
            sent: Instant::now(),
            error: None,
        }
    }

    /// Hands `out` (requests already registered) to the writer thread. (Once the
    /// connection is lost the writer is gone; what it did not send was failed.)
    fn send(&self, out: &mut Vec<u8>) {
        if !out.is_empty() {
            let _ = lock(&self.to_writer).send(std::mem::take(out));
        }
    }

    /// Queues a request into `out` (with a write's `data`): waits for room in flight
    /// (sending what `out` holds first); holds it back while its page has a request
    /// in flight; answers it with `-EIO` once the connection is lost (`false`).
    fn submit(&self, req: Req, data: &[u8], out: &mut Vec<u8>) -> bool {
        let mut st = lock(&self.state);
        while st.lost.is_none() && st.pending.len() >= self.opts.inflight {
            if !out.is_empty() {
                drop(st);
                self.send(out);
                st = lock(&self.state);
                continue;
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.lost.is_some() {
            if let What::Fetch(m, ..) | What::WriteBack(m) = req.what {
                self.answer(&mut st, &m, eio(), None);
            }
            return false;
        }
        if let Some(page) = req.page {
            if let Some(q) = st.busy.get_mut(&page) {
                q.push_back(Deferred {
                    req,
                    data: data.to_vec(),
                });
                st.report.held_back += 1;
                return true;
            }
            st.busy.insert(page, VecDeque::new());
        }
        let cookie = Self::track(&mut st);
        nbd::encode_request(out, req.cmd, cookie, req.offset, req.len, data);
        st.pending.insert(cookie, Self::pending(req));
        true
    }

    /// Serves the region's requests until its file ends (read returns 0) or fails.
    pub fn serve(&self) -> io::Result<()> {
        let hdr = abi::RmemMsg::SIZE;
        let mut buf = vec![0u8; 64 * (hdr + PAGE)];
        let mut out = Vec::with_capacity(64 * (nbd::REQUEST_HEADER + PAGE));
        loop {
            let n = match self.region.get().map(|mut r| r.read(&mut buf)) {
                None => return Err(io::Error::other("the NBD backend was not started")),
                Some(r) => r,
            };
            let n = match n {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut msgs = &buf[..n];
            while msgs.len() >= hdr {
                let m = abi::RmemMsg::decode(&msgs[..hdr]);
                msgs = &msgs[hdr..];
                let offset = m
                    .page
                    .checked_mul(PAGE as u64)
                    .filter(|_| m.page < self.pages)
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("a request for page {} of {}", m.page, self.pages),
                        )
                    })?;
                let (word, bit) = ((m.page / 64) as usize, 1u64 << (m.page % 64));
                match m.kind {
                    abi::RMEM_MSG_FETCH => {
                        let mut st = lock(&self.state);
                        if !self.opts.keep && st.written[word] & bit == 0 {
                            st.report.zero_fills += 1;
                            self.answer(&mut st, &m, 0, Some(&[0u8; PAGE]));
                            continue;
                        }
                        st.report.fetches += 1;
                        drop(st);
                        let req = Req {
                            what: What::Fetch(m, Box::new([0u8; PAGE]), 0),
                            cmd: nbd::CMD_READ,
                            offset,
                            len: PAGE as u32,
                            page: Some(m.page),
                        };
                        self.submit(req, &[], &mut out);
                    }
                    abi::RMEM_MSG_WRITEBACK => {
                        let data = msgs.get(..PAGE).ok_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                "a write-back request without its page",
                            )
                        })?;
                        msgs = &msgs[PAGE..];
                        {
                            let mut st = lock(&self.state);
                            st.report.writebacks += 1;
                            st.written[word] |= bit;
                        }
                        let req = Req {
                            what: What::WriteBack(m),
                            cmd: nbd::CMD_WRITE,
                            offset,
                            len: PAGE as u32,
                            page: Some(m.page),
                        };
                        self.submit(req, data, &mut out);
                    }
                    k => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("request of unknown kind {k}"),
                        ))
                    }
                }
            }
            self.send(&mut out);
        }
    }

    /// The end, once the program is gone: waits for the requests in flight, trims
    /// the pages written (or flushes, with `keep`), disconnects, and reports.
    pub fn finish(&self) -> NbdReport {
        let deadline = Instant::now() + END_TIMEOUT;
        let wait_idle = || {
            let mut st = lock(&self.state);
            while st.lost.is_none() && !st.pending.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = self
                    .changed
                    .wait_timeout(st, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        };
        wait_idle();
        let mut out = Vec::new();
        let (mut trimmed, mut flushed) = (0u64, false);
        if self.opts.keep {
            if self.export.can_flush() {
                let req = Req {
                    what: What::End,
                    cmd: nbd::CMD_FLUSH,
                    offset: 0,
                    len: 0,
                    page: None,
                };
                flushed = self.submit(req, &[], &mut out);
            }
        } else if self.export.can_trim() {
            // Runs of written pages, at most 1 GiB a request.
            let written = lock(&self.state).written.clone();
            let is_set = |p: u64| written[(p / 64) as usize] & (1 << (p % 64)) != 0;
            let max_run = (1u64 << 30) / PAGE as u64;
            let mut p = 0;
            while p < self.pages {
                if !is_set(p) {
                    p += 1;
                    continue;
                }
                let start = p;
                while p < self.pages && is_set(p) && p - start < max_run {
                    p += 1;
                }
                let (off, len) = (start * PAGE as u64, ((p - start) * PAGE as u64) as u32);
                let req = Req {
                    what: What::End,
                    cmd: nbd::CMD_TRIM,
                    offset: off,
                    len,
                    page: None,
                };
                if !self.submit(req, &[], &mut out) {
                    break;
                }
                trimmed += u64::from(len);
            }
        }
        self.send(&mut out);
        wait_idle();
        lock(&self.state).closing = true;
        let mut disc = Vec::new();
        nbd::encode_request(&mut disc, nbd::CMD_DISC, 0, 0, 0, &[]);
        self.send(&mut disc);
        let mut st = lock(&self.state);
        st.report.trimmed_bytes = trimmed;
        st.report.flushed = flushed && st.lost.is_none();
        let mut total = 0u64;
        let all: u64 = st.hist.iter().sum();
        let (mut p50, mut p99) = (None, None);
        let mut rows = Vec::new();
        for (i, &n) in st.hist.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let bound = if i == BUCKETS - 1 {
                st.max_latency_us
            } else {
                1u64 << i
            };
            total += n;
            if p50.is_none() && total * 2 >= all {
                p50 = Some(bound);
            }
            if p99.is_none() && total * 100 >= all * 99 {
                p99 = Some(bound);
            }
            rows.push([bound, n]);
        }
        st.report.fetch_latency_us = rows;
        st.report.fetch_latency_p50_us = p50.unwrap_or(0);
        st.report.fetch_latency_p99_us = p99.unwrap_or(0);
        st.report.clone()
    }
}
