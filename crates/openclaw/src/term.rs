//! The CLI's only way to the terminal.
//!
//! Much of what the CLI prints was written by someone else: a chat user's
//! command, an approver's deny reason, a node's GPU names, a gateway's
//! error message. Written raw, an ESC or C1 sequence in it clears the
//! admin's screen, sets the window title or forges output, and a bidi
//! control reorders what the admin reads. So every line the CLI prints
//! goes through [`proto::names::printable`], the one escape for terminals:
//!
//! * Human text: [`outln!`], [`errln!`], [`out`] and [`err`] escape every
//!   line and keep only the line breaks of the text they are given.
//!   A value from another party inside a line (a table cell, a field of
//!   `job show`, a gateway's message) goes through [`field`] first, so that
//!   its own newlines and tabs cannot forge rows or columns either.
//! * JSON: [`json`] writes what `serde_json` writes, with the characters
//!   that `printable` escapes and `serde_json` leaves raw (DEL, C1, bidi
//!   and invisible controls) written as `\uXXXX`; every JSON parser reads
//!   back the same strings.
//! * Job output: [`raw_out`] and [`raw_err`] pass a job's stdout and
//!   stderr bytes through untouched, as ssh does: they are the output of a
//!   command the reader asked to run or to read (pipe them through
//!   `cat -v` to see what they hold).
//!
//! A closed stdout (`openclaw job list | head -1`) ends the command
//! quietly, as it ends `ls` or `cat`: the first write that finds the pipe
//! closed marks stdout gone, later writes are skipped, [`stdout_gone`]
//! wakes whoever streams output (so that `job logs` stops reading and `run`
//! cancels its job, as ssh's remote command dies of SIGPIPE on its next
//! write), and the process exits with 141 (128 + SIGPIPE, what a shell
//! reports for `ls` killed by SIGPIPE) without a message. A closed stderr
//! is ignored.
//!
//! A test reads the crate's sources and fails on any `println!`, `print!`,
//! `eprintln!`, `eprint!`, `dbg!` or direct use of stdout or stderr outside
//! this file.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use proto::names::printable;
use tokio::sync::Notify;

/// Set once a write to stdout found the reader gone.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Wakes [`stdout_gone`] when [`STDOUT_CLOSED`] is set.
static STDOUT_CLOSED_NOTIFY: Notify = Notify::const_new();

/// Human text for a terminal: every line through [`printable`], the line
/// breaks kept.
pub fn lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&printable(line, usize::MAX));
    }
    out
}

/// One value another party wrote, to print inside a line: its newlines
/// and tabs are escaped too.
pub fn field(s: &str) -> String {
    printable(s, usize::MAX)
}

/// JSON text for stdout. `serde_json` escapes C0 controls; this escapes
/// what else [`proto::names::is_hidden_or_control`] picks, as `\uXXXX`
/// (a surrogate pair above U+FFFF). Outside strings JSON text holds only
/// ASCII punctuation, digits, letters and whitespace, and inside them
/// `serde_json` has escaped every C0 control, so a raw newline is always
/// pretty-printing and stays.
pub fn json<T: serde::Serialize + ?Sized>(
    v: &T,
    pretty: bool,
) -> Result<String, serde_json::Error> {
    let text = if pretty {
        serde_json::to_string_pretty(v)?
    } else {
        serde_json::to_string(v)?
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && proto::names::is_hidden_or_control(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Writes `v` as one [`json`] document (pretty) and a newline to stdout.
pub fn out_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<(), serde_json::Error> {
    let text = json(v, true)?;
    write_stdout(format!("{text}\n").as_bytes());
    Ok(())
}

fn write_stdout(bytes: &[u8]) {
    // Never println!, which panics on a closed pipe.
    on_stdout(|w| w.write_all(bytes).and_then(|()| w.flush()));
}

/// Runs `write` on the locked stdout unless its reader is gone already; a
/// broken pipe marks it gone (see the module docs). Anything else (a full
/// disk, say) is not ours to report mid-line: the bytes are lost, as they
/// would be for `cat`.
fn on_stdout(write: impl FnOnce(&mut std::io::StdoutLock<'_>) -> std::io::Result<()>) {
    if stdout_closed() {
        return;
    }
    let mut w = std::io::stdout().lock();
    if let Err(e) = write(&mut w)
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        STDOUT_CLOSED.store(true, Ordering::SeqCst);
        STDOUT_CLOSED_NOTIFY.notify_waiters();
    }
}

fn write_stderr(bytes: &[u8]) {
    let mut w = std::io::stderr().lock();
    // Nowhere left to say that stderr failed.
    let _ = w.write_all(bytes).and_then(|()| w.flush());
}

/// Whether a write to stdout found its reader gone (see the module docs).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::SeqCst)
}

/// Resolves once a write to stdout has found its reader gone.
pub async fn stdout_gone() {
    loop {
        let notified = STDOUT_CLOSED_NOTIFY.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so no wake-up falls between.
        notified.as_mut().enable();
        if stdout_closed() {
            return;
        }
        notified.await;
    }
}

/// The size (columns, rows) of the terminal stdout writes to, if it is
/// one: an interactive session's size when stdin is no terminal.
pub fn stdout_size() -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .map(|ws| (ws.ws_col, ws.ws_row))
}

/// Whether stderr is a terminal (a person reads it).
pub fn stderr_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Whether logs on stderr may use ANSI colours: only when a terminal shows
/// them and `NO_COLOR` is not set to a non-empty value
/// (<https://no-color.org>). A file or a pipe (journald, `2> log`) gets
/// plain text. Pure.
pub fn log_colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Writes human text to stdout, escaped by [`lines`].
pub fn out(s: &str) {
    write_stdout(lines(s).as_bytes());
}

/// Writes human text to stderr, escaped by [`lines`].
pub fn err(s: &str) {
    write_stderr(lines(s).as_bytes());
}

/// Writes a job's stdout bytes as they are (see the module docs), with
/// write(2) on stdout's descriptor: std's line buffer would scan every
/// byte for a newline and then write and flush in two calls.
pub fn raw_out(bytes: &[u8]) {
    // Every write here is flushed at once, so std holds nothing; flushed
    // all the same, so bytes never pass what was written before them.
    on_stdout(|w| w.flush().and_then(|()| write_fd(&*w, bytes)));
}

/// `write_all` on a descriptor, without std's buffer.
fn write_fd(fd: impl std::os::fd::AsFd, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(&fd, bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes a job's stderr bytes as they are (see the module docs).
pub fn raw_err(bytes: &[u8]) {
    write_stderr(bytes);
}

/// A progress bar on stderr with rate and ETA (`openclaw cp`), or `None`
/// when `quiet` or stderr is not a terminal. It follows `done` of `total`
/// bytes (`total` 0: not known yet) until the guard is dropped, which
/// clears it. Only our own numbers are drawn.
pub fn progress(
    quiet: bool,
    done: std::sync::Arc<std::sync::atomic::AtomicU64>,
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Option<Progress> {
    if quiet || !stderr_is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(10),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    let b = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            let t = total.load(Ordering::Relaxed);
            if t > 0 {
                b.set_length(t);
            }
            b.set_position(done.load(Ordering::Relaxed));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    Some(Progress { bar, ticker })
}

/// A progress bar drawn until dropped ([`progress`]).
pub struct Progress {
    bar: indicatif::ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// `println!` for the CLI: the line goes through [`lines`].
macro_rules! outln {
    () => {
        $crate::term::out("\n")
    };
    ($($arg:tt)*) => {
        $crate::term::out(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// `eprintln!` for the CLI: the line goes through [`lines`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::term::err(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use errln;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// What a hostile party would like a terminal to see.
    const HOSTILE: &str =
        "a\x1b[2J\x1b]0;pwned\x07b\u{9b}31m\u{202e}c\u{2066}\u{200b}\u{feff}\x7f\u{e0041}";

    fn clean(s: &str) -> bool {
        s.chars()
            .all(|c| c == '\n' || !proto::names::is_hidden_or_control(c))
    }

    #[test]
    fn lines_keep_line_breaks_and_escape_the_rest() {
        assert_eq!(lines("one\ntwo\n"), "one\ntwo\n");
        assert_eq!(lines("a\tb\r\n"), "a\\tb\\r\n");
        assert_eq!(lines("x\x1b[2Jy"), "x\\u{1b}[2Jy");
        let l = lines(HOSTILE);
        assert!(clean(&l), "{l:?}");
        assert!(!l.contains('\n'));
        assert_eq!(lines(&l), l, "escaping twice changes nothing");
    }

    #[test]
    fn log_colours_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        let cases: &[(bool, Option<&str>, bool)] = &[
            (true, None, true),
            (false, None, false),
            (true, Some("1"), false),
            (true, Some("0"), false),
            (false, Some("1"), false),
            // no-color.org: set but empty does not count.
            (true, Some(""), true),
            (false, Some(""), false),
        ];
        for &(tty, no_color, want) in cases {
            assert_eq!(
                log_colours(tty, no_color.map(OsStr::new)),
                want,
                "tty={tty} NO_COLOR={no_color:?}"
            );
        }
    }

    #[test]
    fn fields_escape_their_line_breaks() {
        assert_eq!(field("r1\nID  STATE"), "r1\\nID  STATE");
        assert_eq!(field("a\tb"), "a\\tb");
        assert!(clean(&field(HOSTILE)));
    }

    #[test]
    fn json_keeps_its_meaning_and_loses_the_controls() {
        let v = serde_json::json!({ "reason": HOSTILE, "n": 1, "list": ["\u{202e}", "ok"] });
        for pretty in [false, true] {
            let text = json(&v, pretty).unwrap();
            assert!(clean(&text), "{text:?}");
            assert!(text.is_ascii(), "{text}");
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, v, "{text}");
        }
        assert!(
            json(&v, true).unwrap().contains('\n'),
            "pretty output keeps its lines"
        );
        let tag = json(&serde_json::json!("\u{e0041}"), false).unwrap();
        assert_eq!(tag, "\"\\udb40\\udc41\"");
    }

    /// Every output path goes through this module: no other file of the
    /// crate prints by itself.
    #[test]
    fn nothing_else_in_the_cli_writes_to_the_terminal() {
        let forbidden = [
            "println!(",
            "print!(",
            "eprintln!(",
            "eprint!(",
            "dbg!(",
            "io::stdout(",
            "io::stderr(",
            "libc::write(",
        ];
        let files: Vec<_> = crate::tidy::rust_files("crates/openclaw/src")
            .into_iter()
            .map(|f| crate::tidy::root().join(f))
            .collect();
        assert!(files.len() > 5, "found only {files:?}");
        let mut bad = vec![];
        for f in &files {
            if f.ends_with("term.rs") {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            for (n, line) in text.lines().enumerate() {
                // `print!(` also matches inside `eprint!(` and `println!(`.
                if forbidden.iter().any(|w| line.contains(w)) {
                    bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "print through crate::term (outln!, errln!, term::out, term::json, term::raw_out) so that text another party wrote is escaped:\n{}",
            bad.join("\n")
        );
    }
}
