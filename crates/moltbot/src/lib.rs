//! moltbot: Slack in Socket Mode on one side, the gateway (as a `bot`
//! certificate) on the other. It never talks to nodes. This is the only
//! crate that knows Slack's JSON; the grammar is `crates/chat`.
//!
//! Flow: slack-morphism's Socket Mode listener hands `app_mention` and DM
//! events and button clicks to a queue; a worker checks access, records the
//! request in the gateway's audit log, parses it, and acts. A job gets one
//! message in the request's thread, edited in place (at most once a second
//! per message, honouring HTTP 429 `Retry-After`) as it moves through
//! queued, awaiting approval, running and finished.

pub mod config;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat::{Intent, What};
use client::{Client, ClientError};
use mesh::Home;
use proto::{JobEvent, JobInfo, JobSpec, OutStream, Request, Response};
use slack_morphism::prelude::*;
use tokio::sync::{Mutex, mpsc};

pub use config::Config;

/// The bot's config file in its home.
pub const CONFIG_FILE: &str = "moltbot.toml";
/// Least time between two edits of one message.
const EDIT_EVERY: Duration = Duration::from_secs(1);
/// Output kept for the "last lines" of a running job's message.
const TAIL_BYTES: usize = 1500;
/// Logs longer than this are also posted as a snippet when the job ends.
const SNIPPET_OVER: u64 = 2000;
/// Largest snippet, in characters.
const SNIPPET_MAX: usize = 3500;

/// Something Slack told us.
#[derive(Debug, Clone)]
enum Incoming {
    Message {
        /// Slack's event id: the same for every redelivery of one event.
        event_id: String,
        team: String,
        user: String,
        channel: String,
        ts: String,
        thread_ts: Option<String>,
        text: String,
        dm: bool,
    },
    Action {
        /// `trigger_id` and `action_ts`: the same for a redelivered click.
        dedup: String,
        team: String,
        user: String,
        channel: String,
        action: String,
        value: String,
    },
}

/// Slack events waiting for moltbot; bounded, and full means Slack is
/// sending faster than the gateway answers: the event is dropped and logged.
struct Inbox(mpsc::Sender<Incoming>);

/// Events that may wait for moltbot at once.
const INBOX: usize = 1024;

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let team = event.team_id.to_string();
    let event_id = event.event_id.to_string();
    let incoming = match event.event {
        SlackEventCallbackBody::AppMention(m) => Some(Incoming::Message {
            event_id,
            team,
            user: m.user.to_string(),
            channel: m.channel.to_string(),
            ts: m.origin.ts.to_string(),
            thread_ts: m.origin.thread_ts.map(|t| t.to_string()),
            text: m.content.text.unwrap_or_default(),
            dm: false,
        }),
        SlackEventCallbackBody::Message(m)
            if m.sender.bot_id.is_none()
                && m.subtype.is_none()
                && m.origin.channel_type.as_ref().is_some_and(|t| t.0 == "im") =>
        {
            match (m.sender.user, m.origin.channel) {
                (Some(user), Some(channel)) => Some(Incoming::Message {
                    event_id,
                    team,
                    user: user.to_string(),
                    channel: channel.to_string(),
                    ts: m.origin.ts.to_string(),
                    thread_ts: m.origin.thread_ts.map(|t| t.to_string()),
                    text: m.content.and_then(|c| c.text).unwrap_or_default(),
                    dm: true,
                }),
                _ => None,
            }
        }
        _ => None,
    };
    if let Some(i) = incoming {
        deliver(&states, i).await;
    }
    Ok(())
}

/// Hands an event to moltbot's loop, or drops it (logged) when the inbox is full.
async fn deliver(states: &SlackClientEventsUserState, i: Incoming) {
    if let Some(inbox) = states.read().await.get_user_state::<Inbox>()
        && inbox.0.try_send(i).is_err()
    {
        tracing::warn!("moltbot is behind: dropping a Slack event (inbox of {INBOX} full)");
    }
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let SlackInteractionEvent::BlockActions(b) = event {
        // The clicking user's own team: a Slack Connect guest's differs
        // from the workspace's.
        let team = b
            .user
            .as_ref()
            .and_then(|u| u.team_id.as_ref())
            .unwrap_or(&b.team.id)
            .to_string();
        let user = b.user.map(|u| u.id.to_string()).unwrap_or_default();
        let channel = b.channel.map(|c| c.id.to_string()).unwrap_or_default();
        for a in b.actions.unwrap_or_default() {
            let i = Incoming::Action {
                dedup: format!(
                    "{}/{}",
                    b.trigger_id,
                    a.action_ts
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                ),
                team: team.clone(),
                user: user.clone(),
                channel: channel.clone(),
                action: a.action_id.to_string(),
                value: a.value.unwrap_or_default(),
            };
            deliver(&states, i).await;
        }
    }
    Ok(())
}

/// The gateway connection, re-established when it drops.
struct Gateway {
    home: Home,
    client: Mutex<Option<Arc<Client>>>,
}

impl Gateway {
    async fn get(&self) -> Result<Arc<Client>, ClientError> {
        let mut g = self.client.lock().await;
        if let Some(c) = g
            .as_ref()
            .filter(|c| c.connection().close_reason().is_none())
        {
            return Ok(c.clone());
        }
        let c = Arc::new(Client::connect(&self.home).await?);
        *g = Some(c.clone());
        Ok(c)
    }

    async fn call(&self, req: Request) -> Result<Response, ClientError> {
        self.get().await?.call(req).await
    }
}

/// How long an event id is remembered: longer than Slack's retries.
const SEEN_FOR: Duration = Duration::from_secs(3600);
/// Most event ids remembered at once.
const SEEN_MAX: usize = 20_000;

struct Bot {
    cfg: Config,
    /// Event ids and click ids handled in the last [`SEEN_FOR`].
    seen: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    /// This bot's chat namespace on the gateway (`slack:TEAM`).
    namespace: String,
    /// The Slack team it serves (the namespace's scope).
    team: String,
    slack: Arc<SlackHyperClient>,
    token: SlackApiToken,
    gateway: Gateway,
}

fn text_content(text: &str) -> SlackMessageContent {
    SlackMessageContent::new().with_text(text.to_string())
}

impl Bot {
    async fn post(
        &self,
        channel: &str,
        thread: &str,
        content: SlackMessageContent,
    ) -> Option<String> {
        let req = SlackApiChatPostMessageRequest::new(channel.into(), content)
            .with_thread_ts(thread.into());
        for _ in 0..3 {
            match self
                .slack
                .open_session(&self.token)
                .chat_post_message(&req)
                .await
            {
                Ok(r) => return Some(r.ts.to_string()),
                Err(slack_morphism::errors::SlackClientError::RateLimitError(e)) => {
                    tokio::time::sleep(e.retry_after.unwrap_or(EDIT_EVERY)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "chat.postMessage failed");
                    return None;
                }
            }
        }
        None
    }

    async fn reply(&self, channel: &str, thread: &str, text: &str) {
        self.post(channel, thread, text_content(text)).await;
    }

    async fn update(&self, channel: &str, ts: &str, content: SlackMessageContent) {
        let req = SlackApiChatUpdateRequest::new(channel.into(), content, ts.into());
        for _ in 0..5 {
            match self.slack.open_session(&self.token).chat_update(&req).await {
                Ok(_) => return,
                Err(slack_morphism::errors::SlackClientError::RateLimitError(e)) => {
                    // Slack said slow down: wait exactly as long as it asks.
                    let wait = e.retry_after.unwrap_or(EDIT_EVERY);
                    tracing::info!(?wait, "chat.update rate-limited; waiting");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "chat.update failed");
                    return;
                }
            }
        }
    }

    async fn ephemeral(&self, channel: &str, user: &str, text: &str) {
        let req =
            SlackApiChatPostEphemeralRequest::new(channel.into(), user.into(), text_content(text));
        if let Err(e) = self
            .slack
            .open_session(&self.token)
            .chat_post_ephemeral(&req)
            .await
        {
            tracing::warn!(error = %e, "chat.postEphemeral failed");
        }
    }

    /// Posts the Approve/Deny buttons where the config says.
    async fn ask_approvers(&self, channel: &str, thread: &str, j: &JobInfo) {
        use config::ApprovalsIn;
        if matches!(self.cfg.approvals, ApprovalsIn::Thread | ApprovalsIn::Both) {
            let _ = self.post(channel, thread, approval_content(j)).await;
        }
        if matches!(self.cfg.approvals, ApprovalsIn::Dm | ApprovalsIn::Both) {
            // Approvers that are Slack users (U.../W...) get a DM; CLI identities cannot.
            let prefix = format!("{}/", self.namespace);
            for a in j.approvers.iter().filter_map(|a| a.strip_prefix(&prefix)) {
                let req = SlackApiConversationsOpenRequest::new().with_users(vec![a.into()]);
                match self
                    .slack
                    .open_session(&self.token)
                    .conversations_open(&req)
                    .await
                {
                    Ok(r) => {
                        let dm = r.channel.id.to_string();
                        let req = SlackApiChatPostMessageRequest::new(
                            dm.as_str().into(),
                            approval_content(j),
                        );
                        if let Err(e) = self
                            .slack
                            .open_session(&self.token)
                            .chat_post_message(&req)
                            .await
                        {
                            tracing::warn!(error = %e, approver = %a, "cannot DM an approver");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, approver = %a, "cannot open a DM with an approver")
                    }
                }
            }
        }
    }

    /// Whether `user` is in one of the allowed user groups (asked each time:
    /// group changes apply at once).
    async fn in_allowed_group(&self, user: &str) -> bool {
        for g in &self.cfg.allowed_groups {
            let req = SlackApiUserGroupsUsersListRequest::new(g.as_str().into());
            match self
                .slack
                .open_session(&self.token)
                .usergroups_users_list(&req)
                .await
            {
                Ok(r) if r.users.iter().any(|u| u.to_string() == user) => return true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, group = %g, "cannot list a user group's members")
                }
            }
        }
        false
    }

    async fn context(&self) -> Result<chat::Context, String> {
        match self.gateway.call(Request::ChatContext).await {
            Ok(Response::ChatContext { nodes, jobs, roles }) => Ok(chat::Context {
                nodes,
                jobs,
                roles,
                interpreters: chat::Context::default_interpreters(),
            }),
            Ok(r) => Err(format!("unexpected reply {r:?}")),
            Err(e) => Err(format!(
                "I can't reach the gateway right now ({e}); try again in a moment."
            )),
        }
    }

    /// The gateway identity of a Slack user of this workspace.
    fn who(&self, user: &str) -> Option<String> {
        Some(format!("{}/{user}", self.namespace))
    }

    /// Whether this event id was handled already (Slack redelivers an
    /// event it thinks went unacknowledged); remembers it otherwise.
    fn seen_before(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if seen.len() >= SEEN_MAX {
            seen.retain(|_, at| now.duration_since(*at) < SEEN_FOR);
            if seen.len() >= SEEN_MAX {
                seen.clear();
            }
        }
        seen.insert(id.to_string(), now)
            .is_some_and(|at| now.duration_since(at) < SEEN_FOR)
    }

    async fn handle(self: Arc<Self>, i: Incoming) {
        let (team, id) = match &i {
            Incoming::Message { team, event_id, .. } => (team, event_id),
            Incoming::Action { team, dedup, .. } => (team, dedup),
        };
        if !id.is_empty() && self.seen_before(id) {
            tracing::info!(event = %id, "ignoring a redelivered Slack event");
            return;
        }
        if *team != self.team {
            // Slack Connect guests and other workspaces are not this lab's users.
            tracing::info!(%team, "ignoring an event from another Slack team");
            return;
        }
        match i {
            Incoming::Message {
                event_id,
                team: _,
                user,
                channel,
                ts,
                thread_ts,
                text,
                dm,
            } => {
                let thread = thread_ts.unwrap_or(ts);
                self.message(&event_id, &user, &channel, &thread, &text, dm)
                    .await;
            }
            Incoming::Action {
                dedup: _,
                team: _,
                user,
                channel,
                action,
                value,
            } => {
                // Buttons pass the same allowlists as messages.
                let in_group = self.cfg.needs_groups(&user) && self.in_allowed_group(&user).await;
                if let Err(why) = self.cfg.admits(&user, &channel, false, in_group) {
                    return self.ephemeral(&channel, &user, &why).await;
                }
                self.action(&user, &channel, &action, &value).await
            }
        }
    }

    async fn message(
        &self,
        event_id: &str,
        user: &str,
        channel: &str,
        thread: &str,
        text: &str,
        dm: bool,
    ) {
        let in_group = self.cfg.needs_groups(user) && self.in_allowed_group(user).await;
        if let Err(why) = self.cfg.admits(user, channel, dm, in_group) {
            return self.reply(channel, thread, why.as_str()).await;
        }
        let _ = self
            .gateway
            .call(Request::ChatAudit {
                user: self.who(user).unwrap_or_default(),
                channel: channel.to_string(),
                thread: thread.to_string(),
                text: text.chars().take(500).collect(),
            })
            .await;
        let ctx = match self.context().await {
            Ok(c) => c,
            Err(e) => return self.reply(channel, thread, &e).await,
        };
        let on_behalf_of = self.who(user);
        let done = |r: Result<Response, ClientError>| match r {
            Ok(Response::Done { message }) => message,
            Ok(r) => format!("unexpected reply {r:?}"),
            Err(ClientError::Api(e)) => e.message,
            Err(e) => format!("I can't reach the gateway right now ({e})."),
        };
        let reply = match chat::parse(text, &ctx) {
            Intent::Help => HELP.to_string(),
            Intent::Clarify(q) => q,
            Intent::Nodes => match self.gateway.call(Request::NodeList).await {
                Ok(Response::Nodes(nodes)) => nodes_text(&nodes),
                r => done(r),
            },
            Intent::Status(None) => match self
                .gateway
                .call(Request::JobList {
                    limit: 10,
                    before: None,
                    on_behalf_of: on_behalf_of.clone(),
                })
                .await
            {
                Ok(Response::Jobs(jobs)) => jobs_text(&jobs),
                r => done(r),
            },
            Intent::Status(Some(id)) => match self
                .gateway
                .call(Request::JobShow {
                    id,
                    on_behalf_of: on_behalf_of.clone(),
                })
                .await
            {
                Ok(Response::Job(j)) => job_text(&j, None),
                r => done(r),
            },
            Intent::Logs(id) => self.logs(id, user).await,
            Intent::Cancel(id) => done(
                self.gateway
                    .call(Request::JobCancel { id, on_behalf_of })
                    .await,
            ),
            Intent::Approve(id) => done(
                self.gateway
                    .call(Request::JobApprove {
                        id,
                        plan_digest: None,
                        on_behalf_of,
                    })
                    .await,
            ),
            Intent::Deny(id, reason) => done(
                self.gateway
                    .call(Request::JobDeny {
                        id,
                        reason,
                        on_behalf_of,
                    })
                    .await,
            ),
            Intent::Run { what, node, role } => {
                let mut spec = self.spec(user, what, node, role);
                // Even a moltbot restart between receipt and ack cannot
                // start a second job: the gateway keeps the key a day.
                if !event_id.is_empty() {
                    spec.idempotency_key = Some(format!("slack:{event_id}"));
                }
                // Limits apply to the resolved plan (a named job's node or
                // role), not to the words typed: ask the gateway first.
                match self.gateway.call(Request::JobPreview(spec.clone())).await {
                    Ok(Response::Preview {
                        node,
                        role,
                        named_job,
                        ..
                    }) => match self.cfg.permits(
                        user,
                        Some(node.as_str()),
                        role.as_deref(),
                        named_job.as_deref(),
                    ) {
                        Err(why) => why,
                        Ok(()) => return self.run(channel, thread, spec).await,
                    },
                    r => done(r),
                }
            }
        };
        self.reply(channel, thread, &reply).await;
    }

    async fn logs(&self, id: u64, user: &str) -> String {
        let client = match self.gateway.get().await {
            Ok(c) => c,
            Err(e) => return format!("I can't reach the gateway right now ({e})."),
        };
        let mut recv = match client
            .open(Request::JobAttach {
                id,
                follow: false,
                stdout_from: 0,
                stderr_from: 0,
                on_behalf_of: self.who(user),
            })
            .await
        {
            Ok(r) => r,
            Err(e) => return e.to_string(),
        };
        let mut out = Vec::new();
        loop {
            match client.next_event(&mut recv).await {
                Ok(Some(JobEvent::Output { data, .. })) => out.extend_from_slice(&data),
                Ok(Some(JobEvent::Error(e))) => return e.message,
                Ok(Some(JobEvent::End(_))) | Ok(None) | Err(_) => break,
                Ok(Some(_)) => {}
            }
        }
        snippet(&String::from_utf8_lossy(&out), id)
    }

    /// The job a chat request asks for, on behalf of `user`.
    fn spec(&self, user: &str, what: What, node: Option<String>, role: Option<String>) -> JobSpec {
        let mut spec = JobSpec {
            node,
            role,
            on_behalf_of: self.who(user),
            ..Default::default()
        };
        match what {
            What::Job(j) => spec.job = Some(j),
            What::Argv(a) => spec.argv = a,
            What::Shell(l) => {
                spec.argv = vec![l];
                spec.shell = true;
            }
        }
        spec
    }

    async fn run(&self, channel: &str, thread: &str, spec: JobSpec) {
        let user = spec
            .on_behalf_of
            .as_deref()
            .and_then(|w| w.rsplit('/').next())
            .unwrap_or_default()
            .to_string();
        let user = user.as_str();
        let Some(msg_ts) = self.post(channel, thread, text_content("Starting…")).await else {
            return;
        };
        let client = match self.gateway.get().await {
            Ok(c) => c,
            Err(e) => {
                return self
                    .update(
                        channel,
                        &msg_ts,
                        text_content(&format!("I can't reach the gateway ({e}).")),
                    )
                    .await;
            }
        };
        let recv = match client.open(Request::JobRun(spec)).await {
            Ok(r) => r,
            Err(e) => {
                return self
                    .update(channel, &msg_ts, text_content(&e.to_string()))
                    .await;
            }
        };
        let mut msg = JobMessage {
            channel: channel.to_string(),
            ts: msg_ts,
            last_edit: None,
            pending: None,
        };
        let mut info: Option<JobInfo> = None;
        let mut tail = String::new();
        let mut offsets = [0u64; 2];
        let started = Instant::now();
        let mut approval_posted = false;
        let mut tick = tokio::time::interval(EDIT_EVERY);
        // Frames are read in a task of their own: a frame read cut short by
        // the edit timer would corrupt the stream, a channel receive is not.
        let mut events = read_events(client, recv);
        loop {
            tokio::select! {
                ev = events.recv() => match ev.flatten() {
                    Some(JobEvent::Accepted(j)) | Some(JobEvent::State(j)) => {
                        if j.state == "awaiting-approval" && !approval_posted {
                            approval_posted = true;
                            self.ask_approvers(channel, thread, &j).await;
                        }
                        msg.set(job_text(&j, Some((started.elapsed(), &tail))));
                        info = Some(j);
                    }
                    Some(JobEvent::Output { stream, data }) => {
                        offsets[usize::from(stream == OutStream::Stderr)] += data.len() as u64;
                        tail.push_str(&String::from_utf8_lossy(&data));
                        if tail.len() > TAIL_BYTES {
                            let cut = tail.len() - TAIL_BYTES;
                            let cut = (cut..tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(tail.len());
                            tail.drain(..cut);
                        }
                        if let Some(j) = &info {
                            msg.set(job_text(j, Some((started.elapsed(), &tail))));
                        }
                    }
                    Some(JobEvent::End(j)) => {
                        msg.set(job_text(&j, None));
                        msg.flush(self, true).await;
                        if j.stdout_bytes + j.stderr_bytes > SNIPPET_OVER {
                            let log = self.logs(j.id, user).await;
                            self.reply(channel, thread, &log).await;
                        }
                        return;
                    }
                    Some(JobEvent::Error(e)) => {
                        msg.set(e.message);
                        msg.flush(self, true).await;
                        return;
                    }
                    None => {
                        // The gateway went away: reconnect and resume following.
                        let Some((id, requester)) = info.as_ref().map(|j| (j.id, j.requester.clone())) else {
                            msg.set("I lost the gateway before the job started; check `status`.".into());
                            msg.flush(self, true).await;
                            return;
                        };
                        match self.reattach(id, offsets, &requester).await {
                            Some((c, r)) => events = read_events(c, r),
                            None => {
                                msg.set(format!("I lost the gateway while following job {id}; ask `status {id}` later."));
                                msg.flush(self, true).await;
                                return;
                            }
                        }
                    }
                },
                _ = tick.tick() => msg.flush(self, false).await,
            }
        }
    }

    async fn reattach(
        &self,
        id: u64,
        offsets: [u64; 2],
        requester: &str,
    ) -> Option<(Arc<Client>, quinn::RecvStream)> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(c) = self.gateway.get().await
                && let Ok(r) = c
                    .open(Request::JobAttach {
                        id,
                        follow: true,
                        stdout_from: offsets[0],
                        stderr_from: offsets[1],
                        on_behalf_of: Some(requester.to_string()),
                    })
                    .await
            {
                return Some((c, r));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }

    async fn action(&self, user: &str, channel: &str, action: &str, value: &str) {
        let Ok(id) = value.parse::<u64>() else { return };
        let on_behalf_of = self.who(user);
        let req = match action {
            "approve" => Request::JobApprove {
                id,
                plan_digest: None,
                on_behalf_of,
            },
            "deny" => Request::JobDeny {
                id,
                reason: None,
                on_behalf_of,
            },
            _ => return,
        };
        match self.gateway.call(req).await {
            Ok(Response::Done { message }) => self.ephemeral(channel, user, &message).await,
            Ok(r) => {
                self.ephemeral(channel, user, &format!("unexpected reply {r:?}"))
                    .await
            }
            Err(ClientError::Api(e)) if e.code == proto::ErrorCode::PermissionDenied => {
                self.ephemeral(channel, user, &format!("Not allowed: {}", e.message))
                    .await
            }
            Err(e) => self.ephemeral(channel, user, &e.to_string()).await,
        }
    }
}

/// Reads a job's event stream in its own task; `None` means the stream
/// ended without an `End` (the gateway went away).
fn read_events(
    client: Arc<Client>,
    mut recv: quinn::RecvStream,
) -> mpsc::Receiver<Option<JobEvent>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let ev = client.next_event(&mut recv).await.ok().flatten();
            let last = matches!(ev, None | Some(JobEvent::End(_) | JobEvent::Error(_)));
            if tx.send(ev).await.is_err() || last {
                return;
            }
        }
    });
    rx
}

/// One job's message, edited at most once per [`EDIT_EVERY`].
struct JobMessage {
    channel: String,
    ts: String,
    last_edit: Option<Instant>,
    pending: Option<String>,
}

impl JobMessage {
    fn set(&mut self, text: String) {
        self.pending = Some(text);
    }

    async fn flush(&mut self, bot: &Bot, force: bool) {
        let Some(text) = self.pending.take() else {
            return;
        };
        if let Some(t) = self.last_edit {
            let since = t.elapsed();
            if since < EDIT_EVERY {
                if !force {
                    self.pending = Some(text);
                    return;
                }
                tokio::time::sleep(EDIT_EVERY - since).await;
            }
        }
        bot.update(&self.channel, &self.ts, text_content(&text))
            .await;
        self.last_edit = Some(Instant::now());
    }
}

const HELP: &str = "I run jobs on the lab's nodes. Try:\n• `run training on worker-gpu-01`\n• `run python train.py --epochs 3 on worker-gpu-01`\n• `run training (gpu)` · `start experiment exp42`\n• `nodes` · `status` · `status 17` · `logs 17` · `cancel 17` · `approve 17` · `deny 17 because …`";

fn fmt_duration(d: Duration) -> String {
    proto::duration::format(Duration::from_secs(d.as_secs().max(1)))
}

fn job_text(j: &JobInfo, running: Option<(Duration, &str)>) -> String {
    let cmd = j.argv.join(" ");
    let head = match j.state.as_str() {
        "queued" => format!(":hourglass: job {} queued: `{cmd}`", j.id),
        "awaiting-approval" => format!(
            ":lock: job {} on {} awaits approval by {}: `{cmd}`",
            j.id,
            j.node,
            j.approvers
                .iter()
                .map(|a| if a.starts_with('U') {
                    format!("<@{a}>")
                } else {
                    a.clone()
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "starting" => format!(
            ":arrow_forward: job {} starting on {}: `{cmd}`",
            j.id, j.node
        ),
        "running" => format!(
            ":arrow_forward: job {} running on {} for {}: `{cmd}`",
            j.id,
            j.node,
            running.map(|(d, _)| fmt_duration(d)).unwrap_or_default()
        ),
        "exited" => {
            let took = match (j.started_at, j.finished_at) {
                (Some(s), Some(f)) => fmt_duration(Duration::from_secs(f.saturating_sub(s))),
                _ => "-".into(),
            };
            let code = j.exit_code.unwrap_or(-1);
            let mark = if code == 0 {
                ":white_check_mark:"
            } else {
                ":x:"
            };
            format!(
                "{mark} job {} on {} exited with code {code} after {took}: `{cmd}`",
                j.id, j.node
            )
        }
        other => format!(
            ":warning: job {} {other}{}: `{cmd}`",
            j.id,
            j.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
    };
    match running {
        Some((_, tail)) if !tail.trim().is_empty() && j.state == "running" => {
            let lines: Vec<&str> = tail.lines().rev().take(10).collect();
            let last: Vec<&str> = lines.into_iter().rev().collect();
            format!("{head}\n```{}```", last.join("\n"))
        }
        _ => head,
    }
}

fn approval_content(j: &JobInfo) -> SlackMessageContent {
    let id = j.id.to_string();
    let blocks = serde_json::json!([
        { "type": "section", "text": { "type": "mrkdwn",
          "text": format!(
              "Job {} wants to run `{}` on {}{}{}. Plan {}. Approve?",
              j.id,
              j.argv.join(" "),
              j.node,
              j.cwd.as_deref().map(|c| format!(" in `{c}`")).unwrap_or_default(),
              if j.env.is_empty() {
                  String::new()
              } else {
                  format!(
                      " with env `{}`",
                      j.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
                  )
              },
              j.plan_digest
          ) } },
        { "type": "actions", "block_id": format!("job-{id}"), "elements": [
            { "type": "button", "action_id": "approve", "value": id, "style": "primary",
              "text": { "type": "plain_text", "text": "Approve" } },
            { "type": "button", "action_id": "deny", "value": id, "style": "danger",
              "text": { "type": "plain_text", "text": "Deny" } }
        ]}
    ]);
    let blocks: Vec<SlackBlock> = serde_json::from_value(blocks).unwrap_or_default();
    text_content(&format!("Job {} awaits approval", j.id)).with_blocks(blocks)
}

fn snippet(log: &str, id: u64) -> String {
    if log.is_empty() {
        return format!("job {id} printed nothing.");
    }
    let mut start = log.len().saturating_sub(SNIPPET_MAX);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    let note = if start > 0 {
        format!(
            "Last {SNIPPET_MAX} characters of job {id}'s log (all of it: `openclaw job logs {id}`):"
        )
    } else {
        format!("Log of job {id}:")
    };
    format!("{note}\n```{}```", &log[start..])
}

fn nodes_text(nodes: &[proto::NodeInfo]) -> String {
    if nodes.is_empty() {
        return "No nodes are enrolled yet.".into();
    }
    nodes
        .iter()
        .map(|n| {
            format!(
                "• *{}* {} {} {}",
                n.name,
                n.connection,
                n.health,
                n.labels.join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn jobs_text(jobs: &[JobInfo]) -> String {
    if jobs.is_empty() {
        return "No jobs yet.".into();
    }
    jobs.iter()
        .map(|j| job_text(j, None))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs moltbot until `shutdown` resolves. `home` holds the bot credential
/// (`openclaw client create moltbot --role bot --out HOME`) and moltbot.toml.
pub async fn run(
    home: &Home,
    cfg: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    // https only, except for a loopback http:// URL (local testing), which
    // config::check_api_url already limited to loopback.
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("cannot load the system's root certificates for Slack: {e}"))?;
    let https = if cfg.slack_api_url.starts_with("http://") {
        builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build()
    } else {
        builder.https_only().enable_http1().enable_http2().build()
    };
    let connector = SlackClientHyperConnector::from(https).with_slack_api_url(&cfg.slack_api_url);
    let slack = Arc::new(SlackClient::new(connector));
    let token = SlackApiToken::new(cfg.bot_token.expose().to_string().into());
    let app_token = SlackApiToken::new(cfg.app_token.expose().to_string().into());
    let gateway = Gateway {
        home: home.clone(),
        client: Mutex::new(None),
    };
    let namespace = match gateway.call(Request::Whoami).await {
        Ok(Response::Identity {
            role: proto::Role::Bot,
            name,
            namespace: Some(ns),
        }) if ns.starts_with("slack:") => {
            tracing::info!(%name, %ns, "connected to the gateway");
            ns
        }
        Ok(Response::Identity {
            role: proto::Role::Bot,
            name,
            namespace,
        }) => {
            return Err(format!(
                "bot {name} has chat namespace {namespace:?} on the gateway; moltbot needs slack:TEAMID (your Slack team id). \
                 Recreate it: openclaw client revoke {name}; openclaw client create {name} --role bot --namespace slack:TEAMID --out DIR"
            ));
        }
        Ok(Response::Identity { role, name, .. }) => {
            return Err(format!(
                "{} holds a {role} credential ({name}); moltbot needs a bot one: openclaw client create moltbot --role bot --out DIR",
                home.root().display()
            ));
        }
        Ok(r) => return Err(format!("unexpected reply {r:?}")),
        Err(e) => return Err(format!("cannot reach the gateway: {e}")),
    };
    let team = namespace
        .strip_prefix("slack:")
        .unwrap_or_default()
        .to_string();
    let (tx, mut rx) = mpsc::channel(INBOX);
    let env = Arc::new(
        SlackClientEventsListenerEnvironment::new(slack.clone())
            .with_error_handler(|e, _, _| {
                tracing::warn!(error = %e, "Slack event handling failed");
                http::StatusCode::OK
            })
            .with_user_state(Inbox(tx)),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_push_events(on_push)
        .with_interaction_events(on_interaction);
    let listener = SlackClientSocketModeListener::new(
        &SlackClientSocketModeConfig::new()
            .with_initial_backoff_in_seconds(1)
            .with_reconnect_timeout_in_seconds(5),
        env,
        callbacks,
    );
    listener
        .listen_for(&app_token)
        .await
        .map_err(|e| format!("cannot open a Socket Mode connection: {e}"))?;
    listener.start().await;
    tracing::info!(api = %cfg.slack_api_url, "moltbot listening in Socket Mode");
    let bot = Arc::new(Bot {
        cfg,
        seen: std::sync::Mutex::new(std::collections::HashMap::new()),
        namespace,
        team,
        slack,
        token,
        gateway,
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            i = rx.recv() => match i {
                Some(i) => { tokio::spawn(bot.clone().handle(i)); }
                None => break,
            },
            () = &mut shutdown => break,
        }
    }
    listener.shutdown().await;
    Ok(())
}
