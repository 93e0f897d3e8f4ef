//! `openclaw node run`: hold one mutually authenticated QUIC connection to
//! the gateway, with a control stream and a separate heartbeat stream, and
//! reconnect with capped exponential backoff and jitter when it drops.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mesh::Home;
use mesh::errors::{Refusal, refusal};
use mesh::home::{NodeConfig, node_files};
use proto::{CloseCode, ControlMsg, NodeHello, Open};

use crate::NodeError;
use crate::backoff::{Backoff, random_fraction};
use crate::runner::{self, GpuPool, RunContext};

/// A session that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The pause before trying the next gateway in the list.
const NEXT_GATEWAY_DELAY: Duration = Duration::from_millis(50);

/// After a session is lost, how long a standby that refuses is asked
/// again (every [`STANDBY_RETRY`]) before the next gateway is tried: it
/// is most likely about to take the dead leader's lease, and the next
/// gateway is most likely that dead leader, which costs a handshake limit.
const STANDBY_PATIENCE: Duration = Duration::from_secs(3);
/// See [`STANDBY_PATIENCE`].
const STANDBY_RETRY: Duration = Duration::from_millis(50);

/// Keep-alive and idle timeout when the node knows several gateways (a
/// leader and standbys). QUIC restarts the idle timer at the first
/// keep-alive sent after the last packet received, so a dead leader is
/// noticed 1.2 to 1.7 s after it died: about when a standby takes its
/// 1.5 s lease (1.1 to 1.5 s after). A node with one gateway keeps 1 s and
/// 3 s: it has nowhere else to go. node.toml's own values win over both.
const GROUP_TIMING: (Duration, Duration) =
    (Duration::from_millis(400), Duration::from_millis(1200));

/// A session that lasted this long was a real one (not a gateway that
/// accepts and drops at once): losing it starts the list afresh, so the
/// node tries the next gateway at once instead of backing off for
/// failures from before it.
const REAL_SESSION: Duration = Duration::from_secs(1);

/// Agent settings.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Overrides the gateway address in node.toml.
    pub gateway: Option<String>,
    /// Reconnection backoff.
    pub backoff: Backoff,
    /// The node's side of the idle timeout.
    pub idle_timeout: Duration,
    /// Simulated GPUs to offer (for tests and the lab; labelled as simulated).
    pub simulate_gpus: u32,
    /// The NVML library to load instead of the system's
    /// `libnvidia-ml.so` (`--nvml-lib`; overrides `nvml_lib` in node.toml).
    pub nvml_lib: Option<std::path::PathBuf>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            gateway: None,
            backoff: Backoff::default(),
            idle_timeout: Duration::from_secs(3),
            simulate_gpus: 0,
            nvml_lib: None,
        }
    }
}

/// Events an embedding program (the lab, tests) may watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// A session is up.
    Connected,
    /// The session ended; the agent will retry.
    Disconnected(String),
}

enum End {
    Shutdown,
    Retry(String),
    /// A standby refused the dial (it waits for the leader's lease).
    Standby(String),
    Fatal(String),
}

/// Whether jobs start through the exec shim, as before the spawn helper
/// (`OPENCLAW_EXEC_SHIM=1` in the agent's environment), said if so.
fn exec_shim(node: &str) -> bool {
    let shim = std::env::var_os("OPENCLAW_EXEC_SHIM").is_some_and(|v| v == "1");
    if shim {
        tracing::info!(
            node,
            "jobs start through the exec shim (OPENCLAW_EXEC_SHIM=1)"
        );
    }
    shim
}

/// Whether jobs get private temporary directories: checked once at start
/// by a probe ([`crate::private_tmp::probe`]) when the agent drops jobs
/// to another user; said either way, with the consequence when they do
/// not.
async fn private_tmp(
    cfg: &NodeConfig,
    identity: &crate::jail::Identity,
    work_root: &crate::jobdir::WorkRoot,
) -> Result<Option<crate::private_tmp::PrivateTmp>, NodeError> {
    let size = crate::private_tmp::tmpfs_size(
        cfg.job_tmp_size
            .as_deref()
            .unwrap_or(crate::private_tmp::DEFAULT_SIZE),
    )
    .map_err(|e| NodeError::Home(format!("node.toml: {e}")))?;
    let shared = "jobs share /tmp, /var/tmp, /dev/shm and System V IPC with the node and with each \
                  other: a job can read what an earlier job with the same uid left there, and \
                  per-user caches such as /tmp/torchinductor_$USER are shared between jobs";
    match identity {
        crate::jail::Identity::Drop(_) => {
            let spec = crate::private_tmp::PrivateTmp {
                size,
                keep: vec![work_root.path().to_path_buf()],
            };
            match crate::private_tmp::probe(&spec).await {
                Ok(()) => {
                    tracing::info!(
                        node = %cfg.name,
                        "every job gets its own /tmp, /var/tmp and /dev/shm (tmpfs, at most {} each) \
                         and its own IPC namespace, gone when it ends",
                        spec.size
                    );
                    Ok(Some(spec))
                }
                Err(why) => {
                    tracing::warn!(
                        node = %cfg.name,
                        "JOBS GET NO PRIVATE TEMPORARY DIRECTORIES: {shared}. This agent cannot make a mount \
                         namespace for them ({why}); run it as root with CAP_SYS_ADMIN where mount namespaces \
                         are allowed (the shipped systemd unit grants it; a container needs --cap-add SYS_ADMIN \
                         or the agent on the host)"
                    );
                    Ok(None)
                }
            }
        }
        crate::jail::Identity::AgentUser(_) => {
            tracing::warn!(
                node = %cfg.name,
                "{shared} (jobs run as the agent's own user, so it gives them no private ones)"
            );
            Ok(None)
        }
        crate::jail::Identity::Refuse(_) => Ok(None),
    }
}

/// Runs the agent until `shutdown` resolves (Ok) or the gateway refuses
/// this node for good (Err).
pub async fn run(
    home: &Home,
    opts: AgentOptions,
    shutdown: impl Future<Output = ()>,
    mut events: impl FnMut(AgentEvent),
) -> Result<(), NodeError> {
    home.refuse_gateway_home().map_err(NodeError::Home)?;
    // Nothing the agent inherited reaches a job.
    match crate::spawn::inherited_close_on_exec() {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            descriptors = n,
            "inherited descriptors are closed to jobs (close-on-exec)"
        ),
        Err(e) => {
            return Err(NodeError::Home(format!(
                "cannot close the descriptors the agent inherited to its jobs (listing /proc/self/fd): {e}; is /proc mounted?"
            )));
        }
    }
    let cfg = NodeConfig::load(home).map_err(NodeError::Home)?;
    // Fail fast on a missing or expired credential; it is loaded again
    // before every session, so a renewed certificate is picked up.
    let (keep_alive, idle) =
        mesh::home::session_timing(&cfg, Duration::from_secs(1), opts.idle_timeout)
            .map_err(NodeError::Home)?;
    // With several gateways the defaults are shorter (GROUP_TIMING); the
    // list can grow while the agent runs, so they are chosen per dial.
    let timing = |gateways: usize| {
        let (k, i) = timing_defaults(
            cfg.keep_alive.is_some() || cfg.idle_timeout.is_some(),
            gateways,
            opts.idle_timeout,
        );
        mesh::home::session_timing(&cfg, k, i).unwrap_or((keep_alive, idle))
    };
    let floor = mesh::home::congestion_floor(&cfg).map_err(NodeError::Home)?;
    let udp_max = mesh::home::udp_payload_max(&cfg).map_err(NodeError::Home)?;
    for entry in &cfg.policy.forward_ports {
        mesh::home::port_range(entry).map_err(NodeError::Home)?;
    }
    if let Some(bytes) = floor {
        tracing::warn!(
            bytes,
            "congestion_floor is set: this node keeps that much in flight whatever the loss; only for a link this lab owns"
        );
    }
    load_session_config(home, keep_alive, idle, floor, udp_max)?;
    let gateway = opts.gateway.clone().unwrap_or(cfg.gateway.clone());
    // A leader and its standbys: tried in order, moving on at once when
    // one refuses or does not answer, backing off after a whole round.
    let gateways: Vec<String> = mesh::gateway_list(&gateway)
        .into_iter()
        .map(str::to_string)
        .collect();
    let first = gateways
        .first()
        .ok_or_else(|| NodeError::Unreachable("node.toml names no gateway".into()))?
        .clone();
    let remote = mesh::resolve(&first)
        .await
        .map_err(NodeError::Unreachable)?;
    // What the leader says about the group replaces this list (and
    // node.toml's, unless --gateway overrides it for this run).
    let group = Arc::new(crate::group::Group::new(
        gateways,
        home.clone(),
        opts.gateway.is_none(),
    ));
    let endpoint = mesh::client_endpoint(remote).map_err(NodeError::Unreachable)?;
    tracing::info!(node = %cfg.name, %gateway, "node agent starting");

    let nvml_lib = opts
        .nvml_lib
        .clone()
        .or_else(|| cfg.nvml_lib.as_ref().map(std::path::PathBuf::from));
    let (mut gpu_source, no_gpus) =
        crate::telemetry::detect(opts.simulate_gpus, &cfg.name, nvml_lib.as_deref());
    if let Some(why) = no_gpus {
        tracing::info!(node = %cfg.name, "{why}; this node reports no GPUs");
    }
    let spool_dir = home.path("spool");
    mesh::home::create_private_dir(&spool_dir)?;
    let identity = crate::jail::decide(cfg.run_as.as_deref(), cfg.allow_jobs_as_agent_user);
    let job_uids = match cfg.job_uids.as_deref() {
        None => None,
        Some(text) => {
            let range = crate::jail::parse_uid_range(text).map_err(NodeError::Home)?;
            let run_as = match &identity {
                crate::jail::Identity::Drop(u) => Some((format!("run_as ({})", u.name), u.uid)),
                _ => None,
            };
            let mut taken = vec![("the agent", nix::unistd::geteuid().as_raw())];
            taken.extend(run_as.as_ref().map(|(who, uid)| (who.as_str(), *uid)));
            crate::jail::check_uid_range(text, range, cfg.policy.max_jobs, &taken)
                .map_err(|e| NodeError::Home(format!("node.toml: {e}")))?;
            Some(crate::jail::UidPool::new(range))
        }
    };
    match &identity {
        crate::jail::Identity::Drop(u) => {
            tracing::info!(node = %cfg.name, user = %u.name, uid = u.uid, "jobs run as {}", u.name)
        }
        crate::jail::Identity::AgentUser(u) => tracing::warn!(
            node = %cfg.name,
            "JOBS RUN AS THE AGENT'S OWN USER ({}): they can read this node's private key and spool \
             (allow_jobs_as_agent_user = true). Set run_as in node.toml and run the agent as root for real use",
            u.name
        ),
        crate::jail::Identity::Refuse(why) => {
            tracing::warn!(node = %cfg.name, "this node will refuse every job: {why}")
        }
    }
    let tree = crate::tree::detect(&cfg.name);
    tracing::info!(node = %cfg.name, "job processes are tracked by {}", tree.describe());
    let _cgroup = tree.guard();
    let (base, create) = crate::jobdir::base_dir(
        cfg.work_dir.as_deref(),
        home.root(),
        nix::unistd::geteuid().as_raw(),
    );
    let work_root = crate::jobdir::WorkRoot::prepare(&base, create, &cfg.name)
        .map_err(|e| NodeError::Home(format!("job directories: {e}")))?;
    tracing::info!(
        node = %cfg.name,
        "jobs get private directories in {}",
        work_root.path().display()
    );
    let private_tmp = private_tmp(&cfg, &identity, &work_root).await?;
    let mut job_path =
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    // Simulated GPUs come with a simulated nvidia-smi, first on jobs' PATH.
    if gpu_source.kind() == "simulated" {
        match crate::simsmi::install(&work_root, gpu_source.as_mut()) {
            Ok(dir) => job_path = format!("{}:{job_path}", dir.display()),
            Err(e) => tracing::warn!(
                node = %cfg.name,
                "jobs get no simulated nvidia-smi: {e}"
            ),
        }
    }
    // A job whose GPU failed runs on this long (to save a checkpoint, or
    // end by itself), then fails with the reason.
    let gpu_fail_grace = match cfg.gpu_fail_grace.as_deref() {
        None => Duration::from_secs(60),
        Some(t) => proto::duration::parse(t)
            .map_err(|e| NodeError::Home(format!("node.toml: gpu_fail_grace: {e}")))?,
    };
    // Jobs get real GPUs by UUID: read them once now, so a job that
    // starts before the first heartbeat knows them too.
    // Judged too, so that no job before the first heartbeat gets an
    // unhealthy or MIG-enabled GPU.
    let real_gpus = gpu_source.kind() == "nvml";
    let gpu_recover_after = cfg.gpu_recover_after.unwrap_or(3).max(1);
    let mut tracker = crate::gpuhealth::Tracker::default();
    let (gpu_ids, first_health): (Vec<(String, String)>, _) = match gpu_source.sample() {
        Ok(samples) => (
            samples
                .iter()
                .map(|g| (g.uuid.clone(), g.name.clone()))
                .collect(),
            tracker.update(&samples, gpu_recover_after),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let ctx = Arc::new(RunContext {
        node: cfg.name.clone(),
        policy: cfg.policy.clone(),
        gpus: GpuPool::new(gpu_source.count()),
        running: AtomicU32::new(0),
        jobs: std::sync::Mutex::new(std::collections::HashMap::new()),
        spool_dir,
        gpu_source: std::sync::Mutex::new(gpu_source),
        gpu_health: std::sync::Mutex::new(tracker),
        gpu_recover_after,
        gpu_fail_grace,
        gpu_ids: std::sync::Mutex::new(gpu_ids),
        real_gpus,
        identity,
        tree,
        work_root: Arc::new(work_root),
        job_path,
        job_uids,
        private_tmp,
        exec_shim: exec_shim(&cfg.name),
    });
    ctx.gpus.set_health(&first_health);
    if opts.simulate_gpus > 0 {
        tracing::info!(node = %cfg.name, gpus = opts.simulate_gpus, "offering simulated GPUs");
    }
    tokio::pin!(shutdown);
    let mut attempt = 0u32;
    let mut at = 0usize;
    let mut failed_in_row = 0usize;
    // When the last established session was lost (see STANDBY_PATIENCE).
    let mut lost_at: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let gateways = group.list();
        let target = gateways.get(at).map_or(first.as_str(), String::as_str);
        let (keep_alive, idle) = timing(gateways.len());
        let mut established = false;
        let mut seen = |e: AgentEvent| {
            established |= matches!(e, AgentEvent::Connected);
            events(e);
        };
        let end = tokio::select! {
            end = async {
                let remote = match mesh::resolve(target).await {
                    Ok(r) => r,
                    Err(e) => return End::Retry(e),
                };
                match load_session_config(home, keep_alive, idle, floor, udp_max) {
                    Ok((config, _)) => {
                        session(&endpoint, &config, remote, &group, &ctx, home, &mut seen).await
                    }
                    Err(e) => End::Fatal(e.to_string()),
                }
            } => end,
            () = &mut shutdown => End::Shutdown,
        };
        if established {
            lost_at = Some(Instant::now());
            failed_in_row = failures_after_session(started.elapsed(), failed_in_row);
        }
        let end = match end {
            // Probably about to take the lost leader's lease: ask it again
            // soon rather than go round the list to the dead leader.
            End::Standby(msg) if lost_at.is_some_and(|t| t.elapsed() < STANDBY_PATIENCE) => {
                tracing::info!(node = %cfg.name, "{msg}; asking the standby again in {STANDBY_RETRY:?}");
                tokio::select! {
                    () = tokio::time::sleep(STANDBY_RETRY) => continue,
                    () = &mut shutdown => End::Shutdown,
                }
            }
            other => other,
        };
        match end {
            End::Shutdown => {
                endpoint.close(CloseCode::Normal.code().into(), b"node shutting down");
                let _ =
                    tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
                return Ok(());
            }
            End::Fatal(msg) => {
                tracing::error!(node = %cfg.name, "{msg}");
                return Err(NodeError::Refused(msg));
            }
            // Refused by a standby the node need not wait for: the next.
            End::Retry(msg) | End::Standby(msg) => {
                if started.elapsed() > STABLE_AFTER {
                    attempt = 0;
                    failed_in_row = 0;
                }
                failed_in_row += 1;
                // The list may have changed during the session (the group
                // told it): go on from where the gateway just tried stands
                // now, so a reordered list never sends the node back to it.
                let now = group.list();
                let here = now
                    .iter()
                    .position(|a| a == target)
                    .unwrap_or(now.len().saturating_sub(1));
                let (next, round_failed) = mesh::next_gateway(here, now.len(), failed_in_row);
                at = next;
                let delay = if round_failed {
                    failed_in_row = 0;
                    let d = opts.backoff.delay(attempt, random_fraction());
                    attempt = attempt.saturating_add(1);
                    d
                } else {
                    NEXT_GATEWAY_DELAY
                };
                tracing::warn!(node = %cfg.name, "{msg}; reconnecting in {delay:?}");
                events(AgentEvent::Disconnected(msg));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = &mut shutdown => {
                        endpoint.close(CloseCode::Normal.code().into(), b"node shutting down");
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Failed dials in a row to count after an established session ended
/// (`lasted` since its dial began): none after a real one, so its loss
/// goes straight to the next gateway; unchanged after one that the
/// gateway dropped at once, so a flapping gateway still earns a backoff.
/// Pure.
fn failures_after_session(lasted: Duration, failed_in_row: usize) -> usize {
    if lasted >= REAL_SESSION {
        0
    } else {
        failed_in_row
    }
}

/// The keep-alive and idle timeout to use when node.toml sets neither
/// (`configured`: it sets one or both, and those rule): [`GROUP_TIMING`]
/// with several gateways, else 1 s and `idle` (3 s unless the caller
/// says). Pure.
fn timing_defaults(configured: bool, gateways: usize, idle: Duration) -> (Duration, Duration) {
    if configured || gateways < 2 {
        return (Duration::from_secs(1), idle);
    }
    let idle = GROUP_TIMING.1.min(idle);
    (GROUP_TIMING.0.min(idle / 3), idle)
}

/// Reads the node's credential and builds a session config; refuses an
/// expired certificate with the way out.
pub fn load_session_config(
    home: &Home,
    keep_alive: Duration,
    idle: Duration,
    congestion_floor: Option<u64>,
    udp_payload_max: u16,
) -> Result<(quinn::ClientConfig, pki::PeerCert), NodeError> {
    let hint = "this home holds no enrolled node; run 'openclaw node enroll' first";
    let cert_pem = home.read_text(node_files::CERT, hint)?;
    let key_pem = home.read_private(node_files::KEY, hint)?;
    let ca_pem = home.read_text(node_files::CA, hint)?;
    let cert_der =
        pki::pem_to_der(&cert_pem, "CERTIFICATE").map_err(|e| NodeError::Home(e.to_string()))?;
    let peer = pki::parse_peer_cert(&cert_der).map_err(|e| NodeError::Home(e.to_string()))?;
    let now = unix_now();
    if peer.not_after <= now {
        return Err(NodeError::Refused(format!(
            "this node's certificate expired {} ago; enroll again with a new token ('openclaw node enroll')",
            proto::duration::format(Duration::from_secs(now - peer.not_after))
        )));
    }
    let mut transport = mesh::tls::client_transport(keep_alive, idle)
        .map_err(|e| NodeError::Home(e.to_string()))?;
    if let Some(floor) = congestion_floor {
        mesh::tls::set_congestion_floor(&mut transport, floor);
    }
    mesh::tls::set_udp_payload_max(&mut transport, udp_payload_max);
    let config = mesh::tls::session_client_config(&ca_pem, &cert_pem, &key_pem, transport)
        .map_err(|e| NodeError::Home(e.to_string()))?;
    Ok((config, peer))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the node's certificate over `conn` two thirds into its lifetime,
/// keeping the key (documented in certs/README.md), and again for each new
/// certificate. The live session keeps its TLS state; the next connection
/// uses the new certificate.
async fn renew_when_due(conn: quinn::Connection, home: Home) {
    loop {
        let Ok(cert_pem) = home.read_text(node_files::CERT, "") else {
            return;
        };
        let Some(peer) = pki::pem_to_der(&cert_pem, "CERTIFICATE")
            .ok()
            .and_then(|d| pki::parse_peer_cert(&d).ok())
        else {
            return;
        };
        let due = pki::renewal_due(peer.not_before, peer.not_after);
        tokio::time::sleep(Duration::from_secs(due.saturating_sub(unix_now()))).await;
        match renew(&conn, &home, &peer).await {
            Ok(not_after) => {
                tracing::info!(node = %peer.name, "certificate renewed; valid until {not_after} (unix)")
            }
            Err(e) => {
                tracing::warn!(node = %peer.name, "certificate renewal failed: {e}; retrying in 10s");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    }
}

async fn renew(conn: &quinn::Connection, home: &Home, peer: &pki::PeerCert) -> Result<u64, String> {
    let key_pem = home
        .read_private(node_files::KEY, "")
        .map_err(|e| e.to_string())?;
    let csr_der = pki::make_csr(&peer.name, &key_pem).map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    mesh::write_frame(
        &mut send,
        &Open::Request(proto::Request::NodeRenew { csr_der }),
    )
    .await
    .map_err(|e| e.to_string())?;
    let _ = send.finish();
    let reply = mesh::read_frame::<proto::Response>(&mut recv, proto::MAX_FRAME_LEN)
        .await
        .map_err(|e| e.to_string())?;
    let cert_der = match reply {
        Some(proto::Response::ClientIssued { cert_der, .. }) => cert_der,
        Some(proto::Response::Error(e)) => return Err(e.message),
        other => return Err(format!("unexpected reply {other:?}")),
    };
    let new = pki::parse_peer_cert(&cert_der).map_err(|e| e.to_string())?;
    if new.name != peer.name || new.role != proto::Role::Node || new.fingerprint != peer.fingerprint
    {
        return Err("the gateway returned a certificate for another name or key".into());
    }
    home.write_public(
        node_files::CERT,
        pki::der_to_pem(&cert_der, "CERTIFICATE").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    Ok(new.not_after)
}

/// Most CAs a trust message may carry (two during a rotation).
const MAX_TRUSTED_CAS: usize = 4;
/// Largest CA certificate accepted in a trust message.
const MAX_CA_DER: usize = 16 * 1024;

/// What a trust message asks of this node: the CA file to write (if it
/// changes) and whether the node's certificate must be renewed because the
/// issuing CA (the first) did not sign it. Pure.
pub fn trust_plan(
    cas_der: &[Vec<u8>],
    current_ca_pem: &str,
    own_cert_der: &[u8],
) -> Result<(Option<String>, bool), String> {
    if cas_der.is_empty() || cas_der.len() > MAX_TRUSTED_CAS {
        return Err(format!(
            "the gateway sent {} CAs to trust; expected 1 to {MAX_TRUSTED_CAS}",
            cas_der.len()
        ));
    }
    let mut pem = String::new();
    for der in cas_der {
        if der.len() > MAX_CA_DER || pki::spki_pin(der).is_err() {
            return Err("the gateway sent a CA that is not a readable certificate".into());
        }
        pem.push_str(&pki::der_to_pem(der, "CERTIFICATE"));
    }
    let renew = !pki::issued_by(own_cert_der, &cas_der[0]).map_err(|e| e.to_string())?;
    let write = (pem != current_ca_pem).then_some(pem);
    Ok((write, renew))
}

/// Follows a trust message: rewrites the CA file for the next connection
/// and renews the certificate over this one if a rotation asks for it. The
/// session itself, and every job on it, carries on.
fn follow_trust(conn: &quinn::Connection, home: &Home, cas_der: &[Vec<u8>]) {
    let current = home.read_text(node_files::CA, "").unwrap_or_default();
    let own = home
        .read_text(node_files::CERT, "")
        .ok()
        .and_then(|pem| pki::pem_to_der(&pem, "CERTIFICATE").ok());
    let Some(own) = own else {
        tracing::warn!("cannot read this node's certificate to follow the gateway's CAs");
        return;
    };
    let (write, renew_now) = match trust_plan(cas_der, &current, &own) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::warn!("ignoring a trust message: {e}");
            return;
        }
    };
    if let Some(pem) = write {
        match home.write_public(node_files::CA, pem.as_bytes()) {
            Ok(()) => tracing::info!(cas = cas_der.len(), "trusting the gateway's CAs as told"),
            Err(e) => tracing::warn!("cannot write the gateway's CAs: {e}"),
        }
    }
    if renew_now {
        let Ok(peer) = pki::parse_peer_cert(&own) else {
            return;
        };
        let (conn, home) = (conn.clone(), home.clone());
        tokio::spawn(async move {
            match renew(&conn, &home, &peer).await {
                Ok(not_after) => tracing::info!(
                    node = %peer.name,
                    "renewed onto the gateway's new CA; valid until {not_after} (unix)"
                ),
                Err(e) => tracing::warn!(
                    node = %peer.name,
                    "renewal onto the gateway's new CA failed: {e}; it is tried again at the next connection"
                ),
            }
        });
    }
}

fn classify(err: &quinn::ConnectionError) -> End {
    let msg = mesh::describe_connection_error(err);
    match refusal(err) {
        Refusal::Revoked
        | Refusal::Expired
        | Refusal::UnknownCa
        | Refusal::NotApproved
        | Refusal::Replaced => End::Fatal(msg),
        Refusal::Standby => End::Standby(msg),
        Refusal::Shutdown | Refusal::Other => End::Retry(msg),
    }
}

/// Sends a heartbeat every `interval` on `hb` (`beat` builds heartbeat
/// number `seq`, from 1) until the stream fails. A late tick is not made
/// up for: the next beat comes one interval after the late one.
pub async fn send_heartbeats<T: serde::Serialize>(
    hb: &mut quinn::SendStream,
    interval: Duration,
    mut beat: impl FnMut(u64) -> T,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        seq += 1;
        if mesh::write_frame(hb, &beat(seq)).await.is_err() {
            return;
        }
    }
}

async fn session(
    endpoint: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    remote: std::net::SocketAddr,
    group: &crate::group::Group,
    ctx: &Arc<RunContext>,
    home: &Home,
    events: &mut impl FnMut(AgentEvent),
) -> End {
    let name = ctx.node.as_str();
    let connecting = match endpoint.connect_with(config.clone(), remote, proto::GATEWAY_SERVER_NAME)
    {
        Ok(c) => c,
        Err(e) => return End::Retry(format!("cannot dial {remote}: {e}")),
    };
    // A silent gateway costs at most mesh::HANDSHAKE_LIMIT when there
    // are others to try (a refusing one costs a round trip).
    let conn = match mesh::handshake(connecting, group.list().len()).await {
        Some(Ok(c)) => c,
        Some(Err(e)) => return classify(&e),
        None => return End::Retry(format!("gateway {remote} did not answer; trying the next")),
    };
    let lost = |conn: &quinn::Connection, e: mesh::StreamError| match conn.close_reason() {
        Some(reason) => classify(&reason),
        None => End::Retry(format!("session setup failed: {e}")),
    };
    // With TLS 1.3 the gateway may reject our certificate after connect()
    // returned; that shows up here, on the first stream.
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    let hello = Open::Control(NodeHello {
        protocol: proto::PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        gpus: ctx.gpus.total(),
        gpus_simulated: ctx
            .gpu_source
            .lock()
            .map(|g| g.kind() == "simulated")
            .unwrap_or(false),
        max_jobs: ctx.policy.max_jobs,
    });
    if let Err(e) = mesh::write_frame(&mut send, &hello).await {
        return lost(&conn, e);
    }
    let interval = match mesh::read_frame::<ControlMsg>(&mut recv, proto::MAX_FRAME_LEN).await {
        Ok(Some(ControlMsg::Welcome {
            heartbeat_interval_ms,
            gateway,
        })) => {
            tracing::info!(node = %name, %gateway, "connected");
            Duration::from_millis(heartbeat_interval_ms.clamp(100, 60_000))
        }
        Ok(Some(ControlMsg::Refused(e))) => {
            return End::Fatal(format!("gateway refused this node: {}", e.message));
        }
        Ok(Some(
            ControlMsg::RunJob(_)
            | ControlMsg::RunJobInput(_)
            | ControlMsg::RunJobWith(_)
            | ControlMsg::RunJobTty { .. }
            | ControlMsg::Trust { .. }
            | ControlMsg::Forward { .. }
            | ControlMsg::Gateways { .. }
            | ControlMsg::Copy { .. },
        )) => {
            return End::Retry("gateway sent a message before welcoming this node".into());
        }
        Ok(None) => {
            return match conn.close_reason() {
                Some(r) => classify(&r),
                None => End::Retry("gateway closed the control stream".into()),
            };
        }
        Err(e) => return lost(&conn, e),
    };
    let mut hb = match conn.open_uni().await {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    if let Err(e) = mesh::write_frame(&mut hb, &Open::Heartbeat).await {
        return lost(&conn, e);
    }
    events(AgentEvent::Connected);
    let renewer = tokio::spawn(renew_when_due(conn.clone(), home.clone()));
    let _renewer = AbortOnDrop(renewer);
    // Jobs that ran on while the gateway was away: report where they are.
    for job in ctx.live_jobs() {
        tracing::info!(
            job = job.plan.job_id,
            "re-attaching a job after reconnecting"
        );
        tokio::spawn(runner::attach(conn.clone(), job, ctx.clone()));
    }
    let claimed = ctx.gpus.total();
    let heartbeat = |seq| {
        let loadavg = std::fs::read_to_string("/proc/loadavg").ok();
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
        let holders = ctx.gpus.holders();
        let running = ctx.running.load(std::sync::atomic::Ordering::Relaxed);
        let (kind, sampled) = match ctx.gpu_source.lock() {
            Ok(mut src) => (src.kind(), src.sample()),
            Err(_) => ("none", Ok(vec![])),
        };
        // Each GPU judged on its own reading; the pool stops handing out
        // the unhealthy ones at once.
        let health = match (&sampled, ctx.gpu_health.lock()) {
            (Ok(samples), Ok(mut t)) => t.update(samples, ctx.gpu_recover_after),
            _ => vec![],
        };
        if let (Ok(samples), Ok(mut ids)) = (&sampled, ctx.gpu_ids.lock()) {
            for s in samples {
                let i = s.index as usize;
                if i < ids.len() {
                    // A lost GPU answers nothing: keep what it was.
                    if !s.uuid.is_empty() {
                        ids[i] = (s.uuid.clone(), s.name.clone());
                    }
                } else if i == ids.len() {
                    ids.push((s.uuid.clone(), s.name.clone()));
                }
            }
        }
        ctx.gpus.set_health(&health);
        ctx.check_jobs_gpus(&health);
        let beat = crate::telemetry::heartbeat(
            seq,
            kind,
            sampled,
            &holders,
            running,
            loadavg.as_deref(),
            meminfo.as_deref(),
        );
        let mut beat = proto::HeartbeatV3 { beat, health };
        // Within what the gateway's frame limit allows for our hello.
        beat.bound(claimed);
        beat
    };
    let heartbeats = send_heartbeats(&mut hb, interval, heartbeat);
    let control = async {
        while let Ok(Some(msg)) =
            mesh::read_frame::<ControlMsg>(&mut recv, proto::MAX_FRAME_LEN).await
        {
            if let ControlMsg::Trust { cas_der } = msg {
                follow_trust(&conn, home, &cas_der);
                continue;
            }
            if let ControlMsg::Gateways { addrs } = msg {
                group.follow(&addrs);
                continue;
            }
            if let ControlMsg::Copy { id, op } = msg {
                tokio::spawn(crate::copy::answer(
                    conn.clone(),
                    ctx.identity.clone(),
                    ctx.policy.allowed_paths.clone(),
                    id,
                    op,
                ));
                continue;
            }
            if let ControlMsg::Forward { id, port } = msg {
                tokio::spawn(crate::forward::answer(
                    conn.clone(),
                    ctx.node.clone(),
                    ctx.policy.clone(),
                    id,
                    port,
                ));
                continue;
            }
            let plain = |plan, input| proto::JobDispatch {
                plan,
                input,
                artifacts: proto::ArtifactSpec::default(),
            };
            let (d, tty) = match msg {
                ControlMsg::RunJob(plan) => (plain(plan, false), None),
                ControlMsg::RunJobInput(plan) => (plain(plan, true), None),
                ControlMsg::RunJobWith(d) => (d, None),
                ControlMsg::RunJobTty { plan, tty } => (plain(plan, false), Some(tty)),
                _ => continue,
            };
            if d.plan.node != ctx.node {
                tracing::warn!(
                    job = d.plan.job_id,
                    "ignoring a job addressed to node {}",
                    d.plan.node
                );
                continue;
            }
            tracing::info!(job = d.plan.job_id, argv = ?d.plan.argv, input = d.input, tty = tty.is_some(), "running job");
            let job = runner::start(ctx, d, tty);
            tokio::spawn(runner::attach(conn.clone(), job, ctx.clone()));
        }
    };
    tokio::select! {
        err = conn.closed() => classify(&err),
        () = heartbeats => match conn.close_reason() { Some(r) => classify(&r), None => End::Retry("heartbeat stream failed".into()) },
        () = control => match conn.close_reason() { Some(r) => classify(&r), None => End::Retry("gateway ended the control stream".into()) },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_node_with_several_gateways_notices_a_dead_one_sooner_unless_told_otherwise() {
        let three = Duration::from_secs(3);
        let (one, ms) = (Duration::from_secs(1), Duration::from_millis);
        assert_eq!(timing_defaults(false, 1, three), (one, three));
        assert_eq!(timing_defaults(false, 2, three), (ms(400), ms(1200)));
        // node.toml's own values rule: the group defaults step aside.
        assert_eq!(timing_defaults(true, 2, three), (one, three));
        // A shorter idle timeout from the caller stays, with room for
        // three keep-alives under it.
        assert_eq!(timing_defaults(false, 3, ms(900)), (ms(300), ms(900)));
    }

    #[test]
    fn losing_a_real_session_starts_the_gateway_list_afresh() {
        let ms = Duration::from_millis;
        // Three failovers ago the node failed twice in a row; the session
        // since lasted 3 s: its loss is one failure, not a whole round.
        assert_eq!(failures_after_session(ms(3000), 2), 0);
        let (next, round_failed) = mesh::next_gateway(0, 2, 1);
        assert_eq!((next, round_failed), (1, false));
        // A gateway that accepts and drops at once keeps the count, so
        // the round fails and the node backs off.
        assert_eq!(failures_after_session(ms(20), 2), 2);
        assert!(mesh::next_gateway(0, 2, 3).1);
    }

    #[test]
    fn a_trust_message_rewrites_the_ca_file_and_asks_for_renewal_only_when_due() {
        let (old_pem, old_key) = pki::generate_ca("gw", NOW).unwrap();
        let old = pki::Ca::load(&old_pem, &old_key).unwrap();
        let next = pki::generate_next_ca("gw", &old, NOW).unwrap();
        let new_der = pki::pem_to_der(&next.cert_pem, "CERTIFICATE").unwrap();
        let old_der = old.cert_der().to_vec();
        let key = pki::generate_key().unwrap();
        let mine = old
            .issue_client("n1", proto::Role::Node, &key.spki_der, 60, NOW)
            .unwrap()
            .der;
        let one = pki::der_to_pem(&old_der, "CERTIFICATE");

        // Nothing changed: nothing to do.
        assert_eq!(
            trust_plan(std::slice::from_ref(&old_der), &one, &mine).unwrap(),
            (None, false)
        );
        // init: trust both, keep the certificate.
        let (write, renew) = trust_plan(&[old_der.clone(), new_der.clone()], &one, &mine).unwrap();
        assert_eq!(
            write.as_deref().map(|p| p.matches("BEGIN").count()),
            Some(2)
        );
        assert!(!renew);
        // rotate: the new CA issues, so renew.
        let (_, renew) = trust_plan(&[new_der.clone(), old_der.clone()], &one, &mine).unwrap();
        assert!(renew);
        // Hostile or broken messages change nothing.
        for bad in [
            vec![],
            vec![b"not a cert".to_vec()],
            vec![new_der.clone(); MAX_TRUSTED_CAS + 1],
            vec![vec![0u8; MAX_CA_DER + 1]],
        ] {
            assert!(trust_plan(&bad, &one, &mine).is_err(), "{}", bad.len());
        }
        assert!(trust_plan(std::slice::from_ref(&new_der), &one, b"junk").is_err());
    }
}
