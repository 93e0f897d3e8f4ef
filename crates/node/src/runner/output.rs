//! A job's output into its spool: its stdout and stderr pipes, or, for a
//! job on a terminal, the terminal's master side (all on stdout).

use std::process::Stdio;
use std::sync::Arc;

use proto::OutStream;
use tokio::io::AsyncReadExt as _;

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
) {
    // One buffer, split after each read: the bytes reach quinn without a
    // copy. Reads fill its spare room (never zeroed), so a job that
    // writes 8 KiB at a time shares one allocation among many reads; a
    // new one is taken only when less than MIN_READ is left.
    let mut buf = bytes::BytesMut::new();
    loop {
        if buf.capacity() - buf.len() < MIN_READ {
            buf = bytes::BytesMut::with_capacity(CHUNK);
        }
        match pipe.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let chunk = buf.split().freeze();
                if let Err(e) = job.push(stream, chunk).await {
                    tracing::error!(job = job.plan.job_id, error = %e, "cannot spool job output; output is lost from here");
                    return;
                }
            }
        }
    }
}

/// Copies a job's terminal into its stdout spool until the terminal's
/// last slave side closes.
pub(super) async fn pump_tty(master: Arc<crate::pty::Master>, job: Arc<Job>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match master.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                let chunk = bytes::Bytes::copy_from_slice(&buf[..n]);
                if let Err(e) = job.push(OutStream::Stdout, chunk).await {
                    tracing::error!(job = job.plan.job_id, error = %e, "cannot spool the terminal's output; output is lost from here");
                    return;
                }
            }
            Err(e) => {
                tracing::info!(job = job.plan.job_id, error = %e, "cannot read the job's terminal");
                return;
            }
        }
    }
}
