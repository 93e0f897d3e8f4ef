//! Fan-out: one command on every matching node, as one frozen plan.
//!
//! A client opens [`crate::Request::FanOut`] and reads [`FanEvent`]s until
//! [`FanEvent::Done`]. Each node's run is an ordinary job (its id is in
//! [`FanMember`]), so `job show`, `job logs` and `job cancel` work on it;
//! policy and approval apply to the fan-out as a whole.

use serde::{Deserialize, Serialize};

use crate::{ApiError, JobInfo, JobSpec, OutStream};

/// Most nodes one fan-out may run on (more matching nodes are refused,
/// not silently dropped). Its [`FanInfo`] must also fit in one frame.
pub const MAX_FANOUT_NODES: usize = 10_000;

/// Largest output bytes in one [`FanEvent::Output`].
pub const FAN_OUTPUT_CHUNK: usize = 256 * 1024;

/// How many members run at once: Salt's `--batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Batch {
    /// At most this many at once.
    Count(u32),
    /// At most this percentage of the members at once (1-100).
    Percent(u8),
}

impl Batch {
    /// Parses `N` or `N%`.
    pub fn parse(s: &str) -> Result<Batch, String> {
        let bad = || format!("--batch {s:?}: write a count like 50 or a share like 25%");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Batch::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.trim().parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Batch::Count(n)),
                _ => Err(bad()),
            },
        }
    }

    /// The window for `members` members: at least 1, at most `members`.
    pub fn window(self, members: usize) -> usize {
        let w = match self {
            Batch::Count(n) => n as usize,
            Batch::Percent(p) => (members * p as usize).div_ceil(100),
        };
        w.clamp(1, members.max(1))
    }
}

/// What a fan-out runs, and where.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FanOutSpec {
    /// The command, as for one job. `node` must be empty; `role`, if given,
    /// selects nodes with that role (`gpu` also matches nodes with GPUs);
    /// `idempotency_key` makes the whole fan-out idempotent.
    pub job: JobSpec,
    /// Every one of these labels must be on a node (`k=v` or a plain word).
    pub labels: Vec<String>,
    /// Sliding window; `None`: every member at once.
    pub batch: Option<Batch>,
    /// Stream the members' output (false: only their ends).
    pub output: bool,
}

/// One node of a fan-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanMember {
    /// The node.
    pub node: String,
    /// Its job.
    pub job: u64,
}

/// A fan-out as its requester and approvers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanInfo {
    /// Fan-out id.
    pub id: u64,
    /// `awaiting-approval`, `running` or `done` (from its members): a
    /// [`crate::FanState`]'s word.
    pub state: String,
    /// Exact argv every member runs.
    pub argv: Vec<String>,
    /// Who asked.
    pub requester: String,
    /// The nodes it runs on, in order.
    pub members: Vec<FanMember>,
    /// Matching nodes it does not run on, and why (offline, unhealthy).
    pub skipped: Vec<(String, String)>,
    /// Members running at once.
    pub window: u32,
    /// Who may approve it (when awaiting approval).
    pub approvers: Vec<String>,
    /// SHA-256 of the frozen fan-out plan (command and node list).
    pub plan_digest: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// Streamed to a fan-out's follower. `member` indexes [`FanInfo::members`].
// Messages live for one decode-handle-drop cycle, so variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FanEvent {
    /// The fan-out exists (first event).
    Accepted(FanInfo),
    /// A member changed state (`starting`, `running`, ...).
    State {
        /// Which member.
        member: u32,
        /// Its new state word.
        state: String,
    },
    /// Output of a member, in order per member and stream, continuing
    /// from the offsets the follower asked for.
    Output {
        /// Which member.
        member: u32,
        /// Which stream.
        stream: OutStream,
        /// The bytes (at most [`FAN_OUTPUT_CHUNK`]).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A member ended; its final record.
    Ended {
        /// Which member.
        member: u32,
        /// Its job.
        job: JobInfo,
    },
    /// Following a member failed; the follower should read it by job id.
    Lost {
        /// Which member.
        member: u32,
        /// Why.
        error: ApiError,
    },
    /// Every member has ended (last event).
    Done,
    /// The request failed (only event).
    Error(ApiError),
}

/// How one member ended, for summaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exited 0.
    Ok,
    /// Exited with this non-zero code.
    Exit(i32),
    /// Killed at its timeout.
    TimedOut,
    /// Ended otherwise without running to its end: the state word
    /// (`failed`, `cancelled`, `lost`, `denied`, `expired`) and why.
    NotRun(String, String),
}

impl Outcome {
    /// The outcome of an ended job.
    pub fn of(job: &JobInfo) -> Outcome {
        use crate::JobState;
        match (job.job_state(), job.exit_code) {
            (Some(JobState::Exited), Some(0)) => Outcome::Ok,
            (Some(JobState::Exited), Some(c)) => Outcome::Exit(c),
            (Some(JobState::TimedOut), _) => Outcome::TimedOut,
            _ => Outcome::NotRun(job.state.clone(), job.reason.clone().unwrap_or_default()),
        }
    }
}

/// Outcomes of a fan-out's members as they come in; what summaries and
/// counters are made of. Pure.
#[derive(Debug, Clone)]
pub struct Tally {
    nodes: Vec<String>,
    outcomes: Vec<Option<Outcome>>,
    skipped: Vec<(String, String)>,
}

/// Counts of a [`Tally`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Members.
    pub members: usize,
    /// Members that ended.
    pub ended: usize,
    /// Exited 0.
    pub ok: usize,
    /// Exited non-zero.
    pub failed: usize,
    /// Killed at their timeout.
    pub timed_out: usize,
    /// Ended without running to their end.
    pub not_run: usize,
    /// Matching nodes left out (offline, unhealthy).
    pub skipped: usize,
}

impl Tally {
    /// A tally for `info`'s members, none ended yet.
    pub fn new(info: &FanInfo) -> Tally {
        Tally {
            nodes: info.members.iter().map(|m| m.node.clone()).collect(),
            outcomes: vec![None; info.members.len()],
            skipped: info.skipped.clone(),
        }
    }

    /// Records a member's end; ignores a member index out of range and a
    /// repeated end. Returns the member's node and outcome when recorded.
    pub fn record(&mut self, member: u32, outcome: Outcome) -> Option<(&str, &Outcome)> {
        let i = member as usize;
        let slot = self.outcomes.get_mut(i)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(outcome);
        Some((self.nodes.get(i)?.as_str(), slot.as_ref()?))
    }

    /// The node of a member.
    pub fn node(&self, member: u32) -> Option<&str> {
        self.nodes.get(member as usize).map(String::as_str)
    }

    /// Whether a member has ended.
    pub fn has_ended(&self, member: u32) -> bool {
        self.outcomes
            .get(member as usize)
            .is_some_and(Option::is_some)
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            members: self.nodes.len(),
            skipped: self.skipped.len(),
            ..Counts::default()
        };
        for o in self.outcomes.iter().flatten() {
            c.ended += 1;
            match o {
                Outcome::Ok => c.ok += 1,
                Outcome::Exit(_) => c.failed += 1,
                Outcome::TimedOut => c.timed_out += 1,
                Outcome::NotRun(..) => c.not_run += 1,
            }
        }
        c
    }

    /// Every member exited 0 and no matching node was left out.
    pub fn all_ok(&self) -> bool {
        let c = self.counts();
        c.ok == c.members && c.skipped == 0
    }

    /// One line for people: `10 nodes: 8 ok, 1 failed (b: exit 2), …`.
    /// Names at most `names` nodes per kind.
    pub fn summary(&self, names: usize) -> String {
        let c = self.counts();
        let some = |v: Vec<String>| {
            let n = v.len();
            let mut s = v.into_iter().take(names).collect::<Vec<_>>().join(", ");
            if n > names {
                s.push_str(&format!(", and {} more", n - names));
            }
            s
        };
        let pick = |f: &dyn Fn(&Outcome) -> Option<String>| -> Vec<String> {
            self.nodes
                .iter()
                .zip(&self.outcomes)
                .filter_map(|(n, o)| o.as_ref().and_then(f).map(|d| format!("{n}{d}")))
                .collect()
        };
        let mut parts = vec![format!("{} ok", c.ok)];
        if c.failed > 0 {
            parts.push(format!(
                "{} failed ({})",
                c.failed,
                some(pick(&|o| match o {
                    Outcome::Exit(code) => Some(format!(": exit {code}")),
                    _ => None,
                }))
            ));
        }
        if c.timed_out > 0 {
            parts.push(format!(
                "{} timed out ({})",
                c.timed_out,
                some(pick(&|o| matches!(o, Outcome::TimedOut).then(String::new)))
            ));
        }
        if c.not_run > 0 {
            parts.push(format!(
                "{} did not run ({})",
                c.not_run,
                some(pick(&|o| match o {
                    Outcome::NotRun(state, _) => Some(format!(": {state}")),
                    _ => None,
                }))
            ));
        }
        if c.ended < c.members {
            parts.push(format!("{} not ended", c.members - c.ended));
        }
        if c.skipped > 0 {
            parts.push(format!(
                "{} offline or unhealthy, not run ({})",
                c.skipped,
                some(self.skipped.iter().map(|(n, _)| n.clone()).collect())
            ));
        }
        format!("{} node(s): {}", c.members + c.skipped, parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_and_summarises() {
        let info = FanInfo {
            id: 1,
            state: "running".into(),
            argv: vec!["true".into()],
            requester: "admin".into(),
            members: ["a", "b", "c", "d", "e"]
                .iter()
                .enumerate()
                .map(|(i, n)| FanMember {
                    node: n.to_string(),
                    job: i as u64 + 10,
                })
                .collect(),
            skipped: vec![("z".into(), "offline (last seen 3m ago)".into())],
            window: 5,
            approvers: vec![],
            plan_digest: String::new(),
            created_at: 0,
        };
        let mut t = Tally::new(&info);
        assert_eq!(t.record(0, Outcome::Ok), Some(("a", &Outcome::Ok)));
        assert_eq!(
            t.record(0, Outcome::Exit(3)),
            None,
            "a repeated end is ignored"
        );
        assert_eq!(t.record(9, Outcome::Ok), None, "out of range");
        t.record(1, Outcome::Exit(2));
        t.record(2, Outcome::TimedOut);
        t.record(
            3,
            Outcome::NotRun("failed".into(), "node went offline".into()),
        );
        assert!(!t.has_ended(4) && t.has_ended(3));
        let c = t.counts();
        assert_eq!(
            (
                c.members,
                c.ended,
                c.ok,
                c.failed,
                c.timed_out,
                c.not_run,
                c.skipped
            ),
            (5, 4, 1, 1, 1, 1, 1)
        );
        assert_eq!(
            t.summary(10),
            "6 node(s): 1 ok, 1 failed (b: exit 2), 1 timed out (c), 1 did not run (d: failed), 1 not ended, 1 offline or unhealthy, not run (z)"
        );
        assert!(!t.all_ok());
        let mut all = Tally::new(&FanInfo {
            skipped: vec![],
            ..info.clone()
        });
        for m in 0..5 {
            all.record(m, Outcome::Ok);
        }
        assert!(all.all_ok());
        assert_eq!(all.summary(2), "5 node(s): 5 ok");
        let mut many = Tally::new(&info);
        for m in 0..5 {
            many.record(m, Outcome::Exit(1));
        }
        assert!(
            many.summary(2)
                .contains("5 failed (a: exit 1, b: exit 1, and 3 more)")
        );
    }

    #[test]
    fn batch_parses_and_sizes_its_window() {
        let cases: &[(&str, Option<Batch>)] = &[
            ("10", Some(Batch::Count(10))),
            ("25%", Some(Batch::Percent(25))),
            ("100%", Some(Batch::Percent(100))),
            ("0", None),
            ("0%", None),
            ("101%", None),
            ("-3", None),
            ("x", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(Batch::parse(s).ok(), *want, "{s:?}");
        }
        let windows: &[(Batch, usize, usize)] = &[
            (Batch::Count(10), 1000, 10),
            (Batch::Count(10), 3, 3),
            (Batch::Percent(25), 1000, 250),
            (Batch::Percent(25), 3, 1),
            (Batch::Percent(1), 50, 1),
            (Batch::Percent(100), 7, 7),
            (Batch::Count(5), 0, 1),
        ];
        for (b, n, want) in windows {
            assert_eq!(b.window(*n), *want, "{b:?} of {n}");
        }
    }
}
