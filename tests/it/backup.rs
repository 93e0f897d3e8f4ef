//! `openclaw gateway backup` / `restore`: a backup taken while the gateway
//! runs restores into a new home, and the nodes reconnect to it. Real
//! gateway, real node agent, real QUIC.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use testkit::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_live_backup_restores_into_a_new_home_and_nodes_reconnect() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let (_home, _node) = lab.node_up("worker-bk", "cpu", 0);
    let out = lab.run_job(&["--node", "worker-bk", "--", "echo", "before-backup"]);
    assert_eq!(out.code, 0, "{out:?}");
    // A job still running while the backup is taken.
    let running = lab.detach(&["--node", "worker-bk", "--", "sleep", "2"]);
    lab.wait_job(running, "running", T);

    let file = lab.dir().join("gw.backup");
    let out = lab.admin(&["gateway", "backup", file.to_str().unwrap(), "--with-logs"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("1 nodes, 2 jobs, with logs"),
        "{}",
        out.stdout
    );
    assert_eq!(mode(&file), 0o600, "a backup holds the CA key");
    lab.wait_job(running, "exited", T);

    // The old gateway is gone for good; a new home gets the backup.
    lab.stop_gateway(false);
    let new_home = lab.dir().join("restored-gateway");
    let out = lab.run(&new_home, &["gateway", "restore", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("(1 nodes, 2 jobs"), "{}", out.stdout);
    assert_eq!(mode(&new_home.join("ca.key")), 0o600);
    assert_eq!(mode(&new_home.join("state.db")), 0o600);
    assert_eq!(mode(&new_home.join("ca.crt")), 0o644);

    // Restoring over a gateway is refused.
    lab.run(&new_home, &["gateway", "restore", file.to_str().unwrap()])
        .fails_with(1, "already holds a gateway; restore into a new, empty home");

    // The restored gateway, on the address its node dials: the node
    // reconnects on its own, old jobs and their output are there, new
    // jobs run.
    lab.gw_home = new_home;
    lab.start_gateway();
    lab.wait_node("worker-bk", "connected", T);
    let first = lab.job(running - 1);
    assert_eq!(first["state"], "exited", "{first}");
    let logs = lab.admin(&["job", "logs", &(running - 1).to_string()]);
    assert_eq!(logs.stdout, "before-backup\n", "{logs:?}");
    let out = lab.run_job(&["--node", "worker-bk", "--", "echo", "after-restore"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "after-restore\n"),
        "{out:?}"
    );
}

#[test]
fn a_damaged_or_foreign_backup_is_refused_and_nothing_lands() {
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let file = lab.dir().join("gw.backup");
    lab.admin(&["gateway", "backup", file.to_str().unwrap()])
        .ok();

    // One byte of the CA certificate changed.
    let mut bytes = std::fs::read(&file).unwrap();
    let begin: &[u8] = b"-----BEGIN CERTIFICATE-----";
    let at = bytes.windows(begin.len()).position(|w| w == begin).unwrap() + 40;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let damaged = lab.dir().join("damaged.backup");
    std::fs::write(&damaged, &bytes).unwrap();
    let target = lab.dir().join("target");
    let out = lab.run(&target, &["gateway", "restore", damaged.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("does not match its manifest entry"),
        "{}",
        out.stderr
    );
    assert!(!target.join("ca.key").exists() && !target.join("state.db").exists());

    // Not a backup at all.
    let junk = lab.dir().join("junk");
    std::fs::write(&junk, b"not a tar file at all").unwrap();
    let out = lab.run(&target, &["gateway", "restore", junk.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("is not a usable OpenClaw gateway backup"),
        "{}",
        out.stderr
    );

    // Backing up something that is not a gateway home.
    let out = lab.run(
        &target,
        &["gateway", "backup", lab.dir().join("x").to_str().unwrap()],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("is not a gateway home"),
        "{}",
        out.stderr
    );
}
