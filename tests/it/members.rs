//! Lab members: a `user` credential runs its own work and manages nothing,
//! against a real gateway and node agent on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::{Lab, edit_file};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);
const NODE: &str = "worker-cpu-01";

/// A user credential named `name`; returns its home.
fn member(lab: &mut Lab, name: &str) -> PathBuf {
    let home = lab.home(name);
    let out = lab
        .admin(&[
            "client",
            "create",
            name,
            "--role",
            "user",
            "--out",
            home.to_str().unwrap(),
        ])
        .ok();
    assert!(out.stdout.contains("user credential"), "{out:?}");
    home
}

fn jobs_of(lab: &Lab, home: &Path) -> Vec<serde_json::Value> {
    let out = lab.run(home, &["job", "list", "--json"]).ok();
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn attack_a_lab_member_runs_its_own_work_and_manages_nothing() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let _node = lab.node_up(NODE, "cpu", 0);
    let alice = member(&mut lab, "alice");

    let theirs = lab.detach(&["--node", NODE, "--", "sh", "-c", "echo admin-secret"]);
    lab.wait_job(theirs, "exited", T);

    // Its own work: a job with its exit code, charged to user:alice.
    let out = lab.run(
        &alice,
        &["run", "--node", NODE, "--", "sh", "-c", "echo mine; exit 3"],
    );
    assert_eq!((out.code, out.stdout.as_str()), (3, "mine\n"), "{out:?}");
    let mine = jobs_of(&lab, &alice);
    assert_eq!(mine.len(), 1, "a member sees its own jobs only: {mine:?}");
    assert_eq!(mine[0]["requester"], "user:alice", "{mine:?}");
    let all = jobs_of(&lab, &lab.gw_home.clone());
    assert!(
        all.iter().any(|j| j["requester"] == "user:alice"),
        "the admin sees the member's job: {all:?}"
    );
    // The nodes are visible.
    let nodes = lab.run(&alice, &["node", "list"]).ok();
    assert!(nodes.stdout.contains(NODE), "{nodes:?}");

    // Another requester's job: not shown, not readable, not cancellable.
    let id = theirs.to_string();
    for args in [
        vec!["job", "show", &id],
        vec!["job", "logs", &id],
        vec!["job", "cancel", &id],
        // Approving or denying it tells nothing either: not its state,
        // not its approvers.
        vec!["job", "approve", &id],
        vec!["job", "deny", &id],
    ] {
        let out = lab.run(&alice, &args);
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert!(!out.stdout.contains("admin-secret"), "{args:?}: {out:?}");
        // As for a job that does not exist: nothing says it is someone else's.
        assert!(
            out.stderr.contains(&format!("no job with id {id}")),
            "{args:?}: {out:?}"
        );
    }

    // Nothing that manages the lab: each refused, naming the role.
    let bob = lab.home("bob");
    for args in [
        vec!["token", "create"],
        vec!["token", "list"],
        vec!["node", "approve", NODE],
        vec!["node", "revoke", NODE],
        vec!["client", "list"],
        vec!["client", "create", "bob", "--out", bob.to_str().unwrap()],
        vec!["client", "revoke", "admin"],
        vec!["ca", "rotate", "--phase", "init"],
    ] {
        let out = lab.run(&alice, &args);
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert!(
            out.stderr
                .contains("a user certificate (alice) may not call"),
            "{args:?}: {out:?}"
        );
    }
    // The node is untouched and the admin credential still works.
    let out = lab.admin(&["run", "--node", NODE, "--", "true"]);
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn a_lab_member_named_in_policy_approves_what_it_holds() {
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    edit_file(&cfg, "default = \"allow\"", "default = \"approve\"");
    edit_file(
        &cfg,
        "approvers = [\"admin\"]",
        "approvers = [\"admin\", \"user:alice\"]",
    );
    lab.start_gateway();
    let _node = lab.node_up(NODE, "cpu", 0);
    let alice = member(&mut lab, "alice");
    let bob = member(&mut lab, "bob");

    // The admin's job waits for an approver; alice, an approver, sees it
    // and approves it; bob, a member but no approver, may not.
    let id = lab.detach(&["--node", NODE, "--", "true"]);
    lab.wait_job(id, "awaiting-approval", T);
    // For bob the held job does not exist: approving or denying it names
    // neither its state nor its approvers.
    for verb in ["approve", "deny"] {
        let out = lab.run(&bob, &["job", verb, &id.to_string()]);
        assert_ne!(out.code, 0, "{out:?}");
        assert!(
            out.stderr.contains(&format!("no job with id {id}")),
            "{verb}: {out:?}"
        );
        assert!(!out.stderr.contains("user:alice"), "{verb}: {out:?}");
    }
    assert!(jobs_of(&lab, &bob).is_empty(), "bob sees no one else's job");
    assert_eq!(
        jobs_of(&lab, &alice).len(),
        1,
        "an approver sees the held job"
    );
    let out = lab.run(&alice, &["job", "approve", &id.to_string()]).ok();
    assert!(
        out.stdout.contains("approved") || out.stderr.contains("approved"),
        "{out:?}"
    );
    let done = lab.wait_job(id, "exited", T);
    assert_eq!(done["exit_code"], 0, "{done}");
}

/// A free TCP port on 127.0.0.1 (free when asked).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `openclaw forward NODE 0:PORT` as `home`; returns it and its
/// local port.
fn forward(lab: &mut Lab, home: &Path, port: u16) -> (testkit::Proc, u16) {
    let p = lab.spawn(home, &["forward", NODE, &format!("0:{port}")]);
    let local = testkit::wait_until(T, "the forward to listen", || {
        let err = p.stderr();
        let (_, rest) = err.split_once("forwarding 127.0.0.1:")?;
        rest.split(' ').next()?.parse::<u16>().ok()
    });
    (p, local)
}

#[test]
fn attack_a_lab_member_cannot_forward_to_a_node_policy_denies_it() {
    let mut lab = Lab::new(BIN);
    let cfg = lab.gw_home.join("gateway.toml");
    // alice may run nothing on the node; bob may.
    edit_file(
        &cfg,
        "[limits]",
        &format!(
            "[[policy.rules]]\nusers = [\"user:alice\"]\nnodes = [\"{NODE}\"]\naction = \"deny\"\n\n[limits]"
        ),
    );
    lab.start_gateway();
    let port = free_port();
    let home = lab.enroll(NODE, "cpu");
    edit_file(
        &home.join("node.toml"),
        "forward_ports = []",
        &format!("forward_ports = [\"{port}\"]"),
    );
    let _node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);
    let alice = member(&mut lab, "alice");
    let bob = member(&mut lab, "bob");
    // A service on the node's loopback, on a port the node forwards.
    let service = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    service.set_nonblocking(true).unwrap();

    // Policy keeps alice's jobs off the node ...
    let out = lab.run(&alice, &["run", "--node", NODE, "--", "true"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("denied by policy rule 1"), "{out:?}");
    // ... and her forwards: nothing connects on the node, and she is told why.
    let (fwd, local) = forward(&mut lab, &alice, port);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
    conn.set_read_timeout(Some(T)).unwrap();
    let got = std::io::Read::read(&mut conn, &mut [0u8; 8]);
    assert!(matches!(got, Ok(0)), "the refused forward closes: {got:?}");
    let said = testkit::wait_until(T, "the refusal", || {
        let e = fwd.stderr();
        e.contains("refused").then_some(e)
    });
    assert!(said.contains("policy rule 1"), "{said}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        service.accept().is_err(),
        "the node connected for a member policy denies the node"
    );

    // bob, whom no rule denies, reaches the same port.
    let (_fwd_bob, local_bob) = forward(&mut lab, &bob, port);
    let _conn = std::net::TcpStream::connect(("127.0.0.1", local_bob)).unwrap();
    testkit::wait_until(T, "bob's connection on the node", || service.accept().ok());
}
