//! A leader and its standbys on shared PostgreSQL state.
//!
//! Every gateway on PostgreSQL starts as a standby: it binds its address
//! and refuses every connection at once (so nodes and clients move to the
//! next address in their list), and tries to take the leader lease a few
//! times per lease time. The one that takes it fences its store with the
//! lease's generation and serves. It renews the lease four times per lease
//! time; when another gateway holds it, or the database has not answered
//! for three quarters of the lease time, it stops: it closes every
//! connection and the process exits, so no session, dispatch or signing
//! outlives its leadership, and a stale transaction is refused by the
//! store's fence anyway. A restart makes it a standby again.
//!
//! The lease itself (row, generation, fencing) is in [`crate::store`].

use std::time::Duration;

use crate::clock::Clock;

use crate::store::Store;

/// How one lease call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This gateway holds it, at this generation.
    Held(u64),
    /// Another gateway's lease runs, for about this long yet.
    Taken(Duration),
    /// The database did not answer (in time): why.
    Unknown(String),
}

/// How long a standby waits before asking for the lease again: until just
/// after the holder's lease would lapse (its renewals push that on, and it
/// asks again then), at most a lease time; a sixth of one when the
/// database did not answer. Pure.
pub fn standby_pause(outcome: &Lease, ttl: Duration) -> Duration {
    match outcome {
        Lease::Taken(left) => (*left + LAPSE_MARGIN).min(ttl),
        Lease::Held(_) | Lease::Unknown(_) => ttl / 6,
    }
}

/// How long after a lease's end a standby asks for it: the database's
/// clock and ours both tick between the answer and the next attempt.
const LAPSE_MARGIN: Duration = Duration::from_millis(15);

/// What a leader's keeper decides after each renewal: pure, so the rules
/// are a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still the leader.
    Lead,
    /// Step down now, for this reason.
    StepDown(String),
}

/// The keeper's rule: a renewal that comes back with our generation keeps
/// us leading; any other holder or generation ends it; without an answer
/// we lead on only until three quarters of the lease time since the last
/// good renewal, well before the lease can lapse and a standby take over.
pub fn judge(generation: u64, outcome: &Lease, since_good: Duration, ttl: Duration) -> Verdict {
    match outcome {
        Lease::Held(g) if *g == generation => Verdict::Lead,
        Lease::Held(g) => Verdict::StepDown(format!(
            "the lease moved to generation {g} (ours was {generation})"
        )),
        Lease::Taken(left) if left.is_zero() => Verdict::StepDown(
            "our lease lapsed before a renewal reached the database; a standby takes it".into(),
        ),
        Lease::Taken(_) => Verdict::StepDown("another gateway holds the leader lease".into()),
        Lease::Unknown(why) if since_good >= ttl * 3 / 4 => Verdict::StepDown(format!(
            "the database has not renewed our lease for {:.1}s ({why})",
            since_good.as_secs_f64()
        )),
        Lease::Unknown(_) => Verdict::Lead,
    }
}

/// One bounded attempt to take or renew the lease. An attempt that does
/// not answer in time goes on in the store's runtime and ends by itself
/// (see [`Store::take_lease`]).
pub async fn try_lease(store: &Store, name: &str, ttl: Duration) -> Lease {
    bounded(store.take_lease(name, ttl), ttl).await
}

/// One bounded renewal by the leader at `generation` (see
/// [`Store::renew_lease`]): never a new generation.
pub async fn try_renew(store: &Store, name: &str, generation: u64, ttl: Duration) -> Lease {
    bounded(store.renew_lease(name, generation, ttl), ttl).await
}

async fn bounded(
    attempt: impl std::future::Future<Output = Result<Result<u64, i64>, crate::store::StoreError>>,
    ttl: Duration,
) -> Lease {
    match tokio::time::timeout(ttl / 2, attempt).await {
        Ok(Ok(Ok(g))) => Lease::Held(g),
        Ok(Ok(Err(left_ms))) => {
            Lease::Taken(Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)))
        }
        Ok(Err(e)) => Lease::Unknown(e.to_string()),
        Err(_) => Lease::Unknown(format!("no answer within {:?}", ttl / 2)),
    }
}

/// Waits as a standby until this gateway takes the lease; refuses every
/// connection on `endpoint` meanwhile. Returns the generation.
pub async fn wait_for_lease(
    store: &Store,
    name: &str,
    ttl: Duration,
    endpoint: &quinn::Endpoint,
    attempts: &std::sync::atomic::AtomicU64,
) -> u64 {
    let ep = endpoint.clone();
    let refuser = tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            incoming.refuse();
        }
    });
    let mut said = false;
    let generation = loop {
        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let outcome = try_lease(store, name, ttl).await;
        match &outcome {
            Lease::Held(g) => break *g,
            Lease::Taken(_) if !said => {
                said = true;
                tracing::info!(
                    gateway = %name,
                    "standby: another gateway leads; refusing connections until its lease lapses"
                );
            }
            Lease::Taken(_) => {}
            Lease::Unknown(why) => tracing::warn!(gateway = %name, "standby: {why}"),
        }
        tokio::time::sleep(standby_pause(&outcome, ttl)).await;
    };
    refuser.abort();
    let _ = refuser.await;
    tracing::info!(gateway = %name, generation, "took the leader lease; serving");
    generation
}

/// What the leader's lease has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct LeaseStats {
    /// The generation held (the number of leaders so far).
    pub generation: std::sync::atomic::AtomicU64,
    /// Renewals that came back with our generation.
    pub renewals: std::sync::atomic::AtomicU64,
    /// Renewals that got no answer in time.
    pub unanswered: std::sync::atomic::AtomicU64,
}

/// Renews the lease until leadership ends; returns why.
pub async fn keep_lease(
    store: Store,
    name: String,
    ttl: Duration,
    generation: u64,
    stats: std::sync::Arc<LeaseStats>,
    clock: Clock,
) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    stats.generation.store(generation, Relaxed);
    let mut good = clock.now();
    loop {
        tokio::time::sleep(ttl / 4).await;
        let outcome = try_renew(&store, &name, generation, ttl).await;
        match outcome {
            Lease::Held(g) if g == generation => {
                good = clock.now();
                stats.renewals.fetch_add(1, Relaxed);
            }
            Lease::Unknown(_) => {
                stats.unanswered.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        if let Verdict::StepDown(why) = judge(generation, &outcome, good.elapsed(), ttl) {
            return why;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_asks_again_just_as_the_lease_lapses() {
        let ttl = Duration::from_millis(1500);
        let ms = Duration::from_millis;
        assert_eq!(standby_pause(&Lease::Taken(ms(1200)), ttl), ms(1215));
        assert_eq!(standby_pause(&Lease::Taken(ms(0)), ttl), ms(15));
        // A lease longer than ours (another gateway's config) is not
        // waited out in one sleep.
        assert_eq!(standby_pause(&Lease::Taken(ms(60_000)), ttl), ttl);
        assert_eq!(standby_pause(&Lease::Unknown("x".into()), ttl), ms(250));
    }

    #[test]
    fn the_keeper_steps_down_before_the_lease_can_lapse() {
        let ttl = Duration::from_secs(4);
        let s = Duration::from_secs;
        let cases = [
            (Lease::Held(7), s(0), true),
            (Lease::Held(7), s(100), true),
            (Lease::Held(8), s(0), false),
            (Lease::Taken(s(1)), s(0), false),
            (Lease::Taken(s(0)), s(0), false),
            (Lease::Unknown("x".into()), s(2), true),
            (Lease::Unknown("x".into()), s(3), false),
            (Lease::Unknown("x".into()), s(10), false),
        ];
        for (outcome, since, leads) in cases {
            let v = judge(7, &outcome, since, ttl);
            assert_eq!(
                v == Verdict::Lead,
                leads,
                "{outcome:?} after {since:?}: {v:?}"
            );
        }
    }
}

/// What `openclaw gateway status` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// `sqlite` or `postgres`.
    pub engine: crate::store::EngineKind,
    /// The PostgreSQL URL, redacted (`proto::redact::url`).
    pub url: Option<String>,
    /// The leader lease: who holds it.
    pub leader: Option<String>,
    /// Its fencing generation (grows at every takeover).
    pub generation: Option<u64>,
    /// Milliseconds until the lease lapses without a renewal (negative:
    /// lapsed; a standby takes over).
    pub lease_left_ms: Option<i64>,
    /// Every gateway serving this state.
    pub gateways: Vec<GatewayEntry>,
    /// The database round trip for one small transaction, milliseconds.
    pub db_ms: f64,
}

/// One gateway sharing the state, as `gateway status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GatewayEntry {
    /// Its name.
    pub name: String,
    /// The address nodes and clients dial.
    pub address: String,
    /// Seconds since it last tried or renewed the lease, by the
    /// database's clock (`None`: it never ran).
    pub seen_secs_ago: Option<i64>,
}

/// Reads the state's leadership and health straight from the database
/// the home's gateway.toml names; needs no running gateway. Blocking.
pub fn status(home: &mesh::Home) -> Result<Status, crate::GatewayError> {
    let text = home.read_text(
        crate::files::CONFIG,
        "pass the gateway's --home (it holds gateway.toml)",
    )?;
    let config = crate::Config::parse(&text).map_err(|msg| crate::GatewayError::Config {
        path: home.path(crate::files::CONFIG).display().to_string(),
        msg,
    })?;
    crate::store::on_own_thread("gateway status panicked", || {
        let store = crate::open_state(home, &config.state)?;
        let clock = Clock::system();
        let t = clock.now();
        let gateways = store
            .gateway_ages()?
            .into_iter()
            .map(|(name, address, seen_secs_ago)| GatewayEntry {
                name,
                address,
                seen_secs_ago,
            })
            .collect();
        let db_ms = t.elapsed().as_secs_f64() * 1000.0;
        let lease = store.lease()?;
        Ok(Status {
            engine: store.engine(),
            url: config.state.url.as_deref().map(proto::redact::url),
            leader: lease.as_ref().map(|l| l.0.clone()),
            generation: lease.as_ref().map(|l| l.1),
            lease_left_ms: lease.as_ref().map(|l| l.2),
            gateways,
            db_ms,
        })
    })
}
