//! Unit tests of the file child: real files in a temp dir, the peer's
//! frames in memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::MetadataExt as _;

use nix::sys::stat::Mode;
use proto::files::{self, EntryKind, FileMsg, FileOp};
use sha2::{Digest as _, Sha256};

use super::{FileSpec, read_msg, serve, write_msg};

fn run(op: FileOp, allowed: &[String], input: &[FileMsg]) -> (Result<(), String>, Vec<FileMsg>) {
    let mut inbuf = Vec::new();
    for m in input {
        write_msg(&mut inbuf, m).unwrap();
    }
    let spec = FileSpec {
        op,
        allowed: allowed.to_vec(),
        user: None,
    };
    let mut out = Vec::new();
    let res = serve(&spec, &mut inbuf.as_slice(), &mut out);
    let mut r = out.as_slice();
    let mut msgs = Vec::new();
    while let Some(m) = read_msg(&mut r).unwrap() {
        msgs.push(m);
    }
    (res, msgs)
}

fn put(path: &str) -> FileOp {
    FileOp::Put {
        path: path.into(),
        into_dir: None,
        mode: Some(0o640),
        mtime: Some(1_600_000_000),
        resume: false,
    }
}

fn sum(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

#[test]
fn a_put_lands_whole_with_its_mode_and_time_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let allowed = vec![root.to_string_lossy().into_owned()];
    let target = root.join("f");
    let p = target.to_string_lossy().into_owned();
    let body = b"hello, node".to_vec();
    let (res, out) = run(
        put(&p),
        &allowed,
        &[
            FileMsg::Start { offset: 0 },
            FileMsg::Data(body.clone()),
            FileMsg::End {
                size: body.len() as u64,
                sha256: sum(&body),
            },
        ],
    );
    res.unwrap();
    assert!(
        matches!(out.last(), Some(FileMsg::Done { bytes: 11 })),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), body);
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(meta.mtime(), 1_600_000_000);
    // A wrong sum: an error, and nothing under the name or beside it.
    let other = root.join("g");
    let (res, _) = run(
        put(&other.to_string_lossy()),
        &allowed,
        &[
            FileMsg::Start { offset: 0 },
            FileMsg::Data(body.clone()),
            FileMsg::End {
                size: body.len() as u64,
                sha256: [0; 32],
            },
        ],
    );
    assert!(res.unwrap_err().contains("checksum mismatch"));
    assert!(!other.exists());
    assert!(!root.join(files::part_name("g")).exists());
    // The sender goes away: the partial file stays, the name is never written.
    let (res, _) = run(
        put(&other.to_string_lossy()),
        &allowed,
        &[FileMsg::Start { offset: 0 }, FileMsg::Data(b"hel".to_vec())],
    );
    assert!(res.unwrap_err().contains("--resume"));
    assert!(!other.exists());
    assert_eq!(
        std::fs::read(root.join(files::part_name("g"))).unwrap(),
        b"hel"
    );
}

#[test]
fn a_resumed_put_continues_a_verified_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let allowed = vec![root.to_string_lossy().into_owned()];
    std::fs::write(root.join(files::part_name("f")), b"hello").unwrap();
    let body = b"hello world";
    let op = FileOp::Put {
        path: root.join("f").to_string_lossy().into_owned(),
        into_dir: None,
        mode: None,
        mtime: None,
        resume: true,
    };
    let (res, out) = run(
        op,
        &allowed,
        &[
            FileMsg::Start { offset: 5 },
            FileMsg::Data(b" world".to_vec()),
            FileMsg::End {
                size: 11,
                sha256: sum(body),
            },
        ],
    );
    res.unwrap();
    match &out[0] {
        FileMsg::Ready { offset, prefix, .. } => {
            assert_eq!(*offset, 5);
            assert_eq!(*prefix, sum(b"hello"));
        }
        m => panic!("{m:?}"),
    }
    assert_eq!(std::fs::read(root.join("f")).unwrap(), body);
}

#[test]
fn links_dotdot_and_special_files_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let root = base.join("lab");
    let outside = base.join("secret");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("key"), b"k").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.join("key"), root.join("key")).unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    let allowed = vec![root.to_string_lossy().into_owned()];
    let get = |p: &std::path::Path| FileOp::Get {
        path: p.to_string_lossy().into_owned(),
        offset: 0,
    };
    let cases = [
        (get(&root.join("out/key")), "symbolic link"),
        (get(&root.join("key")), "symbolic link"),
        (get(&root.join("fifo")), "FIFO"),
        (get(&outside.join("key")), "allowed_paths"),
        (
            FileOp::Get {
                path: format!("{}/../secret/key", root.display()),
                offset: 0,
            },
            "'..'",
        ),
        (get(&root.join("a\u{7}b")), "control character"),
        (get(&root), "directory"),
        (
            put(&root.join("out/new").to_string_lossy()),
            "symbolic link",
        ),
        (put(&root.join("key").to_string_lossy()), "symbolic link"),
    ];
    for (op, want) in cases {
        let shown = op.path().to_string();
        let (res, _) = run(op, &allowed, &[FileMsg::Start { offset: 0 }]);
        let e = res.unwrap_err();
        assert!(e.contains(want), "{shown}: {e}");
    }
    assert!(!outside.join("new").exists());
    // Nothing allowed: the key is named.
    let (res, _) = run(get(&root.join("x")), &[], &[]);
    assert!(res.unwrap_err().contains("allowed_paths"));
}

#[test]
fn a_listing_never_follows_links() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    std::fs::create_dir_all(root.join("t/sub")).unwrap();
    std::fs::write(root.join("t/sub/a"), b"a").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("t/etc")).unwrap();
    let allowed = vec![root.to_string_lossy().into_owned()];
    let (res, out) = run(
        FileOp::List {
            path: root.join("t").to_string_lossy().into_owned(),
        },
        &allowed,
        &[],
    );
    res.unwrap();
    let names: Vec<(String, EntryKind)> = out
        .iter()
        .filter_map(|m| match m {
            FileMsg::Entry(e) => Some((e.name.clone(), e.kind.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (String::new(), EntryKind::Dir),
            ("etc".into(), EntryKind::Symlink("/etc".into())),
            ("sub".into(), EntryKind::Dir),
            ("sub/a".into(), EntryKind::File),
        ]
    );
}

#[test]
fn two_copies_never_write_one_name_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let allowed = vec![root.to_string_lossy().into_owned()];
    // Another copy to "f" holds its partial file.
    let held = std::fs::File::create(root.join(files::part_name("f"))).unwrap();
    std::io::Write::write_all(&mut &held, b"theirs").unwrap();
    let _lock = nix::fcntl::Flock::lock(held, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let body = b"mine".to_vec();
    let (res, _) = run(
        put(&root.join("f").to_string_lossy()),
        &allowed,
        &[
            FileMsg::Start { offset: 0 },
            FileMsg::Data(body.clone()),
            FileMsg::End {
                size: 4,
                sha256: sum(&body),
            },
        ],
    );
    assert!(res.unwrap_err().contains("under way"));
    // Their partial file is untouched, and nothing is under the name.
    assert_eq!(
        std::fs::read(root.join(files::part_name("f"))).unwrap(),
        b"theirs"
    );
    assert!(!root.join("f").exists());
}

/// A partial file someone else planted (another user's file, or a hard
/// link to a file elsewhere) is never written through: the upload would
/// land in an inode another user holds open, or truncate the far file.
#[test]
fn a_planted_partial_file_is_never_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let allowed = vec![root.to_string_lossy().into_owned()];
    let body = b"secret upload".to_vec();
    let input = [
        FileMsg::Start { offset: 0 },
        FileMsg::Data(body.clone()),
        FileMsg::End {
            size: body.len() as u64,
            sha256: sum(&body),
        },
    ];
    // A hard link under the partial name to a file outside the copy.
    let far = root.join("far");
    std::fs::write(&far, b"far file").unwrap();
    std::fs::hard_link(&far, root.join(files::part_name("f"))).unwrap();
    let (res, _) = run(put(&root.join("f").to_string_lossy()), &allowed, &input);
    let e = res.unwrap_err();
    assert!(e.contains("remove it"), "{e}");
    assert_eq!(std::fs::read(&far).unwrap(), b"far file");
    assert!(!root.join("f").exists());
    // Another user's file under the partial name (only root can make one).
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: the other user's partial file needs root to chown it");
        return;
    }
    let planted = root.join(files::part_name("g"));
    std::fs::write(&planted, b"").unwrap();
    std::os::unix::fs::chown(&planted, Some(4242), Some(4242)).unwrap();
    let (res, _) = run(put(&root.join("g").to_string_lossy()), &allowed, &input);
    let e = res.unwrap_err();
    assert!(e.contains("remove it"), "{e}");
    assert_eq!(std::fs::read(&planted).unwrap(), b"");
    assert!(!root.join("g").exists());
}
