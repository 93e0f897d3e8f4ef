//! The one place that knows how messages become bytes.
//!
//! Everything else calls [`encode`] and [`decode`], so the codec can be
//! swapped without touching callers. Today it is bincode 2 with a decode
//! limit equal to the frame limit, so a hostile length prefix inside a frame
//! cannot make the decoder allocate more than a frame's worth.

use serde::{Serialize, de::DeserializeOwned};

use crate::frame::MAX_FRAME_LEN;

/// A message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The message could not be serialised.
    #[error("could not encode message: {0}")]
    Encode(String),
    /// The bytes are not a valid message of the expected type.
    #[error("malformed message: {0}")]
    Decode(String),
    /// The bytes hold a valid message followed by garbage.
    #[error("malformed message: {0} trailing bytes")]
    Trailing(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Encodes `msg` with the wire codec.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes exactly one message from `bytes`; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (msg, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Open, Request};

    #[test]
    fn round_trip() {
        let msg = Open::Request(Request::NodeApprove {
            name: "worker-gpu-01".into(),
            fingerprint: Some("SHA256:abc".into()),
            labels: Some(vec!["gpu".into()]),
            gpus: Some(2),
        });
        let bytes = encode(&msg).unwrap();
        let back: Open = decode(&bytes).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[0xff; 3],
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(decode::<Open>(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn huge_length_prefix_inside_a_frame_is_refused() {
        // Variant 2 (Request), variant 0 of Request..., then a string whose
        // varint length claims u64::MAX bytes.
        let mut bytes = vec![2u8, 3u8];
        bytes.push(255);
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Open>(&bytes).is_err());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&Open::Heartbeat).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<Open>(&bytes),
            Err(CodecError::Trailing(1))
        ));
    }
}
