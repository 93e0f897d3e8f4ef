//! Turning QUIC and TLS failures into sentences a user can act on.

use proto::CloseCode;

/// TLS alert numbers we map (RFC 8446 section 6).
mod alert {
    pub const BAD_CERTIFICATE: u64 = 42;
    pub const UNSUPPORTED_CERTIFICATE: u64 = 43;
    pub const CERTIFICATE_REVOKED: u64 = 44;
    pub const CERTIFICATE_EXPIRED: u64 = 45;
    pub const CERTIFICATE_UNKNOWN: u64 = 46;
    pub const UNKNOWN_CA: u64 = 48;
    pub const DECRYPT_ERROR: u64 = 51;
    pub const NO_APPLICATION_PROTOCOL: u64 = 120;
    pub const CERTIFICATE_REQUIRED: u64 = 116;
}

/// Why the gateway ended or refused a connection, in a form code can branch on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Our certificate is revoked.
    Revoked,
    /// Our certificate has expired.
    Expired,
    /// Our certificate is not signed by the gateway's CA.
    UnknownCa,
    /// Another connection with our identity replaced this one.
    Replaced,
    /// The gateway does not know us as an approved node.
    NotApproved,
    /// The gateway is shutting down.
    Shutdown,
    /// The gateway refused the connection before any handshake (QUIC
    /// CONNECTION_REFUSED): a standby waiting for the leader's lease.
    Standby,
    /// Anything else.
    Other,
}

/// Classifies a connection error.
pub fn refusal(err: &quinn::ConnectionError) -> Refusal {
    match err {
        quinn::ConnectionError::ConnectionClosed(c) => {
            let code = u64::from(c.error_code);
            match code.checked_sub(0x100) {
                Some(alert::CERTIFICATE_REVOKED) => Refusal::Revoked,
                Some(alert::CERTIFICATE_EXPIRED) => Refusal::Expired,
                // A CA with the same name but another key shows up as a bad signature.
                Some(alert::UNKNOWN_CA | alert::DECRYPT_ERROR) => Refusal::UnknownCa,
                _ if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED => {
                    Refusal::Standby
                }
                _ => Refusal::Other,
            }
        }
        quinn::ConnectionError::ApplicationClosed(a) => {
            match CloseCode::from_code(a.error_code.into_inner()) {
                Some(CloseCode::Revoked) => Refusal::Revoked,
                Some(CloseCode::Replaced) => Refusal::Replaced,
                Some(CloseCode::NotApproved) => Refusal::NotApproved,
                Some(CloseCode::Shutdown) => Refusal::Shutdown,
                _ => Refusal::Other,
            }
        }
        _ => Refusal::Other,
    }
}

/// Describes why a connection to the gateway failed or ended.
pub fn describe_connection_error(err: &quinn::ConnectionError) -> String {
    match err {
        quinn::ConnectionError::ConnectionClosed(c) => {
            let code = u64::from(c.error_code);
            let reason = String::from_utf8_lossy(&c.reason);
            match code.checked_sub(0x100) {
                Some(a) if code < 0x200 => describe_alert(a, &reason),
                _ => format!("gateway closed the connection: {c}"),
            }
        }
        quinn::ConnectionError::ApplicationClosed(a) => {
            let reason = String::from_utf8_lossy(&a.reason);
            match CloseCode::from_code(a.error_code.into_inner()) {
                Some(CloseCode::Revoked) => format!(
                    "gateway rejected this certificate: revoked ({reason}); a node enrolls again with a new token, \
                     a client asks an admin for a new credential ('openclaw client create')"
                ),
                Some(CloseCode::Busy) => format!("gateway is busy: {reason}"),
                Some(CloseCode::Replaced) => format!(
                    "another process connected with this node's certificate and replaced this connection ({reason})"
                ),
                Some(CloseCode::NoClientCert) => {
                    format!("gateway requires a client certificate: {reason}")
                }
                Some(CloseCode::NotApproved) => {
                    format!("gateway refused this certificate: {reason}")
                }
                Some(CloseCode::Protocol) => {
                    format!("gateway closed the connection for a protocol error: {reason}")
                }
                Some(CloseCode::Shutdown) => "gateway is shutting down".to_string(),
                Some(CloseCode::Dead) => format!("gateway dropped this connection: {reason}"),
                Some(CloseCode::Normal) | None => {
                    format!("gateway closed the connection: {reason}")
                }
            }
        }
        quinn::ConnectionError::TimedOut => {
            "gateway did not answer (timed out); check that it is running and reachable over UDP"
                .to_string()
        }
        quinn::ConnectionError::TransportError(e) => {
            let code = u64::from(e.code);
            match code.checked_sub(0x100) {
                Some(a) if code < 0x200 => describe_local_alert(a, &e.reason),
                _ => format!("QUIC transport error: {e}"),
            }
        }
        quinn::ConnectionError::Reset => {
            "gateway reset the connection (it may have restarted)".into()
        }
        quinn::ConnectionError::VersionMismatch => {
            "gateway speaks no compatible QUIC version".into()
        }
        quinn::ConnectionError::LocallyClosed => "connection closed locally".into(),
        quinn::ConnectionError::CidsExhausted => "QUIC connection ids exhausted".into(),
    }
}

fn describe_alert(alert: u64, reason: &str) -> String {
    match alert {
        alert::CERTIFICATE_REVOKED => {
            "gateway rejected this certificate: revoked; a node enrolls again with a new token, \
             a client asks an admin for a new credential ('openclaw client create')"
                .into()
        }
        alert::CERTIFICATE_EXPIRED => {
            "gateway rejected this certificate: expired; enroll again with a new token (openclaw node enroll)".into()
        }
        alert::UNKNOWN_CA | alert::DECRYPT_ERROR => {
            "gateway rejected this certificate: issued by a different CA; this home was enrolled with another gateway".into()
        }
        alert::BAD_CERTIFICATE | alert::UNSUPPORTED_CERTIFICATE | alert::CERTIFICATE_UNKNOWN => {
            format!("gateway rejected this certificate ({reason})")
        }
        alert::CERTIFICATE_REQUIRED => "gateway requires a client certificate".into(),
        alert::NO_APPLICATION_PROTOCOL => {
            "the gateway does not speak this openclaw's protocol version (ALPN mismatch); upgrade \
             the older of the two: a gateway serves its own version and the previous one, so \
             upgrade the gateway first, then nodes and clients"
                .into()
        }
        _ => format!("TLS handshake failed (alert {alert}): {reason}"),
    }
}

fn describe_local_alert(alert: u64, reason: &str) -> String {
    match alert {
        alert::UNKNOWN_CA
        | alert::BAD_CERTIFICATE
        | alert::DECRYPT_ERROR
        | alert::CERTIFICATE_UNKNOWN => {
            format!("the gateway's certificate was not accepted: {reason}")
        }
        alert::CERTIFICATE_EXPIRED => format!("the gateway's certificate has expired: {reason}"),
        _ => format!("TLS handshake failed (alert {alert}): {reason}"),
    }
}
