//! One copy stream of `openclaw cp` from the CLI's side: one file up or
//! down, a directory, a link, a listing (the protocol is in
//! `proto::files`). Local writes are atomic as the node's are: a hidden
//! partial file beside the target, synced, checked against the node's
//! SHA-256, then renamed.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use client::Client;
use proto::files::{self, CopyRequest, Entry, FileMsg, FileOp};
use sha2::{Digest as _, Sha256};

/// Bytes moved so far and bytes to move, for the progress bar.
#[derive(Default)]
pub struct Moved {
    /// File bytes sent or received (a resumed prefix counts as moved).
    pub done: Arc<AtomicU64>,
    /// File bytes to move, once known (0: not known).
    pub total: Arc<AtomicU64>,
}

impl Moved {
    fn add(&self, n: usize) {
        self.done.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Sets the bytes to move.
    pub fn set_total(&self, n: u64) {
        self.total.store(n, Ordering::Relaxed);
    }
}

/// Options every file of one `cp` shares.
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    /// `-p`: keep modes and mtimes.
    pub preserve: bool,
    /// `--resume`: continue partial files.
    pub resume: bool,
    /// Add each downloaded file's size to the progress bar's total when
    /// the node says it (single files; a tree's total is known up front).
    pub count_size: bool,
}

/// Opens one copy stream and reads nothing yet. A node with all its copy
/// slots taken (other copies to it) is asked again for a while.
async fn open(
    client: &Client,
    node: &str,
    op: FileOp,
) -> Result<(quinn::SendStream, quinn::RecvStream), String> {
    let mut tries = 0;
    loop {
        let req = CopyRequest {
            node: node.to_string(),
            op: op.clone(),
        };
        match client.open_copy(req).await {
            Err(client::ClientError::Api(e))
                if e.code == proto::ErrorCode::ResourceExhausted && tries < 300 =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            r => return r.map_err(|e| e.to_string()),
        }
    }
}

/// Waits for the other side to end the stream after the last message,
/// so a finished copy no longer holds one of the node's copy slots when
/// the next starts.
async fn drain(recv: &mut quinn::RecvStream) {
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        recv.read_to_end(files::FRAME_LIMIT),
    )
    .await;
}

async fn next(recv: &mut quinn::RecvStream, node: &str) -> Result<FileMsg, String> {
    match mesh::read_frame::<FileMsg>(recv, files::FRAME_LIMIT).await {
        Ok(Some(FileMsg::Error { message })) => Err(format!("node {node}: {message}")),
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(format!(
            "node {node} ended the copy without a result (its agent or the gateway went away); run the same command again, with --resume for big files"
        )),
        Err(e) => Err(format!(
            "the copy's stream broke: {e}; run the same command again, with --resume for big files"
        )),
    }
}

async fn send(send: &mut quinn::SendStream, m: &FileMsg) -> Result<(), String> {
    mesh::write_frame(send, m)
        .await
        .map_err(|e| format!("the copy's stream broke: {e}; run the same command again"))
}

/// Why the other side stopped taking data: the node's own `Error` when it
/// sent one (a full disk, a refused path), else `fallback`.
async fn why_stopped(rx: &mut quinn::RecvStream, node: &str, fallback: String) -> String {
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match mesh::read_frame::<FileMsg>(rx, files::FRAME_LIMIT).await {
                Ok(Some(FileMsg::Error { message })) => return Some(message),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    })
    .await;
    match read {
        Ok(Some(message)) => format!("node {node}: {message}"),
        _ => fallback,
    }
}

/// SHA-256 of the first `len` bytes of `f`, or `None` when it is shorter.
fn hash_prefix(f: &mut std::fs::File, len: u64) -> std::io::Result<Option<Sha256>> {
    f.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    let mut left = len;
    let mut buf = vec![0u8; files::CHUNK];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(None);
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(Some(h))
}

/// Where an upload reads from.
pub enum Source<'a> {
    /// A local regular file.
    File(&'a Path),
    /// Standard input (`-`).
    Stdin,
}

/// Uploads one file to `remote` on `node` (into it as `into_dir` when it
/// is a directory). Returns the path the node wrote.
pub async fn put(
    client: &Client,
    node: &str,
    src: Source<'_>,
    remote: &str,
    into_dir: Option<String>,
    opts: Opts,
    moved: &Moved,
) -> Result<String, String> {
    let (mut file, meta) = match src {
        Source::File(p) => {
            let f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let m = f.metadata().map_err(|e| format!("{}: {e}", p.display()))?;
            if !m.is_file() {
                return Err(format!(
                    "{} is not a regular file (copy directories with -r)",
                    p.display()
                ));
            }
            (Some(f), Some(m))
        }
        Source::Stdin => (None, None),
    };
    let op = FileOp::Put {
        path: remote.to_string(),
        into_dir,
        mode: meta
            .as_ref()
            .filter(|_| opts.preserve)
            .map(|m| m.mode() & 0o7777),
        mtime: meta.as_ref().filter(|_| opts.preserve).map(|m| m.mtime()),
        resume: opts.resume && file.is_some(),
    };
    let (mut tx, mut rx) = open(client, node, op).await?;
    let (written, offered, prefix) = match next(&mut rx, node).await? {
        FileMsg::Ready {
            path,
            offset,
            prefix,
            ..
        } => (path, offset, prefix),
        m => return Err(format!("node {node} answered {m:?} instead of Ready")),
    };
    // Resume from the node's partial file only where our own prefix
    // hashes the same.
    let mut start = 0;
    let mut hasher = Sha256::new();
    if let (Some(f), Some(m)) = (file.as_mut(), meta.as_ref())
        && offered > 0
        && offered <= m.len()
        && let Ok(Some(h)) = hash_prefix(f, offered)
        && <[u8; 32]>::from(h.clone().finalize()) == prefix
    {
        start = offered;
        hasher = h;
        moved.add(usize::try_from(offered).unwrap_or(0));
    }
    send(&mut tx, &FileMsg::Start { offset: start }).await?;
    let mut total = start;
    let mut buf = vec![0u8; files::CHUNK];
    match file.as_mut() {
        Some(f) => {
            f.seek(SeekFrom::Start(start))
                .map_err(|e| format!("{written}: cannot read the local file: {e}"))?;
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| format!("{written}: cannot read the local file: {e}"))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                total += n as u64;
                if let Err(e) = send(&mut tx, &FileMsg::Data(buf[..n].to_vec())).await {
                    return Err(why_stopped(&mut rx, node, e).await);
                }
                moved.add(n);
            }
        }
        None => {
            let mut chunks = stdin_chunks();
            loop {
                // Standard input may wait for ever; a copy cut off
                // meanwhile (a revoked credential, a lost gateway) ends now.
                let chunk = tokio::select! {
                    c = chunks.recv() => c,
                    s = tx.stopped() => {
                        return Err(format!(
                            "the copy was cut off while waiting for standard input ({}); run it again",
                            match s {
                                Ok(code) => format!("stopped by the other side: {code:?}"),
                                Err(e) => e.to_string(),
                            }
                        ));
                    }
                };
                let Some(chunk) = chunk else { break };
                let chunk = chunk?;
                hasher.update(&chunk);
                total += chunk.len() as u64;
                moved.add(chunk.len());
                if let Err(e) = send(&mut tx, &FileMsg::Data(chunk)).await {
                    return Err(why_stopped(&mut rx, node, e).await);
                }
            }
        }
    }
    if let (Some(f), Some(m)) = (&file, &meta) {
        let after = f
            .metadata()
            .map_err(|e| format!("cannot read the local file: {e}"))?;
        if total != m.len() || after.len() != m.len() || after.mtime() != m.mtime() {
            let message = format!(
                "the local file changed while it was copied ({} bytes at the start, {total} read); copy it again when it is still",
                m.len()
            );
            let _ = send(
                &mut tx,
                &FileMsg::Error {
                    message: message.clone(),
                },
            )
            .await;
            return Err(message);
        }
    }
    let sha256: [u8; 32] = hasher.finalize().into();
    send(
        &mut tx,
        &FileMsg::End {
            size: total,
            sha256,
        },
    )
    .await?;
    let _ = tx.finish();
    match next(&mut rx, node).await? {
        FileMsg::Done { .. } => {
            drain(&mut rx).await;
            Ok(written)
        }
        m => Err(format!("node {node} answered {m:?} instead of Done")),
    }
}

/// Standard input in chunks, read with blocking reads on a thread of its
/// own (as `openclaw run` reads it, `crate::input`), at most 4 chunks ahead.
fn stdin_chunks() -> tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("cp-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut buf = vec![0u8; files::CHUNK];
                let item = match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(format!("cannot read standard input: {e}")),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
    if spawned.is_err() {
        let (tx2, rx2) = tokio::sync::mpsc::channel(1);
        let _ = tx2.try_send(Err("cannot start a thread to read standard input".into()));
        return rx2;
    }
    rx
}

/// Where a download writes.
pub enum Sink<'a> {
    /// A local path (its directory must exist).
    File(&'a Path),
    /// Standard output (`-`).
    Stdout,
}

/// Downloads `remote` from `node` to `sink`. Returns the size.
pub async fn get(
    client: &Client,
    node: &str,
    remote: &str,
    sink: Sink<'_>,
    opts: Opts,
    moved: &Moved,
) -> Result<u64, String> {
    let part_path = match &sink {
        Sink::File(p) => Some(part_of(p)?),
        Sink::Stdout => None,
    };
    let held = match (&part_path, opts.resume) {
        (Some(pp), true) => std::fs::symlink_metadata(pp)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map_or(0, |m| m.len()),
        _ => 0,
    };
    let (mut tx, mut rx) = open(
        client,
        node,
        FileOp::Get {
            path: remote.to_string(),
            offset: held,
        },
    )
    .await?;
    let (size, mode, mtime, offered, prefix) = match next(&mut rx, node).await? {
        FileMsg::Ready {
            size,
            mode,
            mtime,
            offset,
            prefix,
            ..
        } => (size, mode, mtime, offset, prefix),
        m => return Err(format!("node {node} answered {m:?} instead of Ready")),
    };
    if opts.count_size {
        moved.total.fetch_add(size, Ordering::Relaxed);
    }
    let mut part = match &part_path {
        Some(pp) => Some(open_part(pp)?),
        None => None,
    };
    let mut start = 0;
    let mut hasher = Sha256::new();
    if let Some(f) = part.as_mut()
        && offered > 0
        && let Ok(Some(h)) = hash_prefix(f, offered)
        && <[u8; 32]>::from(h.clone().finalize()) == prefix
    {
        start = offered;
        hasher = h;
        moved.add(usize::try_from(offered).unwrap_or(0));
    }
    if let Some(f) = part.as_mut() {
        f.set_len(start)
            .and_then(|()| f.seek(SeekFrom::Start(start)).map(|_| ()))
            .map_err(|e| format!("cannot write the partial file: {e}"))?;
    }
    send(&mut tx, &FileMsg::Start { offset: start }).await?;
    let mut total = start;
    let keep = |total: u64| match &part_path {
        Some(pp) => format!(
            " ({total} bytes are kept in {}; add --resume to continue from there)",
            pp.display()
        ),
        None => String::new(),
    };
    let (end_size, sum) = loop {
        let m = match next(&mut rx, node).await {
            Ok(m) => m,
            Err(e) => return Err(format!("{e}{}", keep(total))),
        };
        match m {
            FileMsg::Data(bytes) => {
                // Never more than the node said the file holds: a node
                // that goes on would fill the local disk.
                if total.saturating_add(bytes.len() as u64) > size {
                    if let Some(pp) = &part_path {
                        let _ = std::fs::remove_file(pp);
                    }
                    let message = format!(
                        "node {node} sent more than the {size} bytes it said the file holds; nothing was written under the name"
                    );
                    let _ = send(
                        &mut tx,
                        &FileMsg::Error {
                            message: message.clone(),
                        },
                    )
                    .await;
                    return Err(message);
                }
                hasher.update(&bytes);
                total += bytes.len() as u64;
                match part.as_mut() {
                    Some(f) => f.write_all(&bytes).map_err(|e| {
                        let _ = part_path.as_ref().map(std::fs::remove_file);
                        format!("cannot write the partial file: {e}; it was removed, nothing was written under the name")
                    })?,
                    None => crate::term::raw_out(&bytes),
                }
                moved.add(bytes.len());
            }
            FileMsg::End { size, sha256 } => break (size, sha256),
            m => return Err(format!("node {node} sent {m:?} inside the data")),
        }
    };
    let ours: [u8; 32] = hasher.finalize().into();
    if end_size != total || ours != sum || total != size {
        if let Some(pp) = &part_path {
            let _ = std::fs::remove_file(pp);
        }
        let message = format!(
            "checksum mismatch: received {total} bytes with SHA-256 {}, node {node} sent {end_size} bytes with {}; nothing was written under the name, copy it again",
            files::hex(&ours),
            files::hex(&sum)
        );
        let _ = send(
            &mut tx,
            &FileMsg::Error {
                message: message.clone(),
            },
        )
        .await;
        return Err(message);
    }
    if let (Some(f), Some(pp), Sink::File(target)) = (part.as_mut(), &part_path, &sink) {
        let finish = (|| -> std::io::Result<()> {
            if opts.preserve {
                f.set_permissions(std::fs::Permissions::from_mode(local_mode(mode, false)))?;
                f.set_modified(unix_time(mtime))?;
            }
            f.sync_all()?;
            check_replaceable(target)?;
            std::fs::rename(pp, target)
        })();
        if let Err(e) = finish {
            let message = format!("{}: {e}", target.display());
            let _ = send(
                &mut tx,
                &FileMsg::Error {
                    message: message.clone(),
                },
            )
            .await;
            return Err(message);
        }
        if let Some(dir) = target.parent()
            && let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = d.sync_all();
        }
    }
    send(
        &mut tx,
        &FileMsg::Done {
            bytes: total - start,
        },
    )
    .await?;
    let _ = tx.finish();
    drain(&mut rx).await;
    Ok(total)
}

/// Opens (or creates) the local partial file: never through a link, and
/// never one someone else planted (another user's file, whose owner could
/// read it or change it after the checksum, or a hard link to a file
/// elsewhere, which would be truncated).
fn open_part(pp: &Path) -> Result<std::fs::File, String> {
    let open = |create: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .mode(0o666)
            .custom_flags(nofollow())
            .open(pp)
    };
    // Created here, or left by an earlier attempt: only one that was
    // already there is checked for its owner and links (a file this copy
    // created may show another owner, e.g. on root-squashed NFS).
    let (f, created) = match open(true) {
        Ok(f) => (Ok(f), true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (open(false), false),
        Err(e) => (Err(e), true),
    };
    let f = f.map_err(|e| format!("{}: cannot write there: {e}", pp.display()))?;
    let m = f
        .metadata()
        .map_err(|e| format!("{}: cannot read it: {e}", pp.display()))?;
    if !m.is_file() || (!created && (m.uid() != nix::unistd::geteuid().as_raw() || m.nlink() != 1))
    {
        return Err(format!(
            "{}: the partial file is not a regular file of yours with one link (someone else may have planted it); remove it and copy again",
            pp.display()
        ));
    }
    Ok(f)
}

/// `O_NOFOLLOW` for the local partial file, so a link planted under its
/// name is never written through.
fn nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// The final name may be replaced only if it is absent or a regular file.
fn check_replaceable(target: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) => Err(std::io::Error::other(format!(
            "is {}; it is not replaced",
            if m.is_dir() {
                "a directory"
            } else if m.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a regular file"
            }
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The partial file beside `target`.
pub fn part_of(target: &Path) -> Result<PathBuf, String> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file name", target.display()))?;
    Ok(target.with_file_name(files::part_name(name)))
}

fn unix_time(t: i64) -> std::time::SystemTime {
    let base = std::time::UNIX_EPOCH;
    if t >= 0 {
        base + std::time::Duration::from_secs(t.unsigned_abs())
    } else {
        base - std::time::Duration::from_secs(t.unsigned_abs())
    }
}

/// The mode `-p` gives a downloaded file or directory: the node's
/// permission bits without set-user-ID and set-group-ID (and, on a file,
/// the sticky bit). A node may be hostile, and an admin who downloads as
/// root must not receive a set-user-ID root program from it; scp keeps
/// those bits, `openclaw cp` does not. Pure.
pub fn local_mode(mode: u32, dir: bool) -> u32 {
    if dir { mode & 0o1777 } else { mode & 0o777 }
}

/// Sets a local directory's mode and mtime (`-p`).
pub fn set_dir_attrs(dir: &Path, mode: u32, mtime: i64) -> Result<(), String> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(local_mode(mode, true)))
        .and_then(|()| std::fs::File::open(dir)?.set_modified(unix_time(mtime)))
        .map_err(|e| format!("{}: cannot set its mode and time: {e}", dir.display()))
}

/// Most entries one listing may hold (as many as a node lists).
const MAX_LISTED: usize = 1_000_000;
/// Most bytes of names and link targets one listing may hold.
const MAX_LISTED_BYTES: usize = 512 * 1024 * 1024;
/// Longest name or link target one entry may carry (a path 16 levels of
/// `PATH_MAX` deep).
const MAX_ENTRY_NAME: usize = 16 * files::MAX_PATH;

/// The entries a node sent, kept within bounds: a hostile node could
/// otherwise send entries until the CLI runs out of memory.
#[derive(Default)]
struct Listing {
    entries: Vec<Entry>,
    count: usize,
    bytes: usize,
}

impl Listing {
    fn keep(&mut self, e: Entry) -> Result<(), String> {
        let target = match &e.kind {
            proto::files::EntryKind::Symlink(t) => t.len(),
            _ => 0,
        };
        if e.name.len() > MAX_ENTRY_NAME || target > MAX_ENTRY_NAME {
            return Err(format!(
                "the node listed a name or link target longer than {MAX_ENTRY_NAME} bytes; nothing was copied"
            ));
        }
        self.count += 1;
        self.bytes = self.bytes.saturating_add(e.name.len() + target);
        if self.count > MAX_LISTED || self.bytes > MAX_LISTED_BYTES {
            return Err(format!(
                "the node listed more than {MAX_LISTED} entries or {MAX_LISTED_BYTES} bytes of names; copy a part of the tree"
            ));
        }
        self.entries.push(e);
        Ok(())
    }
}

/// One call that answers `Done` (a directory, a link) or entries (a
/// listing, a stat).
pub async fn simple(client: &Client, node: &str, op: FileOp) -> Result<Vec<Entry>, String> {
    let (mut tx, mut rx) = open(client, node, op).await?;
    let _ = tx.finish();
    let mut out = Listing::default();
    loop {
        match next(&mut rx, node).await? {
            FileMsg::Entry(e) => out.keep(e).map_err(|e| format!("node {node}: {e}"))?,
            FileMsg::Done { .. } => {
                drain(&mut rx).await;
                return Ok(out.entries);
            }
            m => return Err(format!("node {node} sent {m:?} in a listing")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn attack_a_download_never_gets_set_user_or_group_id_bits() {
        // A hostile node offers a set-user-ID root shell to an admin who
        // downloads with -p as root.
        assert_eq!(local_mode(0o4755, false), 0o755);
        assert_eq!(local_mode(0o2755, false), 0o755);
        assert_eq!(local_mode(0o7777, false), 0o777);
        assert_eq!(local_mode(0o640, false), 0o640);
        // A directory keeps its sticky bit (a shared scratch dir), not
        // set-group-ID.
        assert_eq!(local_mode(0o3777, true), 0o1777);
        assert_eq!(local_mode(0o40755 & 0o7777, true), 0o755);
    }

    #[test]
    fn a_listing_a_node_sends_is_bounded() {
        let entry = |name: String, kind: proto::files::EntryKind| Entry {
            name,
            kind,
            mode: 0o644,
            mtime: 0,
            size: 0,
        };
        let mut listing = Listing::default();
        for i in 0..1000 {
            listing
                .keep(entry(format!("f{i}"), proto::files::EntryKind::File))
                .unwrap();
        }
        assert_eq!(listing.entries.len(), 1000);
        // One name or link target past the path limit.
        let long = "a".repeat(files::MAX_PATH * 17);
        let e = listing
            .keep(entry(long.clone(), proto::files::EntryKind::File))
            .unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        let e = listing
            .keep(entry("l".into(), proto::files::EntryKind::Symlink(long)))
            .unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        // More entries than a node ever lists.
        let mut listing = Listing {
            entries: Vec::new(),
            count: MAX_LISTED,
            bytes: 0,
        };
        let e = listing
            .keep(entry("x".into(), proto::files::EntryKind::Dir))
            .unwrap_err();
        assert!(e.contains("more than"), "{e}");
        // More name bytes in all than a listing may hold.
        let mut listing = Listing {
            entries: Vec::new(),
            count: 0,
            bytes: MAX_LISTED_BYTES,
        };
        let e = listing
            .keep(entry("x".into(), proto::files::EntryKind::Dir))
            .unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }

    #[test]
    fn a_planted_local_partial_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = tmp.path().join(".f.openclaw-part");
        assert!(open_part(&ours).is_ok());
        // A hard link under the partial name to a file elsewhere.
        let far = tmp.path().join("far");
        std::fs::write(&far, b"far").unwrap();
        let linked = tmp.path().join(".g.openclaw-part");
        std::fs::hard_link(&far, &linked).unwrap();
        let e = open_part(&linked).unwrap_err();
        assert!(e.contains("remove it"), "{e}");
        if !nix::unistd::geteuid().is_root() {
            crate::term::errln!("SKIPPED: another user's partial file needs root to chown it");
            return;
        }
        let planted = tmp.path().join(".h.openclaw-part");
        std::fs::write(&planted, b"").unwrap();
        std::os::unix::fs::chown(&planted, Some(4242), Some(4242)).unwrap();
        let e = open_part(&planted).unwrap_err();
        assert!(e.contains("remove it"), "{e}");
    }
}
