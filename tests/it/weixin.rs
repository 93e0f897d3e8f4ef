//! The personal WeChat bot end to end: `openclaw weixin login` and
//! `openclaw weixin run` against a local iLink emulator, a real gateway
//! and real nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::weixin::{NAMESPACE, OWNER, Reply, WeixinEmulator};
use testkit::{Lab, Proc, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);
const TOKEN: &str = "ilink-bot-token-never-shown-1234";
const ZS: &str = "zhangsan@im.wechat";
const BOSS: &str = "boss@im.wechat";
const LISI: &str = "lisi@im.wechat";
const MALLORY: &str = "mallory@im.wechat";

struct World {
    lab: Lab,
    emu: WeixinEmulator,
    bot: Proc,
    home: PathBuf,
    _nodes: Vec<Proc>,
}

fn world() -> World {
    world_with("")
}

fn world_with(extra: &str) -> World {
    let mut lab = Lab::with_config(BIN, |cfg| {
        testkit::set_chat_test_policy(cfg, &format!("{NAMESPACE}/{BOSS}"));
        cfg.push_str("\n[jobs.training]\ncommand = [\"sh\", \"-c\", \"echo training on $OPENCLAW_NODE\"]\nrole = \"cpu\"\n");
    });
    lab.start_gateway();
    let (_, g) = lab.node_up("worker-gpu-01", "gpu", 1);
    let (_, c) = lab.node_up("worker-cpu-01", "cpu", 0);
    let emu = WeixinEmulator::start(TOKEN);
    let home = lab.bot("weixin", NAMESPACE);
    emu.script_login(&["confirmed"]);
    login(&lab, &home, &emu).ok();
    std::fs::write(
        home.join("weixin.toml"),
        format!("allowed_users = [\"{ZS}\", \"{BOSS}\", \"{LISI}\"]\n{extra}"),
    )
    .unwrap();
    let bot = spawn_bot(&mut lab, &home, &emu);
    wait_until(T, "the bot's first poll", || {
        (!emu.polls().is_empty()).then_some(())
    });
    World {
        lab,
        emu,
        bot,
        home,
        _nodes: vec![g, c],
    }
}

fn login(lab: &Lab, home: &Path, emu: &WeixinEmulator) -> testkit::Out {
    let url = PathBuf::from(&emu.api_url);
    lab.run_env(home, &["weixin", "login"], &[("WEIXIN_API_URL", &url)])
}

fn spawn_bot(lab: &mut Lab, home: &Path, emu: &WeixinEmulator) -> Proc {
    let url = PathBuf::from(&emu.api_url);
    lab.spawn_env(home, &["weixin", "run"], &[("WEIXIN_API_URL", &url)])
}

/// Waits for `p` to exit; one still running after [`T`] fails the test
/// and is killed as it is dropped.
fn exited(mut p: Proc) -> testkit::Out {
    wait_until(T, "the bot to exit", || (!p.running()).then_some(()));
    p.wait(T)
}

/// The first message to context `ctx` that `pick` accepts.
fn reply(w: &World, ctx: &str, what: &str, pick: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Some(r) = w.emu.replies_to(ctx).into_iter().find(&pick) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} on {ctx}: {:#?}\nbot: {}",
            w.emu.replies(),
            w.bot.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The bot's answer to one message from `user`.
fn ask(w: &World, user: &str, text: &str) -> String {
    let s = w.emu.send(user, text);
    reply(w, &s.context, "answer", |_| true).text
}

#[test]
fn qr_login_saves_the_token_0600_and_never_shows_it() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let emu = WeixinEmulator::start(TOKEN);
    // The first code expires unconfirmed; the second is scanned and confirmed.
    emu.script_login(&["wait", "scaned", "expired", "wait", "scaned", "confirmed"]);
    let home = lab.home("weixin");
    let out = login(&lab, &home, &emu).ok();
    assert_eq!(emu.qrcodes(), 2, "a new QR code after the first expired");
    assert!(
        out.stdout.matches("Scan this with WeChat").count() == 2 && out.stdout.contains('█'),
        "two QR codes drawn: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Scanned: confirm the login"),
        "{}",
        out.stdout
    );
    // What to do next: the credential's namespace and the owner to list.
    assert!(
        out.stdout
            .contains(&format!("--role bot --namespace {NAMESPACE}"))
            && out.stdout.contains(OWNER),
        "{}",
        out.stdout
    );
    let saved = home.join("weixin-token.json");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&saved).unwrap().contains(TOKEN));
    assert!(!out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN));

    // The printed next steps work: the credential, then the bot, which
    // sends the saved token and answers the owner.
    lab.admin(&[
        "client",
        "create",
        "weixin",
        "--role",
        "bot",
        "--namespace",
        NAMESPACE,
        "--out",
        home.to_str().unwrap(),
    ])
    .ok();
    std::fs::write(
        home.join("weixin.toml"),
        format!("allowed_users = [\"{OWNER}\"]\n"),
    )
    .unwrap();
    let mut bot = spawn_bot(&mut lab, &home, &emu);
    let s = emu.send(OWNER, "help");
    let r = wait_until(T, "the answer to the owner", || {
        emu.replies_to(&s.context).pop()
    });
    assert!(r.text.contains("I run jobs") && r.valid_context, "{r:?}");
    assert_eq!(
        emu.refused_calls(),
        (0, 0),
        "every call carried the token and iLink's headers"
    );
    bot.kill();
    assert!(!bot.stderr().contains(TOKEN));
}

#[test]
fn the_bot_refuses_a_writable_or_empty_weixin_toml_and_another_bots_credential() {
    let mut w = world();
    let local = w.emu.api_url.clone();
    // Each run is waited for with a limit: a bot that starts anyway fails
    // the test instead of hanging it, and is killed.
    let mut run = |toml: &str, mode: u32, url: &str| {
        let path = w.home.join("weixin.toml");
        std::fs::write(&path, toml).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let url = PathBuf::from(url);
        let home = w.home.clone();
        exited(
            w.lab
                .spawn_env(&home, &["weixin", "run"], &[("WEIXIN_API_URL", &url)]),
        )
    };
    let listed = format!("allowed_users = [\"{ZS}\"]\n");
    for mode in [0o664, 0o646] {
        run(&listed, mode, &local).fails_with(2, "writable by others");
    }
    run("allowed_users = []\n", 0o600, &local).fails_with(2, "admits nobody");
    run(&listed, 0o600, "http://ilinkai.weixin.qq.com").fails_with(2, "loopback");

    // A login of one iLink bot beside a credential of another's namespace:
    // refused, naming the namespace the login needs.
    let other = w.lab.bot("weixin-other", "weixin:another-im-bot");
    std::fs::write(other.join("weixin.toml"), &listed).unwrap();
    let token = "weixin-token.json";
    std::fs::copy(w.home.join(token), other.join(token)).unwrap();
    let url = PathBuf::from(&local);
    let out = exited(
        w.lab
            .spawn_env(&other, &["weixin", "run"], &[("WEIXIN_API_URL", &url)]),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("speaks for weixin:another-im-bot")
            && out.stderr.contains(&format!("--namespace {NAMESPACE}")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_message_runs_a_named_job_and_the_final_reply_carries_its_output_and_context() {
    let w = world();
    let s = w.emu.send(ZS, "run training on worker-cpu-01");
    let fin = reply(&w, &s.context, "final result", |r| {
        r.text.contains("exited")
    });
    assert!(
        fin.text
            .starts_with("✅ job 1 on worker-cpu-01 exited with code 0")
            && fin.text.contains("out| training on worker-cpu-01"),
        "{}",
        fin.text
    );
    // No edits on WeChat: the accepted message (unless the job ended
    // before the bot saw it start), then the result, both answering the
    // message that asked, to the user who asked.
    let all = w.emu.replies_to(&s.context);
    assert!(matches!(all.len(), 1 | 2), "{all:#?}");
    assert!(all[0].text.contains("job 1"), "{:?}", all[0]);
    assert!(
        all.iter().all(|r| r.to == ZS && r.valid_context),
        "{all:#?}"
    );
    let job = w.lab.job(1);
    assert_eq!(job["requester"], format!("{NAMESPACE}/{ZS}").as_str());
    assert_eq!(job["named_job"], "training", "{job}");

    // "Run this somewhere" gets the routing question, and runs nothing.
    let q = ask(&w, ZS, "run this somewhere");
    assert!(
        q.contains("where?") && q.contains("Connected nodes: worker-cpu-01"),
        "{q}"
    );

    // Long output: its tail and the `openclaw job logs` hint, with stderr
    // marked, in the final message. The job runs a while, through several
    // edits of the chat core's live message, yet gets only two messages:
    // accepted and final (no progress message before `progress_after`, no
    // snippet after the end).
    let long = w.emu.send(
        ZS,
        "run sh -c 'seq 1 3000; sleep 2; echo broken >&2; exit 3' on worker-cpu-01",
    );
    let fin = reply(&w, &long.context, "final result", |r| {
        r.text.contains("exited")
    });
    assert!(
        fin.text
            .contains("job 2 on worker-cpu-01 exited with code 3")
            && fin.text.contains("out| 3000")
            && fin.text.contains("err| broken")
            && fin.text.contains("openclaw job logs 2"),
        "{}",
        fin.text
    );
    assert_eq!(w.lab.jobs().len(), 2, "{:?}", w.lab.jobs());
    // Everything the user said was answered (the status below comes
    // after the long job's end), with no snippet after it.
    let status = ask(&w, ZS, "status 2");
    assert!(status.contains("job 2"), "{status}");
    let all = w.emu.replies_to(&long.context);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all[0].text.contains("job 2") && !all[0].text.contains("exited"),
        "{:?}",
        all[0]
    );
    assert!(!w.bot.stderr().contains(TOKEN), "the token is never logged");
    assert_eq!(w.emu.refused_calls(), (0, 0));
}

#[test]
fn approval_by_text_from_an_approver_and_refusal_from_anyone_else() {
    let w = world();
    // The approver has not written to the bot: WeChat lets the bot answer
    // only, so the requester is told whom to ask and how.
    let first = w.emu.send(ZS, "run echo never on worker-gpu-01");
    let note = reply(&w, &first.context, "the unreachable approver's note", |r| {
        r.text.contains("waits for approval by")
    });
    assert!(
        note.text.contains(BOSS)
            && note.text.contains("`approve 1`")
            && note.text.contains("`openclaw job approve 1`"),
        "{}",
        note.text
    );
    // The approver denies by text, with a reason the requester sees.
    let deny = w.emu.send(BOSS, "deny 1 because the GPU is booked");
    let no = reply(&w, &deny.context, "the denial's answer", |_| true);
    assert!(no.text.contains("1"), "{no:?}");
    w.lab.wait_job(1, "denied", T);
    let fin = reply(&w, &first.context, "the denial", |r| {
        r.text.contains("denied")
    });
    assert!(fin.text.contains("the GPU is booked"), "{}", fin.text);

    // Now the approver wrote lately (that denial), so the bot may message them.
    let req = w
        .emu
        .send(ZS, "run echo approved-run on worker-gpu-01 with 1 GPU");
    let held = reply(&w, &req.context, "the held message", |r| {
        r.text.contains("job 2")
    });
    assert!(held.text.contains("awaits approval"), "{}", held.text);
    // The approver gets the job and its frozen plan, on their own context.
    let q = wait_until(T, "the approval question", || {
        w.emu
            .replies()
            .into_iter()
            .find(|r| r.to == BOSS && r.text.contains("Job 2 wants"))
    });
    assert!(
        q.text
            .contains("Job 2 wants to run `echo approved-run` on worker-gpu-01, 1 GPU")
            && q.text.contains("Plan ")
            && q.text.contains("`approve 2` or `deny 2 because …`")
            && q.text.contains(ZS)
            && q.context == deny.context
            && q.valid_context,
        "{q:?}"
    );
    // An allowed user who is not an approver is refused at the gateway.
    let no = ask(&w, LISI, "approve 2");
    assert!(!no.contains("approved"), "{no}");
    assert_eq!(w.lab.job(2)["state"], "awaiting-approval");
    // The approver's answer runs it.
    let yes = ask(&w, BOSS, "approve 2");
    assert!(yes.contains("2"), "{yes}");
    let job = w.lab.wait_job(2, "exited", T);
    assert_eq!(job["approved_by"], format!("{NAMESPACE}/{BOSS}").as_str());
    let fin = reply(&w, &req.context, "final result", |r| {
        r.text.contains("exited")
    });
    assert!(
        fin.text
            .starts_with("✅ job 2 on worker-gpu-01, 1 GPU exited with code 0 after ")
            && fin.text.contains("🖥️ held GPU 0")
            && fin.text.contains("out| approved-run"),
        "{}",
        fin.text
    );
    assert_eq!(w.emu.replies_to(&req.context).len(), 2);
}

#[test]
fn a_stranger_gets_nothing_run_and_a_redelivered_message_runs_once_across_a_restart() {
    let mut w = world();
    let no = ask(&w, MALLORY, "run echo hi on worker-cpu-01");
    assert!(no.contains("registered users"), "{no}");
    assert!(w.lab.jobs().is_empty());

    let s = w.emu.send(ZS, "run echo once on worker-cpu-01");
    reply(&w, &s.context, "final result", |r| {
        r.text.contains("exited")
    });
    // At-least-once delivery: the same message again.
    w.emu.redeliver(s.id);
    wait_until(T, "the redelivery to be ignored", || {
        w.bot
            .stderr()
            .contains("ignoring a redelivered message")
            .then_some(())
    });
    // A restart, and the message once more: the saved cursor and ids.
    let cursor = w.emu.cursor();
    let state = w.home.join("weixin-state.json");
    wait_until(T, "the cursor to be saved", || {
        std::fs::read_to_string(&state)
            .ok()?
            .contains(&format!("\"cursor\":\"{cursor}\""))
            .then_some(())
    });
    w.bot.kill();
    w.emu.redeliver(s.id);
    let before = w.emu.polls().len();
    let (home, emu) = (w.home.clone(), &w.emu);
    let bot = spawn_bot(&mut w.lab, &home, emu);
    wait_until(T, "the restarted bot to ignore the redelivery", || {
        bot.stderr()
            .contains("ignoring a redelivered message")
            .then_some(())
    });
    assert_eq!(
        w.emu.polls()[before],
        cursor,
        "resumed from the saved cursor"
    );
    assert_eq!(w.lab.jobs().len(), 1, "one job for one message");
    // Answered after the restart, and nothing more for the old message.
    let nodes = ask(&w, ZS, "nodes");
    assert!(nodes.contains("worker-cpu-01"), "{nodes}");
    assert_eq!(w.emu.replies_to(&s.context).len(), 2);
}

#[test]
fn an_expired_session_stops_the_bot_with_the_login_hint_and_errors_back_off() {
    let World {
        emu,
        bot,
        lab,
        _nodes,
        home,
    } = world();
    // Network errors: retried after 1 s, 2 s, 4 s, then the bot goes on.
    emu.fail_polls(3);
    wait_until(T, "three failed polls", || {
        bot.stderr().contains("retry_in=4s").then_some(())
    });
    let s = emu.send(ZS, "nodes");
    let r = wait_until(T, "the answer after the errors", || {
        emu.replies_to(&s.context).pop()
    });
    assert!(r.text.contains("worker-cpu-01"), "{r:?}");
    let log = bot.stderr();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in {log}"))
    };
    assert!(at("retry_in=1s") < at("retry_in=2s") && at("retry_in=2s") < at("retry_in=4s"));
    assert!(!log.contains("retry_in=8s"), "{log}");
    // -14: the bot stops, naming the way back, without polling on.
    let before = emu.polls().len();
    emu.expire();
    let out = exited(bot);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("session expired: run `openclaw weixin login`"),
        "{}",
        out.stderr
    );
    assert!(emu.polls().len() <= before + 1, "no polling after -14");
    assert!(!out.stderr.contains(TOKEN));
    drop((lab, home));
}

#[test]
fn a_long_job_gets_one_progress_message_between_accepted_and_final() {
    let w = world_with("progress_after = \"1s\"\n");
    let s = w.emu.send(
        ZS,
        "run sh -c 'echo early; sleep 3; echo late' on worker-cpu-01",
    );
    let fin = reply(&w, &s.context, "final result", |r| {
        r.text.contains("exited")
    });
    assert!(fin.text.contains("out| late"), "{}", fin.text);
    let all = w.emu.replies_to(&s.context);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        all[1].text.contains("job 1 running on worker-cpu-01")
            && all[1].text.contains("out| early"),
        "{:?}",
        all[1]
    );
}
