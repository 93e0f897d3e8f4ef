//! Fan-out: one command on every matching node, as one frozen plan.
//!
//! A fan-out is a row in `fanouts` plus one ordinary job per node (its
//! members, `jobs.fanout`). The plan that policy and approvers see is the
//! command *and* the node list, frozen and hashed when it is created.
//! Policy is decided once for the whole fan-out ([`policy::combine`]); an
//! approval, a denial or the approval timeout moves every held member at
//! once. A driver task keeps at most `window` members on their nodes (a
//! sliding window, like Salt's `--batch`): when one ends, the next starts.
//! Followers get the members' events merged on one stream.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Instant;

use proto::{
    ApiError, ErrorCode, FanEvent, FanInfo, FanMember, FanOutSpec, JobEvent, OutStream, Role,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{
    FollowSink, bound_key, check_key, dispatch, end_if, err, identity, node_views, plan_digest,
    plan_for, repeat_of, resolve_for, set_progress_state,
};
use crate::peer::Peer;
use crate::policy::{self, Combined};
use crate::routing;
use crate::shared::{Shared, off_runtime};
use crate::store::{FanRow, JobRow, JobState};

/// Events a fan-out follower may buffer before its members' followers wait.
const FAN_EVENTS: usize = 256;

/// The frozen fan-out plan: what approvers approve. Its digest is in
/// `fanouts.plan_digest`; each member's own plan is derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanPlan {
    /// Exact argv.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Timeout of each member.
    pub timeout_secs: Option<u64>,
    /// GPUs per member.
    pub gpus: u32,
    /// A named job's user.
    pub run_as: Option<String>,
    /// Named job, if any.
    pub named_job: Option<String>,
    /// Every node, in order.
    pub nodes: Vec<String>,
    /// Members running at once.
    pub window: u32,
}

fn digest(plan: &FanPlan) -> Result<(Vec<u8>, String), ApiError> {
    let bytes = proto::codec::encode(plan).map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
    let d = format!("sha256:{}", pki::hex(&pki::sha256(&bytes)));
    Ok((bytes, d))
}

/// A fan-out's record and its members' states.
pub struct Snapshot {
    /// What followers see first.
    pub info: FanInfo,
    /// Each member's state when the snapshot was taken.
    pub states: Vec<String>,
}

fn snapshot(fan: &FanRow, rows: &[JobRow]) -> Result<Snapshot, ApiError> {
    let plan: FanPlan = proto::codec::decode(&fan.plan).map_err(|e| {
        err(
            ErrorCode::Internal,
            format!("fan-out {}: bad stored plan: {e}", fan.id),
        )
    })?;
    let states: Vec<JobState> = rows.iter().map(|r| r.state).collect();
    Ok(Snapshot {
        info: FanInfo {
            id: fan.id,
            state: proto::FanState::of(&states).as_str().into(),
            argv: plan.argv,
            requester: fan.requester.clone(),
            members: rows
                .iter()
                .map(|r| FanMember {
                    node: r.node.clone(),
                    job: r.id,
                })
                .collect(),
            skipped: fan.skipped.clone(),
            window: fan.window,
            approvers: rows
                .iter()
                .find(|r| r.state == JobState::AwaitingApproval)
                .map(|r| r.approvers.clone())
                .unwrap_or_default(),
            plan_digest: fan.plan_digest.clone(),
            created_at: fan.created_at,
        },
        states: states.iter().map(|s| s.as_str().to_string()).collect(),
    })
}

fn no_fanout(id: u64) -> ApiError {
    err(
        ErrorCode::NotFound,
        format!("no fan-out with id {id}; run 'openclaw job list'"),
    )
}

/// A fan-out's snapshot, if `peer` (for `on_behalf_of`) may see it.
pub fn show(
    shared: &Shared,
    peer: &Peer,
    id: u64,
    on_behalf_of: Option<&str>,
) -> Result<Snapshot, ApiError> {
    let who = identity(peer, on_behalf_of)?;
    let (fan, rows) = shared.store.tx(|tx| {
        let fan = tx.fanout(id)?.ok_or_else(|| no_fanout(id))?;
        let rows = tx.fanout_jobs(id)?;
        Ok::<_, ApiError>((fan, rows))
    })?;
    let visible = match rows.first() {
        Some(r) => super::check_visible(shared, peer, &who, r).is_ok(),
        None => peer.role == Role::Admin || fan.requester == who,
    };
    if !visible {
        return Err(no_fanout(id));
    }
    snapshot(&fan, &rows)
}

/// Creates a fan-out: picks the nodes, freezes the plan, decides policy
/// once, stores the fan-out and its members in one transaction, and starts
/// the driver (or waits for approval).
pub fn submit(shared: &Arc<Shared>, peer: &Peer, spec: FanOutSpec) -> Result<Snapshot, ApiError> {
    let requester = identity(peer, spec.job.on_behalf_of.as_deref())?;
    let key = spec.job.idempotency_key.as_deref();
    check_key(key)?;
    let labels = proto::names::normalize_labels(&spec.labels)
        .map_err(|e| err(ErrorCode::InvalidArgument, format!("--label: {e}")))?;
    let cfg = shared.config();
    let chat = peer.role == Role::Bot;
    let r = resolve_for(&cfg, &spec.job, chat, true)?;
    let views = node_views(shared)?;
    let sel = routing::select(&views, r.role.as_deref(), &labels);
    let target = describe_target(r.role.as_deref(), &labels);
    if sel.nodes.is_empty() {
        let mut m = format!("no healthy node matches {target}");
        if !sel.skipped.is_empty() {
            m.push_str(&format!(
                "; {} matching node(s) cannot run it: {}",
                sel.skipped.len(),
                list_some(sel.skipped.iter().map(|(n, why)| format!("{n} ({why})")))
            ));
        }
        m.push_str("; run 'openclaw node list'");
        return Err(err(ErrorCode::Unavailable, m));
    }
    // The first event lists every node; it must fit in one frame.
    let listed: usize = sel.nodes.iter().map(|n| n.len() + 12).sum::<usize>()
        + sel
            .skipped
            .iter()
            .map(|(n, why)| n.len() + why.len() + 16)
            .sum::<usize>()
        + r.argv.iter().map(|a| a.len() + 8).sum::<usize>();
    if sel.nodes.len() > proto::fanout::MAX_FANOUT_NODES
        || listed > proto::MAX_FRAME_LEN - 64 * 1024
    {
        return Err(err(
            ErrorCode::InvalidArgument,
            format!(
                "{} nodes match {target}; one fan-out runs on at most {}; narrow it with --role or --label",
                sel.nodes.len(),
                proto::fanout::MAX_FANOUT_NODES
            ),
        ));
    }
    let decisions: Vec<policy::Decision> = sel
        .nodes
        .iter()
        .map(|node| {
            policy::evaluate(
                &cfg.policy,
                &policy::Facts {
                    user: &requester,
                    node,
                    argv: &r.argv,
                    job: r.named_job.as_deref(),
                    chat,
                },
            )
        })
        .collect();
    let (first_state, approvers, allow_self) = match policy::combine(&decisions) {
        Combined::Allow => (JobState::Queued, vec![], false),
        Combined::Approve {
            approvers,
            allow_self,
        } => (JobState::AwaitingApproval, approvers, allow_self),
        Combined::Deny { node, rule } => {
            let node = sel.nodes.get(node).map(String::as_str).unwrap_or("?");
            let reason = format!(
                "fan-out denied: {} denies {:?} on {node}",
                policy::rule_name(rule, chat),
                r.argv
            );
            shared.store.tx(|tx| {
                tx.audit(
                    shared.clock.unix(),
                    &peer.name,
                    "fanout.deny",
                    &target,
                    &format!("for {requester}: {reason}"),
                )
            })?;
            return Err(err(
                ErrorCode::Denied,
                format!(
                    "{reason}; narrow the fan-out with --role or --label, or ask an admin to change [policy] in gateway.toml"
                ),
            ));
        }
        Combined::NoCommonApprover { nodes: (a, b) } => {
            let name = |i: usize| sel.nodes.get(i).map(String::as_str).unwrap_or("?");
            return Err(err(
                ErrorCode::Denied,
                format!(
                    "nodes {} and {} need approval from different approvers, so nobody may approve this fan-out whole; split it by --role or --label",
                    name(a),
                    name(b)
                ),
            ));
        }
    };
    let n = sel.nodes.len();
    let window = spec.batch.map(|b| b.window(n)).unwrap_or(n);
    let plan = FanPlan {
        argv: r.argv.clone(),
        cwd: r.cwd.clone(),
        env: r.env.clone(),
        timeout_secs: r.timeout_secs,
        gpus: r.gpus,
        run_as: r.run_as.clone(),
        named_job: r.named_job.clone(),
        nodes: sel.nodes.clone(),
        window: u32::try_from(window).unwrap_or(u32::MAX),
    };
    let (plan_bytes, fan_digest) = digest(&plan)?;
    let now = shared.clock.unix();
    let secret_env = cfg.policy.secret_keys(&r.env);
    let fan = FanRow {
        id: 0,
        plan: plan_bytes,
        plan_digest: fan_digest,
        requester: requester.clone(),
        via: peer.name.clone(),
        window: plan.window,
        skipped: sel.skipped.clone(),
        created_at: now,
    };
    let created = shared.store.tx(|tx| {
        if let Some(job) = repeat_of(tx, &peer.name, key, &requester)? {
            return Ok::<_, ApiError>(Err(job.fanout));
        }
        let id = tx.insert_fanout(&fan)?;
        let mut rows = Vec::with_capacity(n);
        for node in &sel.nodes {
            let mut row = JobRow::fresh(
                first_state,
                node.clone(),
                r.role.clone(),
                r.named_job.clone(),
                plan_for(shared, 0, node, &r),
                requester.clone(),
                peer.name.clone(),
                now,
            );
            row.approvers = approvers.clone();
            row.allow_self = allow_self;
            row.secret_env = secret_env.clone();
            row.fanout = Some(id);
            row.node_key = bound_key(tx, node)?;
            row.id = tx.insert_job(&row)?;
            row.plan.job_id = row.id;
            row.plan_digest = plan_digest(&row.plan)?;
            tx.move_job(&row, row.state)?;
            rows.push(row);
        }
        if let (Some(k), Some(first)) = (key, rows.first()) {
            tx.put_idempotency(&peer.name, k, first.id, now)?;
        }
        tx.audit(
            now,
            &peer.name,
            "fanout.submit",
            &id.to_string(),
            &format!(
                "for {requester}: {:?} on {n} node(s) matching {target}",
                r.argv
            ),
        )?;
        Ok(Ok((id, rows)))
    })?;
    let (id, rows) = match created {
        Ok(c) => c,
        Err(Some(first)) => {
            tracing::info!(fanout = first, key = ?key, "repeated request; returning the fan-out it created");
            return show(shared, peer, first, spec.job.on_behalf_of.as_deref());
        }
        Err(None) => {
            return Err(err(
                ErrorCode::AlreadyExists,
                "this idempotency key already created a single job, not a fan-out; use a new key",
            ));
        }
    };
    for row in &rows {
        shared.jobs.insert(
            row.id,
            &row.node,
            row.plan.gpus,
            row.state,
            false,
            shared.clock.now(),
        );
    }
    let mut fan = fan;
    fan.id = id;
    tracing::info!(fanout = id, %requester, nodes = n, window, state = %first_state, argv = ?r.argv, "fan-out submitted");
    match first_state {
        JobState::AwaitingApproval => {
            tokio::spawn(expire(
                shared.clone(),
                id,
                now + cfg.policy.approval_timeout.as_secs(),
            ));
        }
        _ => {
            tokio::spawn(drive(shared.clone(), id));
        }
    }
    snapshot(&fan, &rows)
}

fn describe_target(role: Option<&str>, labels: &[String]) -> String {
    match (role, labels.is_empty()) {
        (None, true) => "all nodes".into(),
        (Some(r), true) => format!("role {r}"),
        (None, false) => format!("labels {}", labels.join(",")),
        (Some(r), false) => format!("role {r} and labels {}", labels.join(",")),
    }
}

/// The first few items, then how many more.
fn list_some(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    let mut s = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        s.push_str(&format!(" and {} more", items.len() - 5));
    }
    s
}

/// Keeps at most `window` members on their nodes until every queued
/// member has had its turn. Idempotent: started again after a restart or
/// an approval, it picks up the members still queued.
pub async fn drive(shared: Arc<Shared>, fan: u64) {
    // A database that does not answer for a moment (a restart) must not
    // leave the members queued for ever: ask again, about 10 s in all.
    let mut pauses = crate::store::BLIP_PAUSES_MS.iter();
    let (window, rows) = loop {
        let loaded = shared
            .store
            .call(move |tx| {
                let f = tx.fanout(fan)?;
                let rows = tx.fanout_jobs(fan)?;
                Ok::<_, ApiError>((f, rows))
            })
            .await;
        match loaded {
            Ok((Some(f), rows)) => break (f.window.max(1) as usize, rows),
            Ok((None, _)) => return,
            Err(e) => match pauses.next() {
                Some(ms) => {
                    tracing::warn!(fanout = fan, error = %e.message, "cannot load fan-out to drive it; trying again in {ms} ms");
                    tokio::time::sleep(Duration::from_millis(*ms)).await;
                }
                None => {
                    tracing::error!(fanout = fan, error = %e.message, "cannot load fan-out to drive it");
                    return;
                }
            },
        }
    };
    let mut queued: VecDeque<u64> = rows
        .iter()
        .filter(|r| r.state == JobState::Queued)
        .map(|r| r.id)
        .collect();
    let mut running = tokio::task::JoinSet::new();
    // Members already on their nodes (after a restart) hold window slots.
    for r in &rows {
        if matches!(r.state, JobState::Starting | JobState::Running)
            && let Some(rx) = shared.jobs.subscribe(r.id)
        {
            running.spawn(until_ended(rx));
        }
    }
    let started = shared.clock.now();
    let grace = shared.config().job_grace;
    let mut offline_since: HashMap<u64, Instant> = HashMap::new();
    loop {
        // Every free slot is filled in one trip to the blocking pool.
        let mut turn = Vec::new();
        while running.len() + turn.len() < window
            && let Some(id) = queued.pop_front()
        {
            turn.push((id, offline_since.get(&id).copied()));
        }
        let turns = if turn.is_empty() {
            Vec::new()
        } else {
            off_runtime(&shared, move |s| {
                turn.into_iter()
                    .map(|(id, since)| (id, start_member(s, fan, id, since, grace)))
                    .collect()
            })
            .await
            .unwrap_or_default()
        };
        let mut later = Vec::new();
        for (id, t) in turns {
            match t {
                Turn::Started(rx) => {
                    running.spawn(until_ended(rx));
                }
                Turn::Done => {}
                Turn::Later(since) => {
                    offline_since.insert(id, since);
                    later.push(id);
                }
                Turn::Retry => later.push(id),
            }
        }
        if !later.is_empty() {
            // Their nodes are away (e.g. still reconnecting after a gateway
            // restart): they keep their place and are asked again soon.
            for id in later.into_iter().rev() {
                queued.push_front(id);
            }
            tokio::select! {
                _ = running.join_next(), if !running.is_empty() => {}
                () = tokio::time::sleep(OFFLINE_RETRY) => {}
            }
            continue;
        }
        if running.join_next().await.is_none() {
            break;
        }
    }
    tracing::info!(
        fanout = fan,
        members = rows.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "fan-out done"
    );
}

async fn until_ended(mut rx: tokio::sync::watch::Receiver<super::Progress>) {
    // The sender goes away when the job ends (`finish_live`).
    while rx.changed().await.is_ok() {}
}

/// How often a member whose node is away is asked again.
const OFFLINE_RETRY: Duration = Duration::from_millis(500);

/// What became of a member's turn.
enum Turn {
    /// On its node; its progress to wait on.
    Started(tokio::sync::watch::Receiver<super::Progress>),
    /// Ended at once, or no longer queued.
    Done,
    /// Its node is away (since then), for less than the grace so far:
    /// ask again.
    Later(Instant),
    /// The state database did not answer (a restart, a dropped
    /// connection): still queued, ask again.
    Retry,
}

/// Sends one queued member to its node. A member whose node is offline
/// waits for it up to `grace` (`liveness.job_grace`) before it fails;
/// `offline_since` is when its node was first found away.
fn start_member(
    shared: &Arc<Shared>,
    fan: u64,
    id: u64,
    offline_since: Option<Instant>,
    grace: Duration,
) -> Turn {
    let Some(rx) = shared.jobs.subscribe(id) else {
        return Turn::Done;
    };
    let row = match shared.store.tx(|tx| tx.job(id)) {
        Ok(Some(r)) if r.state == JobState::Queued => r,
        Ok(_) => return Turn::Done,
        Err(e) => {
            tracing::warn!(fanout = fan, job = id, error = %e, "cannot read a fan-out member; trying again");
            return Turn::Retry;
        }
    };
    let refused = {
        let _routing = shared.jobs.route_lock();
        match shared.registry.meta(&row.node, shared.clock.now()) {
            None => {
                let since = offline_since.unwrap_or_else(|| shared.clock.now());
                if since.elapsed() < grace {
                    return Turn::Later(since);
                }
                Some(format!(
                    "node {} was offline at its turn in fan-out {fan} and did not come back within {}s; run 'openclaw node list'",
                    row.node,
                    grace.as_secs()
                ))
            }
            Some(m) => {
                let (gpus_busy, running) = shared.jobs.load(&row.node);
                if running >= m.max_jobs {
                    Some(format!(
                        "node {} is running {running} of its {} jobs; fan-out {fan} did not wait for it",
                        row.node, m.max_jobs
                    ))
                } else if m.gpus < row.plan.gpus {
                    Some(format!(
                        "node {} has {} confirmed GPU(s) and the fan-out asks {}: it could never run there",
                        row.node, m.gpus, row.plan.gpus
                    ))
                } else if m.gpus.saturating_sub(gpus_busy) < row.plan.gpus {
                    Some(format!(
                        "node {} has {} of {} GPUs free and the fan-out asks {}",
                        row.node,
                        m.gpus.saturating_sub(gpus_busy),
                        m.gpus,
                        row.plan.gpus
                    ))
                } else {
                    let cfg = shared.config();
                    match super::share::fan_member_refusal(shared, &cfg, &row) {
                        Ok(Some(why)) => Some(why),
                        Ok(None) => {
                            shared
                                .jobs
                                .with(|live| live.update(id, |j| j.reserved = true));
                            None
                        }
                        Err(e) => Some(format!(
                            "its quotas could not be read: {}; run the fan-out again",
                            e.message
                        )),
                    }
                }
            }
        }
    };
    if let Some(why) = refused {
        let _ = end_if(
            shared,
            id,
            &[JobState::Queued],
            JobState::Failed,
            None,
            &why,
        );
        return Turn::Done;
    }
    let mut moved = row.clone();
    moved.state = JobState::Starting;
    match shared.store.tx(|tx| tx.move_job(&moved, JobState::Queued)) {
        Ok(true) => {}
        other => {
            shared
                .jobs
                .with(|live| live.update(id, |j| j.reserved = false));
            return match other {
                // Still queued in the database: its turn comes again.
                Err(e) => {
                    tracing::warn!(fanout = fan, job = id, error = %e, "cannot start a fan-out member; trying again");
                    Turn::Retry
                }
                _ => Turn::Done,
            };
        }
    }
    // A failed dispatch ends the member, which the returned progress shows.
    // One that met a database blip before it could send or end anything
    // (Unavailable) is sent again: a member that did end meanwhile (its
    // node offline) is no longer `starting`, and the next try says so.
    let mut pauses = crate::store::BLIP_PAUSES_MS.iter();
    loop {
        match dispatch(shared, id) {
            Ok(()) => break,
            Err(e) if e.code == proto::ErrorCode::Unavailable => match pauses.next() {
                Some(ms) => std::thread::sleep(Duration::from_millis(*ms)),
                None => {
                    tracing::warn!(fanout = fan, job = id, error = %e.message, "fan-out member not started");
                    break;
                }
            },
            Err(e) => {
                tracing::info!(fanout = fan, job = id, error = %e.message, "fan-out member not started");
                break;
            }
        }
    }
    Turn::Started(rx)
}

/// Ends every member still awaiting approval at the approval timeout.
async fn expire(shared: Arc<Shared>, fan: u64, at: u64) {
    tokio::time::sleep(Duration::from_secs(at.saturating_sub(shared.clock.unix()))).await;
    let _ = off_runtime(&shared, move |s| {
        let Ok(rows) = s.store.tx(|tx| tx.fanout_jobs(fan)) else {
            return;
        };
        for r in rows {
            let _ = end_if(
                s,
                r.id,
                &[JobState::AwaitingApproval],
                JobState::Expired,
                None,
                "nobody approved the fan-out in time (policy.approval_timeout)",
            );
        }
    })
    .await;
}

/// Approves a whole fan-out (through any of its members): every member
/// still awaiting approval moves to `queued` in one transaction, then the
/// driver starts them. `digest` may be the fan-out's or that member's.
pub fn approve(
    shared: &Arc<Shared>,
    fan: u64,
    member: &JobRow,
    who: &str,
    digest: Option<&str>,
) -> Result<String, ApiError> {
    let (moved, fan_row) = shared.store.tx(|tx| {
        let fan_row = tx.fanout(fan)?.ok_or_else(|| no_fanout(fan))?;
        policy::may_approve(&member.approvers, member.allow_self, &member.requester, who).map_err(
            |m| {
                err(
                    ErrorCode::PermissionDenied,
                    format!("cannot approve fan-out {fan}: {m}"),
                )
            },
        )?;
        if let Some(d) = digest
            && d != fan_row.plan_digest
            && d != member.plan_digest
        {
            return Err(err(
                ErrorCode::FailedPrecondition,
                format!(
                    "fan-out {fan}'s plan is {}, not {d}; review it with 'openclaw job show {}'",
                    fan_row.plan_digest, member.id
                ),
            ));
        }
        let mut moved = Vec::new();
        for mut row in tx.fanout_jobs(fan)? {
            if row.state != JobState::AwaitingApproval {
                continue;
            }
            row.approved_by = Some(who.to_string());
            row.state = JobState::Queued;
            if tx.move_job(&row, JobState::AwaitingApproval)? {
                moved.push(row.id);
            }
        }
        if moved.is_empty() {
            return Err(err(
                ErrorCode::FailedPrecondition,
                format!("fan-out {fan} stopped awaiting approval meanwhile"),
            ));
        }
        tx.audit(
            shared.clock.unix(),
            who,
            "fanout.approve",
            &fan.to_string(),
            &fan_row.plan_digest,
        )?;
        Ok::<_, ApiError>((moved, fan_row))
    })?;
    for id in &moved {
        set_progress_state(shared, *id, JobState::Queued);
    }
    tracing::info!(fanout = fan, by = %who, members = moved.len(), "fan-out approved");
    tokio::spawn(drive(shared.clone(), fan));
    Ok(format!(
        "approved fan-out {fan} ({} nodes, {} at a time; plan {})",
        moved.len(),
        fan_row.window,
        fan_row.plan_digest
    ))
}

/// Denies (or withdraws) a whole fan-out: every member still awaiting
/// approval ends `denied` with `reason`.
pub fn deny(shared: &Shared, fan: u64, reason: &str) -> Result<usize, ApiError> {
    let rows = shared.store.tx(|tx| tx.fanout_jobs(fan))?;
    let mut n = 0;
    for r in rows {
        if end_if(
            shared,
            r.id,
            &[JobState::AwaitingApproval],
            JobState::Denied,
            None,
            reason,
        )?
        .is_some()
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Restarts drivers and approval timers of fan-outs left unfinished by a
/// previous gateway process. Their members were put back in the live table
/// by `recover`.
pub fn recover(shared: &Arc<Shared>, rows: &[JobRow]) {
    let cfg = shared.config();
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        let Some(fan) = r.fanout else { continue };
        if !seen.insert(fan) {
            continue;
        }
        if rows
            .iter()
            .any(|m| m.fanout == Some(fan) && m.state == JobState::AwaitingApproval)
        {
            tokio::spawn(expire(
                shared.clone(),
                fan,
                r.created_at + cfg.policy.approval_timeout.as_secs(),
            ));
        }
        tokio::spawn(drive(shared.clone(), fan));
    }
}

/// Follows every member of a fan-out, merging their events onto `send`,
/// and ends with [`FanEvent::Done`] once every member has ended.
pub async fn follow(
    shared: &Arc<Shared>,
    snap: Snapshot,
    output: bool,
    send: &mut crate::link::SendHalf,
) -> Result<(), mesh::StreamError> {
    let (tx, mut rx) = mpsc::channel::<FanEvent>(FAN_EVENTS);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (m, state)) in snap.info.members.iter().zip(snap.states).enumerate() {
        let Ok(member) = u32::try_from(i) else { break };
        let mut sink = MemberSink {
            member,
            output,
            tx: tx.clone(),
        };
        let shared = shared.clone();
        let job = m.job;
        tasks.spawn(async move {
            let r = super::follow(&shared, job, true, 0, 0, Some(&state), &mut sink).await;
            if let Err(e) = r {
                let _ = sink
                    .tx
                    .send(FanEvent::Lost {
                        member,
                        error: err(ErrorCode::Internal, e.to_string()),
                    })
                    .await;
            }
        });
    }
    drop(tx);
    mesh::write_frame(send, &FanEvent::Accepted(snap.info)).await?;
    while let Some(ev) = rx.recv().await {
        mesh::write_frame(send, &ev).await?;
    }
    mesh::write_frame(send, &FanEvent::Done).await
}

/// One member's follower, writing into the fan-out's merger.
struct MemberSink {
    member: u32,
    output: bool,
    tx: mpsc::Sender<FanEvent>,
}

impl MemberSink {
    async fn send(&self, ev: FanEvent) -> Result<(), mesh::StreamError> {
        self.tx
            .send(ev)
            .await
            .map_err(|_| mesh::StreamError::Sink("the fan-out's follower went away".into()))
    }
}

impl FollowSink for MemberSink {
    fn wants_output(&self) -> bool {
        self.output
    }

    async fn data(
        &mut self,
        stream: OutStream,
        _offset: u64,
        parts: &mut Vec<bytes::Bytes>,
    ) -> Result<(), mesh::StreamError> {
        let mut chunk: Vec<u8> = Vec::new();
        for p in parts.iter() {
            let mut rest: &[u8] = p;
            while !rest.is_empty() {
                let room = proto::fanout::FAN_OUTPUT_CHUNK - chunk.len();
                let (now, later) = rest.split_at(rest.len().min(room));
                chunk.extend_from_slice(now);
                rest = later;
                if chunk.len() == proto::fanout::FAN_OUTPUT_CHUNK {
                    let data = std::mem::take(&mut chunk);
                    self.send(FanEvent::Output {
                        member: self.member,
                        stream,
                        data,
                    })
                    .await?;
                }
            }
        }
        if !chunk.is_empty() {
            self.send(FanEvent::Output {
                member: self.member,
                stream,
                data: chunk,
            })
            .await?;
        }
        Ok(())
    }

    async fn event(&mut self, ev: JobEvent) -> Result<(), mesh::StreamError> {
        let ev = match ev {
            JobEvent::State(info) => FanEvent::State {
                member: self.member,
                state: info.state,
            },
            JobEvent::End(job) => FanEvent::Ended {
                member: self.member,
                job,
            },
            JobEvent::Error(error) => FanEvent::Lost {
                member: self.member,
                error,
            },
            JobEvent::Accepted(_) | JobEvent::Output { .. } => return Ok(()),
        };
        self.send(ev).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_covers_the_node_list() {
        let plan = FanPlan {
            argv: vec!["true".into()],
            cwd: None,
            env: vec![],
            timeout_secs: None,
            gpus: 0,
            run_as: None,
            named_job: None,
            nodes: vec!["a".into(), "b".into()],
            window: 2,
        };
        let mut more = plan.clone();
        more.nodes.push("c".into());
        let (_, d1) = digest(&plan).unwrap();
        let (_, d2) = digest(&more).unwrap();
        assert_ne!(d1, d2);
        assert_eq!(digest(&plan).unwrap().1, d1, "stable");
    }
}
