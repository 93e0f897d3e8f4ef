//! Following a job to its end, and resuming after the gateway goes away.
//!
//! This is the one implementation of "follow job N": `openclaw run`,
//! `openclaw job logs --follow` and every chat front end call
//! [`follow_job`] (a fan-out: [`crate::fanout::follow_fanout`], which
//! resumes the same way). Output is counted per stream as it is handed to the
//! caller; when the stream breaks (a gateway restart, a dropped
//! connection) the follower reconnects through [`Gateway`] and re-attaches
//! at exactly those offsets, so nothing is lost or repeated.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::Home;
use proto::{ApiError, JobEvent, JobInfo, OutStream, Request};
use tokio::sync::Mutex;

use crate::{Client, ClientError};

/// A gateway connection that is re-established when it drops: one per
/// process, shared by every call and follower.
pub struct Gateway {
    home: Home,
    client: Mutex<Option<Arc<Client>>>,
}

impl Gateway {
    /// A gateway reached with the credential in `home`; connects on first use.
    pub fn new(home: Home) -> Gateway {
        Gateway {
            home,
            client: Mutex::new(None),
        }
    }

    /// A gateway whose first connection is already open.
    pub fn with_client(home: Home, client: Arc<Client>) -> Gateway {
        Gateway {
            home,
            client: Mutex::new(Some(client)),
        }
    }

    /// The open connection, or a new one when there is none or it closed.
    pub async fn get(&self) -> Result<Arc<Client>, ClientError> {
        let mut g = self.client.lock().await;
        if let Some(c) = g
            .as_ref()
            .filter(|c| c.connection().close_reason().is_none())
        {
            return Ok(c.clone());
        }
        let c = Arc::new(Client::connect(&self.home).await?);
        *g = Some(c.clone());
        Ok(c)
    }

    /// Closes the current connection, if any (see [`Client::close`]).
    pub async fn close(&self) {
        let current = self.client.lock().await.take();
        if let Some(c) = current {
            c.close().await;
        }
    }

    /// One call over the current connection.
    pub async fn call(&self, req: Request) -> Result<proto::Response, ClientError> {
        self.get().await?.call(req).await
    }
}

/// What a follower hands its caller, in order.
#[derive(Debug)]
pub enum Followed<'a> {
    /// The job was accepted, or changed state (not its end).
    State(&'a JobInfo),
    /// Output, exactly once per byte.
    Output(OutStream, &'a [u8]),
    /// The gateway went away; the follower is reconnecting.
    Reconnecting {
        /// The job.
        id: u64,
        /// What happened.
        why: &'a str,
    },
    /// Re-attached at these stdout and stderr offsets.
    Resumed {
        /// The job.
        id: u64,
        /// Bytes of stdout and stderr already handed over.
        offsets: [u64; 2],
    },
}

/// Following ended without the job's end.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The gateway refused (unknown job, not yours, refused by policy).
    #[error("{}", .0.message)]
    Api(ApiError),
    /// The gateway stayed unreachable for the whole reconnect window.
    #[error(
        "lost the gateway while following job {id} and could not reconnect ({why}); the job may still be running: resume with 'openclaw job logs {id} --follow'"
    )]
    Lost {
        /// The job.
        id: u64,
        /// The last reason.
        why: String,
    },
    /// The gateway stayed unreachable for the whole reconnect window
    /// while following a fan-out.
    #[error(
        "lost the gateway while following fan-out {id} and could not reconnect ({why}); its jobs go on: see 'openclaw job list'"
    )]
    FanLost {
        /// The fan-out.
        id: u64,
        /// The last reason.
        why: String,
    },
    /// The gateway refused this credential (revoked, expired): no retry.
    #[error("{0}")]
    Refused(String),
    /// The stream broke before the job had an id (a `JobRun` not yet accepted).
    #[error(
        "lost the gateway before the job was accepted ({0}); check 'openclaw job list' before retrying"
    )]
    NotAccepted(String),
}

/// How to follow.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Whose job, for a bot acting for a chat user.
    pub on_behalf_of: Option<String>,
    /// How long to keep trying to reach a gateway that went away.
    pub reconnect_for: Duration,
    /// Pause between reconnect attempts.
    pub retry_every: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            on_behalf_of: None,
            reconnect_for: Duration::from_secs(120),
            retry_every: Duration::from_millis(250),
        }
    }
}

/// Where to start following.
pub enum Start {
    /// A `JobRun` stream already opened on `client`; the job's id comes
    /// with its `Accepted` event.
    Run(Arc<Client>, quinn::RecvStream),
    /// A stream of job `.0` already opened on `.1` (its `Accepted` read).
    Stream(u64, Arc<Client>, quinn::RecvStream),
    /// Attach to an existing job from its first byte.
    Attach(u64),
}

/// Follows a job to its end, handing state changes and output to `sink`,
/// and returns the job as it ended. Reconnects and resumes (see the module
/// docs) for up to `opts.reconnect_for`.
pub async fn follow_job(
    gw: &Gateway,
    start: Start,
    opts: &FollowOptions,
    mut sink: impl FnMut(Followed<'_>),
) -> Result<JobInfo, FollowError> {
    let mut offsets = [0u64; 2];
    let (mut id, (mut client, mut stream)) = match start {
        Start::Run(c, r) => (None, (c, r)),
        Start::Stream(id, c, r) => (Some(id), (c, r)),
        Start::Attach(id) => (Some(id), attach(gw, id, offsets, opts).await?),
    };
    loop {
        let lost = loop {
            let event = client
                .next_event_streaming(&mut stream, |s, data| {
                    offsets[usize::from(s == OutStream::Stderr)] += data.len() as u64;
                    sink(Followed::Output(s, data));
                })
                .await;
            match event {
                Ok(Some(JobEvent::End(info))) => return Ok(info),
                Ok(Some(JobEvent::Error(e))) => return Err(FollowError::Api(e)),
                Ok(Some(JobEvent::Accepted(info) | JobEvent::State(info))) => {
                    id = Some(info.id);
                    sink(Followed::State(&info));
                }
                Ok(Some(JobEvent::Output { stream: s, data })) => {
                    offsets[usize::from(s == OutStream::Stderr)] += data.len() as u64;
                    sink(Followed::Output(s, &data));
                }
                Ok(None) => break lost_reason(&client, None)?,
                Err(e) => break lost_reason(&client, Some(e))?,
            }
        };
        let Some(job) = id else {
            return Err(FollowError::NotAccepted(lost));
        };
        sink(Followed::Reconnecting {
            id: job,
            why: &lost,
        });
        (client, stream) = attach(gw, job, offsets, opts).await?;
        sink(Followed::Resumed { id: job, offsets });
    }
}

/// Attaches to job `id` at `offsets`, retrying while the gateway is away.
async fn attach(
    gw: &Gateway,
    id: u64,
    offsets: [u64; 2],
    opts: &FollowOptions,
) -> Result<(Arc<Client>, quinn::RecvStream), FollowError> {
    let lost = |why| FollowError::Lost { id, why };
    retrying(opts, lost, || async {
        let c = gw.get().await?;
        let r = c
            .open(Request::JobAttach {
                id,
                follow: true,
                stdout_from: offsets[0],
                stderr_from: offsets[1],
                on_behalf_of: opts.on_behalf_of.clone(),
            })
            .await?;
        Ok((c, r))
    })
    .await
}

/// Why a followed stream broke (`err`, or `None` when it ended without
/// its last event): the reason to reconnect, or the refusal that ends
/// following for good. Shared by the job and fan-out followers.
pub(crate) fn lost_reason(
    client: &Client,
    err: Option<ClientError>,
) -> Result<String, FollowError> {
    let e = match err {
        Some(e) => e,
        None => match client.connection().close_reason() {
            Some(c) => crate::connection_error(client.addr(), &c),
            None => return Ok("the gateway ended the stream".to_string()),
        },
    };
    match e {
        ClientError::Refused { msg } => Err(FollowError::Refused(msg)),
        e => Ok(e.to_string()),
    }
}

/// Runs `once` until it succeeds, the gateway refuses, or
/// `opts.reconnect_for` has passed (then `lost` with the last reason),
/// pausing `opts.retry_every` between tries. Shared by the job and
/// fan-out followers.
pub(crate) async fn retrying<T, F: Future<Output = Result<T, ClientError>>>(
    opts: &FollowOptions,
    lost: impl FnOnce(String) -> FollowError,
    mut once: impl FnMut() -> F,
) -> Result<T, FollowError> {
    let deadline = Instant::now() + opts.reconnect_for;
    loop {
        match once().await {
            Ok(t) => return Ok(t),
            Err(ClientError::Api(e)) => return Err(FollowError::Api(e)),
            Err(ClientError::Refused { msg }) => return Err(FollowError::Refused(msg)),
            Err(e) if Instant::now() >= deadline => return Err(lost(e.to_string())),
            Err(e) => {
                tracing::debug!(error = %e, "re-attach failed; retrying");
                tokio::time::sleep(opts.retry_every).await;
            }
        }
    }
}

/// Reads a job's stored output (both streams, in arrival order) from the
/// stdout and stderr offsets `from` into `sink`, without following; the one
/// reader behind `job logs`, the chat prompt's `logs N` and a bot's
/// snippets and uploads. `None` from the gateway before the end is an
/// error: the read was cut short.
pub async fn read_log(
    client: &Client,
    id: u64,
    on_behalf_of: Option<String>,
    from: [u64; 2],
    mut sink: impl FnMut(OutStream, &[u8]),
) -> Result<(), ClientError> {
    let mut recv = client
        .open(Request::JobAttach {
            id,
            follow: false,
            stdout_from: from[0],
            stderr_from: from[1],
            on_behalf_of,
        })
        .await?;
    loop {
        match client.next_event_streaming(&mut recv, &mut sink).await? {
            Some(JobEvent::Output { stream, data }) => sink(stream, &data),
            Some(JobEvent::Error(e)) => return Err(ClientError::Api(e)),
            Some(JobEvent::End(_)) => return Ok(()),
            Some(JobEvent::State(_) | JobEvent::Accepted(_)) => {}
            None => {
                return Err(ClientError::Protocol(format!(
                    "the gateway ended job {id}'s log early; run 'openclaw job logs {id}' again"
                )));
            }
        }
    }
}

/// A job's whole stored output, for a file upload: `None` when it is over
/// `max` bytes (then [`job_log_tail`] gives its end).
pub async fn job_log(
    gw: &Gateway,
    id: u64,
    on_behalf_of: Option<String>,
    max: usize,
) -> Result<Option<Vec<u8>>, ClientError> {
    let client = gw.get().await?;
    let mut out = Vec::new();
    let mut over = false;
    read_log(&client, id, on_behalf_of, [0, 0], |_, data| {
        over |= out.len() + data.len() > max;
        if !over {
            out.extend_from_slice(data);
        }
    })
    .await?;
    Ok((!over).then_some(out))
}

/// The end of a job's stored output: at most `max` bytes, read from near
/// the end of each stream rather than from its start; the flag says whether
/// earlier output was left out.
pub async fn job_log_tail(
    gw: &Gateway,
    id: u64,
    on_behalf_of: Option<String>,
    max: usize,
) -> Result<(Vec<u8>, bool), ClientError> {
    let client = gw.get().await?;
    let job = match client
        .call(Request::JobShow {
            id,
            on_behalf_of: on_behalf_of.clone(),
        })
        .await?
    {
        proto::Response::Job(j) => j,
        r => return Err(ClientError::Protocol(format!("unexpected reply {r:?}"))),
    };
    let keep = max as u64;
    let from = [
        job.stdout_bytes.saturating_sub(keep),
        job.stderr_bytes.saturating_sub(keep),
    ];
    let mut out: Vec<u8> = Vec::new();
    let mut cut = from != [0, 0];
    read_log(&client, id, on_behalf_of, from, |_, data| {
        out.extend_from_slice(data);
        if out.len() > 2 * max {
            cut = true;
            out.drain(..out.len() - max);
        }
    })
    .await?;
    if out.len() > max {
        cut = true;
        out.drain(..out.len() - max);
    }
    Ok((out, cut))
}
