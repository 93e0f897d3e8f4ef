//! The usage page (issue 24): GPU-hours per account per day as stacked
//! bars, the queue's length and mean wait over the week as lines, and the
//! queue in the order it is served with each job's reason for waiting.
//! Server-rendered SVG, no script.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use proto::{QueuePoint, QueueReport, UsageReport};

use super::{ago, esc};

/// Chart size and plot area, in SVG units.
const W: u64 = 640;
const H: u64 = 180;
const LEFT: u64 = 56;
const RIGHT: u64 = 630;
const TOP: u64 = 8;
const BOTTOM: u64 = 150;

/// Colours for accounts, in turn (readable on white, told apart in grey).
const COLOURS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

use proto::usage::gpu_hours as hours;

/// A round top for an axis at or above `max`.
fn nice(max: u64) -> u64 {
    let max = max.max(1);
    let mut step: u64 = 1;
    while step.saturating_mul(10) < max {
        step *= 10;
    }
    max.div_ceil(step).saturating_mul(step)
}

/// GPU-hours per account per day: one stacked bar per day, a legend, and
/// a text alternative that lists every number.
pub fn day_bars(r: &UsageReport) -> String {
    let mut days: BTreeMap<u64, Vec<(&str, u64)>> = BTreeMap::new();
    for d in &r.days {
        days.entry(d.day).or_default().push((&d.key, d.gpu_seconds));
    }
    let keys: Vec<&str> = r.lines.iter().map(|l| l.key.as_str()).collect();
    let colour = |k: &str| {
        let i = keys.iter().position(|x| *x == k).unwrap_or(0);
        COLOURS[i % COLOURS.len()]
    };
    if days.is_empty() {
        return "<p class=\"empty\">No GPU use in this window.</p>".into();
    }
    let top = nice(
        days.values()
            .map(|v| v.iter().map(|(_, s)| s).sum::<u64>())
            .max()
            .unwrap_or(0)
            / 3600
            + 1,
    );
    let first = r.since - r.since % 86_400;
    let n = (r.until.saturating_sub(first) / 86_400 + 1).max(1);
    let slot = ((RIGHT - LEFT) / n).max(1);
    let bar = (slot * 3 / 4).max(2);
    let mut bars = String::new();
    let mut alt = Vec::new();
    for (day, parts) in &days {
        let i = (day.saturating_sub(first)) / 86_400;
        let x = LEFT + i * slot + slot.saturating_sub(bar) / 2;
        let mut y = BOTTOM;
        let date = proto::clock::Utc::from_unix(*day).date();
        for (k, s) in parts {
            let h = s * (BOTTOM - TOP) / (top * 3600);
            y = y.saturating_sub(h);
            let _ = write!(
                bars,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{h}\" fill=\"{c}\"><title>{date} {k}: {v} GPU-hours</title></rect>",
                c = colour(k),
                k = esc(k),
                v = hours(*s),
            );
            alt.push(format!("{date} {k}: {} GPU-hours", hours(*s)));
        }
        let _ = write!(
            bars,
            "<text class=\"x\" x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\">{md}</text>",
            cx = x + bar / 2,
            ty = BOTTOM + 14,
            md = esc(date.get(5..).unwrap_or(&date)),
        );
    }
    let legend: String = keys
        .iter()
        .map(|k| {
            format!(
                "<li><svg class=\"swatch\" width=\"12\" height=\"12\" viewBox=\"0 0 12 12\" aria-hidden=\"true\"><rect width=\"12\" height=\"12\" rx=\"2\" fill=\"{}\"/></svg>{}</li>",
                colour(k),
                esc(k)
            )
        })
        .collect();
    format!(
        "<svg class=\"chart\" id=\"usage-chart\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{a}\">\
         <title>{a}</title>\
         <path class=\"axis\" d=\"M{LEFT} {TOP}V{BOTTOM}H{RIGHT}\" fill=\"none\"/>\
         <text class=\"y\" x=\"{ly}\" y=\"{ty}\" text-anchor=\"end\">{top} h</text>\
         <text class=\"y\" x=\"{ly}\" y=\"{BOTTOM}\" text-anchor=\"end\">0</text>\
         {bars}</svg><ul class=\"legend\">{legend}</ul>",
        a = esc(&format!(
            "GPU-hours per account per day: {}",
            alt.join("; ")
        )),
        ly = LEFT - 4,
        ty = TOP + 8,
    )
}

/// A line chart of `values` over the window, 0 to its rounded maximum.
fn line_chart(
    id: &str,
    label: &str,
    unit: &str,
    values: &[(u64, u64)],
    since: u64,
    until: u64,
) -> String {
    let top = nice(values.iter().map(|(_, v)| *v).max().unwrap_or(0));
    let span = until.saturating_sub(since).max(1);
    let points: String = values
        .iter()
        .map(|(t, v)| {
            let x = LEFT + t.saturating_sub(since).min(span) * (RIGHT - LEFT) / span;
            let y = BOTTOM - v.min(&top) * (BOTTOM - TOP) / top;
            format!("{x},{y} ")
        })
        .collect();
    let now = values.last().map_or(0, |(_, v)| *v);
    let a = format!(
        "{label}: {now} {unit} now; scale 0 to {top} {unit}; {} samples over {}",
        values.len(),
        super::span(span)
    );
    format!(
        "<svg class=\"chart\" id=\"{id}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{a}\">\
         <title>{a}</title>\
         <path class=\"axis\" d=\"M{LEFT} {TOP}V{BOTTOM}H{RIGHT}\" fill=\"none\"/>\
         <text class=\"y\" x=\"{ly}\" y=\"{ty}\" text-anchor=\"end\">{top} {unit}</text>\
         <text class=\"y\" x=\"{ly}\" y=\"{BOTTOM}\" text-anchor=\"end\">0</text>\
         <text class=\"x\" x=\"{LEFT}\" y=\"{xy}\" text-anchor=\"start\">-{ago}</text>\
         <text class=\"x\" x=\"{RIGHT}\" y=\"{xy}\" text-anchor=\"end\">now</text>\
         <polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{p}\"/></svg>",
        a = esc(&a),
        ly = LEFT - 4,
        ty = TOP + 8,
        xy = BOTTOM + 14,
        ago = super::span(span),
        p = points.trim_end(),
        unit = esc(unit),
    )
}

/// The queue's length and mean wait over the window.
pub fn queue_lines(points: &[QueuePoint], since: u64, until: u64) -> String {
    let len: Vec<(u64, u64)> = points
        .iter()
        .map(|p| (p.at, u64::from(p.waiting)))
        .collect();
    let wait: Vec<(u64, u64)> = points
        .iter()
        .map(|p| (p.at, p.mean_wait_secs / 60))
        .collect();
    format!(
        "{}{}",
        line_chart("queue-length", "Jobs waiting", "jobs", &len, since, until),
        line_chart(
            "queue-wait",
            "Mean wait of the jobs that started",
            "min",
            &wait,
            since,
            until
        )
    )
}

/// The queue, in the order it is served.
pub fn queue_table(q: &QueueReport) -> String {
    let rows: String = q
        .entries
        .iter()
        .map(|e| {
            format!(
                "<tr data-job=\"{id}\"><td>{pos}</td><td><a href=\"jobs/{id}\">{id}</a></td><td>{who}</td><td>{proj}</td>\
                 <td>{gpus}</td><td>{prio}</td><td>{queued}</td><td>{start}</td><td class=\"reason\">{why}</td></tr>",
                pos = e.position,
                id = e.id,
                who = esc(&e.requester),
                proj = esc(e.project.as_deref().unwrap_or("-")),
                gpus = e.gpus,
                prio = e.priority,
                queued = ago(e.created_at, q.now),
                start = e.estimated_start.map_or_else(
                    || "-".into(),
                    |t| proto::clock::Utc::from_unix(t).to_string()
                ),
                why = esc(&e.reason),
            )
        })
        .collect();
    format!(
        "<table class=\"list\" id=\"queue\"><caption>{n} jobs waiting, in the order they are served</caption><thead><tr>\
         <th scope=\"col\">#</th><th scope=\"col\">id</th><th scope=\"col\">requester</th><th scope=\"col\">project</th>\
         <th scope=\"col\">GPUs</th><th scope=\"col\">priority</th><th scope=\"col\">queued</th>\
         <th scope=\"col\">start (estimate)</th><th scope=\"col\">waiting for</th></tr></thead><tbody>{rows}</tbody></table>",
        n = q.total,
    )
}

/// The whole usage page.
pub fn usage(r: &UsageReport, q: &QueueReport) -> String {
    let totals: String = r
        .lines
        .iter()
        .map(|l| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&l.key),
                hours(l.gpu_seconds),
                l.jobs
            )
        })
        .collect();
    format!(
        "<h1>Usage</h1>\
         <h2>Queue</h2>{queue}\
         <h2>GPU-hours per account per day</h2>{bars}\
         <table class=\"list\" id=\"usage-totals\"><caption>the last 7 days{own}</caption><thead><tr>\
         <th scope=\"col\">account</th><th scope=\"col\">GPU-hours</th><th scope=\"col\">jobs</th></tr></thead>\
         <tbody>{totals}</tbody></table>\
         <h2>Queue length and wait</h2>{lines}",
        queue = queue_table(q),
        bars = day_bars(r),
        own = if r.own_only { ", your jobs only" } else { "" },
        lines = queue_lines(&r.queue, r.since, r.until),
    )
}

#[cfg(test)]
mod tests {
    use proto::{QueueEntry, UsageBy, UsageDay, UsageLine};

    use super::*;

    const DAY: u64 = 86_400;

    fn report() -> UsageReport {
        let t = 100 * DAY;
        UsageReport {
            since: t - 7 * DAY,
            until: t + 3600,
            by: UsageBy::User,
            lines: vec![
                UsageLine {
                    key: "user:alice".into(),
                    gpu_seconds: 7200,
                    jobs: 2,
                    wait_seconds: 0,
                },
                UsageLine {
                    key: "<bob>".into(),
                    gpu_seconds: 3600,
                    jobs: 1,
                    wait_seconds: 0,
                },
            ],
            days: vec![
                UsageDay {
                    day: t - DAY,
                    key: "user:alice".into(),
                    gpu_seconds: 7200,
                },
                UsageDay {
                    day: t,
                    key: "<bob>".into(),
                    gpu_seconds: 3600,
                },
            ],
            own_only: false,
            queue: vec![
                QueuePoint {
                    at: t - 3600,
                    waiting: 3,
                    mean_wait_secs: 600,
                },
                QueuePoint {
                    at: t + 3600,
                    waiting: 1,
                    mean_wait_secs: 60,
                },
            ],
        }
    }

    #[test]
    fn bars_stack_per_day_with_a_legend_and_every_number_in_words() {
        let svg = day_bars(&report());
        assert_eq!(svg.matches("<rect x=").count(), 2, "{svg}");
        assert!(svg.contains("user:alice: 2.0 GPU-hours"), "{svg}");
        assert!(svg.contains("&lt;bob&gt;: 1.0 GPU-hours"), "escaped: {svg}");
        assert!(!svg.contains("<bob>"), "{svg}");
        assert!(svg.contains("class=\"swatch\""), "{svg}");
        // The top of the axis is a round number at or above the tallest day.
        assert!(svg.contains(">3 h</text>"), "{svg}");
        let none = UsageReport {
            days: vec![],
            ..report()
        };
        assert!(day_bars(&none).contains("No GPU use"));
    }

    #[test]
    fn queue_lines_scale_and_say_the_latest_value() {
        let r = report();
        let svg = queue_lines(&r.queue, r.since, r.until);
        assert!(
            svg.contains("Jobs waiting: 1 jobs now; scale 0 to 3 jobs"),
            "{svg}"
        );
        assert!(
            svg.contains("Mean wait of the jobs that started: 1 min now; scale 0 to 10 min"),
            "{svg}"
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
    }

    #[test]
    fn the_queue_table_keeps_the_order_and_escapes_reasons() {
        let entry = |position, id| QueueEntry {
            position,
            id,
            requester: "user:alice".into(),
            project: None,
            gpus: 1,
            priority: 0,
            created_at: 0,
            reason: "waiting for <capacity>".into(),
            estimated_start: None,
        };
        let q = QueueReport {
            now: 60,
            entries: vec![entry(1, 9), entry(2, 4)],
            total: 2,
        };
        let html = queue_table(&q);
        let nine = html.find("data-job=\"9\"").unwrap();
        let four = html.find("data-job=\"4\"").unwrap();
        assert!(nine < four, "{html}");
        assert!(html.contains("waiting for &lt;capacity&gt;"), "{html}");
    }
}
