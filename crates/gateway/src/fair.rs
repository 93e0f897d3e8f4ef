//! Fair shares of the GPUs (issue 24): accounts, quotas, the fair-share
//! order of the queue, the rolling weekly budget and the choice of a job
//! to preempt. Pure: no store, no clock; every time is a parameter (unix
//! seconds), and the gateway's edges (`jobs/share.rs`) read the store and
//! `shared.clock` and call these.
//!
//! * An **account** is what a job is charged to for the fair share: its
//!   project (`project:NAME`) when it names one, else its requester
//!   (`user:alice`, a chat identity, or an admin's certificate name).
//! * **Usage** is GPU-seconds. The fair share reads it decayed: a second
//!   used `age` ago counts `2^(-age / half_life)`, as Slurm's classic
//!   fair-share does. Weekly budgets read it plain, over the last 7 days.
//! * When capacity frees, the next job is the one whose account has the
//!   least decayed usage, then the highest priority (capped by
//!   `[fair_share] max_priority`), then the oldest.

pub mod config;
pub mod usage;

use std::cmp::Ordering;
use std::collections::BTreeMap;

pub use config::{FairConfig, Quota};

/// The rolling window of a weekly GPU-hour budget, in seconds.
pub const WEEK: u64 = 7 * 86_400;

/// What one job is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The requester's identity.
    pub requester: String,
    /// The project, if the job names one.
    pub project: Option<String>,
}

impl Charge {
    /// The fair-share account: the project when there is one, else the
    /// requester.
    pub fn account(&self) -> String {
        match &self.project {
            Some(p) => format!("project:{p}"),
            None => self.requester.clone(),
        }
    }
}

/// A stretch of GPU use: `gpus` GPUs from `start` to `end` (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// When it started.
    pub start: u64,
    /// When it ended (for a running job: now).
    pub end: u64,
    /// GPUs held.
    pub gpus: u32,
}

/// Decayed GPU-seconds of `spans` at `now`: each second counts
/// `2^(-(now - t) / half_life)`, integrated exactly over each span.
pub fn decayed(spans: &[Span], now: u64, half_life: u64) -> f64 {
    let h = half_life.max(1) as f64;
    let k = std::f64::consts::LN_2 / h;
    spans
        .iter()
        .map(|s| {
            let end = s.end.min(now);
            let start = s.start.min(end);
            // ∫ 2^(-(now-t)/h) dt from start to end.
            let w = ((-k * (now - end) as f64).exp() - (-k * (now - start) as f64).exp()) / k;
            w * f64::from(s.gpus)
        })
        .sum()
}

/// Plain GPU-seconds of `spans` inside the window `[at - WEEK, at]`.
pub fn in_week(spans: &[Span], at: u64) -> u64 {
    let from = at.saturating_sub(WEEK);
    spans
        .iter()
        .map(|s| {
            let (a, b) = (s.start.max(from), s.end.min(at));
            b.saturating_sub(a) * u64::from(s.gpus)
        })
        .sum()
}

/// When a weekly budget of `budget` GPU-seconds, used up at `now` by
/// `spans`, has room again: the first second at which the last 7 days
/// hold less than the budget, if nothing more runs. `None` when there is
/// room now.
pub fn budget_resets(spans: &[Span], budget: u64, now: u64) -> Option<u64> {
    if in_week(spans, now) < budget {
        return None;
    }
    // Usage in the window only falls as it slides past `now` (nothing
    // new is counted), and is 0 a week from now: search the second.
    let (mut lo, mut hi) = (now, now + WEEK);
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if in_week(spans, mid) < budget {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// A job waiting in the queue, as the order sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Job id (ties after age).
    pub id: u64,
    /// Its fair-share account ([`Charge::account`]).
    pub account: String,
    /// Its priority, already capped.
    pub priority: i32,
    /// When it was submitted (unix seconds).
    pub created_at: u64,
}

/// Sorts `waiting` into the order the queue serves: least decayed usage
/// of the account first, then highest priority, then oldest, then lowest
/// id. `usage` gives each account's decayed usage (absent: none).
pub fn order(waiting: &mut [Waiting], usage: &BTreeMap<String, f64>) {
    let u = |a: &str| usage.get(a).copied().unwrap_or(0.0);
    waiting.sort_by(|a, b| {
        u(&a.account)
            .partial_cmp(&u(&b.account))
            .unwrap_or(Ordering::Equal)
            .then(b.priority.cmp(&a.priority))
            .then(a.created_at.cmp(&b.created_at))
            .then(a.id.cmp(&b.id))
    });
}

/// Caps a requested priority at `[-max, max]`.
pub fn cap_priority(asked: i32, max: i32) -> i32 {
    asked.clamp(-max, max)
}

/// What an account holds now (jobs counted against capacity).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// GPUs.
    pub gpus: u32,
    /// Jobs.
    pub jobs: u32,
}

/// Why a job may not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It waits: a concurrent quota is full now.
    Wait(String),
    /// It can never fit under a quota: refuse it, naming the quota.
    Never(String),
    /// A weekly budget is spent: refuse it (or keep it waiting) until
    /// `resets_at`.
    Budget {
        /// What is spent.
        what: String,
        /// Unix seconds at which there is room again.
        resets_at: u64,
    },
}

/// Checks one quota (`key` names it in messages, e.g.
/// `quotas.users."user:alice"`) for a job of `gpus` GPUs, given what its
/// subject holds now and its GPU use of the last week.
pub fn check_quota(
    key: &str,
    q: &Quota,
    held: Held,
    gpus: u32,
    spans: &[Span],
    now: u64,
) -> Result<(), Refusal> {
    if let Some(max) = q.gpus {
        if gpus > max {
            return Err(Refusal::Never(format!(
                "it asks for {gpus} GPUs and {key}.gpus allows {max} at once"
            )));
        }
        if held.gpus + gpus > max {
            return Err(Refusal::Wait(format!(
                "{key}.gpus: {} of {max} GPUs in use",
                held.gpus
            )));
        }
    }
    if let Some(max) = q.jobs {
        if max == 0 {
            return Err(Refusal::Never(format!("{key}.jobs is 0")));
        }
        if held.jobs >= max {
            return Err(Refusal::Wait(format!(
                "{key}.jobs: {} of {max} jobs running",
                held.jobs
            )));
        }
    }
    if let Some(hours) = q.gpu_hours_per_week
        && gpus > 0
    {
        let budget = (hours * 3600.0) as u64;
        if budget == 0 {
            return Err(Refusal::Never(format!("{key}.gpu_hours_per_week is 0")));
        }
        if let Some(at) = budget_resets(spans, budget, now) {
            return Err(Refusal::Budget {
                what: format!(
                    "{key}.gpu_hours_per_week: {:.1} of {hours} GPU-hours used in the last 7 days",
                    in_week(spans, now) as f64 / 3600.0
                ),
                resets_at: at,
            });
        }
    }
    Ok(())
}

/// A running job, as preemption sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Job id.
    pub id: u64,
    /// Its fair-share account.
    pub account: String,
    /// Its node.
    pub node: String,
    /// GPUs it holds.
    pub gpus: u32,
    /// Whether it may be stopped and queued again (`--preemptible`).
    pub preemptible: bool,
    /// When it started.
    pub started: u64,
}

/// Whether `account` is under its fair share: its decayed usage is below
/// the mean over `active` accounts (those with running or waiting jobs),
/// every active account's share being equal.
pub fn under_share(account: &str, active: &[String], usage: &BTreeMap<String, f64>) -> bool {
    if active.is_empty() {
        return false;
    }
    let u = |a: &str| usage.get(a).copied().unwrap_or(0.0);
    let mean = active.iter().map(|a| u(a)).sum::<f64>() / active.len() as f64;
    u(account) < mean
}

/// The job to stop for a waiting job of `account` that needs `gpus` GPUs
/// on a node `fits` accepts, if any: a preemptible running job on such a
/// node, holding at least as many GPUs, whose account has used more than
/// `account`; from the account that used most, then the youngest job
/// (least work lost). `None` when `account` is not under its fair share.
pub fn victim(
    account: &str,
    gpus: u32,
    fits: impl Fn(&str) -> bool,
    running: &[Running],
    active: &[String],
    usage: &BTreeMap<String, f64>,
) -> Option<u64> {
    if !under_share(account, active, usage) {
        return None;
    }
    let u = |a: &str| usage.get(a).copied().unwrap_or(0.0);
    running
        .iter()
        .filter(|r| {
            r.preemptible
                && r.account != account
                && r.gpus >= gpus
                && u(&r.account) > u(account)
                && fits(&r.node)
        })
        .max_by(|a, b| {
            u(&a.account)
                .partial_cmp(&u(&b.account))
                .unwrap_or(Ordering::Equal)
                .then(a.started.cmp(&b.started))
        })
        .map(|r| r.id)
}

#[cfg(test)]
mod tests;
