//! The attack catalogue: each test tries one attack from the trust-boundaries
//! review against real gateways and nodes over QUIC, and checks that it
//! fails with a clear error and that nothing was lost. docs/SECURITY.md lists
//! every test here beside its threat.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use testkit::{Lab, edit_file, have_tool, is_root, processes_with, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

/// A lab whose gateway.toml was edited by `edit` (each edit must match).
fn lab_with(edits: &[(&str, &str)]) -> Lab {
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    for (from, to) in edits {
        edit_file(&cfg, from, to);
    }
    lab.start_gateway();
    lab
}

// --- identity and privilege ----------------------------------------------------

#[test]
fn attack_bot_cannot_approve_as_admin_or_another_certificate() {
    let mut lab = lab_with(&[
        ("default = \"allow\"", "default = \"approve\""),
        (
            "approvers = [\"admin\"]",
            "approvers = [\"admin\", \"slack:T0LAB/U0BOSS\"]",
        ),
    ]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let bot = lab.bot("moltbot", "slack:T0LAB");
    let out = lab
        .run(
            &bot,
            &[
                "chat",
                "--user",
                "slack:T0LAB/U0EVE",
                "run echo hi on worker-cpu-01",
            ],
        )
        .ok();
    assert!(out.stdout.contains("awaits approval"), "{}", out.stdout);
    // The review's exploit: the bot names `admin` as the chat user.
    for who in [
        "admin",
        "moltbot",
        "slack:T0OTHER/U0BOSS",
        "wecom:T0LAB/U0BOSS",
    ] {
        let out = lab.run(&bot, &["chat", "--user", who, "approve 1"]).ok();
        assert!(
            out.stdout.contains("refused by policy") && out.stdout.contains("slack:T0LAB"),
            "{who}: {}",
            out.stdout
        );
    }
    let job = lab.job(1);
    assert_eq!(job["state"], "awaiting-approval");
    assert_eq!(job["approved_by"], serde_json::Value::Null);
    // The real approver, in the bot's namespace, can.
    lab.run(&bot, &["chat", "--user", "slack:T0LAB/U0BOSS", "approve 1"])
        .ok();
    let job = lab.wait_job(1, "exited", T);
    assert_eq!(job["approved_by"], "slack:T0LAB/U0BOSS");
    assert_eq!(job["requester"], "slack:T0LAB/U0EVE");
}

#[test]
fn attack_bot_without_a_namespace_cannot_be_made() {
    let mut lab = lab_with(&[]);
    let home = lab.home("bot");
    lab.admin(&[
        "client",
        "create",
        "bot2",
        "--role",
        "bot",
        "--out",
        home.to_str().unwrap(),
    ])
    .fails_with(1, "needs --namespace");
    lab.admin(&[
        "client",
        "create",
        "bot3",
        "--role",
        "bot",
        "--namespace",
        "admin",
        "--out",
        home.to_str().unwrap(),
    ])
    .fails_with(2, "KIND:SCOPE");
}

#[test]
fn attack_policy_cannot_name_bare_chat_ids() {
    let mut lab = Lab::new(BIN);
    edit_file(
        &lab.gw_home.join("gateway.toml"),
        "approvers = [\"admin\"]",
        "approvers = [\"admin\", \"U024BE7LH\"]",
    );
    let out = lab.gateway_start_fails();
    assert!(
        out.stderr.contains("slack:T0123ABCD/U024BE7LH"),
        "{}",
        out.stderr
    );
}

#[test]
fn attack_client_names_are_unique() {
    let mut lab = lab_with(&[]);
    let h = lab.home("x");
    lab.admin(&["client", "create", "admin", "--out", h.to_str().unwrap()])
        .fails_with(1, "already exists");
    lab.second_admin("alice");
    let h = lab.home("y");
    lab.admin(&["client", "create", "alice", "--out", h.to_str().unwrap()])
        .fails_with(1, "client names are unique");
    let list = lab.admin(&["client", "list", "--json"]).ok().stdout;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["admin", "alice"]);
}

#[test]
fn attack_revoked_client_is_cut_off_at_once() {
    let mut lab = lab_with(&[]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let alice = lab.second_admin("alice");
    let id = lab.detach(&["--node", "worker-cpu-01", "--", "sleep", "30"]);
    // Alice follows the job on a live connection.
    let mut follower = lab.spawn(&alice, &["job", "logs", &id.to_string(), "--follow"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(follower.running());
    let out = lab.admin(&["client", "revoke", "alice"]).ok();
    assert!(
        out.stdout.contains("live connection(s) closed"),
        "{}",
        out.stdout
    );
    // The revocation closes the session itself (no timing is asserted on
    // this shared machine; the time is printed for the record).
    let start = std::time::Instant::now();
    wait_until(T, "the follower to be cut off", || {
        (!follower.running()).then_some(())
    });
    eprintln!(
        "follower cut off {:?} after the revoke returned",
        start.elapsed()
    );
    assert!(
        follower.stderr().contains("revoked"),
        "{}",
        follower.stderr()
    );
    lab.run(&alice, &["whoami"]).fails_with(77, "revoked");
    // The last admin cannot be revoked by mistake.
    lab.admin(&["client", "revoke", "admin"])
        .fails_with(1, "last active admin");
    // Nothing was lost: the job itself runs on.
    assert_eq!(lab.job(id)["state"], "running");
    let list = lab.admin(&["client", "list"]).ok().stdout;
    assert!(
        list.lines()
            .any(|l| l.starts_with("alice") && l.contains("revoked")),
        "{list}"
    );
}

#[test]
fn attack_renewed_client_certificate_replaces_the_old_one() {
    let mut lab = lab_with(&[]);
    let alice = lab.second_admin("alice");
    let stolen = lab.dir().join("stolen");
    copy_dir(&alice, &stolen);
    let out = lab.run(&alice, &["client", "renew"]).ok();
    assert!(
        out.stdout.contains("old one no longer works"),
        "{}",
        out.stdout
    );
    lab.run(&alice, &["whoami"]).ok();
    lab.run(&stolen, &["whoami"]).fails_with(77, "revoked");
}

#[test]
fn attack_node_revoke_closes_every_connection_and_loses_its_jobs() {
    let mut lab = lab_with(&[]);
    let (_home, mut agent) = lab.node_up("worker-cpu-01", "cpu", 0);
    let id = lab.detach(&["--node", "worker-cpu-01", "--", "sleep", "30"]);
    lab.wait_job(id, "running", T);
    let out = lab.admin(&["node", "revoke", "worker-cpu-01"]).ok();
    assert!(
        out.stdout.contains("1 unfinished job(s) ended"),
        "{}",
        out.stdout
    );
    let job = lab.wait_job(id, "lost", T);
    assert!(job["reason"].as_str().unwrap().contains("revoked"), "{job}");
    wait_until(T, "the revoked agent to exit", || {
        (!agent.running()).then_some(())
    });
}

#[test]
fn attack_a_revoked_nodes_name_inherits_none_of_its_jobs() {
    // The review's exploit: a job queued for train-01 (with a secret in its
    // env) stayed queued after `node revoke train-01`; a new key enrolled
    // under the same name with an auto-approve token and ran it.
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[[policy.rules]]\ncommands = [\"uname\"]\naction = \"approve\"\n"),
    )
    .unwrap();
    lab.start_gateway();
    let token = lab.token(&[
        "--auto-approve",
        "--labels",
        "gpu",
        "--max-gpus",
        "1",
        "--uses",
        "5",
    ]);
    let home = lab.enroll_with(&token, "train-01", "gpu");
    let mut agent = lab.start_gpu_node(&home, 1);
    lab.wait_node("train-01", "connected", T);
    // Every unfinished state: running (holding the GPU), queued behind it
    // with a secret, awaiting approval, and a fan-out member awaiting it.
    let running = lab.detach(&["--node", "train-01", "--gpus", "1", "--", "sleep", "60"]);
    lab.wait_job(running, "running", T);
    let queued = lab.detach(&[
        "--node",
        "train-01",
        "--gpus",
        "1",
        "--queue",
        "10m",
        "--env",
        "SEED=hunter2-secret",
        "--",
        "sh",
        "-c",
        "echo leaked $SEED",
    ]);
    lab.wait_job(queued, "queued", T);
    let held = lab.detach(&["--node", "train-01", "--", "uname", "-a"]);
    lab.wait_job(held, "awaiting-approval", T);
    let out = lab.admin(&["node", "revoke", "train-01"]).ok();
    assert!(
        out.stdout.contains("3 unfinished job(s) ended"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("openclaw node release train-01"),
        "{}",
        out.stdout
    );
    for (id, state) in [
        (running, "lost"),
        (queued, "cancelled"),
        (held, "cancelled"),
    ] {
        let job = lab.wait_job(id, state, T);
        assert!(job["reason"].as_str().unwrap().contains("revoked"), "{job}");
    }
    wait_until(T, "the revoked agent to exit", || {
        (!agent.running()).then_some(())
    });
    // A new key under the revoked name is refused until an admin releases it.
    let thief = lab.home("thief");
    lab.run(
        &thief,
        &[
            "node", "enroll", "--token", &token, "--name", "train-01", "--wait", "5s",
        ],
    )
    .fails_with(77, "openclaw node release train-01");
    // Releasing needs a revoked node, and frees the name; still no old job
    // follows it.
    lab.admin(&["node", "release", "worker-none"])
        .fails_with(1, "no node named");
    lab.admin(&["node", "release", "train-01"]).ok();
    let thief = lab.home("thief2");
    lab.run(
        &thief,
        &[
            "node",
            "enroll",
            "--token",
            &token,
            "--name",
            "train-01",
            "--wait",
            "20s",
            "--allow-jobs-as-agent-user",
        ],
    )
    .ok();
    let _thief_agent = lab.start_gpu_node(&thief, 1);
    lab.wait_node("train-01", "connected", T);
    // The new node works, and the old jobs stay ended with no output.
    lab.run_job(&["--node", "train-01", "--", "true"]).ok();
    for (id, state) in [
        (running, "lost"),
        (queued, "cancelled"),
        (held, "cancelled"),
    ] {
        assert_eq!(lab.job(id)["state"], state, "job {id}");
    }
    let logs = lab.admin(&["job", "logs", &queued.to_string()]);
    assert!(!logs.stdout.contains("hunter2"), "{}", logs.stdout);
    // Approving the held job now is refused: it ended with its node.
    lab.admin(&["job", "approve", &held.to_string()])
        .fails_with(1, "cancelled");
}

#[test]
fn attack_node_and_client_names_share_one_namespace() {
    let mut lab = lab_with(&[]);
    let token = lab.token(&["--auto-approve", "--uses", "5"]);
    // A node may not enroll under an admin's or a bot's name...
    lab.bot("carol", "slack:T0LAB");
    for name in ["admin", "carol"] {
        let home = lab.home(&format!("n-{name}"));
        lab.run(
            &home,
            &[
                "node", "enroll", "--token", &token, "--name", name, "--wait", "5s",
            ],
        )
        .fails_with(77, "client credential");
    }
    // ...a revoked client's name included...
    lab.admin(&["client", "revoke", "carol"]).ok();
    let home = lab.home("n-carol2");
    lab.run(
        &home,
        &[
            "node", "enroll", "--token", &token, "--name", "carol", "--wait", "5s",
        ],
    )
    .fails_with(77, "client credential");
    // ...nor the gateway's...
    let home = lab.home("n-gw");
    lab.run(
        &home,
        &[
            "node", "enroll", "--token", &token, "--name", "test-gw", "--wait", "5s",
        ],
    )
    .fails_with(77, "a gateway");
    let out = lab.home("c-gw");
    lab.admin(&[
        "client",
        "create",
        "test-gw",
        "--out",
        out.to_str().unwrap(),
    ])
    .fails_with(1, "gateway's name");
    // ...and a client may not take a node's name, in any node state.
    let _n = lab.enroll_with(&token, "dave", "");
    let out = lab.home("c-dave");
    lab.admin(&["client", "create", "dave", "--out", out.to_str().unwrap()])
        .fails_with(1, "node's name");
    lab.admin(&["node", "revoke", "dave"]).ok();
    lab.admin(&["client", "create", "dave", "--out", out.to_str().unwrap()])
        .fails_with(1, "node's name");
}

#[test]
fn attack_node_refuses_to_enroll_into_the_gateway_home() {
    let lab = lab_with(&[]);
    let token = lab.token(&["--auto-approve"]);
    let gw = lab.gw_home.clone();
    lab.run(
        &gw,
        &[
            "node", "enroll", "--token", &token, "--name", "sneaky", "--wait", "5s",
        ],
    )
    .fails_with(2, "holds a gateway CA key");
}

#[test]
fn attack_agent_without_run_as_refuses_jobs() {
    let mut lab = lab_with(&[]);
    let home = lab.enroll("worker-cpu-01", "cpu");
    edit_file(
        &home.join("node.toml"),
        "allow_jobs_as_agent_user = true",
        "allow_jobs_as_agent_user = false",
    );
    let agent = lab.start_node(&home);
    lab.wait_node("worker-cpu-01", "connected", T);
    lab.run_job(&["--node", "worker-cpu-01", "--", "cat", "node.key"])
        .fails_with(252, "could read its private key");
    assert!(
        agent.stderr().contains("refuse every job"),
        "{}",
        agent.stderr()
    );
}

/// A node that drops to `nobody`, each job with a uid of its own.
fn jailed_node(lab: &mut Lab) -> std::path::PathBuf {
    let home = lab.enroll("worker-jail", "cpu");
    edit_file(
        &home.join("node.toml"),
        "# run_as = \"openclaw-job\"",
        "run_as = \"nobody\"",
    );
    edit_file(
        &home.join("node.toml"),
        "# job_uids = \"61000-61999\"",
        "job_uids = \"61000-61999\"",
    );
    home
}

/// A lab with a jailed node running, or `None` (SKIPPED) without root.
fn running_jail() -> Option<(Lab, std::path::PathBuf, testkit::Proc)> {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs needs root");
        return None;
    }
    let mut lab = lab_with(&[]);
    let home = jailed_node(&mut lab);
    let agent = lab.start_node(&home);
    lab.wait_node("worker-jail", "connected", T);
    Some((lab, home, agent))
}

#[test]
fn attack_job_cannot_read_the_node_key_or_spool() {
    let Some((lab, home, _agent)) = running_jail() else {
        return;
    };
    let out = lab
        .run_job(&["--node", "worker-jail", "--", "id", "-u"])
        .ok();
    let uid: u32 = out.stdout.trim().parse().unwrap();
    assert!((61000..62000).contains(&uid), "{uid}");
    // The lab's homes lie below the node's /tmp, which a job does not see
    // at all (its /tmp is its own); a home elsewhere is closed by its
    // modes, checked here from the node's side.
    for target in ["node.key", "spool", "node.toml"] {
        let path = home.join(target);
        let out = lab.run_job(&[
            "--node",
            "worker-jail",
            "--",
            "ls",
            "-la",
            path.to_str().unwrap(),
        ]);
        assert_ne!(out.code, 0, "{target}: {out:?}");
        let hidden = if ["/tmp", "/var/tmp", "/dev/shm"]
            .iter()
            .any(|t| home.starts_with(t))
        {
            "No such file or directory"
        } else {
            "Permission denied"
        };
        assert!(out.stderr.contains(hidden), "{out:?}");
    }
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&home), 0o700, "the node's home is its own");
        assert_eq!(mode(&home.join("node.key")), 0o600);
        assert_eq!(mode(&home.join("spool")), 0o700);
    }
    let key = home.join("node.key");
    let out = lab.run_job(&["--node", "worker-jail", "--", "cat", key.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    assert!(!out.stdout.contains("PRIVATE KEY"), "{out:?}");
    // No way back up: setuid programs cannot raise it (no_new_privs).
    let out = lab
        .run_job(&[
            "--node",
            "worker-jail",
            "--",
            "grep",
            "NoNewPrivs",
            "/proc/self/status",
        ])
        .ok();
    assert!(out.stdout.contains('1'), "{}", out.stdout);
}

#[test]
fn attack_job_cannot_read_another_jobs_files() {
    let Some((lab, _home, _agent)) = running_jail() else {
        return;
    };
    // Job A keeps a secret in its private directory and waits.
    let a = lab.detach(&[
        "--node",
        "worker-jail",
        "--",
        "sh",
        "-c",
        "echo s3cret > secret.txt; pwd; sleep 20",
    ]);
    let a_dir = wait_until(T, "job A to print its directory", || {
        let out = lab.admin(&["job", "logs", &a.to_string()]).ok().stdout;
        out.lines().next().map(str::to_string)
    });
    let secret = format!("{a_dir}/secret.txt");
    let out = lab.run_job(&["--node", "worker-jail", "--", "cat", &secret]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("s3cret"));
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
    lab.admin(&["job", "cancel", &a.to_string()]).ok();
}

#[test]
fn attack_a_job_runs_the_simulated_nvidia_smi_but_cannot_change_it() {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs needs root");
        return;
    }
    // A jailed node (each job its own uid) with simulated GPUs: the fake
    // nvidia-smi first on every job's PATH is the agent's, in its root.
    let mut lab = lab_with(&[]);
    let home = jailed_node(&mut lab);
    let _agent = lab.start_gpu_node(&home, 1);
    lab.wait_node("worker-jail", "connected", T);
    let out = lab
        .run_job(&[
            "--node",
            "worker-jail",
            "--gpus",
            "1",
            "--",
            "nvidia-smi",
            "-L",
        ])
        .ok();
    assert!(
        out.stdout
            .starts_with("GPU 0: Simulated GPU 80GB (UUID: GPU-sim-")
            && out.stdout.lines().count() == 1,
        "{}",
        out.stdout
    );
    // Another job cannot replace it, its device list or the directory, to
    // fool the jobs after it.
    let out = lab.run_job(&[
        "--node",
        "worker-jail",
        "--shell",
        "--",
        "d=$(dirname $(command -v nvidia-smi)); id -u;",
        "echo '[]' > $d/simulated-gpus.json; echo fake > $d/nvidia-smi; rm -f $d/nvidia-smi;",
        "touch $d/planted; mv $d $d.moved; ls $d",
    ]);
    // Each of the five writes is refused, and the directory holds what
    // the agent put there, nothing else.
    assert_eq!(
        out.stderr.matches("Permission denied").count(),
        5,
        "{out:?}"
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    let uid: u32 = lines[0].trim().parse().unwrap();
    assert!(
        (61000..62000).contains(&uid),
        "the job ran as its own uid: {uid}"
    );
    assert_eq!(lines[1..], ["nvidia-smi", "simulated-gpus.json"], "{out:?}");
    let out = lab
        .run_job(&[
            "--node",
            "worker-jail",
            "--gpus",
            "1",
            "--",
            "nvidia-smi",
            "-L",
        ])
        .ok();
    assert!(
        out.stdout.starts_with("GPU 0: Simulated GPU 80GB"),
        "{}",
        out.stdout
    );
}

/// Another local user: a uid that no account, job range or test uses.
const INTRUDER: u32 = 62000;

/// Whether this machine can run a process as [`INTRUDER`] (root, setpriv
/// and perl); prints SKIPPED with the reason when not.
fn can_play_intruder() -> bool {
    if !is_root() {
        eprintln!("SKIPPED: playing another local user and dropping jobs to nobody need root");
        return false;
    }
    for tool in ["setpriv", "perl"] {
        if !have_tool(tool) {
            eprintln!("SKIPPED: {tool} is needed to run a process as another uid");
            return false;
        }
    }
    true
}

/// `args` run as `uid` (and its gid, no other groups), in the background.
fn spawn_as(lab: &mut Lab, uid: u32, args: &[&str]) -> testkit::Proc {
    let id = uid.to_string();
    let mut all = vec!["--reuid", &id, "--regid", &id, "--clear-groups", "--"];
    all.extend_from_slice(args);
    lab.spawn_cmd("setpriv", &all)
}

/// Directories and files a test made (or an attack may leave) outside its
/// lab, removed at the end however it ends.
struct Litter(Vec<std::path::PathBuf>);

impl Drop for Litter {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d).or_else(|_| std::fs::remove_file(d));
        }
    }
}

/// A directory owned by the intruder, mode `mode`.
fn intruders_dir(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(path, Some(INTRUDER), Some(INTRUDER)).unwrap();
}

/// The intruder's loop: every `job-N` it can rename in the given roots is
/// moved aside and replaced by a symlink to its own directory (argv[0]).
const SWAPPER: &str = r#"
my ($evil, @roots) = @ARGV;
while (1) {
    for my $root (@roots) {
        opendir(my $d, $root) or next;
        for my $e (readdir $d) {
            next unless $e =~ /^job-\d+$/;
            my $p = "$root/$e";
            next if -l $p;
            symlink($evil, $p) if rename($p, "$p.orig");
        }
        closedir $d;
    }
    select(undef, undef, undef, 0.0002);
}
"#;

#[test]
fn attack_a_local_user_cannot_plant_the_job_directory() {
    if !can_play_intruder() {
        return;
    }
    let mut lab = lab_with(&[]);
    let home = lab.enroll("worker-plant", "cpu");
    edit_file(
        &home.join("node.toml"),
        "# run_as = \"openclaw-job\"",
        "run_as = \"nobody\"",
    );
    // The intruder's own directory, where it wants jobs to run.
    let tmp = std::env::temp_dir();
    let evil = tmp.join(format!("openclaw-evil-{}", std::process::id()));
    let mut litter = Litter(vec![evil.clone()]);
    intruders_dir(&evil, 0o777);
    // The old default root was TMPDIR/openclaw-jobs-NAME-PID: the intruder
    // makes it, world-writable, for each of the next pids.
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for pid in last..last + 3000 {
        let d = tmp.join(format!("openclaw-jobs-worker-plant-{pid}"));
        if std::fs::symlink_metadata(&d).is_err() {
            intruders_dir(&d, 0o777);
            litter.0.push(d);
        }
    }
    let agent = lab.start_node(&home);
    lab.wait_node("worker-plant", "connected", T);
    // The agent's pid is public (ps): the intruder races for the job
    // directories of both the old and the new default roots.
    let old_root = tmp.join(format!("openclaw-jobs-worker-plant-{}", agent.pid()));
    let root = Path::new("/var/lib/openclaw").join(format!("jobs-worker-plant-{}", agent.pid()));
    let _swapper = spawn_as(
        &mut lab,
        INTRUDER,
        &[
            "perl",
            "-e",
            SWAPPER,
            evil.to_str().unwrap(),
            old_root.to_str().unwrap(),
            root.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    for id in 1..=5u64 {
        let out = lab
            .run_job(&[
                "--node",
                "worker-plant",
                "--",
                "sh",
                "-c",
                "pwd -P; id -u; touch planted; stat -c '%u %a' . ..",
            ])
            .ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        let want = root.join(format!("job-{id}"));
        assert_eq!(
            lines.first().copied(),
            Some(want.to_str().unwrap()),
            "job {id} ran elsewhere: {out:?}"
        );
        let uid = lines[1];
        assert_eq!(lines[2], format!("{uid} 700"), "its own 0700 directory");
        assert_eq!(lines[3], "0 711", "in the agent's root, 0711");
        assert!(!want.exists(), "job {id}'s directory is removed at its end");
    }
    let planted: Vec<_> = std::fs::read_dir(&evil).unwrap().collect();
    assert!(planted.is_empty(), "a job ran in the intruder's directory");
}

#[test]
fn attack_a_work_dir_that_is_a_link_or_someone_elses_is_refused_at_start() {
    if !can_play_intruder() {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mut lab = lab_with(&[]);
    let home = lab.enroll("worker-wd", "cpu");
    edit_file(
        &home.join("node.toml"),
        "# run_as = \"openclaw-job\"",
        "run_as = \"nobody\"",
    );
    let cfg = home.join("node.toml");
    let d = lab.dir().to_path_buf();
    let real = d.join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, d.join("link")).unwrap();
    intruders_dir(&d.join("theirs"), 0o700);
    std::fs::create_dir(d.join("open")).unwrap();
    std::fs::set_permissions(d.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(d.join("shared")).unwrap();
    std::fs::set_permissions(d.join("shared"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut current = "# work_dir = \"/var/lib/openclaw/jobs\"".to_string();
    for (dir, why) in [
        ("link", "is a symbolic link"),
        ("theirs", &format!("owned by uid {INTRUDER}") as &str),
        ("open", "writable by group or others"),
        ("shared/jobs", "not sticky"),
    ] {
        let line = format!("work_dir = {:?}", d.join(dir).to_str().unwrap());
        edit_file(&cfg, &current, &line);
        current = line;
        let out = lab.start_node(&home).wait(T);
        assert_ne!(out.code, 0, "{dir}: {out:?}");
        assert!(
            out.stderr.contains(why) && out.stderr.contains("work_dir"),
            "{dir}: {}",
            out.stderr
        );
    }
    assert!(!d.join("shared/jobs").exists(), "nothing was made there");
    // A directory only root can write is used, with the agent's root in it.
    edit_file(
        &cfg,
        &current,
        &format!("work_dir = {:?}", real.to_str().unwrap()),
    );
    let agent = lab.start_node(&home);
    lab.wait_node("worker-wd", "connected", T);
    let out = lab
        .run_job(&["--node", "worker-wd", "--", "pwd", "-P"])
        .ok();
    let want = real.join(format!("jobs-worker-wd-{}/job-1", agent.pid()));
    assert_eq!(out.stdout.trim(), want.to_str().unwrap());
}

/// A node that drops to `nobody` with `job_uids` = `range` and `max_jobs`.
fn uid_node(lab: &mut Lab, name: &str, range: &str, max_jobs: u32) -> std::path::PathBuf {
    let home = lab.enroll(name, "cpu");
    let cfg = home.join("node.toml");
    edit_file(&cfg, "# run_as = \"openclaw-job\"", "run_as = \"nobody\"");
    edit_file(
        &cfg,
        "# job_uids = \"61000-61999\"",
        &format!("job_uids = {range:?}"),
    );
    edit_file(&cfg, "max_jobs = 256", &format!("max_jobs = {max_jobs}"));
    home
}

/// The first line job `id` printed, once it has.
fn first_line(lab: &Lab, id: u64) -> String {
    wait_until(T, &format!("job {id} to print"), || {
        let out = lab.admin(&["job", "logs", &id.to_string()]).ok().stdout;
        out.lines().next().map(str::to_string)
    })
}

#[test]
fn attack_two_running_jobs_never_share_a_job_uid() {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs needs root");
        return;
    }
    let mut lab = lab_with(&[]);
    // Exactly max_jobs uids; with uid = id % 3, jobs 1 and 4 would collide.
    let home = uid_node(&mut lab, "worker-uids", "63100-63102", 3);
    let _agent = lab.start_node(&home);
    lab.wait_node("worker-uids", "connected", T);
    let hold = "id -u; sleep 30";
    let a = lab.detach(&[
        "--node",
        "worker-uids",
        "--env",
        "HF_TOKEN=hf_secret_job1",
        "--",
        "sh",
        "-c",
        hold,
    ]);
    let b = lab.detach(&[
        "--node",
        "worker-uids",
        "--env",
        "HF_TOKEN=hf_secret_job2",
        "--",
        "sh",
        "-c",
        hold,
    ]);
    assert_eq!((a, b), (1, 2));
    let (ua, ub) = (first_line(&lab, a), first_line(&lab, b));
    lab.run_job(&["--node", "worker-uids", "--", "true"]).ok();
    // Job 4 runs beside 1 and 2 (max_jobs at once) and hunts for secrets
    // in every environment it can read.
    let out = lab
        .run_job(&[
            "--node",
            "worker-uids",
            "--env",
            "HF_TOKEN=hf_secret_job4",
            "--",
            "sh",
            "-c",
            "id -u; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -o 'hf_secret_job[0-9]' | sort -u",
        ])
        .ok();
    assert_eq!(lab.job(a)["state"], "running");
    assert_eq!(lab.job(b)["state"], "running");
    let mut lines = out.stdout.lines();
    let ud = lines.next().unwrap().to_string();
    let uids: std::collections::BTreeSet<&str> = [ua.as_str(), ub.as_str(), ud.as_str()].into();
    assert_eq!(uids.len(), 3, "three running jobs, three uids: {uids:?}");
    for u in &uids {
        assert!((63100..=63102).contains(&u.parse::<u32>().unwrap()), "{u}");
    }
    let found: Vec<&str> = lines.collect();
    assert_eq!(
        found,
        vec!["hf_secret_job4"],
        "job 4 read another job's environment"
    );
    for id in [a, b] {
        lab.admin(&["job", "cancel", &id.to_string()]).ok();
        lab.wait_job(id, "cancelled", T);
    }
    // Their uids are free again once their processes are gone.
    let out = lab
        .run_job(&["--node", "worker-uids", "--", "id", "-u"])
        .ok();
    assert!(uids.contains(out.stdout.trim()), "{out:?}");
}

#[test]
fn attack_a_job_uid_still_held_by_a_process_is_not_handed_out() {
    if !can_play_intruder() {
        return;
    }
    let mut lab = lab_with(&[]);
    // A range smaller than max_jobs is refused at start.
    let home = uid_node(&mut lab, "worker-stray", "63200-63201", 3);
    let out = lab.start_node(&home).wait(T);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("job_uids = \"63200-63201\" has 2 uid(s) but [policy] max_jobs = 3"),
        "{}",
        out.stderr
    );
    edit_file(&home.join("node.toml"), "max_jobs = 3", "max_jobs = 2");
    // A process left running as 63201 (a job's, escaped; its agent died).
    let mut stray = spawn_as(&mut lab, 63201, &["sleep", "60.4242"]);
    wait_until(T, "the stray to run", || {
        (!processes_with("sleep 60.4242").is_empty()).then_some(())
    });
    let _agent = lab.start_node(&home);
    lab.wait_node("worker-stray", "connected", T);
    // Job 1 (1 % 2 = 63201 before) and job 2 get 63200, one after the other.
    for _ in 0..2 {
        let out = lab
            .run_job(&["--node", "worker-stray", "--", "id", "-u"])
            .ok();
        assert_eq!(out.stdout.trim(), "63200", "{out:?}");
    }
    // With 63200 held by a running job, job 4 has no uid: it fails and says why.
    let c = lab.detach(&[
        "--node",
        "worker-stray",
        "--",
        "sh",
        "-c",
        "id -u; sleep 30",
    ]);
    assert_eq!(first_line(&lab, c), "63200");
    let d = lab.detach(&["--node", "worker-stray", "--", "id", "-u"]);
    let job = lab.wait_job(d, "failed", T);
    let reason = job["reason"].as_str().unwrap();
    assert!(
        reason.contains("job_uids = \"63200-63201\"") && reason.contains("max_jobs = 2"),
        "{reason}"
    );
    // Once the stray is gone its uid is handed out again.
    stray.kill();
    wait_until(T, "the stray to go", || {
        processes_with("sleep 60.4242").is_empty().then_some(())
    });
    let out = lab
        .run_job(&["--node", "worker-stray", "--", "id", "-u"])
        .ok();
    assert_eq!(out.stdout.trim(), "63201", "{out:?}");
    lab.admin(&["job", "cancel", &c.to_string()]).ok();
}

/// Job A's part of the temp-files attack: a secret in every temporary
/// directory and in System V IPC (perl's builtins, when there is perl),
/// a marker for the node's /tmp, and two processes of the job that meet
/// in /dev/shm and in a shared memory segment.
const LEAVE_SECRETS: &str = r#"
umask 077
id -u
echo "$USER $LOGNAME $TMPDIR $(( $(stat -f -c '%b' /dev/shm) * $(stat -f -c '%S' /dev/shm) ))"
for d in /tmp /var/tmp /dev/shm /run/lock; do echo "key=$WANDB_API_KEY" 2>/dev/null > $d/victim-$(id -u); done
echo job-a > /tmp/openclaw-host-marker-MARK
cat /tmp/victim-* /var/tmp/victim-* /dev/shm/victim-* /run/lock/victim-* 2>/dev/null
(while [ ! -e /dev/shm/ping ]; do sleep 0.05; done; echo pong > /dev/shm/pong) &
echo ping > /dev/shm/ping
wait
echo "sibling: $(cat /dev/shm/pong)"
if command -v perl >/dev/null; then
  perl -e 'my $m = shmget(0x0c1a0001, 64, 01600) // die "shmget: $!"; shmwrite($m, "shm=$ENV{WANDB_API_KEY}", 0, 64) or die "shmwrite: $!";
           my $q = msgget(0x0c1a0002, 01600) // die "msgget: $!"; msgsnd($q, pack("l! a*", 1, "msg=$ENV{WANDB_API_KEY}"), 0) or die "msgsnd: $!"'
  perl -e 'my $m = shmget(0x0c1a0001, 0, 0) // die "shmget: $!"; shmread($m, my $b, 0, 64) or die; $b =~ s/\0+$//; print "sibling $b\n"'
else
  echo "no perl"
fi
"#;

/// Job B's part: everything it can find of A's.
const HUNT_SECRETS: &str = r#"
id -u
ls -A /tmp /var/tmp /dev/shm
cat /tmp/victim-* /var/tmp/victim-* /dev/shm/victim-* /run/lock/victim-* /dev/shm/* 2>/dev/null
# A user namespace of its own cannot unmount the job's tmpfs to see what
# lies beneath (the kernel locks mounts it inherits).
unshare -Urm sh -c 'umount -l /tmp /var/tmp /dev/shm; find /tmp /var/tmp /dev/shm -mindepth 1 -maxdepth 1' 2>/dev/null | sed 's/^/userns: /'
if command -v perl >/dev/null; then
  perl -e 'my $m = shmget(0x0c1a0001, 0, 0); if (defined $m) { shmread($m, my $b, 0, 64); print "found $b\n" } else { print "no shm\n" }
           my $q = msgget(0x0c1a0002, 0); if (defined $q) { msgrcv($q, my $b, 256, 0, 04000); print "found $b\n" } else { print "no msg\n" }'
fi
true
"#;

#[test]
fn attack_a_later_job_with_the_same_uid_cannot_read_an_earlier_jobs_temp_files() {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs and private mounts need root");
        return;
    }
    let mut lab = lab_with(&[]);
    // One uid: every job gets it, one after the other.
    let home = uid_node(&mut lab, "worker-reuse", "63300-63300", 1);
    // A size that bounds nothing is refused at start; a size is kept.
    let cfg = home.join("node.toml");
    edit_file(&cfg, "# job_tmp_size = \"50%\"", "job_tmp_size = \"0%\"");
    let out = lab.start_node(&home).wait(T);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("job_tmp_size = \"0%\"") && out.stderr.contains("1 to 100"),
        "{}",
        out.stderr
    );
    edit_file(&cfg, "job_tmp_size = \"0%\"", "job_tmp_size = \"64MiB\"");
    let agent = lab.start_node(&home);
    lab.wait_node("worker-reuse", "connected", T);
    assert!(
        agent.stderr().contains("every job gets its own /tmp"),
        "{}",
        agent.stderr()
    );
    let mark = std::process::id().to_string();
    let host_marker = Path::new("/tmp").join(format!("openclaw-host-marker-{mark}"));
    // Removed however the test ends (a node without the fix leaves them).
    let shared = Path::new("/tmp").join(format!("openclaw-cwd-{mark}"));
    let _litter = Litter(vec![
        shared.clone(),
        host_marker.clone(),
        "/tmp/victim-63300".into(),
        "/var/tmp/victim-63300".into(),
        "/dev/shm/victim-63300".into(),
        "/run/lock/victim-63300".into(),
    ]);
    let perl = have_tool("perl");
    if !perl {
        eprintln!("note: no perl, so System V shared memory and message queues are not checked");
    }
    eprintln!(
        "note: POSIX message queues are not checked (no standard tool makes one); they live in the IPC namespace too"
    );
    let a = lab
        .run_job(&[
            "--node",
            "worker-reuse",
            "--env",
            "WANDB_API_KEY=victim-secret-123",
            "--",
            "sh",
            "-c",
            &LEAVE_SECRETS.replace("MARK", &mark),
        ])
        .ok();
    let lines: Vec<&str> = a.stdout.lines().collect();
    assert_eq!(lines[0], "63300", "{a:?}");
    // USER and LOGNAME name the job's own uid, and TMPDIR its own /tmp.
    // And /dev/shm holds job_tmp_size.
    assert_eq!(lines[1], format!("63300 63300 /tmp {}", 64 << 20), "{a:?}");
    // The job itself uses its temporary directories as before (and
    // /run/lock where the node has one).
    let keys = lines[2..]
        .iter()
        .take_while(|l| l.starts_with("key="))
        .count();
    assert!(
        (3..=4).contains(&keys)
            && lines[2..2 + keys]
                .iter()
                .all(|l| *l == "key=victim-secret-123"),
        "{a:?}"
    );
    // Two processes of one job share /dev/shm (NCCL, DataLoader workers)
    // and System V IPC.
    assert_eq!(lines[2 + keys], "sibling: pong", "{a:?}");
    if perl {
        assert_eq!(lines[3 + keys], "sibling shm=victim-secret-123", "{a:?}");
    }
    // Nothing of the job's reached the node's /tmp.
    assert!(
        !host_marker.exists(),
        "the job wrote {} on the node",
        host_marker.display()
    );
    for d in ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"] {
        assert!(!Path::new(d).join("victim-63300").exists(), "{d}");
    }
    // Job B gets the same uid and finds nothing of A's.
    let b = lab
        .run_job(&["--node", "worker-reuse", "--", "sh", "-c", HUNT_SECRETS])
        .ok();
    let lines: Vec<&str> = b.stdout.lines().collect();
    assert_eq!(lines[0], "63300", "the same uid again: {b:?}");
    assert!(!b.stdout.contains("victim-secret-123"), "{b:?}");
    assert!(!b.stdout.contains("victim-"), "{b:?}");
    // Its temporary directories are empty: ls prints only their names.
    assert_eq!(
        &lines[1..],
        if perl {
            &[
                "/dev/shm:",
                "",
                "/tmp:",
                "",
                "/var/tmp:",
                "no shm",
                "no msg",
            ][..]
        } else {
            &["/dev/shm:", "", "/tmp:", "", "/var/tmp:"][..]
        },
        "{b:?}"
    );
    // A --cwd below the node's /tmp stays where it is, and is all the job
    // sees of the node's /tmp.
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("data.txt"), "lab data\n").unwrap();
    let out = lab
        .run_job(&[
            "--node",
            "worker-reuse",
            "--cwd",
            shared.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "pwd; cat data.txt; ls -A /tmp",
        ])
        .ok();
    assert_eq!(
        out.stdout,
        format!("{}\nlab data\nopenclaw-cwd-{mark}\n", shared.display()),
        "{out:?}"
    );
}

/// Kernel key rings, from perl's `syscall` (keyutils' `keyctl` is rarely
/// installed): `leave` puts a secret in the inherited session key ring,
/// then, in a session of its own that links them (as an attacker would),
/// in the uid's user, user-session and persistent key rings; `hunt`
/// searches the same places and prints what it can read.
const KEYS: &str = r#"
require "syscall.ph";
my ($mode) = @ARGV;
my $t = "user";
sub leave { my ($ring, $d) = @_; my $p = "$d=$ENV{WANDB_API_KEY}"; my $r = syscall(&SYS_add_key, $t, $d, $p, length($p), $ring); print $r > 0 ? "added $d\n" : "refused $d\n" }
sub hunt { my ($ring, $d) = @_; my $id = syscall(&SYS_keyctl, 10, $ring, $t, $d, 0); if ($id > 0) { my $buf = "\0" x 256; my $n = syscall(&SYS_keyctl, 11, $id, $buf, 256); print $n > 0 ? "found " . substr($buf, 0, $n) . "\n" : "unreadable $d\n" } else { print "no $d\n" } }
my $f = $mode eq "leave" ? \&leave : \&hunt;
$f->(-3, "k-sess");
syscall(&SYS_keyctl, 1, 0) > 0 or die "new session: $!";
syscall(&SYS_keyctl, 8, -4, -3); syscall(&SYS_keyctl, 8, -5, -3);
$f->(-4, "k-user");
$f->(-5, "k-usess");
my $pers = syscall(&SYS_keyctl, 22, -1, -3);
if ($pers > 0) { $f->($pers, "k-pers") } else { print "no persistent key rings\n" }
"#;

#[test]
fn attack_jobs_cannot_hand_each_other_kernel_keys() {
    if !is_root() || !have_tool("perl") {
        eprintln!("SKIPPED: needs root to drop jobs to their uids, and perl to make keys");
        return;
    }
    let probe = std::process::Command::new("perl")
        .args(["-e", "require 'syscall.ph'"])
        .output()
        .unwrap();
    if !probe.status.success() {
        eprintln!("SKIPPED: perl has no syscall.ph (h2ph) to make keys with");
        return;
    }
    let mut lab = lab_with(&[]);
    // One uid: job B gets job A's.
    let home = uid_node(&mut lab, "worker-keys", "63320-63320", 1);
    // The agent holds a session key ring, as a systemd service
    // (KeyringMode=private) or a login shell does.
    let h = home.to_str().unwrap().to_string();
    let _agent = lab.spawn_cmd(
        "perl",
        &[
            "-e",
            "require 'syscall.ph'; syscall(&SYS_keyctl, 1, 0) > 0 or die \"join: $!\"; exec @ARGV or die",
            BIN,
            "--home",
            &h,
            "node",
            "run",
        ],
    );
    lab.wait_node("worker-keys", "connected", T);
    let a = lab
        .run_job(&[
            "--node",
            "worker-keys",
            "--env",
            "WANDB_API_KEY=victim-secret-123",
            "--",
            "perl",
            "-e",
            KEYS,
            "leave",
        ])
        .ok();
    let b = lab
        .run_job(&["--node", "worker-keys", "--", "perl", "-e", KEYS, "hunt"])
        .ok();
    assert!(
        !b.stdout.contains("victim-secret-123"),
        "job B read job A's keys: {b:?}"
    );
    let lines: Vec<&str> = a.stdout.lines().collect();
    // The session key ring every job inherits is closed to them; their
    // own uid's key rings work as before.
    assert_eq!(
        lines[..3],
        ["refused k-sess", "added k-user", "added k-usess"],
        "{a:?}"
    );
    assert!(
        ["added k-pers", "no persistent key rings"].contains(&lines[3]),
        "{a:?}"
    );
    let want = if lines[3] == "added k-pers" {
        "no k-pers"
    } else {
        "no persistent key rings"
    };
    assert_eq!(
        b.stdout.lines().collect::<Vec<_>>(),
        ["no k-sess", "no k-user", "no k-usess", want],
        "{b:?}"
    );
}

#[test]
fn a_node_that_cannot_make_mount_namespaces_says_so_and_still_runs_jobs() {
    if !is_root() || !have_tool("setpriv") {
        eprintln!("SKIPPED: needs root and setpriv to run the agent without CAP_SYS_ADMIN");
        return;
    }
    let mut lab = lab_with(&[]);
    let home = uid_node(&mut lab, "worker-nons", "63310-63310", 1);
    // Root without CAP_SYS_ADMIN, as in a container that refuses unshare.
    let bin = BIN.to_string();
    let h = home.to_str().unwrap().to_string();
    let agent = lab.spawn_cmd(
        "setpriv",
        &[
            "--bounding-set",
            "-sys_admin",
            "--inh-caps",
            "-sys_admin",
            "--",
            &bin,
            "--home",
            &h,
            "node",
            "run",
        ],
    );
    lab.wait_node("worker-nons", "connected", T);
    let said = agent.stderr();
    assert!(
        said.contains("JOBS GET NO PRIVATE TEMPORARY DIRECTORIES")
            && said.contains("a job can read what an earlier job with the same uid left there")
            && said.contains("CAP_SYS_ADMIN"),
        "{said}"
    );
    assert!(said.contains("unshare"), "the reason: {said}");
    // Jobs still run, as their own uid, with the node's /tmp.
    let seen = Path::new("/tmp").join(format!("openclaw-node-tmp-{}", std::process::id()));
    let _litter = Litter(vec![seen.clone()]);
    std::fs::write(&seen, "").unwrap();
    let out = lab
        .run_job(&[
            "--node",
            "worker-nons",
            "--",
            "sh",
            "-c",
            &format!("id -u; echo \"$USER $TMPDIR\"; ls {}", seen.display()),
        ])
        .ok();
    assert_eq!(
        out.stdout,
        format!("63310\n63310 /tmp\n{}\n", seen.display()),
        "{out:?}"
    );
}

#[test]
fn attack_daemons_and_setsid_do_not_outlive_their_job() {
    let mut lab = lab_with(&[]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 1);
    let out = lab
        .run_job(&[
            "--node",
            "worker-cpu-01",
            "--gpus",
            "1",
            "--",
            "sh",
            "-c",
            "sleep 4241.5 & setsid sleep 4242.5 & (sleep 4243.5 &) ; echo started",
        ])
        .ok();
    assert_eq!(out.stdout, "started\n");
    assert!(
        processes_with("sleep 424").is_empty(),
        "{:?}",
        processes_with("sleep 424")
    );
    let job = lab.job(1);
    assert!(job["processes_killed"].as_u64().unwrap() >= 3, "{job}");
    // The GPU is free again: another job gets it at once.
    lab.run_job(&["--node", "worker-cpu-01", "--gpus", "1", "--", "true"])
        .ok();
}

#[test]
fn attack_timeout_and_cancel_kill_the_whole_tree() {
    // The job ignores SIGTERM; SIGKILL follows after kill_grace.
    let mut lab = lab_with(&[("kill_grace = \"10s\"", "kill_grace = \"1s\"")]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    // Markers of this run only: other runs of this test on the machine
    // have other pids.
    let tag = std::process::id();
    lab.run_job(&[
        "--node",
        "worker-cpu-01",
        "--timeout",
        "1s",
        "--",
        "sh",
        "-c",
        &format!("setsid sleep 4251.{tag} & sleep 4252.{tag}"),
    ])
    .fails_with(124, "");
    assert!(processes_with(&format!("sleep 4251.{tag}")).is_empty());
    assert!(processes_with(&format!("sleep 4252.{tag}")).is_empty());
    let id = lab.detach(&[
        "--node",
        "worker-cpu-01",
        "--",
        "sh",
        "-c",
        &format!("trap '' TERM; setsid sleep 4261.{tag} & sleep 4262.{tag}"),
    ]);
    // Cancel once the tree exists: `running` is reported at spawn, before
    // the shell has set its trap and started both sleeps.
    let running = |needle: String| {
        processes_with(&needle).into_iter().any(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .starts_with(&needle)
            })
        })
    };
    wait_until(T, "the job's process tree", || {
        (running(format!("sleep 4261.{tag}")) && running(format!("sleep 4262.{tag}"))).then_some(())
    });
    lab.admin(&["job", "cancel", &id.to_string()]).ok();
    let job = lab.wait_job(id, "cancelled", T);
    assert!(job["processes_killed"].as_u64().unwrap() >= 2, "{job}");
    assert!(processes_with(&format!("sleep 4261.{tag}")).is_empty());
    assert!(processes_with(&format!("sleep 4262.{tag}")).is_empty());
}

// --- environment and paths -----------------------------------------------------

#[test]
fn attack_env_injection_is_refused_by_name() {
    let mut lab = lab_with(&[("env_allow = [\n", "env_allow = [\"*\",\n")]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    for var in [
        "BASH_ENV=/tmp/evil.sh",
        "ENV=/tmp/evil.sh",
        "PATH=/tmp/evil",
        "PYTHONPATH=/tmp/evil",
        "PYTHONSTARTUP=/tmp/evil.py",
        "NODE_OPTIONS=--require=/tmp/evil.js",
        "PERL5OPT=-Mevil",
        "RUBYOPT=-revil",
        "SHELLOPTS=xtrace",
        "PS4=$(touch /tmp/pwned)",
        "IFS=x",
        "LD_PRELOAD=/tmp/evil.so",
        "CUDA_VISIBLE_DEVICES=0,1,2,3",
        "OPENCLAW_JOB_ID=1",
    ] {
        let key = var.split('=').next().unwrap();
        let out = lab.run_job(&[
            "--node",
            "worker-cpu-01",
            "--env",
            var,
            "--",
            "bash",
            "-c",
            "true",
        ]);
        assert_eq!(out.code, 252, "{var}: {out:?}");
        assert!(
            out.stderr.contains("refused by policy") && out.stderr.contains(key),
            "{var}: {}",
            out.stderr
        );
    }
    assert!(lab.jobs().is_empty(), "no refused job was created");
}

#[test]
fn attack_gpu_stack_loader_variables_are_refused() {
    // The default gateway.toml: its env_allow used to hold CUDA_*, NCCL_*,
    // TORCH_* and HF_*, which admitted every one of these.
    let mut lab = lab_with(&[]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    for (var, rule) in [
        ("CUDA_INJECTION64_PATH=/tmp/x.so", "CUDA_INJECTION*"),
        ("NCCL_NET_PLUGIN=/tmp/x.so", "NCCL_*_PLUGIN"),
        ("NCCL_TUNER_PLUGIN=/tmp/x.so", "NCCL_*_PLUGIN"),
        ("NCCL_PROFILER_PLUGIN=/tmp/x.so", "NCCL_*_PLUGIN"),
        ("NCCL_CONF_FILE=/tmp/nccl.conf", "NCCL_*_FILE"),
        ("NCCL_DEBUG_FILE=/tmp/out.%h.%p", "NCCL_*_FILE"),
        ("CUDA_CACHE_PATH=/tmp/cache", "CUDA_CACHE_PATH"),
        ("CUDA_COREDUMP_FILE=/tmp/core", "CUDA_*COREDUMP*"),
        ("CUDA_DEVICE_ORDER=FASTEST_FIRST", "CUDA_DEVICE_ORDER"),
        ("CUDA_HOME=/tmp/cuda", "CUDA_HOME"),
        ("TORCH_EXTENSIONS_DIR=/tmp/ext", "TORCH_EXTENSIONS_DIR"),
        (
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1",
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",
        ),
        ("TORCHINDUCTOR_CACHE_DIR=/tmp/ind", "TORCHINDUCTOR_*"),
        ("TRITON_LIBCUDA_PATH=/tmp/lib", "TRITON_*"),
        ("HF_MODULES_CACHE=/tmp/mods", "HF_MODULES_CACHE"),
        ("HSA_TOOLS_LIB=/tmp/x.so", "HSA_TOOLS_*"),
        ("XLA_FLAGS=--xla_dump_to=/tmp/d", "XLA_FLAGS"),
    ] {
        let key = var.split('=').next().unwrap();
        let out = lab.run_job(&[
            "--node",
            "worker-cpu-01",
            "--env",
            var,
            "--",
            "python3",
            "-c",
            "pass",
        ]);
        assert_eq!(out.code, 252, "{var}: {out:?}");
        assert!(
            out.stderr.contains("refused by policy")
                && out.stderr.contains(key)
                && out.stderr.contains(&format!("{rule:?}")),
            "{var}: {}",
            out.stderr
        );
    }
    // Knobs training needs still pass by default.
    lab.run_job(&[
        "--node",
        "worker-cpu-01",
        "--env",
        "NCCL_DEBUG=INFO",
        "--env",
        "CUDA_LAUNCH_BLOCKING=1",
        "--env",
        "TORCH_DISTRIBUTED_DEBUG=DETAIL",
        "--",
        "true",
    ])
    .ok();
    assert_eq!(lab.jobs().len(), 1, "only the allowed job was created");
}

#[test]
fn attack_env_outside_the_allowlist_is_refused_and_the_plan_shows_env() {
    let mut lab = lab_with(&[]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    lab.run_job(&["--node", "worker-cpu-01", "--env", "EPOCHS=3", "--", "true"])
        .fails_with(252, "[policy] env_allow");
    lab.run_job(&[
        "--node",
        "worker-cpu-01",
        "--env",
        "WANDB_PROJECT=lab",
        "--env",
        "HF_TOKEN=hf_s3cret",
        "--",
        "true",
    ])
    .ok();
    let job = lab.job(1);
    let env = job["env"].as_array().unwrap();
    assert!(
        env.contains(&serde_json::json!(["WANDB_PROJECT", "lab"])),
        "{job}"
    );
    assert!(
        env.contains(&serde_json::json!(["HF_TOKEN", "<secret>"])),
        "{job}"
    );
    assert!(!job.to_string().contains("hf_s3cret"));
}

#[test]
fn attack_cwd_escapes_are_refused() {
    let mut lab = lab_with(&[]);
    let base = lab.dir().join("srv-lab");
    std::fs::create_dir_all(base.join("exp42")).unwrap();
    std::fs::create_dir_all(lab.dir().join("srv-lab-evil")).unwrap();
    std::os::unix::fs::symlink("/etc", base.join("etc-link")).unwrap();
    let home = lab.enroll("worker-cpu-01", "cpu");
    edit_file(
        &home.join("node.toml"),
        "allowed_cwds = []",
        &format!("allowed_cwds = [{:?}]", base.to_str().unwrap()),
    );
    let _agent = lab.start_node(&home);
    lab.wait_node("worker-cpu-01", "connected", T);
    let ok = base.join("exp42");
    let out = lab
        .run_job(&[
            "--node",
            "worker-cpu-01",
            "--cwd",
            ok.to_str().unwrap(),
            "--",
            "pwd",
        ])
        .ok();
    assert_eq!(out.stdout.trim(), ok.to_str().unwrap());
    for bad in [
        format!("{}/../../../etc", base.display()),
        format!("{}-evil", base.display()),
        format!("{}/etc-link", base.display()),
    ] {
        let out = lab.run_job(&["--node", "worker-cpu-01", "--cwd", &bad, "--", "pwd"]);
        assert_eq!(out.code, 252, "{bad}: {out:?}");
        assert!(out.stderr.contains("allowed_cwds"), "{bad}: {}", out.stderr);
    }
}

#[test]
fn attack_deny_rules_are_not_dodged_by_paths_or_busybox() {
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[[policy.rules]]\ncommands = [\"rm\"]\naction = \"deny\"\n"),
    )
    .unwrap();
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    for argv in [
        vec!["rm", "-f", "/tmp/x"],
        vec!["/bin/rm", "-f", "/tmp/x"],
        vec!["busybox", "rm", "-f", "/tmp/x"],
        vec!["env", "A=1", "/usr/bin/rm", "-f", "/tmp/x"],
    ] {
        let mut args = vec!["--node", "worker-cpu-01", "--"];
        args.extend(argv.iter());
        lab.run_job(&args)
            .fails_with(252, "denied by policy rule 1");
    }
}

// --- what a node says about itself -----------------------------------------------

#[test]
fn attack_node_cannot_claim_labels_or_gpus() {
    let mut lab = lab_with(&[]);
    // An auto-approve token without labels or a GPU cap; the node asks for
    // the gpu label and offers 64 simulated GPUs.
    let token = lab.token(&["--auto-approve"]);
    let home = lab.enroll_with(&token, "rogue", "gpu");
    let agent = lab.start_gpu_node(&home, 64);
    let node = lab.wait_node("rogue", "connected", T);
    assert_eq!(node["labels"], serde_json::json!([]));
    assert_eq!(node["proposed_labels"], serde_json::json!(["gpu"]));
    // Routing ignores the claim: no GPU job goes there.
    lab.run_job(&["--role", "gpu", "--", "true"])
        .fails_with(254, "no node has the role \"gpu\"");
    lab.run_job(&["--node", "rogue", "--gpus", "1", "--", "true"])
        .fails_with(250, "node rogue has no confirmed GPUs");
    // An admin confirms one GPU: exactly one, whatever the node says. The
    // cap applies from the node's next session.
    lab.admin(&["node", "approve", "rogue", "--labels", "gpu", "--gpus", "1"])
        .ok();
    drop(agent);
    let _agent = lab.start_gpu_node(&home, 64);
    wait_until(T, "a GPU job to route to the confirmed node", || {
        (lab.run_job(&["--role", "gpu", "--", "true"]).code == 0).then_some(())
    });
    lab.run_job(&["--node", "rogue", "--gpus", "2", "--", "true"])
        .fails_with(
            250,
            "node rogue has 1 confirmed GPU(s) and the job asks for 2",
        );
}

#[test]
fn attack_a_hand_approved_node_offers_no_gpus_nobody_confirmed() {
    // The review's exploit: a node approved by hand without --gpus claimed
    // 48 GPUs, got the implicit gpu role, and took gpu jobs from a real one.
    let mut lab = lab_with(&[]);
    let _real = lab.node_up("worker-gpu-01", "gpu", 1);
    let token = lab.token(&[]);
    let home = lab.home("rogue");
    let enroll = lab.spawn(
        &home,
        &[
            "node",
            "enroll",
            "--token",
            &token,
            "--name",
            "rogue",
            "--wait",
            "20s",
            "--allow-jobs-as-agent-user",
        ],
    );
    lab.wait_node("rogue", "pending", T);
    let out = lab.admin(&["node", "approve", "rogue"]).ok();
    assert!(out.stdout.contains("no GPUs confirmed"), "{}", out.stdout);
    enroll.wait(T);
    let _agent = lab.start_gpu_node(&home, 48);
    lab.wait_node("rogue", "connected", T);
    // Its claim is shown, not offered: gpu jobs go to the real GPU node only.
    for _ in 0..3 {
        let out = lab
            .run_job(&["--role", "gpu", "--", "printenv", "OPENCLAW_NODE"])
            .ok();
        assert_eq!(out.stdout.trim(), "worker-gpu-01");
    }
    // None confirmed is none offered: a request for one could never run
    // there, and says so rather than "retry later".
    lab.run_job(&["--node", "rogue", "--gpus", "1", "--queue", "--", "true"])
        .fails_with(250, "node rogue has no confirmed GPUs");
    let list = lab.admin(&["node", "list"]).ok().stdout;
    let row = list.lines().find(|l| l.starts_with("rogue")).unwrap();
    assert!(row.contains("unconfirmed"), "{row}");
    // An admin confirms two: they are offered at once, on the live session.
    let out = lab.admin(&["node", "approve", "rogue", "--gpus", "2"]).ok();
    assert!(out.stdout.contains("GPUs confirmed: 2"), "{}", out.stdout);
    lab.run_job(&["--node", "rogue", "--gpus", "2", "--", "true"])
        .ok();
    lab.run_job(&["--node", "rogue", "--gpus", "3", "--", "true"])
        .fails_with(
            250,
            "node rogue has 2 confirmed GPU(s) and the job asks for 3",
        );
}

fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        std::fs::copy(e.path(), &dst).unwrap();
    }
}

// --- safe defaults and bounds ---------------------------------------------------

#[test]
fn attack_chat_gets_no_shell_and_waits_for_approval_by_default() {
    let mut lab = lab_with(&[]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let bot = lab.bot("moltbot", "slack:T0LAB");
    let user = "slack:T0LAB/U0EVE";
    let out = lab
        .run(
            &bot,
            &[
                "chat",
                "--user",
                user,
                "run `id; cat /etc/shadow` on worker-cpu-01",
            ],
        )
        .ok();
    assert!(
        out.stdout.contains("policy.chat_shell = false"),
        "{}",
        out.stdout
    );
    // A plain command from chat waits for an approver (chat_default = approve),
    // while the admin CLI runs at once (default = allow).
    let out = lab
        .run(
            &bot,
            &["chat", "--user", user, "run echo hi on worker-cpu-01"],
        )
        .ok();
    assert!(
        out.stdout.contains("awaits approval by admin"),
        "{}",
        out.stdout
    );
    let job = lab.jobs().into_iter().next().unwrap();
    assert_eq!(job["state"], "awaiting-approval");
    lab.run_job(&["--node", "worker-cpu-01", "--", "true"]).ok();
}

#[test]
fn attack_nothing_is_kept_for_ever_retention_prunes_jobs_and_logs() {
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    edit_file(&cfg, "jobs = \"90d\"", "jobs = \"2s\"");
    edit_file(&cfg, "interval = \"1h\"", "interval = \"1s\"");
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    lab.run_job(&["--node", "worker-cpu-01", "--", "echo", "old output"])
        .ok();
    let log = lab.gw_home.join("logs").join("1.stdout");
    assert!(log.exists());
    // A long job stays while it runs, however old.
    let live = lab.detach(&["--node", "worker-cpu-01", "--", "sleep", "8"]);
    wait_until(T, "the old job to be pruned", || {
        (lab.admin(&["job", "show", "1"]).code != 0).then_some(())
    });
    lab.admin(&["job", "show", "1"])
        .fails_with(254, "no job with id 1");
    assert!(!log.exists(), "the pruned job's log is gone");
    assert_eq!(lab.job(live)["state"], "running");
}

#[test]
fn attack_job_list_is_paged() {
    let mut lab = lab_with(&[]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    for _ in 0..5 {
        lab.run_job(&["--node", "worker-cpu-01", "--", "true"]).ok();
    }
    let page = |args: &[&str]| -> Vec<u64> {
        let mut a = vec!["job", "list", "--json"];
        a.extend_from_slice(args);
        let out = lab.admin(&a).ok().stdout;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(page(&["--limit", "2"]), vec![5, 4]);
    assert_eq!(page(&["--limit", "2", "--before", "4"]), vec![3, 2]);
    assert_eq!(page(&["--limit", "100000", "--before", "2"]), vec![1]);
}

#[test]
fn attack_named_jobs_pick_only_users_the_node_allows() {
    if !is_root() {
        eprintln!("SKIPPED: switching users for jobs needs root");
        return;
    }
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[jobs.as-nobody]\ncommand = [\"id\", \"-un\"]\nnode = \"worker-jail\"\nrun_as = \"nobody\"\n\
             [jobs.as-daemon]\ncommand = [\"id\", \"-un\"]\nnode = \"worker-jail\"\nrun_as = \"daemon\"\n\
             [jobs.as-root]\ncommand = [\"id\", \"-un\"]\nnode = \"worker-jail\"\nrun_as = \"root\"\n"
        ),
    )
    .unwrap();
    lab.start_gateway();
    let home = jailed_node(&mut lab);
    edit_file(
        &home.join("node.toml"),
        "allowed_run_as = []",
        "allowed_run_as = [\"nobody\", \"root\"]",
    );
    let _agent = lab.start_node(&home);
    lab.wait_node("worker-jail", "connected", T);
    let out = lab.run_job(&["--job", "as-nobody"]).ok();
    assert_eq!(out.stdout, "nobody\n");
    lab.run_job(&["--job", "as-daemon"])
        .fails_with(252, "allowed_run_as");
    lab.run_job(&["--job", "as-root"])
        .fails_with(252, "never run as root");
    assert_eq!(lab.job(1)["run_as"], "nobody");
}

// --- what other parties wrote, on an admin's terminal ------------------------------

/// Text a hostile party would like an admin's terminal to act on: clear
/// the screen, set the window title (OSC ... BEL), a one-byte C1 CSI, a
/// bidi override and isolate, zero-width and tag characters, and a tab
/// and newline that would forge table columns and rows.
const EVIL: &str = "x\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}live\u{2066}\u{200b}\u{feff}\u{e0041}\u{7f}\tcol\nID STATE forged";

/// Characters that must never reach a terminal from another party.
const NEVER: &[char] = &[
    '\u{1b}',
    '\u{7}',
    '\u{9b}',
    '\u{9d}',
    '\u{7f}',
    '\u{202e}',
    '\u{2066}',
    '\u{200b}',
    '\u{feff}',
    '\u{e0041}',
    '\t',
    '\r',
];

/// Panics if `out` (stdout or stderr) holds a terminal control.
fn no_escapes(what: &str, out: &testkit::Out) {
    for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let bad = text.chars().find(|&c| {
            NEVER.contains(&c)
                || (c != '\n'
                    && (c.is_control()
                        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                            | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{e0000}'..='\u{e007f}')))
        });
        if let Some(c) = bad {
            panic!("{what}: {stream} holds U+{:04X}:\n{text:?}", c as u32);
        }
    }
}

/// Runs a background `openclaw` command to its end; stdout and stderr as
/// bytes, so that nothing is lost to decoding.
fn finish(p: testkit::Proc) -> testkit::Out {
    let (o, e) = (p.stdout_path.clone(), p.stderr_path.clone());
    let code = p.wait(T).code;
    let read = |f: &Path| String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
    testkit::Out {
        code,
        stdout: read(&o),
        stderr: read(&e),
    }
}

#[test]
fn attack_terminal_escapes_from_other_parties_never_reach_the_terminal() {
    use testkit::swarm::{Swarm, SwarmOptions};
    // Chat jobs wait for a chat approver (or an admin); the admin's `true`
    // waits for carol, a second admin.
    let mut lab = lab_with(&[
        (
            "approvers = [\"admin\"]",
            "approvers = [\"admin\", \"carol\", \"slack:T0LAB/U0BOSS\"]",
        ),
        (
            "\n[limits]",
            "[[policy.rules]]\ncommands = [\"true\"]\naction = \"approve\"\napprovers = [\"carol\"]\n\n[limits]",
        ),
    ]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let bot = lab.bot("moltbot", "slack:T0LAB");
    let carol = lab.second_admin("carol");
    let gw = lab.gw_home.clone();
    // A hostile node: its GPU names and GPU error are its own words.
    let token = lab.token(&["--auto-approve", "--max-gpus", "2"]);
    let opts = SwarmOptions {
        nodes: 1,
        prefix: "rogue".into(),
        labels: vec![],
        endpoints: 1,
        threads: 1,
        gpus: 2,
        gpu_name: EVIL.into(),
        gpu_error: Some(EVIL.into()),
        ..Default::default()
    };
    let _swarm = Swarm::start(
        &lab.dir().join("swarm"),
        lab.addr.as_deref().unwrap(),
        &token,
        &opts,
        T,
    )
    .unwrap();
    lab.wait_node("rogue-00001", "connected", T);
    let mut checked = 0;
    let mut check = |what: &str, out: testkit::Out| -> testkit::Out {
        no_escapes(what, &out);
        checked += 1;
        out
    };
    let chat = |lab: &Lab, user: &str, msg: &str| lab.run(&bot, &["chat", "--user", user, msg]);
    let (eve, boss) = ("slack:T0LAB/U0EVE", "slack:T0LAB/U0BOSS");

    // A chat user's command; the chat approver denies it with a reason.
    let out = check(
        "chat run",
        chat(&lab, eve, &format!("run echo {EVIL} on worker-cpu-01")),
    );
    assert!(out.stdout.contains("awaits approval"), "{}", out.stdout);
    check(
        "chat deny",
        chat(&lab, boss, &format!("deny 1 because {EVIL}")),
    );
    // Another; carol denies it from her CLI.
    check(
        "chat run 2",
        chat(&lab, eve, "run echo two on worker-cpu-01"),
    );
    check(
        "carol's deny",
        lab.run(&carol, &["job", "deny", "2", "--reason", EVIL]),
    );
    let job1 = lab.job(1);
    assert!(
        job1["reason"].as_str().unwrap().contains("\u{1b}[2J"),
        "the hostile reason is stored as written: {job1}"
    );

    // The admin's own `run` and fan-outs wait for carol, who denies them:
    // her reason reaches the admin's stderr while it waits.
    let runs: [&[&str]; 4] = [
        &["run", "--node", "worker-cpu-01", "--", "true"],
        &["run", "--all", "--label", "cpu", "--", "true"],
        &["run", "--all", "--group", "--label", "cpu", "--", "true"],
        &["run", "--all", "--json", "--label", "cpu", "--", "true"],
    ];
    for (next, args) in (3u64..).zip(runs) {
        let waiting = lab.spawn(&gw, args);
        lab.wait_job(next, "awaiting-approval", T);
        check(
            "carol denies",
            lab.run(
                &carol,
                &["job", "deny", &next.to_string(), "--reason", EVIL],
            ),
        );
        let out = check(&args.join(" "), finish(waiting));
        assert_eq!(out.code, 252, "{args:?}: {out:?}");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("\\u{1b}[2J") || text.contains("\\u001b[2J"),
            "{args:?}: the reason is shown, escaped: {text}"
        );
    }

    // Every human view an admin has, and the JSON ones.
    let admin = |args: &[&str]| lab.admin(args);
    let views: Vec<(&str, Vec<&str>)> = vec![
        ("job list", vec!["job", "list"]),
        ("job show 1", vec!["job", "show", "1"]),
        ("job show 2", vec!["job", "show", "2"]),
        ("job show 3", vec!["job", "show", "3"]),
        ("job show 4", vec!["job", "show", "4"]),
        ("job logs 1", vec!["job", "logs", "1"]),
        ("job logs --follow 1", vec!["job", "logs", "1", "--follow"]),
        ("job approve 1", vec!["job", "approve", "1"]),
        ("job deny 1", vec!["job", "deny", "1", "--reason", "again"]),
        ("job cancel 2", vec!["job", "cancel", "2"]),
        ("node approve rogue", vec!["node", "approve", "rogue-00001"]),
        ("ca status", vec!["ca", "status"]),
        ("node list", vec!["node", "list"]),
        ("node show rogue", vec!["node", "show", "rogue-00001"]),
        ("node show worker", vec!["node", "show", "worker-cpu-01"]),
        ("token list", vec!["token", "list"]),
        ("client list", vec!["client", "list"]),
        ("whoami", vec!["whoami"]),
        ("gateway status", vec!["gateway", "status"]),
        ("doctor", vec!["doctor"]),
        ("job list --json", vec!["job", "list", "--json"]),
        ("job show --json", vec!["job", "show", "1", "--json"]),
        ("node list --json", vec!["node", "list", "--json"]),
        (
            "node show --json",
            vec!["node", "show", "rogue-00001", "--json"],
        ),
    ];
    for (what, args) in &views {
        let out = check(what, admin(args));
        if what.ends_with("--json") {
            // JSON keeps the exact text for programs.
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            assert!(v.to_string().contains("\\u001b[2J"), "{what}: {v}");
        }
    }
    let list = admin(&["job", "list"]).stdout;
    assert_eq!(
        list.lines().count(),
        1 + 6,
        "a header and six jobs, no forged row:\n{list}"
    );
    let show = admin(&["job", "show", "1"]).stdout;
    for escaped in [
        "\\u{1b}[2J",
        "\\u{1b}]0;pwned\\u{7}",
        "\\u{9b}31m",
        "\\u{202e}live",
    ] {
        assert!(show.contains(escaped), "{escaped} in:\n{show}");
    }
    let node = admin(&["node", "show", "rogue-00001"]).stdout;
    assert!(
        node.contains("\\u{202e}live"),
        "GPU names are shown escaped:\n{node}"
    );

    // The same views through the bot, as a chat user sees them.
    for msg in [
        "status",
        "status 1",
        "status 3",
        "status 99",
        "jobs",
        "help",
        "nodes",
        "logs 1",
        "approve 1",
        "cancel 2",
    ] {
        check(msg, chat(&lab, boss, msg));
    }
    // The rogue node's health reason (its GPU error, its own words) is
    // shown in the chat node list, escaped.
    let nodes = chat(&lab, boss, "nodes").stdout;
    assert!(
        nodes.contains("🟡 rogue-00001: degraded (GPU telemetry failed: ")
            && nodes.contains("\\u{1b}[2J"),
        "{nodes}"
    );
    check(
        "chat --dry-run",
        lab.run(
            &bot,
            &[
                "chat",
                "--dry-run",
                "--user",
                eve,
                &format!("run echo {EVIL} on worker-cpu-01"),
            ],
        ),
    );
    assert!(checked > 30, "only {checked} outputs checked");
}

// --- secrets in messages ----------------------------------------------------------

#[test]
fn attack_a_malformed_state_url_never_echoes_its_password() {
    // (URL, the secret in it): userinfo, query and fragment passwords,
    // spelled every way, in URLs that fail the check, fail to parse or
    // fail to connect.
    let urls = [
        (
            "postgres://u@127.0.0.1:1/db?password=PwQ1zz&bogus=1",
            "PwQ1zz",
        ),
        (
            "postgres://u@127.0.0.1:1/db?pass%77ord=PwQ2zz&bogus=1",
            "PwQ2zz",
        ),
        ("postgres://u@127.0.0.1:1/db?%2570assword=PwQ3zz", "PwQ3zz"),
        ("postgres://u@127.0.0.1:1/db?sslpassword=PwQ4zz", "PwQ4zz"),
        ("postgres://u@127.0.0.1:1/db?password&PwQ5zz", "PwQ5zz"),
        ("postgres://u@127.0.0.1:1/db?PwQ6zz", "PwQ6zz"),
        ("postgres://u@127.0.0.1:1/db#password=PwQ7zz", "PwQ7zz"),
        ("postgres://u:PwQ8zz@127.0.0.1:99999/db", "PwQ8zz"),
        ("postgres://u:Pw@Q9zz@127.0.0.1:1/db?bogus", "Q9zz"),
        ("postgres://u:Pw/Q10zz@127.0.0.1:1/db", "Q10zz"),
        ("postgres://u:Pw?Q11zz@127.0.0.1:1/db", "Q11zz"),
        ("postgres://u:Pw Q12zz@127.0.0.1:1/db", "Q12zz"),
    ];
    let mut lab = Lab::new(BIN);
    let gw = lab.gw_home.clone();
    let cfg = gw.join("gateway.toml");
    let clean = std::fs::read_to_string(&cfg).unwrap();
    let backup = lab.dir().join("backup.tar");
    let mut runs = 0;
    let mut check = |what: &str, secret: &str, out: testkit::Out| {
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !text.contains(secret),
                "{what}: {stream} echoes the password {secret:?}:\n{text}"
            );
        }
        runs += 1;
        out
    };
    for (url, secret) in urls {
        // On the command line: init, join, migrate-state.
        let home = lab.home("init");
        let out = check(
            &format!("gateway init --state {url}"),
            secret,
            lab.run(
                &home,
                &[
                    "gateway",
                    "init",
                    "--listen",
                    "127.0.0.1:0",
                    "--name",
                    "g2",
                    "--state",
                    url,
                ],
            ),
        );
        assert_ne!(out.code, 0, "{url}: {out:?}");
        let home = lab.home("join");
        let out = check(
            &format!("gateway join --state {url}"),
            secret,
            lab.run(
                &home,
                &[
                    "gateway",
                    "join",
                    "--listen",
                    "127.0.0.1:0",
                    "--name",
                    "g3",
                    "--ca-from",
                    gw.to_str().unwrap(),
                    "--state",
                    url,
                ],
            ),
        );
        assert_ne!(out.code, 0, "{url}: {out:?}");
        let out = check(
            &format!("migrate-state --to {url}"),
            secret,
            lab.admin(&["gateway", "migrate-state", "--to", url]),
        );
        assert_ne!(out.code, 0, "{url}: {out:?}");
        // In gateway.toml: well-formed TOML, and a line TOML cannot parse
        // (its error quotes the line).
        for line in [format!("url = {url:?}"), format!("url = {url:?} oops")] {
            let text = clean.replacen("url = \"\"", &line, 1);
            assert_ne!(text, clean, "the [state] url edit matched");
            std::fs::write(&cfg, text).unwrap();
            let start = lab.spawn(&gw, &["gateway", "run"]);
            let out = check(&format!("gateway run with {line}"), secret, finish(start));
            assert_ne!(out.code, 0, "{line}: {out:?}");
            for args in [
                &["gateway", "status"][..],
                &["gateway", "status", "--json"],
                &["doctor"],
                &["doctor", "--json"],
                &["gateway", "backup", backup.to_str().unwrap()],
                &[
                    "gateway",
                    "migrate-state",
                    "--to",
                    "postgres://u@127.0.0.1:1/db",
                ],
            ] {
                check(&format!("{args:?} with {line}"), secret, lab.admin(args));
            }
        }
        std::fs::write(&cfg, &clean).unwrap();
    }
    assert_eq!(runs, urls.len() * (3 + 2 * 7));
    // The gateway still starts with its own config.
    lab.start_gateway();
}
