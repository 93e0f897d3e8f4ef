//! The library called directly, as nvml-wrapper calls it. One test: the
//! description's path is process-wide.
#![allow(clippy::unwrap_used)]

use super::*;

fn name_of(handle: *mut c_void, len: c_uint) -> (u32, String) {
    let mut buf = vec![0x55u8; 16];
    // SAFETY: `buf` holds 16 bytes and `len` is at most 16.
    let rc = unsafe { nvmlDeviceGetName(handle, buf.as_mut_ptr().cast(), len.min(16)) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
    // Nothing past the caller's length was touched.
    assert!(buf[len.min(16) as usize..].iter().all(|b| *b == 0x55));
    (rc, String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[test]
fn answers_from_the_description_and_its_faults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nvml.json");
    // SAFETY: the only test in this crate that touches the environment.
    unsafe { std::env::set_var(CONFIG_ENV, &path) };
    // No description: no driver.
    assert_eq!(nvmlInit_v2(), code::DRIVER_NOT_LOADED);
    let mut desc = Description {
        devices: vec![
            Device {
                name: "GPU A".into(),
                ..Device::h100(0)
            },
            Device::h100(1),
        ],
        ..Description::default()
    };
    write(&path, &desc).unwrap();
    let mut n: c_uint = 0;
    // SAFETY: a valid out-pointer.
    assert_eq!(
        unsafe { nvmlDeviceGetCount_v2(&mut n) },
        code::UNINITIALIZED
    );
    assert_eq!(nvmlInit_v2(), code::SUCCESS);
    // SAFETY: a valid out-pointer, then a null one.
    unsafe {
        assert_eq!(nvmlDeviceGetCount_v2(&mut n), code::SUCCESS);
        assert_eq!(
            nvmlDeviceGetCount_v2(std::ptr::null_mut()),
            code::INVALID_ARGUMENT
        );
    }
    assert_eq!(n, 2);
    let mut h: *mut c_void = std::ptr::null_mut();
    // SAFETY: a valid out-pointer.
    assert_eq!(
        unsafe { nvmlDeviceGetHandleByIndex_v2(0, &mut h) },
        code::SUCCESS
    );
    // SAFETY: as above.
    assert_eq!(
        unsafe { nvmlDeviceGetHandleByIndex_v2(2, &mut h) },
        code::INVALID_ARGUMENT
    );
    assert_eq!(name_of(h, 16), (code::SUCCESS, "GPU A".into()));
    // The name and its NUL need 6 bytes: 5 is too few, and nothing is written past it.
    assert_eq!(name_of(h, 5).0, code::INSUFFICIENT_SIZE);
    assert_eq!(name_of(h, 6), (code::SUCCESS, "GPU A".into()));
    // A handle that names no device.
    assert_eq!(
        name_of(std::ptr::without_provenance_mut(9), 16).0,
        code::INVALID_ARGUMENT
    );
    let mut mem = MemoryV2 {
        version: MEMORY_V2_VERSION,
        ..MemoryV2::default()
    };
    // SAFETY: a valid out-pointer.
    assert_eq!(
        unsafe { nvmlDeviceGetMemoryInfo_v2(h, &mut mem) },
        code::SUCCESS
    );
    assert_eq!((mem.total, mem.used), (80 << 30, 1 << 30));
    mem.version = 1;
    // SAFETY: as above.
    assert_eq!(
        unsafe { nvmlDeviceGetMemoryInfo_v2(h, &mut mem) },
        code::INVALID_ARGUMENT
    );
    // Faults, read again while "running".
    desc.devices[0]
        .faults
        .insert(Call::Temperature, Fault::NotSupported);
    desc.devices[0].ecc_uncorrected_volatile = 3;
    write(&path, &desc).unwrap();
    let mut t: c_uint = 0;
    let mut ecc: c_ulonglong = 0;
    // SAFETY: valid out-pointers.
    unsafe {
        assert_eq!(nvmlDeviceGetTemperature(h, 0, &mut t), code::NOT_SUPPORTED);
        assert_eq!(
            nvmlDeviceGetTotalEccErrors(h, 1, 0, &mut ecc),
            code::SUCCESS
        );
    }
    assert_eq!(ecc, 3);
    desc.devices[0].faults.insert(Call::All, Fault::GpuIsLost);
    desc.devices[0].faults.remove(&Call::Temperature);
    write(&path, &desc).unwrap();
    assert_eq!(name_of(h, 16).0, code::GPU_IS_LOST);
    // The other GPU keeps answering.
    let mut h1: *mut c_void = std::ptr::null_mut();
    // SAFETY: valid out-pointers.
    unsafe {
        assert_eq!(nvmlDeviceGetHandleByIndex_v2(1, &mut h1), code::SUCCESS);
        assert_eq!(nvmlDeviceGetTemperature(h1, 0, &mut t), code::SUCCESS);
    }
    assert_eq!(t, 35);
    // SAFETY: nvmlErrorString returns a static C string.
    let s = unsafe { std::ffi::CStr::from_ptr(nvmlErrorString(code::GPU_IS_LOST)) };
    assert_eq!(s.to_str().unwrap(), "GPU is lost");
    assert_eq!(nvmlShutdown(), code::SUCCESS);
    assert_eq!(nvmlShutdown(), code::UNINITIALIZED);
    // A description that is not JSON: an error, not a panic.
    std::fs::write(&path, "{").unwrap();
    assert_eq!(nvmlInit_v2(), code::UNKNOWN);
}
