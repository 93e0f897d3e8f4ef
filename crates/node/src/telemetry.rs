//! What a node reports in its heartbeats: host load and memory, and GPUs
//! through a [`GpuSource`]: NVML on machines with the NVIDIA driver,
//! simulated GPUs for tests and labs, or none.

use proto::{GPU_UNKNOWN, GPU_UNKNOWN_BYTES, GpuTelemetry, Heartbeat};

/// One GPU reading, before the node adds which job holds it. Each GPU's
/// reading stands alone: one GPU that fails to answer never hides the
/// others. A field NVML could not read is `None` (unknown, not zero).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuSample {
    /// Index.
    pub index: u32,
    /// Model name (empty if unknown).
    pub name: String,
    /// UUID (empty if unknown).
    pub uuid: String,
    /// Memory (used, total), bytes.
    pub mem: Option<(u64, u64)>,
    /// Utilisation, percent.
    pub util_pct: Option<u32>,
    /// Temperature, Celsius.
    pub temp_c: Option<u32>,
    /// Volatile uncorrected ECC errors (since the driver loaded).
    pub ecc_uncorrected: Option<u64>,
    /// MIG mode is on.
    pub mig: Option<bool>,
    /// Persistence mode is on.
    pub persistence: Option<bool>,
    /// The last critical Xid NVML's events reported since the previous
    /// reading (where the board supports events).
    pub xid: Option<u64>,
    /// The GPU is lost (NVML_ERROR_GPU_IS_LOST, or it cannot be opened):
    /// what NVML said.
    pub lost: Option<String>,
}

/// Where GPU telemetry comes from.
pub trait GpuSource: Send {
    /// `nvml`, `simulated` or `none`.
    fn kind(&self) -> &'static str;
    /// How many GPUs it has (fixed for the agent's lifetime).
    fn count(&self) -> u32;
    /// Reads every GPU now.
    fn sample(&mut self) -> Result<Vec<GpuSample>, String>;
}

/// No GPUs.
pub struct NoGpus;

impl GpuSource for NoGpus {
    fn kind(&self) -> &'static str {
        "none"
    }
    fn count(&self) -> u32 {
        0
    }
    fn sample(&mut self) -> Result<Vec<GpuSample>, String> {
        Ok(vec![])
    }
}

/// `--simulate-gpus N`: N idle 80 GiB GPUs, clearly labelled as simulated.
pub struct SimulatedGpus {
    n: u32,
    node: String,
}

impl SimulatedGpus {
    /// N simulated GPUs for `node` (the node name makes the UUIDs stable and distinct).
    pub fn new(n: u32, node: &str) -> SimulatedGpus {
        SimulatedGpus {
            n,
            node: node.to_string(),
        }
    }
}

impl GpuSource for SimulatedGpus {
    fn kind(&self) -> &'static str {
        "simulated"
    }
    fn count(&self) -> u32 {
        self.n
    }
    fn sample(&mut self) -> Result<Vec<GpuSample>, String> {
        let tag = pki::hex(&pki::sha256(self.node.as_bytes())[..6]);
        Ok((0..self.n)
            .map(|i| GpuSample {
                index: i,
                name: "Simulated GPU 80GB".into(),
                uuid: format!("GPU-sim-{tag}-{i:04}"),
                mem: Some((0, 80 << 30)),
                util_pct: Some(0),
                temp_c: Some(35),
                ecc_uncorrected: Some(0),
                mig: Some(false),
                persistence: Some(true),
                xid: None,
                lost: None,
            })
            .collect())
    }
}

/// Real GPUs through NVML.
pub struct NvmlGpus {
    /// Leaked on purpose: NVML stays loaded for the agent's life, and the
    /// event set borrows it.
    nvml: &'static nvml_wrapper::Nvml,
    count: u32,
    /// Critical Xid events of the GPUs that support them.
    events: Option<nvml_wrapper::EventSet<'static>>,
}

/// Most events read per sample: a GPU flooding Xids cannot hold the
/// heartbeat up.
const MAX_EVENTS_PER_SAMPLE: usize = 64;

/// Registers every GPU that supports them for critical Xid events.
fn xid_events(
    nvml: &'static nvml_wrapper::Nvml,
    count: u32,
) -> Option<nvml_wrapper::EventSet<'static>> {
    use nvml_wrapper::bitmasks::event::EventTypes;
    let mut set = None;
    let mut any = false;
    for i in 0..count {
        let Ok(d) = nvml.device_by_index(i) else {
            continue;
        };
        let s = match set.take() {
            Some(s) => s,
            None => nvml.create_event_set().ok()?,
        };
        // A failed registration frees the set: the next GPU gets a new one.
        if let Ok(s) = d.register_events(EventTypes::CRITICAL_XID_ERROR, s) {
            set = Some(s);
            any = true;
        }
    }
    set.filter(|_| any)
}

/// A value NVML may not support: `None` for any error, which the caller
/// shows as unknown. A lost GPU is told apart by [`is_lost`].
fn known<T>(r: Result<T, nvml_wrapper::error::NvmlError>) -> Option<T> {
    r.ok()
}

fn is_lost(e: &nvml_wrapper::error::NvmlError) -> bool {
    matches!(e, nvml_wrapper::error::NvmlError::GpuLost)
}

impl NvmlGpus {
    /// Loads NVML: `lib` names the library file (`node run --nvml-lib`,
    /// `nvml_lib` in node.toml), else the system's `libnvidia-ml.so`.
    /// Fails (no panic) where the NVIDIA driver is missing.
    pub fn open(lib: Option<&std::path::Path>) -> Result<NvmlGpus, String> {
        let mut builder = nvml_wrapper::Nvml::builder();
        if let Some(lib) = lib {
            builder.lib_path(lib.as_os_str());
        }
        let nvml = builder.init().map_err(|e| match lib {
            Some(l) => format!("NVML is not available from {}: {e}", l.display()),
            None => format!("NVML is not available: {e}"),
        })?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("NVML cannot count devices: {e}"))?;
        let nvml: &'static nvml_wrapper::Nvml = Box::leak(Box::new(nvml));
        let events = xid_events(nvml, count);
        Ok(NvmlGpus {
            nvml,
            count,
            events,
        })
    }

    /// The driver and NVML versions, for `openclaw doctor`.
    pub fn versions(&self) -> (Option<String>, Option<String>) {
        (
            self.nvml.sys_driver_version().ok(),
            self.nvml.sys_nvml_version().ok(),
        )
    }

    /// The last critical Xid of each GPU among the events waiting now.
    fn xids(&self) -> std::collections::HashMap<u32, u64> {
        use nvml_wrapper::enums::event::XidError;
        let mut out = std::collections::HashMap::new();
        let Some(set) = &self.events else {
            return out;
        };
        for _ in 0..MAX_EVENTS_PER_SAMPLE {
            let Ok(ev) = set.wait(0) else {
                break;
            };
            if let (Some(XidError::Value(x)), Ok(i)) = (ev.event_data, ev.device.index()) {
                keep_xid(&mut out, i, x);
            }
        }
        out
    }

    /// Reads GPU `i` alone.
    fn read(&self, i: u32) -> GpuSample {
        use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor};
        let lost = |e: &nvml_wrapper::error::NvmlError| GpuSample {
            index: i,
            lost: Some(format!("lost: {e}")),
            ..GpuSample::default()
        };
        let d = match self.nvml.device_by_index(i) {
            Ok(d) => d,
            Err(e) => return lost(&e),
        };
        // The memory query answers on every GPU NVML can reach: its
        // GPU_IS_LOST is what marks the GPU lost; other fields' errors
        // (NOT_SUPPORTED under MIG, on some boards) only make them unknown.
        let mem = match d.memory_info() {
            Ok(m) => Some((m.used, m.total)),
            Err(e) if is_lost(&e) => return lost(&e),
            Err(_) => None,
        };
        let name = match d.name() {
            Ok(n) => n,
            Err(e) if is_lost(&e) => return lost(&e),
            Err(_) => String::new(),
        };
        GpuSample {
            index: i,
            name,
            uuid: d.uuid().unwrap_or_default(),
            mem,
            util_pct: known(d.utilization_rates()).map(|u| u.gpu),
            temp_c: known(d.temperature(TemperatureSensor::Gpu)),
            ecc_uncorrected: known(
                d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile),
            ),
            mig: known(d.mig_mode()).map(|m| m.current == 1),
            persistence: known(d.is_in_persistent_mode()),
            xid: None,
            lost: None,
        }
    }
}

/// Records Xid `x` of GPU `i` among those read in one sample. Pure. A
/// critical Xid is never replaced by an application's own
/// ([`crate::gpuhealth::APPLICATION_XIDS`]): a job can raise Xid 13 at
/// will, and one raised right after a critical Xid (or caused by it) must
/// not hide it. Among critical Xids the latest is kept.
pub(crate) fn keep_xid(out: &mut std::collections::HashMap<u32, u64>, i: u32, x: u64) {
    let app = |x: &u64| crate::gpuhealth::APPLICATION_XIDS.contains(x);
    if app(&x) && out.get(&i).is_some_and(|prev| !app(prev)) {
        return;
    }
    out.insert(i, x);
}

impl GpuSource for NvmlGpus {
    fn kind(&self) -> &'static str {
        "nvml"
    }
    fn count(&self) -> u32 {
        self.count
    }
    fn sample(&mut self) -> Result<Vec<GpuSample>, String> {
        let xids = self.xids();
        Ok((0..self.count)
            .map(|i| GpuSample {
                xid: xids.get(&i).copied(),
                ..self.read(i)
            })
            .collect())
    }
}

/// Picks the GPU source: simulated if asked, else NVML (from `nvml_lib`
/// if given), else none. The second value says why there are no GPUs,
/// for one log line.
pub fn detect(
    simulate: u32,
    node: &str,
    nvml_lib: Option<&std::path::Path>,
) -> (Box<dyn GpuSource>, Option<String>) {
    if simulate > 0 {
        return (Box::new(SimulatedGpus::new(simulate, node)), None);
    }
    match NvmlGpus::open(nvml_lib) {
        Ok(n) => (Box::new(n), None),
        Err(e) => (Box::new(NoGpus), Some(e)),
    }
}

/// Parses `/proc/loadavg`: the one-minute load, times 1000.
pub fn parse_loadavg(text: &str) -> Option<u32> {
    let first: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((first * 1000.0).round().clamp(0.0, u32::MAX as f64) as u32)
}

/// Parses `/proc/meminfo`: (used, total) bytes.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let total = field("MemTotal:")?;
    let avail = field("MemAvailable:")?;
    Some((total.saturating_sub(avail), total))
}

/// Builds one heartbeat from a GPU source's `kind` and what its sample
/// gave. Pure.
pub fn heartbeat(
    seq: u64,
    kind: &str,
    sampled: Result<Vec<GpuSample>, String>,
    holders: &std::collections::HashMap<u32, u64>,
    running_jobs: u32,
    loadavg: Option<&str>,
    meminfo: Option<&str>,
) -> Heartbeat {
    let simulated = kind == "simulated";
    let (gpu_list, gpu_error) = match sampled {
        Ok(list) => (
            list.into_iter()
                .map(|g| {
                    let job = holders.get(&g.index).copied();
                    // A simulated GPU looks busy while a job holds it, so
                    // labs and dashboards show something move.
                    let (util_pct, temp_c, mem) = match (simulated, job) {
                        (true, Some(_)) => {
                            let wobble = (seq.wrapping_mul(7) + u64::from(g.index) * 3) % 10;
                            let total = g.mem.map_or(80 << 30, |m| m.1);
                            (
                                Some(90 + wobble as u32),
                                Some(68 + wobble as u32),
                                Some((60 << 30, total)),
                            )
                        }
                        _ => (g.util_pct, g.temp_c, g.mem),
                    };
                    // Unknown travels as the wire's unknown value, never 0.
                    GpuTelemetry {
                        job,
                        index: g.index,
                        name: g.name,
                        uuid: g.uuid,
                        mem_used: mem.map_or(GPU_UNKNOWN_BYTES, |m| m.0),
                        mem_total: mem.map_or(GPU_UNKNOWN_BYTES, |m| m.1),
                        util_pct: util_pct.unwrap_or(GPU_UNKNOWN),
                        temp_c: temp_c.unwrap_or(GPU_UNKNOWN),
                        simulated,
                    }
                })
                .collect(),
            None,
        ),
        Err(e) => (vec![], Some(e)),
    };
    let (mem_used, mem_total) = meminfo.and_then(parse_meminfo).unwrap_or((0, 0));
    Heartbeat {
        seq,
        load1_milli: loadavg.and_then(parse_loadavg).unwrap_or(0),
        mem_used,
        mem_total,
        running_jobs,
        gpus: gpu_list,
        gpu_source: kind.to_string(),
        gpu_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake NVML: scripted readings, or a failure.
    struct FakeGpus {
        fail: bool,
    }

    impl GpuSource for FakeGpus {
        fn kind(&self) -> &'static str {
            "nvml"
        }
        fn count(&self) -> u32 {
            2
        }
        fn sample(&mut self) -> Result<Vec<GpuSample>, String> {
            if self.fail {
                return Err("NVML: GPU is lost".into());
            }
            Ok((0..2)
                .map(|i| GpuSample {
                    index: i,
                    name: "NVIDIA H100 80GB HBM3".into(),
                    uuid: format!("GPU-{i}"),
                    mem: Some((1 << 30, 80 << 30)),
                    util_pct: Some(50 + i),
                    temp_c: Some(60 + i),
                    ..GpuSample::default()
                })
                .collect())
        }
    }

    fn beat(
        seq: u64,
        src: &mut dyn GpuSource,
        holders: &std::collections::HashMap<u32, u64>,
        running: u32,
        loadavg: Option<&str>,
        meminfo: Option<&str>,
    ) -> Heartbeat {
        let sampled = src.sample();
        heartbeat(seq, src.kind(), sampled, holders, running, loadavg, meminfo)
    }

    #[test]
    fn unknown_travels_as_unknown_and_one_lost_gpu_hides_nothing() {
        let samples = vec![
            GpuSample {
                index: 0,
                lost: Some("lost: GPU is lost".into()),
                ..GpuSample::default()
            },
            GpuSample {
                index: 1,
                name: "H100".into(),
                mem: Some((1, 2)),
                util_pct: Some(0),
                temp_c: None,
                ..GpuSample::default()
            },
        ];
        let hb = heartbeat(1, "nvml", Ok(samples), &Default::default(), 0, None, None);
        assert_eq!(hb.gpus.len(), 2);
        assert_eq!(hb.gpu_error, None);
        assert_eq!(hb.gpus[0].temp(), None);
        assert_eq!(hb.gpus[0].mem(), None);
        assert_eq!(hb.gpus[1].util(), Some(0));
        assert_eq!(hb.gpus[1].temp(), None);
        assert_eq!(hb.gpus[1].temp_c, proto::GPU_UNKNOWN);
        assert_eq!(hb.gpus[1].mem(), Some((1, 2)));
    }

    #[test]
    fn heartbeat_through_the_trait() {
        let holders = std::collections::HashMap::from([(1u32, 42u64)]);
        let hb = beat(
            3,
            &mut FakeGpus { fail: false },
            &holders,
            1,
            Some("0.52 0.40 0.30 1/100 1234\n"),
            Some("MemTotal:       1000 kB\nMemFree:  100 kB\nMemAvailable:    250 kB\n"),
        );
        assert_eq!(hb.seq, 3);
        assert_eq!(hb.load1_milli, 520);
        assert_eq!((hb.mem_used, hb.mem_total), (750 * 1024, 1000 * 1024));
        assert_eq!(hb.gpus.len(), 2);
        assert_eq!(hb.gpus[0].job, None);
        assert_eq!(hb.gpus[1].job, Some(42));
        assert_eq!(hb.gpus[1].temp_c, 61);
        assert!(!hb.gpus[0].simulated);
        assert_eq!(hb.gpu_source, "nvml");
        assert_eq!(hb.gpu_error, None);
        let hb = beat(4, &mut FakeGpus { fail: true }, &holders, 0, None, None);
        assert_eq!(hb.gpu_error.as_deref(), Some("NVML: GPU is lost"));
        assert!(hb.gpus.is_empty());
    }

    #[test]
    fn simulated_gpus_are_labelled() {
        let mut s = SimulatedGpus::new(2, "worker-gpu-01");
        let hb = beat(1, &mut s, &Default::default(), 0, None, None);
        assert_eq!(hb.gpus.len(), 2);
        assert!(
            hb.gpus
                .iter()
                .all(|g| g.simulated && g.mem_total == 80 << 30)
        );
        assert_ne!(hb.gpus[0].uuid, hb.gpus[1].uuid);
        assert_eq!(hb.gpu_source, "simulated");
        let other = SimulatedGpus::new(1, "worker-gpu-02").sample().unwrap();
        assert_ne!(other[0].uuid, hb.gpus[0].uuid);
        // Idle until a job holds one; then it looks busy.
        assert_eq!((hb.gpus[0].util_pct, hb.gpus[0].temp_c), (0, 35));
        let holders = std::collections::HashMap::from([(1u32, 42u64)]);
        let hb = beat(2, &mut s, &holders, 1, None, None);
        assert_eq!(hb.gpus[0].util_pct, 0);
        assert_eq!(hb.gpus[1].job, Some(42));
        assert!((90..100).contains(&hb.gpus[1].util_pct), "{:?}", hb.gpus[1]);
        assert!((68..78).contains(&hb.gpus[1].temp_c));
        assert_eq!(hb.gpus[1].mem_used, 60 << 30);
    }

    #[test]
    fn nvml_fails_cleanly_without_a_driver() {
        // On machines without the NVIDIA driver this is an error, not a
        // panic; on machines with one it opens.
        match NvmlGpus::open(None) {
            Ok(n) => assert_eq!(n.kind(), "nvml"),
            Err(e) => assert!(e.contains("NVML is not available"), "{e}"),
        }
        let (src, why) = detect(0, "n", None);
        assert!(src.kind() == "nvml" || (src.kind() == "none" && why.is_some()));
    }

    #[test]
    fn an_applications_xid_never_hides_a_critical_one() {
        let mut out = std::collections::HashMap::new();
        for (i, x) in [
            (0, 79),
            (0, 13),
            (0, 31),
            (1, 13),
            (2, 48),
            (2, 79),
            (3, 13),
            (3, 43),
        ] {
            keep_xid(&mut out, i, x);
        }
        assert_eq!(out.get(&0), Some(&79), "a critical Xid stays");
        assert_eq!(
            out.get(&1),
            Some(&13),
            "an application's alone is kept (and ignored later)"
        );
        assert_eq!(out.get(&2), Some(&79), "the latest critical one");
        assert_eq!(out.get(&3), Some(&43));
    }

    #[test]
    fn proc_parsers_reject_garbage() {
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(parse_loadavg("x y"), None);
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
    }
}
