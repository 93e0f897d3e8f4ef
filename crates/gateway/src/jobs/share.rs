//! The fair share at the gateway's edge (issue 24): reads the store, the
//! live table and the clock, and asks the pure decisions in
//! [`crate::fair`] whether a job may start now, must wait, or is refused.
//!
//! A job's *turn* is taken under the route lock, so two jobs never both
//! get the last GPU of a quota. A job that could route yields when a job
//! ahead of it in the fair-share order (least decayed usage of its
//! account, then priority, then age) could start now on the same
//! snapshot: that job's own waiter takes the capacity when it is woken.

use std::collections::{BTreeMap, HashSet};

use proto::{ApiError, ErrorCode};

use super::options::Options;
use super::{Resolved, err, requeued, route_in};
use crate::config::Config;
use crate::fair::{self, Charge, Held, Refusal, Span, Waiting};
use crate::routing::{NodeView, RouteError};
use crate::shared::Shared;
use crate::store::{JobRow, JobState, UsedRow};

/// What a job is charged to and how it waits, checked at submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Account {
    /// Requester and project.
    pub charge: Charge,
    /// Its priority, capped by `fair_share.max_priority`.
    pub priority: i32,
    /// `--preemptible`.
    pub preemptible: bool,
}

/// Checks a submission's project and caps its priority: an unknown
/// project, or one its requester is not a member of, is refused.
pub(super) fn account(cfg: &Config, requester: &str, o: &Options) -> Result<Account, ApiError> {
    if let Some(p) = &o.project {
        match cfg.fair.is_member(p, requester) {
            None => {
                let known: Vec<&str> = cfg.fair.projects.keys().map(String::as_str).collect();
                return Err(err(
                    ErrorCode::NotFound,
                    format!(
                        "there is no project {p:?} (projects: {}); ask an admin to add [projects.{p}] to gateway.toml",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            Some(false) => {
                return Err(err(
                    ErrorCode::PermissionDenied,
                    format!(
                        "{requester} is not a member of project {p}; ask an admin to add them to \
                         [projects.{p}] members in gateway.toml, or run without --project"
                    ),
                ));
            }
            Some(true) => {}
        }
    }
    Ok(Account {
        charge: Charge {
            requester: requester.to_string(),
            project: o.project.clone(),
        },
        priority: fair::cap_priority(o.priority, cfg.fair.max_priority),
        preemptible: o.preemptible,
    })
}

/// A job asking for its turn.
#[derive(Debug, Clone)]
pub(super) struct Candidate<'a> {
    /// Its id; 0 for a job not stored yet (at submit).
    pub id: u64,
    /// What it is charged to.
    pub charge: &'a Charge,
    /// Its capped priority.
    pub priority: i32,
    /// When it was submitted.
    pub created_at: u64,
    /// What it asks for.
    pub resolved: &'a Resolved,
}

/// Why a job does not start now.
#[derive(Debug)]
pub(super) enum NotNow {
    /// Routing's answer, or a wait for a quota or for a job ahead in the
    /// fair-share order (`RouteError::Busy`).
    Route(RouteError),
    /// Refused outright (at submit): a quota it can never fit, a spent
    /// budget, a full queue quota.
    Refuse(ApiError),
}

/// Everything the turn reads, once, under the route lock.
struct Snapshot {
    /// Jobs not ended.
    unfinished: std::sync::Arc<Vec<JobRow>>,
    /// Ids of jobs holding capacity (dispatched, or routed and reserved).
    holding: HashSet<u64>,
    /// GPU use since the fair share's horizon (jobs with GPUs only).
    usage: std::sync::Arc<Vec<UsedRow>>,
    /// Node views for routing.
    views: Vec<NodeView>,
    now: u64,
}

/// How far back decayed usage is read: after eight half-lives a second
/// counts less than 0.4 %.
fn horizon(cfg: &Config, now: u64) -> u64 {
    now.saturating_sub((cfg.fair.half_life.as_secs() * 8).max(fair::WEEK))
}

fn snapshot(shared: &Shared, cfg: &Config) -> Result<Snapshot, ApiError> {
    let now = shared.clock.unix();
    let since = horizon(cfg, now);
    // Read before the store: a job that reserves capacity meanwhile is
    // in the store already (it was inserted before it could reserve).
    let holding = shared.jobs.holding();
    let view = shared.jobs.store_view(shared.clock.now(), since, || {
        shared
            .store
            .tx(|tx| Ok::<_, ApiError>((tx.unfinished_jobs()?, tx.gpu_usage_since(since, now)?)))
    })?;
    let views = super::node_views(shared)?;
    Ok(Snapshot {
        unfinished: view.unfinished,
        holding,
        usage: view.usage,
        views,
        now,
    })
}

impl Snapshot {
    fn spans(&self, keep: impl Fn(&fair::usage::Used) -> bool) -> Vec<Span> {
        self.usage
            .iter()
            .map(|r| &r.used)
            .filter(|u| keep(u))
            .map(span)
            .collect()
    }

    /// Decayed usage per fair-share account.
    fn decayed(&self, half_life: u64) -> BTreeMap<String, f64> {
        let mut by: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        for u in self.usage.iter().map(|r| &r.used) {
            let charge = Charge {
                requester: u.requester.clone(),
                project: u.project.clone(),
            };
            by.entry(charge.account()).or_default().push(span(u));
        }
        by.into_iter()
            .map(|(a, s)| (a, fair::decayed(&s, self.now, half_life)))
            .collect()
    }

    fn held(&self, keep: impl Fn(&JobRow) -> bool) -> Held {
        let mut h = Held::default();
        for r in self
            .unfinished
            .iter()
            .filter(|r| self.holding.contains(&r.id) && keep(r))
        {
            h.gpus += r.plan.gpus;
            h.jobs += 1;
        }
        h
    }

    /// Jobs waiting for capacity (fan-out members wait in their driver).
    fn waiting(&self) -> impl Iterator<Item = &JobRow> {
        self.unfinished.iter().filter(|r| {
            r.state == JobState::Queued && r.fanout.is_none() && !self.holding.contains(&r.id)
        })
    }

    /// The quotas of `charge` for a job of `gpus` GPUs: the first refusal
    /// that can never pass, else a spent budget, else a wait.
    fn quotas(&self, cfg: &Config, charge: &Charge, gpus: u32) -> Result<(), Refusal> {
        let mut found = Vec::new();
        let (ukey, uq) = cfg.fair.user_quota(&charge.requester);
        let uspans = self.spans(|u| u.requester == charge.requester);
        let uheld = self.held(|r| r.requester == charge.requester);
        found.push(fair::check_quota(&ukey, uq, uheld, gpus, &uspans, self.now));
        if let Some(p) = &charge.project
            && let Some((pkey, pq)) = cfg.fair.project_quota(p)
        {
            let pspans = self.spans(|u| u.project.as_deref() == Some(p));
            let pheld = self.held(|r| r.project.as_deref() == Some(p));
            found.push(fair::check_quota(&pkey, pq, pheld, gpus, &pspans, self.now));
        }
        let rank = |r: &Refusal| match r {
            Refusal::Never(_) => 0,
            Refusal::Budget { .. } => 1,
            Refusal::Wait(_) => 2,
        };
        match found.into_iter().filter_map(Result::err).min_by_key(rank) {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }
}

/// One job's turn: the node it may start on now, or why not. `at_submit`
/// refuses a spent budget (a queued job waits for it to reset instead)
/// and applies the queued-jobs quota.
pub(super) fn turn(
    shared: &Shared,
    cfg: &Config,
    cand: &Candidate<'_>,
    at_submit: bool,
    queues: bool,
) -> Result<String, NotNow> {
    let s = snapshot(shared, cfg).map_err(NotNow::Refuse)?;
    let gpus = cand.resolved.gpus;
    let quota = s.quotas(cfg, cand.charge, gpus);
    let refuse = |m: String| NotNow::Refuse(err(ErrorCode::Denied, m));
    match &quota {
        Err(Refusal::Never(m)) => {
            return Err(refuse(format!(
                "refused by quota: {m}; ask for fewer, or ask an admin to raise it in gateway.toml"
            )));
        }
        Err(Refusal::Budget { what, resets_at }) if at_submit => {
            return Err(refuse(format!(
                "refused: over budget ({what}); there is room again at {}",
                proto::clock::Utc::from_unix(*resets_at)
            )));
        }
        _ => {}
    }
    let routed = route_in(&s.views, cand.resolved);
    if !at_submit && matches!(&routed, Err(e) if e.is_busy()) && quota.is_ok() {
        preempt(shared, cfg, &s, cand);
    }
    let waits = match (&routed, quota) {
        (Err(_), _) => None,
        (Ok(_), Err(Refusal::Wait(m))) => Some(format!("waiting for quota: {m}")),
        (Ok(_), Err(Refusal::Budget { what, resets_at })) => Some(format!(
            "over budget ({what}) until {}",
            proto::clock::Utc::from_unix(resets_at)
        )),
        (Ok(_), _) => ahead(cfg, &s, cand),
    };
    let result = match (routed, waits) {
        (Ok(node), None) => Ok(node),
        (Ok(_), Some(m)) if at_submit && !queues => Err(NotNow::Route(RouteError::Busy(format!(
            "{m}; pass --queue to wait for its turn"
        )))),
        (Ok(_), Some(m)) => Err(NotNow::Route(RouteError::Busy(m))),
        (Err(e), _) => Err(NotNow::Route(e)),
    };
    if at_submit
        && queues
        && matches!(&result, Err(NotNow::Route(e)) if e.is_busy())
        && let Some(m) = queue_full(cfg, &s, cand.charge)
    {
        return Err(refuse(m));
    }
    result
}

/// The job ahead of `cand` in the fair-share order that could start now,
/// as a reason to wait; `None` when `cand` is first among those.
fn ahead(cfg: &Config, s: &Snapshot, cand: &Candidate<'_>) -> Option<String> {
    let usage = s.decayed(cfg.fair.half_life.as_secs());
    let mut order: Vec<Waiting> = s
        .waiting()
        .filter(|r| r.id != cand.id)
        .map(waiting_of)
        .collect();
    let me = Waiting {
        id: if cand.id == 0 { u64::MAX } else { cand.id },
        account: cand.charge.account(),
        priority: cand.priority,
        created_at: cand.created_at,
    };
    order.push(me.clone());
    fair::order(&mut order, &usage);
    let rows: BTreeMap<u64, &JobRow> = s.waiting().map(|r| (r.id, r)).collect();
    for w in order.iter().take_while(|w| **w != me) {
        let Some(row) = rows.get(&w.id) else { continue };
        let charge = charge_of(row);
        if s.quotas(cfg, &charge, row.plan.gpus).is_ok()
            && route_in(&s.views, &requeued(row)).is_ok()
        {
            // Another requester's job is not named: a member sees their
            // own jobs only (the turn's words reach the requester).
            return Some(if row.requester == cand.charge.requester {
                format!(
                    "job {} of {} is ahead in the fair-share order",
                    row.id,
                    charge.account()
                )
            } else {
                "a job of another account is ahead in the fair-share order".to_string()
            });
        }
    }
    None
}

/// Stops a preemptible job for `cand`, a waiting job that no node has
/// room for, when `cand` is first in the fair-share order and its account
/// is under its fair share ([`fair::victim`]). One preemption at a time:
/// the victim gets SIGTERM, then SIGKILL after `kill_grace` (the cancel
/// path), and is queued again when its end is recorded
/// (`submit::requeue`).
fn preempt(shared: &Shared, cfg: &Config, s: &Snapshot, cand: &Candidate<'_>) {
    if cand.resolved.gpus == 0 || shared.jobs.preempting() {
        return;
    }
    let usage = s.decayed(cfg.fair.half_life.as_secs());
    let me = Waiting {
        id: cand.id,
        account: cand.charge.account(),
        priority: cand.priority,
        created_at: cand.created_at,
    };
    let mut order: Vec<Waiting> = s
        .waiting()
        .filter(|r| r.id != cand.id)
        .map(waiting_of)
        .collect();
    order.push(me.clone());
    fair::order(&mut order, &usage);
    if order.first() != Some(&me) {
        return;
    }
    let running: Vec<fair::Running> = s
        .unfinished
        .iter()
        .filter(|r| r.state == JobState::Running && s.holding.contains(&r.id))
        .map(|r| fair::Running {
            id: r.id,
            account: charge_of(r).account(),
            node: r.node.clone(),
            gpus: r.plan.gpus,
            preemptible: r.preemptible,
            started: r.started_at.unwrap_or(r.created_at),
        })
        .collect();
    let mut active: Vec<String> = running
        .iter()
        .map(|r| r.account.clone())
        .chain(order.iter().map(|w| w.account.clone()))
        .collect();
    active.sort();
    active.dedup();
    let fits = |node: &str| match (&cand.resolved.node, &cand.resolved.role) {
        (Some(n), _) => n == node,
        (None, Some(role)) => s.views.iter().any(|v| {
            v.name == node && (v.labels.contains(role) || (role == "gpu" && v.gpus_total > 0))
        }),
        (None, None) => false,
    };
    let Some(victim) = fair::victim(
        &me.account,
        cand.resolved.gpus,
        fits,
        &running,
        &active,
        &usage,
    ) else {
        return;
    };
    shared.jobs.mark_preempted(victim, cand.id);
    let who = format!(
        "the fair-share queue: preempted for job {} of {}",
        cand.id, me.account
    );
    tracing::info!(
        job = victim,
        for_job = cand.id,
        "preempting a job for the fair share"
    );
    if let Err(e) = super::lifecycle::cancel_job(shared, victim, &who) {
        shared.jobs.clear_preempted(victim);
        tracing::info!(job = victim, error = %e.message, "could not preempt");
    }
}

/// `Request::Queue`: the waiting jobs in the order the queue serves them,
/// each with why it waits. A lab member or a chat user sees only their own
/// jobs, with their positions in the whole queue.
pub fn queue(
    shared: &std::sync::Arc<Shared>,
    peer: &crate::peer::Peer,
    on_behalf_of: Option<&str>,
) -> Result<proto::Response, ApiError> {
    let who = super::identity(peer, on_behalf_of)?;
    let own_only = peer.role != proto::Role::Admin;
    let cfg = shared.config();
    let s = snapshot(shared, &cfg)?;
    let usage = s.decayed(cfg.fair.half_life.as_secs());
    let rows: BTreeMap<u64, &JobRow> = s.waiting().map(|r| (r.id, r)).collect();
    let mut order: Vec<Waiting> = rows.values().map(|r| waiting_of(r)).collect();
    fair::order(&mut order, &usage);
    // A rough start: the n-th job waits for the n-th running job to reach
    // its timeout, when every running job has one.
    let mut ends: Vec<u64> = Vec::new();
    let mut bounded = true;
    for r in s.unfinished.iter().filter(|r| s.holding.contains(&r.id)) {
        match r.plan.timeout_secs {
            Some(t) => ends.push(r.started_at.unwrap_or(s.now) + t),
            None => bounded = false,
        }
    }
    ends.sort_unstable();
    let mut entries = Vec::new();
    for (i, w) in order.iter().enumerate() {
        let Some(row) = rows.get(&w.id) else { continue };
        if own_only && row.requester != who {
            continue;
        }
        if entries.len() >= proto::MAX_QUEUE_ROWS {
            break;
        }
        entries.push(proto::QueueEntry {
            position: u32::try_from(i + 1).unwrap_or(u32::MAX),
            id: row.id,
            requester: row.requester.clone(),
            project: row.project.clone(),
            gpus: row.plan.gpus,
            priority: row.priority,
            created_at: row.created_at,
            reason: reason(&cfg, &s, row),
            estimated_start: if bounded {
                ends.get(i).map(|t| (*t).max(s.now))
            } else {
                None
            },
        });
    }
    Ok(proto::Response::Queue(proto::QueueReport {
        now: s.now,
        entries,
        total: u32::try_from(order.len()).unwrap_or(u32::MAX),
    }))
}

/// Why a waiting job waits, as a sentence.
fn reason(cfg: &Config, s: &Snapshot, row: &JobRow) -> String {
    let charge = charge_of(row);
    match s.quotas(cfg, &charge, row.plan.gpus) {
        Err(Refusal::Wait(m)) => return format!("waiting for quota: {m}"),
        Err(Refusal::Never(m)) => return format!("can never fit its quota: {m}"),
        Err(Refusal::Budget { what, resets_at }) => {
            return format!(
                "over budget ({what}) until {}",
                proto::clock::Utc::from_unix(resets_at)
            );
        }
        Ok(()) => {}
    }
    let r = requeued(row);
    match route_in(&s.views, &r) {
        Err(RouteError::Busy(m)) => format!(
            "waiting for capacity: {}",
            m.trim_end_matches("; retry later or pass --queue")
        ),
        Err(RouteError::Unknown(m) | RouteError::Unavailable(m) | RouteError::Never(m)) => {
            format!("its target cannot take it now: {m}")
        }
        Ok(_) => {
            let cand = Candidate {
                id: row.id,
                charge: &charge,
                priority: row.priority,
                created_at: row.created_at,
                resolved: &r,
            };
            ahead(cfg, s, &cand).unwrap_or_else(|| "next: starting now".into())
        }
    }
}

/// Why fan-out member `row` may not start now by its requester's and
/// project's quotas, if it may not: members keep their fan-out's window
/// instead of the queue's turn, but quotas hold them like any job. Called
/// under the route lock.
pub(super) fn fan_member_refusal(
    shared: &Shared,
    cfg: &Config,
    row: &JobRow,
) -> Result<Option<String>, ApiError> {
    let s = snapshot(shared, cfg)?;
    Ok(match s.quotas(cfg, &charge_of(row), row.plan.gpus) {
        Ok(()) => None,
        Err(Refusal::Never(m) | Refusal::Wait(m)) => Some(format!(
            "refused by quota: {m}; a fan-out does not wait for its quota"
        )),
        Err(Refusal::Budget { what, resets_at }) => Some(format!(
            "refused: over budget ({what}); there is room again at {}",
            proto::clock::Utc::from_unix(resets_at)
        )),
    })
}

/// The queued-jobs quota of `charge`, when it is full.
fn queue_full(cfg: &Config, s: &Snapshot, charge: &Charge) -> Option<String> {
    let (ukey, uq) = cfg.fair.user_quota(&charge.requester);
    let mut checks = vec![(
        ukey,
        uq.queued,
        s.waiting()
            .filter(|r| r.requester == charge.requester)
            .count(),
    )];
    if let Some(p) = &charge.project
        && let Some((pkey, pq)) = cfg.fair.project_quota(p)
    {
        let n = s
            .waiting()
            .filter(|r| r.project.as_deref() == Some(p))
            .count();
        checks.push((pkey, pq.queued, n));
    }
    checks.into_iter().find_map(|(key, max, n)| {
        let max = max?;
        (n >= max as usize).then(|| {
            format!(
                "refused by quota: {key}.queued: {n} of {max} jobs already waiting; \
                 wait for some to start, or cancel some"
            )
        })
    })
}

fn span(u: &fair::usage::Used) -> Span {
    Span {
        start: u.started_at,
        end: u.end,
        gpus: u.gpus,
    }
}

pub(super) fn charge_of(row: &JobRow) -> Charge {
    Charge {
        requester: row.requester.clone(),
        project: row.project.clone(),
    }
}

fn waiting_of(row: &JobRow) -> Waiting {
    Waiting {
        id: row.id,
        account: charge_of(row).account(),
        priority: row.priority,
        created_at: row.created_at,
    }
}
