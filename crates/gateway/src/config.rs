//! `gateway.toml`: parsed strictly, every key documented in the file that
//! `gateway init` writes.

use std::time::Duration;

use serde::Deserialize;

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Gateway name, shown to clients and in its certificate.
    pub name: String,
    /// Address the QUIC listener binds.
    pub listen: String,
    /// Address written into join tokens; defaults to the bound address.
    pub advertise: Option<String>,
    /// How long an enrollment request waits for a decision.
    pub pending_ttl: Duration,
    /// The most pending requests at once.
    pub max_pending: usize,
    /// Lifetime of node certificates.
    pub node_cert_ttl: Duration,
    /// How often nodes send heartbeats.
    pub heartbeat_interval: Duration,
    /// A node silent this long is dead: its connection is closed.
    pub dead_after: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    enrollment: RawEnrollment,
    #[serde(default)]
    liveness: RawLiveness,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    name: Option<String>,
    listen: Option<String>,
    advertise: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrollment {
    pending_ttl: Option<String>,
    max_pending: Option<usize>,
    node_cert_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLiveness {
    heartbeat_interval: Option<String>,
    dead_after: Option<String>,
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";

fn dur(key: &str, value: Option<String>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(v) => proto::duration::parse(&v).map_err(|e| format!("{key}: {e}")),
    }
}

impl Config {
    /// Parses `gateway.toml` text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let name = raw
            .gateway
            .name
            .unwrap_or_else(|| "openclaw-gateway".into());
        proto::names::validate_name(&name).map_err(|e| format!("gateway.name: {e}"))?;
        let cfg = Config {
            name,
            listen: raw.gateway.listen.unwrap_or_else(|| DEFAULT_LISTEN.into()),
            advertise: raw.gateway.advertise,
            pending_ttl: dur(
                "enrollment.pending_ttl",
                raw.enrollment.pending_ttl,
                Duration::from_secs(86_400),
            )?,
            max_pending: raw.enrollment.max_pending.unwrap_or(1000),
            node_cert_ttl: dur(
                "enrollment.node_cert_ttl",
                raw.enrollment.node_cert_ttl,
                Duration::from_secs(30 * 86_400),
            )?,
            heartbeat_interval: dur(
                "liveness.heartbeat_interval",
                raw.liveness.heartbeat_interval,
                Duration::from_secs(1),
            )?,
            dead_after: dur(
                "liveness.dead_after",
                raw.liveness.dead_after,
                Duration::from_secs(3),
            )?,
        };
        if cfg.heartbeat_interval < Duration::from_millis(100) {
            return Err("liveness.heartbeat_interval must be at least 100ms".into());
        }
        if cfg.dead_after < cfg.heartbeat_interval * 2 {
            return Err(
                "liveness.dead_after must be at least twice liveness.heartbeat_interval".into(),
            );
        }
        if cfg.node_cert_ttl < Duration::from_secs(10) {
            return Err("enrollment.node_cert_ttl must be at least 10s".into());
        }
        Ok(cfg)
    }

    /// The commented file `gateway init` writes.
    pub fn template(name: &str, listen: &str) -> String {
        format!(
            r#"# OpenClaw gateway configuration. Reloaded on restart.
# Durations are written like 500ms, 30s, 10m, 1h, 30d.

[gateway]
# Name of this gateway; appears in its certificate and in `openclaw node list`.
name = "{name}"
# UDP address the QUIC listener binds (host:port). Port 0 picks a free port;
# the bound address is written to gateway.addr in this home.
listen = "{listen}"
# Address that nodes dial, written into join tokens. Set it when the listen
# address is not reachable as such (0.0.0.0, NAT). Defaults to the bound address.
# advertise = "gateway.example.org:7443"

[enrollment]
# How long an enrollment request waits for `openclaw node approve`.
pending_ttl = "24h"
# The most enrollment requests pending at once; more are refused.
max_pending = 1000
# Lifetime of the certificates issued to nodes.
node_cert_ttl = "30d"

[liveness]
# How often nodes send a heartbeat on their heartbeat stream.
heartbeat_interval = "1s"
# A node with no heartbeat for this long is declared dead and disconnected.
dead_after = "3s"
"#
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_defaults() {
        let cfg = Config::parse(&Config::template("gw-1", "0.0.0.0:7443")).unwrap();
        assert_eq!(cfg.name, "gw-1");
        assert_eq!(cfg.listen, "0.0.0.0:7443");
        assert_eq!(cfg.pending_ttl, Duration::from_secs(86_400));
        assert_eq!(cfg.dead_after, Duration::from_secs(3));
        assert_eq!(cfg.node_cert_ttl, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn empty_file_is_defaults() {
        let cfg = Config::parse("").unwrap();
        assert_eq!(cfg.listen, DEFAULT_LISTEN);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let cases = [
            ("[gateway]\nlisten = 5", "listen"),
            ("[gateway]\nlistn = \"x\"", "listn"),
            ("[liveness]\ndead_after = \"soon\"", "dead_after"),
            (
                "[liveness]\nheartbeat_interval = \"2s\"\ndead_after = \"3s\"",
                "twice",
            ),
            ("[gateway]\nname = \"Bad Name\"", "gateway.name"),
            ("not toml [", ""),
        ];
        for (text, want) in cases {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
