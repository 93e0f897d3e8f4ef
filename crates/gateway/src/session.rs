//! Mutually authenticated sessions: identity from the certificate, node
//! control and heartbeat streams, and API requests.

use std::sync::Arc;
use std::time::Duration;

use proto::{
    ApiError, CloseCode, ControlMsg, ErrorCode, FanEvent, Heartbeat, JobEvent, Open, Request,
    Response, Role,
};
use rustls::pki_types::CertificateDer;

use crate::link::{Link, RecvHalf, SendHalf};
use crate::peer::Peer;
use crate::registry::NodeMeta;
use crate::shared::{Shared, off_runtime};
use crate::store::NodeState;
use crate::{api, copy, enroll, forward, jobs};

/// Session frames: API requests and control messages.
pub const SESSION_FRAME_LIMIT: usize = proto::MAX_FRAME_LEN;
/// Heartbeat frames are tiny.
const HEARTBEAT_FRAME_LIMIT: usize = 4 * 1024;
/// Control messages (job dispatches) queued for one node.
const CONTROL_QUEUE: usize = 4096;
/// Live connections one node certificate may hold: the current one and
/// one replacing it.
const NODE_CONNECTIONS_PER_CERT: usize = 2;
/// The largest first frame a node sends on a stream (a hello, a job
/// report's header, a renewal's CSR): a node cannot make the gateway hold
/// a megabyte per stream.
const NODE_OPEN_FRAME_LIMIT: usize = 64 * 1024;
/// How long a client may take to open its first stream.
const FIRST_STREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts one incoming connection and dispatches it by ALPN.
pub async fn handle_incoming(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%remote, error = %e, "handshake failed");
            shared
                .metrics
                .handshake_failure(crate::metrics::handshake_reason(&e));
            return;
        }
    };
    match crate::peer::alpn(&conn).as_deref() {
        Some(p) if p == proto::ALPN_ENROLL => enroll::serve(shared, conn).await,
        Some(p) if p == proto::ALPN_SESSION => session(shared, conn).await,
        Some(p) if p == proto::ALPN_SESSION_PREVIOUS => {
            tracing::info!(
                remote = %conn.remote_address(),
                "a peer speaks the previous session protocol ({}); upgrade it to this gateway's version",
                String::from_utf8_lossy(p)
            );
            session(shared, conn).await
        }
        _ => conn.close(CloseCode::Protocol.code().into(), b"unknown ALPN"),
    }
}

fn close(conn: &Link, code: CloseCode, reason: &str) {
    conn.close(code.code(), reason.as_bytes());
}

/// A QUIC session: the certificate its mTLS handshake verified, then
/// [`serve`].
async fn session(shared: Arc<Shared>, conn: quinn::Connection) {
    let cert = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|certs| certs.first().cloned());
    serve(shared, Link::Quic(conn), cert).await;
}

/// Serves a mutually authenticated session on `conn`, whose transport
/// verified `cert` (the peer's leaf certificate, `None` when it sent
/// none): the peer's identity comes from that certificate and the state,
/// then its streams are served until the connection ends. The only
/// caller outside this module is the in-process harness, whose fake
/// connections present a CA-issued certificate as the TLS layer would.
pub(crate) async fn serve(shared: Arc<Shared>, conn: Link, cert: Option<CertificateDer<'static>>) {
    let remote = conn.remote_address();
    let Some(cert) = cert else {
        tracing::info!(%remote, "session without a client certificate");
        shared.metrics.handshake_failure("no_client_certificate");
        close(
            &conn,
            CloseCode::NoClientCert,
            "this endpoint needs a client certificate; enroll first with 'openclaw node enroll'",
        );
        return;
    };
    let peer = match pki::parse_peer_cert(&cert) {
        Ok(p) => p,
        Err(e) => {
            close(&conn, CloseCode::NotApproved, &e.to_string());
            return;
        }
    };
    if shared.revoked.contains(&peer.serial) {
        close(&conn, CloseCode::Revoked, "certificate revoked");
        return;
    }
    let mut namespace = None;
    let mut max_gpus = None;
    if peer.role != Role::Node {
        // Admin and bot certificates are checked against the state too: a
        // revoked or replaced credential gets nowhere, whatever the CA signed.
        let name = peer.name.clone();
        let row = shared.store.call(move |tx| tx.client(&name)).await;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "state database error");
                close(&conn, CloseCode::Normal, "gateway state error");
                return;
            }
        };
        match crate::clients::check_session(row.as_ref(), &peer.name, peer.role, &peer.serial) {
            crate::clients::SessionCheck::Ok(ns) => namespace = ns,
            crate::clients::SessionCheck::Refuse(code, msg) => {
                tracing::info!(%remote, client = %peer.name, "session refused: {msg}");
                close(&conn, code, &msg);
                return;
            }
        }
    }
    if peer.role == Role::Node {
        let name = peer.name.clone();
        let row = shared.store.call(move |tx| tx.node(&name)).await;
        match row {
            Ok(Some(n))
                if n.state == NodeState::Approved
                    && n.cert_serial.as_deref() == Some(&peer.serial) =>
            {
                max_gpus = n.max_gpus;
            }
            Ok(Some(n)) if n.state == NodeState::Revoked => {
                close(
                    &conn,
                    CloseCode::Revoked,
                    &format!("node {} was revoked", peer.name),
                );
                return;
            }
            Ok(_) => {
                close(
                    &conn,
                    CloseCode::NotApproved,
                    &format!(
                        "node {} is not enrolled with this certificate; enroll again",
                        peer.name
                    ),
                );
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "state database error");
                close(&conn, CloseCode::Normal, "gateway state error");
                return;
            }
        }
    }
    let peer = Peer {
        name: peer.name,
        role: peer.role,
        serial: peer.serial,
        namespace,
        max_gpus,
    };
    // A node needs one connection, and a second while it replaces the
    // first; more from one node certificate would be an attack on memory.
    // Every connection starts with the small limits of
    // mesh::tls::server_transport. A node's is widened only once its hello
    // makes it the node's current connection (`node_control`); a client's
    // now, with a flow-control window from its certificate's budget.
    if peer.role == Role::Node {
        shared
            .registry
            .admit_node(&peer.name, &peer.serial, &conn, NODE_CONNECTIONS_PER_CERT);
    } else {
        let cap = shared.config().max_connections_per_cert;
        match shared.registry.admit(&peer.serial, &conn, cap) {
            Ok(held) => conn.widen_limits(peer.role, mesh::tls::client_window(held)),
            Err(too_many) => {
                close(
                    &conn,
                    CloseCode::Protocol,
                    &format!(
                        "{} already holds {} connections, the most one certificate may (limits.max_connections_per_cert); close some",
                        peer.name, too_many.0
                    ),
                );
                return;
            }
        }
    }
    // A revocation between the checks above and this admission closed the
    // sessions it found admitted, and this one was not yet among them. It
    // marks the serial revoked before it closes them, so looking again now
    // that this session is admitted leaves no window: either the
    // revocation saw this session, or this session sees the revocation.
    if shared.revoked.contains(&peer.serial) {
        close(&conn, CloseCode::Revoked, "certificate revoked");
        shared.registry.release(&peer.serial, conn.stable_id());
        return;
    }
    tracing::debug!(peer = %peer.name, role = %peer.role, %remote, "session open");
    let uni = tokio::spawn(accept_uni(shared.clone(), conn.clone(), peer.clone()));
    while let Some((send, recv)) = conn.accept_bi().await {
        tokio::spawn(stream(
            shared.clone(),
            conn.clone(),
            peer.clone(),
            send,
            recv,
        ));
    }
    uni.abort();
    shared.registry.release(&peer.serial, conn.stable_id());
}

async fn accept_uni(shared: Arc<Shared>, conn: Link, peer: Peer) {
    while let Some(mut recv) = conn.accept_uni().await {
        let open = mesh::read_frame::<Open>(&mut recv, HEARTBEAT_FRAME_LIMIT).await;
        match open {
            Ok(Some(Open::Heartbeat)) if peer.role == Role::Node => {
                tokio::spawn(heartbeats(
                    shared.clone(),
                    conn.clone(),
                    peer.name.clone(),
                    recv,
                ));
            }
            Ok(_) => {
                close(
                    &conn,
                    CloseCode::Protocol,
                    "unexpected unidirectional stream",
                );
                return;
            }
            Err(e) => {
                close(
                    &conn,
                    CloseCode::Protocol,
                    &format!("bad stream header: {e}"),
                );
                return;
            }
        }
    }
}

/// `JobRun`, `JobRunInput`, an attached `JobRequest` and `JobRunTty`:
/// creates the job (with the rest of the requester's stream as its stdin,
/// or its terminal's input, if given) and streams its events.
async fn run_attached(
    shared: Arc<Shared>,
    peer: Peer,
    spec: proto::JobSpec,
    options: Vec<proto::JobOption>,
    input: Option<quinn::RecvStream>,
    tty: Option<proto::tty::Tty>,
    mut send: SendHalf,
) {
    let p = peer.clone();
    let submitted = off_runtime(&shared, move |s| match (tty, input) {
        (Some(tty), Some(input)) => jobs::submit_tty(s, &p, spec, tty, input),
        (_, input) => jobs::submit_with(s, &p, spec, &options, input),
    })
    .await;
    let result = match submitted.and_then(|r| r) {
        Ok(info) => {
            let id = info.id;
            let state = info.state.clone();
            match mesh::write_frame(&mut send, &JobEvent::Accepted(info)).await {
                Ok(()) => jobs::follow(&shared, id, true, 0, 0, Some(&state), &mut send).await,
                Err(e) => Err(e),
            }
        }
        Err(e) => mesh::write_frame(&mut send, &JobEvent::Error(e)).await,
    };
    if result.is_ok() {
        send.finish();
    }
}

/// `JobRunInput`, or a `JobRequest` with input: the rest of `recv` is the
/// job's standard input.
async fn with_input(
    shared: Arc<Shared>,
    peer: Peer,
    spec: proto::JobSpec,
    options: Vec<proto::JobOption>,
    recv: RecvHalf,
    mut send: SendHalf,
) {
    match recv.into_quic() {
        Ok(input) => run_attached(shared, peer, spec, options, Some(input), None, send).await,
        Err(_) => {
            let e = ApiError::new(
                ErrorCode::InvalidArgument,
                "standard input travels only over QUIC sessions",
            );
            if mesh::write_frame(&mut send, &JobEvent::Error(e))
                .await
                .is_ok()
            {
                send.finish();
            }
        }
    }
}

async fn heartbeats(shared: Arc<Shared>, conn: Link, name: String, mut recv: RecvHalf) {
    let id = conn.stable_id();
    // The frame limit follows the GPUs the node reported in its hello
    // (each entry bounded): a node with 512 GPUs can report them all, and
    // one with 2 cannot send a large frame. The node opens this stream
    // after its welcome, by which time its hello is registered.
    let mut claimed = None;
    for _ in 0..100 {
        claimed = shared.registry.claimed_gpus(&name, id);
        if claimed.is_some() || conn.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some((claimed, protocol)) = claimed else {
        close(
            &conn,
            CloseCode::Protocol,
            "heartbeats before the node's hello",
        );
        return;
    };
    let limit = proto::heartbeat_frame_limit(claimed);
    loop {
        // Protocol 3 adds each GPU's health after the protocol-2 heartbeat.
        let read = if protocol >= 3 {
            mesh::read_frame::<proto::HeartbeatV3>(&mut recv, limit).await
        } else {
            mesh::read_frame::<Heartbeat>(&mut recv, limit)
                .await
                .map(|hb| {
                    hb.map(|beat| proto::HeartbeatV3 {
                        beat,
                        health: vec![],
                    })
                })
        };
        match read {
            Ok(Some(mut hb)) => {
                hb.bound(claimed);
                if let Some(seen) =
                    shared
                        .registry
                        .heartbeat(&name, id, hb.beat, &shared.clock, hb.health)
                {
                    shared.metrics.heartbeat_gap(seen.gap);
                    if let Some((old, new)) = seen.moved {
                        tracing::info!(node = %name, %old, %new, "node's address changed; its session migrated (NAT rebinding or roaming)");
                    }
                }
            }
            Ok(None) => return,
            Err(e) => {
                if e.connection_error().is_none() {
                    close(&conn, CloseCode::Protocol, &format!("bad heartbeat: {e}"));
                }
                return;
            }
        }
    }
}

async fn stream(
    shared: Arc<Shared>,
    conn: Link,
    peer: Peer,
    mut send: SendHalf,
    mut recv: RecvHalf,
) {
    let limit = match peer.role {
        Role::Node => NODE_OPEN_FRAME_LIMIT,
        Role::Admin | Role::Bot | Role::User => SESSION_FRAME_LIMIT,
    };
    let open = match tokio::time::timeout(
        FIRST_STREAM_TIMEOUT,
        mesh::read_frame::<Open>(&mut recv, limit),
    )
    .await
    {
        Ok(Ok(Some(open))) => open,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            let msg = format!("bad request: {e}");
            let _ = mesh::write_frame(
                &mut send,
                &Response::Error(ApiError::new(ErrorCode::InvalidArgument, &msg)),
            )
            .await;
            send.finish();
            let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
            close(&conn, CloseCode::Protocol, &msg);
            return;
        }
        Err(_) => return,
    };
    match open {
        // A task of its own, sized for the control loop: this stream's
        // task is as large as its largest path (8 KB: the API's), and a
        // node's control stream lives as long as the node is connected.
        Open::Control(hello) if peer.role == Role::Node => {
            tokio::spawn(node_control(shared, conn, peer, hello, send, recv));
        }
        Open::Job { job_id } if peer.role == Role::Node => {
            jobs::node_job_stream(shared, peer, job_id, send, recv).await;
        }
        Open::JobInput { job_id } if peer.role == Role::Node => {
            if let (Ok(send), Ok(recv)) = (send.into_quic(), recv.into_quic()) {
                jobs::node_input_stream(shared, peer, job_id, send, recv).await;
            }
        }
        Open::Artifacts { job_id } if peer.role == Role::Node => {
            jobs::artifacts::node_stream(shared, peer, job_id, send, recv).await;
        }
        Open::Forward { id, error } if peer.role == Role::Node => {
            if let (Ok(send), Ok(recv)) = (send.into_quic(), recv.into_quic()) {
                forward::node_answered(&shared.forwards, &peer, id, error, send, recv);
            }
        }
        Open::Copy { id, error } if peer.role == Role::Node => {
            if let (Ok(send), Ok(recv)) = (send.into_quic(), recv.into_quic()) {
                forward::node_answered(&shared.copies, &peer, id, error, send, recv);
            }
        }
        Open::Request(req) if !req.allowed_for(peer.role) => {
            let e = ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "permission denied: a {} certificate ({}) may not call {}; use an admin credential (the one 'openclaw gateway init' wrote)",
                    peer.role,
                    peer.name,
                    req.method()
                ),
            );
            // A job's stream is answered in job events, as its caller reads.
            let written = match req {
                Request::JobRun(_) | Request::JobRunInput(_) | Request::JobRunTty { .. } => {
                    mesh::write_frame(&mut send, &JobEvent::Error(e)).await
                }
                _ => mesh::write_frame(&mut send, &Response::Error(e)).await,
            };
            if written.is_ok() {
                send.finish();
            }
        }
        Open::Request(Request::JobRun(spec)) => {
            run_attached(shared, peer, spec, Vec::new(), None, None, send).await
        }
        Open::Request(Request::JobRequest(proto::JobRequest {
            spec,
            follow: proto::Follow::Attached,
            options,
        })) => run_attached(shared, peer, spec, options, None, None, send).await,
        Open::Request(Request::JobRunInput(spec)) => {
            with_input(shared, peer, spec, Vec::new(), recv, send).await
        }
        Open::Request(Request::JobRequest(proto::JobRequest {
            spec,
            follow: proto::Follow::AttachedWithInput,
            options,
        })) => with_input(shared, peer, spec, options, recv, send).await,
        Open::Request(Request::JobRunTty { spec, tty }) => match recv.into_quic() {
            Ok(input) => {
                run_attached(shared, peer, spec, Vec::new(), Some(input), Some(tty), send).await
            }
            Err(_) => {
                let e = ApiError::new(
                    ErrorCode::InvalidArgument,
                    "interactive sessions travel only over QUIC sessions",
                );
                if mesh::write_frame(&mut send, &JobEvent::Error(e))
                    .await
                    .is_ok()
                {
                    send.finish();
                }
            }
        },
        Open::Request(Request::Forward { node, port }) => {
            match (send.into_quic(), recv.into_quic()) {
                (Ok(send), Ok(recv)) => forward::serve(shared, peer, node, port, send, recv).await,
                (Err(mut send), _) => {
                    let e = ApiError::new(
                        ErrorCode::InvalidArgument,
                        "forwards travel only over QUIC sessions",
                    );
                    if mesh::write_frame(&mut send, &Response::Error(e))
                        .await
                        .is_ok()
                    {
                        send.finish();
                    }
                }
                (Ok(_), Err(_)) => {}
            }
        }
        Open::Request(Request::ArtifactGet {
            id,
            name,
            on_behalf_of,
        }) => jobs::artifacts::serve_get(shared, peer, id, name, on_behalf_of, send).await,
        Open::Request(Request::Copy(req)) => match (send.into_quic(), recv.into_quic()) {
            (Ok(send), Ok(recv)) => copy::serve(shared, peer, req, send, recv).await,
            (Err(mut send), _) => {
                let e = ApiError::new(
                    ErrorCode::InvalidArgument,
                    "copies travel only over QUIC sessions",
                );
                if mesh::write_frame(&mut send, &Response::Error(e))
                    .await
                    .is_ok()
                {
                    send.finish();
                }
            }
            (Ok(_), Err(_)) => {}
        },
        Open::Request(Request::JobAttach {
            id,
            follow,
            stdout_from,
            stderr_from,
            on_behalf_of,
        }) => {
            let p = peer.clone();
            let shown = off_runtime(&shared, move |s| {
                jobs::show(s, &p, id, on_behalf_of.as_deref()).map(|_| ())
            })
            .await;
            if let Err(e) = shown.and_then(|r| r) {
                if mesh::write_frame(&mut send, &JobEvent::Error(e))
                    .await
                    .is_ok()
                {
                    send.finish();
                }
                return;
            }
            if jobs::follow(
                &shared,
                id,
                follow,
                stdout_from,
                stderr_from,
                None,
                &mut send,
            )
            .await
            .is_ok()
            {
                send.finish();
            }
        }
        Open::Request(Request::FanOut(spec)) => {
            let output = spec.output;
            let p = peer.clone();
            let submitted = off_runtime(&shared, move |s| jobs::fanout::submit(s, &p, spec)).await;
            let result = match submitted.and_then(|r| r) {
                Ok(snap) => jobs::fanout::follow(&shared, snap, output, &mut send).await,
                Err(e) => mesh::write_frame(&mut send, &FanEvent::Error(e)).await,
            };
            if result.is_ok() {
                send.finish();
            }
        }
        Open::Request(Request::FanOutAttach {
            id,
            output,
            on_behalf_of,
        }) => {
            let p = peer.clone();
            let shown = off_runtime(&shared, move |s| {
                jobs::fanout::show(s, &p, id, on_behalf_of.as_deref())
            })
            .await;
            let result = match shown.and_then(|r| r) {
                Ok(snap) => jobs::fanout::follow(&shared, snap, output, &mut send).await,
                Err(e) => mesh::write_frame(&mut send, &FanEvent::Error(e)).await,
            };
            if result.is_ok() {
                send.finish();
            }
        }
        Open::Request(req) => {
            let p = peer.clone();
            let resp = off_runtime(&shared, move |s| api::dispatch(s, &p, req))
                .await
                .unwrap_or_else(proto::Response::Error);
            if mesh::write_frame(&mut send, &resp).await.is_ok() {
                send.finish();
            }
        }
        Open::Control(_)
        | Open::Heartbeat
        | Open::Job { .. }
        | Open::JobInput { .. }
        | Open::Artifacts { .. }
        | Open::Forward { .. }
        | Open::Copy { .. } => {
            close(
                &conn,
                CloseCode::Protocol,
                "unexpected stream for this role",
            );
        }
    }
}

async fn node_control(
    shared: Arc<Shared>,
    conn: Link,
    peer: Peer,
    hello: proto::NodeHello,
    mut send: SendHalf,
    mut recv: RecvHalf,
) {
    let remote = conn.remote_address().to_string();
    // A node on the previous ALPN speaks at most the previous protocol;
    // one on the current ALPN any protocol served (the swarm of the
    // benchmarks speaks 2).
    if !proto::NODE_PROTOCOLS_SERVED.contains(&hello.protocol) || hello.protocol > conn.protocol() {
        let msg = format!(
            "node speaks protocol {} but the gateway speaks {} to {}; upgrade the older side",
            hello.protocol,
            proto::NODE_PROTOCOLS_SERVED.start(),
            proto::NODE_PROTOCOLS_SERVED.end()
        );
        let _ = mesh::write_frame(
            &mut send,
            &ControlMsg::Refused(ApiError::new(ErrorCode::FailedPrecondition, &msg)),
        )
        .await;
        close(&conn, CloseCode::Protocol, &msg);
        return;
    }
    let welcome = ControlMsg::Welcome {
        heartbeat_interval_ms: u64::try_from(shared.config().heartbeat_interval.as_millis())
            .unwrap_or(1000),
        gateway: shared.config().name.clone(),
    };
    if mesh::write_frame(&mut send, &welcome).await.is_err() {
        return;
    }
    // What to trust, every session: a node that missed a rotation step
    // while away catches up here (and renews if it must).
    if mesh::write_frame(&mut send, &shared.ca().trust_msg())
        .await
        .is_err()
    {
        return;
    }
    let meta = NodeMeta {
        // What the node says is a claim; the admin's or token's cap wins.
        gpus: crate::registry::capped_gpus(hello.gpus, peer.max_gpus),
        gpus_claimed: hello.gpus.min(crate::registry::MAX_GPUS),
        gpus_simulated: hello.gpus_simulated,
        max_jobs: hello.max_jobs.clamp(1, 100_000),
        protocol: hello.protocol,
    };
    // Now the node's current connection: its role's window, and streams
    // for the jobs it holds (re-attaching) or a few, plus its own. Every
    // stream a node may open costs the gateway memory whether it is used
    // or not (about 40 KB an idle node at the default 256 jobs) and once
    // used (about 0.7 KB a stream id), so the limit grows as jobs are
    // dispatched (`Registry::make_room`) and gets room for forwards and
    // copies at the first one (`Registry::make_side_room`).
    conn.widen_limits(Role::Node, mesh::tls::NODE_WINDOW);
    let held = shared.jobs.load(&peer.name).1;
    let streams =
        mesh::tls::node_job_streams(held.max(mesh::tls::NODE_IDLE_JOBS).min(meta.max_jobs));
    conn.set_max_concurrent_bi_streams(streams);
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<Box<ControlMsg>>(CONTROL_QUEUE);
    // The gateway group to dial from now on (protocol 3 knows it).
    crate::group::tell_node(&shared, hello.protocol, control_tx.clone());
    if let Some(old) = shared.registry.connect(
        &peer.name,
        conn.clone(),
        meta,
        control_tx,
        shared.clock.now(),
        streams,
    ) {
        tracing::info!(node = %peer.name, "new connection replaces the old one");
        close(
            &old,
            CloseCode::Replaced,
            &format!("replaced by a newer connection from {remote}"),
        );
    }
    seen(&shared, &peer.name, &remote).await;
    tracing::info!(node = %peer.name, %remote, agent = %hello.agent_version, "node connected");
    shared.jobs.capacity.notify_waiters();
    // Forward control messages (job dispatch) to the node, and drain the
    // control stream until the node or the connection ends it.
    let writer = async {
        while let Some(msg) = control_rx.recv().await {
            if mesh::write_frame(&mut send, &msg).await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        while let Ok(Some(_msg)) =
            mesh::read_frame::<ControlMsg>(&mut recv, SESSION_FRAME_LIMIT).await
        {}
    };
    let control = async {
        tokio::select! {
            () = reader => {}
            () = writer => {}
        }
    };
    tokio::select! {
        () = conn.closed() => {}
        () = control => { close(&conn, CloseCode::Normal, "control stream ended"); }
    }
    // The reason may be the node's own words (its CONNECTION_CLOSE):
    // escaped and cut before they reach the log.
    let reason = conn
        .close_reason()
        .map(|e| proto::names::printable(&e.to_string(), 500))
        .unwrap_or_default();
    if shared.registry.disconnect(&peer.name, conn.stable_id()) {
        seen(&shared, &peer.name, &remote).await;
        tracing::info!(node = %peer.name, %remote, %reason, "node disconnected");
    }
}

/// Records when a node's session started or ended.
async fn seen(shared: &Shared, name: &str, remote: &str) {
    let (now, name, remote) = (shared.clock.unix(), name.to_string(), remote.to_string());
    if let Err(e) = shared
        .store
        .call(move |tx| tx.node_seen(&name, now, &remote))
        .await
    {
        tracing::warn!(error = %e, "cannot record a node session in the state database");
    }
}
