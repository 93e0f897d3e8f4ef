//! Keystroke echo latency of an interactive session: one byte written to
//! the session's input, the time until the remote terminal's echo of it
//! comes back. `openclaw run -t -- cat` against `ssh -tt localhost cat`,
//! both driven through pipes (the remote side has a terminal either way,
//! which echoes what is typed; `cat` prints nothing until a newline).

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// How long the session may take to start echoing.
const READY: Duration = Duration::from_secs(20);
/// How long one echo may take before the run is abandoned.
const ONE: Duration = Duration::from_secs(5);

/// Starts `c` (an interactive session running `cat`), waits until its
/// terminal echoes, then types `samples` keys one at a time and returns
/// how long each took to come back.
pub fn latency(mut c: Command, samples: usize) -> Result<Vec<Duration>> {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let (Some(mut input), Some(mut output)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("no pipes to the session");
    };
    let (tx, rx) = mpsc::channel::<u8>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 {
                return;
            }
            for b in &buf[..n] {
                if tx.send(*b).is_err() {
                    return;
                }
            }
        }
    });
    let result = (|| {
        // Ready once a typed byte comes back.
        let start = Instant::now();
        'ready: loop {
            if start.elapsed() > READY {
                bail!("the session did not echo within {READY:?}");
            }
            input.write_all(b"r")?;
            input.flush()?;
            let until = Instant::now() + Duration::from_millis(500);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if let Ok(b'r') = rx.recv_timeout(left) {
                    break 'ready;
                }
            }
        }
        // Let the ready probes' echoes drain.
        std::thread::sleep(Duration::from_millis(300));
        while rx.try_recv().is_ok() {}
        let mut took = Vec::with_capacity(samples);
        for i in 0..samples {
            let key = b'a' + (i % 26) as u8;
            let t0 = Instant::now();
            input.write_all(&[key])?;
            input.flush()?;
            loop {
                match rx.recv_timeout(ONE) {
                    Ok(b) if b == key => break,
                    Ok(_) => {}
                    Err(_) => bail!("key {i} did not come back within {ONE:?}"),
                }
            }
            took.push(t0.elapsed());
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(took)
    })();
    let _ = child.kill();
    let _ = child.wait();
    let mut took = result?;
    took.sort();
    Ok(took)
}

/// The `p`th percentile (0-100) of sorted `v`.
pub fn percentile(v: &[Duration], p: usize) -> Duration {
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}
