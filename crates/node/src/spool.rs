//! A job's output on the node until the gateway has stored it.
//!
//! Output is kept in memory up to [`MEM_CAP`] per stream, then appended to
//! a spill file in the node's home, up to [`SPILL_CAP`]. Past that the job's
//! writes block (its pipe fills) until the gateway catches up: output is
//! never dropped. Bytes are numbered per stream from 0; the gateway's acks
//! say how far it has stored, and everything before that is released.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use bytes::Bytes;

/// Output held in memory per stream before spilling to disk.
pub const MEM_CAP: u64 = 16 << 20;
/// Output held on disk per stream before the job's writes block.
pub const SPILL_CAP: u64 = 1 << 30;
/// Largest chunk handed out for sending (and read from the spill file).
pub const READ_CHUNK: u64 = 256 << 10;
/// The least a chunk in memory counts for against [`MEM_CAP`]: each one
/// costs a queue entry and an allocation besides its bytes, so a job that
/// writes a byte at a time fills memory in chunks, not in bytes.
const MIN_CHUNK_CHARGE: u64 = 1024;

/// What a chunk of `len` bytes counts for against [`MEM_CAP`].
fn charge(len: u64) -> u64 {
    len.max(MIN_CHUNK_CHARGE)
}

struct Spill {
    path: PathBuf,
    file: File,
    /// Stream offset of the file's first byte.
    start: u64,
    /// Bytes in the file.
    len: u64,
}

/// One stream's unacknowledged output.
pub struct OutBuf {
    /// Everything before this offset is stored at the gateway.
    acked: u64,
    /// Bytes produced so far.
    total: u64,
    /// In-memory chunks with their offsets, oldest first.
    mem: VecDeque<(u64, Bytes)>,
    /// What those chunks count for against [`MEM_CAP`] (see [`charge`]).
    mem_bytes: u64,
    /// The spill file, holding the newest bytes once memory is full.
    spill: Option<Spill>,
    spill_path: PathBuf,
}

impl OutBuf {
    /// An empty buffer that spills to `spill_path`.
    pub fn new(spill_path: PathBuf) -> OutBuf {
        OutBuf {
            acked: 0,
            total: 0,
            mem: VecDeque::new(),
            mem_bytes: 0,
            spill: None,
            spill_path,
        }
    }

    /// Bytes produced.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes the gateway confirmed.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Whether `len` more bytes fit without exceeding the caps.
    pub fn has_room(&self, len: u64) -> bool {
        match &self.spill {
            None => true,
            Some(s) => s.len + len <= SPILL_CAP,
        }
    }

    /// Whether `len` more bytes fit in memory (nothing is spilled now).
    pub fn fits_in_memory(&self, len: u64) -> bool {
        self.spill.is_none() && self.mem_bytes + charge(len) <= MEM_CAP
    }

    /// Appends output. Call [`OutBuf::has_room`] first; this spills when
    /// memory is full and errors only on disk failure.
    pub fn append(&mut self, data: Bytes) -> std::io::Result<()> {
        let len = data.len() as u64;
        if self.spill.is_none() && self.mem_bytes + charge(len) <= MEM_CAP {
            self.mem.push_back((self.total, data));
            self.mem_bytes += charge(len);
        } else {
            if self.spill.is_none() {
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(&self.spill_path)?;
                self.spill = Some(Spill {
                    path: self.spill_path.clone(),
                    file,
                    start: self.total,
                    len: 0,
                });
            }
            if let Some(s) = self.spill.as_mut() {
                s.file.write_all(&data)?;
                s.len += len;
            }
        }
        self.total += len;
        Ok(())
    }

    /// The bytes from `offset` on, as consecutive chunks of at most
    /// `max` bytes in all (at least one byte when any is there), without
    /// copying what is in memory: a job that writes in small pieces is
    /// still sent in large frames. Empty when nothing is produced past
    /// `offset` or it is released already.
    pub fn read_from(&self, offset: u64, max: u64) -> std::io::Result<Vec<Bytes>> {
        let mut out = Vec::new();
        if offset >= self.total || max == 0 {
            return Ok(out);
        }
        // The first chunk that ends past `offset` (chunks are in order).
        let first = self
            .mem
            .partition_point(|(start, chunk)| start + chunk.len() as u64 <= offset);
        let mut at = offset;
        let mut room = max;
        for (start, chunk) in self.mem.range(first..) {
            if room == 0 || *start > at {
                break;
            }
            let from = usize::try_from(at - start).unwrap_or(0);
            let take = (chunk.len() - from).min(usize::try_from(room).unwrap_or(usize::MAX));
            if take == 0 {
                break;
            }
            out.push(chunk.slice(from..from + take));
            at += take as u64;
            room -= take as u64;
        }
        if room > 0
            && let Some(s) = &self.spill
            && at >= s.start
            && at < s.start + s.len
        {
            let n = (s.start + s.len - at).min(READ_CHUNK).min(room);
            let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
            s.file.read_exact_at(&mut buf, at - s.start)?;
            out.push(Bytes::from(buf));
        }
        // Nothing: released already (before `acked`), the gateway has it.
        Ok(out)
    }

    /// Releases everything before `offset`.
    pub fn ack(&mut self, offset: u64) {
        let offset = offset.min(self.total);
        if offset <= self.acked {
            return;
        }
        self.acked = offset;
        while let Some((start, chunk)) = self.mem.front() {
            if start + chunk.len() as u64 <= offset {
                self.mem_bytes -= charge(chunk.len() as u64);
                self.mem.pop_front();
            } else {
                break;
            }
        }
        if self
            .spill
            .as_ref()
            .is_some_and(|s| offset >= s.start + s.len)
            && let Some(s) = self.spill.take()
        {
            let _ = std::fs::remove_file(&s.path);
        }
    }

    /// Bytes held (memory plus disk).
    pub fn held(&self) -> u64 {
        self.total - self.acked
    }
}

impl Drop for OutBuf {
    fn drop(&mut self) {
        if let Some(s) = self.spill.take() {
            let _ = std::fs::remove_file(&s.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(b: &OutBuf, mut from: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let chunks = b.read_from(from, READ_CHUNK).unwrap();
            if chunks.is_empty() {
                return out;
            }
            for c in chunks {
                from += c.len() as u64;
                out.extend_from_slice(&c);
            }
        }
    }

    #[test]
    fn memory_then_spill_then_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.stdout");
        let mut b = OutBuf::new(path.clone());
        let big = vec![7u8; (MEM_CAP as usize) - 10];
        b.append(Bytes::from(big.clone())).unwrap();
        b.append(Bytes::from_static(b"0123456789abcdef")).unwrap(); // spills
        b.append(Bytes::from_static(b"tail")).unwrap(); // stays in the spill
        assert!(path.exists());
        let all = collect(&b, 0);
        assert_eq!(all.len(), big.len() + 20);
        assert_eq!(&all[big.len()..], b"0123456789abcdeftail");
        // Resume from the middle of the spill.
        assert_eq!(collect(&b, big.len() as u64 + 10), b"abcdeftail");
        b.ack(big.len() as u64);
        assert_eq!(b.held(), 20);
        assert!(
            b.read_from(0, 1).unwrap().is_empty(),
            "released bytes are gone"
        );
        b.ack(b.total());
        assert!(!path.exists(), "the spill file goes once it is acked");
        b.append(Bytes::from_static(b"again")).unwrap();
        assert!(!path.exists(), "back to memory");
        assert_eq!(collect(&b, b.acked()), b"again");
    }

    #[test]
    fn small_writes_are_read_back_as_one_frame_of_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = OutBuf::new(dir.path().join("x"));
        for k in 0..100u8 {
            b.append(Bytes::from(vec![k; 10])).unwrap();
        }
        // From the middle of a chunk, up to 25 bytes: three chunks' worth.
        let got = b.read_from(15, 25).unwrap();
        let lens: Vec<usize> = got.iter().map(Bytes::len).collect();
        assert_eq!(lens, [5, 10, 10]);
        assert_eq!(got.concat(), [&[1u8; 5][..], &[2; 10], &[3; 10]].concat());
        // Everything left, in one call, when the limit allows.
        let all = b.read_from(0, READ_CHUNK).unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(all.iter().map(Bytes::len).sum::<usize>(), 1000);
        assert!(b.read_from(1000, READ_CHUNK).unwrap().is_empty());
        b.ack(995);
        assert!(b.read_from(0, READ_CHUNK).unwrap().is_empty(), "released");
        assert_eq!(b.read_from(995, READ_CHUNK).unwrap().concat(), [99u8; 5]);
    }

    #[test]
    fn one_byte_chunks_count_for_more_than_their_byte_in_memory() {
        // A job that writes a byte at a time, each read apart, while the
        // gateway is away: each chunk costs a queue entry and an
        // allocation, so 16 MiB of them must not all stay in memory.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let mut b = OutBuf::new(path.clone());
        let mut n = 0u64;
        while b.fits_in_memory(1) && n < MEM_CAP / 64 {
            b.append(Bytes::from_static(b"x")).unwrap();
            n += 1;
        }
        assert!(n <= MEM_CAP / 1024, "{n} one-byte chunks in memory");
        b.append(Bytes::from_static(b"y")).unwrap();
        assert!(path.exists(), "the next byte spills");
        let mut want = vec![b'x'; n as usize];
        want.push(b'y');
        assert_eq!(collect(&b, 0), want, "every byte once, in order");
        b.ack(b.total());
        assert!(b.fits_in_memory(MEM_CAP), "acks give it all back");
    }

    #[test]
    fn acks_beyond_the_end_and_backwards_are_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = OutBuf::new(dir.path().join("x"));
        b.append(Bytes::from_static(b"hello")).unwrap();
        b.ack(99);
        assert_eq!(b.acked(), 5);
        b.ack(1);
        assert_eq!(b.acked(), 5);
        assert!(b.has_room(1));
    }
}
