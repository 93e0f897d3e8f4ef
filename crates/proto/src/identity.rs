//! Identities, in two namespaces that can never collide. Pure.
//!
//! * A **certificate identity** is a node or client name from a verified
//!   certificate: `[a-z0-9-]{1,63}` (see [`crate::names::validate_name`]).
//! * A **chat identity** is a person a bot speaks for:
//!   `KIND:SCOPE/USER`, e.g. `slack:T0123ABCD/U024BE7LH` for a Slack user
//!   of workspace `T0123ABCD`, `wecom:ww1234/zhangsan`, or
//!   `weixin:b0f5860fdecb-im-bot/o9cq80@im.wechat` for a WeChat user of the
//!   iLink bot `b0f5860fdecb@im.bot` (`@` and `.` of a bot id are written
//!   `-`, since a scope is `[A-Za-z0-9_-]`). The part before
//!   `/` is the bot's *namespace*, fixed on the gateway for each bot
//!   certificate; a bot may speak only for users of its own namespace.
//!   The kind `lab` is the chat prompt of `openclaw lab` (`lab:LAB/you`):
//!   a user who is neither a Slack, a WeCom nor a WeChat user, so that policy rules
//!   and the audit log never take one for the other.
//!
//! A certificate name cannot contain `:` or `/`, so no chat identity can
//! equal a certificate identity, and a bot can never speak for `admin`.

/// Chat kinds the gateway knows: the three platforms, and `lab` for the
/// lab's chat prompt (`openclaw chat` with a bot credential of that kind).
pub const CHAT_KINDS: &[&str] = &["slack", "wecom", "lab", "weixin"];
/// Longest namespace scope (team or corp id).
pub const MAX_SCOPE_LEN: usize = 64;
/// Longest chat user id.
pub const MAX_USER_LEN: usize = 64;

fn scope_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
}

fn user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')
}

fn shown(s: &str) -> String {
    s.chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// Checks a bot namespace: `KIND:SCOPE` with a known kind.
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    let Some((kind, scope)) = ns.split_once(':') else {
        return Err(format!(
            "chat namespace {:?} must be KIND:SCOPE, e.g. slack:T0123ABCD (the Slack team id)",
            shown(ns)
        ));
    };
    if !CHAT_KINDS.contains(&kind) {
        return Err(format!(
            "chat namespace {:?}: unknown kind {:?}; use one of {}",
            shown(ns),
            shown(kind),
            CHAT_KINDS.join(", ")
        ));
    }
    if scope.is_empty() || scope.len() > MAX_SCOPE_LEN || !scope.chars().all(scope_char) {
        return Err(format!(
            "chat namespace {:?}: the scope must be 1-{MAX_SCOPE_LEN} characters from A-Z, a-z, 0-9, '-' and '_'",
            shown(ns)
        ));
    }
    Ok(())
}

/// Builds the chat identity of `user` in namespace `ns`, checking both.
pub fn chat_identity(ns: &str, user: &str) -> Result<String, String> {
    validate_namespace(ns)?;
    if user.is_empty() || user.len() > MAX_USER_LEN || !user.chars().all(user_char) {
        return Err(format!(
            "chat user id {:?} must be 1-{MAX_USER_LEN} characters from A-Z, a-z, 0-9, '-', '_', '.' and '@'",
            shown(user)
        ));
    }
    Ok(format!("{ns}/{user}"))
}

/// Checks that `id` is a well-formed chat identity inside namespace `ns`
/// (the namespace the gateway configured for the bot that sent it).
pub fn check_chat_identity_in(ns: &str, id: &str) -> Result<(), String> {
    let Some((id_ns, user)) = id.split_once('/') else {
        return Err(format!(
            "{:?} is not a chat identity; the bot must send {ns}/USER",
            shown(id)
        ));
    };
    if id_ns != ns {
        return Err(format!(
            "{:?} is outside this bot's namespace {ns}; a bot may act only for its own chat users",
            shown(id)
        ));
    }
    chat_identity(ns, user).map(|_| ())
}

/// The policy identity of a lab member's credential (role `user`):
/// `user:NAME`, so that policy tells members from admins and bots.
pub fn user_identity(name: &str) -> String {
    format!("user:{name}")
}

/// Whether an identity is a chat identity (as opposed to a certificate name).
pub fn is_chat_identity(id: &str) -> bool {
    id.contains(':')
}

/// Checks an identity or identity glob written in policy (`users`,
/// `approvers`): either a certificate name (lowercase, digits, `-`) or a
/// chat identity `KIND:SCOPE/USER`; `*` and `?` are allowed in either.
/// Bare Slack ids such as `U024BE7LH` are refused, since they would never
/// match anything.
pub fn validate_identity_pattern(p: &str) -> Result<(), String> {
    let glob = |c: char| matches!(c, '*' | '?');
    if p.is_empty() || p.len() > 200 {
        return Err("an identity must be 1-200 characters".into());
    }
    if let Some(name) = p.strip_prefix("user:") {
        if !name.is_empty()
            && name
                .chars()
                .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-') || glob(c))
        {
            return Ok(());
        }
        return Err(format!(
            "{:?}: a lab member is written user:NAME, NAME as in 'openclaw client create NAME --role user'",
            shown(p)
        ));
    }
    if let Some((kind, rest)) = p.split_once(':') {
        let kind_ok = CHAT_KINDS.contains(&kind) || kind.chars().all(glob);
        let rest_ok = rest
            .chars()
            .all(|c| user_char(c) || glob(c) || c == '/' || c == ':');
        if kind_ok && rest_ok && (rest.contains('/') || rest.chars().any(glob)) {
            return Ok(());
        }
        return Err(format!(
            "{:?} is not a chat identity; write KIND:SCOPE/USER, e.g. slack:T0123ABCD/U024BE7LH",
            shown(p)
        ));
    }
    if p.chars()
        .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-') || glob(c))
    {
        return Ok(());
    }
    Err(format!(
        "{:?} is neither a certificate name (a-z, 0-9, '-') nor a chat identity (slack:TEAM/USER); \
         chat users are written with their namespace, e.g. slack:T0123ABCD/{}",
        shown(p),
        shown(p)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in [
            "slack:T0123ABCD",
            "wecom:ww12_34-x",
            "lab:LAB",
            "weixin:b0f5860fdecb-im-bot",
        ] {
            validate_namespace(ok).unwrap();
        }
        for bad in [
            "",
            "slack",
            "slack:",
            "irc:T1",
            "lab",
            "lab:",
            "slack:T1/U1",
            "slack:T 1",
            "admin",
            "weixin:b0f5860fdecb@im.bot",
        ] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bot_speaks_only_inside_its_namespace() {
        let ns = "slack:T0LAB";
        check_chat_identity_in(ns, "slack:T0LAB/U0ALICE").unwrap();
        let cases = [
            ("admin", "not a chat identity"),
            ("slack:T0OTHER/U0ALICE", "outside this bot's namespace"),
            ("wecom:T0LAB/U0ALICE", "outside this bot's namespace"),
            ("lab:T0LAB/U0ALICE", "outside this bot's namespace"),
            ("slack:T0LAB/", "chat user id"),
            ("slack:T0LAB/U0/../admin", "chat user id"),
            ("slack:T0LAB/U0 ALICE", "chat user id"),
        ];
        for (id, want) in cases {
            let e = check_chat_identity_in(ns, id).unwrap_err();
            assert!(e.contains(want), "{id}: {e}");
        }
    }

    #[test]
    fn identities_never_collide_with_certificate_names() {
        let id = chat_identity("slack:T0LAB", "admin").unwrap();
        assert_eq!(id, "slack:T0LAB/admin");
        assert!(crate::names::validate_name(&id).is_err());
        assert!(is_chat_identity(&id));
        assert!(!is_chat_identity("admin"));
    }

    #[test]
    fn policy_patterns() {
        for ok in [
            "admin",
            "intern-*",
            "*",
            "slack:T0LAB/U0BOSS",
            "slack:T0LAB/*",
            "slack:*",
            "*:*/U1",
            "user:alice",
            "user:*",
            "user:lab-?",
        ] {
            validate_identity_pattern(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "U0BOSS",
            "Admin",
            "slack:T0LAB",
            "irc:x/y",
            "a b",
            "",
            "user:",
            "user:Alice",
            "user:a/b",
        ] {
            assert!(validate_identity_pattern(bad).is_err(), "{bad}");
        }
    }
}
