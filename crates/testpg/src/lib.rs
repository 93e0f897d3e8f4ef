//! A throwaway PostgreSQL server for tests: `initdb` into a temporary
//! directory, then `postgres` on 127.0.0.1 and a free port, with trust
//! authentication for local connections only. One server per test process
//! ([`shared`]); each test takes a database of its own ([`Server::database`]).
//!
//! PostgreSQL refuses to run as root, so under root (as CI runs) the
//! server runs as `nobody`. A watchdog shell stops the server when the test
//! process is gone, so no server outlives its tests.
//!
//! When the binaries are missing, [`shared`] returns `None` and the caller
//! prints SKIPPED, unless `OPENCLAW_REQUIRE_POSTGRES=1` (set by `.ci/run`)
//! makes that a failure: a CI machine without PostgreSQL must not pass
//! green.

// Test support: a server that will not start must fail the test loudly.
#![allow(clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running server.
pub struct Server {
    /// Where the data and the socket live.
    dir: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    child: Child,
    next_db: AtomicU32,
    /// How `postgres` was started, to start it again ([`Server::restart`]).
    command: Vec<std::ffi::OsString>,
    user: Option<(u32, u32)>,
}

/// Where `initdb` and `postgres` are: the PATH, then Debian's versioned
/// directories (newest first).
pub fn bin_dir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has(&d) {
                return Some(d);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

static SHARED: OnceLock<Option<Server>> = OnceLock::new();

/// The process's server, started on first use; `None` (after printing
/// SKIPPED for `what`) when PostgreSQL is not installed.
///
/// # Panics
/// When PostgreSQL is installed but will not start, or is missing while
/// `OPENCLAW_REQUIRE_POSTGRES=1`: a test that cannot run must say so.
pub fn shared(what: &str) -> Option<&'static Server> {
    let server = SHARED.get_or_init(|| {
        bin_dir()?;
        match Server::start() {
            Ok(s) => Some(s),
            Err(e) => panic!("PostgreSQL is installed but did not start: {e}"),
        }
    });
    if server.is_none() {
        if std::env::var("OPENCLAW_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!(
                "{what}: PostgreSQL (initdb, postgres) not found and OPENCLAW_REQUIRE_POSTGRES=1; run scripts/test-deps.sh"
            );
        }
        eprintln!("SKIPPED {what}: PostgreSQL (initdb, postgres) not found; install postgresql");
    }
    server.as_ref()
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The user the server runs as: ourselves, or `nobody` under root.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("nobody")
        .map_err(|e| format!("looking up user nobody: {e}"))?
        .ok_or("PostgreSQL will not run as root and there is no user 'nobody'")?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl Server {
    /// Makes a cluster and starts it.
    pub fn start() -> Result<Server, String> {
        Server::start_with(None)
    }

    /// A server that also takes TLS connections, with this certificate
    /// chain and key (PEM).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Result<Server, String> {
        Server::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Result<Server, String> {
        let bin = bin_dir().ok_or("initdb and postgres not found")?;
        let dir = tempfile::Builder::new()
            .prefix("openclaw-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let user = server_user()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let data = dir.path().join("data");
        run(
            as_user(
                Command::new(bin.join("initdb"))
                    .arg("-D")
                    .arg(&data)
                    .args([
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--no-sync",
                        "-E",
                        "UTF8",
                        "--locale=C",
                    ])
                    .env("TZ", "UTC"),
                user,
            ),
            "initdb",
        )?;
        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_string(),
            "fsync=off".into(),
            "full_page_writes=off".into(),
            "max_connections=200".into(),
        ];
        if let Some((cert, key)) = tls {
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).map_err(|e| format!("{name}: {e}"))?;
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("{name}: {e}"))?;
                if let Some((uid, gid)) = user {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                        .map_err(|e| format!("chown {name}: {e}"))?;
                }
            }
            settings.push("ssl=on".into());
        }
        let port = free_port()?;
        let mut command: Vec<std::ffi::OsString> = vec![
            bin.join("postgres").into(),
            "-D".into(),
            data.clone().into(),
            "-p".into(),
            port.to_string().into(),
            "-k".into(),
            dir.path().into(),
        ];
        for s in &settings {
            command.push("-c".into());
            command.push(s.into());
        }
        let child = spawn_postgres(&command, dir.path(), user)?;
        // Stop the server and remove its files when this process is gone,
        // however it ends (the shared server is a static: never dropped).
        // The server's pid is read from its pid file then, since a restart
        // changes it.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
                 pg=$(head -n 1 '{dir}/data/postmaster.pid' 2>/dev/null || echo {pg}); \
                 kill -QUIT $pg 2>/dev/null; \
                 while kill -0 $pg 2>/dev/null; do sleep 0.2; done; rm -rf '{dir}'",
                me = std::process::id(),
                pg = child.id(),
                dir = dir.path().display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let server = Server {
            dir,
            port,
            child,
            next_db: AtomicU32::new(0),
            command,
            user,
        };
        server.wait_up().map(|()| server)
    }

    /// Stops the server (a fast shutdown: every connection is closed) and
    /// starts it again on the same port and data; returns once it answers.
    pub fn restart(&mut self) -> Result<(), String> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0)),
            nix::sys::signal::Signal::SIGINT,
        );
        self.child
            .wait()
            .map_err(|e| format!("waiting for postgres to stop: {e}"))?;
        self.child = spawn_postgres(&self.command, self.dir.path(), self.user)?;
        self.wait_up()
    }

    /// Waits until the server answers, up to 30 s.
    fn wait_up(&self) -> Result<(), String> {
        let server = self;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match server.sql("SELECT 1") {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    let log = std::fs::read_to_string(server.dir.path().join("server.log"))
                        .unwrap_or_default();
                    return Err(format!("postgres did not come up: {e}\n{log}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The URL of database `db` as the superuser `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database; returns its URL. Callable from async tests
    /// too (see [`rows`]).
    pub fn database(&self) -> Result<String, String> {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("openclaw_{}_{n}", std::process::id());
        self.sql(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs `sql` as the superuser in the `postgres` database.
    pub fn sql(&self, sql: &str) -> Result<(), String> {
        rows(&self.url("postgres"), sql).map(drop)
    }

    /// The server's process id (tests pause or kill it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts `postgres` with `command` (program first), its log appended to
/// `dir/server.log`.
fn spawn_postgres(
    command: &[std::ffi::OsString],
    dir: &Path,
    user: Option<(u32, u32)>,
) -> Result<Child, String> {
    let (program, args) = command.split_first().ok_or("no postgres command")?;
    as_user(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("server.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            ),
        user,
    )
    .spawn()
    .map_err(|e| format!("cannot start postgres: {e}"))
}

/// Runs `sql` (one or more statements, no parameters) on the database at
/// `url` without TLS, and returns every row of its results as text
/// (`None`: NULL). The client runs on a thread and a runtime of its own,
/// so this is callable from anywhere, async tests included.
pub fn rows(url: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("a runtime for the test client: {e}"))?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let conn = tokio::spawn(conn);
                let out = client
                    .simple_query(sql)
                    .await
                    .map_err(|e| format!("{sql}: {e}"))?;
                drop(client);
                let _ = conn.await;
                Ok(out
                    .iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                        }
                        _ => None,
                    })
                    .collect())
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the client thread panicked".into()))
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0)),
            nix::sys::signal::Signal::SIGQUIT,
        );
        let _ = self.child.wait();
    }
}
