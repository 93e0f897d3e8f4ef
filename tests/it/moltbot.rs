//! moltbot end to end: the real slack-morphism client in Socket Mode
//! against a local Slack emulator, a real gateway and real nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use testkit::slack::SlackEmulator;
use testkit::{Lab, Proc, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);
const BOT_TOKEN: &str = "xoxb-test-secret-token";

struct World {
    lab: Lab,
    slack: SlackEmulator,
    bot: Proc,
    _nodes: Vec<Proc>,
}

/// The lab's usual moltbot.toml: users and a group listed, no channel list.
const BOT_TOML: &str = "allowed_users = [\"U0ALICE\", \"U0BOSS\", \"U0BOB\", \"U0DAN\"]\nallowed_groups = [\"S0OPS\"]\napprovals = \"both\"\n[users.U0BOB]\nnodes = [\"worker-cpu-*\"]\n[users.U0DAN]\nroles = [\"cpu\"]\n";

fn world() -> World {
    world_with(BOT_TOML)
}

fn world_with(bot_toml: &str) -> World {
    let mut lab = Lab::with_config(BIN, |cfg| {
        testkit::set_chat_test_policy(cfg, "slack:T0LAB/U0BOSS");
        cfg.push_str("\n[jobs.training]\ncommand = [\"sh\", \"-c\", \"echo training on $OPENCLAW_NODE\"]\nrole = \"cpu\"\n");
    });
    lab.start_gateway();
    let (_, g) = lab.node_up("worker-gpu-01", "gpu", 1);
    let (_, c) = lab.node_up("worker-cpu-01", "cpu", 0);
    let bot_home = lab.dir().join("moltbot");
    lab.admin(&[
        "client",
        "create",
        "moltbot",
        "--role",
        "bot",
        "--namespace",
        "slack:T0LAB",
        "--out",
        bot_home.to_str().unwrap(),
    ])
    .ok();
    std::fs::write(bot_home.join("moltbot.toml"), bot_toml).unwrap();
    let slack = SlackEmulator::start();
    slack.set_group("S0OPS", &["U0CAROL"]);
    let bot = spawn_bot(&mut lab, &bot_home, &slack.api_url);
    wait_until(T, "moltbot to open Socket Mode", || {
        slack.connected().then_some(())
    });
    World {
        lab,
        slack,
        bot,
        _nodes: vec![g, c],
    }
}

fn spawn_bot(lab: &mut Lab, home: &std::path::Path, api: &str) -> Proc {
    // The tokens reach only this child, through its environment.
    let script = format!(
        "SLACK_API_URL={api} SLACK_BOT_TOKEN={BOT_TOKEN} SLACK_APP_TOKEN=xapp-test exec {BIN} --home {} moltbot run",
        home.display()
    );
    lab.spawn_cmd("sh", &["-c", &script])
}

#[test]
fn a_job_from_slack_runs_and_its_message_is_edited_in_place() {
    let w = world();
    let ts = w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run sh -c 'for i in 1 2 3; do echo line$i; sleep 0.6; done' on worker-cpu-01",
    );
    // One message in the request's thread, then edits of that message only.
    wait_until(T, "the job message", || {
        w.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["thread_ts"] == ts.as_str())
    });
    let done = wait_until(T, "the final edit", || {
        let ups = w.slack.calls_of("chat.update");
        ups.iter()
            .any(|u| {
                u.body["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("exited with code 0")
            })
            .then_some(ups)
    });
    assert!(
        done.len() >= 2,
        "expected edits while running, got {done:?}"
    );
    let my_ts = wait_until(T, "the job message ts", || {
        done.first()
            .and_then(|u| u.body["ts"].as_str().map(str::to_string))
    });
    assert!(
        done.iter().all(|u| u.body["ts"] == my_ts.as_str()),
        "every edit targets the one job message"
    );
    assert!(
        done.iter().any(|u| {
            u.body["text"]
                .as_str()
                .unwrap_or_default()
                .contains("running on worker-cpu-01")
        }),
        "{:?}",
        done.iter()
            .map(|u| u.body["text"].to_string())
            .collect::<Vec<_>>()
    );
    for pair in done.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(900),
            "two edits {gap:?} apart: at most one per second"
        );
    }
    // The final edit carries the output, not just the exit code.
    let last = done.last().unwrap().body["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.starts_with("✅ job 1 on worker-cpu-01 exited with code 0")
            && last.contains("out| line1\nout| line2\nout| line3"),
        "{last}"
    );
    // The job ran for the Slack user.
    assert_eq!(w.lab.job(1)["requester"], "slack:T0LAB/U0ALICE");
    assert_eq!(
        w.lab.admin(&["job", "logs", "1"]).ok().stdout,
        "line1\nline2\nline3\n"
    );
    // Tokens never reach the log.
    assert!(!w.bot.stderr().contains(BOT_TOKEN));
}

#[test]
fn rate_limits_are_honoured() {
    let w = world();
    w.slack.rate_limit_next("chat.update", 2);
    let _ts = w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run sh -c 'echo a; sleep 1.5; echo b; sleep 1.5' on worker-cpu-01",
    );
    let ups = wait_until(T, "edits after a 429", || {
        let ups = w.slack.calls_of("chat.update");
        ups.iter()
            .any(|u| {
                u.body["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("exited with code 0")
            })
            .then_some(ups)
    });
    // The first edit was refused with Retry-After: 2; the retry waited that long.
    let gap = ups[1].at.duration_since(ups[0].at);
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?}, before Retry-After"
    );
}

#[test]
fn approvals_by_button_are_checked_at_the_gateway() {
    let w = world();
    let ts = w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run echo approved run on worker-gpu-01",
    );
    let ask = approval_request(&w, &ts);
    let blocks = ask.body["blocks"].to_string();
    // approvals = "both": the approver also gets a DM with the buttons.
    let dm = wait_until(T, "the DM to the approver", || {
        w.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["channel"] == "DU0BOSS")
    });
    assert!(
        dm.body["blocks"]
            .to_string()
            .contains("\"action_id\":\"approve\"")
    );
    assert!(blocks.contains("\"action_id\":\"deny\""), "{blocks}");
    // A click by someone who is not an approver: an ephemeral "not allowed".
    w.slack.click("U0BOB", "C0LAB", "x", "approve", "1");
    let eph = wait_until(T, "the refusal", || {
        w.slack.calls_of("chat.postEphemeral").into_iter().next()
    });
    assert_eq!(eph.body["user"], "U0BOB");
    assert!(
        eph.body["text"].as_str().unwrap().contains("Not allowed"),
        "{}",
        eph.body
    );
    assert_eq!(w.lab.job(1)["state"], "awaiting-approval");
    // The approver's click runs it.
    w.slack.click("U0BOSS", "C0LAB", "x", "approve", "1");
    let job = w.lab.wait_job(1, "exited", T);
    assert_eq!(job["approved_by"], "slack:T0LAB/U0BOSS");
    final_edit(&w.slack, "exited with code 0");
    // A click on a finished job says so.
    w.slack.click("U0BOSS", "C0LAB", "x", "approve", "1");
    wait_until(T, "the second ephemeral", || {
        w.slack
            .calls_of("chat.postEphemeral")
            .into_iter()
            .any(|c| {
                c.body["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not awaiting approval")
            })
            .then_some(())
    });
}

#[test]
fn grammar_access_control_and_simple_commands() {
    let w = world();
    let reply_to = |user: &str, text: &str| reply(&w, user, text);
    assert!(reply_to("U0STRANGER", "<@U0MOLT> nodes").contains("registered users"));
    // A member of an allowed user group is admitted.
    assert!(reply_to("U0CAROL", "<@U0MOLT> nodes").contains("worker-gpu-01"));
    // A chat node list: health, confirmed GPUs free, labels; none of the
    // admin table's fingerprints, addresses or certificate dates.
    assert_eq!(
        reply_to("U0ALICE", "<@U0MOLT> nodes"),
        "2 nodes:\n🟢 worker-cpu-01: healthy · cpu\n🟢 worker-gpu-01: healthy · 1/1 GPU free · gpu"
    );
    // Help lists the named jobs each user may start and the fan-out form
    // they may use.
    let help = reply_to("U0ALICE", "<@U0MOLT> help");
    for want in [
        "`run training`, `run training on worker-cpu-01`",
        "`run nvidia-smi on all gpu nodes`, `run uptime on all nodes`: on every matching node at once (a fan-out)",
        "Named jobs you may start: `training`.",
    ] {
        assert!(help.contains(want), "{want}: {help}");
    }
    let bob = reply_to("U0BOB", "<@U0MOLT> help");
    assert!(!bob.contains("fan-out"), "limited to some nodes: {bob}");
    let dan = reply_to("U0DAN", "<@U0MOLT> help");
    assert!(dan.contains("`run uptime on all cpu nodes`"), "{dan}");
    assert!(!dan.contains("all gpu nodes"), "{dan}");
    assert!(reply_to("U0ALICE", "<@U0MOLT> run this somewhere").contains("what should I run"));
    assert!(
        reply_to("U0ALICE", "<@U0MOLT> run training on wrker-gpu-01")
            .contains("did you mean worker-gpu-01?")
    );
    assert!(
        reply_to("U0BOB", "<@U0MOLT> run echo x on worker-gpu-01")
            .contains("may not use the node worker-gpu-01")
    );
}

#[test]
fn attack_a_role_limit_holds_when_the_node_is_named() {
    // The review's bypass: a `roles` limit refused `run … (gpu)` but not
    // `run … on worker-gpu-01`. Limits are checked on the node the job
    // lands on, its roles and labels, on every path.
    let w = world();
    let reply_to = |user: &str, text: &str| reply(&w, user, text);
    for text in [
        "<@U0MOLT> run echo x on worker-gpu-01",
        "<@U0MOLT> run echo x (gpu)",
    ] {
        let r = reply_to("U0DAN", text);
        assert!(
            r.contains("only nodes with the role cpu") || r.contains("may not use the role gpu"),
            "{text}: {r}"
        );
    }
    // The cpu node is fine, named or by role; it waits for approval.
    let r = reply_to("U0DAN", "<@U0MOLT> run echo x on worker-cpu-01");
    assert!(!r.contains("sorry"), "{r}");
    assert!(
        w.lab.jobs().iter().all(|j| j["node"] != "worker-gpu-01"),
        "{:?}",
        w.lab.jobs()
    );
}

/// The message with Approve/Deny buttons in the thread of `ts`.
fn approval_request(w: &World, ts: &str) -> testkit::slack::Call {
    wait_until(T, "the approval request", || {
        w.slack.calls_of("chat.postMessage").into_iter().find(|c| {
            c.body["thread_ts"] == ts
                && c.body["blocks"]
                    .to_string()
                    .contains("\"action_id\":\"approve\"")
        })
    })
}

/// Mentions the bot as `user` in C0LAB and returns its reply in the thread.
fn reply(w: &World, user: &str, text: &str) -> String {
    let ts = w.slack.mention(user, "C0LAB", text);
    wait_until(T, "a reply", || {
        w.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["thread_ts"] == ts.as_str())
            .map(|c| c.body["text"].as_str().unwrap_or_default().to_string())
    })
}

fn final_edit(slack: &SlackEmulator, needle: &str) {
    wait_until(Duration::from_secs(60), needle, || {
        slack
            .calls_of("chat.update")
            .into_iter()
            .any(|u| u.body["text"].as_str().unwrap_or_default().contains(needle))
            .then_some(())
    });
}

#[test]
fn moltbot_rides_out_a_gateway_restart_and_a_socket_drop() {
    let mut w = world();
    w.slack.mention("U0ALICE", "C0LAB", "<@U0MOLT> run sh -c 'for i in 1 2 3 4 5 6; do echo tick$i; sleep 0.5; done' on worker-cpu-01");
    wait_until(T, "the job to run", || {
        let out = w.lab.admin(&["job", "show", "1", "--json"]);
        (out.code == 0 && out.stdout.contains("\"running\"")).then_some(())
    });
    w.lab.stop_gateway(true);
    w.lab.start_gateway();
    // The job message still reaches its end: moltbot reconnected and resumed following.
    final_edit(&w.slack, "job 1 on worker-cpu-01 exited with code 0");
    assert_eq!(
        w.lab.admin(&["job", "logs", "1"]).ok().stdout,
        (1..=6).map(|i| format!("tick{i}\n")).collect::<String>()
    );

    // Slack drops the socket; slack-morphism reconnects and the next mention is served.
    w.slack.drop_sockets();
    wait_until(T, "a new Socket Mode connection", || {
        w.slack.connected().then_some(())
    });
    let ts = w.slack.mention("U0ALICE", "C0LAB", "<@U0MOLT> nodes");
    wait_until(T, "a reply after reconnecting", || {
        w.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["thread_ts"] == ts.as_str())
    });
}

#[test]
fn long_logs_are_uploaded_as_a_file_or_sent_as_a_snippet() {
    let w = world();
    let ts = w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run seq 1 2000 on worker-cpu-01",
    );
    // The final message has the last lines; the whole log goes up as a file
    // in the request's thread, through the two-step external upload.
    final_edit(&w.slack, "out| 2000");
    let file = wait_until(T, "the uploaded log", || w.slack.files().into_iter().next());
    let want: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&file.content), want);
    assert_eq!(file.title, "job-1.log");
    assert_eq!(
        (file.channel.as_str(), file.thread_ts.as_str()),
        ("C0LAB", ts.as_str())
    );
    let asked = w.slack.calls_of("files.getUploadURLExternal");
    assert_eq!(asked[0].body["length"], want.len().to_string().as_str());

    // An app without files:write: a snippet of the end, pointing at the CLI.
    w.slack.refuse_uploads();
    let ts = w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run seq 1 3000 on worker-cpu-01",
    );
    let snippet = wait_until(T, "the log snippet", || {
        w.slack.calls_of("chat.postMessage").into_iter().find(|c| {
            c.body["thread_ts"] == ts.as_str()
                && c.body["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("openclaw job logs 2")
        })
    });
    let text = snippet.body["text"].as_str().unwrap();
    assert!(text.contains("2999\n3000"), "{text}");
    assert_eq!(w.slack.files().len(), 1, "no second file");
}

#[test]
fn the_final_message_shows_output_with_stderr_marked_and_a_failures_stderr() {
    let w = world();
    w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run sh -c 'echo epoch 1; echo epoch 2; echo CUDA out of memory >&2; exit 3' on worker-cpu-01",
    );
    final_edit(&w.slack, "exited with code 3");
    let last = w.slack.calls_of("chat.update").pop().unwrap();
    let text = last.body["text"].as_str().unwrap();
    assert!(
        text.starts_with("❌ job 1 on worker-cpu-01 exited with code 3 after"),
        "{text}"
    );
    assert!(text.contains("out| epoch 1\nout| epoch 2"), "{text}");
    assert!(text.contains("err| CUDA out of memory"), "{text}");
    // The headline example: the lab-style named job, resolved by the gateway.
    w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run training on worker-cpu-01",
    );
    final_edit(&w.slack, "out| training on worker-cpu-01");
}

#[test]
fn a_running_gpu_jobs_message_shows_its_gpu_from_heartbeats() {
    let w = world();
    w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run sh -c 'echo start; sleep 6; echo end' (gpu)",
    );
    w.lab.wait_job(1, "awaiting-approval", T);
    w.slack.click("U0BOSS", "C0LAB", "x", "approve", "1");
    // Simulated GPUs report through the same heartbeat as NVML ones.
    wait_until(T, "a running edit with the job's GPU", || {
        w.slack
            .calls_of("chat.update")
            .into_iter()
            .map(|u| u.body["text"].as_str().unwrap_or_default().to_string())
            .find(|t| t.contains("running on worker-gpu-01, 1 GPU") && t.contains("🖥️ GPU 0"))
    });
    final_edit(&w.slack, "out| end");
}

#[test]
fn attack_slack_connect_guests_and_other_workspaces_are_ignored() {
    let w = world();
    // Alice's job waits for approval on the GPU node.
    let ts = w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run echo guarded on worker-gpu-01",
    );
    wait_until(T, "the approval request", || {
        w.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["thread_ts"] == ts.as_str() && c.body["blocks"].is_array())
    });
    // The same user ids from another workspace (a Slack Connect channel):
    // no reply, no job, no approval.
    let other = w.slack.mention_in_team(
        "T0OTHER",
        "U0ALICE",
        "C0SHARED",
        "<@U0MOLT> run echo guest on worker-cpu-01",
    );
    w.slack
        .click_from_team("T0OTHER", "U0BOSS", "C0LAB", "x", "approve", "1");
    // Both events dropped, each with a log line.
    wait_until(T, "both events to be ignored", || {
        (w.bot.stderr().matches("another Slack team").count() >= 2).then_some(())
    });
    assert!(
        !w.slack
            .calls_of("chat.postMessage")
            .iter()
            .any(|c| c.body["thread_ts"] == other.as_str()),
        "moltbot answered another workspace"
    );
    assert_eq!(w.lab.jobs().len(), 1);
    assert_eq!(w.lab.job(1)["state"], "awaiting-approval");
    assert!(w.bot.stderr().contains("another Slack team"));
}

/// The bot's answer to a direct message from `user` sent at `ts`.
fn dm_reply(w: &World, user: &str, ts: &str) -> String {
    wait_until(T, "the answer to a DM", || {
        w.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| c.body["channel"] == format!("D{user}").as_str() && c.body["thread_ts"] == ts)
            .map(|c| c.body["text"].as_str().unwrap_or_default().to_string())
    })
}

/// Restarts moltbot with another moltbot.toml.
fn restart_bot(w: &mut World, bot_toml: &str) {
    w.bot.kill();
    w.slack.drop_sockets();
    let home = w.lab.dir().join("moltbot");
    std::fs::write(home.join("moltbot.toml"), bot_toml).unwrap();
    let api = w.slack.api_url.clone();
    w.bot = spawn_bot(&mut w.lab, &home, &api);
    wait_until(T, "the restarted moltbot to connect", || {
        w.slack.connected().then_some(())
    });
}

#[test]
fn attack_a_direct_message_does_not_bypass_the_channel_allowlist() {
    // The lab answers anyone in #lab and lists nobody by name.
    let mut w = world_with("allowed_channels = [\"C0LAB\"]\n");
    // A workspace member outside #lab asks by DM: refused, and no job.
    let ts = w
        .slack
        .direct("U0MALLORY", "run echo dm-bypass on worker-cpu-01");
    let r = dm_reply(&w, "U0MALLORY", &ts);
    assert!(r.contains("listed by name"), "{r}");
    let ts = w.slack.direct("U0MALLORY", "nodes");
    let r = dm_reply(&w, "U0MALLORY", &ts);
    assert!(!r.contains("worker-cpu-01"), "{r}");
    // In #lab the same user is answered: the channel admits them there.
    // Every message above was answered, the refusal included: nothing of
    // them is still on its way to the gateway.
    assert!(reply(&w, "U0MALLORY", "<@U0MOLT> nodes").contains("worker-cpu-01"));
    assert!(w.lab.jobs().is_empty(), "{:?}", w.lab.jobs());

    // Users listed by name are answered by DM; others are not.
    restart_bot(
        &mut w,
        "allowed_channels = [\"C0LAB\"]\nallowed_users = [\"U0ALICE\"]\n",
    );
    let ts = w.slack.direct("U0ALICE", "nodes");
    assert!(dm_reply(&w, "U0ALICE", &ts).contains("worker-cpu-01"));
    let ts = w
        .slack
        .direct("U0MALLORY", "run echo dm-bypass on worker-cpu-01");
    assert!(dm_reply(&w, "U0MALLORY", &ts).contains("registered users"));

    // Only an operator's explicit allow_dms = true opens DMs to everyone
    // the channel list admits.
    restart_bot(&mut w, "allowed_channels = [\"C0LAB\"]\nallow_dms = true\n");
    let ts = w.slack.direct("U0MALLORY", "nodes");
    assert!(dm_reply(&w, "U0MALLORY", &ts).contains("worker-cpu-01"));
    assert!(w.lab.jobs().is_empty(), "{:?}", w.lab.jobs());
}

#[test]
fn attack_a_slack_connect_guest_from_another_team_is_ignored_in_a_shared_channel() {
    // #lab answers anyone in it, and is shared with another organisation
    // by Slack Connect.
    let w = world_with("allowed_channels = [\"C0LAB\"]\nallow_dms = true\n");
    // A guest of T0GUEST mentions the bot in #lab. As Slack sends it, the
    // event's team_id is ours (the installing workspace); only user_team
    // (and users.info) say the sender is not one of ours.
    let ts = w.slack.mention_from_team(
        "T0GUEST",
        "U0GUEST",
        "C0LAB",
        "<@U0MOLT> run echo guest on worker-cpu-01",
    );
    let dm = w
        .slack
        .direct("U0GUEST", "run echo guest-dm on worker-cpu-01");
    // Both events dropped, each with a log line.
    wait_until(T, "both events to be ignored", || {
        (w.bot.stderr().matches("another Slack team").count() >= 2).then_some(())
    });
    assert!(
        !w.slack
            .calls_of("chat.postMessage")
            .iter()
            .any(|c| c.body["thread_ts"] == ts.as_str() || c.body["thread_ts"] == dm.as_str()),
        "moltbot answered a Slack Connect guest"
    );
    assert!(w.lab.jobs().is_empty(), "{:?}", w.lab.jobs());
    assert!(
        w.bot.stderr().contains("another Slack team"),
        "{}",
        w.bot.stderr()
    );
    // A member of our workspace in the same channel is served.
    w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run echo member on worker-cpu-01",
    );
    let job = w.lab.wait_job(1, "exited", T);
    assert_eq!(job["requester"], "slack:T0LAB/U0ALICE");
    // A sender whose team cannot be told (users.info refused) is not
    // served either.
    w.slack.refuse_users_info();
    let ts = w.slack.mention(
        "U0NEWCOMER",
        "C0LAB",
        "<@U0MOLT> run echo unknown on worker-cpu-01",
    );
    wait_until(T, "the refusal to be logged", || {
        w.bot
            .stderr()
            .contains("cannot tell which Slack team")
            .then_some(())
    });
    // The log line is where the event ends: nothing follows it.
    assert!(
        !w.slack
            .calls_of("chat.postMessage")
            .iter()
            .any(|c| c.body["thread_ts"] == ts.as_str()),
        "{}",
        w.bot.stderr()
    );
    assert_eq!(w.lab.jobs().len(), 1, "{:?}", w.lab.jobs());
    // An app without users:read is refused at start, by name.
    let home = w.lab.dir().join("moltbot");
    let api = w.slack.api_url.clone();
    let mut lab = w.lab;
    let out = spawn_bot(&mut lab, &home, &api).wait(T);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("users:read"), "{}", out.stderr);
}

#[test]
fn attack_command_and_output_cannot_mention_or_link_in_slack() {
    let w = world();
    // The user typed `<!channel>` and `<http://evil.example|docs>`: Slack
    // sends them escaped, and the command (and so its output) holds them.
    w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run echo '&lt;!channel&gt;' '&lt;http://evil.example|docs&gt;' '&lt;@U0BOSS&gt;' on worker-cpu-01",
    );
    final_edit(&w.slack, "exited with code 0");
    let last = w.slack.calls_of("chat.update").pop().unwrap();
    let text = last.body["text"].as_str().unwrap();
    assert!(
        text.contains("out| &lt;!channel&gt; &lt;http://evil.example|docs&gt; &lt;@U0BOSS&gt;"),
        "{text}"
    );
    // No message moltbot sent carries a live control sequence from them.
    for c in w.slack.calls() {
        let body = c.body.to_string();
        for bad in ["<!channel>", "<http://evil", "<@U0BOSS>"] {
            assert!(!body.contains(bad), "{bad} in {}: {body}", c.method);
        }
    }
}

#[test]
fn attack_button_clicks_pass_the_same_allowlists_as_messages() {
    let w = world();
    w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run echo guarded on worker-gpu-01",
    );
    w.lab.wait_jobs(T, "the job to await approval", |jobs| {
        (jobs.len() == 1).then_some(())
    });
    // A workspace member outside the allowlist clicks Approve.
    w.slack.click("U0STRANGER", "C0LAB", "x", "approve", "1");
    let eph = wait_until(T, "the refusal", || {
        w.slack.calls_of("chat.postEphemeral").into_iter().next()
    });
    assert_eq!(eph.body["user"], "U0STRANGER");
    assert!(
        eph.body["text"]
            .as_str()
            .unwrap()
            .contains("registered users"),
        "{}",
        eph.body
    );
    assert_eq!(w.lab.job(1)["state"], "awaiting-approval");
}

#[test]
fn attack_chat_users_see_only_their_own_jobs() {
    let w = world();
    let ts = w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run echo alice-secret-output on worker-cpu-01",
    );
    w.lab.wait_job(1, "exited", T);
    let _ = ts;
    let reply_to = |user: &str, text: &str| reply(&w, user, text);
    // Bob may not read Alice's job or its logs; Alice and the approver may.
    // The refusal is in chat terms, and says no more than "unknown".
    for text in [
        "<@U0MOLT> status 1",
        "<@U0MOLT> logs 1",
        "<@U0MOLT> status 99",
    ] {
        let r = reply_to("U0BOB", text);
        assert!(r.contains("that you can see; say `jobs`"), "{text}: {r}");
        assert!(
            !r.contains("alice-secret-output") && !r.contains("openclaw"),
            "{text}: {r}"
        );
    }
    assert!(reply_to("U0ALICE", "<@U0MOLT> logs 1").contains("alice-secret-output"));
    assert!(reply_to("U0BOSS", "<@U0MOLT> logs 1").contains("alice-secret-output"));
    for list in ["<@U0MOLT> status", "<@U0MOLT> jobs", "<@U0MOLT> my jobs"] {
        let r = reply_to("U0BOB", list);
        assert!(
            !r.contains("echo alice") && r.contains("no jobs yet"),
            "{list}: {r}"
        );
    }
    let mine = reply_to("U0ALICE", "<@U0MOLT> my jobs");
    assert!(
        mine.starts_with("Your recent jobs, newest first:\n✅ 1 exited 0 on worker-cpu-01, "),
        "{mine}"
    );
    // `status N` reads its times as people do: relative, and a clock
    // time Slack shows in each reader's own time zone.
    let status = reply_to("U0ALICE", "<@U0MOLT> status 1");
    let created = w.lab.job(1)["created_at"].as_u64().unwrap();
    assert!(
        status.contains("asked by <@U0ALICE> ")
            && status.contains(&format!(
                "(<!date^{created}^{{date_short_pretty}} {{time}}|"
            ))
            && status.contains(", ran "),
        "{status}"
    );
}

#[test]
fn attack_moltbot_refuses_to_start_open_to_everyone_or_with_a_loose_config() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.bot("moltbot", "slack:T0LAB");
    let slack = SlackEmulator::start();
    // No allowlist at all.
    std::fs::write(home.join("moltbot.toml"), "approvals = \"thread\"\n").unwrap();
    let out = spawn_bot(&mut lab, &home, &slack.api_url).wait(T);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("admits nobody"), "{}", out.stderr);
    // A config anyone on the machine may rewrite.
    std::fs::write(home.join("moltbot.toml"), "allow_everyone = true\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        home.join("moltbot.toml"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let out = spawn_bot(&mut lab, &home, &slack.api_url).wait(T);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("chmod"), "{}", out.stderr);
    assert!(
        !slack.connected(),
        "moltbot must not have connected to Slack"
    );
}

#[test]
fn a_redelivered_event_runs_one_job_across_sockets_and_a_restart() {
    let mut w = world();
    let (ts, env) = w.slack.mention_envelope(
        testkit::slack::TEAM,
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run echo exactly-once on worker-cpu-01",
    );
    w.slack.redeliver(&env, 0);
    w.lab
        .wait_jobs(T, "the job", |jobs| (!jobs.is_empty()).then_some(()));
    w.lab.wait_job(1, "exited", T);
    final_edit(&w.slack, "exited with code 0");
    // Slack retries: on the same socket, then on a new one.
    w.slack.redeliver(&env, 1);
    w.slack.drop_sockets();
    wait_until(T, "moltbot to reconnect", || {
        w.slack.connected().then_some(())
    });
    w.slack.redeliver(&env, 2);
    // And after moltbot restarts (it forgot what it saw; the gateway did not).
    w.bot.kill();
    let home = w.lab.dir().join("moltbot");
    let api = w.slack.api_url.clone();
    w.slack.drop_sockets();
    w.bot = spawn_bot(&mut w.lab, &home, &api);
    wait_until(T, "the new moltbot to connect", || {
        w.slack.connected().then_some(())
    });
    w.slack.redeliver(&env, 3);
    // The restarted moltbot (it forgot what it saw) answers in the thread
    // once more, following the same job: the gateway kept the key.
    let answers = || {
        w.slack
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["thread_ts"] == ts.as_str())
            .count()
    };
    wait_until(T, "the restarted moltbot's answer", || {
        (answers() == 2).then_some(())
    });
    // Every delivery has been answered and the job followed to its end.
    final_edit(&w.slack, "job 1 on worker-cpu-01 exited");
    let jobs = w.lab.jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(answers(), 2, "one answer before the restart, one after");
}

#[test]
fn a_fan_out_from_slack_is_approved_once_and_counts_up_in_one_message() {
    let w = world();
    // A user limited to some nodes may not fan out.
    let no = reply(&w, "U0BOB", "<@U0MOLT> run uptime on all nodes");
    assert!(no.contains("name a node instead"), "{no}");
    assert!(w.lab.jobs().is_empty());

    let ts = w.slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run sh -c 'echo fan from $OPENCLAW_NODE' on all nodes",
    );
    // worker-gpu-01 needs approval, so the whole fan-out is held once,
    // with one question that says so.
    let ask = approval_request(&w, &ts);
    assert!(
        ask.body["blocks"]
            .to_string()
            .contains("every other node of fan-out 1 (one approval releases them all)"),
        "{}",
        ask.body
    );
    let jobs = w.lab.jobs();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(jobs.iter().all(|j| j["state"] == "awaiting-approval"));
    let first = jobs
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .min()
        .unwrap();
    w.slack
        .click("U0BOSS", "C0LAB", "x", "approve", &first.to_string());
    final_edit(&w.slack, "2 node(s): 2 ok");
    let ups = w.slack.calls_of("chat.update");
    let my_ts = ups[0].body["ts"].as_str().unwrap().to_string();
    assert!(
        ups.iter().all(|u| u.body["ts"] == my_ts.as_str()),
        "one message, edited in place"
    );
    let texts: Vec<String> = ups
        .iter()
        .map(|u| u.body["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("awaits approval by")),
        "{texts:?}"
    );
    assert!(
        texts.last().unwrap().starts_with("✅ fan-out 1:"),
        "{texts:?}"
    );
    // Each node's output follows in the thread.
    let outputs = wait_until(T, "the outputs", || {
        w.slack.calls_of("chat.postMessage").into_iter().find(|c| {
            c.body["thread_ts"] == ts.as_str()
                && c.body["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("fan from worker-cpu-01")
        })
    });
    let text = outputs.body["text"].as_str().unwrap();
    assert!(text.contains("fan from worker-gpu-01"), "{text}");
    for j in jobs {
        let done = w.lab.job(j["id"].as_u64().unwrap());
        assert_eq!(done["approved_by"], "slack:T0LAB/U0BOSS");
        assert_eq!(done["requester"], "slack:T0LAB/U0ALICE");
    }
}

#[test]
fn attack_a_node_limit_holds_under_concurrent_role_requests() {
    // The third review's race: moltbot checked a user's node limit on the
    // gateway's preview, then submitted the role spec, which the gateway
    // routed again; six concurrent `(cpu)` requests put two jobs on a node
    // outside the limit. The checked node is now pinned in the submit.
    let mut lab = Lab::with_config(BIN, |cfg| {
        testkit::set_chat_test_policy(cfg, "slack:T0LAB/U0BOSS");
    });
    lab.start_gateway();
    let (_, a) = lab.node_up("worker-cpu-01", "cpu", 0);
    let (_, b) = lab.node_up("zz-special-01", "cpu", 0);
    let bot_home = lab.bot("moltbot", "slack:T0LAB");
    std::fs::write(
        bot_home.join("moltbot.toml"),
        "allowed_users = [\"U0BOB\"]\n[users.U0BOB]\nnodes = [\"worker-cpu-*\"]\n",
    )
    .unwrap();
    let slack = SlackEmulator::start();
    let _bot = spawn_bot(&mut lab, &bot_home, &slack.api_url);
    wait_until(T, "moltbot to open Socket Mode", || {
        slack.connected().then_some(())
    });
    let asked: Vec<String> = (0..6)
        .map(|i| {
            slack.mention(
                "U0BOB",
                "C0LAB",
                &format!("<@U0MOLT> run sleep 3 (cpu) {i}"),
            )
        })
        .collect();
    // Every request is answered: a job, or a refusal naming the node.
    wait_until(T, "an answer to every request", || {
        let calls = slack.calls_of("chat.postMessage");
        asked
            .iter()
            .all(|ts| calls.iter().any(|c| c.body["thread_ts"] == ts.as_str()))
            .then_some(())
    });
    let jobs = lab.jobs();
    assert!(!jobs.is_empty(), "no job ran at all");
    for j in &jobs {
        assert_eq!(
            j["node"], "worker-cpu-01",
            "a job outside the user's limit: {j}"
        );
    }
    drop((a, b));
}
