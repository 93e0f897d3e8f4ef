//! A node's job stream at the gateway: `Resume`, then the process's start,
//! its output (handed to live followers and to the log writer, exactly
//! once) and its end; detaching and waiting for a re-attachment when the
//! stream breaks.

use std::sync::Arc;
use std::time::Duration;

use proto::{JobCtl, JobFrame, OutStream};
use tokio::sync::{mpsc, watch};

use super::logwriter::{LogFile, LogSink};
use super::{
    CTL_QUEUE, JOB_FRAME_LIMIT, MAX_REASON, Progress, TailChunk, UNFINISHED, end_with_async,
    log_path, output_in_files,
};
use crate::peer::Peer;
use crate::shared::Shared;
use crate::store::JobState;

/// Serves a job stream a node opened.
pub async fn node_job_stream(
    shared: Arc<Shared>,
    peer: Peer,
    id: u64,
    mut send: crate::link::SendHalf,
    mut recv: crate::link::RecvHalf,
) {
    // Control messages (cancel, done) on a bounded channel; acks are
    // cumulative, so only the latest matters: a watch, never a queue.
    let (tx, mut rx) = mpsc::channel::<JobCtl>(CTL_QUEUE);
    let (acks, mut acks_rx) = watch::channel([0u64; 2]);
    let grace = shared.config().kill_grace.as_secs();
    let accepted = shared.jobs.with(|m| match m.jobs.get_mut(&id) {
        Some(j) if j.node == peer.name && j.on_node => {
            // A newer stream replaces an older one (after a reconnect the
            // old one may not have noticed yet): its writer ends when its
            // sender is replaced here.
            j.attach_gen += 1;
            j.attached = true;
            if j.cancelled_by.is_some() {
                let _ = tx.try_send(JobCtl::Cancel { grace_secs: grace });
            }
            j.ctl = Some(tx.clone());
            Ok((j.progress.clone(), j.tail.clone(), j.attach_gen, j.received))
        }
        Some(j) if j.node != peer.name => {
            Err(format!("job {id} is not assigned to node {}", peer.name))
        }
        Some(_) => Err(format!("job {id} is not expecting output")),
        None => Err(format!("job {id} is not a live job of node {}", peer.name)),
    });
    let (progress, tail, attach, received) = match accepted {
        Ok(p) => p,
        Err(msg) => {
            tracing::warn!(node = %peer.name, job = id, "refused a job stream: {msg}");
            let _ = mesh::write_frame(&mut send, &JobCtl::Reject { reason: msg }).await;
            send.finish();
            return;
        }
    };
    // What is stored so far: the job's recorded sizes, and on database
    // output the stored length of each stream (the files' lengths are read
    // by `LogFile::open`).
    let in_db = shared.output_db;
    let stored = shared
        .store
        .call(move |tx| {
            let row = tx.job(id)?;
            let lens = if in_db {
                Some([tx.output_len(id, 0)?, tx.output_len(id, 1)?])
            } else {
                None
            };
            Ok::<_, crate::store::StoreError>((row, lens))
        })
        .await;
    let (row, db_lens) = match stored {
        Ok(s) => s,
        Err(e) if in_db => {
            // Resuming from a guess could store the output twice or leave
            // a hole: the node keeps its spool and attaches again.
            tracing::error!(job = id, error = %e, "cannot read the job's stored output length; the node will attach again");
            send.finish();
            detach(&shared, id, attach);
            return;
        }
        Err(_) => (None, None),
    };
    // A job whose output began in files (before a migration) stays there.
    let db_lens = db_lens.filter(|lens| !output_in_files(&shared, id, *lens));
    let in_db = db_lens.is_some();
    let truncated = row.map(|r| (r.truncated, [r.stdout_bytes, r.stderr_bytes]));
    let open = |s: OutStream| {
        let i = usize::from(s == OutStream::Stderr);
        let hint = received
            .map(|r| r[i])
            .or_else(|| truncated.filter(|t| t.0).map(|t| t.1[i]));
        match db_lens {
            Some(lens) => Ok(LogFile::at(lens[i], hint, truncated.is_some_and(|t| t.0))),
            None => LogFile::open(
                &log_path(&shared, id, s),
                hint,
                truncated.is_some_and(|t| t.0),
            ),
        }
    };
    let (out, errf) = match (open(OutStream::Stdout), open(OutStream::Stderr)) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(job = id, error = %e, "cannot open the job log");
            return;
        }
    };
    // What is stored already is readable (after a failover or a restart
    // the live progress starts at 0, and a job that prints nothing more
    // would otherwise show its followers nothing).
    progress.send_modify(|p| {
        p.stdout = p.stdout.max(out.written);
        p.stderr = p.stderr.max(errf.written);
    });
    // The writer thread raises what file readers may read, acks the node
    // and records the re-attachment point, each only once bytes are written.
    let durable = {
        let shared = shared.clone();
        move |received: [u64; 2]| {
            shared.jobs.with(|m| {
                if let Some(j) = m.jobs.get_mut(&id).filter(|j| j.attach_gen == attach) {
                    j.received = Some(received);
                }
            });
        }
    };
    let sink = if in_db {
        LogSink::in_database(shared.store.clone(), id, progress.clone(), acks, durable)
    } else {
        LogSink::new(
            log_path(&shared, id, OutStream::Stdout),
            log_path(&shared, id, OutStream::Stderr),
            progress.clone(),
            acks,
            durable,
        )
    };
    let resume = JobCtl::Resume {
        stdout_from: out.received,
        stderr_from: errf.received,
    };
    if mesh::write_frame(&mut send, &resume).await.is_err() {
        detach(&shared, id, attach);
        return;
    }
    if attach > 1 {
        tracing::info!(node = %peer.name, job = id, stdout = out.received, stderr = errf.received, "job re-attached");
    }
    let ctl_writer = tokio::spawn(async move {
        let mut acking = true;
        loop {
            let msg = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
                changed = acks_rx.changed(), if acking => {
                    if changed.is_err() {
                        acking = false;
                        continue;
                    }
                    let [stdout, stderr] = *acks_rx.borrow_and_update();
                    JobCtl::Ack { stdout, stderr }
                }
            };
            if mesh::write_frame(&mut send, &msg).await.is_err() {
                return;
            }
        }
        send.finish();
    });
    let outcome = store_output(&shared, id, &progress, &tail, &mut recv, out, errf, &sink).await;
    // Everything received is written before the job's end is recorded or
    // it detaches (a re-attachment resumes from what is on disk).
    let outcome = match shared.log_writer.flush(&sink).await {
        Ok(()) => outcome,
        Err(e) => Err(e),
    };
    drop(sink);
    // Stopped for the fair share: queued again once its end is recorded.
    let preempted = shared.jobs.preempted_for(id).is_some();
    let result = match outcome {
        Ok(Some(JobFrame::Exit {
            code,
            timed_out,
            cancelled,
            killed,
        })) => {
            let state = if timed_out {
                JobState::TimedOut
            } else if cancelled {
                JobState::Cancelled
            } else {
                JobState::Exited
            };
            let reason = if timed_out {
                "killed after its timeout".to_string()
            } else if cancelled {
                // Who asked; a node that cancels by itself says nothing more.
                shared
                    .jobs
                    .with(|m| m.jobs.get(&id).and_then(|j| j.cancelled_by.clone()))
                    .map_or_else(
                        || JobState::Cancelled.as_str().to_string(),
                        |who| format!("cancelled by {who}"),
                    )
            } else {
                String::new()
            };
            end_with_async(
                &shared,
                id,
                &[JobState::Starting, JobState::Running],
                state,
                move |row| {
                    // A job cancelled before its process started has no
                    // exit code (the node reports 143 for it all the same).
                    if !cancelled || row.started_at.is_some() {
                        row.exit_code = Some(code);
                    }
                    row.processes_killed = killed;
                    if !reason.is_empty() {
                        row.reason = Some(reason);
                    } else if let Some(r) = row.reason.as_deref()
                        && let Some(fault) = r.strip_suffix(GPU_FAULT_WARNING)
                    {
                        // Told of a failed GPU, it ended by itself in time.
                        row.reason =
                            Some(format!("{fault}; the job ended by itself within the grace"));
                    }
                },
            )
            .await
        }
        Ok(Some(JobFrame::Refused { reason })) => {
            let reason = format!(
                "refused by node {}'s policy: {}",
                peer.name,
                proto::names::printable(&reason, MAX_REASON)
            );
            end_with_async(
                &shared,
                id,
                &[JobState::Starting],
                JobState::Denied,
                |row| row.reason = Some(reason),
            )
            .await
        }
        Ok(Some(JobFrame::Failed { reason })) => {
            let reason = format!(
                "node {}: {}",
                peer.name,
                proto::names::printable(&reason, MAX_REASON)
            );
            end_with_async(&shared, id, UNFINISHED, JobState::Failed, |row| {
                row.reason = Some(reason);
            })
            .await
        }
        Ok(_) | Err(_) => {
            match &outcome {
                // The node resumes past what this gateway stores: output
                // another gateway took is not where this one reads it.
                Err(e) if e.contains("output gap") => tracing::error!(
                    node = %peer.name,
                    job = id,
                    "job stream refused: {e}; this gateway does not hold the job's earlier output: every gateway of a group must use the same [state] output (and, for files, one shared logs_dir)"
                ),
                Err(e) => tracing::info!(node = %peer.name, job = id, "job stream ended: {e}"),
                Ok(_) => {}
            }
            detach(&shared, id, attach);
            ctl_writer.abort();
            return;
        }
    };
    if preempted
        && let Ok(Some(row)) = &result
        && row.state == JobState::Cancelled
    {
        let row = row.clone();
        let _ = crate::shared::off_runtime(&shared, move |s| super::submit::requeue(s, &row)).await;
    }
    match result {
        Ok(_) => {
            // Tell the node it may forget the job, then let the writer finish.
            let _ = tx.try_send(JobCtl::Done);
            drop(tx);
            let _ = tokio::time::timeout(Duration::from_secs(5), ctl_writer).await;
        }
        Err(e) => {
            tracing::error!(job = id, error = %e.message, "could not record the end of a job")
        }
    }
}

/// The stream of attachment `attach` ended without the job's end: wait for the
/// node to re-attach, and declare the job lost if it does not in time.
fn detach(shared: &Arc<Shared>, id: u64, attach: u64) {
    let current = shared.jobs.with(|m| match m.jobs.get_mut(&id) {
        Some(j) if j.attach_gen == attach => {
            j.attached = false;
            true
        }
        _ => false,
    });
    if current {
        watch_for_reattach(
            shared.clone(),
            id,
            attach,
            "the node did not re-attach the job in time",
        );
    }
}

pub(super) fn watch_for_reattach(shared: Arc<Shared>, id: u64, attach: u64, why: &'static str) {
    let grace = shared.config().job_grace;
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        let still = shared.jobs.with(|m| {
            m.jobs
                .get(&id)
                .map(|j| !j.attached && j.attach_gen == attach)
        });
        if still == Some(true) {
            let reason = format!("{why} ({}s)", grace.as_secs());
            let _ = end_with_async(&shared, id, UNFINISHED, JobState::Lost, |row| {
                row.reason = Some(reason);
            })
            .await;
        }
    });
}

/// What a running job's reason says after one of its GPUs failed.
const GPU_FAULT_WARNING: &str =
    "; the job will be failed unless it ends within the node's gpu_fail_grace";

/// Reads a job stream: output goes to live followers at once and to the
/// log writer behind them; returns the job's last frame.
#[allow(clippy::too_many_arguments)]
async fn store_output(
    shared: &Shared,
    id: u64,
    progress: &watch::Sender<Progress>,
    tail: &tokio::sync::broadcast::Sender<TailChunk>,
    recv: &mut crate::link::RecvHalf,
    mut out: LogFile,
    mut errf: LogFile,
    sink: &std::sync::Arc<LogSink>,
) -> Result<Option<JobFrame>, String> {
    let cap = shared.config().output_cap;
    let mut last_flush = shared.clock.now();
    // An interactive session's output is recorded as it is stored.
    let recorder = shared
        .jobs
        .with(|m| m.jobs.get(&id).and_then(|j| j.recorder.clone()));
    loop {
        let frame = match mesh::read_incoming::<JobFrame>(recv, JOB_FRAME_LIMIT).await {
            Ok(Some(mesh::Incoming::Message(f))) => f,
            Ok(Some(mesh::Incoming::Data {
                stream,
                offset,
                len,
            })) => {
                let f = match stream {
                    OutStream::Stdout => &mut out,
                    OutStream::Stderr => &mut errf,
                };
                let mut at = offset;
                mesh::read_data(recv, len, |chunk| {
                    let n = chunk.len() as u64;
                    shared.metrics.bytes_relayed.inc_by(n);
                    f.append(at, chunk, cap)?;
                    at += n;
                    Ok(())
                })
                .await
                .map_err(|e| format!("the job stream broke: {e}"))?;
                // Live followers get the bytes from memory first, then the
                // new length; a follower that lags reads the file instead.
                let taken = f.take();
                if let Some(rec) = recorder.as_ref().filter(|_| stream == OutStream::Stdout) {
                    let bytes: Vec<u8> =
                        taken.iter().flat_map(|(_, b)| b.iter().copied()).collect();
                    rec.event(proto::cast::Kind::Output, bytes).await;
                }
                if let Some((offset, _)) = taken.first() {
                    let data = taken.iter().map(|(_, b)| b.clone()).collect();
                    let _ = tail.send(TailChunk {
                        stream,
                        offset: *offset,
                        data,
                    });
                }
                // Queued even with nothing to write (bytes past the cap, or
                // a resend of what is stored): the node's ack comes from
                // the writer, in order behind every earlier write.
                shared
                    .log_writer
                    .write(
                        sink,
                        usize::from(stream == OutStream::Stderr),
                        taken,
                        [out.received, errf.received],
                        [out.written, errf.written],
                    )
                    .await?;
                if last_flush.elapsed() > Duration::from_secs(1) {
                    record_bytes(shared, id, &out, &errf).await;
                    last_flush = shared.clock.now();
                }
                continue;
            }
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("the job stream broke: {e}")),
        };
        match frame {
            JobFrame::Started { pid, gpus } => {
                tracing::info!(job = id, pid, ?gpus, "job started");
                let now = shared.clock.unix();
                let started = shared
                    .store
                    .call(move |tx| {
                        let Some(mut row) = tx.job(id)? else {
                            return Ok(false);
                        };
                        if row.state != JobState::Starting {
                            // Sent again after a reconnect: already running.
                            return Ok(row.state == JobState::Running);
                        }
                        row.state = JobState::Running;
                        row.started_at = Some(now);
                        tx.move_job(&row, JobState::Starting)
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if started {
                    progress.send_modify(|p| p.state = JobState::Running.as_str().into());
                    let at = shared.clock.now();
                    let submitted = shared.jobs.with(|m| {
                        let j = m.jobs.get_mut(&id)?;
                        j.started.get_or_insert(at);
                        Some(j.submitted)
                    });
                    if let Some(t) = submitted {
                        shared.metrics.dispatched(t.elapsed());
                    }
                }
            }
            JobFrame::GpusHeld { mut gpus } => {
                // The node's word, bounded: no more than a node may have,
                // texts no longer than a heartbeat's.
                gpus.truncate(proto::MAX_NODE_GPUS as usize);
                for g in &mut gpus {
                    g.uuid = proto::names::printable(&g.uuid, proto::GPU_TEXT_MAX);
                    g.name = proto::names::printable(&g.name, proto::GPU_TEXT_MAX);
                }
                shared
                    .store
                    .call(move |tx| tx.set_job_gpus(id, &gpus))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            JobFrame::GpuFault { reason } => {
                // The job is told at once (its record's reason while it
                // runs; followers, the job page and chat show it); the node
                // fails it after its grace.
                let reason = proto::names::printable(&reason, MAX_REASON);
                tracing::warn!(job = id, "{reason}");
                let noted = shared
                    .store
                    .call(move |tx| {
                        let Some(mut row) = tx.job(id)? else {
                            return Ok(false);
                        };
                        if row.state != JobState::Running {
                            return Ok(false);
                        }
                        row.reason = Some(format!("{reason}{GPU_FAULT_WARNING}"));
                        tx.move_job(&row, JobState::Running)
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if noted {
                    progress.send_modify(|p| p.notes = p.notes.wrapping_add(1));
                }
            }
            last @ (JobFrame::Exit { .. } | JobFrame::Failed { .. } | JobFrame::Refused { .. }) => {
                record_bytes(shared, id, &out, &errf).await;
                return Ok(Some(last));
            }
        }
    }
}

async fn record_bytes(shared: &Shared, id: u64, out: &LogFile, err: &LogFile) {
    let (stdout, stderr) = (out.received, err.received);
    let truncated = out.truncated || err.truncated;
    if let Err(e) = shared
        .store
        .call(move |tx| tx.set_job_bytes(id, stdout, stderr, truncated))
        .await
    {
        tracing::warn!(job = id, error = %e, "cannot record a job's output sizes");
    }
}
