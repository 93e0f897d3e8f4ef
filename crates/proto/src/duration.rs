//! Human durations such as `500ms`, `90s`, `10m`, `1h`, `30d`, `1h30m`. Pure.

use std::time::Duration;

/// Parses a duration. A bare number means seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. 30s, 10m, 1h or 30d".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {s:?}; write e.g. 30s, 10m, 1h or 30d"
            ));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {unit:?}; use ms, s, m, h or d"
                ));
            }
        };
        total = total
            .checked_add(n.saturating_mul(ms))
            .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
    }
    // Ten years is far more than any timeout or TTL we accept.
    if total > 10 * 365 * 86_400_000 {
        return Err(format!("invalid duration {s:?}: longer than ten years"));
    }
    Ok(Duration::from_millis(total as u64))
}

/// Formats a duration compactly: `3m`, `2h5m`, `450ms`.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (days, hours, mins, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (mins, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
        if out.len() >= 4 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let cases = [
            ("500ms", 500),
            ("90s", 90_000),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("30d", 2_592_000_000),
            ("1h30m", 5_400_000),
            ("45", 45_000),
        ];
        for (s, ms) in cases {
            assert_eq!(parse(s).unwrap(), Duration::from_millis(ms), "{s}");
        }
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "h",
            "10x",
            "1.5h",
            "-1s",
            "99999999999999999999999d",
            "100000d",
            "1h 2m",
        ] {
            let err = parse(s).unwrap_err();
            assert!(err.contains("duration"), "{s}: {err}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format(Duration::from_millis(450)), "450ms");
        assert_eq!(format(Duration::from_secs(180)), "3m");
        assert_eq!(format(Duration::from_secs(7_500)), "2h5m");
        assert_eq!(format(Duration::from_secs(86_400 * 30)), "30d");
    }
}
