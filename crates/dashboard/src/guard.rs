//! Who may use the dashboard. Pure decisions over request parts; the
//! server ([`crate::start`]) runs [`check`] on every request before any
//! handler, and [`csrf_ok`] in every handler that changes something.
//!
//! * The Host header must name this dashboard (DNS rebinding): 421.
//! * Every request but the login page and the stylesheet needs a secret,
//!   loopback included: a session cookie handed out by `POST /login` for
//!   the dashboard's token, or `Authorization: Bearer TOKEN`. Without one:
//!   401, and no page, data, log stream or CSRF token. Any local process
//!   can set Host and Origin by hand, so those checks stop browsers only;
//!   the secret is what stops a process.
//! * Every request but GET and HEAD needs an Origin of this dashboard
//!   (`POST /login` included, against login CSRF), and every change the
//!   page's CSRF token: 403.

use std::collections::VecDeque;
use std::net::SocketAddr;

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No credential, or a wrong one: 401.
    Token,
    /// A Host header this dashboard does not answer to: 421.
    Host,
    /// A request that is not a GET or HEAD from another origin (or none), or a
    /// change without the page's CSRF token: 403.
    Csrf,
}

/// What a request carries that the guard reads.
#[derive(Debug, Default, Clone)]
pub struct Parts<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// `Host` header.
    pub host: Option<&'a str>,
    /// `Cookie` header.
    pub cookie: Option<&'a str>,
    /// `Authorization` header.
    pub authorization: Option<&'a str>,
    /// `Origin` header.
    pub origin: Option<&'a str>,
}

/// What a route needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reveals nothing (the login page, the stylesheet): Host only.
    Open,
    /// A login attempt: Host and Origin; the handler checks the token.
    Login,
    /// Everything else, unknown paths and methods included: Host and a
    /// credential, and an Origin of this dashboard for any method but GET
    /// and HEAD.
    Private,
}

/// What `method` on `path` needs. Exact matches only: a trailing slash, a
/// query-free variant or another method is [`Access::Private`].
pub fn access(method: &str, path: &str) -> Access {
    match (method, path) {
        ("GET" | "HEAD", "/login" | "/static/app.css") => Access::Open,
        ("POST", "/login") => Access::Login,
        _ => Access::Private,
    }
}

/// The name of the session cookie of the dashboard on `port`. Cookies do
/// not keep ports apart, so two dashboards on one host would otherwise
/// overwrite each other's session.
pub fn cookie_name(port: u16) -> String {
    format!("openclaw_dashboard_{port}")
}

/// The `Set-Cookie` value that hands `session` to the browser: never
/// readable by scripts, never sent by another site's page or link.
pub fn session_cookie(port: u16, session: &str) -> String {
    format!(
        "{}={session}; HttpOnly; SameSite=Strict; Path=/",
        cookie_name(port)
    )
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn expired_cookie(port: u16) -> String {
    format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        cookie_name(port)
    )
}

/// Every value of cookie `name` in a `Cookie` header.
pub fn cookie_values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header.split(';').filter_map(move |kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Login sessions: random ids handed out as cookies by `POST /login`, kept
/// in memory only (a restart logs everyone out), at most `cap`, the oldest
/// dropped first. The cookie never holds the token itself.
#[derive(Debug)]
pub struct Sessions {
    ids: VecDeque<String>,
    cap: usize,
}

impl Sessions {
    /// No sessions; at most `cap` at a time.
    pub fn new(cap: usize) -> Sessions {
        Sessions {
            ids: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Adds a session, dropping the oldest beyond the cap.
    pub fn open(&mut self, id: String) {
        self.ids.push_back(id);
        while self.ids.len() > self.cap {
            self.ids.pop_front();
        }
    }

    /// Whether `id` is a live session. Compares with every session in
    /// constant time; an empty id is never one.
    pub fn holds(&self, id: &str) -> bool {
        !id.is_empty()
            && self.ids.iter().fold(false, |found, s| {
                found | pki::constant_time_eq(s.as_bytes(), id.as_bytes())
            })
    }

    /// Ends a session; whether it was live.
    pub fn close(&mut self, id: &str) -> bool {
        let before = self.ids.len();
        self.ids
            .retain(|s| !pki::constant_time_eq(s.as_bytes(), id.as_bytes()));
        self.ids.len() != before
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The secrets a request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// The dashboard's token (for `Authorization: Bearer` and `POST /login`).
    pub token: &'a str,
    /// The live login sessions.
    pub sessions: &'a Sessions,
}

/// Whether `host` (a Host header) names this dashboard: the bound
/// address, or localhost / 127.0.0.1 / [::1] on the bound port.
pub fn host_ok(host: &str, bound: SocketAddr) -> bool {
    if host == bound.to_string() {
        return true;
    }
    let port = bound.port().to_string();
    let (name, p) = match host.rsplit_once(':') {
        Some((n, p)) => (n, p),
        None => return false,
    };
    p == port && matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// Whether the request carries the token as a Bearer credential, or a
/// cookie naming a live session of the dashboard bound to `port`.
pub fn authenticated(parts: &Parts<'_>, port: u16, keys: &Keys<'_>) -> bool {
    let bearer = parts
        .authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| pki::constant_time_eq(t.as_bytes(), keys.token.as_bytes()));
    let name = cookie_name(port);
    let session = parts
        .cookie
        .is_some_and(|c| cookie_values(c, &name).any(|v| keys.sessions.holds(v)));
    bearer | session
}

/// Whether `Origin` names the dashboard the Host header names.
fn origin_ok(parts: &Parts<'_>) -> bool {
    match (parts.origin, parts.host) {
        (Some(o), Some(h)) => o == format!("http://{h}"),
        _ => false,
    }
}

/// Checks a request before any handler runs: Host, then the credential its
/// route needs ([`access`]), then Origin for anything but GET and HEAD.
pub fn check(parts: &Parts<'_>, bound: SocketAddr, keys: &Keys<'_>) -> Result<(), Refusal> {
    match parts.host {
        Some(h) if host_ok(h, bound) => {}
        _ => return Err(Refusal::Host),
    }
    match access(parts.method, parts.path) {
        Access::Open => Ok(()),
        Access::Login if origin_ok(parts) => Ok(()),
        Access::Login => Err(Refusal::Csrf),
        Access::Private => {
            if !authenticated(parts, bound.port(), keys) {
                return Err(Refusal::Token);
            }
            if !matches!(parts.method, "GET" | "HEAD") && !origin_ok(parts) {
                return Err(Refusal::Csrf);
            }
            Ok(())
        }
    }
}

/// Whether a change's CSRF field is the page's token (constant time).
pub fn csrf_ok(sent: &str, want: &str) -> bool {
    !want.is_empty() && pki::constant_time_eq(sent.as_bytes(), want.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: &str = "127.0.0.1:7680";
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    const SESSION: &str = "5e55104e5e55104e5e55104e5e55104e";
    const COOKIE: &str = "openclaw_dashboard_7680=5e55104e5e55104e5e55104e5e55104e";
    const ORIGIN: &str = "http://127.0.0.1:7680";

    fn bound() -> SocketAddr {
        BOUND.parse().unwrap_or_else(|_| unreachable!())
    }

    fn sessions() -> Sessions {
        let mut s = Sessions::new(4);
        s.open(SESSION.to_string());
        s
    }

    fn with<'a>(mut p: Parts<'a>, f: impl FnOnce(&mut Parts<'a>)) -> Parts<'a> {
        f(&mut p);
        p
    }

    fn get(path: &str) -> Parts<'_> {
        Parts {
            method: "GET",
            path,
            host: Some(BOUND),
            ..Default::default()
        }
    }

    #[test]
    fn routes_need_what_they_reveal() {
        let cases = [
            ("GET", "/login", Access::Open),
            ("HEAD", "/login", Access::Open),
            ("GET", "/static/app.css", Access::Open),
            ("POST", "/login", Access::Login),
            ("GET", "/", Access::Private),
            ("HEAD", "/", Access::Private),
            ("GET", "/static/app.js", Access::Private),
            ("GET", "/jobs/7/log", Access::Private),
            ("POST", "/jobs/7/approve", Access::Private),
            ("POST", "/nodes/n/revoke", Access::Private),
            ("POST", "/logout", Access::Private),
            ("PUT", "/login", Access::Private),
            ("DELETE", "/login", Access::Private),
            ("GET", "/login/", Access::Private),
            ("GET", "/static/app.css/", Access::Private),
            ("GET", "/LOGIN", Access::Private),
            ("GET", "//login", Access::Private),
            ("GET", "/no/such/page", Access::Private),
        ];
        for (method, path, want) in cases {
            assert_eq!(access(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn requests_are_checked() {
        let s = sessions();
        let keys = Keys {
            token: TOKEN,
            sessions: &s,
        };
        let bearer = format!("Bearer {TOKEN}");
        let token_as_cookie = format!("openclaw_dashboard_7680={TOKEN}");
        let other_port = format!("openclaw_dashboard_7681={SESSION}");
        let both = format!("a=b; openclaw_dashboard_7680=junk; {COOKIE}");
        let (bearer, token_as_cookie, other_port, both) = (
            bearer.as_str(),
            token_as_cookie.as_str(),
            other_port.as_str(),
            both.as_str(),
        );
        let cases: Vec<(&str, Parts<'_>, Result<(), Refusal>)> = vec![
            ("login page, no secret", get("/login"), Ok(())),
            ("stylesheet, no secret", get("/static/app.css"), Ok(())),
            ("overview, no secret", get("/"), Err(Refusal::Token)),
            (
                "script, no secret",
                get("/static/app.js"),
                Err(Refusal::Token),
            ),
            (
                "log stream, no secret",
                get("/jobs/1/log"),
                Err(Refusal::Token),
            ),
            (
                "unknown path, no secret",
                get("/jobs/"),
                Err(Refusal::Token),
            ),
            (
                "HEAD, no secret",
                with(get("/"), |p| p.method = "HEAD"),
                Err(Refusal::Token),
            ),
            (
                "overview, session cookie",
                with(get("/"), |p| p.cookie = Some(COOKIE)),
                Ok(()),
            ),
            (
                "overview, the right cookie among others",
                with(get("/"), |p| p.cookie = Some(both)),
                Ok(()),
            ),
            (
                "overview, bearer token",
                with(get("/"), |p| p.authorization = Some(bearer)),
                Ok(()),
            ),
            (
                "the token itself as a cookie is not a session",
                with(get("/"), |p| p.cookie = Some(token_as_cookie)),
                Err(Refusal::Token),
            ),
            (
                "another port's cookie",
                with(get("/"), |p| p.cookie = Some(other_port)),
                Err(Refusal::Token),
            ),
            (
                "a wrong bearer",
                with(get("/"), |p| p.authorization = Some("Bearer nope")),
                Err(Refusal::Token),
            ),
            (
                "a session id as bearer",
                with(get("/"), |p| {
                    p.authorization = Some("Bearer 5e55104e5e55104e5e55104e5e55104e")
                }),
                Err(Refusal::Token),
            ),
            (
                "an empty cookie",
                with(get("/"), |p| p.cookie = Some("openclaw_dashboard_7680=")),
                Err(Refusal::Token),
            ),
            (
                "another host",
                with(get("/login"), |p| p.host = Some("evil.example:7680")),
                Err(Refusal::Host),
            ),
            (
                "another port",
                with(get("/"), |p| {
                    p.host = Some("localhost:80");
                    p.cookie = Some(COOKIE);
                }),
                Err(Refusal::Host),
            ),
            (
                "no host",
                with(get("/"), |p| p.host = None),
                Err(Refusal::Host),
            ),
            (
                "localhost names this dashboard",
                with(get("/"), |p| {
                    p.host = Some("localhost:7680");
                    p.cookie = Some(COOKIE);
                }),
                Ok(()),
            ),
            (
                "a change with Host and Origin set by hand but no secret",
                with(get("/jobs/1/approve"), |p| {
                    p.method = "POST";
                    p.origin = Some(ORIGIN);
                }),
                Err(Refusal::Token),
            ),
            (
                "a change with a session and its origin",
                with(get("/jobs/1/approve"), |p| {
                    p.method = "POST";
                    p.origin = Some(ORIGIN);
                    p.cookie = Some(COOKIE);
                }),
                Ok(()),
            ),
            (
                "a change with a session from another origin",
                with(get("/jobs/1/approve"), |p| {
                    p.method = "POST";
                    p.origin = Some("http://evil.example");
                    p.cookie = Some(COOKIE);
                }),
                Err(Refusal::Csrf),
            ),
            (
                "a change with a session and no origin",
                with(get("/nodes/n/revoke"), |p| {
                    p.method = "POST";
                    p.cookie = Some(COOKIE);
                }),
                Err(Refusal::Csrf),
            ),
            (
                "DELETE with a session and no origin",
                with(get("/jobs/1"), |p| {
                    p.method = "DELETE";
                    p.cookie = Some(COOKIE);
                }),
                Err(Refusal::Csrf),
            ),
            (
                "PUT with no secret",
                with(get("/jobs/1"), |p| {
                    p.method = "PUT";
                    p.origin = Some(ORIGIN);
                }),
                Err(Refusal::Token),
            ),
            (
                "a login from this origin",
                with(get("/login"), |p| {
                    p.method = "POST";
                    p.origin = Some(ORIGIN);
                }),
                Ok(()),
            ),
            (
                "a login from another origin (login CSRF)",
                with(get("/login"), |p| {
                    p.method = "POST";
                    p.origin = Some("http://127.0.0.1:9999");
                }),
                Err(Refusal::Csrf),
            ),
            (
                "a login with no origin",
                with(get("/login"), |p| p.method = "POST"),
                Err(Refusal::Csrf),
            ),
            (
                "a login from a file (Origin: null)",
                with(get("/login"), |p| {
                    p.method = "POST";
                    p.origin = Some("null");
                }),
                Err(Refusal::Csrf),
            ),
        ];
        for (what, parts, want) in cases {
            assert_eq!(check(&parts, bound(), &keys), want, "{what}");
        }
    }

    #[test]
    fn sessions_are_bounded_and_end() {
        let mut s = Sessions::new(2);
        assert!(!s.holds("a") && !s.holds(""));
        s.open("a".into());
        s.open("b".into());
        assert!(s.holds("a") && s.holds("b"));
        s.open("c".into());
        assert_eq!(s.len(), 2);
        assert!(!s.holds("a"), "the oldest is dropped past the cap");
        assert!(s.close("b"));
        assert!(!s.close("b"));
        assert!(!s.holds("b") && s.holds("c"));
        s.open(String::new());
        assert!(!s.holds(""), "an empty id is never a session");
    }

    #[test]
    fn csrf_tokens_match_exactly() {
        assert!(csrf_ok("c0ffee", "c0ffee"));
        assert!(!csrf_ok("c0ffe", "c0ffee"));
        assert!(!csrf_ok("", ""));
        assert!(!csrf_ok("C0FFEE", "c0ffee"));
    }

    #[test]
    fn cookies_are_per_port_and_locked_down() {
        assert_eq!(
            session_cookie(7680, "abc"),
            "openclaw_dashboard_7680=abc; HttpOnly; SameSite=Strict; Path=/"
        );
        assert!(expired_cookie(7680).contains("Max-Age=0"));
        let v: Vec<&str> = cookie_values(
            "x=1; openclaw_dashboard_1=a; openclaw_dashboard_1=b",
            "openclaw_dashboard_1",
        )
        .collect();
        assert_eq!(v, ["a", "b"]);
    }
}
