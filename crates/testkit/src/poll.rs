//! Waiting on the gateway from the test process: one connection through
//! the `client` crate instead of an `openclaw` process per look.

use std::time::{Duration, Instant};

use crate::{Lab, wait_until};

impl Lab {
    /// Waits until job `id` exists and is in `state` (a chat front end
    /// may create it a moment after the test's message); returns the job
    /// as `job show --json` names its fields.
    pub fn wait_job(&self, id: u64, state: &str, timeout: Duration) -> serde_json::Value {
        self.wait_job_for(id, timeout, &format!("job {id} to be {state}"), |j| {
            j["state"] == state
        })
    }

    /// Waits until job `id` exists and `ok` holds for it (its fields as
    /// `job show --json` names them, plus `fanout`). Asks the gateway in
    /// this process: `job show --json` through the real CLI is what
    /// [`Lab::job`] does.
    pub fn wait_job_for(
        &self,
        id: u64,
        timeout: Duration,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool + Send,
    ) -> serde_json::Value {
        let req = || proto::Request::JobShow {
            id,
            on_behalf_of: None,
        };
        self.poll_gateway(timeout, what, req, move |r| match r {
            proto::Response::Job(info) => {
                let j = serde_json::to_value(&info).ok()?;
                ok(&j).then_some(j)
            }
            _ => None,
        })
    }

    /// Waits until `f` returns `Some` for the newest 50 jobs, newest
    /// first, as `job list --json` lists them (plus `fanout`); asks the
    /// gateway in this process. [`Lab::jobs`] runs the real CLI.
    pub fn wait_jobs<T: Send>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(Vec<serde_json::Value>) -> Option<T> + Send,
    ) -> T {
        let req = || proto::Request::JobList {
            limit: 50,
            before: None,
            on_behalf_of: None,
        };
        self.poll_gateway(timeout, what, req, move |r| match r {
            proto::Response::Jobs(jobs) => f(jobs
                .iter()
                .map(|j| serde_json::to_value(j).ok())
                .collect::<Option<Vec<_>>>()?),
            _ => None,
        })
    }

    /// Polls the gateway with `req` every 50 ms, over one connection made
    /// in this process with the gateway home's admin credential (made
    /// again when it breaks: a restart, a failover), until `f` returns
    /// `Some`; panics after `timeout`. No `openclaw` process per look.
    /// Runs on a thread of its own, so async tests may call it too.
    pub fn poll_gateway<T: Send>(
        &self,
        timeout: Duration,
        what: &str,
        req: impl Fn() -> proto::Request + Send,
        mut f: impl FnMut(proto::Response) -> Option<T> + Send,
    ) -> T {
        /// The longest one connect or call may take before it is retried
        /// (a gateway stopped with SIGSTOP answers nothing).
        const ONE_TRY: Duration = Duration::from_secs(5);
        let home = mesh::Home::new(&self.gw_home);
        let deadline = Instant::now() + timeout;
        std::thread::scope(|s| {
            let poll = s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut conn: Option<client::Client> = None;
                    let mut last = String::from("no answer yet");
                    loop {
                        if conn
                            .as_ref()
                            .is_none_or(|c| c.connection().close_reason().is_some())
                        {
                            conn =
                                match tokio::time::timeout(ONE_TRY, client::Client::connect(&home))
                                    .await
                                {
                                    Ok(Ok(c)) => Some(c),
                                    Ok(Err(e)) => {
                                        last = format!("connect: {e}");
                                        None
                                    }
                                    Err(_) => {
                                        last = format!("connect: no answer in {ONE_TRY:?}");
                                        None
                                    }
                                };
                        }
                        if let Some(c) = &conn {
                            match tokio::time::timeout(ONE_TRY, c.call(req())).await {
                                Ok(Ok(r)) => {
                                    last = format!("{r:?}");
                                    if let Some(v) = f(r) {
                                        c.close().await;
                                        return v;
                                    }
                                }
                                Ok(Err(e)) => {
                                    last = format!("call: {e}");
                                    conn = None;
                                }
                                Err(_) => {
                                    last = format!("call: no answer in {ONE_TRY:?}");
                                    conn = None;
                                }
                            }
                        }
                        assert!(
                            Instant::now() < deadline,
                            "timed out after {timeout:?} waiting for {what}; last answer: {last}"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            });
            poll.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Waits until `name` shows `connection`; returns its `node list
    /// --json` entry. Polls the gateway in this process, then reads the
    /// entry through the real CLI.
    pub fn wait_node(&self, name: &str, connection: &str, timeout: Duration) -> serde_json::Value {
        let started = Instant::now();
        let what = format!("{name} to be {connection}");
        self.poll_gateway(
            timeout,
            &what,
            || proto::Request::NodeShow { name: name.into() },
            |r| match r {
                proto::Response::Node(n) if n.connection == connection => Some(()),
                _ => None,
            },
        );
        let left = timeout.saturating_sub(started.elapsed());
        wait_until(left.max(Duration::from_secs(5)), &what, || {
            self.node(name).filter(|n| n["connection"] == connection)
        })
    }
}
