//! `openclaw dashboard` in a real browser: headless Chromium driven over
//! WebDriver against a lab with simulated GPUs. A login through the form,
//! the overview (jobs now, recent failures), the node list and a node's
//! page, GPU cards with scaled sparklines and the job holding a GPU, the
//! job list (quoted argv, GPU, start and duration columns), a live log
//! that grows, a running job's page that settles under
//! `--virtual-time-budget`, an approval and an enrollment (confirming
//! labels and GPUs) made in the page, a logout, and the token, Host and
//! CSRF checks; as a plain HTTP client, a local process without the
//! token trying every route; and a server on another loopback port that
//! the logged-in browser visits, which gets no cookie (the dashboard lives
//! under a random base path, and its cookie is scoped to it). Screenshots
//! of each page go to target/dashboard/. The browser tests skip (SKIPPED,
//! not passed) without chromium and chromium-driver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::swarm::{Swarm, SwarmOptions};
use testkit::webdriver::{Browser, browser_tools};
use testkit::{Lab, Proc, set_chat_test_policy, wait_until};

pub(super) const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
pub(super) const T: Duration = Duration::from_secs(30);

pub(super) fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard")
}

/// Starts a dashboard on the gateway's admin home; returns it and its URL,
/// its base path included but without the last slash
/// (`http://127.0.0.1:PORT/d-…`), so that `{url}/jobs` is a page.
pub(super) fn dashboard(lab: &mut Lab, extra: &[&str]) -> (Proc, String) {
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

/// The token a dashboard made at start, from the line it printed to
/// standard error: `log in at URL/login with the token TOKEN (…)`.
pub(super) fn printed_token(p: &Proc, url: &str) -> String {
    wait_until(T, "the dashboard to print its token", || {
        let err = std::fs::read_to_string(&p.stderr_path).ok()?;
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("log in at {url}/login with the token ")))?;
        Some(line.split_whitespace().nth(7)?.to_string())
    })
}

/// `HOST:PORT` of a URL.
pub(super) fn authority(url: &str) -> &str {
    let rest = url.trim_start_matches("http://");
    rest.split('/').next().unwrap()
}

/// `http://HOST:PORT` of a URL: what a page of it sends as Origin.
pub(super) fn origin(url: &str) -> String {
    format!("http://{}", authority(url))
}

/// The path of a dashboard URL without its last slash: the base path
/// (`/d-…`), so that `{base}/jobs` is a page.
pub(super) fn base(url: &str) -> &str {
    let rest = url.trim_start_matches("http://");
    let path = &rest[authority(url).len()..];
    assert!(
        path.starts_with("/d-") && path.len() > 20,
        "no base in {url}"
    );
    path.trim_end_matches('/')
}

/// One raw HTTP/1.1 request to the host of `url`; returns the whole
/// response.
pub(super) fn raw(url: &str, request_head: &str) -> String {
    let addr = authority(url);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "{request_head}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// One raw HTTP/1.1 request with a form body.
pub(super) fn raw_form(url: &str, request_head: &str, body: &str) -> String {
    raw(
        url,
        &format!(
            "{request_head}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The status code of a raw response.
pub(super) fn status(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {resp:?}"))
}

/// A header of a raw response (the first one of that name).
pub(super) fn header(resp: &str, name: &str) -> Option<String> {
    let head = resp.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A loopback proxy in front of the dashboard at `url` that adds its
/// Bearer `token` (and its Host) to every request, one request per
/// connection: a browser with no way to log in (`chromium --headless
/// --dump-dom` on the command line) loads pages through it. Returns the
/// proxy's URL.
pub(super) fn bearer_proxy(url: &str, token: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let dash = authority(url).to_string();
    let token = token.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (dash, token) = (dash.clone(), token.clone());
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
                let first = lines.next().unwrap_or_default();
                let mut out = format!(
                    "{first}\r\nHost: {dash}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n"
                );
                let mut len = 0;
                for l in lines {
                    let name = l.split(':').next().unwrap_or_default().to_ascii_lowercase();
                    if matches!(
                        name.as_str(),
                        "host" | "connection" | "authorization" | "keep-alive"
                    ) {
                        continue;
                    }
                    if name == "content-length" {
                        len = l[15..].trim().parse().unwrap_or(0);
                    }
                    out.push_str(l);
                    out.push_str("\r\n");
                }
                out.push_str("\r\n");
                let mut body = vec![0; len];
                if conn.read_exact(&mut body).is_err() {
                    return;
                }
                let Ok(mut up) = std::net::TcpStream::connect(&dash) else {
                    return;
                };
                if up.write_all(out.as_bytes()).is_ok() && up.write_all(&body).is_ok() {
                    let _ = std::io::copy(&mut up, &mut conn);
                }
            });
        }
    });
    proxy
}

/// `chromium --headless --virtual-time-budget=5000 --dump-dom URL`: the
/// DOM once 5 s of the page's (virtual) time have passed, and how long
/// that took. Chromium's virtual time stands still while any request is
/// open, so a page that holds one open never returns: after `bound` the
/// browser is killed and the test fails.
pub(super) fn dump_dom_settled(chrome: &Path, url: &str, bound: Duration) -> (String, Duration) {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let mut child = std::process::Command::new(chrome)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(out.reopen().unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium --dump-dom {url}: {status}");
            break;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium --virtual-time-budget=5000 --dump-dom {url} did not return within {bound:?}: \
                 the page never settles (a request held open?)"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (
        std::fs::read_to_string(out.path()).unwrap(),
        started.elapsed(),
    )
}

/// Logs in through the form as a browser would (Host and Origin of the
/// dashboard); returns the `Cookie` header value to send after.
pub(super) fn login(url: &str, token: &str) -> String {
    let (host, origin, base) = (authority(url), origin(url), base(url));
    let resp = raw_form(
        url,
        &format!("POST {base}/login HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n"),
        &format!("token={token}"),
    );
    assert_eq!(status(&resp), 303, "{resp}");
    let set = header(&resp, "set-cookie").unwrap_or_else(|| panic!("no cookie: {resp}"));
    set.split(';').next().unwrap().to_string()
}

mod attacks;
mod browser;
mod scale;
