//! `openclaw cp`: files to and from a node through the gateway, against a
//! real gateway and a real node agent on 127.0.0.1 whose copies run as
//! `nobody` (the agent runs as root and drops, as for jobs). Root only:
//! without root the agent cannot switch users, and these tests say
//! SKIPPED.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use testkit::{Lab, Proc, edit_file, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(60);
const NODE: &str = "worker-cp-01";

/// A directory under the system's temp dir that `nobody` can reach (a
/// lab's own temp dir is closed to it), removed on drop. `lab` inside it
/// belongs to `nobody` and is the node's one allowed path.
struct Area {
    root: PathBuf,
}

impl Area {
    fn new(tag: &str) -> Area {
        let root = std::env::temp_dir().join(format!(
            "openclaw-cp-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let lab = root.join("lab");
        std::fs::create_dir(&lab).unwrap();
        let (uid, gid) = nobody();
        std::os::unix::fs::chown(&lab, Some(uid), Some(gid)).unwrap();
        Area { root }
    }

    fn lab(&self) -> PathBuf {
        self.root.join("lab")
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    (u.uid.as_raw(), u.gid.as_raw())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A node whose jobs and copies run as `nobody`, allowed `allowed`.
fn node_home(lab: &mut Lab, allowed: &Path) -> PathBuf {
    let home = lab.enroll(NODE, "cpu");
    let cfg = home.join("node.toml");
    edit_file(&cfg, "# run_as = \"openclaw-job\"", "run_as = \"nobody\"");
    edit_file(
        &cfg,
        "allowed_paths = []",
        &format!("allowed_paths = [{:?}]", allowed.to_str().unwrap()),
    );
    home
}

fn remote(p: &Path) -> String {
    format!("{NODE}:{}", p.display())
}

fn sha(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    proto::files::hex(&h.finalize())
}

/// `len` bytes that do not repeat in any short period.
fn write_noise(path: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
}

pub(crate) fn audit(gw_home: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(gw_home.join("state.db")).unwrap();
    let mut q = db
        .prepare("SELECT actor || ' ' || target || ' ' || detail FROM audit WHERE action = 'cp' ORDER BY id")
        .unwrap();
    q.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A tree of `files` files in nested directories with varied modes and
/// times, and a link.
fn make_tree(top: &Path, files: usize) {
    std::fs::create_dir(top).unwrap();
    for i in 0..files {
        let dir = top
            .join(format!("d{:02}", i % 20))
            .join(format!("e{}", i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(format!("f{i:04}.txt"));
        std::fs::write(&f, format!("file {i}\n").repeat(i % 7 + 1)).unwrap();
        let mode = [0o600, 0o640, 0o755, 0o444][i % 4];
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000 + i as u64 * 61);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    std::os::unix::fs::symlink("d00/e0/f0000.txt", top.join("link")).unwrap();
    // Directory times last: writing inside a directory changes its time.
    for d in 0..20 {
        let dir = top.join(format!("d{d:02}"));
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_400_000_000 + d * 3600);
        std::fs::File::open(&dir).unwrap().set_modified(t).unwrap();
    }
}

/// Every entry under `top`: relative path, kind, mode, mtime and (files)
/// SHA-256.
fn describe(top: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(top).unwrap().display().to_string();
            if m.file_type().is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&p).unwrap().display()
                ));
            } else if m.is_dir() {
                out.push(format!("{rel}/ {:o} {}", m.mode() & 0o7777, m.mtime()));
                stack.push(p);
            } else {
                out.push(format!(
                    "{rel} {:o} {} {}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    sha(&p)
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn cp_round_trips_a_256_mib_file_and_a_tree_of_2000_files_as_the_job_user() {
    if !is_root() {
        eprintln!("SKIPPED: copies as the job user need the agent to run as root");
        return;
    }
    let area = Area::new("round");
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = node_home(&mut lab, &area.lab());
    let _node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);
    let here = lab.dir().join("here");
    std::fs::create_dir(&here).unwrap();

    // One big file, up and back down.
    let big = here.join("big.bin");
    write_noise(&big, 256 << 20);
    let want = sha(&big);
    let out = lab.admin(&["cp", big.to_str().unwrap(), &remote(&area.lab())]);
    assert_eq!(out.code, 0, "{out:?}");
    let there = area.lab().join("big.bin");
    assert_eq!(sha(&there), want);
    // Written by the job user, never the agent.
    let (uid, _) = nobody();
    assert_eq!(std::fs::metadata(&there).unwrap().uid(), uid);
    assert!(!area.lab().join(".big.bin.openclaw-part").exists());
    let back = here.join("back.bin");
    let out = lab.admin(&["cp", &remote(&there), back.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sha(&back), want);

    // A tree of 2,000 files with modes, times and a link, up and back.
    let tree = here.join("tree");
    make_tree(&tree, 2000);
    let out = lab.admin(&[
        "cp",
        "-r",
        "-p",
        tree.to_str().unwrap(),
        &remote(&area.lab()),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let want = describe(&tree);
    assert_eq!(want.len(), 2000 + 20 + 60 + 1, "the tree as made");
    assert_eq!(describe(&area.lab().join("tree")), want);
    let down = here.join("down");
    std::fs::create_dir(&down).unwrap();
    let out = lab.admin(&[
        "cp",
        "-r",
        "-p",
        &remote(&area.lab().join("tree")),
        down.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(describe(&down.join("tree")), want);

    // Standard input and output.
    let out = std::process::Command::new(BIN)
        .args(["--home", lab.gw_home.to_str().unwrap(), "cp", "-"])
        .arg(remote(&area.lab().join("piped")))
        .stdin(std::fs::File::open(here.join("tree/d01/e1/f0001.txt")).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = lab.admin(&["cp", &remote(&area.lab().join("piped")), "-"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "file 1\nfile 1\n");

    // Every copy is audited with its direction, path and result.
    let rows = audit(&lab.gw_home);
    let big_up = format!("put upload {}: ", there.display());
    assert!(
        rows.iter()
            .any(|r| r.contains(&big_up) && r.contains(&format!("ok, {} file bytes", 256 << 20))),
        "{:?}",
        &rows[..rows.len().min(3)]
    );
    let big_down = format!("get download {}: ", there.display());
    assert!(
        rows.iter()
            .any(|r| r.contains(&big_down) && r.contains(&format!("ok, {} file bytes", 256 << 20))),
        "{:?}",
        &rows[..rows.len().min(3)]
    );
}

/// A member credential named `name`; returns its home.
fn member(lab: &mut Lab, name: &str) -> PathBuf {
    let home = lab.home(name);
    lab.admin(&[
        "client",
        "create",
        name,
        "--role",
        "user",
        "--out",
        home.to_str().unwrap(),
    ])
    .ok();
    home
}

#[test]
fn attack_cp_refuses_paths_outside_links_a_denied_direction_and_a_revoked_credential() {
    if !is_root() {
        eprintln!("SKIPPED: copies as the job user need the agent to run as root");
        return;
    }
    let area = Area::new("refuse");
    let secret = area.root.join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(secret.join("key"), b"do not read").unwrap();
    std::fs::set_permissions(secret.join("key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    // A link inside the allowed path that leads out of it.
    std::os::unix::fs::symlink(&secret, area.lab().join("out")).unwrap();
    std::os::unix::fs::symlink(secret.join("key"), area.lab().join("key")).unwrap();
    let mut lab = Lab::with_config(BIN, |cfg| {
        cfg.push_str(&format!(
            "\n[[policy.files]]\nnodes = [\"{NODE}\"]\nusers = [\"user:bob\"]\ndirection = \"upload\"\nfiles = \"deny\"\n"
        ));
    });
    lab.start_gateway();
    let home = node_home(&mut lab, &area.lab());
    let _node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);
    let f = lab.dir().join("f");
    std::fs::write(&f, b"payload").unwrap();
    let f = f.to_str().unwrap().to_string();

    // A destination ending in / must be a directory, as for scp: no file
    // named after the missing directory, either way, and no partial file.
    let missing = format!("{}/", remote(&area.lab().join("newdir")));
    refused(lab.admin(&["cp", &f, &missing]), "is not a directory");
    assert!(!area.lab().join("newdir").exists());
    std::fs::write(area.lab().join("there"), b"x").unwrap();
    let local_missing = format!("{}/", lab.dir().join("nolocal").display());
    refused(
        lab.admin(&["cp", &remote(&area.lab().join("there")), &local_missing]),
        "is not a directory",
    );
    let deep = lab.dir().join("no/such/place");
    refused(
        lab.admin(&[
            "cp",
            &remote(&area.lab().join("there")),
            deep.to_str().unwrap(),
        ]),
        "does not exist (make it first)",
    );
    assert!(
        !lab.dir().join(".nolocal.openclaw-part").exists() && !lab.dir().join("nolocal").exists()
    );
    // Outside allowed_paths: refused, naming the key.
    refused(
        lab.admin(&["cp", &f, &remote(&secret.join("x"))]),
        "allowed_paths",
    );
    assert!(!secret.join("x").exists());
    // Through a link, either way: refused, nothing written or read.
    refused(
        lab.admin(&["cp", &f, &remote(&area.lab().join("out/x"))]),
        "symbolic link",
    );
    assert!(!secret.join("x").exists());
    let got = lab.dir().join("got");
    refused(
        lab.admin(&[
            "cp",
            &remote(&area.lab().join("out/key")),
            got.to_str().unwrap(),
        ]),
        "symbolic link",
    );
    refused(
        lab.admin(&[
            "cp",
            &remote(&area.lab().join("key")),
            got.to_str().unwrap(),
        ]),
        "symbolic link",
    );
    assert!(!got.exists());
    // `..` never climbs out.
    refused(
        lab.admin(&[
            "cp",
            &f,
            &format!("{NODE}:{}/../secret/y", area.lab().display()),
        ]),
        "'..'",
    );
    assert!(!secret.join("y").exists());

    // A denied direction: bob may download, not upload.
    let bob = member(&mut lab, "bob");
    std::fs::write(area.lab().join("readme"), b"hello").unwrap();
    refused(
        lab.run(&bob, &["cp", &f, &remote(&area.lab().join("bobs"))]),
        "policy.files[0]",
    );
    assert!(!area.lab().join("bobs").exists());
    let bobs = lab.dir().join("bobs");
    let out = lab.run(
        &bob,
        &[
            "cp",
            &remote(&area.lab().join("readme")),
            bobs.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(std::fs::read(&bobs).unwrap(), b"hello");

    // A revoked credential: cut off in the middle of a copy, refused after.
    let alice = member(&mut lab, "alice");
    let mut cp = std::process::Command::new(BIN)
        .args(["--home", alice.to_str().unwrap(), "cp", "-"])
        .arg(remote(&area.lab().join("alices")))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = cp.stdin.take().unwrap();
    input.write_all(&[7u8; 1 << 20]).unwrap();
    let part = area.lab().join(".alices.openclaw-part");
    wait_until(T, "the copy under way", || {
        std::fs::metadata(&part).ok().filter(|m| m.len() > 0)
    });
    lab.admin(&["client", "revoke", "alice"]).ok();
    let status = wait_until(T, "the revoked copy to end", || cp.try_wait().unwrap());
    drop(input);
    assert_eq!(status.code(), Some(1), "a revoked copy must fail");
    assert!(
        !area.lab().join("alices").exists(),
        "nothing under the final name"
    );
    let out = lab.run(&alice, &["cp", &f, &remote(&area.lab().join("alices"))]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("revoked"), "{}", out.stderr);
    assert!(!area.lab().join("alices").exists());

    let rows = audit(&lab.gw_home);
    assert!(
        rows.iter().any(|r| r.starts_with("bob ")
            && r.contains("refused")
            && r.contains("policy.files[0]")),
        "{rows:?}"
    );
}

/// A copy that failed (exit 1) saying `want`.
#[track_caller]
fn refused(out: testkit::Out, want: &str) {
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains(want), "want {want:?}: {}", out.stderr);
}

/// Kills `node` once the partial file `part` holds `at` bytes or more.
fn kill_when(node: &mut Proc, part: &Path, at: u64) {
    wait_until(T, "the partial file to grow", || {
        std::fs::metadata(part).ok().filter(|m| m.len() >= at)
    });
    node.kill();
}

#[test]
fn cp_resumes_from_the_verified_offset_after_the_node_or_the_gateway_is_killed() {
    if !is_root() {
        eprintln!("SKIPPED: copies as the job user need the agent to run as root");
        return;
    }
    let area = Area::new("resume");
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = node_home(&mut lab, &area.lab());
    let mut node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);
    let here = lab.dir().join("here");
    std::fs::create_dir(&here).unwrap();
    let big = here.join("big.bin");
    let size: u64 = 256 << 20;
    write_noise(&big, size as usize);
    let want = sha(&big);

    // Upload: the node dies mid-copy; the copy fails and the name stays empty.
    let cp = lab.spawn(
        &lab.gw_home.clone(),
        &["cp", big.to_str().unwrap(), &remote(&area.lab())],
    );
    kill_when(
        &mut node,
        &area.lab().join(".big.bin.openclaw-part"),
        16 << 20,
    );
    let out = cp.wait(T);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!area.lab().join("big.bin").exists());
    let _node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);
    let out = lab.admin(&[
        "cp",
        "--resume",
        big.to_str().unwrap(),
        &remote(&area.lab()),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sha(&area.lab().join("big.bin")), want);
    // The resumed copy sent only what was missing.
    let rows = audit(&lab.gw_home);
    let last = rows.last().unwrap();
    let sent: u64 = last
        .split("ok, ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    assert!(
        sent < size - (8 << 20),
        "resumed copy sent {sent} of {size}: {last}"
    );

    // Download: the gateway dies mid-copy (SIGKILL) and comes back.
    let back = here.join("back.bin");
    let cp = lab.spawn(
        &lab.gw_home.clone(),
        &[
            "cp",
            &remote(&area.lab().join("big.bin")),
            back.to_str().unwrap(),
        ],
    );
    let part = here.join(".back.bin.openclaw-part");
    wait_until(T, "the local partial file to grow", || {
        std::fs::metadata(&part)
            .ok()
            .filter(|m| m.len() >= 16 << 20)
    });
    lab.stop_gateway(true);
    let out = cp.wait(T);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--resume"), "{}", out.stderr);
    assert!(!back.exists(), "nothing under the final name");
    lab.start_gateway();
    lab.wait_node(NODE, "connected", T);
    let out = lab.admin(&[
        "cp",
        "--resume",
        &remote(&area.lab().join("big.bin")),
        back.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sha(&back), want);
    assert!(!part.exists());
    let rows = audit(&lab.gw_home);
    let last = rows.last().unwrap();
    let sent: u64 = last
        .split("ok, ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    assert!(
        sent < size - (8 << 20),
        "resumed download sent {sent} of {size}: {last}"
    );

    // Ctrl-C mid-copy: the shell's code for SIGINT and the way to go on,
    // not a silent death (a new user's pass found it said nothing).
    let int = here.join("int.bin");
    let cp = lab.spawn(
        &lab.gw_home.clone(),
        &[
            "cp",
            &remote(&area.lab().join("big.bin")),
            int.to_str().unwrap(),
        ],
    );
    wait_until(T, "the interrupted copy's partial file to grow", || {
        std::fs::metadata(here.join(".int.bin.openclaw-part"))
            .ok()
            .filter(|m| m.len() >= 16 << 20)
    });
    cp.signal("INT");
    let out = cp.wait(T);
    assert_eq!(out.code, 130, "{out:?}");
    assert!(
        out.stderr.contains("SIGINT") && out.stderr.contains("--resume"),
        "{}",
        out.stderr
    );
    assert!(!int.exists(), "nothing under the final name");
}

/// A tmpfs of `size` mounted on `dir` for `nobody`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let (uid, gid) = nobody();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},uid={uid},gid={gid},mode=0755"))
            .arg("tmpfs")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn attack_cp_a_disk_that_fills_leaves_nothing_under_the_name() {
    if !is_root() {
        eprintln!("SKIPPED: copies as the job user need the agent to run as root");
        return;
    }
    let area = Area::new("full");
    let Some(_disk) = Tmpfs::mount(&area.lab(), "1m") else {
        eprintln!("SKIPPED: cannot mount a small tmpfs here to fill");
        return;
    };
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = node_home(&mut lab, &area.lab());
    let _node = lab.start_node(&home);
    lab.wait_node(NODE, "connected", T);
    let big = lab.dir().join("big.bin");
    write_noise(&big, 4 << 20);
    let out = lab.admin(&["cp", big.to_str().unwrap(), &remote(&area.lab())]);
    refused(out, "No space left on device");
    assert!(
        !area.lab().join("big.bin").exists(),
        "nothing under the name"
    );
    assert!(
        !area.lab().join(".big.bin.openclaw-part").exists(),
        "the partial file is removed, giving the space back"
    );
    // The disk has its space again: a small file fits.
    let small = lab.dir().join("small.txt");
    std::fs::write(&small, b"fits").unwrap();
    let out = lab.admin(&["cp", small.to_str().unwrap(), &remote(&area.lab())]);
    assert_eq!(out.code, 0, "{out:?}");
}
