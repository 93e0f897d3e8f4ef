//! Join tokens.
//!
//! A token is `oc1_` followed by unpadded base64url of
//! `<id>.<secret>.<pin>.<gateway address>`:
//!
//! * `id`: 6 characters of `[a-z0-9]`, public, names the token in
//!   `openclaw token list`;
//! * `secret`: 32 characters of `[a-z0-9]` (about 165 bits); the gateway
//!   stores only its SHA-256;
//! * `pin`: 64 hex digits, the SHA-256 of the CA's SubjectPublicKeyInfo; the
//!   node refuses any gateway whose CA does not match it;
//! * the address the node dials, `host:port`, or the addresses of a
//!   leader and its standbys joined by commas, tried in order.
//!
//! base64url keeps IPv6 brackets and colons away from shells.

use base64::Engine as _;

use crate::{PkiError, hex, random_alnum, sha256};

const PREFIX: &str = "oc1_";
/// Length of a token id.
pub const ID_LEN: usize = 6;
/// Length of a token secret.
pub const SECRET_LEN: usize = 32;
/// The longest encoded token we look at.
pub const MAX_TOKEN_LEN: usize = 1024;

/// A token's secret half; never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// A decoded join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Public id.
    pub id: String,
    /// The secret.
    pub secret: TokenSecret,
    /// SHA-256 of the CA's SPKI.
    pub ca_pin: [u8; 32],
    /// Where to dial the gateway.
    pub gateway: String,
}

impl JoinToken {
    /// Makes a token with a fresh random id and secret.
    pub fn generate(ca_pin: [u8; 32], gateway: &str) -> Result<JoinToken, PkiError> {
        Ok(JoinToken {
            id: random_alnum(ID_LEN)?,
            secret: TokenSecret(random_alnum(SECRET_LEN)?),
            ca_pin,
            gateway: gateway.to_string(),
        })
    }

    /// The printable token.
    pub fn encode(&self) -> String {
        let inner = format!(
            "{}.{}.{}.{}",
            self.id,
            self.secret.0,
            hex(&self.ca_pin),
            self.gateway
        );
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(inner)
        )
    }

    /// Parses a token from untrusted text.
    pub fn parse(text: &str) -> Result<JoinToken, PkiError> {
        let text = text.trim();
        if text.len() > MAX_TOKEN_LEN {
            return Err(PkiError::Token(format!("{} characters long", text.len())));
        }
        let body = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| PkiError::Token(format!("it does not start with {PREFIX:?}")))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| PkiError::Token("it is not valid base64url".into()))?;
        let inner =
            String::from_utf8(bytes).map_err(|_| PkiError::Token("it is not UTF-8".into()))?;
        let mut parts = inner.splitn(4, '.');
        let (Some(id), Some(secret), Some(pin), Some(gateway)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PkiError::Token("it has fewer than four fields".into()));
        };
        let alnum = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if id.len() != ID_LEN || !alnum(id) {
            return Err(PkiError::Token("bad token id".into()));
        }
        if secret.len() != SECRET_LEN || !alnum(secret) {
            return Err(PkiError::Token("bad token secret".into()));
        }
        let ca_pin = parse_pin(pin)
            .ok_or_else(|| PkiError::Token("bad CA pin (want 64 hex digits)".into()))?;
        // One address, or a leader's and its standbys' (`a:1,b:2`).
        let bad_one = |g: &str| {
            g.is_empty()
                || g.len() > 255
                || !g.contains(':')
                || g.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if gateway.len() > 800 || gateway.split(',').count() > 16 || gateway.split(',').any(bad_one)
        {
            return Err(PkiError::Token(
                "bad gateway address (want host:port, or several joined by commas)".into(),
            ));
        }
        Ok(JoinToken {
            id: id.to_string(),
            secret: TokenSecret(secret.to_string()),
            ca_pin,
            gateway: gateway.to_string(),
        })
    }

    /// The `sha256:<hex>` form of the pin, as printed for people.
    pub fn pin_display(&self) -> String {
        format!("sha256:{}", hex(&self.ca_pin))
    }
}

fn parse_pin(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What the gateway stores for a token secret.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    sha256(secret.as_bytes())
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for addr in [
            "127.0.0.1:7443",
            "[::1]:7443",
            "gw.example.org:443",
            "gw-a.example.org:7443,gw-b.example.org:7443",
        ] {
            let t = JoinToken::generate([7u8; 32], addr).unwrap();
            let text = t.encode();
            assert!(text.starts_with("oc1_"));
            assert!(!text.contains(['[', ':', ' ']));
            assert_eq!(JoinToken::parse(&text).unwrap(), t);
            assert_eq!(JoinToken::parse(&format!("  {text}\n")).unwrap(), t);
        }
    }

    #[test]
    fn malformed_tokens_are_errors() {
        let good = JoinToken::generate([1u8; 32], "127.0.0.1:1").unwrap();
        let enc = |s: &str| {
            format!(
                "oc1_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
            )
        };
        let pin = "ab".repeat(32);
        let secret = "a".repeat(32);
        let long = "x".repeat(2000);
        let cases = vec![
            String::new(),
            "hello".into(),
            "oc1_!!!!".into(),
            enc("abcdef"),
            enc(&format!("ABCDEF.{secret}.{pin}.h:1")),
            enc(&format!("abcdef.short.{pin}.h:1")),
            enc(&format!("abcdef.{secret}.zz.h:1")),
            enc(&format!("abcdef.{secret}.{pin}.nocolon")),
            enc(&format!("abcdef.{secret}.{pin}.h :1")),
            enc(&format!("abcdef.{secret}.{pin}.h:1,")),
            enc(&format!("abcdef.{secret}.{pin}.h:1,nocolon")),
            long,
            good.encode()[..20].to_string(),
        ];
        for c in cases {
            let err = JoinToken::parse(&c).unwrap_err().to_string();
            assert!(err.contains("malformed join token"), "{c}: {err}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = JoinToken::generate([0u8; 32], "h:1").unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains(t.secret.expose()), "{dbg}");
    }

    #[test]
    fn hashing_and_comparison() {
        assert!(constant_time_eq(&hash_secret("a"), &hash_secret("a")));
        assert!(!constant_time_eq(&hash_secret("a"), &hash_secret("b")));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
