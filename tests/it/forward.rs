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
