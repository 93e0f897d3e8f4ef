//! A job's standard input, fetched from the gateway.
//!
//! A job started by `RunJobInput` has a stdin pipe. The first job stream
//! that reports its start hands the pipe to [`feed`], which opens an
//! `Open::JobInput` stream and writes what arrives into the pipe; the end
//! of the stream closes the pipe (end of file). Writes wait for the job to
//! read, and QUIC's flow control passes that wait back to the requester.
//! When the job closes its stdin or ends, the stream is stopped with
//! [`proto::input_code::DONE`], so the requester stops sending. A cut-off
//! input (a broken connection; a gateway that restarted) is end of file
//! too: input is not resumed.

use std::sync::Arc;

use proto::tty::TtyFrame;
use proto::{Open, input_code};
use quinn::{ReadError, VarInt};
use tokio::io::AsyncWriteExt as _;

/// Most bytes taken from the stream at a time.
const CHUNK: usize = 64 * 1024;

/// Fills job `id`'s stdin from the gateway until the input ends, the job
/// stops reading, or the stream breaks; then closes the pipe.
pub(super) async fn feed(conn: quinn::Connection, id: u64, mut stdin: tokio::process::ChildStdin) {
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(job = id, error = %e, "cannot open the input stream; the job's stdin is closed");
            return;
        }
    };
    if mesh::write_frame(&mut send, &Open::JobInput { job_id: id })
        .await
        .is_err()
    {
        tracing::info!(
            job = id,
            "cannot ask for the job's input; its stdin is closed"
        );
        return;
    }
    let _ = send.finish();
    let mut bytes = 0u64;
    loop {
        match recv.read_chunk(CHUNK, true).await {
            Ok(Some(c)) => {
                let n = c.bytes.len() as u64;
                if stdin.write_all(&c.bytes).await.is_err() {
                    // The job closed its stdin or ended.
                    let _ = recv.stop(VarInt::from_u32(input_code::DONE));
                    tracing::debug!(job = id, bytes, "the job stopped reading its input");
                    return;
                }
                bytes += n;
            }
            Ok(None) => {
                tracing::debug!(job = id, bytes, "the job's input ended");
                return;
            }
            Err(ReadError::Reset(code)) if code == VarInt::from_u32(input_code::REFUSED) => {
                tracing::warn!(
                    job = id,
                    "the gateway holds no input for this job (it restarted, or another stream took it); its stdin is closed"
                );
                return;
            }
            Err(e) => {
                tracing::info!(job = id, bytes, error = %e, "the job's input was cut off; its stdin is closed there");
                return;
            }
        }
    }
}

/// Feeds job `id`'s terminal from the gateway: the stream carries tty
/// frames (`proto::tty`); input is written to the terminal, resizes are
/// set on it. The end of the stream leaves the terminal as it is (the
/// session ends with its process, or when the gateway cancels it); a
/// malformed stream stops being read.
pub(super) async fn feed_tty(conn: quinn::Connection, id: u64, master: Arc<crate::pty::Master>) {
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(job = id, error = %e, "cannot open the session's input stream");
            return;
        }
    };
    if mesh::write_frame(&mut send, &Open::JobInput { job_id: id })
        .await
        .is_err()
    {
        tracing::info!(job = id, "cannot ask for the session's input");
        return;
    }
    let _ = send.finish();
    let mut frames = proto::tty::Decoder::new();
    loop {
        let chunk = match recv.read_chunk(CHUNK, true).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                tracing::debug!(job = id, "the session's input ended");
                return;
            }
            Err(e) => {
                tracing::info!(job = id, error = %e, "the session's input was cut off");
                return;
            }
        };
        let got = match frames.push(&chunk.bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(
                    job = id,
                    "malformed session input ({e}); no more input is read"
                );
                let _ = recv.stop(VarInt::from_u32(input_code::CUT));
                return;
            }
        };
        for f in got {
            let done = match f {
                TtyFrame::Input(b) => master.write_all(&b).await,
                TtyFrame::Resize { cols, rows } => master.resize(cols, rows),
            };
            if let Err(e) = done {
                // The terminal is gone: the job ended.
                tracing::debug!(job = id, error = %e, "the session's terminal takes no more input");
                let _ = recv.stop(VarInt::from_u32(input_code::DONE));
                return;
            }
        }
    }
}
