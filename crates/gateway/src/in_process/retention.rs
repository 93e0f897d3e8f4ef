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
