//! The agent's half of the spawn helper ([`crate::spawn`]): everything the
//! child will need, built before the fork (C strings, descriptors, the
//! user's groups, the private temporary directories' plan), and what the
//! child said through its error pipe, turned into the job's outcome.
//! Safe code: only [`crate::spawn`] may use `unsafe`.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use rustix::fs::{Gid, Mode, OFlags, Uid};

use crate::jail::{Cwd, ShimSpec};
use crate::spawn::{Dir, EXEC_MARK, RECORD, Step, Steps, Tmp};

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
    // std would refuse these at spawn without forking, said as "cannot
    // fork"; refused here with what holds the NUL.
    if let Some(i) = spec.argv.iter().position(|a| a.contains('\0')) {
        return Err(format!("argument {i} of the command holds a NUL byte"));
    }
    if let Some((k, _)) = spec
        .env
        .iter()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(format!(
            "the environment variable {:?} holds a NUL byte",
            k.replace('\0', "\\0")
        ));
    }
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
    crate::spawn::install(&mut cmd, steps);
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn attack_a_nul_in_the_command_or_environment_refuses_the_job_before_the_fork() {
        let spec = |argv: &[&str], env: &[(&str, &str)]| ShimSpec {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            cwd: Cwd::Path("/".into()),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            user: None,
            cgroup_procs: None,
            private_tmp: None,
            own_uid: false,
            tty: false,
            login: false,
        };
        for s in [
            spec(&["echo", "a\0b"], &[]),
            spec(&["ec\0ho"], &[]),
            spec(&["echo"], &[("A\0B", "1")]),
            spec(&["echo"], &[("A", "1\0")]),
        ] {
            let r = prepare(&s).map(|_| ());
            assert!(
                matches!(&r, Err(e) if e.contains("NUL byte")),
                "{:?} {:?}: {r:?}",
                s.argv,
                s.env
            );
        }
        assert!(prepare(&spec(&["echo", "ok"], &[("A", "1")])).is_ok());
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
