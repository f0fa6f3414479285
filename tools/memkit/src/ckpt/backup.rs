//! `memkit ckpt backup`: receives checkpoints and keeps the replica.
//!
//! One primary at a time. Each checkpoint is staged in memory as it arrives,
//! checked (numbering, record count, crc32c), committed atomically
//! ([`memkit::replica`]), and acknowledged; the difference values of its pages feed
//! the list of pages worth diffing, sent back when it changes. A malformed stream
//! is answered with ERROR and the connection closed: the replica stays at the last
//! committed checkpoint.

use memkit::core::ckpt::diff::Params;
use memkit::replica::{DirLock, Feedback, Replica, Staged};
use memkit::stream::{self, Frame};
use serde::Serialize;
use std::io::{self, BufReader, BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The backup's settings.
#[derive(clap::Args, Debug, Clone)]
pub struct BackupOpts {
    /// Replica directory (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Address to listen on (port 0: any; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Consecutive low-diff intervals before a page is listed for diffing.
    #[arg(long, default_value_t = 2)]
    pub diff_after: u32,
    /// Serve one primary, then exit.
    #[arg(long)]
    pub once: bool,
    /// Only recover the replica, print its checkpoint, and exit.
    #[arg(long)]
    pub recover: bool,
}

/// What a connection did.
#[derive(Serialize, Default)]
pub struct Session {
    peer: String,
    /// First and last checkpoint committed in it.
    first: Option<u64>,
    committed: u64,
    checkpoints: u64,
    pages: u64,
    record_bytes: u64,
    diff_lists: u64,
    /// Milliseconds over the checkpoints after the session's first (which holds
    /// every page): checking and staging the records (crc32c, decoding, the
    /// difference values), and the commit's steps — the log written and synced,
    /// renamed (the commit point), the records applied to the replica.
    stage_ms: f64,
    log_ms: f64,
    rename_ms: f64,
    apply_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The largest replica a backup accepts (1 TiB): a bound on what a HELLO makes it
/// create.
const MAX_REPLICA_BYTES: u64 = 1 << 40;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn serve(conn: TcpStream, o: &BackupOpts, s: &mut Session) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut rx = BufReader::with_capacity(1 << 20, conn.try_clone()?);
    let mut tx = BufWriter::new(conn);
    let (p, mut replica) = match Frame::read(&mut rx)? {
        Some(Frame::Hello {
            version,
            segment,
            max_changed,
            bytes,
        }) => {
            if version != stream::VERSION {
                return Err(bad(format!(
                    "protocol version {version}, want {}",
                    stream::VERSION
                )));
            }
            let p = Params::new(segment, max_changed)
                .ok_or_else(|| bad(format!("segment {segment}: not a power of two in 64..4096")))?;
            if bytes > MAX_REPLICA_BYTES {
                return Err(bad(format!(
                    "a region of {bytes} bytes (at most {MAX_REPLICA_BYTES})"
                )));
            }
            (p, Replica::open(&o.dir, Some(bytes))?)
        }
        other => return Err(bad(format!("expected HELLO, got {other:?}"))),
    };
    s.committed = replica.committed();
    Frame::HelloReply {
        version: stream::VERSION,
        bytes: replica.bytes(),
        committed: replica.committed(),
    }
    .write(&mut tx)?;
    tx.flush()?;
    let mut feedback = Feedback::new(p.max_changed, o.diff_after);
    loop {
        let seq = match Frame::read(&mut rx)? {
            None => return Ok(()),
            Some(Frame::Begin { seq }) if seq == replica.committed() + 1 => seq,
            Some(other) => {
                return Err(bad(format!(
                    "expected BEGIN {}, got {other:?}",
                    replica.committed() + 1
                )))
            }
        };
        let mut staged = Staged::default();
        let mut bytes = 0u64;
        loop {
            match Frame::read(&mut rx)? {
                Some(Frame::Records(r)) => {
                    let t = Instant::now();
                    replica.stage(p, &mut staged, &r)?;
                    if s.first.is_some() {
                        s.stage_ms += ms(t.elapsed());
                    }
                    bytes += r.len() as u64;
                }
                Some(Frame::End {
                    seq: s2,
                    records: n,
                    crc: c,
                }) => {
                    if s2 != seq || n != staged.records() || c != staged.crc() {
                        return Err(bad(format!(
                            "checkpoint {seq} ends as {s2} with {n} records and crc {c:#x}; \
                             received {} records, crc {:#x}",
                            staged.records(),
                            staged.crc()
                        )));
                    }
                    break;
                }
                None => return Err(bad(format!("the stream ended inside checkpoint {seq}"))),
                Some(other) => {
                    return Err(bad(format!("unexpected {other:?} in checkpoint {seq}")))
                }
            }
        }
        let values = replica.difference_values(&staged);
        s.pages += staged.len() as u64;
        let c = replica.commit(seq, staged)?;
        if s.first.is_some() {
            s.log_ms += ms(c.log);
            s.rename_ms += ms(c.rename);
            s.apply_ms += ms(c.apply);
        }
        s.first.get_or_insert(seq);
        s.committed = seq;
        s.checkpoints += 1;
        s.record_bytes += bytes;
        feedback.observe(&values);
        if let Some(list) = feedback.take_changed() {
            Frame::DiffList(list).write(&mut tx)?;
            s.diff_lists += 1;
        }
        Frame::Ack { seq }.write(&mut tx)?;
        tx.flush()?;
    }
}

fn emit_line<T: Serialize>(v: &T) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(v).expect("serialisable"));
    let _ = out.flush();
}

fn recover(dir: &Path) -> Result<u64, String> {
    Replica::open(dir, None)
        .map(|r| r.committed())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Runs the backup (prints JSON lines: where it listens, then one per connection).
pub fn run(o: &BackupOpts) -> Result<(), String> {
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    // Held while this process lives: no other backup commits here, and `memkit
    // ckpt restore` does not read a replica half committed.
    let _lock = DirLock::take(&o.dir).map_err(|e| e.to_string())?;
    if o.recover {
        let seq = recover(&o.dir)?;
        emit_line(&serde_json::json!({ "dir": o.dir, "committed": seq }));
        return Ok(());
    }
    let l = TcpListener::bind(&o.listen).map_err(|e| format!("listen on {}: {e}", o.listen))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    emit_line(&serde_json::json!({ "listening": addr.to_string() }));
    for conn in l.incoming() {
        let conn = conn.map_err(|e| format!("accept: {e}"))?;
        let mut s = Session {
            peer: conn.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            ..Default::default()
        };
        if let Err(e) = serve(conn.try_clone().map_err(|e| e.to_string())?, o, &mut s) {
            s.error = Some(e.to_string());
            let mut w = &conn;
            let _ = Frame::Error(e.to_string()).write(&mut w);
        }
        emit_line(&s);
        if o.once {
            break;
        }
    }
    Ok(())
}
