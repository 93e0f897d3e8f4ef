//! `openclaw-exec`: the node agent's exec shim as a binary of its own.
//!
//! It does exactly what `openclaw __job-exec` does (see `node::jail`), but
//! it is a small program: starting the whole `openclaw` binary for every
//! job cost about 2 ms of dynamic loading and relocation before the job's
//! command could be exec'd. The agent uses this binary when it sits next
//! to its own, and falls back to `openclaw __job-exec` otherwise.

fn main() {
    node::jail::shim_main();
}
