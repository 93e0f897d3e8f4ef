//! moltbot: Slack in Socket Mode on one side, the gateway (as a `bot`
//! certificate) on the other. It never talks to nodes. This is the only
//! crate that knows Slack's JSON; the grammar is `crates/chat`.
//!
//! Flow: slack-morphism's Socket Mode listener hands `app_mention` and DM
//! events and button clicks to a bounded queue; the loop drops other
//! teams' events, turns Slack markup into plain text and hands each to the
//! shared chat engine (`chatops`), which answers through [`SlackSurface`]:
//! a job gets one message in the request's thread, edited in place (at
//! most once a second, honouring HTTP 429 `Retry-After`) from queued to
//! its result, and a long log is uploaded as a file
//! (`files.getUploadURLExternal` + `files.completeUploadExternal`).

pub mod config;

use std::future::Future;
use std::sync::Arc;

use chat::render::Markup;
use chatops::{Change, Decision, Engine, Origin, Surface};
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
        let name = format!("job-{}.log", job.id);
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
            "text/plain".into(),
        );
        self.session()
            .files_upload_via_url(&req)
            .await
            .map_err(|e| format!("uploading the log: {e}"))?;
        let file = SlackApiFilesComplete::new(got.file_id).with_title(name);
        let req = SlackApiFilesCompleteUploadExternalRequest::new(vec![file])
            .with_channel_id(to.chat.as_str().into())
            .with_thread_ts(to.reply.as_str().into())
            .with_initial_comment(format!(
                "Full log of job {} ({} bytes; also `openclaw job logs {}`)",
                job.id,
                log.len(),
                job.id
            ));
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

/// Hands one Slack event to the engine.
fn dispatch(engine: &Arc<Engine<SlackSurface>>, team: &str, i: Incoming) {
    let (from, id) = match &i {
        Incoming::Message { team, event_id, .. } => (team, event_id),
        Incoming::Action { team, dedup, .. } => (team, dedup),
    };
    if from != team {
        // Slack Connect guests and other workspaces are not this lab's users.
        tracing::info!(team = %from, event = %id, "ignoring an event from another Slack team");
        return;
    }
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
                dm: false,
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
                Some(i) => dispatch(&engine, &team, i),
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
