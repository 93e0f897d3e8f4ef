//! Copying files to and from nodes (`openclaw cp`, protocol 3). Pure: the
//! messages, the path rules and the name of a partial file.
//!
//! # Flow
//!
//! Each copy of one thing (a file, a directory, a link, a listing) is one
//! bidirectional stream. The CLI opens it with
//! [`crate::Request::Copy`]`(`[`CopyRequest`]`)`. The gateway checks its
//! policy (`[[policy.files]]`), asks the node over the control stream
//! ([`crate::ControlMsg::Copy`]) and waits for the node's
//! [`crate::Open::Copy`] stream (the node still only dials out); it
//! answers the CLI with one [`crate::Response`] (`Done`, or `Error`), then
//! relays both streams into each other. From there on both ways carry
//! [`FileMsg`] frames, end to end between the CLI and a child process the
//! node agent starts as the job user (`openclaw __job-exec` with a file
//! spec): the agent only splices the child's stdin and stdout onto the
//! stream.
//!
//! * [`FileOp::Put`] (to the node): the node answers [`FileMsg::Ready`]
//!   (the final path, and with `resume` the length and SHA-256 of the
//!   partial file it holds); the CLI answers [`FileMsg::Start`] with the
//!   offset it agrees to (that length if its own prefix hashes the same,
//!   else 0), then [`FileMsg::Data`] chunks and [`FileMsg::End`] with the
//!   SHA-256 of the whole file. The node checks the sum, syncs, renames
//!   the partial file onto the final name and answers [`FileMsg::Done`],
//!   or [`FileMsg::Error`].
//! * [`FileOp::Get`] (from the node): the node answers [`FileMsg::Ready`]
//!   (size, mode, mtime, and for the `offset` the CLI holds, the SHA-256
//!   of that prefix of the file); the CLI answers [`FileMsg::Start`]; the
//!   node sends `Data` and `End`; the CLI checks the sum and answers
//!   `Done` or `Error`.
//! * [`FileOp::Stat`], [`FileOp::List`]: [`FileMsg::Entry`] frames, then
//!   `Done`. [`FileOp::Mkdir`], [`FileOp::Symlink`]: `Done` or `Error`.
//!
//! A checksum that does not match is an `Error`, never a `Done`. A partial
//! file lives under [`part_name`] in the target's directory until it is
//! complete and verified; nothing is ever written under the final name
//! before that.

use serde::{Deserialize, Serialize};

/// Bytes of file data per [`FileMsg::Data`] frame.
pub const CHUNK: usize = 256 * 1024;
/// The largest [`FileMsg`] frame either side accepts.
pub const FRAME_LIMIT: usize = CHUNK + 4096;
/// Longest path accepted, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// Which way a copy goes, as policy and audit see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// From the requester to the node (upload).
    ToNode,
    /// From the node to the requester (download).
    FromNode,
}

impl Direction {
    /// `upload` or `download`, as `[[policy.files]] direction` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToNode => "upload",
            Direction::FromNode => "download",
        }
    }
}

/// One copy stream's request: what to do where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRequest {
    /// The node.
    pub node: String,
    /// What to do there.
    pub op: FileOp,
}

/// What one copy stream does on the node. Every `path` is absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOp {
    /// Write one regular file (upload).
    Put {
        /// Where. If it names an existing directory and `into_dir` is
        /// set, the file goes into it under that name.
        path: String,
        /// The name to write under when `path` is a directory.
        into_dir: Option<String>,
        /// Permission bits to set (`-p`); else the umask's.
        mode: Option<u32>,
        /// Modification time to set (`-p`), unix seconds.
        mtime: Option<i64>,
        /// Continue a partial file left by an earlier attempt.
        resume: bool,
    },
    /// Read one regular file (download).
    Get {
        /// Which.
        path: String,
        /// Bytes the requester already holds (`--resume`), to be verified.
        offset: u64,
    },
    /// What `path` is (one [`FileMsg::Entry`] with an empty name).
    Stat {
        /// Which.
        path: String,
    },
    /// Everything under the directory `path`, never following links
    /// ([`FileMsg::Entry`] frames, parents before children).
    List {
        /// Which.
        path: String,
    },
    /// Make a directory (an existing one is kept), setting mode and mtime
    /// when given.
    Mkdir {
        /// Which.
        path: String,
        /// Permission bits.
        mode: Option<u32>,
        /// Modification time, unix seconds.
        mtime: Option<i64>,
    },
    /// Make a symbolic link (never followed; it replaces nothing).
    Symlink {
        /// Where.
        path: String,
        /// What it points at, as given.
        target: String,
    },
}

impl FileOp {
    /// The path the operation names.
    pub fn path(&self) -> &str {
        match self {
            FileOp::Put { path, .. }
            | FileOp::Get { path, .. }
            | FileOp::Stat { path }
            | FileOp::List { path }
            | FileOp::Mkdir { path, .. }
            | FileOp::Symlink { path, .. } => path,
        }
    }

    /// Which way data goes: writes are uploads, reads downloads.
    pub fn direction(&self) -> Direction {
        match self {
            FileOp::Put { .. } | FileOp::Mkdir { .. } | FileOp::Symlink { .. } => Direction::ToNode,
            FileOp::Get { .. } | FileOp::Stat { .. } | FileOp::List { .. } => Direction::FromNode,
        }
    }

    /// A short word for logs and audit.
    pub fn verb(&self) -> &'static str {
        match self {
            FileOp::Put { .. } => "put",
            FileOp::Get { .. } => "get",
            FileOp::Stat { .. } => "stat",
            FileOp::List { .. } => "list",
            FileOp::Mkdir { .. } => "mkdir",
            FileOp::Symlink { .. } => "symlink",
        }
    }
}

/// What a tree entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, and what it points at.
    Symlink(String),
    /// Anything else (device, FIFO, socket): never copied.
    Other,
}

/// One thing under a listed directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its path below the listed directory, `/`-separated; empty for the
    /// directory itself (and for a [`FileOp::Stat`]).
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, unix seconds.
    pub mtime: i64,
    /// Size in bytes.
    pub size: u64,
}

/// The frames of a copy stream after the gateway's `Done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileMsg {
    /// The node's first answer to `Put` and `Get`.
    Ready {
        /// The path on the node the copy reads or writes (for `Put` into a
        /// directory, the file inside it).
        path: String,
        /// `Get`: the file's size.
        size: u64,
        /// `Get`: permission bits.
        mode: u32,
        /// `Get`: modification time, unix seconds.
        mtime: i64,
        /// Length of the prefix offered for resuming (`Put`: of the node's
        /// partial file; `Get`: the requester's offset, at most the size).
        offset: u64,
        /// SHA-256 of that prefix.
        prefix: [u8; 32],
    },
    /// Where the data starts: the offered offset, or 0 to start over.
    Start {
        /// The offset.
        offset: u64,
    },
    /// File bytes, in order, from the start offset on.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The end of the data: the size and SHA-256 of the whole file.
    End {
        /// Size in bytes.
        size: u64,
        /// SHA-256 of all of it.
        sha256: [u8; 32],
    },
    /// One listed entry.
    Entry(Entry),
    /// The operation succeeded.
    Done {
        /// File bytes moved on this stream.
        bytes: u64,
    },
    /// The operation failed, said for people: the path and the rule.
    Error {
        /// What failed.
        message: String,
    },
}

/// Why a path is refused before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not absolute.
    #[error("{0:?} is not an absolute path; name the node's path from / (e.g. NODE:/srv/lab/file)")]
    Relative(String),
    /// Too long.
    #[error("the path is longer than {MAX_PATH} bytes")]
    TooLong,
    /// Has a `..` component.
    #[error(
        "{0:?} has a '..' component; copies never climb out of a directory, name the path without it"
    )]
    DotDot(String),
    /// Has a control character.
    #[error("{0:?} has a control character in a name; rename it on the node first")]
    Control(String),
    /// The node allows no path.
    #[error(
        "this node allows no copies: allowed_paths in its node.toml [policy] is empty; an admin adds the directories to allow there"
    )]
    NoneAllowed,
    /// Outside every allowed path.
    #[error("{path:?} is outside allowed_paths in the node's node.toml [policy] ({allowed:?})")]
    Outside {
        /// The path.
        path: String,
        /// What the node allows.
        allowed: Vec<String>,
    },
    /// An allowed path that is not canonical.
    #[error(
        "allowed_paths entry {0:?} in node.toml is not a canonical absolute path (no '.', '..', '//' or trailing '/'); fix node.toml"
    )]
    BadAllowed(String),
}

/// Whether a `FileMsg` frame body holds file bytes (`Data`), from its
/// first bytes only: a relay passes those on undecoded and decodes every
/// other frame, however long, so no verdict hides in a padded frame.
/// False for a body too short to tell. Pure.
pub fn is_data_body(body: &[u8]) -> bool {
    // The variant's tag is what the encoding of an empty `Data` holds
    // before its length (one byte, for a length of 0).
    match crate::frame::encode(&FileMsg::Data(Vec::new())) {
        Ok(empty) => {
            let tag = &empty[crate::frame::HEADER_LEN..empty.len().saturating_sub(1)];
            !tag.is_empty() && body.len() > tag.len() && body.starts_with(tag)
        }
        Err(_) => false,
    }
}

/// Whether `name` (one path component) holds a control character.
pub fn has_control(name: &str) -> bool {
    name.chars().any(char::is_control)
}

/// A path's components, checked: absolute, no `..`, no control
/// characters; `.` and empty components are dropped.
pub fn components(path: &str) -> Result<Vec<&str>, PathError> {
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::Relative(path.to_string()));
    };
    let mut out = Vec::new();
    for c in rest.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(PathError::DotDot(path.to_string())),
            c if has_control(c) => return Err(PathError::Control(path.to_string())),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Splits `path` into the allowed root it lies in (as components) and
/// the components below that root, which the node opens one at a time
/// without following links. `allowed` holds canonical absolute
/// directories; a path lies in one when its components start with all of
/// that one's (whole components: `/srv/lab` does not allow `/srv/lab2`).
/// The longest matching root wins.
pub fn split_allowed<'a>(
    path: &'a str,
    allowed: &'a [String],
) -> Result<(Vec<&'a str>, Vec<&'a str>), PathError> {
    let parts = components(path)?;
    if allowed.is_empty() {
        return Err(PathError::NoneAllowed);
    }
    let mut best: Option<Vec<&str>> = None;
    for a in allowed {
        let root = canonical_allowed(a)?;
        if parts.len() >= root.len()
            && parts[..root.len()] == root[..]
            && best.as_ref().is_none_or(|b| b.len() < root.len())
        {
            best = Some(root);
        }
    }
    match best {
        Some(root) => {
            let below = parts[root.len()..].to_vec();
            Ok((root, below))
        }
        None => Err(PathError::Outside {
            path: path.to_string(),
            allowed: allowed.to_vec(),
        }),
    }
}

/// An `allowed_paths` entry as components; refused unless canonical.
pub fn canonical_allowed(entry: &str) -> Result<Vec<&str>, PathError> {
    let bad = || PathError::BadAllowed(entry.to_string());
    let rest = entry.strip_prefix('/').ok_or_else(bad)?;
    if rest.is_empty() {
        return Ok(vec![]);
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == ".." || has_control(c))
    {
        return Err(bad());
    }
    Ok(parts)
}

/// The name a file is written under until it is complete and verified:
/// hidden, in the same directory, stable across attempts (so `--resume`
/// finds it).
pub fn part_name(name: &str) -> String {
    format!(".{name}.openclaw-part")
}

/// Whether `name` is one path component fit to create: not empty, `.`
/// or `..`, without `/` or control characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !has_control(name)
}

/// Lowercase hex of a digest, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_data_frame_is_told_from_its_first_bytes_and_nothing_else_is() {
        let body =
            |m: &FileMsg| crate::frame::encode(m).unwrap()[crate::frame::HEADER_LEN..].to_vec();
        for n in [0, 1, 127, 128, 300, 70_000, CHUNK] {
            assert!(is_data_body(&body(&FileMsg::Data(vec![7; n]))), "{n}");
        }
        for m in [
            FileMsg::Error {
                message: "x".repeat(200_000),
            },
            FileMsg::Done { bytes: 3 },
            FileMsg::Start { offset: 0 },
        ] {
            assert!(!is_data_body(&body(&m)), "{m:?}");
        }
        assert!(!is_data_body(&[]));
    }

    #[test]
    fn paths_are_absolute_without_dotdot_or_control_characters() {
        assert_eq!(components("/srv/lab/./f").unwrap(), vec!["srv", "lab", "f"]);
        assert_eq!(components("//srv//lab/").unwrap(), vec!["srv", "lab"]);
        assert!(matches!(components("srv/lab"), Err(PathError::Relative(_))));
        assert!(matches!(
            components("/srv/lab/../etc"),
            Err(PathError::DotDot(_))
        ));
        assert!(matches!(
            components("/srv/lab/a\nb"),
            Err(PathError::Control(_))
        ));
        assert!(matches!(
            components("/srv/lab/a\u{1b}[2J"),
            Err(PathError::Control(_))
        ));
        // A name that only contains dots is a name.
        assert_eq!(components("/srv/...").unwrap(), vec!["srv", "..."]);
        let long = format!("/{}", "a".repeat(MAX_PATH));
        assert_eq!(components(&long), Err(PathError::TooLong));
    }

    #[test]
    fn allowed_paths_are_whole_component_prefixes() {
        let allowed = vec!["/srv/lab".to_string(), "/srv/lab/deep".to_string()];
        let (root, below) = split_allowed("/srv/lab/x/y", &allowed).unwrap();
        assert_eq!((root, below), (vec!["srv", "lab"], vec!["x", "y"]));
        // The longest root wins.
        let (root, below) = split_allowed("/srv/lab/deep/z", &allowed).unwrap();
        assert_eq!((root, below), (vec!["srv", "lab", "deep"], vec!["z"]));
        // The root itself.
        let (root, below) = split_allowed("/srv/lab/", &allowed).unwrap();
        assert_eq!((root.len(), below.len()), (2, 0));
        // Whole components only.
        for outside in ["/srv/lab2/f", "/srv/la", "/srv", "/etc/passwd"] {
            let e = split_allowed(outside, &allowed).unwrap_err();
            assert!(matches!(e, PathError::Outside { .. }), "{outside}: {e}");
            assert!(e.to_string().contains("allowed_paths"), "{e}");
        }
        // `..` never climbs out, even where it would land inside again.
        assert!(matches!(
            split_allowed("/srv/lab/../lab/f", &allowed),
            Err(PathError::DotDot(_))
        ));
        // Nothing allowed: the key is named.
        let e = split_allowed("/srv/lab/f", &[]).unwrap_err();
        assert_eq!(e, PathError::NoneAllowed);
        assert!(e.to_string().contains("allowed_paths"), "{e}");
        // "/" allows every absolute path.
        let everything = ["/".to_string()];
        let (root, below) = split_allowed("/a/b", &everything).unwrap();
        assert_eq!((root.len(), below), (0, vec!["a", "b"]));
    }

    #[test]
    fn allowed_entries_must_be_canonical() {
        for bad in [
            "srv/lab",
            "/srv/lab/",
            "/srv//lab",
            "/srv/./lab",
            "/srv/../etc",
        ] {
            assert_eq!(
                split_allowed("/srv/lab/f", &[bad.to_string()]),
                Err(PathError::BadAllowed(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn part_names_are_hidden_stable_and_beside_the_target() {
        assert_eq!(part_name("ckpt.pt"), ".ckpt.pt.openclaw-part");
        assert!(valid_name(&part_name("x")));
        for bad in ["", ".", "..", "a/b", "a\tb"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn directions_follow_the_data() {
        let put = FileOp::Put {
            path: "/a".into(),
            into_dir: None,
            mode: None,
            mtime: None,
            resume: false,
        };
        assert_eq!(put.direction(), Direction::ToNode);
        assert_eq!(
            FileOp::List { path: "/a".into() }.direction(),
            Direction::FromNode
        );
        assert_eq!(Direction::ToNode.as_str(), "upload");
    }
}
