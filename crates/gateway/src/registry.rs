//! Live node connections, in memory only. The lock is a plain mutex held
//! for map operations alone, never across an `.await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use proto::{ControlMsg, Heartbeat};
use tokio::sync::mpsc;

use crate::rules::LiveView;

/// What a node reported about itself when it connected.
#[derive(Debug, Clone, Copy)]
pub struct NodeMeta {
    /// GPUs it can hand out.
    pub gpus: u32,
    /// Whether they are simulated.
    pub gpus_simulated: bool,
    /// Its job limit.
    pub max_jobs: u32,
}

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
    /// Remote address of the connection.
    pub remote: SocketAddr,
}

/// One live node session.
struct Live {
    conn: quinn::Connection,
    remote: SocketAddr,
    last_heartbeat: Instant,
    meta: NodeMeta,
    control: mpsc::Sender<ControlMsg>,
    telemetry: Option<Arc<Heartbeat>>,
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

/// Connected nodes by name, and every live session by certificate serial.
#[derive(Default)]
pub struct Registry {
    live: Mutex<HashMap<String, Live>>,
    by_serial: Mutex<HashMap<String, Vec<quinn::Connection>>>,
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

    fn with_serials<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, Vec<quinn::Connection>>) -> T,
    ) -> T {
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
        conn: &quinn::Connection,
        cap: usize,
    ) -> Result<(), TooManyConnections> {
        self.with_serials(|m| {
            let list = m.entry(serial.to_string()).or_default();
            list.retain(|c| c.close_reason().is_none());
            if list.len() >= cap {
                return Err(TooManyConnections(list.len()));
            }
            list.push(conn.clone());
            Ok(())
        })
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
            c.close(code.into(), reason.as_bytes());
        }
        conns.len()
    }

    /// Live sessions of certificate `serial`.
    pub fn sessions(&self, serial: &str) -> usize {
        self.with_serials(|m| {
            m.get(serial)
                .map(|l| l.iter().filter(|c| c.close_reason().is_none()).count())
                .unwrap_or(0)
        })
    }

    /// Registers a node's connection; returns the connection it replaces.
    pub fn connect(
        &self,
        name: &str,
        conn: quinn::Connection,
        meta: NodeMeta,
        control: mpsc::Sender<ControlMsg>,
    ) -> Option<quinn::Connection> {
        let live = Live {
            remote: conn.remote_address(),
            conn,
            last_heartbeat: Instant::now(),
            meta,
            control,
            telemetry: None,
        };
        self.with(|m| m.insert(name.to_string(), live))
            .map(|old| old.conn)
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

    /// Records a heartbeat (and its telemetry) on connection `conn_id`.
    pub fn heartbeat(&self, name: &str, conn_id: usize, hb: Heartbeat) -> Option<HeartbeatSeen> {
        let hb = Arc::new(hb);
        self.with(|m| {
            let l = m.get_mut(name).filter(|l| l.conn.stable_id() == conn_id)?;
            let now = Instant::now();
            let gap = now.saturating_duration_since(std::mem::replace(&mut l.last_heartbeat, now));
            l.telemetry = Some(hb);
            let addr = l.conn.remote_address();
            let moved = (addr != l.remote).then(|| (std::mem::replace(&mut l.remote, addr), addr));
            Some(HeartbeatSeen { gap, moved })
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
                remote: l.remote,
            })
        })
    }

    /// Where to send control messages for a node, if connected.
    pub fn control(&self, name: &str) -> Option<mpsc::Sender<ControlMsg>> {
        self.with(|m| m.get(name).map(|l| l.control.clone()))
    }

    /// The live connection of a node.
    pub fn connection(&self, name: &str) -> Option<quinn::Connection> {
        self.with(|m| m.get(name).map(|l| l.conn.clone()))
    }

    /// Connections whose last heartbeat is older than `dead_after`.
    pub fn stale(&self, now: Instant, dead_after: Duration) -> Vec<(String, quinn::Connection)> {
        self.with(|m| {
            m.iter()
                .filter(|(_, l)| now.saturating_duration_since(l.last_heartbeat) > dead_after)
                .map(|(n, l)| (n.clone(), l.conn.clone()))
                .collect()
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
