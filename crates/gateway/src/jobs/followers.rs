//! Followers of a job: stored output from the log files, live output from
//! memory, state changes, and the end. `openclaw run`, `job logs --follow`,
//! chat front ends and fan-out mergers all read a job through [`follow`].

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;

use proto::{JobEvent, OutStream};

use super::{FOLLOW_CHUNK, Progress, TailChunk, log_path, record};
use crate::shared::Shared;

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
    let mut out = LogReader::new(
        log_path(shared, id, OutStream::Stdout),
        OutStream::Stdout,
        stdout_from,
    );
    let mut err = LogReader::new(
        log_path(shared, id, OutStream::Stderr),
        OutStream::Stderr,
        stderr_from,
    );
    // Allocated on the first file read: most followers (every member of a
    // fan-out of `true`) never read a file, and 10,000 zeroed 256 KiB
    // buffers were most of a large fan-out's page faults.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Live output from memory first; whatever is missing then comes
        // from the file (a follower that joined late or fell behind).
        while let Some(t) = tail.as_mut() {
            match t.try_recv() {
                Ok(c) => send_live(&c, &mut out, &mut err, send).await?,
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                Err(tokio::sync::broadcast::error::TryRecvError::Closed) => tail = None,
            }
        }
        let (progress, live) = match &rx {
            Some(rx) => (rx.borrow().clone(), true),
            None => (stored_progress(shared, id), false),
        };
        if output {
            out.send_to(progress.stdout, &mut buf, send).await?;
            err.send_to(progress.stderr, &mut buf, send).await?;
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
        match (rx.as_mut(), tail.as_mut()) {
            (Some(r), Some(t)) => tokio::select! {
                changed = r.changed() => {
                    if changed.is_err() {
                        rx = None;
                    }
                }
                chunk = t.recv() => match chunk {
                    Ok(c) => send_live(&c, &mut out, &mut err, send).await?,
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

fn stored_progress(shared: &Shared, id: u64) -> Progress {
    let len = |s| {
        std::fs::metadata(log_path(shared, id, s))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    Progress {
        stdout: len(OutStream::Stdout),
        stderr: len(OutStream::Stderr),
        state: String::new(),
        notes: 0,
    }
}

/// A follower's position in one log file; the file stays open while it follows.
struct LogReader {
    path: PathBuf,
    stream: OutStream,
    offset: u64,
    file: Option<File>,
}

impl LogReader {
    fn new(path: PathBuf, stream: OutStream, offset: u64) -> LogReader {
        LogReader {
            path,
            stream,
            offset,
            file: None,
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
        buf: &mut Vec<u8>,
        send: &mut impl FollowSink,
    ) -> Result<(), mesh::StreamError> {
        if self.offset >= to {
            return Ok(());
        }
        if self.file.is_none() {
            let Ok(mut f) = File::open(&self.path) else {
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
        if buf.is_empty() {
            buf.resize(FOLLOW_CHUNK, 0);
        }
        while self.offset < to {
            let want =
                usize::try_from((to - self.offset).min(buf.len() as u64)).unwrap_or(buf.len());
            let n = match file.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => n,
            };
            send.data(
                self.stream,
                self.offset,
                &mut vec![bytes::Bytes::copy_from_slice(&buf[..n])],
            )
            .await?;
            self.offset += n as u64;
        }
        Ok(())
    }
}
