//! `openclaw run` streams its standard input to the job, as ssh does:
//! through a real gateway and a real node agent on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::{Lab, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(60);
const NODE: &str = "worker-cpu-01";

/// `openclaw run --node NODE ARGS...` with `stdin`, output captured.
fn run_with(lab: &Lab, args: &[&str], stdin: Stdio) -> Child {
    Command::new(BIN)
        .args([
            "--home",
            lab.gw_home.to_str().unwrap(),
            "run",
            "--node",
            NODE,
        ])
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits up to `T` for `child` and returns (code, stdout, stderr).
fn finish(mut child: Child) -> (i32, Vec<u8>, String) {
    wait_until(T, "openclaw run to exit", || child.try_wait().unwrap());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The output of `sh -c SCRIPT` run here, with `file` as its stdin.
fn local(script: &str, file: &std::path::Path) -> Vec<u8> {
    let out = Command::new("sh")
        .args(["-c", script])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
    out.stdout
}

/// A gateway and node NODE (its agent runs while the pair lives).
fn lab() -> (Lab, testkit::Proc) {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let (_, node) = lab.node_up(NODE, "cpu", 0);
    (lab, node)
}

#[test]
fn stdin_reaches_the_job_byte_for_byte_and_its_end_is_end_of_file() {
    let (lab, _node) = lab();

    // A small pipe: echo hello | openclaw run -- cat.
    let mut child = run_with(&lab, &["--", "cat"], Stdio::piped());
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let (code, out, err) = finish(child);
    assert_eq!((code, out.as_slice()), (0, &b"hello\n"[..]), "{err}");

    // 64 MiB from a file through sha256sum: the job's sum is the sum here.
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = lab.dir().join("input.bin");
    std::fs::write(&file, &data).unwrap();
    drop(data);
    let child = run_with(
        &lab,
        &["--", "sha256sum"],
        std::fs::File::open(&file).unwrap().into(),
    );
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&local("sha256sum", &file)),
        "the job read different bytes: {err}"
    );

    // A tar stream unpacked on the node: every file's bytes arrive.
    let src = lab.dir().join("tree");
    for i in 0..50 {
        let d = src.join(format!("d{}", i % 5));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), format!("file {i}\n").repeat(i + 1)).unwrap();
    }
    let archive = lab.dir().join("tree.tar");
    let made = Command::new("tar")
        .arg("cf")
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(made.success());
    let child = run_with(
        &lab,
        &["--shell", "--", "tar xOf - | sha256sum"],
        std::fs::File::open(&archive).unwrap().into(),
    );
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, local("tar xOf - | sha256sum", &archive), "{err}");

    // The remote exit code still comes back, after the job read its input.
    let mut child = run_with(
        &lab,
        &["--shell", "--", "test \"$(cat)\" = abc && exit 7"],
        Stdio::piped(),
    );
    child.stdin.take().unwrap().write_all(b"abc").unwrap();
    let (code, _, err) = finish(child);
    assert_eq!(code, 7, "{err}");
}

#[test]
fn no_stdin_gives_the_job_end_of_file_at_once() {
    let (lab, _node) = lab();
    // Standard input stays open (the writer is held), so only -n can end
    // `cat`: without it the job would wait for input for ever.
    let mut child = run_with(&lab, &["-n", "--", "cat"], Stdio::piped());
    let held = child.stdin.take().unwrap();
    let (code, out, err) = finish(child);
    drop(held);
    assert_eq!((code, out.len()), (0, 0), "{err}");

    // --detach too: the job never waits for input.
    let mut child = Command::new(BIN)
        .args(["--home", lab.gw_home.to_str().unwrap()])
        .args(["run", "--detach", "--node", NODE, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held = child.stdin.take().unwrap();
    let (code, out, err) = finish(child);
    drop(held);
    assert_eq!(code, 0, "{err}");
    let id: u64 = String::from_utf8_lossy(&out).trim().parse().unwrap();
    let job = lab.wait_job(id, "exited", T);
    assert_eq!(job["exit_code"], 0, "{job}");
}

#[test]
fn a_job_that_stops_reading_ends_the_run_while_input_keeps_coming() {
    let (lab, _node) = lab();
    for (cmd, want) in [
        (&["true"][..], &b""[..]),
        (&["head", "-c", "5"][..], &b"yyyyy"[..]),
    ] {
        let mut args = vec!["--"];
        args.extend_from_slice(cmd);
        let mut child = run_with(&lab, &args, Stdio::piped());
        // An endless writer, as `yes |` is: it stops when the pipe breaks.
        let mut w = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let buf = [b'y'; 64 * 1024];
            while w.write_all(&buf).is_ok() {}
        });
        let (code, out, err) = finish(child);
        assert_eq!(code, 0, "{cmd:?}: {err}");
        assert_eq!(out, want, "{cmd:?}: {err}");
        assert!(
            !err.contains("cut off"),
            "{cmd:?}: a job that stopped reading is not a cut-off input: {err}"
        );
        writer.join().unwrap();
    }
}

/// A session as node `name` (its enrolled home), on the current ALPN.
pub(crate) async fn node_session(lab: &Lab, home: &std::path::Path) -> quinn::Connection {
    node_session_on(gateway_addr(lab), home, proto::ALPN_SESSION)
        .await
        .unwrap()
}

/// The lab's gateway address.
pub(crate) fn gateway_addr(lab: &Lab) -> std::net::SocketAddr {
    lab.addr.as_ref().unwrap().parse().unwrap()
}

/// A session as node `home` offering only `alpn`: how the handshake ended.
pub(crate) async fn node_session_on(
    addr: std::net::SocketAddr,
    home: &std::path::Path,
    alpn: &'static [u8],
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let read = |f: &str| std::fs::read_to_string(home.join(f)).unwrap();
    let (cert, key, ca) = (read("node.crt"), read("node.key"), read("ca.crt"));
    let transport =
        mesh::tls::client_transport(Duration::from_secs(1), Duration::from_secs(5)).unwrap();
    let config = mesh::tls::session_client_config_for(&ca, &cert, &key, transport, alpn).unwrap();
    let endpoint = mesh::client_endpoint(addr).unwrap();
    endpoint
        .connect_with(config, addr, proto::GATEWAY_SERVER_NAME)
        .unwrap()
        .await
}

/// Reads `recv` to its end: the bytes, and how it ended.
async fn read_all(recv: &mut quinn::RecvStream) -> (Vec<u8>, String) {
    let mut got = Vec::new();
    loop {
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(c)) => got.extend_from_slice(&c.bytes),
            Ok(None) => return (got, "finished".into()),
            Err(e) => return (got, e.to_string()),
        }
    }
}

/// Asks for job `id`'s input as the node on `conn`.
async fn ask_input(conn: &quinn::Connection, id: u64) -> (Vec<u8>, String) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    mesh::write_frame(&mut send, &proto::Open::JobInput { job_id: id })
        .await
        .unwrap();
    let _ = send.finish();
    read_all(&mut recv).await
}

#[test]
fn attack_another_node_cannot_take_a_jobs_input() {
    // Both nodes are driven by hand, so the thief certainly asks before
    // the job's own node does.
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let owner = lab.enroll("worker-a", "cpu");
    let thief = lab.enroll("worker-thief", "cpu");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, mut control, _streams) = rt.block_on(crate::forward::hand_driven_node(&lab, &owner));
    lab.wait_node("worker-a", "connected", T);

    let mut child = Command::new(BIN)
        .args(["--home", lab.gw_home.to_str().unwrap()])
        .args(["run", "--node", "worker-a", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    w.write_all(b"secret input\n").unwrap();
    drop(w);
    let (stolen, why, mine, end) = rt.block_on(async {
        let id = loop {
            let msg: proto::ControlMsg = mesh::read_frame(&mut control, proto::MAX_FRAME_LEN)
                .await
                .unwrap()
                .unwrap();
            if let proto::ControlMsg::RunJobInput(plan) = msg {
                break plan.job_id;
            }
        };
        let b = node_session(&lab, &thief).await;
        let (stolen, why) = ask_input(&b, id).await;
        let (mine, end) = ask_input(&a, id).await;
        b.close(0u32.into(), b"done");
        a.close(0u32.into(), b"done");
        (stolen, why, mine, end)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(stolen.is_empty(), "another node read the input: {stolen:?}");
    assert!(
        why.contains(&format!("error {}", proto::input_code::REFUSED)),
        "the gateway should refuse the thief's stream: {why}"
    );
    // The job's own node gets every byte, then end of file.
    assert_eq!(
        (mine.as_slice(), end.as_str()),
        (&b"secret input\n"[..], "finished")
    );
}

#[test]
fn attack_jobs_holding_their_input_open_do_not_starve_the_nodes_next_job() {
    // A job with input takes two streams the node opens (its report and
    // its input), and an interactive input stays open as long as the job.
    // A node running max_jobs such jobs must still start its last one.
    // More held jobs than the streams a node has beside one per job (its
    // own and the forwards'), so one stream per job would starve the last.
    let n = u64::from(mesh::tls::NODE_BASE_STREAMS + mesh::tls::NODE_FORWARD_STREAMS) + 2;
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll(NODE, "cpu");
    testkit::edit_file(
        &home.join("node.toml"),
        "max_jobs = 256",
        &format!("max_jobs = {n}"),
    );
    let _node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);
    let held: Vec<(Child, std::process::ChildStdin)> = (1..n)
        .map(|_| {
            let mut c = run_with(&lab, &["--", "cat"], Stdio::piped());
            let w = c.stdin.take().unwrap();
            (c, w)
        })
        .collect();
    for id in 1..n {
        lab.wait_job(id, "running", T);
    }
    // The node's last job slot: it starts, runs and reports.
    let out = lab.run_job(&["--node", NODE, "--", "echo", "last"]).ok();
    assert_eq!(out.stdout.trim(), "last", "{out:?}");
    // And every held job still gets its input.
    for (mut c, mut w) in held {
        w.write_all(b"still here\n").unwrap();
        drop(w);
        c.stdin = None;
        let (code, got, err) = finish(c);
        assert_eq!((code, got.as_slice()), (0, &b"still here\n"[..]), "{err}");
    }
}
