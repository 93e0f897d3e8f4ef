//! Certificate signing requests: made by nodes, checked by the gateway.
//!
//! A CSR proves the requester holds the private key (its signature is
//! checked), so the gateway never sees a node's key. We grant nothing a CSR
//! asks for beyond its public key: the subject must be exactly `CN=<name>`
//! and it may carry no extensions at all.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::{PkiError, fingerprint};

/// The OID of id-ecPublicKey.
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// The OID of the P-256 curve.
const OID_P256: &str = "1.2.840.10045.3.1.7";
/// The largest CSR we look at.
pub const MAX_CSR_LEN: usize = 4096;

/// Makes a CSR for `name` signed by `key_pem`. Returns DER.
pub fn make_csr(name: &str, key_pem: &str) -> Result<Vec<u8>, PkiError> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Key(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| PkiError::Csr(e.to_string()))?;
    Ok(csr.der().to_vec())
}

/// What the gateway keeps of an accepted CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCsr {
    /// The requester's public key, SPKI DER.
    pub spki_der: Vec<u8>,
    /// Its fingerprint.
    pub fingerprint: String,
}

/// Checks a CSR from the network for the node `name`: parses it, verifies
/// its self-signature (proof of possession), and refuses any subject other
/// than `CN=name`, any key but ECDSA P-256, and any requested extension.
pub fn check_csr(der: &[u8], name: &str) -> Result<CheckedCsr, PkiError> {
    if der.len() > MAX_CSR_LEN {
        return Err(PkiError::Csr(format!(
            "{} bytes; the limit is {MAX_CSR_LEN}",
            der.len()
        )));
    }
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| PkiError::Csr(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Csr("trailing bytes after the request".into()));
    }
    csr.verify_signature().map_err(|_| {
        PkiError::Csr("signature does not match its public key (no proof of key possession)".into())
    })?;
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    if spki.algorithm.algorithm.to_id_string() != OID_EC_PUBLIC_KEY
        || spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string())
            .as_deref()
            != Some(OID_P256)
    {
        return Err(PkiError::Csr("key is not ECDSA P-256".into()));
    }
    if csr
        .requested_extensions()
        .is_some_and(|mut e| e.next().is_some())
    {
        return Err(PkiError::Csr(
            "it requests X.509 extensions; openclaw requests carry none (the gateway decides)"
                .into(),
        ));
    }
    if !info.attributes().is_empty() {
        return Err(PkiError::Csr(
            "it carries attributes; openclaw requests carry none".into(),
        ));
    }
    let subject = &info.subject;
    let mut cns = subject.iter_common_name();
    let cn = cns.next().and_then(|a| a.as_str().ok());
    if cn != Some(name) || cns.next().is_some() || subject.iter().count() != 1 {
        return Err(PkiError::Csr(format!("subject must be exactly CN={name}")));
    }
    Ok(CheckedCsr {
        spki_der: spki.raw.to_vec(),
        fingerprint: fingerprint(spki.raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate_key;

    #[test]
    fn good_csr_is_accepted() {
        let key = generate_key().unwrap();
        let der = make_csr("worker-gpu-01", &key.key_pem).unwrap();
        let checked = check_csr(&der, "worker-gpu-01").unwrap();
        assert_eq!(checked.spki_der, key.spki_der);
        assert_eq!(checked.fingerprint, fingerprint(&key.spki_der));
    }

    #[test]
    fn name_mismatch_is_refused() {
        let key = generate_key().unwrap();
        let der = make_csr("worker-gpu-01", &key.key_pem).unwrap();
        let err = check_csr(&der, "worker-gpu-02").unwrap_err().to_string();
        assert!(err.contains("CN=worker-gpu-02"), "{err}");
    }

    #[test]
    fn swapped_key_is_refused() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        let der = make_csr("n", &a.key_pem).unwrap();
        // Put b's public key where a's was: same length for P-256.
        let pos = der
            .windows(a.spki_der.len())
            .position(|w| w == a.spki_der)
            .unwrap();
        let mut forged = der.clone();
        forged[pos..pos + b.spki_der.len()].copy_from_slice(&b.spki_der);
        let err = check_csr(&forged, "n").unwrap_err().to_string();
        assert!(err.contains("proof of key possession"), "{err}");
    }

    #[test]
    fn extensions_are_refused() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "n");
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        let err = check_csr(&der, "n").unwrap_err().to_string();
        assert!(err.contains("extensions"), "{err}");
    }

    #[test]
    fn other_key_types_are_refused() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "n");
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        let err = check_csr(&der, "n").unwrap_err().to_string();
        assert!(err.contains("P-256"), "{err}");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(check_csr(&[], "n").is_err());
        assert!(check_csr(&[0x30, 0x03, 0x02, 0x01, 0x00], "n").is_err());
        assert!(check_csr(&vec![0u8; MAX_CSR_LEN + 1], "n").is_err());
    }
}
