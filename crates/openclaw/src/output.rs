//! Human tables for CLI output.
//!
//! Every cell of a table and every value of a `show` view goes through
//! [`term::field`]: most of them were written by someone else (a chat
//! user's command, a deny reason, a node's GPU names), and a newline or
//! tab inside one would forge rows and columns. The views are then
//! printed through `term`, which escapes what is left.

use std::time::Duration;

use proto::{GpuHealth, JobInfo, JobState, NodeInfo, TokenInfo};

use crate::term;

/// Formats rows as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| term::field(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i + 1 < n {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count())
                    + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in &rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// "3m ago", "just now".
pub use proto::clock::ago;

/// "in 29d23h".
pub fn until(then: u64, now: u64) -> String {
    if then <= now {
        return "expired".into();
    }
    format!(
        "in {}",
        proto::duration::format(Duration::from_secs(then - now))
    )
}

/// The `node list` table. `health`: each GPU's health on the connected
/// nodes (`Request::GpuHealth`), empty from an older gateway.
pub fn nodes(nodes: &[NodeInfo], health: &[(String, Vec<GpuHealth>)], now: u64) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.connection.clone(),
                n.health.clone(),
                labels(n),
                n.fingerprint.clone(),
                match (n.connection.as_str(), n.last_seen) {
                    ("connected", _) => "now".into(),
                    ("pending", _) => format!("requested {}", ago(n.requested_at, now)),
                    (_, Some(t)) => ago(t, now),
                    (_, None) => "never".into(),
                },
                n.remote_addr.clone().unwrap_or_else(|| "-".into()),
                n.cert_expires
                    .map(|t| until(t, now))
                    .unwrap_or_else(|| "-".into()),
                gpu_summary(n, proto::gpu_health_of(health, &n.name)),
                n.heartbeat_age_ms
                    .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "CONNECTION",
            "HEALTH",
            "LABELS",
            "FINGERPRINT",
            "LAST-SEEN",
            "ADDRESS",
            "CERT-EXPIRES",
            "GPUS",
            "HB",
        ],
        &rows,
    )
}

/// Confirmed labels, then unconfirmed ones marked `?` (routing ignores them).
fn labels(n: &NodeInfo) -> String {
    let mut parts: Vec<String> = n.labels.clone();
    parts.extend(n.proposed_labels.iter().map(|l| format!("{l}?")));
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

/// Text a node reported, escaped and cut for a terminal.
fn shown(s: &str) -> String {
    proto::names::printable(s, 120)
}

/// [`shown`], with "–" for nothing (a lost GPU reports no name or UUID).
fn unknown_if_empty(s: &str) -> String {
    if s.is_empty() { "–".into() } else { shown(s) }
}

/// One `key: value` line of a `show` view; the value is escaped whole.
fn kv(out: &mut String, width: usize, k: &str, v: &str) {
    out.push_str(&format!("{k:<width$} {}\n", term::field(v)));
}

/// "2× H100 80GB HBM3 (1 free)", "-" without GPUs, marked when simulated.
/// Only confirmed GPUs (the token's or an admin's cap) are offered; the
/// rest of what a node reports is marked "unconfirmed". An idle GPU that
/// `health` keeps from jobs (unhealthy, MIG) is not free, as routing has
/// it, and is named: "2× H100 (1 free, GPU 0 lost)".
pub fn gpu_summary(n: &NodeInfo, health: &[GpuHealth]) -> String {
    let Some(t) = &n.telemetry else {
        return "-".into();
    };
    if t.gpus.is_empty() {
        return "-".into();
    }
    // A lost GPU has no name: it is counted, not named.
    let mut names: Vec<String> = Vec::new();
    for g in &t.gpus {
        let name = shown(g.name.trim_start_matches("NVIDIA "));
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        names.push("GPU".into());
    }
    let counts = n.gpu_counts_with(health);
    let (confirmed, free) = (counts.confirmed, counts.free);
    let note = n
        .gpu_note(health)
        .map(|w| format!(", {w}"))
        .unwrap_or_default();
    let sim = if t.gpus.iter().any(|g| g.simulated) {
        ", simulated"
    } else {
        ""
    };
    let extra = match counts.unconfirmed() {
        0 => String::new(),
        n => format!(", {n} unconfirmed"),
    };
    format!(
        "{confirmed}× {} ({free} free{note}{sim}{extra})",
        names.join("/")
    )
}

/// The `node show` view. `health`: each of its GPUs' health, empty from
/// an older gateway or while offline.
pub fn node(n: &NodeInfo, health: &[GpuHealth], now: u64) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| kv(&mut out, 14, k, &v);
    line("name:", n.name.clone());
    line("connection:", n.connection.clone());
    line(
        "health:",
        match &n.health_reason {
            Some(r) => format!("{} ({})", n.health, shown(r)),
            None => n.health.clone(),
        },
    );
    line("labels:", labels(n));
    if !n.proposed_labels.is_empty() {
        line(
            "unconfirmed:",
            format!(
                "{} (routing ignores them until an admin confirms: 'openclaw node approve {} --labels ...')",
                n.proposed_labels.join(","),
                n.name
            ),
        );
    }
    line(
        "gpu cap:",
        match n.max_gpus {
            Some(g) => g.to_string(),
            None => format!(
                "none confirmed (reported GPUs are not offered until 'openclaw node approve {} --gpus N')",
                n.name
            ),
        },
    );
    line("fingerprint:", n.fingerprint.clone());
    line(
        "address:",
        n.remote_addr.clone().unwrap_or_else(|| "-".into()),
    );
    line(
        "last seen:",
        n.last_seen
            .map(|t| ago(t, now))
            .unwrap_or_else(|| "never".into()),
    );
    line(
        "cert expires:",
        n.cert_expires
            .map(|t| until(t, now))
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(ms) = n.heartbeat_age_ms {
        line("heartbeat:", format!("{:.1}s ago", ms as f64 / 1000.0));
    }
    if let Some(t) = &n.telemetry {
        line("load:", format!("{:.2}", f64::from(t.load1_milli) / 1000.0));
        line(
            "memory:",
            format!("{} of {}", gib(t.mem_used), gib(t.mem_total)),
        );
        line("jobs running:", t.running_jobs.to_string());
        line("gpus:", gpu_summary(n, health));
        line("gpu source:", shown(&t.gpu_source));
        if let Some(e) = &t.gpu_error {
            line("gpu error:", shown(e));
        }
        if !t.gpus.is_empty() {
            let rows: Vec<Vec<String>> = t
                .gpus
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    vec![
                        g.index.to_string(),
                        format!(
                            "{}{}",
                            unknown_if_empty(&g.name),
                            if g.simulated { " (simulated)" } else { "" }
                        ),
                        unknown_if_empty(&g.uuid),
                        // Unknown (NVML does not support it) is "–", never 0.
                        g.mem().map_or_else(
                            || "–".into(),
                            |(u, t)| format!("{} / {}", gib(u), gib(t)),
                        ),
                        g.util().map_or_else(|| "–".into(), |u| format!("{u}%")),
                        g.temp().map_or_else(|| "–".into(), |c| format!("{c}°C")),
                        held_by(g.job, health.get(i)),
                    ]
                })
                .collect();
            let header = ["GPU", "NAME", "UUID", "MEMORY", "UTIL", "TEMP", "HELD BY"];
            out.push('\n');
            out.push_str(&table(&header, &rows));
        }
    }
    out
}

/// A GPU's HELD BY cell: `job 7`, `free`, or why no new job gets it
/// (`not free: lost`, `not free: MIG`), as routing has it.
fn held_by(job: Option<u64>, health: Option<&GpuHealth>) -> String {
    match (job, health.and_then(GpuHealth::short)) {
        (Some(j), _) => format!("job {j}"),
        (None, Some(why)) => format!("not free: {why}"),
        (None, None) => "free".into(),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// The `token list` table.
pub fn tokens(tokens: &[TokenInfo], now: u64) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let state = if t.revoked {
                "revoked".to_string()
            } else if t.expires_at <= now {
                "expired".into()
            } else if t.uses_left == 0 {
                "used".into()
            } else {
                "valid".into()
            };
            vec![
                t.id.clone(),
                state,
                format!("{}/{}", t.uses_left, t.uses_total),
                until(t.expires_at, now),
                if t.labels.is_empty() {
                    "-".into()
                } else {
                    t.labels.join(",")
                },
                if t.auto_approve {
                    "yes".into()
                } else {
                    "no".into()
                },
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATE",
            "USES-LEFT",
            "EXPIRES",
            "LABELS",
            "AUTO-APPROVE",
        ],
        &rows,
    )
}

/// Quotes argv for display, shell-style (one rule for the CLI, chat and
/// the dashboard).
pub use proto::argv::line as argv_line;

/// The `job list` table.
pub fn jobs(jobs: &[JobInfo], now: u64) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            // Escaped before it is cut, so that no escape is cut in two.
            let cmd = proto::names::printable(&argv_line(&j.argv), 60);
            vec![
                j.id.to_string(),
                j.state.clone(),
                if j.node.is_empty() {
                    "-".into()
                } else {
                    j.node.clone()
                },
                exit_cell(j),
                j.requester.clone(),
                ago(j.created_at, now),
                cmd,
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATE",
            "NODE",
            "EXIT",
            "REQUESTER",
            "CREATED",
            "COMMAND",
        ],
        &rows,
    )
}

/// The `job list` EXIT cell: the code of a job that exited by itself.
/// A cancelled or timed-out job shows its state, not the code of the
/// signal that ended it (`-`).
fn exit_cell(j: &JobInfo) -> String {
    j.own_exit_code().map_or("-".into(), |c| c.to_string())
}

/// The `job show` exit code line: as [`exit_cell`], with how the process
/// of a cancelled or timed-out job ended.
fn exit_line(j: &JobInfo) -> String {
    match j.exit_code {
        Some(c) if j.is(JobState::Exited) => c.to_string(),
        Some(c) => {
            let why = if j.is(JobState::TimedOut) {
                "at its timeout"
            } else {
                "when it was cancelled"
            };
            match signal_name(c) {
                Some(sig) => format!("- (its process was ended by {sig} {why})"),
                None => format!("- (its process exited {c} {why})"),
            }
        }
        None => "-".into(),
    }
}

/// The signal a shell-style exit code (128+N) stands for, for the two a
/// cancel or timeout sends.
fn signal_name(code: i32) -> Option<&'static str> {
    match code {
        143 => Some("SIGTERM"),
        137 => Some("SIGKILL"),
        _ => None,
    }
}

/// One line that says how a job ended, without the `openclaw: ` prefix:
/// `job 5 exited with code 3`, `job 5 cancelled by admin`, `job 5
/// timed-out: killed after its timeout` (see [`how_it_ended`]).
pub fn job_end(j: &JobInfo) -> String {
    format!("job {} {}", j.id, how_it_ended(j))
}

/// How a job ended: `exited with code 3`, `cancelled by admin`,
/// `timed-out: killed after its timeout`. A reason that starts with the
/// state's own word (`cancelled by admin`, `denied by alice: not now`)
/// stands for the state, so the state is said once.
pub fn how_it_ended(j: &JobInfo) -> String {
    if j.is(JobState::Exited) {
        return match j.exit_code {
            Some(c) => format!("exited with code {c}"),
            None => JobState::Exited.as_str().into(),
        };
    }
    let state = term::field(&j.state);
    match j.reason.as_deref().map(term::field) {
        Some(r) if r.starts_with(&format!("{state} ")) => r,
        Some(r) if !r.is_empty() => format!("{state}: {r}"),
        _ => state,
    }
}

/// The `job show` view.
pub fn job(j: &JobInfo, now: u64) -> String {
    let t = |v: Option<u64>| {
        v.map(|t| format!("{} ({})", proto::clock::Utc::from_unix(t), ago(t, now)))
            .unwrap_or_else(|| "-".into())
    };
    let mut out = String::new();
    let mut line = |k: &str, v: String| kv(&mut out, 12, k, &v);
    line("id:", j.id.to_string());
    line("state:", j.state.clone());
    line(
        "node:",
        if j.node.is_empty() {
            "-".into()
        } else {
            j.node.clone()
        },
    );
    line("command:", argv_line(&j.argv));
    line("cwd:", j.cwd.clone().unwrap_or_else(|| "-".into()));
    if !j.env.is_empty() {
        line(
            "env:",
            j.env
                .iter()
                .map(|(k, v)| format!("{k}={}", proto::names::printable(v, 80)))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    line("requester:", j.requester.clone());
    if let Some(n) = &j.named_job {
        line("named job:", n.clone());
    }
    if let Some(r) = &j.role {
        line("role:", r.clone());
    }
    line("gpus:", j.gpus.to_string());
    if !j.approvers.is_empty() {
        line("approvers:", j.approvers.join(", "));
    }
    if let Some(a) = &j.approved_by {
        line("approved by:", a.clone());
    }
    line("plan:", j.plan_digest.clone());
    line("created:", t(Some(j.created_at)));
    line("started:", t(j.started_at));
    line("finished:", t(j.finished_at));
    line("exit code:", exit_line(j));
    if let Some(r) = &j.reason {
        line("reason:", r.clone());
    }
    if j.processes_killed > 0 {
        line(
            "killed:",
            format!("{} process(es) of the job at its end", j.processes_killed),
        );
    }
    line(
        "output:",
        format!(
            "{} bytes stdout, {} bytes stderr{}",
            j.stdout_bytes,
            j.stderr_bytes,
            if j.truncated {
                " (stored log truncated)"
            } else {
                ""
            }
        ),
    );
    out
}

/// One GPU a job held, for `job show`: index, model and UUID, the UUID
/// being what survives reordering (`CUDA_VISIBLE_DEVICES` names indices
/// in PCI bus order, with `CUDA_DEVICE_ORDER=PCI_BUS_ID`).
pub fn held_gpu_line(g: &proto::HeldGpu) -> String {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "–".to_string()
        } else {
            shown(s)
        }
    };
    let mut out = String::new();
    kv(
        &mut out,
        12,
        "gpu held:",
        &format!(
            "GPU {} {} ({})",
            g.index,
            or_dash(&g.name),
            or_dash(&g.uuid)
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }

    /// Hostile text in every string field a view prints.
    const EVIL: &str = "x\x1b[2J\x1b]0;pwned\x07\u{9b}31m\u{202e}\u{2067}\u{200b}\u{feff}\tcol\nID  STATE  forged-row\r";

    fn clean(view: &str) -> bool {
        view.chars()
            .all(|c| c == '\n' || !proto::names::is_hidden_or_control(c))
    }

    fn evil_job() -> JobInfo {
        let e = EVIL.to_string();
        JobInfo {
            id: 7,
            state: e.clone(),
            node: e.clone(),
            argv: vec![e.clone(), "--flag".into(), e.clone()],
            cwd: Some(e.clone()),
            env: vec![(e.clone(), e.clone())],
            requester: e.clone(),
            named_job: Some(e.clone()),
            role: Some(e.clone()),
            approvers: vec![e.clone()],
            approved_by: Some(e.clone()),
            plan_digest: e.clone(),
            reason: Some(e.clone()),
            ..JobInfo::default()
        }
    }

    fn evil_node() -> NodeInfo {
        let e = EVIL.to_string();
        NodeInfo {
            name: e.clone(),
            connection: e.clone(),
            health: e.clone(),
            labels: vec![e.clone()],
            proposed_labels: vec![e.clone()],
            max_gpus: Some(1),
            fingerprint: e.clone(),
            last_seen: Some(1),
            remote_addr: Some(e.clone()),
            cert_expires: Some(1),
            requested_at: 1,
            heartbeat_age_ms: Some(1),
            health_reason: Some(e.clone()),
            telemetry: Some(proto::Heartbeat {
                gpus: vec![proto::GpuTelemetry {
                    name: e.clone(),
                    uuid: e.clone(),
                    ..Default::default()
                }],
                gpu_source: e.clone(),
                gpu_error: Some(e.clone()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn views_escape_every_string_another_party_wrote() {
        let token = TokenInfo {
            id: EVIL.into(),
            created_at: 0,
            expires_at: 10,
            uses_left: 1,
            uses_total: 1,
            labels: vec![EVIL.into()],
            auto_approve: false,
            revoked: false,
            max_gpus: None,
        };
        let job = evil_job();
        let node = evil_node();
        // (view, the lines it has with harmless text)
        let views = [
            (jobs(std::slice::from_ref(&job), 5), 2),
            (nodes(std::slice::from_ref(&node), &[], 5), 2),
            (tokens(std::slice::from_ref(&token), 5), 2),
            (table(&["A", "B"], &[vec![EVIL.into(), EVIL.into()]]), 2),
        ];
        for (view, want_lines) in views {
            assert!(clean(&view), "{view:?}");
            assert_eq!(view.lines().count(), want_lines, "no forged row: {view}");
            assert!(
                view.contains("\\u{1b}[2J") && view.contains("\\u{202e}"),
                "{view}"
            );
        }
        let shown = job_view_lines(&job);
        let plain = job_view_lines(&JobInfo {
            id: 7,
            ..JobInfo::default()
        });
        assert!(shown.0, "job show escapes everything");
        // Every optional line appears once, and none more: the hostile
        // newlines forged no line.
        assert_eq!(
            shown.1,
            plain.1 + 6,
            "cwd is always shown; env, named job, role, approvers, approved by, reason are extra"
        );
        let view = self::node(&node, &[], 5);
        assert!(clean(&view), "{view:?}");
        assert!(!view.contains("forged-row\n"), "{view}");
    }

    #[test]
    fn an_idle_gpu_that_routing_skips_is_not_free_in_node_list_and_show() {
        let two = |jobs: [Option<u64>; 2]| NodeInfo {
            name: "g".into(),
            connection: "connected".into(),
            max_gpus: Some(2),
            telemetry: Some(proto::Heartbeat {
                gpus: jobs
                    .iter()
                    .map(|j| proto::GpuTelemetry {
                        name: "NVIDIA T4".into(),
                        job: *j,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..NodeInfo::default()
        };
        let lost = GpuHealth::Unhealthy("lost: GPU is lost".into());
        // (GPUs' jobs, their health, the GPU column, the HELD BY cells)
        type Case = (
            [Option<u64>; 2],
            Vec<GpuHealth>,
            &'static str,
            [&'static str; 2],
        );
        let cases: Vec<Case> = vec![
            ([None, None], vec![], "2× T4 (2 free)", ["free", "free"]),
            (
                [None, None],
                vec![lost.clone(), GpuHealth::Healthy],
                "2× T4 (1 free, GPU 0 lost)",
                ["not free: lost", "free"],
            ),
            (
                [None, None],
                vec![GpuHealth::Mig, lost.clone()],
                "2× T4 (0 free, GPU 0 MIG, GPU 1 lost)",
                ["not free: MIG", "not free: lost"],
            ),
            (
                [Some(7), None],
                vec![lost.clone(), GpuHealth::Healthy],
                "2× T4 (1 free)",
                ["job 7", "free"],
            ),
        ];
        for (jobs, h, column, held) in cases {
            let n = two(jobs);
            assert_eq!(gpu_summary(&n, &h), column, "{h:?}");
            let all = vec![("g".to_string(), h.clone())];
            let list = nodes(std::slice::from_ref(&n), &all, 5);
            assert!(list.contains(column), "{list}");
            let view = node(&n, &h, 5);
            assert!(
                view.contains(&format!("gpus:          {column}\n")),
                "{view}"
            );
            let cells: Vec<&str> = view
                .lines()
                .skip_while(|l| !l.starts_with("GPU "))
                .skip(1)
                .map(|l| {
                    l.split("  ")
                        .filter(|c| !c.is_empty())
                        .last()
                        .unwrap_or_default()
                        .trim()
                })
                .collect();
            assert_eq!(cells, held, "{view}");
        }
        // A lost GPU reports no name: it is counted, not named.
        let mut n = two([None, None]);
        if let Some(t) = n.telemetry.as_mut() {
            t.gpus[0].name.clear();
        }
        let h = [lost.clone(), GpuHealth::Healthy];
        assert_eq!(gpu_summary(&n, &h), "2× T4 (1 free, GPU 0 lost)");
        if let Some(t) = n.telemetry.as_mut() {
            t.gpus[1].name.clear();
        }
        assert_eq!(gpu_summary(&n, &h), "2× GPU (1 free, GPU 0 lost)");
    }

    fn job_view_lines(j: &JobInfo) -> (bool, usize) {
        let v = job(j, 5);
        (clean(&v), v.lines().count())
    }

    #[test]
    fn a_cancellation_reads_as_a_state_not_a_signal_code() {
        let j = |state: &str, code: Option<i32>, reason: Option<&str>| JobInfo {
            id: 5,
            state: state.into(),
            exit_code: code,
            reason: reason.map(String::from),
            ..JobInfo::default()
        };
        // (job, EXIT cell, `job show` exit code, ending line)
        let cases = [
            (
                j("exited", Some(3), None),
                "3",
                "3",
                "job 5 exited with code 3",
            ),
            (
                j("exited", Some(0), None),
                "0",
                "0",
                "job 5 exited with code 0",
            ),
            (
                j("cancelled", Some(143), Some("cancelled by admin")),
                "-",
                "- (its process was ended by SIGTERM when it was cancelled)",
                "job 5 cancelled by admin",
            ),
            (
                j("cancelled", Some(137), Some("cancelled by alice")),
                "-",
                "- (its process was ended by SIGKILL when it was cancelled)",
                "job 5 cancelled by alice",
            ),
            (
                j("cancelled", Some(0), Some("cancelled by admin")),
                "-",
                "- (its process exited 0 when it was cancelled)",
                "job 5 cancelled by admin",
            ),
            (
                j(
                    "cancelled",
                    None,
                    Some("cancelled by admin before it started"),
                ),
                "-",
                "-",
                "job 5 cancelled by admin before it started",
            ),
            (
                j("timed-out", Some(143), Some("killed after its timeout")),
                "-",
                "- (its process was ended by SIGTERM at its timeout)",
                "job 5 timed-out: killed after its timeout",
            ),
            (
                j("denied", None, Some("denied by alice: not\ntoday")),
                "-",
                "-",
                "job 5 denied by alice: not\\ntoday",
            ),
            (j("lost", None, None), "-", "-", "job 5 lost"),
        ];
        for (job, cell, line, end) in cases {
            assert_eq!(exit_cell(&job), cell, "{job:?}");
            assert_eq!(exit_line(&job), line, "{job:?}");
            assert_eq!(job_end(&job), end, "{job:?}");
            let shown = self::job(&job, 5);
            assert!(shown.contains(&format!("exit code:   {line}\n")), "{shown}");
        }
        assert!(clean(&job_end(&evil_job())), "{}", job_end(&evil_job()));
    }

    #[test]
    fn times() {
        assert_eq!(ago(100, 280), "3m ago");
        assert_eq!(ago(100, 100), "just now");
        assert_eq!(until(100, 50), "in 50s");
        assert_eq!(until(100, 150), "expired");
    }
}
