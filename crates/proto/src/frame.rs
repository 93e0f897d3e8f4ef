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

/// Set in a frame header to mark a data frame: job output that bypasses
/// the codec. A data frame's body is a 1-byte stream id, an 8-byte
/// big-endian offset, then the bytes themselves.
pub const DATA_FLAG: u32 = 0x8000_0000;
/// Stream id and offset in front of a data frame's bytes.
pub const DATA_PREFIX_LEN: usize = 9;

/// What a frame header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A codec-encoded message of this many bytes.
    Message(usize),
    /// A data frame whose body (prefix included) is this many bytes.
    Data(usize),
}

/// Parses a header of either kind, refusing bodies over `limit`.
pub fn parse_header(header: [u8; HEADER_LEN], limit: usize) -> Result<Header, FrameError> {
    let raw = u32::from_be_bytes(header);
    let len = (raw & !DATA_FLAG) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    if raw & DATA_FLAG == 0 {
        Ok(Header::Message(len))
    } else if len < DATA_PREFIX_LEN {
        Err(FrameError::Codec(CodecError::Decode(format!(
            "data frame of {len} bytes is shorter than its prefix"
        ))))
    } else {
        Ok(Header::Data(len))
    }
}

/// The header and prefix of a data frame carrying `len` bytes.
pub fn data_header(
    stream: u8,
    offset: u64,
    len: usize,
) -> Result<[u8; HEADER_LEN + DATA_PREFIX_LEN], FrameError> {
    let body = len + DATA_PREFIX_LEN;
    if body > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: body,
            limit: MAX_FRAME_LEN,
        });
    }
    let mut out = [0u8; HEADER_LEN + DATA_PREFIX_LEN];
    // body <= MAX_FRAME_LEN < 2^31, so the flag bit is free.
    out[..4].copy_from_slice(&(body as u32 | DATA_FLAG).to_be_bytes());
    out[4] = stream;
    out[5..].copy_from_slice(&offset.to_be_bytes());
    Ok(out)
}

/// Splits a data frame prefix into stream id and offset.
pub fn parse_data_prefix(prefix: [u8; DATA_PREFIX_LEN]) -> (u8, u64) {
    let mut off = [0u8; 8];
    off.copy_from_slice(&prefix[1..]);
    (prefix[0], u64::from_be_bytes(off))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Heartbeat, Open};

    #[test]
    fn encode_then_split() {
        let a = encode(&Open::Heartbeat).unwrap();
        let b = encode(&Heartbeat {
            seq: 7,
            ..Default::default()
        })
        .unwrap();
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
        let a = encode(&Heartbeat {
            seq: 1,
            ..Default::default()
        })
        .unwrap();
        for cut in 0..a.len() {
            assert!(
                try_split::<Heartbeat>(&a[..cut], MAX_FRAME_LEN)
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn data_frames() {
        let h = data_header(2, 1 << 40, 100).unwrap();
        let header: [u8; 4] = h[..4].try_into().unwrap();
        assert_eq!(
            parse_header(header, MAX_FRAME_LEN).unwrap(),
            Header::Data(109)
        );
        assert_eq!(parse_data_prefix(h[4..].try_into().unwrap()), (2, 1 << 40));
        assert!(data_header(1, 0, MAX_FRAME_LEN).is_err());
        // A data frame too short for its prefix, and an oversized one.
        assert!(parse_header((DATA_FLAG | 3).to_be_bytes(), MAX_FRAME_LEN).is_err());
        assert!(parse_header((DATA_FLAG | 0x7fff_ffff).to_be_bytes(), MAX_FRAME_LEN).is_err());
        assert_eq!(
            parse_header(5u32.to_be_bytes(), MAX_FRAME_LEN).unwrap(),
            Header::Message(5)
        );
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
