//! Calls the gateway's API with the credential in a home.

pub mod fanout;
pub mod follow;

/// The stream a streaming call's events are read from.
pub use quinn::RecvStream;

use std::time::Duration;

use mesh::Home;
use mesh::home::LoadedCredential;
use proto::{ApiError, Open, Request, Response};

pub use fanout::{FanFollowed, FanStart, follow_fanout};
pub use follow::{
    FollowError, FollowOptions, Followed, Gateway, Start, follow_job, job_log, job_log_tail,
    read_log,
};

/// Turns [`Client::close`] gives the runtime to send the close frame.
const CLOSE_YIELDS: usize = 3;

/// Most a group answer may take (16 addresses of 255 bytes, framed).
const GROUP_REPLY_LIMIT: usize = 8 * 1024;
/// How long [`Client::close`] waits for the group's answer.
const GROUP_WAIT: Duration = Duration::from_millis(300);

/// Replies can be large (a node list of 10,000 nodes).
const REPLY_FRAME_LIMIT: usize = proto::MAX_FRAME_LEN;
/// Bytes of output [`Client::next_event_streaming`] reads at a time.
const STREAMING_READ: usize = 256 * 1024;

/// A call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No usable credential.
    #[error("{0}")]
    Credential(String),
    /// The gateway could not be reached or refused the connection.
    #[error("cannot reach the gateway at {addr}: {msg}")]
    Connect {
        /// Where we dialled.
        addr: String,
        /// Why it failed.
        msg: String,
    },
    /// The gateway refused this credential for good (revoked, expired,
    /// another CA, not approved): retrying cannot help.
    #[error("{msg}")]
    Refused {
        /// Why, as a sentence with the next step.
        msg: String,
    },
    /// The gateway refused the call.
    #[error("{0}")]
    Api(ApiError),
    /// The reply made no sense.
    #[error("unexpected reply from the gateway: {0}")]
    Protocol(String),
}

/// A lost or refused connection as an error: a refusal of the
/// credential is [`ClientError::Refused`], anything else may pass.
fn connection_error(addr: &str, e: &quinn::ConnectionError) -> ClientError {
    let msg = mesh::describe_connection_error(e);
    match mesh::errors::refusal(e) {
        mesh::errors::Refusal::Revoked
        | mesh::errors::Refusal::Expired
        | mesh::errors::Refusal::UnknownCa
        | mesh::errors::Refusal::NotApproved => ClientError::Refused { msg },
        _ => ClientError::Connect {
            addr: addr.to_string(),
            msg,
        },
    }
}

/// Whether a CA rotation asks something of this credential: its CA file
/// holds more than one CA (a rotation was under way when it was last
/// written), or the CA that signed the gateway's certificate did not sign
/// ours. Costs nothing but parsing; true only around a rotation.
fn rotation_due(conn: &quinn::Connection, cred: &LoadedCredential) -> bool {
    let several = mesh::tls::parse_certs(&cred.ca_pem).is_ok_and(|c| c.len() > 1);
    let server = conn.peer_identity().and_then(|id| {
        id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()
    });
    let own = pki::pem_to_der(&cred.cert_pem, "CERTIFICATE").ok();
    let moved = match (server.as_deref().and_then(|c| c.get(1)), own) {
        (Some(server_ca), Some(own)) => !pki::issued_by(&own, server_ca).unwrap_or(true),
        _ => false,
    };
    several || moved
}

/// A connection to the gateway with a client credential.
pub struct Client {
    /// Held so the endpoint lives exactly as long as the connection.
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    addr: String,
    /// Asking the gateway group's addresses, beside the command's own
    /// calls (see [`Client::follow_group`]); [`Client::close`] gives it a
    /// moment to finish.
    group: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Client {
    /// Connects with the credential found in `home`. If the gateway's CA
    /// is being rotated, this also brings the home along: it fetches the
    /// CAs to trust and, once the new CA issues, renews the certificate and
    /// connects again with it (see [`rotation_due`]).
    pub async fn connect(home: &Home) -> Result<Client, ClientError> {
        let cred = LoadedCredential::load(home).map_err(ClientError::Credential)?;
        let client = Client::connect_with(&cred).await?;
        client.follow_group(home, &cred);
        if !rotation_due(&client.conn, &cred) {
            return Ok(client);
        }
        match client.follow_rotation(home, &cred).await {
            Ok(false) => Ok(client),
            Ok(true) => {
                // The renewal revoked the certificate this connection used.
                client.close().await;
                let cred = LoadedCredential::load(home).map_err(ClientError::Credential)?;
                Client::connect_with(&cred).await
            }
            Err(e) => {
                tracing::warn!(
                    "the gateway is rotating its CA and this credential could not follow: {e}; \
                     run 'openclaw client renew' in {}",
                    home.root().display()
                );
                Ok(client)
            }
        }
    }

    /// Asks the gateway for its group's addresses, in the background of
    /// whatever this client does next, and writes them into client.toml
    /// when they differ from the credential's, so a credential made before
    /// a standby joined finds the new leader after a failover. Only for a
    /// client credential that does not pin its addresses (`follow_group =
    /// false`; a node's home follows through its agent); a gateway that is
    /// no group answers an empty list and nothing changes.
    fn follow_group(&self, home: &Home, cred: &LoadedCredential) {
        if !home.exists(mesh::home::client_files::CERT) || !cred.follow_group {
            return;
        }
        let (conn, home, had) = (self.conn.clone(), home.clone(), cred.gateway.clone());
        let task = tokio::spawn(async move {
            let ask = async {
                let (mut send, mut recv) = conn.open_bi().await.ok()?;
                mesh::write_frame(&mut send, &Open::Request(Request::GatewaySet))
                    .await
                    .ok()?;
                let _ = send.finish();
                mesh::read_frame::<Response>(&mut recv, GROUP_REPLY_LIMIT)
                    .await
                    .ok()
                    .flatten()
            };
            let Some(Response::GatewaySet(addrs)) = ask.await else {
                return;
            };
            if addrs.is_empty() || addrs.join(",") == had {
                return;
            }
            match mesh::group::follow(&home, mesh::home::client_files::CONFIG, &addrs) {
                Ok(true) => {
                    tracing::info!(gateways = ?addrs, "wrote the gateway group into client.toml")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot follow the gateway group: {e}"),
            }
        });
        if let Ok(mut g) = self.group.lock() {
            *g = Some(task);
        }
    }

    /// Fetches the CAs to trust, writes them (except in a gateway's own
    /// home, whose CA file the gateway keeps), and renews the certificate
    /// if the issuing CA did not sign it. True if it renewed.
    async fn follow_rotation(
        &self,
        home: &Home,
        cred: &LoadedCredential,
    ) -> Result<bool, ClientError> {
        let cas_der = match self.call(Request::Trust).await? {
            Response::Trust { cas_der } => cas_der,
            other => return Err(ClientError::Protocol(format!("{other:?}"))),
        };
        let issuing = cas_der
            .first()
            .ok_or_else(|| ClientError::Protocol("the gateway trusts no CA".into()))?;
        if cas_der.len() > 4 || cas_der.iter().any(|d| pki::spki_pin(d).is_err()) {
            return Err(ClientError::Protocol(
                "the gateway sent CAs that are not readable certificates".into(),
            ));
        }
        let own = pki::pem_to_der(&cred.cert_pem, "CERTIFICATE")
            .map_err(|e| ClientError::Credential(e.to_string()))?;
        let local = |e: mesh::home::HomeError| ClientError::Credential(e.to_string());
        if !home.exists(mesh::home::node_files::GATEWAY_CA_KEY) {
            let pem: String = cas_der
                .iter()
                .map(|d| pki::der_to_pem(d, "CERTIFICATE"))
                .collect();
            if pem != cred.ca_pem {
                home.write_public(mesh::home::client_files::CA, pem.as_bytes())
                    .map_err(local)?;
            }
        }
        if pki::issued_by(&own, issuing).unwrap_or(true) {
            return Ok(false);
        }
        let renewed = self.renew_credential(home, cred).await?;
        tracing::info!(client = %renewed.name, "renewed this credential onto the gateway's new CA");
        Ok(true)
    }

    /// Renews this connection's own credential (same name, same key) and
    /// writes the new certificate into `home`; the old one stops working.
    /// Returns the new certificate's details. `openclaw client renew` and a
    /// CA rotation both come here.
    pub async fn renew_credential(
        &self,
        home: &Home,
        cred: &LoadedCredential,
    ) -> Result<pki::PeerCert, ClientError> {
        let bad = |e: &dyn std::fmt::Display| ClientError::Credential(e.to_string());
        let own = pki::pem_to_der(&cred.cert_pem, "CERTIFICATE").map_err(|e| bad(&e))?;
        let name = pki::parse_peer_cert(&own).map_err(|e| bad(&e))?.name;
        let csr_der = pki::make_csr(&name, &cred.key_pem).map_err(|e| bad(&e))?;
        match self.call(Request::ClientRenew { csr_der }).await? {
            Response::ClientIssued { cert_der, .. } => {
                let new = pki::parse_peer_cert(&cert_der).map_err(|e| {
                    ClientError::Protocol(format!("the renewed certificate is unreadable: {e}"))
                })?;
                home.write_public(
                    mesh::home::client_files::CERT,
                    pki::der_to_pem(&cert_der, "CERTIFICATE").as_bytes(),
                )
                .map_err(|e| bad(&e))?;
                Ok(new)
            }
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// Connects with a loaded credential.
    pub async fn connect_with(cred: &LoadedCredential) -> Result<Client, ClientError> {
        let addr = cred.gateway.clone();
        let fail = |msg: String| ClientError::Connect {
            addr: addr.clone(),
            msg,
        };
        // Path MTU discovery stays at quinn's bound for a client
        // (mesh::tls::UDP_PAYLOAD_DEFAULT says why).
        let transport = mesh::tls::client_transport(Duration::from_secs(1), Duration::from_secs(5))
            .map_err(|e| fail(e.to_string()))?;
        let config = mesh::tls::session_client_config(
            &cred.ca_pem,
            &cred.cert_pem,
            &cred.key_pem,
            transport,
        )
        .map_err(|e| ClientError::Credential(e.to_string()))?;
        // A leader and its standbys: the first that takes the session.
        let list = mesh::gateway_list(&addr);
        let n = list.len();
        let mut last = fail("the credential names no gateway".into());
        for one in list {
            let fail = |msg: String| ClientError::Connect {
                addr: one.to_string(),
                msg,
            };
            let remote = match mesh::resolve(one).await {
                Ok(r) => r,
                Err(e) => {
                    last = fail(e);
                    continue;
                }
            };
            if remote.port() == 0 {
                return Err(fail(
                    "the address has port 0: the gateway has not been started yet; run 'openclaw gateway run' \
                     (it records the port it bound in gateway.addr)"
                        .into(),
                ));
            }
            let endpoint = mesh::client_endpoint(remote).map_err(fail)?;
            let connecting = endpoint
                .connect_with(config.clone(), remote, proto::GATEWAY_SERVER_NAME)
                .map_err(|e| fail(e.to_string()))?;
            match mesh::handshake(connecting, n).await {
                Some(Ok(conn)) => {
                    return Ok(Client {
                        _endpoint: endpoint,
                        conn,
                        addr: one.to_string(),
                        group: std::sync::Mutex::new(None),
                    });
                }
                // Refused (a standby) or silent: the next one. Anything
                // else (a revoked certificate, a wrong CA) is the answer.
                Some(Err(e)) if mesh::try_next_gateway(&e) => last = connection_error(one, &e),
                Some(Err(e)) => return Err(connection_error(one, &e)),
                None => last = fail("it did not answer; trying the next gateway".into()),
            }
        }
        Err(last)
    }

    /// Makes one call. A [`Response::Error`] becomes [`ClientError::Api`].
    pub async fn call(&self, req: Request) -> Result<Response, ClientError> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| self.lost(e.into()))?;
        mesh::write_frame(&mut send, &Open::Request(req))
            .await
            .map_err(|e| self.lost(e))?;
        let _ = send.finish();
        match mesh::read_frame::<Response>(&mut recv, REPLY_FRAME_LIMIT).await {
            Ok(Some(Response::Error(e))) => Err(ClientError::Api(e)),
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(match self.conn.close_reason() {
                Some(c) => connection_error(&self.addr, &c),
                None => {
                    ClientError::Protocol("the gateway closed the stream without replying".into())
                }
            }),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Opens one forwarded TCP connection to `port` on `node`'s loopback
    /// (`openclaw forward`): once the gateway answers `Done`, the two
    /// halves carry the connection's bytes, raw.
    pub async fn open_forward(
        &self,
        node: &str,
        port: u16,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| self.lost(e.into()))?;
        let req = Request::Forward {
            node: node.to_string(),
            port,
        };
        mesh::write_frame(&mut send, &Open::Request(req))
            .await
            .map_err(|e| self.lost(e))?;
        match mesh::read_frame::<Response>(&mut recv, REPLY_FRAME_LIMIT).await {
            Ok(Some(Response::Done { .. })) => Ok((send, recv)),
            Ok(Some(Response::Error(e))) => Err(ClientError::Api(e)),
            Ok(Some(r)) => Err(ClientError::Protocol(format!("unexpected reply {r:?}"))),
            Ok(None) => Err(ClientError::Protocol(
                "the gateway closed the forward without replying".into(),
            )),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Fetches the stored artifact `name` of job `id` (issue 23), handing
    /// its bytes to `out` as they arrive, and checks its size and SHA-256
    /// at the end: a short or altered file is an error, never a success.
    /// The caller writes to a temporary place and keeps it only on `Ok`.
    pub async fn fetch_artifact<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        id: u64,
        name: &str,
        on_behalf_of: Option<String>,
        out: &mut W,
    ) -> Result<proto::ArtifactInfo, ClientError> {
        use std::io::Write as _;
        use tokio::io::AsyncWriteExt as _;
        let (info, mut recv) = self.open_artifact(id, name, on_behalf_of).await?;
        let mut hash = pki::Sha256Writer::default();
        let mut got = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match recv.read(&mut buf).await {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => return Err(self.lost(mesh::StreamError::Read(e))),
            };
            got += n as u64;
            if got > info.size {
                return Err(ClientError::Protocol(format!(
                    "artifact {name} of job {id}: the gateway sent more than its {} bytes",
                    info.size
                )));
            }
            let _ = hash.write_all(&buf[..n]);
            out.write_all(&buf[..n])
                .await
                .map_err(|e| ClientError::Protocol(format!("cannot write artifact {name}: {e}")))?;
        }
        out.flush()
            .await
            .map_err(|e| ClientError::Protocol(format!("cannot write artifact {name}: {e}")))?;
        let sum = pki::hex(&hash.finish());
        if got != info.size || sum != info.sha256 {
            return Err(ClientError::Protocol(format!(
                "artifact {name} of job {id} arrived damaged: {got} of {} bytes, SHA-256 {sum} where {} was recorded; nothing was kept",
                info.size, info.sha256
            )));
        }
        Ok(info)
    }

    /// Asks for the stored artifact `name` of job `id`: its record, and the
    /// stream its bytes follow on (raw; the finish is the file's end). The
    /// caller checks the bytes; [`Client::fetch_artifact`] does.
    pub async fn open_artifact(
        &self,
        id: u64,
        name: &str,
        on_behalf_of: Option<String>,
    ) -> Result<(proto::ArtifactInfo, quinn::RecvStream), ClientError> {
        let req = Request::ArtifactGet {
            id,
            name: name.to_string(),
            on_behalf_of,
        };
        let (mut send, mut recv) = self.open_duplex(req).await?;
        let _ = send.finish();
        match mesh::read_frame::<Response>(&mut recv, REPLY_FRAME_LIMIT).await {
            Ok(Some(Response::Artifact(info))) => Ok((info, recv)),
            Ok(Some(Response::Error(e))) => Err(ClientError::Api(e)),
            Ok(Some(r)) => Err(ClientError::Protocol(format!("unexpected reply {r:?}"))),
            Ok(None) => Err(ClientError::Protocol(
                "the gateway closed the stream without replying".into(),
            )),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Opens one copy stream (`openclaw cp`): once the gateway answers
    /// `Done`, the two halves carry [`proto::files::FileMsg`] frames to
    /// and from the node's file child.
    pub async fn open_copy(
        &self,
        req: proto::files::CopyRequest,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(|e| self.lost(e.into()))?;
        mesh::write_frame(&mut send, &Open::Request(Request::Copy(req)))
            .await
            .map_err(|e| self.lost(e))?;
        match mesh::read_frame::<Response>(&mut recv, REPLY_FRAME_LIMIT).await {
            Ok(Some(Response::Done { .. })) => Ok((send, recv)),
            Ok(Some(Response::Error(e))) => Err(ClientError::Api(e)),
            Ok(Some(r)) => Err(ClientError::Protocol(format!("unexpected reply {r:?}"))),
            Ok(None) => Err(match self.conn.close_reason() {
                Some(c) => connection_error(&self.addr, &c),
                None => {
                    ClientError::Protocol("the gateway closed the copy without replying".into())
                }
            }),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Every node, a page at a time (`node list` at 10,000 nodes does not
    /// fit in one reply frame).
    pub async fn all_nodes(&self) -> Result<Vec<proto::NodeInfo>, ClientError> {
        let mut all: Vec<proto::NodeInfo> = Vec::new();
        loop {
            let after = all.last().map(|n| n.name.clone());
            match self.call(Request::NodePage { after, limit: 2000 }).await? {
                Response::Nodes(page) if page.is_empty() => return Ok(all),
                Response::Nodes(page) => all.extend(page),
                r => return Err(ClientError::Protocol(format!("unexpected reply {r:?}"))),
            }
        }
    }

    /// Sends a streaming call (`JobRun`, `JobAttach`) and returns the
    /// stream to read [`proto::JobEvent`]s from with [`Client::next_event`].
    pub async fn open(&self, req: Request) -> Result<quinn::RecvStream, ClientError> {
        let (mut send, recv) = self.conn.open_bi().await.map_err(|e| self.lost(e.into()))?;
        mesh::write_frame(&mut send, &Open::Request(req))
            .await
            .map_err(|e| self.lost(e))?;
        let _ = send.finish();
        Ok(recv)
    }

    /// Sends `JobRunInput` and returns both halves: write the job's
    /// standard input to the first (raw bytes; `finish` is end of file),
    /// read its [`proto::JobEvent`]s from the second.
    pub async fn open_with_input(
        &self,
        spec: proto::JobSpec,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        self.open_duplex(Request::JobRunInput(spec)).await
    }

    /// Sends a call whose stream carries data after it (`JobRunInput`, a
    /// `JobRequest` with input) and returns both halves, as
    /// [`Client::open_with_input`].
    pub async fn open_duplex(
        &self,
        req: Request,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        let (mut send, recv) = self.conn.open_bi().await.map_err(|e| self.lost(e.into()))?;
        mesh::write_frame(&mut send, &Open::Request(req))
            .await
            .map_err(|e| self.lost(e))?;
        Ok((send, recv))
    }

    /// Sends `JobRunTty` (an interactive session on `tty`) and returns
    /// both halves: write tty frames (`proto::tty`) to the first, read the
    /// session's [`proto::JobEvent`]s from the second.
    pub async fn open_with_tty(
        &self,
        spec: proto::JobSpec,
        tty: proto::tty::Tty,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        let (mut send, recv) = self.conn.open_bi().await.map_err(|e| self.lost(e.into()))?;
        mesh::write_frame(&mut send, &Open::Request(Request::JobRunTty { spec, tty }))
            .await
            .map_err(|e| self.lost(e))?;
        Ok((send, recv))
    }

    /// The next event of a streaming call; `None` when the stream ended
    /// without an `End` (the gateway went away).
    pub async fn next_event(
        &self,
        recv: &mut quinn::RecvStream,
    ) -> Result<Option<proto::JobEvent>, ClientError> {
        match mesh::read_incoming::<proto::JobEvent>(recv, REPLY_FRAME_LIMIT).await {
            Ok(Some(mesh::Incoming::Message(e))) => Ok(Some(e)),
            Ok(Some(mesh::Incoming::Data { stream, len, .. })) => {
                let mut data = Vec::with_capacity(len);
                mesh::read_data(recv, len, |chunk| {
                    data.extend_from_slice(&chunk);
                    Ok(())
                })
                .await
                .map_err(|e| self.lost(e))?;
                Ok(Some(proto::JobEvent::Output { stream, data }))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// The next event of a fan-out (`FanOut`, `FanOutAttach`); `None` when
    /// the stream ended without `Done` (the gateway went away).
    pub async fn next_fan_event(
        &self,
        recv: &mut quinn::RecvStream,
    ) -> Result<Option<proto::FanEvent>, ClientError> {
        mesh::read_frame::<proto::FanEvent>(recv, REPLY_FRAME_LIMIT)
            .await
            .map_err(|e| self.lost(e))
    }

    /// Like [`Client::next_event`], but output goes straight to `sink` as
    /// it arrives (no copy into an event); returns the next other event.
    pub async fn next_event_streaming(
        &self,
        recv: &mut quinn::RecvStream,
        mut sink: impl FnMut(proto::OutStream, &[u8]),
    ) -> Result<Option<proto::JobEvent>, ClientError> {
        // Allocated at the first data frame and reused for the rest: the
        // sink gets whatever has arrived at once, not one call per QUIC
        // frame (the CLI's sink is a write to its stdout).
        let mut buf: Vec<u8> = Vec::new();
        loop {
            match mesh::read_incoming::<proto::JobEvent>(recv, REPLY_FRAME_LIMIT).await {
                Ok(Some(mesh::Incoming::Message(e))) => return Ok(Some(e)),
                Ok(Some(mesh::Incoming::Data { stream, len, .. })) => {
                    if buf.is_empty() {
                        // Zeroed by the allocator: pages are touched only
                        // as far as reads fill them.
                        buf = vec![0; STREAMING_READ];
                    }
                    mesh::read_data_buffered(recv, len, &mut buf, |data| {
                        sink(stream, data);
                        Ok(())
                    })
                    .await
                    .map_err(|e| self.lost(e))?;
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.lost(e)),
            }
        }
    }

    fn lost(&self, e: mesh::StreamError) -> ClientError {
        match e.connection_error() {
            Some(c) => connection_error(&self.addr, c),
            None => ClientError::Protocol(e.to_string()),
        }
    }

    /// The name of the gateway this connection reached (from its server
    /// certificate): with a leader and standbys, the leader.
    pub fn gateway_name(&self) -> Option<String> {
        let chain = self
            .conn
            .peer_identity()?
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()?;
        pki::gateway_name(chain.first()?)
    }

    /// The gateway address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The underlying connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Closes the connection politely. It gives the connection's driver a
    /// turn to send the CONNECTION_CLOSE, but does not wait out QUIC's
    /// draining period (three PTOs, about 100 ms here): the gateway frees
    /// the session when the close arrives, and a one-shot CLI command
    /// should not idle before it exits.
    pub async fn close(&self) {
        let group = self.group.lock().ok().and_then(|mut g| g.take());
        if let Some(task) = group {
            // Asked at connect: answered long since, unless the gateway
            // is slow; never worth holding up the exit for.
            if tokio::time::timeout(GROUP_WAIT, task).await.is_err() {
                tracing::debug!("the gateway group was not answered in time");
            }
        }
        self.conn
            .close(proto::CloseCode::Normal.code().into(), b"done");
        for _ in 0..CLOSE_YIELDS {
            tokio::task::yield_now().await;
        }
    }
}
