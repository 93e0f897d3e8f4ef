//! The gateway group as nodes and clients see it: every gateway sharing
//! this state (PostgreSQL) registers its advertised address; the leader
//! tells each node session the group's addresses after its welcome and
//! whenever the group changes ([`ControlMsg::Gateways`]), and answers
//! clients' [`proto::Request::GatewaySet`]. Nodes and clients write them
//! into node.toml and client.toml (`mesh::group`), so a credential or a
//! node made before a gateway joined reaches it after a failover. A
//! gateway alone (SQLite) is no group: it sends nothing and answers an
//! empty list, and nobody's file changes.

use std::sync::Arc;
use std::time::Duration;

use proto::{ApiError, ControlMsg, ErrorCode};

use crate::shared::Shared;

/// How often the leader looks at the group for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The group's addresses, this gateway's first (a node or client tries
/// them in order, and this one leads): then every other registered
/// gateway by name, without repeats or unbound (`:0`) addresses, at most
/// [`proto::MAX_GROUP`]. Pure.
pub fn addresses(advertise: &str, registered: &[(String, String)]) -> Vec<String> {
    let mut addrs = vec![advertise.to_string()];
    for (_, a) in registered {
        if !addrs.contains(a) && !a.ends_with(":0") {
            addrs.push(a.clone());
        }
    }
    addrs.truncate(proto::MAX_GROUP);
    addrs
}

/// The group's addresses now, from the store (what clients are told: a
/// cached list could be a moment old and drop a gateway that just
/// joined); empty for a gateway alone. Blocking.
pub fn current(shared: &Shared) -> Result<Vec<String>, ApiError> {
    if !shared.shared_state {
        return Ok(Vec::new());
    }
    let registered = shared.store.tx(|tx| tx.gateways())?;
    Ok(addresses(&shared.advertise, &registered))
}

/// Tells a node that just connected the group, read fresh (the watch's
/// list may be a moment old, and a node replaces its list with what it is
/// told), through its control queue: the session's setup never waits on
/// the database for it. Only on shared state, only to protocol 3.
pub fn tell_node(shared: &Arc<Shared>, protocol: u32, control: crate::registry::Control) {
    if !shared.shared_state || protocol < 3 {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let s = shared.clone();
        match crate::shared::off_runtime(&shared, move |_| current(&s)).await {
            Ok(Ok(addrs)) if !addrs.is_empty() => {
                let _ = control.send(Box::new(ControlMsg::Gateways { addrs })).await;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) | Err(e) => {
                tracing::warn!("cannot read the gateway group for a node: {}", e.message);
            }
        }
    });
}

/// The leader's watch: reads the group every [`WATCH_EVERY`] and, when it
/// changed, tells every connected node of protocol 3 (older nodes would
/// not know the message). Runs only on shared state.
pub async fn watch(shared: Arc<Shared>) {
    if !shared.shared_state {
        return;
    }
    loop {
        let s = shared.clone();
        match crate::shared::off_runtime(&shared, move |_| current(&s)).await {
            Ok(Ok(addrs)) => {
                let changed = {
                    let mut g = match shared.group.lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    let changed = *g != addrs;
                    if changed {
                        g.clone_from(&addrs);
                    }
                    changed
                };
                if changed {
                    let told = shared.registry.broadcast_to(
                        3,
                        &ControlMsg::Gateways {
                            addrs: addrs.clone(),
                        },
                    );
                    tracing::info!(
                        ?addrs,
                        nodes = told,
                        "the gateway group changed; told the nodes"
                    );
                }
            }
            Ok(Err(e)) | Err(e) => {
                tracing::warn!("cannot read the gateway group: {}", e.message);
            }
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// `openclaw gateway leave NAME`: removes a gateway from the group. A
/// gateway that ran lately is refused (it would register again when it
/// next starts, and a running one may still take the lease): stop it
/// first. The leader itself cannot leave. Blocking.
pub fn leave(shared: &Shared, by: &str, name: &str) -> Result<String, ApiError> {
    let fail = |code, msg: String| Err(ApiError::new(code, msg));
    if !shared.shared_state {
        return fail(
            ErrorCode::FailedPrecondition,
            "this gateway is not in a group (its state is not shared); there is nothing to leave"
                .into(),
        );
    }
    if name == shared.config().name {
        return fail(
            ErrorCode::FailedPrecondition,
            format!(
                "{name} is the leader answering this call; stop it, let a standby take over, \
                 then run 'openclaw gateway leave {name}' again"
            ),
        );
    }
    let ages = shared.store.gateway_ages()?;
    let Some((_, _, age)) = ages.iter().find(|(n, _, _)| n == name) else {
        let names: Vec<&str> = ages.iter().map(|(n, _, _)| n.as_str()).collect();
        return fail(
            ErrorCode::NotFound,
            format!(
                "no gateway named {name:?} in the group (it has: {}); see 'openclaw gateway status'",
                names.join(", ")
            ),
        );
    };
    let quiet = shared
        .config()
        .state
        .lease_ttl
        .as_secs()
        .saturating_mul(3)
        .max(1);
    if let Some(age) = age
        && u64::try_from(*age).unwrap_or(0) < quiet
    {
        return fail(
            ErrorCode::FailedPrecondition,
            format!(
                "gateway {name} was seen {age} s ago and may still be running; stop it, wait \
                 {quiet} s, then run 'openclaw gateway leave {name}' again"
            ),
        );
    }
    let now = shared.clock.unix();
    shared.store.tx(|tx| {
        tx.remove_gateway(name)?;
        tx.audit(now, by, "gateway.leave", name, "removed from the group")
    })?;
    Ok(format!(
        "gateway {name} left the group; nodes and clients drop its address at their next session"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(n, a)| ((*n).to_string(), (*a).to_string()))
            .collect()
    }

    #[test]
    fn the_answering_gateway_comes_first_then_the_others_once() {
        let r = reg(&[
            ("gw-a", "10.0.0.1:7443"),
            ("gw-b", "10.0.0.2:7443"),
            ("gw-c", "10.0.0.3:0"),
            ("gw-d", "10.0.0.2:7443"),
        ]);
        assert_eq!(
            addresses("10.0.0.2:7443", &r),
            vec!["10.0.0.2:7443".to_string(), "10.0.0.1:7443".to_string()]
        );
        let many: Vec<(String, String)> = (0..40)
            .map(|i| (format!("g{i}"), format!("10.0.1.{i}:1")))
            .collect();
        assert_eq!(addresses("me:1", &many).len(), proto::MAX_GROUP);
    }
}
