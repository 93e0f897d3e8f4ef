//! The gateway in process, for tests: a real gateway home in a temporary
//! directory (made by the real `init`), the real [`Shared`] with SQLite
//! state, the real timers (the dead-node reaper, retention), and fake
//! peers that speak the real session protocol over in-memory pipes.
//!
//! There is no QUIC and no TLS here. A fake peer presents the certificate
//! the CA issued it, as the mTLS layer hands the session the certificate
//! it verified; `session::serve` then makes every decision it makes for a
//! QUIC peer (revocation, enrollment state, the current serial). Nothing
//! here exists outside `cfg(any(test, feature = "test-utils"))`.
//!
//! With `#[tokio::test(start_paused = true)]` the gateway's clock
//! ([`crate::clock::Clock`]) is tokio's paused clock: a test moves it with
//! `tokio::time::sleep` or `advance` and never waits for real time.
//! The harness's own calls into the gateway run [`frozen`]: the clock
//! stands still while the gateway's threads (database, log writer) answer
//! them, so a check made "1.5 s after submitting" is made then, not after
//! a timer that tokio's auto-advance fired meanwhile.

// Test support: a failed setup is a failed test, so it panics with what
// failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh::Home;
use proto::{
    ControlMsg, EnrollReply, EnrollRequest, EnrollSubmit, Heartbeat, JobCtl, JobEvent, JobFrame,
    JobPlan, NodeHello, Open, OutStream, Request, Response,
};
use rustls::pki_types::CertificateDer;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::link::Link;
pub use crate::link::fake::{FakeDialer, FakeStream};
use crate::shared::{Shared, off_runtime};
use crate::{Listener, Loaded, assemble, session, timers};

/// The largest frame a fake peer accepts.
const FRAME_LIMIT: usize = proto::MAX_FRAME_LEN;

/// A gateway in process over a temporary home.
pub struct Harness {
    pub(crate) shared: Arc<Shared>,
    timers: Vec<JoinHandle<()>>,
    admin: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for t in &self.timers {
            t.abort();
        }
    }
}

impl Harness {
    /// A gateway with the configuration `gateway init` writes.
    pub async fn start() -> Harness {
        Harness::with_toml(|_| {}).await
    }

    /// A gateway whose `gateway.toml` (as `gateway init` wrote it) `edit`
    /// changed first, as an operator would (see [`set`]).
    pub async fn with_toml(edit: impl FnOnce(&mut String)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("gw"));
        crate::init(&home, "127.0.0.1:4433", "gw", None).unwrap();
        let mut text = home
            .read_text(crate::files::CONFIG, "written by init")
            .unwrap();
        edit(&mut text);
        home.write_public(crate::files::CONFIG, text.as_bytes())
            .unwrap();
        let clock = Clock::system();
        let Loaded {
            config,
            material,
            store,
        } = Loaded::read(&home, None, &clock).unwrap();
        let bound: SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let shared = assemble(
            &home,
            config,
            material.state,
            store,
            clock,
            Arc::new(mesh::RevokedSerials::default()),
            Listener {
                endpoint: None,
                bound,
                advertise: bound.to_string(),
                shared_state: false,
            },
        )
        .await
        .unwrap();
        let admin = home
            .read_text(mesh::home::client_files::CERT, "written by init")
            .unwrap();
        let admin = CertificateDer::from(pki::pem_to_der(&admin, "CERTIFICATE").unwrap());
        Harness {
            timers: timers(&shared).into(),
            shared,
            admin,
            _dir: dir,
        }
    }

    /// Edits `gateway.toml` as an operator would and reloads it as SIGHUP
    /// does; the reload's refusal, if any.
    pub fn reconfigure(&self, edit: impl FnOnce(&mut String)) -> Result<(), String> {
        let home = &self.shared.home;
        let mut text = home
            .read_text(crate::files::CONFIG, "written by init")
            .unwrap();
        edit(&mut text);
        home.write_public(crate::files::CONFIG, text.as_bytes())
            .unwrap();
        self.shared.reload()
    }

    /// The gateway's clock.
    pub fn clock(&self) -> Clock {
        self.shared.clock
    }

    /// Waits until `done` holds, yielding to the gateway's tasks and
    /// giving its threads (database, log writer) real time, without moving
    /// tokio's clock. Panics, naming `what`, if it never holds.
    pub async fn settle(&self, what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..20_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_micros(250));
        }
        panic!("never happened: {what}");
    }

    /// Lets the clock run until `done` holds, checking every 50 ms or
    /// every 1/400 of `limit` if that is longer (each check [`frozen`]);
    /// panics, naming `what`, if it does not hold within `limit`. Returns
    /// how long it took on the gateway's clock.
    pub async fn within(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl AsyncFnMut() -> bool,
    ) -> Duration {
        let start = self.clock().now();
        let step = (limit / 400).max(Duration::from_millis(50));
        loop {
            if frozen(done()).await {
                return self.clock().since(start);
            }
            if self.clock().since(start) > limit {
                panic!("not within {limit:?}: {what}");
            }
            tokio::time::sleep(step).await;
        }
    }

    /// A connection of the admin credential `init` wrote.
    pub async fn admin(&self) -> FakePeer {
        FakePeer::connect(self, self.admin.clone()).await
    }

    /// One admin API call, over an admin session's stream.
    pub async fn call(&self, req: Request) -> Response {
        frozen(async {
            let admin = self.admin().await;
            let resp = admin.call(req).await;
            admin.close();
            resp
        })
        .await
    }

    /// A connection of a new lab member's credential (`openclaw client
    /// create NAME --role user`): its jobs are charged to `user:NAME`.
    pub async fn user(&self, name: &str) -> FakePeer {
        let key = pki::generate_key().unwrap();
        let resp = self
            .call(Request::ClientIssue {
                name: name.to_string(),
                role: proto::Role::User,
                namespace: None,
                ttl_secs: None,
                csr_der: pki::make_csr(name, &key.key_pem).unwrap(),
            })
            .await;
        match resp {
            Response::ClientIssued { cert_der, .. } => {
                FakePeer::connect(self, CertificateDer::from(cert_der)).await
            }
            other => panic!("client issue {name}: {other:?}"),
        }
    }

    /// Enrolls node `name` with an auto-approving token that confirms
    /// `gpus` GPUs, as `openclaw node enroll` does; returns its certificate.
    pub async fn enroll(&self, name: &str, gpus: u32) -> CertificateDer<'static> {
        let token = self.token(3600, 1, Some(gpus)).await;
        match self.submit_enrollment(&token, name).await {
            EnrollReply::Approved { cert_der, .. } => CertificateDer::from(cert_der),
            other => panic!("enrollment of {name}: {other:?}"),
        }
    }

    /// An auto-approving join token (`openclaw token create
    /// --auto-approve`).
    pub async fn token(&self, ttl_secs: u64, uses: u32, max_gpus: Option<u32>) -> pki::JoinToken {
        match self
            .call(Request::TokenCreate {
                ttl_secs,
                uses,
                labels: Vec::new(),
                auto_approve: true,
                max_gpus,
            })
            .await
        {
            Response::TokenCreated { token, .. } => pki::JoinToken::parse(&token).unwrap(),
            other => panic!("token create: {other:?}"),
        }
    }

    /// A node's enrollment request with `token`, as the enrollment ALPN
    /// hands it to the gateway; the gateway's reply.
    pub async fn submit_enrollment(&self, token: &pki::JoinToken, name: &str) -> EnrollReply {
        let key = pki::generate_key().unwrap();
        let submit = EnrollSubmit {
            token_id: token.id.clone(),
            token_secret: token.secret.expose().to_string(),
            name: name.to_string(),
            labels: Vec::new(),
            csr_der: pki::make_csr(name, &key.key_pem).unwrap(),
        };
        let remote: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        off_runtime(&self.shared, move |s| {
            crate::enroll::handle(s, EnrollRequest::Submit(submit), remote)
        })
        .await
        .unwrap()
    }

    /// Enrolls node `name` and connects it: its hello (`max_jobs` 4,
    /// `gpus` GPUs) answered by the gateway's welcome.
    pub async fn node(&self, name: &str, gpus: u32) -> FakeNode {
        let cert = self.enroll(name, gpus).await;
        FakeNode::connect(self, name, cert, gpus).await
    }

    /// A job's state as `job show` reports it.
    pub async fn job(&self, id: u64) -> proto::JobInfo {
        match self
            .call(Request::JobShow {
                id,
                on_behalf_of: None,
            })
            .await
        {
            Response::Job(info) => info,
            other => panic!("job show {id}: {other:?}"),
        }
    }

    /// A node's CONNECTION column as `node list` reports it.
    pub async fn connection(&self, name: &str) -> String {
        match self
            .call(Request::NodeShow {
                name: name.to_string(),
            })
            .await
        {
            Response::Node(n) => n.connection,
            other => panic!("node show {name}: {other:?}"),
        }
    }
}

/// Runs `fut` with tokio's clock held still: a test's own call to the
/// gateway may wait on the gateway's threads (the database, the log
/// writer), and a paused clock that found every task idle meanwhile would
/// jump to the next timer (tokio's auto-advance). A blocking task that
/// runs for as long as `fut` keeps it from doing so (tokio does not
/// auto-advance while one runs).
pub async fn frozen<T>(fut: impl std::future::Future<Output = T>) -> T {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let hold = tokio::task::spawn_blocking(move || {
        let _ = wait.recv();
    });
    let out = fut.await;
    drop(done);
    let _ = hold.await;
    out
}

/// Replaces `from` with `to` in a configuration text; fails the test when
/// `from` is not there (an edit that matched nothing tests nothing).
pub fn set(text: &mut String, from: &str, to: &str) {
    assert!(text.contains(from), "the configuration has no {from:?}");
    *text = text.replacen(from, to, 1);
}

/// A peer's end of an in-memory connection to the harness's gateway,
/// served by the real session code.
pub struct FakePeer {
    dialer: FakeDialer,
    session: JoinHandle<()>,
}

impl FakePeer {
    /// Connects with `cert`, the certificate the TLS layer would have
    /// verified.
    pub async fn connect(h: &Harness, cert: CertificateDer<'static>) -> FakePeer {
        let (dialer, link) = FakeDialer::new();
        let session = tokio::spawn(session::serve(
            h.shared.clone(),
            Link::Fake(link),
            Some(cert),
        ));
        FakePeer { dialer, session }
    }

    /// Opens a bidirectional stream: what this side sends on, what it reads.
    pub async fn open_bi(&self) -> (FakeStream, FakeStream) {
        self.dialer
            .open_bi()
            .await
            .expect("the gateway accepts streams")
    }

    /// Opens a unidirectional stream.
    pub async fn open_uni(&self) -> FakeStream {
        self.dialer
            .open_uni()
            .await
            .expect("the gateway accepts streams")
    }

    /// One API call on a stream of its own.
    pub async fn call(&self, req: Request) -> Response {
        frozen(async {
            let (mut send, mut recv) = self.open_bi().await;
            mesh::write_frame(&mut send, &Open::Request(req))
                .await
                .unwrap();
            mesh::read_frame::<Response>(&mut recv, FRAME_LIMIT)
                .await
                .unwrap()
                .expect("an answer")
        })
        .await
    }

    /// Submits a job and reads its events up to `JobEvent::Accepted`.
    pub async fn run(&self, spec: proto::JobSpec) -> (proto::JobInfo, FakeStream) {
        frozen(async {
            let (mut send, mut recv) = self.open_bi().await;
            mesh::write_frame(&mut send, &Open::Request(Request::JobRun(spec)))
                .await
                .unwrap();
            match mesh::read_frame::<JobEvent>(&mut recv, FRAME_LIMIT).await {
                Ok(Some(JobEvent::Accepted(info))) => (info, recv),
                other => panic!("job run: {other:?}"),
            }
        })
        .await
    }

    /// Submits a detached job with options (`openclaw run --detach
    /// --project …`); the gateway's answer.
    pub async fn submit_with(
        &self,
        spec: proto::JobSpec,
        options: Vec<proto::JobOption>,
    ) -> Response {
        self.call(Request::JobRequest(proto::JobRequest {
            spec,
            follow: proto::Follow::Detached,
            options,
        }))
        .await
    }

    /// Starts a fan-out and reads its events up to `FanEvent::Accepted`.
    pub async fn fan_out(&self, spec: proto::FanOutSpec) -> (proto::FanInfo, FakeStream) {
        frozen(async {
            let (mut send, mut recv) = self.open_bi().await;
            mesh::write_frame(&mut send, &Open::Request(Request::FanOut(spec)))
                .await
                .unwrap();
            match mesh::read_frame::<proto::FanEvent>(&mut recv, FRAME_LIMIT).await {
                Ok(Some(proto::FanEvent::Accepted(info))) => (info, recv),
                other => panic!("fan-out: {other:?}"),
            }
        })
        .await
    }

    /// Why the gateway closed this connection, if it has.
    pub fn close_reason(&self) -> Option<String> {
        self.dialer.close_reason()
    }

    /// Closes the connection from this side (the peer went away).
    pub fn close(&self) {
        self.dialer.close();
    }

    /// Whether the gateway's session task for this connection ended.
    pub fn session_ended(&self) -> bool {
        self.session.is_finished()
    }
}

/// A node agent's side of a session: its control stream after the
/// welcome, and a heartbeat stream.
pub struct FakeNode {
    /// The node's name.
    pub name: String,
    /// Its connection.
    pub peer: FakePeer,
    control: FakeStream,
    control_send: FakeStream,
    heartbeat: FakeStream,
    seq: u64,
    beating: Option<JoinHandle<()>>,
}

impl FakeNode {
    /// Connects node `name` with `cert`, says hello, reads the welcome and
    /// the CAs to trust, and opens its heartbeat stream.
    pub async fn connect(
        h: &Harness,
        name: &str,
        cert: CertificateDer<'static>,
        gpus: u32,
    ) -> FakeNode {
        frozen(FakeNode::handshake(h, name, cert, gpus)).await
    }

    async fn handshake(
        h: &Harness,
        name: &str,
        cert: CertificateDer<'static>,
        gpus: u32,
    ) -> FakeNode {
        let peer = FakePeer::connect(h, cert).await;
        let (mut send, mut recv) = peer.open_bi().await;
        let hello = NodeHello {
            protocol: proto::PROTOCOL_VERSION,
            agent_version: "fake".into(),
            gpus,
            gpus_simulated: true,
            max_jobs: 4,
        };
        mesh::write_frame(&mut send, &Open::Control(hello))
            .await
            .unwrap();
        match mesh::read_frame::<ControlMsg>(&mut recv, FRAME_LIMIT).await {
            Ok(Some(ControlMsg::Welcome { .. })) => {}
            other => panic!("{name}'s hello: {other:?}"),
        }
        match mesh::read_frame::<ControlMsg>(&mut recv, FRAME_LIMIT).await {
            Ok(Some(ControlMsg::Trust { .. })) => {}
            other => panic!("{name}'s trust message: {other:?}"),
        }
        let mut heartbeat = peer.open_uni().await;
        mesh::write_frame(&mut heartbeat, &Open::Heartbeat)
            .await
            .unwrap();
        let mut node = FakeNode {
            name: name.to_string(),
            peer,
            control: recv,
            control_send: send,
            heartbeat,
            seq: 0,
            beating: None,
        };
        node.beat().await;
        let n = node.name.clone();
        h.settle(&format!("{n} is registered"), || {
            h.shared.registry.connection(&n).is_some()
        })
        .await;
        node
    }

    /// Sends one heartbeat.
    pub async fn beat(&mut self) {
        self.seq += 1;
        // Protocol 3: a heartbeat, then each GPU's health (none here).
        let hb = proto::HeartbeatV3 {
            beat: Heartbeat {
                seq: self.seq,
                ..Heartbeat::default()
            },
            health: vec![],
        };
        mesh::write_frame(&mut self.heartbeat, &hb).await.unwrap();
    }

    /// Sends a heartbeat every `every` from now on, as the agent does,
    /// until [`FakeNode::go_silent`].
    pub fn beat_every(&mut self, every: Duration) {
        let mut stream = std::mem::replace(&mut self.heartbeat, self.peer.dialer.finished());
        let mut seq = self.seq;
        self.beating = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                seq += 1;
                let hb = proto::HeartbeatV3 {
                    beat: Heartbeat {
                        seq,
                        ..Heartbeat::default()
                    },
                    health: vec![],
                };
                if mesh::write_frame(&mut stream, &hb).await.is_err() {
                    return;
                }
            }
        }));
    }

    /// Stops sending anything (a killed or cut-off node): its connection
    /// stays open until the gateway gives up on it.
    pub fn go_silent(&mut self) {
        if let Some(b) = self.beating.take() {
            b.abort();
        }
    }

    /// The next control message that is not a heartbeat-related one.
    pub async fn next_control(&mut self) -> ControlMsg {
        mesh::read_frame::<ControlMsg>(&mut self.control, FRAME_LIMIT)
            .await
            .unwrap()
            .expect("a control message")
    }

    /// Waits for the gateway to dispatch a job to this node.
    pub async fn next_job(&mut self) -> JobPlan {
        loop {
            match self.next_control().await {
                ControlMsg::RunJob(plan) => return plan,
                ControlMsg::RunJobWith(d) => return d.plan,
                _ => continue,
            }
        }
    }

    /// Opens job `id`'s report stream; the gateway answers `Resume`.
    pub async fn attach(&self, id: u64) -> FakeJob {
        frozen(async {
            let (mut send, mut recv) = self.peer.open_bi().await;
            mesh::write_frame(&mut send, &Open::Job { job_id: id })
                .await
                .unwrap();
            let resume = mesh::read_frame::<JobCtl>(&mut recv, FRAME_LIMIT)
                .await
                .unwrap()
                .expect("the gateway's answer to a job stream");
            FakeJob { send, recv, resume }
        })
        .await
    }

    /// Closes the control stream from the node's side.
    pub fn end_control(&mut self) {
        self.control_send.finish();
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.go_silent();
    }
}

/// A node's report stream for one job.
pub struct FakeJob {
    send: FakeStream,
    recv: FakeStream,
    /// The gateway's first answer (`Resume`, or `Reject`).
    pub resume: JobCtl,
}

impl FakeJob {
    /// The process started.
    pub async fn started(&mut self) {
        let f = JobFrame::Started {
            pid: 4242,
            gpus: Vec::new(),
        };
        mesh::write_frame(&mut self.send, &f).await.unwrap();
    }

    /// Output bytes of `stream` at `offset`.
    pub async fn output(&mut self, stream: OutStream, offset: u64, data: &[u8]) {
        mesh::write_data(
            &mut self.send,
            stream,
            offset,
            bytes::Bytes::copy_from_slice(data),
        )
        .await
        .unwrap();
    }

    /// The process exited with `code`.
    pub async fn exit(&mut self, code: i32) {
        let f = JobFrame::Exit {
            code,
            timed_out: false,
            cancelled: false,
            killed: 0,
        };
        mesh::write_frame(&mut self.send, &f).await.unwrap();
    }

    /// The process ended after a cancel (SIGTERM), as the node reports it.
    pub async fn exit_cancelled(&mut self) {
        let f = JobFrame::Exit {
            code: 143,
            timed_out: false,
            cancelled: true,
            killed: 0,
        };
        mesh::write_frame(&mut self.send, &f).await.unwrap();
    }

    /// The next control message on the job's stream (`Ack`, `Cancel`,
    /// `Done`); `None` when the gateway ended the stream.
    pub async fn next_ctl(&mut self) -> Option<JobCtl> {
        mesh::read_frame::<JobCtl>(&mut self.recv, FRAME_LIMIT)
            .await
            .ok()
            .flatten()
    }
}
