//! A local Slack: the Web API over HTTP and Socket Mode over WebSocket, on
//! 127.0.0.1, speaking Slack's wire formats, for driving the real
//! slack-morphism client in moltbot. It records every Web API call, can
//! deliver `app_mention` events, direct messages and button clicks, and can
//! answer a call with HTTP 429 and `Retry-After`.
//!
//! Teams as Slack sends them: an event's outer `team_id` is the workspace
//! the app is installed in ([`TEAM`]), also in a Slack Connect channel
//! shared with another organisation; the sender's own team is the event's
//! `user_team` (and `source_team`), a click's `user.team_id`, and
//! `users.info`'s `team_id`. Users are of [`TEAM`] unless
//! [`SlackEmulator::set_user_team`] says otherwise.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// The emulated workspace's team id.
pub const TEAM: &str = "T0LAB";

/// One Web API call as received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method, e.g. `chat.update`.
    pub method: String,
    /// The `Authorization` header's token.
    pub token: String,
    /// The JSON (or form) body.
    pub body: Value,
    /// When it arrived.
    pub at: std::time::Instant,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    next_ts: u64,
    /// Methods to refuse once with 429 and this Retry-After.
    rate_limit: VecDeque<(String, u64)>,
    /// Envelopes acknowledged by the client.
    acked: Vec<String>,
    /// Senders to connected Socket Mode clients.
    sockets: Vec<mpsc::UnboundedSender<String>>,
    /// User groups and their members.
    groups: std::collections::HashMap<String, Vec<String>>,
    /// Bytes uploaded to each file id's upload URL.
    uploads: std::collections::HashMap<String, Vec<u8>>,
    /// Whether `files.getUploadURLExternal` answers `missing_scope`.
    refuse_uploads: bool,
    /// The Web API's address, for upload URLs.
    api_addr: String,
    /// Users of teams other than [`TEAM`] (Slack Connect guests).
    user_teams: std::collections::HashMap<String, String>,
    /// Whether `users.info` answers `missing_scope` (no `users:read`).
    refuse_users_info: bool,
}

impl State {
    /// The team `user` belongs to.
    fn team_of(&self, user: &str) -> String {
        self.user_teams
            .get(user)
            .cloned()
            .unwrap_or_else(|| TEAM.to_string())
    }
}

/// A file shared with `files.completeUploadExternal`.
#[derive(Debug, Clone)]
pub struct SharedFile {
    /// Its title.
    pub title: String,
    /// The channel it was shared to.
    pub channel: String,
    /// The thread it was shared in.
    pub thread_ts: String,
    /// Its bytes, as uploaded.
    pub content: Vec<u8>,
}

/// The emulator; stops when dropped.
pub struct SlackEmulator {
    /// Base Web API URL, e.g. `http://127.0.0.1:PORT/api`.
    pub api_url: String,
    state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

fn parse_body(ct: &str, body: &[u8]) -> Value {
    if ct.contains("json") {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    } else {
        let text = String::from_utf8_lossy(body);
        let map: serde_json::Map<String, Value> = text
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), Value::String(v.replace('+', " "))))
            .collect();
        Value::Object(map)
    }
}

impl SlackEmulator {
    /// Starts the emulator.
    pub fn start() -> SlackEmulator {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(State {
            next_ts: 1,
            ..Default::default()
        }));
        let (api, ws) = rt.block_on(async {
            (
                tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
                tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            )
        });
        let api_addr = api.local_addr().unwrap();
        state.lock().unwrap().api_addr = api_addr.to_string();
        let ws_url = format!("ws://{}/link", ws.local_addr().unwrap());
        let st = state.clone();
        rt.spawn(async move {
            while let Ok((sock, _)) = api.accept().await {
                tokio::spawn(serve_api(sock, st.clone(), ws_url.clone()));
            }
        });
        let st = state.clone();
        rt.spawn(async move {
            while let Ok((sock, _)) = ws.accept().await {
                tokio::spawn(serve_socket(sock, st.clone()));
            }
        });
        SlackEmulator {
            api_url: format!("http://{api_addr}/api"),
            state,
            _rt: rt,
        }
    }

    /// Every Web API call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Calls of one method.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Answers the next call of `method` with 429 and `Retry-After: secs`.
    pub fn rate_limit_next(&self, method: &str, secs: u64) {
        self.state
            .lock()
            .unwrap()
            .rate_limit
            .push_back((method.to_string(), secs));
    }

    /// Defines a user group.
    pub fn set_group(&self, id: &str, users: &[&str]) {
        self.state.lock().unwrap().groups.insert(
            id.to_string(),
            users.iter().map(|u| u.to_string()).collect(),
        );
    }

    /// Makes `user` a user of `team` (a Slack Connect guest when it is not
    /// [`TEAM`]): their events carry it as `user_team`, and `users.info`
    /// says so.
    pub fn set_user_team(&self, user: &str, team: &str) {
        self.state
            .lock()
            .unwrap()
            .user_teams
            .insert(user.to_string(), team.to_string());
    }

    /// Makes `users.info` fail as for an app without `users:read`.
    pub fn refuse_users_info(&self) {
        self.state.lock().unwrap().refuse_users_info = true;
    }

    /// Makes file uploads fail as for an app without `files:write`.
    pub fn refuse_uploads(&self) {
        self.state.lock().unwrap().refuse_uploads = true;
    }

    /// Files shared so far: uploaded, then completed into a channel.
    pub fn files(&self) -> Vec<SharedFile> {
        let guard = self.state.lock().unwrap();
        let st = &*guard;
        st.calls
            .iter()
            .filter(|c| c.method == "files.completeUploadExternal")
            .flat_map(|c| {
                let files = c.body["files"].as_array().cloned().unwrap_or_default();
                files.into_iter().map(move |f| SharedFile {
                    title: f["title"].as_str().unwrap_or_default().to_string(),
                    channel: c.body["channel_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    thread_ts: c.body["thread_ts"].as_str().unwrap_or_default().to_string(),
                    content: st
                        .uploads
                        .get(f["id"].as_str().unwrap_or_default())
                        .cloned()
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Drops every Socket Mode connection, as Slack does now and then.
    pub fn drop_sockets(&self) {
        self.state.lock().unwrap().sockets.clear();
    }

    /// Whether a Socket Mode client is connected.
    pub fn connected(&self) -> bool {
        !self.state.lock().unwrap().sockets.is_empty()
    }

    fn deliver(&self, envelope: Value) -> String {
        let id = envelope["envelope_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let text = envelope.to_string();
        let mut st = self.state.lock().unwrap();
        st.sockets.retain(|s| s.send(text.clone()).is_ok());
        id
    }

    /// Whether an envelope was acknowledged.
    pub fn acked(&self, envelope_id: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .acked
            .iter()
            .any(|a| a == envelope_id)
    }

    /// Delivers an `app_mention` from `user` in `channel`; returns the message ts.
    pub fn mention(&self, user: &str, channel: &str, text: &str) -> String {
        self.mention_in_team(TEAM, user, channel, text)
    }

    /// An `app_mention` delivered through another installation of the
    /// app: outer `team_id` and the sender's team are both `team`.
    pub fn mention_in_team(&self, team: &str, user: &str, channel: &str, text: &str) -> String {
        let (ts, mut env) = self.mention_envelope(team, user, channel, text);
        env["payload"]["event"]["user_team"] = json!(team);
        env["payload"]["event"]["source_team"] = json!(team);
        self.deliver(env);
        ts
    }

    /// An `app_mention` in a channel of ours shared by Slack Connect, by
    /// `user` of another organisation's team `user_team`: as Slack sends
    /// it, the outer `team_id` is ours and `user_team` is theirs.
    pub fn mention_from_team(
        &self,
        user_team: &str,
        user: &str,
        channel: &str,
        text: &str,
    ) -> String {
        self.set_user_team(user, user_team);
        self.mention(user, channel, text)
    }

    /// An `app_mention` envelope, not yet delivered: the message ts and
    /// the envelope, for [`SlackEmulator::redeliver`].
    pub fn mention_envelope(
        &self,
        team: &str,
        user: &str,
        channel: &str,
        text: &str,
    ) -> (String, Value) {
        let ts = self.new_ts();
        let user_team = self.state.lock().unwrap().team_of(user);
        let env = json!({
            "envelope_id": format!("env-{ts}"),
            "type": "events_api",
            "accepts_response_payload": false,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": {
                "token": "verification", "team_id": team, "api_app_id": "A0MOLT",
                "type": "event_callback", "event_id": format!("Ev{ts}"), "event_time": 1_800_000_000,
                "event": {
                    "type": "app_mention", "user": user, "text": text, "ts": ts,
                    "channel": channel, "event_ts": ts,
                    "user_team": user_team, "source_team": user_team
                }
            }
        });
        (ts, env)
    }

    /// Delivers a direct message (a `message` event with `channel_type`
    /// `im`, as `message.im` sends it) from `user` to the bot, in the IM
    /// channel `D<user>`; returns the message ts.
    pub fn direct(&self, user: &str, text: &str) -> String {
        let ts = self.new_ts();
        let user_team = self.state.lock().unwrap().team_of(user);
        self.deliver(json!({
            "envelope_id": format!("env-{ts}"),
            "type": "events_api",
            "accepts_response_payload": false,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": {
                "token": "verification", "team_id": TEAM, "api_app_id": "A0MOLT",
                "type": "event_callback", "event_id": format!("Ev{ts}"), "event_time": 1_800_000_000,
                "event": {
                    "type": "message", "user": user, "text": text, "ts": ts,
                    "channel": format!("D{user}"), "channel_type": "im", "event_ts": ts,
                    "user_team": user_team, "source_team": user_team
                }
            }
        }));
        ts
    }

    /// Delivers `envelope` as Slack redelivers an event it thinks went
    /// unacknowledged: same payload and event id, a new envelope id, and
    /// `retry_attempt`, `retry_reason` = "timeout". `attempt` 0 is the
    /// first delivery.
    pub fn redeliver(&self, envelope: &Value, attempt: u32) -> String {
        let mut env = envelope.clone();
        if attempt > 0 {
            let id = format!(
                "{}-retry{attempt}",
                env["envelope_id"].as_str().unwrap_or("env")
            );
            env["envelope_id"] = json!(id);
            env["retry_attempt"] = json!(attempt);
            env["retry_reason"] = json!("timeout");
        }
        self.deliver(env)
    }

    /// Delivers a Block Kit button click.
    pub fn click(
        &self,
        user: &str,
        channel: &str,
        message_ts: &str,
        action_id: &str,
        value: &str,
    ) -> String {
        let team = self.state.lock().unwrap().team_of(user);
        self.click_from_team(&team, user, channel, message_ts, action_id, value)
    }

    /// A button click by a user whose own workspace is `user_team` (a Slack
    /// Connect guest's differs from the channel's).
    pub fn click_from_team(
        &self,
        user_team: &str,
        user: &str,
        channel: &str,
        message_ts: &str,
        action_id: &str,
        value: &str,
    ) -> String {
        let ts = self.new_ts();
        let env_id = format!("env-{ts}");
        self.deliver(json!({
            "envelope_id": env_id,
            "type": "interactive",
            "accepts_response_payload": true,
            "payload": {
                "type": "block_actions",
                "team": { "id": "T0LAB", "domain": "lab" },
                "user": { "id": user, "team_id": user_team, "username": user, "name": user },
                "api_app_id": "A0MOLT",
                "token": "verification",
                "trigger_id": format!("trig-{ts}"),
                "container": { "type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false },
                "channel": { "id": channel, "name": "lab" },
                "actions": [{
                    "type": "button", "action_id": action_id, "block_id": "b1", "value": value,
                    "text": { "type": "plain_text", "text": action_id }, "action_ts": ts
                }]
            }
        }));
        env_id
    }

    fn new_ts(&self) -> String {
        let mut st = self.state.lock().unwrap();
        st.next_ts += 1;
        format!("1800000000.{:06}", st.next_ts)
    }
}

async fn serve_api(mut sock: tokio::net::TcpStream, st: Arc<Mutex<State>>, ws_url: String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 1 << 20 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut len = 0usize;
    let mut ct = String::new();
    let mut token = String::new();
    for l in lines {
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = lower.strip_prefix("content-type:") {
            ct = v.trim().to_string();
        } else if lower.starts_with("authorization:") {
            token = l.split_whitespace().last().unwrap_or_default().to_string();
        }
    }
    while buf.len() < header_end + len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let raw = &buf[header_end..(header_end + len).min(buf.len())];
    let full_path = request_line.split_whitespace().nth(1).unwrap_or_default();
    if let Some(file) = full_path.strip_prefix("/upload/") {
        // The upload URL: raw bytes in, "OK - <length>" out, as Slack does.
        st.lock()
            .unwrap()
            .uploads
            .insert(file.to_string(), raw.to_vec());
        let text = format!("OK - {}", raw.len());
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = sock.write_all(resp.as_bytes()).await;
        let _ = sock.shutdown().await;
        return;
    }
    let body = parse_body(&ct, raw);
    let path = full_path.trim_start_matches("/api/").to_string();
    let (method, query) = path
        .split_once('?')
        .map(|(m, q)| (m.to_string(), q.to_string()))
        .unwrap_or((path.clone(), String::new()));
    let mut body = body;
    if !query.is_empty() && body.as_object().is_none_or(|o| o.is_empty()) {
        body = parse_body("form", query.as_bytes());
    }
    let (status, extra, reply) = {
        let mut s = st.lock().unwrap();
        s.calls.push(Call {
            method: method.clone(),
            token: token.clone(),
            body: body.clone(),
            at: std::time::Instant::now(),
        });
        let limited = s
            .rate_limit
            .iter()
            .position(|(m, _)| *m == method)
            .map(|i| s.rate_limit.remove(i));
        if let Some(Some((_, secs))) = limited {
            (
                "429 Too Many Requests",
                format!("Retry-After: {secs}\r\n"),
                json!({"ok": false, "error": "ratelimited"}),
            )
        } else {
            s.next_ts += 1;
            let ts = format!("1800000000.{:06}", s.next_ts);
            let channel = body["channel"].as_str().unwrap_or("C0LAB").to_string();
            let reply = match method.as_str() {
                "apps.connections.open" if token.starts_with("xapp-") => {
                    json!({"ok": true, "url": ws_url})
                }
                "apps.connections.open" => json!({"ok": false, "error": "invalid_auth"}),
                _ if !token.starts_with("xoxb-") => json!({"ok": false, "error": "invalid_auth"}),
                "auth.test" => {
                    json!({"ok": true, "url": "https://lab.slack.com/", "team": "lab", "user": "moltbot", "team_id": "T0LAB", "user_id": "U0MOLT", "bot_id": "B0MOLT"})
                }
                "chat.postMessage" => json!({"ok": true, "channel": channel, "ts": ts,
                    "message": {"type": "message", "text": body["text"], "ts": ts, "bot_id": "B0MOLT", "user": "U0MOLT"}}),
                "chat.update" => {
                    json!({"ok": true, "channel": channel, "ts": body["ts"], "text": body["text"],
                    "message": {"text": body["text"], "bot_id": "B0MOLT", "user": "U0MOLT"}})
                }
                "chat.postEphemeral" => json!({"ok": true, "message_ts": ts}),
                "conversations.open" => {
                    let user = body["users"]
                        .as_array()
                        .and_then(|u| u.first())
                        .and_then(|u| u.as_str())
                        .or_else(|| body["users"].as_str())
                        .unwrap_or("U0")
                        .to_string();
                    json!({"ok": true, "channel": {"id": format!("D{user}")}})
                }
                "users.info" if s.refuse_users_info => {
                    json!({"ok": false, "error": "missing_scope", "needed": "users:read"})
                }
                "users.info" => {
                    let user = body["user"].as_str().unwrap_or_default().to_string();
                    let team = s.team_of(&user);
                    json!({"ok": true, "user": {"id": user, "team_id": team, "name": user}})
                }
                "usergroups.users.list" => {
                    let g = body["usergroup"].as_str().unwrap_or_default();
                    match s.groups.get(g) {
                        Some(users) => json!({"ok": true, "users": users}),
                        None => json!({"ok": false, "error": "no_such_subteam"}),
                    }
                }
                "files.getUploadURLExternal" if s.refuse_uploads => {
                    json!({"ok": false, "error": "missing_scope", "needed": "files:write"})
                }
                "files.getUploadURLExternal" => {
                    let id = format!("F{}", s.next_ts);
                    json!({"ok": true, "file_id": id, "upload_url": format!("http://{}/upload/{id}", s.api_addr)})
                }
                "files.completeUploadExternal" => {
                    json!({"ok": true, "files": body["files"]})
                }
                _ => json!({"ok": false, "error": "unknown_method"}),
            };
            ("200 OK", String::new(), reply)
        }
    };
    let text = reply.to_string();
    let resp = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

async fn serve_socket(sock: tokio::net::TcpStream, st: Arc<Mutex<State>>) {
    let Ok(ws) = tokio_tungstenite::accept_async(sock).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let hello = json!({
        "type": "hello", "num_connections": 1,
        "debug_info": {"host": "emulator", "build_number": 1, "approximate_connection_time": 3600},
        "connection_info": {"app_id": "A0MOLT"}
    });
    if tx
        .send(tokio_tungstenite::tungstenite::Message::Text(
            hello.to_string().into(),
        ))
        .await
        .is_err()
    {
        return;
    }
    st.lock().unwrap().sockets.push(out_tx);
    loop {
        tokio::select! {
            msg = out_rx.recv() => match msg {
                Some(m) => {
                    if tx.send(tokio_tungstenite::tungstenite::Message::Text(m.into())).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            inc = rx.next() => match inc {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&t)
                        && let Some(id) = v["envelope_id"].as_str()
                    {
                        st.lock().unwrap().acked.push(id.to_string());
                    }
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(p))) => {
                    let _ = tx.send(tokio_tungstenite::tungstenite::Message::Pong(p)).await;
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}

/// Polls until `f` holds, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    crate::wait_until(timeout, what, f)
}
