//! Choosing a node for a job. Pure: it sees a snapshot of node views.

use proto::{ApiError, ErrorCode, NodeState};

/// What routing knows about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Name.
    pub name: String,
    /// Enrollment state.
    pub state: NodeState,
    /// Connected right now.
    pub connected: bool,
    /// Connected and heartbeats on time.
    pub healthy: bool,
    /// Labels.
    pub labels: Vec<String>,
    /// GPUs the node offers now: its claim capped by what the token or an
    /// admin confirmed (`registry::capped_gpus`); 0 while offline.
    pub gpus_total: u32,
    /// Its confirmed GPU cap (0 when nobody confirmed any): the most it
    /// could offer, whatever it claims, until an admin changes the cap.
    pub gpu_cap: u32,
    /// GPUs held by live jobs.
    pub gpus_busy: u32,
    /// Confirmed GPUs that no job holds and no new job may get: unhealthy
    /// (lost, ECC errors) or MIG-enabled, as the node judged them. They
    /// may come back, so asking for them is worth a wait, not a refusal.
    pub gpus_unusable: u32,
    /// Live jobs.
    pub running: u32,
    /// The node's job limit.
    pub max_jobs: u32,
    /// "3m ago", for messages.
    pub last_seen: String,
}

impl NodeView {
    fn gpus_free(&self) -> u32 {
        self.gpus_total
            .saturating_sub(self.gpus_busy)
            .saturating_sub(self.gpus_unusable)
    }

    /// ", 1 unhealthy or MIG: see 'openclaw node show N'" when some are.
    fn unusable_note(&self) -> String {
        match self.gpus_unusable {
            0 => String::new(),
            u => format!(
                ", {u} unhealthy or MIG-enabled: see 'openclaw node show {}'",
                self.name
            ),
        }
    }

    fn has_room(&self, gpus: u32) -> bool {
        self.gpus_free() >= gpus && self.running < self.max_jobs
    }

    fn has_role(&self, role: &str) -> bool {
        self.labels.iter().any(|l| l == role) || (role == "gpu" && self.gpus_total > 0)
    }

    /// The most GPUs this node could ever give one job as things stand:
    /// a connected node's confirmed GPUs, or for one that is away, its
    /// confirmed cap (it may come back with that many). Only an admin
    /// raising the cap, or a node coming back with more, can change it.
    fn gpu_ceiling(&self) -> u32 {
        if self.connected {
            self.gpus_total
        } else {
            self.gpu_cap
        }
    }
}

/// The smaller request that could run, for messages.
fn fewer(most: u32) -> String {
    match most {
        0 => "run it without GPUs".into(),
        m => format!("ask for at most {m} GPU(s)"),
    }
}

/// Why no node was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The target does not exist.
    Unknown(String),
    /// The target exists but cannot take jobs (offline, not approved).
    Unavailable(String),
    /// Nodes exist but none has free capacity now; worth queueing for.
    Busy(String),
    /// No matching node could ever meet the request as asked (more GPUs
    /// than any has confirmed): waiting in the queue would never end.
    Never(String),
}

impl RouteError {
    /// Whether waiting may help a new job (`--queue`).
    pub fn is_busy(&self) -> bool {
        matches!(self, RouteError::Busy(_))
    }

    /// Whether a job already in the queue keeps waiting: for capacity, and
    /// for a node that is away (a gateway that just started, a standby
    /// that took over, waits for its nodes to reconnect). Only an unknown
    /// target ends it. A new job still fails at once on an offline node.
    pub fn queued_job_waits(&self) -> bool {
        matches!(self, RouteError::Busy(_) | RouteError::Unavailable(_))
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> ApiError {
        match e {
            RouteError::Unknown(m) => ApiError::new(ErrorCode::NotFound, m),
            RouteError::Unavailable(m) | RouteError::Busy(m) => {
                ApiError::new(ErrorCode::Unavailable, m)
            }
            RouteError::Never(m) => ApiError::new(ErrorCode::Unsatisfiable, m),
        }
    }
}

/// The closest of `known` to `name`, if it is close enough to be a typo.
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (proto::names::edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 4) && *d > 0)
        .min()
        .map(|(_, k)| k)
}

/// Routes to an explicit node.
pub fn to_node(nodes: &[NodeView], name: &str, gpus: u32) -> Result<String, RouteError> {
    let Some(n) = nodes.iter().find(|n| n.name == name) else {
        let known: Vec<&str> = nodes
            .iter()
            .filter(|n| n.state == NodeState::Approved)
            .map(|n| n.name.as_str())
            .collect();
        let mut msg = format!("unknown node {name:?}");
        if let Some(c) = closest(name, known.iter().copied()) {
            msg.push_str(&format!("; did you mean {c}?"));
        }
        if known.is_empty() {
            msg.push_str("; no nodes are enrolled yet ('openclaw node enroll')");
        } else {
            msg.push_str(&format!("; known nodes: {}", known.join(", ")));
        }
        return Err(RouteError::Unknown(msg));
    };
    if n.state != NodeState::Approved {
        return Err(RouteError::Unavailable(format!(
            "node {name} is {} and cannot run jobs; run 'openclaw node list'",
            n.state
        )));
    }
    if gpus > n.gpu_ceiling() {
        let most = n.gpu_ceiling();
        let has = match (n.connected, most) {
            (_, 0) => "has no confirmed GPUs".to_string(),
            (true, c) => format!("has {c} confirmed GPU(s)"),
            (false, c) => format!("is offline and offers at most {c} confirmed GPU(s)"),
        };
        return Err(RouteError::Never(format!(
            "node {name} {has} and the job asks for {gpus}: it could never run there, however long \
             it waited; {}, or an admin confirms more with 'openclaw node approve {name} --gpus N'",
            fewer(most)
        )));
    }
    if !n.connected {
        return Err(RouteError::Unavailable(format!(
            "node {name} is offline (last seen {}); run 'openclaw node list'",
            n.last_seen
        )));
    }
    if n.gpus_free() < gpus {
        return Err(RouteError::Busy(format!(
            "node {name} has {} of {} GPUs free{} and the job asks for {gpus}; retry later or pass --queue",
            n.gpus_free(),
            n.gpus_total,
            n.unusable_note()
        )));
    }
    if n.running >= n.max_jobs {
        return Err(RouteError::Busy(format!(
            "node {name} is running its maximum of {} jobs; retry later or pass --queue",
            n.max_jobs
        )));
    }
    Ok(n.name.clone())
}

/// Routes by role: the healthy, connected node with that label (or, for
/// `gpu`, with GPUs) that has the most free GPUs, then the fewest jobs.
pub fn to_role(nodes: &[NodeView], role: &str, gpus: u32) -> Result<String, RouteError> {
    let with_role: Vec<&NodeView> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Approved && n.has_role(role))
        .collect();
    if with_role.is_empty() {
        let mut roles: Vec<&str> = nodes
            .iter()
            .flat_map(|n| n.labels.iter().map(String::as_str))
            .collect();
        roles.sort_unstable();
        roles.dedup();
        let mut msg = format!("no node has the role {role:?}");
        if let Some(c) = closest(role, roles.iter().copied()) {
            msg.push_str(&format!("; did you mean {c}?"));
        }
        if !roles.is_empty() {
            msg.push_str(&format!("; roles in use: {}", roles.join(", ")));
        }
        return Err(RouteError::Unknown(msg));
    }
    if let Some(most) = with_role.iter().map(|n| n.gpu_ceiling()).max()
        && gpus > most
    {
        let mut holders: Vec<&str> = with_role
            .iter()
            .filter(|n| n.gpu_ceiling() == most)
            .map(|n| n.name.as_str())
            .collect();
        holders.sort_unstable();
        let largest = if most == 0 {
            "none of them has a confirmed GPU".to_string()
        } else {
            format!("the most any has is {most} ({})", holders.join(", "))
        };
        return Err(RouteError::Never(format!(
            "no {role} node has {gpus} GPUs ({largest}): the job could never run, however long it \
             waited; {}, or an admin confirms more with 'openclaw node approve NODE --gpus N'",
            fewer(most)
        )));
    }
    let best = with_role
        .iter()
        .filter(|n| n.connected && n.healthy && n.has_room(gpus))
        .max_by(|a, b| {
            a.gpus_free()
                .cmp(&b.gpus_free())
                .then(b.running.cmp(&a.running))
                .then(b.name.cmp(&a.name))
        });
    if let Some(n) = best {
        return Ok(n.name.clone());
    }
    let detail: Vec<String> = with_role
        .iter()
        .map(|n| {
            if !n.connected {
                format!("{} offline", n.name)
            } else if !n.healthy {
                format!("{} unhealthy", n.name)
            } else {
                format!(
                    "{} {} of {} GPUs free{}, {} jobs",
                    n.name,
                    n.gpus_free(),
                    n.gpus_total,
                    n.unusable_note(),
                    n.running
                )
            }
        })
        .collect();
    let msg = format!(
        "no healthy {role} node has room for a job with {gpus} GPU(s) ({}); retry later or pass --queue",
        detail.join("; ")
    );
    if with_role.iter().any(|n| n.connected && n.healthy) {
        Err(RouteError::Busy(msg))
    } else {
        Err(RouteError::Unavailable(msg))
    }
}

/// The nodes a fan-out runs on, and the matching nodes it leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Approved, connected, healthy nodes that match, by name.
    pub nodes: Vec<String>,
    /// Matching approved nodes that cannot run it now, and why.
    pub skipped: Vec<(String, String)>,
}

/// Picks a fan-out's nodes: approved nodes with `role` (if given) and
/// every one of `labels`. Capacity is checked later, at each node's turn.
pub fn select(nodes: &[NodeView], role: Option<&str>, labels: &[String]) -> Selection {
    let mut sel = Selection::default();
    let mut matching: Vec<&NodeView> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Approved)
        .filter(|n| role.is_none_or(|r| n.has_role(r)))
        .filter(|n| labels.iter().all(|l| n.labels.contains(l)))
        .collect();
    matching.sort_by(|a, b| a.name.cmp(&b.name));
    for n in matching {
        if !n.connected {
            sel.skipped.push((
                n.name.clone(),
                format!("offline (last seen {})", n.last_seen),
            ));
        } else if !n.healthy {
            sel.skipped
                .push((n.name.clone(), "unhealthy: see 'openclaw node show'".into()));
        } else {
            sel.nodes.push(n.name.clone());
        }
    }
    sel
}

/// [`to_node`] for a job that also names a role: the node must have it
/// (confirmed labels, or `gpu` with confirmed GPUs).
pub fn to_node_with_role(
    nodes: &[NodeView],
    name: &str,
    role: &str,
    gpus: u32,
) -> Result<String, RouteError> {
    if let Some(n) = nodes.iter().find(|n| n.name == name)
        && !n.has_role(role)
    {
        return Err(RouteError::Unknown(format!(
            "node {name} does not have the role {role:?}; run 'openclaw node list' to see its labels"
        )));
    }
    to_node(nodes, name, gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, labels: &[&str], gpus: u32, busy: u32, running: u32) -> NodeView {
        NodeView {
            name: name.into(),
            state: NodeState::Approved,
            connected: true,
            healthy: true,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            gpus_total: gpus,
            gpu_cap: gpus,
            gpus_busy: busy,
            gpus_unusable: 0,
            running,
            max_jobs: 8,
            last_seen: "now".into(),
        }
    }

    #[test]
    fn unhealthy_gpus_are_not_free_but_worth_waiting_for() {
        // Node a: 2 GPUs, one unhealthy; node b: 2 GPUs, both fine but one busy.
        let a = NodeView {
            gpus_unusable: 1,
            ..view("a", &["gpu"], 2, 0, 0)
        };
        let b = view("b", &["gpu"], 2, 1, 1);
        let nodes = [a.clone(), b.clone()];
        assert_eq!(to_node(&nodes, "a", 1), Ok("a".into()));
        let e = to_node(&nodes, "a", 2).unwrap_err();
        assert!(e.is_busy(), "{e:?}");
        assert!(
            matches!(&e, RouteError::Busy(m) if m.contains("1 of 2 GPUs free, 1 unhealthy or MIG-enabled")),
            "{e:?}"
        );
        // By role: fewest jobs breaks the tie of one free GPU each.
        assert_eq!(to_role(&nodes, "gpu", 1), Ok("a".into()));
        let all_sick = NodeView {
            gpus_unusable: 2,
            ..a
        };
        assert_eq!(to_role(&[all_sick.clone(), b], "gpu", 1), Ok("b".into()));
        assert!(to_role(&[all_sick], "gpu", 1).unwrap_err().is_busy());
    }

    #[test]
    fn only_capacity_makes_a_new_job_wait_but_a_queued_one_waits_for_its_node_too() {
        let cases = [
            (RouteError::Busy("full".into()), true, true),
            (RouteError::Unavailable("offline".into()), false, true),
            (RouteError::Unknown("no such node".into()), false, false),
            (RouteError::Never("too many GPUs".into()), false, false),
        ];
        for (e, new_waits, queued_waits) in cases {
            assert_eq!(e.is_busy(), new_waits, "{e:?}");
            assert_eq!(e.queued_job_waits(), queued_waits, "{e:?}");
        }
    }

    #[test]
    fn a_node_with_a_role_must_have_it() {
        let nodes = vec![
            view("worker-cpu-01", &["cpu"], 0, 0, 0),
            view("worker-gpu-01", &[], 2, 0, 0),
            view("worker-gpu-02", &["gpu"], 0, 0, 0),
        ];
        let cases = [
            ("worker-cpu-01", "cpu", Ok("worker-cpu-01")),
            ("worker-cpu-01", "gpu", Err("does not have the role")),
            // The implicit role: confirmed GPUs.
            ("worker-gpu-01", "gpu", Ok("worker-gpu-01")),
            ("worker-gpu-02", "gpu", Ok("worker-gpu-02")),
            ("worker-nope", "cpu", Err("unknown node")),
        ];
        for (node, role, want) in cases {
            match (to_node_with_role(&nodes, node, role, 0), want) {
                (Ok(n), Ok(w)) => assert_eq!(n, w),
                (Err(RouteError::Unknown(m)), Err(w)) => assert!(m.contains(w), "{m}"),
                (got, want) => panic!("{node} {role}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn explicit_node() {
        let mut off = view("worker-gpu-02", &["gpu"], 2, 0, 0);
        off.connected = false;
        off.last_seen = "3m ago".into();
        let nodes = vec![view("worker-gpu-01", &["gpu"], 2, 2, 2), off];
        assert_eq!(
            to_node(&nodes, "worker-gpu-01", 0).unwrap(),
            "worker-gpu-01"
        );
        let e = to_node(&nodes, "worker-gpu-1", 0).unwrap_err();
        assert!(
            matches!(&e, RouteError::Unknown(m) if m.contains("did you mean worker-gpu-01?") && m.contains("known nodes")),
            "{e:?}"
        );
        let e = to_node(&nodes, "worker-gpu-02", 0).unwrap_err();
        assert!(
            matches!(&e, RouteError::Unavailable(m) if m.contains("offline (last seen 3m ago)")),
            "{e:?}"
        );
        assert!(to_node(&nodes, "worker-gpu-01", 1).unwrap_err().is_busy());
    }

    #[test]
    fn role_prefers_free_gpus_then_fewest_jobs() {
        let nodes = vec![
            view("a", &["gpu"], 4, 3, 1),
            view("b", &[], 4, 1, 3),
            view("c", &["gpu"], 4, 1, 1),
            view("d", &["cpu"], 0, 0, 0),
        ];
        // b has no gpu label but reports GPUs; b and c tie on free GPUs, c runs fewer jobs.
        assert_eq!(to_role(&nodes, "gpu", 1).unwrap(), "c");
        assert_eq!(to_role(&nodes, "cpu", 0).unwrap(), "d");
        let e = to_role(&nodes, "tpu", 0).unwrap_err();
        assert!(
            matches!(&e, RouteError::Unknown(m) if m.contains("roles in use: cpu, gpu")),
            "{e:?}"
        );
        let e = to_role(&nodes, "gpu", 4).unwrap_err();
        assert!(e.is_busy(), "{e:?}");
    }

    #[test]
    fn role_skips_unhealthy_and_offline() {
        let mut sick = view("a", &["gpu"], 8, 0, 0);
        sick.healthy = false;
        let mut gone = view("b", &["gpu"], 8, 0, 0);
        gone.connected = false;
        let e = to_role(&[sick.clone(), gone.clone()], "gpu", 1).unwrap_err();
        assert!(
            matches!(&e, RouteError::Unavailable(m) if m.contains("a unhealthy") && m.contains("b offline")),
            "{e:?}"
        );
        assert_eq!(
            to_role(&[sick, gone, view("c", &["gpu"], 1, 0, 0)], "gpu", 1).unwrap(),
            "c"
        );
    }

    /// What a routing result is, for the table below.
    fn kind(r: &Result<String, RouteError>) -> String {
        match r {
            Ok(n) => format!("ok {n}"),
            Err(RouteError::Unknown(_)) => "unknown".into(),
            Err(RouteError::Unavailable(_)) => "unavailable".into(),
            Err(RouteError::Busy(_)) => "busy".into(),
            Err(RouteError::Never(_)) => "never".into(),
        }
    }

    /// Nodes, `node` or `role`, the target, GPUs asked; the outcome and
    /// what its message says.
    type Case<'a> = (
        &'a [NodeView],
        &'a str,
        &'a str,
        u32,
        &'a str,
        &'a [&'a str],
    );

    #[test]
    fn a_request_no_node_could_ever_meet_is_never_busy() {
        // gpu-01: 2 confirmed GPUs, both busy. gpu-02: offline, cap 4.
        // cpu-01: no GPUs. rogue: claims 8, none confirmed (cap 0).
        let busy = view("gpu-01", &["gpu"], 2, 2, 2);
        let mut away = view("gpu-02", &["gpu"], 0, 0, 0);
        away.connected = false;
        away.gpu_cap = 4;
        let cpu = view("cpu-01", &["cpu"], 0, 0, 0);
        let mut rogue = view("rogue", &["gpu"], 0, 0, 0);
        rogue.gpu_cap = 0;
        let small = vec![busy.clone(), cpu.clone(), rogue.clone()];
        let with_away = vec![busy.clone(), away.clone(), cpu.clone()];
        let cases: &[Case<'_>] = &[
            // Explicit node: more than it has confirmed is never.
            (
                &small,
                "node",
                "gpu-01",
                3,
                "never",
                &[
                    "node gpu-01 has 2 confirmed GPU(s) and the job asks for 3",
                    "at most 2 GPU(s)",
                ],
            ),
            (&small, "node", "gpu-01", 2, "busy", &["pass --queue"]),
            (&small, "node", "gpu-01", 0, "ok gpu-01", &[]),
            (
                &small,
                "node",
                "cpu-01",
                1,
                "never",
                &[
                    "has no confirmed GPUs",
                    "without GPUs",
                    "node approve cpu-01 --gpus N",
                ],
            ),
            (
                &small,
                "node",
                "rogue",
                1,
                "never",
                &["has no confirmed GPUs"],
            ),
            (&small, "node", "cpu-01", 0, "ok cpu-01", &[]),
            // Offline: its cap bounds what it could bring back.
            (&with_away, "node", "gpu-02", 4, "unavailable", &["offline"]),
            (
                &with_away,
                "node",
                "gpu-02",
                5,
                "never",
                &["offline and offers at most 4"],
            ),
            // By role: the largest confirmed count among the role's nodes.
            (
                &small,
                "role",
                "gpu",
                3,
                "never",
                &[
                    "no gpu node has 3 GPUs (the most any has is 2 (gpu-01))",
                    "at most 2 GPU(s)",
                ],
            ),
            (
                &small,
                "role",
                "gpu",
                2,
                "busy",
                &["retry later or pass --queue"],
            ),
            (&with_away, "role", "gpu", 4, "busy", &["gpu-02 offline"]),
            (
                &with_away,
                "role",
                "gpu",
                5,
                "never",
                &["the most any has is 4 (gpu-02)"],
            ),
            (
                &small,
                "role",
                "cpu",
                1,
                "never",
                &[
                    "no cpu node has 1 GPUs (none of them has a confirmed GPU)",
                    "without GPUs",
                ],
            ),
            (&small, "role", "cpu", 0, "ok cpu-01", &[]),
            (
                &small,
                "role",
                "tpu",
                9,
                "unknown",
                &["no node has the role"],
            ),
        ];
        for (nodes, by, target, gpus, want, says) in cases {
            let got = match *by {
                "node" => to_node(nodes, target, *gpus),
                _ => to_role(nodes, target, *gpus),
            };
            assert_eq!(&kind(&got), want, "{by} {target} --gpus {gpus}: {got:?}");
            let msg = match &got {
                Ok(_) => String::new(),
                Err(
                    RouteError::Unknown(m)
                    | RouteError::Unavailable(m)
                    | RouteError::Busy(m)
                    | RouteError::Never(m),
                ) => m.clone(),
            };
            for s in *says {
                assert!(
                    msg.contains(s),
                    "{by} {target} --gpus {gpus}: {msg:?} lacks {s:?}"
                );
            }
            if *want == "never" {
                assert!(!msg.contains("retry later"), "{msg}");
                let api = ApiError::from(got.unwrap_err());
                assert_eq!(api.code, ErrorCode::Unsatisfiable);
            }
        }
    }

    #[test]
    fn distances() {
        assert_eq!(
            closest("wrker-gpu-01", ["worker-gpu-01", "other"]),
            Some("worker-gpu-01")
        );
        assert_eq!(closest("zzzzzzzzzz", ["worker-gpu-01"]), None);
    }

    #[test]
    fn fan_out_selection() {
        let mut off = view("b-off", &["gpu", "zone=eu"], 2, 0, 0);
        off.connected = false;
        off.last_seen = "2m ago".into();
        let mut sick = view("c-sick", &["gpu"], 1, 0, 0);
        sick.healthy = false;
        let mut pending = view("d-pending", &["gpu"], 1, 0, 0);
        pending.state = NodeState::Pending;
        let nodes = vec![
            view("e-cpu", &["cpu", "zone=eu"], 0, 0, 0),
            off,
            sick,
            pending,
            view("a-gpu", &["zone=eu"], 4, 4, 8),
        ];
        let names = |s: &Selection| s.nodes.clone();
        let skipped = |s: &Selection| s.skipped.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let all = select(&nodes, None, &[]);
        assert_eq!(names(&all), ["a-gpu", "e-cpu"], "sorted, busy nodes kept");
        assert_eq!(
            skipped(&all),
            ["b-off", "c-sick"],
            "pending nodes are not named"
        );
        assert!(all.skipped[0].1.contains("2m ago"), "{:?}", all.skipped);
        let gpu = select(&nodes, Some("gpu"), &[]);
        assert_eq!(names(&gpu), ["a-gpu"], "gpu matches nodes with GPUs");
        let eu = select(&nodes, None, &["zone=eu".into()]);
        assert_eq!(names(&eu), ["a-gpu", "e-cpu"]);
        assert_eq!(skipped(&eu), ["b-off"]);
        let both = select(&nodes, Some("cpu"), &["zone=eu".into(), "x".into()]);
        assert_eq!(both, Selection::default());
    }
}
