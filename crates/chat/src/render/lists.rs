//! Chat answers that are lists and summaries: `nodes`, `jobs`, `status N`
//! and `help`, with times as people read them. Pure: the clock is the
//! `now` parameter, and every string another party wrote goes through the
//! front end's [`Markup`].

use std::time::Duration;

use proto::{GpuHealth, JobInfo, JobState};

use super::{Markup, duration, head, mentions};

/// `2026-12-05 14:03 UTC`, or `14:03 UTC` on `now`'s day. Pure.
pub fn utc(unix: u64, now: u64) -> String {
    let t = proto::clock::Utc::from_unix(unix);
    if unix / 86_400 == now / 86_400 {
        return format!("{} UTC", t.hh_mm());
    }
    format!("{} {} UTC", t.date(), t.hh_mm())
}

/// `50s ago`, `3m10s ago`, `just now`. Pure.
pub use proto::clock::ago;

/// `50s ago (14:03 UTC)`: relative, then the clock time as the platform
/// shows it.
pub fn when(then: u64, now: u64, m: &dyn Markup) -> String {
    format!("{} ({})", ago(then, now), m.time(then, now))
}

/// What one `status N` answers: the job's state, who asked, and its times
/// as people read them (`started 3m ago (14:03 UTC), ran 2m10s`), at `now`.
pub fn status(j: &JobInfo, now: u64, m: &dyn Markup) -> String {
    let elapsed = j
        .started_at
        .map(|s| Duration::from_secs(now.saturating_sub(s)));
    let mut lines = vec![head(j, elapsed, m)];
    let mut who = format!(
        "asked by {} {}",
        m.mention(&j.requester),
        when(j.created_at, now, m)
    );
    if let Some(name) = &j.named_job {
        who.push_str(&format!(" · named job {}", m.escape(name)));
    }
    if let Some(by) = &j.approved_by {
        who.push_str(&format!(" · approved by {}", m.mention(by)));
    }
    lines.push(who);
    let times = match (j.started_at, j.finished_at) {
        (Some(s), Some(f)) => format!(
            "started {}, ran {}, ended {}",
            when(s, now, m),
            duration(Duration::from_secs(f.saturating_sub(s))),
            ago(f, now)
        ),
        (Some(s), None) => format!(
            "started {}, running for {}",
            when(s, now, m),
            duration(Duration::from_secs(now.saturating_sub(s)))
        ),
        (None, Some(f)) => format!("ended {} without starting", when(f, now, m)),
        (None, None) => format!(
            "waiting for {}",
            duration(Duration::from_secs(now.saturating_sub(j.created_at)))
        ),
    };
    lines.push(times);
    lines.join("\n")
}

/// Nodes one page of a chat node list shows.
pub const NODES_PER_PAGE: usize = 50;
/// Jobs one page of a chat job list shows.
pub const JOBS_PER_PAGE: usize = 10;
/// Characters of a command shown in a list line.
const LIST_CMD: usize = 60;

/// A node's GPUs that jobs may use (the confirmed ones: the first
/// `max_gpus` it reports) and how many of those a new job could get (no
/// job holds it, and `health` does not keep it back), as `(free, total)`;
/// `None` while it reports nothing (offline). Pure; the count is
/// [`proto::NodeInfo::gpu_counts_with`], as the CLI and dashboard show
/// and routing decides. `health`: the node's GPUs' health, empty when
/// unknown (an older gateway).
pub fn confirmed_gpus(n: &proto::NodeInfo, health: &[GpuHealth]) -> Option<(usize, usize)> {
    n.telemetry.as_ref()?;
    let c = n.gpu_counts_with(health);
    Some((c.free as usize, c.confirmed as usize))
}

/// At most `n` characters of `s`, with `…` when cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One node of a chat node list: health, GPUs free of the confirmed
/// ones, labels. No fingerprint, address or certificate: that is the
/// admin's `node list`.
fn node_line(n: &proto::NodeInfo, health: &[GpuHealth], now: u64, m: &dyn Markup) -> String {
    let (mark, state) = match (n.connection.as_str(), n.health.as_str()) {
        ("connected", "healthy") => ("🟢", "healthy".to_string()),
        ("connected", h) => (
            if h == "degraded" { "🟡" } else { "🔴" },
            match &n.health_reason {
                // The node's own words, in part (a GPU error): no
                // control or bidi character reaches any medium.
                Some(r) => format!(
                    "{} ({})",
                    m.escape(h),
                    m.escape(&proto::names::printable(r, 80))
                ),
                None => m.escape(h),
            },
        ),
        (c, _) => (
            "⚪",
            match n.last_seen {
                Some(t) => format!("{}, last seen {}", m.escape(c), ago(t, now)),
                None => m.escape(c),
            },
        ),
    };
    let mut parts = vec![format!("{mark} {}: {state}", m.escape(&n.name))];
    if let Some((free, total)) = confirmed_gpus(n, health)
        && total > 0
    {
        let mut gpus = format!(
            "{free}/{total} GPU{} free",
            if total == 1 { "" } else { "s" }
        );
        // Which GPUs are idle but not free, and why (the node's words,
        // short and printable).
        if let Some(note) = n.gpu_note(health) {
            gpus.push_str(&format!(" ({})", m.escape(&note)));
        }
        parts.push(gpus);
    }
    if !n.labels.is_empty() {
        parts.push(m.escape(&n.labels.join(", ")));
    }
    parts.join(" · ")
}

/// Whether a chat node list shows a node: enrolled ones, not pending,
/// rejected or revoked requests (the admin's business).
pub fn listed_node(n: &proto::NodeInfo) -> bool {
    !matches!(n.connection.as_str(), "pending" | "rejected" | "revoked")
}

/// Page `page` (from 1) of a chat node list: `shown` are that page's
/// nodes, `total` how many there are in all. Past the first page, the
/// header says where it is; when more follow, the end says how to see them.
pub fn nodes(
    shown: &[proto::NodeInfo],
    health: &[(String, Vec<GpuHealth>)],
    page: u32,
    total: usize,
    now: u64,
    m: &dyn Markup,
) -> String {
    if total == 0 {
        return "No nodes are enrolled yet.".into();
    }
    let per = NODES_PER_PAGE;
    let pages = total.div_ceil(per);
    let page = usize::try_from(page).unwrap_or(usize::MAX).max(1);
    if shown.is_empty() {
        return format!(
            "There {} {total} node{} on {pages} page{}; say `nodes` for the first{}.",
            if total == 1 { "is" } else { "are" },
            if total == 1 { "" } else { "s" },
            if pages == 1 { "" } else { "s" },
            if pages > 1 {
                format!(" or `nodes {pages}` for the last")
            } else {
                String::new()
            }
        );
    }
    let first = (page - 1) * per + 1;
    let last = first + shown.len() - 1;
    let mut out = if pages == 1 {
        format!("{total} node{}:", if total == 1 { "" } else { "s" })
    } else {
        format!("Nodes {first}–{last} of {total}:")
    };
    for n in shown {
        out.push('\n');
        out.push_str(&node_line(n, proto::gpu_health_of(health, &n.name), now, m));
    }
    if last < total {
        out.push_str(&format!(
            "\n…and {} more; say `nodes {}`.",
            total - last,
            page + 1
        ));
    }
    out
}

/// One job of a chat job list.
fn job_line(j: &JobInfo, now: u64, m: &dyn Markup) -> String {
    let on = if j.node.is_empty() {
        String::new()
    } else {
        format!(" on {}", m.escape(&j.node))
    };
    let cmd = m.escape(&cut(&proto::argv::line(&j.argv), LIST_CMD));
    let state = match j.job_state() {
        Some(JobState::Queued) => format!("⏳ {} queued", j.id),
        Some(JobState::AwaitingApproval) => format!(
            "🔒 {} awaits approval by {}",
            j.id,
            mentions(&j.approvers, m)
        ),
        Some(JobState::Starting | JobState::Running) => format!("▶️ {} {}", j.id, j.state),
        Some(JobState::Exited) if j.exit_code == Some(0) => format!("✅ {} exited 0", j.id),
        Some(JobState::Exited) => format!("❌ {} exited {}", j.id, j.exit_code.unwrap_or(-1)),
        _ => format!("⚠️ {} {}", j.id, m.escape(&j.state)),
    };
    format!("{state}{on}, {}: `{cmd}`", ago(j.created_at, now))
}

/// Page `page` (from 1) of a chat user's jobs, newest first; `more` says
/// older ones follow.
pub fn jobs(shown: &[JobInfo], page: u32, more: bool, now: u64, m: &dyn Markup) -> String {
    if shown.is_empty() {
        return if page <= 1 {
            "You have no jobs yet; `help` shows how to start one.".into()
        } else {
            "No older jobs; say `jobs` for the newest.".into()
        };
    }
    let mut out = if page <= 1 {
        "Your recent jobs, newest first:".to_string()
    } else {
        format!("Your jobs, page {page}:")
    };
    for j in shown {
        out.push('\n');
        out.push_str(&job_line(j, now, m));
    }
    out.push_str(&format!(
        "\n{}`status N` shows one.",
        if more {
            format!("Older ones: say `jobs {}`. ", page.saturating_add(1))
        } else {
            String::new()
        }
    ));
    out
}

/// The answer about a job that does not exist or that this user may not
/// see (the gateway does not say which): in chat terms.
pub fn no_such_job(id: u64) -> String {
    format!("I know no job {id} that you can see; say `jobs` for your recent jobs.")
}

/// What `help` tells one user.
#[derive(Debug, Clone)]
pub struct HelpFor<'a> {
    /// Named jobs this user may start: name and aliases.
    pub jobs: Vec<&'a (String, Vec<String>)>,
    /// Enrolled nodes.
    pub nodes: &'a [String],
    /// Roles in use.
    pub roles: &'a [String],
    /// How this user may fan out.
    pub fan_out: crate::FanOut,
}

/// Named jobs `help` lists before "and N more".
const HELP_JOBS: usize = 30;

/// The usage help: the forms, with this lab's names, the fan-out form
/// this user may use, and the named jobs they may start.
pub fn help(h: &HelpFor<'_>, m: &dyn Markup) -> String {
    let node = h
        .nodes
        .first()
        .map(|n| m.escape(n))
        .unwrap_or_else(|| "NODE".into());
    let role = h
        .roles
        .iter()
        .find(|r| *r == "gpu")
        .or(h.roles.first())
        .map(|r| m.escape(r))
        .unwrap_or_else(|| "gpu".into());
    let mut lines = vec![
        "I run jobs on the lab's nodes. Say:".to_string(),
        format!("• `run python train.py --epochs 3 on {node}`: a command on one node"),
        format!("• `run nvidia-smi ({role})`: on any one {role} node"),
    ];
    match &h.fan_out {
        crate::FanOut::Any => lines.push(format!(
            "• `run nvidia-smi on all {role} nodes`, `run uptime on all nodes`: on every matching node at once (a fan-out)"
        )),
        crate::FanOut::Role(r) => {
            let r = m.escape(r);
            lines.push(format!(
                "• `run uptime on all {r} nodes`: on every {r} node at once (a fan-out)"
            ));
        }
        crate::FanOut::No => {}
    }
    if let Some((job, _)) = h.jobs.first() {
        let job = m.escape(job);
        lines.push(format!(
            "• `run {job}`, `run {job} on {node}`: a named job, where it is set to run or on that node"
        ));
    }
    lines.push(
        "• `nodes` · `jobs` · `queue` · `usage` · `status 17` · `logs 17` · `cancel 17` · `approve 17` · `deny 17 because …`"
            .into(),
    );
    if h.jobs.is_empty() {
        lines.push("There are no named jobs you may start; run a command instead.".into());
    } else {
        let mut named: Vec<String> = h
            .jobs
            .iter()
            .take(HELP_JOBS)
            .map(|(name, aliases)| {
                let also: Vec<String> = aliases
                    .iter()
                    .take(2)
                    .map(|a| format!("\"{}\"", m.escape(a)))
                    .collect();
                if also.is_empty() {
                    format!("`{}`", m.escape(name))
                } else {
                    format!("`{}` (or {})", m.escape(name), also.join(", "))
                }
            })
            .collect();
        if h.jobs.len() > HELP_JOBS {
            named.push(format!("and {} more", h.jobs.len() - HELP_JOBS));
        }
        lines.push(format!("Named jobs you may start: {}.", named.join(", ")));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::{Plain, job};
    use proto::GpuTelemetry;

    /// A markup whose clock shows where it was asked to.
    struct Clock;
    impl Markup for Clock {
        fn escape(&self, s: &str) -> String {
            Plain.escape(s)
        }
        fn mention(&self, identity: &str) -> String {
            Plain.mention(identity)
        }
        fn time(&self, unix: u64, _now: u64) -> String {
            format!("<t{unix}>")
        }
    }

    #[test]
    fn clock_times_and_relative_times() {
        // 2026-12-05 14:03:20 UTC.
        let t = 1_796_479_400;
        let cases = [
            (t, t + 100, "14:03 UTC"),
            (t, t + 86_400, "2026-12-05 14:03 UTC"),
            (0, 10, "00:00 UTC"),
            (0, 86_400, "1970-01-01 00:00 UTC"),
            // A leap day, and the turn of a century that is not a leap year.
            (951_825_600, 0, "2000-02-29 12:00 UTC"),
            (4_107_542_399, 0, "2100-02-28 23:59 UTC"),
        ];
        for (unix, now, want) in cases {
            assert_eq!(utc(unix, now), want, "{unix}");
        }
        let ago_cases = [
            (100, 150, "50s ago"),
            (100, 290, "3m10s ago"),
            (100, 100, "just now"),
            (200, 100, "just now"),
            (0, 90_000, "1d1h ago"),
        ];
        for (then, now, want) in ago_cases {
            assert_eq!(ago(then, now), want);
        }
        assert_eq!(when(100, 150, &Plain), "50s ago (00:01 UTC)");
        assert_eq!(when(100, 150, &Clock), "50s ago (<t100>)");
    }

    #[test]
    fn status_shows_times_as_people_read_them() {
        let mut j = job("exited", Some(0));
        j.created_at = 1000;
        j.started_at = Some(1010);
        j.finished_at = Some(1140);
        j.approved_by = Some("slack:T1/U9".into());
        let text = status(&j, 1190, &Clock);
        assert_eq!(
            text,
            "✅ job 7 on worker-gpu-01, 1 GPU exited with code 0 after 2m10s: `sh -c 'train &lt;x>'`\n\
             asked by @U1 3m10s ago (<t1000>) · named job training · approved by @U9\n\
             started 3m ago (<t1010>), ran 2m10s, ended 50s ago"
        );
        let mut r = job("running", None);
        r.created_at = 1000;
        r.started_at = Some(1010);
        r.finished_at = None;
        let text = status(&r, 1190, &Clock);
        assert!(
            text.contains("running on worker-gpu-01, 1 GPU for 3m"),
            "{text}"
        );
        assert!(
            text.ends_with("started 3m ago (<t1010>), running for 3m"),
            "{text}"
        );
        let mut w = job("awaiting-approval", None);
        (w.created_at, w.started_at, w.finished_at) = (1000, None, None);
        assert!(status(&w, 1050, &Clock).ends_with("\nwaiting for 50s"));
        let mut d = job("denied", None);
        (d.created_at, d.started_at, d.finished_at) = (1000, None, Some(1020));
        assert!(status(&d, 1050, &Clock).ends_with("\nended 30s ago (<t1020>) without starting"));
        assert!(
            !status(&d, 1050, &Plain).contains("1020"),
            "no raw unix times"
        );
    }

    fn node(
        name: &str,
        connection: &str,
        gpus: &[Option<u64>],
        cap: Option<u32>,
    ) -> proto::NodeInfo {
        proto::NodeInfo {
            name: name.into(),
            connection: connection.into(),
            health: if connection == "connected" {
                "healthy"
            } else {
                "-"
            }
            .into(),
            labels: vec!["gpu".into(), "zone=eu".into()],
            max_gpus: cap,
            fingerprint: "SHA256:secretish".into(),
            last_seen: Some(900),
            remote_addr: Some("10.0.0.1:4433".into()),
            cert_expires: Some(5_000_000),
            telemetry: (connection == "connected").then(|| proto::Heartbeat {
                gpus: gpus
                    .iter()
                    .enumerate()
                    .map(|(i, job)| GpuTelemetry {
                        index: i as u32,
                        job: *job,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..proto::NodeInfo::default()
        }
    }

    #[test]
    fn a_chat_node_list_is_short_and_counts_only_confirmed_gpus() {
        // Four GPUs reported, two confirmed, one of those busy.
        let gpu = node(
            "worker-gpu-01",
            "connected",
            &[Some(3), None, None, None],
            Some(2),
        );
        assert_eq!(confirmed_gpus(&gpu, &[]), Some((1, 2)));
        let claims = node("claims", "connected", &[None, None], None);
        assert_eq!(confirmed_gpus(&claims, &[]), Some((0, 0)));
        let mut sick = node("<sick>", "connected", &[], Some(0));
        sick.health = "unhealthy".into();
        sick.health_reason = Some("GPU 0 at 91°C <!here>\u{202e}".into());
        let off = node("worker-off", "offline", &[], Some(8));
        assert_eq!(confirmed_gpus(&off, &[]), None);
        let shown = [gpu, claims, sick, off];
        let text = nodes(&shown, &[], 1, 4, 1080, &Plain);
        assert_eq!(
            text,
            "4 nodes:\n\
             🟢 worker-gpu-01: healthy · 1/2 GPUs free · gpu, zone=eu\n\
             🟢 claims: healthy · gpu, zone=eu\n\
             🔴 &lt;sick>: unhealthy (GPU 0 at 91°C &lt;!here>\\u{202e}) · gpu, zone=eu\n\
             ⚪ worker-off: offline, last seen 3m ago · gpu, zone=eu"
        );
        for admin_only in ["SHA256", "10.0.0.1", "5000000"] {
            assert!(!text.contains(admin_only), "{admin_only}: {text}");
        }
        assert!(listed_node(&shown[0]) && listed_node(&shown[3]));
        for c in ["pending", "rejected", "revoked"] {
            assert!(!listed_node(&node("x", c, &[], None)), "{c}");
        }
        assert_eq!(
            nodes(&[], &[], 1, 0, 0, &Plain),
            "No nodes are enrolled yet."
        );
    }

    #[test]
    fn an_idle_gpu_that_routing_skips_is_not_free_and_says_why() {
        let lost = GpuHealth::Unhealthy("lost: GPU is lost".into());
        let two = |jobs: &[Option<u64>]| node("g", "connected", jobs, Some(2));
        // (GPUs' jobs, their health, the GPU part of the line)
        type Case = (Vec<Option<u64>>, Vec<GpuHealth>, &'static str);
        let cases: Vec<Case> = vec![
            // An older gateway: no health, the plain count.
            (vec![None, None], vec![], "2/2 GPUs free"),
            (
                vec![None, None],
                vec![GpuHealth::Healthy; 2],
                "2/2 GPUs free",
            ),
            (
                vec![None, None],
                vec![lost.clone(), GpuHealth::Healthy],
                "1/2 GPUs free (GPU 0 lost)",
            ),
            (
                vec![None, None],
                vec![GpuHealth::Healthy, GpuHealth::Mig],
                "1/2 GPUs free (GPU 1 MIG)",
            ),
            // A held GPU is busy, not held back.
            (
                vec![Some(7), None],
                vec![lost.clone(), GpuHealth::Healthy],
                "1/2 GPUs free",
            ),
            // The node's words are escaped like any other.
            (
                vec![None, None],
                vec![GpuHealth::Unhealthy("<!here>: x".into()), lost.clone()],
                "0/2 GPUs free (GPU 0 &lt;!here>, GPU 1 lost)",
            ),
        ];
        for (jobs, h, want) in cases {
            let n = two(&jobs);
            let all = vec![("g".to_string(), h.clone())];
            let text = nodes(std::slice::from_ref(&n), &all, 1, 1, 0, &Plain);
            assert_eq!(
                text,
                format!("1 node:\n🟢 g: healthy · {want} · gpu, zone=eu"),
                "{h:?}"
            );
            // Another node's health is not this one's.
            let other = vec![("h".to_string(), h.clone())];
            assert!(
                nodes(std::slice::from_ref(&n), &other, 1, 1, 0, &Plain).contains(&format!(
                    "{}/2 GPUs free ·",
                    2 - jobs.iter().filter(|j| j.is_some()).count()
                )),
                "{h:?}"
            );
        }
    }

    #[test]
    fn a_long_node_list_is_paged() {
        let all: Vec<proto::NodeInfo> = (0..120)
            .map(|i| node(&format!("n{i:03}"), "connected", &[None], Some(1)))
            .collect();
        // (page, that page's nodes, start of the text, end of the text)
        let cases = [
            (
                1,
                &all[..50],
                "Nodes 1–50 of 120:\n🟢 n000:",
                "…and 70 more; say `nodes 2`.",
            ),
            (
                2,
                &all[50..100],
                "Nodes 51–100 of 120:\n🟢 n050:",
                "…and 20 more; say `nodes 3`.",
            ),
            (
                3,
                &all[100..],
                "Nodes 101–120 of 120:\n🟢 n100:",
                "🟢 n119: healthy · 1/1 GPU free · gpu, zone=eu",
            ),
            (
                4,
                &all[..0],
                "There are 120 nodes on 3 pages;",
                "say `nodes` for the first or `nodes 3` for the last.",
            ),
        ];
        for (page, shown, start, end) in cases {
            let text = nodes(shown, &[], page, all.len(), 0, &Plain);
            assert!(text.starts_with(start), "page {page}: {text}");
            assert!(text.ends_with(end), "page {page}: {text}");
            assert_eq!(
                text.lines().count(),
                shown.len() + 1 + usize::from(page < 3),
                "page {page}"
            );
        }
    }

    #[test]
    fn a_job_list_is_one_short_line_per_job_and_pages() {
        let mut a = job("exited", Some(0));
        a.created_at = 1000;
        let mut b = job("awaiting-approval", None);
        (b.id, b.created_at) = (8, 1100);
        b.argv = vec!["echo".into(), "x".repeat(100)];
        let mut c = job("denied", None);
        (c.id, c.node) = (9, String::new());
        let text = jobs(&[b, a, c], 1, true, 1160, &Plain);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Your recent jobs, newest first:");
        assert_eq!(
            lines[1],
            format!(
                "🔒 8 awaits approval by @U9 on worker-gpu-01, 1m ago: `echo {}…`",
                "x".repeat(54)
            )
        );
        assert_eq!(
            lines[2],
            "✅ 7 exited 0 on worker-gpu-01, 2m40s ago: `sh -c 'train &lt;x>'`"
        );
        assert!(lines[3].starts_with("⚠️ 9 denied, "), "{text}");
        assert_eq!(lines[4], "Older ones: say `jobs 2`. `status N` shows one.");
        assert!(!text.contains("openclaw"), "{text}");
        assert!(jobs(&[], 1, false, 0, &Plain).contains("no jobs yet"));
        assert!(jobs(&[], 3, false, 0, &Plain).contains("say `jobs` for the newest"));
        assert!(no_such_job(99).contains("`jobs`") && !no_such_job(99).contains("openclaw"));
    }

    #[test]
    fn help_names_the_users_jobs_and_the_fan_out_form() {
        let jobs: Vec<(String, Vec<String>)> = vec![
            ("training".into(), vec!["train model".into()]),
            ("exp<42>".into(), vec![]),
        ];
        let nodes = vec!["worker-gpu-01".to_string()];
        let roles = vec!["cpu".to_string(), "gpu".to_string()];
        let h = HelpFor {
            jobs: jobs.iter().collect(),
            nodes: &nodes,
            roles: &roles,
            fan_out: crate::FanOut::Any,
        };
        let text = help(&h, &Plain);
        for want in [
            "`run python train.py --epochs 3 on worker-gpu-01`",
            "`run nvidia-smi (gpu)`",
            "`run nvidia-smi on all gpu nodes`, `run uptime on all nodes`: on every matching node at once (a fan-out)",
            "`run training`, `run training on worker-gpu-01`",
            "`jobs`",
            "Named jobs you may start: `training` (or \"train model\"), `exp&lt;42>`.",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        let limited = HelpFor {
            jobs: vec![],
            fan_out: crate::FanOut::No,
            ..h.clone()
        };
        let text = help(&limited, &Plain);
        assert!(
            !text.contains("all gpu nodes") && !text.contains("`run training"),
            "{text}"
        );
        assert!(text.contains("no named jobs you may start"), "{text}");
        let by_role = HelpFor {
            fan_out: crate::FanOut::Role("cpu".into()),
            ..h.clone()
        };
        assert!(help(&by_role, &Plain).contains("`run uptime on all cpu nodes`"));
        // Every form help shows parses as help says.
        let ctx = crate::Context {
            nodes: nodes.clone(),
            jobs: jobs.clone(),
            roles: roles.clone(),
            interpreters: crate::Context::default_interpreters(),
        };
        for (form, fan) in [
            ("run python train.py --epochs 3 on worker-gpu-01", false),
            ("run nvidia-smi (gpu)", false),
            ("run nvidia-smi on all gpu nodes", true),
            ("run uptime on all nodes", true),
            ("run uptime on all cpu nodes", true),
            ("run training", false),
            ("run training on worker-gpu-01", false),
        ] {
            match crate::parse(form, &ctx) {
                crate::Intent::RunAll { .. } if fan => {}
                crate::Intent::Run { .. } if !fan => {}
                other => panic!("{form}: {other:?}"),
            }
        }
    }
}
