//! `openclaw gateway migrate-state --to postgres://…`: moves a gateway's
//! state from its embedded SQLite file into an empty PostgreSQL database,
//! then points gateway.toml at it. The SQLite file is left as it was.

use std::net::UdpSocket;

use mesh::Home;

use crate::config::{Config, StateConfig};
use crate::store::Store;
use crate::{GatewayError, files, open_state};

/// What a migration did.
#[derive(Debug)]
pub struct Report {
    /// Rows copied, per table.
    pub tables: Vec<(&'static str, u64)>,
}

fn fail(msg: impl Into<String>) -> GatewayError {
    GatewayError::Io(msg.into())
}

/// Copies the state of the (stopped) gateway in `home` into `to` and
/// rewrites gateway.toml's `[state]`.
pub fn migrate_state(home: &Home, to: &StateConfig) -> Result<Report, GatewayError> {
    let url = to
        .url
        .as_deref()
        .ok_or_else(|| fail("--to: give the PostgreSQL URL to migrate into"))?;
    crate::config::check_state_url(url).map_err(|e| fail(format!("--to: {e}")))?;
    let config_path = home.path(files::CONFIG);
    let text = home.read_text(
        files::CONFIG,
        "run 'openclaw gateway init --listen HOST:PORT' first",
    )?;
    let config = Config::parse(&text).map_err(|msg| GatewayError::Config {
        path: config_path.display().to_string(),
        msg,
    })?;
    if let Some(now) = &config.state.url {
        return Err(fail(format!(
            "this gateway already keeps its state in PostgreSQL ({}); nothing to migrate",
            proto::redact::url(now)
        )));
    }
    if !home.exists(files::STATE) {
        return Err(fail(format!(
            "no {} in {}; is this a gateway home?",
            files::STATE,
            home.root().display()
        )));
    }
    if let Ok(addr) = std::fs::read_to_string(home.path(files::ADDR))
        && let Err(e) = UdpSocket::bind(addr.trim())
        && e.kind() == std::io::ErrorKind::AddrInUse
    {
        return Err(fail(format!(
            "the gateway is running (it holds {}); stop it, then migrate, so no write is lost",
            addr.trim()
        )));
    }
    // Store::tx blocks, which an async worker may not (see store::on_own_thread).
    let tables = crate::store::on_own_thread(
        "the migration thread panicked; nothing was committed",
        || {
            let src = Store::open(&home.path(files::STATE))?;
            let dst = open_state(home, to)?;
            let tables = src.copy_into(&dst)?;
            dst.tx(|tx| {
                tx.audit(
                    crate::clock::Clock::system().unix(),
                    "local",
                    "gateway.migrate-state",
                    &config.name,
                    &format!("from {} to {}", files::STATE, proto::redact::url(url)),
                )
            })?;
            Ok::<_, GatewayError>(tables)
        },
    )?;
    let updated = set_state(&text, to);
    home.write_public(files::CONFIG, updated.as_bytes())?;
    Ok(Report { tables })
}

/// gateway.toml with its `[state]` keys set to `to` (url, and the
/// password and CA files when given), everything else as it was.
pub fn set_state(text: &str, to: &StateConfig) -> String {
    let mut keys: Vec<(&str, String)> = Vec::new();
    if let Some(u) = &to.url {
        keys.push(("url", u.clone()));
    }
    if let Some(p) = &to.password_file {
        keys.push(("password_file", p.clone()));
    }
    if let Some(c) = &to.ca_file {
        keys.push(("ca_file", c.clone()));
    }
    if let Some(d) = &to.logs_dir {
        keys.push(("logs_dir", d.clone()));
    }
    let quoted = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = Vec::new();
    let mut in_state = false;
    let mut found_section = false;
    let mut done: Vec<&str> = Vec::new();
    let flush = |out: &mut Vec<String>, done: &mut Vec<&str>| {
        for (k, v) in &keys {
            if !done.contains(k) {
                out.push(format!("{k} = {}", quoted(v)));
                done.push(k);
            }
        }
    };
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            if in_state {
                flush(&mut out, &mut done);
            }
            in_state = t == "[state]";
            found_section |= in_state;
        } else if in_state
            && let Some((k, v)) = keys.iter().find(|(k, _)| {
                t.strip_prefix(k)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
        {
            out.push(format!("{k} = {}", quoted(v)));
            done.push(k);
            continue;
        }
        out.push(line.to_string());
    }
    if in_state {
        flush(&mut out, &mut done);
    }
    if !found_section {
        out.push(String::new());
        out.push("[state]".into());
        flush(&mut out, &mut done);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(url: &str, pw: Option<&str>) -> StateConfig {
        StateConfig {
            url: Some(url.into()),
            password_file: pw.map(str::to_string),
            ca_file: None,
            pool_size: 4,
            ..StateConfig::default()
        }
    }

    #[test]
    fn the_state_section_is_set_and_nothing_else_moves() {
        let template = Config::template("gw", "127.0.0.1:0", None);
        let out = set_state(&template, &to("postgres://u@db/x", Some("/etc/pw")));
        let cfg = Config::parse(&out).unwrap();
        assert_eq!(cfg.state.url.as_deref(), Some("postgres://u@db/x"));
        assert_eq!(cfg.state.password_file.as_deref(), Some("/etc/pw"));
        assert_eq!(cfg.name, "gw");
        // The commented example lines stay comments.
        assert!(
            out.contains("# url = \"postgres://openclaw@db.example.org"),
            "{out}"
        );
        assert_eq!(out.lines().count(), template.lines().count() + 1);
        // Without a [state] section one is added; a second run replaces.
        let bare = "[gateway]\nname = \"gw\"\n";
        let once = set_state(bare, &to("postgres://a@h/d", None));
        let twice = set_state(&once, &to("postgres://b@h/d", None));
        let cfg = Config::parse(&twice).unwrap();
        assert_eq!(cfg.state.url.as_deref(), Some("postgres://b@h/d"));
        assert_eq!(twice.matches("[state]").count(), 1, "{twice}");
        // A state section followed by another one gets its keys in place.
        let mid = "[state]\npool_size = 2\n\n[metrics]\nlisten = \"\"\n";
        let out = set_state(mid, &to("postgres://a@h/d", None));
        let cfg = Config::parse(&out).unwrap();
        assert_eq!(
            (cfg.state.url.as_deref(), cfg.state.pool_size),
            (Some("postgres://a@h/d"), 2)
        );
    }
}
