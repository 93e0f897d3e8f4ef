//! `openclaw usage` and `openclaw job list --queued` (issue 24): GPU usage
//! per user, project, node or GPU model, and the waiting jobs in the order
//! the fair-share queue serves them.

use mesh::home::Home;
use proto::{QueueReport, Request, Response, UsageBy, UsageReport};

use crate::commands::{CliError, call, unexpected};
use crate::exit;
use crate::output::table;

/// `openclaw usage`.
pub async fn usage(home: &Home, since: &str, by: &str, json: bool) -> Result<(), CliError> {
    let since_secs = proto::duration::parse(since)
        .map_err(|e| CliError::new(exit::USAGE, format!("--since: {e}")))?
        .as_secs();
    let by = UsageBy::parse(by).ok_or_else(|| {
        CliError::new(
            exit::USAGE,
            format!("--by: {by:?} is not one of user, project, node, gpu"),
        )
    })?;
    match call(
        home,
        Request::Usage {
            since_secs,
            by,
            on_behalf_of: None,
        },
    )
    .await?
    {
        Response::Usage(r) if json => {
            crate::term::out_json(&r).map_err(|e| CliError::new(exit::FAILURE, e.to_string()))
        }
        Response::Usage(r) => {
            crate::term::out(&usage_table(&r));
            Ok(())
        }
        r => Err(unexpected(r)),
    }
}

use proto::usage::gpu_hours as hours;

/// The `usage` table: one line per group, then the window.
pub fn usage_table(r: &UsageReport) -> String {
    let rows: Vec<Vec<String>> = r
        .lines
        .iter()
        .map(|l| {
            vec![
                proto::names::printable(&l.key, 60),
                hours(l.gpu_seconds),
                l.jobs.to_string(),
                l.wait_seconds.checked_div(l.jobs).map_or_else(
                    || "-".into(),
                    |w| proto::duration::format(std::time::Duration::from_secs(w)),
                ),
            ]
        })
        .collect();
    let head = r.by.as_str().to_uppercase();
    let mut out = table(&[&head, "GPU-HOURS", "JOBS", "AVG WAIT"], &rows);
    out.push_str(&format!(
        "since {}{}\n",
        proto::clock::Utc::from_unix(r.since),
        if r.own_only { " (your jobs only)" } else { "" }
    ));
    out
}

/// `openclaw job list --queued`.
pub async fn queued(home: &Home, json: bool) -> Result<(), CliError> {
    match call(home, Request::Queue { on_behalf_of: None }).await? {
        Response::Queue(q) if json => {
            crate::term::out_json(&q).map_err(|e| CliError::new(exit::FAILURE, e.to_string()))
        }
        Response::Queue(q) => {
            crate::term::out(&queue_table(&q));
            Ok(())
        }
        r => Err(unexpected(r)),
    }
}

/// The queue table, in the order the queue serves.
pub fn queue_table(q: &QueueReport) -> String {
    let rows: Vec<Vec<String>> = q
        .entries
        .iter()
        .map(|e| {
            vec![
                e.position.to_string(),
                e.id.to_string(),
                proto::names::printable(&e.requester, 40),
                e.project.clone().unwrap_or_else(|| "-".into()),
                e.gpus.to_string(),
                e.priority.to_string(),
                proto::clock::ago(e.created_at, q.now),
                e.estimated_start.map_or_else(
                    || "-".into(),
                    |t| crate::output::until(t.max(q.now + 1), q.now),
                ),
                proto::names::printable(&e.reason, 100),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "POS",
            "ID",
            "REQUESTER",
            "PROJECT",
            "GPUS",
            "PRIO",
            "QUEUED",
            "START",
            "WAITING FOR",
        ],
        &rows,
    );
    let plural = if q.total == 1 { "job" } else { "jobs" };
    if rows.is_empty() && q.total > 0 {
        out.push_str(&format!(
            "none of them yours: {} {plural} waiting in all\n",
            q.total
        ));
    } else {
        out.push_str(&format!("{} {plural} waiting\n", q.total));
    }
    out
}
