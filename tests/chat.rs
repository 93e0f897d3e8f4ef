//! `openclaw chat`: the moltbot grammar against a real gateway and node.
//! (The Slack transport itself is not built yet; see the moltbot issue.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use testkit::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");

fn lab() -> Lab {
    let mut lab = Lab::with_config(BIN, |cfg| {
        // These tests exercise the grammar, not approvals: chat jobs run.
        assert!(cfg.contains("chat_default = \"approve\""), "{cfg}");
        *cfg = cfg.replace("chat_default = \"approve\"", "chat_default = \"allow\"");
        cfg.push_str(
            r#"
[jobs.training]
command = ["python", "train.py"]
role = "gpu"
aliases = ["train model"]
"#,
        )
    });
    lab.start_gateway();
    lab
}

fn dry(lab: &Lab, msg: &str) -> serde_json::Value {
    let out = lab.admin(&["chat", "--dry-run", msg]).ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn dry_run_prints_the_routed_tool_call() {
    let mut lab = lab();
    let _g = lab.node_up("worker-gpu-01", "gpu", 1);
    let v = dry(&lab, "@moltbot run training on worker-gpu-01");
    assert_eq!(v["tool"], "system.run");
    assert_eq!(v["host"], "node");
    assert_eq!(v["node"], "worker-gpu-01");
    assert_eq!(v["cmd"], serde_json::json!(["python", "train.py"]));
    assert_eq!(v["named_job"], "training");
    assert_eq!(v["policy"]["decision"], "allow");
    let v = dry(
        &lab,
        "<@U024BE7LH> run python train.py --epochs 3 on worker-gpu-01",
    );
    assert_eq!(
        v["cmd"],
        serde_json::json!(["python", "train.py", "--epochs", "3"])
    );
    let v = dry(&lab, "@moltbot run train.py on worker-gpu-01");
    assert_eq!(v["cmd"], serde_json::json!(["python", "train.py"]));
    let v = dry(&lab, "@moltbot use worker-gpu-01 to train model");
    assert_eq!(v["named_job"], "training");
    let v = dry(&lab, "@moltbot run training (gpu)");
    assert_eq!(
        (v["node"].as_str(), v["role"].as_str()),
        (Some("worker-gpu-01"), Some("gpu"))
    );
    let v = dry(&lab, "@moltbot use GPU please");
    assert!(
        v["reply"].as_str().unwrap().contains("what should I run"),
        "{v}"
    );
    let v = dry(&lab, "@moltbot run training on wrker-gpu-01");
    assert!(
        v["reply"]
            .as_str()
            .unwrap()
            .contains("did you mean worker-gpu-01?"),
        "{v}"
    );
    // Nothing ran.
    let jobs = lab.jobs();
    assert!(jobs.is_empty());
}

#[test]
fn chat_runs_jobs_for_the_chat_user() {
    let mut lab = lab();
    let _g = lab.node_up("worker-gpu-01", "gpu", 1);
    let out = lab
        .admin(&["chat", "run echo hello from chat on worker-gpu-01"])
        .ok();
    assert!(
        out.stdout
            .contains("job 1 on worker-gpu-01: echo hello from chat"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("hello from chat\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("job 1 exited, exit code 0"),
        "{}",
        out.stdout
    );
    // The bot acts for a Slack user; the job records that user.
    let bot = lab.dir().join("moltbot");
    lab.admin(&[
        "client",
        "create",
        "moltbot",
        "--role",
        "bot",
        "--namespace",
        "slack:T0LAB",
        "--out",
        bot.to_str().unwrap(),
    ])
    .ok();
    let out = lab
        .run(
            &bot,
            &[
                "chat",
                "--user",
                "slack:T0LAB/U024BE7LH",
                "run echo hi on worker-gpu-01",
            ],
        )
        .ok();
    assert!(out.stdout.contains("exit code 0"), "{}", out.stdout);
    assert_eq!(lab.job(2)["requester"], "slack:T0LAB/U024BE7LH");
    // The bot may not manage nodes, and an admin may not pose as a chat user.
    lab.run(&bot, &["node", "approve", "x"])
        .fails_with(77, "permission denied");
    let out = lab
        .admin(&[
            "chat",
            "--user",
            "slack:T0LAB/U1",
            "run echo x on worker-gpu-01",
        ])
        .ok();
    assert!(
        out.stdout
            .contains("only the bot may act on behalf of chat users"),
        "{}",
        out.stdout
    );
    let status = lab.admin(&["chat", "status"]).ok().stdout;
    assert!(status.starts_with("ID"), "{status}");
    assert!(
        lab.admin(&["chat", "help"])
            .ok()
            .stdout
            .contains("run training on worker-gpu-01")
    );
    // A fan-out from the prompt: every node's line, then the summary.
    let _c = lab.node_up("worker-cpu-01", "cpu", 0);
    let out = lab.admin(&["chat", "run echo fan on all nodes"]).ok();
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "fan-out 1: 2 node(s): 2 ok",
            "worker-cpu-01: fan",
            "worker-gpu-01: fan"
        ],
        "{}",
        out.stdout
    );
}
