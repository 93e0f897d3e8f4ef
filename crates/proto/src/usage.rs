//! Usage and the queue on the wire (issue 24): `openclaw usage`, `openclaw
//! job list --queued`, chat `usage` and `queue`, the dashboard's usage page.

use serde::{Deserialize, Serialize};

/// The most rows a usage reply carries (accounts, nodes or GPU models).
pub const MAX_USAGE_ROWS: usize = 500;
/// The most waiting jobs a queue reply lists.
pub const MAX_QUEUE_ROWS: usize = 500;
/// The most days a usage reply covers.
pub const MAX_USAGE_DAYS: u64 = 400;

/// What usage is grouped by (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsageBy {
    /// The requester (`user:alice`, a chat identity, an admin).
    User,
    /// The project (`-` for jobs without one).
    Project,
    /// The node.
    Node,
    /// The GPU model the job held (`unknown` when its node did not say).
    Gpu,
}

impl UsageBy {
    /// The CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageBy::User => "user",
            UsageBy::Project => "project",
            UsageBy::Node => "node",
            UsageBy::Gpu => "gpu",
        }
    }

    /// Parses the CLI spelling.
    pub fn parse(s: &str) -> Option<UsageBy> {
        match s {
            "user" => Some(UsageBy::User),
            "project" => Some(UsageBy::Project),
            "node" => Some(UsageBy::Node),
            "gpu" => Some(UsageBy::Gpu),
            _ => None,
        }
    }
}

/// Usage of one group over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageLine {
    /// The user, project, node or GPU model.
    pub key: String,
    /// GPU-seconds (GPUs held × seconds run) inside the window.
    pub gpu_seconds: u64,
    /// Jobs that started inside the window.
    pub jobs: u64,
    /// Seconds those jobs waited from submission to start, together.
    pub wait_seconds: u64,
}

/// GPU-seconds of one group on one UTC day (for charts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDay {
    /// Unix seconds of the day's start (UTC midnight).
    pub day: u64,
    /// The group.
    pub key: String,
    /// GPU-seconds that day.
    pub gpu_seconds: u64,
}

/// GPU-seconds as GPU-hours for people (CLI, chat, dashboard): one
/// decimal from an hour on, two below it, and "<0.01" for a few seconds
/// of GPU time (a short job is not 0.0). Pure.
pub fn gpu_hours(gpu_seconds: u64) -> String {
    let h = gpu_seconds as f64 / 3600.0;
    match gpu_seconds {
        0 => "0".into(),
        1..36 => "<0.01".into(),
        36..3600 => format!("{h:.2}"),
        _ => format!("{h:.1}"),
    }
}

/// The reply to [`crate::Request::Usage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Start of the window (unix seconds).
    pub since: u64,
    /// End of the window: the gateway's now.
    pub until: u64,
    /// The grouping.
    pub by: UsageBy,
    /// One line per group, most GPU-seconds first.
    pub lines: Vec<UsageLine>,
    /// GPU-seconds per group per day, oldest day first.
    pub days: Vec<UsageDay>,
    /// Only the asker's own jobs (a lab member or a chat user).
    pub own_only: bool,
    /// The queue over the window, sampled at even steps, oldest first.
    pub queue: Vec<QueuePoint>,
}

/// The queue at one moment, for charts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePoint {
    /// Unix seconds.
    pub at: u64,
    /// Jobs waiting then (submitted, not started yet).
    pub waiting: u32,
    /// Mean wait of the jobs that started in the step before `at`
    /// (seconds); 0 when none did.
    pub mean_wait_secs: u64,
}

/// One waiting job, in the order the queue serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// 1 for the job served next.
    pub position: u32,
    /// The job.
    pub id: u64,
    /// Who asked.
    pub requester: String,
    /// Its project.
    pub project: Option<String>,
    /// GPUs it asks for.
    pub gpus: u32,
    /// Its capped priority.
    pub priority: i32,
    /// When it was submitted (unix seconds).
    pub created_at: u64,
    /// Why it waits, as a sentence.
    pub reason: String,
    /// A rough start (unix seconds): when enough running jobs reach their
    /// timeouts, if they have one; `None` when nothing bounds it.
    pub estimated_start: Option<u64>,
}

/// The reply to [`crate::Request::Queue`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueReport {
    /// The gateway's now (unix seconds).
    pub now: u64,
    /// Waiting jobs in order (a lab member or chat user: only theirs,
    /// with their positions in the whole queue).
    pub entries: Vec<QueueEntry>,
    /// How many jobs wait in all.
    pub total: u32,
}

#[cfg(test)]
mod tests {
    use super::gpu_hours;

    #[test]
    fn short_gpu_time_is_not_shown_as_nothing() {
        assert_eq!(gpu_hours(0), "0");
        assert_eq!(gpu_hours(5), "<0.01");
        assert_eq!(gpu_hours(36), "0.01");
        assert_eq!(gpu_hours(1800), "0.50");
        assert_eq!(gpu_hours(3600), "1.0");
        assert_eq!(gpu_hours(9000), "2.5");
    }
}
