//! `[retention]`: ended jobs, their logs and audit rows go once they are
//! older than their age, at the next sweep; a running job stays however
//! old it is.

use proto::{ErrorCode, JobState, OutStream, Request, Response};

use super::{secs, spec, start_job, submit, wait_state};
use crate::harness::{Harness, set};

#[tokio::test(start_paused = true)]
async fn attack_nothing_is_kept_for_ever_retention_prunes_jobs_and_logs() {
    let h = Harness::with_toml(|t| {
        set(t, "jobs = \"90d\"", "jobs = \"1h\"");
        set(t, "interval = \"1h\"", "interval = \"10m\"");
    })
    .await;
    let mut node = h.node("worker-cpu-01", 0).await;
    node.beat_every(secs(1));
    let old = submit(&h, spec("worker-cpu-01", &["echo", "old output"])).await;
    let mut job = start_job(&h, &mut node, old).await;
    job.output(OutStream::Stdout, 0, b"old output\n").await;
    job.exit(0).await;
    wait_state(&h, old, JobState::Exited).await;
    let log = h.shared.logs_dir.join(format!("{old}.stdout"));
    assert_eq!(std::fs::read(&log).unwrap(), b"old output\n");
    // A session's recording lies next to its log and goes with it.
    let cast = h.shared.logs_dir.join(format!("{old}.cast"));
    std::fs::write(&cast, b"{}\n").unwrap();
    // A long job stays while it runs, however old.
    let live = submit(&h, spec("worker-cpu-01", &["sleep", "100000"])).await;
    let _running = start_job(&h, &mut node, live).await;

    // Younger than an hour at every sweep so far: kept.
    tokio::time::sleep(secs(55 * 60)).await;
    assert_eq!(h.job(old).await.state, JobState::Exited.as_str());
    assert!(log.exists());
    // Pruned at the first sweep after it turned an hour old.
    h.within("the old job is pruned", secs(20 * 60), async || {
        matches!(
            h.call(Request::JobShow { id: old, on_behalf_of: None }).await,
            Response::Error(e) if e.code == ErrorCode::NotFound
        )
    })
    .await;
    assert!(!log.exists(), "the pruned job's log is gone");
    assert!(!cast.exists(), "the pruned job's recording is gone");
    assert_eq!(h.job(live).await.state, JobState::Running.as_str());
}

/// Everything a `JobAttach` follower hears: the output bytes and the last
/// event.
async fn attach(h: &Harness, id: u64) -> (Vec<u8>, proto::JobEvent) {
    let admin = h.admin().await;
    let (mut send, mut recv) = admin.open_bi().await;
    mesh::write_frame(
        &mut send,
        &proto::Open::Request(Request::JobAttach {
            id,
            follow: false,
            stdout_from: 0,
            stderr_from: 0,
            on_behalf_of: None,
        }),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    loop {
        match mesh::read_incoming::<proto::JobEvent>(&mut recv, proto::MAX_FRAME_LEN)
            .await
            .unwrap()
        {
            Some(mesh::Incoming::Data { len, .. }) => {
                mesh::read_data(&mut recv, len, |b| {
                    out.extend_from_slice(&b);
                    Ok(())
                })
                .await
                .unwrap();
            }
            Some(mesh::Incoming::Message(
                ev @ (proto::JobEvent::End(_) | proto::JobEvent::Error(_)),
            )) => return (out, ev),
            Some(mesh::Incoming::Message(_)) => {}
            None => panic!("the follower's stream ended without an end"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_log_is_gone_says_so_instead_of_printing_nothing() {
    let h = Harness::start().await;
    let mut node = h.node("worker-cpu-01", 0).await;
    node.beat_every(secs(1));
    let id = submit(&h, spec("worker-cpu-01", &["echo", "kept"])).await;
    let mut job = start_job(&h, &mut node, id).await;
    job.output(OutStream::Stdout, 0, b"kept\n").await;
    job.exit(0).await;
    wait_state(&h, id, JobState::Exited).await;
    let (out, end) = attach(&h, id).await;
    assert_eq!(out, b"kept\n");
    assert!(matches!(end, proto::JobEvent::End(_)), "{end:?}");
    // The log goes (a size cap, a logs directory this gateway does not
    // see): the follower hears why, naming the job, not an empty log.
    std::fs::remove_file(h.shared.logs_dir.join(format!("{id}.stdout"))).unwrap();
    let (out, end) = attach(&h, id).await;
    assert!(out.is_empty());
    match end {
        proto::JobEvent::Error(e) => assert!(
            e.message
                .contains(&format!("job {id}'s output is not all stored"))
                && e.message.contains("stdout: 0 of 5 bytes"),
            "{e:?}"
        ),
        other => panic!("expected an error, got {other:?}"),
    }
}
