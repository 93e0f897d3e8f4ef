//! Jobs: resolving a request into a frozen plan, routing, policy, dispatch
//! to the node, storing output exactly once, and feeding followers.
//!
//! Output flows node → gateway on a job stream the node opens; the gateway
//! appends it to `logs/<id>.stdout` and `logs/<id>.stderr` and bumps a
//! watch channel. Followers read the files from their own offsets and wait
//! on the channel, so a slow follower never slows the job or loses output.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::{
    ApiError, ControlMsg, ErrorCode, JobCtl, JobEvent, JobFrame, JobInfo, JobPlan, JobSpec,
    OutStream, Role,
};
use tokio::sync::{Notify, mpsc, watch};

pub mod fanout;
pub mod logwriter;

use crate::config::Config;
use crate::policy::{self, Action};
use crate::routing::{self, NodeView, RouteError};
use crate::session::Peer;
use crate::store::{JobRow, JobState, NodeState};
use crate::{Shared, unix_now};
use logwriter::{LogFile, LogSink};

/// Largest argv, all arguments together.
const MAX_ARGV_BYTES: usize = 128 * 1024;
/// How long a node has to start a dispatched job.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Output chunk sent to followers.
const FOLLOW_CHUNK: usize = 256 * 1024;
/// Largest job-stream frame from a node.
pub const JOB_FRAME_LIMIT: usize = proto::MAX_FRAME_LEN;
/// Longest job timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 86_400);
/// Control messages queued for one job stream (cancel, done).
const CTL_QUEUE: usize = 16;

/// How far a job's stored output has grown, and its state.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Bytes in the stdout log file.
    pub stdout: u64,
    /// Bytes in the stderr log file.
    pub stderr: u64,
    /// State word.
    pub state: String,
}

/// Output just stored, for live followers.
#[derive(Debug, Clone)]
pub struct TailChunk {
    /// Which stream.
    pub stream: OutStream,
    /// Offset of `data` in that stream's log file.
    pub offset: u64,
    /// Contiguous bytes (shared with quinn's receive buffers; no copy).
    pub data: Vec<bytes::Bytes>,
}

impl TailChunk {
    fn len(&self) -> u64 {
        self.data.iter().map(|b| b.len() as u64).sum()
    }
}

/// Chunks a live follower may fall behind by before it reads the file instead.
const TAIL_CHUNKS: usize = 128;

struct LiveJob {
    node: String,
    gpus: u32,
    /// Dispatched to the node (counts against its capacity).
    on_node: bool,
    /// Routed and about to be dispatched (counts against capacity too).
    reserved: bool,
    progress: watch::Sender<Progress>,
    tail: tokio::sync::broadcast::Sender<TailChunk>,
    ctl: Option<mpsc::Sender<JobCtl>>,
    cancel_requested: bool,
    /// A node stream is attached now.
    attached: bool,
    /// Counts attachments; a stream only detaches the job if it is still
    /// the latest one.
    attach_gen: u64,
    /// Bytes received per stream, kept across re-attachments.
    received: Option<[u64; 2]>,
}

/// The live table: jobs that have not ended, and each node's load (GPUs
/// held and jobs counted against it: dispatched, or routed and reserved).
///
/// Invariant: `load` always equals a recount of `jobs`. `node`, `gpus`,
/// `on_node` and `reserved` change only through [`Live::update`],
/// [`Live::insert`] and [`Live::remove`], which keep it so; other fields
/// may be changed through `jobs` directly. Debug builds recount on every
/// access.
#[derive(Default)]
pub(crate) struct Live {
    jobs: HashMap<u64, LiveJob>,
    load: HashMap<String, (u32, u32)>,
}

impl LiveJob {
    fn counted(&self) -> Option<(String, u32)> {
        (self.on_node || self.reserved).then(|| (self.node.clone(), self.gpus))
    }
}

impl Live {
    fn count(&mut self, c: Option<(String, u32)>, add: bool) {
        let Some((node, gpus)) = c else { return };
        let e = self.load.entry(node).or_insert((0, 0));
        if add {
            *e = (e.0 + gpus, e.1 + 1);
        } else {
            *e = (e.0.saturating_sub(gpus), e.1.saturating_sub(1));
        }
        if *e == (0, 0) {
            self.load.retain(|_, v| *v != (0, 0));
        }
    }

    /// Changes a job's placement (node, GPUs, dispatched, reserved) or
    /// anything else, keeping the loads right.
    fn update<T>(&mut self, id: u64, f: impl FnOnce(&mut LiveJob) -> T) -> Option<T> {
        let j = self.jobs.get_mut(&id)?;
        let before = j.counted();
        let out = f(j);
        let after = j.counted();
        if before != after {
            self.count(before, false);
            self.count(after, true);
        }
        Some(out)
    }

    fn insert(&mut self, id: u64, j: LiveJob) {
        self.count(j.counted(), true);
        if let Some(old) = self.jobs.insert(id, j) {
            self.count(old.counted(), false);
        }
    }

    fn remove(&mut self, id: u64) -> Option<LiveJob> {
        let j = self.jobs.remove(&id)?;
        self.count(j.counted(), false);
        Some(j)
    }

    fn recount_matches(&self) -> bool {
        let mut want: HashMap<String, (u32, u32)> = HashMap::new();
        for j in self.jobs.values() {
            if let Some((n, g)) = j.counted() {
                let e = want.entry(n).or_insert((0, 0));
                *e = (e.0 + g, e.1 + 1);
            }
        }
        want == self.load
    }
}

/// Jobs that have not ended, in memory.
#[derive(Default)]
pub struct Jobs {
    live: Mutex<Live>,
    /// Held across routing and reserving capacity.
    routing: Mutex<()>,
    /// Signalled whenever capacity may have freed up.
    pub capacity: Notify,
}

impl Jobs {
    fn with<T>(&self, f: impl FnOnce(&mut Live) -> T) -> T {
        let mut g = match self.live.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let out = f(&mut g);
        debug_assert!(
            g.recount_matches(),
            "node loads out of step with the live jobs"
        );
        out
    }

    /// Ids of the jobs that have not ended.
    pub fn live_ids(&self) -> std::collections::HashSet<u64> {
        self.with(|m| m.jobs.keys().copied().collect())
    }

    /// Serialises routing decisions with the capacity they reserve.
    fn route_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        match self.routing.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn subscribe(&self, id: u64) -> Option<watch::Receiver<Progress>> {
        self.with(|m| m.jobs.get(&id).map(|j| j.progress.subscribe()))
    }

    /// Progress and live output of a job, subscribed together so no chunk
    /// falls between them.
    fn follow(
        &self,
        id: u64,
    ) -> Option<(
        watch::Receiver<Progress>,
        tokio::sync::broadcast::Receiver<TailChunk>,
    )> {
        self.with(|m| {
            m.jobs
                .get(&id)
                .map(|j| (j.progress.subscribe(), j.tail.subscribe()))
        })
    }

    /// GPUs held and jobs running on `node` (kept as jobs move, not
    /// counted per call: a 10,000-node fan-out asked this 10,000 times).
    pub fn load(&self, node: &str) -> (u32, u32) {
        self.with(|m| m.load.get(node).copied().unwrap_or((0, 0)))
    }

    fn insert(&self, id: u64, node: &str, gpus: u32, state: JobState, reserved: bool) {
        let (tx, _) = watch::channel(Progress {
            state: state.as_str().to_string(),
            ..Default::default()
        });
        self.with(|m| {
            m.insert(
                id,
                LiveJob {
                    node: node.to_string(),
                    gpus,
                    on_node: false,
                    reserved,
                    progress: tx,
                    tail: tokio::sync::broadcast::channel(TAIL_CHUNKS).0,
                    ctl: None,
                    cancel_requested: false,
                    attached: false,
                    attach_gen: 0,
                    received: None,
                },
            )
        });
    }
}

fn err(code: ErrorCode, m: impl Into<String>) -> ApiError {
    ApiError::new(code, m)
}

/// A request resolved against the config, before routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Explicit node, if any.
    pub node: Option<String>,
    /// Role, if routed by role.
    pub role: Option<String>,
    /// Named job.
    pub named_job: Option<String>,
    /// Exact argv.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Timeout.
    pub timeout_secs: Option<u64>,
    /// GPUs.
    pub gpus: u32,
    /// A named job's user.
    pub run_as: Option<String>,
}

/// Turns a spec into exact argv, target and environment. Pure. `chat`:
/// a bot submits it for a chat user (chat policy applies).
pub fn resolve(cfg: &Config, spec: &JobSpec, chat: bool) -> Result<Resolved, ApiError> {
    resolve_for(cfg, spec, chat, false)
}

/// [`resolve`] for a single job (`fan: false`) or for the command of a
/// fan-out (`fan: true`: no node, no target needed, no GPUs by default).
pub fn resolve_for(
    cfg: &Config,
    spec: &JobSpec,
    chat: bool,
    fan: bool,
) -> Result<Resolved, ApiError> {
    let invalid = |m: String| err(ErrorCode::InvalidArgument, m);
    let mut run_as = None;
    let (mut argv, mut node, mut role, mut cwd, mut timeout, mut gpus, mut env, named) = match &spec
        .job
    {
        Some(name) => {
            let Some((key, job)) = cfg.named_job(name) else {
                let names: Vec<&str> = cfg.jobs.keys().map(String::as_str).collect();
                let mut m = format!("unknown named job {name:?}");
                if let Some(c) = routing::closest(name, names.iter().copied()) {
                    m.push_str(&format!("; did you mean {c}?"));
                }
                if names.is_empty() {
                    m.push_str("; no named jobs are defined ([jobs.NAME] in gateway.toml)");
                } else {
                    m.push_str(&format!("; named jobs: {}", names.join(", ")));
                }
                return Err(err(ErrorCode::NotFound, m));
            };
            if !spec.argv.is_empty() {
                return Err(invalid(format!(
                    "named job {key} fixes its command; drop the command after -- or run it without --job"
                )));
            }
            run_as.clone_from(&job.run_as);
            (
                job.command.clone(),
                job.node.clone(),
                job.role.clone(),
                job.cwd.clone(),
                job.timeout.map(|t| t.as_secs().max(1)),
                job.gpus,
                job.env.clone(),
                Some(key.to_string()),
            )
        }
        None => (
            spec.argv.clone(),
            None,
            None,
            None,
            None,
            None,
            vec![],
            None,
        ),
    };
    if spec.node.is_some() && spec.role.is_some() {
        return Err(invalid("give either --node or --role, not both".into()));
    }
    if spec.node.is_some() || spec.role.is_some() {
        node = spec.node.clone();
        role = spec.role.clone();
    }
    if fan {
        if let Some(n) = &node {
            return Err(invalid(match &named {
                Some(j) => format!(
                    "named job {j} is pinned to node {n}; a fan-out picks nodes by role and labels, so run it without --all"
                ),
                None => "a fan-out picks nodes by --role and --label; drop --node, or drop --all to run on one node".into(),
            }));
        }
    } else if node.is_none() && role.is_none() {
        return Err(invalid(
            "say where to run it: --node NAME, --role ROLE or --job NAME".into(),
        ));
    }
    if argv.is_empty() || argv[0].is_empty() {
        return Err(invalid(
            "empty command; put it after --, e.g. openclaw run --node worker-gpu-01 -- nvidia-smi"
                .into(),
        ));
    }
    if spec.shell {
        if chat && !cfg.policy.chat_shell {
            return Err(err(
                ErrorCode::Denied,
                "shell jobs from chat are refused by policy (policy.chat_shell = false); name the command without shell syntax, or use a named job",
            ));
        }
        if !chat && !cfg.policy.allow_shell {
            return Err(err(
                ErrorCode::Denied,
                "shell jobs are disabled by policy (policy.allow_shell = false); run the command as argv",
            ));
        }
        argv = vec!["sh".into(), "-c".into(), argv.join(" ")];
    }
    if argv.iter().map(|a| a.len() + 1).sum::<usize>() > MAX_ARGV_BYTES
        || argv.iter().any(|a| a.contains('\0'))
    {
        return Err(invalid(format!(
            "command too long or contains NUL bytes (limit {MAX_ARGV_BYTES} bytes)"
        )));
    }
    if let Some(c) = &spec.cwd {
        cwd = Some(c.clone());
    }
    if let Some(c) = &cwd
        && (!c.starts_with('/') || c.contains('\0'))
    {
        return Err(invalid(format!("--cwd {c:?} must be an absolute path")));
    }
    if let Some(t) = spec.timeout_secs {
        timeout = Some(t);
    }
    if let Some(t) = timeout
        && (t == 0 || t > MAX_TIMEOUT.as_secs())
    {
        return Err(invalid("--timeout must be between 1s and 30d".into()));
    }
    if spec.gpus.is_some() {
        gpus = spec.gpus;
    }
    let gpus = gpus.unwrap_or(if role.as_deref() == Some("gpu") && !fan {
        1
    } else {
        0
    });
    if gpus > 64 {
        return Err(invalid("--gpus must be at most 64".into()));
    }
    if spec.env.len() > proto::env::MAX_VARS {
        return Err(invalid(format!(
            "{} environment variables given; the limit is {}",
            spec.env.len(),
            proto::env::MAX_VARS
        )));
    }
    // A named job's own variables may be overridden; anything else must
    // match [policy] env_allow, and nothing on the dangerous list passes.
    let named_keys: Vec<String> = env.iter().map(|(k, _)| k.clone()).collect();
    for (k, v) in &spec.env {
        let checked = if named_keys.contains(k) {
            proto::env::check_unlisted(k, v)
        } else {
            proto::env::check(&cfg.policy.env_allow, k, v)
        };
        if let Err(why) = checked {
            let code = match why {
                proto::env::EnvRefusal::InvalidName | proto::env::EnvRefusal::BadValue => {
                    ErrorCode::InvalidArgument
                }
                _ => ErrorCode::Denied,
            };
            return Err(err(
                code,
                proto::env::explain(k, &why, "[policy] env_allow in gateway.toml"),
            ));
        }
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    Ok(Resolved {
        node,
        role,
        named_job: named,
        argv,
        cwd,
        env,
        timeout_secs: timeout,
        gpus,
        run_as,
    })
}

/// The identity a request acts for: the certificate name, or for a bot
/// the chat user it names. A bot may name only users of the chat
/// namespace configured for its certificate (`client create --namespace`),
/// so it can never speak for `admin`, another certificate, or another
/// workspace's users.
pub fn identity(peer: &Peer, on_behalf_of: Option<&str>) -> Result<String, ApiError> {
    match (peer.role, on_behalf_of) {
        (Role::Bot, Some(u)) => {
            let Some(ns) = peer.namespace.as_deref() else {
                return Err(err(
                    ErrorCode::PermissionDenied,
                    format!(
                        "bot {} has no chat namespace, so it may not act for anyone; recreate it with \
                         'openclaw client revoke {0}' and 'openclaw client create {0} --role bot --namespace slack:TEAMID'",
                        peer.name
                    ),
                ));
            };
            proto::identity::check_chat_identity_in(ns, u).map_err(|m| {
                err(
                    ErrorCode::PermissionDenied,
                    format!("refused by policy: bot {}: {m}", peer.name),
                )
            })?;
            Ok(u.to_string())
        }
        (Role::Bot, None) => Err(err(
            ErrorCode::InvalidArgument,
            "the bot must say which chat user it acts for",
        )),
        (_, Some(_)) => Err(err(
            ErrorCode::PermissionDenied,
            "only the bot may act on behalf of chat users",
        )),
        (_, None) => Ok(peer.name.clone()),
    }
}

/// Whether `who` (acting through `peer`) may see a job: admins see every
/// job; a chat user sees the jobs they requested, those they may approve,
/// and every job if they are a policy approver.
pub fn check_visible(
    shared: &Shared,
    peer: &Peer,
    who: &str,
    row: &JobRow,
) -> Result<(), ApiError> {
    if peer.role == Role::Admin
        || row.requester == who
        || row.approvers.iter().any(|a| a == who)
        || is_policy_approver(&shared.config(), who)
    {
        return Ok(());
    }
    Err(no_job(row.id))
}

fn is_policy_approver(cfg: &Config, who: &str) -> bool {
    cfg.policy.approvers.iter().any(|a| a == who)
        || cfg
            .policy
            .rules
            .iter()
            .any(|r| r.approvers.iter().any(|a| a == who))
}

/// SHA-256 of an encoded plan.
pub fn plan_digest(plan: &JobPlan) -> Result<String, ApiError> {
    let bytes = proto::codec::encode(plan).map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
    Ok(format!("sha256:{}", pki::hex(&pki::sha256(&bytes))))
}

/// What routing sees right now.
fn node_views(shared: &Shared) -> Result<Vec<NodeView>, ApiError> {
    let rows = shared.store.tx(|tx| tx.nodes())?;
    let now = unix_now();
    let instant = std::time::Instant::now();
    Ok(rows
        .into_iter()
        .map(|n| {
            let crate::NodeStatus { live, health, .. } = shared.node_status(&n, instant);
            let (gpus_busy, running) = shared.jobs.load(&n.name);
            NodeView {
                state: n.state.as_str(),
                connected: live.is_some(),
                healthy: health == "healthy",
                labels: n.labels,
                gpus_total: live.as_ref().map(|l| l.gpus).unwrap_or(0),
                gpus_busy,
                running,
                max_jobs: live.as_ref().map(|l| l.max_jobs).unwrap_or(0),
                last_seen: n
                    .last_seen
                    .map(|t| ago(t, now))
                    .unwrap_or_else(|| "never".into()),
                name: n.name,
            }
        })
        .collect())
}

fn ago(then: u64, now: u64) -> String {
    format!(
        "{} ago",
        proto::duration::format(Duration::from_secs(now.saturating_sub(then)))
    )
}

fn route(shared: &Shared, r: &Resolved) -> Result<String, RouteError> {
    let views = node_views(shared).map_err(|e| RouteError::Unavailable(e.message))?;
    match (&r.node, &r.role) {
        (Some(n), _) => routing::to_node(&views, n, r.gpus),
        (None, Some(role)) => routing::to_role(&views, role, r.gpus),
        (None, None) => Err(RouteError::Unknown("no target".into())),
    }
}

fn plan_for(shared: &Shared, id: u64, node: &str, r: &Resolved) -> JobPlan {
    JobPlan {
        job_id: id,
        node: node.to_string(),
        argv: r.argv.clone(),
        cwd: r.cwd.clone(),
        env: r.env.clone(),
        timeout_secs: r.timeout_secs,
        gpus: r.gpus,
        kill_grace_secs: shared.config().kill_grace.as_secs(),
        run_as: r.run_as.clone(),
    }
}

/// Resolves, routes and checks policy for a job without creating it.
pub fn preview(
    shared: &Arc<Shared>,
    peer: &Peer,
    spec: JobSpec,
) -> Result<proto::Response, ApiError> {
    let requester = identity(peer, spec.on_behalf_of.as_deref())?;
    let cfg = shared.config();
    let chat = peer.role == Role::Bot;
    let r = resolve(&cfg, &spec, chat)?;
    let node = route(shared, &r).map_err(ApiError::from)?;
    let d = policy::evaluate(
        &cfg.policy,
        &policy::Facts {
            user: &requester,
            node: &node,
            argv: &r.argv,
            job: r.named_job.as_deref(),
            chat,
        },
    );
    Ok(proto::Response::Preview {
        node,
        argv: r.argv,
        named_job: r.named_job,
        role: r.role,
        decision: match d.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Approve => "approve",
        }
        .into(),
        approvers: if d.action == Action::Approve {
            d.approvers
        } else {
            vec![]
        },
        rule: d.rule.and_then(|i| u32::try_from(i + 1).ok()),
    })
}

/// What the chat grammar needs to know.
pub fn chat_context(shared: &Shared) -> Result<proto::Response, ApiError> {
    let cfg = shared.config();
    let nodes = shared.store.tx(|tx| tx.nodes())?;
    let mut roles: Vec<String> = nodes
        .iter()
        .flat_map(|n| n.labels.iter().cloned())
        .collect();
    roles.sort();
    roles.dedup();
    Ok(proto::Response::ChatContext {
        nodes: nodes
            .into_iter()
            .filter(|n| n.state == NodeState::Approved)
            .map(|n| n.name)
            .collect(),
        jobs: cfg
            .jobs
            .iter()
            .map(|(k, j)| (k.clone(), j.aliases.clone()))
            .collect(),
        roles,
    })
}

/// Creates a job. Returns its record; a policy denial is an error (the
/// denied job is still recorded for the audit trail).
pub fn submit(shared: &Arc<Shared>, peer: &Peer, spec: JobSpec) -> Result<JobInfo, ApiError> {
    let requester = identity(peer, spec.on_behalf_of.as_deref())?;
    check_key(spec.idempotency_key.as_deref())?;
    let cfg = shared.config();
    let chat = peer.role == Role::Bot;
    let resolved = resolve(&cfg, &spec, chat)?;
    let now = unix_now();
    let secret_env: Vec<String> = resolved
        .env
        .iter()
        .filter(|(k, _)| proto::glob::any(&cfg.policy.env_secret, k))
        .map(|(k, _)| k.clone())
        .collect();
    // Routing and the capacity it takes happen under one lock, so two
    // submits can never both be given the last GPU or job slot.
    let (row, routed) = {
        let _routing = shared.jobs.route_lock();
        let routed = route(shared, &resolved);
        let queue_until = match (&routed, spec.queue_timeout_secs) {
            (Ok(_), _) => None,
            (Err(e), Some(t)) if e.is_busy() => Some(now + t),
            (Err(e), _) => return Err(e.clone().into()),
        };
        // Every job is born queued; the decision below (or the queue)
        // moves it on, by the same conditional transitions as later ones.
        let mut row = JobRow {
            id: 0,
            state: JobState::Queued,
            node: routed.clone().unwrap_or_default(),
            role: resolved.role.clone(),
            named_job: resolved.named_job.clone(),
            plan: plan_for(shared, 0, "", &resolved),
            plan_digest: String::new(),
            requester: requester.clone(),
            via: peer.name.clone(),
            approvers: vec![],
            allow_self: false,
            approved_by: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
            truncated: false,
            queue_until,
            secret_env,
            processes_killed: 0,
            fanout: None,
        };
        let key = spec.idempotency_key.as_deref();
        let created = shared.store.tx(|tx| {
            // A repeated key returns the first job: checked and recorded
            // in the transaction that creates the job.
            if let Some(k) = key
                && let Some(first) = tx.idempotent_job(&peer.name, k)?
                && let Some(job) = tx.job(first)?
            {
                return Ok::<_, ApiError>(Err(job));
            }
            let id = tx.insert_job(&row)?;
            if let Some(k) = key {
                tx.put_idempotency(&peer.name, k, id, now)?;
            }
            tx.audit(
                now,
                &peer.name,
                "job.submit",
                &id.to_string(),
                &format!("for {requester}: {:?}", resolved.argv),
            )?;
            Ok(Ok(id))
        })?;
        let id = match created {
            Ok(id) => id,
            Err(first) => {
                tracing::info!(job = first.id, key = ?key, "repeated request; returning the job it created");
                return Ok(live_info(shared, &first));
            }
        };
        row.id = id;
        row.plan.job_id = id;
        shared
            .jobs
            .insert(id, &row.node, resolved.gpus, row.state, routed.is_ok());
        (row, routed)
    };
    let id = row.id;
    tracing::info!(job = id, %requester, node = %row.node, argv = ?resolved.argv, "job submitted");
    match routed {
        Ok(node) => decide(shared, row, JobState::Queued, &node, &resolved, chat),
        Err(_) => {
            tokio::spawn(wait_in_queue(shared.clone(), id, resolved, chat));
            Ok(row.info())
        }
    }
}

/// Refuses an idempotency key that is empty, long or has control characters.
fn check_key(key: Option<&str>) -> Result<(), ApiError> {
    match key {
        Some(k) if k.is_empty() || k.len() > 128 || k.chars().any(char::is_control) => Err(err(
            ErrorCode::InvalidArgument,
            "an idempotency key is 1-128 printable characters",
        )),
        _ => Ok(()),
    }
}

/// Freezes the plan for `node`, applies policy, and dispatches, holds or
/// denies. `from` is the state the stored row is in now.
fn decide(
    shared: &Arc<Shared>,
    mut row: JobRow,
    from: JobState,
    node: &str,
    r: &Resolved,
    chat: bool,
) -> Result<JobInfo, ApiError> {
    let cfg = shared.config();
    row.node = node.to_string();
    row.plan = plan_for(shared, row.id, node, r);
    row.plan_digest = plan_digest(&row.plan)?;
    let decision = policy::evaluate(
        &cfg.policy,
        &policy::Facts {
            user: &row.requester,
            node,
            argv: &row.plan.argv,
            job: row.named_job.as_deref(),
            chat,
        },
    );
    let rule = decision
        .rule
        .map(|i| format!("policy rule {}", i + 1))
        .unwrap_or_else(|| {
            if chat {
                "the default chat policy (policy.chat_default)".into()
            } else {
                "the default policy (policy.default)".into()
            }
        });
    shared.jobs.with(|m| {
        m.update(row.id, |j| {
            j.node = node.to_string();
            // Only a job that is dispatched now keeps its reservation.
            j.reserved = decision.action == Action::Allow;
        })
    });
    let moved = |row: &JobRow| -> Result<(), ApiError> {
        if shared.store.tx(|tx| tx.move_job(row, from))? {
            Ok(())
        } else {
            Err(err(
                ErrorCode::FailedPrecondition,
                format!("job {} changed state while it was being decided", row.id),
            ))
        }
    };
    match decision.action {
        Action::Deny => {
            let reason = format!("denied by {rule}");
            row.state = JobState::Denied;
            row.finished_at = Some(unix_now());
            row.reason = Some(reason.clone());
            moved(&row)?;
            finish_live(shared, row.id, JobState::Denied);
            Err(err(
                ErrorCode::Denied,
                format!(
                    "job {} {reason}; ask an admin to change [policy] in gateway.toml",
                    row.id
                ),
            ))
        }
        Action::Approve => {
            row.state = JobState::AwaitingApproval;
            row.approvers = decision.approvers;
            row.allow_self = decision.allow_self_approval;
            moved(&row)?;
            set_progress_state(shared, row.id, JobState::AwaitingApproval);
            tokio::spawn(expire_approval(
                shared.clone(),
                row.id,
                row.created_at + cfg.policy.approval_timeout.as_secs(),
            ));
            tracing::info!(job = row.id, approvers = ?row.approvers, "job awaits approval");
            Ok(row.info())
        }
        Action::Allow => {
            row.state = JobState::Starting;
            moved(&row)?;
            dispatch(shared, row.id)?;
            Ok(row.info())
        }
    }
}

async fn wait_in_queue(shared: Arc<Shared>, id: u64, r: Resolved, chat: bool) {
    loop {
        let Ok(Some(row)) = shared.store.tx(|tx| tx.job(id)) else {
            return;
        };
        if row.state != JobState::Queued {
            return;
        }
        let routed = {
            let _routing = shared.jobs.route_lock();
            let routed = route(&shared, &r);
            if let Ok(node) = &routed {
                shared.jobs.with(|m| {
                    m.update(id, |j| {
                        j.node = node.clone();
                        j.reserved = true;
                    })
                });
            }
            routed
        };
        match routed {
            Ok(node) => {
                if let Err(e) = decide(&shared, row, JobState::Queued, &node, &r, chat) {
                    tracing::info!(job = id, error = %e.message, "queued job not started");
                }
                return;
            }
            Err(e) if e.is_busy() && row.queue_until.is_some_and(|t| unix_now() < t) => {}
            Err(e) => {
                let msg = match e {
                    RouteError::Busy(m) => format!("gave up waiting for capacity: {m}"),
                    RouteError::Unknown(m) | RouteError::Unavailable(m) => m,
                };
                let _ = end(&shared, id, JobState::Expired, None, &msg);
                return;
            }
        }
        let _ =
            tokio::time::timeout(Duration::from_millis(500), shared.jobs.capacity.notified()).await;
    }
}

async fn expire_approval(shared: Arc<Shared>, id: u64, at: u64) {
    let wait = at.saturating_sub(unix_now());
    tokio::time::sleep(Duration::from_secs(wait)).await;
    // `end` moves the job only if it is still awaiting approval: an
    // approval that won the race keeps it.
    let _ = end_if(
        &shared,
        id,
        &[JobState::AwaitingApproval],
        JobState::Expired,
        None,
        "nobody approved it in time (policy.approval_timeout)",
    );
}

fn set_progress_state(shared: &Shared, id: u64, state: JobState) {
    shared.jobs.with(|m| {
        if let Some(j) = m.jobs.get(&id) {
            j.progress
                .send_modify(|p| p.state = state.as_str().to_string());
        }
    });
}

fn finish_live(shared: &Shared, id: u64, state: JobState) {
    set_progress_state(shared, id, state);
    // Dropping the sender wakes every follower for a last look at the store.
    shared.jobs.with(|m| m.remove(id));
    shared.jobs.capacity.notify_waiters();
}

/// Ends a job in a final state, from whatever live state it is in.
fn end(
    shared: &Shared,
    id: u64,
    state: JobState,
    exit_code: Option<i32>,
    reason: &str,
) -> Result<Option<JobRow>, ApiError> {
    end_if(
        shared,
        id,
        &[
            JobState::Queued,
            JobState::AwaitingApproval,
            JobState::Starting,
            JobState::Running,
        ],
        state,
        exit_code,
        reason,
    )
}

/// Ends a job in `state` if it is in one of `from` now; returns the ended
/// row, or `None` when the job was elsewhere (another decision won).
fn end_if(
    shared: &Shared,
    id: u64,
    from: &[JobState],
    state: JobState,
    exit_code: Option<i32>,
    reason: &str,
) -> Result<Option<JobRow>, ApiError> {
    end_with(shared, id, from, state, |row| {
        row.exit_code = exit_code;
        if !reason.is_empty() {
            row.reason = Some(reason.to_string());
        }
    })
}

fn end_with(
    shared: &Shared,
    id: u64,
    from: &[JobState],
    state: JobState,
    fill: impl FnOnce(&mut JobRow),
) -> Result<Option<JobRow>, ApiError> {
    let now = unix_now();
    let row = shared.store.tx(|tx| {
        let mut row = tx.job(id)?.ok_or_else(|| no_job(id))?;
        let was = row.state;
        if !from.contains(&was) || !was.can_move_to(state) {
            return Ok(None);
        }
        row.state = state;
        row.finished_at = Some(now);
        fill(&mut row);
        Ok::<_, ApiError>(tx.move_job(&row, was)?.then_some(row))
    })?;
    if let Some(row) = &row {
        tracing::info!(job = id, state = %state, exit_code = ?row.exit_code, reason = ?row.reason, "job ended");
        finish_live(shared, id, state);
    }
    Ok(row)
}

/// Sends a job's frozen plan to its node. The job must be `starting`
/// (moved there by the decision that allowed it); dispatch checks that
/// again, so a job denied, cancelled or expired meanwhile never leaves.
fn dispatch(shared: &Arc<Shared>, id: u64) -> Result<(), ApiError> {
    // Mark it on the node first: a cancel from now on goes to the node.
    let live = shared.jobs.with(|m| {
        m.update(id, |j| {
            j.on_node = true;
            j.reserved = false;
        })
        .is_some()
    });
    let row = stored_job(shared, id)?;
    if !live || row.state != JobState::Starting {
        shared.jobs.with(|m| m.update(id, |j| j.on_node = false));
        return Err(err(
            ErrorCode::FailedPrecondition,
            format!("job {id} is {}; not sending it to its node", row.state),
        ));
    }
    if plan_digest(&row.plan)? != row.plan_digest {
        end(
            shared,
            id,
            JobState::Failed,
            None,
            "the stored plan no longer matches its digest; refusing to run it",
        )?;
        return Err(err(
            ErrorCode::Internal,
            format!("job {id}: plan digest mismatch; not run"),
        ));
    }
    let Some(control) = shared.registry.control(&row.node) else {
        let msg = format!("node {} is offline; run 'openclaw node list'", row.node);
        end(shared, id, JobState::Failed, None, &msg)?;
        return Err(err(ErrorCode::Unavailable, msg));
    };
    set_progress_state(shared, id, JobState::Starting);
    if control
        .try_send(ControlMsg::RunJob(row.plan.clone()))
        .is_err()
    {
        let msg = format!(
            "node {} disconnected or is not reading its control stream; the job was not sent",
            row.node
        );
        end(shared, id, JobState::Failed, None, &msg)?;
        return Err(err(ErrorCode::Unavailable, msg));
    }
    let s = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(START_TIMEOUT).await;
        let attached = s.jobs.with(|m| m.jobs.get(&id).map(|j| j.attach_gen > 0));
        if attached == Some(false) {
            let _ = end(
                &s,
                id,
                JobState::Lost,
                None,
                "the node did not start the job in time",
            );
        }
    });
    Ok(())
}

/// Cancels a job.
pub fn cancel(
    shared: &Arc<Shared>,
    peer: &Peer,
    id: u64,
    on_behalf_of: Option<&str>,
) -> Result<String, ApiError> {
    let who = identity(peer, on_behalf_of)?;
    let row = stored_job(shared, id)?;
    if peer.role != Role::Admin && who != row.requester && !row.approvers.contains(&who) {
        return Err(err(
            ErrorCode::PermissionDenied,
            format!(
                "{who} may not cancel job {id}: only its requester, its approvers or an admin may"
            ),
        ));
    }
    if row.state.is_terminal() {
        return Err(err(
            ErrorCode::FailedPrecondition,
            format!(
                "job {id} already ended ({}{}); nothing to cancel",
                row.state,
                exit_text(&row)
            ),
        ));
    }
    shared
        .store
        .tx(|tx| tx.audit(unix_now(), &who, "job.cancel", &id.to_string(), ""))?;
    cancel_job(shared, id, &format!("cancelled by {who} before it started"))
}

/// Cancels a live job: on its node, SIGTERM then SIGKILL; before that, at once.
fn cancel_job(shared: &Shared, id: u64, reason: &str) -> Result<String, ApiError> {
    let grace = shared.config().kill_grace.as_secs();
    let sent = shared.jobs.with(|m| match m.jobs.get_mut(&id) {
        Some(j) if j.on_node => {
            j.cancel_requested = true;
            if let Some(ctl) = &j.ctl {
                let _ = ctl.try_send(JobCtl::Cancel { grace_secs: grace });
            }
            true
        }
        _ => false,
    });
    if sent {
        return Ok(format!(
            "cancelling job {id}: SIGTERM now, SIGKILL after {grace}s"
        ));
    }
    match end_if(
        shared,
        id,
        &[JobState::Queued, JobState::AwaitingApproval],
        JobState::Cancelled,
        None,
        reason,
    )? {
        Some(_) => Ok(format!("cancelled job {id}")),
        None => Err(err(
            ErrorCode::FailedPrecondition,
            format!("job {id} changed state meanwhile; run 'openclaw job show {id}'"),
        )),
    }
}

fn exit_text(row: &JobRow) -> String {
    row.exit_code
        .map(|c| format!(", exit code {c}"))
        .unwrap_or_default()
}

/// A job's stored row, or "no job with id N".
fn stored_job(shared: &Shared, id: u64) -> Result<JobRow, ApiError> {
    shared.store.tx(|tx| tx.job(id))?.ok_or_else(|| no_job(id))
}

fn no_job(id: u64) -> ApiError {
    err(
        ErrorCode::NotFound,
        format!("no job with id {id}; run 'openclaw job list'"),
    )
}

/// Approves a job awaiting approval. The check and the move to `starting`
/// happen in one transaction, conditional on the job still awaiting
/// approval, so an approval racing a deny, a cancel or the expiry either
/// wins outright or changes nothing.
pub fn approve(
    shared: &Arc<Shared>,
    peer: &Peer,
    id: u64,
    digest: Option<&str>,
    on_behalf_of: Option<&str>,
) -> Result<String, ApiError> {
    let who = identity(peer, on_behalf_of)?;
    if let Some(member) = shared.store.tx(|tx| tx.job(id))?
        && let Some(fan) = member.fanout
    {
        return fanout::approve(shared, fan, &member, &who, digest);
    }
    let row = shared.store.tx(|tx| {
        let mut row = tx.job(id)?.ok_or_else(|| no_job(id))?;
        if row.state != JobState::AwaitingApproval {
            return Err(err(
                ErrorCode::FailedPrecondition,
                format!("job {id} is {}, not awaiting approval", row.state),
            ));
        }
        policy::may_approve(&row.approvers, row.allow_self, &row.requester, &who).map_err(|m| {
            err(
                ErrorCode::PermissionDenied,
                format!("cannot approve job {id}: {m}"),
            )
        })?;
        if let Some(d) = digest
            && d != row.plan_digest
        {
            return Err(err(
                ErrorCode::FailedPrecondition,
                format!(
                    "job {id}'s plan is {}, not {d}; review it with 'openclaw job show {id}'",
                    row.plan_digest
                ),
            ));
        }
        row.approved_by = Some(who.clone());
        row.state = JobState::Starting;
        if !tx.move_job(&row, JobState::AwaitingApproval)? {
            return Err(err(
                ErrorCode::FailedPrecondition,
                format!("job {id} stopped awaiting approval meanwhile"),
            ));
        }
        tx.audit(
            unix_now(),
            &who,
            "job.approve",
            &id.to_string(),
            &row.plan_digest,
        )?;
        Ok::<_, ApiError>(row)
    })?;
    tracing::info!(job = id, by = %who, "job approved");
    dispatch(shared, id)?;
    Ok(format!("approved job {id}; it is starting on {}", row.node))
}

/// Denies (or, for its requester, withdraws) a job awaiting approval.
pub fn deny(
    shared: &Arc<Shared>,
    peer: &Peer,
    id: u64,
    reason: Option<&str>,
    on_behalf_of: Option<&str>,
) -> Result<String, ApiError> {
    let who = identity(peer, on_behalf_of)?;
    let row = stored_job(shared, id)?;
    if row.state != JobState::AwaitingApproval {
        return Err(err(
            ErrorCode::FailedPrecondition,
            format!("job {id} is {}, not awaiting approval", row.state),
        ));
    }
    if who != row.requester && !row.approvers.contains(&who) {
        return Err(err(
            ErrorCode::PermissionDenied,
            format!(
                "{who} may not deny job {id}: only its requester or an approver ({}) may",
                row.approvers.join(", ")
            ),
        ));
    }
    let reason = match (who == row.requester, reason) {
        (true, Some(r)) => format!("withdrawn by {who}: {r}"),
        (true, None) => format!("withdrawn by {who}"),
        (false, Some(r)) => format!("denied by {who}: {r}"),
        (false, None) => format!("denied by {who}"),
    };
    let reason: String = reason.chars().take(MAX_REASON).collect();
    if let Some(fan) = row.fanout {
        let n = fanout::deny(shared, fan, &reason)?;
        shared
            .store
            .tx(|tx| tx.audit(unix_now(), &who, "fanout.deny", &fan.to_string(), &reason))?;
        return Ok(format!("fan-out {fan} ({n} nodes) {reason}"));
    }
    match end_if(
        shared,
        id,
        &[JobState::AwaitingApproval],
        JobState::Denied,
        None,
        &reason,
    )? {
        Some(_) => {
            shared
                .store
                .tx(|tx| tx.audit(unix_now(), &who, "job.deny", &id.to_string(), &reason))?;
            Ok(format!("job {id} {reason}"))
        }
        None => Err(err(
            ErrorCode::FailedPrecondition,
            format!("job {id} stopped awaiting approval meanwhile; run 'openclaw job show {id}'"),
        )),
    }
}

/// Most bytes of job records in one `job list` page (the reply frame's
/// limit is 1 MiB; a page ends early rather than overflow it).
const PAGE_BYTES: usize = 768 * 1024;

/// Longest reason text kept.
const MAX_REASON: usize = 500;

/// A job record, if `peer` (for `who`) may see it.
pub fn show(
    shared: &Shared,
    peer: &Peer,
    id: u64,
    on_behalf_of: Option<&str>,
) -> Result<JobInfo, ApiError> {
    let who = identity(peer, on_behalf_of)?;
    let row = stored_job(shared, id)?;
    check_visible(shared, peer, &who, &row)?;
    Ok(live_info(shared, &row))
}

/// A page of jobs `peer` (for `who`) may see, newest first.
pub fn list(
    shared: &Shared,
    peer: &Peer,
    limit: u32,
    before: Option<u64>,
    on_behalf_of: Option<&str>,
) -> Result<Vec<JobInfo>, ApiError> {
    let who = identity(peer, on_behalf_of)?;
    let limit = limit.clamp(1, proto::MAX_JOB_PAGE);
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = before;
    // Scan at most a few pages for a chat user's own jobs.
    for _ in 0..8 {
        let rows = shared.store.tx(|tx| tx.jobs(proto::MAX_JOB_PAGE, cursor))?;
        let Some(last) = rows.last() else {
            break;
        };
        cursor = Some(last.id);
        for r in &rows {
            if check_visible(shared, peer, &who, r).is_ok() {
                let info = live_info(shared, r);
                // A page always fits in one reply frame, whatever the argv.
                bytes += proto::codec::encode(&info).map(|b| b.len()).unwrap_or(0);
                if bytes > PAGE_BYTES && !out.is_empty() {
                    return Ok(out);
                }
                out.push(info);
                if out.len() >= limit as usize {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// The record of a job, for the stored view a follower ends with.
fn record(shared: &Shared, id: u64) -> Result<JobInfo, ApiError> {
    let row = stored_job(shared, id)?;
    Ok(live_info(shared, &row))
}

/// A job's record, with fresher byte counts if it is live (the store
/// records them now and then).
pub fn live_info(shared: &Shared, row: &JobRow) -> JobInfo {
    let mut info = row.info();
    if let Some(rx) = shared.jobs.subscribe(row.id) {
        let p = rx.borrow();
        info.stdout_bytes = info.stdout_bytes.max(p.stdout);
        info.stderr_bytes = info.stderr_bytes.max(p.stderr);
    }
    info
}

/// Ends the live jobs of a node or client whose credential was revoked:
/// a revoked node's jobs are lost (its connection is gone); a revoked
/// client's jobs that have not started are cancelled. Returns how many.
pub fn end_for_revoked(shared: &Shared, node: Option<&str>, via: Option<&str>) -> usize {
    let rows = match shared.store.tx(|tx| tx.unfinished_jobs()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot list jobs of a revoked credential");
            return 0;
        }
    };
    let mut n = 0;
    for r in rows {
        let ended = if node.is_some_and(|name| r.node == name) {
            end(
                shared,
                r.id,
                JobState::Lost,
                None,
                &format!("node {} was revoked", r.node),
            )
        } else if via.is_some_and(|v| r.via == v) {
            end_if(
                shared,
                r.id,
                &[JobState::Queued, JobState::AwaitingApproval],
                JobState::Cancelled,
                None,
                &format!("the credential {} that submitted it was revoked", r.via),
            )
        } else {
            continue;
        };
        if matches!(ended, Ok(Some(_))) {
            n += 1;
        }
    }
    n
}

/// Marks jobs left unfinished by a previous gateway process.
pub fn recover(shared: &Arc<Shared>) -> Result<(), ApiError> {
    let cfg = shared.config();
    let rows = shared.store.tx(|tx| tx.unfinished_jobs())?;
    for row in &rows {
        shared
            .jobs
            .insert(row.id, &row.node, row.plan.gpus, row.state, false);
        match row.state {
            // A fan-out's driver and approval timer own its members.
            JobState::Queued | JobState::AwaitingApproval if row.fanout.is_some() => {}
            JobState::AwaitingApproval => {
                tokio::spawn(expire_approval(
                    shared.clone(),
                    row.id,
                    row.created_at + cfg.policy.approval_timeout.as_secs(),
                ));
            }
            JobState::Starting | JobState::Running => {
                // The node kept running it; it re-attaches when it reconnects.
                shared.jobs.with(|m| m.update(row.id, |j| j.on_node = true));
                watch_for_reattach(
                    shared.clone(),
                    row.id,
                    0,
                    "the node did not re-attach the job after the gateway restarted",
                );
            }
            _ => {
                end(
                    shared,
                    row.id,
                    JobState::Lost,
                    None,
                    "the gateway restarted while the job was queued",
                )?;
            }
        }
    }
    fanout::recover(shared, &rows);
    Ok(())
}

// --- output storage -----------------------------------------------------------

fn log_path(shared: &Shared, id: u64, stream: OutStream) -> PathBuf {
    shared.logs_dir.join(format!(
        "{id}.{}",
        match stream {
            OutStream::Stdout => "stdout",
            OutStream::Stderr => "stderr",
        }
    ))
}

/// Deletes a job's stored output (retention).
pub fn remove_logs(shared: &Shared, id: u64) {
    for s in [OutStream::Stdout, OutStream::Stderr] {
        let _ = std::fs::remove_file(log_path(shared, id, s));
    }
}

/// Serves a job stream a node opened.
pub async fn node_job_stream(
    shared: Arc<Shared>,
    peer: Peer,
    id: u64,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    // Control messages (cancel, done) on a bounded channel; acks are
    // cumulative, so only the latest matters: a watch, never a queue.
    let (tx, mut rx) = mpsc::channel::<JobCtl>(CTL_QUEUE);
    let (acks, mut acks_rx) = watch::channel([0u64; 2]);
    let grace = shared.config().kill_grace.as_secs();
    let accepted = shared.jobs.with(|m| match m.jobs.get_mut(&id) {
        Some(j) if j.node == peer.name && j.on_node => {
            // A newer stream replaces an older one (after a reconnect the
            // old one may not have noticed yet): its writer ends when its
            // sender is replaced here.
            j.attach_gen += 1;
            j.attached = true;
            if j.cancel_requested {
                let _ = tx.try_send(JobCtl::Cancel { grace_secs: grace });
            }
            j.ctl = Some(tx.clone());
            Ok((j.progress.clone(), j.tail.clone(), j.attach_gen, j.received))
        }
        Some(j) if j.node != peer.name => {
            Err(format!("job {id} is not assigned to node {}", peer.name))
        }
        Some(_) => Err(format!("job {id} is not expecting output")),
        None => Err(format!("job {id} is not a live job of node {}", peer.name)),
    });
    let (progress, tail, attach, received) = match accepted {
        Ok(p) => p,
        Err(msg) => {
            tracing::warn!(node = %peer.name, job = id, "refused a job stream: {msg}");
            let _ = mesh::write_frame(&mut send, &JobCtl::Reject { reason: msg }).await;
            let _ = send.finish();
            return;
        }
    };
    let truncated = shared
        .store
        .tx(|tx| tx.job(id))
        .ok()
        .flatten()
        .map(|r| (r.truncated, [r.stdout_bytes, r.stderr_bytes]));
    let open = |s: OutStream| {
        let i = usize::from(s == OutStream::Stderr);
        let hint = received
            .map(|r| r[i])
            .or_else(|| truncated.filter(|t| t.0).map(|t| t.1[i]));
        LogFile::open(
            &log_path(&shared, id, s),
            hint,
            truncated.is_some_and(|t| t.0),
        )
    };
    let (out, errf) = match (open(OutStream::Stdout), open(OutStream::Stderr)) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(job = id, error = %e, "cannot open the job log");
            return;
        }
    };
    // The writer thread raises what file readers may read, acks the node
    // and records the re-attachment point, each only once bytes are written.
    let durable = {
        let shared = shared.clone();
        move |received: [u64; 2]| {
            shared.jobs.with(|m| {
                if let Some(j) = m.jobs.get_mut(&id).filter(|j| j.attach_gen == attach) {
                    j.received = Some(received);
                }
            });
        }
    };
    let sink = LogSink::new(
        log_path(&shared, id, OutStream::Stdout),
        log_path(&shared, id, OutStream::Stderr),
        progress.clone(),
        acks,
        durable,
    );
    let resume = JobCtl::Resume {
        stdout_from: out.received,
        stderr_from: errf.received,
    };
    if mesh::write_frame(&mut send, &resume).await.is_err() {
        detach(&shared, id, attach);
        return;
    }
    if attach > 1 {
        tracing::info!(node = %peer.name, job = id, stdout = out.received, stderr = errf.received, "job re-attached");
    }
    let ctl_writer = tokio::spawn(async move {
        let mut acking = true;
        loop {
            let msg = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
                changed = acks_rx.changed(), if acking => {
                    if changed.is_err() {
                        acking = false;
                        continue;
                    }
                    let [stdout, stderr] = *acks_rx.borrow_and_update();
                    JobCtl::Ack { stdout, stderr }
                }
            };
            if mesh::write_frame(&mut send, &msg).await.is_err() {
                return;
            }
        }
        let _ = send.finish();
    });
    let outcome = store_output(&shared, id, &progress, &tail, &mut recv, out, errf, &sink).await;
    // Everything received is written before the job's end is recorded or
    // it detaches (a re-attachment resumes from what is on disk).
    let outcome = match shared.log_writer.flush(&sink).await {
        Ok(()) => outcome,
        Err(e) => Err(e),
    };
    drop(sink);
    let result = match outcome {
        Ok(Some(JobFrame::Exit {
            code,
            timed_out,
            cancelled,
            killed,
        })) => {
            let state = if timed_out {
                JobState::TimedOut
            } else if cancelled {
                JobState::Cancelled
            } else {
                JobState::Exited
            };
            let reason = if timed_out {
                "killed after its timeout"
            } else if cancelled {
                "cancelled"
            } else {
                ""
            };
            end_with(
                &shared,
                id,
                &[JobState::Starting, JobState::Running],
                state,
                |row| {
                    row.exit_code = Some(code);
                    row.processes_killed = killed;
                    if !reason.is_empty() {
                        row.reason = Some(reason.into());
                    }
                },
            )
        }
        Ok(Some(JobFrame::Refused { reason })) => end_if(
            &shared,
            id,
            &[JobState::Starting],
            JobState::Denied,
            None,
            &format!(
                "refused by node {}'s policy: {}",
                peer.name,
                proto::names::printable(&reason, MAX_REASON)
            ),
        ),
        Ok(Some(JobFrame::Failed { reason })) => end(
            &shared,
            id,
            JobState::Failed,
            None,
            &format!(
                "node {}: {}",
                peer.name,
                proto::names::printable(&reason, MAX_REASON)
            ),
        ),
        Ok(_) | Err(_) => {
            if let Err(e) = &outcome {
                tracing::info!(node = %peer.name, job = id, "job stream ended: {e}");
            }
            detach(&shared, id, attach);
            ctl_writer.abort();
            return;
        }
    };
    match result {
        Ok(_) => {
            // Tell the node it may forget the job, then let the writer finish.
            let _ = tx.try_send(JobCtl::Done);
            drop(tx);
            let _ = tokio::time::timeout(Duration::from_secs(5), ctl_writer).await;
        }
        Err(e) => {
            tracing::error!(job = id, error = %e.message, "could not record the end of a job")
        }
    }
}

/// The stream of attachment `attach` ended without the job's end: wait for the
/// node to re-attach, and declare the job lost if it does not in time.
fn detach(shared: &Arc<Shared>, id: u64, attach: u64) {
    let current = shared.jobs.with(|m| match m.jobs.get_mut(&id) {
        Some(j) if j.attach_gen == attach => {
            j.attached = false;
            true
        }
        _ => false,
    });
    if current {
        watch_for_reattach(
            shared.clone(),
            id,
            attach,
            "the node did not re-attach the job in time",
        );
    }
}

fn watch_for_reattach(shared: Arc<Shared>, id: u64, attach: u64, why: &'static str) {
    let grace = shared.config().job_grace;
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        let still = shared.jobs.with(|m| {
            m.jobs
                .get(&id)
                .map(|j| !j.attached && j.attach_gen == attach)
        });
        if still == Some(true) {
            let _ = end(
                &shared,
                id,
                JobState::Lost,
                None,
                &format!("{why} ({}s)", grace.as_secs()),
            );
        }
    });
}

/// Reads job frames into the log files until the job ends. Returns the
/// final frame.
/// Reads a job stream: output goes to live followers at once and to the
/// log writer behind them; returns the job's last frame.
#[allow(clippy::too_many_arguments)]
async fn store_output(
    shared: &Shared,
    id: u64,
    progress: &watch::Sender<Progress>,
    tail: &tokio::sync::broadcast::Sender<TailChunk>,
    recv: &mut quinn::RecvStream,
    mut out: LogFile,
    mut errf: LogFile,
    sink: &std::sync::Arc<LogSink>,
) -> Result<Option<JobFrame>, String> {
    let cap = shared.config().output_cap;
    let mut last_flush = std::time::Instant::now();
    loop {
        let frame = match mesh::read_incoming::<JobFrame>(recv, JOB_FRAME_LIMIT).await {
            Ok(Some(mesh::Incoming::Message(f))) => f,
            Ok(Some(mesh::Incoming::Data {
                stream,
                offset,
                len,
            })) => {
                let f = match stream {
                    OutStream::Stdout => &mut out,
                    OutStream::Stderr => &mut errf,
                };
                let mut at = offset;
                mesh::read_data(recv, len, |chunk| {
                    let n = chunk.len() as u64;
                    shared
                        .metrics
                        .bytes_relayed
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    f.append(at, chunk, cap)?;
                    at += n;
                    Ok(())
                })
                .await
                .map_err(|e| format!("the job stream broke: {e}"))?;
                // Live followers get the bytes from memory first, then the
                // new length; a follower that lags reads the file instead.
                let taken = f.take();
                if let Some((offset, _)) = taken.first() {
                    let data = taken.iter().map(|(_, b)| b.clone()).collect();
                    let _ = tail.send(TailChunk {
                        stream,
                        offset: *offset,
                        data,
                    });
                    shared
                        .log_writer
                        .write(
                            sink,
                            usize::from(stream == OutStream::Stderr),
                            taken,
                            [out.received, errf.received],
                            [out.written, errf.written],
                        )
                        .await?;
                }
                if last_flush.elapsed() > Duration::from_secs(1) {
                    record_bytes(shared, id, &out, &errf);
                    last_flush = std::time::Instant::now();
                }
                continue;
            }
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("the job stream broke: {e}")),
        };
        match frame {
            JobFrame::Started { pid, gpus } => {
                tracing::info!(job = id, pid, ?gpus, "job started");
                let now = unix_now();
                let started = shared
                    .store
                    .tx(|tx| {
                        let Some(mut row) = tx.job(id)? else {
                            return Ok(false);
                        };
                        if row.state != JobState::Starting {
                            // Sent again after a reconnect: already running.
                            return Ok(row.state == JobState::Running);
                        }
                        row.state = JobState::Running;
                        row.started_at = Some(now);
                        tx.move_job(&row, JobState::Starting)
                    })
                    .map_err(|e| e.to_string())?;
                if started {
                    progress.send_modify(|p| p.state = JobState::Running.as_str().into());
                }
            }
            last @ (JobFrame::Exit { .. } | JobFrame::Failed { .. } | JobFrame::Refused { .. }) => {
                record_bytes(shared, id, &out, &errf);
                return Ok(Some(last));
            }
        }
    }
}

fn record_bytes(shared: &Shared, id: u64, out: &LogFile, err: &LogFile) {
    let _ = shared.store.tx(|tx| {
        tx.set_job_bytes(
            id,
            out.received,
            err.received,
            out.truncated || err.truncated,
        )
    });
}

// --- followers ----------------------------------------------------------------

/// Streams a job's output from the given offsets; with `follow`, until it
/// ends. Sends `State` whenever the state differs from what the follower
/// last heard (`known_state`, e.g. the state in `Accepted`) and `End` last.
pub async fn follow(
    shared: &Shared,
    id: u64,
    follow: bool,
    stdout_from: u64,
    stderr_from: u64,
    known_state: Option<&str>,
    send: &mut impl FollowSink,
) -> Result<(), mesh::StreamError> {
    let (mut rx, mut tail) = match shared.jobs.follow(id) {
        Some((p, t)) => (Some(p), Some(t)),
        None => (None, None),
    };
    let mut last_state: Option<String> = known_state.map(str::to_string);
    let mut out = LogReader::new(
        log_path(shared, id, OutStream::Stdout),
        OutStream::Stdout,
        stdout_from,
    );
    let mut err = LogReader::new(
        log_path(shared, id, OutStream::Stderr),
        OutStream::Stderr,
        stderr_from,
    );
    // Allocated on the first file read: most followers (every member of a
    // fan-out of `true`) never read a file, and 10,000 zeroed 256 KiB
    // buffers were most of a large fan-out's page faults.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Live output from memory first; whatever is missing then comes
        // from the file (a follower that joined late or fell behind).
        while let Some(t) = tail.as_mut() {
            match t.try_recv() {
                Ok(c) => {
                    let reader = if c.stream == OutStream::Stdout {
                        &mut out
                    } else {
                        &mut err
                    };
                    reader.send_live(&c, send).await?;
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                Err(tokio::sync::broadcast::error::TryRecvError::Closed) => tail = None,
            }
        }
        let (progress, live) = match &rx {
            Some(rx) => (rx.borrow().clone(), true),
            None => (stored_progress(shared, id), false),
        };
        out.send_to(progress.stdout, &mut buf, send).await?;
        err.send_to(progress.stderr, &mut buf, send).await?;
        let done = !live || proto::is_terminal_state(&progress.state);
        if done || !follow {
            let info = match record(shared, id) {
                Ok(i) => i,
                Err(e) => return send.event(JobEvent::Error(e)).await,
            };
            if live && !proto::is_terminal_state(&info.state) && follow {
                // Raced with the end of the job; look again.
                continue;
            }
            return send.event(JobEvent::End(info)).await;
        }
        if last_state.as_deref() != Some(progress.state.as_str()) {
            // A state the follower has not heard yet, the first one
            // included: a job may already be running when following starts.
            if let Ok(info) = record(shared, id) {
                send.event(JobEvent::State(info)).await?;
            }
            last_state = Some(progress.state.clone());
        }
        // Wake for bytes written or a new state (progress), or for a live
        // chunk, which reaches followers before the log writer has it.
        match (rx.as_mut(), tail.as_mut()) {
            (Some(r), Some(t)) => tokio::select! {
                changed = r.changed() => {
                    if changed.is_err() {
                        rx = None;
                    }
                }
                chunk = t.recv() => match chunk {
                    Ok(c) => {
                        let reader = if c.stream == OutStream::Stdout {
                            &mut out
                        } else {
                            &mut err
                        };
                        reader.send_live(&c, send).await?;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => tail = None,
                },
            },
            (Some(r), None) => {
                if r.changed().await.is_err() {
                    rx = None;
                }
            }
            (None, _) => {}
        }
    }
}

/// Where [`follow`] writes: a client's stream, or a fan-out's merger.
pub trait FollowSink: Send {
    /// Contiguous output of `stream` starting at `offset`.
    fn data(
        &mut self,
        stream: OutStream,
        offset: u64,
        parts: &mut Vec<bytes::Bytes>,
    ) -> impl Future<Output = Result<(), mesh::StreamError>> + Send;
    /// A job event (never `Output`).
    fn event(&mut self, ev: JobEvent)
    -> impl Future<Output = Result<(), mesh::StreamError>> + Send;
}

impl FollowSink for quinn::SendStream {
    async fn data(
        &mut self,
        stream: OutStream,
        offset: u64,
        parts: &mut Vec<bytes::Bytes>,
    ) -> Result<(), mesh::StreamError> {
        mesh::write_data_chunks(self, stream, offset, parts).await
    }

    async fn event(&mut self, ev: JobEvent) -> Result<(), mesh::StreamError> {
        mesh::write_frame(self, &ev).await
    }
}

fn stored_progress(shared: &Shared, id: u64) -> Progress {
    let len = |s| {
        std::fs::metadata(log_path(shared, id, s))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    Progress {
        stdout: len(OutStream::Stdout),
        stderr: len(OutStream::Stderr),
        state: String::new(),
    }
}

/// A follower's position in one log file; the file stays open while it follows.
struct LogReader {
    path: PathBuf,
    stream: OutStream,
    offset: u64,
    file: Option<File>,
}

impl LogReader {
    fn new(path: PathBuf, stream: OutStream, offset: u64) -> LogReader {
        LogReader {
            path,
            stream,
            offset,
            file: None,
        }
    }

    /// Sends a live chunk if it continues where this reader is; a chunk
    /// after a gap is left for the file catch-up.
    async fn send_live(
        &mut self,
        c: &TailChunk,
        send: &mut impl FollowSink,
    ) -> Result<(), mesh::StreamError> {
        let end = c.offset + c.len();
        if c.offset > self.offset || end <= self.offset {
            return Ok(());
        }
        let mut skip = usize::try_from(self.offset - c.offset).unwrap_or(0);
        let mut parts: Vec<bytes::Bytes> = Vec::with_capacity(c.data.len());
        for b in &c.data {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            parts.push(b.slice(skip..));
            skip = 0;
        }
        send.data(self.stream, self.offset, &mut parts).await?;
        self.offset = end;
        // The file position is now stale.
        self.file = None;
        Ok(())
    }

    /// Sends the bytes from the current offset up to `to`.
    async fn send_to(
        &mut self,
        to: u64,
        buf: &mut Vec<u8>,
        send: &mut impl FollowSink,
    ) -> Result<(), mesh::StreamError> {
        if self.offset >= to {
            return Ok(());
        }
        if self.file.is_none() {
            let Ok(mut f) = File::open(&self.path) else {
                return Ok(());
            };
            if f.seek(SeekFrom::Start(self.offset)).is_err() {
                return Ok(());
            }
            self.file = Some(f);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        if buf.is_empty() {
            buf.resize(FOLLOW_CHUNK, 0);
        }
        while self.offset < to {
            let want =
                usize::try_from((to - self.offset).min(buf.len() as u64)).unwrap_or(buf.len());
            let n = match file.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => n,
            };
            send.data(
                self.stream,
                self.offset,
                &mut vec![bytes::Bytes::copy_from_slice(&buf[..n])],
            )
            .await?;
            self.offset += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::parse(&format!(
            "[jobs.training]\ncommand = [\"python\", \"train.py\"]\nrole = \"gpu\"\ncwd = \"/srv/lab\"\naliases = [\"train model\"]\n{extra}"
        ))
        .unwrap()
    }

    fn spec() -> JobSpec {
        JobSpec::default()
    }

    #[test]
    fn resolve_named_job() {
        let c = cfg("");
        let r = resolve(
            &c,
            &JobSpec {
                job: Some("training".into()),
                ..spec()
            },
            false,
        )
        .unwrap();
        assert_eq!(r.argv, vec!["python", "train.py"]);
        assert_eq!(r.role.as_deref(), Some("gpu"));
        assert_eq!(r.gpus, 1);
        assert_eq!(r.cwd.as_deref(), Some("/srv/lab"));
        // An explicit node overrides the job's role.
        let r = resolve(
            &c,
            &JobSpec {
                job: Some("train model".into()),
                node: Some("n1".into()),
                ..spec()
            },
            false,
        )
        .unwrap();
        assert_eq!((r.node.as_deref(), r.role.as_deref()), (Some("n1"), None));
        let e = resolve(
            &c,
            &JobSpec {
                job: Some("trainin".into()),
                ..spec()
            },
            false,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(
            e.message.contains("did you mean training?"),
            "{}",
            e.message
        );
        let e = resolve(
            &c,
            &JobSpec {
                job: Some("training".into()),
                argv: vec!["x".into()],
                ..spec()
            },
            false,
        )
        .unwrap_err();
        assert!(e.message.contains("fixes its command"), "{}", e.message);
    }

    #[test]
    fn resolve_bad_input() {
        let c = cfg("");
        let node = || Some("n".to_string());
        let cases: Vec<(JobSpec, &str)> = vec![
            (
                JobSpec {
                    node: node(),
                    ..spec()
                },
                "empty command",
            ),
            (
                JobSpec {
                    node: node(),
                    argv: vec![String::new()],
                    ..spec()
                },
                "empty command",
            ),
            (
                JobSpec {
                    argv: vec!["ls".into()],
                    ..spec()
                },
                "say where to run it",
            ),
            (
                JobSpec {
                    node: node(),
                    role: Some("gpu".into()),
                    argv: vec!["ls".into()],
                    ..spec()
                },
                "not both",
            ),
            (
                JobSpec {
                    node: node(),
                    argv: vec!["ls".into()],
                    timeout_secs: Some(0),
                    ..spec()
                },
                "--timeout",
            ),
            (
                JobSpec {
                    node: node(),
                    argv: vec!["ls".into()],
                    cwd: Some("rel".into()),
                    ..spec()
                },
                "absolute",
            ),
            (
                JobSpec {
                    node: node(),
                    argv: vec!["a\0b".into()],
                    ..spec()
                },
                "NUL",
            ),
            (
                JobSpec {
                    node: node(),
                    argv: vec!["ls".into()],
                    env: vec![("1X".into(), "v".into())],
                    ..spec()
                },
                "is invalid",
            ),
        ];
        for (s, want) in cases {
            let e = resolve(&c, &s, false).unwrap_err();
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
    }

    #[test]
    fn resolve_env_and_shell() {
        let c = cfg("[policy]\nenv_allow = [\"EPOCHS\", \"*\"]\nallow_shell = true");
        let with_env = |k: &str| JobSpec {
            node: Some("n".into()),
            argv: vec!["bash".into(), "train.sh".into()],
            env: vec![(k.into(), "v".into())],
            ..spec()
        };
        // Even with env_allow = ["*"], the dangerous list is refused, by name.
        for k in [
            "LD_PRELOAD",
            "DYLD_INSERT_LIBRARIES",
            "OPENCLAW_JOB_ID",
            "BASH_ENV",
            "PATH",
            "PYTHONPATH",
            "NODE_OPTIONS",
            "PERL5OPT",
            "SHELLOPTS",
            "PS4",
            "CUDA_VISIBLE_DEVICES",
        ] {
            let e = resolve(&c, &with_env(k), false).unwrap_err();
            assert_eq!(e.code, ErrorCode::Denied, "{k}");
            assert!(
                e.message.contains("refused by policy"),
                "{k}: {}",
                e.message
            );
        }
        let r = resolve(&c, &with_env("EPOCHS"), false).unwrap();
        assert_eq!(r.env, vec![("EPOCHS".to_string(), "v".to_string())]);
        // The default allowlist does not admit EPOCHS, but a named job's own
        // variables may be overridden.
        let d = cfg("[jobs.train]\ncommand = [\"python\"]\nnode = \"n\"\nenv = { EPOCHS = \"1\" }");
        let e = resolve(&d, &with_env("EPOCHS"), false).unwrap_err();
        assert!(e.message.contains("env_allow"), "{}", e.message);
        let r = resolve(
            &d,
            &JobSpec {
                job: Some("train".into()),
                env: vec![("EPOCHS".into(), "5".into())],
                ..spec()
            },
            false,
        )
        .unwrap();
        assert_eq!(r.env, vec![("EPOCHS".to_string(), "5".to_string())]);
        // Shells: allowed from the CLI here, never from chat by default.
        let shell = JobSpec {
            node: Some("n".into()),
            argv: vec!["echo".into(), "$HOME".into()],
            shell: true,
            ..spec()
        };
        let r = resolve(&c, &shell, false).unwrap();
        assert_eq!(r.argv, vec!["sh", "-c", "echo $HOME"]);
        let e = resolve(&c, &shell, true).unwrap_err();
        assert!(e.message.contains("chat_shell"), "{}", e.message);
        let noshell = cfg("[policy]\nallow_shell = false");
        let e = resolve(&noshell, &shell, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::Denied);
    }

    #[test]
    fn node_loads_follow_every_placement_change() {
        let jobs = Jobs::default();
        jobs.insert(1, "a", 2, JobState::Queued, true);
        jobs.insert(2, "a", 1, JobState::Queued, false);
        jobs.insert(3, "", 0, JobState::Queued, false);
        assert_eq!(
            jobs.load("a"),
            (2, 1),
            "only reserved or dispatched jobs count"
        );
        jobs.with(|m| m.update(2, |j| j.on_node = true));
        assert_eq!(jobs.load("a"), (3, 2));
        // Routed elsewhere, then dispatched there.
        jobs.with(|m| {
            m.update(3, |j| {
                j.node = "b".into();
                j.reserved = true;
            })
        });
        jobs.with(|m| {
            m.update(3, |j| {
                j.on_node = true;
                j.reserved = false;
            })
        });
        assert_eq!((jobs.load("a"), jobs.load("b")), ((3, 2), (0, 1)));
        jobs.with(|m| m.remove(1));
        jobs.with(|m| m.remove(3));
        assert_eq!((jobs.load("a"), jobs.load("b")), ((1, 1), (0, 0)));
        jobs.with(|m| m.update(2, |j| j.on_node = false));
        assert_eq!(jobs.load("a"), (0, 0));
        assert!(
            jobs.with(|m| m.load.is_empty()),
            "no entries kept for idle nodes"
        );
    }
}
