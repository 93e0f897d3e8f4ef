//! `gateway.toml`: parsed strictly, every key documented in the file that
//! `gateway init` writes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::policy::{Action, FileRule, Policy, Rule};

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
    /// GPUs (default 1 for role `gpu`, else 0: `jobs/spec.rs` `default_gpus`).
    pub gpus: Option<u32>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Chat phrases that mean this job ("train model").
    pub aliases: Vec<String>,
    /// One line for help output.
    pub description: Option<String>,
    /// The user it runs as on the node (the node must list it in
    /// `allowed_run_as`); default: the node's `run_as`.
    pub run_as: Option<String>,
    /// Files to keep when it ends (relative globs under its working
    /// directory), checked by [`proto::artifact::check_patterns`].
    pub artifacts: Vec<String>,
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
    /// The largest UDP payload path MTU discovery tries toward peers
    /// (`[gateway] udp_payload_max`, checked by
    /// [`mesh::tls::check_udp_payload_max`]; default quinn's 1452).
    pub udp_payload_max: u16,
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
    /// Largest artifact file the gateway stores.
    pub artifact_max_file: u64,
    /// Most artifact bytes the gateway stores for one job.
    pub artifact_max_job: u64,
    /// Seconds between SIGTERM and SIGKILL on cancel or timeout.
    pub kill_grace: Duration,
    /// Default lifetime of admin and bot certificates.
    pub client_cert_ttl: Duration,
    /// Most live connections one certificate may hold.
    pub max_connections_per_cert: usize,
    /// Enrollment connections open at once, from everyone.
    pub enroll_max_connections: usize,
    /// Enrollment connections per source address per minute.
    pub enroll_rate_per_minute: u32,
    /// How long an enrollment connection may take to send its request.
    pub enroll_read_timeout: Duration,
    /// What the gateway prunes.
    pub retention: Retention,
    /// Where the state lives.
    pub state: StateConfig,
    /// Accounts, quotas and the fair-share queue (`[fair_share]`,
    /// `[projects.NAME]`, `[quotas…]`).
    pub fair: crate::fair::FairConfig,
}

/// `[state]`: the state database. Without a URL, embedded SQLite in the
/// gateway's home (`state.db`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateConfig {
    /// `postgres://USER@HOST:PORT/DB[?sslmode=…]`; never with a password.
    pub url: Option<String>,
    /// A file (mode 0600) holding the database password; `PGPASSWORD` wins.
    pub password_file: Option<String>,
    /// PEM of the CA that signed the database server's certificate; with
    /// it, the connection uses TLS.
    pub ca_file: Option<String>,
    /// Most connections in the pool.
    pub pool_size: u32,
    /// How long the leader lease lasts without a renewal (PostgreSQL):
    /// a standby takes over within about this long of a leader's death.
    pub lease_ttl: Duration,
    /// Where job output files, recordings and artifacts are kept.
    /// Default: `logs/` in the home.
    pub logs_dir: Option<String>,
    /// Where job output is stored (`output = "database" | "files"`);
    /// `None`: the database on PostgreSQL, files on SQLite
    /// (see [`output_store`]).
    pub output: Option<OutputStore>,
    /// `logs_dir_shared = true`: the operator declares that every gateway
    /// of the group sees one `logs_dir` (a mount), which files-only output
    /// on PostgreSQL needs to survive a failover.
    pub logs_dir_shared: bool,
}

/// Where a gateway stores job output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStore {
    /// In the state database (`job_output`): every gateway of an HA group
    /// reads it, no shared filesystem needed. PostgreSQL only.
    Database,
    /// In `logs_dir/<id>.stdout|stderr`.
    Files,
}

/// Where job output goes, given whether the state is on PostgreSQL (an HA
/// group) and the `[state]` settings; an error says why a gateway must not
/// start: output that a failover would lose, or a database that cannot
/// hold it.
pub fn output_store(postgres: bool, state: &StateConfig) -> Result<OutputStore, String> {
    match (postgres, state.output) {
        (true, None | Some(OutputStore::Database)) => Ok(OutputStore::Database),
        (true, Some(OutputStore::Files)) if state.logs_dir_shared => Ok(OutputStore::Files),
        (true, Some(OutputStore::Files)) => Err(
            "[state] output = \"files\" with PostgreSQL state: a job's output would stay on this gateway's \
             logs_dir, and a standby that takes over would find none of it. Remove the output line (output \
             then goes to the database, which every gateway of the group reads), or, if every gateway mounts \
             one logs_dir, declare it with logs_dir_shared = true"
                .into(),
        ),
        (false, Some(OutputStore::Database)) => Err(
            "[state] output = \"database\" needs PostgreSQL state ([state] url); with SQLite, output is kept \
             in logs_dir: remove the output line"
                .into(),
        ),
        (false, _) => Ok(OutputStore::Files),
    }
}

/// `[retention]`: what the gateway prunes, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Ended jobs (rows and logs) older than this are deleted.
    pub jobs: Duration,
    /// Audit rows older than this are deleted.
    pub audit: Duration,
    /// Job logs together may take at most this many bytes; the oldest
    /// ended jobs' logs go first.
    pub logs_max_bytes: u64,
    /// How often the pruner runs.
    pub interval: Duration,
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
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    fair_share: crate::fair::config::RawFairShare,
    #[serde(default)]
    projects: BTreeMap<String, crate::fair::config::RawProject>,
    #[serde(default)]
    quotas: crate::fair::config::RawQuotas,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    url: Option<String>,
    password_file: Option<String>,
    ca_file: Option<String>,
    pool_size: Option<u32>,
    lease_ttl: Option<String>,
    logs_dir: Option<String>,
    output: Option<String>,
    logs_dir_shared: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    jobs: Option<String>,
    audit: Option<String>,
    logs_max_bytes: Option<u64>,
    interval: Option<String>,
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
    run_as: Option<String>,
    #[serde(default)]
    artifacts: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    run_on_gateway: Option<bool>,
    default: Option<String>,
    approvers: Option<Vec<String>>,
    approval_timeout: Option<String>,
    allow_shell: Option<bool>,
    allow_forward: Option<bool>,
    shell: Option<String>,
    record_input: Option<bool>,
    #[serde(default)]
    shell_rules: Vec<RawShellRule>,
    chat_default: Option<String>,
    chat_shell: Option<bool>,
    env_allow: Option<Vec<String>>,
    env_secret: Option<Vec<String>>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    files: Vec<RawFileRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileRule {
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    direction: Option<String>,
    files: String,
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
struct RawShellRule {
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    shell: String,
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default)]
    allow_self_approval: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    output_cap_bytes: Option<u64>,
    artifact_max_file_bytes: Option<u64>,
    artifact_max_job_bytes: Option<u64>,
    kill_grace: Option<String>,
    client_cert_ttl: Option<String>,
    max_connections_per_cert: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    name: Option<String>,
    listen: Option<String>,
    advertise: Option<String>,
    udp_payload_max: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrollment {
    pending_ttl: Option<String>,
    max_pending: Option<usize>,
    node_cert_ttl: Option<String>,
    max_connections: Option<usize>,
    rate_per_minute: Option<u32>,
    read_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLiveness {
    heartbeat_interval: Option<String>,
    dead_after: Option<String>,
    job_grace: Option<String>,
    gpu_temp_limit_c: Option<u32>,
}

/// The leader lease's default length (`[state] lease_ttl`): failover in about
/// 2 s with the nodes' group timing (see docs/HA.md).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_millis(1500);

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
        // A TOML error quotes the line it stopped at: a URL there may
        // carry a password.
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| proto::redact::urls_in(&e.to_string()))?;
        let name = raw
            .gateway
            .name
            .unwrap_or_else(|| "openclaw-gateway".into());
        proto::names::validate_name(&name).map_err(|e| format!("gateway.name: {e}"))?;
        let cfg = Config {
            name,
            listen: raw.gateway.listen.unwrap_or_else(|| DEFAULT_LISTEN.into()),
            advertise: raw
                .gateway
                .advertise
                .map(|a| check_advertise(&a).map(|()| a))
                .transpose()
                .map_err(|e| format!("gateway.advertise: {e}"))?,
            udp_payload_max: match raw.gateway.udp_payload_max {
                None => mesh::tls::UDP_PAYLOAD_DEFAULT,
                Some(v) => mesh::tls::check_udp_payload_max("gateway.udp_payload_max", v)?,
            },
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
            artifact_max_file: raw.limits.artifact_max_file_bytes.unwrap_or(256 << 20),
            artifact_max_job: raw.limits.artifact_max_job_bytes.unwrap_or(1 << 30),
            kill_grace: dur(
                "limits.kill_grace",
                raw.limits.kill_grace,
                Duration::from_secs(10),
            )?,
            client_cert_ttl: dur(
                "limits.client_cert_ttl",
                raw.limits.client_cert_ttl,
                Duration::from_secs(90 * 86_400),
            )?,
            max_connections_per_cert: raw.limits.max_connections_per_cert.unwrap_or(64),
            enroll_max_connections: raw.enrollment.max_connections.unwrap_or(256),
            enroll_rate_per_minute: raw.enrollment.rate_per_minute.unwrap_or(60),
            enroll_read_timeout: dur(
                "enrollment.read_timeout",
                raw.enrollment.read_timeout,
                Duration::from_secs(5),
            )?,
            retention: Retention {
                jobs: dur(
                    "retention.jobs",
                    raw.retention.jobs,
                    Duration::from_secs(90 * 86_400),
                )?,
                audit: dur(
                    "retention.audit",
                    raw.retention.audit,
                    Duration::from_secs(365 * 86_400),
                )?,
                logs_max_bytes: raw.retention.logs_max_bytes.unwrap_or(50 << 30),
                interval: dur(
                    "retention.interval",
                    raw.retention.interval,
                    Duration::from_secs(3600),
                )?,
            },
            state: StateConfig {
                url: raw
                    .state
                    .url
                    .filter(|u| !u.trim().is_empty())
                    .map(|u| check_state_url(&u).map(|()| u))
                    .transpose()
                    .map_err(|e| format!("state.url: {e}"))?,
                password_file: raw.state.password_file.filter(|p| !p.trim().is_empty()),
                ca_file: raw.state.ca_file.filter(|p| !p.trim().is_empty()),
                pool_size: raw.state.pool_size.unwrap_or(4).clamp(1, 64),
                lease_ttl: dur("state.lease_ttl", raw.state.lease_ttl, DEFAULT_LEASE_TTL)?,
                logs_dir: raw.state.logs_dir.filter(|p| !p.trim().is_empty()),
                output: match raw.state.output.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some("database") => Some(OutputStore::Database),
                    Some("files") => Some(OutputStore::Files),
                    Some(other) => {
                        return Err(format!(
                            "state.output: {other:?}: expected \"database\" or \"files\""
                        ));
                    }
                },
                logs_dir_shared: raw.state.logs_dir_shared.unwrap_or(false),
            },
            fair: crate::fair::config::parse(raw.fair_share, raw.projects, raw.quotas)?,
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
        if cfg.client_cert_ttl < Duration::from_secs(60) {
            return Err("limits.client_cert_ttl must be at least 60s".into());
        }
        if cfg.max_connections_per_cert == 0
            || cfg.enroll_max_connections == 0
            || cfg.enroll_rate_per_minute == 0
        {
            return Err("limits.max_connections_per_cert, enrollment.max_connections and enrollment.rate_per_minute must be at least 1".into());
        }
        if cfg.state.lease_ttl < Duration::from_millis(500)
            || cfg.state.lease_ttl > Duration::from_secs(60)
        {
            return Err("state.lease_ttl must be between 500ms and 60s".into());
        }
        if cfg.retention.interval < Duration::from_secs(1) {
            return Err("retention.interval must be at least 1s".into());
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

    /// The commented file `gateway init` writes; `advertise` is set when
    /// given.
    pub fn template(name: &str, listen: &str, advertise: Option<&str>) -> String {
        let advertise = match advertise {
            Some(a) => format!("advertise = \"{a}\""),
            None => "# advertise = \"gateway.example.org:7443\"".to_string(),
        };
        let env_allow = format!(
            "env_allow = [\n{}]",
            proto::env::DEFAULT_ALLOW
                .iter()
                .map(|k| format!("  \"{k}\",\n"))
                .collect::<String>()
        );
        format!(
            r#"# OpenClaw gateway configuration.
# Read at start, and again on SIGHUP (`kill -HUP PID`, or `systemctl reload
# openclaw-gateway`); a file that does not parse is refused and the running
# configuration kept. These keys take effect only on a restart:
# gateway.listen, gateway.advertise, gateway.udp_payload_max,
# enrollment.max_connections, metrics.listen, and liveness.dead_after as the QUIC idle timeout (the
# dead-node check itself uses the reloaded value).
# liveness.heartbeat_interval reaches a node when it next connects.
# Durations are written like 500ms, 30s, 10m, 1h, 30d.

[gateway]
# Name of this gateway; appears in its certificate and in `openclaw node list`.
name = "{name}"
# UDP address the QUIC listener binds (host:port). Port 0 picks a free port;
# the bound address is written to gateway.addr in this home.
listen = "{listen}"
# Address that nodes dial, written into join tokens. Set it when the listen
# address is not reachable as such (0.0.0.0, NAT). Defaults to the bound
# address; `token create` refuses a loopback or wildcard one while the
# gateway listens beyond loopback.
{advertise}
# The largest UDP payload path MTU discovery tries toward peers, in bytes
# (1200..6550; default 1452, quinn's). Up to 6550 finds larger datagrams on
# loopback or a jumbo-frame link (raw QUIC +40 % on loopback, end-to-end
# output within noise; opt-in: see docs/PERFORMANCE.md, section "thru").
# udp_payload_max = 1452

[enrollment]
# How long an enrollment request waits for `openclaw node approve`.
pending_ttl = "24h"
# The most enrollment requests pending at once; more are refused.
max_pending = 1000
# Lifetime of the certificates issued to nodes.
node_cert_ttl = "30d"
# Enrollment needs no certificate, so it is bounded: connections open at once
# from everyone, new connections per source address per minute, and how long
# one may take to send its request.
max_connections = 256
rate_per_minute = 60
read_timeout = "5s"

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
# gpus = 1                       # without it: one for role = "gpu", else none
# aliases = ["train model"]
# description = "Train the default model"
# run_as = "trainer"             # a user the node lists in allowed_run_as
# artifacts = ["ckpt/*.pt", "metrics.json"]  # files kept when it ends (relative to its directory)

[policy]
# Safe lab policy: the gateway never runs jobs itself. Only false is accepted.
run_on_gateway = false
# What happens when no rule matches, for jobs from the admin CLI: allow | deny | approve.
default = "allow"
# ...and for jobs a chat bot submits for a chat user. Relax with "allow".
chat_default = "approve"
# Who may approve: certificate names (admin) or chat identities with their
# namespace, e.g. "slack:T0123ABCD/U024BE7LH". Bare Slack ids are refused.
approvers = ["admin"]
# How long a job waits for approval before it expires.
approval_timeout = "1h"
# Whether jobs may run through `sh -c`: from the CLI (openclaw run --shell), and from chat.
allow_shell = true
chat_shell = false
# Whether admins may forward TCP ports to nodes (openclaw forward); each node's
# node.toml forward_ports still lists the ports it accepts (none by default).
allow_forward = true
# Interactive sessions (openclaw shell NODE, openclaw run -t): allow | deny |
# approve, on top of the rules above (which still judge the command). Chat
# bots never open one. Per node and requester: [[policy.shell_rules]] below.
shell = "allow"
# Session recordings (asciicast, next to the job's log, under its retention)
# keep the terminal's output; with this, what was typed too (passwords included).
record_input = false
# Env keys a requester may set (globs; prefer exact names: CUDA_* would admit
# CUDA_INJECTION64_PATH). Loader, shell start-up, interpreter, GPU-stack
# plugin, compiler, code-cache, dump-path and GPU-isolation variables (PATH,
# BASH_ENV, PYTHONPATH, LD_*, CUDA_INJECTION*, NCCL_*_PLUGIN, TRITON_*, ...;
# see docs/SECURITY.md) are refused even if a glob here admits them.
{env_allow}
# Env keys whose values job show, approvals and chat never display.
env_secret = ["*TOKEN*", "*SECRET*", "*PASSWORD*", "*_KEY", "*PASSWD*"]

# Rules, first match wins. Every list is optional and holds globs:
# nodes (node name), users (requester), commands (argv[0] and the whole line), jobs (named job).
# [[policy.rules]]
# nodes = ["worker-gpu-*"]
# action = "approve"                 # allow | deny | approve
# approvers = ["admin", "slack:T0123ABCD/U024BE7LH"]
# allow_self_approval = false

# Fair shares of the GPUs. When capacity frees, the next waiting job is the
# one whose account (its project, else its requester) used the fewest
# GPU-hours, each hour counting half as much every half_life; then the
# highest --priority (capped at max_priority either way); then the oldest.
# [fair_share]
# half_life = "7d"
# max_priority = 10
#
# Projects a job may be charged to (`openclaw run --project vision`, or
# "for project vision" in chat); only members may. Members are written as
# policy names people: user:NAME, slack:TEAM/USER, or an admin's name.
# [projects.vision]
# members = ["user:alice", "slack:T0123ABCD/U024BE7LH"]
#
# Quotas: GPUs and jobs at once, jobs waiting, GPU-hours over any 7 days.
# A job over gpus or jobs waits (with --queue); one that could never fit,
# or over its weekly budget, is refused. [quotas.default] applies to every
# user without an entry of their own; a project's applies to its jobs too.
# [quotas.default]
# gpus = 2
# jobs = 4
# queued = 50
# gpu_hours_per_week = 100
# [quotas.users."user:alice"]
# gpus = 4
# [quotas.projects.vision]
# gpu_hours_per_week = 500
# Copying files (openclaw cp), first match wins; with no match admins may, and lab
# members may where the rules above let them use the node. Each node's node.toml
# allowed_paths still decides where (none by default). Chat bots never copy.
# [[policy.files]]
# nodes = ["secure-*"]
# users = ["user:*"]
# direction = "upload"               # upload | download; leave out for both
# files = "deny"                     # allow | deny (approve is refused: copies are never held)
# Interactive sessions per node and requester, first match wins (globs):
# [[policy.shell_rules]]
# nodes = ["secure-*"]
# users = ["user:*"]
# shell = "deny"                     # allow | deny | approve
# approvers = ["admin"]

[limits]
# Stored output per job and stream; past it the log is cut with a marker (the job keeps running).
output_cap_bytes = 1073741824
# Job artifacts (openclaw run --artifact): the largest file kept, and the most
# bytes kept for one job; a bigger file is refused while it arrives.
artifact_max_file_bytes = 268435456
artifact_max_job_bytes = 1073741824
# Seconds between SIGTERM and SIGKILL when a job is cancelled or times out.
kill_grace = "10s"
# Default lifetime of admin and bot certificates ('openclaw client renew' renews).
client_cert_ttl = "90d"
# Most live connections one certificate may hold at once.
max_connections_per_cert = 64

[retention]
# Ended jobs, with their logs, are deleted after this long.
jobs = "90d"
# Audit rows are deleted after this long.
audit = "365d"
# All job logs together stay under this; the oldest ended jobs' logs go first.
logs_max_bytes = 53687091200
# How often the gateway prunes.
interval = "1h"

[state]
# Where the state lives. Empty: embedded SQLite (state.db in this home).
# For gateways that share state (a hot standby), a PostgreSQL URL:
# url = "postgres://openclaw@db.example.org:5432/openclaw"
# Never put the password in the URL: set PGPASSWORD, or name a file (0600).
# password_file = "/etc/openclaw/pgpass"
# TLS to the database: the PEM of the CA that signed its certificate.
# ca_file = "/etc/openclaw/db-ca.pem"
# pool_size = 4
# With PostgreSQL, gateways sharing this state elect a leader; the others
# wait as standbys and take over within about lease_ttl of its death. The
# leader renews four times per lease_ttl and stops serving when the database
# has not answered for 3/4 of it: a longer lease rides out a slower database,
# a shorter one fails over sooner (docs/HA.md has the measured trade).
# lease_ttl = "1500ms"
# Job output files, recordings and artifacts.
# logs_dir = "/srv/openclaw/logs"
# With PostgreSQL, job output is stored in the database, which every gateway
# of the group reads after a failover: no shared filesystem is needed.
# output = "files" keeps it in logs_dir instead, and is refused unless every
# gateway mounts one logs_dir and says so with logs_dir_shared = true.
# output = "database"
# logs_dir_shared = false
url = ""

[metrics]
# Serve Prometheus metrics at http://ADDRESS/metrics (e.g. "127.0.0.1:9464").
# Empty or absent: off. Port 0 picks a free port, written to metrics.addr.
listen = ""
"#
        )
    }
}

/// Checks a `[state] url`: a PostgreSQL URL without a password, neither
/// in its userinfo nor as a `password` or `sslpassword` parameter. The
/// errors never quote the URL.
pub fn check_state_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or("expected postgres://USER@HOST:PORT/DB (SQLite needs no url)")?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && userinfo.contains(':')
    {
        return Err(
            "the URL carries a password; remove it and set PGPASSWORD or state.password_file"
                .into(),
        );
    }
    if authority.is_empty() || authority.ends_with('@') {
        return Err("the URL names no host; expected postgres://USER@HOST:PORT/DB".into());
    }
    if rest.contains('#') {
        return Err("the URL has a #fragment, which PostgreSQL URLs do not; remove it".into());
    }
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    if query
        .split('&')
        .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
        .any(proto::redact::is_password_key)
    {
        return Err(
            "the URL carries a password parameter; remove it and set PGPASSWORD or state.password_file"
                .into(),
        );
    }
    Ok(())
}

/// Checks an address nodes are to dial: `HOST:PORT`, `[V6]:PORT`.
pub fn check_advertise(a: &str) -> Result<(), String> {
    let bad = || format!("{a:?} is not HOST:PORT (e.g. gw.example.org:7443 or [2001:db8::1]:7443)");
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    };
    if port == 0 || !host_ok {
        return Err(bad());
    }
    Ok(())
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
        for (k, v) in &j.env {
            // The admin wrote these, so no allowlist applies; the fixed
            // dangerous list still does.
            if let Err(why) = proto::env::check_unlisted(k, v) {
                return Err(format!(
                    "[{key}].env: {}; set it inside the command instead, e.g. command = [\"env\", \"{k}=...\", ...]",
                    proto::env::explain(k, &why, "")
                ));
            }
        }
        if let Some(u) = &j.run_as
            && (u.is_empty()
                || u.len() > 32
                || !u
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!("[{key}].run_as: {u:?} is not a user name"));
        }
        proto::artifact::check_patterns(&j.artifacts)
            .map_err(|e| format!("[{key}].artifacts: {e}"))?;
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
                run_as: j.run_as,
                artifacts: j.artifacts,
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
    let identities = |key: &str, list: &[String]| -> Result<(), String> {
        for p in list {
            proto::identity::validate_identity_pattern(p).map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(())
    };
    if let Some(a) = &raw.approvers {
        identities("policy.approvers", a)?;
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        identities(&format!("policy.rules[{i}].users"), &r.users)?;
        identities(&format!("policy.rules[{i}].approvers"), &r.approvers)?;
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
    let mut files = Vec::new();
    for (i, r) in raw.files.into_iter().enumerate() {
        identities(&format!("policy.files[{i}].users"), &r.users)?;
        let direction = match r.direction.as_deref() {
            None => None,
            Some("upload") => Some(proto::files::Direction::ToNode),
            Some("download") => Some(proto::files::Direction::FromNode),
            Some(d) => {
                return Err(format!(
                    "policy.files[{i}].direction: {d:?} is not one of upload, download (leave it out for both)"
                ));
            }
        };
        files.push(FileRule {
            nodes: r.nodes,
            users: r.users,
            direction,
            files: action(&format!("policy.files[{i}].files"), &r.files)?,
        });
    }
    let mut shell_rules = Vec::new();
    for (i, r) in raw.shell_rules.into_iter().enumerate() {
        identities(&format!("policy.shell_rules[{i}].users"), &r.users)?;
        identities(&format!("policy.shell_rules[{i}].approvers"), &r.approvers)?;
        let key = format!("policy.shell_rules[{i}].shell");
        shell_rules.push(Rule {
            nodes: r.nodes,
            users: r.users,
            action: Some(action(&key, &r.shell)?),
            approvers: r.approvers,
            allow_self_approval: r.allow_self_approval,
            ..Rule::default()
        });
    }
    Ok(Policy {
        files,
        shell: match raw.shell {
            Some(d) => action("policy.shell", &d)?,
            None => defaults.shell,
        },
        shell_rules,
        record_input: raw.record_input.unwrap_or(defaults.record_input),
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
        allow_forward: raw.allow_forward.unwrap_or(defaults.allow_forward),
        chat_default: match raw.chat_default {
            Some(d) => action("policy.chat_default", &d)?,
            None => defaults.chat_default,
        },
        chat_shell: raw.chat_shell.unwrap_or(defaults.chat_shell),
        env_allow: raw.env_allow.unwrap_or(defaults.env_allow),
        env_secret: raw.env_secret.unwrap_or(defaults.env_secret),
    })
}

#[cfg(test)]
mod tests;
