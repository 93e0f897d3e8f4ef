//! `openclaw chat`: a chat message through the same grammar and gateway
//! path moltbot uses, with the bot's reply printed here.

use std::io::{BufRead as _, IsTerminal as _};

use chat::{Context, Intent, What};
use client::{Client, ClientError};
use mesh::Home;
use proto::{JobEvent, JobSpec, Request, Response};

use crate::commands::CliError;
use crate::term::{field, outln};
use crate::{exit, output};

fn fail(e: ClientError) -> CliError {
    CliError::new(exit::FAILURE, field(&e.to_string()))
}

async fn context(client: &Client) -> Result<Context, CliError> {
    match client.call(Request::ChatContext).await.map_err(fail)? {
        Response::ChatContext { nodes, jobs, roles } => Ok(Context {
            nodes,
            jobs,
            roles,
            interpreters: Context::default_interpreters(),
        }),
        r => Err(CliError::new(
            exit::FAILURE,
            format!("unexpected reply {r:?}"),
        )),
    }
}

fn spec(
    what: &What,
    node: &Option<String>,
    role: &Option<String>,
    gpus: Option<u32>,
    user: &Option<String>,
) -> JobSpec {
    chat::job_spec(
        what,
        node.as_deref(),
        role.as_deref(),
        gpus,
        user.as_deref(),
    )
}

/// The usage reply.
pub const HELP: &str = "I run jobs on lab nodes. Try:\n  run training on worker-gpu-01\n  run python train.py --epochs 3 on worker-gpu-01\n  run training (gpu)\n  start experiment exp42\n  nodes | status | status 17 | logs 17 | cancel 17 | approve 17 | deny 17 because ...";

/// `openclaw chat`.
pub async fn run(
    home: &Home,
    user: Option<String>,
    dry_run: bool,
    message: Vec<String>,
) -> Result<(), CliError> {
    let client = Client::connect(home).await.map_err(fail)?;
    let result = if message.is_empty() {
        repl(&client, &user).await
    } else {
        one(&client, &message.join(" "), &user, dry_run).await
    };
    client.close().await;
    result
}

/// An interactive prompt until end of input.
pub async fn repl(client: &Client, user: &Option<String>) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    loop {
        if interactive {
            crate::term::out("chat> ");
        }
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if matches!(line, "exit" | "quit") {
            return Ok(());
        }
        if let Err(e) = one(client, line, user, false).await {
            outln!("{}", e.message);
        }
    }
}

/// Handles one message; prints the reply.
pub async fn one(
    client: &Client,
    text: &str,
    user: &Option<String>,
    dry_run: bool,
) -> Result<(), CliError> {
    let ctx = context(client).await?;
    // Messages may be pasted from Slack, mentions and escapes included.
    let intent = chat::parse(&moltbot::plain_text(text), &ctx);
    if dry_run {
        let v = match &intent {
            Intent::Run {
                what,
                node,
                role,
                gpus,
            } => match client
                .call(Request::JobPreview(spec(what, node, role, *gpus, user)))
                .await
            {
                Ok(Response::Preview {
                    node,
                    argv,
                    named_job,
                    role,
                    decision,
                    approvers,
                    rule,
                }) => serde_json::json!({
                    "tool": "system.run", "host": "node", "node": node, "cmd": argv,
                    "named_job": named_job, "role": role,
                    "policy": { "decision": decision, "approvers": approvers, "rule": rule },
                }),
                Ok(r) => {
                    return Err(CliError::new(
                        exit::FAILURE,
                        format!("unexpected reply {r:?}"),
                    ));
                }
                Err(ClientError::Api(e)) => serde_json::json!({ "error": e.message }),
                Err(e) => return Err(fail(e)),
            },
            Intent::Clarify(q) => serde_json::json!({ "reply": q }),
            other => serde_json::json!({ "intent": format!("{other:?}") }),
        };
        crate::term::out_json(&v).map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
        return Ok(());
    }
    let call = |req| async { client.call(req).await };
    let reply = |r: Result<Response, ClientError>| match r {
        Ok(Response::Done { message }) => outln!("{}", field(&message)),
        Ok(r) => outln!("unexpected reply {r:?}"),
        Err(e) => outln!("{}", field(&e.to_string())),
    };
    match intent {
        Intent::Help => outln!("{HELP}"),
        Intent::Clarify(q) => outln!("{q}"),
        Intent::Nodes => match client.all_nodes().await {
            Ok(nodes) => crate::term::out(&output::nodes(&nodes, gateway::unix_now())),
            Err(e) => outln!("{}", field(&e.to_string())),
        },
        Intent::Status(None) => match call(Request::JobList {
            limit: 10,
            before: None,
            on_behalf_of: user.clone(),
        })
        .await
        {
            Ok(Response::Jobs(jobs)) => crate::term::out(&output::jobs(&jobs, gateway::unix_now())),
            r => reply(r),
        },
        Intent::Status(Some(id)) => match call(Request::JobShow {
            id,
            on_behalf_of: user.clone(),
        })
        .await
        {
            Ok(Response::Job(j)) => crate::term::out(&output::job(&j, gateway::unix_now())),
            r => reply(r),
        },
        Intent::Logs(id) => {
            let read = client::read_log(client, id, user.clone(), [0, 0], |_, data| {
                crate::term::raw_out(data)
            })
            .await;
            if let Err(e) = read {
                outln!("{}", field(&e.to_string()));
            }
        }
        Intent::Cancel(id) => reply(
            call(Request::JobCancel {
                id,
                on_behalf_of: user.clone(),
            })
            .await,
        ),
        Intent::Approve(id) => reply(
            call(Request::JobApprove {
                id,
                plan_digest: None,
                on_behalf_of: user.clone(),
            })
            .await,
        ),
        Intent::Deny(id, reason) => reply(
            call(Request::JobDeny {
                id,
                reason,
                on_behalf_of: user.clone(),
            })
            .await,
        ),
        Intent::RunAll { what, role } => {
            crate::fanout_cli::print_fanout(client, spec(&what, &None, &role, None, user), "")
                .await?;
        }
        Intent::Run {
            what,
            node,
            role,
            gpus,
        } => {
            let mut recv = client
                .open(Request::JobRun(spec(&what, &node, &role, gpus, user)))
                .await
                .map_err(fail)?;
            loop {
                match client.next_event(&mut recv).await {
                    Ok(Some(JobEvent::Accepted(j))) => match j.state.as_str() {
                        "awaiting-approval" => {
                            outln!(
                                "job {} on {} awaits approval by {}",
                                j.id,
                                j.node,
                                j.approvers.join(" or ")
                            );
                            return Ok(());
                        }
                        _ => outln!("job {} on {}: {}", j.id, j.node, output::argv_line(&j.argv)),
                    },
                    Ok(Some(JobEvent::Output { data, .. })) => crate::term::raw_out(&data),
                    Ok(Some(JobEvent::End(j))) => {
                        outln!(
                            "job {} {}{}",
                            j.id,
                            j.state,
                            j.exit_code
                                .map(|c| format!(", exit code {c}"))
                                .unwrap_or_default()
                        );
                        return Ok(());
                    }
                    Ok(Some(JobEvent::Error(e))) => {
                        outln!("{}", field(&e.message));
                        return Ok(());
                    }
                    Ok(Some(JobEvent::State(_))) => {}
                    Ok(None) | Err(_) => {
                        return Err(CliError::new(exit::RUN_CONNECTION, "lost the gateway"));
                    }
                }
            }
        }
    }
    Ok(())
}
