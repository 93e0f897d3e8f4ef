//! Secrets kept out of messages: URLs with their passwords redacted. Pure.
//!
//! A URL reaches error messages, logs, audit entries and status output:
//! the state database's (`[state] url`, `--state`, `migrate-state --to`),
//! a chat platform's endpoint. Whoever wrote it may have put a password in
//! it, and a URL that fails to parse is the likeliest to be echoed. Every
//! message that shows a URL shows [`url`] of it, or [`urls_in`] of a text
//! that may quote one (a TOML error quotes the line it stopped at).
//!
//! What is redacted, for any input, parseable or not:
//! * the userinfo: `user:password@` becomes `user:***@`, and anything but
//!   a plain user name (`[A-Za-z0-9._-]`) becomes `***@`. The userinfo
//!   ends at the *last* `@`, since a password that was not percent-encoded
//!   may hold `@`, `/`, `?` or `#`; when an `@` sits in the query, more
//!   than the userinfo is hidden, which is the safe way to be wrong;
//! * a port that is not a number (`user:password` with the `@host` left
//!   out): `***`;
//! * the value of every query parameter whose name, percent-decoded and in
//!   any case, looks like a secret ([`is_secret_key`]: `password`,
//!   `sslpassword`, `pass`, `pwd`, `token`, `secret`, `key`, ...), and every
//!   parameter without `=` (a value without a name: `?password&hunter2`);
//! * the whole fragment.
//!
//! The scheme, host, port, path and the other parameters stay, so that the
//! message still says which database or endpoint it was about.

/// What stands in for a redacted part.
pub const MASK: &str = "***";

/// Parts of parameter names that mark a secret.
const SECRET_WORDS: &[&str] = &[
    "pass", "pwd", "secret", "token", "key", "auth", "sig", "cred", "cookie", "session",
];

/// Whether a query parameter named `key` may hold a secret: its name,
/// percent-decoded (repeatedly) and lower-cased, contains `pass`, `pwd`,
/// `secret`, `token`, `key`, `auth`, `sig`, `cred`, `cookie` or `session`.
pub fn is_secret_key(key: &str) -> bool {
    let k = decoded_name(key);
    SECRET_WORDS.iter().any(|w| k.contains(w))
}

/// Whether a query parameter named `key` is a password (`password`,
/// `sslpassword`, `passwd`, `pwd`, ...), spelled as [`is_secret_key`] reads it.
pub fn is_password_key(key: &str) -> bool {
    let k = decoded_name(key);
    k.contains("pass") || k.contains("pwd")
}

/// A parameter name percent-decoded until nothing changes (`%2570` is
/// `%70` is `p`; at most four rounds) and lower-cased.
fn decoded_name(key: &str) -> String {
    let mut k = key.to_string();
    for _ in 0..4 {
        let d = percent_decode(&k);
        if d == k {
            break;
        }
        k = d;
    }
    k.to_ascii_lowercase()
}

/// `%XX` sequences decoded; anything malformed is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b.get(i),
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (Some(b'%'), Some(hi), Some(lo)) => {
                // Two hex digits are at most 255.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (Some(&c), _, _) => {
                out.push(c);
                i += 1;
            }
            (None, _, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn plain_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn userinfo(ui: &str) -> String {
    match ui.split_once(':') {
        Some((user, _)) if plain_user(user) => format!("{user}:{MASK}"),
        None if plain_user(ui) => ui.to_string(),
        _ => MASK.to_string(),
    }
}

/// `host[:port]/path`, with a port that is not a number masked.
fn host_and_path(s: &str) -> String {
    let end = s.find('/').unwrap_or(s.len());
    let (authority, path) = s.split_at(end);
    let port_start = if authority.starts_with('[') {
        // [v6]:port
        authority.find("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    match port_start {
        Some(i) if !authority[i + 1..].bytes().all(|c| c.is_ascii_digit()) => {
            format!("{}:{MASK}{path}", &authority[..i])
        }
        _ => s.to_string(),
    }
}

fn params(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    for (i, part) in q.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match part.split_once('=') {
            _ if part.is_empty() => {}
            Some((k, _)) if is_secret_key(k) => {
                out.push_str(k);
                out.push('=');
                out.push_str(MASK);
            }
            Some(_) => out.push_str(part),
            None => out.push_str(MASK),
        }
    }
    out
}

/// A URL, or what was meant to be one, fit for a message: see the module
/// docs for what is redacted. Never fails; text without a URL's parts
/// comes back as it was.
pub fn url(s: &str) -> String {
    let (head, rest) = match s.find("://") {
        Some(i) => s.split_at(i + 3),
        None => ("", s),
    };
    let mut out = String::with_capacity(s.len());
    out.push_str(head);
    let after = match rest.rfind('@') {
        Some(at) => {
            out.push_str(&userinfo(&rest[..at]));
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    let (before_fragment, fragment) = match after.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (after, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    out.push_str(&host_and_path(base));
    if let Some(q) = query {
        out.push('?');
        out.push_str(&params(q));
    }
    if let Some(f) = fragment {
        out.push('#');
        if !f.is_empty() {
            out.push_str(MASK);
        }
    }
    out
}

/// Where a quoted URL ends: at the first unescaped `quote`, a line break,
/// or the end.
fn quoted_len(s: &str, quote: char) -> usize {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\n' | '\r' => return i,
            '\\' if !escaped => {
                escaped = true;
                continue;
            }
            c if c == quote && !escaped => return i,
            _ => {}
        }
        escaped = false;
    }
    s.len()
}

/// Free text (an error message, a quoted config line) with every URL in
/// it (`scheme://...`) passed through [`url`]. A URL in quotes ends at its
/// closing quote, so that a password with a space in it is still covered;
/// one without quotes ends at the first space.
pub fn urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
            .last()
            .map_or(i, |(j, _)| j);
        let quote = rest[..start]
            .chars()
            .next_back()
            .filter(|c| matches!(c, '"' | '\'' | '`'));
        let body = &rest[i + 3..];
        let len = match quote {
            Some(q) => quoted_len(body, q),
            None => body
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
                .unwrap_or(body.len()),
        };
        let end = i + 3 + len;
        out.push_str(&rest[..start]);
        out.push_str(&url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "hunter2";

    #[test]
    fn urls_lose_their_passwords_and_keep_the_rest() {
        // (input, what a message shows)
        let table: &[(&str, &str)] = &[
            (
                "postgres://openclaw@db:5432/openclaw",
                "postgres://openclaw@db:5432/openclaw",
            ),
            (
                "postgres://db/openclaw?sslmode=require",
                "postgres://db/openclaw?sslmode=require",
            ),
            ("postgres://u:hunter2@db/x", "postgres://u:***@db/x"),
            ("postgres://:hunter2@db/x", "postgres://***@db/x"),
            (
                "postgres://u:hunter2@[::1]:5432/x",
                "postgres://u:***@[::1]:5432/x",
            ),
            // Several @: the userinfo ends at the last.
            ("postgres://u:hun@ter2@db/x", "postgres://u:***@db/x"),
            ("postgres://u@hunter2@db/x", "postgres://***@db/x"),
            // A password with / ? # in it, not percent-encoded.
            ("postgres://u:hu/n?t#er2@db/x", "postgres://u:***@db/x"),
            // Percent-encoded userinfo is not a plain user name.
            ("postgres://u%3Ahunter2@db/x", "postgres://***@db/x"),
            // Passwords in the query, in any spelling.
            (
                "postgres://u@db/x?password=hunter2",
                "postgres://u@db/x?password=***",
            ),
            (
                "postgres://u@db/x?sslmode=disable&PassWord=hunter2&application_name=gw",
                "postgres://u@db/x?sslmode=disable&PassWord=***&application_name=gw",
            ),
            (
                "postgres://u@db/x?pass%77ord=hunter2",
                "postgres://u@db/x?pass%77ord=***",
            ),
            (
                "postgres://u@db/x?%2570assword=hunter2",
                "postgres://u@db/x?%2570assword=***",
            ),
            (
                "postgres://u@db/x?sslpassword=hunter2",
                "postgres://u@db/x?sslpassword=***",
            ),
            (
                "postgres://u@db/x?pwd=hunter2&pass=hunter2",
                "postgres://u@db/x?pwd=***&pass=***",
            ),
            (
                "wss://h/ws?access_token=hunter2&x=1",
                "wss://h/ws?access_token=***&x=1",
            ),
            (
                "https://h/a?secret=hunter2&api_key=hunter2",
                "https://h/a?secret=***&api_key=***",
            ),
            (
                "postgres://u@db/x?password=a=b=hunter2",
                "postgres://u@db/x?password=***",
            ),
            // A parameter without '=': its name may be the secret.
            ("postgres://u@db/x?password", "postgres://u@db/x?***"),
            (
                "postgres://u@db/x?password&hunter2",
                "postgres://u@db/x?***&***",
            ),
            ("postgres://u@db/x?&&", "postgres://u@db/x?&&"),
            // Fragments: hidden whole.
            (
                "postgres://u@db/x#password=hunter2",
                "postgres://u@db/x#***",
            ),
            ("postgres://u@db/x#", "postgres://u@db/x#"),
            // Unparseable: no scheme, no host, a port that is a password.
            ("u:hunter2@db/x", "u:***@db/x"),
            ("postgres://u:hunter2", "postgres://u:***"),
            ("postgres://u:hunter2/db", "postgres://u:***/db"),
            ("postgres://db:5432", "postgres://db:5432"),
            ("postgres:///x", "postgres:///x"),
            ("postgres://", "postgres://"),
            ("", ""),
            ("not a url", "not a url"),
            ("postgres://u:p://w@db", "postgres://u:***@db"),
            (
                "postgres://ü:hunter2@db/ü?sslmode=ü",
                "postgres://***@db/ü?sslmode=ü",
            ),
            // An @ in the query: more is hidden than needed, never less.
            ("postgres://db/x?application_name=a@b", "postgres://***@b"),
        ];
        for (input, want) in table {
            let got = url(input);
            assert_eq!(&got, want, "{input:?}");
            assert_eq!(url(&got), got, "redacting twice changes nothing: {input:?}");
        }
        for (input, _) in table {
            assert!(!url(input).contains(PW), "{input:?} -> {:?}", url(input));
        }
    }

    #[test]
    fn text_quoting_urls_loses_their_passwords() {
        let table: &[(&str, &str)] = &[
            (
                "[state] url \"postgres://u@db/x?password=hunter2&bogus=1\": invalid connection string",
                "[state] url \"postgres://u@db/x?password=***&bogus=1\": invalid connection string",
            ),
            (
                "cannot connect to PostgreSQL at postgres://u:hunter2@db/x: refused",
                "cannot connect to PostgreSQL at postgres://u:***@db/x: refused",
            ),
            // A TOML error quotes the line; the URL is in quotes, a space
            // inside the password included.
            (
                "TOML parse error at line 2, column 40\n  |\n2 | url = \"postgres://u:hun ter2@db/x\" oops\n  |      ^\n",
                "TOML parse error at line 2, column 40\n  |\n2 | url = \"postgres://u:***@db/x\" oops\n  |      ^\n",
            ),
            (
                "url = 'postgres://u:hunter2@db/x'",
                "url = 'postgres://u:***@db/x'",
            ),
            // An unterminated string ends at the line break.
            (
                "2 | url = \"postgres://u:hunter2@db/x\n3 | next",
                "2 | url = \"postgres://u:***@db/x\n3 | next",
            ),
            // Debug quoting escapes a quote inside.
            (
                "url \"postgres://u:hun\\\"ter2@db\"",
                "url \"postgres://u:***@db\"",
            ),
            (
                "a https://x/y?token=hunter2 and wss://u:hunter2@h/ done",
                "a https://x/y?token=*** and wss://u:***@h/ done",
            ),
            ("no url here: hunter2", "no url here: hunter2"),
            ("://u:hunter2@h", "://u:***@h"),
        ];
        for (input, want) in table {
            assert_eq!(&urls_in(input), want, "{input:?}");
        }
    }

    #[test]
    fn secret_keys() {
        for k in [
            "password",
            "PASSWORD",
            "sslpassword",
            "pass",
            "passwd",
            "pwd",
            "token",
            "access_token",
            "secret",
            "client_secret",
            "key",
            "api_key",
            "sslkey",
            "auth",
            "sig",
            "credential",
            "pass%77ord",
            "%70assword",
            "%2570assword",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "sslmode",
            "host",
            "port",
            "user",
            "dbname",
            "application_name",
            "options",
            "connect_timeout",
        ] {
            assert!(!is_secret_key(k), "{k}");
            assert!(!is_password_key(k), "{k}");
        }
        for k in ["password", "sslpassword", "PassWd", "pwd", "%2570assword"] {
            assert!(is_password_key(k), "{k}");
        }
        for k in ["target_session_attrs", "sslkey", "token"] {
            assert!(is_secret_key(k) && !is_password_key(k), "{k}");
        }
    }
}
