//! `openclaw`: one binary for the gateway, the node agent, the admin CLI and
//! the local lab. This file is a thin clap layer over the library crates.

mod artifacts_cli;
mod chat_cli;
mod clients_cli;
mod commands;
mod cp_cli;
mod cp_xfer;
mod docs_cli;
mod doctor;
mod fanout_cli;
mod forward_cli;
mod input;
mod interrupt;
mod jobs_cli;
mod lab;
mod output;
mod term;
#[cfg(test)]
mod tidy;
mod tty_cli;
mod usage_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::term::{errln, outln};
use clap::{CommandFactory as _, Parser, Subcommand};

/// Exit codes, documented in docs/CLI.md.
pub mod exit {
    /// Something failed; the message says what.
    pub const FAILURE: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// The gateway could not be reached (EX_UNAVAILABLE).
    pub const UNAVAILABLE: u8 = 69;
    /// Still waiting for an admin (EX_TEMPFAIL); run again to resume.
    pub const PENDING: u8 = 75;
    /// Refused: permission denied, revoked, rejected, bad token (EX_NOPERM).
    pub const REFUSED: u8 = 77;

    // `openclaw run` returns the remote exit code, as ssh does. When the
    // job could not run to completion it uses these instead.
    /// The job was killed after its --timeout (as timeout(1) does).
    pub const RUN_TIMED_OUT: u8 = 124;
    /// The job was cancelled (by someone else: a `run` that cancels its
    /// own job on a signal exits 128 + that signal).
    pub const RUN_CANCELLED: u8 = 130;
    /// Stdout was closed (`| head -1`): 128 + SIGPIPE, quietly, as a shell
    /// reports `ls` killed by SIGPIPE.
    pub const BROKEN_PIPE: u8 = 141;
    /// No node could ever meet the request (more GPUs than any matching
    /// node has confirmed); `--queue` refuses it too.
    pub const RUN_UNSATISFIABLE: u8 = 250;
    /// The node refused or failed to start it (cwd, node policy, no free GPU).
    pub const RUN_START_FAILED: u8 = 251;
    /// Denied by policy or by an approver, or approval expired.
    pub const RUN_DENIED: u8 = 252;
    /// The node is offline, or no node has free capacity.
    pub const RUN_UNAVAILABLE: u8 = 253;
    /// Unknown node, role, named job or job id.
    pub const RUN_UNKNOWN: u8 = 254;
    /// The gateway could not be reached or was lost (as ssh's 255).
    pub const RUN_CONNECTION: u8 = 255;

    /// Every code with its meaning, for docs/CLI.md.
    pub const TABLE: &[(u8, &str)] = &[
        (0, "Success (for `run`: the remote command exited 0)."),
        (
            FAILURE,
            "Something failed; the message says what and what to do next.",
        ),
        (USAGE, "Bad command line."),
        (
            UNAVAILABLE,
            "The gateway could not be reached (EX_UNAVAILABLE).",
        ),
        (
            PENDING,
            "Still waiting for an admin (EX_TEMPFAIL); run the same command again to resume.",
        ),
        (
            REFUSED,
            "Refused: permission denied, revoked, rejected, bad token (EX_NOPERM).",
        ),
        (
            RUN_TIMED_OUT,
            "`run`: the job was killed after its --timeout (as timeout(1) does).",
        ),
        (
            129,
            "`run`, `run --all`: SIGHUP (the terminal closed); the CLI cancelled its job(s) first.",
        ),
        (
            RUN_CANCELLED,
            "`run`: the job was cancelled (`job cancel`), or SIGINT (Ctrl-C) made the CLI cancel it.",
        ),
        (
            BROKEN_PIPE,
            "Stdout was closed (`| head -1`); quietly, as for `ls` killed by SIGPIPE. `run` cancels its job first (as ssh's remote command dies of SIGPIPE on its next write); `job logs` stops reading, the job goes on.",
        ),
        (
            143,
            "`run`, `run --all`: SIGTERM (e.g. from `timeout`); the CLI cancelled its job(s) first.",
        ),
        (
            RUN_UNSATISFIABLE,
            "`run`: no node could ever meet the request (more GPUs than any matching node has confirmed); --queue refuses it too.",
        ),
        (
            RUN_START_FAILED,
            "`run`: the node refused or failed to start it (cwd, node policy, no free GPU).",
        ),
        (
            RUN_DENIED,
            "`run`: denied by policy or by an approver, or the approval expired.",
        ),
        (
            RUN_UNAVAILABLE,
            "`run`: the node is offline, or no node has free capacity.",
        ),
        (
            RUN_UNKNOWN,
            "`run`: unknown node, role, named job or job id.",
        ),
        (
            RUN_CONNECTION,
            "`run`: the gateway could not be reached or was lost (as ssh's 255); the job goes on. `run` and `job logs --follow`: the job's node was lost (state `lost`).",
        ),
    ];
}

#[derive(Parser)]
#[command(
    name = "openclaw",
    version,
    about = "Run jobs on GPU lab nodes over a secure QUIC mesh"
)]
struct Cli {
    /// Home directory of this party (gateway, node or admin client).
    #[arg(long, global = true, env = "OPENCLAW_HOME")]
    home: Option<PathBuf>,
    /// Log format on stderr: text for people, json (one object per line)
    /// for log collectors. Levels come from RUST_LOG.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "OPENCLAW_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or run the gateway.
    #[command(subcommand)]
    Gateway(GatewayCmd),
    /// Manage join tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Enroll, list, approve and run nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Show who this home's credential is, as the gateway sees it.
    Whoami,
    /// Run a command on a node and stream its output; exits with its exit code.
    ///
    /// As with ssh, the job lives as long as this session: Ctrl-C, SIGTERM
    /// and SIGHUP cancel it (queued, awaiting approval or running; with
    /// --all, every node's job), print how it ended, and exit 128 + the
    /// signal (130, 143, 129). A closed stdout (`| head -1`) cancels it
    /// too, as ssh's remote command dies of SIGPIPE on its next write, and
    /// exits 141 without a word. --detach leaves the job running.
    Run(jobs_cli::RunArgs),
    /// An interactive shell on a node, as `ssh NODE` (`tsh ssh`) gives one:
    /// the job user's login shell on a terminal of the node's, or COMMAND
    /// on it (as `run -t`). It is a job like any other (an id, approval,
    /// audit, `job show`, retention), its cgroup ends every process when
    /// it ends, and its output is recorded ('openclaw job replay ID').
    /// Exits with the shell's exit code. The gateway's policy.shell (and
    /// shell_rules) decide who may open one where; chat bots never may.
    Shell {
        /// The node.
        node: String,
        /// A command to run instead of the login shell.
        #[arg(trailing_var_arg = true, value_name = "COMMAND")]
        cmd: Vec<String>,
    },
    /// List, inspect, follow, cancel, approve and deny jobs.
    #[command(subcommand)]
    Job(jobs_cli::JobCmd),
    /// GPU usage from the gateway's records: GPU-hours, jobs and their
    /// average wait per user, project, node or GPU model. A lab member
    /// sees their own jobs; an admin sees everyone's.
    Usage {
        /// How far back (e.g. 24h, 7d, 90d).
        #[arg(long, default_value = "7d")]
        since: String,
        /// Group by user, project, node or gpu (the GPU model).
        #[arg(long, default_value = "user")]
        by: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Forward a local TCP port to a port on a node's 127.0.0.1 through the
    /// gateway, as ssh -L does (Jupyter, TensorBoard, a debugger): each
    /// connection is one stream; the node still only dials out. The node's
    /// node.toml must list the port in forward_ports (none by default), and
    /// the gateway's policy.allow_forward must be true (the default). Every
    /// connection is audited with its byte counts. Runs until Ctrl-C.
    Forward {
        /// The node.
        node: String,
        /// PORT (the same port here) or LOCAL:PORT; LOCAL 0 picks a free port.
        #[arg(value_name = "[LOCAL:]PORT")]
        ports: String,
        /// The local address to listen on (beyond loopback, anyone who can
        /// reach it reaches the node's port).
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
    },
    /// Copy files to and from nodes through the gateway, as scp does:
    /// `openclaw cp ./data NODE:/srv/lab/ -r`, `openclaw cp NODE:/srv/lab/ckpt.pt .`,
    /// `-` for standard input or output. On the node the copy runs as the
    /// job user, only inside its node.toml allowed_paths (none by default),
    /// never through a symbolic link; the gateway's [[policy.files]] rules
    /// decide per node, user and direction. Each file is checked against
    /// its SHA-256 and written under a hidden partial name, then renamed;
    /// --resume continues an interrupted copy. Exits 0 when everything was
    /// copied, 1 otherwise (each failure is said with its path).
    #[command(override_usage = "openclaw cp [OPTIONS] SOURCE... DEST")]
    Cp(cp_cli::CpArgs),
    /// Send a chat message through the moltbot grammar and print the reply
    /// (an interactive prompt without a message).
    Chat {
        /// The chat user to act for (needs a bot credential, e.g. from
        /// 'openclaw client create moltbot --role bot').
        #[arg(long)]
        user: Option<String>,
        /// Print the resolved tool call and policy decision as JSON; run nothing.
        #[arg(long)]
        dry_run: bool,
        /// The message.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        message: Vec<String>,
    },
    /// Admin and bot credentials: create, list, revoke, renew.
    #[command(subcommand)]
    Client(ClientCmd),
    /// Serve the lab dashboard to a local browser, acting as this home's
    /// credential (like `kubectl proxy`): GPUs, jobs with live logs,
    /// approvals and enrollments. Every request needs a token, loopback
    /// included: a new random one is printed to standard error at start,
    /// with the login address. Pages live under a random path new at each
    /// start (http://127.0.0.1:7680/d-.../), which scopes the session
    /// cookie to this dashboard; sessions end after 30 minutes idle or 12
    /// hours. Loopback only unless --auth-token-file.
    Dashboard {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:7680")]
        listen: String,
        /// A file (mode 0600, at least 16 printable characters) holding the
        /// token to log in with, instead of a new one at each start;
        /// required to listen beyond loopback. Log in through the form at
        /// the printed address, or send Authorization: Bearer TOKEN to
        /// paths under it.
        #[arg(long)]
        auth_token_file: Option<PathBuf>,
        /// Open the dashboard in the default browser (xdg-open).
        #[arg(long)]
        open: bool,
    },
    /// The gateway's certificate authority: status and rotation.
    #[command(subcommand)]
    Ca(CaCmd),
    /// The Slack front end.
    #[command(subcommand)]
    Moltbot(MoltbotCmd),
    /// The WeCom (企业微信) front end.
    #[command(subcommand)]
    Wecom(WecomCmd),
    /// The personal WeChat (微信) front end, through Tencent's iLink bot API.
    #[command(subcommand)]
    Weixin(WeixinCmd),
    /// Check this home: key and directory modes, certificate expiry, the
    /// gateway config and policy, disk for logs, reaching the gateway over
    /// UDP (clock skew, path MTU), NVML on a node. Each problem comes with
    /// the command that fixes it; exits 1 if any check fails.
    Doctor {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script, e.g. `openclaw completions bash >
    /// /etc/bash_completion.d/openclaw`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages for every command (openclaw.1, openclaw-run.1, ...).
    Man {
        /// Directory to write them into (created if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Print the command reference (docs/CLI.md) from these definitions.
    #[command(hide = true)]
    DocsCli,
    /// Start a self-contained local lab: a gateway and two enrolled nodes.
    Lab {
        /// Directory for the lab's throwaway homes (default: certs/lab/<time> if ./certs exists, else a temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the lab's homes when it exits.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Subcommand)]
enum MoltbotCmd {
    /// Run moltbot: Slack Socket Mode in, gateway calls out. --home holds the
    /// bot credential and moltbot.toml; tokens come from SLACK_BOT_TOKEN and
    /// SLACK_APP_TOKEN.
    Run,
}

#[derive(Subcommand)]
enum WecomCmd {
    /// Run the WeCom bot: the intelligent robot's long connection in,
    /// gateway calls out. --home holds the bot credential (namespace
    /// wecom:CORPID) and wecom.toml; the bot id and secret come from
    /// WECOM_BOT_ID and WECOM_BOT_SECRET.
    Run,
}

#[derive(Subcommand)]
enum WeixinCmd {
    /// Log the bot in: shows a QR code to scan with the WeChat of the
    /// bot's owner, then saves the bot token (mode 0600) in --home and
    /// prints the chat namespace its gateway credential needs. The iLink
    /// URL comes from WEIXIN_API_URL or weixin.toml's api_url.
    Login,
    /// Run the WeChat bot: iLink's long poll in, gateway calls out. --home
    /// holds the bot credential (namespace weixin:BOT, as the login
    /// printed), the login and weixin.toml.
    Run,
}

#[derive(Subcommand)]
pub(crate) enum CaCmd {
    /// Where a CA rotation stands: phase, pins, and who still holds a
    /// certificate of the old CA.
    Status {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rotate the CA with an overlap, one phase at a time: `init` makes the
    /// new CA and trusts both; `rotate` issues from the new one (nodes renew
    /// over their live connections, clients when they next connect);
    /// `finish` drops the old CA and its key once nothing still uses it.
    Rotate {
        /// The phase to move to.
        #[arg(long, value_enum)]
        phase: RotatePhase,
        /// With `finish`: go on although some nodes or clients still hold a
        /// certificate of the old CA (they are locked out and must enroll
        /// again). With `init`: rotate although standby gateways share the
        /// state (they keep the old CA until they join again).
        #[arg(long)]
        force: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A phase of `openclaw ca rotate`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum RotatePhase {
    /// Make the next CA; trust both.
    Init,
    /// Issue from the new CA; everyone renews onto it.
    Rotate,
    /// Drop the old CA.
    Finish,
}

#[derive(Subcommand)]
pub(crate) enum ClientCmd {
    /// Make a key in --out, have the gateway sign it, and write a credential bundle there.
    Create {
        /// Identity, e.g. moltbot or alice; unique among clients.
        name: String,
        /// admin (manages the lab), user (a lab member: runs jobs and
        /// forwards, sees its own jobs and the nodes, manages nothing; acts
        /// as user:NAME in policy) or bot (a chat front end).
        #[arg(long, default_value = "admin")]
        role: String,
        /// For a bot: the chat namespace it speaks for, e.g. slack:T0123ABCD
        /// (your Slack team id), wecom:CORPID or weixin:BOT (as `openclaw weixin
        /// login` prints it). A bot may act only for users of this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Certificate lifetime (default: the gateway's limits.client_cert_ttl, 90d).
        #[arg(long)]
        ttl: Option<String>,
        /// Directory for the credential (becomes that client's --home).
        #[arg(long)]
        out: PathBuf,
    },
    /// List admin and bot credentials: NAME ROLE NAMESPACE STATE EXPIRES CONNECTIONS.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a credential: refused at once, live connections closed, its
    /// jobs that have not started cancelled.
    Revoke {
        /// Client name.
        name: String,
    },
    /// Renew this home's own credential (same key, new certificate); the old
    /// certificate stops working.
    Renew,
}

#[derive(Subcommand)]
enum GatewayCmd {
    /// Create the CA, server certificate, state, config and admin credential.
    Init {
        /// UDP address to listen on, host:port.
        #[arg(long, default_value = gateway::config::DEFAULT_LISTEN)]
        listen: String,
        /// Gateway name.
        #[arg(long, default_value = "openclaw-gateway")]
        name: String,
        /// Address nodes dial, written into join tokens (HOST:PORT). Needed
        /// when --listen is a wildcard or behind NAT.
        #[arg(long, value_name = "HOST:PORT")]
        advertise: Option<String>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Add a gateway to PostgreSQL state another gateway created with
    /// 'init --state': it gets its own home and server certificate, signed
    /// by the shared CA, and starts as a standby that takes over when the
    /// leader dies.
    Join {
        /// UDP address to listen on, host:port.
        #[arg(long, default_value = gateway::config::DEFAULT_LISTEN)]
        listen: String,
        /// This gateway's name (unique among the gateways sharing the state).
        #[arg(long)]
        name: String,
        /// Address nodes dial, written into join tokens (HOST:PORT).
        #[arg(long, value_name = "HOST:PORT")]
        advertise: Option<String>,
        /// The first gateway's home, or a directory holding its ca.crt and
        /// ca.key (a mount both see): the CA every gateway signs with.
        #[arg(long, value_name = "DIR")]
        ca_from: PathBuf,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Write a consistent backup of this gateway home to FILE (safe while
    /// the gateway runs). It holds the CA key: keep it like one.
    Backup {
        /// The backup file to write (a tar archive, mode 0600).
        file: PathBuf,
        /// Include job logs (job records and their sizes are always in).
        #[arg(long)]
        with_logs: bool,
    },
    /// Restore a backup into --home, which must not hold a gateway yet.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// Move this (stopped) gateway's state from its SQLite file into an
    /// empty PostgreSQL database, and point gateway.toml at it. The
    /// password comes from PGPASSWORD or --password-file, never the URL.
    MigrateState {
        /// The database: postgres://USER@HOST:PORT/DB[?sslmode=require].
        #[arg(long, value_name = "URL")]
        to: String,
        /// A file (mode 0600) holding the database password.
        #[arg(long, value_name = "FILE")]
        password_file: Option<String>,
        /// PEM of the CA that signed the database's certificate (TLS).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<String>,
    },
    /// Show where the state lives, which gateway leads (lease holder,
    /// generation, time left), the standbys and the database's health.
    /// Reads the database directly: works with no gateway running.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run the gateway in the foreground (logs via RUST_LOG).
    Run {
        /// Overrides the listen address in gateway.toml.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Remove a stopped gateway from the group sharing this state: nodes
    /// and clients drop its address at their next session. Asks the
    /// leader (an admin credential); a gateway seen lately is refused.
    Leave {
        /// The gateway's name (see 'openclaw gateway status').
        name: String,
    },
}

/// Where a gateway keeps its state: SQLite in its home unless --state
/// names PostgreSQL.
#[derive(clap::Args, Clone, Default)]
struct StateArgs {
    /// PostgreSQL state shared by a leader and its standbys:
    /// postgres://USER@HOST:PORT/DB (no password: PGPASSWORD or
    /// --password-file).
    #[arg(long, value_name = "URL")]
    state: Option<String>,
    /// A file (mode 0600) holding the database password.
    #[arg(long, value_name = "FILE", requires = "state")]
    password_file: Option<String>,
    /// PEM of the CA that signed the database's certificate (TLS).
    #[arg(long, value_name = "FILE", requires = "state")]
    ca_file: Option<String>,
    /// Where job output goes; gateways sharing state must share it.
    #[arg(long, value_name = "DIR", requires = "state")]
    logs_dir: Option<String>,
}

impl StateArgs {
    fn config(&self) -> Option<gateway::config::StateConfig> {
        self.state.as_ref().map(|url| gateway::config::StateConfig {
            url: Some(url.clone()),
            password_file: self.password_file.clone(),
            ca_file: self.ca_file.clone(),
            logs_dir: self.logs_dir.clone(),
            pool_size: 2,
            ..Default::default()
        })
    }
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a join token; prints exactly the token on stdout.
    Create {
        /// Lifetime.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Number of enrollments it allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Labels every node enrolled with it gets, comma-separated.
        #[arg(long, default_value = "")]
        labels: String,
        /// Enrollments with this token need no manual approval.
        #[arg(long)]
        auto_approve: bool,
        /// Most GPUs a node enrolled with it may offer to jobs (an
        /// auto-approved node offers none without this).
        #[arg(long)]
        max_gpus: Option<u32>,
    },
    /// List join tokens (never their secrets).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a join token.
    Revoke {
        /// Token id (first column of 'token list').
        id: String,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Enroll this machine as a node: key stays here, CSR goes to the gateway.
    Enroll {
        /// Join token from 'openclaw token create'.
        #[arg(long, env = "OPENCLAW_TOKEN", hide_env_values = true)]
        token: String,
        /// Node name: a-z, 0-9 and '-', 1-63 characters.
        #[arg(long)]
        name: String,
        /// Labels, comma-separated (e.g. gpu,a100).
        #[arg(long, default_value = "")]
        labels: String,
        /// Gateway address, overriding the token's; the CA pin still applies.
        #[arg(long)]
        gateway: Option<String>,
        /// How long to wait for approval.
        #[arg(long, default_value = "10m")]
        wait: String,
        /// The unprivileged user jobs run as (written to node.toml as run_as).
        #[arg(long)]
        run_as: Option<String>,
        /// Let jobs run as the agent's own user, which can read the node's
        /// key (written to node.toml; for labs and tests only).
        #[arg(long)]
        allow_jobs_as_agent_user: bool,
    },
    /// List nodes: NAME CONNECTION HEALTH LABELS FINGERPRINT LAST-SEEN ADDRESS CERT-EXPIRES.
    List {
        /// Machine-readable output: a stable array of objects.
        #[arg(long)]
        json: bool,
    },
    /// One node with its latest telemetry (GPUs, load, memory).
    Show {
        /// Node name.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending enrollment.
    Approve {
        /// Node name.
        name: String,
        /// Require the pending key to have this fingerprint (SHA256:...).
        #[arg(long)]
        fingerprint: Option<String>,
        /// Confirm these labels (comma-separated), replacing the token's and
        /// the node's proposal. Routing uses only confirmed labels.
        #[arg(long)]
        labels: Option<String>,
        /// Most GPUs this node may offer to jobs, whatever it reports.
        #[arg(long)]
        gpus: Option<u32>,
    },
    /// Reject a pending enrollment.
    Reject {
        /// Node name.
        name: String,
    },
    /// Revoke a node: close its connection now, refuse its certificate for good, and end
    /// every unfinished job that names it. The name stays taken until 'node release'.
    Revoke {
        /// Node name.
        name: String,
    },
    /// Free a revoked node's name so a new node may enroll under it (none of the old
    /// node's jobs follow the name).
    Release {
        /// Node name.
        name: String,
    },
    /// Run the node agent in the foreground.
    Run {
        /// Overrides the gateway address in node.toml.
        #[arg(long)]
        gateway: Option<String>,
        /// Offer N simulated GPUs (for tests and labs without NVIDIA
        /// hardware); jobs find a simulated nvidia-smi (-L and the default
        /// table, for the GPUs they hold) first on their PATH.
        #[arg(long, default_value_t = 0)]
        simulate_gpus: u32,
        /// The NVML library to load instead of the system's libnvidia-ml.so.1
        /// (a driver in an unusual place; tests load a stand-in). Overrides
        /// nvml_lib in node.toml.
        #[arg(long, env = "OPENCLAW_NVML_LIB", value_name = "PATH")]
        nvml_lib: Option<PathBuf>,
    },
}

fn default_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".openclaw")
}

/// How logs are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

fn init_tracing(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colours = term::log_colours(
        term::stderr_is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn main() -> ExitCode {
    // A node with simulated GPUs offers jobs this binary as `nvidia-smi`
    // when no openclaw-exec sits next to it (see node::simsmi).
    if node::simsmi::invoked_as(std::env::args_os().next().as_deref()) {
        node::simsmi::main();
    }
    // The node agent starts jobs through its own binary (see node::jail);
    // that path never reaches clap or a runtime.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == node::jail::SHIM_ARG)
    {
        node::jail::shim_main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help, version and usage errors, written by clap itself (it
        // escapes nothing, but all of it is our own text); a closed
        // stdout ends quietly, as everywhere else (see term).
        Err(e) => {
            return match e.print() {
                Err(p) if p.kind() == std::io::ErrorKind::BrokenPipe => {
                    ExitCode::from(exit::BROKEN_PIPE)
                }
                _ => ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE)),
            };
        }
    };
    // Documentation commands need no home, gateway or runtime.
    match &cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "openclaw", &mut script);
            // Our own definitions: nothing another party wrote.
            term::raw_out(&script);
            return exit_code(Ok(()));
        }
        Command::Man { out } => {
            return exit_code(match docs_cli::man_pages(Cli::command(), out) {
                Ok(n) => {
                    outln!("wrote {n} man pages to {}", out.display());
                    Ok(())
                }
                Err(e) => Err(commands::CliError::new(
                    exit::FAILURE,
                    format!(
                        "cannot write man pages to {}: {e}; pick a writable --out directory",
                        out.display()
                    ),
                )),
            });
        }
        Command::DocsCli => {
            // Our own definitions: nothing another party wrote.
            term::raw_out(docs_cli::markdown(&Cli::command(), exit::TABLE).as_bytes());
            return exit_code(Ok(()));
        }
        _ => {}
    }
    let long_running = matches!(
        cli.command,
        Command::Gateway(GatewayCmd::Run { .. })
            | Command::Node(NodeCmd::Run { .. })
            | Command::Dashboard { .. }
            | Command::Forward { .. }
            | Command::Moltbot(_)
            | Command::Wecom(_)
            | Command::Weixin(WeixinCmd::Run)
    );
    init_tracing(
        if long_running {
            // PostgreSQL NOTICEs (e.g. "relation already exists, skipping" at every
            // start) are not news; warnings and errors still show.
            "info,tokio_postgres::connection=warn"
        } else {
            "warn"
        },
        cli.log_format,
    );
    let home = mesh::Home::new(cli.home.clone().unwrap_or_else(default_home));
    // Servers (and the lab, which runs them in-process) get a worker per
    // core; a one-shot CLI command is a single conversation with the
    // gateway and is fastest on one thread, with no cross-thread wake-ups.
    let server = long_running || matches!(cli.command, Command::Lab { .. });
    let mut builder = if server {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return exit_code(Err(commands::CliError::new(
                exit::FAILURE,
                format!("cannot start the async runtime: {e}"),
            )));
        }
    };
    let outcome = runtime.block_on(commands::run(cli.command, home));
    // An interactive session's terminal is put back on every way out.
    tty_cli::leave_raw();
    // A server's blocking tasks may hang on a lost database (a gateway
    // that lost its lease for that reason): do not wait for them.
    if server {
        runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    } else {
        drop(runtime);
    }
    exit_code(outcome)
}

/// The process's exit: a closed stdout (see `term`) ends it quietly with
/// 141, whatever the command made of it; else the command's own code,
/// with its message.
fn exit_code(outcome: Result<(), commands::CliError>) -> ExitCode {
    if term::stdout_closed() {
        return ExitCode::from(exit::BROKEN_PIPE);
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An empty message means "exit with the remote job's code".
            if !e.message.is_empty() {
                errln!("error: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_cli_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn docs_cli_md_is_generated_from_these_definitions() {
        let want = docs_cli::markdown(&Cli::command(), exit::TABLE);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CLI.md");
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/CLI.md is stale; regenerate it: cargo run -q -p openclaw -- docs-cli > docs/CLI.md"
        );
        for needle in [
            "## `openclaw run`",
            "## `openclaw gateway init`",
            "`--advertise <HOST:PORT>`",
            "| 253 |",
        ] {
            assert!(want.contains(needle), "{needle} missing");
        }
    }

    #[test]
    fn completions_and_man_pages_cover_every_command() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "openclaw", &mut buf);
            let text = String::from_utf8(buf).unwrap();
            for word in ["gateway", "approve", "batch", "completions"] {
                assert!(text.contains(word), "{shell}: {word} missing");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let n = docs_cli::man_pages(Cli::command(), dir.path()).unwrap();
        assert!(n > 20, "only {n} pages");
        let run = std::fs::read_to_string(dir.path().join("openclaw-run.1")).unwrap();
        assert!(run.starts_with(".ie") || run.contains(".TH"), "{run}");
        assert!(run.contains("timeout"), "{run}");
    }
}
