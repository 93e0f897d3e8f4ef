//! `--thru`: output throughput against ssh and raw quinn, on loopback and
//! over a 1500-byte-MTU link between network namespaces (issue 25, item 3).
//!
//! Each figure is `head -c N /dev/zero` on the node, read by the user's
//! side two ways: into /dev/null and into a pipe (`| wc -c`, counted).
//! The lab on a link is three namespaces this program makes and removes:
//!
//! ```text
//!  thru-c 10.201.1.1 ──veth── 10.201.1.2 thru-g 10.201.2.1 ──veth── 10.201.2.2 thru-n
//!  (CLI, ssh client,          (gateway, routes                  (node agent, sshd,
//!   raw quinn receiver)        between the two links)            raw quinn sender)
//! ```
//!
//! Both veth pairs have MTU 1500. The mesh's bytes go node → gateway → CLI
//! (one crossing of each link); ssh's and raw quinn's go node's namespace →
//! CLI's namespace straight through the gateway's namespace, which routes
//! them: the same two links. Needs root (namespaces) and `sshd`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{mbps, wait};

/// Namespace names: a prefix no other lab uses.
const NS: [&str; 3] = ["thru-c", "thru-g", "thru-n"];
const GW_ADDR: &str = "10.201.2.1:7443";
const NODE_IP: &str = "10.201.2.2";
const CLI_IP: &str = "10.201.1.1";
const QUINN_PORT: u16 = 7444;
const MTU: u32 = 1500;

/// One row of the table and one group of the chart.
struct Row {
    path: &'static str,
    sink: &'static str,
    openclaw: f64,
    ssh: Option<f64>,
    raw_quinn: f64,
}

/// Runs the whole measurement; prints a Markdown table and writes
/// `thru.svg` (or `thru-udpN.svg`) under `out`. `udp_max` caps path MTU
/// discovery on every hop (gateway.toml, node.toml and raw quinn alike),
/// for measuring what larger datagrams give.
pub fn run(bin: &Path, bytes: u64, runs: usize, out: &Path, udp_max: Option<u16>) -> Result<()> {
    let me = std::env::current_exe()?;
    let bin = std::fs::canonicalize(bin)?;
    let runs = runs.max(1);
    let mut rows = Vec::new();
    for site in [Site::Loopback, Site::Link] {
        let lab = MeshLab::up(site, &bin, udp_max)?;
        let mut raw = Duration::MAX;
        for _ in 0..runs {
            let (took, stats) = lab.raw_quinn(&me, bytes, udp_max)?;
            println!("raw quinn, {}: {stats}", site.name());
            raw = raw.min(took);
        }
        for sink in [Sink::Null, Sink::Pipe] {
            let oc = best(runs, || {
                let mut c = site.cmd(0, &bin);
                c.arg("--home")
                    .arg(&lab.gw)
                    .args(["run", "--node", "thru-node", "--"])
                    .args(head(bytes));
                sink.time(c, bytes)
            })?;
            let ssh = if lab.ssh {
                Some(best(runs, || {
                    let mut c = site.cmd(0, Path::new("ssh"));
                    c.args([
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "StrictHostKeyChecking=no",
                        "-o",
                        "UserKnownHostsFile=/dev/null",
                        "-o",
                        "LogLevel=ERROR",
                        site.ssh_host(),
                    ])
                    .arg(head(bytes).join(" "));
                    sink.time(c, bytes)
                })?)
            } else {
                None
            };
            rows.push(Row {
                path: site.name(),
                sink: sink.name(),
                openclaw: mbps(bytes, oc),
                ssh: ssh.map(|d| mbps(bytes, d)),
                raw_quinn: mbps(bytes, raw),
            });
        }
    }
    println!(
        "\n| {} bytes of output, best of {runs}{} | openclaw | ssh | raw quinn, one hop | openclaw / ssh | openclaw / raw quinn |",
        bytes,
        udp_max
            .map(|m| format!(", UDP payload at most {m}"))
            .unwrap_or_default()
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {}, {} | {:.0} MB/s | {} | {:.0} MB/s | {} | {:.0} % |",
            r.path,
            r.sink,
            r.openclaw,
            r.ssh
                .map(|s| format!("{s:.0} MB/s"))
                .unwrap_or_else(|| "skipped".into()),
            r.raw_quinn,
            r.ssh
                .map(|s| format!("{:.2}x", r.openclaw / s))
                .unwrap_or_else(|| "-".into()),
            100.0 * r.openclaw / r.raw_quinn
        );
    }
    std::fs::create_dir_all(out)?;
    let svg = out.join(match udp_max {
        Some(m) => format!("thru-udp{m}.svg"),
        None => "thru.svg".into(),
    });
    chart(&svg, &rows)?;
    println!("\nchart: {}", svg.display());
    Ok(())
}

/// The fastest of `runs` timings (the least disturbed by the other work
/// on a shared machine).
fn best(runs: usize, mut f: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let mut b = Duration::MAX;
    for _ in 0..runs {
        b = b.min(f()?);
    }
    Ok(b)
}

fn head(bytes: u64) -> Vec<String> {
    vec![
        "head".into(),
        "-c".into(),
        bytes.to_string(),
        "/dev/zero".into(),
    ]
}

#[derive(Clone, Copy)]
enum Sink {
    /// Standard output is /dev/null.
    Null,
    /// Standard output is a pipe that a `wc -c` reads and counts.
    Pipe,
}

impl Sink {
    fn name(self) -> &'static str {
        match self {
            Sink::Null => "into /dev/null",
            Sink::Pipe => "into a pipe (| wc -c)",
        }
    }

    /// Runs `c` with its output going to this sink; the time until both it
    /// and the reader have exited. A pipe's count must be `bytes`.
    fn time(self, mut c: Command, bytes: u64) -> Result<Duration> {
        c.stderr(Stdio::null()).stdin(Stdio::null());
        match self {
            Sink::Null => {
                c.stdout(Stdio::null());
                let t = Instant::now();
                let st = c.status()?;
                let took = t.elapsed();
                if !st.success() {
                    bail!("{c:?} failed: {st}");
                }
                Ok(took)
            }
            Sink::Pipe => {
                c.stdout(Stdio::piped());
                let t = Instant::now();
                let mut child = c.spawn()?;
                let out = child.stdout.take().context("no stdout pipe")?;
                let wc = Command::new("wc")
                    .arg("-c")
                    .stdin(out)
                    .stdout(Stdio::piped())
                    .spawn()?;
                let counted = wc.wait_with_output()?;
                let st = child.wait()?;
                let took = t.elapsed();
                let n: u64 = String::from_utf8_lossy(&counted.stdout)
                    .trim()
                    .parse()
                    .context("wc -c printed no number")?;
                if !st.success() || n != bytes {
                    bail!("{c:?}: {st}, wc counted {n} of {bytes} bytes");
                }
                Ok(took)
            }
        }
    }
}

/// Where a lab runs: everything on this machine's loopback, or the three
/// namespaces of the module docs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Site {
    Loopback,
    Link,
}

impl Site {
    fn name(self) -> &'static str {
        match self {
            Site::Loopback => "loopback",
            Site::Link => "1500-MTU link",
        }
    }

    /// `program` in the lab's namespace `ns` (0 CLI, 1 gateway, 2 node).
    fn cmd(self, ns: usize, program: &Path) -> Command {
        match self {
            Site::Loopback => Command::new(program),
            Site::Link => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", NS[ns]]).arg(program);
                c
            }
        }
    }

    fn ssh_host(self) -> &'static str {
        match self {
            Site::Loopback => "localhost",
            Site::Link => NODE_IP,
        }
    }
}

/// A gateway and a node (and on the link, an sshd in the node's
/// namespace); everything it started and made is removed on drop.
struct MeshLab {
    site: Site,
    dir: tempfile::TempDir,
    gw: PathBuf,
    children: Vec<std::process::Child>,
    sshd_pid: Option<PathBuf>,
    /// ssh to the node's side works.
    ssh: bool,
}

impl Drop for MeshLab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid_file) = &self.sshd_pid
            && let Ok(pid) = std::fs::read_to_string(pid_file)
        {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        if self.site == Site::Link {
            remove_namespaces();
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let st = Command::new("ip").args(args).status()?;
    if !st.success() {
        bail!("ip {} failed", args.join(" "));
    }
    Ok(())
}

fn ns_ip(ns: usize, args: &[&str]) -> Result<()> {
    let mut all = vec!["netns", "exec", NS[ns], "ip"];
    all.extend_from_slice(args);
    ip(&all)
}

fn remove_namespaces() {
    for ns in NS {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
}

/// The three namespaces and their two veth pairs.
fn make_namespaces() -> Result<()> {
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
    {
        bail!("--thru makes network namespaces: run it as root");
    }
    remove_namespaces();
    for ns in NS {
        ip(&["netns", "add", ns])?;
    }
    for k in 0..NS.len() {
        ns_ip(k, &["link", "set", "lo", "up"])?;
    }
    let mtu = MTU.to_string();
    // Both ends made inside the namespaces: nothing appears on the host.
    for (a, a_if, b, b_if) in [(0, "eth0", 1, "eth0"), (1, "eth1", 2, "eth0")] {
        ip(&[
            "link", "add", "name", a_if, "netns", NS[a], "mtu", &mtu, "type", "veth", "peer",
            "name", b_if, "netns", NS[b], "mtu", &mtu,
        ])?;
    }
    for (ns, addr, dev) in [
        (0, "10.201.1.1/24", "eth0"),
        (1, "10.201.1.2/24", "eth0"),
        (1, "10.201.2.1/24", "eth1"),
        (2, "10.201.2.2/24", "eth0"),
    ] {
        ns_ip(ns, &["addr", "add", addr, "dev", dev])?;
        ns_ip(ns, &["link", "set", dev, "up"])?;
    }
    ns_ip(0, &["route", "add", "default", "via", "10.201.1.2"])?;
    ns_ip(2, &["route", "add", "default", "via", "10.201.2.1"])?;
    let st = Site::Link
        .cmd(1, Path::new("sysctl"))
        .args(["-qw", "net.ipv4.ip_forward=1"])
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("cannot turn on forwarding in {}", NS[1]);
    }
    Ok(())
}

/// Replaces `from` with `to` in the file at `path`, which must contain it.
fn edit(path: &Path, from: &str, to: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    if !text.contains(from) {
        bail!("{} has no line {from:?} to edit", path.display());
    }
    std::fs::write(path, text.replacen(from, to, 1))?;
    Ok(())
}

const SSH_OPTS: [&str; 8] = [
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
];

impl MeshLab {
    fn up(site: Site, bin: &Path, udp_max: Option<u16>) -> Result<MeshLab> {
        if site == Site::Link {
            make_namespaces()?;
        }
        let dir = tempfile::tempdir()?;
        let mut lab = MeshLab {
            site,
            gw: dir.path().join("gw"),
            dir,
            children: vec![],
            sshd_pid: None,
            ssh: false,
        };
        let ok = |mut c: Command| -> Result<String> {
            let out = c.output()?;
            if !out.status.success() {
                bail!("{:?} failed: {}", c, String::from_utf8_lossy(&out.stderr));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let oc = |ns: usize, home: &Path| {
            let mut c = site.cmd(ns, bin);
            c.arg("--home").arg(home).env_remove("OPENCLAW_HOME");
            c
        };
        let gw = lab.gw.clone();
        let node = lab.dir.path().join("node");
        let mut c = oc(1, &gw);
        c.args(["gateway", "init", "--listen"]);
        match site {
            Site::Loopback => c.arg("127.0.0.1:0"),
            Site::Link => c.args([GW_ADDR, "--advertise", GW_ADDR]),
        };
        ok(c)?;
        if let Some(m) = udp_max {
            edit(
                &gw.join("gateway.toml"),
                "# udp_payload_max = 1452",
                &format!("udp_payload_max = {m}"),
            )?;
        }
        let mut c = oc(1, &gw);
        c.args(["gateway", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.children.push(c.spawn()?);
        wait(|| {
            let mut c = oc(0, &gw);
            c.arg("whoami").stdout(Stdio::null()).stderr(Stdio::null());
            c.status().is_ok_and(|s| s.success())
        })?;
        let mut c = oc(1, &gw);
        c.args(["token", "create", "--auto-approve"]);
        let token = ok(c)?;
        let mut c = oc(2, &node);
        // A benchmark: jobs run as the benchmark's user.
        c.args([
            "node",
            "enroll",
            "--token",
            &token,
            "--name",
            "thru-node",
            "--allow-jobs-as-agent-user",
        ]);
        ok(c)?;
        if let Some(m) = udp_max {
            edit(
                &node.join("node.toml"),
                "# udp_payload_max = 1452",
                &format!("udp_payload_max = {m}"),
            )?;
        }
        let mut c = oc(2, &node);
        c.args(["node", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.children.push(c.spawn()?);
        wait(|| {
            let mut c = oc(0, &gw);
            c.args(["run", "--node", "thru-node", "--", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c.status().is_ok_and(|s| s.success())
        })?;
        match site {
            Site::Loopback => lab.ssh = crate::ssh_works(),
            Site::Link => lab.start_sshd(),
        }
        if !lab.ssh {
            eprintln!(
                "ssh to {} does not work: ssh figures skipped (scripts/bench-ssh-setup.sh)",
                site.ssh_host()
            );
        }
        Ok(lab)
    }

    /// sshd in the node's namespace, with the host's keys and config; the
    /// client trusts the key scripts/bench-ssh-setup.sh made.
    fn start_sshd(&mut self) {
        let pid_file = self.dir.path().join("sshd.pid");
        let _ = std::fs::create_dir_all("/run/sshd");
        let st = self
            .site
            .cmd(2, Path::new("/usr/sbin/sshd"))
            .arg("-o")
            .arg(format!("PidFile={}", pid_file.display()))
            .arg("-o")
            .arg(format!("ListenAddress={NODE_IP}"))
            .status();
        if !st.is_ok_and(|s| s.success()) {
            return;
        }
        self.sshd_pid = Some(pid_file);
        self.ssh = wait(|| {
            let mut c = self.site.cmd(0, Path::new("ssh"));
            c.args(SSH_OPTS)
                .args([NODE_IP, "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c.status().is_ok_and(|s| s.success())
        })
        .is_ok();
    }

    /// Raw quinn: a receiver where the CLI runs, a sender where the node
    /// runs (the node sends output), one stream of `bytes`, the mesh's TLS
    /// and transport settings. The time and what each side counted.
    fn raw_quinn(&self, me: &Path, bytes: u64, udp_max: Option<u16>) -> Result<(Duration, String)> {
        let dir = self.dir.path().join("quinn");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        let bind = match self.site {
            Site::Loopback => "127.0.0.1:0".to_string(),
            Site::Link => format!("{CLI_IP}:{QUINN_PORT}"),
        };
        let max = udp_max.unwrap_or(mesh::tls::UDP_PAYLOAD_DEFAULT);
        let spec = format!("{}|{bind}|{bytes}|{max}", dir.display());
        let mut rx = self.site.cmd(0, me);
        rx.arg("--thru-quinn-recv")
            .arg(&spec)
            .stdout(Stdio::piped());
        let rx = rx.spawn()?;
        wait(|| dir.join("ready").exists())?;
        let mut tx = self.site.cmd(2, me);
        tx.arg("--thru-quinn-send")
            .arg(&spec)
            .stdout(Stdio::piped());
        let tx = tx.output()?;
        let rx = rx.wait_with_output()?;
        if !tx.status.success() || !rx.status.success() {
            bail!("raw quinn failed");
        }
        let rx = String::from_utf8_lossy(&rx.stdout);
        let (nanos, rx_stats) = rx.trim().split_once(' ').unwrap_or((rx.trim(), ""));
        let nanos: u64 = nanos
            .parse()
            .context("the raw quinn receiver printed no time")?;
        Ok((
            Duration::from_nanos(nanos),
            format!(
                "sender {}; receiver {rx_stats}",
                String::from_utf8_lossy(&tx.stdout).trim()
            ),
        ))
    }
}

/// The two halves of raw quinn, each in its own process (and namespace).
/// `spec` is `DIR|BIND|BYTES|UDP_MAX`; the receiver binds BIND, writes the
/// certificates and its address under DIR, and prints the nanoseconds
/// from the stream's first byte to its last; each side prints its
/// datagram counts.
pub fn quinn_child(spec: &str, receiver: bool) -> Result<()> {
    let parts: Vec<&str> = spec.split('|').collect();
    let [dir, bind, bytes, max] = parts[..] else {
        bail!("--thru-quinn-* takes DIR|BIND|BYTES|UDP_MAX");
    };
    let dir = Path::new(dir);
    let bind: std::net::SocketAddr = bind.parse()?;
    let bytes: u64 = bytes.parse()?;
    let max: u16 = max.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if receiver {
        let (took, stats) = rt.block_on(quinn_receive(dir, bind, bytes, max))?;
        println!("{} {stats}", took.as_nanos());
    } else {
        let stats = rt.block_on(quinn_send(dir, bytes, max))?;
        println!("{stats}");
    }
    Ok(())
}

/// What a connection's UDP counters say about offloads: datagrams per
/// system call (GSO when sending, GRO when receiving) and the path MTU.
fn udp_stats(conn: &quinn::Connection, sending: bool) -> String {
    let s = conn.stats();
    let u = if sending { s.udp_tx } else { s.udp_rx };
    format!(
        "{} datagrams in {} calls ({:.1} a call), {} bytes a datagram, path MTU {}, {} packets lost, {} congestion events, {} of {} MTU probes lost, {} black holes",
        u.datagrams,
        u.ios,
        u.datagrams as f64 / u.ios.max(1) as f64,
        u.bytes / u.datagrams.max(1),
        s.path.current_mtu,
        s.path.lost_packets,
        s.path.congestion_events,
        s.path.lost_plpmtud_probes,
        s.path.sent_plpmtud_probes,
        s.path.black_holes_detected,
    )
}

async fn quinn_receive(
    dir: &Path,
    bind: std::net::SocketAddr,
    bytes: u64,
    max: u16,
) -> Result<(Duration, String)> {
    let pki = super::RawPki::new()?;
    let server_cfg = pki.server_config({
        let mut t = mesh::tls::server_transport(Duration::from_secs(10))?;
        mesh::tls::set_udp_payload_max(&mut t, max);
        t
    })?;
    let endpoint = mesh::server_endpoint(server_cfg, bind)?;
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem)?;
    std::fs::write(dir.join("client.pem"), &pki.client_pem)?;
    std::fs::write(dir.join("client.key"), &pki.client_key)?;
    std::fs::write(dir.join("addr"), endpoint.local_addr()?.to_string())?;
    std::fs::write(dir.join("ready"), b"")?;
    let conn = endpoint.accept().await.context("no connection")?.await?;
    mesh::tls::widen_limits(&conn, proto::Role::Node, mesh::tls::NODE_WINDOW);
    let mut recv = conn.accept_uni().await?;
    let mut total = 0u64;
    let mut start = None;
    while let Some(chunk) = recv.read_chunk(1 << 20, true).await? {
        start.get_or_insert_with(Instant::now);
        total += chunk.bytes.len() as u64;
    }
    let took = start.map(|s| s.elapsed()).unwrap_or_default();
    let stats = udp_stats(&conn, false);
    conn.close(0u32.into(), b"");
    endpoint.wait_idle().await;
    if total != bytes {
        bail!("raw quinn received {total} of {bytes} bytes");
    }
    Ok((took, stats))
}

async fn quinn_send(dir: &Path, bytes: u64, max: u16) -> Result<String> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f));
    let addr: std::net::SocketAddr = read("addr")?.parse()?;
    let mut transport =
        mesh::tls::client_transport(Duration::from_secs(1), Duration::from_secs(10))?;
    mesh::tls::set_udp_payload_max(&mut transport, max);
    let client_cfg = mesh::tls::session_client_config(
        &read("ca.pem")?,
        &read("client.pem")?,
        &read("client.key")?,
        transport,
    )?;
    let client = mesh::client_endpoint(addr).map_err(anyhow::Error::msg)?;
    let conn = client
        .connect_with(client_cfg, addr, proto::GATEWAY_SERVER_NAME)?
        .await?;
    let mut send = conn.open_uni().await?;
    super::send_zeros(&mut send, bytes).await?;
    // Until the receiver has read it all and closes.
    let _ = send.stopped().await;
    let stats = udp_stats(&conn, true);
    let _ = conn.closed().await;
    Ok(stats)
}

/// A bar series: its legend, colour, and value in a row.
type Series = (
    &'static str,
    plotters::style::RGBColor,
    fn(&Row) -> Option<f64>,
);

fn chart(path: &Path, rows: &[Row]) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (960, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = rows
        .iter()
        .flat_map(|r| [r.openclaw, r.ssh.unwrap_or(0.0), r.raw_quinn])
        .fold(1.0f64, f64::max)
        * 1.15;
    let groups = rows.len() as f64;
    let mut c = ChartBuilder::on(&root)
        .caption(
            "openclaw-bench --thru: output throughput (MB/s)",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(20)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..groups, 0f64..top)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("MB/s")
        .draw()?;
    let series: [Series; 3] = [
        ("openclaw (node → gateway → CLI)", BLUE, |r| {
            Some(r.openclaw)
        }),
        ("ssh", RED, |r| r.ssh),
        ("raw quinn, one hop", GREEN, |r| Some(r.raw_quinn)),
    ];
    for (k, (name, color, value)) in series.iter().enumerate() {
        let color = *color;
        let bars: Vec<_> = rows
            .iter()
            .enumerate()
            .filter_map(|(g, r)| {
                let v = value(r)?;
                let x0 = g as f64 + 0.1 + 0.27 * k as f64;
                Some(Rectangle::new([(x0, 0.0), (x0 + 0.25, v)], color.filled()))
            })
            .collect();
        c.draw_series(bars)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
        c.draw_series(rows.iter().enumerate().filter_map(|(g, r)| {
            let v = value(r)?;
            let x0 = g as f64 + 0.1 + 0.27 * k as f64;
            Some(Text::new(
                format!("{v:.0}"),
                (x0, v + top * 0.01),
                ("sans-serif", 12).into_font().color(&BLACK),
            ))
        }))?;
    }
    for (g, r) in rows.iter().enumerate() {
        c.draw_series(std::iter::once(Text::new(
            format!("{}, {}", r.path, r.sink.trim_start_matches("into ")),
            (g as f64 + 0.05, top * 0.96),
            ("sans-serif", 13).into_font().color(&BLACK),
        )))?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
