//! `openclaw-bench --resilience`: failure detection, reconnection and
//! exactly-once output under forced disconnects, on a real lab.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use testkit::{Lab, UdpProxy, wait_until};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Runs the three measurements and prints Markdown.
pub fn run(bin: &Path, trials: usize, disconnects: usize) -> Result<()> {
    let bin = bin.to_str().unwrap_or_default().to_string();
    let mut lab = Lab::new(&bin);
    lab.start_gateway();

    // 1. Detection after SIGKILL of the node agent.
    let home = lab.enroll("bench-kill", "cpu");
    let mut detect = Vec::new();
    for _ in 0..trials {
        let mut agent = lab.start_node(&home);
        lab.wait_node("bench-kill", "connected", Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(300));
        agent.kill();
        let t0 = Instant::now();
        wait_until(Duration::from_secs(20), "offline", || {
            (lab.node("bench-kill")?["connection"] == "offline").then_some(())
        });
        detect.push(t0.elapsed());
    }
    let max = detect.iter().max().copied().unwrap_or_default();
    let med = median(&mut detect);

    // 2. Reconnection after a gateway restart: from listening to connected.
    let (_home2, _agent2) = lab.node_up("bench-re", "cpu", 0);
    let mut reconnect = Vec::new();
    for _ in 0..5 {
        lab.stop_gateway(false);
        std::thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        lab.start_gateway();
        let listening = t0.elapsed();
        lab.wait_node("bench-re", "connected", Duration::from_secs(20));
        reconnect.push(t0.elapsed().saturating_sub(listening));
    }
    let re_max = reconnect.iter().max().copied().unwrap_or_default();
    let re_med = median(&mut reconnect);

    // 3. Exactly-once output across forced disconnects through a relay that
    //    drops everything for longer than the dead-node window.
    let home3 = lab.enroll("bench-cut", "cpu");
    let proxy = UdpProxy::start(lab.addr.as_deref().unwrap_or_default());
    let proxy_addr = proxy.addr.to_string();
    let _agent3 = lab.spawn(&home3, &["node", "run", "--gateway", &proxy_addr]);
    lab.wait_node("bench-cut", "connected", Duration::from_secs(20));
    // About 100 MB of numbered lines, spread over the disconnects.
    let lines: u64 = 14_500_000;
    let slices = (disconnects as u64 * 10).max(1);
    let per = lines / slices;
    let script = format!(
        "for i in $(seq 0 {}); do seq $((i*{per}+1)) $(((i+1)*{per})); sleep 0.5; done",
        slices - 1
    );
    let id = lab.detach(&["--node", "bench-cut", "--", "sh", "-c", &script]);
    let mut cuts = 0;
    while cuts < disconnects {
        let state = proto::JobState::parse(lab.job(id)["state"].as_str().unwrap_or(""));
        if !matches!(
            state,
            Some(proto::JobState::Running | proto::JobState::Starting)
        ) {
            break;
        }
        proxy.block(true);
        wait_until(Duration::from_secs(15), "offline", || {
            (lab.node("bench-cut")?["connection"] == "offline").then_some(())
        });
        proxy.block(false);
        wait_until(Duration::from_secs(30), "reconnect", || {
            (lab.node("bench-cut")?["connection"] == "connected").then_some(())
        });
        cuts += 1;
    }
    let job = lab.wait_job(id, "exited", Duration::from_secs(600));
    let logs = lab.admin(&["job", "logs", &id.to_string()]);
    let stored = logs.stdout.as_bytes();
    let total = per * slices;
    // Count lost and duplicated bytes by line number.
    let mut seen = vec![0u8; usize::try_from(total + 1).unwrap_or(0)];
    let mut dup_bytes = 0u64;
    let mut junk_bytes = 0u64;
    for line in stored.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|n| *n >= 1 && *n <= total)
        {
            Some(n) => {
                let slot = &mut seen[usize::try_from(n).unwrap_or(0)];
                if *slot > 0 {
                    dup_bytes += line.len() as u64 + 1;
                }
                *slot = slot.saturating_add(1);
            }
            None => junk_bytes += line.len() as u64 + 1,
        }
    }
    let lost_bytes: u64 = (1..=total)
        .filter(|n| seen[*n as usize] == 0)
        .map(|n| n.to_string().len() as u64 + 1)
        .sum();
    if job["exit_code"] != 0 {
        bail!("the job failed: {job}");
    }

    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| dead-node detection after SIGKILL, {trials} trials | median {}, max {} |",
        secs(med),
        secs(max)
    );
    println!(
        "| reconnection after a gateway restart (listening to connected), 5 trials | median {}, max {} |",
        secs(re_med),
        secs(re_max)
    );
    println!(
        "| {cuts} forced disconnects during a {:.0} MB job | {lost_bytes} bytes lost, {dup_bytes} duplicated, {junk_bytes} corrupt; {} bytes stored |",
        stored.len() as f64 / 1e6,
        stored.len()
    );
    Ok(())
}
