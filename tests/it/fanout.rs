//! `openclaw run --all`: one command on many nodes, as one frozen plan.
//! Real gateway, real node agents (and the swarm for width), real QUIC.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use testkit::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

fn lines_of(text: &str, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn fan_out_runs_everywhere_prefixes_groups_and_summarises() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _a = lab.node_up("fan-a", "cpu,zone=eu", 0);
    let _b = lab.node_up("fan-b", "cpu,zone=us", 0);
    let _c = lab.node_up("fan-c", "gpu,zone=eu", 1);
    // Enrolled but never started: matching, offline, not run.
    lab.enroll("fan-d", "cpu,zone=eu");

    // Every node: output prefixed by node, stderr on stderr; the offline
    // node is named, and makes the exit code 253 (unavailable).
    let out = lab.run_job(&[
        "--all",
        "--shell",
        "--",
        "echo one; echo two; echo warn >&2",
    ]);
    assert_eq!(out.code, 253, "{out:?}");
    assert_eq!(
        lines_of(&out.stdout, "fan-"),
        [
            "fan-a: one",
            "fan-a: two",
            "fan-b: one",
            "fan-b: two",
            "fan-c: one",
            "fan-c: two"
        ]
    );
    // Each node's lines stay in order.
    let a: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("fan-a"))
        .collect();
    assert_eq!(a, ["fan-a: one", "fan-a: two"]);
    assert_eq!(
        lines_of(&out.stderr, "fan-"),
        ["fan-a: warn", "fan-b: warn", "fan-c: warn"]
    );
    assert!(
        out.stderr.contains("fan-out 1 on 3 node(s), 3 at a time"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("4 node(s): 3 ok, 1 offline or unhealthy, not run (fan-d)"),
        "{}",
        out.stderr
    );

    // Labels narrow it (all must match); the largest exit code wins.
    let out = lab.run_job(&[
        "--all", "--label", "zone=eu", "--label", "gpu", "--shell", "--", "exit 3",
    ]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("fan-c: [exit 3"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("1 node(s): 0 ok, 1 failed (fan-c: exit 3)"),
        "{}",
        out.stderr
    );

    // A node with fewer confirmed GPUs than asked could never run it:
    // said so, not as a lack of free GPUs.
    let out = lab.run_job(&["--all", "--label", "gpu", "--gpus", "2", "--", "true"]);
    assert_eq!(out.code, 251, "{out:?}");
    assert!(
        out.stderr.contains(
            "node fan-c has 1 confirmed GPU(s) and the fan-out asks 2: it could never run there"
        ),
        "{}",
        out.stderr
    );

    // --role, --json: one object per node per line, with its output.
    let out = lab.run_job(&["--all", "--role", "cpu", "--json", "--", "echo", "hi"]);
    assert_eq!(out.code, 253, "fan-d is a cpu node and offline: {out:?}");
    let mut objs: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    objs.sort_by_key(|v| v["node"].as_str().unwrap().to_string());
    assert_eq!(objs.len(), 2, "{}", out.stdout);
    for (v, node) in objs.iter().zip(["fan-a", "fan-b"]) {
        assert_eq!(v["node"], node);
        assert_eq!(v["state"], "exited");
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["stdout"], "hi\n");
        // The member is an ordinary job that names its fan-out.
        let job = lab.job(v["job"].as_u64().unwrap());
        assert_eq!(job["node"], node);
        assert_eq!(job["stdout_bytes"], 3);
    }

    // --group: one block per node; --batch 1: one node at a time.
    let out = lab.run_job(&[
        "--all", "--label", "zone=us", "--group", "--", "echo", "grouped",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("── fan-b: exit 0 (job ") && out.stdout.contains(") ──\ngrouped\n"),
        "{}",
        out.stdout
    );
    let out = lab.run_job(&[
        "--all",
        "--label",
        "cpu",
        "--batch",
        "1",
        "--json",
        "--shell",
        "--",
        "sleep 1; echo done",
    ]);
    assert_eq!(out.code, 253, "{out:?}");
    let mut spans: Vec<(u64, u64)> = out
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["stdout"], "done\n");
            (
                v["started_at"].as_u64().unwrap(),
                v["finished_at"].as_u64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    assert_eq!(spans.len(), 2);
    assert!(
        spans[1].0 >= spans[0].1,
        "with --batch 1 the second node starts after the first ends: {spans:?}"
    );

    // --timeout applies to each member: killed, reported, non-zero.
    let out = lab.run_job(&[
        "--all",
        "--label",
        "zone=us",
        "--timeout",
        "1s",
        "--json",
        "--",
        "sleep",
        "30",
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["node"], "fan-b");
    assert_eq!(v["state"], "timed-out", "{v}");
    assert!(
        out.stderr.contains("1 node(s): 0 ok, 1 timed out (fan-b)"),
        "{}",
        out.stderr
    );

    // Nothing matches: a clear error, nothing created.
    lab.run_job(&["--all", "--label", "zone=mars", "--", "true"])
        .fails_with(253, "no healthy node matches labels zone=mars");
    lab.run_job(&["--all", "--batch", "0%", "--", "true"])
        .fails_with(2, "--batch \"0%\"");
    lab.run_job(&["--all", "--node", "fan-a", "--", "true"])
        .fails_with(2, "cannot be used with");
}

fn policy_lab() -> Lab {
    Lab::with_config(BIN, |cfg| {
        let start = cfg.find("[policy]\n").unwrap();
        let end = cfg.find("[limits]").unwrap();
        cfg.replace_range(
            start..end,
            r#"[policy]
default = "allow"

[[policy.rules]]
commands = ["rm"]
nodes = ["fan-b"]
action = "deny"

[[policy.rules]]
commands = ["nvidia-smi"]
nodes = ["fan-a"]
action = "approve"
approvers = ["alice", "bob"]

[[policy.rules]]
commands = ["nvidia-smi"]
action = "approve"
approvers = ["bob", "carol"]

[[policy.rules]]
commands = ["uptime"]
nodes = ["fan-a"]
action = "approve"
approvers = ["alice"]

[[policy.rules]]
commands = ["uptime"]
action = "approve"
approvers = ["carol"]

"#,
        );
        assert!(
            cfg.contains("approvers = [\"bob\", \"carol\"]"),
            "the edit matched"
        );
    })
}

#[test]
fn policy_and_approval_cover_the_whole_fan_out() {
    let mut lab = policy_lab();
    lab.start_gateway();
    let _a = lab.node_up("fan-a", "cpu", 0);
    let _b = lab.node_up("fan-b", "cpu", 0);
    let mut people = std::collections::HashMap::new();
    for who in ["alice", "bob", "carol"] {
        let home = lab.dir().join(who);
        lab.admin(&["client", "create", who, "--out", home.to_str().unwrap()])
            .ok();
        people.insert(who, home);
    }

    // One node's deny denies it all, naming the node and rule.
    lab.run_job(&["--all", "--", "rm", "-f", "/nonexistent"])
        .fails_with(252, "policy rule 1 denies");
    assert!(
        lab.jobs().is_empty(),
        "a denied fan-out starts no job: {:?}",
        lab.jobs()
    );
    // Approvers who cannot approve every node: nobody may approve it whole.
    lab.run_job(&["--all", "--", "uptime"])
        .fails_with(252, "need approval from different approvers");

    // Held as one: only an approver of every node (bob) may release it,
    // and one approval releases every node.
    let follower = lab.spawn(
        &lab.gw_home.clone(),
        &["run", "--all", "--", "nvidia-smi", "-L"],
    );
    let held = lab.wait_jobs(T, "the fan-out's jobs", |jobs| {
        (jobs.len() == 2 && jobs.iter().all(|j| j["state"] == "awaiting-approval")).then_some(jobs)
    });
    for j in &held {
        assert_eq!(j["approvers"], serde_json::json!(["bob"]), "{j}");
    }
    let first = held
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .min()
        .unwrap();
    lab.run(&people["alice"], &["job", "approve", &first.to_string()])
        .fails_with(252, "alice is not an approver");
    lab.run(&people["bob"], &["job", "approve", &first.to_string()])
        .ok();
    let out = follower.wait(T);
    // nvidia-smi is missing on this machine (the job fails to start, 251)
    // or present; either way both nodes ran it and the follower saw both.
    for j in &held {
        let done = lab.job(j["id"].as_u64().unwrap());
        assert_eq!(done["approved_by"], "bob", "{done}");
        assert!(
            done["state"] == "exited" || done["state"] == "failed",
            "{done}"
        );
    }
    assert!(out.stderr.contains("2 node(s):"), "{out:?}");

    // A denial of any member denies every member.
    let follower = lab.spawn(&lab.gw_home.clone(), &["run", "--all", "--", "nvidia-smi"]);
    let held = lab.wait_jobs(T, "the second fan-out", |jobs| {
        let jobs: Vec<_> = jobs
            .into_iter()
            .filter(|j| j["state"] == "awaiting-approval")
            .collect();
        (jobs.len() == 2).then_some(jobs)
    });
    let last = held
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .max()
        .unwrap();
    // carol approves nvidia-smi on fan-b, but not on fan-a.
    lab.run(&people["carol"], &["job", "deny", &last.to_string()])
        .fails_with(252, "only its requester or an approver (bob)");
    lab.run(
        &people["bob"],
        &["job", "deny", &last.to_string(), "--reason", "not now"],
    )
    .ok();
    let out = follower.wait(T);
    assert_eq!(out.code, 252, "{out:?}");
    assert!(out.stderr.contains("2 did not run"), "{}", out.stderr);
    for j in &held {
        let done = lab.job(j["id"].as_u64().unwrap());
        assert_eq!(done["state"], "denied", "{done}");
        assert_eq!(done["reason"], "denied by bob: not now");
    }
}

#[test]
fn attack_revoking_a_node_ends_its_members_of_a_held_fan_out_and_the_rest_still_run() {
    let mut lab = policy_lab();
    lab.start_gateway();
    let _a = lab.node_up("fan-a", "cpu", 0);
    let _b = lab.node_up("fan-b", "cpu", 0);
    let bob = lab.dir().join("bob");
    lab.admin(&["client", "create", "bob", "--out", bob.to_str().unwrap()])
        .ok();
    let follower = lab.spawn(
        &lab.gw_home.clone(),
        &["run", "--all", "--", "nvidia-smi", "-L"],
    );
    let held = lab.wait_jobs(T, "the fan-out's jobs", |jobs| {
        (jobs.len() == 2 && jobs.iter().all(|j| j["state"] == "awaiting-approval")).then_some(jobs)
    });
    let member = |node: &str| {
        held.iter()
            .find(|j| j["node"] == node)
            .map(|j| j["id"].as_u64().unwrap())
            .unwrap()
    };
    let out = lab.admin(&["node", "revoke", "fan-b"]).ok();
    assert!(
        out.stdout.contains("1 unfinished job(s) ended"),
        "{}",
        out.stdout
    );
    let b = lab.job(member("fan-b"));
    assert_eq!(b["state"], "cancelled", "{b}");
    assert!(b["reason"].as_str().unwrap().contains("revoked"), "{b}");
    // The rest of the fan-out is approved and runs; the revoked member
    // stays ended.
    lab.run(&bob, &["job", "approve", &member("fan-a").to_string()])
        .ok();
    let out = follower.wait(T);
    assert!(out.stderr.contains("2 node(s):"), "{out:?}");
    let a = lab.job(member("fan-a"));
    assert!(a["state"] == "exited" || a["state"] == "failed", "{a}");
    assert_eq!(lab.job(member("fan-b"))["state"], "cancelled");
}

#[test]
fn a_gateway_killed_mid_fan_out_drives_the_rest_after_its_restart() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _a = lab.node_up("fan-a", "cpu", 0);
    let _b = lab.node_up("fan-b", "cpu", 0);
    // One node at a time: when the gateway dies, one member runs (its
    // first line out already) and the other waits its turn, queued.
    let follower = lab.spawn(
        &lab.gw_home.clone(),
        &[
            "run",
            "--all",
            "--batch",
            "1",
            "--",
            "sh",
            "-c",
            "echo start; sleep 2; echo end",
        ],
    );
    let jobs = lab.wait_jobs(T, "one member running with output, one queued", |jobs| {
        let states: Vec<&str> = jobs.iter().map(|j| j["state"].as_str().unwrap()).collect();
        let out = jobs.iter().any(|j| j["stdout_bytes"].as_u64() > Some(0));
        (out && states.contains(&"running") && states.contains(&"queued")).then_some(jobs)
    });
    lab.stop_gateway(true);
    lab.start_gateway();
    // The follower reconnects and resumes, as `openclaw run` does for one
    // job: the running member re-attaches and ends, the queued one gets
    // its turn, and each line reaches the terminal once.
    let out = follower.wait(T);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("reconnected; resuming fan-out 1"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("2 node(s): 2 ok"), "{}", out.stderr);
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["fan-a: end", "fan-a: start", "fan-b: end", "fan-b: start"],
        "{}",
        out.stdout
    );
    for j in &jobs {
        let done = lab.wait_job(j["id"].as_u64().unwrap(), "exited", T);
        assert_eq!(done["exit_code"], 0, "{done}");
    }
}

#[test]
fn hostile_fan_out_requests_get_clear_errors() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _a = lab.node_up("fan-a", "cpu", 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = client::Client::connect(&mesh::Home::new(&lab.gw_home))
            .await
            .unwrap();
        let ask = |spec: proto::FanOutSpec| {
            let c = &c;
            async move {
                let mut r = c.open(proto::Request::FanOut(spec)).await.unwrap();
                c.next_fan_event(&mut r).await.unwrap().unwrap()
            }
        };
        let job = |argv: &[&str]| proto::JobSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let cases: Vec<(proto::FanOutSpec, &str)> = vec![
            (
                proto::FanOutSpec {
                    job: job(&["true"]),
                    labels: vec!["Zone EU".into()],
                    ..Default::default()
                },
                "--label",
            ),
            (
                proto::FanOutSpec {
                    job: proto::JobSpec {
                        node: Some("fan-a".into()),
                        ..job(&["true"])
                    },
                    ..Default::default()
                },
                "drop --node",
            ),
            (
                proto::FanOutSpec {
                    job: job(&[]),
                    ..Default::default()
                },
                "empty command",
            ),
            (
                proto::FanOutSpec {
                    job: proto::JobSpec {
                        idempotency_key: Some("\u{7}".into()),
                        ..job(&["true"])
                    },
                    ..Default::default()
                },
                "idempotency key",
            ),
        ];
        for (spec, needle) in cases {
            match ask(spec).await {
                proto::FanEvent::Error(e) => {
                    assert!(e.message.contains(needle), "{needle}: {}", e.message)
                }
                other => panic!("{needle}: {other:?}"),
            }
        }
        // A window of 0 or past 100 % is clamped, not a panic.
        for batch in [proto::Batch::Count(0), proto::Batch::Percent(250)] {
            match ask(proto::FanOutSpec {
                job: job(&["true"]),
                batch: Some(batch),
                output: true,
                ..Default::default()
            })
            .await
            {
                proto::FanEvent::Accepted(info) => assert_eq!(info.window, 1, "{batch:?}"),
                other => panic!("{batch:?}: {other:?}"),
            }
        }
        let mut r = c
            .open(proto::Request::FanOutAttach {
                id: 999,
                output: true,
                on_behalf_of: None,
            })
            .await
            .unwrap();
        match c.next_fan_event(&mut r).await.unwrap().unwrap() {
            proto::FanEvent::Error(e) => {
                assert!(
                    e.message.contains("no fan-out with id 999"),
                    "{}",
                    e.message
                )
            }
            other => panic!("{other:?}"),
        }
        c.close().await;
    });
    // The gateway is still up and serving.
    lab.run_job(&["--all", "--", "true"]).ok();
}
