//! Validation of node names and labels. Pure.

/// Longest node name.
pub const MAX_NAME_LEN: usize = 63;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 32;
/// Most labels on one node.
pub const MAX_LABELS: usize = 32;

/// Checks a node or client name: `[a-z0-9-]`, 1 to 63 characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is empty; use 1-63 characters from a-z, 0-9 and '-'".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "name is {} characters long; the limit is {MAX_NAME_LEN} (a-z, 0-9 and '-')",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
    {
        return Err(format!(
            "name {:?} contains {c:?}; use only a-z, 0-9 and '-', e.g. worker-gpu-01",
            name.escape_debug().to_string()
        ));
    }
    Ok(())
}

/// A string from a peer made safe to print on a terminal: control
/// characters (escape sequences included) are escaped, and the text is
/// cut to `max` characters with an ellipsis.
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Checks one label: a word `[a-z0-9-_.]`, or `key=value` of two such
/// words (e.g. `zone=eu`), 1 to 32 characters in all.
pub fn validate_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "label {:?} must be 1-{MAX_LABEL_LEN} characters",
            label.escape_debug().to_string()
        ));
    }
    if let Some((k, v)) = label.split_once('=')
        && (k.is_empty() || v.is_empty() || v.contains('='))
    {
        return Err(format!(
            "label {:?} must be a word or key=value, e.g. zone=eu",
            label.escape_debug().to_string()
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.' | '='))
    {
        return Err(format!(
            "label {:?} contains {c:?}; use only a-z, 0-9, '-', '_' and '.' (and one '=' in key=value)",
            label.escape_debug().to_string()
        ));
    }
    Ok(())
}

/// Checks a set of labels and returns them sorted and deduplicated.
pub fn normalize_labels<I, S>(labels: I) -> Result<Vec<String>, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    for label in labels {
        let label = label.as_ref().trim();
        if label.is_empty() {
            continue;
        }
        validate_label(label)?;
        out.push(label.to_string());
        if out.len() > MAX_LABELS * 2 {
            break;
        }
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_LABELS {
        return Err(format!(
            "{} labels given; the limit is {MAX_LABELS}",
            out.len()
        ));
    }
    Ok(out)
}

/// Splits a comma-separated label list as given on the command line.
pub fn parse_label_list(s: &str) -> Result<Vec<String>, String> {
    normalize_labels(s.split(','))
}

/// Levenshtein distance between two strings, in characters; used for
/// "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let long = "a".repeat(63);
        let too_long = "a".repeat(64);
        let ok = ["worker-gpu-01", "a", "0", long.as_str()];
        let bad = [
            "",
            too_long.as_str(),
            "Worker",
            "worker_gpu",
            "a b",
            "a.b",
            "ü",
            "x\0",
            "../etc",
        ];
        for n in ok {
            assert!(validate_name(n).is_ok(), "{n}");
        }
        for n in bad {
            let err = validate_name(n).unwrap_err();
            assert!(err.contains("name"), "{err}");
        }
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("wörker", "worker"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_label_list("gpu, cpu,gpu,,").unwrap(),
            vec!["cpu", "gpu"]
        );
        assert!(parse_label_list("GPU").is_err());
        assert_eq!(parse_label_list("zone=eu,gpu").unwrap(), ["gpu", "zone=eu"]);
        for bad in ["=eu", "zone=", "a=b=c", "zone=EU", "zone eu"] {
            assert!(validate_label(bad).is_err(), "{bad}");
        }
        assert!(parse_label_list(&"a".repeat(33)).is_err());
        let many: Vec<String> = (0..40).map(|i| format!("l{i}")).collect();
        assert!(normalize_labels(&many).is_err());
        assert!(parse_label_list("").unwrap().is_empty());
    }

    #[test]
    fn printable_escapes_terminal_controls() {
        assert_eq!(printable("ok", 10), "ok");
        assert_eq!(printable("a\x1b[31mred", 20), "a\\u{1b}[31mred");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("l1\nl2", 10), "l1\\nl2");
    }
}
