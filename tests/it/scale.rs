//! The swarm at small scale: correctness of the load tool and of the
//! gateway under many sessions. Speed is measured by `openclaw-bench swarm`,
//! never asserted here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use testkit::swarm::{Swarm, SwarmOptions};
use testkit::{Lab, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");

#[test]
fn a_swarm_of_50_nodes_connects_runs_every_job_and_collects_every_exit_code() {
    let mut lab = Lab::with_config(BIN, |cfg| {
        *cfg = cfg.replace("rate_per_minute = 60", "rate_per_minute = 100000");
        assert!(cfg.contains("rate_per_minute = 100000"), "the edit matched");
    });
    lab.start_gateway();
    let token = lab.token(&["--auto-approve", "--uses", "50", "--labels", "sim"]);
    let addr = std::fs::read_to_string(lab.gw_home.join("gateway.addr")).unwrap();
    let dir = lab.dir().join("swarm");
    let opts = SwarmOptions {
        nodes: 50,
        endpoints: 4,
        ..Default::default()
    };
    let (swarm, started) =
        Swarm::start(&dir, addr.trim(), &token, &opts, Duration::from_secs(60)).unwrap();
    eprintln!(
        "enrolled 50 in {:?}, connected in {:?}",
        started.enroll, started.connect
    );

    // Every node connected, as the gateway sees it.
    let nodes = lab.nodes();
    let up: Vec<_> = nodes
        .iter()
        .filter(|n| {
            n["connection"] == "connected" && n["name"].as_str().unwrap().starts_with("sim-")
        })
        .collect();
    assert_eq!(up.len(), 50, "{nodes:?}");

    // node list pages: seven at a time, every node once, in name order.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let names: Vec<String> = rt.block_on(async {
        let c = client::Client::connect(&mesh::Home::new(&lab.gw_home))
            .await
            .unwrap();
        let mut names: Vec<String> = Vec::new();
        loop {
            let after = names.last().cloned();
            match c
                .call(proto::Request::NodePage { after, limit: 7 })
                .await
                .unwrap()
            {
                proto::Response::Nodes(page) if page.is_empty() => break,
                proto::Response::Nodes(page) => {
                    assert!(page.len() <= 7);
                    names.extend(page.into_iter().map(|n| n.name));
                }
                r => panic!("{r:?}"),
            }
        }
        assert_eq!(c.all_nodes().await.unwrap().len(), 50);
        names
    });
    assert_eq!(names, swarm.names, "every node once, in name order");

    // One job per node; every exit code and output comes back.
    for (i, name) in swarm.names.iter().enumerate() {
        let code = (i % 4) as i32;
        let out = lab.run_job(&["--node", name, "--", "exit", &code.to_string()]);
        assert_eq!(out.code, code, "{name}: {out:?}");
        if i % 10 == 0 {
            let out = lab
                .run_job(&["--node", name, "--", "echo", "hello", name])
                .ok();
            assert_eq!(out.stdout, format!("hello {name}\n"));
        }
    }
    assert_eq!(swarm.counters.jobs.load(Ordering::Relaxed), 55);
    // The gateway confirms each end to its node (JobCtl::Done) after
    // recording it, so a confirmation may trail the CLI's exit a moment.
    let done = |n: u64| {
        wait_until(
            Duration::from_secs(10),
            &format!("{n} confirmed ends"),
            || (swarm.counters.jobs_done.load(Ordering::Relaxed) >= n).then_some(()),
        );
        assert_eq!(swarm.counters.jobs_done.load(Ordering::Relaxed), n);
    };
    done(55);

    // Fan-out: one command on all 50, every exit code collected; then
    // through a window of 10, with each node's output.
    let out = lab.run_job(&["--all", "--label", "sim", "--", "true"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("50 node(s): 50 ok"), "{}", out.stderr);
    let out = lab.run_job(&[
        "--all", "--label", "sim", "--batch", "10", "--json", "--", "echo", "hi",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let mut seen: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(
                (&v["stdout"], &v["exit_code"]),
                (&"hi\n".into(), &0.into()),
                "{v}"
            );
            v["node"].as_str().unwrap().to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, swarm.names, "one object per node");
    let out = lab.run_job(&[
        "--all", "--label", "sim", "--batch", "20%", "--", "exit", "4",
    ]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains("10 at a time"), "{}", out.stderr);
    assert!(
        out.stderr.contains("50 node(s): 0 ok, 50 failed"),
        "{}",
        out.stderr
    );
    done(55 + 150);

    // Heartbeats keep everyone online: no false offline, no reconnect.
    // Three beats from every node span the dead-node window (3 s).
    let beats = swarm.counters.heartbeats.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(30), "three more beats a node", || {
        (swarm.counters.heartbeats.load(Ordering::Relaxed) >= beats + 50 * 3).then_some(())
    });
    assert_eq!(swarm.counters.reconnects.load(Ordering::Relaxed), 0);
    assert_eq!(swarm.connected(), 50);
    let offline = lab
        .nodes()
        .into_iter()
        .filter(|n| n["connection"] != "connected")
        .count();
    assert_eq!(offline, 0);
}
