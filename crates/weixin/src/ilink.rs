//! iLink's wire: Tencent's bot API for personal WeChat, plain HTTPS and
//! JSON. The only module that knows its endpoints and fields.
//!
//! The flow, as Tencent's own OpenClaw plugin speaks it:
//!
//! * Login: `POST ilink/bot/get_bot_qrcode?bot_type=3` answers a `qrcode`
//!   id and the `qrcode_img_content` to show as a QR code; `GET
//!   ilink/bot/get_qrcode_status?qrcode=…` (a long poll) then answers
//!   `wait`, `scaned`, `expired` (ask for a new code), `need_verifycode`
//!   (poll again with `&verify_code=`), `scaned_but_redirect` (poll
//!   `https://<redirect_host>`), `binded_redirect` (already bound) or
//!   `confirmed` with the `bot_token`, the `ilink_bot_id`, the `baseurl`
//!   to use from then on and the owner's `ilink_user_id`.
//! * Every later POST carries `AuthorizationType: ilink_bot_token`,
//!   `Authorization: Bearer <bot_token>`, a random `X-WECHAT-UIN` (a u32 in
//!   decimal, base64), `iLink-App-Id` and `iLink-App-ClientVersion`, and
//!   its body a `base_info`.
//! * Receive: `POST ilink/bot/getupdates {get_updates_buf}` is held by the
//!   server until messages come or about 35 s pass; it answers `msgs` and
//!   the next `get_updates_buf`, which the bot keeps across restarts.
//!   Delivery is at least once.
//! * Send: `POST ilink/bot/sendmessage {msg}`: a text item to a user,
//!   carrying the `context_token` of the message it answers.
//! * Errors: `ret` or `errcode` non-zero; -14 means the session expired and
//!   only a new QR login helps.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chat::Secret;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Value, json};

/// Where iLink answers unless the login said otherwise.
pub const DEFAULT_API_URL: &str = "https://ilinkai.weixin.qq.com";
/// The errcode of an expired session.
pub const SESSION_EXPIRED: i64 = -14;
/// The bot type this front end logs in as (the plugin's).
const BOT_TYPE: &str = "3";
/// Largest answer read.
const MAX_BODY: usize = 4 << 20;
/// A plain call's time limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The app id iLink knows OpenClaw bots by.
const APP_ID: &str = "bot";
/// The message and item types of a bot's text message.
const BOT_MESSAGE: u32 = 2;
const FINISHED: u32 = 2;
const TEXT_ITEM: u32 = 1;
/// A voice message's item, which may carry its transcript.
const VOICE_ITEM: u32 = 3;
/// Longest user id, group id or context token taken (the bot keeps the
/// latest context token of up to 10,000 users).
const MAX_ID: usize = 1024;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The session expired (errcode -14): log in again.
    Expired,
    /// iLink answered an error code.
    Refused(i64, String),
    /// An HTTP status other than 200.
    Status(u16),
    /// No answer in time (normal for a long poll).
    Timeout,
    /// The request did not get through.
    Transport(String),
    /// The answer was not what iLink sends.
    Malformed(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Expired => f.write_str("the iLink session expired (errcode -14)"),
            ApiError::Refused(c, m) => write!(f, "iLink answered errcode {c}: {m}"),
            ApiError::Status(s) => write!(f, "iLink answered HTTP {s}"),
            ApiError::Timeout => f.write_str("no answer in time"),
            ApiError::Transport(e) => write!(f, "cannot reach iLink: {e}"),
            ApiError::Malformed(e) => write!(f, "a malformed answer from iLink: {e}"),
        }
    }
}

/// A login QR code.
#[derive(Debug, Clone, Deserialize)]
pub struct QrCode {
    /// The id to poll with.
    pub qrcode: String,
    /// What the QR code encodes (a link the phone opens).
    pub qrcode_img_content: String,
}

/// A login's step, as `get_qrcode_status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not scanned yet.
    Wait,
    /// Scanned; waiting for the phone's confirmation.
    Scanned,
    /// The phone must confirm with a number it shows.
    NeedVerifyCode,
    /// The code expired; ask for a new one.
    Expired,
    /// Wrong numbers too often; ask for a new code.
    VerifyBlocked,
    /// Scanned, and the login moved to another host.
    Redirect,
    /// This bot is bound already.
    Bound,
    /// Confirmed: the token and ids are in the answer.
    Confirmed,
    /// A step this client does not know.
    Unknown,
}

/// The wire's words for each [`Step`].
const STEPS: [(&str, Step); 8] = [
    ("wait", Step::Wait),
    ("scaned", Step::Scanned),
    ("need_verifycode", Step::NeedVerifyCode),
    ("expired", Step::Expired),
    ("verify_code_blocked", Step::VerifyBlocked),
    ("scaned_but_redirect", Step::Redirect),
    ("binded_redirect", Step::Bound),
    ("confirmed", Step::Confirmed),
];

/// Where a login stands.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct QrStatus {
    /// The step's word; see [`QrStatus::step`].
    #[serde(default)]
    pub status: String,
    /// The bot's token, once confirmed.
    pub bot_token: Option<String>,
    /// The bot's id, once confirmed (`…@im.bot`).
    pub ilink_bot_id: Option<String>,
    /// The base URL to use from now on, once confirmed.
    pub baseurl: Option<String>,
    /// Who scanned: the bot's owner.
    pub ilink_user_id: Option<String>,
    /// Where to poll next after `scaned_but_redirect`.
    pub redirect_host: Option<String>,
}

impl QrStatus {
    /// The step this answer reports.
    pub fn step(&self) -> Step {
        STEPS
            .iter()
            .find(|(w, _)| *w == self.status)
            .map_or(Step::Unknown, |(_, s)| *s)
    }
}

/// One received message, as the bot needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// iLink's message id (a u64), the key for exactly-once handling.
    pub id: String,
    /// The sender.
    pub from: String,
    /// The group it was sent in, if any.
    pub group: Option<String>,
    /// Its text (a voice message's transcript); `None` for other kinds.
    pub text: Option<String>,
    /// What a reply must carry.
    pub context: String,
}

/// One long poll's answer.
#[derive(Debug, Clone, Default)]
pub struct Updates {
    /// Users' messages (the bot's own are left out).
    pub msgs: Vec<Inbound>,
    /// The cursor to send next; `None`: keep the old one.
    pub cursor: Option<String>,
    /// How long the server says to hold the next poll.
    pub hold: Option<Duration>,
    /// Messages left out as malformed.
    pub dropped: usize,
}

#[derive(Deserialize)]
struct RawUpdates {
    #[serde(default)]
    msgs: Vec<Value>,
    get_updates_buf: Option<String>,
    longpolling_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
struct RawMsg {
    message_id: Option<Value>,
    #[serde(default)]
    from_user_id: String,
    group_id: Option<String>,
    message_type: Option<u32>,
    #[serde(default)]
    item_list: Vec<RawItem>,
    #[serde(default)]
    context_token: String,
}

#[derive(Deserialize)]
struct RawItem {
    #[serde(rename = "type")]
    kind: Option<u32>,
    text_item: Option<RawText>,
    voice_item: Option<RawText>,
}

#[derive(Deserialize)]
struct RawText {
    text: Option<String>,
}

/// Reads one message; `None` when it is not a user's message with an id.
fn inbound(v: Value) -> Result<Option<Inbound>, String> {
    let m: RawMsg = serde_json::from_value(v).map_err(|e| e.to_string())?;
    if m.message_type == Some(BOT_MESSAGE) {
        return Ok(None);
    }
    let id = match m.message_id {
        Some(Value::Number(n)) => n.as_u64().map(|n| n.to_string()),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(s),
        _ => None,
    };
    let Some(id) = id.filter(|i| i.len() <= 20) else {
        return Err("no message_id".into());
    };
    if m.from_user_id.is_empty() {
        return Err("no from_user_id".into());
    }
    if m.from_user_id.len() > MAX_ID
        || m.context_token.len() > MAX_ID
        || m.group_id.as_ref().is_some_and(|g| g.len() > MAX_ID)
    {
        return Err(format!("an id or context token over {MAX_ID} bytes"));
    }
    let text = m.item_list.into_iter().find_map(|i| match i.kind {
        Some(TEXT_ITEM) => i.text_item.and_then(|t| t.text),
        Some(VOICE_ITEM) => i.voice_item.and_then(|t| t.text),
        _ => None,
    });
    Ok(Some(Inbound {
        id,
        from: m.from_user_id,
        group: m.group_id.filter(|g| !g.is_empty()),
        text,
        context: m.context_token,
    }))
}

/// Maps `ret`/`errcode` to an error.
fn check(v: &Value) -> Result<(), ApiError> {
    let code = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    let (ret, errcode) = (code("ret"), code("errcode"));
    if ret == SESSION_EXPIRED || errcode == SESSION_EXPIRED {
        return Err(ApiError::Expired);
    }
    if ret != 0 || errcode != 0 {
        let msg = v
            .get("errmsg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        return Err(ApiError::Refused(
            if errcode != 0 { errcode } else { ret },
            msg,
        ));
    }
    Ok(())
}

/// Percent-encodes a query value.
fn query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A random u32 in decimal, base64: the `X-WECHAT-UIN` header.
fn uin() -> String {
    let mut b = [0u8; 4];
    // A failing system RNG leaves zeros: the header is not a secret.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    base64::engine::general_purpose::STANDARD.encode(u32::from_be_bytes(b).to_string())
}

/// A `client_id` for a sent message: unique per bot process and time.
fn client_id() -> String {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    format!("openclaw-{}", u64::from_be_bytes(b))
}

/// `iLink-App-ClientVersion`: the version as 0x00MMNNPP.
fn client_version() -> u32 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0) & 0xff);
    let mut next = || parts.next().unwrap_or(0);
    (next() << 16) | (next() << 8) | next()
}

fn base_info() -> Value {
    json!({"channel_version": env!("CARGO_PKG_VERSION"), "bot_agent": concat!("OpenClaw-mesh/", env!("CARGO_PKG_VERSION"))})
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client of one iLink base URL, with or without a bot token.
pub struct Ilink {
    http: Client<Https, Full<Bytes>>,
    base: String,
    token: Option<Secret>,
}

impl Ilink {
    /// A client of `base` (checked by the caller: https, or http to
    /// loopback), sending `token` when it has one.
    pub fn new(base: &str, token: Option<Secret>) -> Result<Ilink, String> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("cannot load the system's root certificates for iLink: {e}"))?;
        let https = if base.starts_with("http://") {
            builder.https_or_http().enable_http1().build()
        } else {
            builder.https_only().enable_http1().build()
        };
        Ok(Ilink {
            http: Client::builder(TokioExecutor::new()).build(https),
            base: if base.ends_with('/') {
                base.to_string()
            } else {
                format!("{base}/")
            },
            token,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        self.base.trim_end_matches('/')
    }

    async fn send(
        &self,
        req: http::request::Builder,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Value, ApiError> {
        let req = req
            .header("iLink-App-Id", APP_ID)
            .header("iLink-App-ClientVersion", client_version().to_string())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let call = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| {
                    // hyper's own words ("client error (Connect)") say
                    // neither where nor why: name the URL and the cause.
                    let cause = std::error::Error::source(&e)
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default();
                    ApiError::Transport(format!(
                        "{} ({e}{cause}); check api_url in weixin.toml or WEIXIN_API_URL, and the network",
                        self.base()
                    ))
                })?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| ApiError::Transport(format!("reading the answer: {e}")))?
                .to_bytes();
            if status != 200 {
                return Err(ApiError::Status(status));
            }
            Ok(body)
        };
        let body = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| ApiError::Timeout)??;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::Malformed(e.to_string()))?;
        check(&v)?;
        Ok(v)
    }

    async fn post(
        &self,
        endpoint: &str,
        mut body: Value,
        timeout: Duration,
    ) -> Result<Value, ApiError> {
        body["base_info"] = base_info();
        let mut req = http::Request::post(format!("{}{endpoint}", self.base))
            .header("Content-Type", "application/json")
            .header("AuthorizationType", "ilink_bot_token")
            .header("X-WECHAT-UIN", uin());
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", t.expose()));
        }
        self.send(req, body.to_string().into_bytes(), timeout).await
    }

    /// Asks for a login QR code.
    pub async fn qrcode(&self) -> Result<QrCode, ApiError> {
        let v = self
            .post(
                &format!("ilink/bot/get_bot_qrcode?bot_type={BOT_TYPE}"),
                json!({"local_token_list": []}),
                CALL_TIMEOUT,
            )
            .await?;
        let q: QrCode =
            serde_json::from_value(v).map_err(|e| ApiError::Malformed(e.to_string()))?;
        if q.qrcode.is_empty() || q.qrcode_img_content.is_empty() {
            return Err(ApiError::Malformed("an empty QR code".into()));
        }
        Ok(q)
    }

    /// Where login `qrcode` stands (a long poll of up to `hold`).
    pub async fn qr_status(
        &self,
        qrcode: &str,
        verify_code: Option<&str>,
        hold: Duration,
    ) -> Result<QrStatus, ApiError> {
        let mut url = format!(
            "{}ilink/bot/get_qrcode_status?qrcode={}",
            self.base,
            query(qrcode)
        );
        if let Some(c) = verify_code {
            url.push_str(&format!("&verify_code={}", query(c)));
        }
        let v = self.send(http::Request::get(url), Vec::new(), hold).await?;
        serde_json::from_value(v).map_err(|e| ApiError::Malformed(e.to_string()))
    }

    /// One long poll from `cursor`, held up to `hold` by the server.
    pub async fn updates(&self, cursor: &str, hold: Duration) -> Result<Updates, ApiError> {
        // A little longer than the server holds, so its empty answer comes
        // first; a timeout is then as normal as an empty answer.
        let v = self
            .post(
                "ilink/bot/getupdates",
                json!({"get_updates_buf": cursor}),
                hold + Duration::from_secs(5),
            )
            .await?;
        let raw: RawUpdates =
            serde_json::from_value(v).map_err(|e| ApiError::Malformed(e.to_string()))?;
        let mut out = Updates {
            cursor: raw.get_updates_buf.filter(|c| !c.is_empty()),
            hold: raw
                .longpolling_timeout_ms
                .filter(|ms| (1_000..=120_000).contains(ms))
                .map(Duration::from_millis),
            ..Default::default()
        };
        for m in raw.msgs {
            match inbound(m) {
                Ok(Some(i)) => out.msgs.push(i),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a malformed iLink message");
                    out.dropped += 1;
                }
            }
        }
        Ok(out)
    }

    /// Sends `text` to `to`, answering the message that carried `context`.
    pub async fn send_text(&self, to: &str, context: &str, text: &str) -> Result<(), ApiError> {
        let mut msg = json!({
            "from_user_id": "", "to_user_id": to, "client_id": client_id(),
            "message_type": BOT_MESSAGE, "message_state": FINISHED,
            "item_list": [{"type": TEXT_ITEM, "text_item": {"text": text}}],
        });
        if !context.is_empty() {
            msg["context_token"] = json!(context);
        }
        self.post("ilink/bot/sendmessage", json!({"msg": msg}), CALL_TIMEOUT)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read_defensively() {
        let ok = json!({"message_id": 7017, "from_user_id": "u1@im.wechat", "message_type": 1,
            "item_list": [{"type": 1, "text_item": {"text": "nodes"}}], "context_token": "ctx"});
        let i = inbound(ok).unwrap().unwrap();
        assert_eq!(
            (
                i.id.as_str(),
                i.from.as_str(),
                i.text.as_deref(),
                i.context.as_str()
            ),
            ("7017", "u1@im.wechat", Some("nodes"), "ctx")
        );
        let s = json!({"message_id": "18446744073709551615", "from_user_id": "u", "group_id": "g1",
            "item_list": [{"type": 3, "voice_item": {"text": "jobs"}}]});
        let i = inbound(s).unwrap().unwrap();
        assert_eq!(
            (i.group.as_deref(), i.text.as_deref()),
            (Some("g1"), Some("jobs"))
        );
        let image = json!({"message_id": 1, "from_user_id": "u", "item_list": [{"type": 2}]});
        assert_eq!(inbound(image).unwrap().unwrap().text, None);
        assert_eq!(
            inbound(json!({"message_id": 2, "from_user_id": "bot", "message_type": 2})).unwrap(),
            None
        );
        for bad in [
            json!({"from_user_id": "u"}),
            json!({"message_id": "12a", "from_user_id": "u"}),
            json!({"message_id": -1, "from_user_id": "u"}),
            json!({"message_id": 1}),
            json!({"message_id": 1, "from_user_id": 5}),
            json!({"message_id": 1, "from_user_id": "u", "context_token": "c".repeat(MAX_ID + 1)}),
            json!({"message_id": 1, "from_user_id": "u".repeat(MAX_ID + 1)}),
        ] {
            assert!(inbound(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn login_steps() {
        let st = |s: &str| QrStatus {
            status: s.into(),
            ..Default::default()
        };
        assert_eq!(st("scaned").step(), Step::Scanned);
        assert_eq!(st("confirmed").step(), Step::Confirmed);
        assert_eq!(st("binded_redirect").step(), Step::Bound);
        assert_eq!(st("Confirmed").step(), Step::Unknown);
        assert_eq!(st("").step(), Step::Unknown);
    }

    #[test]
    fn error_codes() {
        assert_eq!(check(&json!({})), Ok(()));
        assert_eq!(check(&json!({"ret": 0, "errcode": 0})), Ok(()));
        assert_eq!(check(&json!({"errcode": -14})), Err(ApiError::Expired));
        assert_eq!(check(&json!({"ret": -14})), Err(ApiError::Expired));
        assert_eq!(
            check(&json!({"ret": -2, "errmsg": "bad"})),
            Err(ApiError::Refused(-2, "bad".into()))
        );
    }

    #[test]
    fn headers_and_queries() {
        assert_eq!(query("ab/c d&e"), "ab%2Fc%20d%26e");
        let u = base64::engine::general_purpose::STANDARD
            .decode(uin())
            .unwrap();
        assert!(String::from_utf8(u).unwrap().parse::<u32>().is_ok());
        assert_eq!(client_version(), 0x0000_0100);
        assert_ne!(client_id(), client_id());
    }
}
