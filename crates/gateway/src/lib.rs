//! The OpenClaw gateway: a small certificate authority that enrolls nodes,
//! holds their mutually authenticated QUIC sessions, keeps state in SQLite
//! and serves the admin API. It never runs jobs itself.
//!
//! Entry points: [`init`] creates a gateway home; [`Gateway::start`] binds
//! and serves it until the shutdown future resolves.

mod api;
pub mod backup;
mod clients;
pub mod config;
mod enroll;
pub mod ha;
mod history;
mod jobs;
mod metrics;
pub mod migrate;
mod peer;
pub mod policy;
pub mod registry;
pub mod rotation;
pub mod routing;
pub mod rules;
mod session;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mesh::Home;
use mesh::home::HomeError;
use mesh::tls::RevokedSerials;
use proto::{CloseCode, Role};

pub use config::Config;
use registry::Registry;
use store::Store;

/// Files in a gateway home.
pub mod files {
    /// CA certificate (public).
    pub const CA_CERT: &str = "ca.crt";
    /// CA private key (0600).
    pub const CA_KEY: &str = "ca.key";
    /// Gateway server certificate chain: server certificate, then CA.
    pub const SERVER_CERT: &str = "gateway.crt";
    /// Gateway server private key (0600).
    pub const SERVER_KEY: &str = "gateway.key";
    /// Configuration.
    pub const CONFIG: &str = "gateway.toml";
    /// SQLite state.
    pub const STATE: &str = "state.db";
    /// The bound listen address, written at start.
    pub const ADDR: &str = "gateway.addr";
    /// The bound metrics address, written at start when metrics are on.
    pub const METRICS_ADDR: &str = "metrics.addr";
    /// Job output logs (0700).
    pub const LOGS: &str = "logs";
    /// A CA rotation in progress: phase and both CAs with their keys (0600).
    pub const ROTATION: &str = "ca-rotation.toml";
}

/// Lifetime of the gateway's server certificate.
pub(crate) const SERVER_CERT_TTL: Duration = Duration::from_secs(365 * 86_400);
/// Lifetime of the admin credential `init` writes.
const ADMIN_CERT_TTL: Duration = Duration::from_secs(90 * 86_400);

/// A gateway operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A home file problem.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// `gateway.toml` is invalid.
    #[error("{path}: {msg}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// PKI failure.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// TLS setup failure.
    #[error(transparent)]
    Tls(#[from] mesh::tls::TlsError),
    /// Binding or another IO failure.
    #[error("{0}")]
    Io(String),
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

thread_local! {
    /// Set while [`off_runtime`] runs a closure on the blocking pool.
    static OFF_RUNTIME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is one of tokio's async workers (as far as this
/// crate can tell): inside a runtime, and not in [`off_runtime`].
pub(crate) fn on_async_worker() -> bool {
    tokio::runtime::Handle::try_current().is_ok() && !OFF_RUNTIME.with(std::cell::Cell::get)
}

/// Runs `f`, which blocks on purpose (one-off setup), where the
/// async-worker check of [`Store::tx`] would otherwise object.
fn blocking_ok<T>(f: impl FnOnce() -> T) -> T {
    let was = OFF_RUNTIME.with(|c| c.replace(true));
    let out = f();
    OFF_RUNTIME.with(|c| c.set(was));
    out
}

/// Runs blocking gateway code (API handlers, which use [`Store::tx`]) on
/// tokio's blocking pool, so that an async worker never waits on SQLite.
pub(crate) async fn off_runtime<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Arc<Shared>) -> T + Send + 'static,
) -> Result<T, proto::ApiError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || blocking_ok(|| f(&shared)))
        .await
        .map_err(|e| {
            tracing::error!("a request handler failed: {e}");
            proto::ApiError::new(
                proto::ErrorCode::Internal,
                "the gateway failed while handling this request; see its log",
            )
        })
}

/// Free bytes for an unprivileged user on the file system holding `path`
/// (`/metrics` and `openclaw doctor` report it for job logs).
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    // fsblkcnt_t is u64 here but narrower on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    Some(u64::from(s.blocks_available()).saturating_mul(s.fragment_size()))
}

/// Opens the state the configuration names: embedded SQLite in `home`, or
/// PostgreSQL at `[state] url` (password from `PGPASSWORD`, else
/// `[state] password_file`, which must not be readable by others).
pub fn open_state(home: &Home, state: &config::StateConfig) -> Result<Store, GatewayError> {
    let Some(url) = &state.url else {
        return Ok(Store::open(&home.path(files::STATE))?);
    };
    let read = |what: &str, file: &str, private: bool| -> Result<String, GatewayError> {
        let path = home.root().join(file);
        let dir = Home::new(path.parent().unwrap_or(home.root()));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let hint = format!("fix [state] {what} in gateway.toml");
        Ok(if private {
            dir.read_private(name, &hint)?
        } else {
            dir.read_text(name, &hint)?
        })
    };
    let password = match std::env::var("PGPASSWORD") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => state
            .password_file
            .as_deref()
            .map(|f| {
                read("password_file", f, true).map(|p| p.trim_end_matches(['\n', '\r']).to_string())
            })
            .transpose()?,
    };
    let ca_pem = state
        .ca_file
        .as_deref()
        .map(|f| read("ca_file", f, false).map(String::into_bytes))
        .transpose()?;
    Ok(Store::open_postgres(&store::PgOptions {
        url: url.clone(),
        password,
        ca_pem,
        pool_size: state.pool_size,
    })?)
}

/// What `init` reports.
#[derive(Debug)]
pub struct InitReport {
    /// `sha256:<hex>` pin of the CA.
    pub ca_pin: String,
}

/// Creates a gateway home: CA, server certificate, state, config, and the
/// admin client credential. Refuses to overwrite an existing CA.
pub fn init(
    home: &Home,
    listen: &str,
    name: &str,
    advertise: Option<&str>,
) -> Result<InitReport, GatewayError> {
    init_with_state(home, listen, name, advertise, None)
}

/// [`init`], with the state in PostgreSQL when `state` names it (the
/// first gateway of a leader and its standbys; `gateway init --state`).
/// The database must be empty.
pub fn init_with_state(
    home: &Home,
    listen: &str,
    name: &str,
    advertise: Option<&str>,
    state: Option<&config::StateConfig>,
) -> Result<InitReport, GatewayError> {
    check_name_and_advertise(name, advertise)?;
    if home.exists(files::CA_KEY) || home.exists(files::CA_CERT) {
        return Err(GatewayError::Io(format!(
            "{} already holds a CA; refusing to overwrite it. Use another --home, or remove that directory to start over",
            home.root().display()
        )));
    }
    // Shared state that already holds a mesh: refuse before any file is
    // written, so the home stays empty.
    if let Some(state) = state {
        store::on_own_thread("gateway init panicked", || -> Result<(), GatewayError> {
            let store = open_state(home, state)?;
            if store.tx(|tx| tx.client("admin"))?.is_some() {
                return Err(GatewayError::Io(
                        "the state database already belongs to a gateway; add this one with 'openclaw gateway join'".into(),
                    ));
            }
            Ok(())
        })?;
    }
    home.create()?;
    let now = unix_now();
    let (ca_pem, ca_key) = pki::generate_ca(name, now)?;
    let ca = pki::Ca::load(&ca_pem, &ca_key)?;
    let admin_key = pki::generate_key()?;
    let admin = ca.issue_client(
        "admin",
        Role::Admin,
        &admin_key.spki_der,
        ADMIN_CERT_TTL.as_secs(),
        now,
    )?;

    write_ca_and_server_cert(home, &ca, &ca_pem, &ca_key, name, now)?;
    if !home.exists(files::CONFIG) {
        let mut text = Config::template(name, listen, advertise);
        if let Some(state) = state {
            text = migrate::set_state(&text, state);
        }
        home.write_public(files::CONFIG, text.as_bytes())?;
    }
    // One-off setup before any serving: blocking here is intended, even
    // when a CLI calls it from inside its runtime; on a thread of its own,
    // which the PostgreSQL client needs.
    store::on_own_thread("gateway init panicked", || -> Result<(), GatewayError> {
        let store = match state {
            Some(state) => open_state(home, state)?,
            None => Store::open(&home.path(files::STATE))?,
        };
        store.tx(|tx| {
            if tx.client("admin")?.is_some() {
                return Err(store::StoreError::Refused(
                    "the state database already belongs to a gateway; add this one with 'openclaw gateway join'".into(),
                ));
            }
            if state.is_some() {
                register_if_known(tx, name, listen, advertise, now)?;
            }
            tx.record_issued("admin", Role::Admin, &admin, now)?;
            tx.put_client(&store::ClientRow {
                name: "admin".into(),
                role: Role::Admin,
                namespace: None,
                state: store::ClientState::Active,
                cert_serial: admin.serial.clone(),
                not_after: admin.not_after,
                created_at: now,
                created_by: "gateway init".into(),
            })?;
            tx.audit(
                now,
                "local",
                "gateway.init",
                name,
                &format!("listen {listen}"),
            )
        })?;
        Ok(())
    })?;
    mesh::home::Credential {
        name: "admin".into(),
        gateway: client_address(listen),
    }
    .write(home, &admin.pem, &admin_key.key_pem, &ca_pem)?;
    Ok(InitReport {
        ca_pin: format!("sha256:{}", pki::hex(&ca.pin())),
    })
}

/// Adds a gateway to state that another gateway created with
/// `init --state` (`openclaw gateway join`): a new home with its own
/// server certificate, signed by the shared CA read from `ca_from` (the
/// first gateway's home, or a mount holding its `ca.crt` and `ca.key`).
/// It starts as a standby.
pub fn join(
    home: &Home,
    listen: &str,
    name: &str,
    advertise: Option<&str>,
    ca_from: &std::path::Path,
    state: &config::StateConfig,
) -> Result<InitReport, GatewayError> {
    check_name_and_advertise(name, advertise)?;
    if state.url.is_none() {
        return Err(GatewayError::Io(
            "gateway join needs --state postgres://…: only gateways on shared PostgreSQL state can lead and stand by".into(),
        ));
    }
    if home.exists(files::CA_KEY) || home.exists(files::CA_CERT) {
        return Err(GatewayError::Io(format!(
            "{} already holds a gateway; join with a new --home",
            home.root().display()
        )));
    }
    let from = Home::new(ca_from);
    if rotation::in_progress(&from)?.is_some() {
        return Err(GatewayError::Io(format!(
            "a CA rotation is in progress in {}; finish it ('openclaw ca rotate --phase finish') before a gateway joins",
            ca_from.display()
        )));
    }
    let hint =
        "--ca-from names the first gateway's home, or a directory holding its ca.crt and ca.key";
    let ca_pem = from.read_text(files::CA_CERT, hint)?;
    let ca_key = from.read_private(files::CA_KEY, hint)?;
    let ca = pki::Ca::load(&ca_pem, &ca_key)?;
    // The database must already hold this mesh, and not this name.
    store::on_own_thread("gateway join panicked", || -> Result<(), GatewayError> {
        let store = open_state(home, state)?;
        let (admin, taken) = store.tx(|tx| {
            Ok::<_, store::StoreError>((
                tx.client("admin")?.is_some(),
                tx.gateways()?.into_iter().any(|(n, _)| n == name),
            ))
        })?;
        if !admin {
            return Err(GatewayError::Io(
                    "the state database holds no gateway yet; create the first with 'openclaw gateway init --state …'".into(),
                ));
        }
        if taken {
            return Err(GatewayError::Io(format!(
                "a gateway named {name} already serves this state; pick another --name"
            )));
        }
        let now = unix_now();
        store.tx(|tx| {
            register_if_known(tx, name, listen, advertise, now)?;
            tx.audit(
                now,
                "local",
                "gateway.join",
                name,
                &format!("listen {listen}"),
            )
        })?;
        Ok(())
    })?;
    home.create()?;
    write_ca_and_server_cert(home, &ca, &ca_pem, &ca_key, name, unix_now())?;
    let text = migrate::set_state(&Config::template(name, listen, advertise), state);
    home.write_public(files::CONFIG, text.as_bytes())?;
    Ok(InitReport {
        ca_pin: format!("sha256:{}", pki::hex(&ca.pin())),
    })
}

/// Writes the CA (certificate and key) into a new gateway home, with this
/// gateway's own server certificate signed by it.
fn write_ca_and_server_cert(
    home: &Home,
    ca: &pki::Ca,
    ca_pem: &str,
    ca_key: &str,
    name: &str,
    now: u64,
) -> Result<(), GatewayError> {
    let (server, server_key) = ca.issue_server(name, SERVER_CERT_TTL.as_secs(), now)?;
    home.write_private(files::CA_KEY, ca_key.as_bytes())?;
    home.write_public(files::CA_CERT, ca_pem.as_bytes())?;
    home.write_private(files::SERVER_KEY, server_key.as_bytes())?;
    home.write_public(
        files::SERVER_CERT,
        format!("{}{}", server.pem, ca_pem).as_bytes(),
    )?;
    Ok(())
}

/// Checks the `--name` and `--advertise` of a new gateway home.
fn check_name_and_advertise(name: &str, advertise: Option<&str>) -> Result<(), GatewayError> {
    if let Some(a) = advertise {
        config::check_advertise(a).map_err(|msg| GatewayError::Config {
            path: "--advertise".into(),
            msg,
        })?;
    }
    proto::names::validate_name(name).map_err(|e| GatewayError::Config {
        path: "--name".into(),
        msg: e,
    })?;
    Ok(())
}

/// Records a gateway's name and address in shared state (with port 0 the
/// gateway records the port it binds when it starts; tokens skip it
/// until then).
fn register_if_known(
    tx: &store::Tx<'_>,
    name: &str,
    listen: &str,
    advertise: Option<&str>,
    now: u64,
) -> Result<(), store::StoreError> {
    let addr = advertise.map_or_else(|| client_address(listen), str::to_string);
    tx.register_gateway(name, &addr, now)
}

/// Whether a listen address reaches beyond this machine (wildcard or a
/// non-loopback address); a host name counts as beyond.
pub fn listens_beyond_loopback(listen: &str) -> bool {
    listen
        .parse::<SocketAddr>()
        .map_or(true, |a| !a.ip().is_loopback())
}

/// The address a local client should dial for a listen address.
pub fn client_address(listen: &str) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            if a.is_ipv4() {
                format!("127.0.0.1:{}", a.port())
            } else {
                format!("[::1]:{}", a.port())
            }
        }
        _ => listen.to_string(),
    }
}

/// Shared gateway state.
pub(crate) struct Shared {
    config: RwLock<Arc<Config>>,
    pub home: Home,
    pub logs_dir: PathBuf,
    pub jobs: jobs::Jobs,
    pub metrics: metrics::Metrics,
    pub store: Store,
    pub registry: Registry,
    /// The CAs: replaced by each step of a rotation.
    ca: RwLock<Arc<rotation::CaState>>,
    /// Held by a rotation step from start to end.
    pub rotation_lock: std::sync::Mutex<()>,
    /// The QUIC endpoint, so a rotation can change the server certificate.
    pub endpoint: quinn::Endpoint,
    pub revoked: Arc<RevokedSerials>,
    pub advertise: String,
    /// The address the QUIC listener is bound to.
    pub bound: SocketAddr,
    /// The leader lease (shared state only).
    pub lease: Arc<ha::LeaseStats>,
    /// Whether the state is shared (PostgreSQL, a leader and standbys).
    pub shared_state: bool,
    /// Enrollment connections open at once.
    pub enroll_slots: Arc<tokio::sync::Semaphore>,
    /// New enrollment connections per source address.
    enroll_rate: std::sync::Mutex<rules::RateLimiter>,
    /// The thread that writes job logs.
    pub log_writer: jobs::logwriter::LogWriter,
}

/// A node's live connection (if any) and its CONNECTION and HEALTH columns.
pub(crate) struct NodeStatus {
    pub live: Option<registry::LiveMeta>,
    pub connection: &'static str,
    pub health: &'static str,
    pub reason: Option<String>,
}

impl Shared {
    /// Looks a node up in the registry once and applies the health rules:
    /// the one place `node list`, routing and metrics get a node's status.
    pub fn node_status(&self, n: &store::NodeRow, now: Instant) -> NodeStatus {
        let cfg = self.config();
        let live = if n.state == store::NodeState::Approved {
            self.registry.meta(&n.name, now)
        } else {
            None
        };
        let (connection, health, reason) = rules::status_columns(
            n.state,
            live.as_ref().map(|l| l.view),
            cfg.heartbeat_interval,
            live.as_ref().and_then(|l| l.telemetry.as_deref()),
            cfg.gpu_temp_limit_c,
        );
        NodeStatus {
            live,
            connection,
            health,
            reason,
        }
    }

    /// Counts an enrollment connection from `ip`; false past the rate.
    pub fn enroll_rate_ok(&self, ip: std::net::IpAddr) -> bool {
        let per_minute = self.config().enroll_rate_per_minute;
        match self.enroll_rate.lock() {
            Ok(mut r) => r.allow(ip, unix_now(), per_minute),
            Err(p) => p.into_inner().allow(ip, unix_now(), per_minute),
        }
    }

    /// The CAs as they are now.
    pub fn ca(&self) -> Arc<rotation::CaState> {
        match self.ca.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_ca(&self, state: rotation::CaState) {
        match self.ca.write() {
            Ok(mut g) => *g = Arc::new(state),
            Err(p) => *p.into_inner() = Arc::new(state),
        }
    }

    /// The current configuration (replaced on SIGHUP).
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-reads gateway.toml; keeps the old config if the new one is invalid.
    fn reload(&self) {
        let path = self.home.path(files::CONFIG);
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| Config::parse(&t));
        match parsed {
            Ok(mut cfg) => {
                let old = self.config();
                // The listener stays where it is until a restart.
                cfg.listen = old.listen.clone();
                match self.config.write() {
                    Ok(mut g) => *g = Arc::new(cfg),
                    Err(p) => *p.into_inner() = Arc::new(cfg),
                }
                tracing::info!("reloaded {}", path.display());
            }
            Err(e) => tracing::error!(
                "not reloading {}: {e}; keeping the running configuration",
                path.display()
            ),
        }
    }
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<Option<String>>,
}

impl Gateway {
    /// Loads the home, binds, and serves until `shutdown` resolves.
    /// `listen` overrides the configured address.
    pub async fn start(
        home: &Home,
        listen: Option<&str>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Gateway, GatewayError> {
        let mut shutdown = Box::pin(shutdown);
        let config_path = home.path(files::CONFIG);
        let text = home.read_text(
            files::CONFIG,
            "run 'openclaw gateway init --listen HOST:PORT' first",
        )?;
        let mut config = Config::parse(&text).map_err(|msg| GatewayError::Config {
            path: config_path.display().to_string(),
            msg,
        })?;
        if let Some(l) = listen {
            config.listen = l.to_string();
        }
        // The CAs, completing a rotation step a crash interrupted.
        let rotation::Material {
            state: ca,
            server_chain,
            server_key,
        } = rotation::load(home, &config.name)?;
        let store = open_state(home, &config.state)?;
        // Filled once this gateway serves (a standby's list would go stale).
        let revoked = Arc::new(RevokedSerials::default());
        let transport = mesh::tls::server_transport(config.dead_after)?;
        let server_config = mesh::tls::server_config(
            &server_chain,
            &server_key,
            &ca.trust_pem,
            revoked.clone(),
            transport,
        )?;
        let bind: SocketAddr = mesh::resolve(&config.listen)
            .await
            .map_err(GatewayError::Io)?;
        let endpoint = mesh::server_endpoint(server_config, bind)
            .map_err(|e| GatewayError::Io(format!("cannot listen on {bind} (UDP): {e}")))?;
        let addr = endpoint
            .local_addr()
            .map_err(|e| GatewayError::Io(e.to_string()))?;
        home.write_public(
            files::ADDR,
            format!("{}\n", client_address(&addr.to_string())).as_bytes(),
        )?;
        let advertise = config
            .advertise
            .clone()
            .unwrap_or_else(|| client_address(&addr.to_string()));
        tracing::info!(%addr, gateway = %config.name, "gateway listening");
        // Metrics are served from the start: a standby says it is one.
        let attempts = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (metrics_source, metrics_task) = match config.metrics_listen.clone() {
            Some(listen) => {
                let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
                    GatewayError::Io(format!("cannot serve metrics on {listen} (TCP): {e}"))
                })?;
                let bound = listener
                    .local_addr()
                    .map_err(|e| GatewayError::Io(e.to_string()))?;
                home.write_public(files::METRICS_ADDR, format!("{bound}\n").as_bytes())?;
                tracing::info!(%bound, "serving Prometheus metrics at /metrics");
                let first = if store.engine() == store::EngineKind::Postgres {
                    metrics::Source::Standby(attempts.clone())
                } else {
                    metrics::Source::Starting
                };
                let (tx, rx) = tokio::sync::watch::channel(first);
                (Some(tx), Some(tokio::spawn(metrics::serve(rx, listener))))
            }
            None => (None, None),
        };
        // On shared state: register, then wait as a standby for the lease.
        let lease = if store.engine() == store::EngineKind::Postgres {
            let (name, adv, ttl) = (
                config.name.clone(),
                advertise.clone(),
                config.state.lease_ttl,
            );
            store
                .call(move |tx| tx.register_gateway(&name, &adv, unix_now()))
                .await?;
            let generation = tokio::select! {
                g = ha::wait_for_lease(&store, &config.name, ttl, &endpoint, &attempts) => g,
                () = &mut shutdown => {
                    tracing::info!("gateway stopped while a standby");
                    endpoint.close(CloseCode::Shutdown.code().into(), b"gateway shutting down");
                    if let Some(t) = metrics_task {
                        t.abort();
                    }
                    return Ok(Gateway { addr, task: tokio::spawn(async { None }) });
                }
            };
            store.fence(generation);
            Some((generation, ttl))
        } else {
            None
        };
        for serial in store.call(|tx| tx.revoked_serials()).await? {
            revoked.insert(&serial);
        }
        let logs_dir = config
            .state
            .logs_dir
            .as_ref()
            .map(|d| home.root().join(d))
            .unwrap_or_else(|| home.path(files::LOGS));
        mesh::home::create_private_dir(&logs_dir)?;
        let enroll_slots = Arc::new(tokio::sync::Semaphore::new(config.enroll_max_connections));
        let log_writer = jobs::logwriter::LogWriter::start()
            .map_err(|e| GatewayError::Io(format!("cannot start the log writer thread: {e}")))?;
        let shared = Arc::new(Shared {
            log_writer,
            enroll_slots,
            enroll_rate: std::sync::Mutex::new(rules::RateLimiter::default()),
            config: RwLock::new(Arc::new(config)),
            home: home.clone(),
            logs_dir,
            jobs: jobs::Jobs::default(),
            metrics: metrics::Metrics::default(),
            store,
            registry: Registry::default(),
            ca: RwLock::new(Arc::new(ca)),
            rotation_lock: std::sync::Mutex::new(()),
            endpoint: endpoint.clone(),
            revoked,
            advertise,
            bound: addr,
            lease: Arc::new(ha::LeaseStats::default()),
            shared_state: lease.is_some(),
        });
        off_runtime(&shared, jobs::recover)
            .await
            .and_then(|r| r)
            .map_err(|e| GatewayError::Io(e.message))?;
        if let Some(tx) = &metrics_source {
            tx.send_replace(metrics::Source::Serving(shared.clone()));
        }
        let task = tokio::spawn(async move {
            let lost = match lease {
                Some((generation, ttl)) => {
                    let keeper = ha::keep_lease(
                        shared.store.clone(),
                        shared.config().name.clone(),
                        ttl,
                        generation,
                        shared.lease.clone(),
                    );
                    let ep = endpoint.clone();
                    tokio::select! {
                        () = serve(shared, endpoint, shutdown) => None,
                        why = keeper => {
                            tracing::error!("lost the leader lease: {why}; closing every connection");
                            ep.close(CloseCode::Shutdown.code().into(), b"this gateway is no longer the leader");
                            Some(why)
                        }
                    }
                }
                None => {
                    serve(shared, endpoint, shutdown).await;
                    None
                }
            };
            if let Some(t) = metrics_task {
                t.abort();
            }
            lost
        });
        Ok(Gateway { addr, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the gateway has shut down; an error when it stopped
    /// because it lost the leader lease (shared state).
    pub async fn wait(self) -> Result<(), GatewayError> {
        match self.task.await {
            Ok(Some(why)) => Err(GatewayError::Io(format!(
                "lost the leader lease ({why}); this gateway stopped serving. Start it again to rejoin as a standby"
            ))),
            _ => Ok(()),
        }
    }
}

async fn serve(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    shutdown: impl Future<Output = ()> + Send,
) {
    let reaper = tokio::spawn(reap(shared.clone()));
    let reloader = tokio::spawn(reload_on_sighup(shared.clone()));
    let pruner = tokio::spawn(prune(shared.clone()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => { tokio::spawn(session::handle_incoming(shared.clone(), incoming)); }
                None => break,
            },
            () = &mut shutdown => break,
        }
    }
    tracing::info!("gateway shutting down");
    reaper.abort();
    reloader.abort();
    pruner.abort();
    endpoint.close(CloseCode::Shutdown.code().into(), b"gateway shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

async fn reload_on_sighup(shared: Arc<Shared>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        shared.reload();
    }
}

/// Applies `[retention]` every `retention.interval`: deletes ended jobs
/// (rows and logs) and audit rows past their age, then the logs of the
/// oldest ended jobs while all logs exceed `logs_max_bytes`.
async fn prune(shared: Arc<Shared>) {
    loop {
        let interval = shared.config().retention.interval;
        tokio::time::sleep(interval).await;
        let _ = off_runtime(&shared, |s| prune_once(s)).await;
    }
}

fn prune_once(shared: &Shared) {
    let cfg = shared.config();
    let now = unix_now();
    let r = &cfg.retention;
    let pruned = shared.store.tx(|tx| {
        let jobs = tx.prune_jobs(now.saturating_sub(r.jobs.as_secs()))?;
        tx.prune_fanouts()?;
        let audit = tx.prune_audit(now.saturating_sub(r.audit.as_secs()))?;
        // Idempotency keys are kept a day: longer than any chat retry.
        tx.prune_idempotency(now.saturating_sub(86_400))?;
        Ok::<_, store::StoreError>((jobs, audit))
    });
    let (jobs, audit) = match pruned {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "retention: cannot prune the state database");
            return;
        }
    };
    for id in &jobs {
        jobs::remove_logs(shared, *id);
    }
    // Then the size cap over what is left.
    let mut sizes: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    if let Ok(dir) = std::fs::read_dir(&shared.logs_dir) {
        for e in dir.flatten() {
            let name = e.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.split('.').next())
                .and_then(|n| n.parse::<u64>().ok());
            if let (Some(id), Ok(m)) = (id, e.metadata()) {
                *sizes.entry(id).or_default() += m.len();
            }
        }
    }
    let logs: Vec<(u64, u64)> = sizes.into_iter().collect();
    let live = shared.jobs.live_ids();
    let over = rules::logs_to_prune(&logs, &live, r.logs_max_bytes);
    for id in &over {
        jobs::remove_logs(shared, *id);
    }
    if !jobs.is_empty() || audit > 0 || !over.is_empty() {
        tracing::info!(
            jobs = jobs.len(),
            audit,
            logs = over.len(),
            "retention: pruned old jobs, audit rows and logs"
        );
    }
}

/// Closes node connections whose heartbeats stopped.
async fn reap(shared: Arc<Shared>) {
    let period = (shared.config().heartbeat_interval / 4).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        for (name, conn) in shared.registry.stale(
            Instant::now(),
            shared.config().dead_after,
            shared.config().heartbeat_interval,
        ) {
            tracing::warn!(node = %name, "no heartbeat within {:?}; declaring the node dead", shared.config().dead_after);
            conn.close(
                CloseCode::Dead.code().into(),
                b"no heartbeat within the dead-node window",
            );
        }
    }
}
