//! Job artifacts (issue 23): files a job leaves in its working directory
//! that the node uploads to the gateway when the job's command has exited.
//!
//! The flow, protocol 3 only:
//!
//! 1. The requester names patterns (`openclaw run --artifact 'ckpt/*.pt'`,
//!    [`crate::JobOption::Artifact`], or `[jobs.NAME] artifacts` in
//!    gateway.toml). The gateway checks them with [`check_patterns`] and
//!    stores them with the job.
//! 2. It dispatches the job with [`crate::ControlMsg::RunJobWith`], whose
//!    [`JobDispatch`] carries the patterns and the gateway's caps. A node of
//!    protocol 2 gets the plain `RunJob`, and the job records why it has no
//!    artifacts.
//! 3. When the command has exited, the node collects matching regular files
//!    as the job's user, then opens [`crate::Open::Artifacts`]: for each
//!    file an [`ArtifactFrame::File`] (name, size, SHA-256), the gateway's
//!    [`ArtifactReply::Send`] or `Skip`, the bytes as `Chunk`s, and the
//!    gateway's `Stored` or `Refused`; then `Done` and the gateway's
//!    `Finished`. Only then does the node report the job's end, so a job
//!    that has ended has all its artifacts.
//! 4. Readers list them with [`crate::Request::JobArtifacts`] and fetch one
//!    with [`crate::Request::ArtifactGet`].
//!
//! Pure: the pattern and name rules are here so that the CLI, the gateway
//! and the node apply the same ones.

use serde::{Deserialize, Serialize};

use crate::JobPlan;

/// Most patterns a job may give.
pub const MAX_PATTERNS: usize = 32;
/// Longest pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 256;
/// Most components (directories and the file) in a pattern.
pub const MAX_PATTERN_DEPTH: usize = 16;
/// Most files one job may keep (a pattern matching more is cut there,
/// with a note).
pub const MAX_FILES: usize = 1000;
/// Longest artifact name (its path under the working directory), in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Largest `Chunk` of an upload, in bytes.
pub const MAX_CHUNK: usize = 256 * 1024;

/// A job to run, with what goes with it beyond its frozen plan (protocol
/// 3; sent as [`crate::ControlMsg::RunJobWith`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDispatch {
    /// The frozen plan.
    pub plan: JobPlan,
    /// Its requester streams its standard input (as
    /// [`crate::ControlMsg::RunJobInput`]).
    pub input: bool,
    /// Files to keep when the command has exited.
    pub artifacts: ArtifactSpec,
}

/// Which files to keep, and how many bytes the gateway takes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ArtifactSpec {
    /// Relative globs under the job's working directory, checked by
    /// [`check_patterns`].
    pub patterns: Vec<String>,
    /// Largest file the gateway stores.
    pub max_file_bytes: u64,
    /// Most bytes the gateway stores for the job.
    pub max_job_bytes: u64,
}

/// Node to gateway on an [`crate::Open::Artifacts`] stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArtifactFrame {
    /// A file follows, once the gateway says [`ArtifactReply::Send`].
    File {
        /// Its path under the working directory.
        name: String,
        /// Its size in bytes: exactly this many follow.
        size: u64,
        /// Lowercase hex SHA-256 of its bytes.
        sha256: String,
    },
    /// Some of the file's bytes, in order.
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The node did not collect this (a symlink, a device, over a cap...).
    Skipped {
        /// The path under the working directory.
        name: String,
        /// Why, for people.
        reason: String,
    },
    /// Every file was sent.
    Done,
    /// Something went wrong for the job as a whole (the collector could
    /// not start, the directory was gone); recorded on the job.
    Note {
        /// What, for people.
        reason: String,
    },
}

/// Gateway to node on an [`crate::Open::Artifacts`] stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArtifactReply {
    /// Send the file's bytes.
    Send,
    /// Do not send this file (it is over a cap); it is recorded as refused.
    Skip {
        /// Why, for people.
        reason: String,
    },
    /// The file was stored, its checksum checked.
    Stored,
    /// The file was not stored (its checksum did not match, the disk...).
    Refused {
        /// Why, for people.
        reason: String,
    },
    /// Everything was recorded; the node may report the job's end.
    Finished,
    /// The gateway takes no artifacts for this job on this stream.
    Rejected {
        /// Why, for people.
        reason: String,
    },
}

/// One artifact of a job, as readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Its path under the job's working directory.
    pub name: String,
    /// Size in bytes (what the node declared, for one not stored).
    pub size: u64,
    /// Lowercase hex SHA-256 (empty for one not stored).
    pub sha256: String,
    /// `stored`, `refused` (the gateway did not keep it) or `skipped`
    /// (the node did not collect it).
    pub state: String,
    /// Why it was refused or skipped; empty when stored.
    pub note: String,
}

impl ArtifactInfo {
    /// Whether its bytes are kept and may be fetched.
    pub fn is_stored(&self) -> bool {
        self.state == "stored"
    }
}

/// Reply to [`crate::Request::JobArtifacts`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobArtifacts {
    /// The job.
    pub job: u64,
    /// The patterns it gave.
    pub patterns: Vec<String>,
    /// Why it has none, or what went wrong collecting them, if anything.
    pub note: Option<String>,
    /// The files, by name.
    pub files: Vec<ArtifactInfo>,
}

/// Checks one pattern: a relative glob (`*` and `?` within one path
/// component) under the job's working directory. Refuses an absolute path,
/// `..`, `.`, empty components, a backslash, control characters, and one
/// too long or too deep. The error names the pattern and the rule.
pub fn check_pattern(p: &str) -> Result<(), String> {
    let shown = crate::names::printable(p, MAX_PATTERN_LEN);
    if p.is_empty() {
        return Err("an artifact pattern is empty; give a path under the job's working directory such as 'ckpt/*.pt'".into());
    }
    if p.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "artifact pattern '{shown}' is {} bytes; the limit is {MAX_PATTERN_LEN}",
            p.len()
        ));
    }
    if p.chars().any(char::is_control) {
        return Err(format!(
            "artifact pattern '{shown}' has a control character; patterns are printable"
        ));
    }
    if p.starts_with('/') {
        return Err(format!(
            "artifact pattern '{shown}' is an absolute path; artifacts are kept only from under the job's \
             working directory, so give a relative path such as 'ckpt/*.pt'"
        ));
    }
    if p.contains('\\') {
        return Err(format!(
            "artifact pattern '{shown}' has a backslash; separate directories with '/'"
        ));
    }
    let parts: Vec<&str> = p.split('/').collect();
    if parts.len() > MAX_PATTERN_DEPTH {
        return Err(format!(
            "artifact pattern '{shown}' has {} components; the limit is {MAX_PATTERN_DEPTH}",
            parts.len()
        ));
    }
    for part in parts {
        match part {
            ".." => {
                return Err(format!(
                    "artifact pattern '{shown}' has '..'; artifacts are kept only from under the job's working directory"
                ));
            }
            "" | "." => {
                return Err(format!(
                    "artifact pattern '{shown}' has an empty or '.' component; write it as 'dir/file'"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a job's patterns: each with [`check_pattern`], at most
/// [`MAX_PATTERNS`] of them.
pub fn check_patterns(patterns: &[String]) -> Result<(), String> {
    if patterns.len() > MAX_PATTERNS {
        return Err(format!(
            "a job may keep at most {MAX_PATTERNS} artifact patterns, this one gives {}; \
             use wildcards ('out/*.json') instead of naming every file",
            patterns.len()
        ));
    }
    patterns.iter().try_for_each(|p| check_pattern(p))
}

/// Whether `name` (a relative path) matches `pattern` (checked by
/// [`check_pattern`]): component by component, `*` and `?` never crossing a
/// `/`.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    p.len() == n.len() && p.iter().zip(&n).all(|(p, n)| component_matches(p, n))
}

/// Whether one path component matches one pattern component. A leading
/// `.` is matched only by a literal `.`, as in the shell.
pub fn component_matches(pattern: &str, part: &str) -> bool {
    if part.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    crate::glob::matches(pattern, part)
}

/// Checks an artifact name a node sent: what [`check_pattern`] checks,
/// with no wildcard allowed to matter (the gateway stores it under a name
/// of its own, never this path). The error names the rule.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "an artifact name is {} bytes; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.is_empty()
        || name.starts_with('/')
        || name.chars().any(char::is_control)
        || name.contains('\\')
        || name.split('/').any(|c| matches!(c, "" | "." | ".."))
    {
        return Err(format!(
            "'{}' is not a relative path under the job's working directory",
            crate::names::printable(name, MAX_NAME_LEN)
        ));
    }
    Ok(())
}

/// The file name an artifact is saved under by `openclaw job artifacts -o
/// DIR`: its path with `/` made `_`, so every artifact lands directly in
/// DIR and none can name a place outside it. Pure.
pub fn flat_name(name: &str) -> String {
    name.replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_under_the_working_directory_are_accepted() {
        for p in [
            "metrics.json",
            "ckpt/*.pt",
            "out/run-?/*.csv",
            ".hidden",
            "a b/c",
        ] {
            assert_eq!(check_pattern(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn patterns_that_leave_or_hide_are_refused_naming_the_rule() {
        let cases = [
            ("/etc/passwd", "absolute path"),
            ("../x", "'..'"),
            ("ckpt/../../x", "'..'"),
            ("a//b", "empty or '.'"),
            ("./a", "empty or '.'"),
            ("a/", "empty or '.'"),
            ("", "empty"),
            ("a\u{1b}[2Jb", "control character"),
            ("a\nb", "control character"),
            ("a\\b", "backslash"),
        ];
        for (p, why) in cases {
            let e = check_pattern(p).unwrap_err();
            assert!(e.contains(why), "{p:?}: {e}");
            assert!(
                !e.contains('\u{1b}'),
                "the error escapes the pattern: {e:?}"
            );
        }
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        assert!(check_pattern(&long).unwrap_err().contains("limit is 256"));
        let deep = vec!["d"; MAX_PATTERN_DEPTH + 1].join("/");
        assert!(check_pattern(&deep).unwrap_err().contains("components"));
        let many = vec!["x".to_string(); MAX_PATTERNS + 1];
        assert!(check_patterns(&many).unwrap_err().contains("at most 32"));
        assert_eq!(check_patterns(&many[..MAX_PATTERNS]), Ok(()));
    }

    #[test]
    fn matching_is_per_component_and_hides_dot_files() {
        assert!(matches("ckpt/*.pt", "ckpt/last.pt"));
        assert!(!matches("ckpt/*.pt", "ckpt/sub/last.pt"));
        assert!(!matches("*.pt", "ckpt/last.pt"));
        assert!(matches("*/*.pt", "ckpt/last.pt"));
        assert!(matches("run-?.log", "run-1.log"));
        assert!(!matches("*", ".env"));
        assert!(matches(".env", ".env"));
        assert!(matches("metrics.json", "metrics.json"));
        assert!(!matches("metrics.json", "metrics.jsonl"));
    }

    #[test]
    fn names_from_a_node_must_stay_under_the_directory() {
        assert_eq!(check_name("ckpt/last.pt"), Ok(()));
        for bad in ["", "/x", "../x", "a/../b", "a//b", "a\u{7}", "a\\b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
        assert_eq!(flat_name("ckpt/last.pt"), "ckpt_last.pt");
    }
}
