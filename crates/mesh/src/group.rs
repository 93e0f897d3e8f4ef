//! Following the gateway group: a leader and its standbys tell every
//! session the group's addresses ([`proto::ControlMsg::Gateways`] for
//! nodes, [`proto::Request::GatewaySet`] for clients), and nodes and
//! clients write them into node.toml / client.toml, so a credential or a
//! node made before a gateway joined still reaches it after a failover.
//!
//! The addresses come from a gateway, which holds the CA, but they are
//! still checked as input: a bounded list of plain `host:port` entries,
//! written only by replacing the one top-level `gateway = "…"` line, so a
//! bad list can never add a key or a section to the file.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use crate::{Home, MAX_GATEWAYS};

/// Longest address of one gateway (`host:port`).
pub const MAX_ADDR_LEN: usize = 255;

/// Checks a group's addresses and joins them as the `gateway` value of
/// node.toml and client.toml (`a:1,b:2`). `None` for an empty list (a
/// gateway alone, not a group: keep what the file says).
pub fn checked_list(addrs: &[String]) -> Result<Option<String>, String> {
    if addrs.is_empty() {
        return Ok(None);
    }
    if addrs.len() > MAX_GATEWAYS {
        return Err(format!(
            "the gateway group named {} addresses, at most {MAX_GATEWAYS} are kept",
            addrs.len()
        ));
    }
    for a in addrs {
        check_addr(a)?;
    }
    Ok(Some(addrs.join(",")))
}

/// One `host:port`: a host of letters, digits, `.`, `-`, `_`, `:` or
/// brackets (IPv6), and a port that is a number above 0.
fn check_addr(a: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "the gateway group named an address that is not host:port: {:?}",
            a.chars().take(80).collect::<String>()
        )
    };
    if a.is_empty() || a.len() > MAX_ADDR_LEN {
        return Err(bad());
    }
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(bad()),
    }
}

/// `text` (a node.toml or client.toml) with its top-level `gateway` line
/// set to `list`; `None` when it already says so, or has no such line
/// before its first section (nothing is added to a file that lacks it).
pub fn with_gateway(text: &str, list: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + list.len());
    let mut replaced = false;
    let mut in_table = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_table = true;
        }
        let is_gateway = !in_table
            && !replaced
            && t.strip_prefix("gateway")
                .is_some_and(|rest| rest.trim_start().starts_with('='));
        if !is_gateway {
            out.push_str(line);
            continue;
        }
        replaced = true;
        let new = format!("gateway = {list:?}");
        if line.trim_end() == new {
            return None;
        }
        out.push_str(&new);
        out.push('\n');
    }
    replaced.then_some(out)
}

/// Writes the group's `addrs` into `file` of `home` when they differ from
/// what it says. True if it wrote. The file keeps its mode; it is
/// replaced atomically under a name of this process's own, so two
/// processes following at once never leave half a file.
pub fn follow(home: &Home, file: &str, addrs: &[String]) -> Result<bool, String> {
    let Some(list) = checked_list(addrs)? else {
        return Ok(false);
    };
    let path = home.path(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let Some(new) = with_gateway(&text, &list) else {
        return Ok(false);
    };
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644);
    replace(&path, new.as_bytes(), mode)?;
    Ok(true)
}

fn replace(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot update {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn a_group_list_is_checked_and_joined() {
        assert_eq!(checked_list(&[]), Ok(None));
        assert_eq!(
            checked_list(&list(&["10.0.0.1:7443", "gw-b.lab:7443", "[::1]:7443"])),
            Ok(Some("10.0.0.1:7443,gw-b.lab:7443,[::1]:7443".into()))
        );
        for bad in [
            "",
            "nohost",
            ":7443",
            "a:0",
            "a:99999",
            "a b:1",
            "a\"\nx = 1:1",
            "a,b:1",
        ] {
            assert!(checked_list(&list(&[bad])).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (1..=17).map(|i| format!("g{i}:1")).collect();
        assert!(checked_list(&many).unwrap_err().contains("at most 16"));
        assert!(checked_list(&[format!("{}:1", "a".repeat(300))]).is_err());
    }

    #[test]
    fn only_the_top_level_gateway_line_changes() {
        let text = "# who\nname = \"n\"\n# where\ngateway = \"a:1\"\nlabels = []\n\n[policy]\ngateway = \"keep\"\n";
        let new = with_gateway(text, "a:1,b:2").unwrap();
        assert_eq!(
            new,
            "# who\nname = \"n\"\n# where\ngateway = \"a:1,b:2\"\nlabels = []\n\n[policy]\ngateway = \"keep\"\n"
        );
        // Already so: nothing to write.
        assert_eq!(with_gateway(&new, "a:1,b:2"), None);
        // No top-level line: nothing is added.
        assert_eq!(with_gateway("[policy]\ngateway = \"x:1\"\n", "a:1"), None);
        // A key that only starts with "gateway" is not it.
        assert_eq!(with_gateway("gateways_seen = 1\n", "a:1"), None);
    }

    #[test]
    fn following_rewrites_the_file_once_and_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let path = dir.path().join("client.toml");
        std::fs::write(&path, "name = \"admin\"\ngateway = \"a:1\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let addrs = list(&["b:2", "a:1"]);
        assert_eq!(follow(&home, "client.toml", &addrs), Ok(true));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "name = \"admin\"\ngateway = \"b:2,a:1\"\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(follow(&home, "client.toml", &addrs), Ok(false));
        assert_eq!(follow(&home, "client.toml", &[]), Ok(false));
        assert!(follow(&home, "client.toml", &list(&["x"])).is_err());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
