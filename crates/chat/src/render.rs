//! A job's state, output and GPUs as chat text. Pure and platform-neutral:
//! the front end supplies a [`Markup`] (how to escape text and mention a
//! user) and its message size limit. Emoji are Unicode, code is fenced
//! with three backticks: both read the same in Slack and WeCom.

use std::time::Duration;

use proto::fanout::{Counts, Tally};
use proto::{FanInfo, FanState, GpuTelemetry, JobInfo, JobState, OutStream};

use crate::tail::OutputTail;

mod lists;
mod usage;
pub use lists::*;
pub use usage::{queue, usage};

/// How a platform writes text.
pub trait Markup {
    /// Escapes text that came from users or jobs.
    fn escape(&self, s: &str) -> String;
    /// How to name a gateway identity (`slack:T…/U…`) in a message.
    fn mention(&self, identity: &str) -> String;
    /// A clock time, `unix` seconds, as the platform can show it (Slack
    /// shows each reader their own time zone); the default is UTC,
    /// with the date unless it is `now`'s day: [`utc`].
    fn time(&self, unix: u64, now: u64) -> String {
        utc(unix, now)
    }
}

/// Escapes a block another party wrote (job output) line by line, the
/// line breaks kept: a terminal's escape ([`Markup::escape`] of `openclaw
/// chat`) escapes a newline inside a value, and a block is lines.
fn escape_lines(s: &str, m: &dyn Markup) -> String {
    s.split('\n')
        .map(|l| m.escape(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lines of output in a running job's message.
pub const RUNNING_LINES: usize = 10;
/// Lines of output in a finished job's message.
pub const FINAL_LINES: usize = 20;
/// Lines of stderr added to a failed job's message.
pub const STDERR_LINES: usize = 10;

/// `1m5s`, at least `1s`.
pub fn duration(d: Duration) -> String {
    proto::duration::format(Duration::from_secs(d.as_secs().max(1)))
}

fn took(j: &JobInfo) -> Option<String> {
    match (j.started_at, j.finished_at) {
        (Some(s), Some(f)) => Some(duration(Duration::from_secs(f.saturating_sub(s)))),
        _ => None,
    }
}

fn gpus(j: &JobInfo) -> String {
    match j.gpus {
        0 => String::new(),
        1 => ", 1 GPU".into(),
        n => format!(", {n} GPUs"),
    }
}

/// Whether the job ended well.
pub fn succeeded(j: &JobInfo) -> bool {
    j.is(JobState::Exited) && j.exit_code == Some(0)
}

/// Who may approve, each as a mention: "@a, @b".
pub(crate) fn mentions(who: &[String], m: &dyn Markup) -> String {
    who.iter()
        .map(|a| m.mention(a))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The one-line state of a job.
pub fn head(j: &JobInfo, elapsed: Option<Duration>, m: &dyn Markup) -> String {
    let cmd = m.escape(&proto::argv::line(&j.argv));
    let node = m.escape(&j.node);
    let g = gpus(j);
    match j.job_state() {
        Some(JobState::Queued) => format!("⏳ job {} queued for capacity: `{cmd}`", j.id),
        Some(JobState::AwaitingApproval) => format!(
            "🔒 job {} on {node}{g} awaits approval by {}: `{cmd}`",
            j.id,
            mentions(&j.approvers, m)
        ),
        Some(JobState::Starting) => format!("▶️ job {} starting on {node}{g}: `{cmd}`", j.id),
        Some(JobState::Running) => format!(
            "▶️ job {} running on {node}{g} for {}: `{cmd}`{}",
            j.id,
            elapsed.map(duration).unwrap_or_else(|| "-".into()),
            // A running job has a reason only when something is wrong (a
            // GPU of it failed): say so at once.
            j.reason
                .as_deref()
                .map(|r| format!("\n⚠️ {}", m.escape(r)))
                .unwrap_or_default()
        ),
        Some(JobState::Exited) => {
            let code = j.exit_code.unwrap_or(-1);
            let mark = if code == 0 { "✅" } else { "❌" };
            format!(
                "{mark} job {} on {node}{g} exited with code {code} after {}: `{cmd}`",
                j.id,
                took(j).unwrap_or_else(|| "-".into())
            )
        }
        _ => format!(
            "⚠️ job {} {}{}{}: `{cmd}`",
            j.id,
            m.escape(&j.state),
            if j.node.is_empty() {
                String::new()
            } else {
                format!(" on {node}{g}")
            },
            j.reason
                .as_deref()
                .map(|r| format!(" ({})", m.escape(r)))
                .unwrap_or_default()
        ),
    }
}

/// Output lines in a code block, stdout as `out|`, stderr as `err|`.
fn block(lines: &[(OutStream, String)], m: &dyn Markup) -> String {
    let body: Vec<String> = lines
        .iter()
        .map(|(s, l)| {
            let mark = if *s == OutStream::Stderr {
                "err|"
            } else {
                "out|"
            };
            format!("{mark} {}", m.escape(&l.replace("```", "'''")))
        })
        .collect();
    format!("```\n{}\n```", body.join("\n"))
}

/// The GPUs a job holds, from the node's last heartbeat.
pub fn gpu_line(id: u64, gpus: &[GpuTelemetry], m: &dyn Markup) -> Option<String> {
    let held: Vec<String> = gpus
        .iter()
        .filter(|g| g.job == Some(id))
        .map(|g| {
            // Unknown (NVML does not support it) is "–", never 0.
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            format!(
                "GPU {} {}: {} util, {} GiB, {}",
                g.index,
                m.escape(&g.name),
                g.util().map_or_else(|| "–".into(), |u| format!("{u}%")),
                g.mem().map_or_else(
                    || "–".into(),
                    |(u, t)| format!("{:.1}/{:.1}", gib(u), gib(t))
                ),
                g.temp().map_or_else(|| "–".into(), |c| format!("{c}°C")),
            )
        })
        .collect();
    (!held.is_empty()).then(|| format!("🖥️ {}", held.join(" · ")))
}

/// Joins parts, dropping output lines (oldest first) until the text fits
/// in `max_len` bytes; the head always stays (cut if need be).
fn fit(
    top: &str,
    lines: &[(OutStream, String)],
    bottom: &str,
    m: &dyn Markup,
    max_len: usize,
) -> String {
    for skip in 0..=lines.len() {
        let rest = &lines[skip..];
        let mut text = top.to_string();
        if !rest.is_empty() {
            text.push('\n');
            text.push_str(&block(rest, m));
        }
        if !bottom.is_empty() {
            text.push('\n');
            text.push_str(bottom);
        }
        if text.len() <= max_len {
            return text;
        }
    }
    head_bytes(top, max_len).to_string()
}

/// At most the first `n` bytes of `text`, cut at a character boundary.
fn head_bytes(text: &str, n: usize) -> &str {
    let mut end = n.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// At most the last `n` bytes of `text`, cut at a character boundary.
fn tail_bytes(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A queued, waiting or running job's message.
pub fn progress(
    j: &JobInfo,
    elapsed: Duration,
    tail: &OutputTail,
    gpus: &[GpuTelemetry],
    m: &dyn Markup,
    max_len: usize,
) -> String {
    let mut top = head(j, Some(elapsed), m);
    if j.is(JobState::Running)
        && let Some(g) = gpu_line(j.id, gpus, m)
    {
        top.push('\n');
        top.push_str(&g);
    }
    let lines = if j.is(JobState::Running) {
        tail.last(RUNNING_LINES)
    } else {
        Vec::new()
    };
    fit(&top, &lines, "", m, max_len)
}

/// A finished job's message: state, exit code, duration, node and GPUs,
/// the last lines of output, and for a failure the tail of stderr.
/// `more` says the output was longer than shown, to point at the full log.
pub fn finished(
    j: &JobInfo,
    tail: &OutputTail,
    m: &dyn Markup,
    max_len: usize,
    more: bool,
) -> String {
    finished_on(j, &[], tail, m, max_len, more)
}

/// The physical GPUs a job held: "🖥️ GPU 0 NVIDIA H100 (GPU-…)"; `None`
/// without any.
pub fn held_line(held: &[proto::HeldGpu], m: &dyn Markup) -> Option<String> {
    let dash = |s: &str| {
        if s.is_empty() {
            "–".to_string()
        } else {
            m.escape(s)
        }
    };
    let parts: Vec<String> = held
        .iter()
        .map(|g| format!("GPU {} {} ({})", g.index, dash(&g.name), dash(&g.uuid)))
        .collect();
    (!parts.is_empty()).then(|| format!("🖥️ held {}", parts.join(" · ")))
}

/// [`finished`], naming the physical GPUs the job held (`held`, from
/// `Request::JobGpus`).
pub fn finished_on(
    j: &JobInfo,
    held: &[proto::HeldGpu],
    tail: &OutputTail,
    m: &dyn Markup,
    max_len: usize,
    more: bool,
) -> String {
    let mut top = head(j, None, m);
    if let Some(line) = held_line(held, m) {
        top.push('\n');
        top.push_str(&line);
    }
    let lines = tail.last(FINAL_LINES);
    let mut bottom = String::new();
    if !succeeded(j) {
        let shown: Vec<&String> = lines
            .iter()
            .filter(|(s, _)| *s == OutStream::Stderr)
            .map(|(_, l)| l)
            .collect();
        let errs = tail.last_stderr(STDERR_LINES);
        if errs.iter().any(|e| !shown.contains(&e)) {
            let errs: Vec<(OutStream, String)> =
                errs.into_iter().map(|l| (OutStream::Stderr, l)).collect();
            bottom = format!("stderr ends with:\n{}", block(&errs, m));
        }
    }
    if tail.is_empty() && bottom.is_empty() {
        bottom = "(no output)".into();
    }
    if more {
        if !bottom.is_empty() {
            bottom.push('\n');
        }
        bottom.push_str(&format!("Full log: `openclaw job logs {}`", j.id));
    }
    fit(&top, &lines, &bottom, m, max_len)
}

/// A fan-out's one message while it runs: it counts up.
pub fn fan_progress(info: &FanInfo, c: &Counts, elapsed: Duration, m: &dyn Markup) -> String {
    let cmd = m.escape(&proto::argv::line(&info.argv));
    let n = info.members.len();
    if info.state == FanState::AwaitingApproval.as_str() {
        return format!(
            "🔒 fan-out {} on {n} nodes awaits approval by {}: `{cmd}`",
            info.id,
            mentions(&info.approvers, m)
        );
    }
    let mut parts = vec![format!("{} ok", c.ok)];
    for (k, what) in [
        (c.failed, "failed"),
        (c.timed_out, "timed out"),
        (c.not_run, "did not run"),
    ] {
        if k > 0 {
            parts.push(format!("{k} {what}"));
        }
    }
    let mut text = format!(
        "▶️ fan-out {} on {n} nodes for {}: `{cmd}`\n{}/{n} done: {}",
        info.id,
        duration(elapsed),
        c.ended,
        parts.join(", ")
    );
    if c.skipped > 0 {
        text.push_str(&format!(
            "\n{} matching nodes offline or unhealthy, not run",
            c.skipped
        ));
    }
    text
}

/// A fan-out's final message.
pub fn fan_finished(info: &FanInfo, tally: &Tally, m: &dyn Markup) -> String {
    let c = tally.counts();
    let mark = if tally.all_ok() {
        "✅"
    } else if c.ok == 0 {
        "❌"
    } else {
        "⚠️"
    };
    format!(
        "{mark} fan-out {}: `{}`\n{}",
        info.id,
        m.escape(&proto::argv::line(&info.argv)),
        m.escape(&tally.summary(10))
    )
}

/// The end of each shown node's output, in one message of at most
/// `max_len` bytes: `(node, status, log)`.
pub fn fan_outputs(shown: &[(String, String, Vec<u8>)], m: &dyn Markup, max_len: usize) -> String {
    let per = (max_len.saturating_sub(100) / shown.len().max(1)).saturating_sub(80);
    let mut out = String::new();
    for (node, status, log) in shown {
        let text = String::from_utf8_lossy(log);
        let end = tail_bytes(&text, per);
        let cut = end.len() < text.len();
        let body = end.trim_end().replace("```", "'''");
        out.push_str(&format!(
            "{}: {}\n```\n{}{}\n```\n",
            m.escape(node),
            m.escape(status),
            if cut { "…" } else { "" },
            if body.is_empty() {
                "(no output)".to_string()
            } else {
                escape_lines(&body, m)
            }
        ));
    }
    let end = head_bytes(&out, max_len).len();
    out.truncate(end);
    out
}

/// The approval question, for a front end's buttons or card.
pub fn approval_question(j: &JobInfo, m: &dyn Markup) -> String {
    let on = match j.fanout {
        Some(f) => format!(
            "{} and every other node of fan-out {f} (one approval releases them all)",
            m.escape(&j.node)
        ),
        None => m.escape(&j.node),
    };
    format!(
        "Job {} wants to run `{}` on {}{}{}{}, for {}. Plan {}. Approve?",
        j.id,
        m.escape(&proto::argv::line(&j.argv)),
        on,
        gpus(j),
        j.cwd
            .as_deref()
            .map(|c| format!(" in `{}`", m.escape(c)))
            .unwrap_or_default(),
        if j.env.is_empty() {
            String::new()
        } else {
            format!(
                " with env `{}`",
                m.escape(
                    &j.env
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            )
        },
        m.mention(&j.requester),
        j.plan_digest
    )
}

/// The end of a log, for a chat that cannot take a file: at most
/// `max_len` bytes, pointing at `openclaw job logs` when cut.
pub fn snippet(log: &[u8], id: u64, cut_at_start: bool, m: &dyn Markup, max_len: usize) -> String {
    if log.is_empty() {
        return format!("job {id} printed nothing.");
    }
    let text = String::from_utf8_lossy(log);
    let end = tail_bytes(&text, max_len.saturating_sub(200));
    let note = if end.len() < text.len() || cut_at_start {
        format!("The end of job {id}'s log (all of it: `openclaw job logs {id}`):")
    } else {
        format!("Log of job {id}:")
    };
    format!(
        "{note}\n```\n{}\n```",
        escape_lines(&end.replace("```", "'''"), m)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_its_line_breaks_under_a_markup_that_escapes_them() {
        // The terminal's markup (`openclaw chat`) escapes a newline inside
        // a value; a log is lines, escaped one by one.
        struct Term;
        impl Markup for Term {
            fn escape(&self, s: &str) -> String {
                s.replace('\n', "\\n")
            }
            fn mention(&self, identity: &str) -> String {
                identity.to_string()
            }
        }
        assert_eq!(
            snippet(b"a\nb\n", 3, false, &Term, 4000),
            "Log of job 3:\n```\na\nb\n\n```"
        );
        let shown = [("n".to_string(), "exit 0".to_string(), b"x\ny\n".to_vec())];
        let out = fan_outputs(&shown, &Term, 4000);
        assert!(out.contains("```\nx\ny\n```"), "{out}");
    }

    pub(super) struct Plain;
    impl Markup for Plain {
        fn escape(&self, s: &str) -> String {
            s.replace('<', "&lt;")
        }
        fn mention(&self, identity: &str) -> String {
            format!("@{}", identity.rsplit('/').next().unwrap_or(identity))
        }
    }

    pub(super) fn job(state: &str, code: Option<i32>) -> JobInfo {
        JobInfo {
            id: 7,
            state: state.into(),
            node: "worker-gpu-01".into(),
            argv: vec!["sh".into(), "-c".into(), "train <x>".into()],
            cwd: None,
            env: vec![],
            run_as: None,
            requester: "slack:T1/U1".into(),
            named_job: Some("training".into()),
            role: None,
            gpus: 1,
            approvers: vec!["slack:T1/U9".into()],
            approved_by: None,
            plan_digest: "abc".into(),
            created_at: 100,
            started_at: Some(100),
            finished_at: Some(165),
            exit_code: code,
            reason: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
            truncated: false,
            processes_killed: 0,
            fanout: None,
        }
    }

    fn tail(lines: &[(&str, OutStream)]) -> OutputTail {
        let mut t = OutputTail::new(10_000);
        for (l, s) in lines {
            t.push(*s, format!("{l}\n").as_bytes());
        }
        t
    }

    #[test]
    fn the_final_message_carries_result_and_marked_output() {
        let t = tail(&[
            ("epoch 1", OutStream::Stdout),
            ("warn", OutStream::Stderr),
            ("done", OutStream::Stdout),
        ]);
        let text = finished(&job("exited", Some(0)), &t, &Plain, 3000, false);
        let held = [proto::HeldGpu {
            index: 1,
            uuid: "GPU-abc".into(),
            name: "H100".into(),
        }];
        let on = finished_on(&job("exited", Some(0)), &held, &t, &Plain, 3000, false);
        assert!(on.contains("\n🖥️ held GPU 1 H100 (GPU-abc)"), "{on}");
        let mut failing = job("running", None);
        failing.reason = Some("GPU 0 (GPU-abc) lost: gone".into());
        let p = progress(&failing, Duration::from_secs(5), &t, &[], &Plain, 3000);
        assert!(p.contains("\n⚠️ GPU 0 (GPU-abc) lost: gone"), "{p}");
        assert!(
            text.starts_with("✅ job 7 on worker-gpu-01, 1 GPU exited with code 0 after 1m5s"),
            "{text}"
        );
        assert!(
            text.contains("out| epoch 1\nerr| warn\nout| done"),
            "{text}"
        );
        assert!(text.contains("train &lt;x>"), "escaped: {text}");
        assert!(!text.contains("stderr ends with"), "{text}");
    }

    #[test]
    fn a_failure_shows_the_tail_of_stderr_even_past_the_shown_lines() {
        let mut lines = vec![("Traceback: boom", OutStream::Stderr)];
        let noise: Vec<String> = (0..40).map(|i| format!("step {i}")).collect();
        for n in &noise {
            lines.push((n.as_str(), OutStream::Stdout));
        }
        let t = tail(&lines);
        let text = finished(&job("exited", Some(3)), &t, &Plain, 3000, true);
        assert!(text.starts_with("❌ job 7"), "{text}");
        assert!(
            text.contains("stderr ends with:\n```\nerr| Traceback: boom"),
            "{text}"
        );
        assert!(text.contains("out| step 39"), "{text}");
        assert!(text.ends_with("Full log: `openclaw job logs 7`"), "{text}");
    }

    #[test]
    fn messages_fit_the_limit_by_dropping_the_oldest_lines() {
        let noise: Vec<String> = (0..50)
            .map(|i| format!("{i:03} {}", "x".repeat(100)))
            .collect();
        let lines: Vec<(&str, OutStream)> = noise
            .iter()
            .map(|n| (n.as_str(), OutStream::Stdout))
            .collect();
        let t = tail(&lines);
        for max in [200, 800, 3000] {
            let text = finished(&job("exited", Some(0)), &t, &Plain, max, false);
            assert!(text.len() <= max, "{max}: {}", text.len());
            assert!(text.starts_with("✅ job 7"));
        }
        let text = finished(&job("exited", Some(0)), &t, &Plain, 800, false);
        assert!(text.contains("049 x") && !text.contains("030 x"), "{text}");
    }

    #[test]
    fn a_running_message_shows_elapsed_lines_and_the_jobs_gpus() {
        let t = tail(&[("epoch 1", OutStream::Stdout)]);
        let gpus = vec![
            GpuTelemetry {
                index: 0,
                name: "H200".into(),
                mem_used: 8 << 30,
                mem_total: 140 << 30,
                util_pct: 87,
                temp_c: 61,
                job: Some(7),
                ..Default::default()
            },
            GpuTelemetry {
                index: 1,
                name: "H200".into(),
                job: Some(8),
                ..Default::default()
            },
        ];
        let text = progress(
            &job("running", None),
            Duration::from_secs(75),
            &t,
            &gpus,
            &Plain,
            3000,
        );
        assert!(
            text.contains("running on worker-gpu-01, 1 GPU for 1m15s"),
            "{text}"
        );
        assert!(
            text.contains("GPU 0 H200: 87% util, 8.0/140.0 GiB, 61°C") && !text.contains("GPU 1"),
            "{text}"
        );
        assert!(text.contains("out| epoch 1"), "{text}");
        let text = progress(
            &job("awaiting-approval", None),
            Duration::from_secs(5),
            &t,
            &gpus,
            &Plain,
            3000,
        );
        assert!(
            text.contains("awaits approval by @U9") && !text.contains("epoch"),
            "{text}"
        );
    }

    #[test]
    fn snippets_keep_the_end_and_point_at_the_full_log() {
        let log = format!("{}END", "a".repeat(10_000));
        let s = snippet(log.as_bytes(), 3, false, &Plain, 1000);
        assert!(
            s.len() <= 1000 && s.contains("END") && s.contains("openclaw job logs 3"),
            "{s}"
        );
        assert_eq!(
            snippet(b"", 3, false, &Plain, 1000),
            "job 3 printed nothing."
        );
        assert!(snippet(b"hi", 3, false, &Plain, 1000).starts_with("Log of job 3:"));
    }

    #[test]
    fn fan_out_messages_count_up_and_summarise() {
        use proto::fanout::Outcome;
        let mut info = FanInfo {
            id: 4,
            state: "awaiting-approval".into(),
            argv: vec!["nvidia-smi".into(), "<x>".into()],
            requester: "slack:T1/U1".into(),
            members: ["gpu-a", "gpu-b", "gpu-c"]
                .iter()
                .enumerate()
                .map(|(i, n)| proto::FanMember {
                    node: n.to_string(),
                    job: 10 + i as u64,
                })
                .collect(),
            skipped: vec![("gpu-z".into(), "offline".into())],
            window: 3,
            approvers: vec!["slack:T1/U9".into()],
            plan_digest: "d".into(),
            created_at: 0,
        };
        let mut tally = Tally::new(&info);
        assert_eq!(
            fan_progress(&info, &tally.counts(), Duration::from_secs(3), &Plain),
            "🔒 fan-out 4 on 3 nodes awaits approval by @U9: `nvidia-smi '&lt;x>'`"
        );
        info.state = "running".into();
        tally.record(0, Outcome::Ok);
        tally.record(2, Outcome::Exit(9));
        assert_eq!(
            fan_progress(&info, &tally.counts(), Duration::from_secs(3), &Plain),
            "▶️ fan-out 4 on 3 nodes for 3s: `nvidia-smi '&lt;x>'`\n2/3 done: 1 ok, 1 failed\n1 matching nodes offline or unhealthy, not run"
        );
        tally.record(1, Outcome::Ok);
        let fin = fan_finished(&info, &tally, &Plain);
        assert!(
            fin.starts_with(
                "⚠️ fan-out 4: `nvidia-smi '&lt;x>'`\n4 node(s): 2 ok, 1 failed (gpu-c: exit 9)"
            ),
            "{fin}"
        );
        let shown = vec![
            (
                "gpu-a".to_string(),
                "exit 0".to_string(),
                b"GPU 0: H200\n".to_vec(),
            ),
            ("gpu-c".to_string(), "exit 9".to_string(), vec![b'x'; 5000]),
        ];
        let out = fan_outputs(&shown, &Plain, 1000);
        assert!(out.len() <= 1000, "{}", out.len());
        assert!(
            out.starts_with("gpu-a: exit 0\n```\nGPU 0: H200\n```\ngpu-c: exit 9\n```\n…xxx"),
            "{out}"
        );
        let mut j = job("awaiting-approval", None);
        j.fanout = Some(4);
        assert!(approval_question(&j, &Plain).contains(
            "on worker-gpu-01 and every other node of fan-out 4 (one approval releases them all)"
        ));
    }
}
