//! A client of the NBD protocol (the Network Block Device protocol of
//! `nbd-server`, `qemu-nbd` and `nbdkit`, `doc/proto.md` of the NBD project): the
//! fixed-newstyle handshake with `NBD_OPT_STRUCTURED_REPLY` and `NBD_OPT_GO`, and the
//! transmission phase's requests and replies, simple or structured.
//!
//! This module is the protocol only: [`connect`] negotiates an export over any
//! stream, [`encode_request`] builds a request, [`read_reply`] reads one reply or
//! one structured-reply chunk. Who sends what and when (many requests in flight,
//! matched by cookie) is `rmem_nbd.rs`'s. Every length and offset a server sends is
//! checked before it is used; a malformed answer is an `InvalidData` error naming
//! what was wrong.
//!
//! Why a client of our own rather than libnbd or the `nbd` crate: the agent needs
//! many requests in flight over one connection with structured replies, a blocking
//! reader thread beside a writer thread, and no C library in the guest's initramfs;
//! the `nbd` crate (0.3) has one request at a time and no structured replies, and
//! libnbd's Rust bindings are not in Debian 12. The protocol's client side is small.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The server's first 8 bytes (`NBDMAGIC`).
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// Newstyle negotiation, and the magic of every option the client sends (`IHAVEOPT`).
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// The magic of an option reply.
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// The magic of a transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// The magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// The magic of a structured-reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const CLIENT_FIXED_NEWSTYLE: u32 = 1;
const CLIENT_NO_ZEROES: u32 = 2;

const OPT_ABORT: u32 = 2;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;

const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_ERR: u32 = 1 << 31;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flag: the flags are valid.
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
/// Transmission flag: the export cannot be written.
pub const FLAG_READ_ONLY: u16 = 1 << 1;
/// Transmission flag: the server takes `NBD_CMD_FLUSH`.
pub const FLAG_SEND_FLUSH: u16 = 1 << 2;
/// Transmission flag: the server takes `NBD_CMD_TRIM`.
pub const FLAG_SEND_TRIM: u16 = 1 << 5;

/// Request: read `len` bytes at `offset`.
pub const CMD_READ: u16 = 0;
/// Request: write the payload at `offset`.
pub const CMD_WRITE: u16 = 1;
/// Request: disconnect (no reply).
pub const CMD_DISC: u16 = 2;
/// Request: make completed writes durable.
pub const CMD_FLUSH: u16 = 3;
/// Request: the range's contents are no longer needed.
pub const CMD_TRIM: u16 = 4;

/// Structured-reply chunk flag: the last chunk of its request.
pub const REPLY_FLAG_DONE: u16 = 1;
/// Chunk type: no payload (the request succeeded).
pub const REPLY_TYPE_NONE: u16 = 0;
/// Chunk type: an offset and the data there.
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// Chunk type: an offset and a length that read as zeros.
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
/// Chunk type: an errno and a message.
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;
/// Chunk type: an errno, a message and the offset it concerns.
pub const REPLY_TYPE_ERROR_OFFSET: u16 = (1 << 15) + 2;

/// The longest option reply and structured chunk payload this client accepts: a
/// 4 KiB read and its offset, or an error message (the protocol caps strings at
/// 4096 bytes).
pub const MAX_PAYLOAD: u32 = 4096 + 64;
/// The longest request this client sends (a write of one page).
pub const REQUEST_HEADER: usize = 28;
/// How long each read of the handshake may wait before the server is declared
/// silent (nbd-server took several seconds to answer under an emulated guest).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// The IANA port of NBD.
pub const DEFAULT_PORT: u16 = 10809;

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Where an NBD export is: `nbd://HOST[:PORT][/EXPORT]` or
/// `nbd+unix:///EXPORT?socket=PATH` (the NBD URI specification; TLS forms are refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    /// Where the server listens.
    pub target: Target,
    /// The export name (may be empty: the server's default export).
    pub export: String,
}

/// Where an NBD server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `host:port`, as `TcpStream::connect` takes it.
    Tcp(String),
    /// A Unix socket's path.
    Unix(String),
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

impl Uri {
    /// Parses an NBD URI.
    pub fn parse(s: &str) -> Result<Uri, String> {
        let form = "nbd://HOST[:PORT][/EXPORT] or nbd+unix:///EXPORT?socket=PATH";
        if let Some(rest) = s.strip_prefix("nbd://") {
            if rest.contains('?') {
                return Err(format!(
                    "{s}: no query is supported in nbd:// URIs ({form})"
                ));
            }
            let (authority, export) = rest.split_once('/').unwrap_or((rest, ""));
            if authority.is_empty() {
                return Err(format!("{s}: no host ({form})"));
            }
            // An IPv6 literal is bracketed: [::1]:10809.
            let has_port = match authority.rfind(']') {
                Some(close) => authority[close..].contains(':'),
                None => authority.contains(':'),
            };
            let addr = if has_port {
                let (_, port) = authority.rsplit_once(':').unwrap_or_default();
                port.parse::<u16>()
                    .map_err(|_| format!("{s}: bad port {port:?}"))?;
                authority.to_string()
            } else {
                format!("{authority}:{DEFAULT_PORT}")
            };
            return Ok(Uri {
                target: Target::Tcp(addr),
                export: percent_decode(export)?,
            });
        }
        if let Some(rest) = s.strip_prefix("nbd+unix://") {
            let (path, query) = rest
                .split_once('?')
                .ok_or_else(|| format!("{s}: nbd+unix needs ?socket=PATH ({form})"))?;
            let export = path
                .strip_prefix('/')
                .ok_or_else(|| format!("{s}: nbd+unix takes no host ({form})"))?;
            let socket = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("socket="))
                .ok_or_else(|| format!("{s}: nbd+unix needs ?socket=PATH ({form})"))?;
            return Ok(Uri {
                target: Target::Unix(percent_decode(socket)?),
                export: percent_decode(export)?,
            });
        }
        if s.starts_with("nbds://") || s.starts_with("nbds+unix://") {
            return Err(format!("{s}: NBD over TLS is not supported ({form})"));
        }
        Err(format!("{s}: not an NBD URI ({form})"))
    }
}

impl std::fmt::Display for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Tcp(a) => write!(f, "nbd://{a}/{}", self.export),
            Target::Unix(p) => write!(f, "nbd+unix:///{}?socket={p}", self.export),
        }
    }
}

/// A connection to a server: TCP or a Unix socket.
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix socket.
    Unix(UnixStream),
}

impl Stream {
    /// Connects to `target` (TCP with Nagle off: requests are small and waited for).
    pub fn connect(target: &Target) -> io::Result<Stream> {
        Ok(match target {
            Target::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Target::Unix(p) => Stream::Unix(UnixStream::connect(p)?),
        })
    }

    /// A second handle on the same connection (one thread writes, one reads).
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// `SO_RCVTIMEO`: how long a read may block.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    /// Shuts both directions: a reader blocked on the other handle wakes up.
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The export the handshake ended on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Export {
    /// Bytes.
    pub size: u64,
    /// `FLAG_*` transmission flags.
    pub flags: u16,
    /// Structured replies were negotiated: reads may come back in chunks.
    pub structured: bool,
    /// The server's minimum block size (1 if it did not say).
    pub min_block: u32,
}

impl Export {
    /// The export cannot be written.
    pub fn read_only(&self) -> bool {
        self.flags & FLAG_READ_ONLY != 0
    }
    /// The server takes `NBD_CMD_FLUSH`.
    pub fn can_flush(&self) -> bool {
        self.flags & FLAG_SEND_FLUSH != 0
    }
    /// The server takes `NBD_CMD_TRIM`.
    pub fn can_trim(&self) -> bool {
        self.flags & FLAG_SEND_TRIM != 0
    }
}

fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn send_option(w: &mut impl Write, option: u32, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len()).map_err(|_| bad("option data too long"))?;
    let mut b = Vec::with_capacity(16 + data.len());
    b.extend_from_slice(&IHAVEOPT.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(data);
    w.write_all(&b)
}

/// One option reply: its type and payload.
fn read_option_reply(r: &mut impl Read, option: u32) -> io::Result<(u32, Vec<u8>)> {
    let magic = read_u64(r)?;
    if magic != OPT_REPLY_MAGIC {
        return Err(bad(format!("option reply magic {magic:#x}")));
    }
    let opt = read_u32(r)?;
    if opt != option {
        return Err(bad(format!(
            "a reply to option {opt} while option {option} was asked"
        )));
    }
    let kind = read_u32(r)?;
    let len = read_u32(r)?;
    if len > MAX_PAYLOAD {
        return Err(bad(format!("option reply of {len} bytes")));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    Ok((kind, data))
}

/// What an option error reply means, with the server's message if it sent one.
fn option_error(kind: u32, data: &[u8]) -> String {
    let what = match kind & !REP_ERR {
        1 => "unsupported",
        2 => "forbidden by the server's policy",
        3 => "invalid",
        4 => "not supported on the server's platform",
        5 => "needs TLS",
        6 => "no such export",
        7 => "the server is shutting down",
        8 => "needs block-size negotiation",
        9 => "the request is too big",
        _ => "refused",
    };
    let msg = String::from_utf8_lossy(data);
    if msg.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {msg}")
    }
}

/// The handshake: fixed newstyle, structured replies if the server offers them, then
/// `NBD_OPT_GO` on `export`. On success the stream is in the transmission phase.
pub fn connect(s: &mut (impl Read + Write), export: &str) -> io::Result<Export> {
    let magic = read_u64(s)?;
    if magic != NBDMAGIC {
        return Err(bad(format!(
            "the server's greeting starts with {magic:#x}, not NBDMAGIC: not an NBD server"
        )));
    }
    let style = read_u64(s)?;
    if style != IHAVEOPT {
        return Err(bad(
            "the server speaks the oldstyle handshake (no export names); only newstyle \
             servers are supported",
        ));
    }
    let hflags = read_u16(s)?;
    if hflags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(bad(
            "the server does not offer the fixed newstyle handshake",
        ));
    }
    let mut cflags = CLIENT_FIXED_NEWSTYLE;
    if hflags & FLAG_NO_ZEROES != 0 {
        cflags |= CLIENT_NO_ZEROES;
    }
    s.write_all(&cflags.to_be_bytes())?;

    send_option(s, OPT_STRUCTURED_REPLY, &[])?;
    let structured = match read_option_reply(s, OPT_STRUCTURED_REPLY)? {
        (REP_ACK, _) => true,
        (k, _) if k & REP_ERR != 0 => false,
        (k, _) => return Err(bad(format!("reply {k} to NBD_OPT_STRUCTURED_REPLY"))),
    };

    let name = export.as_bytes();
    let name_len = u32::try_from(name.len())
        .ok()
        .filter(|&n| n <= 4096)
        .ok_or_else(|| bad("export name longer than 4096 bytes"))?;
    let mut go = Vec::with_capacity(8 + name.len());
    go.extend_from_slice(&name_len.to_be_bytes());
    go.extend_from_slice(name);
    go.extend_from_slice(&1u16.to_be_bytes());
    go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(s, OPT_GO, &go)?;
    let (mut size, mut flags, mut min_block) = (None, 0u16, 1u32);
    loop {
        let (kind, data) = read_option_reply(s, OPT_GO)?;
        match kind {
            REP_ACK => break,
            REP_INFO => {
                if data.len() < 2 {
                    return Err(bad("NBD_REP_INFO without its type"));
                }
                let info = u16::from_be_bytes([data[0], data[1]]);
                match info {
                    INFO_EXPORT if data.len() == 12 => {
                        size = Some(u64::from_be_bytes(data[2..10].try_into().expect("8")));
                        flags = u16::from_be_bytes([data[10], data[11]]);
                    }
                    INFO_BLOCK_SIZE if data.len() == 14 => {
                        min_block = u32::from_be_bytes(data[2..6].try_into().expect("4"));
                    }
                    INFO_EXPORT | INFO_BLOCK_SIZE => {
                        return Err(bad(format!("NBD_REP_INFO {info} of {} bytes", data.len())))
                    }
                    // Information we did not ask for.
                    _ => {}
                }
            }
            k if k & REP_ERR != 0 => {
                let why = option_error(k, &data);
                let _ = send_option(s, OPT_ABORT, &[]);
                return Err(io::Error::other(format!("export {export:?}: {why}")));
            }
            // Other replies (NBD_REP_SERVER...) are not for GO: skipped.
            _ => {}
        }
    }
    let size =
        size.ok_or_else(|| bad("the server accepted NBD_OPT_GO without the export's size"))?;
    if flags & FLAG_HAS_FLAGS == 0 {
        flags = FLAG_HAS_FLAGS;
    }
    Ok(Export {
        size,
        flags,
        structured,
        min_block,
    })
}

/// Appends a request to `out`: its 28-byte header, then `data` (a write's payload).
pub fn encode_request(
    out: &mut Vec<u8>,
    kind: u16,
    cookie: u64,
    offset: u64,
    len: u32,
    data: &[u8],
) {
    out.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

/// A reply, or a chunk of one (structured replies).
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// A simple reply: its error (0: done). A successful read's data follows it on
    /// the stream: the caller, which knows the request's length, reads it.
    #[allow(missing_docs)]
    Simple { cookie: u64, error: u32 },
    /// A structured-reply chunk with its payload read.
    #[allow(missing_docs)]
    Chunk {
        cookie: u64,
        flags: u16,
        kind: u16,
        payload: Vec<u8>,
    },
}

/// Reads the next reply header (and a chunk's payload).
pub fn read_reply(r: &mut impl Read) -> io::Result<Reply> {
    let magic = read_u32(r)?;
    match magic {
        SIMPLE_REPLY_MAGIC => {
            let error = read_u32(r)?;
            let cookie = read_u64(r)?;
            Ok(Reply::Simple { cookie, error })
        }
        STRUCTURED_REPLY_MAGIC => {
            let flags = read_u16(r)?;
            let kind = read_u16(r)?;
            let cookie = read_u64(r)?;
            let len = read_u32(r)?;
            if len > MAX_PAYLOAD {
                return Err(bad(format!("a reply chunk of {len} bytes")));
            }
            let mut payload = vec![0u8; len as usize];
            r.read_exact(&mut payload)?;
            Ok(Reply::Chunk {
                cookie,
                flags,
                kind,
                payload,
            })
        }
        m => Err(bad(format!("reply magic {m:#x}"))),
    }
}

/// What a structured chunk says about a read of `len` bytes at `offset`.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkData<'a> {
    /// Bytes at this position of the request.
    #[allow(missing_docs)]
    Data { at: usize, bytes: &'a [u8] },
    /// Zeros at this position, this long.
    #[allow(missing_docs)]
    Hole { at: usize, len: usize },
    /// The request failed with this errno (and message).
    #[allow(missing_docs)]
    Error { errno: u32, message: String },
    /// Nothing (`NBD_REPLY_TYPE_NONE`, or a type this client does not use).
    None,
}

/// Decodes a chunk's payload for a request of `len` bytes at `offset`: every piece
/// it names must lie inside the request.
pub fn chunk_data(kind: u16, payload: &[u8], offset: u64, len: u32) -> io::Result<ChunkData<'_>> {
    let inside = |off: u64, n: u64| -> io::Result<usize> {
        let at = off
            .checked_sub(offset)
            .filter(|at| at.checked_add(n).is_some_and(|end| end <= u64::from(len)))
            .ok_or_else(|| {
                bad(format!(
                    "a chunk at {off}+{n} outside its request {offset}+{len}"
                ))
            })?;
        Ok(at as usize)
    };
    match kind {
        REPLY_TYPE_NONE => Ok(ChunkData::None),
        REPLY_TYPE_OFFSET_DATA => {
            if payload.len() < 9 {
                return Err(bad("an OFFSET_DATA chunk without data"));
            }
            let off = u64::from_be_bytes(payload[..8].try_into().expect("8"));
            let bytes = &payload[8..];
            let at = inside(off, bytes.len() as u64)?;
            Ok(ChunkData::Data { at, bytes })
        }
        REPLY_TYPE_OFFSET_HOLE => {
            if payload.len() != 12 {
                return Err(bad("an OFFSET_HOLE chunk of the wrong size"));
            }
            let off = u64::from_be_bytes(payload[..8].try_into().expect("8"));
            let n = u32::from_be_bytes(payload[8..].try_into().expect("4"));
            let at = inside(off, u64::from(n))?;
            Ok(ChunkData::Hole {
                at,
                len: n as usize,
            })
        }
        REPLY_TYPE_ERROR | REPLY_TYPE_ERROR_OFFSET => {
            if payload.len() < 6 {
                return Err(bad("an error chunk too short"));
            }
            let errno = u32::from_be_bytes(payload[..4].try_into().expect("4"));
            let mlen = usize::from(u16::from_be_bytes([payload[4], payload[5]]));
            let message = payload
                .get(6..6 + mlen)
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .ok_or_else(|| bad("an error chunk's message past its end"))?;
            Ok(ChunkData::Error {
                errno: if errno == 0 { 5 } else { errno },
                message,
            })
        }
        k if k & (1 << 15) != 0 => Ok(ChunkData::Error {
            errno: 5,
            message: format!("error chunk of unknown type {k}"),
        }),
        _ => Ok(ChunkData::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let u = Uri::parse("nbd://127.0.0.1:10900/pages").unwrap();
        assert_eq!(u.target, Target::Tcp("127.0.0.1:10900".into()));
        assert_eq!(u.export, "pages");
        let u = Uri::parse("nbd://server").unwrap();
        assert_eq!(u.target, Target::Tcp("server:10809".into()));
        assert_eq!(u.export, "");
        let u = Uri::parse("nbd://[::1]/a%20b").unwrap();
        assert_eq!(u.target, Target::Tcp("[::1]:10809".into()));
        assert_eq!(u.export, "a b");
        let u = Uri::parse("nbd+unix:///e?socket=/tmp/s.sock").unwrap();
        assert_eq!(u.target, Target::Unix("/tmp/s.sock".into()));
        assert_eq!(u.export, "e");
        for bad in [
            "nbd://",
            "nbd://h:port",
            "nbd://h:99999",
            "nbd+unix:///e",
            "nbd+unix://host/e?socket=/s",
            "nbds://h",
            "http://h",
            "nbd://h/%zz",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_layout() {
        let mut b = Vec::new();
        encode_request(&mut b, CMD_WRITE, 7, 4096, 3, b"abc");
        assert_eq!(b.len(), REQUEST_HEADER + 3);
        assert_eq!(&b[..4], &REQUEST_MAGIC.to_be_bytes());
        assert_eq!(&b[6..8], &CMD_WRITE.to_be_bytes());
        assert_eq!(&b[8..16], &7u64.to_be_bytes());
        assert_eq!(&b[16..24], &4096u64.to_be_bytes());
        assert_eq!(&b[24..28], &3u32.to_be_bytes());
    }

    #[test]
    fn chunks_stay_inside_their_request() {
        let mut p = 4096u64.to_be_bytes().to_vec();
        p.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            chunk_data(REPLY_TYPE_OFFSET_DATA, &p, 4096, 4096).unwrap(),
            ChunkData::Data {
                at: 0,
                bytes: &[1, 2, 3]
            }
        );
        assert!(chunk_data(REPLY_TYPE_OFFSET_DATA, &p, 8192, 4096).is_err());
        let mut h = 8190u64.to_be_bytes().to_vec();
        h.extend_from_slice(&4u32.to_be_bytes());
        assert!(chunk_data(REPLY_TYPE_OFFSET_HOLE, &h, 4096, 4096).is_err());
        let mut h = (u64::MAX - 1).to_be_bytes().to_vec();
        h.extend_from_slice(&4u32.to_be_bytes());
        assert!(chunk_data(REPLY_TYPE_OFFSET_HOLE, &h, 4096, 4096).is_err());
        let mut e = 28u32.to_be_bytes().to_vec();
        e.extend_from_slice(&2u16.to_be_bytes());
        e.extend_from_slice(b"no");
        assert_eq!(
            chunk_data(REPLY_TYPE_ERROR, &e, 0, 4096).unwrap(),
            ChunkData::Error {
                errno: 28,
                message: "no".into()
            }
        );
        e[5] = 9;
        assert!(chunk_data(REPLY_TYPE_ERROR, &e, 0, 4096).is_err());
    }

    #[test]
    fn replies_are_bounded() {
        let mut b = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&REPLY_FLAG_DONE.to_be_bytes());
        b.extend_from_slice(&REPLY_TYPE_OFFSET_DATA.to_be_bytes());
        b.extend_from_slice(&1u64.to_be_bytes());
        b.extend_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
        assert!(read_reply(&mut &b[..]).is_err());
        let mut s = SIMPLE_REPLY_MAGIC.to_be_bytes().to_vec();
        s.extend_from_slice(&0u32.to_be_bytes());
        s.extend_from_slice(&9u64.to_be_bytes());
        assert_eq!(
            read_reply(&mut &s[..]).unwrap(),
            Reply::Simple {
                cookie: 9,
                error: 0
            }
        );
        assert!(read_reply(&mut &[0u8; 16][..]).is_err());
    }
}
