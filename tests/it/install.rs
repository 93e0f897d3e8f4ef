//! `scripts/install.sh` into a scratch root, the systemd units it installs
//! (`systemd-analyze verify`), and `--uninstall` / `--purge`. Needs root
//! (owners) and systemd's tools; CI runs as root and `.ci/run` installs them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skip_reason() -> Option<String> {
    if !testkit::is_root() {
        return Some("needs root to set owners in the scratch root".into());
    }
    for tool in [
        "systemd-sysusers",
        "systemd-tmpfiles",
        "systemd-analyze",
        "userdel",
    ] {
        if !testkit::have_tool(tool) {
            return Some(format!(
                "{tool} is missing (apt-get install systemd passwd)"
            ));
        }
    }
    None
}

fn install(root: &Path, extra: &[&str]) -> std::process::Output {
    let out = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .args(["--root", root.to_str().unwrap(), "--bin", BIN])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "install.sh {extra:?}: {out:?}");
    out
}

fn mode_owner(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.permissions().mode() & 0o7777, m.uid(), m.gid())
}

/// The uid and gid of `name` in the scratch root's /etc/passwd.
fn user(root: &Path, name: &str) -> Option<(u32, u32, String)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name)).then(|| {
            (
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[6].to_string(),
            )
        })
    })
}

#[test]
fn install_into_a_scratch_root_then_uninstall_and_purge() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED install_into_a_scratch_root_then_uninstall_and_purge: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    install(root, &[]);

    // The binary, runnable.
    let bin = root.join("usr/local/bin/openclaw");
    assert_eq!(mode_owner(&bin).0, 0o755);
    let v = Command::new(&bin).arg("--version").output().unwrap();
    assert!(v.status.success() && String::from_utf8_lossy(&v.stdout).contains("openclaw"));

    // A system user with no login, and the homes with their owners.
    let (uid, gid, shell) = user(root, "openclaw").expect("user openclaw in the scratch root");
    assert!(uid < 1000, "a system uid, got {uid}");
    assert!(shell.ends_with("nologin"), "{shell}");
    let lib = root.join("var/lib/openclaw");
    assert_eq!(mode_owner(&lib), (0o755, 0, 0));
    for d in ["gateway", "moltbot", "wecom"] {
        assert_eq!(mode_owner(&lib.join(d)), (0o700, uid, gid), "{d}");
    }
    assert_eq!(mode_owner(&lib.join("node")), (0o700, 0, 0));
    assert_eq!(mode_owner(&root.join("etc/openclaw")), (0o750, 0, gid));

    // Units that systemd accepts, as installed (the binary path pointed at
    // the scratch root's copy, since verify checks that it exists).
    let units = root.join("etc/systemd/system");
    let check = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for u in ["gateway", "node", "moltbot", "wecom"] {
        let name = format!("openclaw-{u}.service");
        let text = std::fs::read_to_string(units.join(&name)).unwrap();
        assert!(text.contains("Restart=on-failure"), "{name}");
        assert!(text.contains("NoNewPrivileges=yes"), "{name}");
        assert!(text.contains("StateDirectory=openclaw/"), "{name}");
        if u != "node" {
            assert!(text.contains("User=openclaw"), "{name}");
            assert!(
                text.contains("CapabilityBoundingSet=\n"),
                "{name}: no capabilities"
            );
        }
        let text = text.replace("/usr/local/bin/openclaw", bin.to_str().unwrap());
        std::fs::write(check.path().join(&name), text).unwrap();
        names.push(check.path().join(&name));
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Completions, man pages and docs; every file is in the manifest.
    for f in [
        "usr/share/bash-completion/completions/openclaw",
        "usr/share/zsh/vendor-completions/_openclaw",
        "usr/share/fish/vendor_completions.d/openclaw.fish",
        "usr/local/share/man/man1/openclaw.1",
        "usr/local/share/man/man1/openclaw-run.1",
        "usr/local/share/doc/openclaw/CLI.md",
    ] {
        assert!(root.join(f).is_file(), "{f} missing");
    }
    let manifest =
        std::fs::read_to_string(root.join("usr/local/share/openclaw/installed-files")).unwrap();
    let listed: Vec<&str> = manifest.lines().collect();
    assert!(listed.contains(&"/usr/local/bin/openclaw"), "{manifest}");

    // Installing again is harmless (same user, same files).
    install(root, &[]);
    assert_eq!(user(root, "openclaw").unwrap().0, uid);

    // Something in a home, to see uninstall keep it.
    std::fs::write(lib.join("gateway/marker"), b"state").unwrap();

    // Uninstall: every listed file goes; state and user stay.
    let out = install(root, &["--uninstall"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept /var/lib/openclaw"));
    for f in &listed {
        assert!(
            !root.join(f.trim_start_matches('/')).exists(),
            "{f} left behind"
        );
    }
    assert!(lib.join("gateway/marker").exists(), "state kept");
    assert!(user(root, "openclaw").is_some(), "user kept");

    // Purge: state, /etc/openclaw and the user go too.
    install(root, &["--uninstall", "--purge"]);
    assert!(!lib.exists() && !root.join("etc/openclaw").exists());
    assert!(user(root, "openclaw").is_none(), "user removed");
}

#[test]
fn install_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .args([
            "--root",
            dir.path().to_str().unwrap(),
            "--bin",
            "/nonexistent/openclaw",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cargo build --release -p openclaw"), "{err}");
    let out = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .arg("--frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option --frobnicate"));
}
