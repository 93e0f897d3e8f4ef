//! `openclaw dashboard` in a real browser: headless Chromium driven over
//! WebDriver against a lab with simulated GPUs. GPU cards and the job
//! holding a GPU, a live log that grows, an approval and an enrollment made
//! in the page, and the token and Host checks. Screenshots of each page go
//! to target/dashboard/. Skips (SKIPPED, not passed) without chromium and
//! chromium-driver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use testkit::swarm::{Swarm, SwarmOptions};
use testkit::webdriver::{Browser, browser_tools};
use testkit::{Lab, Proc, set_chat_test_policy, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard")
}

/// Starts a dashboard on the gateway's admin home; returns it and its URL.
fn dashboard(lab: &mut Lab, extra: &[&str]) -> (Proc, String) {
    let gw = lab.gw_home.clone();
    let mut args = vec!["dashboard"];
    args.extend_from_slice(extra);
    let p = lab.spawn(&gw, &args);
    let url = wait_until(T, "the dashboard to print its address", || {
        let out = std::fs::read_to_string(&p.stdout_path).ok()?;
        let line = out.lines().find(|l| l.starts_with("dashboard at "))?;
        Some(
            line.split_whitespace()
                .nth(2)?
                .trim_end_matches('/')
                .to_string(),
        )
    });
    (p, url)
}

/// One raw HTTP/1.1 request; returns the whole response.
fn raw(url: &str, request_head: &str) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "{request_head}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_dashboard_shows_gpus_live_logs_and_takes_approvals_in_a_browser() {
    let Some((chrome, driver)) = browser_tools() else {
        eprintln!(
            "SKIPPED: needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let mut lab = Lab::with_config(BIN, |c| set_chat_test_policy(c, "admin"));
    lab.start_gateway();
    let (_h1, _n1) = lab.node_up("worker-gpu-01", "gpu", 2);
    let (_h2, _n2) = lab.node_up("lab-gpu-02", "gpu", 1);
    let (_d, url) = dashboard(&mut lab, &["--listen", "127.0.0.1:0"]);
    let profile = tempfile::tempdir().unwrap();
    let b = Browser::start(&chrome, &driver, profile.path());

    // A job holding a GPU, printing for a while.
    let job = lab.detach(&[
        "--node",
        "lab-gpu-02",
        "--gpus",
        "1",
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 150 ]; do echo tick-$i; i=$((i+1)); sleep 0.2; done",
    ]);
    lab.wait_job(job, "running", T);

    // Overview: GPU totals.
    b.goto(&format!("{url}/"));
    b.wait_text("the overview", T, |t| {
        t.contains("GPUs") && t.contains("busy")
    });
    b.screenshot(&shots().join("overview.png"));

    // GPUs: one card per GPU, and the job holding one.
    b.goto(&format!("{url}/gpus"));
    let held = format!("held by job {job}");
    let page = b.wait_text("the GPU cards and the holder", T, |t| {
        t.contains("3 GPUs on this page") && t.contains(&held)
    });
    assert!(page.contains("of admin"), "{page}");
    assert_eq!(
        b.eval("return document.querySelectorAll('article.gpu').length;"),
        3
    );
    b.screenshot(&shots().join("gpus.png"));

    // The job page: the log grows while the job runs.
    b.goto(&format!("{url}/jobs/{job}"));
    b.wait_text("early output", T, |t| t.contains("tick-3"));
    let log_len = || {
        b.eval("return document.getElementById('log').textContent.length;")
            .as_u64()
            .unwrap_or(0)
    };
    let early = log_len();
    wait_until(T, "the log to grow while the job runs", || {
        (log_len() > early + 20).then_some(())
    });
    assert_eq!(lab.job(job)["state"], "running", "it grew before the end");
    b.screenshot(&shots().join("job.png"));
    b.wait_text("the job's end", Duration::from_secs(60), |t| {
        t.contains("job exited, exit code 0")
    });
    let log = b.eval("return document.getElementById('log').textContent;");
    let want: String = (0..150).map(|i| format!("tick-{i}\n")).collect();
    assert_eq!(log.as_str(), Some(want.as_str()), "the log is whole, once");

    // The log stream resumes from the offsets in Last-Event-ID
    // (STDOUT:STDERR): after the 7 bytes of "tick-0\n" comes "tick-1".
    let host = url.trim_start_matches("http://").to_string();
    let resumed = raw(
        &url,
        &format!("GET /jobs/{job}/log HTTP/1.1\r\nHost: {host}\r\nLast-Event-ID: 7:0\r\n"),
    );
    let first = resumed
        .lines()
        .find(|l| l.starts_with("data:"))
        .unwrap_or_else(|| panic!("{resumed}"));
    let first = first.trim_start_matches("data:").trim_start();
    assert!(first.starts_with("\"tick-1\\ntick-2\\n"), "{first}");
    assert!(
        resumed.contains("event:end") || resumed.contains("event: end"),
        "{resumed}"
    );

    // A big log opens at its tail, and says what it left out.
    let out = lab.run_job(&[
        "--node",
        "lab-gpu-02",
        "--shell",
        "--",
        "seq 1 200000; echo END-OF-BIG-LOG",
    ]);
    assert_eq!(out.code, 0);
    let big = lab.jobs()[0]["id"].as_u64().unwrap();
    b.goto(&format!("{url}/jobs/{big}"));
    let page = b.wait_text("the tail of a big log", T, |t| t.contains("END-OF-BIG-LOG"));
    assert!(
        page.contains("earlier output not shown"),
        "{}",
        &page[..page.len().min(2000)]
    );
    assert!(!page.contains("\n1\n2\n3\n"), "the head was left out");

    // Jobs list.
    b.goto(&format!("{url}/jobs"));
    b.wait_text("the job list", T, |t| t.contains(&format!("{job}")));
    b.screenshot(&shots().join("jobs.png"));

    // An approval made in the page releases a held job (another admin's:
    // nobody approves their own).
    let alice = lab.second_admin("alice");
    let out = lab
        .run(
            &alice,
            &[
                "run",
                "--detach",
                "--node",
                "worker-gpu-01",
                "--",
                "echo",
                "approved-in-browser",
            ],
        )
        .ok();
    let held_job: u64 = out.stdout.trim().parse().unwrap();
    lab.wait_job(held_job, "awaiting-approval", T);
    b.goto(&format!("{url}/jobs/{held_job}"));
    b.wait_text("the approval buttons", T, |t| t.contains("Approve"));
    b.screenshot(&shots().join("approval.png"));
    b.click("form[action$='/approve'] button");
    let done = lab.wait_job(held_job, "exited", T);
    assert_eq!(done["approved_by"], "admin", "{done}");
    b.goto(&format!("{url}/jobs/{held_job}"));
    b.wait_text("the released job's output", T, |t| {
        t.contains("approved-in-browser")
    });

    // An enrollment approved in the page, after a confirmation.
    let token = lab.token(&["--labels", "cpu"]);
    let home = lab.home("worker-new");
    lab.run(
        &home,
        &[
            "node",
            "enroll",
            "--token",
            &token,
            "--name",
            "worker-new",
            "--wait",
            "1s",
        ],
    )
    .fails_with(75, "pending");
    b.goto(&format!("{url}/enrollments"));
    b.wait_text("the pending request", T, |t| t.contains("worker-new"));
    b.screenshot(&shots().join("enrollments.png"));
    b.click("form[action='/nodes/worker-new/approve'] button");
    b.accept_dialog();
    wait_until(T, "worker-new to be approved", || {
        lab.node("worker-new")
            .filter(|n| n["connection"] != "pending")
    });

    // A change without the page's CSRF token, or from another origin, is
    // refused; so is a request naming another host.
    let forged = raw(
        &url,
        &format!(
            "POST /jobs/{job}/cancel HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\n\r\ncsrf=nope"
        ),
    );
    assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");
    let rebound = raw(&url, "GET / HTTP/1.1\r\nHost: evil.example\r\n");
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
}

#[test]
fn off_loopback_the_dashboard_needs_its_token() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let gw = lab.gw_home.clone();
    // Refused without a token file.
    lab.run(&gw, &["dashboard", "--listen", "0.0.0.0:0"])
        .fails_with(2, "--auth-token-file");
    let file = lab.dir().join("dash.token");
    std::fs::write(&file, "k7Qe0m1X9wPz4rTj2bLs\n").unwrap();
    let (_d, url) = dashboard(
        &mut lab,
        &[
            "--listen",
            "0.0.0.0:0",
            "--auth-token-file",
            file.to_str().unwrap(),
        ],
    );
    let port = url.rsplit(':').next().unwrap().to_string();
    let local = format!("http://127.0.0.1:{port}");
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let none = raw(&local, &format!("GET / HTTP/1.1\r\n{host}"));
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    assert!(none.contains("/login?token="), "{none}");
    let wrong = raw(
        &local,
        &format!("GET /gpus HTTP/1.1\r\n{host}Authorization: Bearer wrong-token-123456\r\n"),
    );
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let right = raw(
        &local,
        &format!("GET / HTTP/1.1\r\n{host}Authorization: Bearer k7Qe0m1X9wPz4rTj2bLs\r\n"),
    );
    assert!(right.starts_with("HTTP/1.1 200"), "{right}");
    let login = raw(
        &local,
        &format!("GET /login?token=k7Qe0m1X9wPz4rTj2bLs HTTP/1.1\r\n{host}"),
    );
    assert!(login.contains("HttpOnly; SameSite=Strict"), "{login}");
    let cookie = raw(
        &local,
        &format!("GET /jobs HTTP/1.1\r\n{host}Cookie: openclaw_dashboard=k7Qe0m1X9wPz4rTj2bLs\r\n"),
    );
    assert!(cookie.starts_with("HTTP/1.1 200"), "{cookie}");
}

/// 1,000 nodes with 2 simulated GPUs each: the pages stay paged (50 nodes,
/// 100 GPU cards), the overview counts all of them from one summary, and
/// following the "next" links visits every node once.
#[test]
fn the_dashboard_pages_a_thousand_gpu_nodes() {
    let mut lab = Lab::with_config(BIN, |cfg| {
        *cfg = cfg
            .replace("rate_per_minute = 60", "rate_per_minute = 100000")
            .replace("heartbeat_interval = \"1s\"", "heartbeat_interval = \"5s\"")
            .replace("dead_after = \"3s\"", "dead_after = \"15s\"");
    });
    lab.start_gateway();
    let token = lab.token(&[
        "--auto-approve",
        "--uses",
        "1000",
        "--labels",
        "sim",
        "--max-gpus",
        "2",
    ]);
    let addr = std::fs::read_to_string(lab.gw_home.join("gateway.addr")).unwrap();
    let opts = SwarmOptions {
        nodes: 1000,
        gpus: 2,
        keep_alive: (Duration::from_secs(5), Duration::from_secs(15)),
        ..Default::default()
    };
    let (swarm, _) = Swarm::start(
        &lab.dir().join("swarm"),
        addr.trim(),
        &token,
        &opts,
        Duration::from_secs(300),
    )
    .unwrap();
    let (_d, url) = dashboard(&mut lab, &["--listen", "127.0.0.1:0"]);
    let host = url.trim_start_matches("http://").to_string();
    let get = |path: &str| raw(&url, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n"));

    let overview = wait_until(T, "every GPU in the overview", || {
        let p = get("/");
        p.contains("<dd id=\"gpus-free\">2000</dd>").then_some(p)
    });
    assert!(overview.contains("1000 nodes by health"), "{overview}");

    let mut seen = Vec::new();
    let mut path = "/gpus".to_string();
    loop {
        let page = get(&path);
        assert!(page.starts_with("HTTP/1.1 200"), "{path}: {page}");
        let cards = page.matches("<article class=\"gpu").count();
        assert!(cards <= 100, "{path}: {cards} cards on one page");
        for chunk in page.split("aria-label=\"").skip(1) {
            if let Some(name) = chunk
                .split(" GPU 0\"")
                .next()
                .filter(|n| n.starts_with("sim-") && !n.contains('"'))
            {
                seen.push(name.to_string());
            }
        }
        match page.split("href=\"/gpus?after=").nth(1) {
            Some(rest) => path = format!("/gpus?after={}", rest.split('"').next().unwrap()),
            None => break,
        }
    }
    assert_eq!(
        seen, swarm.names,
        "every node once, in name order, 50 a page"
    );
}
