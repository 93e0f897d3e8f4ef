//! Capped exponential backoff with jitter. Pure: the random part is a parameter.

use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 1 s: a node is back within about a second of the
    /// gateway listening again, and 10,000 of them spread over that second.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based). `random` in
    /// `[0, 1)` picks a point in the upper half of the window ("equal
    /// jitter"), so retries never bunch at zero and never exceed the cap.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        let window = exp.min(self.cap);
        let r = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.5
        };
        window / 2 + window.mul_f64(r / 2.0)
    }
}

/// A random fraction in `[0, 1)` from the OS.
pub fn random_fraction() -> f64 {
    let mut b = [0u8; 4];
    if pki::random_bytes(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_jitter_in_range() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(200));
        for attempt in [4, 10, 40, u32::MAX] {
            for r in [0.0, 0.3, 0.999, f64::NAN] {
                let d = b.delay(attempt, r);
                assert!(
                    d >= Duration::from_millis(500) && d <= Duration::from_secs(1),
                    "{attempt} {r} {d:?}"
                );
            }
        }
        let r = random_fraction();
        assert!((0.0..1.0).contains(&r));
    }
}
