//! `openclaw-bench --soak SECS`: does anything leak over an hour? A real
//! gateway, `--soak-agents` real node agents (default 100), one job a
//! second with output, run and followed by a fresh `openclaw run` (the
//! follower), a mention to the chat bot every 10 s (it runs the job and
//! follows it, editing its Slack message, against the Slack emulator), and
//! the dashboard polled every 5 s. Every `--soak-sample` seconds it reads
//! the RSS and open descriptors of the gateway, one agent, the bot and the
//! dashboard from /proc. The verdict compares the second half with the
//! middle: less than 2 % RSS growth and no descriptor growth. Writes a CSV
//! and an SVG chart of RSS over time (`--soak-out`, default
//! `target/bench`). A benchmark: it reports, it asserts nothing.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use testkit::slack::SlackEmulator;
use testkit::{Lab, Proc, wait_until};

/// What to run.
pub struct SoakOptions {
    /// How long, seconds.
    pub secs: u64,
    /// Real node agents.
    pub agents: usize,
    /// Seconds between samples.
    pub sample_every: u64,
    /// Where the CSV and the chart go.
    pub out: PathBuf,
}

/// The processes sampled, in chart order.
const WATCHED: [&str; 4] = ["gateway", "agent", "bot", "dashboard"];

/// One sample: seconds since the start, then RSS KiB and open descriptors
/// of each of [`WATCHED`].
#[derive(Debug, Clone)]
struct Sample {
    at_s: u64,
    rss_kib: [u64; 4],
    fds: [usize; 4],
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

const BOT_TOKEN: &str = "xoxb-soak";
const T: Duration = Duration::from_secs(60);

/// Runs the soak and prints its table.
pub fn run(bin: &Path, opts: &SoakOptions) -> Result<()> {
    let bin_s = bin.to_str().context("the openclaw path is not UTF-8")?;
    let mut lab = Lab::with_config(bin_s, |cfg| {
        testkit::set_chat_test_policy(cfg, "slack:T0LAB/U0BOSS");
        // Every agent enrolls from 127.0.0.1 within a minute.
        *cfg = cfg.replace("rate_per_minute = 60", "rate_per_minute = 1000000");
    });
    lab.start_gateway();
    let gw_pid = lab.gateway().pid();
    // The agents: one token for all of them.
    let uses = opts.agents.max(1).to_string();
    let token = lab.token(&["--auto-approve", "--labels", "cpu", "--uses", &uses]);
    let mut agents: Vec<Proc> = Vec::with_capacity(opts.agents);
    let started = Instant::now();
    for i in 0..opts.agents {
        let home = lab.enroll_with(&token, &node_name(i), "cpu");
        agents.push(lab.start_node(&home));
    }
    wait_until(Duration::from_secs(300), "every agent to connect", || {
        let connected = lab
            .nodes()
            .iter()
            .filter(|n| n["connection"] == "connected")
            .count();
        (connected == opts.agents).then_some(())
    });
    eprintln!(
        "soak: {} agents connected in {:.1} s",
        opts.agents,
        started.elapsed().as_secs_f64()
    );
    let agent_pid = agents.first().map(Proc::pid).context("no agents")?;
    // The chat bot on the Slack emulator.
    let bot_home = lab.bot("moltbot", "slack:T0LAB");
    std::fs::write(
        bot_home.join("moltbot.toml"),
        "allowed_users = [\"U0SOAK\"]\napprovals = \"both\"\n",
    )?;
    let slack = SlackEmulator::start();
    let script = format!(
        "SLACK_API_URL={} SLACK_BOT_TOKEN={BOT_TOKEN} SLACK_APP_TOKEN=xapp-soak exec {bin_s} --home {} moltbot run",
        slack.api_url,
        bot_home.display()
    );
    let bot = lab.spawn_cmd("sh", &["-c", &script]);
    wait_until(T, "the bot to open Socket Mode", || {
        slack.connected().then_some(())
    });
    // The dashboard, logged in once.
    let gw_home = lab.gw_home.clone();
    // Any free port: a fixed one would clash with another soak or lab.
    let dash = lab.spawn(&gw_home, &["dashboard", "--listen", "127.0.0.1:0"]);
    let (url, token) = dashboard_login_parts(&dash)?;
    let cookie = login(&url, &token)?;
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    // One job a second, each run and followed by a fresh CLI.
    let jobs = {
        let (stop, counts, bin, home, agents) = (
            stop.clone(),
            counts.clone(),
            bin.to_path_buf(),
            gw_home.clone(),
            opts.agents,
        );
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let tick = Instant::now();
                let node = node_name(i % agents);
                let out = std::process::Command::new(&bin)
                    .arg("--home")
                    .arg(&home)
                    .args(["run", "--node", &node, "--", "seq", "1", "2000"])
                    .stdin(std::process::Stdio::null())
                    .output();
                match out {
                    Ok(o) if o.status.success() && o.stdout.len() == 8893 => {
                        counts.jobs_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        counts.jobs_bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
            }
        })
    };
    let begin = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let pids = [gw_pid, agent_pid, bot.pid(), dash.pid()];
    let mut next_sample = Duration::ZERO;
    let mut next_mention = Duration::ZERO;
    let mut next_poll = Duration::ZERO;
    let mut mentions = 0usize;
    while begin.elapsed() < Duration::from_secs(opts.secs) {
        let now = begin.elapsed();
        if now >= next_sample {
            let s = Sample {
                at_s: now.as_secs(),
                rss_kib: pids.map(testkit::rss_kib),
                fds: pids.map(fds),
            };
            eprintln!(
                "soak: {:>5} s  rss KiB {:?}  fds {:?}  jobs ok {} bad {}  chat {}  dashboard ok {} bad {}",
                s.at_s,
                s.rss_kib,
                s.fds,
                counts.jobs_ok.load(Ordering::Relaxed),
                counts.jobs_bad.load(Ordering::Relaxed),
                mentions,
                counts.polls_ok.load(Ordering::Relaxed),
                counts.polls_bad.load(Ordering::Relaxed),
            );
            samples.push(s);
            next_sample += Duration::from_secs(opts.sample_every);
        }
        if now >= next_mention {
            let node = node_name(mentions % opts.agents);
            slack.mention(
                "U0SOAK",
                "C0SOAK",
                &format!("<@U0MOLT> run seq 1 300 on {node}"),
            );
            mentions += 1;
            next_mention += Duration::from_secs(10);
        }
        if now >= next_poll {
            let ok = ["/", "/jobs", "/nodes"]
                .iter()
                .all(|p| get(&url, p, &cookie).is_ok_and(|code| code == 200));
            let c = if ok {
                &counts.polls_ok
            } else {
                &counts.polls_bad
            };
            c.fetch_add(1, Ordering::Relaxed);
            next_poll += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = jobs.join();
    let finals = slack
        .calls_of("chat.update")
        .iter()
        .filter(|c| {
            c.body["text"]
                .as_str()
                .unwrap_or_default()
                .contains("exited with code 0")
        })
        .count();
    if finals + 2 < mentions {
        // Say what the bot did instead, so a broken chat path shows.
        for c in slack.calls().iter().rev().take(3) {
            eprintln!("soak: a late Slack call: {} {}", c.method, c.body);
        }
    }
    report(opts, &samples, &counts, mentions, finals)?;
    drop((bot, dash, agents));
    Ok(())
}

#[derive(Default)]
struct Counts {
    jobs_ok: AtomicU64,
    jobs_bad: AtomicU64,
    polls_ok: AtomicU64,
    polls_bad: AtomicU64,
}

fn node_name(i: usize) -> String {
    format!("soak-{i:03}")
}

/// RSS growth over the second half, percent: the median of the last
/// three samples against the median of the three around the middle.
fn growth_pct(samples: &[Sample], k: usize) -> Option<f64> {
    if samples.len() < 6 {
        return None;
    }
    let med = |s: &[Sample]| {
        let mut v: Vec<u64> = s.iter().map(|x| x.rss_kib[k]).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let mid = samples.len() / 2;
    let a = med(&samples[mid - 1..mid + 2]) as f64;
    let b = med(&samples[samples.len() - 3..]) as f64;
    (a > 0.0).then(|| (b - a) / a * 100.0)
}

fn report(
    opts: &SoakOptions,
    samples: &[Sample],
    counts: &Counts,
    mentions: usize,
    finals: usize,
) -> Result<()> {
    std::fs::create_dir_all(&opts.out)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let csv = opts.out.join(format!("soak-{stamp}.csv"));
    let mut f = std::fs::File::create(&csv)?;
    writeln!(
        f,
        "at_s,gateway_rss_kib,agent_rss_kib,bot_rss_kib,dashboard_rss_kib,gateway_fds,agent_fds,bot_fds,dashboard_fds"
    )?;
    for s in samples {
        writeln!(
            f,
            "{},{},{},{},{},{},{},{},{}",
            s.at_s,
            s.rss_kib[0],
            s.rss_kib[1],
            s.rss_kib[2],
            s.rss_kib[3],
            s.fds[0],
            s.fds[1],
            s.fds[2],
            s.fds[3]
        )?;
    }
    let svg = opts.out.join(format!("soak-{stamp}.svg"));
    chart(&svg, samples)?;
    println!(
        "\nSoak: {} s, {} agents, sample every {} s; jobs {} ok, {} failed; {} chat mentions ({} final messages); dashboard polls {} ok, {} failed\n",
        opts.secs,
        opts.agents,
        opts.sample_every,
        counts.jobs_ok.load(Ordering::Relaxed),
        counts.jobs_bad.load(Ordering::Relaxed),
        mentions,
        finals,
        counts.polls_ok.load(Ordering::Relaxed),
        counts.polls_bad.load(Ordering::Relaxed),
    );
    println!(
        "| process | RSS first | RSS middle | RSS last | growth, second half | fds middle | fds last | verdict |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mid = samples.len() / 2;
    for (k, name) in WATCHED.iter().enumerate() {
        let (Some(first), Some(m), Some(last)) =
            (samples.first(), samples.get(mid), samples.last())
        else {
            bail!("no samples: the soak was shorter than one sample period");
        };
        let growth = growth_pct(samples, k);
        let fd_ok = last.fds[k] <= m.fds[k];
        let verdict = match growth {
            Some(g) if g < 2.0 && fd_ok => "pass",
            Some(_) => "FAIL",
            None => "too short to judge",
        };
        println!(
            "| {name} | {} KiB | {} KiB | {} KiB | {} | {} | {} | {verdict} |",
            first.rss_kib[k],
            m.rss_kib[k],
            last.rss_kib[k],
            growth.map_or("-".into(), |g| format!("{g:+.2} %")),
            m.fds[k],
            last.fds[k],
        );
    }
    println!("\nCSV: {}\nchart: {}", csv.display(), svg.display());
    Ok(())
}

/// RSS over time, one line per process, as an SVG.
fn chart(path: &Path, samples: &[Sample]) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_t = samples.last().map_or(1, |s| s.at_s.max(1)) as f64 / 60.0;
    let max_mib = samples.iter().flat_map(|s| s.rss_kib).max().unwrap_or(1) as f64 / 1024.0 * 1.1;
    let mut c = ChartBuilder::on(&root)
        .caption("openclaw-bench --soak: RSS over time", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_t, 0f64..max_mib)?;
    c.configure_mesh()
        .x_desc("minutes")
        .y_desc("RSS, MiB")
        .draw()?;
    let colors = [RED, BLUE, GREEN, MAGENTA];
    for (k, name) in WATCHED.iter().enumerate() {
        let color = colors[k];
        c.draw_series(LineSeries::new(
            samples
                .iter()
                .map(|s| (s.at_s as f64 / 60.0, s.rss_kib[k] as f64 / 1024.0)),
            color,
        ))?
        .label(*name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The dashboard's URL (base path, no last slash) and login token, from
/// what it printed.
fn dashboard_login_parts(p: &Proc) -> Result<(String, String)> {
    let url = wait_until(T, "the dashboard to print its address", || {
        let out = std::fs::read_to_string(&p.stdout_path).ok()?;
        let line = out.lines().find(|l| l.starts_with("dashboard at "))?;
        Some(
            line.split_whitespace()
                .nth(2)?
                .trim_end_matches('/')
                .to_string(),
        )
    });
    let token = wait_until(T, "the dashboard to print its token", || {
        let err = std::fs::read_to_string(&p.stderr_path).ok()?;
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("log in at {url}/login with the token ")))?;
        Some(line.split_whitespace().nth(7)?.to_string())
    });
    Ok((url, token))
}

/// `(authority, base path)` of a dashboard URL.
fn parts(url: &str) -> (&str, &str) {
    let rest = url.trim_start_matches("http://");
    let cut = rest.find('/').unwrap_or(rest.len());
    (&rest[..cut], &rest[cut..])
}

/// One HTTP/1.1 request (`head`: the request line and headers, each
/// ending in CRLF) with `body`; the whole response.
fn request(url: &str, head: &str, body: &str) -> Result<String> {
    let (host, _) = parts(url);
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "{head}Connection: close\r\n\r\n{body}")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn login(url: &str, token: &str) -> Result<String> {
    let (host, base) = parts(url);
    let body = format!("token={token}");
    let resp = request(
        url,
        &format!(
            "POST {base}/login HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ),
        &body,
    )?;
    let cookie = resp
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l["set-cookie:".len()..].trim().to_string())
        })
        .context("the dashboard set no session cookie")?;
    Ok(cookie.split(';').next().unwrap_or_default().to_string())
}

/// GETs `base + path` with the session cookie; the status code.
fn get(url: &str, path: &str, cookie: &str) -> Result<u16> {
    let (host, base) = parts(url);
    let resp = request(
        url,
        &format!("GET {base}{path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"),
        "",
    )?;
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")
}
