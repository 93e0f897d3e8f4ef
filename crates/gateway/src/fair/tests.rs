//! Tables for the pure fair-share decisions.

use std::collections::BTreeMap;

use super::*;

const H: u64 = 3600;
const DAY: u64 = 86_400;

fn span(start: u64, end: u64, gpus: u32) -> Span {
    Span { start, end, gpus }
}

fn waiting(id: u64, account: &str, priority: i32, created_at: u64) -> Waiting {
    Waiting {
        id,
        account: account.into(),
        priority,
        created_at,
    }
}

fn usage(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(a, u)| (a.to_string(), *u)).collect()
}

#[test]
fn usage_halves_every_half_life() {
    let now = 100 * DAY;
    let fresh = decayed(&[span(now - H, now, 1)], now, 7 * DAY);
    assert!((fresh - 3600.0).abs() < 10.0, "{fresh}");
    // The same hour a half-life ago counts half; two GPUs count twice.
    let old = decayed(&[span(now - 7 * DAY - H, now - 7 * DAY, 2)], now, 7 * DAY);
    assert!((old - 3600.0).abs() < 10.0, "{old}");
    assert_eq!(decayed(&[], now, 7 * DAY), 0.0);
    assert_eq!(decayed(&[span(now - H, now, 0)], now, 7 * DAY), 0.0);
}

#[test]
fn the_week_counts_only_its_own_seconds() {
    let now = 30 * DAY;
    let spans = [
        span(now - 8 * DAY, now - 6 * DAY, 1), // one day inside
        span(now - H, now, 4),                 // four GPU-hours
    ];
    assert_eq!(in_week(&spans, now), DAY + 4 * H);
}

#[test]
fn a_spent_budget_resets_when_the_window_has_room() {
    let now = 30 * DAY;
    // Ten GPU-hours two days ago; a budget of ten: full until that
    // stretch starts to leave the window, five days from now.
    let spans = [span(now - 2 * DAY - 10 * H, now - 2 * DAY, 1)];
    let at = budget_resets(&spans, 10 * H, now).unwrap();
    assert_eq!(at, now - 2 * DAY - 10 * H + WEEK + 1);
    assert!(in_week(&spans, at) < 10 * H);
    assert!(in_week(&spans, at - 1) >= 10 * H);
    assert_eq!(budget_resets(&spans, 11 * H, now), None, "room left");
}

#[test]
fn the_queue_serves_the_least_used_account_then_priority_then_age() {
    let mut q = vec![
        waiting(1, "user:alice", 0, 10),
        waiting(2, "user:alice", 5, 20),
        waiting(3, "user:bob", 0, 30),
        waiting(4, "user:carol", 0, 5),
        waiting(5, "user:bob", 0, 25),
    ];
    let u = usage(&[
        ("user:alice", 100.0),
        ("user:bob", 10.0),
        ("user:carol", 500.0),
    ]);
    order(&mut q, &u);
    let ids: Vec<u64> = q.iter().map(|w| w.id).collect();
    assert_eq!(ids, [5, 3, 2, 1, 4]);
    // Equal usage: priority, then age, then id.
    let mut q = vec![
        waiting(7, "a", 0, 10),
        waiting(6, "b", 0, 10),
        waiting(8, "c", 1, 99),
    ];
    order(&mut q, &BTreeMap::new());
    let ids: Vec<u64> = q.iter().map(|w| w.id).collect();
    assert_eq!(ids, [8, 6, 7]);
}

#[test]
fn priorities_are_capped() {
    assert_eq!(cap_priority(100, 10), 10);
    assert_eq!(cap_priority(-100, 10), -10);
    assert_eq!(cap_priority(3, 10), 3);
    assert_eq!(cap_priority(3, 0), 0);
}

#[test]
fn quotas_wait_refuse_or_name_the_reset() {
    let now = 30 * DAY;
    let q = Quota {
        gpus: Some(2),
        jobs: Some(3),
        queued: None,
        gpu_hours_per_week: Some(10.0),
    };
    let k = "quotas.default";
    let none = Held::default();
    assert_eq!(check_quota(k, &q, none, 2, &[], now), Ok(()));
    match check_quota(k, &q, none, 3, &[], now) {
        Err(Refusal::Never(m)) => assert!(m.contains("quotas.default.gpus allows 2"), "{m}"),
        other => panic!("{other:?}"),
    }
    let one = Held { gpus: 1, jobs: 1 };
    match check_quota(k, &q, one, 2, &[], now) {
        Err(Refusal::Wait(m)) => assert!(m.contains("quotas.default.gpus: 1 of 2"), "{m}"),
        other => panic!("{other:?}"),
    }
    let three = Held { gpus: 0, jobs: 3 };
    assert!(matches!(
        check_quota(k, &q, three, 0, &[], now),
        Err(Refusal::Wait(_))
    ));
    let spent = [span(now - DAY - 10 * H, now - DAY, 1)];
    match check_quota(k, &q, none, 1, &spent, now) {
        Err(Refusal::Budget { what, resets_at }) => {
            assert!(what.contains("10.0 of 10 GPU-hours"), "{what}");
            assert_eq!(resets_at, now - DAY - 10 * H + WEEK + 1);
        }
        other => panic!("{other:?}"),
    }
    // A job without GPUs is not held to a GPU budget.
    assert_eq!(check_quota(k, &q, none, 0, &spent, now), Ok(()));
    let zero = Quota {
        jobs: Some(0),
        ..Quota::default()
    };
    assert!(matches!(
        check_quota(k, &zero, none, 0, &[], now),
        Err(Refusal::Never(_))
    ));
}

#[test]
fn a_preemptible_job_of_a_heavier_account_is_stopped_for_an_under_share_one() {
    let run = |id, account: &str, node: &str, gpus, preemptible, started| Running {
        id,
        account: account.into(),
        node: node.into(),
        gpus,
        preemptible,
        started,
    };
    let running = [
        run(1, "user:alice", "gpu-1", 1, true, 100),
        run(2, "user:alice", "gpu-1", 1, true, 200),
        run(3, "user:carol", "gpu-1", 1, false, 50),
        run(4, "user:dave", "gpu-2", 1, true, 50),
    ];
    let active: Vec<String> = ["user:alice", "user:bob", "user:carol", "user:dave"]
        .map(String::from)
        .to_vec();
    let u = usage(&[
        ("user:alice", 900.0),
        ("user:carol", 2000.0),
        ("user:dave", 5000.0),
    ]);
    let on_gpu1 = |n: &str| n == "gpu-1";
    // Carol used more but is not preemptible; dave's job is elsewhere:
    // alice's youngest goes.
    assert_eq!(
        victim("user:bob", 1, on_gpu1, &running, &active, &u),
        Some(2)
    );
    // Nothing fits two GPUs.
    assert_eq!(victim("user:bob", 2, on_gpu1, &running, &active, &u), None);
    // An account over its share stops nobody.
    assert_eq!(
        victim("user:dave", 1, |_| true, &running, &active, &u),
        None
    );
    // Nor does one that used more than the job's account.
    let u2 = usage(&[
        ("user:alice", 10.0),
        ("user:bob", 50.0),
        ("user:dave", 5000.0),
    ]);
    assert_eq!(victim("user:bob", 1, on_gpu1, &running, &active, &u2), None);
}

#[test]
fn charges_go_to_the_project_when_there_is_one() {
    let c = Charge {
        requester: "user:alice".into(),
        project: Some("vision".into()),
    };
    assert_eq!(c.account(), "project:vision");
    let c = Charge { project: None, ..c };
    assert_eq!(c.account(), "user:alice");
}

/// The three sections as `Config::parse` hands them over.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default)]
    fair_share: config::RawFairShare,
    #[serde(default)]
    projects: BTreeMap<String, config::RawProject>,
    #[serde(default)]
    quotas: config::RawQuotas,
}

fn parse(text: &str) -> Result<FairConfig, String> {
    let s: Sections = toml::from_str(text).map_err(|e| e.to_string())?;
    config::parse(s.fair_share, s.projects, s.quotas)
}

#[test]
fn the_sections_parse() {
    let cfg = parse(
        r#"
[fair_share]
half_life = "3d"
max_priority = 5

[projects.vision]
members = ["user:alice", "slack:T0123ABCD/U024BE7LH", "admin"]

[quotas.default]
gpus = 1
gpu_hours_per_week = 12.5

[quotas.users."user:alice"]
gpus = 4
jobs = 8
queued = 100
gpu_hours_per_week = 200

[quotas.projects.vision]
gpus = 8
"#,
    )
    .unwrap();
    let f = &cfg;
    assert_eq!(f.half_life.as_secs(), 3 * DAY);
    assert_eq!(f.max_priority, 5);
    assert_eq!(f.is_member("vision", "user:alice"), Some(true));
    assert_eq!(f.is_member("vision", "user:bob"), Some(false));
    assert_eq!(f.is_member("nlp", "user:alice"), None);
    assert_eq!(f.user_quota("user:alice").1.gpus, Some(4));
    let (key, q) = f.user_quota("user:bob");
    assert_eq!(key, "quotas.default");
    assert_eq!(q.gpu_hours_per_week, Some(12.5));
    assert_eq!(f.project_quota("vision").unwrap().1.gpus, Some(8));
    // Absent: no limits, a week's half-life.
    let plain = parse("").unwrap();
    assert_eq!(plain, FairConfig::default());
}

#[test]
fn bad_values_name_the_key_and_the_reason() {
    let cases = [
        (
            "[quotas.default]\ngpus = -1",
            "quotas.default.gpus: -1 is negative",
        ),
        (
            "[quotas.default]\njobs = 99999999",
            "quotas.default.jobs: 99999999 is more than",
        ),
        (
            "[quotas.default]\ngpu_hours_per_week = -3.5",
            "quotas.default.gpu_hours_per_week",
        ),
        (
            "[quotas.default]\ngpu_hours_per_week = \"lots\"",
            "is not a number of GPU-hours",
        ),
        (
            "[quotas.projects.nlp]\ngpus = 1",
            "quotas.projects.nlp: there is no project \"nlp\"",
        ),
        (
            "[projects.vision]\nmembers = [\"U024BE7LH\"]",
            "projects.vision.members: \"U024BE7LH\" is neither",
        ),
        ("[projects.vision]\nmembers = [\"user:*\"]", "is a pattern"),
        ("[quotas.users.\"U1\"]\ngpus = 1", "quotas.users.\"U1\""),
        ("[fair_share]\nhalf_life = \"1s\"", "fair_share.half_life"),
        ("[fair_share]\nmax_priority = -1", "fair_share.max_priority"),
        ("[projects.Vision]\nmembers = []", "projects.Vision"),
        ("[quotas.default]\ngpus_total = 1", "gpus_total"),
    ];
    for (text, want) in cases {
        match parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => assert!(e.contains(want), "{text}: {e}"),
        }
    }
}

mod usage {
    use proto::UsageBy;

    use crate::fair::usage::{Rolled, Used, days, lines, queue_points, roll_up};

    const DAY: u64 = 86_400;

    fn used(
        who: &str,
        project: Option<&str>,
        gpus: u32,
        models: &[&str],
        start: u64,
        end: u64,
    ) -> Used {
        Used {
            requester: who.into(),
            project: project.map(String::from),
            node: "gpu-1".into(),
            models: models.iter().map(|m| m.to_string()).collect(),
            gpus,
            created_at: start - 60,
            started_at: start,
            end,
        }
    }

    #[test]
    fn lines_sum_gpus_times_seconds_inside_the_window() {
        let t = 100 * DAY;
        let jobs = [
            used(
                "user:alice",
                Some("vision"),
                2,
                &["H100", "H100"],
                t,
                t + 3600,
            ),
            used("user:bob", None, 1, &[], t + 100, t + 200),
            // Started before the window: only its part inside counts, and
            // it is not counted as a job of the window.
            used("user:bob", None, 1, &["A100"], t - 1000, t + 1000),
        ];
        let by_user = lines(&jobs, &[], UsageBy::User, t, t + DAY);
        assert_eq!(by_user.len(), 2);
        assert_eq!(
            (by_user[0].key.as_str(), by_user[0].gpu_seconds),
            ("user:alice", 7200)
        );
        assert_eq!(by_user[0].jobs, 1);
        assert_eq!(by_user[0].wait_seconds, 60);
        assert_eq!((by_user[1].gpu_seconds, by_user[1].jobs), (100 + 1000, 1));
        let by_gpu = lines(&jobs, &[], UsageBy::Gpu, t, t + DAY);
        let keys: Vec<(&str, u64)> = by_gpu
            .iter()
            .map(|l| (l.key.as_str(), l.gpu_seconds))
            .collect();
        assert_eq!(keys, [("H100", 7200), ("A100", 1000), ("unknown", 100)]);
        let by_project = lines(&jobs, &[], UsageBy::Project, t, t + DAY);
        assert_eq!(by_project[0].key, "vision");
        assert_eq!(by_project[1].key, "-");
    }

    #[test]
    fn days_split_a_run_at_midnight_and_roll_ups_count_whole() {
        let t = 100 * DAY;
        let jobs = [used("user:alice", None, 1, &[], t - 600, t + 300)];
        let rolled = [Rolled {
            day: t - 5 * DAY,
            requester: "user:alice".into(),
            project: String::new(),
            node: "gpu-1".into(),
            model: "unknown".into(),
            gpu_seconds: 5000,
            jobs: 2,
            wait_seconds: 10,
        }];
        let d = days(&jobs, &rolled, UsageBy::User, t - 7 * DAY, t + 600);
        let got: Vec<(u64, u64)> = d.iter().map(|d| (d.day, d.gpu_seconds)).collect();
        assert_eq!(got, [(t - 5 * DAY, 5000), (t - DAY, 600), (t, 300)]);
        let l = lines(&jobs, &rolled, UsageBy::User, t - 7 * DAY, t + 600);
        assert_eq!((l[0].gpu_seconds, l[0].jobs), (5900, 3));
    }

    #[test]
    fn a_roll_up_keeps_the_totals() {
        let t = 100 * DAY;
        let jobs = [
            used("user:alice", None, 2, &["H100"], t, t + 100),
            used("user:alice", None, 2, &["H100"], t + 10, t + 20),
            used("user:bob", None, 0, &[], t, t + 50),
        ];
        let rolled = roll_up(&jobs);
        let total: u64 = rolled.iter().map(|r| r.gpu_seconds).sum();
        assert_eq!(total, 2 * 100 + 2 * 10);
        assert_eq!(rolled.iter().map(|r| r.jobs).sum::<u64>(), 3);
        let before = lines(&jobs, &[], UsageBy::User, t - DAY, t + DAY);
        let after = lines(&[], &rolled, UsageBy::User, t - DAY, t + DAY);
        assert_eq!(before, after);
    }

    #[test]
    fn the_queue_is_sampled_hourly_with_its_waits() {
        let t = 100 * DAY;
        let mut a = used("user:alice", None, 1, &[], t + 5400, t + 9000);
        a.created_at = t + 1800; // waited an hour
        let mut b = used("user:bob", None, 1, &[], t + 9000, t + 9500);
        b.created_at = t + 1000; // waited 8000 s
        let points = queue_points(&[a, b], &[t + 7000], t, t + 3 * 3600);
        let got: Vec<(u64, u32, u64)> = points
            .iter()
            .map(|p| (p.at - t, p.waiting, p.mean_wait_secs))
            .collect();
        assert_eq!(
            got,
            [(3600, 2, 0), (7200, 2, 3600), (10_800, 1, 8000)],
            "at 2h: bob waits and the job waiting now came; alice started"
        );
    }
}
