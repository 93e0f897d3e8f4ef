//! The admin and operator API. Each call is authorised by the caller's
//! certificate role before it gets here (`Request::allowed_for`).

use std::time::Duration;

use crate::clock::Instant;

use proto::{ApiError, CloseCode, ErrorCode, NodeInfo, Request, Response};

use std::sync::Arc;

use crate::peer::Peer;
use crate::shared::Shared;
use crate::store::{NodeState, TokenRow};
use crate::{enroll, jobs};

/// Longest token lifetime.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 86_400);
/// Most uses of one token.
const MAX_TOKEN_USES: u32 = 100_000;
/// Most GPUs a node may be confirmed with.
use crate::registry::MAX_GPUS;

/// Handles one call.
pub fn dispatch(shared: &Arc<Shared>, peer: &Peer, req: Request) -> Response {
    let method = req.method();
    let result = match req {
        Request::Time => Ok(Response::Time {
            unix_ms: shared.clock.unix_ms(),
        }),
        Request::Whoami => Ok(Response::Identity {
            name: peer.name.clone(),
            role: peer.role,
            namespace: peer.namespace.clone(),
        }),
        Request::TokenCreate {
            ttl_secs,
            uses,
            labels,
            auto_approve,
            max_gpus,
        } => token_create(shared, peer, ttl_secs, uses, labels, auto_approve, max_gpus),
        Request::TokenList => shared
            .store
            .tx(|tx| tx.tokens())
            .map(|t| Response::Tokens(t.iter().map(TokenRow::info).collect()))
            .map_err(ApiError::from),
        Request::TokenRevoke { id } => token_revoke(shared, peer, &id),
        Request::NodeList => node_list(shared),
        Request::NodePage { after, limit } => node_page(shared, after.as_deref(), limit),
        Request::NodeShow { name } => node_show(shared, &name),
        Request::NodeApprove {
            name,
            fingerprint,
            labels,
            gpus,
        } => node_approve(shared, peer, &name, fingerprint.as_deref(), labels, gpus),
        Request::NodeReject { name } => node_reject(shared, peer, &name),
        Request::NodeRevoke { name } => node_revoke(shared, peer, &name),
        Request::NodeRelease { name } => node_release(shared, peer, &name),
        Request::ClientIssue {
            name,
            role,
            namespace,
            ttl_secs,
            csr_der,
        } => crate::clients::issue(shared, peer, &name, role, namespace, ttl_secs, &csr_der),
        Request::ClientList => crate::clients::list(shared),
        Request::ClientRevoke { name } => crate::clients::revoke(shared, peer, &name),
        Request::ClientRenew { csr_der } => crate::clients::renew(shared, peer, &csr_der),
        Request::NodeRenew { csr_der } => node_renew(shared, peer, &csr_der),
        Request::CaRotate { step, force } => {
            crate::rotation::step(shared, peer, step, force).map(Response::CaRotation)
        }
        Request::NodeHistory { names } => {
            if names.len() > proto::MAX_HISTORY_NODES {
                Err(invalid(format!(
                    "asked for the history of {} nodes; ask for at most {} at once",
                    names.len(),
                    proto::MAX_HISTORY_NODES
                )))
            } else {
                Ok(Response::NodeHistory(shared.registry.histories(&names)))
            }
        }
        Request::GpuHealth { names } => {
            if names.len() > proto::MAX_HISTORY_NODES {
                Err(invalid(format!(
                    "asked for the GPU health of {} nodes; ask for at most {} at once",
                    names.len(),
                    proto::MAX_HISTORY_NODES
                )))
            } else {
                Ok(Response::GpuHealth(shared.registry.gpu_health(&names)))
            }
        }
        Request::LabSummary => lab_summary(shared),
        Request::Usage {
            since_secs,
            by,
            on_behalf_of,
        } => jobs::usage(shared, peer, since_secs, by, on_behalf_of.as_deref()),
        Request::Queue { on_behalf_of } => jobs::queue(shared, peer, on_behalf_of.as_deref()),
        Request::Trust => Ok(Response::Trust {
            cas_der: crate::rotation::trust(shared),
        }),
        Request::ChatContext => jobs::chat_context(shared),
        Request::ChatAudit {
            user,
            channel,
            thread,
            text,
        } => {
            let now = shared.clock.unix();
            let short = |s: &str, n: usize| proto::names::printable(s, n);
            jobs::identity(peer, Some(&user))
                .and_then(|_| {
                    shared
                        .store
                        .tx(|tx| {
                            tx.audit(
                                now,
                                &peer.name,
                                "chat.message",
                                &user,
                                &format!(
                                    "channel {}, thread {}: {}",
                                    short(&channel, 64),
                                    short(&thread, 64),
                                    short(&text, 500)
                                ),
                            )
                        })
                        .map_err(ApiError::from)
                })
                .map(|()| Response::Done {
                    message: "recorded".into(),
                })
        }
        Request::JobPreview(spec) => jobs::preview(shared, peer, spec),
        Request::JobSubmit(spec) => jobs::submit(shared, peer, spec).map(Response::Job),
        Request::GatewaySet => crate::group::current(shared).map(Response::GatewaySet),
        Request::GatewayLeave { name } => {
            crate::group::leave(shared, &peer.name, &name).map(|message| Response::Done { message })
        }
        Request::JobRequest(proto::JobRequest {
            spec,
            follow: proto::Follow::Detached,
            options,
        }) => jobs::submit_with(shared, peer, spec, &options, None).map(Response::Job),
        Request::JobShow { id, on_behalf_of } => {
            jobs::show(shared, peer, id, on_behalf_of.as_deref()).map(Response::Job)
        }
        Request::JobGpus { id, on_behalf_of } => {
            jobs::gpus_held(shared, peer, id, on_behalf_of.as_deref()).map(Response::JobGpus)
        }
        Request::JobArtifacts { id, on_behalf_of } => {
            jobs::artifacts::list(shared, peer, id, on_behalf_of.as_deref())
                .map(Response::Artifacts)
        }
        Request::JobList {
            limit,
            before,
            on_behalf_of,
        } => jobs::list(shared, peer, limit, before, on_behalf_of.as_deref()).map(Response::Jobs),
        Request::JobCancel { id, on_behalf_of } => {
            jobs::cancel(shared, peer, id, on_behalf_of.as_deref())
                .map(|message| Response::Done { message })
        }
        Request::JobApprove {
            id,
            plan_digest,
            on_behalf_of,
        } => jobs::approve(
            shared,
            peer,
            id,
            plan_digest.as_deref(),
            on_behalf_of.as_deref(),
        )
        .map(|message| Response::Done { message }),
        Request::JobDeny {
            id,
            reason,
            on_behalf_of,
        } => jobs::deny(shared, peer, id, reason.as_deref(), on_behalf_of.as_deref())
            .map(|message| Response::Done { message }),
        Request::JobRecording { id, offset } => jobs::recording(shared, peer, id, offset),
        Request::JobRun(_)
        | Request::JobRunInput(_)
        | Request::JobRequest(_)
        | Request::JobRunTty { .. }
        | Request::Forward { .. }
        | Request::Copy(_)
        | Request::JobAttach { .. }
        | Request::ArtifactGet { .. }
        | Request::FanOut(_)
        | Request::FanOutAttach { .. } => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "streaming calls are handled by the session",
        )),
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(peer = %peer.name, method, error = %e.message, "request refused");
            Response::Error(e)
        }
    }
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, m)
}

fn token_create(
    shared: &Shared,
    peer: &Peer,
    ttl_secs: u64,
    uses: u32,
    labels: Vec<String>,
    auto_approve: bool,
    max_gpus: Option<u32>,
) -> Result<Response, ApiError> {
    if max_gpus.is_some_and(|g| g > MAX_GPUS) {
        return Err(invalid(format!("--max-gpus must be at most {MAX_GPUS}")));
    }
    if ttl_secs == 0 || ttl_secs > MAX_TOKEN_TTL.as_secs() {
        return Err(invalid("token TTL must be between 1s and 30d"));
    }
    if uses == 0 || uses > MAX_TOKEN_USES {
        return Err(invalid(format!(
            "token uses must be between 1 and {MAX_TOKEN_USES}"
        )));
    }
    let labels = proto::names::normalize_labels(&labels).map_err(invalid)?;
    crate::rules::token_address(shared.bound, &shared.advertise)?;
    // Every gateway sharing this state, this one first: a node tries
    // them in order, so it finds whichever leads.
    let registered = shared.store.tx(|tx| tx.gateways())?;
    let addrs = crate::group::addresses(&shared.advertise, &registered);
    let token = pki::JoinToken::generate(shared.ca().issuing.pin(), &addrs.join(","))
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let now = shared.clock.unix();
    let row = TokenRow {
        id: token.id.clone(),
        secret_hash: pki::hash_secret(token.secret.expose()).to_vec(),
        created_at: now,
        expires_at: now + ttl_secs,
        uses_total: uses,
        uses_left: uses,
        labels,
        auto_approve,
        revoked: false,
        max_gpus,
    };
    shared.store.tx(|tx| {
        tx.insert_token(&row)?;
        tx.audit(
            now,
            &peer.name,
            "token.create",
            &row.id,
            &format!("uses {uses}, auto_approve {auto_approve}, max_gpus {max_gpus:?}"),
        )
    })?;
    Ok(Response::TokenCreated {
        token: token.encode(),
        info: row.info(),
    })
}

fn token_revoke(shared: &Shared, peer: &Peer, id: &str) -> Result<Response, ApiError> {
    let now = shared.clock.unix();
    shared.store.tx(|tx| {
        if !tx.revoke_token(id)? {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no token with id {id:?}; run 'openclaw token list'"),
            ));
        }
        tx.audit(now, &peer.name, "token.revoke", id, "")?;
        Ok(Response::Done {
            message: format!("token {id} revoked"),
        })
    })
}

fn node_list(shared: &Shared) -> Result<Response, ApiError> {
    let now = shared.clock.unix();
    let rows = shared.store.tx(|tx| {
        enroll::sweep(shared, tx, now)?;
        tx.nodes()
    })?;
    let instant = shared.clock.now();
    Ok(Response::Nodes(
        rows.into_iter()
            .map(|n| node_info(shared, n, now, instant, false))
            .collect(),
    ))
}

fn lab_summary(shared: &Shared) -> Result<Response, ApiError> {
    let now = shared.clock.unix();
    let (rows, jobs) = shared.store.tx(|tx| {
        enroll::sweep(shared, tx, now)?;
        Ok::<_, ApiError>((tx.nodes()?, tx.job_counts()?))
    })?;
    let instant = shared.clock.now();
    let mut s = proto::LabSummary {
        jobs,
        ..Default::default()
    };
    let mut by: std::collections::BTreeMap<&'static str, u64> = Default::default();
    for n in rows {
        let st = shared.node_status(&n, instant);
        let word = if st.live.is_some() {
            st.health
        } else {
            st.connection
        };
        *by.entry(word).or_default() += 1;
        if let Some(live) = st.live.as_ref()
            && let Some(t) = live.telemetry.as_ref()
        {
            // Only confirmed GPUs count; the rest of a claim is not offered.
            let confirmed = usize::try_from(live.gpus).unwrap_or(usize::MAX);
            for (i, g) in t.gpus.iter().take(confirmed).enumerate() {
                // A degraded node's healthy GPUs still serve; its
                // unhealthy or MIG-enabled ones do not.
                let fit = st.routable && live.gpu_health.get(i).is_none_or(|h| h.usable());
                match (fit, g.job.is_some()) {
                    (false, _) => s.gpus_unhealthy += 1,
                    (true, true) => s.gpus_busy += 1,
                    (true, false) => s.gpus_free += 1,
                }
            }
        }
        if n.state == NodeState::Pending && s.pending.len() < proto::MAX_SUMMARY_PENDING {
            s.pending.push(node_info(shared, n, now, instant, false));
        }
    }
    s.nodes = by.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    s.pending.sort_by_key(|n| n.requested_at);
    Ok(Response::LabSummary(s))
}

/// Most bytes of node records in one page (the reply frame's limit is 1 MiB).
const NODE_PAGE_BYTES: usize = 768 * 1024;

fn node_page(shared: &Shared, after: Option<&str>, limit: u32) -> Result<Response, ApiError> {
    let now = shared.clock.unix();
    let limit = limit.clamp(1, 5000) as usize;
    let rows = shared.store.tx(|tx| {
        // Expired pending requests go once per listing, on its first page.
        if after.is_none() {
            enroll::sweep(shared, tx, now)?;
        }
        tx.nodes_page(after, limit)
    })?;
    let instant = shared.clock.now();
    let mut out = Vec::with_capacity(rows.len());
    let mut bytes = 0;
    for n in rows {
        let info = node_info(shared, n, now, instant, false);
        bytes += proto::codec::encode(&info).map(|b| b.len()).unwrap_or(0);
        if bytes > NODE_PAGE_BYTES && !out.is_empty() {
            break;
        }
        out.push(info);
    }
    Ok(Response::Nodes(out))
}

fn node_show(shared: &Shared, name: &str) -> Result<Response, ApiError> {
    let row = shared
        .store
        .tx(|tx| tx.node(name))?
        .ok_or_else(|| not_found(name))?;
    Ok(Response::Node(node_info(
        shared,
        row,
        shared.clock.unix(),
        shared.clock.now(),
        true,
    )))
}

/// One node's row as `node list` and `node show` present it.
/// `full` includes the whole latest heartbeat.
pub fn node_info(
    shared: &Shared,
    n: crate::store::NodeRow,
    now: u64,
    instant: Instant,
    full: bool,
) -> NodeInfo {
    let crate::shared::NodeStatus {
        live,
        connection,
        health,
        reason: health_reason,
        ..
    } = shared.node_status(&n, instant);
    let telemetry = live.as_ref().and_then(|l| l.telemetry.clone());
    let remote_addr = match (n.state, live.as_ref().map(|l| l.remote)) {
        (_, Some(addr)) => Some(addr.to_string()),
        (NodeState::Pending, _) => Some(n.request_addr.clone()),
        _ => n.last_addr.clone(),
    };
    let mut telemetry = telemetry.map(|t| (*t).clone());
    if !full && let Some(t) = telemetry.as_mut() {
        // The list shows GPU counts and holders; drop per-GPU detail it does not show.
        for g in &mut t.gpus {
            g.uuid.clear();
        }
    }
    NodeInfo {
        name: n.name,
        connection: connection.into(),
        health: health.into(),
        labels: n.labels,
        proposed_labels: n.proposed_labels,
        max_gpus: n.max_gpus,
        fingerprint: n.fingerprint,
        last_seen: if live.is_some() {
            Some(now)
        } else {
            n.last_seen
        },
        remote_addr,
        cert_expires: n.cert_not_after,
        requested_at: n.requested_at,
        heartbeat_age_ms: live
            .as_ref()
            .map(|l| u64::try_from(l.view.heartbeat_age.as_millis()).unwrap_or(u64::MAX)),
        health_reason,
        telemetry,
    }
}

fn node_renew(shared: &Shared, peer: &Peer, csr_der: &[u8]) -> Result<Response, ApiError> {
    let name = peer.name.as_str();
    let csr = pki::check_csr(csr_der, name).map_err(|e| invalid(e.to_string()))?;
    let now = shared.clock.unix();
    let cert = shared.store.tx(|tx| {
        let mut row = tx.node(name)?.ok_or_else(|| not_found(name))?;
        if row.state != NodeState::Approved
            || row.cert_serial.as_deref() != Some(peer.serial.as_str())
        {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("node {name} may renew only its current certificate; enroll again"),
            ));
        }
        if csr.spki_der != row.spki {
            return Err(invalid(
                "a renewal keeps the node's key; this request has another key",
            ));
        }
        let cert = shared
            .ca()
            .issuing
            .issue_client(
                name,
                proto::Role::Node,
                &row.spki,
                shared.config().node_cert_ttl.as_secs(),
                now,
            )
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        tx.set_node_cert(name, &cert)?;
        tx.record_issued(name, proto::Role::Node, &cert, now)?;
        tx.audit(
            now,
            name,
            "node.renew",
            name,
            &format!("serial {} replaces {}", cert.serial, peer.serial),
        )?;
        row.cert_serial = Some(cert.serial.clone());
        Ok::<_, ApiError>(cert)
    })?;
    tracing::info!(node = %name, serial = %cert.serial, "node certificate renewed");
    Ok(Response::ClientIssued {
        cert_der: cert.der,
        ca_der: shared.ca().issuing.cert_der().to_vec(),
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no node named {name:?}; run 'openclaw node list'"),
    )
}

fn node_approve(
    shared: &Shared,
    peer: &Peer,
    name: &str,
    fingerprint: Option<&str>,
    labels: Option<Vec<String>>,
    gpus: Option<u32>,
) -> Result<Response, ApiError> {
    let now = shared.clock.unix();
    let labels = labels
        .map(|l| proto::names::normalize_labels(&l).map_err(|e| invalid(format!("--labels: {e}"))))
        .transpose()?;
    if gpus.is_some_and(|g| g > MAX_GPUS) {
        return Err(invalid(format!("--gpus must be at most {MAX_GPUS}")));
    }
    let (reply, live_cap) = shared.store.tx(|tx| {
        enroll::sweep(shared, tx, now)?;
        let mut row = tx.node(name)?.ok_or_else(|| not_found(name))?;
        match row.state {
            NodeState::Pending => {}
            NodeState::Approved if labels.is_some() || gpus.is_some() => {
                // Confirming facts of an enrolled node: no new certificate.
                if let Some(l) = &labels {
                    row.labels = l.clone();
                    row.proposed_labels.retain(|p| !l.contains(p));
                }
                if gpus.is_some() {
                    row.max_gpus = gpus;
                }
                tx.set_node_facts(name, &row.labels, &row.proposed_labels, row.max_gpus)?;
                tx.audit(now, &peer.name, "node.confirm", name, &format!("labels {:?}, max_gpus {:?}", row.labels, row.max_gpus))?;
                return Ok((
                    Response::Done {
                        message: format!(
                            "{name} is approved; confirmed labels {} and {}",
                            row.labels.join(","),
                            gpu_cap_words(row.max_gpus, name)
                        ),
                    },
                    Some(row.max_gpus),
                ));
            }
            NodeState::Approved => {
                return Err(ApiError::new(ErrorCode::FailedPrecondition, format!("node {name} is already approved; add --labels or --gpus to change what is confirmed about it")));
            }
            NodeState::Rejected | NodeState::Revoked => {
                return Err(ApiError::new(
                    ErrorCode::FailedPrecondition,
                    format!("node {name} has no pending request (it was {}); it must enroll again", row.state.as_str()),
                ));
            }
        }
        if let Some(fp) = fingerprint.map(str::trim) {
            let want = row.fingerprint.as_str();
            if fp != want && fp.strip_prefix("SHA256:").unwrap_or(fp) != want.trim_start_matches("SHA256:") {
                // Never the right value: the comparison is out of band, and
                // an answer to paste would defeat it.
                let typed: String = proto::names::printable(fp, 64).chars().take(16).collect();
                return Err(ApiError::new(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "fingerprint mismatch for {name}: the pending request's key is not the one you gave ({typed}...); \
                         read the fingerprint again on the node itself ('openclaw node enroll' prints it) and \
                         do not approve unless they match"
                    ),
                ));
            }
        }
        // The admin confirms the node's facts: labels (replacing the
        // token's and the node's proposal) and its GPU cap.
        if let Some(l) = &labels {
            row.labels = l.clone();
            row.proposed_labels.clear();
        }
        if gpus.is_some() {
            row.max_gpus = gpus;
        }
        tx.set_node_facts(name, &row.labels, &row.proposed_labels, row.max_gpus)?;
        enroll::issue_node_cert(shared, tx, &mut row, &peer.name, now)?;
        tracing::info!(node = %name, by = %peer.name, labels = ?row.labels, max_gpus = ?row.max_gpus, "node approved");
        Ok((
            Response::Done {
                message: format!(
                    "approved {name} ({}); it finishes enrolling on its next poll; {}",
                    row.fingerprint,
                    gpu_cap_words(row.max_gpus, name)
                ),
            },
            None,
        ))
    })?;
    // A connected node's GPUs follow what was just confirmed, at once.
    if let Some(cap) = live_cap {
        shared.registry.set_gpu_cap(name, cap);
        shared.jobs.capacity.notify_waiters();
    }
    Ok(reply)
}

/// The GPU cap, said for the admin who just set it.
fn gpu_cap_words(cap: Option<u32>, name: &str) -> String {
    match cap {
        Some(g) => format!("GPUs confirmed: {g}"),
        None => format!(
            "no GPUs confirmed: what the node reports is shown but not offered to jobs until \
             'openclaw node approve {name} --gpus N'"
        ),
    }
}

fn node_reject(shared: &Shared, peer: &Peer, name: &str) -> Result<Response, ApiError> {
    let now = shared.clock.unix();
    shared.store.tx(|tx| {
        let row = tx.node(name)?.ok_or_else(|| not_found(name))?;
        if row.state != NodeState::Pending {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "node {name} has no pending request (it is {}); use 'openclaw node revoke {name}' for an enrolled node",
                    row.state.as_str()
                ),
            ));
        }
        tx.move_node(name, row.state, NodeState::Rejected, now, &peer.name)?;
        tx.audit(now, &peer.name, "node.reject", name, "")?;
        Ok(Response::Done { message: format!("rejected the enrollment of {name}") })
    })
}

fn node_revoke(shared: &Shared, peer: &Peer, name: &str) -> Result<Response, ApiError> {
    let now = shared.clock.unix();
    let serial = shared.store.tx(|tx| {
        let row = tx.node(name)?.ok_or_else(|| not_found(name))?;
        // The transition table decides; each refusal says why.
        if !row.state.can_move_to(NodeState::Revoked) {
            let why = match row.state {
                NodeState::Revoked => format!("node {name} is already revoked"),
                s => format!("node {name} was {s}; only a pending or approved node can be revoked"),
            };
            return Err(ApiError::new(ErrorCode::FailedPrecondition, why));
        }
        tx.move_node(name, row.state, NodeState::Revoked, now, &peer.name)?;
        if let Some(serial) = &row.cert_serial {
            tx.revoke_serial(serial, name, now)?;
        }
        tx.audit(
            now,
            &peer.name,
            "node.revoke",
            name,
            row.cert_serial.as_deref().unwrap_or("no certificate"),
        )?;
        Ok::<_, ApiError>(row.cert_serial)
    })?;
    let reason = format!("node {name} was revoked by {}", peer.name);
    let mut closed = 0;
    if let Some(serial) = &serial {
        shared.revoked.insert(serial);
        closed = shared
            .registry
            .close_serial(serial, CloseCode::Revoked.code(), &reason);
    }
    if let Some(conn) = shared.registry.connection(name) {
        conn.close(CloseCode::Revoked.code(), reason.as_bytes());
        closed = closed.max(1);
    }
    shared.registry.forget_history(name);
    let ended = jobs::end_for_revoked(shared, Some(name), None);
    tracing::info!(node = %name, by = %peer.name, closed, ended, "node revoked");
    Ok(Response::Done {
        message: format!(
            "revoked {name}; {closed} live connection(s) closed, {ended} unfinished job(s) ended \
             (running ones lost, queued or held ones cancelled). The name stays taken until \
             'openclaw node release {name}'"
        ),
    })
}

/// `node release`: frees a revoked node's name for a new enrollment. The
/// row goes (the audit trail keeps its history); no job follows the name,
/// since revocation ended every unfinished one and each job is bound to
/// its node's key.
fn node_release(shared: &Shared, peer: &Peer, name: &str) -> Result<Response, ApiError> {
    let now = shared.clock.unix();
    shared.store.tx(|tx| {
        let row = tx.node(name)?.ok_or_else(|| not_found(name))?;
        if row.state != NodeState::Revoked {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "node {name} is {}, not revoked; only a revoked node's name can be released \
                     (run 'openclaw node revoke {name}' first if that is what you mean)",
                    row.state.as_str()
                ),
            ));
        }
        tx.delete_node(name)?;
        tx.audit(
            now,
            &peer.name,
            "node.release",
            name,
            &format!("key {}", row.fingerprint),
        )?;
        Ok::<_, ApiError>(())
    })?;
    // Belt and braces: nothing unfinished may still name it.
    let ended = jobs::end_for_revoked(shared, Some(name), None);
    tracing::info!(node = %name, by = %peer.name, ended, "node name released");
    Ok(Response::Done {
        message: format!(
            "released the name {name}: a new node may enroll under it; no job of the revoked node will run there"
        ),
    })
}
