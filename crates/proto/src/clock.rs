//! Unix times as calendar dates and clock times, in UTC. Pure: the time
//! is always a parameter. Chat replies and the dashboard both write times
//! this way.

use std::fmt;

/// How long ago `then` was at `now`, for people: `3m10s ago`, `just now`
/// (also for a `then` ahead of `now`, as a skewed clock gives). The CLI,
/// chat and the gateway's messages say it this way.
pub fn ago(then: u64, now: u64) -> String {
    if then >= now {
        return "just now".into();
    }
    format!(
        "{} ago",
        crate::duration::format(std::time::Duration::from_secs(now - then))
    )
}

/// A moment as a UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// Year, e.g. 2026.
    pub year: u64,
    /// Month, 1 to 12.
    pub month: u64,
    /// Day of the month, 1 to 31.
    pub day: u64,
    /// Hour, 0 to 23.
    pub hour: u64,
    /// Minute, 0 to 59.
    pub minute: u64,
    /// Second, 0 to 59.
    pub second: u64,
}

impl Utc {
    /// The moment `unix` seconds after 1970-01-01 00:00 UTC.
    pub fn from_unix(unix: u64) -> Utc {
        let (days, secs) = (unix / 86_400, unix % 86_400);
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Utc {
            year: yoe + era * 400 + u64::from(month <= 2),
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }

    /// `2026-12-05`.
    pub fn date(&self) -> String {
        format!("{}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `14:03`.
    pub fn hh_mm(&self) -> String {
        format!("{:02}:{:02}", self.hour, self.minute)
    }

    /// `2026-12-05T14:03:09Z`: RFC 3339, for machines (an HTML
    /// `datetime` attribute).
    pub fn rfc3339(&self) -> String {
        format!("{}T{}:{:02}Z", self.date(), self.hh_mm(), self.second)
    }
}

/// `2026-12-05 14:03:09 UTC`.
impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{:02} UTC", self.date(), self.hh_mm(), self.second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago_reads_as_people_say_it() {
        assert_eq!(ago(100, 100), "just now");
        assert_eq!(ago(200, 100), "just now");
        assert_eq!(ago(0, 190), "3m10s ago");
    }

    #[test]
    fn calendar_dates_in_utc() {
        let cases = [
            (0, "1970-01-01 00:00:00 UTC"),
            (951_782_400, "2000-02-29 00:00:00 UTC"),
            (1_796_503_613, "2026-12-05 20:46:53 UTC"),
            (4_107_542_399, "2100-02-28 23:59:59 UTC"),
            (4_107_542_400, "2100-03-01 00:00:00 UTC"),
        ];
        for (unix, want) in cases {
            assert_eq!(Utc::from_unix(unix).to_string(), want, "{unix}");
        }
        assert_eq!(
            Utc::from_unix(1_796_503_613).rfc3339(),
            "2026-12-05T20:46:53Z"
        );
    }
}
