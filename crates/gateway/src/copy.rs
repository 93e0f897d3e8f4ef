//! Copies (`openclaw cp`): one `Request::Copy` stream per file,
//! directory, link or listing.
//!
//! The gateway checks the request (the node's name, the path's shape),
//! its policy (`[[policy.files]]` per node, user and direction,
//! `policy::may_copy`; bots never reach here, `Request::allowed_for`),
//! takes one of the node's [`PER_NODE`] copy slots, asks the node over
//! its control stream (`ControlMsg::Copy`) and waits for the node's
//! `Open::Copy` stream, as forwards do (`crate::forward`, whose waiting
//! table it shares the shape of). Then it relays the two streams into
//! each other, frame by frame: it reads each frame's header, passes file
//! data through without decoding it, and decodes only small frames, to
//! learn how the copy ended (`FileMsg::Done` or `FileMsg::Error`). Every
//! copy, refused or not, leaves one audit row: who, node, path,
//! direction, bytes each way and the result. Revoking the requester's
//! credential closes its connection, which cuts the relay.

use std::sync::Arc;
use std::time::Duration;

use proto::files::{CopyRequest, FileMsg};
use proto::{ApiError, ControlMsg, ErrorCode, Response};

use crate::forward::{Forwards, NodeSide, Slot};
use crate::peer::Peer;
use crate::shared::Shared;

/// How long a node has to start its file child and answer.
const NODE_ANSWER: Duration = Duration::from_secs(10);
/// Copies open to one node at once (waiting included); the node's stream
/// limit leaves room for this many (`mesh::tls::node_stream_limit`).
const PER_NODE: u32 = mesh::tls::NODE_COPY_STREAMS;
/// Most of a node's copy slots one account may hold at once (its name
/// keys a slot of its own: node names cannot hold a NUL).
const PER_ACCOUNT: u32 = PER_NODE / 2;
/// Frames at most this long are decoded on the way through (the
/// verdict frames are small; file data is passed on undecoded).
const PEEK: usize = 4096;
const _: () = assert!(PEEK < proto::files::FRAME_LIMIT);
/// Most characters of a path or a node's words kept in audit and logs.
const SHOWN: usize = 300;
/// How long a side may stop reading while the other has bytes for it:
/// past this the copy is cut off (both streams reset), so a peer that
/// stops reading never holds a slot and its buffers for ever.
const STALL: Duration = Duration::from_secs(60);

/// How a relayed copy ended, as the frames passing through said.
#[derive(Debug, Default)]
struct Verdict {
    /// The last `Done` or `Error` seen, either way.
    outcome: Option<Result<u64, String>>,
    /// The path the node's `Ready` named (a file put into a directory).
    path: Option<String>,
}

impl Verdict {
    fn see(&mut self, body: &[u8]) {
        match proto::frame::decode::<FileMsg>(body) {
            Ok(FileMsg::Done { bytes }) if !matches!(self.outcome, Some(Err(_))) => {
                self.outcome = Some(Ok(bytes));
            }
            Ok(FileMsg::Error { message }) => {
                self.outcome = Some(Err(proto::names::printable(&message, SHOWN)));
            }
            Ok(FileMsg::Ready { path, .. }) => {
                self.path = Some(proto::names::printable(&path, SHOWN));
            }
            _ => {}
        }
    }
}

/// Serves one `Request::Copy` from `peer` (an admin or a lab member).
pub async fn serve(
    shared: Arc<Shared>,
    peer: Peer,
    req: CopyRequest,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let direction = req.op.direction();
    let path = proto::names::printable(req.op.path(), SHOWN);
    let verb = format!("{} {}", req.op.verb(), direction.as_str());
    let what = format!("{verb} {path}");
    let (_slot, side) = match open(&shared, &peer, &req).await {
        Ok(opened) => opened,
        Err(e) => {
            let shown = proto::names::printable(&req.node, proto::names::MAX_NAME_LEN);
            tracing::info!(peer = %peer.name, node = %shown, %what, "copy refused: {}", e.message);
            audit(
                &shared,
                &peer,
                &shown,
                format!("{what}: refused: {}", e.message),
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
    let node = req.node;
    let done = Response::Done {
        message: format!("node {node} is ready to copy"),
    };
    if mesh::write_frame(&mut send, &done).await.is_err() {
        return;
    }
    let mut verdict = Verdict::default();
    let (to_node, from_node) = {
        let (a, b) = tokio::join!(
            relay(recv, side.send, &shared.metrics.copied_to_nodes),
            relay(side.recv, send, &shared.metrics.copied_from_nodes),
        );
        for v in [&a.1, &b.1] {
            if let Some(p) = &v.path {
                verdict.path = Some(p.clone());
            }
            if let Some(o) = &v.outcome {
                match (o, &verdict.outcome) {
                    (Err(_), _) | (Ok(_), None) => verdict.outcome = Some(o.clone()),
                    _ => {}
                }
            }
        }
        (a.0, b.0)
    };
    let result = match (&verdict.outcome, &to_node, &from_node) {
        (Some(Ok(bytes)), _, _) => format!("ok, {bytes} file bytes"),
        (Some(Err(e)), _, _) => format!("failed: {e}"),
        (None, Err(e), _) | (None, _, Err(e)) => format!("cut off: {e}"),
        (None, Ok(_), Ok(_)) => "ended without a result".to_string(),
    };
    let (up, down) = (
        to_node.as_ref().map_or(0, |n| *n),
        from_node.as_ref().map_or(0, |n| *n),
    );
    // The node's own word for the path when it named one (a file put
    // into a directory), else the request's.
    let what = match &verdict.path {
        Some(p) => format!("{verb} {p}"),
        None => what,
    };
    tracing::info!(peer = %peer.name, %node, %what, up, down, %result, "copy closed");
    audit(
        &shared,
        &peer,
        &node,
        format!("{what}: {up} bytes to the node, {down} bytes back: {result}"),
    )
    .await;
}

/// Copies frames from `from` to `to` until `from` ends, counting bytes
/// into `counter` as they pass and keeping what small frames said.
async fn relay(
    mut from: quinn::RecvStream,
    mut to: quinn::SendStream,
    counter: &prometheus_client::metrics::counter::Counter<u64, std::sync::atomic::AtomicU64>,
) -> (Result<u64, String>, Verdict) {
    let mut verdict = Verdict::default();
    let mut total = 0u64;
    let result = async {
        let mut header = [0u8; proto::frame::HEADER_LEN];
        loop {
            if !read_exact_or_end(&mut from, &mut header).await? {
                return Ok(());
            }
            let len = proto::frame::body_len(header, proto::files::FRAME_LIMIT)
                .map_err(|e| e.to_string())?;
            stalled(to.write_all(&header)).await?;
            // File bytes pass undecoded; every other frame is read whole
            // (at most FRAME_LIMIT) and decoded, so a verdict padded past
            // PEEK still reaches the audit.
            let mut first = vec![0u8; len.min(PEEK)];
            if !read_exact_or_end(&mut from, &mut first).await? && len > 0 {
                return Err("the stream ended inside a frame".into());
            }
            if len <= PEEK || !proto::files::is_data_body(&first) {
                let mut body = first;
                body.resize(len, 0);
                if !read_exact_or_end(&mut from, &mut body[len.min(PEEK)..]).await? && len > PEEK {
                    return Err("the stream ended inside a frame".into());
                }
                verdict.see(&body);
                stalled(to.write_all(&body)).await?;
            } else {
                stalled(to.write_all(&first)).await?;
                let mut left = len - first.len();
                while left > 0 {
                    match from
                        .read_chunk(left, true)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        Some(c) => {
                            left -= c.bytes.len();
                            stalled(to.write_chunk(c.bytes)).await?;
                        }
                        None => return Err("the stream ended inside a frame".into()),
                    }
                }
            }
            let n = (proto::frame::HEADER_LEN + len) as u64;
            total += n;
            counter.inc_by(n);
        }
    }
    .await;
    match result {
        Ok(()) => {
            let _ = to.finish();
            (Ok(total), verdict)
        }
        Err(e) => {
            let _ = to.reset(quinn::VarInt::from_u32(proto::input_code::REFUSED));
            let _ = from.stop(quinn::VarInt::from_u32(proto::input_code::REFUSED));
            (Err(e), verdict)
        }
    }
}

/// A write that must not wait longer than [`STALL`] for the reader.
async fn stalled(
    write: impl std::future::Future<Output = Result<(), quinn::WriteError>>,
) -> Result<(), String> {
    match tokio::time::timeout(STALL, write).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the receiving side stopped reading for {}s; the copy was cut off",
            STALL.as_secs()
        )),
    }
}

/// Fills `buf`; `Ok(false)` when the stream ended cleanly before its
/// first byte.
async fn read_exact_or_end(from: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<bool, String> {
    let mut got = 0;
    while got < buf.len() {
        match from
            .read(&mut buf[got..])
            .await
            .map_err(|e| e.to_string())?
        {
            Some(n) => got += n,
            None if got == 0 => return Ok(false),
            None => return Err("the stream ended inside a frame".into()),
        }
    }
    Ok(true)
}

/// Checks a copy and opens the node's half: the node's name (the peer's
/// text, before it keys anything), the path's shape, policy, a slot of
/// the node's [`PER_NODE`], then the node's answer.
async fn open<'a>(
    shared: &'a Arc<Shared>,
    peer: &Peer,
    req: &CopyRequest,
) -> Result<([Slot<'a>; 2], NodeSide), ApiError> {
    let node = req.node.as_str();
    proto::names::validate_name(node).map_err(|why| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("cannot copy to or from that node: {why}"),
        )
    })?;
    proto::files::components(req.op.path())
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.to_string()))?;
    let user = match peer.role {
        proto::Role::User => proto::identity::user_identity(&peer.name),
        _ => peer.name.clone(),
    };
    crate::policy::may_copy(
        &shared.config().policy,
        &user,
        node,
        req.op.direction(),
        peer.role == proto::Role::User,
    )
    .map_err(|why| ApiError::new(ErrorCode::PermissionDenied, why))?;
    let slots = copy_slots(&shared.copies, node, &user)?;
    let side = connect(shared, node, req).await?;
    Ok((slots, side))
}

/// Takes a copy's two slots: one of the account's [`PER_ACCOUNT`] on the
/// node (so a member who opens copies and stops reading cannot starve
/// everyone else; the key adds a NUL, which no node name holds), then one
/// of the node's [`PER_NODE`]. Either refusal says which limit and what
/// to do.
fn copy_slots<'a>(copies: &'a Forwards, node: &str, user: &str) -> Result<[Slot<'a>; 2], ApiError> {
    let mine = copies
        .slot(&format!("{node}\u{0}{user}"), PER_ACCOUNT)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ResourceExhausted,
                format!("you already have {PER_ACCOUNT} copies open to or from node {node} (the most one account may); wait for some to end and try again"),
            )
        })?;
    let slot = copies.slot(node, PER_NODE).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ResourceExhausted,
            format!("{PER_NODE} copies to or from node {node} are already open; wait for some to end and try again"),
        )
    })?;
    Ok([slot, mine])
}

/// One audit row for a copy (or its refusal).
async fn audit(shared: &Shared, peer: &Peer, node: &str, detail: String) {
    let (actor, target, now) = (peer.name.clone(), node.to_string(), shared.clock.unix());
    let audited = shared
        .store
        .call(move |tx| tx.audit(now, &actor, "cp", &target, &detail))
        .await;
    if let Err(e) = audited {
        tracing::error!(%node, error = %e, "cannot audit a copy");
    }
}

/// Asks `node` to serve the copy and waits for its stream.
async fn connect(
    shared: &Arc<Shared>,
    node: &str,
    req: &CopyRequest,
) -> Result<NodeSide, ApiError> {
    let control = crate::forward::node_link(shared, node, "copies")?;
    let Some((id, answer)) = shared.copies.start(node) else {
        return Err(ApiError::new(
            ErrorCode::ResourceExhausted,
            "too many copies are already waiting for their nodes; try again",
        ));
    };
    let msg = ControlMsg::Copy {
        id,
        op: req.op.clone(),
    };
    let side = shared
        .copies
        .ask(&control, node, (id, answer), msg, NODE_ANSWER, "copy")
        .await?;
    match side.error {
        Some(e) => Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            format!("node {node} refused the copy: {e}"),
        )),
        None => Ok(side),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn attack_one_account_cannot_hold_every_copy_slot_of_a_node() {
        let copies = Forwards::default();
        let mallory: Vec<_> = (0..PER_ACCOUNT)
            .map(|_| copy_slots(&copies, "gpu-1", "user:mallory").unwrap())
            .collect();
        let e = copy_slots(&copies, "gpu-1", "user:mallory").err().unwrap();
        assert!(
            e.message.contains("you already have 16 copies open"),
            "{}",
            e.message
        );
        // Another account still gets the rest of the node's slots, then
        // the node's own limit applies.
        let bob: Vec<_> = (0..PER_NODE - PER_ACCOUNT)
            .map(|_| copy_slots(&copies, "gpu-1", "bob").unwrap())
            .collect();
        let e = copy_slots(&copies, "gpu-1", "alice").err().unwrap();
        assert!(
            e.message
                .contains("32 copies to or from node gpu-1 are already open"),
            "{}",
            e.message
        );
        // Another node is not counted; ending copies gives slots back.
        assert!(copy_slots(&copies, "gpu-2", "user:mallory").is_ok());
        drop(mallory);
        drop(bob);
        assert!(copy_slots(&copies, "gpu-1", "user:mallory").is_ok());
    }

    fn body(m: &FileMsg) -> Vec<u8> {
        proto::frame::encode(m).unwrap()[proto::frame::HEADER_LEN..].to_vec()
    }

    #[test]
    fn the_audited_result_is_the_last_word_and_an_error_wins() {
        let mut v = Verdict::default();
        v.see(&body(&FileMsg::Ready {
            path: "/srv/lab/f\u{1b}[2J".into(),
            size: 0,
            mode: 0,
            mtime: 0,
            offset: 0,
            prefix: [0; 32],
        }));
        v.see(&body(&FileMsg::Data(vec![1, 2, 3])));
        assert!(v.outcome.is_none());
        // The node's words are escaped before they reach audit or logs.
        assert_eq!(v.path.as_deref(), Some("/srv/lab/f\\u{1b}[2J"));
        v.see(&body(&FileMsg::Done { bytes: 3 }));
        assert!(matches!(v.outcome, Some(Ok(3))));
        v.see(&body(&FileMsg::Error {
            message: "checksum mismatch".into(),
        }));
        // A Done after an Error never turns a failure into a success.
        v.see(&body(&FileMsg::Done { bytes: 3 }));
        assert!(matches!(&v.outcome, Some(Err(e)) if e == "checksum mismatch"));
        // Garbage is ignored.
        v.see(&[0xff, 0xff, 0xff]);
        assert!(v.outcome.is_some());
    }
}
