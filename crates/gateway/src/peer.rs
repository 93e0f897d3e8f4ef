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
