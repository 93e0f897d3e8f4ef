//! A swarm of simulated nodes for load: real enrollment (CSR, auto-approve
//! token), real QUIC + mTLS sessions with the node protocol (control
//! stream, heartbeat stream, one stream per job), many connections sharing
//! a few UDP endpoints in one process, so that 10,000 fit on one machine.
//!
//! What is simulated is only the node's work: a job is not a process. The
//! swarm answers `true` (exit 0), `false` (exit 1), `exit N` (exit N) and
//! `echo WORDS` (the words and a newline on stdout, exit 0); anything else
//! fails with a reason. That keeps the gateway, which is what a swarm
//! measures, on its real paths: routing, dispatch, output storage, the end
//! of a job and every heartbeat.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proto::{ControlMsg, Heartbeat, JobCtl, JobFrame, JobPlan, NodeHello, Open, OutStream};
use tokio::sync::{Semaphore, watch};

/// Counters shared by every simulated node.
#[derive(Debug, Default)]
pub struct Counters {
    /// Sessions up now.
    pub connected: AtomicUsize,
    /// Sessions that ended and were dialled again.
    pub reconnects: AtomicU64,
    /// Heartbeats handed to their streams.
    pub heartbeats: AtomicU64,
    /// Jobs received.
    pub jobs: AtomicU64,
    /// Jobs whose end the gateway confirmed (`JobCtl::Done`).
    pub jobs_done: AtomicU64,
}

/// A running swarm; dropping it ends every session.
pub struct Swarm {
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// Node names, in order.
    pub names: Vec<String>,
    stop: watch::Sender<bool>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// How to build a swarm.
#[derive(Debug, Clone)]
pub struct SwarmOptions {
    /// Nodes.
    pub nodes: usize,
    /// Node names are `PREFIX-00001`…
    pub prefix: String,
    /// Labels each node asks for.
    pub labels: Vec<String>,
    /// UDP endpoints the sessions share.
    pub endpoints: usize,
    /// Enrollments in flight at once.
    pub enroll_concurrency: usize,
    /// Runtime worker threads for the swarm itself.
    pub threads: usize,
    /// QUIC keep-alive and idle timeout of each session, as node.toml's
    /// `keep_alive` and `idle_timeout` set them (the agent's defaults are
    /// 1 s and 3 s).
    pub keep_alive: (Duration, Duration),
    /// The gateway's pid, to report the CPU it spent enrolling.
    pub gateway_pid: Option<u32>,
    /// Simulated GPUs each node reports (idle; 0: none).
    pub gpus: u32,
    /// The model name each simulated GPU reports. A node writes what it
    /// likes here: the attack tests make it hostile.
    pub gpu_name: String,
    /// The GPU error each node reports (`gpu_error` in its heartbeat).
    pub gpu_error: Option<String>,
}

impl Default for SwarmOptions {
    fn default() -> Self {
        SwarmOptions {
            nodes: 50,
            prefix: "sim".into(),
            labels: vec!["sim".into()],
            endpoints: 8,
            enroll_concurrency: 64,
            threads: 2,
            keep_alive: (Duration::from_secs(1), Duration::from_secs(3)),
            gpus: 0,
            gpu_name: "Simulated GPU 80GB".into(),
            gpu_error: None,
            gateway_pid: None,
        }
    }
}

/// Timings of a swarm's start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Started {
    /// Enrolling every node (CSR signed, persisted, credential written).
    /// Each node's key is made before this clock starts, as real nodes
    /// each make theirs on their own machine.
    pub enroll: Duration,
    /// CPU time the gateway spent while they enrolled (with
    /// `SwarmOptions::gateway_pid`).
    pub enroll_gateway_cpu: Option<Duration>,
    /// From the first dial until every session was up.
    pub connect: Duration,
}

impl Swarm {
    /// Enrolls `opts.nodes` nodes under `dir` with `token` (an auto-approve
    /// token for `gateway`), then connects them all and waits until every
    /// session is up (or `timeout`).
    pub fn start(
        dir: &std::path::Path,
        gateway: &str,
        token: &str,
        opts: &SwarmOptions,
        timeout: Duration,
    ) -> Result<(Swarm, Started), String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads.max(1))
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = (1..=opts.nodes)
            .map(|i| format!("{}-{i:05}", opts.prefix))
            .collect();
        let counters = Arc::new(Counters::default());
        let (stop, stop_rx) = watch::channel(false);
        let started = rt.block_on(async {
            make_keys(dir, &names).await?;
            let cpu0 = opts.gateway_pid.map(crate::cpu_time);
            let t = Instant::now();
            let configs = enroll_all(dir, gateway, token, &names, opts).await?;
            let enroll = t.elapsed();
            let enroll_gateway_cpu = opts
                .gateway_pid
                .zip(cpu0)
                .map(|(pid, c0)| crate::cpu_time(pid).saturating_sub(c0));
            let remote = mesh::resolve(gateway).await?;
            let endpoints: Vec<quinn::Endpoint> = (0..opts.endpoints.max(1))
                .map(|_| mesh::shared_client_endpoint(remote))
                .collect::<Result<_, _>>()?;
            let t = Instant::now();
            for (i, (name, config)) in names.iter().zip(configs).enumerate() {
                let node = SimNode {
                    name: name.clone(),
                    config,
                    remote,
                    endpoint: endpoints[i % endpoints.len()].clone(),
                    counters: counters.clone(),
                    gpus: opts.gpus.min(64),
                    gpu_name: opts.gpu_name.clone(),
                    gpu_error: opts.gpu_error.clone(),
                };
                tokio::spawn(node.run(stop_rx.clone()));
            }
            let deadline = Instant::now() + timeout;
            while counters.connected.load(Ordering::Relaxed) < names.len() {
                if Instant::now() > deadline {
                    return Err(format!(
                        "only {} of {} nodes connected within {timeout:?}",
                        counters.connected.load(Ordering::Relaxed),
                        names.len()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Started {
                enroll,
                enroll_gateway_cpu,
                connect: t.elapsed(),
            })
        })?;
        Ok((
            Swarm {
                counters,
                names,
                stop,
                rt: Some(rt),
            },
            started,
        ))
    }

    /// Sessions up now.
    pub fn connected(&self) -> usize {
        self.counters.connected.load(Ordering::Relaxed)
    }
}

/// Each node's private key, made (and written 0600) before enrollment is
/// timed: on real nodes every machine makes its own.
async fn make_keys(dir: &std::path::Path, names: &[String]) -> Result<(), String> {
    let dir = dir.to_path_buf();
    let names = names.to_vec();
    tokio::task::spawn_blocking(move || {
        for name in names {
            let home = mesh::Home::new(dir.join(&name));
            home.create().map_err(|e| e.to_string())?;
            let key = pki::generate_key().map_err(|e| e.to_string())?;
            home.write_private(mesh::home::node_files::KEY, key.key_pem.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn enroll_all(
    dir: &std::path::Path,
    gateway: &str,
    token: &str,
    names: &[String],
    opts: &SwarmOptions,
) -> Result<Vec<quinn::ClientConfig>, String> {
    let gate = Arc::new(Semaphore::new(opts.enroll_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(names.len());
    for name in names {
        let home = mesh::Home::new(dir.join(name));
        let o = node::enroll::EnrollOptions {
            token: token.to_string(),
            name: name.clone(),
            labels: opts.labels.clone(),
            gateway: Some(gateway.to_string()),
            wait: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            run_as: None,
            allow_jobs_as_agent_user: true,
        };
        let gate = gate.clone();
        let keep_alive = opts.keep_alive;
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            node::enroll::enroll(&home, &o, &mut |_| {})
                .await
                .map_err(|e| format!("enrolling {}: {e}", o.name))?;
            let (keep, idle) = keep_alive;
            node::agent::load_session_config(
                &home,
                keep,
                idle,
                None,
                mesh::tls::UDP_PAYLOAD_DEFAULT,
            )
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

struct SimNode {
    name: String,
    config: quinn::ClientConfig,
    remote: SocketAddr,
    endpoint: quinn::Endpoint,
    counters: Arc<Counters>,
    gpus: u32,
    gpu_name: String,
    gpu_error: Option<String>,
}

impl SimNode {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut first = true;
        loop {
            if !first {
                self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            tokio::select! {
                r = self.session() => {
                    if let Err(e) = r {
                        tracing_free_log(&self.name, &e);
                    }
                }
                _ = stop.wait_for(|s| *s) => return,
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn session(&self) -> Result<(), String> {
        let conn = self
            .endpoint
            .connect_with(self.config.clone(), self.remote, proto::GATEWAY_SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| mesh::describe_connection_error(&e))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let hello = Open::Control(NodeHello {
            // Protocol 2 (plain heartbeats): the swarm also keeps the
            // gateway's support for older nodes exercised.
            protocol: 2,
            agent_version: "swarm".into(),
            gpus: self.gpus,
            gpus_simulated: self.gpus > 0,
            max_jobs: 64,
        });
        mesh::write_frame(&mut send, &hello)
            .await
            .map_err(|e| e.to_string())?;
        let interval = match mesh::read_frame::<ControlMsg>(&mut recv, proto::MAX_FRAME_LEN).await {
            Ok(Some(ControlMsg::Welcome {
                heartbeat_interval_ms,
                ..
            })) => Duration::from_millis(heartbeat_interval_ms.clamp(100, 60_000)),
            other => return Err(format!("no welcome: {other:?}")),
        };
        let mut hb = conn.open_uni().await.map_err(|e| e.to_string())?;
        mesh::write_frame(&mut hb, &Open::Heartbeat)
            .await
            .map_err(|e| e.to_string())?;
        self.counters.connected.fetch_add(1, Ordering::Relaxed);
        let _up = Decrement(&self.counters.connected);
        let heartbeats = async {
            // Spread the beats over the interval by name: nodes that
            // connected together do not beat together.
            let spread = u64::try_from(interval.as_millis()).unwrap_or(1).max(1);
            let hash = self
                .name
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            tokio::time::sleep(Duration::from_millis(hash % spread)).await;
            node::agent::send_heartbeats(&mut hb, interval, |seq| {
                self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                Heartbeat {
                    seq,
                    gpu_source: if self.gpus > 0 { "simulated" } else { "none" }.into(),
                    gpus: (0..self.gpus)
                        .map(|index| proto::GpuTelemetry {
                            index,
                            name: self.gpu_name.clone(),
                            mem_total: 80 << 30,
                            temp_c: 35,
                            simulated: true,
                            ..Default::default()
                        })
                        .collect(),
                    gpu_error: self.gpu_error.clone(),
                    ..Default::default()
                }
            })
            .await
        };
        let control = async {
            while let Ok(Some(msg)) =
                mesh::read_frame::<ControlMsg>(&mut recv, proto::MAX_FRAME_LEN).await
            {
                if let ControlMsg::RunJob(plan) = msg {
                    self.counters.jobs.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(run_job(conn.clone(), plan, self.counters.clone()));
                }
            }
        };
        tokio::select! {
            e = conn.closed() => Err(mesh::describe_connection_error(&e)),
            () = heartbeats => Err("heartbeat stream failed".into()),
            () = control => Err("control stream ended".into()),
        }
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn tracing_free_log(name: &str, e: &str) {
    // The swarm is a load tool; one line per lost session is enough.
    eprintln!("swarm: {name}: {e}");
}

/// What a simulated job does: its output and exit code, or why it cannot.
pub fn simulate(argv: &[String]) -> Result<(Vec<u8>, i32), String> {
    match argv.first().map(String::as_str) {
        Some("true") => Ok((Vec::new(), 0)),
        Some("false") => Ok((Vec::new(), 1)),
        Some("exit") => argv
            .get(1)
            .and_then(|c| c.parse().ok())
            .map(|c| (Vec::new(), c))
            .ok_or_else(|| "exit needs a number".to_string()),
        Some("echo") => Ok((format!("{}\n", argv[1..].join(" ")).into_bytes(), 0)),
        _ => Err(format!(
            "a simulated node runs only true, false, exit N and echo, not {argv:?}"
        )),
    }
}

async fn run_job(conn: quinn::Connection, plan: JobPlan, counters: Arc<Counters>) {
    let Ok((mut send, mut recv)) = conn.open_bi().await else {
        return;
    };
    let id = plan.job_id;
    let result: Result<(), mesh::StreamError> = async {
        mesh::write_frame(&mut send, &Open::Job { job_id: id }).await?;
        match mesh::read_frame::<JobCtl>(&mut recv, 64 * 1024).await? {
            Some(JobCtl::Resume { .. }) => {}
            _ => return Ok(()),
        }
        match simulate(&plan.argv) {
            Ok((out, code)) => {
                mesh::write_frame(
                    &mut send,
                    &JobFrame::Started {
                        pid: 0,
                        gpus: Vec::new(),
                    },
                )
                .await?;
                if !out.is_empty() {
                    mesh::write_data(&mut send, OutStream::Stdout, 0, out.into()).await?;
                }
                mesh::write_frame(
                    &mut send,
                    &JobFrame::Exit {
                        code,
                        timed_out: false,
                        cancelled: false,
                        killed: 0,
                    },
                )
                .await?;
            }
            Err(reason) => mesh::write_frame(&mut send, &JobFrame::Failed { reason }).await?,
        }
        while let Some(ctl) = mesh::read_frame::<JobCtl>(&mut recv, 64 * 1024).await? {
            if ctl == JobCtl::Done {
                counters.jobs_done.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        Ok(())
    }
    .await;
    let _ = result;
    let _ = send.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_jobs() {
        let s = |v: &[&str]| simulate(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["true"]), Ok((vec![], 0)));
        assert_eq!(s(&["false"]), Ok((vec![], 1)));
        assert_eq!(s(&["exit", "7"]), Ok((vec![], 7)));
        assert_eq!(s(&["echo", "a", "b"]), Ok((b"a b\n".to_vec(), 0)));
        assert!(s(&["rm", "-rf"]).is_err());
        assert!(s(&["exit"]).is_err());
    }
}
