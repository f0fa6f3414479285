//! The agent backend of remote-memory regions, in userspace: a TCP memory server
//! (`memkit rmem server`) that stores pages, and the agent loop (`memkit rmem agent`)
//! that reads a region's requests from its file, asks the server, and writes the
//! replies back.
//!
//! The server's protocol, over one TCP connection per agent, requests answered in
//! order (all integers little-endian):
//!
//! - `GET`: `1u8`, page `u64` → status `u8` (0: ok, then the page's 4096 bytes; 1:
//!   page out of range);
//! - `PUT`: `2u8`, page `u64`, 4096 bytes → status `u8` (0 or 1).
//!
//! A page never written reads as zeros.

use crate::dev::Device;
use memkit_core::abi::{self, UapiStruct};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex};

const PAGE: usize = 4096;
const OP_GET: u8 = 1;
const OP_PUT: u8 = 2;

/// The pages a server holds, shared by its connections.
pub type Store = Arc<Mutex<HashMap<u64, Box<[u8; PAGE]>>>>;

/// Serves one agent's connection until it closes.
pub fn serve_connection(mut conn: TcpStream, store: &Store, pages: u64) -> io::Result<()> {
    conn.set_nodelay(true)?;
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
                let mut out = vec![if ok { 0u8 } else { 1 }];
                if ok {
                    let st = store.lock().expect("store lock");
                    match st.get(&page) {
                        Some(p) => out.extend_from_slice(&p[..]),
                        None => out.resize(1 + PAGE, 0),
                    }
                }
                conn.write_all(&out)?;
            }
            OP_PUT => {
                let mut data = Box::new([0u8; PAGE]);
                conn.read_exact(&mut data[..])?;
                if ok {
                    store.lock().expect("store lock").insert(page, data);
                }
                conn.write_all(&[if ok { 0 } else { 1 }])?;
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

/// Accepts agents on `listener` forever, one thread each.
pub fn serve(listener: TcpListener, pages: u64) -> io::Result<()> {
    let store: Store = Arc::default();
    for conn in listener.incoming() {
        let conn = conn?;
        let store = store.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve_connection(conn, &store, pages) {
                eprintln!("memkit rmem server: connection: {e}");
            }
        });
    }
    Ok(())
}

/// A connection to a memory server.
pub struct Client(TcpStream);

impl Client {
    /// Connects to the server at `addr`.
    pub fn connect(addr: &str) -> io::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Client(s))
    }

    fn status(&mut self) -> io::Result<()> {
        let mut st = [0u8; 1];
        self.0.read_exact(&mut st)?;
        if st[0] == 0 {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the server refused the page",
            ))
        }
    }

    /// The page's contents.
    pub fn get(&mut self, page: u64, out: &mut [u8; PAGE]) -> io::Result<()> {
        let mut req = [OP_GET; 9];
        req[1..].copy_from_slice(&page.to_le_bytes());
        self.0.write_all(&req)?;
        self.status()?;
        self.0.read_exact(out)
    }

    /// Stores the page.
    pub fn put(&mut self, page: u64, data: &[u8]) -> io::Result<()> {
        let mut req = Vec::with_capacity(9 + PAGE);
        req.push(OP_PUT);
        req.extend_from_slice(&page.to_le_bytes());
        req.extend_from_slice(data);
        self.0.write_all(&req)?;
        self.status()
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
                            reply.status = (-libc::EIO) as u32
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
                    match server.put(m.page, &msgs[..PAGE]) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                            reply.status = (-libc::EIO) as u32
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
