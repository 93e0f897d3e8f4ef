use super::*;
use crate::*;

#[test]
fn roles_round_trip() {
    for role in [Role::Node, Role::Admin, Role::Bot, Role::User] {
        assert_eq!(Role::parse(role.as_str()), Some(role));
    }
    assert_eq!(Role::parse("root"), None);
}

#[test]
fn close_codes_round_trip() {
    for code in 0..9u64 {
        let c = CloseCode::from_code(code).unwrap();
        assert_eq!(u64::from(c.code()), code);
    }
    assert_eq!(CloseCode::from_code(99), None);
}

#[test]
fn a_bounded_heartbeat_always_fits_its_frame_limit() {
    for gpus in [0u32, 1, 2, 64, 512, 1024, 5000] {
        let mut hb = Heartbeat {
            seq: u64::MAX,
            load1_milli: u32::MAX,
            mem_used: u64::MAX,
            mem_total: u64::MAX,
            running_jobs: u32::MAX,
            gpu_source: "é".repeat(4000),
            gpu_error: Some("x".repeat(4000)),
            gpus: (0..gpus.saturating_add(3))
                .map(|i| GpuTelemetry {
                    index: u32::MAX - i,
                    name: "ü".repeat(300),
                    uuid: "GPU-".repeat(300),
                    mem_used: u64::MAX,
                    mem_total: u64::MAX,
                    util_pct: u32::MAX,
                    temp_c: u32::MAX,
                    job: Some(u64::MAX),
                    simulated: true,
                })
                .collect(),
        };
        hb.bound(gpus);
        assert_eq!(hb.gpus.len(), gpus.min(MAX_NODE_GPUS) as usize);
        assert!(hb.gpus.iter().all(|g| g.name.len() <= GPU_TEXT_MAX));
        let len = crate::codec::encode(&hb).unwrap().len();
        assert!(
            len + 4 <= heartbeat_frame_limit(gpus),
            "{gpus} GPUs: {len} bytes"
        );
    }
    // Cut on a character boundary.
    let mut s = "aé".to_string();
    crate::telemetry::cut(&mut s, 2);
    assert_eq!(s, "a");
}

/// Only confirmed GPUs count, the first ones by the node's order, as
/// the gateway offers them; holders outside the cap are not counted.
#[test]
fn only_confirmed_gpus_count() {
    let node = |cap: Option<u32>, held: &[bool], online: bool| NodeInfo {
        name: "n".into(),
        connection: "connected".into(),
        health: "healthy".into(),
        max_gpus: cap,
        telemetry: online.then(|| Heartbeat {
            gpus: held
                .iter()
                .enumerate()
                .map(|(i, h)| GpuTelemetry {
                    index: i as u32,
                    job: h.then_some(9),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..NodeInfo::default()
    };
    let c = |reported, confirmed, free| GpuCounts {
        reported,
        confirmed,
        free,
    };
    let cases = [
        (node(Some(2), &[false; 4], true), c(4, 2, 2)),
        (node(Some(2), &[true, false, false, true], true), c(4, 2, 1)),
        (node(Some(64), &[true, false], true), c(2, 2, 1)),
        (node(None, &[false; 4], true), c(4, 0, 0)),
        (node(Some(0), &[false], true), c(1, 0, 0)),
        (node(Some(2), &[], false), c(0, 0, 0)),
    ];
    for (n, want) in cases {
        assert_eq!(n.gpu_counts(), want, "{:?}", n.max_gpus);
    }
    assert_eq!(
        node(Some(2), &[false; 4], true).gpu_counts().unconfirmed(),
        2
    );
    assert_eq!(node(Some(1), &[false; 3], true).confirmed_gpus().len(), 1);
    // With each GPU's health: an idle unhealthy or MIG GPU is not free; a
    // held one is busy either way; health past the cap does not count.
    let sick = GpuHealth::Unhealthy("lost".into());
    let with = [
        (vec![], c(4, 2, 2)),
        (vec![sick.clone(), GpuHealth::Healthy], c(4, 2, 1)),
        (vec![GpuHealth::Mig, sick.clone()], c(4, 2, 0)),
        (
            vec![GpuHealth::Healthy, GpuHealth::Healthy, sick.clone()],
            c(4, 2, 2),
        ),
    ];
    for (h, want) in with {
        assert_eq!(
            node(Some(2), &[false; 4], true).gpu_counts_with(&h),
            want,
            "{h:?}"
        );
    }
    assert_eq!(
        node(Some(2), &[true, false], true).gpu_counts_with(&[sick.clone(), GpuHealth::Healthy]),
        c(2, 2, 1)
    );
    // The note names what the count leaves out, and nothing else.
    let lost = GpuHealth::Unhealthy("lost: GPU is lost".into());
    let notes: Vec<(NodeInfo, Vec<GpuHealth>, Option<&str>)> = vec![
        (node(Some(2), &[false; 2], true), vec![], None),
        (
            node(Some(2), &[false; 2], true),
            vec![GpuHealth::Healthy; 2],
            None,
        ),
        (
            node(Some(2), &[false; 2], true),
            vec![lost.clone(), GpuHealth::Healthy],
            Some("GPU 0 lost"),
        ),
        (
            node(Some(2), &[false; 2], true),
            vec![GpuHealth::Healthy, GpuHealth::Mig],
            Some("GPU 1 MIG"),
        ),
        // Held: busy, not held back. Past the cap: never offered.
        (
            node(Some(2), &[true, false, false], true),
            vec![lost.clone(), GpuHealth::Healthy, lost.clone()],
            None,
        ),
        (
            node(Some(6), &[false; 6], true),
            vec![lost.clone(); 6],
            Some("GPU 0 lost, GPU 1 lost, GPU 2 lost, GPU 3 lost and 2 more"),
        ),
    ];
    for (n, h, want) in notes {
        assert_eq!(n.gpu_note(&h).as_deref(), want, "{h:?}");
    }
}

#[test]
fn gpu_health_short_reasons() {
    let u = |s: &str| GpuHealth::Unhealthy(s.into());
    let cases = [
        (GpuHealth::Healthy, None),
        (GpuHealth::Mig, Some("MIG")),
        (u("lost: GPU is lost"), Some("lost")),
        (
            u("recovering (1 of 3 good samples) after: lost: GPU is lost"),
            Some("recovering"),
        ),
        (
            u("reported critical Xid 79: drain it, read 'dmesg'"),
            Some("reported critical Xid 79"),
        ),
        (u(""), Some("unhealthy")),
        (u(": x"), Some("unhealthy")),
        // The node's words: no control character reaches a terminal.
        (u("lost\u{1b}[31m"), Some("lost\\u{1b}[31m")),
    ];
    for (h, want) in cases {
        assert_eq!(h.short().as_deref(), want, "{h:?}");
    }
    let long = u(&"x".repeat(500)).short().unwrap_or_default();
    assert!(
        long.chars().count() <= crate::GPU_SHORT_REASON + 1,
        "{long}"
    );
    let all = vec![("a".to_string(), vec![GpuHealth::Mig])];
    assert_eq!(crate::gpu_health_of(&all, "a"), &[GpuHealth::Mig]);
    assert!(crate::gpu_health_of(&all, "b").is_empty());
}

#[test]
fn permissions_table() {
    let node_list = Request::NodeList;
    let approve = Request::NodeApprove {
        name: "a".into(),
        fingerprint: None,
        labels: None,
        gpus: None,
    };
    let token = Request::TokenCreate {
        ttl_secs: 1,
        uses: 1,
        labels: vec![],
        auto_approve: false,
        max_gpus: None,
    };
    let cases = [
        (Role::Admin, &node_list, true),
        (Role::Admin, &approve, true),
        (Role::Admin, &token, true),
        (Role::Bot, &node_list, true),
        (Role::Bot, &approve, false),
        (
            Role::Bot,
            &Request::JobList {
                limit: 1,
                before: None,
                on_behalf_of: None,
            },
            true,
        ),
        (Role::Bot, &Request::ClientList, false),
        (
            Role::Bot,
            &Request::ClientRevoke { name: "x".into() },
            false,
        ),
        (Role::Bot, &Request::ClientRenew { csr_der: vec![] }, true),
        (Role::Bot, &token, false),
        (Role::Bot, &Request::NodeRelease { name: "x".into() }, false),
        (Role::Node, &node_list, false),
        (Role::Node, &approve, false),
        (Role::Node, &Request::Whoami, true),
        (Role::Node, &Request::Time, true),
        (Role::Bot, &Request::Time, true),
        (Role::Node, &Request::Trust, true),
        (Role::Bot, &Request::Trust, true),
        (
            Role::Bot,
            &Request::CaRotate {
                step: CaStep::Status,
                force: false,
            },
            false,
        ),
        (
            Role::Node,
            &Request::CaRotate {
                step: CaStep::Init,
                force: false,
            },
            false,
        ),
    ];
    for (role, req, want) in cases {
        assert_eq!(req.allowed_for(role), want, "{role} {}", req.method());
    }
}

#[test]
fn chat_never_streams_standard_input_nor_forwards_ports() {
    let spec = JobSpec::default();
    assert!(!Request::JobRunInput(spec.clone()).allowed_for(Role::Bot));
    assert!(!Request::JobRunInput(spec.clone()).allowed_for(Role::Node));
    let fwd = Request::Forward {
        node: "n".into(),
        port: 8888,
    };
    assert!(!fwd.allowed_for(Role::Bot) && !fwd.allowed_for(Role::Node));
    assert!(fwd.allowed_for(Role::Admin));
    assert!(Request::JobRunInput(spec.clone()).allowed_for(Role::Admin));
    // The same permission as running a job, under the same method name.
    assert_eq!(
        Request::JobRunInput(spec.clone()).method(),
        Request::JobRun(spec).method()
    );
}

#[test]
fn a_job_request_is_judged_as_the_call_it_stands_for() {
    let with = |follow| {
        Request::JobRequest(crate::JobRequest {
            spec: JobSpec::default(),
            follow,
            options: vec![crate::JobOption::Project("vision".into())],
        })
    };
    let detached = with(crate::Follow::Detached);
    let attached = with(crate::Follow::Attached);
    let input = with(crate::Follow::AttachedWithInput);
    assert_eq!(detached.method(), "job.submit");
    assert_eq!(attached.method(), "job.run");
    assert_eq!(input.method(), "job.run");
    // Chat may submit and follow, never stream standard input.
    assert!(detached.allowed_for(Role::Bot) && attached.allowed_for(Role::Bot));
    assert!(!input.allowed_for(Role::Bot));
    for r in [&detached, &attached, &input] {
        assert!(r.allowed_for(Role::User) && r.allowed_for(Role::Admin));
        assert!(!r.allowed_for(Role::Node));
    }
}

#[test]
fn a_job_request_without_options_is_sent_as_the_plain_call() {
    let spec = JobSpec {
        node: Some("n".into()),
        ..JobSpec::default()
    };
    let plain = |follow| {
        crate::JobRequest {
            spec: spec.clone(),
            follow,
            options: vec![],
        }
        .into_request()
    };
    assert_eq!(
        plain(crate::Follow::Detached),
        Request::JobSubmit(spec.clone())
    );
    assert_eq!(
        plain(crate::Follow::Attached),
        Request::JobRun(spec.clone())
    );
    assert_eq!(
        plain(crate::Follow::AttachedWithInput),
        Request::JobRunInput(spec.clone())
    );
    let with = crate::JobRequest {
        spec: spec.clone(),
        follow: crate::Follow::Attached,
        options: vec![crate::JobOption::Preemptible],
    };
    assert_eq!(with.clone().into_request(), Request::JobRequest(with));
}

#[test]
fn a_user_may_do_its_own_work_and_manage_nothing() {
    let spec = JobSpec::default();
    for ok in [
        Request::Whoami,
        Request::NodeList,
        Request::JobRun(spec.clone()),
        Request::JobRunInput(spec.clone()),
        Request::JobSubmit(spec.clone()),
        Request::JobList {
            limit: 10,
            before: None,
            on_behalf_of: None,
        },
        Request::JobCancel {
            id: 1,
            on_behalf_of: None,
        },
        Request::Forward {
            node: "n".into(),
            port: 1,
        },
    ] {
        assert!(ok.allowed_for(Role::User), "{ok:?}");
    }
    for refused in [
        Request::TokenList,
        Request::ClientList,
        Request::NodeRevoke { name: "n".into() },
        Request::NodeRelease { name: "n".into() },
        Request::ChatContext,
    ] {
        assert!(!refused.allowed_for(Role::User), "{refused:?}");
    }
    assert_eq!(Role::parse("user"), Some(Role::User));
    assert_eq!(Role::User.as_str(), "user");
}

#[test]
fn everyone_may_follow_the_gateway_group_and_only_admins_change_it() {
    for role in [Role::Admin, Role::Bot, Role::User, Role::Node] {
        assert!(Request::GatewaySet.allowed_for(role), "{role}");
    }
    let leave = Request::GatewayLeave { name: "gw".into() };
    assert!(leave.allowed_for(Role::Admin));
    for role in [Role::Bot, Role::User, Role::Node] {
        assert!(!leave.allowed_for(role), "{role}");
    }
}

#[test]
fn chat_and_nodes_never_open_a_shell() {
    let shell = Request::JobRunTty {
        spec: JobSpec::default(),
        tty: crate::tty::Tty {
            term: "xterm".into(),
            cols: 80,
            rows: 24,
        },
    };
    let replay = Request::JobRecording { id: 1, offset: 0 };
    for req in [&shell, &replay] {
        assert!(!req.allowed_for(Role::Bot), "{}", req.method());
        assert!(!req.allowed_for(Role::Node), "{}", req.method());
        assert!(req.allowed_for(Role::Admin), "{}", req.method());
        // A member under policy.shell (and sees only its own recordings).
        assert!(req.allowed_for(Role::User), "{}", req.method());
    }
}
