//! The chat core's pure half, shared by every front end and the CLI's
//! chat prompt; no IO, no clock, no platform types:
//!
//! * the grammar (this module): a message's plain text becomes an
//!   [`Intent`]; the gateway then resolves a run intent into a routed job.
//!   Messages that cannot be routed become [`Intent::Clarify`] with a
//!   question, never a guess;
//! * [`access`]: who may talk to a bot, where, and per-user limits;
//! * [`dedupe`]: redelivered events are acted on once;
//! * [`tail`] and [`render`]: a job's state, output and GPUs as chat text.
//!
//! A front end turns its platform's markup into plain text first (Slack's
//! `<@U…>` mentions, WeCom's leading `@BotName`). Handled forms (after a
//! leading `@moltbot`):
//!
//! * `run training on worker-gpu-01`: named job `training` on that node;
//! * `run train.py on worker-gpu-01`: the script, through the interpreter
//!   map (`.py` → `python`);
//! * `run python train.py --epochs 3 on worker-gpu-01`: that argv;
//! * `use worker-gpu-01 to train model`: the named job whose alias is
//!   "train model", on that node;
//! * `execute job on gpu node`, `run training (gpu)`: role routing;
//! * `run train.py on worker-gpu-01 with 2 GPUs`: GPUs, as the CLI's
//!   `--gpus N` asks for them. The rule is the CLI's: a job holds the GPUs
//!   it asks for; a GPU node by role (`(gpu)`, `on a gpu node`) asks for
//!   one, a named node for none unless `with N GPUs` says so, and a named
//!   job brings its own;
//! * `start experiment exp42`: the named job `exp42`;
//! * `` run `make -j4 && make test` on n1 ``: one backticked line, run
//!   through a shell (if policy allows it);
//! * `run nvidia-smi on all gpu nodes`, `run uptime on every node`: a
//!   fan-out to every matching node;
//! * `nodes` (`nodes 2` for the next page), `jobs` or `my jobs` (also
//!   `status`; `jobs 2` for older ones), `status 17`, `logs 17`,
//!   `cancel 17`, `approve 17`, `deny 17 because …`, `help`.

pub mod access;
pub mod dedupe;
mod phrase;
pub mod render;
pub mod tail;

pub use access::{Access, Dms, FanOut, Secret, Target, UserLimits, node_roles};
pub use dedupe::Seen;
use phrase::{all_phrase, gpu_phrase, project_phrase};
pub use tail::OutputTail;

/// Longest message looked at.
pub const MAX_MESSAGE_LEN: usize = 4000;

/// What the gateway knows that the grammar needs.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Enrolled node names.
    pub nodes: Vec<String>,
    /// Named jobs: name and aliases.
    pub jobs: Vec<(String, Vec<String>)>,
    /// Roles (labels) in use; `gpu` is always a role.
    pub roles: Vec<String>,
    /// File extension to interpreter argv, e.g. `py` → `["python"]`.
    pub interpreters: Vec<(String, Vec<String>)>,
}

impl Context {
    /// The default interpreter map: `.py` → python, `.sh` → bash.
    pub fn default_interpreters() -> Vec<(String, Vec<String>)> {
        vec![
            ("py".into(), vec!["python".into()]),
            ("sh".into(), vec!["bash".into()]),
        ]
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A named job from the gateway config.
    Job(String),
    /// An exact argv.
    Argv(Vec<String>),
    /// One shell line (from a single backticked command).
    Shell(String),
}

/// The job a run intent asks for, on behalf of `who` (a chat identity, or
/// `None` for the caller itself), holding `gpus` when the message said
/// (`with 2 GPUs`). The gateway resolves and routes it, and picks the GPUs
/// of a job that did not say by the same rule as for the CLI
/// (`default_gpus` in the gateway's `jobs/spec.rs`: one for the role `gpu`, else none).
pub fn job_spec(
    what: &What,
    node: Option<&str>,
    role: Option<&str>,
    gpus: Option<u32>,
    who: Option<&str>,
) -> proto::JobSpec {
    let mut spec = proto::JobSpec {
        node: node.map(str::to_string),
        role: role.map(str::to_string),
        gpus,
        on_behalf_of: who.map(str::to_string),
        ..Default::default()
    };
    match what {
        What::Job(name) => spec.job = Some(name.clone()),
        What::Argv(argv) => spec.argv = argv.clone(),
        What::Shell(line) => {
            spec.argv = vec![line.clone()];
            spec.shell = true;
        }
    }
    spec
}

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Run something on every matching node: `on all nodes`,
    /// `on all gpu nodes` (a fan-out).
    RunAll {
        /// What.
        what: What,
        /// Only nodes with this role.
        role: Option<String>,
    },
    /// Run something somewhere.
    Run {
        /// What.
        what: What,
        /// On this node...
        node: Option<String>,
        /// ...or a node with this role.
        role: Option<String>,
        /// GPUs asked for (`with 2 GPUs`); `None`: the gateway's default.
        gpus: Option<u32>,
        /// The project to charge (`for project vision`).
        project: Option<String>,
    },
    /// List nodes: this page of them (the first is 1).
    Nodes(u32),
    /// The user's recent jobs, newest first: this page (the first is 1).
    Jobs(u32),
    /// One job.
    Status(u64),
    /// A job's output.
    Logs(u64),
    /// Cancel a job.
    Cancel(u64),
    /// Approve a job.
    Approve(u64),
    /// Deny a job, with an optional reason.
    Deny(u64, Option<String>),
    /// The user's GPU usage over the last week.
    Usage,
    /// The user's waiting jobs, their places in the queue and a rough start.
    Queue,
    /// Usage help.
    Help,
    /// The message cannot be routed; reply with this question.
    Clarify(String),
}

/// Trims a message and drops a leading `@moltbot` (as typed in the CLI's
/// chat prompt); platform markup is the front end's to remove.
pub fn normalize(text: &str) -> String {
    let trimmed = text.trim();
    let trimmed = trimmed.strip_prefix("@moltbot").unwrap_or(trimmed);
    trimmed.trim().to_string()
}

fn number(s: Option<&str>) -> Option<u64> {
    s.map(|w| w.trim_start_matches('#'))
        .and_then(|w| w.parse().ok())
}

/// Most pages a list answers (`nodes 40`, `jobs 40`).
pub const MAX_PAGE: u32 = 1000;

/// The page a list command asks for: `LIST`, `LIST 2`, `LIST page 2`
/// (`rest` is what follows the list's word). `None` when `rest` is
/// something else.
fn page(rest: &[String]) -> Option<u32> {
    let rest: Vec<&str> = rest
        .iter()
        .map(|w| w.trim_end_matches(['.', '?', '!']))
        .filter(|w| !w.is_empty())
        .collect();
    let n = match rest.as_slice() {
        [] => return Some(1),
        ["page", n] | [n] => {
            let digits = n.trim_start_matches('#');
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Past u64: as far as it goes.
            digits.parse::<u64>().unwrap_or(u64::MAX)
        }
        _ => return None,
    };
    Some(u32::try_from(n.clamp(1, u64::from(MAX_PAGE))).unwrap_or(MAX_PAGE))
}

/// Splits words, keeping "double" or 'single' quoted parts together.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                has = true;
            }
            (None, c) if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    if has || !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    candidates
        .map(|c| (proto::names::edit_distance(word, c), c))
        .filter(|(d, c)| *d > 0 && *d <= 2.max(c.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Parses one message.
pub fn parse(text: &str, ctx: &Context) -> Intent {
    if text.len() > MAX_MESSAGE_LEN {
        return Intent::Clarify(format!(
            "that message is {} characters long; I read at most {MAX_MESSAGE_LEN}. Put long commands in a script and run the script.",
            text.len()
        ));
    }
    let msg = normalize(text);
    // A backticked command is taken verbatim.
    let (before_code, code, after_code) = match split_code(&msg) {
        Ok(parts) => parts,
        Err(e) => return Intent::Clarify(e),
    };
    let plain = format!("{before_code} {after_code}");
    let words: Vec<&str> = plain.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let first = lower.first().map(String::as_str).unwrap_or("");
    if code.is_none() {
        match first {
            "" | "help" | "?" => return Intent::Help,
            "nodes" | "node" => {
                if let Some(p) = page(&lower[1..]) {
                    return Intent::Nodes(p);
                }
            }
            "jobs" => {
                if let Some(p) = page(&lower[1..]) {
                    return Intent::Jobs(p);
                }
            }
            "usage" | "queue" if lower.len() == 1 => {
                return if first == "usage" {
                    Intent::Usage
                } else {
                    Intent::Queue
                };
            }
            "my" if lower.get(1).is_some_and(|w| w == "jobs") => {
                if let Some(p) = page(&lower[2..]) {
                    return Intent::Jobs(p);
                }
            }
            "status" => {
                return match (words.get(1), number(words.get(1).copied())) {
                    (None, _) => Intent::Jobs(1),
                    (_, Some(id)) => Intent::Status(id),
                    _ => Intent::Clarify(
                        "which job? say e.g. `status 17`, or `jobs` for your recent jobs".into(),
                    ),
                };
            }
            "logs" | "log" => {
                return number(words.get(1).copied())
                    .map(Intent::Logs)
                    .unwrap_or_else(|| Intent::Clarify("which job? say e.g. `logs 17`".into()));
            }
            "cancel" | "stop" | "kill" => {
                return number(words.get(1).copied())
                    .map(Intent::Cancel)
                    .unwrap_or_else(|| Intent::Clarify("which job? say e.g. `cancel 17`".into()));
            }
            "approve" => {
                return number(words.get(1).copied())
                    .map(Intent::Approve)
                    .unwrap_or_else(|| Intent::Clarify("which job? say e.g. `approve 17`".into()));
            }
            "deny" | "reject" => {
                let Some(id) = number(words.get(1).copied()) else {
                    return Intent::Clarify(
                        "which job? say e.g. `deny 17 because the GPUs are booked`".into(),
                    );
                };
                let reason = words[2..].join(" ");
                let reason = reason
                    .strip_prefix("because")
                    .unwrap_or(&reason)
                    .trim()
                    .to_string();
                return Intent::Deny(id, (!reason.is_empty()).then_some(reason));
            }
            _ => {}
        }
    }
    parse_run(&words, &lower, code, ctx)
}

/// Splits a message around one backticked command (``` or `).
fn split_code(msg: &str) -> Result<(String, Option<String>, String), String> {
    for fence in ["```", "`"] {
        if let Some(start) = msg.find(fence) {
            let after = &msg[start + fence.len()..];
            let Some(end) = after.find(fence) else {
                return Err("a code block is not closed; put the command between backticks".into());
            };
            let code = after[..end].trim();
            if code.contains('\n') {
                return Err(
                    "send one command line in backticks, or put several in a script".into(),
                );
            }
            return Ok((
                msg[..start].to_string(),
                Some(code.to_string()),
                after[end + fence.len()..].to_string(),
            ));
        }
    }
    Ok((msg.to_string(), None, String::new()))
}

fn parse_run(words: &[&str], lower: &[String], code: Option<String>, ctx: &Context) -> Intent {
    let mut node = None;
    let mut role = None;
    let mut skip = vec![false; words.len()];
    let gpus = gpu_phrase(lower).map(|(i, n)| {
        for s in &mut skip[i..i + 3] {
            *s = true;
        }
        n
    });
    let project = project_phrase(lower).map(|(i, p)| {
        for s in &mut skip[i..i + 3] {
            *s = true;
        }
        p
    });
    let all = all_phrase(lower, ctx);
    if all.is_some() && project.is_some() {
        return Intent::Clarify(
            "a run on several nodes is not charged to a project; run it on one node, e.g. `run train.py on NODE for project NAME`"
                .into(),
        );
    }
    if all.is_some() && gpus.is_some() {
        return Intent::Clarify(
            "a run on several nodes holds no GPUs; ask for GPUs on one node, e.g. `run train.py on NODE with 2 GPUs`"
                .into(),
        );
    }
    if let Some((from, to, r)) = &all {
        let from = if *from > 0 && lower[from - 1] == "on" {
            from - 1
        } else {
            *from
        };
        for s in &mut skip[from..=*to] {
            *s = true;
        }
        role.clone_from(r);
    }
    // Explicit node names and role words, wherever they appear.
    for (i, w) in lower.iter().enumerate() {
        if skip[i] {
            continue;
        }
        let bare = w.trim_matches(|c: char| matches!(c, '(' | ')' | ',' | '.' | '?' | '!'));
        if let Some(n) = ctx.nodes.iter().find(|n| n.as_str() == bare) {
            node = Some(n.clone());
            skip[i] = true;
            if i > 0 && matches!(lower[i - 1].as_str(), "on" | "use" | "using" | "at") {
                skip[i - 1] = true;
            }
        } else if w.starts_with('(') && w.ends_with(')') {
            role = Some(bare.to_string());
            skip[i] = true;
        } else if bare == "please" {
            skip[i] = true;
        } else if (ctx.roles.iter().any(|r| r == bare) || bare == "gpu")
            && lower
                .get(i + 1)
                .is_none_or(|n| n.trim_end_matches(['.', '?', '!']) != "node")
            && i > 0
            && matches!(lower[i - 1].as_str(), "use" | "any" | "a" | "on")
        {
            // "use GPU", "on a gpu": a role word on its own.
            role = Some(bare.to_string());
            skip[i] = true;
        } else if (ctx.roles.iter().any(|r| r == bare) || bare == "gpu")
            && lower
                .get(i + 1)
                .is_some_and(|n| n.trim_end_matches(['.', '?', '!']) == "node")
        {
            role = Some(bare.to_string());
            skip[i] = true;
            skip[i + 1] = true;
            if i > 0 && matches!(lower[i - 1].as_str(), "on" | "a" | "any") {
                skip[i - 1] = true;
                if i > 1 && lower[i - 1] == "a" && lower[i - 2] == "on" {
                    skip[i - 2] = true;
                }
            }
        }
    }
    if all.is_some() && node.is_some() {
        return Intent::Clarify("say either `on NODE` or `on all nodes`, not both".into());
    }
    if node.is_none() && role.is_none() && all.is_none() {
        // "on wrker-gpu-01": a node that does not exist, maybe a typo.
        if let Some(i) = lower.iter().position(|w| w == "on")
            && let Some(target) = lower.get(i + 1)
        {
            let t = target.trim_end_matches(['.', '?', '!']);
            return Intent::Clarify(match closest(t, ctx.nodes.iter()) {
                Some(c) => format!("I don't know a node called {t}; did you mean {c}?"),
                None => format!(
                    "I don't know a node called {t}. Connected nodes: {}.",
                    ctx.nodes.join(", ")
                ),
            });
        }
    }
    let rest: Vec<&str> = words
        .iter()
        .zip(&skip)
        .filter(|(_, s)| !**s)
        .map(|(w, _)| *w)
        .collect();
    let rest_lower: Vec<String> = rest.iter().map(|w| w.to_lowercase()).collect();
    // Strip the verb: run / execute / start / launch; "use NODE to ...".
    let mut start = 0;
    if let Some(v) = rest_lower.first()
        && matches!(
            v.as_str(),
            "run" | "execute" | "exec" | "start" | "launch" | "use" | "please"
        )
    {
        start = 1;
    }
    if rest_lower.get(start).is_some_and(|w| w == "to") {
        start += 1;
    }
    if rest_lower.get(start).is_some_and(|w| w == "experiment") {
        start += 1;
    }
    if let Some(code) = code {
        if all.is_some() {
            return Intent::RunAll {
                what: What::Shell(code),
                role,
            };
        }
        if node.is_none() && role.is_none() {
            return Intent::Clarify(format!(
                "where should I run `{code}`? Say `on NODE` or `(ROLE)`. Connected nodes: {}.",
                ctx.nodes.join(", ")
            ));
        }
        return Intent::Run {
            what: What::Shell(code),
            node,
            role,
            gpus,
            project,
        };
    }
    let phrase: Vec<&str> = rest[start..].to_vec();
    let phrase_lower = rest_lower[start..].join(" ");
    let named = ctx.jobs.iter().find(|(name, aliases)| {
        *name == phrase_lower || aliases.iter().any(|a| a.to_lowercase() == phrase_lower)
    });
    let what = if let Some((name, _)) = named {
        What::Job(name.clone())
    } else if phrase_lower.split_whitespace().all(|w| {
        matches!(
            w,
            "job"
                | "a"
                | "the"
                | "this"
                | "that"
                | "it"
                | "something"
                | "somewhere"
                | "stuff"
                | "anything"
        )
    }) {
        let jobs: Vec<&str> = ctx.jobs.iter().map(|(n, _)| n.as_str()).collect();
        return Intent::Clarify(format!(
            "what should I run{}? Named jobs: {}. Connected nodes: {}.",
            match (&node, &role) {
                (Some(n), _) => format!(" on {n}"),
                (None, Some(r)) => format!(" on a {r} node"),
                _ => " and where".into(),
            },
            if jobs.is_empty() {
                "none".into()
            } else {
                jobs.join(", ")
            },
            ctx.nodes.join(", ")
        ));
    } else if phrase.len() == 1
        && let Some((ext, interp)) = phrase[0].rsplit_once('.').and_then(|(_, ext)| {
            ctx.interpreters
                .iter()
                .find(|(e, _)| e == ext)
                .map(|(e, i)| (e, i))
        })
    {
        let _ = ext;
        let mut argv = interp.clone();
        argv.push(phrase[0].to_string());
        What::Argv(argv)
    } else if phrase.len() == 1
        && !phrase[0].contains('/')
        && closest(&phrase_lower, ctx.jobs.iter().map(|(n, _)| n)).is_some()
    {
        let c = closest(&phrase_lower, ctx.jobs.iter().map(|(n, _)| n))
            .cloned()
            .unwrap_or_default();
        return Intent::Clarify(format!(
            "I don't know a job called {phrase_lower}; did you mean {c}?"
        ));
    } else {
        match split_words(&phrase.join(" ")) {
            Ok(argv) => What::Argv(argv),
            Err(e) => return Intent::Clarify(format!("I could not read that command: {e}")),
        }
    };
    if all.is_some() {
        return Intent::RunAll { what, role };
    }
    if node.is_none() && role.is_none() {
        if let What::Job(name) = &what {
            // A named job carries its own role or node.
            return Intent::Run {
                what: What::Job(name.clone()),
                node,
                role,
                gpus,
                project,
            };
        }
        return Intent::Clarify(format!(
            "where should I run that? Say `on NODE` or `(ROLE)`. Connected nodes: {}.",
            ctx.nodes.join(", ")
        ));
    }
    Intent::Run {
        what,
        node,
        role,
        gpus,
        project,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            nodes: vec!["worker-gpu-01".into(), "worker-cpu-01".into()],
            jobs: vec![
                ("training".into(), vec!["train model".into()]),
                ("exp42".into(), vec![]),
            ],
            roles: vec!["gpu".into(), "cpu".into()],
            interpreters: Context::default_interpreters(),
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn run(what: What, node: Option<&str>, role: Option<&str>) -> Intent {
        run_gpus(what, node, role, None)
    }

    fn run_gpus(what: What, node: Option<&str>, role: Option<&str>, gpus: Option<u32>) -> Intent {
        Intent::Run {
            what,
            node: node.map(str::to_string),
            role: role.map(str::to_string),
            gpus,
            project: None,
        }
    }

    #[test]
    fn a_run_may_name_its_project() {
        match parse(
            "run python train.py on worker-gpu-01 for project vision",
            &ctx(),
        ) {
            Intent::Run {
                what,
                node,
                project,
                ..
            } => {
                assert_eq!(what, What::Argv(s(&["python", "train.py"])));
                assert_eq!(node.as_deref(), Some("worker-gpu-01"));
                assert_eq!(project.as_deref(), Some("vision"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("run uptime on all nodes for project vision", &ctx()),
            Intent::Clarify(_)
        ));
    }

    #[test]
    fn usage_and_queue_are_words_of_their_own() {
        assert_eq!(parse("usage", &ctx()), Intent::Usage);
        assert_eq!(parse("@moltbot Queue", &ctx()), Intent::Queue);
        // With more words, they are not these questions.
        assert!(!matches!(parse("queue 3", &ctx()), Intent::Queue));
    }

    #[test]
    fn gpus_are_asked_for_as_on_the_command_line() {
        let c = ctx();
        let train = || What::Argv(s(&["python", "train.py"]));
        let cases = vec![
            // A named node asks for no GPU unless the message does.
            (
                "run train.py on worker-gpu-01",
                run_gpus(train(), Some("worker-gpu-01"), None, None),
            ),
            (
                "run train.py on worker-gpu-01 with 2 GPUs",
                run_gpus(train(), Some("worker-gpu-01"), None, Some(2)),
            ),
            (
                "run train.py with a GPU on worker-gpu-01",
                run_gpus(train(), Some("worker-gpu-01"), None, Some(1)),
            ),
            (
                "use worker-gpu-01 to train model using one gpu.",
                run_gpus(
                    What::Job("training".into()),
                    Some("worker-gpu-01"),
                    None,
                    Some(1),
                ),
            ),
            // A GPU node by role: the gateway gives one unless told.
            (
                "run train.py on a gpu node",
                run_gpus(train(), None, Some("gpu"), None),
            ),
            (
                "run train.py (gpu) with no GPUs",
                run_gpus(train(), None, Some("gpu"), Some(0)),
            ),
            (
                "run `nvidia-smi -L` on worker-gpu-01 with 8 gpus",
                run_gpus(
                    What::Shell("nvidia-smi -L".into()),
                    Some("worker-gpu-01"),
                    None,
                    Some(8),
                ),
            ),
            // Not the phrase: the words stay in the command.
            (
                "run echo with gpu on worker-cpu-01",
                run_gpus(
                    What::Argv(s(&["echo", "with", "gpu"])),
                    Some("worker-cpu-01"),
                    None,
                    None,
                ),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, &c), want, "{text}");
        }
        assert!(matches!(
            parse("run nvidia-smi on all gpu nodes with 1 gpu", &c),
            Intent::Clarify(q) if q.contains("on one node")
        ));
        // The spec carries what was asked, and nothing when nothing was.
        let spec = job_spec(
            &train(),
            Some("worker-gpu-01"),
            None,
            Some(2),
            Some("slack:T1/U1"),
        );
        assert_eq!(
            (spec.gpus, spec.node.as_deref()),
            (Some(2), Some("worker-gpu-01"))
        );
        assert_eq!(job_spec(&train(), None, Some("gpu"), None, None).gpus, None);
    }

    #[test]
    fn fan_out_phrases() {
        let c = ctx();
        let all = |what: What, role: Option<&str>| Intent::RunAll {
            what,
            role: role.map(str::to_string),
        };
        let cases = vec![
            (
                "@moltbot run nvidia-smi on all gpu nodes",
                all(What::Argv(s(&["nvidia-smi"])), Some("gpu")),
            ),
            (
                "run uptime on every node",
                all(What::Argv(s(&["uptime"])), None),
            ),
            (
                "run df -h on all nodes.",
                all(What::Argv(s(&["df", "-h"])), None),
            ),
            (
                "run training on all (cpu) nodes",
                all(What::Job("training".into()), Some("cpu")),
            ),
            (
                "run `nvidia-smi | head -3` on all gpu nodes",
                all(What::Shell("nvidia-smi | head -3".into()), Some("gpu")),
            ),
            (
                "on all nodes run hostname",
                all(What::Argv(s(&["hostname"])), None),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, &c), want, "{text}");
        }
        assert!(matches!(
            parse("run uptime on all nodes on worker-gpu-01", &c),
            Intent::Clarify(q) if q.contains("not both")
        ));
        // "all" that is not a fan-out phrase stays part of the command.
        assert_eq!(
            parse("run echo all done on worker-cpu-01", &c),
            run(
                What::Argv(s(&["echo", "all", "done"])),
                Some("worker-cpu-01"),
                None
            )
        );
    }

    #[test]
    fn the_table_from_the_issue() {
        let c = ctx();
        let cases = vec![
            (
                "@moltbot run training on worker-gpu-01",
                run(What::Job("training".into()), Some("worker-gpu-01"), None),
            ),
            (
                "run train.py on worker-gpu-01",
                run(
                    What::Argv(s(&["python", "train.py"])),
                    Some("worker-gpu-01"),
                    None,
                ),
            ),
            (
                "@moltbot run python train.py --epochs 3 on worker-gpu-01",
                run(
                    What::Argv(s(&["python", "train.py", "--epochs", "3"])),
                    Some("worker-gpu-01"),
                    None,
                ),
            ),
            (
                "@moltbot use worker-gpu-01 to train model",
                run(What::Job("training".into()), Some("worker-gpu-01"), None),
            ),
            (
                "@moltbot run training (gpu)",
                run(What::Job("training".into()), None, Some("gpu")),
            ),
            (
                "@moltbot start experiment exp42",
                run(What::Job("exp42".into()), None, None),
            ),
            ("@moltbot nodes", Intent::Nodes(1)),
            ("@moltbot status", Intent::Jobs(1)),
            ("@moltbot status 17", Intent::Status(17)),
            ("@moltbot logs 17", Intent::Logs(17)),
            ("@moltbot cancel 17", Intent::Cancel(17)),
            ("@moltbot approve 17", Intent::Approve(17)),
            (
                "@moltbot deny 17 because the GPUs are booked",
                Intent::Deny(17, Some("the GPUs are booked".into())),
            ),
            ("@moltbot help", Intent::Help),
            (
                "run `make -j4 && make test` on worker-cpu-01",
                run(
                    What::Shell("make -j4 && make test".into()),
                    Some("worker-cpu-01"),
                    None,
                ),
            ),
            (
                "run train.sh on a gpu node",
                run(What::Argv(s(&["bash", "train.sh"])), None, Some("gpu")),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, &c), want, "{text}");
        }
    }

    #[test]
    fn lists_and_their_pages() {
        let c = ctx();
        let cases = vec![
            ("nodes", Intent::Nodes(1)),
            ("@moltbot node", Intent::Nodes(1)),
            ("nodes 2", Intent::Nodes(2)),
            ("Nodes page 3", Intent::Nodes(3)),
            ("nodes #4?", Intent::Nodes(4)),
            ("nodes 0", Intent::Nodes(1)),
            ("nodes 99999999", Intent::Nodes(MAX_PAGE)),
            ("jobs 99999999999999999999", Intent::Jobs(MAX_PAGE)),
            ("jobs", Intent::Jobs(1)),
            ("@moltbot my jobs", Intent::Jobs(1)),
            ("My Jobs 2", Intent::Jobs(2)),
            ("jobs page 2", Intent::Jobs(2)),
            ("status", Intent::Jobs(1)),
            ("status 17", Intent::Status(17)),
            ("status #17 please", Intent::Status(17)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, &c), want, "{text}");
        }
        for text in ["status of my job", "status x"] {
            match parse(text, &c) {
                Intent::Clarify(q) => assert!(q.contains("`jobs`"), "{text}: {q}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        // Words that are not a page are not a list: `my` and `jobs` stay
        // ordinary words of a command.
        assert_eq!(
            parse("run my jobs script on worker-cpu-01", &c),
            run(
                What::Argv(s(&["my", "jobs", "script"])),
                Some("worker-cpu-01"),
                None
            )
        );
        assert!(matches!(
            parse("nodes with gpus", &c),
            Intent::Clarify(q) if q.contains("where should I run")
        ));
    }

    #[test]
    fn unroutable_messages_get_questions_not_guesses() {
        let c = ctx();
        let cases = [
            ("@moltbot run this somewhere", "what should I run"),
            ("@moltbot use GPU please", "what should I run on a gpu node"),
            (
                "@moltbot run training on wrker-gpu-01",
                "did you mean worker-gpu-01?",
            ),
            ("@moltbot run trainig (gpu)", "did you mean training?"),
            ("@moltbot run ls -la", "where should I run that"),
            ("@moltbot logs", "which job"),
            ("@moltbot run `ls", "not closed"),
            (
                "@moltbot run 'unclosed on worker-gpu-01",
                "quote is not closed",
            ),
        ];
        for (text, want) in cases {
            match parse(text, &c) {
                Intent::Clarify(q) => assert!(q.contains(want), "{text}: {q}"),
                other => panic!("{text}: expected a question, got {other:?}"),
            }
        }
        let long = "a".repeat(MAX_MESSAGE_LEN + 1);
        assert!(matches!(parse(&long, &c), Intent::Clarify(_)));
    }

    #[test]
    fn execute_job_on_gpu_node_asks_which_job_when_none_is_named() {
        match parse("@moltbot execute job on gpu node", &ctx()) {
            Intent::Clarify(q) => assert!(
                q.contains("on a gpu node") && q.contains("training, exp42"),
                "{q}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_leading_mention_is_dropped_and_words_split() {
        assert_eq!(normalize("  @moltbot   nodes "), "nodes");
        assert_eq!(normalize("a <unterminated"), "a <unterminated");
        assert_eq!(
            split_words("python 'a b' \"c d\" ''").unwrap(),
            s(&["python", "a b", "c d", ""])
        );
    }
}
