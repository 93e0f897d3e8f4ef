//! `openclaw chat`: the moltbot grammar against a real gateway and node.
//! (The Slack transport itself is not built yet; see the moltbot issue.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use testkit::Lab;
use testkit::swarm::{Swarm, SwarmOptions};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

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
    // Replies are chat replies, not the admin's tables: `status` is the
    // short job list, `status N` reads its times as people do.
    let status = lab.admin(&["chat", "status"]).ok().stdout;
    assert!(
        status.starts_with("Your recent jobs, newest first:\n✅ 2 exited 0 on worker-gpu-01, "),
        "{status}"
    );
    let one = lab.admin(&["chat", "status 2"]).ok().stdout;
    assert!(
        one.starts_with("✅ job 2 on worker-gpu-01 exited with code 0 after "),
        "{one}"
    );
    assert!(
        one.contains("asked by slack:T0LAB/U024BE7LH ")
            && (one.contains(" ago (") || one.contains("just now ("))
            && one.contains(" UTC)"),
        "{one}"
    );
    assert!(
        one.contains("\nstarted ") && one.contains(", ran "),
        "{one}"
    );
    let created = lab.job(2)["created_at"].as_u64().unwrap().to_string();
    assert!(!one.contains(&created), "no raw unix time: {one}");
    // `logs N` answers as the bots do (one dispatch for every front
    // end): the chat snippet of the job's log, not the raw whole log.
    let logs = lab.admin(&["chat", "logs 1"]).ok().stdout;
    assert_eq!(
        logs, "Log of job 1:\n```\nhello from chat\n\n```\n",
        "{logs}"
    );
    // An unknown job is answered in chat terms.
    let none = lab.admin(&["chat", "status 99"]).ok().stdout;
    assert!(
        none.contains("no job 99") && none.contains("`jobs`") && !none.contains("openclaw"),
        "{none}"
    );
    // `jobs` lists what the chat user may see: their job, not the admin's.
    let mine = lab
        .run(
            &bot,
            &["chat", "--user", "slack:T0LAB/U024BE7LH", "my jobs"],
        )
        .ok()
        .stdout;
    assert!(mine.contains("✅ 2 exited 0 on worker-gpu-01"), "{mine}");
    assert!(!mine.contains("✅ 1 "), "{mine}");
    let theirs = lab
        .run(&bot, &["chat", "--user", "slack:T0LAB/U0OTHER", "jobs"])
        .ok()
        .stdout;
    assert!(theirs.contains("You have no jobs yet"), "{theirs}");
    let nodes = lab.admin(&["chat", "nodes"]).ok().stdout;
    assert_eq!(
        nodes, "1 node:\n🟢 worker-gpu-01: healthy · 1/1 GPU free · gpu\n",
        "no fingerprints, addresses or expiry in chat"
    );
    let help = lab.admin(&["chat", "help"]).ok().stdout;
    for want in [
        "`run training`, `run training on worker-gpu-01`",
        "`run nvidia-smi on all gpu nodes`",
        "Named jobs you may start: `training` (or \"train model\").",
    ] {
        assert!(help.contains(want), "{want}: {help}");
    }
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

#[test]
fn chat_lists_page_past_fifty_nodes_and_ten_jobs_and_count_confirmed_gpus() {
    let mut lab = Lab::with_config(BIN, |cfg| {
        *cfg = cfg.replace("rate_per_minute = 60", "rate_per_minute = 100000");
        assert!(cfg.contains("rate_per_minute = 100000"), "the edit matched");
    });
    lab.start_gateway();
    // Each node reports two GPUs; the token confirms one.
    let token = lab.token(&[
        "--auto-approve",
        "--uses",
        "53",
        "--labels",
        "sim",
        "--max-gpus",
        "1",
    ]);
    let opts = SwarmOptions {
        nodes: 53,
        endpoints: 2,
        gpus: 2,
        ..Default::default()
    };
    let _swarm = Swarm::start(
        &lab.dir().join("swarm"),
        lab.addr.as_deref().unwrap(),
        &token,
        &opts,
        Duration::from_secs(60),
    )
    .unwrap();
    let bot = lab.bot("moltbot", "slack:T0LAB");
    let chat = |msg: &str| {
        lab.run(&bot, &["chat", "--user", "slack:T0LAB/U1", msg])
            .ok()
            .stdout
    };
    // Connected nodes show their GPUs from their first heartbeat on.
    let first = testkit::wait_until(T, "every node's first heartbeat", || {
        let page = chat("nodes");
        (page.matches("1/1 GPU free").count() == 50).then_some(page)
    });
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 52, "{first}");
    assert_eq!(lines[0], "Nodes 1–50 of 53:");
    assert_eq!(lines[1], "🟢 sim-00001: healthy · 1/1 GPU free · sim");
    assert!(lines[50].starts_with("🟢 sim-00050: "), "{first}");
    assert_eq!(lines[51], "…and 3 more; say `nodes 2`.");
    let second = testkit::wait_until(T, "every node's first heartbeat", || {
        let page = chat("nodes 2");
        (page.matches("1/1 GPU free").count() == 3).then_some(page)
    });
    assert_eq!(
        second.lines().collect::<Vec<_>>(),
        [
            "Nodes 51–53 of 53:",
            "🟢 sim-00051: healthy · 1/1 GPU free · sim",
            "🟢 sim-00052: healthy · 1/1 GPU free · sim",
            "🟢 sim-00053: healthy · 1/1 GPU free · sim",
        ],
        "{second}"
    );
    assert!(chat("nodes 9").contains("There are 53 nodes on 2 pages"));
    // Job lists page the same way: 53 jobs, ten to a page.
    lab.admin(&["run", "--all", "--", "echo", "x"]).ok();
    let jobs = |msg: &str| lab.admin(&["chat", msg]).ok().stdout;
    let first = jobs("jobs");
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 12, "{first}");
    assert!(lines[1].starts_with("✅ 53 exited 0 on sim-"), "{first}");
    assert!(lines[10].starts_with("✅ 44 exited 0 on sim-"), "{first}");
    assert_eq!(lines[11], "Older ones: say `jobs 2`. `status N` shows one.");
    let last = jobs("jobs 6");
    let lines: Vec<&str> = last.lines().collect();
    assert_eq!(lines[0], "Your jobs, page 6:", "{last}");
    assert!(lines[3].starts_with("✅ 1 exited 0 on sim-"), "{last}");
    assert_eq!(lines[4], "`status N` shows one.", "{last}");
    assert!(jobs("jobs 7").contains("No older jobs"));
}
