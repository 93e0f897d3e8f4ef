//! Jobs after they start: cancel and kill, many at once, following logs,
//! the output cap, node-side policy, GPU telemetry, idempotency, and a run
//! that ends with its session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use testkit::{Lab, wait_until};

use crate::jobs::policy_lab;

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

#[test]
fn cancel_sends_sigterm_then_sigkill() {
    let mut lab = Lab::with_config(BIN, |cfg| {
        *cfg = cfg.replace("kill_grace = \"10s\"", "kill_grace = \"1s\"")
    });
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let script = "trap 'echo got TERM' TERM; echo started; while true; do sleep 0.1; done";
    let follower = lab.spawn(
        &lab.gw_home.clone(),
        &["run", "--node", "worker-cpu-01", "--", "sh", "-c", script],
    );
    let id = lab.wait_jobs(T, "the job to run", |list| {
        list.first()
            .filter(|j| j["state"] == "running" && j["stdout_bytes"].as_u64() > Some(0))
            .map(|j| j["id"].as_u64().unwrap())
    });
    let out = lab.admin(&["job", "cancel", &id.to_string()]).ok();
    assert!(
        out.stdout.contains("SIGTERM now, SIGKILL after 1s"),
        "{}",
        out.stdout
    );
    let job = lab.wait_job(id, "cancelled", T);
    assert_eq!(
        job["exit_code"], 137,
        "the trap ignores TERM, so KILL ends it: {job}"
    );
    let logs = lab.admin(&["job", "logs", &id.to_string()]).ok().stdout;
    assert!(
        logs.starts_with("started\n") && logs.contains("got TERM"),
        "{logs}"
    );
    let out = follower.wait(T);
    assert_eq!(out.code, 130, "{out:?}");
    // The cancellation is said once, as a state with who did it; the
    // signal's code (kept in JSON) is not shown as an exit code.
    assert_eq!(job["reason"], "cancelled by admin", "{job}");
    assert_eq!(out.stderr.matches("cancelled").count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("openclaw: job {id} cancelled by admin\n")),
        "{}",
        out.stderr
    );
    let shown = lab.admin(&["job", "show", &id.to_string()]).ok().stdout;
    assert!(
        shown.contains("exit code:   - (its process was ended by SIGKILL when it was cancelled)"),
        "{shown}"
    );
    let list = lab.admin(&["job", "list"]).ok().stdout;
    let row = list.lines().nth(1).unwrap();
    assert!(
        row.split_whitespace().collect::<Vec<_>>()[1..4] == ["cancelled", "worker-cpu-01", "-"],
        "{list}"
    );
    // Following it afterwards says the same, with run's code for it.
    let out = lab
        .admin(&["job", "logs", &id.to_string(), "--follow"])
        .fails_with(130, &format!("openclaw: job {id} cancelled by admin\n"));
    assert!(out.stdout.starts_with("started\n"), "{out:?}");
}

#[test]
fn many_concurrent_jobs_keep_their_output_intact() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _a = lab.node_up("worker-a", "cpu", 0);
    let _b = lab.node_up("worker-b", "cpu", 0);
    let gw = lab.gw_home.clone();
    let procs: Vec<_> = (0..50)
        .map(|i| {
            let node = if i % 2 == 0 { "worker-a" } else { "worker-b" };
            let script =
                format!("for i in $(seq 1 2000); do echo job{i}-line$i; done; echo done{i} >&2");
            lab.spawn(&gw, &["run", "--node", node, "--", "sh", "-c", &script])
        })
        .collect();
    for (i, p) in procs.into_iter().enumerate() {
        let out = p.wait(Duration::from_secs(120));
        assert_eq!(out.code, 0, "job {i}: {}", out.stderr);
        let want: String = (1..=2000).map(|n| format!("job{i}-line{n}\n")).collect();
        assert!(
            out.stdout == want,
            "job {i}: output mixed or lost ({} bytes, want {})",
            out.stdout.len(),
            want.len()
        );
        assert!(out.stderr.contains(&format!("done{i}\n")), "{}", out.stderr);
    }
}

/// A follower whose reader stalls falls more than the live broadcast
/// behind (128 frames): the gap comes from the log file, then it goes
/// back to live chunks, and every byte arrives once, in order.
#[test]
fn a_follower_that_falls_behind_still_gets_every_byte_once() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-a", "cpu", 0);
    let gw = lab.gw_home.to_string_lossy().into_owned();
    // About 69 MB: far more than the CLI's stream window and the 128
    // frames the gateway keeps for live followers, while the reader sleeps.
    let n = 9_000_000;
    let cli = format!("{BIN} --home {gw} run --node worker-a -- seq 1 {n} | {{ sleep 3; cat; }}");
    let out = lab
        .spawn_cmd("sh", &["-c", &cli])
        .wait(Duration::from_secs(180));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want: String = (1..=n).map(|k| format!("{k}\n")).collect();
    assert!(
        out.stdout == want,
        "output lost, doubled or reordered: {} bytes, want {}",
        out.stdout.len(),
        want.len()
    );
}

#[test]
fn logs_follow_show_and_list() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let id = lab.detach(&[
        "--node",
        "worker-cpu-01",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done; echo bye >&2; exit 3",
    ]);
    let ids = id.to_string();
    // Following ends with how the job ended, and its exit code, as run.
    let follow = lab.admin(&["job", "logs", &ids, "--follow"]);
    assert_eq!(follow.code, 3, "{follow:?}");
    assert_eq!(follow.stdout, "line1\nline2\nline3\nline4\nline5\n");
    assert_eq!(
        follow.stderr,
        format!("bye\nopenclaw: job {id} exited with code 3\n")
    );
    // Reading the stored log is a read: it succeeds, and its output is
    // exactly the job's.
    let again = lab.admin(&["job", "logs", &ids]).ok();
    assert_eq!(again.stdout, follow.stdout);
    assert_eq!(again.stderr, "bye\n");
    let job = lab.job(id);
    for key in [
        "state",
        "node",
        "argv",
        "requester",
        "created_at",
        "started_at",
        "finished_at",
        "exit_code",
    ] {
        assert!(!job[key].is_null(), "{key} missing in {job}");
    }
    assert_eq!(job["requester"], "admin");
    assert_eq!(job["stdout_bytes"], 30);
    let table = lab.admin(&["job", "list"]).ok().stdout;
    assert!(
        table.starts_with("ID") && table.contains("exited") && table.contains("worker-cpu-01"),
        "{table}"
    );
    let shown = lab.admin(&["job", "show", &ids]).ok().stdout;
    assert!(shown.contains("exit code:   3"), "{shown}");
}

#[test]
fn output_cap_truncates_with_a_marker() {
    let mut lab = Lab::with_config(BIN, |cfg| {
        *cfg = cfg.replace("output_cap_bytes = 1073741824", "output_cap_bytes = 1000")
    });
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let id = lab.detach(&[
        "--node",
        "worker-cpu-01",
        "--",
        "head",
        "-c",
        "5000",
        "/dev/zero",
    ]);
    let job = lab.wait_job(id, "exited", T);
    assert_eq!(job["truncated"], true);
    assert_eq!(job["stdout_bytes"], 5000);
    let logs = lab.admin(&["job", "logs", &id.to_string()]).ok().stdout;
    assert!(
        logs.starts_with(&"\0".repeat(1000)),
        "kept the first 1000 bytes"
    );
    assert!(
        logs[1000..].contains("[openclaw: output truncated at 1000 bytes"),
        "{:?}",
        &logs[1000..]
    );
}

#[test]
fn node_side_policy_is_the_stricter_one() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll("worker-strict", "cpu");
    let cfg = std::fs::read_to_string(home.join("node.toml")).unwrap();
    assert!(cfg.contains("allowed_commands = []"), "{cfg}");
    std::fs::write(
        home.join("node.toml"),
        cfg.replace("allowed_commands = []", "allowed_commands = [\"echo\"]"),
    )
    .unwrap();
    let _p = lab.start_node(&home);
    lab.wait_node("worker-strict", "connected", T);
    assert_eq!(
        lab.run_job(&["--node", "worker-strict", "--", "echo", "ok"])
            .ok()
            .stdout,
        "ok\n"
    );
    // A node's own refusal is a policy refusal: exit 252, like the gateway's.
    lab.run_job(&["--node", "worker-strict", "--", "ls"])
        .fails_with(252, "does not allow the command \"ls\"");

    let home = lab.enroll("worker-off", "cpu");
    let cfg = std::fs::read_to_string(home.join("node.toml")).unwrap();
    assert!(cfg.contains("system_run = true"), "{cfg}");
    std::fs::write(
        home.join("node.toml"),
        cfg.replace("system_run = true", "system_run = false"),
    )
    .unwrap();
    let _q = lab.start_node(&home);
    lab.wait_node("worker-off", "connected", T);
    lab.run_job(&["--node", "worker-off", "--", "echo", "x"])
        .fails_with(252, "system.run is disabled on node worker-off");
}

#[test]
fn a_node_cannot_report_for_a_job_that_is_not_its_own() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let (_home_a, _a) = lab.node_up("worker-a", "cpu", 0);
    let (home_b, _b) = lab.node_up("worker-b", "cpu", 0);
    let id = lab.detach(&["--node", "worker-a", "--", "sleep", "3"]);
    lab.wait_job(id, "running", T);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // worker-b's own certificate, claiming worker-a's job.
        let client = client::Client::connect(&mesh::Home::new(&home_b))
            .await
            .unwrap();
        let (mut send, mut recv) = client.connection().open_bi().await.unwrap();
        mesh::write_frame(&mut send, &proto::Open::Job { job_id: id })
            .await
            .unwrap();
        // The gateway may refuse before reading this (it stops the stream),
        // so the write itself may fail; the refusal below is what counts.
        let _ = mesh::write_data(
            &mut send,
            proto::OutStream::Stdout,
            0,
            bytes::Bytes::from_static(b"forged"),
        )
        .await;
        let reply: proto::JobCtl = mesh::read_frame(&mut recv, 65536).await.unwrap().unwrap();
        match reply {
            proto::JobCtl::Reject { reason } => {
                assert!(reason.contains("not assigned to node worker-b"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    });
    let job = lab.wait_job(id, "exited", T);
    assert_eq!(job["exit_code"], 0);
    assert!(
        !lab.admin(&["job", "logs", &id.to_string()])
            .ok()
            .stdout
            .contains("forged")
    );
}

#[test]
fn the_gateway_never_runs_jobs_itself() {
    let mut lab = Lab::with_config(BIN, |cfg| {
        *cfg = cfg.replace("run_on_gateway = false", "run_on_gateway = true")
    });
    let out = lab.gateway_start_fails();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("the gateway never runs jobs"),
        "{}",
        out.stderr
    );
}

#[test]
fn telemetry_shows_gpus_and_who_holds_them() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _g = lab.node_up("worker-gpu-01", "gpu", 2);
    let id = lab.detach(&["--role", "gpu", "--", "sleep", "4"]);
    lab.wait_job(id, "running", T);
    let shown = wait_until(T, "a heartbeat naming the job's GPU", || {
        let out = lab.admin(&["node", "show", "worker-gpu-01", "--json"]).ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["job"] == id)
            .then_some(v)
    });
    assert_eq!(shown["gpu_source"], "simulated");
    assert_eq!(shown["gpus_simulated"], true);
    assert_eq!(shown["health"], "healthy");
    assert_eq!(shown["running_jobs"], 1);
    assert!(shown["mem_total"].as_u64().unwrap() > 0, "{shown}");
    let gpus = shown["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2);
    assert!(
        gpus.iter()
            .all(|g| g["mem_total"] == 80u64 << 30 && g["simulated"] == true)
    );
    assert!(gpus[0]["uuid"].as_str().unwrap().starts_with("GPU-sim-"));
    let table = lab.admin(&["node", "list"]).ok().stdout;
    assert!(
        table.contains("2× Simulated GPU 80GB (1 free, simulated)"),
        "{table}"
    );
    let human = lab.admin(&["node", "show", "worker-gpu-01"]).ok().stdout;
    assert!(
        human.contains("gpu source:    simulated") && human.contains(&format!("job {id}")),
        "{human}"
    );
    lab.admin(&["node", "show", "nope"])
        .fails_with(1, "no node named");

    // The lab's GPU demo: simulated GPUs come with an nvidia-smi that, as
    // the real one does, lists every GPU of the node (which ones a job holds
    // is in its CUDA_VISIBLE_DEVICES), by index and UUID.
    let uuid = |i: usize| gpus[i]["uuid"].as_str().unwrap().to_string();
    lab.wait_job(id, "exited", T);
    let every = format!(
        "GPU 0: Simulated GPU 80GB (UUID: {})\nGPU 1: Simulated GPU 80GB (UUID: {})\n",
        uuid(0),
        uuid(1)
    );
    let out = lab
        .run_job(&["--role", "gpu", "--gpus", "1", "--", "nvidia-smi", "-L"])
        .ok();
    assert_eq!(out.stdout, every);
    // A look at the node holding no GPU (a fan-out, `--node`) sees them all
    // too: the chat's `run nvidia-smi on all gpu nodes` works.
    let out = lab
        .run_job(&["--all", "--role", "gpu", "--", "nvidia-smi", "-L"])
        .ok();
    assert!(out.stdout.contains(&uuid(1)), "{out:?}");
    // The default table, in nvidia-smi's shape.
    let out = lab
        .run_job(&["--node", "worker-gpu-01", "--", "nvidia-smi"])
        .ok();
    assert!(
        out.stdout.contains("NVIDIA-SMI simulated"),
        "{}",
        out.stdout
    );
    for i in 0..2 {
        assert!(
            out.stdout.contains(&format!("|{i:>5}  Simulated GPU 80GB")),
            "{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("0MiB / 81920MiB"), "{}", out.stdout);
    // It is first on the job's PATH, in the agent's own root.
    let out = lab
        .run_job(&[
            "--node",
            "worker-gpu-01",
            "--gpus",
            "0",
            "--",
            "sh",
            "-c",
            "command -v nvidia-smi",
        ])
        .ok();
    assert!(
        out.stdout.trim().ends_with("/sim-bin/nvidia-smi"),
        "{}",
        out.stdout
    );
}

#[test]
fn followers_always_hear_that_a_job_is_running() {
    // The job may be running before its follower first looks; the follower
    // must still be told (moltbot's message depends on it).
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = client::Client::connect(&mesh::Home::new(&lab.gw_home))
            .await
            .unwrap();
        for _ in 0..5 {
            let spec = proto::JobSpec {
                node: Some("worker-cpu-01".into()),
                argv: vec!["sleep".into(), "0.5".into()],
                ..Default::default()
            };
            let mut recv = client.open(proto::Request::JobRun(spec)).await.unwrap();
            let mut states = Vec::new();
            loop {
                match client.next_event(&mut recv).await.unwrap().unwrap() {
                    proto::JobEvent::Accepted(j) | proto::JobEvent::State(j) => {
                        states.push(j.state)
                    }
                    proto::JobEvent::End(j) => {
                        states.push(j.state);
                        break;
                    }
                    _ => {}
                }
            }
            assert!(states.iter().any(|s| s == "running"), "{states:?}");
            assert_eq!(states.last().map(String::as_str), Some("exited"));
        }
    });
    // A late follower (attach) is told the state first, too.
    let id = lab.detach(&["--node", "worker-cpu-01", "--", "sleep", "2"]);
    lab.wait_job(id, "running", T);
    rt.block_on(async {
        let client = client::Client::connect(&mesh::Home::new(&lab.gw_home))
            .await
            .unwrap();
        let mut recv = client
            .open(proto::Request::JobAttach {
                id,
                follow: true,
                stdout_from: 0,
                stderr_from: 0,
                on_behalf_of: None,
            })
            .await
            .unwrap();
        match client.next_event(&mut recv).await.unwrap().unwrap() {
            proto::JobEvent::State(j) => assert_eq!(j.state, "running"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_repeated_idempotency_key_returns_the_first_job() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let args = [
        "--idempotency-key",
        "nightly-2026-11-29",
        "--node",
        "worker-cpu-01",
        "--",
        "echo",
        "once",
    ];
    let first = lab.detach(&args);
    let again = lab.detach(&args);
    assert_eq!(first, again);
    lab.wait_job(first, "exited", T);
    // Another key is another job.
    let other = lab.detach(&[
        "--idempotency-key",
        "nightly-2026-11-30",
        "--node",
        "worker-cpu-01",
        "--",
        "true",
    ]);
    assert_ne!(other, first);
    assert_eq!(lab.jobs().len(), 2);
}

#[test]
fn a_log_tail_reads_the_end_of_each_stream_not_the_start() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    lab.run_job(&[
        "--node",
        "worker-cpu-01",
        "--",
        "sh",
        "-c",
        "seq 1 200000; echo tail-of-stderr >&2",
    ])
    .ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let gw = client::Gateway::new(mesh::Home::new(&lab.gw_home));
        let (tail, cut) = client::job_log_tail(&gw, 1, None, 100).await.unwrap();
        let text = String::from_utf8(tail).unwrap();
        assert!(cut);
        assert!(text.len() <= 100, "{}", text.len());
        assert!(text.contains("199999\n200000\n"), "{text}");
        assert!(text.contains("tail-of-stderr"), "{text}");
        // The whole log, for an upload, only when it fits.
        assert_eq!(client::job_log(&gw, 1, None, 1000).await.unwrap(), None);
        let full = client::job_log(&gw, 1, None, 4 << 20)
            .await
            .unwrap()
            .unwrap();
        assert!(full.starts_with(b"1\n2\n3\n") && full.len() > 1_000_000);
        // A short log comes whole, not cut.
        let (all, cut) = client::job_log_tail(&gw, 1, None, 10 << 20).await.unwrap();
        assert!(!cut);
        assert_eq!(all.len(), full.len());
    });
}

/// Starts `openclaw ARGS` with the lab's admin credential and stdout on a
/// pipe whose reader is already closed (as `| head` leaves it); waits for
/// it to exit.
fn closed_stdout(lab: &Lab, args: &[&str]) -> testkit::Out {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let err = lab
        .dir()
        .join(format!("closed-{}.err", args.join("_").len()));
    let mut child = std::process::Command::new(BIN)
        .arg("--home")
        .arg(&lab.gw_home)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = wait_until(T, &format!("{args:?} to exit"), || {
        child.try_wait().unwrap()
    });
    testkit::Out {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

/// The id of the newest job once it is in `state`.
fn newest_job(lab: &Lab, state: &str) -> u64 {
    lab.wait_jobs(T, &format!("the newest job to be {state}"), |jobs| {
        jobs.first()
            .filter(|j| j["state"] == state)
            .map(|j| j["id"].as_u64().unwrap())
    })
}

#[test]
fn a_run_ends_with_its_session_and_a_closed_pipe_ends_quietly() {
    let mut lab = policy_lab("");
    lab.start_gateway();
    // Its agent logs into a pipe: no colours there (nor in the files the
    // other agents and the gateway log into).
    let cpu_home = lab.enroll("worker-cpu-01", "cpu,pool");
    let (reader, writer) = std::io::pipe().unwrap();
    let mut agent = std::process::Command::new(BIN)
        .arg("--home")
        .arg(&cpu_home)
        .args(["node", "run"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .spawn()
        .unwrap();
    let agent_log = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut { reader }, &mut text).unwrap();
        text
    });
    lab.wait_node("worker-cpu-01", "connected", T);
    let _b = lab.node_up("box-01", "gpu,pool", 1);
    // worker-gpu-* jobs wait for approval under policy_lab.
    let _g = lab.node_up("worker-gpu-01", "gpu", 0);
    let gw = lab.gw_home.clone();

    // SIGTERM, SIGHUP, SIGINT: the running job is cancelled, the CLI says
    // so once and exits 128 + the signal.
    for (sig, code) in [("TERM", 143), ("HUP", 129), ("INT", 130)] {
        let run = lab.spawn(
            &gw,
            &["run", "--node", "worker-cpu-01", "--", "sleep", "30"],
        );
        let id = newest_job(&lab, "running");
        run.signal(sig);
        let out = run.wait(T);
        assert_eq!(out.code, code, "SIG{sig}: {out:?}");
        let job = lab.wait_job(id, "cancelled", T);
        assert_eq!(job["reason"], "cancelled by admin", "{job}");
        assert_eq!(
            out.stderr,
            format!("openclaw: job {id} on worker-cpu-01\nopenclaw: job {id} cancelled by admin\n"),
            "SIG{sig}"
        );
    }

    // A --queue run still queued: its job is cancelled, not left queued.
    let blocker = lab.detach(&["--node", "box-01", "--gpus", "1", "--", "sleep", "30"]);
    lab.wait_job(blocker, "running", T);
    let run = lab.spawn(&gw, &["run", "--role", "gpu", "--queue", "--", "true"]);
    let id = newest_job(&lab, "queued");
    run.signal("TERM");
    let out = run.wait(T);
    assert_eq!(out.code, 143, "{out:?}");
    let job = lab.wait_job(id, "cancelled", T);
    assert!(job["exit_code"].is_null(), "it never ran: {job}");
    assert_eq!(job["reason"], "cancelled by admin before it started");
    assert!(
        out.stderr.ends_with(&format!(
            "openclaw: job {id} cancelled by admin before it started\n"
        )),
        "{}",
        out.stderr
    );
    lab.admin(&["job", "cancel", &blocker.to_string()]).ok();
    lab.wait_job(blocker, "cancelled", T);

    // A job awaiting approval: cancelled, never run.
    let run = lab.spawn(&gw, &["run", "--node", "worker-gpu-01", "--", "true"]);
    let id = newest_job(&lab, "awaiting-approval");
    run.signal("HUP");
    assert_eq!(run.wait(T).code, 129);
    let job = lab.wait_job(id, "cancelled", T);
    assert!(job["exit_code"].is_null(), "{job}");
    assert!(
        lab.jobs().iter().all(|j| j["state"] != "queued"
            && j["state"] != "awaiting-approval"
            && j["state"] != "running"),
        "nothing is left behind: {:?}",
        lab.jobs()
    );

    // A fan-out: every member is cancelled.
    let before = lab.jobs().len();
    let run = lab.spawn(
        &gw,
        &["run", "--all", "--label", "pool", "--", "sleep", "30"],
    );
    lab.wait_jobs(T, "both members to run", |jobs| {
        (jobs.len() == before + 2 && jobs[..2].iter().all(|j| j["state"] == "running"))
            .then_some(())
    });
    run.signal("TERM");
    let out = run.wait(T);
    assert_eq!(out.code, 143, "{out:?}");
    for j in &lab.jobs()[..2] {
        assert_eq!(j["state"], "cancelled", "{j}");
    }
    assert!(out.stderr.contains("2 node(s)"), "{}", out.stderr);
    assert_eq!(
        out.stderr.matches(": [cancelled by admin (job ").count(),
        2,
        "each node's job ended cancelled, said once: {}",
        out.stderr
    );

    // A fan-out held for approval (worker-gpu-01's rule holds it all):
    // every member is cancelled before it ran.
    let run = lab.spawn(&gw, &["run", "--all", "--label", "gpu", "--", "true"]);
    lab.wait_jobs(T, "the fan-out to await approval", |jobs| {
        (jobs.len() == before + 4 && jobs[..2].iter().all(|j| j["state"] == "awaiting-approval"))
            .then_some(())
    });
    run.signal("INT");
    let out = run.wait(T);
    assert_eq!(out.code, 130, "{out:?}");
    for j in &lab.jobs()[..2] {
        assert_eq!(j["state"], "cancelled", "{j}");
        assert!(j["exit_code"].is_null(), "{j}");
    }
    assert!(
        lab.jobs()
            .iter()
            .all(|j| j["state"] == "cancelled" || j["state"] == "exited"),
        "nothing is left behind: {:?}",
        lab.jobs()
    );

    // A closed stdout ends every command quietly, with 141 as for `ls`.
    let quiet = |out: testkit::Out, what: &str| {
        assert_eq!(out.code, 141, "{what}: {out:?}");
        assert!(
            !out.stderr.contains("panicked") && !out.stderr.contains("Broken pipe"),
            "{what}: {}",
            out.stderr
        );
    };
    for args in [
        &["node", "list", "--json"][..],
        &["node", "list"],
        &["job", "list"],
        &["job", "show", "1", "--json"],
        &["token", "list", "--json"],
        &["completions", "bash"],
        &["docs-cli"],
        &["--help"],
        &["run", "--help"],
    ] {
        quiet(closed_stdout(&lab, args), &args.join(" "));
    }
    let big = lab.detach(&["--node", "worker-cpu-01", "--", "seq", "1", "200000"]);
    lab.wait_job(big, "exited", T);
    quiet(
        closed_stdout(&lab, &["job", "logs", &big.to_string()]),
        "job logs",
    );
    // Following a running job: the follower stops, the job goes on.
    let long = lab.detach(&[
        "--node",
        "worker-cpu-01",
        "--shell",
        "--",
        "while true; do echo tick; sleep 0.1; done",
    ]);
    lab.wait_job(long, "running", T);
    let out = closed_stdout(&lab, &["job", "logs", &long.to_string(), "--follow"]);
    quiet(out, "job logs --follow");
    assert_eq!(
        lab.job(long)["state"],
        "running",
        "not the follower's to cancel"
    );
    lab.admin(&["job", "cancel", &long.to_string()]).ok();
    // run: its job dies with the pipe, as ssh's remote command gets SIGPIPE
    // on its next write.
    let out = closed_stdout(
        &lab,
        &[
            "run",
            "--node",
            "worker-cpu-01",
            "--shell",
            "--",
            "while true; do echo tick; sleep 0.1; done",
        ],
    );
    let id = lab.jobs()[0]["id"].as_u64().unwrap();
    quiet(out, "run");
    lab.wait_job(id, "cancelled", T);
    let out = closed_stdout(
        &lab,
        &[
            "run",
            "--all",
            "--label",
            "pool",
            "--",
            "sh",
            "-c",
            "while true; do echo tick; sleep 0.1; done",
        ],
    );
    quiet(out, "run --all");
    for j in &lab.jobs()[..2] {
        lab.wait_job(j["id"].as_u64().unwrap(), "cancelled", T);
    }

    // No ANSI colours in logs that go to a pipe or a file.
    agent.kill().unwrap();
    agent.wait().unwrap();
    let log = agent_log.join().unwrap();
    assert!(
        String::from_utf8_lossy(&log).contains("INFO"),
        "the agent logged: {}",
        String::from_utf8_lossy(&log)
    );
    assert!(!log.contains(&0x1b), "{}", String::from_utf8_lossy(&log));
    let gw_log = lab.gateway().stderr();
    assert!(gw_log.contains("INFO"), "{gw_log}");
    assert!(!gw_log.contains('\x1b'), "{gw_log}");
}
