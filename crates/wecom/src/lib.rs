//! The WeCom (企业微信) front end: an intelligent robot in long-connection
//! mode, the same model as Slack's Socket Mode (the bot dials out; no
//! public URL). This crate is the only one that knows WeCom's JSON
//! ([`frames`]); the chat core (`chatops`) does everything else, exactly as
//! for Slack.
//!
//! Flow: [`run`] connects, subscribes with the bot id and secret, and reads
//! frames; messages and card clicks go to the engine, acks wake the frame
//! that waits for them. A job's live message is a WeCom stream answering
//! the request's callback, replaced in place at most once a second; after
//! `stream_limit` (or WeCom's errcode 846608) the stream is finished and
//! each later state change is a new Markdown message. WeCom has no
//! threads, so every message names its job.
//!
//! Connection rules: a ping every `heartbeat`, two unanswered pings mean
//! the connection is dead; reconnects back off from 1 s doubling to 30 s;
//! a `disconnected_event` (another connection of this bot took over) ends
//! the bot with an error instead of fighting over the connection.

pub mod config;
pub mod frames;
pub mod markup;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat::Seen;
use chat::render::Markup;
use chatops::{Change, Decision, Engine, Origin, Surface, lock};
use client::Gateway;
use futures_util::{SinkExt as _, StreamExt as _};
use mesh::Home;
use proto::JobInfo;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

pub use config::Config;

/// The bot's config file in its home.
pub const CONFIG_FILE: &str = "wecom.toml";
/// How long a frame waits for its ack.
const ACK_WAIT: Duration = Duration::from_secs(5);
/// Frames waiting to be written.
const OUTBOX: usize = 256;
/// Callbacks waiting for the engine.
const INBOX: usize = 1024;
/// Longest message content the bot writes (WeCom's limit is 20,480 bytes).
const MAX_LEN: usize = 20_000;

/// Why a frame got no success.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SendError {
    /// Not connected right now.
    Offline,
    /// No ack within [`ACK_WAIT`].
    NoAck,
    /// WeCom answered with an error.
    Refused(i64, String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Offline => f.write_str("not connected to WeCom"),
            SendError::NoAck => write!(f, "no acknowledgement within {}s", ACK_WAIT.as_secs()),
            SendError::Refused(c, m) => write!(f, "WeCom answered errcode {c}: {m}"),
        }
    }
}

/// The current connection, shared by the reader and every sender.
#[derive(Default)]
struct Link {
    out: Mutex<Option<mpsc::Sender<String>>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<(i64, String)>>>,
    next: AtomicU64,
}

impl Link {
    fn new_req_id(&self, what: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        format!("{what}_{t}_{n}")
    }

    /// Sends a frame and waits for its ack. Frames for one req_id go one
    /// at a time: each caller awaits its ack before sending the next.
    async fn send(&self, req_id: &str, frame: String) -> Result<(), SendError> {
        let Some(out) = lock(&self.out).clone() else {
            return Err(SendError::Offline);
        };
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(req_id.to_string(), tx);
        if out.send(frame).await.is_err() {
            lock(&self.waiting).remove(req_id);
            return Err(SendError::Offline);
        }
        let got = tokio::time::timeout(ACK_WAIT, rx).await;
        lock(&self.waiting).remove(req_id);
        match got {
            Ok(Ok((0, _))) => Ok(()),
            Ok(Ok((code, msg))) => Err(SendError::Refused(code, msg)),
            Ok(Err(_)) => Err(SendError::Offline),
            Err(_) => Err(SendError::NoAck),
        }
    }

    fn acked(&self, req_id: &str, errcode: i64, errmsg: String) {
        if let Some(tx) = lock(&self.waiting).remove(req_id) {
            let _ = tx.send((errcode, errmsg));
        }
    }
}

/// WeCom's Markdown: other parties' text made inert ([`markup::escape`]),
/// users named by userid (never a `<@userid>` mention).
struct WecomMarkup {
    /// `wecom:CORP/`.
    prefix: String,
}

impl Markup for WecomMarkup {
    fn escape(&self, s: &str) -> String {
        markup::escape(s)
    }

    fn mention(&self, identity: &str) -> String {
        markup::escape(identity.strip_prefix(&self.prefix).unwrap_or(identity))
    }
}

/// The bot's side of the chat engine: frames on the current link.
pub struct WecomSurface {
    link: Arc<Link>,
    markup: WecomMarkup,
    approvals: config::ApprovalsIn,
    stream_limit: Duration,
    /// Callback req_ids already answered (a second answer goes proactive).
    answered: Mutex<Seen>,
}

/// A job's live message: a stream on the request's callback, then
/// proactive messages.
pub struct Live {
    req_id: String,
    stream_id: String,
    chat: String,
    opened: Instant,
    /// The stream is finished; later changes go as new messages.
    ended: bool,
}

impl WecomSurface {
    async fn proactive(&self, chat: &str, text: &str) {
        let req_id = self.link.new_req_id("send");
        if let Err(e) = self
            .link
            .send(&req_id, frames::markdown(&req_id, chat, text))
            .await
        {
            tracing::warn!(error = %e, %chat, "aibot_send_msg failed");
        }
    }

    async fn card(&self, chat: &str, j: &JobInfo) {
        let req_id = self.link.new_req_id("card");
        // Unique per bot across restarts too: the req_id carries the time
        // in milliseconds and a counter (`card_<ms>_<n>`).
        let task_id = format!(
            "job{}_{}",
            j.id,
            req_id.strip_prefix("card_").unwrap_or(&req_id)
        );
        let q = chat::render::approval_question(j, &self.markup);
        let frame = frames::approval_card(&req_id, chat, &task_id, j.id, &q);
        if let Err(e) = self.link.send(&req_id, frame).await {
            tracing::warn!(error = %e, %chat, job = j.id, "cannot send an approval card");
        }
    }
}

impl Surface for WecomSurface {
    type Live = Live;

    fn markup(&self) -> &(dyn Markup + Sync) {
        &self.markup
    }

    fn max_len(&self) -> usize {
        MAX_LEN
    }

    async fn reply(&self, to: &Origin, text: &str) {
        let first = !lock(&self.answered).check(&to.reply, Instant::now());
        if first && !to.reply.contains('\t') {
            let sid = self.link.new_req_id("reply");
            match self
                .link
                .send(&to.reply, frames::stream(&to.reply, &sid, true, text))
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    tracing::info!(error = %e, "cannot answer the callback; sending a new message")
                }
            }
        }
        self.proactive(&to.chat, text).await;
    }

    async fn notice(&self, to: &Origin, text: &str) {
        // A click's origin carries "req_id\ttask_id": update that card.
        if let Some((req_id, task_id)) = to.reply.split_once('\t') {
            let job = task_id
                .strip_prefix("job")
                .and_then(|t| t.split('_').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let frame = frames::card_update(req_id, task_id, job, text);
            match self.link.send(req_id, frame).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "cannot update the card"),
            }
        }
        self.proactive(&to.chat, text).await;
    }

    async fn open_live(&self, to: &Origin, text: &str) -> Option<Live> {
        lock(&self.answered).check(&to.reply, Instant::now());
        let mut live = Live {
            req_id: to.reply.clone(),
            stream_id: self.link.new_req_id("job"),
            chat: to.chat.clone(),
            opened: Instant::now(),
            ended: false,
        };
        self.edit_live(&mut live, text, Change::State).await;
        Some(live)
    }

    async fn edit_live(&self, live: &mut Live, text: &str, change: Change) {
        if !live.ended {
            // Finish the stream before WeCom's limit, with what it shows now.
            let finish = change == Change::Final || live.opened.elapsed() >= self.stream_limit;
            let frame = frames::stream(&live.req_id, &live.stream_id, finish, text);
            match self.link.send(&live.req_id, frame).await {
                Ok(()) => {
                    live.ended = finish;
                    return;
                }
                Err(e @ SendError::Refused(..)) => {
                    // 846608 (expired) or any refusal: the stream is over.
                    tracing::info!(error = %e, stream = %live.stream_id, "the stream is over; continuing with new messages");
                    live.ended = true;
                }
                Err(e) => {
                    // No ack, or not connected: the next edit tries again
                    // (each carries the whole message).
                    tracing::warn!(error = %e, stream = %live.stream_id, "a stream update went unconfirmed");
                    if finish {
                        self.proactive(&live.chat, text).await;
                    }
                    return;
                }
            }
        } else if change == Change::Progress {
            return;
        }
        self.proactive(&live.chat, text).await;
    }

    async fn ask_approval(&self, to: &Origin, j: &JobInfo) {
        match self.approvals {
            config::ApprovalsIn::Card => self.card(&to.chat, j).await,
            config::ApprovalsIn::Dm => {
                for a in j
                    .approvers
                    .iter()
                    .filter_map(|a| a.strip_prefix(&self.markup.prefix))
                {
                    self.card(a, j).await;
                }
            }
        }
    }

    async fn attach_log(&self, _to: &Origin, _job: &JobInfo, _log: &[u8]) -> Result<(), String> {
        Err("the WeCom robot's long connection cannot upload files".into())
    }

    async fn in_group(&self, _user: &str) -> bool {
        false
    }
}

/// How a connection ended.
enum Ended {
    /// Reconnect.
    Lost(String),
    /// Another connection took over: stop.
    TakenOver,
    /// WeCom refused the bot's credentials: stop.
    Refused(String),
    /// Shutdown asked.
    Shutdown,
}

/// Runs the WeCom bot until `shutdown` resolves, or until WeCom refuses it
/// or another connection takes over (an error). `home` holds a bot
/// credential (`openclaw client create wecom --role bot --namespace
/// wecom:CORPID --out HOME`) and wecom.toml.
pub async fn run(
    home: &Home,
    cfg: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let gateway = Gateway::new(home.clone());
    let namespace = chatops::bot_namespace(&gateway, "wecom", "CORPID").await?;
    let link = Arc::new(Link::default());
    let surface = WecomSurface {
        link: link.clone(),
        markup: WecomMarkup {
            prefix: format!("{namespace}/"),
        },
        approvals: cfg.approvals,
        stream_limit: cfg.stream_limit,
        answered: Mutex::new(Seen::new(Duration::from_secs(3600), 20_000)),
    };
    let engine = Arc::new(Engine::new(surface, gateway, cfg.access.clone(), namespace));
    let (tx, mut rx) = mpsc::channel::<frames::Inbound>(INBOX);
    let e = engine.clone();
    let dispatcher = tokio::spawn(async move {
        while let Some(i) = rx.recv().await {
            dispatch(&e, i);
        }
    });
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_secs(1);
    let result = loop {
        let started = Instant::now();
        match session(&cfg, &link, &tx, &mut shutdown).await {
            Ended::Shutdown => break Ok(()),
            Ended::TakenOver => {
                break Err(
                    "another connection of this WeCom bot took over (disconnected_event); \
                           stop the other bot process, then start this one again"
                        .to_string(),
                );
            }
            Ended::Refused(why) => break Err(why),
            Ended::Lost(why) => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                tracing::warn!(%why, retry_in = ?backoff, "lost the WeCom connection; reconnecting");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    dispatcher.abort();
    result
}

/// Hands one callback to the engine.
fn dispatch(engine: &Arc<Engine<WecomSurface>>, i: frames::Inbound) {
    match i {
        frames::Inbound::Message { req_id, msg } => {
            tracing::info!(msgid = %msg.msgid, user = %msg.userid, chat = ?msg.chatid, %req_id, "message");
            let Some(text) = msg.text else {
                tracing::debug!(msgid = %msg.msgid, "ignoring a non-text message");
                return;
            };
            let o = Origin {
                chat: msg.chatid.clone().unwrap_or_else(|| msg.userid.clone()),
                user: msg.userid,
                dm: msg.single,
                // Also the job's idempotency key at the gateway.
                event: format!("wecom:{}", msg.msgid),
                reply: req_id,
            };
            engine.on_message(o, frames::strip_mention(&text));
        }
        frames::Inbound::Click { req_id, click } => {
            tracing::info!(msgid = %click.msgid, user = %click.userid, key = %click.key, %req_id, "card click");
            let Some((approve, id)) = frames::parse_key(&click.key) else {
                tracing::info!(key = %click.key, "ignoring a card click with an unknown key");
                return;
            };
            let dedup = if click.msgid.is_empty() {
                req_id.clone()
            } else {
                click.msgid.clone()
            };
            let o = Origin {
                chat: click.chatid.clone().unwrap_or_else(|| click.userid.clone()),
                dm: click.chatid.is_none(),
                user: click.userid,
                event: format!("wecom-click:{dedup}"),
                reply: format!("{req_id}\t{}", click.task_id),
            };
            let d = if approve {
                Decision::Approve
            } else {
                Decision::Deny
            };
            engine.on_click(o, d, id);
        }
        frames::Inbound::Ack { .. } | frames::Inbound::Disconnected | frames::Inbound::Other(_) => {
        }
    }
}

/// One connection, from dial to its end.
async fn session(
    cfg: &Config,
    link: &Link,
    inbox: &mpsc::Sender<frames::Inbound>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Ended {
    let ws = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(15), tokio_tungstenite::connect_async(cfg.ws_url.as_str())) => r,
        () = &mut *shutdown => return Ended::Shutdown,
    };
    let (mut sink, mut stream) = match ws {
        Ok(Ok((ws, _))) => ws.split(),
        Ok(Err(e)) => {
            return Ended::Lost(format!(
                "cannot connect to {}: {e}",
                proto::redact::url(&cfg.ws_url)
            ));
        }
        Err(_) => {
            return Ended::Lost(format!(
                "no answer from {} in 15s",
                proto::redact::url(&cfg.ws_url)
            ));
        }
    };
    // Subscribe first and wait for its ack before anything else.
    let sub_id = link.new_req_id("aibot_subscribe");
    if let Err(e) = sink
        .send(Message::text(frames::subscribe(
            &sub_id,
            &cfg.bot_id,
            cfg.secret.expose(),
        )))
        .await
    {
        return Ended::Lost(format!("cannot subscribe: {e}"));
    }
    let deadline = tokio::time::sleep(ACK_WAIT * 2);
    tokio::pin!(deadline);
    loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            () = &mut deadline => return Ended::Lost("no answer to aibot_subscribe".into()),
            () = &mut *shutdown => return Ended::Shutdown,
        };
        match frame {
            Some(Ok(Message::Text(t))) => match frames::parse(t.as_str()) {
                Ok(frames::Inbound::Ack {
                    req_id, errcode: 0, ..
                }) if req_id == sub_id => break,
                Ok(frames::Inbound::Ack {
                    req_id,
                    errcode,
                    errmsg,
                }) if req_id == sub_id => {
                    return Ended::Refused(format!(
                        "WeCom refused the subscription (errcode {errcode}: {errmsg}); check WECOM_BOT_ID and WECOM_BOT_SECRET \
                         in the robot's API settings (long-connection mode)"
                    ));
                }
                _ => {}
            },
            Some(Ok(_)) => {}
            Some(Err(e)) => return Ended::Lost(e.to_string()),
            None => return Ended::Lost("WeCom closed the connection while subscribing".into()),
        }
    }
    tracing::info!(url = %proto::redact::url(&cfg.ws_url), "WeCom bot subscribed");
    let (out_tx, mut out_rx) = mpsc::channel::<String>(OUTBOX);
    *lock(&link.out) = Some(out_tx);
    let mut beat = tokio::time::interval(cfg.heartbeat);
    beat.tick().await;
    let mut ping: Option<String> = None;
    let mut missed = 0u32;
    let ended = loop {
        tokio::select! {
            f = stream.next() => match f {
                Some(Ok(Message::Text(t))) => match frames::parse(t.as_str()) {
                    Ok(frames::Inbound::Ack { req_id, errcode, errmsg }) => {
                        if ping.as_deref() == Some(req_id.as_str()) {
                            ping = None;
                            missed = 0;
                        } else {
                            link.acked(&req_id, errcode, errmsg);
                        }
                    }
                    Ok(frames::Inbound::Disconnected) => break Ended::TakenOver,
                    Ok(frames::Inbound::Other(what)) => tracing::debug!(%what, "ignoring a WeCom frame"),
                    Ok(i) => {
                        if inbox.try_send(i).is_err() {
                            tracing::warn!("the WeCom bot is behind: dropping a callback (inbox of {INBOX} full)");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed WeCom frame"),
                },
                Some(Ok(Message::Close(_))) | None => break Ended::Lost("WeCom closed the connection".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Ended::Lost(e.to_string()),
            },
            f = out_rx.recv() => match f {
                Some(f) => {
                    if let Err(e) = sink.send(Message::text(f)).await {
                        break Ended::Lost(e.to_string());
                    }
                }
                None => break Ended::Lost("writer closed".into()),
            },
            _ = beat.tick() => {
                if ping.is_some() {
                    missed += 1;
                    if missed >= 2 {
                        break Ended::Lost("two pings went unanswered".into());
                    }
                }
                let id = link.new_req_id("ping");
                if let Err(e) = sink.send(Message::text(frames::ping(&id))).await {
                    break Ended::Lost(e.to_string());
                }
                ping = Some(id);
            }
            () = &mut *shutdown => break Ended::Shutdown,
        }
    };
    *lock(&link.out) = None;
    // Frames still waiting for an ack on this connection never get one.
    lock(&link.waiting).clear();
    let _ = sink.close().await;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_surface_escapes_text_and_names() {
        let m = WecomMarkup {
            prefix: "wecom:ww1/".into(),
        };
        assert_eq!(m.escape("[x](http://e) <@all>"), "［x］(http://e) ＜@all＞");
        assert_eq!(m.mention("wecom:ww1/zhangsan"), "zhangsan");
        assert_eq!(m.mention("slack:T1/<@all>"), "slack:T1/＜@all＞");
    }
}
