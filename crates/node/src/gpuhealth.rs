//! Per-GPU health, as pure functions over NVML readings: a GPU that is
//! lost or has volatile uncorrectable ECC errors is unhealthy, with the
//! reason; it is healthy again only after `recover_after` good readings
//! in a row. A MIG-enabled GPU is fit but never handed out whole.
//!
//! Critical Xid events (NVML's event API) are not watched yet: an Xid that
//! takes a GPU off the bus shows here as lost.

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

/// What is wrong with a GPU in one reading, if anything. Pure.
pub fn problem(s: &GpuSample) -> Option<String> {
    if let Some(lost) = &s.lost {
        return Some(lost.clone());
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
