//! Job logs on disk, written by a thread of their own.
//!
//! The relay (`node_job_stream`) decides where each byte goes
//! ([`LogFile::append`]: exactly once, capped) and hands the bytes to live
//! followers at once; the *log writer* thread writes them to the files
//! behind them. Only after a write does the writer raise the durable
//! offsets that file readers follow (`Progress`), ack the node (which may
//! then drop the bytes from its spool) and record what a re-attachment
//! resumes from. So a gateway killed mid-write loses nothing: the node
//! still holds every byte it was not acked for.
//!
//! Each write lands at its stream offset (not appended), so a stale
//! writer of the same file rewrites the same bytes (see
//! [`LogSink::new`]'s `append`).
//!
//! One thread serves every job, through one bounded queue: the relay waits
//! when the disk is behind, and the bytes waiting are bounded by
//! [`QUEUE`] data frames.
//!
//! On PostgreSQL state (an HA group, `Shared::output_db`) a sink writes to
//! the database's `job_output` instead of files ([`LogSink::in_database`]):
//! the thread takes every write queued at once (at most [`QUEUE`] frames,
//! about [`BATCH_BYTES`]) into one transaction, which carries the lease
//! generation like every leader write (a fenced leader stores nothing),
//! and raises offsets and acks the node only after its commit. The
//! database is then the source of truth for every gateway of the group;
//! this gateway keeps no file copy.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use super::Progress;
use crate::store::Store;

/// Write requests queued at once (each at most one data frame, 1 MiB).
const QUEUE: usize = 64;

/// Bytes of output the thread takes into one database transaction, about
/// (it stops taking more requests past it).
const BATCH_BYTES: usize = 8 << 20;

/// A job log being appended to (the relay's bookkeeping; the bytes go to
/// the writer thread).
pub(super) struct LogFile {
    /// Bytes received from the node.
    pub received: u64,
    /// Bytes in the file once every queued write is done (capped, plus marker).
    pub written: u64,
    pub truncated: bool,
    /// Kept chunks not yet queued, with their file offsets. A data frame
    /// arrives as many small QUIC chunks; they go to the file in one
    /// vectored write per frame, without being copied together first.
    pending: Vec<(u64, bytes::Bytes)>,
}

impl LogFile {
    /// The bookkeeping of a job log at `path`, which may not exist yet (a
    /// log file is created by the writer on its first byte: a fan-out of
    /// `true` to 10,000 nodes created 20,000 empty files before).
    /// `received` is how much the node has sent so far when known (it
    /// differs from the file length once the log is truncated); otherwise
    /// the file length.
    pub fn open(
        path: &PathBuf,
        received: Option<u64>,
        truncated: bool,
    ) -> std::io::Result<LogFile> {
        let len = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(LogFile::at(len, received, truncated))
    }

    /// The bookkeeping of a job log that holds `len` bytes (a file's, or
    /// the database's stored length); `received` as for [`LogFile::open`].
    pub fn at(len: u64, received: Option<u64>, truncated: bool) -> LogFile {
        LogFile {
            received: received.unwrap_or(len).max(len),
            written: len,
            truncated,
            pending: Vec::new(),
        }
    }

    /// Takes the part of `data` at `offset` not yet taken. Exactly once:
    /// bytes before `received` are skipped; a gap is an error.
    pub fn append(&mut self, offset: u64, data: bytes::Bytes, cap: u64) -> Result<(), String> {
        if offset > self.received {
            return Err(format!(
                "output gap: expected offset {}, got {offset}",
                self.received
            ));
        }
        let skip = usize::try_from(self.received - offset).unwrap_or(usize::MAX);
        if skip >= data.len() {
            return Ok(());
        }
        let fresh = data.slice(skip..);
        self.received += fresh.len() as u64;
        if self.truncated {
            return Ok(());
        }
        let room = usize::try_from(cap.saturating_sub(self.written)).unwrap_or(usize::MAX);
        let keep = fresh.slice(..fresh.len().min(room));
        let kept = keep.len();
        if kept > 0 {
            self.pending.push((self.written, keep));
            self.written += kept as u64;
        }
        if kept < fresh.len() {
            let marker =
                format!("\n[openclaw: output truncated at {cap} bytes; the job kept running]\n");
            let len = marker.len() as u64;
            self.pending
                .push((self.written, bytes::Bytes::from(marker)));
            self.written += len;
            self.truncated = true;
        }
        Ok(())
    }

    /// The chunks taken since the last call, with their file offsets.
    pub fn take(&mut self) -> Vec<(u64, bytes::Bytes)> {
        std::mem::take(&mut self.pending)
    }
}

/// `write_all` for a list of chunks, with `writev`.
pub(super) fn write_all_chunks(
    file: &mut File,
    chunks: &[(u64, bytes::Bytes)],
) -> std::io::Result<()> {
    let (mut idx, mut skip) = (0usize, 0usize);
    while idx < chunks.len() {
        let slices: Vec<std::io::IoSlice<'_>> = chunks[idx..]
            .iter()
            .take(512)
            .enumerate()
            .map(|(i, (_, c))| std::io::IoSlice::new(if i == 0 { &c[skip..] } else { &c[..] }))
            .collect();
        let mut n = file.write_vectored(&slices)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < chunks.len() {
            let rest = chunks[idx].1.len() - skip;
            if n >= rest {
                n -= rest;
                idx += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// One attachment's logs, as the writer thread sees them.
pub(crate) struct LogSink {
    target: Target,
    progress: watch::Sender<Progress>,
    acks: watch::Sender<[u64; 2]>,
    /// Called with the durable received offsets after each write (the
    /// live table's re-attachment hint).
    durable: Box<dyn Fn([u64; 2]) + Send + Sync>,
    failed: Mutex<Option<String>>,
}

/// Where a sink's bytes go.
enum Target {
    /// The stdout and stderr files, opened (created) on the first write
    /// to each.
    Files {
        paths: [PathBuf; 2],
        files: Mutex<[Option<File>; 2]>,
    },
    /// The state database's `job_output` rows of one job.
    Database { store: Store, job: u64 },
}

impl LogSink {
    /// A sink for the stdout and stderr files of one job stream.
    pub fn new(
        stdout: PathBuf,
        stderr: PathBuf,
        progress: watch::Sender<Progress>,
        acks: watch::Sender<[u64; 2]>,
        durable: impl Fn([u64; 2]) + Send + Sync + 'static,
    ) -> Arc<LogSink> {
        Arc::new(LogSink {
            target: Target::Files {
                paths: [stdout, stderr],
                files: Mutex::new([None, None]),
            },
            progress,
            acks,
            durable: Box::new(durable),
            failed: Mutex::new(None),
        })
    }

    /// A sink that stores job `job`'s output in the state database.
    pub fn in_database(
        store: Store,
        job: u64,
        progress: watch::Sender<Progress>,
        acks: watch::Sender<[u64; 2]>,
        durable: impl Fn([u64; 2]) + Send + Sync + 'static,
    ) -> Arc<LogSink> {
        Arc::new(LogSink {
            target: Target::Database { store, job },
            progress,
            acks,
            durable: Box::new(durable),
            failed: Mutex::new(None),
        })
    }

    fn failure(&self) -> Option<String> {
        match self.failed.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Writes chunks to one stream's file at their offsets, creating it
    /// on its first byte. Positional, not appending: the bytes at an offset
    /// of a job's stream are the same whoever writes them, so a second
    /// writer of the same log (a paused leader that wakes after a standby
    /// took over, both on a shared log directory) rewrites identical bytes
    /// instead of appending a copy.
    fn append(&self, stream: usize, chunks: &[(u64, bytes::Bytes)]) -> Result<(), String> {
        let Target::Files { paths, files } = &self.target else {
            return Err("a database sink has no files".into());
        };
        let mut files = files
            .lock()
            .map_err(|_| "log file lock poisoned".to_string())?;
        let (Some(slot), Some(path)) = (files.get_mut(stream), paths.get(stream)) else {
            return Ok(());
        };
        if slot.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(|e| format!("cannot create the job log {}: {e}", path.display()))?;
            *slot = Some(f);
        }
        match (slot.as_mut(), chunks.first()) {
            (Some(f), Some((at, _))) => {
                use std::io::Seek as _;
                f.seek(std::io::SeekFrom::Start(*at))
                    .and_then(|_| write_all_chunks(f, chunks))
                    .map_err(|e| format!("cannot write the job log: {e}"))
            }
            _ => Ok(()),
        }
    }

    fn fail(&self, msg: String) {
        tracing::error!(error = %msg, "log writer");
        if let Ok(mut g) = self.failed.lock() {
            *g = Some(msg);
        }
    }

    fn write(
        &self,
        stream: usize,
        chunks: &[(u64, bytes::Bytes)],
        received: [u64; 2],
        written: [u64; 2],
    ) {
        if self.failure().is_some() {
            return;
        }
        // Nothing to write (bytes past the cap, a resend): only the offsets
        // and the ack move on.
        if !chunks.is_empty()
            && let Err(e) = self.append(stream, chunks)
        {
            self.fail(e);
            return;
        }
        self.stored(received, written);
    }

    /// The bytes up to `written` are durable: followers may read them, the
    /// live table records `received` and the node is acked for it.
    fn stored(&self, received: [u64; 2], written: [u64; 2]) {
        self.progress.send_modify(|p| {
            p.stdout = written[0];
            p.stderr = written[1];
        });
        (self.durable)(received);
        self.acks.send_replace(received);
    }

    /// The database and job of a database sink.
    fn database(&self) -> Option<(&Store, u64)> {
        match &self.target {
            Target::Database { store, job } => Some((store, *job)),
            Target::Files { .. } => None,
        }
    }
}

/// A write waiting for its database transaction.
#[derive(Clone)]
struct DbWrite {
    sink: Arc<LogSink>,
    stream: usize,
    chunks: Vec<(u64, bytes::Bytes)>,
    received: [u64; 2],
    written: [u64; 2],
}

/// Stores `writes` (all of one store) in one transaction, then raises each
/// sink's offsets and acks, in order. When the transaction fails, each
/// sink's writes are tried again in a transaction of their own, so that
/// one job's refused chunk (a gap) fails only that job's stream.
fn commit(store: &Store, writes: Vec<DbWrite>) {
    let writes: Vec<DbWrite> = writes
        .into_iter()
        .filter(|w| w.sink.failure().is_none())
        .collect();
    if writes.is_empty() {
        return;
    }
    match store_writes(store, &writes) {
        Ok(()) => {
            for w in &writes {
                w.sink.stored(w.received, w.written);
            }
        }
        Err(e) => {
            let mut sinks: Vec<Arc<LogSink>> = Vec::new();
            for w in &writes {
                if !sinks.iter().any(|s| Arc::ptr_eq(s, &w.sink)) {
                    sinks.push(w.sink.clone());
                }
            }
            if sinks.len() == 1 {
                writes[0].sink.fail(e);
                return;
            }
            for sink in sinks {
                let alone: Vec<DbWrite> = writes
                    .iter()
                    .filter(|w| Arc::ptr_eq(&w.sink, &sink))
                    .cloned()
                    .collect();
                match store_writes(store, &alone) {
                    Ok(()) => {
                        for w in &alone {
                            w.sink.stored(w.received, w.written);
                        }
                    }
                    Err(e) => sink.fail(e),
                }
            }
        }
    }
}

fn store_writes(store: &Store, writes: &[DbWrite]) -> Result<(), String> {
    // Meanwhile the nodes' spools hold the bytes (nothing is acked), so a
    // database that comes back loses nothing and breaks no job's stream.
    let mut pauses = crate::store::BLIP_PAUSES_MS.iter();
    loop {
        let tried = store.tx(|tx| {
            for w in writes {
                if let (Some((_, job)), false) = (w.sink.database(), w.chunks.is_empty()) {
                    tx.append_output(job, u8::from(w.stream == 1), &w.chunks)?;
                }
            }
            Ok::<_, crate::store::StoreError>(())
        });
        match tried {
            Ok(()) => return Ok(()),
            Err(
                // Unreachable, busy, or the client's own error (a broken
                // socket mid-transaction): worth another try. A fence, a
                // refused chunk (a gap) or bad data is not.
                e @ (crate::store::StoreError::Unavailable(_)
                | crate::store::StoreError::Busy(_)
                | crate::store::StoreError::Engine(_)),
            ) => match pauses.next() {
                Some(ms) => {
                    tracing::warn!(
                        "cannot store job output in the state database yet ({e}); trying again in {ms} ms"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(*ms));
                }
                None => {
                    return Err(format!(
                        "cannot store the job's output in the state database: {e}"
                    ));
                }
            },
            Err(e) => {
                return Err(format!(
                    "cannot store the job's output in the state database: {e}"
                ));
            }
        }
    }
}

/// Runs the requests taken at once: file writes at once, database writes
/// in one transaction per store run, committed before any flush is
/// answered.
fn run(reqs: Vec<Request>) {
    let mut pending: Vec<DbWrite> = Vec::new();
    let flush = |pending: &mut Vec<DbWrite>| {
        while let Some(first) = pending.first() {
            let Some((store, _)) = first.sink.database() else {
                pending.remove(0);
                continue;
            };
            let store = store.clone();
            let n = pending
                .iter()
                .take_while(|w| w.sink.database().is_some_and(|(s, _)| s.same(&store)))
                .count();
            let run: Vec<DbWrite> = pending.drain(..n.max(1)).collect();
            commit(&store, run);
        }
    };
    for req in reqs {
        match req {
            Request::Write {
                sink,
                stream,
                chunks,
                received,
                written,
            } => {
                if sink.database().is_some() {
                    pending.push(DbWrite {
                        sink,
                        stream,
                        chunks,
                        received,
                        written,
                    });
                } else {
                    sink.write(stream, &chunks, received, written);
                }
            }
            Request::Flush { sink, done } => {
                flush(&mut pending);
                let _ = done.send(match sink.failure() {
                    Some(e) => Err(e),
                    None => Ok(()),
                });
            }
        }
    }
    flush(&mut pending);
}

enum Request {
    Write {
        sink: Arc<LogSink>,
        stream: usize,
        chunks: Vec<(u64, bytes::Bytes)>,
        received: [u64; 2],
        written: [u64; 2],
    },
    Flush {
        sink: Arc<LogSink>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

impl Request {
    /// Output bytes it carries.
    fn bytes(&self) -> usize {
        match self {
            Request::Write { chunks, .. } => chunks.iter().map(|(_, c)| c.len()).sum(),
            Request::Flush { .. } => 0,
        }
    }
}

/// The handle to the log writer thread.
pub(crate) struct LogWriter {
    tx: mpsc::Sender<Request>,
}

impl LogWriter {
    /// Starts the thread.
    pub fn start() -> std::io::Result<LogWriter> {
        let (tx, mut rx) = mpsc::channel::<Request>(QUEUE);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    // Everything queued now, bounded, goes in one batch.
                    let mut bytes = first.bytes();
                    let mut reqs = vec![first];
                    while reqs.len() < QUEUE && bytes < BATCH_BYTES {
                        match rx.try_recv() {
                            Ok(r) => {
                                bytes += r.bytes();
                                reqs.push(r);
                            }
                            Err(_) => break,
                        }
                    }
                    run(reqs);
                }
            })?;
        Ok(LogWriter { tx })
    }

    /// Queues a write; waits while the queue is full. `received` and
    /// `written` are both streams' offsets once this write is done.
    pub async fn write(
        &self,
        sink: &Arc<LogSink>,
        stream: usize,
        chunks: Vec<(u64, bytes::Bytes)>,
        received: [u64; 2],
        written: [u64; 2],
    ) -> Result<(), String> {
        if let Some(e) = sink.failure() {
            return Err(e);
        }
        self.tx
            .send(Request::Write {
                sink: sink.clone(),
                stream,
                chunks,
                received,
                written,
            })
            .await
            .map_err(|_| "the log writer stopped".to_string())
    }

    /// Waits until every write queued for `sink` is on disk (in the page
    /// cache); fails if one of them failed.
    pub async fn flush(&self, sink: &Arc<LogSink>) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Request::Flush {
                sink: sink.clone(),
                done,
            })
            .await
            .map_err(|_| "the log writer stopped".to_string())?;
        wait.await
            .map_err(|_| "the log writer stopped".to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_takes_exactly_once_and_caps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.stdout");
        let mut f = LogFile::open(&path, None, false).unwrap();
        assert!(!path.exists(), "nothing is created before a byte comes");
        f.append(0, bytes::Bytes::from_static(b"hello "), 100)
            .unwrap();
        // A resend overlapping what was taken: only the new part counts.
        f.append(3, bytes::Bytes::from_static(b"lo world"), 100)
            .unwrap();
        assert_eq!(f.received, 11);
        let taken: Vec<u8> = f.take().iter().flat_map(|(_, b)| b.to_vec()).collect();
        assert_eq!(taken, b"hello world");
        assert!(
            f.append(20, bytes::Bytes::from_static(b"x"), 100)
                .unwrap_err()
                .contains("gap")
        );
        // Past the cap: a marker, then nothing more.
        f.append(11, bytes::Bytes::from(vec![b'a'; 200]), 100)
            .unwrap();
        assert!(f.truncated);
        let chunks = f.take();
        assert_eq!(chunks[0].0, 11, "file offsets");
        assert_eq!(chunks[0].1.len(), 89);
        assert!(String::from_utf8_lossy(&chunks[1].1).contains("truncated at 100 bytes"));
        f.append(211, bytes::Bytes::from_static(b"more"), 100)
            .unwrap();
        assert!(f.take().is_empty());
        assert_eq!(f.received, 215);
    }

    #[test]
    fn a_stale_second_writer_of_a_log_rewrites_the_same_bytes() {
        // A new leader has written the whole stream; the old one wakes and
        // writes what it had queued (bytes 3..9) from its own bookkeeping.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let sink = |p: &PathBuf| {
            LogSink::new(
                p.clone(),
                dir.path().join("e"),
                watch::channel(Progress::default()).0,
                watch::channel([0u64; 2]).0,
                |_| {},
            )
        };
        let (new, old) = (sink(&path), sink(&path));
        let whole = b"abcdefghijkl";
        new.append(
            0,
            &[
                (0, bytes::Bytes::from_static(&whole[..6])),
                (6, bytes::Bytes::from_static(&whole[6..])),
            ],
        )
        .unwrap();
        old.append(0, &[(3, bytes::Bytes::from_static(&whole[3..9]))])
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), whole, "no copy appended");
        // And the other order: the old one first, the new one after.
        let path2 = dir.path().join("o2");
        let (new, old) = (sink(&path2), sink(&path2));
        old.append(0, &[(0, bytes::Bytes::from_static(&whole[..4]))])
            .unwrap();
        new.append(0, &[(0, bytes::Bytes::from_static(&whole[..]))])
            .unwrap();
        old.append(0, &[(4, bytes::Bytes::from_static(&whole[4..7]))])
            .unwrap();
        assert_eq!(std::fs::read(&path2).unwrap(), whole);
    }

    #[test]
    fn the_writer_writes_in_order_then_raises_offsets_and_acks() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut out = LogFile::open(&dir.path().join("o"), None, false).unwrap();
            let progress = watch::channel(Progress::default()).0;
            let mut seen = progress.subscribe();
            let (acks, acks_rx) = watch::channel([0u64; 2]);
            let durable = Arc::new(Mutex::new([0u64; 2]));
            let d = durable.clone();
            let sink = LogSink::new(
                dir.path().join("o"),
                dir.path().join("e"),
                progress,
                acks,
                move |r| *d.lock().unwrap() = r,
            );
            let w = LogWriter::start().unwrap();
            for part in [&b"abc"[..], b"def", b"ghi"] {
                out.append(out.received, bytes::Bytes::copy_from_slice(part), 1 << 20)
                    .unwrap();
                w.write(&sink, 0, out.take(), [out.received, 0], [out.written, 0])
                    .await
                    .unwrap();
            }
            w.flush(&sink).await.unwrap();
            assert_eq!(std::fs::read(dir.path().join("o")).unwrap(), b"abcdefghi");
            assert_eq!(seen.borrow_and_update().stdout, 9);
            assert_eq!(*acks_rx.borrow(), [9, 0]);
            assert_eq!(*durable.lock().unwrap(), [9, 0]);
            assert!(!dir.path().join("e").exists(), "no stderr, no file");
            // Bytes taken but not kept (past the cap) are still acked, in
            // order, and create no file.
            let mut err = LogFile::open(&dir.path().join("e"), None, true).unwrap();
            err.append(0, bytes::Bytes::from_static(b"dropped"), 1 << 20)
                .unwrap();
            let none = err.take();
            assert!(none.is_empty());
            w.write(&sink, 1, none, [9, err.received], [9, err.written])
                .await
                .unwrap();
            w.flush(&sink).await.unwrap();
            assert_eq!(*acks_rx.borrow(), [9, 7]);
            assert!(!dir.path().join("e").exists());
        });
    }

    #[test]
    fn a_database_sink_stores_each_byte_once_then_acks_and_refuses_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let acks_seen = rt.block_on(async {
            let mut out = LogFile::at(0, None, false);
            let progress = watch::channel(Progress::default()).0;
            let (acks, acks_rx) = watch::channel([0u64; 2]);
            let sink = LogSink::in_database(store.clone(), 5, progress, acks, |_| {});
            let w = LogWriter::start().unwrap();
            for part in [&b"abc"[..], b"def", b"ghi"] {
                out.append(out.received, bytes::Bytes::copy_from_slice(part), 1 << 20)
                    .unwrap();
                w.write(&sink, 0, out.take(), [out.received, 0], [out.written, 0])
                    .await
                    .unwrap();
            }
            // A resend of stored bytes by a second attachment: stored once.
            let (again_acks, again_rx) = watch::channel([0u64; 2]);
            let again = LogSink::in_database(
                store.clone(),
                5,
                watch::channel(Progress::default()).0,
                again_acks,
                |_| {},
            );
            w.write(
                &again,
                0,
                vec![(3, bytes::Bytes::from_static(b"defg"))],
                [7, 0],
                [7, 0],
            )
            .await
            .unwrap();
            w.flush(&again).await.unwrap();
            w.flush(&sink).await.unwrap();
            let seen = *acks_rx.borrow();
            // A gap fails the sink: nothing acked, the flush says why.
            w.write(
                &again,
                0,
                vec![(20, bytes::Bytes::from_static(b"x"))],
                [21, 0],
                [21, 0],
            )
            .await
            .unwrap();
            let e = w.flush(&again).await.unwrap_err();
            assert!(e.contains("gap") && e.contains("job 5"), "{e}");
            assert_eq!(*again_rx.borrow(), [7, 0], "the gap is not acked");
            seen
        });
        assert_eq!(acks_seen, [9, 0]);
        let stored = store
            .tx(|tx| {
                let mut all = Vec::new();
                for (_, d) in tx.read_output(5, 0, 0)? {
                    all.extend(d);
                }
                Ok::<_, crate::store::StoreError>((all, tx.output_len(5, 0)?))
            })
            .unwrap();
        assert_eq!(stored, (b"abcdefghi".to_vec(), 9));
        assert!(!dir.path().join("5.stdout").exists(), "no file copy");
    }
}
