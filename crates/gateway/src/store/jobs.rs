//! The jobs table: typed job states, and state changes written only as
//! conditional updates (`UPDATE … WHERE id = ? AND state = ?`), so two
//! deciders racing on one job (approve against deny, cancel against start,
//! approval against expiry) can never both win.

pub use proto::JobState;

use super::sql::{Row, params};
use super::{StoreError, Tx, i, join, split, u};

/// A job row. `plan` is decoded.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// Job id.
    pub id: u64,
    /// State.
    pub state: JobState,
    /// Target node.
    pub node: String,
    /// Role asked for.
    pub role: Option<String>,
    /// Named job.
    pub named_job: Option<String>,
    /// Frozen plan.
    pub plan: proto::JobPlan,
    /// Its digest.
    pub plan_digest: String,
    /// Who asked.
    pub requester: String,
    /// Certificate the request came through.
    pub via: String,
    /// Who may approve.
    pub approvers: Vec<String>,
    /// Requester may self-approve.
    pub allow_self: bool,
    /// Who approved.
    pub approved_by: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub started_at: Option<u64>,
    /// Unix seconds.
    pub finished_at: Option<u64>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Why it ended.
    pub reason: Option<String>,
    /// Stdout bytes received.
    pub stdout_bytes: u64,
    /// Stderr bytes received.
    pub stderr_bytes: u64,
    /// A log hit the cap.
    pub truncated: bool,
    /// Queue deadline.
    pub queue_until: Option<u64>,
    /// Env keys whose values are secret (masked in every view).
    pub secret_env: Vec<String>,
    /// Processes killed at the end.
    pub processes_killed: u32,
    /// The fan-out it belongs to.
    pub fanout: Option<u64>,
    /// Fingerprint of the key of the node it was planned for: only a
    /// session of that key receives it.
    pub node_key: Option<String>,
    /// The project it is charged to.
    pub project: Option<String>,
    /// Its priority among waiting jobs, capped.
    pub priority: i32,
    /// It may be stopped and queued again (`--preemptible`).
    pub preemptible: bool,
    /// The job whose preemption queued this one again.
    pub requeued_from: Option<u64>,
}

/// A fan-out row; its members are jobs with `fanout` set.
#[derive(Debug, Clone)]
pub struct FanRow {
    /// Fan-out id.
    pub id: u64,
    /// Codec-encoded frozen plan.
    pub plan: Vec<u8>,
    /// Its digest.
    pub plan_digest: String,
    /// Who asked.
    pub requester: String,
    /// Certificate the request came through.
    pub via: String,
    /// Members running at once.
    pub window: u32,
    /// Matching nodes left out, and why.
    pub skipped: Vec<(String, String)>,
    /// Unix seconds.
    pub created_at: u64,
}

impl JobRow {
    /// A job about to be inserted (id 0, nothing decided or run yet).
    #[allow(clippy::too_many_arguments)]
    pub fn fresh(
        state: JobState,
        node: String,
        role: Option<String>,
        named_job: Option<String>,
        plan: proto::JobPlan,
        requester: String,
        via: String,
        created_at: u64,
    ) -> JobRow {
        JobRow {
            id: 0,
            state,
            node,
            role,
            named_job,
            plan,
            plan_digest: String::new(),
            requester,
            via,
            approvers: vec![],
            allow_self: false,
            approved_by: None,
            created_at,
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
            truncated: false,
            queue_until: None,
            secret_env: vec![],
            processes_killed: 0,
            fanout: None,
            node_key: None,
            project: None,
            priority: 0,
            preemptible: false,
            requeued_from: None,
        }
    }

    /// The public view; secret env values are masked.
    pub fn info(&self) -> proto::JobInfo {
        proto::JobInfo {
            id: self.id,
            state: self.state.as_str().to_string(),
            node: self.node.clone(),
            argv: self.plan.argv.clone(),
            cwd: self.plan.cwd.clone(),
            env: self
                .plan
                .env
                .iter()
                .map(|(k, v)| {
                    if self.secret_env.contains(k) {
                        (k.clone(), "<secret>".to_string())
                    } else {
                        (k.clone(), v.clone())
                    }
                })
                .collect(),
            run_as: self.plan.run_as.clone(),
            requester: self.requester.clone(),
            named_job: self.named_job.clone(),
            role: self.role.clone(),
            gpus: self.plan.gpus,
            approvers: self.approvers.clone(),
            approved_by: self.approved_by.clone(),
            plan_digest: self.plan_digest.clone(),
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            stdout_bytes: self.stdout_bytes,
            stderr_bytes: self.stderr_bytes,
            truncated: self.truncated,
            processes_killed: self.processes_killed,
            fanout: self.fanout,
        }
    }
}

const JOB_COLUMNS: &str = "id, state, node, role, named_job, plan, plan_digest, requester, via, approvers, \
     allow_self, approved_by, created_at, started_at, finished_at, exit_code, reason, stdout_bytes, stderr_bytes, \
     truncated, queue_until, secret_env, processes_killed, fanout, node_key, project, priority, preemptible, \
     requeued_from";

fn job_from_row(r: &Row) -> Result<JobRow, StoreError> {
    let plan: Vec<u8> = r.get(5)?;
    let state: String = r.get(1)?;
    let row = JobRow {
        id: u(r.get(0)?),
        state: JobState::Queued,
        node: r.get(2)?,
        role: r.get(3)?,
        named_job: r.get(4)?,
        plan: proto::JobPlan {
            job_id: 0,
            node: String::new(),
            argv: vec![],
            cwd: None,
            env: vec![],
            timeout_secs: None,
            gpus: 0,
            kill_grace_secs: 0,
            run_as: None,
        },
        plan_digest: r.get(6)?,
        requester: r.get(7)?,
        via: r.get(8)?,
        approvers: split(&r.get::<_, String>(9)?),
        allow_self: r.get::<_, i64>(10)? != 0,
        approved_by: r.get(11)?,
        created_at: u(r.get(12)?),
        started_at: r.get::<_, Option<i64>>(13)?.map(u),
        finished_at: r.get::<_, Option<i64>>(14)?.map(u),
        exit_code: r
            .get::<_, Option<i64>>(15)?
            .and_then(|c| i32::try_from(c).ok()),
        reason: r.get(16)?,
        stdout_bytes: u(r.get(17)?),
        stderr_bytes: u(r.get(18)?),
        truncated: r.get::<_, i64>(19)? != 0,
        queue_until: r.get::<_, Option<i64>>(20)?.map(u),
        secret_env: split(&r.get::<_, String>(21)?),
        processes_killed: u32::try_from(r.get::<_, i64>(22)?).unwrap_or(0),
        fanout: r.get::<_, Option<i64>>(23)?.map(u),
        node_key: r.get(24)?,
        project: r.get(25)?,
        priority: i32::try_from(r.get::<_, i64>(26)?).unwrap_or(0),
        preemptible: r.get::<_, i64>(27)? != 0,
        requeued_from: r.get::<_, Option<i64>>(28)?.map(u),
    };
    let mut row = row;
    row.plan = proto::codec::decode(&plan)
        .map_err(|e| StoreError::Corrupt(format!("job {}: bad stored plan: {e}", row.id)))?;
    row.state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("job {}: unknown state {state:?}", row.id)))?;
    Ok(row)
}

/// The unfinished states as an SQL list (`'queued', …`), from the type.
fn unfinished_list() -> String {
    JobState::unfinished()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Encodes a plan for storage.
pub fn encode_plan(plan: &proto::JobPlan) -> Result<Vec<u8>, StoreError> {
    proto::codec::encode(plan).map_err(|e| StoreError::Engine(format!("cannot encode a plan: {e}")))
}

impl Tx<'_> {
    /// Inserts a job; `row.id` is ignored and the new id returned.
    /// The plan is stored as given and usually rewritten with the id by [`Tx::move_job`].
    pub fn insert_job(&self, row: &JobRow) -> Result<u64, StoreError> {
        let id = self.returned_id(
            "INSERT INTO jobs (state, node, role, named_job, plan, plan_digest, requester, via, approvers, allow_self, \
             created_at, queue_until, secret_env, fanout, node_key, project, priority, preemptible, gpus, requeued_from) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) RETURNING id",
            params![
                row.state.as_str(),
                row.node,
                row.role,
                row.named_job,
                encode_plan(&row.plan)?,
                row.plan_digest,
                row.requester,
                row.via,
                join(&row.approvers),
                row.allow_self,
                i(row.created_at),
                row.queue_until.map(i),
                join(&row.secret_env),
                row.fanout.map(i),
                row.node_key,
                row.project,
                row.priority,
                row.preemptible,
                row.plan.gpus,
                row.requeued_from.map(i),
            ],
        )?;
        Ok(id)
    }

    /// Writes every mutable field of `row` (its new state included) if and
    /// only if the stored job is still in state `from`. Returns whether it
    /// was written. An illegal transition is an error and writes nothing.
    pub fn move_job(&self, row: &JobRow, from: JobState) -> Result<bool, StoreError> {
        if from != row.state && !from.can_move_to(row.state) {
            return Err(StoreError::Refused(format!(
                "job {}: illegal state change {from} -> {}",
                row.id, row.state
            )));
        }
        let n = self.0.exec(
            "UPDATE jobs SET state = ?2, node = ?3, plan = ?4, plan_digest = ?5, approvers = ?6, allow_self = ?7, \
             approved_by = ?8, started_at = ?9, finished_at = ?10, exit_code = ?11, reason = ?12, stdout_bytes = ?13, \
             stderr_bytes = ?14, truncated = ?15, queue_until = ?16, secret_env = ?17, processes_killed = ?18, \
             node_key = ?20 WHERE id = ?1 AND state = ?19",
            params![
                i(row.id),
                row.state.as_str(),
                row.node,
                encode_plan(&row.plan)?,
                row.plan_digest,
                join(&row.approvers),
                row.allow_self,
                row.approved_by,
                row.started_at.map(i),
                row.finished_at.map(i),
                row.exit_code,
                row.reason,
                i(row.stdout_bytes),
                i(row.stderr_bytes),
                row.truncated,
                row.queue_until.map(i),
                join(&row.secret_env),
                row.processes_killed,
                from.as_str(),
                row.node_key,
            ],
        )?;
        Ok(n > 0)
    }

    /// Records output byte counts; never touches the state.
    pub fn set_job_bytes(
        &self,
        id: u64,
        stdout: u64,
        stderr: u64,
        truncated: bool,
    ) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE jobs SET stdout_bytes = ?2, stderr_bytes = ?3, truncated = ?4 WHERE id = ?1",
            params![i(id), i(stdout), i(stderr), truncated],
        )?;
        Ok(())
    }

    /// Records which GPUs job `id` holds (issue 27).
    pub fn set_job_gpus(&self, id: u64, gpus: &[proto::HeldGpu]) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE jobs SET gpus_held = ?2 WHERE id = ?1",
            params![i(id), encode_held(gpus)],
        )?;
        Ok(())
    }

    /// The GPUs job `id` held, as its node reported them (empty for a job
    /// without GPUs, or from a node of protocol 2).
    pub fn job_gpus(&self, id: u64) -> Result<Vec<proto::HeldGpu>, StoreError> {
        let text = self.texts("SELECT gpus_held FROM jobs WHERE id = ?1", params![i(id)])?;
        Ok(text.first().map(|t| decode_held(t)).unwrap_or_default())
    }

    /// Jobs selected by `sql` (which lists `JOB_COLUMNS`).
    fn job_rows(&self, sql: &str, p: &[super::sql::Val]) -> Result<Vec<JobRow>, StoreError> {
        self.0.query(sql, p)?.iter().map(job_from_row).collect()
    }

    /// The id an `INSERT … RETURNING id` made.
    fn returned_id(&self, sql: &str, p: &[super::sql::Val]) -> Result<u64, StoreError> {
        let row = self
            .one(sql, p)?
            .ok_or_else(|| StoreError::Engine("an insert returned no id".into()))?;
        Ok(u(row.get(0)?))
    }

    /// A job by id.
    pub fn job(&self, id: u64) -> Result<Option<JobRow>, StoreError> {
        Ok(self
            .job_rows(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![i(id)],
            )?
            .pop())
    }

    /// Up to `limit` jobs, newest first, with ids below `before` if given.
    pub fn jobs(&self, limit: u32, before: Option<u64>) -> Result<Vec<JobRow>, StoreError> {
        self.job_rows(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id < ?2 ORDER BY id DESC LIMIT ?1"),
            params![limit, before.map(i).unwrap_or(i64::MAX)],
        )
    }

    /// Number of jobs in each state.
    pub fn job_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.0
            .query(
                "SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state",
                params![],
            )?
            .iter()
            .map(|r| Ok((r.get::<_, String>(0)?, u(r.get(1)?))))
            .collect()
    }

    /// Jobs not in a final state.
    pub fn unfinished_jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        self.job_rows(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ({}) ORDER BY id",
                unfinished_list()
            ),
            params![],
        )
    }

    /// Deletes ended jobs that finished before `cutoff`, and their audit
    /// rows' job entries stay. Returns the ids, so their logs can go too.
    pub fn prune_jobs(&self, cutoff: u64) -> Result<Vec<u64>, StoreError> {
        self.0
            .query(
                &format!(
                    "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?1 \
                     AND state NOT IN ({}) RETURNING id",
                    unfinished_list()
                ),
                params![i(cutoff)],
            )?
            .iter()
            .map(|r| Ok(u(r.get(0)?)))
            .collect()
    }

    /// Deletes fan-outs none of whose jobs are left (after [`Tx::prune_jobs`]);
    /// returns how many.
    pub fn prune_fanouts(&self) -> Result<usize, StoreError> {
        self.0.exec(
            "DELETE FROM fanouts WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.fanout = fanouts.id)",
            params![],
        )
    }

    /// Inserts a fan-out; `row.id` is ignored and the new id returned.
    pub fn insert_fanout(&self, row: &FanRow) -> Result<u64, StoreError> {
        let skipped = proto::codec::encode(&row.skipped)
            .map_err(|e| StoreError::Engine(format!("cannot encode a skipped list: {e}")))?;
        self.returned_id(
            "INSERT INTO fanouts (plan, plan_digest, requester, via, \"window\", skipped, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            params![
                row.plan,
                row.plan_digest,
                row.requester,
                row.via,
                row.window,
                skipped,
                i(row.created_at)
            ],
        )
    }

    /// A fan-out by id.
    pub fn fanout(&self, id: u64) -> Result<Option<FanRow>, StoreError> {
        let Some(r) = self.one(
            "SELECT id, plan, plan_digest, requester, via, \"window\", skipped, created_at FROM fanouts WHERE id = ?1",
            params![i(id)],
        )?
        else {
            return Ok(None);
        };
        let skipped: Vec<u8> = r.get(6)?;
        Ok(Some(FanRow {
            id: u(r.get(0)?),
            plan: r.get(1)?,
            plan_digest: r.get(2)?,
            requester: r.get(3)?,
            via: r.get(4)?,
            window: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(1),
            skipped: proto::codec::decode(&skipped).map_err(|e| {
                StoreError::Corrupt(format!("fan-out {id}: bad stored skipped list: {e}"))
            })?,
            created_at: u(r.get(7)?),
        }))
    }

    /// The members of a fan-out, in id order (the order they were planned).
    pub fn fanout_jobs(&self, id: u64) -> Result<Vec<JobRow>, StoreError> {
        self.job_rows(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE fanout = ?1 ORDER BY id"),
            params![i(id)],
        )
    }

    /// The job an idempotency key of `via` created, if it is still kept.
    pub fn idempotent_job(&self, via: &str, key: &str) -> Result<Option<u64>, StoreError> {
        self.one(
            "SELECT job_id FROM idempotency WHERE via = ?1 AND key = ?2",
            params![via, key],
        )?
        .map(|r| Ok(u(r.get(0)?)))
        .transpose()
    }

    /// Records that `via`'s `key` created `job`.
    pub fn put_idempotency(
        &self,
        via: &str,
        key: &str,
        job: u64,
        at: u64,
    ) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO idempotency (via, key, job_id, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![via, key, i(job), i(at)],
        )?;
        Ok(())
    }

    /// Forgets idempotency keys older than `cutoff`.
    pub fn prune_idempotency(&self, cutoff: u64) -> Result<usize, StoreError> {
        self.0.exec(
            "DELETE FROM idempotency WHERE created_at < ?1",
            params![i(cutoff)],
        )
    }

    /// Deletes audit rows older than `cutoff`; returns how many.
    pub fn prune_audit(&self, cutoff: u64) -> Result<usize, StoreError> {
        self.0
            .exec("DELETE FROM audit WHERE at < ?1", params![i(cutoff)])
    }
}

/// The `gpus_held` column: a line per GPU, `index<TAB>uuid<TAB>model`;
/// control characters in the node's text become spaces.
fn encode_held(gpus: &[proto::HeldGpu]) -> String {
    let clean = |s: &str| s.replace(|c: char| c.is_control(), " ");
    gpus.iter()
        .map(|g| format!("{}\t{}\t{}\n", g.index, clean(&g.uuid), clean(&g.name)))
        .collect()
}

pub(super) fn decode_held(text: &str) -> Vec<proto::HeldGpu> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            Some(proto::HeldGpu {
                index: f.next()?.parse().ok()?,
                uuid: f.next()?.to_string(),
                name: f.next()?.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_only_live_states_move() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            if s.is_terminal() {
                for t in JobState::ALL {
                    assert!(!s.can_move_to(t), "{s} -> {t}");
                }
            }
        }
        assert_eq!(JobState::parse("done"), None);
        use JobState::*;
        let legal = [
            (AwaitingApproval, Starting),
            (AwaitingApproval, Denied),
            (AwaitingApproval, Expired),
            (Starting, Running),
            (Running, Exited),
            (Queued, AwaitingApproval),
        ];
        for (a, b) in legal {
            assert!(a.can_move_to(b), "{a} -> {b}");
        }
        // A job that was approved (starting) can no longer expire, and
        // nothing goes back to awaiting approval. (Approve against deny is
        // settled by conditional updates from awaiting-approval.)
        let illegal = [
            (Starting, Expired),
            (Running, AwaitingApproval),
            (Running, Starting),
            (Denied, Starting),
        ];
        for (a, b) in illegal {
            assert!(!a.can_move_to(b), "{a} -> {b}");
        }
    }

    #[test]
    fn a_fan_out_goes_with_its_last_pruned_job() {
        for case in
            crate::store::testing::engines("store test a_fan_out_goes_with_its_last_pruned_job")
        {
            fan_out_pruning(&case.store);
        }
    }

    fn fan_out_pruning(store: &crate::store::Store) {
        let plan = proto::JobPlan {
            job_id: 0,
            node: "n".into(),
            argv: vec!["true".into()],
            cwd: None,
            env: vec![],
            timeout_secs: None,
            gpus: 0,
            kill_grace_secs: 1,
            run_as: None,
        };
        let fan = FanRow {
            id: 0,
            plan: vec![1],
            plan_digest: "d".into(),
            requester: "admin".into(),
            via: "admin".into(),
            window: 2,
            skipped: vec![],
            created_at: 1,
        };
        let (fan_id, ended, live) = store
            .tx(|tx| {
                let f = tx.insert_fanout(&fan)?;
                let mut ids = Vec::new();
                for state in [JobState::Exited, JobState::Running] {
                    let mut row = JobRow::fresh(
                        state,
                        "n".into(),
                        None,
                        None,
                        plan.clone(),
                        "admin".into(),
                        "admin".into(),
                        1,
                    );
                    row.fanout = Some(f);
                    row.id = tx.insert_job(&row)?;
                    row.finished_at = (state == JobState::Exited).then_some(2);
                    tx.move_job(&row, state)?;
                    ids.push(row.id);
                }
                Ok::<_, StoreError>((f, ids[0], ids[1]))
            })
            .unwrap();
        store
            .tx(|tx| {
                assert_eq!(tx.prune_jobs(10)?, vec![ended]);
                assert_eq!(tx.prune_fanouts()?, 0, "a member is still there");
                assert!(tx.fanout(fan_id)?.is_some());
                let mut row = tx.job(live)?.unwrap();
                row.state = JobState::Exited;
                row.finished_at = Some(3);
                tx.move_job(&row, JobState::Running)?;
                assert_eq!(tx.prune_jobs(10)?, vec![live]);
                assert_eq!(tx.prune_fanouts()?, 1);
                assert!(tx.fanout(fan_id)?.is_none());
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
}
