//! Every bad input of the secure-mesh issue gets a clear error, never a
//! panic. CLI cases drive the real binary; wire cases speak raw QUIC to a
//! real gateway with hand-made messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use proto::{EnrollReply, EnrollRequest, EnrollSubmit, ErrorCode, Open, Response};
use testkit::{Lab, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");

/// The wall clock in unix seconds, as the gateway on this machine reads it.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn started() -> Lab {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    lab
}

fn ca_pin(lab: &Lab) -> [u8; 32] {
    let pem = std::fs::read_to_string(lab.gw_home.join("ca.crt")).unwrap();
    pki::spki_pin(&pki::pem_to_der(&pem, "CERTIFICATE").unwrap()).unwrap()
}

fn enroll(lab: &mut Lab, token: &str, name: &str) -> testkit::Out {
    let home = lab.home("n");
    lab.run(
        &home,
        &[
            "node", "enroll", "--token", token, "--name", name, "--wait", "3s",
        ],
    )
}

#[test]
fn wrong_ca_pin_is_refused() {
    let a = started();
    let mut b = started();
    let token = a.token(&["--auto-approve"]);
    let home = b.home("n");
    let b_addr = b.addr.clone().unwrap();
    let out = b.run(
        &home,
        &[
            "node",
            "enroll",
            "--token",
            &token,
            "--name",
            "n1",
            "--gateway",
            &b_addr,
            "--wait",
            "3s",
        ],
    );
    let out = out.fails_with(77, "does not match the token's pin");
    assert!(!out.stderr.contains("panicked"));
    assert!(
        b.nodes().is_empty(),
        "nothing may reach the wrong gateway's state"
    );
    // --gateway pointing at the right gateway works.
    let a_addr = a.addr.clone().unwrap();
    b.run(
        &home,
        &[
            "node",
            "enroll",
            "--token",
            &token,
            "--name",
            "n1",
            "--gateway",
            &a_addr,
            "--wait",
            "3s",
        ],
    )
    .ok();
}

#[test]
fn bad_tokens_are_refused() {
    let mut lab = started();
    // Expired.
    let expired = lab.token(&["--ttl", "1s", "--auto-approve"]);
    // The gateway counts whole seconds: the token lapses at the next
    // second boundary after it was made, which `token list` names.
    let list: serde_json::Value =
        serde_json::from_str(&lab.admin(&["token", "list", "--json"]).ok().stdout).unwrap();
    let expires_at = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["expires_at"].as_u64())
        .min()
        .unwrap();
    wait_until(Duration::from_secs(5), "the 1 s token to lapse", || {
        (now_secs() >= expires_at).then_some(())
    });
    enroll(&mut lab, &expired, "e1").fails_with(77, "expired");
    // Used up.
    let once = lab.token(&["--uses", "1", "--auto-approve"]);
    enroll(&mut lab, &once, "u1").ok();
    enroll(&mut lab, &once, "u2").fails_with(77, "used up");
    // Revoked.
    let revoked = lab.token(&["--auto-approve"]);
    let list: serde_json::Value =
        serde_json::from_str(&lab.admin(&["token", "list", "--json"]).ok().stdout).unwrap();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            revoked.len() > 4
                && t["uses_left"] == 1
                && t["revoked"] == false
                && t["expires_at"].as_u64().unwrap() > 0
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    lab.admin(&["token", "revoke", &id]).ok();
    enroll(&mut lab, &revoked, "r1").fails_with(77, "revoked");
    // Unknown: right pin and address, made-up id and secret.
    let unknown = pki::JoinToken::generate(ca_pin(&lab), lab.addr.as_ref().unwrap())
        .unwrap()
        .encode();
    enroll(&mut lab, &unknown, "k1").fails_with(77, "not known");
    // Wrong secret for a real id.
    let real = pki::JoinToken::parse(&lab.token(&[])).unwrap();
    let mut forged = pki::JoinToken::generate(real.ca_pin, &real.gateway).unwrap();
    forged.id = real.id.clone();
    enroll(&mut lab, &forged.encode(), "w1").fails_with(77, "wrong secret");
    // Malformed.
    for bad in ["oc1_garbage", "hello", "", &real.encode()[..30]] {
        enroll(&mut lab, bad, "m1").fails_with(2, "malformed join token");
    }
    for name in ["e1", "u2", "r1", "k1", "w1", "m1"] {
        assert!(lab.node(name).is_none(), "{name} must not be recorded");
    }
}

#[test]
fn a_token_nodes_elsewhere_cannot_dial_is_refused() {
    // Listening on every interface with no advertise: the token would carry
    // 127.0.0.1, and a node on another machine would dial itself.
    let mut lab = Lab::with_config(BIN, |c| {
        *c = c.replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"")
    });
    lab.start_gateway();
    lab.admin(&["token", "create"])
        .fails_with(1, "which only this machine can dial");
    lab.admin(&["token", "create"])
        .fails_with(1, "advertise = \"HOST:PORT\"");
    // No token was made.
    let list = lab.admin(&["token", "list"]).ok();
    assert!(!list.stdout.contains("expires"), "{}", list.stdout);

    // A malformed advertise is refused when the gateway loads its config.
    let home = lab.dir().join("fresh-gateway");
    let init = |adv: &str| {
        std::process::Command::new(BIN)
            .args(["--home", home.to_str().unwrap()])
            .args([
                "gateway",
                "init",
                "--listen",
                "0.0.0.0:7443",
                "--advertise",
                adv,
            ])
            .output()
            .unwrap()
    };
    let out = init("gw.example.org");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not HOST:PORT"), "{err}");
    // So is an advertise that token create would refuse later: loopback
    // while listening beyond it. Nothing is written.
    let out = init("127.0.0.1:7443");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("which only this machine can dial"), "{err}");
    assert!(!home.join("ca.key").exists());
    let out = init("gw.example.org:7443");
    assert!(out.status.success(), "{out:?}");
    let toml = std::fs::read_to_string(home.join("gateway.toml")).unwrap();
    assert!(
        toml.contains("\nadvertise = \"gw.example.org:7443\"\n"),
        "{toml}"
    );
}

#[test]
fn name_collision_is_refused() {
    let mut lab = started();
    lab.enroll("worker-c", "gpu");
    let token = lab.token(&["--auto-approve"]);
    enroll(&mut lab, &token, "worker-c").fails_with(77, "already enrolled; to enroll it again, an admin must first run 'openclaw node revoke worker-c'");
    // A pending name with another key is refused too.
    let t1 = lab.token(&[]);
    let home = lab.home("p");
    let _pending = lab.spawn(
        &home,
        &[
            "node", "enroll", "--token", &t1, "--name", "worker-p", "--wait", "30s",
        ],
    );
    lab.wait_node("worker-p", "pending", Duration::from_secs(20));
    let t2 = lab.token(&[]);
    enroll(&mut lab, &t2, "worker-p").fails_with(77, "already pending");
}

#[test]
fn invalid_node_names_are_refused() {
    let mut lab = started();
    let token = lab.token(&["--auto-approve", "--uses", "10"]);
    let long = "a".repeat(64);
    for bad in [
        "Worker",
        "worker_gpu",
        "a b",
        "",
        long.as_str(),
        "wörker",
        "a.b",
    ] {
        let out = enroll(&mut lab, &token, bad);
        assert_eq!(out.code, 2, "{bad:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("invalid --name"),
            "{bad:?}: {}",
            out.stderr
        );
    }
    // The gateway checks too, whatever the client does.
    let reply = submit_raw(&lab, &token, "Bad_Name", None);
    assert_error(reply, ErrorCode::InvalidArgument, "invalid node name");
    assert!(lab.nodes().is_empty());
}

#[test]
fn forged_and_overreaching_csrs_are_refused() {
    let lab = started();
    let token = lab.token(&["--auto-approve", "--uses", "10"]);
    // Signature made with one key, public key of another: no proof of possession.
    let a = pki::generate_key().unwrap();
    let b = pki::generate_key().unwrap();
    let der = pki::make_csr("forged", &a.key_pem).unwrap();
    let pos = der
        .windows(a.spki_der.len())
        .position(|w| w == a.spki_der)
        .unwrap();
    let mut forged = der.clone();
    forged[pos..pos + b.spki_der.len()].copy_from_slice(&b.spki_der);
    assert_error(
        submit_raw(&lab, &token, "forged", Some(forged)),
        ErrorCode::InvalidArgument,
        "proof of key possession",
    );
    // A CSR that asks for a SAN.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["gateway.example".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "greedy");
    let csr = params.serialize_request(&key).unwrap().der().to_vec();
    assert_error(
        submit_raw(&lab, &token, "greedy", Some(csr)),
        ErrorCode::InvalidArgument,
        "extensions",
    );
    // A CSR for another name.
    let c = pki::generate_key().unwrap();
    let other = pki::make_csr("someone-else", &c.key_pem).unwrap();
    assert_error(
        submit_raw(&lab, &token, "me", Some(other)),
        ErrorCode::InvalidArgument,
        "CN=me",
    );
    // Garbage.
    assert_error(
        submit_raw(&lab, &token, "junk", Some(vec![0x30, 0x01, 0x00])),
        ErrorCode::InvalidArgument,
        "PKCS#10",
    );
    assert!(lab.nodes().is_empty());
    // None of these used the token up.
    let list: serde_json::Value =
        serde_json::from_str(&lab.admin(&["token", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(list[0]["uses_left"], 10);
}

/// The calls behind the dashboard and CA rotation, fed what a hostile or
/// careless client would send.
#[test]
fn hostile_dashboard_and_rotation_requests_get_clear_errors() {
    let lab = started();
    let rt = runtime();
    rt.block_on(async {
        let admin = client::Client::connect(&mesh::Home::new(&lab.gw_home))
            .await
            .unwrap();
        // Too many nodes at once.
        let names: Vec<String> = (0..=proto::MAX_HISTORY_NODES)
            .map(|i| format!("n{i}"))
            .collect();
        match admin.call(proto::Request::NodeHistory { names }).await {
            Err(client::ClientError::Api(e)) => {
                assert!(e.message.contains("at most 200"), "{}", e.message)
            }
            r => panic!("{r:?}"),
        }
        // Unknown, empty and odd names: an empty history each, no error.
        let names = vec!["no-such-node".into(), String::new(), "\u{1b}[31m".into()];
        match admin
            .call(proto::Request::NodeHistory { names })
            .await
            .unwrap()
        {
            Response::NodeHistory(h) => {
                assert_eq!(h.len(), 3);
                assert!(h.iter().all(|n| n.samples.is_empty()));
            }
            r => panic!("{r:?}"),
        }
        // Rotation steps out of order name the next step.
        for (step, want) in [
            (proto::CaStep::Rotate, "--phase init"),
            (proto::CaStep::Finish, "--phase init"),
        ] {
            match admin
                .call(proto::Request::CaRotate { step, force: true })
                .await
            {
                Err(client::ClientError::Api(e)) => {
                    assert!(e.message.contains(want), "{step:?}: {}", e.message)
                }
                r => panic!("{r:?}"),
            }
        }
    });
    // A bot may not even look at the CA rotation.
    let mut lab = lab;
    let bot = lab.bot("hostbot", "slack:T0HOST");
    lab.run(&bot, &["ca", "status"])
        .fails_with(77, "a bot certificate (hostbot) may not call ca.rotate");
    lab.admin(&["whoami"]).ok();
}

#[test]
fn oversized_frames_are_refused() {
    let lab = started();
    let rt = runtime();
    rt.block_on(async {
        // Enrollment ALPN: a header announcing 2 GiB.
        let conn = enroll_conn(&lab).await;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&0x7fff_ffffu32.to_be_bytes()).await.unwrap();
        let reply: EnrollReply = mesh::read_frame(&mut recv, proto::MAX_FRAME_LEN)
            .await
            .unwrap()
            .unwrap();
        match reply {
            EnrollReply::Error(e) => assert!(e.message.contains("exceeds"), "{}", e.message),
            r => panic!("{r:?}"),
        }
        let err = conn.closed().await;
        assert!(
            mesh::describe_connection_error(&err).contains("protocol error"),
            "{err}"
        );

        // Session ALPN with the admin credential: same.
        let admin = client::Client::connect(&mesh::Home::new(&lab.gw_home))
            .await
            .unwrap();
        let (mut send, mut recv) = admin.connection().open_bi().await.unwrap();
        send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let reply: Response = mesh::read_frame(&mut recv, proto::MAX_FRAME_LEN)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&reply, Response::Error(e) if e.message.contains("exceeds")),
            "{reply:?}"
        );
        // Undecodable frame body.
        let admin = client::Client::connect(&mesh::Home::new(&lab.gw_home))
            .await
            .unwrap();
        let (mut send, mut recv) = admin.connection().open_bi().await.unwrap();
        send.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        let reply: Response = mesh::read_frame(&mut recv, proto::MAX_FRAME_LEN)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&reply, Response::Error(e) if e.message.contains("malformed")),
            "{reply:?}"
        );
    });
    // The gateway is still fine.
    lab.admin(&["whoami"]).ok();
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let lab_a = started();
    let mut lab_b = started();
    let home = lab_b.enroll("stranger", "gpu");
    // Trust A's CA and dial A, but present B's certificate.
    std::fs::copy(lab_a.gw_home.join("ca.crt"), home.join("ca.crt")).unwrap();
    let a_addr = lab_a.addr.clone().unwrap();
    lab_b
        .run(&home, &["node", "run", "--gateway", &a_addr])
        .fails_with(77, "issued by a different CA");
    // Without the CA swap the node refuses A's server certificate instead,
    // and keeps retrying (the gateway may be mid-reconfiguration), saying why.
    let home3 = lab_b.enroll("stranger-3", "gpu");
    let mut p = lab_b.spawn(&home3, &["node", "run", "--gateway", &a_addr]);
    testkit::wait_until(
        Duration::from_secs(10),
        "server certificate refusal in the log",
        || {
            p.stderr()
                .contains("certificate was not accepted")
                .then_some(())
        },
    );
    p.kill();
}

#[test]
fn no_client_certificate_is_refused() {
    let lab = started();
    let rt = runtime();
    rt.block_on(async {
        let ca = std::fs::read_to_string(lab.gw_home.join("ca.crt")).unwrap();
        let transport =
            mesh::tls::client_transport(Duration::from_secs(1), Duration::from_secs(5)).unwrap();
        let config = mesh::tls::anonymous_session_client_config(&ca, transport).unwrap();
        let addr: std::net::SocketAddr = lab.addr.as_ref().unwrap().parse().unwrap();
        let endpoint = mesh::client_endpoint(addr).unwrap();
        let conn = endpoint
            .connect_with(config, addr, proto::GATEWAY_SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let err = conn.closed().await;
        let msg = mesh::describe_connection_error(&err);
        assert!(msg.contains("client certificate"), "{msg}");
    });
}

#[test]
fn node_certificate_cannot_call_admin_operations() {
    let mut lab = started();
    let home = lab.enroll("worker-n", "gpu");
    for args in [
        &["node", "list"][..],
        &["node", "approve", "worker-n"],
        &["node", "revoke", "worker-n"],
        &["token", "create"],
    ] {
        lab.run(&home, args)
            .fails_with(77, "permission denied: a node certificate (worker-n)");
    }
    // Asking who it is, it may.
    let out = lab.run(&home, &["whoami"]).ok();
    assert!(out.stdout.contains("worker-n"), "{}", out.stdout);
    assert_eq!(lab.node("worker-n").unwrap()["connection"], "offline");
}

#[test]
fn unreachable_gateway_and_missing_credentials_say_what_to_do() {
    let mut lab = Lab::new(BIN);
    // Initialised on port 0 and never started: no address to dial yet.
    lab.admin(&["node", "list"])
        .fails_with(69, "has not been started yet");
    // A port where nothing listens: the call times out with a clear message.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        lab.gw_home.join("gateway.addr"),
        format!("127.0.0.1:{port}\n"),
    )
    .unwrap();
    lab.admin(&["node", "list"])
        .fails_with(69, "did not answer");
    let empty = lab.home("empty");
    lab.run(&empty, &["node", "list"])
        .fails_with(1, "no credential in");
    lab.run(&empty, &["node", "run"])
        .fails_with(1, "run 'openclaw node enroll' first");
    lab.run(&empty, &["gateway", "run"])
        .fails_with(1, "openclaw gateway init");
    lab.admin(&["token", "create", "--ttl", "soon"])
        .fails_with(2, "--ttl");
}

// --- raw wire helpers -------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn enroll_conn(lab: &Lab) -> quinn::Connection {
    let transport =
        mesh::tls::client_transport(Duration::from_secs(1), Duration::from_secs(5)).unwrap();
    let (config, _) = mesh::tls::enroll_client_config(ca_pin(lab), transport).unwrap();
    let addr: std::net::SocketAddr = lab.addr.as_ref().unwrap().parse().unwrap();
    let endpoint = mesh::client_endpoint(addr).unwrap();
    endpoint
        .connect_with(config, addr, proto::GATEWAY_SERVER_NAME)
        .unwrap()
        .await
        .unwrap()
}

/// Sends one hand-made enrollment submission; `csr` defaults to a valid one.
fn submit_raw(lab: &Lab, token: &str, name: &str, csr: Option<Vec<u8>>) -> EnrollReply {
    let token = pki::JoinToken::parse(token).unwrap();
    let csr = csr.unwrap_or_else(|| {
        let key = pki::generate_key().unwrap();
        // make_csr validates nothing about the name: the gateway must.
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let kp = rcgen::KeyPair::from_pem(&key.key_pem).unwrap();
        params.serialize_request(&kp).unwrap().der().to_vec()
    });
    runtime().block_on(async {
        let conn = enroll_conn(lab).await;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let req = EnrollRequest::Submit(EnrollSubmit {
            token_id: token.id.clone(),
            token_secret: token.secret.expose().to_string(),
            name: name.to_string(),
            labels: vec![],
            csr_der: csr,
        });
        mesh::write_frame(&mut send, &req).await.unwrap();
        send.finish().unwrap();
        mesh::read_frame(&mut recv, proto::MAX_FRAME_LEN)
            .await
            .unwrap()
            .unwrap()
    })
}

fn assert_error(reply: EnrollReply, code: ErrorCode, needle: &str) {
    match reply {
        EnrollReply::Error(e) => {
            assert_eq!(e.code, code, "{}", e.message);
            assert!(
                e.message.contains(needle),
                "{needle:?} not in {:?}",
                e.message
            );
        }
        r => panic!("expected an error containing {needle:?}, got {r:?}"),
    }
}

#[test]
fn unknown_stream_kinds_close_the_session() {
    let lab = started();
    runtime().block_on(async {
        let admin = client::Client::connect(&mesh::Home::new(&lab.gw_home))
            .await
            .unwrap();
        // An admin may not open a heartbeat stream.
        let (mut send, _recv) = admin.connection().open_bi().await.unwrap();
        mesh::write_frame(&mut send, &Open::Heartbeat)
            .await
            .unwrap();
        let err = admin.connection().closed().await;
        assert!(
            mesh::describe_connection_error(&err).contains("unexpected stream"),
            "{err}"
        );
    });
}

/// Frames as a protocol-2 node recorded them (crates/proto/tests/wire.golden).
const RECORDED_OPEN_CONTROL: &str = "000205302e312e30020008";
const RECORDED_OPEN_HEARTBEAT: &str = "01";
const RECORDED_HEARTBEAT: &str = "01fafc00000040fd00000000010000000100046e6f6e6500";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

async fn write_raw_frame(send: &mut quinn::SendStream, body: &[u8]) {
    send.write_all(&u32::try_from(body.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    send.write_all(body).await.unwrap();
}

#[test]
fn a_node_of_the_previous_protocol_works_and_an_older_one_is_told_to_upgrade() {
    let mut lab = started();
    let home = lab.enroll("worker-old", "cpu");
    let addr = crate::input::gateway_addr(&lab);
    let rt = runtime();
    rt.block_on(async {
        let connect = |alpn: &'static [u8]| crate::input::node_session_on(addr, &home, alpn);
        // The previous ALPN, and the bytes a node of that version sends:
        // the gateway welcomes it and lists it as connected.
        let conn = connect(proto::ALPN_SESSION_PREVIOUS).await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        write_raw_frame(&mut send, &unhex(RECORDED_OPEN_CONTROL)).await;
        let welcome: proto::ControlMsg = mesh::read_frame(&mut recv, proto::MAX_FRAME_LEN)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(welcome, proto::ControlMsg::Welcome { .. }),
            "{welcome:?}"
        );
        let mut hb = conn.open_uni().await.unwrap();
        write_raw_frame(&mut hb, &unhex(RECORDED_OPEN_HEARTBEAT)).await;
        write_raw_frame(&mut hb, &unhex(RECORDED_HEARTBEAT)).await;
        let node = lab.wait_node("worker-old", "connected", Duration::from_secs(10));
        assert_eq!(node["health"], "healthy", "{node}");

        // Standard input and forwards need protocol 3: the gateway says so
        // to the admin and sends this node nothing it could not decode.
        let run = std::process::Command::new(BIN)
            .args(["--home", lab.gw_home.to_str().unwrap()])
            .args(["run", "--node", "worker-old", "--", "cat"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = tokio::task::spawn_blocking(move || run.wait_with_output().unwrap())
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("cannot take standard input") && err.contains("upgrade"),
            "{err}"
        );
        let gw = lab.gw_home.clone();
        let fwd = lab.spawn(&gw, &["forward", "worker-old", "0:8080"]);
        let local = testkit::wait_until(Duration::from_secs(30), "the forward to listen", || {
            let err = fwd.stderr();
            let (_, rest) = err.split_once("forwarding 127.0.0.1:")?;
            rest.split(' ').next()?.parse::<u16>().ok()
        });
        let _tcp = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
        let said = testkit::wait_until(Duration::from_secs(30), "the forward's refusal", || {
            let e = fwd.stderr();
            e.contains("without forwards").then_some(e)
        });
        assert!(said.contains("upgrade"), "{said}");
        // A copy (openclaw cp) too: refused with a sentence, nothing sent.
        let file = lab.dir().join("to-copy");
        std::fs::write(&file, b"x").unwrap();
        let cp = lab.admin(&["cp", file.to_str().unwrap(), "worker-old:/tmp/x"]);
        assert_eq!(cp.code, 1, "{cp:?}");
        assert!(
            cp.stderr.contains("without copies") && cp.stderr.contains("upgrade"),
            "{}",
            cp.stderr
        );
        // (Trust is a protocol-2 message; it may come at any time.)
        while let Ok(sent) = tokio::time::timeout(
            Duration::from_millis(500),
            mesh::read_frame::<proto::ControlMsg>(&mut recv, proto::MAX_FRAME_LEN),
        )
        .await
        {
            let sent = sent.unwrap().unwrap();
            assert!(
                matches!(sent, proto::ControlMsg::Trust { .. }),
                "the gateway sent an old node {sent:?}"
            );
        }

        // A peer that speaks neither the current nor the previous version
        // (an old CLI or node two versions back) is told to upgrade.
        let err = connect(b"openclaw/0").await.unwrap_err();
        let msg = mesh::describe_connection_error(&err);
        assert!(
            msg.contains("ALPN mismatch") && msg.contains("upgrade"),
            "{msg}"
        );
        conn.close(0u32.into(), b"done");
    });
    let log = lab.gateway().stderr();
    assert!(
        log.contains("a peer speaks the previous session protocol (openclaw/2)"),
        "{log}"
    );
}
