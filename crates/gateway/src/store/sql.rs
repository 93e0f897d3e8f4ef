//! One small SQL surface over both engines: values, rows, the placeholder
//! rewrite and the schema translation. The store's queries are written
//! once, in the subset both SQLite and PostgreSQL accept (`?N`
//! placeholders, `ON CONFLICT`, `RETURNING`); this module is the only
//! place that knows how each engine differs. Pure, except [`Tx`]'s
//! statement calls.

use std::borrow::Cow;

use super::StoreError;

/// A parameter or column value. The schema uses only these four kinds:
/// integers (booleans as 0/1), text, bytes and NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// SQL NULL.
    Null,
    /// INTEGER (SQLite), BIGINT (PostgreSQL).
    Int(i64),
    /// TEXT.
    Text(String),
    /// BLOB (SQLite), BYTEA (PostgreSQL).
    Blob(Vec<u8>),
}

/// Turns a Rust value into a parameter.
pub trait ToVal {
    /// The value as a parameter.
    fn to_val(&self) -> Val;
}

impl ToVal for i64 {
    fn to_val(&self) -> Val {
        Val::Int(*self)
    }
}
impl ToVal for i32 {
    fn to_val(&self) -> Val {
        Val::Int(i64::from(*self))
    }
}
impl ToVal for u32 {
    fn to_val(&self) -> Val {
        Val::Int(i64::from(*self))
    }
}
impl ToVal for bool {
    fn to_val(&self) -> Val {
        Val::Int(i64::from(*self))
    }
}
impl ToVal for str {
    fn to_val(&self) -> Val {
        Val::Text(self.to_string())
    }
}
impl ToVal for String {
    fn to_val(&self) -> Val {
        Val::Text(self.clone())
    }
}
impl ToVal for [u8] {
    fn to_val(&self) -> Val {
        Val::Blob(self.to_vec())
    }
}
impl ToVal for Vec<u8> {
    fn to_val(&self) -> Val {
        Val::Blob(self.clone())
    }
}
impl<T: ToVal + ?Sized> ToVal for &T {
    fn to_val(&self) -> Val {
        (**self).to_val()
    }
}
impl<T: ToVal> ToVal for Option<T> {
    fn to_val(&self) -> Val {
        self.as_ref().map_or(Val::Null, ToVal::to_val)
    }
}

/// Reads a Rust value out of a column.
pub trait FromVal: Sized {
    /// The column's value as `Self`, or what it was instead.
    fn from_val(v: &Val) -> Result<Self, String>;
}

impl FromVal for i64 {
    fn from_val(v: &Val) -> Result<Self, String> {
        match v {
            Val::Int(n) => Ok(*n),
            other => Err(format!("expected an integer, found {}", kind(other))),
        }
    }
}
impl FromVal for String {
    fn from_val(v: &Val) -> Result<Self, String> {
        match v {
            Val::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {}", kind(other))),
        }
    }
}
impl FromVal for Vec<u8> {
    fn from_val(v: &Val) -> Result<Self, String> {
        match v {
            Val::Blob(b) => Ok(b.clone()),
            other => Err(format!("expected bytes, found {}", kind(other))),
        }
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Result<Self, String> {
        match v {
            Val::Null => Ok(None),
            v => T::from_val(v).map(Some),
        }
    }
}

fn kind(v: &Val) -> &'static str {
    match v {
        Val::Null => "NULL",
        Val::Int(_) => "an integer",
        Val::Text(_) => "text",
        Val::Blob(_) => "bytes",
    }
}

/// A column index. Only `usize` implements it, so a literal index needs
/// no annotation.
pub trait Idx {
    /// The index.
    fn idx(self) -> usize;
}
impl Idx for usize {
    fn idx(self) -> usize {
        self
    }
}

/// One result row, engine-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Val>);

impl Row {
    /// Column `i` as `T`; an error names the column and what it held.
    pub fn get<I: Idx, T: FromVal>(&self, i: I) -> Result<T, StoreError> {
        let i = i.idx();
        let v = self
            .0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("row has no column {i}")))?;
        T::from_val(v).map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
    }
}

/// Builds a parameter list: `params![a, b]` is `&[a.to_val(), b.to_val()]`.
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        &[$($crate::store::sql::ToVal::to_val(&$x)),*][..]
    };
}
pub(crate) use params;

/// Rewrites `?N` placeholders as PostgreSQL's `$N`, leaving quoted text
/// alone.
pub fn pg_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Translates one of the store's SQLite migrations into PostgreSQL:
/// `INTEGER` becomes `BIGINT` (an `AUTOINCREMENT` key an identity column),
/// `BLOB` becomes `BYTEA`, text compares bytewise (`COLLATE "C"`, as
/// SQLite does, so pages and orders agree across engines), and every
/// `-- comment` on a table, column or index becomes a `COMMENT ON`, so
/// the schema documents itself in both engines from one text.
pub fn pg_schema(sql: &str) -> String {
    let mut body = String::with_capacity(sql.len() * 2);
    let mut comments = Vec::new();
    let mut table: Option<String> = None;
    for line in sql.lines() {
        let (code, comment) = match line.find("--") {
            Some(at) => (&line[..at], Some(line[at + 2..].trim())),
            None => (line, None),
        };
        let trimmed = code.trim();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let mut target: Option<String> = None;
        if let ["CREATE", "TABLE", name, ..] = words.as_slice() {
            let name = name.trim_end_matches('(').to_string();
            target = Some(format!("TABLE {name}"));
            table = Some(name);
        } else if let ["CREATE", "INDEX", name, ..] = words.as_slice() {
            target = Some(format!("INDEX {name}"));
        } else if let ["ALTER", "TABLE", t, "ADD", "COLUMN", col, ..] = words.as_slice() {
            target = Some(format!("COLUMN {t}.{col}"));
        } else if trimmed.starts_with(')') {
            table = None;
        } else if let (Some(t), Some(first)) = (&table, words.first())
            && !matches!(*first, "PRIMARY" | "UNIQUE" | "FOREIGN" | "CHECK")
        {
            target = Some(format!("COLUMN {t}.{first}"));
        }
        body.push_str(&pg_types(code));
        body.push('\n');
        if let (Some(target), Some(text)) = (target, comment)
            && !text.is_empty()
        {
            comments.push(format!(
                "COMMENT ON {target} IS '{}';",
                text.replace('\'', "''")
            ));
        }
    }
    for c in comments {
        body.push_str(&c);
        body.push('\n');
    }
    body
}

/// The type words of one line of SQLite DDL, in PostgreSQL's terms.
fn pg_types(code: &str) -> String {
    let code = code.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    );
    let mut out = String::with_capacity(code.len() + 16);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match word.as_str() {
            "INTEGER" => out.push_str("BIGINT"),
            "BLOB" => out.push_str("BYTEA"),
            "TEXT" => out.push_str("TEXT COLLATE \"C\""),
            w => out.push_str(w),
        }
        word.clear();
    };
    for c in code.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// An open transaction on either engine.
pub enum Conn<'a> {
    /// SQLite, the embedded default.
    Lite(rusqlite::Transaction<'a>),
    /// PostgreSQL.
    Pg(PgTx<'a>),
}

/// A PostgreSQL transaction, and the handle of the runtime that drives its
/// connection: each statement waits on it (see `engine::Pg`). Statements
/// are prepared once per connection (the pool's statement cache), so each
/// is one round trip.
pub struct PgTx<'a> {
    pub(super) tx: deadpool_postgres::Transaction<'a>,
    pub(super) rt: &'a tokio::runtime::Handle,
}

impl Conn<'_> {
    /// The database clock now, in unix seconds, as an SQL expression.
    pub fn unix_now_sql(&self) -> &'static str {
        match self {
            Conn::Lite(_) => "CAST(strftime('%s', 'now') AS INTEGER)",
            Conn::Pg(_) => "extract(epoch FROM clock_timestamp())::bigint",
        }
    }

    /// After rows were copied in with their ids, makes the identity
    /// columns `(table, column)` continue after the largest id
    /// (PostgreSQL's sequences; SQLite's AUTOINCREMENT follows by itself).
    pub fn continue_identities(&self, cols: &[(&str, &str)]) -> Result<(), StoreError> {
        if let Conn::Pg(_) = self {
            for (table, col) in cols {
                self.batch(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{col}'), \
                     COALESCE((SELECT max({col}) FROM {table}), 0) + 1, false)"
                ))?;
            }
        }
        Ok(())
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(n) => ValueRef::Integer(*n),
            Val::Text(s) => ValueRef::Text(s.as_bytes()),
            Val::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl tokio_postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::{IsNull, Type};
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                _ => Err(format!("an integer parameter where {ty} is expected").into()),
            },
            Val::Text(s) => s.as_str().to_sql(ty, out),
            Val::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn lite_row(r: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let mut vals = Vec::with_capacity(n);
    for i in 0..n {
        vals.push(match r.get_ref(i)? {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(v) => Val::Int(v),
            // The schema stores no floats; a float is a foreign row.
            ValueRef::Real(f) => Val::Text(f.to_string()),
            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Val::Blob(b.to_vec()),
        });
    }
    Ok(Row(vals))
}

fn pg_row(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    use tokio_postgres::types::Type;
    let mut vals = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Val::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|v| Val::Int(v.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|v| Val::Int(v.into())),
            Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(|v| Val::Int(v.into())),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                r.try_get::<_, Option<String>>(i)?.map(Val::Text)
            }
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Val::Blob),
            ref other => {
                return Err(StoreError::Corrupt(format!(
                    "column {} has type {other}, which the store does not read",
                    col.name()
                )));
            }
        };
        vals.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(vals))
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(db) = e.as_db_error() else {
            return if e.is_closed() {
                StoreError::Unavailable(format!("PostgreSQL: {e}"))
            } else {
                StoreError::Engine(format!("PostgreSQL: {e}"))
            };
        };
        let msg = format!("PostgreSQL: {}", db.message());
        let code = db.code();
        if code.code().starts_with("23") {
            StoreError::Constraint(msg)
        } else if [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
        ]
        .contains(code)
        {
            StoreError::Busy(msg)
        } else if code.code().starts_with("08") || code.code().starts_with("57") {
            StoreError::Unavailable(msg)
        } else {
            StoreError::Engine(msg)
        }
    }
}

fn pg_params(p: &[Val]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    p.iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

impl Conn<'_> {
    /// Runs a statement; returns the rows it changed.
    pub fn exec(&self, sql: &str, p: &[Val]) -> Result<usize, StoreError> {
        match self {
            Conn::Lite(t) => Ok(t
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(p))?),
            Conn::Pg(t) => t.rt.block_on(async {
                let stmt = t.tx.prepare_cached(&pg_placeholders(sql)).await?;
                let n = t.tx.execute(&stmt, &pg_params(p)).await?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }),
        }
    }

    /// Runs a query; returns every row.
    pub fn query(&self, sql: &str, p: &[Val]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Lite(t) => {
                let mut stmt = t.prepare_cached(sql)?;
                let n = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(p), |r| lite_row(r, n))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            }
            Conn::Pg(t) => t.rt.block_on(async {
                let stmt = t.tx.prepare_cached(&pg_placeholders(sql)).await?;
                t.tx.query(&stmt, &pg_params(p))
                    .await?
                    .iter()
                    .map(pg_row)
                    .collect()
            }),
        }
    }

    /// Runs one statement once per parameter list (prepared once).
    pub fn exec_many(&self, sql: &str, rows: &[Row]) -> Result<(), StoreError> {
        match self {
            Conn::Lite(t) => {
                let mut stmt = t.prepare_cached(sql)?;
                for r in rows {
                    stmt.execute(rusqlite::params_from_iter(&r.0))?;
                }
                Ok(())
            }
            Conn::Pg(t) => t.rt.block_on(async {
                let stmt = t.tx.prepare_cached(&pg_placeholders(sql)).await?;
                for r in rows {
                    t.tx.execute(&stmt, &pg_params(&r.0)).await?;
                }
                Ok(())
            }),
        }
    }

    /// Runs statements without parameters (DDL, savepoints).
    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Lite(t) => Ok(t.execute_batch(sql)?),
            Conn::Pg(t) => Ok(t.rt.block_on(t.tx.batch_execute(sql))?),
        }
    }

    /// Commits.
    pub fn commit(self) -> Result<(), StoreError> {
        match self {
            Conn::Lite(t) => Ok(t.commit()?),
            Conn::Pg(PgTx { tx, rt }) => Ok(rt.block_on(tx.commit())?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        for (sql, want) in [
            ("SELECT 1", "SELECT 1"),
            ("a = ?1 AND b = ?12", "a = $1 AND b = $12"),
            ("x = '?1' AND y = ?2", "x = '?1' AND y = $2"),
            ("x = 'it''s ?' AND y = ?3", "x = 'it''s ?' AND y = $3"),
        ] {
            assert_eq!(pg_placeholders(sql), want, "{sql}");
        }
    }

    #[test]
    fn the_schema_translates_types_and_keeps_every_comment() {
        let sql = "\nCREATE TABLE jobs (                   -- every job\n  \
                   id INTEGER PRIMARY KEY AUTOINCREMENT, -- job id\n  \
                   plan BLOB NOT NULL,   -- the plan's bytes\n  \
                   \"window\" INTEGER NOT NULL, -- it's at once\n  \
                   PRIMARY KEY (via, key)  -- one per key\n);\n\
                   CREATE INDEX jobs_state ON jobs (state); -- finds live jobs\n\
                   ALTER TABLE jobs ADD COLUMN note TEXT NOT NULL DEFAULT ''; -- free text\n";
        let pg = pg_schema(sql);
        for want in [
            "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,",
            "plan BYTEA NOT NULL,",
            "\"window\" BIGINT NOT NULL,",
            "note TEXT COLLATE \"C\" NOT NULL DEFAULT ''",
            "COMMENT ON TABLE jobs IS 'every job';",
            "COMMENT ON COLUMN jobs.id IS 'job id';",
            "COMMENT ON COLUMN jobs.plan IS 'the plan''s bytes';",
            "COMMENT ON COLUMN jobs.\"window\" IS 'it''s at once';",
            "COMMENT ON INDEX jobs_state IS 'finds live jobs';",
            "COMMENT ON COLUMN jobs.note IS 'free text';",
        ] {
            assert!(pg.contains(want), "missing {want:?} in\n{pg}");
        }
        assert!(!pg.contains("INTEGER"), "{pg}");
        assert!(!pg.contains("COMMENT ON COLUMN jobs.PRIMARY"), "{pg}");
    }

    #[test]
    fn rows_name_the_column_that_does_not_fit() {
        let row = Row(vec![Val::Int(3), Val::Null, Val::Text("x".into())]);
        assert_eq!(row.get::<_, i64>(0).unwrap(), 3);
        assert_eq!(row.get::<_, Option<String>>(1).unwrap(), None);
        let e = row.get::<_, i64>(2).unwrap_err().to_string();
        assert!(e.contains("column 2") && e.contains("text"), "{e}");
        assert!(row.get::<_, i64>(9).is_err());
        assert_eq!(
            params![1i64, "a", None::<u32>, true, vec![1u8]],
            &[
                Val::Int(1),
                Val::Text("a".into()),
                Val::Null,
                Val::Int(1),
                Val::Blob(vec![1])
            ][..]
        );
    }
}
