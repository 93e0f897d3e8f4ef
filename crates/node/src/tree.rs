//! Every process of a job, tracked so that all of them end with the job.
//!
//! A job's first process (the exec shim, see [`crate::jail`]) joins a
//! cgroup of its own before it becomes the job's command, so every
//! descendant stays in it whatever it does: daemonise, `setsid`, double
//! fork. Three ways to find them, chosen once when the agent starts:
//!
//! * **cgroup v2**: a `job-N` cgroup under `openclaw-NODE` beside the
//!   agent's own; killed with `cgroup.kill` where the kernel has it.
//! * **cgroup v1**: the same in the `pids` (or `freezer`) hierarchy; killed
//!   by sending SIGKILL to every member until none is left.
//! * **scan**: without a writable cgroup hierarchy, every process whose
//!   environment carries this job's `OPENCLAW_JOB_ID` and `OPENCLAW_NODE`.
//!   A process that clears its environment escapes this one; the agent
//!   logs which method it uses at start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How a node finds a job's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// cgroup v2: the directory under which job cgroups are made.
    CgroupV2(PathBuf),
    /// cgroup v1: the directory under which job cgroups are made.
    CgroupV1(PathBuf),
    /// Scan `/proc` for the job's environment marker.
    Scan,
}

impl Method {
    /// A word for logs and `node show`.
    pub fn describe(&self) -> String {
        match self {
            Method::CgroupV2(p) => format!("cgroup v2 ({})", p.display()),
            Method::CgroupV1(p) => format!("cgroup v1 ({})", p.display()),
            Method::Scan => "process scan (no writable cgroup hierarchy)".into(),
        }
    }
}

/// Finds where this agent may make job cgroups, from `/proc/self/mountinfo`
/// and `/proc/self/cgroup`. Creates `openclaw-NODE-PID` there (the agent's
/// pid keeps two agents of one name, as in tests, apart), and removes the
/// empty ones earlier agents of this name left.
pub fn detect(node: &str) -> Method {
    kill_strays_by_scan(node);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let leaf = format!("openclaw-{node}-{}", std::process::id());
    for (mount, fstype, opts) in mounts(&mountinfo) {
        let own_path = if fstype == "cgroup2" {
            own_cgroup(&own, None)
        } else if fstype == "cgroup" && (opts.contains("pids") || opts.contains("freezer")) {
            let ctl = if opts.contains("pids") {
                "pids"
            } else {
                "freezer"
            };
            own_cgroup(&own, Some(ctl))
        } else {
            continue;
        };
        let Some(own_path) = own_path else {
            continue;
        };
        let base = Path::new(&mount)
            .join(own_path.trim_start_matches('/'))
            .join(&leaf);
        if let Some(parent) = base.parent() {
            remove_stale(parent, node);
        }
        if std::fs::create_dir_all(&base).is_ok() && base.join("cgroup.procs").exists() {
            return if fstype == "cgroup2" {
                Method::CgroupV2(base)
            } else {
                Method::CgroupV1(base)
            };
        }
    }
    Method::Scan
}

/// Whether `name` is `PREFIX` and an agent's pid, and that agent is gone
/// (no such process; never this agent). Names of other shapes are not.
pub fn agent_gone(name: &std::ffi::OsStr, prefix: &str) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix(prefix))
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        })
}

/// Removes `openclaw-NODE-PID` cgroups of agents that are gone (only empty
/// cgroups can be removed, so nothing running is touched).
fn remove_stale(parent: &Path, node: &str) {
    let prefix = format!("openclaw-{node}-");
    let Ok(dir) = std::fs::read_dir(parent) else {
        return;
    };
    for e in dir.flatten() {
        if agent_gone(&e.file_name(), &prefix) {
            // The agent that ran these jobs died without ending them; their
            // output has nowhere to go and the gateway has declared them
            // lost, so they are killed rather than left holding GPUs.
            if let Ok(jobs) = std::fs::read_dir(e.path()) {
                for j in jobs.flatten().filter(|j| j.path().is_dir()) {
                    kill_cgroup_members(&j.path());
                    let _ = std::fs::remove_dir(j.path());
                }
            }
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// The agent a process was started by, from its environment (`AGENT_VAR`
/// is `NODE/PID`). Pure.
pub fn agent_of(environ: &[u8]) -> Option<(&str, u32)> {
    let prefix = format!("{AGENT_VAR}=");
    environ.split(|b| *b == 0).find_map(|var| {
        let v = std::str::from_utf8(var.strip_prefix(prefix.as_bytes())?).ok()?;
        let (node, pid) = v.rsplit_once('/')?;
        Some((node, pid.parse().ok()?))
    })
}

/// Kills job processes of `node` whose agent is gone (SIGKILLed, crashed):
/// the gateway declares their jobs lost, so they must not go on holding
/// GPUs and files. Finds them by environment, so it works without cgroups
/// too; processes of a live agent (this one, or another still running)
/// are left alone.
fn kill_strays_by_scan(node: &str) {
    let me = std::process::id();
    for _ in 0..20 {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        let strays: Vec<i32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| !is_zombie(*p))
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/environ")).is_ok_and(|env| {
                    agent_of(&env).is_some_and(|(n, agent)| {
                        n == node && agent != me && !Path::new(&format!("/proc/{agent}")).exists()
                    })
                })
            })
            .collect();
        if strays.is_empty() {
            return;
        }
        tracing::warn!(
            node,
            count = strays.len(),
            "killing job processes a dead agent left behind"
        );
        for p in strays {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs every member of a cgroup, a few rounds (forks in flight).
fn kill_cgroup_members(dir: &Path) {
    for _ in 0..20 {
        let pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|p| !is_zombie(*p))
            .collect();
        if pids.is_empty() {
            return;
        }
        tracing::warn!(cgroup = %dir.display(), count = pids.len(), "killing processes a dead agent left behind");
        for p in pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `(mount point, fs type, super options)` of cgroup mounts, cgroup2 first.
fn mounts(mountinfo: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mount = pre.split(' ').nth(4)?.to_string();
            let mut post = post.split(' ');
            let fstype = post.next()?.to_string();
            let _source = post.next();
            let opts = post.next().unwrap_or("").to_string();
            fstype
                .starts_with("cgroup")
                .then_some((mount, fstype, opts))
        })
        .collect();
    out.sort_by_key(|(_, t, _)| t != "cgroup2");
    out
}

/// This process's cgroup path in the v2 hierarchy (`None`) or in the v1
/// hierarchy with controller `ctl`.
fn own_cgroup(proc_cgroup: &str, ctl: Option<&str>) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let _id = parts.next()?;
        let ctls = parts.next()?;
        let path = parts.next()?;
        let hit = match ctl {
            None => ctls.is_empty(),
            Some(c) => ctls.split(',').any(|x| x == c),
        };
        hit.then(|| path.to_string())
    })
}

/// One job's processes.
#[derive(Debug)]
pub struct JobTree {
    method: Method,
    /// The job's own cgroup directory, if cgroups are used.
    dir: Option<PathBuf>,
    job: u64,
    node: String,
    /// Every process this tree signalled, for the count `job show` reports.
    signalled: BTreeSet<i32>,
}

impl JobTree {
    /// Makes the job's cgroup (if any).
    pub fn create(method: &Method, node: &str, job: u64) -> Result<JobTree, String> {
        let dir = match method {
            Method::CgroupV2(base) | Method::CgroupV1(base) => {
                let dir = base.join(format!("job-{job}"));
                std::fs::create_dir_all(&dir).map_err(|e| {
                    format!("cannot create the job's cgroup {}: {e}", dir.display())
                })?;
                Some(dir)
            }
            Method::Scan => None,
        };
        Ok(JobTree {
            method: method.clone(),
            dir,
            job,
            node: node.to_string(),
            signalled: BTreeSet::new(),
        })
    }

    /// The file the job's first process writes its pid to, to join.
    pub fn join_file(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("cgroup.procs"))
    }

    /// The job's live (not zombie) processes now.
    pub fn pids(&self) -> Vec<i32> {
        let all: Vec<i32> = match &self.dir {
            Some(d) => std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect(),
            None => scan(self.job, &self.node),
        };
        all.into_iter().filter(|p| !is_zombie(*p)).collect()
    }

    /// Sends `sig` to every process of the job; returns how many it reached.
    pub fn signal(&mut self, sig: Signal) -> usize {
        let mut n = 0;
        for p in self.pids() {
            if kill(Pid::from_raw(p), sig).is_ok() {
                self.signalled.insert(p);
                n += 1;
            }
        }
        n
    }

    /// Kills every process of the job and waits (up to a few seconds)
    /// until none is left. Returns whether the tree is empty.
    pub async fn kill_all(&mut self) -> bool {
        for _ in 0..300 {
            if self.pids().is_empty() {
                return true;
            }
            if let (Method::CgroupV2(_), Some(d)) = (&self.method, &self.dir) {
                for p in self.pids() {
                    self.signalled.insert(p);
                }
                // cgroup.kill (Linux 5.14+) kills the whole cgroup at once,
                // forks in flight included.
                if std::fs::write(d.join("cgroup.kill"), b"1").is_err() {
                    self.signal(Signal::SIGKILL);
                }
            } else {
                self.signal(Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.pids().is_empty()
    }

    /// Processes signalled so far.
    pub fn killed(&self) -> u32 {
        u32::try_from(self.signalled.len()).unwrap_or(u32::MAX)
    }
}

impl Drop for JobTree {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            // Empty by now unless a process escaped the kill; then the
            // directory stays, and the next agent start reuses the name.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The real, effective, saved and filesystem uids of a live process, from
/// its `/proc/PID/status`; `None` for a zombie or an unreadable file. Pure.
pub fn status_uids(status: &str) -> Option<[u32; 4]> {
    let mut uids = None;
    for line in status.lines() {
        if let Some(state) = line.strip_prefix("State:")
            && matches!(state.trim_start().chars().next(), Some('Z' | 'X'))
        {
            return None;
        }
        if let Some(rest) = line.strip_prefix("Uid:") {
            let v: Vec<u32> = rest
                .split_whitespace()
                .filter_map(|u| u.parse().ok())
                .collect();
            uids = <[u32; 4]>::try_from(v).ok();
        }
    }
    uids
}

/// Every uid that a live process on this machine holds (as real,
/// effective, saved or filesystem uid) and `keep` accepts: a job uid in
/// this set is still in use, by a job or by a process a job left behind.
pub fn uids_with_processes(keep: impl Fn(u32) -> bool) -> BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| status_uids(&std::fs::read_to_string(format!("/proc/{p}/status")).ok()?))
        .flatten()
        .filter(|u| keep(*u))
        .collect()
}

/// Removes the agent's cgroup directory (if any) when the agent ends; only
/// an empty one can be removed.
#[derive(Debug)]
pub struct AgentCgroup(Option<PathBuf>);

impl Method {
    /// The guard that removes this agent's cgroup directory at the end.
    pub fn guard(&self) -> AgentCgroup {
        match self {
            Method::CgroupV2(base) | Method::CgroupV1(base) => AgentCgroup(Some(base.clone())),
            Method::Scan => AgentCgroup(None),
        }
    }
}

impl Drop for AgentCgroup {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which ends at the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c == 'Z' || c == 'X'),
        Err(_) => true,
    }
}

/// The variable that ties a job's processes to the agent that started them.
pub const AGENT_VAR: &str = "OPENCLAW_AGENT";

/// Processes whose environment marks them as job `job` of `node`, started
/// by this agent.
fn scan(job: u64, node: &str) -> Vec<i32> {
    let want_job = format!("OPENCLAW_JOB_ID={job}");
    let want_node = format!("{AGENT_VAR}={node}/{}", std::process::id());
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let me = std::process::id();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| u32::try_from(*p).ok() != Some(me))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ")).is_ok_and(|env| {
                let mut job_ok = false;
                let mut node_ok = false;
                for var in env.split(|b| *b == 0) {
                    job_ok |= var == want_job.as_bytes();
                    node_ok |= var == want_node.as_bytes();
                }
                job_ok && node_ok
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_agent_from_a_job_environment() {
        let env = b"PATH=/bin\0OPENCLAW_JOB_ID=7\0OPENCLAW_AGENT=worker-1/4242\0HOME=/x\0";
        assert_eq!(agent_of(env), Some(("worker-1", 4242)));
        assert_eq!(agent_of(b"OPENCLAW_AGENT=worker-1\0"), None);
        assert_eq!(agent_of(b"OPENCLAW_AGENT=w/notapid\0"), None);
        assert_eq!(agent_of(b"XOPENCLAW_AGENT=w/1\0"), None);
        assert_eq!(agent_of(b""), None);
    }

    #[test]
    fn reads_the_uids_of_live_processes() {
        let status = "Name:\tsleep\nState:\tS (sleeping)\nUid:\t61000\t61001\t61002\t61003\nGid:\t1\t1\t1\t1\n";
        assert_eq!(status_uids(status), Some([61000, 61001, 61002, 61003]));
        let zombie = "Name:\tsh\nState:\tZ (zombie)\nUid:\t61000\t61000\t61000\t61000\n";
        assert_eq!(status_uids(zombie), None);
        assert_eq!(status_uids("Name:\tx\nUid:\t1\t2\n"), None);
        assert_eq!(status_uids(""), None);
        // This process is alive, with this uid.
        let me = nix::unistd::getuid().as_raw();
        assert!(uids_with_processes(|u| u == me).contains(&me));
    }

    #[test]
    fn finds_cgroup_mounts_and_own_paths() {
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
                         31 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                         32 25 0:28 / /proc rw - proc proc rw\n";
        let m = mounts(mountinfo);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].1, "cgroup2", "cgroup2 is preferred");
        assert_eq!(m[1].0, "/sys/fs/cgroup/pids");
        let own = "8:pids:/lab\n4:memory:/x\n0::/system.slice/openclaw.service\n";
        assert_eq!(
            own_cgroup(own, None).as_deref(),
            Some("/system.slice/openclaw.service")
        );
        assert_eq!(own_cgroup(own, Some("pids")).as_deref(), Some("/lab"));
        assert_eq!(own_cgroup(own, Some("freezer")), None);
    }
}
