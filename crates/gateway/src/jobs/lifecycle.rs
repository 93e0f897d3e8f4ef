//! A job's life after its decision: dispatch to its node, approval,
//! denial, cancel, its end, revocation of its node or credential, and
//! recovery after a restart.

use std::sync::Arc;

use proto::{ApiError, ErrorCode, JobCtl, Role};

use super::{
    MAX_REASON, START_TIMEOUT, err, expire_approval, fanout, identity, no_job, plan_digest,
    requeued, stored_job, wait_in_queue, watch_for_reattach,
};
use crate::peer::Peer;
use crate::policy::{self};
use crate::shared::{Shared, off_runtime};
use crate::store::{JobRow, JobState, NodeRow, NodeState, StoreError, Tx};

pub(super) fn set_progress_state(shared: &Shared, id: u64, state: JobState) {
    shared.jobs.changed();
    shared.jobs.with(|m| {
        if let Some(j) = m.jobs.get(&id) {
            j.progress
                .send_modify(|p| p.state = state.as_str().to_string());
        }
    });
}

pub(super) fn finish_live(shared: &Shared, id: u64, state: JobState) {
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
    shared.jobs.clear_preempted(id);
    shared.jobs.capacity.notify_waiters();
}

/// Ends a job in a final state, from whatever live state it is in.
pub(super) fn end(
    shared: &Shared,
    id: u64,
    state: JobState,
    exit_code: Option<i32>,
    reason: &str,
) -> Result<Option<JobRow>, ApiError> {
    end_if(shared, id, UNFINISHED, state, exit_code, reason)
}

/// The states a job can still end from.
pub(super) const UNFINISHED: &[JobState] = &[
    JobState::Queued,
    JobState::AwaitingApproval,
    JobState::Starting,
    JobState::Running,
];

/// Ends a job in `state` if it is in one of `from` now; returns the ended
/// row, or `None` when the job was elsewhere (another decision won).
pub(super) fn end_if(
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

pub(super) fn end_with(
    shared: &Shared,
    id: u64,
    from: &[JobState],
    state: JobState,
    fill: impl FnOnce(&mut JobRow),
) -> Result<Option<JobRow>, ApiError> {
    let row = shared
        .store
        .tx(ending(id, from, state, shared.clock.unix(), fill))?;
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
    let row = shared
        .store
        .call(ending(id, from, state, shared.clock.unix(), fill))
        .await?;
    ended(shared, id, state, row.as_ref());
    Ok(row)
}

/// The transaction that moves job `id` from one of `from` to the final
/// `state`; `None` when it was elsewhere (another decision won).
pub(super) fn ending(
    id: u64,
    from: &[JobState],
    state: JobState,
    now: u64,
    fill: impl FnOnce(&mut JobRow),
) -> impl FnOnce(&crate::store::Tx<'_>) -> Result<Option<JobRow>, ApiError> {
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
pub(super) fn ended(shared: &Shared, id: u64, state: JobState, row: Option<&JobRow>) {
    if let Some(row) = row {
        tracing::info!(job = id, state = %state, exit_code = ?row.exit_code, reason = ?row.reason, "job ended");
        if let (Some(start), Some(end)) = (row.started_at, row.finished_at) {
            shared.metrics.charged(
                &row.requester,
                row.project.as_deref(),
                end.saturating_sub(start) * u64::from(row.plan.gpus),
                start.saturating_sub(row.created_at),
            );
        }
        finish_live(shared, id, state);
    }
}

/// Sends a job's frozen plan to its node. The job must be `starting`
/// (moved there by the decision that allowed it); dispatch checks that
/// again, so a job denied, cancelled or expired meanwhile never leaves.
pub(super) fn dispatch(shared: &Arc<Shared>, id: u64) -> Result<(), ApiError> {
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
    let speaks = shared
        .registry
        .connection(&row.node)
        .map_or(0, |c| c.protocol());
    let tty = shared
        .jobs
        .with(|m| m.jobs.get(&id).and_then(|j| j.tty.clone()));
    let input = super::input::wanted(shared, id);
    if (tty.is_some() || input) && speaks < 3 {
        let msg = if tty.is_some() {
            format!(
                "node {} runs an older agent (protocol {speaks}) that cannot open a terminal; upgrade it",
                row.node
            )
        } else {
            format!(
                "node {} runs an older agent (protocol {speaks}) that cannot take standard input; upgrade it, or run with -n",
                row.node
            )
        };
        end(shared, id, JobState::Failed, None, &msg)?;
        return Err(err(ErrorCode::FailedPrecondition, msg));
    }
    let run = match tty {
        Some(tty) => {
            let cfg = shared.config();
            let rec = super::record::Recorder::start(
                &shared.logs_dir,
                id,
                &tty,
                &shared.clock,
                cfg.policy.record_input,
            );
            shared.jobs.with(|m| {
                if let Some(j) = m.jobs.get_mut(&id) {
                    j.recorder = rec.map(Arc::new);
                }
            });
            proto::ControlMsg::RunJobTty {
                plan: row.plan.clone(),
                tty,
            }
        }
        None => {
            let patterns = shared.store.tx(|tx| tx.artifact_patterns(id))?;
            let caps = (
                shared.config().artifact_max_file,
                shared.config().artifact_max_job,
            );
            let (run, note) =
                super::artifacts::run_message(caps, row.plan.clone(), input, patterns, speaks);
            if let Some(note) = note {
                tracing::info!(job = id, "{note}");
                shared.store.tx(|tx| tx.set_artifacts_note(id, &note))?;
            }
            run
        }
    };
    // Streams for this job and the others on the node, before the node
    // hears of it (one more than its load, whether or not the load counts
    // this job yet).
    let on_node = shared.jobs.load(&row.node).1;
    shared
        .registry
        .make_room(&row.node, on_node.saturating_add(1));
    if control.try_send(Box::new(run)).is_err() {
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
    hide_from_members(shared, peer, &who, &row)?;
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
        .tx(|tx| tx.audit(shared.clock.unix(), &who, "job.cancel", &id.to_string(), ""))?;
    cancel_job(shared, id, &who)
}

/// Cancels a live job for `who`: on its node, SIGTERM then SIGKILL; before
/// that, at once. Either way it ends `cancelled`, with the reason
/// `cancelled by WHO`, and an exit code only if its process ran.
pub(super) fn cancel_job(shared: &Shared, id: u64, who: &str) -> Result<String, ApiError> {
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

pub(super) fn exit_text(row: &JobRow) -> String {
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
    let member = stored_job(shared, id)?;
    hide_from_members(shared, peer, &who, &member)?;
    if let Some(fan) = member.fanout {
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
            shared.clock.unix(),
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

/// A lab member (role `user`) asking to cancel, approve or deny a job it
/// may not see is answered as for a job that does not exist, as `job show`
/// answers: neither the job's state nor its approvers are told. A chat
/// front end's users keep the reason ("not an approver"): the bot shows
/// the job's card to the whole channel, so its existence is no secret.
fn hide_from_members(
    shared: &Shared,
    peer: &Peer,
    who: &str,
    row: &JobRow,
) -> Result<(), ApiError> {
    if peer.role == Role::User {
        super::check_visible(shared, peer, who, row)?;
    }
    Ok(())
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
    hide_from_members(shared, peer, &who, &row)?;
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
        shared.store.tx(|tx| {
            tx.audit(
                shared.clock.unix(),
                &who,
                "fanout.deny",
                &fan.to_string(),
                &reason,
            )
        })?;
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
            shared.store.tx(|tx| {
                tx.audit(
                    shared.clock.unix(),
                    &who,
                    "job.deny",
                    &id.to_string(),
                    &reason,
                )
            })?;
            Ok(format!("job {id} {reason}"))
        }
        None => Err(err(
            ErrorCode::FailedPrecondition,
            format!("job {id} stopped awaiting approval meanwhile; run 'openclaw job show {id}'"),
        )),
    }
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
        shared.jobs.insert(
            row.id,
            &row.node,
            row.plan.gpus,
            row.state,
            false,
            shared.clock.now(),
        );
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
            JobState::Queued if row.queue_until.is_some_and(|t| shared.clock.unix() < t) => {
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
