//! `openclaw ca rotate`: a live lab rotates its CA with an overlap. A job
//! runs across every phase and ends complete; nodes renew over their live
//! connections; clients renew when they next connect; join tokens made
//! before the rotation enroll until `finish` and not after; `finish` waits
//! for stragglers unless forced, and then locks them out. Real gateway,
//! real node agents, real QUIC.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use testkit::{Lab, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

fn status(lab: &Lab) -> serde_json::Value {
    let out = lab.admin(&["ca", "status", "--json"]).ok();
    serde_json::from_str(&out.stdout).unwrap()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

fn certs_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches("BEGIN CERTIFICATE")
        .count()
}

fn pem_der(path: &Path) -> Vec<u8> {
    pki::pem_to_der(&std::fs::read_to_string(path).unwrap(), "CERTIFICATE").unwrap()
}

#[test]
fn a_live_lab_rotates_its_ca_without_interrupting_a_job() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let (home_a, _a) = lab.node_up("worker-rot-a", "cpu", 0);
    let bot = lab.bot("rotbot", "slack:T0ROT");
    // A bot that never connects during the rotation: finish waits for it.
    let idle_bot = lab.bot("idlebot", "slack:T0IDLE");
    // Join tokens made before the rotation pin the old CA.
    let early_token = lab.token(&["--auto-approve", "--labels", "cpu", "--uses", "1"]);
    let late_token = lab.token(&["--auto-approve", "--labels", "cpu", "--uses", "1"]);
    let old_ca = pem_der(&lab.gw_home.join("ca.crt"));

    let st = status(&lab);
    assert_eq!(st["phase"], "idle", "{st}");
    lab.admin(&["ca", "rotate", "--phase", "rotate"])
        .fails_with(1, "--phase init");

    // A job that runs through every phase.
    let job = lab.detach(&[
        "--node",
        "worker-rot-a",
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 150 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done",
    ]);
    lab.wait_job(job, "running", T);
    // Another admin follows it over one long-lived connection.
    let alice = lab.second_admin("alice");
    let job_text = job.to_string();
    let follower = lab.spawn(&alice, &["job", "logs", &job_text, "--follow"]);

    // init: both CAs trusted, the old one still issues; the node is told.
    let out = lab.admin(&["ca", "rotate", "--phase", "init"]).ok();
    assert!(out.stdout.contains("phase:    init"), "{}", out.stdout);
    wait_until(T, "the node to trust both CAs", || {
        (certs_in(&home_a.join("ca.crt")) == 2).then_some(())
    });
    let st = status(&lab);
    assert_eq!(st["trusted_pins"].as_array().unwrap().len(), 2, "{st}");
    assert!(
        names(&st["lagging_nodes"]).is_empty(),
        "the old CA still issues: {st}"
    );
    lab.admin(&["ca", "rotate", "--phase", "finish"])
        .fails_with(1, "before finish");
    lab.admin(&["ca", "rotate", "--phase", "init"])
        .fails_with(1, "already in its init phase");

    // rotate: the new CA issues; the connected node renews over its live
    // connection; the admin renews on its next command.
    let out = lab.admin(&["ca", "rotate", "--phase", "rotate"]).ok();
    assert!(out.stdout.contains("phase:    rotate"), "{}", out.stdout);
    let new_ca = pem_der(&lab.gw_home.join("ca.crt"));
    assert_ne!(new_ca, old_ca);
    wait_until(T, "the node to renew onto the new CA", || {
        let st = status(&lab);
        (!names(&st["lagging_nodes"]).contains(&"worker-rot-a".to_string())).then_some(())
    });
    // The gateway records the renewal before the node writes its file.
    wait_until(T, "the node to write its renewed certificate", || {
        pki::issued_by(&pem_der(&home_a.join("node.crt")), &new_ca)
            .unwrap()
            .then_some(())
    });
    assert!(pki::issued_by(&pem_der(&lab.gw_home.join("client.crt")), &new_ca).unwrap());
    // The job never noticed.
    assert_eq!(lab.job(job)["state"], "running");
    // The follower's session was closed so that it renews: it reconnected,
    // renewed and resumed where it was.
    wait_until(T, "the follower to renew", || {
        let st = status(&lab);
        (names(&st["lagging_clients"]) == ["idlebot".to_string(), "rotbot".to_string()])
            .then_some(())
    });
    assert!(pki::issued_by(&pem_der(&alice.join("client.crt")), &new_ca).unwrap());

    // doctor on the gateway home names the unfinished rotation and the next step.
    let doc = lab.admin(&["doctor"]);
    assert!(
        doc.stdout
            .contains("a CA rotation has been in its rotate phase")
            && doc.stdout.contains("--phase finish"),
        "{doc:?}"
    );

    // A bot renews when it next connects; its CA file holds both CAs.
    lab.run(&bot, &["whoami"]).ok();
    assert!(pki::issued_by(&pem_der(&bot.join("client.crt")), &new_ca).unwrap());
    assert_eq!(certs_in(&bot.join("ca.crt")), 2);
    lab.run(&bot, &["whoami"]).ok();

    // A token made before the rotation still enrolls (it pins the old CA;
    // the gateway sends the new CA cross-signed by the old one), and the
    // node it makes is on the new CA.
    let home_b = lab.enroll_with(&early_token, "worker-rot-b", "cpu");
    assert!(pki::issued_by(&pem_der(&home_b.join("node.crt")), &new_ca).unwrap());
    let mut node_b = lab.start_node(&home_b);
    lab.wait_node("worker-rot-b", "connected", T);
    let out = lab.run_job(&["--node", "worker-rot-b", "--", "echo", "on-b"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("on-b"));

    // A gateway restart mid-rotation picks the phase up from its journal.
    lab.wait_job(job, "exited", Duration::from_secs(60));
    lab.stop_gateway(false);
    lab.start_gateway();
    assert_eq!(status(&lab)["phase"], "rotate");
    lab.wait_node("worker-rot-a", "connected", T);
    lab.wait_node("worker-rot-b", "connected", T);

    // finish waits for the bot that never came back, unless forced.
    lab.admin(&["ca", "rotate", "--phase", "finish"])
        .fails_with(1, "clients idlebot have not renewed");
    let out = lab
        .admin(&["ca", "rotate", "--phase", "finish", "--force"])
        .ok();
    assert!(out.stdout.contains("phase:    idle"), "{}", out.stdout);
    assert!(
        out.stdout.contains("1 credential(s) of the old CA"),
        "{}",
        out.stdout
    );
    assert!(
        !lab.gw_home.join("ca-rotation.toml").exists(),
        "the old key went with the journal"
    );
    let st = status(&lab);
    assert_eq!(st["trusted_pins"].as_array().unwrap().len(), 1, "{st}");

    // The job ran through every phase and its output is whole.
    let j = lab.job(job);
    assert_eq!(j["state"], "exited", "{j}");
    assert_eq!(j["exit_code"], 0, "{j}");
    let logs = lab.admin(&["job", "logs", &job.to_string()]).ok();
    let want: String = (0..150).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(logs.stdout, want);
    let followed = follower.wait(T);
    assert_eq!(followed.code, 0, "{followed:?}");
    assert_eq!(followed.stdout, want, "the follower got every line once");

    // Nodes are told to trust only the new CA, and a restarted agent
    // connects with what it holds.
    wait_until(T, "the nodes to drop the old CA", || {
        (certs_in(&home_a.join("ca.crt")) == 1 && certs_in(&home_b.join("ca.crt")) == 1)
            .then_some(())
    });
    node_b.kill();
    let _b = lab.start_node(&home_b);
    lab.wait_node("worker-rot-b", "connected", T);
    let out = lab.run_job(&["--node", "worker-rot-b", "--", "echo", "after"]);
    assert_eq!(out.code, 0, "{out:?}");
    // The bot follows the end of the rotation too.
    lab.run(&bot, &["whoami"]).ok();
    assert_eq!(certs_in(&bot.join("ca.crt")), 1);

    // The straggler is locked out, and a token pinning the retired CA no
    // longer enrolls.
    let out = lab.run(&idle_bot, &["whoami"]);
    assert_ne!(out.code, 0, "{out:?}");
    let home_c = lab.home("worker-rot-c");
    lab.run(
        &home_c,
        &[
            "node",
            "enroll",
            "--token",
            &late_token,
            "--name",
            "worker-rot-c",
            "--wait",
            "5s",
        ],
    )
    .fails_with(77, "does not match the token's pin");
}
