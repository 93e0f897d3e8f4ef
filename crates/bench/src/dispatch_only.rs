//! `--dispatch-only`: the dispatch figures alone (the spawn helper's
//! target, issue 25 item 1): a remote `true` over one open connection,
//! median, p90 and p99, and from a fresh CLI, median and p90. Run it with
//! `OPENCLAW_EXEC_SHIM=1` in the environment for the exec shim's figures
//! on the same machine (the node agent inherits the variable).

use std::time::Duration;

use anyhow::Result;

use super::{Lab, median, ms, open_connection_true, time_runs};

/// The value at fraction `q` of sorted `v`.
fn quantile(v: &[Duration], q: f64) -> Duration {
    let i = ((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1));
    v.get(i).copied().unwrap_or_default()
}

/// Measures and prints the table.
pub fn run(lab: &Lab, rt: &tokio::runtime::Runtime, runs: usize) -> Result<()> {
    let how = if std::env::var_os("OPENCLAW_EXEC_SHIM").is_some_and(|v| v == "1") {
        "exec shim (OPENCLAW_EXEC_SHIM=1)"
    } else {
        "spawn helper"
    };
    // Warm: the first jobs pay for page faults of the agent's spawn path.
    rt.block_on(open_connection_true(&lab.gw, 10))?;
    let open = rt.block_on(open_connection_true(&lab.gw, runs * 3))?;
    let fresh = time_runs(runs, || {
        let mut c = lab.cmd(&lab.gw);
        c.args(["run", "--node", "bench-node", "--", "true"]);
        c
    })?;
    println!("| dispatch, jobs started by the {how} | median | p90 | p99 |");
    println!("|---|---|---|---|");
    println!(
        "| `run -- true` over one open connection, {} runs | {} | {} | {} |",
        open.len(),
        ms(median(&open)),
        ms(quantile(&open, 0.9)),
        ms(quantile(&open, 0.99)),
    );
    println!(
        "| `run -- true`, fresh CLI, {} runs | {} | {} | |",
        fresh.len(),
        ms(median(&fresh)),
        ms(quantile(&fresh, 0.9)),
    );
    Ok(())
}
