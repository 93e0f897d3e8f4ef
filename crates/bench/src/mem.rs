//! `openclaw-bench --agents-mem 200`: the gateway's memory per real node
//! agent at default settings. A real gateway (only the enrollment rate
//! raised, so 200 agents may enroll from 127.0.0.1 within a minute), its
//! RSS once it answers, then N real agents enrolled and connected, a
//! settling pause, and its RSS again: the growth over N is a node's cost.
//! `/proc/PID/smaps_rollup` splits it into anonymous memory (the heap,
//! thread stacks) and file-backed pages. A benchmark: it asserts nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use testkit::{Lab, Proc, wait_until};

/// `Anonymous:` and `Rss:` of a process, KiB, from smaps_rollup.
fn rollup(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Anonymous:"))
}

/// Measures the gateway with `agents` real agents; prints a table.
pub fn run(bin: &Path, agents: usize, settle: Duration) -> Result<()> {
    let bin_s = bin.to_str().context("the openclaw path is not UTF-8")?;
    let mut lab = Lab::with_config(bin_s, |cfg| {
        *cfg = cfg.replace("rate_per_minute = 60", "rate_per_minute = 1000000");
    });
    lab.start_gateway();
    let pid = lab.gateway().pid();
    std::thread::sleep(Duration::from_secs(2));
    let (empty_rss, empty_anon) = rollup(pid);
    let uses = agents.max(1).to_string();
    let token = lab.token(&["--auto-approve", "--labels", "cpu", "--uses", &uses]);
    let started = Instant::now();
    let mut procs: Vec<Proc> = Vec::with_capacity(agents);
    for i in 0..agents {
        let home = lab.enroll_with(&token, &format!("mem-{i:03}"), "cpu");
        procs.push(lab.start_node(&home));
    }
    wait_until(Duration::from_secs(300), "every agent to connect", || {
        let connected = lab
            .nodes()
            .iter()
            .filter(|n| n["connection"] == "connected")
            .count();
        (connected == agents).then_some(())
    });
    eprintln!(
        "agents-mem: {agents} agents connected in {:.1} s; settling {} s",
        started.elapsed().as_secs_f64(),
        settle.as_secs()
    );
    std::thread::sleep(settle);
    let (rss, anon) = rollup(pid);
    let per = |now: u64, then: u64| now.saturating_sub(then) * 1024 / agents.max(1) as u64;
    println!("\n| agents | gateway RSS empty | with the agents | per node | anonymous per node |");
    println!("|---|---|---|---|---|");
    println!(
        "| {agents} | {:.1} MiB | {:.1} MiB | {:.1} KB | {:.1} KB |",
        empty_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        per(rss, empty_rss) as f64 / 1000.0,
        per(anon, empty_anon) as f64 / 1000.0,
    );
    drop(procs);
    Ok(())
}
