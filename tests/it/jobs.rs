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
    let waiting = lab.wait_jobs(T, "the job to queue", |jobs| {
        jobs.into_iter()
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

pub(crate) fn policy_lab(extra: &str) -> Lab {
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
    let pending = lab.wait_jobs(T, "the second job", |list| {
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
