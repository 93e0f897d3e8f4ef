//! A job's process as the kernel sees it: how it ended, and signals to
//! its process group.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The exit code of an ended process, as a shell reports it (128 + the
/// signal for one killed by a signal).
pub(super) fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// Sends `sig` to the process group led by `pid` (the job's session).
pub(super) fn kill_group(pid: u32, sig: Signal) {
    if let Ok(p) = i32::try_from(pid)
        && p > 0
    {
        let _ = killpg(Pid::from_raw(p), sig);
    }
}
