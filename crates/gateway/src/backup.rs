//! `openclaw gateway backup FILE` and `restore FILE`: a gateway home in one
//! tar file, consistent while the gateway runs.
//!
//! The state database is copied with `VACUUM INTO` from a read-only
//! connection (one read transaction: a consistent snapshot, whatever the
//! gateway writes meanwhile). The CA, the server and admin credentials and
//! gateway.toml are copied as they are; job logs only with `--with-logs`
//! (job rows, with their output sizes, are always in the database). A
//! `MANIFEST` entry, written last, lists every file with its size and
//! SHA-256.
//!
//! A backup holds the CA's private key: it is written 0600, and whoever
//! holds it can mint certificates for this mesh.
//!
//! Restore treats the archive as hostile: only the names below are
//! accepted (no paths, no links, no other entry types), every file must
//! match the manifest, and nothing lands in the home before all of it has.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use mesh::Home;
use mesh::home::client_files;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::{GatewayError, files};

/// The archive's top directory.
const ROOT: &str = "openclaw-backup";
/// The manifest's name inside it.
const MANIFEST: &str = "MANIFEST";
/// Backup format version.
const FORMAT: u32 = 1;
/// Largest manifest accepted.
const MAX_MANIFEST: u64 = 16 << 20;

/// A reader that counts and hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: pki::Sha256Writer,
    bytes: u64,
}

impl<R: std::io::Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: pki::Sha256Writer::default(),
            bytes: 0,
        }
    }

    /// Bytes read, and their SHA-256 in lowercase hex.
    fn finish(self) -> (u64, String) {
        (self.bytes, pki::hex(&self.hasher.finish()))
    }
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = buf.get(..n).unwrap_or_default();
        self.hasher.write_all(chunk)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// What a file in a backup is, which sets its mode on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Private key or the state database: 0600.
    Private,
    /// Certificate or config: 0644.
    Public,
    /// A job log, `logs/N.stdout` or `logs/N.stderr`: 0600 in a 0700 directory.
    Log,
}

/// The files of a gateway home a backup carries, besides logs.
const HOME_FILES: &[(&str, Kind)] = &[
    (files::STATE, Kind::Private),
    (files::CA_KEY, Kind::Private),
    (files::SERVER_KEY, Kind::Private),
    (files::ROTATION, Kind::Private),
    (client_files::KEY, Kind::Private),
    (files::CA_CERT, Kind::Public),
    (files::SERVER_CERT, Kind::Public),
    (files::CONFIG, Kind::Public),
    (client_files::CERT, Kind::Public),
    (client_files::CONFIG, Kind::Public),
];

/// Whether `name` (relative to the archive's top directory) may be in a
/// backup, and as what. Pure: the whole defence against hostile names.
pub fn entry_kind(name: &str) -> Option<Kind> {
    if let Some((_, k)) = HOME_FILES.iter().find(|(n, _)| *n == name) {
        return Some(*k);
    }
    let log = name.strip_prefix("logs/")?;
    let (id, ext) = log.split_once('.')?;
    let id_ok = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
    // A session's recording (`<id>.cast`) goes with its job's logs.
    (id_ok && matches!(ext, "stdout" | "stderr" | "cast")).then_some(Kind::Log)
}

/// The manifest: what the backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Backup format version.
    pub format: u32,
    /// Unix seconds it was made.
    pub created_at: u64,
    /// The gateway's name (from gateway.toml).
    pub gateway: String,
    /// The state database's schema version.
    pub schema: i64,
    /// Whether job logs are included.
    pub logs: bool,
    /// Every file, in archive order.
    pub files: Vec<FileEntry>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Name relative to the archive's top directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// What a backup or restore did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The manifest written or verified.
    pub manifest: Manifest,
    /// Nodes in the state database.
    pub nodes: u64,
    /// Jobs in the state database.
    pub jobs: u64,
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> GatewayError + '_ {
    move |e| GatewayError::Io(format!("{}: {e}", what.display()))
}

fn db_err(e: rusqlite::Error) -> GatewayError {
    GatewayError::Io(format!("state database: {e}"))
}

/// Counts rows of the database at `path`, and reads its schema version.
fn db_facts(path: &Path) -> Result<(i64, u64, u64), GatewayError> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_err)?;
    let schema: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db_err)?;
    let count = |t: &str| -> Result<u64, GatewayError> {
        let n: i64 = c
            .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok((schema, count("nodes")?, count("jobs")?))
}

/// Writes a backup of the gateway home `home` to `out` (replacing it only
/// once the new one is complete).
pub fn backup(home: &Home, out: &Path, with_logs: bool) -> Result<Report, GatewayError> {
    let config = home.read_text(files::CONFIG, "the gateway home has no gateway.toml");
    let parsed = crate::Config::parse(config.as_deref().unwrap_or_default());
    if let Ok(Some(url)) = parsed.as_ref().map(|c| c.state.url.as_ref()) {
        return Err(GatewayError::Io(format!(
            "this gateway keeps its state in PostgreSQL ({}), which this command cannot snapshot; \
             back up the database with pg_dump and this home's ca.key, ca.crt and gateway.toml (docs/OPERATIONS.md)",
            proto::redact::url(url)
        )));
    }
    if !home.exists(files::CA_KEY) || !home.exists(files::STATE) {
        return Err(GatewayError::Io(format!(
            "{} is not a gateway home (no ca.key or state.db); pass the gateway's --home",
            home.root().display()
        )));
    }
    config?;
    let name = parsed.map(|c| c.name).unwrap_or_else(|_| "unknown".into());
    // The snapshot goes to a private directory beside the output.
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = parent.join(format!(
        ".openclaw-backup-{}-{}",
        std::process::id(),
        Clock::system().unix()
    ));
    mesh::home::create_private_dir(&staging)?;
    let result = write_archive(home, out, with_logs, &staging, name);
    let _ = fs::remove_dir_all(&staging);
    result
}

fn write_archive(
    home: &Home,
    out: &Path,
    with_logs: bool,
    staging: &Path,
    gateway: String,
) -> Result<Report, GatewayError> {
    let snapshot = staging.join(files::STATE);
    let src = rusqlite::Connection::open_with_flags(
        home.path(files::STATE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .map_err(db_err)?;
    src.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err)?;
    src.execute("VACUUM INTO ?1", [snapshot.to_string_lossy()])
        .map_err(db_err)?;
    drop(src);
    let (schema, nodes, jobs) = db_facts(&snapshot)?;

    let partial = out.with_extension("partial");
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(io(&partial))?;
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o600)).map_err(io(&partial))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut entries = Vec::new();
    let mut add = |name: &str, path: &Path, kind: Kind| -> Result<(), GatewayError> {
        let f = fs::File::open(path).map_err(io(path))?;
        let bytes = f.metadata().map_err(io(path))?.len();
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes);
        header.set_mode(if kind == Kind::Public { 0o644 } else { 0o600 });
        header.set_mtime(Clock::system().unix());
        header.set_entry_type(tar::EntryType::Regular);
        // One pass: hashed as it is archived, and cut at the size in the
        // header (a running job's log may grow meanwhile).
        let mut data = Hashing::new(std::io::Read::take(f, bytes));
        tar.append_data(&mut header, format!("{ROOT}/{name}"), &mut data)
            .map_err(io(out))?;
        let (got, sha256) = data.finish();
        if got != bytes {
            return Err(GatewayError::Io(format!(
                "{} shrank while it was being backed up; run the backup again",
                path.display()
            )));
        }
        entries.push(FileEntry {
            name: name.to_string(),
            bytes,
            sha256,
        });
        Ok(())
    };
    for (name, kind) in HOME_FILES {
        let path = if *name == files::STATE {
            snapshot.clone()
        } else {
            home.path(name)
        };
        if path.exists() {
            add(name, &path, *kind)?;
        }
    }
    if with_logs && let Ok(dir) = fs::read_dir(home.path(files::LOGS)) {
        let mut logs: Vec<String> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(|n| format!("logs/{n}")))
            .filter(|n| entry_kind(n) == Some(Kind::Log))
            .collect();
        logs.sort();
        for name in logs {
            add(&name, &home.path(&name), Kind::Log)?;
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        created_at: Clock::system().unix(),
        gateway,
        schema,
        logs: with_logs,
        files: entries,
    };
    let text = toml::to_string(&manifest).map_err(|e| GatewayError::Io(e.to_string()))?;
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(Clock::system().unix());
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, format!("{ROOT}/{MANIFEST}"), text.as_bytes())
        .map_err(io(out))?;
    let buf = tar.into_inner().map_err(io(out))?;
    let file = buf
        .into_inner()
        .map_err(|e| GatewayError::Io(format!("{}: {e}", out.display())))?;
    file.sync_all().map_err(io(out))?;
    fs::rename(&partial, out).map_err(io(out))?;
    Ok(Report {
        manifest,
        nodes,
        jobs,
    })
}

/// Restores the backup at `archive` into `home`, which must not hold a
/// gateway yet.
pub fn restore(archive: &Path, home: &Home) -> Result<Report, GatewayError> {
    if home.exists(files::CA_KEY) || home.exists(files::STATE) {
        return Err(GatewayError::Io(format!(
            "{} already holds a gateway; restore into a new, empty home (--home)",
            home.root().display()
        )));
    }
    home.create()?;
    let staging = home.path(".restore");
    let _ = fs::remove_dir_all(&staging);
    mesh::home::create_private_dir(&staging)?;
    let result = unpack(archive, home, &staging);
    let _ = fs::remove_dir_all(&staging);
    result
}

fn bad(archive: &Path, why: impl std::fmt::Display) -> GatewayError {
    GatewayError::Io(format!(
        "{} is not a usable OpenClaw gateway backup: {why}",
        archive.display()
    ))
}

fn unpack(archive: &Path, home: &Home, staging: &Path) -> Result<Report, GatewayError> {
    let file = fs::File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let mut got: Vec<FileEntry> = Vec::new();
    let mut manifest_text = None;
    for entry in tar.entries().map_err(|e| bad(archive, e))? {
        let mut entry = entry.map_err(|e| bad(archive, e))?;
        let path = entry.path().map_err(|e| bad(archive, e))?.into_owned();
        let name = path
            .to_str()
            .and_then(|p| p.strip_prefix(&format!("{ROOT}/")))
            .map(str::to_string)
            .ok_or_else(|| bad(archive, format!("unexpected entry {}", path.display())))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(archive, format!("{name} is not a regular file")));
        }
        if name == MANIFEST {
            if entry.size() > MAX_MANIFEST {
                return Err(bad(archive, "its manifest is too large"));
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| bad(archive, e))?;
            manifest_text = Some(text);
            continue;
        }
        if entry_kind(&name).is_none() {
            return Err(bad(archive, format!("unexpected entry {name}")));
        }
        if got.iter().any(|f| f.name == name) {
            return Err(bad(archive, format!("{name} appears twice")));
        }
        let dest = staging.join(&name);
        if let Some(dir) = dest.parent() {
            mesh::home::create_private_dir(dir)?;
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dest)
            .map_err(io(&dest))?;
        // Read errors are the archive's, write errors the home's.
        let mut data = Hashing::new(&mut entry);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = data.read(&mut buf).map_err(|e| bad(archive, e))?;
            if n == 0 {
                break;
            }
            out.write_all(buf.get(..n).unwrap_or_default())
                .map_err(io(&dest))?;
        }
        let (bytes, sha256) = data.finish();
        out.sync_all().map_err(io(&dest))?;
        got.push(FileEntry {
            name,
            bytes,
            sha256,
        });
    }
    let text = manifest_text.ok_or_else(|| bad(archive, "it has no MANIFEST"))?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| bad(archive, e))?;
    check_manifest(&manifest, &got).map_err(|e| bad(archive, e))?;
    let state = staging.join(files::STATE);
    let (_schema, nodes, jobs) = db_facts(&state)?;
    let integrity: String =
        rusqlite::Connection::open_with_flags(&state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
            .map_err(db_err)?;
    if integrity != "ok" {
        return Err(bad(
            archive,
            format!("its state database fails SQLite's integrity check: {integrity}"),
        ));
    }
    // Everything checked: move it into the home, with its modes.
    for f in &got {
        let kind = entry_kind(&f.name).unwrap_or(Kind::Private);
        let dest = home.path(&f.name);
        if let Some(dir) = dest.parent() {
            mesh::home::create_private_dir(dir)?;
        }
        let mode = if kind == Kind::Public { 0o644 } else { 0o600 };
        let src = staging.join(&f.name);
        fs::set_permissions(&src, fs::Permissions::from_mode(mode)).map_err(io(&src))?;
        fs::rename(&src, &dest).map_err(io(&dest))?;
    }
    Ok(Report {
        manifest,
        nodes,
        jobs,
    })
}

/// The files unpacked must be exactly those the manifest lists, with the
/// same sizes and digests, and a restorable core (state, CA, config).
pub fn check_manifest(m: &Manifest, got: &[FileEntry]) -> Result<(), String> {
    if m.format != FORMAT {
        return Err(format!(
            "format {} (this openclaw reads format {FORMAT}); use the openclaw that made it",
            m.format
        ));
    }
    for f in &m.files {
        match got.iter().find(|g| g.name == f.name) {
            None => return Err(format!("{} is listed but missing", f.name)),
            Some(g) if g.bytes != f.bytes || g.sha256 != f.sha256 => {
                return Err(format!(
                    "{} does not match its manifest entry (damaged or altered)",
                    f.name
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = got
        .iter()
        .find(|g| !m.files.iter().any(|f| f.name == g.name))
    {
        return Err(format!("{} is not in the manifest", extra.name));
    }
    for need in [files::STATE, files::CA_KEY, files::CA_CERT, files::CONFIG] {
        if !m.files.iter().any(|f| f.name == need) {
            return Err(format!("it lacks {need}"));
        }
    }
    Ok(())
}

/// Where the restored home's nodes will find it: for the message after a
/// restore.
pub fn listen_of(home: &Home) -> Option<String> {
    let text = home.read_text(files::CONFIG, "").ok()?;
    let cfg = crate::Config::parse(&text).ok()?;
    Some(cfg.advertise.unwrap_or(cfg.listen))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn only_known_names_are_accepted() {
        for (name, want) in [
            ("state.db", Some(Kind::Private)),
            ("ca.key", Some(Kind::Private)),
            ("ca.crt", Some(Kind::Public)),
            ("gateway.toml", Some(Kind::Public)),
            ("client.toml", Some(Kind::Public)),
            ("logs/12.stdout", Some(Kind::Log)),
            ("logs/7.stderr", Some(Kind::Log)),
            ("logs/7.cast", Some(Kind::Log)),
            ("logs/7.cast.tmp", None),
            ("logs/12.txt", None),
            ("logs/12.out", None),
            ("logs/.stdout", None),
            ("logs/1a.stdout", None),
            ("logs/../../etc/passwd", None),
            ("../ca.key", None),
            ("/etc/shadow", None),
            ("logs/1.stdout/x", None),
            ("gateway.addr", None),
            ("node.key", None),
            ("", None),
        ] {
            assert_eq!(entry_kind(name), want, "{name:?}");
        }
    }

    fn entry(name: &str, sha: &str) -> FileEntry {
        FileEntry {
            name: name.into(),
            bytes: 1,
            sha256: sha.into(),
        }
    }

    #[test]
    fn manifest_must_match_exactly() {
        let core: Vec<FileEntry> = ["state.db", "ca.key", "ca.crt", "gateway.toml"]
            .iter()
            .map(|n| entry(n, "aa"))
            .collect();
        let m = Manifest {
            format: 1,
            created_at: 1,
            gateway: "gw".into(),
            schema: 6,
            logs: false,
            files: core.clone(),
        };
        assert_eq!(check_manifest(&m, &core), Ok(()));
        let mut altered = core.clone();
        altered[1].sha256 = "bb".into();
        assert!(
            check_manifest(&m, &altered)
                .unwrap_err()
                .contains("ca.key does not match")
        );
        let mut extra = core.clone();
        extra.push(entry("logs/1.stdout", "cc"));
        assert!(
            check_manifest(&m, &extra)
                .unwrap_err()
                .contains("not in the manifest")
        );
        assert!(
            check_manifest(&m, &core[1..])
                .unwrap_err()
                .contains("state.db is listed but missing")
        );
        let mut no_ca = m.clone();
        no_ca.files.retain(|f| f.name != "ca.key");
        let got: Vec<FileEntry> = core
            .iter()
            .filter(|f| f.name != "ca.key")
            .cloned()
            .collect();
        assert!(
            check_manifest(&no_ca, &got)
                .unwrap_err()
                .contains("lacks ca.key")
        );
        let mut future = m.clone();
        future.format = 2;
        assert!(
            check_manifest(&future, &core)
                .unwrap_err()
                .contains("format 2")
        );
    }
}
