//! `Request::Usage` (`openclaw usage`, chat `usage`, the dashboard's usage
//! page): the store's GPU use over a window, grouped by the pure
//! [`crate::fair::usage`]. A lab member or a chat user sees their own jobs
//! only; an admin sees everyone's.

use std::sync::Arc;

use proto::{
    ApiError, ErrorCode, MAX_USAGE_DAYS, MAX_USAGE_ROWS, Response, Role, UsageBy, UsageReport,
};

use super::{err, identity};
use crate::fair::usage::{day_of, days, lines, queue_points};
use crate::peer::Peer;
use crate::shared::Shared;
use crate::store::JobState;

/// Usage over the last `since_secs` seconds, grouped `by`.
pub fn usage(
    shared: &Arc<Shared>,
    peer: &Peer,
    since_secs: u64,
    by: UsageBy,
    on_behalf_of: Option<&str>,
) -> Result<Response, ApiError> {
    let who = identity(peer, on_behalf_of)?;
    if since_secs == 0 || since_secs > MAX_USAGE_DAYS * 86_400 {
        return Err(err(
            ErrorCode::InvalidArgument,
            format!("--since must be between 1s and {MAX_USAGE_DAYS}d"),
        ));
    }
    let own_only = peer.role != Role::Admin;
    let now = shared.clock.unix();
    let since = now.saturating_sub(since_secs);
    let (jobs, rolled, unfinished) = shared.store.tx(|tx| {
        Ok::<_, ApiError>((
            tx.usage_since(since, now)?,
            tx.rolled_usage(day_of(since))?,
            tx.unfinished_jobs()?,
        ))
    })?;
    let waiting_since: Vec<u64> = unfinished
        .iter()
        .filter(|r| r.state == JobState::Queued && (!own_only || r.requester == who))
        .map(|r| r.created_at)
        .collect();
    let mut jobs: Vec<_> = jobs.into_iter().map(|r| r.used).collect();
    let mut rolled = rolled;
    if own_only {
        jobs.retain(|u| u.requester == who);
        rolled.retain(|r| r.requester == who);
    }
    let mut lines = lines(&jobs, &rolled, by, since, now);
    lines.truncate(MAX_USAGE_ROWS);
    let mut days = days(&jobs, &rolled, by, since, now);
    days.retain(|d| lines.iter().any(|l| l.key == d.key));
    let queue = queue_points(&jobs, &waiting_since, since, now);
    Ok(Response::Usage(UsageReport {
        since,
        until: now,
        by,
        lines,
        days,
        own_only,
        queue,
    }))
}
