//! Message types that cross the wire. If a type is here, it is part of the
//! protocol: change it only with a protocol version bump.

use serde::{Deserialize, Serialize};

/// What a party is allowed to do; carried in its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// A worker node: runs jobs, may not call admin or operator APIs.
    Node,
    /// An administrator: enrolls nodes, manages tokens, everything.
    Admin,
    /// The chat front end: submits jobs for chat users, cannot manage nodes.
    Bot,
}

impl Role {
    /// The role's name as written in certificates and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Admin => "admin",
            Role::Bot => "bot",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "node" => Some(Role::Node),
            "admin" => Some(Role::Admin),
            "bot" => Some(Role::Bot),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Enrollment (ALPN_ENROLL)
// ---------------------------------------------------------------------------

/// A request on the enrollment ALPN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollRequest {
    /// Ask to join the mesh.
    Submit(EnrollSubmit),
    /// Ask whether a pending request has been decided.
    Poll {
        /// The id the gateway returned for the pending request.
        request_id: String,
    },
}

/// The body of an enrollment submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollSubmit {
    /// Public id of the join token.
    pub token_id: String,
    /// The token's secret; the gateway only stores its hash.
    pub token_secret: String,
    /// Requested node name.
    pub name: String,
    /// Labels the node asks for (the token's labels are added).
    pub labels: Vec<String>,
    /// A DER PKCS#10 request signed by the node's key, subject CN = name.
    pub csr_der: Vec<u8>,
}

/// The gateway's answer to an [`EnrollRequest`].
// Messages live for one decode-handle-drop cycle, so variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollReply {
    /// Waiting for an admin.
    Pending {
        /// Opaque id to poll with.
        request_id: String,
        /// `SHA256:` fingerprint of the node's public key, for the admin to check.
        fingerprint: String,
        /// Seconds until the pending request expires.
        expires_in_secs: u64,
    },
    /// Approved: here is the certificate.
    Approved {
        /// The node's certificate, DER.
        cert_der: Vec<u8>,
        /// The CA certificate, DER.
        ca_der: Vec<u8>,
    },
    /// An admin rejected the request.
    Rejected {
        /// Why, for the operator.
        reason: String,
    },
    /// The request was refused.
    Error(ApiError),
}

// ---------------------------------------------------------------------------
// Sessions (ALPN_SESSION)
// ---------------------------------------------------------------------------

/// First frame of every session stream: what the stream carries.
// Messages live for one decode-handle-drop cycle, so variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Open {
    /// A node's control stream (bidirectional, one per connection).
    Control(NodeHello),
    /// A node's heartbeat stream (unidirectional, one per connection).
    Heartbeat,
    /// One API call (bidirectional); the reply is one [`Response`], or a
    /// series of [`JobEvent`]s for `JobRun` and `JobAttach`.
    Request(Request),
    /// A node reports on a job it was told to run (bidirectional): node to
    /// gateway [`JobFrame`]s, gateway to node [`JobCtl`]s.
    Job {
        /// The job.
        job_id: u64,
    },
}

/// Sent by a node when it opens its control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHello {
    /// [`crate::PROTOCOL_VERSION`] of the node.
    pub protocol: u32,
    /// The agent's version string, for display.
    pub agent_version: String,
    /// GPUs this node can hand to jobs.
    pub gpus: u32,
    /// Whether those GPUs are simulated (`--simulate-gpus`).
    pub gpus_simulated: bool,
    /// Most jobs the node runs at once.
    pub max_jobs: u32,
}

/// Gateway to node, on the control stream.
// Messages live for one decode-handle-drop cycle, so variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlMsg {
    /// The session is established.
    Welcome {
        /// How often the node must send a heartbeat.
        heartbeat_interval_ms: u64,
        /// The gateway's name.
        gateway: String,
    },
    /// The session was refused; the connection closes after this.
    Refused(ApiError),
    /// Run a job. The node answers by opening an [`Open::Job`] stream.
    RunJob(JobPlan),
    /// The CAs the node must trust from now on, DER, the issuing CA first.
    /// Sent after `Welcome` and at every step of a CA rotation. A node whose
    /// certificate the first CA did not sign renews at once.
    Trust {
        /// CA certificates, DER; the first issues new certificates.
        cas_der: Vec<Vec<u8>>,
    },
}

/// Node to gateway, on the heartbeat stream: liveness plus telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Increases by one per heartbeat on a connection.
    pub seq: u64,
    /// One-minute load average, times 1000.
    pub load1_milli: u32,
    /// Memory in use, bytes.
    pub mem_used: u64,
    /// Memory in total, bytes.
    pub mem_total: u64,
    /// Jobs running on the node.
    pub running_jobs: u32,
    /// Per-GPU telemetry.
    pub gpus: Vec<GpuTelemetry>,
    /// The GPU source: `nvml`, `simulated` or `none`.
    pub gpu_source: String,
    /// Why GPU telemetry failed this time, if it did.
    pub gpu_error: Option<String>,
}

/// Longest GPU name or UUID a heartbeat carries, in bytes (NVML's own
/// buffers are 96 and 80 bytes).
pub const GPU_TEXT_MAX: usize = 96;

/// Longest `gpu_source` or `gpu_error` a heartbeat carries, in bytes.
pub const HEARTBEAT_TEXT_MAX: usize = 512;

/// Most GPUs one node may report or offer.
pub const MAX_NODE_GPUS: u32 = 1024;

/// The largest heartbeat frame a node that reported `gpus` GPUs in its
/// hello may send: a fixed part plus a bounded entry per GPU, so a node
/// with 512 GPUs can always report, and one with 2 cannot send 256 KiB.
pub fn heartbeat_frame_limit(gpus: u32) -> usize {
    // Fixed fields and two bounded texts, then per GPU: two bounded texts
    // and at most 60 bytes of varints and tags.
    const FIXED: usize = 1024 + 2 * HEARTBEAT_TEXT_MAX;
    const PER_GPU: usize = 2 * (GPU_TEXT_MAX + 9) + 60;
    FIXED + PER_GPU * gpus.min(MAX_NODE_GPUS) as usize
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl Heartbeat {
    /// Bounds every text and the GPU list to what
    /// [`heartbeat_frame_limit`] allows for `gpus` GPUs. The node calls it
    /// before sending; the gateway's frame limit enforces the same bound.
    pub fn bound(&mut self, gpus: u32) {
        cut(&mut self.gpu_source, HEARTBEAT_TEXT_MAX);
        if let Some(e) = self.gpu_error.as_mut() {
            cut(e, HEARTBEAT_TEXT_MAX);
        }
        self.gpus.truncate(gpus.min(MAX_NODE_GPUS) as usize);
        for g in &mut self.gpus {
            cut(&mut g.name, GPU_TEXT_MAX);
            cut(&mut g.uuid, GPU_TEXT_MAX);
        }
    }
}

/// One GPU, as the node's GPU source read it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GpuTelemetry {
    /// Index (what CUDA_VISIBLE_DEVICES names).
    pub index: u32,
    /// Model name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// Memory in use, bytes.
    pub mem_used: u64,
    /// Memory in total, bytes.
    pub mem_total: u64,
    /// Utilisation, percent.
    pub util_pct: u32,
    /// Temperature, degrees Celsius.
    pub temp_c: u32,
    /// The job holding it, if any.
    pub job: Option<u64>,
    /// Simulated (`--simulate-gpus`), not real hardware.
    pub simulated: bool,
}

/// An API call from an admin or bot client.
// Messages live for one decode-handle-drop cycle, so variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Who am I, as the gateway sees my certificate?
    Whoami,
    /// Create a join token.
    TokenCreate {
        /// Lifetime in seconds.
        ttl_secs: u64,
        /// How many enrollments it allows.
        uses: u32,
        /// Labels given to every node enrolled with it.
        labels: Vec<String>,
        /// Enrollments with it need no manual approval.
        auto_approve: bool,
        /// Most GPUs a node enrolled with it may offer (`None`: no cap
        /// beyond what the admin confirms at approval).
        max_gpus: Option<u32>,
    },
    /// List join tokens (never their secrets).
    TokenList,
    /// Revoke a join token.
    TokenRevoke {
        /// The token's public id.
        id: String,
    },
    /// List every known node.
    NodeList,
    /// One node with its latest telemetry.
    NodeShow {
        /// Node name.
        name: String,
    },
    /// Approve a pending enrollment.
    NodeApprove {
        /// Node name.
        name: String,
        /// If given, must match the pending key's fingerprint.
        fingerprint: Option<String>,
        /// Labels to confirm (replacing what the token and the node proposed).
        labels: Option<Vec<String>>,
        /// Most GPUs this node may offer to jobs.
        gpus: Option<u32>,
    },
    /// Reject a pending enrollment.
    NodeReject {
        /// Node name.
        name: String,
    },
    /// Revoke a node: close its connection, refuse its certificate forever.
    NodeRevoke {
        /// Node name.
        name: String,
    },
    /// A node renews its own certificate (same name, same key), over its
    /// mTLS session. The reply is `ClientIssued`.
    NodeRenew {
        /// PKCS#10 request for the node's name, no extensions.
        csr_der: Vec<u8>,
    },
    /// Sign a client credential (admin or bot) for a CSR made by the caller.
    ClientIssue {
        /// Identity: `[a-z0-9-]{1,63}`.
        name: String,
        /// `admin` or `bot`.
        role: Role,
        /// For a bot: the chat namespace it speaks for (`slack:T0123ABCD`).
        namespace: Option<String>,
        /// Certificate lifetime; the gateway's default when absent.
        ttl_secs: Option<u64>,
        /// PKCS#10 request, subject `CN=<name>`, no extensions.
        csr_der: Vec<u8>,
    },
    /// List admin and bot credentials.
    ClientList,
    /// Revoke a client credential: refuse it in every handshake, close its
    /// live connections and cancel its pending jobs.
    ClientRevoke {
        /// Client name.
        name: String,
    },
    /// An admin or bot renews its own certificate (same name, same key).
    /// The reply is `ClientIssued`.
    ClientRenew {
        /// PKCS#10 request for the caller's name, no extensions.
        csr_der: Vec<u8>,
    },
    /// Named jobs, nodes and roles, for the chat grammar.
    ChatContext,
    /// Record a chat request in the audit log (bots only).
    ChatAudit {
        /// Chat user id.
        user: String,
        /// Channel id.
        channel: String,
        /// Thread timestamp.
        thread: String,
        /// The message, shortened.
        text: String,
    },
    /// Resolve, route and check policy for a job without creating it.
    JobPreview(JobSpec),
    /// Create a job and return at once.
    JobSubmit(JobSpec),
    /// Create a job and stream its events until it ends.
    JobRun(JobSpec),
    /// Stream a job's stored output, then (if `follow`) live output until it ends.
    JobAttach {
        /// The job.
        id: u64,
        /// Keep streaming until the job ends.
        follow: bool,
        /// Stdout offset to start from.
        stdout_from: u64,
        /// Stderr offset to start from.
        stderr_from: u64,
        /// Chat user the bot acts for (a bot sees only that user's jobs).
        on_behalf_of: Option<String>,
    },
    /// Recent jobs, newest first, one page at a time.
    JobList {
        /// How many (at most [`MAX_JOB_PAGE`]).
        limit: u32,
        /// Only jobs with a smaller id (the next page).
        before: Option<u64>,
        /// Chat user the bot acts for (a bot sees only that user's jobs).
        on_behalf_of: Option<String>,
    },
    /// One job.
    JobShow {
        /// The job.
        id: u64,
        /// Chat user the bot acts for (a bot sees only that user's jobs).
        on_behalf_of: Option<String>,
    },
    /// Cancel a job: SIGTERM to its process group, SIGKILL after the grace period.
    JobCancel {
        /// The job.
        id: u64,
        /// Chat user the bot acts for.
        on_behalf_of: Option<String>,
    },
    /// Approve a job awaiting approval.
    JobApprove {
        /// The job.
        id: u64,
        /// If given, must equal the job's plan digest.
        plan_digest: Option<String>,
        /// Chat user the bot acts for.
        on_behalf_of: Option<String>,
    },
    /// Deny (or, for the requester, withdraw) a job awaiting approval.
    JobDeny {
        /// The job.
        id: u64,
        /// Why.
        reason: Option<String>,
        /// Chat user the bot acts for.
        on_behalf_of: Option<String>,
    },
    /// A page of nodes by name: those after `after`, at most `limit`, and
    /// never more than fits in one reply frame. An empty page is the end.
    /// (Appended last: older peers keep their variant numbers.)
    NodePage {
        /// The last name of the previous page.
        after: Option<String>,
        /// Most nodes wanted.
        limit: u32,
    },
    /// Run one command on every matching healthy node and stream
    /// [`crate::FanEvent`]s until every member ends.
    FanOut(crate::FanOutSpec),
    /// Follow an existing fan-out from the start: its members' output and ends.
    FanOutAttach {
        /// The fan-out.
        id: u64,
        /// Stream the members' output (false: only their ends).
        output: bool,
        /// Chat user the bot acts for.
        on_behalf_of: Option<String>,
    },
    /// The gateway's clock (`openclaw doctor` measures skew with it). Any
    /// role may ask. Last, so older peers' tags keep their meaning.
    Time,
    /// Show or move a CA rotation (`openclaw ca status|rotate`). Admins only.
    CaRotate {
        /// What to do.
        step: CaStep,
        /// Finish even though some nodes or clients still hold a
        /// certificate of the old CA (they are locked out).
        force: bool,
    },
    /// The CAs to trust, the issuing one first (reply: `Trust`). Any role:
    /// a client that notices a rotation asks, then renews.
    Trust,
    /// The last 15 minutes of GPU telemetry of some nodes (at most
    /// [`MAX_HISTORY_NODES`]), for the dashboard's sparklines.
    NodeHistory {
        /// The nodes.
        names: Vec<String>,
    },
    /// Counts for an overview (nodes by status, GPUs by state, jobs by
    /// state) and the pending enrollments, without listing every node.
    LabSummary,
    /// Frees the name of a revoked node so a new node may enroll under it.
    /// Admins only. None of the revoked node's jobs follow the name: they
    /// ended at revocation, and every job is bound to its node's key.
    NodeRelease {
        /// Node name.
        name: String,
    },
}

/// Most pending enrollments a `LabSummary` lists.
pub const MAX_SUMMARY_PENDING: usize = 200;

/// Reply to [`Request::LabSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LabSummary {
    /// Nodes by status: `healthy`, `degraded`, `unhealthy` for connected
    /// nodes, else their connection (`offline`, `pending`, ...).
    pub nodes: Vec<(String, u64)>,
    /// GPUs of healthy connected nodes that no job holds.
    pub gpus_free: u64,
    /// GPUs of healthy connected nodes that a job holds.
    pub gpus_busy: u64,
    /// GPUs of connected nodes that are not healthy.
    pub gpus_unhealthy: u64,
    /// Jobs by state, all of them.
    pub jobs: Vec<(String, u64)>,
    /// Pending enrollment requests (at most [`MAX_SUMMARY_PENDING`]),
    /// oldest first.
    pub pending: Vec<NodeInfo>,
}

/// Most nodes one `NodeHistory` call may ask about.
pub const MAX_HISTORY_NODES: usize = 200;

/// One GPU in a telemetry sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuPoint {
    /// GPU index.
    pub index: u32,
    /// Utilisation, percent.
    pub util_pct: u8,
    /// Temperature, degrees Celsius (255: that or hotter).
    pub temp_c: u8,
    /// Memory in use, MiB.
    pub mem_used_mib: u32,
}

/// A node's GPUs at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuSample {
    /// Unix seconds.
    pub at: u64,
    /// Its GPUs.
    pub gpus: Vec<GpuPoint>,
}

/// A node's recent GPU telemetry, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHistory {
    /// The node.
    pub name: String,
    /// Seconds between samples.
    pub every_secs: u64,
    /// The samples (empty for a node never seen with GPUs).
    pub samples: Vec<GpuSample>,
}

/// A step of a CA rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaStep {
    /// Only report where the rotation stands.
    Status,
    /// Make the next CA; trust both; keep issuing from the current one.
    Init,
    /// Issue from the new CA (the gateway's own certificate too); everyone
    /// renews onto it.
    Rotate,
    /// Drop the old CA and its key.
    Finish,
}

impl CaStep {
    /// The step's name, as the CLI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CaStep::Status => "status",
            CaStep::Init => "init",
            CaStep::Rotate => "rotate",
            CaStep::Finish => "finish",
        }
    }
}

/// Where a CA rotation stands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CaRotationInfo {
    /// `idle`, `init` or `rotate`.
    pub phase: String,
    /// `sha256:<hex>` of the CA that issues certificates (and join tokens pin).
    pub issuing_pin: String,
    /// Pins of every CA trusted now, the issuing one first.
    pub trusted_pins: Vec<String>,
    /// Unix seconds when `init` ran, during a rotation.
    pub started_at: Option<u64>,
    /// Unix seconds when `rotate` ran, during its phase.
    pub rotated_at: Option<u64>,
    /// Approved nodes whose certificate the issuing CA did not sign.
    pub lagging_nodes: Vec<String>,
    /// Active admins and bots whose certificate the issuing CA did not sign.
    pub lagging_clients: Vec<String>,
    /// What happened and what to do next, as sentences.
    pub message: String,
}

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
}

/// Whether a job state is final (a word this side does not know counts as
/// final: nothing here would move it on).
pub fn is_terminal_state(state: &str) -> bool {
    crate::JobState::parse(state).is_none_or(crate::JobState::is_terminal)
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

impl Request {
    /// Stable dotted name of the call, for errors, logs and audit.
    pub fn method(&self) -> &'static str {
        match self {
            Request::Whoami => "whoami",
            Request::TokenCreate { .. } => "token.create",
            Request::TokenList => "token.list",
            Request::TokenRevoke { .. } => "token.revoke",
            Request::NodeList | Request::NodePage { .. } => "node.list",
            Request::NodeShow { .. } => "node.show",
            Request::NodeApprove { .. } => "node.approve",
            Request::NodeReject { .. } => "node.reject",
            Request::NodeRevoke { .. } => "node.revoke",
            Request::ClientIssue { .. } => "client.issue",
            Request::ClientList => "client.list",
            Request::ClientRevoke { .. } => "client.revoke",
            Request::ClientRenew { .. } => "client.renew",
            Request::NodeRenew { .. } => "node.renew",
            Request::ChatContext => "chat.context",
            Request::ChatAudit { .. } => "chat.audit",
            Request::JobPreview(_) => "job.preview",
            Request::JobSubmit(_) => "job.submit",
            Request::JobRun(_) => "job.run",
            Request::JobAttach { .. } => "job.attach",
            Request::JobList { .. } => "job.list",
            Request::JobShow { .. } => "job.show",
            Request::JobCancel { .. } => "job.cancel",
            Request::JobApprove { .. } => "job.approve",
            Request::JobDeny { .. } => "job.deny",
            Request::FanOut(_) => "fanout.run",
            Request::FanOutAttach { .. } => "fanout.attach",
            Request::Time => "time",
            Request::CaRotate { .. } => "ca.rotate",
            Request::Trust => "ca.trust",
            Request::NodeHistory { .. } => "node.history",
            Request::LabSummary => "lab.summary",
            Request::NodeRelease { .. } => "node.release",
        }
    }

    /// Whether `role` may make this call. Nodes may only renew their own
    /// certificate; bots may
    /// read and work with jobs for chat users but not manage nodes or
    /// tokens; admins may do everything.
    pub fn allowed_for(&self, role: Role) -> bool {
        match role {
            Role::Admin => true,
            // Every call is listed, so a new one must be decided here.
            Role::Bot => match self {
                Request::Whoami
                | Request::NodeList
                | Request::NodePage { .. }
                | Request::NodeShow { .. }
                | Request::ClientRenew { .. }
                | Request::ChatContext
                | Request::ChatAudit { .. }
                | Request::JobPreview(_)
                | Request::JobSubmit(_)
                | Request::JobRun(_)
                | Request::JobAttach { .. }
                | Request::JobList { .. }
                | Request::JobShow { .. }
                | Request::JobCancel { .. }
                | Request::JobApprove { .. }
                | Request::JobDeny { .. }
                | Request::FanOut(_)
                | Request::FanOutAttach { .. }
                | Request::Time
                | Request::Trust
                | Request::NodeHistory { .. }
                | Request::LabSummary => true,
                Request::TokenCreate { .. }
                | Request::TokenList
                | Request::TokenRevoke { .. }
                | Request::NodeApprove { .. }
                | Request::NodeReject { .. }
                | Request::NodeRevoke { .. }
                | Request::NodeRelease { .. }
                | Request::ClientIssue { .. }
                | Request::ClientList
                | Request::ClientRevoke { .. }
                | Request::NodeRenew { .. }
                | Request::CaRotate { .. } => false,
            },
            // A node may only renew its own certificate (and read the clock
            // and the CAs to trust).
            Role::Node => matches!(
                self,
                Request::NodeRenew { .. } | Request::Time | Request::Trust
            ),
        }
    }
}

/// The reply to a [`Request`].
// Messages live for one decode-handle-drop cycle, so variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Reply to [`Request::Whoami`].
    Identity {
        /// Name from the certificate.
        name: String,
        /// Role from the certificate.
        role: Role,
        /// A bot's chat namespace, as the gateway configured it.
        namespace: Option<String>,
    },
    /// A new token; the only time its secret is shown.
    TokenCreated {
        /// The full join token to hand to a node.
        token: String,
        /// Its metadata.
        info: TokenInfo,
    },
    /// Reply to [`Request::TokenList`].
    Tokens(Vec<TokenInfo>),
    /// Reply to [`Request::NodeList`].
    Nodes(Vec<NodeInfo>),
    /// Reply to [`Request::NodeShow`].
    Node(NodeInfo),
    /// A state change succeeded.
    Done {
        /// What happened, for the user.
        message: String,
    },
    /// Reply to `ClientIssue`.
    ClientIssued {
        /// The certificate, DER.
        cert_der: Vec<u8>,
        /// The CA, DER.
        ca_der: Vec<u8>,
    },
    /// Reply to `ChatContext`.
    ChatContext {
        /// Approved node names.
        nodes: Vec<String>,
        /// Named jobs with their aliases.
        jobs: Vec<(String, Vec<String>)>,
        /// Labels in use.
        roles: Vec<String>,
    },
    /// Reply to `JobPreview`: the routed tool call and the policy decision.
    Preview {
        /// The node it would run on.
        node: String,
        /// Exact argv.
        argv: Vec<String>,
        /// Named job.
        named_job: Option<String>,
        /// Role asked for.
        role: Option<String>,
        /// `allow`, `deny` or `approve`.
        decision: String,
        /// Who could approve it.
        approvers: Vec<String>,
        /// Matching policy rule, 1-based.
        rule: Option<u32>,
    },
    /// Reply to `JobSubmit` and `JobShow`.
    Job(JobInfo),
    /// Reply to `JobList`.
    Jobs(Vec<JobInfo>),
    /// Reply to `ClientList`.
    Clients(Vec<ClientInfo>),
    /// The call failed.
    Error(ApiError),
    /// Reply to [`Request::Time`]: the gateway's clock.
    Time {
        /// Unix milliseconds when the gateway answered.
        unix_ms: u64,
    },
    /// Reply to [`Request::CaRotate`].
    CaRotation(CaRotationInfo),
    /// Reply to [`Request::Trust`].
    Trust {
        /// CA certificates, DER; the first issues new certificates.
        cas_der: Vec<Vec<u8>>,
    },
    /// Reply to [`Request::NodeHistory`], in the order asked.
    NodeHistory(Vec<NodeHistory>),
    /// Reply to [`Request::LabSummary`].
    LabSummary(LabSummary),
}

/// Public metadata of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Public id.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Enrollments still allowed.
    pub uses_left: u32,
    /// Enrollments allowed in total.
    pub uses_total: u32,
    /// Labels given to nodes.
    pub labels: Vec<String>,
    /// Skips manual approval.
    pub auto_approve: bool,
    /// Revoked by an admin.
    pub revoked: bool,
    /// Most GPUs a node enrolled with it may offer.
    pub max_gpus: Option<u32>,
}

/// One admin or bot credential as `openclaw client list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Name (certificate CN), unique among clients.
    pub name: String,
    /// `admin` or `bot`.
    pub role: Role,
    /// A bot's chat namespace.
    pub namespace: Option<String>,
    /// `active` or `revoked`.
    pub state: String,
    /// Serial of the current certificate.
    pub serial: String,
    /// Unix seconds it expires.
    pub not_after: u64,
    /// Unix seconds it was created.
    pub created_at: u64,
    /// Who created it.
    pub created_by: String,
    /// Live connections with this credential now.
    pub connections: u32,
}

/// One node as `openclaw node list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// `pending`, `connected`, `offline`, `revoked` or `rejected`.
    pub connection: String,
    /// `healthy`, `unhealthy` or `-`.
    pub health: String,
    /// Confirmed labels: from the token or the admin. Routing uses only these.
    pub labels: Vec<String>,
    /// Labels the node asked for that nobody confirmed; routing ignores them.
    pub proposed_labels: Vec<String>,
    /// Most GPUs the node may offer (from the token or approval).
    pub max_gpus: Option<u32>,
    /// `SHA256:` fingerprint of the node's key.
    pub fingerprint: String,
    /// Unix seconds of the last sign of life, if any.
    pub last_seen: Option<u64>,
    /// Address of the live connection, or of the enrollment request while pending.
    pub remote_addr: Option<String>,
    /// Unix seconds the current certificate expires, once approved.
    pub cert_expires: Option<u64>,
    /// Unix seconds the enrollment request arrived.
    pub requested_at: u64,
    /// Milliseconds since the last heartbeat on the live connection.
    pub heartbeat_age_ms: Option<u64>,
    /// Why HEALTH is not `healthy`, if it is not.
    pub health_reason: Option<String>,
    /// The latest heartbeat's telemetry, while connected.
    pub telemetry: Option<Heartbeat>,
}

/// A node's GPUs as jobs get them ([`NodeInfo::gpu_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuCounts {
    /// GPUs the latest heartbeat reports: a claim.
    pub reported: u32,
    /// Of those, the GPUs offered to jobs: at most the cap the token or an
    /// admin confirmed (none without one).
    pub confirmed: u32,
    /// Confirmed GPUs that no job holds.
    pub free: u32,
}

impl GpuCounts {
    /// Reported GPUs nobody confirmed, which no job gets.
    pub fn unconfirmed(&self) -> u32 {
        self.reported.saturating_sub(self.confirmed)
    }
}

impl NodeInfo {
    /// The GPUs offered to jobs: the first of the latest heartbeat's, up
    /// to the confirmed cap, as the gateway counts them. Empty while
    /// offline or without a cap.
    pub fn confirmed_gpus(&self) -> &[GpuTelemetry] {
        let Some(t) = &self.telemetry else {
            return &[];
        };
        let cap = usize::try_from(self.max_gpus.unwrap_or(0)).unwrap_or(usize::MAX);
        &t.gpus[..t.gpus.len().min(cap)]
    }

    /// Reported, confirmed and free GPUs. Only confirmed ones count: the
    /// rest of what a node reports is a claim until a token or an admin
    /// confirms it.
    pub fn gpu_counts(&self) -> GpuCounts {
        let reported = self.telemetry.as_ref().map_or(0, |t| t.gpus.len());
        let confirmed = self.confirmed_gpus();
        let held = confirmed.iter().filter(|g| g.job.is_some()).count();
        let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        GpuCounts {
            reported: n(reported),
            confirmed: n(confirmed.len()),
            free: n(confirmed.len() - held),
        }
    }
}

/// Why a call failed: a category for programs, a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Category.
    pub code: ErrorCode,
    /// What failed and what to do next.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Categories of [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Malformed or invalid input.
    InvalidArgument,
    /// The named thing does not exist.
    NotFound,
    /// The thing already exists.
    AlreadyExists,
    /// The caller's role may not do this.
    PermissionDenied,
    /// The caller is not who it needs to be (token, certificate).
    Unauthenticated,
    /// The thing is in the wrong state for this.
    FailedPrecondition,
    /// A limit was reached.
    ResourceExhausted,
    /// The gateway failed.
    Internal,
    /// The target node is not connected, or no node has free capacity.
    Unavailable,
    /// Policy forbids it.
    Denied,
    /// Nothing could ever meet the request as asked (a job wants more GPUs
    /// than any matching node has confirmed): waiting will not help, a
    /// smaller request or an admin's change will. (Appended last: older
    /// peers keep their variant numbers.)
    Unsatisfiable,
}

/// Application close codes the gateway uses on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// Normal end.
    Normal,
    /// The peer's certificate was revoked.
    Revoked,
    /// A newer connection of the same node replaced this one.
    Replaced,
    /// The session ALPN needs a client certificate.
    NoClientCert,
    /// The certificate is valid but its subject is not an approved node.
    NotApproved,
    /// The peer broke the protocol (bad or oversized frame).
    Protocol,
    /// The gateway is shutting down.
    Shutdown,
    /// Heartbeats stopped arriving.
    Dead,
    /// A limit on connections was reached; try again later.
    Busy,
}

impl CloseCode {
    /// The QUIC application error code.
    pub fn code(self) -> u32 {
        match self {
            CloseCode::Normal => 0,
            CloseCode::Revoked => 1,
            CloseCode::Replaced => 2,
            CloseCode::NoClientCert => 3,
            CloseCode::NotApproved => 4,
            CloseCode::Protocol => 5,
            CloseCode::Shutdown => 6,
            CloseCode::Dead => 7,
            CloseCode::Busy => 8,
        }
    }

    /// The close code for a QUIC application error code, if it is ours.
    pub fn from_code(code: u64) -> Option<CloseCode> {
        Some(match code {
            0 => CloseCode::Normal,
            1 => CloseCode::Revoked,
            2 => CloseCode::Replaced,
            3 => CloseCode::NoClientCert,
            4 => CloseCode::NotApproved,
            5 => CloseCode::Protocol,
            6 => CloseCode::Shutdown,
            7 => CloseCode::Dead,
            8 => CloseCode::Busy,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for role in [Role::Node, Role::Admin, Role::Bot] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn close_codes_round_trip() {
        for code in 0..9u64 {
            let c = CloseCode::from_code(code).unwrap();
            assert_eq!(u64::from(c.code()), code);
        }
        assert_eq!(CloseCode::from_code(99), None);
    }

    #[test]
    fn a_bounded_heartbeat_always_fits_its_frame_limit() {
        for gpus in [0u32, 1, 2, 64, 512, 1024, 5000] {
            let mut hb = Heartbeat {
                seq: u64::MAX,
                load1_milli: u32::MAX,
                mem_used: u64::MAX,
                mem_total: u64::MAX,
                running_jobs: u32::MAX,
                gpu_source: "é".repeat(4000),
                gpu_error: Some("x".repeat(4000)),
                gpus: (0..gpus.saturating_add(3))
                    .map(|i| GpuTelemetry {
                        index: u32::MAX - i,
                        name: "ü".repeat(300),
                        uuid: "GPU-".repeat(300),
                        mem_used: u64::MAX,
                        mem_total: u64::MAX,
                        util_pct: u32::MAX,
                        temp_c: u32::MAX,
                        job: Some(u64::MAX),
                        simulated: true,
                    })
                    .collect(),
            };
            hb.bound(gpus);
            assert_eq!(hb.gpus.len(), gpus.min(MAX_NODE_GPUS) as usize);
            assert!(hb.gpus.iter().all(|g| g.name.len() <= GPU_TEXT_MAX));
            let len = crate::codec::encode(&hb).unwrap().len();
            assert!(
                len + 4 <= heartbeat_frame_limit(gpus),
                "{gpus} GPUs: {len} bytes"
            );
        }
        // Cut on a character boundary.
        let mut s = "aé".to_string();
        cut(&mut s, 2);
        assert_eq!(s, "a");
    }

    /// Only confirmed GPUs count, the first ones by the node's order, as
    /// the gateway offers them; holders outside the cap are not counted.
    #[test]
    fn only_confirmed_gpus_count() {
        let node = |cap: Option<u32>, held: &[bool], online: bool| NodeInfo {
            name: "n".into(),
            connection: "connected".into(),
            health: "healthy".into(),
            labels: vec![],
            proposed_labels: vec![],
            max_gpus: cap,
            fingerprint: String::new(),
            last_seen: None,
            remote_addr: None,
            cert_expires: None,
            requested_at: 0,
            heartbeat_age_ms: None,
            health_reason: None,
            telemetry: online.then(|| Heartbeat {
                gpus: held
                    .iter()
                    .enumerate()
                    .map(|(i, h)| GpuTelemetry {
                        index: i as u32,
                        job: h.then_some(9),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        };
        let c = |reported, confirmed, free| GpuCounts {
            reported,
            confirmed,
            free,
        };
        let cases = [
            (node(Some(2), &[false; 4], true), c(4, 2, 2)),
            (node(Some(2), &[true, false, false, true], true), c(4, 2, 1)),
            (node(Some(64), &[true, false], true), c(2, 2, 1)),
            (node(None, &[false; 4], true), c(4, 0, 0)),
            (node(Some(0), &[false], true), c(1, 0, 0)),
            (node(Some(2), &[], false), c(0, 0, 0)),
        ];
        for (n, want) in cases {
            assert_eq!(n.gpu_counts(), want, "{:?}", n.max_gpus);
        }
        assert_eq!(
            node(Some(2), &[false; 4], true).gpu_counts().unconfirmed(),
            2
        );
        assert_eq!(node(Some(1), &[false; 3], true).confirmed_gpus().len(), 1);
    }

    #[test]
    fn permissions_table() {
        let node_list = Request::NodeList;
        let approve = Request::NodeApprove {
            name: "a".into(),
            fingerprint: None,
            labels: None,
            gpus: None,
        };
        let token = Request::TokenCreate {
            ttl_secs: 1,
            uses: 1,
            labels: vec![],
            auto_approve: false,
            max_gpus: None,
        };
        let cases = [
            (Role::Admin, &node_list, true),
            (Role::Admin, &approve, true),
            (Role::Admin, &token, true),
            (Role::Bot, &node_list, true),
            (Role::Bot, &approve, false),
            (
                Role::Bot,
                &Request::JobList {
                    limit: 1,
                    before: None,
                    on_behalf_of: None,
                },
                true,
            ),
            (Role::Bot, &Request::ClientList, false),
            (
                Role::Bot,
                &Request::ClientRevoke { name: "x".into() },
                false,
            ),
            (Role::Bot, &Request::ClientRenew { csr_der: vec![] }, true),
            (Role::Bot, &token, false),
            (Role::Bot, &Request::NodeRelease { name: "x".into() }, false),
            (Role::Node, &node_list, false),
            (Role::Node, &approve, false),
            (Role::Node, &Request::Whoami, false),
            (Role::Node, &Request::Time, true),
            (Role::Bot, &Request::Time, true),
            (Role::Node, &Request::Trust, true),
            (Role::Bot, &Request::Trust, true),
            (
                Role::Bot,
                &Request::CaRotate {
                    step: CaStep::Status,
                    force: false,
                },
                false,
            ),
            (
                Role::Node,
                &Request::CaRotate {
                    step: CaStep::Init,
                    force: false,
                },
                false,
            ),
        ];
        for (role, req, want) in cases {
            assert_eq!(req.allowed_for(role), want, "{role} {}", req.method());
        }
    }
}
