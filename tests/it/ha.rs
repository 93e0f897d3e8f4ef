//! A leader and a hot standby on one real PostgreSQL server (started in a
//! temporary directory by `testpg`): real gateways, a real node agent, real
//! QUIC. The leader is killed (SIGKILL) or paused (SIGSTOP); the standby
//! takes the lease, the node moves to it, a running job's output arrives
//! exactly once, and a paused leader that wakes steps down without a write.
//! SKIPPED without PostgreSQL (a failure under .ci/run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::{Lab, Proc, edit_file, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

/// Fast failure detection for the test: heartbeats every 300 ms, a dead
/// node after 1.2 s, a lease of 1.5 s, job output in a directory both
/// gateways share.
fn tune(cfg: &mut String, logs: Option<&Path>) {
    // Metrics on a free port (metrics.addr), standby or leader.
    *cfg = cfg
        .replace("[metrics]\n", "[metrics]\nlisten = \"127.0.0.1:0\"\n")
        .replace("\nlisten = \"\"\n", "\n");
    // Every gateway reads its own policy: the same rule on both. A job
    // `echo held…` waits for alice's approval.
    *cfg = cfg.replace(
        "[limits]\n",
        "[[policy.rules]]\ncommands = [\"echo held*\"]\naction = \"approve\"\napprovers = [\"alice\"]\n\n[limits]\n",
    );
    // OPENCLAW_FAILOVER_DEFAULTS=1: the shipped timings (1 s heartbeats,
    // 3 s dead_after, a 1.5 s lease, the nodes' group timing of 500 ms
    // keep-alive and 1.5 s idle timeout), for the figures.
    if std::env::var_os("OPENCLAW_FAILOVER_DEFAULTS").is_some() {
        if let Some(l) = logs {
            *cfg = cfg.replace(
                "# lease_ttl = \"1500ms\"",
                &format!("logs_dir = \"{}\"", l.display()),
            );
        }
        return;
    }
    let logs = logs.map_or(String::new(), |l| {
        format!("\nlogs_dir = \"{}\"", l.display())
    });
    *cfg = cfg
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

/// A two-gateway group on PostgreSQL with node `worker-ha` (see
/// [`group`]); other test modules (the output and fault tests) start theirs
/// with it.
pub(crate) struct Pair {
    pub lab: Lab,
    pub url: String,
    pub gw2_home: PathBuf,
    /// Admin homes that dial only gw1, only gw2.
    pub only: [PathBuf; 2],
    pub gw2: Option<Proc>,
    pub gw1_addr: String,
    pub gw2_addr: String,
    pub _node: Proc,
    /// The logs directories of gw1 and gw2 (the same one when shared).
    pub logs: [PathBuf; 2],
}

/// Where the gateways of a [`group`] keep their logs directories.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logs {
    /// One directory both gateways see (a mount).
    Shared,
    /// Each its own: nothing on disk survives a failover, so job output
    /// must come from the database.
    Separate,
}

/// gw1 (migrated to PostgreSQL, the leader), gw2 (joined, a standby), an
/// admin credential that knows both, and node `worker-ha` connected.
fn pair(url: String) -> Pair {
    pair_with(url, |_| {})
}

/// [`pair`], with `node_edit` given the node's node.toml before it starts.
fn pair_with(url: String, node_edit: impl FnOnce(&Path)) -> Pair {
    pair_edited(url, |_| {}, node_edit)
}

/// [`pair_with`], with `cfg_edit` given both gateways' gateway.toml first
/// (every gateway reads its own policy).
fn pair_edited(url: String, cfg_edit: impl Fn(&mut String), node_edit: impl FnOnce(&Path)) -> Pair {
    group(url, Logs::Shared, cfg_edit, node_edit)
}

/// gw1 (migrated to the PostgreSQL database at `url`, the leader), gw2
/// (joined, a standby) with their logs directories as `logs` says, an
/// admin credential that knows both, and node `worker-ha` connected, with
/// the test's fast failure detection. `cfg_edit` edits both gateways'
/// gateway.toml, `node_edit` the node's node.toml, before they start.
pub(crate) fn group(
    url: String,
    logs: Logs,
    cfg_edit: impl Fn(&mut String),
    node_edit: impl FnOnce(&Path),
) -> Pair {
    let gw1_logs = tempfile::tempdir().unwrap().keep();
    let gw2_logs = match logs {
        Logs::Shared => gw1_logs.clone(),
        Logs::Separate => tempfile::tempdir().unwrap().keep(),
    };
    let mut lab = Lab::with_config(BIN, |c| {
        cfg_edit(c);
        tune(c, Some(&gw1_logs));
    });
    let out = lab.admin(&["gateway", "migrate-state", "--to", &url]);
    assert_eq!(out.code, 0, "{out:?}");
    lab.start_gateway();
    let gw1_addr = lab.addr.clone().unwrap();
    let (gw2_home, gw2, gw2_addr) = join_standby(&mut lab, &url, &gw2_logs, &cfg_edit);
    // The admin tries the leader, then the standby.
    edit_file(
        &lab.gw_home.join("client.toml"),
        "gateway = \"127.0.0.1:0\"",
        &format!("gateway = \"{gw1_addr},{gw2_addr}\""),
    );
    // The standby refuses sessions while gw1 leads.
    let only_gw1 = admin_of_one(&mut lab, &gw1_addr);
    let only_gw2 = admin_of_one(&mut lab, &gw2_addr);
    wait_until(T, "gw2 registered and waiting", || {
        let st = status(&lab.gw_home);
        let gws = st["gateways"].as_array().unwrap().clone();
        (gws.len() == 2 && gws.iter().all(|g| g["seen_secs_ago"].is_i64())).then_some(())
    });
    // The standby's metrics say it is not the leader.
    let page = metrics(&gw2_home);
    assert!(page.contains("openclaw_leader 0"), "{page}");
    assert!(page.contains("openclaw_lease_attempts_total"), "{page}");
    let human = lab.admin(&["gateway", "status"]).ok().stdout;
    assert!(
        human.contains("leader:     test-gw (generation")
            && human
                .lines()
                .any(|l| l.contains("test-gw-2") && l.contains("standby (seen")),
        "{human}"
    );
    let out = lab.run(&only_gw2, &["whoami"]);
    assert_ne!(out.code, 0, "a standby must not serve: {out:?}");
    // A token names both gateways; the node dials them in order.
    let token = lab.token(&["--auto-approve", "--labels", "gpu"]);
    let node_home = lab.enroll_with(&token, "worker-ha", "gpu");
    let node_cfg = std::fs::read_to_string(node_home.join("node.toml")).unwrap();
    assert!(
        node_cfg.contains(&format!("{gw1_addr},{gw2_addr}")),
        "{node_cfg}"
    );
    if std::env::var_os("OPENCLAW_FAILOVER_DEFAULTS").is_none() {
        edit_file(
            &node_home.join("node.toml"),
            "# keep_alive = \"1s\"",
            "keep_alive = \"300ms\"",
        );
        edit_file(
            &node_home.join("node.toml"),
            "# idle_timeout = \"3s\"",
            "idle_timeout = \"1200ms\"",
        );
    }
    node_edit(&node_home.join("node.toml"));
    let node = lab.start_node(&node_home);
    lab.wait_node("worker-ha", "connected", T);
    Pair {
        lab,
        url,
        gw2_home,
        only: [only_gw1, only_gw2],
        gw2: Some(gw2),
        gw1_addr,
        gw2_addr,
        _node: node,
        logs: [gw1_logs, gw2_logs],
    }
}

/// Joins `test-gw-2` to the state at `url` (its own home and certificate,
/// the shared CA, `cfg_edit` and the test timings on its gateway.toml) and
/// starts it; its home, process and address.
fn join_standby(
    lab: &mut Lab,
    url: &str,
    logs: &Path,
    cfg_edit: &dyn Fn(&mut String),
) -> (PathBuf, Proc, String) {
    let gw2_home = lab.home("gw2");
    let out = lab.run(
        &gw2_home,
        &[
            "gateway",
            "join",
            "--state",
            url,
            "--name",
            "test-gw-2",
            "--listen",
            "127.0.0.1:0",
            "--ca-from",
            lab.gw_home.to_str().unwrap(),
            "--logs-dir",
            logs.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let gw2_cfg = gw2_home.join("gateway.toml");
    let mut text = std::fs::read_to_string(&gw2_cfg).unwrap();
    cfg_edit(&mut text);
    tune(&mut text, None);
    std::fs::write(&gw2_cfg, text).unwrap();
    let mut gw2 = lab.spawn(&gw2_home, &["gateway", "run"]);
    let gw2_addr = wait_until(T, "gw2's gateway.addr", || {
        assert!(gw2.running(), "gw2 stopped: {}", gw2.stderr());
        std::fs::read_to_string(gw2_home.join("gateway.addr"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    (gw2_home, gw2, gw2_addr)
}

/// A copy of the admin credential that dials only `addr`.
fn admin_of_one(lab: &mut Lab, addr: &str) -> PathBuf {
    let home = lab.home("admin-of-one");
    std::fs::create_dir_all(&home).unwrap();
    for f in ["client.crt", "client.key", "ca.crt"] {
        std::fs::copy(lab.gw_home.join(f), home.join(f)).unwrap();
    }
    std::fs::write(
        home.join("client.toml"),
        format!("name = \"admin\"\ngateway = \"{addr}\"\nfollow_group = false\n"),
    )
    .unwrap();
    home
}

/// Whether the gateway `admin` dials leads and holds the node.
pub(crate) fn holds_node(lab: &Lab, admin: &Path) -> bool {
    let out = lab.run(admin, &["node", "list", "--json"]);
    out.code == 0 && out.stdout.contains("\"connected\"")
}

/// The `/metrics` page of the gateway in `home`, if it serves one now.
fn metrics_or_none(home: &Path) -> Option<String> {
    let addr = std::fs::read_to_string(home.join("metrics.addr")).ok()?;
    testkit::http_get(&addr, "/metrics").ok()
}

/// The `/metrics` page of the gateway in `home`.
fn metrics(home: &Path) -> String {
    wait_until(T, "the metrics page", || metrics_or_none(home))
}

/// Whether the gateway process `gw` has tried the lease and waits as a
/// standby (it takes over as soon as the leader's lease lapses).
fn standing_by(gw: &testkit::Proc) -> bool {
    gw.stderr().contains("standby: another gateway leads")
}

pub(crate) fn status(home: &Path) -> serde_json::Value {
    let out = std::process::Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(["gateway", "status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A job that prints `n` numbered lines, one every 100 ms.
fn counting_job(lab: &Lab, n: u32) -> u64 {
    let script = format!("for i in $(seq 1 {n}); do echo line-$i; sleep 0.1; done");
    lab.detach(&["--node", "worker-ha", "--", "sh", "-c", &script])
}

fn assert_lines_once(lab: &Lab, job: u64, n: u32) {
    let out = lab.admin(&["job", "logs", &job.to_string()]).ok();
    let want: Vec<String> = (1..=n).map(|i| format!("line-{i}")).collect();
    let got: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(got, want, "every line exactly once, in order");
}

#[test]
fn the_standby_takes_over_when_the_leader_is_killed_and_the_job_goes_on() {
    let Some(pg) = testpg::shared("ha test: failover on SIGKILL") else {
        return;
    };
    let mut p = pair(pg.database().unwrap());
    let st = status(&p.lab.gw_home);
    assert_eq!(st["leader"], "test-gw", "{st}");
    let first_generation = st["generation"].as_u64().unwrap();
    // False failovers, for figures (OPENCLAW_FALSE_FAILOVER_SECS=600, with
    // OPENCLAW_FAILOVER_DEFAULTS=1 for the shipped timings): no fault, the
    // machine loaded by two busy loops and a job a second; the leader
    // changes the lease saw are counted and printed, not asserted. A
    // gateway that steps down is not restarted here, so a count past one
    // reads "at least".
    if let Some(secs) = std::env::var("OPENCLAW_FALSE_FAILOVER_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        let burners: Vec<Proc> = (0..2)
            .map(|_| p.lab.spawn_cmd("sh", &["-c", "while :; do :; done"]))
            .collect();
        let start = Instant::now();
        let (mut ok, mut failed) = (0u32, 0u32);
        while start.elapsed() < Duration::from_secs(secs) {
            let t = Instant::now();
            let out = p
                .lab
                .run_job(&["--node", "worker-ha", "--", "seq", "1", "100"]);
            if out.code == 0 {
                ok += 1;
            } else {
                failed += 1;
            }
            std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
        }
        let st = status(&p.lab.gw_home);
        let generation = st["generation"].as_u64().unwrap();
        // A node that gave up on a live leader (its idle timeout ran out)
        // reconnects: not a failover, but counted too.
        let node_log = p._node.stderr();
        let reconnects = node_log.matches("reconnecting in").count();
        eprintln!(
            "false failovers over {secs} s under load: {} (generation {first_generation} to {generation}, leader {}); node reconnections {reconnects}; jobs {ok} ok, {failed} failed",
            generation - first_generation,
            st["leader"]
        );
        drop(burners);
        drop(p.gw2.take());
        return;
    }
    // A job waiting for approval when the leader dies.
    let alice = p.lab.second_admin("alice");
    let cred = std::fs::read_to_string(alice.join("client.toml")).unwrap();
    assert!(
        cred.contains(&format!("gateway = \"{},{}\"", p.gw1_addr, p.gw2_addr)),
        "a credential made through a list gets the list: {cred}"
    );
    let held = p
        .lab
        .detach(&["--node", "worker-ha", "--", "echo", "held-over"]);
    assert_eq!(p.lab.job(held)["state"], "awaiting-approval");
    let job = counting_job(&p.lab, 40);
    p.lab.wait_job(job, "running", T);
    // And one followed in the foreground, as `openclaw run` does: it must
    // reconnect to the new leader and print every line once, then exit
    // with the job's code.
    let gw_home = p.lab.gw_home.clone();
    let script = "for i in $(seq 1 40); do echo fg-$i; sleep 0.1; done; exit 7";
    let follower = p.lab.spawn(
        &gw_home,
        &["run", "--node", "worker-ha", "--", "sh", "-c", script],
    );
    // Killed once the follower is streaming the job's output.
    wait_until(T, "the follower to print", || {
        std::fs::read_to_string(&follower.stdout_path)
            .ok()
            .filter(|o| o.contains("fg-1\n"))
    });

    let killed = Instant::now();
    p.lab.stop_gateway(true);
    // gw2 leads, and the node (which tried gw1, then gw2) is back.
    wait_until(T, "the node back on the standby", || {
        holds_node(&p.lab, &p.only[1]).then_some(())
    });
    let killed_to_back = killed.elapsed();
    eprintln!(
        "failover: node connected to the new leader {:.2}s after SIGKILL",
        killed_to_back.as_secs_f64()
    );
    // The admin's list finds the new leader too, and node list names it.
    assert_eq!(p.lab.admin(&["whoami"]).code, 0);
    let table = p.lab.admin(&["node", "list"]).ok().stdout;
    assert!(
        table.contains("1 connected node(s) held by gateway test-gw-2"),
        "{table}"
    );
    let nodes: serde_json::Value =
        serde_json::from_str(&p.lab.admin(&["node", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(nodes[0]["gateway"], "test-gw-2", "{nodes}");
    let page = metrics(&p.gw2_home);
    for want in [
        "openclaw_leader 1",
        "openclaw_failovers_total 1",
        "openclaw_lease_renewals_total",
    ] {
        assert!(page.contains(want), "{want} missing:\n{page}");
    }
    let st = status(&p.gw2_home);
    assert_eq!(st["leader"], "test-gw-2", "{st}");
    assert_eq!(
        st["generation"].as_u64().unwrap(),
        first_generation + 1,
        "{st}"
    );
    // The approval waited through the failover; alice gives it to gw2.
    let out = p.lab.run(&alice, &["job", "approve", &held.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    p.lab.wait_job(held, "exited", T);
    let out = p.lab.admin(&["job", "logs", &held.to_string()]).ok();
    assert_eq!(out.stdout, "held-over\n");
    // The job ran on through the failover; its output arrived once.
    let done = p.lab.wait_job(job, "exited", T);
    assert_eq!(done["exit_code"], 0, "{done}");
    assert_lines_once(&p.lab, job, 40);
    let out = follower.wait(T);
    assert_eq!(out.code, 7, "the remote exit code comes back: {out:?}");
    let want: Vec<String> = (1..=40).map(|i| format!("fg-{i}")).collect();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        want,
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("reconnected; resuming"),
        "{}",
        out.stderr
    );
    // More failovers for figures (OPENCLAW_FAILOVER_TRIALS=20): restart
    // the dead gateway (a standby now), kill the leader, time until the
    // other one holds the node; alternate.
    let trials: usize = std::env::var("OPENCLAW_FAILOVER_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let mut times = vec![killed_to_back];
    let gw2_addr = p.gw2_addr.clone();
    for trial in 1..trials {
        // Odd trials: gw2 leads and dies; even: gw1.
        if trial % 2 == 1 {
            p.lab.start_gateway_standby();
            wait_until(T, "gw1 to stand by", || {
                standing_by(p.lab.gateway()).then_some(())
            });
            let wall = std::time::SystemTime::now();
            let gw2_log = p.gw2.as_ref().unwrap().stderr_path.clone();
            drop(p.gw2.take());
            let t = Instant::now();
            wait_until(T, "gw1 holds the node", || {
                holds_node(&p.lab, &p.only[0]).then_some(())
            });
            times.push(t.elapsed());
            timeline(
                wall,
                &[
                    ("node", p._node.stderr()),
                    ("gw1", p.lab.gateway().stderr()),
                    ("gw2", std::fs::read_to_string(gw2_log).unwrap_or_default()),
                ],
            );
        } else {
            p.gw2 = Some(
                p.lab
                    .spawn(&p.gw2_home, &["gateway", "run", "--listen", &gw2_addr]),
            );
            wait_until(T, "gw2 to stand by", || {
                standing_by(p.gw2.as_ref().unwrap()).then_some(())
            });
            let wall = std::time::SystemTime::now();
            let out = p.lab.stop_gateway(true);
            let t = Instant::now();
            wait_until(T, "gw2 holds the node", || {
                holds_node(&p.lab, &p.only[1]).then_some(())
            });
            times.push(t.elapsed());
            timeline(
                wall,
                &[
                    ("node", p._node.stderr()),
                    ("gw1", out.stderr),
                    ("gw2", p.gw2.as_ref().unwrap().stderr()),
                ],
            );
        }
    }
    let mut sorted = times.clone();
    sorted.sort();
    eprintln!(
        "failover over {} trials: p50 {:.2}s, max {:.2}s, all {:?}",
        sorted.len(),
        sorted[sorted.len() / 2].as_secs_f64(),
        sorted[sorted.len() - 1].as_secs_f64(),
        times
            .iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    if trials > 1 {
        return;
    }
    // New work goes through the new leader.
    let out = p.lab.run_job(&[
        "--node",
        "worker-ha",
        "--",
        "sh",
        "-c",
        "echo after; exit 4",
    ]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stdout.contains("after"), "{out:?}");
    // The old leader comes back as a standby, and stops cleanly on SIGTERM.
    p.lab.start_gateway_standby();
    wait_until(T, "gw1 waiting as a standby", || {
        let page = metrics_or_none(&p.lab.gw_home)?;
        page.contains("openclaw_leader 0").then_some(())
    });
    let out = p.lab.stop_gateway(false);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("stopped while a standby"),
        "{}",
        out.stderr
    );
    drop(p.gw2.take());
    let _ = &p.url;
}

/// Prints the log lines stamped after `wall`, with seconds since it.
fn timeline(wall: std::time::SystemTime, logs: &[(&str, String)]) {
    let t0 = wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut rows = vec![];
    for (who, text) in logs {
        for line in text.lines() {
            let line = strip_ansi(line);
            let Some(ts) = line.split_whitespace().next() else {
                continue;
            };
            let Ok(t) = chrono_free_parse(ts) else {
                continue;
            };
            if t >= t0 - 0.6 {
                rows.push((
                    t - t0,
                    format!(
                        "{who}: {}",
                        &line[ts.len()..].chars().take(150).collect::<String>()
                    ),
                ));
            }
        }
    }
    rows.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    eprintln!("---- trial timeline");
    for (d, l) in rows {
        eprintln!("{d:+.3} {l}");
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if c == '\u{1b}' {
            esc = true;
            continue;
        }
        if esc {
            if c == 'm' {
                esc = false;
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// 2026-12-06T05:59:01.123456Z → seconds since the epoch (UTC).
fn chrono_free_parse(ts: &str) -> Result<f64, ()> {
    let ts = ts.strip_suffix('Z').ok_or(())?;
    let (date, time) = ts.split_once('T').ok_or(())?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| ()))
        .collect::<Result<_, _>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().map_err(|_| ()))
        .collect::<Result<_, _>>()?;
    if d.len() != 3 || h.len() != 3 {
        return Err(());
    }
    let (y, m, day) = (d[0], d[1], d[2]);
    let a = (14 - m) / 12;
    let yy = y + 4800 - a;
    let mm = m + 12 * a - 3;
    let jdn = day + (153 * mm + 2) / 5 + 365 * yy + yy / 4 - yy / 100 + yy / 400 - 32045;
    let days = jdn - 2440588;
    let f: f64 = format!("0.{frac}").parse().map_err(|_| ())?;
    Ok((days * 86400 + h[0] * 3600 + h[1] * 60 + h[2]) as f64 + f)
}

/// Every row the gateways write, as text, to compare before and after.
fn snapshot(url: &str) -> String {
    let mut out = String::new();
    for q in [
        "SELECT name, state, last_seen, last_addr, labels FROM nodes ORDER BY name",
        "SELECT id, state, stdout_bytes, stderr_bytes, exit_code FROM jobs ORDER BY id",
        "SELECT id, action, target FROM audit ORDER BY id",
        "SELECT id, uses_left, revoked FROM tokens ORDER BY id",
        "SELECT serial FROM revoked_certs ORDER BY serial",
        "SELECT job, stream, pos, length(data) FROM job_output ORDER BY job, stream, pos",
    ] {
        for row in testpg::rows(url, q).unwrap() {
            let cols: Vec<&str> = row.iter().map(|c| c.as_deref().unwrap_or("NULL")).collect();
            out.push_str(&cols.join("|"));
            out.push('\n');
        }
    }
    out
}

#[test]
fn a_paused_leader_that_wakes_after_a_takeover_steps_down_without_a_write() {
    let Some(pg) = testpg::shared("ha test: fencing on SIGSTOP") else {
        return;
    };
    let mut p = pair(pg.database().unwrap());
    let gw1 = p.lab.gateway().pid();
    let job = counting_job(&p.lab, 20);
    p.lab.wait_job(job, "running", T);
    p.lab.gateway().signal("STOP");
    wait_until(T, "gw2 to lead", || {
        (status(&p.gw2_home)["leader"] == "test-gw-2").then_some(())
    });
    let t0 = Instant::now();
    let mut n = 0;
    wait_until(T, "the node back on the new leader", || {
        let out = p.lab.admin(&["node", "list", "--json"]);
        n += 1;
        if t0.elapsed() > Duration::from_secs(20) && n % 5 == 0 {
            eprintln!("DEBUG {out:?}\nNODE: {}", p._node.stderr());
        }
        (out.code == 0 && out.stdout.contains("\"connected\"")).then_some(())
    });
    let done = p.lab.wait_job(job, "exited", T);
    assert_eq!(done["exit_code"], 0, "{done}");
    // Quiet now: nothing should change the state but the old leader.
    // The new leader's last writes (the job's end) have landed once two
    // looks a moment apart agree.
    let mut before = snapshot(&p.url);
    wait_until(T, "the state to settle", || {
        std::thread::sleep(Duration::from_millis(100));
        let now = snapshot(&p.url);
        let same = now == before;
        before = now;
        same.then_some(())
    });
    p.lab.gateway().signal("CONT");
    // It wakes with a session, a job and a node it thinks are its own; its
    // keeper learns the lease moved on, and it stops.
    let out = p.lab.stop_gateway_when_it_exits(T);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("lost the leader lease"),
        "{}",
        out.stderr
    );
    eprintln!(
        "the woken leader's refused writes: {}",
        out.stderr.matches("fenced").count()
    );
    if std::env::var_os("OPENCLAW_SHOW_LOGS").is_some() {
        eprintln!("{}", out.stderr);
    }
    assert_eq!(
        snapshot(&p.url),
        before,
        "the woken leader (pid {gw1}) wrote"
    );
    assert_lines_once(&p.lab, job, 20);
    let st = status(&p.gw2_home);
    assert_eq!(st["leader"], "test-gw-2", "{st}");
    drop(p.gw2.take());
}

#[test]
fn a_leader_cut_off_from_the_database_stops_before_its_lease_lapses() {
    let Some(pg) = testpg::shared("ha test: split brain") else {
        return;
    };
    let mut p = pair(pg.database().unwrap());
    // Restart gw1 with its database behind a relay that can be cut; gw2
    // takes over meanwhile, so stop it first and start it again after.
    let relay = testkit::TcpRelay::start(&format!("127.0.0.1:{}", pg.port));
    let relayed = p.url.replace(
        &format!(":{}/", pg.port),
        &format!(":{}/", relay.addr.port()),
    );
    p.gw2.take();
    p.lab.stop_gateway(false);
    edit_file(
        &p.lab.gw_home.join("gateway.toml"),
        &format!("url = \"{}\"", p.url),
        &format!("url = \"{relayed}\""),
    );
    p.lab.start_gateway();
    let gw2_addr = p.gw2_addr.clone();
    let mut gw2 = p
        .lab
        .spawn(&p.gw2_home, &["gateway", "run", "--listen", &gw2_addr]);
    wait_until(T, "the node on gw1", || {
        let out = p.lab.admin(&["node", "list", "--json"]);
        (out.code == 0 && out.stdout.contains("\"connected\"")).then_some(())
    });
    assert_eq!(status(&p.gw2_home)["leader"], "test-gw");

    // Cut gw1 off from PostgreSQL: its connections stay open and silent.
    let cut = Instant::now();
    relay.block(true);
    let out = p.lab.stop_gateway_when_it_exits(T);
    let stepped_down = cut.elapsed();
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("has not renewed our lease"),
        "{}",
        out.stderr
    );
    wait_until(T, "gw2 to lead", || {
        (status(&p.gw2_home)["leader"] == "test-gw-2").then_some(())
    });
    let took_over = cut.elapsed();
    eprintln!(
        "split brain: gw1 stepped down {:.2}s after the cut, gw2 led by {:.2}s (lease 1.5s)",
        stepped_down.as_secs_f64(),
        took_over.as_secs_f64()
    );
    wait_until(T, "the node on gw2", || {
        let out = p.lab.admin(&["node", "list", "--json"]);
        (out.code == 0 && out.stdout.contains("\"connected\"")).then_some(())
    });
    assert!(gw2.running(), "{}", gw2.stderr());
}

#[test]
fn a_queued_job_waits_through_a_failover_and_runs_on_the_new_leader() {
    let Some(pg) = testpg::shared("ha test: a queued job through a failover") else {
        return;
    };
    // One job at a time on the node, so the second one queues.
    let mut p = pair_with(pg.database().unwrap(), |node_toml| {
        edit_file(node_toml, "max_jobs = 256", "max_jobs = 1");
    });
    let busy = p.lab.detach(&["--node", "worker-ha", "--", "sleep", "3"]);
    p.lab.wait_job(busy, "running", T);
    let queued = p.lab.detach(&[
        "--node",
        "worker-ha",
        "--queue",
        "--queue-timeout",
        "60s",
        "--",
        "echo",
        "queued-over",
    ]);
    assert_eq!(p.lab.job(queued)["state"], "queued");
    p.lab.stop_gateway(true);
    // The new leader recovers the queue and starts it once the node is free.
    let done = p.lab.wait_job(queued, "exited", T);
    assert_eq!(done["exit_code"], 0, "{done}");
    let out = p.lab.admin(&["job", "logs", &queued.to_string()]).ok();
    assert_eq!(out.stdout, "queued-over\n");
    assert_eq!(p.lab.job(busy)["state"], "exited");
    drop(p.gw2.take());
}

#[test]
fn attack_a_ca_rotation_is_refused_while_standbys_share_the_state() {
    // The CA lives in each gateway's home: rotating on the leader alone
    // left the standbys with the old key, to come back at the next
    // failover. A rotation is refused while others share the state.
    let Some(pg) = testpg::shared("ha test: CA rotation with a standby") else {
        return;
    };
    let url = pg.database().unwrap();
    let mut lab = Lab::new(BIN);
    lab.admin(&["gateway", "migrate-state", "--to", &url]).ok();
    lab.start_gateway();
    let gw2_home = lab.home("gw2");
    lab.run(
        &gw2_home,
        &[
            "gateway",
            "join",
            "--state",
            &url,
            "--name",
            "standby-2",
            "--listen",
            "127.0.0.1:0",
            "--ca-from",
            lab.gw_home.to_str().unwrap(),
        ],
    )
    .ok();
    let ca = std::fs::read(lab.gw_home.join("ca.crt")).unwrap();
    lab.admin(&["ca", "rotate", "--phase", "init"])
        .fails_with(1, "standby-2");
    assert_eq!(std::fs::read(lab.gw_home.join("ca.crt")).unwrap(), ca);
    assert!(
        !lab.gw_home.join("ca-rotation.toml").exists(),
        "nothing started"
    );
    // Forced, it goes on (the operator replaces the standby afterwards).
    lab.admin(&["ca", "rotate", "--phase", "init", "--force"])
        .ok();
}

/// The `gateway = "…"` value of a node.toml or client.toml.
fn gateway_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("gateway = "))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

#[test]
fn a_node_and_credentials_made_before_a_standby_joined_follow_the_group_through_a_failover() {
    // Before: a node enrolled and a credential made while gw1 was alone
    // named only gw1, so after gw1's death nothing reached gw2 until
    // someone edited node.toml and client.toml.
    let Some(pg) = testpg::shared("ha test: following the gateway group") else {
        return;
    };
    let url = pg.database().unwrap();
    let logs = tempfile::tempdir().unwrap().keep();
    let mut lab = Lab::with_config(BIN, |c| tune(c, Some(&logs)));
    lab.admin(&["gateway", "migrate-state", "--to", &url]).ok();
    lab.start_gateway();
    let gw1 = lab.addr.clone().unwrap();
    // Made while gw1 is alone: each names gw1 only.
    let alice = lab.second_admin("alice");
    assert_eq!(gateway_line(&alice.join("client.toml")), gw1);
    let token = lab.token(&["--auto-approve"]);
    let node_home = lab.enroll_with(&token, "worker-follow", "");
    let node_toml = node_home.join("node.toml");
    assert_eq!(gateway_line(&node_toml), gw1);
    edit_file(
        &node_toml,
        "# keep_alive = \"1s\"",
        "keep_alive = \"300ms\"",
    );
    edit_file(
        &node_toml,
        "# idle_timeout = \"3s\"",
        "idle_timeout = \"1200ms\"",
    );
    let _node = lab.start_node(&node_home);
    lab.wait_node("worker-follow", "connected", T);
    // gw2 joins.
    let (_gw2_home, gw2_proc, gw2) = join_standby(&mut lab, &url, &logs, &|_| {});
    let both = format!("{gw1},{gw2}");
    // The leader tells the connected node; the node writes it down.
    wait_until(T, "the node to write the group into node.toml", || {
        (gateway_line(&node_toml) == both).then_some(())
    });
    let node_text = std::fs::read_to_string(&node_toml).unwrap();
    assert!(
        node_text.contains("keep_alive = \"300ms\"") && node_text.contains("[policy]"),
        "only the gateway line changed: {node_text}"
    );
    // Any command of a client credential writes it into client.toml.
    lab.run(&alice, &["whoami"]).ok();
    assert_eq!(gateway_line(&alice.join("client.toml")), both);
    lab.admin(&["whoami"]).ok();
    assert_eq!(gateway_line(&lab.gw_home.join("client.toml")), both);
    // A credential pinned to its addresses (follow_group = false) keeps them.
    let pinned = admin_of_one(&mut lab, &gw1);
    lab.run(&pinned, &["whoami"]).ok();
    assert_eq!(gateway_line(&pinned.join("client.toml")), gw1);
    // gw1 dies: alice's credential, made before gw2 existed, reaches gw2,
    // and so does the node.
    lab.stop_gateway(true);
    wait_until(T, "alice to see the node through gw2", || {
        let out = lab.run(&alice, &["node", "list", "--json"]);
        (out.code == 0 && out.stdout.contains("\"connected\"")).then_some(())
    });
    // The new leader comes first in the list it hands out.
    lab.run(&alice, &["whoami"]).ok();
    assert_eq!(
        gateway_line(&alice.join("client.toml")),
        format!("{gw2},{gw1}")
    );
    // gw1 leaves the group (refused while it may still run), and everyone
    // drops its address.
    wait_until(T, "gateway leave to take gw1 out", || {
        let out = lab.run(&alice, &["gateway", "leave", "test-gw"]);
        if out.code != 0 {
            assert!(out.stderr.contains("was seen"), "{out:?}");
        }
        (out.code == 0).then_some(())
    });
    lab.run(&alice, &["gateway", "leave", "test-gw-2"])
        .fails_with(1, "is the leader answering this call");
    wait_until(T, "the node to drop gw1", || {
        (gateway_line(&node_toml) == gw2).then_some(())
    });
    lab.run(&alice, &["whoami"]).ok();
    assert_eq!(gateway_line(&alice.join("client.toml")), gw2);
    drop(gw2_proc);
}

#[test]
fn a_slack_mention_is_answered_across_a_leader_sigkill() {
    // The bot's credential follows the group like any client's, so a
    // leader's death no longer silences chat.
    let Some(pg) = testpg::shared("ha test: the chat bot through a failover") else {
        return;
    };
    let mut p = pair_edited(
        pg.database().unwrap(),
        |c| testkit::set_chat_test_policy(c, "slack:T0LAB/U0BOSS"),
        |_| {},
    );
    let bot_home = p.lab.bot("moltbot", "slack:T0LAB");
    std::fs::write(
        bot_home.join("moltbot.toml"),
        "allowed_users = [\"U0ALICE\"]\napprovals = \"both\"\n",
    )
    .unwrap();
    let slack = testkit::slack::SlackEmulator::start();
    let script = format!(
        "SLACK_API_URL={} SLACK_BOT_TOKEN=xoxb-ha SLACK_APP_TOKEN=xapp-ha exec {BIN} --home {} moltbot run",
        slack.api_url,
        bot_home.display()
    );
    let _bot = p.lab.spawn_cmd("sh", &["-c", &script]);
    wait_until(T, "the bot to open Socket Mode", || {
        slack.connected().then_some(())
    });
    let answered = |word: &str| {
        wait_until(T, &format!("the bot's answer for {word}"), || {
            slack
                .calls_of("chat.update")
                .iter()
                .any(|u| {
                    let t = u.body["text"].as_str().unwrap_or_default();
                    t.contains("exited with code 0") && t.contains(word)
                })
                .then_some(())
        });
    };
    slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run echo before-the-kill on worker-ha",
    );
    answered("before-the-kill");
    p.lab.stop_gateway(true);
    wait_until(T, "gw2 to lead", || {
        (status(&p.gw2_home)["leader"] == "test-gw-2").then_some(())
    });
    slack.mention(
        "U0ALICE",
        "C0LAB",
        "<@U0MOLT> run echo after-the-kill on worker-ha",
    );
    answered("after-the-kill");
    drop(p.gw2.take());
}
