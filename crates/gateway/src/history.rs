//! A short, bounded GPU telemetry history per node, in memory only, for the
//! dashboard's sparklines. Pure: time is a parameter.
//!
//! One sample per [`SAMPLE_EVERY`] (the first heartbeat of each period),
//! [`SAMPLES`] of them: 15 minutes. A sample is 16 bytes plus 8 per GPU, so
//! a node with 8 GPUs holds under 6 KB; nodes without GPUs hold nothing.

use std::collections::VecDeque;

use proto::{GpuPoint, GpuSample, Heartbeat};

/// Seconds between samples.
pub const SAMPLE_EVERY: u64 = 15;
/// Samples kept.
pub const SAMPLES: usize = 60;
/// GPUs per sample kept (a node reporting more is cut).
const MAX_GPUS: usize = 64;

/// One node's history.
#[derive(Debug, Default, Clone)]
pub struct History {
    samples: VecDeque<GpuSample>,
}

impl History {
    /// Records `hb` taken at `now` (unix seconds), unless a sample of this
    /// period is already kept or it has no GPUs.
    /// Records the first `confirmed` GPUs of `hb` (at most 64).
    pub fn record(&mut self, now: u64, hb: &Heartbeat, confirmed: usize) {
        if hb.gpus.is_empty() {
            return;
        }
        if self
            .samples
            .back()
            .is_some_and(|s| now < s.at + SAMPLE_EVERY && now >= s.at)
        {
            return;
        }
        let gpus = hb
            .gpus
            .iter()
            .take(MAX_GPUS.min(confirmed))
            .map(GpuPoint::of)
            .collect();
        self.samples.push_back(GpuSample { at: now, gpus });
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<GpuSample> {
        self.samples.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(util: u32) -> Heartbeat {
        Heartbeat {
            gpus: vec![proto::GpuTelemetry {
                index: 0,
                util_pct: util,
                temp_c: 300,
                mem_used: 3 << 30,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn one_sample_per_period_and_bounded() {
        let mut h = History::default();
        h.record(1000, &Heartbeat::default(), 64);
        assert!(h.samples().is_empty(), "no GPUs, no history");
        h.record(1000, &hb(50), 64);
        h.record(1005, &hb(60), 64);
        assert_eq!(h.samples().len(), 1, "same period");
        let s = &h.samples()[0];
        assert_eq!((s.gpus[0].util_pct, s.gpus[0].temp_c), (50, 254));
        assert_eq!(s.gpus[0].mem_used_mib, 3072);
        for i in 1..200 {
            h.record(1000 + i * SAMPLE_EVERY, &hb(500), 64);
        }
        let all = h.samples();
        assert_eq!(all.len(), SAMPLES);
        assert_eq!(all.last().map(|s| s.gpus[0].util_pct), Some(100));
        assert!(all.windows(2).all(|w| w[0].at < w[1].at));
        // A clock that steps back starts a new sample rather than stalling.
        h.record(10, &hb(1), 64);
        assert_eq!(h.samples().last().map(|s| s.at), Some(10));
    }
}
