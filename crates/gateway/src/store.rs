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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use rusqlite::Connection;

mod clients;
mod jobs;
mod sql;

use sql::params;

pub use clients::{ClientRow, ClientState};
pub use jobs::{FanRow, JobRow, JobState, encode_plan};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[error("state database: {0}")]
pub struct StoreError(pub(crate) String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

const MIGRATIONS: &[&str] = &[
    // Version 1: tokens, nodes, revocations, issued certificates, audit.
    r#"
CREATE TABLE tokens (                 -- join tokens; only a hash of each secret is kept
  id           TEXT PRIMARY KEY,      -- public 6-character id
  secret_hash  BLOB NOT NULL,         -- SHA-256 of the secret
  created_at   INTEGER NOT NULL,      -- unix seconds
  expires_at   INTEGER NOT NULL,      -- unix seconds; unusable from then on
  uses_total   INTEGER NOT NULL,      -- enrollments allowed in total
  uses_left    INTEGER NOT NULL,      -- enrollments still allowed
  labels       TEXT NOT NULL,         -- comma-separated labels given to every node enrolled with it
  auto_approve INTEGER NOT NULL,      -- 1: enrollments are approved without an admin
  revoked      INTEGER NOT NULL DEFAULT 0 -- 1: revoked by an admin
);
CREATE TABLE nodes (                  -- every node that asked to enroll, one row per name
  name           TEXT PRIMARY KEY,    -- node name, [a-z0-9-]{1,63}
  state          TEXT NOT NULL,       -- pending | approved | rejected | revoked
  labels         TEXT NOT NULL,       -- comma-separated labels
  fingerprint    TEXT NOT NULL,       -- SHA256: fingerprint of the node's public key
  spki           BLOB NOT NULL,       -- the node's public key, SubjectPublicKeyInfo DER
  request_id     TEXT NOT NULL UNIQUE,-- opaque id the enrolling node polls with
  requested_at   INTEGER NOT NULL,    -- unix seconds the request arrived
  request_addr   TEXT NOT NULL,       -- source address of the enrollment request
  token_id       TEXT NOT NULL,       -- id of the join token used
  decided_at     INTEGER,             -- unix seconds of the last approve/reject/revoke
  decided_by     TEXT,                -- identity that decided ('token:<id>' for auto-approval)
  cert_der       BLOB,                -- current certificate, DER, once approved
  cert_serial    TEXT,                -- its serial, lowercase hex
  cert_not_after INTEGER,             -- its expiry, unix seconds
  last_seen      INTEGER,             -- unix seconds the last session started or ended
  last_addr      TEXT                 -- remote address of the last session
);
CREATE TABLE revoked_certs (          -- serials refused in every TLS handshake
  serial     TEXT PRIMARY KEY,        -- lowercase hex
  name       TEXT NOT NULL,           -- subject name, for people
  revoked_at INTEGER NOT NULL         -- unix seconds
);
CREATE TABLE issued_certs (           -- every certificate the CA signed
  serial    TEXT PRIMARY KEY,         -- lowercase hex
  name      TEXT NOT NULL,            -- subject CN
  role      TEXT NOT NULL,            -- node | admin | bot
  issued_at INTEGER NOT NULL,         -- unix seconds
  not_after INTEGER NOT NULL          -- unix seconds
);
CREATE TABLE audit (                  -- append-only trail of state changes
  id     INTEGER PRIMARY KEY AUTOINCREMENT, -- order of events
  at     INTEGER NOT NULL,            -- unix seconds
  actor  TEXT NOT NULL,               -- certificate identity, or 'token:<id>'
  action TEXT NOT NULL,               -- e.g. node.approve
  target TEXT NOT NULL,               -- what it acted on
  detail TEXT NOT NULL                -- free text
);
"#,
    // Version 2: jobs.
    r#"
CREATE TABLE jobs (                   -- every job ever requested
  id           INTEGER PRIMARY KEY AUTOINCREMENT, -- job id shown to users
  state        TEXT NOT NULL,         -- queued | awaiting-approval | starting | running | exited | failed | cancelled | timed-out | denied | expired | lost
  node         TEXT NOT NULL,         -- node the plan targets ('' while queued)
  role         TEXT,                  -- role asked for, if routed by role
  named_job    TEXT,                  -- named job, if any
  plan         BLOB NOT NULL,         -- the frozen plan: codec-encoded proto::JobPlan
  plan_digest  TEXT NOT NULL,         -- SHA-256 of plan, shown to approvers
  requester    TEXT NOT NULL,         -- certificate identity, or the chat user id a bot acted for
  via          TEXT NOT NULL,         -- certificate identity the request came through
  approvers    TEXT NOT NULL,         -- comma-separated identities that may approve ('' when none is needed)
  allow_self   INTEGER NOT NULL,      -- 1: the requester may approve their own job
  approved_by  TEXT,                  -- who approved it
  created_at   INTEGER NOT NULL,      -- unix seconds
  started_at   INTEGER,               -- unix seconds the process started
  finished_at  INTEGER,               -- unix seconds it ended
  exit_code    INTEGER,               -- exit code, 128+N for signal N
  reason       TEXT,                  -- why it ended as it did, for people
  stdout_bytes INTEGER NOT NULL DEFAULT 0, -- stdout bytes received from the node
  stderr_bytes INTEGER NOT NULL DEFAULT 0, -- stderr bytes received from the node
  truncated    INTEGER NOT NULL DEFAULT 0, -- 1: a stored log hit the output cap
  queue_until  INTEGER                -- unix seconds a queued job gives up waiting for capacity
);
CREATE INDEX jobs_state ON jobs (state); -- finds live jobs at startup
"#,
    // Version 3: client credentials as identities of their own, confirmed
    // node facts, secret env keys, killed-process counts, retention indexes.
    r#"
CREATE TABLE clients (                -- admin and bot credentials; one row per name, names are unique
  name        TEXT PRIMARY KEY,       -- certificate CN, [a-z0-9-]{1,63}
  role        TEXT NOT NULL,          -- admin | bot
  namespace   TEXT,                   -- bots: the chat namespace it may speak for, e.g. slack:T0123ABCD
  state       TEXT NOT NULL,          -- active | revoked
  cert_serial TEXT NOT NULL,          -- serial of the current certificate; older ones are refused
  not_after   INTEGER NOT NULL,       -- its expiry, unix seconds
  created_at  INTEGER NOT NULL,       -- unix seconds
  created_by  TEXT NOT NULL,          -- identity that created it
  revoked_at  INTEGER                 -- unix seconds it was revoked
);
INSERT INTO clients (name, role, namespace, state, cert_serial, not_after, created_at, created_by) SELECT c.name, c.role, NULL, 'active', c.serial, c.not_after, c.issued_at, 'migration' FROM issued_certs c WHERE c.role != 'node' AND NOT EXISTS (SELECT 1 FROM issued_certs d WHERE d.name = c.name AND d.role != 'node' AND (d.issued_at > c.issued_at OR (d.issued_at = c.issued_at AND d.serial > c.serial))); -- the newest certificate per name
UPDATE clients SET state = 'revoked' WHERE cert_serial IN (SELECT serial FROM revoked_certs); -- keep revocations
ALTER TABLE nodes ADD COLUMN proposed_labels TEXT NOT NULL DEFAULT ''; -- labels the node asked for that nobody confirmed; routing ignores them
ALTER TABLE nodes ADD COLUMN max_gpus INTEGER; -- most GPUs the node may offer (from the token or approval); NULL: none confirmed, so none offered
ALTER TABLE tokens ADD COLUMN max_gpus INTEGER; -- most GPUs a node enrolled with it may offer; NULL: none until an admin confirms some
ALTER TABLE jobs ADD COLUMN secret_env TEXT NOT NULL DEFAULT ''; -- comma-separated env keys whose values are never shown
ALTER TABLE jobs ADD COLUMN processes_killed INTEGER NOT NULL DEFAULT 0; -- processes the node killed at the job's end
CREATE INDEX jobs_finished ON jobs (finished_at); -- retention pruning
CREATE INDEX audit_at ON audit (at); -- retention pruning
"#,
    // Version 4: idempotency keys of job submits.
    r#"
CREATE TABLE idempotency (             -- job submits by key, so a repeated request returns the first job
  via        TEXT NOT NULL,            -- certificate identity that sent the key
  key        TEXT NOT NULL,            -- the client's key, e.g. slack:<event id>
  job_id     INTEGER NOT NULL,         -- the job the first request created
  created_at INTEGER NOT NULL,         -- unix seconds; keys are kept 24 h
  PRIMARY KEY (via, key)              -- one job per key and certificate
);
"#,
    // Version 5: every enrollment sweeps expired pending requests and counts
    // pending ones; without an index each was a scan of every node (O(N)
    // per enrollment, 13 % of the gateway's time while 2,000 enrolled).
    r#"
CREATE INDEX nodes_pending ON nodes (state, requested_at); -- enrollment sweeps and the pending cap
"#,
    // Version 6: fan-outs, one command on many nodes as one frozen plan.
    r#"
CREATE TABLE fanouts (                -- one command on many nodes; each node's run is a row in jobs
  id          INTEGER PRIMARY KEY AUTOINCREMENT, -- fan-out id shown to users
  plan        BLOB NOT NULL,          -- the frozen fan-out plan: codec-encoded gateway FanPlan (command and node list)
  plan_digest TEXT NOT NULL,          -- SHA-256 of plan, shown to approvers
  requester   TEXT NOT NULL,          -- certificate identity, or the chat user id a bot acted for
  via         TEXT NOT NULL,          -- certificate identity the request came through
  "window"    INTEGER NOT NULL,       -- members running at once (quoted: a keyword in PostgreSQL)
  skipped     BLOB NOT NULL,          -- codec-encoded (node, why) pairs of matching nodes it does not run on
  created_at  INTEGER NOT NULL        -- unix seconds
);
ALTER TABLE jobs ADD COLUMN fanout INTEGER; -- the fan-out this job is one node of; NULL for a single job
CREATE INDEX jobs_fanout ON jobs (fanout) WHERE fanout IS NOT NULL; -- a fan-out's members
"#,
    // Version 7: which CA signed each certificate, so a CA rotation knows
    // who still holds a certificate of the old one.
    r#"
ALTER TABLE issued_certs ADD COLUMN ca TEXT; -- pin (hex SHA-256 of the key) of the CA that signed it; NULL: signed before version 7
"#,
    // Version 8: the gateways sharing this state (a leader and standbys),
    // so tokens and credentials carry every address.
    r#"
CREATE TABLE gateways (               -- every gateway that serves this state; one row per name
  name       TEXT PRIMARY KEY,        -- gateway name, [a-z0-9-]{1,63}
  address    TEXT NOT NULL,           -- host:port nodes and clients dial (its advertise address)
  started_at INTEGER NOT NULL,        -- unix seconds it last started
  seen_at    INTEGER                  -- unix seconds (database clock) of its last lease attempt: a running leader or standby
);
"#,
    // Version 9: a job is bound to its node's key, not only its name, so a
    // node enrolled again under a released name never receives an old job.
    r#"
ALTER TABLE jobs ADD COLUMN node_key TEXT; -- SHA256: fingerprint of the key of the node the job was planned for; NULL until its node is chosen
"#,
];

/// A join token row.
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// Public id.
    pub id: String,
    /// SHA-256 of the secret.
    pub secret_hash: Vec<u8>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Allowed in total.
    pub uses_total: u32,
    /// Still allowed.
    pub uses_left: u32,
    /// Labels.
    pub labels: Vec<String>,
    /// Skips approval.
    pub auto_approve: bool,
    /// Revoked.
    pub revoked: bool,
    /// Most GPUs a node enrolled with it may offer.
    pub max_gpus: Option<u32>,
}

impl TokenRow {
    /// The public view.
    pub fn info(&self) -> proto::TokenInfo {
        proto::TokenInfo {
            id: self.id.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            uses_left: self.uses_left,
            uses_total: self.uses_total,
            labels: self.labels.clone(),
            auto_approve: self.auto_approve,
            revoked: self.revoked,
            max_gpus: self.max_gpus,
        }
    }
}

/// Enrollment state of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Waiting for an admin.
    Pending,
    /// Has a certificate.
    Approved,
    /// An admin said no.
    Rejected,
    /// Certificate revoked.
    Revoked,
}

impl NodeState {
    /// The state word as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Approved => "approved",
            NodeState::Rejected => "rejected",
            NodeState::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> Result<NodeState, StoreError> {
        Ok(match s {
            "pending" => NodeState::Pending,
            "approved" => NodeState::Approved,
            "rejected" => NodeState::Rejected,
            "revoked" => NodeState::Revoked,
            other => return Err(StoreError(format!("unknown node state {other:?}"))),
        })
    }
}

/// A node row.
#[derive(Debug, Clone)]
pub struct NodeRow {
    /// Name.
    pub name: String,
    /// Enrollment state.
    pub state: NodeState,
    /// Confirmed labels (token or admin); routing uses only these.
    pub labels: Vec<String>,
    /// Labels the node proposed that nobody confirmed.
    pub proposed_labels: Vec<String>,
    /// Most GPUs the node may offer.
    pub max_gpus: Option<u32>,
    /// Key fingerprint.
    pub fingerprint: String,
    /// Public key DER.
    pub spki: Vec<u8>,
    /// Poll id.
    pub request_id: String,
    /// Unix seconds.
    pub requested_at: u64,
    /// Source of the request.
    pub request_addr: String,
    /// Token used.
    pub token_id: String,
    /// Current certificate.
    pub cert_der: Option<Vec<u8>>,
    /// Its serial.
    pub cert_serial: Option<String>,
    /// Its expiry.
    pub cert_not_after: Option<u64>,
    /// Last session start or end.
    pub last_seen: Option<u64>,
    /// Last session address.
    pub last_addr: Option<String>,
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

/// The leader lease generation a fenced store's transactions must still
/// hold (0: not fenced). Shared by every handle and the database thread.
#[derive(Default)]
struct Fence(std::sync::atomic::AtomicU64);

/// Which engine a [`Store`] runs on; shown as `sqlite` or `postgres`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Embedded SQLite in the gateway's home: one gateway.
    Sqlite,
    /// PostgreSQL: state that a leader and standbys share.
    Postgres,
}

/// The engine behind a [`Store`].
enum Engine {
    /// Embedded SQLite: one connection, shared by the database thread and
    /// blocking callers under a mutex.
    Lite(Mutex<Connection>),
    /// PostgreSQL, for gateways that share state: a pool that replaces
    /// broken connections. Every transaction first takes one advisory
    /// transaction lock, so transactions run one at a time across every
    /// gateway on the database, as they do in SQLite, and the store's
    /// read-check-write steps need no stronger isolation.
    Pg(PgOwner, Arc<Fence>),
}

/// Owns the pool. The PostgreSQL client blocks on a runtime of its own
/// when a connection closes, which tokio forbids on its threads, so the
/// pool (and with it every connection) is dropped on a thread of its own.
struct PgOwner(Option<PgPool>);

impl Drop for PgOwner {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

type PgManager = r2d2_postgres::PostgresConnectionManager<tokio_postgres_rustls::MakeRustlsConnect>;
type PgPool = r2d2::Pool<PgManager>;

/// The advisory lock key every state transaction takes on PostgreSQL
/// ("openclaw" in ASCII, truncated to fit a bigint).
const PG_STATE_LOCK: i64 = 0x6f70_656e_636c_6177;

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

const NODE_COLUMNS: &str = "name, state, labels, fingerprint, spki, request_id, requested_at, request_addr, \
     token_id, cert_der, cert_serial, cert_not_after, last_seen, last_addr, proposed_labels, max_gpus";

fn node_from_row(r: &sql::Row) -> Result<NodeRow, StoreError> {
    let state: String = r.get(1)?;
    Ok(NodeRow {
        name: r.get(0)?,
        state: NodeState::parse(&state)?,
        labels: split(&r.get::<_, String>(2)?),
        fingerprint: r.get(3)?,
        spki: r.get(4)?,
        request_id: r.get(5)?,
        requested_at: u(r.get(6)?),
        request_addr: r.get(7)?,
        token_id: r.get(8)?,
        cert_der: r.get(9)?,
        cert_serial: r.get(10)?,
        cert_not_after: r.get::<_, Option<i64>>(11)?.map(u),
        last_seen: r.get::<_, Option<i64>>(12)?.map(u),
        last_addr: r.get(13)?,
        proposed_labels: split(&r.get::<_, String>(14)?),
        max_gpus: r
            .get::<_, Option<i64>>(15)?
            .map(|g| u32::try_from(g).unwrap_or(0)),
    })
}

fn token_from_row(r: &sql::Row) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: r.get(0)?,
        secret_hash: r.get(1)?,
        created_at: u(r.get(2)?),
        expires_at: u(r.get(3)?),
        uses_total: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
        uses_left: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
        labels: split(&r.get::<_, String>(6)?),
        auto_approve: r.get::<_, i64>(7)? != 0,
        revoked: r.get::<_, i64>(8)? != 0,
        max_gpus: r
            .get::<_, Option<i64>>(9)?
            .map(|g| u32::try_from(g).unwrap_or(0)),
    })
}

const TOKEN_COLUMNS: &str = "id, secret_hash, created_at, expires_at, uses_total, uses_left, labels, auto_approve, revoked, max_gpus";

/// Every table of the state, in an order that a copy can follow.
const COPIED_TABLES: &[&str] = &[
    "tokens",
    "nodes",
    "revoked_certs",
    "issued_certs",
    "audit",
    "clients",
    "fanouts",
    "jobs",
    "idempotency",
    "gateways",
];

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
    /// The PostgreSQL client blocks on a runtime of its own, which tokio
    /// forbids on its worker threads, so connecting and migrating run on a
    /// short-lived thread of their own; callable from anywhere.
    pub fn open_postgres(opts: &PgOptions) -> Result<Store, StoreError> {
        let pool = on_own_thread("connecting to PostgreSQL panicked", || {
            let pool = pg_pool(opts)?;
            let mut conn = pool.get().map_err(|e| pg_unreachable(opts, &e))?;
            migrate_pg(&mut conn)?;
            drop(conn);
            Ok::<_, StoreError>(pool)
        })?;
        Store::start(Engine::Pg(PgOwner(Some(pool)), Arc::default()))
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
            .map_err(|e| StoreError(format!("cannot start the database thread: {e}")))?;
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

    /// Copies every row of this store into `dst`, which must be empty,
    /// in one transaction on each side (a consistent snapshot in, all or
    /// nothing out), then checks the row counts. Returns them per table.
    /// Blocking: call it off the async workers.
    pub fn copy_into(&self, dst: &Store) -> Result<Vec<(&'static str, u64)>, StoreError> {
        self.tx(|src| {
            dst.tx(|out| {
                for table in COPIED_TABLES {
                    if out.count(table)? > 0 {
                        return Err(StoreError(format!(
                            "the target database already holds {table}; migrate into an empty database"
                        )));
                    }
                }
                let mut counts = Vec::new();
                for table in COPIED_TABLES {
                    let cols = src.texts(
                        "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
                        params![table],
                    )?;
                    let list = cols
                        .iter()
                        .map(|c| format!("\"{c}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let marks = (1..=cols.len())
                        .map(|n| format!("?{n}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let insert = format!("INSERT INTO {table} ({list}) VALUES ({marks})");
                    let mut offset = 0i64;
                    loop {
                        let rows = src.0.query(
                            &format!("SELECT {list} FROM {table} ORDER BY rowid LIMIT 1000 OFFSET ?1"),
                            params![offset],
                        )?;
                        if rows.is_empty() {
                            break;
                        }
                        offset += i64::try_from(rows.len()).unwrap_or(i64::MAX);
                        out.0.exec_many(&insert, &rows)?;
                    }
                    let (a, b) = (src.count(table)?, out.count(table)?);
                    if a != b {
                        return Err(StoreError(format!(
                            "{table}: copied {b} rows of {a}; nothing was committed"
                        )));
                    }
                    counts.push((*table, a));
                }
                // Identity columns continue after the copied ids.
                let identities: &[(&str, &str)] = match *dst.engine {
                    Engine::Pg(..) => &[("jobs", "id"), ("audit", "id"), ("fanouts", "id")],
                    Engine::Lite(_) => &[],
                };
                for (table, col) in identities {
                    out.0.batch(&format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{col}'), \
                         COALESCE((SELECT max({col}) FROM {table}), 0) + 1, false)"
                    ))?;
                }
                Ok(counts)
            })
        })
    }

    /// Tries to take or renew the leader lease for `holder` for `ttl`,
    /// by the database's clock. A takeover (the lease lapsed, or was never
    /// held) makes a new generation, the fencing token; a renewal by the
    /// holder keeps it. Returns the generation held, or `None` while
    /// another holder's lease runs. PostgreSQL only. Blocking.
    pub fn take_lease(&self, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
        let Some(pool) = self.pg_pool() else {
            return Err(StoreError(
                "a leader lease needs PostgreSQL state ([state] url)".into(),
            ));
        };
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let holder = holder.to_string();
        // The blocking client may not run on a runtime's thread.
        on_own_thread("the lease thread panicked", move || {
            let mut conn = pg_conn(&pool)?;
            let mut tx = pg_locked_tx(&mut conn)?;
            // Every attempt, won or not, says this gateway runs.
            tx.execute(
                "UPDATE gateways SET seen_at = extract(epoch FROM clock_timestamp())::bigint WHERE name = $1",
                &[&holder],
            )?;
            let row = tx.query_opt(
                "SELECT holder, generation, expires_at > clock_timestamp() FROM leader_lease WHERE id = 1",
                &[],
            )?;
            let generation = match row {
                Some(r) => {
                    let (who, generation, live): (String, i64, bool) =
                        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                    if who == holder && live {
                        generation
                    } else if live {
                        tx.commit()?;
                        return Ok(None);
                    } else {
                        generation + 1
                    }
                }
                None => 1,
            };
            tx.execute(
                "INSERT INTO leader_lease (id, holder, generation, expires_at) \
                     VALUES (1, $1, $2, clock_timestamp() + $3 * interval '1 millisecond') \
                     ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, \
                     generation = excluded.generation, expires_at = excluded.expires_at",
                &[&holder, &generation, &(ms as f64)],
            )?;
            tx.commit()?;
            Ok(Some(u(generation)))
        })
    }

    /// Who holds the lease: (holder, generation, milliseconds until it
    /// lapses, negative once lapsed), by the database's clock. PostgreSQL
    /// only; `None` before anyone took it. Blocking.
    pub fn lease(&self) -> Result<Option<(String, u64, i64)>, StoreError> {
        let Some(pool) = self.pg_pool() else {
            return Ok(None);
        };
        on_own_thread("the lease thread panicked", move || {
            let row = pg_conn(&pool)?.query_opt(
                "SELECT holder, generation, \
                     (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint \
                     FROM leader_lease WHERE id = 1",
                &[],
            )?;
            row.map(|r| Ok((r.try_get(0)?, u(r.try_get(1)?), r.try_get(2)?)))
                .transpose()
        })
    }

    /// Every registered gateway: name, address, and seconds since its last
    /// lease attempt by the database's clock (`None`: never ran).
    /// Blocking.
    pub fn gateway_ages(&self) -> Result<Vec<(String, String, Option<i64>)>, StoreError> {
        self.tx(|tx| {
            let now = match *self.engine {
                Engine::Pg(..) => "extract(epoch FROM clock_timestamp())::bigint",
                Engine::Lite(_) => "CAST(strftime('%s', 'now') AS INTEGER)",
            };
            tx.0.query(
                &format!("SELECT name, address, {now} - seen_at FROM gateways ORDER BY name"),
                params![],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect()
        })
    }

    /// The PostgreSQL pool, when that is the engine.
    fn pg_pool(&self) -> Option<PgPool> {
        match &*self.engine {
            Engine::Pg(PgOwner(Some(pool)), _) => Some(pool.clone()),
            _ => None,
        }
    }

    /// From now on every transaction must still hold lease `generation`
    /// (see [`Store::take_lease`]); `0` lifts the fence.
    pub fn fence(&self, generation: u64) {
        if let Engine::Pg(_, fence) = &*self.engine {
            fence
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
            !crate::on_async_worker(),
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

/// Runs blocking `f` on a thread of its own and waits for it: the
/// PostgreSQL client blocks on a runtime of its own, which tokio forbids
/// on its worker threads, so connecting, migrating, the lease and one-off
/// setup run here, callable from anywhere. A panic in `f` becomes an
/// error carrying `panicked` (what to say).
pub(crate) fn on_own_thread<T: Send, E: From<StoreError> + Send>(
    panicked: &str,
    f: impl FnOnce() -> Result<T, E> + Send,
) -> Result<T, E> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|_| Err(E::from(StoreError(panicked.to_string()))))
    })
}

fn lock(conn: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>, StoreError> {
    conn.lock()
        .map_err(|_| StoreError("lock poisoned; restart the gateway".into()))
}

impl Engine {
    /// Runs `f` with a new transaction; `f` commits it (dropping it rolls
    /// back). `immediate`: SQLite takes its write lock at the start.
    fn with_tx<R>(&self, immediate: bool, f: impl FnOnce(Tx<'_>) -> R) -> Result<R, StoreError> {
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
            Engine::Pg(PgOwner(Some(pool)), fence) => {
                let mut conn = pg_conn(pool)?;
                let mut tx = pg_locked_tx(&mut conn)?;
                // Fencing: under the lock every takeover also takes, a
                // transaction of a leader whose lease was taken over sees
                // the newer generation and writes nothing. A statement of
                // its own, after the lock: one statement that also took
                // the lock would read with a snapshot from before the wait.
                let mine = fence.0.load(std::sync::atomic::Ordering::Acquire);
                if mine != 0 {
                    let now: Option<i64> = tx
                        .query_opt("SELECT generation FROM leader_lease WHERE id = 1", &[])?
                        .map(|r| r.try_get(0))
                        .transpose()?;
                    if now != Some(i(mine)) {
                        return Err(StoreError(format!(
                            "fenced: this gateway's lease generation {mine} is stale (now {}); it is no longer the leader",
                            now.map_or("none".to_string(), |g| g.to_string())
                        )));
                    }
                }
                Ok(f(Tx(sql::Conn::Pg(std::cell::RefCell::new(tx)))))
            }
            Engine::Pg(PgOwner(None), _) => Err(StoreError("the database pool is closed".into())),
        }
    }
}

/// A connection from the pool.
fn pg_conn(pool: &PgPool) -> Result<r2d2::PooledConnection<PgManager>, StoreError> {
    pool.get()
        .map_err(|e| StoreError(format!("PostgreSQL: no connection: {e}")))
}

/// A transaction holding the state lock, which every state transaction,
/// lease attempt and migration takes first (see [`Engine::Pg`]).
fn pg_locked_tx(conn: &mut postgres::Client) -> Result<postgres::Transaction<'_>, StoreError> {
    let mut tx = conn.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_STATE_LOCK])?;
    Ok(tx)
}

fn pg_unreachable(opts: &PgOptions, e: &dyn std::fmt::Display) -> StoreError {
    StoreError(format!(
        "cannot connect to PostgreSQL at {}: {e}; check that the server runs and accepts this user \
         (PGPASSWORD or [state] password_file), then start the gateway again",
        proto::redact::url(&opts.url)
    ))
}

fn pg_pool(opts: &PgOptions) -> Result<PgPool, StoreError> {
    let mut config: postgres::Config = opts.url.parse().map_err(|e| {
        StoreError(format!(
            "[state] url {:?}: {e}; expected postgres://USER@HOST:PORT/DB[?sslmode=...]",
            proto::redact::url(&opts.url)
        ))
    })?;
    if config.get_password().is_some() {
        return Err(StoreError(
            "[state] url carries a password; remove it and set PGPASSWORD or [state] password_file"
                .into(),
        ));
    }
    if let Some(p) = &opts.password {
        config.password(p);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &opts.ca_pem {
        Some(pem) => {
            use rustls::pki_types::{CertificateDer, pem::PemObject as _};
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| StoreError(format!("[state] ca_file: bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| StoreError(format!("[state] ca_file: {e}")))?;
            }
            if roots.is_empty() {
                return Err(StoreError("[state] ca_file holds no certificate".into()));
            }
            if config.get_ssl_mode() == postgres::config::SslMode::Prefer {
                config.ssl_mode(postgres::config::SslMode::Require);
            }
        }
        None => match config.get_ssl_mode() {
            postgres::config::SslMode::Disable => {}
            postgres::config::SslMode::Prefer => {
                config.ssl_mode(postgres::config::SslMode::Disable);
            }
            _ => {
                return Err(StoreError(
                    "[state] url asks for TLS; set [state] ca_file to the PEM of the CA that signed the database's certificate".into(),
                ));
            }
        },
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError(format!("TLS to PostgreSQL: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.connect_timeout(std::time::Duration::from_secs(5));
    let manager = r2d2_postgres::PostgresConnectionManager::new(
        config,
        tokio_postgres_rustls::MakeRustlsConnect::new(tls),
    );
    r2d2::Pool::builder()
        .max_size(opts.pool_size.max(1))
        .min_idle(Some(1))
        .connection_timeout(std::time::Duration::from_secs(5))
        .build(manager)
        .map_err(|e| pg_unreachable(opts, &e))
}

/// The PostgreSQL twin of `user_version`: one row, the schema version;
/// and the leader lease, which only shared state needs.
const PG_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL); \
     COMMENT ON TABLE schema_version IS 'one row: the schema version, as SQLite keeps it in user_version'; \
     COMMENT ON COLUMN schema_version.version IS 'how many of the store migrations have run'; \
     CREATE TABLE IF NOT EXISTS leader_lease (id BIGINT PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, \
       generation BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL); \
     COMMENT ON TABLE leader_lease IS 'one row: which gateway leads, until when, and its fencing generation'; \
     COMMENT ON COLUMN leader_lease.id IS 'always 1'; \
     COMMENT ON COLUMN leader_lease.holder IS 'the leading gateway''s name'; \
     COMMENT ON COLUMN leader_lease.generation IS 'fencing token: grows by one at every takeover; writes of an older one are refused'; \
     COMMENT ON COLUMN leader_lease.expires_at IS 'the lease lapses then (database clock) unless renewed';";

fn migrate_pg(conn: &mut postgres::Client) -> Result<(), StoreError> {
    // Gateways starting together migrate one after another.
    let mut tx = pg_locked_tx(conn)?;
    tx.batch_execute(PG_VERSION_TABLE)?;
    let version: i64 = match tx.query_opt("SELECT version FROM schema_version", &[])? {
        Some(row) => row.try_get(0)?,
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
            0
        }
    };
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError(format!(
            "database schema version {version} is newer than this gateway understands ({known}); upgrade openclaw"
        )));
    }
    for (idx, text) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.batch_execute(&sql::pg_schema(text))
            .map_err(|e| StoreError(format!("migration {}: {}", idx + 1, StoreError::from(e))))?;
        tx.execute(
            "UPDATE schema_version SET version = $1",
            &[&i64::try_from(idx + 1).unwrap_or(i64::MAX)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn stopped() -> StoreError {
    StoreError("the database thread has stopped; see the gateway log, then restart it".into())
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
            None => Err(E::from(StoreError(
                "cannot begin a transaction; see the gateway log".into(),
            ))),
            // A panic in `f` is a bug, but it must not take the thread
            // (and with it every later request) down.
            Some(tx) => catch_unwind(AssertUnwindSafe(|| f(tx))).unwrap_or_else(|_| {
                Err(E::from(StoreError(
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

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError(format!(
            "database schema version {version} is newer than this gateway understands ({known}); upgrade openclaw"
        )));
    }
    for (idx, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(idx + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The database thread: runs queued closures in batches until every
/// [`Store`] handle is gone.
fn serve(engine: &Engine, mut rx: mpsc::Receiver<Work>, counts: &Counts) {
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
                deliver(Err(StoreError(e.0.clone())));
            }
        }
    }
}

fn run_batch(tx: Tx<'_>, batch: &mut Vec<Work>) {
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
                deliver(Err(StoreError(e.0.clone())));
                // The operations not run yet hear it too, not silence.
                for rest in queue {
                    let (_, d) = rest(None);
                    replies.push(d);
                }
                fail_all(tx, replies, &e.0);
                return;
            }
        }
    }
    let committed = tx.0.commit();
    if let Err(e) = &committed {
        tracing::error!("state database: commit failed: {e}");
    }
    for deliver in replies {
        deliver(
            committed
                .as_ref()
                .map(|_| ())
                .map_err(|e| StoreError(e.0.clone())),
        );
    }
}

fn fail_all(tx: Tx<'_>, replies: Vec<Deliver>, why: &str) {
    tracing::error!("state database: {why}; rolling back the batch");
    drop(tx);
    for deliver in replies {
        deliver(Err(StoreError(why.to_string())));
    }
}

impl Tx<'_> {
    /// Inserts a token.
    pub fn insert_token(&self, t: &TokenRow) -> Result<(), StoreError> {
        self.0.exec(
            &format!(
                "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                t.id,
                t.secret_hash,
                i(t.created_at),
                i(t.expires_at),
                t.uses_total,
                t.uses_left,
                join(&t.labels),
                t.auto_approve,
                t.revoked,
                t.max_gpus
            ],
        )?;
        Ok(())
    }

    /// A token by id.
    pub fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        self.one(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
            params![id],
        )?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    /// All tokens, newest first.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.0
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at DESC, id"),
                params![],
            )?
            .iter()
            .map(token_from_row)
            .collect()
    }

    /// Uses one enrollment of a token.
    pub fn use_token(&self, id: &str) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ?1 AND uses_left > 0",
            params![id],
        )?;
        Ok(())
    }

    /// Revokes a token; returns whether it existed.
    pub fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .0
            .exec("UPDATE tokens SET revoked = 1 WHERE id = ?1", params![id])?
            > 0)
    }

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

    /// Nodes selected by `sql` (which lists `NODE_COLUMNS`).
    fn node_rows(&self, sql: &str, p: &[sql::Val]) -> Result<Vec<NodeRow>, StoreError> {
        self.0.query(sql, p)?.iter().map(node_from_row).collect()
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Result<Option<NodeRow>, StoreError> {
        Ok(self
            .node_rows(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name = ?1"),
                params![name],
            )?
            .pop())
    }

    /// Deletes a node's row (`node release`).
    pub fn delete_node(&self, name: &str) -> Result<(), StoreError> {
        self.0
            .exec("DELETE FROM nodes WHERE name = ?1", params![name])?;
        Ok(())
    }

    /// A node by enrollment request id.
    pub fn node_by_request(&self, request_id: &str) -> Result<Option<NodeRow>, StoreError> {
        Ok(self
            .node_rows(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE request_id = ?1"),
                params![request_id],
            )?
            .pop())
    }

    /// All nodes by name.
    pub fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        self.node_rows(
            &format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name"),
            params![],
        )
    }

    /// Nodes by name after `after`, at most `limit` (one page of `node list`).
    pub fn nodes_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<NodeRow>, StoreError> {
        self.node_rows(
            &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name > ?1 ORDER BY name LIMIT ?2"),
            params![
                after.unwrap_or(""),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    /// Number of pending requests.
    pub fn pending_count(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .one(
                "SELECT count(*) FROM nodes WHERE state = 'pending'",
                params![],
            )?
            .map_or(Ok(0), |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Deletes pending requests older than `cutoff`; returns their names.
    pub fn expire_pending(&self, cutoff: u64) -> Result<Vec<String>, StoreError> {
        self.texts(
            "DELETE FROM nodes WHERE state = 'pending' AND requested_at < ?1 RETURNING name",
            params![i(cutoff)],
        )
    }

    /// Inserts or replaces a node row (a new request for a rejected or revoked name).
    pub fn put_node(&self, n: &NodeRow) -> Result<(), StoreError> {
        self.0.exec(
            &format!(
                "INSERT INTO nodes ({NODE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
                 ON CONFLICT (name) DO UPDATE SET state = excluded.state, labels = excluded.labels, \
                 fingerprint = excluded.fingerprint, spki = excluded.spki, request_id = excluded.request_id, \
                 requested_at = excluded.requested_at, request_addr = excluded.request_addr, \
                 token_id = excluded.token_id, decided_at = NULL, decided_by = NULL, cert_der = excluded.cert_der, \
                 cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after, \
                 last_seen = excluded.last_seen, last_addr = excluded.last_addr, \
                 proposed_labels = excluded.proposed_labels, max_gpus = excluded.max_gpus"
            ),
            params![
                n.name,
                n.state.as_str(),
                join(&n.labels),
                n.fingerprint,
                n.spki,
                n.request_id,
                i(n.requested_at),
                n.request_addr,
                n.token_id,
                n.cert_der,
                n.cert_serial,
                n.cert_not_after.map(i),
                n.last_seen.map(i),
                n.last_addr,
                join(&n.proposed_labels),
                n.max_gpus
            ],
        )?;
        Ok(())
    }

    /// Sets a node's state and who decided.
    pub fn set_node_state(
        &self,
        name: &str,
        state: NodeState,
        at: u64,
        by: &str,
    ) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE nodes SET state = ?2, decided_at = ?3, decided_by = ?4 WHERE name = ?1",
            params![name, state.as_str(), i(at), by],
        )?;
        Ok(())
    }

    /// Records a node's certificate.
    pub fn set_node_cert(&self, name: &str, cert: &pki::IssuedCert) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE nodes SET cert_der = ?2, cert_serial = ?3, cert_not_after = ?4 WHERE name = ?1",
            params![name, cert.der, cert.serial, i(cert.not_after)],
        )?;
        Ok(())
    }

    /// Sets what an admin confirmed about a node: its labels (routing uses
    /// only these), the labels still unconfirmed, and its GPU cap.
    pub fn set_node_facts(
        &self,
        name: &str,
        labels: &[String],
        proposed: &[String],
        max_gpus: Option<u32>,
    ) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE nodes SET labels = ?2, proposed_labels = ?3, max_gpus = ?4 WHERE name = ?1",
            params![name, join(labels), join(proposed), max_gpus],
        )?;
        Ok(())
    }

    /// Records the start or end of a node session.
    pub fn node_seen(&self, name: &str, at: u64, addr: &str) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE nodes SET last_seen = ?2, last_addr = ?3 WHERE name = ?1",
            params![name, i(at), addr],
        )?;
        Ok(())
    }

    /// Records a signed certificate.
    pub fn record_issued(
        &self,
        name: &str,
        role: proto::Role,
        cert: &pki::IssuedCert,
        at: u64,
    ) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO issued_certs (serial, name, role, issued_at, not_after, ca) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![cert.serial, name, role.as_str(), i(at), i(cert.not_after), cert.ca_pin],
        )?;
        Ok(())
    }

    /// The first column, as text, of every row of `sql`.
    pub(crate) fn texts(&self, sql: &str, p: &[sql::Val]) -> Result<Vec<String>, StoreError> {
        self.0.query(sql, p)?.iter().map(|r| r.get(0)).collect()
    }

    /// Serials of active clients' current certificates that the CA pinned
    /// `ca_pin` (hex) did not sign.
    pub fn client_serials_not_on_ca(&self, ca_pin: &str) -> Result<Vec<String>, StoreError> {
        self.texts(
            "SELECT k.cert_serial FROM clients k LEFT JOIN issued_certs c ON c.serial = k.cert_serial \
             WHERE k.state = 'active' AND (c.ca IS NULL OR c.ca != ?1)",
            params![ca_pin],
        )
    }

    /// Approved nodes and active clients whose current certificate was not
    /// signed by the CA pinned `ca_pin` (hex), by name.
    pub fn not_on_ca(&self, ca_pin: &str) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let nodes = self.texts(
            "SELECT n.name FROM nodes n LEFT JOIN issued_certs c ON c.serial = n.cert_serial \
             WHERE n.state = 'approved' AND (c.ca IS NULL OR c.ca != ?1) ORDER BY n.name",
            params![ca_pin],
        )?;
        let clients = self.texts(
            "SELECT k.name FROM clients k LEFT JOIN issued_certs c ON c.serial = k.cert_serial \
             WHERE k.state = 'active' AND (c.ca IS NULL OR c.ca != ?1) ORDER BY k.name",
            params![ca_pin],
        )?;
        Ok((nodes, clients))
    }

    /// Revokes a serial.
    pub fn revoke_serial(&self, serial: &str, name: &str, at: u64) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO revoked_certs (serial, name, revoked_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (serial) DO NOTHING",
            params![serial, name, i(at)],
        )?;
        Ok(())
    }

    /// Records that gateway `name` serves this state at `address`.
    pub fn register_gateway(&self, name: &str, address: &str, at: u64) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO gateways (name, address, started_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET address = excluded.address, started_at = excluded.started_at",
            params![name, address, i(at)],
        )?;
        Ok(())
    }

    /// Every gateway serving this state: (name, address), by name.
    pub fn gateways(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.0
            .query(
                "SELECT name, address FROM gateways ORDER BY name",
                params![],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
    }

    /// Every revoked serial.
    pub fn revoked_serials(&self) -> Result<Vec<String>, StoreError> {
        self.texts("SELECT serial FROM revoked_certs", params![])
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

/// Test support: every store test runs on each engine.
#[cfg(test)]
pub(crate) mod testing {
    use super::{PgOptions, Store};

    /// Where a test's state lives.
    pub enum Place {
        /// A SQLite file in a temporary directory.
        Lite(tempfile::TempDir),
        /// A fresh PostgreSQL database.
        Pg(String),
    }

    /// One engine under test.
    pub struct Case {
        /// `sqlite` or `postgres`.
        pub engine: &'static str,
        /// The open store.
        pub store: Store,
        /// Its place, to open it again.
        pub place: Place,
    }

    impl Case {
        /// A second, independent handle on the same state.
        pub fn reopen(&self) -> Store {
            match &self.place {
                Place::Lite(dir) => Store::open(&dir.path().join("s.db")).unwrap(),
                Place::Pg(url) => Store::open_postgres(&pg(url)).unwrap(),
            }
        }
    }

    /// Options for a test database.
    pub fn pg(url: &str) -> PgOptions {
        PgOptions {
            url: url.to_string(),
            password: None,
            ca_pem: None,
            pool_size: 4,
        }
    }

    /// SQLite always; PostgreSQL when installed (else it says SKIPPED).
    pub fn engines(what: &str) -> Vec<Case> {
        let dir = tempfile::tempdir().unwrap();
        let mut out = vec![Case {
            engine: "sqlite",
            store: Store::open(&dir.path().join("s.db")).unwrap(),
            place: Place::Lite(dir),
        }];
        if let Some(server) = pgtemp::shared(what) {
            let url = server.database().unwrap();
            out.push(Case {
                engine: "postgres",
                store: Store::open_postgres(&pg(&url)).unwrap(),
                place: Place::Pg(url),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Case, engines};
    use super::*;

    fn node(name: &str) -> NodeRow {
        NodeRow {
            name: name.into(),
            state: NodeState::Pending,
            labels: vec!["gpu".into()],
            fingerprint: "SHA256:x".into(),
            spki: vec![1, 2, 3],
            request_id: format!("req-{name}"),
            requested_at: 100,
            request_addr: "127.0.0.1:1".into(),
            token_id: "abcdef".into(),
            cert_der: None,
            cert_serial: None,
            cert_not_after: None,
            last_seen: None,
            last_addr: None,
            proposed_labels: vec![],
            max_gpus: None,
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
        let Some(server) = pgtemp::shared("store migrations on PostgreSQL") else {
            return;
        };
        let url = server.database().unwrap();
        drop(Store::open_postgres(&testing::pg(&url)).unwrap());
        drop(Store::open_postgres(&testing::pg(&url)).unwrap());
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let v: i64 = c
            .query_one("SELECT version FROM schema_version", &[])
            .unwrap()
            .get(0);
        assert_eq!(v, MIGRATIONS.len() as i64);
        let bare: Vec<String> = c
            .query(
                "SELECT c.relname || '.' || a.attname FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped \
                 AND col_description(c.oid, a.attnum) IS NULL",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(bare.is_empty(), "columns without a comment: {bare:?}");
        let tables: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' AND c.relkind = 'r' \
                 AND obj_description(c.oid, 'pg_class') IS NOT NULL",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(tables >= 10, "only {tables} tables carry a comment");
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
                            return Err(StoreError(format!("refused {i}")));
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
                    Err(e) => assert!(e.0.starts_with("refused"), "{}: {e}", case.engine),
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
            assert!(err.0.contains("panicked"), "{engine}: {err}");
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
                    tx.set_node_state("w-1", NodeState::Approved, 5, "admin")?;
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
        let Some(server) = pgtemp::shared("store test: lease and fencing") else {
            return;
        };
        let url = server.database().unwrap();
        let a = Store::open_postgres(&testing::pg(&url)).unwrap();
        let b = Store::open_postgres(&testing::pg(&url)).unwrap();
        let ttl = Duration::from_millis(300);
        let g1 = a.take_lease("gw-a", ttl).unwrap().expect("a free lease");
        a.fence(g1);
        assert_eq!(b.take_lease("gw-b", ttl).unwrap(), None, "a's lease runs");
        assert_eq!(
            a.take_lease("gw-a", ttl).unwrap(),
            Some(g1),
            "renewing keeps it"
        );
        a.tx(|tx| tx.insert_token(&token("by-a"))).unwrap();
        // a stops renewing (paused, cut off); its lease lapses, b takes over.
        std::thread::sleep(Duration::from_millis(400));
        let g2 = b.take_lease("gw-b", ttl).unwrap().expect("a lapsed lease");
        assert_eq!(g2, g1 + 1, "a takeover makes a new generation");
        b.fence(g2);
        // a wakes: its writes are refused, blocking or queued, and a
        // renewal does not win the lease back while b holds it.
        let e = a.tx(|tx| tx.insert_token(&token("stale-1"))).unwrap_err();
        assert!(
            e.0.contains("fenced") && e.0.contains("no longer the leader"),
            "{e}"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let e = rt
            .block_on(a.call(|tx| tx.insert_token(&token("stale-2"))))
            .unwrap_err();
        assert!(e.0.contains("fenced"), "{e}");
        assert_eq!(a.take_lease("gw-a", ttl).unwrap(), None);
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
        let e = lite.take_lease("gw", ttl).unwrap_err();
        assert!(e.0.contains("PostgreSQL"), "{e}");
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
        let Some(server) = pgtemp::shared("store test newer_schema_is_refused") else {
            return;
        };
        let url = server.database().unwrap();
        drop(Store::open_postgres(&testing::pg(&url)).unwrap());
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("UPDATE schema_version SET version = 99")
            .unwrap();
        let err = Store::open_postgres(&testing::pg(&url))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("upgrade openclaw"), "{err}");
    }

    #[test]
    fn tls_to_postgres_is_verified_against_the_given_ca() {
        if pgtemp::shared("store test: TLS to PostgreSQL").is_none() {
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
        let server = pgtemp::Server::start_tls(&cert.pem(), &key.serialize_pem()).unwrap();
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
}
