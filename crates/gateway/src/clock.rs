//! The gateway's one clock. Every timer, expiry, grace period, heartbeat
//! age, retention cut-off, rate limit and lease decision reads time here,
//! never from `SystemTime` or `std::time::Instant` (a tidy test checks).
//!
//! [`Clock::now`] is tokio's clock, which a test pauses and moves
//! (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`);
//! [`Clock::unix`] is the wall-clock time read once when the clock was
//! made, plus the time tokio's clock moved since. The two therefore move
//! together: a test that advances tokio by an hour sees jobs, tokens and
//! audit rows an hour older, with no sleep. Pure functions keep taking
//! `now` as a parameter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point on the gateway's monotonic clock (tokio's, which tests pause).
pub type Instant = tokio::time::Instant;

/// Wall-clock and monotonic time for a running gateway.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unix time when `base` was read.
    unix_base: Duration,
    /// tokio's clock when the clock was made.
    base: Instant,
}

impl Clock {
    /// The system's clock: the wall-clock time now, moving with tokio's.
    pub fn system() -> Clock {
        let unix_base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            unix_base,
            base: Instant::now(),
        }
    }

    /// A clock whose Unix time is `unix_secs` now and moves with tokio's
    /// clock: a test's fixed starting date.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn starting_at(unix_secs: u64) -> Clock {
        Clock {
            unix_base: Duration::from_secs(unix_secs),
            base: Instant::now(),
        }
    }

    /// The monotonic time now (tokio's clock).
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// Time since `earlier` on the monotonic clock.
    pub fn since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }

    /// Unix time now, in seconds.
    pub fn unix(&self) -> u64 {
        self.unix_duration().as_secs()
    }

    /// Unix time now, in milliseconds.
    pub fn unix_ms(&self) -> u64 {
        u64::try_from(self.unix_duration().as_millis()).unwrap_or(u64::MAX)
    }

    fn unix_duration(&self) -> Duration {
        self.unix_base
            .saturating_add(self.now().saturating_duration_since(self.base))
    }
}

/// Unix seconds now, for the CLI's commands around the gateway (`node
/// list`, `doctor`). The running gateway never calls it: it reads
/// `shared.clock`, which tests can pause (a tidy test checks).
pub fn unix_now() -> u64 {
    Clock::system().unix()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unix_time_moves_with_tokio_time() {
        let clock = Clock::starting_at(1_000);
        let t0 = clock.now();
        assert_eq!(clock.unix(), 1_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.unix(), 1_090);
        assert_eq!(clock.unix_ms(), 1_090_000);
        assert_eq!(clock.since(t0), Duration::from_secs(90));
    }

    #[test]
    fn the_system_clock_is_near_the_wall_clock() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let unix = Clock::system().unix();
        assert!(unix.abs_diff(wall) <= 1, "{unix} vs {wall}");
    }
}
