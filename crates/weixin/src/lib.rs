//! The personal WeChat (微信) front end, through Tencent's iLink bot API
//! (the "ClawBot" plugin's): `openclaw weixin login` scans a QR code and
//! saves the bot's token ([`login`]); `openclaw weixin run` long-polls
//! for messages and answers them through the chat core (`chatops`), with
//! the grammar, access, limits, approvals and exactly-once handling of
//! the Slack and WeCom bots. Only [`ilink`] knows iLink's JSON.
//!
//! What WeChat cannot do shapes the messages: no edits, no buttons, and a
//! bot may answer only a message someone sent it (each reply carries that
//! message's `context_token`, good for a day and a few replies). So a job
//! gets few messages: the first state it reaches (accepted, naming the job
//! id, or held for approval), at most one progress message for a long job
//! ([`config::Config::progress_after`]), and the final result with the
//! tail of its output and the `openclaw job logs N` hint. Approvals are by
//! text (`approve 17`, `deny 17 because …`), checked at the gateway by
//! the chat identity `weixin:<bot>/<user>`.
//!
//! Exactly once: each message id is remembered, in memory and in
//! [`STATE_FILE`] with the long poll's cursor and each user's latest
//! context token (written atomically, after the messages were handed to
//! the engine), and a job's gateway
//! idempotency key is `weixin:<message_id>`, so neither a redelivery nor a
//! restart runs a job twice. Network errors back off from 1 s doubling to
//! 30 s; errcode -14 (the session expired) stops the bot with an error
//! naming `openclaw weixin login`.

pub mod config;
pub mod ilink;
pub mod login;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat::render::Markup;
use chatops::{Change, Engine, Origin, Surface, lock};
use client::Gateway;
use mesh::Home;
use proto::JobInfo;
use serde::{Deserialize, Serialize};

pub use config::Config;
use ilink::{ApiError, Ilink, Inbound};

/// The bot's config file in its home.
pub const CONFIG_FILE: &str = "weixin.toml";
/// The long poll's cursor and the message ids seen lately, in the home.
pub const STATE_FILE: &str = "weixin-state.json";
/// Longest message the bot writes (WeChat's plugin cuts text at 4,000).
const MAX_LEN: usize = 4000;
/// Message ids remembered across restarts.
const SEEN_KEPT: usize = 5000;
/// Users whose latest context token is kept (to reach approvers).
const CONTEXTS_KEPT: usize = 10_000;
/// How long a context token is taken to last.
const CONTEXT_LASTS: Duration = Duration::from_secs(23 * 3600);
/// The long poll's hold until the server says otherwise.
const HOLD: Duration = Duration::from_secs(35);
/// The first and the longest wait after a failed poll.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What ends the bot when iLink says the session expired.
pub const EXPIRED: &str = "session expired: run `openclaw weixin login` (iLink answered errcode -14), then start the bot again";

/// WeChat shows plain text: nothing to escape but control characters;
/// users are named by their id.
struct PlainText {
    /// `weixin:BOT/`.
    prefix: String,
}

impl Markup for PlainText {
    fn escape(&self, s: &str) -> String {
        s.chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    ' '
                } else {
                    c
                }
            })
            .collect()
    }

    fn mention(&self, identity: &str) -> String {
        self.escape(identity.strip_prefix(&self.prefix).unwrap_or(identity))
    }
}

/// Each user's latest context token and when it came (unix seconds):
/// what a message to them must carry. Kept across restarts in
/// [`STATE_FILE`], as Tencent's plugin keeps them, so an approver who
/// wrote before a restart can still be asked.
#[derive(Default)]
struct Contexts(Mutex<BTreeMap<String, (String, u64)>>);

impl Contexts {
    fn remember(&self, user: &str, token: &str, now: u64) {
        if token.is_empty() {
            return;
        }
        let mut m = lock(&self.0);
        if m.len() >= CONTEXTS_KEPT && !m.contains_key(user) {
            let oldest = m
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        m.insert(user.to_string(), (token.to_string(), now));
    }

    /// `user`'s token, unless it is older than [`CONTEXT_LASTS`].
    fn get(&self, user: &str, now: u64) -> Option<String> {
        lock(&self.0)
            .get(user)
            .filter(|(_, t)| now.saturating_sub(*t) < CONTEXT_LASTS.as_secs())
            .map(|(c, _)| c.clone())
    }

    fn snapshot(&self) -> BTreeMap<String, (String, u64)> {
        lock(&self.0).clone()
    }

    fn restore(&self, saved: BTreeMap<String, (String, u64)>) {
        for (user, (token, at)) in saved {
            self.remember(&user, &token, at);
        }
    }
}

/// The bot's side of the chat engine: text messages through iLink.
pub struct WeixinSurface {
    api: Arc<Ilink>,
    markup: PlainText,
    contexts: Arc<Contexts>,
    approvals: config::ApprovalsIn,
    progress_after: Duration,
}

/// A job's messages so far (WeChat cannot edit one).
pub struct Live {
    to: String,
    context: String,
    opened: Instant,
    accepted: bool,
    progressed: bool,
}

impl WeixinSurface {
    async fn send(&self, to: &str, context: &str, text: &str) {
        match self.api.send_text(to, context, text).await {
            Ok(()) => {}
            Err(ApiError::Expired) => tracing::error!("{EXPIRED}"),
            Err(e) => tracing::warn!(error = %e, user = %to, "sendmessage failed"),
        }
    }
}

impl Surface for WeixinSurface {
    type Live = Live;

    fn markup(&self) -> &(dyn Markup + Sync) {
        &self.markup
    }

    fn max_len(&self) -> usize {
        MAX_LEN
    }

    async fn reply(&self, to: &Origin, text: &str) {
        self.send(&to.user, &to.reply, text).await;
    }

    async fn notice(&self, to: &Origin, text: &str) {
        self.send(&to.user, &to.reply, text).await;
    }

    async fn open_live(&self, to: &Origin, _text: &str) -> Option<Live> {
        // Nothing yet: the first state names the job.
        Some(Live {
            to: to.user.clone(),
            context: to.reply.clone(),
            opened: Instant::now(),
            accepted: false,
            progressed: false,
        })
    }

    async fn edit_live(&self, live: &mut Live, text: &str, change: Change) {
        let send = match change {
            Change::Final => true,
            _ if !live.accepted => {
                live.accepted = true;
                true
            }
            _ if !live.progressed && live.opened.elapsed() >= self.progress_after => {
                live.progressed = true;
                true
            }
            _ => false,
        };
        if send {
            self.send(&live.to, &live.context, text).await;
        }
    }

    async fn ask_approval(&self, to: &Origin, j: &JobInfo) {
        let m = &self.markup;
        let names: Vec<String> = j.approvers.iter().map(|a| m.mention(a)).collect();
        let how = format!("Answer `approve {0}` or `deny {0} because …`.", j.id);
        let mut reached = 0;
        if self.approvals == config::ApprovalsIn::Dm {
            let q = format!("{}\n{how}", chat::render::approval_question(j, m));
            for user in j
                .approvers
                .iter()
                .filter_map(|a| a.strip_prefix(&m.prefix))
                .filter(|u| !u.contains(['*', '?']))
            {
                match self.contexts.get(user, chatops::unix_now()) {
                    Some(ctx) => {
                        self.send(user, &ctx, &q).await;
                        reached += 1;
                    }
                    None => {
                        tracing::info!(job = j.id, approver = %user, "an approver has not written to the bot lately; not asked")
                    }
                }
            }
        }
        if reached == 0 {
            let text = format!(
                "Job {} waits for approval by {}. I can message only people who wrote to me lately: ask one of them to send me `approve {}`, or to run `openclaw job approve {}`.",
                j.id,
                names.join(", "),
                j.id,
                j.id
            );
            self.send(&to.user, &to.reply, &text).await;
        }
    }

    async fn attach_log(&self, _to: &Origin, job: &JobInfo, _log: &[u8]) -> Result<(), String> {
        // The final message already carries the output's tail and the
        // `openclaw job logs N` hint; a snippet would spend one more of the
        // few replies a context token allows, for the same lines.
        tracing::debug!(
            job = job.id,
            "no log file on WeChat: the final message points at `openclaw job logs`"
        );
        Ok(())
    }

    async fn in_group(&self, _user: &str) -> bool {
        false
    }
}

/// The long poll's place and the message ids seen lately.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    cursor: String,
    seen: Vec<String>,
    /// Each user's latest context token and when it came.
    #[serde(default)]
    contexts: BTreeMap<String, (String, u64)>,
}

#[derive(Debug, Default)]
struct Progress {
    cursor: String,
    order: VecDeque<String>,
    seen: HashSet<String>,
    /// The context tokens read from the file, for [`Contexts::restore`].
    contexts: BTreeMap<String, (String, u64)>,
}

impl Progress {
    fn load(home: &Home) -> Result<Progress, String> {
        let path = home.path(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Progress::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let s: Saved = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: {e}; remove it to start afresh (iLink may then deliver recent messages again; \
                 each job still runs once, by its idempotency key)",
                path.display()
            )
        })?;
        let mut p = Progress {
            cursor: s.cursor,
            contexts: s.contexts,
            ..Default::default()
        };
        for id in s.seen {
            p.first(&id);
        }
        Ok(p)
    }

    /// Whether `id` is new; remembers it.
    fn first(&mut self, id: &str) -> bool {
        if !self.seen.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        while self.order.len() > SEEN_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    fn to_json(&self, contexts: &Contexts) -> Vec<u8> {
        let s = Saved {
            cursor: self.cursor.clone(),
            seen: self.order.iter().cloned().collect(),
            contexts: contexts.snapshot(),
        };
        serde_json::to_vec(&s).unwrap_or_default()
    }
}

/// Writes the state off the async threads; a failure is logged (the
/// gateway's idempotency keys still keep jobs to one per message).
async fn persist(home: &Home, p: &Progress, contexts: &Contexts) {
    let (home, bytes) = (home.clone(), p.to_json(contexts));
    match tokio::task::spawn_blocking(move || home.write_private(STATE_FILE, &bytes)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the long poll's cursor"),
        Err(e) => tracing::warn!(error = %e, "cannot save the long poll's cursor"),
    }
}

/// Hands one message to the engine.
/// Whether the bot serves the sender of `m` (the chat core answers the
/// others with a refusal and nothing more). Pure.
fn admitted(access: &chat::access::Access, m: &Inbound) -> bool {
    let chat = m.group.as_deref().unwrap_or(&m.from);
    access
        .admits(&m.from, chat, m.group.is_none(), false)
        .is_ok()
}

fn dispatch(engine: &Arc<Engine<WeixinSurface>>, m: Inbound) {
    tracing::info!(message = %m.id, user = %m.from, group = ?m.group, "message");
    let Some(text) = m.text else {
        tracing::debug!(message = %m.id, "ignoring a message without text");
        return;
    };
    let o = Origin {
        chat: m.group.clone().unwrap_or_else(|| m.from.clone()),
        dm: m.group.is_none(),
        user: m.from,
        // Also the job's idempotency key at the gateway.
        event: format!("weixin:{}", m.id),
        reply: m.context,
    };
    engine.on_message(o, text.trim().to_string());
}

/// Runs the WeChat bot until `shutdown` resolves, or until iLink says the
/// session expired (an error naming `openclaw weixin login`). `home`
/// holds a bot credential of namespace `weixin:<bot>` (`openclaw client
/// create weixin --role bot --namespace weixin:BOT --out HOME`), the
/// login and weixin.toml.
pub async fn run(
    home: &Home,
    cfg: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let login = login::load(home)?;
    let want = login::namespace_of(&login.bot_id)?;
    let gateway = Gateway::new(home.clone());
    let namespace = chatops::bot_namespace(&gateway, "weixin", "BOT").await?;
    if namespace != want {
        return Err(format!(
            "this home's WeChat login is bot {} (namespace {want}), but its gateway credential speaks for {namespace}; \
             create a credential for {want} (openclaw client create NAME --role bot --namespace {want} --out DIR), \
             or log in with the bot of {namespace}",
            login.bot_id
        ));
    }
    let base = cfg
        .api_url
        .clone()
        .or(login.api_url.clone())
        .unwrap_or_else(|| ilink::DEFAULT_API_URL.to_string());
    config::check_api_url(&base)?;
    let api = Arc::new(Ilink::new(&base, Some(login.token.clone()))?);
    let contexts = Arc::new(Contexts::default());
    let surface = WeixinSurface {
        api: api.clone(),
        markup: PlainText {
            prefix: format!("{namespace}/"),
        },
        contexts: contexts.clone(),
        approvals: cfg.approvals,
        progress_after: cfg.progress_after,
    };
    let access = cfg.access.clone();
    let engine = Arc::new(Engine::new(surface, gateway, cfg.access.clone(), namespace));
    let mut state = Progress::load(home)?;
    contexts.restore(std::mem::take(&mut state.contexts));
    tracing::info!(url = %proto::redact::url(api.base()), bot = %login.bot_id, resumed = !state.cursor.is_empty(), "WeChat bot polling");
    tokio::pin!(shutdown);
    let mut hold = HOLD;
    let mut backoff = BACKOFF_FIRST;
    loop {
        let got = tokio::select! {
            r = api.updates(&state.cursor, hold) => r,
            () = &mut shutdown => return Ok(()),
        };
        let err = match got {
            Ok(u) => {
                backoff = BACKOFF_FIRST;
                if let Some(h) = u.hold {
                    hold = h;
                }
                let mut fresh = Vec::new();
                for m in u.msgs {
                    if state.first(&m.id) {
                        fresh.push(m);
                    } else {
                        tracing::info!(message = %m.id, "ignoring a redelivered message");
                    }
                }
                let moved = u.cursor.as_ref().is_some_and(|c| *c != state.cursor);
                if let Some(c) = u.cursor {
                    state.cursor = c;
                }
                let any = !fresh.is_empty();
                for m in fresh {
                    // Only someone the bot serves is written to later
                    // (results, approvals): a stranger's flood of
                    // messages must not evict their context tokens.
                    if admitted(&access, &m) {
                        contexts.remember(&m.from, &m.context, chatops::unix_now());
                    }
                    dispatch(&engine, m);
                }
                if moved || any {
                    persist(home, &state, &contexts).await;
                }
                continue;
            }
            // A long poll that ran out is as normal as an empty answer.
            Err(ApiError::Timeout) => continue,
            Err(ApiError::Expired) => return Err(EXPIRED.to_string()),
            Err(e) => e,
        };
        tracing::warn!(error = %err, retry_in = ?backoff, "cannot poll iLink; retrying");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut shutdown => return Ok(()),
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_strangers_do_not_evict_the_context_of_listed_users() {
        let text = Config::template().replace(
            "allowed_users = []",
            "allowed_users = [\"owner@im.wechat\"]",
        );
        let cfg = Config::parse(&text, &|_| None).unwrap();
        let msg = |from: &str| Inbound {
            id: "1".into(),
            from: from.into(),
            group: None,
            text: Some("hi".into()),
            context: format!("ctx-{from}"),
        };
        assert!(admitted(&cfg.access, &msg("owner@im.wechat")));
        assert!(!admitted(&cfg.access, &msg("stranger-1@im.wechat")));
        // With everyone allowed, everyone is served, and so remembered.
        let open = Config::parse("allow_everyone = true\n", &|_| None).unwrap();
        assert!(admitted(&open.access, &msg("stranger-1@im.wechat")));
    }

    #[test]
    fn plain_text_names_users_and_drops_controls() {
        let m = PlainText {
            prefix: "weixin:b1-im-bot/".into(),
        };
        assert_eq!(m.escape("a\x1b[2Jb\nc\td"), "a [2Jb\nc\td");
        assert_eq!(m.mention("weixin:b1-im-bot/u1@im.wechat"), "u1@im.wechat");
        assert_eq!(m.mention("slack:T1/U1"), "slack:T1/U1");
    }

    #[test]
    fn seen_ids_and_contexts_survive_a_restart_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("bot"));
        let mut p = Progress::load(&home).unwrap();
        assert!(p.first("1") && !p.first("1"));
        p.cursor = "c1".into();
        let c = Contexts::default();
        c.remember("boss", "ctx-b", 1_000);
        home.write_private(STATE_FILE, &p.to_json(&c)).unwrap();
        let mut q = Progress::load(&home).unwrap();
        assert_eq!(q.cursor, "c1");
        assert!(!q.first("1"), "seen before the restart");
        let back = Contexts::default();
        back.restore(std::mem::take(&mut q.contexts));
        assert_eq!(back.get("boss", 1_010).as_deref(), Some("ctx-b"));
        for i in 0..SEEN_KEPT + 10 {
            q.first(&format!("n{i}"));
        }
        assert_eq!(q.order.len(), SEEN_KEPT);
        assert_eq!(q.seen.len(), SEEN_KEPT);
        assert!(q.first("1"), "the oldest id was forgotten");
        // A file of the first version, without context tokens, still loads.
        std::fs::write(home.path(STATE_FILE), r#"{"cursor":"c2","seen":["5"]}"#).unwrap();
        assert_eq!(Progress::load(&home).unwrap().cursor, "c2");
        std::fs::write(home.path(STATE_FILE), "{").unwrap();
        assert!(Progress::load(&home).unwrap_err().contains("remove it"));
    }

    #[test]
    fn contexts_expire_and_stay_bounded() {
        let c = Contexts::default();
        c.remember("u1", "", 10);
        assert_eq!(c.get("u1", 10), None);
        c.remember("u1", "ctx1", 10);
        c.remember("u1", "ctx2", 20);
        assert_eq!(c.get("u1", 20).as_deref(), Some("ctx2"));
        let day = CONTEXT_LASTS.as_secs();
        assert_eq!(c.get("u1", 20 + day - 1).as_deref(), Some("ctx2"));
        assert_eq!(c.get("u1", 20 + day), None, "too old to carry");
        for i in 0..CONTEXTS_KEPT + 5 {
            c.remember(&format!("v{i}"), "x", 30 + i as u64);
        }
        assert_eq!(lock(&c.0).len(), CONTEXTS_KEPT);
        assert_eq!(c.get("u1", 40), None, "the oldest user was dropped");
    }
}
