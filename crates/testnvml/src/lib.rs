//! A stand-in for `libnvidia-ml.so`, for tests only: the node agent loads
//! it through nvml-wrapper exactly as it loads the real library
//! (`openclaw node run --nvml-lib PATH`), so the NVML code path runs in CI
//! without a GPU.
//!
//! It answers from a JSON [`Description`] whose path is in the
//! [`CONFIG_ENV`] environment variable of the process that loads it. The
//! file is read again on every call, so a test can change the GPUs while
//! the agent runs (write it with [`write`], which renames into place, so a
//! reader never sees half a file). Per-call faults (`NOT_SUPPORTED`,
//! `GPU_IS_LOST`, `UNKNOWN`, `INSUFFICIENT_SIZE`, ...) are listed per
//! device under the call's name ([`Call`]).
//!
//! This crate is the workspace's one C ABI and cannot be written without
//! `unsafe` (raw out-pointers). Its rules: `unsafe_op_in_unsafe_fn` is
//! denied, every `unsafe` block says why it is sound in a `SAFETY:`
//! comment, every pointer is checked for null, and every write into a
//! caller's buffer is bounded by the length the caller passed
//! (`INSUFFICIENT_SIZE` otherwise). Nothing shipped links it.
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_snake_case)]

use std::collections::BTreeMap;
use std::ffi::{c_char, c_uint, c_ulonglong, c_void};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

/// The environment variable that names the JSON description.
pub const CONFIG_ENV: &str = "OPENCLAW_TEST_NVML";

/// Largest description file read, in bytes.
const MAX_DESCRIPTION: u64 = 1 << 20;

/// NVML return codes (`nvmlReturn_t`), as in `nvml.h`.
pub mod code {
    /// The call succeeded.
    pub const SUCCESS: u32 = 0;
    /// NVML was not initialised.
    pub const UNINITIALIZED: u32 = 1;
    /// A bad argument (a null pointer, an unknown handle).
    pub const INVALID_ARGUMENT: u32 = 2;
    /// The device does not support the query.
    pub const NOT_SUPPORTED: u32 = 3;
    /// No permission.
    pub const NO_PERMISSION: u32 = 4;
    /// Not found.
    pub const NOT_FOUND: u32 = 6;
    /// The caller's buffer is too small.
    pub const INSUFFICIENT_SIZE: u32 = 7;
    /// No driver.
    pub const DRIVER_NOT_LOADED: u32 = 9;
    /// No event arrived in time (`nvmlEventSetWait`).
    pub const TIMEOUT: u32 = 10;
    /// The GPU fell off the bus.
    pub const GPU_IS_LOST: u32 = 15;
    /// Anything else.
    pub const UNKNOWN: u32 = 999;
}

/// A fault a call answers with instead of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Fault {
    /// `NVML_ERROR_NOT_SUPPORTED`.
    NotSupported,
    /// `NVML_ERROR_GPU_IS_LOST`.
    GpuIsLost,
    /// `NVML_ERROR_UNKNOWN`.
    Unknown,
    /// `NVML_ERROR_INSUFFICIENT_SIZE`.
    InsufficientSize,
    /// `NVML_ERROR_NO_PERMISSION`.
    NoPermission,
    /// `NVML_ERROR_DRIVER_NOT_LOADED`.
    DriverNotLoaded,
}

impl Fault {
    /// Its NVML return code.
    pub fn code(self) -> u32 {
        match self {
            Fault::NotSupported => code::NOT_SUPPORTED,
            Fault::GpuIsLost => code::GPU_IS_LOST,
            Fault::Unknown => code::UNKNOWN,
            Fault::InsufficientSize => code::INSUFFICIENT_SIZE,
            Fault::NoPermission => code::NO_PERMISSION,
            Fault::DriverNotLoaded => code::DRIVER_NOT_LOADED,
        }
    }
}

/// The device calls a fault can be injected into, by the name used as a
/// key of [`Device::faults`]; `all` stands for every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// Every device call.
    All,
    /// `nvmlDeviceGetHandleByIndex_v2`.
    Handle,
    /// `nvmlDeviceGetName`.
    Name,
    /// `nvmlDeviceGetUUID`.
    Uuid,
    /// `nvmlDeviceGetMemoryInfo_v2` and `nvmlDeviceGetMemoryInfo`.
    Memory,
    /// `nvmlDeviceGetUtilizationRates`.
    Utilization,
    /// `nvmlDeviceGetTemperature`.
    Temperature,
    /// `nvmlDeviceGetTotalEccErrors`.
    Ecc,
    /// `nvmlDeviceGetMigMode`.
    Mig,
    /// `nvmlDeviceGetPersistenceMode`.
    Persistence,
    /// `nvmlDeviceRegisterEvents` (`NOT_SUPPORTED` on many boards).
    Events,
}

/// The machine the library pretends to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Description {
    /// `nvmlSystemGetDriverVersion`.
    pub driver_version: String,
    /// `nvmlSystemGetNVMLVersion`.
    pub nvml_version: String,
    /// What `nvmlInit_v2` answers instead of success.
    pub init_fault: Option<Fault>,
    /// What `nvmlDeviceGetCount_v2` answers instead of the count.
    pub count_fault: Option<Fault>,
    /// The GPUs, by index.
    pub devices: Vec<Device>,
}

impl Default for Description {
    fn default() -> Description {
        Description {
            driver_version: "550.54.15".into(),
            nvml_version: "12.550.54.15".into(),
            init_fault: None,
            count_fault: None,
            devices: vec![],
        }
    }
}

/// One GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Device {
    /// Model name.
    pub name: String,
    /// UUID (`GPU-...`).
    pub uuid: String,
    /// Memory in total, bytes.
    pub mem_total: u64,
    /// Memory in use, bytes.
    pub mem_used: u64,
    /// GPU utilisation, percent.
    pub util_gpu: u32,
    /// Memory utilisation, percent.
    pub util_mem: u32,
    /// GPU temperature, Celsius.
    pub temp_c: u32,
    /// Volatile (since the driver loaded) uncorrected ECC errors.
    pub ecc_uncorrected_volatile: u64,
    /// Volatile corrected ECC errors.
    pub ecc_corrected_volatile: u64,
    /// Aggregate (lifetime) uncorrected ECC errors.
    pub ecc_uncorrected_aggregate: u64,
    /// MIG mode now.
    pub mig: bool,
    /// Persistence mode.
    pub persistence: bool,
    /// Critical Xid events, in order: each is delivered once by
    /// `nvmlEventSetWait_v2` to a set this GPU is registered in; append to
    /// raise another.
    pub xids: Vec<u64>,
    /// Faults by call.
    pub faults: BTreeMap<Call, Fault>,
}

impl Default for Device {
    fn default() -> Device {
        Device {
            name: "NVIDIA H100 80GB HBM3".into(),
            uuid: "GPU-00000000-0000-0000-0000-000000000000".into(),
            mem_total: 80 << 30,
            mem_used: 1 << 30,
            util_gpu: 0,
            util_mem: 0,
            temp_c: 35,
            ecc_uncorrected_volatile: 0,
            ecc_corrected_volatile: 0,
            ecc_uncorrected_aggregate: 0,
            mig: false,
            persistence: true,
            xids: Vec::new(),
            faults: BTreeMap::new(),
        }
    }
}

impl Device {
    /// A healthy H100 whose UUID ends in `n`.
    pub fn h100(n: u32) -> Device {
        Device {
            uuid: format!("GPU-7e57a100-0000-4000-8000-{n:012}"),
            ..Device::default()
        }
    }

    fn fault(&self, call: Call) -> Option<u32> {
        self.faults
            .get(&call)
            .or_else(|| self.faults.get(&Call::All))
            .map(|f| f.code())
    }
}

/// Writes `desc` to `path` as JSON, atomically (a temporary file renamed
/// into place), so the library never reads half a description.
pub fn write(path: &std::path::Path, desc: &Description) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(desc).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Reads the description named by [`CONFIG_ENV`]: an NVML error code when
/// there is none (no driver) or it cannot be read.
fn load() -> Result<Description, u32> {
    use std::io::Read;
    let path = std::env::var_os(CONFIG_ENV).ok_or(code::DRIVER_NOT_LOADED)?;
    let file = std::fs::File::open(path).map_err(|_| code::DRIVER_NOT_LOADED)?;
    let mut text = String::new();
    file.take(MAX_DESCRIPTION)
        .read_to_string(&mut text)
        .map_err(|_| code::UNKNOWN)?;
    serde_json::from_str(&text).map_err(|_| code::UNKNOWN)
}

/// `nvmlInit` minus `nvmlShutdown` calls.
static INIT_COUNT: AtomicU32 = AtomicU32::new(0);

/// The description, once NVML is initialised.
fn live() -> Result<Description, u32> {
    if INIT_COUNT.load(Ordering::SeqCst) == 0 {
        return Err(code::UNINITIALIZED);
    }
    load()
}

/// The device a handle names: handles are the index plus one, as a
/// pointer value that is never dereferenced.
fn device(desc: &Description, handle: *mut c_void) -> Result<&Device, u32> {
    handle
        .addr()
        .checked_sub(1)
        .and_then(|i| desc.devices.get(i))
        .ok_or(code::INVALID_ARGUMENT)
}

/// Runs `f` on the device `handle` names, unless NVML is down, the handle
/// is unknown, or a fault is injected into `call`.
fn with_device(handle: *mut c_void, call: Call, f: impl FnOnce(&Device) -> u32) -> u32 {
    let desc = match live() {
        Ok(d) => d,
        Err(c) => return c,
    };
    match device(&desc, handle) {
        Ok(d) => match d.fault(call) {
            Some(c) => c,
            None => f(d),
        },
        Err(c) => c,
    }
}

/// Writes `value` through `out`.
///
/// # Safety
/// `out` is null or valid for a write of one `T`.
unsafe fn put<T>(out: *mut T, value: T) -> u32 {
    if out.is_null() {
        return code::INVALID_ARGUMENT;
    }
    // SAFETY: not null, and the caller promises it is valid for one T.
    unsafe { out.write_unaligned(value) };
    code::SUCCESS
}

/// Copies `s` and a terminating NUL into `buf`, which holds `len` bytes.
///
/// # Safety
/// `buf` is null or valid for writes of `len` bytes.
unsafe fn put_str(buf: *mut c_char, len: c_uint, s: &str) -> u32 {
    if buf.is_null() {
        return code::INVALID_ARGUMENT;
    }
    // Up to the first NUL, as a C reader would see it.
    let bytes = s.as_bytes();
    let bytes = &bytes[..bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len())];
    if bytes.len() >= len as usize {
        return code::INSUFFICIENT_SIZE;
    }
    // SAFETY: `buf` is not null and valid for `len` bytes (the caller's
    // promise); we write `bytes.len() + 1 <= len` bytes, from a slice that
    // cannot overlap a buffer the caller owns.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        buf.add(bytes.len()).write(0);
    }
    code::SUCCESS
}

/// `nvmlInit_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> u32 {
    let desc = match load() {
        Ok(d) => d,
        Err(c) => return c,
    };
    if let Some(f) = desc.init_fault {
        return f.code();
    }
    INIT_COUNT.fetch_add(1, Ordering::SeqCst);
    code::SUCCESS
}

/// `nvmlInitWithFlags`: as [`nvmlInit_v2`], the flags ignored.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> u32 {
    nvmlInit_v2()
}

/// `nvmlShutdown`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> u32 {
    match INIT_COUNT.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
        Ok(_) => code::SUCCESS,
        Err(_) => code::UNINITIALIZED,
    }
}

/// `nvmlErrorString`: a static string for every code.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: u32) -> *const c_char {
    let s: &'static std::ffi::CStr = match result {
        code::SUCCESS => c"Success",
        code::UNINITIALIZED => c"Uninitialized",
        code::INVALID_ARGUMENT => c"Invalid Argument",
        code::NOT_SUPPORTED => c"Not Supported",
        code::NO_PERMISSION => c"Insufficient Permissions",
        code::NOT_FOUND => c"Not Found",
        code::INSUFFICIENT_SIZE => c"Insufficient Size",
        code::DRIVER_NOT_LOADED => c"Driver Not Loaded",
        code::GPU_IS_LOST => c"GPU is lost",
        _ => c"Unknown Error",
    };
    s.as_ptr()
}

/// `nvmlSystemGetDriverVersion`.
///
/// # Safety
/// `version` is null or valid for writes of `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> u32 {
    match live() {
        // SAFETY: the caller's promise, passed on.
        Ok(d) => unsafe { put_str(version, length, &d.driver_version) },
        Err(c) => c,
    }
}

/// `nvmlSystemGetNVMLVersion`.
///
/// # Safety
/// `version` is null or valid for writes of `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> u32 {
    match live() {
        // SAFETY: the caller's promise, passed on.
        Ok(d) => unsafe { put_str(version, length, &d.nvml_version) },
        Err(c) => c,
    }
}

/// `nvmlDeviceGetCount_v2`.
///
/// # Safety
/// `count` is null or valid for a write of one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> u32 {
    let desc = match live() {
        Ok(d) => d,
        Err(c) => return c,
    };
    if let Some(f) = desc.count_fault {
        return f.code();
    }
    let n = c_uint::try_from(desc.devices.len()).unwrap_or(c_uint::MAX);
    // SAFETY: the caller's promise, passed on.
    unsafe { put(count, n) }
}

/// `nvmlDeviceGetHandleByIndex_v2`.
///
/// # Safety
/// `device` is null or valid for a write of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut *mut c_void,
) -> u32 {
    let desc = match live() {
        Ok(d) => d,
        Err(c) => return c,
    };
    let Some(d) = desc.devices.get(index as usize) else {
        return code::INVALID_ARGUMENT;
    };
    if let Some(c) = d.fault(Call::Handle) {
        return c;
    }
    let handle = std::ptr::without_provenance_mut::<c_void>(index as usize + 1);
    // SAFETY: the caller's promise, passed on.
    unsafe { put(device, handle) }
}

/// `nvmlDeviceGetName`.
///
/// # Safety
/// `name` is null or valid for writes of `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: *mut c_void,
    name: *mut c_char,
    length: c_uint,
) -> u32 {
    // SAFETY: the caller's promise, passed on.
    with_device(device, Call::Name, |d| unsafe {
        put_str(name, length, &d.name)
    })
}

/// `nvmlDeviceGetUUID`.
///
/// # Safety
/// `uuid` is null or valid for writes of `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: *mut c_void,
    uuid: *mut c_char,
    length: c_uint,
) -> u32 {
    // SAFETY: the caller's promise, passed on.
    with_device(device, Call::Uuid, |d| unsafe {
        put_str(uuid, length, &d.uuid)
    })
}

/// `nvmlMemory_v2_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryV2 {
    /// The struct version the caller set.
    pub version: c_uint,
    /// Total, bytes.
    pub total: c_ulonglong,
    /// Reserved by the driver, bytes.
    pub reserved: c_ulonglong,
    /// Free, bytes.
    pub free: c_ulonglong,
    /// Used, bytes.
    pub used: c_ulonglong,
}

/// `nvmlMemory_t` (version 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Total, bytes.
    pub total: c_ulonglong,
    /// Free, bytes.
    pub free: c_ulonglong,
    /// Used, bytes.
    pub used: c_ulonglong,
}

/// `NVML_STRUCT_VERSION(Memory, 2)`.
pub const MEMORY_V2_VERSION: c_uint = (std::mem::size_of::<MemoryV2>() | (2 << 24)) as c_uint;

/// `nvmlDeviceGetMemoryInfo_v2`.
///
/// # Safety
/// `memory` is null or valid for reads and writes of one `MemoryV2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: *mut c_void,
    memory: *mut MemoryV2,
) -> u32 {
    if memory.is_null() {
        return code::INVALID_ARGUMENT;
    }
    // SAFETY: not null, and valid for one MemoryV2 (the caller's promise).
    let version = unsafe { memory.read_unaligned() }.version;
    if version != MEMORY_V2_VERSION {
        return code::INVALID_ARGUMENT;
    }
    with_device(device, Call::Memory, |d| {
        let m = MemoryV2 {
            version,
            total: d.mem_total,
            reserved: 0,
            free: d.mem_total.saturating_sub(d.mem_used),
            used: d.mem_used,
        };
        // SAFETY: the caller's promise, passed on.
        unsafe { put(memory, m) }
    })
}

/// `nvmlDeviceGetMemoryInfo`.
///
/// # Safety
/// `memory` is null or valid for a write of one `Memory`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(device: *mut c_void, memory: *mut Memory) -> u32 {
    with_device(device, Call::Memory, |d| {
        let m = Memory {
            total: d.mem_total,
            free: d.mem_total.saturating_sub(d.mem_used),
            used: d.mem_used,
        };
        // SAFETY: the caller's promise, passed on.
        unsafe { put(memory, m) }
    })
}

/// `nvmlUtilization_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Utilization {
    /// GPU, percent.
    pub gpu: c_uint,
    /// Memory, percent.
    pub memory: c_uint,
}

/// `nvmlDeviceGetUtilizationRates`.
///
/// # Safety
/// `utilization` is null or valid for a write of one `Utilization`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: *mut c_void,
    utilization: *mut Utilization,
) -> u32 {
    with_device(device, Call::Utilization, |d| {
        let u = Utilization {
            gpu: d.util_gpu,
            memory: d.util_mem,
        };
        // SAFETY: the caller's promise, passed on.
        unsafe { put(utilization, u) }
    })
}

/// `nvmlDeviceGetTemperature`: only `NVML_TEMPERATURE_GPU` (0).
///
/// # Safety
/// `temp` is null or valid for a write of one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: *mut c_void,
    sensor: c_uint,
    temp: *mut c_uint,
) -> u32 {
    if sensor != 0 {
        return code::INVALID_ARGUMENT;
    }
    // SAFETY: the caller's promise, passed on.
    with_device(device, Call::Temperature, |d| unsafe {
        put(temp, d.temp_c)
    })
}

/// `nvmlDeviceGetTotalEccErrors`: error type 0 corrected, 1 uncorrected;
/// counter type 0 volatile, 1 aggregate.
///
/// # Safety
/// `count` is null or valid for a write of one `c_ulonglong`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTotalEccErrors(
    device: *mut c_void,
    error_type: c_uint,
    counter_type: c_uint,
    count: *mut c_ulonglong,
) -> u32 {
    with_device(device, Call::Ecc, |d| {
        let n = match (error_type, counter_type) {
            (0, 0) => d.ecc_corrected_volatile,
            (1, 0) => d.ecc_uncorrected_volatile,
            (1, 1) => d.ecc_uncorrected_aggregate,
            (0, 1) => d.ecc_corrected_volatile,
            _ => return code::INVALID_ARGUMENT,
        };
        // SAFETY: the caller's promise, passed on.
        unsafe { put(count, n) }
    })
}

/// `nvmlDeviceGetMigMode`: 1 enabled, 0 disabled; pending equals current.
///
/// # Safety
/// `current` and `pending` are null or valid for a write of one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: *mut c_void,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> u32 {
    if current.is_null() || pending.is_null() {
        return code::INVALID_ARGUMENT;
    }
    with_device(device, Call::Mig, |d| {
        let mode = c_uint::from(d.mig);
        // SAFETY: both checked for null above; the caller's promise for the rest.
        unsafe {
            put(current, mode);
            put(pending, mode)
        }
    })
}

/// `nvmlDeviceGetPersistenceMode`: 1 enabled, 0 disabled.
///
/// # Safety
/// `mode` is null or valid for a write of one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPersistenceMode(
    device: *mut c_void,
    mode: *mut c_uint,
) -> u32 {
    // SAFETY: the caller's promise, passed on.
    with_device(device, Call::Persistence, |d| unsafe {
        put(mode, c_uint::from(d.persistence))
    })
}

/// `nvmlDeviceGetIndex`.
///
/// # Safety
/// `index` is null or valid for a write of one `c_uint`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: *mut c_void, index: *mut c_uint) -> u32 {
    let i = device.addr().saturating_sub(1);
    with_device(device, Call::Handle, |_| {
        let i = c_uint::try_from(i).unwrap_or(c_uint::MAX);
        // SAFETY: the caller's promise, passed on.
        unsafe { put(index, i) }
    })
}

/// `NVML_EVENT_TYPE_XID_CRITICAL_ERROR`.
pub const EVENT_XID: u64 = 8;

/// The one event set: which devices are registered for Xid events, and
/// how many of each device's [`Device::xids`] were delivered.
#[derive(Default)]
struct Events {
    registered: std::collections::BTreeSet<usize>,
    delivered: BTreeMap<usize, usize>,
}

static EVENTS: std::sync::Mutex<Option<Events>> = std::sync::Mutex::new(None);

fn with_events<T>(f: impl FnOnce(&mut Events) -> T) -> T {
    let mut g = match EVENTS.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    f(g.get_or_insert_with(Events::default))
}

/// `nvmlEventSetCreate`: one set per process (a handle never dereferenced).
///
/// # Safety
/// `set` is null or valid for a write of one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetCreate(set: *mut *mut c_void) -> u32 {
    if let Err(c) = live() {
        return c;
    }
    // SAFETY: the caller's promise, passed on.
    unsafe { put(set, std::ptr::without_provenance_mut::<c_void>(1)) }
}

/// `nvmlDeviceRegisterEvents`: only Xid events are delivered.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceRegisterEvents(
    device: *mut c_void,
    event_types: c_ulonglong,
    set: *mut c_void,
) -> u32 {
    if set.is_null() {
        return code::INVALID_ARGUMENT;
    }
    let i = device.addr().saturating_sub(1);
    with_device(device, Call::Events, |_| {
        if event_types & EVENT_XID != 0 {
            with_events(|e| e.registered.insert(i));
        }
        code::SUCCESS
    })
}

/// `nvmlEventData_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EventData {
    /// The device's handle.
    pub device: *mut c_void,
    /// The event type.
    pub event_type: c_ulonglong,
    /// The Xid.
    pub event_data: c_ulonglong,
    /// MIG GPU instance.
    pub gpu_instance_id: c_uint,
    /// MIG compute instance.
    pub compute_instance_id: c_uint,
}

/// `nvmlEventSetWait_v2`: the next undelivered Xid of a registered
/// device, or `TIMEOUT` at once (it never sleeps).
///
/// # Safety
/// `data` is null or valid for a write of one `EventData`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetWait_v2(
    set: *mut c_void,
    data: *mut EventData,
    _timeout_ms: c_uint,
) -> u32 {
    if set.is_null() || data.is_null() {
        return code::INVALID_ARGUMENT;
    }
    let desc = match live() {
        Ok(d) => d,
        Err(c) => return c,
    };
    let next = with_events(|e| {
        for &i in &e.registered {
            let Some(d) = desc.devices.get(i) else {
                continue;
            };
            let done = e.delivered.entry(i).or_insert(0);
            if let Some(xid) = d.xids.get(*done) {
                *done += 1;
                return Some((i, *xid));
            }
        }
        None
    });
    let Some((i, xid)) = next else {
        return code::TIMEOUT;
    };
    let ev = EventData {
        device: std::ptr::without_provenance_mut(i + 1),
        event_type: EVENT_XID,
        event_data: xid,
        gpu_instance_id: 0,
        compute_instance_id: 0,
    };
    // SAFETY: checked for null above; the caller's promise for the rest.
    unsafe { put(data, ev) }
}

/// `nvmlEventSetFree`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlEventSetFree(_set: *mut c_void) -> u32 {
    with_events(|e| e.registered.clear());
    code::SUCCESS
}

#[cfg(test)]
mod tests;
