//! Prometheus metrics over plain HTTP (`[metrics] listen` in gateway.toml;
//! off by default). A deliberately tiny responder: `GET /metrics` only,
//! requests capped at 8 KiB and 5 s, one response per connection.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::Shared;

/// Counters the gateway bumps as things happen.
#[derive(Default)]
pub struct Metrics {
    /// Job output bytes stored from nodes.
    pub bytes_relayed: AtomicU64,
    enrollments: Mutex<BTreeMap<&'static str, u64>>,
    handshake_failures: Mutex<BTreeMap<&'static str, u64>>,
}

fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, key: &'static str) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key).or_default() += 1;
    }
}

impl Metrics {
    /// Counts an enrollment request by outcome (`pending`, `auto_approved`, `refused`).
    pub fn enrollment(&self, result: &'static str) {
        bump(&self.enrollments, result);
    }

    /// Counts a failed handshake or refused session by reason.
    pub fn handshake_failure(&self, reason: &'static str) {
        bump(&self.handshake_failures, reason);
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

fn counter_family(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    map: &Mutex<BTreeMap<&'static str, u64>>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    if let Ok(m) = map.lock() {
        for (k, v) in m.iter() {
            let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {v}");
        }
    }
}

/// The metrics page.
pub fn render(shared: &Shared) -> String {
    let mut out = String::new();
    let now = Instant::now();
    let nodes = shared.store.tx(|tx| tx.nodes()).unwrap_or_default();
    let mut by_state: BTreeMap<&str, u64> =
        ["connected", "offline", "pending", "rejected", "revoked"]
            .iter()
            .map(|s| (*s, 0))
            .collect();
    let mut by_health: BTreeMap<&str, u64> = ["healthy", "degraded", "unhealthy"]
        .iter()
        .map(|s| (*s, 0))
        .collect();
    let mut ages = Vec::new();
    for n in &nodes {
        let crate::NodeStatus {
            live,
            connection: conn,
            health,
            ..
        } = shared.node_status(n, now);
        *by_state.entry(conn).or_default() += 1;
        if let Some(h) = by_health.get_mut(health) {
            *h += 1;
        }
        if let Some(l) = live {
            ages.push((n.name.clone(), l.view.heartbeat_age));
        }
    }
    let _ = writeln!(
        out,
        "# HELP openclaw_nodes Known nodes by connection state.\n# TYPE openclaw_nodes gauge"
    );
    for (k, v) in &by_state {
        let _ = writeln!(out, "openclaw_nodes{{state=\"{k}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP openclaw_nodes_health Connected nodes by health.\n# TYPE openclaw_nodes_health gauge"
    );
    for (k, v) in &by_health {
        let _ = writeln!(out, "openclaw_nodes_health{{health=\"{k}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP openclaw_node_heartbeat_age_seconds Time since each connected node's last heartbeat.\n# TYPE openclaw_node_heartbeat_age_seconds gauge"
    );
    for (name, age) in ages {
        let _ = writeln!(
            out,
            "openclaw_node_heartbeat_age_seconds{{node=\"{name}\"}} {:.3}",
            age.as_secs_f64()
        );
    }
    let _ = writeln!(
        out,
        "# HELP openclaw_jobs Jobs by state.\n# TYPE openclaw_jobs gauge"
    );
    for (state, n) in shared.store.tx(|tx| tx.job_counts()).unwrap_or_default() {
        let _ = writeln!(out, "openclaw_jobs{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP openclaw_output_bytes_relayed_total Job output bytes stored from nodes.\n# TYPE openclaw_output_bytes_relayed_total counter\nopenclaw_output_bytes_relayed_total {}",
        shared.metrics.bytes_relayed.load(Ordering::Relaxed)
    );
    cert_expiry(&mut out, shared, &nodes);
    if let Ok(s) = nix::sys::statvfs::statvfs(&shared.logs_dir) {
        // fsblkcnt_t is u64 here but narrower on some 32-bit targets.
        #[allow(clippy::useless_conversion)]
        let free = u64::from(s.blocks_available()).saturating_mul(s.fragment_size());
        let _ = writeln!(
            out,
            "# HELP openclaw_log_disk_free_bytes Free bytes on the file system that holds job logs.\n# TYPE openclaw_log_disk_free_bytes gauge\nopenclaw_log_disk_free_bytes {free}"
        );
    }
    let db = shared.store.counts();
    let _ = writeln!(
        out,
        "# HELP openclaw_db_calls_total State database operations run by its thread (async callers).\n# TYPE openclaw_db_calls_total counter\nopenclaw_db_calls_total {}\n# HELP openclaw_db_commits_total Transactions that thread committed for them (several calls share one when they queue up).\n# TYPE openclaw_db_commits_total counter\nopenclaw_db_commits_total {}",
        db.calls.load(Ordering::Relaxed),
        db.commits.load(Ordering::Relaxed)
    );
    counter_family(
        &mut out,
        "openclaw_enrollments_total",
        "Enrollment requests by outcome.",
        "result",
        &shared.metrics.enrollments,
    );
    counter_family(
        &mut out,
        "openclaw_handshake_failures_total",
        "Failed handshakes and refused sessions by reason.",
        "reason",
        &shared.metrics.handshake_failures,
    );
    out
}

/// `openclaw_cert_expiry_timestamp_seconds`: the CA, the server
/// certificate, every approved node's and every active client's.
fn cert_expiry(out: &mut String, shared: &Shared, nodes: &[crate::store::NodeRow]) {
    let _ = writeln!(
        out,
        "# HELP openclaw_cert_expiry_timestamp_seconds When each certificate expires (unix seconds).\n# TYPE openclaw_cert_expiry_timestamp_seconds gauge"
    );
    let gw = shared.config().name.clone();
    for (kind, file) in [
        ("ca", crate::files::CA_CERT),
        ("server", crate::files::SERVER_CERT),
    ] {
        if let Ok(v) = std::fs::read_to_string(shared.home.path(file))
            .map_err(|e| e.to_string())
            .and_then(|pem| pki::cert_validity(&pem).map_err(|e| e.to_string()))
        {
            let _ = writeln!(
                out,
                "openclaw_cert_expiry_timestamp_seconds{{kind=\"{kind}\",name=\"{gw}\"}} {}",
                v.not_after
            );
        }
    }
    for n in nodes {
        if n.state == crate::store::NodeState::Approved
            && let Some(t) = n.cert_not_after
        {
            let _ = writeln!(
                out,
                "openclaw_cert_expiry_timestamp_seconds{{kind=\"node\",name=\"{}\"}} {t}",
                n.name
            );
        }
    }
    for c in shared.store.tx(|tx| tx.clients()).unwrap_or_default() {
        if c.state == crate::store::ClientState::Active {
            let _ = writeln!(
                out,
                "openclaw_cert_expiry_timestamp_seconds{{kind=\"{}\",name=\"{}\"}} {}",
                c.role, c.name, c.not_after
            );
        }
    }
}

/// Serves the metrics page on `listener` until the task is dropped.
pub async fn serve(shared: std::sync::Arc<Shared>, listener: tokio::net::TcpListener) {
    loop {
        let mut sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                // Out of descriptors (EMFILE) or similar: back off instead
                // of spinning on the error.
                tracing::warn!(error = %e, "metrics: cannot accept a connection; retrying in 100 ms");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut got = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while got < buf.len() {
                    match sock.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                    if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let (status, body) = if buf[..got].starts_with(b"GET /metrics ") {
                let body = crate::off_runtime(&shared, |s| render(s)).await;
                ("200 OK", body.unwrap_or_default())
            } else {
                (
                    "404 Not Found",
                    "only GET /metrics is served here\n".to_string(),
                )
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
