//! The leader lease and the gateways sharing one state (PostgreSQL).

use std::time::Duration;

use super::engine::{no_connection, pg_locked_tx};
use super::sql::params;
use super::{Store, StoreError, Tx, i, u};

impl Store {
    /// Tries to take or renew the leader lease for `holder` for `ttl`,
    /// by the database's clock. A takeover (the lease lapsed, or was never
    /// held) makes a new generation, the fencing token; a renewal by the
    /// holder keeps it. Returns the generation held, or, while another
    /// holder's lease runs, how many milliseconds it has left (so a
    /// standby can ask again just as it lapses). PostgreSQL only.
    ///
    /// The attempt runs as a task of the store's own runtime, so a caller
    /// that stops waiting (a timeout) leaves it to finish or fail by itself
    /// rather than cutting its transaction short.
    pub async fn take_lease(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Result<u64, i64>, StoreError> {
        self.lease_attempt(holder, ttl, None).await
    }

    /// The leader's renewal of the lease it holds at `generation`: extends
    /// it only while it is still this holder's, at that generation, and
    /// has not lapsed. Otherwise it writes nothing and returns the other
    /// generation (`Ok`), the milliseconds another holder's lease has left,
    /// or `Err(0)` when ours lapsed: a leader whose lease lapsed (paused,
    /// or the database slow) never takes it anew under a new generation it
    /// will not serve, which kept a standby waiting a whole lease more
    /// (found by the fault test, `tests/it/faults.rs`).
    pub async fn renew_lease(
        &self,
        holder: &str,
        generation: u64,
        ttl: Duration,
    ) -> Result<Result<u64, i64>, StoreError> {
        self.lease_attempt(holder, ttl, Some(generation)).await
    }

    async fn lease_attempt(
        &self,
        holder: &str,
        ttl: Duration,
        renew: Option<u64>,
    ) -> Result<Result<u64, i64>, StoreError> {
        let Some(pg) = self.pg() else {
            return Err(StoreError::Refused(
                "a leader lease needs PostgreSQL state ([state] url)".into(),
            ));
        };
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let holder = holder.to_string();
        let pool = pg.pool.clone();
        let attempt = pg.rt.handle().spawn(async move {
            let mut conn = pool.get().await.map_err(no_connection)?;
            let tx = pg_locked_tx(&mut conn).await?;
            // Every attempt, won or not, says this gateway runs.
            tx.execute(
                "UPDATE gateways SET seen_at = extract(epoch FROM clock_timestamp())::bigint WHERE name = $1",
                &[&holder],
            )
            .await?;
            let row = tx
                .query_opt(
                    "SELECT holder, generation, \
                     (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint \
                     FROM leader_lease WHERE id = 1",
                    &[],
                )
                .await?;
            let renew = renew.map(i);
            let mut made = true;
            let generation = match row {
                Some(r) => {
                    let (who, generation, left): (String, i64, i64) =
                        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                    let live = left > 0;
                    let ours = who == holder && renew.is_none_or(|g| g == generation);
                    if ours && live {
                        made = false;
                        generation
                    } else if who == holder && live {
                        // Renewing an older generation of our own name.
                        tx.commit().await?;
                        return Ok(Ok(u(generation)));
                    } else if live {
                        tx.commit().await?;
                        return Ok(Err(left));
                    } else if renew.is_some() {
                        tx.commit().await?;
                        return Ok(Err(0));
                    } else {
                        generation + 1
                    }
                }
                None if renew.is_some() => {
                    tx.commit().await?;
                    return Ok(Err(0));
                }
                None => 1,
            };
            tx.execute(
                "INSERT INTO leader_lease (id, holder, generation, expires_at) \
                     VALUES (1, $1, $2, clock_timestamp() + $3 * interval '1 millisecond') \
                     ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, \
                     generation = excluded.generation, expires_at = excluded.expires_at",
                &[&holder, &generation, &(ms as f64)],
            )
            .await?;
            tx.commit().await?;
            if made {
                // The lease's history, one line per generation (the fault
                // test reads it): who took which generation.
                tracing::info!(%holder, generation, "took a new generation of the leader lease");
            }
            Ok(Ok(u(generation)))
        });
        attempt
            .await
            .map_err(|e| StoreError::Stopped(format!("the lease attempt failed: {e}")))?
    }

    /// Who holds the lease: (holder, generation, milliseconds until it
    /// lapses, negative once lapsed), by the database's clock. PostgreSQL
    /// only; `None` before anyone took it. Blocking, as [`Store::tx`].
    pub fn lease(&self) -> Result<Option<(String, u64, i64)>, StoreError> {
        let Some(pg) = self.pg() else {
            return Ok(None);
        };
        pg.rt.handle().block_on(async {
            let row = pg
                .pool
                .get()
                .await
                .map_err(no_connection)?
                .query_opt(
                    "SELECT holder, generation, \
                     (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint \
                     FROM leader_lease WHERE id = 1",
                    &[],
                )
                .await?;
            row.map(|r| Ok((r.try_get(0)?, u(r.try_get(1)?), r.try_get(2)?)))
                .transpose()
        })
    }

    /// Every registered gateway: name, address, and seconds since its last
    /// lease attempt by the database's clock (`None`: never ran).
    /// Blocking.
    pub fn gateway_ages(&self) -> Result<Vec<(String, String, Option<i64>)>, StoreError> {
        self.tx(|tx| {
            let now = tx.0.unix_now_sql();
            tx.0.query(
                &format!("SELECT name, address, {now} - seen_at FROM gateways ORDER BY name"),
                params![],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect()
        })
    }
}

impl Tx<'_> {
    /// Records that gateway `name` serves this state at `address`.
    pub fn register_gateway(&self, name: &str, address: &str, at: u64) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO gateways (name, address, started_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET address = excluded.address, started_at = excluded.started_at",
            params![name, address, i(at)],
        )?;
        Ok(())
    }

    /// Removes gateway `name` from the group (`openclaw gateway leave`).
    pub fn remove_gateway(&self, name: &str) -> Result<(), StoreError> {
        self.0
            .exec("DELETE FROM gateways WHERE name = ?1", params![name])?;
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
}
