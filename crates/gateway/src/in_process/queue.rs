//! A job queued for capacity (`--queue`): it starts when capacity frees,
//! and gives up after its queue timeout, never before.

use proto::{JobSpec, JobState};

use super::{secs, spec, start_job, submit, wait_state};
use crate::harness::Harness;

fn gpu_job(queue_secs: Option<u64>) -> JobSpec {
    JobSpec {
        gpus: Some(1),
        queue_timeout_secs: queue_secs,
        ..spec("worker-gpu-01", &["sleep", "1000"])
    }
}

#[tokio::test(start_paused = true)]
async fn a_queued_job_starts_when_capacity_frees_and_expires_after_its_timeout() {
    let h = Harness::start().await;
    let mut node = h.node("worker-gpu-01", 1).await;
    node.beat_every(secs(1));
    let holder = submit(&h, gpu_job(None)).await;
    let mut held = start_job(&h, &mut node, holder).await;

    // The only GPU is taken: a second GPU job queues for 30 s, then gives up.
    let queued = submit(&h, gpu_job(Some(30))).await;
    assert_eq!(h.job(queued).await.state, JobState::Queued.as_str());
    tokio::time::sleep(secs(28)).await;
    assert_eq!(h.job(queued).await.state, JobState::Queued.as_str());
    let took = h
        .within("the queued job gives up", secs(5), async || {
            h.job(queued).await.state == JobState::Expired.as_str()
        })
        .await;
    assert!(took <= secs(3), "expired {took:?} after 28 s");
    let job = wait_state(&h, queued, JobState::Expired).await;
    let reason = job.reason.unwrap_or_default();
    assert!(reason.contains("gave up waiting for capacity"), "{reason}");
    assert!(
        tokio::time::timeout(secs(10), node.next_job())
            .await
            .is_err(),
        "an expired queued job reached the node"
    );

    // Another waits while the GPU is held, and starts as soon as it frees.
    let next = submit(&h, gpu_job(Some(600))).await;
    tokio::time::sleep(secs(120)).await;
    assert_eq!(h.job(next).await.state, JobState::Queued.as_str());
    held.exit(0).await;
    wait_state(&h, holder, JobState::Exited).await;
    let plan = tokio::time::timeout(secs(2), node.next_job())
        .await
        .expect("the queued job is dispatched when the GPU frees");
    assert_eq!(plan.job_id, next);
}
