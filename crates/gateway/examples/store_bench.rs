//! Times the state store on a temporary PostgreSQL (started through
//! `testpg`), or on SQLite, with the operations a gateway runs most: node
//! upserts, job submits, state transitions, output offsets and list
//! pages. Not a test: it prints figures and asserts nothing about speed.
//!
//! ```text
//! cargo run -p gateway --example store_bench -- [--engine postgres|sqlite] [--jobs N] [--callers 1,8]
//! ```
//!
//! Each caller runs `--jobs` job lives one after another, nine store
//! operations each: an upsert of its node, a submit, three transitions
//! (queued, starting, running, exited), two output offsets, a page of
//! jobs and a page of nodes. Writes go through `Store::call` (the
//! database thread, as sessions and the job router use it); the two pages
//! through `Store::tx` on the caller's own thread (as API handlers read
//! on tokio's blocking pool).
//! With several callers at once, the database thread's group commit
//! shares transactions among them.

use std::time::{Duration, Instant};

use gateway::store::{JobRow, JobState, NodeRow, NodeState, PgOptions, Store, StoreError, Tx};
use tokio::runtime::Handle;

/// One timed operation: what it was and how long it took.
type Sample = (&'static str, Duration);

/// A write for the database thread.
type Write = Box<dyn FnOnce(&Tx<'_>) -> Result<(), StoreError> + Send>;

fn node(name: &str, at: u64) -> NodeRow {
    NodeRow {
        name: name.into(),
        state: NodeState::Approved,
        labels: vec!["gpu".into(), "bench".into()],
        proposed_labels: vec![],
        max_gpus: Some(8),
        fingerprint: format!("SHA256:{name}"),
        spki: vec![7; 44],
        request_id: format!("req-{name}"),
        requested_at: at,
        request_addr: "127.0.0.1:9".into(),
        token_id: "abcdef".into(),
        cert_der: Some(vec![1; 600]),
        cert_serial: Some(format!("serial-{name}")),
        cert_not_after: Some(at + 86_400),
        last_seen: Some(at),
        last_addr: Some("127.0.0.1:9".into()),
    }
}

fn job(node: &str, at: u64) -> JobRow {
    let plan = proto::JobPlan {
        job_id: 0,
        node: node.into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            "nvidia-smi; python train.py".into(),
        ],
        cwd: Some("/srv/work".into()),
        env: vec![("EPOCHS".into(), "3".into())],
        timeout_secs: Some(3600),
        gpus: 1,
        kill_grace_secs: 10,
        run_as: None,
    };
    JobRow::fresh(
        JobState::Queued,
        node.into(),
        Some("gpu".into()),
        None,
        plan,
        "bench-user".into(),
        "bench-client".into(),
        at,
    )
}

/// Times one store operation.
fn timed<T>(
    out: &mut Vec<Sample>,
    what: &'static str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let t = Instant::now();
    let r = f();
    out.push((what, t.elapsed()));
    r
}

/// One caller, on a thread of its own: `jobs` job lives, one after
/// another. Writes wait on `Store::call` (the database thread); reads run
/// `Store::tx` on this thread, as an API handler on the blocking pool.
fn caller(rt: &Handle, store: &Store, me: usize, jobs: usize) -> Result<Vec<Sample>, StoreError> {
    let mut out = Vec::with_capacity(jobs * 9);
    let name = format!("bench-{me}");
    let call =
        |out: &mut Vec<Sample>, what, f: Write| timed(out, what, || rt.block_on(store.call(f)));
    for n in 0..jobs {
        let at = 1_000_000 + n as u64;
        let row = node(&name, at);
        call(
            &mut out,
            "node upsert",
            Box::new(move |tx| tx.put_node(&row)),
        )?;
        let mut row = job(&name, at);
        let r = row.clone();
        let id = timed(&mut out, "job submit", || {
            rt.block_on(store.call(move |tx| tx.insert_job(&r)))
        })?;
        row.id = id;
        for (from, to) in [
            (JobState::Queued, JobState::Starting),
            (JobState::Starting, JobState::Running),
            (JobState::Running, JobState::Exited),
        ] {
            row.state = to;
            if to == JobState::Exited {
                row.exit_code = Some(0);
                row.finished_at = Some(at + 5);
            }
            let r = row.clone();
            call(
                &mut out,
                "transition",
                Box::new(move |tx| match tx.move_job(&r, from)? {
                    true => Ok(()),
                    false => Err(StoreError::Engine(format!("job {id} did not move to {to}"))),
                }),
            )?;
            if to == JobState::Running {
                for (o, e) in [(4096, 0), (65_536, 512)] {
                    call(
                        &mut out,
                        "output offsets",
                        Box::new(move |tx| tx.set_job_bytes(id, o, e, false)),
                    )?;
                }
            }
        }
        timed(&mut out, "jobs page", || store.tx(|tx| tx.jobs(50, None)))?;
        timed(&mut out, "nodes page", || {
            store.tx(|tx| tx.nodes_page(None, 50))
        })?;
    }
    Ok(out)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn run(
    label: &str,
    rt: &Handle,
    store: &Store,
    callers: usize,
    jobs: usize,
) -> Result<(), StoreError> {
    let t = Instant::now();
    let all: Vec<Sample> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..callers)
            .map(|me| s.spawn(move || caller(rt, store, me, jobs)))
            .collect();
        let mut all = Vec::new();
        for t in threads {
            all.extend(
                t.join()
                    .map_err(|_| StoreError::Stopped("a caller panicked".into()))??,
            );
        }
        Ok::<_, StoreError>(all)
    })?;
    let wall = t.elapsed();
    let mut times: Vec<Duration> = all.iter().map(|s| s.1).collect();
    times.sort();
    println!(
        "{label}callers {callers:>2}: {:>6} ops in {:>6.2} s = {:>7.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
        times.len(),
        wall.as_secs_f64(),
        times.len() as f64 / wall.as_secs_f64(),
        pct(&times, 0.5),
        pct(&times, 0.99),
    );
    for what in [
        "node upsert",
        "job submit",
        "transition",
        "output offsets",
        "jobs page",
        "nodes page",
    ] {
        let mut t: Vec<Duration> = all.iter().filter(|s| s.0 == what).map(|s| s.1).collect();
        t.sort();
        println!(
            "    {what:<15} n {:>6}   p50 {:>6.2} ms   p99 {:>6.2} ms",
            t.len(),
            pct(&t, 0.5),
            pct(&t, 0.99)
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut engine = "postgres".to_string();
    let mut jobs = 200usize;
    let mut callers = vec![1usize, 8];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--engine" => engine = value()?,
            "--jobs" => jobs = value()?.parse()?,
            "--callers" => {
                callers = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; use --engine postgres|sqlite, --jobs N, --callers 1,8"
                )
                .into());
            }
        }
    }
    let dir = tempfile::tempdir()?;
    // Kept alive to the end: dropping it stops the server.
    let mut _server = None;
    let store = match engine.as_str() {
        "sqlite" => Store::open(&dir.path().join("bench.db"))?,
        "postgres" => {
            let server = testpg::Server::start()?;
            let url = server.database()?;
            _server = Some(server);
            let opts = PgOptions {
                url,
                password: None,
                ca_pem: None,
                pool_size: 4,
            };
            Store::open_postgres(&opts)?
        }
        other => return Err(format!("unknown engine {other}; use postgres or sqlite").into()),
    };
    println!("store_bench: {engine}, {jobs} job lives per caller, 9 operations each");
    // Some rows to page through, and a warm pool.
    store.tx(|tx| {
        for n in 0..200 {
            tx.put_node(&node(&format!("idle-{n:03}"), 1))?;
        }
        Ok::<_, StoreError>(())
    })?;
    // The callers' futures need a runtime; they only wait on replies.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    run("warm-up, ", rt.handle(), &store, 1, jobs.min(20))?;
    for c in callers {
        run("", rt.handle(), &store, c, jobs)?;
    }
    Ok(())
}
