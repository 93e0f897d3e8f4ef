//! The transport edge shared by gateway, node and clients: rustls and quinn
//! configuration, certificate verifiers, framed stream IO, error
//! descriptions and the on-disk home directory.

pub mod errors;
pub mod framed;
pub mod home;
pub mod tls;

pub use errors::describe_connection_error;
pub use framed::{StreamError, read_frame, write_frame};
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

/// A client endpoint bound to an ephemeral port of the right family for `remote`.
pub fn client_endpoint(remote: SocketAddr) -> Result<quinn::Endpoint, String> {
    let bind: SocketAddr = if remote.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    quinn::Endpoint::client(bind).map_err(|e| format!("cannot open a UDP socket: {e}"))
}
