//! `openclaw cp` against scp in the same run: one big file, and a tree of
//! many small files, each copied to the node (this machine, through the
//! gateway) and to `localhost` over ssh. Prints Markdown rows.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Small files in the tree figure.
pub const SMALL_FILES: usize = 10_000;
/// Bytes in each.
const SMALL_SIZE: usize = 1024;

/// Writes `bytes` of a non-repeating pattern to `path`.
fn big_file(path: &Path, bytes: u64) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// A tree of [`SMALL_FILES`] files of [`SMALL_SIZE`] bytes in 100 directories.
fn small_tree(top: &Path) -> Result<()> {
    for i in 0..SMALL_FILES {
        let dir = top.join(format!("d{:03}", i % 100));
        std::fs::create_dir_all(&dir)?;
        let body = format!("{i:08}\n").repeat(SMALL_SIZE / 9 + 1);
        std::fs::write(dir.join(format!("f{i:05}")), &body.as_bytes()[..SMALL_SIZE])?;
    }
    Ok(())
}

fn timed(mut c: Command, what: &str) -> Result<Duration> {
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let t = Instant::now();
    let out = c.output()?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(took)
}

fn scp(args: &[&str]) -> Command {
    let mut c = Command::new("scp");
    c.args(["-q", "-o", "BatchMode=yes"]).args(args);
    c
}

/// The rows: `openclaw` is a command for the lab's admin home; `area` a
/// directory the node allows (node.toml `allowed_paths`), which ssh
/// reaches as `localhost:area`; `scratch` a local directory.
pub fn rows(
    openclaw: impl Fn() -> Command,
    node: &str,
    area: &Path,
    scratch: &Path,
    bytes: u64,
    use_ssh: bool,
) -> Result<Vec<String>> {
    let big = scratch.join("big.bin");
    big_file(&big, bytes)?;
    let tree = scratch.join("small");
    small_tree(&tree)?;
    let area_s = area.display().to_string();
    let mut oc = openclaw();
    oc.args(["cp", "-q"])
        .arg(&big)
        .arg(format!("{node}:{area_s}/oc-big.bin"));
    let oc_big = timed(oc, "openclaw cp (big file)")?;
    let mut oc = openclaw();
    oc.args(["cp", "-q", "-r"])
        .arg(&tree)
        .arg(format!("{node}:{area_s}/oc-small"));
    let oc_small = timed(oc, "openclaw cp -r (small files)")?;
    let (ssh_big, ssh_small) = if use_ssh {
        let big_s = big.display().to_string();
        let tree_s = tree.display().to_string();
        (
            Some(timed(
                scp(&[&big_s, &format!("localhost:{area_s}/scp-big.bin")]),
                "scp (big file)",
            )?),
            Some(timed(
                scp(&["-r", &tree_s, &format!("localhost:{area_s}/scp-small")]),
                "scp -r (small files)",
            )?),
        )
    } else {
        (None, None)
    };
    let mbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let ratio = |ours: Duration, theirs: Option<Duration>| {
        theirs
            .map(|t| format!("{:.2}x scp", t.as_secs_f64() / ours.as_secs_f64()))
            .unwrap_or_else(|| "-".into())
    };
    Ok(vec![
        format!(
            "| `cp` of one {bytes}-byte file to the node (scp to localhost) | {:.0} MB/s | {} | {} |",
            mbps(oc_big),
            ssh_big
                .map(|d| format!("{:.0} MB/s", mbps(d)))
                .unwrap_or_else(|| "skipped".into()),
            ratio(oc_big, ssh_big)
        ),
        format!(
            "| `cp -r` of {SMALL_FILES} files of {SMALL_SIZE} bytes to the node (scp -r) | {} | {} | {} |",
            secs(oc_small),
            ssh_small.map(secs).unwrap_or_else(|| "skipped".into()),
            ratio(oc_small, ssh_small)
        ),
    ])
}
