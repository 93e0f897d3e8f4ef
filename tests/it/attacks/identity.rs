use super::claims::copy_dir;
use super::*;

// --- identity and privilege ----------------------------------------------------

#[test]
fn attack_bot_cannot_approve_as_admin_or_another_certificate() {
    let mut lab = lab_with(&[
        ("default = \"allow\"", "default = \"approve\""),
        (
            "approvers = [\"admin\"]",
            "approvers = [\"admin\", \"slack:T0LAB/U0BOSS\"]",
        ),
    ]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let bot = lab.bot("moltbot", "slack:T0LAB");
    let out = lab
        .run(
            &bot,
            &[
                "chat",
                "--user",
                "slack:T0LAB/U0EVE",
                "run echo hi on worker-cpu-01",
            ],
        )
        .ok();
    assert!(out.stdout.contains("awaits approval"), "{}", out.stdout);
    // The review's exploit: the bot names `admin` as the chat user.
    for who in [
        "admin",
        "moltbot",
        "slack:T0OTHER/U0BOSS",
        "wecom:T0LAB/U0BOSS",
    ] {
        let out = lab.run(&bot, &["chat", "--user", who, "approve 1"]).ok();
        assert!(
            out.stdout.contains("refused by policy") && out.stdout.contains("slack:T0LAB"),
            "{who}: {}",
            out.stdout
        );
    }
    let job = lab.job(1);
    assert_eq!(job["state"], "awaiting-approval");
    assert_eq!(job["approved_by"], serde_json::Value::Null);
    // The real approver, in the bot's namespace, can.
    lab.run(&bot, &["chat", "--user", "slack:T0LAB/U0BOSS", "approve 1"])
        .ok();
    let job = lab.wait_job(1, "exited", T);
    assert_eq!(job["approved_by"], "slack:T0LAB/U0BOSS");
    assert_eq!(job["requester"], "slack:T0LAB/U0EVE");
}

#[test]
fn attack_bot_without_a_namespace_cannot_be_made() {
    let mut lab = lab_with(&[]);
    let home = lab.home("bot");
    lab.admin(&[
        "client",
        "create",
        "bot2",
        "--role",
        "bot",
        "--out",
        home.to_str().unwrap(),
    ])
    .fails_with(1, "needs --namespace");
    lab.admin(&[
        "client",
        "create",
        "bot3",
        "--role",
        "bot",
        "--namespace",
        "admin",
        "--out",
        home.to_str().unwrap(),
    ])
    .fails_with(2, "KIND:SCOPE");
}

#[test]
fn attack_policy_cannot_name_bare_chat_ids() {
    let mut lab = Lab::new(BIN);
    edit_file(
        &lab.gw_home.join("gateway.toml"),
        "approvers = [\"admin\"]",
        "approvers = [\"admin\", \"U024BE7LH\"]",
    );
    let out = lab.gateway_start_fails();
    assert!(
        out.stderr.contains("slack:T0123ABCD/U024BE7LH"),
        "{}",
        out.stderr
    );
}

#[test]
fn attack_client_names_are_unique() {
    let mut lab = lab_with(&[]);
    let h = lab.home("x");
    lab.admin(&["client", "create", "admin", "--out", h.to_str().unwrap()])
        .fails_with(1, "already exists");
    lab.second_admin("alice");
    let h = lab.home("y");
    lab.admin(&["client", "create", "alice", "--out", h.to_str().unwrap()])
        .fails_with(1, "client names are unique");
    let list = lab.admin(&["client", "list", "--json"]).ok().stdout;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["admin", "alice"]);
}

#[test]
fn attack_revoked_client_is_cut_off_at_once() {
    let mut lab = lab_with(&[]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let alice = lab.second_admin("alice");
    let id = lab.detach(&["--node", "worker-cpu-01", "--", "sleep", "30"]);
    // Alice follows the job on a live connection.
    let mut follower = lab.spawn(&alice, &["job", "logs", &id.to_string(), "--follow"]);
    wait_until(T, "alice's live connection", || {
        let list = lab.admin(&["client", "list", "--json"]).ok().stdout;
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        list.as_array()?
            .iter()
            .find(|c| c["name"] == "alice" && c["connections"].as_u64() > Some(0))
            .map(|_| ())
    });
    assert!(follower.running());
    let out = lab.admin(&["client", "revoke", "alice"]).ok();
    assert!(
        out.stdout.contains("live connection(s) closed"),
        "{}",
        out.stdout
    );
    // The revocation closes the session itself (no timing is asserted on
    // this shared machine; the time is printed for the record).
    let start = std::time::Instant::now();
    let deadline = start + T;
    while follower.running() {
        // What the follower said, should it not stop: a retry loop shows
        // there (`re-attach failed`, a reconnect note).
        assert!(
            std::time::Instant::now() < deadline,
            "the follower was not cut off within {T:?}; it said: {}",
            follower.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "follower cut off {:?} after the revoke returned",
        start.elapsed()
    );
    assert!(
        follower.stderr().contains("revoked"),
        "{}",
        follower.stderr()
    );
    lab.run(&alice, &["whoami"]).fails_with(77, "revoked");
    // The last admin cannot be revoked by mistake.
    lab.admin(&["client", "revoke", "admin"])
        .fails_with(1, "last active admin");
    // Nothing was lost: the job itself runs on.
    assert_eq!(lab.job(id)["state"], "running");
    let list = lab.admin(&["client", "list"]).ok().stdout;
    assert!(
        list.lines()
            .any(|l| l.starts_with("alice") && l.contains("revoked")),
        "{list}"
    );
}

#[test]
fn attack_renewed_client_certificate_replaces_the_old_one() {
    let mut lab = lab_with(&[]);
    let alice = lab.second_admin("alice");
    let stolen = lab.dir().join("stolen");
    copy_dir(&alice, &stolen);
    let out = lab.run(&alice, &["client", "renew"]).ok();
    assert!(
        out.stdout.contains("old one no longer works"),
        "{}",
        out.stdout
    );
    lab.run(&alice, &["whoami"]).ok();
    lab.run(&stolen, &["whoami"]).fails_with(77, "revoked");
}

#[test]
fn attack_node_revoke_closes_every_connection_and_loses_its_jobs() {
    let mut lab = lab_with(&[]);
    let (_home, mut agent) = lab.node_up("worker-cpu-01", "cpu", 0);
    let id = lab.detach(&["--node", "worker-cpu-01", "--", "sleep", "30"]);
    lab.wait_job(id, "running", T);
    let out = lab.admin(&["node", "revoke", "worker-cpu-01"]).ok();
    assert!(
        out.stdout.contains("1 unfinished job(s) ended"),
        "{}",
        out.stdout
    );
    let job = lab.wait_job(id, "lost", T);
    assert!(job["reason"].as_str().unwrap().contains("revoked"), "{job}");
    wait_until(T, "the revoked agent to exit", || {
        (!agent.running()).then_some(())
    });
}

#[test]
fn attack_a_revoked_nodes_name_inherits_none_of_its_jobs() {
    // The review's exploit: a job queued for train-01 (with a secret in its
    // env) stayed queued after `node revoke train-01`; a new key enrolled
    // under the same name with an auto-approve token and ran it.
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[[policy.rules]]\ncommands = [\"uname\"]\naction = \"approve\"\n"),
    )
    .unwrap();
    lab.start_gateway();
    let token = lab.token(&[
        "--auto-approve",
        "--labels",
        "gpu",
        "--max-gpus",
        "1",
        "--uses",
        "5",
    ]);
    let home = lab.enroll_with(&token, "train-01", "gpu");
    let mut agent = lab.start_gpu_node(&home, 1);
    lab.wait_node("train-01", "connected", T);
    // Every unfinished state: running (holding the GPU), queued behind it
    // with a secret, awaiting approval, and a fan-out member awaiting it.
    let running = lab.detach(&["--node", "train-01", "--gpus", "1", "--", "sleep", "60"]);
    lab.wait_job(running, "running", T);
    let queued = lab.detach(&[
        "--node",
        "train-01",
        "--gpus",
        "1",
        "--queue",
        "10m",
        "--env",
        "SEED=hunter2-secret",
        "--",
        "sh",
        "-c",
        "echo leaked $SEED",
    ]);
    lab.wait_job(queued, "queued", T);
    let held = lab.detach(&["--node", "train-01", "--", "uname", "-a"]);
    lab.wait_job(held, "awaiting-approval", T);
    let out = lab.admin(&["node", "revoke", "train-01"]).ok();
    assert!(
        out.stdout.contains("3 unfinished job(s) ended"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("openclaw node release train-01"),
        "{}",
        out.stdout
    );
    for (id, state) in [
        (running, "lost"),
        (queued, "cancelled"),
        (held, "cancelled"),
    ] {
        let job = lab.wait_job(id, state, T);
        assert!(job["reason"].as_str().unwrap().contains("revoked"), "{job}");
    }
    wait_until(T, "the revoked agent to exit", || {
        (!agent.running()).then_some(())
    });
    // A new key under the revoked name is refused until an admin releases it.
    let thief = lab.home("thief");
    lab.run(
        &thief,
        &[
            "node", "enroll", "--token", &token, "--name", "train-01", "--wait", "5s",
        ],
    )
    .fails_with(77, "openclaw node release train-01");
    // Releasing needs a revoked node, and frees the name; still no old job
    // follows it.
    lab.admin(&["node", "release", "worker-none"])
        .fails_with(1, "no node named");
    lab.admin(&["node", "release", "train-01"]).ok();
    let thief = lab.home("thief2");
    lab.run(
        &thief,
        &[
            "node",
            "enroll",
            "--token",
            &token,
            "--name",
            "train-01",
            "--wait",
            "20s",
            "--allow-jobs-as-agent-user",
        ],
    )
    .ok();
    let _thief_agent = lab.start_gpu_node(&thief, 1);
    lab.wait_node("train-01", "connected", T);
    // The new node works, and the old jobs stay ended with no output.
    lab.run_job(&["--node", "train-01", "--", "true"]).ok();
    for (id, state) in [
        (running, "lost"),
        (queued, "cancelled"),
        (held, "cancelled"),
    ] {
        assert_eq!(lab.job(id)["state"], state, "job {id}");
    }
    let logs = lab.admin(&["job", "logs", &queued.to_string()]);
    assert!(!logs.stdout.contains("hunter2"), "{}", logs.stdout);
    // Approving the held job now is refused: it ended with its node.
    lab.admin(&["job", "approve", &held.to_string()])
        .fails_with(1, "cancelled");
}

#[test]
fn attack_node_and_client_names_share_one_namespace() {
    let mut lab = lab_with(&[]);
    let token = lab.token(&["--auto-approve", "--uses", "5"]);
    // A node may not enroll under an admin's or a bot's name...
    lab.bot("carol", "slack:T0LAB");
    for name in ["admin", "carol"] {
        let home = lab.home(&format!("n-{name}"));
        lab.run(
            &home,
            &[
                "node", "enroll", "--token", &token, "--name", name, "--wait", "5s",
            ],
        )
        .fails_with(77, "client credential");
    }
    // ...a revoked client's name included...
    lab.admin(&["client", "revoke", "carol"]).ok();
    let home = lab.home("n-carol2");
    lab.run(
        &home,
        &[
            "node", "enroll", "--token", &token, "--name", "carol", "--wait", "5s",
        ],
    )
    .fails_with(77, "client credential");
    // ...nor the gateway's...
    let home = lab.home("n-gw");
    lab.run(
        &home,
        &[
            "node", "enroll", "--token", &token, "--name", "test-gw", "--wait", "5s",
        ],
    )
    .fails_with(77, "a gateway");
    let out = lab.home("c-gw");
    lab.admin(&[
        "client",
        "create",
        "test-gw",
        "--out",
        out.to_str().unwrap(),
    ])
    .fails_with(1, "gateway's name");
    // ...and a client may not take a node's name, in any node state.
    let _n = lab.enroll_with(&token, "dave", "");
    let out = lab.home("c-dave");
    lab.admin(&["client", "create", "dave", "--out", out.to_str().unwrap()])
        .fails_with(1, "node's name");
    lab.admin(&["node", "revoke", "dave"]).ok();
    lab.admin(&["client", "create", "dave", "--out", out.to_str().unwrap()])
        .fails_with(1, "node's name");
}

#[test]
fn attack_node_refuses_to_enroll_into_the_gateway_home() {
    let lab = lab_with(&[]);
    let token = lab.token(&["--auto-approve"]);
    let gw = lab.gw_home.clone();
    lab.run(
        &gw,
        &[
            "node", "enroll", "--token", &token, "--name", "sneaky", "--wait", "5s",
        ],
    )
    .fails_with(2, "holds a gateway CA key");
}

#[test]
fn attack_agent_without_run_as_refuses_jobs() {
    let mut lab = lab_with(&[]);
    let home = lab.enroll("worker-cpu-01", "cpu");
    edit_file(
        &home.join("node.toml"),
        "allow_jobs_as_agent_user = true",
        "allow_jobs_as_agent_user = false",
    );
    let agent = lab.start_node(&home);
    lab.wait_node("worker-cpu-01", "connected", T);
    lab.run_job(&["--node", "worker-cpu-01", "--", "cat", "node.key"])
        .fails_with(252, "could read its private key");
    assert!(
        agent.stderr().contains("refuse every job"),
        "{}",
        agent.stderr()
    );
}
