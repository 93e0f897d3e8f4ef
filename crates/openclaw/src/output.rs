//! Human tables for CLI output.

use std::time::Duration;

use proto::{NodeInfo, TokenInfo};

/// Formats rows as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i + 1 < n {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count())
                    + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// "3m ago", "just now".
pub fn ago(then: u64, now: u64) -> String {
    if then >= now {
        return "just now".into();
    }
    format!(
        "{} ago",
        proto::duration::format(Duration::from_secs(now - then))
    )
}

/// "in 29d23h".
pub fn until(then: u64, now: u64) -> String {
    if then <= now {
        return "expired".into();
    }
    format!(
        "in {}",
        proto::duration::format(Duration::from_secs(then - now))
    )
}

/// The `node list` table.
pub fn nodes(nodes: &[NodeInfo], now: u64) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.connection.clone(),
                n.health.clone(),
                if n.labels.is_empty() {
                    "-".into()
                } else {
                    n.labels.join(",")
                },
                n.fingerprint.clone(),
                match (n.connection.as_str(), n.last_seen) {
                    ("connected", _) => "now".into(),
                    ("pending", _) => format!("requested {}", ago(n.requested_at, now)),
                    (_, Some(t)) => ago(t, now),
                    (_, None) => "never".into(),
                },
                n.remote_addr.clone().unwrap_or_else(|| "-".into()),
                n.cert_expires
                    .map(|t| until(t, now))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "CONNECTION",
            "HEALTH",
            "LABELS",
            "FINGERPRINT",
            "LAST-SEEN",
            "ADDRESS",
            "CERT-EXPIRES",
        ],
        &rows,
    )
}

/// The `token list` table.
pub fn tokens(tokens: &[TokenInfo], now: u64) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let state = if t.revoked {
                "revoked".to_string()
            } else if t.expires_at <= now {
                "expired".into()
            } else if t.uses_left == 0 {
                "used".into()
            } else {
                "valid".into()
            };
            vec![
                t.id.clone(),
                state,
                format!("{}/{}", t.uses_left, t.uses_total),
                until(t.expires_at, now),
                if t.labels.is_empty() {
                    "-".into()
                } else {
                    t.labels.join(",")
                },
                if t.auto_approve {
                    "yes".into()
                } else {
                    "no".into()
                },
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATE",
            "USES-LEFT",
            "EXPIRES",
            "LABELS",
            "AUTO-APPROVE",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }

    #[test]
    fn times() {
        assert_eq!(ago(100, 280), "3m ago");
        assert_eq!(ago(100, 100), "just now");
        assert_eq!(until(100, 50), "in 50s");
        assert_eq!(until(100, 150), "expired");
    }
}
