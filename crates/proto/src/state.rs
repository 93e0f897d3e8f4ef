//! The states of jobs and nodes, with their legal transitions: one type
//! each for the wire, the store, the live table, chat, the dashboard and
//! the CLI's exit codes. On the wire (`JobInfo::state`, `NodeInfo`) a state
//! travels as its word, so peers of the previous protocol read it; every
//! word comes from here. Pure.

/// Where a job is in its life. Stored and shown as its word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for capacity (`--queue`).
    Queued,
    /// Held by policy until an approver decides.
    AwaitingApproval,
    /// Sent to its node; not started yet.
    Starting,
    /// Its process runs.
    Running,
    /// Its process exited (any code).
    Exited,
    /// The node would not or could not start it.
    Failed,
    /// Cancelled by a person.
    Cancelled,
    /// Killed at its timeout.
    TimedOut,
    /// Refused by policy or an approver.
    Denied,
    /// Nobody approved it, or capacity never came, in time.
    Expired,
    /// Its node went away and did not come back in time.
    Lost,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 11] = [
        JobState::Queued,
        JobState::AwaitingApproval,
        JobState::Starting,
        JobState::Running,
        JobState::Exited,
        JobState::Failed,
        JobState::Cancelled,
        JobState::TimedOut,
        JobState::Denied,
        JobState::Expired,
        JobState::Lost,
    ];

    /// The state's word.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::AwaitingApproval => "awaiting-approval",
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Exited => "exited",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::TimedOut => "timed-out",
            JobState::Denied => "denied",
            JobState::Expired => "expired",
            JobState::Lost => "lost",
        }
    }

    /// Parses a state word.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            JobState::Queued | JobState::AwaitingApproval | JobState::Starting | JobState::Running
        )
    }

    /// Whether a job may move from `self` to `to`. Pure; the one table of
    /// legal transitions.
    pub fn can_move_to(self, to: JobState) -> bool {
        use JobState::*;
        match self {
            Queued => matches!(
                to,
                AwaitingApproval | Starting | Denied | Expired | Cancelled | Failed | Lost
            ),
            // Queued: an approved fan-out member waits for its turn.
            AwaitingApproval => {
                matches!(to, Queued | Starting | Denied | Expired | Cancelled | Lost)
            }
            // Denied here: the node's own policy refused it.
            Starting => matches!(
                to,
                Running | Exited | Failed | Cancelled | TimedOut | Lost | Denied
            ),
            Running => matches!(to, Exited | Failed | Cancelled | TimedOut | Lost),
            Exited | Failed | Cancelled | TimedOut | Denied | Expired | Lost => false,
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JobState {
    /// The states a job can still leave.
    pub fn unfinished() -> impl Iterator<Item = JobState> {
        JobState::ALL.into_iter().filter(|s| !s.is_terminal())
    }

    /// The states it can end in.
    pub fn ended() -> impl Iterator<Item = JobState> {
        JobState::ALL.into_iter().filter(|s| s.is_terminal())
    }
}

/// Enrollment state of a node. Stored and shown as its word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Waiting for an admin.
    Pending,
    /// Has a certificate.
    Approved,
    /// An admin said no. A new request may take the name.
    Rejected,
    /// Certificate revoked. The name stays taken until `node release`
    /// deletes the row.
    Revoked,
}

impl NodeState {
    /// Every state.
    pub const ALL: [NodeState; 4] = [
        NodeState::Pending,
        NodeState::Approved,
        NodeState::Rejected,
        NodeState::Revoked,
    ];

    /// The state word as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Approved => "approved",
            NodeState::Rejected => "rejected",
            NodeState::Revoked => "revoked",
        }
    }

    /// Parses a state word.
    pub fn parse(s: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether a node may move from `self` to `to`: the one table of legal
    /// transitions. A rejected request is replaced by a new one (a new
    /// row), and a revoked node's row is deleted by `node release`; neither
    /// moves back.
    pub fn can_move_to(self, to: NodeState) -> bool {
        use NodeState::*;
        matches!(
            (self, to),
            (Pending, Approved) | (Pending, Rejected) | (Pending, Revoked) | (Approved, Revoked)
        )
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fan-out's state, from its members' (the strictest wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FanState {
    /// Some member awaits approval: the whole fan-out does.
    AwaitingApproval,
    /// Some member has not ended.
    Running,
    /// Every member has ended.
    Done,
}

impl FanState {
    /// The state word, as `FanInfo::state` carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            FanState::AwaitingApproval => "awaiting-approval",
            FanState::Running => "running",
            FanState::Done => "done",
        }
    }

    /// The state of a fan-out whose members are in `members`.
    pub fn of(members: &[JobState]) -> FanState {
        if members.contains(&JobState::AwaitingApproval) {
            FanState::AwaitingApproval
        } else if members.iter().any(|s| !s.is_terminal()) {
            FanState::Running
        } else {
            FanState::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_round_trip_and_only_live_states_move() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            for to in JobState::ALL {
                if s.is_terminal() {
                    assert!(!s.can_move_to(to), "{s} -> {to}");
                }
            }
        }
        assert_eq!(JobState::parse("done"), None);
        assert_eq!(
            JobState::unfinished().count() + JobState::ended().count(),
            JobState::ALL.len()
        );
    }

    #[test]
    fn fan_state_is_the_strictest_member_state() {
        use JobState::*;
        let cases: &[(&[JobState], FanState)] = &[
            (&[Exited, Failed], FanState::Done),
            (&[], FanState::Done),
            (&[Exited, Running], FanState::Running),
            (&[Queued, Exited], FanState::Running),
            (&[AwaitingApproval, Queued], FanState::AwaitingApproval),
        ];
        for (states, want) in cases {
            assert_eq!(FanState::of(states), *want, "{states:?}");
        }
    }

    #[test]
    fn node_states_round_trip_and_move_only_forward() {
        use NodeState::*;
        for s in NodeState::ALL {
            assert_eq!(NodeState::parse(s.as_str()), Some(s));
        }
        let legal = [
            (Pending, Approved),
            (Pending, Rejected),
            (Pending, Revoked),
            (Approved, Revoked),
        ];
        for from in NodeState::ALL {
            for to in NodeState::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }
}
