//! moltbot: Slack in Socket Mode on one side, the gateway (as a `bot`
//! certificate) on the other. It never talks to nodes. This is the only
//! crate that knows Slack's JSON; the grammar is `crates/chat`.
//!
//! Flow: slack-morphism's Socket Mode listener hands `app_mention` and DM
//! events and button clicks to a bounded queue; the loop drops events of
//! other installations and of senders from other teams (a Slack Connect
//! guest in a shared channel arrives with our `team_id`; their own team is
//! the event's `user_team`, which slack-morphism does not model, so it is
//! asked of `users.info` and remembered), turns Slack markup into plain
//! text and hands each to the
//! shared chat engine (`chatops`), which answers through [`SlackSurface`]:
//! a job gets one message in the request's thread, edited in place (at
//! most once a second, honouring HTTP 429 `Retry-After`) from queued to
//! its result, and a long log is uploaded as a file
//! (`files.getUploadURLExternal` + `files.completeUploadExternal`).

pub mod config;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat::render::Markup;
use chatops::{Change, Decision, Engine, Origin, Surface, lock};
use client::Gateway;
use mesh::Home;
use proto::JobInfo;
use slack_morphism::prelude::*;
use tokio::sync::mpsc;

pub use config::Config;

/// The bot's config file in its home.
pub const CONFIG_FILE: &str = "moltbot.toml";
/// Longest message moltbot posts, in bytes (Slack truncates `text` past
/// 40,000 characters and shows long messages collapsed past about 4,000).
const MAX_LEN: usize = 3900;

/// Something Slack told us.
#[derive(Debug, Clone)]
enum Incoming {
    Message {
        /// Slack's event id: the same for every redelivery of one event.
        event_id: String,
        /// The outer `team_id`: the workspace the event came through (in
        /// a Slack Connect channel, ours, whoever wrote).
        team: String,
        /// The sender's own team when the event says; else asked.
        user_team: Option<String>,
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
        /// The payload's `team.id`.
        team: String,
        /// The clicking user's own team (`user.team_id`) when given.
        user_team: Option<String>,
        user: String,
        channel: String,
        /// Clicked in a one-to-one chat with the bot (an IM channel).
        dm: bool,
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
            // slack-morphism's app_mention drops `user_team`: asked later.
            user_team: None,
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
            let user_team = m
                .sender
                .user_profile
                .as_ref()
                .and_then(|p| p.team.as_ref())
                .map(|t| t.to_string());
            match (m.sender.user, m.origin.channel) {
                (Some(user), Some(channel)) => Some(Incoming::Message {
                    event_id,
                    team,
                    user_team,
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
        let team = b.team.id.to_string();
        // The clicking user's own team: a Slack Connect guest's differs
        // from the workspace's. Asked of users.info when absent.
        let user_team = b
            .user
            .as_ref()
            .and_then(|u| u.team_id.as_ref())
            .map(|t| t.to_string());
        let user = b.user.map(|u| u.id.to_string()).unwrap_or_default();
        let channel = b.channel.map(|c| c.id.to_string()).unwrap_or_default();
        // Slack's IM channel ids start with D: a click there (an approval
        // sent by DM) is a direct message, under the DM rule rather than
        // the channel list.
        let dm = channel.starts_with('D');
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
                user_team: user_team.clone(),
                user: user.clone(),
                channel: channel.clone(),
                dm,
                action: a.action_id.to_string(),
                value: a.value.unwrap_or_default(),
            };
            deliver(&states, i).await;
        }
    }
    Ok(())
}

/// Slack's text markup: `&`, `<` and `>` escaped, users as `<@U…>`.
struct SlackMarkup {
    /// `slack:TEAM/`: identities of this workspace are mentioned.
    prefix: String,
}

impl Markup for SlackMarkup {
    fn escape(&self, s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    fn mention(&self, identity: &str) -> String {
        match identity.strip_prefix(&self.prefix) {
            Some(u) if u.chars().all(|c| c.is_ascii_alphanumeric()) => format!("<@{u}>"),
            _ => self.escape(identity),
        }
    }

    /// Slack's date formatting: each reader sees the time in their own
    /// time zone (`today 2:03 PM`); clients that cannot show it get UTC.
    fn time(&self, unix: u64, now: u64) -> String {
        format!(
            "<!date^{unix}^{{date_short_pretty}} {{time}}|{}>",
            chat::render::utc(unix, now)
        )
    }
}

/// Slack's markup turned into the plain text the grammar reads: `<@U…>`
/// mentions and channel references dropped, `<url|label>` as its label,
/// `&amp;`-style escapes undone.
pub fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &rest[start + 1..start + end];
        if inner.starts_with('@') || inner.starts_with('#') || inner.starts_with('!') {
            // A mention or channel reference: drop it.
        } else if let Some((_, label)) = inner.split_once('|') {
            out.push_str(label);
        } else {
            out.push_str(inner);
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .trim()
        .to_string()
}

/// moltbot's side of the chat engine: Slack's Web API.
pub struct SlackSurface {
    cfg: Config,
    markup: SlackMarkup,
    slack: Arc<SlackHyperClient>,
    token: SlackApiToken,
}

/// A job's message: where it is.
pub struct Live {
    channel: String,
    ts: String,
}

fn text_content(text: &str) -> SlackMessageContent {
    SlackMessageContent::new().with_text(text.to_string())
}

/// Whether a file upload URL from Slack may receive the bot token and the
/// log: https, or http to loopback when the API itself is on loopback.
fn upload_url_ok(url: &str, api_url: &str) -> bool {
    url.starts_with("https://")
        || (api_url.starts_with("http://") && config::check_api_url(url).is_ok())
}

impl SlackSurface {
    fn session(&self) -> SlackClientSession<'_, SlackClientHyperHttpsConnector> {
        self.slack.open_session(&self.token)
    }

    async fn post(
        &self,
        channel: &str,
        thread: &str,
        content: SlackMessageContent,
    ) -> Option<String> {
        let req = SlackApiChatPostMessageRequest::new(channel.into(), content)
            .with_thread_ts(thread.into());
        for _ in 0..3 {
            match self.session().chat_post_message(&req).await {
                Ok(r) => return Some(r.ts.to_string()),
                Err(slack_morphism::errors::SlackClientError::RateLimitError(e)) => {
                    tokio::time::sleep(e.retry_after.unwrap_or(chatops::EDIT_EVERY)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "chat.postMessage failed");
                    return None;
                }
            }
        }
        None
    }

    async fn upload(&self, to: &Origin, job: &JobInfo, log: &[u8]) -> Result<(), String> {
        let comment = format!(
            "Full log of job {} ({} bytes; also `openclaw job logs {}`)",
            job.id,
            log.len(),
            job.id
        );
        self.upload_file(
            to,
            &format!("job-{}.log", job.id),
            log,
            "text/plain",
            comment,
        )
        .await
    }

    /// Uploads `bytes` as file `name` into `to`'s thread with Slack's
    /// upload API: `files.getUploadURLExternal`, the bytes POSTed to the
    /// URL it returns, then `files.completeUploadExternal` with the channel
    /// and thread.
    async fn upload_file(
        &self,
        to: &Origin,
        name: &str,
        log: &[u8],
        content_type: &str,
        comment: String,
    ) -> Result<(), String> {
        let name = name.to_string();
        let req = SlackApiFilesGetUploadUrlExternalRequest::new(name.clone(), log.len());
        let got = self
            .session()
            .get_upload_url_external(&req)
            .await
            .map_err(|e| format!("files.getUploadURLExternal: {e}"))?;
        let url = got.upload_url.value().to_string();
        if !upload_url_ok(&url, &self.cfg.slack_api_url) {
            return Err(format!(
                "Slack gave an upload URL that is not https: {}",
                proto::redact::url(&url)
            ));
        }
        let req = SlackApiFilesUploadViaUrlRequest::new(
            got.upload_url,
            log.to_vec(),
            content_type.into(),
        );
        self.session()
            .files_upload_via_url(&req)
            .await
            .map_err(|e| format!("uploading {name}: {e}"))?;
        let file = SlackApiFilesComplete::new(got.file_id).with_title(name);
        let req = SlackApiFilesCompleteUploadExternalRequest::new(vec![file])
            .with_channel_id(to.chat.as_str().into())
            .with_thread_ts(to.reply.as_str().into())
            .with_initial_comment(comment);
        self.session()
            .files_complete_upload_external(&req)
            .await
            .map_err(|e| format!("files.completeUploadExternal: {e}"))?;
        Ok(())
    }

    fn approval_content(&self, j: &JobInfo) -> SlackMessageContent {
        let id = j.id.to_string();
        let blocks = serde_json::json!([
            { "type": "section", "text": { "type": "mrkdwn",
              "text": chat::render::approval_question(j, &self.markup) } },
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
}

impl Surface for SlackSurface {
    type Live = Live;

    fn markup(&self) -> &(dyn Markup + Sync) {
        &self.markup
    }

    fn max_len(&self) -> usize {
        MAX_LEN
    }

    async fn reply(&self, to: &Origin, text: &str) {
        self.post(&to.chat, &to.reply, text_content(text)).await;
    }

    async fn notice(&self, to: &Origin, text: &str) {
        let req = SlackApiChatPostEphemeralRequest::new(
            to.chat.as_str().into(),
            to.user.as_str().into(),
            text_content(text),
        );
        if let Err(e) = self.session().chat_post_ephemeral(&req).await {
            tracing::warn!(error = %e, "chat.postEphemeral failed");
        }
    }

    async fn open_live(&self, to: &Origin, text: &str) -> Option<Live> {
        let ts = self.post(&to.chat, &to.reply, text_content(text)).await?;
        Some(Live {
            channel: to.chat.clone(),
            ts,
        })
    }

    async fn edit_live(&self, live: &mut Live, text: &str, _change: Change) {
        let req = SlackApiChatUpdateRequest::new(
            live.channel.as_str().into(),
            text_content(text),
            live.ts.as_str().into(),
        );
        for _ in 0..5 {
            match self.session().chat_update(&req).await {
                Ok(_) => return,
                Err(slack_morphism::errors::SlackClientError::RateLimitError(e)) => {
                    // Slack said slow down: wait exactly as long as it asks.
                    let wait = e.retry_after.unwrap_or(chatops::EDIT_EVERY);
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

    async fn ask_approval(&self, to: &Origin, j: &JobInfo) {
        use config::ApprovalsIn;
        if matches!(self.cfg.approvals, ApprovalsIn::Thread | ApprovalsIn::Both) {
            let _ = self
                .post(&to.chat, &to.reply, self.approval_content(j))
                .await;
        }
        if !matches!(self.cfg.approvals, ApprovalsIn::Dm | ApprovalsIn::Both) {
            return;
        }
        // Approvers that are users of this workspace get a DM; CLI
        // identities cannot.
        for a in j
            .approvers
            .iter()
            .filter_map(|a| a.strip_prefix(&self.markup.prefix))
        {
            let req = SlackApiConversationsOpenRequest::new().with_users(vec![a.into()]);
            match self.session().conversations_open(&req).await {
                Ok(r) => {
                    let req = SlackApiChatPostMessageRequest::new(
                        r.channel.id.clone(),
                        self.approval_content(j),
                    );
                    if let Err(e) = self.session().chat_post_message(&req).await {
                        tracing::warn!(error = %e, approver = %a, "cannot DM an approver");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, approver = %a, "cannot open a DM with an approver")
                }
            }
        }
    }

    async fn attach_log(&self, to: &Origin, job: &JobInfo, log: &[u8]) -> Result<(), String> {
        self.upload(to, job, log).await
    }

    fn artifact_upload_max(&self) -> u64 {
        self.cfg.artifact_upload_max
    }

    async fn attach_artifact(
        &self,
        to: &Origin,
        job: &JobInfo,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), String> {
        // The file's name in Slack is the artifact's last component; the
        // comment says which job and path it is (escaped: a job chose it).
        let short = name.rsplit('/').next().unwrap_or(name);
        let comment = format!(
            "Artifact {} of job {} ({} bytes)",
            self.markup.escape(name),
            job.id,
            bytes.len()
        );
        self.upload_file(to, short, bytes, "application/octet-stream", comment)
            .await
    }

    async fn in_group(&self, user: &str) -> bool {
        for g in &self.cfg.access.groups {
            let req = SlackApiUserGroupsUsersListRequest::new(g.as_str().into());
            match self.session().usergroups_users_list(&req).await {
                Ok(r) if r.users.iter().any(|u| u.to_string() == user) => return true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, group = %g, "cannot list a user group's members")
                }
            }
        }
        false
    }
}

/// What an event's teams say about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sender {
    /// A user of this workspace.
    Ours,
    /// Another installation's event, or a user of another team (a Slack
    /// Connect guest): this team.
    Other(String),
    /// The event does not say the sender's own team: ask `users.info`.
    Ask,
}

/// Decides on an event's teams: `outer` is the event's `team_id` (the
/// installation it came through: ours for every message in a shared
/// channel), `user_team` the sender's own team when the event carries it.
/// Pure.
fn sender(ours: &str, outer: &str, user_team: Option<&str>) -> Sender {
    if outer != ours {
        return Sender::Other(outer.to_string());
    }
    match user_team {
        Some(t) if t == ours => Sender::Ours,
        Some(t) => Sender::Other(t.to_string()),
        None => Sender::Ask,
    }
}

/// How long a user's team is remembered.
const TEAMS_FOR: Duration = Duration::from_secs(3600);
/// Most users whose team is remembered at once (then forgotten together).
const TEAMS_MAX: usize = 10_000;
/// How long `users.info` may take.
const USERS_INFO_WAIT: Duration = Duration::from_secs(10);

/// Users' own teams, from `users.info`, remembered for [`TEAMS_FOR`].
struct UserTeams {
    slack: Arc<SlackHyperClient>,
    token: SlackApiToken,
    known: Mutex<HashMap<String, (String, Instant)>>,
}

impl UserTeams {
    /// The team `user` belongs to, or why it cannot be told.
    async fn of(&self, user: &str) -> Result<String, String> {
        if let Some((t, at)) = lock(&self.known).get(user)
            && at.elapsed() < TEAMS_FOR
        {
            return Ok(t.clone());
        }
        let req = SlackApiUsersInfoRequest::new(user.into());
        let session = self.slack.open_session(&self.token);
        let got = tokio::time::timeout(USERS_INFO_WAIT, session.users_info(&req))
            .await
            .map_err(|_| format!("users.info gave no answer in {USERS_INFO_WAIT:?}"))?
            .map_err(|e| format!("users.info failed ({e}); does the app have users:read?"))?;
        let team = got
            .user
            .team_id
            .map(|t| t.to_string())
            .ok_or("users.info gave no team_id")?;
        let mut known = lock(&self.known);
        if known.len() >= TEAMS_MAX {
            known.clear();
        }
        known.insert(user.to_string(), (team.clone(), Instant::now()));
        Ok(team)
    }
}

/// Hands one Slack event to the engine if its sender is a user of `team`;
/// events of other installations and of other teams' users (Slack Connect
/// guests) are dropped, and so is one whose sender's team cannot be told.
async fn admit(engine: &Arc<Engine<SlackSurface>>, teams: &UserTeams, team: &str, i: Incoming) {
    let (outer, user_team, user, id) = match &i {
        Incoming::Message {
            team,
            user_team,
            user,
            event_id,
            ..
        } => (team, user_team, user, event_id),
        Incoming::Action {
            team,
            user_team,
            user,
            dedup,
            ..
        } => (team, user_team, user, dedup),
    };
    let from = match sender(team, outer, user_team.as_deref()) {
        Sender::Ours => None,
        Sender::Other(t) => Some(t),
        Sender::Ask => match teams.of(user).await {
            Ok(t) if t == team => None,
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, %user, event = %id, "cannot tell which Slack team the sender belongs to; ignoring the event");
                return;
            }
        },
    };
    if let Some(from) = from {
        // Slack Connect guests and other workspaces are not this lab's users.
        tracing::info!(team = %from, %user, event = %id, "ignoring an event from another Slack team");
        return;
    }
    dispatch(engine, i);
}

/// Hands one Slack event, from a user of this workspace, to the engine.
fn dispatch(engine: &Arc<Engine<SlackSurface>>, i: Incoming) {
    match i {
        Incoming::Message {
            event_id,
            user,
            channel,
            ts,
            thread_ts,
            text,
            dm,
            ..
        } => {
            let o = Origin {
                user,
                chat: channel,
                dm,
                // Also the job's idempotency key at the gateway.
                event: if event_id.is_empty() {
                    String::new()
                } else {
                    format!("slack:{event_id}")
                },
                reply: thread_ts.unwrap_or(ts),
            };
            engine.on_message(o, plain_text(&text));
        }
        Incoming::Action {
            dedup,
            user,
            channel,
            dm,
            action,
            value,
            ..
        } => {
            let decision = match action.as_str() {
                "approve" => Decision::Approve,
                "deny" => Decision::Deny,
                _ => return,
            };
            let Ok(id) = value.parse::<u64>() else { return };
            let o = Origin {
                user,
                chat: channel,
                dm,
                event: format!("slack-click:{dedup}"),
                reply: String::new(),
            };
            engine.on_click(o, decision, id);
        }
    }
}

/// Runs moltbot until `shutdown` resolves. `home` holds the bot credential
/// (`openclaw client create moltbot --role bot --namespace slack:TEAM --out
/// HOME`) and moltbot.toml.
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
    let gateway = Gateway::new(home.clone());
    let namespace = chatops::bot_namespace(&gateway, "slack", "TEAMID").await?;
    let team = namespace
        .strip_prefix("slack:")
        .unwrap_or_default()
        .to_string();
    let teams = UserTeams {
        slack: slack.clone(),
        token: token.clone(),
        known: Mutex::new(HashMap::new()),
    };
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
    // Messages from Slack Connect guests carry our team_id; telling them
    // apart needs users.info (users:read). Ask once now, for the bot's own
    // user, so a missing scope stops moltbot here instead of every
    // message being ignored later.
    let me = slack
        .open_session(&token)
        .auth_test()
        .await
        .map_err(|e| format!("auth.test failed: {e}; check SLACK_BOT_TOKEN"))?;
    teams.of(me.user_id.as_ref()).await.map_err(|e| {
        format!(
            "moltbot cannot look up users' teams ({e}); add the users:read scope to the Slack app and reinstall it              (it tells Slack Connect guests from this workspace's members)"
        )
    })?;
    listener
        .listen_for(&app_token)
        .await
        .map_err(|e| format!("cannot open a Socket Mode connection: {e}"))?;
    listener.start().await;
    tracing::info!(api = %proto::redact::url(&cfg.slack_api_url), "moltbot listening in Socket Mode");
    let access = cfg.access.clone();
    let surface = SlackSurface {
        markup: SlackMarkup {
            prefix: format!("{namespace}/"),
        },
        cfg,
        slack,
        token,
    };
    let engine = Arc::new(Engine::new(surface, gateway, access, namespace));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            i = rx.recv() => match i {
                Some(i) => admit(&engine, &teams, &team, i).await,
                None => break,
            },
            () = &mut shutdown => break,
        }
    }
    listener.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_senders_own_team_decides() {
        let cases = [
            // (outer team_id, user_team, decision)
            ("T1", Some("T1"), Sender::Ours),
            // Slack Connect: our team_id, a guest's own team.
            ("T1", Some("T2"), Sender::Other("T2".into())),
            // Another installation's event.
            ("T2", Some("T1"), Sender::Other("T2".into())),
            ("T2", None, Sender::Other("T2".into())),
            // The event does not say: ask users.info.
            ("T1", None, Sender::Ask),
        ];
        for (outer, user_team, want) in cases {
            assert_eq!(
                sender("T1", outer, user_team),
                want,
                "{outer} {user_team:?}"
            );
        }
    }

    #[test]
    fn slack_markup_becomes_plain_text() {
        assert_eq!(
            plain_text("<@U123|bob> run <http://x.y|x.y> &lt;in&gt;"),
            "run x.y <in>"
        );
        assert_eq!(
            plain_text("<@U1> run `make -j4 &amp;&amp; make test` on n1"),
            "run `make -j4 && make test` on n1"
        );
        assert_eq!(plain_text("a <unterminated"), "a <unterminated");
    }

    #[test]
    fn other_parties_text_cannot_mention_link_or_format_control_sequences() {
        // Slack's control sequences all start with `<`; `&` is escaped
        // first so that a literal `&lt;` stays literal.
        let m = SlackMarkup {
            prefix: "slack:T1/".into(),
        };
        let cases = [
            ("<!channel>", "&lt;!channel&gt;"),
            ("<!here|here>", "&lt;!here|here&gt;"),
            ("<!everyone>", "&lt;!everyone&gt;"),
            ("<@U0BOSS>", "&lt;@U0BOSS&gt;"),
            ("<#C0LAB>", "&lt;#C0LAB&gt;"),
            ("<!subteam^S0OPS>", "&lt;!subteam^S0OPS&gt;"),
            (
                "<http://evil.example|docs.python.org>",
                "&lt;http://evil.example|docs.python.org&gt;",
            ),
            ("<!date^1^{date}|x>", "&lt;!date^1^{date}|x&gt;"),
            ("&lt;!channel&gt;", "&amp;lt;!channel&amp;gt;"),
            ("a && b > c", "a &amp;&amp; b &gt; c"),
        ];
        for (input, want) in cases {
            let got = m.escape(input);
            assert_eq!(got, want, "{input:?}");
            assert!(!got.contains('<') && !got.contains('>'), "{got}");
        }
        // A foreign identity is text, not a mention.
        assert_eq!(
            m.mention("slack:T2/<!channel>"),
            "slack:T2/&lt;!channel&gt;"
        );
        assert_eq!(m.mention("slack:T1/U1>x"), "slack:T1/U1&gt;x");
    }

    #[test]
    fn times_are_shown_in_each_readers_time_zone() {
        let m = SlackMarkup {
            prefix: "slack:T1/".into(),
        };
        // 2026-12-05 14:03:20 UTC, asked the next day.
        assert_eq!(
            m.time(1_796_479_400, 1_796_479_400 + 86_400),
            "<!date^1796479400^{date_short_pretty} {time}|2026-12-05 14:03 UTC>"
        );
        assert_eq!(
            chat::render::when(1_796_479_400, 1_796_479_450, &m),
            "50s ago (<!date^1796479400^{date_short_pretty} {time}|14:03 UTC>)"
        );
    }

    #[test]
    fn mentions_and_escapes() {
        let m = SlackMarkup {
            prefix: "slack:T1/".into(),
        };
        assert_eq!(m.mention("slack:T1/U9"), "<@U9>");
        assert_eq!(m.mention("slack:T2/U9"), "slack:T2/U9");
        assert_eq!(m.mention("alice"), "alice");
        assert_eq!(m.escape("<a&b>"), "&lt;a&amp;b&gt;");
        assert!(upload_url_ok(
            "https://files.slack.com/upload/v1/x",
            "https://slack.com/api"
        ));
        assert!(upload_url_ok(
            "http://127.0.0.1:9/upload",
            "http://127.0.0.1:9/api"
        ));
        assert!(!upload_url_ok(
            "http://evil.example/upload",
            "http://127.0.0.1:9/api"
        ));
        assert!(!upload_url_ok(
            "http://127.0.0.1:9/upload",
            "https://slack.com/api"
        ));
    }
}
