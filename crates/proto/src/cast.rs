//! Session recordings in asciicast v2 (the format of asciinema and
//! Teleport's players): one JSON header line, then one JSON array per
//! event, `[seconds, "o" | "i" | "r", "text"]`. Pure: the gateway writes
//! these lines, `openclaw job replay` and the dashboard read them.
//!
//! Event text is UTF-8, as the format requires. A terminal's bytes may
//! split a character between two reads, so [`Utf8Carry`] holds an
//! incomplete sequence until its next bytes come; bytes that are not
//! UTF-8 at all are recorded as U+FFFD, as asciinema records them.

/// The header line (with its newline) of a recording of a `cols`x`rows`
/// terminal started at unix second `timestamp`.
pub fn header(cols: u16, rows: u16, timestamp: u64, term: &str) -> String {
    format!(
        "{{\"version\": 2, \"width\": {cols}, \"height\": {rows}, \"timestamp\": {timestamp}, \"env\": {{\"TERM\": {}}}}}\n",
        json_string(term)
    )
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The terminal's output.
    Output,
    /// What was typed (only with `record_input`).
    Input,
    /// A resize; the text is `COLSxROWS`.
    Resize,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Output => "o",
            Kind::Input => "i",
            Kind::Resize => "r",
        }
    }
}

/// One event line (with its newline) at `micros` microseconds into the
/// session.
pub fn event(micros: u64, kind: Kind, text: &str) -> String {
    format!(
        "[{}.{:06}, \"{}\", {}]\n",
        micros / 1_000_000,
        micros % 1_000_000,
        kind.code(),
        json_string(text)
    )
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Decodes a byte stream that arrives in pieces into UTF-8 text, holding
/// a character split between pieces until it is whole.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    held: Vec<u8>,
}

impl Utf8Carry {
    /// The text of `bytes` after what was held; an incomplete character
    /// at the end is held for the next call.
    pub fn take(&mut self, bytes: &[u8]) -> String {
        self.held.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.held;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // Valid by construction.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{fffd}');
                            rest = &bad[n..];
                        }
                        // An incomplete character at the end: keep it.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.held = rest.to_vec();
        out
    }

    /// What is still held, as text (U+FFFD for an incomplete character):
    /// the end of the stream.
    pub fn finish(&mut self) -> String {
        let held = std::mem::take(&mut self.held);
        String::from_utf8_lossy(&held).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_asciicast_v2() {
        assert_eq!(
            header(80, 24, 1_700_000_000, "xterm"),
            "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1700000000, \"env\": {\"TERM\": \"xterm\"}}\n"
        );
        assert_eq!(
            event(1_500_002, Kind::Output, "a\"b\\\r\n\u{1b}[0m"),
            "[1.500002, \"o\", \"a\\\"b\\\\\\r\\n\\u001b[0m\"]\n"
        );
        assert_eq!(
            event(7, Kind::Resize, "100x50"),
            "[0.000007, \"r\", \"100x50\"]\n"
        );
    }

    #[test]
    fn a_character_split_between_reads_stays_whole() {
        let text = "héllo → wörld";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut c = Utf8Carry::default();
            let mut got = c.take(&bytes[..cut]);
            got.push_str(&c.take(&bytes[cut..]));
            got.push_str(&c.finish());
            assert_eq!(got, text, "cut at {cut}");
        }
        let mut c = Utf8Carry::default();
        assert_eq!(c.take(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(c.take(b"\xe2\x86"), "");
        assert_eq!(c.finish(), "\u{fffd}");
    }
}
