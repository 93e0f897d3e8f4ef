//! Job output through a failover without a shared filesystem: two gateways
//! on one PostgreSQL server, each with its own logs directory. Output is
//! stored in the database, so the new leader prints every line of a job
//! whose leader was SIGKILLed mid-job, once, and a follower across the
//! failover sees each line once. A gateway whose output would not survive
//! a failover refuses to start. SKIPPED without PostgreSQL (a failure under
//! .ci/run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use testkit::{Lab, edit_file, wait_until};

use crate::ha::{Logs, group, holds_node};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(60);

/// `line-1` … `line-N`.
fn lines(n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("line-{i}")).collect()
}

#[test]
fn a_job_s_output_survives_a_leader_sigkill_with_separate_logs_directories() {
    let Some(pg) = testpg::shared("ha output: separate logs directories") else {
        return;
    };
    let mut p = group(pg.database().unwrap(), Logs::Separate, |_| {}, |_| {});
    assert_ne!(p.logs[0], p.logs[1]);
    // 2,000 lines in about 5 s, then exit 3.
    let n = 2000;
    let script = format!(
        "for i in $(seq 1 {n}); do echo line-$i; if [ $((i % 20)) -eq 0 ]; then sleep 0.05; fi; done; exit 3"
    );
    let job = p
        .lab
        .detach(&["--node", "worker-ha", "--", "sh", "-c", &script]);
    // A follower across the failover (its credential lists both gateways).
    let gw_home = p.lab.gw_home.clone();
    let follower = p
        .lab
        .spawn(&gw_home, &["job", "logs", "-f", &job.to_string()]);
    wait_until(T, "the follower to print line-100", || {
        std::fs::read_to_string(&follower.stdout_path)
            .ok()
            .filter(|o| o.contains("line-100\n"))
    });
    p.lab.stop_gateway(true);
    wait_until(T, "the node on the new leader", || {
        holds_node(&p.lab, &p.only[1]).then_some(())
    });
    let done = p.lab.wait_job(job, "exited", T);
    assert_eq!(done["exit_code"], 3, "{done}");
    // The new leader prints every line once, from the database: its own
    // logs directory holds no copy, and the dead leader's is not read.
    let out = p.lab.admin(&["job", "logs", &job.to_string()]).ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        lines(n),
        "every line exactly once, in order"
    );
    assert!(
        !p.logs[1].join(format!("{job}.stdout")).exists(),
        "the output is in the database, not a file"
    );
    let rows = testpg::rows(
        &p.url,
        &format!("SELECT count(*), sum(length(data)) FROM job_output WHERE job = {job}"),
    )
    .unwrap();
    let want_bytes: usize = lines(n).iter().map(|l| l.len() + 1).sum();
    assert_eq!(
        rows[0][1].as_deref(),
        Some(want_bytes.to_string().as_str()),
        "stored once: {rows:?}"
    );
    // The follower reconnected and saw each line once, and the job's code.
    let out = follower.wait(T);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        lines(n),
        "{}",
        out.stderr
    );
    assert_eq!(out.code, 3, "{out:?}");
    drop(p.gw2.take());
}

#[test]
fn a_gateway_whose_output_would_not_survive_a_failover_refuses_to_start() {
    let Some(pg) = testpg::shared("ha output: files-only output refused") else {
        return;
    };
    let url = pg.database().unwrap();
    let mut lab = Lab::new(BIN);
    lab.admin(&["gateway", "migrate-state", "--to", &url]).ok();
    let cfg = lab.gw_home.join("gateway.toml");
    edit_file(
        &cfg,
        &format!("url = \"{url}\""),
        &format!("url = \"{url}\"\noutput = \"files\""),
    );
    let mut gw = lab.spawn(&lab.gw_home.clone(), &["gateway", "run"]);
    let out = wait_until(T, "the gateway to refuse", || {
        (!gw.running()).then(|| gw.stderr())
    });
    assert!(
        out.contains("output = \"files\"") && out.contains("logs_dir_shared = true"),
        "{out}"
    );
    // Declared shared (a mount every gateway sees), it starts.
    edit_file(
        &cfg,
        &format!("url = \"{url}\"\noutput = \"files\""),
        &format!("url = \"{url}\"\noutput = \"files\"\nlogs_dir_shared = true"),
    );
    lab.start_gateway();
    assert_eq!(lab.admin(&["whoami"]).code, 0);
}
