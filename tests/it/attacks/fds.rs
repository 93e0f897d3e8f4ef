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
