//! Reading and writing length-prefixed frames on QUIC streams.

use proto::frame::{self, FrameError, HEADER_LEN};
use serde::{Serialize, de::DeserializeOwned};

/// A framed stream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The peer sent a frame we refuse (too large, malformed).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame")]
    Truncated,
    /// Reading failed (connection lost, stream reset).
    #[error("read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// Writing failed (connection lost, stream stopped).
    #[error("write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// The connection went away.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
}

impl StreamError {
    /// The connection error underneath, if the stream failed because the
    /// connection did.
    pub fn connection_error(&self) -> Option<&quinn::ConnectionError> {
        match self {
            StreamError::Read(quinn::ReadError::ConnectionLost(e))
            | StreamError::Write(quinn::WriteError::ConnectionLost(e))
            | StreamError::Connection(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads one frame. Returns `Ok(None)` when the stream ends cleanly between
/// frames. A header announcing more than `limit` bytes is refused before the
/// body is read.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Option<T>, StreamError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match recv.read(&mut header[got..]).await? {
            Some(n) => got += n,
            None if got == 0 => return Ok(None),
            None => return Err(StreamError::Truncated),
        }
    }
    let len = frame::body_len(header, limit)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => StreamError::Truncated,
        quinn::ReadExactError::ReadError(e) => StreamError::Read(e),
    })?;
    Ok(Some(frame::decode(&body)?))
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
) -> Result<(), StreamError> {
    let bytes = frame::encode(msg)?;
    send.write_all(&bytes).await?;
    Ok(())
}
