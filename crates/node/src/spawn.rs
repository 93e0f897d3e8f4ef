//! The spawn helper: a job's command started with one fork and one exec.
//!
//! The exec shim ([`crate::jail`]) costs a second exec per job: the agent
//! starts the shim, the shim joins the cgroup, drops privileges and execs
//! the command. Here the agent forks and, in the child, between fork and
//! exec, does the shim's steps in the shim's order:
//!
//! 0. for a terminal's job, `setsid` and `TIOCSCTTY` on stdin;
//! 1. writes its pid to the job cgroup's `cgroup.procs`, through a
//!    descriptor opened before the fork;
//! 2. for a job that drops privileges, a mount and IPC namespace of its own
//!    with fresh temporary directories ([`crate::private_tmp::plan`],
//!    worked out before the fork);
//! 3. enters the job's private directory by descriptor (`fchdir`; reopened
//!    and checked by identity after step 2, as the shim does);
//! 4. closes the inherited session key ring, `setgroups`, `setgid`,
//!    `setuid`, checks that `setuid(0)` now fails, and empties the key
//!    rings of a uid of `job_uids`;
//! 5. `PR_SET_NO_NEW_PRIVS`;
//! 6. enters a `--cwd` by path, as the job's user;
//!
//! then `std` sets the clean environment and `execvp`s the command.
//!
//! **Architecture invariant:** this is the only module of the workspace
//! that may use `unsafe` (the tidy test checks it), and every block says
//! why it is sound. Between fork and exec only async-signal-safe calls
//! run: raw system calls through `rustix` (and `keyctl` through
//! `libc::syscall`), on data prepared before the fork ([`prepare`]): no
//! allocation, no lock, no formatting.
//!
//! Errors: a failed step writes its number, an index and the errno to a
//! close-on-exec pipe and stops; the agent turns that into the job's
//! failure with the step's words ([`Spawned`]). The last step before
//! exec writes [`EXEC_MARK`], so a failed `execvp` (not found: 127, not
//! executable: 126, like a shell) is told apart from a failed fork.
//!
//! Why a fork of the agent and not a separate helper process: `std`
//! forks with the calling thread only and execs at once; the agent's
//! address space is copied on write, and measured in docs/PERFORMANCE.md
//! ("spawn" section) against the shim.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use rustix::fs::{Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use crate::jail::{Cwd, ShimSpec};

/// Written by the child just before `execvp`: every step succeeded.
pub const EXEC_MARK: u8 = 0xff;
/// Bytes of one error record: step, index (u16), errno (i32).
const RECORD: usize = 7;

/// The steps in the child, numbered as they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    Setsid = 1,
    Ctty = 2,
    Cgroup = 3,
    Unshare = 4,
    PrivateMounts = 5,
    OpenKeep = 6,
    Tmpfs = 7,
    MakeParent = 8,
    MakeBind = 9,
    Bind = 10,
    Mqueue = 11,
    OpenDir = 12,
    EnterDir = 13,
    Keyring = 14,
    Groups = 15,
    Gid = 16,
    Uid = 17,
    NoWayBack = 18,
    EmptyKeys = 19,
    NoNewPrivs = 20,
    Cwd = 21,
}

impl Step {
    const ALL: [Step; 21] = [
        Step::Setsid,
        Step::Ctty,
        Step::Cgroup,
        Step::Unshare,
        Step::PrivateMounts,
        Step::OpenKeep,
        Step::Tmpfs,
        Step::MakeParent,
        Step::MakeBind,
        Step::Bind,
        Step::Mqueue,
        Step::OpenDir,
        Step::EnterDir,
        Step::Keyring,
        Step::Groups,
        Step::Gid,
        Step::Uid,
        Step::NoWayBack,
        Step::EmptyKeys,
        Step::NoNewPrivs,
        Step::Cwd,
    ];

    fn from_byte(b: u8) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u8 == b)
    }
}

/// The private temporary directories, as C strings.
struct Tmp {
    temp: Vec<CString>,
    options: CString,
    parents: Vec<(CString, u32, u32, u32)>,
    binds: Vec<CString>,
    mqueue: bool,
}

/// How the child enters the job's private directory.
enum Dir {
    /// By this descriptor, opened and checked by the agent.
    Fd(OwnedFd),
    /// Reopened in the job's mount namespace by path, `O_NOFOLLOW` at
    /// each of the two levels, and accepted only with this identity.
    Reopen {
        root: CString,
        name: CString,
        dev: u64,
        ino: u64,
    },
}

/// Everything the child does, prepared before the fork.
struct Steps {
    tty: bool,
    procs: Option<OwnedFd>,
    tmp: Option<Tmp>,
    dir: Option<Dir>,
    user: Option<(Uid, Gid, Vec<Gid>, bool)>,
    cwd: Option<CString>,
    errors: OwnedFd,
}

/// What a failed step names, for the agent's message.
struct Names {
    procs: String,
    tmp: Option<crate::private_tmp::Plan>,
    dir: String,
    user: String,
    cwd: String,
}

/// What the agent keeps of a prepared spawn ([`prepare`]) to judge how
/// it went ([`Pending::outcome`]).
pub struct Pending {
    errors: OwnedFd,
    names: Names,
    program: String,
    path: String,
}

/// How a spawn of a [`prepare`]d command went.
pub enum Spawned {
    /// The command runs.
    Running(tokio::process::Child),
    /// Every step passed but `execvp` failed: the exit code and line a
    /// shell gives ([`crate::jail::exec_failure`]).
    ExecFailed(i32, String),
    /// A step before exec, or the fork, failed: why, for the job's error.
    Failed(String),
}

fn cstring(what: &str, bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("{what} holds a NUL byte"))
}

fn cpath(p: &Path) -> Result<CString, String> {
    cstring(&p.display().to_string(), p.as_os_str().as_bytes())
}

/// Prepares `spec` for one fork and one exec: opens the cgroup's
/// `cgroup.procs` and the job's directory, looks up the user's groups,
/// works out the private temporary directories, builds every C string.
/// The command has its `pre_exec` hook: give it stdio, spawn it, drop it,
/// then ask the [`Pending`] what the spawn means.
pub fn prepare(spec: &ShimSpec) -> Result<(tokio::process::Command, Pending), String> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| "empty command".to_string())?;
    let (errors_read, errors_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|e| format!("cannot make the spawn's error pipe: {e}"))?;
    let procs = match &spec.cgroup_procs {
        Some(p) => Some(
            rustix::fs::open(p, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| format!("cannot join the job's cgroup {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let plan = match &spec.private_tmp {
        Some(t) => Some(
            crate::private_tmp::plan(t)
                .map_err(|e| format!("cannot give it private temporary directories: {e}"))?,
        ),
        None => None,
    };
    let tmp = match &plan {
        Some(p) => Some(Tmp {
            temp: p.temp.iter().map(|t| cpath(t)).collect::<Result<_, _>>()?,
            options: cstring("the tmpfs options", p.options.as_bytes())?,
            parents: p
                .parents
                .iter()
                .map(|d| Ok((cpath(&d.path)?, d.mode, d.uid, d.gid)))
                .collect::<Result<_, String>>()?,
            binds: p.binds.iter().map(|b| cpath(b)).collect::<Result<_, _>>()?,
            mqueue: p.mqueue,
        }),
        None => None,
    };
    let (dir, dir_name) = match &spec.cwd {
        Cwd::Private(entry) => {
            let fd = entry
                .open()
                .map_err(|e| format!("refusing to enter its directory: {e}"))?;
            let name = entry.root.join(&entry.name).display().to_string();
            let dir = if tmp.is_some() {
                Dir::Reopen {
                    root: cpath(&entry.root)?,
                    name: cstring(&name, entry.name.as_bytes())?,
                    dev: entry.id.dev,
                    ino: entry.id.ino,
                }
            } else {
                Dir::Fd(fd)
            };
            (Some(dir), name)
        }
        Cwd::Path(_) => (None, String::new()),
    };
    let (cwd, cwd_name) = match &spec.cwd {
        Cwd::Path(p) => (Some(cstring(p, p.as_bytes())?), p.clone()),
        Cwd::Private(_) => (None, String::new()),
    };
    let user = match &spec.user {
        Some(u) => {
            let name = cstring(&u.name, u.name.as_bytes())?;
            let groups = nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(u.gid))
                .map_err(|e| format!("cannot list the groups of {}: {e}", u.name))?;
            Some((
                Uid::from_raw(u.uid),
                Gid::from_raw(u.gid),
                groups.iter().map(|g| Gid::from_raw(g.as_raw())).collect(),
                spec.own_uid,
            ))
        }
        None => None,
    };
    let user_name = spec
        .user
        .as_ref()
        .map(|u| format!("{} (uid {}, gid {})", u.name, u.uid, u.gid))
        .unwrap_or_default();
    let steps = Steps {
        tty: spec.tty,
        procs,
        tmp,
        dir,
        user,
        cwd,
        errors: errors_write,
    };
    let mut cmd = tokio::process::Command::new(program);
    if spec.login {
        let name = program.rsplit('/').next().unwrap_or(program);
        cmd.arg0(format!("-{name}"));
    }
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    // SAFETY: the hook runs in the forked child of a multi-threaded
    // process, where only async-signal-safe calls are sound. `Steps::run`
    // makes raw system calls only (rustix's linux_raw backend, and
    // `libc::syscall` for keyctl), on C strings, vectors and descriptors
    // built above, before the fork: it allocates nothing, takes no lock
    // and formats nothing (the pid is written with a stack buffer). The
    // io::Error it returns is an errno (no allocation).
    unsafe {
        cmd.pre_exec(move || steps.run());
    }
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(String::new(), |(_, v)| v.clone());
    let pending = Pending {
        errors: errors_read,
        names: Names {
            procs: spec
                .cgroup_procs
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            tmp: plan,
            dir: dir_name,
            user: user_name,
            cwd: cwd_name,
        },
        program: program.clone(),
        path,
    };
    Ok((cmd, pending))
}

impl Pending {
    /// What `spawned` (the result of `cmd.spawn()`, with `cmd` dropped)
    /// means, read with the child's error pipe.
    pub fn outcome(self, spawned: std::io::Result<tokio::process::Child>) -> Spawned {
        let mut buf = [0u8; 64];
        let n = rustix::io::read(&self.errors, &mut buf).unwrap_or(0);
        let said = buf.get(..n).unwrap_or(&[]);
        match spawned {
            Ok(child) => Spawned::Running(child),
            Err(e) if said.first() == Some(&EXEC_MARK) => {
                let on_path = crate::jail::on_path(&self.program, &self.path);
                let (code, line) = crate::jail::exec_failure(&self.program, &e, on_path);
                Spawned::ExecFailed(code, line)
            }
            Err(e) => Spawned::Failed(match decode(said) {
                Some((step, index, errno)) => self.names.say(step, index, errno),
                None => format!("cannot fork: {e}"),
            }),
        }
    }
}

/// An error record: step, index, errno. `None` for anything else (a
/// short or unknown record). Pure.
fn decode(said: &[u8]) -> Option<(Step, u16, i32)> {
    let rec: &[u8; RECORD] = said.get(..RECORD)?.try_into().ok()?;
    let step = Step::from_byte(rec[0])?;
    let index = u16::from_le_bytes([rec[1], rec[2]]);
    let errno = i32::from_le_bytes([rec[3], rec[4], rec[5], rec[6]]);
    Some((step, index, errno))
}

impl Names {
    /// The shim's words for a failed step. Pure.
    fn say(&self, step: Step, index: u16, errno: i32) -> String {
        let why = std::io::Error::from_raw_os_error(errno);
        let nth = |list: Option<&Vec<std::path::PathBuf>>| {
            list.and_then(|l| l.get(usize::from(index)))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "?".into())
        };
        let tmp = self.tmp.as_ref();
        let tmp_why =
            |what: String| format!("cannot give it private temporary directories: {what}");
        match step {
            Step::Setsid => format!("cannot start a session for its terminal: {why}"),
            Step::Ctty => format!("cannot make the terminal its controlling terminal: {why}"),
            Step::Cgroup => format!("cannot join the job's cgroup {}: {why}", self.procs),
            Step::Unshare => tmp_why(format!(
                "cannot give the job a mount and IPC namespace of its own (unshare): {why}"
            )),
            Step::PrivateMounts => tmp_why(format!("cannot make the job's mounts private: {why}")),
            Step::OpenKeep => tmp_why(format!("cannot open {}: {why}", nth(tmp.map(|t| &t.binds)))),
            Step::Tmpfs => tmp_why(format!(
                "cannot mount a private tmpfs on {}: {why}",
                nth(tmp.map(|t| &t.temp))
            )),
            Step::MakeParent => {
                let p = tmp
                    .and_then(|t| t.parents.get(usize::from(index)))
                    .map(|p| p.path.display().to_string())
                    .unwrap_or_else(|| "?".into());
                tmp_why(format!("cannot make or set up {p}: {why}"))
            }
            Step::MakeBind => tmp_why(format!("cannot make {}: {why}", nth(tmp.map(|t| &t.binds)))),
            Step::Bind => tmp_why(format!(
                "cannot keep {} visible: {why}",
                nth(tmp.map(|t| &t.binds))
            )),
            Step::Mqueue => tmp_why(format!("cannot mount the job's own /dev/mqueue: {why}")),
            Step::OpenDir => format!(
                "refusing to enter its directory: cannot open {}: {why}",
                self.dir
            ),
            Step::EnterDir if errno == 0 => format!(
                "refusing to enter its directory: {} is not the directory the agent made (it was replaced); not entering it",
                self.dir
            ),
            Step::EnterDir => format!(
                "refusing to enter its directory: cannot enter {}: {why}",
                self.dir
            ),
            Step::Keyring => {
                format!("cannot close the agent's session key ring to the job ({why})")
            }
            Step::Groups => format!("setgroups for {}: {why}", self.user),
            Step::Gid => format!("setgid for {}: {why}", self.user),
            Step::Uid => format!("setuid for {}: {why}", self.user),
            Step::NoWayBack => "could regain root after dropping privileges".into(),
            Step::EmptyKeys => format!("cannot empty the uid's key rings ({why})"),
            Step::NoNewPrivs => format!("cannot set no_new_privs: {why}"),
            Step::Cwd => format!("cannot enter the working directory {}: {why}", self.cwd),
        }
    }
}

// keyctl(2) operations and special key ring ids (linux/keyctl.h).
const KEYCTL_SETPERM: libc::c_long = 5;
const KEYCTL_CLEAR: libc::c_long = 7;
const KEYCTL_GET_PERSISTENT: libc::c_long = 22;
const KEY_SPEC_PROCESS_KEYRING: libc::c_long = -2;
const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
const KEY_SPEC_USER_SESSION_KEYRING: libc::c_long = -5;
/// The closed session key ring's rights: all for its owner, none else
/// (as [`crate::keyrings`]).
const CLOSED: libc::c_long = 0x003f_0000;

/// `keyctl(op, a, b)`: its result, or the errno. A kernel without key
/// rings (or without persistent ones) answers `Ok(0)`: nothing to do.
fn keyctl(op: libc::c_long, a: libc::c_long, b: libc::c_long) -> Result<libc::c_long, i32> {
    // SAFETY: keyctl takes integers only for these operations (SETPERM,
    // CLEAR, GET_PERSISTENT): no pointer is passed, so no memory is
    // touched; a raw system call is async-signal-safe.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, op, a, b) };
    if r >= 0 {
        return Ok(r);
    }
    match Errno::from_io_error(&std::io::Error::last_os_error()).map(|e| e.raw_os_error()) {
        Some(e) if e == Errno::OPNOTSUPP.raw_os_error() || e == Errno::NOSYS.raw_os_error() => {
            Ok(0)
        }
        Some(e) => Err(e),
        None => Err(0),
    }
}

impl Steps {
    /// Reports step `step` (`index`, `errno`) to the agent and stops.
    fn fail(&self, step: Step, index: usize, errno: i32) -> std::io::Error {
        let i = u16::try_from(index).unwrap_or(u16::MAX).to_le_bytes();
        let e = errno.to_le_bytes();
        let rec = [step as u8, i[0], i[1], e[0], e[1], e[2], e[3]];
        let _ = rustix::io::write(&self.errors, &rec);
        std::io::Error::from_raw_os_error(if errno == 0 { libc::EPERM } else { errno })
    }

    /// The steps between fork and exec (see the module). Async-signal-safe:
    /// raw system calls on prepared data only.
    fn run(&self) -> std::io::Result<()> {
        let err = |e: Errno| e.raw_os_error();
        if self.tty {
            rustix::process::setsid().map_err(|e| self.fail(Step::Setsid, 0, err(e)))?;
            // SAFETY: descriptor 0 is open for the whole call: std made
            // it the terminal's slave side (dup2) before this hook.
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            rustix::process::ioctl_tiocsctty(stdin)
                .map_err(|e| self.fail(Step::Ctty, 0, err(e)))?;
        }
        if let Some(procs) = &self.procs {
            let mut buf = [0u8; 12];
            let text = decimal(rustix::process::getpid().as_raw_nonzero().get(), &mut buf);
            rustix::io::write(procs, text).map_err(|e| self.fail(Step::Cgroup, 0, err(e)))?;
        }
        if let Some(tmp) = &self.tmp {
            self.private_tmp(tmp)?;
        }
        match &self.dir {
            Some(Dir::Fd(fd)) => {
                rustix::process::fchdir(fd).map_err(|e| self.fail(Step::EnterDir, 0, err(e)))?;
            }
            Some(Dir::Reopen {
                root,
                name,
                dev,
                ino,
            }) => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let r = rustix::fs::open(root.as_c_str(), flags, Mode::empty())
                    .map_err(|e| self.fail(Step::OpenDir, 0, err(e)))?;
                let d = rustix::fs::openat(&r, name.as_c_str(), flags, Mode::empty())
                    .map_err(|e| self.fail(Step::OpenDir, 0, err(e)))?;
                let st = rustix::fs::fstat(&d).map_err(|e| self.fail(Step::OpenDir, 0, err(e)))?;
                if st.st_dev != *dev || st.st_ino != *ino {
                    return Err(self.fail(Step::EnterDir, 0, 0));
                }
                rustix::process::fchdir(&d).map_err(|e| self.fail(Step::EnterDir, 0, err(e)))?;
            }
            None => {}
        }
        if let Some((uid, gid, groups, own_uid)) = &self.user {
            keyctl(KEYCTL_SETPERM, KEY_SPEC_SESSION_KEYRING, CLOSED)
                .map_err(|e| self.fail(Step::Keyring, 0, e))?;
            rustix::thread::set_thread_groups(groups)
                .map_err(|e| self.fail(Step::Groups, 0, err(e)))?;
            rustix::thread::set_thread_res_gid(*gid, *gid, *gid)
                .map_err(|e| self.fail(Step::Gid, 0, err(e)))?;
            rustix::thread::set_thread_res_uid(*uid, *uid, *uid)
                .map_err(|e| self.fail(Step::Uid, 0, err(e)))?;
            if uid.as_raw() != 0 && rustix::thread::set_thread_uid(Uid::ROOT).is_ok() {
                return Err(self.fail(Step::NoWayBack, 0, 0));
            }
            if *own_uid {
                let persistent = keyctl(KEYCTL_GET_PERSISTENT, -1, KEY_SPEC_PROCESS_KEYRING)
                    .map_err(|e| self.fail(Step::EmptyKeys, 0, e))?;
                if persistent > 0 {
                    keyctl(KEYCTL_CLEAR, persistent, 0)
                        .map_err(|e| self.fail(Step::EmptyKeys, 0, e))?;
                }
                for (i, ring) in [KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING]
                    .into_iter()
                    .enumerate()
                {
                    keyctl(KEYCTL_CLEAR, ring, 0)
                        .map_err(|e| self.fail(Step::EmptyKeys, i + 1, e))?;
                }
            }
        }
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| self.fail(Step::NoNewPrivs, 0, err(e)))?;
        if let Some(cwd) = &self.cwd {
            rustix::process::chdir(cwd.as_c_str()).map_err(|e| self.fail(Step::Cwd, 0, err(e)))?;
        }
        let _ = rustix::io::write(&self.errors, &[EXEC_MARK]);
        Ok(())
    }

    /// [`crate::private_tmp::enter`]'s steps, on the prepared plan.
    fn private_tmp(&self, tmp: &Tmp) -> std::io::Result<()> {
        use rustix::mount::{MountFlags, MountPropagationFlags};
        use rustix::thread::UnshareFlags;
        let err = |e: Errno| e.raw_os_error();
        // SAFETY: unshare_unsafe is unsafe only for UnshareFlags::FILES
        // (descriptors seen across threads); NEWNS and NEWIPC change no
        // descriptor table, and this child has a single thread.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::NEWIPC) }
            .map_err(|e| self.fail(Step::Unshare, 0, err(e)))?;
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .map_err(|e| self.fail(Step::PrivateMounts, 0, err(e)))?;
        // At most this many kept directories are bound back; a stack
        // array, as nothing may be allocated here.
        const MAX_BINDS: usize = 16;
        let mut sources: [Option<OwnedFd>; MAX_BINDS] = Default::default();
        if tmp.binds.len() > MAX_BINDS {
            return Err(self.fail(Step::OpenKeep, MAX_BINDS, libc::E2BIG));
        }
        for (i, b) in tmp.binds.iter().enumerate() {
            let fd = rustix::fs::open(
                b.as_c_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.fail(Step::OpenKeep, i, err(e)))?;
            if let Some(slot) = sources.get_mut(i) {
                *slot = Some(fd);
            }
        }
        for (i, t) in tmp.temp.iter().enumerate() {
            rustix::mount::mount(
                c"tmpfs",
                t.as_c_str(),
                c"tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                Some(tmp.options.as_c_str()),
            )
            .map_err(|e| self.fail(Step::Tmpfs, i, err(e)))?;
        }
        for (i, (path, mode, uid, gid)) in tmp.parents.iter().enumerate() {
            if rustix::fs::lstat(path.as_c_str()).is_err() {
                rustix::fs::mkdir(path.as_c_str(), Mode::from_raw_mode(0o700))
                    .and_then(|()| {
                        rustix::fs::chown(
                            path.as_c_str(),
                            Some(Uid::from_raw(*uid)),
                            Some(Gid::from_raw(*gid)),
                        )
                    })
                    .and_then(|()| rustix::fs::chmod(path.as_c_str(), Mode::from_raw_mode(*mode)))
                    .map_err(|e| self.fail(Step::MakeParent, i, err(e)))?;
            }
        }
        for (i, (path, fd)) in tmp.binds.iter().zip(sources.iter()).enumerate() {
            let Some(fd) = fd else {
                continue;
            };
            rustix::fs::mkdir(path.as_c_str(), Mode::from_raw_mode(0o700))
                .map_err(|e| self.fail(Step::MakeBind, i, err(e)))?;
            // "/proc/self/fd/N", NUL-terminated, on the stack.
            let mut buf = [0u8; 32];
            let source = fd_path(fd.as_fd(), &mut buf);
            rustix::mount::mount_bind_recursive(source, path.as_c_str())
                .map_err(|e| self.fail(Step::Bind, i, err(e)))?;
        }
        if tmp.mqueue {
            rustix::mount::mount(
                c"mqueue",
                c"/dev/mqueue",
                c"mqueue",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                None::<&std::ffi::CStr>,
            )
            .map_err(|e| self.fail(Step::Mqueue, 0, err(e)))?;
        }
        Ok(())
    }
}

/// `n` in decimal, written at the end of `buf`; no allocation. Pure.
fn decimal(n: i32, buf: &mut [u8; 12]) -> &[u8] {
    let negative = n < 0;
    let mut v = n.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// `/proc/self/fd/N` for `fd`, NUL-terminated, in `buf`; no allocation.
fn fd_path<'a>(fd: BorrowedFd<'_>, buf: &'a mut [u8; 32]) -> &'a std::ffi::CStr {
    use std::os::fd::AsRawFd as _;
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let mut digits = [0u8; 12];
    let n = decimal(fd.as_raw_fd(), &mut digits);
    let end = PREFIX.len() + n.len();
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    buf[PREFIX.len()..end].copy_from_slice(n);
    buf[end] = 0;
    std::ffi::CStr::from_bytes_until_nul(&buf[..=end]).unwrap_or(c"/proc/self/fd/-1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_without_allocating() {
        let mut buf = [0u8; 12];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(4_194_304, &mut buf), b"4194304");
        assert_eq!(decimal(i32::MAX, &mut buf), b"2147483647");
        assert_eq!(decimal(-7, &mut buf), b"-7");
        let mut p = [0u8; 32];
        // SAFETY: descriptor 2 (stderr) is open in the test process.
        let fd = unsafe { BorrowedFd::borrow_raw(2) };
        assert_eq!(fd_path(fd, &mut p), c"/proc/self/fd/2");
    }

    #[test]
    fn error_records_decode_only_when_whole_and_known() {
        let rec = [Step::Uid as u8, 3, 0, 1, 0, 0, 0];
        assert_eq!(decode(&rec), Some((Step::Uid, 3, 1)));
        assert_eq!(decode(&rec[..6]), None, "short");
        assert_eq!(decode(&[0, 0, 0, 0, 0, 0, 0]), None, "unknown step");
        assert_eq!(decode(&[EXEC_MARK]), None);
        assert_eq!(decode(&[]), None);
        for s in Step::ALL {
            assert_eq!(Step::from_byte(s as u8), Some(s));
        }
    }

    #[test]
    fn a_failed_step_is_said_in_the_shims_words() {
        let names = Names {
            procs: "/sys/fs/cgroup/x/cgroup.procs".into(),
            tmp: None,
            dir: "/w/job-1".into(),
            user: "nobody (uid 65534, gid 65534)".into(),
            cwd: "/srv".into(),
        };
        let e = names.say(Step::Uid, 0, libc::EPERM);
        assert!(e.contains("setuid") && e.contains("nobody"), "{e}");
        let e = names.say(Step::Cgroup, 0, libc::ENOENT);
        assert!(
            e.contains("cgroup.procs") && e.contains("No such file"),
            "{e}"
        );
        let e = names.say(Step::EnterDir, 0, 0);
        assert!(e.contains("replaced"), "{e}");
        let e = names.say(Step::OpenKeep, 9, libc::ENOENT);
        assert!(
            e.contains('?'),
            "an index out of range is said, not a panic: {e}"
        );
    }
}
