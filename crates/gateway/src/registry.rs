//! Live node connections, in memory only. The lock is a plain mutex held
//! for map operations alone, never across an `.await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use std::sync::Arc;

use proto::{CloseCode, ControlMsg, Heartbeat};
use tokio::sync::mpsc;

use crate::clock::{Clock, Instant};
use crate::link::Link;
use crate::rules::LiveView;

/// What a node reported about itself when it connected.
#[derive(Debug, Clone, Copy)]
pub struct NodeMeta {
    /// GPUs it can hand out: what it claims, capped by what the token or
    /// an admin confirmed (none when nobody did).
    pub gpus: u32,
    /// GPUs it claims to have (a claim, shown, never routed on).
    pub gpus_claimed: u32,
    /// Whether they are simulated.
    pub gpus_simulated: bool,
    /// Its job limit.
    pub max_jobs: u32,
    /// The protocol of its hello (3 sends per-GPU health).
    pub protocol: u32,
}

/// The GPUs a node claiming `claimed` may hand out under the confirmed
/// `cap`: none when nothing was confirmed. Pure.
pub fn capped_gpus(claimed: u32, cap: Option<u32>) -> u32 {
    claimed.min(cap.unwrap_or(0)).min(MAX_GPUS)
}

/// Most GPUs one node may offer, whatever it claims or anyone confirms:
/// the bound the heartbeat frames are sized for.
pub const MAX_GPUS: u32 = proto::MAX_NODE_GPUS;

/// A node's liveness and self-report.
#[derive(Debug, Clone)]
pub struct LiveMeta {
    /// Heartbeat age.
    pub view: LiveView,
    /// GPUs.
    pub gpus: u32,
    /// Simulated GPUs.
    pub gpus_simulated: bool,
    /// Job limit.
    pub max_jobs: u32,
    /// The latest heartbeat.
    pub telemetry: Option<Arc<Heartbeat>>,
    /// Each GPU's health from the latest heartbeat (protocol 3; empty
    /// for a protocol-2 node, whose GPUs count as healthy).
    pub gpu_health: Arc<Vec<proto::GpuHealth>>,
    /// Remote address of the connection.
    pub remote: SocketAddr,
}

impl LiveMeta {
    /// Confirmed GPUs (the first `gpus` reported) that no job holds and
    /// whose node judged them unhealthy or MIG-enabled: not free for a
    /// new job. (One a job holds already counts as busy.)
    pub fn unusable_idle_gpus(&self) -> u32 {
        let confirmed = usize::try_from(self.gpus).unwrap_or(usize::MAX);
        let held = |i: usize| {
            self.telemetry
                .as_ref()
                .and_then(|t| t.gpus.get(i))
                .is_some_and(|g| g.job.is_some())
        };
        let n = self
            .gpu_health
            .iter()
            .take(confirmed)
            .enumerate()
            .filter(|(i, h)| !h.usable() && !held(*i))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// One live node session.
struct Live {
    conn: Link,
    remote: SocketAddr,
    last_heartbeat: Instant,
    meta: NodeMeta,
    control: Control,
    telemetry: Option<Arc<Heartbeat>>,
    gpu_health: Arc<Vec<proto::GpuHealth>>,
    /// Datagrams received on the connection, and when that was counted,
    /// while its heartbeat is late (see [`judge`]).
    probe: Option<(u64, Instant)>,
    /// The bidirectional streams the connection lets the node open now
    /// (raised by [`Registry::make_room`], never lowered).
    streams: u32,
    /// Whether `streams` has room for forwards and copies: granted at the
    /// first one asked for ([`Registry::make_side_room`]).
    side: bool,
}

/// What the reaper makes of a connected node. Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its heartbeat is on time.
    Fine,
    /// Late: count what arrives from it (start or keep a probe).
    Watch,
    /// Late, but datagrams still arrive: a slow or lossy link, not a dead
    /// node. Count again from now.
    Alive,
    /// Late past `dead_after`, and nothing at all arrived for a whole
    /// heartbeat interval (or it has been late for ten dead windows).
    Dead,
}

/// Judges a node whose last heartbeat was `age` ago. `probe` is the
/// datagram count taken while it was late and how long ago; `rx` reads the
/// count now (only for late nodes: it locks the connection). A killed node
/// sends nothing, so it is dead as soon as its heartbeat is `dead_after`
/// late, as before; a node on a lossy link whose heartbeats are being
/// retransmitted is still heard from, and is not.
pub fn judge(
    age: Duration,
    dead_after: Duration,
    interval: Duration,
    probe: Option<(u64, Duration)>,
    rx: impl FnOnce() -> u64,
) -> Verdict {
    if age <= dead_after.saturating_sub(interval) {
        return Verdict::Fine;
    }
    if age > dead_after.saturating_mul(10) {
        return Verdict::Dead;
    }
    let rx = rx();
    match probe {
        None => Verdict::Watch,
        Some((count, _)) if rx > count => Verdict::Alive,
        Some((_, since)) if age > dead_after && since >= interval => Verdict::Dead,
        Some(_) => Verdict::Watch,
    }
}

/// What a heartbeat told the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatSeen {
    /// Time since the node's previous heartbeat (or its connection).
    pub gap: std::time::Duration,
    /// The node's old and new address, when its connection moved since
    /// the last heartbeat (QUIC migration: a NAT rebinding, roaming).
    pub moved: Option<(SocketAddr, SocketAddr)>,
}

/// A node's control queue. Boxed: the queue allocates its slots 32 at a
/// time whether they are used or not, and a `ControlMsg` is a few hundred
/// bytes, which made about 7 KB for every connected node's mostly idle
/// queue; a box is 8 bytes a slot.
pub type Control = mpsc::Sender<Box<ControlMsg>>;

/// Connected nodes by name, and every live session by certificate serial.
#[derive(Default)]
pub struct Registry {
    live: Mutex<HashMap<String, Live>>,
    by_serial: Mutex<HashMap<String, Vec<Link>>>,
    /// GPU telemetry history by node; kept across reconnects, touched only
    /// by heartbeats that carry GPUs.
    history: Mutex<HashMap<String, crate::history::History>>,
}

/// A certificate already holds its maximum of live connections.
#[derive(Debug)]
pub struct TooManyConnections(pub usize);

impl Registry {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Live>) -> T) -> T {
        match self.live.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn with_serials<T>(&self, f: impl FnOnce(&mut HashMap<String, Vec<Link>>) -> T) -> T {
        match self.by_serial.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Admits a session of certificate `serial`, unless it already holds
    /// `cap` live connections. Closed connections are forgotten first.
    pub fn admit(
        &self,
        serial: &str,
        conn: &Link,
        cap: usize,
    ) -> Result<usize, TooManyConnections> {
        self.with_serials(|m| {
            let list = m.entry(serial.to_string()).or_default();
            list.retain(|c| !c.is_closed());
            if list.len() >= cap {
                return Err(TooManyConnections(list.len()));
            }
            list.push(conn.clone());
            Ok(list.len())
        })
    }

    /// [`Registry::admit`] for a node certificate, which may hold `cap`
    /// connections: at the cap, the oldest that is not node `name`'s
    /// current connection is closed to make room, so half-dead attempts
    /// never lock a reconnecting node out, and one key never holds more.
    pub fn admit_node(&self, name: &str, serial: &str, conn: &Link, cap: usize) {
        let current = self.connection(name).map(|c| c.stable_id());
        let evicted = self.with_serials(|m| {
            let list = m.entry(serial.to_string()).or_default();
            list.retain(|c| !c.is_closed());
            let mut evicted = Vec::new();
            while list.len() >= cap.max(1) {
                let Some(i) = list.iter().position(|c| Some(c.stable_id()) != current) else {
                    break;
                };
                evicted.push(list.remove(i));
            }
            list.push(conn.clone());
            evicted
        });
        for old in evicted {
            old.close(
                CloseCode::Protocol.code(),
                b"a newer connection of this node certificate took its place",
            );
        }
    }

    /// Forgets a session of certificate `serial`.
    pub fn release(&self, serial: &str, conn_id: usize) {
        self.with_serials(|m| {
            if let Some(list) = m.get_mut(serial) {
                list.retain(|c| c.stable_id() != conn_id);
                if list.is_empty() {
                    m.remove(serial);
                }
            }
        });
    }

    /// Closes every live session of certificate `serial`; returns how many.
    pub fn close_serial(&self, serial: &str, code: u32, reason: &str) -> usize {
        let conns = self.with_serials(|m| m.remove(serial).unwrap_or_default());
        for c in &conns {
            c.close(code, reason.as_bytes());
        }
        conns.len()
    }

    /// Live sessions of certificate `serial`.
    pub fn sessions(&self, serial: &str) -> usize {
        self.with_serials(|m| {
            m.get(serial)
                .map(|l| l.iter().filter(|c| !c.is_closed()).count())
                .unwrap_or(0)
        })
    }

    /// Registers a node's connection; returns the connection it replaces.
    pub fn connect(
        &self,
        name: &str,
        conn: Link,
        meta: NodeMeta,
        control: Control,
        now: Instant,
        streams: u32,
    ) -> Option<Link> {
        let live = Live {
            remote: conn.remote_address(),
            conn,
            last_heartbeat: now,
            meta,
            control,
            telemetry: None,
            gpu_health: Arc::default(),
            probe: None,
            streams,
            side: false,
        };
        self.with(|m| m.insert(name.to_string(), live))
            .map(|old| old.conn)
    }

    /// Lets node `name`'s connection carry `jobs` jobs at once (at most
    /// its `max_jobs`): raises its stream limit when it is short, to
    /// [`mesh::tls::node_job_streams`] of the jobs (with
    /// [`mesh::tls::NODE_SIDE_STREAMS`] once it has had a forward or
    /// copy: [`Registry::make_side_room`]) or twice the limit,
    /// whichever is more, so a burst of dispatches raises it a few times.
    /// Call it before the dispatch that needs the room: the node opens the
    /// job's streams only after the control message, behind the
    /// MAX_STREAMS frame. Never lowers it.
    pub fn make_room(&self, name: &str, jobs: u32) {
        self.with(|m| {
            let Some(l) = m.get_mut(name) else { return };
            let most = mesh::tls::node_stream_limit(l.meta.max_jobs);
            let jobs = jobs.min(l.meta.max_jobs);
            let want = if l.side {
                mesh::tls::node_stream_limit(jobs)
            } else {
                mesh::tls::node_job_streams(jobs)
            };
            if want > l.streams {
                let to = want.max(l.streams.saturating_mul(2)).min(most);
                l.conn.set_max_concurrent_bi_streams(to);
                l.streams = to;
            }
        });
    }

    /// Gives node `name`'s connection room for forwards and copies
    /// ([`mesh::tls::NODE_SIDE_STREAMS`] more streams) the first time one
    /// is asked for: until then its limit covers its jobs only, since
    /// quinn keeps state for every stream id of the limit once used. Call
    /// it before asking the node to open the stream. Never lowers it.
    pub fn make_side_room(&self, name: &str) {
        self.with(|m| {
            let Some(l) = m.get_mut(name) else { return };
            if l.side {
                return;
            }
            l.side = true;
            let most = mesh::tls::node_stream_limit(l.meta.max_jobs);
            let to = l
                .streams
                .saturating_add(mesh::tls::NODE_SIDE_STREAMS)
                .min(most);
            if to > l.streams {
                l.conn.set_max_concurrent_bi_streams(to);
                l.streams = to;
            }
        });
    }

    /// The stream limit of node `name`'s connection (tests).
    #[cfg(test)]
    pub fn streams(&self, name: &str) -> Option<u32> {
        self.with(|m| m.get(name).map(|l| l.streams))
    }

    /// Removes a node's entry if it still belongs to connection `conn_id`.
    /// Returns whether it did.
    pub fn disconnect(&self, name: &str, conn_id: usize) -> bool {
        self.with(|m| {
            if m.get(name).is_some_and(|l| l.conn.stable_id() == conn_id) {
                m.remove(name);
                true
            } else {
                false
            }
        })
    }

    fn with_history<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, crate::history::History>) -> T,
    ) -> T {
        match self.history.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The GPU telemetry history of `names`, in that order.
    pub fn histories(&self, names: &[String]) -> Vec<proto::NodeHistory> {
        self.with_history(|h| {
            names
                .iter()
                .map(|n| proto::NodeHistory {
                    name: n.clone(),
                    every_secs: crate::history::SAMPLE_EVERY,
                    samples: h.get(n).map(|x| x.samples()).unwrap_or_default(),
                })
                .collect()
        })
    }

    /// Each GPU's health on those of `names` that are connected.
    pub fn gpu_health(&self, names: &[String]) -> Vec<(String, Vec<proto::GpuHealth>)> {
        self.with(|m| {
            names
                .iter()
                .filter_map(|n| m.get(n).map(|l| (n.clone(), l.gpu_health.as_ref().clone())))
                .collect()
        })
    }

    /// Forgets a node's history (it was revoked or rejected).
    pub fn forget_history(&self, name: &str) {
        self.with_history(|h| h.remove(name));
    }

    /// Records a heartbeat (and its telemetry) on connection `conn_id`.
    pub fn heartbeat(
        &self,
        name: &str,
        conn_id: usize,
        hb: Heartbeat,
        clock: &Clock,
        gpu_health: Vec<proto::GpuHealth>,
    ) -> Option<HeartbeatSeen> {
        let hb = Arc::new(hb);
        let gpu_health = Arc::new(gpu_health);
        // Only the node's current connection speaks for it: a replaced or
        // stray connection of the same certificate records nothing, not
        // even history.
        let seen = self.with(|m| {
            let l = m.get_mut(name).filter(|l| l.conn.stable_id() == conn_id)?;
            let now = clock.now();
            let gap = now.saturating_duration_since(std::mem::replace(&mut l.last_heartbeat, now));
            l.telemetry = Some(hb.clone());
            l.gpu_health = gpu_health;
            l.probe = None;
            let addr = l.conn.remote_address();
            let moved = (addr != l.remote).then(|| (std::mem::replace(&mut l.remote, addr), addr));
            Some((HeartbeatSeen { gap, moved }, l.meta.gpus))
        });
        let (seen, confirmed) = seen?;
        // History keeps the confirmed GPUs only: a node's claim of 1,024
        // GPUs costs the gateway no more memory than its cap allows.
        if confirmed > 0 && !hb.gpus.is_empty() {
            let now = clock.unix();
            let n = usize::try_from(confirmed).unwrap_or(usize::MAX);
            self.with_history(|h| h.entry(name.to_string()).or_default().record(now, &hb, n));
        }
        Some(seen)
    }

    /// The GPUs a node claimed in its hello, if connection `conn_id` is
    /// its current one.
    pub fn claimed_gpus(&self, name: &str, conn_id: usize) -> Option<(u32, u32)> {
        self.with(|m| {
            m.get(name)
                .filter(|l| l.conn.stable_id() == conn_id)
                .map(|l| (l.meta.gpus_claimed, l.meta.protocol))
        })
    }

    /// Sets a connected node's confirmed GPU cap at once (`node approve
    /// --gpus` on an enrolled node); a node not connected takes it from
    /// its row when it connects.
    pub fn set_gpu_cap(&self, name: &str, cap: Option<u32>) {
        self.with(|m| {
            if let Some(l) = m.get_mut(name) {
                l.meta.gpus = capped_gpus(l.meta.gpus_claimed, cap);
            }
        })
    }

    /// Liveness plus what the node reported, if connected.
    pub fn meta(&self, name: &str, now: Instant) -> Option<LiveMeta> {
        self.with(|m| {
            m.get(name).map(|l| LiveMeta {
                view: LiveView {
                    heartbeat_age: now.saturating_duration_since(l.last_heartbeat),
                },
                gpus: l.meta.gpus,
                gpus_simulated: l.meta.gpus_simulated,
                max_jobs: l.meta.max_jobs,
                telemetry: l.telemetry.clone(),
                gpu_health: l.gpu_health.clone(),
                remote: l.remote,
            })
        })
    }

    /// Where to send control messages for a node, if connected.
    pub fn control(&self, name: &str) -> Option<Control> {
        self.with(|m| m.get(name).map(|l| l.control.clone()))
    }

    /// Queues `msg` on every connected node's control stream; returns how
    /// many took it (a node whose queue is full misses it and gets it again
    /// at its next session).
    pub fn broadcast(&self, msg: &ControlMsg) -> usize {
        let senders: Vec<_> = self.with(|m| m.values().map(|l| l.control.clone()).collect());
        senders
            .iter()
            .filter(|tx| tx.try_send(Box::new(msg.clone())).is_ok())
            .count()
    }

    /// [`Registry::broadcast`], to the nodes whose hello said at least
    /// protocol `min` (an older node would not know the message).
    pub fn broadcast_to(&self, min: u32, msg: &ControlMsg) -> usize {
        let senders: Vec<_> = self.with(|m| {
            m.values()
                .filter(|l| l.meta.protocol >= min)
                .map(|l| l.control.clone())
                .collect()
        });
        senders
            .iter()
            .filter(|tx| tx.try_send(Box::new(msg.clone())).is_ok())
            .count()
    }

    /// The live connection of a node.
    pub fn connection(&self, name: &str) -> Option<Link> {
        self.with(|m| m.get(name).map(|l| l.conn.clone()))
    }

    /// Connections of dead nodes ([`judge`]): heartbeat `dead_after` late
    /// and nothing heard from them for a heartbeat `interval`. Only late
    /// nodes' datagram counts are read.
    pub fn stale(
        &self,
        now: Instant,
        dead_after: Duration,
        interval: Duration,
    ) -> Vec<(String, Link)> {
        self.with(|m| {
            let mut dead = Vec::new();
            for (n, l) in m.iter_mut() {
                let age = now.saturating_duration_since(l.last_heartbeat);
                let probe = l
                    .probe
                    .map(|(c, at)| (c, now.saturating_duration_since(at)));
                let mut rx = None;
                let verdict = judge(age, dead_after, interval, probe, || {
                    *rx.insert(l.conn.datagrams_received())
                });
                match verdict {
                    Verdict::Fine => l.probe = None,
                    // A new probe starts from the count just read.
                    Verdict::Watch if l.probe.is_none() => l.probe = rx.map(|c| (c, now)),
                    Verdict::Watch => {}
                    Verdict::Alive => l.probe = rx.map(|c| (c, now)),
                    Verdict::Dead => dead.push((n.clone(), l.conn.clone())),
                }
            }
            dead
        })
    }

    /// Number of connected nodes.
    pub fn len(&self) -> usize {
        self.with(|m| m.len())
    }

    /// Whether no node is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_node(reg: &Registry) -> u32 {
        let (_dialer, link) = crate::link::fake::FakeDialer::new();
        let meta = NodeMeta {
            gpus: 0,
            gpus_claimed: 0,
            gpus_simulated: false,
            max_jobs: 256,
            protocol: proto::PROTOCOL_VERSION,
        };
        let (tx, _rx) = mpsc::channel(1);
        // What the session gives a node that holds no jobs at its hello.
        let idle = mesh::tls::node_job_streams(mesh::tls::NODE_IDLE_JOBS);
        let now = Clock::system().now();
        reg.connect("n1", Link::Fake(link), meta, tx, now, idle);
        idle
    }

    #[test]
    fn a_node_gets_streams_for_its_jobs_as_they_are_dispatched() {
        use mesh::tls::{NODE_IDLE_JOBS, node_job_streams};
        let reg = Registry::default();
        let idle = idle_node(&reg);
        reg.make_room("n1", NODE_IDLE_JOBS);
        assert_eq!(reg.streams("n1"), Some(idle), "room enough: unchanged");
        // One job more than it has room for: at least doubled.
        reg.make_room("n1", NODE_IDLE_JOBS + 1);
        assert_eq!(reg.streams("n1"), Some(2 * idle));
        reg.make_room("n1", 100);
        assert_eq!(reg.streams("n1"), Some(node_job_streams(100)));
        // Never past what max_jobs needs, never lowered.
        reg.make_room("n1", 100_000);
        assert_eq!(reg.streams("n1"), Some(node_job_streams(256)));
        reg.make_room("n1", 1);
        assert_eq!(reg.streams("n1"), Some(node_job_streams(256)));
        reg.make_room("gone", 10);
        assert_eq!(reg.streams("gone"), None);
    }

    /// quinn keeps a receive state for every stream id of a connection's
    /// limit once the peer has used it, and recycles them only past the
    /// first limit's worth of ids: the limit is what a long-lived node
    /// connection ends up holding. The hour soak (a job a second over 100
    /// nodes, each job one or two streams) grew the gateway for hours
    /// while every node filled a limit of 104. So an idle node's limit
    /// covers a couple of jobs and its own streams, and room for forwards
    /// and copies comes with the first one.
    #[test]
    fn an_idle_node_has_streams_for_a_few_jobs_and_forwards_only_once_asked() {
        use mesh::tls::{NODE_SIDE_STREAMS, node_job_streams, node_stream_limit};
        let reg = Registry::default();
        let idle = idle_node(&reg);
        assert!(idle <= 16, "an idle node's stream limit is {idle}");
        // A job at a time, the soak's load: the limit stays.
        for _ in 0..100 {
            reg.make_room("n1", 1);
        }
        assert_eq!(reg.streams("n1"), Some(idle));
        // The first forward or copy: room for them, once.
        reg.make_side_room("n1");
        assert_eq!(reg.streams("n1"), Some(idle + NODE_SIDE_STREAMS));
        reg.make_side_room("n1");
        assert_eq!(reg.streams("n1"), Some(idle + NODE_SIDE_STREAMS));
        // From then on, jobs' room keeps the forwards' beside it.
        reg.make_room("n1", 100);
        assert_eq!(reg.streams("n1"), Some(node_stream_limit(100)));
        assert!(node_stream_limit(100) > node_job_streams(100));
        reg.make_room("n1", 100_000);
        assert_eq!(reg.streams("n1"), Some(node_stream_limit(256)));
        reg.make_side_room("gone");
        assert_eq!(reg.streams("gone"), None);
    }

    #[test]
    fn a_late_node_is_dead_only_when_nothing_arrives() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let (dead, hb) = (s(3), s(1));
        for (age, probe, rx, want) in [
            (ms(500), None, 0, Verdict::Fine),
            (s(2), None, 0, Verdict::Fine),
            // Late: start counting a heartbeat interval before the deadline.
            (ms(2100), None, 10, Verdict::Watch),
            // Killed: nothing since the probe; dead once the deadline passes.
            (ms(3050), Some((10, ms(950))), 10, Verdict::Watch),
            (ms(3100), Some((10, s(1))), 10, Verdict::Dead),
            // Lossy: heartbeats late, datagrams still arriving: alive.
            (s(4), Some((10, s(1))), 11, Verdict::Alive),
            (s(9), Some((50, ms(300))), 50, Verdict::Watch),
            // Heard from but not heartbeating for ten dead windows: dead.
            (s(31), Some((50, ms(10))), 60, Verdict::Dead),
        ] {
            assert_eq!(
                judge(age, dead, hb, probe, || rx),
                want,
                "{age:?} {probe:?} {rx}"
            );
        }
    }
}
