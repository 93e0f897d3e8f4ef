//! A job spec resolved into exact argv, target, environment and limits.
//! Pure: it reads the configuration it is given, nothing else.

use proto::{ApiError, ErrorCode, JobSpec};

use super::{MAX_ARGV_BYTES, MAX_TIMEOUT, err};
use crate::config::Config;
use crate::routing;

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

/// The GPUs a job holds when neither `--gpus` nor its named job says.
/// The one rule, for the CLI, chat and named jobs alike: a job holds the
/// GPUs it asks for. Asking for the role `gpu` asks for a GPU, so it holds
/// one; anything else (an explicit node, another role, a fan-out) asks for
/// none, even on a node with GPUs: GPUs are exclusive, and a look at a node
/// (`nvidia-smi`, `df`) must neither wait for a busy GPU nor hold one from
/// a training job. The CLI warns when such a job lands on a node with
/// confirmed GPUs. Pure.
pub fn default_gpus(role: Option<&str>, fan: bool) -> u32 {
    u32::from(role == Some("gpu") && !fan)
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
    let gpus = gpus.unwrap_or_else(|| default_gpus(role.as_deref(), fan));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::parse(
            "[jobs.exp]\ncommand = [\"true\"]\nrole = \"gpu\"\n\
             [jobs.big]\ncommand = [\"true\"]\nrole = \"gpu\"\ngpus = 4\n\
             [jobs.look]\ncommand = [\"true\"]\nnode = \"worker-gpu-01\"\n",
        )
        .unwrap()
    }

    /// Node, role, named job, `--gpus`, fan-out; the GPUs it holds.
    type Case = (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Option<u32>,
        bool,
        u32,
    );

    #[test]
    fn a_job_holds_the_gpus_it_asks_for_and_role_gpu_asks_for_one() {
        let cfg = cfg();
        // (node, role, named job, --gpus, fan-out) -> GPUs held.
        let cases: &[Case] = &[
            // The README's first example: a named node asks for no GPU.
            (Some("worker-gpu-01"), None, None, None, false, 0),
            (Some("worker-gpu-01"), None, None, Some(2), false, 2),
            // Asking for the role gpu asks for one GPU; --gpus says otherwise.
            (None, Some("gpu"), None, None, false, 1),
            (None, Some("gpu"), None, Some(0), false, 0),
            (None, Some("gpu"), None, Some(3), false, 3),
            // Any other role asks for none.
            (None, Some("cpu"), None, None, false, 0),
            (None, Some("a100"), None, Some(1), false, 1),
            // Named jobs follow the same rule, and their own gpus win...
            (None, None, Some("exp"), None, false, 1),
            (None, None, Some("big"), None, false, 4),
            (None, None, Some("look"), None, false, 0),
            // ...unless the request says --gpus, or moves it to a node.
            (None, None, Some("big"), Some(1), false, 1),
            (Some("worker-gpu-02"), None, Some("exp"), None, false, 0),
            // A fan-out holds none unless asked.
            (None, Some("gpu"), None, None, true, 0),
            (None, Some("gpu"), None, Some(1), true, 1),
        ];
        for &(node, role, job, gpus, fan, want) in cases {
            let spec = JobSpec {
                node: node.map(str::to_string),
                role: role.map(str::to_string),
                job: job.map(str::to_string),
                argv: if job.is_some() {
                    vec![]
                } else {
                    vec!["true".into()]
                },
                gpus,
                ..JobSpec::default()
            };
            let r = resolve_for(&cfg, &spec, false, fan && node.is_none()).unwrap();
            assert_eq!(
                r.gpus, want,
                "node {node:?} role {role:?} job {job:?} --gpus {gpus:?} fan {fan}"
            );
        }
        assert_eq!(default_gpus(Some("gpu"), false), 1);
        assert_eq!(default_gpus(None, false), 0);
    }
}
