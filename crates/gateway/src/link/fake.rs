//! An in-memory connection for the test harness (`crate::harness`): the
//! gateway's end ([`FakeLink`], served by the real session code as a
//! [`super::Link::Fake`]) and the peer's ([`FakeDialer`]), joined by
//! `tokio::io::duplex` pipes. Streams fail, as QUIC streams do, once the
//! connection closes. Compiled only for tests and the `test-utils`
//! feature.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use mesh::{FrameRecv, FrameSend, StreamError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{Mutex, mpsc, watch};

/// Bytes an in-memory pipe buffers before a writer waits.
const PIPE: usize = 256 * 1024;

static NEXT_LINK: AtomicUsize = AtomicUsize::new(1);

/// One direction of an in-memory stream, as either side holds it. It
/// fails, as a QUIC stream does, once its connection closes.
pub struct FakeStream {
    pipe: Option<DuplexStream>,
    closed: watch::Receiver<Option<String>>,
    /// Counts what the node side writes (the gateway's datagram count).
    sent: Option<Arc<AtomicU64>>,
}

fn lost(closed: &watch::Receiver<Option<String>>) -> StreamError {
    let why = closed.borrow().clone().unwrap_or_default();
    StreamError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        format!("connection closed: {why}"),
    ))
}

impl FakeStream {
    /// Ends the stream after what was written.
    pub fn finish(&mut self) {
        self.pipe = None;
    }

    async fn write_bytes(&mut self, buf: &[u8]) -> Result<(), StreamError> {
        if self.closed.borrow().is_some() {
            return Err(lost(&self.closed));
        }
        let Some(pipe) = self.pipe.as_mut() else {
            return Err(StreamError::Io(std::io::Error::other(
                "stream already finished",
            )));
        };
        let mut closed = self.closed.clone();
        tokio::select! {
            r = pipe.write_all(buf) => r?,
            _ = closed.wait_for(Option::is_some) => return Err(lost(&self.closed)),
        }
        if let Some(n) = &self.sent {
            n.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl FrameRecv for FakeStream {
    async fn read_some(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StreamError> {
        let Some(pipe) = self.pipe.as_mut() else {
            return Ok(None);
        };
        let mut closed = self.closed.clone();
        tokio::select! {
            r = pipe.read(buf) => match r? {
                0 => Ok(None),
                n => Ok(Some(n)),
            },
            _ = closed.wait_for(Option::is_some) => Err(lost(&self.closed)),
        }
    }

    async fn read_chunk(&mut self, max: usize) -> Result<Option<bytes::Bytes>, StreamError> {
        let mut buf = vec![0u8; max.min(64 * 1024)];
        Ok(self.read_some(&mut buf).await?.map(|n| {
            buf.truncate(n);
            bytes::Bytes::from(buf)
        }))
    }
}

impl FrameSend for FakeStream {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), StreamError> {
        self.write_bytes(buf).await
    }

    async fn write_chunks(&mut self, chunks: &mut [bytes::Bytes]) -> Result<(), StreamError> {
        for c in chunks.iter() {
            self.write_bytes(c).await?;
        }
        Ok(())
    }
}

/// The gateway's end of an in-memory connection.
pub struct FakeLink {
    id: usize,
    remote: SocketAddr,
    closed: watch::Sender<Option<String>>,
    bi: Mutex<mpsc::Receiver<(FakeStream, FakeStream)>>,
    uni: Mutex<mpsc::Receiver<FakeStream>>,
    received: Arc<AtomicU64>,
}

impl FakeLink {
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    pub(crate) fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub(crate) fn close(&self, code: u32, reason: &[u8]) {
        let why = format!("closed: {} (code {code})", String::from_utf8_lossy(reason));
        self.closed.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(why);
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn close_reason(&self) -> Option<String> {
        self.closed.borrow().clone()
    }

    pub(crate) async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub(crate) async fn accept_bi(&self) -> Option<(FakeStream, FakeStream)> {
        let mut rx = self.bi.lock().await;
        tokio::select! {
            s = rx.recv() => s,
            () = self.closed() => None,
        }
    }

    pub(crate) async fn accept_uni(&self) -> Option<FakeStream> {
        let mut rx = self.uni.lock().await;
        tokio::select! {
            s = rx.recv() => s,
            () = self.closed() => None,
        }
    }
}

/// The peer's end of an in-memory connection: it opens streams and may
/// close the connection.
pub struct FakeDialer {
    link: Arc<FakeLink>,
    bi: mpsc::Sender<(FakeStream, FakeStream)>,
    uni: mpsc::Sender<FakeStream>,
}

impl FakeDialer {
    /// A new connection: the peer's end and the gateway's.
    pub fn new() -> (FakeDialer, Arc<FakeLink>) {
        let (bi_tx, bi_rx) = mpsc::channel(64);
        let (uni_tx, uni_rx) = mpsc::channel(8);
        let id = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
        let port = 40_000 + u16::try_from(id % 20_000).unwrap_or(0);
        let link = Arc::new(FakeLink {
            id,
            remote: SocketAddr::from(([127, 0, 0, 1], port)),
            closed: watch::channel(None).0,
            bi: Mutex::new(bi_rx),
            uni: Mutex::new(uni_rx),
            received: Arc::new(AtomicU64::new(0)),
        });
        let dialer = FakeDialer {
            link: link.clone(),
            bi: bi_tx,
            uni: uni_tx,
        };
        (dialer, link)
    }

    fn pipe(&self, counted: bool) -> (FakeStream, FakeStream) {
        let (a, b) = tokio::io::duplex(PIPE);
        let closed = self.link.closed.subscribe();
        let mine = FakeStream {
            pipe: Some(a),
            closed: closed.clone(),
            sent: counted.then(|| self.link.received.clone()),
        };
        let theirs = FakeStream {
            pipe: Some(b),
            closed,
            sent: None,
        };
        (mine, theirs)
    }

    /// Opens a bidirectional stream: what this side sends on, what it
    /// reads from. `None` once the gateway stopped accepting.
    pub async fn open_bi(&self) -> Option<(FakeStream, FakeStream)> {
        let (send, gw_recv) = self.pipe(true);
        let (recv, gw_send) = self.pipe(false);
        self.bi.send((gw_send, gw_recv)).await.ok()?;
        Some((send, recv))
    }

    /// Opens a unidirectional stream; `None` once the gateway stopped
    /// accepting.
    pub async fn open_uni(&self) -> Option<FakeStream> {
        let (send, gw_recv) = self.pipe(true);
        self.uni.send(gw_recv).await.ok()?;
        Some(send)
    }

    /// A stream that is already finished, to stand in for one handed
    /// away.
    pub fn finished(&self) -> FakeStream {
        FakeStream {
            pipe: None,
            closed: self.link.closed.subscribe(),
            sent: None,
        }
    }

    /// Why the connection closed, if it has.
    pub fn close_reason(&self) -> Option<String> {
        self.link.close_reason()
    }

    /// Closes the connection from the peer's side.
    pub fn close(&self) {
        self.link.close(0, b"the peer closed the connection");
    }
}
