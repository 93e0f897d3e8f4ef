//! The engine in process, with tokio's paused clock: a scripted gateway
//! ([`Gw`]) and a chat surface that records what it was told ([`Chat`]).
//! What needs the real wire (Socket Mode, WeCom frames, QUIC) is in the
//! integration tests; here are the engine's own decisions: who is
//! answered, what is asked of the gateway, when a live message is edited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat::UserLimits;
use chat::render::Markup;
use client::{ClientError, FanFollowed, FollowError, FollowOptions, Followed};
use proto::{
    ApiError, ErrorCode, FanEvent, FanInfo, FanMember, FanOutSpec, JobInfo, JobSpec, NodeInfo,
    OutStream, Request, Response,
};
use tokio::time::Instant;

use super::{Access, Api, Call, Change, Decision, EDIT_EVERY, Engine, Origin, RunError, Surface};

/// What the surface was told, and when (paused-clock time since the
/// test began).
#[derive(Debug, Clone, PartialEq)]
enum Said {
    Reply(String),
    Notice(String),
    Open(String),
    Edit(String, Change),
    Ask(u64),
    Attach(u64, usize),
}

struct ChatLog {
    start: Instant,
    said: Mutex<Vec<(Duration, Said)>>,
    /// Whether uploads work here.
    uploads: bool,
}

/// The recording surface.
#[derive(Clone)]
struct Chat(Arc<ChatLog>);

impl Chat {
    fn new(uploads: bool) -> Chat {
        Chat(Arc::new(ChatLog {
            start: Instant::now(),
            said: Mutex::new(Vec::new()),
            uploads,
        }))
    }

    fn push(&self, s: Said) {
        let at = self.0.start.elapsed();
        self.0.said.lock().unwrap().push((at, s));
    }

    fn said(&self) -> Vec<Said> {
        self.0
            .said
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn edits(&self) -> Vec<(Duration, String, Change)> {
        let said = self.0.said.lock().unwrap();
        said.iter()
            .filter_map(|(at, s)| match s {
                Said::Edit(t, c) => Some((*at, t.clone(), *c)),
                _ => None,
            })
            .collect()
    }

    fn replies(&self) -> Vec<String> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Reply(t) => Some(t),
                _ => None,
            })
            .collect()
    }
}

struct Plain;

impl Markup for Plain {
    fn escape(&self, s: &str) -> String {
        s.to_string()
    }
    fn mention(&self, identity: &str) -> String {
        format!("@{identity}")
    }
}

impl Surface for Chat {
    type Live = ();
    fn markup(&self) -> &(dyn Markup + Sync) {
        &Plain
    }
    fn max_len(&self) -> usize {
        4000
    }
    async fn reply(&self, _: &Origin, text: &str) {
        self.push(Said::Reply(text.into()));
    }
    async fn notice(&self, _: &Origin, text: &str) {
        self.push(Said::Notice(text.into()));
    }
    async fn open_live(&self, _: &Origin, text: &str) -> Option<()> {
        self.push(Said::Open(text.into()));
        Some(())
    }
    async fn edit_live(&self, _: &mut (), text: &str, change: Change) {
        self.push(Said::Edit(text.into(), change));
    }
    async fn ask_approval(&self, _: &Origin, job: &JobInfo) {
        self.push(Said::Ask(job.id));
    }
    async fn attach_log(&self, _: &Origin, job: &JobInfo, log: &[u8]) -> Result<(), String> {
        self.push(Said::Attach(job.id, log.len()));
        if self.0.uploads {
            Ok(())
        } else {
            Err("no files:write scope".into())
        }
    }
    async fn in_group(&self, _: &str) -> bool {
        false
    }
}

/// One step of a scripted job run.
enum Step {
    State(Box<JobInfo>),
    Out(&'static str),
    Wait(Duration),
    Lost,
}

/// A job run's script: its steps, then how it ends.
type Script = (Vec<Step>, Result<JobInfo, RunError>);
/// A fan-out event, after a pause.
type FanStep = (Duration, Result<Option<FanEvent>, ClientError>);

type Answer = Box<dyn Fn(&Request) -> Option<Result<Response, ClientError>> + Send + Sync>;

/// The scripted gateway: answers by a test's function (else a chat
/// context with two nodes, else `Done`), runs jobs and fan-outs from
/// scripts, and records every request.
struct GwState {
    calls: Mutex<Vec<Request>>,
    answer: Answer,
    /// Steps of the next job run, then how it ends.
    run: Mutex<Option<Script>>,
    runs: Mutex<Vec<JobSpec>>,
    /// The options of each run, in turn.
    options: Mutex<Vec<Vec<proto::JobOption>>>,
    /// Events of the next fan-out, each after a pause.
    fan: Mutex<Vec<FanStep>>,
    logs: HashMap<u64, Vec<u8>>,
}

#[derive(Clone)]
struct Gw(Arc<GwState>);

impl Gw {
    fn new(answer: Answer) -> Gw {
        Gw(Arc::new(GwState {
            calls: Mutex::new(Vec::new()),
            answer,
            run: Mutex::new(None),
            runs: Mutex::new(Vec::new()),
            options: Mutex::new(Vec::new()),
            fan: Mutex::new(Vec::new()),
            logs: HashMap::new(),
        }))
    }

    fn with_logs(answer: Answer, logs: HashMap<u64, Vec<u8>>) -> Gw {
        let g = Gw::new(answer);
        let mut st = Arc::try_unwrap(g.0).ok().unwrap();
        st.logs = logs;
        Gw(Arc::new(st))
    }

    fn script(&self, steps: Vec<Step>, end: Result<JobInfo, RunError>) {
        *self.0.run.lock().unwrap() = Some((steps, end));
    }

    fn methods(&self) -> Vec<&'static str> {
        let calls = self.0.calls.lock().unwrap();
        calls.iter().map(|r| r.method()).collect()
    }

    fn runs(&self) -> Vec<JobSpec> {
        self.0.runs.lock().unwrap().clone()
    }
}

impl Call for Gw {
    async fn call(&self, req: Request) -> Result<Response, ClientError> {
        self.0.calls.lock().unwrap().push(req.clone());
        if let Some(a) = (self.0.answer)(&req) {
            return a;
        }
        Ok(match req {
            Request::ChatContext => Response::ChatContext {
                nodes: vec!["worker-cpu-01".into(), "worker-gpu-01".into()],
                jobs: vec![],
                roles: vec!["gpu".into()],
            },
            // Lands where it was asked to, else on the first node.
            Request::JobPreview(spec) => Response::Preview {
                node: spec.node.unwrap_or_else(|| "worker-cpu-01".into()),
                argv: spec.argv,
                named_job: None,
                role: spec.role,
                decision: "allow".into(),
                approvers: vec![],
                rule: None,
            },
            _ => Response::Done {
                message: "done".into(),
            },
        })
    }
}

impl Api for Gw {
    async fn run_job(
        &self,
        spec: JobSpec,
        options: Vec<proto::JobOption>,
        _: FollowOptions,
        mut sink: impl FnMut(Followed<'_>) + Send,
    ) -> Result<JobInfo, RunError> {
        self.0.runs.lock().unwrap().push(spec);
        self.0.options.lock().unwrap().push(options);
        let Some((steps, end)) = self.0.run.lock().unwrap().take() else {
            return Err(RunError::Unreachable(ClientError::Protocol(
                "no job scripted".into(),
            )));
        };
        for s in steps {
            match s {
                Step::State(j) => sink(Followed::State(&j)),
                Step::Out(text) => sink(Followed::Output(OutStream::Stdout, text.as_bytes())),
                Step::Wait(d) => tokio::time::sleep(d).await,
                Step::Lost => sink(Followed::Reconnecting { id: 1, why: "gone" }),
            }
        }
        end
    }

    async fn fan_out(
        &self,
        _: FanOutSpec,
        _: FollowOptions,
        mut sink: impl FnMut(FanFollowed<'_>) + Send,
    ) -> Result<FanInfo, RunError> {
        let script = std::mem::take(&mut *self.0.fan.lock().unwrap());
        let mut info = None;
        for (wait, ev) in script {
            tokio::time::sleep(wait).await;
            match ev {
                Ok(Some(FanEvent::Accepted(i))) => {
                    sink(FanFollowed::Accepted(&i));
                    info = Some(i);
                }
                Ok(Some(FanEvent::Ended { member, job })) => {
                    sink(FanFollowed::Ended { member, job: &job })
                }
                Ok(Some(FanEvent::Done)) => return Ok(info.unwrap()),
                Ok(Some(FanEvent::Error(e))) => return Err(RunError::Follow(FollowError::Api(e))),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return Err(RunError::Follow(FollowError::FanLost {
                        id: info.map_or(0, |i| i.id),
                        why: "gone".into(),
                    }));
                }
            }
        }
        // The stream stays open, as a real one does, until dropped.
        std::future::pending().await
    }

    async fn log(
        &self,
        id: u64,
        _: Option<String>,
        max: usize,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let log = self.0.logs.get(&id).cloned().unwrap_or_default();
        Ok((log.len() <= max).then_some(log))
    }

    async fn log_tail(
        &self,
        id: u64,
        _: Option<String>,
        max: usize,
    ) -> Result<(Vec<u8>, bool), ClientError> {
        let log = self.0.logs.get(&id).cloned().unwrap_or_default();
        let cut = log.len() > max;
        Ok((log[log.len().saturating_sub(max)..].to_vec(), cut))
    }

    async fn artifact(
        &self,
        id: u64,
        name: &str,
        _: Option<String>,
    ) -> Result<Vec<u8>, ClientError> {
        Err(ClientError::Protocol(format!(
            "job {id} has no artifact {name} here"
        )))
    }
}

fn no_answer() -> Answer {
    Box::new(|_| None)
}

fn origin(user: &str, event: &str) -> Origin {
    Origin {
        user: user.into(),
        chat: "C-LAB".into(),
        dm: false,
        event: event.into(),
        reply: String::new(),
    }
}

fn access(users: &[&str]) -> Access {
    Access {
        users: users.iter().map(|u| u.to_string()).collect(),
        ..Access::default()
    }
}

fn engine(gw: &Gw, chat: &Chat, access: Access) -> Arc<Engine<Chat, Gw>> {
    Arc::new(Engine::new(
        chat.clone(),
        gw.clone(),
        access,
        "slack:T0LAB".into(),
    ))
}

fn job(id: u64, state: &str) -> JobInfo {
    JobInfo {
        id,
        state: state.into(),
        node: "worker-cpu-01".into(),
        argv: vec!["hostname".into()],
        approvers: vec!["slack:T0LAB/UBOSS".into()],
        ..JobInfo::default()
    }
}

fn ended(id: u64, code: i32, out: u64) -> JobInfo {
    JobInfo {
        exit_code: Some(code),
        stdout_bytes: out,
        ..job(id, "exited")
    }
}

fn node(name: &str, labels: &[&str]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        connection: "online".into(),
        health: "healthy".into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        ..NodeInfo::default()
    }
}

/// Lets every task the engine spawned run to its end (the clock is
/// paused: sleeping moves it on only once everything else waits).
async fn settle(for_: Duration) {
    tokio::time::sleep(for_).await;
}

#[tokio::test(start_paused = true)]
async fn a_stranger_is_refused_and_the_gateway_never_hears_of_it() {
    let (gw, chat) = (Gw::new(no_answer()), Chat::new(true));
    let e = engine(&gw, &chat, access(&["U1"]));
    e.on_message(origin("U2", "ev1"), "run hostname on worker-cpu-01".into());
    settle(Duration::from_secs(5)).await;
    assert_eq!(
        chat.replies(),
        ["sorry, I only take requests from the lab's registered users. Ask an admin to add you."]
    );
    assert!(gw.methods().is_empty(), "{:?}", gw.methods());
    // A click is refused the same way, as a notice only they see.
    e.on_click(origin("U2", "ev2"), Decision::Approve, 3);
    settle(Duration::from_secs(5)).await;
    assert!(matches!(chat.said().last(), Some(Said::Notice(t)) if t.contains("registered users")));
    assert!(gw.methods().is_empty(), "{:?}", gw.methods());
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_event_is_answered_once() {
    let (gw, chat) = (Gw::new(no_answer()), Chat::new(true));
    let e = engine(&gw, &chat, access(&["U1"]));
    for _ in 0..3 {
        e.on_message(origin("U1", "ev-same"), "cancel 4".into());
    }
    settle(Duration::from_secs(5)).await;
    assert_eq!(gw.methods(), ["chat.audit", "chat.context", "job.cancel"]);
    assert_eq!(chat.replies(), ["done"]);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_job_is_named_in_chat_terms_and_a_refused_click_says_not_allowed() {
    let gw = Gw::new(Box::new(|r| match r {
        Request::JobShow { .. } => Some(Err(ClientError::Api(ApiError::new(
            ErrorCode::NotFound,
            "no job 7",
        )))),
        Request::JobApprove { .. } => Some(Err(ClientError::Api(ApiError::new(
            ErrorCode::PermissionDenied,
            "you may not approve job 7",
        )))),
        _ => None,
    }));
    let chat = Chat::new(true);
    let e = engine(&gw, &chat, access(&["U1"]));
    e.on_message(origin("U1", "ev1"), "status 7".into());
    settle(Duration::from_secs(1)).await;
    assert_eq!(chat.replies(), [chat::render::no_such_job(7)]);
    e.on_click(origin("U1", "ev2"), Decision::Approve, 7);
    settle(Duration::from_secs(1)).await;
    assert_eq!(
        chat.said().last(),
        Some(&Said::Notice(
            "Not allowed: you may not approve job 7".into()
        ))
    );
    // The click asked for this user, not for the bot.
    let calls = gw.0.calls.lock().unwrap().clone();
    assert!(calls.iter().any(|r| matches!(r,
        Request::JobApprove { id: 7, on_behalf_of: Some(w), .. } if w == "slack:T0LAB/U1")));
}

/// A gateway whose previews land on `lands_on`, a node with `labels`.
fn previewing(lands_on: &'static str, labels: &'static [&'static str]) -> Answer {
    Box::new(move |r| match r {
        Request::JobPreview(_) => Some(Ok(Response::Preview {
            node: lands_on.into(),
            argv: vec!["hostname".into()],
            named_job: None,
            role: None,
            decision: "allow".into(),
            approvers: vec![],
            rule: None,
        })),
        Request::NodeShow { name } if name == lands_on => {
            Some(Ok(Response::Node(node(lands_on, labels))))
        }
        _ => None,
    })
}

fn limited(user: &str, nodes: &[&str]) -> Access {
    let mut a = access(&[user]);
    a.limits.insert(
        user.into(),
        UserLimits {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            ..UserLimits::default()
        },
    );
    a
}

#[tokio::test(start_paused = true)]
async fn a_limited_user_runs_on_the_node_they_were_checked_against() {
    let gw = Gw::new(previewing("worker-cpu-01", &[]));
    gw.script(vec![], Ok(ended(1, 0, 0)));
    let chat = Chat::new(true);
    let e = engine(&gw, &chat, limited("U1", &["worker-cpu-*"]));
    // Routed by role: the gateway chose the node; the job is pinned to it,
    // so a second routing cannot land it on a node the user may not use.
    e.on_message(origin("U1", "ev1"), "run hostname (gpu)".into());
    settle(Duration::from_secs(5)).await;
    let runs = gw.runs();
    assert_eq!(runs.len(), 1, "{:?}", chat.said());
    assert_eq!(runs[0].node.as_deref(), Some("worker-cpu-01"));
    assert_eq!(runs[0].idempotency_key.as_deref(), Some("ev1"));
    assert_eq!(runs[0].on_behalf_of.as_deref(), Some("slack:T0LAB/U1"));
}

#[tokio::test(start_paused = true)]
async fn a_limited_user_is_refused_a_node_outside_their_limits_before_anything_runs() {
    let gw = Gw::new(previewing("worker-gpu-01", &["gpu"]));
    let chat = Chat::new(true);
    let e = engine(&gw, &chat, limited("U1", &["worker-cpu-*"]));
    e.on_message(origin("U1", "ev1"), "run hostname (gpu)".into());
    settle(Duration::from_secs(5)).await;
    assert!(gw.runs().is_empty());
    assert_eq!(
        chat.replies(),
        ["sorry, you may not use the node worker-gpu-01; ask an admin if you need it."]
    );
    // Without limits, no node lookup is made and the routing stays the
    // gateway's.
    let gw = Gw::new(previewing("worker-gpu-01", &["gpu"]));
    gw.script(vec![], Ok(ended(1, 0, 0)));
    let e = engine(&gw, &chat, access(&["U1"]));
    e.on_message(origin("U1", "ev2"), "run hostname (gpu)".into());
    settle(Duration::from_secs(5)).await;
    assert!(!gw.methods().contains(&"node.show"), "{:?}", gw.methods());
    assert_eq!(gw.runs()[0].node, None);
    assert_eq!(gw.runs()[0].role.as_deref(), Some("gpu"));
}

#[tokio::test(start_paused = true)]
async fn a_live_message_is_edited_at_most_once_a_second_and_always_shows_the_end() {
    let gw = Gw::new(no_answer());
    let mut steps = vec![Step::State(Box::new(job(1, "running")))];
    // Fifty lines over five seconds, one each 100 ms.
    for _ in 0..50 {
        steps.push(Step::Out("line\n"));
        steps.push(Step::Wait(Duration::from_millis(100)));
    }
    gw.script(steps, Ok(ended(1, 0, 250)));
    let chat = Chat::new(true);
    let e = engine(&gw, &chat, access(&["U1"]));
    e.on_message(origin("U1", "ev1"), "run hostname on worker-cpu-01".into());
    settle(Duration::from_secs(20)).await;
    let edits = chat.edits();
    assert!(edits.len() >= 4, "{edits:?}");
    for w in edits.windows(2) {
        assert!(
            w[1].0 - w[0].0 >= EDIT_EVERY,
            "two edits {:?} apart: {edits:?}",
            w[1].0 - w[0].0
        );
    }
    let (_, last, change) = edits.last().unwrap();
    assert_eq!(*change, Change::Final);
    assert!(last.contains("exited with code 0"), "{last}");
    assert_eq!(edits.iter().filter(|e| e.2 == Change::Final).count(), 1);
    // Nothing was attached: 250 bytes is a short log.
    assert!(!chat.said().iter().any(|s| matches!(s, Said::Attach(..))));
}

#[tokio::test(start_paused = true)]
async fn a_job_awaiting_approval_asks_once_and_a_lost_gateway_is_shown() {
    let gw = Gw::new(no_answer());
    let held = job(1, "awaiting-approval");
    gw.script(
        vec![
            Step::State(Box::new(held.clone())),
            Step::Wait(Duration::from_secs(3)),
            Step::State(Box::new(held)),
            Step::Wait(Duration::from_secs(3)),
            Step::Lost,
            Step::Wait(Duration::from_secs(3)),
        ],
        Err(RunError::Follow(FollowError::Lost {
            id: 1,
            why: "timed out".into(),
        })),
    );
    let chat = Chat::new(true);
    let e = engine(&gw, &chat, access(&["U1"]));
    e.on_message(origin("U1", "ev1"), "run hostname on worker-cpu-01".into());
    settle(Duration::from_secs(30)).await;
    let asks = chat
        .said()
        .into_iter()
        .filter(|s| matches!(s, Said::Ask(1)));
    assert_eq!(asks.count(), 1);
    let edits = chat.edits();
    assert!(
        edits
            .iter()
            .any(|(_, t, _)| t.contains("awaits approval by @slack:T0LAB/UBOSS")),
        "{edits:?}"
    );
    assert!(
        edits
            .iter()
            .any(|(_, t, _)| t.contains("(lost the gateway; reconnecting…)")),
        "{edits:?}"
    );
    let (_, last, change) = edits.last().unwrap();
    assert_eq!(*change, Change::Final);
    assert!(last.contains("could not reconnect"), "{last}");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_gateway_ends_the_live_message_with_why() {
    let gw = Gw::new(no_answer());
    gw.script(
        vec![],
        Err(RunError::Unreachable(ClientError::Connect {
            addr: "127.0.0.1:7443".into(),
            msg: "timed out".into(),
        })),
    );
    let chat = Chat::new(true);
    let e = engine(&gw, &chat, access(&["U1"]));
    e.on_message(origin("U1", "ev1"), "run hostname on worker-cpu-01".into());
    settle(Duration::from_secs(5)).await;
    assert_eq!(
        chat.said().last(),
        Some(&Said::Edit(
            "I can't reach the gateway (cannot reach the gateway at 127.0.0.1:7443: timed out)."
                .into(),
            Change::Final
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn long_output_goes_as_a_file_or_else_as_its_end() {
    let log = "x".repeat(5000).into_bytes();
    for uploads in [true, false] {
        let gw = Gw::with_logs(no_answer(), HashMap::from([(1, log.clone())]));
        gw.script(vec![], Ok(ended(1, 0, 5000)));
        let chat = Chat::new(uploads);
        let e = engine(&gw, &chat, access(&["U1"]));
        e.on_message(origin("U1", "ev1"), "run hostname on worker-cpu-01".into());
        settle(Duration::from_secs(5)).await;
        let said = chat.said();
        assert!(said.contains(&Said::Attach(1, 5000)), "{said:?}");
        // Refused, the end of the log follows as a snippet.
        let snippet = chat.replies();
        assert_eq!(snippet.len(), usize::from(!uploads), "{said:?}");
        if let Some(s) = snippet.first() {
            assert!(s.contains("xxxx"), "{s}");
        }
    }
}

fn fan_info(state: &str, nodes: &[&str]) -> FanInfo {
    FanInfo {
        id: 9,
        state: state.into(),
        argv: vec!["hostname".into()],
        requester: "slack:T0LAB/U1".into(),
        members: nodes
            .iter()
            .enumerate()
            .map(|(i, n)| FanMember {
                node: n.to_string(),
                job: 10 + i as u64,
            })
            .collect(),
        skipped: vec![],
        window: 0,
        approvers: vec!["slack:T0LAB/UBOSS".into()],
        plan_digest: String::new(),
        created_at: 0,
    }
}

fn fan_ended(member: u32, code: i32) -> Result<Option<FanEvent>, ClientError> {
    let mut j = ended(10 + u64::from(member), code, 3);
    j.node = format!("n{member}");
    Ok(Some(FanEvent::Ended { member, job: j }))
}

#[tokio::test(start_paused = true)]
async fn a_fan_out_counts_up_then_shows_each_nodes_output() {
    let logs = HashMap::from([(10, b"ok\n".to_vec()), (11, b"bad\n".to_vec())]);
    let gw = Gw::with_logs(no_answer(), logs);
    *gw.0.fan.lock().unwrap() = vec![
        (
            Duration::ZERO,
            Ok(Some(FanEvent::Accepted(fan_info("running", &["n0", "n1"])))),
        ),
        (Duration::from_secs(2), fan_ended(0, 0)),
        (Duration::from_secs(2), fan_ended(1, 3)),
        (Duration::ZERO, Ok(Some(FanEvent::Done))),
    ];
    let chat = Chat::new(true);
    let e = engine(&gw, &chat, access(&["U1"]));
    e.on_message(origin("U1", "ev1"), "run hostname on all nodes".into());
    settle(Duration::from_secs(20)).await;
    let edits = chat.edits();
    assert!(
        edits
            .iter()
            .any(|(_, t, c)| *c == Change::Progress && t.contains("1 ok")),
        "{edits:?}"
    );
    let (_, last, change) = edits.last().unwrap();
    assert_eq!(*change, Change::Final, "{edits:?}");
    assert!(last.contains("1 ok") && last.contains("1 failed"), "{last}");
    let out = chat.replies();
    assert_eq!(out.len(), 1, "{:?}", chat.said());
    assert!(
        out[0].contains("n0 (job 10)") && out[0].contains("ok"),
        "{}",
        out[0]
    );
    assert!(
        out[0].contains("n1 (job 11)") && out[0].contains("exit 3"),
        "{}",
        out[0]
    );
}

#[tokio::test(start_paused = true)]
async fn a_held_fan_out_asks_approval_and_a_broken_stream_says_its_jobs_go_on() {
    let gw = Gw::new(Box::new(|r| match r {
        Request::JobShow { id: 10, .. } => Some(Ok(Response::Job(job(10, "awaiting-approval")))),
        _ => None,
    }));
    *gw.0.fan.lock().unwrap() = vec![
        (
            Duration::ZERO,
            Ok(Some(FanEvent::Accepted(fan_info(
                "awaiting-approval",
                &["n0", "n1"],
            )))),
        ),
        (Duration::from_secs(3), fan_ended(0, 0)),
        // The stream ends with no `Done`.
        (Duration::from_secs(1), Ok(None)),
    ];
    let chat = Chat::new(true);
    let e = engine(&gw, &chat, access(&["U1"]));
    e.on_message(origin("U1", "ev1"), "run hostname on all nodes".into());
    settle(Duration::from_secs(20)).await;
    assert!(chat.said().contains(&Said::Ask(10)), "{:?}", chat.said());
    let edits = chat.edits();
    assert!(
        edits
            .iter()
            .any(|(_, t, _)| t
                .contains("fan-out 9 on 2 nodes awaits approval by @slack:T0LAB/UBOSS")),
        "{edits:?}"
    );
    let (_, last, change) = edits.last().unwrap();
    assert_eq!(*change, Change::Final);
    assert!(
        last.starts_with("I lost track of fan-out 9; its jobs go on."),
        "{last}"
    );
    assert!(chat.replies().is_empty());
}

#[tokio::test(start_paused = true)]
async fn list_pagers_stop_on_a_page_that_does_not_move_on() {
    // A gateway that answers every node page with the same node: a
    // hostile or broken peer. The pager must end, not loop 1000 calls.
    let gw = Gw::new(Box::new(|r| match r {
        Request::NodePage { .. } => Some(Ok(Response::Nodes(vec![node("n1", &[])]))),
        Request::JobList { .. } => Some(Ok(Response::Jobs(vec![job(5, "running")]))),
        _ => None,
    }));
    let (shown, total) = super::node_page(&gw, 1).await.unwrap();
    assert_eq!((shown.len(), total), (1, 1));
    let (jobs, more) = super::job_page(&gw, None, 1).await.unwrap();
    assert_eq!((jobs.len(), more), (1, false));
    assert_eq!(
        gw.methods(),
        ["node.list", "node.list", "job.list", "job.list"]
    );
}

#[tokio::test(start_paused = true)]
async fn gpu_health_is_asked_a_bounded_page_at_a_time_and_an_old_gateway_means_plain_counts() {
    let gpu_node = |i: usize, connection: &str| NodeInfo {
        name: format!("n{i:04}"),
        connection: connection.into(),
        max_gpus: Some(1),
        telemetry: Some(proto::Heartbeat {
            gpus: vec![proto::GpuTelemetry::default()],
            ..Default::default()
        }),
        ..NodeInfo::default()
    };
    // Two requests' worth of connected GPU nodes and 50 more, and some
    // the gateway has no health for.
    let most = proto::MAX_HISTORY_NODES;
    let mut nodes: Vec<NodeInfo> = (0..2 * most + 50)
        .map(|i| gpu_node(i, "connected"))
        .collect();
    nodes.push(gpu_node(9000, "offline"));
    nodes.push(node("cpu-only", &[]));
    let gw = Gw::new(Box::new(|r| match r {
        Request::GpuHealth { names } => Some(Ok(Response::GpuHealth(
            names
                .iter()
                .map(|n| (n.clone(), vec![proto::GpuHealth::Mig]))
                .collect(),
        ))),
        _ => None,
    }));
    let health = super::gpu_health(&gw, &nodes).await;
    assert_eq!(health.len(), 2 * most + 50);
    let asked: Vec<usize> =
        gw.0.calls
            .lock()
            .unwrap()
            .iter()
            .map(|r| match r {
                Request::GpuHealth { names } => names.len(),
                r => panic!("asked {r:?}"),
            })
            .collect();
    assert_eq!(asked, [most, most, 50]);
    // An older gateway refuses the request it cannot read: one try, then
    // no health, and the counts are the plain ones.
    let old = Gw::new(Box::new(|r| match r {
        Request::GpuHealth { .. } => Some(Err(ClientError::Api(proto::ApiError::new(
            proto::ErrorCode::InvalidArgument,
            "cannot read the request",
        )))),
        _ => None,
    }));
    assert!(super::gpu_health(&old, &nodes).await.is_empty());
    assert_eq!(old.methods(), ["node.gpu_health"]);
    let none = Gw::new(no_answer());
    assert!(
        super::gpu_health(&none, &nodes[2 * most + 50..])
            .await
            .is_empty()
    );
    assert!(none.methods().is_empty());
}

#[test]
fn a_fan_out_message_notes_a_reconnect_and_counts_each_end_once_it_is_told() {
    use client::FanFollowed;
    let mut w = super::FanWatch::default();
    let info = fan_info("awaiting-approval", &["n0", "n1"]);
    w.take(FanFollowed::Accepted(&info));
    w.take(FanFollowed::Reconnecting { id: 9, why: "gone" });
    assert_eq!(w.note.as_deref(), Some("(lost the gateway; reconnecting…)"));
    w.take(FanFollowed::Resumed { id: 9 });
    assert_eq!(w.note, None);
    let Ok(Some(FanEvent::Ended { job, .. })) = fan_ended(1, 3) else {
        unreachable!()
    };
    w.take(FanFollowed::Ended {
        member: 1,
        job: &job,
    });
    // A member moved: the fan-out no longer waits for approval.
    assert_eq!(w.info.as_ref().unwrap().state, "running");
    assert_eq!(w.ended[1].as_ref().map(|j| j.id), Some(11));
    assert!(w.ended[0].is_none());
    let counts = w.tally.as_ref().unwrap().summary(10);
    assert!(counts.contains("1 failed"), "{counts}");
}

#[tokio::test(start_paused = true)]
async fn a_platform_without_files_names_each_artifact_with_the_command_that_fetches_it() {
    // As WeCom: the surface takes no files, so nothing is fetched and the
    // final message names the CLI command for each stored artifact.
    let gw = Gw::new(Box::new(|r| match r {
        Request::JobArtifacts {
            id: 1,
            on_behalf_of: Some(w),
        } if w == "slack:T0LAB/U1" => Some(Ok(Response::Artifacts(proto::JobArtifacts {
            job: 1,
            patterns: vec!["*.json".into()],
            note: None,
            files: vec![proto::ArtifactInfo {
                name: "metrics.json".into(),
                size: 12,
                sha256: "ab".into(),
                state: "stored".into(),
                note: String::new(),
            }],
        }))),
        _ => None,
    }));
    gw.script(vec![], Ok(ended(1, 0, 0)));
    let chat = Chat::new(true);
    let e = engine(&gw, &chat, access(&["U1"]));
    e.on_message(origin("U1", "ev1"), "run hostname on worker-cpu-01".into());
    settle(Duration::from_secs(5)).await;
    let edits = chat.edits();
    let (_, last, change) = edits.last().unwrap();
    assert_eq!(*change, Change::Final);
    assert!(last.contains("exited with code 0"), "{last}");
    assert!(
        last.contains("metrics.json (12 bytes): `openclaw job artifacts 1 --get metrics.json`"),
        "{last}"
    );
    assert!(
        gw.methods().contains(&"job.artifacts"),
        "{:?}",
        gw.methods()
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_for_a_project_carries_it_and_queue_asks_for_the_user() {
    let gw = Gw::new(Box::new(|req| match req {
        Request::Queue { .. } => Some(Ok(Response::Queue(proto::QueueReport {
            now: 0,
            entries: vec![proto::QueueEntry {
                position: 3,
                id: 41,
                requester: "slack:T0LAB/U1".into(),
                project: None,
                gpus: 1,
                priority: 0,
                created_at: 0,
                reason: "waiting for capacity".into(),
                estimated_start: None,
            }],
            total: 4,
        }))),
        _ => None,
    }));
    gw.script(vec![], Ok(ended(1, 0, 0)));
    let chat = Chat::new(true);
    let e = engine(&gw, &chat, access(&["U1"]));
    e.on_message(
        origin("U1", "ev1"),
        "run hostname on worker-cpu-01 for project vision".into(),
    );
    settle(Duration::from_secs(5)).await;
    let runs = gw.runs();
    assert_eq!(runs.len(), 1, "{:?}", chat.said());
    assert_eq!(runs[0].argv, ["hostname"]);
    assert_eq!(
        *gw.0.options.lock().unwrap(),
        [vec![proto::JobOption::Project("vision".into())]]
    );
    e.on_message(origin("U1", "ev2"), "queue".into());
    settle(Duration::from_secs(1)).await;
    let asked = gw.0.calls.lock().unwrap().clone();
    assert!(
        asked.contains(&Request::Queue {
            on_behalf_of: Some("slack:T0LAB/U1".into())
        }),
        "{asked:?}"
    );
    let said = format!("{:?}", chat.said());
    assert!(
        said.contains("#3 job 41 (1 GPU): waiting for capacity"),
        "{said}"
    );
}
