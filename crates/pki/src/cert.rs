//! Parsing of peer certificates after TLS has verified them.

use proto::Role;
use x509_parser::prelude::*;

use crate::{PkiError, fingerprint, hex};

/// Who a verified peer is, read from its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// Subject CN: the node or client name.
    pub name: String,
    /// Subject OU: the role the CA granted.
    pub role: Role,
    /// Serial as lowercase hex.
    pub serial: String,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// Fingerprint of the subject key.
    pub fingerprint: String,
}

/// The gateway name in a gateway's server certificate (its subject CN,
/// with OU `gateway`); `None` for anything else.
pub fn gateway_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let ou = subject.iter_organizational_unit().next()?.as_str().ok()?;
    if ou != "gateway" {
        return None;
    }
    let name = subject.iter_common_name().next()?.as_str().ok()?;
    proto::names::validate_name(name).ok()?;
    Some(name.to_string())
}

/// Reads name, role, serial and validity from a client certificate issued by
/// [`crate::Ca::issue_client`]. Refuses certificates whose name or role is
/// not one we issue.
pub fn parse_peer_cert(der: &[u8]) -> Result<PeerCert, PkiError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::Cert(format!("unparseable: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Cert("trailing bytes after certificate".into()));
    }
    let subject = cert.subject();
    let mut cns = subject.iter_common_name();
    let name = cns
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or_else(|| PkiError::Cert("no subject common name".into()))?
        .to_string();
    if cns.next().is_some() {
        return Err(PkiError::Cert("more than one subject common name".into()));
    }
    proto::names::validate_name(&name).map_err(PkiError::Cert)?;
    let mut ous = subject.iter_organizational_unit();
    let role_str = ous
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or_else(|| PkiError::Cert("no role (subject OU)".into()))?;
    if ous.next().is_some() {
        return Err(PkiError::Cert("more than one role (subject OU)".into()));
    }
    let role = Role::parse(role_str)
        .ok_or_else(|| PkiError::Cert(format!("unknown role {role_str:?}")))?;
    let validity = cert.validity();
    let ts = |t: &ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
    Ok(PeerCert {
        name,
        role,
        serial: hex(cert.raw_serial()),
        not_before: ts(&validity.not_before),
        not_after: ts(&validity.not_after),
        fingerprint: fingerprint(cert.public_key().raw),
    })
}

/// The serial of any certificate, as lowercase hex.
pub fn serial_of(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::Cert(format!("unparseable: {e}")))?;
    Ok(hex(cert.raw_serial()))
}

/// Whether `cert_der` names `ca_der`'s subject as its issuer: which CA
/// signed it, among CAs whose names are unique (each carries a random tag).
/// Comparing the raw DER is what certificate path building does.
pub fn issued_by(cert_der: &[u8], ca_der: &[u8]) -> Result<bool, PkiError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| PkiError::Cert(format!("unparseable: {e}")))?;
    let (_, ca) = X509Certificate::from_der(ca_der)
        .map_err(|e| PkiError::Cert(format!("unparseable CA: {e}")))?;
    Ok(cert.issuer().as_raw() == ca.subject().as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused() {
        assert!(parse_peer_cert(&[]).is_err());
        assert!(parse_peer_cert(&[0x30, 0x82, 0xff, 0xff]).is_err());
        assert!(serial_of(b"not a cert").is_err());
    }
}
