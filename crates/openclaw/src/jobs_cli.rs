//! `openclaw run` and `openclaw job ...`.

use std::time::Duration;

use clap::Subcommand;
use client::{Client, ClientError, FollowError, FollowOptions, Followed, Gateway, Start};
use mesh::Home;
use proto::{
    ErrorCode, Follow, JobEvent, JobInfo, JobOption, JobRequest, JobSpec, JobState, OutStream,
    Request, Response,
};

use crate::commands::CliError;
use crate::interrupt::{Interrupts, Stop};
use crate::term::{errln, outln};
use crate::{exit, output};

mod run_args;
pub use run_args::RunArgs;

/// `openclaw job ...`.
#[derive(Subcommand)]
pub enum JobCmd {
    /// Recent jobs, newest first; with --queued, the waiting jobs in the
    /// order the fair-share queue serves them, each with why it waits.
    List {
        /// Only waiting jobs, in queue order (a lab member sees their own,
        /// at their places in the whole queue).
        #[arg(long)]
        queued: bool,
        /// How many (at most 500 per page).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only jobs older than this id: the next page after the last id shown.
        #[arg(long)]
        before: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// One job: status, node, command, requester, timestamps, exit code.
    Show {
        /// Job id.
        id: u64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The job's whole stored output; with --follow, live output until it ends.
    ///
    /// Without --follow it prints what is stored so far (of a running job
    /// too) and exits 0, whatever the job's end: stdout and stderr are
    /// exactly the job's. With --follow it waits for the end, says on
    /// stderr how the job ended (`openclaw: job 5 exited with code 3`),
    /// and exits as `run` does: the job's exit code, or 124, 130, 251-255
    /// for a job that did not run to its end. Leaving (Ctrl-C, or a closed
    /// stdout: exit 141) never cancels the job.
    Logs {
        /// Job id.
        id: u64,
        /// Keep following until the job ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// The files a job kept (`openclaw run --artifact`): name, size and
    /// SHA-256; `--get NAME` fetches one, `-o DIR` all of them. Each file
    /// is written under a temporary name and renamed once its checksum
    /// matches; a file's path becomes one name in DIR (`ckpt/last.pt` is
    /// `ckpt_last.pt`).
    Artifacts {
        /// Job id.
        id: u64,
        /// Fetch only this artifact (into the current directory, or -o).
        #[arg(long, value_name = "NAME")]
        get: Option<String>,
        /// Where fetched files go; `-` writes the one --get names to stdout.
        #[arg(short = 'o', long = "output", value_name = "DIR|-")]
        output: Option<String>,
        /// Machine-readable listing.
        #[arg(long)]
        json: bool,
    },
    /// SIGTERM the job's process group, SIGKILL after the grace period.
    Cancel {
        /// Job id.
        id: u64,
    },
    /// Approve a job awaiting approval.
    Approve {
        /// Job id.
        id: u64,
        /// Require the plan to have this digest (from 'job show').
        #[arg(long)]
        plan_digest: Option<String>,
    },
    /// Deny a job awaiting approval (or withdraw your own).
    Deny {
        /// Job id.
        id: u64,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Play an interactive session's recording (openclaw shell, run -t)
    /// in this terminal, at its pace: pauses longer than 2 s are cut short.
    Replay {
        /// Job id.
        id: u64,
        /// Play this many times faster (e.g. 4).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Print the session's output bytes at once, without pauses.
        #[arg(long)]
        raw: bool,
    },
}

fn usage(m: impl Into<String>) -> CliError {
    CliError::new(exit::USAGE, m)
}

/// Exit code for a failed job request.
pub fn run_error(e: ClientError) -> CliError {
    let code = match &e {
        ClientError::Api(api) => match api.code {
            ErrorCode::NotFound => exit::RUN_UNKNOWN,
            ErrorCode::Unavailable | ErrorCode::ResourceExhausted => exit::RUN_UNAVAILABLE,
            ErrorCode::Unsatisfiable => exit::RUN_UNSATISFIABLE,
            ErrorCode::Denied | ErrorCode::PermissionDenied => exit::RUN_DENIED,
            ErrorCode::InvalidArgument => exit::USAGE,
            _ => exit::FAILURE,
        },
        ClientError::Credential(_) => exit::FAILURE,
        ClientError::Refused { .. } => exit::REFUSED,
        ClientError::Connect { .. } | ClientError::Protocol(_) => exit::RUN_CONNECTION,
    };
    // The gateway's messages quote what others wrote: one line.
    CliError::new(code, crate::term::field(&e.to_string()))
}

/// The exit code that stands for how a job ended: an exhaustive match,
/// so a new state must be given its code here.
pub fn job_exit_code(info: &JobInfo) -> u8 {
    let Some(state) = info.job_state() else {
        return exit::RUN_CONNECTION;
    };
    match state {
        JobState::Exited => info
            .exit_code
            .map(|c| u8::try_from(c.clamp(0, 255)).unwrap_or(255))
            .unwrap_or(exit::RUN_CONNECTION),
        JobState::TimedOut => exit::RUN_TIMED_OUT,
        JobState::Cancelled => exit::RUN_CANCELLED,
        JobState::Denied | JobState::Expired => exit::RUN_DENIED,
        JobState::Failed => exit::RUN_START_FAILED,
        // Its node went away: as ssh when the connection is lost.
        JobState::Lost => exit::RUN_CONNECTION,
        // Not ended: the CLI lost it before its end.
        JobState::Queued | JobState::AwaitingApproval | JobState::Starting | JobState::Running => {
            exit::RUN_CONNECTION
        }
    }
}

pub fn spec(args: &RunArgs) -> Result<JobSpec, CliError> {
    let mut env = Vec::new();
    for kv in &args.env {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(usage(format!("--env {kv:?}: write K=V")));
        };
        env.push((k.to_string(), v.to_string()));
    }
    let dur =
        |flag: &str, v: &str| proto::duration::parse(v).map_err(|e| usage(format!("{flag}: {e}")));
    Ok(JobSpec {
        node: args.node.clone(),
        role: args.role.clone(),
        job: args.job.clone(),
        argv: args.cmd.clone(),
        shell: args.shell,
        cwd: args.cwd.clone(),
        env,
        timeout_secs: args
            .timeout
            .as_deref()
            .map(|t| dur("--timeout", t))
            .transpose()?
            .map(|d| d.as_secs().max(1)),
        gpus: args.gpus,
        queue_timeout_secs: if args.queue {
            Some(dur("--queue-timeout", &args.queue_timeout)?.as_secs())
        } else {
            None
        },
        on_behalf_of: None,
        idempotency_key: args.idempotency_key.clone(),
    })
}

fn write_out(stream: OutStream, data: &[u8]) {
    // A closed stdout (`| head`) is noted by term, and its closing ends
    // the command (see `interrupt` and `term`), never a panic.
    match stream {
        OutStream::Stdout => crate::term::raw_out(data),
        OutStream::Stderr => crate::term::raw_err(data),
    }
}

fn print_json(v: &JobInfo) -> Result<(), CliError> {
    crate::term::out_json(&job_json(v)).map_err(|e| CliError::new(exit::FAILURE, e.to_string()))
}

/// The stable JSON form of a job.
pub fn job_json(j: &JobInfo) -> serde_json::Value {
    serde_json::json!({
        "id": j.id, "state": j.state, "node": j.node, "argv": j.argv, "cwd": j.cwd,
        "requester": j.requester, "named_job": j.named_job, "role": j.role, "gpus": j.gpus,
        "approvers": j.approvers, "approved_by": j.approved_by, "plan_digest": j.plan_digest,
        "created_at": j.created_at, "started_at": j.started_at, "finished_at": j.finished_at,
        "exit_code": j.exit_code, "reason": j.reason, "stdout_bytes": j.stdout_bytes,
        "stderr_bytes": j.stderr_bytes, "truncated": j.truncated, "env": j.env, "run_as": j.run_as,
        "processes_killed": j.processes_killed,
    })
}

/// The warning for a job that holds no GPU on a node that offers
/// `confirmed` GPUs, unless it asked for none (`asked`: what `--gpus`
/// said). The rule it explains is `default_gpus` in the gateway's `jobs/spec.rs`. Pure.
fn no_gpu_warning(info: &JobInfo, asked: Option<u32>, confirmed: u32) -> Option<String> {
    (info.gpus == 0 && asked.is_none() && confirmed > 0 && !info.node.is_empty()).then(|| {
        format!(
            "openclaw: warning: job {} holds no GPU on {}, which has {confirmed} confirmed \
             (CUDA_VISIBLE_DEVICES is empty): only --gpus N or --role gpu ask for GPUs; \
             pass --gpus N to get some, or --gpus 0 to say none is meant",
            info.id,
            crate::term::field(&info.node),
        )
    })
}

/// Says on stderr when a job landed on a node with confirmed GPUs and
/// holds none (see [`no_gpu_warning`]); silent when the node cannot be
/// looked up.
async fn warn_if_no_gpu(client: &Client, info: &JobInfo, asked: Option<u32>) {
    if info.gpus > 0 || asked.is_some() || info.node.is_empty() {
        return;
    }
    let Ok(Response::Node(n)) = client
        .call(Request::NodeShow {
            name: info.node.clone(),
        })
        .await
    else {
        return;
    };
    if let Some(w) = no_gpu_warning(info, asked, n.gpu_counts().confirmed) {
        errln!("{w}");
    }
}

/// The options `openclaw run` sends with its job ([`JobOption`]); each
/// flag that needs the gateway to act adds its own. Artifact patterns are
/// checked here as the gateway checks them, so a bad one fails before
/// anything is sent.
fn job_options(args: &RunArgs) -> Result<Vec<JobOption>, CliError> {
    proto::artifact::check_patterns(&args.artifacts).map_err(usage)?;
    let mut out: Vec<JobOption> = args
        .artifacts
        .iter()
        .map(|p| JobOption::Artifact(p.clone()))
        .collect();
    if let Some(p) = &args.project {
        out.push(JobOption::Project(p.clone()));
    }
    if let Some(n) = args.priority {
        out.push(JobOption::Priority(n));
    }
    if args.preemptible {
        out.push(JobOption::Preemptible);
    }
    Ok(out)
}

/// `openclaw run`.
pub async fn run(home: &Home, args: RunArgs) -> Result<(), CliError> {
    if args.all {
        return crate::fanout_cli::run(home, args).await;
    }
    let spec = spec(&args)?;
    let options = job_options(&args)?;
    if args.detach {
        return detach(home, spec, options, args.json).await;
    }
    let feed = if args.tty {
        Feed::Tty(crate::tty_cli::local_tty())
    } else if !args.no_stdin && crate::input::worth_sending() {
        Feed::Stdin
    } else {
        Feed::Nothing
    };
    attached(home, spec, options, feed, args.json, args.gpus).await
}

/// `openclaw shell NODE [-- CMD]`: an interactive session on `node`, the
/// job user's login shell unless a command is given.
pub async fn shell(home: &Home, node: String, cmd: Vec<String>) -> Result<(), CliError> {
    let spec = JobSpec {
        node: Some(node),
        argv: cmd,
        ..JobSpec::default()
    };
    attached(
        home,
        spec,
        Vec::new(),
        Feed::Tty(crate::tty_cli::local_tty()),
        false,
        None,
    )
    .await
}

/// What an attached job's requester sends it.
enum Feed {
    /// Nothing: the job's stdin is /dev/null.
    Nothing,
    /// Its own standard input.
    Stdin,
    /// What is typed at a terminal (an interactive session).
    Tty(proto::tty::Tty),
}

/// Runs `spec` attached: its output streamed, its end the exit code.
async fn attached(
    home: &Home,
    spec: JobSpec,
    options: Vec<JobOption>,
    feed: Feed,
    json: bool,
    gpus: Option<u32>,
) -> Result<(), CliError> {
    let tty = matches!(feed, Feed::Tty(_));
    // From here a signal or a closed stdout cancels the job (see interrupt).
    let mut stops = Interrupts::new()?;
    let client = stops.connect(home).await?;
    // The job may exist already when a stop comes: wait a little for its
    // id, to cancel it, rather than leave it behind.
    let ((info, recv, pump), early) = stops
        .until_accepted(
            submit_and_wait(&client, spec, options, feed),
            "interrupted before the gateway accepted the job; check 'openclaw job list' for it",
        )
        .await?;
    match info.job_state() {
        Some(JobState::AwaitingApproval) => errln!(
            "openclaw: job {} on {} awaits approval by {} ('openclaw job approve {}'); waiting",
            info.id,
            info.node,
            info.approvers.join(" or "),
            info.id
        ),
        Some(JobState::Queued) => {
            errln!("openclaw: job {} is queued for capacity; waiting", info.id)
        }
        _ => errln!("openclaw: job {} on {}", info.id, info.node),
    }
    // A session that is not held goes raw now, before its first output;
    // a held one when it starts running (Ctrl-C cancels it until then).
    if tty
        && !matches!(
            info.job_state(),
            Some(JobState::AwaitingApproval | JobState::Queued)
        )
    {
        crate::tty_cli::enter_raw();
    }
    warn_if_no_gpu(&client, &info, gpus).await;
    let id = info.id;
    let gw = Gateway::with_client(home.clone(), client.clone());
    let outcome = {
        let follow = follow_to_end(&gw, Start::Stream(id, client.clone(), recv), !json, tty);
        tokio::pin!(follow);
        let stop = match early {
            Some(stop) => Ok(stop),
            None => tokio::select! {
                end = &mut follow => Err(end),
                stop = stops.next() => Ok(stop),
                () = crate::tty_cli::CUT.notified(), if tty => Ok(Stop::InputCut),
            },
        };
        // The local terminal is itself again before anything is said.
        crate::tty_cli::leave_raw();
        match stop {
            // A cut-off session's follower may be in the middle of a
            // reconnect, holding `gw`: its cancel goes on a connection of
            // its own.
            Ok(Stop::InputCut) => {
                let own = Gateway::new(home.clone());
                let r =
                    cancel_and_wait(&own, id, Stop::InputCut, json, &mut follow, &mut stops).await;
                own.close().await;
                r
            }
            Ok(stop) => cancel_and_wait(&gw, id, stop, json, &mut follow, &mut stops).await,
            Err(end) => {
                report_input(id, pump).await;
                end.and_then(|info| finish(info, json, None))
            }
        }
    };
    gw.close().await;
    outcome
}

/// Says, once job `id` has ended, whether its standard input was cut off
/// on the way (the job then saw end of file early). Input still being
/// sent is input the job did not read: that is the job's business, as
/// with a pipe.
async fn report_input(id: u64, pump: Pump) {
    let Some(pump) = pump else { return };
    if !pump.is_finished() {
        pump.abort();
        return;
    }
    if let Ok(Err(cut)) = pump.await {
        errln!(
            "openclaw: the standard input of job {id} was cut off after {} bytes ({}); the job saw end of file there. Run it again to give it all of its input",
            cut.sent,
            crate::term::field(&cut.why)
        );
    }
}

/// How long the cancel of an interrupted run may take to be answered.
const CANCEL_CALL: Duration = Duration::from_secs(10);
/// How long a cancelled job may take to end before the CLI says it waits.
const CANCEL_QUIET: Duration = Duration::from_secs(1);

/// `openclaw run --detach`: submit, print the id, return.
async fn detach(
    home: &Home,
    spec: JobSpec,
    options: Vec<JobOption>,
    json: bool,
) -> Result<(), CliError> {
    let asked = spec.gpus;
    let client = Client::connect(home).await.map_err(run_error)?;
    let req = JobRequest {
        spec,
        follow: Follow::Detached,
        options,
    };
    let resp = client.call(req.into_request()).await;
    let info = match resp.map_err(run_error) {
        Ok(Response::Job(info)) => info,
        Ok(resp) => {
            client.close().await;
            return Err(CliError::new(
                exit::FAILURE,
                format!("unexpected reply {resp:?}"),
            ));
        }
        Err(e) => {
            client.close().await;
            return Err(e);
        }
    };
    warn_if_no_gpu(&client, &info, asked).await;
    client.close().await;
    if json {
        print_json(&info)?;
    } else {
        outln!("{}", info.id);
        let place = if info.node.is_empty() {
            String::new()
        } else {
            format!(" on {}", crate::term::field(&info.node))
        };
        errln!(
            "openclaw: job {} {}{place}; follow it with 'openclaw job logs {} --follow'",
            info.id,
            info.state,
            info.id
        );
    }
    Ok(())
}

/// A job's input that is still being sent, or how its sending ended.
type Pump = Option<tokio::task::JoinHandle<Result<u64, crate::input::Cut>>>;

/// Submits a job to run attached and waits for the gateway to accept it;
/// with `input`, then streams standard input to it.
async fn submit_and_wait(
    client: &Client,
    spec: JobSpec,
    options: Vec<JobOption>,
    feed: Feed,
) -> Result<(JobInfo, client::RecvStream, Pump), CliError> {
    let tty = matches!(feed, Feed::Tty(_));
    let (send, mut recv) = match feed {
        Feed::Stdin => {
            let req = JobRequest {
                spec,
                follow: Follow::AttachedWithInput,
                options,
            }
            .into_request();
            let (send, recv) = client.open_duplex(req).await.map_err(run_error)?;
            (Some(send), recv)
        }
        Feed::Tty(t) => {
            if !options.is_empty() {
                return Err(usage(
                    "--artifact, --project, --priority and --preemptible do not apply to a session on a terminal (-t); run the command without -t for them",
                ));
            }
            let (send, recv) = client.open_with_tty(spec, t).await.map_err(run_error)?;
            (Some(send), recv)
        }
        Feed::Nothing => {
            let req = JobRequest {
                spec,
                follow: Follow::Attached,
                options,
            }
            .into_request();
            let recv = client.open(req).await.map_err(run_error)?;
            (None, recv)
        }
    };
    loop {
        match client.next_event(&mut recv).await {
            Ok(Some(JobEvent::Accepted(info))) => {
                let pump = send.map(|s| {
                    if tty {
                        tokio::spawn(crate::tty_cli::pump_or_cut(s))
                    } else {
                        tokio::spawn(crate::input::pump(s))
                    }
                });
                return Ok((info, recv, pump));
            }
            Ok(Some(JobEvent::Error(e))) => return Err(run_error(ClientError::Api(e))),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                return Err(CliError::new(
                    exit::RUN_CONNECTION,
                    "lost the gateway before the job was accepted; check 'openclaw job list' before retrying",
                ));
            }
        }
    }
}

/// The session ended (`stop`): cancels job `id` in whatever state it is,
/// and, for a signal, follows it to its end so that its last output and
/// one line on how it ended are shown; a second signal stops waiting. A
/// closed stdout has no reader left to tell: the CLI exits once the
/// cancel is sent.
async fn cancel_and_wait(
    gw: &Gateway,
    id: u64,
    stop: Stop,
    json: bool,
    follow: &mut (impl Future<Output = Result<JobInfo, CliError>> + Unpin),
    stops: &mut Interrupts,
) -> Result<(), CliError> {
    // Through `gw`: a connection lost meanwhile is made again, within
    // CANCEL_CALL.
    let deadline = tokio::time::Instant::now() + CANCEL_CALL;
    let cancelled = loop {
        let cancel = gw.call(Request::JobCancel {
            id,
            on_behalf_of: None,
        });
        let r = match tokio::time::timeout_at(deadline, cancel).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => break Err(format!("no answer from the gateway in {CANCEL_CALL:?}")),
        };
        // A session whose input was cut off by a gateway going away asks
        // again while the gateway comes back (it refuses connections
        // while it starts).
        match r {
            Err(_) if stop == Stop::InputCut && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => break r,
        }
    };
    if stop == Stop::StdoutClosed {
        return Err(stop.error(""));
    }
    let ended = tokio::select! {
        end = &mut *follow => Some(end),
        () = tokio::time::sleep(CANCEL_QUIET) => None,
    };
    let end = match ended {
        Some(end) => end,
        None => {
            // Still ending (a job that traps SIGTERM waits for the SIGKILL).
            match &cancelled {
                Ok(Response::Done { message }) => {
                    errln!("openclaw: {}", crate::term::field(message))
                }
                Ok(_) => {}
                Err(e) => errln!(
                    "openclaw: could not cancel job {id} ({}); cancel it with 'openclaw job cancel {id}'",
                    crate::term::field(e)
                ),
            }
            tokio::select! {
                end = &mut *follow => end,
                again = stops.next() => {
                    return Err(again.error(format!(
                        "stopped waiting for job {id} to end; see 'openclaw job show {id}'"
                    )));
                }
            }
        }
    };
    // The CLI was interrupted: its code says so, whatever else went wrong.
    finish(end.map_err(|e| stop.error(e.message))?, json, Some(stop))
}

/// Says how a followed job ended and picks the exit code: the job's own
/// (see [`job_exit_code`]), or 128 + the signal that made the CLI cancel it.
fn finish(info: JobInfo, json: bool, stop: Option<Stop>) -> Result<(), CliError> {
    if json {
        print_json(&info)?;
    }
    // As ssh: a command that exited by itself needs no words.
    if !info.is(JobState::Exited) {
        errln!("openclaw: {}", output::job_end(&info));
    }
    let code = stop.map_or_else(|| job_exit_code(&info), Stop::exit_code);
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::new(code, String::new()))
    }
}

/// Follows a job to its end through [`client::follow_job`], writing
/// output as it comes (when `echo`) and saying on stderr when it
/// reconnects; resuming is exactly-once (see `client::follow`).
async fn follow_to_end(
    gw: &Gateway,
    start: Start,
    echo: bool,
    tty: bool,
) -> Result<JobInfo, CliError> {
    // A running job's reason is news (its GPU failed: time to save work);
    // each one is said once.
    let mut told: Option<String> = None;
    let sink = |f: Followed<'_>| match f {
        Followed::Output(s, data) if echo => write_out(s, data),
        Followed::State(info) => {
            // A session's keys go to it once it runs (before, Ctrl-C
            // still cancels it here, while it waits for approval).
            if tty && info.is(JobState::Running) {
                crate::tty_cli::enter_raw();
            }
            if let Some(by) = info
                .approved_by
                .as_deref()
                .filter(|_| info.is(JobState::Starting))
            {
                errln!("openclaw: job {} approved by {by}", info.id);
            }
            if let Some(why) = info
                .reason
                .as_deref()
                .filter(|_| info.is(JobState::Running))
                && told.as_deref() != Some(why)
            {
                errln!(
                    "openclaw: warning: job {}: {}",
                    info.id,
                    crate::term::field(why)
                );
                told = Some(why.to_string());
            }
        }
        Followed::Reconnecting { id, why } => {
            errln!("openclaw: lost the gateway while following job {id} ({why}); reconnecting")
        }
        Followed::Resumed { id, offsets: o } => errln!(
            "openclaw: reconnected; resuming job {id} at byte {} of stdout, {} of stderr",
            o[0],
            o[1]
        ),
        Followed::Output(..) => {}
    };
    client::follow_job(gw, start, &FollowOptions::default(), sink)
        .await
        .map_err(|e| match e {
            FollowError::Api(e) => run_error(ClientError::Api(e)),
            FollowError::Refused(msg) => run_error(ClientError::Refused { msg }),
            e => CliError::new(exit::RUN_CONNECTION, e.to_string()),
        })
}

/// `openclaw job ...`.
pub async fn job(home: &Home, cmd: JobCmd) -> Result<(), CliError> {
    let client = Client::connect(home).await.map_err(run_error)?;
    let result = job_inner(home, &client, cmd).await;
    client.close().await;
    result
}

async fn job_inner(home: &Home, client: &Client, cmd: JobCmd) -> Result<(), CliError> {
    let call = |req| async { client.call(req).await.map_err(run_error) };
    match cmd {
        JobCmd::List {
            queued: true, json, ..
        } => crate::usage_cli::queued(home, json).await,
        JobCmd::List {
            limit,
            before,
            json,
            queued: false,
        } => match call(Request::JobList {
            limit,
            before,
            on_behalf_of: None,
        })
        .await?
        {
            Response::Jobs(jobs) => {
                if json {
                    let v: Vec<_> = jobs.iter().map(job_json).collect();
                    crate::term::out_json(&v)
                        .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
                } else {
                    crate::term::out(&output::jobs(&jobs, gateway::unix_now()));
                }
                Ok(())
            }
            r => Err(CliError::new(
                exit::FAILURE,
                format!("unexpected reply {r:?}"),
            )),
        },
        JobCmd::Show { id, json } => match call(Request::JobShow {
            id,
            on_behalf_of: None,
        })
        .await?
        {
            Response::Job(info) => {
                // Which physical GPUs it held; a gateway older than this
                // call answers an error, and the job shows without them.
                let held = match call(Request::JobGpus {
                    id,
                    on_behalf_of: None,
                })
                .await
                {
                    Ok(Response::JobGpus(g)) => g,
                    _ => Vec::new(),
                };
                // Its artifacts, likewise (issue 23).
                let kept = crate::artifacts_cli::list(client, id).await.ok();
                if json {
                    let mut v = job_json(&info);
                    v["gpus_held"] = serde_json::json!(
                        held.iter()
                            .map(|g| serde_json::json!({"index": g.index, "uuid": g.uuid, "name": g.name}))
                            .collect::<Vec<_>>()
                    );
                    if let Some(k) = &kept {
                        v["artifacts"] = serde_json::json!(k);
                    }
                    crate::term::out_json(&v)
                        .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))
                } else {
                    let mut text = output::job(&info, gateway::unix_now());
                    for g in &held {
                        text.push_str(&output::held_gpu_line(g));
                    }
                    if let Some(k) = &kept {
                        text.push_str(&crate::artifacts_cli::show_lines(k));
                    }
                    crate::term::out(&text);
                    Ok(())
                }
            }
            r => Err(CliError::new(
                exit::FAILURE,
                format!("unexpected reply {r:?}"),
            )),
        },
        JobCmd::Logs { id, follow } => {
            // A closed stdout (`| head -1`) stops the reading; the job is
            // not ours to cancel (main exits 141 quietly).
            if follow {
                let gw = Gateway::new(home.clone());
                let end = tokio::select! {
                    end = follow_to_end(&gw, Start::Attach(id), true, false) => Some(end),
                    () = crate::term::stdout_gone() => None,
                };
                gw.close().await;
                return match end {
                    Some(end) => logs_end(end?),
                    None => Ok(()),
                };
            }
            tokio::select! {
                r = client::read_log(client, id, None, [0, 0], write_out) => r.map_err(run_error),
                () = crate::term::stdout_gone() => Ok(()),
            }
        }
        JobCmd::Artifacts {
            id,
            get,
            output,
            json,
        } => {
            crate::artifacts_cli::artifacts(
                client,
                crate::artifacts_cli::Ask {
                    id,
                    get,
                    output,
                    json,
                },
            )
            .await
        }
        JobCmd::Replay { id, speed, raw } => crate::tty_cli::replay(client, id, speed, raw).await,
        JobCmd::Cancel { id } => done(
            call(Request::JobCancel {
                id,
                on_behalf_of: None,
            })
            .await?,
        ),
        JobCmd::Approve { id, plan_digest } => done(
            call(Request::JobApprove {
                id,
                plan_digest,
                on_behalf_of: None,
            })
            .await?,
        ),
        JobCmd::Deny { id, reason } => done(
            call(Request::JobDeny {
                id,
                reason,
                on_behalf_of: None,
            })
            .await?,
        ),
    }
}

/// The end of `job logs --follow`: one line on stderr on how the job
/// ended, and its exit code, as `run` exits (the job's own code, or the
/// codes for a job that did not run to its end).
fn logs_end(info: JobInfo) -> Result<(), CliError> {
    errln!("openclaw: {}", output::job_end(&info));
    match job_exit_code(&info) {
        0 => Ok(()),
        code => Err(CliError::new(code, String::new())),
    }
}

fn done(r: Response) -> Result<(), CliError> {
    match r {
        Response::Done { message } => {
            outln!("{}", crate::term::field(&message));
            Ok(())
        }
        r => Err(CliError::new(
            exit::FAILURE,
            format!("unexpected reply {r:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_job_without_a_gpu_on_a_gpu_node_is_warned_unless_it_said_so() {
        let job = |gpus: u32, node: &str| JobInfo {
            id: 7,
            gpus,
            node: node.into(),
            ..JobInfo::default()
        };
        // (job's GPUs, node, --gpus, node's confirmed GPUs) -> warned.
        let cases = [
            (0, "worker-gpu-01", None, 2, true),
            (0, "worker-gpu-01", Some(0), 2, false),
            (1, "worker-gpu-01", None, 2, false),
            (0, "worker-cpu-01", None, 0, false),
            // Queued: no node yet.
            (0, "", None, 2, false),
        ];
        for (gpus, node, asked, confirmed, warned) in cases {
            let w = no_gpu_warning(&job(gpus, node), asked, confirmed);
            assert_eq!(
                w.is_some(),
                warned,
                "{gpus} {node} {asked:?} {confirmed}: {w:?}"
            );
            if let Some(w) = w {
                assert!(
                    w.contains("job 7 holds no GPU on worker-gpu-01, which has 2 confirmed")
                        && w.contains("--gpus N"),
                    "{w}"
                );
            }
        }
    }
}
