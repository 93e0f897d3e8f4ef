//! Live node connections, in memory only. The lock is a plain mutex held
//! for map operations alone, never across an `.await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::rules::LiveView;

/// One live node session.
struct Live {
    conn: quinn::Connection,
    remote: SocketAddr,
    last_heartbeat: Instant,
}

/// Connected nodes by name.
#[derive(Default)]
pub struct Registry {
    live: Mutex<HashMap<String, Live>>,
}

impl Registry {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Live>) -> T) -> T {
        match self.live.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Registers a node's connection; returns the connection it replaces.
    pub fn connect(&self, name: &str, conn: quinn::Connection) -> Option<quinn::Connection> {
        let live = Live {
            remote: conn.remote_address(),
            conn,
            last_heartbeat: Instant::now(),
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

    /// Records a heartbeat on connection `conn_id`.
    pub fn heartbeat(&self, name: &str, conn_id: usize) {
        self.with(|m| {
            if let Some(l) = m.get_mut(name).filter(|l| l.conn.stable_id() == conn_id) {
                l.last_heartbeat = Instant::now();
            }
        });
    }

    /// Liveness of a node, if connected.
    pub fn view(&self, name: &str, now: Instant) -> Option<(LiveView, SocketAddr)> {
        self.with(|m| {
            m.get(name).map(|l| {
                (
                    LiveView {
                        heartbeat_age: now.saturating_duration_since(l.last_heartbeat),
                    },
                    l.remote,
                )
            })
        })
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
