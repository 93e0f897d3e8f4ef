//! The fair-share queue seen three ways (issue 24), against a real
//! gateway and node agent on 127.0.0.1: `openclaw job list --queued`, the
//! chat `queue` reply and the dashboard's usage page in headless Chromium
//! show the waiting jobs in the same order, the one the queue serves (the
//! account that used least first). The browser part skips (SKIPPED, not
//! passed) without chromium and chromium-driver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::webdriver::{Browser, browser_tools};
use testkit::{Lab, wait_until};

use crate::dashboard::{dashboard, printed_token, shots};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);
const NODE: &str = "worker-gpu-01";

/// A lab member's credential; its home.
fn member(lab: &mut Lab, name: &str) -> PathBuf {
    let home = lab.home(name);
    lab.admin(&[
        "client",
        "create",
        name,
        "--role",
        "user",
        "--out",
        home.to_str().unwrap(),
    ])
    .ok();
    home
}

/// Submits a one-GPU job as `home`, waiting in the queue if it must; its id.
fn submit(lab: &Lab, home: &Path) -> u64 {
    let out = lab
        .run(
            home,
            &[
                "run",
                "--detach",
                "--queue",
                "--queue-timeout",
                "10m",
                "--node",
                NODE,
                "--gpus",
                "1",
                "--",
                "sleep",
                "600",
            ],
        )
        .ok();
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no job id in {out:?}"))
}

/// The job ids a text names as `job N`, in order.
fn jobs_named(text: &str) -> Vec<u64> {
    text.split("job ")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn the_queue_shows_one_order_in_the_cli_in_chat_and_on_the_dashboard() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let (_home, _node) = lab.node_up(NODE, "gpu", 1);
    let alice = member(&mut lab, "alice");
    let bob = member(&mut lab, "bob");

    // Alice holds the only GPU for a while, then queues two more; bob,
    // who used nothing, queues one after hers.
    let first = submit(&lab, &alice);
    lab.wait_job(first, "running", T);
    std::thread::sleep(Duration::from_secs(3));
    let a2 = submit(&lab, &alice);
    let a3 = submit(&lab, &alice);
    let b1 = submit(&lab, &bob);
    let want = vec![b1, a2, a3];

    // The CLI.
    let out = lab.admin(&["job", "list", "--queued", "--json"]).ok();
    let q: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let cli: Vec<u64> = q["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(cli, want, "job list --queued: {q}");
    let table = lab.admin(&["job", "list", "--queued"]).ok().stdout;
    assert!(
        table.contains("WAITING FOR") && table.contains("3 jobs waiting"),
        "{table}"
    );
    // A member sees their own, at their places.
    let theirs = lab.run(&alice, &["job", "list", "--queued", "--json"]).ok();
    let theirs: serde_json::Value = serde_json::from_str(&theirs.stdout).unwrap();
    let places: Vec<(u64, u64)> = theirs["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["position"].as_u64().unwrap(), e["id"].as_u64().unwrap()))
        .collect();
    assert_eq!(places, [(2, a2), (3, a3)]);

    // Chat.
    let reply = lab.admin(&["chat", "queue"]).ok().stdout;
    assert!(reply.contains("3 waiting in all"), "{reply}");
    assert_eq!(jobs_named(&reply), want, "chat: {reply}");

    // The dashboard's usage page.
    let Some((chrome, driver)) = browser_tools() else {
        eprintln!(
            "SKIPPED: the dashboard part needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let (d, url) = dashboard(&mut lab, &["--listen", "127.0.0.1:0"]);
    let token = printed_token(&d, &url);
    let profile = tempfile::tempdir().unwrap();
    let b = Browser::start(&chrome, &driver, profile.path());
    b.goto(&format!("{url}/"));
    b.wait_text("the login form", T, |t| t.contains("Log in"));
    b.type_text("#token", &token);
    b.click("form[action='login'] button");
    b.wait_text("the overview", T, |t| t.contains("Jobs now"));
    b.goto(&format!("{url}/usage"));
    b.wait_text("the usage page", T, |t| {
        t.contains("in the order they are served") && t.contains("GPU-hours per account per day")
    });
    let page: Vec<u64> = wait_until(T, "the queue table", || {
        let ids = b.eval(
            "return Array.from(document.querySelectorAll('#queue tbody tr')).map(r => r.dataset.job).join(',');",
        );
        let ids: Vec<u64> = ids
            .as_str()?
            .split(',')
            .filter_map(|s| s.parse().ok())
            .collect();
        (ids.len() == 3).then_some(ids)
    });
    assert_eq!(page, want, "dashboard");
    // Each waiting job says why; the charts are there with their words.
    let reasons = b.eval("return document.getElementById('queue').innerText;");
    let reasons = reasons.as_str().unwrap();
    assert!(reasons.contains("waiting for capacity"), "{reasons}");
    assert!(
        reasons.contains("ahead in the fair-share order") || reasons.contains("capacity"),
        "{reasons}"
    );
    let bars = b.eval("return document.getElementById('usage-chart').getAttribute('aria-label');");
    assert!(bars.as_str().unwrap().contains("user:alice"), "{bars}");
    assert_eq!(
        b.eval("return document.querySelectorAll('#queue-length polyline').length;"),
        1
    );
    std::fs::create_dir_all(shots()).unwrap();
    b.screenshot(&shots().join("usage.png"));
}

#[test]
fn a_quota_refusal_exits_as_a_policy_refusal() {
    // A script must tell "the gateway refused this" from "the command
    // failed": a quota refusal exited 1, the code of a remote failure.
    let mut lab = Lab::with_config(BIN, |cfg| {
        cfg.push_str("\n[quotas.default]\ngpus = 1\n");
    });
    lab.start_gateway();
    let (_home, _node) = lab.node_up(NODE, "gpu", 2);
    let out = lab.run_job(&["--node", NODE, "--gpus", "2", "--", "true"]);
    assert_eq!(out.code, 252, "{out:?}");
    assert!(
        out.stderr.contains("quotas.default.gpus"),
        "names the quota: {}",
        out.stderr
    );
}
