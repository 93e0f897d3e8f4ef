//! Gateway state in PostgreSQL: `openclaw gateway migrate-state --to
//! postgres://…` moves a gateway's SQLite state into a real PostgreSQL
//! server (started in a temporary directory by `testpg`), and the gateway
//! then runs on it: real gateway, real node agent, real QUIC.
//! SKIPPED without PostgreSQL (a failure under .ci/run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use testkit::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

#[test]
fn a_gateway_moves_its_state_to_postgres_and_keeps_its_nodes_and_jobs() {
    let Some(pg) = testpg::shared("state test: migrate to PostgreSQL") else {
        return;
    };
    let url = pg.database().unwrap();
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let (_home, _node) = lab.node_up("worker-pg", "gpu", 0);
    let out = lab.run_job(&["--node", "worker-pg", "--", "echo", "on-sqlite"]);
    assert_eq!(out.code, 0, "{out:?}");
    let first = lab.jobs()[0]["id"].as_u64().unwrap();
    lab.token(&["--uses", "3"]);

    // Refused while the gateway runs: a write could be lost.
    let out = lab.admin(&["gateway", "migrate-state", "--to", &url]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("stop it, then migrate"),
        "{}",
        out.stderr
    );
    lab.stop_gateway(false);

    let out = lab.admin(&["gateway", "migrate-state", "--to", &url]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("nodes          1"), "{}", out.stdout);
    assert!(out.stdout.contains("jobs           1"), "{}", out.stdout);
    let cfg = std::fs::read_to_string(lab.gw_home.join("gateway.toml")).unwrap();
    assert!(cfg.contains(&format!("url = \"{url}\"")), "{cfg}");

    // The gateway now runs on PostgreSQL: the node comes back, the old job
    // and its output are there, and new jobs continue the ids.
    lab.start_gateway();
    lab.wait_node("worker-pg", "connected", T);
    let job = lab.job(first);
    assert_eq!(job["state"], "exited", "{job}");
    let out = lab.admin(&["job", "logs", &first.to_string()]);
    assert!(out.stdout.contains("on-sqlite"), "{out:?}");
    let out = lab.run_job(&[
        "--node",
        "worker-pg",
        "--",
        "sh",
        "-c",
        "echo on-postgres; exit 3",
    ]);
    assert_eq!(out.code, 3, "the remote exit code comes back: {out:?}");
    assert!(out.stdout.contains("on-postgres"), "{out:?}");
    let newest = lab.jobs()[0]["id"].as_u64().unwrap();
    assert!(newest > first, "ids continue after the copied ones");
    let tokens: Vec<serde_json::Value> =
        serde_json::from_str(&lab.admin(&["token", "list", "--json"]).ok().stdout).unwrap();
    assert!(
        tokens
            .iter()
            .any(|t| t["uses_total"] == 3 && t["uses_left"] == 3),
        "the unused token came across: {tokens:?}"
    );

    // What the gateway writes lands in PostgreSQL, not in the old file:
    // a restart on a fresh SQLite file would not know this job.
    lab.stop_gateway(false);
    std::fs::remove_file(lab.gw_home.join("state.db")).unwrap();
    lab.start_gateway();
    assert_eq!(lab.job(newest)["exit_code"], 3);
    lab.wait_node("worker-pg", "connected", T);

    // The SQLite snapshot command says how to back up instead.
    let out = lab.admin(&["gateway", "backup", lab.dir().join("b").to_str().unwrap()]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("pg_dump"), "{}", out.stderr);

    // A second migration is refused: the state already lives there.
    lab.stop_gateway(false);
    let out = lab.admin(&["gateway", "migrate-state", "--to", &url]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("already keeps its state"),
        "{}",
        out.stderr
    );
}

#[test]
fn migrate_state_refuses_a_full_database_a_password_in_the_url_and_a_dead_server() {
    let Some(pg) = testpg::shared("state test: migrate-state refusals") else {
        return;
    };
    let url = pg.database().unwrap();
    // Fill the database from one gateway, then try another into it.
    let mut one = Lab::new(BIN);
    let out = one.admin(&["gateway", "migrate-state", "--to", &url]);
    assert_eq!(out.code, 0, "{out:?}");
    let two = Lab::new(BIN);
    let out = two.admin(&["gateway", "migrate-state", "--to", &url]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("migrate into an empty database"),
        "{}",
        out.stderr
    );
    let cfg = std::fs::read_to_string(two.gw_home.join("gateway.toml")).unwrap();
    assert!(
        cfg.contains("url = \"\""),
        "a refused migration leaves the config: {cfg}"
    );

    let out = two.admin(&[
        "gateway",
        "migrate-state",
        "--to",
        "postgres://openclaw:hunter2@127.0.0.1:1/x",
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("PGPASSWORD"), "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);

    let out = two.admin(&[
        "gateway",
        "migrate-state",
        "--to",
        "postgres://openclaw@127.0.0.1:1/x",
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("cannot connect to PostgreSQL at postgres://openclaw@127.0.0.1:1/x"),
        "{}",
        out.stderr
    );
    // The first gateway starts on its migrated state.
    one.start_gateway();
    assert_eq!(one.admin(&["whoami"]).code, 0);
}

#[test]
fn init_with_state_and_join_share_one_ca_and_refuse_what_they_must() {
    let Some(pg) = testpg::shared("state test: init --state and join") else {
        return;
    };
    let url = pg.database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = |n: &str| dir.path().join(n);
    let cli = |h: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("--home")
            .arg(h)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = cli(
        &home("first"),
        &[
            "gateway",
            "init",
            "--state",
            &url,
            "--name",
            "first",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let cfg = std::fs::read_to_string(home("first").join("gateway.toml")).unwrap();
    assert!(cfg.contains(&format!("url = \"{url}\"")), "{cfg}");
    assert!(!home("first").join("state.db").exists(), "no SQLite file");
    // A second first gateway for the same database is refused.
    let (code, _, err) = cli(
        &home("again"),
        &[
            "gateway",
            "init",
            "--state",
            &url,
            "--name",
            "again",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("gateway join"), "{err}");
    assert!(!home("again").join("ca.key").exists(), "nothing written");
    // join: needs --state, the CA, and a name of its own.
    let (code, _, err) = cli(
        &home("second"),
        &[
            "gateway",
            "join",
            "--name",
            "second",
            "--ca-from",
            home("first").to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--state"), "{err}");
    let (code, _, err) = cli(
        &home("second"),
        &[
            "gateway",
            "join",
            "--state",
            &url,
            "--name",
            "second",
            "--ca-from",
            home("nowhere").to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("--ca-from names the first gateway's home"),
        "{err}"
    );
    let (code, _, err) = cli(
        &home("second"),
        &[
            "gateway",
            "join",
            "--state",
            &url,
            "--name",
            "first",
            "--ca-from",
            home("first").to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("already serves this state"), "{err}");
    let (code, out, err) = cli(
        &home("second"),
        &[
            "gateway",
            "join",
            "--state",
            &url,
            "--name",
            "second",
            "--listen",
            "127.0.0.1:0",
            "--ca-from",
            home("first").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("standby"), "{out}");
    assert_eq!(
        std::fs::read(home("first").join("ca.crt")).unwrap(),
        std::fs::read(home("second").join("ca.crt")).unwrap(),
        "one CA"
    );
    assert_ne!(
        std::fs::read(home("first").join("gateway.crt")).unwrap(),
        std::fs::read(home("second").join("gateway.crt")).unwrap(),
        "a server certificate of its own"
    );
    // status reads the database: two gateways, nobody leads yet.
    let (code, out, err) = cli(&home("second"), &["gateway", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["engine"], "postgres", "{st}");
    assert_eq!(st["leader"], serde_json::Value::Null, "{st}");
    assert_eq!(st["gateways"].as_array().unwrap().len(), 2, "{st}");
    assert!(
        st["gateways"][0]["seen_secs_ago"].is_null(),
        "never ran: {st}"
    );
    let (code, out, _) = cli(&home("first"), &["gateway", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("leader:     none yet"), "{out}");
}
