//! `openclaw lab`: a gateway and two nodes on 127.0.0.1, in this process,
//! talking real QUIC with real certificates, each party in its own home.
//! It stops only what it started.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::Client;
use mesh::Home;
use proto::{Request, Response};
use tokio::sync::watch;

use crate::commands::CliError;
use crate::term::outln;
use crate::{exit, output};

fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::new(exit::FAILURE, format!("lab: {e}"))
}

/// A lab node: name and labels.
const NODES: [(&str, &str); 2] = [("worker-gpu-01", "gpu"), ("worker-cpu-01", "cpu")];

pub async fn run(dir: Option<PathBuf>, keep: bool) -> Result<(), CliError> {
    let (root, _tmp) = match dir {
        Some(d) => (d, None),
        None if std::path::Path::new("certs").is_dir() => (
            PathBuf::from("certs/lab").join(format!("{}", gateway::unix_now())),
            None,
        ),
        None => {
            let t = tempfile::Builder::new()
                .prefix("openclaw-lab-")
                .tempdir()
                .map_err(fail)?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    // The lab removes what it made, never what was there: a --dir that
    // holds anything is refused before anything is written.
    if root
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
    {
        return Err(CliError::new(
            crate::exit::USAGE,
            format!(
                "lab: {} is not empty; give --dir a new or empty directory (the lab removes its homes \
                 when it stops, unless --keep)",
                root.display()
            ),
        ));
    }
    mesh::home::create_private_dir(&root).map_err(fail)?;
    // Absolute, so the commands the lab prints work from any directory.
    let root = root.canonicalize().map_err(fail)?;
    // Ctrl-C stops the lab as `exit` does: its processes, then its homes.
    // The handler is in place from here on, so a Ctrl-C while it starts is
    // not lost either: the prompt sees it and stops at once.
    let (int_tx, int_rx) = watch::channel(false);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = int_tx.send(true);
        }
    });
    let result = lab(&root, int_rx).await;
    ctrl_c.abort();
    if !keep {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        outln!("lab homes kept in {}", root.display());
    }
    result
}

async fn lab(
    root: &std::path::Path,
    mut interrupted: watch::Receiver<bool>,
) -> Result<(), CliError> {
    let gw_home = Home::new(root.join("gateway"));
    outln!("== starting a gateway in {}", gw_home.root().display());
    gateway::init(&gw_home, "127.0.0.1:0", "lab-gateway", None).map_err(fail)?;
    let cfg_path = gw_home.path(gateway::files::CONFIG);
    let mut cfg = std::fs::read_to_string(&cfg_path).map_err(fail)?;
    cfg.push_str(LAB_JOBS);
    // The lab serves metrics; a real gateway has them off until configured.
    cfg = cfg.replace("listen = \"\"", "listen = \"127.0.0.1:0\"");
    std::fs::write(&cfg_path, cfg).map_err(fail)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let gw = gateway::Gateway::start(&gw_home, None, stopped(stop_rx.clone()))
        .await
        .map_err(fail)?;
    outln!("   listening on {}", gw.addr());
    if let Ok(m) = std::fs::read_to_string(gw_home.path(gateway::files::METRICS_ADDR)) {
        outln!("   metrics at http://{}/metrics", m.trim());
    }
    let admin = Arc::new(Client::connect(&gw_home).await.map_err(fail)?);

    let mut agents = Vec::new();
    for (i, (name, label)) in NODES.iter().enumerate() {
        let home = Home::new(root.join(name));
        // The first node goes through manual approval, the second uses an
        // auto-approve token: both enrollment paths, as a user would run them.
        let auto = i == 1;
        let token = match admin
            .call(Request::TokenCreate {
                ttl_secs: 600,
                uses: 1,
                labels: vec![label.to_string()],
                auto_approve: auto,
                max_gpus: Some(if *label == "gpu" { 2 } else { 0 }),
            })
            .await
            .map_err(fail)?
        {
            Response::TokenCreated { token, .. } => token,
            r => return Err(fail(format!("unexpected reply {r:?}"))),
        };
        outln!(
            "== enrolling {name} (label {label}, {})",
            if auto {
                "auto-approve token"
            } else {
                "manual approval"
            }
        );
        let opts = node::enroll::EnrollOptions {
            token,
            name: name.to_string(),
            labels: vec![],
            gateway: None,
            wait: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            run_as: None,
            // A throwaway lab on one machine: jobs run as you.
            allow_jobs_as_agent_user: true,
        };
        let enroll_home = home.clone();
        let enrolling = tokio::spawn(async move {
            node::enroll::enroll(&enroll_home, &opts, &mut |line| outln!("   {line}")).await
        });
        if !auto {
            wait_for(&admin, name, "pending").await?;
            match admin
                .call(Request::NodeApprove {
                    name: name.to_string(),
                    fingerprint: None,
                    labels: None,
                    gpus: None,
                })
                .await
                .map_err(fail)?
            {
                Response::Done { message } => outln!("   admin: {message}"),
                r => return Err(fail(format!("unexpected reply {r:?}"))),
            }
        }
        let enrolled = enrolling.await.map_err(fail)?.map_err(fail)?;
        outln!("   enrolled {} ({})", enrolled.name, enrolled.fingerprint);
        // A directory `openclaw cp` may use on this node (node.toml
        // allowed_paths, none by default).
        let scratch = root.join("scratch").join(name);
        std::fs::create_dir_all(&scratch).map_err(fail)?;
        let mut cfg = mesh::home::NodeConfig::load(&home).map_err(fail)?;
        cfg.policy.allowed_paths = vec![scratch.display().to_string()];
        cfg.write(&home).map_err(fail)?;
        outln!(
            "   copies allowed under {} (node.toml allowed_paths)",
            scratch.display()
        );
        let rx = stop_rx.clone();
        // The GPU node offers two simulated GPUs, so role routing and
        // CUDA_VISIBLE_DEVICES work on machines without NVIDIA hardware.
        let opts = node::agent::AgentOptions {
            simulate_gpus: if *label == "gpu" { 2 } else { 0 },
            ..Default::default()
        };
        agents.push(tokio::spawn(async move {
            node::agent::run(&home, opts, stopped(rx), |_| {}).await
        }));
    }
    for (name, _) in NODES {
        wait_for(&admin, name, "connected").await?;
    }
    outln!("== openclaw node list");
    let nodes = admin.all_nodes().await.map_err(fail)?;
    let health = chatops::gpu_health(admin.as_ref(), &nodes).await;
    crate::term::out(&output::nodes(&nodes, &health, gateway::unix_now()));
    let admin_gw = client::Gateway::with_client(gw_home.clone(), admin.clone());
    for (title, spec) in sample_jobs() {
        outln!("== openclaw run {title}");
        let code = run_sample(&admin_gw, spec).await?;
        outln!("   exit code {code}");
    }
    outln!("== openclaw run --all -- sh -c 'echo up on $OPENCLAW_NODE'");
    let spec = proto::JobSpec {
        argv: vec!["sh".into(), "-c".into(), "echo up on $OPENCLAW_NODE".into()],
        ..Default::default()
    };
    crate::fanout_cli::print_fanout(&admin_gw, spec, "   | ").await?;
    // The dashboard, on a free loopback port, until the lab stops.
    let (dash_tx, dash_rx) = tokio::sync::oneshot::channel::<()>();
    let dash = dashboard::start(
        gw_home.clone(),
        dashboard::Options {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            auth_token: None,
            session: dashboard::guard::Lifetime::default(),
        },
        async {
            let _ = dash_rx.await;
        },
    )
    .await
    .map_err(fail)?;
    // The dashboard needs its token even on loopback (any local process
    // can reach the port): it goes to a private file in the lab's gateway
    // home, and the path to the terminal.
    let token_file = gw_home.path(DASHBOARD_TOKEN);
    gw_home
        .write_private(DASHBOARD_TOKEN, format!("{}\n", dash.token()).as_bytes())
        .map_err(fail)?;
    outln!("== dashboard at {}", dash.url());
    outln!(
        "   log in at {} with the token in {}",
        dash.login_url(),
        token_file.display()
    );
    outln!("== from another terminal, while the lab runs:");
    outln!("   {} node list", cli_for(&gw_home));
    // The chat prompt speaks as a chat user, through a bot credential of
    // the lab's own chat namespace, under the safe defaults: its jobs wait
    // for the lab's admin to approve them, as a Slack user's would.
    let chat_home = Home::new(root.join(LAB_BOT));
    crate::clients_cli::issue(
        &gw_home,
        LAB_BOT,
        proto::Role::Bot,
        Some(LAB_NAMESPACE.into()),
        None,
        chat_home.root(),
    )
    .await?;
    let bot = Arc::new(Client::connect(&chat_home).await.map_err(fail)?);
    let bot = client::Gateway::with_client(chat_home.clone(), bot);
    let you = format!("{LAB_NAMESPACE}/{LAB_USER}");
    let cli = cli_for(&gw_home);
    let approver = match admin.call(Request::Whoami).await.map_err(fail)? {
        Response::Identity { name, .. } => name,
        r => return Err(fail(format!("unexpected reply {r:?}"))),
    };
    outln!("== chat: talk to the lab here as you would to @moltbot in Slack");
    outln!("   (try: help, nodes, run hello, run training on worker-gpu-01,");
    outln!("   run nvidia-smi on all gpu nodes, jobs, status N).");
    outln!("   You are the chat user {you}. Chat jobs wait for an approver");
    outln!("   (policy.chat_default = \"approve\", the safe default); the lab's approver");
    outln!("   is {approver}: say 'approve N' here to approve job N as {approver}, or run");
    outln!("   {cli} job approve N");
    outln!(
        "   From another terminal: {cli} cp FILE worker-cpu-01:{}/",
        root.join("scratch").join("worker-cpu-01").display()
    );
    outln!("   Type exit or press Ctrl-D to stop.");
    let prompt = crate::chat_cli::Prompt {
        gw: &bot,
        user: Some(you),
        approver: Some(crate::chat_cli::Approver {
            client: &admin,
            name: approver,
            cli,
        }),
    };
    // Messages come from standard input, a terminal or not; end of input
    // (at once for /dev/null) stops the lab.
    if !*interrupted.borrow() {
        tokio::select! {
            _ = crate::chat_cli::repl(&prompt) => {}
            _ = interrupted.wait_for(|i| *i) => outln!("\n== interrupted"),
        }
    }
    bot.close().await;
    outln!("== stopping the lab");
    let _ = dash_tx.send(());
    dash.wait().await;
    admin.close().await;
    let _ = stop_tx.send(true);
    for agent in agents {
        let _ = agent.await;
    }
    let _ = gw.wait().await;
    Ok(())
}

/// The lab's chat bot credential (and its home under the lab's root).
const LAB_BOT: &str = "lab-chat";
/// The chat namespace of the lab's prompt: its own kind, so that its user
/// is never taken for a Slack or WeCom user in policy or the audit log.
const LAB_NAMESPACE: &str = "lab:LAB";
/// The chat user the lab's prompt speaks as.
const LAB_USER: &str = "you";

/// The file in the lab's gateway home that holds the dashboard's token.
const DASHBOARD_TOKEN: &str = "dashboard.token";

/// Named jobs the lab adds to its gateway.toml.
const LAB_JOBS: &str = r#"
# Added by `openclaw lab`.
[jobs.hello]
command = ["sh", "-c", "echo hello from $OPENCLAW_NODE"]
role = "cpu"
aliases = ["say hello"]
description = "Print a greeting on a CPU node"

[jobs.training]
command = ["sh", "-c", "for e in 1 2 3; do echo \"epoch $e/3 on $OPENCLAW_NODE, GPUs ${CUDA_VISIBLE_DEVICES:-none}\"; sleep 0.2; done; echo trained-on-$OPENCLAW_NODE"]
role = "gpu"
gpus = 1
aliases = ["train model"]
description = "A short training run: three epochs on one GPU"

[jobs.exp42]
command = ["sh", "-c", "echo experiment 42 on $OPENCLAW_NODE with GPUs ${CUDA_VISIBLE_DEVICES:-none}"]
role = "gpu"
gpus = 1
description = "Experiment 42 on a GPU node"
"#;

fn sample_jobs() -> Vec<(&'static str, proto::JobSpec)> {
    let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            "--node worker-cpu-01 -- uname -sm",
            proto::JobSpec {
                node: Some("worker-cpu-01".into()),
                argv: argv(&["uname", "-sm"]),
                ..Default::default()
            },
        ),
        (
            "--role gpu -- sh -c 'echo GPUs $CUDA_VISIBLE_DEVICES on $OPENCLAW_NODE; exit 3'",
            proto::JobSpec {
                role: Some("gpu".into()),
                argv: argv(&[
                    "sh",
                    "-c",
                    "echo GPUs $CUDA_VISIBLE_DEVICES on $OPENCLAW_NODE; exit 3",
                ]),
                ..Default::default()
            },
        ),
        (
            "--job hello",
            proto::JobSpec {
                job: Some("hello".into()),
                ..Default::default()
            },
        ),
        (
            "--job training --node worker-gpu-01",
            proto::JobSpec {
                job: Some("training".into()),
                node: Some("worker-gpu-01".into()),
                ..Default::default()
            },
        ),
    ]
}

/// Runs a sample job and prints it, followed by `client::follow_job`.
async fn run_sample(gw: &client::Gateway, spec: proto::JobSpec) -> Result<String, CliError> {
    let c = gw.get().await.map_err(fail)?;
    let r = c.open(Request::JobRun(spec)).await.map_err(fail)?;
    let mut announced = false;
    let sink = |f: client::Followed<'_>| match f {
        client::Followed::State(info) if !announced => {
            announced = true;
            outln!("   job {} on {}", info.id, info.node);
        }
        client::Followed::Output(_, data) => {
            for line in String::from_utf8_lossy(data).lines() {
                outln!("   | {line}");
            }
        }
        _ => {}
    };
    let start = client::Start::Run(c, r);
    let info = client::follow_job(gw, start, &client::FollowOptions::default(), sink)
        .await
        .map_err(fail)?;
    Ok(info
        .exit_code
        .map(|c| c.to_string())
        .unwrap_or_else(|| info.state.clone()))
}

async fn wait_for(admin: &Client, name: &str, connection: &str) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Before its request arrives the node is not known at all.
        if admin
            .all_nodes()
            .await
            .map_err(fail)?
            .iter()
            .any(|n| n.name == name && n.connection == connection)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "{name} did not become {connection} within 20s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The command line that reaches this lab as its admin, as it can be
/// pasted: this very binary by its absolute path (after `cargo run` there is
/// no `openclaw` on PATH) and the absolute home.
fn cli_for(home: &Home) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "openclaw".into());
    format!("{exe} --home {}", home.root().display())
}
