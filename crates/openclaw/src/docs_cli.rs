//! The command reference (docs/CLI.md), shell completions and man pages,
//! all generated from the clap definitions in `main.rs`, so they cannot
//! drift from the binary. `markdown` is pure; a test compares its output
//! with docs/CLI.md.

use std::fmt::Write as _;
use std::path::Path;

use clap::Command;

/// The whole reference as Markdown: exit codes, then every command in
/// depth-first order with its usage, arguments and options.
pub fn markdown(cmd: &Command, exit_codes: &[(u8, &str)]) -> String {
    let mut cmd = cmd.clone();
    cmd.build();
    let mut out = String::new();
    let _ = writeln!(out, "# `openclaw` command reference\n");
    let _ = writeln!(
        out,
        "Generated from the CLI's own definitions by `openclaw docs-cli > docs/CLI.md`\n\
         (a test fails when this file and the binary disagree). `openclaw <command> --help`\n\
         shows the same text; `openclaw completions bash|zsh|fish` prints completions and\n\
         `openclaw man --out DIR` writes man pages.\n"
    );
    let _ = writeln!(out, "## Exit codes\n");
    let _ = writeln!(out, "| code | meaning |\n|---|---|");
    for (code, meaning) in exit_codes {
        let _ = writeln!(out, "| {code} | {} |", cell(meaning));
    }
    let _ = writeln!(
        out,
        "\n`openclaw run` (and `run --all`, with the largest code of its nodes)\n\
         otherwise exits with the remote command's own code, as ssh does.\n"
    );
    section(&mut out, &mut cmd, true);
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

fn section(out: &mut String, cmd: &mut Command, root: bool) {
    let name = cmd
        .get_bin_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let _ = writeln!(out, "## `{name}`\n");
    if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        let _ = writeln!(out, "{}\n", sentence(&about.to_string()));
    }
    let usage = cmd.render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage: ");
    let _ = writeln!(out, "```text\n{usage}\n```\n");
    let args: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        // Global options are listed once, on `openclaw` itself.
        .filter(|a| root || !a.is_global_set())
        .map(describe)
        .collect();
    if !args.is_empty() {
        let _ = writeln!(out, "| argument | meaning |\n|---|---|");
        for a in args {
            let _ = writeln!(out, "{a}");
        }
        out.push('\n');
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_string())
        .collect();
    if !subs.is_empty() {
        let _ = writeln!(
            out,
            "Commands: {}.\n",
            subs.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for sub in cmd.get_subcommands_mut() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            section(out, sub, false);
        }
    }
}

fn describe(a: &clap::Arg) -> String {
    let value = a
        .get_value_names()
        .map(|v| v.join(" "))
        .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
    let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
    let flag = match (a.get_short(), a.get_long()) {
        _ if a.is_positional() => format!("<{value}>"),
        (Some(s), Some(l)) if takes_value => format!("-{s}, --{l} <{value}>"),
        (Some(s), Some(l)) => format!("-{s}, --{l}"),
        (None, Some(l)) if takes_value => format!("--{l} <{value}>"),
        (None, Some(l)) => format!("--{l}"),
        (Some(s), None) => format!("-{s}"),
        (None, None) => value,
    };
    let mut help = a
        .get_long_help()
        .or_else(|| a.get_help())
        .map(|h| sentence(&h.to_string()))
        .unwrap_or_default();
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && takes_value {
        let _ = write!(help, " Default: `{}`.", defaults.join(","));
    }
    let choices: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|p| !p.is_hide_set())
        .map(|p| format!("`{}`", p.get_name()))
        .collect();
    if !choices.is_empty() {
        let _ = write!(help, " One of {}.", choices.join(", "));
    }
    if let Some(env) = a.get_env() {
        let _ = write!(help, " Env: `{}`.", env.to_string_lossy());
    }
    if a.is_global_set() {
        help.push_str(" Accepted by every command.");
    }
    format!("| `{}` | {} |", flag.replace('|', "\\|"), cell(help.trim()))
}

/// Help text as a sentence (clap drops the final period).
fn sentence(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() || s.ends_with(['.', '!', '?', ')', ':']) {
        s.to_string()
    } else {
        format!("{s}.")
    }
}

/// Text fit for one Markdown table cell.
fn cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// Writes `openclaw.1` and one page per command (`openclaw-run.1`, …)
/// into `dir`, creating it.
pub fn man_pages(cmd: Command, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)?;
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
        .count())
}
