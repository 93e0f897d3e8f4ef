//! Per-GPU health, as pure functions over NVML readings: a GPU that is
//! lost or has volatile uncorrectable ECC errors is unhealthy, with the
//! reason; it is healthy again only after `recover_after` good readings
//! in a row. A MIG-enabled GPU is fit but never handed out whole.
//!
//! A critical Xid event (NVML's event API, where the board supports it)
//! makes a GPU unhealthy too, except the Xids an application causes
//! ([`APPLICATION_XIDS`], as Kubernetes' NVIDIA device plugin skips them).

use proto::GpuHealth;

use crate::telemetry::GpuSample;

/// One GPU's health and what it is recovering from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuState {
    /// What new jobs see.
    pub health: GpuHealth,
    /// The last fault, until enough good readings in a row.
    pub fault: Option<String>,
    /// Good readings in a row since that fault.
    pub good_in_row: u32,
}

/// Xids a job's own bugs cause (a bad memory access, an illegal
/// instruction, a kernel reset by the application): the GPU is fine.
pub const APPLICATION_XIDS: [u64; 6] = [13, 31, 43, 45, 68, 109];

/// What is wrong with a GPU in one reading, if anything. Pure.
pub fn problem(s: &GpuSample) -> Option<String> {
    if let Some(lost) = &s.lost {
        return Some(lost.clone());
    }
    if let Some(x) = s.xid.filter(|x| !APPLICATION_XIDS.contains(x)) {
        return Some(format!(
            "reported critical Xid {x}: drain it, read 'dmesg' for the cause, and reset the GPU (nvidia-smi -r)"
        ));
    }
    match s.ecc_uncorrected {
        Some(n) if n > 0 => Some(format!(
            "has {n} volatile uncorrectable ECC error(s): drain it and reset the GPU (nvidia-smi -r)"
        )),
        _ => None,
    }
}

/// A GPU's next state after `sample`. Pure.
pub fn next(prev: &GpuState, sample: &GpuSample, recover_after: u32) -> GpuState {
    let fit = if sample.mig == Some(true) {
        GpuHealth::Mig
    } else {
        GpuHealth::Healthy
    };
    if let Some(why) = problem(sample) {
        return GpuState {
            health: GpuHealth::Unhealthy(why.clone()),
            fault: Some(why),
            good_in_row: 0,
        };
    }
    match &prev.fault {
        None => GpuState {
            health: fit,
            ..GpuState::default()
        },
        Some(why) => {
            let good = prev.good_in_row.saturating_add(1);
            if good >= recover_after {
                GpuState {
                    health: fit,
                    ..GpuState::default()
                }
            } else {
                GpuState {
                    health: GpuHealth::Unhealthy(format!(
                        "recovering ({good} of {recover_after} good samples) after: {why}"
                    )),
                    fault: Some(why.clone()),
                    good_in_row: good,
                }
            }
        }
    }
}

/// Every GPU's state, by index.
#[derive(Debug, Default)]
pub struct Tracker {
    states: Vec<GpuState>,
}

impl Tracker {
    /// Takes one round of readings (by index; a GPU missing from it keeps
    /// its state) and returns every GPU's health, by index.
    pub fn update(&mut self, samples: &[GpuSample], recover_after: u32) -> Vec<GpuHealth> {
        for s in samples {
            let i = s.index as usize;
            if i >= self.states.len() {
                if i >= proto::MAX_NODE_GPUS as usize {
                    continue;
                }
                self.states.resize(i + 1, GpuState::default());
            }
            self.states[i] = next(&self.states[i], s, recover_after);
        }
        self.states.iter().map(|s| s.health.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> GpuSample {
        GpuSample {
            ecc_uncorrected: Some(0),
            mig: Some(false),
            ..GpuSample::default()
        }
    }

    #[test]
    fn table() {
        let lost = GpuSample {
            lost: Some("lost: GPU is lost".into()),
            ..GpuSample::default()
        };
        let ecc = GpuSample {
            ecc_uncorrected: Some(2),
            ..good()
        };
        let mig = GpuSample {
            mig: Some(true),
            ..good()
        };
        // Unsupported ECC and MIG queries are not faults.
        let unknown = GpuSample::default();
        let xid79 = GpuSample {
            xid: Some(79),
            ..good()
        };
        let xid13 = GpuSample {
            xid: Some(13),
            ..good()
        };
        let sick = |why: &str| GpuState {
            health: GpuHealth::Unhealthy(why.into()),
            fault: Some(why.into()),
            good_in_row: 0,
        };
        let fine = GpuState::default();
        let good = good();
        let ecc_why =
            "has 2 volatile uncorrectable ECC error(s): drain it and reset the GPU (nvidia-smi -r)";
        let cases: Vec<(GpuState, &GpuSample, GpuState)> = vec![
            (fine.clone(), &good, fine.clone()),
            (fine.clone(), &unknown, fine.clone()),
            (fine.clone(), &lost, sick("lost: GPU is lost")),
            (
                fine.clone(),
                &xid79,
                sick(
                    "reported critical Xid 79: drain it, read 'dmesg' for the cause, and reset the GPU (nvidia-smi -r)",
                ),
            ),
            // An application's own Xid leaves the GPU fit.
            (fine.clone(), &xid13, fine.clone()),
            (fine.clone(), &ecc, sick(ecc_why)),
            (
                fine.clone(),
                &mig,
                GpuState {
                    health: GpuHealth::Mig,
                    ..fine.clone()
                },
            ),
            // One good sample is not enough to come back (recover_after 3)...
            (
                sick("lost: GPU is lost"),
                &good,
                GpuState {
                    health: GpuHealth::Unhealthy(
                        "recovering (1 of 3 good samples) after: lost: GPU is lost".into(),
                    ),
                    fault: Some("lost: GPU is lost".into()),
                    good_in_row: 1,
                },
            ),
            // ... the third in a row is.
            (
                GpuState {
                    good_in_row: 2,
                    ..sick("lost: GPU is lost")
                },
                &good,
                fine.clone(),
            ),
            // A fault while recovering starts the count again.
            (
                GpuState {
                    good_in_row: 2,
                    ..sick("lost: GPU is lost")
                },
                &ecc,
                sick(ecc_why),
            ),
        ];
        for (i, (prev, sample, want)) in cases.into_iter().enumerate() {
            assert_eq!(next(&prev, sample, 3), want, "case {i}");
        }
    }

    #[test]
    fn tracker_judges_each_gpu_alone() {
        let mut t = Tracker::default();
        let mut s = vec![
            GpuSample {
                index: 0,
                lost: Some("lost: x".into()),
                ..good()
            },
            GpuSample { index: 1, ..good() },
        ];
        let h = t.update(&s, 2);
        assert_eq!(
            h,
            vec![GpuHealth::Unhealthy("lost: x".into()), GpuHealth::Healthy]
        );
        s[0].lost = None;
        assert!(!t.update(&s, 2)[0].usable());
        assert!(t.update(&s, 2)[0].usable());
    }
}
