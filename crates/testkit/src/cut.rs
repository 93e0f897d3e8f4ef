//! Cutting one process off behind a [`crate::UdpProxy`]: the relay drops
//! the datagrams of every UDP socket that process holds, and lets the
//! rest through. A node agent dials from a new port for each session, so
//! its ports are looked up again (in `/proc`) when an unknown one appears.

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The process cut off, and its UDP ports as last looked up.
#[derive(Default)]
pub(crate) struct ProcCut {
    pid: Option<u32>,
    ports: HashSet<u16>,
    looked: Option<Instant>,
    /// Datagrams dropped so far.
    pub(crate) dropped: u64,
}

impl ProcCut {
    /// Cuts `pid` off from now on (`None`: nobody).
    pub(crate) fn set(&mut self, pid: Option<u32>) {
        self.pid = pid;
        self.ports = pid.map(udp_ports_of).unwrap_or_default();
        self.looked = Some(Instant::now());
    }

    /// Whether a datagram from or to local `port` is dropped.
    pub(crate) fn drops(&mut self, port: u16) -> bool {
        let Some(pid) = self.pid else {
            return false;
        };
        if self.ports.contains(&port) {
            self.dropped += 1;
            return true;
        }
        if self
            .looked
            .is_none_or(|t| t.elapsed() > Duration::from_millis(20))
        {
            self.ports = udp_ports_of(pid);
            self.looked = Some(Instant::now());
        }
        let drop = self.ports.contains(&port);
        self.dropped += u64::from(drop);
        drop
    }
}

/// The local ports of the UDP sockets process `pid` holds (IPv4 and IPv6),
/// from `/proc/PID/fd` and `/proc/net/udp*`; empty when it is gone.
pub fn udp_ports_of(pid: u32) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(inode)) = (f.get(1), f.get(9)) else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            if let Some(p) = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok())
            {
                ports.insert(p);
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_ports_of_our_own_udp_sockets() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        let ports = super::udp_ports_of(std::process::id());
        assert!(ports.contains(&port), "{port} not in {ports:?}");
        drop(a);
        assert!(!super::udp_ports_of(std::process::id()).contains(&port));
    }
}
