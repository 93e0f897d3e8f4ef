//! The local half of an interactive session (`openclaw shell NODE`,
//! `openclaw run -t`), as `ssh -t` is: the local terminal in raw mode while
//! the session runs (restored however it ends: [`leave_raw`] on the
//! session's way out and again in `main`; a signal is turned into a
//! return by `interrupt`), what is typed sent as tty frames (`proto::tty`), each
//! window resize (SIGWINCH) sent as a resize frame. When standard input
//! is not a terminal the session still gets a terminal on the node, as
//! with `ssh -tt`, and the local side is left as it is.
//!
//! Also `openclaw job replay`: a session's recording (asciicast v2) played
//! at its pace, or its output bytes with `--raw`.

use proto::input_code;
use proto::tty::{Tty, TtyFrame};
use quinn::{VarInt, WriteError};
use rustix::termios::{OptionalActions, Termios};
use tokio::sync::mpsc;

use proto::{Request, Response};

use crate::commands::CliError;
use crate::exit;
use crate::input::Cut;

/// Bytes read from the terminal at a time (one keystroke is one read).
const CHUNK: usize = 16 * 1024;

/// The local terminal's settings before the session made it raw; put
/// back by [`leave_raw`].
static SAVED: std::sync::Mutex<Option<Termios>> = std::sync::Mutex::new(None);
/// Set by [`leave_raw`]: the session is over, nothing makes it raw again
/// (a late state from the follower, say).
static LEFT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Puts the local terminal in raw mode, if standard input is one and it is
/// not raw already: keys (Ctrl-C included) go to the session, not to this
/// process. Undone by [`leave_raw`], which every way out of the session
/// calls (and `main`, whatever the command's end).
pub fn enter_raw() {
    let stdin = std::io::stdin();
    if !rustix::termios::isatty(&stdin) {
        return;
    }
    let mut saved = match SAVED.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if saved.is_some() || LEFT.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let Ok(before) = rustix::termios::tcgetattr(&stdin) else {
        return;
    };
    let mut raw = before.clone();
    raw.make_raw();
    if rustix::termios::tcsetattr(&stdin, OptionalActions::Now, &raw).is_ok() {
        *saved = Some(before);
    }
}

/// Puts the local terminal back as it was before [`enter_raw`], if that
/// changed it.
pub fn leave_raw() {
    LEFT.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut saved = match SAVED.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(before) = saved.take() {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &before);
    }
}

/// The terminal the session asks for: `TERM` and the size of the local
/// terminal (0x0 when there is none).
pub fn local_tty() -> Tty {
    let term = std::env::var("TERM")
        .ok()
        .filter(|t| {
            Tty {
                term: t.clone(),
                cols: 0,
                rows: 0,
            }
            .check()
            .is_ok()
        })
        .unwrap_or_else(|| proto::tty::DEFAULT_TERM.to_string());
    let (cols, rows) = size();
    Tty { term, cols, rows }
}

/// The local terminal's size, from stdin or stdout; 0x0 without one.
fn size() -> (u16, u16) {
    rustix::termios::tcgetwinsize(std::io::stdin())
        .ok()
        .map(|ws| (ws.ws_col, ws.ws_row))
        .or_else(crate::term::stdout_size)
        .map(|(c, r)| (c.min(proto::tty::MAX_SIZE), r.min(proto::tty::MAX_SIZE)))
        .unwrap_or((0, 0))
}

/// Told when a session's input is cut off ([`pump`] ends with an error):
/// the session can no longer be typed into, and `run` ends it.
pub static CUT: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// [`pump`], telling [`CUT`] when the input is cut off.
pub async fn pump_or_cut(send: quinn::SendStream) -> Result<u64, Cut> {
    let r = pump(send).await;
    if r.is_err() {
        CUT.notify_one();
    }
    r
}

/// Sends what is typed and each resize into `send` until standard input
/// ends (the stream is finished), the session stops reading, or the
/// stream breaks. `Ok`: the bytes of input sent.
pub async fn pump(mut send: quinn::SendStream) -> Result<u64, Cut> {
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let reader = std::thread::Builder::new()
        .name("tty-stdin".into())
        .spawn(move || crate::input::read_all(&tx, CHUNK));
    if let Err(e) = reader {
        let _ = send.reset(VarInt::from_u32(input_code::CUT));
        return Err(Cut {
            sent: 0,
            why: format!("cannot start reading the terminal: {e}"),
        });
    }
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let done = VarInt::from_u32(input_code::DONE);
    let mut sent = 0u64;
    let stopped = send.stopped();
    tokio::pin!(stopped);
    loop {
        let frame = tokio::select! {
            // The way to the session broke while nothing was typed.
            s = &mut stopped => return match s {
                Ok(Some(code)) if code == done => Ok(sent),
                Ok(None) => Ok(sent),
                Ok(Some(_)) => Err(Cut { sent, why: "the way to the node broke".into() }),
                Err(e) => Err(Cut { sent, why: e.to_string() }),
            },
            next = rx.recv() => match next {
                None => {
                    let _ = send.finish();
                    return Ok(sent);
                }
                Some(Err(e)) => {
                    let _ = send.reset(VarInt::from_u32(input_code::CUT));
                    return Err(Cut { sent, why: format!("cannot read the terminal: {e}") });
                }
                Some(Ok(buf)) => {
                    sent += buf.len() as u64;
                    proto::tty::encode_input(&buf)
                }
            },
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                let (cols, rows) = size();
                TtyFrame::Resize { cols, rows }.encode()
            }
        };
        match send.write_all(&frame).await {
            Ok(()) => {}
            Err(WriteError::Stopped(code)) if code == done => return Ok(sent),
            Err(e) => {
                return Err(Cut {
                    sent,
                    why: e.to_string(),
                });
            }
        }
    }
}

/// Longest pause a replay keeps, in seconds.
const REPLAY_IDLE: f64 = 2.0;

/// `openclaw job replay ID`: fetches the recording a page at a time and
/// plays its output (see [`schedule`]), or prints it at once (`raw`).
pub async fn replay(
    client: &client::Client,
    id: u64,
    speed: f64,
    raw: bool,
) -> Result<(), CliError> {
    if !(speed.is_finite() && speed > 0.0) {
        return Err(CliError::new(
            exit::USAGE,
            "--speed must be a positive number, e.g. 4",
        ));
    }
    let mut cast = Vec::new();
    loop {
        let req = Request::JobRecording {
            id,
            offset: cast.len() as u64,
        };
        match client.call(req).await.map_err(crate::jobs_cli::run_error)? {
            Response::Recording { data, total } => {
                let empty = data.is_empty();
                cast.extend_from_slice(&data);
                if empty || cast.len() as u64 >= total {
                    break;
                }
            }
            r => {
                return Err(CliError::new(
                    exit::FAILURE,
                    format!("unexpected reply {r:?}"),
                ));
            }
        }
    }
    let text = String::from_utf8_lossy(&cast);
    let events = parse_cast(&text)
        .map_err(|e| CliError::new(exit::FAILURE, format!("job {id}'s recording: {e}")))?;
    // The recording is the session's own terminal output: written as it
    // was shown, as `job logs` writes a job's bytes.
    for (pause, bytes) in schedule(&events, speed, REPLAY_IDLE) {
        if !raw {
            tokio::time::sleep(pause).await;
        }
        crate::term::raw_out(bytes);
        if crate::term::stdout_closed() {
            break;
        }
    }
    Ok(())
}

/// One event of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds into the session.
    pub at: f64,
    /// `o`, `i` or `r`.
    pub kind: String,
    /// Its text.
    pub text: String,
}

/// The events of an asciicast v2 recording, in order; the header line is
/// skipped. A line that is not an event is an error naming it. Pure.
pub fn parse_cast(text: &str) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let v: (f64, String, String) = serde_json::from_str(line)
            .map_err(|e| format!("line {} of the recording is not an event: {e}", n + 1))?;
        out.push(Event {
            at: v.0,
            kind: v.1,
            text: v.2,
        });
    }
    Ok(out)
}

/// What a replay writes and when: the output events' bytes, each after a
/// pause of the recorded gap divided by `speed`, a gap never longer than
/// `idle` (a session left alone for an hour replays in a moment). Pure.
pub fn schedule(events: &[Event], speed: f64, idle: f64) -> Vec<(std::time::Duration, &[u8])> {
    let mut last = 0.0;
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.kind == "o") {
        let gap = ((e.at - last).max(0.0) / speed).min(idle);
        last = e.at;
        out.push((std::time::Duration::from_secs_f64(gap), e.text.as_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_recording_replays_its_output_at_its_pace() {
        let cast = format!(
            "{}{}{}{}",
            proto::cast::header(80, 24, 1, "xterm"),
            proto::cast::event(500_000, proto::cast::Kind::Output, "a\u{1b}[0m\r\n"),
            proto::cast::event(900_000, proto::cast::Kind::Input, "q"),
            proto::cast::event(10_500_000, proto::cast::Kind::Output, "é"),
        );
        let events = parse_cast(&cast).unwrap();
        assert_eq!(events.len(), 3);
        let plan = schedule(&events, 2.0, 3.0);
        assert_eq!(plan.len(), 2, "input is not replayed");
        assert_eq!(plan[0].0, std::time::Duration::from_millis(250));
        assert_eq!(plan[0].1, b"a\x1b[0m\r\n");
        assert_eq!(plan[1].0, std::time::Duration::from_secs(3), "idle capped");
        assert_eq!(plan[1].1, "é".as_bytes());
        assert!(parse_cast("{}\nnot json\n").is_err());
    }
}
