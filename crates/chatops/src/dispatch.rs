//! What a chat message comes to: the one decision every chat front end
//! shares (the bots' [`crate::Engine`] and `openclaw chat`). Given the
//! parsed [`Intent`], [`dispatch`] checks the user's limits, makes the
//! gateway calls and renders the answer, or hands back the job or
//! fan-out to run; only showing a running job is left to the front end
//! (a live message in a chat, a stream on a terminal).

use chat::render::{self, Markup};
use chat::{Access, Intent};
use client::ClientError;
use proto::{JobSpec, Request, Response};

use crate::api::{Api, Call, gpu_health, job_page, node_page};
use crate::{call_error, job_error, unix_now};

/// Who asks, as the front end knows them.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The platform user, as [`Access`] names users (the terminal: any
    /// name, since its access is open).
    pub user: &'a str,
    /// The chat identity the gateway acts for (`slack:T…/U…`); `None`
    /// when the credential acts as itself (an admin at `openclaw chat`).
    pub who: Option<&'a str>,
    /// The platform's event id, the job's idempotency key; empty: none.
    pub event: &'a str,
}

/// What a message comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Say this (already escaped for the front end's markup).
    Say(String),
    /// Run this job, with its options (a project), and show it to its end.
    Run(JobSpec, Vec<proto::JobOption>),
    /// Run this fan-out and show it to its end.
    RunAll(JobSpec),
}

/// The chat context the grammar parses against, or what to say when the
/// gateway cannot give it.
pub async fn context(gw: &impl Call, m: &(dyn Markup + Sync)) -> Result<chat::Context, String> {
    match gw.call(Request::ChatContext).await {
        Ok(Response::ChatContext { nodes, jobs, roles }) => Ok(chat::Context {
            nodes,
            jobs,
            roles,
            interpreters: chat::Context::default_interpreters(),
        }),
        Ok(r) => Err(m.escape(&format!("unexpected reply {r:?}"))),
        Err(e) => Err(m.escape(&format!(
            "I can't reach the gateway right now ({e}); try again in a moment."
        ))),
    }
}

/// Decides what `intent` comes to for `asker`: the answer to say, or the
/// job or fan-out to run (checked against `access` and, for a job, against
/// the plan the gateway resolves). `max_len` is the front end's longest
/// message (a log's snippet fits in it).
pub async fn dispatch(
    gw: &impl Api,
    access: &Access,
    asker: Asker<'_>,
    ctx: &chat::Context,
    intent: Intent,
    m: &(dyn Markup + Sync),
    max_len: usize,
) -> Action {
    let user = asker.user;
    let who = asker.who.map(str::to_string);
    let done = |r: Result<Response, ClientError>| match r {
        Ok(Response::Done { message }) => m.escape(&message),
        Ok(r) => m.escape(&format!("unexpected reply {r:?}")),
        Err(e) => call_error(&e, m),
    };
    let job_done = |id: u64, r: Result<Response, ClientError>| match r {
        Err(e) => job_error(id, &e, m),
        r => done(r),
    };
    let keyed = |mut spec: JobSpec| {
        // Even a bot restart between receipt and ack cannot start a
        // second job: the gateway keeps the key a day, per bot.
        if !asker.event.is_empty() {
            spec.idempotency_key = Some(asker.event.to_string());
        }
        spec
    };
    let now = unix_now();
    Action::Say(match intent {
        Intent::Help => {
            let nodes = access.nodes_for(user, &ctx.nodes);
            let h = render::HelpFor {
                jobs: access.jobs_for(user, &ctx.jobs),
                nodes: &nodes,
                roles: &ctx.roles,
                fan_out: access.fan_out_for(user, &ctx.roles),
            };
            render::help(&h, m)
        }
        Intent::Clarify(q) => m.escape(&q),
        Intent::Usage => match gw
            .call(Request::Usage {
                since_secs: 7 * 86_400,
                by: proto::UsageBy::User,
                on_behalf_of: who,
            })
            .await
        {
            Ok(Response::Usage(r)) => render::usage(&r, m),
            r => done(r),
        },
        Intent::Queue => match gw.call(Request::Queue { on_behalf_of: who }).await {
            Ok(Response::Queue(q)) => render::queue(&q, m),
            r => done(r),
        },
        Intent::Nodes(page) => match node_page(gw, page).await {
            Ok((shown, total)) => {
                let health = gpu_health(gw, &shown).await;
                render::nodes(&shown, &health, page, total, now, m)
            }
            Err(e) => done(Err(e)),
        },
        Intent::Jobs(page) => match job_page(gw, who, page).await {
            Ok((jobs, more)) => render::jobs(&jobs, page, more, now, m),
            Err(e) => done(Err(e)),
        },
        Intent::Status(id) => match gw
            .call(Request::JobShow {
                id,
                on_behalf_of: who,
            })
            .await
        {
            Ok(Response::Job(j)) => render::status(&j, now, m),
            r => job_done(id, r),
        },
        Intent::Logs(id) => match gw.log_tail(id, who, max_len).await {
            Ok((log, cut)) => render::snippet(&log, id, cut, m, max_len),
            Err(e) => job_error(id, &e, m),
        },
        Intent::Cancel(id) => job_done(
            id,
            gw.call(Request::JobCancel {
                id,
                on_behalf_of: who,
            })
            .await,
        ),
        Intent::Approve(id) => job_done(
            id,
            gw.call(Request::JobApprove {
                id,
                plan_digest: None,
                on_behalf_of: who,
            })
            .await,
        ),
        Intent::Deny(id, reason) => job_done(
            id,
            gw.call(Request::JobDeny {
                id,
                reason,
                on_behalf_of: who,
            })
            .await,
        ),
        Intent::RunAll { what, role } => {
            let spec = chat::job_spec(&what, None, role.as_deref(), None, who.as_deref());
            let job = match &what {
                chat::What::Job(n) => Some(n.as_str()),
                _ => None,
            };
            match access.permits_fanout(user, role.as_deref(), job) {
                Err(why) => m.escape(&why),
                Ok(()) => return Action::RunAll(keyed(spec)),
            }
        }
        Intent::Run {
            what,
            node,
            role,
            gpus,
            project,
        } => {
            let options: Vec<proto::JobOption> =
                project.into_iter().map(proto::JobOption::Project).collect();
            let spec = keyed(chat::job_spec(
                &what,
                node.as_deref(),
                role.as_deref(),
                gpus,
                who.as_deref(),
            ));
            // Limits apply to the resolved plan (a named job's node or
            // role), not to the words typed: ask the gateway first.
            match gw.call(Request::JobPreview(spec.clone())).await {
                Ok(Response::Preview {
                    node,
                    role,
                    named_job,
                    ..
                }) => {
                    // A role limit holds for the node the job lands on,
                    // however it was named: ask for that node's roles.
                    let node_roles = if access.limits.contains_key(user) {
                        match gw.call(Request::NodeShow { name: node.clone() }).await {
                            Ok(Response::Node(n)) => Some(chat::node_roles(&n)),
                            r => return Action::Say(done(r)),
                        }
                    } else {
                        None
                    };
                    let target = chat::Target {
                        node: Some(node.as_str()),
                        node_roles: node_roles.as_deref(),
                        role: role.as_deref(),
                        job: named_job.as_deref(),
                    };
                    match access.permits(user, &target) {
                        Err(why) => m.escape(&why),
                        Ok(()) => {
                            // A user with limits gets the node they were
                            // checked against, not a fresh routing.
                            let mut spec = spec;
                            if access.limits.contains_key(user) {
                                spec.node = Some(node);
                            }
                            return Action::Run(spec, options);
                        }
                    }
                }
                r => done(r),
            }
        }
    })
}
