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
//! failure with the step's words ([`crate::spawn_plan::Spawned`]). The last step before
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

use rustix::fs::{Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

/// Written by the child just before `execvp`: every step succeeded.
pub const EXEC_MARK: u8 = 0xff;
/// Bytes of one error record: step, index (u16), errno (i32).
pub(crate) const RECORD: usize = 7;

/// The steps in the child, numbered as they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Step {
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
    pub(crate) const ALL: [Step; 21] = [
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

    pub(crate) fn from_byte(b: u8) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u8 == b)
    }
}

/// The private temporary directories, as C strings.
pub(crate) struct Tmp {
    pub(crate) temp: Vec<CString>,
    pub(crate) options: CString,
    pub(crate) parents: Vec<(CString, u32, u32, u32)>,
    pub(crate) binds: Vec<CString>,
    pub(crate) mqueue: bool,
}

/// How the child enters the job's private directory.
pub(crate) enum Dir {
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
pub(crate) struct Steps {
    pub(crate) tty: bool,
    pub(crate) procs: Option<OwnedFd>,
    pub(crate) tmp: Option<Tmp>,
    pub(crate) dir: Option<Dir>,
    pub(crate) user: Option<(Uid, Gid, Vec<Gid>, bool)>,
    pub(crate) cwd: Option<CString>,
    pub(crate) errors: OwnedFd,
}

/// Installs `steps` as `cmd`'s `pre_exec` hook: they run in the child,
/// between fork and exec.
pub(crate) fn install(cmd: &mut tokio::process::Command, steps: Steps) {
    // SAFETY: the hook runs in the forked child of a multi-threaded
    // process, where only async-signal-safe calls are sound. `Steps::run`
    // makes raw system calls only (rustix's linux_raw backend, and
    // `libc::syscall` for keyctl), on C strings, vectors and descriptors
    // built before the fork (`spawn_plan::prepare`): it allocates nothing, takes no lock
    // and formats nothing (the pid is written with a stack buffer). The
    // io::Error it returns is an errno (no allocation).
    unsafe {
        cmd.pre_exec(move || steps.run());
    }
}

/// Marks every descriptor of this process from 3 on close-on-exec, and
/// returns how many were not: what the agent inherited from whatever
/// started it (a wrapper's `exec 7<file`, a supervisor's socket) would
/// otherwise reach every job, through this helper or the shim, since
/// `std` closes only the descriptors it opened itself. Called once as the
/// agent starts; descriptors the agent opens later are close-on-exec
/// already (`std`, `rustix` and `nix` calls with `CLOEXEC`).
pub fn inherited_close_on_exec() -> std::io::Result<usize> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let n = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok());
        if let Some(n) = n.filter(|n| *n > 2) {
            fds.push(n);
        }
    }
    let mut marked = 0;
    for n in fds {
        // SAFETY: `n` was listed open just above, and only flags are read
        // and set (no read, write or close through it). The listing's own
        // descriptor is closed by now: fcntl answers EBADF, and it is
        // skipped; were its number reused meanwhile, marking the new one
        // close-on-exec is what it should be anyway.
        let fd = unsafe { BorrowedFd::borrow_raw(n) };
        let Ok(flags) = rustix::io::fcntl_getfd(fd) else {
            continue;
        };
        if !flags.contains(rustix::io::FdFlags::CLOEXEC) {
            rustix::io::fcntl_setfd(fd, flags | rustix::io::FdFlags::CLOEXEC)?;
            marked += 1;
        }
    }
    Ok(marked)
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
}
