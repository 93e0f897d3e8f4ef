//! Command implementations. Each returns a [`CliError`] whose message says
//! what failed and what to do next.

use std::time::Duration;

use client::{Client, ClientError};
use mesh::Home;
use node::NodeError;
use proto::{ErrorCode, Request, Response};

use crate::term::{errln, outln};
use crate::{
    Command, GatewayCmd, MoltbotCmd, NodeCmd, TokenCmd, WecomCmd, WeixinCmd, exit, jobs_cli, lab,
    output,
};

/// A failed command: exit code and message.
pub struct CliError {
    /// Process exit code.
    pub code: u8,
    /// What failed and what to do next.
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Credential(_) | ClientError::Protocol(_) => exit::FAILURE,
            ClientError::Refused { .. } => exit::REFUSED,
            ClientError::Connect { .. } => exit::UNAVAILABLE,
            ClientError::Api(api) => match api.code {
                ErrorCode::PermissionDenied | ErrorCode::Unauthenticated => exit::REFUSED,
                _ => exit::FAILURE,
            },
        };
        // The gateway's messages quote what others wrote: one line.
        CliError::new(code, crate::term::field(&e.to_string()))
    }
}

impl From<NodeError> for CliError {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            NodeError::Input(_) => exit::USAGE,
            NodeError::Home(_) => exit::FAILURE,
            NodeError::Refused(_) => exit::REFUSED,
            NodeError::Unreachable(_) => exit::UNAVAILABLE,
            NodeError::StillPending(_) => exit::PENDING,
        };
        let message = match &e {
            // Local files and input: their messages may span lines.
            NodeError::Input(_) | NodeError::Home(_) => e.to_string(),
            // The gateway's words: one line.
            _ => crate::term::field(&e.to_string()),
        };
        CliError::new(code, message)
    }
}

pub(crate) fn usage(msg: impl Into<String>) -> CliError {
    CliError::new(exit::USAGE, msg)
}

pub(crate) fn duration_arg(flag: &str, value: &str) -> Result<Duration, CliError> {
    proto::duration::parse(value).map_err(|e| usage(format!("{flag}: {e}")))
}

pub(crate) fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    crate::term::out_json(value).map_err(|e| CliError::new(exit::FAILURE, e.to_string()))
}

/// A future that resolves on Ctrl-C or SIGTERM.
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) async fn call(home: &Home, req: Request) -> Result<Response, CliError> {
    let client = Client::connect(home).await?;
    let resp = client.call(req).await;
    client.close().await;
    Ok(resp?)
}

pub(crate) fn unexpected(r: Response) -> CliError {
    CliError::new(
        exit::FAILURE,
        format!("unexpected reply from the gateway: {r:?}"),
    )
}

/// Runs one command.
pub async fn run(command: Command, home: Home) -> Result<(), CliError> {
    match command {
        Command::Gateway(GatewayCmd::Join {
            listen,
            name,
            advertise,
            ca_from,
            state,
        }) => {
            let Some(state_cfg) = state.config() else {
                return Err(usage(
                    "gateway join needs --state postgres://USER@HOST:PORT/DB (the database 'gateway init --state' created)",
                ));
            };
            if let Some(url) = &state.state {
                gateway::config::check_state_url(url)
                    .map_err(|e| usage(format!("--state: {e}")))?;
            }
            let report = gateway::join(
                &home,
                &listen,
                &name,
                advertise.as_deref(),
                &ca_from,
                &state_cfg,
            )
            .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
            outln!("gateway {name} joined in {}", home.root().display());
            outln!("  CA pin:      {}", report.ca_pin);
            outln!("  listen:      {listen}");
            outln!("  it starts as a standby and leads when the leader's lease lapses");
            outln!(
                "next: openclaw --home {} gateway run",
                home.root().display()
            );
            Ok(())
        }
        Command::Gateway(GatewayCmd::Init {
            listen,
            name,
            advertise,
            state,
        }) => {
            if let Some(url) = &state.state {
                gateway::config::check_state_url(url)
                    .map_err(|e| usage(format!("--state: {e}")))?;
            }
            let report = gateway::init_with_state(
                &home,
                &listen,
                &name,
                advertise.as_deref(),
                state.config().as_ref(),
            )
            .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
            outln!("gateway {name} initialised in {}", home.root().display());
            outln!("  CA pin:      {}", report.ca_pin);
            outln!("  listen:      {listen}");
            if let Some(a) = &advertise {
                outln!("  advertise:   {a} (join tokens carry it)");
            } else if gateway::listens_beyond_loopback(&listen) {
                outln!(
                    "  advertise:   not set; set it in gateway.toml (or init again with --advertise HOST:PORT) before 'token create'"
                );
            }
            outln!("  admin:       client.crt (role admin) in the same home");
            outln!(
                "next: openclaw --home {} gateway run",
                home.root().display()
            );
            Ok(())
        }
        Command::Gateway(GatewayCmd::Backup { file, with_logs }) => {
            let r = gateway::backup::backup(&home, &file, with_logs)
                .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
            let bytes: u64 = r.manifest.files.iter().map(|f| f.bytes).sum();
            outln!(
                "backed up gateway {} to {}: {} files, {} bytes, {} nodes, {} jobs{}",
                r.manifest.gateway,
                file.display(),
                r.manifest.files.len(),
                bytes,
                r.nodes,
                r.jobs,
                if with_logs {
                    ", with logs"
                } else {
                    " (no job logs; --with-logs adds them)"
                }
            );
            outln!("it holds the CA private key: store it encrypted and offline");
            Ok(())
        }
        Command::Gateway(GatewayCmd::Restore { file }) => {
            let r = gateway::backup::restore(&file, &home)
                .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
            outln!(
                "restored gateway {} ({} nodes, {} jobs, backed up {}) into {}",
                r.manifest.gateway,
                r.nodes,
                r.jobs,
                crate::output::ago(r.manifest.created_at, gateway::unix_now()),
                home.root().display()
            );
            outln!(
                "next: openclaw --home {} gateway run   (nodes dial {}; run it there, or point that name at this machine)",
                home.root().display(),
                gateway::backup::listen_of(&home)
                    .unwrap_or_else(|| "the address in its tokens".into())
            );
            Ok(())
        }
        Command::Gateway(GatewayCmd::MigrateState {
            to,
            password_file,
            ca_file,
        }) => {
            let target = gateway::config::StateConfig {
                url: Some(to.clone()),
                password_file,
                ca_file,
                pool_size: 2,
                ..Default::default()
            };
            let r = gateway::migrate::migrate_state(&home, &target)
                .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
            let rows: u64 = r.tables.iter().map(|(_, n)| n).sum();
            outln!("migrated {rows} rows into {}:", proto::redact::url(&to));
            for (table, n) in &r.tables {
                outln!("  {table:<14} {n}");
            }
            outln!(
                "gateway.toml now names it in [state]; {} is kept as it was (delete it once the gateway runs on PostgreSQL)",
                gateway::files::STATE
            );
            outln!(
                "next: openclaw --home {} gateway run",
                home.root().display()
            );
            Ok(())
        }
        Command::Gateway(GatewayCmd::Status { json }) => {
            let st = gateway::ha::status(&home).map_err(|e| {
                CliError::new(
                    exit::FAILURE,
                    format!("{e}; check [state] in gateway.toml and that the database runs"),
                )
            })?;
            if json {
                let text = crate::term::json(&st, false)
                    .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
                outln!("{text}");
                return Ok(());
            }
            match &st.url {
                None => outln!(
                    "state:      SQLite in {} (one gateway; no leader election)",
                    home.root().display()
                ),
                Some(url) => outln!(
                    "state:      PostgreSQL {url} (round trip {:.1} ms)",
                    st.db_ms
                ),
            }
            if let (Some(leader), Some(generation), Some(left)) =
                (&st.leader, st.generation, st.lease_left_ms)
            {
                if left >= 0 {
                    outln!(
                        "leader:     {leader} (generation {generation}; lease renews, {left} ms left)"
                    );
                } else {
                    outln!(
                        "leader:     none: {leader}'s lease (generation {generation}) lapsed {} ms ago; a standby takes over",
                        -left
                    );
                }
            } else if st.url.is_some() {
                outln!("leader:     none yet (start a gateway: 'openclaw gateway run')");
            }
            for gateway::ha::GatewayEntry {
                name,
                address: addr,
                seen_secs_ago: age,
            } in &st.gateways
            {
                let leads = st.leader.as_deref() == Some(name.as_str())
                    && st.lease_left_ms.is_some_and(|l| l >= 0);
                let role = match (leads, age) {
                    (true, _) => "leader".to_string(),
                    (false, Some(a)) if *a <= 10 => format!("standby (seen {a}s ago)"),
                    (false, Some(a)) => format!("not running? (last seen {a}s ago)"),
                    (false, None) => "never started".to_string(),
                };
                outln!("gateway:    {name:<20} {addr:<24} {role}");
            }
            Ok(())
        }
        Command::Gateway(GatewayCmd::Run { listen }) => {
            let gw = gateway::Gateway::start(&home, listen.as_deref(), terminated())
                .await
                .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
            // For a person at a terminal; services and log collectors get
            // the "gateway listening" log event instead.
            if crate::term::stderr_is_terminal() {
                errln!("gateway listening on {} (Ctrl-C to stop)", gw.addr());
            }
            gw.wait()
                .await
                .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))
        }
        Command::Token(TokenCmd::Create {
            ttl,
            uses,
            labels,
            auto_approve,
            max_gpus,
        }) => {
            let ttl = duration_arg("--ttl", &ttl)?;
            let labels = proto::names::parse_label_list(&labels)
                .map_err(|e| usage(format!("--labels: {e}")))?;
            match call(
                &home,
                Request::TokenCreate {
                    ttl_secs: ttl.as_secs().max(1),
                    uses,
                    labels,
                    auto_approve,
                    max_gpus,
                },
            )
            .await?
            {
                Response::TokenCreated { token, .. } => {
                    outln!("{token}");
                    Ok(())
                }
                r => Err(unexpected(r)),
            }
        }
        Command::Token(TokenCmd::List { json }) => match call(&home, Request::TokenList).await? {
            Response::Tokens(tokens) => {
                if json {
                    let v: Vec<_> = tokens
                        .iter()
                        .map(|t| {
                            serde_json::json!({
                                "id": t.id, "created_at": t.created_at, "expires_at": t.expires_at,
                                "uses_left": t.uses_left, "uses_total": t.uses_total, "labels": t.labels,
                                "auto_approve": t.auto_approve, "revoked": t.revoked, "max_gpus": t.max_gpus,
                            })
                        })
                        .collect();
                    print_json(&serde_json::Value::Array(v))
                } else {
                    crate::term::out(&output::tokens(&tokens, gateway::unix_now()));
                    Ok(())
                }
            }
            r => Err(unexpected(r)),
        },
        Command::Token(TokenCmd::Revoke { id }) => {
            done(call(&home, Request::TokenRevoke { id }).await?)
        }
        Command::Node(NodeCmd::Enroll {
            token,
            name,
            labels,
            gateway,
            wait,
            run_as,
            allow_jobs_as_agent_user,
        }) => {
            let wait = duration_arg("--wait", &wait)?;
            let labels = proto::names::parse_label_list(&labels)
                .map_err(|e| usage(format!("--labels: {e}")))?;
            let opts = node::enroll::EnrollOptions {
                token,
                name,
                labels,
                gateway,
                wait,
                poll_interval: Duration::from_millis(500),
                run_as,
                allow_jobs_as_agent_user,
            };
            let enrolled = node::enroll::enroll(&home, &opts, &mut |line| outln!("{line}")).await?;
            outln!(
                "enrolled {} ({}); certificate valid {}",
                enrolled.name,
                enrolled.fingerprint,
                output::until(enrolled.not_after, gateway::unix_now())
            );
            outln!("next: openclaw --home {} node run", home.root().display());
            Ok(())
        }
        Command::Node(NodeCmd::List { json }) => {
            let client = Client::connect(&home).await?;
            let nodes = client.all_nodes().await;
            // Free GPUs as routing counts them (an older gateway: plain).
            let health = match &nodes {
                Ok(n) => chatops::gpu_health(&client, n).await,
                Err(_) => Vec::new(),
            };
            // With a leader and standbys, every connected node is held by
            // the leader, which is the gateway that answered.
            let held_by = client.gateway_name();
            client.close().await;
            let nodes = nodes?;
            if json {
                let v: Vec<_> = nodes
                    .iter()
                    .map(|n| {
                        let mut j = node_json(n, proto::gpu_health_of(&health, &n.name));
                        if let (Some(obj), Some(gw)) = (j.as_object_mut(), &held_by)
                            && n.connection == "connected"
                        {
                            obj.insert("gateway".into(), serde_json::Value::String(gw.clone()));
                        }
                        j
                    })
                    .collect();
                print_json(&serde_json::Value::Array(v))
            } else {
                crate::term::out(&output::nodes(&nodes, &health, gateway::unix_now()));
                let several = mesh::home::LoadedCredential::load(&home)
                    .is_ok_and(|c| mesh::gateway_list(&c.gateway).len() > 1);
                if let (Some(gw), true) = (&held_by, several) {
                    let connected = nodes.iter().filter(|n| n.connection == "connected").count();
                    outln!("{connected} connected node(s) held by gateway {gw}");
                }
                Ok(())
            }
        }
        Command::Node(NodeCmd::Show { name, json }) => {
            let client = Client::connect(&home).await?;
            let shown = client.call(Request::NodeShow { name }).await;
            let health = match &shown {
                Ok(Response::Node(n)) => {
                    chatops::gpu_health(&client, std::slice::from_ref(n)).await
                }
                _ => Vec::new(),
            };
            client.close().await;
            match shown? {
                Response::Node(n) => {
                    let health = proto::gpu_health_of(&health, &n.name);
                    if json {
                        print_json(&node_json(&n, health))
                    } else {
                        crate::term::out(&output::node(&n, health, gateway::unix_now()));
                        Ok(())
                    }
                }
                r => Err(unexpected(r)),
            }
        }
        Command::Node(NodeCmd::Approve {
            name,
            fingerprint,
            labels,
            gpus,
        }) => {
            let labels = labels
                .map(|l| {
                    proto::names::parse_label_list(&l).map_err(|e| usage(format!("--labels: {e}")))
                })
                .transpose()?;
            done(
                call(
                    &home,
                    Request::NodeApprove {
                        name,
                        fingerprint,
                        labels,
                        gpus,
                    },
                )
                .await?,
            )
        }
        Command::Node(NodeCmd::Reject { name }) => {
            done(call(&home, Request::NodeReject { name }).await?)
        }
        Command::Gateway(GatewayCmd::Leave { name }) => {
            done(call(&home, Request::GatewayLeave { name }).await?)
        }
        Command::Node(NodeCmd::Release { name }) => {
            done(call(&home, Request::NodeRelease { name }).await?)
        }
        Command::Node(NodeCmd::Revoke { name }) => {
            done(call(&home, Request::NodeRevoke { name }).await?)
        }
        Command::Node(NodeCmd::Run {
            gateway,
            simulate_gpus,
            nvml_lib,
        }) => {
            let opts = node::agent::AgentOptions {
                gateway,
                simulate_gpus,
                nvml_lib,
                ..Default::default()
            };
            node::agent::run(&home, opts, terminated(), |_| {}).await?;
            Ok(())
        }
        Command::Whoami => match call(&home, Request::Whoami).await? {
            Response::Identity {
                name,
                role,
                namespace,
            } => {
                match namespace {
                    Some(ns) => outln!("{name} ({role}, speaks for {ns}/...)"),
                    None => outln!("{name} ({role})"),
                }
                Ok(())
            }
            r => Err(unexpected(r)),
        },
        Command::Lab { dir, keep } => lab::run(dir, keep).await,
        Command::Doctor { json } => crate::doctor::run(&home, json).await,
        // Handled in main before any runtime or home is needed.
        Command::Completions { .. } | Command::Man { .. } | Command::DocsCli => Ok(()),
        Command::Run(args) => jobs_cli::run(&home, args).await,
        Command::Cp(args) => crate::cp_cli::run_interruptible(&home, args).await,
        Command::Shell { node, cmd } => jobs_cli::shell(&home, node, cmd).await,
        Command::Forward { node, ports, bind } => {
            crate::forward_cli::run(&home, node, ports, bind).await
        }
        Command::Moltbot(MoltbotCmd::Run) => {
            let (path, text) = bot_config(
                &home,
                moltbot::CONFIG_FILE,
                moltbot::config::check_file_mode,
            )?;
            let cfg = moltbot::Config::parse(&text, &|k| std::env::var(k).ok())
                .map_err(|e| CliError::new(exit::USAGE, format!("{}: {e}", path.display())))?;
            moltbot::run(&home, cfg, terminated())
                .await
                .map_err(|e| CliError::new(exit::FAILURE, e))
        }
        Command::Wecom(WecomCmd::Run) => {
            // wecom.toml holds no secret (they come from the environment).
            let (path, text) = bot_config(&home, wecom::CONFIG_FILE, |mode, _| {
                chat::access::check_file_mode(mode, false, "")
            })?;
            let cfg = wecom::Config::parse(&text, &|k| std::env::var(k).ok())
                .map_err(|e| CliError::new(exit::USAGE, format!("{}: {e}", path.display())))?;
            wecom::run(&home, cfg, terminated())
                .await
                .map_err(|e| CliError::new(exit::FAILURE, e))
        }
        Command::Weixin(WeixinCmd::Login) => {
            let (path, text) = bot_config(&home, weixin::CONFIG_FILE, |mode, _| {
                chat::access::check_file_mode(mode, false, "")
            })?;
            let url = weixin::config::api_url(&text, &|k| std::env::var(k).ok())
                .map_err(|e| CliError::new(exit::USAGE, format!("{}: {e}", path.display())))?;
            let l = weixin::login::login(&home, url, &TerminalPrompt)
                .await
                .map_err(|e| CliError::new(exit::FAILURE, e))?;
            let ns = weixin::login::namespace_of(&l.bot_id)
                .map_err(|e| CliError::new(exit::FAILURE, e))?;
            outln!(
                "Logged in as WeChat bot {} (saved in {}).",
                l.bot_id,
                home.path(weixin::login::TOKEN_FILE).display()
            );
            if let Some(o) = &l.owner {
                outln!(
                    "Its owner is {o}: list them in {}'s allowed_users.",
                    weixin::CONFIG_FILE
                );
            }
            outln!(
                "Its gateway credential: openclaw client create NAME --role bot --namespace {ns} --out {}",
                home.root().display()
            );
            outln!("Then: openclaw --home {} weixin run", home.root().display());
            Ok(())
        }
        Command::Weixin(WeixinCmd::Run) => {
            // weixin.toml holds no secret (the token is in its own file).
            let (path, text) = bot_config(&home, weixin::CONFIG_FILE, |mode, _| {
                chat::access::check_file_mode(mode, false, "")
            })?;
            let cfg = weixin::Config::parse(&text, &|k| std::env::var(k).ok())
                .map_err(|e| CliError::new(exit::USAGE, format!("{}: {e}", path.display())))?;
            weixin::run(&home, cfg, terminated())
                .await
                .map_err(|e| CliError::new(exit::FAILURE, e))
        }
        Command::Chat {
            user,
            dry_run,
            message,
        } => crate::chat_cli::run(&home, user, dry_run, message).await,
        Command::Job(cmd) => jobs_cli::job(&home, cmd).await,
        Command::Usage { since, by, json } => {
            crate::usage_cli::usage(&home, &since, &by, json).await
        }
        Command::Client(cmd) => crate::clients_cli::run(&home, cmd).await,
        Command::Ca(cmd) => crate::clients_cli::ca(&home, cmd).await,
        Command::Dashboard {
            listen,
            auth_token_file,
            open,
        } => dashboard(home, &listen, auth_token_file, open).await,
    }
}

/// The terminal side of `openclaw weixin login`.
struct TerminalPrompt;

impl weixin::login::Prompt for TerminalPrompt {
    fn show(&self, text: &str) {
        outln!("{text}");
    }

    fn ask(&self, question: &str) -> Option<String> {
        crate::term::out(question);
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(n) if n > 0 => Some(line),
            _ => None,
        }
    }
}

/// A chat bot's config file in its home (empty when absent), after
/// `check_mode` (mode bits, text) passed: it decides who may run jobs.
fn bot_config(
    home: &mesh::Home,
    file: &str,
    check_mode: impl Fn(u32, &str) -> Result<(), String>,
) -> Result<(std::path::PathBuf, String), CliError> {
    let path = home.path(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(CliError::new(
                exit::FAILURE,
                format!("{}: {e}", path.display()),
            ));
        }
    };
    if let Ok(meta) = std::fs::metadata(&path) {
        use std::os::unix::fs::PermissionsExt as _;
        check_mode(meta.permissions().mode(), &text)
            .map_err(|e| CliError::new(exit::USAGE, format!("{}: {e}", path.display())))?;
    }
    Ok((path, text))
}

/// The stable JSON form of a node. `health`: each GPU's health
/// (`Request::GpuHealth`), empty from an older gateway: then the GPUs'
/// `health` is null and the free count the plain one.
fn node_json(n: &proto::NodeInfo, health: &[proto::GpuHealth]) -> serde_json::Value {
    let t = n.telemetry.as_ref();
    let counts = n.gpu_counts_with(health);
    let confirmed = n.confirmed_gpus().len();
    serde_json::json!({
        "name": n.name, "connection": n.connection, "health": n.health,
        "health_reason": n.health_reason, "labels": n.labels,
        "proposed_labels": n.proposed_labels, "max_gpus": n.max_gpus, "fingerprint": n.fingerprint,
        "last_seen": n.last_seen, "remote_addr": n.remote_addr, "cert_expires": n.cert_expires,
        "requested_at": n.requested_at, "heartbeat_age_ms": n.heartbeat_age_ms,
        "load1": t.map(|t| f64::from(t.load1_milli) / 1000.0),
        "mem_used": t.map(|t| t.mem_used), "mem_total": t.map(|t| t.mem_total),
        "running_jobs": t.map(|t| t.running_jobs),
        "gpu_source": t.map(|t| t.gpu_source.clone()),
        "gpu_error": t.and_then(|t| t.gpu_error.clone()),
        "gpus_simulated": t.is_some_and(|t| t.gpus.iter().any(|g| g.simulated)),
        // Free as routing counts them: confirmed, idle and usable.
        "gpus_confirmed": t.map(|_| counts.confirmed), "gpus_free": t.map(|_| counts.free),
        "gpus_not_free": n.gpu_note(health),
        "gpus": t.map(|t| t.gpus.iter().enumerate().map(|(i, g)| serde_json::json!({
            // Unknown readings are null, never 0.
            "index": g.index, "name": g.name, "uuid": g.uuid,
            "mem_used": g.mem().map(|m| m.0), "mem_total": g.mem().map(|m| m.1),
            "util_pct": g.util(), "temp_c": g.temp(),
            "job": g.job, "simulated": g.simulated,
            "health": health.get(i).map(proto::GpuHealth::word),
            "health_reason": health.get(i).and_then(proto::GpuHealth::reason),
            "free": i < confirmed && g.job.is_none() && health.get(i).is_none_or(proto::GpuHealth::usable),
        })).collect::<Vec<_>>()).unwrap_or_default(),
    })
}

pub(crate) fn done(r: Response) -> Result<(), CliError> {
    match r {
        Response::Done { message } => {
            outln!("{}", crate::term::field(&message));
            Ok(())
        }
        r => Err(unexpected(r)),
    }
}

/// Reads `--auth-token-file`: refused when group or others may read it,
/// like a private key. Length and characters are checked by
/// [`dashboard::check_options`].
fn read_token_file(path: &std::path::Path) -> Result<String, CliError> {
    use std::os::unix::fs::PermissionsExt as _;
    let cannot = |e: std::io::Error| {
        CliError::new(
            exit::FAILURE,
            format!("cannot read the token file {}: {e}", path.display()),
        )
    };
    let mode = std::fs::metadata(path)
        .map_err(cannot)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(usage(format!(
            "the token file {} has mode {mode:o}: others could read the dashboard's token. Run 'chmod 600 {}'",
            path.display(),
            path.display()
        )));
    }
    Ok(std::fs::read_to_string(path)
        .map_err(cannot)?
        .trim()
        .to_string())
}

async fn dashboard(
    home: Home,
    listen: &str,
    auth_token_file: Option<std::path::PathBuf>,
    open: bool,
) -> Result<(), CliError> {
    let listen: std::net::SocketAddr = listen.parse().map_err(|_| {
        usage(format!(
            "--listen {listen:?}: give an address and port, e.g. 127.0.0.1:7680"
        ))
    })?;
    let auth_token = match &auth_token_file {
        Some(path) => Some(read_token_file(path)?),
        None => None,
    };
    // Fail early, and clearly, if this home cannot reach the gateway.
    Client::connect(&home).await?.close().await;
    let opts = dashboard::Options {
        listen,
        auth_token,
        session: dashboard::guard::Lifetime::default(),
    };
    let d = dashboard::start(home, opts, terminated())
        .await
        .map_err(|e| match e {
            dashboard::DashboardError::Options(m) => usage(m),
            e => CliError::new(exit::FAILURE, e.to_string()),
        })?;
    // The base path is new at each start; it scopes the session cookie to
    // this dashboard (not a secret: it is in the browser's history).
    let url = d.url();
    outln!("dashboard at {url} (Ctrl-C stops it)");
    // The secret goes to standard error, like Jupyter's: the terminal of
    // whoever started it, not a pipe that collects the address.
    match &auth_token_file {
        Some(path) => errln!(
            "log in at {} with the token in {}",
            d.login_url(),
            path.display()
        ),
        None => errln!(
            "log in at {} with the token {} (new at each start; --auth-token-file FILE keeps one)",
            d.login_url(),
            d.token()
        ),
    }
    if open {
        let _ = std::process::Command::new("xdg-open").arg(&url).spawn();
    }
    d.wait().await;
    Ok(())
}
