//! The schema: migrations for both engines, and copying a whole state
//! from one store into another (`gateway migrate-state`).

use rusqlite::Connection;

use super::engine::pg_locked_tx;
use super::sql::{self, params};
use super::{Store, StoreError};

pub(super) const MIGRATIONS: &[&str] = &[
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
    // Version 10: which physical GPUs a job held (issue 27).
    r#"
ALTER TABLE jobs ADD COLUMN gpus_held TEXT NOT NULL DEFAULT ''; -- the GPUs the job held, as its node reported them: one line per GPU, index, UUID and model separated by tabs
"#,
    // Version 11: job artifacts (issue 23): the patterns a job gave, and
    // the files its node uploaded when it ended.
    r#"
ALTER TABLE jobs ADD COLUMN artifacts TEXT NOT NULL DEFAULT ''; -- artifact patterns the job gave (relative globs), one per line; '' for none
ALTER TABLE jobs ADD COLUMN artifacts_note TEXT; -- why the job has no artifacts, or what went wrong collecting them; NULL when nothing did
CREATE TABLE artifacts (              -- files a job's node uploaded when the job ended; the bytes are under logs/<job>.artifacts/
  job     INTEGER NOT NULL,           -- the job (rows go with it at retention)
  seq     INTEGER NOT NULL,           -- order of arrival; the stored file is named after it
  name    TEXT NOT NULL,              -- path under the job's working directory, as the node named it
  size    INTEGER NOT NULL,           -- bytes (declared by the node for one not stored)
  sha256  TEXT NOT NULL,              -- lowercase hex SHA-256 of the stored bytes; '' when not stored
  state   TEXT NOT NULL,              -- stored | refused (the gateway kept no bytes) | skipped (the node did not collect it)
  note    TEXT NOT NULL,              -- why it was refused or skipped; '' when stored
  PRIMARY KEY (job, seq)              -- one row per file per job
);
"#,
    // Version 12: accounts and the fair-share queue (issue 24): what each
    // job is charged to, how it waits, and its GPUs in a column that usage
    // queries can sum without decoding plans.
    r#"
ALTER TABLE jobs ADD COLUMN project TEXT; -- the project the job is charged to (--project); NULL: only its requester
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0; -- its priority among waiting jobs (--priority), capped by fair_share.max_priority
ALTER TABLE jobs ADD COLUMN preemptible INTEGER NOT NULL DEFAULT 0; -- 1: it may be stopped and queued again for an account under its fair share
ALTER TABLE jobs ADD COLUMN gpus INTEGER NOT NULL DEFAULT 0; -- GPUs it asked for (the plan's); 0 for jobs from before version 12
ALTER TABLE jobs ADD COLUMN requeued_from INTEGER; -- the job whose preemption queued this one again; NULL: a first attempt
CREATE INDEX jobs_started ON jobs (started_at) WHERE started_at IS NOT NULL; -- usage over a time window
CREATE TABLE usage_daily (            -- GPU use of jobs already pruned, one row per UTC day, requester, project, node and GPU model
  day          INTEGER NOT NULL,      -- unix seconds of the UTC day the jobs started
  requester    TEXT NOT NULL,         -- who asked
  project      TEXT NOT NULL,         -- the project charged; empty: none
  node         TEXT NOT NULL,         -- the node they ran on
  model        TEXT NOT NULL,         -- GPU model; 'unknown' when the node did not say; '-' for jobs without GPUs
  gpu_seconds  INTEGER NOT NULL,      -- GPUs held times seconds run, together
  jobs         INTEGER NOT NULL,      -- how many jobs
  wait_seconds INTEGER NOT NULL,      -- their seconds from submission to start, together
  PRIMARY KEY (day, requester, project, node, model) -- one row per day and group; a later roll-up adds to it
);
"#,
    // Version 13: job output in the database, so that every gateway of an
    // HA group reads it after a failover without a shared filesystem
    // (issue 26). Only PostgreSQL state writes it; SQLite keeps files.
    r#"
CREATE TABLE job_output (             -- job output stored in the database (PostgreSQL state); SQLite state keeps logs/<job>.stdout|stderr instead
  job    INTEGER NOT NULL,            -- the job (rows go with it at retention)
  stream INTEGER NOT NULL,            -- 0: stdout, 1: stderr
  pos    INTEGER NOT NULL,            -- offset of the chunk's first byte in the stream's stored log
  data   BLOB NOT NULL,               -- the bytes, at most 1 MiB; chunks of a stream follow each other without gaps or overlaps
  PRIMARY KEY (job, stream, pos)      -- one chunk per offset: a resend is stored once
);
"#,
    // Version 14: the fair share's read of GPU usage, made on every submit
    // that changed the job table, scanned every job (SQLite walked the
    // table in id order); jobs without GPUs are most jobs.
    r#"
CREATE INDEX jobs_gpu_usage ON jobs (id) WHERE gpus > 0 AND started_at IS NOT NULL; -- the fair share's usage: started jobs with GPUs only
"#,
];

/// Every table of the state, in an order that a copy can follow.
pub(super) const COPIED_TABLES: &[&str] = &[
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
    "artifacts",
    "usage_daily",
    "job_output",
];

impl Store {
    /// Copies every row of this store into `dst`, which must be empty,
    /// in one transaction on each side (a consistent snapshot in, all or
    /// nothing out), then checks the row counts. Returns them per table.
    /// Blocking: call it off the async workers.
    pub fn copy_into(&self, dst: &Store) -> Result<Vec<(&'static str, u64)>, StoreError> {
        self.tx(|src| {
            dst.tx(|out| {
                for table in COPIED_TABLES {
                    if out.count(table)? > 0 {
                        return Err(StoreError::Refused(format!(
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
                        return Err(StoreError::Engine(format!(
                            "{table}: copied {b} rows of {a}; nothing was committed"
                        )));
                    }
                    counts.push((*table, a));
                }
                // Identity columns continue after the copied ids.
                out.0
                    .continue_identities(&[("jobs", "id"), ("audit", "id"), ("fanouts", "id")])?;
                Ok(counts)
            })
        })
    }
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

pub(super) async fn migrate_pg(conn: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    // Gateways starting together migrate one after another.
    let tx = pg_locked_tx(conn).await?;
    tx.batch_execute(PG_VERSION_TABLE).await?;
    let version: i64 = match tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
    {
        Some(row) => row.try_get(0)?,
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::Schema(format!(
            "database schema version {version} is newer than this gateway understands ({known}); upgrade openclaw"
        )));
    }
    for (idx, text) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.batch_execute(&sql::pg_schema(text)).await.map_err(|e| {
            StoreError::Schema(format!("migration {}: {}", idx + 1, StoreError::from(e)))
        })?;
        tx.execute(
            "UPDATE schema_version SET version = $1",
            &[&i64::try_from(idx + 1).unwrap_or(i64::MAX)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::Schema(format!(
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
