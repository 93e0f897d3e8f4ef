//! Phrases inside a run request, found by position so that the rest of
//! the message is the command: `on all gpu nodes`, `with 2 GPUs`, `for
//! project vision`. Pure.

use crate::Context;

/// Finds `all nodes`, `every gpu node`, `all (gpu) nodes`: the fan-out
/// phrase's first and last word, and its role.
pub(crate) fn all_phrase(
    lower: &[String],
    ctx: &Context,
) -> Option<(usize, usize, Option<String>)> {
    let bare = |w: &str| {
        w.trim_matches(|c: char| matches!(c, '(' | ')' | ',' | '.' | '?' | '!'))
            .to_string()
    };
    let is_nodes = |w: Option<&String>| {
        w.is_some_and(|w| matches!(bare(w).as_str(), "nodes" | "node" | "machines"))
    };
    for (i, w) in lower.iter().enumerate() {
        if !matches!(w.as_str(), "all" | "every" | "each") {
            continue;
        }
        if is_nodes(lower.get(i + 1)) {
            return Some((i, i + 1, None));
        }
        if let Some(r) = lower.get(i + 1).map(|r| bare(r))
            && (ctx.roles.contains(&r) || r == "gpu")
            && is_nodes(lower.get(i + 2))
        {
            return Some((i, i + 2, Some(r)));
        }
    }
    None
}

/// Finds `with 2 GPUs`, `with a GPU`, `using one gpu`, `with no GPUs`:
/// the phrase's first word and the count. Pure.
pub(crate) fn gpu_phrase(lower: &[String]) -> Option<(usize, u32)> {
    let bare = |w: &str| {
        w.trim_matches(|c: char| matches!(c, '(' | ')' | ',' | '.' | '?' | '!'))
            .to_string()
    };
    lower.windows(3).enumerate().find_map(|(i, w)| {
        if !matches!(w[0].as_str(), "with" | "using")
            || !matches!(bare(&w[2]).as_str(), "gpu" | "gpus")
        {
            return None;
        }
        let n = match w[1].as_str() {
            "a" | "an" | "one" => 1,
            "no" | "zero" => 0,
            "two" => 2,
            "three" => 3,
            "four" => 4,
            "eight" => 8,
            n => n.parse().ok()?,
        };
        Some((i, n))
    })
}

/// Finds `for project NAME`: the phrase's first word and the project.
pub(crate) fn project_phrase(lower: &[String]) -> Option<(usize, String)> {
    lower.windows(3).enumerate().find_map(|(i, w)| {
        let name = w[2].trim_end_matches(['.', ',', '?', '!']);
        (w[0] == "for" && w[1] == "project" && proto::names::validate_name(name).is_ok())
            .then(|| (i, name.to_string()))
    })
}
