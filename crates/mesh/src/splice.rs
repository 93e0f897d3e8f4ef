//! Two byte streams spliced together, both ways: the one copy loop of a
//! port forward, at each of its three hops (the CLI's local TCP
//! connection onto its QUIC stream, the gateway's two QUIC streams, the
//! node's QUIC stream onto its TCP connection).

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

/// Copies `a_read` into `b_write` and `b_read` into `a_write` until both
/// directions end; each end is passed on by shutting the writer down (TCP
/// shutdown, QUIC `finish`). Returns the bytes each way: (a to b, b to a).
pub async fn splice(
    mut a_read: impl AsyncRead + Unpin,
    mut a_write: impl AsyncWrite + Unpin,
    mut b_read: impl AsyncRead + Unpin,
    mut b_write: impl AsyncWrite + Unpin,
) -> (std::io::Result<u64>, std::io::Result<u64>) {
    let there = async {
        let n = tokio::io::copy(&mut a_read, &mut b_write).await;
        let _ = b_write.shutdown().await;
        n
    };
    let back = async {
        let n = tokio::io::copy(&mut b_read, &mut a_write).await;
        let _ = a_write.shutdown().await;
        n
    };
    tokio::join!(there, back)
}
