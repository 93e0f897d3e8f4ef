//! `openclaw run --all`: one command on every matching node (a fan-out).
//!
//! Output is shown three ways: lines prefixed by node name as they come
//! (default), one block per node when it ends (`--group`), or one JSON
//! object per node when it ends (`--json`). A summary goes to stderr. The
//! exit code is the largest of the nodes' (as `pdsh -S` does); a matching
//! node that was offline counts as 253 (unavailable).

use std::collections::HashMap;
use std::sync::Arc;

use client::{Client, ClientError, FanFollowed, FanStart, FollowError, FollowOptions, Gateway};
use mesh::Home;
use proto::fanout::{Outcome, Tally};
use proto::{Batch, FanEvent, FanInfo, FanOutSpec, FanState, JobInfo, OutStream, Request};

use crate::commands::CliError;
use crate::exit;
use crate::interrupt::{Interrupts, Stop};
use crate::jobs_cli::{RunArgs, job_exit_code, run_error, spec};
use crate::term::{errln, outln};

/// Longest partial line kept per node and stream before it is printed anyway.
const MAX_LINE: usize = 64 * 1024;
/// Output kept per node and stream for `--group` and `--json`.
const KEEP: usize = 1024 * 1024;
/// Nodes named per kind in the summary.
const SUMMARY_NAMES: usize = 10;
/// Cancels sent at once when the run is interrupted.
const CANCEL_CONCURRENCY: usize = 32;

/// How output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `node: line` as lines come.
    Prefix,
    /// One block per node when it ends.
    Group,
    /// One JSON object per node when it ends.
    Json,
}

/// Bytes to write to stdout and stderr.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Writes {
    /// For stdout.
    pub out: Vec<u8>,
    /// For stderr.
    pub err: Vec<u8>,
}

#[derive(Default)]
struct Kept {
    bytes: [Vec<u8>; 2],
    cut: [bool; 2],
}

/// Turns a fan-out's events into what the terminal shows. Pure.
pub struct FanView {
    mode: Mode,
    nodes: Vec<String>,
    partial: HashMap<(u32, usize), Vec<u8>>,
    kept: HashMap<u32, Kept>,
}

fn idx(stream: OutStream) -> usize {
    match stream {
        OutStream::Stdout => 0,
        OutStream::Stderr => 1,
    }
}

impl FanView {
    /// A view of `info`'s members.
    pub fn new(info: &FanInfo, mode: Mode) -> FanView {
        FanView {
            mode,
            nodes: info.members.iter().map(|m| m.node.clone()).collect(),
            partial: HashMap::new(),
            kept: HashMap::new(),
        }
    }

    fn node(&self, member: u32) -> &str {
        self.nodes
            .get(member as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    fn target(w: &mut Writes, s: usize) -> &mut Vec<u8> {
        if s == 0 { &mut w.out } else { &mut w.err }
    }

    /// Output of a member.
    pub fn output(&mut self, member: u32, stream: OutStream, data: &[u8]) -> Writes {
        let mut w = Writes::default();
        let s = idx(stream);
        match self.mode {
            Mode::Prefix => {
                let node = self.node(member).to_string();
                let buf = self.partial.entry((member, s)).or_default();
                buf.extend_from_slice(data);
                let out = Self::target(&mut w, s);
                let mut start = 0;
                while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
                    out.extend_from_slice(node.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(&buf[start..start + nl + 1]);
                    start += nl + 1;
                }
                buf.drain(..start);
                if buf.len() >= MAX_LINE {
                    out.extend_from_slice(node.as_bytes());
                    out.extend_from_slice(b": ");
                    out.append(buf);
                    out.push(b'\n');
                }
            }
            Mode::Group | Mode::Json => {
                let k = self.kept.entry(member).or_default();
                let room = KEEP.saturating_sub(k.bytes[s].len());
                k.bytes[s].extend_from_slice(&data[..data.len().min(room)]);
                if data.len() > room {
                    k.cut[s] = true;
                }
            }
        }
        w
    }

    /// A member ended.
    pub fn ended(&mut self, member: u32, job: &JobInfo) -> Writes {
        let mut w = Writes::default();
        let node = self.node(member).to_string();
        let status = status_text(job);
        match self.mode {
            Mode::Prefix => {
                for s in 0..2 {
                    if let Some(rest) = self.partial.remove(&(member, s))
                        && !rest.is_empty()
                    {
                        let out = Self::target(&mut w, s);
                        out.extend_from_slice(format!("{node}: ").as_bytes());
                        out.extend_from_slice(&rest);
                        out.push(b'\n');
                    }
                }
                if Outcome::of(job) != Outcome::Ok {
                    w.err
                        .extend_from_slice(format!("{node}: [{status}]\n").as_bytes());
                }
            }
            Mode::Group => {
                let k = self.kept.remove(&member).unwrap_or_default();
                w.out
                    .extend_from_slice(format!("── {node}: {status} ──\n").as_bytes());
                for s in 0..2 {
                    let out = Self::target(&mut w, s);
                    out.extend_from_slice(&k.bytes[s]);
                    if k.bytes[s].last().is_some_and(|&b| b != b'\n') {
                        out.push(b'\n');
                    }
                    if k.cut[s] {
                        out.extend_from_slice(
                            format!(
                                "[{node}: output cut at {} KiB here; see 'openclaw job logs {}']\n",
                                KEEP / 1024,
                                job.id
                            )
                            .as_bytes(),
                        );
                    }
                }
            }
            Mode::Json => {
                let k = self.kept.remove(&member).unwrap_or_default();
                let v = serde_json::json!({
                    "node": node, "job": job.id, "state": job.state, "exit_code": job.exit_code,
                    "reason": job.reason, "started_at": job.started_at, "finished_at": job.finished_at,
                    "stdout": String::from_utf8_lossy(&k.bytes[0]),
                    "stderr": String::from_utf8_lossy(&k.bytes[1]),
                    "stdout_bytes": job.stdout_bytes, "stderr_bytes": job.stderr_bytes,
                    "cut": k.cut[0] || k.cut[1] || job.truncated,
                });
                // JSON escapes the job's output and the reason (see term::json).
                w.out
                    .extend_from_slice(crate::term::json(&v, false).unwrap_or_default().as_bytes());
                w.out.push(b'\n');
            }
        }
        w
    }
}

fn status_text(job: &JobInfo) -> String {
    match Outcome::of(job) {
        Outcome::Ok => format!("exit 0 (job {})", job.id),
        Outcome::Exit(c) => format!("exit {c} (job {})", job.id),
        Outcome::TimedOut => format!("timed out (job {})", job.id),
        // As `run` says it: the state once (`cancelled by alice`).
        Outcome::NotRun(..) => {
            format!("{} (job {})", crate::output::how_it_ended(job), job.id)
        }
    }
}

fn write(w: Writes) {
    // A closed stdout (`| head`) is noted by term, and its closing ends
    // the run (see `interrupt`), never a panic.
    if !w.out.is_empty() {
        crate::term::raw_out(&w.out);
    }
    if !w.err.is_empty() {
        crate::term::raw_err(&w.err);
    }
}

/// `openclaw run --all`.
pub async fn run(home: &Home, args: RunArgs) -> Result<(), CliError> {
    let batch = args
        .batch
        .as_deref()
        .map(Batch::parse)
        .transpose()
        .map_err(|e| CliError::new(exit::USAGE, e))?;
    let spec = FanOutSpec {
        job: spec(&args)?,
        labels: args.labels.clone(),
        batch,
        output: true,
    };
    let mode = if args.json {
        Mode::Json
    } else if args.group {
        Mode::Group
    } else {
        Mode::Prefix
    };
    // From here a signal or a closed stdout cancels the fan-out's jobs
    // (see interrupt).
    let mut stops = Interrupts::new()?;
    let client = stops.connect(home).await?;
    // Its jobs may exist already when a stop comes: wait a little for
    // their ids.
    let ((recv, info), mut stopped) = stops
        .until_accepted(
            open_fanout(&client, spec),
            "interrupted before the gateway accepted the fan-out; check 'openclaw job list' for its jobs",
        )
        .await?;
    announce(&info);
    let jobs: Vec<u64> = info.members.iter().map(|m| m.job).collect();
    let fan = info.id;
    let mut view = FanView::new(&info, mode);
    let mut tally = Tally::new(&info);
    let mut code: u8 = if info.skipped.is_empty() {
        0
    } else {
        exit::RUN_UNAVAILABLE
    };
    let gw = Gateway::with_client(home.clone(), client.clone());
    let start = FanStart::Stream(Box::new(info.clone()), client.clone(), recv);
    let pumped = {
        let pump = pump(&gw, start, &mut view, &mut tally, |ev| match ev {
            Ev::Write(w) => write(w),
            Ev::Ended(job) => code = code.max(job_exit_code(job)),
            Ev::Lost {
                member,
                node,
                error,
            } => {
                let job = info.members.get(member as usize).map(|m| m.job);
                errln!(
                    "openclaw: lost track of {node} ({}); run 'openclaw job show {}'",
                    crate::term::field(&error.message),
                    job.unwrap_or(0)
                );
                code = exit::RUN_CONNECTION;
            }
        });
        tokio::pin!(pump);
        // The first stop cancels every job (those ended already refuse,
        // harmlessly) and the pump goes on to show how each ended; a
        // closed stdout, or a second signal, stops at once.
        let mut cancelled = false;
        loop {
            if let Some(stop) = stopped.filter(|_| !cancelled) {
                // Through `gw`: the connection the follower resumed on,
                // or a new one if it is lost.
                match gw.get().await {
                    Ok(c) => cancel_all(&c, &jobs).await,
                    Err(e) => errln!(
                        "openclaw: could not cancel fan-out {fan}'s jobs ({}); cancel them with 'openclaw job cancel JOB'",
                        crate::term::field(&e.to_string())
                    ),
                }
                cancelled = true;
                if stop == Stop::StdoutClosed {
                    break Pumped::Stopped(stop);
                }
            }
            let stop = tokio::select! {
                r = &mut pump => break match r {
                    Ok(_) => Pumped::Done,
                    Err(e) => Pumped::Lost(e),
                },
                stop = stops.next() => stop,
            };
            if stopped.is_some() {
                break Pumped::Stopped(stop);
            }
            stopped = Some(stop);
        }
    };
    gw.close().await;
    let ended = match pumped {
        Pumped::Done => true,
        Pumped::Stopped(Stop::StdoutClosed) => return Err(Stop::StdoutClosed.error("")),
        Pumped::Stopped(stop) => {
            return Err(stop.error(format!(
                "stopped waiting for fan-out {fan}'s jobs to end; {} so far; see 'openclaw job list'",
                tally.summary(SUMMARY_NAMES)
            )));
        }
        Pumped::Lost(FollowError::Api(e)) => {
            errln!(
                "openclaw: fan-out {fan}: {}",
                crate::term::field(&e.message)
            );
            false
        }
        Pumped::Lost(e) => {
            errln!("openclaw: {}", crate::term::field(&e.to_string()));
            false
        }
    };
    if !ended {
        errln!(
            "openclaw: lost the gateway while following fan-out {fan}; its jobs go on. {} so far; follow a node with 'openclaw job logs JOB --follow' (jobs {}..{})",
            tally.summary(SUMMARY_NAMES),
            info.members.first().map(|m| m.job).unwrap_or(0),
            info.members.last().map(|m| m.job).unwrap_or(0),
        );
        return Err(CliError::new(
            stopped.map_or(exit::RUN_CONNECTION, Stop::exit_code),
            String::new(),
        ));
    }
    errln!("openclaw: fan-out {fan}: {}", tally.summary(SUMMARY_NAMES));
    let code = stopped.map_or(code, Stop::exit_code);
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::new(code, String::new()))
    }
}

/// How following a fan-out ended.
enum Pumped {
    /// Every member ended.
    Done,
    /// Stopped following: a closed stdout, or a second signal.
    Stopped(Stop),
    /// The gateway ended it with an error, or stayed away past the
    /// reconnect window.
    Lost(FollowError),
}

fn announce(info: &FanInfo) {
    let first = info.members.first().map(|m| m.job).unwrap_or(0);
    let n = info.members.len();
    if info.state == FanState::AwaitingApproval.as_str() {
        errln!(
            "openclaw: fan-out {} on {n} node(s) awaits approval by {} ('openclaw job approve {first}' approves all {n}); waiting",
            info.id,
            info.approvers.join(" or "),
        );
    } else {
        errln!(
            "openclaw: fan-out {} on {n} node(s), {} at a time (jobs {first}..{})",
            info.id,
            info.window,
            info.members.last().map(|m| m.job).unwrap_or(0)
        );
    }
    if !info.skipped.is_empty() {
        let names: Vec<String> = info
            .skipped
            .iter()
            .take(SUMMARY_NAMES)
            .map(|(n, why)| format!("{n} ({})", crate::term::field(why)))
            .collect();
        errln!(
            "openclaw: not running on {} matching node(s): {}{}",
            info.skipped.len(),
            names.join(", "),
            if info.skipped.len() > SUMMARY_NAMES {
                ", ..."
            } else {
                ""
            }
        );
    }
}

async fn cancel_all(client: &Arc<Client>, jobs: &[u64]) {
    for chunk in jobs.chunks(CANCEL_CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for &id in chunk {
            let c = client.clone();
            set.spawn(async move {
                let _ = c
                    .call(Request::JobCancel {
                        id,
                        on_behalf_of: None,
                    })
                    .await;
            });
        }
        while set.join_next().await.is_some() {}
    }
}

/// Opens a fan-out and reads its first event.
async fn open_fanout(
    client: &Client,
    spec: FanOutSpec,
) -> Result<(client::RecvStream, FanInfo), CliError> {
    open_fan_stream(client, Request::FanOut(spec)).await
}

/// Opens a fan-out stream (`FanOut` or `FanOutAttach`) and reads its
/// first event.
async fn open_fan_stream(
    client: &Client,
    req: Request,
) -> Result<(client::RecvStream, FanInfo), CliError> {
    let mut recv = client.open(req).await.map_err(run_error)?;
    match client.next_fan_event(&mut recv).await {
        Ok(Some(FanEvent::Accepted(info))) => Ok((recv, info)),
        Ok(Some(FanEvent::Error(e))) => Err(run_error(ClientError::Api(e))),
        Ok(_) | Err(_) => Err(CliError::new(
            exit::RUN_CONNECTION,
            "lost the gateway before the fan-out was accepted; check 'openclaw job list' before retrying",
        )),
    }
}

/// What following a fan-out hands its caller.
enum Ev<'a> {
    /// Text to print.
    Write(Writes),
    /// A member's final record (already shown through `Write`).
    Ended(&'a JobInfo),
    /// A member the gateway could not follow.
    Lost {
        member: u32,
        node: &'a str,
        error: &'a proto::ApiError,
    },
}

/// Follows a fan-out through [`client::follow_fanout`] (which resumes
/// after a reconnect, exactly once per byte) until every member ended,
/// through `view` and `tally`; says on stderr when it reconnects.
async fn pump(
    gw: &Gateway,
    start: FanStart,
    view: &mut FanView,
    tally: &mut Tally,
    mut on: impl FnMut(Ev<'_>),
) -> Result<FanInfo, FollowError> {
    let sink = |f: FanFollowed<'_>| match f {
        FanFollowed::Output {
            member,
            stream,
            data,
        } => on(Ev::Write(view.output(member, stream, data))),
        FanFollowed::Ended { member, job } => {
            if tally.record(member, Outcome::of(job)).is_some() {
                on(Ev::Write(view.ended(member, job)));
                on(Ev::Ended(job));
            }
        }
        FanFollowed::Lost { member, error } => on(Ev::Lost {
            member,
            node: tally.node(member).unwrap_or("?"),
            error,
        }),
        FanFollowed::Reconnecting { id, why } => errln!(
            "openclaw: lost the gateway while following fan-out {id} ({}); reconnecting",
            crate::term::field(why)
        ),
        FanFollowed::Resumed { id } => {
            errln!("openclaw: reconnected; resuming fan-out {id} where it was")
        }
        FanFollowed::Accepted(_) | FanFollowed::State { .. } => {}
    };
    client::follow_fanout(gw, start, true, &FollowOptions::default(), sink).await
}

/// Runs a fan-out and prints it line by line behind `indent`, prefixed by
/// node, then its summary (the lab and the chat prompt). A fan-out held
/// for approval is not waited for: it says so, and returns the job whose
/// approval releases it.
pub async fn print_fanout(
    gw: &Gateway,
    job: proto::JobSpec,
    indent: &str,
) -> Result<Option<u64>, CliError> {
    let spec = FanOutSpec {
        job,
        labels: vec![],
        batch: None,
        output: true,
    };
    let client = gw.get().await.map_err(run_error)?;
    let (recv, info) = open_fanout(&client, spec).await?;
    if info.state == FanState::AwaitingApproval.as_str() {
        let first = info.members.first().map(|m| m.job).unwrap_or(0);
        outln!(
            "{indent}fan-out {} on {} nodes awaits approval by {} ('approve {first}' approves all)",
            info.id,
            info.members.len(),
            crate::term::field(&info.approvers.join(" or ")),
        );
        return Ok(Some(first));
    }
    let start = FanStart::Stream(Box::new(info.clone()), client, recv);
    print_open_fanout(gw, start, &info, indent).await?;
    Ok(None)
}

/// Follows fan-out `id` from its start, printed as [`print_fanout`] does
/// (the chat prompt after an approval); `on_behalf_of` is the chat user a
/// bot acts for.
pub async fn follow_fanout(
    gw: &Gateway,
    id: u64,
    on_behalf_of: Option<String>,
    indent: &str,
) -> Result<(), CliError> {
    let client = gw.get().await.map_err(run_error)?;
    let (recv, info) = open_fan_stream(
        &client,
        Request::FanOutAttach {
            id,
            output: true,
            on_behalf_of,
        },
    )
    .await?;
    let start = FanStart::Stream(Box::new(info.clone()), client, recv);
    print_open_fanout(gw, start, &info, indent).await
}

async fn print_open_fanout(
    gw: &Gateway,
    start: FanStart,
    info: &FanInfo,
    indent: &str,
) -> Result<(), CliError> {
    let mut view = FanView::new(info, Mode::Prefix);
    let mut tally = Tally::new(info);
    // Job output, prefixed by node: raw, as `run --all` writes it.
    let show = |w: Writes| {
        let mut text = String::new();
        for line in String::from_utf8_lossy(&[w.out, w.err].concat()).lines() {
            text.push_str(indent);
            text.push_str(line);
            text.push('\n');
        }
        crate::term::raw_out(text.as_bytes());
    };
    pump(gw, start, &mut view, &mut tally, |ev| {
        if let Ev::Write(w) = ev {
            show(w);
        }
    })
    .await
    .map_err(|e| CliError::new(exit::FAILURE, crate::term::field(&e.to_string())))?;
    outln!(
        "{indent}fan-out {}: {}",
        info.id,
        tally.summary(SUMMARY_NAMES)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::FanMember;

    fn info() -> FanInfo {
        FanInfo {
            id: 1,
            state: "running".into(),
            argv: vec!["x".into()],
            requester: "admin".into(),
            members: vec![
                FanMember {
                    node: "a".into(),
                    job: 5,
                },
                FanMember {
                    node: "b".into(),
                    job: 6,
                },
            ],
            skipped: vec![],
            window: 2,
            approvers: vec![],
            plan_digest: String::new(),
            created_at: 0,
        }
    }

    fn job(id: u64, state: &str, code: Option<i32>) -> JobInfo {
        JobInfo {
            id,
            state: state.into(),
            exit_code: code,
            ..JobInfo::default()
        }
    }

    fn text(w: &Writes) -> (String, String) {
        (
            String::from_utf8_lossy(&w.out).into_owned(),
            String::from_utf8_lossy(&w.err).into_owned(),
        )
    }

    #[test]
    fn prefix_mode_prints_whole_lines_per_node() {
        let mut v = FanView::new(&info(), Mode::Prefix);
        assert_eq!(
            text(&v.output(0, OutStream::Stdout, b"one\ntw")).0,
            "a: one\n"
        );
        assert_eq!(text(&v.output(1, OutStream::Stdout, b"b1\n")).0, "b: b1\n");
        assert_eq!(
            text(&v.output(0, OutStream::Stderr, b"oops\n")).1,
            "a: oops\n"
        );
        assert_eq!(
            text(&v.output(0, OutStream::Stdout, b"o\nthree")).0,
            "a: two\n"
        );
        let end = v.ended(0, &job(5, "exited", Some(2)));
        assert_eq!(
            text(&end),
            ("a: three\n".into(), "a: [exit 2 (job 5)]\n".into())
        );
        let ok = v.ended(1, &job(6, "exited", Some(0)));
        assert_eq!(text(&ok), (String::new(), String::new()));
        let long = vec![b'x'; MAX_LINE + 10];
        let w = v.output(1, OutStream::Stdout, &long);
        assert_eq!(
            w.out.len(),
            MAX_LINE + 10 + 4,
            "a huge line is printed, not kept"
        );
    }

    #[test]
    fn group_and_json_modes_print_when_a_node_ends() {
        let mut g = FanView::new(&info(), Mode::Group);
        assert_eq!(g.output(1, OutStream::Stdout, b"hello"), Writes::default());
        g.output(1, OutStream::Stderr, b"warn\n");
        let w = g.ended(1, &job(6, "timed-out", None));
        assert_eq!(
            text(&w),
            (
                "── b: timed out (job 6) ──\nhello\n".into(),
                "warn\n".into()
            )
        );
        let mut j = FanView::new(&info(), Mode::Json);
        j.output(0, OutStream::Stdout, b"out");
        let big = vec![b'y'; KEEP + 1];
        j.output(0, OutStream::Stderr, &big);
        let w = j.ended(0, &job(5, "exited", Some(0)));
        let v: serde_json::Value = serde_json::from_slice(&w.out).unwrap();
        assert_eq!(v["node"], "a");
        assert_eq!(v["job"], 5);
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["stdout"], "out");
        assert_eq!(v["stderr"].as_str().unwrap().len(), KEEP);
        assert_eq!(v["cut"], true);
        assert_eq!(w.out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    }
}
