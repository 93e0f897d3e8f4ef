//! Gateway state in PostgreSQL: `openclaw gateway migrate-state --to
//! postgres://…` moves a gateway's SQLite state into a real PostgreSQL
//! server (started in a temporary directory by `pgtemp`), and the gateway
//! then runs on it: real gateway, real node agent, real QUIC.
//! SKIPPED without PostgreSQL (a failure under .ci/run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use testkit::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);

#[test]
fn a_gateway_moves_its_state_to_postgres_and_keeps_its_nodes_and_jobs() {
    let Some(pg) = pgtemp::shared("state test: migrate to PostgreSQL") else {
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
    let Some(pg) = pgtemp::shared("state test: migrate-state refusals") else {
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
