//! A local WeCom: the intelligent robot's long-connection WebSocket on
//! 127.0.0.1, speaking WeCom's frames (`{cmd, headers: {req_id}, body}`,
//! acks by `req_id`), for driving `openclaw wecom run`. It checks the
//! subscription's bot id and secret, acks pings and replies, keeps the
//! latest content of every stream, records proactive messages, cards and
//! card updates, and can push messages and card clicks, inject errcodes
//! (846608 for an expired stream, 846605, any other), stall an ack, expire
//! streams after a lifetime, drop sockets and send `disconnected_event`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The errcode WeCom gives a stream past its lifetime.
pub const STREAM_EXPIRED: i64 = 846_608;

/// One stream's latest state.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The callback it answers.
    pub req_id: String,
    /// Its latest content (each frame replaces the whole message).
    pub content: String,
    /// Whether it was finished.
    pub finish: bool,
    /// Frames accepted for it.
    pub frames: u32,
    /// When its first frame came.
    pub opened: Instant,
}

#[derive(Default)]
struct State {
    bot_id: String,
    secret: String,
    sockets: Vec<mpsc::UnboundedSender<String>>,
    subscriptions: u32,
    frames: Vec<Value>,
    streams: HashMap<String, Stream>,
    /// Next frames of a cmd answered with an errcode.
    inject: VecDeque<(String, i64)>,
    /// Next frames of a cmd left without an ack.
    stall: VecDeque<String>,
    stream_lifetime: Option<Duration>,
    next: u64,
}

/// The emulator; stops when dropped.
pub struct WecomEmulator {
    /// `ws://127.0.0.1:PORT/`.
    pub ws_url: String,
    state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

impl WecomEmulator {
    /// Starts an emulator that accepts `bot_id` with `secret`.
    pub fn start(bot_id: &str, secret: &str) -> WecomEmulator {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(State {
            bot_id: bot_id.into(),
            secret: secret.into(),
            ..Default::default()
        }));
        let ws = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let ws_url = format!("ws://{}/", ws.local_addr().unwrap());
        let st = state.clone();
        rt.spawn(async move {
            while let Ok((sock, _)) = ws.accept().await {
                tokio::spawn(serve(sock, st.clone()));
            }
        });
        WecomEmulator {
            ws_url,
            state,
            _rt: rt,
        }
    }

    fn next_id(&self, what: &str) -> String {
        let mut st = self.state.lock().unwrap();
        st.next += 1;
        format!("{what}{}", st.next)
    }

    fn push(&self, frame: Value) {
        let text = frame.to_string();
        self.state
            .lock()
            .unwrap()
            .sockets
            .retain(|s| s.send(text.clone()).is_ok());
    }

    /// Whether a subscribed connection is open.
    pub fn connected(&self) -> bool {
        !self.state.lock().unwrap().sockets.is_empty()
    }

    /// Successful subscriptions so far.
    pub fn subscriptions(&self) -> u32 {
        self.state.lock().unwrap().subscriptions
    }

    /// A message callback frame, not yet delivered.
    pub fn message_frame(
        &self,
        user: &str,
        chat: Option<&str>,
        text: &str,
        msgid: &str,
    ) -> (String, Value) {
        let req_id = self.next_id("cb");
        let mut body = json!({
            "msgid": msgid, "aibotid": "bot-lab", "chattype": if chat.is_some() { "group" } else { "single" },
            "from": {"userid": user}, "msgtype": "text", "text": {"content": text}
        });
        if let Some(c) = chat {
            body["chatid"] = json!(c);
        }
        let frame =
            json!({"cmd": "aibot_msg_callback", "headers": {"req_id": req_id}, "body": body});
        (req_id, frame)
    }

    /// Delivers a frame as is.
    pub fn deliver(&self, frame: &Value) {
        self.push(frame.clone());
    }

    /// A group message `@moltbot TEXT` from `user` in `chat`; returns the
    /// callback's req_id.
    pub fn mention(&self, user: &str, chat: &str, text: &str) -> String {
        let msgid = self.next_id("msg");
        let (req_id, frame) =
            self.message_frame(user, Some(chat), &format!("@moltbot {text}"), &msgid);
        self.push(frame);
        req_id
    }

    /// A one-to-one message; returns the callback's req_id.
    pub fn direct(&self, user: &str, text: &str) -> String {
        let msgid = self.next_id("msg");
        let (req_id, frame) = self.message_frame(user, None, text, &msgid);
        self.push(frame);
        req_id
    }

    /// A click on a card's button; returns the event's req_id.
    pub fn click(&self, user: &str, chat: &str, task_id: &str, key: &str) -> String {
        let req_id = self.next_id("ev");
        let msgid = self.next_id("evmsg");
        self.push(json!({
            "cmd": "aibot_event_callback", "headers": {"req_id": req_id},
            "body": {"msgid": msgid, "aibotid": "bot-lab", "chatid": chat, "chattype": "group",
                     "from": {"userid": user}, "msgtype": "event",
                     "event": {"eventtype": "template_card_event",
                               "template_card_event": {"card_type": "button_interaction", "event_key": key, "task_id": task_id}}}
        }));
        req_id
    }

    /// Tells the bot another connection took over.
    pub fn kick(&self) {
        let req_id = self.next_id("ev");
        self.push(
            json!({"cmd": "aibot_event_callback", "headers": {"req_id": req_id},
            "body": {"msgtype": "event", "event": {"eventtype": "disconnected_event"}}}),
        );
    }

    /// Drops every connection.
    pub fn drop_sockets(&self) {
        self.state.lock().unwrap().sockets.clear();
    }

    /// Answers the next frame of `cmd` with `errcode`.
    pub fn fail_next(&self, cmd: &str, errcode: i64) {
        self.state
            .lock()
            .unwrap()
            .inject
            .push_back((cmd.into(), errcode));
    }

    /// Leaves the next frame of `cmd` without an ack.
    pub fn stall_next(&self, cmd: &str) {
        self.state.lock().unwrap().stall.push_back(cmd.into());
    }

    /// Streams older than `d` are refused with 846608, as WeCom does after
    /// about six minutes.
    pub fn set_stream_lifetime(&self, d: Option<Duration>) {
        self.state.lock().unwrap().stream_lifetime = d;
    }

    /// Every frame the bot sent.
    pub fn frames(&self) -> Vec<Value> {
        self.state.lock().unwrap().frames.clone()
    }

    /// Frames of one cmd.
    pub fn frames_of(&self, cmd: &str) -> Vec<Value> {
        self.frames()
            .into_iter()
            .filter(|f| f["cmd"] == cmd)
            .collect()
    }

    /// The streams answering callback `req_id`.
    pub fn streams_for(&self, req_id: &str) -> Vec<Stream> {
        self.state
            .lock()
            .unwrap()
            .streams
            .values()
            .filter(|s| s.req_id == req_id)
            .cloned()
            .collect()
    }

    /// Proactive Markdown messages: (chatid, content).
    pub fn markdowns(&self) -> Vec<(String, String)> {
        self.frames_of("aibot_send_msg")
            .into_iter()
            .filter(|f| f["body"]["msgtype"] == "markdown")
            .map(|f| {
                (
                    f["body"]["chatid"].as_str().unwrap_or_default().to_string(),
                    f["body"]["markdown"]["content"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    /// Cards sent: (chatid, template_card).
    pub fn cards(&self) -> Vec<(String, Value)> {
        self.frames_of("aibot_send_msg")
            .into_iter()
            .filter(|f| f["body"]["msgtype"] == "template_card")
            .map(|f| {
                (
                    f["body"]["chatid"].as_str().unwrap_or_default().to_string(),
                    f["body"]["template_card"].clone(),
                )
            })
            .collect()
    }
}

fn ack(req_id: &str, errcode: i64) -> String {
    let errmsg = match errcode {
        0 => "ok",
        STREAM_EXPIRED => "stream message expired",
        _ => "refused by the emulator",
    };
    json!({"headers": {"req_id": req_id}, "errcode": errcode, "errmsg": errmsg}).to_string()
}

async fn serve(sock: tokio::net::TcpStream, st: Arc<Mutex<State>>) {
    let Ok(ws) = tokio_tungstenite::accept_async(sock).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    // Handed to the state on subscription: dropping it there
    // (drop_sockets) ends this connection.
    let mut out_tx = Some(out_tx);
    let mut subscribed = false;
    loop {
        tokio::select! {
            m = out_rx.recv() => match m {
                Some(m) => {
                    if tx.send(Message::text(m)).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            inc = rx.next() => {
                let t = match inc {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Ping(p))) => {
                        let _ = tx.send(Message::Pong(p)).await;
                        continue;
                    }
                    Some(Ok(_)) => continue,
                    _ => return,
                };
                let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                let cmd = v["cmd"].as_str().unwrap_or_default().to_string();
                let req_id = v["headers"]["req_id"].as_str().unwrap_or_default().to_string();
                let reply = {
                    let mut s = st.lock().unwrap();
                    s.frames.push(v.clone());
                    if cmd == "aibot_subscribe" {
                        let ok = v["body"]["bot_id"] == s.bot_id.as_str() && v["body"]["secret"] == s.secret.as_str();
                        if ok && let Some(out) = out_tx.take() {
                            subscribed = true;
                            s.subscriptions += 1;
                            s.sockets.push(out);
                        }
                        Some(ack(&req_id, if ok { 0 } else { 40_058 }))
                    } else if !subscribed {
                        None
                    } else if let Some(i) = s.stall.iter().position(|c| *c == cmd) {
                        s.stall.remove(i);
                        None
                    } else if let Some(i) = s.inject.iter().position(|(c, _)| *c == cmd) {
                        let (_, code) = s.inject.remove(i).unwrap_or_default();
                        Some(ack(&req_id, code))
                    } else if cmd == "aibot_respond_msg" && v["body"]["msgtype"] == "stream" {
                        let id = v["body"]["stream"]["id"].as_str().unwrap_or_default().to_string();
                        let lifetime = s.stream_lifetime;
                        let entry = s.streams.entry(id).or_insert_with(|| Stream {
                            req_id: req_id.clone(),
                            content: String::new(),
                            finish: false,
                            frames: 0,
                            opened: Instant::now(),
                        });
                        if lifetime.is_some_and(|l| entry.opened.elapsed() > l) || entry.finish {
                            Some(ack(&req_id, STREAM_EXPIRED))
                        } else {
                            entry.content = v["body"]["stream"]["content"].as_str().unwrap_or_default().to_string();
                            entry.finish = v["body"]["stream"]["finish"].as_bool().unwrap_or(false);
                            entry.frames += 1;
                            Some(ack(&req_id, 0))
                        }
                    } else {
                        Some(ack(&req_id, 0))
                    }
                };
                if let Some(r) = reply
                    && tx.send(Message::text(r)).await.is_err()
                {
                    return;
                }
            }
        }
    }
}
