//! Reading and writing length-prefixed frames on QUIC streams, or on any
//! stream that implements [`FrameRecv`] and [`FrameSend`] (the gateway's
//! in-process test harness uses in-memory pipes). The QUIC implementations
//! call quinn directly, so data frames still pass without copies.

use std::future::Future;

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
    /// A stream that is not QUIC failed (an in-memory test pipe).
    #[error("stream failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The receiving half of a stream that carries frames.
pub trait FrameRecv: Send {
    /// Reads some bytes into `buf`; `None` once the stream has finished.
    fn read_some(
        &mut self,
        buf: &mut [u8],
    ) -> impl Future<Output = Result<Option<usize>, StreamError>> + Send;
    /// Reads up to `max` bytes as one chunk (without a copy on QUIC);
    /// `None` once the stream has finished.
    fn read_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<bytes::Bytes>, StreamError>> + Send;
}

/// The sending half of a stream that carries frames.
pub trait FrameSend: Send {
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = Result<(), StreamError>> + Send;
    /// Writes `chunks` in order (handed to quinn without copies on QUIC).
    fn write_chunks(
        &mut self,
        chunks: &mut [bytes::Bytes],
    ) -> impl Future<Output = Result<(), StreamError>> + Send;
}

impl FrameRecv for quinn::RecvStream {
    async fn read_some(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StreamError> {
        Ok(quinn::RecvStream::read(self, buf).await?)
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<bytes::Bytes>, StreamError> {
        Ok(quinn::RecvStream::read_chunk(self, max, true)
            .await?
            .map(|c| c.bytes))
    }
}

impl FrameSend for quinn::SendStream {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), StreamError> {
        Ok(quinn::SendStream::write_all(self, buf).await?)
    }

    async fn write_chunks(&mut self, chunks: &mut [bytes::Bytes]) -> Result<(), StreamError> {
        match chunks {
            [one] => quinn::SendStream::write_chunk(self, one.clone()).await?,
            _ => quinn::SendStream::write_all_chunks(self, chunks).await?,
        }
        Ok(())
    }
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

async fn read_header(recv: &mut impl FrameRecv) -> Result<Option<[u8; HEADER_LEN]>, StreamError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match recv.read_some(&mut header[got..]).await? {
            Some(n) => got += n,
            None if got == 0 => return Ok(None),
            None => return Err(StreamError::Truncated),
        }
    }
    Ok(Some(header))
}

async fn read_exact(recv: &mut impl FrameRecv, buf: &mut [u8]) -> Result<(), StreamError> {
    let mut got = 0;
    while got < buf.len() {
        match recv.read_some(&mut buf[got..]).await? {
            Some(n) => got += n,
            None => return Err(StreamError::Truncated),
        }
    }
    Ok(())
}

/// Reads the next frame of either kind. `Ok(None)` means the stream ended
/// cleanly between frames. A header announcing more than `limit` bytes is
/// refused before anything else is read.
pub async fn read_incoming<T: DeserializeOwned>(
    recv: &mut impl FrameRecv,
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
    recv: &mut impl FrameRecv,
    mut len: usize,
    mut sink: impl FnMut(bytes::Bytes) -> Result<(), String>,
) -> Result<(), StreamError> {
    while len > 0 {
        match recv.read_chunk(len).await? {
            Some(chunk) => {
                len -= chunk.len();
                sink(chunk).map_err(StreamError::Sink)?;
            }
            None => return Err(StreamError::Truncated),
        }
    }
    Ok(())
}

/// Reads the `len` bytes of a data frame through `buf`, handing `sink`
/// everything that has arrived at each read as one slice: one copy, but
/// one call per read instead of one per received QUIC frame (about a
/// datagram's worth), for a sink that pays per call (a write to a pipe).
/// `buf` must not be empty.
pub async fn read_data_buffered(
    recv: &mut impl FrameRecv,
    mut len: usize,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), StreamError> {
    while len > 0 {
        let want = len.min(buf.len());
        match recv.read_some(&mut buf[..want]).await? {
            Some(n) if n > 0 => {
                len -= n;
                sink(&buf[..n]).map_err(StreamError::Sink)?;
            }
            _ => return Err(StreamError::Truncated),
        }
    }
    Ok(())
}

/// Writes a data frame; `data` is handed to quinn without a copy.
pub async fn write_data(
    send: &mut impl FrameSend,
    stream: OutStream,
    offset: u64,
    data: bytes::Bytes,
) -> Result<(), StreamError> {
    let header = frame::data_header(stream.id(), offset, data.len())?;
    send.write_all(&header).await?;
    send.write_chunks(&mut [data]).await
}

/// Writes one data frame made of several chunks, without joining them.
pub async fn write_data_chunks(
    send: &mut impl FrameSend,
    stream: OutStream,
    offset: u64,
    chunks: &mut [bytes::Bytes],
) -> Result<(), StreamError> {
    let len = chunks.iter().map(bytes::Bytes::len).sum();
    let header = frame::data_header(stream.id(), offset, len)?;
    send.write_all(&header).await?;
    send.write_chunks(chunks).await
}

/// Reads one message frame. Returns `Ok(None)` when the stream ends
/// cleanly between frames. A header announcing more than `limit` bytes is
/// refused before the body is read; a data frame is an error here.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut impl FrameRecv,
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
    send: &mut impl FrameSend,
    msg: &T,
) -> Result<(), StreamError> {
    let bytes = frame::encode(msg)?;
    send.write_all(&bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that hands out the pieces it was given, at most one per
    /// read (as QUIC hands out what has arrived), then finishes.
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl FrameRecv for Pieces {
        async fn read_some(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StreamError> {
            let Some(mut p) = self.0.pop_front() else {
                return Ok(None);
            };
            let n = p.len().min(buf.len());
            buf[..n].copy_from_slice(&p[..n]);
            if n < p.len() {
                self.0.push_front(p.split_off(n));
            }
            Ok(Some(n))
        }

        async fn read_chunk(&mut self, max: usize) -> Result<Option<bytes::Bytes>, StreamError> {
            let mut buf = vec![0; max];
            Ok(self.read_some(&mut buf).await?.map(|n| {
                buf.truncate(n);
                bytes::Bytes::from(buf)
            }))
        }
    }

    #[tokio::test]
    async fn buffered_data_reads_hand_over_each_byte_once_in_reads_of_at_most_the_buffer() {
        let pieces: Vec<Vec<u8>> = (0..20u8).map(|k| vec![k; 7 + usize::from(k)]).collect();
        let all: Vec<u8> = pieces.concat();
        // The frame ends 5 bytes before the stream does: those stay unread.
        let len = all.len() - 5;
        let mut recv = Pieces(pieces.into_iter().collect());
        let mut got = Vec::new();
        let mut calls = 0;
        let mut buf = [0u8; 16];
        read_data_buffered(&mut recv, len, &mut buf, |d| {
            assert!(
                !d.is_empty() && d.len() <= 16,
                "{} bytes in one call",
                d.len()
            );
            calls += 1;
            got.extend_from_slice(d);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(got, all[..len]);
        assert!(calls >= len.div_ceil(16), "{calls} calls");
        let rest: Vec<u8> = recv.0.iter().flatten().copied().collect();
        assert_eq!(rest, all[len..], "bytes past the frame are left unread");

        // A stream that ends inside the frame is an error, not a short read.
        let mut short = Pieces([vec![1u8; 10]].into_iter().collect());
        let r = read_data_buffered(&mut short, 11, &mut buf, |_| Ok(())).await;
        assert!(matches!(r, Err(StreamError::Truncated)), "{r:?}");
        // A sink's refusal stops the read with its message.
        let mut ok = Pieces([vec![1u8; 10]].into_iter().collect());
        let r = read_data_buffered(&mut ok, 10, &mut buf, |_| Err("disk full".into())).await;
        assert!(matches!(r, Err(StreamError::Sink(m)) if m == "disk full"));
    }
}
