//! Failures: a gateway killed mid-job, a network cut between node and
//! gateway, a node killed outright. No byte of output may be lost or
//! duplicated, and the end of a job must be recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use testkit::{Lab, UdpProxy, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(60);

/// Prints `seq 1 200000` in 20 slices with pauses: about two seconds.
const SEQ_JOB: &str = "for i in $(seq 1 20); do seq $(( (i-1)*10000+1 )) $(( i*10000 )); sleep 0.1; done; echo finished >&2; exit 7";

fn want_seq() -> String {
    (1..=200_000).map(|i| format!("{i}\n")).collect()
}

#[test]
fn gateway_sigkill_mid_job_loses_and_duplicates_nothing() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-a", "cpu", 0);
    let gw = lab.gw_home.clone();
    let follower = lab.spawn(
        &gw,
        &["run", "--node", "worker-a", "--", "sh", "-c", SEQ_JOB],
    );
    // Kill the gateway once output is flowing, and again right after it is back.
    wait_until(T, "output to flow", || {
        let list: serde_json::Value =
            serde_json::from_str(&lab.admin(&["job", "list", "--json"]).ok().stdout).unwrap();
        list.as_array()
            .unwrap()
            .first()
            .filter(|j| j["stdout_bytes"].as_u64() > Some(10_000))
            .map(|_| ())
    });
    lab.stop_gateway(true);
    lab.start_gateway();
    lab.stop_gateway(true);
    lab.start_gateway();

    let out = follower.wait(T);
    assert_eq!(out.code, 7, "the remote exit code survives: {}", out.stderr);
    assert!(
        out.stdout == want_seq(),
        "follower output differs: {} bytes",
        out.stdout.len()
    );
    assert!(out.stderr.contains("finished"), "{}", out.stderr);
    assert!(
        out.stderr.contains("reconnected; resuming job 1"),
        "{}",
        out.stderr
    );
    let job = lab.wait_job(1, "exited", T);
    assert_eq!(job["exit_code"], 7);
    let logs = lab.admin(&["job", "logs", "1"]).ok();
    assert!(
        logs.stdout == want_seq(),
        "stored log differs: {} bytes",
        logs.stdout.len()
    );
    assert_eq!(logs.stderr, "finished\n");
}

#[test]
fn network_cut_loses_and_duplicates_nothing() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll("worker-cut", "cpu");
    let proxy = UdpProxy::start(lab.addr.as_ref().unwrap());
    let proxy_addr = proxy.addr.to_string();
    let _node = lab.spawn(&home, &["node", "run", "--gateway", &proxy_addr]);
    lab.wait_node("worker-cut", "connected", T);
    let job = "for i in $(seq 1 40); do seq $(( (i-1)*5000+1 )) $(( i*5000 )); sleep 0.15; done";
    let id = lab.detach(&["--node", "worker-cut", "--", "sh", "-c", job]);
    lab.wait_job(id, "running", T);
    std::thread::sleep(Duration::from_millis(500));
    // Cut longer than the dead-node window, so the connection really dies.
    proxy.block(true);
    lab.wait_node("worker-cut", "offline", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    proxy.block(false);
    lab.wait_node("worker-cut", "connected", T);
    let done = lab.wait_job(id, "exited", T);
    assert_eq!(done["exit_code"], 0);
    let logs = lab.admin(&["job", "logs", &id.to_string()]).ok().stdout;
    assert!(
        logs == want_seq(),
        "stored log differs after the cut: {} bytes",
        logs.len()
    );
}

#[test]
fn killed_node_goes_offline_fast_and_its_jobs_are_lost() {
    let mut lab = Lab::with_config(BIN, |c| {
        *c = c.replace("job_grace = \"15s\"", "job_grace = \"2s\"")
    });
    lab.start_gateway();
    let (_home, mut node) = lab.node_up("worker-k", "cpu", 0);
    let id = lab.detach(&["--node", "worker-k", "--", "sleep", "8"]);
    lab.wait_job(id, "running", T);
    node.kill();
    let t0 = Instant::now();
    lab.wait_node("worker-k", "offline", Duration::from_secs(10));
    let detect = t0.elapsed();
    // Three seconds by default; the margin is for a loaded test machine.
    assert!(detect < Duration::from_secs(5), "detected after {detect:?}");
    let job = lab.wait_job(id, "lost", T);
    assert!(
        job["reason"]
            .as_str()
            .unwrap()
            .contains("did not re-attach"),
        "{job}"
    );
}
