//! Prometheus metrics over plain HTTP (`[metrics] listen` in gateway.toml;
//! off by default), served by axum: `GET /metrics` only.
//!
//! The metric types and the exposition format (OpenMetrics text) are
//! prometheus-client's. Counters and histograms live in [`Metrics`] for the
//! gateway's lifetime; gauges are computed at each scrape from the state
//! database and the registry of live connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::shared::Shared;

/// One label, e.g. `[("state", "connected")]`.
type Labels = Vec<(&'static str, String)>;

fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}

/// Counters and histograms the gateway updates as things happen.
pub struct Metrics {
    /// Job output bytes stored from nodes.
    pub bytes_relayed: Counter<u64, AtomicU64>,
    /// Standard-input bytes relayed from requesters to jobs.
    pub input_relayed: Counter<u64, AtomicU64>,
    /// Bytes through port forwards, both ways.
    pub forwarded: Counter<u64, AtomicU64>,
    /// Job artifact bytes stored from nodes (checksums checked).
    pub artifact_stored: Counter<u64, AtomicU64>,
    /// Job artifact bytes served to readers.
    pub artifact_served: Counter<u64, AtomicU64>,
    /// Bytes copied to nodes (`openclaw cp` uploads), as relayed.
    pub copied_to_nodes: Counter<u64, AtomicU64>,
    /// Bytes copied from nodes (`openclaw cp` downloads), as relayed.
    pub copied_from_nodes: Counter<u64, AtomicU64>,
    enrollments: Family<Labels, Counter>,
    handshake_failures: Family<Labels, Counter>,
    /// Seconds from a job's submit to its process starting on the node.
    dispatch: Histogram,
    /// Seconds between consecutive heartbeats of a node.
    heartbeat_gap: Histogram,
    /// Bytes per second of a job's output, over its run, at its end.
    relay_rate: Histogram,
    /// GPU-seconds of ended jobs, per requester and project.
    account_gpu_seconds: Family<Labels, Counter>,
    /// Ended jobs that ran, per requester and project.
    account_jobs: Family<Labels, Counter>,
    /// Their seconds from submit to start, per requester and project.
    account_wait_seconds: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            bytes_relayed: Counter::default(),
            input_relayed: Counter::default(),
            forwarded: Counter::default(),
            artifact_stored: Counter::default(),
            artifact_served: Counter::default(),
            copied_to_nodes: Counter::default(),
            copied_from_nodes: Counter::default(),
            enrollments: Family::default(),
            handshake_failures: Family::default(),
            // 1 ms to about 16 s.
            dispatch: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            // 50 ms to about 51 s.
            heartbeat_gap: Histogram::new(exponential_buckets(0.05, 2.0, 11)),
            // 1 KB/s to about 1 GB/s.
            relay_rate: Histogram::new(exponential_buckets(1e3, 4.0, 11)),
            account_gpu_seconds: Family::default(),
            account_jobs: Family::default(),
            account_wait_seconds: Family::default(),
        }
    }
}

impl Metrics {
    /// Counts an enrollment request by outcome (`pending`, `auto_approved`, `refused`).
    pub fn enrollment(&self, result: &'static str) {
        self.enrollments
            .get_or_create(&label("result", result))
            .inc();
    }

    /// Counts a failed handshake or refused session by reason.
    pub fn handshake_failure(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&label("reason", reason))
            .inc();
    }

    /// A job's process started `since` its submit.
    pub fn dispatched(&self, since: Duration) {
        self.dispatch.observe(since.as_secs_f64());
    }

    /// A node's heartbeat came `gap` after its previous one.
    pub fn heartbeat_gap(&self, gap: Duration) {
        self.heartbeat_gap.observe(gap.as_secs_f64());
    }

    /// A job of `requester` (and `project`) that ran ended: its
    /// GPU-seconds and its wait are counted to its account.
    pub fn charged(&self, requester: &str, project: Option<&str>, gpu_seconds: u64, wait: u64) {
        let l = vec![
            ("account", requester.to_string()),
            ("project", project.unwrap_or("").to_string()),
        ];
        self.account_gpu_seconds
            .get_or_create(&l)
            .inc_by(gpu_seconds);
        self.account_jobs.get_or_create(&l).inc();
        self.account_wait_seconds.get_or_create(&l).inc_by(wait);
    }

    /// A job ended having sent `bytes` of output over `run`.
    pub fn job_output(&self, bytes: u64, run: Duration) {
        if bytes > 0 && !run.is_zero() {
            self.relay_rate.observe(bytes as f64 / run.as_secs_f64());
        }
    }
}

/// A short reason for a failed handshake, from the connection error.
pub fn handshake_reason(e: &quinn::ConnectionError) -> &'static str {
    let code = match e {
        quinn::ConnectionError::TransportError(t) => Some(u64::from(t.code)),
        quinn::ConnectionError::ConnectionClosed(c) => Some(u64::from(c.error_code)),
        quinn::ConnectionError::TimedOut => return "timeout",
        _ => None,
    };
    match code.and_then(|c| c.checked_sub(0x100)) {
        Some(42) => "bad_certificate",
        Some(44) => "certificate_revoked",
        Some(45) => "certificate_expired",
        Some(48) => "unknown_ca",
        Some(51) => "bad_signature",
        Some(116) => "certificate_required",
        Some(120) => "no_application_protocol",
        _ => "other",
    }
}

/// The metrics page (OpenMetrics text).
pub fn render(shared: &Shared) -> String {
    let mut reg = Registry::default();
    let now = shared.clock.now();
    // One read of the state for the whole page.
    let (nodes, job_counts, clients) = shared
        .store
        .tx(|tx| Ok::<_, crate::store::StoreError>((tx.nodes()?, tx.job_counts()?, tx.clients()?)))
        .unwrap_or_default();
    let by_state: Family<Labels, Gauge> = Family::default();
    for s in ["connected", "offline", "pending", "rejected", "revoked"] {
        // Every state is listed, at 0 when no node is in it.
        by_state.get_or_create(&label("state", s)).set(0);
    }
    let by_health: Family<Labels, Gauge> = Family::default();
    for h in ["healthy", "degraded", "unhealthy"] {
        by_health.get_or_create(&label("health", h)).set(0);
    }
    let ages: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
    for n in &nodes {
        let crate::shared::NodeStatus {
            live,
            connection,
            health,
            ..
        } = shared.node_status(n, now);
        by_state.get_or_create(&label("state", connection)).inc();
        if live.is_some() {
            by_health.get_or_create(&label("health", health)).inc();
        }
        if let Some(l) = live {
            ages.get_or_create(&label("node", n.name.clone()))
                .set(l.view.heartbeat_age.as_secs_f64());
        }
    }
    reg.register(
        "openclaw_nodes",
        "Known nodes by connection state",
        by_state,
    );
    reg.register(
        "openclaw_nodes_health",
        "Connected nodes by health",
        by_health,
    );
    reg.register(
        "openclaw_node_heartbeat_age_seconds",
        "Time since each connected node's last heartbeat",
        ages,
    );
    let jobs: Family<Labels, Gauge> = Family::default();
    for (state, n) in job_counts {
        jobs.get_or_create(&label("state", state))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    reg.register("openclaw_jobs", "Jobs by state", jobs);
    reg.register(
        "openclaw_cert_expiry_timestamp_seconds",
        "When each certificate expires (unix seconds)",
        cert_expiry(shared, &nodes, &clients),
    );
    if let Some(free) = crate::free_bytes(&shared.logs_dir) {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(free).unwrap_or(i64::MAX));
        reg.register(
            "openclaw_log_disk_free_bytes",
            "Free bytes on the file system that holds job logs",
            g,
        );
    }
    let m = &shared.metrics;
    reg.register(
        "openclaw_output_bytes_relayed",
        "Job output bytes stored from nodes",
        m.bytes_relayed.clone(),
    );
    reg.register(
        "openclaw_input_bytes_relayed",
        "Standard-input bytes relayed from requesters to jobs",
        m.input_relayed.clone(),
    );
    reg.register(
        "openclaw_forward_bytes",
        "Bytes through port forwards (openclaw forward), both ways",
        m.forwarded.clone(),
    );
    reg.register(
        "openclaw_artifact_bytes_stored",
        "Job artifact bytes stored from nodes, checksums checked",
        m.artifact_stored.clone(),
    );
    reg.register(
        "openclaw_artifact_bytes_served",
        "Job artifact bytes served to readers (openclaw job artifacts, the dashboard)",
        m.artifact_served.clone(),
    );
    reg.register(
        "openclaw_account_gpu_seconds",
        "GPU-seconds of ended jobs (GPUs held times seconds run) per requester and project, since the gateway started",
        m.account_gpu_seconds.clone(),
    );
    reg.register(
        "openclaw_account_jobs",
        "Ended jobs that ran, per requester and project, since the gateway started",
        m.account_jobs.clone(),
    );
    reg.register(
        "openclaw_account_wait_seconds",
        "Seconds those jobs waited from submit to start, per requester and project",
        m.account_wait_seconds.clone(),
    );
    reg.register(
        "openclaw_copy_to_nodes_bytes",
        "Bytes relayed to nodes by copies (openclaw cp), frames included",
        m.copied_to_nodes.clone(),
    );
    reg.register(
        "openclaw_copy_from_nodes_bytes",
        "Bytes relayed from nodes by copies (openclaw cp), frames included",
        m.copied_from_nodes.clone(),
    );
    let db = shared.store.counts();
    reg.register(
        "openclaw_db_calls",
        "State database operations run by its thread (async callers)",
        ConstCounter::new(db.calls.load(Ordering::Relaxed)),
    );
    reg.register(
        "openclaw_db_commits",
        "Transactions that thread committed for them (several calls share one when they queue up)",
        ConstCounter::new(db.commits.load(Ordering::Relaxed)),
    );
    let phase: Gauge = Gauge::default();
    phase.set(match shared.ca().phase {
        crate::rotation::Phase::Idle => 0,
        crate::rotation::Phase::Init => 1,
        crate::rotation::Phase::Rotate => 2,
    });
    reg.register(
        "openclaw_ca_rotation_phase",
        "CA rotation phase: 0 none, 1 init (both trusted, old issues), 2 rotate (new issues)",
        phase,
    );
    if shared.shared_state {
        let l = &shared.lease;
        // Only the leader serves; a standby's metrics endpoint starts
        // when it takes over.
        let leader: Gauge = Gauge::default();
        leader.set(1);
        reg.register(
            "openclaw_leader",
            "1 on the gateway that holds the leader lease (shared PostgreSQL state)",
            leader,
        );
        let generation = l.generation.load(Ordering::Relaxed);
        reg.register(
            "openclaw_failovers",
            "Times a standby took the leader lease over (the lease generation minus one)",
            ConstCounter::new(generation.saturating_sub(1)),
        );
        reg.register(
            "openclaw_lease_renewals",
            "Renewals of the leader lease that came back with this gateway's generation",
            ConstCounter::new(l.renewals.load(Ordering::Relaxed)),
        );
        reg.register(
            "openclaw_lease_renewals_unanswered",
            "Renewals the database did not answer in time (a leader steps down after 3/4 of the lease time without one)",
            ConstCounter::new(l.unanswered.load(Ordering::Relaxed)),
        );
    }
    reg.register(
        "openclaw_db_blocking_transactions",
        "Transactions run by blocking callers (API handlers, metrics, the log writer), reads included",
        ConstCounter::new(db.blocking.load(Ordering::Relaxed)),
    );
    reg.register(
        "openclaw_enrollments",
        "Enrollment requests by outcome",
        m.enrollments.clone(),
    );
    reg.register(
        "openclaw_handshake_failures",
        "Failed handshakes and refused sessions by reason",
        m.handshake_failures.clone(),
    );
    reg.register(
        "openclaw_job_dispatch_seconds",
        "From a job's submit to its process starting on the node",
        m.dispatch.clone(),
    );
    reg.register(
        "openclaw_heartbeat_gap_seconds",
        "Between consecutive heartbeats of a node",
        m.heartbeat_gap.clone(),
    );
    reg.register(
        "openclaw_job_output_rate_bytes_per_second",
        "Output bytes per second of each job over its run, at its end",
        m.relay_rate.clone(),
    );
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &reg) {
        tracing::error!("metrics: cannot encode: {e}");
    }
    out
}

/// The CA, the server certificate, every approved node's and every active
/// client's expiry.
fn cert_expiry(
    shared: &Shared,
    nodes: &[crate::store::NodeRow],
    clients: &[crate::store::ClientRow],
) -> Family<Labels, Gauge> {
    let fam: Family<Labels, Gauge> = Family::default();
    let set = |kind: &str, name: &str, t: u64| {
        fam.get_or_create(&vec![
            ("kind", kind.to_string()),
            ("name", name.to_string()),
        ])
        .set(i64::try_from(t).unwrap_or(i64::MAX));
    };
    let gw = shared.config().name.clone();
    for (kind, file) in [
        ("ca", crate::files::CA_CERT),
        ("server", crate::files::SERVER_CERT),
    ] {
        if let Ok(v) = std::fs::read_to_string(shared.home.path(file))
            .map_err(|e| e.to_string())
            .and_then(|pem| pki::cert_validity(&pem).map_err(|e| e.to_string()))
        {
            set(kind, &gw, v.not_after);
        }
    }
    for n in nodes {
        if n.state == crate::store::NodeState::Approved
            && let Some(t) = n.cert_not_after
        {
            set("node", &n.name, t);
        }
    }
    for c in clients {
        if c.state == crate::store::ClientState::Active {
            set(&c.role.to_string(), &c.name, c.not_after);
        }
    }
    fam
}

/// What `/metrics` describes: a standby waiting for the lease (shared
/// state), then the serving gateway.
#[derive(Clone)]
pub enum Source {
    /// Starting (embedded state): nothing to say yet.
    Starting,
    /// Waiting for the leader lease: how many attempts so far.
    Standby(std::sync::Arc<AtomicU64>),
    /// Serving.
    Serving(std::sync::Arc<Shared>),
}

/// A standby's page: not the leader, and how often it tried.
pub fn render_standby(attempts: u64) -> String {
    let mut reg = Registry::default();
    let leader: Gauge = Gauge::default();
    leader.set(0);
    reg.register(
        "openclaw_leader",
        "1 on the gateway that holds the leader lease (shared PostgreSQL state)",
        leader,
    );
    reg.register(
        "openclaw_lease_attempts",
        "Attempts of this standby to take the leader lease",
        ConstCounter::new(attempts),
    );
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

/// Serves `GET /metrics` on `listener` with axum until the task is
/// aborted. Any other path is a 404 naming the one that exists.
pub async fn serve(
    source: tokio::sync::watch::Receiver<Source>,
    listener: tokio::net::TcpListener,
) {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                "only GET /metrics is served here\n",
            )
        })
        .with_state(source);
    // axum backs off on accept errors (EMFILE) instead of spinning.
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

async fn scrape(
    axum::extract::State(source): axum::extract::State<tokio::sync::watch::Receiver<Source>>,
) -> impl axum::response::IntoResponse {
    let now = source.borrow().clone();
    let body = match now {
        Source::Serving(shared) => crate::shared::off_runtime(&shared, |s| render(s))
            .await
            .unwrap_or_default(),
        Source::Standby(attempts) => render_standby(attempts.load(Ordering::Relaxed)),
        Source::Starting => "# EOF\n".to_string(),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
