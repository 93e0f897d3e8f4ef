//! The engines behind a store (SQLite, PostgreSQL) and the database
//! thread that runs queued operations in group commits. With
//! [`super::sql`], the only place that knows how the engines differ.

use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::{Counts, Deliver, MAX_BATCH, StoreError, Tx, Work, i, sql};

/// The leader lease generation a fenced store's transactions must still
/// hold (0: not fenced). Shared by every handle and the database thread.
#[derive(Default)]
pub(super) struct Fence(pub(super) std::sync::atomic::AtomicU64);

/// The engine behind a [`Store`].
pub(super) enum Engine {
    /// Embedded SQLite: one connection, shared by the database thread and
    /// blocking callers under a mutex.
    Lite(Mutex<Connection>),
    /// PostgreSQL, for gateways that share state: a pool that replaces
    /// broken connections. Every transaction first takes one advisory
    /// transaction lock, so transactions run one at a time across every
    /// gateway on the database, as they do in SQLite, and the store's
    /// read-check-write steps need no stronger isolation.
    Pg(Pg),
}

/// PostgreSQL: the async client's pool and the small runtime that drives
/// its connections. The store's closures stay synchronous (as SQLite's
/// are, and the group commit needs): the database thread and blocking
/// callers wait on each statement through the runtime's handle
/// ([`tokio::runtime::Handle::block_on`], allowed on any thread that is not
/// an async worker), while the connections' I/O runs on the runtime's
/// worker threads.
pub(super) struct Pg {
    /// The connections (dropped first: each stops its connection task).
    pub(super) pool: deadpool_postgres::Pool,
    /// What drives them.
    pub(super) rt: PgRuntime,
    /// The lease generation this store's transactions must still hold.
    pub(super) fence: Fence,
}

/// The runtime of a PostgreSQL store: two worker threads, `openclaw-pg`.
/// Two, not one: with one, every statement of every caller waited for that
/// one thread to be scheduled, and eight callers' p99 on a busy 2-core
/// machine was worse than the blocking client's (docs/PERFORMANCE.md).
pub(super) struct PgRuntime {
    handle: tokio::runtime::Handle,
    rt: Option<tokio::runtime::Runtime>,
}

impl PgRuntime {
    fn new() -> Result<PgRuntime, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("openclaw-pg")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Stopped(format!("cannot start the PostgreSQL client's runtime: {e}"))
            })?;
        Ok(PgRuntime {
            handle: rt.handle().clone(),
            rt: Some(rt),
        })
    }

    /// Where statements are driven from.
    pub(super) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for PgRuntime {
    /// Without waiting for its worker, so that the last store handle may
    /// be dropped anywhere, an async task included.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The advisory lock key every state transaction takes on PostgreSQL
/// ("openclaw" in ASCII, truncated to fit a bigint).
pub(super) const PG_STATE_LOCK: i64 = 0x6f70_656e_636c_6177;

/// How to reach a PostgreSQL state database.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://USER@HOST:PORT/DB[?sslmode=…]`, without a password.
    pub url: String,
    /// The password, from `PGPASSWORD` or a file; never from the URL.
    pub password: Option<String>,
    /// PEM certificates of the CA that signed the database server's
    /// certificate; with it, the connection uses TLS (`sslmode=require`
    /// unless the URL asks for `prefer`).
    pub ca_pem: Option<Vec<u8>>,
    /// Most connections the pool holds.
    pub pool_size: u32,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &proto::redact::url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("tls", &self.ca_pem.is_some())
            .finish()
    }
}

pub(super) fn lock(conn: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>, StoreError> {
    conn.lock()
        .map_err(|_| StoreError::Stopped("lock poisoned; restart the gateway".into()))
}

impl Engine {
    /// Runs `f` with a new transaction; `f` commits it (dropping it rolls
    /// back). `immediate`: SQLite takes its write lock at the start.
    pub(super) fn with_tx<R>(
        &self,
        immediate: bool,
        f: impl FnOnce(Tx<'_>) -> R,
    ) -> Result<R, StoreError> {
        match self {
            Engine::Lite(conn) => {
                let mut conn = lock(conn)?;
                let tx = if immediate {
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?
                } else {
                    conn.transaction()?
                };
                Ok(f(Tx(sql::Conn::Lite(tx))))
            }
            Engine::Pg(pg) => {
                let rt = pg.rt.handle();
                let mut conn = rt.block_on(pg.pool.get()).map_err(no_connection)?;
                let tx = rt.block_on(async {
                    let tx = pg_locked_tx(&mut conn).await?;
                    let mine = pg.fence.0.load(std::sync::atomic::Ordering::Acquire);
                    // Fencing: under the lock every takeover also takes, a
                    // transaction of a leader whose lease was taken over
                    // sees the newer generation and writes nothing. A
                    // statement of its own, after the lock: one statement
                    // that also took the lock would read with a snapshot
                    // from before the wait.
                    if mine != 0 {
                        let now: Option<i64> = tx
                            .query_opt("SELECT generation FROM leader_lease WHERE id = 1", &[])
                            .await?
                            .map(|r| r.try_get(0))
                            .transpose()?;
                        if now != Some(i(mine)) {
                            return Err(StoreError::Fenced { mine, now });
                        }
                    }
                    Ok(tx)
                })?;
                Ok(f(Tx(sql::Conn::Pg(sql::PgTx { tx, rt }))))
            }
        }
    }
}

/// A pool that could not hand out a connection.
pub(super) fn no_connection(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: no connection: {e}"))
}

/// How long a transaction holding the state lock may sit idle between two
/// statements before the server ends its session (and so its lock and
/// everything it wrote). Transactions here run their statements back to
/// back; one idle this long belongs to a gateway that was stopped
/// (SIGSTOP, a frozen VM) or cut off in the middle, whose lease has long
/// lapsed (`state.lease_ttl`, 3 s by default). Without it, its lock held
/// every other gateway's lease attempt until TCP gave up, hours later.
pub(super) const PG_IDLE_IN_TRANSACTION: std::time::Duration = std::time::Duration::from_secs(10);

/// A transaction holding the state lock, which every state transaction,
/// lease attempt and migration takes first (see [`Engine::Pg`]); the
/// server ends it if it idles past [`PG_IDLE_IN_TRANSACTION`].
pub(super) async fn pg_locked_tx(
    conn: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    let tx = conn.transaction().await?;
    // One round trip, as the lock alone took; constants only, no input.
    tx.batch_execute(&format!(
        "SET LOCAL idle_in_transaction_session_timeout = {}; SELECT pg_advisory_xact_lock({PG_STATE_LOCK})",
        PG_IDLE_IN_TRANSACTION.as_millis()
    ))
    .await?;
    Ok(tx)
}

pub(super) fn pg_unreachable(opts: &PgOptions, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!(
        "cannot connect to PostgreSQL at {}: {e}; check that the server runs and accepts this user \
         (PGPASSWORD or [state] password_file), then start the gateway again",
        proto::redact::url(&opts.url)
    ))
}

impl Pg {
    /// Checks `opts`, starts the runtime and the pool, and connects once
    /// (failing at once, naming the server, when that fails) to run the
    /// migrations. Blocks: never call it on an async worker.
    pub(super) fn connect(opts: &PgOptions) -> Result<Pg, StoreError> {
        let mut config: tokio_postgres::Config = opts.url.parse().map_err(|e| {
            StoreError::Config(format!(
                "[state] url {:?}: {e}; expected postgres://USER@HOST:PORT/DB[?sslmode=...]",
                proto::redact::url(&opts.url)
            ))
        })?;
        if config.get_password().is_some() {
            return Err(StoreError::Config(
                "[state] url carries a password; remove it and set PGPASSWORD or [state] password_file"
                    .into(),
            ));
        }
        if let Some(p) = &opts.password {
            config.password(p);
        }
        let tls = tls(opts, &mut config)?;
        config.connect_timeout(std::time::Duration::from_secs(5));
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tokio_postgres_rustls::MakeRustlsConnect::new(tls),
            deadpool_postgres::ManagerConfig {
                // A connection whose server or socket went away is closed
                // by its connection task, and replaced when next handed
                // out; a live one costs no test query.
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let wait = Some(std::time::Duration::from_secs(5));
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(usize::try_from(opts.pool_size.max(1)).unwrap_or(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(wait)
            .create_timeout(wait)
            .recycle_timeout(wait)
            .build()
            .map_err(|e| StoreError::Config(format!("the PostgreSQL pool: {e}")))?;
        let rt = PgRuntime::new()?;
        rt.handle().block_on(async {
            let mut conn = pool.get().await.map_err(|e| pg_unreachable(opts, &e))?;
            super::schema::migrate_pg(&mut conn).await
        })?;
        Ok(Pg {
            pool,
            rt,
            fence: Fence::default(),
        })
    }
}

/// The TLS settings for `config`: rustls (ring) with `opts.ca_pem` as the
/// only roots; without a CA, no TLS, and a URL that asks for it is refused.
fn tls(
    opts: &PgOptions,
    config: &mut tokio_postgres::Config,
) -> Result<rustls::ClientConfig, StoreError> {
    use tokio_postgres::config::SslMode;
    let mut roots = rustls::RootCertStore::empty();
    match &opts.ca_pem {
        Some(pem) => {
            use rustls::pki_types::{CertificateDer, pem::PemObject as _};
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| StoreError::Config(format!("[state] ca_file: bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| StoreError::Config(format!("[state] ca_file: {e}")))?;
            }
            if roots.is_empty() {
                return Err(StoreError::Config(
                    "[state] ca_file holds no certificate".into(),
                ));
            }
            if config.get_ssl_mode() == SslMode::Prefer {
                config.ssl_mode(SslMode::Require);
            }
        }
        None => match config.get_ssl_mode() {
            SslMode::Disable => {}
            SslMode::Prefer => {
                config.ssl_mode(SslMode::Disable);
            }
            _ => {
                return Err(StoreError::Config(
                    "[state] url asks for TLS; set [state] ca_file to the PEM of the CA that signed the database's certificate".into(),
                ));
            }
        },
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Config(format!("TLS to PostgreSQL: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// The database thread: runs queued closures in batches until every
/// [`Store`] handle is gone.
pub(super) fn serve(engine: &Engine, mut rx: mpsc::Receiver<Work>, counts: &Counts) {
    let mut batch: Vec<Work> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        counts
            .calls
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        counts
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = engine.with_tx(true, |tx| run_batch(tx, &mut batch)) {
            tracing::error!("state database: cannot begin a transaction: {e}");
            for work in batch.drain(..) {
                let (_, deliver) = work(None);
                deliver(Err(e.clone()));
            }
        }
    }
}

pub(super) fn run_batch(tx: Tx<'_>, batch: &mut Vec<Work>) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut queue = batch.drain(..);
    while let Some(work) = queue.next() {
        if let Err(e) = tx.0.batch("SAVEPOINT op") {
            let (_, deliver) = work(None);
            deliver(Err(e));
            continue;
        }
        let (keep, deliver) = work(Some(&tx));
        let end = if keep {
            "RELEASE op"
        } else {
            "ROLLBACK TO op; RELEASE op"
        };
        match tx.0.batch(end) {
            Ok(()) => replies.push(deliver),
            // The savepoint could not be closed: nothing in this
            // transaction can be trusted, so none of it is committed.
            Err(e) => {
                deliver(Err(e.clone()));
                // The operations not run yet hear it too, not silence.
                for rest in queue {
                    let (_, d) = rest(None);
                    replies.push(d);
                }
                fail_all(tx, replies, &e);
                return;
            }
        }
    }
    let committed = tx.0.commit();
    if let Err(e) = &committed {
        tracing::error!("state database: commit failed: {e}");
    }
    for deliver in replies {
        deliver(committed.as_ref().map(|_| ()).map_err(StoreError::clone));
    }
}

pub(super) fn fail_all(tx: Tx<'_>, replies: Vec<Deliver>, why: &StoreError) {
    tracing::error!("state database: {why}; rolling back the batch");
    drop(tx);
    for deliver in replies {
        deliver(Err(why.clone()));
    }
}
