//! Submitting a job: resolve, route and the capacity it takes under one
//! lock, policy, and the queue for capacity.

use std::sync::Arc;
use std::time::Duration;

use proto::{ApiError, ErrorCode, JobInfo, JobOption, JobSpec, Role};

use super::share::{self, Candidate, NotNow};
use super::{
    Resolved, bound_key, dispatch, end, end_if, err, finish_live, identity, live_info, plan_digest,
    plan_for, resolve, set_progress_state,
};
use crate::peer::Peer;
use crate::policy::{self, Action};
use crate::routing::RouteError;
use crate::shared::{Shared, off_runtime};
use crate::store::{JobRow, JobState, Tx};

/// Creates a job. Returns its record; a policy denial is an error (the
/// denied job is still recorded for the audit trail).
pub fn submit(shared: &Arc<Shared>, peer: &Peer, spec: JobSpec) -> Result<JobInfo, ApiError> {
    submit_with(shared, peer, spec, &[], None)
}

/// [`submit`], with options (`JobRequest`) and the requester's standard
/// input (`JobRunInput`, `Follow::AttachedWithInput`): the input is parked
/// with the job before it can be dispatched, so the node gets a stdin pipe.
pub fn submit_with(
    shared: &Arc<Shared>,
    peer: &Peer,
    spec: JobSpec,
    options: &[JobOption],
    input: Option<quinn::RecvStream>,
) -> Result<JobInfo, ApiError> {
    submit_attached(shared, peer, spec, options, input, None)
}

/// An interactive session (`JobRunTty`): [`submit_with`] with the
/// terminal `tty`; its input stream carries tty frames, and
/// `policy.shell` decides beside the job policy. An empty argv (and no
/// named job) is the job user's login shell.
pub fn submit_tty(
    shared: &Arc<Shared>,
    peer: &Peer,
    spec: JobSpec,
    tty: proto::tty::Tty,
    input: quinn::RecvStream,
) -> Result<JobInfo, ApiError> {
    if peer.role == Role::Bot {
        return Err(err(
            ErrorCode::PermissionDenied,
            "chat bots never open interactive sessions",
        ));
    }
    tty.check()
        .map_err(|m| err(ErrorCode::InvalidArgument, format!("bad terminal: {m}")))?;
    submit_attached(shared, peer, spec, &[], Some(input), Some(tty))
}

fn submit_attached(
    shared: &Arc<Shared>,
    peer: &Peer,
    spec: JobSpec,
    options: &[JobOption],
    input: Option<quinn::RecvStream>,
    tty: Option<proto::tty::Tty>,
) -> Result<JobInfo, ApiError> {
    let requester = identity(peer, spec.on_behalf_of.as_deref())?;
    check_key(spec.idempotency_key.as_deref())?;
    let options = super::options::check(options)?;
    let cfg = shared.config();
    let account = super::share::account(&cfg, &requester, &options)?;
    let chat = peer.role == Role::Bot;
    let resolved = if tty.is_some() && spec.job.is_none() && spec.argv.is_empty() {
        if spec.shell {
            return Err(err(
                ErrorCode::InvalidArgument,
                "a login shell takes no --shell; give a command, or none for the login shell",
            ));
        }
        // The login shell: resolved as any command (target, limits,
        // environment), then with no argv, which the node reads as the
        // job user's login shell.
        let mut probe = spec.clone();
        probe.argv = vec!["login-shell".into()];
        let mut r = resolve(&cfg, &probe, chat)?;
        r.argv.clear();
        r
    } else {
        resolve(&cfg, &spec, chat)?
    };
    let artifacts =
        super::artifacts::patterns(&cfg, resolved.named_job.as_deref(), &options.artifacts)?;
    let now = shared.clock.unix();
    let secret_env = cfg.policy.secret_keys(&resolved.env);
    // Routing and the capacity it takes happen under one lock, so two
    // submits can never both be given the last GPU or job slot.
    let (row, routed) = {
        let _routing = shared.jobs.route_lock();
        let cand = Candidate {
            id: 0,
            charge: &account.charge,
            priority: account.priority,
            created_at: now,
            resolved: &resolved,
        };
        let routed = match share::turn(shared, &cfg, &cand, true, spec.queue_timeout_secs.is_some())
        {
            Ok(node) => Ok(node),
            Err(NotNow::Route(e)) => Err(e),
            Err(NotNow::Refuse(e)) => return Err(e),
        };
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
        row.project = account.charge.project.clone();
        row.priority = account.priority;
        row.preemptible = account.preemptible;
        let key = spec.idempotency_key.as_deref();
        let created = shared.store.tx(|tx| {
            // A repeated key returns the first job: checked and recorded
            // in the transaction that creates the job.
            if let Some(job) = repeat_of(tx, &peer.name, key, &requester)? {
                return Ok::<_, ApiError>(Err(job));
            }
            let id = tx.insert_job(&row)?;
            if !artifacts.is_empty() {
                tx.set_artifact_patterns(id, &artifacts)?;
            }
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
        shared.jobs.insert(
            id,
            &row.node,
            resolved.gpus,
            row.state,
            routed.is_ok(),
            shared.clock.now(),
        );
        if let Some(input) = input {
            super::input::park(shared, id, input);
        }
        if let Some(t) = tty {
            shared.jobs.with(|m| {
                if let Some(j) = m.jobs.get_mut(&id) {
                    j.tty = Some(t);
                }
            });
        }
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
pub(super) fn check_key(key: Option<&str>) -> Result<(), ApiError> {
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
pub(super) fn decide(
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
    let mut rule = policy::rule_name(decision.rule, chat);
    // An interactive session: policy.shell too, the stricter deciding.
    let session = shared
        .jobs
        .with(|m| m.jobs.get(&row.id).is_some_and(|j| j.tty.is_some()));
    let decision = if session {
        let (d, named) = policy::stricter(
            (decision, rule.clone()),
            policy::shell(&cfg.policy, &row.requester, node),
        );
        rule = named;
        d
    } else {
        decision
    };
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
            row.finished_at = Some(shared.clock.unix());
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
pub(super) fn requeued(row: &JobRow) -> Resolved {
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

pub(super) async fn wait_in_queue(shared: Arc<Shared>, id: u64, r: Resolved, chat: bool) {
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
pub(super) enum QueueStep {
    /// It was decided or ended: nothing more to wait for.
    Done,
    /// Still no capacity; try again when some frees up.
    Wait,
}

/// One try at routing a queued job (blocking: runs off the async workers).
pub(super) fn queued_turn(shared: &Arc<Shared>, id: u64, r: &Resolved, chat: bool) -> QueueStep {
    let Ok(Some(row)) = shared.store.tx(|tx| tx.job(id)) else {
        return QueueStep::Done;
    };
    if row.state != JobState::Queued {
        return QueueStep::Done;
    }
    let cfg = shared.config();
    let routed = {
        let _routing = shared.jobs.route_lock();
        let charge = share::charge_of(&row);
        let cand = Candidate {
            id,
            charge: &charge,
            priority: row.priority,
            created_at: row.created_at,
            resolved: r,
        };
        let routed = match share::turn(shared, &cfg, &cand, false, false) {
            Ok(node) => Ok(node),
            Err(NotNow::Route(e)) => Err(e),
            Err(NotNow::Refuse(e)) => {
                // A quota lowered while it waited (SIGHUP) so far that it
                // can never fit: it ends now, saying which.
                drop(_routing);
                let _ = end(shared, id, JobState::Failed, None, &e.message);
                return QueueStep::Done;
            }
        };
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
        Err(e)
            if e.queued_job_waits() && row.queue_until.is_some_and(|t| shared.clock.unix() < t) =>
        {
            QueueStep::Wait
        }
        Err(e) => {
            let (state, msg) = match e {
                // A request that became impossible while it waited (its
                // node's GPU cap lowered, its node gone) ends now, saying why.
                RouteError::Never(m) => (
                    JobState::Failed,
                    format!("no node can ever run it now: {m}"),
                ),
                RouteError::Busy(m) => (
                    JobState::Expired,
                    format!("gave up waiting for capacity: {m}"),
                ),
                RouteError::Unknown(m) | RouteError::Unavailable(m) => (JobState::Expired, m),
            };
            let _ = end(shared, id, state, None, &msg);
            QueueStep::Done
        }
    }
}

/// Queues a preempted job again as a new attempt: a new job with the same
/// plan, requester, project, priority and queue window, `requeued_from`
/// the stopped one. The stopped attempt keeps its output, logs and end
/// (`cancelled`, by the fair-share queue); the new attempt starts with
/// empty logs. A failure is logged: the stopped job's end stands.
pub(super) fn requeue(shared: &Arc<Shared>, old: &JobRow) {
    let now = shared.clock.unix();
    let window = old
        .queue_until
        .map_or(86_400, |t| t.saturating_sub(old.created_at).max(60));
    let mut r = requeued(old);
    // A job routed by role may run anywhere its role allows next time.
    if r.role.is_some() {
        r.node = None;
    }
    let mut row = JobRow::fresh(
        JobState::Queued,
        String::new(),
        old.role.clone(),
        old.named_job.clone(),
        plan_for(shared, 0, r.node.as_deref().unwrap_or(""), &r),
        old.requester.clone(),
        old.via.clone(),
        now,
    );
    row.queue_until = Some(now + window);
    row.secret_env = old.secret_env.clone();
    row.project = old.project.clone();
    row.priority = old.priority;
    row.preemptible = old.preemptible;
    row.requeued_from = Some(old.id);
    let created = shared.store.tx(|tx| {
        let id = tx.insert_job(&row)?;
        tx.audit(
            now,
            "gateway",
            "job.requeue",
            &id.to_string(),
            &format!("attempt after job {} was preempted", old.id),
        )?;
        let chat = tx.client(&old.via)?.is_some_and(|c| c.role == Role::Bot);
        Ok::<_, ApiError>((id, chat))
    });
    match created {
        Ok((id, chat)) => {
            shared
                .jobs
                .insert(id, "", r.gpus, JobState::Queued, false, shared.clock.now());
            tracing::info!(job = id, was = old.id, "preempted job queued again");
            tokio::spawn(wait_in_queue(shared.clone(), id, r, chat));
        }
        Err(e) => {
            tracing::error!(job = old.id, error = %e.message, "could not queue a preempted job again")
        }
    }
}

pub(super) async fn expire_approval(shared: Arc<Shared>, id: u64, at: u64) {
    let wait = at.saturating_sub(shared.clock.unix());
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
