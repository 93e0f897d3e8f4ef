//! The certificate authority: generation, loading and issuing.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber,
    SubjectPublicKeyInfo,
};
use time::OffsetDateTime;

use crate::{PkiError, fingerprint, random_bytes, sha256};
use proto::{GATEWAY_SERVER_NAME, Role};

/// How far back `not_before` is set, to tolerate clock skew between machines.
pub const BACKDATE_SECS: u64 = 300;
/// The CA's lifetime.
const CA_TTL_SECS: u64 = 10 * 365 * 86_400;

/// A freshly generated key pair.
pub struct GeneratedKey {
    /// PKCS#8 PEM of the private key.
    pub key_pem: String,
    /// SPKI DER of the public key.
    pub spki_der: Vec<u8>,
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// DER.
    pub der: Vec<u8>,
    /// PEM.
    pub pem: String,
    /// Serial as lowercase hex.
    pub serial: String,
    /// Unix seconds.
    pub not_after: u64,
    /// Fingerprint of the subject key.
    pub fingerprint: String,
    /// Pin (lowercase hex SHA-256 of the key) of the CA that signed it.
    pub ca_pin: String,
}

/// When a certificate valid from `not_before` to `not_after` should be
/// renewed: two thirds into its lifetime, counted from issuance (the
/// backdating for clock skew does not count).
pub fn renewal_due(not_before: u64, not_after: u64) -> u64 {
    let issued = (not_before + BACKDATE_SECS).min(not_after);
    issued + (not_after - issued) * 2 / 3
}

/// Generates an ECDSA P-256 key.
pub fn generate_key() -> Result<GeneratedKey, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    Ok(GeneratedKey {
        key_pem: key.serialize_pem(),
        spki_der: key.subject_public_key_info(),
    })
}

fn time_at(secs: u64) -> Result<OffsetDateTime, PkiError> {
    let secs = i64::try_from(secs).map_err(|_| PkiError::Generate("time out of range".into()))?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| PkiError::Generate(e.to_string()))
}

fn random_serial() -> Result<(SerialNumber, String), PkiError> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes)?;
    // Keep the DER INTEGER positive and 16 bytes long.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok((SerialNumber::from_slice(&bytes), crate::hex(&bytes)))
}

/// The parameters of a new CA for the gateway named `gateway_name`.
fn ca_params(gateway_name: &str, now: u64) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // A random suffix keeps two gateways of the same name (or two CAs of one
    // gateway, across a rotation) from issuing certificates that look alike
    // to a verifier matching issuers by name.
    let mut tag = [0u8; 4];
    random_bytes(&mut tag)?;
    dn.push(
        DnType::CommonName,
        format!("OpenClaw CA {gateway_name} {}", crate::hex(&tag)),
    );
    dn.push(DnType::OrganizationName, "OpenClaw");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = time_at(now.saturating_sub(BACKDATE_SECS))?;
    params.not_after = time_at(now + CA_TTL_SECS)?;
    params.serial_number = Some(random_serial()?.0);
    Ok(params)
}

/// Generates a new CA for the gateway named `gateway_name`. Returns the
/// CA certificate PEM and its private key PEM.
pub fn generate_ca(gateway_name: &str, now: u64) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    let cert = ca_params(gateway_name, now)?
        .self_signed(&key)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The CA that replaces another during a rotation.
#[derive(Debug, Clone)]
pub struct NextCa {
    /// The new CA's self-signed certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// The same subject and key, signed by the current CA: sent as an
    /// intermediate, it lets a peer that trusts only the current CA verify
    /// certificates the new one issues.
    pub cross_pem: String,
}

/// Generates the CA that will replace `current`, and its cross-signed twin.
pub fn generate_next_ca(gateway_name: &str, current: &Ca, now: u64) -> Result<NextCa, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    let mut params = ca_params(gateway_name, now)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    // The same parameters, so the subject's encoding is byte-identical; a
    // serial of its own.
    params.serial_number = Some(random_serial()?.0);
    params.use_authority_key_identifier_extension = true;
    let cross = params
        .signed_by(&key, &current.issuer)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    Ok(NextCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cross_pem: cross.pem(),
    })
}

/// A loaded CA that can issue certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    pin: [u8; 32],
}

impl Ca {
    /// Loads a CA from its certificate and key PEM.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Key(e.to_string()))?;
        let cert_der = pem_to_der(cert_pem, "CERTIFICATE")?;
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)
            .map_err(|e| PkiError::Cert(e.to_string()))?;
        let pin = spki_pin(&cert_der)?;
        Ok(Ca {
            issuer,
            cert_der,
            pin,
        })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// SHA-256 of the CA's SubjectPublicKeyInfo: what join tokens pin.
    pub fn pin(&self) -> [u8; 32] {
        self.pin
    }

    /// Issues the gateway's TLS server certificate for a fresh key.
    /// Returns the certificate and the key PEM.
    pub fn issue_server(
        &self,
        gateway_name: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<(IssuedCert, String), PkiError> {
        let key = generate_key()?;
        let mut params = CertificateParams::new(vec![GATEWAY_SERVER_NAME.to_string()])
            .map_err(|e| PkiError::Generate(e.to_string()))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, gateway_name);
        dn.push(DnType::OrganizationalUnitName, "gateway");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = self.sign(params, &key.spki_der, ttl_secs, now)?;
        Ok((cert, key.key_pem))
    }

    /// Issues a client certificate (node, admin or bot) for the public key
    /// `spki_der`. The caller has already checked the name and the request.
    pub fn issue_client(
        &self,
        name: &str,
        role: Role,
        spki_der: &[u8],
        ttl_secs: u64,
        now: u64,
    ) -> Result<IssuedCert, PkiError> {
        proto::names::validate_name(name).map_err(PkiError::Generate)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationalUnitName, role.as_str());
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, spki_der, ttl_secs, now)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        spki_der: &[u8],
        ttl_secs: u64,
        now: u64,
    ) -> Result<IssuedCert, PkiError> {
        let public = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| PkiError::Key(format!("unsupported public key: {e}")))?;
        let (serial, serial_hex) = random_serial()?;
        params.serial_number = Some(serial);
        params.not_before = time_at(now.saturating_sub(BACKDATE_SECS))?;
        let not_after = now.saturating_add(ttl_secs);
        params.not_after = time_at(not_after)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&public, &self.issuer)
            .map_err(|e| PkiError::Generate(e.to_string()))?;
        Ok(IssuedCert {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            serial: serial_hex,
            not_after,
            fingerprint: fingerprint(spki_der),
            ca_pin: crate::hex(&self.pin),
        })
    }
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo.
pub fn spki_pin(cert_der: &[u8]) -> Result<[u8; 32], PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| PkiError::Cert(e.to_string()))?;
    Ok(sha256(cert.tbs_certificate.subject_pki.raw))
}

/// Whether the private key `key_pem` belongs to the certificate `cert_der`.
pub fn key_matches_cert(key_pem: &str, cert_der: &[u8]) -> bool {
    let Ok(key) = KeyPair::from_pem(key_pem) else {
        return false;
    };
    x509_parser::parse_x509_certificate(cert_der)
        .is_ok_and(|(_, c)| c.tbs_certificate.subject_pki.raw == key.subject_public_key_info())
}

/// A certificate's subject and validity, for `openclaw doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    /// Subject, e.g. `CN=worker-gpu-01, OU=node`.
    pub subject: String,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
}

/// Subject and validity of the first certificate in `pem`.
pub fn cert_validity(pem: &str) -> Result<Validity, PkiError> {
    let der = pem_to_der(pem, "CERTIFICATE")?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Cert(e.to_string()))?;
    let v = cert.validity();
    let ts = |t: &x509_parser::time::ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
    Ok(Validity {
        subject: cert.subject().to_string(),
        not_before: ts(&v.not_before),
        not_after: ts(&v.not_after),
    })
}

/// Extracts the first PEM block with the given label as DER.
pub fn pem_to_der(pem: &str, label: &str) -> Result<Vec<u8>, PkiError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| PkiError::Cert(format!("no {label} PEM block found")))?;
    let body_start = start + begin.len();
    let stop = pem[body_start..]
        .find(&end)
        .ok_or_else(|| PkiError::Cert(format!("unterminated {label} PEM block")))?;
    let b64: String = pem[body_start..body_start + stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| PkiError::Cert(format!("bad base64 in {label} PEM block: {e}")))
}

/// Encodes DER as a PEM block.
pub fn der_to_pem(der: &[u8], label: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_peer_cert;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn issue_and_parse_client_cert() {
        let (ca_pem, ca_key) = generate_ca("gw", NOW).unwrap();
        let ca = Ca::load(&ca_pem, &ca_key).unwrap();
        let key = generate_key().unwrap();
        let cert = ca
            .issue_client("worker-gpu-01", Role::Node, &key.spki_der, 3600, NOW)
            .unwrap();
        let peer = parse_peer_cert(&cert.der).unwrap();
        assert_eq!(peer.name, "worker-gpu-01");
        assert_eq!(peer.role, Role::Node);
        assert_eq!(peer.serial, cert.serial);
        assert_eq!(peer.not_after, NOW + 3600);
        assert_eq!(peer.fingerprint, fingerprint(&key.spki_der));
        assert_eq!(pem_to_der(&cert.pem, "CERTIFICATE").unwrap(), cert.der);
    }

    #[test]
    fn renewal_is_due_two_thirds_in() {
        // Issued at 1000 (backdated to 700), valid 30 days.
        let (nb, na) = (1000 - BACKDATE_SECS, 1000 + 30 * 86_400);
        assert_eq!(renewal_due(nb, na), 1000 + 20 * 86_400);
        assert_eq!(
            renewal_due(100, 200),
            200,
            "a certificate shorter than the backdate is due at once"
        );
        let (ca_pem, ca_key) = generate_ca("gw", NOW).unwrap();
        let ca = Ca::load(&ca_pem, &ca_key).unwrap();
        let key = generate_key().unwrap();
        let cert = ca
            .issue_client("n", Role::Node, &key.spki_der, 30, NOW)
            .unwrap();
        let peer = parse_peer_cert(&cert.der).unwrap();
        assert_eq!(renewal_due(peer.not_before, peer.not_after), NOW + 20);
    }

    #[test]
    fn next_ca_has_a_cross_signed_twin() {
        let (old_pem, old_key) = generate_ca("gw", NOW).unwrap();
        let old = Ca::load(&old_pem, &old_key).unwrap();
        let next = generate_next_ca("gw", &old, NOW).unwrap();
        let new = Ca::load(&next.cert_pem, &next.key_pem).unwrap();
        let new_der = pem_to_der(&next.cert_pem, "CERTIFICATE").unwrap();
        let cross_der = pem_to_der(&next.cross_pem, "CERTIFICATE").unwrap();
        // Same key (so the same pin) and the same subject bytes.
        assert_eq!(spki_pin(&cross_der).unwrap(), new.pin());
        assert_ne!(new.pin(), old.pin());
        assert!(crate::issued_by(&cross_der, old.cert_der()).unwrap());
        assert!(!crate::issued_by(&cross_der, &new_der).unwrap());
        assert!(crate::issued_by(&new_der, &new_der).unwrap(), "self-signed");
        let key = generate_key().unwrap();
        let leaf = new
            .issue_client("n", Role::Node, &key.spki_der, 60, NOW)
            .unwrap();
        assert!(crate::issued_by(&leaf.der, &new_der).unwrap());
        assert!(
            crate::issued_by(&leaf.der, &cross_der).unwrap(),
            "the twin has the new CA's subject"
        );
        assert!(!crate::issued_by(&leaf.der, old.cert_der()).unwrap());
        assert!(crate::issued_by(b"junk", &new_der).is_err());
        assert_eq!(leaf.ca_pin, crate::hex(&new.pin()));
        let (server, server_key) = new.issue_server("gw", 60, NOW).unwrap();
        assert!(key_matches_cert(&server_key, &server.der));
        assert!(!key_matches_cert(&next.key_pem, &server.der));
        assert!(!key_matches_cert("junk", &server.der));
    }

    #[test]
    fn pin_is_stable_across_loads() {
        let (ca_pem, ca_key) = generate_ca("gw", NOW).unwrap();
        let a = Ca::load(&ca_pem, &ca_key).unwrap();
        let b = Ca::load(&ca_pem, &ca_key).unwrap();
        assert_eq!(a.pin(), b.pin());
        let (other_pem, other_key) = generate_ca("gw", NOW).unwrap();
        assert_ne!(a.pin(), Ca::load(&other_pem, &other_key).unwrap().pin());
    }

    #[test]
    fn serials_are_unique() {
        let (ca_pem, ca_key) = generate_ca("gw", NOW).unwrap();
        let ca = Ca::load(&ca_pem, &ca_key).unwrap();
        let key = generate_key().unwrap();
        let a = ca
            .issue_client("a", Role::Admin, &key.spki_der, 60, NOW)
            .unwrap();
        let b = ca
            .issue_client("a", Role::Admin, &key.spki_der, 60, NOW)
            .unwrap();
        assert_ne!(a.serial, b.serial);
    }

    #[test]
    fn bad_pem_is_an_error() {
        assert!(pem_to_der("nothing", "CERTIFICATE").is_err());
        assert!(
            pem_to_der(
                "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----",
                "CERTIFICATE"
            )
            .is_err()
        );
        assert!(Ca::load("x", "y").is_err());
    }
}
