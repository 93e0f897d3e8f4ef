//! Who is on the other end of a session: what the verified certificate and
//! the gateway's state say, never what the peer claims. A module of its own
//! so that the API, jobs and credentials code need not import the session
//! code that calls them.

use proto::Role;

/// The verified identity of a session peer.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Certificate CN.
    pub name: String,
    /// Certificate role.
    pub role: Role,
    /// Certificate serial.
    pub serial: String,
    /// A bot's chat namespace, from the gateway's state (never from the peer).
    pub namespace: Option<String>,
    /// A node's GPU cap, from the gateway's state.
    pub max_gpus: Option<u32>,
}

/// The ALPN a connection negotiated.
pub(crate) fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol)
}

/// The session protocol a connection speaks: [`proto::PROTOCOL_VERSION`],
/// or the one before it for a peer on [`proto::ALPN_SESSION_PREVIOUS`]
/// (which must never be sent what was added since).
pub(crate) fn protocol_of(conn: &quinn::Connection) -> u32 {
    match alpn(conn) {
        Some(p) if p == proto::ALPN_SESSION_PREVIOUS => proto::PROTOCOL_VERSION - 1,
        _ => proto::PROTOCOL_VERSION,
    }
}
