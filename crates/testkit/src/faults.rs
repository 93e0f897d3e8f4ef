//! The checker of the randomized fault test (`tests/it/faults.rs`): pure
//! functions over what the test saw, so every invariant can be shown to
//! fail on a hand-made history (the unit tests below).
//!
//! What is checked, once the faults have stopped and the group settled:
//! * every job reaches exactly one terminal state (every look agrees, and
//!   it is terminal);
//! * an exited job kept its exit code;
//! * a job's stored output is its expected lines exactly once, in order
//!   (no gap, no duplicate); a job that did not exit shows a prefix of them;
//! * no job ran twice (the node-side evidence: each run appends the job's
//!   id to a file of its node), and an exited job ran once;
//! * at most one gateway took each lease generation, each gateway's
//!   generations only grow, and a gateway serves only a generation the
//!   database gave it (the lease's history is two log lines: the store's
//!   `took a new generation of the leader lease` when a takeover commits,
//!   and the gateway's `took the leader lease; serving`);
//! * no approval lost (a job whose approval was accepted was applied once
//!   and left `awaiting-approval`) or applied twice (one `job.approve`
//!   audit row at most, none for a job that needed none);
//! * a followed job (`openclaw run` in the foreground) printed its lines
//!   once and returned the job's exit code.

use std::collections::BTreeMap;
use std::fmt;

use proto::JobState;

/// What a job of the workload must do, fixed when it is submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The job's label; its output is `{label}-1` … `{label}-{lines}`.
    pub label: String,
    /// How many numbered lines it prints.
    pub lines: u32,
    /// Its exit code.
    pub exit: i32,
    /// Whether policy holds it for approval.
    pub approval: bool,
    /// Whether each run leaves node-side evidence (a chat job's plain
    /// `echo` does not; its runs are not counted).
    pub evidence: bool,
}

impl Expect {
    /// The job's stdout as it must be stored.
    pub fn output(&self) -> String {
        (1..=self.lines)
            .map(|i| format!("{}-{i}\n", self.label))
            .collect()
    }
}

/// What the test saw of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The job's state at each look after the group settled (two or more).
    pub states: Vec<String>,
    /// Its exit code, as the gateway reports it.
    pub exit_code: Option<i32>,
    /// Its stored stdout (`openclaw job logs`).
    pub output: String,
    /// How many times it started on a node (node-side evidence).
    pub runs: u32,
    /// `job.approve` audit rows for it.
    pub approvals_applied: u32,
    /// `openclaw job approve` calls for it that succeeded.
    pub approvals_accepted: u32,
    /// A foreground follower's exit code and stdout, if one followed it.
    pub followed: Option<(i32, String)>,
}

/// One job: its id, what it must do, what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobHistory {
    /// The gateway's job id.
    pub id: u64,
    /// What it must do.
    pub expect: Expect,
    /// What the test saw.
    pub seen: Seen,
}

/// A line of the lease's history in a gateway's log, in the log's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseClaim {
    /// The gateway's name.
    pub gateway: String,
    /// The generation.
    pub generation: u64,
    /// `false`: the database made this generation for the gateway (a
    /// takeover committed); `true`: the gateway serves as leader with it.
    pub served: bool,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The looks disagree, or the state is not terminal.
    NotOneTerminalState { job: u64, states: Vec<String> },
    /// An exited job's exit code is not the one its command returns.
    ExitCode {
        job: u64,
        want: i32,
        got: Option<i32>,
    },
    /// Stored output with a gap, a duplicate or a foreign line.
    Output { job: u64, want: String, got: String },
    /// The node-side evidence shows a number of runs that cannot be.
    Runs { job: u64, runs: u32, state: String },
    /// Two gateways took one generation.
    TwoLeaders {
        generation: u64,
        gateways: Vec<String>,
    },
    /// A gateway took (or served) a generation not above its previous one.
    GenerationWentBack { gateway: String, from: u64, to: u64 },
    /// A gateway served a generation the database never gave it.
    ServedUntaken { gateway: String, generation: u64 },
    /// An approval applied twice, applied to a job that needed none, or
    /// accepted and then lost.
    Approval {
        job: u64,
        accepted: u32,
        applied: u32,
        state: String,
    },
    /// The foreground follower printed other lines or returned another code.
    Follower {
        job: u64,
        want: (i32, String),
        got: (i32, String),
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotOneTerminalState { job, states } => {
                write!(f, "job {job}: not exactly one terminal state: {states:?}")
            }
            Violation::ExitCode { job, want, got } => {
                write!(f, "job {job}: exit code {got:?}, want {want}")
            }
            Violation::Output { job, want, got } => {
                write!(f, "job {job}: output {got:?}, want {want:?}")
            }
            Violation::Runs { job, runs, state } => {
                write!(
                    f,
                    "job {job}: ran {runs} time(s) on its node, state {state}"
                )
            }
            Violation::TwoLeaders {
                generation,
                gateways,
            } => write!(f, "generation {generation} taken by {gateways:?}"),
            Violation::GenerationWentBack { gateway, from, to } => {
                write!(f, "{gateway} took generation {to} after {from}")
            }
            Violation::ServedUntaken {
                gateway,
                generation,
            } => write!(
                f,
                "{gateway} served generation {generation}, which the database never gave it"
            ),
            Violation::Approval {
                job,
                accepted,
                applied,
                state,
            } => write!(
                f,
                "job {job}: {accepted} approval(s) accepted, {applied} applied, state {state}"
            ),
            Violation::Follower { job, want, got } => write!(
                f,
                "job {job}: the follower returned {} with {:?}, want {} with {:?}",
                got.0, got.1, want.0, want.1
            ),
        }
    }
}

/// Every violation in `jobs` and `claims`, in job order, then the lease's.
pub fn check(jobs: &[JobHistory], claims: &[LeaseClaim]) -> Vec<Violation> {
    let mut out = Vec::new();
    for j in jobs {
        check_job(j, &mut out);
    }
    check_lease(claims, &mut out);
    out
}

fn check_job(j: &JobHistory, out: &mut Vec<Violation>) {
    let (id, e, s) = (j.id, &j.expect, &j.seen);
    let last = s.states.last().cloned().unwrap_or_default();
    let state = JobState::parse(&last);
    let one = s.states.len() >= 2
        && s.states.iter().all(|x| *x == last)
        && state.is_some_and(JobState::is_terminal);
    if !one {
        out.push(Violation::NotOneTerminalState {
            job: id,
            states: s.states.clone(),
        });
    }
    let exited = state == Some(JobState::Exited);
    if exited && s.exit_code != Some(e.exit) {
        out.push(Violation::ExitCode {
            job: id,
            want: e.exit,
            got: s.exit_code,
        });
    }
    let want = e.output();
    let output_ok = if exited {
        s.output == want
    } else {
        want.starts_with(&s.output)
    };
    if !output_ok {
        out.push(Violation::Output {
            job: id,
            want: want.clone(),
            got: s.output.clone(),
        });
    }
    // Once at most; once exactly when it exited, or printed anything.
    let must_have_run = e.evidence && (exited || !s.output.is_empty());
    if s.runs > 1 || (must_have_run && s.runs == 0) {
        out.push(Violation::Runs {
            job: id,
            runs: s.runs,
            state: last.clone(),
        });
    }
    let approval_ok = if e.approval {
        let pending = state == Some(JobState::AwaitingApproval);
        s.approvals_applied <= 1
            && (s.approvals_accepted == 0 || (s.approvals_applied == 1 && !pending))
            // A job that ran was approved.
            && (s.runs == 0 || s.approvals_applied == 1)
    } else {
        s.approvals_applied == 0
    };
    if !approval_ok {
        out.push(Violation::Approval {
            job: id,
            accepted: s.approvals_accepted,
            applied: s.approvals_applied,
            state: last.clone(),
        });
    }
    if let Some(got) = &s.followed {
        let want = (e.exit, want);
        if *got != want {
            out.push(Violation::Follower {
                job: id,
                want,
                got: got.clone(),
            });
        }
    }
}

fn check_lease(claims: &[LeaseClaim], out: &mut Vec<Violation>) {
    let mut holders: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut last: BTreeMap<(&str, bool), u64> = BTreeMap::new();
    for c in claims {
        let h = holders.entry(c.generation).or_default();
        if !h.contains(&c.gateway) {
            h.push(c.gateway.clone());
        }
        let key = (c.gateway.as_str(), c.served);
        if let Some(&from) = last.get(&key)
            && c.generation <= from
        {
            out.push(Violation::GenerationWentBack {
                gateway: c.gateway.clone(),
                from,
                to: c.generation,
            });
        }
        last.insert(key, c.generation);
        let made = claims
            .iter()
            .any(|m| !m.served && m.gateway == c.gateway && m.generation == c.generation);
        if c.served && !made {
            out.push(Violation::ServedUntaken {
                gateway: c.gateway.clone(),
                generation: c.generation,
            });
        }
    }
    for (generation, gateways) in holders {
        if gateways.len() > 1 {
            out.push(Violation::TwoLeaders {
                generation,
                gateways,
            });
        }
    }
}

/// The lease's history in one gateway's log (its stderr, tracing's plain
/// format, colours or not): `… took a new generation of the leader lease
/// holder=NAME generation=N` and `… took the leader lease; serving
/// gateway=NAME generation=N`.
pub fn lease_claims(log: &str) -> Vec<LeaseClaim> {
    strip_ansi(log)
        .lines()
        .filter_map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .map(|v| v.trim_matches('"').to_string())
            };
            let (served, name) = if l.contains("took the leader lease; serving") {
                (true, field("gateway=")?)
            } else if l.contains("took a new generation of the leader lease") {
                (false, field("holder=")?)
            } else {
                return None;
            };
            Some(LeaseClaim {
                gateway: name,
                generation: field("generation=")?.parse().ok()?,
                served,
            })
        })
        .collect()
}

/// `text` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A small seeded generator (splitmix64) for the fault schedule: the same
/// seed gives the same schedule on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited() -> String {
        JobState::Exited.as_str().to_string()
    }

    /// A job that did everything right: 3 lines, exit 2, ran once.
    fn good(id: u64, approval: bool) -> JobHistory {
        let expect = Expect {
            label: format!("j{id}"),
            lines: 3,
            exit: 2,
            approval,
            evidence: true,
        };
        let output = expect.output();
        JobHistory {
            id,
            expect,
            seen: Seen {
                states: vec![exited(), exited()],
                exit_code: Some(2),
                output: output.clone(),
                runs: 1,
                approvals_applied: u32::from(approval),
                approvals_accepted: u32::from(approval),
                followed: Some((2, output)),
            },
        }
    }

    /// Each gateway takes, then serves, each generation listed.
    fn claims(list: &[(&str, u64)]) -> Vec<LeaseClaim> {
        list.iter()
            .flat_map(|(g, n)| {
                [false, true].map(|served| LeaseClaim {
                    gateway: g.to_string(),
                    generation: *n,
                    served,
                })
            })
            .collect()
    }

    fn one(jobs: &[JobHistory]) -> Violation {
        let v = check(jobs, &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].clone()
    }

    #[test]
    fn a_clean_history_passes() {
        let jobs = [good(1, false), good(2, true)];
        let lease = claims(&[("a", 1), ("b", 2), ("a", 3)]);
        assert_eq!(check(&jobs, &lease), []);
        assert_eq!(good(1, false).expect.output(), "j1-1\nj1-2\nj1-3\n");
    }

    #[test]
    fn two_terminal_states_or_none_fail() {
        let mut j = good(1, false);
        j.seen.states = vec![exited(), JobState::Lost.as_str().into()];
        assert!(matches!(
            one(&[j]),
            Violation::NotOneTerminalState { job: 1, .. }
        ));
        let mut j = good(1, false);
        j.seen.states = vec![JobState::Running.as_str().into(); 2];
        j.seen.output = "j1-1\n".into();
        j.seen.followed = None;
        assert!(matches!(one(&[j]), Violation::NotOneTerminalState { .. }));
        // One look proves nothing.
        let mut j = good(1, false);
        j.seen.states.pop();
        assert!(matches!(one(&[j]), Violation::NotOneTerminalState { .. }));
    }

    #[test]
    fn a_lost_exit_code_fails() {
        let mut j = good(1, false);
        j.seen.exit_code = Some(0);
        assert!(matches!(
            one(&[j]),
            Violation::ExitCode {
                want: 2,
                got: Some(0),
                ..
            }
        ));
    }

    #[test]
    fn a_gap_a_duplicate_or_a_stranger_in_the_output_fails() {
        for bad in [
            "j1-1\nj1-3\n",
            "j1-1\nj1-2\nj1-2\nj1-3\n",
            "j1-1\nj1-2\nj1-3\nj1-3\n",
            "j1-1\nj1-2\n",
            "j1-1\nj1-2\nj1-3\nj9-1\n",
        ] {
            let mut j = good(1, false);
            j.seen.output = bad.into();
            j.seen.followed = None;
            assert!(matches!(one(&[j]), Violation::Output { .. }), "{bad:?}");
        }
        // A job that ended otherwise (lost, cancelled) shows a prefix;
        // a duplicate there still fails.
        let mut j = good(1, false);
        j.seen.states = vec![JobState::Lost.as_str().into(); 2];
        j.seen.output = "j1-1\nj1-2\n".into();
        j.seen.followed = None;
        assert_eq!(check(&[j.clone()], &[]), []);
        j.seen.output = "j1-1\nj1-1\n".into();
        assert!(matches!(one(&[j]), Violation::Output { .. }));
    }

    #[test]
    fn a_job_that_ran_twice_or_exited_without_running_fails() {
        let mut j = good(1, false);
        j.seen.runs = 2;
        assert!(matches!(one(&[j]), Violation::Runs { runs: 2, .. }));
        let mut j = good(1, false);
        j.seen.runs = 0;
        assert!(matches!(one(&[j.clone()]), Violation::Runs { runs: 0, .. }));
        // A job without evidence (a chat job's echo) is not counted, but
        // a second run it did record still fails.
        j.expect.evidence = false;
        assert_eq!(check(&[j.clone()], &[]), []);
        j.seen.runs = 2;
        assert!(matches!(one(&[j]), Violation::Runs { runs: 2, .. }));
    }

    #[test]
    fn two_leaders_in_one_generation_fail() {
        let v = check(&[], &claims(&[("a", 1), ("b", 2), ("a", 2)]));
        assert_eq!(
            v,
            [Violation::TwoLeaders {
                generation: 2,
                gateways: vec!["b".into(), "a".into()]
            }]
        );
        let v = check(&[], &claims(&[("a", 3), ("a", 2)]));
        let back = Violation::GenerationWentBack {
            gateway: "a".into(),
            from: 3,
            to: 2,
        };
        assert_eq!(v, [back.clone(), back]);
        // Serving a generation the database gave no one, or another.
        let mut c = claims(&[("a", 1)]);
        c.push(LeaseClaim {
            gateway: "b".into(),
            generation: 2,
            served: true,
        });
        assert_eq!(
            check(&[], &c),
            [Violation::ServedUntaken {
                gateway: "b".into(),
                generation: 2
            }]
        );
    }

    #[test]
    fn an_approval_applied_twice_lost_or_unneeded_fails() {
        // Applied twice.
        let mut j = good(1, true);
        j.seen.approvals_applied = 2;
        j.seen.approvals_accepted = 2;
        assert!(matches!(one(&[j]), Violation::Approval { applied: 2, .. }));
        // Accepted, then lost: still awaiting, nothing applied.
        let mut j = good(1, true);
        j.seen.states = vec![JobState::AwaitingApproval.as_str().into(); 2];
        j.seen.output.clear();
        j.seen.runs = 0;
        j.seen.approvals_applied = 0;
        j.seen.followed = None;
        let v = check(&[j], &[]);
        assert!(
            v.iter().any(|x| matches!(
                x,
                Violation::Approval {
                    accepted: 1,
                    applied: 0,
                    ..
                }
            )),
            "{v:?}"
        );
        // Applied, yet still awaiting.
        let mut j = good(1, true);
        j.seen.states = vec![JobState::AwaitingApproval.as_str().into(); 2];
        j.seen.output.clear();
        j.seen.runs = 0;
        j.seen.followed = None;
        let v = check(&[j], &[]);
        assert!(
            v.iter()
                .any(|x| matches!(x, Violation::Approval { applied: 1, .. })),
            "{v:?}"
        );
        // Ran without an approval.
        let mut j = good(1, true);
        j.seen.approvals_applied = 0;
        j.seen.approvals_accepted = 0;
        assert!(matches!(one(&[j]), Violation::Approval { applied: 0, .. }));
        // An approval on a job that needed none.
        let mut j = good(1, false);
        j.seen.approvals_applied = 1;
        assert!(matches!(one(&[j]), Violation::Approval { applied: 1, .. }));
    }

    #[test]
    fn a_follower_with_other_lines_or_code_fails() {
        let mut j = good(1, false);
        j.seen.followed = Some((0, j.expect.output()));
        assert!(matches!(one(&[j]), Violation::Follower { .. }));
        let mut j = good(1, false);
        j.seen.followed = Some((2, "j1-1\nj1-1\nj1-2\nj1-3\n".into()));
        assert!(matches!(one(&[j]), Violation::Follower { .. }));
    }

    #[test]
    fn lease_claims_are_read_from_a_gateway_log() {
        let log = "2026-12-06T06:00:00Z  INFO gateway::ha: standby: another gateway leads\n\
                   2026-12-06T06:00:01Z  INFO gateway::store::lease: took a new generation of the leader lease holder=test-gw-2 generation=7\n\
                   2026-12-06T06:00:01Z  INFO gateway::ha: took the leader lease; serving gateway=test-gw-2 generation=7\n\
                   garbage took the leader lease; serving generation=x\n\
                   \u{1b}[2m06:00:02\u{1b}[0m took the leader lease; serving \u{1b}[3mgateway\u{1b}[0m\u{1b}[2m=\u{1b}[0mtest-gw \u{1b}[3mgeneration\u{1b}[0m\u{1b}[2m=\u{1b}[0m8\n";
        let mut want = claims(&[("test-gw-2", 7)]);
        want.push(LeaseClaim {
            gateway: "test-gw".into(),
            generation: 8,
            served: true,
        });
        assert_eq!(lease_claims(log), want);
    }

    #[test]
    fn the_schedule_is_the_seeds() {
        let a: Vec<u64> = (0..5).scan(Rng::new(42), |r, _| Some(r.below(6))).collect();
        let b: Vec<u64> = (0..5).scan(Rng::new(42), |r, _| Some(r.below(6))).collect();
        let c: Vec<u64> = (0..5).scan(Rng::new(43), |r, _| Some(r.below(6))).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|x| *x < 6));
    }
}
