//! Job artifacts at the gateway (issue 23; the flow is described in
//! [`proto::artifact`]): which patterns a job keeps, what its node is
//! told, receiving the node's upload under the caps of `[limits]`, and
//! serving the files to whoever may see the job.
//!
//! The bytes of job `N` live in `logs/N.artifacts/SEQ` (named by arrival,
//! never by a name a node chose), the index in the `artifacts` table. Both
//! go with the job's logs at retention ([`super::remove_logs`]).

use std::path::PathBuf;
use std::sync::Arc;

use mesh::FrameSend as _;
use proto::{
    ApiError, ArtifactFrame, ArtifactInfo, ArtifactReply, ArtifactSpec, ControlMsg, ErrorCode,
    JobArtifacts, JobDispatch, JobPlan, Response,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::config::Config;
use crate::link::{RecvHalf, SendHalf};
use crate::peer::Peer;
use crate::shared::Shared;
use crate::store::ArtifactState;

/// Largest frame of an upload: a chunk and its framing.
const FRAME_LIMIT: usize = proto::artifact::MAX_CHUNK + 1024;
/// Longest note kept from a node.
const MAX_NOTE: usize = 300;
/// Bytes per read when serving a file.
const SERVE_CHUNK: usize = 256 * 1024;

/// Where job `id`'s artifacts are stored.
pub fn dir(shared: &Shared, id: u64) -> PathBuf {
    shared.logs_dir.join(format!("{id}.artifacts"))
}

/// Deletes job `id`'s stored artifacts (retention, with its logs).
pub fn remove(shared: &Shared, id: u64) {
    let _ = std::fs::remove_dir_all(dir(shared, id));
}

/// The patterns a job keeps: its named job's, then the requester's
/// (`--artifact`), each once, all checked together.
pub fn patterns(
    cfg: &Config,
    named_job: Option<&str>,
    asked: &[String],
) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = named_job
        .and_then(|n| cfg.jobs.get(n))
        .map(|j| j.artifacts.clone())
        .unwrap_or_default();
    for p in asked {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    proto::artifact::check_patterns(&out)
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e))?;
    Ok(out)
}

/// What to send a node to run `plan`. A job with artifact patterns goes as
/// `RunJobWith` (with the caps `[limits]` gives, `cfg`) to a node of
/// protocol 3; a node of protocol 2 gets the plain message, and the second
/// value says why the job will have no artifacts. Pure.
pub fn run_message(
    cfg: (u64, u64),
    plan: JobPlan,
    input: bool,
    patterns: Vec<String>,
    speaks: u32,
) -> (ControlMsg, Option<String>) {
    if patterns.is_empty() {
        let msg = if input {
            ControlMsg::RunJobInput(plan)
        } else {
            ControlMsg::RunJob(plan)
        };
        return (msg, None);
    }
    if speaks < 3 {
        let note = format!(
            "node {} runs an older agent (protocol {speaks}) that cannot collect artifacts; \
             none were kept. Upgrade the node's openclaw to keep them",
            plan.node
        );
        let msg = if input {
            ControlMsg::RunJobInput(plan)
        } else {
            ControlMsg::RunJob(plan)
        };
        return (msg, Some(note));
    }
    let msg = ControlMsg::RunJobWith(JobDispatch {
        plan,
        input,
        artifacts: ArtifactSpec {
            patterns,
            max_file_bytes: cfg.0,
            max_job_bytes: cfg.1,
        },
    });
    (msg, None)
}

/// Job `id`'s artifacts, if `peer` (for `on_behalf_of`) may see the job.
pub fn list(
    shared: &Shared,
    peer: &Peer,
    id: u64,
    on_behalf_of: Option<&str>,
) -> Result<JobArtifacts, ApiError> {
    super::show(shared, peer, id, on_behalf_of)?;
    let (patterns, note, rows) = shared.store.tx(|tx| {
        Ok::<_, crate::store::StoreError>((
            tx.artifact_patterns(id)?,
            tx.artifacts_note(id)?,
            tx.artifacts(id)?,
        ))
    })?;
    Ok(JobArtifacts {
        job: id,
        patterns,
        note,
        files: rows.into_iter().map(|(_, a)| a).collect(),
    })
}

/// The stored artifact `name` of job `id` and its file, if `peer` may see
/// the job.
pub fn locate(
    shared: &Shared,
    peer: &Peer,
    id: u64,
    name: &str,
    on_behalf_of: Option<&str>,
) -> Result<(ArtifactInfo, PathBuf), ApiError> {
    super::show(shared, peer, id, on_behalf_of)?;
    let rows = shared.store.tx(|tx| tx.artifacts(id))?;
    let shown = proto::names::printable(name, 200);
    let Some((seq, info)) = rows.into_iter().find(|(_, a)| a.name == name) else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "job {id} has no artifact '{shown}'; list them with 'openclaw job artifacts {id}'"
            ),
        ));
    };
    if !info.is_stored() {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            format!(
                "artifact '{shown}' of job {id} was not stored: {}",
                info.note
            ),
        ));
    }
    Ok((info, dir(shared, id).join(seq.to_string())))
}

/// `ArtifactGet`: one `Response`, then the file's bytes, raw.
pub async fn serve_get(
    shared: Arc<Shared>,
    peer: Peer,
    id: u64,
    name: String,
    on_behalf_of: Option<String>,
    mut send: SendHalf,
) {
    let p = peer.clone();
    let found = crate::shared::off_runtime(&shared, move |s| {
        locate(s, &p, id, &name, on_behalf_of.as_deref())
    })
    .await
    .and_then(|r| r);
    let opened = match found {
        Ok((info, path)) => match tokio::fs::File::open(&path).await {
            Ok(f) => Ok((info, f)),
            Err(e) => Err(ApiError::new(
                ErrorCode::Internal,
                format!(
                    "artifact '{}' of job {id} is recorded but its file cannot be read: {e}{}",
                    info.name,
                    super::ha_files_note(&shared)
                ),
            )),
        },
        Err(e) => Err(e),
    };
    let (info, mut file) = match opened {
        Ok(x) => x,
        Err(e) => {
            if mesh::write_frame(&mut send, &Response::Error(e))
                .await
                .is_ok()
            {
                send.finish();
            }
            return;
        }
    };
    if mesh::write_frame(&mut send, &Response::Artifact(info.clone()))
        .await
        .is_err()
    {
        return;
    }
    let mut buf = vec![0u8; SERVE_CHUNK];
    let mut left = info.size;
    while left > 0 {
        let want = usize::try_from(left)
            .unwrap_or(SERVE_CHUNK)
            .min(SERVE_CHUNK);
        let n = match file.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if send.write_all(&buf[..n]).await.is_err() {
            return;
        }
        left -= n as u64;
        shared.metrics.artifact_served.inc_by(n as u64);
    }
    // A file shorter than recorded ends the stream early: the reader's
    // checksum says so.
    send.finish();
    let s = shared.clone();
    let what = format!("{} ({} bytes)", info.name, info.size - left);
    let _ = shared
        .store
        .call(move |tx| {
            tx.audit(
                s.clock.unix(),
                &peer.name,
                "job.artifact_get",
                &id.to_string(),
                &what,
            )
        })
        .await;
}

/// The row of one artifact a node named.
fn row(name: &str, size: u64, sha256: &str, state: ArtifactState, note: &str) -> ArtifactInfo {
    ArtifactInfo {
        name: proto::names::printable(name, proto::artifact::MAX_NAME_LEN),
        size,
        sha256: sha256.to_string(),
        state: state.as_str().to_string(),
        note: proto::names::printable(note, MAX_NOTE),
    }
}

/// Serves an `Open::Artifacts` stream a node opened for job `id`.
pub async fn node_stream(
    shared: Arc<Shared>,
    peer: Peer,
    id: u64,
    mut send: SendHalf,
    mut recv: RecvHalf,
) {
    let ours = shared.jobs.with(|m| {
        m.jobs
            .get(&id)
            .is_some_and(|j| j.node == peer.name && j.on_node)
    });
    let patterns = shared
        .store
        .call(move |tx| tx.artifact_patterns(id))
        .await
        .unwrap_or_default();
    if !ours || patterns.is_empty() {
        let reason = format!(
            "job {id} is not a running job of node {} that keeps artifacts",
            peer.name
        );
        tracing::warn!(node = %peer.name, job = id, "refused an artifact upload: {reason}");
        if mesh::write_frame(&mut send, &ArtifactReply::Rejected { reason })
            .await
            .is_ok()
        {
            send.finish();
        }
        return;
    }
    // One stream per job: two at once would each count only their own
    // bytes against the job's cap. A node that retries right after a
    // broken stream waits a moment for the old one's end to be seen.
    let mut claim = Claim::take(&shared, id);
    for _ in 0..50 {
        if claim.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        claim = Claim::take(&shared, id);
    }
    let Some(_claim) = claim else {
        let reason = format!("job {id}'s artifacts are already being uploaded on another stream");
        tracing::warn!(node = %peer.name, job = id, "refused an artifact upload: {reason}");
        if mesh::write_frame(&mut send, &ArtifactReply::Rejected { reason })
            .await
            .is_ok()
        {
            send.finish();
        }
        return;
    };
    let cfg = shared.config();
    let mut up = Upload {
        shared: shared.clone(),
        id,
        dir: dir(&shared, id),
        seq: 0,
        total: 0,
        files: 0,
        max_file: cfg.artifact_max_file,
        max_job: cfg.artifact_max_job,
        stored: 0,
        refused: 0,
        skipped: 0,
    };
    // A new upload (after a reconnect) replaces whatever an earlier one left.
    let _ = shared.store.call(move |tx| tx.clear_artifacts(id)).await;
    let _ = tokio::fs::remove_dir_all(&up.dir).await;
    if let Err(e) = tokio::fs::create_dir_all(&up.dir).await {
        tracing::error!(job = id, error = %e, "cannot make the artifact directory");
        let reason = format!("the gateway cannot store artifacts: {e}");
        let _ = mesh::write_frame(&mut send, &ArtifactReply::Rejected { reason }).await;
        send.finish();
        return;
    }
    match up.serve(&mut send, &mut recv).await {
        Ok(()) => {
            let detail = format!(
                "from {}: {} stored ({} bytes), {} refused, {} skipped",
                peer.name, up.stored, up.total, up.refused, up.skipped
            );
            tracing::info!(job = id, node = %peer.name, "artifacts: {detail}");
            let s = shared.clone();
            let _ = shared
                .store
                .call(move |tx| {
                    tx.audit(
                        s.clock.unix(),
                        "gateway",
                        "job.artifacts",
                        &id.to_string(),
                        &detail,
                    )
                })
                .await;
            if mesh::write_frame(&mut send, &ArtifactReply::Finished)
                .await
                .is_ok()
            {
                send.finish();
            }
        }
        Err(Cut::Lost) => {
            tracing::info!(job = id, node = %peer.name, "artifact upload broke off; the node sends them again on its next stream");
        }
        Err(Cut::Protocol(reason)) => {
            tracing::warn!(job = id, node = %peer.name, "artifact upload refused: {reason}");
            let note = format!("the upload was cut: {reason}");
            let _ = shared
                .store
                .call(move |tx| tx.set_artifacts_note(id, &note))
                .await;
            if mesh::write_frame(&mut send, &ArtifactReply::Rejected { reason })
                .await
                .is_ok()
            {
                send.finish();
            }
        }
    }
}

/// Job `id`'s artifact upload, held by one stream until it ends.
struct Claim {
    shared: Arc<Shared>,
    id: u64,
}

impl Claim {
    fn take(shared: &Arc<Shared>, id: u64) -> Option<Claim> {
        shared.jobs.begin_upload(id).then(|| Claim {
            shared: shared.clone(),
            id,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.shared.jobs.end_upload(self.id);
    }
}

/// Why an upload stopped early.
enum Cut {
    /// The stream broke; nothing to tell the node.
    Lost,
    /// The node broke the upload's rules; it is told, and the job records it.
    Protocol(String),
}

impl From<mesh::StreamError> for Cut {
    fn from(_: mesh::StreamError) -> Self {
        Cut::Lost
    }
}

/// One upload in progress.
struct Upload {
    shared: Arc<Shared>,
    id: u64,
    dir: PathBuf,
    seq: u64,
    total: u64,
    files: usize,
    max_file: u64,
    max_job: u64,
    stored: u32,
    refused: u32,
    skipped: u32,
}

impl Upload {
    async fn record(&mut self, info: ArtifactInfo) -> u64 {
        self.seq += 1;
        let (id, seq) = (self.id, self.seq);
        match info.state.as_str() {
            "stored" => self.stored += 1,
            "refused" => self.refused += 1,
            _ => self.skipped += 1,
        }
        if let Err(e) = self
            .shared
            .store
            .call(move |tx| tx.put_artifact(id, seq, &info))
            .await
        {
            tracing::error!(job = id, error = %e, "cannot record an artifact");
        }
        seq
    }

    async fn serve(&mut self, send: &mut SendHalf, recv: &mut RecvHalf) -> Result<(), Cut> {
        loop {
            let frame = match mesh::read_frame::<ArtifactFrame>(recv, FRAME_LIMIT).await {
                Ok(Some(f)) => f,
                Ok(None) => return Err(Cut::Lost),
                Err(mesh::StreamError::Frame(e)) => {
                    return Err(Cut::Protocol(format!("a bad frame: {e}")));
                }
                Err(e) => return Err(e.into()),
            };
            match frame {
                ArtifactFrame::Done => return Ok(()),
                ArtifactFrame::Chunk(_) => {
                    return Err(Cut::Protocol("file bytes without a file".into()));
                }
                ArtifactFrame::Note { reason } => {
                    let (id, note) = (self.id, proto::names::printable(&reason, MAX_NOTE));
                    let _ = self
                        .shared
                        .store
                        .call(move |tx| tx.set_artifacts_note(id, &note))
                        .await;
                }
                ArtifactFrame::Skipped { name, reason } => {
                    self.count()?;
                    self.record(row(&name, 0, "", ArtifactState::Skipped, &reason))
                        .await;
                }
                ArtifactFrame::File { name, size, sha256 } => {
                    self.count()?;
                    self.file(send, recv, name, size, sha256).await?;
                }
            }
        }
    }

    fn count(&mut self) -> Result<(), Cut> {
        self.files += 1;
        if self.files > proto::artifact::MAX_FILES {
            return Err(Cut::Protocol(format!(
                "more than {} artifacts",
                proto::artifact::MAX_FILES
            )));
        }
        Ok(())
    }

    async fn file(
        &mut self,
        send: &mut SendHalf,
        recv: &mut RecvHalf,
        name: String,
        size: u64,
        sha256: String,
    ) -> Result<(), Cut> {
        let refuse = if let Err(e) = proto::artifact::check_name(&name) {
            Some(e)
        } else if size > self.max_file {
            Some(format!(
                "it is {size} bytes; [limits] artifact_max_file_bytes is {}",
                self.max_file
            ))
        } else if self.total.saturating_add(size) > self.max_job {
            Some(format!(
                "the job's artifacts would pass [limits] artifact_max_job_bytes ({} bytes; {} already kept)",
                self.max_job, self.total
            ))
        } else if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Checked after the caps: a node declares a file over a cap
            // without reading it, so without its checksum.
            Some("its checksum is not a SHA-256 in hex".to_string())
        } else {
            None
        };
        if let Some(reason) = refuse {
            self.record(row(&name, size, "", ArtifactState::Refused, &reason))
                .await;
            mesh::write_frame(send, &ArtifactReply::Skip { reason }).await?;
            return Ok(());
        }
        mesh::write_frame(send, &ArtifactReply::Send).await?;
        let seq = self.seq + 1;
        let part = self.dir.join(format!("{seq}.part"));
        let done = self.dir.join(seq.to_string());
        let received = self.receive(recv, &part, size).await;
        let outcome = match received {
            Ok(sum) if sum == sha256.to_ascii_lowercase() => {
                match tokio::fs::rename(&part, &done).await {
                    Ok(()) => Ok(sum),
                    Err(e) => Err(format!("the gateway could not keep it: {e}")),
                }
            }
            Ok(sum) => Err(format!(
                "its checksum did not match: the node said {sha256}, the bytes are {sum}"
            )),
            Err(Received::Io(e)) => Err(format!("the gateway could not write it: {e}")),
            Err(Received::Cut(c)) => {
                let _ = tokio::fs::remove_file(&part).await;
                let note = match &c {
                    Cut::Lost => "the upload broke off".to_string(),
                    Cut::Protocol(r) => r.clone(),
                };
                self.record(row(&name, size, "", ArtifactState::Refused, &note))
                    .await;
                return Err(c);
            }
        };
        match outcome {
            Ok(sum) => {
                self.total += size;
                self.shared.metrics.artifact_stored.inc_by(size);
                self.record(row(&name, size, &sum, ArtifactState::Stored, ""))
                    .await;
                mesh::write_frame(send, &ArtifactReply::Stored).await?;
            }
            Err(reason) => {
                let _ = tokio::fs::remove_file(&part).await;
                self.record(row(&name, size, "", ArtifactState::Refused, &reason))
                    .await;
                mesh::write_frame(send, &ArtifactReply::Refused { reason }).await?;
            }
        }
        Ok(())
    }

    /// Receives exactly `size` bytes into `part`, hashing them. More bytes
    /// than declared cut the upload: nothing past the declared size (which
    /// is under the caps) is ever written.
    async fn receive(
        &mut self,
        recv: &mut RecvHalf,
        part: &std::path::Path,
        size: u64,
    ) -> Result<String, Received> {
        let mut out = tokio::fs::File::create(part).await.map_err(Received::Io)?;
        let mut hash = pki::Sha256Writer::default();
        let mut got = 0u64;
        let mut io_error = None;
        while got < size {
            let chunk = match mesh::read_frame::<ArtifactFrame>(recv, FRAME_LIMIT).await {
                Ok(Some(ArtifactFrame::Chunk(c))) => c,
                Ok(Some(_)) => {
                    return Err(Received::Cut(Cut::Protocol(format!(
                        "a file ended after {got} of its {size} bytes"
                    ))));
                }
                Ok(None) => return Err(Received::Cut(Cut::Lost)),
                Err(mesh::StreamError::Frame(e)) => {
                    return Err(Received::Cut(Cut::Protocol(format!("a bad frame: {e}"))));
                }
                Err(e) => return Err(Received::Cut(e.into())),
            };
            got += chunk.len() as u64;
            if got > size {
                return Err(Received::Cut(Cut::Protocol(format!(
                    "a file sent more than the {size} bytes it declared"
                ))));
            }
            std::io::Write::write_all(&mut hash, &chunk).map_err(Received::Io)?;
            // After a write error the bytes are still read (the upload
            // goes on), but the file is refused.
            if io_error.is_none()
                && let Err(e) = out.write_all(&chunk).await
            {
                io_error = Some(e);
            }
        }
        if let Some(e) = io_error {
            return Err(Received::Io(e));
        }
        out.sync_all().await.map_err(Received::Io)?;
        Ok(pki::hex(&hash.finish()))
    }
}

/// Why a file was not received.
enum Received {
    /// The gateway could not write it.
    Io(std::io::Error),
    /// The upload stopped.
    Cut(Cut),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> JobPlan {
        JobPlan {
            job_id: 3,
            node: "old-node".into(),
            argv: vec!["true".into()],
            cwd: None,
            env: vec![],
            timeout_secs: None,
            gpus: 0,
            kill_grace_secs: 5,
            run_as: None,
        }
    }

    #[test]
    fn only_a_protocol_3_node_is_told_the_patterns_and_an_older_one_is_named() {
        let pats = vec!["*.pt".to_string()];
        match run_message((10, 20), plan(), true, pats.clone(), 3) {
            (ControlMsg::RunJobWith(d), None) => {
                assert!(d.input);
                assert_eq!(d.artifacts.patterns, pats);
                assert_eq!(
                    (d.artifacts.max_file_bytes, d.artifacts.max_job_bytes),
                    (10, 20)
                );
            }
            other => panic!("{other:?}"),
        }
        match run_message((10, 20), plan(), false, pats, 2) {
            (ControlMsg::RunJob(_), Some(note)) => {
                assert!(
                    note.contains("node old-node runs an older agent (protocol 2)"),
                    "{note}"
                );
                assert!(note.contains("Upgrade"), "{note}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run_message((10, 20), plan(), true, vec![], 3),
            (ControlMsg::RunJobInput(_), None)
        ));
    }
}
