//! What the engine needs of the gateway, as traits: [`client::Gateway`]
//! (a reconnecting QUIC connection) in a bot, a scripted fake in the
//! engine's unit tests. The list pagers ([`node_page`], [`job_page`]) live
//! here too, with [`gpu_health`]: they need only [`Call`], so the CLI's chat prompt shares them
//! over its plain [`client::Client`].

use std::future::Future;

use client::{
    ClientError, FanFollowed, FanStart, FollowError, FollowOptions, Followed, Gateway, Start,
};
use proto::{FanInfo, FanOutSpec, JobInfo, JobSpec, Request, Response};

use chat::render;

/// Nodes asked of the gateway per call while paging a chat node list.
const NODE_BATCH: u32 = 1000;
/// Jobs asked of the gateway per call while paging a chat job list.
const JOB_BATCH: u32 = proto::MAX_JOB_PAGE;
/// Most gateway calls one list answer makes.
const MAX_LIST_CALLS: usize = 1000;

/// One request, one answer.
pub trait Call: Send + Sync {
    /// Sends `req` and waits for its answer.
    fn call(&self, req: Request) -> impl Future<Output = Result<Response, ClientError>> + Send;
}

impl Call for Gateway {
    async fn call(&self, req: Request) -> Result<Response, ClientError> {
        Gateway::call(self, req).await
    }
}

impl Call for client::Client {
    async fn call(&self, req: Request) -> Result<Response, ClientError> {
        client::Client::call(self, req).await
    }
}

/// Why following a job run or a fan-out ended without its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The gateway could not be reached to start it: nothing was sent.
    #[error("cannot reach the gateway: {0}")]
    Unreachable(ClientError),
    /// Following failed after the request went out.
    #[error(transparent)]
    Follow(FollowError),
}

/// The gateway as a chat engine uses it.
pub trait Api: Call + 'static {
    /// Runs a job and follows it to its end (resuming after reconnects),
    /// handing state changes and output to `sink`.
    fn run_job(
        &self,
        spec: JobSpec,
        options: Vec<proto::JobOption>,
        opts: FollowOptions,
        sink: impl FnMut(Followed<'_>) + Send,
    ) -> impl Future<Output = Result<JobInfo, RunError>> + Send;
    /// Runs a fan-out and follows it until every member has ended
    /// (resuming after reconnects), handing what happens to `sink`;
    /// returns the fan-out as it was accepted.
    fn fan_out(
        &self,
        spec: FanOutSpec,
        opts: FollowOptions,
        sink: impl FnMut(FanFollowed<'_>) + Send,
    ) -> impl Future<Output = Result<FanInfo, RunError>> + Send;
    /// A job's whole stored output, `None` when it is over `max` bytes.
    fn log(
        &self,
        id: u64,
        who: Option<String>,
        max: usize,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, ClientError>> + Send;
    /// One stored artifact's bytes (issue 23), checked against its
    /// recorded size and SHA-256.
    fn artifact(
        &self,
        id: u64,
        name: &str,
        who: Option<String>,
    ) -> impl Future<Output = Result<Vec<u8>, ClientError>> + Send;
    /// The end of a job's stored output, at most `max` bytes, and whether
    /// earlier output was left out.
    fn log_tail(
        &self,
        id: u64,
        who: Option<String>,
        max: usize,
    ) -> impl Future<Output = Result<(Vec<u8>, bool), ClientError>> + Send;
}

impl Api for Gateway {
    async fn run_job(
        &self,
        spec: JobSpec,
        options: Vec<proto::JobOption>,
        opts: FollowOptions,
        sink: impl FnMut(Followed<'_>) + Send,
    ) -> Result<JobInfo, RunError> {
        let c = self.get().await.map_err(RunError::Unreachable)?;
        // A plain JobRun without options, so older gateways serve it.
        let req = proto::JobRequest {
            spec,
            follow: proto::Follow::Attached,
            options,
        }
        .into_request();
        let r = c.open(req).await.map_err(RunError::Unreachable)?;
        client::follow_job(self, Start::Run(c, r), &opts, sink)
            .await
            .map_err(RunError::Follow)
    }

    async fn fan_out(
        &self,
        spec: FanOutSpec,
        opts: FollowOptions,
        sink: impl FnMut(FanFollowed<'_>) + Send,
    ) -> Result<FanInfo, RunError> {
        let output = spec.output;
        let c = self.get().await.map_err(RunError::Unreachable)?;
        let r = c
            .open(Request::FanOut(spec))
            .await
            .map_err(RunError::Unreachable)?;
        client::follow_fanout(self, FanStart::Run(c, r), output, &opts, sink)
            .await
            .map_err(RunError::Follow)
    }

    async fn log(
        &self,
        id: u64,
        who: Option<String>,
        max: usize,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        client::job_log(self, id, who, max).await
    }

    async fn log_tail(
        &self,
        id: u64,
        who: Option<String>,
        max: usize,
    ) -> Result<(Vec<u8>, bool), ClientError> {
        client::job_log_tail(self, id, who, max).await
    }

    async fn artifact(
        &self,
        id: u64,
        name: &str,
        who: Option<String>,
    ) -> Result<Vec<u8>, ClientError> {
        let c = self.get().await?;
        crate::artifacts::fetch(&c, id, name, who).await
    }
}

pub(crate) fn unexpected(r: &Response) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {r:?}"))
}

/// Page `page` (from 1) of the nodes a chat node list shows
/// ([`render::listed_node`]), [`render::NODES_PER_PAGE`] to a page, and
/// how many there are in all: what [`render::nodes`] needs. Shared by the
/// bots and the CLI's chat prompt.
pub async fn node_page(
    gw: &impl Call,
    page: u32,
) -> Result<(Vec<proto::NodeInfo>, usize), ClientError> {
    let per = render::NODES_PER_PAGE;
    let skip = usize::try_from(page.max(1) - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(per);
    let mut shown = Vec::new();
    let mut total = 0usize;
    let mut after: Option<String> = None;
    for _ in 0..MAX_LIST_CALLS {
        let batch = match gw
            .call(Request::NodePage {
                after: after.clone(),
                limit: NODE_BATCH,
            })
            .await?
        {
            Response::Nodes(n) => n,
            r => return Err(unexpected(&r)),
        };
        // Names ascend; a page that does not move on is the end.
        let Some(last) = batch.last().map(|n| n.name.clone()) else {
            break;
        };
        if after.as_ref().is_some_and(|a| *a >= last) {
            break;
        }
        after = Some(last);
        for n in batch.into_iter().filter(render::listed_node) {
            if total >= skip && shown.len() < per {
                shown.push(n);
            }
            total += 1;
        }
    }
    Ok((shown, total))
}

/// Each GPU's health on the connected ones of `nodes` (a page of a list),
/// with one `GpuHealth` request per [`proto::MAX_HISTORY_NODES`] of them,
/// for [`proto::NodeInfo::gpu_counts_with`]. A gateway older than GPU
/// health refuses the request: then what was answered so far (usually
/// nothing), and the counts fall back to the plain ones as before; it is
/// asked once, not per chunk, because such a gateway cannot read the
/// request and also closes the connection (a reconnecting
/// [`client::Gateway`] reconnects on its next call). Shared by the bots
/// and the CLI (`node list`, `node show`, its chat prompt).
pub async fn gpu_health(
    gw: &impl Call,
    nodes: &[proto::NodeInfo],
) -> Vec<(String, Vec<proto::GpuHealth>)> {
    let names: Vec<String> = nodes
        .iter()
        .filter(|n| n.connection == "connected" && !n.confirmed_gpus().is_empty())
        .map(|n| n.name.clone())
        .collect();
    let mut all = Vec::new();
    for chunk in names.chunks(proto::MAX_HISTORY_NODES) {
        match gw
            .call(Request::GpuHealth {
                names: chunk.to_vec(),
            })
            .await
        {
            Ok(Response::GpuHealth(h)) => all.extend(h),
            Ok(r) => {
                tracing::debug!(reply = ?r, "unexpected reply to GpuHealth; plain GPU counts");
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "no GPU health (an older gateway?); plain GPU counts");
                break;
            }
        }
    }
    all
}

/// Page `page` (from 1) of the jobs `who` may see, newest first,
/// [`render::JOBS_PER_PAGE`] to a page, and whether older ones follow.
/// The gateway decides what a chat user sees (their own jobs and those
/// they may approve). Shared by the bots and the CLI's chat prompt.
pub async fn job_page(
    gw: &impl Call,
    who: Option<String>,
    page: u32,
) -> Result<(Vec<JobInfo>, bool), ClientError> {
    let per = render::JOBS_PER_PAGE;
    let skip = usize::try_from(page.max(1) - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(per);
    let want = per + 1;
    let mut seen = 0usize;
    let mut out = Vec::new();
    let mut before: Option<u64> = None;
    for _ in 0..MAX_LIST_CALLS {
        let left = (skip + want).saturating_sub(seen);
        let limit = u32::try_from(left).unwrap_or(JOB_BATCH).clamp(1, JOB_BATCH);
        let batch = match gw
            .call(Request::JobList {
                limit,
                before,
                on_behalf_of: who.clone(),
            })
            .await?
        {
            Response::Jobs(j) => j,
            r => return Err(unexpected(&r)),
        };
        // Ids descend; a page that does not move on is the end.
        let Some(last) = batch.last().map(|j| j.id) else {
            break;
        };
        if before.is_some_and(|b| b <= last) {
            break;
        }
        before = Some(last);
        for j in batch {
            if seen >= skip {
                out.push(j);
            }
            seen += 1;
        }
        if out.len() >= want {
            break;
        }
    }
    let more = out.len() > per;
    out.truncate(per);
    Ok((out, more))
}
