use super::*;

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

pub(super) fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        std::fs::copy(e.path(), &dst).unwrap();
    }
}
