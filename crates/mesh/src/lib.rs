//! The transport edge shared by gateway, node and clients: rustls and quinn
//! configuration, certificate verifiers, framed stream IO, error
//! descriptions and the on-disk home directory.

pub mod errors;
pub mod framed;
pub mod home;
pub mod tls;

pub use errors::describe_connection_error;
pub use framed::{
    Incoming, StreamError, read_data, read_frame, read_incoming, write_data, write_data_chunks,
    write_frame,
};
pub use home::Home;
pub use tls::RevokedSerials;

use std::net::SocketAddr;

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

fn endpoint(
    server: Option<quinn::ServerConfig>,
    bind: SocketAddr,
) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for quinn"))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
}

/// A server endpoint (the gateway) bound to `bind`.
pub fn server_endpoint(
    config: quinn::ServerConfig,
    bind: SocketAddr,
) -> std::io::Result<quinn::Endpoint> {
    endpoint(Some(config), bind)
}

/// A client endpoint bound to an ephemeral port of the right family for `remote`.
pub fn client_endpoint(remote: SocketAddr) -> Result<quinn::Endpoint, String> {
    let bind: SocketAddr = if remote.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    endpoint(None, bind).map_err(|e| format!("cannot open a UDP socket: {e}"))
}
