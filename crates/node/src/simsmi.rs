//! `nvidia-smi` for simulated GPUs (`node run --simulate-gpus N`), so that
//! a lab's GPU demo (`openclaw run --role gpu --gpus 1 -- nvidia-smi -L`)
//! shows the GPU the job holds instead of failing with 127.
//!
//! The agent puts it first on every job's PATH, in its own root
//! ([`crate::jobdir::WorkRoot::tools`]): the shim binary under the name
//! `nvidia-smi`, and next to it a list of the node's simulated devices.
//! The binary sees its name in `argv[0]` and runs [`main`] instead of the
//! shim. Only simulated GPUs get it: on a node with real ones, the real
//! `nvidia-smi` is the one a job finds.
//!
//! It knows two forms, `nvidia-smi -L` (one line per GPU) and plain
//! `nvidia-smi` (a short table in the real one's shape); every other form
//! says it is not simulated. As the real one, which reads NVML and not
//! `CUDA_VISIBLE_DEVICES`, it lists every GPU of the node, so a look at a
//! node from a job that holds none (`run nvidia-smi on all gpu nodes`)
//! sees them; [`run`] can also narrow the list as CUDA would. GPU numbers
//! are the node's indices, as in `CUDA_VISIBLE_DEVICES`, `job show` and
//! the dashboard.

use serde::{Deserialize, Serialize};

/// The program's name: `argv[0]`'s last component that selects [`main`].
pub const NAME: &str = "nvidia-smi";
/// The device list next to it.
pub const DEVICES_FILE: &str = "simulated-gpus.json";

/// One simulated GPU, as written to [`DEVICES_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Index on the node (what `CUDA_VISIBLE_DEVICES` names).
    pub index: u32,
    /// Model name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// Memory in total, MiB.
    pub mem_total_mib: u64,
    /// Memory in use, MiB.
    pub mem_used_mib: u64,
    /// Utilisation, percent.
    pub util_pct: u32,
    /// Temperature, Celsius.
    pub temp_c: u32,
}

impl Device {
    /// The device a simulated GPU's reading describes.
    pub fn from_sample(s: &crate::telemetry::GpuSample) -> Device {
        Device {
            index: s.index,
            name: s.name.clone(),
            uuid: s.uuid.clone(),
            // Simulated GPUs always know their readings.
            mem_total_mib: s.mem.map_or(0, |m| m.1) >> 20,
            mem_used_mib: s.mem.map_or(0, |m| m.0) >> 20,
            util_pct: s.util_pct.unwrap_or(0),
            temp_c: s.temp_c.unwrap_or(0),
        }
    }
}

/// Whether a program started as `argv0` is the fake `nvidia-smi`.
pub fn invoked_as(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == NAME)
}

/// What one run printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code (nvidia-smi's own: 6 when no device is found, 9 when it
    /// cannot reach the driver, 2 for arguments it does not take).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Table width, as the real one's 80-column layout.
const WIDTH: usize = 77;
/// Its three columns.
const COLS: [usize; 3] = [31, 22, 22];

fn rule(fill: char, cross: char, edge: char) -> String {
    let cells: Vec<String> = COLS.iter().map(|w| fill.to_string().repeat(*w)).collect();
    format!("{edge}{}{edge}\n", cells.join(&cross.to_string()))
}

fn row(cells: [&str; 3], right: [bool; 3]) -> String {
    let mut line = String::from("|");
    for ((text, width), r) in cells.iter().zip(COLS).zip(right) {
        let t: String = text.chars().take(width - 2).collect();
        if r {
            line.push_str(&format!(" {t:>w$} |", w = width - 2));
        } else {
            line.push_str(&format!(" {t:<w$} |", w = width - 2));
        }
    }
    line.push('\n');
    line
}

fn banner(text: &str) -> String {
    let t: String = text.chars().take(WIDTH - 2).collect();
    format!("| {t:<w$} |\n", w = WIDTH - 2)
}

/// The default table for `devices`. Pure.
pub fn table(devices: &[&Device]) -> String {
    let full = format!("+{}+\n", "-".repeat(WIDTH));
    let mut t = full.clone();
    t.push_str(&banner(
        "NVIDIA-SMI simulated   Driver Version: simulated   CUDA Version: n/a",
    ));
    t.push_str(&rule('-', '+', '|'));
    t.push_str(&row(
        ["GPU  Name", "Bus-Id", "Volatile Uncorr. ECC"],
        [false, false, true],
    ));
    t.push_str(&row(
        ["     Temp", "Memory-Usage", "GPU-Util  Compute M."],
        [false, true, true],
    ));
    t.push_str(&rule('=', '+', '|'));
    for (i, d) in devices.iter().enumerate() {
        if i > 0 {
            t.push_str(&rule('-', '+', '|'));
        }
        t.push_str(&row(
            [
                &format!("{:>4}  {}", d.index, d.name),
                &format!("00000000:{:02X}:00.0", (d.index + 1) % 256),
                "N/A",
            ],
            [false, false, true],
        ));
        t.push_str(&row(
            [
                &format!("     {}C", d.temp_c),
                &format!("{}MiB / {}MiB", d.mem_used_mib, d.mem_total_mib),
                &format!("{}%      Default", d.util_pct),
            ],
            [false, true, true],
        ));
    }
    t.push_str(&rule('-', '+', '+'));
    t.push('\n');
    t.push_str(&full);
    t.push_str(&banner("Processes:"));
    t.push_str(&banner(
        "These GPUs are simulated by openclaw: no processes run on them.",
    ));
    t.push_str(&full);
    t
}

/// What `nvidia-smi ARGS` does with the node's simulated `devices` (or
/// why they could not be read): every GPU of the node, as the real
/// nvidia-smi lists them whatever `CUDA_VISIBLE_DEVICES` says. Pure.
pub fn run(args: &[String], devices: Result<Vec<Device>, String>) -> Output {
    let out = |code, stdout: String, stderr: String| Output {
        code,
        stdout,
        stderr,
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let list = match args.as_slice() {
        [] => false,
        ["-L" | "--list-gpus"] => true,
        ["-h" | "--help"] => {
            return out(
                0,
                "nvidia-smi, simulated by openclaw for this node's simulated GPUs.\n\
                 \n    nvidia-smi        a table of the node's GPUs\n    \
                 nvidia-smi -L     one line per GPU of the node\n"
                    .into(),
                String::new(),
            );
        }
        _ => {
            return out(
                2,
                String::new(),
                format!(
                    "nvidia-smi: this node's GPUs are simulated (openclaw node run --simulate-gpus), and its \
                     nvidia-smi knows only 'nvidia-smi' and 'nvidia-smi -L', not '{}'\n",
                    args.join(" ")
                ),
            );
        }
    };
    let devices = match devices {
        Ok(d) => d,
        Err(e) => {
            return out(
                9,
                String::new(),
                format!("nvidia-smi: cannot read this node's simulated GPUs: {e}\n"),
            );
        }
    };
    let seen: Vec<&Device> = devices.iter().collect();
    if seen.is_empty() {
        return out(6, "No devices were found\n".into(), String::new());
    }
    if list {
        let lines: String = seen
            .iter()
            .map(|d| format!("GPU {}: {} (UUID: {})\n", d.index, d.name, d.uuid))
            .collect();
        return out(0, lines, String::new());
    }
    out(0, table(&seen), String::new())
}

/// Puts the fake in the agent's root for a node whose GPUs come from
/// `gpus` (simulated): the shim binary as `nvidia-smi` and the device list
/// beside it. Returns the directory to put first on jobs' PATH.
pub fn install(
    root: &crate::jobdir::WorkRoot,
    gpus: &mut dyn crate::telemetry::GpuSource,
) -> Result<std::path::PathBuf, String> {
    let devices: Vec<Device> = gpus.sample()?.iter().map(Device::from_sample).collect();
    let json = serde_json::to_vec(&devices).map_err(|e| e.to_string())?;
    let (exe, _) = crate::jail::shim_binary()?;
    let dir = root.tools(&[(NAME, &exe)], &[(DEVICES_FILE, &json)])?;
    if dir.to_string_lossy().contains(':') {
        return Err(format!(
            "{} has a ':' in it, which PATH cannot hold; set work_dir in node.toml to a path without one",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The fake's main: reads the device list next to its own binary, runs
/// [`run`], prints and exits.
pub fn main() -> ! {
    use std::io::Write as _;
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let devices = std::env::current_exe()
        .map_err(|e| e.to_string())
        .and_then(|exe| {
            let file = exe.with_file_name(DEVICES_FILE);
            std::fs::read(&file)
                .map_err(|e| format!("{}: {e}", file.display()))
                .and_then(|b| {
                    serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", file.display()))
                })
        });
    let o = run(&args, devices);
    // A closed pipe (`| head -1`) is no reason to say more.
    let _ = std::io::stdout().write_all(o.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(o.stderr.as_bytes());
    std::process::exit(o.code)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn devices(n: u32) -> Vec<Device> {
        let mut src = crate::telemetry::SimulatedGpus::new(n, "worker-gpu-01");
        use crate::telemetry::GpuSource as _;
        src.sample()
            .unwrap()
            .iter()
            .map(Device::from_sample)
            .collect()
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn list_shows_every_gpu_of_the_node() {
        let o = run(&args(&["-L"]), Ok(devices(2)));
        assert_eq!(o.code, 0);
        let tag = &devices(1)[0].uuid[8..20];
        assert_eq!(
            o.stdout,
            format!(
                "GPU 0: Simulated GPU 80GB (UUID: GPU-sim-{tag}-0000)\n\
                 GPU 1: Simulated GPU 80GB (UUID: GPU-sim-{tag}-0001)\n"
            )
        );
        assert_eq!(o.stderr, "");
        let o = run(&args(&["--list-gpus"]), Ok(devices(2)));
        assert_eq!(o.stdout.lines().count(), 2);
        // A node with no GPU lists none, as nvidia-smi says it.
        let o = run(&args(&["-L"]), Ok(vec![]));
        assert_eq!((o.code, o.stdout.as_str()), (6, "No devices were found\n"));
    }

    #[test]
    fn the_table_has_nvidia_smis_shape() {
        let o = run(&[], Ok(devices(2)));
        assert_eq!(o.code, 0, "{o:?}");
        let lines: Vec<&str> = o.stdout.lines().collect();
        for l in &lines {
            assert!(l.is_empty() || l.chars().count() == 79, "{l:?}");
        }
        assert!(o.stdout.contains("NVIDIA-SMI simulated"), "{}", o.stdout);
        assert!(
            o.stdout.contains("|    0  Simulated GPU 80GB"),
            "{}",
            o.stdout
        );
        assert!(
            o.stdout.contains("|    1  Simulated GPU 80GB"),
            "{}",
            o.stdout
        );
        assert!(o.stdout.contains("0MiB / 81920MiB"), "{}", o.stdout);
    }

    #[test]
    fn other_forms_and_a_missing_list_say_what_is_wrong() {
        let o = run(&args(&["--query-gpu=name"]), Ok(devices(1)));
        assert_eq!(o.code, 2);
        assert!(
            o.stderr.starts_with("nvidia-smi: ") && o.stderr.contains("simulated"),
            "{}",
            o.stderr
        );
        let o = run(&[], Err("gone".into()));
        assert_eq!(
            (o.code, o.stderr.as_str()),
            (
                9,
                "nvidia-smi: cannot read this node's simulated GPUs: gone\n"
            )
        );
        assert_eq!(run(&args(&["-h"]), Ok(vec![])).code, 0);
    }

    #[test]
    fn only_the_name_nvidia_smi_selects_it() {
        use std::ffi::OsStr;
        assert!(invoked_as(Some(OsStr::new("nvidia-smi"))));
        assert!(invoked_as(Some(OsStr::new(
            "/var/lib/openclaw/jobs-x-1/sim-bin/nvidia-smi"
        ))));
        assert!(!invoked_as(Some(OsStr::new("openclaw-exec"))));
        assert!(!invoked_as(Some(OsStr::new("nvidia-smi-x"))));
        assert!(!invoked_as(None));
    }
}
