use super::*;
use crate::pages::*;

#[test]
fn options_need_a_token_off_loopback() {
    let o = |listen: &str, token: Option<&str>| Options {
        listen: listen.parse().unwrap_or_else(|_| unreachable!()),
        auth_token: token.map(str::to_string),
        session: guard::Lifetime::default(),
    };
    assert!(check_options(&o("127.0.0.1:7680", None)).is_ok());
    assert!(check_options(&o("[::1]:7680", None)).is_ok());
    let e = check_options(&o("0.0.0.0:7680", None)).unwrap_err();
    assert!(e.contains("--auth-token-file"), "{e}");
    assert!(check_options(&o("0.0.0.0:7680", Some("0123456789abcdefXYZ"))).is_ok());
    assert!(check_options(&o("0.0.0.0:7680", Some("short"))).is_err());
    assert!(check_options(&o("0.0.0.0:7680", Some("has a space in it!!"))).is_err());
}

/// The routes `start` serves, under its base. A new one must also go
/// into `tests/it/dashboard.rs`'s
/// `attack_a_local_process_without_the_token_…`.
const ROUTES: &[&str] = &[
    "/",
    "/nodes",
    "/nodes/{name}",
    "/gpus",
    "/jobs",
    "/usage",
    "/jobs/{id}",
    "/jobs/{id}/log",
    "/jobs/{id}/artifact",
    "/jobs/{id}/cast",
    "/jobs/{id}/{action}",
    "/enrollments",
    "/nodes/{name}/{action}",
    "/login",
    "/logout",
    "/static/app.css",
    "/static/app.js",
];

/// Tidy: every route and its fallback are in `pages`, which is the
/// only thing the served router holds, as its fallback service under
/// the one `.layer(gate)`: every request meets `guard::check` (a 404
/// outside the base) before anything routes it, and the router never
/// sees the base.
#[test]
fn every_route_is_behind_the_gate() {
    let src = include_str!("lib.rs");
    let begin = src
        .find("let pages = axum::Router::new()")
        .unwrap_or_default();
    let end = begin + src[begin..].find("gate));").unwrap_or_default() + "gate));".len();
    let block = &src[begin..end];
    let split = block
        .find("let router = axum::Router::new()")
        .unwrap_or_else(|| unreachable!("no outer router: {block}"));
    let (pages, router) = block.split_at(split);
    for inner in [".layer(", ".route_layer(", ".nest", ".merge(", "_service("] {
        assert!(!pages.contains(inner), "{inner} in pages: {pages}");
    }
    assert_eq!(pages.matches(".fallback(").count(), 1, "{pages}");
    assert!(
        pages.trim_end().ends_with(".with_state(app.clone());"),
        "{pages}"
    );
    let router = router.trim_end();
    assert_eq!(
        router,
        "let router = axum::Router::new()\n        .fallback_service(pages)\n        \
         .layer(axum::middleware::from_fn_with_state(app, gate));",
        "the served router is pages under the gate, and nothing else"
    );
    assert!(src.contains("axum::serve(listener, router)"));
    let routes: Vec<&str> = pages
        .split(".route(")
        .skip(1)
        .filter_map(|r| r.trim_start().strip_prefix('"')?.split('"').next())
        .collect();
    assert_eq!(
        routes, ROUTES,
        "a route was added or removed: update the attack test too"
    );
}

/// One raw request to `addr`; the whole answer.
async fn raw(addr: SocketAddr, head: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    let req = format!(
        "{head}Host: {addr}\r\nOrigin: http://{addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

async fn serve(session: guard::Lifetime) -> (Dashboard, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let opts = Options {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        auth_token: None,
        session,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let d = start(Home::new(dir.path().join("home")), opts, async {
        let _ = stopped.await;
    })
    .await
    .unwrap_or_else(|e| unreachable!("{e}"));
    (d, stop)
}

/// Logs in through the form; the `Cookie` value to send after.
async fn log_in(d: &Dashboard) -> String {
    let login = raw(
        d.addr(),
        &format!("POST {}login HTTP/1.1\r\n", d.base()),
        &format!("token={}", d.token()),
    )
    .await;
    assert!(login.starts_with("HTTP/1.1 303"), "{login}");
    assert!(
        login.contains(&format!("\r\nlocation: {}\r\n", d.base())),
        "{login}"
    );
    let set = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| unreachable!("{login}"));
    assert!(
        set.contains(&format!("; Path={};", d.base())),
        "scoped to the base: {set}"
    );
    let cookie = set
        .split(';')
        .next()
        .unwrap_or_else(|| unreachable!("{login}"))
        .to_string();
    assert!(!cookie.contains(d.token()), "{cookie}");
    cookie
}

/// Every route, by every method, answers 401 without a secret under
/// the base, but for the login page and the stylesheet, and a bare 404
/// outside it, with a secret or without; the login form's session
/// works under the base only. No gateway is needed: nothing gets past
/// the gate to call one.
#[tokio::test]
async fn nothing_is_served_without_a_secret() {
    let (d, stop) = serve(guard::Lifetime::default()).await;
    let addr = d.addr();
    let base = d.base().to_string();
    assert_eq!(d.token().len(), 2 * SECRET_BYTES);
    assert!(d.url().ends_with(&base) && d.login_url().ends_with(&format!("{base}login")));
    let under = |path: &str| format!("{}{}", base.trim_end_matches('/'), path);
    for route in ROUTES {
        let route = route
            .replace("{id}", "1")
            .replace("{action}", "approve")
            .replace("{name}", "n");
        let path = under(&route);
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"] {
            // Outside the base, the same route is nothing at all.
            let outside = raw(addr, &format!("{method} {route} HTTP/1.1\r\n"), "csrf=x").await;
            assert!(
                outside.starts_with("HTTP/1.1 404"),
                "{method} {route}: {outside}"
            );
            assert!(!outside.contains(&base[1..]), "{method} {route}: {outside}");
            let open = matches!(
                (method, route.as_str()),
                ("GET" | "HEAD", "/login" | "/static/app.css") | ("POST", "/login")
            );
            if open {
                continue;
            }
            let got = raw(addr, &format!("{method} {path} HTTP/1.1\r\n"), "csrf=x").await;
            assert!(got.starts_with("HTTP/1.1 401"), "{method} {path}: {got}");
            assert!(!got.contains("name=\"csrf\""), "{method} {path}: {got}");
            let slashed = raw(addr, &format!("{method} {path}/ HTTP/1.1\r\n"), "").await;
            assert!(
                slashed.starts_with("HTTP/1.1 401"),
                "{method} {path}/: {slashed}"
            );
        }
    }
    for route in ["/login", "/static/app.css"] {
        let got = raw(addr, &format!("GET {} HTTP/1.1\r\n", under(route)), "").await;
        assert!(got.starts_with("HTTP/1.1 200"), "{route}: {got}");
    }
    let login_page = raw(addr, &format!("GET {base}login HTTP/1.1\r\n"), "").await;
    assert!(
        login_page.contains(&format!("<base href=\"{base}\">")),
        "{login_page}"
    );
    // Odd spellings of paths and targets are private too.
    for target in [
        format!("http://{addr}{base}"),
        format!("http://{addr}{base}jobs/1/log"),
        format!("{base}/"),
        format!("{base}%6aobs"),
        format!("{base}jobs/1/%6cog"),
        format!("{base}login;x"),
        format!("{base}static/app.css/../../jobs"),
        format!("{base}static/../jobs"),
    ] {
        let got = raw(addr, &format!("GET {target} HTTP/1.1\r\n"), "").await;
        let refused = got.starts_with("HTTP/1.1 401") || got.starts_with("HTTP/1.1 400");
        assert!(refused, "{target}: {got}");
        assert!(!got.contains("name=\"csrf\""), "{target}: {got}");
    }
    // ...and outside the base, odd spellings name nothing.
    let d_up = base.to_uppercase();
    let no_slash = base.trim_end_matches('/');
    let pct = format!("/%64{}", &base[2..]);
    for target in [
        "/",
        "//",
        "*",
        "/%6aobs",
        "/login;x",
        "/static/../jobs",
        no_slash,
        &d_up,
        &pct,
        &format!("/x{base}"),
        &format!("/static/..{base}"),
        &format!("http://{addr}/"),
    ] {
        let got = raw(addr, &format!("GET {target} HTTP/1.1\r\n"), "").await;
        let refused = got.starts_with("HTTP/1.1 404") || got.starts_with("HTTP/1.1 400");
        assert!(refused, "{target}: {got}");
        assert!(!got.contains(&base[1..]), "{target}: {got}");
    }
    let by_url = raw(
        addr,
        &format!("GET {base}login?token={} HTTP/1.1\r\n", d.token()),
        "",
    )
    .await;
    assert!(
        !by_url.to_ascii_lowercase().contains("set-cookie"),
        "{by_url}"
    );
    // A login outside the base is no login.
    let elsewhere = raw(
        addr,
        "POST /login HTTP/1.1\r\n",
        &format!("token={}", d.token()),
    )
    .await;
    assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
    assert!(!elsewhere.to_ascii_lowercase().contains("set-cookie"));
    let cookie = log_in(&d).await;
    // Past the gate: the handler tries the gateway this home cannot reach.
    let page = raw(
        addr,
        &format!("GET {base} HTTP/1.1\r\nCookie: {cookie}\r\n"),
        "",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 502"), "{page}");
    assert!(page.contains(&format!("<base href=\"{base}\">")), "{page}");
    // The same cookie, or the token as Bearer, outside the base: 404.
    for route in ["/", "/jobs", "/static/app.js", "/login"] {
        for cred in [
            format!("Cookie: {cookie}\r\n"),
            format!("Authorization: Bearer {}\r\n", d.token()),
        ] {
            let got = raw(addr, &format!("GET {route} HTTP/1.1\r\n{cred}"), "").await;
            assert!(got.starts_with("HTTP/1.1 404"), "{route}: {got}");
            assert!(!got.contains(&base[1..]), "{route}: {got}");
        }
    }
    let _ = stop.send(());
    d.wait().await;
}

/// A session that sees no request for its idle time ends: the next
/// request gets the login page, as one without a session would. Sessions
/// age by tokio's clock, paused here: the waits take no time.
#[tokio::test(start_paused = true)]
async fn an_idle_session_ends() {
    let life = guard::Lifetime {
        idle: std::time::Duration::from_secs(30 * 60),
        max: std::time::Duration::from_secs(12 * 3600),
    };
    let (d, stop) = serve(life).await;
    let cookie = log_in(&d).await;
    let get = |cookie: String| {
        let (addr, base) = (d.addr(), d.base().to_string());
        async move {
            raw(
                addr,
                &format!("GET {base}static/app.js HTTP/1.1\r\nCookie: {cookie}\r\n"),
                "",
            )
            .await
        }
    };
    // Requests closer together than the idle time keep it live.
    for _ in 0..3 {
        tokio::time::advance(std::time::Duration::from_secs(20 * 60)).await;
        let got = get(cookie.clone()).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }
    tokio::time::advance(std::time::Duration::from_secs(31 * 60)).await;
    let got = get(cookie.clone()).await;
    assert!(got.starts_with("HTTP/1.1 401"), "{got}");
    assert!(got.contains("action=\"login\""), "{got}");
    let _ = stop.send(());
    d.wait().await;
}

#[test]
fn durations_are_spoken() {
    let s = std::time::Duration::from_secs;
    assert_eq!(spoken(guard::SESSION_IDLE), "30 minutes");
    assert_eq!(spoken(guard::SESSION_MAX), "12 hours");
    assert_eq!(spoken(s(3600)), "1 hour");
    assert_eq!(spoken(s(90)), "90 seconds");
    assert_eq!(spoken(s(0)), "0 seconds");
}

#[test]
fn a_first_look_starts_at_the_tail() {
    assert_eq!(tail_offsets(10, 0), [0, 0]);
    assert_eq!(tail_offsets(LOG_TAIL + 5, 3), [5, 0]);
}

/// A log response starts where the browser left off, but at most
/// [`LOG_TAIL`] before the end, and says how much it left out.
#[test]
fn a_log_response_starts_where_the_browser_left_off() {
    let t = LOG_TAIL;
    let cases = [
        (None, [10, 3], [0, 0], [0, 0]),
        (None, [t + 5, 3], [5, 0], [5, 0]),
        (Some("7:1"), [20, 3], [7, 1], [0, 0]),
        // Fell behind on stdout: its tail, and the gap, once.
        (Some("7:1"), [t + 100, 3], [100, 1], [93, 0]),
        (Some("junk"), [t + 1, t + 2], [1, 2], [1, 2]),
        // Offsets past the end (a forged header) skip nothing.
        (Some("900:900"), [10, 3], [900, 900], [0, 0]),
    ];
    for (last, bytes, from, gap) in cases {
        assert_eq!(log_start(last, bytes[0], bytes[1]), (from, gap), "{last:?}");
    }
}

fn form(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The approval form's fields become `NodeApprove`'s labels and GPU
/// cap; what the form leaves out, the gateway keeps.
#[test]
fn an_approval_form_maps_onto_node_approve() {
    let approve = |fields: &[(&str, &str)]| node_request("n1", "approve", &form(fields));
    let want = |labels: Option<&[&str]>, gpus: Option<u32>, fp: Option<&str>| {
        Ok(Request::NodeApprove {
            name: "n1".into(),
            fingerprint: fp.map(str::to_string),
            labels: labels.map(|l| l.iter().map(|s| s.to_string()).collect()),
            gpus,
        })
    };
    assert_eq!(
        approve(&[
            ("csrf", "x"),
            ("fingerprint", " SHA256:abc "),
            ("labels", "cpu, zone-a  cpu"),
            ("propose", "fast"),
            ("propose", "zone-a"),
            ("gpus", " 2 "),
        ]),
        want(
            Some(&["cpu", "zone-a", "fast"]),
            Some(2),
            Some("SHA256:abc")
        )
    );
    // An emptied labels field confirms no labels; an empty GPU field
    // keeps the cap.
    assert_eq!(
        approve(&[("labels", " "), ("gpus", "")]),
        want(Some(&[]), None, None)
    );
    // A ticked proposal alone is a label to confirm.
    assert_eq!(
        approve(&[("propose", "gpu")]),
        want(Some(&["gpu"]), None, None)
    );
    // No labels field at all (a script's post): the token's stand.
    assert_eq!(approve(&[("fingerprint", "")]), want(None, None, None));
    for bad in ["-1", "two", "1.5", "99999999999"] {
        let e = approve(&[("gpus", bad)]).unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST, "{bad}");
        assert!(e.1.contains("not a whole number"), "{bad}: {}", e.1);
    }
    assert_eq!(
        node_request("n1", "reject", &form(&[("labels", "x")])),
        Ok(Request::NodeReject { name: "n1".into() })
    );
    assert_eq!(
        node_request("n1", "revoke", &[]),
        Ok(Request::NodeRevoke { name: "n1".into() })
    );
    assert_eq!(
        node_request("n1", "release", &[]).unwrap_err().0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(node_return("n1", &form(&[("from", "node")])), "/nodes/n1");
    assert_eq!(node_return("n1", &form(&[("from", "x")])), "/enrollments");
    for odd in ["/evil.example", "a\r\nSet-Cookie: x", "..", ""] {
        assert_eq!(node_return(odd, &form(&[("from", "node")])), "/enrollments");
    }
}

#[test]
fn a_job_holds_the_gpus_its_node_reports() {
    let mut n = render_node();
    n.telemetry = Some(proto::Heartbeat {
        gpus: [Some(5), None, Some(5), Some(6)]
            .iter()
            .enumerate()
            .map(|(i, job)| proto::GpuTelemetry {
                index: i as u32,
                job: *job,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    assert_eq!(held_gpus(&n, 5), vec![0, 2]);
    assert_eq!(held_gpus(&n, 6), vec![3]);
    assert!(held_gpus(&n, 7).is_empty());
    n.telemetry = None;
    assert!(held_gpus(&n, 5).is_empty());
}

fn render_node() -> proto::NodeInfo {
    proto::NodeInfo {
        name: "n".into(),
        connection: "connected".into(),
        health: "healthy".into(),
        ..proto::NodeInfo::default()
    }
}

#[test]
fn offsets_resume_from_the_last_event() {
    assert_eq!(parse_offsets(None), [0, 0]);
    assert_eq!(parse_offsets(Some("120:7")), [120, 7]);
    assert_eq!(parse_offsets(Some("junk")), [0, 0]);
    assert_eq!(parse_offsets(Some("1:x")), [0, 0]);
}
