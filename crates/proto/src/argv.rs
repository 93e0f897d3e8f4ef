//! How a job's argv is shown to people: one line, quoted as a POSIX shell
//! would need it, so `sh -c 'for i in 1 2; do …'` reads as the three
//! arguments it is. The CLI and the dashboard both show commands this way.
//! Pure; escaping for the medium (terminal, HTML) comes after.

/// What an empty argv is shown as: an interactive session's login shell
/// (`openclaw shell NODE`), the only job without a command.
pub const LOGIN_SHELL: &str = "(login shell)";

/// Quotes argv for display, shell-style: a word of only safe characters
/// stays bare; any other (an empty one included) is single-quoted, with
/// `'` written `'\''`. No argv at all is [`LOGIN_SHELL`].
pub fn line(argv: &[String]) -> String {
    if argv.is_empty() {
        return LOGIN_SHELL.to_string();
    }
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_argv_is_a_login_shell() {
        assert_eq!(line(&[]), LOGIN_SHELL);
        assert_eq!(line(&v(&[""])), "''");
    }

    #[test]
    fn quotes_what_a_shell_would_split() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["python", "train.py", "--name", "a b", "it's"],
                "python train.py --name 'a b' 'it'\\''s'",
            ),
            (
                &["sh", "-c", "for i in 1 2; do echo $i; done"],
                "sh -c 'for i in 1 2; do echo $i; done'",
            ),
            (&["echo", ""], "echo ''"),
            (&["env", "A=1", "x@y:%z,+"], "env A=1 x@y:%z,+"),
            (&["echo", "<b>"], "echo '<b>'"),
            (&[], LOGIN_SHELL),
        ];
        for (argv, want) in cases {
            assert_eq!(line(&v(argv)), *want, "{argv:?}");
        }
    }
}
