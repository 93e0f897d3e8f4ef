//! Job output stored in the database (`job_output`), for gateways that
//! share PostgreSQL state: any gateway of the group reads a job's output
//! there after a failover, with no shared filesystem. A single gateway on
//! SQLite keeps output in `logs/<id>.stdout|stderr` and never writes here.
//!
//! Each stream of a job is a sequence of chunks keyed by their offset in
//! the stored log. A chunk is admitted only where the stored log ends
//! ([`admit`]): a resend of stored bytes (a node resending what a dead
//! leader took but did not ack) is skipped or trimmed to its new part, and
//! a chunk past the end (a gap) is refused, so each byte is stored exactly
//! once whoever sends it and however often.

use super::sql::{Row, Val, params};
use super::{StoreError, Tx, i, u};

/// Largest chunk row; longer runs of output are split.
pub const MAX_CHUNK: usize = 1 << 20;

/// Most bytes [`Tx::read_output`] returns at once (about; whole chunks).
pub const READ_MAX: u64 = 4 << 20;

/// What to do with a chunk of `len` bytes at `pos`, given that the stored
/// log of its stream is `stored` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Every byte of it is stored already (a resend).
    Skip,
    /// Store its bytes from this index on (0: all of it; more: the start
    /// overlaps what is stored and is the same bytes).
    From(usize),
    /// It starts past the end of the stored log: bytes in between are
    /// missing, and storing it would leave a hole.
    Gap,
}

/// Where a chunk fits in a stored log (pure: see the module docs).
pub fn admit(stored: u64, pos: u64, len: usize) -> Admit {
    if pos > stored {
        return Admit::Gap;
    }
    let end = pos.saturating_add(len as u64);
    if end <= stored {
        return Admit::Skip;
    }
    Admit::From(usize::try_from(stored - pos).unwrap_or(usize::MAX))
}

impl Tx<'_> {
    /// Bytes stored for `stream` (0 stdout, 1 stderr) of job `job`.
    pub fn output_len(&self, job: u64, stream: u8) -> Result<u64, StoreError> {
        let row = self.one(
            "SELECT pos, length(data) FROM job_output WHERE job = ?1 AND stream = ?2 \
             ORDER BY pos DESC LIMIT 1",
            params![i(job), i64::from(stream)],
        )?;
        Ok(match row {
            Some(r) => u(r.get::<_, i64>(0)?).saturating_add(u(r.get::<_, i64>(1)?)),
            None => 0,
        })
    }

    /// Appends `chunks` (each at its stored-log offset, in order) to
    /// `stream` of job `job`, exactly once (see [`admit`]); returns the
    /// stored length after them. Contiguous chunks become one row of at
    /// most [`MAX_CHUNK`] bytes, all rows one statement each.
    pub fn append_output(
        &self,
        job: u64,
        stream: u8,
        chunks: &[(u64, bytes::Bytes)],
    ) -> Result<u64, StoreError> {
        let mut stored = self.output_len(job, stream)?;
        let mut rows: Vec<Row> = Vec::new();
        let mut run: Vec<u8> = Vec::new();
        let mut run_at = stored;
        for (pos, data) in chunks {
            let from = match admit(stored, *pos, data.len()) {
                Admit::Skip => continue,
                Admit::From(n) => n,
                Admit::Gap => {
                    return Err(StoreError::Refused(format!(
                        "job {job}: output gap on stream {stream}: {stored} bytes stored, a chunk came at offset {pos}; \
                         the node resends from the stored end when its stream is attached again"
                    )));
                }
            };
            let fresh = &data[from..];
            for piece in fresh.chunks(MAX_CHUNK) {
                if run.len() + piece.len() > MAX_CHUNK {
                    rows.push(chunk_row(job, stream, run_at, std::mem::take(&mut run)));
                    run_at = stored;
                }
                run.extend_from_slice(piece);
                stored += piece.len() as u64;
            }
        }
        if !run.is_empty() {
            rows.push(chunk_row(job, stream, run_at, run));
        }
        if !rows.is_empty() {
            // The key refuses a second row at one offset: under the state
            // lock nothing else writes between the length read and here,
            // so a conflict is a bug, reported as one.
            self.0.exec_many(
                "INSERT INTO job_output (job, stream, pos, data) VALUES (?1, ?2, ?3, ?4)",
                &rows,
            )?;
        }
        Ok(stored)
    }

    /// Records how many bytes of each stream the node sent (acked) and
    /// whether a stored log hit the cap; never lowers them.
    pub fn raise_job_bytes(
        &self,
        job: u64,
        stdout: u64,
        stderr: u64,
        truncated: bool,
    ) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE jobs SET \
               stdout_bytes = CASE WHEN stdout_bytes < ?2 THEN ?2 ELSE stdout_bytes END, \
               stderr_bytes = CASE WHEN stderr_bytes < ?3 THEN ?3 ELSE stderr_bytes END, \
               truncated = CASE WHEN ?4 = 1 THEN 1 ELSE truncated END \
             WHERE id = ?1",
            params![i(job), i(stdout), i(stderr), truncated],
        )?;
        Ok(())
    }

    /// Stored chunks of `stream` of job `job` that hold bytes from `from`
    /// on, in order, about [`READ_MAX`] bytes at most (at least one chunk);
    /// each with its offset.
    pub fn read_output(
        &self,
        job: u64,
        stream: u8,
        from: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        // From the chunk that holds `from` (the last one starting at or
        // before it), by the key's index. Sizes first (no data), so that
        // only the rows of one page are read into memory: 256 rows of up
        // to MAX_CHUNK each would be 256 MiB for one reader.
        let sizes = self.0.query(
            "SELECT pos, length(data) FROM job_output WHERE job = ?1 AND stream = ?2 AND pos >= \
               (SELECT COALESCE(max(pos), 0) FROM job_output WHERE job = ?1 AND stream = ?2 AND pos <= ?3) \
             ORDER BY pos LIMIT 256",
            params![i(job), i64::from(stream), i(from)],
        )?;
        let sizes = sizes
            .iter()
            .map(|r| Ok((u(r.get::<_, i64>(0)?), u(r.get::<_, i64>(1)?))))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let Some((first, last)) = page(&sizes, from) else {
            return Ok(Vec::new());
        };
        let rows = self.0.query(
            "SELECT pos, data FROM job_output WHERE job = ?1 AND stream = ?2 \
               AND pos >= ?3 AND pos <= ?4 ORDER BY pos",
            params![i(job), i64::from(stream), i(first), i(last)],
        )?;
        let mut out = Vec::new();
        for r in rows {
            let pos = u(r.get::<_, i64>(0)?);
            let data: Vec<u8> = r.get(1)?;
            out.push((pos, data));
        }
        Ok(out)
    }

    /// Deletes the stored output of `jobs` (retention).
    pub fn delete_output(&self, jobs: &[u64]) -> Result<(), StoreError> {
        for job in jobs {
            self.0
                .exec("DELETE FROM job_output WHERE job = ?1", params![i(*job)])?;
        }
        Ok(())
    }

    /// Bytes of stored output per job, for the `logs_max_bytes` cap.
    pub fn output_sizes(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        self.0
            .query(
                "SELECT job, sum(length(data)) FROM job_output GROUP BY job",
                params![],
            )?
            .iter()
            .map(|r| Ok((u(r.get(0)?), u(sum(r)?))))
            .collect()
    }
}

/// A `sum()` column: an integer in SQLite, a numeric in PostgreSQL (read
/// back as text by the engine layer).
fn sum(r: &Row) -> Result<i64, StoreError> {
    match r.0.get(1) {
        Some(Val::Int(n)) => Ok(*n),
        Some(Val::Text(t)) => t
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("an output size {t:?}: {e}"))),
        _ => Ok(0),
    }
}

/// The offsets of the first and last stored chunks (`sizes`: offset and
/// length, in order) of a page read from `from`: the chunks that hold
/// bytes from `from` on, until they hold [`READ_MAX`] bytes (at least
/// one). `None`: nothing stored from `from` on. Pure.
fn page(sizes: &[(u64, u64)], from: u64) -> Option<(u64, u64)> {
    let mut first = None;
    let mut last = None;
    let mut total = 0u64;
    for &(pos, len) in sizes {
        if pos.saturating_add(len) <= from {
            continue;
        }
        first.get_or_insert(pos);
        last = Some(pos);
        total = total.saturating_add(len);
        if total >= READ_MAX {
            break;
        }
    }
    Some((first?, last?))
}

fn chunk_row(job: u64, stream: u8, pos: u64, data: Vec<u8>) -> Row {
    Row(vec![
        Val::Int(i(job)),
        Val::Int(i64::from(stream)),
        Val::Int(i(pos)),
        Val::Blob(data),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_a_read_of_stored_output_holds_one_page_not_every_chunk() {
        let mb = MAX_CHUNK as u64;
        // 256 rows of 1 MiB: a page is the rows up to READ_MAX (4 MiB),
        // not the 256 MiB the query would otherwise bring into memory.
        let big: Vec<(u64, u64)> = (0..256).map(|k| (k * mb, mb)).collect();
        assert_eq!(page(&big, 0), Some((0, 3 * mb)));
        assert_eq!(page(&big, mb + 5), Some((mb, 4 * mb)));
        // Small rows: as many as the query gave.
        let small: Vec<(u64, u64)> = (0..256).map(|k| (k * 10, 10)).collect();
        assert_eq!(page(&small, 15), Some((10, 2550)));
        // A row larger than a page is still read alone.
        assert_eq!(page(&[(0, 8 * mb), (8 * mb, 1)], 0), Some((0, 0)));
        // Nothing from `from` on.
        assert_eq!(page(&big[..2], 2 * mb), None);
        assert_eq!(page(&[], 0), None);
    }

    #[test]
    fn a_chunk_is_admitted_only_where_the_stored_log_ends() {
        for (stored, pos, len, want) in [
            (0, 0, 5, Admit::From(0)),
            (5, 5, 3, Admit::From(0)),
            // The same chunk again: stored once.
            (8, 5, 3, Admit::Skip),
            (8, 0, 8, Admit::Skip),
            // A resend that overlaps the end: only its new part.
            (8, 6, 4, Admit::From(2)),
            // Past the end: a gap, refused.
            (8, 9, 1, Admit::Gap),
            (0, 1, 1, Admit::Gap),
            // An empty chunk at the end is nothing to store.
            (8, 8, 0, Admit::Skip),
        ] {
            assert_eq!(admit(stored, pos, len), want, "{stored} {pos} {len}");
        }
    }
}
