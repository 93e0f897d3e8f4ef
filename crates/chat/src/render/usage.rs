//! Chat answers for `usage` and `queue` (issue 24).

use proto::{QueueReport, UsageReport};

use super::Markup;

use proto::usage::gpu_hours as hours;

/// The answer to `usage`: GPU-hours and jobs per group.
pub fn usage(r: &UsageReport, m: &dyn Markup) -> String {
    if r.lines.is_empty() {
        return "No GPU use in the last 7 days.".into();
    }
    let mut out = if r.own_only {
        "Your GPU use in the last 7 days:".to_string()
    } else {
        "GPU use in the last 7 days:".to_string()
    };
    for l in &r.lines {
        out.push_str(&format!(
            "\n{}: {} GPU-hours, {} job{}",
            m.escape(&l.key),
            hours(l.gpu_seconds),
            l.jobs,
            if l.jobs == 1 { "" } else { "s" }
        ));
    }
    out
}

/// The answer to `queue`: the user's waiting jobs in the order the queue
/// serves them, with their places in the whole queue.
pub fn queue(q: &QueueReport, m: &dyn Markup) -> String {
    if q.entries.is_empty() {
        return format!("You have no waiting jobs ({} waiting in all).", q.total);
    }
    let mut out = format!(
        "Your waiting jobs, in queue order ({} waiting in all):",
        q.total
    );
    for e in &q.entries {
        out.push_str(&format!(
            "\n#{} job {} ({} GPU{}): {}",
            e.position,
            e.id,
            e.gpus,
            if e.gpus == 1 { "" } else { "s" },
            m.escape(&e.reason)
        ));
        if let Some(t) = e.estimated_start {
            out.push_str(&format!("; starts about {}", m.time(t, q.now)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proto::{QueueEntry, UsageBy, UsageLine};

    use super::*;
    use crate::render::tests::Plain;

    #[test]
    fn the_queue_names_places_reasons_and_starts() {
        let entry = |position, id| QueueEntry {
            position,
            id,
            requester: "slack:T1/U1".into(),
            project: None,
            gpus: 1,
            priority: 0,
            created_at: 0,
            reason: "waiting for capacity: <all busy>".into(),
            estimated_start: (id == 9).then_some(7_200),
        };
        let q = QueueReport {
            now: 3_600,
            entries: vec![entry(2, 7), entry(5, 9)],
            total: 6,
        };
        let text = queue(&q, &Plain);
        assert!(text.contains("(6 waiting in all)"), "{text}");
        let seven = text.find("#2 job 7").expect("job 7");
        let nine = text.find("#5 job 9").expect("job 9");
        assert!(seven < nine, "{text}");
        assert!(text.contains("&lt;all busy>"), "escaped: {text}");
        assert!(text.contains("starts about 02:00"), "{text}");
        let none = QueueReport {
            entries: vec![],
            ..q
        };
        assert!(queue(&none, &Plain).contains("no waiting jobs"));
    }

    #[test]
    fn usage_is_hours_and_jobs() {
        let r = UsageReport {
            since: 0,
            until: 1,
            by: UsageBy::User,
            lines: vec![UsageLine {
                key: "slack:T1/U1".into(),
                gpu_seconds: 5_400,
                jobs: 1,
                wait_seconds: 0,
            }],
            days: vec![],
            own_only: true,
            queue: vec![],
        };
        let text = usage(&r, &Plain);
        assert!(text.contains("Your GPU use"), "{text}");
        assert!(text.contains("slack:T1/U1: 1.5 GPU-hours, 1 job"), "{text}");
    }
}
