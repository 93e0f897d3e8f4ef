//! The file child: one copy stream's work on the node (`openclaw cp`),
//! done as the job user, never as the agent.
//!
//! The agent starts its own binary as the exec shim with a [`FileSpec`]
//! in [`SPEC_VAR`] (`crate::copy`). The child drops to the job user
//! ([`crate::jail::become_user`]) and sets `no_new_privs` first, then
//! speaks [`FileMsg`] frames on its stdin and stdout, which the agent
//! splices onto the QUIC stream; the other end is the CLI.
//!
//! Every path is opened from `/` one component at a time relative to the
//! directory before it, with `O_NOFOLLOW` on each (`openat`), so a
//! symbolic link never leads anywhere, in or out of `allowed_paths`. What
//! is read or written must be a regular file: directories, links,
//! devices, FIFOs and sockets are refused by name. A file is written
//! under [`proto::files::part_name`] in its directory, synced, checked
//! against the sender's SHA-256, and only then renamed onto its name.

use std::fs::File;
use std::io::{Read, Seek as _, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use proto::files::{self, Entry, EntryKind, FileMsg, FileOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::jail::JobUser;

/// The environment variable that carries a [`FileSpec`] to the shim.
pub const SPEC_VAR: &str = "OPENCLAW_FILE_SPEC";
/// Most entries one listing sends.
const MAX_ENTRIES: usize = 1_000_000;
/// Deepest directory nesting a listing descends.
const MAX_DEPTH: usize = 256;

/// What the file child does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileSpec {
    /// The operation.
    pub op: FileOp,
    /// node.toml `[policy] allowed_paths`.
    pub allowed: Vec<String>,
    /// Drop to this user first (the agent is root and drops for jobs).
    pub user: Option<JobUser>,
}

/// The file child's main: never returns. Exit 0 when the operation
/// succeeded, 1 when it failed (the reason went to the peer as
/// [`FileMsg::Error`]), 125 when the child could not start.
pub fn serve_main(json: &str) -> ! {
    let spec: FileSpec = match serde_json::from_str(json) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("openclaw file child: bad spec ({e}); it is started by the node agent only");
            std::process::exit(125)
        }
    };
    let mut out = std::io::BufWriter::with_capacity(files::CHUNK + 64, std::io::stdout().lock());
    let mut input = std::io::stdin().lock();
    let dropped = match &spec.user {
        Some(u) => crate::jail::become_user(u, false),
        None => Ok(()),
    }
    .and_then(|()| {
        nix::sys::prctl::set_no_new_privs().map_err(|e| format!("cannot set no_new_privs: {e}"))
    });
    let result = dropped.and_then(|()| serve(&spec, &mut input, &mut out));
    let code = match result {
        Ok(()) => 0,
        Err(message) => {
            let _ = write_msg(&mut out, &FileMsg::Error { message });
            1
        }
    };
    let _ = out.flush();
    std::process::exit(code)
}

/// Reads one frame; `Ok(None)` at a clean end of input.
pub fn read_msg(r: &mut impl Read) -> Result<Option<FileMsg>, String> {
    let mut header = [0u8; proto::frame::HEADER_LEN];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("the peer's stream ended inside a frame".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read from the peer: {e}")),
        }
    }
    let len = proto::frame::body_len(header, files::FRAME_LIMIT).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .map_err(|e| format!("cannot read from the peer: {e}"))?;
    proto::frame::decode(&body)
        .map(Some)
        .map_err(|e| format!("the peer sent a bad frame: {e}"))
}

/// Writes one frame.
pub fn write_msg(w: &mut impl Write, m: &FileMsg) -> Result<(), String> {
    let bytes = proto::frame::encode(m).map_err(|e| e.to_string())?;
    w.write_all(&bytes)
        .map_err(|e| format!("cannot write to the peer: {e}"))
}

fn serve(spec: &FileSpec, r: &mut impl Read, w: &mut impl Write) -> Result<(), String> {
    let path = spec.op.path().to_string();
    match &spec.op {
        FileOp::Put {
            into_dir,
            mode,
            mtime,
            resume,
            ..
        } => {
            let put = Put {
                into_dir: into_dir.as_deref(),
                mode: *mode,
                mtime: *mtime,
                resume: *resume,
            };
            put_file(&path, &spec.allowed, &put, r, w)
        }
        FileOp::Get { offset, .. } => get_file(&path, &spec.allowed, *offset, r, w),
        FileOp::Stat { .. } => {
            let (dir, name) = resolve(&path, &spec.allowed)?;
            let st = match &name {
                Some(n) => stat_at(&dir, n).map_err(|e| format!("{path}: {}", e.desc()))?,
                None => nix::sys::stat::fstat(&dir).map_err(|e| format!("{path}: {e}"))?,
            };
            let kind = match (kind_of(&st), &name) {
                (Kind::Link, Some(n)) => EntryKind::Symlink(link_target(&dir, n, &path)?),
                (k, _) => k.entry(),
            };
            write_msg(w, &FileMsg::Entry(entry("", kind, &st)))?;
            write_msg(w, &FileMsg::Done { bytes: 0 })
        }
        FileOp::List { .. } => list(&path, &spec.allowed, w),
        FileOp::Mkdir { mode, mtime, .. } => mkdir(&path, &spec.allowed, *mode, *mtime, w),
        FileOp::Symlink { target, .. } => symlink(&path, &spec.allowed, target, w),
    }
}

/// What a path is, from `lstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Link,
    Device,
    Fifo,
    Socket,
}

impl Kind {
    fn entry(self) -> EntryKind {
        match self {
            Kind::File => EntryKind::File,
            Kind::Dir => EntryKind::Dir,
            Kind::Link => EntryKind::Symlink(String::new()),
            Kind::Device | Kind::Fifo | Kind::Socket => EntryKind::Other,
        }
    }

    /// Why a copy refuses this kind where it wants a regular file.
    fn refusal(self) -> &'static str {
        match self {
            Kind::File => "is a regular file",
            Kind::Dir => "is a directory; copy directories with -r",
            Kind::Link => {
                "is a symbolic link; copies never follow links (name the file it points at)"
            }
            Kind::Device => "is a device; only regular files are copied",
            Kind::Fifo => "is a FIFO; only regular files are copied",
            Kind::Socket => "is a socket; only regular files are copied",
        }
    }
}

fn kind_of(st: &nix::sys::stat::FileStat) -> Kind {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Link,
        SFlag::S_IFIFO => Kind::Fifo,
        SFlag::S_IFSOCK => Kind::Socket,
        _ => Kind::Device,
    }
}

fn entry(name: &str, kind: EntryKind, st: &nix::sys::stat::FileStat) -> Entry {
    Entry {
        name: name.to_string(),
        kind,
        mode: st.st_mode & 0o7777,
        mtime: st.st_mtime,
        size: u64::try_from(st.st_size).unwrap_or(0),
    }
}

fn stat_at(dir: &OwnedFd, name: &str) -> nix::Result<nix::sys::stat::FileStat> {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

fn link_target(dir: &OwnedFd, name: &str, shown: &str) -> Result<String, String> {
    let t = nix::fcntl::readlinkat(dir, name).map_err(|e| format!("{shown}: {}", e.desc()))?;
    let t = t
        .into_string()
        .map_err(|_| format!("{shown}: the link's target is not UTF-8; it is not copied"))?;
    if files::has_control(&t) {
        return Err(format!(
            "{shown}: the link's target has a control character; it is not copied"
        ));
    }
    Ok(t)
}

/// Opens directory `name` in `dir` without following a link; a refusal
/// says what `shown` is instead.
fn open_dir(dir: &OwnedFd, name: &str, shown: &str) -> Result<OwnedFd, String> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    nix::fcntl::openat(dir, name, flags, Mode::empty()).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => match stat_at(dir, name) {
            Ok(st) if kind_of(&st) == Kind::Link => format!(
                "{shown} is a symbolic link; copies never follow links, so a link never leads out of allowed_paths"
            ),
            Ok(st) => format!("{shown} is not a directory ({})", kind_of(&st).refusal()),
            Err(e) => format!("{shown}: {}", e.desc()),
        },
        e => format!("{shown}: {}", e.desc()),
    })
}

/// Checks `path` against `allowed` and opens its parent directory from
/// `/`, one component at a time without following links. Returns the
/// parent and the last component, or the directory itself and `None`
/// when `path` is an allowed root.
fn resolve(path: &str, allowed: &[String]) -> Result<(OwnedFd, Option<String>), String> {
    let (root, below) = files::split_allowed(path, allowed).map_err(|e| match e {
        files::PathError::NoneAllowed | files::PathError::BadAllowed(_) => e.to_string(),
        e => format!("refused: {e}"),
    })?;
    let mut dir = nix::fcntl::open(
        "/",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open /: {e}"))?;
    let mut shown = String::new();
    let mut walk = root.iter().chain(below.iter()).peekable();
    let mut last = None;
    while let Some(c) = walk.next() {
        shown.push('/');
        shown.push_str(c);
        // The last component below the root is the name; a root is
        // always a directory.
        if walk.peek().is_none() && !below.is_empty() {
            last = Some((*c).to_string());
            break;
        }
        dir = open_dir(&dir, c, &shown)?;
    }
    Ok((dir, last))
}

/// A `Put`'s options.
struct Put<'a> {
    into_dir: Option<&'a str>,
    mode: Option<u32>,
    mtime: Option<i64>,
    resume: bool,
}

/// SHA-256 of the first `len` bytes of `f` (read from its start).
fn hash_prefix(f: &mut File, len: u64) -> std::io::Result<Sha256> {
    f.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    let mut left = len;
    let mut buf = vec![0u8; files::CHUNK];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h)
}

fn current_umask() -> u32 {
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
    nix::sys::stat::umask(old);
    old.bits()
}

fn put_file(
    path: &str,
    allowed: &[String],
    opt: &Put<'_>,
    r: &mut impl Read,
    w: &mut impl Write,
) -> Result<(), String> {
    let (mut dir, name) = resolve(path, allowed)?;
    let mut shown = path.trim_end_matches('/').to_string();
    let name = match (name, opt.into_dir) {
        (None, Some(inner)) => {
            shown = format!("{shown}/{inner}");
            inner.to_string()
        }
        (None, None) => return Err(format!("{path} is a directory; name a file in it")),
        (Some(n), into) => match (stat_at(&dir, &n).map(|s| kind_of(&s)), into) {
            (Ok(Kind::Dir), Some(inner)) => {
                dir = open_dir(&dir, &n, &shown)?;
                shown = format!("{shown}/{inner}");
                inner.to_string()
            }
            (Ok(Kind::File), _) | (Err(Errno::ENOENT), _) => n,
            (Ok(k), _) => return Err(format!("{shown} {}; it is not replaced", k.refusal())),
            (Err(e), _) => return Err(format!("{shown}: {}", e.desc())),
        },
    };
    if !files::valid_name(&name) {
        return Err(format!("{shown}: not a file name a copy may create"));
    }
    // The final name, if it exists, must be a regular file: the rename
    // replaces it, never anything else.
    match stat_at(&dir, &name) {
        Ok(st) if kind_of(&st) != Kind::File => {
            return Err(format!(
                "{shown} {}; it is not replaced",
                kind_of(&st).refusal()
            ));
        }
        Ok(_) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(format!("{shown}: {}", e.desc())),
    }
    let part = files::part_name(&name);
    // Never O_TRUNC here: the file is emptied (without --resume) only
    // once this copy holds its lock, never under another copy's feet.
    // Created here (O_EXCL), or left by an earlier attempt: only one that
    // was already there is checked for its owner and links below (a file
    // this copy created may show another owner, e.g. on root-squashed NFS).
    let flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let excl = flags | OFlag::O_CREAT | OFlag::O_EXCL;
    let (fd, created) =
        match nix::fcntl::openat(&dir, part.as_str(), excl, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => Ok((fd, true)),
            Err(Errno::EEXIST) => {
                nix::fcntl::openat(&dir, part.as_str(), flags, Mode::empty()).map(|fd| (fd, false))
            }
            Err(e) => Err(e),
        }
        .map_err(|e| match e {
            Errno::ELOOP => format!(
                "{shown}: its partial file {part} is a symbolic link; remove it (copies never follow links)"
            ),
            e => format!("{shown}: cannot create {part} there: {}", e.desc()),
        })?;
    let f = File::from(fd);
    let meta = f
        .metadata()
        .map_err(|e| format!("{shown}: cannot read {part}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "{shown}: its partial file {part} is not a regular file; remove it"
        ));
    }
    // A partial file planted by someone else (another user's file, whose
    // owner could read or change it after the check, or a hard link to a
    // file elsewhere, which would be truncated) is never written through.
    if !created && (meta.uid() != nix::unistd::geteuid().as_raw() || meta.nlink() != 1) {
        return Err(format!(
            "{shown}: its partial file {part} belongs to another user or has other hard links; remove it"
        ));
    }
    // One copy to a name at a time: two writing one partial file would
    // mix their bytes, and each would check only its own stream.
    let mut f = match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((_, Errno::EAGAIN)) => {
            return Err(format!(
                "{shown}: another copy to this name is under way (it holds {part}); an interrupted copy lets go a few seconds after it stopped: wait, then run the same command again, or copy under another name"
            ));
        }
        Err((_, e)) => return Err(format!("{shown}: cannot lock {part}: {}", e.desc())),
    };
    let held = if opt.resume { meta.len() } else { 0 };
    let prefix =
        hash_prefix(&mut f, held).map_err(|e| format!("{shown}: cannot read {part}: {e}"))?;
    write_msg(
        w,
        &FileMsg::Ready {
            path: shown.clone(),
            size: 0,
            mode: 0,
            mtime: 0,
            offset: held,
            prefix: prefix.clone().finalize().into(),
        },
    )?;
    w.flush()
        .map_err(|e| format!("cannot write to the peer: {e}"))?;
    let start = match read_msg(r)? {
        Some(FileMsg::Start { offset }) if offset == held || offset == 0 => offset,
        Some(FileMsg::Start { offset }) => {
            return Err(format!(
                "{shown}: the sender asked to start at {offset}, but {held} bytes were offered"
            ));
        }
        Some(FileMsg::Error { message }) => return Err(message),
        None => return Err(format!("{shown}: the sender went away before starting")),
        Some(m) => return Err(format!("{shown}: unexpected {m:?} before Start")),
    };
    let mut hasher = if start == 0 { Sha256::new() } else { prefix };
    let wrote = |e: std::io::Error| -> String {
        format!(
            "{shown}: cannot write its partial file {part}: {e}; the partial file was removed, nothing was written under its name"
        )
    };
    let seek = f
        .set_len(start)
        .and_then(|()| f.seek(SeekFrom::Start(start)));
    if let Err(e) = seek {
        let _ = nix::unistd::unlinkat(&dir, part.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        return Err(wrote(e));
    }
    let mut total = start;
    let (size, sum) = loop {
        match read_msg(r) {
            Ok(Some(FileMsg::Data(bytes))) => {
                if let Err(e) = f.write_all(&bytes) {
                    let _ = nix::unistd::unlinkat(
                        &dir,
                        part.as_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    );
                    return Err(wrote(e));
                }
                hasher.update(&bytes);
                total += bytes.len() as u64;
            }
            Ok(Some(FileMsg::End { size, sha256 })) => break (size, sha256),
            Ok(Some(FileMsg::Error { message })) => return Err(message),
            Ok(Some(m)) => return Err(format!("{shown}: unexpected {m:?} in the data")),
            Ok(None) | Err(_) => {
                // The peer went away: the partial file stays for --resume.
                let _ = f.sync_data();
                return Err(format!(
                    "{shown}: the sender went away after {total} bytes; {part} holds them for 'openclaw cp --resume'"
                ));
            }
        }
    };
    let ours: [u8; 32] = hasher.finalize().into();
    if size != total || sum != ours {
        let _ = nix::unistd::unlinkat(&dir, part.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        return Err(format!(
            "{shown}: checksum mismatch: received {total} bytes with SHA-256 {}, the sender sent {size} bytes with {}; nothing was written under its name, copy it again",
            files::hex(&ours),
            files::hex(&sum)
        ));
    }
    let mode = opt.mode.map_or(0o666 & !current_umask(), |m| m & 0o777);
    let finish = nix::sys::stat::fchmod(&*f, Mode::from_bits_truncate(mode))
        .map_err(std::io::Error::from)
        .and_then(|()| match opt.mtime {
            Some(t) => f.set_modified(unix_time(t)),
            None => Ok(()),
        })
        .and_then(|()| f.sync_all());
    if let Err(e) = finish {
        let _ = nix::unistd::unlinkat(&dir, part.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        return Err(wrote(e));
    }
    nix::fcntl::renameat(&dir, part.as_str(), &dir, name.as_str())
        .map_err(|e| format!("{shown}: cannot rename {part} onto it: {}", e.desc()))?;
    let _ = nix::unistd::fsync(&dir);
    write_msg(
        w,
        &FileMsg::Done {
            bytes: total - start,
        },
    )
}

fn unix_time(t: i64) -> std::time::SystemTime {
    let base = std::time::UNIX_EPOCH;
    if t >= 0 {
        base + std::time::Duration::from_secs(t.unsigned_abs())
    } else {
        base - std::time::Duration::from_secs(t.unsigned_abs())
    }
}

fn get_file(
    path: &str,
    allowed: &[String],
    want: u64,
    r: &mut impl Read,
    w: &mut impl Write,
) -> Result<(), String> {
    let (dir, name) = resolve(path, allowed)?;
    let Some(name) = name else {
        return Err(format!("{path} {}", Kind::Dir.refusal()));
    };
    let st = stat_at(&dir, &name).map_err(|e| format!("{path}: {}", e.desc()))?;
    if kind_of(&st) != Kind::File {
        return Err(format!("{path} {}", kind_of(&st).refusal()));
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(&dir, name.as_str(), flags, Mode::empty())
        .map_err(|e| format!("{path}: {}", e.desc()))?;
    let mut f = File::from(fd);
    let meta = f.metadata().map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path} is no longer a regular file"));
    }
    let size = meta.len();
    let offset = want.min(size);
    let prefix = hash_prefix(&mut f, offset).map_err(|e| format!("{path}: cannot read it: {e}"))?;
    write_msg(
        w,
        &FileMsg::Ready {
            path: path.to_string(),
            size,
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime(),
            offset,
            prefix: prefix.clone().finalize().into(),
        },
    )?;
    w.flush()
        .map_err(|e| format!("cannot write to the peer: {e}"))?;
    let start = match read_msg(r)? {
        Some(FileMsg::Start { offset: o }) if o == offset || o == 0 => o,
        Some(FileMsg::Error { message }) => return Err(message),
        None => return Err(format!("{path}: the receiver went away before starting")),
        Some(m) => return Err(format!("{path}: unexpected {m:?} before Start")),
    };
    let mut hasher = if start == 0 { Sha256::new() } else { prefix };
    f.seek(SeekFrom::Start(start))
        .map_err(|e| format!("{path}: cannot read it: {e}"))?;
    let mut total = start;
    let mut buf = vec![0u8; files::CHUNK];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("{path}: cannot read it: {e}")),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        write_msg(w, &FileMsg::Data(buf[..n].to_vec()))?;
    }
    let after = f.metadata().map_err(|e| format!("{path}: {e}"))?;
    if total != size || after.len() != size || after.mtime() != meta.mtime() {
        return Err(format!(
            "{path} changed while it was copied ({size} bytes at the start, {total} read); copy it again when it is still"
        ));
    }
    write_msg(
        w,
        &FileMsg::End {
            size: total,
            sha256: hasher.finalize().into(),
        },
    )?;
    w.flush()
        .map_err(|e| format!("cannot write to the peer: {e}"))?;
    // The receiver's verdict ends the stream (the gateway audits it).
    match read_msg(r) {
        Ok(Some(FileMsg::Done { .. })) => Ok(()),
        Ok(Some(FileMsg::Error { message })) => Err(format!("the receiver refused: {message}")),
        _ => Err(format!("{path}: the receiver did not confirm the copy")),
    }
}

fn list(path: &str, allowed: &[String], w: &mut impl Write) -> Result<(), String> {
    let (parent, name) = resolve(path, allowed)?;
    let top = match &name {
        Some(n) => open_dir(&parent, n, path)?,
        None => parent,
    };
    let st = nix::sys::stat::fstat(&top).map_err(|e| format!("{path}: {e}"))?;
    write_msg(w, &FileMsg::Entry(entry("", EntryKind::Dir, &st)))?;
    let mut count = 0usize;
    walk(&top, path, "", 0, &mut count, w)?;
    write_msg(w, &FileMsg::Done { bytes: 0 })
}

fn walk(
    dir: &OwnedFd,
    base: &str,
    rel: &str,
    depth: usize,
    count: &mut usize,
    w: &mut impl Write,
) -> Result<(), String> {
    let shown_dir = format!("{}/{rel}", base.trim_end_matches('/'));
    if depth >= MAX_DEPTH {
        return Err(format!(
            "{shown_dir}: nested deeper than {MAX_DEPTH} directories; copy a part of it"
        ));
    }
    let dup = dir
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("{shown_dir}: {e}"))?;
    let mut d = nix::dir::Dir::from_fd(dup).map_err(|e| format!("{shown_dir}: {}", e.desc()))?;
    let mut names = Vec::new();
    for ent in d.iter() {
        let ent = ent.map_err(|e| format!("{shown_dir}: {}", e.desc()))?;
        let Ok(n) = ent.file_name().to_str() else {
            return Err(format!(
                "{shown_dir}: holds a name that is not UTF-8; rename it first"
            ));
        };
        if n == "." || n == ".." {
            continue;
        }
        if files::has_control(n) {
            return Err(format!(
                "{shown_dir}: holds a name with a control character ({n:?}); rename it first"
            ));
        }
        names.push(n.to_string());
    }
    names.sort();
    for n in names {
        *count += 1;
        if *count > MAX_ENTRIES {
            return Err(format!(
                "{base}: holds more than {MAX_ENTRIES} entries; copy a part of it"
            ));
        }
        let rel_n = if rel.is_empty() {
            n.clone()
        } else {
            format!("{rel}/{n}")
        };
        let shown = format!("{}/{rel_n}", base.trim_end_matches('/'));
        let st = match stat_at(dir, &n) {
            Ok(st) => st,
            // Gone meanwhile.
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(format!("{shown}: {}", e.desc())),
        };
        let kind = kind_of(&st);
        let ek = match kind {
            Kind::Link => EntryKind::Symlink(link_target(dir, &n, &shown)?),
            k => k.entry(),
        };
        write_msg(w, &FileMsg::Entry(entry(&rel_n, ek, &st)))?;
        if kind == Kind::Dir {
            let sub = open_dir(dir, &n, &shown)?;
            walk(&sub, base, &rel_n, depth + 1, count, w)?;
        }
    }
    Ok(())
}

fn mkdir(
    path: &str,
    allowed: &[String],
    mode: Option<u32>,
    mtime: Option<i64>,
    w: &mut impl Write,
) -> Result<(), String> {
    let (parent, name) = resolve(path, allowed)?;
    let dir = match &name {
        Some(n) => {
            if !files::valid_name(n) {
                return Err(format!("{path}: not a name a copy may create"));
            }
            match nix::sys::stat::mkdirat(&parent, n.as_str(), Mode::from_bits_truncate(0o777)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(format!("{path}: cannot make the directory: {}", e.desc())),
            }
            open_dir(&parent, n, path)?
        }
        None => parent,
    };
    if let Some(m) = mode {
        nix::sys::stat::fchmod(&dir, Mode::from_bits_truncate(m & 0o7777))
            .map_err(|e| format!("{path}: cannot set its mode: {}", e.desc()))?;
    }
    if let Some(t) = mtime {
        File::from(dir)
            .set_modified(unix_time(t))
            .map_err(|e| format!("{path}: cannot set its time: {e}"))?;
    }
    write_msg(w, &FileMsg::Done { bytes: 0 })
}

fn symlink(path: &str, allowed: &[String], target: &str, w: &mut impl Write) -> Result<(), String> {
    let (parent, name) = resolve(path, allowed)?;
    let Some(name) = name else {
        return Err(format!(
            "{path} is an allowed root; it cannot become a link"
        ));
    };
    if !files::valid_name(&name) || target.is_empty() || files::has_control(target) {
        return Err(format!(
            "{path}: not a link a copy may create (empty target or a control character)"
        ));
    }
    match nix::unistd::symlinkat(target, &parent, name.as_str()) {
        Ok(()) => {}
        Err(Errno::EEXIST) => match link_target(&parent, &name, path) {
            Ok(t) if t == target => {}
            _ => {
                return Err(format!(
                    "{path} exists and is not the same link; it is not replaced"
                ));
            }
        },
        Err(e) => return Err(format!("{path}: cannot make the link: {}", e.desc())),
    }
    write_msg(w, &FileMsg::Done { bytes: 0 })
}

#[cfg(test)]
mod tests;
