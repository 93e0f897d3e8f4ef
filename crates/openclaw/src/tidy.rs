//! Tidy tests, as rust-analyzer has: they read the workspace's source and
//! fail when an architecture invariant of docs/ARCHITECTURE.md stops
//! holding. Each names the file and line that broke it.
//!
//! * no source file over [`MAX_LINES`] lines;
//! * no job-state word dispatched on as a string outside `crates/proto`
//!   (`state == "running"`, a `"timed-out" =>` arm): states are
//!   `proto::JobState`, `FanState` and `NodeState`;
//! * no engine-specific SQL outside the store's engine rooms;
//! * no cycle among the gateway's modules (`use crate::…` lines);
//! * crate dependencies point down the layering, only moltbot knows
//!   Slack and only wecom knows WeCom, proto and pki do no IO, the gateway
//!   starts no process, only the node reads NVML, ring is the only crypto
//!   provider (`layering`).
//! * the gateway reads time only through its clock (`clock.rs`).
//! * no `unsafe` outside [`UNSAFE_ALLOWED`] (the test NVML's C ABI and the
//!   node's spawn helper), where every `unsafe` block carries a `SAFETY:`
//!   comment just above it, no other file allows `unsafe_code`, and every
//!   other crate takes the workspace lints (`unsafe_code = "deny"`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod layering;

/// The longest a source file may be.
const MAX_LINES: usize = 1000;

/// SQL only one engine speaks.
const ENGINE_SQL: [&str; 8] = [
    "strftime(",
    "PRAGMA ",
    "pragma_",
    "extract(epoch",
    "::bigint",
    "setval(",
    "pg_advisory",
    "clock_timestamp(",
];

/// Where engine-specific SQL may live: the engines, the schema (its
/// SQLite migrations and PostgreSQL version table), the translation
/// between them, and the SQLite-only online backup.
const ENGINE_ROOMS: [&str; 6] = [
    "crates/gateway/src/store/engine.rs",
    "crates/gateway/src/store/sql.rs",
    "crates/gateway/src/store/schema.rs",
    "crates/gateway/src/store/lease.rs",
    "crates/gateway/src/store/tests.rs",
    "crates/gateway/src/backup.rs",
];

/// Where `unsafe` may be used: the stand-in libnvidia-ml, a C ABI that
/// cannot be written without raw out-pointers (test support, never
/// shipped), and the node's spawn helper, whose `pre_exec` hook runs
/// between fork and exec (the one module that says
/// `#![allow(unsafe_code)]`).
const UNSAFE_ALLOWED: [&str; 2] = ["crates/testnvml/", "crates/node/src/spawn.rs"];

/// What is wrong with `unsafe` in file `f` (relative path) of text `text`:
/// `unsafe` or an `allow(unsafe_code)` outside [`UNSAFE_ALLOWED`], or an
/// `unsafe` block without a `SAFETY:` comment on its line or in the
/// comment lines just above it. Pure.
fn unsafe_findings(f: &str, text: &str) -> Vec<String> {
    let mut bad = vec![];
    // A folder (ending in `/`) holds its files; a file is only itself.
    let allowed = UNSAFE_ALLOWED.iter().any(|p| {
        if p.ends_with('/') {
            f.starts_with(p)
        } else {
            f == *p
        }
    });
    let lines: Vec<&str> = text.lines().collect();
    // Open brackets of an attribute that runs on over several lines.
    let mut attr_depth = 0usize;
    for (i, line) in lines.iter().enumerate() {
        let code = code_of(line);
        let in_attr = attr_depth > 0 || code.trim_start().starts_with('#');
        if in_attr {
            let opened = code.matches('[').count();
            let closed = code.matches(']').count();
            attr_depth = (attr_depth + opened).saturating_sub(closed);
        }
        // `allow`, `expect` or `warn`: any attribute on the lint relaxes it.
        if !allowed && in_attr && code.contains("unsafe_code") {
            bad.push(format!(
                "{f}:{}: relaxes unsafe_code outside {UNSAFE_ALLOWED:?}",
                i + 1
            ));
            continue;
        }
        if !uses_unsafe(line) {
            continue;
        }
        if !allowed {
            bad.push(format!("{f}:{}: unsafe outside {UNSAFE_ALLOWED:?}", i + 1));
            continue;
        }
        // An unsafe block (not an `unsafe fn`, whose contract is its
        // `# Safety` doc) says why it is sound just above.
        let block = line.contains("unsafe {") || line.trim_end().ends_with("unsafe");
        // The comment may sit above the statement rustfmt split the block
        // into (up to 3 lines up), and may run on for many lines.
        let comment = |l: &str| l.trim_start().starts_with("//");
        let explained = (i.saturating_sub(3)..=i).rev().any(|k| {
            lines[k].contains("SAFETY:")
                || (comment(lines[k])
                    && lines[..k]
                        .iter()
                        .rev()
                        .take_while(|l| comment(l))
                        .any(|l| l.contains("SAFETY:")))
        });
        if block && !explained {
            bad.push(format!(
                "{f}:{}: unsafe block without a SAFETY: comment",
                i + 1
            ));
        }
    }
    bad
}

/// A line's code: cut at the first `//` outside a string literal (a
/// `"//"` in a string does not hide what follows it). Pure.
fn code_of(line: &str) -> &str {
    let b = line.as_bytes();
    let mut in_str = false;
    let mut k = 0;
    while k < b.len() {
        match b[k] {
            b'\\' if in_str => k += 1,
            b'"' => in_str = !in_str,
            // A char literal `'"'` or `'\"'` does not open a string.
            b'\'' if !in_str && b.get(k + 2) == Some(&b'\'') => k += 2,
            b'\'' if !in_str && b.get(k + 1) == Some(&b'\\') && b.get(k + 3) == Some(&b'\'') => {
                k += 3;
            }
            b'/' if !in_str && b.get(k + 1) == Some(&b'/') => return &line[..k],
            _ => {}
        }
        k += 1;
    }
    line
}

/// Whether a line's code (comments cut) uses `unsafe`.
fn uses_unsafe(line: &str) -> bool {
    let code = code_of(line);
    code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w == "unsafe")
}

#[test]
fn unsafe_only_where_allowed_and_always_explained() {
    let mut bad = vec![];
    let mut files = rust_files("crates");
    files.extend(rust_files("tests"));
    files.extend(rust_files("fuzz"));
    for f in files {
        if f.ends_with("/tidy.rs") {
            continue;
        }
        bad.extend(unsafe_findings(&f, &read(&f)));
    }
    let workspace = read("Cargo.toml");
    if !workspace.contains("unsafe_code = \"deny\"")
        && !workspace.contains("unsafe_code = \"forbid\"")
    {
        bad.push("Cargo.toml: the workspace lints no longer deny unsafe_code".into());
    }
    // Every other crate forbids it through the workspace lints.
    for entry in std::fs::read_dir(root().join("crates"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = format!("crates/{}/", entry.file_name().to_string_lossy());
        let toml = read(&format!("{name}Cargo.toml"));
        if toml.is_empty() || UNSAFE_ALLOWED.contains(&name.as_str()) {
            continue;
        }
        if !toml.contains("[lints]\nworkspace = true") && !toml.contains("unsafe_code = \"forbid\"")
        {
            bad.push(format!(
                "{name}Cargo.toml neither takes the workspace lints nor forbids unsafe_code"
            ));
        }
    }
    let nvml = read("crates/testnvml/src/lib.rs");
    if !nvml.contains("#![deny(unsafe_op_in_unsafe_fn)]") {
        bad.push("crates/testnvml/src/lib.rs lost #![deny(unsafe_op_in_unsafe_fn)]".into());
    }
    assert!(bad.is_empty(), "unsafe code:\n{}", bad.join("\n"));
}

#[test]
fn the_check_for_unsafe_can_fail() {
    for (line, hit) in [
        ("    unsafe { out.write(v) };", true),
        ("pub unsafe extern \"C\" fn f() {}", true),
        ("let x = unsafe_thing(); // unsafe here", false),
        ("/// Broken, or unsafe.", false),
    ] {
        assert_eq!(uses_unsafe(line), hit, "{line}");
    }
    let spawn = "crates/node/src/spawn.rs";
    let explained = "// SAFETY: the fd is open.\n// More words.\nlet fd = unsafe { borrow(0) };\n";
    assert!(unsafe_findings(spawn, explained).is_empty());
    let bare = "let x = 1;\nlet fd = unsafe { borrow(0) };\n";
    assert_eq!(unsafe_findings(spawn, bare).len(), 1, "no SAFETY: comment");
    let split =
        "// SAFETY: the fd is open.\n// More.\nassert_eq!(\n    unsafe { f(0) },\n    0\n);\n";
    assert!(
        unsafe_findings(spawn, split).is_empty(),
        "above a split statement"
    );
    let gap = "// SAFETY: the fd is open.\nlet y = 2;\nlet z = 3;\nlet w = 4;\nlet fd = unsafe { borrow(0) };\n";
    assert_eq!(unsafe_findings(spawn, gap).len(), 1, "not just above");
    let elsewhere = "crates/node/src/runner.rs";
    assert_eq!(
        unsafe_findings(elsewhere, explained).len(),
        1,
        "outside the module"
    );
    for allow in [
        "#![allow(unsafe_code)]",
        "#[allow( unsafe_code )]",
        "#![expect(unsafe_code)]",
    ] {
        assert_eq!(unsafe_findings(elsewhere, allow).len(), 1, "{allow}");
        assert!(unsafe_findings(spawn, allow).is_empty(), "{allow}");
    }
}

#[test]
fn the_check_for_unsafe_is_not_fooled_by_names_strings_or_wrapped_attributes() {
    let explained = "// SAFETY: the fd is open.\nlet fd = unsafe { borrow(0) };\n";
    // A file whose name only begins like the allowed module's is not it
    // (a `#[path]` module could be named so).
    for f in [
        "crates/node/src/spawn.rs_helper.rs",
        "crates/node/src/spawn.rsx/mod.rs",
    ] {
        assert_eq!(unsafe_findings(f, explained).len(), 1, "{f}");
    }
    // `//` inside a string literal does not start a comment.
    let elsewhere = "crates/node/src/runner.rs";
    let hidden = "let fd = f(\"//\", unsafe { borrow(0) });";
    assert!(uses_unsafe(hidden), "{hidden}");
    assert_eq!(unsafe_findings(elsewhere, hidden).len(), 1, "{hidden}");
    for quiet in [
        "let c = '\"'; // unsafe here",
        "let c = '\\\"'; // unsafe here",
        "let s = \"a \\\" b\"; // unsafe here",
    ] {
        assert!(!uses_unsafe(quiet), "{quiet}");
    }
    // An attribute rustfmt wrapped over several lines still relaxes it.
    let wrapped = "#![allow(\n    clippy::too_many_lines,\n    unsafe_code\n)]\n";
    assert_eq!(unsafe_findings(elsewhere, wrapped).len(), 1, "{wrapped}");
    assert!(unsafe_findings("crates/node/src/spawn.rs", wrapped).is_empty());
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, as paths relative to the workspace root.
pub(crate) fn rust_files(dir: &str) -> Vec<String> {
    let mut out = vec![];
    let mut dirs = vec![root().join(dir)];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
                out.push(rel.replace("/./", "/"));
            }
        }
    }
    out.sort();
    out
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_default()
}

/// The lines of `text` before its test module (`#[cfg(test)]`), numbered
/// from 1: what ships.
fn shipped(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .map(|(i, l)| (i + 1, l))
}

/// Whether `line` dispatches on a job state's word: compares a `state`
/// with a string, or matches a state word in an arm.
fn dispatches_on_a_state_word(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    let compares = ["state == \"", "state != \"", "state.as_str() == \""]
        .iter()
        .any(|p| code.contains(p));
    let arm = proto::JobState::ALL.iter().any(|w| {
        let quoted = format!("\"{}\"", w.as_str());
        code.trim_start().starts_with(&quoted)
            && code.trim_start()[quoted.len()..]
                .trim_start()
                .starts_with(['=', '|'])
    });
    compares || arm
}

#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let mut long = vec![];
    for dir in ["crates", "tests"] {
        for f in rust_files(dir) {
            let n = read(&f).lines().count();
            if n > MAX_LINES {
                long.push(format!("{f}: {n} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these (a module is one responsibility; see docs/ARCHITECTURE.md):\n{}",
        long.join("\n")
    );
}

#[test]
fn job_states_are_types_outside_proto() {
    let files = rust_files("crates");
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut bad = vec![];
    for f in files {
        if f.starts_with("crates/proto/") || f.ends_with("/tests.rs") || f.contains("/tests/") {
            continue;
        }
        let text = read(&f);
        for (n, line) in shipped(&text) {
            if dispatches_on_a_state_word(line) {
                bad.push(format!("{f}:{n}: {}", line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "use proto::JobState / FanState / NodeState instead of their words:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_for_state_words_can_fail() {
    for (line, hit) in [
        ("if info.state == \"running\" {", true),
        ("    \"timed-out\" => exit::RUN_TIMED_OUT,", true),
        ("    \"denied\" | \"expired\" => 252,", true),
        ("if j.is(JobState::Running) {", false),
        ("return \"expired\".into(); // a token", false),
        ("let s = \"running\"; // a word in text", false),
    ] {
        assert_eq!(dispatches_on_a_state_word(line), hit, "{line}");
    }
}

#[test]
fn engine_specific_sql_stays_in_the_engine_rooms() {
    let mut bad = vec![];
    for f in rust_files("crates") {
        if ENGINE_ROOMS.contains(&f.as_str())
            || f.starts_with("crates/testpg/")
            || f.ends_with("/tidy.rs")
        {
            continue;
        }
        let text = read(&f);
        for (n, line) in shipped(&text) {
            let code = line.split("//").next().unwrap_or("");
            if let Some(s) = ENGINE_SQL.iter().find(|s| code.contains(*s)) {
                bad.push(format!("{f}:{n}: {s} in {}", line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "engine-specific SQL belongs in crates/gateway/src/store/sql.rs or engine.rs:\n{}",
        bad.join("\n")
    );
}

/// The gateway's top-level modules and what each imports from the others
/// (`use crate::x…` and `crate::x::` paths), the crate root and `shared`
/// (the composition of them all) excluded.
fn gateway_module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = "crates/gateway/src/";
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let files = rust_files("crates/gateway/src");
    let module_of = |f: &str| -> Option<String> {
        let rest = f.strip_prefix(src)?;
        let first = rest.split('/').next()?;
        let m = first.trim_end_matches(".rs");
        // The crate root and `shared` compose the gateway: `Shared` holds
        // every part (the store, the registry, the live jobs, metrics), and
        // the parts reach each other through it. Cycles among the parts
        // themselves are what this check forbids.
        (m != "lib" && m != "shared").then(|| m.to_string())
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    for f in &files {
        let Some(me) = module_of(f) else { continue };
        let text = read(f);
        let deps = graph.entry(me.clone()).or_default();
        for (_, line) in shipped(&text) {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != me && modules.contains(&name) {
                    deps.insert(name);
                }
            }
            // `use crate::{a, b::c}` lists.
            if let Some(list) = code.trim_start().strip_prefix("use crate::{") {
                for part in list.split(',') {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if name != me && modules.contains(&name) {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut vec![], &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_gateways_modules_have_no_cycle() {
    let graph = gateway_module_graph();
    assert!(graph.len() > 10, "found only {graph:?}");
    assert!(
        graph.get("session").is_some_and(|d| d.contains("api")),
        "the check reads imports: {graph:?}"
    );
    if let Some(c) = find_cycle(&graph) {
        panic!(
            "the gateway's modules import each other in a cycle: {} (see the layering in docs/ARCHITECTURE.md)",
            c.join(" -> ")
        );
    }
    // The check finds a cycle when there is one.
    let mut g = graph.clone();
    g.entry("store".into())
        .or_default()
        .insert("session".into());
    assert!(find_cycle(&g).is_some());
}

/// Whether a test or function named `name` is defined in any of `files`
/// (path and text).
fn defines<'a>(files: impl IntoIterator<Item = &'a (String, String)>, name: &str) -> bool {
    let needle = format!("fn {name}(");
    files.into_iter().any(|(_, text)| text.contains(&needle))
}

/// `paths` with their text, each read once.
fn with_text(paths: impl IntoIterator<Item = String>) -> Vec<(String, String)> {
    paths
        .into_iter()
        .map(|f| {
            let text = read(&f);
            (f, text)
        })
        .collect()
}

/// Where the gateway may read the system's clocks: its one clock.
const GATEWAY_CLOCK: &str = "crates/gateway/src/clock.rs";

/// Whether `line` reads a clock of the system (not tokio's paused one
/// through `clock::Clock`).
fn reads_the_system_clock(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    [
        "SystemTime::now",
        "Instant::now",
        "UNIX_EPOCH",
        "unix_now()",
    ]
    .iter()
    .any(|p| code.contains(p))
}

#[test]
fn the_gateway_reads_time_only_through_its_clock() {
    let files = rust_files("crates/gateway/src");
    assert!(
        files.iter().any(|f| f == GATEWAY_CLOCK),
        "{GATEWAY_CLOCK} not found"
    );
    let mut bad = vec![];
    for f in files.iter().filter(|f| *f != GATEWAY_CLOCK) {
        for (n, line) in read(f).lines().enumerate() {
            if reads_the_system_clock(line) {
                bad.push(format!("{f}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "the gateway reads time only through clock::Clock (shared.clock.now(), .unix()), so tests can pause it; see docs/ARCHITECTURE.md:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_for_clock_reads_can_fail() {
    assert!(reads_the_system_clock("let t = std::time::Instant::now();"));
    assert!(reads_the_system_clock("let t = Instant::now();"));
    assert!(reads_the_system_clock(
        "SystemTime::now().duration_since(UNIX_EPOCH)"
    ));
    assert!(!reads_the_system_clock(
        "let t = shared.clock.now(); // not Instant::now()"
    ));
    assert!(reads_the_system_clock("let now = crate::unix_now();"));
    assert!(!reads_the_system_clock("let now = shared.clock.unix();"));
}

#[test]
fn every_test_security_md_names_exists() {
    // `module::test` names a test in tests/it/module(.rs|/*); `crate::…::f`
    // names a function in crates/crate/src. A renamed or moved test must
    // be renamed in docs/SECURITY.md too.
    let text = read("docs/SECURITY.md");
    assert!(text.len() > 10_000, "docs/SECURITY.md not found");
    let it_modules: BTreeSet<String> = rust_files("tests/it")
        .iter()
        .filter_map(|f| {
            let rest = f.strip_prefix("tests/it/")?;
            Some(rest.split('/').next()?.trim_end_matches(".rs").to_string())
        })
        .collect();
    let gateway_modules: BTreeSet<String> = gateway_module_graph().into_keys().collect();
    let everywhere = with_text(
        rust_files("tests/it")
            .into_iter()
            .chain(rust_files("crates")),
    );
    let mut missing = vec![];
    let mut checked = 0;
    for quoted in text.split('`').skip(1).step_by(2) {
        let parts: Vec<&str> = quoted.split("::").collect();
        if parts.len() < 2
            || !parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
        {
            continue;
        }
        let Some(last) = parts.last().copied() else {
            continue;
        };
        let known_root = it_modules.contains(parts[0])
            || root().join("crates").join(parts[0]).is_dir()
            || gateway_modules.contains(parts[0]);
        if !known_root || last == "tests" {
            continue;
        }
        checked += 1;
        // The first segment may be a tests/it module, a crate, or a module
        // of the gateway (`jobs::logwriter`): look in all of them.
        if !defines(&everywhere, last) {
            missing.push(quoted.to_string());
            continue;
        }
        // `module::test` of tests/it must be in that module (a test moved to
        // another module must be renamed here too), unless the name is a
        // crate's (`moltbot::deliver`).
        if parts.len() == 2 && it_modules.contains(parts[0]) {
            // The module's and a same-named crate's files, already read.
            let dir = format!("tests/it/{}/", parts[0]);
            let file = format!("tests/it/{}.rs", parts[0]);
            let krate = format!("crates/{}/src/", parts[0]);
            let here = everywhere
                .iter()
                .filter(|(f, _)| f.starts_with(&dir) || *f == file || f.starts_with(&krate));
            if !defines(here, last) {
                missing.push(format!("{quoted} (in another module now?)"));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} test names found in docs/SECURITY.md"
    );
    assert!(
        missing.is_empty(),
        "docs/SECURITY.md names tests that do not exist (renamed or moved?):\n{}",
        missing.join("\n")
    );
}
