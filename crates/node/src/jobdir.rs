//! Where jobs without a `--cwd` work: a private directory each, under a
//! root only the agent can write, made and entered through directory
//! descriptors so that no path can be swapped in between.
//!
//! The layout, for node `NAME` whose agent has pid `PID`:
//!
//! ```text
//! BASE/              work_dir in node.toml; by default /var/lib/openclaw
//!                    when the agent runs as root, else the node's home.
//!                    Owned by the agent's user and writable by nobody else;
//!                    every directory above it is owned by root or that user
//!                    and writable by others only when sticky (see below).
//!   jobs-NAME-PID/   the agent's root, 0711: made with mkdir (never taken
//!                    over from someone else) and held open while it runs.
//!     job-N/         one per job, 0700: made with mkdirat on the root's
//!                    descriptor, then given to the job's user with fchown.
//!     sim-bin/       only with simulated GPUs, 0755 and the agent's: the
//!                    fake `nvidia-smi` ([`crate::simsmi`]) and its device
//!                    list, first on every job's PATH. Jobs may run what is
//!                    in it and read it, never change it ([`WorkRoot::tools`]).
//! ```
//!
//! The exec shim enters `job-N` by descriptor ([`Entry::enter`]): it opens
//! the root with `O_NOFOLLOW`, checks that it is the very directory the
//! agent holds (device and inode) and still the agent's, opens `job-N`
//! relative to it with `O_NOFOLLOW`, checks its inode and owner, and
//! `fchdir`s into it. A symlink or another directory put in its place is
//! refused, never followed.
//!
//! A sticky directory above the base (`/tmp`) is accepted: there, nobody
//! but an entry's owner (or root) may rename or remove it, and every entry
//! on the way down must be owned by root or the agent's user, so nobody
//! else can re-point the path. A directory writable by others without the
//! sticky bit is refused: its writers could rename the base away.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;
use serde::{Deserialize, Serialize};

/// The base under which an agent running as root makes its root, when
/// node.toml sets no `work_dir` (the node's home is 0700: job users could
/// not reach their directory by path from there).
pub const SYSTEM_BASE: &str = "/var/lib/openclaw";
/// The agent's root: job users may pass through, not list.
const ROOT_MODE: u32 = 0o711;
/// A job's directory: its user's alone.
const JOB_MODE: u32 = 0o700;
/// The directory of programs the agent offers every job (see [`WorkRoot::tools`]).
pub const TOOLS_DIR: &str = "sim-bin";
/// Programs and files in it: every job may run and read them.
const TOOLS_MODE: u32 = 0o755;
const TOOL_FILE_MODE: u32 = 0o644;
/// Most rounds [`empty`] takes: one per level of the deepest tree (a
/// process still adding files could otherwise keep it busy for ever).
const MAX_ROUNDS: u32 = 100_000;

/// A directory's identity. While the agent holds the directory open its
/// inode cannot be reused, so an equal id means the same directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    // dev_t and ino_t are u64 here but not on every target.
    #[allow(clippy::useless_conversion)]
    fn of(st: &FileStat) -> FileId {
        FileId {
            dev: u64::from(st.st_dev),
            ino: u64::from(st.st_ino),
        }
    }
}

/// What a directory on the way to a job is to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Above the base.
    Ancestor,
    /// The base (`work_dir`, or its default).
    Base,
    /// The agent's root, `jobs-NAME-PID`.
    Root,
    /// A job's directory, owned by the job's user.
    Job {
        /// The job's uid.
        owner: u32,
    },
}

/// What one `stat` says, as far as [`judge`] cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// A directory (not a symlink, file, ...).
    dir: bool,
    /// Owner uid.
    uid: u32,
    /// Permission bits, with set-id and sticky bits.
    mode: u32,
}

impl Seen {
    fn of(st: &FileStat) -> Seen {
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        Seen {
            dir: kind == SFlag::S_IFDIR,
            uid: st.st_uid,
            mode: st.st_mode & 0o7777,
        }
    }
}

/// Whether `seen` may serve as `place` for an agent running as `euid`;
/// the error names the directory, the problem and the fix. Pure.
fn judge(path: &Path, place: Place, seen: Seen, euid: u32) -> Result<(), String> {
    let p = path.display();
    let writable_by_others = seen.mode & 0o022 != 0;
    if !seen.dir {
        return Err(format!(
            "{p} is not a directory; set work_dir in node.toml to a directory"
        ));
    }
    match place {
        Place::Ancestor => {
            if seen.uid != 0 && seen.uid != euid {
                return Err(format!(
                    "{p} is owned by uid {}, neither root nor the agent's user (uid {euid}): its owner could \
                     swap the job directories beneath it; set work_dir in node.toml to a directory below \
                     directories only root or the agent's user own",
                    seen.uid
                ));
            }
            if writable_by_others && seen.mode & 0o1000 == 0 {
                return Err(format!(
                    "{p} is writable by group or others (mode {:o}) and not sticky: they could rename the \
                     job directories beneath it; set work_dir in node.toml elsewhere (e.g. {SYSTEM_BASE}/jobs)",
                    seen.mode
                ));
            }
        }
        Place::Base | Place::Root => {
            if seen.uid != euid {
                return Err(format!(
                    "{p} is owned by uid {}, not by the agent's user (uid {euid}): someone else made it \
                     first and could plant or swap job directories in it; the agent refuses to use it. \
                     Remove it (or 'chown {euid} {p}' if it is yours) and start the agent again, or set \
                     work_dir in node.toml to another directory",
                    seen.uid
                ));
            }
            if writable_by_others {
                return Err(format!(
                    "{p} is writable by group or others (mode {:o}): they could plant or swap job \
                     directories in it; fix with 'chmod go-w {p}', or set work_dir in node.toml elsewhere",
                    seen.mode
                ));
            }
        }
        Place::Job { owner } => {
            if seen.uid != owner || seen.mode & 0o077 != 0 {
                return Err(format!(
                    "{p} is owned by uid {} with mode {:o}, not by the job's user (uid {owner}) with mode 700: \
                     it is not the directory the agent made; not entering it",
                    seen.uid, seen.mode
                ));
            }
        }
    }
    Ok(())
}

fn no_follow_dir() -> OFlag {
    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Opens `name` in `dir` as a directory without following a symlink,
/// read-only (`O_PATH` when `path_only`); errors name `path`.
fn open_at(dir: impl AsFd, name: &OsStr, path: &Path, path_only: bool) -> Result<OwnedFd, String> {
    let access = if path_only {
        OFlag::O_PATH
    } else {
        OFlag::O_RDONLY
    };
    nix::fcntl::openat(&dir, name, access | no_follow_dir(), Mode::empty()).map_err(|e| {
        let p = path.display();
        // With O_DIRECTORY, Linux reports a symlink as ENOTDIR.
        let link = matches!(e, Errno::ELOOP | Errno::ENOTDIR)
            && nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits());
        match e {
            _ if link => format!(
                "{p} is a symbolic link: the agent does not follow links to job directories, which \
                 anyone who can re-point them would control; set work_dir in node.toml to the real directory"
            ),
            Errno::ENOTDIR => {
                format!("{p} is not a directory; set work_dir in node.toml to a directory")
            }
            Errno::ENOENT => format!("{p} does not exist; create it, or set work_dir in node.toml"),
            e => format!("cannot open {p}: {e}"),
        }
    })
}

fn stat(fd: impl AsFd, path: &Path) -> Result<FileStat, String> {
    nix::sys::stat::fstat(fd).map_err(|e| format!("cannot stat {}: {e}", path.display()))
}

/// Opens the absolute, symlink-free directory `path` one component at a
/// time with `O_NOFOLLOW`, judging each as an ancestor of the base.
fn walk(path: &Path, euid: u32) -> Result<OwnedFd, String> {
    let root = Path::new("/");
    let mut fd = nix::fcntl::open(root, OFlag::O_PATH | no_follow_dir(), Mode::empty())
        .map_err(|e| format!("cannot open /: {e}"))?;
    judge(root, Place::Ancestor, Seen::of(&stat(&fd, root)?), euid)?;
    let mut here = root.to_path_buf();
    for c in path.components() {
        let name = match c {
            Component::RootDir => continue,
            Component::Normal(n) => n,
            _ => {
                return Err(format!(
                    "{} is not a plain absolute path; set work_dir in node.toml to one",
                    path.display()
                ));
            }
        };
        here.push(name);
        fd = open_at(&fd, name, &here, true)?;
        judge(&here, Place::Ancestor, Seen::of(&stat(&fd, &here)?), euid)?;
    }
    Ok(fd)
}

/// The agent's root for job directories, held open while the agent runs.
#[derive(Debug)]
pub struct WorkRoot {
    /// Its path (canonical): `BASE/jobs-NAME-PID`.
    path: PathBuf,
    /// The base, to remove the root from at the end.
    base: OwnedFd,
    /// `jobs-NAME-PID`.
    name: OsString,
    /// The root itself.
    fd: OwnedFd,
    /// The root's identity, for the shim to check.
    id: FileId,
}

/// The base for `work_dir` from node.toml, or its default: `/var/lib/openclaw`
/// for an agent running as root, else the node's home. The second value
/// says whether the base may be created (not the home: it exists).
pub fn base_dir(work_dir: Option<&str>, home: &Path, euid: u32) -> (PathBuf, bool) {
    match work_dir {
        Some(d) => (PathBuf::from(d), true),
        None if euid == 0 => (PathBuf::from(SYSTEM_BASE), true),
        // `--home` may be relative; the base is resolved from here.
        None => (
            std::path::absolute(home).unwrap_or_else(|_| home.to_path_buf()),
            false,
        ),
    }
}

impl WorkRoot {
    /// Checks the base (creating it, last component only, when `create`),
    /// removes the roots of dead agents of `node` from it, and makes this
    /// agent's own root with mkdir. Refuses, with the reason and the fix,
    /// a base or ancestor that someone else owns, a symlink, or one that
    /// others may write.
    pub fn prepare(base: &Path, create: bool, node: &str) -> Result<WorkRoot, String> {
        let euid = nix::unistd::geteuid().as_raw();
        if node.is_empty() || node.contains('/') || node.starts_with('.') {
            return Err(format!("node name {node:?} cannot name a directory"));
        }
        let (Some(parent), Some(leaf)) = (base.parent(), base.file_name()) else {
            return Err(format!(
                "work_dir = {:?} must be an absolute path below /, e.g. {SYSTEM_BASE}/jobs",
                base.display()
            ));
        };
        if !base.is_absolute() {
            return Err(format!(
                "work_dir = {:?} must be an absolute path, e.g. {SYSTEM_BASE}/jobs",
                base.display()
            ));
        }
        let parent = std::fs::canonicalize(parent).map_err(|e| {
            format!(
                "cannot resolve {}, where the job directories would go: {e}; create it first, or set work_dir in node.toml",
                parent.display()
            )
        })?;
        let parent_fd = walk(&parent, euid)?;
        let base = parent.join(leaf);
        let created = create
            && match nix::sys::stat::mkdirat(&parent_fd, leaf, Mode::from_bits_truncate(ROOT_MODE))
            {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
            };
        let base_fd = open_at(&parent_fd, leaf, &base, false)?;
        judge(&base, Place::Base, Seen::of(&stat(&base_fd, &base)?), euid)?;
        if created {
            // mkdir honoured the umask; the job users must pass through.
            fchmod(&base_fd, ROOT_MODE, &base)?;
        }
        remove_dead_roots(&base_fd, &base, node);
        let name = OsString::from(format!("jobs-{node}-{}", std::process::id()));
        let path = base.join(&name);
        // One of that name is an earlier agent's with this pid (a reboot):
        // only the agent's user can write the base, so it was ours.
        let fd = fresh_dir(&base_fd, &name, &path, ROOT_MODE, "an earlier agent", "")?;
        let st = stat(&fd, &path)?;
        judge(&path, Place::Root, Seen::of(&st), euid)?;
        fchmod(&fd, ROOT_MODE, &path)?;
        Ok(WorkRoot {
            path,
            base: base_fd,
            name,
            fd,
            id: FileId::of(&st),
        })
    }

    /// The root's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path job `job`'s directory has (for `HOME` and logs; the shim
    /// enters it by descriptor).
    pub fn job_path(&self, job: u64) -> PathBuf {
        self.path.join(job_name(job))
    }

    /// Makes job `job`'s directory, 0700, owned by `uid`:`gid`, relative
    /// to the root's descriptor. A leftover of that name (a resent job) is
    /// removed first without following links.
    pub fn make(self: &Arc<Self>, job: u64, uid: u32, gid: u32) -> Result<JobDir, String> {
        let name = job_name(job);
        let path = self.job_path(job);
        let euid = nix::unistd::geteuid().as_raw();
        let fd = fresh_dir(
            &self.fd,
            OsStr::new(&name),
            &path,
            JOB_MODE,
            "an earlier job",
            "the job's directory ",
        )?;
        // From here on, a failure removes the directory again (drop).
        let made = Made {
            root: self.clone(),
            fd,
            name,
        };
        judge(&path, Place::Root, Seen::of(&stat(&made.fd, &path)?), euid)?;
        fchmod(&made.fd, JOB_MODE, &path)?;
        if uid != euid {
            nix::unistd::fchown(
                &made.fd,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| format!("cannot give {} to uid {uid}: {e}", path.display()))?;
        }
        let st = stat(&made.fd, &path)?;
        judge(&path, Place::Job { owner: uid }, Seen::of(&st), euid)?;
        Ok(JobDir {
            entry: Entry {
                root: self.path.clone(),
                root_id: self.id,
                name: made.name.clone(),
                id: FileId::of(&st),
                owner: uid,
            },
            _made: made,
        })
    }
}

impl WorkRoot {
    /// Makes `ROOT/sim-bin/` (0755, the agent's) holding `programs` (each a
    /// name and the binary it is: hard-linked, or copied where a link is
    /// refused) and `files` (a name and its bytes, 0644); returns its path,
    /// for jobs' PATH. Everything is made relative to the root's
    /// descriptor, with `O_EXCL` and `O_NOFOLLOW`, in a directory only the
    /// agent can write: a job can run and read these, never change them
    /// (unless jobs run as the agent's own user, which can change anything
    /// of the agent's).
    pub fn tools(
        &self,
        programs: &[(&str, &Path)],
        files: &[(&str, &[u8])],
    ) -> Result<PathBuf, String> {
        let path = self.path.join(TOOLS_DIR);
        let p = path.display();
        let euid = nix::unistd::geteuid().as_raw();
        let dir = fresh_dir(
            &self.fd,
            OsStr::new(TOOLS_DIR),
            &path,
            TOOLS_MODE,
            "before",
            "",
        )?;
        fchmod(&dir, TOOLS_MODE, &path)?;
        judge(&path, Place::Root, Seen::of(&stat(&dir, &path)?), euid)?;
        let create = |name: &str, mode: u32| {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(format!("{name:?} cannot name a file in {p}"));
            }
            let fd = nix::fcntl::openat(
                &dir,
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(mode),
            )
            .map_err(|e| format!("cannot create {p}/{name}: {e}"))?;
            // The umask may have taken bits away.
            fchmod(&fd, mode, &path.join(name))?;
            Ok(std::fs::File::from(fd))
        };
        for (name, source) in programs {
            // A link shares the binary's mode: only one every job may run.
            let runnable = std::fs::metadata(source).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt as _;
                m.is_file() && m.permissions().mode() & 0o005 == 0o005
            });
            if runnable
                && nix::unistd::linkat(
                    nix::fcntl::AT_FDCWD,
                    *source,
                    &dir,
                    *name,
                    nix::fcntl::AtFlags::empty(),
                )
                .is_ok()
            {
                continue;
            }
            // Another filesystem, a binary the agent does not own
            // (protected_hardlinks) or one jobs may not run: a copy of its
            // own, 0755.
            let mut from = std::fs::File::open(source)
                .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
            let mut to = create(name, TOOLS_MODE)?;
            std::io::copy(&mut from, &mut to)
                .map_err(|e| format!("cannot copy {} to {p}/{name}: {e}", source.display()))?;
        }
        for (name, bytes) in files {
            use std::io::Write as _;
            create(name, TOOL_FILE_MODE)?
                .write_all(bytes)
                .map_err(|e| format!("cannot write {p}/{name}: {e}"))?;
        }
        Ok(path)
    }
}

impl Drop for WorkRoot {
    fn drop(&mut self) {
        let _ = remove_entry(&self.fd, OsStr::new(TOOLS_DIR));
        // Only when empty: a job directory that could not be removed stays.
        let _ = nix::unistd::unlinkat(&self.base, self.name.as_os_str(), UnlinkatFlags::RemoveDir);
    }
}

fn job_name(job: u64) -> String {
    format!("job-{job}")
}

fn fchmod(fd: impl AsFd, mode: u32, path: &Path) -> Result<(), String> {
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode))
        .map_err(|e| format!("cannot chmod {:o} {}: {e}", mode, path.display()))
}

/// Removes `jobs-NODE-PID` roots whose agent is gone (their jobs were
/// killed when the agent started, see [`crate::tree::detect`]).
fn remove_dead_roots(base: &OwnedFd, path: &Path, node: &str) {
    let prefix = format!("jobs-{node}-");
    for name in names_in(base).unwrap_or_default() {
        if !crate::tree::agent_gone(&name, &prefix) {
            continue;
        }
        if let Err(e) = remove_entry(base, &name) {
            tracing::warn!(
                dir = %path.join(&name).display(),
                "cannot remove the job directories of an agent that is gone: {e}"
            );
        }
    }
}

/// One job's private directory; removed, with all in it, on drop.
#[derive(Debug)]
pub struct JobDir {
    entry: Entry,
    _made: Made,
}

impl JobDir {
    /// What the exec shim needs to enter it.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// Removes the directory at once if the job left it empty (one
    /// `rmdir`, cheap enough for an async thread); false if anything is
    /// left in it, which the drop then removes (off the async threads: a
    /// job may leave a large tree).
    pub fn remove_if_empty(&self) -> bool {
        matches!(
            nix::unistd::unlinkat(
                &self._made.root.fd,
                OsStr::new(&self._made.name),
                UnlinkatFlags::RemoveDir
            ),
            Ok(()) | Err(Errno::ENOENT)
        )
    }
}

/// A directory made in the root, removed with all in it on drop.
#[derive(Debug)]
struct Made {
    root: Arc<WorkRoot>,
    name: String,
    /// Held open so that its inode (in [`Entry`]) stays its own.
    fd: OwnedFd,
}

impl Drop for Made {
    fn drop(&mut self) {
        if let Err(e) = remove_entry(&self.root.fd, OsStr::new(&self.name)) {
            tracing::warn!(
                dir = %self.root.path.join(&self.name).display(),
                "cannot remove a job's directory: {e}"
            );
        }
    }
}

/// How the exec shim finds a job's directory: a path to open without
/// following links, and the identities it must find there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The agent's root.
    pub root: PathBuf,
    /// The root's identity.
    pub root_id: FileId,
    /// `job-N`.
    pub name: String,
    /// The job directory's identity.
    pub id: FileId,
    /// Its owner: the job's uid.
    pub owner: u32,
}

impl Entry {
    /// Makes the job's directory this process's working directory, by
    /// descriptor: the root and `job-N` are opened with `O_NOFOLLOW` and
    /// must be the very directories the agent made, owned as it left them.
    /// Runs in the shim as the agent's user, before privileges are dropped.
    pub fn enter(&self) -> Result<(), String> {
        let dir = self.open()?;
        nix::unistd::fchdir(&dir)
            .map_err(|e| format!("cannot enter {}: {e}", self.root.join(&self.name).display()))
    }

    /// Opens the job's directory with every check of [`Entry::enter`]
    /// (the spawn helper enters it by this descriptor, [`crate::spawn`]).
    pub fn open(&self) -> Result<OwnedFd, String> {
        let euid = nix::unistd::geteuid().as_raw();
        if self.name.contains('/') || self.name.starts_with('.') {
            return Err(format!("{:?} is not a job directory name", self.name));
        }
        let root = nix::fcntl::open(
            self.root.as_path(),
            OFlag::O_RDONLY | no_follow_dir(),
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open the job root {}: {e}", self.root.display()))?;
        let st = stat(&root, &self.root)?;
        judge(&self.root, Place::Root, Seen::of(&st), euid)?;
        if FileId::of(&st) != self.root_id {
            return Err(format!(
                "{} is not the directory the agent made (it was replaced); not entering it",
                self.root.display()
            ));
        }
        let path = self.root.join(&self.name);
        let dir = open_at(&root, OsStr::new(&self.name), &path, false)?;
        let st = stat(&dir, &path)?;
        judge(&path, Place::Job { owner: self.owner }, Seen::of(&st), euid)?;
        if FileId::of(&st) != self.id {
            return Err(format!(
                "{} is not the directory the agent made (it was replaced); not entering it",
                path.display()
            ));
        }
        Ok(dir)
    }
}

/// The names in a directory, `.` and `..` left out.
fn names_in(dir: &OwnedFd) -> nix::Result<Vec<OsString>> {
    let mut d = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in d.iter() {
        let bytes = e?.file_name().to_bytes().to_vec();
        if bytes != b"." && bytes != b".." {
            names.push(OsStr::from_bytes(&bytes).to_owned());
        }
    }
    Ok(names)
}

/// Makes directory `name` (at `path`) under `parent` afresh with `mode`,
/// a leftover of that name removed first without following links, and
/// opens it. Errors name `what` and `path`, and whose leftover it was.
fn fresh_dir(
    parent: &OwnedFd,
    name: &OsStr,
    path: &Path,
    mode: u32,
    leftover_of: &str,
    what: &str,
) -> Result<OwnedFd, String> {
    let p = path.display();
    remove_entry(parent, name)
        .map_err(|e| format!("{p} is left from {leftover_of} and cannot be removed: {e}"))?;
    nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(mode))
        .map_err(|e| format!("cannot create {what}{p}: {e}"))?;
    open_at(parent, name, path, false)
}

/// Removes the entry `name` of `dir`, and everything in it if it is a
/// directory, following no symlink.
fn remove_entry(dir: &OwnedFd, name: &OsStr) -> nix::Result<()> {
    match nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR | Errno::EPERM) => {}
        Err(e) => return Err(e),
    }
    let sub = nix::fcntl::openat(dir, name, OFlag::O_RDONLY | no_follow_dir(), Mode::empty())?;
    empty(&sub)?;
    match nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Empties the directory open as `top`, following no symlink, with at most
/// three descriptors open however deep the tree: each subdirectory is
/// emptied of files, and its own subdirectories are moved up into `top`,
/// to be emptied in a later round.
fn empty(top: &OwnedFd) -> nix::Result<()> {
    let mut hoisted = 0u64;
    for _ in 0..MAX_ROUNDS {
        let names = names_in(top)?;
        if names.is_empty() {
            return Ok(());
        }
        let mut progress = false;
        for name in names {
            match nix::unistd::unlinkat(top, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) => {
                    progress = true;
                    continue;
                }
                Err(Errno::ENOENT) => continue,
                Err(Errno::EISDIR | Errno::EPERM) => {}
                Err(e) => return Err(e),
            }
            let sub = match nix::fcntl::openat(
                top,
                name.as_os_str(),
                OFlag::O_RDONLY | no_follow_dir(),
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // It changed since it was listed: next round.
                Err(Errno::ELOOP | Errno::ENOTDIR | Errno::ENOENT) => continue,
                Err(e) => return Err(e),
            };
            for inner in names_in(&sub)? {
                match nix::unistd::unlinkat(&sub, inner.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(Errno::EISDIR | Errno::EPERM) => hoist(&sub, &inner, top, &mut hoisted)?,
                    Err(e) => return Err(e),
                }
                progress = true;
            }
            match nix::unistd::unlinkat(top, name.as_os_str(), UnlinkatFlags::RemoveDir) {
                Ok(()) => progress = true,
                Err(Errno::ENOTEMPTY | Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        if !progress {
            return Err(Errno::EBUSY);
        }
    }
    Err(Errno::EBUSY)
}

/// Moves directory `name` of `from` into `top` under a fresh name.
fn hoist(from: &OwnedFd, name: &OsStr, top: &OwnedFd, n: &mut u64) -> nix::Result<()> {
    loop {
        *n += 1;
        let to = format!(".openclaw-rm-{n}");
        // A name taken by a file or a full directory fails; an empty
        // directory of that name is replaced, and it was to go anyway.
        match nix::fcntl::renameat(from, name, top, to.as_str()) {
            Err(Errno::EEXIST | Errno::ENOTEMPTY | Errno::ENOTDIR | Errno::EISDIR) => {}
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn seen(dir: bool, uid: u32, mode: u32) -> Seen {
        Seen { dir, uid, mode }
    }

    #[test]
    fn who_may_own_and_write_each_directory() {
        let p = Path::new("/x");
        let me = 1000;
        // (place, seen, allowed)
        let table = [
            (Place::Ancestor, seen(true, 0, 0o755), true),
            (Place::Ancestor, seen(true, me, 0o700), true),
            (Place::Ancestor, seen(true, 0, 0o1777), true),
            (Place::Ancestor, seen(true, 0, 0o777), false),
            (Place::Ancestor, seen(true, 0, 0o775), false),
            (Place::Ancestor, seen(true, 4242, 0o755), false),
            (Place::Ancestor, seen(true, 4242, 0o1777), false),
            (Place::Ancestor, seen(false, 0, 0o755), false),
            (Place::Base, seen(true, me, 0o711), true),
            (Place::Base, seen(true, me, 0o700), true),
            (Place::Base, seen(true, 0, 0o711), false),
            (Place::Base, seen(true, 4242, 0o711), false),
            (Place::Base, seen(true, me, 0o1777), false),
            (Place::Base, seen(true, me, 0o731), false),
            (Place::Root, seen(true, me, 0o711), true),
            (Place::Root, seen(true, 4242, 0o777), false),
            (Place::Job { owner: 61000 }, seen(true, 61000, 0o700), true),
            (Place::Job { owner: 61000 }, seen(true, 61001, 0o700), false),
            (Place::Job { owner: 61000 }, seen(true, 61000, 0o755), false),
            (
                Place::Job { owner: 61000 },
                seen(false, 61000, 0o700),
                false,
            ),
        ];
        for (place, s, ok) in table {
            let got = judge(p, place, s, me);
            assert_eq!(got.is_ok(), ok, "{place:?} {s:?}: {got:?}");
            if let Err(e) = got {
                assert!(e.contains("/x"), "names the directory: {e}");
            }
        }
    }

    #[test]
    fn removal_follows_no_symlink_and_handles_deep_trees() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let top = t.path().join("top");
        let mut deep = top.join("job-1");
        for i in 0..300 {
            deep.push(format!("d{i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, top.join("job-1/link")).unwrap();
        std::os::unix::fs::symlink(&outside, deep.join("link")).unwrap();
        // A hoisted directory's fresh name is already taken.
        std::fs::write(top.join("job-1/.openclaw-rm-1"), b"x").unwrap();
        let fd = nix::fcntl::open(&top, OFlag::O_RDONLY | no_follow_dir(), Mode::empty()).unwrap();
        remove_entry(&fd, OsStr::new("job-1")).unwrap();
        assert!(!top.join("job-1").exists());
        assert!(
            outside.join("keep").exists(),
            "nothing behind a link was touched"
        );
        // A symlink of that name is removed as a link.
        std::os::unix::fs::symlink(&outside, top.join("job-2")).unwrap();
        remove_entry(&fd, OsStr::new("job-2")).unwrap();
        assert!(outside.join("keep").exists());
        assert!(std::fs::symlink_metadata(top.join("job-2")).is_err());
        remove_entry(&fd, OsStr::new("job-3")).unwrap();
    }

    #[test]
    fn tools_are_the_agents_readable_by_jobs_and_go_with_the_root() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("work");
        let root = WorkRoot::prepare(&base, true, "n1").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let me = nix::unistd::geteuid().as_raw();
        let program = t.path().join("prog");
        std::fs::write(&program, b"#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Something planted under the name first is removed, not followed.
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.path().join(TOOLS_DIR)).unwrap();
        let dir = root
            .tools(&[("nvidia-smi", &program)], &[("list.json", b"[]")])
            .unwrap();
        assert_eq!(dir, root.path().join(TOOLS_DIR));
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing went through the link"
        );
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir() && meta.uid() == me && mode(&dir) == 0o755);
        assert_eq!(
            std::fs::read(dir.join("nvidia-smi")).unwrap(),
            std::fs::read(&program).unwrap()
        );
        assert!(
            mode(&dir.join("nvidia-smi")) & 0o111 == 0o111,
            "every job may run it"
        );
        assert_eq!(mode(&dir.join("list.json")), 0o644);
        assert_eq!(std::fs::read(dir.join("list.json")).unwrap(), b"[]");
        // A program jobs may not run is copied, not linked, and made runnable.
        let private = t.path().join("private");
        std::fs::write(&private, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let dir = root.tools(&[("p", &private)], &[]).unwrap();
        assert_eq!(mode(&dir.join("p")), 0o755);
        assert_ne!(
            std::fs::metadata(dir.join("p")).unwrap().ino(),
            std::fs::metadata(&private).unwrap().ino()
        );
        // A name that is not a plain file name is refused.
        let e = root.tools(&[], &[("../x", b"")]).unwrap_err();
        assert!(e.contains("cannot name a file"), "{e}");
        // Made again from scratch, and gone with the root.
        let dir = root.tools(&[], &[("list.json", b"[1]")]).unwrap();
        assert!(!dir.join("nvidia-smi").exists());
        let path = root.path().to_path_buf();
        drop(root);
        assert!(!path.exists(), "the root and its tools are removed");
    }

    #[test]
    fn a_root_is_made_entered_by_descriptor_and_refuses_a_swap() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("work");
        let root = Arc::new(WorkRoot::prepare(&base, true, "n1").unwrap());
        assert_eq!(
            root.path(),
            std::fs::canonicalize(&base)
                .unwrap()
                .join(format!("jobs-n1-{}", std::process::id()))
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(root.path()), 0o711);
        assert_eq!(mode(&base), 0o711);
        let me = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let dir = root.make(7, me, gid).unwrap();
        assert_eq!(mode(&root.job_path(7)), 0o700);
        let entry = dir.entry().clone();
        // The shim's checks pass for the real directory (what it would
        // fchdir to; the test process keeps its own working directory)...
        let fd = entry.open().unwrap();
        let real = std::fs::metadata(root.job_path(7)).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        let st = nix::sys::stat::fstat(&fd).unwrap();
        assert_eq!((st.st_dev, st.st_ino), (real.dev(), real.ino()));
        // ...and refuse a symlink or another directory in its place.
        let decoy = t.path().join("decoy");
        std::fs::create_dir(&decoy).unwrap();
        std::fs::set_permissions(&decoy, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::rename(root.job_path(7), t.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&decoy, root.job_path(7)).unwrap();
        let e = entry.open().unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::remove_file(root.job_path(7)).unwrap();
        std::fs::create_dir(root.job_path(7)).unwrap();
        std::fs::set_permissions(root.job_path(7), std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = entry.open().unwrap_err();
        assert!(e.contains("not the directory the agent made"), "{e}");
        // Dropping the job directory removes whatever has its name.
        drop(dir);
        assert!(std::fs::symlink_metadata(root.job_path(7)).is_err());
        // A leftover job-N (a resent job) is replaced by a fresh directory.
        std::fs::create_dir(root.job_path(8)).unwrap();
        std::fs::write(root.job_path(8).join("old"), b"x").unwrap();
        let d8 = root.make(8, me, gid).unwrap();
        assert!(!root.job_path(8).join("old").exists());
        drop(d8);
        let path = root.path().to_path_buf();
        drop(root);
        assert!(!path.exists(), "an empty root is removed at the end");
    }

    #[test]
    fn a_base_that_is_a_link_or_open_to_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = WorkRoot::prepare(&link, true, "n1").unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = WorkRoot::prepare(&real, true, "n1").unwrap_err();
        assert!(e.contains("writable by group or others"), "{e}");
        // Below a directory others may write (not sticky).
        let e = WorkRoot::prepare(&real.join("w"), true, "n1").unwrap_err();
        assert!(e.contains("not sticky"), "{e}");
        assert!(!real.join("w").exists(), "nothing was made there");
        let e = WorkRoot::prepare(Path::new("relative/dir"), true, "n1").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        // The home is not created when missing.
        let e = WorkRoot::prepare(&t.path().join("no-home"), false, "n1").unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        assert!(WorkRoot::prepare(&t.path().join("x"), true, "../n").is_err());
    }

    #[test]
    fn the_base_is_work_dir_or_a_default_by_user() {
        let home = Path::new("/h/node");
        assert_eq!(
            base_dir(Some("/srv/jobs"), home, 0),
            (PathBuf::from("/srv/jobs"), true)
        );
        assert_eq!(base_dir(None, home, 0), (PathBuf::from(SYSTEM_BASE), true));
        assert_eq!(base_dir(None, home, 1000), (home.to_path_buf(), false));
        let (rel, create) = base_dir(None, Path::new("h"), 1000);
        assert!(
            rel.is_absolute() && rel.ends_with("h") && !create,
            "{rel:?}"
        );
    }

    #[test]
    fn the_roots_of_dead_agents_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("work");
        std::fs::create_dir(&base).unwrap();
        // pid_max is at most 2^22: this pid is never alive.
        let dead = base.join("jobs-n1-4999999");
        std::fs::create_dir_all(dead.join("job-3/sub")).unwrap();
        let other = base.join("jobs-n2-4999999");
        std::fs::create_dir(&other).unwrap();
        let live = base.join("jobs-n1-1");
        std::fs::create_dir(&live).unwrap();
        let _root = WorkRoot::prepare(&base, true, "n1").unwrap();
        assert!(!dead.exists());
        assert!(other.exists(), "another node's root is left alone");
        assert!(live.exists(), "a live agent's root is left alone");
    }
}
