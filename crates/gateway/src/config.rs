//! `gateway.toml`: parsed strictly, every key documented in the file that
//! `gateway init` writes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::policy::{Action, Policy, Rule};

/// A named job from `[jobs.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedJob {
    /// Exact argv.
    pub command: Vec<String>,
    /// Route by this role...
    pub role: Option<String>,
    /// ...or to this node.
    pub node: Option<String>,
    /// Working directory on the node.
    pub cwd: Option<String>,
    /// Kill after this long.
    pub timeout: Option<Duration>,
    /// GPUs (default 1 for role `gpu`, else 0).
    pub gpus: Option<u32>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Chat phrases that mean this job ("train model").
    pub aliases: Vec<String>,
    /// One line for help output.
    pub description: Option<String>,
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Gateway name, shown to clients and in its certificate.
    pub name: String,
    /// Address the QUIC listener binds.
    pub listen: String,
    /// Address written into join tokens; defaults to the bound address.
    pub advertise: Option<String>,
    /// How long an enrollment request waits for a decision.
    pub pending_ttl: Duration,
    /// The most pending requests at once.
    pub max_pending: usize,
    /// Lifetime of node certificates.
    pub node_cert_ttl: Duration,
    /// How often nodes send heartbeats.
    pub heartbeat_interval: Duration,
    /// A node silent this long is dead: its connection is closed.
    pub dead_after: Duration,
    /// Where to serve Prometheus metrics (`None`: off).
    pub metrics_listen: Option<String>,
    /// A GPU hotter than this makes its node `degraded`.
    pub gpu_temp_limit_c: u32,
    /// How long a job whose node went away waits for the node to re-attach
    /// it before it is declared lost.
    pub job_grace: Duration,
    /// Named jobs.
    pub jobs: BTreeMap<String, NamedJob>,
    /// Job policy.
    pub policy: Policy,
    /// Per-job, per-stream cap on stored output.
    pub output_cap: u64,
    /// Seconds between SIGTERM and SIGKILL on cancel or timeout.
    pub kill_grace: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    enrollment: RawEnrollment,
    #[serde(default)]
    liveness: RawLiveness,
    #[serde(default)]
    jobs: BTreeMap<String, RawNamedJob>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamedJob {
    command: Vec<String>,
    role: Option<String>,
    node: Option<String>,
    cwd: Option<String>,
    timeout: Option<String>,
    gpus: Option<u32>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    aliases: Vec<String>,
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    run_on_gateway: Option<bool>,
    default: Option<String>,
    approvers: Option<Vec<String>>,
    approval_timeout: Option<String>,
    allow_shell: Option<bool>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    jobs: Vec<String>,
    action: String,
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default)]
    allow_self_approval: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    output_cap_bytes: Option<u64>,
    kill_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    name: Option<String>,
    listen: Option<String>,
    advertise: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrollment {
    pending_ttl: Option<String>,
    max_pending: Option<usize>,
    node_cert_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLiveness {
    heartbeat_interval: Option<String>,
    dead_after: Option<String>,
    job_grace: Option<String>,
    gpu_temp_limit_c: Option<u32>,
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";

fn dur(key: &str, value: Option<String>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(v) => proto::duration::parse(&v).map_err(|e| format!("{key}: {e}")),
    }
}

impl Config {
    /// Parses `gateway.toml` text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let name = raw
            .gateway
            .name
            .unwrap_or_else(|| "openclaw-gateway".into());
        proto::names::validate_name(&name).map_err(|e| format!("gateway.name: {e}"))?;
        let cfg = Config {
            name,
            listen: raw.gateway.listen.unwrap_or_else(|| DEFAULT_LISTEN.into()),
            advertise: raw.gateway.advertise,
            pending_ttl: dur(
                "enrollment.pending_ttl",
                raw.enrollment.pending_ttl,
                Duration::from_secs(86_400),
            )?,
            max_pending: raw.enrollment.max_pending.unwrap_or(1000),
            node_cert_ttl: dur(
                "enrollment.node_cert_ttl",
                raw.enrollment.node_cert_ttl,
                Duration::from_secs(30 * 86_400),
            )?,
            heartbeat_interval: dur(
                "liveness.heartbeat_interval",
                raw.liveness.heartbeat_interval,
                Duration::from_secs(1),
            )?,
            dead_after: dur(
                "liveness.dead_after",
                raw.liveness.dead_after,
                Duration::from_secs(3),
            )?,
            gpu_temp_limit_c: raw.liveness.gpu_temp_limit_c.unwrap_or(85),
            metrics_listen: raw.metrics.listen.filter(|l| !l.trim().is_empty()),
            job_grace: dur(
                "liveness.job_grace",
                raw.liveness.job_grace,
                Duration::from_secs(15),
            )?,
            jobs: parse_jobs(raw.jobs)?,
            policy: parse_policy(raw.policy)?,
            output_cap: raw.limits.output_cap_bytes.unwrap_or(1 << 30),
            kill_grace: dur(
                "limits.kill_grace",
                raw.limits.kill_grace,
                Duration::from_secs(10),
            )?,
        };
        if cfg.heartbeat_interval < Duration::from_millis(100) {
            return Err("liveness.heartbeat_interval must be at least 100ms".into());
        }
        if cfg.dead_after < cfg.heartbeat_interval * 2 {
            return Err(
                "liveness.dead_after must be at least twice liveness.heartbeat_interval".into(),
            );
        }
        if cfg.node_cert_ttl < Duration::from_secs(10) {
            return Err("enrollment.node_cert_ttl must be at least 10s".into());
        }
        Ok(cfg)
    }

    /// Looks up a named job by name or alias (case-insensitive for aliases).
    pub fn named_job(&self, name: &str) -> Option<(&str, &NamedJob)> {
        if let Some((k, j)) = self.jobs.get_key_value(name) {
            return Some((k.as_str(), j));
        }
        let lower = name.to_lowercase();
        self.jobs
            .iter()
            .find(|(_, j)| j.aliases.iter().any(|a| a.to_lowercase() == lower))
            .map(|(k, j)| (k.as_str(), j))
    }

    /// The commented file `gateway init` writes.
    pub fn template(name: &str, listen: &str) -> String {
        format!(
            r#"# OpenClaw gateway configuration. Reloaded on restart.
# Durations are written like 500ms, 30s, 10m, 1h, 30d.

[gateway]
# Name of this gateway; appears in its certificate and in `openclaw node list`.
name = "{name}"
# UDP address the QUIC listener binds (host:port). Port 0 picks a free port;
# the bound address is written to gateway.addr in this home.
listen = "{listen}"
# Address that nodes dial, written into join tokens. Set it when the listen
# address is not reachable as such (0.0.0.0, NAT). Defaults to the bound address.
# advertise = "gateway.example.org:7443"

[enrollment]
# How long an enrollment request waits for `openclaw node approve`.
pending_ttl = "24h"
# The most enrollment requests pending at once; more are refused.
max_pending = 1000
# Lifetime of the certificates issued to nodes.
node_cert_ttl = "30d"

[liveness]
# How often nodes send a heartbeat on their heartbeat stream.
heartbeat_interval = "1s"
# A node with no heartbeat for this long is declared dead and disconnected.
dead_after = "3s"
# Jobs keep running on a node that loses its connection, and the node
# re-attaches them when it is back. A job not re-attached within this long
# is declared lost.
job_grace = "15s"
# A GPU hotter than this (Celsius) marks its node degraded; role routing
# then skips it.
gpu_temp_limit_c = 85

# Named jobs: `openclaw run --job NAME`, or "run NAME" in chat. Each fixes
# the command and where it runs (role or node); cwd, timeout, gpus, env,
# aliases and description are optional.
# [jobs.training]
# command = ["python", "train.py"]
# role = "gpu"
# cwd = "/srv/lab"
# timeout = "12h"
# gpus = 1
# aliases = ["train model"]
# description = "Train the default model"

[policy]
# Safe lab policy: the gateway never runs jobs itself. Only false is accepted.
run_on_gateway = false
# What happens when no rule matches: allow | deny | approve.
default = "allow"
# Who may approve when the default is "approve" (certificate identities or chat user ids).
approvers = ["admin"]
# How long a job waits for approval before it expires.
approval_timeout = "1h"
# Whether jobs may run through `sh -c` (openclaw run --shell).
allow_shell = true

# Rules, first match wins. Every list is optional and holds globs:
# nodes (node name), users (requester), commands (argv[0] and the whole line), jobs (named job).
# [[policy.rules]]
# nodes = ["worker-gpu-*"]
# action = "approve"                 # allow | deny | approve
# approvers = ["admin", "U024BE7LH"]
# allow_self_approval = false

[limits]
# Stored output per job and stream; past it the log is cut with a marker (the job keeps running).
output_cap_bytes = 1073741824
# Seconds between SIGTERM and SIGKILL when a job is cancelled or times out.
kill_grace = "10s"

[metrics]
# Serve Prometheus metrics at http://ADDRESS/metrics (e.g. "127.0.0.1:9464").
# Empty or absent: off. Port 0 picks a free port, written to metrics.addr.
listen = ""
"#
        )
    }
}

fn parse_jobs(raw: BTreeMap<String, RawNamedJob>) -> Result<BTreeMap<String, NamedJob>, String> {
    let mut out = BTreeMap::new();
    for (name, j) in raw {
        let key = format!("jobs.{name}");
        proto::names::validate_name(&name).map_err(|e| format!("[{key}]: job {e}"))?;
        if j.command.is_empty() || j.command[0].is_empty() {
            return Err(format!("[{key}]: command must not be empty"));
        }
        if j.role.is_some() == j.node.is_some() {
            return Err(format!("[{key}]: set exactly one of role or node"));
        }
        for k in j.env.keys() {
            crate::jobs::check_env_key(k).map_err(|e| format!("[{key}].env: {e}"))?;
        }
        let timeout = j
            .timeout
            .map(|t| proto::duration::parse(&t))
            .transpose()
            .map_err(|e| format!("[{key}].timeout: {e}"))?;
        out.insert(
            name.clone(),
            NamedJob {
                command: j.command,
                role: j.role,
                node: j.node,
                cwd: j.cwd,
                timeout,
                gpus: j.gpus,
                env: j.env.into_iter().collect(),
                aliases: j.aliases,
                description: j.description,
            },
        );
    }
    Ok(out)
}

fn parse_policy(raw: RawPolicy) -> Result<Policy, String> {
    if raw.run_on_gateway == Some(true) {
        return Err("policy.run_on_gateway = true is not supported: the gateway never runs jobs (safe lab policy); \
             enroll the gateway machine as a node instead"
            .into());
    }
    let action = |key: &str, s: &str| {
        Action::parse(s).ok_or_else(|| format!("{key}: {s:?} is not one of allow, deny, approve"))
    };
    let defaults = Policy::default();
    let mut rules = Vec::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let key = format!("policy.rules[{i}].action");
        rules.push(Rule {
            nodes: r.nodes,
            users: r.users,
            commands: r.commands,
            jobs: r.jobs,
            action: Some(action(&key, &r.action)?),
            approvers: r.approvers,
            allow_self_approval: r.allow_self_approval,
        });
    }
    Ok(Policy {
        default: match raw.default {
            Some(d) => action("policy.default", &d)?,
            None => defaults.default,
        },
        approvers: raw.approvers.unwrap_or(defaults.approvers),
        rules,
        approval_timeout: dur(
            "policy.approval_timeout",
            raw.approval_timeout,
            defaults.approval_timeout,
        )?,
        allow_shell: raw.allow_shell.unwrap_or(defaults.allow_shell),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_defaults() {
        let cfg = Config::parse(&Config::template("gw-1", "0.0.0.0:7443")).unwrap();
        assert_eq!(cfg.name, "gw-1");
        assert_eq!(cfg.listen, "0.0.0.0:7443");
        assert_eq!(cfg.pending_ttl, Duration::from_secs(86_400));
        assert_eq!(cfg.dead_after, Duration::from_secs(3));
        assert_eq!(cfg.node_cert_ttl, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn named_jobs_and_aliases() {
        let cfg = Config::parse(
            "[jobs.training]\ncommand = [\"python\", \"train.py\"]\nrole = \"gpu\"\naliases = [\"Train Model\"]\ntimeout = \"12h\"",
        )
        .unwrap();
        let (name, job) = cfg.named_job("train model").unwrap();
        assert_eq!(name, "training");
        assert_eq!(job.timeout, Some(Duration::from_secs(43_200)));
        assert!(cfg.named_job("training").is_some());
        assert!(cfg.named_job("nope").is_none());
    }

    #[test]
    fn empty_file_is_defaults() {
        let cfg = Config::parse("").unwrap();
        assert_eq!(cfg.listen, DEFAULT_LISTEN);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let cases = [
            ("[gateway]\nlisten = 5", "listen"),
            ("[gateway]\nlistn = \"x\"", "listn"),
            ("[liveness]\ndead_after = \"soon\"", "dead_after"),
            (
                "[liveness]\nheartbeat_interval = \"2s\"\ndead_after = \"3s\"",
                "twice",
            ),
            ("[gateway]\nname = \"Bad Name\"", "gateway.name"),
            ("not toml [", ""),
            ("[policy]\nrun_on_gateway = true", "never runs jobs"),
            ("[policy]\ndefault = \"maybe\"", "policy.default"),
            (
                "[jobs.x]\ncommand = []\nrole = \"gpu\"",
                "command must not be empty",
            ),
            ("[jobs.x]\ncommand = [\"a\"]", "exactly one of role or node"),
            (
                "[[policy.rules]]\naction = \"nope\"",
                "policy.rules[0].action",
            ),
            (
                "[jobs.x]\ncommand = [\"a\"]\nrole = \"gpu\"\nenv = { LD_PRELOAD = \"x\" }",
                "LD_PRELOAD",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
