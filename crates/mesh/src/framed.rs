//! Reading and writing length-prefixed frames on QUIC streams.

use proto::OutStream;
use proto::frame::{self, DATA_PREFIX_LEN, FrameError, HEADER_LEN, Header};
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
    /// A data frame arrived where a message was expected, or the reverse.
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    /// Storing received data failed.
    #[error("{0}")]
    Sink(String),
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

/// What a frame header announced.
#[derive(Debug)]
pub enum Incoming<T> {
    /// A decoded message.
    Message(T),
    /// A data frame: `len` bytes of `stream` at `offset` follow; read them
    /// with [`read_data`].
    Data {
        /// Which output stream.
        stream: OutStream,
        /// Offset of the first byte.
        offset: u64,
        /// Number of bytes.
        len: usize,
    },
}

async fn read_header(
    recv: &mut quinn::RecvStream,
) -> Result<Option<[u8; HEADER_LEN]>, StreamError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match recv.read(&mut header[got..]).await? {
            Some(n) => got += n,
            None if got == 0 => return Ok(None),
            None => return Err(StreamError::Truncated),
        }
    }
    Ok(Some(header))
}

async fn read_exact(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), StreamError> {
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => StreamError::Truncated,
        quinn::ReadExactError::ReadError(e) => StreamError::Read(e),
    })
}

/// Reads the next frame of either kind. `Ok(None)` means the stream ended
/// cleanly between frames. A header announcing more than `limit` bytes is
/// refused before anything else is read.
pub async fn read_incoming<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Option<Incoming<T>>, StreamError> {
    let Some(header) = read_header(recv).await? else {
        return Ok(None);
    };
    match frame::parse_header(header, limit)? {
        Header::Message(len) => {
            let mut body = vec![0u8; len];
            read_exact(recv, &mut body).await?;
            Ok(Some(Incoming::Message(frame::decode(&body)?)))
        }
        Header::Data(len) => {
            let mut prefix = [0u8; DATA_PREFIX_LEN];
            read_exact(recv, &mut prefix).await?;
            let (id, offset) = frame::parse_data_prefix(prefix);
            let stream =
                OutStream::from_id(id).ok_or(StreamError::Unexpected("unknown output stream"))?;
            Ok(Some(Incoming::Data {
                stream,
                offset,
                len: len - DATA_PREFIX_LEN,
            }))
        }
    }
}

/// Reads the `len` bytes of a data frame, handing each received chunk to
/// `sink` without copying it first.
pub async fn read_data(
    recv: &mut quinn::RecvStream,
    mut len: usize,
    mut sink: impl FnMut(bytes::Bytes) -> Result<(), String>,
) -> Result<(), StreamError> {
    while len > 0 {
        match recv.read_chunk(len, true).await? {
            Some(chunk) => {
                len -= chunk.bytes.len();
                sink(chunk.bytes).map_err(StreamError::Sink)?;
            }
            None => return Err(StreamError::Truncated),
        }
    }
    Ok(())
}

/// Writes a data frame; `data` is handed to quinn without a copy.
pub async fn write_data(
    send: &mut quinn::SendStream,
    stream: OutStream,
    offset: u64,
    data: bytes::Bytes,
) -> Result<(), StreamError> {
    let header = frame::data_header(stream.id(), offset, data.len())?;
    send.write_all(&header).await?;
    send.write_chunk(data).await?;
    Ok(())
}

/// Writes one data frame made of several chunks, without joining them.
pub async fn write_data_chunks(
    send: &mut quinn::SendStream,
    stream: OutStream,
    offset: u64,
    chunks: &mut [bytes::Bytes],
) -> Result<(), StreamError> {
    let len = chunks.iter().map(bytes::Bytes::len).sum();
    let header = frame::data_header(stream.id(), offset, len)?;
    send.write_all(&header).await?;
    send.write_all_chunks(chunks).await?;
    Ok(())
}

/// Reads one message frame. Returns `Ok(None)` when the stream ends
/// cleanly between frames. A header announcing more than `limit` bytes is
/// refused before the body is read; a data frame is an error here.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Option<T>, StreamError> {
    match read_incoming(recv, limit).await? {
        None => Ok(None),
        Some(Incoming::Message(m)) => Ok(Some(m)),
        Some(Incoming::Data { .. }) => Err(StreamError::Unexpected("data")),
    }
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
