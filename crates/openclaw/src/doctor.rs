//! `openclaw doctor`: checks a home (gateway, node or client) and says, for
//! each problem, the command that fixes it. The checks are pure functions
//! of facts; `run` gathers the facts (files, the gateway, NVML) and prints.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mesh::Home;
use mesh::home::{client_files, node_files};
use proto::{Request, Response};

use crate::commands::CliError;
use crate::exit;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but worth a look.
    Warn,
    /// Broken, or unsafe.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// How bad.
    pub level: Level,
    /// What was checked, e.g. `file mode`.
    pub check: &'static str,
    /// What was found.
    pub what: String,
    /// The command (or edit) that fixes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(check: &'static str, what: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        check,
        what: what.into(),
        fix: None,
    }
}

fn warn(check: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Warn,
        check,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

fn fail(check: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Fail,
        check,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

/// Certificates this close to expiry are flagged.
pub const EXPIRY_WARN: Duration = Duration::from_secs(14 * 86_400);
/// Clock skew beyond this is flagged (tokens, approvals and certificate
/// validity are judged by the gateway's clock).
pub const SKEW_WARN: Duration = Duration::from_secs(2);
/// ... and beyond this it is a failure (certificates are backdated by less).
pub const SKEW_FAIL: Duration = Duration::from_secs(60);

/// The home directory must be 0700: it holds private keys.
pub fn home_mode(path: &Path, mode: u32) -> Finding {
    if mode & 0o077 == 0 {
        ok(
            "home",
            format!("{} is private ({:o})", path.display(), mode),
        )
    } else {
        fail(
            "home",
            format!(
                "{} is open to group or others ({:o}); it holds private keys",
                path.display(),
                mode
            ),
            format!("chmod 700 {}", path.display()),
        )
    }
}

/// A private key must be readable by its owner only.
pub fn key_mode(path: &Path, mode: u32) -> Finding {
    if mode & 0o077 == 0 {
        ok("key", format!("{} is 0{:o}", path.display(), mode))
    } else {
        fail(
            "key",
            format!(
                "{} is readable by group or others (0{:o}); treat the key as leaked if others could log in",
                path.display(),
                mode
            ),
            format!("chmod 600 {}", path.display()),
        )
    }
}

/// A certificate's expiry against `now`; `renew` says how to renew it.
pub fn cert_expiry(what: &str, not_after: u64, now: u64, renew: &str) -> Finding {
    let left = not_after.saturating_sub(now);
    let days = left / 86_400;
    if not_after <= now {
        fail(
            "certificate",
            format!("{what} expired {}", crate::output::ago(not_after, now)),
            renew.to_string(),
        )
    } else if left < EXPIRY_WARN.as_secs() {
        warn(
            "certificate",
            format!("{what} expires in {days} day(s)"),
            renew.to_string(),
        )
    } else {
        ok(
            "certificate",
            format!("{what} is valid for {days} more days"),
        )
    }
}

/// The local clock against the gateway's. `skew_ms` is local minus
/// gateway, `rtt` the round trip it was measured over.
pub fn clock_skew(skew_ms: i64, rtt: Duration) -> Finding {
    let abs = Duration::from_millis(skew_ms.unsigned_abs());
    let side = if skew_ms > 0 { "ahead of" } else { "behind" };
    let what = format!(
        "this clock is {} ms {side} the gateway's (measured over a {} ms round trip)",
        skew_ms.unsigned_abs(),
        rtt.as_millis()
    );
    let fix = "synchronise both clocks: timedatectl set-ntp true (or run chrony/ntpd)";
    if abs >= SKEW_FAIL {
        fail("clock", what, fix)
    } else if abs >= SKEW_WARN {
        warn("clock", what, fix)
    } else {
        ok("clock", what)
    }
}

/// The QUIC path's MTU as discovered; below 1280 suggests a tunnel that
/// fragments or drops larger datagrams.
pub fn path_mtu(mtu: u16) -> Finding {
    if mtu >= 1280 {
        ok("mtu", format!("QUIC path MTU {mtu} bytes"))
    } else {
        warn(
            "mtu",
            format!("QUIC path MTU is only {mtu} bytes; throughput will suffer"),
            "check for a tunnel or VPN on the path that clamps UDP datagrams",
        )
    }
}

/// Free space where the gateway keeps job logs.
pub fn log_disk(free: u64, cap: u64) -> Finding {
    const GIB: u64 = 1 << 30;
    if free < GIB {
        fail(
            "disk",
            format!("only {} MiB free for job logs", free >> 20),
            "free disk space, or lower retention.logs_max_bytes / retention.jobs in gateway.toml",
        )
    } else if free < cap {
        warn(
            "disk",
            format!(
                "{} GiB free for job logs, less than retention.logs_max_bytes ({} GiB)",
                free / GIB,
                cap / GIB
            ),
            "lower retention.logs_max_bytes in gateway.toml to what the disk holds",
        )
    } else {
        ok("disk", format!("{} GiB free for job logs", free / GIB))
    }
}

/// Sanity of a gateway's policy and addresses.
/// `bound`: the address a running gateway recorded in `gateway.addr`
/// (what it bound when `listen` has port 0), if any.
pub fn gateway_config(cfg: &gateway::Config, bound: Option<&str>) -> Vec<Finding> {
    use gateway::policy::Action;
    let mut out = Vec::new();
    let p = &cfg.policy;
    if p.chat_default == Action::Allow {
        out.push(warn(
            "policy",
            "chat_default = \"allow\": chat users run any command on any node without approval",
            "set chat_default = \"approve\" under [policy] in gateway.toml (then kill -HUP the gateway)",
        ));
    }
    if p.chat_shell {
        out.push(warn(
            "policy",
            "chat_shell = true: chat messages may run shell command lines",
            "set chat_shell = false under [policy] unless every chat user is trusted with a shell",
        ));
    }
    if p.env_allow.iter().any(|g| g == "*") {
        out.push(warn(
            "policy",
            "env_allow has \"*\": requesters may set any environment key not on the fixed dangerous list",
            "list the keys jobs need in env_allow",
        ));
    }
    for (i, r) in p.rules.iter().enumerate() {
        let catch_all =
            r.nodes.is_empty() && r.users.is_empty() && r.commands.is_empty() && r.jobs.is_empty();
        if catch_all && i + 1 < p.rules.len() {
            out.push(warn(
                "policy",
                format!(
                    "policy rule {} matches every job, so the {} rule(s) after it never apply",
                    i + 1,
                    p.rules.len() - i - 1
                ),
                "move it last, or give it nodes/users/commands/jobs to match",
            ));
        }
    }
    if out.is_empty() {
        out.push(ok(
            "policy",
            format!(
                "{} rule(s); default {:?}, chat default {:?}",
                p.rules.len(),
                p.default,
                p.chat_default
            ),
        ));
    }
    if let Ok(listen) = cfg.listen.parse::<std::net::SocketAddr>() {
        // With port 0 the port is chosen at start: tokens carry the one the
        // running gateway bound (gateway.addr), as `token create` does.
        let running = bound.and_then(|b| b.trim().parse::<std::net::SocketAddr>().ok());
        let bound = match (listen.port(), running) {
            (0, Some(r)) => r,
            _ => listen,
        };
        let advertise = cfg
            .advertise
            .clone()
            .unwrap_or_else(|| gateway::client_address(&bound.to_string()));
        if bound.port() == 0 && cfg.advertise.is_none() {
            out.push(ok(
                "advertise",
                "listen has port 0: join tokens will carry the port the gateway binds when it starts",
            ));
            return out;
        }
        match gateway::rules::token_address(bound, &advertise) {
            Ok(()) => out.push(ok("advertise", format!("join tokens carry {advertise}"))),
            Err(e) => out.push(fail(
                "advertise",
                format!(
                    "gateway listens on {} with {advertise} in tokens",
                    cfg.listen
                ),
                e.message,
            )),
        }
    }
    out
}

/// Text for people: one line per finding, problems with their fix.
pub fn render(home: &Path, kind: &str, findings: &[Finding]) -> String {
    let mut out = format!("openclaw doctor: {} ({kind})\n", home.display());
    for f in findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        out.push_str(&format!("  {tag}  {}: {}\n", f.check, f.what));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("        fix: {fix}\n"));
        }
    }
    let fails = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warns = findings.iter().filter(|f| f.level == Level::Warn).count();
    out.push_str(&format!("{fails} problem(s), {warns} warning(s)\n"));
    out
}

fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Checks `home` and prints the findings; exits 1 when any check fails.
pub async fn run(home: &Home, json: bool) -> Result<(), CliError> {
    let root = home.root();
    if !root.is_dir() {
        return Err(CliError::new(
            exit::FAILURE,
            format!(
                "{} is not a home directory; pass --home, or create one with 'openclaw gateway init' or 'openclaw node enroll'",
                root.display()
            ),
        ));
    }
    let is_gateway = home.exists(gateway::files::CA_KEY);
    let is_node = home.exists(node_files::CERT) || home.exists(node_files::CONFIG);
    let has_client = home.exists(client_files::CERT);
    let kind = match (is_gateway, is_node, has_client) {
        (true, _, _) => "gateway home",
        (_, true, _) => "node home",
        (_, _, true) => "client home",
        _ => "empty home",
    };
    let mut findings = Vec::new();
    if let Some(m) = mode_of(root) {
        findings.push(home_mode(root, m));
    }
    for key in [
        gateway::files::CA_KEY,
        gateway::files::SERVER_KEY,
        client_files::KEY,
        node_files::KEY,
    ] {
        let path = home.path(key);
        if let Some(m) = mode_of(&path) {
            findings.push(key_mode(&path, m));
        }
    }
    let now = gateway::unix_now();
    let certs: [(&str, &str, &str); 4] = [
        (
            gateway::files::CA_CERT,
            "the CA certificate (ca.crt)",
            "make a new CA before this date (CA rotation is planned; see docs/OPERATIONS.md)",
        ),
        (
            gateway::files::SERVER_CERT,
            "the gateway's server certificate",
            "re-run 'openclaw gateway init' in a new home and move the state (see docs/OPERATIONS.md)",
        ),
        (
            client_files::CERT,
            "this client's certificate (client.crt)",
            "openclaw client renew",
        ),
        (
            node_files::CERT,
            "this node's certificate (node.crt)",
            "the agent renews it while connected; if it has expired, enroll again with 'openclaw node enroll'",
        ),
    ];
    for (file, what, renew) in certs {
        // A node home also holds ca.crt; only a gateway home's CA is its own.
        if file == gateway::files::CA_CERT && !is_gateway {
            continue;
        }
        let Ok(pem) = std::fs::read_to_string(home.path(file)) else {
            continue;
        };
        match pki::cert_validity(&pem) {
            Ok(v) => findings.push(cert_expiry(what, v.not_after, now, renew)),
            Err(e) => findings.push(fail(
                "certificate",
                format!("{what} does not parse: {e}"),
                "restore it from a backup, or make the credential again",
            )),
        }
    }
    if is_gateway {
        gateway_checks(home, &mut findings);
    }
    if is_node {
        node_checks(home, &mut findings);
    }
    if has_client || is_node {
        gateway_contact(home, &mut findings).await;
    }
    if json {
        crate::term::out_json(&serde_json::json!({
            "home": root.display().to_string(),
            "kind": kind,
            "findings": findings,
        }))
        .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
    } else {
        crate::term::out(&render(root, kind, &findings));
    }
    if findings.iter().any(|f| f.level == Level::Fail) {
        Err(CliError::new(exit::FAILURE, ""))
    } else {
        Ok(())
    }
}

fn gateway_checks(home: &Home, findings: &mut Vec<Finding>) {
    let path = home.path(gateway::files::CONFIG);
    let cfg = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| gateway::Config::parse(&t))
    {
        Ok(c) => c,
        Err(e) => {
            findings.push(fail(
                "config",
                format!("{} does not load: {e}", path.display()),
                "fix the key it names; the running gateway keeps its last good config until then",
            ));
            return;
        }
    };
    if let Err(e) = gateway::config::output_store(cfg.state.url.is_some(), &cfg.state) {
        findings.push(fail(
            "config",
            format!("{}: {e}", path.display()),
            "`openclaw gateway run` refuses this file until then",
        ));
        return;
    }
    findings.push(ok("config", format!("{} loads", path.display())));
    let running = std::fs::read_to_string(home.path("gateway.addr")).ok();
    findings.extend(gateway_config(&cfg, running.as_deref()));
    match gateway::rotation::in_progress(home) {
        Ok(p) => findings.push(ca_rotation(p, gateway::unix_now())),
        Err(e) => findings.push(fail(
            "ca",
            e.to_string(),
            "restore ca-rotation.toml from a backup",
        )),
    }
    let logs = home.path(gateway::files::LOGS);
    let probe = if logs.is_dir() {
        logs
    } else {
        home.root().to_path_buf()
    };
    if let Some(free) = gateway::free_bytes(&probe) {
        findings.push(log_disk(free, cfg.retention.logs_max_bytes));
    }
}

/// A CA rotation left in progress: a warning with the next step.
pub fn ca_rotation(phase: Option<(gateway::rotation::Phase, u64)>, now: u64) -> Finding {
    match phase {
        None => ok("ca", "no CA rotation in progress"),
        Some((p, started)) => warn(
            "ca",
            format!(
                "a CA rotation has been in its {} phase since {} (both CA keys sit in {})",
                p.as_str(),
                crate::output::ago(started, now),
                gateway::files::ROTATION
            ),
            gateway::rotation::next_command(p),
        ),
    }
}

fn node_checks(home: &Home, findings: &mut Vec<Finding>) {
    match mesh::home::NodeConfig::load(home) {
        Ok(c) => match mesh::home::check_node_values(&c) {
            Ok(()) => findings.push(ok("config", format!("node.toml loads (node {})", c.name))),
            Err(e) => findings.push(fail(
                "config",
                e,
                "fix the value it names; `openclaw node run` refuses this file until then",
            )),
        },
        Err(e) => findings.push(fail(
            "config",
            format!("node.toml does not load: {e}"),
            "fix the key it names, or enroll again",
        )),
    }
    let lib = nvml_lib(
        std::env::var("OPENCLAW_NVML_LIB").ok(),
        mesh::home::NodeConfig::load(home)
            .ok()
            .and_then(|c| c.nvml_lib),
    );
    match node::telemetry::NvmlGpus::open(lib.as_deref()) {
        Ok(mut g) => {
            use node::telemetry::GpuSource as _;
            let (driver, nvml) = g.versions();
            let samples = g.sample().unwrap_or_default();
            findings.extend(gpu_findings(driver, nvml, &samples));
        }
        Err(e) => findings.push(nvml_unavailable(&e.to_string(), lib.as_deref())),
    }
}

/// The NVML library doctor loads, chosen as `node run` chooses it: the
/// environment (`OPENCLAW_NVML_LIB`, which `node run --nvml-lib` also
/// reads) before node.toml's `nvml_lib`; `None` is the system's. Pure.
fn nvml_lib(env: Option<String>, toml: Option<String>) -> Option<std::path::PathBuf> {
    env.filter(|e| !e.is_empty())
        .or(toml)
        .map(std::path::PathBuf::from)
}

/// The warning when NVML does not load: what was tried, and the fix,
/// including the agent's `--nvml-lib`, which doctor cannot see. Pure.
fn nvml_unavailable(err: &str, lib: Option<&Path>) -> Finding {
    let tried = match lib {
        Some(l) => format!(" (from {})", l.display()),
        None => String::new(),
    };
    warn(
        "gpu",
        format!("{err}{tried}; this node reports no GPUs"),
        "on a GPU machine install the NVIDIA driver (nvidia-smi must work); if the agent runs with \
         --nvml-lib PATH, run doctor with OPENCLAW_NVML_LIB=PATH (or set nvml_lib in node.toml, \
         which both read); on a CPU node ignore this",
    )
}

/// What `doctor` says about a node's GPUs: the driver and NVML versions,
/// then each GPU's health (as the agent judges one reading) and
/// persistence mode, with what to do about each problem. Pure.
fn gpu_findings(
    driver: Option<String>,
    nvml: Option<String>,
    samples: &[node::telemetry::GpuSample],
) -> Vec<Finding> {
    let v = |x: Option<String>| x.unwrap_or_else(|| "–".into());
    let mut out = vec![ok(
        "gpu",
        format!(
            "NVML sees {} GPU(s); driver {}, NVML {}",
            samples.len(),
            v(driver),
            v(nvml)
        ),
    )];
    for s in samples {
        let what = format!(
            "GPU {} {} ({})",
            s.index,
            if s.name.is_empty() { "–" } else { &s.name },
            if s.uuid.is_empty() { "–" } else { &s.uuid }
        );
        if let Some(why) = node::gpuhealth::problem(s) {
            let fix = if s.lost.is_some() {
                "the GPU fell off the bus: drain the node, check 'dmesg' for Xid errors, reset the GPU ('nvidia-smi -r -i N') or reboot; jobs are not given it meanwhile"
            } else {
                "drain the node and reset the GPU ('nvidia-smi -r -i N'); if the errors come back, replace it"
            };
            out.push(fail("gpu", format!("{what} is unhealthy: {why}"), fix));
            continue;
        }
        if s.mig == Some(true) {
            out.push(warn(
                "gpu",
                format!("{what} has MIG enabled: it is not handed out as a whole GPU"),
                "disable MIG ('nvidia-smi -i N -mig 0') to offer it whole",
            ));
        }
        match s.persistence {
            Some(true) => out.push(ok("gpu", format!("{what} healthy, persistence mode on"))),
            Some(false) => out.push(warn(
                "gpu",
                format!("{what} healthy, persistence mode off"),
                "turn it on ('nvidia-smi -pm 1' or nvidia-persistenced), or each job pays the driver's start-up",
            )),
            None => out.push(ok("gpu", format!("{what} healthy, persistence mode –"))),
        }
    }
    out
}

async fn gateway_contact(home: &Home, findings: &mut Vec<Finding>) {
    let started = Instant::now();
    let client = match client::Client::connect(home).await {
        Ok(c) => c,
        Err(e) => {
            findings.push(fail(
                "gateway",
                format!("cannot reach the gateway: {e}"),
                "check that the gateway runs ('systemctl status openclaw-gateway') and that its UDP port is open between here and there",
            ));
            return;
        }
    };
    findings.push(ok(
        "gateway",
        format!(
            "reached {} over QUIC with mutual TLS in {} ms",
            client.addr(),
            started.elapsed().as_millis()
        ),
    ));
    let sent = SystemTime::now();
    let t0 = Instant::now();
    match client.call(Request::Time).await {
        Ok(Response::Time { unix_ms }) => {
            let rtt = t0.elapsed();
            let local_mid = sent
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() + rtt.as_millis() / 2)
                .unwrap_or(0);
            let skew = i64::try_from(local_mid).unwrap_or(i64::MAX)
                - i64::try_from(unix_ms).unwrap_or(i64::MAX);
            findings.push(clock_skew(skew, rtt));
        }
        Ok(_) | Err(_) => findings.push(warn(
            "clock",
            "the gateway did not report its clock (an older gateway?)",
            "upgrade the gateway, then run doctor again",
        )),
    }
    findings.push(path_mtu(client.connection().stats().path.current_mtu));
    client.close().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn gpu_findings_say_versions_health_persistence_and_the_fix() {
        use node::telemetry::GpuSample;
        let good = GpuSample {
            index: 0,
            name: "H100".into(),
            uuid: "GPU-a".into(),
            persistence: Some(true),
            ecc_uncorrected: Some(0),
            ..GpuSample::default()
        };
        let samples = [
            good.clone(),
            GpuSample {
                index: 1,
                lost: Some("lost: GPU is lost".into()),
                ..GpuSample::default()
            },
            GpuSample {
                index: 2,
                persistence: Some(false),
                ..good.clone()
            },
            GpuSample {
                index: 3,
                mig: Some(true),
                persistence: None,
                ..good.clone()
            },
        ];
        let f = gpu_findings(Some("550.54.15".into()), None, &samples);
        let line = |f: &Finding| (f.level, f.what.clone(), f.fix.clone().unwrap_or_default());
        let all: Vec<_> = f.iter().map(line).collect();
        assert_eq!(
            all[0].1, "NVML sees 4 GPU(s); driver 550.54.15, NVML –",
            "{all:?}"
        );
        assert_eq!(all[1].0, Level::Ok);
        assert_eq!(all[1].1, "GPU 0 H100 (GPU-a) healthy, persistence mode on");
        assert_eq!(all[2].0, Level::Fail);
        assert!(
            all[2].1.starts_with("GPU 1 – (–) is unhealthy: lost"),
            "{all:?}"
        );
        assert!(all[2].2.contains("nvidia-smi -r"), "{all:?}");
        assert_eq!(all[3].0, Level::Warn);
        assert!(all[3].2.contains("nvidia-smi -pm 1"), "{all:?}");
        // MIG: a warning with its fix, then its persistence (unknown).
        assert_eq!(all[4].0, Level::Warn);
        assert!(all[4].1.contains("MIG enabled"), "{all:?}");
        assert_eq!(all[5].1, "GPU 3 H100 (GPU-a) healthy, persistence mode –");
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn nvml_is_looked_for_where_the_agent_looks() {
        let p = |s: &str| Some(std::path::PathBuf::from(s));
        // The environment (node run --nvml-lib's) wins over node.toml.
        assert_eq!(
            nvml_lib(Some("/e.so".into()), Some("/t.so".into())),
            p("/e.so")
        );
        assert_eq!(nvml_lib(None, Some("/t.so".into())), p("/t.so"));
        assert_eq!(
            nvml_lib(Some(String::new()), Some("/t.so".into())),
            p("/t.so")
        );
        assert_eq!(nvml_lib(None, None), None);
        let f = nvml_unavailable("NVML is not available: gone", Some(Path::new("/e.so")));
        assert!(f.what.contains("(from /e.so)"), "{}", f.what);
        let fix = f.fix.unwrap_or_default();
        assert!(fix.contains("OPENCLAW_NVML_LIB=PATH"), "{fix}");
        assert!(!fix.contains("  "), "{fix}");
    }

    #[test]
    fn modes() {
        let p = Path::new("/h/ca.key");
        for (mode, level) in [
            (0o600, Level::Ok),
            (0o400, Level::Ok),
            (0o640, Level::Fail),
            (0o604, Level::Fail),
        ] {
            let f = key_mode(p, mode);
            assert_eq!(f.level, level, "{mode:o}");
            if level == Level::Fail {
                assert_eq!(f.fix.as_deref(), Some("chmod 600 /h/ca.key"));
            }
        }
        assert_eq!(home_mode(Path::new("/h"), 0o700).level, Level::Ok);
        let f = home_mode(Path::new("/h"), 0o755);
        assert_eq!(
            (f.level, f.fix.as_deref()),
            (Level::Fail, Some("chmod 700 /h"))
        );
    }

    #[test]
    fn expiry() {
        let day = 86_400;
        let now = 1_000 * day;
        for (not_after, level) in [
            (now - 1, Level::Fail),
            (now, Level::Fail),
            (now + day, Level::Warn),
            (now + 13 * day, Level::Warn),
            (now + 15 * day, Level::Ok),
        ] {
            let f = cert_expiry("client.crt", not_after, now, "openclaw client renew");
            assert_eq!(f.level, level, "{not_after}");
            if level != Level::Ok {
                assert_eq!(f.fix.as_deref(), Some("openclaw client renew"));
            }
        }
    }

    #[test]
    fn skew_mtu_disk() {
        let rtt = Duration::from_millis(3);
        assert_eq!(clock_skew(500, rtt).level, Level::Ok);
        assert_eq!(clock_skew(-2_500, rtt).level, Level::Warn);
        let f = clock_skew(90_000, rtt);
        assert_eq!(f.level, Level::Fail);
        assert!(f.what.contains("90000 ms ahead of"), "{}", f.what);
        assert!(clock_skew(-90_000, rtt).what.contains("behind"));
        assert_eq!(path_mtu(1452).level, Level::Ok);
        assert_eq!(path_mtu(1200).level, Level::Warn);
        assert_eq!(log_disk(100 << 30, 50 << 30).level, Level::Ok);
        assert_eq!(log_disk(10 << 30, 50 << 30).level, Level::Warn);
        assert_eq!(log_disk(100 << 20, 50 << 30).level, Level::Fail);
    }

    #[test]
    fn an_unfinished_rotation_is_a_warning_with_the_next_step() {
        use gateway::rotation::Phase;
        let now = 1_000_000;
        let f = ca_rotation(None, now);
        assert_eq!(f.level, Level::Ok);
        let f = ca_rotation(Some((Phase::Rotate, now - 3 * 86_400)), now);
        assert_eq!(f.level, Level::Warn);
        assert!(f.what.contains("rotate phase since 3d ago"), "{}", f.what);
        assert!(
            f.fix
                .as_deref()
                .is_some_and(|x| x.contains("--phase finish"))
        );
    }

    #[test]
    fn policy_sanity() {
        let base = gateway::Config::template("gw", "127.0.0.1:7443", None);
        let cfg = gateway::Config::parse(&base).unwrap();
        let f = gateway_config(&cfg, None);
        assert!(f.iter().all(|x| x.level == Level::Ok), "{f:?}");
        // The lab's gateway listens on port 0: tokens carry the port it
        // bound, which doctor reads from gateway.addr.
        let lab =
            gateway::Config::parse(&gateway::Config::template("gw", "127.0.0.1:0", None)).unwrap();
        let said = |f: &[Finding]| {
            f.iter()
                .find(|x| x.check == "advertise")
                .map(|x| x.what.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            said(&gateway_config(&lab, Some("127.0.0.1:40123\n"))),
            "join tokens carry 127.0.0.1:40123"
        );
        assert!(said(&gateway_config(&lab, None)).contains("port the gateway binds"));
        assert!(!said(&gateway_config(&lab, None)).contains(":0"));
        let lax = base
            .replace("chat_default = \"approve\"", "chat_default = \"allow\"")
            .replace("chat_shell = false", "chat_shell = true")
            .replace("listen = \"127.0.0.1:7443\"", "listen = \"0.0.0.0:7443\"");
        let f = gateway_config(&gateway::Config::parse(&lax).unwrap(), None);
        let levels: Vec<(&str, Level)> = f.iter().map(|x| (x.check, x.level)).collect();
        assert_eq!(
            levels,
            [
                ("policy", Level::Warn),
                ("policy", Level::Warn),
                ("advertise", Level::Fail)
            ],
            "{f:?}"
        );
        assert!(f[2].fix.as_deref().unwrap().contains("advertise = "));
        let text = render(Path::new("/h"), "gateway home", &f);
        assert!(text.contains("  FAIL  advertise:"), "{text}");
        assert!(text.ends_with("1 problem(s), 2 warning(s)\n"), "{text}");
    }
}
