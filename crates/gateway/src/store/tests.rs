use super::schema::MIGRATIONS;
use super::testing::{Case, engines};
use super::*;
use std::time::Duration;

fn node(name: &str) -> NodeRow {
    NodeRow {
        labels: vec!["gpu".into()],
        spki: vec![1, 2, 3],
        request_addr: "127.0.0.1:1".into(),
        token_id: "abcdef".into(),
        ..NodeRow::for_test(name, NodeState::Pending, "SHA256:x", 100)
    }
}

#[test]
fn migrate_is_idempotent_and_every_column_is_commented() {
    // Every column line in every CREATE TABLE carries a comment.
    for sql in MIGRATIONS {
        for line in sql
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != ");")
        {
            assert!(line.contains("--"), "uncommented schema line: {line}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    drop(Store::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, MIGRATIONS.len() as i64);
    // PostgreSQL: the same version, and every column carries its
    // comment as a COMMENT ON.
    let Some(server) = testpg::shared("store migrations on PostgreSQL") else {
        return;
    };
    let url = server.database().unwrap();
    drop(Store::open_postgres(&testing::pg(&url)).unwrap());
    drop(Store::open_postgres(&testing::pg(&url)).unwrap());
    let one = |sql: &str| -> Vec<String> {
        testpg::rows(&url, sql)
            .unwrap()
            .into_iter()
            .map(|r| r.into_iter().next().flatten().unwrap_or_default())
            .collect()
    };
    let v = one("SELECT version FROM schema_version");
    assert_eq!(v, [MIGRATIONS.len().to_string()]);
    let bare = one("SELECT c.relname || '.' || a.attname FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped \
         AND col_description(c.oid, a.attnum) IS NULL");
    assert!(bare.is_empty(), "columns without a comment: {bare:?}");
    let tables: i64 = one(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' \
         AND obj_description(c.oid, 'pg_class') IS NOT NULL",
    )[0]
    .parse()
    .unwrap();
    assert!(tables >= 10, "only {tables} tables carry a comment");
}

/// The gateway's SQLite connection caps its page cache below SQLite's
/// default: the default 2,000 KiB took the hour soak over an hour to
/// fill, growing the gateway all along (`SQLITE_CACHE_KIB`).
#[test]
fn the_sqlite_page_cache_is_capped_at_its_small_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    let rows = store.tx(|tx| tx.0.query("PRAGMA cache_size", &[])).unwrap();
    let kib: i64 = rows.first().unwrap().get(0).unwrap();
    assert_eq!(kib, -SQLITE_CACHE_KIB, "negative: KiB");
}

#[test]
fn nodes_round_trip_and_expire() {
    for Case { engine, store, .. } in engines("store test nodes_round_trip_and_expire") {
        store
            .tx(|tx| {
                tx.put_node(&node("a"))?;
                let mut b = node("b");
                b.requested_at = 500;
                tx.put_node(&b)?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let expired = store.tx(|tx| tx.expire_pending(200)).unwrap();
        assert_eq!(expired, vec!["a".to_string()], "{engine}");
        let b = store.tx(|tx| tx.node_by_request("req-b")).unwrap().unwrap();
        assert_eq!(b.labels, vec!["gpu".to_string()], "{engine}");
        assert_eq!(b.state, NodeState::Pending, "{engine}");
        assert_eq!(store.tx(|tx| tx.pending_count()).unwrap(), 1, "{engine}");
    }
}

fn token(id: &str) -> TokenRow {
    TokenRow {
        id: id.into(),
        secret_hash: vec![0; 32],
        created_at: 1,
        expires_at: 2,
        uses_total: 1,
        uses_left: 1,
        labels: vec![],
        auto_approve: false,
        revoked: false,
        max_gpus: None,
    }
}

/// Ids of the stored tokens, sorted.
async fn token_ids(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .call(|tx| tx.tokens())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_commit_together_and_a_failure_undoes_only_its_own_writes() {
    for case in engines("store test queued_calls_commit_together") {
        let store = case.store.clone();
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..300u32 {
            let s = store.clone();
            calls.spawn(async move {
                s.call(move |tx| {
                    tx.insert_token(&token(&format!("t{i}")))?;
                    if i % 3 == 0 {
                        // Written, then refused: its savepoint is undone.
                        return Err(StoreError::Refused(format!("refused {i}")));
                    }
                    Ok(i)
                })
                .await
            });
        }
        let mut ok = 0;
        while let Some(r) = calls.join_next().await {
            match r.unwrap() {
                Ok(i) => {
                    assert_ne!(i % 3, 0);
                    ok += 1;
                }
                Err(e) => assert!(
                    matches!(&e, StoreError::Refused(m) if m.starts_with("refused")),
                    "{}: {e}",
                    case.engine
                ),
            }
        }
        assert_eq!(ok, 200);
        let ids = token_ids(&store).await;
        let mut want: Vec<String> = (0..300u32)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("t{i}"))
            .collect();
        want.sort();
        assert_eq!(ids, want, "{}", case.engine);
        // What a call returned is durable: a second connection sees it.
        drop(store);
        let again = case.reopen();
        assert_eq!(again.call(|tx| tx.tokens()).await.unwrap().len(), 200);
    }
}

#[tokio::test]
async fn a_panicking_call_fails_alone_and_the_thread_goes_on() {
    for Case { engine, store, .. } in engines("store test a_panicking_call_fails_alone") {
        let s = store.clone();
        let first = tokio::spawn(async move {
            s.call(|tx| -> Result<(), StoreError> {
                tx.insert_token(&token("boom"))?;
                panic!("a bug in a closure");
            })
            .await
        });
        let err = first.await.unwrap().unwrap_err();
        assert!(
            matches!(&err, StoreError::Stopped(m) if m.contains("panicked")),
            "{engine}: {err}"
        );
        store
            .call(|tx| tx.insert_token(&token("after")))
            .await
            .unwrap();
        assert_eq!(
            token_ids(&store).await,
            vec!["after".to_string()],
            "{engine}"
        );
    }
}

#[test]
fn a_failed_statement_undoes_only_its_own_call_on_both_engines() {
    // PostgreSQL aborts the whole transaction on an error; the batch's
    // savepoints must bring it back so the next closure still runs.
    for Case { engine, store, .. } in engines("store test a_failed_statement") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = store.clone();
            let (a, b) = tokio::join!(
                s.call(|tx| {
                    tx.insert_token(&token("dup"))?;
                    tx.insert_token(&token("dup"))
                }),
                store.call(|tx| tx.insert_token(&token("fine")))
            );
            assert!(a.is_err(), "{engine}: a duplicate key must fail");
            b.unwrap();
            assert_eq!(
                token_ids(&store).await,
                vec!["fine".to_string()],
                "{engine}"
            );
        });
    }
}

#[test]
fn every_table_round_trips_on_both_engines() {
    for Case { engine, store, .. } in engines("store test every_table_round_trips") {
        let cert = pki::IssuedCert {
            pem: String::new(),
            der: vec![9, 9],
            serial: "0a".into(),
            not_after: 99,
            fingerprint: "SHA256:y".into(),
            ca_pin: "pin".into(),
        };
        store
            .tx(|tx| {
                let mut t = token("tok1");
                t.labels = vec!["gpu".into(), "a=b".into()];
                t.max_gpus = Some(4);
                t.auto_approve = true;
                tx.insert_token(&t)?;
                tx.use_token("tok1")?;
                assert!(tx.revoke_token("tok1")?);
                assert!(!tx.revoke_token("nope")?);
                let got = tx.token("tok1")?.unwrap();
                assert_eq!(
                    (got.uses_left, got.revoked, got.auto_approve, got.max_gpus),
                    (0, true, true, Some(4))
                );
                assert_eq!(got.labels, vec!["gpu".to_string(), "a=b".to_string()]);
                assert!(tx.token("none")?.is_none());
                for name in ["w-10", "w-9", "w-1"] {
                    tx.put_node(&node(name))?;
                }
                tx.move_node("w-1", NodeState::Pending, NodeState::Approved, 5, "admin")?;
                tx.set_node_cert("w-1", &cert)?;
                tx.set_node_facts("w-1", &["gpu".into()], &["x".into()], Some(2))?;
                tx.node_seen("w-1", 7, "127.0.0.1:9")?;
                tx.record_issued("w-1", proto::Role::Node, &cert, 5)?;
                let n = tx.node("w-1")?.unwrap();
                assert_eq!(n.state, NodeState::Approved);
                assert_eq!(n.cert_der, Some(vec![9, 9]));
                assert_eq!((n.last_seen, n.max_gpus), (Some(7), Some(2)));
                assert_eq!(n.proposed_labels, vec!["x".to_string()]);
                // Bytewise order on both engines, and pages agree with it.
                let names: Vec<String> = tx.nodes()?.into_iter().map(|n| n.name).collect();
                assert_eq!(names, ["w-1", "w-10", "w-9"]);
                let page: Vec<String> = tx
                    .nodes_page(Some("w-1"), 1)?
                    .into_iter()
                    .map(|n| n.name)
                    .collect();
                assert_eq!(page, ["w-10"]);
                // A new request replaces a node row whole.
                let mut again = node("w-1");
                again.request_id = "req-again".into();
                tx.put_node(&again)?;
                let n = tx.node("w-1")?.unwrap();
                assert_eq!((n.state, n.cert_der), (NodeState::Pending, None));
                tx.revoke_serial("0a", "w-1", 8)?;
                tx.revoke_serial("0a", "w-1", 9)?;
                assert_eq!(tx.revoked_serials()?, vec!["0a".to_string()]);
                tx.put_client(&ClientRow {
                    name: "bot1".into(),
                    role: proto::Role::Bot,
                    namespace: Some("slack:T1".into()),
                    state: ClientState::Active,
                    cert_serial: "0b".into(),
                    not_after: 50,
                    created_at: 1,
                    created_by: "admin".into(),
                })?;
                tx.renew_client("bot1", "0c", 60)?;
                let (nodes, clients) = tx.not_on_ca("pin")?;
                assert!(nodes.is_empty(), "{nodes:?}");
                assert_eq!(clients, vec!["bot1".to_string()]);
                assert_eq!(tx.client_serials_not_on_ca("pin")?, vec!["0c".to_string()]);
                tx.revoke_client("bot1", 70)?;
                let c = tx.client("bot1")?.unwrap();
                assert_eq!(
                    (c.state, c.cert_serial.as_str()),
                    (ClientState::Revoked, "0c")
                );
                assert_eq!(tx.clients()?.len(), 1);
                tx.audit(1, "admin", "node.approve", "w-1", "it's fine")?;
                assert_eq!(tx.prune_audit(2)?, 1);
                tx.put_idempotency("bot1", "slack:E1", 42, 10)?;
                assert_eq!(tx.idempotent_job("bot1", "slack:E1")?, Some(42));
                assert_eq!(tx.idempotent_job("bot1", "slack:E2")?, None);
                assert_eq!(tx.prune_idempotency(11)?, 1);
                Ok::<_, StoreError>(())
            })
            .unwrap_or_else(|e| panic!("{engine}: {e}"));
        let jobs = store
            .tx(|tx| {
                let plan = proto::JobPlan {
                    job_id: 0,
                    node: "w-1".into(),
                    argv: vec!["echo".into(), "hi".into()],
                    cwd: None,
                    env: vec![("K".into(), "v".into())],
                    timeout_secs: Some(5),
                    gpus: 1,
                    kill_grace_secs: 1,
                    run_as: None,
                };
                let mut row = JobRow::fresh(
                    JobState::AwaitingApproval,
                    "w-1".into(),
                    Some("gpu".into()),
                    None,
                    plan,
                    "alice".into(),
                    "admin".into(),
                    3,
                );
                row.approvers = vec!["bob".into()];
                row.id = tx.insert_job(&row)?;
                let second = tx.insert_job(&row)?;
                assert!(second > row.id);
                row.state = JobState::Starting;
                row.approved_by = Some("bob".into());
                assert!(tx.move_job(&row, JobState::AwaitingApproval)?);
                assert!(
                    !tx.move_job(&row, JobState::AwaitingApproval)?,
                    "moved twice"
                );
                tx.set_job_bytes(row.id, 10, 2, true)?;
                let got = tx.job(row.id)?.unwrap();
                assert_eq!(got.state, JobState::Starting);
                assert_eq!(
                    (got.stdout_bytes, got.stderr_bytes, got.truncated),
                    (10, 2, true)
                );
                assert_eq!(got.plan.argv, vec!["echo".to_string(), "hi".to_string()]);
                assert_eq!(tx.jobs(10, None)?.len(), 2);
                assert_eq!(tx.jobs(10, Some(second))?.len(), 1);
                assert_eq!(tx.unfinished_jobs()?.len(), 2);
                let counts = tx.job_counts()?;
                assert_eq!(
                    counts,
                    vec![
                        ("awaiting-approval".to_string(), 1),
                        ("starting".to_string(), 1)
                    ]
                );
                Ok::<_, StoreError>(tx.jobs(10, None)?.len())
            })
            .unwrap_or_else(|e| panic!("{engine}: {e}"));
        assert_eq!(jobs, 2);
    }
}

#[test]
fn a_leader_whose_lease_was_taken_over_is_fenced_and_writes_nothing() {
    let Some(server) = testpg::shared("store test: lease and fencing") else {
        return;
    };
    let url = server.database().unwrap();
    let a = Store::open_postgres(&testing::pg(&url)).unwrap();
    let b = Store::open_postgres(&testing::pg(&url)).unwrap();
    let ttl = Duration::from_millis(300);
    // The lease is async (ha.rs waits on it with a timeout); a runtime
    // without I/O of its own is enough to wait for it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let lease = |s: &Store, who: &str| rt.block_on(s.take_lease(who, ttl));
    let g1 = lease(&a, "gw-a").unwrap().expect("a free lease");
    a.fence(g1);
    let left = lease(&b, "gw-b").unwrap().expect_err("a's lease runs");
    assert!(
        left > 0 && left <= 300,
        "a's lease has {left} ms left of 300"
    );
    assert_eq!(lease(&a, "gw-a").unwrap(), Ok(g1), "renewing keeps it");
    a.tx(|tx| tx.insert_token(&token("by-a"))).unwrap();
    // a stops renewing (paused, cut off); its lease lapses (by the
    // database's clock), and b takes over.
    let mut tries = 0;
    let g2 = loop {
        if let Ok(g) = lease(&b, "gw-b").unwrap() {
            break g;
        }
        tries += 1;
        assert!(tries < 500, "the lease never lapsed (10 s)");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(g2, g1 + 1, "a takeover makes a new generation");
    b.fence(g2);
    // a wakes: its writes are refused, blocking or queued, and a
    // renewal does not win the lease back while b holds it.
    let e = a.tx(|tx| tx.insert_token(&token("stale-1"))).unwrap_err();
    assert!(
        matches!(e, StoreError::Fenced { mine, now: Some(now) } if mine == g1 && now == i64::try_from(g2).unwrap()),
        "{e:?}"
    );
    assert!(e.to_string().contains("no longer the leader"), "{e}");
    let e = rt
        .block_on(a.call(|tx| tx.insert_token(&token("stale-2"))))
        .unwrap_err();
    assert!(matches!(e, StoreError::Fenced { .. }), "{e:?}");
    assert!(lease(&a, "gw-a").unwrap().is_err());
    b.tx(|tx| tx.insert_token(&token("by-b"))).unwrap();
    let mut ids: Vec<String> = b
        .tx(|tx| tx.tokens())
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["by-a", "by-b"], "not one write of the stale leader");
    // SQLite has no lease: saying so beats pretending to lead.
    let dir = tempfile::tempdir().unwrap();
    let lite = Store::open(&dir.path().join("s.db")).unwrap();
    let e = lease(&lite, "gw").unwrap_err();
    assert!(
        matches!(&e, StoreError::Refused(m) if m.contains("PostgreSQL")),
        "{e:?}"
    );
}

#[test]
fn a_leader_paused_inside_a_transaction_does_not_hold_the_state_lock_for_ever() {
    // Every state transaction and lease attempt takes one advisory lock.
    // A leader stopped (SIGSTOP, a frozen VM, a cut network) between two
    // statements of a transaction holds it while the server sees an idle
    // session: without a bound, no standby could ever take the lease.
    let Some(server) = testpg::shared("store test: a transaction paused with the lock") else {
        return;
    };
    let url = server.database().unwrap();
    let a = Store::open_postgres(&testing::pg(&url)).unwrap();
    let b = Store::open_postgres(&testing::pg(&url)).unwrap();
    let (paused_tx, paused) = std::sync::mpsc::channel();
    let (wake, woken) = std::sync::mpsc::channel::<()>();
    let stale = std::thread::spawn(move || {
        a.tx(|tx| {
            tx.insert_token(&token("written-then-paused"))?;
            paused_tx.send(()).unwrap();
            let _ = woken.recv_timeout(Duration::from_secs(120));
            tx.insert_token(&token("after-waking"))
        })
    });
    paused.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let took = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(60),
            b.take_lease("gw-b", Duration::from_secs(3)),
        )
        .await
    });
    wake.send(()).unwrap();
    let woke = stale.join().unwrap();
    assert!(
        matches!(took, Ok(Ok(Ok(1)))),
        "the standby never got the state lock from a paused transaction: {took:?}"
    );
    assert!(woke.is_err(), "the paused transaction committed: {woke:?}");
    let ids: Vec<String> = b
        .tx(|tx| tx.tokens())
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert!(ids.is_empty(), "the paused leader wrote: {ids:?}");
}

#[test]
fn a_leader_whose_lease_lapsed_does_not_renew_it_under_a_new_generation() {
    // A leader paused (or its database slow) past its lease renewed it on
    // waking as a takeover: a new generation it would not serve (the
    // keeper steps down on seeing it), which kept the standby out for a
    // whole lease more. Found by the fault test (tests/it/faults.rs).
    let Some(server) = testpg::shared("store test: a lapsed lease is not renewed") else {
        return;
    };
    let url = server.database().unwrap();
    let a = Store::open_postgres(&testing::pg(&url)).unwrap();
    let b = Store::open_postgres(&testing::pg(&url)).unwrap();
    let ttl = Duration::from_millis(200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let g1 = rt.block_on(a.take_lease("gw-a", ttl)).unwrap().unwrap();
    assert_eq!(rt.block_on(a.renew_lease("gw-a", g1, ttl)).unwrap(), Ok(g1));
    // a misses its renewals until the lease lapses by the database's clock.
    let lapsed = || {
        a.lease()
            .unwrap()
            .is_some_and(|(_, _, left)| left <= 0)
            .then_some(())
    };
    let mut tries = 0;
    while lapsed().is_none() {
        tries += 1;
        assert!(tries < 500, "the lease never lapsed (10 s)");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        rt.block_on(a.renew_lease("gw-a", g1, ttl)).unwrap(),
        Err(0),
        "a lapsed lease is not renewed"
    );
    let (holder, generation, left) = a.lease().unwrap().unwrap();
    assert_eq!(
        (holder.as_str(), generation),
        ("gw-a", g1),
        "nothing written"
    );
    assert!(left <= 0, "still lapsed: {left} ms");
    // The standby takes it at once, with the next generation.
    let g2 = rt.block_on(b.take_lease("gw-b", ttl)).unwrap().unwrap();
    assert_eq!(g2, g1 + 1);
    // a renewal of an old generation finds the new holder's.
    let left = rt
        .block_on(a.renew_lease("gw-a", g1, ttl))
        .unwrap()
        .unwrap_err();
    assert!(left > 0, "{left}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Store::open(&path).err().unwrap().to_string();
    assert!(err.contains("upgrade openclaw"), "{err}");
    let Some(server) = testpg::shared("store test newer_schema_is_refused") else {
        return;
    };
    let url = server.database().unwrap();
    drop(Store::open_postgres(&testing::pg(&url)).unwrap());
    testpg::rows(&url, "UPDATE schema_version SET version = 99").unwrap();
    let err = Store::open_postgres(&testing::pg(&url))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("upgrade openclaw"), "{err}");
}

#[test]
fn tls_to_postgres_is_verified_against_the_given_ca() {
    if testpg::shared("store test: TLS to PostgreSQL").is_none() {
        return;
    }
    let ca = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::new(p, key);
        (cert.pem(), issuer)
    };
    let (ca_pem, issuer) = ca("test database CA");
    let (other_pem, _) = ca("someone else's CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    let server = testpg::Server::start_tls(&cert.pem(), &key.serialize_pem()).unwrap();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        server.port
    );
    let mut o = testing::pg(&url);
    o.ca_pem = Some(ca_pem.into_bytes());
    let store = Store::open_postgres(&o).unwrap();
    let ssl: i64 = store
        .tx(|tx| {
            tx.one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                params![],
            )?
            .map_or(Ok(0), |r| r.get(0))
        })
        .unwrap();
    assert_eq!(ssl, 1, "the connection is TLS");
    // A database whose certificate another CA signed is refused.
    o.ca_pem = Some(other_pem.into_bytes());
    let e = Store::open_postgres(&o).err().unwrap().to_string();
    assert!(e.contains("cannot connect to PostgreSQL"), "{e}");
}

#[test]
fn postgres_settings_are_checked_before_connecting() {
    let bad = |url: &str, ca: Option<&[u8]>| {
        let mut o = testing::pg(url);
        o.ca_pem = ca.map(<[u8]>::to_vec);
        Store::open_postgres(&o).err().unwrap().to_string()
    };
    let e = bad("postgres://u:secret@127.0.0.1:1/db", None);
    assert!(e.contains("PGPASSWORD") && !e.contains("secret"), "{e}");
    let e = bad("postgres://u@127.0.0.1:1/db?sslmode=require", None);
    assert!(e.contains("ca_file"), "{e}");
    let e = bad("postgres://u@127.0.0.1:1/db", Some(b"not pem"));
    assert!(e.contains("ca_file"), "{e}");
    let e = bad("mysql://nope", None);
    assert!(e.contains("[state] url"), "{e}");
    // Nothing listens on port 1: a clear error, not a hang.
    let e = bad("postgres://u@127.0.0.1:1/db", None);
    assert!(e.contains("cannot connect to PostgreSQL at"), "{e}");
}

#[test]
fn a_connection_the_server_cut_is_replaced() {
    let Some(server) = testpg::shared("store test: broken connections") else {
        return;
    };
    let url = server.database().unwrap();
    let store = Store::open_postgres(&testing::pg(&url)).unwrap();
    let backend = |s: &Store| {
        s.tx(|tx| {
            tx.one("SELECT pg_backend_pid()", params![])?
                .map_or(Ok(0), |r| r.get::<_, i64>(0))
        })
    };
    let before = backend(&store).unwrap();
    // The server ends every session on this database (and waits until
    // they are gone), as a restart or an administrator would.
    let db = url.rsplit('/').next().unwrap();
    server
        .sql(&format!(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{db}'"
        ))
        .unwrap();
    // A pooled connection whose socket closed is dropped and a new one
    // made: at worst one failed use per pooled connection (4), never a
    // store that stays broken.
    let mut tries = vec![];
    let after = loop {
        match backend(&store) {
            Ok(pid) => break pid,
            Err(e) if tries.len() < 4 => tries.push(e),
            Err(e) => panic!("still failing after {tries:?}: {e}"),
        }
    };
    assert_ne!(after, before, "a new server session");
    // The database thread's transactions too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut n = 0;
    while let Err(e) = rt.block_on(store.call(move |tx| tx.insert_token(&token(&format!("t{n}")))))
    {
        n += 1;
        assert!(n <= 4, "the database thread still fails: {e}");
    }
}

#[test]
fn job_output_is_stored_exactly_once_without_gaps() {
    let b = |s: &'static [u8]| bytes::Bytes::from_static(s);
    for Case { engine, store, .. } in engines("job output") {
        store
            .tx(|tx| {
                assert_eq!(tx.output_len(7, 0)?, 0, "{engine}");
                assert_eq!(tx.append_output(7, 0, &[(0, b(b"hello "))])?, 6);
                // The same chunk again (a resend after a failover): once.
                assert_eq!(tx.append_output(7, 0, &[(0, b(b"hello "))])?, 6);
                // Overlapping the end: only the new part, contiguous chunks
                // in one row.
                assert_eq!(
                    tx.append_output(7, 0, &[(3, b(b"lo wor")), (9, b(b"ld\n"))])?,
                    12
                );
                // Another stream and job are their own logs.
                assert_eq!(tx.append_output(7, 1, &[(0, b(b"err"))])?, 3);
                assert_eq!(tx.append_output(8, 0, &[(0, b(b"x"))])?, 1);
                let read = |from| -> Result<Vec<u8>, StoreError> {
                    let mut out = Vec::new();
                    for (pos, data) in tx.read_output(7, 0, from)? {
                        let skip = usize::try_from(from.saturating_sub(pos)).unwrap();
                        out.extend_from_slice(&data[skip..]);
                    }
                    Ok(out)
                };
                assert_eq!(read(0)?, b"hello world\n", "{engine}");
                assert_eq!(read(4)?, b"o world\n", "{engine}");
                assert_eq!(read(12)?, b"", "{engine}");
                let mut sizes = tx.output_sizes()?;
                sizes.sort_unstable();
                assert_eq!(sizes, [(7, 15), (8, 1)], "{engine}");
                // Rows of a whole chunk each: a read is one page of them.
                let mb = crate::store::output::MAX_CHUNK;
                for k in 0..6u64 {
                    let chunk = bytes::Bytes::from(vec![b'a' + k as u8; mb]);
                    tx.append_output(9, 0, &[(k * mb as u64, chunk)])?;
                }
                let page = tx.read_output(9, 0, 0)?;
                let offsets: Vec<u64> = page.iter().map(|(p, _)| *p).collect();
                assert_eq!(offsets, [0, 1, 2, 3].map(|k| k * mb as u64), "{engine}");
                assert!(
                    page.iter()
                        .all(|(p, d)| d[0] == b'a' + (*p / mb as u64) as u8)
                );
                let rest = tx.read_output(9, 0, 4 * mb as u64 + 1)?;
                let offsets: Vec<u64> = rest.iter().map(|(p, _)| *p).collect();
                assert_eq!(offsets, [4, 5].map(|k| k * mb as u64), "{engine}");
                tx.delete_output(&[9])?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        // A gap is refused, and nothing of its transaction is kept.
        let gap = store.tx(|tx| {
            tx.append_output(7, 0, &[(12, b(b"ok")), (20, b(b"x"))])
                .map(|_| ())
        });
        assert!(
            matches!(&gap, Err(StoreError::Refused(m)) if m.contains("gap") && m.contains("job 7")),
            "{engine}: {gap:?}"
        );
        store
            .tx(|tx| {
                assert_eq!(tx.output_len(7, 0)?, 12, "{engine}");
                tx.delete_output(&[7])?;
                assert_eq!(tx.output_len(7, 0)?, 0, "{engine}");
                assert_eq!(tx.output_len(8, 0)?, 1, "{engine}");
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
}

#[test]
fn the_fair_share_s_usage_read_skips_jobs_without_gpus() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    // The statement of Tx::gpu_usage_since, as SQLite plans it.
    let plan: Vec<String> = conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            super::usage::GPU_USAGE_SINCE
        ))
        .unwrap()
        .query_map([0], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        plan,
        vec!["SCAN jobs USING INDEX jobs_gpu_usage".to_string()]
    );
}

/// A state database of schema 13 that holds jobs (schema 14 less its
/// index) upgrades in place on both engines: the index is made over the
/// rows already there and the fair share's read finds them.
#[test]
fn schema_13_with_jobs_upgrades_to_14_and_the_usage_read_finds_them() {
    for case in engines("store test schema_13_with_jobs_upgrades_to_14") {
        let engine = case.engine;
        let ids = case
            .store
            .tx(|tx| {
                let mut ids = Vec::new();
                for gpus in [2u32, 0] {
                    let plan = proto::JobPlan {
                        job_id: 0,
                        node: "w-1".into(),
                        argv: vec!["train".into()],
                        cwd: None,
                        env: vec![],
                        timeout_secs: None,
                        gpus,
                        kill_grace_secs: 1,
                        run_as: None,
                    };
                    let mut row = JobRow::fresh(
                        JobState::Starting,
                        "w-1".into(),
                        None,
                        None,
                        plan,
                        "alice".into(),
                        "admin".into(),
                        100,
                    );
                    row.id = tx.insert_job(&row)?;
                    // Started (insert_job keeps no start time).
                    row.state = JobState::Running;
                    row.started_at = Some(110);
                    assert!(tx.move_job(&row, JobState::Starting)?);
                    ids.push(row.id);
                }
                Ok::<_, StoreError>(ids)
            })
            .unwrap_or_else(|e| panic!("{engine}: {e}"));
        drop(case.store);
        let index = match &case.place {
            testing::Place::Lite(dir) => {
                let conn = Connection::open(dir.path().join("s.db")).unwrap();
                conn.execute_batch("DROP INDEX jobs_gpu_usage; PRAGMA user_version = 13;")
                    .unwrap();
                None
            }
            testing::Place::Pg(url) => {
                testpg::rows(
                    url,
                    "DROP INDEX jobs_gpu_usage; UPDATE schema_version SET version = 13",
                )
                .unwrap();
                Some(url.clone())
            }
        };
        let store = match &case.place {
            testing::Place::Lite(dir) => Store::open(&dir.path().join("s.db")).unwrap(),
            testing::Place::Pg(url) => Store::open_postgres(&testing::pg(url)).unwrap(),
        };
        let used = store
            .tx(|tx| tx.gpu_usage_since(0, 200))
            .unwrap_or_else(|e| panic!("{engine}: {e}"));
        let found: Vec<u64> = used.iter().map(|u| u.id).collect();
        assert_eq!(found, vec![ids[0]], "{engine}: the GPU job only");
        if let Some(url) = index {
            let n = testpg::rows(
                &url,
                "SELECT indexname FROM pg_indexes WHERE indexname = 'jobs_gpu_usage'",
            )
            .unwrap();
            assert_eq!(n.len(), 1, "postgres: the index is back");
            let v = testpg::rows(&url, "SELECT version FROM schema_version").unwrap();
            assert_eq!(
                v[0][0].as_deref(),
                Some(MIGRATIONS.len().to_string().as_str())
            );
        }
    }
}
