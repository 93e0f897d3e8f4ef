//! GPUs as they really fail, through the real NVML code path: a node
//! agent loads the stand-in libnvidia-ml (`crates/testnvml`) with
//! `node run --nvml-lib`, and the test changes what it answers while the
//! agent runs: a GPU lost, ECC errors, Xid events, NOT_SUPPORTED fields,
//! MIG, recovery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::{Lab, wait_until};
use testnvml::{Call, Description, Device, Fault};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const WAIT: Duration = Duration::from_secs(20);

/// The stand-in library, built next to this test binary (a dev-dependency).
fn testnvml_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let lib = dir.join("libtestnvml.so");
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// A lab with short heartbeats and one node on the stand-in NVML, which
/// needs 2 good samples in a row to offer a GPU again.
fn lab_with_nvml(desc: &Description) -> (Lab, PathBuf, testkit::Proc) {
    lab_with_nvml_grace(desc, "60s").0
}

/// [`lab_with_nvml`], with `gpu_fail_grace` set; also the node's home.
fn lab_with_nvml_grace(
    desc: &Description,
    grace: &str,
) -> ((Lab, PathBuf, testkit::Proc), PathBuf) {
    let mut lab = Lab::with_config(BIN, |cfg| {
        assert!(cfg.contains("heartbeat_interval = \"1s\""), "{cfg}");
        *cfg = cfg.replace(
            "heartbeat_interval = \"1s\"",
            "heartbeat_interval = \"200ms\"",
        );
    });
    lab.start_gateway();
    let home = lab.enroll("gpu-a", "gpu");
    let toml = home.join("node.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        format!("gpu_recover_after = 2\ngpu_fail_grace = \"{grace}\"\n{text}"),
    )
    .unwrap();
    let json = lab.dir().join("nvml.json");
    testnvml::write(&json, desc).unwrap();
    let lib = testnvml_lib();
    let node = lab.spawn_env(
        &home,
        &["node", "run", "--nvml-lib", lib.to_str().unwrap()],
        &[(testnvml::CONFIG_ENV, json.as_path())],
    );
    lab.wait_node("gpu-a", "connected", WAIT);
    ((lab, json, node), home)
}

fn two_h100s() -> Description {
    Description {
        devices: vec![Device::h100(0), Device::h100(1)],
        ..Description::default()
    }
}

/// Waits until the node's health and reason satisfy `ok`.
fn wait_health(lab: &Lab, what: &str, ok: impl Fn(&str, &str) -> bool) -> serde_json::Value {
    wait_until(WAIT, what, || {
        let n = lab.node("gpu-a")?;
        let health = n["health"].as_str().unwrap_or("").to_string();
        let reason = n["health_reason"].as_str().unwrap_or("").to_string();
        ok(&health, &reason).then_some(n)
    })
}

/// `node list` (`--json` and the table) and `node show` count gpu-a's
/// GPU 0 as routing does: not free (`note` says why, `word` is its
/// health), while GPU 1 is free.
fn not_free_in_node_list_and_show(lab: &Lab, note: &str, word: &str) {
    let n = wait_until(WAIT, "gpu-a's GPU health in node list --json", || {
        // ...once no job holds GPU 1 (one may just have ended there).
        lab.node("gpu-a")
            .filter(|n| n["gpus"][0]["health"] == word && n["gpus"][1]["job"].is_null())
    });
    assert_eq!(n["gpus_confirmed"], 2, "{n}");
    assert_eq!(n["gpus_free"], 1, "{n}");
    assert_eq!(n["gpus_not_free"], note, "{n}");
    let gpus = n["gpus"].as_array().unwrap();
    assert_eq!(gpus[0]["free"], false, "{n}");
    assert_eq!(gpus[1]["free"], true, "{n}");
    assert_eq!(gpus[1]["health"], "healthy", "{n}");
    let short = note.trim_start_matches("GPU 0 ");
    let list = lab.admin(&["node", "list"]).ok();
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with("gpu-a "))
        .unwrap_or_else(|| panic!("no gpu-a row: {}", list.stdout));
    assert!(
        row.contains(&format!("2× H100 80GB HBM3 (1 free, {note})")),
        "{row}"
    );
    let show = lab.admin(&["node", "show", "gpu-a"]).ok();
    assert!(
        show.stdout.contains(&format!(
            "gpus:          2× H100 80GB HBM3 (1 free, {note})\n"
        )),
        "{}",
        show.stdout
    );
    let held: Vec<&str> = show
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("GPU "))
        .skip(1)
        .map(|l| l.rsplit("  ").next().unwrap_or_default().trim())
        .collect();
    assert_eq!(
        held,
        [format!("not free: {short}").as_str(), "free"],
        "{}",
        show.stdout
    );
}

/// The GPUs a one-GPU job on gpu-a is given.
fn gpus_of_a_job(lab: &Lab, gpus: &str) -> String {
    let out = lab
        .run_job(&[
            "--node",
            "gpu-a",
            "--gpus",
            gpus,
            "--",
            "sh",
            "-c",
            "echo visible=$CUDA_VISIBLE_DEVICES",
        ])
        .ok();
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("visible="))
        .unwrap_or_else(|| panic!("no CUDA_VISIBLE_DEVICES in {:?}", out.stdout))
        .to_string()
}

/// What CUDA_VISIBLE_DEVICES names for H100 `i`: its UUID (real GPUs
/// are named by UUID, which survives reordering).
fn u(i: u32) -> String {
    Device::h100(i).uuid
}

fn set(json: &Path, desc: &Description) {
    testnvml::write(json, desc).unwrap();
}

#[test]
fn a_lost_gpu_is_not_handed_out_and_the_other_keeps_serving() {
    let mut desc = two_h100s();
    let (lab, json, _node) = lab_with_nvml(&desc);
    wait_until(WAIT, "two NVML GPUs", || {
        let n = lab.node("gpu-a")?;
        (n["gpus"].as_array()?.len() == 2 && n["gpu_source"] == "nvml").then_some(())
    });
    assert_eq!(gpus_of_a_job(&lab, "1"), u(0));

    // GPU 0 falls off the bus: every call on it answers GPU_IS_LOST.
    desc.devices[0].faults.insert(Call::All, Fault::GpuIsLost);
    set(&json, &desc);
    let n = wait_health(&lab, "GPU 0 lost", |h, r| {
        h == "degraded" && r.contains("GPU 0 lost")
    });
    // The other GPU is still reported, and still served.
    let gpus = n["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2, "{n}");
    assert_eq!(gpus[1]["name"], "NVIDIA H100 80GB HBM3");
    assert_eq!(gpus[0]["temp_c"], serde_json::Value::Null, "{n}");
    assert_eq!(gpus_of_a_job(&lab, "1"), u(1));
    // Two GPUs are not there to give now; the gateway says why, and that
    // waiting may help (the GPU may come back).
    lab.run_job(&["--node", "gpu-a", "--gpus", "2", "--", "true"])
        .fails_with(253, "1 of 2 GPUs free, 1 unhealthy or MIG-enabled");

    // It comes back only after 2 good samples in a row.
    desc.devices[0].faults.clear();
    set(&json, &desc);
    wait_health(&lab, "GPU 0 recovering", |h, r| {
        h == "degraded" && r.contains("recovering")
    });
    wait_health(&lab, "GPU 0 back", |h, _| h == "healthy");
    assert_eq!(gpus_of_a_job(&lab, "2"), format!("{},{}", u(0), u(1)));
}

#[test]
fn ecc_errors_and_unsupported_fields() {
    let mut desc = two_h100s();
    // GPU 1's temperature and utilisation are not supported (as under MIG
    // and on some boards): unknown, not zero.
    desc.devices[1]
        .faults
        .insert(Call::Temperature, Fault::NotSupported);
    desc.devices[1]
        .faults
        .insert(Call::Utilization, Fault::NotSupported);
    let (lab, json, _node) = lab_with_nvml(&desc);
    let n = wait_until(WAIT, "two NVML GPUs", || {
        let n = lab.node("gpu-a")?;
        (n["gpus"].as_array()?.len() == 2).then_some(n)
    });
    assert_eq!(n["health"], "healthy", "{n}");
    let g1 = &n["gpus"][1];
    assert_eq!(g1["temp_c"], serde_json::Value::Null, "{n}");
    assert_eq!(g1["util_pct"], serde_json::Value::Null, "{n}");
    assert_eq!(n["gpus"][0]["temp_c"], 35, "{n}");
    let show = lab.admin(&["node", "show", "gpu-a"]).ok();
    let row = show
        .stdout
        .lines()
        .find(|l| l.contains("GPU-7e57a100-0000-4000-8000-000000000001"))
        .unwrap_or_else(|| panic!("no GPU 1 row in {}", show.stdout));
    assert!(row.contains('–') && !row.contains("0°C"), "{row}");

    // Uncorrectable ECC errors on GPU 0: unhealthy, with the reason; jobs get GPU 1.
    desc.devices[0].ecc_uncorrected_volatile = 4;
    set(&json, &desc);
    wait_health(&lab, "GPU 0 ECC", |h, r| {
        h == "degraded" && r.contains("GPU 0 has 4 volatile uncorrectable ECC")
    });
    assert_eq!(gpus_of_a_job(&lab, "1"), u(1));
    // A reset clears the volatile count: back after good samples.
    desc.devices[0].ecc_uncorrected_volatile = 0;
    set(&json, &desc);
    wait_health(&lab, "GPU 0 back", |h, _| h == "healthy");
    assert_eq!(gpus_of_a_job(&lab, "1"), u(0));

    // A critical Xid event on GPU 0 (NVML's event API): unhealthy, then
    // back after good samples; an application's own Xid (13) is not.
    desc.devices[1].xids.push(13);
    desc.devices[0].xids.push(79);
    set(&json, &desc);
    wait_health(&lab, "GPU 0 Xid", |h, r| {
        h == "degraded" && r.contains("GPU 0 reported critical Xid 79") && !r.contains("GPU 1")
    });
    assert_eq!(gpus_of_a_job(&lab, "1"), u(1));
    wait_health(&lab, "GPU 0 back after its Xid", |h, _| h == "healthy");
}

#[test]
fn a_job_whose_gpu_is_lost_is_told_then_failed_and_names_its_gpus() {
    let mut desc = two_h100s();
    let ((lab, json, _node), _home) = lab_with_nvml_grace(&desc, "8s");
    wait_until(WAIT, "two NVML GPUs", || {
        (lab.node("gpu-a")?["gpus"].as_array()?.len() == 2).then_some(())
    });
    let id = lab.detach(&["--node", "gpu-a", "--gpus", "1", "--", "sleep", "60"]);
    let j = lab.wait_job(id, "running", WAIT);
    // The job records which physical GPU it holds.
    let held = wait_until(WAIT, "the job's GPUs recorded", || {
        let out = lab.admin(&["job", "show", &id.to_string(), "--json"]).ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        let g = v["gpus_held"].as_array()?.clone();
        (!g.is_empty()).then_some(g)
    });
    assert_eq!(held.len(), 1, "{j}");
    assert_eq!(held[0]["index"], 0);
    assert_eq!(held[0]["uuid"], Device::h100(0).uuid);
    assert_eq!(held[0]["name"], "NVIDIA H100 80GB HBM3");
    let show = lab.admin(&["job", "show", &id.to_string()]).ok();
    assert!(
        show.stdout
            .contains("GPU 0 NVIDIA H100 80GB HBM3 (GPU-7e57a100-0000-4000-8000-000000000000)"),
        "{}",
        show.stdout
    );

    desc.devices[0].faults.insert(Call::All, Fault::GpuIsLost);
    set(&json, &desc);
    // Told while it still runs...
    let told = wait_until(WAIT, "the job told of its GPU", || {
        let j = lab.job(id);
        let r = j["reason"].as_str().unwrap_or("").to_string();
        r.contains("GPU 0 (GPU-7e57a100-0000-4000-8000-000000000000) lost")
            .then_some(j)
    });
    assert_eq!(told["state"], "running", "{told}");
    // ... meanwhile new jobs get the other GPU ...
    assert_eq!(gpus_of_a_job(&lab, "1"), u(1));
    // ... then failed with the reason after the grace.
    let j = lab.wait_job(id, "failed", WAIT);
    let reason = j["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("GPU 0 (GPU-7e57a100-0000-4000-8000-000000000000) lost")
            && reason.contains("stopped after a grace of 8s"),
        "{j}"
    );
}

#[test]
fn an_unhealthy_gpu_shows_with_its_reason_in_chat_and_the_dashboard() {
    let mut desc = two_h100s();
    desc.devices[1]
        .faults
        .insert(Call::Temperature, Fault::NotSupported);
    let (mut lab, json, _node) = lab_with_nvml(&desc);
    desc.devices[0].faults.insert(Call::All, Fault::GpuIsLost);
    set(&json, &desc);
    wait_health(&lab, "GPU 0 lost", |h, r| {
        h == "degraded" && r.contains("GPU 0 lost")
    });
    // Chat's node list says which GPU and why, and counts the lost GPU
    // as routing does: not free, while the other one is.
    let chat = lab.admin(&["chat", "nodes"]).ok();
    assert!(
        chat.stdout.contains("🟡 gpu-a: degraded (GPU 0 lost"),
        "{}",
        chat.stdout
    );
    assert!(
        chat.stdout.contains(" · 1/2 GPUs free (GPU 0 lost) · "),
        "{}",
        chat.stdout
    );
    not_free_in_node_list_and_show(&lab, "GPU 0 lost", "unhealthy");

    let Some((chrome, driver)) = testkit::webdriver::browser_tools() else {
        eprintln!(
            "SKIPPED (dashboard part): needs chromium and chromium-driver \
             (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let (d, url) = crate::dashboard::dashboard(&mut lab, &["--listen", "127.0.0.1:0"]);
    let token = crate::dashboard::printed_token(&d, &url);
    let profile = tempfile::tempdir().unwrap();
    let b = testkit::webdriver::Browser::start(&chrome, &driver, profile.path());
    b.goto(&format!("{url}/"));
    b.wait_text("the login form", WAIT, |t| t.contains("Log in"));
    b.type_text("#token", &token);
    b.click("form[action='login'] button");
    b.wait_text("the overview", WAIT, |t| t.contains("GPUs"));
    b.goto(&format!("{url}/nodes/gpu-a"));
    let page = b.wait_text("the lost GPU's card", WAIT, |t| {
        t.contains("GPU 0 lost") && t.contains("not offered to new jobs")
    });
    assert!(page.contains("1 free of 2 (GPU 0 lost)"), "{page}");
    // GPU 0's card is unhealthy with its reason; GPU 1 still serves, its
    // unsupported temperature shown as unknown.
    let cards = b.eval(
        "return Array.from(document.querySelectorAll('article.gpu')).map(a => \
         a.className + ' | ' + a.innerText);",
    );
    let cards: Vec<String> = cards
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(cards.len(), 2, "{page}");
    assert!(
        cards[0].starts_with("gpu gpu-unhealthy") && cards[0].contains("lost:"),
        "{cards:?}"
    );
    assert!(
        cards[1].starts_with("gpu gpu-free") && cards[1].contains("temperature – °C"),
        "{cards:?}"
    );
    b.screenshot(&crate::dashboard::shots().join("gpu-lost.png"));
    // The node list counts the lost GPU as routing does, and says why.
    b.goto(&format!("{url}/nodes"));
    b.wait_text("the node list's GPU column", WAIT, |t| {
        t.contains("1 free of 2 (GPU 0 lost)")
    });
}

#[test]
fn a_mig_enabled_gpu_is_not_handed_out_whole() {
    let mut desc = two_h100s();
    desc.devices[0].mig = true;
    desc.devices[0]
        .faults
        .insert(Call::Temperature, Fault::NotSupported);
    let (lab, _json, _node) = lab_with_nvml(&desc);
    wait_until(WAIT, "two NVML GPUs", || {
        (lab.node("gpu-a")?["gpus"].as_array()?.len() == 2).then_some(())
    });
    // MIG is a setting, not a fault: the node stays healthy, but only the
    // other GPU goes to jobs, and two are not there to give.
    assert_eq!(lab.node("gpu-a").unwrap()["health"], "healthy");
    assert_eq!(gpus_of_a_job(&lab, "1"), u(1));
    not_free_in_node_list_and_show(&lab, "GPU 0 MIG", "mig");
    lab.run_job(&["--node", "gpu-a", "--gpus", "2", "--", "true"])
        .fails_with(253, "1 unhealthy or MIG-enabled");
}

#[test]
fn a_job_that_ends_within_the_grace_is_not_failed() {
    let mut desc = two_h100s();
    let (lab, json, _node) = lab_with_nvml(&desc);
    wait_until(WAIT, "two NVML GPUs", || {
        (lab.node("gpu-a")?["gpus"].as_array()?.len() == 2).then_some(())
    });
    let stop = lab.dir().join("stop");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.1; done; echo saved",
        stop.display()
    );
    let id = lab.detach(&["--node", "gpu-a", "--gpus", "1", "--", "sh", "-c", &script]);
    lab.wait_job(id, "running", WAIT);
    desc.devices[0].faults.insert(Call::All, Fault::GpuIsLost);
    set(&json, &desc);
    wait_until(WAIT, "the job told of its GPU", || {
        let j = lab.job(id);
        j["reason"]
            .as_str()
            .is_some_and(|r| r.contains("will be failed unless it ends"))
            .then_some(())
    });
    // It saves its work and ends by itself within the grace (60s here).
    std::fs::write(&stop, "").unwrap();
    let j = lab.wait_job(id, "exited", WAIT);
    assert_eq!(j["exit_code"], 0, "{j}");
    let reason = j["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("GPU 0 (GPU-7e57a100-0000-4000-8000-000000000000) lost")
            && reason.ends_with("the job ended by itself within the grace"),
        "{j}"
    );
}

#[test]
fn doctor_on_a_node_says_versions_health_and_what_to_do() {
    let mut desc = two_h100s();
    desc.devices[1].persistence = false;
    let ((lab, json, _node), home) = lab_with_nvml_grace(&desc, "60s");
    desc.devices[0].faults.insert(Call::All, Fault::GpuIsLost);
    set(&json, &desc);
    let lib = testnvml_lib();
    let out = lab.run_env(
        &home,
        &["doctor"],
        &[
            ("OPENCLAW_NVML_LIB", lib.as_path()),
            (testnvml::CONFIG_ENV, json.as_path()),
        ],
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    // A failed check: exit 1.
    assert_eq!(out.code, 1, "{text}");
    for want in [
        "NVML sees 2 GPU(s); driver 550.54.15, NVML 12.550.54.15",
        "GPU 0 – (–) is unhealthy: lost",
        "nvidia-smi -r -i N",
        "GPU 1 NVIDIA H100 80GB HBM3 (GPU-7e57a100-0000-4000-8000-000000000001) healthy, persistence mode off",
        "nvidia-smi -pm 1",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
}

#[test]
fn run_says_at_once_when_its_jobs_gpu_fails() {
    // The person at the terminal has gpu_fail_grace to save work: `run`
    // must say so when it happens, not only when the job is failed.
    let mut desc = two_h100s();
    let (mut lab, json, _node) = lab_with_nvml(&desc);
    wait_until(WAIT, "two NVML GPUs", || {
        (lab.node("gpu-a")?["gpus"].as_array()?.len() == 2).then_some(())
    });
    let stop = lab.dir().join("stop");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.1; done; echo saved",
        stop.display()
    );
    let home = lab.gw_home.clone();
    let run = lab.spawn(
        &home,
        &[
            "run", "-n", "--node", "gpu-a", "--gpus", "1", "--", "sh", "-c", &script,
        ],
    );
    let id = wait_until(WAIT, "the job's id", || {
        let err = run.stderr();
        let (_, rest) = err.split_once("openclaw: job ")?;
        rest.split(' ').next()?.parse::<u64>().ok()
    });
    lab.wait_job(id, "running", WAIT);
    desc.devices[0].faults.insert(Call::All, Fault::GpuIsLost);
    set(&json, &desc);
    let said = wait_until(WAIT, "run to say the GPU failed", || {
        let err = run.stderr();
        err.contains("will be failed unless it ends").then_some(err)
    });
    assert!(
        said.contains(&format!("openclaw: warning: job {id}: "))
            && said.contains("GPU 0 (GPU-7e57a100-0000-4000-8000-000000000000) lost"),
        "{said}"
    );
    std::fs::write(&stop, "").unwrap();
    let out = run.wait(WAIT);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "saved\n");
    // Said once, though the job's state was sent again.
    assert_eq!(
        out.stderr.matches("will be failed unless").count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn attack_an_applications_xid_does_not_hide_a_critical_one() {
    // A job on GPU 0 can raise Xid 13 (an illegal memory access) at will;
    // right after a critical Xid 79 (fallen off the bus), both wait in the
    // same sample. The critical one must still mark the GPU.
    let mut desc = two_h100s();
    let (lab, json, _node) = lab_with_nvml(&desc);
    wait_until(WAIT, "two NVML GPUs", || {
        let n = lab.node("gpu-a")?;
        (n["gpus"].as_array()?.len() == 2 && n["health"] == "healthy").then_some(())
    });
    desc.devices[0].xids.extend([79, 13, 13]);
    set(&json, &desc);
    wait_health(&lab, "GPU 0's critical Xid", |h, r| {
        h == "degraded" && r.contains("GPU 0 reported critical Xid 79")
    });
    assert_eq!(gpus_of_a_job(&lab, "1"), u(1));
}
