//! The secure mesh end to end: real `openclaw` processes, real QUIC, real
//! certificates, on 127.0.0.1, each party in its own temp home.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use testkit::{Lab, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(20);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn enroll_pending_approve_connected() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    // Gateway home: CA key and admin key private, directory private.
    assert_eq!(mode(&lab.gw_home), 0o700);
    for key in ["ca.key", "gateway.key", "client.key"] {
        assert_eq!(mode(&lab.gw_home.join(key)), 0o600, "{key}");
    }
    let token = lab.token(&["--labels", "lab"]);
    let home = lab.home("worker-gpu-01");
    let enroll = lab.spawn(
        &home,
        &[
            "node",
            "enroll",
            "--token",
            &token,
            "--name",
            "worker-gpu-01",
            "--labels",
            "gpu",
            "--wait",
            "30s",
        ],
    );

    // The pending request is visible with its fingerprint, labels and source.
    let pending = lab.wait_node("worker-gpu-01", "pending", T);
    assert_eq!(pending["health"], "-");
    let fp = pending["fingerprint"].as_str().unwrap().to_string();
    assert!(fp.starts_with("SHA256:"), "{fp}");
    // The token's label is confirmed; what the node asked for is only proposed.
    assert_eq!(pending["labels"], serde_json::json!(["lab"]));
    assert_eq!(pending["proposed_labels"], serde_json::json!(["gpu"]));
    assert!(
        pending["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let table = lab.admin(&["node", "list"]).ok().stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("worker-gpu-01") && l.contains("pending") && l.contains(&fp)),
        "{table}"
    );

    // The node printed the same fingerprint for the admin to compare.
    wait_until(T, "enroll to print its fingerprint", || {
        std::fs::read_to_string(&enroll.stdout_path)
            .ok()
            .filter(|s| s.contains(&fp))
    });
    lab.admin(&[
        "node",
        "approve",
        "worker-gpu-01",
        "--fingerprint",
        &fp,
        "--labels",
        "gpu,lab",
        "--gpus",
        "2",
    ])
    .ok();
    let approved = lab.node("worker-gpu-01").unwrap();
    assert_eq!(approved["labels"], serde_json::json!(["gpu", "lab"]));
    assert_eq!(approved["proposed_labels"], serde_json::json!([]));
    assert_eq!(approved["max_gpus"], 2);
    let out = enroll.wait(T).ok();
    assert!(
        out.stdout.contains("enrolled worker-gpu-01"),
        "{}",
        out.stdout
    );

    // The key never left the home and is private; the cert and CA are stored.
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("node.key")), 0o600);
    assert!(home.join("node.crt").exists() && home.join("ca.crt").exists());
    let key = std::fs::read_to_string(home.join("node.key")).unwrap();
    let db = std::fs::read(lab.gw_home.join("state.db")).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!String::from_utf8_lossy(&db).contains(&key_body[..40]));

    let _agent = lab.start_node(&home);
    let node = lab.wait_node("worker-gpu-01", "connected", T);
    assert_eq!(node["health"], "healthy");
    assert!(
        node["cert_expires"].as_u64().unwrap()
            > node["requested_at"].as_u64().unwrap() + 29 * 86_400
    );
    let table = lab.admin(&["node", "list"]).ok().stdout;
    let line = table
        .lines()
        .find(|l| l.starts_with("worker-gpu-01"))
        .unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cols[..3],
        &["worker-gpu-01", "connected", "healthy"],
        "{table}"
    );
    assert!(table.starts_with("NAME"), "{table}");
}

#[test]
fn auto_approve_token_skips_the_manual_step() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let token = lab.token(&["--auto-approve", "--labels", "gpu", "--uses", "2"]);
    let home = lab.home("a");
    let out = lab
        .run(
            &home,
            &[
                "node", "enroll", "--token", &token, "--name", "auto-01", "--labels", "a100",
                "--wait", "5s",
            ],
        )
        .ok();
    assert!(out.stdout.contains("enrolled auto-01"), "{}", out.stdout);
    let node = lab.node("auto-01").unwrap();
    assert_eq!(node["connection"], "offline");
    // An auto-approved node gets the token's labels; its own stay proposed,
    // and without --max-gpus on the token it may offer no GPUs.
    assert_eq!(node["labels"], serde_json::json!(["gpu"]));
    assert_eq!(node["proposed_labels"], serde_json::json!(["a100"]));
    assert_eq!(node["max_gpus"], 0);
    let tokens: serde_json::Value =
        serde_json::from_str(&lab.admin(&["token", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(tokens[0]["uses_left"], 1);
    assert_eq!(tokens[0]["uses_total"], 2);
    let listing = lab.admin(&["token", "list", "--json"]).ok().stdout;
    assert!(
        !listing.contains(&token[4..20]),
        "token list must not show secrets"
    );
}

#[test]
fn reject_ends_the_enrollment() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let token = lab.token(&[]);
    let home = lab.home("r");
    let enroll = lab.spawn(
        &home,
        &[
            "node", "enroll", "--token", &token, "--name", "worker-x", "--wait", "30s",
        ],
    );
    lab.wait_node("worker-x", "pending", T);
    lab.admin(&["node", "reject", "worker-x"]).ok();
    enroll.wait(T).fails_with(77, "rejected");
    assert_eq!(lab.node("worker-x").unwrap()["connection"], "rejected");
    assert!(!home.join("node.crt").exists());
    // Rejecting again, or approving a rejected node, says why.
    lab.admin(&["node", "approve", "worker-x"])
        .fails_with(1, "no pending request");
    lab.admin(&["node", "reject", "worker-x"])
        .fails_with(1, "no pending request");
    // Nor is a rejected node revoked: it never had a certificate.
    lab.admin(&["node", "revoke", "worker-x"]).fails_with(
        1,
        "node worker-x was rejected; only a pending or approved node can be revoked",
    );
}

#[test]
fn wrong_fingerprint_is_not_approved() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let token = lab.token(&[]);
    let home = lab.home("f");
    let _enroll = lab.spawn(
        &home,
        &[
            "node", "enroll", "--token", &token, "--name", "worker-f", "--wait", "30s",
        ],
    );
    lab.wait_node("worker-f", "pending", T);
    let out = lab
        .admin(&[
            "node",
            "approve",
            "worker-f",
            "--fingerprint",
            "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ])
        .fails_with(1, "fingerprint mismatch");
    // The refusal never hands over the right fingerprint to paste.
    let right = lab.node("worker-f").unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let body = right.trim_start_matches("SHA256:");
    assert!(!out.stderr.contains(&body[..12]), "{}", out.stderr);
    assert_eq!(lab.node("worker-f").unwrap()["connection"], "pending");
    lab.admin(&["node", "approve", "worker-nope"])
        .fails_with(1, "no node named");
}

#[test]
fn revoke_cuts_the_live_connection_and_survives_restart() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll("worker-r", "gpu");
    let agent = lab.start_node(&home);
    lab.wait_node("worker-r", "connected", T);

    let t0 = Instant::now();
    lab.admin(&["node", "revoke", "worker-r"]).ok();
    // The agent sees the close at once and exits non-zero with a clear message.
    let out = agent.wait(T);
    let took = t0.elapsed();
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("revoked"), "{}", out.stderr);
    assert!(
        took < Duration::from_secs(5),
        "agent took {took:?} to notice the revocation"
    );
    assert_eq!(lab.node("worker-r").unwrap()["connection"], "revoked");

    // Every later handshake with that certificate fails, also after a restart.
    lab.run(&home, &["node", "run"]).fails_with(77, "revoked");
    lab.stop_gateway(false);
    lab.start_gateway();
    lab.run(&home, &["node", "run"]).fails_with(77, "revoked");
    assert_eq!(lab.node("worker-r").unwrap()["connection"], "revoked");

    // After revocation the name stays taken until an admin releases it;
    // then it may enroll again, with a new key.
    let token = lab.token(&["--auto-approve", "--labels", "gpu"]);
    let early = lab.home("early");
    lab.run(
        &early,
        &[
            "node", "enroll", "--token", &token, "--name", "worker-r", "--wait", "5s",
        ],
    )
    .fails_with(77, "openclaw node release worker-r");
    lab.admin(&["node", "release", "worker-r"]).ok();
    let home2 = lab.enroll("worker-r", "gpu");
    let _agent2 = lab.start_node(&home2);
    lab.wait_node("worker-r", "connected", T);
}

#[test]
fn gateway_restart_node_reconnects() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll("worker-g", "gpu");
    let mut agent = lab.start_node(&home);
    lab.wait_node("worker-g", "connected", T);

    let tries = agent.stderr().matches("reconnecting in").count();
    lab.stop_gateway(true);
    // The agent has lost the gateway and schedules its next try.
    wait_until(T, "the agent to retry", || {
        (agent.stderr().matches("reconnecting in").count() > tries).then_some(())
    });
    assert!(
        agent.running(),
        "the agent must keep retrying while the gateway is away"
    );
    lab.start_gateway();
    let started = Instant::now();
    lab.wait_node("worker-g", "connected", T);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "reconnect took {:?}",
        started.elapsed()
    );
    assert!(
        agent.stderr().contains("reconnecting"),
        "{}",
        agent.stderr()
    );

    // Pending requests survive a restart too.
    let token = lab.token(&[]);
    let home2 = lab.home("p");
    let _enroll = lab.spawn(
        &home2,
        &[
            "node", "enroll", "--token", &token, "--name", "worker-p", "--wait", "60s",
        ],
    );
    lab.wait_node("worker-p", "pending", T);
    lab.stop_gateway(false);
    lab.start_gateway();
    assert_eq!(lab.node("worker-p").unwrap()["connection"], "pending");
    lab.admin(&["node", "approve", "worker-p"]).ok();
    wait_until(T, "enrollment to finish after the restart", || {
        home2.join("node.crt").exists().then_some(())
    });
}

#[test]
fn killed_node_goes_offline_and_a_new_connection_replaces_a_ghost() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll("worker-k", "cpu");
    let mut agent = lab.start_node(&home);
    lab.wait_node("worker-k", "connected", T);
    agent.kill();
    let t0 = Instant::now();
    let node = lab.wait_node("worker-k", "offline", Duration::from_secs(10));
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "offline after {:?}",
        t0.elapsed()
    );
    assert_eq!(node["health"], "-");
    assert!(node["last_seen"].as_u64().is_some());

    // A fresh agent is connected right away, with no ghost in the way.
    let _agent2 = lab.start_node(&home);
    lab.wait_node("worker-k", "connected", T);
    assert_eq!(lab.nodes().len(), 1);
}

#[test]
fn token_list_and_revoke() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    lab.token(&["--ttl", "2h", "--labels", "gpu"]);
    let list: serde_json::Value =
        serde_json::from_str(&lab.admin(&["token", "list", "--json"]).ok().stdout).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["labels"], serde_json::json!(["gpu"]));
    let table = lab.admin(&["token", "list"]).ok().stdout;
    assert!(table.contains(&id) && table.contains("valid"), "{table}");
    lab.admin(&["token", "revoke", &id]).ok();
    let table = lab.admin(&["token", "list"]).ok().stdout;
    assert!(table.contains("revoked"), "{table}");
    lab.admin(&["token", "revoke", "zzzzzz"])
        .fails_with(1, "no token with id");
}

#[test]
fn init_refuses_to_overwrite_and_keys_must_be_private() {
    let mut lab = Lab::new(BIN);
    let gw = lab.gw_home.clone();
    lab.run(&gw, &["gateway", "init", "--listen", "127.0.0.1:0"])
        .fails_with(1, "refusing to overwrite");
    lab.start_gateway();
    let home = lab.enroll("worker-m", "cpu");
    std::fs::set_permissions(
        home.join("node.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    lab.run(&home, &["node", "run"]).fails_with(1, "chmod 600");
    // Enrolling again into an enrolled home is refused.
    let token = lab.token(&["--auto-approve"]);
    lab.run(
        &home,
        &["node", "enroll", "--token", &token, "--name", "worker-m2"],
    )
    .fails_with(2, "already holds an enrolled node");
}

/// A running `openclaw lab`: its chat prompt on stdin, its stdout read
/// line by line.
struct LabProc {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LabProc {
    fn start(dir: &std::path::Path) -> LabProc {
        use std::io::BufRead as _;
        use std::process::Stdio;
        let mut child = std::process::Command::new(BIN)
            .args(["lab", "--dir"])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        LabProc {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Types a line at the lab's prompt.
    fn say(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for a line that `want` picks; returns what it picked.
    fn expect<T>(&mut self, what: &str, mut want: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let got = want(&line);
                    self.seen.push(line);
                    if let Some(v) = got {
                        return v;
                    }
                }
                Err(_) => panic!("no {what} from the lab:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Ends the prompt; returns everything the lab printed and whether it
    /// exited with 0.
    fn finish(mut self) -> (String, bool) {
        self.stdin = None;
        let ok = self.child.wait().unwrap().success();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (self.seen.join("\n") + "\n", ok)
    }
}

#[test]
fn the_lab_removes_only_what_it_made_and_stops_on_ctrl_c() {
    // A --dir that holds anything is refused, and left as it was.
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "precious").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["lab", "--dir"])
        .arg(&mine)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not empty"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "precious"
    );
    // Ctrl-C at the prompt stops the lab and removes its homes.
    let lab_dir = dir.path().join("lab");
    let mut child = std::process::Command::new(BIN)
        .args(["lab", "--dir"])
        .arg(&lab_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    wait_until(Duration::from_secs(60), "the lab's prompt", || {
        seen.lock().unwrap().contains("node list").then_some(())
    });
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_until(T, "the lab to stop", || child.try_wait().unwrap());
    reader.join().unwrap();
    let text = seen.lock().unwrap().clone();
    assert!(status.success(), "{status:?}\n{text}");
    assert!(text.contains("== stopping the lab"), "{text}");
    assert!(!lab_dir.exists(), "the lab left its homes behind:\n{text}");
}

#[test]
fn lab_command_brings_up_two_connected_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let bin = std::fs::canonicalize(BIN).unwrap();
    let home = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("lab")
        .join("gateway");
    let admin_cli = format!("{} --home {}", bin.display(), home.display());
    let admin = |args: &[&str]| {
        let out = std::process::Command::new(&bin)
            .arg("--home")
            .arg(&home)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let mut lab = LabProc::start(&dir.path().join("lab"));
    // The lab's chat speaks as a chat user under the safe defaults, and
    // says so when it starts.
    lab.expect("the chat's introduction", |l| {
        l.contains("You are the chat user lab:LAB/you")
            .then_some(())
    });
    lab.expect("how to approve", |l| {
        (l.trim() == format!("{admin_cli} job approve N")).then_some(())
    });
    lab.expect("the end of the introduction", |l| {
        l.contains("Type exit or press Ctrl-D").then_some(())
    });
    // A chat job waits for the lab's admin, and the prompt says how to
    // approve it: here, or with the admin's command from another terminal.
    lab.say("run hello");
    let id: u64 = lab.expect("a job awaiting approval", |l| {
        l.strip_prefix("job ")
            .and_then(|r| r.strip_suffix(" on worker-cpu-01 awaits approval by admin"))
            .and_then(|n| n.parse().ok())
    });
    lab.expect("the approval hint", |l| {
        (l.trim() == format!("{admin_cli} job approve {id}")).then_some(())
    });
    let job = admin(&["job", "show", &id.to_string(), "--json"]);
    assert_eq!(job["state"], "awaiting-approval", "{job}");
    assert_eq!(job["requester"], "lab:LAB/you", "{job}");
    lab.say(&format!("approve {id}"));
    lab.expect("the job's output", |l| {
        (l == "hello from worker-cpu-01").then_some(())
    });
    lab.expect("the job's end", |l| {
        (l == format!("job {id} exited, exit code 0")).then_some(())
    });
    let job = admin(&["job", "show", &id.to_string(), "--json"]);
    assert_eq!(job["approved_by"], "admin", "{job}");
    // The lab's nodes allow copies into a scratch directory of their own,
    // so `openclaw cp` can be tried there (a new user found none allowed).
    let scratch = home.parent().unwrap().join("scratch/worker-cpu-01");
    let f = dir.path().join("note.txt");
    std::fs::write(&f, b"copied in the lab\n").unwrap();
    let out = std::process::Command::new(&bin)
        .arg("--home")
        .arg(&home)
        .args(["cp", f.to_str().unwrap()])
        .arg(format!("worker-cpu-01:{}/", scratch.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(scratch.join("note.txt")).unwrap(),
        b"copied in the lab\n"
    );
    // A fan-out waits for one approval, and the prompt follows it after.
    lab.say("run echo fan on all nodes");
    let first: u64 = lab.expect("a fan-out awaiting approval", |l| {
        l.split("('approve ")
            .nth(1)
            .and_then(|r| r.strip_suffix("' approves all)"))
            .and_then(|n| n.parse().ok())
    });
    lab.say(&format!("approve {first}"));
    lab.expect("the fan-out's end", |l| {
        l.ends_with("2 node(s): 2 ok").then_some(())
    });
    // Chat replies, with the lab's own names.
    lab.say(&format!("status {id}"));
    lab.expect("the job's status", |l| {
        (l.starts_with("asked by lab:LAB/you ")
            && l.ends_with(" · named job hello · approved by admin"))
        .then_some(())
    });
    lab.say("jobs");
    lab.expect("the job in the chat user's list", |l| {
        l.starts_with(&format!("✅ {id} exited 0 on worker-cpu-01, "))
            .then_some(())
    });
    lab.say("nodes");
    lab.expect("the GPU node in the chat node list", |l| {
        l.starts_with("🟢 worker-gpu-01: healthy · ").then_some(())
    });
    lab.say("exit");
    let (stdout, ok) = lab.finish();
    assert!(ok, "{stdout}");
    for name in ["worker-gpu-01", "worker-cpu-01"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{stdout}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[1..3], &["connected", "healthy"], "{stdout}");
    }
    // One sample job on each routing path, with output and exit codes.
    assert!(
        stdout.contains("== openclaw run --node worker-cpu-01"),
        "{stdout}"
    );
    assert!(
        stdout.contains("   | GPUs 0 on worker-gpu-01\n   exit code 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("   | hello from worker-cpu-01\n   exit code 0"),
        "{stdout}"
    );
    // The headline example: a named training job on the GPU node, with a GPU.
    assert!(
        stdout.contains(
            "   | epoch 3/3 on worker-gpu-01, GPUs 0\n   | trained-on-worker-gpu-01\n   exit code 0"
        ),
        "{stdout}"
    );
    // The hint for another terminal works as pasted: this binary by its
    // absolute path, and an absolute home.
    let hint = stdout
        .lines()
        .skip_while(|l| !l.starts_with("== from another terminal"))
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"))
        .trim();
    assert_eq!(
        hint,
        format!("{} --home {} node list", bin.display(), home.display()),
        "{stdout}"
    );
    // The dashboard needs its token even on loopback: the lab says where
    // it is (a 0600 file in its gateway home), not what it is.
    let token_file = home.join("dashboard.token");
    assert!(
        stdout.contains(&format!(
            "/login with the token in {}\n",
            token_file.display()
        )),
        "{stdout}"
    );
    // Its address has the base path it lives under, new at each start,
    // and the login line names the same one.
    let url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("== dashboard at "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/d-") && url.ends_with('/'),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("   log in at {url}login with the token in ")),
        "{stdout}"
    );
    assert!(
        !dir.path().join("lab").exists(),
        "the lab removes its homes unless --keep"
    );
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let mut lab = Lab::new(BIN);
    let home = lab.gw_home.clone();
    let mut gw = lab.spawn(&home, &["--log-format", "json", "gateway", "run"]);
    let line = wait_until(T, "a JSON line saying the gateway listens", || {
        gw.stderr()
            .lines()
            .find(|l| l.contains("gateway listening"))
            .map(str::to_string)
    });
    gw.kill();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["message"], "gateway listening", "{v}");
    assert!(
        v["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{v}"
    );
    assert!(v["timestamp"].is_string(), "{v}");
    for l in gw.stderr().lines() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(l);
        assert!(parsed.is_ok(), "not JSON: {l}");
    }
    // A bad value is a usage error naming the choices.
    let out = lab.run(&home, &["--log-format", "xml", "whoami"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("[possible values: text, json]"),
        "{}",
        out.stderr
    );
}

#[test]
fn doctor_checks_homes_and_names_each_fix() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let node_home = lab.enroll("worker-doc", "cpu");
    let _node = lab.spawn(&node_home, &["node", "run"]);
    lab.wait_node("worker-doc", "connected", T);

    // A healthy gateway home: reachable, clocks agree, nothing failing.
    let out = lab.admin(&["doctor"]);
    assert_eq!(out.code, 0, "{out:?}");
    for want in [
        "(gateway home)",
        "ok    key: ",
        "ok    certificate: the CA certificate (ca.crt) is valid for",
        "ok    gateway: reached 127.0.0.1:",
        "ok    clock: this clock is",
        "ok    mtu: QUIC path MTU",
        "ok    advertise: join tokens carry 127.0.0.1:",
        "0 problem(s)",
    ] {
        assert!(out.stdout.contains(want), "{want} missing:\n{}", out.stdout);
    }

    // A node home, with the agent connected: it reaches the gateway with
    // the node's certificate without disturbing the agent's session.
    let out = lab.run(&node_home, &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["kind"], "node home", "{v}");
    let checks: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().into(),
                f["level"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        checks.contains(&("gateway".into(), "ok".into())),
        "{checks:?}"
    );
    assert!(
        checks.contains(&("clock".into(), "ok".into())),
        "{checks:?}"
    );
    assert!(checks.iter().any(|(c, _)| c == "gpu"), "{checks:?}");
    assert_eq!(out.code, 0, "{out:?}");
    lab.wait_node("worker-doc", "connected", T);

    // A key others can read, and a gateway that is down: each a failure
    // with its fix, and exit 1.
    let key = lab.gw_home.join("client.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    lab.stop_gateway(false);
    let out = lab.admin(&["doctor"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("fix: chmod 600 {}", key.display())),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("FAIL  gateway: cannot reach the gateway"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("2 problem(s)"), "{}", out.stdout);

    // What `node run` and `gateway run` refuse, doctor refuses too.
    let node_toml = node_home.join("node.toml");
    let text = std::fs::read_to_string(&node_toml).unwrap();
    std::fs::write(&node_toml, format!("udp_payload_max = 9000\n{text}")).unwrap();
    let out = lab.run(&node_home, &["doctor"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("FAIL  config: node.toml: udp_payload_max = 9000 is outside"),
        "{}",
        out.stdout
    );
    let gw_toml = lab.gw_home.join("gateway.toml");
    let text = std::fs::read_to_string(&gw_toml).unwrap();
    std::fs::write(
        &gw_toml,
        text.replacen("[state]\n", "[state]\noutput = \"database\"\n", 1),
    )
    .unwrap();
    let out = lab.admin(&["doctor"]);
    assert!(
        out.stdout.contains("needs PostgreSQL state"),
        "{}",
        out.stdout
    );
}
