//! Session recordings, as Teleport keeps them: each interactive session's
//! output (and what was typed, with `policy.record_input`) is written as
//! an asciicast v2 file, `logs/<id>.cast`, next to the job's log and
//! deleted with it ([`super::remove_logs`]). `openclaw job replay` and the
//! dashboard's player read it through `Request::JobRecording`.
//!
//! The relay hands each event to a writer thread of the session's own
//! through a bounded queue (the async workers never touch the file); the
//! thread turns bytes into UTF-8 text (`proto::cast::Utf8Carry`) and
//! writes one line per event. Output is taken where the job log takes it
//! (`LogFile::append`, exactly once), so the recording's output is the
//! bytes `openclaw shell` showed. Times are the gateway's clock, from the
//! session's dispatch.

use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use proto::cast::{self, Kind, Utf8Carry};
use proto::tty::Tty;
use proto::{ApiError, ErrorCode};
use tokio::sync::mpsc;

use crate::clock::{Clock, Instant};
use crate::peer::Peer;
use crate::shared::Shared;

/// Events queued for the writer at once; the relay waits beyond that.
const QUEUE: usize = 256;

/// One session's recording: the relay's handle. Dropping the last one
/// ends the file.
pub(crate) struct Recorder {
    tx: mpsc::Sender<(u64, Kind, Vec<u8>)>,
    start: Instant,
    clock: Clock,
    /// Whether input is recorded too.
    pub(crate) input: bool,
}

/// The recording of job `id` in `logs_dir`.
pub(crate) fn path(logs_dir: &Path, id: u64) -> PathBuf {
    logs_dir.join(format!("{id}.cast"))
}

impl Recorder {
    /// Starts recording job `id`'s session on `tty`; `None` (and a
    /// warning) when the file cannot be made: the session runs unrecorded.
    pub(crate) fn start(
        logs_dir: &Path,
        id: u64,
        tty: &Tty,
        clock: &Clock,
        input: bool,
    ) -> Option<Recorder> {
        let p = path(logs_dir, id);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&p);
        let mut file = match file {
            Ok(f) => std::io::BufWriter::new(f),
            Err(e) => {
                tracing::warn!(job = id, path = %p.display(), error = %e, "cannot record the session");
                return None;
            }
        };
        let head = cast::header(tty.cols, tty.rows, clock.unix(), &tty.term);
        let (tx, mut rx) = mpsc::channel::<(u64, Kind, Vec<u8>)>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name(format!("cast-{id}"))
            .spawn(move || {
                let mut out = Utf8Carry::default();
                let mut typed = Utf8Carry::default();
                let mut last = 0;
                let mut ok = file.write_all(head.as_bytes()).is_ok();
                while let Some((micros, kind, bytes)) = rx.blocking_recv() {
                    last = micros;
                    let text = match kind {
                        Kind::Output => out.take(&bytes),
                        Kind::Input => typed.take(&bytes),
                        Kind::Resize => String::from_utf8_lossy(&bytes).into_owned(),
                    };
                    if ok && !text.is_empty() {
                        ok = file
                            .write_all(cast::event(micros, kind, &text).as_bytes())
                            .is_ok();
                    }
                    // Whole lines reach the file while the session runs
                    // (a replay of a live session reads them).
                    if ok && rx.is_empty() {
                        ok = file.flush().is_ok();
                    }
                }
                for (kind, rest) in [(Kind::Output, out.finish()), (Kind::Input, typed.finish())] {
                    if ok && !rest.is_empty() {
                        ok = file
                            .write_all(cast::event(last, kind, &rest).as_bytes())
                            .is_ok();
                    }
                }
                if !(ok && file.flush().is_ok()) {
                    tracing::warn!(
                        job = id,
                        "the session's recording could not be written whole"
                    );
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(job = id, error = %e, "cannot start the session's recorder");
            return None;
        }
        Some(Recorder {
            tx,
            start: clock.now(),
            clock: *clock,
            input,
        })
    }

    /// Records `bytes` of `kind` now. Waits while the writer is behind.
    pub(crate) async fn event(&self, kind: Kind, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let micros = u64::try_from(self.clock.since(self.start).as_micros()).unwrap_or(u64::MAX);
        let _ = self.tx.send((micros, kind, bytes)).await;
    }
}

/// A page of job `id`'s recording from byte `offset`, for whoever may see
/// the job (`Request::JobRecording`). Blocking (a file read).
pub fn recording(
    shared: &Shared,
    peer: &Peer,
    id: u64,
    offset: u64,
) -> Result<proto::Response, ApiError> {
    // Seeing the job decides seeing its recording (members: their own).
    super::show(shared, peer, id, None)?;
    let p = path(&shared.logs_dir, id);
    let mut f = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "job {id} has no recording: only interactive sessions (openclaw shell, run -t) are recorded, and a recording goes with its job's logs{}",
                    super::ha_files_note(shared)
                ),
            ));
        }
        Err(e) => {
            return Err(ApiError::new(
                ErrorCode::Internal,
                format!("cannot read the recording of job {id}: {e}"),
            ));
        }
    };
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut data = Vec::new();
    if offset < total {
        f.seek(std::io::SeekFrom::Start(offset))
            .and_then(|_| {
                (&mut f)
                    .take(proto::tty::RECORDING_PAGE as u64)
                    .read_to_end(&mut data)
            })
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::Internal,
                    format!("cannot read the recording of job {id}: {e}"),
                )
            })?;
    }
    Ok(proto::Response::Recording { data, total })
}
