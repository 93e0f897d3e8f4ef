//! Interactive sessions (`openclaw shell NODE`, `openclaw run -t`): the
//! terminal a session asks for, and the framing of its input stream. Pure.
//!
//! # Flow
//!
//! The requester opens a stream with [`crate::Request::JobRunTty`]. The
//! gateway answers with job events as for `JobRun` (output is the
//! terminal's, all on stdout). The rest of the requester's stream is a
//! series of *tty frames*, each a kind byte then its body:
//!
//! * `1`, a 2-byte big-endian length `n` (1 to [`MAX_INPUT`]), then `n`
//!   bytes typed at the terminal ([`TtyFrame::Input`]);
//! * `2`, then columns and rows, 2 bytes big-endian each
//!   ([`TtyFrame::Resize`]).
//!
//! Finishing the stream closes the session's input (the node closes its
//! side of the terminal; the session's processes see a hang-up when the
//! session ends). The gateway hands the stream, bytes unchanged, to the
//! node's `Open::JobInput` stream (`ControlMsg::RunJobTty`), reading the
//! frames on the way for its recording; the node writes input to the
//! terminal's master side and applies resizes to it (the kernel sends
//! SIGWINCH). Control characters (Ctrl-C, Ctrl-Z, Ctrl-D) are input bytes
//! like any other: the node's terminal turns them into signals.

use serde::{Deserialize, Serialize};

/// Most bytes of one input frame.
pub const MAX_INPUT: usize = 16 * 1024;
/// Most columns or rows a terminal may claim.
pub const MAX_SIZE: u16 = 4096;
/// Longest `TERM` value taken.
pub const MAX_TERM: usize = 64;
/// `TERM` when the requester's is missing or unusable.
pub const DEFAULT_TERM: &str = "xterm-256color";
/// Most bytes of a recording in one [`crate::Response::Recording`].
pub const RECORDING_PAGE: usize = 256 * 1024;

const KIND_INPUT: u8 = 1;
const KIND_RESIZE: u8 = 2;

/// The terminal a session asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tty {
    /// The job's `TERM`.
    pub term: String,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl Tty {
    /// Checks a requester's terminal: `TERM` is 1 to [`MAX_TERM`] of
    /// `[A-Za-z0-9._+-]`, and the size is within [`MAX_SIZE`] (0 means
    /// unknown).
    pub fn check(&self) -> Result<(), String> {
        if self.term.is_empty()
            || self.term.len() > MAX_TERM
            || !self
                .term
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        {
            return Err(format!(
                "TERM must be 1 to {MAX_TERM} letters, digits or . _ + - (got {} bytes); set TERM=xterm-256color",
                self.term.len()
            ));
        }
        if self.cols > MAX_SIZE || self.rows > MAX_SIZE {
            return Err(format!(
                "a terminal of {}x{} is larger than {MAX_SIZE}x{MAX_SIZE}",
                self.cols, self.rows
            ));
        }
        Ok(())
    }
}

/// One frame of a session's input stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtyFrame {
    /// Bytes typed at the terminal.
    Input(Vec<u8>),
    /// The terminal's new size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
}

impl TtyFrame {
    /// The frame's bytes on the wire. Input longer than [`MAX_INPUT`] must
    /// be split by the caller ([`encode_input`] does).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            TtyFrame::Input(b) => {
                let n = b.len().min(MAX_INPUT);
                let mut out = Vec::with_capacity(3 + n);
                out.push(KIND_INPUT);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend_from_slice(&b[..n]);
                out
            }
            TtyFrame::Resize { cols, rows } => {
                let mut out = vec![KIND_RESIZE];
                out.extend_from_slice(&cols.to_be_bytes());
                out.extend_from_slice(&rows.to_be_bytes());
                out
            }
        }
    }
}

/// `data` as input frames of at most [`MAX_INPUT`] bytes each.
pub fn encode_input(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 3 * (data.len() / MAX_INPUT + 1));
    for part in data.chunks(MAX_INPUT) {
        out.extend_from_slice(&TtyFrame::Input(part.to_vec()).encode());
    }
    out
}

/// A malformed input stream: the session's input ends there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtyError {
    /// A kind byte this version does not know.
    #[error("unknown tty frame kind {0}")]
    Kind(u8),
    /// An input frame of length 0 or over [`MAX_INPUT`].
    #[error("tty input frame of {0} bytes (1 to {MAX_INPUT} allowed)")]
    Length(usize),
}

/// Reads tty frames out of a byte stream that arrives in pieces. Holds at
/// most one partial frame ([`MAX_INPUT`] + 2 bytes).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Takes the next piece of the stream and returns every frame it
    /// completes. After an error the stream must be dropped.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<TtyFrame>, TtyError> {
        let mut frames = Vec::new();
        loop {
            if let Some((frame, used)) = self.next()? {
                self.buf.drain(..used);
                frames.push(frame);
                continue;
            }
            if data.is_empty() {
                break;
            }
            // Take only what the frame under way can still need, so the
            // buffer never grows past one frame.
            let want = self.wanted()?;
            let n = want.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(frames)
    }

    /// Bytes held that are not yet a whole frame (0 at a frame boundary).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the frame under way still needs.
    fn wanted(&self) -> Result<usize, TtyError> {
        let Some(&kind) = self.buf.first() else {
            return Ok(1);
        };
        let total = match kind {
            KIND_INPUT if self.buf.len() < 3 => 3,
            KIND_INPUT => {
                let n = usize::from(u16::from_be_bytes([self.buf[1], self.buf[2]]));
                if n == 0 || n > MAX_INPUT {
                    return Err(TtyError::Length(n));
                }
                3 + n
            }
            KIND_RESIZE => 5,
            k => return Err(TtyError::Kind(k)),
        };
        Ok(total.saturating_sub(self.buf.len()))
    }

    fn next(&self) -> Result<Option<(TtyFrame, usize)>, TtyError> {
        if self.buf.is_empty() || self.wanted()? > 0 {
            return Ok(None);
        }
        let b = &self.buf;
        Ok(Some(match b[0] {
            KIND_INPUT => (TtyFrame::Input(b[3..].to_vec()), b.len()),
            _ => (
                TtyFrame::Resize {
                    cols: u16::from_be_bytes([b[1], b[2]]),
                    rows: u16::from_be_bytes([b[3], b[4]]),
                },
                5,
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let frames = vec![
            TtyFrame::Input(b"ls -la\r".to_vec()),
            TtyFrame::Resize {
                cols: 120,
                rows: 40,
            },
            TtyFrame::Input(vec![3]),
            TtyFrame::Input(vec![b'x'; MAX_INPUT]),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(TtyFrame::encode).collect();
        for step in [1, 2, 3, 5, 7, 1000, wire.len()] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for piece in wire.chunks(step) {
                got.extend(d.push(piece).unwrap());
                assert!(d.pending() <= MAX_INPUT + 3, "buffer stays bounded");
            }
            assert_eq!(got, frames, "split every {step} bytes");
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn long_input_is_split_into_frames() {
        let data = vec![7u8; MAX_INPUT * 2 + 5];
        let got = Decoder::new().push(&encode_input(&data)).unwrap();
        assert_eq!(got.len(), 3);
        let joined: Vec<u8> = got
            .into_iter()
            .flat_map(|f| match f {
                TtyFrame::Input(b) => b,
                f => panic!("unexpected {f:?}"),
            })
            .collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(Decoder::new().push(&[9, 0]), Err(TtyError::Kind(9)));
        assert_eq!(Decoder::new().push(&[1, 0, 0]), Err(TtyError::Length(0)));
        let too_long = (MAX_INPUT as u16 + 1).to_be_bytes();
        assert_eq!(
            Decoder::new().push(&[1, too_long[0], too_long[1]]),
            Err(TtyError::Length(MAX_INPUT + 1))
        );
    }

    #[test]
    fn terminals_are_checked() {
        let ok = Tty {
            term: "xterm-256color".into(),
            cols: 80,
            rows: 24,
        };
        assert_eq!(ok.check(), Ok(()));
        for bad in ["", "xterm\u{1b}[31m", "a b", &"x".repeat(65)] {
            let t = Tty {
                term: bad.into(),
                ..ok.clone()
            };
            assert!(t.check().is_err(), "{bad:?}");
        }
        let huge = Tty {
            cols: MAX_SIZE + 1,
            ..ok.clone()
        };
        assert!(huge.check().is_err());
    }
}
