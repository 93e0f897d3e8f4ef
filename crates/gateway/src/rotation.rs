//! CA rotation with overlap (`openclaw ca rotate --phase init|rotate|finish`).
//!
//! * **init**: a new CA is made, with a twin of it cross-signed by the
//!   current one. The gateway trusts client certificates of both; it still
//!   issues from the current CA. Nodes are told to trust both.
//! * **rotate**: the gateway issues from the new CA, its own server
//!   certificate included, and sends the chain *server, twin, old CA*: a
//!   peer that trusts only the old CA still verifies it, and join tokens
//!   pinning either CA still enroll. Connected nodes are told, and renew
//!   onto the new CA over their live connection (no job is interrupted);
//!   clients notice the new issuer when they connect, fetch the CAs and
//!   renew (`client::Client::connect`), and live client sessions other
//!   than the caller's are closed so that they reconnect and do so.
//! * **finish**: refused while an approved node or active client still
//!   holds a certificate of the old CA (unless forced). The old CA is
//!   dropped from trust and its key deleted; nodes are told to trust only
//!   the new one.
//!
//! The journal file [`files::ROTATION`] (0600: it holds both keys) is the
//! source of truth while a rotation runs. Each step writes it first and
//! then derives every other file from it ([`materialize`]), which start-up
//! repeats, so a crash between two writes heals on the next start.

use proto::{ApiError, CaRotationInfo, CaStep, ControlMsg, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::shared::Shared;
use crate::{GatewayError, SERVER_CERT_TTL, files};
use mesh::Home;

/// Where a rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// No rotation: one CA.
    Idle,
    /// Both CAs trusted; the current one issues.
    Init,
    /// Both CAs trusted; the new one issues.
    Rotate,
}

impl Phase {
    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Init => "init",
            Phase::Rotate => "rotate",
        }
    }
}

/// The phase `step` leads to from `phase`, or why it may not be taken.
/// Pure.
pub fn next_phase(phase: Phase, step: CaStep) -> Result<Phase, String> {
    match (phase, step) {
        (p, CaStep::Status) => Ok(p),
        (Phase::Idle, CaStep::Init) => Ok(Phase::Init),
        (Phase::Init, CaStep::Rotate) => Ok(Phase::Rotate),
        (Phase::Rotate, CaStep::Finish) => Ok(Phase::Idle),
        (Phase::Idle, _) => Err(
            "no CA rotation is in progress; start one with 'openclaw ca rotate --phase init'"
                .into(),
        ),
        (Phase::Init, CaStep::Init) => Err(
            "a CA rotation is already in its init phase; go on with 'openclaw ca rotate --phase rotate'"
                .into(),
        ),
        (Phase::Init, _) => Err(
            "the new CA does not issue yet; run 'openclaw ca rotate --phase rotate' before finish"
                .into(),
        ),
        (Phase::Rotate, _) => Err(
            "the new CA already issues; end the rotation with 'openclaw ca rotate --phase finish'"
                .into(),
        ),
    }
}

/// The rotation journal, as written to [`files::ROTATION`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Journal {
    /// `init` or `rotate`.
    phase: Phase,
    /// Unix seconds when init ran.
    started_at: u64,
    /// Unix seconds when rotate ran.
    rotated_at: Option<u64>,
    /// The CA being replaced: certificate and key PEM.
    old_cert: String,
    old_key: String,
    /// The new CA: certificate and key PEM.
    new_cert: String,
    new_key: String,
    /// The new CA cross-signed by the old one, PEM.
    cross: String,
}

/// The gateway's CAs as they are now.
pub(crate) struct CaState {
    /// The CA that signs certificates.
    pub issuing: pki::Ca,
    /// Where the rotation stands.
    pub phase: Phase,
    /// Trusted CA certificates, DER, the issuing one first.
    pub trust_der: Vec<Vec<u8>>,
    /// The same, PEM.
    pub trust_pem: String,
    started_at: Option<u64>,
    rotated_at: Option<u64>,
}

impl CaState {
    /// The issuing CA's pin as hex (what `issued_certs.ca` holds).
    pub fn issuing_pin_hex(&self) -> String {
        pki::hex(&self.issuing.pin())
    }

    /// The message that tells a node what to trust.
    pub fn trust_msg(&self) -> ControlMsg {
        ControlMsg::Trust {
            cas_der: self.trust_der.clone(),
        }
    }
}

/// What start-up and every step need: the CA state and the server's chain
/// and key for TLS.
pub(crate) struct Material {
    pub state: CaState,
    pub server_chain: String,
    pub server_key: String,
}

fn home_err(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Io(e.to_string())
}

fn read_journal(home: &Home) -> Result<Option<Journal>, GatewayError> {
    if !home.exists(files::ROTATION) {
        return Ok(None);
    }
    let text = home.read_private(files::ROTATION, "")?;
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| GatewayError::Config {
            path: home.path(files::ROTATION).display().to_string(),
            msg: format!(
                "{e}; this file records a CA rotation in progress: restore it from a backup, do not delete it"
            ),
        })
}

fn write_journal(home: &Home, j: &Journal) -> Result<(), GatewayError> {
    let body = toml::to_string(j).map_err(home_err)?;
    let text = format!(
        "# A CA rotation in progress ('openclaw ca status'). Holds both CA keys: keep it 0600.\n\
         # Written by the gateway; do not edit.\n{body}"
    );
    home.write_private(files::ROTATION, text.as_bytes())?;
    Ok(())
}

/// Reads `name` if it exists; a private one through [`Home::read_private`],
/// which refuses a key that group or others can read.
fn read_if_there(home: &Home, name: &str, private: bool) -> Result<Option<String>, GatewayError> {
    if !home.exists(name) {
        return Ok(None);
    }
    Ok(Some(if private {
        home.read_private(name, "")?
    } else {
        home.read_text(name, "")?
    }))
}

/// Writes `name` unless it already holds exactly `text`.
fn sync(home: &Home, name: &str, text: &str, private: bool) -> Result<(), GatewayError> {
    let current = read_if_there(home, name, private)?;
    if current.as_deref() == Some(text) {
        return Ok(());
    }
    if private {
        home.write_private(name, text.as_bytes())?;
    } else {
        home.write_public(name, text.as_bytes())?;
    }
    Ok(())
}

/// Derives the CA files and the server certificate from the journal (or,
/// with none, from `ca.crt`/`ca.key`), rewriting what differs, and returns
/// the state to serve with. Idempotent.
fn materialize(home: &Home, gateway_name: &str, now: u64) -> Result<Material, GatewayError> {
    let hint = "this home has no gateway CA; run 'openclaw gateway init' first";
    let journal = read_journal(home)?;
    let (ca_pem, ca_key, others, tail, phase) = match &journal {
        None => {
            let mut ca_pem = home.read_text(files::CA_CERT, hint)?;
            // One CA outside a rotation: a longer file is cut to its first.
            if mesh::tls::parse_certs(&ca_pem).is_ok_and(|c| c.len() > 1) {
                ca_pem = pki::der_to_pem(&pki::pem_to_der(&ca_pem, "CERTIFICATE")?, "CERTIFICATE");
            }
            let ca_key = home.read_private(files::CA_KEY, hint)?;
            let tail = ca_pem.clone();
            (ca_pem, ca_key, String::new(), tail, Phase::Idle)
        }
        Some(j) if j.phase == Phase::Init => (
            j.old_cert.clone(),
            j.old_key.clone(),
            j.new_cert.clone(),
            j.old_cert.clone(),
            Phase::Init,
        ),
        Some(j) => (
            j.new_cert.clone(),
            j.new_key.clone(),
            j.old_cert.clone(),
            format!("{}{}", j.cross, j.old_cert),
            Phase::Rotate,
        ),
    };
    let issuing = pki::Ca::load(&ca_pem, &ca_key)?;
    sync(home, files::CA_KEY, &ca_key, true)?;
    sync(home, files::CA_CERT, &ca_pem, false)?;

    // The server certificate: kept while the issuing CA signed it and its
    // key matches; issued anew otherwise.
    let chain = read_if_there(home, files::SERVER_CERT, false)?.unwrap_or_default();
    let key = read_if_there(home, files::SERVER_KEY, true)?.unwrap_or_default();
    let leaf_der = mesh::tls::parse_certs(&chain)
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|c| c.to_vec());
    let keep = leaf_der.as_deref().is_some_and(|der| {
        pki::issued_by(der, issuing.cert_der()).unwrap_or(false) && pki::key_matches_cert(&key, der)
    });
    let (leaf_pem, server_key) = match (keep, leaf_der) {
        (true, Some(der)) => (pki::der_to_pem(&der, "CERTIFICATE"), key),
        _ => {
            let (cert, key) = issuing.issue_server(gateway_name, SERVER_CERT_TTL.as_secs(), now)?;
            (cert.pem, key)
        }
    };
    let server_chain = format!("{leaf_pem}{tail}");
    // Key first: a crash between the two writes leaves a key that does not
    // match, which the next start notices and heals.
    sync(home, files::SERVER_KEY, &server_key, true)?;
    sync(home, files::SERVER_CERT, &server_chain, false)?;

    let trust_pem = format!("{ca_pem}{others}");
    let trust_der = mesh::tls::parse_certs(&trust_pem)
        .map_err(home_err)?
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    Ok(Material {
        state: CaState {
            issuing,
            phase,
            trust_der,
            trust_pem,
            started_at: journal.as_ref().map(|j| j.started_at),
            rotated_at: journal.as_ref().and_then(|j| j.rotated_at),
        },
        server_chain,
        server_key,
    })
}

/// The phase of a rotation in progress in `home` and when it started, or
/// `None` outside one (for `openclaw doctor`).
pub fn in_progress(home: &Home) -> Result<Option<(Phase, u64)>, GatewayError> {
    Ok(read_journal(home)?.map(|j| (j.phase, j.started_at)))
}

/// The command that moves a rotation in `phase` on.
pub fn next_command(phase: Phase) -> &'static str {
    match phase {
        Phase::Idle => "openclaw ca rotate --phase init",
        Phase::Init => "openclaw ca rotate --phase rotate",
        Phase::Rotate => "openclaw ca status, then openclaw ca rotate --phase finish",
    }
}

/// Loads the CA state at start-up, completing a step a crash interrupted.
pub(crate) fn load(home: &Home, gateway_name: &str, now: u64) -> Result<Material, GatewayError> {
    materialize(home, gateway_name, now)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

fn pin_text(der: &[u8]) -> String {
    pki::spki_pin(der)
        .map(|p| format!("sha256:{}", pki::hex(&p)))
        .unwrap_or_else(|_| "unreadable".into())
}

/// Where the rotation stands, with who still holds an old certificate.
fn info(shared: &Shared, state: &CaState, message: String) -> Result<CaRotationInfo, ApiError> {
    let (lagging_nodes, lagging_clients) = if state.phase == Phase::Idle {
        (Vec::new(), Vec::new())
    } else {
        let pin = state.issuing_pin_hex();
        shared.store.tx(|tx| tx.not_on_ca(&pin))?
    };
    Ok(CaRotationInfo {
        phase: state.phase.as_str().into(),
        issuing_pin: format!("sha256:{}", pki::hex(&state.issuing.pin())),
        trusted_pins: state.trust_der.iter().map(|d| pin_text(d)).collect(),
        started_at: state.started_at,
        rotated_at: state.rotated_at,
        lagging_nodes,
        lagging_clients,
        message,
    })
}

/// Names, at most ten, then how many more.
fn some_names(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(10)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 10 {
        s.push_str(&format!(" and {} more", names.len() - 10));
    }
    s
}

/// Serves the new material: new handshakes use it at once (connections
/// already open keep theirs), and every connected node is told what to
/// trust.
fn apply(shared: &Shared, m: Material) -> Result<(), ApiError> {
    let mut transport =
        mesh::tls::server_transport(shared.config().dead_after).map_err(internal)?;
    mesh::tls::set_udp_payload_max(&mut transport, shared.config().udp_payload_max);
    let config = mesh::tls::server_config(
        &m.server_chain,
        &m.server_key,
        &m.state.trust_pem,
        shared.revoked.clone(),
        transport,
    )
    .map_err(internal)?;
    if let Some(endpoint) = &shared.endpoint {
        endpoint.set_server_config(Some(config));
    }
    let msg = m.state.trust_msg();
    shared.set_ca(m.state);
    let told = shared.registry.broadcast(&msg);
    tracing::info!(nodes = told, "told connected nodes which CAs to trust");
    Ok(())
}

/// `ca status` and `ca rotate --phase …`. Runs off the async workers.
pub(crate) fn step(
    shared: &Shared,
    actor: &crate::peer::Peer,
    step: CaStep,
    force: bool,
) -> Result<CaRotationInfo, ApiError> {
    // One step at a time.
    let _guard = match shared.rotation_lock.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let state = shared.ca();
    let next = next_phase(state.phase, step)
        .map_err(|m| ApiError::new(ErrorCode::FailedPrecondition, m))?;
    if step == CaStep::Status {
        let msg = match state.phase {
            Phase::Idle => "one CA; no rotation in progress".to_string(),
            Phase::Init => "both CAs are trusted; the current one still issues. Next: 'openclaw ca rotate --phase rotate'".to_string(),
            Phase::Rotate => "the new CA issues; nodes renew onto it as they connect. Next: 'openclaw ca rotate --phase finish' once nothing lags".to_string(),
        };
        return info(shared, &state, msg);
    }
    let home = &shared.home;
    let name = shared.config().name.clone();
    let now = shared.clock.unix();
    let message = match (state.phase, next) {
        (Phase::Idle, Phase::Init) => {
            // The CA lives in each gateway's home, not in the shared state:
            // a rotation here leaves the standbys with the old CA key, and
            // a failover would bring it back.
            let others: Vec<String> = shared
                .store
                .tx(|tx| tx.gateways())?
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| *n != name)
                .collect();
            if !others.is_empty() && !force {
                return Err(ApiError::new(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "this gateway shares its state with {} ({}), and 'ca rotate' changes only this \
                         gateway's home: the standbys would keep the old CA key, and after finish they could \
                         not serve. Rotating a group of gateways is not supported yet; pass --force to rotate \
                         here anyway, then replace each standby with a new home made by 'openclaw gateway join \
                         --ca-from <this home>' under a new name once the rotation is finished (docs/HA.md)",
                        if others.len() == 1 {
                            "another gateway"
                        } else {
                            "other gateways"
                        },
                        some_names(&others)
                    ),
                ));
            }
            let old_cert = home.read_text(files::CA_CERT, "").map_err(internal)?;
            let old_key = home.read_private(files::CA_KEY, "").map_err(internal)?;
            let new = pki::generate_next_ca(&name, &state.issuing, now).map_err(internal)?;
            write_journal(
                home,
                &Journal {
                    phase: Phase::Init,
                    started_at: now,
                    rotated_at: None,
                    old_cert,
                    old_key,
                    new_cert: new.cert_pem,
                    new_key: new.key_pem,
                    cross: new.cross_pem,
                },
            )
            .map_err(internal)?;
            "made a new CA; both are trusted and nodes are told so. \
             Next: 'openclaw ca rotate --phase rotate'"
                .to_string()
        }
        (Phase::Init, Phase::Rotate) => {
            let mut j = read_journal(home)
                .map_err(internal)?
                .ok_or_else(|| internal("the rotation journal vanished"))?;
            j.phase = Phase::Rotate;
            j.rotated_at = Some(now);
            write_journal(home, &j).map_err(internal)?;
            "the new CA issues now, the gateway's certificate included; connected nodes renew \
             onto it, clients when they next connect, and new join tokens pin it (older tokens \
             enroll until finish). Next: 'openclaw ca status', then 'openclaw ca rotate --phase finish'"
                .to_string()
        }
        (Phase::Rotate, Phase::Idle) => {
            let (nodes, clients) = shared
                .store
                .tx(|tx| tx.not_on_ca(&state.issuing_pin_hex()))?;
            let clean = nodes.is_empty() && clients.is_empty();
            if !force && !clean {
                let mut why = Vec::new();
                if !nodes.is_empty() {
                    why.push(format!(
                        "nodes {} have not renewed onto the new CA (they renew when they connect; check 'openclaw node list')",
                        some_names(&nodes)
                    ));
                }
                if !clients.is_empty() {
                    why.push(format!(
                        "clients {} have not renewed (any command they run renews them, or 'openclaw client renew' in their home)",
                        some_names(&clients)
                    ));
                }
                return Err(ApiError::new(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "not finishing: {}. Finishing now locks them out; add --force to do it anyway, \
                         then re-enroll them",
                        why.join("; ")
                    ),
                ));
            }
            let j = read_journal(home)
                .map_err(internal)?
                .ok_or_else(|| internal("the rotation journal vanished"))?;
            // The old certificate stays on record; its key goes with the journal.
            home.write_public(&format!("ca-retired-{now}.crt"), j.old_cert.as_bytes())
                .map_err(internal)?;
            std::fs::remove_file(home.path(files::ROTATION))
                .map_err(|e| internal(format!("cannot remove the rotation journal: {e}")))?;
            let locked = nodes.len() + clients.len();
            if locked > 0 {
                format!(
                    "rotation finished; the old CA and its key are gone. {locked} credential(s) of the old CA \
                     no longer work: re-enroll those nodes ('openclaw token create') and reissue those clients"
                )
            } else {
                "rotation finished; the old CA and its key are gone, and nodes are told to trust only the new one"
                    .to_string()
            }
        }
        _ => return Err(internal("unexpected rotation step")),
    };
    let m = materialize(home, &name, now).map_err(internal)?;
    apply(shared, m)?;
    let state = shared.ca();
    if step == CaStep::Rotate {
        // Long-lived admin and bot sessions (a bot, a follower) reconnect,
        // and on connecting renew onto the new CA (client::Client::connect).
        // The caller's own session stays up for this reply.
        let serials = shared
            .store
            .tx(|tx| tx.client_serials_not_on_ca(&state.issuing_pin_hex()))?;
        let closed: usize = serials
            .iter()
            .filter(|s| **s != actor.serial)
            .map(|s| {
                shared.registry.close_serial(
                    s,
                    proto::CloseCode::Normal.code(),
                    "the gateway's CA was rotated; reconnect to renew onto the new CA",
                )
            })
            .sum();
        tracing::info!(
            closed,
            "closed client sessions so they renew onto the new CA"
        );
    }
    let _ = shared.store.tx(|tx| {
        tx.audit(
            now,
            &actor.name,
            &format!("ca.rotate.{}", step.as_str()),
            &name,
            &format!("issuing CA sha256:{}", pki::hex(&state.issuing.pin())),
        )
    });
    tracing::info!(
        step = step.as_str(),
        phase = state.phase.as_str(),
        "CA rotation step"
    );
    info(shared, &state, message)
}

/// The CAs to trust, for `Request::Trust`.
pub(crate) fn trust(shared: &Shared) -> Vec<Vec<u8>> {
    shared.ca().trust_der.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_in_order_only() {
        use CaStep::*;
        let table = [
            (Phase::Idle, Status, Ok(Phase::Idle)),
            (Phase::Idle, Init, Ok(Phase::Init)),
            (Phase::Idle, Rotate, Err("--phase init")),
            (Phase::Idle, Finish, Err("--phase init")),
            (Phase::Init, Init, Err("--phase rotate")),
            (Phase::Init, Rotate, Ok(Phase::Rotate)),
            (Phase::Init, Finish, Err("before finish")),
            (Phase::Rotate, Init, Err("--phase finish")),
            (Phase::Rotate, Rotate, Err("--phase finish")),
            (Phase::Rotate, Finish, Ok(Phase::Idle)),
            (Phase::Rotate, Status, Ok(Phase::Rotate)),
        ];
        for (phase, step, want) in table {
            match (next_phase(phase, step), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{phase:?} {step:?}"),
                (Err(m), Err(w)) => assert!(m.contains(w), "{phase:?} {step:?}: {m}"),
                (got, w) => panic!("{phase:?} {step:?}: got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn names_are_cut_at_ten() {
        let names: Vec<String> = (0..12).map(|i| format!("n{i}")).collect();
        assert_eq!(some_names(&names[..2]), "n0, n1");
        assert!(some_names(&names).ends_with("n9 and 2 more"));
    }

    /// Every step's files derive from the journal, and a crash that left a
    /// server key without its certificate heals on the next load.
    #[test]
    fn materialize_follows_the_journal_and_heals() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        crate::init(&home, "127.0.0.1:0", "gw", None).unwrap();
        let idle = materialize(&home, "gw", 1_800_000_000).unwrap();
        assert_eq!(idle.state.phase, Phase::Idle);
        assert_eq!(idle.state.trust_der.len(), 1);
        let old_pem = home.read_text(files::CA_CERT, "").unwrap();
        let old_key = home.read_private(files::CA_KEY, "").unwrap();
        let next = pki::generate_next_ca("gw", &idle.state.issuing, 1_800_000_000).unwrap();
        let mut j = Journal {
            phase: Phase::Init,
            started_at: 1,
            rotated_at: None,
            old_cert: old_pem.clone(),
            old_key,
            new_cert: next.cert_pem.clone(),
            new_key: next.key_pem.clone(),
            cross: next.cross_pem.clone(),
        };
        write_journal(&home, &j).unwrap();
        let init = materialize(&home, "gw", 1_800_000_000).unwrap();
        assert_eq!(init.state.phase, Phase::Init);
        assert_eq!(init.state.trust_der.len(), 2);
        assert_eq!(
            init.server_chain, idle.server_chain,
            "init keeps the server certificate"
        );

        j.phase = Phase::Rotate;
        j.rotated_at = Some(2);
        write_journal(&home, &j).unwrap();
        let rotated = materialize(&home, "gw", 1_800_000_000).unwrap();
        assert_eq!(home.read_text(files::CA_CERT, "").unwrap(), next.cert_pem);
        let chain = mesh::tls::parse_certs(&rotated.server_chain).unwrap();
        assert_eq!(chain.len(), 3, "server, twin, old CA");
        assert!(pki::issued_by(&chain[0], rotated.state.issuing.cert_der()).unwrap());
        // Loading again changes nothing.
        let again = materialize(&home, "gw", 1_800_000_000).unwrap();
        assert_eq!(again.server_chain, rotated.server_chain);
        // A crash after the key was written but before the certificate.
        let (_, stray_key) = rotated
            .state
            .issuing
            .issue_server("gw", 60, 1_800_000_000)
            .unwrap();
        home.write_private(files::SERVER_KEY, stray_key.as_bytes())
            .unwrap();
        let healed = materialize(&home, "gw", 1_800_000_000).unwrap();
        let leaf = mesh::tls::parse_certs(&healed.server_chain).unwrap();
        assert!(pki::key_matches_cert(&healed.server_key, &leaf[0]));

        // A key others can read is refused, as it was before rotation
        // existed, whether it is the server's or the CA's.
        use std::os::unix::fs::PermissionsExt as _;
        for name in [files::SERVER_KEY, files::CA_KEY] {
            let path = home.path(name);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = materialize(&home, "gw", 1_800_000_000).err().unwrap();
            assert!(e.to_string().contains("readable"), "{name}: {e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }

        std::fs::remove_file(home.path(files::ROTATION)).unwrap();
        let done = materialize(&home, "gw", 1_800_000_000).unwrap();
        assert_eq!(done.state.phase, Phase::Idle);
        assert_eq!(done.state.trust_der.len(), 1);
        assert_eq!(mesh::tls::parse_certs(&done.server_chain).unwrap().len(), 2);
    }
}
