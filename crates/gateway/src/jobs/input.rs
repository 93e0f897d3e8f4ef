//! A job's standard input: the requester's stream, handed to its node.
//!
//! `openclaw run` sends `Request::JobRunInput` and keeps writing: the rest
//! of its stream is the job's stdin, raw, and its end is end of file. The
//! gateway parks that stream in the live job ([`super::live`]) and
//! dispatches the job with `ControlMsg::RunJobInput`; the node starts the
//! process with a stdin pipe and opens an `Open::JobInput` stream, and
//! [`node_input_stream`] copies one stream into the other. Nothing is
//! buffered here beyond one chunk: QUIC's flow control carries the job's
//! pace back to the requester, as a pipe would.
//!
//! Input is not resumed across a broken connection: the side that broke
//! is told with [`proto::input_code::CUT`] (the job sees end of file
//! there, and `openclaw run` says how much it had sent).

use std::sync::Arc;

use proto::input_code;
use quinn::{ReadError, VarInt, WriteError};

use crate::peer::Peer;
use crate::shared::Shared;

/// Most bytes read from the requester at a time.
const CHUNK: usize = 64 * 1024;

/// Parks `input` with live job `id` before it is dispatched, so that the
/// dispatch gives the job a stdin pipe. Without a live job (it ended
/// already), dropping the stream tells the requester the job reads no
/// more ([`input_code::DONE`]).
pub(super) fn park(shared: &Shared, id: u64, input: quinn::RecvStream) {
    shared.jobs.with(|m| {
        if let Some(j) = m.jobs.get_mut(&id) {
            j.input = Some(input);
        }
    });
}

/// Whether live job `id` waits to hand its node a requester's input.
pub(super) fn wanted(shared: &Shared, id: u64) -> bool {
    shared
        .jobs
        .with(|m| m.jobs.get(&id).is_some_and(|j| j.input.is_some()))
}

/// A node asks for the input of job `id` (`Open::JobInput`): the job must
/// be this node's, dispatched, with input parked. The input goes to the
/// first such stream only.
pub async fn node_input_stream(
    shared: Arc<Shared>,
    peer: Peer,
    id: u64,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    // The node sends nothing after its open frame.
    drop(recv);
    let taken = shared.jobs.with(|m| match m.jobs.get_mut(&id) {
        Some(j) if j.node == peer.name && j.on_node => j.input.take(),
        _ => None,
    });
    let session = shared.jobs.with(|m| {
        m.jobs
            .get(&id)
            .filter(|j| j.tty.is_some())
            .map(|j| j.recorder.clone())
    });
    let Some(mut input) = taken else {
        tracing::info!(job = id, node = %peer.name, "refused an input stream: no input waits for this job of this node");
        let _ = send.reset(VarInt::from_u32(input_code::REFUSED));
        return;
    };
    let mut tap = session.as_ref().map(|rec| Tap {
        rec: rec.clone(),
        frames: proto::tty::Decoder::new(),
    });
    let sent = relay(&mut input, &mut send, tap.as_mut()).await;
    shared.metrics.input_relayed.inc_by(sent.bytes);
    let cut = matches!(sent.end, End::Cut(_));
    match sent.end {
        End::Eof => tracing::debug!(job = id, bytes = sent.bytes, "job input ended"),
        End::JobDone => {
            tracing::debug!(
                job = id,
                bytes = sent.bytes,
                "job stopped reading its input"
            )
        }
        End::Cut(why) => {
            tracing::info!(job = id, bytes = sent.bytes, "job input cut off: {why}")
        }
    }
    // A session whose requester went away (its connection broke, its
    // credential was revoked) ends: nobody is left at its terminal.
    if session.is_some() && cut {
        let ended = crate::shared::off_runtime(&shared, move |s| {
            super::lifecycle::cancel_job(s, id, "the end of its session")
        })
        .await;
        if let Ok(Err(e)) = ended {
            tracing::debug!(job = id, error = %e.message, "session not cancelled");
        }
    }
}

/// What the relay of a session's input does besides copying: reads its
/// tty frames, for the recording and to refuse a malformed stream.
struct Tap {
    rec: Option<std::sync::Arc<super::record::Recorder>>,
    frames: proto::tty::Decoder,
}

impl Tap {
    /// Reads `chunk`'s frames; `Err` when the stream is malformed.
    async fn see(&mut self, chunk: &[u8]) -> Result<(), String> {
        let frames = self.frames.push(chunk).map_err(|e| e.to_string())?;
        let Some(rec) = &self.rec else { return Ok(()) };
        for f in frames {
            match f {
                proto::tty::TtyFrame::Input(b) if rec.input => {
                    rec.event(proto::cast::Kind::Input, b).await
                }
                proto::tty::TtyFrame::Input(_) => {}
                proto::tty::TtyFrame::Resize { cols, rows } => {
                    rec.event(
                        proto::cast::Kind::Resize,
                        format!("{cols}x{rows}").into_bytes(),
                    )
                    .await
                }
            }
        }
        Ok(())
    }
}

/// How a relay of input ended.
enum End {
    /// The requester finished: the node was told end of file.
    Eof,
    /// The job reads no more: the requester was told.
    JobDone,
    /// One side broke; the other was told [`input_code::CUT`].
    Cut(String),
}

struct Relayed {
    bytes: u64,
    end: End,
}

/// Copies `from` (the requester) into `to` (the node) until one ends, and
/// tells the other side how.
async fn relay(
    from: &mut quinn::RecvStream,
    to: &mut quinn::SendStream,
    mut tap: Option<&mut Tap>,
) -> Relayed {
    let cut = VarInt::from_u32(input_code::CUT);
    let mut bytes = 0u64;
    let node_stopped = to.stopped();
    tokio::pin!(node_stopped);
    loop {
        let chunk = tokio::select! {
            r = from.read_chunk(CHUNK, true) => r,
            // The node stopped reading while the requester had nothing to
            // send: pass its code on (a job that ended: DONE).
            s = &mut node_stopped => {
                let code = match s {
                    Ok(Some(code)) => code,
                    _ => cut,
                };
                let _ = from.stop(code);
                return Relayed { bytes, end: if code == cut { End::Cut("the node's side broke".into()) } else { End::JobDone } };
            }
        };
        match chunk {
            Ok(Some(c)) => {
                let n = c.bytes.len() as u64;
                if let Some(t) = tap.as_deref_mut()
                    && let Err(e) = t.see(&c.bytes).await
                {
                    let _ = from.stop(cut);
                    let _ = to.reset(cut);
                    return Relayed {
                        bytes,
                        end: End::Cut(format!(
                            "the requester sent a malformed session stream ({e})"
                        )),
                    };
                }
                match to.write_chunk(c.bytes).await {
                    Ok(()) => bytes += n,
                    Err(WriteError::Stopped(code))
                        if code == VarInt::from_u32(input_code::DONE) =>
                    {
                        let _ = from.stop(code);
                        return Relayed {
                            bytes,
                            end: End::JobDone,
                        };
                    }
                    Err(e) => {
                        let _ = from.stop(cut);
                        return Relayed {
                            bytes,
                            end: End::Cut(format!("the node's side broke ({e})")),
                        };
                    }
                }
            }
            Ok(None) => {
                let _ = to.finish();
                return Relayed {
                    bytes,
                    end: End::Eof,
                };
            }
            Err(e) => {
                let _ = to.reset(cut);
                let why = match e {
                    ReadError::Reset(_) => "the requester reset its input".to_string(),
                    e => format!("the requester's side broke ({e})"),
                };
                return Relayed {
                    bytes,
                    end: End::Cut(why),
                };
            }
        }
    }
}
