//! The live table: jobs that have not ended, in memory: their progress
//! watch, live output broadcast, control channel to the node, attachment
//! generation, and each node's load.

use std::collections::HashMap;
use std::sync::Mutex;

use proto::{JobCtl, OutStream};
use tokio::sync::{Notify, mpsc, watch};

use crate::store::JobState;

/// How far a job's stored output has grown, and its state.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Bytes in the stdout log file.
    pub stdout: u64,
    /// Bytes in the stderr log file.
    pub stderr: u64,
    /// State word.
    pub state: String,
    /// Notes on the record while the state stays (a GPU of the job
    /// failed): followers send the record again when it grows.
    pub notes: u32,
}

/// Output just stored, for live followers.
#[derive(Debug, Clone)]
pub struct TailChunk {
    /// Which stream.
    pub stream: OutStream,
    /// Offset of `data` in that stream's log file.
    pub offset: u64,
    /// Contiguous bytes (shared with quinn's receive buffers; no copy).
    pub data: Vec<bytes::Bytes>,
}

impl TailChunk {
    pub(super) fn len(&self) -> u64 {
        self.data.iter().map(|b| b.len() as u64).sum()
    }
}

/// Chunks a live follower may fall behind by before it reads the file instead.
const TAIL_CHUNKS: usize = 128;

pub(super) struct LiveJob {
    pub(super) node: String,
    pub(super) gpus: u32,
    /// Dispatched to the node (counts against its capacity).
    pub(super) on_node: bool,
    /// Routed and about to be dispatched (counts against capacity too).
    pub(super) reserved: bool,
    pub(super) progress: watch::Sender<Progress>,
    pub(super) tail: tokio::sync::broadcast::Sender<TailChunk>,
    pub(super) ctl: Option<mpsc::Sender<JobCtl>>,
    /// Who cancelled it while it was on its node, once someone did: the
    /// node is told (again after a re-attachment) and the end says so.
    pub(super) cancelled_by: Option<String>,
    /// A node stream is attached now.
    pub(super) attached: bool,
    /// Counts attachments; a stream only detaches the job if it is still
    /// the latest one.
    pub(super) attach_gen: u64,
    /// Bytes received per stream, kept across re-attachments.
    pub(super) received: Option<[u64; 2]>,
    /// When the job was submitted (recovered jobs: when recovered).
    pub(super) submitted: crate::clock::Instant,
    /// When its process started, once the node said so.
    pub(super) started: Option<crate::clock::Instant>,
    /// The requester's standard input (`JobRunInput`), until the node asks
    /// for it: the job is dispatched with a stdin pipe while this is here.
    pub(super) input: Option<quinn::RecvStream>,
    /// The terminal of an interactive session (`JobRunTty`): dispatched
    /// with `RunJobTty`, and its input stream carries tty frames.
    pub(super) tty: Option<proto::tty::Tty>,
    /// The session's recording, from its dispatch to its end.
    pub(super) recorder: Option<std::sync::Arc<super::record::Recorder>>,
}

/// The live table: jobs that have not ended, and each node's load (GPUs
/// held and jobs counted against it: dispatched, or routed and reserved).
///
/// Invariant: `load` always equals a recount of `jobs`. `node`, `gpus`,
/// `on_node` and `reserved` change only through [`Live::update`],
/// [`Live::insert`] and [`Live::remove`], which keep it so; other fields
/// may be changed through `jobs` directly. Debug builds recount on every
/// access.
#[derive(Default)]
pub(crate) struct Live {
    pub(super) jobs: HashMap<u64, LiveJob>,
    pub(super) load: HashMap<String, (u32, u32)>,
}

impl LiveJob {
    pub(super) fn counted(&self) -> Option<(String, u32)> {
        (self.on_node || self.reserved).then(|| (self.node.clone(), self.gpus))
    }
}

impl Live {
    pub(super) fn count(&mut self, c: Option<(String, u32)>, add: bool) {
        let Some((node, gpus)) = c else { return };
        let e = self.load.entry(node.clone()).or_insert((0, 0));
        if add {
            *e = (e.0 + gpus, e.1 + 1);
        } else {
            *e = (e.0.saturating_sub(gpus), e.1.saturating_sub(1));
        }
        // An idle node has no entry (one removal, not a scan of every node).
        if *e == (0, 0) {
            self.load.remove(&node);
        }
    }

    /// Changes a job's placement (node, GPUs, dispatched, reserved) or
    /// anything else, keeping the loads right.
    pub(super) fn update<T>(&mut self, id: u64, f: impl FnOnce(&mut LiveJob) -> T) -> Option<T> {
        let j = self.jobs.get_mut(&id)?;
        let before = j.counted();
        let out = f(j);
        let after = j.counted();
        if before != after {
            self.count(before, false);
            self.count(after, true);
        }
        Some(out)
    }

    pub(super) fn insert(&mut self, id: u64, j: LiveJob) {
        self.count(j.counted(), true);
        if let Some(old) = self.jobs.insert(id, j) {
            self.count(old.counted(), false);
        }
    }

    pub(super) fn remove(&mut self, id: u64) -> Option<LiveJob> {
        let j = self.jobs.remove(&id)?;
        self.count(j.counted(), false);
        Some(j)
    }

    pub(super) fn recount_matches(&self) -> bool {
        let mut want: HashMap<String, (u32, u32)> = HashMap::new();
        for j in self.jobs.values() {
            if let Some((n, g)) = j.counted() {
                let e = want.entry(n).or_insert((0, 0));
                *e = (e.0 + g, e.1 + 1);
            }
        }
        want == self.load
    }
}

/// Jobs that have not ended, in memory.
#[derive(Default)]
pub struct Jobs {
    live: Mutex<Live>,
    /// Held across routing and reserving capacity.
    routing: Mutex<()>,
    /// Signalled whenever capacity may have freed up.
    pub capacity: Notify,
    /// Jobs being stopped for the fair share: each victim and the waiting
    /// job it makes room for. One at a time (a victim takes up to
    /// `kill_grace` to go).
    preempted: Mutex<HashMap<u64, u64>>,
    /// Bumped whenever a job is added, changes state or ends: the
    /// fair-share turn's cached read of the store holds while it stays.
    generation: std::sync::atomic::AtomicU64,
    /// The fair-share turn's last read of the store (`jobs/share.rs`).
    store_view: Mutex<Option<StoreView>>,
    /// Jobs whose artifacts a node is uploading now: one stream per job,
    /// so the job's cap counts every byte kept for it.
    uploading: Mutex<std::collections::HashSet<u64>>,
}

/// What the fair-share turn read from the store, and when. Waiting jobs
/// take their turns many times a second; they share one read while no
/// job is added, moved or ended and for at most [`STORE_VIEW_TTL`].
#[derive(Clone)]
pub(super) struct StoreView {
    /// [`Jobs::generation`] when it was read.
    pub(super) generation: u64,
    /// When it was read.
    pub(super) at: crate::clock::Instant,
    /// The horizon it was read from (unix seconds).
    pub(super) since: u64,
    /// Jobs not ended.
    pub(super) unfinished: std::sync::Arc<Vec<crate::store::JobRow>>,
    /// GPU use since `since`: jobs that asked for GPUs only.
    pub(super) usage: std::sync::Arc<Vec<crate::store::UsedRow>>,
}

/// How long a [`StoreView`] serves at most (running jobs' usage ends at
/// the moment it was read).
pub(super) const STORE_VIEW_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl Jobs {
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Live) -> T) -> T {
        let mut g = match self.live.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let out = f(&mut g);
        debug_assert!(
            g.recount_matches(),
            "node loads out of step with the live jobs"
        );
        out
    }

    /// Claims job `id`'s artifact upload for one stream; false while
    /// another stream holds it.
    pub(super) fn begin_upload(&self, id: u64) -> bool {
        match self.uploading.lock() {
            Ok(mut u) => u.insert(id),
            Err(p) => p.into_inner().insert(id),
        }
    }

    /// Ends the claim [`Jobs::begin_upload`] made.
    pub(super) fn end_upload(&self, id: u64) {
        match self.uploading.lock() {
            Ok(mut u) => u.remove(&id),
            Err(p) => p.into_inner().remove(&id),
        };
    }

    /// Ids of the jobs that have not ended.
    pub fn live_ids(&self) -> std::collections::HashSet<u64> {
        self.with(|m| m.jobs.keys().copied().collect())
    }

    /// Ids of the jobs that hold capacity now: dispatched, or routed and
    /// reserved (what quotas count).
    pub(super) fn holding(&self) -> std::collections::HashSet<u64> {
        self.with(|m| {
            m.jobs
                .iter()
                .filter(|(_, j)| j.counted().is_some())
                .map(|(id, _)| *id)
                .collect()
        })
    }

    fn preempted_map<T>(&self, f: impl FnOnce(&mut HashMap<u64, u64>) -> T) -> T {
        match self.preempted.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Marks the store's jobs changed: a cached [`StoreView`] is stale.
    pub(super) fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The cached [`StoreView`], if it still holds at `now` for `since`;
    /// else reads a new one with `read` and keeps it.
    pub(super) fn store_view<E>(
        &self,
        now: crate::clock::Instant,
        since: u64,
        read: impl FnOnce() -> Result<(Vec<crate::store::JobRow>, Vec<crate::store::UsedRow>), E>,
    ) -> Result<StoreView, E> {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let mut g = match self.store_view.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(v) = g.as_ref()
            && v.generation == generation
            && v.since <= since
            && now.saturating_duration_since(v.at) < STORE_VIEW_TTL
        {
            return Ok(v.clone());
        }
        let (unfinished, usage) = read()?;
        let v = StoreView {
            generation,
            at: now,
            since,
            unfinished: std::sync::Arc::new(unfinished),
            usage: std::sync::Arc::new(usage),
        };
        *g = Some(v.clone());
        Ok(v)
    }

    /// Rows of usage in the fair share's cached read of the store, if it
    /// has one (tests: it must not grow with jobs that hold no GPUs).
    #[cfg(test)]
    pub(crate) fn cached_usage_rows(&self) -> Option<usize> {
        match self.store_view.lock() {
            Ok(g) => g.as_ref().map(|v| v.usage.len()),
            Err(p) => p.into_inner().as_ref().map(|v| v.usage.len()),
        }
    }

    /// Whether a preemption is under way.
    pub(super) fn preempting(&self) -> bool {
        self.preempted_map(|m| !m.is_empty())
    }

    /// Records that `victim` is being stopped for job `waiting`.
    pub(super) fn mark_preempted(&self, victim: u64, waiting: u64) {
        self.preempted_map(|m| m.insert(victim, waiting));
    }

    /// The job `victim` is being stopped for, if it is.
    pub(super) fn preempted_for(&self, victim: u64) -> Option<u64> {
        self.preempted_map(|m| m.get(&victim).copied())
    }

    /// Forgets a preemption (its victim ended).
    pub(super) fn clear_preempted(&self, victim: u64) {
        self.preempted_map(|m| m.remove(&victim));
    }

    /// Serialises routing decisions with the capacity they reserve.
    pub(super) fn route_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        match self.routing.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub(super) fn subscribe(&self, id: u64) -> Option<watch::Receiver<Progress>> {
        self.with(|m| m.jobs.get(&id).map(|j| j.progress.subscribe()))
    }

    /// Progress and live output of a job, subscribed together so no chunk
    /// falls between them.
    pub(super) fn follow(
        &self,
        id: u64,
    ) -> Option<(
        watch::Receiver<Progress>,
        tokio::sync::broadcast::Receiver<TailChunk>,
    )> {
        self.with(|m| {
            m.jobs
                .get(&id)
                .map(|j| (j.progress.subscribe(), j.tail.subscribe()))
        })
    }

    /// GPUs held and jobs running on `node` (kept as jobs move, not
    /// counted per call: a 10,000-node fan-out asked this 10,000 times).
    pub fn load(&self, node: &str) -> (u32, u32) {
        self.with(|m| m.load.get(node).copied().unwrap_or((0, 0)))
    }

    pub(super) fn insert(
        &self,
        id: u64,
        node: &str,
        gpus: u32,
        state: JobState,
        reserved: bool,
        submitted: crate::clock::Instant,
    ) {
        let (tx, _) = watch::channel(Progress {
            state: state.as_str().to_string(),
            ..Default::default()
        });
        self.changed();
        self.with(|m| {
            m.insert(
                id,
                LiveJob {
                    node: node.to_string(),
                    gpus,
                    on_node: false,
                    reserved,
                    progress: tx,
                    tail: tokio::sync::broadcast::channel(TAIL_CHUNKS).0,
                    ctl: None,
                    cancelled_by: None,
                    attached: false,
                    attach_gen: 0,
                    received: None,
                    submitted,
                    started: None,
                    input: None,
                    tty: None,
                    recorder: None,
                },
            )
        });
    }
}
