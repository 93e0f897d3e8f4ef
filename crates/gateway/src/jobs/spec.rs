//! A job spec resolved into exact argv, target, environment and limits.
//! Pure: it reads the configuration it is given, nothing else.

use super::*;

/// A request resolved against the config, before routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Explicit node, if any.
    pub node: Option<String>,
    /// Role, if routed by role.
    pub role: Option<String>,
    /// Named job.
    pub named_job: Option<String>,
    /// Exact argv.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Timeout.
    pub timeout_secs: Option<u64>,
    /// GPUs.
    pub gpus: u32,
    /// A named job's user.
    pub run_as: Option<String>,
}

/// Turns a spec into exact argv, target and environment. Pure. `chat`:
/// a bot submits it for a chat user (chat policy applies).
pub fn resolve(cfg: &Config, spec: &JobSpec, chat: bool) -> Result<Resolved, ApiError> {
    resolve_for(cfg, spec, chat, false)
}

/// [`resolve`] for a single job (`fan: false`) or for the command of a
/// fan-out (`fan: true`: no node, no target needed, no GPUs by default).
pub fn resolve_for(
    cfg: &Config,
    spec: &JobSpec,
    chat: bool,
    fan: bool,
) -> Result<Resolved, ApiError> {
    let invalid = |m: String| err(ErrorCode::InvalidArgument, m);
    let mut run_as = None;
    let (mut argv, mut node, mut role, mut cwd, mut timeout, mut gpus, mut env, named) = match &spec
        .job
    {
        Some(name) => {
            let Some((key, job)) = cfg.named_job(name) else {
                let names: Vec<&str> = cfg.jobs.keys().map(String::as_str).collect();
                let mut m = format!("unknown named job {name:?}");
                if let Some(c) = routing::closest(name, names.iter().copied()) {
                    m.push_str(&format!("; did you mean {c}?"));
                }
                if names.is_empty() {
                    m.push_str("; no named jobs are defined ([jobs.NAME] in gateway.toml)");
                } else {
                    m.push_str(&format!("; named jobs: {}", names.join(", ")));
                }
                return Err(err(ErrorCode::NotFound, m));
            };
            if !spec.argv.is_empty() {
                return Err(invalid(format!(
                    "named job {key} fixes its command; drop the command after -- or run it without --job"
                )));
            }
            run_as.clone_from(&job.run_as);
            (
                job.command.clone(),
                job.node.clone(),
                job.role.clone(),
                job.cwd.clone(),
                job.timeout.map(|t| t.as_secs().max(1)),
                job.gpus,
                job.env.clone(),
                Some(key.to_string()),
            )
        }
        None => (
            spec.argv.clone(),
            None,
            None,
            None,
            None,
            None,
            vec![],
            None,
        ),
    };
    // A node and a role together: that node, which must have the role
    // (the role still decides the default GPUs). A chat bot pins the node
    // it checked a user's limits against this way, so routing cannot move
    // the job elsewhere between the check and the submit.
    if spec.node.is_some() || spec.role.is_some() {
        node = spec.node.clone();
        role = spec.role.clone();
    }
    if fan {
        if let Some(n) = &node {
            return Err(invalid(match &named {
                Some(j) => format!(
                    "named job {j} is pinned to node {n}; a fan-out picks nodes by role and labels, so run it without --all"
                ),
                None => "a fan-out picks nodes by --role and --label; drop --node, or drop --all to run on one node".into(),
            }));
        }
    } else if node.is_none() && role.is_none() {
        return Err(invalid(
            "say where to run it: --node NAME, --role ROLE or --job NAME".into(),
        ));
    }
    if argv.is_empty() || argv[0].is_empty() {
        return Err(invalid(
            "empty command; put it after --, e.g. openclaw run --node worker-gpu-01 -- nvidia-smi"
                .into(),
        ));
    }
    if spec.shell {
        if chat && !cfg.policy.chat_shell {
            return Err(err(
                ErrorCode::Denied,
                "shell jobs from chat are refused by policy (policy.chat_shell = false); name the command without shell syntax, or use a named job",
            ));
        }
        if !chat && !cfg.policy.allow_shell {
            return Err(err(
                ErrorCode::Denied,
                "shell jobs are disabled by policy (policy.allow_shell = false); run the command as argv",
            ));
        }
        argv = vec!["sh".into(), "-c".into(), argv.join(" ")];
    }
    if argv.iter().map(|a| a.len() + 1).sum::<usize>() > MAX_ARGV_BYTES
        || argv.iter().any(|a| a.contains('\0'))
    {
        return Err(invalid(format!(
            "command too long or contains NUL bytes (limit {MAX_ARGV_BYTES} bytes)"
        )));
    }
    if let Some(c) = &spec.cwd {
        cwd = Some(c.clone());
    }
    if let Some(c) = &cwd
        && (!c.starts_with('/') || c.contains('\0'))
    {
        return Err(invalid(format!("--cwd {c:?} must be an absolute path")));
    }
    if let Some(t) = spec.timeout_secs {
        timeout = Some(t);
    }
    if let Some(t) = timeout
        && (t == 0 || t > MAX_TIMEOUT.as_secs())
    {
        return Err(invalid("--timeout must be between 1s and 30d".into()));
    }
    if spec.gpus.is_some() {
        gpus = spec.gpus;
    }
    let gpus = gpus.unwrap_or(if role.as_deref() == Some("gpu") && !fan {
        1
    } else {
        0
    });
    if gpus > 64 {
        return Err(invalid("--gpus must be at most 64".into()));
    }
    if spec.env.len() > proto::env::MAX_VARS {
        return Err(invalid(format!(
            "{} environment variables given; the limit is {}",
            spec.env.len(),
            proto::env::MAX_VARS
        )));
    }
    // A named job's own variables may be overridden; anything else must
    // match [policy] env_allow, and nothing on the dangerous list passes.
    let named_keys: Vec<String> = env.iter().map(|(k, _)| k.clone()).collect();
    for (k, v) in &spec.env {
        let checked = if named_keys.contains(k) {
            proto::env::check_unlisted(k, v)
        } else {
            proto::env::check(&cfg.policy.env_allow, k, v)
        };
        if let Err(why) = checked {
            let code = match why {
                proto::env::EnvRefusal::InvalidName | proto::env::EnvRefusal::BadValue => {
                    ErrorCode::InvalidArgument
                }
                _ => ErrorCode::Denied,
            };
            return Err(err(
                code,
                proto::env::explain(k, &why, "[policy] env_allow in gateway.toml"),
            ));
        }
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    Ok(Resolved {
        node,
        role,
        named_job: named,
        argv,
        cwd,
        env,
        timeout_secs: timeout,
        gpus,
        run_as,
    })
}
