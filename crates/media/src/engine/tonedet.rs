//! Continuity-tone detection on the TDM input: 2010 Hz (`T/co1`) and 1780 Hz (`T/co2`).
//!
//! ## Method
//! The input is cut into blocks of 80 samples (10 ms; a frame is always a whole number of
//! blocks). For each block the detector computes the block energy `E = Σx²` and, by
//! Goertzel, the power `P(f) = |X(f)|²` at both frequencies. For a pure sine exactly at
//! `f` the ratio `r(f) = 2·P(f) / (N·E)` is 1; it falls as the energy moves away from `f`
//! (a rectangular 10 ms window: ~0.74 at ±30 Hz, below 0.05 at 147 Hz — the distance from
//! DTMF's 1633 Hz to 1780 Hz), and a signal whose energy is spread over several
//! components or a band (DTMF pairs, speech harmonics, noise) cannot reach it: a DTMF
//! digit puts at most ~60 % of its energy in one tone, and then at a DTMF frequency.
//!
//! A block *shows* a tone when its mean power is at least [`MIN_POWER_DBM0`] and
//! `r ≥` [`ONSET_RATIO`]. A tone is reported once it has been shown by [`ON_BLOCKS`]
//! consecutive blocks (60 ms). While it lasts, blocks need only `r ≥` [`HOLD_RATIO`]; it
//! ends after [`OFF_BLOCKS`] blocks (40 ms) without it, so a short dropout does not
//! report the tone twice. The other tone shown for [`ON_BLOCKS`] blocks replaces it (and
//! is reported). Storage is fixed; nothing is allocated after construction.

use crate::tone::{CONTINUITY_HZ, CONTINUITY_RETURN_HZ, DBM0_POWER};

/// Samples per analysis block (10 ms at 8 kHz).
pub(super) const BLOCK: usize = 80;
/// Consecutive blocks that must show a tone before it is reported (60 ms).
pub(super) const ON_BLOCKS: u8 = 6;
/// Consecutive blocks without the tone that end it (40 ms).
pub(super) const OFF_BLOCKS: u8 = 4;
/// Share of a block's energy the tone must carry to start.
pub(super) const ONSET_RATIO: f32 = 0.7;
/// Share of a block's energy the tone must carry to continue.
pub(super) const HOLD_RATIO: f32 = 0.5;
/// Lowest mean block power that can show a tone, dBm0.
pub(super) const MIN_POWER_DBM0: f32 = -35.0;

/// The detected frequencies, Hz.
const FREQS: [u32; 2] = [CONTINUITY_HZ, CONTINUITY_RETURN_HZ];

/// Detector of the two continuity tones. See the [module documentation](self).
#[derive(Debug, Clone)]
pub(super) struct ContinuityDetector {
    /// Goertzel coefficient `2·cos(ω)` per frequency.
    coeff: [f32; 2],
    /// Goertzel state `(s1, s2)` per frequency.
    state: [(f32, f32); 2],
    /// Energy of the block so far.
    energy: f32,
    /// Samples in the block so far.
    fill: usize,
    /// Energy threshold of a whole block.
    min_energy: f32,
    /// Consecutive blocks showing each tone.
    run: [u8; 2],
    /// The tone being heard (index into `FREQS`).
    active: Option<usize>,
    /// Consecutive blocks the active tone was missing.
    miss: u8,
}

impl ContinuityDetector {
    pub(super) fn new() -> Self {
        let coeff = FREQS.map(|f| {
            let w = 2.0 * std::f32::consts::PI * f as f32 / 8000.0;
            2.0 * w.cos()
        });
        let min_power = DBM0_POWER * 10f32.powf(MIN_POWER_DBM0 / 10.0);
        ContinuityDetector {
            coeff,
            state: [(0.0, 0.0); 2],
            energy: 0.0,
            fill: 0,
            min_energy: min_power * BLOCK as f32,
            run: [0; 2],
            active: None,
            miss: 0,
        }
    }

    /// Feeds 8 kHz samples; `on_tone(frequency in Hz)` is called at each tone onset.
    pub(super) fn process(&mut self, x: &[i16], on_tone: &mut dyn FnMut(u32)) {
        for &v in x {
            let v = f32::from(v);
            self.energy += v * v;
            for (k, (s1, s2)) in self.state.iter_mut().enumerate() {
                let s = v + self.coeff[k] * *s1 - *s2;
                *s2 = *s1;
                *s1 = s;
            }
            self.fill += 1;
            if self.fill == BLOCK {
                self.end_block(on_tone);
            }
        }
    }

    /// Classifies the finished block and updates the tone state.
    fn end_block(&mut self, on_tone: &mut dyn FnMut(u32)) {
        let mut ratio = [0.0f32; 2];
        if self.energy >= self.min_energy {
            for (k, (s1, s2)) in self.state.iter().enumerate() {
                let p = s1 * s1 + s2 * s2 - self.coeff[k] * s1 * s2;
                ratio[k] = 2.0 * p.max(0.0) / (BLOCK as f32 * self.energy);
            }
        }
        self.state = [(0.0, 0.0); 2];
        self.energy = 0.0;
        self.fill = 0;

        for (k, r) in ratio.iter().enumerate() {
            self.run[k] = if *r >= ONSET_RATIO {
                self.run[k].saturating_add(1)
            } else {
                0
            };
        }
        if let Some(a) = self.active {
            if ratio[a] >= HOLD_RATIO {
                self.miss = 0;
            } else {
                self.miss = self.miss.saturating_add(1);
                if self.miss >= OFF_BLOCKS {
                    self.active = None;
                }
            }
        }
        for (k, &f) in FREQS.iter().enumerate() {
            if self.run[k] >= ON_BLOCKS && self.active != Some(k) {
                self.active = Some(k);
                self.miss = 0;
                on_tone(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::dbm0_to_peak;

    fn sine(hz: f64, dbm0: f32, n: usize) -> Vec<i16> {
        let a = f64::from(dbm0_to_peak(dbm0));
        (0..n)
            .map(|i| (a * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
            .collect()
    }

    /// Runs `x` in 20 ms frames; returns (frequency, sample index at the end of the frame
    /// in which it was reported).
    fn run(d: &mut ContinuityDetector, x: &[i16]) -> Vec<(u32, usize)> {
        let mut out = Vec::new();
        for (i, c) in x.chunks(160).enumerate() {
            d.process(c, &mut |f| out.push((f, i * 160 + c.len())));
        }
        out
    }

    #[test]
    fn ratio_is_one_for_a_pure_tone_and_reports_after_60_ms() {
        let mut d = ContinuityDetector::new();
        let hits = run(&mut d, &sine(2010.0, -10.0, 4000));
        assert_eq!(hits, vec![(2010, 480)]);
        assert_eq!(d.active, Some(0));
    }

    #[test]
    fn frequency_tolerance() {
        for (hz, want) in [
            (1780.0, true),
            (1800.0, true),
            (1760.0, true),
            (1850.0, false),
            (1700.0, false),
            (2010.0, true),
            (2035.0, true),
            (2100.0, false),
            (1900.0, false),
        ] {
            let mut d = ContinuityDetector::new();
            let hits = run(&mut d, &sine(hz, -10.0, 4000));
            assert_eq!(!hits.is_empty(), want, "{hz} Hz: {hits:?}");
        }
    }

    #[test]
    fn level_threshold() {
        for (dbm0, want) in [(0.0, true), (-30.0, true), (-40.0, false)] {
            let mut d = ContinuityDetector::new();
            let hits = run(&mut d, &sine(1780.0, dbm0, 4000));
            assert_eq!(!hits.is_empty(), want, "{dbm0} dBm0");
        }
    }

    #[test]
    fn arbitrary_chunking_matches_frames() {
        let x = sine(2010.0, -10.0, 4000);
        let mut d = ContinuityDetector::new();
        let mut n = 0;
        for c in x.chunks(37) {
            d.process(c, &mut |_| n += 1);
        }
        assert_eq!(n, 1);
    }
}
