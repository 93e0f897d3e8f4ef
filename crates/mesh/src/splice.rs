//! A TCP connection spliced onto a QUIC stream pair, both ways: the one
//! copy loop of a port forward, used at both of its ends (the CLI's local
//! listener, the node's connection to its loopback port).

use tokio::net::TcpStream;

/// Copies `tcp` into `send` and `recv` into `tcp` until both directions
/// end; each end is passed on (QUIC `finish`, TCP shutdown). Returns the
/// bytes each way: (TCP to QUIC, QUIC to TCP).
pub async fn splice(
    tcp: TcpStream,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> (std::io::Result<u64>, std::io::Result<u64>) {
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let out = async {
        let n = tokio::io::copy(&mut tcp_read, &mut send).await;
        let _ = send.finish();
        n
    };
    let back = async {
        let n = tokio::io::copy(&mut recv, &mut tcp_write).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp_write).await;
        n
    };
    tokio::join!(out, back)
}
