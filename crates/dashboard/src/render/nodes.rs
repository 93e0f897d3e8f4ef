//! Nodes and their GPUs: the node list, a node's page, and the GPU cards
//! with their sparklines.

use std::collections::HashMap;
use std::fmt::Write as _;

use proto::{GpuHealth, GpuTelemetry, JobInfo, NodeHistory, NodeInfo};

use super::chart::{Scale, sparkline};
use super::{action, ago, bytes, esc, span};

/// The health word of a node: its health while connected, else its
/// connection (`offline`, `pending`, `revoked`, `rejected`).
fn health_word(n: &NodeInfo) -> &str {
    if n.connection == "connected" {
        &n.health
    } else {
        &n.connection
    }
}

fn health_tag(n: &NodeInfo) -> String {
    let w = esc(health_word(n));
    match &n.health_reason {
        Some(r) if n.connection == "connected" => format!(
            "<span class=\"tag tag-{w}\" title=\"{r}\">{w}</span> <span class=\"reason\">{r}</span>",
            r = esc(r)
        ),
        _ => format!("<span class=\"tag tag-{w}\">{w}</span>"),
    }
}

/// Confirmed labels, then the node's unconfirmed proposals marked `?`.
fn labels(n: &NodeInfo) -> String {
    let mut out = n
        .labels
        .iter()
        .map(|l| format!("<span class=\"label\">{}</span>", esc(l)))
        .collect::<Vec<_>>()
        .join(" ");
    for p in &n.proposed_labels {
        let _ = write!(
            out,
            " <span class=\"label unconfirmed\" title=\"proposed by the node, not confirmed: routing ignores it\">{}?</span>",
            esc(p)
        );
    }
    if out.is_empty() { "-".into() } else { out }
}

/// `1 free of 2` (confirmed GPUs only), with what is not confirmed and
/// whether they are simulated; `-` without GPUs. `health`: each GPU's
/// health (empty from an older gateway): an idle GPU that is unhealthy or
/// MIG-enabled is not free, as routing has it, and is named: `1 free of 2
/// (GPU 0 lost)`.
fn gpu_cell(n: &NodeInfo, health: &[GpuHealth]) -> String {
    let c = n.gpu_counts_with(health);
    if c.reported == 0 {
        return "-".into();
    }
    let mut s = format!("{} free of {}", c.free, c.confirmed);
    if let Some(note) = n.gpu_note(health) {
        let _ = write!(s, " ({})", esc(&note));
    }
    if c.unconfirmed() > 0 {
        let _ = write!(
            s,
            ", <span class=\"unconfirmed\" title=\"reported by the node, not confirmed: no job gets them\">{} not confirmed</span>",
            c.unconfirmed()
        );
    }
    if n.telemetry
        .as_ref()
        .is_some_and(|t| t.gpus.iter().any(|g| g.simulated))
    {
        s.push_str(" (simulated)");
    }
    s
}

/// The mean utilisation of the confirmed GPUs, `45 %`; `-` without any.
fn util_cell(n: &NodeInfo) -> String {
    let g = n.confirmed_gpus();
    if g.is_empty() {
        return "-".into();
    }
    // The mean of the known readings; "–" when none is known.
    let known: Vec<u64> = g
        .iter()
        .filter_map(|g| g.util())
        .map(|u| u64::from(u.min(100)))
        .collect();
    if known.is_empty() {
        return "–".into();
    }
    format!("{} %", known.iter().sum::<u64>() / known.len() as u64)
}

fn load_cell(n: &NodeInfo) -> String {
    n.telemetry
        .as_ref()
        .map(|t| format!("{:.2}", f64::from(t.load1_milli) / 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn memory_cell(n: &NodeInfo) -> String {
    match &n.telemetry {
        Some(t) if t.mem_total > 0 => format!("{} of {}", bytes(t.mem_used), bytes(t.mem_total)),
        _ => "-".into(),
    }
}

/// The last heartbeat: its age on the live connection, or when the node
/// was last seen.
fn heartbeat_cell(n: &NodeInfo, now: u64) -> String {
    match (n.heartbeat_age_ms, n.last_seen) {
        (Some(ms), _) if ms < 1000 => "under 1s ago".into(),
        (Some(ms), _) => format!("{} ago", span(ms / 1000)),
        (None, Some(seen)) => format!("last seen {}", ago(seen, now)),
        (None, None) => "-".into(),
    }
}

/// A link to a node's page.
pub fn node_link(name: &str) -> String {
    if name.is_empty() {
        return "-".into();
    }
    format!("<a href=\"nodes/{n}\">{n}</a>", n = esc(name))
}

/// The node list: every node of the page with health, labels, GPUs, load,
/// memory and last heartbeat; `health`: each GPU's health on the page's
/// connected nodes; `next` pages on.
pub fn nodes(
    page: &[NodeInfo],
    health: &[(String, Vec<GpuHealth>)],
    now: u64,
    next: Option<&str>,
) -> String {
    let mut rows = String::new();
    for n in page {
        let _ = write!(
            rows,
            "<tr><td class=\"node\">{name}</td><td>{health}</td><td>{labels}</td><td>{gpus}</td>\
             <td>{util}</td><td>{load}</td><td class=\"nowrap\">{mem}</td><td>{jobs}</td><td class=\"nowrap\">{hb}</td></tr>",
            name = node_link(&n.name),
            health = health_tag(n),
            labels = labels(n),
            gpus = gpu_cell(n, proto::gpu_health_of(health, &n.name)),
            util = util_cell(n),
            load = load_cell(n),
            mem = memory_cell(n),
            jobs = n
                .telemetry
                .as_ref()
                .map(|t| t.running_jobs.to_string())
                .unwrap_or_else(|| "-".into()),
            hb = heartbeat_cell(n, now),
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"9\">no nodes</td></tr>");
    }
    let more = next
        .map(|n| format!("<p><a href=\"nodes?after={}\">next nodes</a></p>", esc(n)))
        .unwrap_or_default();
    format!(
        "<h1>Nodes</h1><p id=\"node-count\">{count} nodes on this page, by name</p>\
         <table class=\"list\"><caption>nodes: GPUs count only the confirmed ones</caption><thead><tr>\
         <th scope=\"col\">node</th><th scope=\"col\">health</th><th scope=\"col\">labels</th>\
         <th scope=\"col\">GPUs</th><th scope=\"col\">GPU util</th><th scope=\"col\">load</th>\
         <th scope=\"col\">memory</th><th scope=\"col\">jobs</th><th scope=\"col\">heartbeat</th></tr></thead>\
         <tbody>{rows}</tbody></table>{more}",
        count = page.len(),
    )
}

/// A series of one GPU's history: `f` of each sample that has it.
fn series(
    hist: Option<&NodeHistory>,
    index: u32,
    f: impl Fn(&proto::GpuPoint) -> Option<u32>,
) -> Vec<Option<u32>> {
    hist.map(|h| {
        h.samples
            .iter()
            .filter_map(|s| s.gpus.iter().find(|p| p.index == index).map(&f))
            .collect()
    })
    .unwrap_or_default()
}

/// Seconds from a history's first sample to `now`.
fn history_span(hist: Option<&NodeHistory>, now: u64) -> u64 {
    hist.and_then(|h| Some(now.saturating_sub(h.samples.first()?.at)))
        .unwrap_or(0)
}

/// One GPU's card: model, state, memory, utilisation, temperature (now
/// and as sparklines with their scales), and the job holding it.
fn gpu_card(
    n: &NodeInfo,
    g: &GpuTelemetry,
    health: Option<&GpuHealth>,
    confirmed: bool,
    hist: Option<&NodeHistory>,
    holders: &HashMap<u64, JobInfo>,
    now: u64,
) -> String {
    // The history (a sample every 15 s or so), then the latest heartbeat
    // at "now", so a chart ends where the number beside it says.
    let span_secs = history_span(hist, now);
    // Unknown readings (NVML does not support them) are gaps and "–".
    let mut util = series(hist, g.index, proto::GpuPoint::util);
    util.push(g.util());
    let mut temp = series(hist, g.index, proto::GpuPoint::temp);
    temp.push(g.temp());
    let mut mem = series(hist, g.index, proto::GpuPoint::mem_mib);
    mem.push(
        g.mem()
            .map(|m| u32::try_from(m.0 >> 20).unwrap_or(u32::MAX)),
    );
    let total_mib = g
        .mem()
        .map_or(0, |m| u32::try_from(m.1 >> 20).unwrap_or(u32::MAX));
    let mem_top = g.mem().map_or_else(|| "–".into(), |m| bytes(m.1));
    let dash = |v: Option<String>| v.unwrap_or_else(|| "–".into());
    let holder = match g.job {
        Some(id) => match holders.get(&id) {
            Some(j) => format!(
                "<p class=\"holder\">held by <a href=\"jobs/{id}\">job {id}</a> of {who}, {for_}</p>",
                who = esc(&j.requester),
                for_ = j
                    .started_at
                    .map(|s| format!("running {}", span(now.saturating_sub(s))))
                    .unwrap_or_else(|| "starting".into()),
            ),
            None => format!("<p class=\"holder\">held by <a href=\"jobs/{id}\">job {id}</a></p>"),
        },
        None if confirmed => "<p class=\"holder free\">free</p>".to_string(),
        None => "<p class=\"holder\">not confirmed: no job gets it until an admin confirms \
                 more GPUs for this node</p>"
            .to_string(),
    };
    // This GPU's own health where its node judged it (protocol 3): a
    // degraded node's healthy GPUs keep serving and show so. Without it,
    // a node that is not healthy marks every card.
    let (state, fault) = match health {
        Some(h @ GpuHealth::Unhealthy(_)) => ("unhealthy", h.reason()),
        Some(h @ GpuHealth::Mig) => ("mig", h.reason()),
        Some(GpuHealth::Healthy) if n.health == "degraded" => ("", None),
        _ if n.health != "healthy" => ("unhealthy", None),
        _ => ("", None),
    };
    let fault = fault
        .map(|r| format!("<p class=\"fault\">{}</p>", esc(r)))
        .unwrap_or_default();
    let state = if !state.is_empty() {
        state
    } else if g.job.is_some() {
        "busy"
    } else if !confirmed {
        "unconfirmed"
    } else {
        "free"
    };
    // An idle GPU that is unhealthy or MIG-enabled is not free.
    let holder = if matches!(state, "unhealthy" | "mig") && g.job.is_none() && confirmed {
        "<p class=\"holder\">not offered to new jobs</p>".to_string()
    } else {
        holder
    };
    let pct = Scale {
        max: 100,
        unit: "%",
        top: "100 %",
        span_secs,
    };
    format!(
        "<article class=\"gpu gpu-{state}\" aria-label=\"{node} GPU {idx}\">\
         <h3>{link} <span class=\"idx\">GPU {idx}</span> <span class=\"tag tag-{state}\">{state}</span></h3>\
         <p class=\"model\">{model}{sim}</p>\
         <p>memory {used} of {total}<br>{mem_svg}</p>\
         <p>utilisation {util_now} %<br>{util_svg}</p>\
         <p>temperature {temp_now} °C<br>{temp_svg}</p>{fault}{holder}</article>",
        node = esc(&n.name),
        link = node_link(&n.name),
        idx = g.index,
        model = esc(&g.name),
        sim = if g.simulated { " (simulated)" } else { "" },
        used = dash(g.mem().map(|m| bytes(m.0))),
        total = mem_top,
        mem_svg = sparkline(
            &mem,
            &Scale {
                max: total_mib,
                unit: "MiB",
                top: &mem_top,
                span_secs,
            },
            "memory in use"
        ),
        util_now = dash(g.util().map(|u| u.to_string())),
        util_svg = sparkline(&util, &pct, "utilisation"),
        temp_now = dash(g.temp().map(|c| c.to_string())),
        temp_svg = sparkline(
            &temp,
            &Scale {
                unit: "°C",
                top: "100 °C",
                ..pct
            },
            "temperature"
        ),
    )
}

/// The cards of one node's GPUs.
fn cards(
    n: &NodeInfo,
    health: &[GpuHealth],
    hist: Option<&NodeHistory>,
    holders: &HashMap<u64, JobInfo>,
    now: u64,
) -> (usize, String) {
    let Some(hb) = n.telemetry.as_ref().filter(|_| n.connection == "connected") else {
        return (0, String::new());
    };
    let confirmed = n.confirmed_gpus().len();
    let mut out = String::new();
    for (i, g) in hb.gpus.iter().enumerate() {
        let h = health.get(i);
        out.push_str(&gpu_card(n, g, h, i < confirmed, hist, holders, now));
    }
    (hb.gpus.len(), out)
}

/// One card per GPU of `nodes`, with sparklines from `history` and the job
/// holding each GPU from `holders`. `next`: the name to page on from.
pub fn gpus(
    nodes: &[NodeInfo],
    health: &[(String, Vec<GpuHealth>)],
    history: &[NodeHistory],
    holders: &HashMap<u64, JobInfo>,
    now: u64,
    next: Option<&str>,
) -> String {
    let mut all = String::new();
    let mut count = 0;
    for n in nodes {
        let hist = history.iter().find(|h| h.name == n.name);
        let h = health
            .iter()
            .find(|(name, _)| *name == n.name)
            .map_or(&[][..], |(_, h)| h.as_slice());
        let (k, html) = cards(n, h, hist, holders, now);
        count += k;
        all.push_str(&html);
    }
    let more = next
        .map(|n| format!("<p><a href=\"gpus?after={}\">next nodes</a></p>", esc(n)))
        .unwrap_or_default();
    format!(
        "<h1>GPUs</h1><p id=\"gpu-count\">{count} GPUs on this page</p><div class=\"cards\">{all}</div>{more}"
    )
}

/// The button that revokes node `n`, after the browser asks; `extra`:
/// hidden fields (where to come back to).
pub fn revoke_form(n: &NodeInfo, csrf: &str, extra: &str) -> String {
    action(
        &format!("nodes/{}/revoke", n.name),
        "Revoke",
        csrf,
        Some(&format!(
            "Revoke node {}? Its connection is cut and its jobs are lost.",
            n.name
        )),
        extra,
    )
}

/// The form that confirms a node's labels and GPU cap (`NodeApprove`'s
/// `labels` and `gpus`): the labels field starts with the confirmed
/// labels, each proposal is a box to tick, and the GPU cap starts at the
/// confirmed one. `button`: the submit label.
pub fn confirm_form(n: &NodeInfo, csrf: &str, confirm: &str, button: &str, from: &str) -> String {
    let mut extra = format!(
        "<input type=\"hidden\" name=\"fingerprint\" value=\"{fp}\">\
         <input type=\"hidden\" name=\"from\" value=\"{from}\">\
         <label>labels <input name=\"labels\" value=\"{labels}\" size=\"18\" \
         placeholder=\"none\" autocomplete=\"off\"></label> ",
        fp = esc(&n.fingerprint),
        from = esc(from),
        labels = esc(&n.labels.join(",")),
    );
    for p in &n.proposed_labels {
        let _ = write!(
            extra,
            "<label class=\"proposal\"><input type=\"checkbox\" name=\"propose\" value=\"{p}\"> confirm {p}</label> ",
            p = esc(p)
        );
    }
    let _ = write!(
        extra,
        "<label>GPUs <input name=\"gpus\" type=\"number\" min=\"0\" max=\"{max}\" value=\"{gpus}\" \
         placeholder=\"none\" size=\"4\"></label> ",
        max = proto::MAX_NODE_GPUS,
        gpus = n.max_gpus.map(|g| g.to_string()).unwrap_or_default(),
    );
    action(
        &format!("nodes/{}/approve", n.name),
        button,
        csrf,
        Some(confirm),
        &extra,
    )
}

/// One node's page: its facts, its GPUs with sparklines, and its recent
/// `jobs` (newest first). `manage`: the admin's forms (confirm labels and
/// GPUs, revoke); a lab member's dashboard shows none.
#[allow(clippy::too_many_arguments)]
pub fn node(
    n: &NodeInfo,
    health: &[GpuHealth],
    history: Option<&NodeHistory>,
    jobs: &[JobInfo],
    holders: &HashMap<u64, JobInfo>,
    csrf: &str,
    now: u64,
    manage: bool,
) -> String {
    let row = |k: &str, v: String| format!("<tr><th scope=\"row\">{k}</th><td>{v}</td></tr>");
    let mut t = String::new();
    t.push_str(&row("health", health_tag(n)));
    t.push_str(&row("connection", esc(&n.connection)));
    t.push_str(&row("labels", labels(n)));
    t.push_str(&row("GPUs", gpu_cell(n, health)));
    t.push_str(&row(
        "GPU cap",
        match n.max_gpus {
            Some(g) => format!("{g} (confirmed)"),
            None => "none confirmed: no job gets a GPU here".into(),
        },
    ));
    t.push_str(&row("GPU utilisation", util_cell(n)));
    if let Some(tel) = &n.telemetry {
        let source = match &tel.gpu_error {
            Some(e) => format!("{} ({})", esc(&tel.gpu_source), esc(e)),
            None => esc(&tel.gpu_source),
        };
        t.push_str(&row("GPU source", source));
    }
    t.push_str(&row("load", load_cell(n)));
    t.push_str(&row("memory", memory_cell(n)));
    t.push_str(&row(
        "running jobs",
        n.telemetry
            .as_ref()
            .map(|t| t.running_jobs.to_string())
            .unwrap_or_else(|| "-".into()),
    ));
    t.push_str(&row("last heartbeat", heartbeat_cell(n, now)));
    t.push_str(&row(
        "address",
        esc(n.remote_addr.as_deref().unwrap_or("-")),
    ));
    t.push_str(&row(
        "key fingerprint",
        format!("<code>{}</code>", esc(&n.fingerprint)),
    ));
    if let Some(exp) = n.cert_expires {
        t.push_str(&row("certificate expires", super::at(exp, now)));
    }
    let mut actions = String::new();
    let mut facts = String::new();
    match n.connection.as_str() {
        "connected" | "offline" if !manage => {}
        "pending" if !manage => actions.push_str(
            "<p>This is an enrollment request, not a node yet: an admin approves or rejects it.</p>",
        ),
        "connected" | "offline" => {
            facts = format!(
                "<h2>Labels and GPU cap</h2><p class=\"note\">Routing uses only confirmed labels, \
                 and jobs get only confirmed GPUs. Tick a label the node proposed to confirm it.</p>\
                 <div class=\"actions\">{}</div>",
                confirm_form(
                    n,
                    csrf,
                    &format!("Confirm these labels and GPUs for node {}?", n.name),
                    "Confirm labels and GPUs",
                    "node",
                )
            );
            actions.push_str(&revoke_form(
                n,
                csrf,
                "<input type=\"hidden\" name=\"from\" value=\"node\">",
            ));
        }
        "pending" => actions.push_str(
            "<p>This is an enrollment request, not a node yet: \
             <a href=\"enrollments\">approve or reject it</a>.</p>",
        ),
        _ => {}
    }
    let (count, gpu_cards) = cards(n, health, history, holders, now);
    let gpus = if count == 0 {
        "<p>no GPUs reported</p>".to_string()
    } else {
        format!("<div class=\"cards\">{gpu_cards}</div>")
    };
    format!(
        "<h1>Node {name}</h1><div class=\"actions\">{actions}</div>\
         <table class=\"kv\"><caption>node {name}</caption><tbody>{t}</tbody></table>{facts}\
         <h2>GPUs</h2>{gpus}\
         <h2>Recent jobs</h2>{jobs}",
        name = esc(&n.name),
        jobs = super::jobs::table(
            "jobs on this node, newest first (of the latest jobs)",
            jobs,
            now
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, node as lab_node};
    use super::*;

    #[test]
    fn gpu_cards_count_holders_and_escape_names() {
        let mut b = lab_node("b", "unhealthy", &[None]);
        b.name = "b<i>".into();
        let nodes = vec![lab_node("a", "healthy", &[Some(7), None]), b];
        let html = gpus(&nodes, &[], &[], &HashMap::new(), 0, Some("b"));
        assert_eq!(html.matches("<article").count(), 3);
        assert!(html.contains("3 GPUs on this page"));
        assert!(html.contains("href=\"jobs/7\""));
        assert!(html.contains("&lt;b&gt;GPU&lt;/b&gt;"));
        assert!(!html.contains("<b>GPU") && !html.contains("b<i>"));
        assert!(html.contains("href=\"nodes/b&lt;i&gt;\""));
        assert!(html.contains("\"gpus?after=b"));
        // Each card has a memory sparkline scaled to the GPU's memory (its
        // text alternative is both the label and the title); without a
        // history, it is the latest heartbeat's value alone.
        let alt = "memory in use: 20480 MiB now; scale 0 to 80.0 GiB; 1 samples";
        assert_eq!(html.matches(alt).count(), 6, "{html}");
    }

    #[test]
    fn gpu_cards_draw_memory_utilisation_and_temperature_history() {
        let n = lab_node("a", "healthy", &[None]);
        let hist = NodeHistory {
            name: "a".into(),
            every_secs: 30,
            samples: (0..31)
                .map(|i| proto::GpuSample {
                    at: 1000 + 30 * i,
                    gpus: vec![proto::GpuPoint {
                        index: 0,
                        util_pct: 50,
                        temp_c: 60,
                        mem_used_mib: 40 * 1024,
                    }],
                })
                .collect(),
        };
        let html = gpus(&[n], &[], &[hist], &HashMap::new(), 1900, None);
        // 31 samples, then the latest heartbeat (20 GiB, 40 %, 0 °C) now.
        let alts = [
            "memory in use: 20480 MiB now; scale 0 to 80.0 GiB; 32 samples over 15m 00s",
            "utilisation: 40 % now; scale 0 to 100 %",
            "temperature: 0 °C now; scale 0 to 100 °C",
        ];
        for alt in alts {
            assert!(html.contains(alt), "{alt}: {html}");
        }
        assert_eq!(html.matches(">-15m</text>").count(), 3, "{html}");
        // Half the memory: the line is halfway up (y 18 of 4..32), then
        // a quarter at the end (y 25).
        assert!(html.contains("points=\"50,18 55,18"), "{html}");
        assert!(html.contains("210,18 216,25\""), "{html}");
    }

    #[test]
    fn unconfirmed_gpus_are_neither_free_nor_counted() {
        let mut n = lab_node("a", "healthy", &[Some(3), None, None, None]);
        n.max_gpus = Some(2);
        let html = nodes(std::slice::from_ref(&n), &[], 0, None);
        assert!(html.contains("1 free of 2"), "{html}");
        assert!(html.contains("2 not confirmed"), "{html}");
        // The mean utilisation of the confirmed two (40 % and 50 %).
        assert!(html.contains("<td>45 %</td>"), "{html}");
        let cards = gpus(std::slice::from_ref(&n), &[], &[], &HashMap::new(), 0, None);
        assert_eq!(
            cards.matches("tag-unconfirmed\">unconfirmed").count(),
            2,
            "{cards}"
        );
        assert_eq!(cards.matches("holder free").count(), 1, "{cards}");
        // A degraded node: its lost GPU shows why, its healthy one serves.
        let mut d = lab_node("a", "degraded", &[None, None]);
        d.max_gpus = Some(2);
        let health = vec![(
            "a".to_string(),
            vec![
                GpuHealth::Unhealthy("lost: <gone>".into()),
                GpuHealth::Healthy,
            ],
        )];
        let cards = gpus(
            std::slice::from_ref(&d),
            &health,
            &[],
            &HashMap::new(),
            0,
            None,
        );
        assert_eq!(
            cards.matches("tag-unhealthy\">unhealthy").count(),
            1,
            "{cards}"
        );
        assert!(
            cards.contains("<p class=\"fault\">lost: &lt;gone&gt;</p>"),
            "{cards}"
        );
        assert_eq!(cards.matches("holder free").count(), 1, "{cards}");
        // The node list counts the lost GPU as routing does, and says why
        // (the node's words escaped); another node's health is not its.
        let list = nodes(std::slice::from_ref(&d), &health, 0, None);
        assert!(list.contains("<td>1 free of 2 (GPU 0 lost)</td>"), "{list}");
        let other = vec![("b".to_string(), health[0].1.clone())];
        let list = nodes(std::slice::from_ref(&d), &other, 0, None);
        assert!(list.contains("<td>2 free of 2</td>"), "{list}");
        let evil = vec![(
            "a".to_string(),
            vec![GpuHealth::Healthy, GpuHealth::Unhealthy("<b>x: y".into())],
        )];
        let list = nodes(std::slice::from_ref(&d), &evil, 0, None);
        assert!(
            list.contains("<td>1 free of 2 (GPU 1 &lt;b&gt;x)</td>"),
            "{list}"
        );
        // Without per-GPU health (an older node), every card follows the node.
        let cards = gpus(std::slice::from_ref(&d), &[], &[], &HashMap::new(), 0, None);
        assert_eq!(
            cards.matches("tag-unhealthy\">unhealthy").count(),
            2,
            "{cards}"
        );
        n.max_gpus = None;
        let none = nodes(std::slice::from_ref(&n), &[], 0, None);
        assert!(
            none.contains("0 free of 0, ") && none.contains("4 not confirmed"),
            "{none}"
        );
    }

    #[test]
    fn the_node_list_shows_health_labels_load_memory_and_heartbeat() {
        let mut a = lab_node("a", "degraded", &[None, None]);
        a.labels = vec!["gpu".into()];
        a.proposed_labels = vec!["<fast>".into()];
        a.health_reason = Some("GPU 1 at 90 °C".into());
        let mut off = lab_node("off", "-", &[]);
        off.connection = "offline".into();
        off.telemetry = None;
        off.heartbeat_age_ms = None;
        off.last_seen = Some(940);
        let mut pending = lab_node("p", "-", &[]);
        pending.connection = "pending".into();
        pending.telemetry = None;
        pending.heartbeat_age_ms = None;
        let html = nodes(&[a, off, pending], &[], 1000, Some("p"));
        assert_eq!(html.matches("<tr><td class=\"node\">").count(), 3, "{html}");
        assert!(html.contains("href=\"nodes/a\""));
        assert!(html.contains("tag-degraded") && html.contains("GPU 1 at 90 °C"));
        assert!(
            html.contains(">gpu</span>") && html.contains("&lt;fast&gt;?"),
            "{html}"
        );
        assert!(!html.contains("<fast>"));
        assert!(html.contains("2 free of 2"));
        assert!(html.contains("<td>1.25</td>"), "{html}");
        assert!(html.contains("3.0 GiB of 16.0 GiB"), "{html}");
        assert!(html.contains("under 1s ago"));
        assert!(html.contains("tag-offline") && html.contains("last seen <time"));
        assert!(html.contains(">1m 00s ago<"), "{html}");
        assert!(html.contains("tag-pending"));
        assert!(html.contains("href=\"nodes?after=p\""));
        assert!(nodes(&[], &[], 0, None).contains("no nodes"));
    }

    #[test]
    fn a_node_page_has_its_facts_gpus_jobs_and_actions() {
        let mut n = lab_node("a", "healthy", &[Some(4), None]);
        n.labels = vec!["gpu".into()];
        n.proposed_labels = vec!["zone-x".into()];
        n.max_gpus = Some(2);
        n.cert_expires = Some(1_796_503_613);
        let mut j = job(4, "running", "a");
        j.gpus = 1;
        let mut holders = HashMap::new();
        holders.insert(4, j.clone());
        let html = node(
            &n,
            &[],
            None,
            &[j.clone()],
            &holders,
            "c5rf",
            1_796_500_000,
            true,
        );
        assert!(html.contains("<h1>Node a</h1>"));
        assert!(html.contains("1 free of 2"));
        assert!(html.contains("2 (confirmed)"));
        assert_eq!(html.matches("<article").count(), 2);
        assert!(html.contains("held by <a href=\"jobs/4\">job 4</a> of admin"));
        assert!(html.contains("href=\"jobs/4\">4</a>"), "{html}");
        assert!(html.contains("action=\"nodes/a/approve\""));
        assert!(html.contains("name=\"labels\" value=\"gpu\""), "{html}");
        assert!(html.contains("name=\"propose\" value=\"zone-x\""), "{html}");
        assert!(html.contains("name=\"gpus\" type=\"number\" min=\"0\" max=\"1024\" value=\"2\""));
        assert!(html.contains("action=\"nodes/a/revoke\""));
        assert!(html.contains("2026-12-05 20:46:53 UTC"), "{html}");
        let member = node(&n, &[], None, &[j], &holders, "c5rf", 1_796_500_000, false);
        assert!(member.contains("<h1>Node a</h1>") && member.contains("href=\"jobs/4\""));
        assert!(
            !member.contains("/approve") && !member.contains("/revoke"),
            "a lab member's page has no admin forms: {member}"
        );
        n.connection = "pending".into();
        let pending = node(&n, &[], None, &[], &HashMap::new(), "c5rf", 0, true);
        assert!(pending.contains("href=\"enrollments\"") && !pending.contains("/revoke"));
        let pending = node(&n, &[], None, &[], &HashMap::new(), "c5rf", 0, false);
        assert!(!pending.contains("href=\"enrollments\"") && pending.contains("an admin approves"));
    }
}
