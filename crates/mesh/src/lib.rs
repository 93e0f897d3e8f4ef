//! The transport edge shared by gateway, node and clients: rustls and quinn
//! configuration, certificate verifiers, framed stream IO, error
//! descriptions and the on-disk home directory.

pub mod errors;
pub mod framed;
pub mod group;
pub mod home;
pub mod splice;
pub mod tls;

pub use errors::describe_connection_error;
pub use framed::{
    FrameRecv, FrameSend, Incoming, StreamError, read_data, read_data_buffered, read_frame,
    read_incoming, write_data, write_data_chunks, write_frame,
};
pub use home::Home;
pub use tls::RevokedSerials;

use std::net::SocketAddr;

/// Most gateway addresses one list may hold.
pub const MAX_GATEWAYS: usize = proto::MAX_GROUP;

/// The gateways in an address list: `host:port[,host:port…]`, as tokens,
/// node configs and credentials carry it when several gateways share
/// state (a leader and its standbys). Nodes and clients try them in
/// order. Empty entries are skipped; at most [`MAX_GATEWAYS`].
pub fn gateway_list(addrs: &str) -> Vec<&str> {
    addrs
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .take(MAX_GATEWAYS)
        .collect()
}

/// Where to dial after an attempt on `list[i]` failed: the next address,
/// and whether a whole round of the list has now failed since the last
/// session (`failed_in_row` counts failures since one worked), after
/// which the caller backs off instead of trying again at once.
pub fn next_gateway(i: usize, len: usize, failed_in_row: usize) -> (usize, bool) {
    let len = len.max(1);
    ((i + 1) % len, failed_in_row >= len)
}

/// With several gateways, how long a handshake may take before the next
/// one is tried.
pub const HANDSHAKE_LIMIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Completes a handshake; with more than one gateway in `list_len`, gives
/// up after [`HANDSHAKE_LIMIT`] (`None`: the gateway did not answer), so a
/// silent one does not hold up the next. With one, waits as long as QUIC
/// does.
pub async fn handshake(
    connecting: quinn::Connecting,
    list_len: usize,
) -> Option<Result<quinn::Connection, quinn::ConnectionError>> {
    if list_len > 1 {
        tokio::time::timeout(HANDSHAKE_LIMIT, connecting).await.ok()
    } else {
        Some(connecting.await)
    }
}

/// Whether a failed connection attempt means "try the next gateway": it
/// timed out, was reset, or was refused before the handshake (what a
/// standby does), as opposed to a TLS or application refusal, which every
/// gateway would repeat.
pub fn try_next_gateway(e: &quinn::ConnectionError) -> bool {
    match e {
        quinn::ConnectionError::TimedOut | quinn::ConnectionError::Reset => true,
        quinn::ConnectionError::ConnectionClosed(c) => {
            c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED
        }
        _ => false,
    }
}

/// Resolves `host:port` to one socket address, preferring IPv4.
pub async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve gateway address {addr:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("gateway address {addr:?} resolves to nothing"))
}

/// Socket buffers the gateway asks for. A reconnect storm (a restarted
/// gateway, thousands of nodes dialling back at once) overflows Linux's
/// default of about 200 KB, and every dropped handshake packet costs its
/// node a retransmission timeout. The kernel caps the request at
/// `net.core.rmem_max` / `wmem_max`; the gateway logs what it got.
pub const SERVER_SOCKET_BUFFER: usize = 4 << 20;

fn endpoint(
    server: Option<quinn::ServerConfig>,
    bind: SocketAddr,
    big_buffers: bool,
) -> std::io::Result<quinn::Endpoint> {
    let socket = if big_buffers {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: a smaller buffer still works, it just drops sooner.
        let _ = s.set_recv_buffer_size(SERVER_SOCKET_BUFFER);
        let _ = s.set_send_buffer_size(SERVER_SOCKET_BUFFER);
        let got = s.recv_buffer_size().unwrap_or(0);
        if got < SERVER_SOCKET_BUFFER {
            tracing::info!(
                asked = SERVER_SOCKET_BUFFER,
                got,
                "the UDP receive buffer is smaller than asked; for thousands of nodes raise net.core.rmem_max"
            );
        }
        s.bind(&bind.into())?;
        std::net::UdpSocket::from(s)
    } else {
        std::net::UdpSocket::bind(bind)?
    };
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for quinn"))?;
    let mut config = quinn::EndpointConfig::default();
    // The largest datagram this endpoint accepts, announced to its peers
    // (quinn's default is an Ethernet frame's 1,472): without it a peer's
    // path MTU discovery stops there even on loopback. quinn sizes its
    // receive buffer from it (this × 64 GRO segments × 32 datagrams, 13 MiB
    // instead of 3 MiB), allocated zeroed and untouched, so only the pages
    // datagrams land in become resident.
    config
        .max_udp_payload_size(tls::UDP_PAYLOAD_RANGE.1)
        .map_err(|e| std::io::Error::other(format!("UDP payload limit: {e}")))?;
    quinn::Endpoint::new(config, server, socket, runtime)
}

/// A server endpoint (the gateway) bound to `bind`.
pub fn server_endpoint(
    config: quinn::ServerConfig,
    bind: SocketAddr,
) -> std::io::Result<quinn::Endpoint> {
    endpoint(Some(config), bind, true)
}

/// A client endpoint bound to an ephemeral port of the right family for `remote`.
pub fn client_endpoint(remote: SocketAddr) -> Result<quinn::Endpoint, String> {
    let bind: SocketAddr = if remote.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    endpoint(None, bind, false).map_err(|e| format!("cannot open a UDP socket: {e}"))
}

/// A client endpoint that many connections share (a load generator
/// simulating thousands of nodes), with the gateway's socket buffers: at
/// the default of about 200 KB a fan-out to 10,000 simulated nodes dropped
/// packets by the thousand, and each drop cost a retransmission timeout.
pub fn shared_client_endpoint(remote: SocketAddr) -> Result<quinn::Endpoint, String> {
    let bind: SocketAddr = if remote.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    endpoint(None, bind, true).map_err(|e| format!("cannot open a UDP socket: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn gateway_lists_split_trim_and_rotate() {
        assert_eq!(super::gateway_list("a:1"), ["a:1"]);
        assert_eq!(
            super::gateway_list(" a:1, b:2,,c:3 "),
            ["a:1", "b:2", "c:3"]
        );
        assert!(super::gateway_list("").is_empty());
        assert_eq!(
            super::gateway_list(&"h:1,".repeat(40)).len(),
            super::MAX_GATEWAYS
        );
        // Two gateways: the first failure moves on at once, the second
        // (a whole round) backs off.
        assert_eq!(super::next_gateway(0, 2, 1), (1, false));
        assert_eq!(super::next_gateway(1, 2, 2), (0, true));
        assert_eq!(super::next_gateway(0, 1, 1), (0, true));
        assert_eq!(super::next_gateway(0, 0, 1), (0, true));
    }
}
