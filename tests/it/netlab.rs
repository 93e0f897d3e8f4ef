//! The network lab (`scripts/netlab.sh`): a gateway and three nodes, each
//! in its own network namespace, one behind a NAT. Real processes, real
//! QUIC, real routing and NAT in the kernel. Needs root, iproute2 and
//! nftables or iptables (CI has them; `.ci/run` installs what is missing);
//! otherwise each test prints SKIPPED.
//!
//! Every test ends by taking the lab down and checking that nothing is
//! left: no namespace with its prefix, no process using its directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/netlab.sh")
}

/// Why the netlab cannot run here, if it cannot.
fn skip_reason(extra: &[&str]) -> Option<String> {
    if !testkit::is_root() {
        return Some("needs root for network namespaces (CI runs as root)".into());
    }
    if !testkit::have_tool("ip") {
        return Some("needs iproute2".into());
    }
    if !testkit::have_tool("nft") && !testkit::have_tool("iptables") {
        return Some("needs nftables or iptables for the NAT".into());
    }
    for t in extra {
        if !testkit::have_tool(t) {
            return Some(format!("needs {t}"));
        }
    }
    None
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// One running netlab, taken down (and checked) when dropped.
struct Netlab {
    prefix: String,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    down: bool,
}

impl Netlab {
    /// The lab for test `test`, or `None` (having said SKIPPED and why)
    /// where it cannot run.
    fn up_or_skip(test: &str, tag: &str, extra: &[&str]) -> Option<Netlab> {
        if let Some(why) = skip_reason(extra) {
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
        Some(Netlab::up(tag))
    }

    /// Asserts that `node list` has exactly the lab's three nodes: a node
    /// that reconnected or moved never shows twice (no ghosts).
    fn assert_three_nodes(&self) {
        let out = self.admin(&["node", "list", "--json"]);
        let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    }

    fn up(tag: &str) -> Netlab {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = format!("o{}{tag}", std::process::id() % 10_000);
        let lab = Netlab {
            prefix,
            dir: tmp.path().join("netlab"),
            _tmp: tmp,
            down: false,
        };
        let out = lab.sh(&["up"]);
        assert_eq!(
            out.code, 0,
            "netlab up failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        lab
    }

    fn sh(&self, args: &[&str]) -> Out {
        let o = Command::new("bash")
            .arg(script())
            .args(args)
            .env("NETLAB_PREFIX", &self.prefix)
            .env("NETLAB_DIR", &self.dir)
            .env("OPENCLAW_BIN", BIN)
            .env_remove("OPENCLAW_HOME")
            .output()
            .unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// `openclaw` with the gateway's admin credential, inside its namespace.
    fn admin(&self, args: &[&str]) -> Out {
        let mut all = vec!["oc", "gw", "gateway"];
        all.extend_from_slice(args);
        self.sh(&all)
    }

    fn node(&self, name: &str) -> serde_json::Value {
        let out = self.admin(&["node", "list", "--json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no node {name} in {list}"))
    }

    fn wait_node(
        &self,
        name: &str,
        f: impl Fn(&serde_json::Value) -> bool,
        what: &str,
    ) -> serde_json::Value {
        let until = Instant::now() + T;
        loop {
            let n = self.node(name);
            if f(&n) {
                return n;
            }
            assert!(Instant::now() < until, "{name} never became {what}: {n}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn job(&self, id: u64) -> serde_json::Value {
        let out = self.admin(&["job", "show", &id.to_string(), "--json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    }

    fn wait_job(&self, id: u64, state: &str, timeout: Duration) -> serde_json::Value {
        self.wait_job_for(id, timeout, state, |j| j["state"] == state)
    }

    /// Waits until job `id` satisfies `ok`; fails at once if it ends
    /// without doing so. Polls every 200 ms: each look is a process in a
    /// namespace.
    fn wait_job_for(
        &self,
        id: u64,
        timeout: Duration,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let until = Instant::now() + timeout;
        loop {
            let j = self.job(id);
            if ok(&j) {
                return j;
            }
            assert!(
                Instant::now() < until && !proto_terminal(&j),
                "job {id} never became {what}: {j}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until job `id` runs and its output reaches the gateway, so a
    /// cut lands in the middle of it.
    fn output_flows(&self, id: u64) {
        self.wait_job_for(id, T, "streaming output", |j| {
            j["state"] == "running" && j["stdout_bytes"].as_u64() > Some(0)
        });
    }

    /// How often node `n` has logged giving its connection up.
    fn node_retries(&self, n: &str) -> usize {
        std::fs::read_to_string(self.dir.join(format!("{n}.log")))
            .unwrap_or_default()
            .matches("reconnecting in")
            .count()
    }

    fn detach(&self, node: &str, script: &str) -> u64 {
        let out = self.admin(&["run", "--detach", "--node", node, "--", "sh", "-c", script]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("job id: {}", out.stdout))
    }

    /// SHA-256 and size of a job's stored stdout, computed in the gateway's
    /// namespace (a 100 MB log never passes through the test).
    fn log_digest(&self, id: u64) -> String {
        let cmd = format!(
            "{BIN} --home {} job logs {id} | tee >(wc -c >&2) | sha256sum",
            self.dir.join("gateway").display()
        );
        let out = self.sh(&["exec", "gw", "bash", "-c", &cmd]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        format!(
            "{} {}",
            out.stdout.split_whitespace().next().unwrap_or(""),
            out.stderr.trim()
        )
    }

    /// Command lines of the processes in namespace `n`.
    fn processes(&self, n: &str) -> Vec<String> {
        let pids = Command::new("ip")
            .args(["netns", "pids", &format!("{}-{n}", self.prefix)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .collect()
    }

    /// Takes the lab down and proves nothing is left.
    fn down(mut self) {
        self.take_down();
    }

    fn take_down(&mut self) {
        if self.down {
            return;
        }
        self.down = true;
        let out = self.sh(&["down"]);
        assert_eq!(out.code, 0, "netlab down: {}", out.stderr);
        let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let left: Vec<String> = String::from_utf8_lossy(&ns.stdout)
            .lines()
            .filter(|l| l.starts_with(&format!("{}-", self.prefix)))
            .map(str::to_string)
            .collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        let ps = Command::new("pgrep")
            .args(["-f", &self.dir.to_string_lossy()])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&ps.stdout).trim().is_empty(),
            "processes left behind: {}",
            String::from_utf8_lossy(&ps.stdout)
        );
        assert!(!self.dir.exists(), "{} left behind", self.dir.display());
    }
}

impl Drop for Netlab {
    fn drop(&mut self) {
        // A failed test still removes everything; the check itself may
        // not panic again while unwinding.
        if !self.down {
            self.down = true;
            let _ = self.sh(&["down"]);
        }
    }
}

fn proto_terminal(j: &serde_json::Value) -> bool {
    matches!(
        j["state"].as_str(),
        Some("exited" | "failed" | "cancelled" | "timed-out" | "denied" | "expired" | "lost")
    )
}

/// `seq 1 N` in `chunks` slices with a pause after each: about 9 bytes a
/// line, so `chunks * per` lines make the size.
fn paced_seq(chunks: u64, per: u64, pause: &str) -> (String, u64) {
    (
        format!(
            "i=0; while [ $i -lt {chunks} ]; do seq $((i*{per}+1)) $(((i+1)*{per})); i=$((i+1)); sleep {pause}; done"
        ),
        chunks * per,
    )
}

fn local_digest(lines: u64) -> String {
    let out = Command::new("bash")
        .args([
            "-c",
            &format!("seq 1 {lines} | tee >(wc -c >&2) | sha256sum"),
        ])
        .output()
        .unwrap();
    format!(
        "{} {}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or(""),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

#[test]
fn netlab_cross_nat_enrollment_a_job_and_nat_rebinding_mid_job() {
    let Some(lab) = Netlab::up_or_skip(
        "netlab_cross_nat_enrollment_a_job_and_nat_rebinding_mid_job",
        "a",
        &["conntrack"],
    ) else {
        return;
    };
    // Every node enrolled across the network; n3 from behind the NAT, so
    // the gateway sees the router's public address.
    for n in ["netlab-n1", "netlab-n2", "netlab-n3"] {
        assert_eq!(lab.node(n)["connection"], "connected");
    }
    let n3 = lab.node("netlab-n3");
    let before = n3["remote_addr"].as_str().unwrap().to_string();
    assert!(before.starts_with("10.199.0.20:"), "n3 seen as {before}");
    assert!(
        lab.node("netlab-n1")["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("10.199.0.11:")
    );

    // A job across the NAT: output and exit code come back.
    let out = lab.admin(&[
        "run",
        "--node",
        "netlab-n3",
        "--",
        "sh",
        "-c",
        "echo across the nat; exit 3",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (3, "across the nat\n"),
        "{}",
        out.stderr
    );

    // NAT rebinding mid-job: new source ports, old mappings flushed. The
    // node's next datagrams leave from a new address; QUIC migrates the
    // connection and the job's stream goes on.
    let (job, lines) = paced_seq(40, 2000, "0.15");
    let id = lab.detach("netlab-n3", &job);
    lab.output_flows(id);
    assert_eq!(lab.sh(&["nat-ports", "40000-40100"]).code, 0);
    let flush = lab.sh(&["exec", "rt", "conntrack", "-F"]);
    assert_eq!(flush.code, 0, "{}", flush.stderr);
    let done = lab.wait_job(id, "exited", T);
    assert_eq!(done["exit_code"], 0, "{done}");
    assert_eq!(
        lab.log_digest(id),
        local_digest(lines),
        "output after rebinding"
    );
    let moved = lab.wait_node(
        "netlab-n3",
        |n| {
            n["remote_addr"]
                .as_str()
                .and_then(|a| a.strip_prefix("10.199.0.20:"))
                .and_then(|p| p.parse::<u16>().ok())
                .is_some_and(|p| (40000..=40100).contains(&p))
        },
        "listed at its new address",
    );
    assert_eq!(moved["connection"], "connected");
    // One session throughout: no reconnection, so no ghost.
    let log = std::fs::read_to_string(lab.dir.join("gateway.log")).unwrap_or_default();
    assert!(log.contains("its session migrated"), "no migration logged");
    let connects = log.matches("node connected").count();
    assert_eq!(
        connects, 3,
        "a node reconnected instead of migrating:\n{log}"
    );
    lab.assert_three_nodes();
    lab.down();
}

#[test]
fn netlab_partition_and_heal_during_a_100_mb_job() {
    let Some(lab) = Netlab::up_or_skip("netlab_partition_and_heal_during_a_100_mb_job", "b", &[])
    else {
        return;
    };
    // About 100 MB over ~10 s, so the cut lands in the middle of it.
    let (job, lines) = paced_seq(50, 250_000, "0.2");
    let id = lab.detach("netlab-n1", &job);
    lab.output_flows(id);
    let tries = lab.node_retries("n1");
    assert_eq!(
        lab.sh(&["exec", "n1", "ip", "link", "set", "eth0", "down"])
            .code,
        0
    );
    lab.wait_node("netlab-n1", |n| n["connection"] == "offline", "offline");
    // The partition lasts until the node too has given its connection up:
    // it heals onto a new session, with the output of the cut spooled on
    // the node.
    let until = Instant::now() + T;
    while lab.node_retries("n1") <= tries {
        assert!(Instant::now() < until, "n1 never retried during the cut");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        lab.sh(&["exec", "n1", "ip", "link", "set", "eth0", "up"])
            .code,
        0
    );
    lab.wait_node(
        "netlab-n1",
        |n| n["connection"] == "connected",
        "connected again",
    );
    let done = lab.wait_job(id, "exited", Duration::from_secs(120));
    assert_eq!(done["exit_code"], 0, "{done}");
    assert!(
        done["stdout_bytes"].as_u64().unwrap() > 100_000_000,
        "{done}"
    );
    assert_eq!(
        lab.log_digest(id),
        local_digest(lines),
        "byte-identical after the cut"
    );
    // The other nodes never noticed.
    for n in ["netlab-n2", "netlab-n3"] {
        assert_eq!(lab.node(n)["connection"], "connected");
    }
    lab.down();
}

#[test]
fn netlab_gateway_restart_and_node_kill_during_jobs() {
    let Some(lab) =
        Netlab::up_or_skip("netlab_gateway_restart_and_node_kill_during_jobs", "c", &[])
    else {
        return;
    };
    // The gateway restarts (SIGKILL) while a job runs: the node keeps the
    // job and its output, re-attaches to the new gateway process, and the
    // job ends with all of its output.
    let (job, lines) = paced_seq(20, 5000, "0.2");
    let id = lab.detach("netlab-n2", &job);
    lab.output_flows(id);
    let r = lab.sh(&["restart-gateway", "KILL"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let done = lab.wait_job(id, "exited", T);
    assert_eq!(done["exit_code"], 0, "{done}");
    assert_eq!(
        lab.log_digest(id),
        local_digest(lines),
        "output across the gateway restart"
    );
    // Every node comes back to the new gateway process by itself.
    for n in ["netlab-n1", "netlab-n2", "netlab-n3"] {
        lab.wait_node(n, |v| v["connection"] == "connected", "connected again");
    }

    // The gateway waits `job_grace` for a lost node's jobs to come back
    // before it calls them lost: 15 s by default, 4 s here (one restart,
    // TERM this time) so the "lost" outcome below is not a wait.
    let cfg = lab.dir.join("gateway").join("gateway.toml");
    testkit::edit_file(&cfg, "job_grace = \"15s\"", "job_grace = \"4s\"");
    let r = lab.sh(&["restart-gateway"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for n in ["netlab-n1", "netlab-n2", "netlab-n3"] {
        lab.wait_node(n, |v| v["connection"] == "connected", "connected again");
    }

    // The node agent is SIGKILLed while a job runs, and started again.
    // The documented outcome (docs/OPERATIONS.md) is one clear end state,
    // never a ghost: `exited` with complete output if the new agent could
    // re-attach the job from its spool, else `lost` with the reason.
    let (job, lines) = paced_seq(20, 5000, "0.2");
    let id = lab.detach("netlab-n1", &job);
    lab.output_flows(id);
    assert_eq!(lab.sh(&["kill-node", "n1"]).code, 0);
    lab.wait_node("netlab-n1", |n| n["connection"] == "offline", "offline");
    assert_eq!(lab.sh(&["start-node", "n1"]).code, 0);
    lab.wait_node(
        "netlab-n1",
        |n| n["connection"] == "connected",
        "connected again",
    );
    let end = lab.wait_job_for(id, T, "ended", proto_terminal);
    match end["state"].as_str() {
        Some("exited") => {
            assert_eq!(
                lab.log_digest(id),
                local_digest(lines),
                "resumed output is complete"
            )
        }
        Some("lost") => assert!(
            end["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{end}"
        ),
        other => panic!("unexpected end {other:?}: {end}"),
    }
    eprintln!(
        "netlab: a job whose agent was SIGKILLed ended {}: {}",
        end["state"], end["reason"]
    );
    // Nothing of the old agent's job runs on: the new agent killed what
    // its dead predecessor left (the job is over, its output has nowhere
    // to go, and it must not hold GPUs).
    let left = lab.processes("n1");
    assert!(
        left.iter().all(|c| c.contains("node run")),
        "stray processes in n1: {left:?}"
    );
    // Still one entry per node: no ghost.
    lab.assert_three_nodes();
    lab.down();
}
