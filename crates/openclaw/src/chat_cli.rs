//! `openclaw chat`: a chat message through the same grammar, the same
//! decision (`chatops::dispatch`, what every chat front end shares) and
//! the same renderers (`chat::render`) the bots use, with the terminal's
//! escape as the markup. Only showing a running job is the terminal's own:
//! its output streams here as `openclaw run` streams it, followed by
//! `client::follow_job` and `client::follow_fanout`, which resume after a
//! reconnect.

use std::io::{BufRead as _, IsTerminal as _};

use std::sync::Arc;

use chat::render::Markup;
use chat::{Intent, What};
use chatops::Action;
use client::{Client, ClientError, FollowError, FollowOptions, Followed, Gateway, Start};
use mesh::Home;
use proto::{JobInfo, JobSpec, JobState, Request, Response};

use crate::commands::CliError;
use crate::exit;
use crate::term::{field, outln};

fn fail(e: ClientError) -> CliError {
    CliError::new(exit::FAILURE, field(&e.to_string()))
}

/// The longest answer the terminal takes (a log's `logs N` snippet).
const TERM_MAX: usize = 64 * 1024;

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
    /// The gateway messages go through: a bot's credential, acting for
    /// `user`, or an admin's acting as itself.
    pub gw: &'a Gateway,
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
    let gw = Gateway::with_client(home.clone(), Arc::new(client));
    let p = Prompt {
        gw: &gw,
        user,
        approver: None,
    };
    let result = if message.is_empty() {
        repl(&p).await
    } else {
        one(&p, &message.join(" "), dry_run).await
    };
    gw.close().await;
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

/// Follows a job from `start` (through `client::follow_job`, which
/// resumes after a reconnect) and prints it until it ends, or until it
/// waits for an approver (then says so).
async fn print_job(p: &Prompt<'_>, start: Start) -> Result<(), CliError> {
    let held: std::sync::Mutex<Option<JobInfo>> = std::sync::Mutex::new(None);
    let wake = tokio::sync::Notify::new();
    let opts = FollowOptions {
        on_behalf_of: p.user.clone(),
        ..Default::default()
    };
    let mut announced = false;
    let sink = |f: Followed<'_>| match f {
        Followed::State(j) if j.is(JobState::AwaitingApproval) => {
            *chatops::lock(&held) = Some(j.clone());
            wake.notify_one();
        }
        Followed::State(j) if !announced => {
            announced = true;
            outln!(
                "job {} on {}: {}",
                j.id,
                field(&j.node),
                crate::output::argv_line(&j.argv)
            );
        }
        Followed::Output(_, data) => crate::term::raw_out(data),
        Followed::Reconnecting { id, why } => {
            outln!(
                "(lost the gateway while following job {id}: {}; reconnecting)",
                field(why)
            )
        }
        Followed::State(_) | Followed::Resumed { .. } => {}
    };
    let follow = client::follow_job(p.gw, start, &opts, sink);
    tokio::select! {
        end = follow => match end {
            Ok(j) => outln!(
                "job {} {}{}",
                j.id,
                field(&j.state),
                j.exit_code
                    .map(|c| format!(", exit code {c}"))
                    .unwrap_or_default()
            ),
            Err(FollowError::Api(e)) => outln!("{}", field(&e.message)),
            Err(e) => return Err(CliError::new(exit::RUN_CONNECTION, field(&e.to_string()))),
        },
        () = wake.notified() => {
            if let Some(j) = chatops::lock(&held).take() {
                outln!(
                    "job {} on {} awaits approval by {}",
                    j.id,
                    field(&j.node),
                    field(&j.approvers.join(" or "))
                );
                awaiting_hint(p, j.id);
            }
        }
    }
    Ok(())
}

/// After the prompt's approver approved job `id`: follows it (or the
/// fan-out it belongs to) as the chat user, to its end.
async fn follow_approved(p: &Prompt<'_>, id: u64) -> Result<(), CliError> {
    let job = match p
        .gw
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
        return crate::fanout_cli::follow_fanout(p.gw, fan, p.user.clone(), "").await;
    }
    print_job(p, Start::Attach(id)).await
}

/// Handles one message; prints the reply.
pub async fn one(p: &Prompt<'_>, text: &str, dry_run: bool) -> Result<(), CliError> {
    let client = p.gw;
    let user = &p.user;
    let ctx = chatops::context(client, &Term)
        .await
        .map_err(|say| CliError::new(exit::FAILURE, say))?;
    // Messages may be pasted from Slack, mentions and escapes included.
    let intent = chat::parse(&moltbot::plain_text(text), &ctx);
    if dry_run {
        let v = match &intent {
            Intent::Run {
                what,
                node,
                role,
                gpus,
                ..
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
    let reply = |id: u64, r: Result<Response, ClientError>| match r {
        Ok(Response::Done { message }) => outln!("{}", field(&message)),
        Ok(r) => outln!("unexpected reply {r:?}"),
        Err(e) => outln!("{}", chatops::job_error(id, &e, m)),
    };
    // The lab's approver decides at its prompt (as itself, not as the
    // chat user), and the prompt then follows what it released.
    match (&intent, &p.approver) {
        (Intent::Approve(id), Some(a)) => {
            let id = *id;
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
            return Ok(());
        }
        (Intent::Deny(id, reason), Some(a)) => {
            outln!("as {}:", field(&a.name));
            let r = a
                .client
                .call(Request::JobDeny {
                    id: *id,
                    reason: reason.clone(),
                    on_behalf_of: None,
                })
                .await;
            reply(*id, r);
            return Ok(());
        }
        _ => {}
    }
    // The terminal's access is open: the gateway's policy decides.
    let asker = chatops::Asker {
        user: user.as_deref().unwrap_or(""),
        who: user.as_deref(),
        event: "",
    };
    let access = chat::Access::default();
    match chatops::dispatch(p.gw, &access, asker, &ctx, intent, m, TERM_MAX).await {
        Action::Say(text) => outln!("{text}"),
        Action::Run(spec, options) => {
            let c = p.gw.get().await.map_err(fail)?;
            let req = proto::JobRequest {
                spec,
                follow: proto::Follow::Attached,
                options,
            }
            .into_request();
            let r = c.open(req).await.map_err(fail)?;
            print_job(p, Start::Run(c, r)).await?;
        }
        Action::RunAll(spec) => {
            if let Some(first) = crate::fanout_cli::print_fanout(p.gw, spec, "").await? {
                awaiting_hint(p, first);
            }
        }
    }
    Ok(())
}
