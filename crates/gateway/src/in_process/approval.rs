//! Jobs held by policy: an approval that never comes expires after
//! `policy.approval_timeout`, and nothing reaches the node meanwhile.

use std::time::Duration;

use proto::{JobState, Request, Response};

use super::{holding_policy, secs, spec, submit, wait_state};
use crate::harness::Harness;

#[tokio::test(start_paused = true)]
async fn approval_expires_and_self_approval_can_be_allowed() {
    let h = Harness::with_toml(holding_policy("2s")).await;
    let mut node = h.node("worker-gpu-01", 0).await;
    node.beat_every(secs(1));
    let id = submit(&h, spec("worker-gpu-01", &["true"])).await;
    assert_eq!(h.job(id).await.state, JobState::AwaitingApproval.as_str());
    // Held, not expired, a moment before the timeout.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(h.job(id).await.state, JobState::AwaitingApproval.as_str());
    let took = h
        .within("the held job expires", secs(5), async || {
            h.job(id).await.state == JobState::Expired.as_str()
        })
        .await;
    assert!(took < secs(2), "expired {took:?} after the check");
    let job = wait_state(&h, id, JobState::Expired).await;
    let reason = job.reason.unwrap_or_default();
    assert!(reason.contains("nobody approved it in time"), "{reason}");
    // Nothing was sent to the node, then or since.
    assert!(
        tokio::time::timeout(secs(30), node.next_job())
            .await
            .is_err(),
        "a job that was never approved reached the node"
    );

    // The requester may withdraw their own pending job.
    let id = submit(&h, spec("worker-gpu-01", &["true"])).await;
    let denied = h
        .call(Request::JobDeny {
            id,
            reason: None,
            on_behalf_of: None,
        })
        .await;
    assert!(!matches!(denied, Response::Error(_)), "{denied:?}");
    let job = h.job(id).await;
    assert_eq!(job.state, JobState::Denied.as_str());
    let reason = job.reason.unwrap_or_default();
    assert!(reason.starts_with("withdrawn by admin"), "{reason}");
}
