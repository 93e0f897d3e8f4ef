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

/// Whether `c` must never reach a terminal as itself: it is a control
/// or changes how the text around it reads while staying invisible.
///
/// The set, with reasons (Rust's `char::is_control` covers only the
/// first line):
/// * Cc: C0 controls (ESC starts every escape sequence; `\n`, `\r` and
///   `\t` forge lines and columns inside a table cell), DEL, and the C1
///   controls U+0080–U+009F (U+009B is a one-character CSI on terminals
///   that honour 8-bit controls, U+009D an OSC).
/// * Cf, the format characters: bidi embeddings, overrides and isolates
///   (U+202A–U+202E, U+2066–U+2069, U+061C, U+200E/U+200F) reorder what
///   follows them ("Trojan Source"); zero-width spaces and joiners
///   (U+200B–U+200D, U+2060–U+2064, U+FEFF) make different strings look
///   equal; tag characters (U+E0000–U+E007F) carry invisible ASCII.
/// * Zl and Zp (U+2028, U+2029): line breaks to some terminals.
/// * The rest of Unicode's Default_Ignorable_Code_Point set: invisible
///   fillers that render as blanks or nothing (U+034F, U+115F, U+1160,
///   U+17B4, U+17B5, U+3164, U+FFA0, U+180B–U+180F) and variation
///   selectors (U+FE00–U+FE0F, U+E0100–U+E01EF), which are invisible and
///   can hide a payload one byte per character. One U+FE0F (emoji
///   presentation) right after a visible non-ASCII symbol is how an emoji
///   is written (`⚠️`), and [`printable`] keeps that one.
///
/// Visible characters stay as they are, whatever their script; spaces
/// other than U+0020 (U+00A0, U+3000, ...) are visible as blanks and stay.
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Text another party wrote, made safe to print on a terminal: every
/// character [`is_hidden_or_control`] picks is written as a Rust escape
/// (`\u{1b}`, `\n`, `\t`, `\u{202e}`), and the text is cut to `max`
/// characters with an ellipsis (`usize::MAX`: never cut).
///
/// This is the one escape for terminals: the CLI sends every line it
/// prints through it (see `crates/openclaw/src/term.rs`), and the
/// gateway uses it for node-written text it stores. The result holds no
/// character it would escape, so escaping twice changes nothing.
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max.saturating_mul(4)));
    let mut prev: Option<char> = None;
    for (i, c) in s.chars().enumerate() {
        if i >= max {
            out.push('…');
            break;
        }
        // One emoji presentation selector right after a visible symbol
        // (`⚠\u{fe0f}`) is how emoji are written: it stays. Any other
        // variation selector, or a second one, is escaped.
        let emoji_vs =
            c == '\u{FE0F}' && prev.is_some_and(|p| !p.is_ascii() && !is_hidden_or_control(p));
        prev = Some(c);
        if is_hidden_or_control(c) && !emoji_vs {
            // escape_default writes \t, \r, \n, or \u{HEX}: ASCII only.
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
        // (input, what the terminal gets)
        let table: &[(&str, &str)] = &[
            ("\x1b[2J", "\\u{1b}[2J"),
            ("\x1b]0;pwned\x07", "\\u{1b}]0;pwned\\u{7}"),
            ("a\tb\rc", "a\\tb\\rc"),
            ("nul\0", "nul\\u{0}"),
            ("del\x7f", "del\\u{7f}"),
            ("\u{9b}31m", "\\u{9b}31m"),
            ("\u{85}\u{9d}", "\\u{85}\\u{9d}"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}",
                "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
            ),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}",
                "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
            ),
            ("\u{61c}\u{200e}\u{200f}", "\\u{61c}\\u{200e}\\u{200f}"),
            ("ad\u{200b}min", "ad\\u{200b}min"),
            (
                "\u{200c}\u{200d}\u{2060}\u{2064}\u{feff}",
                "\\u{200c}\\u{200d}\\u{2060}\\u{2064}\\u{feff}",
            ),
            ("soft\u{ad}hyphen", "soft\\u{ad}hyphen"),
            (
                "\u{34f}\u{115f}\u{1160}\u{3164}\u{ffa0}",
                "\\u{34f}\\u{115f}\\u{1160}\\u{3164}\\u{ffa0}",
            ),
            ("\u{180e}\u{17b4}\u{17b5}", "\\u{180e}\\u{17b4}\\u{17b5}"),
            ("l1\u{2028}l2\u{2029}", "l1\\u{2028}l2\\u{2029}"),
            ("tag\u{e0041}\u{e007f}", "tag\\u{e0041}\\u{e007f}"),
            ("vs\u{fe0f}\u{e0100}", "vs\\u{fe0f}\\u{e0100}"),
            // An emoji's one presentation selector stays; a second, or
            // one after ASCII or after another selector, does not.
            ("⚠\u{fe0f} job", "⚠\u{fe0f} job"),
            ("⚠\u{fe0f}\u{fe0f}", "⚠\u{fe0f}\\u{fe0f}"),
            ("a\u{fe0f}", "a\\u{fe0f}"),
            ("⚠\u{fe0e}", "⚠\\u{fe0e}"),
            // Visible text of any script, and visible spaces, stay.
            ("Grüße 数据 الحاسوب", "Grüße 数据 الحاسوب"),
            ("nbsp\u{a0}ideo\u{3000}", "nbsp\u{a0}ideo\u{3000}"),
            ("H100 80GB — ok ✓ 👍", "H100 80GB — ok ✓ 👍"),
            // A backslash is text: it starts no sequence on a terminal.
            ("C:\\dir", "C:\\dir"),
        ];
        for (input, want) in table {
            let got = printable(input, usize::MAX);
            assert_eq!(&got, want, "{input:?}");
            assert_eq!(
                printable(&got, usize::MAX),
                got,
                "escaping twice changes nothing"
            );
            // Nothing hidden is left but an emoji's one selector.
            let mut prev = ' ';
            for c in got.chars() {
                let emoji_vs = c == '\u{FE0F}' && !prev.is_ascii() && !is_hidden_or_control(prev);
                assert!(!is_hidden_or_control(c) || emoji_vs, "{got:?}");
                prev = c;
            }
        }
        // Cutting counts characters of the input, never splits an escape.
        assert_eq!(printable("\x1b\x1b\x1b", 2), "\\u{1b}\\u{1b}…");
    }

    #[test]
    fn every_control_and_format_character_is_escaped() {
        // Every character Rust calls a control, and every character that
        // Unicode's Default_Ignorable_Code_Point or the Cf, Zl and Zp
        // categories list for the BMP and the tag plane (as of Unicode 15).
        let listed = [
            0xAD, 0x34F, 0x600, 0x605, 0x61C, 0x6DD, 0x70F, 0x890, 0x891, 0x8E2, 0x115F, 0x1160,
            0x17B4, 0x17B5, 0x180B, 0x180E, 0x180F, 0x200B, 0x200F, 0x2028, 0x2029, 0x202A, 0x202E,
            0x2060, 0x2064, 0x2065, 0x2066, 0x2069, 0x206A, 0x206F, 0x3164, 0xFE00, 0xFE0F, 0xFEFF,
            0xFFA0, 0xFFF0, 0xFFF9, 0xFFFB, 0x110BD, 0x110CD, 0x13430, 0x1343F, 0x1BCA0, 0x1BCA3,
            0x1D173, 0x1D17A, 0xE0000, 0xE0001, 0xE0020, 0xE007F, 0xE0100, 0xE01EF, 0xE0FFF,
        ];
        for cp in (0..0x20).chain(0x7F..0xA0).chain(listed) {
            let c = char::from_u32(cp).unwrap();
            assert!(is_hidden_or_control(c), "U+{cp:04X}");
            assert!(printable(&c.to_string(), 10).is_ascii(), "U+{cp:04X}");
        }
        for c in [
            ' ', '~', 'a', '\u{A0}', '\u{2010}', '\u{2027}', '\u{2030}', '\u{205F}', '\u{FFFC}',
            '\u{FFFD}',
        ] {
            assert!(!is_hidden_or_control(c), "{c:?}");
        }
    }
}
