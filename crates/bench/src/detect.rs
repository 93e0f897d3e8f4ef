//! `openclaw-bench --detect 1000`: failure detection at scale. A real
//! gateway on its default liveness settings (1 s heartbeats, `dead_after`
//! 3 s) holds N simulated nodes at the agent's default keep-alive (1 s, idle
//! timeout 3 s). `victims` of them live in a child process of their own,
//! which is SIGKILLed: its sessions go silent, with no QUIC close, as a
//! machine that loses power does. The parent polls `node list` (pages over
//! one open connection) every 50 ms and records when each victim is first
//! listed offline; every other node must stay connected throughout (no
//! false offline).

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use testkit::Lab;
use testkit::swarm::{Swarm, SwarmOptions};

/// How often the parent polls `node list`.
const POLL: Duration = Duration::from_millis(50);

/// The child: a swarm of `nodes` under `dir`, printing `ready` once every
/// session is up, then holding them until it is killed.
pub fn child(dir: &Path, addr: &str, token: &str, nodes: usize, prefix: &str) -> Result<()> {
    let opts = SwarmOptions {
        nodes,
        prefix: prefix.to_string(),
        endpoints: 4,
        threads: 1,
        ..Default::default()
    };
    let (_swarm, _) = Swarm::start(dir, addr, token, &opts, Duration::from_secs(300))
        .map_err(anyhow::Error::msg)?;
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the measurement and prints a table.
pub fn run(bin: &Path, nodes: usize, victims: usize) -> Result<()> {
    if victims == 0 || victims >= nodes {
        bail!("--detect N needs 0 < --victims < N");
    }
    let bin_s = bin.to_str().context("binary path")?.to_string();
    let mut lab = Lab::with_config(&bin_s, |cfg| {
        for (from, to) in [
            ("rate_per_minute = 60", "rate_per_minute = 1000000"),
            ("max_connections = 256", "max_connections = 4096"),
        ] {
            *cfg = cfg.replace(from, to);
        }
    });
    lab.start_gateway();
    let pid = lab.gateway().pid();
    let token = lab.token(&["--auto-approve", "--uses", &nodes.to_string()]);
    let addr = std::fs::read_to_string(lab.gw_home.join("gateway.addr"))?;
    let addr = addr.trim().to_string();
    let stay = SwarmOptions {
        nodes: nodes - victims,
        prefix: "stay".into(),
        endpoints: 8,
        threads: 1,
        ..Default::default()
    };
    let (swarm, _) = Swarm::start(
        &lab.dir().join("stay"),
        &addr,
        &token,
        &stay,
        Duration::from_secs(300),
    )
    .map_err(anyhow::Error::msg)?;
    let me = std::env::current_exe()?;
    let mut child = Command::new(me)
        .args([
            "--swarm-child",
            &format!(
                "{}|{addr}|{token}|{victims}|gone",
                lab.dir().join("gone").display()
            ),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        bail!("the victim swarm did not start: {line:?}");
    }
    eprintln!(
        "detect: {} + {victims} nodes up; settling 5 s",
        nodes - victims
    );
    std::thread::sleep(Duration::from_secs(5));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let client = client::Client::connect(&mesh::Home::new(&lab.gw_home))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let before = client
            .all_nodes()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let up = before
            .iter()
            .filter(|n| n.connection == "connected")
            .count();
        if up != nodes {
            bail!("only {up} of {nodes} nodes connected before the kill");
        }
        let cpu0 = testkit::cpu_time(pid);
        let t0 = Instant::now();
        child.kill()?;
        let _ = child.wait();
        let mut seen: HashMap<String, Duration> = HashMap::new();
        let mut unhealthy: HashMap<String, Duration> = HashMap::new();
        let mut false_offline: Vec<String> = Vec::new();
        let mut false_unhealthy = 0usize;
        let mut polls = Vec::new();
        let deadline = t0 + Duration::from_secs(30);
        // Until every victim is offline, and 5 s more to catch a late
        // false offline among the others.
        let mut settled_at: Option<Instant> = None;
        while Instant::now() < deadline
            && settled_at.is_none_or(|t| t.elapsed() < Duration::from_secs(5))
        {
            let p = Instant::now();
            let list = client
                .all_nodes()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            polls.push(p.elapsed());
            let at = t0.elapsed();
            for n in &list {
                let offline = n.connection != "connected";
                let sick = offline || n.health != "healthy";
                if n.name.starts_with("gone-") {
                    if offline {
                        seen.entry(n.name.clone()).or_insert(at);
                    }
                    if sick {
                        unhealthy.entry(n.name.clone()).or_insert(at);
                    }
                } else if offline && !false_offline.contains(&n.name) {
                    false_offline.push(n.name.clone());
                } else if sick {
                    false_unhealthy += 1;
                }
            }
            if seen.len() == victims && settled_at.is_none() {
                settled_at = Some(Instant::now());
            }
            tokio::time::sleep(POLL).await;
        }
        let cpu = testkit::cpu_time(pid).saturating_sub(cpu0);
        client.close().await;
        Ok((
            seen,
            unhealthy,
            false_offline,
            false_unhealthy,
            polls,
            cpu,
            t0.elapsed(),
        ))
    });
    drop(swarm);
    let (seen, unhealthy, false_offline, false_unhealthy, mut polls, cpu, span) = result?;
    let mut times: Vec<Duration> = seen.values().copied().collect();
    times.sort();
    let mut sick: Vec<Duration> = unhealthy.values().copied().collect();
    sick.sort();
    polls.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| nodes | killed at once | listed offline | p50 | p99 | max | no longer routed to (unhealthy) p50 / p99 | false offline | false unhealthy (node-polls) | `node list` poll (median) | gateway CPU while detecting |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {nodes} | {victims} | {} | {:.2} s | {:.2} s | {:.2} s | {:.2} s / {:.2} s | {} | {false_unhealthy} | {:.0} ms | {:.1} % |",
        times.len(),
        percentile(&times, 0.5).as_secs_f64(),
        percentile(&times, 0.99).as_secs_f64(),
        times.last().copied().unwrap_or_default().as_secs_f64(),
        percentile(&sick, 0.5).as_secs_f64(),
        percentile(&sick, 0.99).as_secs_f64(),
        false_offline.len(),
        ms(percentile(&polls, 0.5)),
        cpu.as_secs_f64() / span.as_secs_f64() * 100.0,
    );
    if times.len() < victims {
        bail!(
            "{} of {victims} killed nodes were never listed offline",
            victims - times.len()
        );
    }
    if !false_offline.is_empty() {
        bail!("false offline: {:?}", false_offline);
    }
    Ok(())
}
