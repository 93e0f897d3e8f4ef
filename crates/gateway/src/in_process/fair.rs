//! The fair-share queue, quotas and accounts (issue 24) with paused time:
//! turns alternate between accounts, a spent weekly budget is refused with
//! its reset time, projects admit only their members, and a reload
//! applies to waiting jobs.

use proto::{JobOption, JobSpec, JobState, Response};

use super::{secs, spec, start_job, wait_state};
use crate::harness::{FakePeer, Harness, frozen, set};

fn gpu_job() -> JobSpec {
    JobSpec {
        gpus: Some(1),
        queue_timeout_secs: Some(86_400),
        ..spec("worker-gpu-01", &["sleep", "1000"])
    }
}

/// Submits a job as `peer` with `options`; its id.
async fn submit(peer: &FakePeer, options: Vec<JobOption>) -> u64 {
    match peer.submit_with(gpu_job(), options).await {
        Response::Job(info) => info.id,
        other => panic!("submit: {other:?}"),
    }
}

/// Submits a job that the gateway refuses; the refusal.
async fn refused(peer: &FakePeer, options: Vec<JobOption>) -> String {
    match peer.submit_with(gpu_job(), options).await {
        Response::Error(e) => e.message,
        other => panic!("accepted: {other:?}"),
    }
}

/// Job `id`'s stored row.
async fn stored(h: &Harness, id: u64) -> crate::store::JobRow {
    frozen(crate::shared::off_runtime(&h.shared, move |s| {
        s.store.tx(|tx| tx.job(id))
    }))
    .await
    .unwrap()
    .unwrap()
    .expect("the job is stored")
}

fn quota(extra: &'static str) -> impl FnOnce(&mut String) {
    move |t: &mut String| set(t, "[limits]", &format!("{extra}\n\n[limits]"))
}

#[tokio::test(start_paused = true)]
async fn two_users_with_a_one_gpu_quota_take_alternating_turns() {
    let h = Harness::with_toml(quota("[quotas.default]\ngpus = 1")).await;
    let mut node = h.node("worker-gpu-01", 1).await;
    node.beat_every(secs(1));
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    // Alice queues three jobs before bob queues his three.
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(submit(&alice, vec![]).await);
    }
    let mut b = Vec::new();
    for _ in 0..3 {
        b.push(submit(&bob, vec![]).await);
    }
    // Each job holds the only GPU for ten minutes; the next goes to the
    // account that used less (first come, first served would run all of
    // alice's first).
    let want = [a[0], b[0], a[1], b[1], a[2], b[2]];
    let mut got = Vec::new();
    for _ in 0..want.len() {
        let plan = tokio::time::timeout(secs(5), node.next_job())
            .await
            .expect("a job is dispatched when the GPU frees");
        got.push(plan.job_id);
        let mut job = node.attach(plan.job_id).await;
        job.started().await;
        wait_state(&h, plan.job_id, JobState::Running).await;
        tokio::time::sleep(secs(600)).await;
        job.exit(0).await;
        wait_state(&h, plan.job_id, JobState::Exited).await;
    }
    assert_eq!(got, want, "alice {a:?}, bob {b:?}");
}

#[tokio::test(start_paused = true)]
async fn a_user_over_a_weekly_budget_is_refused_with_the_reset_time() {
    let h = Harness::with_toml(quota(
        "[quotas.users.\"user:alice\"]\ngpu_hours_per_week = 0.1",
    ))
    .await;
    let mut node = h.node("worker-gpu-01", 1).await;
    node.beat_every(secs(1));
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let first = submit(&alice, vec![]).await;
    let mut job = start_job(&h, &mut node, first).await;
    // Six GPU-minutes: the whole budget.
    tokio::time::sleep(secs(360)).await;
    job.exit(0).await;
    let ran = wait_state(&h, first, JobState::Exited).await;
    let started = ran.started_at.expect("it started");
    let why = refused(&alice, vec![]).await;
    assert!(
        why.contains("quotas.users.\"user:alice\".gpu_hours_per_week"),
        "{why}"
    );
    // There is room once the first second of the run leaves the window.
    let resets = proto::clock::Utc::from_unix(started + crate::fair::WEEK + 1).to_string();
    assert!(why.contains(&resets), "no {resets} in: {why}");
    // Bob has no budget of his own.
    let theirs = submit(&bob, vec![]).await;
    start_job(&h, &mut node, theirs).await;
}

#[tokio::test(start_paused = true)]
async fn a_project_admits_its_members_only() {
    let h = Harness::with_toml(quota("[projects.vision]\nmembers = [\"user:alice\"]")).await;
    let mut node = h.node("worker-gpu-01", 1).await;
    node.beat_every(secs(1));
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let vision = || vec![JobOption::Project("vision".into())];
    let why = refused(&bob, vision()).await;
    assert!(
        why.contains("user:bob is not a member of project vision"),
        "{why}"
    );
    let why = refused(&alice, vec![JobOption::Project("nlp".into())]).await;
    assert!(why.contains("there is no project \"nlp\""), "{why}");
    let id = submit(
        &alice,
        vec![
            JobOption::Project("vision".into()),
            JobOption::Priority(99),
            JobOption::Preemptible,
        ],
    )
    .await;
    let row = stored(&h, id).await;
    assert_eq!(row.requester, "user:alice");
    assert_eq!(row.project.as_deref(), Some("vision"));
    assert_eq!(row.priority, 10, "capped by fair_share.max_priority");
    assert!(row.preemptible);
}

#[tokio::test(start_paused = true)]
async fn a_reload_applies_to_waiting_jobs_and_a_bad_one_keeps_the_old() {
    let h = Harness::with_toml(quota("[quotas.default]\ngpus = 1")).await;
    let mut node = h.node("worker-gpu-01", 2).await;
    node.beat_every(secs(1));
    let alice = h.user("alice").await;
    let first = submit(&alice, vec![]).await;
    let _held = start_job(&h, &mut node, first).await;
    // A free GPU, but alice's quota is full: her second job waits.
    let second = submit(&alice, vec![]).await;
    tokio::time::sleep(secs(30)).await;
    assert_eq!(h.job(second).await.state, JobState::Queued.as_str());
    // A bad value is refused with its key; the old quota stays.
    let bad = h.reconfigure(|t| {
        set(
            t,
            "[quotas.default]\ngpus = 1",
            "[quotas.default]\ngpus = -2",
        )
    });
    let why = bad.expect_err("a negative quota is refused");
    assert!(why.contains("quotas.default.gpus: -2 is negative"), "{why}");
    assert_eq!(h.shared.config().fair.default_quota.gpus, Some(1));
    tokio::time::sleep(secs(30)).await;
    assert_eq!(h.job(second).await.state, JobState::Queued.as_str());
    // Raised: the waiting job starts.
    // (The bad edit is still in the file; the fix replaces it.)
    h.reconfigure(|t| {
        set(
            t,
            "[quotas.default]\ngpus = -2",
            "[quotas.default]\ngpus = 2",
        )
    })
    .unwrap();
    let plan = tokio::time::timeout(secs(5), node.next_job())
        .await
        .expect("the waiting job starts after the reload");
    assert_eq!(plan.job_id, second);
    // Lowered below what a waiting job asks for: it can never fit, and
    // ends saying which quota.
    let third = submit(&alice, vec![]).await;
    tokio::time::sleep(secs(5)).await;
    assert_eq!(h.job(third).await.state, JobState::Queued.as_str());
    h.reconfigure(|t| {
        set(
            t,
            "[quotas.default]\ngpus = 2",
            "[quotas.default]\ngpus = 0",
        )
    })
    .unwrap();
    let ended = h
        .within(
            "the waiting job that can never fit ends",
            secs(5),
            async || h.job(third).await.state == JobState::Failed.as_str(),
        )
        .await;
    assert!(ended <= secs(1), "ended {ended:?} after the reload");
    let why = h.job(third).await.reason.unwrap_or_default();
    assert!(why.contains("quotas.default.gpus allows 0"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn a_preemptible_job_is_stopped_for_an_under_share_account_and_queued_again() {
    let h = Harness::start().await;
    let mut node = h.node("worker-gpu-01", 1).await;
    node.beat_every(secs(1));
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let first = submit(&alice, vec![JobOption::Preemptible]).await;
    let mut running = start_job(&h, &mut node, first).await;
    // Alice has held the only GPU for an hour when bob's job comes.
    tokio::time::sleep(secs(3600)).await;
    let waiting = submit(&bob, vec![]).await;
    // Alice's job is told to stop (SIGTERM, SIGKILL after kill_grace).
    let told = tokio::time::timeout(secs(5), async {
        loop {
            match running.next_ctl().await {
                Some(proto::JobCtl::Cancel { grace_secs }) => return grace_secs,
                Some(_) => continue,
                None => panic!("the job stream ended without a cancel"),
            }
        }
    })
    .await
    .expect("the preemptible job is cancelled for bob's");
    assert_eq!(told, 10, "limits.kill_grace");
    running.exit_cancelled().await;
    let stopped = wait_state(&h, first, JobState::Cancelled).await;
    let reason = stopped.reason.unwrap_or_default();
    assert!(
        reason.contains(&format!("preempted for job {waiting} of user:bob")),
        "{reason}"
    );
    // Bob's job takes the GPU; alice's is queued again as a new attempt.
    let plan = tokio::time::timeout(secs(5), node.next_job())
        .await
        .expect("bob's job starts");
    assert_eq!(plan.job_id, waiting);
    let again = frozen(crate::shared::off_runtime(&h.shared, move |s| {
        s.store.tx(|tx| tx.unfinished_jobs())
    }))
    .await
    .unwrap()
    .unwrap()
    .into_iter()
    .find(|r| r.requeued_from == Some(first))
    .expect("a new attempt of the preempted job");
    assert_eq!(again.state, JobState::Queued);
    assert_eq!(again.requester, "user:alice");
    assert!(again.preemptible);
    assert_eq!(again.plan.argv, ["sleep", "1000"]);
}

async fn usage_of(peer: &FakePeer, by: proto::UsageBy) -> proto::UsageReport {
    match peer
        .call(proto::Request::Usage {
            since_secs: 7 * 86_400,
            by,
            on_behalf_of: None,
        })
        .await
    {
        Response::Usage(r) => r,
        other => panic!("usage: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn usage_totals_are_gpus_times_duration_of_the_ended_jobs_and_outlive_them() {
    let h = Harness::with_toml(|t| set(t, "jobs = \"90d\"", "jobs = \"1d\"")).await;
    let mut node = h.node("worker-gpu-01", 2).await;
    node.beat_every(secs(1));
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let mut ended = Vec::new();
    for (peer, gpus, run) in [(&alice, 2, 600), (&bob, 1, 90), (&alice, 1, 1234)] {
        let spec = JobSpec {
            gpus: Some(gpus),
            ..gpu_job()
        };
        let id = match peer.submit_with(spec, vec![]).await {
            Response::Job(info) => info.id,
            other => panic!("{other:?}"),
        };
        let mut job = start_job(&h, &mut node, id).await;
        tokio::time::sleep(secs(run)).await;
        job.exit(0).await;
        ended.push(wait_state(&h, id, JobState::Exited).await);
    }
    let want = |who: &str| -> u64 {
        ended
            .iter()
            .filter(|j| j.requester == who)
            .map(|j| (j.finished_at.unwrap() - j.started_at.unwrap()) * u64::from(j.gpus))
            .sum()
    };
    assert_eq!(
        want("user:alice"),
        2 * 600 + 1234,
        "the runs took their time"
    );
    let admin = h.admin().await;
    let all = usage_of(&admin, proto::UsageBy::User).await;
    let got = |r: &proto::UsageReport, who: &str| {
        r.lines.iter().find(|l| l.key == who).map(|l| l.gpu_seconds)
    };
    assert_eq!(got(&all, "user:alice"), Some(want("user:alice")));
    assert_eq!(got(&all, "user:bob"), Some(want("user:bob")));
    assert_eq!(all.lines.iter().map(|l| l.jobs).sum::<u64>(), 3);
    // /metrics counts the same per account.
    let page = frozen(crate::shared::off_runtime(&h.shared, |s| {
        crate::metrics::render(s)
    }))
    .await
    .unwrap();
    let line = format!(
        "openclaw_account_gpu_seconds_total{{account=\"user:alice\",project=\"\"}} {}",
        want("user:alice")
    );
    assert!(page.contains(&line), "no {line} in:\n{page}");
    // A member sees only their own.
    let own = usage_of(&bob, proto::UsageBy::User).await;
    assert!(own.own_only);
    assert_eq!(own.lines.len(), 1);
    assert_eq!(got(&own, "user:bob"), Some(want("user:bob")));
    // Past the jobs' retention the rows go, and the totals stay.
    tokio::time::sleep(secs(2 * 86_400)).await;
    frozen(crate::shared::off_runtime(&h.shared, |s| {
        crate::prune_once(s)
    }))
    .await
    .unwrap();
    let gone = frozen(crate::shared::off_runtime(&h.shared, move |s| {
        s.store.tx(|tx| tx.jobs(10, None))
    }))
    .await
    .unwrap()
    .unwrap();
    assert!(gone.is_empty(), "the jobs were pruned: {gone:?}");
    let later = usage_of(&admin, proto::UsageBy::User).await;
    assert_eq!(got(&later, "user:alice"), Some(want("user:alice")));
    assert_eq!(got(&later, "user:bob"), Some(want("user:bob")));
}

async fn queue(peer: &FakePeer) -> proto::QueueReport {
    match peer
        .call(proto::Request::Queue { on_behalf_of: None })
        .await
    {
        Response::Queue(q) => q,
        other => panic!("queue: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_queue_lists_waiting_jobs_in_fair_order_with_their_reasons() {
    let h = Harness::start().await;
    let mut node = h.node("worker-gpu-01", 1).await;
    node.beat_every(secs(1));
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let first = submit(&alice, vec![]).await;
    let _running = start_job(&h, &mut node, first).await;
    tokio::time::sleep(secs(600)).await;
    let a2 = submit(&alice, vec![]).await;
    let a3 = submit(&alice, vec![]).await;
    let b1 = submit(&bob, vec![]).await;
    let admin = h.admin().await;
    let all = queue(&admin).await;
    let ids: Vec<u64> = all.entries.iter().map(|e| e.id).collect();
    assert_eq!(ids, [b1, a2, a3], "bob used less");
    assert_eq!(all.total, 3);
    assert!(
        all.entries[0].reason.contains("waiting for capacity"),
        "{:?}",
        all.entries[0]
    );
    // Alice sees her own, at their places in the whole queue.
    let hers = queue(&alice).await;
    let mine: Vec<(u32, u64)> = hers.entries.iter().map(|e| (e.position, e.id)).collect();
    assert_eq!(mine, [(2, a2), (3, a3)]);
}

#[tokio::test(start_paused = true)]
async fn a_job_that_can_never_fit_or_would_wait_without_queue_is_refused_naming_the_quota() {
    let h = Harness::with_toml(quota("[quotas.default]\ngpus = 1\nqueued = 1")).await;
    let mut node = h.node("worker-gpu-01", 4).await;
    node.beat_every(secs(1));
    let alice = h.user("alice").await;
    let two = JobSpec {
        gpus: Some(2),
        ..gpu_job()
    };
    let why = match alice.submit_with(two, vec![]).await {
        Response::Error(e) => e.message,
        other => panic!("accepted: {other:?}"),
    };
    assert!(why.contains("quotas.default.gpus allows 1"), "{why}");
    let first = submit(&alice, vec![]).await;
    let _running = start_job(&h, &mut node, first).await;
    // Free GPUs, a full quota: without --queue it is refused, saying so.
    let now = JobSpec {
        queue_timeout_secs: None,
        ..gpu_job()
    };
    let why = match alice.submit_with(now, vec![]).await {
        Response::Error(e) => e.message,
        other => panic!("accepted: {other:?}"),
    };
    assert!(
        why.contains("quotas.default.gpus: 1 of 1 GPUs in use") && why.contains("pass --queue"),
        "{why}"
    );
    // One may wait; a second waiting job is over `queued`.
    let waits = submit(&alice, vec![]).await;
    assert_eq!(h.job(waits).await.state, JobState::Queued.as_str());
    let why = refused(&alice, vec![]).await;
    assert!(
        why.contains("quotas.default.queued: 1 of 1 jobs already waiting"),
        "{why}"
    );
}

/// A member told that another account's job is ahead of theirs learns
/// neither that job's number nor whose it is (row 118: a member sees their
/// own jobs only).
#[tokio::test(start_paused = true)]
async fn a_member_told_to_wait_for_another_accounts_job_is_not_told_whose() {
    let h = Harness::start().await;
    let mut node = h.node("worker-gpu-01", 2).await;
    node.beat_every(secs(1));
    let alice = h.user("alice").await;
    let first = submit(&alice, vec![]).await;
    let _running = start_job(&h, &mut node, first).await;
    // Bob's job waits ahead of alice's next one and could start on the
    // free GPU (written straight into the store, so no waiter takes the
    // GPU before alice asks).
    let mut bobs = stored(&h, first).await;
    bobs.id = 0;
    bobs.state = JobState::Queued;
    bobs.requester = "user:bob".into();
    bobs.created_at -= 60;
    bobs.started_at = None;
    let bob_id = frozen(crate::shared::off_runtime(&h.shared, move |s| {
        s.store.tx(|tx| tx.insert_job(&bobs))
    }))
    .await
    .unwrap()
    .unwrap();
    // Past the fair-share turn's cached read of the store.
    tokio::time::sleep(secs(3)).await;
    let now = JobSpec {
        queue_timeout_secs: None,
        ..gpu_job()
    };
    let why = match alice.submit_with(now, vec![]).await {
        Response::Error(e) => e.message,
        other => panic!("accepted: {other:?}"),
    };
    assert!(
        why.contains("ahead in the fair-share order") && why.contains("pass --queue"),
        "{why}"
    );
    assert!(
        !why.contains("bob") && !why.contains(&format!("job {bob_id} ")),
        "{why}"
    );
}

/// A fan-out's members are jobs of their requester like any other: a GPU
/// quota holds them too (a member with one GPU of quota may not take two
/// on every node by fanning out).
#[tokio::test(start_paused = true)]
async fn a_fan_out_is_held_to_its_requesters_gpu_quota() {
    let h = Harness::with_toml(quota("[quotas.default]\ngpus = 1")).await;
    let mut node = h.node("worker-gpu-01", 2).await;
    node.beat_every(secs(1));
    let alice = h.user("alice").await;
    let (fan, _events) = alice
        .fan_out(proto::FanOutSpec {
            job: JobSpec {
                argv: vec!["sleep".into(), "1000".into()],
                gpus: Some(2),
                ..JobSpec::default()
            },
            labels: Vec::new(),
            batch: None,
            output: false,
        })
        .await;
    assert_eq!(fan.members.len(), 1, "{fan:?}");
    let member = fan.members[0].job;
    let failed = wait_state(&h, member, JobState::Failed).await;
    let reason = failed.reason.unwrap_or_default();
    assert!(reason.contains("quotas.default.gpus"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn jobs_without_gpus_do_not_pile_up_in_the_fair_share_view() {
    // The fair share keeps its read of the store in memory between turns
    // and reads a week back. A soak running one CPU job a second grew it
    // by a row per job; only jobs with GPUs weigh in the fair share.
    let h = Harness::start().await;
    let mut node = h.node("worker-gpu-01", 1).await;
    node.beat_every(secs(1));
    let admin = h.admin().await;
    for _ in 0..5 {
        let cpu = JobSpec {
            gpus: None,
            ..spec("worker-gpu-01", &["true"])
        };
        let id = match admin.submit_with(cpu, vec![]).await {
            Response::Job(info) => info.id,
            other => panic!("submit: {other:?}"),
        };
        let mut job = start_job(&h, &mut node, id).await;
        job.exit(0).await;
        wait_state(&h, id, JobState::Exited).await;
    }
    // A GPU job's turn reads the view afresh (before it starts).
    let id = submit(&admin, vec![]).await;
    let _job = start_job(&h, &mut node, id).await;
    assert_eq!(
        h.shared.jobs.cached_usage_rows(),
        Some(0),
        "the fair share's view holds none of the five ended CPU jobs"
    );
}
