//! The enrollment ALPN: token check, CSR check, pending requests, signing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::{ApiError, CloseCode, EnrollReply, EnrollRequest, EnrollSubmit, ErrorCode, Role};

use crate::rules::{self, Collision};
use crate::shared::Shared;
use crate::store::{NodeRow, NodeState, StoreError, Tx};

/// Enrollment frames are small: a CSR is at most 4 KiB.
pub const ENROLL_FRAME_LIMIT: usize = 16 * 1024;

impl From<StoreError> for ApiError {
    /// The one place a store error becomes an answer, by kind.
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Fenced { .. } => {
                tracing::warn!(error = %e, "a write was refused: this gateway no longer leads");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "this gateway no longer leads; try again (clients with the gateway list reach the new leader)",
                )
            }
            StoreError::Busy(_) | StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "state database unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the gateway's state database is busy or unreachable; try again in a moment",
                )
            }
            _ => {
                tracing::error!(error = %e, "state database error");
                ApiError::new(
                    ErrorCode::Internal,
                    "the gateway's state database failed; see the gateway log",
                )
            }
        }
    }
}

/// How long an enrollment connection may sit between requests.
const ENROLL_IDLE: Duration = Duration::from_secs(60);

/// Serves one enrollment connection: one request per bidirectional stream.
///
/// Nothing here is authenticated, so everything is bounded: the number of
/// enrollment connections open at once (a semaphore), new connections per
/// source address per minute, the time to send a request, the idle time
/// between requests, and (by the transport's initial limits) one stream
/// and 64 KiB of buffered data per connection.
pub async fn serve(shared: Arc<Shared>, conn: quinn::Connection) {
    let remote = conn.remote_address();
    let cfg = shared.config();
    if !shared.enroll_rate_ok(remote.ip()) {
        shared.metrics.enrollment("rate_limited");
        conn.close(
            CloseCode::Busy.code().into(),
            format!(
                "too many enrollment connections from {}; at most {} a minute (enrollment.rate_per_minute); try again later",
                remote.ip(),
                cfg.enroll_rate_per_minute
            )
            .as_bytes(),
        );
        return;
    }
    let Ok(_slot) = shared.enroll_slots.clone().try_acquire_owned() else {
        shared.metrics.enrollment("busy");
        conn.close(
            CloseCode::Busy.code().into(),
            b"the gateway is serving its maximum of enrollment connections (enrollment.max_connections); try again shortly",
        );
        return;
    };
    loop {
        let (mut send, mut recv) = match tokio::time::timeout(ENROLL_IDLE, conn.accept_bi()).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return,
            Err(_) => {
                conn.close(
                    CloseCode::Normal.code().into(),
                    b"idle enrollment connection",
                );
                return;
            }
        };
        let read = tokio::time::timeout(
            cfg.enroll_read_timeout,
            mesh::read_frame::<EnrollRequest>(&mut recv, ENROLL_FRAME_LIMIT),
        )
        .await;
        let read = match read {
            Ok(r) => r,
            Err(_) => {
                tracing::info!(%remote, "enrollment request not sent in time; closing");
                conn.close(
                    CloseCode::Protocol.code().into(),
                    format!(
                        "the enrollment request did not arrive within {} (enrollment.read_timeout)",
                        proto::duration::format(cfg.enroll_read_timeout)
                    )
                    .as_bytes(),
                );
                return;
            }
        };
        let reply = match read {
            Ok(Some(req)) => crate::shared::off_runtime(&shared, move |s| handle(s, req, remote))
                .await
                .unwrap_or_else(EnrollReply::Error),
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(%remote, error = %e, "bad enrollment frame");
                let reply = EnrollReply::Error(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("bad request: {e}"),
                ));
                let _ = mesh::write_frame(&mut send, &reply).await;
                let _ = send.finish();
                // Give the reply a moment to leave before closing.
                let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
                conn.close(
                    CloseCode::Protocol.code().into(),
                    format!("bad request: {e}").as_bytes(),
                );
                return;
            }
        };
        if mesh::write_frame(&mut send, &reply).await.is_err() {
            return;
        }
        let _ = send.finish();
    }
}

pub(crate) fn handle(shared: &Shared, req: EnrollRequest, remote: SocketAddr) -> EnrollReply {
    let result = match req {
        EnrollRequest::Submit(submit) => {
            let r = submit_request(shared, submit, remote);
            shared.metrics.enrollment(match &r {
                Ok(EnrollReply::Approved { .. }) => "auto_approved",
                Ok(_) => "pending",
                Err(_) => "refused",
            });
            r
        }
        EnrollRequest::Poll { request_id } => poll(shared, &request_id),
    };
    result.unwrap_or_else(EnrollReply::Error)
}

fn submit_request(
    shared: &Shared,
    s: EnrollSubmit,
    remote: SocketAddr,
) -> Result<EnrollReply, ApiError> {
    let now = shared.clock.unix();
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidArgument, m);
    shared.store.tx(|tx| {
        sweep(shared, tx, now)?;
        let token = tx.token(&s.token_id)?;
        rules::check_token(token.as_ref(), &s.token_id, &s.token_secret, now)?;
        let Some(token) = token else {
            return Err(ApiError::new(ErrorCode::Internal, "token vanished"));
        };
        proto::names::validate_name(&s.name).map_err(|e| invalid(format!("invalid node name: {e}")))?;
        // Labels come from the token; what the node asks for beyond them is
        // only a proposal until an admin confirms it ('node approve --labels').
        let asked = proto::names::normalize_labels(&s.labels).map_err(|e| invalid(format!("invalid labels: {e}")))?;
        let labels = token.labels.clone();
        let proposed: Vec<String> = asked.into_iter().filter(|l| !labels.contains(l)).collect();
        let csr = pki::check_csr(&s.csr_der, &s.name).map_err(|e| invalid(e.to_string()))?;
        let existing = tx.node(&s.name)?;
        let taken = taken_name(shared, tx, &s.name)?;
        if rules::check_collision(existing.as_ref(), taken, &s.name, &csr.fingerprint)? == Collision::SamePending {
            let Some(n) = existing else {
                return Err(ApiError::new(ErrorCode::Internal, "pending request vanished"));
            };
            return Ok(pending_reply(shared, &n, now));
        }
        if !token.auto_approve && tx.pending_count()? >= shared.config().max_pending {
            return Err(ApiError::new(
                ErrorCode::ResourceExhausted,
                format!(
                    "the gateway already holds {} pending enrollment requests; ask an admin to approve or reject some ('openclaw node list')",
                    shared.config().max_pending
                ),
            ));
        }
        tx.use_token(&token.id)?;
        let mut row = NodeRow {
            name: s.name.clone(),
            state: NodeState::Pending,
            labels,
            fingerprint: csr.fingerprint.clone(),
            spki: csr.spki_der,
            request_id: pki::random_alnum(32).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?,
            requested_at: now,
            request_addr: remote.to_string(),
            token_id: token.id.clone(),
            cert_der: None,
            cert_serial: None,
            cert_not_after: None,
            last_seen: None,
            last_addr: None,
            proposed_labels: proposed,
            // An auto-approved node offers no GPUs unless its token allows them.
            max_gpus: token.max_gpus.or(token.auto_approve.then_some(0)),
        };
        tx.put_node(&row)?;
        let actor = format!("token:{}", token.id);
        tx.audit(now, &actor, "node.enroll", &s.name, &format!("from {remote}, key {}", csr.fingerprint))?;
        tracing::info!(node = %s.name, fingerprint = %csr.fingerprint, %remote, "enrollment request");
        if token.auto_approve {
            issue_node_cert(shared, tx, &mut row, &actor, now)?;
            return Ok(EnrollReply::Approved {
                cert_der: row.cert_der.unwrap_or_default(),
                ca_der: shared.ca().issuing.cert_der().to_vec(),
            });
        }
        Ok(pending_reply(shared, &row, now))
    })
}

/// Whether a client or a gateway already holds `name` (node, client and
/// gateway names are one namespace).
pub fn taken_name(
    shared: &Shared,
    tx: &Tx<'_>,
    name: &str,
) -> Result<Option<rules::Taken>, StoreError> {
    if tx.client(name)?.is_some() {
        return Ok(Some(rules::Taken::Client));
    }
    Ok(is_gateway_name(shared, tx, name)?.then_some(rules::Taken::Gateway))
}

/// Whether `name` is this gateway's or a registered standby's.
pub fn is_gateway_name(shared: &Shared, tx: &Tx<'_>, name: &str) -> Result<bool, StoreError> {
    Ok(name == shared.config().name || tx.gateways()?.iter().any(|(g, _)| g == name))
}

fn pending_reply(shared: &Shared, n: &NodeRow, now: u64) -> EnrollReply {
    EnrollReply::Pending {
        request_id: n.request_id.clone(),
        fingerprint: n.fingerprint.clone(),
        expires_in_secs: (n.requested_at + shared.config().pending_ttl.as_secs())
            .saturating_sub(now),
    }
}

/// Deletes pending requests past their time.
pub fn sweep(shared: &Shared, tx: &Tx<'_>, now: u64) -> Result<(), StoreError> {
    let cutoff = now.saturating_sub(shared.config().pending_ttl.as_secs());
    for name in tx.expire_pending(cutoff)? {
        tx.audit(
            now,
            "gateway",
            "node.expire",
            &name,
            "pending request expired",
        )?;
        tracing::info!(node = %name, "pending enrollment request expired");
    }
    Ok(())
}

/// Signs a node certificate for an approved row and records it.
pub fn issue_node_cert(
    shared: &Shared,
    tx: &Tx<'_>,
    row: &mut NodeRow,
    actor: &str,
    now: u64,
) -> Result<(), ApiError> {
    let cert = shared
        .ca()
        .issuing
        .issue_client(
            &row.name,
            Role::Node,
            &row.spki,
            shared.config().node_cert_ttl.as_secs(),
            now,
        )
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    tx.move_node(&row.name, row.state, NodeState::Approved, now, actor)?;
    tx.set_node_cert(&row.name, &cert)?;
    tx.record_issued(&row.name, Role::Node, &cert, now)?;
    tx.audit(
        now,
        actor,
        "node.approve",
        &row.name,
        &format!("serial {}", cert.serial),
    )?;
    row.state = NodeState::Approved;
    row.cert_serial = Some(cert.serial.clone());
    row.cert_not_after = Some(cert.not_after);
    row.cert_der = Some(cert.der);
    Ok(())
}

fn poll(shared: &Shared, request_id: &str) -> Result<EnrollReply, ApiError> {
    let now = shared.clock.unix();
    shared.store.tx(|tx| {
        sweep(shared, tx, now)?;
        let Some(n) = tx.node_by_request(request_id)? else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "enrollment request not found: it expired or was replaced; enroll again with a new token",
            ));
        };
        Ok(match n.state {
            NodeState::Pending => pending_reply(shared, &n, now),
            NodeState::Approved => EnrollReply::Approved {
                cert_der: n.cert_der.unwrap_or_default(),
                ca_der: shared.ca().issuing.cert_der().to_vec(),
            },
            NodeState::Rejected => EnrollReply::Rejected { reason: format!("an admin rejected the enrollment of {}", n.name) },
            NodeState::Revoked => EnrollReply::Rejected { reason: format!("node {} was revoked", n.name) },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_become_answers_by_kind() {
        let cases = [
            (
                StoreError::Fenced {
                    mine: 3,
                    now: Some(4),
                },
                ErrorCode::Unavailable,
                "no longer leads",
            ),
            (
                StoreError::Busy("locked".into()),
                ErrorCode::Unavailable,
                "busy",
            ),
            (
                StoreError::Unavailable("gone".into()),
                ErrorCode::Unavailable,
                "unreachable",
            ),
            (
                StoreError::Corrupt("job 1: bad plan".into()),
                ErrorCode::Internal,
                "see the gateway log",
            ),
        ];
        for (e, code, words) in cases {
            let a = ApiError::from(e);
            assert_eq!(a.code, code, "{}", a.message);
            assert!(a.message.contains(words), "{}", a.message);
            // Store internals never reach the caller.
            assert!(!a.message.contains("job 1"), "{}", a.message);
        }
    }
}
