//! The gateway group this node dials: the list from node.toml (or
//! `--gateway`), replaced by what the leader says
//! ([`proto::ControlMsg::Gateways`]) and written back into node.toml, so
//! a node enrolled before a standby joined reaches it after a failover.

use std::sync::Mutex;

use mesh::Home;
use mesh::home::node_files;

/// The addresses to dial, in order, as the agent knows them now.
pub struct Group {
    addrs: Mutex<Vec<String>>,
    home: Home,
    /// Whether to write node.toml: not when `--gateway` overrides it (the
    /// operator's choice for this run; the file stays theirs).
    write: bool,
}

impl Group {
    /// The list the agent starts with.
    pub fn new(addrs: Vec<String>, home: Home, write: bool) -> Group {
        Group {
            addrs: Mutex::new(addrs),
            home,
            write,
        }
    }

    /// The addresses now.
    pub fn list(&self) -> Vec<String> {
        match self.addrs.lock() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Takes the group's addresses from the gateway: checked, kept for the
    /// next dial, and written into node.toml when they differ. A bad list
    /// is ignored with a warning (the node keeps what it had).
    pub fn follow(&self, addrs: &[String]) {
        let list = match mesh::group::checked_list(addrs) {
            Ok(Some(_)) => addrs.to_vec(),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("ignoring the gateway group's addresses: {e}");
                return;
            }
        };
        {
            let mut a = match self.addrs.lock() {
                Ok(a) => a,
                Err(p) => p.into_inner(),
            };
            if *a == list {
                return;
            }
            a.clone_from(&list);
        }
        tracing::info!(gateways = ?list, "following the gateway group");
        if !self.write {
            return;
        }
        match mesh::group::follow(&self.home, node_files::CONFIG, &list) {
            Ok(true) => tracing::info!("wrote the gateway group into node.toml"),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot write the gateway group into node.toml: {e}"),
        }
    }
}
