//! The dashboard's pages and actions: each handler asks the gateway as the
//! home's credential and renders what it got (`render`). The gate in
//! `lib.rs` has already checked the request.

use super::*;

pub(crate) async fn job_list(
    app: &App,
    limit: u32,
    before: Option<u64>,
) -> Result<Vec<JobInfo>, ClientError> {
    match app
        .gw
        .call(Request::JobList {
            limit,
            before,
            on_behalf_of: None,
        })
        .await?
    {
        ApiResponse::Jobs(j) => Ok(j),
        r => Err(unexpected(r)),
    }
}

pub(crate) async fn summary(app: &App) -> Result<proto::LabSummary, ClientError> {
    match app.gw.call(Request::LabSummary).await? {
        ApiResponse::LabSummary(s) => Ok(s),
        r => Err(unexpected(r)),
    }
}

/// Jobs the overview reads for its recent failures.
pub(crate) const RECENT_JOBS: u32 = 200;

pub(crate) async fn overview(State(app): State<Arc<App>>, h: HeaderMap) -> Response {
    let (s, recent) = tokio::join!(summary(&app), job_list(&app, RECENT_JOBS, None));
    match (s, recent) {
        (Ok(s), Ok(recent)) => {
            let body = render::overview(&s, &recent, unix_now());
            reply(&app, &h, "Overview", "/", true, body)
        }
        (Err(e), _) | (_, Err(e)) => failed(&app, e),
    }
}

pub(crate) async fn fetch_node_page(
    app: &App,
    after: Option<String>,
) -> Result<Vec<proto::NodeInfo>, ClientError> {
    match app
        .gw
        .call(Request::NodePage { after, limit: PAGE })
        .await?
    {
        ApiResponse::Nodes(n) => Ok(n),
        r => Err(unexpected(r)),
    }
}

/// The name to page on from, if `page` was full.
pub(crate) fn next_name(page: &[proto::NodeInfo]) -> Option<String> {
    (page.len() as u32 == PAGE)
        .then(|| page.last().map(|n| n.name.clone()))
        .flatten()
}

#[derive(serde::Deserialize)]
pub(crate) struct GpuQuery {
    after: Option<String>,
}

/// Each GPU's health on `names` (an older gateway answers an error: then
/// none, and cards follow their node's health as before).
pub(crate) async fn gpu_health(
    app: &App,
    names: Vec<String>,
) -> Vec<(String, Vec<proto::GpuHealth>)> {
    match app.gw.call(Request::GpuHealth { names }).await {
        Ok(ApiResponse::GpuHealth(h)) => h,
        _ => Vec::new(),
    }
}

pub(crate) async fn history(
    app: &App,
    names: Vec<String>,
) -> Result<Vec<proto::NodeHistory>, ClientError> {
    match app.gw.call(Request::NodeHistory { names }).await? {
        ApiResponse::NodeHistory(h) => Ok(h),
        r => Err(unexpected(r)),
    }
}

/// The jobs holding a GPU of `nodes`, by id, from the latest
/// [`HOLDER_JOBS`] jobs.
pub(crate) async fn holders(
    app: &App,
    nodes: &[proto::NodeInfo],
) -> Result<HashMap<u64, JobInfo>, ClientError> {
    let held = held_jobs(nodes);
    if held.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(holders_among(
        &held,
        &job_list(app, HOLDER_JOBS, None).await?,
    ))
}

/// The ids of the jobs that hold a GPU of `nodes`, by their heartbeats.
fn held_jobs(nodes: &[proto::NodeInfo]) -> std::collections::HashSet<u64> {
    nodes
        .iter()
        .filter_map(|n| n.telemetry.as_ref())
        .flat_map(|t| t.gpus.iter().filter_map(|g| g.job))
        .collect()
}

/// The jobs among `jobs` whose ids are `held`, by id.
fn holders_among(held: &std::collections::HashSet<u64>, jobs: &[JobInfo]) -> HashMap<u64, JobInfo> {
    jobs.iter()
        .filter(|j| held.contains(&j.id))
        .map(|j| (j.id, j.clone()))
        .collect()
}

pub(crate) async fn gpus(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Query<GpuQuery>,
) -> Response {
    let page = match fetch_node_page(&app, q.after.clone()).await {
        Ok(n) => n,
        Err(e) => return failed(&app, e),
    };
    let names: Vec<String> = page.iter().map(|n| n.name.clone()).collect();
    let (hist, held, health) = tokio::join!(
        history(&app, names.clone()),
        holders(&app, &page),
        gpu_health(&app, names)
    );
    match (hist, held) {
        (Ok(hist), Ok(held)) => {
            let next = next_name(&page);
            let body = render::gpus(&page, &health, &hist, &held, unix_now(), next.as_deref());
            reply(&app, &h, "GPUs", "/gpus", true, body)
        }
        (Err(e), _) | (_, Err(e)) => failed(&app, e),
    }
}

/// `GET /nodes`: a page of nodes by name (the gateway's `NodePage`).
pub(crate) async fn nodes(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Query<GpuQuery>,
) -> Response {
    match fetch_node_page(&app, q.after.clone()).await {
        Ok(page) => {
            let next = next_name(&page);
            let names = page.iter().map(|n| n.name.clone()).collect();
            let health = gpu_health(&app, names).await;
            let body = render::nodes(&page, &health, unix_now(), next.as_deref());
            reply(&app, &h, "Nodes", "/nodes", true, body)
        }
        Err(e) => failed(&app, e),
    }
}

pub(crate) async fn show_node(app: &App, name: &str) -> Result<proto::NodeInfo, ClientError> {
    match app
        .gw
        .call(Request::NodeShow {
            name: name.to_string(),
        })
        .await?
    {
        ApiResponse::Node(n) => Ok(n),
        r => Err(unexpected(r)),
    }
}

/// `GET /nodes/NAME`: one node, its GPUs' history, and its jobs among the
/// latest [`HOLDER_JOBS`].
pub(crate) async fn node(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let n = match show_node(&app, &name).await {
        Ok(n) => n,
        Err(e) => return failed(&app, e),
    };
    let (hist, recent, health) = tokio::join!(
        history(&app, vec![n.name.clone()]),
        job_list(&app, HOLDER_JOBS, None),
        gpu_health(&app, vec![n.name.clone()])
    );
    let health = health
        .into_iter()
        .next()
        .map(|(_, h)| h)
        .unwrap_or_default();
    match (hist, recent) {
        (Ok(hist), Ok(recent)) => {
            let holders = holders_among(&held_jobs(std::slice::from_ref(&n)), &recent);
            let mine: Vec<JobInfo> = recent
                .into_iter()
                .filter(|j| j.node == n.name)
                .take(PAGE as usize)
                .collect();
            let body = render::node(
                &n,
                &health,
                hist.first(),
                &mine,
                &holders,
                &app.csrf,
                unix_now(),
                !app.member,
            );
            reply(&app, &h, &format!("Node {}", n.name), "/nodes", true, body)
        }
        (Err(e), _) | (_, Err(e)) => failed(&app, e),
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct JobsQuery {
    before: Option<u64>,
    state: Option<String>,
    node: Option<String>,
}

pub(crate) async fn jobs(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Query<JobsQuery>,
) -> Response {
    match job_list(&app, PAGE, q.before).await {
        Ok(list) => {
            let next = (list.len() as u32 == PAGE)
                .then(|| list.last().map(|j| j.id))
                .flatten();
            let state = q.state.as_deref().filter(|s| !s.is_empty());
            let node = q.node.as_deref().filter(|s| !s.is_empty());
            let body = render::jobs(&list, state, node, unix_now(), next);
            reply(&app, &h, "Jobs", "/jobs", true, body)
        }
        Err(e) => failed(&app, e),
    }
}

pub(crate) async fn show(app: &App, id: u64) -> Result<JobInfo, ClientError> {
    match app
        .gw
        .call(Request::JobShow {
            id,
            on_behalf_of: None,
        })
        .await?
    {
        ApiResponse::Job(j) => Ok(j),
        r => Err(unexpected(r)),
    }
}

/// The GPU indices `node`'s latest heartbeat shows job `id` holding.
pub fn held_gpus(node: &proto::NodeInfo, id: u64) -> Vec<u32> {
    node.telemetry
        .iter()
        .flat_map(|t| t.gpus.iter())
        .filter(|g| g.job == Some(id))
        .map(|g| g.index)
        .collect()
}

pub(crate) async fn job(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let j = match show(&app, id).await {
        Ok(j) => j,
        Err(e) => return failed(&app, e),
    };
    // Which GPUs it holds, while it holds some: from its node's telemetry.
    // Not knowing (the node is gone, say) is no reason to fail the page.
    let held = if j.gpus > 0 && !j.is_terminal() && !j.node.is_empty() {
        show_node(&app, &j.node)
            .await
            .ok()
            .map(|n| held_gpus(&n, id))
    } else {
        None
    };
    // Which physical GPUs it held (an older gateway answers an error).
    let hardware = if j.gpus > 0 {
        match app
            .gw
            .call(Request::JobGpus {
                id,
                on_behalf_of: None,
            })
            .await
        {
            Ok(ApiResponse::JobGpus(g)) => g,
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let mut body = render::job(&j, held.as_deref(), &hardware, &app.csrf, unix_now());
    // Its artifacts, with links (an older gateway answers an error).
    if let Ok(ApiResponse::Artifacts(a)) = app
        .gw
        .call(Request::JobArtifacts {
            id,
            on_behalf_of: None,
        })
        .await
    {
        body.push_str(&render::artifacts(&a));
    }
    reply(&app, &h, &format!("Job {id}"), "/jobs", false, body)
}

#[derive(serde::Deserialize)]
pub(crate) struct ArtifactQuery {
    name: String,
}

/// `GET /jobs/ID/artifact?name=NAME`: one stored artifact, as a download,
/// streamed from the gateway (which checked its checksum on arrival), with
/// the job page's authorization.
pub(crate) async fn job_artifact(
    State(app): State<Arc<App>>,
    Path(id): Path<u64>,
    Query(q): Query<ArtifactQuery>,
) -> Response {
    let client = match app.gw.get().await {
        Ok(c) => c,
        Err(e) => return failed(&app, e),
    };
    let (info, recv) = match client.open_artifact(id, &q.name, None).await {
        Ok(x) => x,
        Err(e) => return failed(&app, e),
    };
    let chunks = futures_util::stream::unfold(recv, |mut r| async move {
        match r.read_chunk(256 * 1024, true).await {
            Ok(Some(c)) => Some((Ok::<_, std::io::Error>(c.bytes), r)),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), r)),
        }
    });
    let file = render::download_name(&info.name);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, info.size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

/// Most bytes of a session recording the job page's player fetches.
pub const MAX_CAST: usize = 16 << 20;

/// A job's session recording (asciicast v2), for the job page's player:
/// every page of it from the gateway, for whoever may see the job.
pub(crate) async fn job_cast(State(app): State<Arc<App>>, Path(id): Path<u64>) -> Response {
    let mut cast: Vec<u8> = Vec::new();
    loop {
        let page = app
            .gw
            .call(Request::JobRecording {
                id,
                offset: cast.len() as u64,
            })
            .await;
        match page {
            Ok(ApiResponse::Recording { data, total }) => {
                let empty = data.is_empty();
                cast.extend_from_slice(&data);
                if empty || cast.len() as u64 >= total {
                    break;
                }
                if cast.len() > MAX_CAST {
                    return (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "the recording is larger than the page plays ({} MiB); 'openclaw job replay {id}' plays it",
                            MAX_CAST >> 20
                        ),
                    )
                        .into_response();
                }
            }
            Ok(r) => return failed(&app, unexpected(r)),
            Err(e) => return failed(&app, e),
        }
    }
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        cast,
    )
        .into_response()
}

/// How much of each stream a job page shows when it opens, and most of a
/// log one response sends.
pub const LOG_TAIL: u64 = 512 * 1024;

/// How long the browser waits before it asks for more of a running job's
/// log (the SSE `retry`).
pub const LOG_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a first look at a log starts: the last [`LOG_TAIL`] bytes of each
/// stream.
pub fn tail_offsets(stdout_bytes: u64, stderr_bytes: u64) -> [u64; 2] {
    [
        stdout_bytes.saturating_sub(LOG_TAIL),
        stderr_bytes.saturating_sub(LOG_TAIL),
    ]
}

/// Parses an SSE `Last-Event-ID` of this stream: `STDOUT:STDERR` offsets.
pub fn parse_offsets(id: Option<&str>) -> [u64; 2] {
    id.and_then(|s| s.split_once(':'))
        .and_then(|(a, b)| Some([a.parse().ok()?, b.parse().ok()?]))
        .unwrap_or([0, 0])
}

/// Where a log response starts, and how many bytes of each stream it
/// leaves out: from the offsets the browser last saw (`Last-Event-ID`;
/// none on a first look), but never more than [`LOG_TAIL`] before the end
/// of a stream, so a first look, or a browser that fell behind, gets the
/// tail and a note, not gigabytes.
pub fn log_start(last: Option<&str>, stdout_bytes: u64, stderr_bytes: u64) -> ([u64; 2], [u64; 2]) {
    let seen = parse_offsets(last);
    let tail = tail_offsets(stdout_bytes, stderr_bytes);
    let from = [seen[0].max(tail[0]), seen[1].max(tail[1])];
    (from, [from[0] - seen[0], from[1] - seen[1]])
}

/// `GET /jobs/ID/log`: the job's output as server-sent events, from the
/// offsets the browser last saw ([`log_start`]).
///
/// A response never waits for output: it sends what the gateway has
/// stored (at most [`LOG_TAIL`] bytes) and ends. For a job still running
/// it ends with a `more` event carrying `retry` ([`LOG_POLL`]), and the
/// browser's EventSource asks again from its `Last-Event-ID`; for a job
/// that had ended when the response began, it sends the rest and `end`.
/// No request stays open, so pages settle: a live stream held open would
/// keep headless Chromium's `--virtual-time-budget` (and any "network
/// idle" wait) from ever finishing.
pub(crate) async fn job_log(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let last = hdr(&h, header::HeaderName::from_static("last-event-id"));
    let j = match show(&app, id).await {
        Ok(j) => j,
        Err(e) => return failed(&app, e),
    };
    let (from, skipped) = log_start(last, j.stdout_bytes, j.stderr_bytes);
    // An ended job's stream ends by itself after its last byte; a running
    // job is read only as far as what is stored now.
    let ended = j.is_terminal();
    let client = match app.gw.get().await {
        Ok(c) => c,
        Err(e) => return failed(&app, e),
    };
    let recv = match client
        .open(Request::JobAttach {
            id,
            follow: ended,
            stdout_from: from[0],
            stderr_from: from[1],
            on_behalf_of: None,
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return failed(&app, e),
    };
    struct Tail {
        client: Arc<client::Client>,
        recv: client::RecvStream,
        offsets: [u64; 2],
        sent: u64,
        done: bool,
        skipped: Option<[u64; 2]>,
        ended: bool,
    }
    let state = Tail {
        client,
        recv,
        offsets: from,
        sent: 0,
        done: false,
        skipped: Some(skipped).filter(|s| *s != [0, 0]),
        ended,
    };
    let more = || Event::default().event("more").retry(LOG_POLL).data("");
    let events = futures_util::stream::unfold(state, move |mut s| async move {
        if s.done {
            return None;
        }
        if let Some(gap) = s.skipped.take() {
            let ev = Event::default()
                .event("skipped")
                .id(format!("{}:{}", s.offsets[0], s.offsets[1]))
                .data(format!("{} {}", gap[0], gap[1]));
            return Some((Ok::<_, std::convert::Infallible>(ev), s));
        }
        if s.sent >= LOG_TAIL {
            // Enough for one response; the browser asks for the rest.
            s.done = true;
            return Some((Ok(more()), s));
        }
        loop {
            match s.client.next_event(&mut s.recv).await {
                Ok(Some(JobEvent::Output { stream, data })) => {
                    let i = usize::from(stream == OutStream::Stderr);
                    // Saturating: the offsets came from the browser.
                    s.offsets[i] = s.offsets[i].saturating_add(data.len() as u64);
                    s.sent += data.len() as u64;
                    // JSON keeps newlines and carriage returns intact.
                    let text =
                        serde_json::Value::String(String::from_utf8_lossy(&data).into_owned())
                            .to_string();
                    let ev = Event::default()
                        .event(if i == 0 { "out" } else { "err" })
                        .id(format!("{}:{}", s.offsets[0], s.offsets[1]))
                        .data(text);
                    return Some((Ok(ev), s));
                }
                Ok(Some(JobEvent::End(j))) => {
                    s.done = true;
                    if !s.ended {
                        // Running when this response began (it may have
                        // ended since): the next one reads on, to the end.
                        return Some((Ok(more()), s));
                    }
                    let ev = Event::default().event("end").data(format!(
                        "{} {}",
                        j.state,
                        j.own_exit_code().map(|c| c.to_string()).unwrap_or_default()
                    ));
                    return Some((Ok(ev), s));
                }
                Ok(Some(JobEvent::Error(e))) => {
                    s.done = true;
                    return Some((Ok(Event::default().event("problem").data(e.message)), s));
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => {
                    // The browser asks again with the last offsets it saw.
                    return None;
                }
            }
        }
    });
    Sse::new(events).into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct ActionForm {
    csrf: String,
    plan_digest: Option<String>,
}

pub(crate) async fn job_action(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(u64, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    // The gate has checked the base, Host, the secret and Origin.
    if !guard::csrf_ok(&form.csrf, &app.csrf) {
        return refusal(guard::Refusal::Csrf, &app);
    }
    let req = match action.as_str() {
        "approve" => Request::JobApprove {
            id,
            plan_digest: form.plan_digest.clone(),
            on_behalf_of: None,
        },
        "deny" => Request::JobDeny {
            id,
            reason: Some("denied from the dashboard".into()),
            on_behalf_of: None,
        },
        "cancel" => Request::JobCancel {
            id,
            on_behalf_of: None,
        },
        _ => return (StatusCode::NOT_FOUND, "no such action").into_response(),
    };
    match app.gw.call(req).await {
        Ok(_) => Redirect::to(&app.base.at(&format!("/jobs/{id}"))).into_response(),
        Err(e) => failed(&app, e),
    }
}

pub(crate) async fn enrollments(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Query(q): Query<GpuQuery>,
) -> Response {
    if app.member {
        let body = "<h1>Enrollments</h1><p>Enrollments are for admins: this dashboard runs \
                    with a lab member's credential (role user).</p>"
            .to_string();
        return reply(&app, &h, "Enrollments", "/enrollments", false, body);
    }
    let (s, page) = tokio::join!(summary(&app), fetch_node_page(&app, q.after.clone()));
    match (s, page) {
        (Ok(s), Ok(page)) => {
            let next = next_name(&page);
            let body =
                render::enrollments(&s.pending, &page, &app.csrf, unix_now(), next.as_deref());
            reply(&app, &h, "Enrollments", "/enrollments", true, body)
        }
        (Err(e), _) | (_, Err(e)) => failed(&app, e),
    }
}

/// The first value of form field `key`.
pub(crate) fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The gateway request a node action form asks for. For `approve`, the
/// form's fields map onto `NodeApprove`: `fingerprint`; `labels` (commas
/// or spaces) plus each ticked `propose` box as the labels to confirm
/// (`None` when the form has neither, so the token's stand); `gpus` as the
/// GPU cap (`None` when empty, so the current one stands). The gateway
/// checks the labels and the cap like the CLI's.
pub fn node_request(
    name: &str,
    action: &str,
    fields: &[(String, String)],
) -> Result<Request, (StatusCode, String)> {
    let name = name.to_string();
    match action {
        "approve" => {}
        "reject" => return Ok(Request::NodeReject { name }),
        "revoke" => return Ok(Request::NodeRevoke { name }),
        _ => return Err((StatusCode::NOT_FOUND, "no such action".into())),
    }
    let typed = field(fields, "labels");
    let ticked = fields
        .iter()
        .filter(|(k, _)| k == "propose")
        .map(|(_, v)| v.as_str());
    let mut labels: Vec<String> = Vec::new();
    for l in typed
        .into_iter()
        .flat_map(|t| t.split(|c: char| c == ',' || c.is_whitespace()))
        .chain(ticked)
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if !labels.iter().any(|x| x == l) {
            labels.push(l.to_string());
        }
    }
    let has_labels = typed.is_some() || fields.iter().any(|(k, _)| k == "propose");
    let gpus = match field(fields, "gpus").map(str::trim).filter(|g| !g.is_empty()) {
        None => None,
        Some(g) => Some(g.parse::<u32>().map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "GPUs: {:?} is not a whole number of GPUs; leave it empty to keep the cap as it is",
                    proto::names::printable(g, 20)
                ),
            )
        })?),
    };
    Ok(Request::NodeApprove {
        name,
        fingerprint: field(fields, "fingerprint")
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string),
        labels: has_labels.then_some(labels),
        gpus,
    })
}

/// Where a node action goes back to, as a route under the base: the
/// node's page when it came from there (and the name is a node name), else
/// the enrollments.
pub fn node_return(name: &str, fields: &[(String, String)]) -> String {
    if field(fields, "from") == Some("node") && proto::names::validate_name(name).is_ok() {
        format!("/nodes/{name}")
    } else {
        "/enrollments".into()
    }
}

pub(crate) async fn node_action(
    State(app): State<Arc<App>>,
    Path((name, action)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    // The gate has checked the base, Host, the secret and Origin.
    if !guard::csrf_ok(field(&fields, "csrf").unwrap_or_default(), &app.csrf) {
        return refusal(guard::Refusal::Csrf, &app);
    }
    let req = match node_request(&name, &action, &fields) {
        Ok(r) => r,
        Err((code, msg)) => {
            let page =
                render::problem_page(app.base.as_str(), "Error", "Not sent to the gateway", &msg);
            return (code, Html(page)).into_response();
        }
    };
    match app.gw.call(req).await {
        Ok(_) => Redirect::to(&app.base.at(&node_return(&name, &fields))).into_response(),
        Err(e) => failed(&app, e),
    }
}

/// The usage page: the last week's GPU use and the queue in order.
pub(crate) async fn usage(State(app): State<Arc<App>>, h: HeaderMap) -> Response {
    let (u, q) = tokio::join!(
        app.gw.call(Request::Usage {
            since_secs: 7 * 86_400,
            by: proto::UsageBy::User,
            on_behalf_of: None,
        }),
        app.gw.call(Request::Queue { on_behalf_of: None })
    );
    match (u, q) {
        (Ok(ApiResponse::Usage(u)), Ok(ApiResponse::Queue(q))) => {
            let body = render::usage(&u, &q);
            reply(&app, &h, "Usage", "/usage", true, body)
        }
        (Err(e), _) | (_, Err(e)) => failed(&app, e),
        (Ok(r), _) => failed(&app, unexpected(r)),
    }
}
