//! Who may use the dashboard. Pure decisions over request parts and the
//! clock (a parameter, never read here); the server ([`crate::start`])
//! runs [`check`] on every request before it is routed, and [`csrf_ok`] in
//! every handler that changes something.
//!
//! * Everything is served under a random base path chosen at each start
//!   ([`Base`], `/d-…/`), and the session cookie is scoped to it
//!   (`Path=/d-…/`). Browsers keep cookies apart by host, not by port: a
//!   cookie with `Path=/` for 127.0.0.1 goes to every server on
//!   127.0.0.1, another user's included. A server on another port never
//!   learns the base, so the browser never sends it the cookie. Any
//!   request outside the base: a plain 404 that names nothing.
//! * The Host header must name this dashboard (DNS rebinding): 421.
//! * Every request but the login page and the stylesheet needs a secret,
//!   loopback included: a live session cookie handed out by `POST login`
//!   for the dashboard's token, or `Authorization: Bearer TOKEN`. Without
//!   one: 401, and no page, data, log stream or CSRF token. Any local
//!   process can set Host and Origin by hand, so those checks stop
//!   browsers only; the secret is what stops a process.
//! * A session ends after [`SESSION_IDLE`] without a request, and
//!   [`SESSION_MAX`] after its login, whatever happens in between
//!   ([`Lifetime`]); then it is a 401 and the login page.
//! * Every request but GET and HEAD needs an Origin of this dashboard
//!   (`POST login` included, against login CSRF), and every change the
//!   page's CSRF token: 403.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A path outside the dashboard's base: 404, naming nothing.
    NotFound,
    /// No credential, a wrong one, or an ended session: 401.
    Token,
    /// A Host header this dashboard does not answer to: 421.
    Host,
    /// A request that is not a GET or HEAD from another origin (or none), or a
    /// change without the page's CSRF token: 403.
    Csrf,
}

/// Random characters in a [`Base`]: 24 over `[a-z0-9]`, about 124 bits.
pub const BASE_CHARS: usize = 24;

/// The path every route of one dashboard lives under: `/d-` and
/// [`BASE_CHARS`] random characters, then `/`; new at each start. It is
/// not a secret like the token (it is in the address bar and the
/// history); it scopes the session cookie to this dashboard, so that a
/// server on another port of the same host, which never learns it, never
/// gets the cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base(String);

impl Base {
    /// A new random base.
    pub fn random() -> Result<Base, pki::PkiError> {
        Ok(Base(format!("/d-{}/", pki::random_alnum(BASE_CHARS)?)))
    }

    /// A fixed base, for tests: `/d-NAME/`.
    #[cfg(test)]
    pub fn fixed(name: &str) -> Base {
        Base(format!("/d-{name}/"))
    }

    /// The base, `/d-…/`, with both slashes.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path of `route` (`/`, `/jobs/7`) under the base.
    pub fn at(&self, route: &str) -> String {
        format!("{}{}", self.0, route.trim_start_matches('/'))
    }

    /// The route `path` names under the base (`/d-…/jobs` is `/jobs`,
    /// `/d-…/` is `/`), or `None` when it is not under the base (`/d-…`
    /// without its last slash included). Compares in constant time.
    pub fn route<'a>(&self, path: &'a str) -> Option<&'a str> {
        let base = self.0.as_bytes();
        let head = path.as_bytes().get(..base.len())?;
        if !pki::constant_time_eq(head, base) {
            return None;
        }
        // The base is ASCII and ends in '/', so this is a char boundary.
        path.get(base.len() - 1..)
    }
}

impl std::fmt::Display for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a request carries that the guard reads.
#[derive(Debug, Default, Clone)]
pub struct Parts<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path, without the query, the base included.
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

/// What `method` on `route` (a path under the base, without it) needs.
/// Exact matches only: a trailing slash, a query-free variant or another
/// method is [`Access::Private`].
pub fn access(method: &str, route: &str) -> Access {
    match (method, route) {
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
/// readable by scripts, never sent by another site's page or link, sent
/// only to paths under `base` (not to another server on this host, which
/// would get it with `Path=/`: cookies do not keep ports apart, and
/// another port of this host is the same site to SameSite), and
/// forgotten by the browser after `max_age` (the server ends it sooner
/// when idle).
pub fn session_cookie(port: u16, base: &Base, session: &str, max_age: Duration) -> String {
    format!(
        "{}={session}; HttpOnly; SameSite=Strict; Path={base}; Max-Age={}",
        cookie_name(port),
        max_age.as_secs()
    )
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn expired_cookie(port: u16, base: &Base) -> String {
    format!(
        "{}=; HttpOnly; SameSite=Strict; Path={base}; Max-Age=0",
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

/// How long a session stays live without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// How long a session stays live after its login, however busy.
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 3600);

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// A session without a request for this long has ended.
    pub idle: Duration,
    /// A session this long after its login has ended, however busy.
    pub max: Duration,
}

impl Default for Lifetime {
    fn default() -> Lifetime {
        Lifetime {
            idle: SESSION_IDLE,
            max: SESSION_MAX,
        }
    }
}

#[derive(Debug)]
struct Session {
    id: String,
    opened: SystemTime,
    last: SystemTime,
}

/// How long from `then` to `now`; nothing when the clock says `now` is
/// earlier.
fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

impl Session {
    fn live(&self, now: SystemTime, life: Lifetime) -> bool {
        since(now, self.opened) < life.max && since(now, self.last) < life.idle
    }

    /// Whether `id` names this session and it is live at `now`: the id
    /// compared in constant time and the clock read either way (no
    /// short cut on a mismatch); an empty id never names one.
    fn hit(&self, id: &str, now: SystemTime, life: Lifetime) -> bool {
        !id.is_empty()
            & pki::constant_time_eq(self.id.as_bytes(), id.as_bytes())
            & self.live(now, life)
    }
}

/// Login sessions: random ids handed out as cookies by `POST login`, kept
/// in memory only (a restart logs everyone out), at most `cap`, the oldest
/// dropped first, each ending when idle or old ([`Lifetime`]). The cookie
/// never holds the token itself. The clock is a parameter (`now`), and it
/// is the wall clock: a monotonic one stops while the machine is
/// suspended, and a laptop closed overnight must come back logged out. A
/// clock set back lengthens a session by as much; one set forward ends it
/// early.
#[derive(Debug)]
pub struct Sessions {
    live: VecDeque<Session>,
    cap: usize,
    life: Lifetime,
}

impl Sessions {
    /// No sessions; at most `cap` at a time, each living `life`.
    pub fn new(cap: usize, life: Lifetime) -> Sessions {
        Sessions {
            live: VecDeque::new(),
            cap: cap.max(1),
            life,
        }
    }

    /// Adds a session opened at `now`, dropping ended ones, then the
    /// oldest beyond the cap.
    pub fn open(&mut self, id: String, now: SystemTime) {
        self.expire(now);
        self.live.push_back(Session {
            id,
            opened: now,
            last: now,
        });
        while self.live.len() > self.cap {
            self.live.pop_front();
        }
    }

    /// Forgets the sessions that have ended by `now`; how many. Depends on
    /// the clock only, never on an id.
    pub fn expire(&mut self, now: SystemTime) -> usize {
        let before = self.live.len();
        let life = self.life;
        self.live.retain(|s| s.live(now, life));
        before - self.live.len()
    }

    /// Whether `id` is a session live at `now` (the tests' view of
    /// [`Sessions::touch`], which the server calls).
    #[cfg(test)]
    pub fn holds(&self, id: &str, now: SystemTime) -> bool {
        self.live
            .iter()
            .fold(false, |found, s| found | s.hit(id, now, self.life))
    }

    /// Whether `id` is a session live at `now`, and if so it is used at
    /// `now`: its idle clock starts again (never earlier than it last
    /// did). Compares with every session in constant time and reads every
    /// session's clock, whichever matched; an empty id is never one.
    pub fn touch(&mut self, id: &str, now: SystemTime) -> bool {
        let life = self.life;
        let mut found = false;
        for s in self.live.iter_mut() {
            let hit = s.hit(id, now, life);
            s.last = [s.last, s.last.max(now)][usize::from(hit)];
            found |= hit;
        }
        found
    }

    /// Ends a session; whether it was there.
    pub fn close(&mut self, id: &str) -> bool {
        let before = self.live.len();
        self.live
            .retain(|s| !pki::constant_time_eq(s.id.as_bytes(), id.as_bytes()));
        self.live.len() != before
    }

    /// How many sessions are kept.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// The secrets a request may carry, and the clock to judge sessions by.
#[derive(Debug)]
pub struct Keys<'a> {
    /// The dashboard's token (for `Authorization: Bearer` and `POST login`).
    pub token: &'a str,
    /// The login sessions; a request's live session is used
    /// ([`Sessions::touch`]).
    pub sessions: &'a mut Sessions,
    /// Now.
    pub now: SystemTime,
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
/// cookie naming a session, live at `keys.now`, of the dashboard bound to
/// `port`; that session is used. Every cookie value is checked against
/// every session, whatever matched first.
pub fn authenticated(parts: &Parts<'_>, port: u16, keys: &mut Keys<'_>) -> bool {
    let bearer = parts
        .authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| pki::constant_time_eq(t.as_bytes(), keys.token.as_bytes()));
    let name = cookie_name(port);
    let mut session = false;
    if let Some(c) = parts.cookie {
        for v in cookie_values(c, &name) {
            session |= keys.sessions.touch(v, keys.now);
        }
    }
    bearer | session
}

/// Whether `Origin` names the dashboard the Host header names.
fn origin_ok(parts: &Parts<'_>) -> bool {
    match (parts.origin, parts.host) {
        (Some(o), Some(h)) => o == format!("http://{h}"),
        _ => false,
    }
}

/// Checks a request before it is routed: the base path first (outside it,
/// a 404 before anything else is looked at), then Host, then the
/// credential its route needs ([`access`]), then Origin for anything but
/// GET and HEAD. Passed, the route the request names under the base
/// (`/jobs/7`), for the router, which never sees the base.
pub fn check<'a>(
    parts: &Parts<'a>,
    bound: SocketAddr,
    base: &Base,
    keys: &mut Keys<'_>,
) -> Result<&'a str, Refusal> {
    let Some(route) = base.route(parts.path) else {
        return Err(Refusal::NotFound);
    };
    match parts.host {
        Some(h) if host_ok(h, bound) => {}
        _ => return Err(Refusal::Host),
    }
    match access(parts.method, route) {
        Access::Open => Ok(route),
        Access::Login if origin_ok(parts) => Ok(route),
        Access::Login => Err(Refusal::Csrf),
        Access::Private => {
            if !authenticated(parts, bound.port(), keys) {
                return Err(Refusal::Token);
            }
            if !matches!(parts.method, "GET" | "HEAD") && !origin_ok(parts) {
                return Err(Refusal::Csrf);
            }
            Ok(route)
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

    /// A fixed wall-clock time: tests never read the clock.
    fn t_0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_503_613)
    }

    fn bound() -> SocketAddr {
        BOUND.parse().unwrap_or_else(|_| unreachable!())
    }

    fn sessions(now: SystemTime) -> Sessions {
        let mut s = Sessions::new(4, Lifetime::default());
        s.open(SESSION.to_string(), now);
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
        let now = t_0();
        let mut s = sessions(now);
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
            ("login page, no secret", get("/d-t/login"), Ok(())),
            (
                "login page outside the base",
                get("/login"),
                Err(Refusal::NotFound),
            ),
            (
                "the base without its last slash",
                with(get("/d-t"), |p| p.cookie = Some(COOKIE)),
                Err(Refusal::NotFound),
            ),
            (
                "another base",
                with(get("/d-u/"), |p| p.cookie = Some(COOKIE)),
                Err(Refusal::NotFound),
            ),
            (
                "a longer base",
                with(get("/d-tt/"), |p| p.cookie = Some(COOKIE)),
                Err(Refusal::NotFound),
            ),
            (
                "the root, with a live session",
                with(get("/"), |p| {
                    p.cookie = Some(COOKIE);
                    p.authorization = Some(bearer);
                }),
                Err(Refusal::NotFound),
            ),
            (
                "a change outside the base, with a session and its origin",
                with(get("/jobs/1/approve"), |p| {
                    p.method = "POST";
                    p.origin = Some(ORIGIN);
                    p.cookie = Some(COOKIE);
                }),
                Err(Refusal::NotFound),
            ),
            (
                "outside the base with another host: a 404, not a 421",
                with(get("/x"), |p| p.host = Some("evil.example")),
                Err(Refusal::NotFound),
            ),
            ("stylesheet, no secret", get("/d-t/static/app.css"), Ok(())),
            ("overview, no secret", get("/d-t/"), Err(Refusal::Token)),
            (
                "script, no secret",
                get("/d-t/static/app.js"),
                Err(Refusal::Token),
            ),
            (
                "log stream, no secret",
                get("/d-t/jobs/1/log"),
                Err(Refusal::Token),
            ),
            (
                "unknown path, no secret",
                get("/d-t/jobs/"),
                Err(Refusal::Token),
            ),
            (
                "HEAD, no secret",
                with(get("/d-t/"), |p| p.method = "HEAD"),
                Err(Refusal::Token),
            ),
            (
                "overview, session cookie",
                with(get("/d-t/"), |p| p.cookie = Some(COOKIE)),
                Ok(()),
            ),
            (
                "overview, the right cookie among others",
                with(get("/d-t/"), |p| p.cookie = Some(both)),
                Ok(()),
            ),
            (
                "overview, bearer token",
                with(get("/d-t/"), |p| p.authorization = Some(bearer)),
                Ok(()),
            ),
            (
                "the token itself as a cookie is not a session",
                with(get("/d-t/"), |p| p.cookie = Some(token_as_cookie)),
                Err(Refusal::Token),
            ),
            (
                "another port's cookie",
                with(get("/d-t/"), |p| p.cookie = Some(other_port)),
                Err(Refusal::Token),
            ),
            (
                "a wrong bearer",
                with(get("/d-t/"), |p| p.authorization = Some("Bearer nope")),
                Err(Refusal::Token),
            ),
            (
                "a session id as bearer",
                with(get("/d-t/"), |p| {
                    p.authorization = Some("Bearer 5e55104e5e55104e5e55104e5e55104e")
                }),
                Err(Refusal::Token),
            ),
            (
                "an empty cookie",
                with(get("/d-t/"), |p| {
                    p.cookie = Some("openclaw_dashboard_7680=")
                }),
                Err(Refusal::Token),
            ),
            (
                "another host",
                with(get("/d-t/login"), |p| p.host = Some("evil.example:7680")),
                Err(Refusal::Host),
            ),
            (
                "another port",
                with(get("/d-t/"), |p| {
                    p.host = Some("localhost:80");
                    p.cookie = Some(COOKIE);
                }),
                Err(Refusal::Host),
            ),
            (
                "no host",
                with(get("/d-t/"), |p| p.host = None),
                Err(Refusal::Host),
            ),
            (
                "localhost names this dashboard",
                with(get("/d-t/"), |p| {
                    p.host = Some("localhost:7680");
                    p.cookie = Some(COOKIE);
                }),
                Ok(()),
            ),
            (
                "a change with Host and Origin set by hand but no secret",
                with(get("/d-t/jobs/1/approve"), |p| {
                    p.method = "POST";
                    p.origin = Some(ORIGIN);
                }),
                Err(Refusal::Token),
            ),
            (
                "a change with a session and its origin",
                with(get("/d-t/jobs/1/approve"), |p| {
                    p.method = "POST";
                    p.origin = Some(ORIGIN);
                    p.cookie = Some(COOKIE);
                }),
                Ok(()),
            ),
            (
                "a change with a session from another origin",
                with(get("/d-t/jobs/1/approve"), |p| {
                    p.method = "POST";
                    p.origin = Some("http://evil.example");
                    p.cookie = Some(COOKIE);
                }),
                Err(Refusal::Csrf),
            ),
            (
                "a change with a session and no origin",
                with(get("/d-t/nodes/n/revoke"), |p| {
                    p.method = "POST";
                    p.cookie = Some(COOKIE);
                }),
                Err(Refusal::Csrf),
            ),
            (
                "DELETE with a session and no origin",
                with(get("/d-t/jobs/1"), |p| {
                    p.method = "DELETE";
                    p.cookie = Some(COOKIE);
                }),
                Err(Refusal::Csrf),
            ),
            (
                "PUT with no secret",
                with(get("/d-t/jobs/1"), |p| {
                    p.method = "PUT";
                    p.origin = Some(ORIGIN);
                }),
                Err(Refusal::Token),
            ),
            (
                "a login from this origin",
                with(get("/d-t/login"), |p| {
                    p.method = "POST";
                    p.origin = Some(ORIGIN);
                }),
                Ok(()),
            ),
            (
                "a login from another origin (login CSRF)",
                with(get("/d-t/login"), |p| {
                    p.method = "POST";
                    p.origin = Some("http://127.0.0.1:9999");
                }),
                Err(Refusal::Csrf),
            ),
            (
                "a login with no origin",
                with(get("/d-t/login"), |p| p.method = "POST"),
                Err(Refusal::Csrf),
            ),
            (
                "a login from a file (Origin: null)",
                with(get("/d-t/login"), |p| {
                    p.method = "POST";
                    p.origin = Some("null");
                }),
                Err(Refusal::Csrf),
            ),
        ];
        let base = Base::fixed("t");
        for (what, parts, want) in cases {
            let mut keys = Keys {
                token: TOKEN,
                sessions: &mut s,
                now,
            };
            let got = check(&parts, bound(), &base, &mut keys);
            assert_eq!(got.map(|_| ()), want, "{what}");
            if let Ok(route) = got {
                assert_eq!(Some(route), base.route(parts.path), "{what}");
            }
        }
    }

    #[test]
    fn the_base_is_a_prefix_of_whole_segments() {
        let base = Base::fixed("abc");
        assert_eq!(base.as_str(), "/d-abc/");
        assert_eq!(base.at("/"), "/d-abc/");
        assert_eq!(base.at("/jobs/7"), "/d-abc/jobs/7");
        assert_eq!(base.at("login"), "/d-abc/login");
        let cases = [
            ("/d-abc/", Some("/")),
            ("/d-abc/jobs/7", Some("/jobs/7")),
            ("/d-abc//login", Some("//login")),
            ("/d-abc", None),
            ("/d-abcd/", None),
            ("/d-ab/", None),
            ("/D-ABC/", None),
            ("/", None),
            ("", None),
            ("/login", None),
            ("/x/d-abc/", None),
            ("/d-ab\u{e9}/", None),
        ];
        for (path, want) in cases {
            assert_eq!(base.route(path), want, "{path}");
        }
        let r = Base::random().unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(r.as_str().len(), "/d-/".len() + BASE_CHARS);
        assert!(r.as_str().starts_with("/d-") && r.as_str().ends_with('/'));
        assert_ne!(r, Base::random().unwrap_or_else(|e| unreachable!("{e}")));
    }

    #[test]
    fn sessions_are_bounded_and_end() {
        let t = t_0();
        let mut s = Sessions::new(2, Lifetime::default());
        assert!(!s.holds("a", t) && !s.holds("", t));
        s.open("a".into(), t);
        s.open("b".into(), t);
        assert!(s.holds("a", t) && s.holds("b", t));
        s.open("c".into(), t);
        assert_eq!(s.len(), 2);
        assert!(!s.holds("a", t), "the oldest is dropped past the cap");
        assert!(s.close("b"));
        assert!(!s.close("b"));
        assert!(!s.holds("b", t) && s.holds("c", t));
        s.open(String::new(), t);
        assert!(!s.holds("", t), "an empty id is never a session");
        assert!(!s.touch("", t), "an empty id is never a session");
    }

    /// A session ends after `idle` without a request and `max` after its
    /// login, however busy; a request restarts only the idle clock. The
    /// clock is a parameter: no test waits.
    #[test]
    fn sessions_expire_when_idle_and_when_old() {
        let min = |m: u64| Duration::from_secs(60 * m);
        let life = Lifetime {
            idle: min(30),
            max: min(12 * 60),
        };
        assert_eq!(Lifetime::default(), life);
        let t0 = t_0();
        let mut s = Sessions::new(8, life);
        s.open("idle".into(), t0);
        s.open("busy".into(), t0);
        // Idle: live until 30 minutes pass without a request.
        assert!(s.holds("idle", t0 + min(29)));
        assert!(!s.holds("idle", t0 + min(30)));
        assert!(
            !s.touch("idle", t0 + min(31)),
            "an ended session is not revived"
        );
        // Busy: a request every 20 minutes keeps it live, up to 12 hours.
        let mut t = t0;
        while t + min(20) < t0 + min(12 * 60) {
            t += min(20);
            assert!(s.touch("busy", t), "{:?} after login", since(t, t0));
        }
        assert!(s.holds("busy", t0 + min(12 * 60) - Duration::from_secs(1)));
        assert!(
            !s.holds("busy", t0 + min(12 * 60)),
            "12 hours, however busy"
        );
        assert!(!s.touch("busy", t0 + min(12 * 60)));
        // A touch restarts the idle clock of the one it names only.
        let mut s = Sessions::new(8, life);
        s.open("a".into(), t0);
        s.open("b".into(), t0);
        assert!(s.touch("a", t0 + min(20)));
        assert!(s.holds("a", t0 + min(45)));
        assert!(!s.holds("b", t0 + min(45)));
        // Ended sessions are forgotten, by the clock alone.
        assert_eq!(s.expire(t0 + min(45)), 1);
        assert_eq!(s.len(), 1);
        s.open("c".into(), t0 + min(60));
        assert_eq!(s.len(), 1, "opening forgets the ended ones");
        assert!(s.holds("c", t0 + min(60)) && !s.holds("a", t0 + min(60)));
        // A clock set back ends nothing early, nor moves the idle clock back.
        assert!(s.holds("c", t0));
        assert!(s.touch("c", t0));
        assert!(s.holds("c", t0 + min(60) + min(29)));
    }

    /// Through `check`: an ended session is a 401, as no session is; a
    /// request in time keeps it live.
    #[test]
    fn an_ended_session_is_refused_by_check() {
        let t0 = t_0();
        let mut s = sessions(t0);
        let base = Base::fixed("t");
        let mut at = |path: &str, now: SystemTime| {
            let mut keys = Keys {
                token: TOKEN,
                sessions: &mut s,
                now,
            };
            let parts = with(get(path), |p| p.cookie = Some(COOKIE));
            check(&parts, bound(), &base, &mut keys).map(str::to_string)
        };
        assert_eq!(at("/d-t/", t0 + SESSION_IDLE / 2), Ok("/".into()));
        assert_eq!(
            at("/d-t/jobs", t0 + SESSION_IDLE),
            Ok("/jobs".into()),
            "kept live"
        );
        assert_eq!(
            at("/d-t/", t0 + SESSION_IDLE * 2 + Duration::from_secs(1)),
            Err(Refusal::Token)
        );
        // The login page stays open to an ended session.
        assert_eq!(at("/d-t/login", t0 + SESSION_MAX), Ok("/login".into()));
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
        let base = Base::fixed("t");
        assert_eq!(
            session_cookie(7680, &base, "abc", SESSION_MAX),
            "openclaw_dashboard_7680=abc; HttpOnly; SameSite=Strict; Path=/d-t/; Max-Age=43200"
        );
        assert_eq!(
            expired_cookie(7680, &base),
            "openclaw_dashboard_7680=; HttpOnly; SameSite=Strict; Path=/d-t/; Max-Age=0"
        );
        let v: Vec<&str> = cookie_values(
            "x=1; openclaw_dashboard_1=a; openclaw_dashboard_1=b",
            "openclaw_dashboard_1",
        )
        .collect();
        assert_eq!(v, ["a", "b"]);
    }
}
