//! `--dispatch`: where a fresh `openclaw run -- true` spends its time
//! (issue 25, items 2 and 6), against `ssh localhost true` in the same run,
//! with the distribution of each drawn as an SVG next to the table.
//!
//! Each series is a ladder: `--version` is the process alone (exec,
//! dynamic loading, clap), `whoami` adds the home, the TLS configuration,
//! the QUIC + TLS handshake, one call and the close, `run -- true` adds the
//! job, and the open connection is the job without any of the rest. The
//! three fresh-process rungs are interleaved run by run, so a burst of
//! load from elsewhere on the machine lands on all of them alike; then
//! each runs again in a row for its CPU per process, which a loaded
//! machine disturbs far less than wall time.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::{Lab, median, ms, open_connection_true, ssh, ssh_works, time_runs};

/// One measured series.
struct Series {
    name: &'static str,
    /// Sorted.
    times: Vec<Duration>,
}

fn pct(v: &[Duration], p: usize) -> Duration {
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Runs the dispatch ladder `runs` times and prints its table; the chart
/// goes to `out/dispatch-<unix seconds>.svg`.
pub fn run(openclaw: &Path, runs: usize, no_ssh: bool, out: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let lab = Lab::start(openclaw)?;
    let use_ssh = !no_ssh && ssh_works();
    let ladder: [(&'static str, &[&str]); 3] = [
        ("`openclaw --version` (process only)", &["--version"]),
        ("`whoami` (process + handshake + one call)", &["whoami"]),
        (
            "`run -- true`, fresh CLI",
            &["run", "--node", "bench-node", "--", "true"],
        ),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); ladder.len()];
    for _ in 0..runs {
        for (k, (_, args)) in ladder.iter().enumerate() {
            let one = time_runs(1, || {
                let mut c = lab.cmd(&lab.gw);
                c.args(*args);
                c
            })?;
            times[k].extend(one);
        }
    }
    let mut series: Vec<Series> = ladder
        .iter()
        .zip(times)
        .map(|((name, _), mut times)| {
            times.sort();
            Series { name, times }
        })
        .collect();
    series.push(Series {
        name: "`run -- true` over one open connection",
        times: rt.block_on(open_connection_true(&lab.gw, runs))?,
    });
    if use_ssh {
        series.push(Series {
            name: "`ssh localhost true`",
            times: time_runs(runs.min(20), || ssh("true"))?,
        });
    }
    let cpu = cpu_per_run(&lab, &ladder, runs)?;
    drop(lab);
    let fresh = series
        .iter()
        .find(|s| s.name.starts_with("`run -- true`, fresh"))
        .map(|s| median(&s.times))
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Machine: {cpus} CPUs; openclaw binary {}\n",
        openclaw.display()
    );
    println!("| measure | runs | median | p10 | p90 | p99 | median ÷ fresh `run -- true` |");
    println!("|---|---|---|---|---|---|---|");
    for s in &series {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} |",
            s.name,
            s.times.len(),
            ms(median(&s.times)),
            ms(pct(&s.times, 10)),
            ms(pct(&s.times, 90)),
            ms(pct(&s.times, 99)),
            median(&s.times).as_secs_f64() / fresh.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "\nCPU per fresh command, {runs} more runs of each in a row: the CLI's from the kernel's \
         count for reaped children (10 ms ticks, so ±{:.2} ms), the gateway's and the node agent's \
         from /proc/PID/task/*/schedstat (ns), the job's processes from the agent's count for its \
         reaped children (ticks)\n",
        10.0 / runs.max(1) as f64
    );
    println!("| command | CLI | gateway | node agent | the job's processes | sum |");
    println!("|---|---|---|---|---|---|");
    for (name, c) in &cpu {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            c[0],
            c[1],
            c[2],
            c[3],
            c.iter().sum::<f64>()
        );
    }
    if let Some(ssh) = series.iter().find(|s| s.name.contains("ssh")) {
        let ratio = median(&ssh.times).as_secs_f64() / fresh.as_secs_f64().max(1e-9);
        println!(
            "\nfresh `run -- true` is {ratio:.0}x faster than `ssh localhost true` (goal: 100x)"
        );
    }
    std::fs::create_dir_all(out)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let svg = out.join(format!("dispatch-{stamp}.svg"));
    chart(&svg, &series)?;
    println!("\nchart: {}", svg.display());
    Ok(())
}

/// CPU milliseconds per run of each ladder command, run `runs` times in
/// a row: `[CLI, gateway, node agent, the agent's reaped children (the
/// job's processes)]`.
fn cpu_per_run(
    lab: &Lab,
    ladder: &[(&'static str, &[&str])],
    runs: usize,
) -> Result<Vec<(&'static str, [f64; 4])>> {
    let gw = lab.children.first().map(std::process::Child::id);
    let node = lab.children.get(1).map(std::process::Child::id);
    let mut out = Vec::new();
    for (name, args) in ladder {
        let before = [
            children_cpu_ms(None),
            process_cpu_ms(gw),
            process_cpu_ms(node),
            children_cpu_ms(node),
        ];
        time_runs(runs, || {
            let mut c = lab.cmd(&lab.gw);
            c.args(*args);
            c
        })?;
        let after = [
            children_cpu_ms(None),
            process_cpu_ms(gw),
            process_cpu_ms(node),
            children_cpu_ms(node),
        ];
        let per = |k: usize| (after[k] - before[k]).max(0.0) / runs.max(1) as f64;
        out.push((*name, [per(0), per(1), per(2), per(3)]));
    }
    Ok(out)
}

/// CPU time of the reaped children of `pid` (this process when `None`),
/// in ms (`cutime` + `cstime` of /proc/PID/stat, in USER_HZ = 100 ticks
/// a second).
fn children_cpu_ms(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |p| format!("/proc/{p}/stat"),
    );
    std::fs::read_to_string(path).map_or(0.0, |stat| reaped_children_ms(&stat))
}

/// `cutime` + `cstime` of one /proc/PID/stat line, in ms. Pure.
fn reaped_children_ms(stat: &str) -> f64 {
    // Fields after the command name, which is in parentheses and may
    // hold spaces and parentheses of its own.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 (1-based); `rest` starts at field 3.
    let tick = |k: usize| {
        f.get(k - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(16) + tick(17)) * 10.0
}

/// CPU time of all threads of `pid` so far, in ms (the first field of
/// each /proc/PID/task/TID/schedstat, in ns). Threads that ended are
/// not counted.
fn process_cpu_ms(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e6
}

/// The distribution of each series as a cumulative curve on a log time
/// axis (ssh is two orders of magnitude to the right).
fn chart(path: &Path, series: &[Series]) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let all = series.iter().flat_map(|s| s.times.iter());
    let lo = all
        .clone()
        .min()
        .map_or(0.1, |d| d.as_secs_f64() * 1000.0 * 0.8);
    let hi = all.max().map_or(1000.0, |d| d.as_secs_f64() * 1000.0 * 1.2);
    let mut c = ChartBuilder::on(&root)
        .caption(
            "openclaw-bench --dispatch: latency distribution",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((lo.max(0.01)..hi).log_scale(), 0f64..100f64)?;
    c.configure_mesh()
        .x_desc("milliseconds (log scale)")
        .y_desc("% of runs at or under")
        .draw()?;
    let colors = [GREEN, BLUE, RED, MAGENTA, BLACK, CYAN];
    for (k, s) in series.iter().enumerate() {
        let color = colors[k % colors.len()];
        let n = s.times.len().max(1) as f64;
        c.draw_series(LineSeries::new(
            s.times
                .iter()
                .enumerate()
                .map(|(i, d)| (d.as_secs_f64() * 1000.0, 100.0 * (i + 1) as f64 / n)),
            color,
        ))?
        .label(s.name.replace('`', ""))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reaped_children_cpu_comes_from_cutime_and_cstime() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime ...
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 200 0 0 7 8 30 12 20 0 1 0 5 0 0";
        assert_eq!(super::reaped_children_ms(line), 420.0);
        assert_eq!(super::reaped_children_ms("garbage"), 0.0);
    }
}
