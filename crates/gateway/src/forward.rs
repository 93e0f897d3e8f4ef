//! Port forwards (`openclaw forward NODE [LOCAL:]PORT`, as `ssh -L`).
//!
//! Each TCP connection the CLI accepts is one `Request::Forward` stream.
//! The gateway checks its policy (`policy.allow_forward`, and for a lab
//! member `policy::may_forward`: not to a node policy denies it), asks the node
//! over its control stream (`ControlMsg::Forward { id, port }`), and waits
//! for the node's `Open::Forward { id, error }` stream: the node connects
//! to 127.0.0.1:PORT only if its node.toml `forward_ports` lists the port.
//! Then the gateway copies both streams into each other until both
//! directions end, and writes one audit row with the byte counts. Nodes
//! still only dial out: the node opens its half of every forward.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::{ApiError, ControlMsg, ErrorCode, Response};
use tokio::sync::oneshot;

use crate::peer::Peer;
use crate::shared::Shared;

/// How long a node has to answer a forward.
const NODE_ANSWER: Duration = Duration::from_secs(10);
/// Forwards waiting for their node's answer at once, gateway-wide.
const MAX_WAITING: usize = 1024;
/// Forwards open to one node at once (waiting for it included): each is a
/// stream the node opens, and the node's stream limit leaves only this
/// many beside its jobs' (`mesh::tls::node_stream_limit`).
const PER_NODE: u32 = mesh::tls::NODE_FORWARD_STREAMS;
/// Most characters of a node's refusal kept: it is the node's text.
const MAX_NODE_ERROR: usize = 500;

/// A node's half of a forward (or of a copy, `crate::copy`).
pub(crate) struct NodeSide {
    pub(crate) send: quinn::SendStream,
    pub(crate) recv: quinn::RecvStream,
    pub(crate) error: Option<String>,
}

/// Forwards waiting for their node's stream: id → (node, where to hand it).
/// Copies (`crate::copy`) keep a table of their own of the same kind.
#[derive(Default)]
pub struct Forwards {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, (String, oneshot::Sender<NodeSide>)>>,
    /// Forwards per node, waiting or open (at most [`PER_NODE`] each).
    open: Mutex<HashMap<String, u32>>,
}

/// One forward counted against its node's [`PER_NODE`]; uncounted when
/// dropped, however the forward ends.
pub(crate) struct Slot<'a> {
    forwards: &'a Forwards,
    node: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.forwards.with_open(|m| {
            if let Some(n) = m.get_mut(&self.node) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.node);
                }
            }
        });
    }
}

impl Forwards {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<u64, (String, oneshot::Sender<NodeSide>)>) -> T,
    ) -> T {
        match self.waiting.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    fn with_open<T>(&self, f: impl FnOnce(&mut HashMap<String, u32>) -> T) -> T {
        match self.open.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Counts a forward to `node` for as long as the slot lives, or `None`
    /// when `limit` are open to it already.
    pub(crate) fn slot(&self, node: &str, limit: u32) -> Option<Slot<'_>> {
        self.with_open(|m| {
            let n = m.entry(node.to_string()).or_insert(0);
            if *n >= limit {
                return None;
            }
            *n += 1;
            Some(())
        })?;
        Some(Slot {
            forwards: self,
            node: node.to_string(),
        })
    }

    /// A new forward to `node`, or `None` when too many wait already.
    pub(crate) fn start(&self, node: &str) -> Option<(u64, oneshot::Receiver<NodeSide>)> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.with(|m| {
            if m.len() >= MAX_WAITING {
                return None;
            }
            m.insert(id, (node.to_string(), tx));
            Some((id, rx))
        })
    }

    pub(crate) fn forget(&self, id: u64) {
        self.with(|m| m.remove(&id));
    }

    /// Sends `msg` (which carries `id`, from [`Forwards::start`]) on
    /// `node`'s control queue and waits up to `wait` for the node's answer
    /// stream; `id` is forgotten either way. `what` ("forward", "copy")
    /// names the request in the errors. The node's own refusal comes back
    /// in [`NodeSide::error`], for the caller to word.
    pub(crate) async fn ask(
        &self,
        control: &crate::registry::Control,
        node: &str,
        (id, answer): (u64, oneshot::Receiver<NodeSide>),
        msg: ControlMsg,
        wait: Duration,
        what: &str,
    ) -> Result<NodeSide, ApiError> {
        if control.try_send(Box::new(msg)).is_err() {
            self.forget(id);
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("node {node} disconnected or is not reading its control stream; try again"),
            ));
        }
        let answered = tokio::time::timeout(wait, answer).await;
        self.forget(id);
        match answered {
            Ok(Ok(side)) => Ok(side),
            Ok(Err(_)) | Err(_) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "node {node} did not answer the {what} within {wait:?}; check 'openclaw node show {node}'"
                ),
            )),
        }
    }
}

/// Serves one `Request::Forward` from `peer` (an admin or a lab member:
/// see `Request::allowed_for`). Every connection, refused or not, leaves
/// one audit row.
pub async fn serve(
    shared: Arc<Shared>,
    peer: Peer,
    node: String,
    port: u16,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let (_slot, side) = match open(&shared, &peer, &node, port).await {
        Ok(opened) => opened,
        Err(e) => {
            // The request is the peer's text: shown escaped and cut until
            // it has passed the name check.
            let shown = proto::names::printable(&node, proto::names::MAX_NAME_LEN);
            tracing::info!(peer = %peer.name, node = %shown, port, "forward refused: {}", e.message);
            audit(
                &shared,
                &peer,
                &shown,
                format!("127.0.0.1:{port}: refused: {}", e.message),
            )
            .await;
            if mesh::write_frame(&mut send, &Response::Error(e))
                .await
                .is_ok()
            {
                let _ = send.finish();
            }
            return;
        }
    };
    let done = Response::Done {
        message: format!("forwarding to 127.0.0.1:{port} on node {node}"),
    };
    if mesh::write_frame(&mut send, &done).await.is_err() {
        return;
    }
    tracing::info!(peer = %peer.name, %node, port, "forward open");
    // The slot is held until both directions end: the node's stream is
    // open as long.
    let (up, down) = mesh::splice::splice(recv, send, side.recv, side.send).await;
    let (up_bytes, down_bytes) = (
        up.as_ref().map_or(0, |n| *n),
        down.as_ref().map_or(0, |n| *n),
    );
    shared.metrics.forwarded.inc_by(up_bytes + down_bytes);
    let detail = format!(
        "127.0.0.1:{port}: {up_bytes} bytes to the node, {down_bytes} bytes back{}",
        match (&up, &down) {
            (Ok(_), Ok(_)) => String::new(),
            (Err(e), _) | (_, Err(e)) => format!(" (ended by an error: {e})"),
        }
    );
    tracing::info!(peer = %peer.name, %node, port, up_bytes, down_bytes, "forward closed");
    audit(&shared, &peer, &node, detail).await;
}

/// Checks a forward from `peer` to `port` on `node` and opens the node's
/// half: the request's own checks (the node name, which is the peer's
/// text, before it keys anything; port 0), policy for a lab member (not to
/// a node that policy keeps its jobs off), a slot of the node's
/// [`PER_NODE`], then the node's answer.
async fn open<'a>(
    shared: &'a Arc<Shared>,
    peer: &Peer,
    node: &str,
    port: u16,
) -> Result<(Slot<'a>, NodeSide), ApiError> {
    proto::names::validate_name(node).map_err(|why| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("cannot forward to that node: {why}"),
        )
    })?;
    if port == 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "port 0 cannot be forwarded; name a port from 1 to 65535",
        ));
    }
    if peer.role == proto::Role::User {
        crate::policy::may_forward(
            &shared.config().policy,
            &proto::identity::user_identity(&peer.name),
            node,
        )
        .map_err(|why| ApiError::new(ErrorCode::PermissionDenied, why))?;
    }
    let slot = shared.forwards.slot(node, PER_NODE).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ResourceExhausted,
            format!(
                "{PER_NODE} forwards to node {node} are already open; close some (each TCP connection is one) and try again"
            ),
        )
    })?;
    let side = connect(shared, node, port).await?;
    Ok((slot, side))
}

/// One audit row for a forwarded connection (or its refusal).
async fn audit(shared: &Shared, peer: &Peer, node: &str, detail: String) {
    let (actor, target, now) = (peer.name.clone(), node.to_string(), shared.clock.unix());
    let audited = shared
        .store
        .call(move |tx| tx.audit(now, &actor, "forward", &target, &detail))
        .await;
    if let Err(e) = audited {
        tracing::error!(%node, error = %e, "cannot audit a forward");
    }
}

/// The control queue of `node` for a stream it must answer (a forward, a
/// copy: `what`, for the error), with room on its connection for such
/// streams: refused when it is not connected, or speaks a protocol before
/// 3, which knew neither.
pub(crate) fn node_link(
    shared: &Shared,
    node: &str,
    what: &str,
) -> Result<crate::registry::Control, ApiError> {
    let (Some(control), Some(conn)) = (
        shared.registry.control(node),
        shared.registry.connection(node),
    ) else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("node {node} is not connected (unknown or offline); run 'openclaw node list'"),
        ));
    };
    let speaks = conn.protocol();
    if speaks < 3 {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            format!(
                "node {node} runs an older agent (protocol {speaks}) without {what}; upgrade it"
            ),
        ));
    }
    // The stream the node opens for it needs room beside its jobs'.
    shared.registry.make_side_room(node);
    Ok(control)
}

/// Asks `node` for a connection to its port and waits for its answer.
async fn connect(shared: &Arc<Shared>, node: &str, port: u16) -> Result<NodeSide, ApiError> {
    if !shared.config().policy.allow_forward {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "forwards are off on this gateway (policy.allow_forward = false in gateway.toml)",
        ));
    }
    let control = node_link(shared, node, "forwards")?;
    let Some((id, answer)) = shared.forwards.start(node) else {
        return Err(ApiError::new(
            ErrorCode::ResourceExhausted,
            format!("{MAX_WAITING} forwards are already waiting for their nodes; try again"),
        ));
    };
    let msg = ControlMsg::Forward { id, port };
    let side = shared
        .forwards
        .ask(&control, node, (id, answer), msg, NODE_ANSWER, "forward")
        .await?;
    match side.error {
        Some(e) => Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            format!("node {node} did not connect to port {port}: {e}"),
        )),
        None => Ok(side),
    }
}

/// A node's `Open::Forward` (or `Open::Copy`) stream: handed to the
/// forward (copy) waiting for it in `table`, if that one is for this
/// node; any other is reset.
pub(crate) fn node_answered(
    table: &Forwards,
    peer: &Peer,
    id: u64,
    error: Option<String>,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let waiting = table.with(|m| match m.get(&id) {
        Some((node, _)) if *node == peer.name => m.remove(&id).map(|(_, tx)| tx),
        _ => None,
    });
    // The node's words, shown to the admin and kept in the audit trail:
    // escaped and cut here, once.
    let error = error.map(|e| proto::names::printable(&e, MAX_NODE_ERROR));
    let side = NodeSide { send, recv, error };
    match waiting {
        Some(tx) => {
            // The forward gave up meanwhile: its end is dropped here.
            let _ = tx.send(side);
        }
        None => {
            tracing::info!(node = %peer.name, id, "refused a forward stream no forward of this node waits for");
            let mut send = side.send;
            let _ = send.reset(quinn::VarInt::from_u32(proto::input_code::REFUSED));
        }
    }
}
