//! The state every part of a running gateway shares, and the one way
//! blocking work leaves the async workers (`off_runtime`). Modules import
//! what they use from here by name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use mesh::Home;
use mesh::tls::RevokedSerials;

use crate::clock::{Clock, Instant};
use crate::config::Config;
use crate::registry::{self, Registry};
use crate::store::{self, Store};
use crate::{files, forward, ha, jobs, metrics, rotation, rules};

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

/// Shared gateway state.
pub(crate) struct Shared {
    /// The only clock the running gateway reads.
    pub clock: Clock,
    pub(super) config: RwLock<Arc<Config>>,
    pub home: Home,
    pub logs_dir: PathBuf,
    /// Whether job output is stored in the state database (PostgreSQL,
    /// the source of truth for every gateway of the group) rather than
    /// in `logs_dir` files.
    pub output_db: bool,
    pub jobs: jobs::Jobs,
    pub metrics: metrics::Metrics,
    pub store: Store,
    pub registry: Registry,
    /// The CAs: replaced by each step of a rotation.
    pub(super) ca: RwLock<Arc<rotation::CaState>>,
    /// Held by a rotation step from start to end.
    pub rotation_lock: std::sync::Mutex<()>,
    /// The QUIC endpoint, so a rotation can change the server certificate;
    /// none in the in-process harness, which has no listener.
    pub endpoint: Option<quinn::Endpoint>,
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
    pub(super) enroll_rate: std::sync::Mutex<rules::RateLimiter>,
    /// The thread that writes job logs.
    pub log_writer: jobs::logwriter::LogWriter,
    /// Port forwards waiting for their node's answer.
    pub forwards: forward::Forwards,
    /// The gateway group's addresses as last told to nodes (empty: alone,
    /// or not read yet); see [`crate::group`].
    pub group: std::sync::Mutex<Vec<String>>,
    /// Copies (`openclaw cp`) waiting for their node's answer.
    pub copies: forward::Forwards,
}

/// A node's live connection (if any) and its CONNECTION and HEALTH columns.
pub(crate) struct NodeStatus {
    pub live: Option<registry::LiveMeta>,
    pub connection: &'static str,
    pub health: &'static str,
    pub reason: Option<String>,
    /// Whether routing may send it new jobs: healthy, or degraded only by
    /// unhealthy GPUs (the healthy ones keep serving).
    pub routable: bool,
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
            live.as_ref().map_or(&[][..], |l| l.gpu_health.as_slice()),
            cfg.gpu_temp_limit_c,
        );
        let routable = health == "healthy"
            || (health == "degraded"
                && live
                    .as_ref()
                    .and_then(|l| l.telemetry.as_deref())
                    .and_then(|t| rules::degraded(t, cfg.gpu_temp_limit_c))
                    .is_none());
        NodeStatus {
            live,
            connection,
            health,
            reason,
            routable,
        }
    }

    /// Counts an enrollment connection from `ip`; false past the rate.
    pub fn enroll_rate_ok(&self, ip: std::net::IpAddr) -> bool {
        let per_minute = self.config().enroll_rate_per_minute;
        match self.enroll_rate.lock() {
            Ok(mut r) => r.allow(ip, self.clock.unix(), per_minute),
            Err(p) => p.into_inner().allow(ip, self.clock.unix(), per_minute),
        }
    }

    /// The CAs as they are now.
    pub fn ca(&self) -> Arc<rotation::CaState> {
        match self.ca.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn set_ca(&self, state: rotation::CaState) {
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

    /// Re-reads gateway.toml; keeps the old config if the new one is
    /// invalid, and says why (the key and the reason).
    pub(super) fn reload(&self) -> Result<(), String> {
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
                // Waiting jobs see new quotas at once.
                self.jobs.capacity.notify_waiters();
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    "not reloading {}: {e}; keeping the running configuration",
                    path.display()
                );
                Err(e)
            }
        }
    }
}
