//! Job artifacts (issue 23) through a real gateway and a real node agent
//! on 127.0.0.1: a job's files are collected as its user when it exits,
//! uploaded before its end is reported, listed and fetched byte-equal by
//! the CLI; a symlink pointing out is never followed; a file over the cap
//! is refused without reaching the gateway's disk; bad patterns are
//! refused before anything is sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use testkit::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const NODE: &str = "worker-cpu-01";
/// The per-file cap the test's gateway keeps (1 MiB).
const CAP: u64 = 1 << 20;

/// The bytes `seq 1 N` prints, here.
fn seq(n: u32) -> Vec<u8> {
    let out = Command::new("seq")
        .args(["1", &n.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn sha256_hex(bytes: &[u8]) -> String {
    pki::hex(&pki::sha256(bytes))
}

/// Every file under `dir`, with its size.
fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push((e.path().display().to_string(), m.len()));
            }
        }
    }
    out
}

/// A gateway with a 1 MiB per-file cap and a named job that keeps a
/// report, and node NODE.
fn lab() -> (Lab, testkit::Proc) {
    let mut lab = Lab::with_config(BIN, |cfg| {
        let before = cfg.clone();
        *cfg = cfg.replace(
            "artifact_max_file_bytes = 268435456",
            &format!("artifact_max_file_bytes = {CAP}"),
        );
        assert_ne!(
            *cfg, before,
            "the per-file cap was not found in gateway.toml"
        );
        cfg.push_str(&format!(
            "\n[jobs.report]\ncommand = [\"sh\", \"-c\", \"mkdir out && echo done > out/r.txt && echo no > out/r.log\"]\n\
             node = \"{NODE}\"\nartifacts = [\"out/*.txt\"]\n"
        ));
    });
    lab.start_gateway();
    let (_, node) = lab.node_up(NODE, "cpu", 0);
    (lab, node)
}

#[test]
fn a_jobs_files_are_listed_and_fetched_byte_equal_and_links_and_big_files_are_not() {
    let (mut lab, _node) = lab();
    // The job writes two artifacts, a link pointing out of its directory,
    // a FIFO, a file over the cap and a file no pattern names.
    let script = "mkdir ckpt && seq 1 40000 > ckpt/a.pt && printf '{\"loss\":0.5}' > metrics.json \
                  && ln -s /etc/hostname ckpt/link.pt && mkfifo ckpt/pipe.pt \
                  && head -c 3000000 /dev/zero > big.bin && echo x > other.txt";
    let out = lab
        .run_job(&[
            "--node",
            NODE,
            "--json",
            "--artifact",
            "ckpt/*.pt",
            "--artifact",
            "metrics.json",
            "--artifact",
            "big.bin",
            "--",
            "sh",
            "-c",
            script,
        ])
        .ok();
    let job: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(job["state"], "exited", "{job}");
    let id = job["id"].as_u64().unwrap().to_string();

    // The job has ended, so every artifact is there already.
    let listed = lab.admin(&["job", "artifacts", &id, "--json"]).ok();
    let list: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let files = list["files"].as_array().unwrap();
    let find = |name: &str| {
        files
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {list}"))
    };
    let a = seq(40000);
    assert_eq!(find("ckpt/a.pt")["state"], "stored", "{list}");
    assert_eq!(find("ckpt/a.pt")["sha256"], sha256_hex(&a), "{list}");
    assert_eq!(find("ckpt/a.pt")["size"], a.len() as u64, "{list}");
    assert_eq!(find("metrics.json")["state"], "stored", "{list}");
    let link = find("ckpt/link.pt");
    assert_eq!(link["state"], "skipped", "{list}");
    assert!(
        link["note"].as_str().unwrap().contains("symbolic link"),
        "{list}"
    );
    let fifo = find("ckpt/pipe.pt");
    assert_eq!(fifo["state"], "skipped", "{list}");
    assert!(fifo["note"].as_str().unwrap().contains("FIFO"), "{list}");
    let big = find("big.bin");
    assert_eq!(big["state"], "refused", "{list}");
    assert!(
        big["note"]
            .as_str()
            .unwrap()
            .contains("artifact_max_file_bytes"),
        "{list}"
    );
    assert!(files.iter().all(|f| f["name"] != "other.txt"), "{list}");

    // Nothing of the big file, nor the link's target, reached the gateway.
    let stored = files_under(&lab.gw_home.join("logs").join(format!("{id}.artifacts")));
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored.iter().all(|(_, n)| *n < CAP), "{stored:?}");
    let hostname = std::fs::read("/etc/hostname").unwrap_or_default();
    for (path, _) in &stored {
        assert_ne!(std::fs::read(path).unwrap(), hostname, "{path}");
    }

    // One, into a directory; one to stdout; all of them.
    let dir = lab.dir().join("fetched");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();
    lab.admin(&["job", "artifacts", &id, "--get", "ckpt/a.pt", "-o", d])
        .ok();
    assert_eq!(std::fs::read(dir.join("ckpt_a.pt")).unwrap(), a);
    let one = lab
        .admin(&["job", "artifacts", &id, "--get", "metrics.json", "-o", "-"])
        .ok();
    assert_eq!(one.stdout, "{\"loss\":0.5}");
    let all = lab.dir().join("all");
    lab.admin(&["job", "artifacts", &id, "-o", all.to_str().unwrap()])
        .ok();
    let mut names: Vec<String> = std::fs::read_dir(&all)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ckpt_a.pt", "metrics.json"]);
    assert_eq!(std::fs::read(all.join("ckpt_a.pt")).unwrap(), a);

    // What was not stored cannot be fetched, and leaves no file behind.
    lab.admin(&["job", "artifacts", &id, "--get", "big.bin", "-o", d])
        .fails_with(1, "was not stored");
    lab.admin(&["job", "artifacts", &id, "--get", "ckpt/link.pt", "-o", d])
        .fails_with(1, "was not stored");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");

    // job show lists them; the human listing too.
    let shown = lab.admin(&["job", "show", &id]).ok();
    assert!(
        shown
            .stdout
            .contains("artifacts:   ckpt/*.pt metrics.json big.bin"),
        "{}",
        shown.stdout
    );
    let table = lab.admin(&["job", "artifacts", &id]).ok();
    assert!(table.stdout.contains(&sha256_hex(&a)), "{}", table.stdout);

    // A lab member sees its own job's artifacts, and none of the admin's.
    let bob = lab.home("bob");
    lab.admin(&[
        "client",
        "create",
        "bob",
        "--role",
        "user",
        "--out",
        bob.to_str().unwrap(),
    ])
    .ok();
    let out = lab
        .run(
            &bob,
            &[
                "run",
                "--node",
                NODE,
                "--json",
                "--artifact",
                "b.txt",
                "--",
                "sh",
                "-c",
                "echo bob > b.txt",
            ],
        )
        .ok();
    let bob_job: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let bid = bob_job["id"].as_u64().unwrap().to_string();
    let got = lab
        .run(
            &bob,
            &["job", "artifacts", &bid, "--get", "b.txt", "-o", "-"],
        )
        .ok();
    assert_eq!(got.stdout, "bob\n");
    lab.run(&bob, &["job", "artifacts", &id])
        .fails_with(254, &format!("no job with id {id}"));
    lab.run(
        &bob,
        &["job", "artifacts", &id, "--get", "metrics.json", "-o", "-"],
    )
    .fails_with(254, &format!("no job with id {id}"));

    // A named job's artifacts come from gateway.toml.
    let out = lab.run_job(&["--job", "report", "--json"]).ok();
    let job: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let rid = job["id"].as_u64().unwrap().to_string();
    let listed = lab.admin(&["job", "artifacts", &rid, "--json"]).ok();
    let list: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let names: Vec<&str> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["out/r.txt"], "{list}");
    let got = lab
        .admin(&["job", "artifacts", &rid, "--get", "out/r.txt", "-o", "-"])
        .ok();
    assert_eq!(got.stdout, "done\n");
}

#[test]
fn patterns_that_leave_the_working_directory_are_refused_before_anything_is_sent() {
    // No gateway runs: the CLI refuses these itself (the gateway checks
    // them again, see the unit tests of proto::artifact and jobs::options).
    let lab = Lab::new(BIN);
    for (pattern, why) in [
        ("/etc/passwd", "absolute path"),
        ("../secrets/*", "'..'"),
        ("ckpt/../../x", "'..'"),
        ("a\u{1b}]0;x\u{7}", "control character"),
    ] {
        lab.run_job(&["--node", NODE, "--artifact", pattern, "--", "true"])
            .fails_with(2, why);
    }
    let many: Vec<String> = (0..33).map(|i| format!("f{i}")).collect();
    let mut args = vec!["--node", NODE];
    for p in &many {
        args.extend(["--artifact", p.as_str()]);
    }
    args.extend(["--", "true"]);
    lab.run_job(&args).fails_with(2, "at most 32");
}

#[test]
fn the_collector_reads_as_the_jobs_user_never_as_the_agent() {
    if !testkit::is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs needs root");
        return;
    }
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    // A node that drops to nobody, each job with a uid of its own.
    let home = lab.enroll("worker-jail", "cpu");
    let cfg = home.join("node.toml");
    testkit::edit_file(&cfg, "# run_as = \"openclaw-job\"", "run_as = \"nobody\"");
    testkit::edit_file(
        &cfg,
        "# job_uids = \"61000-61999\"",
        "job_uids = \"61000-61999\"",
    );
    let _agent = lab.start_node(&home);
    lab.wait_node(
        "worker-jail",
        "connected",
        std::time::Duration::from_secs(20),
    );
    // The job's own file, closed to its owner by its mode: root could
    // read it, the job's user cannot, so neither can the collector.
    let out = lab
        .run_job(&[
            "--node",
            "worker-jail",
            "--json",
            "--artifact",
            "*.txt",
            "--",
            "sh",
            "-c",
            "echo open > open.txt && echo shut > shut.txt && chmod 000 shut.txt",
        ])
        .ok();
    let job: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let id = job["id"].as_u64().unwrap().to_string();
    let listed = lab.admin(&["job", "artifacts", &id, "--json"]).ok();
    let list: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let files = list["files"].as_array().unwrap();
    let state = |name: &str| {
        files
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| {
                (
                    f["state"].as_str().unwrap().to_string(),
                    f["note"].to_string(),
                )
            })
            .unwrap_or_else(|| panic!("no {name} in {list}"))
    };
    assert_eq!(state("open.txt").0, "stored", "{list}");
    let (shut, why) = state("shut.txt");
    assert_eq!(shut, "skipped", "{list}");
    assert!(why.contains("Permission denied"), "{list}");
}

#[test]
fn slack_gets_the_small_artifacts_as_files_in_the_jobs_thread_and_names_the_rest() {
    use testkit::slack::SlackEmulator;
    let t = std::time::Duration::from_secs(60);
    let mut lab = Lab::with_config(BIN, |cfg| {
        testkit::set_chat_test_policy(cfg, "slack:T0LAB/U0BOSS");
        // A small metrics file and a checkpoint over the bot's 1 KiB upload limit.
        cfg.push_str(&format!(
            "\n[jobs.report]\ncommand = [\"sh\", \"-c\", \"printf 'loss=0.25' > metrics.txt && seq 1 2000 > ckpt.txt\"]\n\
             node = \"{NODE}\"\nartifacts = [\"*.txt\"]\n"
        ));
    });
    lab.start_gateway();
    let (_, _node) = lab.node_up(NODE, "cpu", 0);
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
    std::fs::write(
        bot_home.join("moltbot.toml"),
        "allowed_users = [\"U0ALICE\"]\nartifact_upload_max_bytes = 1024\n",
    )
    .unwrap();
    let slack = SlackEmulator::start();
    let script = format!(
        "SLACK_API_URL={} SLACK_BOT_TOKEN=xoxb-test-secret-token SLACK_APP_TOKEN=xapp-test exec {BIN} --home {} moltbot run",
        slack.api_url,
        bot_home.display()
    );
    let _bot = lab.spawn_cmd("sh", &["-c", &script]);
    testkit::wait_until(t, "moltbot to open Socket Mode", || {
        slack.connected().then_some(())
    });
    let ts = slack.mention("U0ALICE", "C0LAB", "<@U0MOLT> run report");
    // The small one arrives as a file in the request's thread...
    let file = testkit::wait_until(t, "the uploaded artifact", || {
        slack.files().into_iter().find(|f| f.title == "metrics.txt")
    });
    assert_eq!(file.content, b"loss=0.25");
    assert_eq!(
        (file.channel.as_str(), file.thread_ts.as_str()),
        ("C0LAB", ts.as_str())
    );
    // ...and the final message lists both, the big one with the command
    // that fetches it.
    let done = testkit::wait_until(t, "the final edit", || {
        slack
            .calls_of("chat.update")
            .into_iter()
            .map(|u| u.body["text"].as_str().unwrap_or_default().to_string())
            .find(|text| text.contains("Artifacts:"))
    });
    assert!(done.contains("Artifacts: 2 kept"), "{done}");
    assert!(done.contains("metrics.txt (9 bytes, attached)"), "{done}");
    assert!(
        done.contains("ckpt.txt (8893 bytes): `openclaw job artifacts 1 --get ckpt.txt`"),
        "{done}"
    );
    assert!(
        slack.files().iter().all(|f| f.title != "ckpt.txt"),
        "the big one was not uploaded"
    );
}

#[test]
fn the_dashboards_job_page_links_each_artifact_and_the_link_downloads_it() {
    use crate::dashboard::{authority, base, dashboard, printed_token, raw, status};
    let Some((chrome, driver)) = testkit::webdriver::browser_tools() else {
        eprintln!(
            "SKIPPED: needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let t = std::time::Duration::from_secs(30);
    let (mut lab, _node) = lab();
    let out = lab.run_job(&["--job", "report", "--json"]).ok();
    let job: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let id = job["id"].as_u64().unwrap();
    let (d, url) = dashboard(&mut lab, &["--listen", "127.0.0.1:0"]);
    let token = printed_token(&d, &url);
    let profile = tempfile::tempdir().unwrap();
    let b = testkit::webdriver::Browser::start(&chrome, &driver, profile.path());
    b.goto(&format!("{url}/"));
    b.wait_text("the login form", t, |p| p.contains("Log in"));
    b.type_text("#token", &token);
    b.click("form[action='login'] button");
    b.wait_text("the overview", t, |p| p.contains("Jobs now"));

    b.goto(&format!("{url}/jobs/{id}"));
    let page = b.wait_text("the job's artifacts", t, |p| p.contains("Artifacts"));
    assert!(page.contains("out/r.txt"), "{page}");
    // The link, followed by the logged-in browser, downloads the file.
    let got = b.eval(
        "var a = document.querySelector('#artifacts a.artifact');\
         var x = new XMLHttpRequest(); x.open('GET', a.href, false); x.send();\
         return [a.getAttribute('href'), x.status, x.responseText,\
                 x.getResponseHeader('content-disposition')];",
    );
    assert_eq!(
        got,
        serde_json::json!([
            format!("jobs/{id}/artifact?name=out%2Fr.txt"),
            200,
            "done\n",
            "attachment; filename=\"out_r.txt\""
        ]),
    );
    b.screenshot(&crate::dashboard::shots().join("artifacts.png"));
    // Without a session the same URL gives nothing, as for a job's log.
    let resp = raw(
        &url,
        &format!(
            "GET {}/jobs/{id}/artifact?name=out%2Fr.txt HTTP/1.1\r\nHost: {}\r\n",
            base(&url),
            authority(&url)
        ),
    );
    assert_eq!(status(&resp), 401, "{resp}");
    assert!(!resp.contains("done"), "{resp}");
}
