//! `[fair_share]`, `[projects.NAME]` and `[quotas…]` in `gateway.toml`,
//! checked into [`FairConfig`]. Every refusal names the key and the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// The most GPUs, jobs or queued jobs a quota may name; more is a typo.
const MAX_COUNT: i64 = 1_000_000;
/// The largest weekly budget, in GPU-hours (about 60,000 GPUs busy all week).
const MAX_GPU_HOURS: f64 = 10_000_000.0;
/// The largest `max_priority`.
const MAX_PRIORITY: i64 = 1_000_000;

/// One quota; an absent limit is no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quota {
    /// GPUs held at once.
    pub gpus: Option<u32>,
    /// Jobs running at once.
    pub jobs: Option<u32>,
    /// Jobs waiting in the queue at once.
    pub queued: Option<u32>,
    /// GPU-hours over any rolling 7 days.
    pub gpu_hours_per_week: Option<f64>,
}

/// Accounts, quotas and the fair-share settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FairConfig {
    /// How long until usage counts half (`[fair_share] half_life`).
    pub half_life: Duration,
    /// Priorities are capped at `[-max_priority, max_priority]`.
    pub max_priority: i32,
    /// Projects and their members (identities).
    pub projects: BTreeMap<String, Vec<String>>,
    /// Every user without an entry of its own (`[quotas.default]`).
    pub default_quota: Quota,
    /// Per user identity (`[quotas.users."user:alice"]`).
    pub user_quotas: BTreeMap<String, Quota>,
    /// Per project (`[quotas.projects.NAME]`).
    pub project_quotas: BTreeMap<String, Quota>,
}

impl Default for FairConfig {
    fn default() -> Self {
        FairConfig {
            half_life: Duration::from_secs(7 * 86_400),
            max_priority: 10,
            projects: BTreeMap::new(),
            default_quota: Quota::default(),
            user_quotas: BTreeMap::new(),
            project_quotas: BTreeMap::new(),
        }
    }
}

impl FairConfig {
    /// The quota that applies to user `who`, and its key for messages.
    pub fn user_quota(&self, who: &str) -> (String, &Quota) {
        match self.user_quotas.get(who) {
            Some(q) => (format!("quotas.users.\"{who}\""), q),
            None => ("quotas.default".to_string(), &self.default_quota),
        }
    }

    /// The quota of project `p`, if it has one, and its key.
    pub fn project_quota(&self, p: &str) -> Option<(String, &Quota)> {
        self.project_quotas
            .get(p)
            .map(|q| (format!("quotas.projects.{p}"), q))
    }

    /// Whether `who` is a member of project `p`; `None` for an unknown
    /// project.
    pub fn is_member(&self, p: &str, who: &str) -> Option<bool> {
        self.projects.get(p).map(|m| m.iter().any(|x| x == who))
    }
}

/// `[fair_share]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFairShare {
    half_life: Option<String>,
    max_priority: Option<i64>,
}

/// `[projects.NAME]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProject {
    #[serde(default)]
    members: Vec<String>,
}

/// `[quotas]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuotas {
    default: Option<RawQuota>,
    #[serde(default)]
    users: BTreeMap<String, RawQuota>,
    #[serde(default)]
    projects: BTreeMap<String, RawQuota>,
}

/// One quota as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuota {
    gpus: Option<i64>,
    jobs: Option<i64>,
    queued: Option<i64>,
    gpu_hours_per_week: Option<toml::Value>,
}

fn count(key: &str, v: Option<i64>) -> Result<Option<u32>, String> {
    match v {
        None => Ok(None),
        Some(n) if n < 0 => Err(format!("{key}: {n} is negative; write 0 or more")),
        Some(n) if n > MAX_COUNT => Err(format!(
            "{key}: {n} is more than {MAX_COUNT}; leave the key out for no limit"
        )),
        Some(n) => Ok(u32::try_from(n).ok()),
    }
}

fn hours(key: &str, v: Option<toml::Value>) -> Result<Option<f64>, String> {
    let n = match v {
        None => return Ok(None),
        Some(toml::Value::Integer(n)) => n as f64,
        Some(toml::Value::Float(f)) => f,
        Some(other) => {
            return Err(format!(
                "{key}: {other} is not a number of GPU-hours (e.g. 100 or 12.5)"
            ));
        }
    };
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{key}: {n} is not a number of hours, 0 or more"));
    }
    if n > MAX_GPU_HOURS {
        return Err(format!(
            "{key}: {n} is more than {MAX_GPU_HOURS} GPU-hours; leave the key out for no limit"
        ));
    }
    Ok(Some(n))
}

fn quota(key: &str, raw: RawQuota) -> Result<Quota, String> {
    Ok(Quota {
        gpus: count(&format!("{key}.gpus"), raw.gpus)?,
        jobs: count(&format!("{key}.jobs"), raw.jobs)?,
        queued: count(&format!("{key}.queued"), raw.queued)?,
        gpu_hours_per_week: hours(&format!("{key}.gpu_hours_per_week"), raw.gpu_hours_per_week)?,
    })
}

/// An exact identity (no glob) as policy writes it: `user:NAME`, a chat
/// identity with its namespace, or a certificate name.
fn identity(key: &str, id: &str) -> Result<(), String> {
    proto::identity::validate_identity_pattern(id).map_err(|e| format!("{key}: {e}"))?;
    if id.contains(['*', '?']) {
        return Err(format!(
            "{key}: {id:?} is a pattern; name each member exactly"
        ));
    }
    Ok(())
}

/// Checks the three sections into a [`FairConfig`].
pub(crate) fn parse(
    fair: RawFairShare,
    projects: BTreeMap<String, RawProject>,
    quotas: RawQuotas,
) -> Result<FairConfig, String> {
    let defaults = FairConfig::default();
    let half_life = match fair.half_life {
        None => defaults.half_life,
        Some(v) => proto::duration::parse(&v).map_err(|e| format!("fair_share.half_life: {e}"))?,
    };
    if half_life < Duration::from_secs(3600) || half_life > Duration::from_secs(365 * 86_400) {
        return Err("fair_share.half_life: must be between 1h and 365d".into());
    }
    let max_priority = match fair.max_priority {
        None => defaults.max_priority,
        Some(n) if (0..=MAX_PRIORITY).contains(&n) => i32::try_from(n).unwrap_or(i32::MAX),
        Some(n) => {
            return Err(format!(
                "fair_share.max_priority: {n} is not between 0 and {MAX_PRIORITY}"
            ));
        }
    };
    let mut out = BTreeMap::new();
    for (name, p) in projects {
        proto::names::validate_name(&name).map_err(|e| format!("projects.{name}: {e}"))?;
        for m in &p.members {
            identity(&format!("projects.{name}.members"), m)?;
        }
        out.insert(name, p.members);
    }
    let mut user_quotas = BTreeMap::new();
    for (who, q) in quotas.users {
        let key = format!("quotas.users.\"{who}\"");
        identity(&key, &who)?;
        user_quotas.insert(who, quota(&key, q)?);
    }
    let mut project_quotas = BTreeMap::new();
    for (p, q) in quotas.projects {
        let key = format!("quotas.projects.{p}");
        if !out.contains_key(&p) {
            return Err(format!(
                "{key}: there is no project {p:?}; define it with [projects.{p}] members = [...]"
            ));
        }
        project_quotas.insert(p, quota(&key, q)?);
    }
    Ok(FairConfig {
        half_life,
        max_priority,
        projects: out,
        default_quota: match quotas.default {
            Some(q) => quota("quotas.default", q)?,
            None => Quota::default(),
        },
        user_quotas,
        project_quotas,
    })
}
