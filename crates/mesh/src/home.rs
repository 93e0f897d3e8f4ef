//! A party's home directory: private keys 0600, directories 0700, and
//! refusal to load keys that group or others can read.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// A home directory (`--home`, `OPENCLAW_HOME`, default `~/.openclaw`).
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

/// A home file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A private key is readable by group or others.
    #[error(
        "{path} is readable by group or others (mode {mode:o}); refusing to use it. Fix with: chmod 600 {path}"
    )]
    InsecureKey {
        /// The key file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A file we were asked to create already exists.
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// A required file is missing.
    #[error("{path} not found: {hint}")]
    Missing {
        /// The path.
        path: PathBuf,
        /// What to do.
        hint: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Home {
    /// Wraps a path; nothing is created yet.
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the home.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Whether a file exists in the home.
    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Creates the home (mode 0700) if needed, and tightens an existing one.
    pub fn create(&self) -> Result<(), HomeError> {
        create_private_dir(&self.root)
    }

    /// Writes a private file (mode 0600) atomically.
    pub fn write_private(&self, name: &str, data: &[u8]) -> Result<(), HomeError> {
        self.write_mode(name, data, 0o600)
    }

    /// Writes a public file (mode 0644) atomically.
    pub fn write_public(&self, name: &str, data: &[u8]) -> Result<(), HomeError> {
        self.write_mode(name, data, 0o644)
    }

    /// Fails if the file exists.
    pub fn refuse_existing(&self, name: &str) -> Result<(), HomeError> {
        let path = self.path(name);
        if path.exists() {
            return Err(HomeError::Exists(path));
        }
        Ok(())
    }

    fn write_mode(&self, name: &str, data: &[u8], mode: u32) -> Result<(), HomeError> {
        self.create()?;
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }

    /// Reads a text file; `hint` says what to do when it is missing.
    pub fn read_text(&self, name: &str, hint: &str) -> Result<String, HomeError> {
        let path = self.path(name);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(HomeError::Missing {
                path,
                hint: hint.to_string(),
            }),
            Err(e) => Err(HomeError::Io { path, source: e }),
        }
    }

    /// Reads a private key, refusing one that group or others can read.
    pub fn read_private(&self, name: &str, hint: &str) -> Result<String, HomeError> {
        let path = self.path(name);
        if let Ok(meta) = fs::metadata(&path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(HomeError::InsecureKey { path, mode });
            }
        }
        self.read_text(name, hint)
    }
}

/// Creates a directory with mode 0700, tightening it if it exists.
pub fn create_private_dir(path: &Path) -> Result<(), HomeError> {
    fs::create_dir_all(path).map_err(io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io(path))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_joined_gateways_home_says_where_the_admin_credential_is() {
        let dir = tempfile::tempdir().unwrap();
        let home = super::Home::new(dir.path());
        let e = super::LoadedCredential::load(&home).err().unwrap();
        assert!(e.contains("expected client.crt"), "{e}");
        std::fs::write(dir.path().join("gateway.toml"), "").unwrap();
        let e = super::LoadedCredential::load(&home).err().unwrap();
        assert!(e.contains("made by 'openclaw gateway join'"), "{e}");
        assert!(e.contains("openclaw client create NAME --out DIR"), "{e}");
    }

    #[test]
    fn session_timing_defaults_overrides_and_refusals() {
        use std::time::Duration;
        let mut cfg: NodeConfig =
            toml::from_str("name = \"n1\"\ngateway = \"127.0.0.1:1\"\n").unwrap();
        let d = (Duration::from_secs(1), Duration::from_secs(3));
        assert_eq!(session_timing(&cfg, d.0, d.1), Ok(d));
        cfg.keep_alive = Some("5s".into());
        cfg.idle_timeout = Some("15s".into());
        assert_eq!(
            session_timing(&cfg, d.0, d.1),
            Ok((Duration::from_secs(5), Duration::from_secs(15)))
        );
        cfg.idle_timeout = None;
        assert!(
            session_timing(&cfg, d.0, d.1)
                .unwrap_err()
                .contains("less than idle_timeout")
        );
        cfg.keep_alive = Some("soon".into());
        assert!(session_timing(&cfg, d.0, d.1).is_err());
    }

    #[test]
    fn udp_payload_max_defaults_to_quinns_and_refuses_what_udp_cannot_carry() {
        let mut cfg: NodeConfig =
            toml::from_str("name = \"n1\"\ngateway = \"127.0.0.1:1\"\n").unwrap();
        assert_eq!(udp_payload_max(&cfg), Ok(1452));
        let cfg2: NodeConfig =
            toml::from_str("name = \"n1\"\ngateway = \"127.0.0.1:1\"\nudp_payload_max = 1452\n")
                .unwrap();
        assert_eq!(udp_payload_max(&cfg2), Ok(1452));
        for ok in [1200, 6550] {
            cfg.udp_payload_max = Some(ok);
            assert_eq!(udp_payload_max(&cfg), Ok(ok as u16));
        }
        for bad in [-1, 0, 1199, 65_528, 1 << 40] {
            cfg.udp_payload_max = Some(bad);
            let e = udp_payload_max(&cfg).unwrap_err();
            assert!(
                e.contains("udp_payload_max") && e.contains("1200..6550"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn congestion_floor_is_off_by_default_and_bounded() {
        let mut cfg: NodeConfig =
            toml::from_str("name = \"n1\"\ngateway = \"127.0.0.1:1\"\n").unwrap();
        assert_eq!(congestion_floor(&cfg), Ok(None));
        cfg.congestion_floor = Some("1MiB".into());
        assert_eq!(congestion_floor(&cfg), Ok(Some(1 << 20)));
        for bad in ["1KiB", "1GiB", "lots"] {
            cfg.congestion_floor = Some(bad.into());
            assert!(congestion_floor(&cfg).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn modes_and_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("h"));
        home.write_private("k.key", b"secret").unwrap();
        home.write_public("c.crt", b"public").unwrap();
        let mode = |n: &str| fs::metadata(home.path(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("k.key"), 0o600);
        assert_eq!(mode("c.crt"), 0o644);
        assert_eq!(
            fs::metadata(home.root()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(home.read_private("k.key", "").unwrap(), "secret");
        fs::set_permissions(home.path("k.key"), fs::Permissions::from_mode(0o640)).unwrap();
        let err = home.read_private("k.key", "").unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let err = home.read_text("nope", "run init").unwrap_err().to_string();
        assert!(err.contains("run init"), "{err}");
        assert!(home.refuse_existing("c.crt").is_err());
    }

    #[test]
    fn forward_ports_are_ports_or_ranges_and_none_by_default() {
        let mut p = NodePolicy::default();
        assert_eq!(p.forward_allowed(8888), Ok(false));
        p.forward_ports = vec!["8888".into(), "6006-6010".into()];
        for (port, want) in [
            (8888, true),
            (8887, false),
            (6006, true),
            (6010, true),
            (6011, false),
        ] {
            assert_eq!(p.forward_allowed(port), Ok(want), "{port}");
        }
        for bad in ["", "0", "65536", "80-70", "http", "1-", "-5", "22,80"] {
            p.forward_ports = vec![bad.into()];
            let e = p.forward_allowed(1).unwrap_err();
            assert!(
                e.contains("forward_ports") && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
    }
}

/// Files of a client credential (admin or bot) in a home.
pub mod client_files {
    /// Client certificate.
    pub const CERT: &str = "client.crt";
    /// Client private key (0600).
    pub const KEY: &str = "client.key";
    /// The CA that signed it and the gateway's server certificate.
    pub const CA: &str = "ca.crt";
    /// Name and gateway address.
    pub const CONFIG: &str = "client.toml";
}

/// Files of an enrolled node in its home.
pub mod node_files {
    /// Node certificate.
    pub const CERT: &str = "node.crt";
    /// Node private key (0600); generated locally, never sent.
    pub const KEY: &str = "node.key";
    /// The gateway's CA.
    pub const CA: &str = "ca.crt";
    /// Name, labels and gateway address.
    pub const CONFIG: &str = "node.toml";
    /// A pending enrollment request, so `node enroll` can resume.
    pub const PENDING: &str = "enroll.pending";
    /// A gateway's CA key. A node refuses a home that holds one: its jobs
    /// could read it and mint any certificate.
    pub const GATEWAY_CA_KEY: &str = "ca.key";
}

impl Home {
    /// Refuses a home that holds a gateway's CA key, for a node.
    pub fn refuse_gateway_home(&self) -> Result<(), String> {
        if self.exists(node_files::GATEWAY_CA_KEY) {
            return Err(format!(
                "{} holds a gateway CA key ({}); a node must not share the gateway's home, \
                 since its jobs could read the key. Give the node its own --home",
                self.root().display(),
                node_files::GATEWAY_CA_KEY
            ));
        }
        Ok(())
    }
}

/// Where a client credential says to connect, and as whom.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Identity in the certificate.
    pub name: String,
    /// Gateway address, host:port.
    pub gateway: String,
    /// Rewrite `gateway` with the gateway group's addresses as the leader
    /// tells them (default true); false pins this credential to the
    /// addresses written here (a probe of one gateway).
    #[serde(default = "yes")]
    pub follow_group: bool,
}

fn yes() -> bool {
    true
}

impl Credential {
    /// Writes a client credential into `home`.
    pub fn write(
        &self,
        home: &Home,
        cert_pem: &str,
        key_pem: &str,
        ca_pem: &str,
    ) -> Result<(), HomeError> {
        home.write_private(client_files::KEY, key_pem.as_bytes())?;
        home.write_public(client_files::CERT, cert_pem.as_bytes())?;
        home.write_public(client_files::CA, ca_pem.as_bytes())?;
        let mut text = format!(
            "# OpenClaw client credential: who this home is and which gateway it talks to.\n\
             # Identity in the certificate (client.crt).\nname = {:?}\n\
             # Gateway addresses, host:port[,host:port...]; rewritten with the gateway\n\
             # group's addresses as the leader tells them, unless follow_group = false.\n\
             gateway = {:?}\n",
            self.name, self.gateway
        );
        if !self.follow_group {
            text.push_str("follow_group = false\n");
        }
        home.write_public(client_files::CONFIG, text.as_bytes())
    }
}

/// A loaded credential, ready to connect with.
pub struct LoadedCredential {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM.
    pub key_pem: String,
    /// CA PEM.
    pub ca_pem: String,
    /// Gateway address.
    pub gateway: String,
    /// Whether client.toml follows the gateway group (`follow_group`).
    pub follow_group: bool,
}

/// Node settings written by `node enroll`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// Gateway address, host:port.
    pub gateway: String,
    /// The NVML library to load (default: the system's
    /// `libnvidia-ml.so.1`), for a driver installed in an unusual place.
    #[serde(default)]
    pub nvml_lib: Option<String>,
    /// Good GPU samples in a row before a GPU that was unhealthy (lost,
    /// uncorrectable ECC errors) is offered to jobs again (default 3).
    #[serde(default)]
    pub gpu_recover_after: Option<u32>,
    /// How long a running job whose GPU failed (lost, uncorrectable ECC)
    /// may go on before it is failed with the reason (default `60s`): time
    /// to write a checkpoint. The job's page and chat message say so at once.
    #[serde(default)]
    pub gpu_fail_grace: Option<String>,
    /// Labels asked for at enrollment.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The unprivileged user every job runs as. When the agent runs as
    /// root it drops to this user (and its groups) for each job.
    #[serde(default)]
    pub run_as: Option<String>,
    /// Run jobs as the agent's own user when no `run_as` is possible.
    /// Jobs can then read this node's private key: only for labs and tests.
    #[serde(default)]
    pub allow_jobs_as_agent_user: bool,
    /// With `run_as`: give every job a uid of its own from this range
    /// (`"61000-61999"`), with run_as's groups, so jobs cannot read each
    /// other's files either. No two running jobs share a uid, and a uid
    /// that still has processes is not handed out; the agent refuses to
    /// start when the range has fewer ids than `max_jobs`.
    #[serde(default)]
    pub job_uids: Option<String>,
    /// With `run_as`: the most each job's private `/tmp`, `/var/tmp` and
    /// `/dev/shm` may hold (each a tmpfs of its own, gone with the job):
    /// a share of memory (`"50%"`, the default) or a size (`"8GiB"`).
    #[serde(default)]
    pub job_tmp_size: Option<String>,
    /// Where jobs get private working directories (in `jobs-NAME-PID`, made
    /// by each agent). It must be owned by the agent's user and writable by
    /// no one else, below directories only root or that user own. Default:
    /// `/var/lib/openclaw` for an agent running as root, else the node's home.
    #[serde(default)]
    pub work_dir: Option<String>,
    /// QUIC keep-alive while no heartbeat is due (default 1s). With the
    /// gateway's heartbeat_interval above it, a node sends this many pings
    /// between heartbeats: large labs with 5 s heartbeats set it to about
    /// the heartbeat interval.
    #[serde(default)]
    pub keep_alive: Option<String>,
    /// How long a silent gateway is trusted before the node reconnects
    /// (default 3s); must exceed keep_alive, and the heartbeat interval when
    /// keep_alive is raised to it.
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// A floor under the session's congestion window (`"1MiB"`), for a link
    /// the lab owns that drops packets at random (radio, satellite): job
    /// output keeps flowing where a loss-based controller would crawl. The
    /// node does not back off below it, so never on shared paths. Default:
    /// none (plain CUBIC).
    #[serde(default)]
    pub congestion_floor: Option<String>,
    /// The largest UDP payload path MTU discovery may try, in bytes
    /// (1200..=6550; default 1452, quinn's). Up to 6550 is opt-in: larger
    /// datagrams on loopback or a jumbo-frame link.
    #[serde(default)]
    pub udp_payload_max: Option<i64>,
    /// Local policy; the stricter of this and the gateway's wins.
    #[serde(default)]
    pub policy: NodePolicy,
}

/// The node's QUIC keep-alive and idle timeout from node.toml, with the
/// defaults given; refuses a keep-alive that would not keep the session up.
pub fn session_timing(
    cfg: &NodeConfig,
    default_keep_alive: std::time::Duration,
    default_idle: std::time::Duration,
) -> Result<(std::time::Duration, std::time::Duration), String> {
    let parse = |key: &str, v: &Option<String>, d| match v {
        None => Ok(d),
        Some(s) => proto::duration::parse(s).map_err(|e| format!("node.toml: {key} = {s:?}: {e}")),
    };
    let keep = parse("keep_alive", &cfg.keep_alive, default_keep_alive)?;
    let idle = parse("idle_timeout", &cfg.idle_timeout, default_idle)?;
    if keep.is_zero() || keep >= idle {
        return Err(format!(
            "node.toml: keep_alive ({}) must be more than 0 and less than idle_timeout ({}); e.g. keep_alive = \"5s\", idle_timeout = \"15s\"",
            proto::duration::format(keep),
            proto::duration::format(idle)
        ));
    }
    Ok((keep, idle))
}

/// Every check `node run` makes on node.toml's values before it dials
/// (timing, congestion floor, UDP payload bound, forward ports), so
/// `openclaw doctor` refuses what the agent would. Pure.
pub fn check_node_values(cfg: &NodeConfig) -> Result<(), String> {
    session_timing(
        cfg,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(3),
    )?;
    congestion_floor(cfg)?;
    udp_payload_max(cfg)?;
    for entry in &cfg.policy.forward_ports {
        port_range(entry)?;
    }
    Ok(())
}

/// The largest UDP payload the node's path MTU discovery may try, from
/// node.toml (default the largest); refuses a value UDP cannot carry.
pub fn udp_payload_max(cfg: &NodeConfig) -> Result<u16, String> {
    match cfg.udp_payload_max {
        None => Ok(crate::tls::UDP_PAYLOAD_DEFAULT),
        Some(v) => crate::tls::check_udp_payload_max("node.toml: udp_payload_max", v),
    }
}

/// The node's congestion floor in bytes from node.toml, if set; refuses a
/// value outside [`crate::tls::CONGESTION_FLOOR_RANGE`].
pub fn congestion_floor(cfg: &NodeConfig) -> Result<Option<u64>, String> {
    let Some(text) = &cfg.congestion_floor else {
        return Ok(None);
    };
    let bytes = proto::size::parse(text)
        .map_err(|e| format!("node.toml: congestion_floor = {text:?}: {e}"))?;
    let (lo, hi) = crate::tls::CONGESTION_FLOOR_RANGE;
    if !(lo..=hi).contains(&bytes) {
        return Err(format!(
            "node.toml: congestion_floor = {text:?} is outside 16KiB..64MiB; e.g. congestion_floor = \"1MiB\", or remove it"
        ));
    }
    Ok(Some(bytes))
}

/// `[policy]` in node.toml: what this node agrees to run, whatever the gateway says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodePolicy {
    /// `false` refuses every job.
    pub system_run: bool,
    /// Globs over argv[0] and the whole command line; empty allows any.
    pub allowed_commands: Vec<String>,
    /// Directories a job may run in: canonical prefixes (symlinks and `..`
    /// resolved on the node, whole path components). Empty allows any.
    pub allowed_cwds: Vec<String>,
    /// Most jobs at once.
    pub max_jobs: u32,
    /// Globs over env keys this node accepts from the gateway. The fixed
    /// dangerous list is refused whatever this says.
    pub env_allow: Vec<String>,
    /// Users a named job may ask to run as (`[jobs.NAME] run_as` on the
    /// gateway); empty: named jobs run as `run_as` like every job.
    pub allowed_run_as: Vec<String>,
    /// TCP ports on this node's loopback that `openclaw forward` may reach:
    /// `"8888"` or a range `"6006-6010"`. Empty (the default) allows none.
    pub forward_ports: Vec<String>,
    /// Directories `openclaw cp` may read and write in, as the job user:
    /// canonical absolute paths, whole-component prefixes; nothing below
    /// them is reached through a symbolic link. Empty (the default)
    /// refuses every copy.
    pub allowed_paths: Vec<String>,
}

impl NodePolicy {
    /// Whether `forward_ports` lists `port`; an entry that is not a port
    /// or a range is an error naming it.
    pub fn forward_allowed(&self, port: u16) -> Result<bool, String> {
        for entry in &self.forward_ports {
            let (lo, hi) = port_range(entry)?;
            if (lo..=hi).contains(&port) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// `"8888"` or `"6006-6010"` as an inclusive range of TCP ports (1-65535).
pub fn port_range(entry: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "node.toml: forward_ports entry {entry:?} is not a port or a range of ports (e.g. \"8888\" or \"6006-6010\")"
        )
    };
    let port = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p > 0);
    let (lo, hi) = match entry.split_once('-') {
        Some((a, b)) => (port(a).ok_or_else(bad)?, port(b).ok_or_else(bad)?),
        None => {
            let p = port(entry).ok_or_else(bad)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

impl Default for NodePolicy {
    fn default() -> Self {
        NodePolicy {
            system_run: true,
            allowed_commands: vec![],
            allowed_cwds: vec![],
            max_jobs: 256,
            env_allow: vec!["*".into()],
            allowed_run_as: vec![],
            forward_ports: vec![],
            allowed_paths: vec![],
        }
    }
}

impl NodeConfig {
    /// Reads `node.toml`.
    pub fn load(home: &Home) -> Result<NodeConfig, String> {
        let text = home
            .read_text(
                node_files::CONFIG,
                "this home holds no enrolled node; run 'openclaw node enroll' first",
            )
            .map_err(|e| e.to_string())?;
        toml::from_str(&text)
            .map_err(|e| format!("{}: {e}", home.path(node_files::CONFIG).display()))
    }

    /// Writes `node.toml`.
    pub fn write(&self, home: &Home) -> Result<(), HomeError> {
        let text = format!(
            "# OpenClaw node settings, written by 'openclaw node enroll'.\n\
             # Node name (also the certificate's CN).\nname = {:?}\n\
             # Gateway address the agent dials, host:port.\ngateway = {:?}\n\
             # Labels requested at enrollment (an admin or the token confirms them).\nlabels = {:?}\n\
             # The unprivileged user jobs run as. An agent running as root drops to it\n\
             # (setgid, initgroups, setuid, no new privileges) for every job.\n{}\n\
             # Without run_as, jobs would run as the agent's own user and could read this\n\
             # node's key; the agent refuses jobs unless this is true (labs and tests only).\n\
             allow_jobs_as_agent_user = {}\n\
             # With run_as: a uid of its own for every job, from this range, so jobs cannot\n\
             # read each other's files (they keep run_as's groups). No two running jobs share\n\
             # one; at least max_jobs ids, or the agent refuses to start.\n{}\n\
             # With run_as: every job gets its own /tmp, /var/tmp and /dev/shm (tmpfs, in memory,\n\
             # charged to the job, gone when it ends); the most each may hold, as a share of\n\
             # memory or a size like \"8GiB\". Big scratch files belong in the job's directory.\n{}\n\
             # Private working directories for jobs are made under this (default: /var/lib/openclaw\n\
             # when the agent runs as root, else this home). Owned by the agent's user, writable by\n\
             # no one else; a symlink or someone else's directory is refused at start.\n{}\n\
             # QUIC keep-alive and idle timeout of the session (defaults 1s and 3s). With the\n\
             # gateway's heartbeat_interval at 5s (large labs), set keep_alive = \"5s\" and\n\
             # idle_timeout = \"15s\": fewer packets, slower notice of a dead gateway.\n{}\n{}\n\
             # Only for a link this lab owns that drops packets at random (radio, satellite):\n\
             # a floor under the congestion window. The node does not back off below it, so\n\
             # never set it on a shared path.\n{}\n\
             # The largest UDP payload path MTU discovery tries (1200..6550 bytes; default 1452,\n\
             # quinn's). Up to 6550 finds larger datagrams on loopback or a jumbo-frame link.\n{}\n\n\
             # Local policy: the stricter of this and the gateway's policy wins.\n\
             [policy]\n\
             # false refuses every job.\nsystem_run = {}\n\
             # Globs over argv[0] and the whole command line; empty allows any command.\nallowed_commands = {:?}\n\
             # Directories jobs may run in: prefixes compared after resolving symlinks and '..'; empty allows any.\nallowed_cwds = {:?}\n\
             # Most jobs at once.\nmax_jobs = {}\n\
             # Env keys accepted from the gateway (globs); loader, shell, interpreter, GPU-stack plugin, compiler, code-cache and dump-path variables are always refused.\nenv_allow = {:?}\n\
             # Users a named job may ask to run as ([jobs.NAME] run_as on the gateway); never root.\nallowed_run_as = {:?}\n\
             # TCP ports on this node's 127.0.0.1 that admins may reach with 'openclaw forward'\n\
             # (\"8888\" or \"6006-6010\"); empty allows none.\nforward_ports = {:?}\n\
             # Directories 'openclaw cp' may read and write in, as the job user (canonical paths,\n\
             # whole components; symlinks below them are never followed); empty refuses every copy.\nallowed_paths = {:?}\n",
            self.name,
            self.gateway,
            self.labels,
            match &self.run_as {
                Some(u) => format!("run_as = {u:?}"),
                None => "# run_as = \"openclaw-job\"".to_string(),
            },
            self.allow_jobs_as_agent_user,
            match &self.job_uids {
                Some(r) => format!("job_uids = {r:?}"),
                None => "# job_uids = \"61000-61999\"".to_string(),
            },
            match &self.job_tmp_size {
                Some(r) => format!("job_tmp_size = {r:?}"),
                None => "# job_tmp_size = \"50%\"".to_string(),
            },
            match &self.work_dir {
                Some(d) => format!("work_dir = {d:?}"),
                None => "# work_dir = \"/var/lib/openclaw/jobs\"".to_string(),
            },
            match &self.keep_alive {
                Some(d) => format!("keep_alive = {d:?}"),
                None => "# keep_alive = \"1s\"".to_string(),
            },
            match &self.idle_timeout {
                Some(d) => format!("idle_timeout = {d:?}"),
                None => "# idle_timeout = \"3s\"".to_string(),
            },
            match &self.congestion_floor {
                Some(d) => format!("congestion_floor = {d:?}"),
                None => "# congestion_floor = \"1MiB\"".to_string(),
            },
            match &self.udp_payload_max {
                Some(v) => format!("udp_payload_max = {v}"),
                None => "# udp_payload_max = 1452".to_string(),
            },
            self.policy.system_run,
            self.policy.allowed_commands,
            self.policy.allowed_cwds,
            self.policy.max_jobs,
            self.policy.env_allow,
            self.policy.allowed_run_as,
            self.policy.forward_ports,
            self.policy.allowed_paths
        );
        home.write_public(node_files::CONFIG, text.as_bytes())
    }
}

impl LoadedCredential {
    /// Loads the credential a CLI should use from `home`: a client
    /// credential if there is one, else the node's own certificate.
    pub fn load(home: &Home) -> Result<LoadedCredential, String> {
        if home.exists(client_files::CERT) {
            let cfg_text = home
                .read_text(client_files::CONFIG, "the credential is incomplete")
                .map_err(|e| e.to_string())?;
            let cfg: Credential = toml::from_str(&cfg_text)
                .map_err(|e| format!("{}: {e}", home.path(client_files::CONFIG).display()))?;
            let follow_group = cfg.follow_group;
            // A gateway home records the address it actually bound; a
            // list (a leader and its standbys) is used as written.
            let gateway = if crate::gateway_list(&cfg.gateway).len() > 1 {
                cfg.gateway
            } else {
                home.read_text("gateway.addr", "")
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or(cfg.gateway)
            };
            return Ok(LoadedCredential {
                cert_pem: home
                    .read_text(client_files::CERT, "")
                    .map_err(|e| e.to_string())?,
                key_pem: home
                    .read_private(client_files::KEY, "the credential has no key")
                    .map_err(|e| e.to_string())?,
                ca_pem: home
                    .read_text(client_files::CA, "the credential has no CA")
                    .map_err(|e| e.to_string())?,
                gateway,
                follow_group,
            });
        }
        if home.exists(node_files::CERT) {
            let cfg = NodeConfig::load(home)?;
            return Ok(LoadedCredential {
                cert_pem: home
                    .read_text(node_files::CERT, "")
                    .map_err(|e| e.to_string())?,
                key_pem: home
                    .read_private(node_files::KEY, "the node has no key")
                    .map_err(|e| e.to_string())?,
                ca_pem: home
                    .read_text(node_files::CA, "the node has no CA")
                    .map_err(|e| e.to_string())?,
                gateway: cfg.gateway,
                follow_group: false,
            });
        }
        if home.path("gateway.toml").exists() {
            // A gateway home made by `gateway join` holds the gateway's own
            // key, not an admin credential.
            return Err(format!(
                "no credential in {}: it is a gateway's home made by 'openclaw gateway join', which holds no admin \
                 credential; run admin commands with the first gateway's home (--home), whose client.toml lists \
                 every gateway, or make one there: openclaw client create NAME --out DIR",
                home.root().display()
            ));
        }
        Err(format!(
            "no credential in {}: expected client.crt (written by 'openclaw gateway init' or 'openclaw client create') \
             or node.crt (written by 'openclaw node enroll'); pass --home or set OPENCLAW_HOME",
            home.root().display()
        ))
    }
}
