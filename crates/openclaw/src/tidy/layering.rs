//! Tidy tests for the layering and the "only X knows Y" invariants of
//! docs/ARCHITECTURE.md, read from each crate's `Cargo.toml` and source.
//! Each check is a pure function over what it read, and each test also
//! feeds it a violation to show that it can fail.

use std::collections::BTreeMap;

use super::{read, root, rust_files, shipped};

/// The layering of docs/ARCHITECTURE.md as ranks: a crate may depend only
/// on crates of a lower rank, so dependencies point one way and crates of
/// one rank (`gateway`, `node`, `client`) never depend on each other. The
/// support crates (tests, benchmark, fuzzing) sit on top: nothing shipped
/// depends on them.
const LAYERS: [(&str, u32); 18] = [
    ("proto", 0),
    ("chat", 1),
    ("pki", 1),
    ("mesh", 2),
    ("gateway", 3),
    ("node", 3),
    ("client", 3),
    ("dashboard", 4),
    ("chatops", 4),
    ("moltbot", 5),
    ("wecom", 5),
    ("weixin", 5),
    ("openclaw", 6),
    ("testkit", 7),
    ("testpg", 7),
    ("testnvml", 7),
    ("bench", 8),
    ("fuzz_targets", 8),
];

/// The crates of the workspace (`crates/*/Cargo.toml`).
fn crate_names() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root().join("crates")) else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The dependencies `toml` (a `Cargo.toml`) names in its `[dependencies]`
/// and `[build-dependencies]` sections, target-specific ones included;
/// dev-dependencies are left out (tests may use anything).
fn dependencies(toml: &str) -> Vec<String> {
    let mut out = vec![];
    let mut inside = false;
    for line in toml.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            inside = (line.ends_with("dependencies]") && !line.ends_with("dev-dependencies]"))
                || line.contains("dependencies.");
            // `[dependencies.foo]` names foo in its header.
            if let Some(dep) = line
                .trim_matches(['[', ']'])
                .split_once("dependencies.")
                .map(|(_, d)| d)
                .filter(|_| !line.contains("dev-dependencies."))
            {
                out.push(dep.trim().to_string());
                inside = false;
            }
            continue;
        }
        if inside && let Some((key, _)) = line.split_once('=') {
            let key = key.trim().split('.').next().unwrap_or("").trim();
            if !key.is_empty() {
                out.push(key.to_string());
            }
        }
    }
    out
}

/// Where `deps` (each crate's dependencies) break the layering: a
/// dependency on a crate of the same or a higher rank, or a crate with
/// no rank.
fn layering_breaks(deps: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let rank: BTreeMap<&str, u32> = LAYERS.into_iter().collect();
    let mut bad = vec![];
    for (krate, ds) in deps {
        let Some(&mine) = rank.get(krate.as_str()) else {
            bad.push(format!(
                "crates/{krate} has no place in the layering: add it to LAYERS and to docs/ARCHITECTURE.md"
            ));
            continue;
        };
        for d in ds {
            match rank.get(d.as_str()) {
                // Not one of ours.
                None => {}
                Some(&theirs) if theirs < mine => {}
                Some(_) => bad.push(format!(
                    "crates/{krate} depends on {d}, which is not below it in the layering"
                )),
            }
        }
    }
    bad
}

#[test]
fn crate_dependencies_point_one_way() {
    let mut deps = BTreeMap::new();
    for krate in crate_names() {
        let toml = read(&format!("crates/{krate}/Cargo.toml"));
        deps.insert(krate, dependencies(&toml));
    }
    assert!(deps.len() >= LAYERS.len(), "found only {deps:?}");
    assert!(
        deps.get("openclaw")
            .is_some_and(|d| d.iter().any(|d| d == "gateway")),
        "the check reads dependencies: {deps:?}"
    );
    let bad = layering_breaks(&deps);
    none_of(
        &bad,
        "dependencies must point down the layering of docs/ARCHITECTURE.md",
    );
    // The check fails on a dependency that points up or sideways.
    let mut up = deps.clone();
    up.entry("proto".into()).or_default().push("gateway".into());
    up.entry("node".into()).or_default().push("gateway".into());
    up.insert("newcomer".into(), vec![]);
    assert_eq!(layering_breaks(&up).len(), 3, "{:?}", layering_breaks(&up));
}

#[test]
fn dependencies_are_read_from_every_kind_of_section() {
    let toml = r#"
[package]
name = "x"
[dependencies]
proto.workspace = true
mesh = { workspace = true } # a comment
[target.'cfg(unix)'.dependencies]
node.workspace = true
[dependencies.client]
workspace = true
[dev-dependencies]
testkit.workspace = true
[build-dependencies]
gateway.workspace = true
"#;
    assert_eq!(
        dependencies(toml),
        ["proto", "mesh", "node", "client", "gateway"]
    );
}

/// Shipped lines of `files` outside the crates in `owners` that contain
/// one of `markers`.
fn knows(files: &[(String, String)], owners: &[&str], markers: &[&str]) -> Vec<String> {
    let mut bad = vec![];
    for (f, text) in files {
        // The tidy tests name the markers they look for.
        if f.contains("/tidy")
            || owners
                .iter()
                .any(|o| f.starts_with(&format!("crates/{o}/")))
        {
            continue;
        }
        let comment = if f.ends_with(".toml") { "#" } else { "//" };
        for (n, line) in shipped(text) {
            let code = line.split(comment).next().unwrap_or("");
            if let Some(m) = markers.iter().find(|m| code.contains(*m)) {
                bad.push(format!("{f}:{n}: {m} in {}", line.trim()));
            }
        }
    }
    bad
}

/// Fails with `why` and every place in `bad`, unless it is empty.
fn none_of(bad: &[String], why: &str) {
    assert!(bad.is_empty(), "{why}:\n{}", bad.join("\n"));
}

/// Every `.rs` file under `dirs`, with its text.
fn texts(dirs: &[&str]) -> Vec<(String, String)> {
    dirs.iter()
        .flat_map(|d| rust_files(d))
        .map(|f| {
            let text = read(&f);
            (f, text)
        })
        .collect()
}

/// Every `.rs` file under crates/ with its text, and every crate's
/// `Cargo.toml`.
fn sources_and_manifests() -> Vec<(String, String)> {
    rust_files("crates")
        .into_iter()
        .chain(
            crate_names()
                .into_iter()
                .map(|c| format!("crates/{c}/Cargo.toml")),
        )
        .map(|f| {
            let text = read(&f);
            (f, text)
        })
        .collect()
}

/// What only Slack's adapter knows: the library, Block Kit's JSON, Slack's
/// markup.
const SLACK: [&str; 6] = [
    "slack-morphism",
    "slack_morphism",
    "\"action_id\"",
    "\"plain_text\"",
    "\"mrkdwn\"",
    "<!date^",
];

/// What only WeCom's adapter knows: its frames' commands and fields.
const WECOM: [&str; 4] = ["\"aibot_", "\"msgtype\"", "\"template_card", "\"req_id\""];

/// What only the WeChat (iLink) adapter knows: its endpoints and fields.
const WEIXIN: [&str; 4] = [
    "ilink/bot/",
    "\"get_updates_buf\"",
    "\"context_token\"",
    "\"item_list\"",
];

/// The support crates that stand in for a platform (the emulators) or
/// feed an adapter's parser (the fuzz targets) may know it too.
const SUPPORT: [&str; 2] = ["testkit", "fuzz_targets"];

#[test]
fn only_moltbot_knows_slack_and_only_wecom_knows_wecom_and_only_weixin_knows_ilink() {
    let files = sources_and_manifests();
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut bad = knows(&files, &["moltbot", SUPPORT[0], SUPPORT[1]], &SLACK);
    bad.extend(knows(&files, &["wecom", SUPPORT[0], SUPPORT[1]], &WECOM));
    bad.extend(knows(&files, &["weixin", SUPPORT[0], SUPPORT[1]], &WEIXIN));
    none_of(
        &bad,
        "only crates/moltbot knows Slack, only crates/wecom knows WeCom and only crates/weixin \
         knows iLink (personal WeChat); the chat core \
         (crates/chat, crates/chatops) and everything else take plain text",
    );
    // The markers are found where they are, so the check can fail.
    assert!(!knows(&files, &[], &SLACK).is_empty());
    assert!(!knows(&files, &[], &WECOM).is_empty());
    assert!(!knows(&files, &[], &WEIXIN).is_empty());
    let planted = [(
        "crates/chatops/src/lib.rs".to_string(),
        "let b = json!({\"type\": \"plain_text\"});".to_string(),
    )];
    assert_eq!(knows(&planted, &["moltbot"], &SLACK).len(), 1);
}

/// IO a crate that does no IO must not name.
const IO: [&str; 8] = [
    "std::fs",
    "std::net",
    "std::process",
    "tokio::",
    "File::",
    "SystemTime::now",
    "Instant::now",
    "UdpSocket",
];

#[test]
fn proto_and_pki_do_no_io() {
    let files = texts(&["crates/proto/src", "crates/pki/src"]);
    assert!(files.len() > 10, "found only {} files", files.len());
    let bad = knows(&files, &[], &IO);
    none_of(
        &bad,
        "proto and pki do no IO (no sockets, files, processes or clocks; time is a parameter)",
    );
    let planted = [(
        "crates/proto/src/x.rs".to_string(),
        "let t = std::time::SystemTime::now();".to_string(),
    )];
    assert_eq!(knows(&planted, &[], &IO).len(), 1);
}

/// What starts a process.
const SPAWNS: [&str; 3] = ["process::Command", "Command::new", "tokio::process"];

#[test]
fn the_gateway_starts_no_process() {
    let files = texts(&["crates/gateway/src"]);
    assert!(files.len() > 20, "found only {} files", files.len());
    let bad = knows(&files, &[], &SPAWNS);
    none_of(
        &bad,
        "the gateway never runs jobs and spawns no process; only crates/node starts job processes",
    );
    // The node does, so the markers find what they look for.
    assert!(!knows(&texts(&["crates/node/src"]), &[], &SPAWNS).is_empty());
}

#[test]
fn only_the_node_reads_nvml_and_ring_is_the_only_crypto_provider() {
    let sources = sources_and_manifests();
    let manifests: Vec<(String, String)> = sources
        .iter()
        .filter(|(f, _)| f.ends_with("Cargo.toml"))
        .cloned()
        .collect();
    // The NVML binding: the test NVML (a stand-in library the agent loads)
    // is not it, and may be named.
    let mut bad = knows(&manifests, &["node"], &["nvml-wrapper"]);
    bad.extend(knows(&sources, &["node"], &["nvml_wrapper"]));
    // The workspace manifest explains, in a comment, how aws-lc-rs is kept
    // out; no manifest may name it outside a comment.
    let workspace = [("Cargo.toml".to_string(), read("Cargo.toml"))];
    bad.extend(knows(&manifests, &[], &["aws-lc", "aws_lc"]));
    bad.extend(knows(&workspace, &[], &["aws-lc", "aws_lc"]));
    let lock = read("Cargo.lock");
    assert!(lock.contains("name = \"ring\""), "Cargo.lock not read");
    if lock.contains("name = \"aws-lc-rs\"") || lock.contains("name = \"aws-lc-sys\"") {
        bad.push("Cargo.lock: aws-lc-rs is compiled in".into());
    }
    none_of(
        &bad,
        "only crates/node reads NVML, and ring is the one rustls crypto provider",
    );
    assert!(!knows(&manifests, &[], &["nvml-wrapper"]).is_empty());
}

#[test]
fn nothing_in_the_tree_asks_for_the_unpaged_node_list() {
    // `Request::NodeList` answers every node in one reply; it is served
    // for older CLIs only. Lists this tree asks for page (`NodePage`,
    // `JobList { before, limit }`).
    let files: Vec<(String, String)> = sources_and_manifests()
        .into_iter()
        .filter(|(f, _)| f.ends_with(".rs"))
        .collect();
    let bad = knows(&files, &["proto", "gateway"], &["Request::NodeList"]);
    none_of(
        &bad,
        "ask for nodes a page at a time (Request::NodePage, client::Client::all_nodes)",
    );
    assert!(!knows(&files, &[], &["Request::NodeList"]).is_empty());
}
