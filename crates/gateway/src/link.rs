//! A peer's connection as the session code sees it: a QUIC connection, or
//! in tests an in-memory one ([`fake::FakeLink`]). The fake exists only
//! under `cfg(any(test, feature = "test-utils"))`: in a production build a
//! [`Link`] is always QUIC, and a session's identity always comes from the
//! certificate its mTLS handshake verified (`session::identify`).

use std::net::SocketAddr;

use mesh::{FrameRecv, FrameSend, StreamError};
use proto::Role;

#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
#[cfg(any(test, feature = "test-utils"))]
use fake::{FakeLink, FakeStream};

/// One peer connection.
#[derive(Clone)]
pub enum Link {
    /// A QUIC connection whose TLS handshake verified the peer.
    Quic(quinn::Connection),
    /// An in-memory connection of the test harness.
    #[cfg(any(test, feature = "test-utils"))]
    Fake(std::sync::Arc<FakeLink>),
}

/// The sending half of a stream on a [`Link`].
pub enum SendHalf {
    /// A QUIC stream.
    Quic(quinn::SendStream),
    /// An in-memory pipe of the test harness.
    #[cfg(any(test, feature = "test-utils"))]
    Fake(FakeStream),
}

/// The receiving half of a stream on a [`Link`].
pub enum RecvHalf {
    /// A QUIC stream.
    Quic(quinn::RecvStream),
    /// An in-memory pipe of the test harness.
    #[cfg(any(test, feature = "test-utils"))]
    Fake(FakeStream),
}

impl Link {
    /// The session protocol the peer speaks (see [`crate::peer::protocol_of`]);
    /// an in-memory peer speaks the current one.
    pub fn protocol(&self) -> u32 {
        match self {
            Link::Quic(c) => crate::peer::protocol_of(c),
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(_) => proto::PROTOCOL_VERSION,
        }
    }

    /// An id that tells this connection from every other live one.
    pub fn stable_id(&self) -> usize {
        match self {
            Link::Quic(c) => c.stable_id(),
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(f) => f.id(),
        }
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        match self {
            Link::Quic(c) => c.remote_address(),
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(f) => f.remote(),
        }
    }

    /// Closes the connection with an application close code.
    pub fn close(&self, code: u32, reason: &[u8]) {
        match self {
            Link::Quic(c) => c.close(code.into(), reason),
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(f) => f.close(code, reason),
        }
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        match self {
            Link::Quic(c) => c.close_reason().map(|e| e.to_string()),
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(f) => f.close_reason(),
        }
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        match self {
            Link::Quic(c) => c.close_reason().is_some(),
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(f) => f.close_reason().is_some(),
        }
    }

    /// Resolves when the connection has closed.
    pub async fn closed(&self) {
        match self {
            Link::Quic(c) => {
                c.closed().await;
            }
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(f) => f.closed().await,
        }
    }

    /// UDP datagrams received on the connection so far (what the reaper
    /// counts to tell a lossy link from a dead node).
    pub fn datagrams_received(&self) -> u64 {
        match self {
            Link::Quic(c) => c.stats().udp_rx.datagrams,
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(f) => f.received(),
        }
    }

    /// The next bidirectional stream the peer opens; `None` once closed.
    pub async fn accept_bi(&self) -> Option<(SendHalf, RecvHalf)> {
        match self {
            Link::Quic(c) => c
                .accept_bi()
                .await
                .ok()
                .map(|(s, r)| (SendHalf::Quic(s), RecvHalf::Quic(r))),
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(f) => f
                .accept_bi()
                .await
                .map(|(s, r)| (SendHalf::Fake(s), RecvHalf::Fake(r))),
        }
    }

    /// The next unidirectional stream the peer opens; `None` once closed.
    pub async fn accept_uni(&self) -> Option<RecvHalf> {
        match self {
            Link::Quic(c) => c.accept_uni().await.ok().map(RecvHalf::Quic),
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(f) => f.accept_uni().await.map(RecvHalf::Fake),
        }
    }

    /// Widens an identified peer's flow-control window for its role.
    pub fn widen_limits(&self, role: Role, window: u32) {
        match self {
            Link::Quic(c) => mesh::tls::widen_limits(c, role, window),
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(_) => {}
        }
    }

    /// How many bidirectional streams the peer may hold open at once.
    pub fn set_max_concurrent_bi_streams(&self, n: u32) {
        match self {
            Link::Quic(c) => c.set_max_concurrent_bi_streams(n.into()),
            #[cfg(any(test, feature = "test-utils"))]
            Link::Fake(_) => {}
        }
    }
}

impl SendHalf {
    /// Ends the stream after what was written (QUIC `finish`).
    pub fn finish(&mut self) {
        match self {
            SendHalf::Quic(s) => {
                let _ = s.finish();
            }
            #[cfg(any(test, feature = "test-utils"))]
            SendHalf::Fake(s) => s.finish(),
        }
    }

    /// Waits until the peer has read everything or stopped the stream.
    pub async fn stopped(&mut self) {
        match self {
            SendHalf::Quic(s) => {
                let _ = s.stopped().await;
            }
            #[cfg(any(test, feature = "test-utils"))]
            SendHalf::Fake(_) => {}
        }
    }
}

impl SendHalf {
    /// The QUIC stream, for features that need QUIC's own stream calls
    /// (stop and reset codes, flow control as back-pressure: a job's
    /// standard input, port forwards); `Err(self)` on an in-memory link.
    pub fn into_quic(self) -> Result<quinn::SendStream, SendHalf> {
        match self {
            SendHalf::Quic(s) => Ok(s),
            #[cfg(any(test, feature = "test-utils"))]
            other @ SendHalf::Fake(_) => Err(other),
        }
    }
}

impl RecvHalf {
    /// The QUIC stream (see [`SendHalf::into_quic`]); `Err(self)` on an
    /// in-memory link.
    pub fn into_quic(self) -> Result<quinn::RecvStream, RecvHalf> {
        match self {
            RecvHalf::Quic(s) => Ok(s),
            #[cfg(any(test, feature = "test-utils"))]
            other @ RecvHalf::Fake(_) => Err(other),
        }
    }
}

impl FrameSend for SendHalf {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), StreamError> {
        match self {
            SendHalf::Quic(s) => FrameSend::write_all(s, buf).await,
            #[cfg(any(test, feature = "test-utils"))]
            SendHalf::Fake(s) => s.write_all(buf).await,
        }
    }

    async fn write_chunks(&mut self, chunks: &mut [bytes::Bytes]) -> Result<(), StreamError> {
        match self {
            SendHalf::Quic(s) => FrameSend::write_chunks(s, chunks).await,
            #[cfg(any(test, feature = "test-utils"))]
            SendHalf::Fake(s) => s.write_chunks(chunks).await,
        }
    }
}

impl FrameRecv for RecvHalf {
    async fn read_some(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StreamError> {
        match self {
            RecvHalf::Quic(r) => FrameRecv::read_some(r, buf).await,
            #[cfg(any(test, feature = "test-utils"))]
            RecvHalf::Fake(r) => r.read_some(buf).await,
        }
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<bytes::Bytes>, StreamError> {
        match self {
            RecvHalf::Quic(r) => FrameRecv::read_chunk(r, max).await,
            #[cfg(any(test, feature = "test-utils"))]
            RecvHalf::Fake(r) => r.read_chunk(max).await,
        }
    }
}
