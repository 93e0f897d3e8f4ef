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
        gw: Gateway::new(home),
        base: base.clone(),
        life: opts.session,
        csrf: secret()?,
        token: token.clone(),
        sessions: std::sync::Mutex::new(guard::Sessions::new(MAX_SESSIONS, opts.session)),
        failures: tokio::sync::Mutex::new(0),
        bound: addr,
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
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/log", get(job_log))
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
            render::page(
                base.as_str(),
                "Refused",
                "",
                "",
                false,
                &render::problem(
                    "Refused",
                    "this change did not come from a page of this dashboard; reload the page and try again",
                ),
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
            now: SystemTime::now(),
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
    app.sessions().open(session.clone(), SystemTime::now());
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
        Html(render::page(
            app.base.as_str(),
            "Error",
            "",
            "",
            false,
            &render::problem("The gateway said no", &e.to_string()),
        )),
    )
        .into_response()
}

fn unexpected(r: ApiResponse) -> ClientError {
    ClientError::Protocol(format!("{r:?}"))
}

async fn job_list(app: &App, limit: u32, before: Option<u64>) -> Result<Vec<JobInfo>, ClientError> {
    match app
        .gw
        .call(Request::JobList {
            limit,
            before,
            on_behalf_of: None,
        })
        .await?
    {
        ApiResponse::Jobs(j) => Ok(j),
        r => Err(unexpected(r)),
    }
}

async fn summary(app: &App) -> Result<proto::LabSummary, ClientError> {
    match app.gw.call(Request::LabSummary).await? {
        ApiResponse::LabSummary(s) => Ok(s),
        r => Err(unexpected(r)),
    }
}

/// Jobs the overview reads for its recent failures.
const RECENT_JOBS: u32 = 200;

async fn overview(State(app): State<Arc<App>>, h: HeaderMap) -> Response {
    let (s, recent) = tokio::join!(summary(&app), job_list(&app, RECENT_JOBS, None));
    match (s, recent) {
        (Ok(s), Ok(recent)) => {
            let body = render::overview(&s, &recent, unix_now());
            reply(&app, &h, "Overview", "/", true, body)
        }
        (Err(e), _) | (_, Err(e)) => failed(&app, e),
    }
}

async fn fetch_node_page(
    app: &App,
    after: Option<String>,
) -> Result<Vec<proto::NodeInfo>, ClientError> {
    match app
        .gw
        .call(Request::NodePage { after, limit: PAGE })
        .await?
    {
        ApiResponse::Nodes(n) => Ok(n),
        r => Err(unexpected(r)),
    }
}

/// The name to page on from, if `page` was full.
fn next_name(page: &[proto::NodeInfo]) -> Option<String> {
    (page.len() as u32 == PAGE)
        .then(|| page.last().map(|n| n.name.clone()))
        .flatten()
}

#[derive(serde::Deserialize)]
struct GpuQuery {
    after: Option<String>,
}

async fn history(app: &App, names: Vec<String>) -> Result<Vec<proto::NodeHistory>, ClientError> {
    match app.gw.call(Request::NodeHistory { names }).await? {
        ApiResponse::NodeHistory(h) => Ok(h),
        r => Err(unexpected(r)),
    }
}

/// The jobs holding a GPU of `nodes`, by id, from the latest
/// [`HOLDER_JOBS`] jobs.
async fn holders(
    app: &App,
    nodes: &[proto::NodeInfo],
) -> Result<HashMap<u64, JobInfo>, ClientError> {
    let held: std::collections::HashSet<u64> = nodes
        .iter()
        .filter_map(|n| n.telemetry.as_ref())
        .flat_map(|t| t.gpus.iter().filter_map(|g| g.job))
        .collect();
    if held.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(job_list(app, HOLDER_JOBS, None)
        .await?
        .into_iter()
        .filter(|j| held.contains(&j.id))
        .map(|j| (j.id, j))
        .collect())
}

async fn gpus(State(app): State<Arc<App>>, h: HeaderMap, Query(q): Query<GpuQuery>) -> Response {
    let page = match fetch_node_page(&app, q.after.clone()).await {
        Ok(n) => n,
        Err(e) => return failed(&app, e),
    };
    let names: Vec<String> = page.iter().map(|n| n.name.clone()).collect();
    let (hist, held) = tokio::join!(history(&app, names), holders(&app, &page));
    match (hist, held) {
        (Ok(hist), Ok(held)) => {
            let next = next_name(&page);
            let body = render::gpus(&page, &hist, &held, unix_now(), next.as_deref());
            reply(&app, &h, "GPUs", "/gpus", true, body)
        }
        (Err(e), _) | (_, Err(e)) => failed(&app, e),
    }
}

/// `GET /nodes`: a page of nodes by name (the gateway's `NodePage`).
async fn nodes(State(app): State<Arc<App>>, h: HeaderMap, Query(q): Query<GpuQuery>) -> Response {
    match fetch_node_page(&app, q.after.clone()).await {
        Ok(page) => {
            let next = next_name(&page);
            let body = render::nodes(&page, unix_now(), next.as_deref());
            reply(&app, &h, "Nodes", "/nodes", true, body)
        }
        Err(e) => failed(&app, e),
    }
}

async fn show_node(app: &App, name: &str) -> Result<proto::NodeInfo, ClientError> {
    match app
        .gw
        .call(Request::NodeShow {
            name: name.to_string(),
        })
        .await?
    {
        ApiResponse::Node(n) => Ok(n),
        r => Err(unexpected(r)),
    }
}

/// `GET /nodes/NAME`: one node, its GPUs' history, and its jobs among the
/// latest [`HOLDER_JOBS`].
async fn node(State(app): State<Arc<App>>, h: HeaderMap, Path(name): Path<String>) -> Response {
    let n = match show_node(&app, &name).await {
        Ok(n) => n,
        Err(e) => return failed(&app, e),
    };
    let (hist, recent) = tokio::join!(
        history(&app, vec![n.name.clone()]),
        job_list(&app, HOLDER_JOBS, None)
    );
    match (hist, recent) {
        (Ok(hist), Ok(recent)) => {
            let held: std::collections::HashSet<u64> = n
                .telemetry
                .iter()
                .flat_map(|t| t.gpus.iter().filter_map(|g| g.job))
                .collect();
            let holders: HashMap<u64, JobInfo> = recent
                .iter()
                .filter(|j| held.contains(&j.id))
                .map(|j| (j.id, j.clone()))
                .collect();
            let mine: Vec<JobInfo> = recent
                .into_iter()
                .filter(|j| j.node == n.name)
                .take(PAGE as usize)
                .collect();
            let body = render::node(&n, hist.first(), &mine, &holders, &app.csrf, unix_now());
            reply(&app, &h, &format!("Node {}", n.name), "/nodes", true, body)
        }
        (Err(e), _) | (_, Err(e)) => failed(&app, e),
    }
}

#[derive(serde::Deserialize)]
struct JobsQuery {
    before: Option<u64>,
    state: Option<String>,
    node: Option<String>,
}

async fn jobs(State(app): State<Arc<App>>, h: HeaderMap, Query(q): Query<JobsQuery>) -> Response {
    match job_list(&app, PAGE, q.before).await {
        Ok(list) => {
            let next = (list.len() as u32 == PAGE)
                .then(|| list.last().map(|j| j.id))
                .flatten();
            let state = q.state.as_deref().filter(|s| !s.is_empty());
            let node = q.node.as_deref().filter(|s| !s.is_empty());
            let body = render::jobs(&list, state, node, unix_now(), next);
            reply(&app, &h, "Jobs", "/jobs", true, body)
        }
        Err(e) => failed(&app, e),
    }
}

async fn show(app: &App, id: u64) -> Result<JobInfo, ClientError> {
    match app
        .gw
        .call(Request::JobShow {
            id,
            on_behalf_of: None,
        })
        .await?
    {
        ApiResponse::Job(j) => Ok(j),
        r => Err(unexpected(r)),
    }
}

/// The GPU indices `node`'s latest heartbeat shows job `id` holding.
pub fn held_gpus(node: &proto::NodeInfo, id: u64) -> Vec<u32> {
    node.telemetry
        .iter()
        .flat_map(|t| t.gpus.iter())
        .filter(|g| g.job == Some(id))
        .map(|g| g.index)
        .collect()
}

async fn job(State(app): State<Arc<App>>, h: HeaderMap, Path(id): Path<u64>) -> Response {
    let j = match show(&app, id).await {
        Ok(j) => j,
        Err(e) => return failed(&app, e),
    };
    // Which GPUs it holds, while it holds some: from its node's telemetry.
    // Not knowing (the node is gone, say) is no reason to fail the page.
    let held = if j.gpus > 0 && !j.is_terminal() && !j.node.is_empty() {
        show_node(&app, &j.node)
            .await
            .ok()
            .map(|n| held_gpus(&n, id))
    } else {
        None
    };
    let body = render::job(&j, held.as_deref(), &app.csrf, unix_now());
    reply(&app, &h, &format!("Job {id}"), "/jobs", false, body)
}

/// How much of each stream a job page shows when it opens, and most of a
/// log one response sends.
pub const LOG_TAIL: u64 = 512 * 1024;

/// How long the browser waits before it asks for more of a running job's
/// log (the SSE `retry`).
pub const LOG_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a first look at a log starts: the last [`LOG_TAIL`] bytes of each
/// stream.
pub fn tail_offsets(stdout_bytes: u64, stderr_bytes: u64) -> [u64; 2] {
    [
        stdout_bytes.saturating_sub(LOG_TAIL),
        stderr_bytes.saturating_sub(LOG_TAIL),
    ]
}

/// Parses an SSE `Last-Event-ID` of this stream: `STDOUT:STDERR` offsets.
pub fn parse_offsets(id: Option<&str>) -> [u64; 2] {
    id.and_then(|s| s.split_once(':'))
        .and_then(|(a, b)| Some([a.parse().ok()?, b.parse().ok()?]))
        .unwrap_or([0, 0])
}

/// Where a log response starts, and how many bytes of each stream it
/// leaves out: from the offsets the browser last saw (`Last-Event-ID`;
/// none on a first look), but never more than [`LOG_TAIL`] before the end
/// of a stream, so a first look, or a browser that fell behind, gets the
/// tail and a note, not gigabytes.
pub fn log_start(last: Option<&str>, stdout_bytes: u64, stderr_bytes: u64) -> ([u64; 2], [u64; 2]) {
    let seen = parse_offsets(last);
    let tail = tail_offsets(stdout_bytes, stderr_bytes);
    let from = [seen[0].max(tail[0]), seen[1].max(tail[1])];
    (from, [from[0] - seen[0], from[1] - seen[1]])
}

/// `GET /jobs/ID/log`: the job's output as server-sent events, from the
/// offsets the browser last saw ([`log_start`]).
///
/// A response never waits for output: it sends what the gateway has
/// stored (at most [`LOG_TAIL`] bytes) and ends. For a job still running
/// it ends with a `more` event carrying `retry` ([`LOG_POLL`]), and the
/// browser's EventSource asks again from its `Last-Event-ID`; for a job
/// that had ended when the response began, it sends the rest and `end`.
/// No request stays open, so pages settle: a live stream held open would
/// keep headless Chromium's `--virtual-time-budget` (and any "network
/// idle" wait) from ever finishing.
async fn job_log(State(app): State<Arc<App>>, h: HeaderMap, Path(id): Path<u64>) -> Response {
    let last = hdr(&h, header::HeaderName::from_static("last-event-id"));
    let j = match show(&app, id).await {
        Ok(j) => j,
        Err(e) => return failed(&app, e),
    };
    let (from, skipped) = log_start(last, j.stdout_bytes, j.stderr_bytes);
    // An ended job's stream ends by itself after its last byte; a running
    // job is read only as far as what is stored now.
    let ended = j.is_terminal();
    let client = match app.gw.get().await {
        Ok(c) => c,
        Err(e) => return failed(&app, e),
    };
    let recv = match client
        .open(Request::JobAttach {
            id,
            follow: ended,
            stdout_from: from[0],
            stderr_from: from[1],
            on_behalf_of: None,
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return failed(&app, e),
    };
    struct Tail {
        client: Arc<client::Client>,
        recv: client::RecvStream,
        offsets: [u64; 2],
        sent: u64,
        done: bool,
        skipped: Option<[u64; 2]>,
        ended: bool,
    }
    let state = Tail {
        client,
        recv,
        offsets: from,
        sent: 0,
        done: false,
        skipped: Some(skipped).filter(|s| *s != [0, 0]),
        ended,
    };
    let more = || Event::default().event("more").retry(LOG_POLL).data("");
    let events = futures_util::stream::unfold(state, move |mut s| async move {
        if s.done {
            return None;
        }
        if let Some(gap) = s.skipped.take() {
            let ev = Event::default()
                .event("skipped")
                .id(format!("{}:{}", s.offsets[0], s.offsets[1]))
                .data(format!("{} {}", gap[0], gap[1]));
            return Some((Ok::<_, std::convert::Infallible>(ev), s));
        }
        if s.sent >= LOG_TAIL {
            // Enough for one response; the browser asks for the rest.
            s.done = true;
            return Some((Ok(more()), s));
        }
        loop {
            match s.client.next_event(&mut s.recv).await {
                Ok(Some(JobEvent::Output { stream, data })) => {
                    let i = usize::from(stream == OutStream::Stderr);
                    // Saturating: the offsets came from the browser.
                    s.offsets[i] = s.offsets[i].saturating_add(data.len() as u64);
                    s.sent += data.len() as u64;
                    // JSON keeps newlines and carriage returns intact.
                    let text =
                        serde_json::Value::String(String::from_utf8_lossy(&data).into_owned())
                            .to_string();
                    let ev = Event::default()
                        .event(if i == 0 { "out" } else { "err" })
                        .id(format!("{}:{}", s.offsets[0], s.offsets[1]))
                        .data(text);
                    return Some((Ok(ev), s));
                }
                Ok(Some(JobEvent::End(j))) => {
                    s.done = true;
                    if !s.ended {
                        // Running when this response began (it may have
                        // ended since): the next one reads on, to the end.
                        return Some((Ok(more()), s));
                    }
                    let ev = Event::default().event("end").data(format!(
                        "{} {}",
                        j.state,
                        j.exit_code
                            .filter(|_| j.is(proto::JobState::Exited))
                            .map(|c| c.to_string())
                            .unwrap_or_default()
                    ));
                    return Some((Ok(ev), s));
                }
                Ok(Some(JobEvent::Error(e))) => {
                    s.done = true;
                    return Some((Ok(Event::default().event("problem").data(e.message)), s));
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => {
                    // The browser asks again with the last offsets it saw.
                    return None;
                }
            }
        }
    });
    Sse::new(events).into_response()
}

#[derive(serde::Deserialize)]
struct ActionForm {
    csrf: String,
    plan_digest: Option<String>,
}

async fn job_action(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(u64, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    // The gate has checked the base, Host, the secret and Origin.
    if !guard::csrf_ok(&form.csrf, &app.csrf) {
        return refusal(guard::Refusal::Csrf, &app);
    }
    let req = match action.as_str() {
        "approve" => Request::JobApprove {
            id,
            plan_digest: form.plan_digest.clone(),
            on_behalf_of: None,
        },
        "deny" => Request::JobDeny {
            id,
            reason: Some("denied from the dashboard".into()),
            on_behalf_of: None,
        },
        "cancel" => Request::JobCancel {
            id,
            on_behalf_of: None,
        },
        _ => return (StatusCode::NOT_FOUND, "no such action").into_response(),
    };
    match app.gw.call(req).await {
        Ok(_) => Redirect::to(&app.base.at(&format!("/jobs/{id}"))).into_response(),
        Err(e) => failed(&app, e),
    }
}

async fn enrollments(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Query<GpuQuery>,
) -> Response {
    let (s, page) = tokio::join!(summary(&app), fetch_node_page(&app, q.after.clone()));
    match (s, page) {
        (Ok(s), Ok(page)) => {
            let next = next_name(&page);
            let body =
                render::enrollments(&s.pending, &page, &app.csrf, unix_now(), next.as_deref());
            reply(&app, &h, "Enrollments", "/enrollments", true, body)
        }
        (Err(e), _) | (_, Err(e)) => failed(&app, e),
    }
}

/// The first value of form field `key`.
fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The gateway request a node action form asks for. For `approve`, the
/// form's fields map onto `NodeApprove`: `fingerprint`; `labels` (commas
/// or spaces) plus each ticked `propose` box as the labels to confirm
/// (`None` when the form has neither, so the token's stand); `gpus` as the
/// GPU cap (`None` when empty, so the current one stands). The gateway
/// checks the labels and the cap like the CLI's.
pub fn node_request(
    name: &str,
    action: &str,
    fields: &[(String, String)],
) -> Result<Request, (StatusCode, String)> {
    let name = name.to_string();
    match action {
        "approve" => {}
        "reject" => return Ok(Request::NodeReject { name }),
        "revoke" => return Ok(Request::NodeRevoke { name }),
        _ => return Err((StatusCode::NOT_FOUND, "no such action".into())),
    }
    let typed = field(fields, "labels");
    let ticked = fields
        .iter()
        .filter(|(k, _)| k == "propose")
        .map(|(_, v)| v.as_str());
    let mut labels: Vec<String> = Vec::new();
    for l in typed
        .into_iter()
        .flat_map(|t| t.split(|c: char| c == ',' || c.is_whitespace()))
        .chain(ticked)
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if !labels.iter().any(|x| x == l) {
            labels.push(l.to_string());
        }
    }
    let has_labels = typed.is_some() || fields.iter().any(|(k, _)| k == "propose");
    let gpus = match field(fields, "gpus").map(str::trim).filter(|g| !g.is_empty()) {
        None => None,
        Some(g) => Some(g.parse::<u32>().map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "GPUs: {:?} is not a whole number of GPUs; leave it empty to keep the cap as it is",
                    proto::names::printable(g, 20)
                ),
            )
        })?),
    };
    Ok(Request::NodeApprove {
        name,
        fingerprint: field(fields, "fingerprint")
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string),
        labels: has_labels.then_some(labels),
        gpus,
    })
}

/// Where a node action goes back to, as a route under the base: the
/// node's page when it came from there (and the name is a node name), else
/// the enrollments.
pub fn node_return(name: &str, fields: &[(String, String)]) -> String {
    if field(fields, "from") == Some("node") && proto::names::validate_name(name).is_ok() {
        format!("/nodes/{name}")
    } else {
        "/enrollments".into()
    }
}

async fn node_action(
    State(app): State<Arc<App>>,
    Path((name, action)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    // The gate has checked the base, Host, the secret and Origin.
    if !guard::csrf_ok(field(&fields, "csrf").unwrap_or_default(), &app.csrf) {
        return refusal(guard::Refusal::Csrf, &app);
    }
    let req = match node_request(&name, &action, &fields) {
        Ok(r) => r,
        Err((code, msg)) => {
            let body = render::problem("Not sent to the gateway", &msg);
            let page = render::page(app.base.as_str(), "Error", "", "", false, &body);
            return (code, Html(page)).into_response();
        }
    };
    match app.gw.call(req).await {
        Ok(_) => Redirect::to(&app.base.at(&node_return(&name, &fields))).into_response(),
        Err(e) => failed(&app, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        "/jobs/{id}",
        "/jobs/{id}/log",
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
    /// request gets the login page, as one without a session would.
    #[tokio::test]
    async fn an_idle_session_ends() {
        let life = guard::Lifetime {
            idle: std::time::Duration::from_millis(600),
            max: std::time::Duration::from_secs(3600),
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
        for _ in 0..4 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let got = get(cookie.clone()).await;
            assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
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
            labels: vec![],
            proposed_labels: vec![],
            max_gpus: None,
            fingerprint: String::new(),
            last_seen: None,
            remote_addr: None,
            cert_expires: None,
            requested_at: 0,
            heartbeat_age_ms: None,
            health_reason: None,
            telemetry: None,
        }
    }

    #[test]
    fn offsets_resume_from_the_last_event() {
        assert_eq!(parse_offsets(None), [0, 0]);
        assert_eq!(parse_offsets(Some("120:7")), [120, 7]);
        assert_eq!(parse_offsets(Some("junk")), [0, 0]);
        assert_eq!(parse_offsets(Some("1:x")), [0, 0]);
    }
}
