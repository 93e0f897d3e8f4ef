//! Races and floods against a real gateway: deciders hammering one job from
//! several connections at once, concurrent submits for the last GPU, and
//! unauthenticated enrollment connections that stall. Each race runs for
//! many rounds and checks that exactly one outcome won and that no denied
//! job ever reached a node (the node would have left a marker file).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use client::{Client, ClientError};
use proto::{ErrorCode, JobSpec, Request, Response};
use testkit::{Lab, edit_file, rss_kib, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// A gateway where every CLI job needs approval by `boss` or `carol`, and
/// one node.
fn approval_lab(extra: &[(&str, &str)]) -> (Lab, PathBuf, PathBuf, testkit::Proc) {
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    edit_file(&cfg, "default = \"allow\"", "default = \"approve\"");
    edit_file(
        &cfg,
        "approvers = [\"admin\"]",
        "approvers = [\"boss\", \"carol\"]",
    );
    for (from, to) in extra {
        edit_file(&cfg, from, to);
    }
    lab.start_gateway();
    let boss = lab.second_admin("boss");
    let carol = lab.second_admin("carol");
    let (_, agent) = lab.node_up("worker-cpu-01", "cpu", 0);
    (lab, boss, carol, agent)
}

/// A job that leaves a marker named after its id in `dir` when it runs.
fn marking(dir: &Path) -> JobSpec {
    JobSpec {
        node: Some("worker-cpu-01".into()),
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!("echo ran >> {}/ran-$OPENCLAW_JOB_ID", dir.display()),
        ],
        ..Default::default()
    }
}

async fn submit(c: &Client, spec: JobSpec) -> u64 {
    match c.call(Request::JobSubmit(spec)).await.unwrap() {
        Response::Job(j) => j.id,
        r => panic!("{r:?}"),
    }
}

async fn state(c: &Client, id: u64) -> proto::JobInfo {
    match c
        .call(Request::JobShow {
            id,
            on_behalf_of: None,
        })
        .await
        .unwrap()
    {
        Response::Job(j) => j,
        r => panic!("{r:?}"),
    }
}

async fn settle(c: &Client, id: u64) -> proto::JobInfo {
    for _ in 0..600 {
        let j = state(c, id).await;
        if j.is_terminal() {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} never ended");
}

/// Where marking jobs leave their markers.
fn marks(lab: &Lab) -> PathBuf {
    let dir = lab.dir().join("marks");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn connect(home: &Path) -> Client {
    Client::connect(&mesh::Home::new(home)).await.unwrap()
}

fn ran(dir: &Path, id: u64) -> usize {
    std::fs::read_to_string(dir.join(format!("ran-{id}")))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn approve(id: u64) -> Request {
    Request::JobApprove {
        id,
        plan_digest: None,
        on_behalf_of: None,
    }
}

#[test]
fn race_approve_against_deny_has_one_winner_and_denied_jobs_never_run() {
    let (lab, boss, _carol, _agent) = approval_lab(&[]);
    let marks = marks(&lab);
    rt().block_on(async {
        let admin = connect(&lab.gw_home).await;
        let boss = connect(&boss).await;
        let mut outcomes = (0, 0);
        let mut ids = Vec::new();
        for _ in 0..200 {
            let id = submit(&admin, marking(&marks)).await;
            // The requester withdraws while the approver approves.
            let (a, d) = tokio::join!(
                boss.call(approve(id)),
                admin.call(Request::JobDeny {
                    id,
                    reason: None,
                    on_behalf_of: None
                })
            );
            match (a.is_ok(), d.is_ok()) {
                (true, false) => outcomes.0 += 1,
                (false, true) => outcomes.1 += 1,
                other => panic!("job {id}: approve {a:?}, deny {d:?}: {other:?}"),
            }
            ids.push(id);
        }
        for id in ids {
            let j = settle(&admin, id).await;
            match j.state.as_str() {
                "denied" => assert_eq!(ran(&marks, id), 0, "denied job {id} ran"),
                "exited" => assert_eq!(ran(&marks, id), 1, "job {id}"),
                s => panic!("job {id} ended {s}"),
            }
        }
        eprintln!("approve won {} rounds, deny {}", outcomes.0, outcomes.1);
    });
}

#[test]
fn race_double_approval_runs_the_job_once() {
    let (lab, boss, carol, _agent) = approval_lab(&[]);
    let marks = marks(&lab);
    rt().block_on(async {
        let admin = connect(&lab.gw_home).await;
        let boss = connect(&boss).await;
        let carol = connect(&carol).await;
        let mut ids = Vec::new();
        for _ in 0..100 {
            let id = submit(&admin, marking(&marks)).await;
            let (a, b) = tokio::join!(boss.call(approve(id)), carol.call(approve(id)));
            assert!(a.is_ok() != b.is_ok(), "job {id}: {a:?} / {b:?}");
            let loser = if a.is_ok() { b } else { a };
            match loser {
                Err(ClientError::Api(e)) => assert_eq!(e.code, ErrorCode::FailedPrecondition),
                other => panic!("{other:?}"),
            }
            ids.push(id);
        }
        for id in ids {
            assert_eq!(settle(&admin, id).await.state, "exited");
            assert_eq!(ran(&marks, id), 1, "job {id} ran more or less than once");
        }
    });
}

#[test]
fn race_approval_against_expiry_has_one_outcome() {
    let (lab, boss, _carol, _agent) =
        approval_lab(&[("approval_timeout = \"1h\"", "approval_timeout = \"1s\"")]);
    let marks = marks(&lab);
    rt().block_on(async {
        let admin = connect(&lab.gw_home).await;
        let boss = connect(&boss).await;
        let mut ids = Vec::new();
        for _ in 0..60 {
            ids.push(submit(&admin, marking(&marks)).await);
        }
        // Approve them one after another across the expiry instant.
        let mut approved = std::collections::HashSet::new();
        for (i, id) in ids.iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(if i % 3 == 0 { 40 } else { 0 })).await;
            if boss.call(approve(*id)).await.is_ok() {
                approved.insert(*id);
            }
        }
        for id in ids {
            let j = settle(&admin, id).await;
            match j.state.as_str() {
                "expired" => {
                    assert!(!approved.contains(&id), "job {id} approved yet expired");
                    assert_eq!(ran(&marks, id), 0, "expired job {id} ran");
                }
                "exited" => {
                    assert!(approved.contains(&id), "job {id} ran unapproved");
                    assert_eq!(ran(&marks, id), 1);
                }
                s => panic!("job {id} ended {s}"),
            }
        }
        eprintln!("{} of 60 approved before expiry", approved.len());
    });
}

#[test]
fn race_cancel_against_start_ends_every_job_cancelled() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let (_, _agent) = lab.node_up("worker-cpu-01", "cpu", 0);
    rt().block_on(async {
        let admin = connect(&lab.gw_home).await;
        let mut ids = Vec::new();
        for _ in 0..100 {
            let spec = JobSpec {
                node: Some("worker-cpu-01".into()),
                argv: vec!["sleep".into(), "4271.5".into()],
                ..Default::default()
            };
            let id = submit(&admin, spec).await;
            admin
                .call(Request::JobCancel {
                    id,
                    on_behalf_of: None,
                })
                .await
                .unwrap();
            ids.push(id);
        }
        for id in ids {
            let j = settle(&admin, id).await;
            assert_eq!(j.state, "cancelled", "job {id}: {j:?}");
            // A signal's code only for a process that ran.
            if j.started_at.is_none() {
                assert_eq!(j.exit_code, None, "job {id} never ran: {j:?}");
            }
        }
    });
    wait_until(T, "no cancelled job to be left running", || {
        testkit::processes_with("sleep 4271.5")
            .is_empty()
            .then_some(())
    });
}

#[test]
fn race_concurrent_submits_never_share_the_last_gpu() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let (_, _agent) = lab.node_up("worker-gpu-01", "gpu", 1);
    rt().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(connect(&lab.gw_home).await);
        }
        for round in 0..10 {
            let spec = JobSpec {
                role: Some("gpu".into()),
                gpus: Some(1),
                argv: vec!["sleep".into(), "0.3".into()],
                ..Default::default()
            };
            let results = futures_join(&clients, spec).await;
            let accepted: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(accepted.len(), 1, "round {round}: {results:?}");
            for r in &results {
                if let Err(ClientError::Api(e)) = r {
                    assert!(
                        matches!(
                            e.code,
                            ErrorCode::ResourceExhausted | ErrorCode::Unavailable
                        ),
                        "{e:?}"
                    );
                }
            }
            let id = *accepted[0];
            let j = settle(&clients[0], id).await;
            assert_eq!(j.state, "exited", "{j:?}");
        }
    });
}

async fn futures_join(clients: &[Client], spec: JobSpec) -> Vec<Result<u64, ClientError>> {
    // All submits are in flight together.
    futures_util::future::join_all(clients.iter().map(|c| {
        let spec = spec.clone();
        async move {
            match c.call(Request::JobSubmit(spec)).await {
                Ok(Response::Job(j)) => Ok(j.id),
                Ok(r) => panic!("{r:?}"),
                Err(e) => Err(e),
            }
        }
    }))
    .await
}

// --- unauthenticated floods ----------------------------------------------------

async fn enroll_conn(lab: &Lab) -> Result<quinn::Connection, String> {
    let addr: std::net::SocketAddr = lab.addr.as_ref().unwrap().parse().unwrap();
    let ca = std::fs::read_to_string(lab.gw_home.join("ca.crt")).unwrap();
    let der = pki::pem_to_der(&ca, "CERTIFICATE").unwrap();
    let pin = pki::spki_pin(&der).unwrap();
    let transport =
        mesh::tls::client_transport(Duration::from_secs(1), Duration::from_secs(30)).unwrap();
    let (cfg, _) = mesh::tls::enroll_client_config(pin, transport).unwrap();
    let ep = mesh::client_endpoint(addr)?;
    ep.connect_with(cfg, addr, proto::GATEWAY_SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())
}

#[test]
fn attack_stalled_enrollment_flood_is_bounded_and_real_enrollment_still_works() {
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    edit_file(&cfg, "rate_per_minute = 60", "rate_per_minute = 100000");
    edit_file(&cfg, "read_timeout = \"5s\"", "read_timeout = \"3s\"");
    lab.start_gateway();
    let gw_pid = lab.gateway().pid();
    let before = rss_kib(gw_pid);
    let rt = rt();
    let conns = rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..200 {
            let conn = enroll_conn(&lab).await.unwrap();
            let (mut send, _recv) = conn.open_bi().await.unwrap();
            // A frame header announcing 16000 bytes, then most of them, then
            // nothing: the gateway must not wait for the rest for ever.
            let mut data = 16_000u32.to_be_bytes().to_vec();
            data.extend(std::iter::repeat_n(7u8, 15_000));
            send.write_all(&data).await.unwrap();
            // More streams are not granted before identification.
            let extra = tokio::time::timeout(Duration::from_millis(20), conn.open_bi()).await;
            assert!(extra.is_err(), "a second stream was granted");
            conns.push((conn, send));
        }
        conns
    });
    let during = rss_kib(gw_pid);
    // A real node enrolls while the flood is on.
    let (_, _agent) = lab.node_up("worker-real", "cpu", 0);
    // Every stalled connection is closed by the read deadline.
    rt.block_on(async {
        for (conn, _send) in &conns {
            let closed = tokio::time::timeout(Duration::from_secs(15), conn.closed()).await;
            let reason = closed
                .expect("the gateway kept a stalled enrollment open")
                .to_string();
            assert!(reason.contains("read_timeout"), "{reason}");
        }
    });
    let grew = during.saturating_sub(before);
    eprintln!(
        "gateway RSS {before} KiB before, {during} KiB with 200 stalled connections (+{grew} KiB)"
    );
    assert!(
        grew < 48 * 1024,
        "200 stalled unauthenticated connections grew the gateway by {grew} KiB"
    );
}

#[test]
fn attack_enrollment_rate_limit_per_address() {
    let mut lab = Lab::new(BIN);
    edit_file(
        &lab.gw_home.join("gateway.toml"),
        "rate_per_minute = 60",
        "rate_per_minute = 5",
    );
    lab.start_gateway();
    rt().block_on(async {
        let mut conns = Vec::new();
        for _ in 0..8 {
            conns.push(enroll_conn(&lab).await.unwrap());
        }
        // Refused connections are closed at once with the reason; allowed
        // ones stay open (idle for up to a minute).
        let closed = || {
            conns
                .iter()
                .filter_map(|c| c.close_reason())
                .collect::<Vec<_>>()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while closed().len() < 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A wait on purpose: a fourth refusal would come as fast as the
        // first three did, so a short look after them is enough to see none.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = closed();
        for reason in &refused {
            assert!(reason.to_string().contains("rate_per_minute"), "{reason}");
        }
        assert_eq!(
            refused.len(),
            3,
            "5 a minute are allowed, the other 3 refused"
        );
    });
}

/// A started lab whose gateway lets one certificate hold `cap` connections.
fn lab_with_cert_cap(cap: usize) -> Lab {
    let mut lab = Lab::new(BIN);
    edit_file(
        &lab.gw_home.join("gateway.toml"),
        "max_connections_per_cert = 64",
        &format!("max_connections_per_cert = {cap}"),
    );
    lab.start_gateway();
    lab
}

#[test]
fn attack_one_certificate_cannot_hold_unbounded_connections() {
    let lab = lab_with_cert_cap(2);
    rt().block_on(async {
        let home = mesh::Home::new(&lab.gw_home);
        let a = Client::connect(&home).await.unwrap();
        let b = Client::connect(&home).await.unwrap();
        a.call(Request::Whoami).await.unwrap();
        b.call(Request::Whoami).await.unwrap();
        let third = match Client::connect(&home).await {
            Ok(c) => c.call(Request::Whoami).await.map(|_| ()),
            Err(e) => Err(e),
        };
        let err = third.unwrap_err().to_string();
        assert!(err.contains("max_connections_per_cert"), "{err}");
        // Closing one frees a place.
        a.close().await;
        let c = Client::connect(&home).await.unwrap();
        c.call(Request::Whoami).await.unwrap();
    });
}

#[test]
fn attack_an_idempotency_key_never_hands_one_users_job_to_another() {
    // A platform that reuses an event id must not make the bot hand user
    // A's job (its output, its approval) to user B: keys are scoped by
    // credential and requester, and a reuse by another requester is
    // refused, not answered.
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    let bot = lab.bot("moltbot", "slack:T0LAB");
    rt().block_on(async {
        let bot = Client::connect(&mesh::Home::new(&bot)).await.unwrap();
        let spec = |user: &str, key: &str| JobSpec {
            node: Some("worker-cpu-01".into()),
            argv: vec!["echo".into(), format!("for {user}")],
            on_behalf_of: Some(format!("slack:T0LAB/{user}")),
            idempotency_key: Some(key.into()),
            ..JobSpec::default()
        };
        let first = match bot
            .call(Request::JobSubmit(spec("U0ALICE", "slack:Ev1")))
            .await
        {
            Ok(Response::Job(j)) => j,
            r => panic!("{r:?}"),
        };
        // The same requester repeating the key gets the same job back.
        match bot
            .call(Request::JobSubmit(spec("U0ALICE", "slack:Ev1")))
            .await
        {
            Ok(Response::Job(j)) => assert_eq!(j.id, first.id),
            r => panic!("{r:?}"),
        }
        // Another requester with the same key is refused, and learns
        // nothing of the first job.
        match bot
            .call(Request::JobSubmit(spec("U0BOB", "slack:Ev1")))
            .await
        {
            Err(ClientError::Api(e)) => {
                assert_eq!(e.code, ErrorCode::AlreadyExists, "{e:?}");
                assert!(e.message.contains("another requester"), "{}", e.message);
                assert!(!e.message.contains(&first.id.to_string()), "{}", e.message);
            }
            r => panic!("{r:?}"),
        }
        // A fresh key works for B.
        match bot
            .call(Request::JobSubmit(spec("U0BOB", "slack:Ev2")))
            .await
        {
            Ok(Response::Job(j)) => {
                assert_ne!(j.id, first.id);
                assert_eq!(j.requester, "slack:T0LAB/U0BOB");
            }
            r => panic!("{r:?}"),
        }
    });
}

#[test]
fn attack_one_node_key_holds_two_narrow_connections_at_most() {
    // The review's arithmetic: one node certificate could hold 64
    // connections, each widened to a 64 MiB window, and read a 1 MiB frame
    // on each stream. Now it holds its current connection and one more,
    // which stays at the unidentified limits (one stream, 64 KiB window,
    // small first frames) until a hello makes it the current one.
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let (home, mut agent) = lab.node_up("worker-cpu-01", "cpu", 0);
    let gw_pid = lab.gateway().pid();
    let before = rss_kib(gw_pid);
    rt().block_on(async {
        let node = mesh::Home::new(&home);
        let mut held = Vec::new();
        for i in 0..64 {
            let c = Client::connect(&node).await.unwrap();
            let conn = c.connection().clone();
            // One stream only, holding a first frame started and never
            // finished (the most a node may send first is 64 KiB).
            let (mut send, _recv) = conn.open_bi().await.unwrap();
            let mut data = 60_000u32.to_be_bytes().to_vec();
            data.extend(std::iter::repeat_n(7u8, 50_000));
            send.write_all(&data).await.unwrap();
            let extra = tokio::time::timeout(Duration::from_millis(20), conn.open_bi()).await;
            assert!(
                extra.is_err(),
                "connection {i}: a second stream was granted"
            );
            let uni = tokio::time::timeout(Duration::from_millis(20), conn.open_uni()).await;
            assert!(
                uni.is_err(),
                "connection {i}: a heartbeat stream was granted"
            );
            held.push((c, send));
        }
        // Every extra connection but the newest was closed to make room,
        // with a reason; the node's own connection was never touched.
        let closed: Vec<String> = held[..63]
            .iter()
            .filter_map(|(c, _)| c.connection().close_reason().map(|r| r.to_string()))
            .collect();
        assert_eq!(closed.len(), 63, "{closed:?}");
        assert!(closed[0].contains("newer connection"), "{}", closed[0]);
        assert!(held[63].0.connection().close_reason().is_none());
        let during = rss_kib(gw_pid);
        println!(
            "gateway RSS: {before} KiB before, {during} KiB after 64 connections of one node key \
             (each with a 50 KB frame started)"
        );
        // A first frame over 64 KiB from a node key closes its connection.
        let c = Client::connect(&node).await.unwrap();
        let (mut send, _recv) = c.connection().open_bi().await.unwrap();
        let mut data = 900_000u32.to_be_bytes().to_vec();
        data.extend(std::iter::repeat_n(7u8, 1000));
        send.write_all(&data).await.unwrap();
        let why = c.connection().closed().await.to_string();
        assert!(
            why.contains("too large") || why.contains("bad request"),
            "{why}"
        );
    });
    assert!(agent.running(), "{}", agent.stderr());
    lab.wait_node("worker-cpu-01", "connected", T);
    lab.run_job(&["--node", "worker-cpu-01", "--", "true"]).ok();
}

#[test]
fn a_node_with_512_gpus_reports_them_all_and_an_unconfirmed_claim_costs_nothing() {
    // A heartbeat of 512 GPUs is about 31 KB; the old fixed 4 KiB limit
    // made such a node reconnect for ever.
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let token = lab.token(&["--auto-approve", "--labels", "gpu", "--max-gpus", "512"]);
    let big = lab.enroll_with(&token, "big-01", "gpu");
    let mut big_agent = lab.start_gpu_node(&big, 512);
    // The same claim with nothing confirmed (an auto-approve token without
    // --max-gpus): it reports, and offers none.
    let token = lab.token(&["--auto-approve", "--labels", "cpu"]);
    let claim = lab.enroll_with(&token, "claim-01", "cpu");
    let mut claim_agent = lab.start_gpu_node(&claim, 512);
    for (name, confirmed) in [("big-01", 512usize), ("claim-01", 0)] {
        // Three fresh heartbeats, each carrying every GPU: the age of the
        // latest one drops each time a new one lands.
        let mut last_age = u64::MAX;
        let mut fresh = 0;
        let show = wait_until(T, "three heartbeats with every GPU", || {
            let out = lab.admin(&["node", "show", name, "--json"]);
            let n: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            let age = n["heartbeat_age_ms"].as_u64()?;
            if n["gpus"].as_array()?.len() == 512 && age < last_age {
                fresh += 1;
            }
            last_age = age;
            (fresh >= 3).then_some(n)
        });
        assert_eq!(
            show["health"], "healthy",
            "{name}: {}",
            show["health_reason"]
        );
        let list = lab.admin(&["node", "list"]).ok().stdout;
        let row = list.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(row.contains(&format!("{confirmed}×")), "{row}");
    }
    lab.run_job(&["--node", "big-01", "--gpus", "64", "--", "true"])
        .ok();
    lab.run_job(&["--node", "claim-01", "--gpus", "1", "--", "true"])
        .fails_with(250, "node claim-01 has no confirmed GPUs");
    for (name, agent) in [("big-01", &mut big_agent), ("claim-01", &mut claim_agent)] {
        assert!(agent.running(), "{name}: {}", agent.stderr());
        let log = agent.stderr();
        assert_eq!(
            log.matches("connected").count(),
            1,
            "{name} reconnected: {log}"
        );
    }
}

#[test]
fn one_shot_cli_commands_close_their_connections_at_once() {
    // Each command sends CONNECTION_CLOSE as it exits instead of waiting out
    // QUIC's draining period; if a close were lost, sessions would linger
    // until the idle timeout and the third command would hit the cap of 2.
    let lab = lab_with_cert_cap(2);
    let gw = lab.gw_home.clone();
    for i in 0..12 {
        let cmd: &[&str] = match i % 3 {
            0 => &["whoami"],
            1 => &["node", "list"],
            _ => &["job", "list"],
        };
        lab.run(&gw, cmd).ok();
    }
}
