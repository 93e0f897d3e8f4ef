//! A local iLink: Tencent's bot API for personal WeChat, plain HTTP on
//! 127.0.0.1, for driving `openclaw weixin login` and `openclaw weixin
//! run`. It hands out login QR codes and answers their status from a
//! script (`wait`, `scaned`, `expired`, `confirmed`, ...), long-polls
//! `getupdates` with a cursor (`buf-N`: N messages delivered), gives each
//! message a context token, records every `sendmessage` and whether it
//! carried the token of a message from that user, checks the bot token on
//! every call, and can redeliver a message, fail polls with HTTP 500 and
//! expire the session (errcode -14).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;

/// The bot's iLink id.
pub const BOT_ID: &str = "b0f5860fdecb@im.bot";
/// Its chat namespace, as `openclaw weixin login` prints it.
pub const NAMESPACE: &str = "weixin:b0f5860fdecb-im-bot";
/// The owner, who scans the QR code.
pub const OWNER: &str = "o9owner@im.wechat";
/// How long a poll with nothing new is held.
const HOLD: Duration = Duration::from_millis(800);

/// One message the bot sent.
#[derive(Debug, Clone)]
pub struct Reply {
    /// `to_user_id`.
    pub to: String,
    /// The `context_token` it carried.
    pub context: String,
    /// Its text.
    pub text: String,
    /// Whether that token is one of a message `to` sent.
    pub valid_context: bool,
}

/// A message a user sent, as delivered.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Its message id.
    pub id: u64,
    /// Its context token.
    pub context: String,
}

#[derive(Default)]
struct State {
    token: String,
    api_url: String,
    /// Answers to successive status polls; empty: `wait`.
    script: VecDeque<String>,
    qrcodes: u32,
    /// Every message delivered, in order (redeliveries too).
    queue: Vec<Value>,
    next_id: u64,
    polls: Vec<String>,
    replies: Vec<Reply>,
    /// (user, context token) of every message delivered.
    contexts: Vec<(String, String)>,
    expired: bool,
    fail: u32,
    bad_auth: u32,
    headers_missing: u32,
}

/// The emulator; stops when dropped.
pub struct WeixinEmulator {
    /// `http://127.0.0.1:PORT`.
    pub api_url: String,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    _rt: tokio::runtime::Runtime,
}

impl WeixinEmulator {
    /// Starts an emulator whose login hands out bot token `token`.
    pub fn start(token: &str) -> WeixinEmulator {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let api_url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            token: token.into(),
            api_url: api_url.clone(),
            next_id: 7_000_000_000_000_000_001,
            ..Default::default()
        }));
        let wake = Arc::new(Notify::new());
        let (st, w) = (state.clone(), wake.clone());
        rt.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, st.clone(), w.clone()));
            }
        });
        WeixinEmulator {
            api_url,
            state,
            wake,
            _rt: rt,
        }
    }

    /// The statuses the next login polls get, in order (then `wait`).
    pub fn script_login(&self, statuses: &[&str]) {
        self.state.lock().unwrap().script = statuses.iter().map(|s| s.to_string()).collect();
    }

    /// QR codes handed out so far.
    pub fn qrcodes(&self) -> u32 {
        self.state.lock().unwrap().qrcodes
    }

    /// `user` sends `text` to the bot.
    pub fn send(&self, user: &str, text: &str) -> Sent {
        let (id, context) = {
            let mut s = self.state.lock().unwrap();
            s.next_id += 1;
            let id = s.next_id;
            let context = format!("ctx-{id}");
            s.contexts.push((user.to_string(), context.clone()));
            s.queue.push(json!({
                "seq": id, "message_id": id, "from_user_id": user, "to_user_id": BOT_ID,
                "message_type": 1, "message_state": 2, "context_token": context,
                "item_list": [{"type": 1, "text_item": {"text": text}}],
            }));
            (id, context)
        };
        self.wake.notify_waiters();
        Sent { id, context }
    }

    /// Delivers message `id` again, as at-least-once delivery may.
    pub fn redeliver(&self, id: u64) {
        {
            let mut s = self.state.lock().unwrap();
            let m = s
                .queue
                .iter()
                .find(|m| m["message_id"] == id)
                .cloned()
                .expect("a message delivered before");
            s.queue.push(m);
        }
        self.wake.notify_waiters();
    }

    /// Every poll from now on answers errcode -14.
    pub fn expire(&self) {
        self.state.lock().unwrap().expired = true;
        self.wake.notify_waiters();
    }

    /// The next `n` polls answer HTTP 500.
    pub fn fail_polls(&self, n: u32) {
        self.state.lock().unwrap().fail = n;
    }

    /// The `get_updates_buf` of every poll so far.
    pub fn polls(&self) -> Vec<String> {
        self.state.lock().unwrap().polls.clone()
    }

    /// The cursor after everything delivered so far.
    pub fn cursor(&self) -> String {
        format!("buf-{}", self.state.lock().unwrap().queue.len())
    }

    /// Every message the bot sent.
    pub fn replies(&self) -> Vec<Reply> {
        self.state.lock().unwrap().replies.clone()
    }

    /// Messages the bot sent carrying `context`.
    pub fn replies_to(&self, context: &str) -> Vec<Reply> {
        self.replies()
            .into_iter()
            .filter(|r| r.context == context)
            .collect()
    }

    /// Calls with a wrong or missing bot token, and calls missing iLink's
    /// headers.
    pub fn refused_calls(&self) -> (u32, u32) {
        let s = self.state.lock().unwrap();
        (s.bad_auth, s.headers_missing)
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 64 << 10 {
            return None;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

async fn serve(mut sock: tokio::net::TcpStream, st: Arc<Mutex<State>>, wake: Arc<Notify>) {
    let Some(req) = read_request(&mut sock).await else {
        return;
    };
    let (status, body) = answer(&req, &st, &wake).await;
    let text = body.to_string();
    let reason = if status == 200 { "OK" } else { "Error" };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

async fn answer(req: &Request, st: &Arc<Mutex<State>>, wake: &Notify) -> (u16, Value) {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    match (req.method.as_str(), path) {
        ("POST", "/ilink/bot/get_bot_qrcode") => {
            let mut s = st.lock().unwrap();
            s.qrcodes += 1;
            let q = format!("qr-{}", s.qrcodes);
            (
                200,
                json!({"ret": 0, "qrcode": q, "qrcode_img_content": format!("https://liteapp.weixin.qq.com/q/{q}?bot_type=3")}),
            )
        }
        ("GET", "/ilink/bot/get_qrcode_status") => {
            let mut s = st.lock().unwrap();
            let current = format!("qrcode=qr-{}", s.qrcodes);
            if !query.split('&').any(|p| p == current) {
                return (200, json!({"status": "expired"}));
            }
            let status = s.script.pop_front().unwrap_or_else(|| "wait".into());
            if status == "confirmed" {
                (
                    200,
                    json!({"status": "confirmed", "bot_token": s.token, "ilink_bot_id": BOT_ID,
                           "baseurl": s.api_url, "ilink_user_id": OWNER}),
                )
            } else {
                (200, json!({"status": status}))
            }
        }
        ("POST", p) if p.starts_with("/ilink/bot/") => {
            {
                let mut s = st.lock().unwrap();
                let want = format!("Bearer {}", s.token);
                if req.header("Authorization") != Some(want.as_str()) {
                    s.bad_auth += 1;
                    return (200, json!({"ret": -1, "errmsg": "bad bot token"}));
                }
                if req.header("AuthorizationType") != Some("ilink_bot_token")
                    || req.header("X-WECHAT-UIN").is_none_or(str::is_empty)
                    || req.header("iLink-App-Id").is_none()
                    || body.get("base_info").is_none()
                {
                    s.headers_missing += 1;
                }
            }
            match p {
                "/ilink/bot/getupdates" => poll(&body, st, wake).await,
                "/ilink/bot/sendmessage" => {
                    let m = &body["msg"];
                    let to = m["to_user_id"].as_str().unwrap_or_default().to_string();
                    let context = m["context_token"].as_str().unwrap_or_default().to_string();
                    let text = m["item_list"][0]["text_item"]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let mut s = st.lock().unwrap();
                    let valid_context = s.contexts.iter().any(|(u, c)| *u == to && *c == context);
                    s.replies.push(Reply {
                        to,
                        context,
                        text,
                        valid_context,
                    });
                    (200, json!({"ret": 0}))
                }
                _ => (404, json!({"ret": -1, "errmsg": "unknown endpoint"})),
            }
        }
        _ => (404, json!({"ret": -1, "errmsg": "unknown endpoint"})),
    }
}

async fn poll(body: &Value, st: &Arc<Mutex<State>>, wake: &Notify) -> (u16, Value) {
    let buf = body["get_updates_buf"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let from: usize = buf
        .strip_prefix("buf-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    {
        let mut s = st.lock().unwrap();
        s.polls.push(buf.clone());
        if s.fail > 0 {
            s.fail -= 1;
            return (500, json!({"ret": -1}));
        }
    }
    let deadline = tokio::time::Instant::now() + HOLD;
    loop {
        let notified = wake.notified();
        {
            let s = st.lock().unwrap();
            if s.expired {
                return (
                    200,
                    json!({"ret": -14, "errcode": -14, "errmsg": "session timeout"}),
                );
            }
            if s.queue.len() > from {
                return (
                    200,
                    json!({"ret": 0, "msgs": s.queue[from..], "get_updates_buf": format!("buf-{}", s.queue.len()),
                           "longpolling_timeout_ms": 1500}),
                );
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return (
                200,
                json!({"ret": 0, "msgs": [], "get_updates_buf": buf, "longpolling_timeout_ms": 1500}),
            );
        }
    }
}
