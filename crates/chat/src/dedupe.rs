//! Remembering which platform events were handled, so a redelivered event
//! (Slack's retries, WeCom's repeated `msgid`) is acted on once. Pure: the
//! caller passes the time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Event ids seen in the last `keep`, at most `max` of them.
#[derive(Debug)]
pub struct Seen {
    at: HashMap<String, Instant>,
    keep: Duration,
    max: usize,
}

impl Seen {
    /// Remembers ids for `keep` (longer than the platform's retry window),
    /// at most `max` at once (the oldest are forgotten first).
    pub fn new(keep: Duration, max: usize) -> Seen {
        Seen {
            at: HashMap::new(),
            keep,
            max: max.max(1),
        }
    }

    /// Whether `id` was seen within `keep` of `now`; remembers it either way.
    pub fn check(&mut self, id: &str, now: Instant) -> bool {
        if let Some(t) = self.at.get(id)
            && now.saturating_duration_since(*t) < self.keep
        {
            return true;
        }
        if self.at.len() >= self.max {
            let keep = self.keep;
            self.at
                .retain(|_, t| now.saturating_duration_since(*t) < keep);
            while self.at.len() >= self.max {
                let Some(oldest) = self
                    .at
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.at.remove(&oldest);
            }
        }
        self.at.insert(id.to_string(), now);
        false
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_within_the_window() {
        let t0 = Instant::now();
        let mut s = Seen::new(Duration::from_secs(60), 10);
        assert!(!s.check("e1", t0));
        assert!(s.check("e1", t0 + Duration::from_secs(59)));
        assert!(!s.check("e2", t0));
        // After the window the id is new again.
        assert!(!s.check("e1", t0 + Duration::from_secs(200)));
    }

    #[test]
    fn memory_is_bounded_and_forgets_the_oldest() {
        let t0 = Instant::now();
        let mut s = Seen::new(Duration::from_secs(3600), 3);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(!s.check(id, t0 + Duration::from_secs(i as u64)));
        }
        assert_eq!(s.len(), 3);
        assert!(s.check("d", t0 + Duration::from_secs(5)));
        assert!(
            !s.check("a", t0 + Duration::from_secs(6)),
            "the oldest was forgotten"
        );
    }
}
