//! A node's liveness: heartbeats keep it connected; a silent node is
//! declared dead after `liveness.dead_after`, and a job it was running is
//! lost after `liveness.job_grace` unless the node re-attaches it.

use proto::{CloseCode, JobCtl, JobState, OutStream};

use super::{secs, spec, start_job, submit, wait_state};
use crate::harness::{FakeNode, Harness, frozen, set};

#[tokio::test(start_paused = true)]
async fn a_silent_node_goes_offline_and_its_job_is_lost_after_the_grace() {
    let h = Harness::with_toml(|t| set(t, "job_grace = \"15s\"", "job_grace = \"20s\"")).await;
    let mut node = h.node("worker-k", 0).await;
    node.beat_every(secs(1));
    let id = submit(&h, spec("worker-k", &["sleep", "100"])).await;
    let _job = start_job(&h, &mut node, id).await;

    // Nothing happens while heartbeats arrive: a minute later the node is
    // connected and its job runs.
    tokio::time::sleep(secs(60)).await;
    assert_eq!(h.connection("worker-k").await, "connected");
    assert_eq!(h.job(id).await.state, JobState::Running.as_str());
    assert!(node.peer.close_reason().is_none());

    // Killed: no heartbeat, no datagram. Still connected within
    // dead_after (3 s)...
    node.go_silent();
    tokio::time::sleep(secs(2)).await;
    assert!(
        node.peer.close_reason().is_none(),
        "{:?}",
        node.peer.close_reason()
    );
    // ...and closed as dead soon after.
    let detected = h
        .within("the reaper closes the silent node", secs(10), async || {
            node.peer.close_reason().is_some()
        })
        .await
        + secs(2);
    let why = node.peer.close_reason().unwrap_or_default();
    assert!(
        why.contains(&CloseCode::Dead.code().to_string()),
        "closed for another reason: {why}"
    );
    assert!(
        detected >= secs(3) && detected < secs(5),
        "declared dead after {detected:?}"
    );
    h.settle("the node is offline", || {
        h.shared.registry.connection("worker-k").is_none()
    })
    .await;
    assert_eq!(h.connection("worker-k").await, "offline");

    // Its job waits out the grace for a re-attachment, then is lost. The
    // clock moves a second at a time, and each step lets the gateway's
    // blocking work finish first: under load the grace's watch may be
    // armed a little after the node was found dead, and a paused clock
    // must not jump past it meanwhile.
    tokio::time::sleep(secs(15)).await;
    assert_eq!(h.job(id).await.state, JobState::Running.as_str());
    let mut waited = secs(15);
    let job = loop {
        let job = h.job(id).await;
        if JobState::parse(&job.state) == Some(JobState::Lost) {
            break job;
        }
        assert!(
            waited < secs(40),
            "job {id} not lost {waited:?} after its node went offline (grace 20 s): {job:?}"
        );
        tokio::time::sleep(secs(1)).await;
        waited += secs(1);
        for _ in 0..20 {
            tokio::task::yield_now().await;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    };
    assert!(waited >= secs(20), "lost before its grace: {waited:?}");
    let reason = job.reason.unwrap_or_default();
    assert!(reason.contains("did not re-attach"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn a_job_re_attached_within_the_grace_is_not_lost() {
    let h = Harness::start().await;
    let cert = h.enroll("worker-r", 0).await;
    let mut node = FakeNode::connect(&h, "worker-r", cert.clone(), 0).await;
    node.beat_every(secs(1));
    let id = submit(&h, spec("worker-r", &["sleep", "100"])).await;
    let mut job = start_job(&h, &mut node, id).await;
    job.output(OutStream::Stdout, 0, b"before\n").await;
    // The gateway acks once the bytes are in its log.
    loop {
        match frozen(job.next_ctl()).await {
            Some(JobCtl::Ack { stdout: 7, .. }) => break,
            Some(_) => continue,
            None => panic!("the job stream ended before the ack"),
        }
    }

    // The connection drops; the node comes back ten seconds later (the
    // grace is 15 s) and re-attaches the job where the gateway left off.
    node.peer.close();
    drop(job);
    drop(node);
    tokio::time::sleep(secs(10)).await;
    let mut node = FakeNode::connect(&h, "worker-r", cert, 0).await;
    node.beat_every(secs(1));
    let mut job = node.attach(id).await;
    assert_eq!(
        job.resume,
        JobCtl::Resume {
            stdout_from: 7,
            stderr_from: 0
        }
    );
    // Long past the grace of the first attachment, it still runs.
    tokio::time::sleep(secs(60)).await;
    assert_eq!(h.job(id).await.state, JobState::Running.as_str());
    job.output(OutStream::Stdout, 7, b"after\n").await;
    job.exit(0).await;
    wait_state(&h, id, JobState::Exited).await;
    let log = h.shared.logs_dir.join(format!("{id}.stdout"));
    assert_eq!(std::fs::read(log).unwrap(), b"before\nafter\n");
}
