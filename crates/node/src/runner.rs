//! Runs one job on this node: the node's own policy, whole-GPU assignment,
//! a process group of its own, output with byte offsets, timeout and cancel.
//!
//! A job runs independently of the connection. Its output goes into a spool
//! ([`crate::spool`]); [`attach`] streams the spool to the gateway over the
//! current connection, from the offsets the gateway says it has, and
//! releases what the gateway acknowledges. When the connection drops the
//! job keeps running; after a reconnect (or a gateway restart) it is
//! attached again and output resumes exactly where the gateway's copy ends.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh::home::NodePolicy;
use nix::sys::signal::Signal;
use proto::{JobCtl, JobFrame, JobPlan, Open, OutStream};
use tokio::sync::{Notify, watch};

pub use crate::plan::{check_policy, cwd_allowed, job_env, login_name};
use crate::spool::OutBuf;
use tokio::time::Instant;

/// Whole GPUs, each held by at most one job.
#[derive(Debug)]
pub struct GpuPool {
    total: u32,
    /// GPU index to the job holding it.
    busy: Mutex<BTreeMap<u32, u64>>,
    /// GPUs no new job may get (unhealthy, or MIG enabled), from the
    /// latest health judgement.
    unusable: Mutex<std::collections::BTreeSet<u32>>,
}

/// GPUs held by one job; released on drop.
#[derive(Debug)]
pub struct GpuLease {
    pool: Arc<GpuPool>,
    /// The indices.
    pub ids: Vec<u32>,
}

impl Drop for GpuLease {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.pool.busy.lock() {
            for id in &self.ids {
                busy.remove(id);
            }
        }
    }
}

impl GpuPool {
    /// A pool of `total` GPUs.
    pub fn new(total: u32) -> Arc<GpuPool> {
        Arc::new(GpuPool {
            total,
            busy: Mutex::new(BTreeMap::new()),
            unusable: Mutex::new(Default::default()),
        })
    }

    /// GPUs in the pool.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Sets each GPU's health (by index): unhealthy and MIG-enabled GPUs
    /// go to no new job.
    pub fn set_health(&self, health: &[proto::GpuHealth]) {
        if let Ok(mut u) = self.unusable.lock() {
            *u = (0u32..)
                .zip(health)
                .filter(|(_, h)| !h.usable())
                .map(|(i, _)| i)
                .collect();
        }
    }

    /// Takes the `n` lowest free usable GPUs for `job`, or none if fewer
    /// are free.
    pub fn take(self: &Arc<Self>, n: u32, job: u64) -> Option<GpuLease> {
        let unusable = self.unusable.lock().ok()?.clone();
        let mut busy = self.busy.lock().ok()?;
        let free: Vec<u32> = (0..self.total)
            .filter(|i| !busy.contains_key(i) && !unusable.contains(i))
            .take(n as usize)
            .collect();
        if free.len() < n as usize {
            return None;
        }
        busy.extend(free.iter().map(|i| (*i, job)));
        Some(GpuLease {
            pool: self.clone(),
            ids: free,
        })
    }

    /// Which job holds each busy GPU.
    pub fn holders(&self) -> HashMap<u32, u64> {
        self.busy
            .lock()
            .map(|b| b.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }
}

/// What every job on this node shares. It outlives connections: jobs keep
/// running while the gateway is away and are re-attached on reconnect.
pub struct RunContext {
    /// This node's name.
    pub node: String,
    /// This node's policy.
    pub policy: NodePolicy,
    /// Its GPUs.
    pub gpus: Arc<GpuPool>,
    /// Jobs running now.
    pub running: AtomicU32,
    /// Jobs not yet forgotten (running, or ended but not yet recorded by
    /// the gateway).
    pub jobs: Mutex<HashMap<u64, Arc<Job>>>,
    /// Where output spills to disk.
    pub spool_dir: PathBuf,
    /// Where GPU telemetry comes from.
    pub gpu_source: Mutex<Box<dyn crate::telemetry::GpuSource>>,
    /// Each GPU's health, judged on every sample.
    pub gpu_health: Mutex<crate::gpuhealth::Tracker>,
    /// Good samples in a row before an unhealthy GPU is offered again.
    pub gpu_recover_after: u32,
    /// The GPUs are real (NVML), not simulated: jobs get them by UUID.
    pub real_gpus: bool,
    /// How long a job whose GPU failed may run on before it is failed.
    pub gpu_fail_grace: Duration,
    /// Each GPU's UUID and model from the latest sample, by index.
    pub gpu_ids: Mutex<Vec<(String, String)>>,
    /// Who jobs run as (decided at start).
    pub identity: crate::jail::Identity,
    /// How a job's processes are found and killed.
    pub tree: crate::tree::Method,
    /// Where every job gets a private directory (its working directory
    /// unless it asked for a `--cwd`).
    pub work_root: Arc<crate::jobdir::WorkRoot>,
    /// `PATH` for jobs: the agent's own, set by whoever started it.
    pub job_path: String,
    /// `job_uids`: a uid of its own for every running job.
    pub job_uids: Option<Arc<crate::jail::UidPool>>,
    /// Fresh `/tmp`, `/var/tmp`, `/dev/shm` and IPC for every job that
    /// drops privileges (the probe at start succeeded); `keep` holds the
    /// work root, and a job's `--cwd` is added.
    pub private_tmp: Option<crate::private_tmp::PrivateTmp>,
    /// Start jobs through the exec shim (two execs) instead of the spawn
    /// helper's one fork and one exec (`OPENCLAW_EXEC_SHIM=1`).
    pub exec_shim: bool,
}

impl RunContext {
    /// The identity of GPUs `ids`, from the latest sample.
    pub fn held_gpus(&self, ids: &[u32]) -> Vec<proto::HeldGpu> {
        let known = self.gpu_ids.lock().map(|g| g.clone()).unwrap_or_default();
        ids.iter()
            .map(|i| {
                let (uuid, name) = known.get(*i as usize).cloned().unwrap_or_default();
                proto::HeldGpu {
                    index: *i,
                    uuid,
                    name,
                }
            })
            .collect()
    }

    /// After a health judgement: every running job that holds an
    /// unhealthy GPU is told ([`Job::gpu_failed`]).
    pub fn check_jobs_gpus(&self, health: &[proto::GpuHealth]) {
        let ids = self.gpu_ids.lock().map(|g| g.clone()).unwrap_or_default();
        for job in self.live_jobs() {
            for i in job.gpus() {
                if let Some(proto::GpuHealth::Unhealthy(why)) = health.get(i as usize) {
                    let uuid = ids
                        .get(i as usize)
                        .map(|g| g.0.as_str())
                        .filter(|u| !u.is_empty())
                        .unwrap_or("–");
                    job.gpu_failed(format!("GPU {i} ({uuid}) {why}"));
                    break;
                }
            }
        }
    }

    /// Jobs to re-attach after a reconnect.
    pub fn live_jobs(&self) -> Vec<Arc<Job>> {
        self.jobs
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn forget(&self, id: u64) {
        if let Ok(mut m) = self.jobs.lock() {
            m.remove(&id);
        }
    }
}

/// How a job ended, as reported to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Exit {
        code: i32,
        timed_out: bool,
        cancelled: bool,
        killed: u32,
    },
    Failed(String),
    /// The node's policy refuses the job.
    Refused(String),
}

struct JobInner {
    out: [OutBuf; 2],
    started: Option<(u32, Vec<u32>)>,
    /// What the job's GPUs were when it started (index, UUID, model).
    held: Vec<proto::HeldGpu>,
    /// Why one of its GPUs failed, once one did: told to the gateway, and
    /// the job fails with it after the grace.
    gpu_fault: Option<String>,
    ending: Option<Ending>,
    /// Job streams attached to a gateway now.
    attached: u32,
    /// When the gateway last acknowledged output (or a stream attached).
    last_ack: Instant,
    /// The job's stdin pipe, from its start until a job stream hands it to
    /// [`input::feed`] (jobs run with `RunJobInput` only).
    stdin: Option<tokio::process::ChildStdin>,
    /// Its artifacts, collected, until the gateway recorded them.
    artifacts: Option<Vec<crate::artifacts::Item>>,
    /// The job's terminal (`RunJobTty`), from its start until a job
    /// stream hands it to [`input::feed_tty`].
    pty: Option<Arc<crate::pty::Master>>,
}

/// While a gateway is attached and acknowledging, a job whose in-memory
/// spool is full waits for acks (as a pipe to ssh would block it) instead
/// of spilling to disk: a spill costs a write and a read of every byte on
/// the node. Only after this long without an ack does it spill.
const SPILL_AFTER_STALL: Duration = Duration::from_secs(2);

/// One job on this node: its output spool and its fate.
pub struct Job {
    /// The plan the gateway sent.
    pub plan: JobPlan,
    /// Its requester streams its standard input (`RunJobInput`): the
    /// process gets a pipe, not /dev/null.
    input: bool,
    /// Files to keep when its command has exited (`RunJobWith`).
    keep: proto::ArtifactSpec,
    /// It runs on a terminal of its own (`RunJobTty`).
    tty: Option<proto::tty::Tty>,
    inner: Mutex<JobInner>,
    /// Signalled on output, start, end, and freed room.
    changed: Notify,
    /// `Some(grace)` once a cancel arrived.
    cancel: watch::Sender<Option<u64>>,
    /// `Some(why)` once one of its GPUs failed.
    fault: watch::Sender<Option<String>>,
}

impl Job {
    fn new(
        d: proto::JobDispatch,
        tty: Option<proto::tty::Tty>,
        spool: &std::path::Path,
    ) -> Arc<Job> {
        let (plan, input, keep) = (d.plan, d.input, d.artifacts);
        let id = plan.job_id;
        Arc::new(Job {
            plan,
            input,
            keep,
            tty,
            inner: Mutex::new(JobInner {
                out: [
                    OutBuf::new(spool.join(format!("{id}.stdout"))),
                    OutBuf::new(spool.join(format!("{id}.stderr"))),
                ],
                started: None,
                held: Vec::new(),
                gpu_fault: None,
                ending: None,
                attached: 0,
                last_ack: Instant::now(),
                stdin: None,
                artifacts: None,
                pty: None,
            }),
            changed: Notify::new(),
            cancel: watch::channel(None).0,
            fault: watch::channel(None).0,
        })
    }

    /// The GPU indices it holds, once started.
    pub fn gpus(&self) -> Vec<u32> {
        self.with(|j| j.started.as_ref().map(|s| s.1.clone()).unwrap_or_default())
    }

    /// One of its GPUs failed: the gateway is told, and the job fails
    /// with `why` after the node's grace unless it ends first. Only the
    /// first fault counts.
    pub fn gpu_failed(&self, why: String) {
        let first = self.with(|j| {
            if j.gpu_fault.is_some() || j.ending.is_some() {
                return false;
            }
            j.gpu_fault = Some(why.clone());
            true
        });
        if first {
            tracing::warn!(job = self.plan.job_id, "{why}");
            self.fault.send_replace(Some(why));
            self.changed.notify_waiters();
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut JobInner) -> T) -> T {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    fn end(&self, e: Ending) {
        self.with(|j| {
            if j.ending.is_none() {
                j.ending = Some(e);
            }
        });
        self.changed.notify_waiters();
    }

    /// Appends output, waiting while the spool is full. With a gateway
    /// attached and acknowledging, it waits rather than spill to disk
    /// (see [`SPILL_AFTER_STALL`]).
    async fn push(&self, stream: OutStream, data: bytes::Bytes) -> std::io::Result<()> {
        let i = idx(stream);
        let len = data.len() as u64;
        loop {
            let notified = self.changed.notified();
            let wait = self.with(|j| {
                let draining = j.attached > 0 && j.last_ack.elapsed() < SPILL_AFTER_STALL;
                if j.out[i].fits_in_memory(len) || (!draining && j.out[i].has_room(len)) {
                    j.out[i].append(data.clone()).map(|()| None)
                } else if draining {
                    Ok(Some(j.last_ack + SPILL_AFTER_STALL))
                } else {
                    Ok(Some(Instant::now() + SPILL_AFTER_STALL))
                }
            })?;
            let Some(until) = wait else {
                self.changed.notify_waiters();
                return Ok(());
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// A job stream attached (`true`) or ended (`false`).
    fn set_attached(&self, on: bool) {
        self.with(|j| {
            if on {
                j.attached += 1;
                j.last_ack = Instant::now();
            } else {
                j.attached = j.attached.saturating_sub(1);
            }
        });
        self.changed.notify_waiters();
    }
}

fn idx(s: OutStream) -> usize {
    usize::from(s == OutStream::Stderr)
}

/// Starts a job the gateway sent, unless it is already known (a resent
/// dispatch): its stdin may come from the gateway (see [`input`]), its
/// artifacts are collected when its command exits, and with `tty` it runs
/// on a terminal of its own ([`crate::pty`]), whose input comes from the
/// gateway. Returns the job to attach.
pub fn start(
    ctx: &Arc<RunContext>,
    d: proto::JobDispatch,
    tty: Option<proto::tty::Tty>,
) -> Arc<Job> {
    let id = d.plan.job_id;
    let (job, fresh) = {
        let mut map = match ctx.jobs.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match map.get(&id) {
            Some(j) => (j.clone(), false),
            None => {
                let j = Job::new(d, tty, &ctx.spool_dir);
                map.insert(id, j.clone());
                (j, true)
            }
        }
    };
    if fresh {
        tokio::spawn(execute(ctx.clone(), job.clone()));
    }
    job
}

/// How long a job waits for a free uid of `job_uids` (one held by
/// processes that are still being killed) before it fails.
const UID_WAIT: Duration = Duration::from_secs(5);

/// A uid of `pool` for job `job` that no running job holds, no process
/// still holds and no account names; waits up to [`UID_WAIT`] for one.
async fn take_uid(
    pool: &Arc<crate::jail::UidPool>,
    job: u64,
    node: &str,
    max_jobs: u32,
) -> Result<crate::jail::UidLease, String> {
    let deadline = Instant::now() + UID_WAIT;
    loop {
        let p = pool.clone();
        let got = tokio::task::spawn_blocking(move || {
            let busy = crate::tree::uids_with_processes(|u| p.contains(u));
            let mut named = Vec::new();
            let lease = p.take(job, |uid| {
                if busy.contains(&uid) {
                    return false;
                }
                let account = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten();
                if let Some(a) = &account {
                    named.push((uid, a.name.clone()));
                }
                account.is_none()
            });
            (lease, busy.len(), named)
        })
        .await;
        let (lease, busy, named) = match got {
            Ok(r) => r,
            Err(e) => return Err(format!("cannot pick a uid for the job: {e}")),
        };
        for (uid, name) in &named {
            tracing::warn!(
                job,
                uid,
                "job_uids includes uid {uid}, which belongs to the account {name}; skipping it"
            );
        }
        if let Some(l) = lease {
            return Ok(l);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "node {node} has no free uid in job_uids = \"{}\" for this job: {} are held by running \
                 jobs and {busy} by processes that are still alive ([policy] max_jobs = {max_jobs}); \
                 find and kill processes left running as those uids, or widen job_uids in node.toml",
                pool.describe(),
                pool.held(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the job's process and fills its spool.
async fn execute(ctx: Arc<RunContext>, job: Arc<Job>) {
    let plan = &job.plan;
    let fail = |reason: String| {
        tracing::info!(job = plan.job_id, "job not started: {reason}");
        job.end(Ending::Failed(reason));
    };
    let refuse = |reason: String| {
        tracing::info!(job = plan.job_id, "job refused by policy: {reason}");
        job.end(Ending::Refused(reason));
    };
    let mut user = match &ctx.identity {
        crate::jail::Identity::Refuse(why) => {
            return refuse(format!("node {} refuses jobs: {why}", ctx.node));
        }
        crate::jail::Identity::Drop(u) | crate::jail::Identity::AgentUser(u) => u.clone(),
    };
    let dropping = matches!(ctx.identity, crate::jail::Identity::Drop(_));
    let mut picked = false;
    if let Some(want) = &plan.run_as {
        match crate::jail::pick_user(&ctx.policy.allowed_run_as, want, dropping) {
            Ok(u) => {
                user = u;
                picked = true;
            }
            Err(why) => return refuse(format!("node {}: {why}", ctx.node)),
        }
    }
    // A session with no command runs the job user's login shell, which
    // the node's policy judges as that command.
    let login_shell =
        (job.tty.is_some() && plan.argv.is_empty()).then(|| crate::pty::login_shell(user.uid));
    let judged;
    let checked = match &login_shell {
        Some(sh) => {
            judged = JobPlan {
                argv: vec![sh.clone()],
                ..plan.clone()
            };
            &judged
        }
        None => plan,
    };
    if let Err(reason) = check_policy(&ctx.policy, &ctx.node, checked) {
        return refuse(reason);
    }
    let running = ctx.running.fetch_add(1, Ordering::SeqCst);
    let _running = RunningGuard(&ctx.running);
    if running >= ctx.policy.max_jobs {
        return fail(format!(
            "node {} is already running its maximum of {} jobs",
            ctx.node, ctx.policy.max_jobs
        ));
    }
    // A uid of its own, held until every process of the job is gone (the
    // lease is dropped only after the tree is killed, below); its home is
    // its private directory.
    let mut uid_lease = None;
    if let (true, false, Some(pool)) = (dropping, picked, &ctx.job_uids) {
        match take_uid(pool, plan.job_id, &ctx.node, ctx.policy.max_jobs).await {
            Ok(lease) => {
                let home = ctx.work_root.job_path(plan.job_id);
                user = user.with_uid(lease.uid, &home.to_string_lossy());
                uid_lease = Some(lease);
            }
            Err(e) => return fail(e),
        }
    }
    // Every job gets a private directory; it works there unless it asked
    // for a --cwd, which is resolved (symlinks and `..`) and checked
    // against allowed_cwds.
    let workdir = match ctx.work_root.make(plan.job_id, user.uid, user.gid) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let cwd = match &plan.cwd {
        Some(c) => {
            let canonical = match std::fs::canonicalize(c) {
                Ok(p) if p.is_dir() => p,
                _ => {
                    return fail(format!(
                        "working directory {c} does not exist on node {}",
                        ctx.node
                    ));
                }
            };
            if !cwd_allowed(&ctx.policy.allowed_cwds, &canonical) {
                return refuse(format!(
                    "refused by policy: node {}'s policy does not allow the working directory {c} \
                     (resolved to {}); allowed_cwds in node.toml lists {:?}",
                    ctx.node,
                    canonical.display(),
                    ctx.policy.allowed_cwds
                ));
            }
            crate::jail::Cwd::Path(canonical.to_string_lossy().into_owned())
        }
        None => crate::jail::Cwd::Private(workdir.entry().clone()),
    };
    let Some(lease) = ctx.gpus.take(plan.gpus, plan.job_id) else {
        return fail(format!(
            "node {} has fewer than {} free GPUs (of {})",
            ctx.node,
            plan.gpus,
            ctx.gpus.total()
        ));
    };
    let mut tree = match crate::tree::JobTree::create(&ctx.tree, &ctx.node, plan.job_id) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    // Fresh temporary directories for a job that drops privileges; the
    // work root and its --cwd stay visible where they are.
    let private_tmp = ctx.private_tmp.as_ref().filter(|_| dropping).map(|t| {
        let mut t = t.clone();
        if let crate::jail::Cwd::Path(dir) = &cwd {
            t.keep.push(PathBuf::from(dir));
        }
        t
    });
    let login = login_name(&user, uid_lease.is_some());
    let own_uid = dropping && uid_lease.is_some();
    let collect = crate::artifacts::spec_for(&job.keep, &cwd, dropping.then_some(&user), own_uid);
    let mut env = job_env(
        plan,
        &ctx.node,
        &crate::plan::visible_devices(&ctx.held_gpus(&lease.ids), ctx.real_gpus),
        &user,
        &login,
        &ctx.job_path,
    );
    if let Some(t) = &job.tty {
        env.retain(|(k, _)| k != "TERM");
        env.push(("TERM".into(), t.term.clone()));
    }
    let spec = crate::jail::ShimSpec {
        argv: checked.argv.clone(),
        cwd,
        env,
        user: dropping.then(|| user.clone()),
        cgroup_procs: tree.join_file(),
        private_tmp,
        own_uid: dropping && uid_lease.is_some(),
        tty: job.tty.is_some(),
        login: login_shell.is_some(),
    };
    // A cancel may arrive before the process exists: then it never starts.
    let mut cancel_rx = job.cancel.subscribe();
    if cancel_rx.borrow_and_update().is_some() {
        tracing::info!(job = plan.job_id, "cancelled before it started");
        job.end(Ending::Exit {
            code: 128 + 15,
            timed_out: false,
            cancelled: true,
            killed: 0,
        });
        return;
    }
    let (mut child, master) = match launch::launch(&spec, &job, ctx.exec_shim, &ctx.node) {
        Ok(launch::Launch::Running(c, m)) => (c, m),
        Ok(launch::Launch::ExecFailed(code, line)) => {
            // As the shim would: the shell's line on its stderr, its code.
            job.with(|j| j.started = Some((0, lease.ids.clone())));
            job.changed.notify_waiters();
            let _ = job
                .push(OutStream::Stderr, format!("{line}\n").into())
                .await;
            return job.end(Ending::Exit {
                code,
                timed_out: false,
                cancelled: false,
                killed: 0,
            });
        }
        Err(e) => return fail(e),
    };
    let pid = child.id().unwrap_or(0);
    let stdin = child.stdin.take();
    let mut pumps = output::Pumps::default();
    let held = ctx.held_gpus(&lease.ids);
    if let Some(m) = &master {
        pumps.tty(m, &job);
    }
    job.with(|j| {
        j.stdin = stdin;
        j.pty = master;
        j.started = Some((pid, lease.ids.clone()));
        j.held = held;
    });
    job.changed.notify_waiters();
    if let Some(out) = child.stdout.take() {
        grow_pipe(&out);
        pumps.pipe(out, OutStream::Stdout, &job);
    }
    if let Some(err) = child.stderr.take() {
        grow_pipe(&err);
        pumps.pipe(err, OutStream::Stderr, &job);
    }
    // A cancel that came while the process was being spawned still counts.
    if cancel_rx.borrow().is_some() {
        cancel_rx.mark_changed();
    }
    let far = Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    let deadline = plan
        .timeout_secs
        .map(|t| Instant::now() + Duration::from_secs(t));
    let mut timed_out = false;
    let mut cancelled = false;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    // A GPU of the job failed: when the grace ends, and why.
    let mut fault_rx = job.fault.subscribe();
    let mut fail_at: Option<(Instant, String)> = None;
    let mut gpu_failed: Option<String> = None;
    let terminate = |tree: &mut crate::tree::JobTree| {
        kill_group(pid, Signal::SIGTERM);
        tree.signal(Signal::SIGTERM);
    };
    let status = loop {
        tokio::select! {
            st = child.wait() => break st,
            () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && !timed_out && !cancelled => {
                timed_out = true;
                terminate(&mut tree);
                kill_at = Some(Instant::now() + Duration::from_secs(plan.kill_grace_secs));
            }
            changed = cancel_rx.changed(), if !cancelled => {
                if changed.is_err() {
                    continue;
                }
                let grace = (*cancel_rx.borrow()).unwrap_or(0);
                cancelled = true;
                terminate(&mut tree);
                kill_at = Some(Instant::now() + Duration::from_secs(grace));
            }
            changed = fault_rx.changed(), if fail_at.is_none() => {
                if changed.is_err() {
                    continue;
                }
                if let Some(why) = fault_rx.borrow().clone() {
                    fail_at = Some((Instant::now() + ctx.gpu_fail_grace, why));
                }
            }
            () = tokio::time::sleep_until(fail_at.as_ref().map_or(far, |f| f.0)), if fail_at.is_some() && gpu_failed.is_none() && !cancelled && !timed_out => {
                let why = fail_at.as_ref().map(|f| f.1.clone()).unwrap_or_default();
                tracing::warn!(job = plan.job_id, "stopping the job: {why}");
                gpu_failed = Some(why);
                terminate(&mut tree);
                kill_at = Some(Instant::now() + Duration::from_secs(plan.kill_grace_secs));
            }
            () = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() && !killed => {
                killed = true;
                tree.kill_all().await;
                kill_group(pid, Signal::SIGKILL);
            }
        }
    };
    // The main process is gone. Whatever it left behind (daemons, setsid,
    // background jobs) ends with it, so the GPUs and slot are truly free.
    // The tree first, so its count is right; the process group after, for
    // anything a /proc scan cannot see.
    if !tree.kill_all().await {
        tracing::warn!(
            job = plan.job_id,
            "some processes of the job could not be killed"
        );
    }
    kill_group(pid, Signal::SIGKILL);
    // Output written before the end is still in the pipes; collect it all,
    // but do not wait for a pipe someone outside the job holds open.
    pumps.drain().await;
    let processes_killed = tree.killed();
    drop(tree);
    drop(lease);
    // Its artifacts, while its directory and uid are still there.
    if let Some(c) = &collect {
        let items = crate::artifacts::collect(c, &ctx.spool_dir, plan.job_id).await;
        job.with(|j| j.artifacts = Some(items));
    }
    // The directory goes (an empty one at once, a full one off the async
    // threads: a job may leave a large tree), and only then, with every
    // process of the job and its files gone, may another job get its uid
    // (one that escaped the kill keeps it busy, see take_uid).
    let empty = workdir.remove_if_empty();
    let gone = move || drop((workdir, uid_lease));
    if empty {
        gone()
    } else {
        let _ = tokio::task::spawn_blocking(gone).await;
    }
    // And its slot: a job submitted once this one is reported ended finds
    // it free.
    drop(_running);
    let code = match status {
        Ok(st) => exit_code(st),
        Err(_) => 255,
    };
    tracing::info!(
        job = plan.job_id,
        code,
        processes_killed,
        "job process ended"
    );
    if let Some(why) = gpu_failed {
        job.end(Ending::Failed(format!(
            "{why}; stopped after a grace of {} (gpu_fail_grace in node.toml)",
            proto::duration::format(ctx.gpu_fail_grace)
        )));
        return;
    }
    job.end(Ending::Exit {
        code,
        timed_out,
        cancelled: cancelled && !timed_out,
        killed: processes_killed,
    });
}

/// Streams a job's spool to the gateway over `conn` until the gateway has
/// recorded its end, or the connection breaks (the job then waits for the
/// next connection).
pub async fn attach(conn: quinn::Connection, job: Arc<Job>, ctx: Arc<RunContext>) {
    let id = job.plan.job_id;
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(job = id, error = %e, "cannot open a job stream");
            return;
        }
    };
    if mesh::write_frame(&mut send, &Open::Job { job_id: id })
        .await
        .is_err()
    {
        return;
    }
    let mut sent = match mesh::read_frame::<JobCtl>(&mut recv, 64 * 1024).await {
        Ok(Some(JobCtl::Resume {
            stdout_from,
            stderr_from,
        })) => [stdout_from, stderr_from],
        Ok(Some(JobCtl::Reject { reason })) => {
            tracing::warn!(job = id, "gateway refused the job: {reason}; stopping it");
            job.cancel.send_replace(Some(0));
            ctx.forget(id);
            return;
        }
        _ => return,
    };
    // Gateway control: acks release spool, cancel reaches the process.
    let (done_tx, mut done_rx) = watch::channel(false);
    job.set_attached(true);
    let _attached = Attached(&job);
    let ctl_job = job.clone();
    let ctl = tokio::spawn(async move {
        loop {
            match mesh::read_frame::<JobCtl>(&mut recv, 64 * 1024).await {
                Ok(Some(JobCtl::Ack { stdout, stderr })) => {
                    ctl_job.with(|j| {
                        j.out[0].ack(stdout);
                        j.out[1].ack(stderr);
                        j.last_ack = Instant::now();
                    });
                    ctl_job.changed.notify_waiters();
                }
                Ok(Some(JobCtl::Cancel { grace_secs })) => {
                    ctl_job.cancel.send_replace(Some(grace_secs));
                }
                Ok(Some(JobCtl::Done)) => {
                    let _ = done_tx.send(true);
                    return;
                }
                Ok(Some(JobCtl::Reject { .. } | JobCtl::Resume { .. })) => {}
                Ok(None) | Err(_) => return,
            }
        }
    });
    let mut started_sent = false;
    let mut fault_sent = false;
    let mut end_sent = false;
    let result: Result<(), mesh::StreamError> = async {
        loop {
            let notified = job.changed.notified();
            // Anything to send? Output first, then the start, then the end.
            let (started, next, ending, gpu_fault) = job.with(|j| {
                let mut next = None;
                for (i, s) in [OutStream::Stdout, OutStream::Stderr]
                    .into_iter()
                    .enumerate()
                {
                    // Never ask for bytes the gateway already acknowledged.
                    sent[i] = sent[i].max(j.out[i].acked());
                    if next.is_none() {
                        // All that is there, up to a frame (see read_from).
                        next = match j.out[i].read_from(sent[i], crate::spool::READ_CHUNK) {
                            Ok(chunks) if chunks.is_empty() => None,
                            r => Some((s, i, r)),
                        };
                    }
                }
                let caught_up = sent[0] >= j.out[0].total() && sent[1] >= j.out[1].total();
                (
                    j.started.clone().map(|s| (s, j.held.clone())),
                    next,
                    if caught_up { j.ending.clone() } else { None },
                    j.gpu_fault.clone(),
                )
            });
            if !started_sent && let Some(((pid, gpus), held)) = started {
                mesh::write_frame(&mut send, &JobFrame::Started { pid, gpus }).await?;
                // Protocol 3: which GPUs those indices are (a gateway that
                // took this node's hello reads it).
                if !held.is_empty() {
                    mesh::write_frame(&mut send, &JobFrame::GpusHeld { gpus: held }).await?;
                }
                started_sent = true;
                // The first stream to see the start fetches the input.
                if let Some(stdin) = job.with(|j| j.stdin.take()) {
                    tokio::spawn(input::feed(conn.clone(), id, stdin));
                }
                if let Some(master) = job.with(|j| j.pty.take()) {
                    tokio::spawn(input::feed_tty(conn.clone(), id, master));
                }
                continue;
            }
            if !fault_sent && let Some(reason) = gpu_fault {
                mesh::write_frame(&mut send, &JobFrame::GpuFault { reason }).await?;
                fault_sent = true;
                continue;
            }
            if let Some((stream, i, chunks)) = next {
                let mut chunks = chunks
                    .map_err(|e| mesh::StreamError::Sink(format!("cannot read the spool: {e}")))?;
                let n: u64 = chunks.iter().map(|c| c.len() as u64).sum();
                mesh::write_data_chunks(&mut send, stream, sent[i], &mut chunks).await?;
                sent[i] += n;
                continue;
            }
            if !end_sent
                && ending.is_some()
                && let Some(items) = job.with(|j| j.artifacts.clone())
            {
                // The artifacts first, so a job that has ended has them all.
                crate::artifacts::upload(&conn, id, &items)
                    .await
                    .map_err(mesh::StreamError::Sink)?;
                job.with(|j| j.artifacts = None);
                continue;
            }
            if !end_sent && let Some(e) = ending {
                let frame = match e {
                    Ending::Exit {
                        code,
                        timed_out,
                        cancelled,
                        killed,
                    } => JobFrame::Exit {
                        code,
                        timed_out,
                        cancelled,
                        killed,
                    },
                    Ending::Failed(reason) => JobFrame::Failed { reason },
                    Ending::Refused(reason) => JobFrame::Refused { reason },
                };
                mesh::write_frame(&mut send, &frame).await?;
                end_sent = true;
            }
            tokio::select! {
                () = notified => {}
                r = done_rx.changed() => {
                    if r.is_err() || *done_rx.borrow() {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    ctl.abort();
    if *done_rx.borrow() {
        let _ = send.finish();
        ctx.forget(id);
        let _ = tokio::fs::remove_dir_all(crate::artifacts::spool_dir(&ctx.spool_dir, id)).await;
        tracing::debug!(job = id, "gateway recorded the job; forgotten");
    } else if let Err(e) = result {
        tracing::info!(
            job = id,
            "job stream ended ({e}); the job continues and re-attaches on reconnect"
        );
    }
}

/// Marks a job's stream detached when the stream's task ends, however.
struct Attached<'a>(&'a Job);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.0.set_attached(false);
    }
}

struct RunningGuard<'a>(&'a AtomicU32);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

mod input;
mod launch;
mod output;
mod process;
use output::grow_pipe;
use process::{exit_code, kill_group};
#[cfg(test)]
mod tests;
