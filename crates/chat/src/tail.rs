//! The last lines of a job's output, kept per line with the stream each
//! came from, so a chat message can show them with stderr marked. Bounded:
//! at most `max_bytes` of complete lines, each cut at [`LINE_MAX`].

use std::collections::VecDeque;

use proto::OutStream;

/// Longest line kept, in bytes; longer lines are cut (and marked `…`).
pub const LINE_MAX: usize = 300;

/// The tail of a job's output.
#[derive(Debug, Clone)]
pub struct OutputTail {
    lines: VecDeque<(OutStream, String)>,
    /// The unfinished last line of each stream (stdout, stderr).
    partial: [String; 2],
    bytes: usize,
    max_bytes: usize,
    /// The last stderr lines alone, for a failure's message.
    stderr: VecDeque<String>,
    stderr_bytes: usize,
}

fn idx(s: OutStream) -> usize {
    usize::from(s == OutStream::Stderr)
}

/// Cuts `line` at a char boundary at most `max` bytes long.
fn cut(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_string();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// What a terminal would show of a line with carriage returns (a progress
/// bar): the text after the last `\r`.
fn settle(line: &str) -> &str {
    let line = line.strip_suffix('\r').unwrap_or(line);
    line.rsplit('\r').next().unwrap_or(line)
}

impl OutputTail {
    /// A tail of at most `max_bytes` of lines.
    pub fn new(max_bytes: usize) -> OutputTail {
        OutputTail {
            lines: VecDeque::new(),
            partial: [String::new(), String::new()],
            bytes: 0,
            max_bytes,
            stderr: VecDeque::new(),
            stderr_bytes: 0,
        }
    }

    /// Adds output as it arrives (any chunking; invalid UTF-8 is replaced).
    pub fn push(&mut self, stream: OutStream, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let mut parts = text.split('\n').peekable();
        while let Some(part) = parts.next() {
            let p = &mut self.partial[idx(stream)];
            if p.len() < LINE_MAX * 4 {
                let room = LINE_MAX * 4 - p.len();
                p.push_str(&cut(part, room));
            }
            if parts.peek().is_some() {
                let whole = std::mem::take(&mut self.partial[idx(stream)]);
                self.add_line(stream, cut(settle(&whole), LINE_MAX));
            }
        }
    }

    fn add_line(&mut self, stream: OutStream, line: String) {
        if stream == OutStream::Stderr {
            self.stderr_bytes += line.len() + 1;
            self.stderr.push_back(line.clone());
            while self.stderr_bytes > self.max_bytes {
                match self.stderr.pop_front() {
                    Some(l) => self.stderr_bytes -= l.len() + 1,
                    None => break,
                }
            }
        }
        self.bytes += line.len() + 1;
        self.lines.push_back((stream, line));
        while self.bytes > self.max_bytes {
            match self.lines.pop_front() {
                Some((_, l)) => self.bytes -= l.len() + 1,
                None => break,
            }
        }
    }

    /// The last `n` lines of both streams in arrival order, unfinished
    /// lines last.
    pub fn last(&self, n: usize) -> Vec<(OutStream, String)> {
        let mut all: Vec<(OutStream, String)> = self.lines.iter().cloned().collect();
        for s in [OutStream::Stdout, OutStream::Stderr] {
            let p = &self.partial[idx(s)];
            if !p.is_empty() {
                all.push((s, cut(settle(p), LINE_MAX)));
            }
        }
        let skip = all.len().saturating_sub(n);
        all.split_off(skip)
    }

    /// The last `n` stderr lines.
    pub fn last_stderr(&self, n: usize) -> Vec<String> {
        let mut all: Vec<String> = self.stderr.iter().cloned().collect();
        let p = &self.partial[1];
        if !p.is_empty() {
            all.push(cut(settle(p), LINE_MAX));
        }
        let skip = all.len().saturating_sub(n);
        all.split_off(skip)
    }

    /// Whether nothing was printed.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.partial.iter().all(String::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_stream_and_order_across_chunks() {
        let mut t = OutputTail::new(1000);
        t.push(OutStream::Stdout, b"epoch 1\nepo");
        t.push(OutStream::Stderr, b"warn: slow\n");
        t.push(OutStream::Stdout, b"ch 2\npartial");
        let got = t.last(10);
        assert_eq!(
            got,
            vec![
                (OutStream::Stdout, "epoch 1".to_string()),
                (OutStream::Stderr, "warn: slow".to_string()),
                (OutStream::Stdout, "epoch 2".to_string()),
                (OutStream::Stdout, "partial".to_string()),
            ]
        );
        assert_eq!(t.last(1), vec![(OutStream::Stdout, "partial".to_string())]);
        assert_eq!(t.last_stderr(5), vec!["warn: slow".to_string()]);
    }

    #[test]
    fn memory_is_bounded_and_long_lines_are_cut() {
        let mut t = OutputTail::new(100);
        for i in 0..1000 {
            t.push(OutStream::Stdout, format!("line {i}\n").as_bytes());
        }
        let got = t.last(1000);
        assert!(got.len() <= 15, "{}", got.len());
        assert_eq!(got.last().map(|l| l.1.as_str()), Some("line 999"));
        let mut t = OutputTail::new(10_000);
        t.push(OutStream::Stdout, &vec![b'x'; 100_000]);
        t.push(OutStream::Stdout, b"\n");
        let got = t.last(1);
        assert!(got[0].1.len() <= LINE_MAX + 3 && got[0].1.ends_with('…'));
    }

    #[test]
    fn carriage_returns_show_the_last_state_and_bad_utf8_is_replaced() {
        let mut t = OutputTail::new(1000);
        t.push(OutStream::Stdout, b"10%\r50%\r100%\r\n\xff ok\n");
        assert_eq!(
            t.last(2),
            vec![
                (OutStream::Stdout, "100%".to_string()),
                (OutStream::Stdout, "\u{fffd} ok".to_string())
            ]
        );
        assert!(!t.is_empty());
        assert!(OutputTail::new(10).is_empty());
    }
}
