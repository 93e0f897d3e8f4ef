//! HTML and SVG for every page. Pure: data and the clock (`now`) in, text
//! out. Everything that came from the gateway (names, argv, env, labels,
//! requesters, GPU models) goes through [`esc`].
//!
//! The page layout, the login form and the overview live here; charts,
//! nodes and GPUs, jobs and enrollments in the submodules.

use std::fmt::Write as _;

use proto::{JobInfo, LabSummary};

mod chart;
mod enroll;
mod jobs;
mod nodes;
mod usage;

pub use chart::{Scale, sparkline};
pub use enroll::enrollments;
pub use jobs::{artifacts, download_name, job, jobs};
pub use nodes::{gpus, node, nodes};
pub use usage::usage;

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A duration in seconds as `3h 12m`, `4m 05s`, `12s`.
pub fn span(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Bytes as `512 MiB` or `15.6 GiB`.
pub fn bytes(n: u64) -> String {
    let g = n as f64 / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{} MiB", n >> 20)
    }
}

/// `3m 05s ago`, `just now`, or `in 30d 0h` for a time still to come.
fn relative(then: u64, now: u64) -> String {
    match then.cmp(&now) {
        std::cmp::Ordering::Less => format!("{} ago", span(now - then)),
        std::cmp::Ordering::Equal => "just now".into(),
        std::cmp::Ordering::Greater => format!("in {}", span(then - now)),
    }
}

/// `then` for people, relative to `now` (`3m 05s ago`), with the UTC
/// time as a tooltip and machine-readable in `datetime`.
pub fn ago(then: u64, now: u64) -> String {
    let t = proto::clock::Utc::from_unix(then);
    let rel = relative(then, now);
    format!(
        "<time datetime=\"{}\" title=\"{t}\">{rel}</time>",
        t.rfc3339()
    )
}

/// `then` as a UTC time, then relative: `2026-12-05 14:03:09 UTC (3m ago)`.
pub fn at(then: u64, now: u64) -> String {
    let t = proto::clock::Utc::from_unix(then);
    let rel = relative(then, now);
    format!("<time datetime=\"{}\">{t}</time> ({rel})", t.rfc3339())
}

/// The tabs, in order: route and label.
const TABS: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/nodes", "Nodes"),
    ("/gpus", "GPUs"),
    ("/jobs", "Jobs"),
    ("/usage", "Usage"),
    ("/enrollments", "Enrollments"),
];

/// The document's `<base>`: every link, form and script URL on a page is
/// relative (`jobs/7`, never `/jobs/7`), so it resolves under the
/// dashboard's base path (`/d-…/`, see [`crate::guard::Base`]).
fn base_tag(base: &str) -> String {
    format!("<base href=\"{}\">", esc(base))
}

/// The href of a tab's route: `./` for the overview (the base itself),
/// else the route without its slash.
fn href(route: &str) -> &str {
    match route.trim_start_matches('/') {
        "" => "./",
        r => r,
    }
}

/// A whole page: `body` inside the layout, its links relative to `base`
/// (`/d-…/`). `refresh`: the page reloads its `<main>` every few seconds
/// (see app.js).
pub fn page(
    base: &str,
    title: &str,
    active: &str,
    csrf: &str,
    refresh: bool,
    body: &str,
    member: bool,
) -> String {
    let mut nav = String::new();
    let logout = if csrf.is_empty() {
        String::new()
    } else {
        action("logout", "Log out", csrf, None, "")
    };
    // A lab member's dashboard has no admin tab.
    for (route, label) in TABS.iter().filter(|(r, _)| !member || *r != "/enrollments") {
        let current = if *route == active {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            nav,
            "<li><a href=\"{}\"{current}>{label}</a></li>",
            href(route)
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{base}\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf\" content=\"{csrf}\">\
         <title>{title} · OpenClaw</title>\
         <link rel=\"stylesheet\" href=\"static/app.css\"></head>\
         <body><header><span class=\"brand\">OpenClaw lab</span><nav aria-label=\"Sections\"><ul>{nav}</ul></nav>{logout}</header>\
         <main id=\"main\"{refresh}>{body}</main>\
         <script src=\"static/app.js\"></script></body></html>\n",
        base = base_tag(base),
        title = esc(title),
        csrf = esc(csrf),
        refresh = if refresh { " data-refresh=\"5\"" } else { "" },
    )
}

/// The login page: a form that posts the token to `login` (under `base`)
/// once, for a session cookie. No CSRF token, no script, nothing from the
/// gateway. `problem`: why the last attempt failed, if one did.
pub fn login(base: &str, problem: Option<&str>) -> String {
    let problem = problem
        .map(|p| format!("<p role=\"alert\">{}</p>", esc(p)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{base}\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Log in · OpenClaw</title>\
         <link rel=\"stylesheet\" href=\"static/app.css\"></head>\
         <body><header><span class=\"brand\">OpenClaw lab</span></header>\
         <main id=\"main\"><h1>Log in</h1>{problem}\
         <form method=\"post\" action=\"login\" class=\"login\">\
         <label for=\"token\">dashboard token</label> \
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required autofocus> \
         <button type=\"submit\">Log in</button></form>\
         <p>The token is the one <code>openclaw dashboard</code> printed when it started \
         (or the one in its <code>--auth-token-file</code>); <code>openclaw lab</code> writes it to \
         a file and prints the path.</p></main></body></html>\n",
        base = base_tag(base),
    )
}

/// The form that posts an action with the page's CSRF token; `extra`:
/// more fields, before the button.
fn action(path: &str, label: &str, csrf: &str, confirm: Option<&str>, extra: &str) -> String {
    let confirm = confirm
        .map(|c| format!(" data-confirm=\"{}\"", esc(c)))
        .unwrap_or_default();
    format!(
        "<form method=\"post\" action=\"{path}\" class=\"inline\"{confirm}>\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{extra}\
         <button type=\"submit\">{label}</button></form>",
        path = esc(path),
        csrf = esc(csrf),
        label = esc(label),
    )
}

/// Whether a node word in a [`LabSummary`] is not a node's health: a
/// pending request is not a node yet, and a revoked or rejected one is no
/// longer (or never was) part of the lab.
fn not_a_health(word: &str) -> bool {
    use proto::NodeState::*;
    matches!(
        proto::NodeState::parse(word),
        Some(Pending | Rejected | Revoked)
    )
}

/// Job states counted as "now" on the overview, with their labels; the
/// first state of each is the jobs page's filter.
const JOBS_NOW: &[(&[proto::JobState], &str, &str)] = {
    use proto::JobState::*;
    &[
        (&[Running, Starting], "running", "jobs-running"),
        (&[Queued], "queued", "jobs-queued"),
        (&[AwaitingApproval], "awaiting approval", "jobs-awaiting"),
    ]
};

/// How far back the overview's recent failures reach, in seconds.
pub const RECENT_SECS: u64 = 24 * 3600;
/// Most recent failures the overview lists.
pub const RECENT_FAILURES: usize = 10;

/// Whether a job ended badly: it could not run, was lost, hit its
/// timeout, or exited non-zero. Cancelled, denied and expired jobs ended
/// as someone chose.
pub fn failed(j: &JobInfo) -> bool {
    use proto::JobState::*;
    match j.job_state() {
        Some(Failed | Lost | TimedOut) => true,
        Some(Exited) => j.exit_code.is_some_and(|c| c != 0),
        Some(Queued | AwaitingApproval | Starting | Running | Cancelled | Denied | Expired)
        | None => false,
    }
}

/// The overview: GPU totals, jobs running and queued now, nodes by health,
/// pending enrollments, and failures among `recent` jobs (newest first)
/// that ended in the last [`RECENT_SECS`].
pub fn overview(s: &LabSummary, recent: &[JobInfo], now: u64) -> String {
    let count = |states: &[proto::JobState]| -> u64 {
        s.jobs
            .iter()
            .filter(|(st, _)| states.iter().any(|x| x.as_str() == st))
            .map(|(_, n)| n)
            .sum()
    };
    let mut jobs_now = String::new();
    for (states, label, id) in JOBS_NOW {
        let _ = write!(
            jobs_now,
            "<div><dt><a href=\"jobs?state={link}\">{label}</a></dt><dd id=\"{id}\">{n}</dd></div>",
            link = states[0].as_str(),
            n = count(states),
        );
    }
    let health: Vec<(String, u64)> = s
        .nodes
        .iter()
        .filter(|(w, _)| !not_a_health(w))
        .cloned()
        .collect();
    let nodes: u64 = health.iter().map(|(_, n)| n).sum();
    let mut rows = String::new();
    for (k, v) in &health {
        let _ = write!(
            rows,
            "<tr><td><span class=\"tag tag-{k}\">{k}</span></td><td>{v}</td></tr>",
            k = esc(k)
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"2\">no nodes enrolled</td></tr>");
    }
    let pending = match s.pending.len() {
        0 => "<p id=\"pending\">no enrollment requests waiting</p>".to_string(),
        n => format!(
            "<p id=\"pending\"><a href=\"enrollments\">{n} enrollment request{} waiting</a> \
             (not nodes yet: approve or reject them)</p>",
            if n == 1 { "" } else { "s" }
        ),
    };
    let mut failures = String::new();
    for j in recent
        .iter()
        .filter(|j| failed(j) && j.finished_at.is_some_and(|f| f + RECENT_SECS >= now))
        .take(RECENT_FAILURES)
    {
        let _ = write!(
            failures,
            "<tr><td><a href=\"jobs/{id}\">{id}</a></td><td><span class=\"tag tag-{st}\">{st}</span></td>\
             <td>{exit}</td><td class=\"node\">{node}</td><td><code>{cmd}</code></td><td>{when}</td></tr>",
            id = j.id,
            st = esc(&j.state),
            exit = jobs::exit_cell(j),
            node = esc(&j.node),
            cmd = esc(&proto::argv::line(&j.argv)),
            when = j.finished_at.map(|f| ago(f, now)).unwrap_or_default(),
        );
    }
    if failures.is_empty() {
        failures.push_str("<tr><td colspan=\"6\">none</td></tr>");
    }
    format!(
        "<h1>Overview</h1>\
         <section aria-labelledby=\"gpu-h\"><h2 id=\"gpu-h\">GPUs</h2>\
         <dl class=\"totals\"><div><dt>free</dt><dd id=\"gpus-free\">{free}</dd></div>\
         <div><dt>busy</dt><dd id=\"gpus-busy\">{busy}</dd></div>\
         <div><dt>unhealthy</dt><dd id=\"gpus-unhealthy\">{bad}</dd></div></dl>\
         <p class=\"note\">Only confirmed GPUs count: what a node reports beyond the cap its token \
         or an admin confirmed is not offered to jobs.</p></section>\
         <section aria-labelledby=\"jobs-h\"><h2 id=\"jobs-h\">Jobs now</h2>\
         <dl class=\"totals\">{jobs_now}</dl></section>\
         <div class=\"cols\">\
         <table class=\"stats\"><caption><a href=\"nodes\">{nodes} nodes</a> by health</caption>\
         <thead><tr><th scope=\"col\">health</th><th scope=\"col\">count</th></tr></thead><tbody>{rows}</tbody></table>\
         <section aria-labelledby=\"enr-h\"><h2 id=\"enr-h\">Enrollment</h2>{pending}</section></div>\
         <table class=\"list\"><caption>failures in the last 24 hours (of the latest {n} jobs)</caption>\
         <thead><tr><th scope=\"col\">id</th><th scope=\"col\">state</th><th scope=\"col\">exit</th>\
         <th scope=\"col\">node</th><th scope=\"col\">command</th><th scope=\"col\">ended</th></tr></thead>\
         <tbody id=\"failures\">{failures}</tbody></table>",
        free = s.gpus_free,
        busy = s.gpus_busy,
        bad = s.gpus_unhealthy,
        n = recent.len(),
    )
}

/// A whole page, with the tabs, that says only what went wrong: its
/// `title`, then [`problem`]'s heading and message.
pub fn problem_page(base: &str, title: &str, heading: &str, message: &str) -> String {
    page(
        base,
        title,
        "",
        "",
        false,
        &problem(heading, message),
        false,
    )
}

/// A short page saying what went wrong and what to do.
pub fn problem(title: &str, message: &str) -> String {
    format!(
        "<h1>{}</h1><p role=\"alert\">{}</p><p><a href=\"./\">back to the overview</a></p>",
        esc(title),
        esc(message)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A connected node whose GPUs are held by `jobs`, `cap` confirmed.
    pub fn node(name: &str, health: &str, jobs: &[Option<u64>]) -> proto::NodeInfo {
        proto::NodeInfo {
            name: name.into(),
            connection: "connected".into(),
            health: health.into(),
            max_gpus: Some(64),
            fingerprint: "SHA256:x".into(),
            heartbeat_age_ms: Some(400),
            telemetry: Some(proto::Heartbeat {
                load1_milli: 1250,
                mem_used: 3 << 30,
                mem_total: 16 << 30,
                gpus: jobs
                    .iter()
                    .enumerate()
                    .map(|(i, j)| proto::GpuTelemetry {
                        index: i as u32,
                        name: "<b>GPU</b>".into(),
                        job: *j,
                        mem_total: 80 << 30,
                        mem_used: 20 << 30,
                        util_pct: 40 + 10 * i as u32,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..proto::NodeInfo::default()
        }
    }

    /// A job with the fields the pages show.
    pub fn job(id: u64, state: &str, node: &str) -> JobInfo {
        JobInfo {
            id,
            state: state.into(),
            node: node.into(),
            argv: vec!["echo".into(), "<hi>".into()],
            requester: "admin".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_overview_shows_now_not_all_time_and_pending_apart() {
        let s = LabSummary {
            nodes: vec![
                ("healthy".into(), 2),
                ("<x>".into(), 1),
                ("pending".into(), 4),
                ("revoked".into(), 1),
            ],
            gpus_free: 3,
            gpus_busy: 1,
            gpus_unhealthy: 0,
            jobs: vec![
                ("exited".into(), 25),
                ("running".into(), 2),
                ("starting".into(), 1),
                ("queued".into(), 4),
            ],
            pending: vec![node("p", "-", &[])],
        };
        let now = 100_000;
        let mut bad = job(9, "exited", "<n>");
        bad.exit_code = Some(3);
        bad.finished_at = Some(now - 60);
        let mut old = job(8, "failed", "n");
        old.finished_at = Some(now - RECENT_SECS - 1);
        let mut fine = job(7, "exited", "n");
        fine.exit_code = Some(0);
        fine.finished_at = Some(now - 10);
        let mut lost = job(6, "lost", "n");
        lost.finished_at = Some(now - 5);
        let mut cancelled = job(5, "cancelled", "n");
        cancelled.exit_code = Some(143);
        cancelled.finished_at = Some(now - 5);
        let html = overview(&s, &[bad, old, fine, lost, cancelled], now);
        assert!(html.contains("3 nodes</a> by health"), "{html}");
        assert!(
            !html.contains("tag-pending") && !html.contains("tag-revoked"),
            "{html}"
        );
        assert!(html.contains("1 enrollment request waiting"), "{html}");
        assert!(html.contains("<dd id=\"gpus-free\">3</dd>"));
        assert!(html.contains("<dd id=\"jobs-running\">3</dd>"), "{html}");
        assert!(html.contains("<dd id=\"jobs-queued\">4</dd>"), "{html}");
        assert!(html.contains("<dd id=\"jobs-awaiting\">0</dd>"), "{html}");
        assert!(!html.contains(">25<"), "no all-time counts: {html}");
        assert!(html.contains("&lt;x&gt;") && !html.contains("<x>"));
        let failures = &html[html.find("id=\"failures\"").unwrap_or_default()..];
        assert_eq!(failures.matches("<tr>").count(), 2, "{failures}");
        assert!(failures.contains("\"jobs/9\"") && failures.contains("\"jobs/6\""));
        assert!(failures.contains("&lt;n&gt;") && failures.contains("echo &#39;&lt;hi&gt;&#39;"));
        assert!(overview(&LabSummary::default(), &[], now).contains("no enrollment requests"));
    }

    #[test]
    fn the_login_page_reveals_nothing() {
        let html = login("/d-x/", Some("wrong <token>"));
        assert!(html.contains("<base href=\"/d-x/\">"), "{html}");
        assert!(html.contains("action=\"login\"") && html.contains("method=\"post\""));
        assert!(html.contains("wrong &lt;token&gt;"));
        assert!(!html.contains("name=\"csrf\"") && !html.contains("<script"));
        let page = page("/d-x/", "t", "/", "c5rf", false, "", false);
        assert!(page.contains("href=\"enrollments\""), "{page}");
        let member = super::page("/d-x/", "t", "/", "c5rf", false, "", true);
        assert!(
            !member.contains("enrollments") && member.contains("href=\"jobs\""),
            "{member}"
        );
        assert!(page.contains("<base href=\"/d-x/\">"), "{page}");
        assert!(page.contains("action=\"logout\"") && page.contains("value=\"c5rf\""));
        assert!(!super::page("/d-x/", "t", "/", "", false, "", false).contains("logout"));
        assert!(page.contains("href=\"nodes\""));
        assert!(page.contains("<a href=\"./\" aria-current=\"page\">Overview"));
    }

    /// Every URL a page or the script names is relative, so it stays under
    /// the base path that the `<base>` element sets: an absolute path
    /// (`"/jobs`) would leave it, and get a 404.
    #[test]
    fn no_url_leaves_the_base() {
        let sources = [
            ("render.rs", include_str!("render.rs")),
            ("nodes.rs", include_str!("render/nodes.rs")),
            ("jobs.rs", include_str!("render/jobs.rs")),
            ("enroll.rs", include_str!("render/enroll.rs")),
            ("chart.rs", include_str!("render/chart.rs")),
            ("app.js", include_str!("../assets/app.js")),
        ];
        let bad = [
            "href=\\\"/",
            "action=\\\"/",
            "src=\\\"/",
            "format!(\"/",
            "action(\"/",
            "EventSource(\"/",
            "fetch(\"/",
        ];
        for (name, src) in sources {
            // The code, not the tests below it.
            let code = src.split("#[cfg(test)]").next().unwrap_or_default();
            for b in bad {
                assert!(!code.contains(b), "{b} in {name}");
            }
        }
    }

    #[test]
    fn escaping_covers_markup_quotes_and_controls() {
        assert_eq!(
            esc("<script>\"x\"&'y'\u{1b}[31m"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;\u{fffd}[31m"
        );
    }

    #[test]
    fn spans_sizes_and_times() {
        assert_eq!(span(5), "5s");
        assert_eq!(span(65), "1m 05s");
        assert_eq!(span(3 * 3600 + 120), "3h 02m");
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(bytes(80 << 30), "80.0 GiB");
        let t = 1_796_503_613;
        assert_eq!(
            ago(t, t + 65),
            "<time datetime=\"2026-12-05T20:46:53Z\" title=\"2026-12-05 20:46:53 UTC\">1m 05s ago</time>"
        );
        assert!(ago(t, t).contains(">just now<"));
        assert!(at(t + 86_400 * 30, t).ends_with("(in 30d 0h)"));
        assert_eq!(
            at(t, t + 5),
            "<time datetime=\"2026-12-05T20:46:53Z\">2026-12-05 20:46:53 UTC</time> (5s ago)"
        );
    }
}
