use super::jail::jailed_node;
use super::*;

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
