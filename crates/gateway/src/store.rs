//! The gateway's SQLite state. Only state changes are written here; liveness
//! (heartbeats) stays in memory in [`crate::registry`].
//!
//! No async worker thread ever waits on SQLite. There are two ways in:
//!
//! - [`Store::call`], from async tasks: the closure goes through a bounded
//!   queue to the database thread ([`Store::open`] starts it), which
//!   drains what is queued (up to [`MAX_BATCH`] closures) into one
//!   transaction, each closure in its own savepoint. A closure that fails
//!   rolls back only its own writes, and nobody hears back before the one
//!   commit that covers them all (group commit).
//! - [`Store::tx`], blocking, from code that already runs off the async
//!   workers: API handlers (run on the blocking pool by
//!   [`crate::off_runtime`]), the log writer thread and startup. Debug
//!   builds assert that it is not called on an async worker.
//!
//! Migrations are keyed on `PRAGMA user_version`. Every table and column
//! carries a comment in its `CREATE` statement, which SQLite keeps in
//! `sqlite_master`, so `.schema` documents itself.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use rusqlite::Connection;

mod artifacts;
mod clients;
mod engine;
mod jobs;
mod lease;
mod nodes;
mod output;
mod schema;
mod sql;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use engine::{Engine, Pg, serve};
use schema::migrate;
use sql::params;

pub use artifacts::ArtifactState;
pub use clients::{ClientRow, ClientState};
pub use engine::PgOptions;
pub use jobs::{FanRow, JobRow, JobState, encode_plan};
pub use nodes::{NodeRow, NodeState};
pub use output::{Admit, MAX_CHUNK, admit};
pub use tokens::TokenRow;
pub use usage::UsedRow;

mod tokens;
mod usage;

/// Pauses, in milliseconds, between tries of work the state database
/// could not take for a moment (a restart, a dropped connection, a lock):
/// about 9.5 s in all. One schedule for every caller that waits out such
/// a blip instead of failing a job (the log writer, fan-out driving).
pub(crate) const BLIP_PAUSES_MS: [u64; 12] = [
    100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000,
];

/// A store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// This gateway's lease generation is stale: another gateway took the
    /// lead, and this one must write nothing more.
    #[error(
        "state database: fenced: this gateway's lease generation {mine} is stale (now {}); it is no longer the leader",
        now.map_or("none".to_string(), |g| g.to_string())
    )]
    Fenced {
        /// The generation this gateway holds.
        mine: u64,
        /// The generation the database holds, if any.
        now: Option<i64>,
    },
    /// The database is busy or locked; the operation may be tried again.
    #[error("state database: busy: {0}")]
    Busy(String),
    /// A uniqueness, foreign-key or check constraint refused a write.
    #[error("state database: constraint: {0}")]
    Constraint(String),
    /// The database cannot be reached, or refused the connection.
    #[error("state database: {0}")]
    Unavailable(String),
    /// Stored data could not be read back (an unknown state, a bad plan).
    #[error("state database: {0}")]
    Corrupt(String),
    /// The schema is newer than this gateway, or a migration failed.
    #[error("state database: {0}")]
    Schema(String),
    /// The `[state]` settings are wrong (URL, password, TLS files).
    #[error("state database: {0}")]
    Config(String),
    /// An operation's precondition does not hold (a copy into a database
    /// that is not empty, a lease on SQLite).
    #[error("state database: {0}")]
    Refused(String),
    /// The database thread stopped, or an operation panicked.
    #[error("state database: {0}")]
    Stopped(String),
    /// Any other error the engine reported.
    #[error("state database: {0}")]
    Engine(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => StoreError::Busy(e.to_string()),
            Some(C::ConstraintViolation) => StoreError::Constraint(e.to_string()),
            Some(C::CannotOpen | C::PermissionDenied | C::ReadOnly) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Engine(e.to_string()),
        }
    }
}

/// Most closures the database thread runs in one transaction.
pub const MAX_BATCH: usize = 256;

/// Most closures waiting for the database thread; callers wait beyond it.
const QUEUE: usize = 4096;

/// What a queued closure tells the thread: whether its savepoint is kept,
/// and how to answer its caller once the transaction's fate is known.
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A queued closure. `None`: the database could not start a transaction,
/// so the closure does not run and its caller gets the error.
type Work = Box<dyn FnOnce(Option<&Tx<'_>>) -> (bool, Deliver) + Send>;

/// The state database: a handle to the thread that owns the connection.
/// Cloning is cheap; the thread stops when the last handle is gone.
#[derive(Clone)]
pub struct Store {
    queue: mpsc::Sender<Work>,
    engine: Arc<Engine>,
    counts: Arc<Counts>,
}

/// Which engine a [`Store`] runs on; shown as `sqlite` or `postgres`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Embedded SQLite in the gateway's home: one gateway.
    Sqlite,
    /// PostgreSQL: state that a leader and standbys share.
    Postgres,
}

/// What the database thread has done, for `/metrics`.
#[derive(Default)]
pub struct Counts {
    /// Closures run by the database thread.
    pub calls: std::sync::atomic::AtomicU64,
    /// Transactions it committed (or tried to) for them.
    pub commits: std::sync::atomic::AtomicU64,
    /// Transactions run by blocking callers ([`Store::tx`]: API handlers,
    /// metrics, the log writer), reads included.
    pub blocking: std::sync::atomic::AtomicU64,
}

fn join(labels: &[String]) -> String {
    labels.join(",")
}

fn split(labels: &str) -> Vec<String> {
    labels
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// SQLite's page cache for the gateway's one connection, KiB (SQLite's
/// default is 2,000). The cache fills with every page the gateway touches
/// until it reaches its cap, which at a job a second took over an hour:
/// the soak's gateway grew by about 0.45 KB a job for all of it. The hot
/// pages (the tails of the jobs and audit tables and their indexes, the
/// nodes and clients) fit in 512 KiB; a page past it is read from the
/// kernel's page cache, one `pread` with WAL on a single connection.
pub(crate) const SQLITE_CACHE_KIB: i64 = 512;

/// A transaction handle; every method runs inside one transaction.
pub struct Tx<'a>(pub(crate) sql::Conn<'a>);

impl Store {
    /// Opens (creating if needed) and migrates the SQLite database at
    /// `path`, and starts the thread that owns it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "cache_size", -SQLITE_CACHE_KIB)?;
        // Every statement is prepared once and reused (`prepare_cached`):
        // parsing SQL was a visible share of an enrollment's CPU.
        conn.set_prepared_statement_cache_capacity(128);
        migrate(&mut conn)?;
        Store::start(Engine::Lite(Mutex::new(conn)))
    }

    /// Connects to (and migrates) a PostgreSQL state database, and starts
    /// the database thread. Fails at once, naming the server, when it
    /// cannot connect.
    ///
    /// Connecting and migrating block (see [`engine::Pg`]), so they run on
    /// a short-lived thread of their own: callable from anywhere.
    pub fn open_postgres(opts: &PgOptions) -> Result<Store, StoreError> {
        let pg = on_own_thread("connecting to PostgreSQL panicked", || Pg::connect(opts))?;
        Store::start(Engine::Pg(pg))
    }

    fn start(engine: Engine) -> Result<Store, StoreError> {
        let engine = Arc::new(engine);
        let (queue, rx) = mpsc::channel(QUEUE);
        let shared = engine.clone();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        std::thread::Builder::new()
            .name("openclaw-db".into())
            .spawn(move || serve(&shared, rx, &c))
            .map_err(|e| StoreError::Stopped(format!("cannot start the database thread: {e}")))?;
        Ok(Store {
            queue,
            engine,
            counts,
        })
    }

    /// Which engine holds the state.
    pub fn engine(&self) -> EngineKind {
        match *self.engine {
            Engine::Lite(_) => EngineKind::Sqlite,
            Engine::Pg(..) => EngineKind::Postgres,
        }
    }

    /// Whether `other` is a handle to the same database as this one.
    pub fn same(&self, other: &Store) -> bool {
        Arc::ptr_eq(&self.engine, &other.engine)
    }

    /// The PostgreSQL engine, when that is the engine.
    fn pg(&self) -> Option<&Pg> {
        match &*self.engine {
            Engine::Pg(pg) => Some(pg),
            Engine::Lite(_) => None,
        }
    }

    /// From now on every transaction must still hold lease `generation`
    /// (see [`Store::take_lease`]); `0` lifts the fence.
    pub fn fence(&self, generation: u64) {
        if let Some(pg) = self.pg() {
            pg.fence
                .0
                .store(generation, std::sync::atomic::Ordering::Release);
        }
    }

    /// What the database thread has done so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Runs `f` in one transaction on this thread; commits if it returns
    /// `Ok`. It blocks: call it only off the async workers (see the module
    /// documentation).
    pub fn tx<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        debug_assert!(
            !crate::shared::on_async_worker(),
            "Store::tx on an async worker thread; use Store::call or crate::off_runtime"
        );
        self.counts
            .blocking
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.engine.with_tx(false, |tx| {
            let out = f(&tx)?;
            tx.0.commit()?;
            Ok(out)
        })?
    }

    /// Runs `f` in a transaction on the database thread and returns its
    /// result once that transaction is committed. An `Err` from `f` rolls
    /// back what `f` wrote, and only that.
    pub async fn call<T, E>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (work, reply) = package(f);
        self.queue.send(work).await.map_err(|_| stopped())?;
        reply.await.map_err(|_| stopped())?
    }
}

/// Runs blocking `f` on a thread of its own and waits for it, so that
/// code that blocks on the store (opening it, [`Store::tx`], one-off setup
/// and commands) is callable from anywhere, async workers included, where
/// waiting on PostgreSQL through its runtime's handle is not allowed. A
/// panic in `f` becomes an error carrying `panicked` (what to say).
pub(crate) fn on_own_thread<T: Send, E: From<StoreError> + Send>(
    panicked: &str,
    f: impl FnOnce() -> Result<T, E> + Send,
) -> Result<T, E> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|_| Err(E::from(StoreError::Stopped(panicked.to_string()))))
    })
}

fn stopped() -> StoreError {
    StoreError::Stopped(
        "the database thread has stopped; see the gateway log, then restart it".into(),
    )
}

/// Wraps `f` for the database thread, with the channel its result comes
/// back on.
fn package<T, E>(
    f: impl FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
) -> (Work, oneshot::Receiver<Result<T, E>>)
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    let work: Work = Box::new(move |tx| {
        let ran = tx.is_some();
        let out = match tx {
            None => Err(E::from(StoreError::Unavailable(
                "cannot begin a transaction; see the gateway log".into(),
            ))),
            // A panic in `f` is a bug, but it must not take the thread
            // (and with it every later request) down.
            Some(tx) => catch_unwind(AssertUnwindSafe(|| f(tx))).unwrap_or_else(|_| {
                Err(E::from(StoreError::Stopped(
                    "a database operation panicked; see the gateway log".into(),
                )))
            }),
        };
        let keep = out.is_ok();
        let deliver: Deliver = Box::new(move |committed| {
            let _ = reply.send(match (out, committed) {
                (Ok(_), Err(e)) => Err(E::from(e)),
                // Never run: the reason is why the transaction failed.
                (Err(_), Err(e)) if !ran => Err(E::from(e)),
                (out, _) => out,
            });
        });
        (keep, deliver)
    });
    (work, rx)
}

impl Tx<'_> {
    /// Rows in `table` (one of the store's own names, never user input).
    fn count(&self, table: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .one(&format!("SELECT count(*) FROM {table}"), params![])?
            .map_or(Ok(0), |r| r.get(0))?;
        Ok(u(n))
    }

    /// The first row of a query, if any.
    pub(crate) fn one(&self, sql: &str, p: &[sql::Val]) -> Result<Option<sql::Row>, StoreError> {
        Ok(self.0.query(sql, p)?.into_iter().next())
    }

    /// The first column, as text, of every row of `sql`.
    pub(crate) fn texts(&self, sql: &str, p: &[sql::Val]) -> Result<Vec<String>, StoreError> {
        self.0.query(sql, p)?.iter().map(|r| r.get(0)).collect()
    }

    /// Appends to the audit trail.
    pub fn audit(
        &self,
        at: u64,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![i(at), actor, action, target, detail],
        )?;
        Ok(())
    }
}
