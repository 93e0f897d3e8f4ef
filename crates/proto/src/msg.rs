//! Message types that cross the wire. If a type is here, it is part of the
//! protocol: change it only with a protocol version bump.

use serde::{Deserialize, Serialize};

use crate::{ClientInfo, JobInfo, JobPlan, JobSpec, LabSummary, NodeHistory, NodeInfo, TokenInfo};

/// What a party is allowed to do; carried in its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// A worker node: runs jobs, may not call admin or operator APIs.
    Node,
    /// An administrator: enrolls nodes, manages tokens, everything.
    Admin,
    /// The chat front end: submits jobs for chat users, cannot manage nodes.
    Bot,
    /// A lab member: runs jobs and forwards, sees its own jobs and the
    /// nodes; manages nothing (`client create NAME --role user`). Acts as
    /// the identity `user:NAME` in policy.
    User,
}

impl Role {
    /// The role's name as written in certificates and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Admin => "admin",
            Role::Bot => "bot",
            Role::User => "user",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "node" => Some(Role::Node),
            "admin" => Some(Role::Admin),
            "bot" => Some(Role::Bot),
            "user" => Some(Role::User),
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
    /// A node asks for the standard input of a job it was told to run
    /// with [`ControlMsg::RunJobInput`] (bidirectional; protocol 3). The
    /// gateway answers with the input's raw bytes, not frames, and
    /// finishes the stream at its end; a reset means the input was cut
    /// off (the requester went away). The node sends nothing after this
    /// frame, and stops the stream when the job stops reading.
    JobInput {
        /// The job.
        job_id: u64,
    },
    /// A node's answer to [`ControlMsg::Forward`] (bidirectional; protocol
    /// 3): with no error, the rest of the stream both ways is the TCP
    /// connection's bytes, raw; with one, the node connected nowhere.
    Forward {
        /// The forward's id, from the gateway.
        id: u64,
        /// Why the node did not connect (its policy, or the port), for people.
        error: Option<String>,
    },
    /// A node uploads the artifacts of a job it was told to run with
    /// [`ControlMsg::RunJobWith`] (bidirectional; protocol 3): node to
    /// gateway [`crate::ArtifactFrame`]s, gateway to node
    /// [`crate::ArtifactReply`]s (see [`crate::artifact`]).
    Artifacts {
        /// The job.
        job_id: u64,
    },
    /// A node's answer to [`ControlMsg::Copy`] (bidirectional; protocol
    /// 3): with no error, the rest of the stream both ways is
    /// [`crate::files::FileMsg`] frames between the requester and the
    /// node's file child; with one, the node started nothing.
    Copy {
        /// The copy's id, from the gateway.
        id: u64,
        /// Why the node refused before starting (e.g. it refuses jobs), for people.
        error: Option<String>,
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
    /// Run a job whose requester streams its standard input (protocol 3):
    /// as [`ControlMsg::RunJob`], but the job's stdin is a pipe that the
    /// node fills from an [`Open::JobInput`] stream it opens.
    RunJobInput(JobPlan),
    /// Connect to 127.0.0.1:`port` on the node for a forward and answer
    /// with an [`Open::Forward`] stream (protocol 3). The node's
    /// `forward_ports` decides.
    Forward {
        /// The forward's id, echoed in the answer.
        id: u64,
        /// The TCP port on the node's loopback.
        port: u16,
    },
    /// The addresses of the gateway group (a leader and its standbys),
    /// the sender first (protocol 3): sent after `Welcome` and when the
    /// group changes; the node dials them in this order from now on and
    /// writes them into node.toml.
    Gateways {
        /// `host:port` of each gateway, at most [`crate::MAX_GROUP`].
        addrs: Vec<String>,
    },
    /// Run a job with what goes beyond its plan (protocol 3): its
    /// artifacts' patterns and caps, and whether its stdin comes from the
    /// requester. The node answers as for [`ControlMsg::RunJob`].
    RunJobWith(crate::JobDispatch),
    /// Serve one copy stream (`openclaw cp`) as the job user and answer
    /// with an [`Open::Copy`] stream (protocol 3). The node's
    /// `allowed_paths` decides.
    Copy {
        /// The copy's id, echoed in the answer.
        id: u64,
        /// What to do.
        op: crate::files::FileOp,
    },
    /// Run a job on a terminal of its own (protocol 3; `openclaw shell`,
    /// `run -t`): as [`ControlMsg::RunJobInput`], but the job's stdin,
    /// stdout and stderr are the slave side of a new pseudo-terminal, its
    /// output is the master's (all on stdout), and the [`Open::JobInput`]
    /// stream carries [`crate::tty`] frames. An empty argv runs the job
    /// user's login shell.
    RunJobTty {
        /// The frozen plan.
        plan: JobPlan,
        /// The terminal it asked for.
        tty: crate::tty::Tty,
    },
}

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
    /// As [`Request::JobRun`], and the rest of this stream (after this
    /// frame) is the job's standard input, raw bytes; finishing the stream
    /// is its end of file (protocol 3). The gateway stops the stream when
    /// the job no longer reads it.
    JobRunInput(JobSpec),
    /// One TCP connection to `port` on `node`'s loopback, through the
    /// gateway (`openclaw forward`; protocol 3). The gateway answers with
    /// one [`Response`] (`Done` once the node connected, or `Error`); after
    /// `Done` the rest of the stream both ways is the connection's bytes.
    Forward {
        /// The node.
        node: String,
        /// The TCP port on the node's loopback.
        port: u16,
    },
    /// The physical GPUs a job held (UUIDs and models), for whoever may
    /// see the job (issue 27; `JobInfo` keeps its protocol-2 shape).
    JobGpus {
        /// Job id.
        id: u64,
        /// The chat user a bot asks for.
        on_behalf_of: Option<String>,
    },
    /// Each GPU's health on these connected nodes (at most
    /// [`crate::MAX_HISTORY_NODES`]), as their nodes judged it (issue 27;
    /// `NodeInfo` keeps its protocol-2 shape).
    GpuHealth {
        /// The nodes.
        names: Vec<String>,
    },
    /// A job with options (protocol 3): as `JobSubmit`, `JobRun` or
    /// `JobRunInput` by its [`crate::Follow`], plus [`crate::JobOption`]s.
    JobRequest(crate::JobRequest),
    /// The addresses of the gateway group, the answering gateway first
    /// (protocol 3). Clients write them into client.toml, so a credential
    /// made before a gateway joined still finds the leader after a
    /// failover.
    GatewaySet,
    /// Removes a gateway from the group (`openclaw gateway leave`). Admins
    /// only; refused for a gateway seen lately (stop it first).
    GatewayLeave {
        /// The gateway's name.
        name: String,
    },
    /// A job's artifacts (issue 23), for whoever may see the job. Reply:
    /// [`Response::Artifacts`].
    JobArtifacts {
        /// Job id.
        id: u64,
        /// The chat user a bot asks for.
        on_behalf_of: Option<String>,
    },
    /// One stored artifact's bytes, for whoever may see the job. The
    /// gateway answers with one [`Response`] (`Artifact` or `Error`); after
    /// `Artifact` the rest of the stream is the file's bytes, raw, and its
    /// finish is the file's end.
    ArtifactGet {
        /// Job id.
        id: u64,
        /// The artifact's name.
        name: String,
        /// The chat user a bot asks for.
        on_behalf_of: Option<String>,
    },
    /// GPU usage over a window, grouped (`openclaw usage`; reply `Usage`).
    /// A lab member or a chat user sees only their own jobs.
    Usage {
        /// Seconds back from now (at most [`crate::MAX_USAGE_DAYS`] days).
        since_secs: u64,
        /// The grouping.
        by: crate::UsageBy,
        /// The chat user a bot asks for.
        on_behalf_of: Option<String>,
    },
    /// The waiting jobs in the order the fair-share queue serves them
    /// (`openclaw job list --queued`, chat `queue`; reply `Queue`).
    Queue {
        /// The chat user a bot asks for.
        on_behalf_of: Option<String>,
    },
    /// One copy stream to or from a node (`openclaw cp`; protocol 3). The
    /// gateway answers with one [`Response`] (`Done` once the node's file
    /// child is there, or `Error`); after `Done` both ways carry
    /// [`crate::files::FileMsg`] frames (see [`crate::files`]).
    Copy(crate::files::CopyRequest),
    /// As [`Request::JobRunInput`], on a terminal of the node's
    /// (`openclaw shell NODE`, `openclaw run -t`; protocol 3): the rest of
    /// this stream is [`crate::tty`] frames (input and resizes), and the
    /// job's output is the terminal's. An empty `spec.argv` runs the job
    /// user's login shell. Never for bots; `policy.shell` decides.
    JobRunTty {
        /// The job.
        spec: JobSpec,
        /// The terminal.
        tty: crate::tty::Tty,
    },
    /// A part of a session's recording (asciicast v2, `openclaw job
    /// replay`), from byte `offset`; reply: [`Response::Recording`].
    JobRecording {
        /// Job id.
        id: u64,
        /// First byte wanted.
        offset: u64,
    },
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
    /// Reply to [`Request::JobGpus`], by index.
    JobGpus(Vec<crate::HeldGpu>),
    /// Reply to [`Request::GpuHealth`]: the connected nodes asked about,
    /// each with its GPUs' health by index (empty for a node of protocol
    /// 2, whose GPUs count as healthy).
    GpuHealth(Vec<(String, Vec<crate::GpuHealth>)>),
    /// Reply to [`Request::GatewaySet`]: the group's addresses, the
    /// answering gateway first; empty for a gateway that is not in a group
    /// (keep what the credential says).
    GatewaySet(Vec<String>),
    /// Reply to [`Request::JobArtifacts`].
    Artifacts(crate::JobArtifacts),
    /// Reply to [`Request::ArtifactGet`]: the file's bytes follow, raw.
    Artifact(crate::ArtifactInfo),
    /// Reply to [`Request::Usage`].
    Usage(crate::UsageReport),
    /// Reply to [`Request::Queue`].
    Queue(crate::QueueReport),
    /// Reply to [`Request::JobRecording`]: at most
    /// [`crate::tty::RECORDING_PAGE`] bytes of the recording from the
    /// offset asked, and its whole length.
    Recording {
        /// The bytes.
        data: Vec<u8>,
        /// The recording's length in bytes.
        total: u64,
    },
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

mod calls;
#[cfg(test)]
mod tests;
