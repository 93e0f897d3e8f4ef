//! Runs one job on this node: the node's own policy, whole-GPU assignment,
//! a process group of its own, output with byte offsets, timeout and cancel.
//!
//! The job reports on a bidirectional stream it opens to the gateway
//! (`Open::Job`): [`JobFrame`]s go up, [`JobCtl`]s come down. If that stream
//! breaks, the job's process group is killed: output is never produced where
//! nobody can store it.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh::home::NodePolicy;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use proto::{JobCtl, JobFrame, JobPlan, Open, OutStream};
use tokio::io::AsyncReadExt as _;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Bytes read from a pipe at a time.
const CHUNK: usize = 256 * 1024;
/// Pipe buffer asked of the kernel for job output (the default is 64 KiB);
/// fewer, larger reads and frames for chatty jobs.
const PIPE_SIZE: i32 = 1 << 20;

/// Whole GPUs, each held by at most one job.
#[derive(Debug)]
pub struct GpuPool {
    total: u32,
    busy: Mutex<BTreeSet<u32>>,
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
            busy: Mutex::new(BTreeSet::new()),
        })
    }

    /// GPUs in the pool.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Takes the `n` lowest free GPUs, or none if fewer are free.
    pub fn take(self: &Arc<Self>, n: u32) -> Option<GpuLease> {
        let mut busy = self.busy.lock().ok()?;
        let free: Vec<u32> = (0..self.total)
            .filter(|i| !busy.contains(i))
            .take(n as usize)
            .collect();
        if free.len() < n as usize {
            return None;
        }
        busy.extend(free.iter().copied());
        Some(GpuLease {
            pool: self.clone(),
            ids: free,
        })
    }
}

/// What every job on this node shares.
#[derive(Debug)]
pub struct RunContext {
    /// This node's name.
    pub node: String,
    /// This node's policy.
    pub policy: NodePolicy,
    /// Its GPUs.
    pub gpus: Arc<GpuPool>,
    /// Jobs running now.
    pub running: AtomicU32,
}

/// Checks a plan against the node's own policy. Pure.
pub fn check_policy(policy: &NodePolicy, node: &str, plan: &JobPlan) -> Result<(), String> {
    if !policy.system_run {
        return Err(format!(
            "system.run is disabled on node {node} (node.toml [policy] system_run = false)"
        ));
    }
    let line = plan.argv.join(" ");
    let argv0 = plan.argv.first().map(String::as_str).unwrap_or("");
    if !policy.allowed_commands.is_empty()
        && !proto::glob::any(&policy.allowed_commands, argv0)
        && !proto::glob::any(&policy.allowed_commands, &line)
    {
        return Err(format!(
            "node {node}'s policy does not allow the command {argv0:?} (allowed_commands in node.toml)"
        ));
    }
    if !policy.allowed_cwds.is_empty() {
        let cwd = plan.cwd.as_deref().unwrap_or("");
        if !proto::glob::any(&policy.allowed_cwds, cwd) {
            return Err(format!(
                "node {node}'s policy does not allow the working directory {cwd:?} (allowed_cwds in node.toml)"
            ));
        }
    }
    Ok(())
}

/// The environment a job gets on top of the node's own: requested
/// variables minus loader variables, plus the job's identity and GPUs.
pub fn job_env(plan: &JobPlan, node: &str, gpus: &[u32]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = plan
        .env
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("LD_") && !k.starts_with("DYLD_") && !k.starts_with("OPENCLAW_")
        })
        .cloned()
        .collect();
    env.push(("OPENCLAW_JOB_ID".into(), plan.job_id.to_string()));
    env.push(("OPENCLAW_NODE".into(), node.to_string()));
    if !gpus.is_empty() {
        let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
        env.push(("CUDA_VISIBLE_DEVICES".into(), list.join(",")));
    }
    env
}

struct Reporter {
    send: quinn::SendStream,
    offsets: [u64; 2],
}

impl Reporter {
    async fn frame(&mut self, f: &JobFrame) -> Result<(), mesh::StreamError> {
        mesh::write_frame(&mut self.send, f).await
    }

    async fn output(
        &mut self,
        stream: OutStream,
        data: bytes::Bytes,
    ) -> Result<(), mesh::StreamError> {
        let i = usize::from(stream == OutStream::Stderr);
        let offset = self.offsets[i];
        self.offsets[i] += data.len() as u64;
        mesh::write_data(&mut self.send, stream, offset, data).await
    }

    async fn fail(&mut self, reason: String) {
        tracing::info!("job refused: {reason}");
        let _ = self.frame(&JobFrame::Failed { reason }).await;
        let _ = self.send.finish();
    }
}

/// Runs `plan` and reports on a new stream of `conn`.
pub async fn run(conn: quinn::Connection, plan: JobPlan, ctx: Arc<RunContext>) {
    let id = plan.job_id;
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(job = id, error = %e, "cannot open a job stream");
            return;
        }
    };
    if mesh::write_frame(&mut send, &Open::Job { job_id: id })
        .await
        .is_err()
    {
        return;
    }
    let mut rep = Reporter {
        send,
        offsets: [0, 0],
    };
    // Control from the gateway: cancel, or a refusal of the stream.
    let (cancel_tx, mut cancel_rx) = watch::channel::<Option<u64>>(None);
    let ctl_reader = tokio::spawn(async move {
        loop {
            match mesh::read_frame::<JobCtl>(&mut recv, 64 * 1024).await {
                Ok(Some(JobCtl::Cancel { grace_secs })) => {
                    let _ = cancel_tx.send(Some(grace_secs));
                }
                Ok(Some(JobCtl::Reject { reason })) => {
                    tracing::warn!(job = id, "gateway refused the job stream: {reason}");
                    let _ = cancel_tx.send(Some(0));
                    return;
                }
                Ok(None) | Err(_) => return,
            }
        }
    });
    run_reported(&mut rep, &plan, &ctx, &mut cancel_rx).await;
    ctl_reader.abort();
}

async fn run_reported(
    rep: &mut Reporter,
    plan: &JobPlan,
    ctx: &RunContext,
    cancel_rx: &mut watch::Receiver<Option<u64>>,
) {
    if let Err(reason) = check_policy(&ctx.policy, &ctx.node, plan) {
        return rep.fail(reason).await;
    }
    if let Some(cwd) = &plan.cwd
        && !std::path::Path::new(cwd).is_dir()
    {
        return rep
            .fail(format!(
                "working directory {cwd} does not exist on node {}",
                ctx.node
            ))
            .await;
    }
    let running = ctx.running.fetch_add(1, Ordering::SeqCst);
    let _running = RunningGuard(&ctx.running);
    if running >= ctx.policy.max_jobs {
        return rep
            .fail(format!(
                "node {} is already running its maximum of {} jobs",
                ctx.node, ctx.policy.max_jobs
            ))
            .await;
    }
    let lease = match ctx.gpus.take(plan.gpus) {
        Some(l) => l,
        None => {
            return rep
                .fail(format!(
                    "node {} has fewer than {} free GPUs (of {})",
                    ctx.node,
                    plan.gpus,
                    ctx.gpus.total()
                ))
                .await;
        }
    };
    let Some((program, args)) = plan.argv.split_first() else {
        return rep.fail("empty command".into()).await;
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(job_env(plan, &ctx.node, &lease.ids))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &plan.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            // Report it as a shell would: a message on stderr and 127/126.
            let (code, what) = match e.kind() {
                std::io::ErrorKind::NotFound => (127, "command not found"),
                std::io::ErrorKind::PermissionDenied => (126, "permission denied"),
                _ => return rep.fail(format!("cannot start {program}: {e}")).await,
            };
            let _ = rep
                .output(
                    OutStream::Stderr,
                    bytes::Bytes::from(format!("openclaw: {program}: {what}\n")),
                )
                .await;
            let _ = rep
                .frame(&JobFrame::Exit {
                    code,
                    timed_out: false,
                    cancelled: false,
                })
                .await;
            let _ = rep.send.finish();
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    if rep
        .frame(&JobFrame::Started {
            pid,
            gpus: lease.ids.clone(),
        })
        .await
        .is_err()
    {
        kill_group(pid, Signal::SIGKILL);
        return;
    }
    let (tx, mut rx) = mpsc::channel::<(OutStream, bytes::Bytes)>(16);
    if let Some(out) = child.stdout.take() {
        grow_pipe(&out);
        tokio::spawn(pump(out, OutStream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        grow_pipe(&err);
        tokio::spawn(pump(err, OutStream::Stderr, tx.clone()));
    }
    drop(tx);

    let far = Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    let deadline = plan
        .timeout_secs
        .map(|t| Instant::now() + Duration::from_secs(t));
    let mut status = None;
    let mut pipes_open = true;
    let mut timed_out = false;
    let mut cancelled = false;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    loop {
        if status.is_some() && !pipes_open {
            break;
        }
        tokio::select! {
            chunk = rx.recv(), if pipes_open => match chunk {
                Some((stream, data)) => {
                    if rep.output(stream, data).await.is_err() {
                        tracing::warn!(job = plan.job_id, "lost the job stream; killing the job");
                        kill_group(pid, Signal::SIGKILL);
                        return;
                    }
                }
                None => pipes_open = false,
            },
            st = child.wait(), if status.is_none() => {
                status = Some(st);
            }
            () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && !timed_out && !cancelled && status.is_none() => {
                timed_out = true;
                kill_group(pid, Signal::SIGTERM);
                kill_at = Some(Instant::now() + Duration::from_secs(plan.kill_grace_secs));
            }
            changed = cancel_rx.changed(), if !cancelled => {
                if changed.is_err() {
                    cancelled = true; // the gateway side is gone; treat as cancel
                    kill_group(pid, Signal::SIGKILL);
                    continue;
                }
                let grace = (*cancel_rx.borrow()).unwrap_or(0);
                cancelled = true;
                kill_group(pid, Signal::SIGTERM);
                kill_at = Some(Instant::now() + Duration::from_secs(grace));
            }
            () = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() && !killed => {
                killed = true;
                kill_group(pid, Signal::SIGKILL);
            }
        }
    }
    let code = match status {
        Some(Ok(st)) => exit_code(st),
        _ => 255,
    };
    drop(lease);
    let _ = rep
        .frame(&JobFrame::Exit {
            code,
            timed_out,
            cancelled: cancelled && !timed_out,
        })
        .await;
    let _ = rep.send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(5), rep.send.stopped()).await;
}

struct RunningGuard<'a>(&'a AtomicU32);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn grow_pipe(fd: &impl std::os::fd::AsFd) {
    // Best effort: the kernel may cap it (fs.pipe-max-size); 64 KiB still works.
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
}

fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

fn kill_group(pid: u32, sig: Signal) {
    if let Ok(p) = i32::try_from(pid)
        && p > 0
    {
        let _ = killpg(Pid::from_raw(p), sig);
    }
}

async fn pump(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    stream: OutStream,
    tx: mpsc::Sender<(OutStream, bytes::Bytes)>,
) {
    // One buffer, split after each read: the bytes go to quinn without a
    // copy, and the allocation is reused once quinn has sent them.
    let mut buf = bytes::BytesMut::with_capacity(CHUNK);
    loop {
        buf.clear();
        buf.resize(CHUNK, 0);
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let chunk = buf.split_to(n).freeze();
                if tx.send((stream, chunk)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(argv: &[&str], cwd: Option<&str>) -> JobPlan {
        JobPlan {
            job_id: 7,
            node: "n".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.map(str::to_string),
            env: vec![("LD_PRELOAD".into(), "x".into()), ("A".into(), "1".into())],
            timeout_secs: None,
            gpus: 0,
            kill_grace_secs: 1,
        }
    }

    #[test]
    fn node_policy_table() {
        let open = NodePolicy::default();
        let strict = NodePolicy {
            allowed_commands: vec!["python*".into(), "/usr/bin/*".into()],
            allowed_cwds: vec!["/srv/lab*".into()],
            ..NodePolicy::default()
        };
        let off = NodePolicy {
            system_run: false,
            ..NodePolicy::default()
        };
        assert!(check_policy(&open, "n", &plan(&["rm", "-rf", "/"], None)).is_ok());
        assert!(
            check_policy(
                &strict,
                "n",
                &plan(&["python3", "t.py"], Some("/srv/lab/x"))
            )
            .is_ok()
        );
        let e = check_policy(&strict, "n", &plan(&["bash"], Some("/srv/lab"))).unwrap_err();
        assert!(e.contains("does not allow the command"), "{e}");
        let e = check_policy(&strict, "n", &plan(&["python3"], Some("/etc"))).unwrap_err();
        assert!(e.contains("working directory"), "{e}");
        let e = check_policy(&strict, "n", &plan(&["python3"], None)).unwrap_err();
        assert!(e.contains("working directory"), "{e}");
        let e = check_policy(&off, "n", &plan(&["true"], None)).unwrap_err();
        assert!(e.contains("system.run is disabled"), "{e}");
    }

    #[test]
    fn env_strips_loader_variables_and_adds_identity() {
        let env = job_env(&plan(&["x"], None), "worker-gpu-01", &[0, 2]);
        assert!(env.iter().all(|(k, _)| k != "LD_PRELOAD"));
        assert!(env.contains(&("A".into(), "1".into())));
        assert!(env.contains(&("OPENCLAW_JOB_ID".into(), "7".into())));
        assert!(env.contains(&("OPENCLAW_NODE".into(), "worker-gpu-01".into())));
        assert!(env.contains(&("CUDA_VISIBLE_DEVICES".into(), "0,2".into())));
        let env = job_env(&plan(&["x"], None), "n", &[]);
        assert!(env.iter().all(|(k, _)| k != "CUDA_VISIBLE_DEVICES"));
    }

    #[test]
    fn gpus_are_never_shared() {
        let pool = GpuPool::new(2);
        let a = pool.take(1).unwrap();
        let b = pool.take(1).unwrap();
        assert_ne!(a.ids, b.ids);
        assert!(pool.take(1).is_none());
        drop(a);
        let c = pool.take(1).unwrap();
        assert_eq!(c.ids, vec![0]);
        assert!(pool.take(2).is_none());
        assert_eq!(pool.take(0).unwrap().ids, Vec::<u32>::new());
    }
}
