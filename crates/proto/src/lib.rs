//! OpenClaw's wire protocol: message types, framing and the codec. No IO.
//!
//! # Protocol flow
//!
//! Every party speaks QUIC to the gateway. There are two ALPNs:
//!
//! * [`ALPN_ENROLL`]: server-authenticated TLS only. A would-be node proves
//!   nothing but possession of a join token. It opens one bidirectional
//!   stream per request and sends an [`EnrollRequest`]; the gateway answers
//!   with one [`EnrollReply`] and finishes the stream. `Submit` creates a
//!   pending request (or, with an auto-approve token, signs at once); `Poll`
//!   asks whether an admin has decided yet.
//! * [`ALPN_SESSION`]: mutual TLS. The peer's name and role come only from
//!   its verified certificate. Every stream, in either direction, opens with
//!   one [`Open`] frame that says what the stream carries:
//!   * a node opens one [`Open::Control`] bidirectional stream, answered by
//!     [`ControlMsg::Welcome`], and one [`Open::Heartbeat`] unidirectional
//!     stream on which it sends a [`Heartbeat`] every interval;
//!   * an admin or bot client opens one bidirectional stream per
//!     [`Open::Request`] and reads one [`Response`].
//!
//! Every message is one frame: a 4-byte big-endian length, then the message
//! encoded by [`codec`]. Frames longer than the reader's limit are refused
//! before any allocation.
//!
//! When the gateway ends a connection on purpose it uses an application
//! close code from [`CloseCode`] and a human-readable reason.

pub mod argv;
pub mod artifact;
pub mod cast;
pub mod clock;
pub mod codec;
pub mod duration;
pub mod env;
pub mod fanout;
pub mod files;
pub mod frame;
pub mod glob;
pub mod identity;
pub mod info;
pub mod job;
pub mod msg;
pub mod names;
pub mod redact;
pub mod size;
pub mod state;
pub mod telemetry;
pub mod tty;
pub mod usage;

pub use artifact::{
    ArtifactFrame, ArtifactInfo, ArtifactReply, ArtifactSpec, JobArtifacts, JobDispatch,
};
pub use fanout::{Batch, FanEvent, FanInfo, FanMember, FanOutSpec};
pub use frame::{FrameError, MAX_FRAME_LEN};
pub use info::*;
pub use job::*;
pub use msg::*;
pub use state::{FanState, JobState, NodeState};
pub use telemetry::*;
pub use usage::*;

/// ALPN for enrollment: server-only TLS, token-authenticated.
pub const ALPN_ENROLL: &[u8] = b"openclaw-enroll/1";
/// ALPN for mutually authenticated sessions of nodes, admins and bots:
/// `openclaw/<PROTOCOL_VERSION>`. Clients offer only this one.
pub const ALPN_SESSION: &[u8] = b"openclaw/3";
/// The previous session protocol, still served by the gateway so that it
/// can be upgraded before its nodes and clients. Its wire is the current
/// one minus later additions: enum variants and messages are only ever
/// appended, never reordered or removed (pinned by the golden encodings in
/// `crates/proto/tests/wire.rs`).
pub const ALPN_SESSION_PREVIOUS: &[u8] = b"openclaw/2";
/// Session ALPNs the gateway serves, newest first.
pub const ALPN_SESSIONS_SERVED: [&[u8]; 2] = [ALPN_SESSION, ALPN_SESSION_PREVIOUS];
/// The DNS name in the gateway's server certificate; clients always verify
/// against it, whatever address they dial.
pub const GATEWAY_SERVER_NAME: &str = "openclaw-gateway";
/// Protocol version carried in the node hello. Protocol 3 (ALPN
/// `openclaw/3`) added a job's standard input, port forwards, and
/// [`HeartbeatV3`] (per-GPU health) on the heartbeat stream. A gateway
/// that speaks 3 still takes protocol-2 nodes ([`NODE_PROTOCOLS_SERVED`])
/// and never sends them what protocol 3 added.
pub const PROTOCOL_VERSION: u32 = 3;
/// Most addresses of one gateway group ([`ControlMsg::Gateways`],
/// [`Response::GatewaySet`]).
pub const MAX_GROUP: usize = 16;
/// Node hello protocols a gateway accepts.
pub const NODE_PROTOCOLS_SERVED: std::ops::RangeInclusive<u32> = 2..=3;
