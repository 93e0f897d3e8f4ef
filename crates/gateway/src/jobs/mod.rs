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
mod followers;
mod ingest;
mod live;
pub mod logwriter;
mod spec;

pub use followers::{FollowSink, follow};
pub use ingest::node_job_stream;
use ingest::watch_for_reattach;
pub use live::{Jobs, Progress, TailChunk};
pub use spec::{Resolved, resolve, resolve_for};

use crate::config::Config;
use crate::peer::Peer;
use crate::policy::{self, Action};
use crate::routing::{self, NodeView, RouteError};
use crate::store::{JobRow, JobState, NodeRow, NodeState, StoreError, Tx};
use crate::{Shared, off_runtime, unix_now};
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

fn err(code: ErrorCode, m: impl Into<String>) -> ApiError {
    ApiError::new(code, m)
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
                gpu_cap: crate::registry::capped_gpus(crate::registry::MAX_GPUS, n.max_gpus),
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
        (Some(n), Some(role)) => routing::to_node_with_role(&views, n, role, r.gpus),
        (Some(n), None) => routing::to_node(&views, n, r.gpus),
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
    let secret_env = cfg.policy.secret_keys(&resolved.env);
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
        // A queued job's plan keeps its explicit node, so a gateway that
        // starts later (a restart, a standby taking over) can queue it again.
        let mut row = JobRow::fresh(
            JobState::Queued,
            routed.clone().unwrap_or_default(),
            resolved.role.clone(),
            resolved.named_job.clone(),
            plan_for(shared, 0, resolved.node.as_deref().unwrap_or(""), &resolved),
            requester.clone(),
            peer.name.clone(),
            now,
        );
        row.queue_until = queue_until;
        row.secret_env = secret_env;
        let key = spec.idempotency_key.as_deref();
        let created = shared.store.tx(|tx| {
            // A repeated key returns the first job: checked and recorded
            // in the transaction that creates the job.
            if let Some(job) = repeat_of(tx, &peer.name, key, &requester)? {
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

/// The job a repeated idempotency key `key` created earlier through the
/// credential `via`, if any. Keys are scoped by credential and requester:
/// a key another requester used is refused, never answered with their job
/// (a platform that reuses an event id must not hand one user's job to
/// another).
pub(crate) fn repeat_of(
    tx: &Tx<'_>,
    via: &str,
    key: Option<&str>,
    requester: &str,
) -> Result<Option<JobRow>, ApiError> {
    let Some(k) = key else { return Ok(None) };
    let Some(first) = tx.idempotent_job(via, k)? else {
        return Ok(None);
    };
    let Some(job) = tx.job(first)? else {
        return Ok(None);
    };
    if job.requester != requester {
        return Err(err(
            ErrorCode::AlreadyExists,
            "this request's idempotency key was already used for another requester's job; \
             the request was not run. Send it again with a fresh key",
        ));
    }
    Ok(Some(job))
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
    let rule = policy::rule_name(decision.rule, chat);
    shared.jobs.with(|m| {
        m.update(row.id, |j| {
            j.node = node.to_string();
            // Only a job that is dispatched now keeps its reservation.
            j.reserved = decision.action == Action::Allow;
        })
    });
    // The job is bound to the key of the node it is planned for, read in
    // the transaction that moves it: a node enrolled later under the same
    // name (after a revocation and a release) never receives it.
    let moved = |row: &mut JobRow| -> Result<(), ApiError> {
        let ok = shared.store.tx(|tx| {
            row.node_key = bound_key(tx, &row.node)?;
            tx.move_job(row, from)
        })?;
        if ok {
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
            moved(&mut row)?;
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
            moved(&mut row)?;
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
            moved(&mut row)?;
            dispatch(shared, row.id)?;
            Ok(row.info())
        }
    }
}

/// What a stored queued job asked for, from its row and frozen plan.
fn requeued(row: &JobRow) -> Resolved {
    let p = &row.plan;
    Resolved {
        node: (!p.node.is_empty()).then(|| p.node.clone()),
        role: row.role.clone(),
        named_job: row.named_job.clone(),
        argv: p.argv.clone(),
        cwd: p.cwd.clone(),
        env: p.env.clone(),
        timeout_secs: p.timeout_secs,
        gpus: p.gpus,
        run_as: p.run_as.clone(),
    }
}

async fn wait_in_queue(shared: Arc<Shared>, id: u64, r: Resolved, chat: bool) {
    loop {
        let resolved = r.clone();
        match off_runtime(&shared, move |s| queued_turn(s, id, &resolved, chat)).await {
            Ok(QueueStep::Wait) => {}
            Ok(QueueStep::Done) | Err(_) => return,
        }
        let _ =
            tokio::time::timeout(Duration::from_millis(500), shared.jobs.capacity.notified()).await;
    }
}

/// What a queued job does after one try at routing.
enum QueueStep {
    /// It was decided or ended: nothing more to wait for.
    Done,
    /// Still no capacity; try again when some frees up.
    Wait,
}

/// One try at routing a queued job (blocking: runs off the async workers).
fn queued_turn(shared: &Arc<Shared>, id: u64, r: &Resolved, chat: bool) -> QueueStep {
    let Ok(Some(row)) = shared.store.tx(|tx| tx.job(id)) else {
        return QueueStep::Done;
    };
    if row.state != JobState::Queued {
        return QueueStep::Done;
    }
    let routed = {
        let _routing = shared.jobs.route_lock();
        let routed = route(shared, r);
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
            if let Err(e) = decide(shared, row, JobState::Queued, &node, r, chat) {
                tracing::info!(job = id, error = %e.message, "queued job not started");
            }
            QueueStep::Done
        }
        Err(e) if e.queued_job_waits() && row.queue_until.is_some_and(|t| unix_now() < t) => {
            QueueStep::Wait
        }
        // A request that became impossible while it waited (its node's
        // GPU cap lowered, its node gone) ends now, saying why.
        Err(RouteError::Never(m)) => {
            let msg = format!("no node can ever run it now: {m}");
            let _ = end(shared, id, JobState::Failed, None, &msg);
            QueueStep::Done
        }
        Err(e) => {
            let msg = match e {
                RouteError::Busy(m) => format!("gave up waiting for capacity: {m}"),
                RouteError::Unknown(m) | RouteError::Unavailable(m) | RouteError::Never(m) => m,
            };
            let _ = end(shared, id, JobState::Expired, None, &msg);
            QueueStep::Done
        }
    }
}

async fn expire_approval(shared: Arc<Shared>, id: u64, at: u64) {
    let wait = at.saturating_sub(unix_now());
    tokio::time::sleep(Duration::from_secs(wait)).await;
    // `end` moves the job only if it is still awaiting approval: an
    // approval that won the race keeps it.
    let _ = off_runtime(&shared, move |s| {
        end_if(
            s,
            id,
            &[JobState::AwaitingApproval],
            JobState::Expired,
            None,
            "nobody approved it in time (policy.approval_timeout)",
        )
    })
    .await;
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
    if let Some(j) = shared.jobs.with(|m| m.remove(id))
        && let Some(started) = j.started
    {
        let p = j.progress.borrow();
        shared
            .metrics
            .job_output(p.stdout + p.stderr, started.elapsed());
    }
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
    end_if(shared, id, UNFINISHED, state, exit_code, reason)
}

/// The states a job can still end from.
const UNFINISHED: &[JobState] = &[
    JobState::Queued,
    JobState::AwaitingApproval,
    JobState::Starting,
    JobState::Running,
];

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
    let row = shared.store.tx(ending(id, from, state, fill))?;
    ended(shared, id, state, row.as_ref());
    Ok(row)
}

/// [`end_with`] for async tasks: the write joins the database thread's
/// next batch (a fan-out's members end together).
pub(super) async fn end_with_async(
    shared: &Shared,
    id: u64,
    from: &'static [JobState],
    state: JobState,
    fill: impl FnOnce(&mut JobRow) + Send + 'static,
) -> Result<Option<JobRow>, ApiError> {
    let row = shared.store.call(ending(id, from, state, fill)).await?;
    ended(shared, id, state, row.as_ref());
    Ok(row)
}

/// The transaction that moves job `id` from one of `from` to the final
/// `state`; `None` when it was elsewhere (another decision won).
fn ending(
    id: u64,
    from: &[JobState],
    state: JobState,
    fill: impl FnOnce(&mut JobRow),
) -> impl FnOnce(&crate::store::Tx<'_>) -> Result<Option<JobRow>, ApiError> {
    let now = unix_now();
    move |tx| {
        let mut row = tx.job(id)?.ok_or_else(|| no_job(id))?;
        let was = row.state;
        if !from.contains(&was) || !was.can_move_to(state) {
            return Ok(None);
        }
        row.state = state;
        row.finished_at = Some(now);
        fill(&mut row);
        Ok(tx.move_job(&row, was)?.then_some(row))
    }
}

/// After a job's end is committed: its followers and its capacity.
fn ended(shared: &Shared, id: u64, state: JobState, row: Option<&JobRow>) {
    if let Some(row) = row {
        tracing::info!(job = id, state = %state, exit_code = ?row.exit_code, reason = ?row.reason, "job ended");
        finish_live(shared, id, state);
    }
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
    let (row, node) = shared.store.tx(|tx| {
        let row = tx.job(id)?.ok_or_else(|| no_job(id))?;
        let node = tx.node(&row.node)?;
        Ok::<_, ApiError>((row, node))
    })?;
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
    if let Some(why) = key_mismatch(&row, node.as_ref()) {
        end(shared, id, JobState::Failed, None, &why)?;
        return Err(err(ErrorCode::FailedPrecondition, why));
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
            let _ = off_runtime(&s, move |s| {
                end(
                    s,
                    id,
                    JobState::Lost,
                    None,
                    "the node did not start the job in time",
                )
            })
            .await;
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
    cancel_job(shared, id, &who)
}

/// Cancels a live job for `who`: on its node, SIGTERM then SIGKILL; before
/// that, at once. Either way it ends `cancelled`, with the reason
/// `cancelled by WHO`, and an exit code only if its process ran.
fn cancel_job(shared: &Shared, id: u64, who: &str) -> Result<String, ApiError> {
    let grace = shared.config().kill_grace.as_secs();
    let sent = shared.jobs.with(|m| match m.jobs.get_mut(&id) {
        Some(j) if j.on_node => {
            j.cancelled_by.get_or_insert_with(|| who.to_string());
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
        &format!("cancelled by {who} before it started"),
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
/// The key fingerprint of `node` if it is an approved node: what a job
/// planned for it is bound to.
pub(crate) fn bound_key(tx: &Tx<'_>, node: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .node(node)?
        .filter(|n| n.state == NodeState::Approved)
        .map(|n| n.fingerprint))
}

/// Why `node` (its current row) may not receive a job bound as `row` is,
/// if it may not. Pure.
pub(crate) fn key_mismatch(row: &JobRow, node: Option<&NodeRow>) -> Option<String> {
    let Some(n) = node.filter(|n| n.state == NodeState::Approved) else {
        return Some(format!(
            "node {} is no longer enrolled (revoked or removed); the job was not sent",
            row.node
        ));
    };
    match &row.node_key {
        Some(k) if *k == n.fingerprint => None,
        Some(_) => Some(format!(
            "node {} now has another key than the node this job was planned for (it was enrolled again); the job was not sent",
            row.node
        )),
        // A job stored before jobs were bound to keys: only a node
        // enrolled before the job was created may take it.
        None if n.requested_at <= row.created_at => None,
        None => Some(format!(
            "node {} enrolled after this job was planned; the job was not sent",
            row.node
        )),
    }
}

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
async fn record(shared: &Shared, id: u64) -> Result<JobInfo, ApiError> {
    let row = shared
        .store
        .call(move |tx| tx.job(id))
        .await?
        .ok_or_else(|| no_job(id))?;
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
        // Every unfinished job that names the node, in any state: one
        // queued for it has it only in its plan until it is routed.
        let named = node.filter(|name| r.node == *name || r.plan.node == *name);
        let ended = if let Some(name) = named {
            let why = format!("node {name} was revoked");
            match r.state {
                JobState::Starting | JobState::Running => {
                    end(shared, r.id, JobState::Lost, None, &why)
                }
                _ => end_if(
                    shared,
                    r.id,
                    &[JobState::Queued, JobState::AwaitingApproval],
                    JobState::Cancelled,
                    None,
                    &why,
                ),
            }
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
            // Still within its queue time: it queues again, as it was
            // (a restart, or a standby that took over).
            JobState::Queued if row.queue_until.is_some_and(|t| unix_now() < t) => {
                let chat = shared
                    .store
                    .tx(|tx| tx.client(&row.via))?
                    .is_some_and(|c| c.role == Role::Bot);
                tokio::spawn(wait_in_queue(shared.clone(), row.id, requeued(row), chat));
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
    fn a_job_goes_only_to_the_key_it_was_planned_for() {
        let node = |state, fp: &str, requested_at| NodeRow {
            name: "train-01".into(),
            state,
            labels: vec![],
            fingerprint: fp.into(),
            spki: vec![],
            request_id: "r".into(),
            requested_at,
            request_addr: String::new(),
            token_id: String::new(),
            cert_der: None,
            cert_serial: None,
            cert_not_after: None,
            last_seen: None,
            last_addr: None,
            proposed_labels: vec![],
            max_gpus: None,
        };
        let job = |key: Option<&str>| {
            let mut j = JobRow::fresh(
                JobState::Starting,
                "train-01".into(),
                None,
                None,
                JobPlan {
                    job_id: 1,
                    node: "train-01".into(),
                    argv: vec!["true".into()],
                    cwd: None,
                    env: vec![],
                    timeout_secs: None,
                    gpus: 0,
                    kill_grace_secs: 1,
                    run_as: None,
                },
                "admin".into(),
                "admin".into(),
                100,
            );
            j.node_key = key.map(str::to_string);
            j
        };
        let cases = [
            (
                job(Some("A")),
                Some(node(NodeState::Approved, "A", 50)),
                None,
            ),
            (
                job(Some("A")),
                Some(node(NodeState::Approved, "B", 50)),
                Some("another key"),
            ),
            (
                job(Some("A")),
                Some(node(NodeState::Revoked, "A", 50)),
                Some("no longer enrolled"),
            ),
            (
                job(Some("A")),
                Some(node(NodeState::Pending, "A", 50)),
                Some("no longer enrolled"),
            ),
            (job(Some("A")), None, Some("no longer enrolled")),
            // Rows stored before keys were bound: only an older enrollment.
            (job(None), Some(node(NodeState::Approved, "B", 50)), None),
            (
                job(None),
                Some(node(NodeState::Approved, "B", 150)),
                Some("enrolled after"),
            ),
        ];
        for (row, n, want) in cases {
            let got = key_mismatch(&row, n.as_ref());
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!(g.contains(w), "{g}"),
                (g, w) => panic!(
                    "{:?} / {:?}: got {g:?}, want {w:?}",
                    row.node_key,
                    n.map(|n| n.state)
                ),
            }
        }
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
        // A node and a role together: that node, which must have the role
        // (checked when routing); the role still sets the default GPUs.
        let r = resolve(
            &c,
            &JobSpec {
                node: node(),
                role: Some("gpu".into()),
                argv: vec!["ls".into()],
                ..spec()
            },
            true,
        )
        .unwrap();
        assert_eq!((r.node, r.role, r.gpus), (node(), Some("gpu".into()), 1));
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
