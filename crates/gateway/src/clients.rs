//! Admin and bot credentials as identities of their own: unique names,
//! listed, revocable within a second on live sessions, renewable, and
//! checked against the state on every session (not only by the CA's
//! signature).

use std::time::Duration;

use proto::{ApiError, ClientInfo, CloseCode, ErrorCode, Response, Role};

use crate::jobs;
use crate::peer::Peer;
use crate::shared::Shared;
use crate::store::{ClientRow, ClientState};

/// Longest lifetime a client certificate may be given.
const MAX_CLIENT_TTL: Duration = Duration::from_secs(365 * 86_400);

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, m)
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no client named {name:?}; run 'openclaw client list'"),
    )
}

/// What a session of an admin or bot certificate may be, per the state.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionCheck {
    /// The credential is current: go on, with the bot's namespace if any.
    Ok(Option<String>),
    /// Refuse it with this close code and sentence.
    Refuse(CloseCode, String),
}

/// Decides whether an admin or bot certificate may open a session. Pure.
pub fn check_session(
    row: Option<&ClientRow>,
    name: &str,
    role: Role,
    serial: &str,
) -> SessionCheck {
    let Some(row) = row else {
        return SessionCheck::Refuse(
            CloseCode::NotApproved,
            format!(
                "client {name} is not known to this gateway; ask an admin for a credential ('openclaw client create')"
            ),
        );
    };
    if row.state == ClientState::Revoked {
        return SessionCheck::Refuse(
            CloseCode::Revoked,
            format!("client {name} was revoked; ask an admin for a new credential"),
        );
    }
    if row.role != role || row.cert_serial != serial {
        return SessionCheck::Refuse(
            CloseCode::NotApproved,
            format!(
                "this certificate for {name} was replaced by a newer one; use the current credential or ask an admin"
            ),
        );
    }
    SessionCheck::Ok(row.namespace.clone())
}

/// `client create`: signs a credential for a CSR the caller made.
pub fn issue(
    shared: &Shared,
    peer: &Peer,
    name: &str,
    role: Role,
    namespace: Option<String>,
    ttl_secs: Option<u64>,
    csr_der: &[u8],
) -> Result<Response, ApiError> {
    proto::names::validate_name(name).map_err(|e| invalid(format!("invalid client name: {e}")))?;
    match role {
        Role::Node => {
            return Err(invalid(
                "nodes get certificates by enrolling ('openclaw node enroll'), not as clients",
            ));
        }
        Role::Bot => {
            let Some(ns) = &namespace else {
                return Err(invalid(
                    "a bot needs --namespace, the chat namespace it speaks for, e.g. slack:T0123ABCD (your Slack team id), wecom:CORPID or weixin:BOT (as `openclaw weixin login` prints it)",
                ));
            };
            proto::identity::validate_namespace(ns).map_err(invalid)?;
        }
        Role::Admin | Role::User if namespace.is_some() => {
            return Err(invalid(
                "--namespace is for bots; admins and users act only as themselves",
            ));
        }
        Role::Admin | Role::User => {}
    }
    let ttl = match ttl_secs {
        Some(t) if t < 60 || t > MAX_CLIENT_TTL.as_secs() => {
            return Err(invalid("--ttl must be between 1m and 365d"));
        }
        Some(t) => t,
        None => shared.config().client_cert_ttl.as_secs(),
    };
    let csr = pki::check_csr(csr_der, name).map_err(|e| invalid(e.to_string()))?;
    let now = shared.clock.unix();
    let cert = shared.store.tx(|tx| {
        if let Some(existing) = tx.client(name)?
            && existing.state == ClientState::Active
        {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "a client named {name} already exists ({}); client names are unique. \
                     Pick another name, or run 'openclaw client revoke {name}' first",
                    existing.role
                ),
            ));
        }
        if tx.node(name)?.is_some() {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("{name} is a node's name; pick another name for the client"),
            ));
        }
        if crate::enroll::is_gateway_name(shared, tx, name)? {
            return Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("{name} is a gateway's name; pick another name for the client"),
            ));
        }
        let cert = shared
            .ca()
            .issuing
            .issue_client(name, role, &csr.spki_der, ttl, now)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        tx.record_issued(name, role, &cert, now)?;
        tx.put_client(&ClientRow {
            name: name.to_string(),
            role,
            namespace: namespace.clone(),
            state: ClientState::Active,
            cert_serial: cert.serial.clone(),
            not_after: cert.not_after,
            created_at: now,
            created_by: peer.name.clone(),
        })?;
        tx.audit(
            now,
            &peer.name,
            "client.issue",
            name,
            &format!(
                "role {role}, namespace {namespace:?}, serial {}",
                cert.serial
            ),
        )?;
        Ok::<_, ApiError>(cert)
    })?;
    Ok(Response::ClientIssued {
        cert_der: cert.der,
        ca_der: shared.ca().issuing.cert_der().to_vec(),
    })
}

/// `client list`.
pub fn list(shared: &Shared) -> Result<Response, ApiError> {
    let rows = shared.store.tx(|tx| tx.clients())?;
    Ok(Response::Clients(
        rows.into_iter()
            .map(|c| ClientInfo {
                connections: u32::try_from(shared.registry.sessions(&c.cert_serial))
                    .unwrap_or(u32::MAX),
                name: c.name,
                role: c.role,
                namespace: c.namespace,
                state: c.state.as_str().into(),
                serial: c.cert_serial,
                not_after: c.not_after,
                created_at: c.created_at,
                created_by: c.created_by,
            })
            .collect(),
    ))
}

/// `client revoke`: refuse the serial in every handshake, close every live
/// session of it, and cancel the jobs it submitted that have not started.
pub fn revoke(shared: &Shared, peer: &Peer, name: &str) -> Result<Response, ApiError> {
    let now = shared.clock.unix();
    let row = shared.store.tx(|tx| {
        let row = tx.client(name)?.ok_or_else(|| not_found(name))?;
        if row.state == ClientState::Revoked {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                format!("client {name} is already revoked"),
            ));
        }
        let admins = tx
            .clients()?
            .iter()
            .filter(|c| c.role == Role::Admin && c.state == ClientState::Active)
            .count();
        if row.role == Role::Admin && admins <= 1 {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "{name} is the last active admin credential; revoking it would lock everyone out. \
                     Create another first ('openclaw client create NAME --out DIR')"
                ),
            ));
        }
        tx.revoke_client(name, now)?;
        tx.revoke_serial(&row.cert_serial, name, now)?;
        tx.audit(now, &peer.name, "client.revoke", name, &row.cert_serial)?;
        Ok::<_, ApiError>(row)
    })?;
    shared.revoked.insert(&row.cert_serial);
    let closed = shared.registry.close_serial(
        &row.cert_serial,
        CloseCode::Revoked.code(),
        &format!("client {name} was revoked by {}", peer.name),
    );
    let cancelled = jobs::end_for_revoked(shared, None, Some(name));
    tracing::info!(client = %name, by = %peer.name, closed, cancelled, "client revoked");
    Ok(Response::Done {
        message: format!(
            "revoked client {name}; {closed} live connection(s) closed, {cancelled} job(s) that had not started cancelled"
        ),
    })
}

/// `client renew`: a new certificate for the caller's own name and key.
pub fn renew(shared: &Shared, peer: &Peer, csr_der: &[u8]) -> Result<Response, ApiError> {
    let name = peer.name.as_str();
    let csr = pki::check_csr(csr_der, name).map_err(|e| invalid(e.to_string()))?;
    let now = shared.clock.unix();
    let cert = shared.store.tx(|tx| {
        let row = tx.client(name)?.ok_or_else(|| not_found(name))?;
        if row.state != ClientState::Active || row.cert_serial != peer.serial {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("client {name} may renew only its current certificate"),
            ));
        }
        let cert = shared
            .ca()
            .issuing
            .issue_client(
                name,
                peer.role,
                &csr.spki_der,
                shared.config().client_cert_ttl.as_secs(),
                now,
            )
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        tx.record_issued(name, peer.role, &cert, now)?;
        tx.renew_client(name, &cert.serial, cert.not_after)?;
        // The old certificate stops working at once.
        tx.revoke_serial(&peer.serial, name, now)?;
        tx.audit(
            now,
            name,
            "client.renew",
            name,
            &format!("serial {} replaces {}", cert.serial, peer.serial),
        )?;
        Ok::<_, ApiError>(cert)
    })?;
    shared.revoked.insert(&peer.serial);
    Ok(Response::ClientIssued {
        cert_der: cert.der,
        ca_der: shared.ca().issuing.cert_der().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: ClientState) -> ClientRow {
        ClientRow {
            name: "moltbot".into(),
            role: Role::Bot,
            namespace: Some("slack:T0LAB".into()),
            state,
            cert_serial: "0a".into(),
            not_after: 0,
            created_at: 0,
            created_by: "admin".into(),
        }
    }

    #[test]
    fn sessions_need_the_current_active_credential() {
        let active = row(ClientState::Active);
        assert_eq!(
            check_session(Some(&active), "moltbot", Role::Bot, "0a"),
            SessionCheck::Ok(Some("slack:T0LAB".into()))
        );
        let cases = [
            (None, Role::Bot, "0a", "not known"),
            (Some(row(ClientState::Revoked)), Role::Bot, "0a", "revoked"),
            (Some(active.clone()), Role::Bot, "0b", "replaced"),
            (Some(active.clone()), Role::Admin, "0a", "replaced"),
        ];
        for (r, role, serial, want) in cases {
            match check_session(r.as_ref(), "moltbot", role, serial) {
                SessionCheck::Refuse(_, m) => assert!(m.contains(want), "{m}"),
                ok => panic!("{ok:?}"),
            }
        }
    }
}
