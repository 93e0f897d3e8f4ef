//! Who may use a chat front end, and for what. Pure: the front end reads
//! its own config file and fills an [`Access`]; group membership is asked
//! of the platform by the front end and passed in.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A token or secret: shown nowhere, not even in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret text, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Checks a platform endpoint URL: `secure` (e.g. `https://`) anywhere,
/// `plain` (e.g. `http://`) only to a loopback address, for local testing.
/// `what` names the URL in the error.
pub fn check_endpoint(url: &str, secure: &str, plain: &str, what: &str) -> Result<(), String> {
    if url.starts_with(secure) {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix(plain) else {
        return Err(format!(
            "{what} {:?} must start with {secure} (or {plain} to a loopback address)",
            proto::redact::url(url)
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        // `http://127.0.0.1:80@evil.example/` is evil.example.
        return Err(format!(
            "{what} {:?} names a user; plain {plain} is accepted only for a loopback address, without one",
            proto::redact::url(url)
        ));
    }
    let host = authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority);
    let loopback = host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "plain {plain} is accepted only for a loopback {what}, not {host:?}; use {secure}"
        ))
    }
}

/// Checks a bot config file's mode: nobody but its owner may change it (it
/// says who may run jobs), and one that holds secrets (`holds_secrets`)
/// must not be readable by others either. Pure: `mode` is the file's
/// permission bits.
pub fn check_file_mode(mode: u32, holds_secrets: bool, env_hint: &str) -> Result<(), String> {
    if mode & 0o022 != 0 {
        return Err(format!(
            "is writable by others (mode {:o}); it decides who may run jobs. Run 'chmod 600' on it",
            mode & 0o777
        ));
    }
    if holds_secrets && mode & 0o077 != 0 {
        return Err(format!(
            "holds secrets and is readable by others (mode {:o}); run 'chmod 600' on it, or give them as {env_hint}",
            mode & 0o777
        ));
    }
    Ok(())
}

/// What a user may use; globs, empty means anything.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserLimits {
    /// Nodes the user may name.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Roles the user may route by.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Named jobs the user may start.
    #[serde(default)]
    pub jobs: Vec<String>,
}

/// Which one-to-one messages (DMs) a bot answers. A DM has no chat the
/// operator listed, so the chat allowlist cannot apply to it: by default
/// only users the config names are answered there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dms {
    /// None (`allow_dms = false`).
    Off,
    /// Only from users the config lists by id, or members of a listed
    /// group (`allow_dms` not set): a config that admits by chat alone
    /// answers no DM.
    #[default]
    Listed,
    /// From anyone the user lists admit, everyone when they are empty
    /// (`allow_dms = true`, written by the operator).
    Anyone,
}

impl Dms {
    /// The policy for a config's `allow_dms` key: unset is [`Dms::Listed`].
    pub fn from_key(allow_dms: Option<bool>) -> Dms {
        match allow_dms {
            None => Dms::Listed,
            Some(true) => Dms::Anyone,
            Some(false) => Dms::Off,
        }
    }
}

/// Who may talk to a bot, where, and what each may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Platform user ids answered (empty, with no groups: anyone).
    pub users: Vec<String>,
    /// Platform groups whose members are answered.
    pub groups: Vec<String>,
    /// Chats (channels, group chats) answered in; empty: any. They do not
    /// apply to one-to-one messages, which [`Access::dms`] decides.
    pub chats: Vec<String>,
    /// Which one-to-one messages are answered.
    pub dms: Dms,
    /// Per-user limits.
    pub limits: BTreeMap<String, UserLimits>,
}

impl Access {
    /// Refuses a config that admits nobody unless `allow_everyone` says so.
    pub fn check_admits_someone(
        &self,
        allow_everyone: bool,
        users_key: &str,
    ) -> Result<(), String> {
        if allow_everyone
            || !self.users.is_empty()
            || !self.groups.is_empty()
            || !self.chats.is_empty()
        {
            return Ok(());
        }
        Err(format!(
            "the config admits nobody: list who may use the bot in {users_key}, or the chats it answers in, \
             or set allow_everyone = true to answer everyone who can reach it"
        ))
    }

    /// Whether admitting `user` depends on group membership (ask the platform).
    pub fn needs_groups(&self, user: &str) -> bool {
        !self.groups.is_empty() && !self.users.iter().any(|u| u == user)
    }

    /// Whether `user` may talk to the bot in `chat` (one-to-one when `dm`);
    /// `in_group` says whether the user is in one of the allowed groups.
    /// A one-to-one message is answered only as [`Access::dms`] says: it
    /// has no listed chat, so a config that admits by chat alone must not
    /// answer it.
    pub fn admits(&self, user: &str, chat: &str, dm: bool, in_group: bool) -> Result<(), String> {
        let open = self.users.is_empty() && self.groups.is_empty();
        let listed = in_group || self.users.iter().any(|u| u == user);
        if !open && !listed {
            return Err("sorry, I only take requests from the lab's registered users. Ask an admin to add you.".into());
        }
        if dm {
            return match self.dms {
                Dms::Anyone => Ok(()),
                Dms::Listed if listed => Ok(()),
                Dms::Listed => Err(
                    "sorry, I take direct messages only from users an admin listed by name; mention me in the lab's chat."
                        .into(),
                ),
                Dms::Off => Err(
                    "sorry, I don't take requests by direct message here; mention me in the lab's chat."
                        .into(),
                ),
            };
        }
        if !self.chats.is_empty() && !self.chats.iter().any(|c| c == chat) {
            return Err("sorry, I don't take requests in this chat.".into());
        }
        Ok(())
    }

    /// Whether `user` may use this resolved target: the node, role and
    /// named job as the gateway resolved them, not the words typed. A role
    /// limit is checked against the roles of the node the job lands on
    /// (`Target::node_roles`) on every path, named node included.
    pub fn permits(&self, user: &str, t: &Target<'_>) -> Result<(), String> {
        let Some(l) = self.limits.get(user) else {
            return Ok(());
        };
        let check = |what: &str, v: Option<&str>, globs: &[String]| match v {
            Some(v) if !globs.is_empty() && !proto::glob::any(globs, v) => Err(format!(
                "sorry, you may not use the {what} {v}; ask an admin if you need it."
            )),
            _ => Ok(()),
        };
        check("node", t.node, &l.nodes)?;
        check("role", t.role, &l.roles)?;
        if let (Some(node), Some(roles)) = (t.node, t.node_roles)
            && !l.roles.is_empty()
            && !roles.iter().any(|r| proto::glob::any(&l.roles, r))
        {
            return Err(format!(
                "sorry, you may use only nodes with the role {}, and {node} has none of them; ask an admin if you need it.",
                l.roles.join(" or ")
            ));
        }
        check("job", t.job, &l.jobs)
    }
}

/// A node's roles as routing sees them: its confirmed labels, and `gpu`
/// when it offers confirmed GPUs (the implicit role). Pure.
pub fn node_roles(n: &proto::NodeInfo) -> Vec<String> {
    let mut roles = n.labels.clone();
    if !n.confirmed_gpus().is_empty() && !roles.iter().any(|r| r == "gpu") {
        roles.push("gpu".into());
    }
    roles
}

/// A job's target as the gateway resolved it, for [`Access::permits`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The node it lands on, if one was chosen.
    pub node: Option<&'a str>,
    /// That node's roles: its confirmed labels, and `gpu` when it offers
    /// confirmed GPUs. `None` when the node is not known.
    pub node_roles: Option<&'a [String]>,
    /// The role asked for.
    pub role: Option<&'a str>,
    /// The named job.
    pub job: Option<&'a str>,
}

impl Access {
    /// Whether `user` may start a fan-out by `role` (or to all nodes).
    /// Its nodes are chosen by the gateway, so a user limited to certain
    /// nodes may not fan out at all: no limit could be checked per node
    /// before they run.
    pub fn permits_fanout(
        &self,
        user: &str,
        role: Option<&str>,
        job: Option<&str>,
    ) -> Result<(), String> {
        if let Some(l) = self.limits.get(user)
            && !l.nodes.is_empty()
        {
            return Err(
                "sorry, you may use only some nodes, so you may not run on all of them; name a node instead."
                    .into(),
            );
        }
        if role.is_none()
            && let Some(l) = self.limits.get(user)
            && !l.roles.is_empty()
        {
            return Err(format!(
                "sorry, you may use only nodes with the role {}; say e.g. `on all {} nodes`.",
                l.roles.join(" or "),
                l.roles.first().map(String::as_str).unwrap_or("gpu")
            ));
        }
        self.permits(
            user,
            &Target {
                role,
                job,
                ..Target::default()
            },
        )
    }
}

/// How a user may fan out, for `help`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanOut {
    /// Not at all: the user may use only some nodes.
    No,
    /// On every node, or every node of any role.
    Any,
    /// Only on nodes of this role (the first of the user's roles).
    Role(String),
}

impl Access {
    /// The named jobs `user` may start as far as their own limits go
    /// (where a job lands is checked again when it runs), in the order
    /// given. Pure: `jobs` is the gateway's chat context.
    pub fn jobs_for<'c>(
        &self,
        user: &str,
        jobs: &'c [(String, Vec<String>)],
    ) -> Vec<&'c (String, Vec<String>)> {
        let globs = self
            .limits
            .get(user)
            .map(|l| l.jobs.as_slice())
            .unwrap_or_default();
        jobs.iter()
            .filter(|(name, _)| globs.is_empty() || proto::glob::any(globs, name))
            .collect()
    }

    /// The nodes `user` may name, of `nodes`, in the order given.
    pub fn nodes_for(&self, user: &str, nodes: &[String]) -> Vec<String> {
        let globs = self
            .limits
            .get(user)
            .map(|l| l.nodes.as_slice())
            .unwrap_or_default();
        nodes
            .iter()
            .filter(|n| globs.is_empty() || proto::glob::any(globs, n))
            .cloned()
            .collect()
    }

    /// How `user` may fan out, as [`Access::permits_fanout`] decides it;
    /// `roles` are the roles in use, to name one a role glob admits.
    pub fn fan_out_for(&self, user: &str, roles: &[String]) -> FanOut {
        let Some(l) = self.limits.get(user) else {
            return FanOut::Any;
        };
        if !l.nodes.is_empty() {
            return FanOut::No;
        }
        if l.roles.is_empty() {
            return FanOut::Any;
        }
        let role = roles
            .iter()
            .chain(std::iter::once(&"gpu".to_string()))
            .find(|r| proto::glob::any(&l.roles, r))
            .cloned()
            .or_else(|| l.roles.iter().find(|r| !r.contains(['*', '?'])).cloned());
        match role {
            Some(r) if self.permits_fanout(user, Some(&r), None).is_ok() => FanOut::Role(r),
            _ => FanOut::No,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_secure_or_loopback_and_errors_hide_passwords() {
        let check = |u: &str| check_endpoint(u, "https://", "http://", "slack_api_url");
        for ok in [
            "https://slack.com/api",
            "http://127.0.0.1:9/api",
            "http://[::1]:5/api",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://slack.com/api",
            // A user in the authority: the host is after the @.
            "http://127.0.0.1:80@evil.example/api",
            "http://u:hunter2@127.0.0.1/api",
            "ftp://u:hunter2@x/?password=hunter2",
        ] {
            let e = check(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }

    fn access() -> Access {
        let mut limits = BTreeMap::new();
        limits.insert(
            "U2".to_string(),
            UserLimits {
                nodes: vec!["cpu-*".into()],
                roles: vec![],
                jobs: vec!["exp*".into()],
            },
        );
        Access {
            users: vec!["U1".into(), "U2".into()],
            groups: vec![],
            chats: vec!["C1".into()],
            dms: Dms::Off,
            limits,
        }
    }

    #[test]
    fn admits_by_user_chat_and_dm() {
        let a = access();
        let cases = [
            ("U1", "C1", false, false, None),
            ("U9", "C1", false, false, Some("registered users")),
            ("U9", "C1", false, true, None),
            ("U1", "C2", false, false, Some("in this chat")),
            ("U1", "D1", true, false, Some("direct message")),
        ];
        for (user, chat, dm, group, want) in cases {
            match (a.admits(user, chat, dm, group), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{user} {chat}: {e}"),
                (got, want) => panic!("{user} {chat}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn a_dm_needs_a_user_listed_by_name_unless_the_operator_opened_dms() {
        let channel_only = |dms| Access {
            chats: vec!["C1".into()],
            dms,
            ..Access::default()
        };
        let listed = |dms| Access {
            users: vec!["U1".into()],
            groups: vec!["S1".into()],
            chats: vec!["C1".into()],
            dms,
            ..Access::default()
        };
        let everyone = |dms| Access {
            dms,
            ..Access::default()
        };
        // (access, user, dm, in a listed group, admitted)
        let cases = [
            // The attack: a channel allowlist, and a DM from anyone.
            (channel_only(Dms::Listed), "U9", true, false, false),
            (channel_only(Dms::Listed), "U9", false, false, true),
            (channel_only(Dms::Off), "U9", true, false, false),
            (channel_only(Dms::Anyone), "U9", true, false, true),
            // allow_everyone: still no DM unless the operator opened them.
            (everyone(Dms::Listed), "U9", true, false, false),
            (everyone(Dms::Anyone), "U9", true, false, true),
            // Users listed by id, or members of a listed group.
            (listed(Dms::Listed), "U1", true, false, true),
            (listed(Dms::Listed), "U7", true, true, true),
            (listed(Dms::Listed), "U9", true, false, false),
            (listed(Dms::Anyone), "U9", true, false, false),
            (listed(Dms::Off), "U1", true, false, false),
        ];
        for (i, (a, user, dm, group, want)) in cases.into_iter().enumerate() {
            let chat = if dm { "D1" } else { "C1" };
            let got = a.admits(user, chat, dm, group);
            assert_eq!(got.is_ok(), want, "case {i}: {got:?}");
        }
        assert_eq!(Dms::from_key(None), Dms::Listed);
        assert_eq!(Dms::from_key(Some(true)), Dms::Anyone);
        assert_eq!(Dms::from_key(Some(false)), Dms::Off);
        assert_eq!(Dms::default(), Dms::Listed);
    }

    #[test]
    fn permits_checks_the_resolved_target() {
        let mut a = access();
        let t = |node, job| Target {
            node,
            job,
            ..Target::default()
        };
        assert!(a.permits("U1", &t(Some("gpu-1"), None)).is_ok());
        assert!(a.permits("U2", &t(Some("cpu-3"), Some("exp42"))).is_ok());
        assert!(a.permits("U2", &t(Some("gpu-1"), Some("exp42"))).is_err());
        assert!(
            a.permits("U2", &t(Some("cpu-3"), Some("training")))
                .is_err()
        );
        // A role limit holds on every path: by role, and by a named node
        // whose roles do not include it.
        a.limits.insert(
            "U3".into(),
            UserLimits {
                nodes: vec![],
                roles: vec!["cpu".into()],
                jobs: vec![],
            },
        );
        let gpu = ["gpu".to_string()];
        let cpu = ["cpu".to_string(), "zone=eu".to_string()];
        let cases: [(Target<'_>, bool); 5] = [
            (
                Target {
                    role: Some("gpu"),
                    ..Target::default()
                },
                false,
            ),
            (
                Target {
                    role: Some("cpu"),
                    ..Target::default()
                },
                true,
            ),
            (
                Target {
                    node: Some("worker-01"),
                    node_roles: Some(&gpu),
                    ..Target::default()
                },
                false,
            ),
            (
                Target {
                    node: Some("worker-01"),
                    node_roles: Some(&[]),
                    ..Target::default()
                },
                false,
            ),
            (
                Target {
                    node: Some("worker-02"),
                    node_roles: Some(&cpu),
                    ..Target::default()
                },
                true,
            ),
        ];
        for (target, ok) in cases {
            assert_eq!(a.permits("U3", &target).is_ok(), ok, "{target:?}");
        }
    }

    #[test]
    fn a_config_must_admit_someone() {
        let none = Access::default();
        assert!(none.check_admits_someone(false, "allowed_users").is_err());
        assert!(none.check_admits_someone(true, "allowed_users").is_ok());
        assert!(
            access()
                .check_admits_someone(false, "allowed_users")
                .is_ok()
        );
        assert_eq!(
            format!("{:?}", Secret::new("xoxb-1".into())),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn help_lists_what_each_user_may_use() {
        let mut a = access();
        a.limits.insert(
            "U3".into(),
            UserLimits {
                nodes: vec![],
                roles: vec!["c*".into()],
                jobs: vec![],
            },
        );
        let jobs: Vec<(String, Vec<String>)> = ["training", "exp42", "exp7"]
            .iter()
            .map(|n| (n.to_string(), vec![]))
            .collect();
        let names = |user: &str| -> Vec<&str> {
            a.jobs_for(user, &jobs)
                .into_iter()
                .map(|(n, _)| n.as_str())
                .collect()
        };
        assert_eq!(names("U1"), ["training", "exp42", "exp7"]);
        assert_eq!(names("U2"), ["exp42", "exp7"]);
        assert_eq!(names("U9"), ["training", "exp42", "exp7"]);
        let nodes = ["gpu-1".to_string(), "cpu-1".to_string()];
        assert_eq!(a.nodes_for("U1", &nodes), nodes);
        assert_eq!(a.nodes_for("U2", &nodes), ["cpu-1"]);
        let roles = ["cpu".to_string(), "gpu".to_string()];
        assert_eq!(a.fan_out_for("U1", &roles), FanOut::Any);
        assert_eq!(a.fan_out_for("U2", &roles), FanOut::No);
        assert_eq!(a.fan_out_for("U3", &roles), FanOut::Role("cpu".into()));
        assert_eq!(a.fan_out_for("U3", &[]), FanOut::No);
    }

    #[test]
    fn fan_outs_need_no_node_limit() {
        let mut a = access();
        assert!(a.permits_fanout("U1", None, None).is_ok());
        assert!(
            a.permits_fanout("U2", Some("gpu"), None)
                .unwrap_err()
                .contains("name a node")
        );
        a.limits.insert(
            "U3".into(),
            UserLimits {
                nodes: vec![],
                roles: vec!["cpu".into()],
                jobs: vec![],
            },
        );
        assert!(
            a.permits_fanout("U3", None, None)
                .unwrap_err()
                .contains("on all cpu nodes")
        );
        assert!(
            a.permits_fanout("U3", Some("gpu"), None)
                .unwrap_err()
                .contains("role gpu")
        );
        assert!(a.permits_fanout("U3", Some("cpu"), None).is_ok());
    }
}
