use super::*;

// --- descriptors a job inherits ---------------------------------------------------

/// The descriptors a job's shell holds, listed by `ls` (a process of its
/// own, whose directory descriptor is not the shell's).
const LIST_FDS: &str = "ls /proc/$$/fd";

/// A node agent started with a descriptor it inherited open and without
/// close-on-exec (a wrapper script's `exec 7<file`, a supervisor's socket):
/// the job must not get it, through the spawn helper or the shim.
#[test]
fn attack_a_job_never_inherits_a_descriptor_the_agent_inherited() {
    let mut lab = lab_with(&[]);
    let home = if is_root() {
        super::jail::jailed_node(&mut lab)
    } else {
        lab.enroll("worker-jail", "cpu")
    };
    let secret = lab.gw_home.join("agent-only.txt");
    std::fs::write(&secret, "the agent's file\n").unwrap();
    for shim in [false, true] {
        let env = if shim { "OPENCLAW_EXEC_SHIM=1 " } else { "" };
        let script = format!(
            "exec 7<'{}'; {env}exec \"$0\" --home '{}' node run",
            secret.display(),
            home.display()
        );
        let mut agent = lab.spawn_cmd("sh", &["-c", &script, BIN]);
        lab.wait_node("worker-jail", "connected", T);
        let out = lab
            .run_job(&["--node", "worker-jail", "--", "sh", "-c", LIST_FDS])
            .ok();
        let fds: Vec<&str> = out.stdout.split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2"], "shim {shim}: {out:?}");
        let out = lab.run_job(&["--node", "worker-jail", "--", "cat", "/proc/self/fd/7"]);
        assert!(
            !out.stdout.contains("the agent's file"),
            "shim {shim}: {out:?}"
        );
        agent.kill();
        lab.wait_node("worker-jail", "offline", T);
    }
}

// --- descriptors a job hands away ----------------------------------------------------

/// A job hands its stdout and stderr to another job over an abstract unix
/// socket (SCM_RIGHTS) and exits: its pipes then stay open for as long as
/// the other job lives. It must end all the same, with what it printed,
/// and not hold its slot, GPUs and uid until the other job ends.
#[test]
fn attack_a_job_that_hands_its_output_pipes_to_another_job_still_ends() {
    if !is_root() {
        eprintln!("SKIPPED: jobs of their own uids (job_uids) need root");
        return;
    }
    if !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIPPED: /usr/bin/python3 passes the descriptors and is not installed");
        return;
    }
    let mut lab = lab_with(&[]);
    let home = super::jail::jailed_node(&mut lab);
    let _agent = lab.start_node(&home);
    lab.wait_node("worker-jail", "connected", T);
    let name = format!("openclaw-attack-{}", std::process::id());
    let holder = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.bind('\\0{name}')\n\
         s.listen(1)\n\
         c, _ = s.accept()\n\
         held = socket.recv_fds(c, 16, 4)\n\
         c.sendall(b'k')\n\
         time.sleep(300)\n"
    );
    let holder_job = lab.detach(&[
        "--node",
        "worker-jail",
        "--",
        "/usr/bin/python3",
        "-c",
        &holder,
    ]);
    let giver = format!(
        "import socket, time\n\
         print('handed over', flush=True)\n\
         for _ in range(300):\n\
         \x20   try:\n\
         \x20       s = socket.socket(socket.AF_UNIX); s.connect('\\0{name}'); break\n\
         \x20   except OSError:\n\
         \x20       time.sleep(0.1)\n\
         socket.send_fds(s, [b'x'], [1, 2])\n\
         s.recv(1)\n"
    );
    let gw = lab.gw_home.clone();
    let run = lab.spawn(
        &gw,
        &[
            "run",
            "--node",
            "worker-jail",
            "--",
            "/usr/bin/python3",
            "-c",
            &giver,
        ],
    );
    // Before the fix it waited for the holder's five minutes.
    let out = run.wait(Duration::from_secs(120));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("handed over"), "{out:?}");
    let state = lab.job(holder_job)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(state, "running", "the holder still holds the pipes");
    lab.admin(&["job", "cancel", &holder_job.to_string()]).ok();
}
