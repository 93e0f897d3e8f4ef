//! What nodes report about themselves (heartbeats, GPU telemetry) and
//! the views the gateway builds from it (history, the lab summary). Wire
//! types: see [`crate::msg`].

use serde::{Deserialize, Serialize};

use crate::NodeInfo;

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
    // and at most 60 bytes of varints and tags, and (protocol 3) its
    // health: a tag and a bounded reason.
    const FIXED: usize = 1024 + 2 * HEARTBEAT_TEXT_MAX;
    const PER_GPU: usize = 3 * (GPU_TEXT_MAX + 9) + 60;
    FIXED + PER_GPU * gpus.min(MAX_NODE_GPUS) as usize
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub(crate) fn cut(s: &mut String, max: usize) {
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

/// The value of a [`GpuTelemetry`] number that NVML could not read (not
/// supported on this board, under MIG, or the GPU did not answer):
/// unknown, which is not zero. Shown as "–". It travels in the field
/// itself so that the wire stays that of protocol 2; code reads the
/// fields through [`GpuTelemetry::util`], [`GpuTelemetry::temp`] and
/// [`GpuTelemetry::mem`], which say `None`.
pub const GPU_UNKNOWN: u32 = u32::MAX;

/// [`GPU_UNKNOWN`] for the byte counts.
pub const GPU_UNKNOWN_BYTES: u64 = u64::MAX;

/// One GPU, as the node's GPU source read it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GpuTelemetry {
    /// Index: NVML's, in PCI bus order.
    pub index: u32,
    /// Model name.
    pub name: String,
    /// UUID (what CUDA_VISIBLE_DEVICES names).
    pub uuid: String,
    /// Memory in use, bytes ([`GPU_UNKNOWN_BYTES`]: unknown).
    pub mem_used: u64,
    /// Memory in total, bytes ([`GPU_UNKNOWN_BYTES`]: unknown).
    pub mem_total: u64,
    /// Utilisation, percent ([`GPU_UNKNOWN`]: unknown).
    pub util_pct: u32,
    /// Temperature, degrees Celsius ([`GPU_UNKNOWN`]: unknown).
    pub temp_c: u32,
    /// The job holding it, if any.
    pub job: Option<u64>,
    /// Simulated (`--simulate-gpus`), not real hardware.
    pub simulated: bool,
}

impl GpuTelemetry {
    /// Utilisation, percent, if known.
    pub fn util(&self) -> Option<u32> {
        (self.util_pct != GPU_UNKNOWN).then_some(self.util_pct)
    }

    /// Temperature, Celsius, if known.
    pub fn temp(&self) -> Option<u32> {
        (self.temp_c != GPU_UNKNOWN).then_some(self.temp_c)
    }

    /// Memory (used, total), bytes, if known.
    pub fn mem(&self) -> Option<(u64, u64)> {
        (self.mem_used != GPU_UNKNOWN_BYTES && self.mem_total != GPU_UNKNOWN_BYTES)
            .then_some((self.mem_used, self.mem_total))
    }
}

/// A GPU's fitness for new jobs, as its node judged it from NVML
/// (protocol 3, [`HeartbeatV3`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum GpuHealth {
    /// Fit.
    #[default]
    Healthy,
    /// Lost, uncorrectable ECC errors, or recovering from one of those
    /// (fewer good samples in a row than the node asks): the reason.
    Unhealthy(String),
    /// MIG is enabled: it is never handed out as a whole GPU.
    Mig,
}

impl GpuHealth {
    /// Whether a new job may get it as a whole GPU.
    pub fn usable(&self) -> bool {
        matches!(self, GpuHealth::Healthy)
    }

    /// Why not, in a few words; `None` while usable.
    pub fn reason(&self) -> Option<&str> {
        match self {
            GpuHealth::Healthy => None,
            GpuHealth::Unhealthy(why) => Some(why),
            GpuHealth::Mig => Some("MIG enabled: not handed out as a whole GPU"),
        }
    }

    /// `healthy`, `unhealthy` or `mig`: the word scripts read (`--json`).
    pub fn word(&self) -> &'static str {
        match self {
            GpuHealth::Healthy => "healthy",
            GpuHealth::Unhealthy(_) => "unhealthy",
            GpuHealth::Mig => "mig",
        }
    }

    /// [`GpuHealth::reason`] in a word or three, for a list row: `lost`,
    /// `MIG`, `recovering`, `reported critical Xid 79` (the reason up to
    /// its first `:` or ` (`), printable and at most
    /// [`GPU_SHORT_REASON`] characters; `None` while usable. Pure: the
    /// reason is the node's text.
    pub fn short(&self) -> Option<String> {
        match self {
            GpuHealth::Healthy => None,
            GpuHealth::Mig => Some("MIG".into()),
            GpuHealth::Unhealthy(why) => {
                let head = why.split(':').next().unwrap_or_default();
                let head = head.split(" (").next().unwrap_or_default().trim();
                let head = if head.is_empty() { "unhealthy" } else { head };
                Some(crate::names::printable(head, GPU_SHORT_REASON))
            }
        }
    }
}

/// Most characters of [`GpuHealth::short`].
pub const GPU_SHORT_REASON: usize = 40;

/// A node's heartbeat in protocol 3: protocol 2's [`Heartbeat`] followed
/// by each GPU's health, in the order of `beat.gpus`. Only a node whose
/// hello says protocol 3 sends it; the gateway reads what the hello said.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeartbeatV3 {
    /// The protocol-2 part.
    pub beat: Heartbeat,
    /// Each GPU's health.
    pub health: Vec<GpuHealth>,
}

impl HeartbeatV3 {
    /// [`Heartbeat::bound`], and the health list to the GPU list, each
    /// reason to [`GPU_TEXT_MAX`].
    pub fn bound(&mut self, gpus: u32) {
        self.beat.bound(gpus);
        self.health.truncate(self.beat.gpus.len());
        for h in &mut self.health {
            if let GpuHealth::Unhealthy(why) = h {
                cut(why, GPU_TEXT_MAX);
            }
        }
    }
}

/// An API call from an admin or bot client.
// Messages live for one decode-handle-drop cycle, so variant size does not matter.
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

/// One GPU in a telemetry sample. An unknown reading is the field's
/// maximum ([`u8::MAX`], [`u32::MAX`]), read as `None` through
/// [`GpuPoint::util`], [`GpuPoint::temp`] and [`GpuPoint::mem_mib`];
/// sparklines leave a gap there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuPoint {
    /// GPU index.
    pub index: u32,
    /// Utilisation, percent (255: unknown).
    pub util_pct: u8,
    /// Temperature, degrees Celsius (254: that or hotter; 255: unknown).
    pub temp_c: u8,
    /// Memory in use, MiB (`u32::MAX`: unknown).
    pub mem_used_mib: u32,
}

impl GpuPoint {
    /// The point of a GPU reading; unknown stays unknown.
    pub fn of(g: &GpuTelemetry) -> GpuPoint {
        GpuPoint {
            index: g.index,
            util_pct: g.util().map_or(u8::MAX, |u| u.min(100) as u8),
            temp_c: g.temp().map_or(u8::MAX, |c| c.min(254) as u8),
            mem_used_mib: g.mem().map_or(u32::MAX, |m| {
                u32::try_from(m.0 >> 20).unwrap_or(u32::MAX - 1)
            }),
        }
    }

    /// Utilisation, if known.
    pub fn util(&self) -> Option<u32> {
        (self.util_pct != u8::MAX).then_some(u32::from(self.util_pct))
    }

    /// Temperature, if known.
    pub fn temp(&self) -> Option<u32> {
        (self.temp_c != u8::MAX).then_some(u32::from(self.temp_c))
    }

    /// Memory in use, MiB, if known.
    pub fn mem_mib(&self) -> Option<u32> {
        (self.mem_used_mib != u32::MAX).then_some(self.mem_used_mib)
    }
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
