//! Usage queries (issue 24): the GPU use of jobs over a window, and the
//! daily roll-up that keeps it after the jobs are pruned.

use super::sql::params;
use super::{StoreError, Tx, i, u};
use crate::fair::usage::{Rolled, Used, roll_up};

/// The started jobs with GPUs that ran at or after ?1 (the fair share's
/// read; the index jobs_gpu_usage keeps it off jobs without GPUs).
pub(super) const GPU_USAGE_SINCE: &str = "SELECT id, requester, project, node, gpus, created_at, \
     started_at, finished_at, gpus_held FROM jobs WHERE gpus > 0 AND started_at IS NOT NULL AND \
     (finished_at IS NULL OR finished_at >= ?1) ORDER BY id";

impl Tx<'_> {
    /// GPU use of jobs that started and had not ended by `since` (unix
    /// seconds); a running job ends at `now`.
    pub fn usage_since(&self, since: u64, now: u64) -> Result<Vec<UsedRow>, StoreError> {
        self.used(
            "SELECT id, requester, project, node, gpus, created_at, started_at, finished_at, gpus_held FROM jobs \
             WHERE started_at IS NOT NULL AND (finished_at IS NULL OR finished_at >= ?1) ORDER BY id",
            params![i(since)],
            now,
        )
    }

    /// [`Tx::usage_since`] of the jobs that asked for GPUs: all the fair
    /// share weighs (a job's charge is its GPUs times its run, so a job
    /// without GPUs adds nothing). The fair share keeps this read in
    /// memory between turns (`jobs::StoreView`) and reads it a week back:
    /// with every job in it, a gateway running a CPU job a second held,
    /// and re-read on every turn, one row more per job for a week.
    pub fn gpu_usage_since(&self, since: u64, now: u64) -> Result<Vec<UsedRow>, StoreError> {
        self.used(GPU_USAGE_SINCE, params![i(since)], now)
    }

    fn used(&self, sql: &str, p: &[super::sql::Val], now: u64) -> Result<Vec<UsedRow>, StoreError> {
        self.0
            .query(sql, p)?
            .iter()
            .map(|r| {
                let held: String = r.get(8)?;
                Ok(UsedRow {
                    id: u(r.get(0)?),
                    used: Used {
                        requester: r.get(1)?,
                        project: r.get(2)?,
                        node: r.get(3)?,
                        gpus: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                        created_at: u(r.get(5)?),
                        started_at: u(r.get(6)?),
                        end: r.get::<_, Option<i64>>(7)?.map_or(now, u),
                        models: super::jobs::decode_held(&held)
                            .into_iter()
                            .map(|g| g.name)
                            .collect(),
                    },
                    running: r.get::<_, Option<i64>>(7)?.is_none(),
                })
            })
            .collect()
    }

    /// Rolls up the usage of the ended jobs that `prune_jobs(cutoff)` is
    /// about to delete into `usage_daily`. Call it in the same transaction.
    pub fn roll_up_usage(&self, cutoff: u64) -> Result<usize, StoreError> {
        let ended = self.used(
            "SELECT id, requester, project, node, gpus, created_at, started_at, finished_at, gpus_held FROM jobs \
             WHERE started_at IS NOT NULL AND finished_at IS NOT NULL AND finished_at < ?1 ORDER BY id",
            params![i(cutoff)],
            cutoff,
        )?;
        let used: Vec<Used> = ended.into_iter().map(|r| r.used).collect();
        let rows = roll_up(&used);
        for r in &rows {
            self.0.exec(
                "INSERT INTO usage_daily (day, requester, project, node, model, gpu_seconds, jobs, wait_seconds) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (day, requester, project, node, model) DO UPDATE SET \
                 gpu_seconds = usage_daily.gpu_seconds + excluded.gpu_seconds, \
                 jobs = usage_daily.jobs + excluded.jobs, \
                 wait_seconds = usage_daily.wait_seconds + excluded.wait_seconds",
                params![
                    i(r.day),
                    r.requester,
                    r.project,
                    r.node,
                    r.model,
                    i(r.gpu_seconds),
                    i(r.jobs),
                    i(r.wait_seconds),
                ],
            )?;
        }
        Ok(rows.len())
    }

    /// Rolled-up days from `since_day` on.
    pub fn rolled_usage(&self, since_day: u64) -> Result<Vec<Rolled>, StoreError> {
        self.0
            .query(
                "SELECT day, requester, project, node, model, gpu_seconds, jobs, wait_seconds FROM usage_daily \
                 WHERE day >= ?1 ORDER BY day",
                params![i(since_day)],
            )?
            .iter()
            .map(|r| {
                Ok(Rolled {
                    day: u(r.get(0)?),
                    requester: r.get(1)?,
                    project: r.get(2)?,
                    node: r.get(3)?,
                    model: r.get(4)?,
                    gpu_seconds: u(r.get(5)?),
                    jobs: u(r.get(6)?),
                    wait_seconds: u(r.get(7)?),
                })
            })
            .collect()
    }
}

/// One job's GPU use with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedRow {
    /// Job id.
    pub id: u64,
    /// Its use.
    pub used: Used,
    /// It has not ended (its `end` is now).
    pub running: bool,
}
