//! `openclaw node enroll`: make a key, send a CSR over pinned TLS, wait for
//! an admin, store the certificate.
//!
//! The private key is generated here and never leaves the home. If the
//! command is interrupted while pending, running it again with the same home
//! resumes polling the same request (the request id is kept in
//! `enroll.pending`).

use std::time::{Duration, Instant};

use mesh::Home;
use mesh::home::{NodeConfig, node_files};
use proto::{EnrollReply, EnrollRequest, EnrollSubmit, Role};

use crate::NodeError;
use crate::backoff::{Backoff, random_fraction};

/// What `node enroll` was asked to do.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// The join token text.
    pub token: String,
    /// Node name.
    pub name: String,
    /// Labels to ask for.
    pub labels: Vec<String>,
    /// Overrides the token's gateway address; the pin still applies.
    pub gateway: Option<String>,
    /// How long to wait for approval.
    pub wait: Duration,
    /// How often to ask.
    pub poll_interval: Duration,
    /// The user jobs will run as (written to node.toml).
    pub run_as: Option<String>,
    /// Let jobs run as the agent's user (written to node.toml; labs and tests).
    pub allow_jobs_as_agent_user: bool,
}

/// The result of a successful enrollment.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// Node name.
    pub name: String,
    /// Key fingerprint.
    pub fingerprint: String,
    /// Certificate expiry, Unix seconds.
    pub not_after: u64,
}

struct Dialer {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    check: std::sync::Arc<mesh::tls::PinCheck>,
    gateway: String,
    conn: Option<quinn::Connection>,
}

impl Dialer {
    async fn connection(&mut self) -> Result<quinn::Connection, NodeError> {
        if let Some(c) = self.conn.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        // A leader and its standbys: the first that answers (a standby
        // refuses at once; a silent one gets a bounded wait).
        let list = mesh::gateway_list(&self.gateway);
        let n = list.len();
        let mut last = format!("cannot reach gateway {}", self.gateway);
        for addr in list {
            let remote = match mesh::resolve(addr).await {
                Ok(r) => r,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let connecting = self
                .endpoint
                .connect_with(self.config.clone(), remote, proto::GATEWAY_SERVER_NAME)
                .map_err(|e| NodeError::Unreachable(format!("cannot dial {addr}: {e}")))?;
            match mesh::handshake(connecting, n).await {
                Some(Ok(c)) => {
                    self.conn = Some(c.clone());
                    return Ok(c);
                }
                Some(Err(e)) => {
                    if let Some(pin) = self.check.failure() {
                        return Err(NodeError::Refused(format!(
                            "refusing gateway {addr}: {pin}"
                        )));
                    }
                    last = format!(
                        "cannot reach gateway {addr}: {}",
                        mesh::describe_connection_error(&e)
                    );
                }
                None => last = format!("gateway {addr} did not answer"),
            }
        }
        Err(NodeError::Unreachable(last))
    }

    async fn ask(&mut self, req: &EnrollRequest) -> Result<EnrollReply, NodeError> {
        let conn = self.connection().await?;
        let lost = |e: mesh::StreamError| {
            NodeError::Unreachable(format!(
                "lost the gateway {}: {}",
                self.gateway,
                e.connection_error()
                    .map(mesh::describe_connection_error)
                    .unwrap_or_else(|| e.to_string())
            ))
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(e.into()))?;
        mesh::write_frame(&mut send, req).await.map_err(lost)?;
        let _ = send.finish();
        match mesh::read_frame::<EnrollReply>(&mut recv, proto::MAX_FRAME_LEN).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(NodeError::Unreachable(
                "the gateway closed the stream without replying".into(),
            )),
            Err(e) => Err(lost(e)),
        }
    }
}

/// Enrolls the node in `home`. `say` receives lines for the user.
pub async fn enroll(
    home: &Home,
    opts: &EnrollOptions,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<Enrolled, NodeError> {
    let token = pki::JoinToken::parse(&opts.token).map_err(|e| NodeError::Input(e.to_string()))?;
    home.refuse_gateway_home().map_err(NodeError::Input)?;
    proto::names::validate_name(&opts.name)
        .map_err(|e| NodeError::Input(format!("invalid --name: {e}")))?;
    let labels = proto::names::normalize_labels(&opts.labels)
        .map_err(|e| NodeError::Input(format!("invalid --labels: {e}")))?;
    if home.exists(node_files::CERT) {
        let existing = NodeConfig::load(home).map(|c| c.name).unwrap_or_default();
        return Err(NodeError::Input(format!(
            "{} already holds an enrolled node ({existing}); use another --home, or remove that directory to enroll again",
            home.root().display()
        )));
    }
    home.create()?;
    let key_pem = if home.exists(node_files::KEY) {
        home.read_private(node_files::KEY, "")?
    } else {
        let key = pki::generate_key().map_err(|e| NodeError::Home(e.to_string()))?;
        home.write_private(node_files::KEY, key.key_pem.as_bytes())?;
        key.key_pem
    };
    let csr_der =
        pki::make_csr(&opts.name, &key_pem).map_err(|e| NodeError::Home(e.to_string()))?;
    let fingerprint = pki::check_csr(&csr_der, &opts.name)
        .map_err(|e| NodeError::Home(e.to_string()))?
        .fingerprint;

    let gateway = opts
        .gateway
        .clone()
        .unwrap_or_else(|| token.gateway.clone());
    let first = mesh::gateway_list(&gateway)
        .first()
        .map(|a| a.to_string())
        .ok_or_else(|| NodeError::Input("the token names no gateway".into()))?;
    let remote = mesh::resolve(&first)
        .await
        .map_err(NodeError::Unreachable)?;
    let endpoint = mesh::client_endpoint(remote).map_err(NodeError::Unreachable)?;
    let transport = mesh::tls::client_transport(Duration::from_secs(1), Duration::from_secs(5))
        .map_err(|e| NodeError::Home(e.to_string()))?;
    let (config, check) = mesh::tls::enroll_client_config(token.ca_pin, transport)
        .map_err(|e| NodeError::Home(e.to_string()))?;
    let mut dialer = Dialer {
        endpoint,
        config,
        check,
        gateway: gateway.clone(),
        conn: None,
    };

    // Resume a pending request from an earlier run with this home.
    let pending = home
        .read_text(node_files::PENDING, "")
        .ok()
        .and_then(|s| {
            s.split_once(' ')
                .map(|(n, id)| (n.to_string(), id.trim().to_string()))
        })
        .filter(|(n, _)| n == &opts.name)
        .map(|(_, id)| id);

    let deadline = Instant::now() + opts.wait;
    let mut reply = match pending {
        Some(request_id) => {
            say(format!(
                "resuming the pending enrollment of {} (key {fingerprint})",
                opts.name
            ));
            dialer.ask(&EnrollRequest::Poll { request_id }).await?
        }
        None => {
            let submit = EnrollSubmit {
                token_id: token.id.clone(),
                token_secret: token.secret.expose().to_string(),
                name: opts.name.clone(),
                labels: labels.clone(),
                csr_der,
            };
            dialer.ask(&EnrollRequest::Submit(submit)).await?
        }
    };
    let mut announced = false;
    let mut attempt = 0u32;
    loop {
        match reply {
            EnrollReply::Approved { cert_der, ca_der } => {
                // Keys the pinned CA vouched for in this handshake: during
                // a CA rotation, the new CA's twin, signed by the old one.
                let vouched: Vec<[u8; 32]> = dialer
                    .conn
                    .as_ref()
                    .and_then(|c| c.peer_identity())
                    .and_then(|id| {
                        id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                            .ok()
                    })
                    .map(|chain| {
                        chain
                            .iter()
                            .skip(1)
                            .filter_map(|c| pki::spki_pin(c).ok())
                            .collect()
                    })
                    .unwrap_or_default();
                let enrolled = store(
                    &vouched,
                    home,
                    opts,
                    &labels,
                    &gateway,
                    &token,
                    &fingerprint,
                    &cert_der,
                    &ca_der,
                )?;
                dialer.endpoint.close(0u32.into(), b"enrolled");
                return Ok(enrolled);
            }
            EnrollReply::Rejected { reason } => {
                let _ = std::fs::remove_file(home.path(node_files::PENDING));
                return Err(NodeError::Refused(format!(
                    "enrollment of {} rejected: {reason}",
                    opts.name
                )));
            }
            EnrollReply::Error(e) => {
                if e.code == proto::ErrorCode::NotFound {
                    let _ = std::fs::remove_file(home.path(node_files::PENDING));
                }
                return Err(NodeError::Refused(format!(
                    "gateway refused the enrollment: {}",
                    e.message
                )));
            }
            EnrollReply::Pending {
                ref request_id,
                fingerprint: ref fp,
                expires_in_secs,
            } => {
                if !announced {
                    home.write_private(
                        node_files::PENDING,
                        format!("{} {request_id}\n", opts.name).as_bytes(),
                    )?;
                    say(format!("enrollment request sent to {gateway}"));
                    say(format!("  node:        {}", opts.name));
                    say(format!("  fingerprint: {fp}"));
                    say(format!(
                        "waiting up to {} for approval (the request stays pending on the gateway for {}; \
                         run this again with the same --home to resume); on the gateway run:",
                        proto::duration::format(opts.wait),
                        proto::duration::format(Duration::from_secs(expires_in_secs))
                    ));
                    say(format!(
                        "  openclaw node approve {} --fingerprint {fp}",
                        opts.name
                    ));
                    announced = true;
                }
                if Instant::now() >= deadline {
                    return Err(NodeError::StillPending(format!(
                        "{} is still waiting for approval after {}; once an admin runs 'openclaw node approve {}', \
                         run this command again with the same --home to finish (the request stays pending)",
                        opts.name,
                        proto::duration::format(opts.wait),
                        opts.name
                    )));
                }
                tokio::time::sleep(
                    opts.poll_interval
                        .min(deadline.saturating_duration_since(Instant::now())),
                )
                .await;
                let poll = EnrollRequest::Poll {
                    request_id: request_id.clone(),
                };
                reply = loop {
                    match dialer.ask(&poll).await {
                        Ok(r) => {
                            attempt = 0;
                            break r;
                        }
                        Err(NodeError::Unreachable(msg)) if Instant::now() < deadline => {
                            tracing::warn!("{msg}; retrying");
                            tokio::time::sleep(
                                Backoff::default().delay(attempt, random_fraction()),
                            )
                            .await;
                            attempt = attempt.saturating_add(1);
                        }
                        Err(e) => return Err(e),
                    }
                };
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn store(
    vouched: &[[u8; 32]],
    home: &Home,
    opts: &EnrollOptions,
    labels: &[String],
    gateway: &str,
    token: &pki::JoinToken,
    fingerprint: &str,
    cert_der: &[u8],
    ca_der: &[u8],
) -> Result<Enrolled, NodeError> {
    let bad = |m: String| {
        NodeError::Refused(format!("the gateway returned an unusable certificate: {m}"))
    };
    let pin = pki::spki_pin(ca_der).map_err(|e| bad(e.to_string()))?;
    // The CA is the token's, or one the token's CA vouched for in the
    // handshake this reply came over (a rotation's new CA).
    let pinned = pki::constant_time_eq(&pin, &token.ca_pin);
    if !pinned && !vouched.iter().any(|v| pki::constant_time_eq(v, &pin)) {
        return Err(bad("its CA does not match the token's pin".into()));
    }
    let peer = pki::parse_peer_cert(cert_der).map_err(|e| bad(e.to_string()))?;
    if peer.name != opts.name || peer.role != Role::Node || peer.fingerprint != fingerprint {
        return Err(bad(format!(
            "it is for {} ({}, {}), not for this node's key",
            peer.name, peer.role, peer.fingerprint
        )));
    }
    home.write_public(
        node_files::CA,
        pki::der_to_pem(ca_der, "CERTIFICATE").as_bytes(),
    )?;
    home.write_public(
        node_files::CERT,
        pki::der_to_pem(cert_der, "CERTIFICATE").as_bytes(),
    )?;
    NodeConfig {
        name: opts.name.clone(),
        gateway: gateway.to_string(),
        nvml_lib: None,
        gpu_recover_after: None,
        gpu_fail_grace: None,
        labels: labels.to_vec(),
        run_as: opts.run_as.clone(),
        allow_jobs_as_agent_user: opts.allow_jobs_as_agent_user,
        job_uids: None,
        job_tmp_size: None,
        work_dir: None,
        keep_alive: None,
        idle_timeout: None,
        congestion_floor: None,
        udp_payload_max: None,
        policy: Default::default(),
    }
    .write(home)?;
    let _ = std::fs::remove_file(home.path(node_files::PENDING));
    Ok(Enrolled {
        name: peer.name,
        fingerprint: peer.fingerprint,
        not_after: peer.not_after,
    })
}
