//! `openclaw run`'s standard input, streamed to the job as ssh does: the
//! rest of the `JobRunInput` stream is the input, and finishing it is end
//! of file. The gateway and node pass the job's pace back through QUIC's
//! flow control, so a job that reads slowly slows the writer, and one that
//! stops reading (or ends) stops the stream ([`input_code::DONE`]).
//!
//! Standard input is read on a thread of its own with blocking reads: a
//! read that waits on a terminal then never holds up the runtime's
//! shutdown, and the process exits when `run` is done, whatever it waits on.

use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};

use proto::input_code;
use quinn::{VarInt, WriteError};
use tokio::sync::mpsc;

/// Bytes read from standard input at a time.
const CHUNK: usize = 64 * 1024;
/// Chunks read ahead of the stream (so at most this many times CHUNK in memory).
const AHEAD: usize = 4;

/// Whether there is input worth sending: not when standard input is
/// closed or is /dev/null (a script's `</dev/null`, a service), where the
/// job gets /dev/null directly and no stream is opened.
pub fn worth_sending() -> bool {
    let Ok(me) = std::fs::metadata("/proc/self/fd/0") else {
        return false;
    };
    let null = std::fs::metadata("/dev/null");
    !matches!(null, Ok(n) if me.file_type().is_char_device() && me.rdev() == n.rdev())
}

/// How the input ended, when it did not end well.
pub struct Cut {
    /// Bytes handed to the stream before it broke.
    pub sent: u64,
    /// Why, for people.
    pub why: String,
}

/// Streams standard input into `send` until it ends (end of file is
/// sent), the job stops reading, or the stream breaks. `Ok`: the bytes
/// sent.
pub async fn pump(mut send: quinn::SendStream) -> Result<u64, Cut> {
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(AHEAD);
    let reader = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_all(&tx, CHUNK));
    if let Err(e) = reader {
        let _ = send.reset(VarInt::from_u32(input_code::CUT));
        return Err(Cut {
            sent: 0,
            why: format!("cannot start reading standard input: {e}"),
        });
    }
    let done = VarInt::from_u32(input_code::DONE);
    let stopped = send.stopped();
    tokio::pin!(stopped);
    let mut sent = 0u64;
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            // The job stopped reading while there was nothing to send.
            s = &mut stopped => return match s {
                Ok(Some(code)) if code == done => Ok(sent),
                Ok(Some(_)) => Err(Cut { sent, why: "the way to the node broke".into() }),
                Ok(None) => Ok(sent),
                Err(e) => Err(Cut { sent, why: e.to_string() }),
            },
        };
        match next {
            None => {
                let _ = send.finish();
                return Ok(sent);
            }
            Some(Err(e)) => {
                let _ = send.reset(VarInt::from_u32(input_code::CUT));
                return Err(Cut {
                    sent,
                    why: format!("cannot read standard input: {e}"),
                });
            }
            Some(Ok(buf)) => match send.write_all(&buf).await {
                Ok(()) => sent += buf.len() as u64,
                Err(WriteError::Stopped(code)) if code == done => return Ok(sent),
                Err(WriteError::Stopped(_)) => {
                    return Err(Cut {
                        sent,
                        why: "the way to the node broke".into(),
                    });
                }
                Err(e) => {
                    return Err(Cut {
                        sent,
                        why: e.to_string(),
                    });
                }
            },
        }
    }
}

/// Reads standard input to its end into `tx`, at most `chunk` bytes a
/// read (whatever one read returns goes at once: a keystroke, for a
/// terminal); a closed `tx` (the stream ended) stops it.
pub(crate) fn read_all(tx: &mpsc::Sender<std::io::Result<Vec<u8>>>, chunk: usize) {
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut buf = vec![0u8; chunk];
        match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.blocking_send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}
