//! The integration tests, one binary: each module was a test binary of its
//! own, and each of those linked the whole tree again. In one binary they
//! link once and run side by side (`RUST_TEST_THREADS` in
//! `.cargo/config.toml`), so a slow network-lab test overlaps the rest.
//!
//! Run one module with `cargo test -p openclaw --test it attacks::`, one
//! test with its name after `--test it`.

mod artifacts;
mod attacks;
mod backup;
mod bad_input;
mod chat;
mod cp;
mod dashboard;
mod fair;
mod fanout;
mod faults;
mod forward;
mod gpu;
mod ha;
mod ha_output;
mod input;
mod install;
mod job_life;
mod jobs;
mod members;
mod mesh;
mod moltbot;
mod netlab;
mod races;
mod resilience;
mod rotation;
mod scale;
mod shell;
mod spawn;
mod state;
mod wecom;
mod weixin;
