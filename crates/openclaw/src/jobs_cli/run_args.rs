//! The arguments of `openclaw run`.

use clap::Args;

/// `openclaw run`.
#[derive(Args)]
pub struct RunArgs {
    /// Run at most once per key: a repeat with the same key within 24 h
    /// (a retried script, say) gets the first job instead of a new one.
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
    /// Run on this node (the job holds no GPU unless --gpus asks).
    #[arg(long, conflicts_with_all = ["role", "all"])]
    pub(crate) node: Option<String>,
    /// Run on every matching healthy node at once (a fan-out); narrow it
    /// with --role and --label. Exits with the largest exit code of any node.
    #[arg(long, conflicts_with_all = ["detach", "queue"])]
    pub(crate) all: bool,
    /// With --all: only nodes with this label, k=v or a word (repeatable; all must match).
    #[arg(long = "label", value_name = "LABEL", requires = "all")]
    pub(crate) labels: Vec<String>,
    /// With --all: at most N nodes at once, or N% of them (a sliding window).
    #[arg(long, value_name = "N|N%", requires = "all")]
    pub(crate) batch: Option<String>,
    /// With --all: print each node's output in one block when it ends,
    /// instead of lines prefixed by node name as they come.
    #[arg(long, requires = "all")]
    pub(crate) group: bool,
    /// Run on a healthy node with this role (label); `gpu` also matches
    /// nodes with GPUs, and asks for one GPU unless --gpus says otherwise.
    #[arg(long)]
    pub(crate) role: Option<String>,
    /// Run a named job from the gateway config.
    #[arg(long)]
    pub(crate) job: Option<String>,
    /// Kill the job after this long (e.g. 30s, 2h).
    #[arg(long)]
    pub(crate) timeout: Option<String>,
    /// Working directory on the node (absolute).
    #[arg(long)]
    pub(crate) cwd: Option<String>,
    /// Extra environment, K=V (repeatable). Only keys the gateway's env_allow admits; loader,
    /// shell, interpreter and GPU-stack variables (LD_*, PATH, PYTHONPATH, CUDA_INJECTION64_PATH,
    /// ...) are refused (exit 252).
    #[arg(long = "env", value_name = "K=V")]
    pub(crate) env: Vec<String>,
    /// Run the command line through `sh -c`.
    #[arg(long)]
    pub(crate) shell: bool,
    /// Print the job id and return at once (the job's stdin is /dev/null).
    #[arg(long)]
    pub(crate) detach: bool,
    /// Give the job /dev/null as its standard input, as `ssh -n` does.
    /// Without it, `run` streams its own standard input to the job (unless
    /// that is /dev/null already), and its end reaches the job as end of
    /// file: `tar c . | openclaw run --node N -- tar x -C /srv/lab`.
    #[arg(short = 'n', long = "no-stdin")]
    pub(crate) no_stdin: bool,
    /// Run it on a terminal of the node's (a PTY), as `ssh -t` does: an
    /// interactive program (a shell, top, vim) works, keys such as Ctrl-C
    /// go to it, window resizes follow, and the session is recorded
    /// ('openclaw job replay'). Without a command, the login shell. Needs
    /// policy.shell to allow it. Without a local terminal it still gets
    /// one on the node, as `ssh -tt`.
    #[arg(short = 't', long = "tty", conflicts_with_all = ["all", "detach", "json", "no_stdin"])]
    pub(crate) tty: bool,
    /// Print the final job record as JSON instead of streaming output
    /// (with --all: one JSON object per node, one per line).
    #[arg(long)]
    pub(crate) json: bool,
    /// Whole GPUs the job holds (its CUDA_VISIBLE_DEVICES). A job holds the
    /// GPUs it asks for: --gpus N anywhere; --role gpu asks for one; anything
    /// else (--node, another role, --all) for none; a single job that lands
    /// on a node with confirmed GPUs and holds none is warned about.
    #[arg(long)]
    pub(crate) gpus: Option<u32>,
    /// Wait for capacity instead of failing when no node has room now. A
    /// request no node could ever meet (more GPUs than any matching node has
    /// confirmed) is refused at once, with exit code 250.
    #[arg(long)]
    pub(crate) queue: bool,
    /// How long --queue waits.
    #[arg(long, default_value = "10m")]
    pub(crate) queue_timeout: String,
    /// Keep files matching this glob, relative to the job's working
    /// directory, when the job's command exits (repeatable; `*` and `?`
    /// stay within one directory): `--artifact 'ckpt/*.pt'`. Fetch them
    /// with 'openclaw job artifacts N'.
    #[arg(long = "artifact", value_name = "PATTERN", conflicts_with = "all")]
    pub(crate) artifacts: Vec<String>,
    /// Charge the job to this project (`[projects.NAME]` in gateway.toml;
    /// you must be one of its members). Without it, only to you.
    #[arg(long, value_name = "NAME")]
    pub(crate) project: Option<String>,
    /// Priority among the waiting jobs of your account (higher first),
    /// capped by the gateway's fair_share.max_priority. The account that
    /// used least still goes first.
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    pub(crate) priority: Option<i32>,
    /// The job may be stopped (SIGTERM, then SIGKILL after the grace
    /// period) for a waiting job of an account under its fair share, and
    /// is then queued again as a new attempt (a new job id; the stopped
    /// attempt's output stays with it).
    #[arg(long)]
    pub(crate) preemptible: bool,
    /// The command and its arguments: what follows `--`, or everything
    /// from the first word that is not an option of `run` (as ssh: `run
    /// --node n ls -la` runs `ls -la`). Options before it are run's own;
    /// an unknown one is an error, never part of the command.
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub(crate) cmd: Vec<String>,
}
