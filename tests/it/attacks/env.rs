use super::*;

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
