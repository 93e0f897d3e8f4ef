//! `weixin.toml`, in the bot's home beside its credential and its login.
//! It holds no secret (the bot token is in [`crate::login::TOKEN_FILE`],
//! written by `openclaw weixin login`), but it decides who may run jobs,
//! so the CLI refuses one that others may write.

use std::collections::BTreeMap;
use std::time::Duration;

use chat::{Access, Dms, UserLimits};
use serde::Deserialize;

/// Where approval requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalsIn {
    /// To each approver of this bot who wrote to it lately (WeChat lets a
    /// bot answer only people who wrote to it).
    Dm,
    /// Nowhere: the requester is told who may approve.
    Off,
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// iLink's base URL when set here or in `WEIXIN_API_URL`; else the one
    /// the login answered.
    pub api_url: Option<String>,
    /// Who may use the bot, with per-user limits.
    pub access: Access,
    /// Where approval requests go.
    pub approvals: ApprovalsIn,
    /// A job still running after this gets one progress message.
    pub progress_after: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    api_url: Option<String>,
    #[serde(default)]
    allowed_users: Vec<String>,
    allow_everyone: Option<bool>,
    approvals: Option<String>,
    progress_after: Option<String>,
    #[serde(default)]
    users: BTreeMap<String, UserLimits>,
}

/// Checks an iLink URL: https:// anywhere, http:// only to loopback.
pub fn check_api_url(url: &str) -> Result<(), String> {
    chat::access::check_endpoint(url, "https://", "http://", "iLink URL")
}

/// The API URL `text` and `env` set (`WEIXIN_API_URL` first), checked;
/// `None` when neither does. What `openclaw weixin login` needs: it runs
/// before anyone is listed.
pub fn api_url(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    let raw: Raw = toml::from_str(text).map_err(|e| format!("weixin.toml: {e}"))?;
    let url = env("WEIXIN_API_URL")
        .filter(|u| !u.trim().is_empty())
        .or(raw.api_url);
    if let Some(u) = &url {
        check_api_url(u)?;
    }
    Ok(url)
}

impl Config {
    /// Parses `weixin.toml` text; `env` gives `WEIXIN_API_URL`.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let api_url = api_url(text, env)?;
        let raw: Raw = toml::from_str(text).map_err(|e| format!("weixin.toml: {e}"))?;
        let approvals = match raw.approvals.as_deref() {
            None | Some("dm") => ApprovalsIn::Dm,
            Some("off") => ApprovalsIn::Off,
            Some(other) => {
                return Err(format!(
                    "weixin.toml: approvals = {other:?}: use \"dm\" or \"off\""
                ));
            }
        };
        let everyone = raw.allow_everyone.unwrap_or(false);
        // Every WeChat chat with the bot is one to one: the user list is
        // the allowlist.
        let access = Access {
            users: raw.allowed_users,
            groups: Vec::new(),
            chats: Vec::new(),
            dms: if everyone { Dms::Anyone } else { Dms::Listed },
            limits: raw.users,
        };
        access
            .check_admits_someone(
                everyone,
                "allowed_users (WeChat user ids, e.g. the owner's id `openclaw weixin login` printed)",
            )
            .map_err(|e| format!("weixin.toml: {e}"))?;
        let progress_after = match raw.progress_after {
            None => Duration::from_secs(600),
            Some(s) => proto::duration::parse(&s)
                .map_err(|e| format!("weixin.toml: progress_after = {s:?}: {e}"))?,
        };
        if progress_after.is_zero() {
            return Err("weixin.toml: progress_after must be more than 0".into());
        }
        Ok(Config {
            api_url,
            access,
            approvals,
            progress_after,
        })
    }

    /// The commented template.
    pub fn template() -> &'static str {
        r#"# Personal WeChat (微信) through Tencent's iLink bot API. The bot token is
# not here: `openclaw weixin login` saves it (mode 0600) beside this file.
# api_url = "https://ilinkai.weixin.qq.com"   # default: what the login answered
# Who may use the bot: WeChat user ids (`…@im.wechat`; the login prints the
# owner's). It refuses to start until one is listed, or allow_everyone = true
# (everyone who finds the bot).
allowed_users = []
allow_everyone = false
# Approval requests: "dm" sends each approver of this bot who wrote to it
# lately the job and its plan (they answer `approve 17` or `deny 17 because
# …`); "off" only tells the requester who may approve.
approvals = "dm"
# WeChat has no edits: a job gets its accepted message and its result, and
# one progress message if it still runs after this.
# progress_after = "10m"

# Per-user limits (globs); users not listed may use anything the gateway's
# policy allows.
# [users."o9cq80-example@im.wechat"]
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

    #[test]
    fn the_allowlist_is_required_and_urls_are_checked() {
        let e = Config::parse(Config::template(), &env(&[])).unwrap_err();
        assert!(e.contains("admits nobody"), "{e}");
        let text =
            Config::template().replace("allowed_users = []", "allowed_users = [\"u1@im.wechat\"]");
        let c = Config::parse(&text, &env(&[])).unwrap();
        assert_eq!(c.api_url, None);
        assert_eq!(c.approvals, ApprovalsIn::Dm);
        assert_eq!(c.progress_after, Duration::from_secs(600));
        assert!(
            c.access
                .admits("u1@im.wechat", "u1@im.wechat", true, false)
                .is_ok()
        );
        assert!(
            c.access
                .admits("mallory@im.wechat", "mallory@im.wechat", true, false)
                .is_err()
        );
        let open = Config::parse("allow_everyone = true\n", &env(&[])).unwrap();
        assert!(open.access.admits("anyone", "anyone", true, false).is_ok());
        let local =
            Config::parse(&text, &env(&[("WEIXIN_API_URL", "http://127.0.0.1:9")])).unwrap();
        assert_eq!(local.api_url.as_deref(), Some("http://127.0.0.1:9"));
        for bad in [
            "http://ilinkai.weixin.qq.com",
            "http://10.0.0.1/",
            "ftp://x",
        ] {
            let e = Config::parse(&format!("{text}\napi_url = \"{bad}\""), &env(&[])).unwrap_err();
            assert!(
                e.contains("iLink URL") || e.contains("loopback"),
                "{bad}: {e}"
            );
            assert!(
                api_url("", &move |_| Some(bad.to_string())).is_err(),
                "{bad}"
            );
        }
        assert_eq!(api_url("", &env(&[])), Ok(None));
        assert!(Config::parse(&format!("{text}\napprovals = \"card\""), &env(&[])).is_err());
        assert!(Config::parse(&format!("{text}\nprogress_after = \"0s\""), &env(&[])).is_err());
        assert!(Config::parse(&format!("{text}\nbogus = 1"), &env(&[])).is_err());
        let limited = format!("{text}\n[users.\"u1@im.wechat\"]\nnodes = [\"worker-cpu-*\"]\n");
        assert_eq!(
            Config::parse(&limited, &env(&[]))
                .unwrap()
                .access
                .limits
                .len(),
            1
        );
    }
}
