//! The gateway in process with tokio's paused clock ([`crate::harness`]):
//! its timers (dead nodes, job grace, approval and queue expiry,
//! retention, enrollment rate) tested without waiting for real time.
//! What only real processes show (QUIC and mTLS, network namespaces, HA
//! failover, install, the browser) stays in `tests/it`.

mod approval;
mod artifacts;
mod fair;
mod fanout;
mod identity;
mod limits;
mod liveness;
mod queue;
mod retention;

use std::time::Duration;

use proto::{JobSpec, JobState};

use crate::harness::{FakeNode, Harness, set};

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A job for `node` running `argv`, as `openclaw run --node` sends it.
pub(super) fn spec(node: &str, argv: &[&str]) -> JobSpec {
    JobSpec {
        node: Some(node.to_string()),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        ..JobSpec::default()
    }
}

/// Submits a job as the admin and returns its id (`openclaw run --detach`).
pub(super) async fn submit(h: &Harness, spec: JobSpec) -> u64 {
    let admin = h.admin().await;
    let (info, _events) = admin.run(spec).await;
    admin.close();
    info.id
}

/// Runs job `id` on `node` up to its start: the dispatch, the report
/// stream, `Started`, and the gateway's record of it.
pub(super) async fn start_job(
    h: &Harness,
    node: &mut FakeNode,
    id: u64,
) -> crate::harness::FakeJob {
    let plan = node.next_job().await;
    assert_eq!(plan.job_id, id);
    let mut job = node.attach(id).await;
    assert!(
        matches!(job.resume, proto::JobCtl::Resume { .. }),
        "{:?}",
        job.resume
    );
    job.started().await;
    wait_state(h, id, JobState::Running).await;
    job
}

/// Waits, without moving the clock, until job `id` is in `state`.
pub(super) async fn wait_state(h: &Harness, id: u64, state: JobState) -> proto::JobInfo {
    for _ in 0..20_000 {
        let job = h.job(id).await;
        if JobState::parse(&job.state) == Some(state) {
            return job;
        }
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("job {id} never became {state}: {:?}", h.job(id).await);
}

/// A policy that holds every job on `worker-gpu-*` for an approver
/// (`tests/it/jobs.rs`'s `policy_lab`, in one edit).
pub(super) fn holding_policy(timeout: &str) -> impl FnOnce(&mut String) {
    let timeout = timeout.to_string();
    move |t: &mut String| {
        set(
            t,
            "approval_timeout = \"1h\"",
            &format!("approval_timeout = \"{timeout}\""),
        );
        set(
            t,
            "[limits]",
            "[[policy.rules]]\nnodes = [\"worker-gpu-*\"]\naction = \"approve\"\napprovers = [\"admin\", \"alice\"]\n\n[limits]",
        );
    }
}
