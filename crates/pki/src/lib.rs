//! OpenClaw's PKI: the gateway's certificate authority, CSR checks, peer
//! certificate parsing, join tokens and fingerprints.
//!
//! Everything here is a pure function of its inputs, except that fresh keys,
//! serials and secrets come from the OS random source. Time is always a
//! parameter (`now` in Unix seconds), never read here.
//!
//! # Certificate layout
//!
//! * The CA is ECDSA P-256, `CN=OpenClaw CA <gateway>`, valid ten years.
//! * The gateway's server certificate carries the DNS name
//!   [`proto::GATEWAY_SERVER_NAME`]; clients verify against that name, so
//!   the address they dial does not matter.
//! * Client certificates (nodes, admins, bots) carry `CN=<name>` and
//!   `OU=<role>`, the client-auth EKU, and a random 128-bit serial. The role
//!   comes from the CA's decision, never from the CSR.

mod ca;
mod cert;
mod csr;
mod token;

pub use ca::{
    BACKDATE_SECS, Ca, GeneratedKey, IssuedCert, NextCa, Validity, cert_validity, der_to_pem,
    generate_ca, generate_key, generate_next_ca, key_matches_cert, pem_to_der, renewal_due,
    spki_pin,
};
pub use cert::{PeerCert, gateway_name, issued_by, parse_peer_cert, serial_of};
pub use csr::{CheckedCsr, check_csr, make_csr};
pub use token::{JoinToken, TokenSecret, constant_time_eq, hash_secret};

use base64::Engine as _;

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The CSR is malformed, badly signed, or asks for something we never grant.
    #[error("invalid certificate request: {0}")]
    Csr(String),
    /// A certificate could not be parsed or is not one of ours.
    #[error("invalid certificate: {0}")]
    Cert(String),
    /// A key could not be parsed or generated.
    #[error("invalid key: {0}")]
    Key(String),
    /// A join token is malformed.
    #[error("malformed join token: {0}; copy the whole line printed by 'openclaw token create'")]
    Token(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// SHA-256 over a stream: write the bytes, then [`Sha256Writer::finish`].
pub struct Sha256Writer(ring::digest::Context);

impl Default for Sha256Writer {
    fn default() -> Self {
        Sha256Writer(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256Writer {
    /// The digest of everything written.
    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// SHA-256 of DER bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The `SHA256:<base64>` fingerprint of a public key (SPKI DER), as ssh prints them.
pub fn fingerprint(spki_der: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha256(spki_der))
    )
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fills `buf` from the OS random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), PkiError> {
    use ring::rand::SecureRandom as _;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| PkiError::Generate("the OS random source failed".into()))
}

/// A random string over `[a-z0-9]` of length `len`.
pub fn random_alnum(len: usize) -> Result<String, PkiError> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        random_bytes(&mut buf)?;
        for b in buf {
            // Rejection sampling: 252 = 7 * 36 keeps the distribution uniform.
            if b < 252 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b % 36)]));
            }
        }
    }
    Ok(out)
}
