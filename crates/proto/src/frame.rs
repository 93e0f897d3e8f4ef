//! Length-prefixed framing: a 4-byte big-endian length, then the body.
//!
//! Pure functions only; the async readers in `mesh` call [`body_len`] on the
//! header before reading the body, so an oversized frame is refused before a
//! byte of it is buffered.

use serde::{Serialize, de::DeserializeOwned};

use crate::codec::{self, CodecError};

/// The largest frame any party accepts, header excluded: 1 MiB.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// A frame could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header announces a body longer than the reader accepts.
    #[error("frame of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Announced body length.
        len: usize,
        /// The reader's limit.
        limit: usize,
    },
    /// The body is not a valid message.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Reads the body length from a frame header, refusing lengths over `limit`.
pub fn body_len(header: [u8; HEADER_LEN], limit: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    Ok(len)
}

/// Encodes `msg` as one frame, header included.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = codec::encode(msg)?;
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: body.len(),
            limit: MAX_FRAME_LEN,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    // The length fits in u32: it is at most MAX_FRAME_LEN, checked above.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes one frame body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(codec::decode(body)?)
}

/// Splits one complete frame off the front of `buf`, if there is one.
///
/// Returns `Ok(None)` when more bytes are needed, and the message plus the
/// number of bytes consumed otherwise.
pub fn try_split<T: DeserializeOwned>(
    buf: &[u8],
    limit: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = body_len(*header, limit)?;
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode(body)?, HEADER_LEN + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Heartbeat, Open};

    #[test]
    fn encode_then_split() {
        let a = encode(&Open::Heartbeat).unwrap();
        let b = encode(&Heartbeat { seq: 7 }).unwrap();
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        let (first, used): (Open, usize) = try_split(&buf, MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(first, Open::Heartbeat);
        assert_eq!(used, a.len());
        let (second, used2): (Heartbeat, usize) =
            try_split(&buf[used..], MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(second.seq, 7);
        assert_eq!(used + used2, buf.len());
    }

    #[test]
    fn partial_frames_need_more() {
        let a = encode(&Heartbeat { seq: 1 }).unwrap();
        for cut in 0..a.len() {
            assert!(
                try_split::<Heartbeat>(&a[..cut], MAX_FRAME_LEN)
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn oversized_header_is_refused_before_the_body() {
        let header = u32::MAX.to_be_bytes();
        let err = body_len(header, MAX_FRAME_LEN).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        assert!(try_split::<Heartbeat>(&header, 16).is_err());
        assert_eq!(body_len(16u32.to_be_bytes(), 16).unwrap(), 16);
        assert!(body_len(17u32.to_be_bytes(), 16).is_err());
    }
}
