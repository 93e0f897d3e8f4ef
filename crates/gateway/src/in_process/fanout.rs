//! A fan-out held by policy is decided as a whole: when nobody approves
//! it within `policy.approval_timeout`, every member expires together,
//! and none reaches its node.

use std::time::Duration;

use proto::{FanOutSpec, JobSpec, JobState};

use super::{holding_policy, secs, wait_state};
use crate::harness::Harness;

#[tokio::test(start_paused = true)]
async fn a_held_fan_out_expires_as_a_whole_and_reaches_no_node() {
    let h = Harness::with_toml(holding_policy("2s")).await;
    let mut a = h.node("worker-gpu-01", 0).await;
    a.beat_every(secs(1));
    let mut b = h.node("worker-gpu-02", 0).await;
    b.beat_every(secs(1));
    let admin = h.admin().await;
    let (fan, _events) = admin
        .fan_out(FanOutSpec {
            job: JobSpec {
                argv: vec!["true".into()],
                ..JobSpec::default()
            },
            labels: Vec::new(),
            batch: None,
            output: false,
        })
        .await;
    let members: Vec<u64> = fan.members.iter().map(|m| m.job).collect();
    assert_eq!(members.len(), 2, "{fan:?}");
    for id in &members {
        assert_eq!(h.job(*id).await.state, JobState::AwaitingApproval.as_str());
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for id in &members {
        assert_eq!(h.job(*id).await.state, JobState::AwaitingApproval.as_str());
    }
    let took = h
        .within("every member expires", secs(5), async || {
            let mut all = true;
            for id in &members {
                all &= h.job(*id).await.state == JobState::Expired.as_str();
            }
            all
        })
        .await;
    assert!(took < secs(2), "expired {took:?} after the check");
    for id in &members {
        let reason = wait_state(&h, *id, JobState::Expired).await.reason;
        let reason = reason.unwrap_or_default();
        assert!(
            reason.contains("nobody approved the fan-out in time"),
            "{reason}"
        );
    }
    for node in [&mut a, &mut b] {
        assert!(
            tokio::time::timeout(secs(30), node.next_job())
                .await
                .is_err(),
            "a member of an expired fan-out reached {}",
            node.name
        );
    }
}
