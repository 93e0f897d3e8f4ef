//! Jobs end to end: `openclaw run` and `openclaw job ...` against a real
//! gateway and real node agents on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use testkit::{Lab, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

#[test]
fn run_streams_bytes_and_returns_the_remote_exit_code() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);

    let out = lab.run_job(&[
        "--node",
        "worker-cpu-01",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err\n"), "{}", out.stderr);
    assert!(
        out.stderr.contains("openclaw: job 1 on worker-cpu-01"),
        "{}",
        out.stderr
    );

    // Binary output, byte for byte, in both directions of the mesh.
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = lab.dir().join("blob.bin");
    std::fs::write(&file, &data).unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--home",
            lab.gw_home.to_str().unwrap(),
            "run",
            "--node",
            "worker-cpu-01",
            "--",
            "cat",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout == data,
        "output differs: {} bytes vs {}",
        out.stdout.len(),
        data.len()
    );
    // A signal death is reported as 128+N, like a shell.
    let out = lab.run_job(&["--node", "worker-cpu-01", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.code, 137, "{out:?}");
    // A command that is not there: 127 and the shell's one line, which
    // names the command, not openclaw. The job's stderr is exactly that
    // line; the CLI's own lines on stderr are only its "openclaw: job N".
    let out = lab.run_job(&["--node", "worker-cpu-01", "--", "no-such-command", "x"]);
    assert_eq!(out.code, 127, "{out:?}");
    assert_eq!(out.stdout, "");
    let theirs: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("openclaw: job "))
        .collect();
    assert_eq!(
        theirs,
        ["no-such-command: command not found"],
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("warning"),
        "a node without GPUs: {}",
        out.stderr
    );
    let id = job_id(&out.stderr);
    let logs = lab.admin(&["job", "logs", &id.to_string()]).ok();
    assert_eq!(logs.stderr, "no-such-command: command not found\n");
    assert_eq!(lab.job(id)["exit_code"], 127);
    // A path that is not there, and one that cannot be executed.
    let out = lab.run_job(&["--node", "worker-cpu-01", "--", "./nope.sh"]);
    assert_eq!(out.code, 127, "{out:?}");
    assert!(
        out.stderr
            .contains("\n./nope.sh: No such file or directory\n"),
        "{}",
        out.stderr
    );
    let plain = lab.dir().join("not-executable");
    std::fs::write(&plain, "echo ran\n").unwrap();
    let plain = plain.to_str().unwrap();
    let out = lab.run_job(&["--node", "worker-cpu-01", "--", plain]);
    assert_eq!(out.code, 126, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("\n{plain}: Permission denied\n")),
        "{}",
        out.stderr
    );
}

/// The job id from `openclaw run`'s "openclaw: job N ..." line.
fn job_id(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("openclaw: job "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {stderr:?}"))
}

#[test]
fn job_environment_cwd_and_loader_stripping() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-gpu-01", "gpu", 2);
    // Loader variables are refused by name, not silently dropped.
    for var in ["LD_PRELOAD=/evil.so", "DYLD_INSERT_LIBRARIES=/x"] {
        lab.run_job(&["--role", "gpu", "--env", var, "--", "true"])
            .fails_with(252, "refused by policy");
    }
    let out = lab
        .run_job(&[
            "--role",
            "gpu",
            "--cwd",
            "/tmp",
            "--env",
            "OMP_NUM_THREADS=3",
            "--shell",
            "--",
            "echo",
            "job=$OPENCLAW_JOB_ID node=$OPENCLAW_NODE gpus=$CUDA_VISIBLE_DEVICES threads=$OMP_NUM_THREADS ld=$LD_PRELOAD pwd=$(pwd)",
        ])
        .ok();
    assert_eq!(
        out.stdout,
        "job=1 node=worker-gpu-01 gpus=0 threads=3 ld= pwd=/tmp\n"
    );
    // Role gpu asked for one GPU: nothing to warn about.
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    // Without --gpus an explicit-node job gets no GPU (the one rule: a job
    // holds the GPUs it asks for), and the CLI says so, since the node
    // has GPUs.
    let out = lab
        .run_job(&[
            "--node",
            "worker-gpu-01",
            "--",
            "sh",
            "-c",
            "echo [${CUDA_VISIBLE_DEVICES-unset}]",
        ])
        .ok();
    // Set, and empty: a job without GPUs sees none of the node's.
    assert_eq!(out.stdout, "[]\n");
    let id = job_id(&out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "openclaw: warning: job {id} holds no GPU on worker-gpu-01, which has 2 confirmed"
        )) && out.stderr.contains("pass --gpus N"),
        "{}",
        out.stderr
    );
    // Saying so (--gpus 0), or asking for some, silences it.
    let out = lab
        .run_job(&["--node", "worker-gpu-01", "--gpus", "0", "--", "true"])
        .ok();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    let out = lab
        .run_job(&[
            "--node",
            "worker-gpu-01",
            "--gpus",
            "2",
            "--",
            "sh",
            "-c",
            "echo $CUDA_VISIBLE_DEVICES",
        ])
        .ok();
    assert_eq!(out.stdout, "0,1\n");
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    // --detach warns too, on stderr: stdout stays the job id alone.
    let out = lab
        .admin(&["run", "--detach", "--node", "worker-gpu-01", "--", "true"])
        .ok();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stderr.contains("warning: job"), "{}", out.stderr);
    // Commands run as argv: no shell expands this.
    let out = lab
        .run_job(&["--node", "worker-gpu-01", "--", "echo", "$HOME", "a;b"])
        .ok();
    assert_eq!(out.stdout, "$HOME a;b\n");
}

#[test]
fn role_routing_and_gpu_exclusivity() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _g = lab.node_up("worker-gpu-01", "gpu", 2);
    let _c = lab.node_up("worker-cpu-01", "cpu", 0);
    let out = lab
        .run_job(&["--role", "cpu", "--", "sh", "-c", "echo $OPENCLAW_NODE"])
        .ok();
    assert_eq!(out.stdout, "worker-cpu-01\n");
    lab.run_job(&["--role", "tpu", "--", "true"])
        .fails_with(254, "no node has the role \"tpu\"");

    // Two GPU jobs hold both GPUs, each a different one.
    let a = lab.detach(&[
        "--role",
        "gpu",
        "--",
        "sh",
        "-c",
        "echo $CUDA_VISIBLE_DEVICES; sleep 4",
    ]);
    let b = lab.detach(&[
        "--role",
        "gpu",
        "--",
        "sh",
        "-c",
        "echo $CUDA_VISIBLE_DEVICES; sleep 4",
    ]);
    lab.wait_job(a, "running", T);
    lab.wait_job(b, "running", T);
    let logs = |id: u64| lab.admin(&["job", "logs", &id.to_string()]).ok().stdout;
    wait_until(T, "both jobs to print their GPU", || {
        (!logs(a).is_empty() && !logs(b).is_empty()).then_some(())
    });
    let mut gpus = vec![logs(a), logs(b)];
    gpus.sort();
    assert_eq!(gpus, vec!["0\n", "1\n"]);
    // A third has no GPU: it fails at once, or waits with --queue.
    lab.run_job(&["--role", "gpu", "--", "true"])
        .fails_with(253, "pass --queue");
    let out = lab
        .run_job(&[
            "--role",
            "gpu",
            "--queue",
            "--queue-timeout",
            "30s",
            "--",
            "sh",
            "-c",
            "echo queued-ran",
        ])
        .ok();
    assert_eq!(out.stdout, "queued-ran\n");
    assert!(out.stderr.contains("queued"), "{}", out.stderr);
    lab.wait_job(a, "exited", T);
    lab.wait_job(b, "exited", T);

    // A request no node could ever meet is not told to retry, and --queue
    // refuses it instead of waiting for ever: its own exit code, and the
    // most GPUs there are. A node without GPUs has none to offer.
    for queue in [&[][..], &["--queue"][..]] {
        let mut args = vec!["--role", "gpu", "--gpus", "3"];
        args.extend_from_slice(queue);
        args.extend_from_slice(&["--", "true"]);
        let out = lab.run_job(&args).fails_with(
            250,
            "no gpu node has 3 GPUs (the most any has is 2 (worker-gpu-01))",
        );
        assert!(!out.stderr.contains("retry"), "{}", out.stderr);
        assert!(
            out.stderr.contains("ask for at most 2 GPU(s)"),
            "{}",
            out.stderr
        );
    }
    lab.run_job(&[
        "--node",
        "worker-gpu-01",
        "--gpus",
        "3",
        "--queue",
        "--",
        "true",
    ])
    .fails_with(
        250,
        "node worker-gpu-01 has 2 confirmed GPU(s) and the job asks for 3",
    );
    lab.run_job(&[
        "--node",
        "worker-cpu-01",
        "--gpus",
        "1",
        "--queue",
        "--",
        "true",
    ])
    .fails_with(250, "node worker-cpu-01 has no confirmed GPUs");
    assert_eq!(lab.jobs().len(), 4, "refused requests leave no job");

    // A queued job whose request becomes impossible while it waits (the
    // node's GPU cap lowered below it) ends, saying why, at once.
    let hold = lab.detach(&[
        "--node",
        "worker-gpu-01",
        "--gpus",
        "1",
        "--",
        "sleep",
        "30",
    ]);
    lab.wait_job(hold, "running", T);
    let queued = lab.spawn(
        &lab.gw_home.clone(),
        &[
            "run",
            "--node",
            "worker-gpu-01",
            "--gpus",
            "2",
            "--queue",
            "--",
            "true",
        ],
    );
    let waiting = wait_until(T, "the job to queue", || {
        lab.jobs()
            .into_iter()
            .find(|j| j["state"] == "queued")
            .and_then(|j| j["id"].as_u64())
    });
    lab.admin(&["node", "approve", "worker-gpu-01", "--gpus", "1"])
        .ok();
    let out = queued.wait(T);
    assert_eq!(out.code, 251, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "job {waiting} failed: no node can ever run it now: node worker-gpu-01 has 1 confirmed GPU(s) and the job asks for 2"
        )),
        "{}",
        out.stderr
    );
    lab.admin(&["job", "cancel", &hold.to_string()]).ok();
}

fn named_lab() -> Lab {
    Lab::with_config(BIN, |cfg| {
        cfg.push_str(
            r#"
[jobs.hello]
command = ["sh", "-c", "echo hello from $OPENCLAW_NODE"]
node = "worker-cpu-01"
aliases = ["say hello"]

[jobs.exp42]
command = ["sh", "-c", "echo exp42 on $OPENCLAW_NODE gpus=$CUDA_VISIBLE_DEVICES"]
role = "gpu"
"#,
        )
    })
}

#[test]
fn named_jobs() {
    let mut lab = named_lab();
    lab.start_gateway();
    let _g = lab.node_up("worker-gpu-01", "gpu", 1);
    let _c = lab.node_up("worker-cpu-01", "cpu", 0);
    assert_eq!(
        lab.run_job(&["--job", "hello"]).ok().stdout,
        "hello from worker-cpu-01\n"
    );
    assert_eq!(
        lab.run_job(&["--job", "exp42"]).ok().stdout,
        "exp42 on worker-gpu-01 gpus=0\n"
    );
    // The named job on an explicit node.
    assert_eq!(
        lab.run_job(&["--job", "hello", "--node", "worker-gpu-01"])
            .ok()
            .stdout,
        "hello from worker-gpu-01\n"
    );
    lab.run_job(&["--job", "helo"])
        .fails_with(254, "did you mean hello?");
    lab.run_job(&["--job", "hello", "--", "ls"])
        .fails_with(2, "fixes its command");
    let shown = lab.job(1);
    assert_eq!(shown["named_job"], "hello");
}

#[test]
fn unknown_and_offline_nodes_fail_at_once() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-gpu-01", "gpu", 0);
    let _offline = lab.enroll("worker-gpu-02", "gpu");
    let out = lab
        .run_job(&["--node", "worker-gpu-1", "--", "true"])
        .fails_with(254, "unknown node \"worker-gpu-1\"");
    assert!(
        out.stderr.contains("did you mean worker-gpu-01?"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("known nodes: worker-gpu-01, worker-gpu-02"),
        "{}",
        out.stderr
    );
    lab.run_job(&["--node", "worker-gpu-02", "--", "true"])
        .fails_with(253, "node worker-gpu-02 is offline (last seen never)");
    // Nothing was silently sent elsewhere.
    let jobs = lab.jobs();
    assert_eq!(jobs.len(), 0);
}

#[test]
fn bad_requests_get_clear_errors() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let node = ["--node", "worker-cpu-01"];
    lab.run_job(&node).fails_with(2, "empty command");
    // Options before the command are run's own: a mistyped one is an
    // error with clap's suggestion, never the start of the command.
    for args in [
        &["--node", "worker-cpu-01", "--gpu", "1", "--", "true"][..],
        &["--node", "worker-cpu-01", "--gpu", "1", "true"],
        &["--gpu", "1", "--node", "worker-cpu-01", "true"],
    ] {
        let out = lab
            .run_job(args)
            .fails_with(2, "unexpected argument '--gpu'");
        assert!(
            out.stderr.contains("a similar argument exists: '--gpus'"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(lab.jobs().len(), 0, "a mistyped option started no job");
    // The command starts after `--`, or at the first word that is not an
    // option of run's; what follows it is the command's, as with ssh.
    let echo = |args: &[&str]| lab.run_job(args).ok().stdout;
    assert_eq!(echo(&["--node", "worker-cpu-01", "--", "true"]), "");
    assert_eq!(echo(&["--node", "worker-cpu-01", "true"]), "");
    assert_eq!(
        echo(&["--node", "worker-cpu-01", "ls", "-d", "-1", "/"]),
        "/\n"
    );
    assert_eq!(
        echo(&["--node", "worker-cpu-01", "echo", "--gpus", "-n", "x"]),
        "--gpus -n x\n"
    );
    // After `--` even --help is the command (not found on the node).
    lab.run_job(&["--node", "worker-cpu-01", "--", "--help"])
        .fails_with(127, "--help");
    lab.run_job(&["--", "true"])
        .fails_with(2, "--node NAME, --role ROLE or --job NAME");
    lab.run_job(&["--node", "worker-cpu-01", "--timeout", "soon", "--", "true"])
        .fails_with(2, "--timeout");
    lab.run_job(&["--node", "worker-cpu-01", "--env", "NOEQUALS", "--", "true"])
        .fails_with(2, "K=V");
    lab.run_job(&[
        "--node",
        "worker-cpu-01",
        "--cwd",
        "/does/not/exist",
        "--",
        "true",
    ])
    .fails_with(
        251,
        "working directory /does/not/exist does not exist on node worker-cpu-01",
    );
    // The node's shell-like line, not one that reads as the local CLI's.
    let out = lab
        .run_job(&["--node", "worker-cpu-01", "--", "no-such-command-xyz"])
        .fails_with(127, "\nno-such-command-xyz: command not found\n");
    assert!(!out.stderr.contains("openclaw: no-such"), "{}", out.stderr);
    lab.run_job(&[
        "--node",
        "worker-cpu-01",
        "--timeout",
        "1s",
        "--",
        "sleep",
        "10",
    ])
    .fails_with(124, "timed-out");
    let id = lab.detach(&["--node", "worker-cpu-01", "--", "true"]);
    lab.wait_job(id, "exited", T);
    lab.admin(&["job", "cancel", &id.to_string()])
        .fails_with(1, "already ended (exited, exit code 0); nothing to cancel");
    lab.admin(&["job", "show", "9999"])
        .fails_with(254, "no job with id 9999");
    lab.admin(&["job", "logs", "9999"])
        .fails_with(254, "no job with id 9999");
}

fn policy_lab(extra: &str) -> Lab {
    let extra = extra.to_string();
    Lab::with_config(BIN, move |cfg| {
        *cfg = cfg.replace("[policy]\n", "[policy-placeholder]\n");
        let start = cfg.find("[policy-placeholder]").unwrap();
        let end = cfg.find("[limits]").unwrap();
        cfg.replace_range(
            start..end,
            &format!(
                r#"[policy]
default = "allow"
{extra}
[[policy.rules]]
commands = ["rm", "*rm -rf*"]
action = "deny"

[[policy.rules]]
nodes = ["worker-gpu-*"]
action = "approve"
approvers = ["admin", "alice"]

"#
            ),
        );
    })
}

#[test]
fn policy_denial_and_approval() {
    let mut lab = policy_lab("");
    lab.start_gateway();
    let _g = lab.node_up("worker-gpu-01", "gpu", 0);
    let _c = lab.node_up("worker-cpu-01", "cpu", 0);
    let alice = lab.dir().join("alice");
    let bob = lab.dir().join("bob");
    lab.admin(&[
        "client",
        "create",
        "alice",
        "--out",
        alice.to_str().unwrap(),
    ])
    .ok();
    lab.admin(&["client", "create", "bob", "--out", bob.to_str().unwrap()])
        .ok();
    assert_eq!(lab.run(&alice, &["whoami"]).ok().stdout, "alice (admin)\n");

    // Denied by policy, at once, with the rule named.
    lab.run_job(&[
        "--node",
        "worker-cpu-01",
        "--",
        "sh",
        "-c",
        "rm -rf /tmp/nothing",
    ])
    .fails_with(252, "denied by policy rule 1");
    // Allowed without approval elsewhere.
    lab.run_job(&["--node", "worker-cpu-01", "--", "true"]).ok();

    // Held for approval on GPU nodes.
    let id = lab.detach(&["--node", "worker-gpu-01", "--", "echo", "approved run"]);
    let job = lab.job(id);
    assert_eq!(job["state"], "awaiting-approval");
    assert_eq!(job["approvers"], serde_json::json!(["admin", "alice"]));
    let ids = id.to_string();
    lab.admin(&["job", "approve", &ids])
        .fails_with(252, "admin requested this job and may not approve it");
    lab.run(&bob, &["job", "approve", &ids])
        .fails_with(252, "bob is not an approver");
    lab.run(
        &alice,
        &["job", "approve", &ids, "--plan-digest", "sha256:0000"],
    )
    .fails_with(1, "review it with");
    let digest = job["plan_digest"].as_str().unwrap().to_string();
    lab.run(&alice, &["job", "approve", &ids, "--plan-digest", &digest])
        .ok();
    let done = lab.wait_job(id, "exited", T);
    assert_eq!(done["approved_by"], "alice");
    assert_eq!(
        lab.admin(&["job", "logs", &ids]).ok().stdout,
        "approved run\n"
    );
    lab.run(&alice, &["job", "approve", &ids])
        .fails_with(1, "not awaiting approval");

    // A follower of a job that gets denied ends with the denial.
    let follower = lab.spawn(
        &lab.gw_home.clone(),
        &["run", "--node", "worker-gpu-01", "--", "echo", "never"],
    );
    let pending = wait_until(T, "the second job", || {
        let list = lab.jobs();
        list.iter()
            .find(|j| j["state"] == "awaiting-approval")
            .map(|j| j["id"].as_u64().unwrap())
    });
    lab.run(&bob, &["job", "deny", &pending.to_string()])
        .fails_with(252, "only its requester or an approver");
    lab.run(
        &alice,
        &["job", "deny", &pending.to_string(), "--reason", "not today"],
    )
    .ok();
    let out = follower.wait(T);
    assert_eq!(out.code, 252, "{out:?}");
    assert!(
        out.stderr.contains("denied by alice: not today"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    // Following the denied job ends the same way, with the same code.
    lab.admin(&["job", "logs", &pending.to_string(), "--follow"])
        .fails_with(
            252,
            &format!("openclaw: job {pending} denied by alice: not today\n"),
        );
}

#[test]
fn approval_expires_and_self_approval_can_be_allowed() {
    let mut lab = policy_lab("approval_timeout = \"2s\"");
    lab.start_gateway();
    let _g = lab.node_up("worker-gpu-01", "gpu", 0);
    let id = lab.detach(&["--node", "worker-gpu-01", "--", "true"]);
    let job = lab.wait_job(id, "expired", T);
    assert!(
        job["reason"]
            .as_str()
            .unwrap()
            .contains("nobody approved it in time"),
        "{job}"
    );
    // The requester may withdraw their own pending job.
    let id = lab.detach(&["--node", "worker-gpu-01", "--", "true"]);
    lab.admin(&["job", "deny", &id.to_string()]).ok();
    let job = lab.job(id);
    assert_eq!(job["state"], "denied");
    assert!(
        job["reason"]
            .as_str()
            .unwrap()
            .starts_with("withdrawn by admin"),
        "{job}"
    );
}

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
    let id = wait_until(T, "the job to run", || {
        let list = lab.jobs();
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

    // The lab's GPU demo: simulated GPUs come with an nvidia-smi that
    // lists exactly the GPUs the job holds, by the node's index and UUID.
    let uuid = |i: usize| gpus[i]["uuid"].as_str().unwrap().to_string();
    lab.wait_job(id, "exited", T);
    let out = lab
        .run_job(&["--role", "gpu", "--gpus", "1", "--", "nvidia-smi", "-L"])
        .ok();
    assert_eq!(
        out.stdout,
        format!("GPU 0: Simulated GPU 80GB (UUID: {})\n", uuid(0))
    );
    // With GPU 0 held by another job, the next one holds and sees GPU 1.
    let hold = lab.detach(&[
        "--node",
        "worker-gpu-01",
        "--gpus",
        "1",
        "--",
        "sleep",
        "30",
    ]);
    lab.wait_job(hold, "running", T);
    let out = lab
        .run_job(&["--role", "gpu", "--gpus", "1", "--", "nvidia-smi", "-L"])
        .ok();
    assert_eq!(
        out.stdout,
        format!("GPU 1: Simulated GPU 80GB (UUID: {})\n", uuid(1))
    );
    lab.admin(&["job", "cancel", &hold.to_string()]).ok();
    lab.wait_job(hold, "cancelled", T);
    // The default table, in nvidia-smi's shape, with the job's GPUs.
    let out = lab
        .run_job(&["--role", "gpu", "--gpus", "2", "--", "nvidia-smi"])
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
    // A job holding no GPU sees none, as nvidia-smi says it.
    let out = lab.run_job(&[
        "--node",
        "worker-gpu-01",
        "--gpus",
        "0",
        "--",
        "nvidia-smi",
        "-L",
    ]);
    assert_eq!(out.code, 6, "{out:?}");
    assert_eq!(out.stdout, "No devices were found\n");
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
    wait_until(T, &format!("the newest job to be {state}"), || {
        lab.jobs()
            .first()
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
    wait_until(T, "both members to run", || {
        let jobs = lab.jobs();
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
    wait_until(T, "the fan-out to await approval", || {
        let jobs = lab.jobs();
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
