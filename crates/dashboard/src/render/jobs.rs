//! Jobs: the job list and a job's page.

use std::fmt::Write as _;

use proto::{JobInfo, JobState};

use super::nodes::node_link;
use super::{action, ago, at, esc, span};

/// The exit column: the code of a job that exited by itself; a cancelled
/// or timed-out job shows its state, not the code of the signal that
/// ended it (as `openclaw job list` does).
pub fn exit_cell(j: &JobInfo) -> String {
    j.own_exit_code().map_or("-".into(), |c| c.to_string())
}

/// How long the job ran: to its end, or until `now` while it runs.
fn duration(j: &JobInfo, now: u64) -> String {
    match (j.started_at, j.finished_at) {
        (Some(s), Some(f)) => span(f.saturating_sub(s)),
        (Some(s), None) => format!("{} so far", span(now.saturating_sub(s))),
        (None, _) => "-".into(),
    }
}

/// Rows of a job table.
fn rows<'a>(list: impl Iterator<Item = &'a JobInfo>, now: u64) -> String {
    let mut rows = String::new();
    for j in list {
        let _ = write!(
            rows,
            "<tr><td><a href=\"jobs/{id}\">{id}</a></td><td><span class=\"tag tag-{st}\">{st}</span></td>\
             <td class=\"node\">{node}</td><td><code>{argv}</code></td><td>{gpus}</td><td>{who}</td>\
             <td>{code}</td><td class=\"nowrap\">{created}</td><td class=\"nowrap\">{started}</td>\
             <td class=\"nowrap\">{took}</td></tr>",
            id = j.id,
            st = esc(&j.state),
            node = node_link(&j.node),
            argv = esc(&proto::argv::line(&j.argv)),
            gpus = j.gpus,
            who = esc(&j.requester),
            code = exit_cell(j),
            created = ago(j.created_at, now),
            started = j
                .started_at
                .map(|s| ago(s, now))
                .unwrap_or_else(|| "-".into()),
            took = duration(j, now),
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"10\">no jobs</td></tr>");
    }
    rows
}

/// A job table with `caption`.
pub fn table(caption: &str, list: &[JobInfo], now: u64) -> String {
    table_of(caption, rows(list.iter(), now))
}

fn table_of(caption: &str, rows: String) -> String {
    format!(
        "<table class=\"list\"><caption>{caption}</caption><thead><tr>\
         <th scope=\"col\">id</th><th scope=\"col\">state</th><th scope=\"col\">node</th><th scope=\"col\">command</th>\
         <th scope=\"col\">GPUs</th><th scope=\"col\">requester</th><th scope=\"col\">exit</th>\
         <th scope=\"col\">created</th><th scope=\"col\">started</th><th scope=\"col\">duration</th></tr></thead>\
         <tbody>{rows}</tbody></table>",
        caption = esc(caption),
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
    for s in JobState::ALL.map(JobState::as_str) {
        let sel = if state == Some(s) { " selected" } else { "" };
        let _ = write!(options, "<option{sel}>{s}</option>");
    }
    let shown = list
        .iter()
        .filter(|j| state.is_none_or(|s| j.state == s) && node.is_none_or(|n| j.node == n));
    let more = next
        .map(|b| {
            let st = state
                .map(|s| format!("&state={}", esc(s)))
                .unwrap_or_default();
            let nd = node
                .map(|n| format!("&node={}", esc(n)))
                .unwrap_or_default();
            format!("<p><a href=\"jobs?before={b}{st}{nd}\">older jobs</a></p>")
        })
        .unwrap_or_default();
    format!(
        "<h1>Jobs</h1><form method=\"get\" action=\"jobs\" class=\"filter\">\
         <label for=\"state\">state</label> <select id=\"state\" name=\"state\">{options}</select> \
         <label for=\"node\">node</label> <input id=\"node\" name=\"node\" value=\"{node_value}\" size=\"18\"> \
         <button type=\"submit\">filter</button></form>{table}{more}",
        node_value = esc(node.unwrap_or_default()),
        table = table_of("jobs, newest first", rows(shown, now)),
    )
}

/// What the GPU row of a job page says. `held`: the indices its node's
/// latest heartbeat shows it holding, while it runs.
/// `hardware`: the physical GPUs it holds; real ones (NVML UUIDs, not a
/// simulated node's `GPU-sim-…`) are what its `CUDA_VISIBLE_DEVICES`
/// names (`node::plan::visible_devices`).
fn gpu_row(j: &JobInfo, held: Option<&[u32]>, hardware: &[proto::HeldGpu]) -> String {
    if j.gpus == 0 {
        return "none".into();
    }
    let n = j.gpus;
    match held {
        Some(idx) if !idx.is_empty() => {
            let list = idx.iter().map(u32::to_string).collect::<Vec<_>>();
            let by_uuid = !hardware.is_empty()
                && hardware
                    .iter()
                    .all(|g| g.uuid.starts_with("GPU-") && !g.uuid.starts_with("GPU-sim-"));
            let visible = if by_uuid {
                hardware
                    .iter()
                    .map(|g| esc(&g.uuid))
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                list.join(",")
            };
            format!(
                "{n}: <span id=\"job-gpus\">GPU {}</span> (<code>CUDA_VISIBLE_DEVICES={visible}</code>)",
                list.join(", GPU "),
            )
        }
        _ if j.is_terminal() => format!("{n} (released when it ended)"),
        _ if j.started_at.is_some() => format!("{n} (its node has not reported which yet)"),
        _ => format!("{n} (assigned when it starts)"),
    }
}

/// One job: state, plan, times, GPUs, actions, and the live log. `held`:
/// the GPU indices it holds now (from its node's telemetry), if known;
/// `hardware`: which physical GPUs it held (UUIDs and models), as its
/// node reported them when it started.
pub fn job(
    j: &JobInfo,
    held: Option<&[u32]>,
    hardware: &[proto::HeldGpu],
    csrf: &str,
    now: u64,
) -> String {
    let mut actions = String::new();
    if j.is(JobState::AwaitingApproval) {
        let digest = format!(
            "<input type=\"hidden\" name=\"plan_digest\" value=\"{}\">",
            esc(&j.plan_digest)
        );
        actions.push_str(&action(
            &format!("jobs/{}/approve", j.id),
            "Approve",
            csrf,
            None,
            &digest,
        ));
        actions.push_str(&action(
            &format!("jobs/{}/deny", j.id),
            "Deny",
            csrf,
            None,
            "",
        ));
    }
    if !j.is_terminal() {
        actions.push_str(&action(
            &format!("jobs/{}/cancel", j.id),
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
    t.push_str(&row("node", node_link(&j.node)));
    if let Some(name) = &j.named_job {
        t.push_str(&row(
            "named job",
            format!("<span id=\"job-named\">{}</span>", esc(name)),
        ));
    }
    if let Some(f) = j.fanout {
        t.push_str(&row("fan-out", format!("one node of fan-out {f}")));
    }
    t.push_str(&row(
        "command",
        format!("<code>{}</code>", esc(&proto::argv::line(&j.argv))),
    ));
    if let Some(cwd) = &j.cwd {
        t.push_str(&row("directory", format!("<code>{}</code>", esc(cwd))));
    }
    if let Some(user) = &j.run_as {
        t.push_str(&row("runs as", esc(user)));
    }
    t.push_str(&row("requester", esc(&j.requester)));
    t.push_str(&row("GPUs", gpu_row(j, held, hardware)));
    if !hardware.is_empty() {
        let dash = |s: &str| {
            if s.is_empty() {
                "–".to_string()
            } else {
                esc(s)
            }
        };
        let list: Vec<String> = hardware
            .iter()
            .map(|g| {
                format!(
                    "<span class=\"gpu-held\">GPU {} {} (<code>{}</code>)</span>",
                    g.index,
                    dash(&g.name),
                    dash(&g.uuid)
                )
            })
            .collect();
        t.push_str(&row("GPU hardware", list.join("<br>")));
    }
    t.push_str(&row("created", at(j.created_at, now)));
    t.push_str(&row(
        "started",
        j.started_at
            .map(|s| format!("<span id=\"job-started\">{}</span>", at(s, now)))
            .unwrap_or_else(|| "not yet".into()),
    ));
    if let Some(f) = j.finished_at {
        t.push_str(&row(
            "ended",
            format!("<span id=\"job-ended\">{}</span>", at(f, now)),
        ));
    }
    t.push_str(&row("duration", duration(j, now)));
    let exit = match j.exit_code {
        Some(c) if !j.is(JobState::Exited) => format!("- (its process ended with code {c})"),
        _ => exit_cell(j),
    };
    t.push_str(&row("exit code", exit));
    if let Some(r) = &j.reason {
        t.push_str(&row("reason", esc(r)));
    }
    if !j.approvers.is_empty() {
        t.push_str(&row("approvers", esc(&j.approvers.join(", "))));
    }
    if let Some(a) = &j.approved_by {
        t.push_str(&row("approved by", esc(a)));
    }
    t.push_str(&row("env", env));
    t.push_str(&row(
        "plan digest",
        format!("<code>{}</code>", esc(&j.plan_digest)),
    ));
    format!(
        "<h1>Job {id}</h1><div class=\"actions\">{actions}</div>\
         <table class=\"kv\"><caption>job {id}</caption><tbody>{t}</tbody></table>\
         <h2 id=\"log-h\">Output</h2>\
         <pre id=\"log\" data-job=\"{id}\" aria-labelledby=\"log-h\" aria-live=\"polite\" tabindex=\"0\"></pre>\
         <p id=\"log-status\" role=\"status\"></p>\
         <h2 id=\"rec-h\">Session recording</h2>\
         <div id=\"recording\" data-job=\"{id}\"><p>Interactive sessions (<code>openclaw shell</code>, \
         <code>run -t</code>) are recorded; \
         <button type=\"button\" id=\"rec-play\">Play</button> \
         <label>speed <select id=\"rec-speed\"><option>1</option><option>2</option><option>4</option>\
         <option>16</option></select></label> <span id=\"rec-status\" role=\"status\"></span></p>\
         <pre id=\"rec-screen\" aria-labelledby=\"rec-h\" tabindex=\"0\"></pre></div>",
        id = j.id,
    )
}

/// A job's artifacts on its page: each stored one a download link
/// (`jobs/ID/artifact?name=…`, under the base like every link), the others
/// with why they were not kept. Pure.
pub fn artifacts(list: &proto::JobArtifacts) -> String {
    if list.patterns.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for a in &list.files {
        let what = if a.is_stored() {
            format!(
                "<a class=\"artifact\" href=\"jobs/{}/artifact?name={}\" download>{}</a>",
                list.job,
                query_value(&a.name),
                esc(&a.name)
            )
        } else {
            esc(&a.name)
        };
        let detail = if a.is_stored() {
            format!("<code>{}</code>", esc(&a.sha256))
        } else {
            format!("{}: {}", esc(&a.state), esc(&a.note))
        };
        let _ = write!(
            rows,
            "<tr><td>{what}</td><td class=\"num\">{}</td><td>{detail}</td></tr>",
            a.size
        );
    }
    let note = list
        .note
        .as_deref()
        .map(|n| format!("<p class=\"note\">{}</p>", esc(n)))
        .unwrap_or_default();
    let patterns = esc(&list.patterns.join(" "));
    if list.files.is_empty() {
        return format!(
            "<h2 id=\"artifacts-h\">Artifacts</h2><p>None kept (patterns: <code>{patterns}</code>).</p>{note}"
        );
    }
    format!(
        "<h2 id=\"artifacts-h\">Artifacts</h2>\
         <table id=\"artifacts\" aria-labelledby=\"artifacts-h\"><thead><tr><th scope=\"col\">name</th>\
         <th scope=\"col\">bytes</th><th scope=\"col\">SHA-256</th></tr></thead><tbody>{rows}</tbody></table>\
         <p>Patterns: <code>{patterns}</code></p>{note}"
    )
}

/// `s` percent-encoded for a query value: only unreserved characters stay.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The file name a browser saves an artifact under: its path with `/`
/// made `_`, and anything that could end or bend the header's quoted
/// value (quotes, backslashes, controls, non-ASCII) made `_`. Pure.
pub fn download_name(name: &str) -> String {
    proto::artifact::flat_name(name)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::job as info;
    use super::*;

    #[test]
    fn artifacts_are_links_with_their_names_escaped_and_encoded() {
        let a = |name: &str, state: &str| proto::ArtifactInfo {
            name: name.into(),
            size: 4,
            sha256: "ab".into(),
            state: state.into(),
            note: "why".into(),
        };
        let list = proto::JobArtifacts {
            job: 7,
            patterns: vec!["*".into()],
            note: None,
            files: vec![a("ckpt/<b>&.pt", "stored"), a("x.bin", "refused")],
        };
        let html = artifacts(&list);
        assert!(
            html.contains("href=\"jobs/7/artifact?name=ckpt%2F%3Cb%3E%26.pt\" download>ckpt/&lt;b&gt;&amp;.pt</a>"),
            "{html}"
        );
        assert!(
            html.contains("x.bin</td>") && html.contains("refused: why"),
            "{html}"
        );
        assert!(!html.contains("<b>"), "{html}");
        assert_eq!(download_name("a/b\"c\u{e9}.pt"), "a_b_c_.pt");
        assert_eq!(artifacts(&proto::JobArtifacts::default()), "");
    }

    #[test]
    fn the_job_list_filters_by_state_and_node() {
        let list = [
            info(3, "running", "a"),
            info(2, "exited", "b"),
            info(1, "exited", "a"),
        ];
        let all = jobs(&list, None, None, 0, Some(1));
        assert_eq!(all.matches("<tr><td><a href").count(), 3);
        assert!(all.contains("&#39;&lt;hi&gt;&#39;") && all.contains("\"jobs?before=1"));
        let some = jobs(&list, Some("exited"), Some("a"), 0, Some(1));
        assert_eq!(some.matches("<tr><td><a href").count(), 1);
        assert!(some.contains("href=\"jobs/1\""));
        assert!(some.contains("\"jobs?before=1&state=exited&node=a"));
        assert!(jobs(&list, Some("lost"), None, 0, None).contains("no jobs"));
    }

    #[test]
    fn the_job_list_quotes_argv_and_has_gpu_start_and_duration_columns() {
        let now = 10_000;
        let mut a = info(5, "running", "worker-gpu-01");
        a.argv = ["sh", "-c", "for i in 1 2; do echo $i; done"]
            .map(String::from)
            .to_vec();
        a.gpus = 2;
        a.created_at = now - 200;
        a.started_at = Some(now - 125);
        let mut b = info(4, "exited", "n");
        b.exit_code = Some(3);
        b.started_at = Some(now - 100);
        b.finished_at = Some(now - 40);
        let mut c = info(3, "cancelled", "n");
        c.exit_code = Some(143);
        let html = jobs(&[a, b, c], None, None, now, None);
        assert!(
            html.contains("<code>sh -c &#39;for i in 1 2; do echo $i; done&#39;</code>"),
            "{html}"
        );
        assert!(html.contains("<th scope=\"col\">GPUs</th>"));
        assert!(html.contains("<td>2</td>"), "{html}");
        assert!(html.contains(">2m 05s ago</time>"), "{html}");
        assert!(html.contains("2m 05s so far"), "{html}");
        assert!(html.contains("<td class=\"nowrap\">1m 00s</td>"), "{html}");
        assert!(
            html.contains("<td>3</td>") && !html.contains("<td>143</td>"),
            "{html}"
        );
        assert!(html.contains("<td class=\"node\"><a href=\"nodes/worker-gpu-01\">"));
    }

    #[test]
    fn a_job_page_shows_its_gpus_times_and_named_job() {
        let now = 1_796_503_613;
        let mut j = info(7, "running", "worker-gpu-01");
        j.gpus = 2;
        j.named_job = Some("<train>".into());
        j.fanout = Some(3);
        j.created_at = now - 70;
        j.started_at = Some(now - 65);
        let hw = [
            proto::HeldGpu {
                index: 0,
                uuid: "GPU-aaa".into(),
                name: "<H100>".into(),
            },
            proto::HeldGpu {
                index: 2,
                uuid: String::new(),
                name: "H100".into(),
            },
        ];
        let html = job(&j, Some(&[0, 2]), &hw, "c5rf", now);
        assert!(
            html.contains("<span id=\"job-gpus\">GPU 0, GPU 2</span>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<span class=\"gpu-held\">GPU 0 &lt;H100&gt; (<code>GPU-aaa</code>)</span><br>\
                 <span class=\"gpu-held\">GPU 2 H100 (<code>–</code>)</span>"
            ),
            "{html}"
        );
        assert!(html.contains("CUDA_VISIBLE_DEVICES=0,2"), "{html}");
        let real = [proto::HeldGpu {
            uuid: "GPU-aaa".into(),
            ..hw[0].clone()
        }];
        let one = job(&j, Some(&[0]), &real, "c", now);
        assert!(one.contains("CUDA_VISIBLE_DEVICES=GPU-aaa"), "{one}");
        assert!(
            html.contains("<span id=\"job-named\">&lt;train&gt;</span>"),
            "{html}"
        );
        assert!(html.contains("fan-out 3"));
        assert!(
            html.contains("2026-12-05 20:45:48 UTC</time> (1m 05s ago)"),
            "{html}"
        );
        assert!(!html.contains("not yet") && html.contains("1m 05s so far"));
        assert!(html.contains("\"jobs/7/cancel\""));
        assert!(job(&j, None, &[], "c", now).contains("has not reported which yet"));
        j.state = "cancelled".into();
        j.exit_code = Some(143);
        j.finished_at = Some(now - 5);
        let done = job(&j, None, &[], "c", now);
        assert!(done.contains("released when it ended"), "{done}");
        assert!(done.contains("<span id=\"job-ended\"><time"), "{done}");
        assert!(done.contains(">1m 00s</td>"), "{done}");
        assert!(
            done.contains("- (its process ended with code 143)"),
            "{done}"
        );
        assert!(!done.contains("/cancel"));
        j.gpus = 0;
        assert!(job(&j, None, &[], "c", now).contains("<td>none</td>"));
    }
}
