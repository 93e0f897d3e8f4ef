//! `moltbot.toml`, in the bot's home beside its credential.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use chat::{Access, Dms, Secret, UserLimits};

/// Where approval buttons go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalsIn {
    /// In the request's thread.
    Thread,
    /// By direct message to each approver that is a Slack user.
    Dm,
    /// Both.
    Both,
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Slack Web API base URL.
    pub slack_api_url: String,
    /// `xoxb-` bot token.
    pub bot_token: Secret,
    /// `xapp-` app-level token for Socket Mode.
    pub app_token: Secret,
    /// Who may use the bot, where (channels), and per-user limits; its
    /// groups are Slack user groups (ids like S0123).
    pub access: Access,
    /// Where approval buttons go.
    pub approvals: ApprovalsIn,
    /// Job artifacts up to this size are uploaded into the job's thread.
    pub artifact_upload_max: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    slack_api_url: Option<String>,
    bot_token: Option<String>,
    app_token: Option<String>,
    #[serde(default)]
    allowed_channels: Vec<String>,
    #[serde(default)]
    allowed_users: Vec<String>,
    #[serde(default)]
    allowed_groups: Vec<String>,
    allow_dms: Option<bool>,
    allow_everyone: Option<bool>,
    approvals: Option<String>,
    #[serde(default)]
    users: BTreeMap<String, UserLimits>,
    artifact_upload_max_bytes: Option<u64>,
}

/// Checks moltbot.toml's mode (see [`chat::access::check_file_mode`]).
pub fn check_file_mode(mode: u32, text: &str) -> Result<(), String> {
    let has_tokens = text
        .lines()
        .map(str::trim_start)
        .any(|l| l.starts_with("bot_token") || l.starts_with("app_token"));
    chat::access::check_file_mode(mode, has_tokens, "SLACK_BOT_TOKEN and SLACK_APP_TOKEN")
}

/// The default Slack API base.
pub const SLACK_API_URL: &str = "https://slack.com/api";

/// Checks the API URL: https anywhere, http only to loopback (for local testing).
pub fn check_api_url(url: &str) -> Result<(), String> {
    chat::access::check_endpoint(
        url.trim_end_matches('/'),
        "https://",
        "http://",
        "Slack API URL",
    )
}

impl Config {
    /// Parses `moltbot.toml` text; tokens come from the environment first
    /// (`SLACK_BOT_TOKEN`, `SLACK_APP_TOKEN`, `SLACK_API_URL`), then the file.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.to_string())?;
        let slack_api_url = env("SLACK_API_URL")
            .or(raw.slack_api_url)
            .unwrap_or_else(|| SLACK_API_URL.to_string())
            .trim_end_matches('/')
            .to_string();
        check_api_url(&slack_api_url)?;
        let bot_token = env("SLACK_BOT_TOKEN")
            .or(raw.bot_token)
            .ok_or("no bot token: set SLACK_BOT_TOKEN (xoxb-...) or bot_token in moltbot.toml")?;
        let app_token = env("SLACK_APP_TOKEN").or(raw.app_token).ok_or(
            "no app-level token: set SLACK_APP_TOKEN (xapp-..., with connections:write) or app_token in moltbot.toml",
        )?;
        if !bot_token.starts_with("xoxb-") {
            return Err("the bot token must start with xoxb-".into());
        }
        if !app_token.starts_with("xapp-") {
            return Err("the app-level token must start with xapp- (Socket Mode needs one)".into());
        }
        let approvals = match raw.approvals.as_deref() {
            None | Some("thread") => ApprovalsIn::Thread,
            Some("dm") => ApprovalsIn::Dm,
            Some("both") => ApprovalsIn::Both,
            Some(other) => {
                return Err(format!(
                    "approvals = {other:?}: use \"thread\", \"dm\" or \"both\""
                ));
            }
        };
        let access = Access {
            users: raw.allowed_users,
            groups: raw.allowed_groups,
            chats: raw.allowed_channels,
            dms: Dms::from_key(raw.allow_dms),
            limits: raw.users,
        };
        access
            .check_admits_someone(
                raw.allow_everyone.unwrap_or(false),
                "allowed_users (Slack user ids), allowed_groups (user group ids) or allowed_channels",
            )
            .map_err(|e| format!("moltbot.toml: {e}"))?;
        Ok(Config {
            slack_api_url,
            bot_token: Secret::new(bot_token),
            app_token: Secret::new(app_token),
            access,
            approvals,
            artifact_upload_max: raw.artifact_upload_max_bytes.unwrap_or(1 << 20),
        })
    }

    /// The commented template.
    pub fn template() -> &'static str {
        r#"# moltbot: the Slack front end. Tokens are best given as environment
# variables (SLACK_BOT_TOKEN, SLACK_APP_TOKEN); they are never logged.
# Slack Web API base URL (env SLACK_API_URL); GovSlack: https://slack-gov.com/api
slack_api_url = "https://slack.com/api"
# Who may use the bot. moltbot refuses to start until at least one list is
# set, or allow_everyone = true (every member of the workspace; Slack
# Connect guests from other workspaces are never answered).
# Channels the bot answers in (ids like C0123); empty: any channel it is in.
allowed_channels = []
# Users the bot answers (ids like U0123), and user groups (ids like S0123)
# whose members it answers; both empty: anyone in the allowed channels.
allowed_users = []
allowed_groups = []
allow_everyone = false
# Direct messages have no channel, so allowed_channels cannot apply to them.
# Unset: answer DMs only from users listed in allowed_users or allowed_groups.
# true: from anyone the lists above admit (everyone when they are empty).
# false: no DMs.
# allow_dms = true
# Where Approve/Deny buttons are posted: "thread" (the request's thread),
# "dm" (a direct message to each approver that is a Slack user), or "both".
approvals = "thread"
# A job's artifacts (openclaw run --artifact, or a named job's) up to this
# size are uploaded as files into the job's thread; larger ones are named
# with the command that fetches them. 0: none.
artifact_upload_max_bytes = 1048576

# Per-user limits (globs); users not listed may use anything the gateway's
# policy allows.
# [users.U024BE7LH]
# nodes = ["worker-cpu-*"]
# roles = ["cpu"]
# jobs = ["hello"]
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
    fn urls() {
        for ok in [
            "https://slack.com/api",
            "http://127.0.0.1:9/api",
            "http://localhost:1/api",
            "http://[::1]:5/api",
        ] {
            assert!(check_api_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://slack.com/api",
            "http://10.0.0.1/api",
            "ftp://x",
            "slack.com",
        ] {
            assert!(check_api_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_come_from_env_and_never_show() {
        let tokens = env(&[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_APP_TOKEN", "xapp-2")]);
        // The template admits nobody until someone is listed.
        let e = Config::parse(Config::template(), &tokens).unwrap_err();
        assert!(e.contains("admits nobody"), "{e}");
        let text = Config::template().replace("allowed_users = []", "allowed_users = [\"U1\"]");
        let c = Config::parse(&text, &tokens).unwrap();
        assert_eq!(c.bot_token.expose(), "xoxb-1");
        // Unless the operator writes allow_dms, DMs come only from listed users.
        assert_eq!(c.access.dms, Dms::Listed);
        let open =
            Config::parse("allowed_channels = [\"C1\"]\nallow_dms = true\n", &tokens).unwrap();
        assert_eq!(open.access.dms, Dms::Anyone);
        let channel_only = Config::parse("allowed_channels = [\"C1\"]\n", &tokens).unwrap();
        assert!(
            channel_only
                .access
                .admits("U9", "D9", true, false)
                .unwrap_err()
                .contains("listed by name")
        );
        assert!(channel_only.access.admits("U9", "C1", false, false).is_ok());
        assert!(!format!("{c:?}").contains("xoxb-1"));
        assert!(
            Config::parse("", &env(&[]))
                .unwrap_err()
                .contains("SLACK_BOT_TOKEN")
        );
        assert!(
            Config::parse(
                "",
                &env(&[("SLACK_BOT_TOKEN", "xoxp-1"), ("SLACK_APP_TOKEN", "xapp-2")])
            )
            .is_err()
        );
        let e = Config::parse(
            "slack_api_url = \"http://evil.example/api\"",
            &env(&[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_APP_TOKEN", "xapp-2")]),
        )
        .unwrap_err();
        assert!(e.contains("loopback"), "{e}");
    }

    #[test]
    fn access_control() {
        let c = Config::parse(
            "allowed_channels = [\"C1\"]\nallowed_users = [\"U1\", \"U2\"]\nallow_dms = false\n[users.U2]\nnodes = [\"worker-cpu-*\"]\n",
            &env(&[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_APP_TOKEN", "xapp-2")]),
        )
        .unwrap();
        assert!(c.access.admits("U1", "C1", false, false).is_ok());
        assert!(
            c.access.admits("U9", "C1", false, true).is_ok(),
            "a member of an allowed group"
        );
        assert!(!c.access.needs_groups("U9"), "no groups configured");
        let g = Config::parse(
            "allowed_users = [\"U1\"]
allowed_groups = [\"S1\"]
",
            &env(&[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_APP_TOKEN", "xapp-2")]),
        )
        .unwrap();
        assert!(g.access.needs_groups("U9") && !g.access.needs_groups("U1"));
        assert!(
            c.access
                .admits("U9", "C1", false, false)
                .unwrap_err()
                .contains("registered users")
        );
        assert!(
            c.access
                .admits("U1", "C2", false, false)
                .unwrap_err()
                .contains("in this chat")
        );
        assert!(
            c.access
                .admits("U1", "D1", true, false)
                .unwrap_err()
                .contains("direct message")
        );
        assert!(c.access.permits("U2", &node("worker-cpu-01")).is_ok());
        assert!(
            c.access
                .permits("U2", &node("worker-gpu-01"))
                .unwrap_err()
                .contains("worker-gpu-01")
        );
        assert!(c.access.permits("U1", &node("worker-gpu-01")).is_ok());
    }

    fn node(name: &str) -> chat::access::Target<'_> {
        chat::access::Target {
            node: Some(name),
            ..Default::default()
        }
    }

    #[test]
    fn file_modes() {
        check_file_mode(0o600, "bot_token = \"xoxb-1\"").unwrap();
        check_file_mode(0o644, "allowed_users = [\"U1\"]").unwrap();
        assert!(check_file_mode(0o644, "bot_token = \"xoxb-1\"").is_err());
        assert!(check_file_mode(0o666, "").unwrap_err().contains("chmod"));
        assert!(check_file_mode(0o620, "").is_err());
    }
}
