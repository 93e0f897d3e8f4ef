//! WeCom's long-connection wire format. Pure: text in, values out.
//!
//! Every frame is one JSON text message. A request is
//! `{cmd, headers: {req_id}, body}`; its acknowledgement has no `cmd`:
//! `{headers: {req_id}, errcode, errmsg}`. The bot sends
//! `aibot_subscribe` ({bot_id, secret}) first, then `ping` every 30 s.
//! WeCom pushes `aibot_msg_callback` (a message to the bot) and
//! `aibot_event_callback` (a card click, or `disconnected_event` when
//! another connection took over). The bot answers a callback with
//! `aibot_respond_msg` under the callback's own `req_id` (a `stream`
//! message whose `content` replaces the whole message each time), updates
//! a clicked card with `aibot_respond_update_msg`, and sends on its own
//! with `aibot_send_msg`.

use serde_json::{Value, json};

/// Largest frame read, in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Largest message content WeCom takes, in bytes.
pub const MAX_CONTENT: usize = 20_480;
/// The errcode for a stream past its lifetime (about six minutes).
pub const STREAM_EXPIRED: i64 = 846_608;

/// A text message to the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    /// Unique per message; redeliveries repeat it.
    pub msgid: String,
    /// The group chat, absent in a one-to-one chat.
    pub chatid: Option<String>,
    /// Whether it is a one-to-one chat.
    pub single: bool,
    /// The sender.
    pub userid: String,
    /// The text, `None` for other message types.
    pub text: Option<String>,
}

/// A click on a card's button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardClick {
    /// The event's message id, for deduplication.
    pub msgid: String,
    /// Who clicked.
    pub userid: String,
    /// Where: a group chat, or absent in a one-to-one chat.
    pub chatid: Option<String>,
    /// The card's task id.
    pub task_id: String,
    /// The button's key.
    pub key: String,
}

/// One frame from WeCom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// The answer to one of our frames.
    Ack {
        /// The frame's req_id.
        req_id: String,
        /// 0 for success.
        errcode: i64,
        /// WeCom's words.
        errmsg: String,
    },
    /// A message to the bot.
    Message {
        /// Answer under this req_id.
        req_id: String,
        /// The message.
        msg: TextMessage,
    },
    /// A card click.
    Click {
        /// Update the card under this req_id (within 5 s).
        req_id: String,
        /// The click.
        click: CardClick,
    },
    /// Another connection of this bot took over.
    Disconnected,
    /// Anything else (other events, message types); ignored.
    Other(String),
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Parses one frame. Errors name what was wrong, for the log.
pub fn parse(text: &str) -> Result<Inbound, String> {
    if text.len() > MAX_FRAME {
        return Err(format!(
            "a frame of {} bytes (most {MAX_FRAME})",
            text.len()
        ));
    }
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let req_id = s(&v["headers"]["req_id"]);
    let cmd = v["cmd"].as_str();
    let body = &v["body"];
    match cmd {
        None | Some("") => {
            if req_id.is_empty() {
                return Err("an acknowledgement without a req_id".into());
            }
            Ok(Inbound::Ack {
                req_id,
                errcode: v["errcode"].as_i64().unwrap_or(0),
                errmsg: s(&v["errmsg"]),
            })
        }
        Some("aibot_msg_callback") => {
            let msgid = s(&body["msgid"]);
            let userid = s(&body["from"]["userid"]);
            if req_id.is_empty() || msgid.is_empty() || userid.is_empty() {
                return Err("a message callback without req_id, msgid or from.userid".into());
            }
            let text = (body["msgtype"] == "text").then(|| s(&body["text"]["content"]));
            Ok(Inbound::Message {
                req_id,
                msg: TextMessage {
                    msgid,
                    chatid: body["chatid"]
                        .as_str()
                        .filter(|c| !c.is_empty())
                        .map(str::to_string),
                    single: body["chattype"] != "group",
                    userid,
                    text,
                },
            })
        }
        Some("aibot_event_callback") => {
            let event = &body["event"];
            match event["eventtype"].as_str() {
                Some("disconnected_event") => Ok(Inbound::Disconnected),
                Some("template_card_event") => {
                    let card = &event["template_card_event"];
                    let click = CardClick {
                        msgid: s(&body["msgid"]),
                        userid: s(&body["from"]["userid"]),
                        chatid: body["chatid"]
                            .as_str()
                            .filter(|c| !c.is_empty())
                            .map(str::to_string),
                        task_id: s(&card["task_id"]),
                        key: s(&card["event_key"]),
                    };
                    if req_id.is_empty() || click.userid.is_empty() || click.key.is_empty() {
                        return Err("a card event without req_id, from.userid or event_key".into());
                    }
                    Ok(Inbound::Click { req_id, click })
                }
                other => Ok(Inbound::Other(format!("event {}", other.unwrap_or("?")))),
            }
        }
        Some("disconnected_event") => Ok(Inbound::Disconnected),
        Some(other) => Ok(Inbound::Other(other.to_string())),
    }
}

/// A request frame.
pub fn request(cmd: &str, req_id: &str, body: Value) -> String {
    json!({"cmd": cmd, "headers": {"req_id": req_id}, "body": body}).to_string()
}

/// `aibot_subscribe`.
pub fn subscribe(req_id: &str, bot_id: &str, secret: &str) -> String {
    request(
        "aibot_subscribe",
        req_id,
        json!({"bot_id": bot_id, "secret": secret}),
    )
}

/// `ping`.
pub fn ping(req_id: &str) -> String {
    json!({"cmd": "ping", "headers": {"req_id": req_id}}).to_string()
}

/// Content cut to WeCom's limit at a char boundary.
pub fn fit(content: &str) -> &str {
    let mut end = content.len().min(MAX_CONTENT);
    while !content.is_char_boundary(end) {
        end -= 1;
    }
    &content[..end]
}

/// A stream reply (the live message) to callback `req_id`.
pub fn stream(req_id: &str, stream_id: &str, finish: bool, content: &str) -> String {
    request(
        "aibot_respond_msg",
        req_id,
        json!({"msgtype": "stream", "stream": {"id": stream_id, "finish": finish, "content": fit(content)}}),
    )
}

/// A proactive Markdown message to a chat (a group chat id, or a userid).
pub fn markdown(req_id: &str, chatid: &str, content: &str) -> String {
    request(
        "aibot_send_msg",
        req_id,
        json!({"chatid": chatid, "msgtype": "markdown", "markdown": {"content": fit(content)}}),
    )
}

/// Whether a card task id is acceptable: `[A-Za-z0-9_-@]`, 1-128 bytes.
pub fn task_id_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@'))
}

/// The key of a button: `approve:<job>` or `deny:<job>`.
pub fn parse_key(key: &str) -> Option<(bool, u64)> {
    let (what, id) = key.split_once(':')?;
    let id = id.parse().ok()?;
    match what {
        "approve" => Some((true, id)),
        "deny" => Some((false, id)),
        _ => None,
    }
}

fn cut_chars(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

fn card(task_id: &str, job: u64, title: &str, detail: &str) -> Value {
    json!({
        "card_type": "button_interaction",
        "main_title": {"title": cut_chars(title, 36), "desc": format!("job {job}")},
        "sub_title_text": cut_chars(detail, 160),
        "task_id": task_id,
        "button_list": [
            {"text": "Approve", "style": 1, "key": format!("approve:{job}")},
            {"text": "Deny", "style": 2, "key": format!("deny:{job}")}
        ]
    })
}

/// A proactive approval card with Approve/Deny buttons.
pub fn approval_card(
    req_id: &str,
    chatid: &str,
    task_id: &str,
    job: u64,
    question: &str,
) -> String {
    request(
        "aibot_send_msg",
        req_id,
        json!({"chatid": chatid, "msgtype": "template_card",
               "template_card": card(task_id, job, &format!("Job {job} awaits approval"), question)}),
    )
}

/// The update of a clicked card, under the click's req_id.
pub fn card_update(req_id: &str, task_id: &str, job: u64, result: &str) -> String {
    request(
        "aibot_respond_update_msg",
        req_id,
        json!({"response_type": "update_template_card",
               "template_card": card(task_id, job, &format!("Job {job}"), result)}),
    )
}

/// A group message's text without the leading `@BotName `.
pub fn strip_mention(text: &str) -> String {
    let t = text.trim_start();
    match t.strip_prefix('@') {
        Some(rest) => match rest.find(char::is_whitespace) {
            Some(i) => rest[i..].trim().to_string(),
            None => String::new(),
        },
        None => t.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_acks_and_events_parse() {
        let m = r#"{"cmd":"aibot_msg_callback","headers":{"req_id":"r1"},"body":{"msgid":"m1","aibotid":"b","chatid":"wrkSFfCgAA","chattype":"group","from":{"userid":"zhangsan"},"msgtype":"text","text":{"content":"@moltbot nodes"}}}"#;
        match parse(m).unwrap() {
            Inbound::Message { req_id, msg } => {
                assert_eq!(req_id, "r1");
                assert_eq!(msg.chatid.as_deref(), Some("wrkSFfCgAA"));
                assert!(!msg.single);
                assert_eq!(msg.text.as_deref(), Some("@moltbot nodes"));
            }
            other => panic!("{other:?}"),
        }
        let ack = r#"{"headers":{"req_id":"p1"},"errcode":846608,"errmsg":"stream expired"}"#;
        assert_eq!(
            parse(ack).unwrap(),
            Inbound::Ack {
                req_id: "p1".into(),
                errcode: STREAM_EXPIRED,
                errmsg: "stream expired".into()
            }
        );
        let click = r#"{"cmd":"aibot_event_callback","headers":{"req_id":"r2"},"body":{"msgid":"e1","chatid":"g1","from":{"userid":"boss"},"msgtype":"event","event":{"eventtype":"template_card_event","template_card_event":{"card_type":"button_interaction","event_key":"approve:7","task_id":"job7_1"}}}}"#;
        match parse(click).unwrap() {
            Inbound::Click { req_id, click } => {
                assert_eq!(
                    (req_id.as_str(), click.key.as_str(), click.task_id.as_str()),
                    ("r2", "approve:7", "job7_1")
                );
                assert_eq!(parse_key(&click.key), Some((true, 7)));
            }
            other => panic!("{other:?}"),
        }
        let gone = r#"{"cmd":"aibot_event_callback","headers":{"req_id":"r3"},"body":{"msgtype":"event","event":{"eventtype":"disconnected_event"}}}"#;
        assert_eq!(parse(gone).unwrap(), Inbound::Disconnected);
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        for bad in [
            "",
            "nul",
            "[]",
            r#"{"errcode":0}"#,
            r#"{"cmd":"aibot_msg_callback","headers":{"req_id":"r"},"body":{}}"#,
            r#"{"cmd":"aibot_event_callback","headers":{"req_id":"r"},"body":{"event":{"eventtype":"template_card_event"}}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&"x".repeat(MAX_FRAME + 1)).is_err());
        assert_eq!(
            parse(r#"{"cmd":"aibot_new","headers":{}}"#).unwrap(),
            Inbound::Other("aibot_new".into())
        );
        for (k, want) in [
            ("deny:12", Some((false, 12))),
            ("approve:x", None),
            ("run:1", None),
            ("approve", None),
        ] {
            assert_eq!(parse_key(k), want, "{k}");
        }
    }

    #[test]
    fn frames_we_send_are_well_formed_and_bounded() {
        let f: Value =
            serde_json::from_str(&stream("r1", "s1", true, &"长".repeat(10_000))).unwrap();
        assert_eq!(f["cmd"], "aibot_respond_msg");
        assert_eq!(f["headers"]["req_id"], "r1");
        assert_eq!(f["body"]["stream"]["finish"], true);
        assert!(f["body"]["stream"]["content"].as_str().unwrap().len() <= MAX_CONTENT);
        let c: Value =
            serde_json::from_str(&approval_card("r2", "g1", "job7_1", 7, "run x?")).unwrap();
        assert_eq!(
            c["body"]["template_card"]["button_list"][0]["key"],
            "approve:7"
        );
        assert_eq!(c["body"]["template_card"]["task_id"], "job7_1");
        let u: Value = serde_json::from_str(&card_update("r3", "job7_1", 7, "approved")).unwrap();
        assert_eq!(u["body"]["response_type"], "update_template_card");
        assert!(
            task_id_ok("job7_17000@x-y") && !task_id_ok("job 7") && !task_id_ok(&"a".repeat(129))
        );
        assert_eq!(strip_mention("@moltbot run x on n1"), "run x on n1");
        assert_eq!(strip_mention("  nodes "), "nodes");
        assert_eq!(strip_mention("@moltbot"), "");
    }
}
