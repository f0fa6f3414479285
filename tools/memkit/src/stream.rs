//! The checkpoint stream between `memkit ckpt run` (the primary) and `memkit ckpt
//! backup`: frames over one TCP connection.
//!
//! Every frame is a 16-byte header — kind (u32), flags (u32, 0), payload length
//! (u64), little-endian — and its payload. The primary speaks first:
//!
//! ```text
//! primary                                   backup
//! HELLO {version, segment, max_changed,
//!        bytes}                       ─▶
//!                                     ◀─    HELLO {version, bytes, committed seq}
//! BEGIN {seq}                         ─▶
//! RECORDS {diff records}  (0 or more) ─▶
//! END {seq, records, crc32c}          ─▶    (staged, logged, committed, applied)
//!                                     ◀─    DIFF_LIST {pages}   (when it changed)
//!                                     ◀─    ACK {seq}
//! ```
//!
//! RECORDS carry the records of `MEMKIT_IOC_CKPT_COPY_DIFF`
//! ([`memkit_core::ckpt::diff`]); a checkpoint's records apply in order (a page may
//! come twice: pre-copied, then again from the stop). END's crc32c covers every
//! record byte of the checkpoint. Either side answers a malformed frame with
//! ERROR {message} and closes the connection; the backup then discards the
//! checkpoint it was receiving.
//!
//! Decoding checks every length before use and allocates at most
//! [`MAX_PAYLOAD`] bytes for a frame.

use std::io::{self, Read, Write};

/// Protocol version in HELLO.
pub const VERSION: u32 = 1;
/// Bytes of a frame header.
pub const HEADER: usize = 16;
/// The largest payload accepted: a RECORDS frame of 1024 full-page records, or a
/// DIFF_LIST of a million pages.
pub const MAX_PAYLOAD: u64 = 8 << 20;

const HELLO: u32 = 1;
const BEGIN: u32 = 2;
const RECORDS: u32 = 3;
const END: u32 = 4;
const ACK: u32 = 5;
const DIFF_LIST: u32 = 6;
const ERROR: u32 = 7;
const HELLO_REPLY: u32 = 8;

/// One frame, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Primary → backup: what the stream is.
    Hello {
        /// [`VERSION`].
        version: u32,
        /// Diff segment bytes.
        segment: u32,
        /// A page with more changed segments is sent whole (and is not "low-diff").
        max_changed: u32,
        /// Region bytes (a multiple of 4096).
        bytes: u64,
    },
    /// Backup → primary: the replica it has.
    HelloReply {
        /// [`VERSION`].
        version: u32,
        /// Replica bytes.
        bytes: u64,
        /// The last checkpoint committed to the replica (0: none).
        committed: u64,
    },
    /// A checkpoint starts.
    Begin {
        /// Checkpoint number, one more than the previous one.
        seq: u64,
    },
    /// Records of the current checkpoint.
    Records(Vec<u8>),
    /// The checkpoint is complete.
    End {
        /// The number BEGIN gave.
        seq: u64,
        /// Records sent in the checkpoint.
        records: u64,
        /// crc32c of the checkpoint's record bytes.
        crc: u32,
    },
    /// Backup → primary: checkpoint `seq` is committed and applied to the replica.
    Ack {
        /// The checkpoint.
        seq: u64,
    },
    /// Backup → primary: the pages worth diffing, all of them (replaces the last list).
    DiffList(Vec<u64>),
    /// Either way: why the sender gives up.
    Error(String),
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn u32_at(p: &[u8], at: usize) -> io::Result<u32> {
    p.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| bad("short payload"))
}

fn u64_at(p: &[u8], at: usize) -> io::Result<u64> {
    p.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| bad("short payload"))
}

/// Writes a RECORDS frame of `records` (what `Frame::Records(records).write` writes,
/// without a copy of them).
pub fn write_records(w: &mut impl Write, records: &[u8]) -> io::Result<()> {
    write_frame(w, RECORDS, records)
}

fn write_frame(w: &mut impl Write, kind: u32, p: &[u8]) -> io::Result<()> {
    if p.len() as u64 > MAX_PAYLOAD {
        return Err(bad(format!("a frame of {} bytes is too large", p.len())));
    }
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&(p.len() as u64).to_le_bytes());
    w.write_all(&h)?;
    w.write_all(p)
}

impl Frame {
    fn kind(&self) -> u32 {
        match self {
            Frame::Hello { .. } => HELLO,
            Frame::HelloReply { .. } => HELLO_REPLY,
            Frame::Begin { .. } => BEGIN,
            Frame::Records(_) => RECORDS,
            Frame::End { .. } => END,
            Frame::Ack { .. } => ACK,
            Frame::DiffList(_) => DIFF_LIST,
            Frame::Error(_) => ERROR,
        }
    }

    fn payload(&self) -> Vec<u8> {
        let mut p = Vec::new();
        match self {
            Frame::Hello {
                version,
                segment,
                max_changed,
                bytes,
            } => {
                p.extend_from_slice(&version.to_le_bytes());
                p.extend_from_slice(&segment.to_le_bytes());
                p.extend_from_slice(&max_changed.to_le_bytes());
                p.extend_from_slice(&0u32.to_le_bytes());
                p.extend_from_slice(&bytes.to_le_bytes());
            }
            Frame::HelloReply {
                version,
                bytes,
                committed,
            } => {
                p.extend_from_slice(&version.to_le_bytes());
                p.extend_from_slice(&0u32.to_le_bytes());
                p.extend_from_slice(&bytes.to_le_bytes());
                p.extend_from_slice(&committed.to_le_bytes());
            }
            Frame::Begin { seq } | Frame::Ack { seq } => p.extend_from_slice(&seq.to_le_bytes()),
            Frame::Records(r) => p.extend_from_slice(r),
            Frame::End { seq, records, crc } => {
                p.extend_from_slice(&seq.to_le_bytes());
                p.extend_from_slice(&records.to_le_bytes());
                p.extend_from_slice(&crc.to_le_bytes());
                p.extend_from_slice(&0u32.to_le_bytes());
            }
            Frame::DiffList(pages) => pages
                .iter()
                .for_each(|x| p.extend_from_slice(&x.to_le_bytes())),
            Frame::Error(m) => p.extend_from_slice(m.as_bytes()),
        }
        p
    }

    /// Writes the frame (header and payload) to `w`.
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        if let Frame::Records(r) = self {
            return write_records(w, r);
        }
        write_frame(w, self.kind(), &self.payload())
    }

    /// Decodes a frame from its header fields and payload.
    pub fn decode(kind: u32, flags: u32, p: &[u8]) -> io::Result<Frame> {
        if flags != 0 {
            return Err(bad(format!("frame flags {flags:#x}")));
        }
        let exact = |n: usize| {
            if p.len() == n {
                Ok(())
            } else {
                Err(bad(format!(
                    "frame kind {kind}: {} payload bytes, want {n}",
                    p.len()
                )))
            }
        };
        Ok(match kind {
            HELLO => {
                exact(24)?;
                Frame::Hello {
                    version: u32_at(p, 0)?,
                    segment: u32_at(p, 4)?,
                    max_changed: u32_at(p, 8)?,
                    bytes: u64_at(p, 16)?,
                }
            }
            HELLO_REPLY => {
                exact(24)?;
                Frame::HelloReply {
                    version: u32_at(p, 0)?,
                    bytes: u64_at(p, 8)?,
                    committed: u64_at(p, 16)?,
                }
            }
            BEGIN => {
                exact(8)?;
                Frame::Begin { seq: u64_at(p, 0)? }
            }
            ACK => {
                exact(8)?;
                Frame::Ack { seq: u64_at(p, 0)? }
            }
            RECORDS => Frame::Records(p.to_vec()),
            END => {
                exact(24)?;
                Frame::End {
                    seq: u64_at(p, 0)?,
                    records: u64_at(p, 8)?,
                    crc: u32_at(p, 16)?,
                }
            }
            DIFF_LIST => {
                if !p.len().is_multiple_of(8) {
                    return Err(bad("a diff list that is not whole u64s"));
                }
                Frame::DiffList(
                    (0..p.len() / 8)
                        .map(|i| u64_at(p, i * 8))
                        .collect::<io::Result<_>>()?,
                )
            }
            ERROR => Frame::Error(String::from_utf8_lossy(p).into_owned()),
            k => return Err(bad(format!("unknown frame kind {k}"))),
        })
    }

    /// Reads one frame from `r`. `Ok(None)` at a clean end of stream (before a
    /// header); a stream that ends inside a frame is `UnexpectedEof`.
    pub fn read(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut h = [0u8; HEADER];
        let mut got = 0;
        while got < HEADER {
            match r.read(&mut h[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let kind = u32_at(&h, 0)?;
        let flags = u32_at(&h, 4)?;
        let len = u64_at(&h, 8)?;
        if len > MAX_PAYLOAD {
            return Err(bad(format!(
                "a frame of {len} bytes (at most {MAX_PAYLOAD})"
            )));
        }
        let mut p = vec![0u8; len as usize];
        r.read_exact(&mut p)?;
        if kind == RECORDS && flags == 0 {
            // The payload is the frame: kept, not copied.
            return Ok(Some(Frame::Records(p)));
        }
        Frame::decode(kind, flags, &p).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(f: Frame) {
        let mut buf = Vec::new();
        f.write(&mut buf).unwrap();
        let mut r = &buf[..];
        assert_eq!(Frame::read(&mut r).unwrap(), Some(f));
        assert_eq!(Frame::read(&mut r).unwrap(), None);
    }

    #[test]
    fn frames_round_trip() {
        roundtrip(Frame::Hello {
            version: VERSION,
            segment: 256,
            max_changed: 4,
            bytes: 1 << 26,
        });
        roundtrip(Frame::HelloReply {
            version: VERSION,
            bytes: 4096,
            committed: 7,
        });
        roundtrip(Frame::Begin { seq: 3 });
        roundtrip(Frame::Records(vec![1, 2, 3]));
        roundtrip(Frame::End {
            seq: 3,
            records: 9,
            crc: 0xdead_beef,
        });
        roundtrip(Frame::Ack { seq: u64::MAX });
        roundtrip(Frame::DiffList(vec![0, 5, 1 << 40]));
        roundtrip(Frame::Error("no".into()));
    }

    #[test]
    fn malformed_frames_are_errors() {
        let header = |kind: u32, flags: u32, len: u64| {
            let mut h = Vec::new();
            h.extend_from_slice(&kind.to_le_bytes());
            h.extend_from_slice(&flags.to_le_bytes());
            h.extend_from_slice(&len.to_le_bytes());
            h
        };
        // Unknown kind, flags, wrong fixed sizes, huge length, truncation.
        for (bytes, why) in [
            ([header(99, 0, 0)].concat(), "kind"),
            ([header(BEGIN, 1, 8), vec![0; 8]].concat(), "flags"),
            ([header(BEGIN, 0, 4), vec![0; 4]].concat(), "size"),
            ([header(END, 0, 8), vec![0; 8]].concat(), "size"),
            (
                [header(DIFF_LIST, 0, 12), vec![0; 12]].concat(),
                "partial u64",
            ),
            (header(RECORDS, 0, MAX_PAYLOAD + 1), "too large"),
            (
                [header(RECORDS, 0, 10), vec![0; 3]].concat(),
                "truncated payload",
            ),
            (header(BEGIN, 0, 8)[..7].to_vec(), "truncated header"),
        ] {
            assert!(Frame::read(&mut &bytes[..]).is_err(), "{why}");
        }
    }
}
