//! Test support: a lab of real `openclaw` processes on 127.0.0.1, each
//! party in its own temp home. Every child is killed when the lab drops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cut;
pub mod faults;
mod poll;
pub mod slack;
pub mod swarm;
pub mod webdriver;
pub mod wecom;
pub mod weixin;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The result of one finished command.
#[derive(Debug)]
pub struct Out {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panics with the whole output unless the command succeeded.
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code, 0,
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the command failed with `code` and stderr contains `needle`.
    pub fn fails_with(self, code: i32, needle: &str) -> Out {
        assert_eq!(
            self.code, code,
            "wrong exit code:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running child that is killed on drop.
pub struct Proc {
    child: Option<Child>,
    /// Where its stdout goes.
    pub stdout_path: PathBuf,
    /// Where its stderr goes.
    pub stderr_path: PathBuf,
}

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits for exit, up to `timeout`; returns its output.
    pub fn wait(mut self, timeout: Duration) -> Out {
        let mut child = self.child.take().unwrap();
        let status = wait_until(timeout, "process exit", || child.try_wait().unwrap());
        Out {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&self.stdout_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr_path).unwrap_or_default(),
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A lab: one gateway home and any number of node homes under a temp dir.
pub struct Lab {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The gateway home.
    pub gw_home: PathBuf,
    gateway: Option<Proc>,
    /// The address the gateway bound on its first start; restarts reuse it.
    pub addr: Option<String>,
    seq: usize,
}

impl Lab {
    /// Initialises a gateway home (not started yet).
    pub fn new(bin: &str) -> Lab {
        Lab::with_config(bin, |_| {})
    }

    /// Initialises a gateway home and lets `edit` change gateway.toml.
    pub fn with_config(bin: &str, edit: impl FnOnce(&mut String)) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let gw_home = dir.path().join("gateway");
        let lab = Lab {
            dir,
            bin: PathBuf::from(bin),
            gw_home,
            gateway: None,
            addr: None,
            seq: 0,
        };
        lab.run(
            &lab.gw_home.clone(),
            &[
                "gateway",
                "init",
                "--listen",
                "127.0.0.1:0",
                "--name",
                "test-gw",
            ],
        )
        .ok();
        let cfg_path = lab.gw_home.join("gateway.toml");
        let mut cfg = std::fs::read_to_string(&cfg_path).unwrap();
        edit(&mut cfg);
        std::fs::write(cfg_path, cfg).unwrap();
        lab
    }

    /// The temp directory all homes live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh home path (not created).
    pub fn home(&mut self, name: &str) -> PathBuf {
        self.seq += 1;
        self.dir.path().join(format!("{name}-{}", self.seq))
    }

    /// Runs `openclaw --home HOME ARGS...` to completion.
    pub fn run(&self, home: &Path, args: &[&str]) -> Out {
        self.run_env(home, args, &[])
    }

    /// [`Lab::run`] with extra environment variables.
    pub fn run_env(&self, home: &Path, args: &[&str], env: &[(&str, &Path)]) -> Out {
        let out = Command::new(&self.bin)
            .arg("--home")
            .arg(home)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("OPENCLAW_HOME")
            .env_remove("OPENCLAW_TOKEN")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Out::from(out)
    }

    /// Runs an admin command with the gateway home's credential.
    pub fn admin(&self, args: &[&str]) -> Out {
        self.run(&self.gw_home, args)
    }

    /// Spawns `openclaw --home HOME ARGS...` in the background.
    pub fn spawn(&mut self, home: &Path, args: &[&str]) -> Proc {
        let bin = self.bin.to_string_lossy().into_owned();
        let home = home.to_string_lossy().into_owned();
        let mut all = vec!["--home", home.as_str()];
        all.extend_from_slice(args);
        self.spawn_cmd(&bin, &all)
    }

    /// Spawns `openclaw --home HOME ARGS...` in the background with extra
    /// environment variables.
    pub fn spawn_env(&mut self, home: &Path, args: &[&str], env: &[(&str, &Path)]) -> Proc {
        let bin = self.bin.to_string_lossy().into_owned();
        let home = home.to_string_lossy().into_owned();
        let mut all = vec!["--home", home.as_str()];
        all.extend_from_slice(args);
        self.spawn_cmd_env(&bin, &all, env)
    }

    /// Spawns any program in the background, killed on drop.
    pub fn spawn_cmd(&mut self, program: &str, args: &[&str]) -> Proc {
        self.spawn_cmd_env(program, args, &[])
    }

    fn spawn_cmd_env(&mut self, program: &str, args: &[&str], env: &[(&str, &Path)]) -> Proc {
        self.seq += 1;
        let stdout_path = self.dir.path().join(format!("proc-{}.out", self.seq));
        let stderr_path = self.dir.path().join(format!("proc-{}.err", self.seq));
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("OPENCLAW_HOME")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        Proc {
            child: Some(child),
            stdout_path,
            stderr_path,
        }
    }

    /// Starts (or restarts) the gateway and waits until it answers.
    pub fn start_gateway(&mut self) {
        self.start_gateway_standby();
        wait_until(Duration::from_secs(20), "gateway to answer", || {
            (self.admin(&["whoami"]).code == 0).then_some(())
        });
    }

    /// Starts (or restarts) the gateway on its address without waiting
    /// for it to answer (a standby refuses until it leads).
    pub fn start_gateway_standby(&mut self) {
        let addr_file = self.gw_home.join("gateway.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut args = vec!["gateway", "run"];
        let listen;
        if let Some(a) = &self.addr {
            listen = a.clone();
            args.extend(["--listen", listen.as_str()]);
        }
        let home = self.gw_home.clone();
        let mut proc = self.spawn(&home, &args);
        let addr = wait_until(Duration::from_secs(20), "gateway.addr", || {
            assert!(
                proc.running(),
                "the gateway exited before writing gateway.addr: {}",
                proc.stderr()
            );
            std::fs::read_to_string(&addr_file)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        });
        self.gateway = Some(proc);
        self.addr = Some(addr);
    }

    /// Starts the gateway expecting it to refuse its configuration; returns
    /// what it printed.
    pub fn gateway_start_fails(&mut self) -> Out {
        let home = self.gw_home.clone();
        let out = self
            .spawn(&home, &["gateway", "run"])
            .wait(Duration::from_secs(30));
        assert_ne!(out.code, 0, "the gateway started: {out:?}");
        out
    }

    /// The gateway process.
    pub fn gateway(&mut self) -> &mut Proc {
        self.gateway.as_mut().unwrap()
    }

    /// Stops the gateway with SIGTERM (or SIGKILL when `hard`).
    pub fn stop_gateway(&mut self, hard: bool) -> Out {
        let gw = self.gateway.take().unwrap();
        gw.signal(if hard { "KILL" } else { "TERM" });
        gw.wait(Duration::from_secs(20))
    }

    /// Waits for the gateway to exit by itself; returns what it printed.
    pub fn stop_gateway_when_it_exits(&mut self, timeout: Duration) -> Out {
        let gw = self.gateway.take().unwrap();
        gw.wait(timeout)
    }

    /// Creates a join token with extra `token create` flags.
    pub fn token(&self, flags: &[&str]) -> String {
        let mut args = vec!["token", "create"];
        args.extend_from_slice(flags);
        let out = self.admin(&args).ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "token create must print exactly one line: {:?}",
            out.stdout
        );
        lines[0].to_string()
    }

    /// Enrolls a node with an auto-approve token; returns its home.
    /// The token carries the labels (confirmed labels come from the token or
    /// the admin) and a GPU cap; jobs run as the agent's user, which the
    /// node must be told explicitly.
    pub fn enroll(&mut self, name: &str, labels: &str) -> PathBuf {
        let token = self.token(&["--auto-approve", "--labels", labels, "--max-gpus", "64"]);
        self.enroll_with(&token, name, labels)
    }

    /// Enrolls `name` with `token`, asking for `labels`; jobs run as the
    /// agent's user. Returns its home.
    pub fn enroll_with(&mut self, token: &str, name: &str, labels: &str) -> PathBuf {
        let home = self.home(name);
        self.run(
            &home,
            &[
                "node",
                "enroll",
                "--token",
                token,
                "--name",
                name,
                "--labels",
                labels,
                "--wait",
                "20s",
                "--allow-jobs-as-agent-user",
            ],
        )
        .ok();
        home
    }

    /// Creates a bot credential speaking for `namespace`; returns its home.
    pub fn bot(&mut self, name: &str, namespace: &str) -> PathBuf {
        let home = self.home(name);
        self.admin(&[
            "client",
            "create",
            name,
            "--role",
            "bot",
            "--namespace",
            namespace,
            "--out",
            home.to_str().unwrap(),
        ])
        .ok();
        home
    }

    /// Creates another admin credential; returns its home.
    pub fn second_admin(&mut self, name: &str) -> PathBuf {
        let home = self.home(name);
        self.admin(&["client", "create", name, "--out", home.to_str().unwrap()])
            .ok();
        home
    }

    /// Starts a node agent.
    pub fn start_node(&mut self, home: &Path) -> Proc {
        self.spawn(home, &["node", "run"])
    }

    /// Starts a node agent offering `gpus` simulated GPUs.
    pub fn start_gpu_node(&mut self, home: &Path, gpus: u32) -> Proc {
        let n = gpus.to_string();
        self.spawn(home, &["node", "run", "--simulate-gpus", &n])
    }

    /// Enrolls and starts a node, and waits until it is connected.
    pub fn node_up(&mut self, name: &str, labels: &str, gpus: u32) -> (PathBuf, Proc) {
        let home = self.enroll(name, labels);
        let p = self.start_gpu_node(&home, gpus);
        self.wait_node(name, "connected", Duration::from_secs(20));
        (home, p)
    }

    /// Runs `openclaw run ARGS...` with the admin credential.
    pub fn run_job(&self, args: &[&str]) -> Out {
        let mut a = vec!["run"];
        a.extend_from_slice(args);
        self.admin(&a)
    }

    /// `job show --json` of a job.
    pub fn job(&self, id: u64) -> serde_json::Value {
        let out = self.admin(&["job", "show", &id.to_string(), "--json"]).ok();
        serde_json::from_str(&out.stdout).unwrap()
    }

    /// Submits with --detach and returns the job id.
    pub fn detach(&self, args: &[&str]) -> u64 {
        let mut a = vec!["run", "--detach"];
        a.extend_from_slice(args);
        let out = self.admin(&a).ok();
        out.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no job id in {:?} / {:?}", out.stdout, out.stderr))
    }

    /// `node list --json` as parsed JSON.
    pub fn nodes(&self) -> Vec<serde_json::Value> {
        let out = self.admin(&["node", "list", "--json"]).ok();
        serde_json::from_str::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// `job list --json` as parsed JSON, newest first.
    pub fn jobs(&self) -> Vec<serde_json::Value> {
        let out = self.admin(&["job", "list", "--json"]).ok();
        serde_json::from_str::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// One node's `node list --json` entry.
    pub fn node(&self, name: &str) -> Option<serde_json::Value> {
        self.nodes().into_iter().find(|n| n["name"] == name)
    }
}

/// Replaces gateway.toml's `[policy]` section (up to `[limits]`) with the
/// chat front ends' test policy: everything allowed, chat included, except
/// jobs on `worker-gpu-*`, which `approver` must approve.
pub fn set_chat_test_policy(cfg: &mut String, approver: &str) {
    let start = cfg.find("[policy]").expect("gateway.toml has [policy]");
    let end = cfg.find("[limits]").expect("gateway.toml has [limits]");
    cfg.replace_range(
        start..end,
        &format!(
            "[policy]\ndefault = \"allow\"\nchat_default = \"allow\"\n\n[[policy.rules]]\nnodes = [\"worker-gpu-*\"]\naction = \"approve\"\napprovers = [{approver:?}]\n\n"
        ),
    );
}

/// Replaces `from` with `to` in a config file, failing loudly when `from`
/// is not there (an edit that matched nothing would test nothing).
pub fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} does not contain {from:?}:\n{text}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// `GET path` over plain HTTP/1.1 to `addr` (host:port), with
/// `Connection: close`; the whole response, status line and headers too.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr.trim())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Whether this process runs as root (tests that need it say SKIPPED otherwise).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether `tool` is on the PATH (tests that need it say SKIPPED otherwise).
pub fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Resident memory of a process, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time a process has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    // utime and stime: fields 14 and 15 of /proc/PID/stat, after the ")".
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // Clock ticks per second (USER_HZ), asked once.
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let tck = *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    });
    Duration::from_micros(ticks * 1_000_000 / tck)
}

/// Live processes whose command line contains `needle` (zombies excluded).
pub fn processes_with(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            !zombie
                && String::from_utf8_lossy(&cmd)
                    .replace('\0', " ")
                    .contains(needle)
        })
        .collect()
}

/// What the relay does to each datagram, in each direction: a userspace
/// stand-in for `tc netem`, which this kernel lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Share of datagrams dropped, 0.0 to 1.0.
    pub loss: f64,
    /// One-way delay added to every datagram.
    pub delay: Duration,
    /// Up to this much more delay, uniformly at random, so datagrams
    /// overtake each other.
    pub jitter: Duration,
    /// Share of datagrams held back by a further `delay`: they arrive after
    /// ones sent later.
    pub reorder: f64,
}

/// xorshift64*: enough randomness for a test relay, seeded for repeatability.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A datagram waiting for its time.
struct Delayed {
    at: std::time::Instant,
    seq: u64,
    sock: std::sync::Arc<std::net::UdpSocket>,
    to: Option<std::net::SocketAddr>,
    data: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Earliest first out of a max-heap.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// The relay's shaping: the impairment, the queue of delayed datagrams
/// and counters.
struct Shaper {
    state: std::sync::Mutex<ShaperState>,
    wake: std::sync::Condvar,
}

struct ShaperState {
    impairment: Impairment,
    rng: Rng,
    queue: std::collections::BinaryHeap<Delayed>,
    seq: u64,
    dropped: u64,
    passed: u64,
}

impl Shaper {
    fn send(
        &self,
        sock: &std::sync::Arc<std::net::UdpSocket>,
        to: Option<std::net::SocketAddr>,
        data: &[u8],
    ) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let imp = st.impairment;
        if imp == Impairment::default() {
            st.passed += 1;
            drop(st);
            forward(sock, to, data);
            return;
        }
        if st.rng.next_f64() < imp.loss {
            st.dropped += 1;
            return;
        }
        st.passed += 1;
        let mut delay = imp.delay + imp.jitter.mul_f64(st.rng.next_f64());
        if st.rng.next_f64() < imp.reorder {
            delay += imp.delay.max(Duration::from_millis(1));
        }
        st.seq += 1;
        let seq = st.seq;
        st.queue.push(Delayed {
            at: std::time::Instant::now() + delay,
            seq,
            sock: sock.clone(),
            to,
            data: data.to_vec(),
        });
        drop(st);
        self.wake.notify_one();
    }

    /// Sends delayed datagrams when their time comes, until `stop`.
    fn run(&self, stop: &std::sync::atomic::AtomicBool) {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            let now = std::time::Instant::now();
            match st.queue.peek().map(|d| d.at) {
                Some(at) if at <= now => {
                    if let Some(d) = st.queue.pop() {
                        drop(st);
                        forward(&d.sock, d.to, &d.data);
                    }
                }
                Some(at) => {
                    let _ = self.wake.wait_timeout(st, at - now);
                }
                None => {
                    let _ = self.wake.wait_timeout(st, Duration::from_millis(50));
                }
            }
        }
    }
}

/// Sends a datagram on: to `to`, or to the socket's connected peer.
fn forward(sock: &std::net::UdpSocket, to: Option<std::net::SocketAddr>, data: &[u8]) {
    let _ = match to {
        Some(a) => sock.send_to(data, a),
        None => sock.send(data),
    };
}

/// A UDP relay between nodes and a gateway on 127.0.0.1 that can drop
/// everything for a while (a network cut without root), or lose, delay and
/// reorder datagrams ([`Impairment`]). Each client address gets its own
/// upstream socket, so reconnections look like new flows.
pub struct UdpProxy {
    /// Where clients should dial.
    pub addr: std::net::SocketAddr,
    blocked: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    shaper: std::sync::Arc<Shaper>,
    cut: std::sync::Arc<std::sync::Mutex<cut::ProcCut>>,
}

impl UdpProxy {
    /// Starts relaying to `upstream`.
    pub fn start(upstream: &str) -> UdpProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let upstream: std::net::SocketAddr = upstream.parse().unwrap();
        let front = Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        front
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let blocked = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let shaper = Arc::new(Shaper {
            state: std::sync::Mutex::new(ShaperState {
                impairment: Impairment::default(),
                rng: Rng(0x9E37_79B9_7F4A_7C15),
                queue: std::collections::BinaryHeap::new(),
                seq: 0,
                dropped: 0,
                passed: 0,
            }),
            wake: std::sync::Condvar::new(),
        });
        let (sh, st) = (shaper.clone(), stop.clone());
        std::thread::spawn(move || sh.run(&st));
        let cut = Arc::new(std::sync::Mutex::new(cut::ProcCut::default()));
        let (b, st, sh, cu) = (blocked.clone(), stop.clone(), shaper.clone(), cut.clone());
        std::thread::spawn(move || {
            let mut flows: std::collections::HashMap<
                std::net::SocketAddr,
                Arc<std::net::UdpSocket>,
            > = std::collections::HashMap::new();
            let mut buf = vec![0u8; 65_536];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, client)) = front.recv_from(&mut buf) else {
                    continue;
                };
                let up = flows.entry(client).or_insert_with(|| {
                    let sock = Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
                    sock.connect(upstream).unwrap();
                    sock.set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    let (sock2, front2, b2, st2, sh2, cu2) = (
                        sock.clone(),
                        front.clone(),
                        b.clone(),
                        st.clone(),
                        sh.clone(),
                        cu.clone(),
                    );
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 65_536];
                        while !st2.load(Ordering::Relaxed) {
                            if let Ok(n) = sock2.recv(&mut buf)
                                && !b2.load(Ordering::Relaxed)
                                && !cu2.lock().is_ok_and(|mut c| c.drops(client.port()))
                            {
                                sh2.send(&front2, Some(client), &buf[..n]);
                            }
                        }
                    });
                    sock
                });
                if !b.load(Ordering::Relaxed)
                    && !cu.lock().is_ok_and(|mut c| c.drops(client.port()))
                {
                    sh.send(up, None, &buf[..n]);
                }
            }
        });
        UdpProxy {
            addr,
            blocked,
            stop,
            shaper,
            cut,
        }
    }

    /// Drops the datagrams of process `pid` (every UDP socket it holds,
    /// now and later) and relays everyone else's; `None` heals the cut.
    pub fn cut_process(&self, pid: Option<u32>) {
        if let Ok(mut c) = self.cut.lock() {
            c.set(pid);
        }
    }

    /// Datagrams [`UdpProxy::cut_process`] dropped so far.
    pub fn cut_dropped(&self) -> u64 {
        self.cut.lock().map(|c| c.dropped).unwrap_or_default()
    }

    /// Drops (true) or relays (false) all traffic from now on.
    pub fn block(&self, on: bool) {
        self.blocked.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Loses, delays and reorders datagrams from now on (the default
    /// `Impairment` relays them untouched).
    pub fn impair(&self, imp: Impairment) {
        if let Ok(mut st) = self.shaper.state.lock() {
            st.impairment = imp;
        }
    }

    /// Datagrams dropped and passed so far (both directions).
    pub fn counts(&self) -> (u64, u64) {
        self.shaper
            .state
            .lock()
            .map(|s| (s.dropped, s.passed))
            .unwrap_or_default()
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A TCP relay on 127.0.0.1 (e.g. between a gateway and its PostgreSQL)
/// that can stop forwarding in both directions: a network partition that
/// leaves the connections open and silent, without root.
pub struct TcpRelay {
    /// Where clients should connect.
    pub addr: std::net::SocketAddr,
    blocked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TcpRelay {
    /// Starts relaying to `upstream` (host:port).
    pub fn start(upstream: &str) -> TcpRelay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let blocked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let b = blocked.clone();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                while b.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let b = b.clone();
                    std::thread::spawn(move || pump(from, to, &b));
                }
            }
        });
        TcpRelay { addr, blocked }
    }

    /// Stops (or resumes) forwarding; connections stay open and silent.
    pub fn block(&self, on: bool) {
        self.blocked.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    blocked: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read as _, Write as _};
    let mut buf = vec![0u8; 64 << 10];
    loop {
        while blocked.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                // Pass the close on, as the kernel would without a relay:
                // a PostgreSQL session whose gateway died must see it end
                // (and drop its locks), not wait for its idle timeout.
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                // Read before the cut, held until it heals.
                while blocked.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(std::net::Shutdown::Read);
                    return;
                }
            }
        }
    }
}
