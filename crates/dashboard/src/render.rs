//! HTML and SVG for every page. Pure: data in, text out. Everything that
//! came from the gateway (names, argv, env, labels, requesters) goes
//! through [`esc`].

use std::collections::HashMap;
use std::fmt::Write as _;

use proto::{JobInfo, LabSummary, NodeHistory, NodeInfo};

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

fn mib(bytes: u64) -> String {
    let g = bytes as f64 / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// The tabs, in order: path and label.
const TABS: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/gpus", "GPUs"),
    ("/jobs", "Jobs"),
    ("/enrollments", "Enrollments"),
];

/// A whole page: `body` inside the layout. `refresh`: the page reloads its
/// `<main>` every few seconds (see app.js).
pub fn page(title: &str, active: &str, csrf: &str, refresh: bool, body: &str) -> String {
    let mut nav = String::new();
    let logout = if csrf.is_empty() {
        String::new()
    } else {
        action("/logout", "Log out", csrf, None, "")
    };
    for (path, label) in TABS {
        let current = if *path == active {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<li><a href=\"{path}\"{current}>{label}</a></li>");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf\" content=\"{csrf}\">\
         <title>{title} · OpenClaw</title>\
         <link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body><header><span class=\"brand\">OpenClaw lab</span><nav aria-label=\"Sections\"><ul>{nav}</ul></nav>{logout}</header>\
         <main id=\"main\"{refresh}>{body}</main>\
         <script src=\"/static/app.js\"></script></body></html>\n",
        title = esc(title),
        csrf = esc(csrf),
        refresh = if refresh { " data-refresh=\"5\"" } else { "" },
    )
}

/// The login page: a form that posts the token to `/login` once, for a
/// session cookie. No CSRF token, no script, nothing from the gateway.
/// `problem`: why the last attempt failed, if one did.
pub fn login(problem: Option<&str>) -> String {
    let problem = problem
        .map(|p| format!("<p role=\"alert\">{}</p>", esc(p)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Log in · OpenClaw</title>\
         <link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body><header><span class=\"brand\">OpenClaw lab</span></header>\
         <main id=\"main\"><h1>Log in</h1>{problem}\
         <form method=\"post\" action=\"/login\" class=\"login\">\
         <label for=\"token\">dashboard token</label> \
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required autofocus> \
         <button type=\"submit\">Log in</button></form>\
         <p>The token is the one <code>openclaw dashboard</code> printed when it started \
         (or the one in its <code>--auth-token-file</code>); <code>openclaw lab</code> writes it to \
         a file and prints the path.</p></main></body></html>\n"
    )
}

/// The form that posts an action with the page's CSRF token.
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

fn stat_table(caption: &str, head: &str, rows: &[(String, u64)]) -> String {
    let mut s = format!(
        "<table class=\"stats\"><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">count</th></tr></thead><tbody>",
        esc(caption),
        esc(head)
    );
    if rows.is_empty() {
        s.push_str("<tr><td colspan=\"2\">none</td></tr>");
    }
    for (k, v) in rows {
        let _ = write!(
            s,
            "<tr><td><span class=\"tag tag-{cls}\">{k}</span></td><td>{v}</td></tr>",
            cls = esc(k),
            k = esc(k)
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// The overview: nodes by health, GPU totals, jobs by state.
pub fn overview(s: &LabSummary) -> String {
    let nodes: u64 = s.nodes.iter().map(|(_, n)| n).sum();
    let jobs: u64 = s.jobs.iter().map(|(_, n)| n).sum();
    format!(
        "<h1>Overview</h1>\
         <section aria-labelledby=\"gpu-h\"><h2 id=\"gpu-h\">GPUs</h2>\
         <dl class=\"totals\"><div><dt>free</dt><dd id=\"gpus-free\">{free}</dd></div>\
         <div><dt>busy</dt><dd id=\"gpus-busy\">{busy}</dd></div>\
         <div><dt>unhealthy</dt><dd id=\"gpus-unhealthy\">{bad}</dd></div></dl></section>\
         <div class=\"cols\">{}{}</div>{pending}",
        stat_table(&format!("{nodes} nodes by health"), "health", &s.nodes),
        stat_table(&format!("{jobs} jobs by state"), "state", &s.jobs),
        free = s.gpus_free,
        busy = s.gpus_busy,
        bad = s.gpus_unhealthy,
        pending = if s.pending.is_empty() {
            String::new()
        } else {
            format!(
                "<p><a href=\"/enrollments\">{} enrollment request(s) waiting</a></p>",
                s.pending.len()
            )
        },
    )
}

/// An SVG sparkline of `values` (0..=`max`), with a text alternative.
pub fn sparkline(values: &[u32], max: u32, label: &str) -> String {
    const W: u32 = 120;
    const H: u32 = 28;
    let last = values.last().copied();
    let samples = values.len();
    let alt = match last {
        Some(v) => format!("{label}: {v} now, {samples} samples"),
        None => format!("{label}: no history yet"),
    };
    let mut points = String::new();
    // One sample is drawn as a flat line across.
    let one;
    let values = match values {
        [v] => {
            one = [*v, *v];
            &one[..]
        }
        v => v,
    };
    let n = values.len().max(2) as u32 - 1;
    for (i, v) in values.iter().enumerate() {
        let x = i as u32 * W / n;
        let y = H - (*v).min(max.max(1)) * H / max.max(1);
        let _ = write!(points, "{x},{y} ");
    }
    format!(
        "<svg class=\"spark\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{a}\">\
         <title>{a}</title><polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{p}\"/></svg>",
        a = esc(&alt),
        p = points.trim_end(),
    )
}

/// One card per GPU of `nodes`, with sparklines from `history` and the job
/// holding each GPU from `holders`. `next`: the name to page on from.
pub fn gpus(
    nodes: &[NodeInfo],
    history: &[NodeHistory],
    holders: &HashMap<u64, JobInfo>,
    now: u64,
    next: Option<&str>,
) -> String {
    let mut cards = String::new();
    let mut count = 0;
    for n in nodes {
        let Some(hb) = n.telemetry.as_ref().filter(|_| n.connection == "connected") else {
            continue;
        };
        let hist = history.iter().find(|h| h.name == n.name);
        for g in &hb.gpus {
            count += 1;
            let series = |f: &dyn Fn(&proto::GpuPoint) -> u32| -> Vec<u32> {
                hist.map(|h| {
                    h.samples
                        .iter()
                        .filter_map(|s| s.gpus.iter().find(|p| p.index == g.index).map(f))
                        .collect()
                })
                .unwrap_or_default()
            };
            let util = series(&|p| u32::from(p.util_pct));
            let temp = series(&|p| u32::from(p.temp_c));
            let holder = match g.job {
                Some(id) => match holders.get(&id) {
                    Some(j) => format!(
                        "<p class=\"holder\">held by <a href=\"/jobs/{id}\">job {id}</a> of {who}, {for_}</p>",
                        who = esc(&j.requester),
                        for_ = j
                            .started_at
                            .map(|s| format!("running {}", span(now.saturating_sub(s))))
                            .unwrap_or_else(|| "starting".into()),
                    ),
                    None => format!(
                        "<p class=\"holder\">held by <a href=\"/jobs/{id}\">job {id}</a></p>"
                    ),
                },
                None => "<p class=\"holder free\">free</p>".to_string(),
            };
            let state = if n.health != "healthy" {
                "unhealthy"
            } else if g.job.is_some() {
                "busy"
            } else {
                "free"
            };
            let _ = write!(
                cards,
                "<article class=\"gpu gpu-{state}\" aria-label=\"{node} GPU {idx}\">\
                 <h3>{node} <span class=\"idx\">GPU {idx}</span> <span class=\"tag tag-{state}\">{state}</span></h3>\
                 <p class=\"model\">{model}{sim}</p>\
                 <p>memory {used} of {total}</p>\
                 <p>utilisation {util_now} % {util_svg}</p>\
                 <p>temperature {temp_now} °C {temp_svg}</p>{holder}</article>",
                node = esc(&n.name),
                idx = g.index,
                model = esc(&g.name),
                sim = if g.simulated { " (simulated)" } else { "" },
                used = mib(g.mem_used),
                total = mib(g.mem_total),
                util_now = g.util_pct,
                util_svg = sparkline(&util, 100, "utilisation, last 15 minutes"),
                temp_now = g.temp_c,
                temp_svg = sparkline(&temp, 100, "temperature, last 15 minutes"),
            );
        }
    }
    let more = next
        .map(|n| format!("<p><a href=\"/gpus?after={}\">next nodes</a></p>", esc(n)))
        .unwrap_or_default();
    format!(
        "<h1>GPUs</h1><p id=\"gpu-count\">{count} GPUs on this page</p><div class=\"cards\">{cards}</div>{more}"
    )
}

/// The job list; `state` and `node` filter the page, `next` pages on.
pub fn jobs(
    list: &[JobInfo],
    state: Option<&str>,
    node: Option<&str>,
    now: u64,
    next: Option<u64>,
) -> String {
    let mut options = String::from("<option value=\"\">any</option>");
    for s in [
        "awaiting-approval",
        "queued",
        "starting",
        "running",
        "exited",
        "failed",
        "denied",
        "cancelled",
        "lost",
        "timed-out",
    ] {
        let sel = if state == Some(s) { " selected" } else { "" };
        let _ = write!(options, "<option{sel}>{s}</option>");
    }
    let mut rows = String::new();
    for j in list
        .iter()
        .filter(|j| state.is_none_or(|s| j.state == s) && node.is_none_or(|n| j.node == n))
    {
        let _ = write!(
            rows,
            "<tr><td><a href=\"/jobs/{id}\">{id}</a></td><td><span class=\"tag tag-{st}\">{st}</span></td>\
             <td>{node}</td><td><code>{argv}</code></td><td>{who}</td><td>{code}</td><td>{age} ago</td></tr>",
            id = j.id,
            st = esc(&j.state),
            node = esc(&j.node),
            argv = esc(&j.argv.join(" ")),
            who = esc(&j.requester),
            code = j
                .exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            age = span(now.saturating_sub(j.created_at)),
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"7\">no jobs</td></tr>");
    }
    let more = next
        .map(|b| {
            let st = state
                .map(|s| format!("&state={}", esc(s)))
                .unwrap_or_default();
            let nd = node
                .map(|n| format!("&node={}", esc(n)))
                .unwrap_or_default();
            format!("<p><a href=\"/jobs?before={b}{st}{nd}\">older jobs</a></p>")
        })
        .unwrap_or_default();
    format!(
        "<h1>Jobs</h1><form method=\"get\" action=\"/jobs\" class=\"filter\">\
         <label for=\"state\">state</label> <select id=\"state\" name=\"state\">{options}</select> \
         <label for=\"node\">node</label> <input id=\"node\" name=\"node\" value=\"{node_value}\" size=\"18\"> \
         <button type=\"submit\">filter</button></form>\
         <table class=\"list\"><caption>jobs, newest first</caption><thead><tr>\
         <th scope=\"col\">id</th><th scope=\"col\">state</th><th scope=\"col\">node</th><th scope=\"col\">command</th>\
         <th scope=\"col\">requester</th><th scope=\"col\">exit</th><th scope=\"col\">created</th></tr></thead>\
         <tbody>{rows}</tbody></table>{more}",
        node_value = esc(node.unwrap_or_default()),
    )
}

/// One job: state, plan, actions, and the live log.
pub fn job(j: &JobInfo, csrf: &str, now: u64) -> String {
    let mut actions = String::new();
    if j.state == "awaiting-approval" {
        let digest = format!(
            "<input type=\"hidden\" name=\"plan_digest\" value=\"{}\">",
            esc(&j.plan_digest)
        );
        actions.push_str(&action(
            &format!("/jobs/{}/approve", j.id),
            "Approve",
            csrf,
            None,
            &digest,
        ));
        actions.push_str(&action(
            &format!("/jobs/{}/deny", j.id),
            "Deny",
            csrf,
            None,
            "",
        ));
    }
    if matches!(
        j.state.as_str(),
        "queued" | "starting" | "running" | "awaiting-approval"
    ) {
        actions.push_str(&action(
            &format!("/jobs/{}/cancel", j.id),
            "Cancel",
            csrf,
            Some(&format!("Cancel job {}?", j.id)),
            "",
        ));
    }
    let env = if j.env.is_empty() {
        "none".to_string()
    } else {
        j.env
            .iter()
            .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let row = |k: &str, v: String| format!("<tr><th scope=\"row\">{k}</th><td>{v}</td></tr>");
    let mut t = String::new();
    t.push_str(&row(
        "state",
        format!(
            "<span id=\"job-state\" class=\"tag tag-{s}\">{s}</span>",
            s = esc(&j.state)
        ),
    ));
    t.push_str(&row("node", esc(&j.node)));
    t.push_str(&row(
        "command",
        format!("<code>{}</code>", esc(&j.argv.join(" "))),
    ));
    t.push_str(&row("requester", esc(&j.requester)));
    t.push_str(&row(
        "exit code",
        j.exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
    ));
    if let Some(r) = &j.reason {
        t.push_str(&row("reason", esc(r)));
    }
    if !j.approvers.is_empty() {
        t.push_str(&row("approvers", esc(&j.approvers.join(", "))));
    }
    t.push_str(&row("GPUs", j.gpus.to_string()));
    t.push_str(&row("env", env));
    t.push_str(&row(
        "plan digest",
        format!("<code>{}</code>", esc(&j.plan_digest)),
    ));
    t.push_str(&row(
        "created",
        format!("{} ago", span(now.saturating_sub(j.created_at))),
    ));
    format!(
        "<h1>Job {id}</h1><div class=\"actions\">{actions}</div>\
         <table class=\"kv\"><caption>job {id}</caption><tbody>{t}</tbody></table>\
         <h2 id=\"log-h\">Output</h2>\
         <pre id=\"log\" data-job=\"{id}\" aria-labelledby=\"log-h\" aria-live=\"polite\" tabindex=\"0\"></pre>\
         <p id=\"log-status\" role=\"status\"></p>",
        id = j.id,
    )
}

/// Pending enrollments (approve, reject) and a page of enrolled nodes
/// (revoke); `next` pages on.
pub fn enrollments(
    pending_nodes: &[NodeInfo],
    page: &[NodeInfo],
    csrf: &str,
    now: u64,
    next: Option<&str>,
) -> String {
    let mut pending = String::new();
    for n in pending_nodes {
        let fp = format!(
            "<input type=\"hidden\" name=\"fingerprint\" value=\"{}\">",
            esc(&n.fingerprint)
        );
        let _ = write!(
            pending,
            "<tr><td>{name}</td><td><code>{fp_text}</code></td><td>{labels}</td><td>{from}</td><td>{age} ago</td><td>{approve}{reject}</td></tr>",
            name = esc(&n.name),
            fp_text = esc(&n.fingerprint),
            labels = esc(&n.proposed_labels.join(",")),
            from = esc(n.remote_addr.as_deref().unwrap_or("-")),
            age = span(now.saturating_sub(n.requested_at)),
            approve = action(
                &format!("/nodes/{}/approve", n.name),
                "Approve",
                csrf,
                Some(&format!("Approve {} with key {}?", n.name, n.fingerprint)),
                &fp
            ),
            reject = action(
                &format!("/nodes/{}/reject", n.name),
                "Reject",
                csrf,
                None,
                ""
            ),
        );
    }
    if pending.is_empty() {
        pending.push_str("<tr><td colspan=\"6\">no pending requests</td></tr>");
    }
    let mut enrolled = String::new();
    for n in page
        .iter()
        .filter(|n| matches!(n.connection.as_str(), "connected" | "offline"))
    {
        let _ = write!(
            enrolled,
            "<tr><td>{name}</td><td><span class=\"tag tag-{c}\">{c}</span></td><td><code>{fp}</code></td><td>{revoke}</td></tr>",
            name = esc(&n.name),
            c = esc(&n.connection),
            fp = esc(&n.fingerprint),
            revoke = action(
                &format!("/nodes/{}/revoke", n.name),
                "Revoke",
                csrf,
                Some(&format!(
                    "Revoke node {}? Its connection is cut and its jobs are lost.",
                    n.name
                )),
                ""
            ),
        );
    }
    format!(
        "<h1>Enrollments</h1>\
         <table class=\"list\"><caption>pending requests: compare each fingerprint with the one the node printed</caption>\
         <thead><tr><th scope=\"col\">node</th><th scope=\"col\">key fingerprint</th><th scope=\"col\">labels asked</th>\
         <th scope=\"col\">from</th><th scope=\"col\">asked</th><th scope=\"col\">decide</th></tr></thead><tbody>{pending}</tbody></table>\
         <table class=\"list\"><caption>enrolled nodes</caption><thead><tr><th scope=\"col\">node</th><th scope=\"col\">connection</th>\
         <th scope=\"col\">key fingerprint</th><th scope=\"col\">revoke</th></tr></thead><tbody>{enrolled}</tbody></table>{more}",
        more = next
            .map(|n| format!(
                "<p><a href=\"/enrollments?after={}\">next nodes</a></p>",
                esc(n)
            ))
            .unwrap_or_default(),
    )
}

/// A short page saying what went wrong and what to do.
pub fn problem(title: &str, message: &str) -> String {
    format!(
        "<h1>{}</h1><p role=\"alert\">{}</p><p><a href=\"/\">back to the overview</a></p>",
        esc(title),
        esc(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overview_counts_and_links_pending_requests() {
        let s = LabSummary {
            nodes: vec![("healthy".into(), 2), ("<x>".into(), 1)],
            gpus_free: 3,
            gpus_busy: 1,
            gpus_unhealthy: 0,
            jobs: vec![("exited".into(), 5)],
            pending: vec![node("p", "-", &[])],
        };
        let html = overview(&s);
        assert!(html.contains("3 nodes by health"), "{html}");
        assert!(html.contains("<dd id=\"gpus-free\">3</dd>"));
        assert!(html.contains("1 enrollment request(s) waiting"));
        assert!(html.contains("&lt;x&gt;") && !html.contains("<x>"));
    }

    #[test]
    fn the_job_list_filters_by_state_and_node() {
        let job = |id: u64, state: &str, node: &str| JobInfo {
            id,
            state: state.into(),
            node: node.into(),
            argv: vec!["echo".into(), "<hi>".into()],
            requester: "admin".into(),
            ..Default::default()
        };
        let list = [
            job(3, "running", "a"),
            job(2, "exited", "b"),
            job(1, "exited", "a"),
        ];
        let all = jobs(&list, None, None, 0, Some(1));
        assert_eq!(all.matches("<tr><td><a href").count(), 3);
        assert!(all.contains("&lt;hi&gt;") && all.contains("/jobs?before=1"));
        let some = jobs(&list, Some("exited"), Some("a"), 0, Some(1));
        assert_eq!(some.matches("<tr><td><a href").count(), 1);
        assert!(some.contains("href=\"/jobs/1\""));
        assert!(some.contains("/jobs?before=1&state=exited&node=a"));
        assert!(jobs(&list, Some("lost"), None, 0, None).contains("no jobs"));
    }

    #[test]
    fn the_login_page_reveals_nothing() {
        let html = login(Some("wrong <token>"));
        assert!(html.contains("action=\"/login\"") && html.contains("method=\"post\""));
        assert!(html.contains("wrong &lt;token&gt;"));
        assert!(!html.contains("name=\"csrf\"") && !html.contains("<script"));
        let page = page("t", "/", "c5rf", false, "");
        assert!(page.contains("action=\"/logout\"") && page.contains("value=\"c5rf\""));
        assert!(!super::page("t", "/", "", false, "").contains("/logout"));
    }

    #[test]
    fn escaping_covers_markup_quotes_and_controls() {
        assert_eq!(
            esc("<script>\"x\"&'y'\u{1b}[31m"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;\u{fffd}[31m"
        );
    }

    #[test]
    fn spans_and_sparklines() {
        assert_eq!(span(5), "5s");
        assert_eq!(span(65), "1m 05s");
        assert_eq!(span(3 * 3600 + 120), "3h 02m");
        let svg = sparkline(&[0, 50, 100, 200], 100, "util");
        assert!(svg.contains("points=\"0,28 40,14 80,0 120,0\""), "{svg}");
        assert!(svg.contains("util: 200 now, 4 samples"));
        assert!(sparkline(&[], 100, "util").contains("no history yet"));
        let one = sparkline(&[7], 0, "x");
        assert!(one.contains("points=\"0,0 120,0\""), "{one}");
        assert!(one.contains("x: 7 now, 1 samples"), "{one}");
    }

    fn node(name: &str, health: &str, jobs: &[Option<u64>]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            connection: "connected".into(),
            health: health.into(),
            labels: vec![],
            proposed_labels: vec![],
            max_gpus: None,
            fingerprint: "SHA256:x".into(),
            last_seen: None,
            remote_addr: None,
            cert_expires: None,
            requested_at: 0,
            heartbeat_age_ms: None,
            health_reason: None,
            telemetry: Some(proto::Heartbeat {
                gpus: jobs
                    .iter()
                    .enumerate()
                    .map(|(i, j)| proto::GpuTelemetry {
                        index: i as u32,
                        name: "<b>GPU</b>".into(),
                        job: *j,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn gpu_cards_count_holders_and_escape_names() {
        let nodes = vec![
            node("a", "healthy", &[Some(7), None]),
            node("b", "unhealthy", &[None]),
        ];
        let html = gpus(&nodes, &[], &HashMap::new(), 0, Some("b"));
        assert_eq!(html.matches("<article").count(), 3);
        assert!(html.contains("3 GPUs on this page"));
        assert!(html.contains("href=\"/jobs/7\""));
        assert!(html.contains("&lt;b&gt;GPU&lt;/b&gt;"));
        assert!(!html.contains("<b>GPU"));
        assert!(html.contains("/gpus?after=b"));
    }
}
