//! `wecom.toml`, in the bot's home beside its credential. The bot id and
//! secret come only from the environment (`WECOM_BOT_ID`,
//! `WECOM_BOT_SECRET`), so the file holds no secret.

use std::collections::BTreeMap;
use std::time::Duration;

use chat::{Access, Dms, Secret, UserLimits};
use serde::Deserialize;

/// WeCom's long-connection endpoint.
pub const WS_URL: &str = "wss://openws.work.weixin.qq.com";

/// Where approval cards go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalsIn {
    /// In the chat the request came from.
    Card,
    /// To each approver that is a user of this corp, one to one.
    Dm,
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The WebSocket URL.
    pub ws_url: String,
    /// The bot id (`WECOM_BOT_ID`).
    pub bot_id: String,
    /// The bot secret (`WECOM_BOT_SECRET`).
    pub secret: Secret,
    /// Who may use the bot and where (chat ids), with per-user limits.
    pub access: Access,
    /// Where approval cards go.
    pub approvals: ApprovalsIn,
    /// A job's stream is finished after this, before WeCom's limit of
    /// about six minutes, and later changes go as new messages.
    pub stream_limit: Duration,
    /// Time between pings; two unanswered pings mean the connection is dead.
    pub heartbeat: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    ws_url: Option<String>,
    #[serde(default)]
    allowed_users: Vec<String>,
    #[serde(default)]
    allowed_chats: Vec<String>,
    allow_dms: Option<bool>,
    allow_everyone: Option<bool>,
    approvals: Option<String>,
    stream_limit: Option<String>,
    heartbeat: Option<String>,
    #[serde(default)]
    users: BTreeMap<String, UserLimits>,
}

/// Checks the URL: wss:// anywhere, ws:// only to loopback (for testing).
pub fn check_ws_url(url: &str) -> Result<(), String> {
    chat::access::check_endpoint(url, "wss://", "ws://", "WeCom URL")
}

fn duration(key: &str, v: Option<String>, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) => proto::duration::parse(&s)
            .map_err(|e| format!("wecom.toml: {key} = {s:?}: {e}"))
            .and_then(|d| {
                if d.is_zero() {
                    Err(format!("wecom.toml: {key} must be more than 0"))
                } else {
                    Ok(d)
                }
            }),
    }
}

impl Config {
    /// Parses `wecom.toml` text; `env` gives `WECOM_BOT_ID`,
    /// `WECOM_BOT_SECRET` and optionally `WECOM_WS_URL`.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| format!("wecom.toml: {e}"))?;
        let ws_url = env("WECOM_WS_URL")
            .or(raw.ws_url)
            .unwrap_or_else(|| WS_URL.to_string());
        check_ws_url(&ws_url)?;
        let bot_id = env("WECOM_BOT_ID")
            .filter(|s| !s.trim().is_empty())
            .ok_or("no bot id: set WECOM_BOT_ID (the intelligent robot's BotID from the WeCom admin console)")?;
        let secret = env("WECOM_BOT_SECRET")
            .filter(|s| !s.trim().is_empty())
            .ok_or(
                "no bot secret: set WECOM_BOT_SECRET (the robot's Secret for long-connection mode)",
            )?;
        let approvals = match raw.approvals.as_deref() {
            None | Some("card") => ApprovalsIn::Card,
            Some("dm") => ApprovalsIn::Dm,
            Some(other) => {
                return Err(format!(
                    "wecom.toml: approvals = {other:?}: use \"card\" or \"dm\""
                ));
            }
        };
        let access = Access {
            users: raw.allowed_users,
            groups: Vec::new(),
            chats: raw.allowed_chats,
            dms: Dms::from_key(raw.allow_dms),
            limits: raw.users,
        };
        access
            .check_admits_someone(
                raw.allow_everyone.unwrap_or(false),
                "allowed_users (WeCom userids) or allowed_chats (group chat ids)",
            )
            .map_err(|e| format!("wecom.toml: {e}"))?;
        let stream_limit = duration("stream_limit", raw.stream_limit, Duration::from_secs(330))?;
        if stream_limit > Duration::from_secs(350) {
            return Err(
                "wecom.toml: stream_limit must be under 6 minutes (WeCom ends a stream then)"
                    .into(),
            );
        }
        Ok(Config {
            ws_url,
            bot_id,
            secret: Secret::new(secret),
            access,
            approvals,
            stream_limit,
            heartbeat: duration("heartbeat", raw.heartbeat, Duration::from_secs(30))?,
        })
    }

    /// The commented template.
    pub fn template() -> &'static str {
        r#"# The WeCom (企业微信) intelligent robot, long-connection mode. The bot id
# and secret come from the environment only: WECOM_BOT_ID, WECOM_BOT_SECRET.
# ws_url = "wss://openws.work.weixin.qq.com"   # private deployments differ
# Who may use the bot. It refuses to start until one list is set, or
# allow_everyone = true (everyone who can reach the robot).
allowed_users = []     # WeCom userids
allowed_chats = []     # group chat ids; empty: any chat the robot is in
allow_everyone = false
# One-to-one chats have no chat id, so allowed_chats cannot apply to them.
# Unset: answer them only from users listed in allowed_users.
# true: from anyone allowed_users admits (everyone when it is empty).
# false: never.
# allow_dms = true
# Where approval cards go: "card" (the request's chat) or "dm" (each approver).
approvals = "card"
# A job's live message is a WeCom stream, which WeCom ends after about six
# minutes; after stream_limit the bot finishes it and sends state changes
# as new messages.
# stream_limit = "5m30s"
# heartbeat = "30s"

# Per-user limits (globs); users not listed may use anything the gateway's
# policy allows.
# [users.zhangsan]
# nodes = ["worker-cpu-*"]
# jobs = ["exp*"]
"#
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(map: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            map.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const ENV: &[(&str, &str)] = &[("WECOM_BOT_ID", "bot1"), ("WECOM_BOT_SECRET", "s3cret")];

    #[test]
    fn urls() {
        for ok in [
            "wss://openws.work.weixin.qq.com",
            "ws://127.0.0.1:9/ws",
            "ws://[::1]:5",
        ] {
            assert!(check_ws_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ws://openws.work.weixin.qq.com",
            "http://x",
            "ws://10.0.0.1/",
        ] {
            assert!(check_ws_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_come_from_env_and_never_show() {
        let e = Config::parse(Config::template(), &env(ENV)).unwrap_err();
        assert!(e.contains("admits nobody"), "{e}");
        let text =
            Config::template().replace("allowed_users = []", "allowed_users = [\"zhangsan\"]");
        let c = Config::parse(&text, &env(ENV)).unwrap();
        assert_eq!((c.bot_id.as_str(), c.secret.expose()), ("bot1", "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.stream_limit, Duration::from_secs(330));
        assert_eq!(c.approvals, ApprovalsIn::Card);
        assert_eq!(c.access.dms, Dms::Listed);
        let chats = Config::parse("allowed_chats = [\"wrG1\"]\n", &env(ENV)).unwrap();
        assert!(
            chats
                .access
                .admits("mallory", "mallory", true, false)
                .is_err()
        );
        assert!(chats.access.admits("mallory", "wrG1", false, false).is_ok());
        let open =
            Config::parse("allowed_chats = [\"wrG1\"]\nallow_dms = true\n", &env(ENV)).unwrap();
        assert!(
            open.access
                .admits("mallory", "mallory", true, false)
                .is_ok()
        );
        assert!(
            Config::parse(&text, &env(&[("WECOM_BOT_ID", "b")]))
                .unwrap_err()
                .contains("WECOM_BOT_SECRET")
        );
        assert!(Config::parse(&format!("{text}\nstream_limit = \"7m\""), &env(ENV)).is_err());
        assert!(Config::parse(&format!("{text}\napprovals = \"thread\""), &env(ENV)).is_err());
        assert!(
            Config::parse(&format!("{text}\nws_url = \"ws://example.com\""), &env(ENV))
                .unwrap_err()
                .contains("loopback")
        );
        assert!(Config::parse(&format!("{text}\nbogus = 1"), &env(ENV)).is_err());
    }
}
