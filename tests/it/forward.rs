//! `openclaw forward`: a local port that reaches a port on a node's
//! loopback through the gateway (as ssh -L), against a real gateway and a
//! real node agent on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use testkit::{Lab, Proc, edit_file, http_get, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);
const NODE: &str = "worker-cpu-01";

/// A free TCP port on 127.0.0.1 (free when asked).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `openclaw forward NODE 0:PORT` and returns it with its local port.
fn forward(lab: &mut Lab, port: u16) -> (Proc, u16) {
    let home = lab.gw_home.clone();
    let p = lab.spawn(&home, &["forward", NODE, &format!("0:{port}")]);
    let local = wait_until(T, "the forward to listen", || {
        let err = p.stderr();
        let (_, rest) = err.split_once("forwarding 127.0.0.1:")?;
        rest.split(' ').next()?.parse::<u16>().ok()
    });
    (p, local)
}

fn audit(gw_home: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(gw_home.join("state.db")).unwrap();
    let mut q = db
        .prepare(
            "SELECT actor || ' ' || target || ' ' || detail FROM audit WHERE action = 'forward'",
        )
        .unwrap();
    q.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_forward_reaches_a_web_server_and_a_websocket_on_the_node_and_only_allowed_ports() {
    if !testkit::have_tool("python3") {
        eprintln!(
            "SKIPPED: the job's web server is python3's http.server (scripts/test-deps.sh installs it)"
        );
        return;
    }
    let (web, ws, closed) = (free_port(), free_port(), free_port());
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll(NODE, "cpu");
    edit_file(
        &home.join("node.toml"),
        "forward_ports = []",
        &format!("forward_ports = [\"{web}\", \"{ws}-{ws}\"]"),
    );
    let _node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);

    // A real web server, started as a job on the node.
    let job = lab.detach(&[
        "--node",
        NODE,
        "--",
        "python3",
        "-m",
        "http.server",
        &web.to_string(),
        "--bind",
        "127.0.0.1",
    ]);
    wait_until(T, "the job's web server", || {
        std::net::TcpStream::connect(("127.0.0.1", web)).ok()
    });
    let (_fwd, local) = forward(&mut lab, web);
    let page = http_get(&format!("127.0.0.1:{local}"), "/").unwrap();
    assert!(page.contains("Directory listing"), "{page}");
    let _ = lab.admin(&["job", "cancel", &job.to_string()]);

    // A WebSocket echo through the forward: the upgrade passes, and frames
    // go both ways.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", ws)))
        .unwrap();
    rt.spawn(async move {
        while let Ok((tcp, _)) = server.accept().await {
            tokio::spawn(async move {
                let Ok(mut s) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = s.next().await {
                    if m.is_text() && s.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let (_fwd_ws, local_ws) = forward(&mut lab, ws);
    let echoed = rt.block_on(async {
        let (mut s, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{local_ws}/"))
            .await
            .unwrap();
        s.send("hello through the mesh".into()).await.unwrap();
        let m = s.next().await.unwrap().unwrap();
        m.into_text().unwrap().to_string()
    });
    assert_eq!(echoed, "hello through the mesh");

    // A port the node does not list: nothing connects, and the forward
    // says which rule refused it.
    let listening = std::net::TcpListener::bind(("127.0.0.1", closed)).unwrap();
    let (fwd_no, local_no) = forward(&mut lab, closed);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", local_no)).unwrap();
    conn.set_read_timeout(Some(T)).unwrap();
    let got = std::io::Read::read(&mut conn, &mut [0u8; 64]);
    assert!(
        matches!(got, Ok(0)),
        "the refused connection should just close: {got:?}"
    );
    let said = wait_until(T, "the refusal", || {
        let e = fwd_no.stderr();
        e.contains("forward_ports").then_some(e)
    });
    assert!(said.contains(&format!("port {closed}")), "{said}");
    listening.set_nonblocking(true).unwrap();
    assert!(
        listening.accept().is_err(),
        "the node connected to a port forward_ports does not list"
    );

    // Each forwarded connection is audited with its byte counts.
    let rows = wait_until(T, "audit rows for both forwards", || {
        let rows = audit(&lab.gw_home);
        (rows.len() >= 2).then_some(rows)
    });
    assert!(
        rows.iter()
            .any(|r| r.contains(&format!("127.0.0.1:{web}:")) && r.contains("bytes back")),
        "{rows:?}"
    );
}

#[test]
fn attack_held_forwards_do_not_starve_the_nodes_jobs() {
    // Every forward is a stream the node opens, and a node may open only
    // so many at once: a browser (or anyone reaching the local port) that
    // holds connections must not take the streams the node's jobs need.
    let port = free_port();
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll(NODE, "cpu");
    let toml = home.join("node.toml");
    edit_file(
        &toml,
        "forward_ports = []",
        &format!("forward_ports = [\"{port}\"]"),
    );
    edit_file(&toml, "max_jobs = 256", "max_jobs = 1");
    let _node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);

    // A service on the node that accepts every connection and holds it.
    let server = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = accepted.clone();
    std::thread::spawn(move || {
        while let Ok((c, _)) = server.accept() {
            keep.lock().unwrap().push(c);
        }
    });
    let (fwd, local) = forward(&mut lab, port);
    let cap = mesh::tls::NODE_FORWARD_STREAMS as usize;
    let held: Vec<_> = (0..cap + 4)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", local)).unwrap())
        .collect();
    // At least as many as a node's spare streams are open on the node.
    let spare = mesh::tls::NODE_BASE_STREAMS as usize;
    wait_until(T, "held forwards to reach the node's service", || {
        (accepted.lock().unwrap().len() >= spare).then_some(())
    });

    // The node's job still gets its streams (and its input stream).
    let out = lab.run_job(&["--node", NODE, "--", "echo", "through"]).ok();
    assert_eq!(out.stdout.trim(), "through", "{out:?}");

    // Past the cap the gateway refuses, and says why.
    let said = wait_until(T, "forwards past the cap to be refused", || {
        let e = fwd.stderr();
        e.contains("forwards to node").then_some(e)
    });
    assert!(said.contains("already open"), "{said}");
    assert!(
        accepted.lock().unwrap().len() <= cap,
        "more forwards than the cap reached the node"
    );
    drop(held);
}

/// Node `home`'s session with its control stream open and one heartbeat
/// sent, driven by hand: (connection, control stream, what must stay open).
pub(crate) async fn hand_driven_node(
    lab: &Lab,
    home: &Path,
) -> (
    quinn::Connection,
    quinn::RecvStream,
    (quinn::SendStream, quinn::SendStream),
) {
    let conn = crate::input::node_session(lab, home).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = proto::NodeHello {
        protocol: proto::PROTOCOL_VERSION,
        agent_version: "hostile".into(),
        gpus: 0,
        gpus_simulated: false,
        max_jobs: 4,
    };
    mesh::write_frame(&mut send, &proto::Open::Control(hello))
        .await
        .unwrap();
    let welcome: proto::ControlMsg = mesh::read_frame(&mut recv, proto::MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(welcome, proto::ControlMsg::Welcome { .. }),
        "{welcome:?}"
    );
    let mut hb = conn.open_uni().await.unwrap();
    mesh::write_frame(&mut hb, &proto::Open::Heartbeat)
        .await
        .unwrap();
    // Protocol 3: a heartbeat, then each GPU's health (none here).
    let beat = proto::HeartbeatV3 {
        beat: proto::Heartbeat {
            seq: 1,
            ..Default::default()
        },
        health: vec![],
    };
    mesh::write_frame(&mut hb, &beat).await.unwrap();
    (conn, recv, (send, hb))
}

/// Opens `Open::Forward { id, error }` as the node on `conn`; how the
/// gateway ended the stream.
async fn answer_forward(conn: &quinn::Connection, id: u64, error: Option<String>) -> String {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    mesh::write_frame(&mut send, &proto::Open::Forward { id, error })
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(T, recv.read(&mut buf)).await {
        Ok(Ok(Some(n))) => format!("read {n} bytes"),
        Ok(Ok(None)) => "finished".into(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "nothing within the timeout".into(),
    }
}

#[test]
fn attack_a_node_cannot_answer_forwards_it_was_not_asked_and_its_errors_are_escaped() {
    // Two compromised nodes with valid certificates, driven by hand: one
    // answers a forward meant for the other, or guesses ids; the asked
    // node answers with terminal escapes and a forged log line.
    let port = free_port();
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let owner = lab.enroll("worker-a", "cpu");
    let thief = lab.enroll("worker-thief", "cpu");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, mut control, _keep) = rt.block_on(hand_driven_node(&lab, &owner));
    lab.wait_node("worker-a", "connected", T);
    let b = rt.block_on(crate::input::node_session(&lab, &thief));

    let gw = lab.gw_home.clone();
    let fwd = lab.spawn(&gw, &["forward", "worker-a", &format!("0:{port}")]);
    let local = wait_until(T, "the forward to listen", || {
        let err = fwd.stderr();
        let (_, rest) = err.split_once("forwarding 127.0.0.1:")?;
        rest.split(' ').next()?.parse::<u16>().ok()
    });
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    let hostile = "\x1b]0;owned\x07\x1b[2J\nFORGED gateway log line";
    let (guessed, stolen, own) = rt.block_on(async {
        let (id, asked) = loop {
            let msg: proto::ControlMsg = mesh::read_frame(&mut control, proto::MAX_FRAME_LEN)
                .await
                .unwrap()
                .unwrap();
            if let proto::ControlMsg::Forward { id, port } = msg {
                break (id, port);
            }
        };
        assert_eq!(asked, port);
        let guessed = answer_forward(&b, id + 1, None).await;
        let stolen = answer_forward(&b, id, None).await;
        let own = answer_forward(&a, id, Some(hostile.into())).await;
        (guessed, stolen, own)
    });
    let refused = format!("error {}", proto::input_code::REFUSED);
    assert!(guessed.contains(&refused), "a guessed id: {guessed}");
    assert!(
        stolen.contains(&refused),
        "another node's forward: {stolen}"
    );
    assert!(!own.contains(&refused), "the asked node's answer: {own}");
    let got = std::io::Read::read(&mut tcp, &mut [0u8; 64]);
    assert!(
        matches!(got, Ok(0)),
        "the refused connection should close: {got:?}"
    );

    // The node's words reach the admin's terminal, the audit trail and the
    // gateway's log escaped: no control character of theirs survives.
    let said = wait_until(T, "the node's refusal", || {
        let e = fwd.stderr();
        e.contains("FORGED").then_some(e)
    });
    assert!(!said.contains('\x1b') && !said.contains('\x07'), "{said:?}");

    // A forward the node opened and then ends by closing its connection
    // with a reason of its choosing: the gateway audits how it ended.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    let _node_side = rt.block_on(async {
        let id = loop {
            let msg: proto::ControlMsg = mesh::read_frame(&mut control, proto::MAX_FRAME_LEN)
                .await
                .unwrap()
                .unwrap();
            if let proto::ControlMsg::Forward { id, .. } = msg {
                break id;
            }
        };
        let (mut send, recv) = a.open_bi().await.unwrap();
        mesh::write_frame(&mut send, &proto::Open::Forward { id, error: None })
            .await
            .unwrap();
        send.write_all(b"hi").await.unwrap();
        (send, recv)
    });
    let mut hi = [0u8; 2];
    std::io::Read::read_exact(&mut tcp, &mut hi).unwrap();
    assert_eq!(&hi, b"hi");
    a.close(
        1u32.into(),
        hostile.replace("FORGED", "FORGED-CLOSE").as_bytes(),
    );
    drop(tcp);
    let rows = wait_until(
        T,
        "audit rows for the refusal and the closed forward",
        || {
            let rows = audit(&lab.gw_home);
            // (quinn's stream errors say "connection lost", not the
            // peer's reason; were that to change, it must come escaped.)
            rows.iter()
                .any(|r| r.contains("bytes back"))
                .then_some(rows)
        },
    );
    for r in &rows {
        assert!(
            !r.chars().any(|c| c.is_control()),
            "a node's control characters in the audit trail: {r:?}"
        );
    }
    assert!(rows.iter().any(|r| r.contains("FORGED")), "{rows:?}");
    let log = lab.gateway().stderr();
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")),
        "a node forged a line of the gateway's log"
    );
    assert!(!log.contains('\x07'), "a node's BEL in the gateway's log");
    a.close(0u32.into(), b"done");
    b.close(0u32.into(), b"done");
}

#[test]
fn hostile_forward_requests_get_clear_errors_and_leave_clean_audit_rows() {
    // Admin requests sent by hand (the CLI checks the node first): a node
    // name with terminal escapes, a name of 60,000 characters, port 0.
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll(NODE, "cpu");
    let _node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let long = "n".repeat(60_000);
    let errors = rt.block_on(async {
        let admin = client::Client::connect(&mesh::Home::new(&lab.gw_home))
            .await
            .unwrap();
        let mut errors = Vec::new();
        for (node, port) in [
            ("\x1b]0;owned\x07\nFORGED", 80),
            (long.as_str(), 80),
            (NODE, 0),
        ] {
            match admin.open_forward(node, port).await {
                Err(client::ClientError::Api(e)) => errors.push(e.message),
                Ok(_) => panic!("a forward to {:?}:{port} opened", node.escape_debug()),
                Err(e) => panic!("{e:?}"),
            }
        }
        errors
    });
    assert!(errors[0].contains("name"), "{}", errors[0]);
    assert!(errors[1].contains("limit"), "{}", errors[1]);
    assert!(errors[2].contains("port 0"), "{}", errors[2]);
    for e in &errors {
        assert!(
            e.len() < 1000,
            "an error echoes the request: {} bytes",
            e.len()
        );
        assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
    }
    let rows = audit(&lab.gw_home);
    assert_eq!(rows.len(), 3, "each refusal is audited: {rows:?}");
    for r in &rows {
        assert!(r.len() < 1000, "an audit row of {} bytes", r.len());
        assert!(!r.chars().any(|c| c.is_control()), "{r:?}");
    }
}

#[test]
fn a_forward_to_an_offline_node_says_so_at_start() {
    // Enrolled, never started: known to the gateway, offline.
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll(NODE, "cpu");
    let (fwd, _local) = forward(&mut lab, free_port());
    let said = fwd.stderr();
    assert!(
        said.contains(&format!("node {NODE} is offline now"))
            && said.contains("connections are refused until it is back"),
        "{said}"
    );
    drop(fwd);
    // Connected: no warning.
    let _node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);
    let (fwd, _local) = forward(&mut lab, free_port());
    assert!(!fwd.stderr().contains("offline"), "{}", fwd.stderr());
}
