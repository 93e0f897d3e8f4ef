//! Job artifacts on the node (issue 23; the flow is in
//! [`proto::artifact`]).
//!
//! When a job's command has exited and before its directory goes, the
//! agent starts a *collector*: its own shim binary with a
//! [`CollectSpec`] in [`COLLECT_VAR`]. The collector enters the job's
//! working directory, drops to the job's user exactly as the exec shim does
//! ([`crate::jail::become_user`]), sets `no_new_privs`, and walks the
//! patterns one component at a time with `openat` and `O_NOFOLLOW`, so a
//! symlink never leads it out of the directory (and it could read nothing
//! the job's user could not anyway). Only regular files are sent; links,
//! directories, devices, FIFOs and sockets are skipped with a note. It
//! writes [`Record`]s to its stdout: a JSON line, then for a file exactly
//! its size in bytes.
//!
//! The agent reads that pipe into its spool (`SPOOL/N.artifacts/`), hashing
//! each file, and keeps a list of [`Item`]s with the job. Before the job's
//! end is reported, [`upload`] sends them on an `Open::Artifacts` stream;
//! after a broken connection they are sent again from the spool.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use proto::artifact::{MAX_CHUNK, MAX_FILES};
use proto::{ArtifactFrame, ArtifactReply, ArtifactSpec, Open};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use crate::jail::{Cwd, JobUser};

/// The environment variable that makes the shim a collector.
pub const COLLECT_VAR: &str = "OPENCLAW_ARTIFACT_SPEC";
/// Longest header line the agent reads from a collector.
const MAX_HEADER: u64 = 8 * 1024;
/// Most directory entries the collector reads in one directory.
const MAX_DIR_ENTRIES: usize = 100_000;
/// How long a collection may take before the agent stops it.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(600);

/// What the collector does, sent to it in [`COLLECT_VAR`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectSpec {
    /// The job's working directory.
    pub cwd: Cwd,
    /// Drop to this user first (the agent is root).
    pub user: Option<JobUser>,
    /// The uid is the job's own (`job_uids`).
    pub own_uid: bool,
    /// The patterns and the gateway's caps.
    pub artifacts: ArtifactSpec,
}

/// One record on the collector's stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// `size` bytes of the file follow.
    File {
        /// Path under the working directory.
        name: String,
        /// Bytes that follow.
        size: u64,
    },
    /// The file is over a cap: no bytes follow; the gateway decides.
    Over {
        /// Path under the working directory.
        name: String,
        /// Its size.
        size: u64,
    },
    /// The file that was just sent changed while it was read; its bytes
    /// are not to be kept.
    Broken {
        /// Path under the working directory.
        name: String,
        /// Why.
        why: String,
    },
    /// Not collected.
    Skip {
        /// Path under the working directory.
        name: String,
        /// Why.
        why: String,
    },
    /// About the whole collection.
    Note {
        /// What.
        why: String,
    },
}

/// What the agent keeps of a collection, to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A file copied into the spool.
    File {
        /// Path under the working directory.
        name: String,
        /// Bytes.
        size: u64,
        /// Lowercase hex SHA-256.
        sha256: String,
        /// Its copy in the agent's spool.
        path: PathBuf,
    },
    /// A file over a cap, not copied.
    Over {
        /// Path under the working directory.
        name: String,
        /// Bytes.
        size: u64,
    },
    /// Not collected, and why.
    Skipped {
        /// Path under the working directory.
        name: String,
        /// Why.
        reason: String,
    },
    /// About the whole collection.
    Note(String),
}

/// What the collector of a job that keeps `keep` needs: its directory and
/// user, as the job had them; `None` when it keeps nothing.
pub fn spec_for(
    keep: &ArtifactSpec,
    cwd: &Cwd,
    user: Option<&JobUser>,
    own_uid: bool,
) -> Option<CollectSpec> {
    (!keep.patterns.is_empty()).then(|| CollectSpec {
        cwd: cwd.clone(),
        user: user.cloned(),
        own_uid,
        artifacts: keep.clone(),
    })
}

/// Where a job's collected artifacts are spooled.
pub fn spool_dir(spool: &Path, job: u64) -> PathBuf {
    spool.join(format!("{job}.artifacts"))
}

// ---------------------------------------------------------------------------
// The collector (a child process, as the job's user)
// ---------------------------------------------------------------------------

/// The collector's main: never returns. Exit 0 after every pattern was
/// walked (what could not be read is in the records), 125 when it could
/// not start (the message on stderr).
pub fn collect_main(json: &str) -> ! {
    let fail = |msg: String| -> ! {
        eprintln!("cannot collect the job's artifacts: {msg}");
        std::process::exit(125)
    };
    let spec: CollectSpec = match serde_json::from_str(json) {
        Ok(s) => s,
        Err(e) => fail(format!("a bad collector spec ({e})")),
    };
    if let Cwd::Private(entry) = &spec.cwd
        && let Err(e) = entry.enter()
    {
        fail(format!("refusing to enter the job's directory: {e}"));
    }
    if let Some(u) = &spec.user
        && let Err(e) = crate::jail::become_user(u, spec.own_uid)
    {
        fail(e);
    }
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        fail(format!("cannot set no_new_privs: {e}"));
    }
    if let Cwd::Path(dir) = &spec.cwd
        && let Err(e) = std::env::set_current_dir(dir)
    {
        fail(format!("cannot enter the working directory {dir}: {e}"));
    }
    let dot = match nix::fcntl::open(
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => d,
        Err(e) => fail(format!("cannot open the working directory: {}", e.desc())),
    };
    let out = std::io::BufWriter::with_capacity(MAX_CHUNK, std::io::stdout().lock());
    let mut c = Collector {
        max_file: spec.artifacts.max_file_bytes,
        max_job: spec.artifacts.max_job_bytes,
        seen: HashSet::new(),
        total: 0,
        out,
        full: false,
    };
    for p in &spec.artifacts.patterns {
        if proto::artifact::check_pattern(p).is_err() {
            continue;
        }
        let parts: Vec<&str> = p.split('/').collect();
        if let Err(e) = c.walk(&dot, "", &parts) {
            // The agent went away: nothing more to say to anyone.
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
    if c.out.flush().is_err() {
        std::process::exit(1);
    }
    std::process::exit(0)
}

/// What a collector has done so far.
struct Collector<W: std::io::Write> {
    max_file: u64,
    max_job: u64,
    seen: HashSet<String>,
    total: u64,
    out: W,
    full: bool,
}

/// The kind of a directory entry, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Link,
    Other(&'static str),
}

fn kind_of(st: &nix::sys::stat::FileStat) -> Kind {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Link,
        SFlag::S_IFIFO => Kind::Other("a FIFO"),
        SFlag::S_IFSOCK => Kind::Other("a socket"),
        _ => Kind::Other("a device"),
    }
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?'])
}

impl<W: std::io::Write> Collector<W> {
    fn record(&mut self, r: &Record) -> std::io::Result<()> {
        let line = serde_json::to_string(r).map_err(std::io::Error::other)?;
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")
    }

    fn skip(&mut self, name: &str, why: &str) -> std::io::Result<()> {
        if !self.seen.insert(name.to_string()) {
            return Ok(());
        }
        self.record(&Record::Skip {
            name: name.to_string(),
            why: why.to_string(),
        })
    }

    /// Walks `parts` (the rest of a pattern) from `dir`, at `prefix`.
    fn walk(&mut self, dir: &OwnedFd, prefix: &str, parts: &[&str]) -> std::io::Result<()> {
        let Some((first, rest)) = parts.split_first() else {
            return Ok(());
        };
        let names = if has_wildcard(first) {
            match list(dir) {
                Ok(all) => all
                    .into_iter()
                    .filter(|n| proto::artifact::component_matches(first, n))
                    .collect(),
                Err(e) => {
                    let shown = if prefix.is_empty() { "." } else { prefix };
                    return self.record(&Record::Note {
                        why: format!("cannot list {shown}: {e}"),
                    });
                }
            }
        } else {
            vec![(*first).to_string()]
        };
        for n in names {
            if self.full {
                return Ok(());
            }
            let rel = if prefix.is_empty() {
                n.clone()
            } else {
                format!("{prefix}/{n}")
            };
            let st = match nix::sys::stat::fstatat(dir, n.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // A literal name that is not there matches nothing.
                Err(Errno::ENOENT) => continue,
                Err(e) => {
                    self.skip(&rel, &format!("cannot be read: {}", e.desc()))?;
                    continue;
                }
            };
            let kind = kind_of(&st);
            if kind == Kind::Link {
                self.skip(
                    &rel,
                    "is a symbolic link; artifacts never follow links, so none leads out of the job's directory",
                )?;
                continue;
            }
            if rest.is_empty() {
                match kind {
                    Kind::File => self.file(dir, &n, &rel, &st)?,
                    Kind::Dir => {
                        self.skip(&rel, "is a directory; name the files in it, e.g. 'dir/*'")?
                    }
                    Kind::Other(what) => {
                        self.skip(&rel, &format!("is {what}; only regular files are kept"))?
                    }
                    Kind::Link => {}
                }
            } else if kind == Kind::Dir {
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                match nix::fcntl::openat(dir, n.as_str(), flags, Mode::empty()) {
                    Ok(sub) => self.walk(&sub, &rel, rest)?,
                    Err(e) => self.skip(&rel, &format!("cannot be entered: {}", e.desc()))?,
                }
            }
        }
        Ok(())
    }

    /// Sends one regular file, opened without following a link and checked
    /// to be the very file that was looked at.
    fn file(
        &mut self,
        dir: &OwnedFd,
        n: &str,
        rel: &str,
        looked: &nix::sys::stat::FileStat,
    ) -> std::io::Result<()> {
        if self.seen.contains(rel) {
            return Ok(());
        }
        if self.seen.len() >= MAX_FILES {
            self.full = true;
            return self.record(&Record::Note {
                why: format!("the patterns match more than {MAX_FILES} files; only the first {MAX_FILES} are kept"),
            });
        }
        self.seen.insert(rel.to_string());
        if rel.chars().any(char::is_control) || rel.len() > proto::artifact::MAX_NAME_LEN {
            return self.record(&Record::Skip {
                name: rel.to_string(),
                why: "its name has a control character or is too long".into(),
            });
        }
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = match nix::fcntl::openat(dir, n, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                return self.record(&Record::Skip {
                    name: rel.to_string(),
                    why: format!("cannot be opened: {}", e.desc()),
                });
            }
        };
        let st = match nix::sys::stat::fstat(fd.as_fd()) {
            Ok(st)
                if kind_of(&st) == Kind::File
                    && st.st_ino == looked.st_ino
                    && st.st_dev == looked.st_dev =>
            {
                st
            }
            _ => {
                return self.record(&Record::Skip {
                    name: rel.to_string(),
                    why: "changed while it was collected".into(),
                });
            }
        };
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if size > self.max_file || self.total.saturating_add(size) > self.max_job {
            return self.record(&Record::Over {
                name: rel.to_string(),
                size,
            });
        }
        self.record(&Record::File {
            name: rel.to_string(),
            size,
        })?;
        let mut file = std::fs::File::from(fd).take(size);
        let copied = std::io::copy(&mut file, &mut self.out)?;
        self.total += size;
        if copied < size {
            // It shrank: keep the stream in step, and say its bytes are bad.
            std::io::copy(&mut std::io::repeat(0).take(size - copied), &mut self.out)?;
            return self.record(&Record::Broken {
                name: rel.to_string(),
                why: format!("it shrank from {size} to {copied} bytes while it was collected"),
            });
        }
        Ok(())
    }
}

/// The names in `dir`, sorted, without `.` and `..` (at most
/// [`MAX_DIR_ENTRIES`]).
fn list(dir: &OwnedFd) -> Result<Vec<String>, String> {
    let dup = dir
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| e.to_string())?;
    let mut d = nix::dir::Dir::from_fd(dup).map_err(|e| e.desc().to_string())?;
    let mut names = Vec::new();
    for ent in d.iter() {
        let ent = ent.map_err(|e| e.desc().to_string())?;
        let Ok(n) = ent.file_name().to_str() else {
            continue;
        };
        if n == "." || n == ".." {
            continue;
        }
        names.push(n.to_string());
        if names.len() >= MAX_DIR_ENTRIES {
            break;
        }
    }
    names.sort();
    Ok(names)
}

// ---------------------------------------------------------------------------
// The agent's side: reading a collector, uploading
// ---------------------------------------------------------------------------

/// Runs a collector for job `job`'s `spec` and spools what it sends
/// under `spool`. Never fails: what went wrong is an [`Item::Note`].
pub async fn collect(spec: &CollectSpec, spool: &Path, job: u64) -> Vec<Item> {
    let into = spool_dir(spool, job);
    let items = collect_into(spec, &into).await;
    tracing::info!(job, items = items.len(), "artifacts collected");
    items
}

async fn collect_into(spec: &CollectSpec, into: &Path) -> Vec<Item> {
    let mut items = Vec::new();
    let _ = tokio::fs::remove_dir_all(into).await;
    if let Err(e) = tokio::fs::create_dir_all(into).await {
        items.push(Item::Note(format!(
            "the node cannot spool artifacts in {}: {e}",
            into.display()
        )));
        return items;
    }
    let mut cmd = match crate::jail::shim_command(COLLECT_VAR, spec) {
        Ok(c) => c,
        Err(e) => {
            items.push(Item::Note(format!(
                "the node cannot start its collector: {e}"
            )));
            return items;
        }
    };
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            items.push(Item::Note(format!(
                "the node cannot start its collector: {e}"
            )));
            return items;
        }
    };
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        items.push(Item::Note("the node's collector has no pipes".into()));
        return items;
    };
    let errors = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).trim().to_string()
    });
    let read = tokio::time::timeout(
        COLLECT_TIMEOUT,
        read_records(stdout, into, spec, &mut items),
    )
    .await;
    match read {
        Ok(Ok(())) => {}
        Ok(Err(e)) => items.push(Item::Note(format!("collecting stopped: {e}"))),
        Err(_) => items.push(Item::Note(format!(
            "collecting took longer than {}s and was stopped",
            COLLECT_TIMEOUT.as_secs()
        ))),
    }
    let _ = child.start_kill();
    let status = child.wait().await;
    let said = errors.await.unwrap_or_default();
    if let Ok(st) = status
        && !st.success()
        && !said.is_empty()
    {
        items.push(Item::Note(said));
    }
    items
}

/// Reads a collector's records into `items`, copying files into `into`.
async fn read_records(
    stdout: tokio::process::ChildStdout,
    into: &Path,
    spec: &CollectSpec,
    items: &mut Vec<Item>,
) -> Result<(), String> {
    let mut r = tokio::io::BufReader::with_capacity(MAX_CHUNK, stdout);
    let mut spooled = 0u64;
    let mut n = 0usize;
    loop {
        let mut line = Vec::new();
        let got = (&mut r)
            .take(MAX_HEADER)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| e.to_string())?;
        if got == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            return Err("the collector sent a header that is too long".into());
        }
        let rec: Record = serde_json::from_slice(&line[..line.len() - 1])
            .map_err(|e| format!("the collector sent a bad header: {e}"))?;
        match rec {
            Record::File { name, size } => {
                // The collector keeps to the caps; the agent checks again,
                // so its spool never takes more than the gateway would.
                spooled = spooled.saturating_add(size);
                if size > spec.artifacts.max_file_bytes || spooled > spec.artifacts.max_job_bytes {
                    return Err(format!("the collector sent {name} past the caps"));
                }
                n += 1;
                let path = into.join(n.to_string());
                let sha256 = spool_file(&mut r, &path, size).await?;
                items.push(Item::File {
                    name,
                    size,
                    sha256,
                    path,
                });
            }
            Record::Broken { name, why } => {
                if let Some(Item::File {
                    name: last, path, ..
                }) = items.last()
                    && *last == name
                {
                    let _ = tokio::fs::remove_file(path).await;
                    items.pop();
                }
                items.push(Item::Skipped { name, reason: why });
            }
            Record::Over { name, size } => items.push(Item::Over { name, size }),
            Record::Skip { name, why } => items.push(Item::Skipped { name, reason: why }),
            Record::Note { why } => items.push(Item::Note(why)),
        }
    }
}

/// Copies exactly `size` bytes from `r` into `path`; returns their SHA-256.
async fn spool_file(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    path: &Path,
    size: u64,
) -> Result<String, String> {
    let mut out = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("cannot spool {}: {e}", path.display()))?;
    let mut hash = pki::Sha256Writer::default();
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(MAX_CHUNK).min(MAX_CHUNK);
        let got = r.read(&mut buf[..want]).await.map_err(|e| e.to_string())?;
        if got == 0 {
            return Err("the collector stopped in the middle of a file".into());
        }
        hash.write_all(&buf[..got]).map_err(|e| e.to_string())?;
        out.write_all(&buf[..got])
            .await
            .map_err(|e| format!("cannot spool {}: {e}", path.display()))?;
        left -= got as u64;
    }
    out.flush().await.map_err(|e| e.to_string())?;
    Ok(pki::hex(&hash.finish()))
}

/// Sends job `job`'s collected `items` on an `Open::Artifacts` stream and
/// waits for the gateway to record them. `Err` when the stream broke (the
/// caller tries again on its next connection).
pub async fn upload(conn: &quinn::Connection, job: u64, items: &[Item]) -> Result<(), String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let e = |e: mesh::StreamError| e.to_string();
    mesh::write_frame(&mut send, &Open::Artifacts { job_id: job })
        .await
        .map_err(e)?;
    for item in items {
        match item {
            Item::File {
                name,
                size,
                sha256,
                path,
            } => {
                let head = ArtifactFrame::File {
                    name: name.clone(),
                    size: *size,
                    sha256: sha256.clone(),
                };
                mesh::write_frame(&mut send, &head).await.map_err(e)?;
                match reply(&mut recv).await? {
                    ArtifactReply::Send => {}
                    ArtifactReply::Skip { reason } => {
                        tracing::info!(job, artifact = %name, "the gateway refused an artifact: {reason}");
                        continue;
                    }
                    ArtifactReply::Rejected { reason } => {
                        tracing::warn!(job, "the gateway takes no artifacts: {reason}");
                        return Ok(());
                    }
                    other => return Err(format!("unexpected answer {other:?}")),
                }
                let mut f = tokio::fs::File::open(path)
                    .await
                    .map_err(|err| format!("cannot read the spooled {name}: {err}"))?;
                let mut left = *size;
                let mut buf = vec![0u8; MAX_CHUNK];
                while left > 0 {
                    let want = usize::try_from(left).unwrap_or(MAX_CHUNK).min(MAX_CHUNK);
                    let got = f
                        .read(&mut buf[..want])
                        .await
                        .map_err(|err| format!("cannot read the spooled {name}: {err}"))?;
                    if got == 0 {
                        return Err(format!("the spooled {name} is shorter than it was"));
                    }
                    mesh::write_frame(&mut send, &ArtifactFrame::Chunk(buf[..got].to_vec()))
                        .await
                        .map_err(e)?;
                    left -= got as u64;
                }
                match reply(&mut recv).await? {
                    ArtifactReply::Stored => {}
                    ArtifactReply::Refused { reason } => {
                        tracing::warn!(job, artifact = %name, "the gateway did not keep an artifact: {reason}");
                    }
                    ArtifactReply::Rejected { reason } => {
                        return Err(format!("the gateway cut the upload: {reason}"));
                    }
                    other => return Err(format!("unexpected answer {other:?}")),
                }
            }
            Item::Over { name, size } => {
                // Declared without bytes: the gateway refuses it by its caps.
                let head = ArtifactFrame::File {
                    name: name.clone(),
                    size: *size,
                    sha256: String::new(),
                };
                mesh::write_frame(&mut send, &head).await.map_err(e)?;
                match reply(&mut recv).await? {
                    ArtifactReply::Skip { .. } => {}
                    ArtifactReply::Rejected { reason } => {
                        tracing::warn!(job, "the gateway takes no artifacts: {reason}");
                        return Ok(());
                    }
                    ArtifactReply::Send => {
                        // The gateway's caps grew since the dispatch; the
                        // node kept no bytes. End the upload (the gateway
                        // records it as cut) rather than retry for ever.
                        tracing::warn!(job, artifact = %name, "the gateway asked for a file the node did not keep (over the caps it was given)");
                        mesh::write_frame(&mut send, &ArtifactFrame::Done)
                            .await
                            .map_err(e)?;
                        let _ = reply(&mut recv).await;
                        return Ok(());
                    }
                    other => return Err(format!("unexpected answer {other:?}")),
                }
            }
            Item::Skipped { name, reason } => {
                let f = ArtifactFrame::Skipped {
                    name: name.clone(),
                    reason: reason.clone(),
                };
                mesh::write_frame(&mut send, &f).await.map_err(e)?;
            }
            Item::Note(reason) => {
                let f = ArtifactFrame::Note {
                    reason: reason.clone(),
                };
                mesh::write_frame(&mut send, &f).await.map_err(e)?;
            }
        }
    }
    mesh::write_frame(&mut send, &ArtifactFrame::Done)
        .await
        .map_err(e)?;
    match reply(&mut recv).await? {
        ArtifactReply::Finished => {
            let _ = send.finish();
            Ok(())
        }
        ArtifactReply::Rejected { reason } => {
            tracing::warn!(job, "the gateway takes no artifacts: {reason}");
            Ok(())
        }
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// The gateway's next answer on an artifact stream.
async fn reply(recv: &mut quinn::RecvStream) -> Result<ArtifactReply, String> {
    match mesh::read_frame::<ArtifactReply>(recv, 64 * 1024).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err("the gateway ended the artifact stream".to_string()),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn records(bytes: &[u8]) -> Vec<(Record, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let nl = rest.iter().position(|b| *b == b'\n').unwrap();
            let rec: Record = serde_json::from_slice(&rest[..nl]).unwrap();
            rest = &rest[nl + 1..];
            let n = match &rec {
                Record::File { size, .. } => *size as usize,
                _ => 0,
            };
            out.push((rec, rest[..n].to_vec()));
            rest = &rest[n..];
        }
        out
    }

    /// Walks `patterns` in `dir` as the collector does, in this process.
    fn walk(dir: &Path, patterns: &[&str], max_file: u64) -> Vec<(Record, Vec<u8>)> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let mut c = Collector {
            max_file,
            max_job: 1 << 30,
            seen: HashSet::new(),
            total: 0,
            out: Vec::new(),
            full: false,
        };
        for p in patterns {
            let parts: Vec<&str> = p.split('/').collect();
            c.walk(&fd, "", &parts).unwrap();
        }
        records(&c.out)
    }

    #[test]
    fn regular_files_are_sent_and_links_and_fifos_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir(d.join("ckpt")).unwrap();
        std::fs::write(d.join("ckpt/a.pt"), b"AAAA").unwrap();
        std::fs::write(d.join("ckpt/b.pt"), b"BB").unwrap();
        std::fs::write(d.join("ckpt/c.txt"), b"no").unwrap();
        std::fs::write(d.join("metrics.json"), b"{}").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"S").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.join("ckpt/link.pt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.join("out")).unwrap();
        nix::unistd::mkfifo(&d.join("ckpt/fifo.pt"), Mode::from_bits_truncate(0o600)).unwrap();
        let got = walk(
            d,
            &[
                "ckpt/*.pt",
                "metrics.json",
                "out/secret",
                "missing.txt",
                "ckpt/*.pt",
            ],
            1 << 20,
        );
        let names: Vec<String> = got
            .iter()
            .map(|(r, b)| match r {
                Record::File { name, .. } => format!("file {name} {}", String::from_utf8_lossy(b)),
                Record::Skip { name, .. } => format!("skip {name}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "file ckpt/a.pt AAAA",
                "file ckpt/b.pt BB",
                "skip ckpt/fifo.pt",
                "skip ckpt/link.pt",
                "file metrics.json {}",
                "skip out",
            ]
        );
        for (r, b) in &got {
            assert!(b != b"S", "a link's target was read: {r:?}");
        }
    }

    #[test]
    fn a_file_over_the_cap_is_declared_without_its_bytes() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("big.bin"), vec![7u8; 100]).unwrap();
        std::fs::write(t.path().join("small.bin"), vec![1u8; 10]).unwrap();
        let got = walk(t.path(), &["*.bin"], 50);
        assert_eq!(
            got,
            vec![
                (
                    Record::Over {
                        name: "big.bin".into(),
                        size: 100
                    },
                    vec![]
                ),
                (
                    Record::File {
                        name: "small.bin".into(),
                        size: 10
                    },
                    vec![1u8; 10]
                ),
            ]
        );
    }
}
