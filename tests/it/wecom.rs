//! The WeCom bot end to end: `openclaw wecom run` against a local WeCom
//! long-connection emulator, a real gateway and real nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use testkit::wecom::{STREAM_EXPIRED, WecomEmulator};
use testkit::{Lab, Proc, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);
const SECRET: &str = "wecom-test-secret-value";
const GROUP: &str = "wrLABGROUP";

struct World {
    lab: Lab,
    wecom: WecomEmulator,
    bot: Proc,
    home: std::path::PathBuf,
    _nodes: Vec<Proc>,
}

fn world(extra: &str) -> World {
    world_with(&format!(
        "allowed_users = [\"zhangsan\", \"boss\", \"lisi\"]\napprovals = \"card\"\nheartbeat = \"1s\"\n{extra}"
    ))
}

fn world_with(bot_toml: &str) -> World {
    let mut lab = Lab::with_config(BIN, |cfg| {
        testkit::set_chat_test_policy(cfg, "wecom:wwlab/boss");
    });
    lab.start_gateway();
    let (_, g) = lab.node_up("worker-gpu-01", "gpu", 1);
    let (_, c) = lab.node_up("worker-cpu-01", "cpu", 0);
    let home = lab.bot("wecom", "wecom:wwlab");
    std::fs::write(home.join("wecom.toml"), bot_toml).unwrap();
    let wecom = WecomEmulator::start("bot-lab", SECRET);
    let bot = spawn_bot(&mut lab, &home, &wecom.ws_url, SECRET);
    wait_until(T, "the bot to subscribe", || {
        wecom.connected().then_some(())
    });
    World {
        lab,
        wecom,
        bot,
        home,
        _nodes: vec![g, c],
    }
}

fn spawn_bot(lab: &mut Lab, home: &std::path::Path, url: &str, secret: &str) -> Proc {
    // The secret reaches only this child, through its environment.
    let script = format!(
        "WECOM_WS_URL={url} WECOM_BOT_ID=bot-lab WECOM_BOT_SECRET={secret} exec {BIN} --home {} wecom run",
        home.display()
    );
    lab.spawn_cmd("sh", &["-c", &script])
}

/// The finished stream answering callback `req_id`.
fn finished(w: &World, req_id: &str) -> testkit::wecom::Stream {
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Some(s) = w.wecom.streams_for(req_id).into_iter().find(|s| s.finish) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stream of {req_id} did not finish: {:?}\nbot: {}",
            w.wecom.streams_for(req_id),
            w.bot.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_group_mention_runs_a_job_and_the_stream_ends_with_its_result() {
    let w = world("");
    let req = w.wecom.mention(
        "zhangsan",
        GROUP,
        "run sh -c 'for i in 1 2 3; do echo epoch $i; sleep 0.6; done' on worker-cpu-01",
    );
    let s = finished(&w, &req);
    assert!(
        s.content
            .starts_with("✅ job 1 on worker-cpu-01 exited with code 0"),
        "{}",
        s.content
    );
    assert!(
        s.content
            .contains("out| epoch 1\nout| epoch 2\nout| epoch 3"),
        "{}",
        s.content
    );
    // One message, replaced in place while the job ran.
    assert!(s.frames >= 3, "{} frames", s.frames);
    assert_eq!(w.wecom.streams_for(&req).len(), 1);
    assert_eq!(w.lab.job(1)["requester"], "wecom:wwlab/zhangsan");
    // Frames of one callback went one at a time, each after its ack: the
    // emulator saw no two stream frames for it without an ack between.
    let stream_frames = w.wecom.frames_of("aibot_respond_msg");
    assert!(
        stream_frames
            .iter()
            .all(|f| f["headers"]["req_id"] == req.as_str())
    );
    // Chat replies, as WeCom shows them: times relative and in UTC (WeCom
    // has no per-reader time format), lists short.
    let reply = |text: &str| finished(&w, &w.wecom.mention("zhangsan", GROUP, text)).content;
    let status = reply("status 1");
    assert!(
        status.contains("asked by zhangsan ")
            && (status.contains(" ago (") || status.contains("just now ("))
            && status.contains(" UTC)")
            && status.contains(", ran "),
        "{status}"
    );
    let created = w.lab.job(1)["created_at"].as_u64().unwrap().to_string();
    assert!(!status.contains(&created), "no raw unix time: {status}");
    let jobs = reply("my jobs");
    assert!(
        jobs.starts_with("Your recent jobs, newest first:\n✅ 1 exited 0 on worker-cpu-01, "),
        "{jobs}"
    );
    assert!(!reply("jobs").is_empty());
    let lisi = finished(&w, &w.wecom.mention("lisi", GROUP, "jobs")).content;
    assert!(lisi.contains("You have no jobs yet"), "{lisi}");
    let none = reply("status 99");
    assert!(
        none.contains("no job 99") && none.contains("`jobs`") && !none.contains("openclaw"),
        "{none}"
    );
    let nodes = reply("nodes");
    assert_eq!(
        nodes,
        "2 nodes:\n🟢 worker-cpu-01: healthy · cpu\n🟢 worker-gpu-01: healthy · 1/1 GPU free · gpu"
    );
    // The secret is never logged.
    assert!(!w.bot.stderr().contains(SECRET));
}

#[test]
fn approval_by_card_click_is_checked_at_the_gateway() {
    let w = world("");
    let req = w
        .wecom
        .mention("zhangsan", GROUP, "run echo approved-run on worker-gpu-01");
    let (chat, card) = wait_until(T, "the approval card", || {
        w.wecom.cards().into_iter().next()
    });
    assert_eq!(chat, GROUP);
    assert_eq!(card["card_type"], "button_interaction");
    assert_eq!(card["button_list"][0]["key"], "approve:1");
    assert_eq!(card["button_list"][1]["key"], "deny:1");
    let task = card["task_id"].as_str().unwrap().to_string();
    assert!(
        task.len() <= 128
            && task
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-@".contains(&b))
    );
    // The live stream says what it waits for, naming the job.
    wait_until(T, "the waiting stream", || {
        w.wecom.streams_for(&req).into_iter().find(|s| {
            s.content
                .contains("job 1 on worker-gpu-01 awaits approval by boss")
        })
    });
    // An allowed user who is not an approver: refused at the gateway, and
    // the card is updated in place under the click's req_id.
    let ev = w.wecom.click("lisi", GROUP, &task, "approve:1");
    let upd = wait_until(T, "the card update", || {
        w.wecom
            .frames_of("aibot_respond_update_msg")
            .into_iter()
            .find(|f| f["headers"]["req_id"] == ev.as_str())
    });
    assert_eq!(upd["body"]["response_type"], "update_template_card");
    assert_eq!(upd["body"]["template_card"]["task_id"], task.as_str());
    assert!(
        upd["body"]["template_card"]["sub_title_text"]
            .as_str()
            .unwrap()
            .contains("Not allowed"),
        "{upd}"
    );
    assert_eq!(w.lab.job(1)["state"], "awaiting-approval");
    // The approver's click runs it.
    w.wecom.click("boss", GROUP, &task, "approve:1");
    let job = w.lab.wait_job(1, "exited", T);
    assert_eq!(job["approved_by"], "wecom:wwlab/boss");
    let s = finished(&w, &req);
    assert!(
        s.content.contains("exited with code 0") && s.content.contains("out| approved-run"),
        "{}",
        s.content
    );
}

#[test]
fn a_stranger_is_refused_and_a_repeated_msgid_runs_once() {
    let w = world("");
    let req = w
        .wecom
        .mention("mallory", GROUP, "run echo hi on worker-cpu-01");
    let s = finished(&w, &req);
    assert!(s.content.contains("registered users"), "{}", s.content);
    // A direct message from an allowed user works the same way.
    let req = w.wecom.direct("zhangsan", "nodes");
    assert!(finished(&w, &req).content.contains("worker-gpu-01"));
    assert!(w.lab.jobs().is_empty());

    // The same msgid three times (WeCom redelivering), with new req_ids too.
    let (first, frame) = w.wecom.message_frame(
        "zhangsan",
        Some(GROUP),
        "@moltbot run echo once on worker-cpu-01",
        "msg-dup-1",
    );
    w.wecom.deliver(&frame);
    w.wecom.deliver(&frame);
    let mut again = frame.clone();
    again["headers"]["req_id"] = serde_json::json!("cb-redelivered");
    w.wecom.deliver(&again);
    finished(&w, &first);
    // The second and third deliveries are dropped, each with a log line.
    wait_until(T, "both redeliveries to be ignored", || {
        (w.bot
            .stderr()
            .matches("ignoring a redelivered message")
            .count()
            >= 2)
            .then_some(())
    });
    assert_eq!(w.lab.jobs().len(), 1, "one job for one msgid");
    assert!(w.wecom.streams_for("cb-redelivered").is_empty());
}

#[test]
fn attack_a_direct_message_does_not_bypass_the_channel_allowlist() {
    // The lab answers anyone in its group chat and lists nobody by name.
    let mut w = world_with(&format!(
        "allowed_chats = [\"{GROUP}\"]\nheartbeat = \"1s\"\n"
    ));
    // A corp member outside the group asks one to one: refused, no job.
    let req = w
        .wecom
        .direct("mallory", "run echo dm-bypass on worker-cpu-01");
    let s = finished(&w, &req);
    assert!(s.content.contains("listed by name"), "{}", s.content);
    let req = w.wecom.direct("mallory", "nodes");
    let s = finished(&w, &req);
    assert!(!s.content.contains("worker-cpu-01"), "{}", s.content);
    // In the group the same user is answered: the chat admits them there.
    let req = w.wecom.mention("mallory", GROUP, "nodes");
    // Every message above was answered, the refusal included: nothing of
    // them is still on its way to the gateway.
    assert!(finished(&w, &req).content.contains("worker-cpu-01"));
    assert!(w.lab.jobs().is_empty(), "{:?}", w.lab.jobs());

    // Only an operator's explicit allow_dms = true opens one-to-one chats
    // to everyone the chat list admits.
    w.bot.kill();
    w.wecom.drop_sockets();
    std::fs::write(
        w.home.join("wecom.toml"),
        format!("allowed_chats = [\"{GROUP}\"]\nallow_dms = true\nheartbeat = \"1s\"\n"),
    )
    .unwrap();
    let before = w.wecom.subscriptions();
    let (url, home) = (w.wecom.ws_url.clone(), w.home.clone());
    w.bot = spawn_bot(&mut w.lab, &home, &url, SECRET);
    wait_until(T, "the restarted bot to subscribe", || {
        (w.wecom.subscriptions() > before).then_some(())
    });
    let req = w.wecom.direct("mallory", "nodes");
    assert!(finished(&w, &req).content.contains("worker-cpu-01"));
    assert!(w.lab.jobs().is_empty(), "{:?}", w.lab.jobs());
}

#[test]
fn attack_node_strings_cannot_forge_links_or_mentions_in_wecom() {
    let w = world("");
    // Markup a link, a mention of everyone and a colour would need.
    let forged = ["](http", "<@all>", "<font", "**"];
    // A command whose words, and so its output, carry WeCom markup.
    let req = w.wecom.mention(
        "zhangsan",
        GROUP,
        "run echo '[click](http://evil.example)' '<@all>' '<font color=\"warning\">**ok**</font>' on worker-cpu-01",
    );
    let s = finished(&w, &req);
    assert!(s.content.contains("exited with code 0"), "{}", s.content);
    // Shown, but as text: the full-width forms read the same.
    assert!(
        s.content
            .contains("out| ［click］(http://evil.example) ＜@all＞ ＜font color=\"warning\"＞＊＊ok＊＊＜/font＞"),
        "{}",
        s.content
    );
    // A job held for approval, with markup in its command: the card and the
    // stream show it escaped.
    let held = w
        .wecom
        .mention("zhangsan", GROUP, "run echo '<@all>' on worker-gpu-01");
    let (_, card) = wait_until(T, "the approval card", || {
        w.wecom.cards().into_iter().next()
    });
    assert!(
        card["sub_title_text"]
            .as_str()
            .unwrap()
            .contains("`echo '＜@all＞'`"),
        "{card}"
    );
    // Denied with a reason that carries markup; the reason reaches the
    // job's message escaped.
    let deny = w.wecom.mention(
        "boss",
        GROUP,
        "deny 2 because [read this](http://evil.example) <@all>",
    );
    finished(&w, &deny);
    w.lab.wait_job(2, "denied", T);
    let s = finished(&w, &held);
    assert!(
        s.content
            .contains("［read this］(http://evil.example) ＜@all＞"),
        "{}",
        s.content
    );
    // Nothing the bot sent WeCom (streams, messages, cards) carries markup
    // that came from a command, an output or a reason.
    let frames = w.wecom.frames();
    for f in frames.iter().filter(|f| f["cmd"] != "aibot_subscribe") {
        let text = f.to_string();
        for bad in forged {
            assert!(!text.contains(bad), "{bad} reached WeCom in {text}");
        }
    }
}

#[test]
fn the_bot_reconnects_after_a_dropped_socket_and_unanswered_pings() {
    let w = world("");
    w.wecom.drop_sockets();
    wait_until(T, "a second subscription", || {
        (w.wecom.subscriptions() >= 2).then_some(())
    });
    let req = w.wecom.mention("zhangsan", GROUP, "nodes");
    assert!(finished(&w, &req).content.contains("worker-cpu-01"));
    // Two pings without an ack: the connection is dead, and replaced.
    w.wecom.stall_next("ping");
    w.wecom.stall_next("ping");
    wait_until(T, "a third subscription", || {
        (w.wecom.subscriptions() >= 3).then_some(())
    });
    assert!(
        w.bot.stderr().contains("two pings went unanswered"),
        "{}",
        w.bot.stderr()
    );
    let req = w.wecom.mention("zhangsan", GROUP, "nodes");
    assert!(finished(&w, &req).content.contains("worker-cpu-01"));
}

#[test]
fn a_stream_past_its_limit_falls_back_to_new_messages() {
    let w = world("stream_limit = \"2s\"\n");
    // The bot's own limit: the stream is finished at 2 s while the job runs,
    // and the end comes as a new Markdown message naming the job.
    let req = w.wecom.mention(
        "zhangsan",
        GROUP,
        "run sh -c 'echo first; sleep 4; echo last' on worker-cpu-01",
    );
    let md = wait_until(T, "the final proactive message", || {
        w.wecom
            .markdowns()
            .into_iter()
            .find(|(_, c)| c.contains("job 1") && c.contains("exited with code 0"))
    });
    assert_eq!(md.0, GROUP);
    assert!(md.1.contains("out| last"), "{}", md.1);
    let s = finished(&w, &req);
    assert!(
        !s.content.contains("exited"),
        "the stream ended before the job: {}",
        s.content
    );

    // WeCom's own limit (errcode 846608) before the bot's: the same fallback.
    w.wecom
        .set_stream_lifetime(Some(Duration::from_millis(500)));
    let req = w.wecom.mention(
        "zhangsan",
        GROUP,
        "run sh -c 'echo a; sleep 1.5; echo b' on worker-cpu-01",
    );
    wait_until(T, "the second job's final message", || {
        w.wecom
            .markdowns()
            .into_iter()
            .find(|(_, c)| c.contains("job 2") && c.contains("out| b"))
    });
    let s = w.wecom.streams_for(&req);
    assert_eq!(s.len(), 1);
    assert!(!s[0].finish && !s[0].content.contains("exited"));
    let _ = STREAM_EXPIRED;
    // Also a one-off 846605 on a reply: it goes out as a new message.
    w.wecom.fail_next("aibot_respond_msg", 846_605);
    w.wecom.mention("zhangsan", GROUP, "help");
    wait_until(T, "the help as a new message", || {
        w.wecom
            .markdowns()
            .into_iter()
            .find(|(_, c)| c.contains("I run jobs"))
    });
}

#[test]
fn a_stalled_ack_does_not_stop_the_job_message() {
    let w = world("");
    w.wecom.stall_next("aibot_respond_msg");
    let req = w.wecom.mention(
        "zhangsan",
        GROUP,
        "run sh -c 'sleep 1; echo done' on worker-cpu-01",
    );
    // The first frame waits 5 s for its ack, then the bot carries on.
    let s = wait_until(Duration::from_secs(40), "the stream to finish", || {
        w.wecom.streams_for(&req).into_iter().find(|s| s.finish)
    });
    assert!(s.content.contains("exited with code 0"), "{}", s.content);
    assert!(
        w.bot.stderr().contains("no acknowledgement within 5s"),
        "{}",
        w.bot.stderr()
    );
}

#[test]
fn another_connection_taking_over_stops_the_bot_and_bad_secrets_are_named() {
    let World {
        mut lab,
        wecom,
        bot,
        home,
        _nodes,
    } = world("");
    wecom.kick();
    let out = bot.wait(T);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("took over"), "{}", out.stderr);
    // Not reconnected: the other connection keeps the bot. It has exited,
    // so it can subscribe no more.
    assert_eq!(wecom.subscriptions(), 1);

    let out = spawn_bot(&mut lab, &home, &wecom.ws_url, "wrong-secret").wait(T);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("refused the subscription") && out.stderr.contains("WECOM_BOT_SECRET"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong-secret"));
}
