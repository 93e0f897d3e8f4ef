//! Records the admin API lists and shows: tokens, clients, nodes. Wire
//! types: see [`crate::msg`].

use serde::{Deserialize, Serialize};

use crate::{GpuHealth, GpuTelemetry, Heartbeat, Role};

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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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

    /// [`NodeInfo::gpu_counts`], with each GPU's health (by position, from
    /// `Request::GpuHealth`): an idle GPU that is unhealthy or
    /// MIG-enabled is not free.
    /// What routing does with them: the same rule as the gateway's. An
    /// empty `health` (an older gateway, or an offline node) is the plain
    /// count.
    pub fn gpu_counts_with(&self, health: &[GpuHealth]) -> GpuCounts {
        let mut c = self.gpu_counts();
        let unusable = self.held_back(health).count();
        c.free = c
            .free
            .saturating_sub(u32::try_from(unusable).unwrap_or(u32::MAX));
        c
    }

    /// Why [`NodeInfo::gpu_counts_with`] counts fewer free GPUs than
    /// [`NodeInfo::gpu_counts`], short, for a row: `GPU 0 lost, GPU 1
    /// MIG` (by position in the heartbeat, as the gateway's health reason
    /// names them); `None` when it does not. At most [`GPU_NOTE_MAX`]
    /// GPUs are named, then `and N more`.
    pub fn gpu_note(&self, health: &[GpuHealth]) -> Option<String> {
        let held: Vec<String> = self
            .held_back(health)
            .map(|(i, h)| format!("GPU {i} {}", h.short().unwrap_or_default()))
            .collect();
        if held.is_empty() {
            return None;
        }
        let mut note = held[..held.len().min(GPU_NOTE_MAX)].join(", ");
        if held.len() > GPU_NOTE_MAX {
            note.push_str(&format!(" and {} more", held.len() - GPU_NOTE_MAX));
        }
        Some(note)
    }

    /// The confirmed GPUs no job holds that `health` keeps from new jobs,
    /// by position, with their health.
    fn held_back<'a>(
        &'a self,
        health: &'a [GpuHealth],
    ) -> impl Iterator<Item = (usize, &'a GpuHealth)> + 'a {
        self.confirmed_gpus()
            .iter()
            .enumerate()
            .filter(|(_, g)| g.job.is_none())
            .filter_map(|(i, _)| health.get(i).filter(|h| !h.usable()).map(|h| (i, h)))
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

/// Most GPUs [`NodeInfo::gpu_note`] names.
pub const GPU_NOTE_MAX: usize = 4;

/// The health of node `name`'s GPUs in a `Response::GpuHealth` answer;
/// empty when it is not there (offline, or an older gateway answered
/// nothing), which counts as the plain count.
pub fn gpu_health_of<'a>(all: &'a [(String, Vec<GpuHealth>)], name: &str) -> &'a [GpuHealth] {
    all.iter()
        .find(|(n, _)| n == name)
        .map_or(&[][..], |(_, h)| h.as_slice())
}
