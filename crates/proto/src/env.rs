//! Job environment policy, shared by the gateway and the node. Pure.
//!
//! A requested variable reaches a job only if its name matches an
//! allowlist (`[policy] env_allow` on the gateway, `env_allow` in node.toml)
//! **and** it is not on the fixed [`DANGEROUS`] list. The dangerous list
//! wins over any glob: these variables change what an allowed command
//! does before it starts (loaders, shell start-up files, interpreter
//! options) or which GPUs a job sees, which the node alone decides.

/// Variables no job may be given, whatever the allowlists say. Globs.
pub const DANGEROUS: &[&str] = &[
    // Dynamic loaders.
    "LD_*",
    "DYLD_*",
    "GCONV_PATH",
    "NLSPATH",
    "LOCPATH",
    "MALLOC_*",
    "GLIBC_TUNABLES",
    // Shells: start-up files, options and tracing hooks.
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_*",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "GLOBIGNORE",
    // Search paths and homes that decide which code runs.
    "PATH",
    "HOME",
    "SHELL",
    "TMPDIR",
    "XDG_*",
    // Interpreters.
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONINSPECT",
    "PYTHONBREAKPOINT",
    "PYTHONWARNINGS",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "LUA_INIT*",
    "GIT_*",
    "OPENSSL_CONF",
    "LESSOPEN",
    "PAGER",
    "EDITOR",
    "VISUAL",
    // GPU isolation and identity are the node's to set.
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "OPENCLAW_*",
];

/// The gateway's default `env_allow`: variables ML jobs commonly need and
/// that cannot change which program runs.
pub const DEFAULT_ALLOW: &[&str] = &[
    "CUDA_*",
    "NCCL_*",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "PYTHONUNBUFFERED",
    "PYTHONHASHSEED",
    "TOKENIZERS_PARALLELISM",
    "WANDB_*",
    "HF_*",
    "TRANSFORMERS_*",
    "TORCH_*",
    "SEED",
];

/// Most variables one job may ask for.
pub const MAX_VARS: usize = 128;
/// Longest value.
pub const MAX_VALUE_LEN: usize = 32 * 1024;

/// Why a variable was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvRefusal {
    /// Not a valid name.
    InvalidName,
    /// On the fixed dangerous list (the glob that matched).
    Dangerous(&'static str),
    /// No `env_allow` glob matches it.
    NotAllowed,
    /// The value is too long or holds NUL.
    BadValue,
}

/// Whether `key` is a valid variable name: `[A-Za-z_][A-Za-z0-9_]{0,127}`.
pub fn valid_name(key: &str) -> bool {
    key.len() <= 128
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The dangerous-list glob `key` matches, if any.
pub fn dangerous(key: &str) -> Option<&'static str> {
    DANGEROUS
        .iter()
        .copied()
        .find(|p| crate::glob::matches(p, key))
}

/// Checks one variable against an allowlist and the dangerous list.
pub fn check(allow: &[String], key: &str, value: &str) -> Result<(), EnvRefusal> {
    check_unlisted(key, value)?;
    if !crate::glob::any(allow, key) {
        return Err(EnvRefusal::NotAllowed);
    }
    Ok(())
}

/// Checks a variable no allowlist applies to (one an admin wrote into a
/// named job): its name, its value, and the dangerous list.
pub fn check_unlisted(key: &str, value: &str) -> Result<(), EnvRefusal> {
    if !valid_name(key) {
        return Err(EnvRefusal::InvalidName);
    }
    if let Some(p) = dangerous(key) {
        return Err(EnvRefusal::Dangerous(p));
    }
    if value.len() > MAX_VALUE_LEN || value.contains('\0') {
        return Err(EnvRefusal::BadValue);
    }
    Ok(())
}

/// A sentence for a refusal of `key`, naming the rule and the way out.
pub fn explain(key: &str, why: &EnvRefusal, allow_key: &str) -> String {
    let shown = key
        .chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string();
    match why {
        EnvRefusal::InvalidName => format!(
            "environment variable name {shown:?} is invalid; use letters, digits and '_', not starting with a digit"
        ),
        EnvRefusal::Dangerous(p) => format!(
            "environment variable {shown} is refused by policy: it matches {p:?} on the fixed list of variables \
             that change what a command runs (loaders, shell start-up, interpreter options, GPU isolation); \
             no allowlist can admit it"
        ),
        EnvRefusal::NotAllowed => format!(
            "environment variable {shown} is refused by policy: it matches no glob in {allow_key}; \
             ask an admin to add it there"
        ),
        EnvRefusal::BadValue => {
            format!("the value of {shown} is longer than {MAX_VALUE_LEN} bytes or contains NUL")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_dangerous_list_beats_any_glob() {
        let everything = allow(&["*"]);
        for key in [
            "BASH_ENV",
            "ENV",
            "PATH",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "NODE_OPTIONS",
            "PERL5OPT",
            "RUBYOPT",
            "SHELLOPTS",
            "PS4",
            "IFS",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "DYLD_INSERT_LIBRARIES",
            "CUDA_VISIBLE_DEVICES",
            "OPENCLAW_JOB_ID",
            "GIT_SSH_COMMAND",
            "HOME",
        ] {
            assert!(
                matches!(check(&everything, key, "x"), Err(EnvRefusal::Dangerous(_))),
                "{key}"
            );
        }
    }

    #[test]
    fn the_allowlist_decides_the_rest() {
        let defaults: Vec<String> = DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect();
        for ok in [
            "CUDA_LAUNCH_BLOCKING",
            "WANDB_PROJECT",
            "HF_HOME",
            "OMP_NUM_THREADS",
        ] {
            check(&defaults, ok, "1").unwrap();
        }
        assert_eq!(check(&defaults, "EPOCHS", "3"), Err(EnvRefusal::NotAllowed));
        assert_eq!(check(&defaults, "1X", "3"), Err(EnvRefusal::InvalidName));
        assert_eq!(check(&defaults, "", "3"), Err(EnvRefusal::InvalidName));
        assert_eq!(
            check(&defaults, "HF_TOKEN", "a\0b"),
            Err(EnvRefusal::BadValue)
        );
        // CUDA_* in the allowlist does not admit the node's own variable.
        assert!(matches!(
            check(&defaults, "CUDA_VISIBLE_DEVICES", "0"),
            Err(EnvRefusal::Dangerous(_))
        ));
    }

    #[test]
    fn explanations_name_the_rule() {
        let m = explain("BASH_ENV", &EnvRefusal::Dangerous("BASH_ENV"), "x");
        assert!(
            m.contains("refused by policy") && m.contains("BASH_ENV"),
            "{m}"
        );
        let m = explain("EPOCHS", &EnvRefusal::NotAllowed, "[policy] env_allow");
        assert!(m.contains("[policy] env_allow"), "{m}");
    }
}
