//! A job's own temporary directories: `/tmp`, `/var/tmp`, `/dev/shm` and
//! `/run/lock` made fresh for every job, with System V IPC and POSIX message queues
//! of its own, all gone when its last process exits.
//!
//! Why: job uids are reused (`job_uids` hands a uid back once a job's
//! processes are gone), and even without `job_uids` every job runs as
//! the same `run_as` user. A file a job leaves in a shared temporary
//! directory, or a shared memory segment, outlives the job: the next job
//! with that uid could read it (a secret written with `umask 077` to
//! `/dev/shm` was read by a later job). Tools that name caches in `/tmp`
//! after the user (`/tmp/torchinductor_$USER`) would also share, and could
//! load, code an earlier job left there.
//!
//! How: the exec shim ([`crate::jail::shim_main`]), still root, calls
//! [`enter`] before it drops privileges:
//!
//! 1. `unshare(CLONE_NEWNS | CLONE_NEWIPC)`: a mount namespace and an IPC
//!    namespace of its own, inherited by every process of the job (so the
//!    processes of one job, NCCL's and torchrun's included, share them);
//! 2. every mount private (`MS_REC | MS_PRIVATE`), so nothing mounted
//!    here reaches the node, and nothing the node mounts later reaches in;
//! 3. a tmpfs (mode 1777, `nosuid`, `nodev`, `size` from `job_tmp_size`)
//!    on each temporary directory; its pages are charged to the job's
//!    cgroup, and the kernel frees them with the namespace;
//! 4. directories the job must still see at their paths although they
//!    lie below a temporary directory (the node's job directories, a
//!    `--cwd`) bound back at the same path, their parents made with the
//!    node's owners and modes;
//! 5. a fresh `mqueue` on `/dev/mqueue` where there is one, so the
//!    node's queues are not reachable by path either.
//!
//! Everything else (home directories, data, devices, the job's own
//! directory) is the node's, as before. An agent that cannot do this
//! (not root, or a container that refuses `unshare`) says so at start
//! ([`probe`]) and runs jobs with the node's temporary directories.

use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

/// The directories every job gets fresh: the temporary directories, and
/// `/run/lock`, which Debian and Ubuntu leave writable by everyone too
/// (`/var/lock` links to it). Those a node lacks are skipped.
pub const TEMP_DIRS: [&str; 4] = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"];

/// `job_tmp_size` when node.toml does not set it: the kernel's own
/// default for a tmpfs, half of the node's memory, for each directory.
pub const DEFAULT_SIZE: &str = "50%";

/// The environment variable that makes the shim a probe: it carries a
/// [`PrivateTmp`] as JSON, and the shim only calls [`enter`] and exits.
pub const PROBE_VAR: &str = "OPENCLAW_SHIM_PROBE";

/// What the shim sets up for a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateTmp {
    /// The tmpfs `size=` value: bytes, or a percentage of memory (`50%`).
    pub size: String,
    /// Directories that stay visible at their paths even when they lie
    /// below a temporary directory: the agent's job root, a `--cwd`. One
    /// that *is* a temporary directory is the job's own, fresh one.
    pub keep: Vec<PathBuf>,
}

/// The tmpfs `size=` value for `job_tmp_size = text`: `N%` (1 to 100) of
/// the node's memory, or a size such as `8GiB` (at least 1 MiB). Pure.
pub fn tmpfs_size(text: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!(
            "job_tmp_size = {text:?}: {why}; write a share of memory like \"50%\" or a size like \"8GiB\" \
             (the most each job's /tmp, /var/tmp and /dev/shm may hold)"
        )
    };
    let t = text.trim();
    if let Some(pct) = t.strip_suffix('%') {
        return match pct.trim().parse::<u8>() {
            Ok(n @ 1..=100) => Ok(format!("{n}%")),
            _ => Err(bad("a percentage must be 1 to 100")),
        };
    }
    let bytes = proto::size::parse(t).map_err(|e| bad(&e))?;
    if bytes < 1 << 20 {
        return Err(bad(
            "less than 1MiB is too small for a job's temporary files",
        ));
    }
    Ok(bytes.to_string())
}

/// The kept directories that must be bound back: those strictly below
/// one of `temp`, less those below another such one (bound with it). All
/// paths canonical. Pure.
pub fn binds(keep: &[PathBuf], temp: &[PathBuf]) -> Vec<PathBuf> {
    let below = |p: &PathBuf| temp.iter().any(|t| p != t && p.starts_with(t));
    let mut out: Vec<PathBuf> = keep.iter().filter(|p| below(p)).cloned().collect();
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    out
}

/// The directories between `temp` (exclusive) and `path` (inclusive),
/// outermost first. Pure.
fn between(temp: &Path, path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = path
        .ancestors()
        .take_while(|a| *a != temp && a.starts_with(temp))
        .map(Path::to_path_buf)
        .collect();
    v.reverse();
    v
}

/// A directory to re-create in a fresh tmpfs as the node has it.
pub struct Parent {
    /// Where.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
}

/// What [`enter`] does, worked out from the node's file system before
/// any namespace or mount is touched: the exec shim and the spawn helper
/// ([`crate::spawn`]) carry it out step by step.
pub struct Plan {
    /// The temporary directories that get a fresh tmpfs (canonical).
    pub temp: Vec<PathBuf>,
    /// The tmpfs mount options.
    pub options: String,
    /// Directories between a temporary directory and a bound one, to
    /// re-create in the tmpfs, outermost first.
    pub parents: Vec<Parent>,
    /// Kept directories below a temporary directory, bound back.
    pub binds: Vec<PathBuf>,
    /// `/dev/mqueue` is a directory here: the job gets its own.
    pub mqueue: bool,
}

/// The node's `/dev/mqueue`.
pub const MQUEUE: &str = "/dev/mqueue";

/// Works out what [`enter`] does for `spec` (see [`Plan`]).
pub fn plan(spec: &PrivateTmp) -> Result<Plan, String> {
    // Canonical, once each: a /dev/shm that links to /run/shm gets its
    // tmpfs where it points.
    let mut temp: Vec<PathBuf> = Vec::new();
    for d in TEMP_DIRS {
        if let Ok(p) = std::fs::canonicalize(d)
            && p.is_dir()
            && !temp.contains(&p)
        {
            temp.push(p);
        }
    }
    let mut keep = Vec::new();
    for p in &spec.keep {
        keep.push(
            std::fs::canonicalize(p)
                .map_err(|e| format!("cannot find {} to keep it visible: {e}", p.display()))?,
        );
    }
    let binds = binds(&keep, &temp);
    // The parents of each bound directory, as the node has them.
    let mut parents = Vec::new();
    for b in &binds {
        let Some(t) = temp.iter().find(|t| b.starts_with(t)) else {
            continue;
        };
        for dir in between(t, b) {
            if dir == *b {
                continue;
            }
            let m = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            parents.push(Parent {
                path: dir,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            });
        }
    }
    Ok(Plan {
        temp,
        options: format!("mode=1777,size={}", spec.size),
        parents,
        binds,
        mqueue: std::fs::symlink_metadata(MQUEUE).is_ok_and(|m| m.is_dir()),
    })
}

/// Gives this process (the shim, as root, single-threaded) a private
/// mount and IPC namespace with fresh temporary directories, as the
/// module describes. Errors name the step and the reason.
pub fn enter(spec: &PrivateTmp) -> Result<(), String> {
    let Plan {
        temp,
        options,
        parents,
        binds,
        mqueue,
    } = plan(spec)?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC).map_err(|e| {
        format!("cannot give the job a mount and IPC namespace of its own (unshare): {e}")
    })?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("cannot make the job's mounts private: {e}"))?;
    // Opened in the new namespace (a bind's source must be in it), before
    // the temporary directories cover them.
    let mut sources: Vec<(PathBuf, OwnedFd)> = Vec::new();
    for b in &binds {
        let fd = nix::fcntl::open(
            b.as_path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open {}: {e}", b.display()))?;
        sources.push((b.clone(), fd));
    }
    for t in &temp {
        nix::mount::mount(
            Some("tmpfs"),
            t.as_path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| format!("cannot mount a private tmpfs on {}: {e}", t.display()))?;
    }
    for p in &parents {
        if std::fs::symlink_metadata(&p.path).is_err() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&p.path)
                .map_err(|e| format!("cannot make {}: {e}", p.path.display()))?;
            std::os::unix::fs::chown(&p.path, Some(p.uid), Some(p.gid))
                .and_then(|()| {
                    std::fs::set_permissions(&p.path, std::fs::Permissions::from_mode(p.mode))
                })
                .map_err(|e| format!("cannot set up {}: {e}", p.path.display()))?;
        }
    }
    for (path, fd) in &sources {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| format!("cannot make {}: {e}", path.display()))?;
        let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
        nix::mount::mount(
            Some(source.as_str()),
            path.as_path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("cannot keep {} visible: {e}", path.display()))?;
    }
    if mqueue {
        nix::mount::mount(
            Some("mqueue"),
            MQUEUE,
            Some("mqueue"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| format!("cannot mount the job's own /dev/mqueue: {e}"))?;
    }
    Ok(())
}

/// Whether this agent can give jobs private temporary directories:
/// starts the shim as a probe (a process of its own; the agent's own
/// mounts are never touched), which calls [`enter`] with `spec` and
/// exits. The error is the shim's reason.
pub async fn probe(spec: &PrivateTmp) -> Result<(), String> {
    let out = crate::jail::shim_command(PROBE_VAR, spec)?
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot start the exec shim: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(if said.is_empty() {
        format!("the exec shim ended with {}", out.status)
    } else {
        said
    })
}

/// The shim's probe mode ([`PROBE_VAR`]): never returns.
pub fn probe_main(json: &str) -> ! {
    let result = serde_json::from_str::<PrivateTmp>(json)
        .map_err(|e| format!("bad probe: {e}"))
        .and_then(|spec| enter(&spec));
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(125)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_a_share_of_memory_or_bytes() {
        assert_eq!(tmpfs_size("50%").unwrap(), "50%");
        assert_eq!(tmpfs_size(" 100 % ").unwrap(), "100%");
        assert_eq!(tmpfs_size("8GiB").unwrap(), (8u64 << 30).to_string());
        assert_eq!(tmpfs_size("1MiB").unwrap(), (1u64 << 20).to_string());
        for bad in ["0%", "101%", "-5%", "x%", "", "512KiB", "10TB", "lots"] {
            let e = tmpfs_size(bad).unwrap_err();
            assert!(
                e.contains("job_tmp_size") && e.contains("50%"),
                "{bad}: {e}"
            );
        }
        assert_eq!(tmpfs_size(DEFAULT_SIZE).unwrap(), DEFAULT_SIZE);
    }

    #[test]
    fn only_directories_below_a_temp_dir_are_bound_back() {
        let p = |s: &str| PathBuf::from(s);
        let temp = [p("/tmp"), p("/var/tmp"), p("/dev/shm")];
        let keep = [
            p("/var/lib/openclaw/jobs-n-1"),
            p("/tmp/lab/root"),
            p("/tmp/lab/root/job-3"),
            p("/tmp"),
            p("/tmpx/data"),
            p("/dev/shm/x"),
            p("/tmp/lab/root"),
        ];
        assert_eq!(
            binds(&keep, &temp),
            vec![p("/dev/shm/x"), p("/tmp/lab/root")],
            "not /tmp itself (the job's own), not /tmpx, nothing twice, nothing inside another"
        );
        assert!(binds(&[], &temp).is_empty());
    }

    #[test]
    fn parents_are_listed_outermost_first() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            between(Path::new("/tmp"), Path::new("/tmp/a/b/c")),
            vec![p("/tmp/a"), p("/tmp/a/b"), p("/tmp/a/b/c")]
        );
        assert!(between(Path::new("/tmp"), Path::new("/tmp")).is_empty());
    }
}
