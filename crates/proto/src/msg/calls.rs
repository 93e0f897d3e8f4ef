//! Each API call's name and who may make it: the one list every new call
//! must be added to (the matches are exhaustive, so the compiler asks).

use super::{Request, Role};

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
            Request::JobRun(_) | Request::JobRunInput(_) => "job.run",
            Request::JobRequest(r) => match r.follow {
                crate::Follow::Detached => "job.submit",
                crate::Follow::Attached | crate::Follow::AttachedWithInput => "job.run",
            },
            Request::Forward { .. } => "forward",
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
            Request::JobGpus { .. } => "job.gpus",
            Request::GpuHealth { .. } => "node.gpu_health",
            Request::GatewaySet => "gateway.set",
            Request::GatewayLeave { .. } => "gateway.leave",
            Request::JobArtifacts { .. } => "job.artifacts",
            Request::ArtifactGet { .. } => "job.artifact_get",
            Request::Usage { .. } => "usage",
            Request::Queue { .. } => "job.queue",
            Request::Copy(_) => "cp",
            Request::JobRunTty { .. } => "job.shell",
            Request::JobRecording { .. } => "job.recording",
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
                | Request::JobGpus { .. }
                | Request::GpuHealth { .. }
                | Request::JobArtifacts { .. }
                | Request::ArtifactGet { .. }
                | Request::JobCancel { .. }
                | Request::JobApprove { .. }
                | Request::JobDeny { .. }
                | Request::FanOut(_)
                | Request::FanOutAttach { .. }
                | Request::Time
                | Request::Trust
                | Request::NodeHistory { .. }
                | Request::Usage { .. }
                | Request::Queue { .. }
                | Request::LabSummary => true,
                // Chat never streams standard input to a job.
                Request::JobRequest(r) => r.follow != crate::Follow::AttachedWithInput,
                // A bot follows the group as any client does.
                Request::GatewaySet => true,
                Request::GatewayLeave { .. } => false,
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
                | Request::CaRotate { .. }
                // Chat never streams standard input to a job, nor
                // reaches into a node's ports, nor opens a shell.
                | Request::JobRunInput(_)
                | Request::JobRunTty { .. }
                | Request::JobRecording { .. }
                | Request::Forward { .. }
                // Chat front ends never copy files.
                | Request::Copy(_) => false,
            },
            // A lab member: its own work and what it needs to see, nothing
            // that manages the lab. Every call is listed, so a new one must
            // be decided here. Seeing and cancelling are limited to its own
            // jobs (and those it may approve) by the gateway.
            Role::User => match self {
                Request::Whoami
                | Request::NodeList
                | Request::NodePage { .. }
                | Request::NodeShow { .. }
                | Request::ClientRenew { .. }
                | Request::JobPreview(_)
                | Request::JobSubmit(_)
                | Request::JobRun(_)
                | Request::JobRunInput(_)
                | Request::JobRunTty { .. }
                | Request::JobRecording { .. }
                | Request::JobAttach { .. }
                | Request::JobList { .. }
                | Request::JobShow { .. }
                | Request::JobCancel { .. }
                | Request::JobApprove { .. }
                | Request::JobDeny { .. }
                | Request::FanOut(_)
                | Request::FanOutAttach { .. }
                | Request::Forward { .. }
                | Request::Copy(_)
                | Request::JobGpus { .. }
                | Request::GpuHealth { .. }
                | Request::JobArtifacts { .. }
                | Request::ArtifactGet { .. }
                | Request::Time
                | Request::Trust
                | Request::NodeHistory { .. }
                | Request::GatewaySet
                | Request::JobRequest(_)
                | Request::Usage { .. }
                | Request::Queue { .. }
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
                | Request::CaRotate { .. }
                | Request::ChatContext
                | Request::GatewayLeave { .. }
                | Request::ChatAudit { .. } => false,
            },
            // A node may only renew its own certificate, read the clock and
            // the CAs to trust, and ask who it is (`openclaw whoami` on a
            // node home).
            Role::Node => matches!(
                self,
                Request::NodeRenew { .. }
                    | Request::Time
                    | Request::Trust
                    | Request::Whoami
                    | Request::GatewaySet
            ),
        }
    }
}
