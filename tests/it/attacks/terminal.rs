use super::*;

// --- what other parties wrote, on an admin's terminal ------------------------------

/// Text a hostile party would like an admin's terminal to act on: clear
/// the screen, set the window title (OSC ... BEL), a one-byte C1 CSI, a
/// bidi override and isolate, zero-width and tag characters, and a tab
/// and newline that would forge table columns and rows.
const EVIL: &str = "x\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}live\u{2066}\u{200b}\u{feff}\u{e0041}\u{7f}\tcol\nID STATE forged";

/// Characters that must never reach a terminal from another party.
const NEVER: &[char] = &[
    '\u{1b}',
    '\u{7}',
    '\u{9b}',
    '\u{9d}',
    '\u{7f}',
    '\u{202e}',
    '\u{2066}',
    '\u{200b}',
    '\u{feff}',
    '\u{e0041}',
    '\t',
    '\r',
];

/// Panics if `out` (stdout or stderr) holds a terminal control.
fn no_escapes(what: &str, out: &testkit::Out) {
    for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let bad = text.chars().find(|&c| {
            NEVER.contains(&c)
                || (c != '\n'
                    && (c.is_control()
                        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                            | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{e0000}'..='\u{e007f}')))
        });
        if let Some(c) = bad {
            panic!("{what}: {stream} holds U+{:04X}:\n{text:?}", c as u32);
        }
    }
}

/// Runs a background `openclaw` command to its end; stdout and stderr as
/// bytes, so that nothing is lost to decoding.
pub(super) fn finish(p: testkit::Proc) -> testkit::Out {
    let (o, e) = (p.stdout_path.clone(), p.stderr_path.clone());
    let code = p.wait(T).code;
    let read = |f: &Path| String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
    testkit::Out {
        code,
        stdout: read(&o),
        stderr: read(&e),
    }
}

#[test]
fn attack_terminal_escapes_from_other_parties_never_reach_the_terminal() {
    use testkit::swarm::{Swarm, SwarmOptions};
    // Chat jobs wait for a chat approver (or an admin); the admin's `true`
    // waits for carol, a second admin.
    let mut lab = lab_with(&[
        (
            "approvers = [\"admin\"]",
            "approvers = [\"admin\", \"carol\", \"slack:T0LAB/U0BOSS\"]",
        ),
        (
            "\n[limits]",
            "[[policy.rules]]\ncommands = [\"true\"]\naction = \"approve\"\napprovers = [\"carol\"]\n\n[limits]",
        ),
    ]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let bot = lab.bot("moltbot", "slack:T0LAB");
    let carol = lab.second_admin("carol");
    let gw = lab.gw_home.clone();
    // A hostile node: its GPU names and GPU error are its own words.
    let token = lab.token(&["--auto-approve", "--max-gpus", "2"]);
    let opts = SwarmOptions {
        nodes: 1,
        prefix: "rogue".into(),
        labels: vec![],
        endpoints: 1,
        threads: 1,
        gpus: 2,
        gpu_name: EVIL.into(),
        gpu_error: Some(EVIL.into()),
        ..Default::default()
    };
    let _swarm = Swarm::start(
        &lab.dir().join("swarm"),
        lab.addr.as_deref().unwrap(),
        &token,
        &opts,
        T,
    )
    .unwrap();
    lab.wait_node("rogue-00001", "connected", T);
    let mut checked = 0;
    let mut check = |what: &str, out: testkit::Out| -> testkit::Out {
        no_escapes(what, &out);
        checked += 1;
        out
    };
    let chat = |lab: &Lab, user: &str, msg: &str| lab.run(&bot, &["chat", "--user", user, msg]);
    let (eve, boss) = ("slack:T0LAB/U0EVE", "slack:T0LAB/U0BOSS");

    // A chat user's command; the chat approver denies it with a reason.
    let out = check(
        "chat run",
        chat(&lab, eve, &format!("run echo {EVIL} on worker-cpu-01")),
    );
    assert!(out.stdout.contains("awaits approval"), "{}", out.stdout);
    check(
        "chat deny",
        chat(&lab, boss, &format!("deny 1 because {EVIL}")),
    );
    // Another; carol denies it from her CLI.
    check(
        "chat run 2",
        chat(&lab, eve, "run echo two on worker-cpu-01"),
    );
    check(
        "carol's deny",
        lab.run(&carol, &["job", "deny", "2", "--reason", EVIL]),
    );
    let job1 = lab.job(1);
    assert!(
        job1["reason"].as_str().unwrap().contains("\u{1b}[2J"),
        "the hostile reason is stored as written: {job1}"
    );

    // The admin's own `run` and fan-outs wait for carol, who denies them:
    // her reason reaches the admin's stderr while it waits.
    let runs: [&[&str]; 4] = [
        &["run", "--node", "worker-cpu-01", "--", "true"],
        &["run", "--all", "--label", "cpu", "--", "true"],
        &["run", "--all", "--group", "--label", "cpu", "--", "true"],
        &["run", "--all", "--json", "--label", "cpu", "--", "true"],
    ];
    for (next, args) in (3u64..).zip(runs) {
        let waiting = lab.spawn(&gw, args);
        lab.wait_job(next, "awaiting-approval", T);
        check(
            "carol denies",
            lab.run(
                &carol,
                &["job", "deny", &next.to_string(), "--reason", EVIL],
            ),
        );
        let out = check(&args.join(" "), finish(waiting));
        assert_eq!(out.code, 252, "{args:?}: {out:?}");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("\\u{1b}[2J") || text.contains("\\u001b[2J"),
            "{args:?}: the reason is shown, escaped: {text}"
        );
    }

    // Every human view an admin has, and the JSON ones.
    let admin = |args: &[&str]| lab.admin(args);
    let views: Vec<(&str, Vec<&str>)> = vec![
        ("job list", vec!["job", "list"]),
        ("job show 1", vec!["job", "show", "1"]),
        ("job show 2", vec!["job", "show", "2"]),
        ("job show 3", vec!["job", "show", "3"]),
        ("job show 4", vec!["job", "show", "4"]),
        ("job logs 1", vec!["job", "logs", "1"]),
        ("job logs --follow 1", vec!["job", "logs", "1", "--follow"]),
        ("job approve 1", vec!["job", "approve", "1"]),
        ("job deny 1", vec!["job", "deny", "1", "--reason", "again"]),
        ("job cancel 2", vec!["job", "cancel", "2"]),
        ("node approve rogue", vec!["node", "approve", "rogue-00001"]),
        ("ca status", vec!["ca", "status"]),
        ("node list", vec!["node", "list"]),
        ("node show rogue", vec!["node", "show", "rogue-00001"]),
        ("node show worker", vec!["node", "show", "worker-cpu-01"]),
        ("token list", vec!["token", "list"]),
        ("client list", vec!["client", "list"]),
        ("whoami", vec!["whoami"]),
        ("gateway status", vec!["gateway", "status"]),
        ("doctor", vec!["doctor"]),
        ("job list --json", vec!["job", "list", "--json"]),
        ("job show --json", vec!["job", "show", "1", "--json"]),
        ("node list --json", vec!["node", "list", "--json"]),
        (
            "node show --json",
            vec!["node", "show", "rogue-00001", "--json"],
        ),
    ];
    for (what, args) in &views {
        let out = check(what, admin(args));
        if what.ends_with("--json") {
            // JSON keeps the exact text for programs.
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            assert!(v.to_string().contains("\\u001b[2J"), "{what}: {v}");
        }
    }
    let list = admin(&["job", "list"]).stdout;
    assert_eq!(
        list.lines().count(),
        1 + 6,
        "a header and six jobs, no forged row:\n{list}"
    );
    let show = admin(&["job", "show", "1"]).stdout;
    for escaped in [
        "\\u{1b}[2J",
        "\\u{1b}]0;pwned\\u{7}",
        "\\u{9b}31m",
        "\\u{202e}live",
    ] {
        assert!(show.contains(escaped), "{escaped} in:\n{show}");
    }
    let node = admin(&["node", "show", "rogue-00001"]).stdout;
    assert!(
        node.contains("\\u{202e}live"),
        "GPU names are shown escaped:\n{node}"
    );

    // The same views through the bot, as a chat user sees them.
    for msg in [
        "status",
        "status 1",
        "status 3",
        "status 99",
        "jobs",
        "help",
        "nodes",
        "logs 1",
        "approve 1",
        "cancel 2",
    ] {
        check(msg, chat(&lab, boss, msg));
    }
    // The rogue node's health reason (its GPU error, its own words) is
    // shown in the chat node list, escaped.
    let nodes = chat(&lab, boss, "nodes").stdout;
    assert!(
        nodes.contains("🟡 rogue-00001: degraded (GPU telemetry failed: ")
            && nodes.contains("\\u{1b}[2J"),
        "{nodes}"
    );
    check(
        "chat --dry-run",
        lab.run(
            &bot,
            &[
                "chat",
                "--dry-run",
                "--user",
                eve,
                &format!("run echo {EVIL} on worker-cpu-01"),
            ],
        ),
    );
    assert!(checked > 30, "only {checked} outputs checked");
}
