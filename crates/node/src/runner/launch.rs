//! Starting a job's process: by the spawn helper, one fork and one exec
//! ([`crate::spawn`]), or by the exec shim ([`crate::jail`]) when the
//! agent was started with `OPENCLAW_EXEC_SHIM=1`.

use std::sync::Arc;

use super::Job;
use super::output;

/// How a job's process started.
pub(super) enum Launch {
    /// It runs; with its terminal's master side for a terminal's job.
    Running(tokio::process::Child, Option<Arc<crate::pty::Master>>),
    /// The command could not be executed: the exit code and the line a
    /// shell gives (the shim prints that line and exits with that code).
    ExecFailed(i32, String),
}

/// Starts `spec` for `job` on node `node`, through the shim when `shim`.
/// The error is the job's failure, said as the node's.
pub(super) fn launch(
    spec: &crate::jail::ShimSpec,
    job: &Job,
    shim: bool,
    node: &str,
) -> Result<Launch, String> {
    let cannot = |e: String| format!("cannot start the job on node {node}: {e}");
    let terminal = |e: std::io::Error| format!("cannot open a terminal on node {node}: {e}");
    if shim {
        let mut cmd = crate::jail::command(spec).map_err(cannot)?;
        let master = output::wire(job, &mut cmd).map_err(terminal)?;
        cmd.kill_on_drop(true);
        let spawned = cmd.spawn();
        // The agent's copies of the terminal's slave side go now: the
        // job's output ends when the job's own last copy closes.
        drop(cmd);
        return match spawned {
            Ok(c) => Ok(Launch::Running(c, master)),
            Err(e) => Err(cannot(e.to_string())),
        };
    }
    let (mut cmd, pending) = crate::spawn_plan::prepare(spec).map_err(cannot)?;
    let master = output::wire(job, &mut cmd).map_err(terminal)?;
    cmd.kill_on_drop(true);
    let spawned = cmd.spawn();
    // As above; and the hook's copy of the error pipe's write side goes
    // with it.
    drop(cmd);
    match pending.outcome(spawned) {
        crate::spawn_plan::Spawned::Running(c) => Ok(Launch::Running(c, master)),
        crate::spawn_plan::Spawned::ExecFailed(code, line) => Ok(Launch::ExecFailed(code, line)),
        crate::spawn_plan::Spawned::Failed(e) => Err(cannot(e)),
    }
}
