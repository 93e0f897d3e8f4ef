//! Pure decisions: token validity, enrollment collisions, connection and
//! health columns. Time is a parameter; nothing here does IO.

use std::time::Duration;

use proto::{ApiError, ErrorCode};

use crate::store::{NodeRow, NodeState, TokenRow};

/// Checks a presented token secret against its stored row.
pub fn check_token(
    row: Option<&TokenRow>,
    id: &str,
    secret: &str,
    now: u64,
) -> Result<(), ApiError> {
    let unauth = |m: String| ApiError::new(ErrorCode::Unauthenticated, m);
    let Some(row) = row else {
        return Err(unauth(format!(
            "join token {id} is not known to this gateway; create one with 'openclaw token create'"
        )));
    };
    if !pki::constant_time_eq(&pki::hash_secret(secret), &row.secret_hash) {
        return Err(unauth(format!(
            "join token {id} has the wrong secret; copy the whole token printed by 'openclaw token create'"
        )));
    }
    if row.revoked {
        return Err(unauth(format!(
            "join token {id} was revoked; create a new one with 'openclaw token create'"
        )));
    }
    if now >= row.expires_at {
        return Err(unauth(format!(
            "join token {id} expired {} ago; create a new one with 'openclaw token create'",
            proto::duration::format(Duration::from_secs(now - row.expires_at))
        )));
    }
    if row.uses_left == 0 {
        return Err(unauth(format!(
            "join token {id} is used up ({} of {} uses); create a new one with 'openclaw token create --uses N'",
            row.uses_total, row.uses_total
        )));
    }
    Ok(())
}

/// What to do with an enrollment request for a name that may already exist.
#[derive(Debug, PartialEq, Eq)]
pub enum Collision {
    /// The name is free (or its old row may be replaced).
    Free,
    /// The same key already has a pending request: answer with it again.
    SamePending,
}

/// What else holds a name a node asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A client credential (admin or bot), in any state.
    Client,
    /// A gateway (this one, or one sharing the state).
    Gateway,
}

impl Taken {
    fn what(self) -> &'static str {
        match self {
            Taken::Client => "a client credential (admin or bot)",
            Taken::Gateway => "a gateway",
        }
    }
}

/// Decides whether `name` may enroll with the key `fingerprint`.
/// `taken`: what else holds the name, if anything (a client credential in
/// any state, or a gateway): node, client and gateway names are one
/// namespace. A revoked node's name
/// stays taken until an admin releases it (`node release`), so nothing
/// bound to the name (queued work, grants in policy) follows a new key
/// by accident.
pub fn check_collision(
    existing: Option<&NodeRow>,
    taken: Option<Taken>,
    name: &str,
    fingerprint: &str,
) -> Result<Collision, ApiError> {
    if let Some(t) = taken {
        return Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!(
                "{name} is the name of {}, and nodes, clients and gateways share one namespace; \
                 enroll this node under another name",
                t.what()
            ),
        ));
    }
    match existing.map(|n| (n.state, n)) {
        None | Some((NodeState::Rejected, _)) => Ok(Collision::Free),
        Some((NodeState::Revoked, _)) => Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!(
                "node {name} was revoked, and a revoked name stays taken; if this node is meant to take the name, \
                 an admin must first run 'openclaw node release {name}'"
            ),
        )),
        Some((NodeState::Approved, _)) => Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!(
                "node {name} is already enrolled; to enroll it again, an admin must first run 'openclaw node revoke {name}' \
                 and then 'openclaw node release {name}'"
            ),
        )),
        Some((NodeState::Pending, n)) if n.fingerprint == fingerprint => Ok(Collision::SamePending),
        Some((NodeState::Pending, _)) => Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!(
                "an enrollment request for {name} is already pending with another key; \
                 an admin must approve or reject it first ('openclaw node list')"
            ),
        )),
    }
}

/// Liveness of a node's current connection, as the registry sees it.
#[derive(Debug, Clone, Copy)]
pub struct LiveView {
    /// Time since the last heartbeat (or since the connection started).
    pub heartbeat_age: Duration,
}

/// The CONNECTION and HEALTH columns of `node list`, and why HEALTH is
/// not `healthy`. Health is a pure function of the enrollment state, the
/// heartbeat age and the latest telemetry:
///
/// * `unhealthy`: connected, but two heartbeats are missing;
/// * `degraded`: a GPU is over `temp_limit_c`, or GPU telemetry failed,
///   or (still routable, [`gpu_faults`]) a GPU is unhealthy;
/// * `healthy`: otherwise, while connected;
/// * `-`: not connected (CONNECTION says `offline`, `pending`, ...).
pub fn status_columns(
    state: NodeState,
    live: Option<LiveView>,
    heartbeat_interval: Duration,
    telemetry: Option<&proto::Heartbeat>,
    gpu_health: &[proto::GpuHealth],
    temp_limit_c: u32,
) -> (&'static str, &'static str, Option<String>) {
    match state {
        NodeState::Pending => ("pending", "-", None),
        NodeState::Rejected => ("rejected", "-", None),
        NodeState::Revoked => ("revoked", "-", None),
        NodeState::Approved => match live {
            None => ("offline", "-", None),
            Some(l) if l.heartbeat_age > heartbeat_interval * 2 => (
                "connected",
                "unhealthy",
                Some(format!(
                    "no heartbeat for {}",
                    proto::duration::format(l.heartbeat_age)
                )),
            ),
            Some(_) => match telemetry
                .and_then(|t| degraded(t, temp_limit_c))
                .or_else(|| gpu_faults(gpu_health))
            {
                Some(why) => ("connected", "degraded", Some(why)),
                None => ("connected", "healthy", None),
            },
        },
    }
}

/// Why a node is degraded in a way that keeps it off routing: its GPU
/// telemetry failed as a whole, or a GPU runs hot. Pure. An unknown
/// temperature is not over any limit.
pub fn degraded(t: &proto::Heartbeat, temp_limit_c: u32) -> Option<String> {
    if let Some(e) = &t.gpu_error {
        return Some(format!("GPU telemetry failed: {e}"));
    }
    t.gpus
        .iter()
        .find_map(|g| g.temp().filter(|c| *c > temp_limit_c).map(|c| (g.index, c)))
        .map(|(i, c)| format!("GPU {i} at {c}°C (limit {temp_limit_c}°C)"))
}

/// Why some of a node's GPUs are unhealthy (`GPU 0 lost: ...; GPU 2 ...`),
/// by index; MIG is a setting, not a fault, and is left out. Pure. A node
/// degraded only for this stays routable with its healthy GPUs.
pub fn gpu_faults(health: &[proto::GpuHealth]) -> Option<String> {
    let faults: Vec<String> = health
        .iter()
        .enumerate()
        .filter_map(|(i, h)| match h {
            proto::GpuHealth::Unhealthy(why) => Some(format!("GPU {i} {why}")),
            _ => None,
        })
        .collect();
    (!faults.is_empty()).then(|| faults.join("; "))
}

/// Counts new connections per source address in fixed one-minute
/// windows. Pure: the caller passes the time. The table is bounded: when
/// it is full, addresses not seen this window are refused until it rolls.
#[derive(Debug, Default)]
pub struct RateLimiter {
    window_start: u64,
    counts: std::collections::HashMap<std::net::IpAddr, u32>,
}

/// Most source addresses tracked in one window.
pub const RATE_TABLE_LIMIT: usize = 65_536;

impl RateLimiter {
    /// Records a connection from `ip` at `now` (unix seconds); returns
    /// whether it is within `per_minute`.
    pub fn allow(&mut self, ip: std::net::IpAddr, now: u64, per_minute: u32) -> bool {
        if now >= self.window_start + 60 || now < self.window_start {
            self.window_start = now;
            self.counts.clear();
        }
        if !self.counts.contains_key(&ip) && self.counts.len() >= RATE_TABLE_LIMIT {
            return false;
        }
        let n = self.counts.entry(ip).or_insert(0);
        *n = n.saturating_add(1);
        *n <= per_minute
    }
}

/// Which jobs' logs to delete so that all logs fit in `max_bytes`: the
/// oldest ended jobs first (lowest ids), never a live one. Pure. `logs`
/// holds each job's id and its logs' total size.
pub fn logs_to_prune(
    logs: &[(u64, u64)],
    live: &std::collections::HashSet<u64>,
    max_bytes: u64,
) -> Vec<u64> {
    let mut total: u64 = logs.iter().map(|(_, b)| *b).sum();
    let mut sorted: Vec<&(u64, u64)> = logs.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    let mut out = Vec::new();
    for (id, bytes) in sorted {
        if total <= max_bytes {
            break;
        }
        if live.contains(id) {
            continue;
        }
        total = total.saturating_sub(*bytes);
        out.push(*id);
    }
    out
}

/// Whether a join token may carry `advertise` as the address nodes dial,
/// for a gateway bound to `bound`. A gateway that listens beyond loopback
/// must not hand out an address only it can dial (a node elsewhere would
/// dial itself), and a wildcard address is never dialable.
pub fn token_address(bound: std::net::SocketAddr, advertise: &str) -> Result<(), ApiError> {
    let host = advertise
        .rsplit_once(':')
        .map_or(advertise, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ip = host.parse::<std::net::IpAddr>().ok();
    let fix = "set advertise = \"HOST:PORT\" (an address the nodes can reach) under \
               [gateway] in gateway.toml and restart the gateway, or give \
               'openclaw gateway init --advertise HOST:PORT' for a new home";
    let refuse = |m: String| Err(ApiError::new(ErrorCode::FailedPrecondition, m));
    if ip.is_some_and(|ip| ip.is_unspecified()) {
        return refuse(format!(
            "tokens would carry {advertise}, a wildcard address that no node can dial; {fix}"
        ));
    }
    let loopback = ip.map_or(host.eq_ignore_ascii_case("localhost"), |ip| {
        ip.is_loopback()
    });
    if loopback && !bound.ip().is_loopback() {
        return refuse(format!(
            "tokens would carry {advertise}, which only this machine can dial, but the \
             gateway listens on {bound} for nodes elsewhere; {fix}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> TokenRow {
        TokenRow {
            id: "abcdef".into(),
            secret_hash: pki::hash_secret("s3cret").to_vec(),
            created_at: 0,
            expires_at: 1000,
            uses_total: 2,
            uses_left: 1,
            labels: vec![],
            auto_approve: false,
            revoked: false,
            max_gpus: None,
        }
    }

    #[test]
    fn token_table() {
        let ok = token();
        let revoked = TokenRow {
            revoked: true,
            ..token()
        };
        let used = TokenRow {
            uses_left: 0,
            ..token()
        };
        let cases: Vec<(Option<&TokenRow>, &str, u64, Option<&str>)> = vec![
            (Some(&ok), "s3cret", 10, None),
            (None, "s3cret", 10, Some("not known")),
            (Some(&ok), "wrong", 10, Some("wrong secret")),
            (Some(&revoked), "s3cret", 10, Some("revoked")),
            (Some(&ok), "s3cret", 1000, Some("expired")),
            (Some(&used), "s3cret", 10, Some("used up (2 of 2")),
        ];
        for (row, secret, now, want) in cases {
            let got = check_token(row, "abcdef", secret, now);
            match want {
                None => assert!(got.is_ok(), "{got:?}"),
                Some(w) => {
                    let e = got.unwrap_err();
                    assert_eq!(e.code, ErrorCode::Unauthenticated);
                    assert!(e.message.contains(w), "{w}: {}", e.message);
                    assert!(e.message.contains("openclaw token create"), "{}", e.message);
                }
            }
        }
    }

    fn node(state: NodeState, fp: &str) -> NodeRow {
        NodeRow::for_test("n", state, fp, 0)
    }

    #[test]
    fn collision_table() {
        let free = |n: Option<&NodeRow>, taken: bool| {
            check_collision(n, taken.then_some(Taken::Client), "n", "a")
        };
        assert_eq!(free(None, false).unwrap(), Collision::Free);
        assert_eq!(
            free(Some(&node(NodeState::Rejected, "b")), false).unwrap(),
            Collision::Free
        );
        assert_eq!(
            free(Some(&node(NodeState::Pending, "a")), false).unwrap(),
            Collision::SamePending
        );
        let e = free(Some(&node(NodeState::Pending, "b")), false).unwrap_err();
        assert!(e.message.contains("already pending"), "{}", e.message);
        // The other key's fingerprint is not handed to whoever tries.
        assert!(!e.message.contains("SHA256"), "{}", e.message);
        let e = free(Some(&node(NodeState::Approved, "a")), false).unwrap_err();
        assert_eq!(e.code, ErrorCode::AlreadyExists);
        assert!(
            e.message.contains("openclaw node revoke n"),
            "{}",
            e.message
        );
        // A revoked name stays taken, whatever the key, until released.
        for key in ["a", "b"] {
            let e =
                check_collision(Some(&node(NodeState::Revoked, "a")), None, "n", key).unwrap_err();
            assert_eq!(e.code, ErrorCode::AlreadyExists);
            assert!(
                e.message.contains("openclaw node release n"),
                "{}",
                e.message
            );
        }
        // A client's or a gateway's name is taken for nodes, in every
        // node state.
        for n in [None, Some(node(NodeState::Rejected, "a"))] {
            let e = free(n.as_ref(), true).unwrap_err();
            assert!(e.message.contains("client credential"), "{}", e.message);
            let e = check_collision(n.as_ref(), Some(Taken::Gateway), "n", "a").unwrap_err();
            assert!(e.message.contains("a gateway"), "{}", e.message);
        }
    }

    type Case<'a> = (
        NodeState,
        Option<LiveView>,
        Option<&'a proto::Heartbeat>,
        (&'a str, &'a str),
        Option<&'a str>,
    );

    #[test]
    fn gpu_faults_degrade_and_unknown_is_not_hot() {
        use proto::GpuHealth;
        let live = Some(LiveView {
            heartbeat_age: Duration::from_millis(10),
        });
        let unknown = proto::Heartbeat {
            gpus: vec![proto::GpuTelemetry {
                temp_c: proto::GPU_UNKNOWN,
                ..Default::default()
            }],
            ..Default::default()
        };
        let hb = Duration::from_secs(1);
        let cases: Vec<(Vec<GpuHealth>, &str, Option<&str>)> = vec![
            (vec![], "healthy", None),
            (vec![GpuHealth::Healthy, GpuHealth::Mig], "healthy", None),
            (
                vec![
                    GpuHealth::Unhealthy("lost: GPU is lost".into()),
                    GpuHealth::Healthy,
                ],
                "degraded",
                Some("GPU 0 lost: GPU is lost"),
            ),
            (
                vec![
                    GpuHealth::Unhealthy("lost: x".into()),
                    GpuHealth::Unhealthy("has 2 ECC".into()),
                ],
                "degraded",
                Some("GPU 0 lost: x; GPU 1 has 2 ECC"),
            ),
        ];
        for (health, want, why) in cases {
            let (_, h, reason) =
                status_columns(NodeState::Approved, live, hb, Some(&unknown), &health, 85);
            assert_eq!((h, reason.as_deref()), (want, why), "{health:?}");
        }
        assert_eq!(degraded(&unknown, 85), None);
    }

    #[test]
    fn status_table() {
        let hb = Duration::from_secs(1);
        let live = |ms| {
            Some(LiveView {
                heartbeat_age: Duration::from_millis(ms),
            })
        };
        let cool = proto::Heartbeat {
            gpus: vec![proto::GpuTelemetry {
                index: 0,
                temp_c: 60,
                ..Default::default()
            }],
            ..Default::default()
        };
        let hot = proto::Heartbeat {
            gpus: vec![
                proto::GpuTelemetry {
                    index: 0,
                    temp_c: 60,
                    ..Default::default()
                },
                proto::GpuTelemetry {
                    index: 1,
                    temp_c: 91,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let broken = proto::Heartbeat {
            gpu_error: Some("NVML lost GPU 0".into()),
            ..Default::default()
        };
        let cases: Vec<Case<'_>> = vec![
            (NodeState::Pending, None, None, ("pending", "-"), None),
            (NodeState::Rejected, None, None, ("rejected", "-"), None),
            (NodeState::Revoked, live(10), None, ("revoked", "-"), None),
            (
                NodeState::Approved,
                None,
                Some(&hot),
                ("offline", "-"),
                None,
            ),
            (
                NodeState::Approved,
                live(900),
                None,
                ("connected", "healthy"),
                None,
            ),
            (
                NodeState::Approved,
                live(900),
                Some(&cool),
                ("connected", "healthy"),
                None,
            ),
            (
                NodeState::Approved,
                live(2000),
                Some(&cool),
                ("connected", "healthy"),
                None,
            ),
            (
                NodeState::Approved,
                live(500),
                Some(&hot),
                ("connected", "degraded"),
                Some("GPU 1 at 91°C (limit 85°C)"),
            ),
            (
                NodeState::Approved,
                live(500),
                Some(&broken),
                ("connected", "degraded"),
                Some("NVML lost GPU 0"),
            ),
            (
                NodeState::Approved,
                live(2001),
                Some(&hot),
                ("connected", "unhealthy"),
                Some("no heartbeat for 2s"),
            ),
        ];
        for (state, l, t, want, why) in cases {
            let (c, h, reason) = status_columns(state, l, hb, t, &[], 85);
            assert_eq!((c, h), want, "{state:?} {l:?}");
            match why {
                None => assert_eq!(reason, None),
                Some(w) => assert!(
                    reason.as_deref().is_some_and(|r| r.contains(w)),
                    "{reason:?}"
                ),
            }
        }
    }

    #[test]
    fn rate_limiter_counts_per_address_per_minute() {
        let a: std::net::IpAddr = [127, 0, 0, 1].into();
        let b: std::net::IpAddr = [127, 0, 0, 2].into();
        let mut r = RateLimiter::default();
        assert!((0..3).all(|_| r.allow(a, 1000, 3)));
        assert!(!r.allow(a, 1010, 3), "the fourth in a minute is refused");
        assert!(r.allow(b, 1010, 3), "other addresses are not affected");
        assert!(r.allow(a, 1060, 3), "a new window starts");
    }

    #[test]
    fn logs_pruned_oldest_ended_first() {
        let logs = [(3, 100), (1, 100), (2, 100), (4, 100)];
        let live: std::collections::HashSet<u64> = [1].into_iter().collect();
        assert_eq!(logs_to_prune(&logs, &live, 400), Vec::<u64>::new());
        assert_eq!(logs_to_prune(&logs, &live, 250), vec![2, 3]);
        assert_eq!(logs_to_prune(&logs, &live, 0), vec![2, 3, 4]);
    }

    #[test]
    fn token_addresses_nodes_elsewhere_cannot_dial_are_refused() {
        let wide: std::net::SocketAddr = "0.0.0.0:7443".parse().unwrap();
        let lan: std::net::SocketAddr = "10.1.2.3:7443".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:7443".parse().unwrap();
        let v6: std::net::SocketAddr = "[::]:7443".parse().unwrap();
        for (bound, advertise, ok) in [
            (wide, "127.0.0.1:7443", false),
            (wide, "localhost:7443", false),
            (v6, "[::1]:7443", false),
            (lan, "127.0.0.1:7443", false),
            (wide, "0.0.0.0:7443", false),
            (local, "0.0.0.0:7443", false),
            (wide, "gw.example.org:7443", true),
            (wide, "10.1.2.3:7443", true),
            (v6, "[2001:db8::1]:7443", true),
            // A gateway on loopback is a local lab: loopback tokens are right.
            (local, "127.0.0.1:7443", true),
            (local, "localhost:7443", true),
        ] {
            let r = token_address(bound, advertise);
            assert_eq!(r.is_ok(), ok, "{bound} {advertise}: {r:?}");
            if let Err(e) = r {
                assert!(e.message.contains("advertise = "), "{}", e.message);
            }
        }
    }
}
