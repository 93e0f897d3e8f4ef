//! The attack catalogue: each test tries one attack from the trust-boundaries
//! review against real gateways and nodes over QUIC, and checks that it
//! fails with a clear error and that nothing was lost. docs/SECURITY.md lists
//! every test here beside its threat.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use testkit::{Lab, edit_file, have_tool, is_root, processes_with, wait_until};

pub(super) const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
pub(super) const T: Duration = Duration::from_secs(30);

/// A lab whose gateway.toml was edited by `edit` (each edit must match).
pub(super) fn lab_with(edits: &[(&str, &str)]) -> Lab {
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    for (from, to) in edits {
        edit_file(&cfg, from, to);
    }
    lab.start_gateway();
    lab
}

mod bounds;
mod claims;
mod cp_node;
mod env;
mod fds;
mod identity;
mod jail;
mod secrets;
mod terminal;
