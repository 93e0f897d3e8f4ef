//! `openclaw dashboard`: a web UI for a lab, served on the admin's machine
//! (like `kubectl proxy` or `nomad ui`). It talks to the gateway with the
//! home's credential over the usual mTLS session; the gateway gets no new
//! listening surface. Every action is an ordinary API call, checked at the
//! gateway like any other.
//!
//! Whoever can use the dashboard acts as that credential, and every local
//! process can reach a loopback port and set Host and Origin by hand. So,
//! as Jupyter does, the dashboard always needs a secret, loopback included
//! ([`guard`] has the decisions):
//!
//! * A token: random (128 bits from the OS) at each start, returned by
//!   [`Dashboard::token`] for the caller to print, or read from
//!   `--auth-token-file`. Loopback only unless a token file is given.
//! * Every route lives under a random base path chosen at each start
//!   (`/d-…/`, [`guard::Base`]; [`Dashboard::url`] has it), and anything
//!   outside it is a plain 404. The base is not a secret like the token
//!   (it is in the address bar and the history); it scopes the session
//!   cookie (`Path=/d-…/`), because browsers keep cookies apart by host,
//!   not by port, and would otherwise send it to every other server on
//!   127.0.0.1 the admin visits, another user's included. Pages are
//!   relative to a `<base>` element, and their Referrer-Policy is
//!   `same-origin`, so the base never reaches another origin in Referer.
//! * The token is exchanged once, through the login form (`POST login`,
//!   from this dashboard's origin), for a random session id in an
//!   HttpOnly, SameSite=Strict cookie scoped to the base; never in a URL,
//!   where it would land in history, logs and Referer. Scripts may send
//!   `Authorization: Bearer TOKEN` instead. Failed logins are slowed and
//!   counted. A session ends after 30 minutes without a request and 12
//!   hours after its login ([`guard::Lifetime`]).
//! * Without it, only the login page and the stylesheet are served: no
//!   page, data, log stream, script or CSRF token (401).
//! * The Host header must name this dashboard (DNS rebinding), every POST
//!   needs an Origin of this dashboard, and every change the page's CSRF
//!   token, on top of the secret.
//! * HTML, CSS and JavaScript are embedded; no CDN, no build step. Charts
//!   are SVG rendered on the server ([`render::sparkline`]).
//! * Pages are paged (50 nodes or jobs), and refresh their `<main>` every
//!   5 s only while visible. A job's log comes as server-sent events that
//!   resume by offset: each response sends what is there and ends (see
//!   [`job_log`]), and the browser asks again a second later, so no
//!   request stays open and a page settles (headless Chromium's
//!   `--virtual-time-budget` pauses while any request is open).

pub mod guard;
mod pages;
pub mod render;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use client::{ClientError, Gateway};
use mesh::Home;
use proto::{JobEvent, JobInfo, OutStream, Request, Response as ApiResponse};

use pages::{
    enrollments, gpus, job, job_action, job_artifact, job_cast, job_log, jobs, node, node_action,
    nodes, overview, usage,
};

/// Nodes or jobs per page.
const PAGE: u32 = 50;
/// Jobs read to find who holds the GPUs on a page.
const HOLDER_JOBS: u32 = 500;

const APP_CSS: &str = include_str!("../assets/app.css");
const APP_JS: &str = include_str!("../assets/app.js");

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {msg}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        msg: String,
    },
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The token to log in with (from `--auth-token-file`); `None`: a random
    /// one is made at start ([`Dashboard::token`]). Required off loopback.
    pub auth_token: Option<String>,
    /// How long a login session lives: idle and in all
    /// ([`guard::SESSION_IDLE`], [`guard::SESSION_MAX`] by default).
    pub session: guard::Lifetime,
}

/// Sessions kept at once; a further login drops the oldest.
const MAX_SESSIONS: usize = 64;
/// How long a failed login waits before its answer.
const FAILED_LOGIN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
/// Random bytes in a made token and in a session id.
const SECRET_BYTES: usize = 16;

/// Whether `opts` may be served: off loopback only with a token file, and
/// a given token must be at least 16 printable characters.
pub fn check_options(opts: &Options) -> Result<(), String> {
    if !opts.listen.ip().is_loopback() && opts.auth_token.is_none() {
        return Err(format!(
            "--listen {} is not a loopback address, and the dashboard speaks plain HTTP. \
             Prefer an SSH tunnel to 127.0.0.1; to listen there anyway, add --auth-token-file FILE \
             (a random token you keep: 'head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE')",
            opts.listen
        ));
    }
    if let Some(t) = &opts.auth_token
        && (t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(
            "the auth token must be at least 16 printable characters without spaces".into(),
        );
    }
    Ok(())
}

/// A random secret: [`SECRET_BYTES`] from the OS, in hex.
fn secret() -> Result<String, DashboardError> {
    let mut raw = [0u8; SECRET_BYTES];
    pki::random_bytes(&mut raw).map_err(|e| DashboardError::Options(e.to_string()))?;
    Ok(pki::hex(&raw))
}

struct App {
    gw: Gateway,
    /// Where every route lives; outside it, a 404.
    base: guard::Base,
    /// How long sessions live.
    life: guard::Lifetime,
    csrf: String,
    token: String,
    sessions: std::sync::Mutex<guard::Sessions>,
    /// Wrong tokens so far; held across each one's delay, so guesses are
    /// answered one at a time, at most one a [`FAILED_LOGIN_DELAY`].
    failures: tokio::sync::Mutex<u64>,
    bound: SocketAddr,
    /// The credential is a lab member's (role user): no admin tabs or forms.
    member: bool,
    /// The wall clock at start and tokio's clock since: what sessions age
    /// by, so a test with tokio's paused time moves it.
    started: (SystemTime, tokio::time::Instant),
}

impl App {
    /// A wrong token (through the form, or as Bearer): counted and logged
    /// (never the token), then answered after [`FAILED_LOGIN_DELAY`], one
    /// at a time, so a guesser gets one try a second however many
    /// connections it opens. The right token never waits here.
    async fn wrong_token(&self, how: &'static str) {
        let mut n = self.failures.lock().await;
        *n += 1;
        tracing::warn!(
            failures = *n,
            how,
            "a wrong dashboard token; many of these mean something on this machine is guessing"
        );
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
    }

    /// Now, for session ages: the start's wall clock plus tokio's time since.
    fn now(&self) -> SystemTime {
        self.started.0 + self.started.1.elapsed()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, guard::Sessions> {
        // A panic while holding it cannot leave the list half-changed.
        match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The role in `home`'s credential, if it can be read (the gateway
/// decides what each call may do; this only shapes the pages).
fn credential_role(home: &Home) -> Option<proto::Role> {
    let cred = mesh::home::LoadedCredential::load(home).ok()?;
    let der = pki::pem_to_der(&cred.cert_pem, "CERTIFICATE").ok()?;
    pki::parse_peer_cert(&der).ok().map(|c| c.role)
}

/// A running dashboard.
pub struct Dashboard {
    addr: SocketAddr,
    base: guard::Base,
    token: String,
    task: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token to log in with: the one given, or the one made at start.
    /// Show it only to the dashboard's user (a terminal, a 0600 file).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The dashboard's address: its base path on the bound address,
    /// `http://127.0.0.1:7680/d-…/`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.base)
    }

    /// The base path every route lives under, `/d-…/`: new at each start.
    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    /// Where to log in: `http://127.0.0.1:7680/d-…/login`.
    pub fn login_url(&self) -> String {
        format!("{}login", self.url())
    }

    /// Waits until it stops.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds and serves until `shutdown` resolves.
pub async fn start(
    home: Home,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Dashboard, DashboardError> {
    check_options(&opts).map_err(DashboardError::Options)?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| DashboardError::Bind {
            addr: opts.listen,
            msg: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| DashboardError::Bind {
        addr: opts.listen,
        msg: e.to_string(),
    })?;
    let token = match opts.auth_token {
        Some(t) => t,
        None => secret()?,
    };
    let base = guard::Base::random().map_err(|e| DashboardError::Options(e.to_string()))?;
    let app = Arc::new(App {
        gw: Gateway::new(home.clone()),
        base: base.clone(),
        life: opts.session,
        csrf: secret()?,
        token: token.clone(),
        sessions: std::sync::Mutex::new(guard::Sessions::new(MAX_SESSIONS, opts.session)),
        failures: tokio::sync::Mutex::new(0),
        bound: addr,
        member: credential_role(&home) == Some(proto::Role::User),
        started: (SystemTime::now(), tokio::time::Instant::now()),
    });
    // Every request meets `gate` before it is routed: the outer router has
    // no route, only `pages` as its fallback, wrapped in the one layer. A
    // path outside the base is a 404 there (the base is compared in
    // constant time, and never by the router); inside it, what a route
    // needs is decided by `guard::access` from its method and path under
    // the base, so an unknown path or method without a secret is a 401,
    // not a 404 or 405. Passed, the request goes on with the base taken
    // off its path, and `pages` routes it.
    let pages = axum::Router::new()
        .route("/", get(overview))
        .route("/nodes", get(nodes))
        .route("/nodes/{name}", get(node))
        .route("/gpus", get(gpus))
        .route("/jobs", get(jobs))
        .route("/usage", get(usage))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/log", get(job_log))
        .route("/jobs/{id}/artifact", get(job_artifact))
        .route("/jobs/{id}/cast", get(job_cast))
        .route("/jobs/{id}/{action}", post(job_action))
        .route("/enrollments", get(enrollments))
        .route("/nodes/{name}/{action}", post(node_action))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css", APP_CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page").into_response() })
        .with_state(app.clone());
    let router = axum::Router::new()
        .fallback_service(pages)
        .layer(axum::middleware::from_fn_with_state(app, gate));
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "dashboard server stopped");
        }
    });
    Ok(Dashboard {
        addr,
        base,
        token,
        task,
    })
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn hdr(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A path outside the base: a plain 404 that says nothing of what is
/// served here, the base least of all.
fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// A duration as people say it: `30 minutes`, `12 hours`, `90 seconds`.
fn spoken(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn refusal(r: guard::Refusal, app: &App) -> Response {
    let base = &app.base;
    let (code, body) = match r {
        guard::Refusal::NotFound => return not_found(),
        // The login form, and nothing else: no data, no CSRF token. Its
        // base is the one the request already named.
        guard::Refusal::Token => (
            StatusCode::UNAUTHORIZED,
            render::login(
                base.as_str(),
                Some(&format!(
                    "This dashboard needs its token: log in with the token it printed at start \
                     (or the one in its --auth-token-file). Sessions end after {} without a \
                     request, and {} after the login.",
                    spoken(app.life.idle),
                    spoken(app.life.max)
                )),
            ),
        ),
        // Never the base: a page under a rebound name would read it.
        guard::Refusal::Host => (
            StatusCode::MISDIRECTED_REQUEST,
            render::problem(
                "Refused",
                "this dashboard answers only to its own address; open it by the address it printed",
            ),
        ),
        // Inside the base (the request named it): a page with the tabs.
        guard::Refusal::Csrf => (
            StatusCode::FORBIDDEN,
            render::problem_page(
                base.as_str(),
                "Refused",
                "Refused",
                "this change did not come from a page of this dashboard; reload the page and try again",
            ),
        ),
    };
    let mut resp = (code, Html(body)).into_response();
    if r == guard::Refusal::Token {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"openclaw dashboard\""),
        );
    }
    resp
}

/// The base, Host, credential and Origin for every request, before it is
/// routed ([`guard::check`]); passed, it goes on with the base taken off
/// its path. Then the security headers on every answer.
async fn gate(
    State(app): State<Arc<App>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let checked = {
        let h = req.headers();
        let parts = guard::Parts {
            method: req.method().as_str(),
            path: req.uri().path(),
            host: hdr(h, header::HOST),
            cookie: hdr(h, header::COOKIE),
            authorization: hdr(h, header::AUTHORIZATION),
            origin: hdr(h, header::ORIGIN),
        };
        let mut sessions = app.sessions();
        let mut keys = guard::Keys {
            token: &app.token,
            sessions: &mut sessions,
            now: app.now(),
        };
        guard::check(&parts, app.bound, &app.base, &mut keys).map(|route| match req.uri().query() {
            Some(q) => format!("{route}?{q}"),
            None => route.to_string(),
        })
    };
    let mut resp = match checked {
        Ok(target) => match target.parse::<axum::http::Uri>() {
            Ok(uri) => {
                *req.uri_mut() = uri;
                next.run(req).await
            }
            Err(_) => (StatusCode::BAD_REQUEST, "bad request target\n").into_response(),
        },
        Err(r) => {
            if r == guard::Refusal::Token && req.headers().contains_key(header::AUTHORIZATION) {
                app.wrong_token("bearer").await;
            }
            refusal(r, &app)
        }
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // No Referer to any other origin (another port on this host
    // included), so the base path never leaves in one. Not no-referrer:
    // with it Chromium sends `Origin: null` on form posts, and the CSRF
    // check needs the real origin.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Pages hold what only a logged-in user may see: keep them out of
    // shared caches and the back-forward cache after a logout.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn login_page(State(app): State<Arc<App>>) -> Response {
    Html(render::login(app.base.as_str(), None)).into_response()
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST login`: the token, once, for a session cookie scoped to the base.
/// The gate has checked Host and Origin. A wrong token is slowed
/// ([`App::wrong_token`]).
async fn login(State(app): State<Arc<App>>, Form(form): Form<LoginForm>) -> Response {
    if !pki::constant_time_eq(form.token.trim().as_bytes(), app.token.as_bytes()) {
        app.wrong_token("login form").await;
        return (
            StatusCode::UNAUTHORIZED,
            Html(render::login(app.base.as_str(), Some(
                "That is not this dashboard's token. Use the one it printed at start (or the one in its --auth-token-file).",
            ))),
        )
            .into_response();
    }
    let session = match secret() {
        Ok(s) => s,
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    app.sessions().open(session.clone(), app.now());
    with_cookie(
        Redirect::to(app.base.as_str()).into_response(),
        &guard::session_cookie(app.bound.port(), &app.base, &session, app.life.max),
    )
}

#[derive(serde::Deserialize)]
struct LogoutForm {
    csrf: String,
}

/// `POST logout`: ends this browser's session.
async fn logout(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if !guard::csrf_ok(&form.csrf, &app.csrf) {
        return refusal(guard::Refusal::Csrf, &app);
    }
    let name = guard::cookie_name(app.bound.port());
    if let Some(c) = hdr(&h, header::COOKIE) {
        let mut sessions = app.sessions();
        for v in guard::cookie_values(c, &name) {
            sessions.close(v);
        }
    }
    with_cookie(
        Redirect::to(&app.base.at("/login")).into_response(),
        &guard::expired_cookie(app.bound.port(), &app.base),
    )
}

/// A page, or only its `<main>` content when app.js refreshes it.
fn reply(
    app: &App,
    h: &HeaderMap,
    title: &str,
    tab: &str,
    refresh: bool,
    body: String,
) -> Response {
    if h.contains_key("x-fragment") {
        return Html(body).into_response();
    }
    Html(render::page(
        app.base.as_str(),
        title,
        tab,
        &app.csrf,
        refresh,
        &body,
        app.member,
    ))
    .into_response()
}

fn failed(app: &App, e: ClientError) -> Response {
    let code = match &e {
        ClientError::Api(api) if api.code == proto::ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ClientError::Api(api) if api.code == proto::ErrorCode::PermissionDenied => {
            StatusCode::FORBIDDEN
        }
        ClientError::Api(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    (
        code,
        Html(render::problem_page(
            app.base.as_str(),
            "Error",
            "The gateway said no",
            &e.to_string(),
        )),
    )
        .into_response()
}

fn unexpected(r: ApiResponse) -> ClientError {
    ClientError::Protocol(format!("{r:?}"))
}

#[cfg(test)]
mod tests;
