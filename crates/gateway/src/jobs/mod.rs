//! Jobs: resolving a request into a frozen plan, routing, policy, dispatch
//! to the node, storing output exactly once, and feeding followers.
//!
//! Output flows node → gateway on a job stream the node opens; the gateway
//! appends it to `logs/<id>.stdout` and `logs/<id>.stderr` and bumps a
//! watch channel. Followers read the files from their own offsets and wait
//! on the channel, so a slow follower never slows the job or loses output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proto::{ApiError, ErrorCode, JobInfo, JobPlan, JobSpec, OutStream, Role};

pub mod artifacts;
pub mod fanout;
mod followers;
mod ingest;
mod input;
mod lifecycle;
mod live;
pub mod logwriter;
pub mod options;
mod record;
mod share;
mod spec;
mod submit;
#[cfg(test)]
mod tests;
mod usage;

pub use followers::{FollowSink, follow};
pub use ingest::node_job_stream;
use ingest::watch_for_reattach;
pub use input::node_input_stream;
use lifecycle::{
    UNFINISHED, bound_key, dispatch, end, end_if, end_with_async, finish_live, set_progress_state,
};
pub use lifecycle::{approve, cancel, deny, end_for_revoked, recover};
pub use live::{Jobs, Progress, TailChunk};
pub use record::recording;
pub use share::queue;
pub use spec::{Resolved, resolve, resolve_for};
use submit::{check_key, expire_approval, repeat_of, requeued, wait_in_queue};
pub use submit::{submit, submit_tty, submit_with};
pub use usage::usage;

use crate::config::Config;
use crate::peer::Peer;
use crate::policy::{self, Action};
use crate::routing::{self, NodeView, RouteError};
use crate::shared::Shared;
use crate::store::{JobRow, NodeState};

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
        (Role::User, None) => Ok(proto::identity::user_identity(&peer.name)),
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
    let now = shared.clock.unix();
    let instant = shared.clock.now();
    Ok(rows
        .into_iter()
        .map(|n| {
            let crate::shared::NodeStatus { live, routable, .. } = shared.node_status(&n, instant);
            let (gpus_busy, running) = shared.jobs.load(&n.name);
            NodeView {
                state: n.state,
                connected: live.is_some(),
                healthy: routable,
                labels: n.labels,
                gpus_total: live.as_ref().map(|l| l.gpus).unwrap_or(0),
                // Unhealthy and MIG-enabled GPUs are not offered.
                gpus_unusable: live.as_ref().map(|l| l.unusable_idle_gpus()).unwrap_or(0),
                gpu_cap: crate::registry::capped_gpus(crate::registry::MAX_GPUS, n.max_gpus),
                gpus_busy,
                running,
                max_jobs: live.as_ref().map(|l| l.max_jobs).unwrap_or(0),
                last_seen: n
                    .last_seen
                    .map(|t| proto::clock::ago(t, now))
                    .unwrap_or_else(|| "never".into()),
                name: n.name,
            }
        })
        .collect())
}

fn route(shared: &Shared, r: &Resolved) -> Result<String, RouteError> {
    let views = node_views(shared).map_err(|e| RouteError::Unavailable(e.message))?;
    route_in(&views, r)
}

/// [`route`] over views already read (the fair-share turn routes every
/// job ahead of one on the same snapshot).
fn route_in(views: &[NodeView], r: &Resolved) -> Result<String, RouteError> {
    match (&r.node, &r.role) {
        (Some(n), Some(role)) => routing::to_node_with_role(views, n, role, r.gpus),
        (Some(n), None) => routing::to_node(views, n, r.gpus),
        (None, Some(role)) => routing::to_role(views, role, r.gpus),
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

fn stored_job(shared: &Shared, id: u64) -> Result<JobRow, ApiError> {
    shared.store.tx(|tx| tx.job(id))?.ok_or_else(|| no_job(id))
}

fn no_job(id: u64) -> ApiError {
    err(
        ErrorCode::NotFound,
        format!("no job with id {id}; run 'openclaw job list'"),
    )
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

/// The GPUs a job held, if `peer` (for `who`) may see the job.
pub fn gpus_held(
    shared: &Shared,
    peer: &Peer,
    id: u64,
    on_behalf_of: Option<&str>,
) -> Result<Vec<proto::HeldGpu>, ApiError> {
    let who = identity(peer, on_behalf_of)?;
    let row = stored_job(shared, id)?;
    check_visible(shared, peer, &who, &row)?;
    Ok(shared.store.tx(|tx| tx.job_gpus(id))?)
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

fn log_path(shared: &Shared, id: u64, stream: OutStream) -> PathBuf {
    shared.logs_dir.join(format!(
        "{id}.{}",
        match stream {
            OutStream::Stdout => "stdout",
            OutStream::Stderr => "stderr",
        }
    ))
}

/// What a missing recording or artifact file adds in an HA group: they
/// stay in the logs directory of the gateway that stored them (only job
/// output moves to the database), so another gateway has them only when
/// every gateway mounts one `logs_dir`.
pub(crate) fn ha_files_note(shared: &Shared) -> &'static str {
    if shared.shared_state && !shared.config().state.logs_dir_shared {
        "; in an HA group recordings and artifacts stay in the logs_dir of the gateway that led when they \
         were stored (job output is in the database; recordings and artifacts follow a failover only on a \
         logs_dir every gateway mounts, declared with [state] logs_dir_shared = true): see docs/HA.md"
    } else {
        ""
    }
}

/// Whether job `id`'s output is kept in `logs_dir` files although output
/// goes to the database: the database holds none of it, and a local file
/// of it exists (a job from before `migrate-state` moved the state to
/// PostgreSQL, or before output moved to the database). `db_lens`: the
/// stored lengths in the database.
fn output_in_files(shared: &Shared, id: u64, db_lens: [u64; 2]) -> bool {
    db_lens == [0, 0]
        && [OutStream::Stdout, OutStream::Stderr]
            .into_iter()
            .any(|s| log_path(shared, id, s).exists())
}

/// Deletes a job's stored output (retention).
pub fn remove_logs(shared: &Shared, id: u64) {
    for s in [OutStream::Stdout, OutStream::Stderr] {
        let _ = std::fs::remove_file(log_path(shared, id, s));
    }
    artifacts::remove(shared, id);
    let _ = std::fs::remove_file(record::path(&shared.logs_dir, id));
}
