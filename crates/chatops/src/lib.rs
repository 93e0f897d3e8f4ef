//! The chat core's engine, shared by every front end (moltbot for Slack,
//! the WeCom bot). A front end is an adapter: it turns its platform's
//! events into [`Origin`]s with plain text and hands them to an
//! [`Engine`]; the engine checks access, records the request in the
//! gateway's audit log, parses it (`chat`), decides what it comes to
//! ([`dispatch`], which `openclaw chat` shares), and speaks back through
//! the adapter's [`Surface`]: replies, one live message per job or fan-out
//! (edited at most once per [`EDIT_EVERY`]), approval buttons, and the
//! full log as a file.
//!
//! Architecture invariant: no platform's types or JSON here. Following a
//! job or a fan-out and resuming after a reconnect is `client::follow_job`
//! and `client::follow_fanout`, the same code `openclaw run` uses.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat::render::{self, Markup};
use chat::{Access, OutputTail, Seen};
use client::{ClientError, FanFollowed, FollowError, FollowOptions, Followed, Gateway};
use proto::fanout::{Outcome, Tally};
use proto::{
    FanInfo, FanOutSpec, FanState, GpuTelemetry, JobInfo, JobSpec, JobState, Request, Response,
};
use tokio::sync::Notify;
// The clock of the runtime: tokio's paused time stops it in tests.
use tokio::time::Instant;

mod api;
pub mod artifacts;
mod dispatch;
#[cfg(test)]
mod tests;

pub use api::{Api, Call, RunError, gpu_health, job_page, node_page};
pub use dispatch::{Action, Asker, context, dispatch};

/// Least time between two edits of one live message.
pub const EDIT_EVERY: Duration = Duration::from_secs(1);
/// Output kept for a job's live and final message.
const TAIL_BYTES: usize = 8 * 1024;
/// Output longer than this is also sent in full (a file, or a snippet).
pub const ATTACH_OVER: u64 = 2000;
/// Largest log read for a file upload.
pub const ATTACH_MAX: usize = 16 << 20;
/// How often a running GPU job's message refreshes its GPUs.
const GPU_EVERY: Duration = Duration::from_secs(2);
/// A fan-out of at most this many nodes shows every node's output;
/// a larger one shows only failed nodes', at most this many.
const FAN_SHOW_ALL: usize = 10;
/// How long a platform event id is remembered (longer than any retry).
pub const SEEN_FOR: Duration = Duration::from_secs(3600);
/// Most event ids remembered at once.
pub const SEEN_MAX: usize = 20_000;

/// Where a request came from, as the adapter saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The platform's user id (`U024BE7LH`, a WeCom userid).
    pub user: String,
    /// The chat: a channel, group chat or one-to-one chat id.
    pub chat: String,
    /// Whether this is a one-to-one chat with the bot.
    pub dm: bool,
    /// The platform's event id (Slack `event_id`, WeCom `msgid`); empty
    /// when there is none.
    pub event: String,
    /// The adapter's own handle for answering (a thread ts, a req_id).
    pub reply: String,
}

/// What a change to a live message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// More output, elapsed time or GPU figures.
    Progress,
    /// The job changed state.
    State,
    /// The job ended; the last edit.
    Final,
}

/// An approver's decision on a button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run the job.
    Approve,
    /// Do not.
    Deny,
}

/// A chat platform, as the engine needs it. Implemented by each front end.
pub trait Surface: Send + Sync + 'static {
    /// A job's live message.
    type Live: Send;
    /// How this platform escapes text and mentions users.
    fn markup(&self) -> &(dyn Markup + Sync);
    /// Largest message, in bytes.
    fn max_len(&self) -> usize;
    /// Answers a request where it was made.
    fn reply(&self, to: &Origin, text: &str) -> impl Future<Output = ()> + Send;
    /// Tells only the user (ephemeral where the platform can).
    fn notice(&self, to: &Origin, text: &str) -> impl Future<Output = ()> + Send;
    /// Posts a job's live message.
    fn open_live(&self, to: &Origin, text: &str)
    -> impl Future<Output = Option<Self::Live>> + Send;
    /// Replaces a live message's text.
    fn edit_live(
        &self,
        live: &mut Self::Live,
        text: &str,
        change: Change,
    ) -> impl Future<Output = ()> + Send;
    /// Shows approve/deny buttons for a job that awaits approval.
    fn ask_approval(&self, to: &Origin, job: &JobInfo) -> impl Future<Output = ()> + Send;
    /// Sends a job's full log as a file; `Err` says why it could not
    /// (no permission, not supported), and the engine sends a snippet.
    fn attach_log(
        &self,
        to: &Origin,
        job: &JobInfo,
        log: &[u8],
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Whether `user` is in one of the allowed groups (asked each time).
    fn in_group(&self, user: &str) -> impl Future<Output = bool> + Send;
    /// The largest job artifact this platform gets as a file in the job's
    /// thread (0: none; the final message names the CLI command instead).
    fn artifact_upload_max(&self) -> u64 {
        0
    }
    /// Sends one job artifact as a file in the job's thread; `Err` says why
    /// it could not (the final message then names the CLI command).
    fn attach_artifact(
        &self,
        _to: &Origin,
        _job: &JobInfo,
        _name: &str,
        _bytes: &[u8],
    ) -> impl Future<Output = Result<(), String>> + Send {
        async { Err("this chat platform takes no files".to_string()) }
    }
}

/// Asks the gateway who this bot is and returns its chat namespace, which
/// must be of `kind` (`slack`, `wecom`); `scope` names what follows the
/// colon (`TEAMID`, `CORPID`). Errors say how to make the right credential.
pub async fn bot_namespace(gw: &impl Call, kind: &str, scope: &str) -> Result<String, String> {
    let make =
        format!("openclaw client create NAME --role bot --namespace {kind}:{scope} --out DIR");
    match gw.call(Request::Whoami).await {
        Ok(Response::Identity {
            role: proto::Role::Bot,
            name,
            namespace: Some(ns),
        }) if ns.strip_prefix(kind).is_some_and(|r| r.starts_with(':')) => {
            tracing::info!(%name, %ns, "connected to the gateway");
            Ok(ns)
        }
        Ok(Response::Identity {
            role: proto::Role::Bot,
            name,
            namespace,
        }) => Err(format!(
            "bot {name} has chat namespace {namespace:?} on the gateway; this front end needs {kind}:{scope}. \
             Recreate it: openclaw client revoke {name}; {make}"
        )),
        Ok(Response::Identity { role, name, .. }) => Err(format!(
            "this home holds a {role} credential ({name}); a chat front end needs a bot one: {make}"
        )),
        Ok(r) => Err(format!("unexpected reply {r:?}")),
        Err(e) => Err(format!("cannot reach the gateway: {e}")),
    }
}

/// The clock, for the times in chat answers (the renderers are pure).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The answer to a call about job `id` that failed: an unknown job (or
/// one this user may not see; the gateway does not say which) in chat
/// terms, anything else as the gateway said it.
pub fn job_error(id: u64, e: &ClientError, m: &dyn Markup) -> String {
    match e {
        ClientError::Api(a) if a.code == proto::ErrorCode::NotFound => render::no_such_job(id),
        e => call_error(e, m),
    }
}

/// The answer to a call that failed: the gateway's refusal as it said it,
/// anything else as the gateway being out of reach.
pub(crate) fn call_error(e: &ClientError, m: &dyn Markup) -> String {
    match e {
        ClientError::Api(a) => m.escape(&a.message),
        e => m.escape(&format!("I can't reach the gateway right now ({e}).")),
    }
}

/// A live message's last words when its stream could not be opened.
fn cannot_open(e: &ClientError, m: &dyn Markup) -> String {
    m.escape(&format!("I can't reach the gateway ({e})."))
}

/// The engine behind one bot: `G` is the gateway ([`Gateway`] but in
/// the engine's unit tests).
pub struct Engine<S: Surface, G: Api = Gateway> {
    surface: S,
    gateway: G,
    access: Access,
    /// The bot's chat namespace on the gateway (`slack:T0LAB`, `wecom:CORP`).
    namespace: String,
    seen: Mutex<Seen>,
    /// How long a follower keeps trying to reach a gateway that went away.
    reconnect_for: Duration,
}

/// What happened to a followed job, shared between the follower task and
/// the message loop.
struct Watch {
    info: Option<JobInfo>,
    tail: OutputTail,
    /// Set by a state change; cleared when the message shows it.
    changed: bool,
    note: Option<String>,
}

/// What happened to a followed fan-out, shared between the follower task
/// and the message loop.
#[derive(Default)]
struct FanWatch {
    info: Option<FanInfo>,
    tally: Option<Tally>,
    /// Each member's final record, once it ended.
    ended: Vec<Option<JobInfo>>,
    note: Option<String>,
}

impl FanWatch {
    /// Takes one thing the follower saw.
    fn take(&mut self, f: FanFollowed<'_>) {
        match f {
            FanFollowed::Accepted(info) => {
                self.tally = Some(Tally::new(info));
                self.ended = vec![None; info.members.len()];
                self.info = Some(info.clone());
            }
            FanFollowed::Ended { member, job } => {
                if let Some(t) = self.tally.as_mut() {
                    t.record(member, Outcome::of(job));
                }
                if let Some(slot) = self.ended.get_mut(member as usize) {
                    *slot = Some(job.clone());
                }
                self.running();
            }
            FanFollowed::State { .. } => self.running(),
            FanFollowed::Reconnecting { .. } => {
                self.note = Some("(lost the gateway; reconnecting…)".into());
            }
            FanFollowed::Resumed { .. } => self.note = None,
            FanFollowed::Output { .. } | FanFollowed::Lost { .. } => {}
        }
    }

    /// A member moved: the fan-out no longer waits for approval.
    fn running(&mut self) {
        if let Some(i) = self.info.as_mut() {
            i.state = FanState::Running.as_str().into();
        }
    }
}

/// A live message's edits: at most one per [`EDIT_EVERY`], and only when
/// the text changed.
#[derive(Default)]
struct Pace {
    shown: String,
    last: Option<Instant>,
}

impl Pace {
    /// Whether `text` differs from what is shown and its turn has come.
    fn due(&self, text: &str) -> bool {
        text != self.shown && self.last.is_none_or(|t| t.elapsed() >= EDIT_EVERY)
    }

    /// `text` was just shown.
    fn shown(&mut self, text: String) {
        self.last = Some(Instant::now());
        self.shown = text;
    }

    /// Waits until the next edit may go out.
    async fn wait_turn(&self) {
        if let Some(t) = self.last {
            let since = t.elapsed();
            if since < EDIT_EVERY {
                tokio::time::sleep(EDIT_EVERY - since).await;
            }
        }
    }
}

/// When a live message's loop looks again: on news from its follower
/// (`wake`), and four times per allowed edit, so a deferred change goes
/// out within a quarter second of its turn.
struct Turns {
    wake: Arc<Notify>,
    tick: tokio::time::Interval,
}

impl Turns {
    fn new() -> Turns {
        Turns {
            wake: Arc::new(Notify::new()),
            tick: tokio::time::interval(EDIT_EVERY / 4),
        }
    }

    /// Waits for news or a tick; the follower's end once it ended.
    async fn next<T>(
        &mut self,
        follower: &mut tokio::task::JoinHandle<T>,
    ) -> Option<Result<T, tokio::task::JoinError>> {
        tokio::select! {
            end = follower => Some(end),
            () = self.wake.notified() => None,
            _ = self.tick.tick() => None,
        }
    }
}

/// A follower task's result once the last edit's turn has come (the
/// final edit must not break the pace); `None`, logged, when the task
/// failed.
async fn settled<T>(
    pace: &Pace,
    end: Result<T, tokio::task::JoinError>,
    what: &'static str,
) -> Option<T> {
    pace.wait_turn().await;
    end.inspect_err(|e| tracing::warn!(error = %e, follower = what, "a follower task failed"))
        .ok()
}

/// Locks `m`, taking the data of a lock a panicking thread held: every
/// value a front end keeps under a lock stays valid at each step.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl<S: Surface, G: Api> Engine<S, G> {
    /// An engine for `surface`, calling the gateway as a bot of `namespace`.
    pub fn new(surface: S, gateway: G, access: Access, namespace: String) -> Engine<S, G> {
        Engine {
            surface,
            gateway,
            access,
            namespace,
            seen: Mutex::new(Seen::new(SEEN_FOR, SEEN_MAX)),
            reconnect_for: Duration::from_secs(120),
        }
    }

    /// How this engine's followers follow, for the chat user `who`.
    fn follow_options(&self, who: Option<String>) -> FollowOptions {
        FollowOptions {
            on_behalf_of: who,
            reconnect_for: self.reconnect_for,
            ..Default::default()
        }
    }

    /// The gateway identity of a platform user: `namespace/user`.
    pub fn identity(&self, user: &str) -> String {
        format!("{}/{user}", self.namespace)
    }

    /// Whether this event id was handled already; remembers it otherwise.
    fn seen_before(&self, id: &str) -> bool {
        !id.is_empty() && lock(&self.seen).check(id, Instant::now().into_std())
    }

    async fn admitted(&self, o: &Origin) -> Result<(), String> {
        let in_group = self.access.needs_groups(&o.user) && self.surface.in_group(&o.user).await;
        self.access.admits(&o.user, &o.chat, o.dm, in_group)
    }

    /// Takes one message (plain text, platform markup removed): a
    /// redelivered event is dropped here, in arrival order, and the first
    /// delivery is handled in a task of its own.
    pub fn on_message(self: &Arc<Self>, o: Origin, text: String) {
        if self.seen_before(&o.event) {
            tracing::info!(event = %o.event, "ignoring a redelivered message");
            return;
        }
        tokio::spawn(self.clone().message(o, text));
    }

    /// Takes one button click, like [`Engine::on_message`].
    pub fn on_click(self: &Arc<Self>, o: Origin, decision: Decision, id: u64) {
        if self.seen_before(&o.event) {
            tracing::info!(event = %o.event, "ignoring a redelivered click");
            return;
        }
        tokio::spawn(self.clone().click(o, decision, id));
    }

    async fn message(self: Arc<Self>, o: Origin, text: String) {
        if let Err(why) = self.admitted(&o).await {
            return self.surface.reply(&o, &why).await;
        }
        let _ = self
            .gateway
            .call(Request::ChatAudit {
                user: self.identity(&o.user),
                channel: o.chat.clone(),
                thread: o.reply.clone(),
                text: text.chars().take(500).collect(),
            })
            .await;
        let reply = self.answer(&o, &text).await;
        if let Some(r) = reply {
            self.surface.reply(&o, &r).await;
        }
    }

    /// The answer to a message; `None` when a job's live message answers.
    async fn answer(self: &Arc<Self>, o: &Origin, text: &str) -> Option<String> {
        let m = self.surface.markup();
        let ctx = match context(&self.gateway, m).await {
            Ok(ctx) => ctx,
            Err(say) => return Some(say),
        };
        let who = self.identity(&o.user);
        let asker = Asker {
            user: &o.user,
            who: Some(&who),
            event: &o.event,
        };
        let intent = chat::parse(text, &ctx);
        let max = self.surface.max_len();
        match dispatch(&self.gateway, &self.access, asker, &ctx, intent, m, max).await {
            Action::Say(text) => Some(text),
            Action::Run(spec, options) => {
                self.clone().run(o.clone(), spec, options).await;
                None
            }
            Action::RunAll(spec) => {
                self.clone().run_all(o.clone(), spec).await;
                None
            }
        }
    }

    /// A button click: the same allowlists as messages, then the gateway
    /// checks the clicking user as an approver.
    async fn click(self: Arc<Self>, o: Origin, decision: Decision, id: u64) {
        if let Err(why) = self.admitted(&o).await {
            return self.surface.notice(&o, &why).await;
        }
        let on_behalf_of = Some(self.identity(&o.user));
        let req = match decision {
            Decision::Approve => Request::JobApprove {
                id,
                plan_digest: None,
                on_behalf_of,
            },
            Decision::Deny => Request::JobDeny {
                id,
                reason: None,
                on_behalf_of,
            },
        };
        let m = self.surface.markup();
        let text = match self.gateway.call(req).await {
            Ok(Response::Done { message }) => m.escape(&message),
            Ok(r) => m.escape(&format!("unexpected reply {r:?}")),
            Err(ClientError::Api(e)) if e.code == proto::ErrorCode::PermissionDenied => {
                format!("Not allowed: {}", m.escape(&e.message))
            }
            Err(e) => job_error(id, &e, m),
        };
        self.surface.notice(&o, &text).await;
    }

    /// Runs a job and keeps its live message current until it ends.
    async fn run(self: Arc<Self>, o: Origin, spec: JobSpec, options: Vec<proto::JobOption>) {
        let m = self.surface.markup();
        let max = self.surface.max_len();
        let Some(mut live) = self.surface.open_live(&o, "Starting…").await else {
            return;
        };
        let watch = Arc::new(Mutex::new(Watch {
            info: None,
            tail: OutputTail::new(TAIL_BYTES),
            changed: false,
            note: None,
        }));
        let mut turns = Turns::new();
        let (w, n, me) = (watch.clone(), turns.wake.clone(), self.clone());
        let opts = self.follow_options(spec.on_behalf_of.clone());
        let mut follower = tokio::spawn(async move {
            me.gateway
                .run_job(spec, options, opts, |f| {
                    let mut w = lock(&w);
                    match f {
                        Followed::State(j) => {
                            w.info = Some(j.clone());
                            w.changed = true;
                            w.note = None;
                            n.notify_one();
                        }
                        Followed::Output(s, data) => w.tail.push(s, data),
                        Followed::Reconnecting { .. } => {
                            w.note = Some("(lost the gateway; reconnecting…)".into());
                        }
                        Followed::Resumed { .. } => w.note = None,
                    }
                })
                .await
        });
        let started = Instant::now();
        let mut asked = false;
        let mut pace = Pace::default();
        let mut gpus: Vec<GpuTelemetry> = Vec::new();
        let mut gpus_at: Option<Instant> = None;
        let end = loop {
            if let Some(end) = turns.next(&mut follower).await {
                break end;
            }
            let (info, changed, text) = {
                let mut w = lock(&watch);
                let changed = std::mem::take(&mut w.changed);
                let Some(j) = w.info.clone() else { continue };
                let mut text = render::progress(&j, started.elapsed(), &w.tail, &gpus, m, max);
                if let Some(n) = &w.note {
                    text = format!("{text}\n{n}");
                }
                (j, changed, text)
            };
            if info.is(JobState::AwaitingApproval) && !asked {
                asked = true;
                self.surface.ask_approval(&o, &info).await;
            }
            if info.is(JobState::Running)
                && info.gpus > 0
                && gpus_at.is_none_or(|t| t.elapsed() >= GPU_EVERY)
            {
                gpus_at = Some(Instant::now());
                if let Ok(Response::Node(n)) = self
                    .gateway
                    .call(Request::NodeShow {
                        name: info.node.clone(),
                    })
                    .await
                {
                    gpus = n.telemetry.map(|t| t.gpus).unwrap_or_default();
                }
            }
            // At most one edit a second; a state change waits for its turn.
            if pace.due(&text) {
                let change = if changed {
                    Change::State
                } else {
                    Change::Progress
                };
                self.surface.edit_live(&mut live, &text, change).await;
                pace.shown(text);
            } else if changed {
                lock(&watch).changed = true;
            }
        };
        let Some(ended) = settled(&pace, end, "job").await else {
            return;
        };
        match ended {
            Ok(j) => self.finish(&o, &mut live, &j, &watch).await,
            Err(RunError::Unreachable(e)) => {
                let text = cannot_open(&e, m);
                self.surface
                    .edit_live(&mut live, &text, Change::Final)
                    .await;
            }
            Err(RunError::Follow(e)) => {
                let text = m.escape(&e.to_string());
                self.surface
                    .edit_live(&mut live, &text, Change::Final)
                    .await;
            }
        }
    }

    /// Runs a fan-out and keeps its one message counting up until every
    /// node has ended; then the summary, and the end of the output of
    /// every node (small fan-outs) or of the failed ones. Following is
    /// `client::follow_fanout`'s, which resumes after a reconnect.
    async fn run_all(self: Arc<Self>, o: Origin, spec: JobSpec) {
        let m = self.surface.markup();
        let Some(mut live) = self.surface.open_live(&o, "Starting a fan-out…").await else {
            return;
        };
        let who = spec.on_behalf_of.clone();
        let fan = FanOutSpec {
            job: spec,
            labels: vec![],
            batch: None,
            output: false,
        };
        let watch = Arc::new(Mutex::new(FanWatch::default()));
        let mut turns = Turns::new();
        let (w, n, me) = (watch.clone(), turns.wake.clone(), self.clone());
        let opts = self.follow_options(who.clone());
        let mut follower = tokio::spawn(async move {
            me.gateway
                .fan_out(fan, opts, |f| {
                    lock(&w).take(f);
                    n.notify_one();
                })
                .await
        });
        let started = Instant::now();
        let mut asked = false;
        let mut pace = Pace::default();
        let end = loop {
            if let Some(end) = turns.next(&mut follower).await {
                break end;
            }
            let (first, text) = {
                let w = lock(&watch);
                let (Some(info), Some(tally)) = (&w.info, &w.tally) else {
                    continue;
                };
                let mut text = render::fan_progress(info, &tally.counts(), started.elapsed(), m);
                if let Some(n) = &w.note {
                    text = format!("{text}\n{n}");
                }
                let held = info.state == FanState::AwaitingApproval.as_str();
                (info.members.first().filter(|_| held).map(|f| f.job), text)
            };
            if let Some(first) = first.filter(|_| !asked) {
                asked = true;
                if let Ok(Response::Job(j)) = self
                    .gateway
                    .call(Request::JobShow {
                        id: first,
                        on_behalf_of: who.clone(),
                    })
                    .await
                {
                    self.surface.ask_approval(&o, &j).await;
                }
            }
            if pace.due(&text) {
                self.surface
                    .edit_live(&mut live, &text, Change::Progress)
                    .await;
                pace.shown(text);
            }
        };
        let Some(end) = settled(&pace, end, "fan-out").await else {
            return;
        };
        let FanWatch {
            info, tally, ended, ..
        } = std::mem::take(&mut *lock(&watch));
        let (info, tally) = match (end, info, tally) {
            (Ok(_), Some(info), Some(tally)) => (info, tally),
            (Err(RunError::Unreachable(e)), ..) => {
                let text = cannot_open(&e, m);
                return self
                    .surface
                    .edit_live(&mut live, &text, Change::Final)
                    .await;
            }
            (Err(RunError::Follow(FollowError::Api(e))), None, _) => {
                let text = m.escape(&e.message);
                return self
                    .surface
                    .edit_live(&mut live, &text, Change::Final)
                    .await;
            }
            (_, Some(info), Some(tally)) => {
                tracing::warn!(fanout = info.id, "lost track of a fan-out");
                let text = format!(
                    "I lost track of fan-out {}; its jobs go on. {}. Say `status` to see them.",
                    info.id,
                    m.escape(&tally.summary(10))
                );
                return self
                    .surface
                    .edit_live(&mut live, &text, Change::Final)
                    .await;
            }
            _ => {
                let text = "I lost the gateway before the fan-out was accepted; say `status` before trying again.";
                return self.surface.edit_live(&mut live, text, Change::Final).await;
            }
        };
        let text = render::fan_finished(&info, &tally, m);
        self.surface
            .edit_live(&mut live, &text, Change::Final)
            .await;
        // Every node's output for a small fan-out; else the failures'.
        let pick: Vec<(&proto::FanMember, &JobInfo)> = info
            .members
            .iter()
            .zip(&ended)
            .filter_map(|(mem, j)| j.as_ref().map(|j| (mem, j)))
            .filter(|(_, j)| info.members.len() <= FAN_SHOW_ALL || !render::succeeded(j))
            .take(FAN_SHOW_ALL)
            .collect();
        if pick.is_empty() {
            return;
        }
        let each = self.surface.max_len() / pick.len();
        let mut blocks = Vec::new();
        for (mem, j) in pick {
            let status = match Outcome::of(j) {
                Outcome::Ok => "exit 0".to_string(),
                Outcome::Exit(c) => format!("exit {c}"),
                Outcome::TimedOut => "timed out".to_string(),
                Outcome::NotRun(state, why) => format!("{state} {why}"),
            };
            let log = match self.gateway.log_tail(j.id, who.clone(), each).await {
                Ok((log, _)) => log,
                Err(e) => format!("(cannot read its log: {e})").into_bytes(),
            };
            blocks.push((format!("{} (job {})", mem.node, j.id), status, log));
        }
        let text = render::fan_outputs(&blocks, m, self.surface.max_len());
        self.surface.reply(&o, &text).await;
    }

    /// The end of a job's log, as much as one message shows.
    async fn log_tail(&self, id: u64, who: Option<String>) -> Result<(Vec<u8>, bool), ClientError> {
        self.gateway.log_tail(id, who, self.surface.max_len()).await
    }

    /// The final message, then the full log for long output.
    async fn finish(&self, o: &Origin, live: &mut S::Live, j: &JobInfo, watch: &Mutex<Watch>) {
        let m = self.surface.markup();
        let total = j.stdout_bytes + j.stderr_bytes;
        let long = total > ATTACH_OVER;
        // Which physical GPUs it held (an older gateway answers an error).
        let held = if j.gpus > 0 {
            match self
                .gateway
                .call(Request::JobGpus {
                    id: j.id,
                    on_behalf_of: Some(self.identity(&o.user)),
                })
                .await
            {
                Ok(Response::JobGpus(g)) => g,
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        // Its artifacts: the small ones as files first, then all named in
        // the final message.
        let extra = match self.artifacts_of(o, j).await {
            Some(kept) => {
                let sent = self.upload_artifacts(o, j, &kept).await;
                let lines = artifacts::lines(&kept, &sent, m);
                let half = self.surface.max_len() / 2;
                lines.chars().take(half).collect::<String>()
            }
            None => String::new(),
        };
        let room = self.surface.max_len().saturating_sub(extra.len());
        let text = render::finished_on(j, &held, &lock(watch).tail, m, room, long) + &extra;
        self.surface.edit_live(live, &text, Change::Final).await;
        if !long {
            return;
        }
        let who = Some(self.identity(&o.user));
        let full = if total > ATTACH_MAX as u64 {
            None
        } else {
            match self.gateway.log(j.id, who.clone(), ATTACH_MAX).await {
                Ok(full) => full,
                Err(e) => {
                    tracing::warn!(job = j.id, error = %e, "cannot read a job's log for chat");
                    return;
                }
            }
        };
        let why = match &full {
            None => format!("the log is over {} MiB", ATTACH_MAX >> 20),
            Some(log) => match self.surface.attach_log(o, j, log).await {
                Ok(()) => return,
                Err(why) => why,
            },
        };
        tracing::info!(job = j.id, %why, "sending a snippet instead of the full log");
        let (log, cut) = match full {
            Some(log) => (log, false),
            None => match self.log_tail(j.id, who).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(job = j.id, error = %e, "cannot read a job's log for chat");
                    return;
                }
            },
        };
        let text = render::snippet(&log, j.id, cut, m, self.surface.max_len());
        self.surface.reply(o, &text).await;
    }
}
