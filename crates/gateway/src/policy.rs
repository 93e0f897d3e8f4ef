//! Gateway job policy: pure evaluation of `[policy]` rules. First match
//! wins; no match means the default action.

use std::time::Duration;

/// What policy says about a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run it.
    Allow,
    /// Refuse it.
    Deny,
    /// Hold it for an approver.
    Approve,
}

impl Action {
    /// Parses `allow`, `deny` or `approve`.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            "approve" => Some(Action::Approve),
            _ => None,
        }
    }
}

/// One `[[policy.rules]]` entry. An empty list matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// Globs over the node name.
    pub nodes: Vec<String>,
    /// Globs over the requester identity.
    pub users: Vec<String>,
    /// Globs over argv[0] and over the whole command line.
    pub commands: Vec<String>,
    /// Globs over the named job.
    pub jobs: Vec<String>,
    /// What to do.
    pub action: Option<Action>,
    /// Who may approve (for `approve`).
    pub approvers: Vec<String>,
    /// Whether the requester may approve their own job.
    pub allow_self_approval: bool,
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Action when no rule matches, for jobs from admin certificates (the CLI).
    pub default: Action,
    /// Action when no rule matches, for jobs a bot submits for a chat user.
    pub chat_default: Action,
    /// Approvers when the default is `approve`.
    pub approvers: Vec<String>,
    /// Rules, first match wins.
    pub rules: Vec<Rule>,
    /// How long a job waits for approval.
    pub approval_timeout: Duration,
    /// Whether `--shell` jobs are allowed from the CLI.
    pub allow_shell: bool,
    /// Whether shell jobs are allowed from chat.
    pub chat_shell: bool,
    /// Whether admins and lab members may forward ports to nodes
    /// (`openclaw forward`; a member only to nodes [`may_forward`] allows);
    /// each node's `forward_ports` still decides which.
    pub allow_forward: bool,
    /// Interactive sessions (`openclaw shell`, `run -t`) for requesters
    /// no [`Policy::shell_rules`] entry names: on top of the job policy,
    /// which still decides the command.
    pub shell: Action,
    /// `[[policy.shell_rules]]`: per node and requester, first match wins
    /// (their `commands` and `jobs` are always empty).
    pub shell_rules: Vec<Rule>,
    /// Whether session recordings keep what was typed too (output always).
    pub record_input: bool,
    /// Globs over the env keys a requester may set; the fixed dangerous
    /// list ([`proto::env::DANGEROUS`]) is refused whatever these say.
    pub env_allow: Vec<String>,
    /// Globs over env keys whose values are never shown (job show, chat).
    pub env_secret: Vec<String>,
    /// `[[policy.files]]`: who may copy files to or from which nodes
    /// (`openclaw cp`), first match wins; see [`may_copy`].
    pub files: Vec<FileRule>,
}

/// One `[[policy.files]]` entry. An empty list matches anything; no
/// direction matches both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRule {
    /// Globs over the node name.
    pub nodes: Vec<String>,
    /// Globs over the requester identity (`admin`, `user:NAME`).
    pub users: Vec<String>,
    /// Only uploads or only downloads.
    pub direction: Option<proto::files::Direction>,
    /// `files = "allow" | "deny" | "approve"`.
    pub files: Action,
}

impl Policy {
    /// The keys of `env` whose values are secret (`env_secret`).
    pub fn secret_keys(&self, env: &[(String, String)]) -> Vec<String> {
        env.iter()
            .filter(|(k, _)| proto::glob::any(&self.env_secret, k))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Names the rule that decided, for messages: `policy rule 2`, or the
/// default that applied (the chat default for a bot's request).
pub fn rule_name(rule: Option<usize>, chat: bool) -> String {
    match rule {
        Some(i) => format!("policy rule {}", i + 1),
        None if chat => "the default chat policy (policy.chat_default)".into(),
        None => "the default policy (policy.default)".into(),
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            default: Action::Allow,
            chat_default: Action::Approve,
            approvers: vec!["admin".into()],
            rules: vec![],
            approval_timeout: Duration::from_secs(3600),
            allow_shell: true,
            allow_forward: true,
            shell: Action::Allow,
            shell_rules: vec![],
            record_input: false,
            chat_shell: false,
            env_allow: proto::env::DEFAULT_ALLOW
                .iter()
                .map(|s| s.to_string())
                .collect(),
            env_secret: ["*TOKEN*", "*SECRET*", "*PASSWORD*", "*_KEY", "*PASSWD*"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            files: vec![],
        }
    }
}

/// The facts a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Requester identity.
    pub user: &'a str,
    /// Target node.
    pub node: &'a str,
    /// Exact argv.
    pub argv: &'a [String],
    /// Named job, if any.
    pub job: Option<&'a str>,
    /// A bot submitted it for a chat user.
    pub chat: bool,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Index of the matching rule, if one matched.
    pub rule: Option<usize>,
    /// Who may approve.
    pub approvers: Vec<String>,
    /// Whether the requester may approve their own job.
    pub allow_self_approval: bool,
}

fn list_matches(patterns: &[String], candidates: &[&str]) -> bool {
    patterns.is_empty() || candidates.iter().any(|c| proto::glob::any(patterns, c))
}

/// Programs that run another program named in their arguments; a command
/// rule sees through them.
const WRAPPERS: &[&str] = &[
    "busybox", "env", "nice", "nohup", "timeout", "stdbuf", "time", "setsid", "ionice", "taskset",
    "chrt", "xargs", "exec", "command", "builtin", "sudo", "doas", "unbuffer",
];

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The names a deny or approve rule's `commands` are matched against:
/// argv[0] as given and its base name (so a rule for `rm` also catches
/// `/bin/rm`), the whole line in both spellings, and, behind a wrapper
/// such as `busybox`, `env` or `nice`, every later argument as a possible
/// program. This over-matches on purpose: it only ever makes a deny or
/// approve rule apply more often. Allow rules match argv[0] and the line
/// exactly, so `/tmp/x/python` never passes for `python`.
pub fn command_candidates(argv: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    let Some((first, tail)) = argv.split_first() else {
        return vec![String::new()];
    };
    let spell = |i: usize| {
        let base = basename(&argv[i]);
        std::iter::once(base)
            .chain(argv[i + 1..].iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    };
    push(first.clone());
    push(basename(first).to_string());
    push(argv.join(" "));
    push(spell(0));
    if WRAPPERS.contains(&basename(first)) {
        for (j, a) in tail.iter().enumerate().take(16) {
            push(a.clone());
            push(basename(a).to_string());
            push(spell(j + 1));
        }
    }
    out
}

/// Evaluates the policy for one job.
pub fn evaluate(policy: &Policy, f: &Facts<'_>) -> Decision {
    let wide = command_candidates(f.argv);
    let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
    let line = f.argv.join(" ");
    let exact = [f.argv.first().map(String::as_str).unwrap_or(""), &line];
    for (i, rule) in policy.rules.iter().enumerate() {
        let cands: &[&str] = if rule.action.unwrap_or(Action::Allow) == Action::Allow {
            &exact
        } else {
            &wide
        };
        let matched = list_matches(&rule.nodes, &[f.node])
            && list_matches(&rule.users, &[f.user])
            && list_matches(&rule.commands, cands)
            && (rule.jobs.is_empty() || f.job.is_some_and(|j| proto::glob::any(&rule.jobs, j)));
        if matched {
            let action = rule.action.unwrap_or(Action::Allow);
            let approvers = if rule.approvers.is_empty() {
                policy.approvers.clone()
            } else {
                rule.approvers.clone()
            };
            return Decision {
                action,
                rule: Some(i),
                approvers,
                allow_self_approval: rule.allow_self_approval,
            };
        }
    }
    Decision {
        action: if f.chat {
            policy.chat_default
        } else {
            policy.default
        },
        rule: None,
        approvers: policy.approvers.clone(),
        allow_self_approval: false,
    }
}

/// Whether `user` (a lab member, `user:NAME`) may forward ports to `node`:
/// only if policy lets it run something there. `Err` with the reason when
/// the node is denied to it as a whole (a `deny` rule that names no
/// command or job, or a `deny` default) and no earlier rule for this user
/// and node allows (or holds for approval) some command or job. A `deny`
/// rule about some commands only leaves the node's ports open.
pub fn may_forward(policy: &Policy, user: &str, node: &str) -> Result<(), String> {
    match node_denied(policy, user, node) {
        Some(rule) => Err(format!(
            "refused by {rule}: {user} may not use node {node}, so it may not forward to it either"
        )),
        None => Ok(()),
    }
}

/// Whether `user` may copy files to or from `node` (`openclaw cp`): the
/// first `[[policy.files]]` rule that matches the node, the user and the
/// direction decides; `approve` is refused, naming the rule, because a
/// copy streams live and is never held. With no rule matching, an admin
/// may, and a lab member (`member`) may where it may forward: not to a
/// node policy denies it as a whole ([`may_forward`]).
pub fn may_copy(
    policy: &Policy,
    user: &str,
    node: &str,
    direction: proto::files::Direction,
    member: bool,
) -> Result<(), String> {
    let (to_from, way) = match direction {
        proto::files::Direction::ToNode => ("to", "upload"),
        proto::files::Direction::FromNode => ("from", "download"),
    };
    for (i, r) in policy.files.iter().enumerate() {
        let matched = list_matches(&r.nodes, &[node])
            && list_matches(&r.users, &[user])
            && r.direction.is_none_or(|d| d == direction);
        if !matched {
            continue;
        }
        let rule = format!("policy.files[{i}]");
        return match r.files {
            Action::Allow => Ok(()),
            Action::Deny => Err(format!(
                "refused by {rule} (files = \"deny\"): {user} may not copy files {to_from} node {node} ({way})"
            )),
            Action::Approve => Err(format!(
                "refused: {rule} says files = \"approve\" for {user} {to_from} node {node} ({way}), \
                 but copies stream live and are never held for approval; ask an admin to make that rule \"allow\" or \"deny\""
            )),
        };
    }
    if member && let Some(rule) = node_denied(policy, user, node) {
        return Err(format!(
            "refused by {rule}: {user} may not use node {node}, so it may not copy files {to_from} it either"
        ));
    }
    Ok(())
}

/// The rule (or default) that denies `user` the whole of `node`, if any:
/// a `deny` that names no command or job (or a `deny` default), with no
/// earlier rule for this user and node that allows or holds something.
fn node_denied(policy: &Policy, user: &str, node: &str) -> Option<String> {
    let d = evaluate(
        policy,
        &Facts {
            user,
            node,
            argv: &[],
            job: None,
            chat: false,
        },
    );
    let before = d.rule.unwrap_or(policy.rules.len());
    let relaxed = || {
        policy.rules.iter().take(before).any(|r| {
            r.action != Some(Action::Deny)
                && list_matches(&r.nodes, &[node])
                && list_matches(&r.users, &[user])
        })
    };
    (d.action == Action::Deny && !relaxed()).then(|| rule_name(d.rule, false))
}

/// What `policy.shell` and `[[policy.shell_rules]]` say about an
/// interactive session of `user` on `node`, and the name of what decided
/// (for messages). Pure.
pub fn shell(policy: &Policy, user: &str, node: &str) -> (Decision, String) {
    for (i, rule) in policy.shell_rules.iter().enumerate() {
        if list_matches(&rule.nodes, &[node]) && list_matches(&rule.users, &[user]) {
            let approvers = if rule.approvers.is_empty() {
                policy.approvers.clone()
            } else {
                rule.approvers.clone()
            };
            let d = Decision {
                action: rule.action.unwrap_or(Action::Deny),
                rule: Some(i),
                approvers,
                allow_self_approval: rule.allow_self_approval,
            };
            return (d, format!("shell rule {} (policy.shell_rules)", i + 1));
        }
    }
    let d = Decision {
        action: policy.shell,
        rule: None,
        approvers: policy.approvers.clone(),
        allow_self_approval: false,
    };
    (d, "the default shell policy (policy.shell)".into())
}

/// The stricter of a job's decision and its session's ([`shell`]): a deny
/// from either, else an approval from either (the session's approvers
/// when it asks, else the job's), else allow. Each comes with the name of
/// what decided. Pure.
pub fn stricter(job: (Decision, String), session: (Decision, String)) -> (Decision, String) {
    let rank = |a: Action| match a {
        Action::Allow => 0,
        Action::Approve => 1,
        Action::Deny => 2,
    };
    if rank(session.0.action) >= rank(job.0.action) && session.0.action != Action::Allow {
        session
    } else {
        job
    }
}

/// Whether `who` may approve a job requested by `requester`.
pub fn may_approve(
    approvers: &[String],
    allow_self: bool,
    requester: &str,
    who: &str,
) -> Result<(), String> {
    if !approvers.iter().any(|a| a == who) {
        return Err(format!(
            "{who} is not an approver for this job (approvers: {})",
            approvers.join(", ")
        ));
    }
    if who == requester && !allow_self {
        let others: Vec<&str> = approvers
            .iter()
            .filter(|a| *a != who)
            .map(String::as_str)
            .collect();
        let next = if others.is_empty() {
            "nobody else may approve it: add an approver to the policy rule that holds it, \
             or have someone else submit it"
                .to_string()
        } else {
            format!("ask another approver ({})", others.join(", "))
        };
        return Err(format!(
            "{who} requested this job and may not approve it; {next}"
        ));
    }
    Ok(())
}

/// One decision for a fan-out, from the decisions for each of its nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Combined {
    /// Every node is allowed.
    Allow,
    /// Node `node` (an index into the decisions) is denied by its rule.
    Deny {
        /// Index of the first denied node.
        node: usize,
        /// The rule that denied it.
        rule: Option<usize>,
    },
    /// Held for one approval of the whole fan-out.
    Approve {
        /// Those who may approve every held node.
        approvers: Vec<String>,
        /// The requester may approve it (every held node allows that).
        allow_self: bool,
    },
    /// Nodes need approval from disjoint approvers; nobody can approve it whole.
    NoCommonApprover {
        /// Two nodes whose approvers do not overlap.
        nodes: (usize, usize),
    },
}

/// Combines per-node decisions, strictest first: any deny denies the
/// whole fan-out; otherwise any approval holds it, for approvers named by
/// every held node's rule (never the union: an approver for one node must
/// not release another's).
pub fn combine(decisions: &[Decision]) -> Combined {
    if let Some((node, d)) = decisions
        .iter()
        .enumerate()
        .find(|(_, d)| d.action == Action::Deny)
    {
        return Combined::Deny { node, rule: d.rule };
    }
    let mut held = decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.action == Action::Approve);
    let Some((first, d)) = held.next() else {
        return Combined::Allow;
    };
    let mut approvers = d.approvers.clone();
    let mut allow_self = d.allow_self_approval;
    for (i, d) in held {
        approvers.retain(|a| d.approvers.contains(a));
        allow_self &= d.allow_self_approval;
        if approvers.is_empty() {
            return Combined::NoCommonApprover { nodes: (first, i) };
        }
    }
    Combined::Approve {
        approvers,
        allow_self,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_rules_decide_per_node_user_and_direction() {
        use proto::files::Direction::{FromNode, ToNode};
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let p = Policy {
            files: vec![
                FileRule {
                    nodes: s(&["secure-*"]),
                    users: vec![],
                    direction: Some(ToNode),
                    files: Action::Deny,
                },
                FileRule {
                    nodes: vec![],
                    users: s(&["user:carol"]),
                    direction: None,
                    files: Action::Approve,
                },
            ],
            rules: vec![Rule {
                users: s(&["user:dave"]),
                nodes: s(&["gpu-*"]),
                action: Some(Action::Deny),
                ..Rule::default()
            }],
            ..Policy::default()
        };
        // Uploads to secure nodes are denied to everyone, downloads not.
        let e = may_copy(&p, "admin", "secure-01", ToNode, false).unwrap_err();
        assert!(e.contains("policy.files[0]") && e.contains("upload"), "{e}");
        assert!(may_copy(&p, "admin", "secure-01", FromNode, false).is_ok());
        assert!(may_copy(&p, "user:bob", "gpu-01", ToNode, true).is_ok());
        // approve is refused, naming the rule.
        let e = may_copy(&p, "user:carol", "gpu-01", FromNode, true).unwrap_err();
        assert!(
            e.contains("policy.files[1]") && e.contains("approve"),
            "{e}"
        );
        // A member denied the node as a whole may not copy there either.
        let e = may_copy(&p, "user:dave", "gpu-01", FromNode, true).unwrap_err();
        assert!(
            e.contains("policy rule 1") && e.contains("copy files from"),
            "{e}"
        );
        assert!(may_copy(&p, "user:dave", "cpu-01", FromNode, true).is_ok());
    }

    #[test]
    fn shell_rules_decide_per_node_and_user_on_top_of_the_job_policy() {
        let rule = |nodes: &[&str], users: &[&str], a: Action| Rule {
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
            action: Some(a),
            ..Rule::default()
        };
        let p = Policy {
            shell: Action::Allow,
            shell_rules: vec![
                rule(&["secure-*"], &["admin"], Action::Approve),
                rule(&["secure-*"], &[], Action::Deny),
                rule(&[], &["user:bob"], Action::Deny),
            ],
            ..Policy::default()
        };
        let act = |u: &str, n: &str| shell(&p, u, n).0.action;
        // (user, node, what the session rules say)
        let table = [
            ("admin", "secure-01", Action::Approve),
            ("user:alice", "secure-01", Action::Deny),
            ("user:bob", "gpu-01", Action::Deny),
            ("user:alice", "gpu-01", Action::Allow),
        ];
        for (u, n, want) in table {
            assert_eq!(act(u, n), want, "{u} on {n}");
        }
        assert!(
            shell(&p, "user:alice", "secure-01")
                .1
                .contains("shell rule 2")
        );
        assert!(shell(&p, "user:alice", "gpu-01").1.contains("policy.shell"));
        let closed = Policy {
            shell: Action::Deny,
            ..Policy::default()
        };
        assert_eq!(shell(&closed, "admin", "n").0.action, Action::Deny);
        // The stricter of job and session decides.
        let d = |a: Action| Decision {
            action: a,
            rule: None,
            approvers: vec![],
            allow_self_approval: false,
        };
        let pick = |j: Action, s: Action| stricter((d(j), "job".into()), (d(s), "shell".into())).1;
        let table = [
            (Action::Allow, Action::Allow, "job"),
            (Action::Allow, Action::Deny, "shell"),
            (Action::Allow, Action::Approve, "shell"),
            (Action::Deny, Action::Approve, "job"),
            (Action::Approve, Action::Approve, "shell"),
            (Action::Approve, Action::Allow, "job"),
            (Action::Approve, Action::Deny, "shell"),
        ];
        for (j, s, want) in table {
            assert_eq!(pick(j, s), want, "job {j:?}, shell {s:?}");
        }
    }

    #[test]
    fn a_member_forwards_only_to_nodes_policy_lets_it_use() {
        let rule = |users: &[&str], nodes: &[&str], commands: &[&str], action| Rule {
            users: users.iter().map(|s| s.to_string()).collect(),
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            commands: commands.iter().map(|s| s.to_string()).collect(),
            action: Some(action),
            ..Rule::default()
        };
        let mut p = Policy {
            rules: vec![
                rule(&["user:alice"], &["secure-*"], &[], Action::Deny),
                rule(&["user:*"], &["gpu-*"], &["rm"], Action::Deny),
                rule(&["user:bob"], &["cpu-*"], &["python3"], Action::Allow),
            ],
            ..Policy::default()
        };
        let may = |p: &Policy, u: &str, n: &str| may_forward(p, u, n).is_ok();
        // A node-wide deny closes the node's ports to that member only.
        assert!(!may(&p, "user:alice", "secure-01"));
        assert!(
            may_forward(&p, "user:alice", "secure-01")
                .unwrap_err()
                .contains("policy rule 1")
        );
        assert!(may(&p, "user:bob", "secure-01"));
        // A rule about a command leaves the node usable.
        assert!(may(&p, "user:alice", "gpu-01"));
        // A deny default closes every node no rule relaxes for the member.
        p.default = Action::Deny;
        assert!(!may(&p, "user:alice", "cpu-01"));
        assert!(may(&p, "user:bob", "cpu-01"));
        // An approve default: the node is usable (with an approver).
        p.default = Action::Approve;
        assert!(may(&p, "user:alice", "cpu-01"));
        // A node closed but for one command is usable: its ports stay open
        // (a notebook the command serves); one closed whole is not.
        p.rules.insert(
            0,
            rule(&["user:alice"], &["secure-02"], &["python3"], Action::Allow),
        );
        assert!(may(&p, "user:alice", "secure-02"));
        assert!(!may(&p, "user:alice", "secure-01"));
    }

    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn policy() -> Policy {
        Policy {
            default: Action::Allow,
            rules: vec![
                Rule {
                    commands: s(&["rm", "*rm -rf*"]),
                    action: Some(Action::Deny),
                    ..Default::default()
                },
                Rule {
                    nodes: s(&["worker-gpu-*"]),
                    action: Some(Action::Approve),
                    approvers: s(&["admin", "U024BE7LH"]),
                    ..Default::default()
                },
                Rule {
                    users: s(&["intern-*"]),
                    action: Some(Action::Deny),
                    ..Default::default()
                },
                Rule {
                    jobs: s(&["nightly"]),
                    action: Some(Action::Allow),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn first_match_wins() {
        let p = policy();
        let argv = s(&["python", "train.py"]);
        let rm = s(&["sh", "-c", "rm -rf /"]);
        let cases = [
            (
                Facts {
                    user: "admin",
                    node: "worker-cpu-01",
                    argv: &argv,
                    job: None,
                    chat: false,
                },
                Action::Allow,
                None,
            ),
            (
                Facts {
                    user: "admin",
                    node: "worker-gpu-01",
                    argv: &argv,
                    job: None,
                    chat: false,
                },
                Action::Approve,
                Some(1),
            ),
            (
                Facts {
                    user: "admin",
                    node: "worker-gpu-01",
                    argv: &rm,
                    job: None,
                    chat: false,
                },
                Action::Deny,
                Some(0),
            ),
            (
                Facts {
                    user: "intern-bob",
                    node: "worker-cpu-01",
                    argv: &argv,
                    job: None,
                    chat: false,
                },
                Action::Deny,
                Some(2),
            ),
            (
                Facts {
                    user: "x",
                    node: "worker-cpu-01",
                    argv: &argv,
                    job: Some("nightly"),
                    chat: false,
                },
                Action::Allow,
                Some(3),
            ),
        ];
        for (facts, action, rule) in cases {
            let d = evaluate(&p, &facts);
            assert_eq!((d.action, d.rule), (action, rule), "{facts:?}");
        }
        let d = evaluate(
            &p,
            &Facts {
                user: "admin",
                node: "worker-gpu-01",
                argv: &argv,
                job: None,
                chat: false,
            },
        );
        assert_eq!(d.approvers, s(&["admin", "U024BE7LH"]));
    }

    #[test]
    fn default_action_and_approvers() {
        let p = Policy {
            default: Action::Approve,
            approvers: s(&["boss"]),
            ..Default::default()
        };
        let argv = s(&["true"]);
        let d = evaluate(
            &p,
            &Facts {
                user: "u",
                node: "n",
                argv: &argv,
                job: None,
                chat: false,
            },
        );
        assert_eq!(d.action, Action::Approve);
        assert_eq!(d.approvers, s(&["boss"]));
        assert!(!d.allow_self_approval);
    }

    #[test]
    fn approval_rules() {
        let approvers = s(&["admin", "U1"]);
        assert!(may_approve(&approvers, false, "U2", "U1").is_ok());
        let e = may_approve(&approvers, false, "U1", "U1").unwrap_err();
        assert!(
            e.contains("may not approve it; ask another approver (admin)"),
            "{e}"
        );
        let e = may_approve(&s(&["admin"]), false, "admin", "admin").unwrap_err();
        assert!(e.contains("nobody else may approve it"), "{e}");
        assert!(may_approve(&approvers, true, "U1", "U1").is_ok());
        let e = may_approve(&approvers, true, "U1", "U9").unwrap_err();
        assert!(e.contains("not an approver"), "{e}");
    }

    #[test]
    fn deny_rules_see_through_paths_and_wrappers() {
        let p = policy();
        for argv in [
            vec!["rm", "-rf", "/data"],
            vec!["/bin/rm", "-rf", "/data"],
            vec!["busybox", "rm", "-rf", "/data"],
            vec!["/usr/bin/env", "A=1", "rm", "-rf", "/data"],
            vec!["nice", "-n", "5", "rm", "x"],
            vec!["timeout", "5", "/bin/rm", "x"],
        ] {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            let d = evaluate(
                &p,
                &Facts {
                    user: "admin",
                    node: "worker-cpu-01",
                    argv: &argv,
                    job: None,
                    chat: false,
                },
            );
            assert_eq!(d.action, Action::Deny, "{argv:?}");
        }
    }

    #[test]
    fn chat_jobs_use_the_chat_default() {
        let p = Policy::default();
        let argv = vec!["ls".to_string()];
        let f = |chat| Facts {
            user: "slack:T1/U1",
            node: "n",
            argv: &argv,
            job: None,
            chat,
        };
        assert_eq!(evaluate(&p, &f(true)).action, Action::Approve);
        assert_eq!(evaluate(&p, &f(false)).action, Action::Allow);
    }

    #[test]
    fn fan_out_decisions_combine_strictest_first() {
        let d = |action, approvers: &[&str], selfok| Decision {
            action,
            rule: Some(approvers.len()),
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            allow_self_approval: selfok,
        };
        let allow = d(Action::Allow, &[], false);
        let cases: Vec<(Vec<Decision>, Combined)> = vec![
            (vec![], Combined::Allow),
            (vec![allow.clone(), allow.clone()], Combined::Allow),
            (
                vec![
                    allow.clone(),
                    d(Action::Approve, &["ann"], true),
                    d(Action::Deny, &[], false),
                ],
                Combined::Deny {
                    node: 2,
                    rule: Some(0),
                },
            ),
            (
                vec![
                    d(Action::Approve, &["ann", "bob"], true),
                    allow.clone(),
                    d(Action::Approve, &["bob", "cy"], false),
                ],
                Combined::Approve {
                    approvers: vec!["bob".into()],
                    allow_self: false,
                },
            ),
            (
                vec![
                    d(Action::Approve, &["ann"], true),
                    d(Action::Approve, &["ann"], true),
                ],
                Combined::Approve {
                    approvers: vec!["ann".into()],
                    allow_self: true,
                },
            ),
            (
                vec![
                    allow,
                    d(Action::Approve, &["ann"], true),
                    d(Action::Approve, &["bob"], true),
                ],
                Combined::NoCommonApprover { nodes: (1, 2) },
            ),
        ];
        for (i, (ds, want)) in cases.into_iter().enumerate() {
            assert_eq!(combine(&ds), want, "case {i}");
        }
    }
}
