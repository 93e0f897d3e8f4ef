//! Who a job runs as, and the exec shim that makes it so.
//!
//! The agent starts a job with one fork and one exec: the spawn helper
//! ([`crate::spawn`]) does the steps below between them. Started with
//! `OPENCLAW_EXEC_SHIM=1`, it instead starts its own binary as a
//! short-lived *shim* (`openclaw __job-exec`) with the job's spec
//! ([`ShimSpec`], which the helper reads too) in one environment
//! variable; the shim also serves the probe of private temporary
//! directories, the file child and the artifact collector. The shim,
//! still as the agent's user:
//!
//! 0. for a job on a terminal ([`crate::pty`]), calls `setsid` and makes
//!    the terminal on its stdin its controlling terminal;
//! 1. joins the job's cgroup ([`crate::tree`]), so nothing it starts can
//!    leave the job;
//! 2. when the agent drops privileges for jobs, gives the job a mount and
//!    IPC namespace of its own with fresh `/tmp`, `/var/tmp` and
//!    `/dev/shm` ([`crate::private_tmp`]), so nothing it leaves there
//!    outlives it;
//! 3. enters the job's private directory by descriptor
//!    ([`crate::jobdir::Entry::enter`]), never by a path someone could
//!    swap;
//! 4. when the agent is root and `run_as` is set, closes the session key
//!    ring it inherited to the job ([`crate::keyrings`]), takes the job
//!    user's groups (`initgroups`), then `setgid`, then `setuid`, and,
//!    for a uid of `job_uids`, empties that uid's key rings;
//! 5. sets `no_new_privs`, so no setuid program can raise it again;
//! 6. execs the command with a clean environment (only what the plan and
//!    the node set); a `--cwd` the job asked for is entered by path as the
//!    job's user, so its permissions apply.
//!
//! Everything here is safe Rust: the shim is a process of its own, so the
//! steps run in order in its single thread instead of in a `pre_exec` hook.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The argument that makes the openclaw binary act as the shim.
pub const SHIM_ARG: &str = "__job-exec";
/// The environment variable that carries the shim's spec.
const SPEC_VAR: &str = "OPENCLAW_SHIM_SPEC";

/// The user a job runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// What the agent decided at start about running jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Drop to this user for every job.
    Drop(JobUser),
    /// Run jobs as the agent's own user (allowed explicitly).
    AgentUser(JobUser),
    /// Refuse every job, for this reason.
    Refuse(String),
}

fn lookup(name: &str) -> Result<JobUser, String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(JobUser {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir.to_string_lossy().into_owned(),
        }),
        Ok(None) => Err(format!(
            "run_as = {name:?}: no such user on this machine; create it (e.g. 'useradd --system {name}') or change run_as in node.toml"
        )),
        Err(e) => Err(format!("run_as = {name:?}: cannot look the user up: {e}")),
    }
}

fn current_user() -> JobUser {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => JobUser {
            name: u.name,
            uid: uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir.to_string_lossy().into_owned(),
        },
        _ => JobUser {
            name: uid.to_string(),
            uid: uid.as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            home: std::env::var("HOME").unwrap_or_else(|_| "/".into()),
        },
    }
}

/// Decides, once at agent start, who jobs run as. Pure but for the user
/// lookups. The decision rules:
///
/// * `run_as` set and the agent is root: drop to that user.
/// * `run_as` set to the agent's own user: run as it (nothing to drop).
/// * `run_as` set otherwise: refuse jobs (an unprivileged agent cannot switch users).
/// * no `run_as`: refuse jobs, unless `allow_jobs_as_agent_user`.
pub fn decide(run_as: Option<&str>, allow_agent_user: bool) -> Identity {
    let me = current_user();
    match run_as {
        Some(name) => match lookup(name) {
            Ok(u) if u.uid == 0 => {
                Identity::Refuse("run_as names root; jobs must run as an unprivileged user".into())
            }
            Ok(u) if u.uid == me.uid => Identity::AgentUser(u),
            Ok(_) if me.uid != 0 => Identity::Refuse(format!(
                "run_as = {name:?} needs the agent to run as root so it can switch users; \
                 run the agent as root (it drops privileges for every job) or as {name}"
            )),
            Ok(u) => Identity::Drop(u),
            Err(e) => Identity::Refuse(e),
        },
        None if allow_agent_user => Identity::AgentUser(me),
        None => Identity::Refuse(format!(
            "this node has no run_as user, so jobs would run as the agent's own user ({}) and could read \
             its private key; set run_as = \"USER\" in node.toml (the agent then drops to USER for every job), \
             or, for a lab, allow_jobs_as_agent_user = true",
            me.name
        )),
    }
}

/// The user a named job asked for, if this node allows it: listed in
/// `allowed_run_as`, not root, and the agent able to switch users.
pub fn pick_user(allowed: &[String], want: &str, can_switch: bool) -> Result<JobUser, String> {
    if !allowed.iter().any(|a| a == want) {
        return Err(format!(
            "refused by policy: the job asks to run as {want:?}, which allowed_run_as in node.toml does not list"
        ));
    }
    if !can_switch {
        return Err(format!(
            "the job asks to run as {want:?}, but this agent does not run as root with run_as set, so it cannot switch users"
        ));
    }
    let u = lookup(want)?;
    if u.uid == 0 {
        return Err("refused by policy: a job may never run as root".into());
    }
    Ok(u)
}

/// Parses `job_uids = "START-END"`: the first uid and how many.
pub fn parse_uid_range(s: &str) -> Result<(u32, u32), String> {
    let bad =
        || format!("job_uids = {s:?}: write a range of unused uids like \"61000-61999\" (not 0)");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u32, u32) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    // (uid_t)-1 means "no change" to setuid and friends.
    if a == 0 || b < a || b == u32::MAX {
        return Err(bad());
    }
    Ok((a, b - a + 1))
}

/// Whether `uid` is one of the `count` uids from `first`. Pure.
fn in_uid_range((first, count): (u32, u32), uid: u32) -> bool {
    uid >= first && uid - first < count
}

/// Refuses a `job_uids` range that cannot give every running job a uid
/// of its own, or that holds a uid already in use by `run_as` or the
/// agent. Pure.
pub fn check_uid_range(
    text: &str,
    range: (u32, u32),
    max_jobs: u32,
    taken: &[(&str, u32)],
) -> Result<(), String> {
    let count = range.1;
    if count < max_jobs {
        return Err(format!(
            "job_uids = {text:?} has {count} uid(s) but [policy] max_jobs = {max_jobs}: two running jobs \
             would have to share a uid and could read each other's files and environment; widen job_uids \
             to at least {max_jobs} uids or lower max_jobs in node.toml"
        ));
    }
    for (who, uid) in taken {
        if in_uid_range(range, *uid) {
            return Err(format!(
                "job_uids = {text:?} includes uid {uid}, which {who} uses: jobs would share it; choose a \
                 range of uids nothing else uses in node.toml"
            ));
        }
    }
    Ok(())
}

/// The uid for job `job` from `count` uids starting at `first`: the first
/// one from `job % count` on (wrapping) that no running job holds and
/// `usable` accepts (no processes left, no account of that uid). Looks at
/// `held.len() + 4096` candidates at most. Pure but for `usable`.
pub fn pick_uid(
    first: u32,
    count: u32,
    job: u64,
    held: &BTreeSet<u32>,
    mut usable: impl FnMut(u32) -> bool,
) -> Option<u32> {
    let count = count.max(1);
    let start = u32::try_from(job % u64::from(count)).unwrap_or(0);
    let tries = u64::from(count).min(held.len() as u64 + 4096);
    (0..tries)
        .map(|i| {
            let offset = (u64::from(start) + i) % u64::from(count);
            first.saturating_add(u32::try_from(offset).unwrap_or(0))
        })
        .find(|uid| !held.contains(uid) && usable(*uid))
}

/// The uids of `job_uids`, each held by at most one running job.
#[derive(Debug)]
pub struct UidPool {
    first: u32,
    count: u32,
    held: Mutex<BTreeSet<u32>>,
}

/// A uid held by one job; released on drop, which the runner does only
/// once every process of the job is gone.
#[derive(Debug)]
pub struct UidLease {
    pool: Arc<UidPool>,
    /// The uid.
    pub uid: u32,
}

impl Drop for UidLease {
    fn drop(&mut self) {
        match self.pool.held.lock() {
            Ok(mut h) => h.remove(&self.uid),
            Err(p) => p.into_inner().remove(&self.uid),
        };
    }
}

impl UidPool {
    /// A pool of `range` = (first uid, how many).
    pub fn new(range: (u32, u32)) -> Arc<UidPool> {
        Arc::new(UidPool {
            first: range.0,
            count: range.1,
            held: Mutex::new(BTreeSet::new()),
        })
    }

    /// A uid no running job holds and `usable` accepts, for job `job`.
    pub fn take(self: &Arc<Self>, job: u64, usable: impl FnMut(u32) -> bool) -> Option<UidLease> {
        let mut held = match self.held.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        let uid = pick_uid(self.first, self.count, job, &held, usable)?;
        held.insert(uid);
        Some(UidLease {
            pool: self.clone(),
            uid,
        })
    }

    /// Uids held by running jobs now.
    pub fn held(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// The range as node.toml writes it.
    pub fn describe(&self) -> String {
        format!(
            "{}-{}",
            self.first,
            self.first.saturating_add(self.count.saturating_sub(1))
        )
    }

    /// Whether `uid` is in the range.
    pub fn contains(&self, uid: u32) -> bool {
        in_uid_range((self.first, self.count), uid)
    }
}

impl JobUser {
    /// This user, with `uid` (a job's own, from `job_uids`) and `home` as
    /// its home.
    pub fn with_uid(&self, uid: u32, home: &str) -> JobUser {
        JobUser {
            name: self.name.clone(),
            uid,
            gid: self.gid,
            home: home.to_string(),
        }
    }
}

/// Where the shim starts the command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Cwd {
    /// The job's private directory, entered by descriptor before
    /// privileges are dropped.
    Private(crate::jobdir::Entry),
    /// A `--cwd` the node's policy allowed (canonical), entered by path as
    /// the job's user.
    Path(String),
}

/// What the shim does, sent to it in one environment variable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimSpec {
    /// The command.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: Cwd,
    /// The job's whole environment.
    pub env: Vec<(String, String)>,
    /// Drop to this user first (agent is root).
    pub user: Option<JobUser>,
    /// Write our pid here to join the job's cgroup.
    pub cgroup_procs: Option<PathBuf>,
    /// Fresh temporary directories and IPC for the job (the agent is
    /// root and drops privileges), set up after joining the cgroup.
    pub private_tmp: Option<crate::private_tmp::PrivateTmp>,
    /// The uid is the job's alone (from `job_uids`): its key rings are
    /// emptied once the shim runs as it.
    #[serde(default)]
    pub own_uid: bool,
    /// Its stdin is a terminal's slave side ([`crate::pty`]): the shim
    /// first starts a session of its own with that terminal as its
    /// controlling one.
    #[serde(default)]
    pub tty: bool,
    /// The command is a login shell: started as `-NAME`, as `login` does.
    #[serde(default)]
    pub login: bool,
}

/// The small shim binary installed next to `openclaw`.
pub const SHIM_BIN: &str = "openclaw-exec";

/// The binary that runs the shim: `openclaw-exec` next to the agent's
/// own if it is there (`true`), else the agent's own binary, which needs
/// [`SHIM_ARG`].
pub fn shim_binary() -> Result<(PathBuf, bool), String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the agent's own binary to start the job: {e}"))?;
    let small = exe.with_file_name(SHIM_BIN);
    Ok(if small.is_file() {
        (small, true)
    } else {
        (exe, false)
    })
}

/// A `tokio` command that runs `spec` through the shim: `openclaw-exec`
/// next to the agent's binary if it is there (a small program, quick to
/// start), else the agent's own binary as `openclaw __job-exec`.
pub fn command(spec: &ShimSpec) -> Result<tokio::process::Command, String> {
    shim_command(SPEC_VAR, spec)
}

/// The shim, with an empty environment but for `var`, which holds
/// `what` as JSON: a job's spec ([`SPEC_VAR`]) or a probe's.
pub fn shim_command(
    var: &str,
    what: &impl serde::Serialize,
) -> Result<tokio::process::Command, String> {
    let json = serde_json::to_string(what).map_err(|e| e.to_string())?;
    let (exe, small) = shim_binary()?;
    let mut cmd = tokio::process::Command::new(exe);
    if !small {
        cmd.arg(SHIM_ARG);
    }
    cmd.env_clear().env(var, json);
    Ok(cmd)
}

/// What a shell says, and exits with, when `program` cannot be executed
/// (`err` from `execvp`): 127 and `NAME: command not found` when no
/// such command is on PATH (`No such file or directory` for a path), 126
/// and the reason otherwise. `on_path` says whether a bare name is a file
/// in a PATH directory the job's user can search ([`on_path`]): execvp
/// answers EACCES when a PATH directory is closed to the user (an agent
/// started from root's shell passes on `/root/.cargo/bin`), though the
/// command is nowhere, and bash then says "command not found", as here.
/// The line names the command, never us: it is the job's own stderr,
/// read as the command's. Pure.
pub fn exec_failure(program: &str, err: &std::io::Error, on_path: bool) -> (i32, String) {
    let reason = err
        .raw_os_error()
        .map(|n| nix::errno::Errno::from_raw(n).desc().to_string())
        .unwrap_or_else(|| err.to_string());
    match err.kind() {
        std::io::ErrorKind::NotFound if program.contains('/') => {
            (127, format!("{program}: No such file or directory"))
        }
        std::io::ErrorKind::NotFound => (127, format!("{program}: command not found")),
        std::io::ErrorKind::PermissionDenied if !program.contains('/') && !on_path => {
            (127, format!("{program}: command not found"))
        }
        _ => (126, format!("{program}: {reason}")),
    }
}

/// Whether `program` names a file in a directory of `path` that this
/// process can search (a closed directory hides what is in it).
pub fn on_path(program: &str, path: &str) -> bool {
    std::env::split_paths(path).any(|dir| dir.join(program).exists())
}

/// Drops this process to `u` for good: closes the session key ring it
/// inherited, takes `u`'s groups (`initgroups`), then `setgid`, then
/// `setuid`, checks there is no way back to root, and, for a uid of its
/// own (`own_uid`, from `job_uids`), empties that uid's key rings. Used
/// by the exec shim and by the file child (`crate::files`).
pub fn become_user(u: &JobUser, own_uid: bool) -> Result<(), String> {
    crate::keyrings::close_inherited_session()?;
    let gid = nix::unistd::Gid::from_raw(u.gid);
    let name = std::ffi::CString::new(u.name.clone())
        .map_err(|_| "invalid run_as user name".to_string())?;
    nix::unistd::initgroups(&name, gid).map_err(|e| format!("initgroups({}): {e}", u.name))?;
    nix::unistd::setgid(gid).map_err(|e| format!("setgid({}): {e}", u.gid))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(u.uid))
        .map_err(|e| format!("setuid({}): {e}", u.uid))?;
    // Make sure there is no way back.
    if nix::unistd::setuid(nix::unistd::Uid::from_raw(0)).is_ok() && u.uid != 0 {
        return Err("could regain root after dropping privileges".into());
    }
    if own_uid {
        crate::keyrings::empty_uid_keyrings()?;
    }
    Ok(())
}

/// The shim's main (`openclaw-exec`, or `openclaw __job-exec`): never
/// returns. Started as `nvidia-smi` (the fake of a node with simulated
/// GPUs, [`crate::simsmi`]) it is that instead. Exit codes follow the
/// shell's: 127 when the command is not found, 126 when it cannot be
/// executed (with the shell's one line, [`exec_failure`]), 125 when the
/// shim itself failed (cgroup, directory, privileges), said as the node's
/// failure, not the command's.
pub fn shim_main() -> ! {
    if crate::simsmi::invoked_as(std::env::args_os().next().as_deref()) {
        crate::simsmi::main();
    }
    if let Ok(json) = std::env::var(crate::private_tmp::PROBE_VAR) {
        crate::private_tmp::probe_main(&json);
    }
    if let Ok(json) = std::env::var(crate::files::SPEC_VAR) {
        crate::files::serve_main(&json);
    }
    let exit = |code: i32, line: &str| -> ! {
        eprintln!("{line}");
        std::process::exit(code)
    };
    if let Ok(json) = std::env::var(crate::artifacts::COLLECT_VAR) {
        crate::artifacts::collect_main(&json);
    }
    let spec: ShimSpec = match std::env::var(SPEC_VAR)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => exit(
            125,
            &format!("{SHIM_BIN}: {SHIM_ARG} is started by the node agent only ({e})"),
        ),
    };
    // The node's own failures reach the user through the job's stderr:
    // they name the node, so they never read as the command's, nor as the
    // user's local CLI's.
    let node = spec
        .env
        .iter()
        .find(|(k, _)| k == "OPENCLAW_NODE")
        .map_or("?", |(_, v)| v.as_str())
        .to_string();
    let fail =
        |msg: String| -> ! { exit(125, &format!("node {node}: cannot start the job: {msg}")) };
    // A terminal's job: a session of its own, led by the shim (so by the
    // command it becomes), with the terminal on stdin as its controlling
    // terminal: Ctrl-C and Ctrl-Z reach its foreground process group, and
    // a hang-up reaches it when the terminal goes.
    if spec.tty {
        if let Err(e) = rustix::process::setsid() {
            fail(format!("cannot start a session for its terminal: {e}"));
        }
        if let Err(e) = rustix::process::ioctl_tiocsctty(std::io::stdin()) {
            fail(format!(
                "cannot make the terminal its controlling terminal: {e}"
            ));
        }
    }
    if let Some(procs) = &spec.cgroup_procs
        && let Err(e) = std::fs::write(procs, std::process::id().to_string())
    {
        fail(format!(
            "cannot join the job's cgroup {}: {e}",
            procs.display()
        ));
    }
    if let Some(tmp) = &spec.private_tmp
        && let Err(e) = crate::private_tmp::enter(tmp)
    {
        fail(format!("cannot give it private temporary directories: {e}"));
    }
    if let Cwd::Private(entry) = &spec.cwd
        && let Err(e) = entry.enter()
    {
        fail(format!("refusing to enter its directory: {e}"));
    }
    if let Some(u) = &spec.user
        && let Err(e) = become_user(u, spec.own_uid)
    {
        fail(e);
    }
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        fail(format!("cannot set no_new_privs: {e}"));
    }
    let Some((program, args)) = spec.argv.split_first() else {
        fail("empty command".into())
    };
    // Entered here, as the job's user, so that a failure is said as the
    // directory's, not blamed on the command.
    if let Cwd::Path(dir) = &spec.cwd
        && let Err(e) = std::env::set_current_dir(dir)
    {
        fail(format!("cannot enter the working directory {dir}: {e}"));
    }
    let mut cmd = std::process::Command::new(program);
    if spec.login {
        let name = program.rsplit('/').next().unwrap_or(program);
        cmd.arg0(format!("-{name}"));
    }
    let err = cmd
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .exec();
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("", |(_, v)| v.as_str());
    let (code, line) = exec_failure(program, &err, on_path(program, path));
    exit(code, &line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_cannot_run_is_reported_as_a_shell_would() {
        use std::io::{Error, ErrorKind};
        let cases = [
            (
                "nvidia-smi",
                Error::from(ErrorKind::NotFound),
                127,
                "nvidia-smi: command not found",
            ),
            (
                "./train.sh",
                Error::from_raw_os_error(2),
                127,
                "./train.sh: No such file or directory",
            ),
            (
                "/srv/x",
                Error::from_raw_os_error(13),
                126,
                "/srv/x: Permission denied",
            ),
            (
                "./blob",
                Error::from_raw_os_error(8),
                126,
                "./blob: Exec format error",
            ),
        ];
        for (program, err, code, line) in cases {
            let got = exec_failure(program, &err, true);
            assert_eq!(got, (code, line.to_string()), "{program}");
            assert!(!got.1.starts_with("openclaw"), "{got:?}");
        }
        // EACCES for a bare name that is in no searchable PATH directory
        // (one was closed to the job's user): not found, as bash says.
        let denied = Error::from_raw_os_error(13);
        assert_eq!(
            exec_failure("nvidia-smi", &denied, false),
            (127, "nvidia-smi: command not found".to_string())
        );
        // Found but not executable: 126, as before.
        assert_eq!(
            exec_failure("train.sh", &denied, true),
            (126, "train.sh: Permission denied".to_string())
        );
    }

    #[test]
    fn on_path_sees_only_what_a_path_directory_holds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tool"), "").unwrap();
        let path = format!("/nonexistent-openclaw:{}", dir.path().display());
        assert!(on_path("tool", &path));
        assert!(!on_path("other", &path));
        assert!(!on_path("tool", "/nonexistent-openclaw"));
        assert!(!on_path("tool", ""));
    }

    #[test]
    fn named_jobs_pick_only_listed_unprivileged_users() {
        let allowed = vec!["nobody".to_string(), "root".to_string()];
        let e = pick_user(&allowed, "daemon", true).unwrap_err();
        assert!(e.contains("allowed_run_as"), "{e}");
        let e = pick_user(&allowed, "nobody", false).unwrap_err();
        assert!(e.contains("cannot switch users"), "{e}");
        if lookup("root").is_ok() {
            let e = pick_user(&allowed, "root", true).unwrap_err();
            assert!(e.contains("never run as root"), "{e}");
        }
        if lookup("nobody").is_ok() {
            assert_eq!(pick_user(&allowed, "nobody", true).unwrap().name, "nobody");
        }
    }

    #[test]
    fn uid_ranges() {
        assert_eq!(parse_uid_range("61000-61999"), Ok((61000, 1000)));
        for bad in ["", "0-10", "10-5", "a-b", "61000", "1-4294967295"] {
            assert!(parse_uid_range(bad).is_err(), "{bad}");
        }
        let u = JobUser {
            name: "lab".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/lab".into(),
        };
        let j = u.with_uid(61005, "/tmp/job-1005");
        assert_eq!(
            (j.uid, j.gid, j.home.as_str()),
            (61005, 1000, "/tmp/job-1005")
        );
    }

    #[test]
    fn a_uid_range_must_cover_max_jobs_and_hold_no_used_uid() {
        let text = "61000-61003";
        let e = check_uid_range(text, (61000, 4), 256, &[]).unwrap_err();
        assert!(e.contains("max_jobs = 256") && e.contains(text), "{e}");
        assert!(check_uid_range(text, (61000, 4), 4, &[]).is_ok());
        let e = check_uid_range(text, (61000, 4), 4, &[("run_as (nobody)", 61003)]).unwrap_err();
        assert!(e.contains("61003") && e.contains("nobody"), "{e}");
        assert!(
            check_uid_range(text, (61000, 4), 4, &[("run_as", 61004), ("the agent", 0)]).is_ok()
        );
    }

    #[test]
    fn two_running_jobs_never_get_the_same_uid() {
        let all = |_| true;
        let mut held = BTreeSet::new();
        // id % count collides for jobs 20 and 24 (the report's pair).
        let a = pick_uid(61000, 4, 20, &held, all).unwrap();
        assert_eq!(a, 61000);
        held.insert(a);
        let b = pick_uid(61000, 4, 24, &held, all).unwrap();
        assert_ne!(a, b);
        assert_eq!(b, 61001, "the next free one after the collision");
        held.insert(b);
        // The search wraps around the end of the range.
        let c = pick_uid(61000, 4, 23, &held, all).unwrap();
        assert_eq!(c, 61003);
        held.insert(c);
        let d = pick_uid(61000, 4, 23, &held, all).unwrap();
        assert_eq!(d, 61002);
        held.insert(d);
        assert_eq!(pick_uid(61000, 4, 99, &held, all), None, "all held");
        // A uid with processes left (or an account) is skipped.
        held.clear();
        assert_eq!(pick_uid(61000, 4, 0, &held, |u| u != 61000), Some(61001));
        assert_eq!(pick_uid(61000, 4, 0, &held, |_| false), None);
        // A huge range is not walked to its end.
        let mut seen = 0u32;
        assert_eq!(
            pick_uid(1, u32::MAX - 2, 0, &held, |_| {
                seen += 1;
                false
            }),
            None
        );
        assert_eq!(seen, 4096);
    }

    #[test]
    fn a_pool_releases_a_uid_when_its_lease_is_dropped() {
        let pool = UidPool::new((61000, 2));
        let a = pool.take(1, |_| true).unwrap();
        let b = pool.take(3, |_| true).unwrap();
        assert_ne!(a.uid, b.uid);
        assert_eq!(pool.held(), 2);
        assert!(pool.take(5, |_| true).is_none());
        let freed = a.uid;
        drop(a);
        assert_eq!(pool.take(5, |_| true).unwrap().uid, freed);
        assert_eq!(pool.describe(), "61000-61001");
        assert!(pool.contains(61001) && !pool.contains(61002) && !pool.contains(60999));
    }

    #[test]
    fn without_run_as_jobs_are_refused_unless_allowed() {
        match decide(None, false) {
            Identity::Refuse(m) => {
                assert!(m.contains("run_as") && m.contains("private key"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decide(None, true), Identity::AgentUser(_)));
        match decide(Some("no-such-user-openclaw"), false) {
            Identity::Refuse(m) => assert!(m.contains("no such user"), "{m}"),
            other => panic!("{other:?}"),
        }
        if lookup("root").is_ok() {
            assert!(matches!(decide(Some("root"), false), Identity::Refuse(_)));
        }
        if current_user().uid == 0 && lookup("nobody").is_ok() {
            assert!(matches!(decide(Some("nobody"), false), Identity::Drop(_)));
        }
    }
}
