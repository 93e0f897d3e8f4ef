//! `openclaw-bench`: measures a real lab against ssh and raw quinn on the
//! same machine, in one run, and prints a Markdown table for
//! docs/PERFORMANCE.md. A benchmark, not a test: nothing here asserts a
//! speed.
//!
//! ```text
//! cargo build --release -p openclaw -p bench
//! target/release/openclaw-bench --openclaw target/release/openclaw
//! ```
//!
//! `--swarm 1000,5000,10000` measures a gateway's memory and CPU under that
//! many simulated nodes (see `swarm.rs`).
//!
//! `--ha-output` measures job output throughput with output stored in
//! PostgreSQL against the file store (see `haout.rs`).
//!
//! `--resilience` measures dead-node detection, reconnection after a gateway
//! restart, and bytes lost or duplicated across forced disconnects.
//!
//! ssh figures need `ssh -o BatchMode=yes localhost true` to work (see
//! `scripts/bench-ssh-setup.sh`); without it they are reported as skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;

mod cp;
mod detect;
mod dispatch;
mod dispatch_only;
mod echo;
mod haout;
mod mem;
mod resilience;
mod soak;
mod swarm;
mod thru;

#[derive(Parser)]
struct Args {
    /// The openclaw binary to measure (a release build).
    #[arg(long, default_value = "target/release/openclaw")]
    openclaw: PathBuf,
    /// Runs of `true` to take the median over.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Bytes for the throughput figures.
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// Skip the ssh comparison.
    #[arg(long)]
    no_ssh: bool,
    /// Keys typed for the echo-latency figure.
    #[arg(long, default_value_t = 200)]
    keys: usize,
    /// Measure only keystroke echo latency (openclaw run -t vs ssh -tt).
    #[arg(long)]
    echo_only: bool,
    /// Measure only dispatch: `run -- true` over one open connection
    /// (median, p90, p99) and from a fresh CLI (see dispatch_only.rs).
    #[arg(long)]
    dispatch_only: bool,
    /// Measure failure detection, reconnection and exactly-once output instead.
    #[arg(long)]
    resilience: bool,
    /// SIGKILL trials for --resilience.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Forced disconnects for --resilience.
    #[arg(long, default_value_t = 20)]
    disconnects: usize,
    /// Measure a gateway under simulated nodes instead, for each of these
    /// sizes, e.g. --swarm 1000,5000,10000.
    #[arg(long, value_delimiter = ',')]
    swarm: Vec<usize>,
    /// Steady-state window for --swarm, seconds.
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// UDP endpoints the simulated nodes share, for --swarm.
    #[arg(long, default_value_t = 16)]
    endpoints: usize,
    /// node.toml keep_alive of the simulated nodes, seconds (the agent's default is 1).
    #[arg(long, default_value_t = 1)]
    keep_alive: u64,
    /// node.toml idle_timeout of the simulated nodes, seconds (the agent's default is 3).
    #[arg(long, default_value_t = 3)]
    idle_timeout: u64,
    /// Also write the --swarm figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Measure failure detection with this many simulated nodes instead
    /// (default liveness settings), killing --victims of them at once.
    #[arg(long)]
    detect: Option<usize>,
    /// Nodes killed at once for --detect.
    #[arg(long, default_value_t = 100)]
    victims: usize,
    /// Run a soak for this many seconds instead (3600 for the hour, 300
    /// for a quick check): real agents, a job a second, a chat bot and
    /// the dashboard, RSS and descriptors sampled (see soak.rs).
    #[arg(long)]
    soak: Option<u64>,
    /// Real node agents for --soak.
    #[arg(long, default_value_t = 100)]
    soak_agents: usize,
    /// Seconds between samples for --soak.
    #[arg(long, default_value_t = 60)]
    soak_sample: u64,
    /// Where --soak writes its CSV and chart.
    #[arg(long, default_value = "target/bench")]
    soak_out: PathBuf,
    /// Measure only dispatch latency instead: `--version`, `whoami` and
    /// `run -- true` from fresh processes, `true` over an open connection
    /// and `ssh localhost true`, with a chart of their distributions (see
    /// dispatch.rs).
    #[arg(long)]
    dispatch: bool,
    /// Where --dispatch writes its chart.
    #[arg(long, default_value = "target/bench")]
    dispatch_out: PathBuf,

    /// Measure job output throughput with output in PostgreSQL (an HA
    /// group) against the file store instead (see haout.rs).
    #[arg(long)]
    ha_output: bool,
    /// Bytes of the bulk job for --ha-output.
    #[arg(long, default_value_t = 256 << 20)]
    ha_bytes: u64,
    /// Lines of the line job for --ha-output.
    #[arg(long, default_value_t = 1_000_000)]
    ha_lines: u64,
    /// Rounds per store for --ha-output.
    #[arg(long, default_value_t = 5)]
    ha_rounds: usize,

    /// Measure output throughput instead: loopback and a 1500-MTU link
    /// between network namespaces, into /dev/null and a pipe, against ssh
    /// and raw quinn (see thru.rs; needs root). The chart goes to
    /// --soak-out.
    #[arg(long)]
    thru: bool,
    /// With --thru: let path MTU discovery on every hop grow to this many
    /// bytes of UDP payload (default 1452, quinn's and the mesh's), to
    /// measure the lever.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1200..=6550))]
    thru_udp_payload: Option<u16>,
    /// Internal: raw quinn's receiver for --thru (DIR|BIND|BYTES|UDP_MAX).
    #[arg(long, hide = true)]
    thru_quinn_recv: Option<String>,
    /// Internal: raw quinn's sender for --thru (DIR|BIND|BYTES|UDP_MAX).
    #[arg(long, hide = true)]
    thru_quinn_send: Option<String>,

    /// Measure the gateway's memory per real node agent at default
    /// settings instead, with this many agents (see mem.rs).
    #[arg(long)]
    agents_mem: Option<usize>,
    /// Seconds to let --agents-mem settle before the second sample.
    #[arg(long, default_value_t = 20)]
    settle: u64,
    /// Internal: run a swarm for --detect (DIR|ADDR|TOKEN|N|PREFIX).
    #[arg(long, hide = true)]
    swarm_child: Option<String>,
}

struct Lab {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    gw: PathBuf,
    /// The directory the node allows copies in (`allowed_paths`).
    cp_area: PathBuf,
    /// A local scratch directory for the copy figures.
    scratch: PathBuf,
    children: Vec<std::process::Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Lab {
    fn cmd(&self, home: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--home").arg(home).env_remove("OPENCLAW_HOME");
        c
    }

    fn start(bin: &Path) -> Result<Lab> {
        let dir = tempfile::tempdir()?;
        let gw = dir.path().join("gw");
        let node = dir.path().join("node");
        let cp_area = std::fs::canonicalize(dir.path())?.join("cp-area");
        std::fs::create_dir(&cp_area)?;
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch)?;
        let mut lab = Lab {
            bin: bin.to_path_buf(),
            gw: gw.clone(),
            cp_area: cp_area.clone(),
            scratch,
            children: vec![],
            _dir: dir,
        };
        let ok = |mut c: Command| -> Result<String> {
            let out = c.output()?;
            if !out.status.success() {
                bail!("{:?} failed: {}", c, String::from_utf8_lossy(&out.stderr));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let mut c = lab.cmd(&gw);
        c.args(["gateway", "init", "--listen", "127.0.0.1:0"]);
        ok(c)?;
        let mut c = lab.cmd(&gw);
        c.args(["gateway", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.children.push(c.spawn()?);
        wait(|| gw.join("gateway.addr").exists())?;
        wait(|| {
            let mut c = lab.cmd(&gw);
            c.arg("whoami").stdout(Stdio::null()).stderr(Stdio::null());
            c.status().is_ok_and(|s| s.success())
        })?;
        let mut c = lab.cmd(&gw);
        c.args(["token", "create", "--auto-approve"]);
        let token = ok(c)?;
        let mut c = lab.cmd(&node);
        // A benchmark on one machine: jobs run as the benchmark's user.
        c.args([
            "node",
            "enroll",
            "--token",
            &token,
            "--name",
            "bench-node",
            "--allow-jobs-as-agent-user",
        ]);
        ok(c)?;
        // The forward figure reaches a port of this machine's loopback.
        let toml = node.join("node.toml");
        let text = std::fs::read_to_string(&toml)?;
        std::fs::write(
            &toml,
            text.replace(
                "forward_ports = []",
                &format!("forward_ports = [\"{FORWARD_PORT}\"]"),
            )
            .replace(
                "allowed_paths = []",
                &format!("allowed_paths = [{:?}]", cp_area.display().to_string()),
            ),
        )?;
        let mut c = lab.cmd(&node);
        c.args(["node", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.children.push(c.spawn()?);
        wait(|| {
            let mut c = lab.cmd(&gw);
            c.args(["run", "--node", "bench-node", "--", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c.status().is_ok_and(|s| s.success())
        })?;
        Ok(lab)
    }
}

/// The node-side port of the forward figure (a listener of this program).
const FORWARD_PORT: u16 = 47_913;

/// Runs `c` with `bytes` of zeros written to its stdin; returns how long
/// it took to exit and what it printed.
fn pipe_in(mut c: Command, bytes: u64) -> Result<(Duration, String)> {
    use std::io::Write as _;
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let t = Instant::now();
    let mut child = c.spawn()?;
    let mut w = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let buf = vec![0u8; 1 << 16];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            w.write_all(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    });
    let out = child.wait_with_output()?;
    let took = t.elapsed();
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
    if !out.status.success() {
        bail!("{c:?} failed");
    }
    Ok((
        took,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// Serves `bytes` of zeros to every connection on 127.0.0.1:`port`.
fn serve_zeros(port: u16, bytes: u64) -> Result<()> {
    use std::io::Write as _;
    let l = std::net::TcpListener::bind(("127.0.0.1", port))?;
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let buf = vec![0u8; 1 << 16];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
        }
    });
    Ok(())
}

/// Connects to 127.0.0.1:`local` (retrying while the tunnel comes up) and
/// times reading `bytes` from it.
fn time_read(local: u16, bytes: u64) -> Result<Duration> {
    use std::io::Read as _;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = Instant::now();
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", local)) {
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0u64;
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            if got == bytes {
                return Ok(t.elapsed());
            }
        }
        if Instant::now() > deadline {
            bail!("no tunnel to 127.0.0.1:{local} carried {bytes} bytes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait(mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        if Instant::now() > deadline {
            bail!("lab did not come up");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Times `make()` `runs` times; returns sorted durations.
fn time_runs(runs: usize, mut make: impl FnMut() -> Command) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut c = make();
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let t = Instant::now();
        let st = c.status()?;
        out.push(t.elapsed());
        if !st.success() {
            bail!("{c:?} failed");
        }
    }
    out.sort();
    Ok(out)
}

fn median(v: &[Duration]) -> Duration {
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn ssh_works() -> bool {
    Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "localhost",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ssh(cmd: &str) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-o", "BatchMode=yes", "localhost", cmd]);
    c
}

/// A throwaway CA with a server certificate and an admin client
/// credential, for the raw quinn figures (here and in thru.rs).
pub(crate) struct RawPki {
    pub ca_pem: String,
    chain: String,
    server_key: String,
    pub client_pem: String,
    pub client_key: String,
}

impl RawPki {
    pub fn new() -> Result<RawPki> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let (ca_pem, ca_key) = pki::generate_ca("bench", now)?;
        let ca = pki::Ca::load(&ca_pem, &ca_key)?;
        let (server, server_key) = ca.issue_server("bench", 3600, now)?;
        let ckey = pki::generate_key()?;
        let ccert = ca.issue_client(
            "bench-client",
            proto::Role::Admin,
            &ckey.spki_der,
            3600,
            now,
        )?;
        Ok(RawPki {
            chain: format!("{}{}", server.pem, ca_pem),
            ca_pem,
            server_key,
            client_pem: ccert.pem,
            client_key: ckey.key_pem,
        })
    }

    /// The mesh's server TLS with `transport`.
    pub fn server_config(&self, transport: quinn::TransportConfig) -> Result<quinn::ServerConfig> {
        Ok(mesh::tls::server_config(
            &self.chain,
            &self.server_key,
            &self.ca_pem,
            Arc::new(mesh::RevokedSerials::default()),
            transport,
        )?)
    }
}

/// Writes `bytes` zeros to `send` in 256 KiB writes, then finishes it.
pub(crate) async fn send_zeros(send: &mut quinn::SendStream, bytes: u64) -> Result<()> {
    let buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(buf.len() as u64) as usize;
        send.write_all(&buf[..n]).await?;
        sent += n as u64;
    }
    send.finish()?;
    Ok(())
}

/// One sender, one receiver, one QUIC stream over loopback, the same TLS
/// and transport settings as the mesh, `bytes` of zeros.
async fn raw_quinn(bytes: u64) -> Result<Duration> {
    let pki = RawPki::new()?;
    let server_cfg = pki.server_config(mesh::tls::server_transport(Duration::from_secs(10))?)?;
    let endpoint = mesh::server_endpoint(server_cfg, "127.0.0.1:0".parse()?)?;
    let addr = endpoint.local_addr()?;
    let receiver = tokio::spawn(async move {
        let conn = endpoint.accept().await.context("no connection")?.await?;
        // As the gateway does for a node once its certificate is checked.
        mesh::tls::widen_limits(&conn, proto::Role::Node, mesh::tls::NODE_WINDOW);
        let mut recv = conn.accept_uni().await?;
        let mut total = 0u64;
        while let Some(chunk) = recv.read_chunk(1 << 20, true).await? {
            total += chunk.bytes.len() as u64;
        }
        conn.close(0u32.into(), b"");
        anyhow::Ok(total)
    });
    let client_cfg = mesh::tls::session_client_config(
        &pki.ca_pem,
        &pki.client_pem,
        &pki.client_key,
        mesh::tls::client_transport(Duration::from_secs(1), Duration::from_secs(10))?,
    )?;
    let client = mesh::client_endpoint(addr).map_err(anyhow::Error::msg)?;
    let conn = client
        .connect_with(client_cfg, addr, proto::GATEWAY_SERVER_NAME)?
        .await?;
    let start = Instant::now();
    let mut send = conn.open_uni().await?;
    send_zeros(&mut send, bytes).await?;
    let got = receiver.await??;
    let took = start.elapsed();
    if got != bytes {
        bail!("raw quinn received {got} of {bytes} bytes");
    }
    Ok(took)
}

/// `runs` times `true` on bench-node over one client connection, from the
/// JobRun request to the job's end; sorted.
async fn open_connection_true(gw: &Path, runs: usize) -> Result<Vec<Duration>> {
    let client = client::Client::connect(&mesh::Home::new(gw))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let spec = proto::JobSpec {
            node: Some("bench-node".into()),
            argv: vec!["true".into()],
            ..Default::default()
        };
        let t = Instant::now();
        let mut recv = client
            .open(proto::Request::JobRun(spec))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        loop {
            match client.next_event(&mut recv).await {
                Ok(Some(proto::JobEvent::End(j))) if j.exit_code == Some(0) => break,
                Ok(Some(proto::JobEvent::End(j))) => bail!("true ended {}", j.state),
                Ok(Some(proto::JobEvent::Error(e))) => bail!("{}", e.message),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => bail!("lost the gateway"),
            }
        }
        out.push(t.elapsed());
    }
    client.close().await;
    out.sort();
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(spec) = &args.swarm_child {
        let parts: Vec<&str> = spec.split('|').collect();
        let [dir, addr, token, n, prefix] = parts[..] else {
            bail!("--swarm-child takes DIR|ADDR|TOKEN|N|PREFIX");
        };
        return detect::child(Path::new(dir), addr, token, n.parse()?, prefix);
    }
    if let Some(spec) = &args.thru_quinn_recv {
        return thru::quinn_child(spec, true);
    }
    if let Some(spec) = &args.thru_quinn_send {
        return thru::quinn_child(spec, false);
    }
    if args.thru {
        return thru::run(
            &args.openclaw,
            args.bytes,
            args.runs.min(3),
            &args.soak_out,
            args.thru_udp_payload,
        );
    }
    if let Some(n) = args.detect {
        return detect::run(&args.openclaw, n, args.victims);
    }
    if args.dispatch {
        return dispatch::run(&args.openclaw, args.runs, args.no_ssh, &args.dispatch_out);
    }
    if let Some(n) = args.agents_mem {
        return mem::run(&args.openclaw, n, Duration::from_secs(args.settle));
    }
    if let Some(secs) = args.soak {
        return soak::run(
            &args.openclaw,
            &soak::SoakOptions {
                secs,
                agents: args.soak_agents.max(1),
                sample_every: args.soak_sample.max(1),
                out: args.soak_out.clone(),
            },
        );
    }
    if !args.swarm.is_empty() {
        return swarm::run(
            &args.openclaw,
            &args.swarm,
            Duration::from_secs(args.window),
            args.endpoints,
            (
                Duration::from_secs(args.keep_alive),
                Duration::from_secs(args.idle_timeout),
            ),
            args.json.as_deref(),
        );
    }
    if args.ha_output {
        return haout::run(&args.openclaw, args.ha_bytes, args.ha_lines, args.ha_rounds);
    }
    if args.resilience {
        return resilience::run(&args.openclaw, args.trials, args.disconnects);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let lab = Lab::start(&args.openclaw)?;
    if args.dispatch_only {
        return dispatch_only::run(&lab, &rt, args.runs);
    }
    let use_ssh = !args.no_ssh && ssh_works();
    // 0. Keystroke echo through an interactive session (ssh -tt beside it).
    let echo_oc = echo::latency(
        {
            let mut c = lab.cmd(&lab.gw);
            c.args(["run", "-t", "--node", "bench-node", "--", "cat"]);
            c
        },
        args.keys,
    )?;
    let echo_ssh = if use_ssh {
        let mut c = Command::new("ssh");
        c.args(["-tt", "-o", "BatchMode=yes", "localhost", "cat"]);
        Some(echo::latency(c, args.keys)?)
    } else {
        None
    };
    let echo_row = || {
        println!(
            "| keystroke echo, `run -t -- cat` (ssh -tt), {} keys: median (p99) | {} ({}) | {} | {} |",
            args.keys,
            ms(echo::percentile(&echo_oc, 50)),
            ms(echo::percentile(&echo_oc, 99)),
            echo_ssh
                .as_deref()
                .map(|v| format!(
                    "{} ({})",
                    ms(echo::percentile(v, 50)),
                    ms(echo::percentile(v, 99))
                ))
                .unwrap_or_else(|| "skipped".into()),
            echo_ssh
                .as_deref()
                .map(|v| format!(
                    "{:.2}x ssh",
                    echo::percentile(&echo_oc, 50).as_secs_f64()
                        / echo::percentile(v, 50).as_secs_f64().max(1e-9)
                ))
                .unwrap_or_else(|| "-".into())
        );
    };
    if args.echo_only {
        println!("| measure | openclaw | ssh localhost | ratio |");
        println!("|---|---|---|---|");
        echo_row();
        return Ok(());
    }

    // 1. Latency of a remote `true` from a fresh CLI process.
    let oc = time_runs(args.runs, || {
        let mut c = lab.cmd(&lab.gw);
        c.args(["run", "--node", "bench-node", "--", "true"]);
        c
    })?;
    // Admin commands from a fresh process: they should cost no more than run.
    let whoami = time_runs(args.runs, || {
        let mut c = lab.cmd(&lab.gw);
        c.arg("whoami");
        c
    })?;
    let node_list = time_runs(args.runs, || {
        let mut c = lab.cmd(&lab.gw);
        c.args(["node", "list"]);
        c
    })?;
    let ssh_true = if use_ssh {
        Some(time_runs(args.runs.min(20), || ssh("true"))?)
    } else {
        None
    };

    // 1b. The same over one open client connection: submit to exit code.
    let open_conn = rt.block_on(open_connection_true(&lab.gw, args.runs * 3))?;

    // 2. Throughput of `head -c N /dev/zero` into /dev/null.
    let head = format!("head -c {} /dev/zero", args.bytes);
    let t = Instant::now();
    let st = lab
        .cmd(&lab.gw)
        .args([
            "run",
            "--node",
            "bench-node",
            "--",
            "head",
            "-c",
            &args.bytes.to_string(),
            "/dev/zero",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let oc_tp = t.elapsed();
    if !st.success() {
        bail!("openclaw throughput run failed");
    }
    let ssh_tp = if use_ssh {
        let t = Instant::now();
        ssh(&head).stdout(Stdio::null()).status()?;
        Some(t.elapsed())
    } else {
        None
    };
    let raw = rt.block_on(raw_quinn(args.bytes))?;

    // 3. Standard input: N bytes into `wc -c` on the node.
    let mut c = lab.cmd(&lab.gw);
    c.args(["run", "--node", "bench-node", "--", "wc", "-c"]);
    let (oc_in, counted) = pipe_in(c, args.bytes)?;
    if counted != args.bytes.to_string() {
        bail!(
            "the job counted {counted} bytes of input, not {}",
            args.bytes
        );
    }
    let ssh_in = if use_ssh {
        Some(pipe_in(ssh("wc -c"), args.bytes)?.0)
    } else {
        None
    };

    // 4. A forwarded TCP connection carrying N bytes back (ssh -L beside it).
    serve_zeros(FORWARD_PORT, args.bytes)?;
    let fwd_local = 47_914;
    let mut fwd = lab.cmd(&lab.gw);
    fwd.args([
        "forward",
        "bench-node",
        &format!("{fwd_local}:{FORWARD_PORT}"),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut fwd = fwd.spawn()?;
    let oc_fwd = time_read(fwd_local, args.bytes);
    let _ = fwd.kill();
    let _ = fwd.wait();
    let oc_fwd = oc_fwd?;
    let ssh_fwd = if use_ssh {
        let ssh_local = 47_915;
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes", "-N", "-L"])
            .arg(format!("{ssh_local}:127.0.0.1:{FORWARD_PORT}"))
            .arg("localhost")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut tunnel = c.spawn()?;
        let took = time_read(ssh_local, args.bytes);
        let _ = tunnel.kill();
        let _ = tunnel.wait();
        Some(took?)
    } else {
        None
    };

    // 5. `openclaw cp` against scp: one big file, many small ones.
    let cp_rows = cp::rows(
        || lab.cmd(&lab.gw),
        "bench-node",
        &lab.cp_area,
        &lab.scratch,
        args.bytes,
        use_ssh,
    )?;

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "Machine: {cpus} CPUs; openclaw binary {}",
        args.openclaw.display()
    );
    println!();
    println!("| measure | openclaw | ssh localhost | ratio |");
    println!("|---|---|---|---|");
    let ssh_med = ssh_true.as_deref().map(median);
    println!(
        "| `run -- true`, median of {} fresh CLI runs | {} (p90 {}) | {} | {} |",
        args.runs,
        ms(median(&oc)),
        ms(oc[oc.len() * 9 / 10]),
        ssh_med.map(ms).unwrap_or_else(|| "skipped".into()),
        ssh_med
            .map(|s| format!("{:.0}x faster", s.as_secs_f64() / median(&oc).as_secs_f64()))
            .unwrap_or_else(|| "-".into())
    );
    println!(
        "| `run -- true` over one open connection, median of {} (p90) | {} ({}) | | {:.0}x faster than a fresh process |",
        open_conn.len(),
        ms(median(&open_conn)),
        ms(open_conn[open_conn.len() * 9 / 10]),
        median(&oc).as_secs_f64() / median(&open_conn).as_secs_f64().max(1e-9)
    );
    for (what, v) in [("`whoami`", &whoami), ("`node list`", &node_list)] {
        println!(
            "| {what}, median of {} fresh CLI runs | {} (p90 {}) | | {:.2}x `run -- true` |",
            args.runs,
            ms(median(v)),
            ms(v[v.len() * 9 / 10]),
            median(v).as_secs_f64() / median(&oc).as_secs_f64()
        );
    }
    println!(
        "| `{head}` > /dev/null | {:.0} MB/s | {} | {} |",
        mbps(args.bytes, oc_tp),
        ssh_tp
            .map(|d| format!("{:.0} MB/s", mbps(args.bytes, d)))
            .unwrap_or_else(|| "skipped".into()),
        ssh_tp
            .map(|d| format!("{:.2}x ssh", d.as_secs_f64() / oc_tp.as_secs_f64()))
            .unwrap_or_else(|| "-".into())
    );
    for (what, ours, theirs) in [
        (
            format!("{} bytes of stdin into `run -- wc -c`", args.bytes),
            oc_in,
            ssh_in,
        ),
        (
            format!("{} bytes back through `forward` (ssh -L)", args.bytes),
            oc_fwd,
            ssh_fwd,
        ),
    ] {
        println!(
            "| {what} | {:.0} MB/s | {} | {} |",
            mbps(args.bytes, ours),
            theirs
                .map(|d| format!("{:.0} MB/s", mbps(args.bytes, d)))
                .unwrap_or_else(|| "skipped".into()),
            theirs
                .map(|d| format!("{:.2}x ssh", d.as_secs_f64() / ours.as_secs_f64()))
                .unwrap_or_else(|| "-".into())
        );
    }
    for row in &cp_rows {
        println!("{row}");
    }
    echo_row();
    println!(
        "| raw quinn, one hop, one stream | {:.0} MB/s | | openclaw = {:.0}% of raw quinn |",
        mbps(args.bytes, raw),
        100.0 * raw.as_secs_f64() / oc_tp.as_secs_f64()
    );
    Ok(())
}
