//! `openclaw-bench --swarm 1000,5000,10000`: a real gateway process under
//! N simulated nodes (`testkit::swarm`: real enrollment, QUIC + mTLS
//! sessions, heartbeats every 5 s), measured from /proc over a steady-state
//! window. Prints a Markdown table and writes JSON.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use testkit::Lab;
use testkit::swarm::{Swarm, SwarmOptions};

/// One swarm size's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Simulated nodes.
    pub nodes: usize,
    /// Enrolling all of them (CSR signed and persisted), seconds.
    pub enroll_s: f64,
    /// Gateway CPU time per enrollment while they enrolled, ms.
    pub enroll_gateway_cpu_ms: f64,
    /// Connecting all of them, seconds.
    pub connect_s: f64,
    /// Gateway RSS at the end of the window, KiB.
    pub gateway_rss_kib: u64,
    /// Gateway RSS per node, bytes (RSS minus the empty gateway's, over N).
    pub per_node_bytes: u64,
    /// Gateway CPU over the window, percent of one core.
    pub gateway_cpu_pct: f64,
    /// `openclaw node list` from a fresh process, median of 5, ms.
    pub node_list_ms: f64,
    /// Nodes the gateway did not list as connected at the end.
    pub not_connected: usize,
    /// Sessions the swarm had to dial again, in all (the connect storm included).
    pub reconnects: u64,
    /// Of those, during the steady-state window: a false offline shows up here.
    pub window_reconnects: u64,
    /// `openclaw run --all -- true` on every node from a fresh process,
    /// until every exit code is in: median of 3, ms.
    pub fanout_cli_ms: f64,
    /// The same fan-out over an already-open client connection, from the
    /// request to the last exit code: median of 3, ms.
    pub fanout_open_ms: f64,
    /// State database transactions (async calls plus blocking ones) per
    /// node while they enrolled and connected.
    pub db_per_enrollment: f64,
    /// The same per second over the steady-state window (idle nodes).
    pub db_idle_per_s: f64,
    /// The same per fan-out member (one job of `true`), over the six
    /// fan-outs; node list calls included.
    pub db_per_job: f64,
    /// Commits per second the database thread made in the window, and
    /// per fan-out member: what an engine would have to make durable.
    pub commits_idle_per_s: f64,
    /// See `commits_idle_per_s`.
    pub commits_per_job: f64,
}

/// The state database counters from the gateway's /metrics: async calls,
/// their commits, blocking transactions.
fn db_counts(gw: &Path) -> Result<[u64; 3]> {
    use std::io::{Read as _, Write as _};
    let addr = std::fs::read_to_string(gw.join("metrics.addr"))?;
    let mut s = std::net::TcpStream::connect(addr.trim())?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        addr.trim()
    )?;
    let mut page = String::new();
    s.read_to_string(&mut page)?;
    let get = |name: &str| -> Result<u64> {
        page.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("{name} missing from /metrics"))
    };
    Ok([
        get("openclaw_db_calls_total")?,
        get("openclaw_db_commits_total")?,
        get("openclaw_db_blocking_transactions_total")?,
    ])
}

/// Times a fan-out of `true` to every `sim` node over one open client
/// connection: request to `Done`, checking every member exited 0.
async fn fanout_open(gw: &Path, nodes: usize, runs: usize) -> Result<Vec<Duration>> {
    let client = client::Client::connect(&mesh::Home::new(gw))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let spec = proto::FanOutSpec {
            job: proto::JobSpec {
                argv: vec!["true".into()],
                ..Default::default()
            },
            labels: vec!["sim".into()],
            batch: None,
            output: true,
        };
        let t = Instant::now();
        let mut recv = client
            .open(proto::Request::FanOut(spec))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut ok = 0;
        loop {
            match client.next_fan_event(&mut recv).await {
                Ok(Some(proto::FanEvent::Ended { job, .. })) if job.exit_code == Some(0) => ok += 1,
                Ok(Some(proto::FanEvent::Ended { job, .. })) => {
                    bail!(
                        "a member of the fan-out ended {}: {:?}",
                        job.state,
                        job.reason
                    )
                }
                Ok(Some(proto::FanEvent::Done)) => break,
                Ok(Some(proto::FanEvent::Error(e))) => bail!("{}", e.message),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => bail!("lost the gateway"),
            }
        }
        out.push(t.elapsed());
        if ok != nodes {
            bail!("fan-out: {ok} of {nodes} exit codes 0");
        }
    }
    client.close().await;
    Ok(out)
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2)
        .copied()
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// Measures one swarm size.
pub fn measure(
    bin: &Path,
    nodes: usize,
    window: Duration,
    endpoints: usize,
    keep_alive: (Duration, Duration),
) -> Result<Row> {
    let bin_s = bin.to_str().context("binary path")?.to_string();
    let mut lab = Lab::with_config(&bin_s, |cfg| {
        for (from, to) in [
            ("rate_per_minute = 60", "rate_per_minute = 1000000"),
            ("max_connections = 256", "max_connections = 4096"),
            ("heartbeat_interval = \"1s\"", "heartbeat_interval = \"5s\""),
            ("dead_after = \"3s\"", "dead_after = \"15s\""),
        ] {
            *cfg = cfg.replace(from, to);
        }
        // Metrics on ([metrics] listen), for the state database counters.
        if let Some(at) = cfg.rfind("listen = \"\"") {
            cfg.replace_range(at..at + "listen = \"\"".len(), "listen = \"127.0.0.1:0\"");
        }
    });
    lab.start_gateway();
    let pid = lab.gateway().pid();
    std::thread::sleep(Duration::from_secs(1));
    let empty_rss = testkit::rss_kib(pid);
    let token = lab.token(&[
        "--auto-approve",
        "--uses",
        &nodes.to_string(),
        "--labels",
        "sim",
    ]);
    let addr = std::fs::read_to_string(lab.gw_home.join("gateway.addr"))?;
    let opts = SwarmOptions {
        nodes,
        endpoints,
        enroll_concurrency: 64,
        threads: 2,
        keep_alive,
        gateway_pid: Some(pid),
        ..Default::default()
    };
    // The simulated nodes' homes (keys, certificates) live in memory where
    // it can: their file writes and fsyncs are the swarm's cost, not the
    // gateway's, and on this machine they outweighed the gateway's.
    let shm = tempfile::tempdir_in("/dev/shm").ok();
    let dir = match &shm {
        Some(d) => d.path().join("swarm"),
        None => lab.dir().join("swarm"),
    };
    let db0 = db_counts(&lab.gw_home)?;
    let (swarm, started) = Swarm::start(&dir, addr.trim(), &token, &opts, Duration::from_secs(600))
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "swarm {nodes}: enrolled in {:.1} s, connected in {:.1} s; settling",
        started.enroll.as_secs_f64(),
        started.connect.as_secs_f64()
    );
    // Settle: the connect burst and first heartbeats out of the way.
    std::thread::sleep(Duration::from_secs(10));
    let r0 = swarm
        .counters
        .reconnects
        .load(std::sync::atomic::Ordering::Relaxed);
    let db1 = db_counts(&lab.gw_home)?;
    let t0 = testkit::cpu_time(pid);
    let w0 = Instant::now();
    std::thread::sleep(window);
    let db2 = db_counts(&lab.gw_home)?;
    let window_s = w0.elapsed().as_secs_f64();
    let cpu = testkit::cpu_time(pid).saturating_sub(t0).as_secs_f64() / w0.elapsed().as_secs_f64()
        * 100.0;
    let rss = testkit::rss_kib(pid);
    let mut list = Vec::new();
    let mut not_connected = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let out = Command::new(bin)
            .arg("--home")
            .arg(&lab.gw_home)
            .args(["node", "list", "--json"])
            .stderr(Stdio::null())
            .output()?;
        list.push(t.elapsed());
        if !out.status.success() {
            bail!("node list failed");
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        not_connected = v
            .as_array()
            .map(|a| a.iter().filter(|n| n["connection"] != "connected").count())
            .unwrap_or(nodes);
    }
    let mut fan_cli = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new(bin)
            .arg("--home")
            .arg(&lab.gw_home)
            .args(["run", "--all", "--label", "sim", "--", "true"])
            .stdout(Stdio::null())
            .output()?;
        fan_cli.push(t.elapsed());
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || !err.contains(&format!("{nodes} ok")) {
            bail!("run --all failed: {err}");
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let fan_open = rt.block_on(fanout_open(&lab.gw_home, nodes, 3))?;
    let db3 = db_counts(&lab.gw_home)?;
    let all = |a: [u64; 3], b: [u64; 3]| (b[0] + b[2]).saturating_sub(a[0] + a[2]) as f64;
    let jobs = (6 * nodes).max(1) as f64;
    let row = Row {
        db_per_enrollment: all(db0, db1) / nodes.max(1) as f64,
        db_idle_per_s: all(db1, db2) / window_s,
        db_per_job: all(db2, db3) / jobs,
        commits_idle_per_s: db2[1].saturating_sub(db1[1]) as f64 / window_s,
        commits_per_job: db3[1].saturating_sub(db2[1]) as f64 / jobs,
        fanout_cli_ms: median_ms(fan_cli),
        fanout_open_ms: median_ms(fan_open),
        nodes,
        enroll_s: started.enroll.as_secs_f64(),
        enroll_gateway_cpu_ms: started.enroll_gateway_cpu.unwrap_or_default().as_secs_f64()
            * 1000.0
            / nodes.max(1) as f64,
        connect_s: started.connect.as_secs_f64(),
        gateway_rss_kib: rss,
        per_node_bytes: rss.saturating_sub(empty_rss) * 1024 / nodes.max(1) as u64,
        gateway_cpu_pct: cpu,
        node_list_ms: median_ms(list),
        not_connected,
        reconnects: swarm
            .counters
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        window_reconnects: 0,
    };
    let row = Row {
        window_reconnects: row.reconnects - r0,
        ..row
    };
    drop(swarm);
    Ok(row)
}

/// Runs every size and prints the table.
pub fn run(
    bin: &Path,
    sizes: &[usize],
    window: Duration,
    endpoints: usize,
    keep_alive: (Duration, Duration),
    json: Option<&Path>,
) -> Result<()> {
    let mut rows = Vec::new();
    for &n in sizes {
        let row = measure(bin, n, window, endpoints, keep_alive)?;
        eprintln!("{row:?}");
        rows.push(row);
    }
    println!(
        "| nodes | enroll all | gateway CPU per enrollment | connect all | gateway RSS | per node | gateway CPU ({}s window) | `node list` | not connected | reconnects (in the window) | `run --all -- true` (fresh CLI / open connection) |",
        window.as_secs()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} s ({:.0}/s) | {:.2} ms | {:.1} s | {:.0} MiB | {:.0} KB | {:.1} % | {:.0} ms | {} | {} ({}) | {:.0} ms / {:.0} ms |",
            r.nodes,
            r.enroll_s,
            r.nodes as f64 / r.enroll_s.max(1e-9),
            r.enroll_gateway_cpu_ms,
            r.connect_s,
            r.gateway_rss_kib as f64 / 1024.0,
            r.per_node_bytes as f64 / 1000.0,
            r.gateway_cpu_pct,
            r.node_list_ms,
            r.not_connected,
            r.reconnects,
            r.window_reconnects,
            r.fanout_cli_ms,
            r.fanout_open_ms
        );
    }
    println!();
    println!(
        "| nodes | DB transactions per enrollment | DB transactions/s, idle | commits/s, idle | DB transactions per job | commits per job |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            r.nodes,
            r.db_per_enrollment,
            r.db_idle_per_s,
            r.commits_idle_per_s,
            r.db_per_job,
            r.commits_per_job
        );
    }
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}
