//! `openclaw weixin login`: the QR login, and the saved login it leaves in
//! the bot's home ([`TOKEN_FILE`], mode 0600). The bot token is a secret:
//! it goes only into that file and the `Authorization` header, never into a
//! log line, an error or the terminal.

use std::time::{Duration, Instant};

use chat::Secret;
use mesh::Home;
use serde::{Deserialize, Serialize};

use crate::config::check_api_url;
use crate::ilink::{ApiError, DEFAULT_API_URL, Ilink, QrCode, Step};

/// The saved login, in the bot's home.
pub const TOKEN_FILE: &str = "weixin-token.json";
/// How long a login waits for the phone.
const LOGIN_FOR: Duration = Duration::from_secs(480);
/// QR codes shown before giving up (each lasts a few minutes).
const MAX_CODES: u32 = 3;
/// How long one status poll may be held.
const STATUS_HOLD: Duration = Duration::from_secs(35);

/// A bot's login.
#[derive(Debug, Clone)]
pub struct Login {
    /// The bot's iLink id (`…@im.bot`).
    pub bot_id: String,
    /// Its token.
    pub token: Secret,
    /// The base URL the login answered, if any.
    pub api_url: Option<String>,
    /// Who scanned the code: the bot's owner.
    pub owner: Option<String>,
}

/// The file's form: ours, not iLink's.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    bot_id: String,
    token: String,
    api_url: Option<String>,
    owner: Option<String>,
}

/// The chat namespace of bot `bot_id`: `weixin:` and the id with `@` and
/// `.` written `-` (`b0f5…@im.bot` is `weixin:b0f5…-im-bot`), as Tencent's
/// plugin names accounts, since a namespace scope is `[A-Za-z0-9_-]`.
pub fn namespace_of(bot_id: &str) -> Result<String, String> {
    let scope: String = bot_id
        .chars()
        .map(|c| if c == '@' || c == '.' { '-' } else { c })
        .collect();
    let ns = format!("weixin:{scope}");
    proto::identity::validate_namespace(&ns)
        .map_err(|e| format!("the iLink bot id cannot name a namespace: {e}"))?;
    Ok(ns)
}

/// Reads the saved login; the error says to log in.
pub fn load(home: &Home) -> Result<Login, String> {
    let text = home
        .read_private(TOKEN_FILE, "run `openclaw weixin login` first")
        .map_err(|e| e.to_string())?;
    let s: Saved = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not a saved WeChat login ({e}); run `openclaw weixin login` again",
            home.path(TOKEN_FILE).display()
        )
    })?;
    if s.token.is_empty() || s.bot_id.is_empty() {
        return Err(format!(
            "{}: the saved login is empty; run `openclaw weixin login` again",
            home.path(TOKEN_FILE).display()
        ));
    }
    Ok(Login {
        bot_id: s.bot_id,
        token: Secret::new(s.token),
        api_url: s.api_url.filter(|u| check_api_url(u).is_ok()),
        owner: s.owner,
    })
}

fn save(home: &Home, l: &Login) -> Result<(), String> {
    let s = Saved {
        bot_id: l.bot_id.clone(),
        token: l.token.expose().to_string(),
        api_url: l.api_url.clone(),
        owner: l.owner.clone(),
    };
    let text = serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?;
    home.write_private(TOKEN_FILE, text.as_bytes())
        .map_err(|e| format!("cannot save the login: {e}"))
}

/// `content` as a QR code for a terminal: two rows of modules a line,
/// dark on light, with its quiet zone.
pub fn qr_text(content: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(content.as_bytes())
        .map_err(|e| format!("cannot draw the login QR code: {e}"))?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// What the terminal side of a login does: show text, ask for a number.
pub trait Prompt {
    /// Shows a line (or a QR code) to the person logging in.
    fn show(&self, text: &str);
    /// Asks for the number WeChat shows on the phone; `None`: none given.
    fn ask(&self, question: &str) -> Option<String>;
}

fn show_code(p: &dyn Prompt, q: &QrCode) -> Result<(), String> {
    p.show(&qr_text(&q.qrcode_img_content)?);
    p.show(&format!(
        "Scan this with WeChat on the phone that will own the bot (or open {} there).",
        q.qrcode_img_content
    ));
    Ok(())
}

fn failed(what: &str, e: &ApiError) -> String {
    format!("{what}: {e}; check the network and run `openclaw weixin login` again")
}

/// A host name iLink may redirect the login to.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
}

/// Logs in by QR code against `api_url` (iLink's own by default), saves
/// the login in `home` and returns it.
pub async fn login(home: &Home, api_url: Option<String>, p: &dyn Prompt) -> Result<Login, String> {
    let base = api_url.unwrap_or_else(|| DEFAULT_API_URL.to_string());
    check_api_url(&base)?;
    let first = Ilink::new(&base, None)?;
    let mut code = first
        .qrcode()
        .await
        .map_err(|e| failed("cannot get a login QR code", &e))?;
    show_code(p, &code)?;
    let mut api = first;
    let mut codes = 1;
    let mut verify: Option<String> = None;
    let mut scanned = false;
    let deadline = Instant::now() + LOGIN_FOR;
    loop {
        if Instant::now() >= deadline {
            return Err(format!(
                "the QR code was not confirmed within {} minutes; run `openclaw weixin login` again",
                LOGIN_FOR.as_secs() / 60
            ));
        }
        let st = match api
            .qr_status(&code.qrcode, verify.as_deref(), STATUS_HOLD)
            .await
        {
            Ok(st) => st,
            Err(ApiError::Timeout) => continue,
            Err(e @ (ApiError::Refused(..) | ApiError::Expired)) => {
                return Err(failed("iLink refused the login", &e));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask how the login stands; asking again");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        match st.step() {
            Step::Wait => {}
            Step::Scanned => {
                verify = None;
                if !scanned {
                    p.show("Scanned: confirm the login on the phone.");
                    scanned = true;
                }
            }
            Step::NeedVerifyCode => {
                let Some(n) = p.ask("Enter the number WeChat shows on the phone: ") else {
                    return Err("the login needs the number WeChat shows on the phone; run `openclaw weixin login` again and enter it".into());
                };
                verify = Some(n.trim().chars().take(16).collect());
                continue;
            }
            Step::Expired | Step::VerifyBlocked => {
                codes += 1;
                if codes > MAX_CODES {
                    return Err(format!(
                        "{MAX_CODES} QR codes expired unconfirmed; run `openclaw weixin login` again when the phone is at hand"
                    ));
                }
                p.show("The QR code expired; here is a new one.");
                api = Ilink::new(&base, None)?;
                code = api
                    .qrcode()
                    .await
                    .map_err(|e| failed("cannot get a new login QR code", &e))?;
                show_code(p, &code)?;
                scanned = false;
                verify = None;
            }
            Step::Redirect => match st.redirect_host.as_deref() {
                Some(h) if valid_host(h) => {
                    tracing::info!(host = %h, "the login moved to another iLink host");
                    api = Ilink::new(&format!("https://{h}"), None)?;
                }
                _ => tracing::warn!("a login redirect without a usable host; polling on"),
            },
            Step::Bound => {
                return match load(home) {
                    Ok(l) => {
                        p.show("This WeChat bot is already connected to this OpenClaw; the saved login stands.");
                        Ok(l)
                    }
                    Err(_) => Err("this WeChat bot is already bound to another OpenClaw; unbind it in WeChat, then run `openclaw weixin login` again".into()),
                };
            }
            Step::Confirmed => {
                let (Some(bot_id), Some(token)) = (
                    st.ilink_bot_id.filter(|b| !b.is_empty()),
                    st.bot_token.filter(|t| !t.is_empty()),
                ) else {
                    return Err("iLink confirmed the login without a bot id or token; run `openclaw weixin login` again".into());
                };
                namespace_of(&bot_id)?;
                let api_url = match st.baseurl.filter(|u| !u.is_empty()) {
                    Some(u) if check_api_url(&u).is_ok() => Some(u),
                    Some(u) => {
                        tracing::warn!(url = %proto::redact::url(&u), "ignoring the login's base URL: neither https nor loopback");
                        None
                    }
                    None => None,
                };
                let l = Login {
                    bot_id,
                    token: Secret::new(token),
                    api_url,
                    owner: st.ilink_user_id.filter(|u| !u.is_empty()),
                };
                save(home, &l)?;
                return Ok(l);
            }
            Step::Unknown => {
                tracing::warn!(status = %st.status.escape_debug(), "an unknown login status; polling on")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_from_bot_ids() {
        assert_eq!(
            namespace_of("b0f5860fdecb@im.bot").unwrap(),
            "weixin:b0f5860fdecb-im-bot"
        );
        assert!(namespace_of("a/b").is_err());
        assert!(namespace_of("").is_err());
        assert!(namespace_of(&"x".repeat(100)).is_err());
    }

    #[test]
    fn the_saved_login_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("bot"));
        assert!(load(&home).unwrap_err().contains("openclaw weixin login"));
        let l = Login {
            bot_id: "b1@im.bot".into(),
            token: Secret::new("tok-secret".into()),
            api_url: Some("http://127.0.0.1:1".into()),
            owner: Some("o1@im.wechat".into()),
        };
        save(&home, &l).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(home.path(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = load(&home).unwrap();
        assert_eq!(back.token.expose(), "tok-secret");
        assert!(!format!("{back:?}").contains("tok-secret"));
        std::fs::set_permissions(
            home.path(TOKEN_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(load(&home).is_err(), "a readable token is refused");
    }

    #[test]
    fn qr_codes_and_hosts() {
        let q = qr_text("https://liteapp.weixin.qq.com/q/abc").unwrap();
        assert!(q.lines().count() > 10 && q.contains('█'), "{q}");
        assert!(valid_host("sh.ilinkai.weixin.qq.com"));
        assert!(!valid_host("evil.example/x"));
        assert!(!valid_host("a@b"));
    }
}
