//! The OpenClaw gateway: a small certificate authority that enrolls nodes,
//! holds their mutually authenticated QUIC sessions, keeps state in SQLite
//! and serves the admin API. It never runs jobs itself.
//!
//! Entry points: [`init`] creates a gateway home; [`Gateway::start`] binds
//! and serves it until the shutdown future resolves.

mod api;
pub mod backup;
mod clients;
pub mod clock;
pub mod config;
mod copy;
mod enroll;
pub mod fair;
mod forward;
mod group;
pub mod ha;
#[cfg(any(test, feature = "test-utils"))]
pub mod harness;
mod history;
#[cfg(test)]
mod in_process;
mod init;
mod jobs;
pub mod link;
mod metrics;
pub mod migrate;
mod peer;
pub mod policy;
pub mod registry;
pub mod rotation;
pub mod routing;
pub mod rules;
mod session;
mod shared;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mesh::Home;
use mesh::home::HomeError;
use mesh::tls::RevokedSerials;
use proto::CloseCode;

pub use clock::{Clock, unix_now};
pub use config::Config;
pub use init::{
    InitReport, client_address, init, init_with_state, join, listens_beyond_loopback, open_state,
};
use registry::Registry;
use shared::{Shared, off_runtime};

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

/// Free bytes for an unprivileged user on the file system holding `path`
/// (`/metrics` and `openclaw doctor` report it for job logs).
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    // fsblkcnt_t is u64 here but narrower on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    Some(u64::from(s.blocks_available()).saturating_mul(s.fragment_size()))
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
        let clock = Clock::system();
        let Loaded {
            config,
            material:
                rotation::Material {
                    state: ca,
                    server_chain,
                    server_key,
                },
            store,
        } = Loaded::read(home, listen, &clock)?;
        // Before waiting as a standby: a gateway whose output would not
        // survive a failover never joins the group.
        output_store(home, &config, &store)?;
        // Filled once this gateway serves (a standby's list would go stale).
        let revoked = Arc::new(RevokedSerials::default());
        let mut transport = mesh::tls::server_transport(config.dead_after)?;
        mesh::tls::set_udp_payload_max(&mut transport, config.udp_payload_max);
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
        // gateway.addr is written once registered: whoever reads it to
        // reach this gateway finds it in the group too.
        let lease = if store.engine() == store::EngineKind::Postgres {
            let (name, adv, ttl) = (
                config.name.clone(),
                advertise.clone(),
                config.state.lease_ttl,
            );
            store
                .call(move |tx| tx.register_gateway(&name, &adv, clock.unix()))
                .await?;
            write_addr(home, &addr)?;
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
            write_addr(home, &addr)?;
            None
        };
        let shared = assemble(
            home,
            config,
            ca,
            store,
            clock,
            revoked,
            Listener {
                endpoint: Some(endpoint.clone()),
                bound: addr,
                advertise,
                shared_state: lease.is_some(),
            },
        )
        .await?;
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
                        shared.clock,
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

/// What a gateway home holds: its configuration, its CAs (a rotation step
/// a crash interrupted completed) and its state. Read by
/// [`Gateway::start`] and by the in-process harness.
struct Loaded {
    config: Config,
    material: rotation::Material,
    store: store::Store,
}

impl Loaded {
    /// Reads `home`; `listen` overrides the configured address.
    fn read(home: &Home, listen: Option<&str>, clock: &Clock) -> Result<Loaded, GatewayError> {
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
        let material = rotation::load(home, &config.name, clock.unix())?;
        let store = open_state(home, &config.state)?;
        Ok(Loaded {
            config,
            material,
            store,
        })
    }
}

/// Where a gateway serves: its QUIC endpoint (none in the in-process
/// harness), the address it is bound to, and how clients reach it.
struct Listener {
    endpoint: Option<quinn::Endpoint>,
    bound: SocketAddr,
    advertise: String,
    shared_state: bool,
}

/// Builds the state a serving gateway shares (revoked serials, the log
/// directory and writer, enrollment bounds) and recovers the jobs it left
/// running: the one way [`Gateway::start`] and the harness make a
/// [`Shared`].
async fn assemble(
    home: &Home,
    config: Config,
    ca: rotation::CaState,
    store: store::Store,
    clock: Clock,
    revoked: Arc<RevokedSerials>,
    listener: Listener,
) -> Result<Arc<Shared>, GatewayError> {
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
    let output_db = output_store(home, &config, &store)? == config::OutputStore::Database;
    let enroll_slots = Arc::new(tokio::sync::Semaphore::new(config.enroll_max_connections));
    let log_writer = jobs::logwriter::LogWriter::start()
        .map_err(|e| GatewayError::Io(format!("cannot start the log writer thread: {e}")))?;
    let shared = Arc::new(Shared {
        clock,
        log_writer,
        enroll_slots,
        enroll_rate: std::sync::Mutex::new(rules::RateLimiter::default()),
        forwards: forward::Forwards::default(),
        group: std::sync::Mutex::new(Vec::new()),
        copies: forward::Forwards::default(),
        config: RwLock::new(Arc::new(config)),
        home: home.clone(),
        logs_dir,
        output_db,
        jobs: jobs::Jobs::default(),
        metrics: metrics::Metrics::default(),
        store,
        registry: Registry::default(),
        ca: RwLock::new(Arc::new(ca)),
        rotation_lock: std::sync::Mutex::new(()),
        endpoint: listener.endpoint,
        revoked,
        advertise: listener.advertise,
        bound: listener.bound,
        lease: Arc::new(ha::LeaseStats::default()),
        shared_state: listener.shared_state,
    });
    off_runtime(&shared, jobs::recover)
        .await
        .and_then(|r| r)
        .map_err(|e| GatewayError::Io(e.message))?;
    Ok(shared)
}

/// Where this gateway stores job output; refuses a setting under which a
/// failover would lose it (see [`config::output_store`]).
fn output_store(
    home: &Home,
    config: &Config,
    store: &store::Store,
) -> Result<config::OutputStore, GatewayError> {
    config::output_store(store.engine() == store::EngineKind::Postgres, &config.state).map_err(
        |msg| GatewayError::Config {
            path: home.path(files::CONFIG).display().to_string(),
            msg,
        },
    )
}

/// Writes gateway.addr: the address clients on this machine dial.
fn write_addr(home: &Home, addr: &SocketAddr) -> Result<(), GatewayError> {
    home.write_public(
        files::ADDR,
        format!("{}\n", client_address(&addr.to_string())).as_bytes(),
    )?;
    Ok(())
}

/// The gateway's own timers: the dead-node reaper, retention and the
/// group's watch; the
/// caller aborts them when it stops serving.
fn timers(shared: &Arc<Shared>) -> [tokio::task::JoinHandle<()>; 3] {
    [
        tokio::spawn(reap(shared.clone())),
        tokio::spawn(prune(shared.clone())),
        tokio::spawn(group::watch(shared.clone())),
    ]
}

async fn serve(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    shutdown: impl Future<Output = ()> + Send,
) {
    let timers = timers(&shared);
    let reloader = tokio::spawn(reload_on_sighup(shared.clone()));
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
    for t in timers {
        t.abort();
    }
    reloader.abort();
    endpoint.close(CloseCode::Shutdown.code().into(), b"gateway shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

async fn reload_on_sighup(shared: Arc<Shared>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let _ = shared.reload();
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
    let now = shared.clock.unix();
    let r = &cfg.retention;
    let pruned = shared.store.tx(|tx| {
        let cutoff = now.saturating_sub(r.jobs.as_secs());
        // Usage outlives the jobs: rolled up per day before they go.
        tx.roll_up_usage(cutoff)?;
        let jobs = tx.prune_jobs(cutoff)?;
        tx.delete_output(&jobs)?;
        tx.prune_fanouts()?;
        tx.prune_artifacts()?;
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
    if shared.output_db {
        match shared.store.tx(|tx| tx.output_sizes()) {
            Ok(rows) => sizes.extend(rows),
            Err(e) => {
                tracing::error!(error = %e, "retention: cannot measure the output stored in the state database");
                return;
            }
        }
    }
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
    if shared.output_db
        && !over.is_empty()
        && let Err(e) = shared.store.tx(|tx| tx.delete_output(&over))
    {
        tracing::error!(error = %e, "retention: cannot delete job output from the state database");
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
            shared.clock.now(),
            shared.config().dead_after,
            shared.config().heartbeat_interval,
        ) {
            tracing::warn!(node = %name, "no heartbeat within {:?}; declaring the node dead", shared.config().dead_after);
            conn.close(
                CloseCode::Dead.code(),
                b"no heartbeat within the dead-node window",
            );
        }
    }
}
