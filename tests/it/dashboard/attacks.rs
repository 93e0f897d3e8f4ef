use super::*;

#[test]
fn off_loopback_the_dashboard_needs_its_token_file() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let gw = lab.gw_home.clone();
    // Refused without a token file.
    lab.run(&gw, &["dashboard", "--listen", "0.0.0.0:0"])
        .fails_with(2, "--auth-token-file");
    let file = lab.dir().join("dash.token");
    let secret = "k7Qe0m1X9wPz4rTj2bLs";
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let path = file.to_str().unwrap();
    // A token file others may read is refused, like a private key.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    lab.run(
        &gw,
        &[
            "dashboard",
            "--listen",
            "0.0.0.0:0",
            "--auth-token-file",
            path,
        ],
    )
    .fails_with(2, "chmod 600");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (d, url) = dashboard(
        &mut lab,
        &["--listen", "0.0.0.0:0", "--auth-token-file", path],
    );
    let port = authority(&url).rsplit(':').next().unwrap().to_string();
    let b_ = base(&url).to_string();
    let local = format!("http://127.0.0.1:{port}{b_}");
    // It says where the token is, and does not print it.
    let said = wait_until(T, "the login line", || {
        let err = std::fs::read_to_string(&d.stderr_path).ok()?;
        err.lines()
            .find(|l| l.starts_with("log in at "))
            .map(str::to_string)
    });
    assert!(said.contains(path) && !said.contains(secret), "{said}");
    assert!(said.contains(&format!("{b_}/login")), "{said}");
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let none = raw(&local, &format!("GET {b_}/ HTTP/1.1\r\n{host}"));
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    assert!(none.contains("action=\"login\""), "{none}");
    assert!(none.contains(&format!("<base href=\"{b_}/\">")), "{none}");
    assert!(!none.contains("login?token"), "{none}");
    let wrong = raw(
        &local,
        &format!("GET {b_}/gpus HTTP/1.1\r\n{host}Authorization: Bearer wrong-token-123456\r\n"),
    );
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let right = raw(
        &local,
        &format!("GET {b_}/ HTTP/1.1\r\n{host}Authorization: Bearer {secret}\r\n"),
    );
    assert!(right.starts_with("HTTP/1.1 200"), "{right}");
    // The token, without the base path: nothing.
    let outside = raw(
        &local,
        &format!("GET / HTTP/1.1\r\n{host}Authorization: Bearer {secret}\r\n"),
    );
    assert!(outside.starts_with("HTTP/1.1 404"), "{outside}");
    // The token in a URL does nothing.
    let by_url = raw(
        &local,
        &format!("GET {b_}/login?token={secret} HTTP/1.1\r\n{host}"),
    );
    assert!(header(&by_url, "set-cookie").is_none(), "{by_url}");
    let cookie = login(&local, secret);
    assert!(
        !cookie.contains(secret),
        "the cookie is a session, not the token: {cookie}"
    );
    let with_cookie = raw(
        &local,
        &format!("GET {b_}/jobs HTTP/1.1\r\n{host}Cookie: {cookie}\r\n"),
    );
    assert!(with_cookie.starts_with("HTTP/1.1 200"), "{with_cookie}");
}

/// Issue 20, item 1: a process on the dashboard's machine (a job running
/// as `nobody`, another user) reaches its loopback port and sets Host and
/// Origin by hand, as curl does. Without the token it gets no page, data,
/// log stream or CSRF token, and every change it posts, on every POST
/// route the dashboard has, is refused; the gateway shows nothing
/// happened. The token in a URL does not log in; through the form it
/// does, for a session cookie that then works.
#[test]
fn attack_a_local_process_without_the_token_cannot_drive_the_dashboard() {
    let mut lab = Lab::with_config(BIN, |c| set_chat_test_policy(c, "admin"));
    lab.start_gateway();
    let (_h1, _n1) = lab.node_up("worker-gpu-01", "gpu", 1);
    let (_h2, _n2) = lab.node_up("worker-cpu-01", "cpu", 0);
    // A job held for approval (another admin's), a running job, and a
    // pending enrollment: something for every action to change.
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
                "held-job-ran",
            ],
        )
        .ok();
    let held: u64 = out.stdout.trim().parse().unwrap();
    lab.wait_job(held, "awaiting-approval", T);
    let running = lab.detach(&["--node", "worker-cpu-01", "--", "sleep", "120"]);
    lab.wait_job(running, "running", T);
    let join = lab.token(&["--labels", "cpu"]);
    let newcomer = lab.home("worker-new");
    lab.run(
        &newcomer,
        &[
            "node",
            "enroll",
            "--token",
            &join,
            "--name",
            "worker-new",
            "--wait",
            "1s",
        ],
    )
    .fails_with(75, "pending");

    let (d, url) = dashboard(&mut lab, &["--listen", "127.0.0.1:0"]);
    let host = authority(&url).to_string();
    let port = host.rsplit(':').next().unwrap().to_string();
    // The base path: this process is assumed to know it (it is no secret;
    // another user's server on another port never learns it, and the
    // cookie test below covers that).
    let b_ = base(&url).to_string();
    // What a local process sends: the right Host and Origin, no secret.
    let hdrs = format!("Host: {host}\r\nOrigin: {}\r\n", origin(&url));
    let fingerprint = lab.node("worker-new").unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let digest = lab.job(held)["plan_digest"].as_str().unwrap().to_string();
    let body = format!("csrf=guess&plan_digest={digest}&fingerprint={fingerprint}");
    // Nothing in an answer may reveal state, the CSRF token or a secret.
    let reveals = |resp: &str, secret: &str| {
        [
            "name=\"csrf\"",
            "worker-gpu-01",
            "worker-cpu-01",
            "worker-new",
            "held-job-ran",
            "sleep 120",
            "\ndata:",
            secret,
        ]
        .into_iter()
        .find(|s| !s.is_empty() && resp.contains(s))
        .map(str::to_string)
    };

    // Every page, data stream and script, by GET and HEAD, with the
    // fragment header app.js sends, and with trailing slashes.
    let mut gets = vec![
        "/".to_string(),
        "/nodes".into(),
        "/nodes/worker-gpu-01".into(),
        "/nodes?after=a".into(),
        "/gpus".into(),
        "/jobs".into(),
        "/usage".into(),
        "/enrollments".into(),
        format!("/jobs/{held}"),
        format!("/jobs/{running}"),
        format!("/jobs/{running}/log"),
        format!("/jobs/{running}/cast"),
        "/static/app.js".into(),
        "/gpus?after=a".into(),
        "/?token=x".into(),
    ];
    let slashed: Vec<String> = gets
        .iter()
        .filter(|p| *p != "/" && !p.contains('?'))
        .map(|p| format!("{p}/"))
        .collect();
    gets.extend(slashed);
    let guessed = format!("Cookie: openclaw_dashboard_{port}=0123456789abcdef0123456789abcdef\r\n");
    let get_all = |extras: &[&str], secret: &str| {
        for path in &gets {
            for extra in extras {
                for method in ["GET", "HEAD"] {
                    let resp = raw(
                        &url,
                        &format!("{method} {b_}{path} HTTP/1.1\r\n{hdrs}{extra}"),
                    );
                    assert_eq!(status(&resp), 401, "{method} {path} {extra:?}: {resp}");
                    assert_eq!(reveals(&resp, secret), None, "{method} {path}: {resp}");
                    assert!(header(&resp, "set-cookie").is_none(), "{resp}");
                }
            }
        }
    };
    get_all(
        &[
            "",
            "X-Fragment: 1\r\n",
            "Accept: text/event-stream\r\nLast-Event-ID: 0:0\r\n",
            &guessed,
        ],
        "",
    );

    // Every POST route the router has, and other methods on them.
    let posts = [
        format!("/jobs/{held}/approve"),
        format!("/jobs/{held}/deny"),
        format!("/jobs/{running}/cancel"),
        format!("/jobs/{held}/cancel"),
        "/nodes/worker-new/approve".into(),
        "/nodes/worker-new/reject".into(),
        "/nodes/worker-gpu-01/revoke".into(),
        "/nodes/worker-cpu-01/revoke".into(),
        "/logout".into(),
        format!("/jobs/{held}/approve/"),
        "/nodes/worker-gpu-01/revoke/".into(),
    ];
    let post_all = |methods: &[&str], extras: &[&str], secret: &str| {
        for path in &posts {
            for method in methods {
                for extra in extras {
                    let resp = raw_form(
                        &url,
                        &format!("{method} {b_}{path} HTTP/1.1\r\n{hdrs}{extra}"),
                        &body,
                    );
                    assert_eq!(status(&resp), 401, "{method} {path}: {resp}");
                    assert_eq!(reveals(&resp, secret), None, "{method} {path}: {resp}");
                }
            }
        }
    };
    post_all(
        &["POST", "PUT", "DELETE", "PATCH"],
        &["", "X-Fragment: 1\r\n", &guessed],
        "",
    );

    // Now knowing the token (as a process that read the dashboard's
    // terminal could): it is no session cookie, under the old cookie name
    // or the new one, and it logs nobody in from a URL.
    let token = printed_token(&d, &url);
    let old_cookie = format!("Cookie: openclaw_dashboard={token}\r\n");
    let token_cookie = format!("Cookie: openclaw_dashboard_{port}={token}\r\n");
    get_all(&[&old_cookie, &token_cookie], &token);
    post_all(&["POST"], &[&old_cookie, &token_cookie], &token);
    // The login page and the stylesheet are open, and reveal nothing.
    for path in ["/login", "/static/app.css"] {
        let resp = raw(&url, &format!("GET {b_}{path} HTTP/1.1\r\n{hdrs}"));
        assert_eq!(status(&resp), 200, "{path}: {resp}");
        assert_eq!(reveals(&resp, &token), None, "{path}: {resp}");
    }

    // The token in a URL does not log in, by GET or by POST.
    for req in [
        format!("GET {b_}/login?token={token} HTTP/1.1\r\n{hdrs}"),
        format!("GET {b_}/?token={token} HTTP/1.1\r\n{hdrs}"),
    ] {
        let resp = raw(&url, &req);
        assert!(header(&resp, "set-cookie").is_none(), "{req}: {resp}");
        assert_eq!(reveals(&resp, &token), None, "{req}: {resp}");
    }
    let resp = raw_form(
        &url,
        &format!("POST {b_}/login?token={token} HTTP/1.1\r\n{hdrs}"),
        "token=wrong",
    );
    assert!(header(&resp, "set-cookie").is_none(), "{resp}");
    // Wrong tokens, through the form or as Bearer: refused, one at a time,
    // a second each, however many connections ask at once.
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        let guesses: Vec<_> = (0..3)
            .map(|i| {
                let (url, hdrs, b_) = (&url, &hdrs, &b_);
                s.spawn(move || {
                    if i == 0 {
                        raw(
                            url,
                            &format!(
                                "GET {b_}/ HTTP/1.1\r\n{hdrs}Authorization: Bearer guess{i}\r\n"
                            ),
                        )
                    } else {
                        raw_form(
                            url,
                            &format!("POST {b_}/login HTTP/1.1\r\n{hdrs}"),
                            &format!("token=0123456789abcdef0123456789abcde{i}"),
                        )
                    }
                })
            })
            .collect();
        for g in guesses {
            let resp = g.join().unwrap();
            assert_eq!(status(&resp), 401, "{resp}");
            assert!(header(&resp, "set-cookie").is_none(), "{resp}");
        }
    });
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "three wrong tokens answered in {:?}",
        started.elapsed()
    );
    // The right token from another origin (login CSRF), or from none: refused.
    for origin in ["Origin: http://evil.example\r\n", "Origin: null\r\n", ""] {
        let resp = raw_form(
            &url,
            &format!("POST {b_}/login HTTP/1.1\r\nHost: {host}\r\n{origin}"),
            &format!("token={token}"),
        );
        assert_eq!(status(&resp), 403, "{origin:?}: {resp}");
        assert!(header(&resp, "set-cookie").is_none(), "{resp}");
    }

    // The gateway shows nothing happened: the held job is held and
    // unapproved, the running job runs, the request is pending, and both
    // nodes are still enrolled and connected.
    let j = lab.job(held);
    assert_eq!(j["state"], "awaiting-approval", "{j}");
    assert!(j["approved_by"].is_null(), "{j}");
    assert_eq!(lab.job(running)["state"], "running");
    assert_eq!(lab.node("worker-new").unwrap()["connection"], "pending");
    for n in ["worker-gpu-01", "worker-cpu-01"] {
        assert_eq!(lab.node(n).unwrap()["connection"], "connected", "{n}");
    }

    // With the token through the form: a session cookie that is not the
    // token, HttpOnly and SameSite=Strict, that works for pages and, with
    // the page's CSRF token, for changes.
    let resp = raw_form(
        &url,
        &format!("POST {b_}/login HTTP/1.1\r\n{hdrs}"),
        &format!("token={token}"),
    );
    assert_eq!(status(&resp), 303, "{resp}");
    let set = header(&resp, "set-cookie").unwrap();
    assert!(
        set.starts_with(&format!("openclaw_dashboard_{port}=")),
        "{set}"
    );
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(&token), "{set}");
    let cookie = format!("Cookie: {}\r\n", set.split(';').next().unwrap());
    let page = raw(
        &url,
        &format!("GET {b_}/jobs/{held} HTTP/1.1\r\n{hdrs}{cookie}"),
    );
    assert_eq!(status(&page), 200, "{page}");
    let csrf = page
        .split("<meta name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    // A session without the page's CSRF token, or from another origin, is
    // still refused.
    let no_csrf = raw_form(
        &url,
        &format!("POST {b_}/jobs/{held}/approve HTTP/1.1\r\n{hdrs}{cookie}"),
        &body,
    );
    assert_eq!(status(&no_csrf), 403, "{no_csrf}");
    let elsewhere = raw_form(
        &url,
        &format!(
            "POST {b_}/jobs/{held}/approve HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\n{cookie}"
        ),
        &format!("csrf={csrf}&plan_digest={digest}"),
    );
    assert_eq!(status(&elsewhere), 403, "{elsewhere}");
    assert_eq!(lab.job(held)["state"], "awaiting-approval");
    let approved = raw_form(
        &url,
        &format!("POST {b_}/jobs/{held}/approve HTTP/1.1\r\n{hdrs}{cookie}"),
        &format!("csrf={csrf}&plan_digest={digest}"),
    );
    assert_eq!(status(&approved), 303, "{approved}");
    let done = lab.wait_job(held, "exited", T);
    assert_eq!(done["approved_by"], "admin", "{done}");
    // Logging out ends the session on the server, not only in the browser.
    let out = raw_form(
        &url,
        &format!("POST {b_}/logout HTTP/1.1\r\n{hdrs}{cookie}"),
        &format!("csrf={csrf}"),
    );
    assert_eq!(status(&out), 303, "{out}");
    assert_eq!(
        header(&out, "location"),
        Some(format!("{b_}/login")),
        "{out}"
    );
    let after = raw(&url, &format!("GET {b_}/ HTTP/1.1\r\n{hdrs}{cookie}"));
    assert_eq!(status(&after), 401, "{after}");
}

/// A stand-in for another user's web server on another loopback port: it
/// answers every request with a small page and keeps every request head it
/// got. Returns its URL and the heads.
fn other_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = heads.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if conn.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            kept.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).to_string());
            let body = "<!doctype html><title>elsewhere</title><p>another server</p>";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, heads)
}

/// Issue 20, second review, attack A: browsers keep cookies apart by host,
/// not by port, so a session cookie with `Path=/` for 127.0.0.1 went to
/// every server on 127.0.0.1 the admin opened, another user's included,
/// and that user replayed it as admin. Now the dashboard lives under a
/// random base path, and its cookie is scoped to it. After a login in
/// headless Chromium, the browser visits a server on another loopback
/// port (and follows a link to it from a dashboard page): that server gets
/// no dashboard cookie and no Referer naming the base, while the browser
/// is still logged in to the dashboard. A valid session cookie replayed by
/// a plain client outside the base gets a bare 404 on every route, and
/// inside it from the other server's origin a 403.
#[test]
fn attack_a_cookie_sent_to_another_port_on_the_same_host_gets_nothing() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let (_h, _n) = lab.node_up("worker-01", "cpu", 0);
    let (d, url) = dashboard(&mut lab, &["--listen", "127.0.0.1:0"]);
    let token = printed_token(&d, &url);
    let (host, b_) = (authority(&url).to_string(), base(&url).to_string());
    let port = host.rsplit(':').next().unwrap().to_string();
    let cookie_name = format!("openclaw_dashboard_{port}");
    let (evil, heads) = other_server();

    // A session cookie, replayed by a plain client (as the other user
    // did with the stolen one): it works under the base...
    let cookie = login(&url, &token);
    let hdrs = format!(
        "Host: {host}\r\nOrigin: {}\r\nCookie: {cookie}\r\n",
        origin(&url)
    );
    let page = raw(&url, &format!("GET {b_}/nodes HTTP/1.1\r\n{hdrs}"));
    assert_eq!(status(&page), 200, "{page}");
    assert!(page.contains("worker-01"), "{page}");
    let csrf = page
        .split("<meta name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    // ...and nowhere else: every route without the base, and near misses
    // of the base, are a bare 404 that names nothing.
    let lower = b_.to_lowercase();
    let near = [
        "/".to_string(),
        "/login".into(),
        "/nodes".into(),
        "/jobs".into(),
        "/usage".into(),
        "/gpus".into(),
        "/enrollments".into(),
        "/static/app.js".into(),
        "/static/app.css".into(),
        "/jobs/1/log".into(),
        "/jobs/1/artifact?name=a".into(),
        "/jobs/1/cast".into(),
        b_.clone(),
        format!("{}/", &b_[..b_.len() - 1]),
        format!("{b_}x/"),
        format!("{}/", b_.to_uppercase()),
        format!("/%64{}/", &lower[2..]),
        format!("/d-{}/", "a".repeat(24)),
    ];
    for path in &near {
        for method in ["GET", "HEAD"] {
            let resp = raw(&url, &format!("{method} {path} HTTP/1.1\r\n{hdrs}"));
            assert_eq!(status(&resp), 404, "{method} {path}: {resp}");
            assert!(!resp.contains(&b_[1..]), "{method} {path}: {resp}");
            assert!(!resp.contains("csrf"), "{method} {path}: {resp}");
            assert!(header(&resp, "set-cookie").is_none(), "{resp}");
        }
    }
    for path in [
        "/nodes/worker-01/revoke",
        "/jobs/1/cancel",
        "/logout",
        "/login",
    ] {
        let resp = raw_form(
            &url,
            &format!("POST {path} HTTP/1.1\r\n{hdrs}"),
            &format!("csrf={csrf}&token={token}"),
        );
        assert_eq!(status(&resp), 404, "POST {path}: {resp}");
        assert!(!resp.contains(&b_[1..]), "POST {path}: {resp}");
    }
    // Under the base, from a page of the other server (same site, as ports
    // do not count: SameSite would let the cookie through), a change is
    // refused by its Origin.
    let resp = raw_form(
        &url,
        &format!(
            "POST {b_}/nodes/worker-01/revoke HTTP/1.1\r\nHost: {host}\r\nOrigin: {evil}\r\nCookie: {cookie}\r\n"
        ),
        &format!("csrf={csrf}"),
    );
    assert_eq!(status(&resp), 403, "{resp}");
    assert_eq!(lab.node("worker-01").unwrap()["connection"], "connected");

    // In a browser: log in through the form, then open the other server.
    let Some((chrome, driver)) = browser_tools() else {
        eprintln!(
            "SKIPPED: the browser half needs chromium and chromium-driver \
             (apt-get install chromium chromium-driver); the replay half ran"
        );
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let b = Browser::start(&chrome, &driver, profile.path());
    b.goto(&format!("{url}/"));
    b.wait_text("the login form", T, |t| t.contains("Log in"));
    b.type_text("#token", &token);
    b.click("form[action='login'] button");
    b.wait_text("the overview", T, |t| t.contains("Jobs now"));
    // What the admin might open next: the other server's pages, typed in,
    // and a link followed from a dashboard page.
    for path in ["/", "/login", "/nodes", "/d-guess/"] {
        b.goto(&format!("{evil}{path}"));
        b.wait_text("the other server's page", T, |t| {
            t.contains("another server")
        });
    }
    b.goto(&format!("{url}/nodes"));
    b.wait_text("the node list", T, |t| t.contains("worker-01"));
    b.eval(&format!(
        "const a = document.createElement('a'); a.id = 'away'; a.href = '{evil}/followed'; \
         a.textContent = 'away'; document.body.appendChild(a); return true;"
    ));
    b.click("#away");
    b.wait_text("the followed link", T, |t| t.contains("another server"));
    let got = heads.lock().unwrap().clone();
    assert!(
        got.iter().any(|h| h.starts_with("GET /followed ")),
        "the other server saw the visits: {got:?}"
    );
    for h in &got {
        assert!(
            !h.contains(&cookie_name) && !h.contains("openclaw_dashboard"),
            "the other server got the dashboard's cookie: {h}"
        );
        assert!(
            !h.contains(&b_[1..]),
            "the other server learnt the base: {h}"
        );
    }
    // The browser still holds its session: it just was not sent there.
    b.goto(&format!("{url}/nodes"));
    let page = b.wait_text("the node list, still logged in", T, |t| {
        t.contains("worker-01") || t.contains("Log in")
    });
    assert!(
        page.contains("worker-01") && !page.contains("Log in"),
        "{page}"
    );
    eprintln!(
        "the other server got {} requests from the logged-in browser, none with the cookie",
        got.len()
    );
}
