//! Followers of a job: stored output from the log files (or the state
//! database, where output is stored there), live output from memory, state
//! changes, and the end. Output that should be stored but cannot be read
//! is reported as an error naming the job, never as an empty log. `openclaw run`, `job logs --follow`,
//! chat front ends and fan-out mergers all read a job through [`follow`].

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;

use proto::{JobEvent, OutStream};

use proto::{ApiError, ErrorCode};

use super::{FOLLOW_CHUNK, Progress, TailChunk, log_path, record};
use crate::shared::Shared;
use crate::store::StoreError;

/// Streams a job's output from the given offsets; with `follow`, until it
/// ends. Sends `State` whenever the state differs from what the follower
/// last heard (`known_state`, e.g. the state in `Accepted`) and `End` last.
pub async fn follow(
    shared: &Shared,
    id: u64,
    follow: bool,
    stdout_from: u64,
    stderr_from: u64,
    known_state: Option<&str>,
    send: &mut impl FollowSink,
) -> Result<(), mesh::StreamError> {
    let output = send.wants_output();
    let (mut rx, mut tail) = match shared.jobs.follow(id) {
        // A follower that wants no output never hears live chunks.
        Some((p, t)) => (Some(p), Some(t).filter(|_| output)),
        None => (None, None),
    };
    let mut last_state: Option<String> = known_state.map(str::to_string);
    let mut last_notes = 0u32;
    let in_db = match in_database(shared, id).await {
        Ok(d) => d,
        Err(e) => return send.event(JobEvent::Error(e)).await,
    };
    let source = |s| {
        if in_db {
            Source::Database(shared.store.clone(), id)
        } else {
            Source::File(log_path(shared, id, s))
        }
    };
    let mut out = LogReader::new(source(OutStream::Stdout), OutStream::Stdout, stdout_from);
    let mut err = LogReader::new(source(OutStream::Stderr), OutStream::Stderr, stderr_from);
    // The first live chunk that starts past what this follower has sent
    // (it fell behind and the broadcast dropped what came between): the
    // gap is read from the file up to that chunk, and then it and the
    // chunks queued after it go out from memory again. Without it a
    // follower that fell behind once read every later byte back from the
    // file (990 of 1,024 MiB in a 1 GiB run), since the file's durable
    // end is always behind the live chunks.
    let mut ahead: Option<TailChunk> = None;
    loop {
        // Live output from memory first; whatever is missing then comes
        // from the file (a follower that joined late or fell behind).
        while ahead.is_none()
            && let Some(t) = tail.as_mut()
        {
            match t.try_recv() {
                Ok(c) => take_live(c, &mut out, &mut err, &mut ahead, send).await?,
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                Err(tokio::sync::broadcast::error::TryRecvError::Closed) => tail = None,
            }
        }
        let (progress, live) = match &rx {
            Some(rx) => (rx.borrow().clone(), true),
            None => match stored_progress(shared, id, in_db).await {
                Ok(p) => (p, false),
                Err(e) => return send.event(JobEvent::Error(e)).await,
            },
        };
        if output {
            // Up to the chunk ahead while the job runs; everything stored
            // once it has ended (that chunk is in the file by then).
            let ended = !live || proto::is_terminal_state(&progress.state);
            let upto = |s: OutStream, to: u64| match &ahead {
                Some(c) if c.stream == s && !ended => to.min(c.offset),
                _ => to,
            };
            out.send_to(upto(OutStream::Stdout, progress.stdout), send)
                .await?;
            err.send_to(upto(OutStream::Stderr, progress.stderr), send)
                .await?;
            if let Some(e) = out.failed.take().or_else(|| err.failed.take()) {
                return send.event(JobEvent::Error(e)).await;
            }
            let caught_up = |c: &TailChunk| {
                let reader = if c.stream == OutStream::Stdout {
                    &out
                } else {
                    &err
                };
                reader.offset >= c.offset
            };
            if let Some(c) = ahead.take_if(|c| caught_up(c)) {
                send_live(&c, &mut out, &mut err, send).await?;
                // Back to the live chunks queued behind it.
                continue;
            }
        }
        let done = !live || proto::is_terminal_state(&progress.state);
        if done || !follow {
            let info = match record(shared, id).await {
                Ok(i) => i,
                Err(e) => return send.event(JobEvent::Error(e)).await,
            };
            if live && !proto::is_terminal_state(&info.state) && follow {
                // Raced with the end of the job; look again.
                continue;
            }
            if output
                && !live
                && let Some(e) = missing_output(shared, &info, &progress, in_db)
            {
                return send.event(JobEvent::Error(e)).await;
            }
            return send.event(JobEvent::End(info)).await;
        }
        if last_state.as_deref() != Some(progress.state.as_str()) || progress.notes != last_notes {
            // A state the follower has not heard yet, the first one
            // included: a job may already be running when following starts.
            if let Ok(info) = record(shared, id).await {
                send.event(JobEvent::State(info)).await?;
            }
            last_state = Some(progress.state.clone());
            last_notes = progress.notes;
        }
        // Wake for bytes written or a new state (progress), or for a live
        // chunk, which reaches followers before the log writer has it.
        // With a chunk ahead, only the file's progress matters until the
        // gap before it is filled.
        match (rx.as_mut(), tail.as_mut().filter(|_| ahead.is_none())) {
            (Some(r), Some(t)) => tokio::select! {
                changed = r.changed() => {
                    if changed.is_err() {
                        rx = None;
                    }
                }
                chunk = t.recv() => match chunk {
                    Ok(c) => take_live(c, &mut out, &mut err, &mut ahead, send).await?,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => tail = None,
                },
            },
            (Some(r), None) => {
                if r.changed().await.is_err() {
                    rx = None;
                }
            }
            (None, _) => {}
        }
    }
}

/// Sends a live chunk through the reader of its stream, or keeps it in
/// `ahead` when it starts past what that reader has sent (a gap the file
/// fills first).
async fn take_live(
    c: TailChunk,
    out: &mut LogReader,
    err: &mut LogReader,
    ahead: &mut Option<TailChunk>,
    send: &mut impl FollowSink,
) -> Result<(), mesh::StreamError> {
    let at = if c.stream == OutStream::Stdout {
        out.offset
    } else {
        err.offset
    };
    if c.offset > at {
        *ahead = Some(c);
        return Ok(());
    }
    send_live(&c, out, err, send).await
}

/// Sends a live chunk through the reader of its stream.
async fn send_live(
    c: &TailChunk,
    out: &mut LogReader,
    err: &mut LogReader,
    send: &mut impl FollowSink,
) -> Result<(), mesh::StreamError> {
    let reader = if c.stream == OutStream::Stdout {
        out
    } else {
        err
    };
    reader.send_live(c, send).await
}

/// Where [`follow`] writes: a client's stream, or a fan-out's merger.
pub trait FollowSink: Send {
    /// Whether it takes output at all; `false` follows only state and the
    /// end, and no log file is read for it.
    fn wants_output(&self) -> bool {
        true
    }

    /// Contiguous output of `stream` starting at `offset`.
    fn data(
        &mut self,
        stream: OutStream,
        offset: u64,
        parts: &mut Vec<bytes::Bytes>,
    ) -> impl Future<Output = Result<(), mesh::StreamError>> + Send;
    /// A job event (never `Output`).
    fn event(&mut self, ev: JobEvent)
    -> impl Future<Output = Result<(), mesh::StreamError>> + Send;
}

impl FollowSink for crate::link::SendHalf {
    async fn data(
        &mut self,
        stream: OutStream,
        offset: u64,
        parts: &mut Vec<bytes::Bytes>,
    ) -> Result<(), mesh::StreamError> {
        mesh::write_data_chunks(self, stream, offset, parts).await
    }

    async fn event(&mut self, ev: JobEvent) -> Result<(), mesh::StreamError> {
        mesh::write_frame(self, &ev).await
    }
}

/// Whether job `id`'s output is read from the database (see
/// [`super::output_in_files`]).
async fn in_database(shared: &Shared, id: u64) -> Result<bool, ApiError> {
    if !shared.output_db {
        return Ok(false);
    }
    let lens = shared
        .store
        .call(move |tx| Ok::<_, StoreError>([tx.output_len(id, 0)?, tx.output_len(id, 1)?]))
        .await
        .map_err(|e| unreadable(id, "output", &e))?;
    Ok(!super::output_in_files(shared, id, lens))
}

/// How much output of a job that is not live is stored, per stream.
async fn stored_progress(shared: &Shared, id: u64, in_db: bool) -> Result<Progress, ApiError> {
    let (stdout, stderr) = if in_db {
        shared
            .store
            .call(move |tx| Ok::<_, StoreError>((tx.output_len(id, 0)?, tx.output_len(id, 1)?)))
            .await
            .map_err(|e| unreadable(id, "output", &e))?
    } else {
        let len = |s| {
            std::fs::metadata(log_path(shared, id, s))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        (len(OutStream::Stdout), len(OutStream::Stderr))
    };
    Ok(Progress {
        stdout,
        stderr,
        state: String::new(),
        notes: 0,
    })
}

fn unreadable(id: u64, what: &str, e: &StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!(
            "cannot read job {id}'s {what} from the state database: {e}; try again once the database answers"
        ),
    )
}

/// An error when a job that ended recorded output this gateway does not
/// hold (a log removed by retention's `logs_max_bytes`, or written to a
/// logs directory this gateway does not see): never an empty log instead.
fn missing_output(
    shared: &Shared,
    info: &proto::JobInfo,
    stored: &Progress,
    in_db: bool,
) -> Option<ApiError> {
    let mut missing = Vec::new();
    for (name, recorded, held) in [
        ("stdout", info.stdout_bytes, stored.stdout),
        ("stderr", info.stderr_bytes, stored.stderr),
    ] {
        // A truncated log holds less than the node sent, by design.
        if recorded > 0 && (held == 0 || (held < recorded && !info.truncated)) {
            missing.push(format!("{name}: {held} of {recorded} bytes"));
        }
    }
    if missing.is_empty() {
        return None;
    }
    let id = info.id;
    let r#where = if in_db {
        "in the state database".to_string()
    } else {
        format!("in {}", shared.logs_dir.display())
    };
    Some(ApiError::new(
        ErrorCode::NotFound,
        format!(
            "job {id}'s output is not all stored {where} ({}): it was removed by [retention] logs_max_bytes, \
             or written by another gateway to a logs directory this one does not see ([state] output = \"files\" \
             without a shared logs_dir)",
            missing.join(", ")
        ),
    ))
}

/// Where a reader's bytes are stored.
enum Source {
    /// A log file.
    File(PathBuf),
    /// The `job_output` rows of a job in the state database.
    Database(crate::store::Store, u64),
}

/// A follower's position in one log; a file stays open while it follows.
struct LogReader {
    source: Source,
    stream: OutStream,
    offset: u64,
    file: Option<File>,
    /// Why stored output could not be read (the follower is told).
    failed: Option<ApiError>,
}

impl LogReader {
    fn new(source: Source, stream: OutStream, offset: u64) -> LogReader {
        LogReader {
            source,
            stream,
            offset,
            file: None,
            failed: None,
        }
    }

    /// Sends a live chunk if it continues where this reader is; a chunk
    /// after a gap is left for the file catch-up.
    async fn send_live(
        &mut self,
        c: &TailChunk,
        send: &mut impl FollowSink,
    ) -> Result<(), mesh::StreamError> {
        let end = c.offset + c.len();
        if c.offset > self.offset || end <= self.offset {
            return Ok(());
        }
        let mut skip = usize::try_from(self.offset - c.offset).unwrap_or(0);
        let mut parts: Vec<bytes::Bytes> = Vec::with_capacity(c.data.len());
        for b in &c.data {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            parts.push(b.slice(skip..));
            skip = 0;
        }
        send.data(self.stream, self.offset, &mut parts).await?;
        self.offset = end;
        // The file position is now stale.
        self.file = None;
        Ok(())
    }

    /// Sends the bytes from the current offset up to `to`.
    async fn send_to(
        &mut self,
        to: u64,
        send: &mut impl FollowSink,
    ) -> Result<(), mesh::StreamError> {
        if self.offset >= to {
            return Ok(());
        }
        let path = match &self.source {
            Source::File(p) => p.clone(),
            Source::Database(store, job) => {
                let (store, job) = (store.clone(), *job);
                return self.send_stored(&store, job, to, send).await;
            }
        };
        if self.file.is_none() {
            let Ok(mut f) = File::open(&path) else {
                return Ok(());
            };
            if f.seek(SeekFrom::Start(self.offset)).is_err() {
                return Ok(());
            }
            self.file = Some(f);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        while self.offset < to {
            // Read straight into the buffer that is sent: the bytes are
            // copied once, by the kernel, not again into a Bytes.
            // Allocated per read, and only by a follower that reads the
            // file: most (every member of a fan-out of `true`) never do.
            let want = usize::try_from((to - self.offset).min(FOLLOW_CHUNK as u64))
                .unwrap_or(FOLLOW_CHUNK);
            let mut data = bytes::BytesMut::zeroed(want);
            let n = match file.read(&mut data) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => n,
            };
            data.truncate(n);
            send.data(self.stream, self.offset, &mut vec![data.freeze()])
                .await?;
            self.offset += n as u64;
        }
        Ok(())
    }

    /// Sends the bytes from the current offset up to `to` from the state
    /// database; a read that fails is kept in `failed`.
    async fn send_stored(
        &mut self,
        store: &crate::store::Store,
        job: u64,
        to: u64,
        send: &mut impl FollowSink,
    ) -> Result<(), mesh::StreamError> {
        let stream = u8::from(self.stream == OutStream::Stderr);
        while self.offset < to {
            let from = self.offset;
            let chunks = match store
                .call(move |tx| tx.read_output(job, stream, from))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    let name = if stream == 1 { "stderr" } else { "stdout" };
                    self.failed = Some(unreadable(job, name, &e));
                    return Ok(());
                }
            };
            let before = self.offset;
            for (pos, data) in chunks {
                let end = (pos + data.len() as u64).min(to);
                if pos > self.offset || end <= self.offset {
                    continue;
                }
                let skip = usize::try_from(self.offset - pos).unwrap_or(0);
                let take = usize::try_from(end - pos).unwrap_or(data.len());
                let mut part = vec![bytes::Bytes::from(data).slice(skip..take)];
                send.data(self.stream, self.offset, &mut part).await?;
                self.offset = end;
            }
            if self.offset == before {
                // Not stored (yet): the progress said more than the rows hold.
                return Ok(());
            }
        }
        Ok(())
    }
}
