//! Usage accounting (issue 24), pure: GPU-seconds, job counts and waiting
//! times per user, project, node or GPU model over a window, per UTC day
//! for charts, and the daily roll-up that keeps usage beyond the jobs'
//! retention.

use std::collections::BTreeMap;

use proto::{QueuePoint, UsageBy, UsageDay, UsageLine};

const DAY: u64 = 86_400;

/// One job's GPU use, from its row (or, once pruned, from a roll-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Used {
    /// Who asked.
    pub requester: String,
    /// The project charged.
    pub project: Option<String>,
    /// Its node.
    pub node: String,
    /// The model of each GPU it held, as its node said (may be empty).
    pub models: Vec<String>,
    /// GPUs it held.
    pub gpus: u32,
    /// Submitted (unix seconds).
    pub created_at: u64,
    /// Started (unix seconds).
    pub started_at: u64,
    /// Ended; for a running job, now.
    pub end: u64,
}

/// A day's usage of one (requester, project, node, model), kept after its
/// jobs are pruned. `project` is empty for jobs without one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rolled {
    /// Unix seconds of the UTC day's start.
    pub day: u64,
    /// Requester.
    pub requester: String,
    /// Project, or empty.
    pub project: String,
    /// Node.
    pub node: String,
    /// GPU model, or `unknown`.
    pub model: String,
    /// GPU-seconds.
    pub gpu_seconds: u64,
    /// Jobs that started that day.
    pub jobs: u64,
    /// Their waiting seconds together.
    pub wait_seconds: u64,
}

/// The start of the UTC day of `t`.
pub fn day_of(t: u64) -> u64 {
    t - t % DAY
}

/// A job's GPUs by model: each model with how many of its GPUs, or
/// `unknown` for the GPUs its node did not name.
fn models(u: &Used) -> Vec<(String, u64)> {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for m in &u.models {
        *by.entry(m.clone()).or_default() += 1;
    }
    let named = u.models.len() as u64;
    if u64::from(u.gpus) > named {
        *by.entry("unknown".into()).or_default() += u64::from(u.gpus) - named;
    }
    by.into_iter().collect()
}

/// The groups a job's GPU-seconds go to, with the GPUs each holds.
fn keys(u: &Used, by: UsageBy) -> Vec<(String, u64)> {
    let g = u64::from(u.gpus);
    match by {
        UsageBy::User => vec![(u.requester.clone(), g)],
        UsageBy::Project => vec![(u.project.clone().unwrap_or_else(|| "-".into()), g)],
        UsageBy::Node => vec![(u.node.clone(), g)],
        UsageBy::Gpu => models(u),
    }
}

fn rolled_key(r: &Rolled, by: UsageBy) -> String {
    match by {
        UsageBy::User => r.requester.clone(),
        UsageBy::Project if r.project.is_empty() => "-".into(),
        UsageBy::Project => r.project.clone(),
        UsageBy::Node => r.node.clone(),
        UsageBy::Gpu => r.model.clone(),
    }
}

fn overlap(a: u64, b: u64, from: u64, to: u64) -> u64 {
    b.min(to).saturating_sub(a.max(from))
}

/// Usage per group over `[since, until]`: GPU-seconds inside the window;
/// jobs that started inside it and their waits (a job counts once, in
/// its first group). Rolled-up days count whole when their day starts
/// inside the window. Most GPU-seconds first.
pub fn lines(
    jobs: &[Used],
    rolled: &[Rolled],
    by: UsageBy,
    since: u64,
    until: u64,
) -> Vec<UsageLine> {
    let add = |k: &str, gs: u64, jobs: u64, wait: u64, out: &mut BTreeMap<String, UsageLine>| {
        let l = out.entry(k.to_string()).or_insert_with(|| UsageLine {
            key: k.to_string(),
            gpu_seconds: 0,
            jobs: 0,
            wait_seconds: 0,
        });
        l.gpu_seconds += gs;
        l.jobs += jobs;
        l.wait_seconds += wait;
    };
    let mut acc: BTreeMap<String, UsageLine> = BTreeMap::new();
    for u in jobs {
        let secs = overlap(u.started_at, u.end, since, until);
        let counted = (since..=until).contains(&u.started_at);
        for (i, (k, g)) in keys(u, by).into_iter().enumerate() {
            let first = i == 0 && counted;
            add(
                &k,
                secs * g,
                u64::from(first),
                if first {
                    u.started_at.saturating_sub(u.created_at)
                } else {
                    0
                },
                &mut acc,
            );
        }
    }
    for r in rolled.iter().filter(|r| (since..=until).contains(&r.day)) {
        add(
            &rolled_key(r, by),
            r.gpu_seconds,
            r.jobs,
            r.wait_seconds,
            &mut acc,
        );
    }
    let mut v: Vec<UsageLine> = acc.into_values().collect();
    v.sort_by(|a, b| b.gpu_seconds.cmp(&a.gpu_seconds).then(a.key.cmp(&b.key)));
    v
}

/// GPU-seconds per group per UTC day over `[since, until]`, oldest first.
pub fn days(
    jobs: &[Used],
    rolled: &[Rolled],
    by: UsageBy,
    since: u64,
    until: u64,
) -> Vec<UsageDay> {
    let mut acc: BTreeMap<(u64, String), u64> = BTreeMap::new();
    for u in jobs {
        let (a, b) = (u.started_at.max(since), u.end.min(until));
        let mut d = day_of(a);
        while d < b {
            let secs = overlap(a, b, d, d + DAY);
            for (k, g) in keys(u, by) {
                *acc.entry((d, k)).or_default() += secs * g;
            }
            d += DAY;
        }
    }
    for r in rolled.iter().filter(|r| (since..=until).contains(&r.day)) {
        *acc.entry((r.day, rolled_key(r, by))).or_default() += r.gpu_seconds;
    }
    acc.into_iter()
        .filter(|(_, s)| *s > 0)
        .map(|((day, key), gpu_seconds)| UsageDay {
            day,
            key,
            gpu_seconds,
        })
        .collect()
}

/// Day, requester, project, node and model: a roll-up row's key.
type RollKey = (u64, String, String, String, String);

/// Ended jobs about to be pruned, rolled up per day of their start (the
/// whole run counts on that day), requester, project, node and model.
pub fn roll_up(jobs: &[Used]) -> Vec<Rolled> {
    let mut acc: BTreeMap<RollKey, (u64, u64, u64)> = BTreeMap::new();
    for u in jobs {
        let secs = u.end.saturating_sub(u.started_at);
        let wait = u.started_at.saturating_sub(u.created_at);
        let mut ms = models(u);
        if ms.is_empty() {
            // A job without GPUs still counts as a job and its wait.
            ms.push(("-".into(), 0));
        }
        for (i, (model, g)) in ms.into_iter().enumerate() {
            let e = acc
                .entry((
                    day_of(u.started_at),
                    u.requester.clone(),
                    u.project.clone().unwrap_or_default(),
                    u.node.clone(),
                    model,
                ))
                .or_default();
            e.0 += secs * g;
            if i == 0 {
                e.1 += 1;
                e.2 += wait;
            }
        }
    }
    acc.into_iter()
        .map(
            |((day, requester, project, node, model), (gpu_seconds, jobs, wait_seconds))| Rolled {
                day,
                requester,
                project,
                node,
                model,
                gpu_seconds,
                jobs,
                wait_seconds,
            },
        )
        .collect()
}

/// The most samples in a queue chart.
pub const QUEUE_POINTS: u64 = 168;

/// The queue over `[since, until]` at even steps (an hour or more, at most
/// [`QUEUE_POINTS`]): how many jobs waited (those that started later, from
/// `jobs`, and `waiting_since`, the submit times of the jobs waiting now),
/// and the mean wait of the jobs that started in each step. Jobs that gave
/// up waiting are not in the store's usage and are not counted.
pub fn queue_points(
    jobs: &[Used],
    waiting_since: &[u64],
    since: u64,
    until: u64,
) -> Vec<QueuePoint> {
    let span = until.saturating_sub(since);
    let step = (span / QUEUE_POINTS).max(3600);
    let mut out = Vec::new();
    let mut t = since + step;
    while t <= until {
        let waiting = jobs
            .iter()
            .filter(|u| u.created_at <= t && t < u.started_at)
            .count()
            + waiting_since.iter().filter(|c| **c <= t).count();
        let started: Vec<u64> = jobs
            .iter()
            .filter(|u| t - step < u.started_at && u.started_at <= t)
            .map(|u| u.started_at.saturating_sub(u.created_at))
            .collect();
        out.push(QueuePoint {
            at: t,
            waiting: u32::try_from(waiting).unwrap_or(u32::MAX),
            mean_wait_secs: started
                .iter()
                .sum::<u64>()
                .checked_div(started.len() as u64)
                .unwrap_or(0),
        });
        t += step;
    }
    out
}
