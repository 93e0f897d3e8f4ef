//! The node's spawn helper (one fork, one exec per job,
//! `crates/node/src/spawn.rs`) against the exec shim it replaces: the same
//! job on the same jailed node, once through each, must see the same uid,
//! gid, groups, capabilities, no_new_privs, cgroup, environment, working
//! directory and private `/tmp`; and a step that fails before exec is the
//! job's clear error, an exec that fails is the shell's 127/126.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use testkit::{Lab, edit_file, is_root};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);
const NODE: &str = "worker-spawn";

/// What a job reports about itself: each line a fact its start decides.
const FACTS: &str = "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); \
    grep -E '^(Uid|Gid|Groups|NoNewPrivs|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/self/status; \
    echo cgroup=$(cat /proc/self/cgroup); echo pwd=$(pwd); \
    echo tmp=$(stat -c '%a %U' /tmp) $(ls -A /tmp | wc -l); \
    echo ipc=$(ipcs -m 2>/dev/null | wc -l); env | sort";

/// A lab with one node that drops jobs to `nobody`, each with a uid of
/// its own, not yet started.
fn jailed_lab() -> (Lab, std::path::PathBuf) {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll(NODE, "cpu");
    let cfg = home.join("node.toml");
    edit_file(&cfg, "# run_as = \"openclaw-job\"", "run_as = \"nobody\"");
    edit_file(
        &cfg,
        "# job_uids = \"61000-61999\"",
        "job_uids = \"61000-61999\"",
    );
    (lab, home)
}

/// Starts the agent of `home`, through the shim when `shim`.
fn start(lab: &mut Lab, home: &Path, shim: bool) -> testkit::Proc {
    let agent = if shim {
        lab.spawn_env(
            home,
            &["node", "run"],
            &[("OPENCLAW_EXEC_SHIM", Path::new("1"))],
        )
    } else {
        lab.start_node(home)
    };
    lab.wait_node(NODE, "connected", T);
    agent
}

/// `text` with every whole number equal to one of `vary` replaced by its
/// name: the job's uid differs between two runs, nothing else may.
fn normalize(text: &str, vary: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        let name = vary.iter().find(|(v, _)| *v == digits.as_str());
        out.push_str(name.map_or(digits.as_str(), |(_, n)| n));
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// The facts of one job on the agent `agent`, its uid, id and the agent's
/// pid made names.
fn facts(lab: &Lab, agent: &testkit::Proc) -> String {
    let out = lab.run_job(&["--node", NODE, "--", "sh", "-c", FACTS]).ok();
    let field = |key: &str| -> String {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {out:?}"))
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .to_string()
    };
    let uid = field("uid=");
    let id = field("OPENCLAW_JOB_ID=");
    let pid = agent.pid();
    let text = out
        .stdout
        .replace(&format!("job-{id}\n"), "job-ID\n")
        .replace(&format!("OPENCLAW_JOB_ID={id}\n"), "OPENCLAW_JOB_ID=ID\n")
        .replace(&format!("{NODE}-{pid}/"), &format!("{NODE}-PID/"))
        .replace(&format!("{NODE}/{pid}\n"), &format!("{NODE}/PID\n"));
    normalize(&text, &[(&uid, "UID")])
}

#[test]
fn the_spawn_helper_drops_privileges_as_the_shim_does() {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs needs root");
        return;
    }
    let (mut lab, home) = jailed_lab();
    let mut agent = start(&mut lab, &home, true);
    let shim = facts(&lab, &agent);
    agent.kill();
    lab.wait_node(NODE, "offline", T);
    let agent = start(&mut lab, &home, false);
    let helper = facts(&lab, &agent);
    assert_eq!(helper, shim, "the helper's job differs from the shim's");
    // And what both must be, not only equal.
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let gid = nobody.gid.as_raw();
    for want in [
        "uid=UID ".to_string(),
        format!("gid={gid} groups={gid}\n"),
        "Uid:\tUID\tUID\tUID\tUID\n".to_string(),
        "Groups:\t".to_string(),
        "NoNewPrivs:\t1\n".to_string(),
        "CapEff:\t0000000000000000\n".to_string(),
        "pwd=".to_string(),
        "/job-ID\n".to_string(),
        "tmp=1777 root 0\n".to_string(),
        "OPENCLAW_NODE=worker-spawn\n".to_string(),
    ] {
        assert!(helper.contains(&want), "{want:?} not in:\n{helper}");
    }
    assert!(!helper.contains("uid=0 "), "{helper}");
    assert!(
        !helper.contains("LD_PRELOAD") && !helper.contains("OPENCLAW_SHIM_SPEC"),
        "{helper}"
    );
    // A cgroup of the job's own where the node has cgroup v2 to delegate.
    let cgroup = helper.lines().find(|l| l.starts_with("cgroup=")).unwrap();
    eprintln!("the job's {cgroup}");
}

#[test]
fn a_step_before_exec_that_fails_is_the_jobs_clear_error() {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs needs root");
        return;
    }
    let (mut lab, home) = jailed_lab();
    // A --cwd the job's user may not enter: chdir fails after setuid.
    let closed = lab.dir().join("closed");
    std::fs::create_dir(&closed).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let closed = std::fs::canonicalize(&closed).unwrap();
    let closed = closed.to_str().unwrap();
    for shim in [true, false] {
        let mut agent = start(&mut lab, &home, shim);
        let out = lab.run_job(&["--node", NODE, "--cwd", closed, "--", "true"]);
        assert_ne!(out.code, 0, "shim {shim}: {out:?}");
        let said = format!("{}{}", out.stdout, out.stderr);
        assert!(
            said.contains(&format!("cannot enter the working directory {closed}"))
                && said.contains("ermission denied"),
            "shim {shim}: {out:?}"
        );
        // Not a command's exit code: the node's failure to start it.
        assert!(![0, 126, 127].contains(&out.code), "shim {shim}: {out:?}");
        agent.kill();
        lab.wait_node(NODE, "offline", T);
    }
}

#[test]
fn an_exec_that_fails_is_a_shells_127_or_126_through_the_helper() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up(NODE, "cpu", 0);
    lab.run_job(&["--node", NODE, "--", "no-such-command-spawn"])
        .fails_with(127, "no-such-command-spawn: command not found");
    lab.run_job(&["--node", NODE, "--", "/no/such/tool"])
        .fails_with(127, "/no/such/tool: No such file or directory");
    let plain = lab.dir().join("not-a-program");
    std::fs::write(&plain, "data\n").unwrap();
    let plain = plain.to_str().unwrap();
    lab.run_job(&["--node", NODE, "--", plain])
        .fails_with(126, &format!("{plain}: Permission denied"));
    // The node goes on starting jobs.
    let out = lab.run_job(&["--node", NODE, "--", "echo", "still"]).ok();
    assert_eq!(out.stdout, "still\n");
}
