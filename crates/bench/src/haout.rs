//! `--ha-output`: job output throughput with output stored in PostgreSQL
//! (an HA group's `job_output` rows, issue 26) against today's file store
//! (SQLite state, `logs/<id>.stdout`), in one run on one machine.
//!
//! For each store: one gateway and one node agent, then, `--ha-rounds`
//! times each, alternating the stores so load drifts hit both alike:
//!
//! - a job `head -c BYTES /dev/zero` run with `openclaw run` to
//!   /dev/null: the node is acked only once bytes are stored, so the
//!   job's end waits for the store;
//! - a job printing LINES numbered lines (`seq`), the same way;
//! - `openclaw job logs` of the first job, to /dev/null: reading it back.
//!
//! PostgreSQL is a throwaway server (`testpg`: initdb in a temp
//! directory, fsync on as shipped). Medians are printed as a Markdown
//! table; compare ratios within one run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// One store's lab: a gateway, a node, and the admin home.
struct Store {
    name: &'static str,
    lab: testkit::Lab,
    _node: testkit::Proc,
}

fn start(bin: &str, pg_url: Option<&str>, name: &'static str) -> Store {
    let mut lab = testkit::Lab::new(bin);
    if let Some(url) = pg_url {
        lab.admin(&["gateway", "migrate-state", "--to", url]).ok();
    }
    lab.start_gateway();
    let home = lab.enroll("bench-out", "bench");
    let node = lab.start_node(&home);
    lab.wait_node("bench-out", "connected", Duration::from_secs(30));
    Store {
        name,
        lab,
        _node: node,
    }
}

/// Runs `openclaw run` with `args` on the bench node, output to /dev/null;
/// its wall time.
fn timed_run(bin: &Path, home: &Path, args: &[&str]) -> Result<Duration> {
    let t = Instant::now();
    let st = Command::new(bin)
        .arg("--home")
        .arg(home)
        .args(["run", "--node", "bench-out", "--"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("openclaw run {args:?} failed: {st}");
    }
    Ok(t.elapsed())
}

/// `openclaw job logs ID` to /dev/null; its wall time.
fn timed_logs(bin: &Path, home: &Path, id: u64) -> Result<Duration> {
    let t = Instant::now();
    let st = Command::new(bin)
        .arg("--home")
        .arg(home)
        .args(["job", "logs", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("openclaw job logs {id} failed: {st}");
    }
    Ok(t.elapsed())
}

/// The id of the newest job.
fn last_job(lab: &testkit::Lab) -> Result<u64> {
    lab.jobs()
        .iter()
        .filter_map(|j| j["id"].as_u64())
        .max()
        .ok_or_else(|| anyhow::anyhow!("no job listed"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The `--ha-output` benchmark.
pub fn run(bin: &Path, bytes: u64, lines: u64, rounds: usize) -> Result<()> {
    let Some(pg) = testpg::shared("openclaw-bench --ha-output") else {
        bail!("--ha-output needs PostgreSQL's initdb and postgres on the PATH");
    };
    let bin_str = bin.to_string_lossy().to_string();
    let url = pg
        .database()
        .map_err(|e| anyhow::anyhow!("a PostgreSQL database: {e}"))?;
    let stores = [
        start(&bin_str, None, "files (SQLite state)"),
        start(&bin_str, Some(&url), "PostgreSQL job_output"),
    ];
    let head = format!("head -c {bytes} /dev/zero");
    let seq = format!("seq 1 {lines}");
    let line_bytes: u64 = (1..=lines).map(|i| i.to_string().len() as u64 + 1).sum();
    // Warm up each: one small job.
    for s in &stores {
        timed_run(bin, &s.lab.gw_home, &["true"])?;
    }
    let mut bulk = [Vec::new(), Vec::new()];
    let mut small = [Vec::new(), Vec::new()];
    let mut read = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let s = &stores[i];
            let home = &s.lab.gw_home;
            bulk[i].push(timed_run(bin, home, &["sh", "-c", &head])?);
            let id = last_job(&s.lab)?;
            small[i].push(timed_run(bin, home, &["sh", "-c", &seq])?);
            read[i].push(timed_logs(bin, home, id)?);
            let job = s.lab.job(id);
            if job["stdout_bytes"].as_u64() != Some(bytes) {
                bail!(
                    "{}: job {id} stored {} bytes, not {bytes}",
                    s.name,
                    job["stdout_bytes"]
                );
            }
        }
    }
    let mbps = |b: u64, d: Duration| b as f64 / d.as_secs_f64() / 1e6;
    println!(
        "| store | `run -- head -c {bytes}` | `run -- seq 1 {lines}` ({line_bytes} bytes) | `job logs` of the {bytes} bytes |"
    );
    println!("|---|---|---|---|");
    for (i, s) in stores.iter().enumerate() {
        let (b, l, r) = (
            median(bulk[i].clone()),
            median(small[i].clone()),
            median(read[i].clone()),
        );
        println!(
            "| {} | {:.2} s ({:.0} MB/s) | {:.2} s ({:.1} MB/s) | {:.2} s ({:.0} MB/s) |",
            s.name,
            b.as_secs_f64(),
            mbps(bytes, b),
            l.as_secs_f64(),
            mbps(line_bytes, l),
            r.as_secs_f64(),
            mbps(bytes, r),
        );
    }
    println!("\nmedians of {rounds} rounds each, stores alternating");
    Ok(())
}
