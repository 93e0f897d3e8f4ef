//! A randomized fault test of the HA group (issue 26, item 4), in the
//! manner of Jepsen and bounded in time: a private PostgreSQL (so it can be
//! restarted), two gateways in one group, each reaching the database
//! through its own TCP relay (a blackhole keeps the connection open and
//! silent) and advertising a UDP relay that can cut one node off, two
//! real node agents, and the Slack bot (moltbot) on the emulator. For `OPENCLAW_FAULT_ROUNDS` rounds (default 2) a
//! seeded generator (`OPENCLAW_FAULT_SEED`, printed) picks a fault while a
//! workload runs: detached jobs with numbered output and known exit codes,
//! jobs held for approval (approved through the CLI, some twice, some
//! during the fault), a foreground follower, a job asked for in Slack,
//! and fan-outs to the nodes' label. Once the faults stop and the group settles, the pure checker
//! (`testkit::faults`) judges the history; a failure prints the seed, the
//! schedule and every violation. SKIPPED without PostgreSQL.
//!
//! Short run (in the suite): `cargo test -p openclaw --test it faults::`.
//! Long run: `OPENCLAW_FAULT_ROUNDS=40 cargo test -p openclaw --test it
//! faults:: -- --nocapture`; replay: add `OPENCLAW_FAULT_SEED=<seed>`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::faults::{Expect, JobHistory, LeaseClaim, Rng, Seen, check, lease_claims};
use testkit::{Lab, Out, Proc, TcpRelay, UdpProxy, edit_file, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);
const NODES: [&str; 2] = ["fa-1", "fa-2"];

/// One fault of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL the leader; it comes back later as a standby.
    KillLeader,
    /// SIGSTOP the leader for longer than its lease, then SIGCONT.
    PauseLeader,
    /// A fast shutdown and start of PostgreSQL.
    RestartDatabase,
    /// The leader's database connection forwards nothing for a while.
    BlackholeDatabase,
    /// One node's datagrams to and from every gateway are dropped.
    PartitionNode(usize),
    /// The Slack bot (moltbot on the emulator) is killed, and started
    /// again when the fault ends.
    RestartBot,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::PartitionNode(n) => write!(f, "PartitionNode({})", NODES[*n]),
            other => write!(f, "{other:?}"),
        }
    }
}

fn pick(rng: &mut Rng) -> Fault {
    match rng.below(6) {
        0 => Fault::KillLeader,
        1 => Fault::PauseLeader,
        2 => Fault::RestartDatabase,
        3 => Fault::BlackholeDatabase,
        4 => Fault::RestartBot,
        _ => Fault::PartitionNode(rng.below(2) as usize),
    }
}

/// A gateway of the group: its home, process, database relay and the UDP
/// relay it advertises.
struct Gw {
    name: &'static str,
    home: PathBuf,
    proc: Option<Proc>,
    db: TcpRelay,
    front: UdpProxy,
}

/// A free UDP port on 127.0.0.1 (bound and released).
fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// The test timings (as tests/it/ha.rs), the approval rule, the listen
/// address and the advertised relay, and the logs directory.
fn tune(cfg: &mut String, listen: u16, front: &UdpProxy, logs: Option<&Path>) {
    // Chat allowed (the bot's jobs), everything else allowed but the
    // held jobs below.
    testkit::set_chat_test_policy(cfg, "slack:T0LAB/U0BOSS");
    let logs = logs.map_or(String::new(), |l| {
        format!("\nlogs_dir = \"{}\"", l.display())
    });
    *cfg = cfg
        .replace("[metrics]\n", "[metrics]\nlisten = \"127.0.0.1:0\"\n")
        .replace("\nlisten = \"\"\n", "\n")
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{listen}\""),
            1,
        )
        .replace(
            "# advertise = \"gateway.example.org:7443\"",
            &format!("advertise = \"{}\"", front.addr),
        )
        .replace(
            "[limits]\n",
            "[[policy.rules]]\ncommands = [\"sh -c held=1*\"]\naction = \"approve\"\napprovers = [\"alice\"]\n\n[limits]\n",
        )
        .replace(
            "heartbeat_interval = \"1s\"",
            "heartbeat_interval = \"300ms\"",
        )
        .replace("dead_after = \"3s\"", "dead_after = \"1200ms\"")
        .replace(
            "# lease_ttl = \"1500ms\"",
            &format!("lease_ttl = \"1500ms\"{logs}"),
        );
}

/// The job's shell script: records the run on its node, prints its
/// numbered lines, exits with its code. Held ones start with `held=1`.
fn script(e: &Expect, evidence: &Path) -> String {
    format!(
        "{held}echo \"$OPENCLAW_JOB_ID\" >> {dir}/\"$OPENCLAW_NODE\"; i=1; while [ $i -le {n} ]; do echo {label}-$i; i=$((i+1)); sleep 0.1; done; exit {exit}",
        held = if e.approval { "held=1; " } else { "" },
        dir = evidence.display(),
        n = e.lines,
        label = e.label,
        exit = e.exit,
    )
}

struct World {
    lab: Lab,
    pg: testpg::Server,
    url: String,
    gws: Vec<Gw>,
    alice: PathBuf,
    nodes: Vec<Proc>,
    evidence: PathBuf,
    /// Every gateway process's stderr, killed ones included.
    gw_logs: Vec<PathBuf>,
    /// What each submitted script must do.
    expects: HashMap<String, Expect>,
    /// Detached jobs the gateway accepted.
    accepted: Vec<u64>,
    /// `job approve` calls accepted, per job.
    approvals_ok: BTreeMap<u64, u32>,
    held: Vec<u64>,
    followers: Vec<(String, Proc)>,
    fanouts: Vec<Proc>,
    slack: testkit::slack::SlackEmulator,
    bot_home: PathBuf,
    bot: Option<Proc>,
    /// Labels of the jobs asked for through the bot.
    mentions: Vec<String>,
    /// Mentions the bot had not answered when it was killed: a restarted
    /// bot does not follow the jobs its predecessor started (a known gap,
    /// docs/HA.md), so their jobs are checked, their answers are not.
    orphaned: Vec<String>,
}

impl World {
    fn spawn_gw(&mut self, i: usize) {
        let home = self.gws[i].home.clone();
        let p = self.lab.spawn(&home, &["gateway", "run"]);
        self.gw_logs.push(p.stderr_path.clone());
        self.gws[i].proc = Some(p);
    }

    /// The gateway that holds the lease now, by the database.
    fn leader(&self) -> Option<usize> {
        let rows = testpg::rows(&self.url, "SELECT holder FROM leader_lease").ok()?;
        let holder = rows.first()?.first()?.clone()?;
        self.gws.iter().position(|g| g.name == holder)
    }

    /// The lease's generation now, by the database.
    fn generation(&self) -> Option<u64> {
        let rows = testpg::rows(&self.url, "SELECT generation FROM leader_lease").ok()?;
        rows.first()?.first()?.clone()?.parse().ok()
    }

    /// Datagrams the relays dropped for a partitioned node so far.
    fn cut_dropped(&self) -> u64 {
        self.gws.iter().map(|g| g.front.cut_dropped()).sum()
    }

    /// Restarts every gateway that exited (it steps down by exiting, and
    /// the service manager restarts it: here, the test).
    fn supervise(&mut self) {
        for i in 0..self.gws.len() {
            let dead = self.gws[i].proc.as_mut().is_none_or(|p| !p.running());
            if dead {
                self.spawn_gw(i);
            }
        }
    }

    /// Waits until a leader serves and both nodes are connected to it.
    fn settle(&mut self) {
        let start = Instant::now();
        let mut said = false;
        loop {
            self.supervise();
            let out = self.lab.admin(&["node", "list", "--json"]);
            if out.code == 0 && out.stdout.matches("\"connected\"").count() == NODES.len() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the group did not settle: {out:?}"
            );
            if start.elapsed() > Duration::from_secs(10) && !said {
                said = true;
                let lease = testpg::rows(
                    &self.url,
                    "SELECT holder, generation, expires_at - now() FROM leader_lease",
                );
                eprintln!("fault test: slow to settle: lease {lease:?}; node list {out:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts the Slack bot on the emulator.
    fn start_bot(&mut self) {
        let script = format!(
            "SLACK_API_URL={} SLACK_BOT_TOKEN=xoxb-faults SLACK_APP_TOKEN=xapp-faults exec {BIN} --home {} moltbot run",
            self.slack.api_url,
            self.bot_home.display()
        );
        let opened = self.slack.calls_of("apps.connections.open").len();
        self.bot = Some(self.lab.spawn_cmd("sh", &["-c", &script]));
        // A mention before the bot's Socket Mode session is lost.
        wait_until(T, "the bot's Socket Mode session", || {
            (self.slack.calls_of("apps.connections.open").len() > opened && self.slack.connected())
                .then_some(())
        });
    }

    /// Asks the bot in Slack to run `echo LABEL-1` on `node`.
    fn mention(&mut self, label: &str, node: &str) {
        let e = Expect {
            label: label.to_string(),
            lines: 1,
            exit: 0,
            approval: false,
            evidence: false,
        };
        self.expects.insert(format!("echo {label}-1"), e);
        self.slack.mention(
            "U0ALICE",
            "C0LAB",
            &format!("<@U0MOLT> run echo {label}-1 on {node}"),
        );
        self.mentions.push(label.to_string());
    }

    /// Whether the bot answered the mention for `label` with its end.
    fn answered(&self, label: &str) -> bool {
        let want = format!("{label}-1");
        self.slack.calls_of("chat.update").iter().any(|u| {
            let t = u.body["text"].as_str().unwrap_or_default();
            t.contains("exited with code 0") && t.contains(&want)
        })
    }

    /// Submits a detached job; its id.
    fn detach(&mut self, e: Expect, node: &str) -> Option<u64> {
        let s = script(&e, &self.evidence);
        self.expects.insert(s.clone(), e);
        let out = self
            .lab
            .admin(&["run", "--detach", "--node", node, "--", "sh", "-c", &s]);
        let id = out.stdout.trim().parse().ok();
        if let Some(id) = id {
            self.accepted.push(id);
        } else {
            eprintln!("fault test: a submission was not accepted: {out:?}");
        }
        id
    }

    fn approve(&mut self, id: u64) -> Out {
        let out = self
            .lab
            .run(&self.alice, &["job", "approve", &id.to_string()]);
        if out.code == 0 {
            *self.approvals_ok.entry(id).or_default() += 1;
        }
        out
    }
}

/// The seed and rounds from the environment, or a fresh seed and 2.
fn seed_and_rounds() -> (u64, u32) {
    let seed = std::env::var("OPENCLAW_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let rounds = std::env::var("OPENCLAW_FAULT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    (seed, rounds)
}

fn setup() -> Option<World> {
    if testpg::bin_dir().is_none() {
        // Prints SKIPPED, or fails under OPENCLAW_REQUIRE_POSTGRES=1.
        testpg::shared("fault test");
        return None;
    }
    let pg = testpg::Server::start().unwrap();
    let url = pg.database().unwrap();
    let via =
        |r: &TcpRelay| url.replace(&format!(":{}/", pg.port), &format!(":{}/", r.addr.port()));
    // Each gateway on its own logs directory: job output lives in
    // PostgreSQL (issue 26 item 1), so the checker's "output exactly once"
    // holds across failovers without a shared filesystem.
    let logs = tempfile::tempdir().unwrap().keep();
    let gw2_logs = tempfile::tempdir().unwrap().keep();
    let ports = [free_udp_port(), free_udp_port()];
    let front: Vec<UdpProxy> = ports
        .iter()
        .map(|p| UdpProxy::start(&format!("127.0.0.1:{p}")))
        .collect();
    let db: Vec<TcpRelay> = (0..2)
        .map(|_| TcpRelay::start(&format!("127.0.0.1:{}", pg.port)))
        .collect();
    let lab = Lab::with_config(BIN, |c| tune(c, ports[0], &front[0], Some(&logs)));
    let out = lab.admin(&["gateway", "migrate-state", "--to", &via(&db[0])]);
    assert_eq!(out.code, 0, "{out:?}");
    // Every credential tries both relays.
    let both = format!("{},{}", front[0].addr, front[1].addr);
    edit_file(
        &lab.gw_home.join("client.toml"),
        "gateway = \"127.0.0.1:0\"",
        &format!("gateway = \"{both}\""),
    );
    let mut lab = lab;
    let gw2_home = lab.home("gw2");
    let out = lab.run(
        &gw2_home,
        &[
            "gateway",
            "join",
            "--state",
            &via(&db[1]),
            "--name",
            "test-gw-2",
            "--listen",
            &format!("127.0.0.1:{}", ports[1]),
            "--advertise",
            &front[1].addr.to_string(),
            "--ca-from",
            lab.gw_home.to_str().unwrap(),
            "--logs-dir",
            gw2_logs.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let cfg = gw2_home.join("gateway.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    tune(&mut text, ports[1], &front[1], None);
    std::fs::write(&cfg, text).unwrap();
    let mut fronts = front.into_iter();
    let mut dbs = db.into_iter();
    let gws = vec![
        Gw {
            name: "test-gw",
            home: lab.gw_home.clone(),
            proc: None,
            db: dbs.next().unwrap(),
            front: fronts.next().unwrap(),
        },
        Gw {
            name: "test-gw-2",
            home: gw2_home,
            proc: None,
            db: dbs.next().unwrap(),
            front: fronts.next().unwrap(),
        },
    ];
    let evidence = tempfile::Builder::new()
        .prefix("faults-evidence-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep();
    let mut w = World {
        lab,
        pg,
        url,
        gws,
        alice: PathBuf::new(),
        nodes: Vec::new(),
        evidence,
        gw_logs: Vec::new(),
        expects: HashMap::new(),
        accepted: Vec::new(),
        approvals_ok: BTreeMap::new(),
        held: Vec::new(),
        followers: Vec::new(),
        fanouts: Vec::new(),
        slack: testkit::slack::SlackEmulator::start(),
        bot_home: PathBuf::new(),
        bot: None,
        mentions: Vec::new(),
        orphaned: Vec::new(),
    };
    w.spawn_gw(0);
    // The lease row may name gw1 before its process serves (migrate-state
    // writes it): wait until gw1 answers a call, not only for the row.
    wait_until(T, "gw1 to lead and serve", || {
        (w.leader() == Some(0) && w.lab.admin(&["whoami"]).code == 0).then_some(())
    });
    w.spawn_gw(1);
    w.alice = w.lab.second_admin("alice");
    w.bot_home = w.lab.bot("moltbot", "slack:T0LAB");
    std::fs::write(
        w.bot_home.join("moltbot.toml"),
        "allowed_users = [\"U0ALICE\"]\napprovals = \"both\"\n",
    )
    .unwrap();
    w.start_bot();
    for name in NODES {
        let token = w.lab.token(&["--auto-approve", "--labels", "faults"]);
        let home = w.lab.enroll_with(&token, name, "faults");
        let toml = home.join("node.toml");
        edit_file(&toml, "# keep_alive = \"1s\"", "keep_alive = \"300ms\"");
        edit_file(
            &toml,
            "# idle_timeout = \"3s\"",
            "idle_timeout = \"1200ms\"",
        );
        let p = w.lab.start_node(&home);
        w.nodes.push(p);
    }
    w.settle();
    Some(w)
}

/// Starts the round's workload on a healthy group.
fn submit(w: &mut World, rng: &mut Rng, round: u32) {
    let expect = |k: u32, approval: bool, rng: &mut Rng| Expect {
        label: format!("r{round}j{k}"),
        lines: 5 + rng.below(20) as u32,
        exit: rng.below(4) as i32,
        approval,
        evidence: true,
    };
    for k in 0..2 {
        let e = expect(k, false, rng);
        let node = NODES[rng.below(2) as usize];
        w.detach(e, node);
    }
    for k in 2..4 {
        let e = expect(k, true, rng);
        let node = NODES[rng.below(2) as usize];
        if let Some(id) = w.detach(e, node) {
            w.held.push(id);
        }
    }
    // A job followed in the foreground, as `openclaw run` does.
    let e = expect(4, false, rng);
    let s = script(&e, &w.evidence);
    let label = e.label.clone();
    w.expects.insert(s.clone(), e);
    let node = NODES[rng.below(2) as usize];
    let home = w.lab.gw_home.clone();
    let p = w
        .lab
        .spawn(&home, &["run", "--node", node, "--", "sh", "-c", &s]);
    w.followers.push((label, p));
    // A job asked for in Slack, through the bot, answered before the
    // fault: a mention in flight when the leader dies is not always
    // answered yet (docs/HA.md), and a restarted bot does not follow the
    // jobs its predecessor started. Its answer after each fault is checked
    // by the next round's mention and at the end.
    let label = format!("r{round}c");
    w.mention(&label, NODES[rng.below(2) as usize]);
    let deadline = Instant::now() + T;
    while !w.answered(&label) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // A fan-out to the nodes' label, every other round.
    if rng.below(2) == 0 {
        let e = expect(5, false, rng);
        let s = script(&e, &w.evidence);
        w.expects.insert(s.clone(), e);
        let p = w.lab.spawn(
            &home,
            &["run", "--all", "--label", "faults", "--", "sh", "-c", &s],
        );
        w.fanouts.push(p);
    }
}

/// Injects `fault`, holds it `hold`, approving a held job meanwhile, and
/// heals it.
fn inject(w: &mut World, fault: Fault, hold: Duration, during: Option<u64>) {
    let leader = w.leader().unwrap_or(0);
    match fault {
        Fault::KillLeader => {
            if let Some(p) = w.gws[leader].proc.as_mut() {
                p.kill();
            }
        }
        Fault::PauseLeader => {
            if let Some(p) = &w.gws[leader].proc {
                p.signal("STOP");
            }
        }
        Fault::RestartDatabase => w.pg.restart().unwrap(),
        Fault::BlackholeDatabase => w.gws[leader].db.block(true),
        Fault::RestartBot => {
            if let Some(mut b) = w.bot.take() {
                b.kill();
            }
            let unanswered: Vec<String> = w
                .mentions
                .iter()
                .filter(|l| !w.answered(l))
                .cloned()
                .collect();
            w.mentions.retain(|l| !unanswered.contains(l));
            w.orphaned.extend(unanswered);
        }
        Fault::PartitionNode(n) => {
            let pid = w.nodes[n].pid();
            for g in &w.gws {
                g.front.cut_process(Some(pid));
            }
        }
    }
    if let Some(id) = during {
        w.approve(id);
    }
    std::thread::sleep(hold);
    match fault {
        Fault::KillLeader | Fault::RestartDatabase => {}
        Fault::RestartBot => w.start_bot(),
        Fault::PauseLeader => {
            if let Some(p) = &w.gws[leader].proc {
                p.signal("CONT");
            }
        }
        Fault::BlackholeDatabase => w.gws[leader].db.block(false),
        Fault::PartitionNode(_) => {
            for g in &w.gws {
                g.front.cut_process(None);
            }
        }
    }
}

/// Everything the test saw of every job, read once the group settled.
fn history(w: &mut World) -> Vec<JobHistory> {
    // Wait for the workload to end (bounded: what has not ended by then is
    // the checker's to report).
    let open = "('queued','awaiting-approval','starting','running')";
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let q = format!("SELECT count(*) FROM jobs WHERE state IN {open}");
        let n = testpg::rows(&w.url, &q)
            .ok()
            .and_then(|r| r.first()?.first()?.clone())
            .unwrap_or_default();
        if n == "0" {
            break;
        }
        if Instant::now() + Duration::from_secs(1) > deadline {
            let rows = testpg::rows(
                &w.url,
                &format!("SELECT id, state FROM jobs WHERE state IN {open}"),
            );
            eprintln!("still open after 60 s: {rows:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut followed: HashMap<String, (i32, String)> = HashMap::new();
    // A follower still running after T is killed: it shows as code -1
    // and what it printed, a violation with its job.
    let done = |mut p: Proc| {
        let deadline = Instant::now() + T;
        while p.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if p.running() {
            eprintln!("fault test: a follower did not end: {}", p.stderr());
            p.kill();
            let out = std::fs::read_to_string(&p.stdout_path).unwrap_or_default();
            return (-1, out);
        }
        let out = p.wait(T);
        (out.code, out.stdout)
    };
    for (label, p) in std::mem::take(&mut w.followers) {
        followed.insert(label, done(p));
    }
    for p in std::mem::take(&mut w.fanouts) {
        done(p);
    }
    let applied: Vec<u64> = testpg::rows(
        &w.url,
        "SELECT target FROM audit WHERE action = 'job.approve'",
    )
    .unwrap()
    .into_iter()
    .filter_map(|r| r.first()?.clone()?.parse().ok())
    .collect();
    let mut runs: HashMap<u64, u32> = HashMap::new();
    for f in std::fs::read_dir(&w.evidence).unwrap().flatten() {
        for l in std::fs::read_to_string(f.path()).unwrap().lines() {
            *runs.entry(l.trim().parse().unwrap_or(0)).or_default() += 1;
        }
    }
    let db: Vec<(u64, String)> = testpg::rows(&w.url, "SELECT id, state FROM jobs ORDER BY id")
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap().parse().unwrap(),
                r[1].clone().unwrap_or_default(),
            )
        })
        .collect();
    let mut out = Vec::new();
    for (id, db_state) in db {
        let show = w
            .lab
            .admin(&["job", "show", &id.to_string(), "--json"])
            .ok();
        let j: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
        // A script's job by its script, a chat job by its command line.
        let argv: Vec<&str> = j["argv"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let key = argv.get(2).copied().filter(|_| argv[0] == "sh");
        let key = key.map_or_else(|| argv.join(" "), str::to_string);
        let Some(expect) = w.expects.get(&key).cloned() else {
            continue;
        };
        let logs = w.lab.admin(&["job", "logs", &id.to_string()]);
        let is_member = !j["fanout"].is_null();
        let seen = Seen {
            states: vec![
                db_state,
                j["state"].as_str().unwrap_or_default().to_string(),
            ],
            exit_code: j["exit_code"].as_i64().map(|c| c as i32),
            output: logs.stdout,
            runs: runs.get(&id).copied().unwrap_or(0),
            approvals_applied: applied.iter().filter(|a| **a == id).count() as u32,
            approvals_accepted: w.approvals_ok.get(&id).copied().unwrap_or(0),
            followed: if is_member {
                None
            } else {
                followed.get(&expect.label).cloned()
            },
        };
        if seen.states.last().is_some_and(|st| st != "exited") {
            eprintln!(
                "fault test: job {id} ({}, on {}) ended {}: {} ({} line(s) stored, ran {} time(s))",
                expect.label,
                j["node"],
                j["state"],
                j["reason"],
                seen.output.lines().count(),
                seen.runs
            );
        }
        out.push(JobHistory { id, expect, seen });
    }
    out
}

#[test]
fn a_seeded_schedule_of_faults_keeps_every_job_and_approval_exactly_once() {
    let (seed, rounds) = seed_and_rounds();
    eprintln!(
        "fault test: seed {seed}, {rounds} round(s); replay with OPENCLAW_FAULT_SEED={seed} OPENCLAW_FAULT_ROUNDS={rounds}"
    );
    let Some(mut w) = setup() else {
        return;
    };
    let mut rng = Rng::new(seed);
    let mut schedule: Vec<String> = Vec::new();
    let started = Instant::now();
    for round in 0..rounds {
        submit(&mut w, &mut rng, round);
        let fault = pick(&mut rng);
        // A leader's fault lasts past its lease (1.5 s), so it takes over.
        let leader_fault = matches!(
            fault,
            Fault::KillLeader | Fault::PauseLeader | Fault::BlackholeDatabase
        );
        let hold = Duration::from_millis(if leader_fault { 2500 } else { 1500 } + rng.below(1500));
        let (generation, dropped) = (w.generation(), w.cut_dropped());
        // Let the jobs start, then strike.
        std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
        let during = (!w.held.is_empty() && rng.below(2) == 0).then(|| w.held.remove(0));
        let line = format!(
            "round {round}: {fault} for {:.1}s{}",
            hold.as_secs_f64(),
            during.map_or(String::new(), |id| format!(
                ", approving job {id} meanwhile"
            ))
        );
        eprintln!("{line} (at {:.1}s)", started.elapsed().as_secs_f64());
        schedule.push(line);
        inject(&mut w, fault, hold, during);
        w.settle();
        if fault == Fault::RestartBot {
            // The restarted bot answers a new mention.
            w.mention(&format!("r{round}b"), NODES[rng.below(2) as usize]);
        }
        // The fault happened: a new leader, or the node's datagrams dropped.
        let took = match fault {
            _ if leader_fault => w.generation() > generation,
            Fault::PartitionNode(_) => w.cut_dropped() > dropped,
            _ => true,
        };
        assert!(
            took,
            "seed {seed}: {fault} had no effect (generation {generation:?} to {:?})\nschedule:\n  {}",
            w.generation(),
            schedule.join("\n  ")
        );
        // The held jobs get their approval now: some twice.
        for id in std::mem::take(&mut w.held) {
            w.approve(id);
            if rng.below(3) == 0 {
                let again = w.approve(id);
                assert_ne!(
                    again.code, 0,
                    "a second approval of job {id} was accepted: {again:?}"
                );
            }
        }
        // An approval during a fault that was not accepted is given again.
        let missed: Vec<u64> = schedule_missed(&w);
        for id in missed {
            w.approve(id);
        }
    }
    let jobs = history(&mut w);
    // Every mention was answered with its job's end, bot restarts or not.
    for label in &w.mentions {
        let deadline = Instant::now() + T;
        while !w.answered(label) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !w.answered(label) {
            let calls = w.slack.calls();
            let said: Vec<String> = calls
                .iter()
                .rev()
                .take(8)
                .filter_map(|c| c.body["text"].as_str().map(str::to_string))
                .collect();
            let bot = w.bot.as_ref().map(Proc::stderr).unwrap_or_default();
            let tail: Vec<&str> = bot.lines().rev().take(15).collect();
            panic!(
                "seed {seed}: the bot never answered the mention for {label}; its last messages, newest first: {said:?}\nschedule:\n  {}\nthe bot's log, last lines first:\n{}",
                schedule.join("\n  "),
                tail.join("\n")
            );
        }
    }
    if !w.orphaned.is_empty() {
        eprintln!(
            "fault test: mentions in flight when the bot was killed (their jobs checked, not their answers): {:?}",
            w.orphaned
        );
    }
    let mut claims: Vec<LeaseClaim> = Vec::new();
    for path in &w.gw_logs {
        claims.extend(lease_claims(
            &std::fs::read_to_string(path).unwrap_or_default(),
        ));
    }
    let violations = check(&jobs, &claims);
    let mut ends: BTreeMap<&str, u32> = BTreeMap::new();
    for j in &jobs {
        *ends
            .entry(j.seen.states.last().map_or("", String::as_str))
            .or_default() += 1;
    }
    let lease: Vec<String> = claims
        .iter()
        .filter(|c| c.served)
        .map(|c| format!("{}@{}", c.gateway, c.generation))
        .collect();
    eprintln!("fault test: jobs ended {ends:?}; leaders served {lease:?}");
    eprintln!(
        "fault test: {} job(s), {} lease claim(s), {} violation(s) in {:.1}s",
        jobs.len(),
        claims.len(),
        violations.len(),
        started.elapsed().as_secs_f64()
    );

    assert!(
        violations.is_empty(),
        "seed {seed} ({rounds} rounds)\nschedule:\n  {}\nviolations:\n  {}",
        schedule.join("\n  "),
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    // No accepted job vanished: each is in the history the checker read.
    for id in &w.accepted {
        assert!(
            jobs.iter().any(|j| j.id == *id),
            "seed {seed}: job {id} was accepted and is not in the state"
        );
    }
    assert!(!w.accepted.is_empty(), "no job was accepted");
    assert!(
        !claims.is_empty(),
        "no lease claim read from the gateways' logs"
    );
}

/// Held jobs still awaiting approval with none accepted (an approval sent
/// during a fault that did not get through).
fn schedule_missed(w: &World) -> Vec<u64> {
    let rows = testpg::rows(
        &w.url,
        "SELECT id FROM jobs WHERE state = 'awaiting-approval' ORDER BY id",
    )
    .unwrap_or_default();
    rows.into_iter()
        .filter_map(|r| r.first()?.clone()?.parse().ok())
        .filter(|id| !w.approvals_ok.contains_key(id))
        .collect()
}
