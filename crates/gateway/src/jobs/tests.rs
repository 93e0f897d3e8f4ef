use super::lifecycle::key_mismatch;
use super::*;
use crate::store::{JobState, NodeRow};

fn cfg(extra: &str) -> Config {
    Config::parse(&format!(
        "[jobs.training]\ncommand = [\"python\", \"train.py\"]\nrole = \"gpu\"\ncwd = \"/srv/lab\"\naliases = [\"train model\"]\n{extra}"
    ))
    .unwrap()
}

fn spec() -> JobSpec {
    JobSpec::default()
}

#[test]
fn a_job_goes_only_to_the_key_it_was_planned_for() {
    let node =
        |state, fp: &str, requested_at| NodeRow::for_test("train-01", state, fp, requested_at);
    let job = |key: Option<&str>| {
        let mut j = JobRow::fresh(
            JobState::Starting,
            "train-01".into(),
            None,
            None,
            JobPlan {
                job_id: 1,
                node: "train-01".into(),
                argv: vec!["true".into()],
                cwd: None,
                env: vec![],
                timeout_secs: None,
                gpus: 0,
                kill_grace_secs: 1,
                run_as: None,
            },
            "admin".into(),
            "admin".into(),
            100,
        );
        j.node_key = key.map(str::to_string);
        j
    };
    let cases = [
        (
            job(Some("A")),
            Some(node(NodeState::Approved, "A", 50)),
            None,
        ),
        (
            job(Some("A")),
            Some(node(NodeState::Approved, "B", 50)),
            Some("another key"),
        ),
        (
            job(Some("A")),
            Some(node(NodeState::Revoked, "A", 50)),
            Some("no longer enrolled"),
        ),
        (
            job(Some("A")),
            Some(node(NodeState::Pending, "A", 50)),
            Some("no longer enrolled"),
        ),
        (job(Some("A")), None, Some("no longer enrolled")),
        // Rows stored before keys were bound: only an older enrollment.
        (job(None), Some(node(NodeState::Approved, "B", 50)), None),
        (
            job(None),
            Some(node(NodeState::Approved, "B", 150)),
            Some("enrolled after"),
        ),
    ];
    for (row, n, want) in cases {
        let got = key_mismatch(&row, n.as_ref());
        match (got, want) {
            (None, None) => {}
            (Some(g), Some(w)) => assert!(g.contains(w), "{g}"),
            (g, w) => panic!(
                "{:?} / {:?}: got {g:?}, want {w:?}",
                row.node_key,
                n.map(|n| n.state)
            ),
        }
    }
}

#[test]
fn resolve_named_job() {
    let c = cfg("");
    let r = resolve(
        &c,
        &JobSpec {
            job: Some("training".into()),
            ..spec()
        },
        false,
    )
    .unwrap();
    assert_eq!(r.argv, vec!["python", "train.py"]);
    assert_eq!(r.role.as_deref(), Some("gpu"));
    assert_eq!(r.gpus, 1);
    assert_eq!(r.cwd.as_deref(), Some("/srv/lab"));
    // An explicit node overrides the job's role.
    let r = resolve(
        &c,
        &JobSpec {
            job: Some("train model".into()),
            node: Some("n1".into()),
            ..spec()
        },
        false,
    )
    .unwrap();
    assert_eq!((r.node.as_deref(), r.role.as_deref()), (Some("n1"), None));
    let e = resolve(
        &c,
        &JobSpec {
            job: Some("trainin".into()),
            ..spec()
        },
        false,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(
        e.message.contains("did you mean training?"),
        "{}",
        e.message
    );
    let e = resolve(
        &c,
        &JobSpec {
            job: Some("training".into()),
            argv: vec!["x".into()],
            ..spec()
        },
        false,
    )
    .unwrap_err();
    assert!(e.message.contains("fixes its command"), "{}", e.message);
}

#[test]
fn resolve_bad_input() {
    let c = cfg("");
    let node = || Some("n".to_string());
    let cases: Vec<(JobSpec, &str)> = vec![
        (
            JobSpec {
                node: node(),
                ..spec()
            },
            "empty command",
        ),
        (
            JobSpec {
                node: node(),
                argv: vec![String::new()],
                ..spec()
            },
            "empty command",
        ),
        (
            JobSpec {
                argv: vec!["ls".into()],
                ..spec()
            },
            "say where to run it",
        ),
        (
            JobSpec {
                node: node(),
                argv: vec!["ls".into()],
                timeout_secs: Some(0),
                ..spec()
            },
            "--timeout",
        ),
        (
            JobSpec {
                node: node(),
                argv: vec!["ls".into()],
                cwd: Some("rel".into()),
                ..spec()
            },
            "absolute",
        ),
        (
            JobSpec {
                node: node(),
                argv: vec!["a\0b".into()],
                ..spec()
            },
            "NUL",
        ),
        (
            JobSpec {
                node: node(),
                argv: vec!["ls".into()],
                env: vec![("1X".into(), "v".into())],
                ..spec()
            },
            "is invalid",
        ),
    ];
    for (s, want) in cases {
        let e = resolve(&c, &s, false).unwrap_err();
        assert!(e.message.contains(want), "{want}: {}", e.message);
    }
    // A node and a role together: that node, which must have the role
    // (checked when routing); the role still sets the default GPUs.
    let r = resolve(
        &c,
        &JobSpec {
            node: node(),
            role: Some("gpu".into()),
            argv: vec!["ls".into()],
            ..spec()
        },
        true,
    )
    .unwrap();
    assert_eq!((r.node, r.role, r.gpus), (node(), Some("gpu".into()), 1));
}

#[test]
fn resolve_env_and_shell() {
    let c = cfg("[policy]\nenv_allow = [\"EPOCHS\", \"*\"]\nallow_shell = true");
    let with_env = |k: &str| JobSpec {
        node: Some("n".into()),
        argv: vec!["bash".into(), "train.sh".into()],
        env: vec![(k.into(), "v".into())],
        ..spec()
    };
    // Even with env_allow = ["*"], the dangerous list is refused, by name.
    for k in [
        "LD_PRELOAD",
        "DYLD_INSERT_LIBRARIES",
        "OPENCLAW_JOB_ID",
        "BASH_ENV",
        "PATH",
        "PYTHONPATH",
        "NODE_OPTIONS",
        "PERL5OPT",
        "SHELLOPTS",
        "PS4",
        "CUDA_VISIBLE_DEVICES",
    ] {
        let e = resolve(&c, &with_env(k), false).unwrap_err();
        assert_eq!(e.code, ErrorCode::Denied, "{k}");
        assert!(
            e.message.contains("refused by policy"),
            "{k}: {}",
            e.message
        );
    }
    let r = resolve(&c, &with_env("EPOCHS"), false).unwrap();
    assert_eq!(r.env, vec![("EPOCHS".to_string(), "v".to_string())]);
    // The default allowlist does not admit EPOCHS, but a named job's own
    // variables may be overridden.
    let d = cfg("[jobs.train]\ncommand = [\"python\"]\nnode = \"n\"\nenv = { EPOCHS = \"1\" }");
    let e = resolve(&d, &with_env("EPOCHS"), false).unwrap_err();
    assert!(e.message.contains("env_allow"), "{}", e.message);
    let r = resolve(
        &d,
        &JobSpec {
            job: Some("train".into()),
            env: vec![("EPOCHS".into(), "5".into())],
            ..spec()
        },
        false,
    )
    .unwrap();
    assert_eq!(r.env, vec![("EPOCHS".to_string(), "5".to_string())]);
    // Shells: allowed from the CLI here, never from chat by default.
    let shell = JobSpec {
        node: Some("n".into()),
        argv: vec!["echo".into(), "$HOME".into()],
        shell: true,
        ..spec()
    };
    let r = resolve(&c, &shell, false).unwrap();
    assert_eq!(r.argv, vec!["sh", "-c", "echo $HOME"]);
    let e = resolve(&c, &shell, true).unwrap_err();
    assert!(e.message.contains("chat_shell"), "{}", e.message);
    let noshell = cfg("[policy]\nallow_shell = false");
    let e = resolve(&noshell, &shell, false).unwrap_err();
    assert_eq!(e.code, ErrorCode::Denied);
}

#[test]
fn node_loads_follow_every_placement_change() {
    let jobs = Jobs::default();
    let now = crate::clock::Clock::system().now();
    jobs.insert(1, "a", 2, JobState::Queued, true, now);
    jobs.insert(2, "a", 1, JobState::Queued, false, now);
    jobs.insert(3, "", 0, JobState::Queued, false, now);
    assert_eq!(
        jobs.load("a"),
        (2, 1),
        "only reserved or dispatched jobs count"
    );
    jobs.with(|m| m.update(2, |j| j.on_node = true));
    assert_eq!(jobs.load("a"), (3, 2));
    // Routed elsewhere, then dispatched there.
    jobs.with(|m| {
        m.update(3, |j| {
            j.node = "b".into();
            j.reserved = true;
        })
    });
    jobs.with(|m| {
        m.update(3, |j| {
            j.on_node = true;
            j.reserved = false;
        })
    });
    assert_eq!((jobs.load("a"), jobs.load("b")), ((3, 2), (0, 1)));
    jobs.with(|m| m.remove(1));
    jobs.with(|m| m.remove(3));
    assert_eq!((jobs.load("a"), jobs.load("b")), ((1, 1), (0, 0)));
    jobs.with(|m| m.update(2, |j| j.on_node = false));
    assert_eq!(jobs.load("a"), (0, 0));
    assert!(
        jobs.with(|m| m.load.is_empty()),
        "no entries kept for idle nodes"
    );
}
