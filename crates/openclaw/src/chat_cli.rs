//! `openclaw chat`: a chat message through the same grammar and gateway
//! path moltbot uses, with the bot's reply printed here: the same chat
//! renderers (`chat::render`), with the terminal's escape as the markup.

use std::io::{BufRead as _, IsTerminal as _};

use chat::render::{self, Markup};
use chat::{Context, Intent, What};
use client::{Client, ClientError};
use mesh::Home;
use proto::{JobEvent, JobSpec, JobState, Request, Response};

use crate::commands::CliError;
use crate::exit;
use crate::term::{field, outln};

fn fail(e: ClientError) -> CliError {
    CliError::new(exit::FAILURE, field(&e.to_string()))
}

/// The terminal as a chat platform: every value another party wrote goes
/// through [`field`] (the CLI's one escape), times are UTC.
struct Term;

impl Markup for Term {
    fn escape(&self, s: &str) -> String {
        field(s)
    }

    fn mention(&self, identity: &str) -> String {
        field(identity)
    }
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

/// Who a prompt speaks as, and who approves at it.
pub struct Prompt<'a> {
    /// The connection messages go through: a bot's, acting for `user`, or
    /// an admin's acting as itself.
    pub client: &'a Client,
    /// The chat user a bot acts for.
    pub user: Option<String>,
    /// The lab's approver: `approve N` and `deny N` typed at the prompt
    /// act as it, and a job held for approval says how to reach it.
    pub approver: Option<Approver<'a>>,
}

/// An approver at a prompt (the lab's admin).
pub struct Approver<'a> {
    /// Its connection.
    pub client: &'a Client,
    /// Its identity, as policy names approvers (`admin`).
    pub name: String,
    /// The command line that reaches the gateway as it from another
    /// terminal, as it can be pasted.
    pub cli: String,
}

/// `openclaw chat`.
pub async fn run(
    home: &Home,
    user: Option<String>,
    dry_run: bool,
    message: Vec<String>,
) -> Result<(), CliError> {
    let client = Client::connect(home).await.map_err(fail)?;
    let p = Prompt {
        client: &client,
        user,
        approver: None,
    };
    let result = if message.is_empty() {
        repl(&p).await
    } else {
        one(&p, &message.join(" "), dry_run).await
    };
    client.close().await;
    result
}

/// An interactive prompt until end of input.
pub async fn repl(p: &Prompt<'_>) -> Result<(), CliError> {
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
        if let Err(e) = one(p, line, false).await {
            outln!("{}", e.message);
        }
    }
}

/// What to say when job `id` waits for an approver.
fn awaiting_hint(p: &Prompt<'_>, id: u64) {
    if let Some(a) = &p.approver {
        outln!(
            "  chat jobs wait for an approver (policy.chat_default = \"approve\"); the lab's is {}:",
            field(&a.name)
        );
        outln!(
            "  say 'approve {id}' (or 'deny {id} because ...') here to decide as {}, or from another terminal:",
            field(&a.name)
        );
        outln!("  {} job approve {id}", a.cli);
    }
}

/// Prints a job's events from `recv` until it ends, or until it waits for
/// an approver (then says so).
async fn print_job(
    p: &Prompt<'_>,
    client: &Client,
    mut recv: client::RecvStream,
) -> Result<(), CliError> {
    loop {
        match client.next_event(&mut recv).await {
            Ok(Some(JobEvent::Accepted(j) | JobEvent::State(j)))
                if j.is(JobState::AwaitingApproval) =>
            {
                outln!(
                    "job {} on {} awaits approval by {}",
                    j.id,
                    field(&j.node),
                    field(&j.approvers.join(" or "))
                );
                awaiting_hint(p, j.id);
                return Ok(());
            }
            Ok(Some(JobEvent::Accepted(j))) => outln!(
                "job {} on {}: {}",
                j.id,
                field(&j.node),
                crate::output::argv_line(&j.argv)
            ),
            Ok(Some(JobEvent::Output { data, .. })) => crate::term::raw_out(&data),
            Ok(Some(JobEvent::End(j))) => {
                outln!(
                    "job {} {}{}",
                    j.id,
                    field(&j.state),
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

/// After the prompt's approver approved job `id`: follows it (or the
/// fan-out it belongs to) as the chat user, to its end.
async fn follow_approved(p: &Prompt<'_>, id: u64) -> Result<(), CliError> {
    let job = match p
        .client
        .call(Request::JobShow {
            id,
            on_behalf_of: p.user.clone(),
        })
        .await
    {
        Ok(Response::Job(j)) => j,
        Ok(_) => return Ok(()),
        Err(e) => {
            outln!("{}", chatops::job_error(id, &e, &Term));
            return Ok(());
        }
    };
    if let Some(fan) = job.fanout {
        return crate::fanout_cli::follow_fanout(p.client, fan, p.user.clone(), "").await;
    }
    let recv = p
        .client
        .open(Request::JobAttach {
            id,
            follow: true,
            stdout_from: 0,
            stderr_from: 0,
            on_behalf_of: p.user.clone(),
        })
        .await
        .map_err(fail)?;
    print_job(p, p.client, recv).await
}

/// Handles one message; prints the reply.
pub async fn one(p: &Prompt<'_>, text: &str, dry_run: bool) -> Result<(), CliError> {
    let client = p.client;
    let user = &p.user;
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
    let m = &Term;
    let now = chatops::unix_now();
    let call = |req| async { client.call(req).await };
    let reply = |id: u64, r: Result<Response, ClientError>| match r {
        Ok(Response::Done { message }) => outln!("{}", field(&message)),
        Ok(r) => outln!("unexpected reply {r:?}"),
        Err(e) => outln!("{}", chatops::job_error(id, &e, m)),
    };
    match intent {
        Intent::Help => {
            let h = render::HelpFor {
                jobs: ctx.jobs.iter().collect(),
                nodes: &ctx.nodes,
                roles: &ctx.roles,
                fan_out: chat::FanOut::Any,
            };
            outln!("{}", render::help(&h, m));
        }
        Intent::Clarify(q) => outln!("{}", field(&q)),
        Intent::Nodes(page) => match chatops::node_page(client, page).await {
            Ok((shown, total)) => outln!("{}", render::nodes(&shown, page, total, now, m)),
            Err(e) => outln!("{}", field(&e.to_string())),
        },
        Intent::Jobs(page) => match chatops::job_page(client, user.clone(), page).await {
            Ok((jobs, more)) => outln!("{}", render::jobs(&jobs, page, more, now, m)),
            Err(e) => outln!("{}", field(&e.to_string())),
        },
        Intent::Status(id) => match call(Request::JobShow {
            id,
            on_behalf_of: user.clone(),
        })
        .await
        {
            Ok(Response::Job(j)) => outln!("{}", render::status(&j, now, m)),
            r => reply(id, r),
        },
        Intent::Logs(id) => {
            let read = client::read_log(client, id, user.clone(), [0, 0], |_, data| {
                crate::term::raw_out(data)
            })
            .await;
            if let Err(e) = read {
                outln!("{}", chatops::job_error(id, &e, m));
            }
        }
        Intent::Cancel(id) => reply(
            id,
            call(Request::JobCancel {
                id,
                on_behalf_of: user.clone(),
            })
            .await,
        ),
        Intent::Approve(id) => match &p.approver {
            // The lab: its approver decides, and the prompt follows the
            // job it released.
            Some(a) => {
                let r = a
                    .client
                    .call(Request::JobApprove {
                        id,
                        plan_digest: None,
                        on_behalf_of: None,
                    })
                    .await;
                let approved = matches!(r, Ok(Response::Done { .. }));
                outln!("as {}:", field(&a.name));
                reply(id, r);
                if approved {
                    follow_approved(p, id).await?;
                }
            }
            None => reply(
                id,
                call(Request::JobApprove {
                    id,
                    plan_digest: None,
                    on_behalf_of: user.clone(),
                })
                .await,
            ),
        },
        Intent::Deny(id, reason) => {
            let (c, on_behalf_of) = match &p.approver {
                Some(a) => {
                    outln!("as {}:", field(&a.name));
                    (a.client, None)
                }
                None => (client, user.clone()),
            };
            reply(
                id,
                c.call(Request::JobDeny {
                    id,
                    reason,
                    on_behalf_of,
                })
                .await,
            );
        }
        Intent::RunAll { what, role } => {
            if let Some(first) =
                crate::fanout_cli::print_fanout(client, spec(&what, &None, &role, None, user), "")
                    .await?
            {
                awaiting_hint(p, first);
            }
        }
        Intent::Run {
            what,
            node,
            role,
            gpus,
        } => {
            let recv = client
                .open(Request::JobRun(spec(&what, &node, &role, gpus, user)))
                .await
                .map_err(fail)?;
            print_job(p, client, recv).await?;
        }
    }
    Ok(())
}
