//! What a node checks and sets before a job runs, as pure functions: its
//! own policy (the stricter one wins), the working directory, the job's
//! login name and environment.

use mesh::home::NodePolicy;
use proto::JobPlan;

/// Checks a plan against the node's own policy. Pure. The working
/// directory is checked separately, once resolved ([`cwd_allowed`]).
pub fn check_policy(policy: &NodePolicy, node: &str, plan: &JobPlan) -> Result<(), String> {
    if !policy.system_run {
        return Err(format!(
            "system.run is disabled on node {node} (node.toml [policy] system_run = false)"
        ));
    }
    let line = plan.argv.join(" ");
    let argv0 = plan.argv.first().map(String::as_str).unwrap_or("");
    if !policy.allowed_commands.is_empty()
        && !proto::glob::any(&policy.allowed_commands, argv0)
        && !proto::glob::any(&policy.allowed_commands, &line)
    {
        return Err(format!(
            "node {node}'s policy does not allow the command {argv0:?} (allowed_commands in node.toml)"
        ));
    }
    for (k, v) in &plan.env {
        if let Err(why) = proto::env::check(&policy.env_allow, k, v) {
            return Err(format!(
                "node {node}: {}",
                proto::env::explain(k, &why, "env_allow in node.toml")
            ));
        }
    }
    Ok(())
}

/// Whether a canonical (absolute, symlink-free) directory lies under one
/// of the allowed prefixes, compared by whole path components: `/srv/lab`
/// admits `/srv/lab` and `/srv/lab/x`, never `/srv/lab-evil`. Pure.
pub fn cwd_allowed(allowed: &[String], canonical: &std::path::Path) -> bool {
    allowed.is_empty()
        || allowed
            .iter()
            .any(|p| canonical.starts_with(std::path::Path::new(p)))
}

/// The name a job's `USER` and `LOGNAME` give: the account's name, or,
/// for a uid of `job_uids` (which names no account), the uid itself.
/// Tools that name per-user files after it (`/tmp/torchinductor_$USER`,
/// `getpass.getuser()`) then never share them between uids, and it is
/// what `ls -l` and `ps` print for the job's files and processes; the
/// commands that take a user (`chown`, `ps -u`, `id`) accept a number
/// where no account has the name, which a made-up name would not give.
pub fn login_name(user: &crate::jail::JobUser, own_uid: bool) -> String {
    if own_uid {
        user.uid.to_string()
    } else {
        user.name.clone()
    }
}

/// What `CUDA_VISIBLE_DEVICES` names for the GPUs a job holds: their
/// UUIDs, when every one is a real GPU's known UUID (NVML), so the job
/// gets the same devices whatever `CUDA_DEVICE_ORDER` a process inside it
/// sets and however the driver numbers them (indices shift when a GPU
/// falls off the bus); else (simulated GPUs, an unknown UUID) the NVML
/// indices, with `CUDA_DEVICE_ORDER=PCI_BUS_ID` so CUDA counts as NVML
/// does. Pure.
pub fn visible_devices(held: &[proto::HeldGpu], real: bool) -> Vec<String> {
    if real && !held.is_empty() && held.iter().all(|g| g.uuid.starts_with("GPU-")) {
        held.iter().map(|g| g.uuid.clone()).collect()
    } else {
        held.iter().map(|g| g.index.to_string()).collect()
    }
}

/// The job's whole environment: a clean base (PATH, HOME, USER and
/// LOGNAME of the job's user, TMPDIR), the plan's variables, then the
/// job's identity and GPUs ([`visible_devices`]), which nothing in the
/// plan can override.
pub fn job_env(
    plan: &JobPlan,
    node: &str,
    gpus: &[String],
    user: &crate::jail::JobUser,
    login: &str,
    path: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), path.to_string()),
        ("HOME".into(), user.home.clone()),
        ("USER".into(), login.to_string()),
        ("LOGNAME".into(), login.to_string()),
        ("SHELL".into(), "/bin/sh".into()),
        ("LANG".into(), "C.UTF-8".into()),
        // The job's own /tmp where the node gives it one
        // (crate::private_tmp); tools that read TMPDIR never fall back to
        // a default of their own elsewhere.
        ("TMPDIR".into(), "/tmp".into()),
    ];
    env.extend(
        plan.env
            .iter()
            .filter(|(k, _)| proto::env::dangerous(k).is_none())
            .cloned(),
    );
    env.push(("OPENCLAW_JOB_ID".into(), plan.job_id.to_string()));
    env.push(("OPENCLAW_NODE".into(), node.to_string()));
    env.push((
        crate::tree::AGENT_VAR.into(),
        format!("{node}/{}", std::process::id()),
    ));
    // Indices (simulated GPUs) are NVML's, which count in PCI bus order;
    // CUDA counts fastest first unless told, so on a node of mixed GPUs
    // the same index could name another GPU (one that another job holds).
    // UUIDs need no order, but the setting costs nothing.
    env.push(("CUDA_DEVICE_ORDER".into(), "PCI_BUS_ID".into()));
    // Always set: an empty list hides every GPU from a job that holds none.
    env.push(("CUDA_VISIBLE_DEVICES".into(), gpus.join(",")));
    env
}
