//! A job's output into its spool: its stdout and stderr pipes, or, for a
//! job on a terminal, the terminal's master side (all on stdout).

use std::process::Stdio;
use std::sync::Arc;

use proto::OutStream;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;

use super::Job;

/// Bytes read from a pipe at a time, at most.
const CHUNK: usize = 256 * 1024;
/// The least room a read is given before a fresh buffer is taken.
const MIN_READ: usize = 64 * 1024;
/// Pipe buffer asked of the kernel for job output (the default is 64 KiB);
/// fewer, larger reads and frames for chatty jobs.
const PIPE_SIZE: i32 = 1 << 20;

/// Gives `cmd` its stdio: for a job on a terminal, a new terminal's slave
/// side as all three (the shim makes it a session, and process group, of
/// its own, with this terminal as its controlling one), and returns the
/// master; else pipes (stdin one only with input, /dev/null otherwise)
/// and a process group of its own.
pub(super) fn wire(
    job: &Job,
    cmd: &mut tokio::process::Command,
) -> std::io::Result<Option<Arc<crate::pty::Master>>> {
    if let Some(t) = &job.tty {
        let (m, slave) = crate::pty::open(t.cols, t.rows)?;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        return Ok(Some(Arc::new(m)));
    }
    cmd.stdin(if job.input {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    Ok(None)
}

pub(super) fn grow_pipe(fd: &impl std::os::fd::AsFd) {
    // Best effort: the kernel may cap it (fs.pipe-max-size); 64 KiB still works.
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
}

pub(super) async fn pump(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    stream: OutStream,
    job: Arc<Job>,
    mut ended: watch::Receiver<bool>,
) -> bool {
    // One buffer, split after each read: the bytes reach quinn without a
    // copy. Reads fill its spare room (never zeroed), so a job that
    // writes 8 KiB at a time shares one allocation among many reads; a
    // new one is taken only when less than MIN_READ is left.
    let mut buf = bytes::BytesMut::new();
    let mut after_end = AfterEnd::default();
    loop {
        if buf.capacity() - buf.len() < MIN_READ {
            buf = bytes::BytesMut::with_capacity(CHUNK);
        }
        let read = match after_end.step(&mut ended, pipe.read_buf(&mut buf)).await {
            Step::Read(r) => r,
            Step::Again => continue,
            Step::Held => return held_outside(&job),
        };
        match read {
            Ok(0) | Err(_) => return false,
            Ok(_) => {
                let chunk = buf.split().freeze();
                if let Err(e) = job.push(stream, chunk).await {
                    tracing::error!(job = job.plan.job_id, error = %e, "cannot spool job output; output is lost from here");
                    return false;
                }
            }
        }
    }
}

/// Copies a job's terminal into its stdout spool until the terminal's
/// last slave side closes.
pub(super) async fn pump_tty(
    master: Arc<crate::pty::Master>,
    job: Arc<Job>,
    mut ended: watch::Receiver<bool>,
) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let mut after_end = AfterEnd::default();
    loop {
        let read = match after_end.step(&mut ended, master.read(&mut buf)).await {
            Step::Read(r) => r,
            Step::Again => continue,
            Step::Held => return held_outside(&job),
        };
        match read {
            Ok(0) => return false,
            Ok(n) => {
                let chunk = bytes::Bytes::copy_from_slice(&buf[..n]);
                if let Err(e) = job.push(OutStream::Stdout, chunk).await {
                    tracing::error!(job = job.plan.job_id, error = %e, "cannot spool the terminal's output; output is lost from here");
                    return false;
                }
            }
            Err(e) => {
                tracing::info!(job = job.plan.job_id, error = %e, "cannot read the job's terminal");
                return false;
            }
        }
    }
}

/// How long a pump waits for more output once the job's processes are
/// gone before it takes the pipe's writer to be outside the job.
const IDLE_AFTER_END: Duration = Duration::from_secs(2);
/// How long a pump reads at most once the job's processes are gone: what
/// they wrote is in the pipe (1 MiB at most, [`PIPE_SIZE`]), and a writer
/// outside the job that never pauses for [`IDLE_AFTER_END`] must not keep
/// the job from ending either.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// When a pump stops reading once the job's processes are gone.
#[derive(Default)]
struct AfterEnd(Option<tokio::time::Instant>);

/// What became of one read of a pump ([`AfterEnd::step`]).
enum Step {
    /// The read's result.
    Read(std::io::Result<usize>),
    /// The job's processes ended while it waited: read again, now under
    /// the drain's limits.
    Again,
    /// The job's processes are gone and the pipe's writer, outside the
    /// job, kept it open past the limits: stop.
    Held,
}

impl AfterEnd {
    /// Runs `read` (a pump's read, cancel-safe): while the job runs for as
    /// long as it takes, once its processes are gone within
    /// [`IDLE_AFTER_END`] and [`DRAIN_LIMIT`].
    async fn step(
        &mut self,
        ended: &mut watch::Receiver<bool>,
        read: impl std::future::Future<Output = std::io::Result<usize>>,
    ) -> Step {
        if gone(ended) {
            let Some(until) = self.next_wait() else {
                return Step::Held;
            };
            return match tokio::time::timeout_at(until, read).await {
                Ok(r) => Step::Read(r),
                Err(_) => Step::Held,
            };
        }
        tokio::select! {
            r = read => Step::Read(r),
            _ = ended.changed() => Step::Again,
        }
    }

    /// Until when the next read may wait; `None`: stop now.
    fn next_wait(&mut self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let last = *self.0.get_or_insert(now + DRAIN_LIMIT);
        (now < last).then(|| last.min(now + IDLE_AFTER_END))
    }
}

/// A job's output pumps, and the word that its processes are gone.
#[derive(Default)]
pub(super) struct Pumps {
    tasks: Vec<tokio::task::JoinHandle<bool>>,
    ended: watch::Sender<bool>,
    /// Where a pump that stopped on a pipe held outside the job says so:
    /// the job's stderr (its terminal's output for a terminal's job).
    note: Option<(Arc<Job>, OutStream)>,
}

impl Pumps {
    /// Copies `pipe` into the job's `stream`.
    pub(super) fn pipe(
        &mut self,
        pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        stream: OutStream,
        job: &Arc<Job>,
    ) {
        let ended = self.ended.subscribe();
        self.note = Some((job.clone(), OutStream::Stderr));
        self.tasks
            .push(tokio::spawn(pump(pipe, stream, job.clone(), ended)));
    }

    /// Copies the job's terminal into its stdout.
    pub(super) fn tty(&mut self, master: &Arc<crate::pty::Master>, job: &Arc<Job>) {
        let ended = self.ended.subscribe();
        self.note = Some((job.clone(), OutStream::Stdout));
        self.tasks
            .push(tokio::spawn(pump_tty(master.clone(), job.clone(), ended)));
    }

    /// Waits for the pumps once every process of the job is gone: each
    /// reads what is left, and stops at end of file, once nothing has
    /// come for [`IDLE_AFTER_END`], or [`DRAIN_LIMIT`] after (a descriptor the job handed to a
    /// process outside it, another job's, keeps the pipe open for ever,
    /// and with it the job's GPUs, slot and uid).
    /// A pump that stopped that way leaves [`HELD_NOTE`] in the job's
    /// output, once, so its requester learns why output may be missing.
    pub(super) async fn drain(self) {
        self.ended.send_replace(true);
        let mut held = false;
        for p in self.tasks {
            held |= p.await.unwrap_or(false);
        }
        if let (true, Some((job, stream))) = (held, self.note) {
            let _ = job.push(stream, bytes::Bytes::from_static(HELD_NOTE)).await;
        }
    }
}

/// Whether the job's processes are gone (or nobody can say so any more).
fn gone(ended: &watch::Receiver<bool>) -> bool {
    *ended.borrow() || ended.has_changed().is_err()
}

/// What a job's requester reads when its output was still held open
/// outside it after its processes ended.
pub(super) const HELD_NOTE: &[u8] =
    b"openclaw: the job's processes have ended, but a process outside \
the job still held its output open; the node stopped reading it (after 2 s without output, or 60 s \
at most), so anything written to it later is not kept\n";

/// A pump stops on a pipe the job's processes no longer write to: true.
fn held_outside(job: &Job) -> bool {
    tracing::warn!(
        job = job.plan.job_id,
        "the job's processes are gone but its output pipe is still open (a descriptor handed to a \
         process outside the job); stopped reading it, and the job ends"
    );
    true
}
