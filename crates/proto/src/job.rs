//! Jobs on the wire: what a requester asks for, the frozen plan a node
//! runs, what users see, and the frames of a job stream. Wire types: see
//! [`crate::msg`].

use serde::{Deserialize, Serialize};

use crate::ApiError;

/// What a requester asks to run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobSpec {
    /// Run on this node.
    pub node: Option<String>,
    /// Run on a healthy node with this label (`gpu` also matches nodes with GPUs).
    pub role: Option<String>,
    /// Run this named job from the gateway config.
    pub job: Option<String>,
    /// The command, as argv (empty for a named job).
    pub argv: Vec<String>,
    /// Run `argv` joined by spaces through `sh -c`.
    pub shell: bool,
    /// Working directory on the node.
    pub cwd: Option<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Kill the job after this many seconds.
    pub timeout_secs: Option<u64>,
    /// Whole GPUs to assign.
    pub gpus: Option<u32>,
    /// Wait this long for capacity instead of failing at once.
    pub queue_timeout_secs: Option<u64>,
    /// The chat user a bot submits for (bots only).
    pub on_behalf_of: Option<String>,
    /// Makes the submit idempotent: a repeat with the same key from the same
    /// certificate within 24 h returns the job the first one created (a bot
    /// uses its chat event id, so a redelivered event never runs twice).
    pub idempotency_key: Option<String>,
}

/// How the requester of a [`JobRequest`] follows the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Follow {
    /// Answer with the job's record at once (`--detach`), as
    /// [`crate::Request::JobSubmit`].
    Detached,
    /// Stream the job's events, as [`crate::Request::JobRun`].
    Attached,
    /// Stream its events, and the rest of the requester's stream is the
    /// job's standard input, as [`crate::Request::JobRunInput`].
    AttachedWithInput,
}

/// A submission with options (protocol 3): a [`JobSpec`], how it is
/// followed, and options that grow by appending [`JobOption`] variants, so
/// a new option never changes the encoding of an older request. Clients
/// send it only when they have an option to give (older gateways know
/// only `JobSubmit`, `JobRun` and `JobRunInput`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// What to run.
    pub spec: JobSpec,
    /// How the requester follows it.
    pub follow: Follow,
    /// Options, at most [`MAX_JOB_OPTIONS`].
    pub options: Vec<JobOption>,
}

impl JobRequest {
    /// The request to send: the plain variant when there is no option, so
    /// a gateway that predates options serves it too.
    pub fn into_request(self) -> crate::Request {
        if !self.options.is_empty() {
            return crate::Request::JobRequest(self);
        }
        match self.follow {
            Follow::Detached => crate::Request::JobSubmit(self.spec),
            Follow::Attached => crate::Request::JobRun(self.spec),
            Follow::AttachedWithInput => crate::Request::JobRunInput(self.spec),
        }
    }
}

/// The most options one [`JobRequest`] may carry.
pub const MAX_JOB_OPTIONS: usize = 64;

/// One option of a [`JobRequest`]. Append new variants at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOption {
    /// Keep files matching this glob (relative to the job's working
    /// directory) as artifacts when the job ends (`--artifact`).
    Artifact(String),
    /// Charge the job to this project (`--project`).
    Project(String),
    /// Priority among the account's waiting jobs (`--priority`), capped by
    /// policy.
    Priority(i32),
    /// The job may be stopped and queued again for a waiting job of an
    /// account under its fair share (`--preemptible`).
    Preemptible,
}

impl JobOption {
    /// The option's CLI spelling, for errors.
    pub fn flag(&self) -> &'static str {
        match self {
            JobOption::Artifact(_) => "--artifact",
            JobOption::Project(_) => "--project",
            JobOption::Priority(_) => "--priority",
            JobOption::Preemptible => "--preemptible",
        }
    }
}

/// What a node is told to run. Frozen when the job is created: approval
/// applies to exactly this plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPlan {
    /// The job.
    pub job_id: u64,
    /// The node that runs it.
    pub node: String,
    /// Exact argv (`sh -c LINE` for shell jobs).
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Extra environment, admitted by the gateway's `env_allow`.
    pub env: Vec<(String, String)>,
    /// Kill after this many seconds.
    pub timeout_secs: Option<u64>,
    /// Whole GPUs to assign.
    pub gpus: u32,
    /// Seconds between SIGTERM and SIGKILL on cancel or timeout.
    pub kill_grace_secs: u64,
    /// A named job's user, which the node must allow (`allowed_run_as`);
    /// `None`: the node's `run_as`.
    pub run_as: Option<String>,
}

/// A job as users see it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobInfo {
    /// Job id.
    pub id: u64,
    /// `queued`, `awaiting-approval`, `starting`, `running`, `exited`,
    /// `failed`, `cancelled`, `timed-out`, `denied`, `expired` or `lost`.
    pub state: String,
    /// Node it runs on.
    pub node: String,
    /// Exact argv.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Environment of the frozen plan; values of secret keys read `<secret>`.
    pub env: Vec<(String, String)>,
    /// The user a named job asked to run as, if any.
    pub run_as: Option<String>,
    /// Who asked.
    pub requester: String,
    /// Named job, if any.
    pub named_job: Option<String>,
    /// Role asked for, if any.
    pub role: Option<String>,
    /// GPUs assigned.
    pub gpus: u32,
    /// Who may approve it (when awaiting approval).
    pub approvers: Vec<String>,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// SHA-256 of the frozen plan.
    pub plan_digest: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub started_at: Option<u64>,
    /// Unix seconds.
    pub finished_at: Option<u64>,
    /// Exit code (128+N for signal N).
    pub exit_code: Option<i32>,
    /// Why it ended as it did, for people.
    pub reason: Option<String>,
    /// Stdout bytes received.
    pub stdout_bytes: u64,
    /// Stderr bytes received.
    pub stderr_bytes: u64,
    /// The stored log hit its cap.
    pub truncated: bool,
    /// Processes the node killed when the job ended (descendants left
    /// behind, on timeout, or on cancel).
    pub processes_killed: u32,
    /// The fan-out this job is one node of, if any.
    pub fanout: Option<u64>,
}

/// Largest page of [`Request::JobList`].
pub const MAX_JOB_PAGE: u32 = 500;

impl JobInfo {
    /// The job's state, if its word is one this side knows (a newer peer
    /// may send one it does not).
    pub fn job_state(&self) -> Option<crate::JobState> {
        crate::JobState::parse(&self.state)
    }

    /// Whether the job is in state `s`.
    pub fn is(&self, s: crate::JobState) -> bool {
        self.state == s.as_str()
    }

    /// Whether the job has ended.
    pub fn is_terminal(&self) -> bool {
        is_terminal_state(&self.state)
    }

    /// The code of a job that exited by itself. A cancelled or timed-out
    /// job has none here: its process's code is the signal that ended it.
    pub fn own_exit_code(&self) -> Option<i32> {
        self.exit_code.filter(|_| self.is(crate::JobState::Exited))
    }
}

/// Whether a job state is final (a word this side does not know counts as
/// final: nothing here would move it on).
pub fn is_terminal_state(state: &str) -> bool {
    crate::JobState::parse(state).is_none_or(crate::JobState::is_terminal)
}

/// Application codes on the streams that carry a job's standard input
/// ([`crate::Request::JobRunInput`] from the requester, [`crate::Open::JobInput`]
/// to the node): QUIC's STOP_SENDING and RESET_STREAM carry one of these.
pub mod input_code {
    /// The job no longer reads its input: it ended, or closed its stdin.
    /// (Also what dropping a stream unread sends.)
    pub const DONE: u32 = 0;
    /// The input was cut off: a connection on its way broke, and the job
    /// saw end of file where it broke.
    pub const CUT: u32 = 1;
    /// The gateway holds no input for this job of this node.
    pub const REFUSED: u32 = 2;
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl OutStream {
    /// Its id in data frames.
    pub fn id(self) -> u8 {
        match self {
            OutStream::Stdout => 1,
            OutStream::Stderr => 2,
        }
    }

    /// The stream for a data-frame id.
    pub fn from_id(id: u8) -> Option<OutStream> {
        match id {
            1 => Some(OutStream::Stdout),
            2 => Some(OutStream::Stderr),
            _ => None,
        }
    }
}

/// Streamed to followers of a job. On the wire, `Output` travels as a data
/// frame (see [`crate::frame::DATA_FLAG`]), not through the codec.
// Messages live for one decode-handle-drop cycle, so variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEvent {
    /// The job was created (first event of `JobRun`).
    Accepted(JobInfo),
    /// Output bytes, in order, continuing from the requested offsets.
    Output {
        /// Which stream.
        stream: OutStream,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The job changed state.
    State(JobInfo),
    /// Last event: the job ended (or, without follow, all stored output was sent).
    End(JobInfo),
    /// The request failed.
    Error(ApiError),
}

/// Node to gateway on a job stream. Output itself travels in data frames
/// (see [`crate::frame::DATA_FLAG`]) between these messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobFrame {
    /// The process started (sent again after every reconnection).
    Started {
        /// Its pid.
        pid: u32,
        /// GPU indices assigned.
        gpus: Vec<u32>,
    },
    /// The process ended.
    Exit {
        /// Exit code, or 128+signal.
        code: i32,
        /// It was killed for its timeout.
        timed_out: bool,
        /// It was killed by a cancel.
        cancelled: bool,
        /// Processes of the job killed at its end (leftover descendants included).
        killed: u32,
    },
    /// The node could not start it.
    Failed {
        /// Why, for people.
        reason: String,
    },
    /// The node's own policy refuses it (node.toml: command, cwd, env,
    /// or no user to run jobs as). The job ends `denied`.
    Refused {
        /// Why, naming the rule.
        reason: String,
    },
    /// Protocol 3, after `Started`: which physical GPUs its indices are.
    GpusHeld {
        /// Index, UUID and model of each.
        gpus: Vec<HeldGpu>,
    },
    /// Protocol 3: one of the job's GPUs failed (lost, uncorrectable ECC).
    /// The job runs on for the node's grace, then ends `Failed` with it.
    GpuFault {
        /// Which GPU and why, for people.
        reason: String,
    },
}

/// One GPU a job held: what `CUDA_VISIBLE_DEVICES` named, as the hardware
/// knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeldGpu {
    /// NVML index (PCI bus order).
    pub index: u32,
    /// UUID (`GPU-…`); empty if unknown.
    pub uuid: String,
    /// Model; empty if unknown.
    pub name: String,
}

/// Gateway to node on a job stream. The first frame is always `Resume` or
/// `Reject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobCtl {
    /// Send output from these offsets (what the gateway already stored).
    Resume {
        /// Stdout bytes the gateway has.
        stdout_from: u64,
        /// Stderr bytes the gateway has.
        stderr_from: u64,
    },
    /// The gateway has stored output up to these offsets; the node may
    /// drop it from its buffer.
    Ack {
        /// Stdout bytes stored.
        stdout: u64,
        /// Stderr bytes stored.
        stderr: u64,
    },
    /// The gateway recorded the job's end; the node may forget it.
    Done,
    /// SIGTERM the process group, then SIGKILL after `grace_secs`.
    Cancel {
        /// Seconds between the signals.
        grace_secs: u64,
    },
    /// The gateway refuses this job stream (not the node's job, not expected).
    Reject {
        /// Why.
        reason: String,
    },
}
