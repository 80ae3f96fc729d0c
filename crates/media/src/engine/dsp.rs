//! Small sample-level helpers of the engine: a fixed PCM FIFO, a comfort-noise source and a
//! continuous dual-tone oscillator. All storage is allocated at construction.

use crate::dtmf::DtmfDigit;
use crate::tone::{dbm0_to_peak, DtmfToneParams};

/// Saturating add of `src` into `dst` (element by element, up to the shorter length).
pub(super) fn mix_into(dst: &mut [i16], src: &[i16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = d.saturating_add(s);
    }
}

/// A ring buffer of PCM samples with a fixed capacity.
#[derive(Debug, Clone)]
pub(super) struct PcmFifo {
    buf: Box<[i16]>,
    head: usize,
    len: usize,
}

impl PcmFifo {
    pub(super) fn new(capacity: usize) -> Self {
        PcmFifo {
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Appends `src`; when full, the oldest samples are dropped. Returns how many were dropped.
    pub(super) fn push(&mut self, src: &[i16]) -> usize {
        let cap = self.buf.len();
        let src = if src.len() > cap {
            &src[src.len() - cap..]
        } else {
            src
        };
        let mut dropped = (src.len() + self.len).saturating_sub(cap);
        if dropped > 0 {
            dropped = dropped.min(self.len);
            self.head = (self.head + dropped) % cap;
            self.len -= dropped;
        }
        let mut tail = (self.head + self.len) % cap;
        for &s in src {
            self.buf[tail] = s;
            tail += 1;
            if tail == cap {
                tail = 0;
            }
        }
        self.len += src.len();
        dropped
    }

    /// Moves up to `dst.len()` samples out; returns how many.
    pub(super) fn pop(&mut self, dst: &mut [i16]) -> usize {
        let n = dst.len().min(self.len);
        let cap = self.buf.len();
        for d in &mut dst[..n] {
            *d = self.buf[self.head];
            self.head += 1;
            if self.head == cap {
                self.head = 0;
            }
        }
        self.len -= n;
        n
    }
}

/// White comfort noise at an RFC 3389 level.
///
/// The level byte is taken as −dBov, with 0 dBov the RMS of a full-scale 16-bit square wave
/// (32767); the noise is uniform with that RMS, from a xorshift generator.
#[derive(Debug, Clone)]
pub(super) struct Noise {
    state: u32,
    amp: f32,
}

impl Noise {
    pub(super) fn new(seed: u32) -> Self {
        Noise {
            state: seed | 1,
            amp: 0.0,
        }
    }

    /// Sets the level from an RFC 3389 noise-level byte (the top bit is ignored).
    pub(super) fn set_level(&mut self, level: u8) {
        let dbov = f32::from(level & 0x7F);
        let rms = 32767.0 * 10f32.powf(-dbov / 20.0);
        // A uniform variable on [-a, a] has RMS a/√3.
        self.amp = rms * 3f32.sqrt();
    }

    pub(super) fn fill(&mut self, out: &mut [i16]) {
        for o in out {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            self.state = x;
            // Uniform in [-1, 1).
            let u = (x as i32) as f32 / 2_147_483_648.0;
            *o = (u * self.amp).round().clamp(-32768.0, 32767.0) as i16;
        }
    }
}

/// A DTMF digit played until stopped (the rendering of a received RFC 4733 event): two
/// phasor oscillators, renormalised once per call so the amplitude cannot drift.
#[derive(Debug, Clone, Copy)]
pub(super) struct DualTone {
    osc: [(f32, f32, f32, f32, f32); 2],
}

impl DualTone {
    pub(super) fn new(digit: DtmfDigit, params: &DtmfToneParams, rate: u32) -> Self {
        let (lo, hi) = digit.frequencies();
        let one = |f: f32, dbm0: f32| {
            let w = 2.0 * std::f32::consts::PI * f / rate.max(1) as f32;
            (1.0, 0.0, w.cos(), w.sin(), dbm0_to_peak(dbm0))
        };
        DualTone {
            osc: [one(lo, params.low_dbm0), one(hi, params.high_dbm0)],
        }
    }

    /// Overwrites `out` with the next samples.
    pub(super) fn fill(&mut self, out: &mut [i16]) {
        for (re, im, ..) in &mut self.osc {
            let m = (*re * *re + *im * *im).sqrt();
            if m > 0.0 {
                *re /= m;
                *im /= m;
            }
        }
        for o in out {
            let mut v = 0.0;
            for (re, im, c, s, amp) in &mut self.osc {
                let (r, i) = (*re * *c - *im * *s, *re * *s + *im * *c);
                *re = r;
                *im = i;
                v += *amp * i;
            }
            *o = v.round().clamp(-32768.0, 32767.0) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_wraps_and_drops_oldest() {
        let mut f = PcmFifo::new(5);
        assert_eq!(f.push(&[1, 2, 3]), 0);
        let mut out = [0i16; 2];
        assert_eq!(f.pop(&mut out), 2);
        assert_eq!(out, [1, 2]);
        assert_eq!(f.push(&[4, 5, 6, 7]), 0);
        assert_eq!(f.len(), 5);
        assert_eq!(f.push(&[8, 9]), 2);
        let mut all = [0i16; 8];
        assert_eq!(f.pop(&mut all), 5);
        assert_eq!(&all[..5], &[5, 6, 7, 8, 9]);
        assert_eq!(f.push(&[1, 2, 3, 4, 5, 6, 7]), 0);
        assert_eq!(f.pop(&mut all), 5);
        assert_eq!(&all[..5], &[3, 4, 5, 6, 7]);
        f.push(&[1]);
        f.clear();
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn noise_level_matches_dbov() {
        let mut n = Noise::new(7);
        let mut buf = vec![0i16; 8000];
        for level in [20u8, 40, 60] {
            n.set_level(level);
            n.fill(&mut buf);
            let rms = (buf.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / 8000.0).sqrt();
            let dbov = 20.0 * (rms / 32767.0).log10();
            assert!((dbov + f64::from(level)).abs() < 0.5, "{level}: {dbov}");
        }
        n.set_level(127);
        n.fill(&mut buf);
        assert!(buf.iter().all(|&x| x == 0));
    }

    #[test]
    fn dual_tone_is_the_digit() {
        let mut t = DualTone::new(DtmfDigit::D5, &DtmfToneParams::default(), 8000);
        let mut buf = vec![0i16; 800];
        t.fill(&mut buf[..160]);
        t.fill(&mut buf[160..]);
        let mut det = crate::dtmf::DtmfDetector::new(crate::tone::SampleRate::Hz8000);
        det.process(&buf);
        det.process(&[0; 400]);
        assert!(matches!(
            det.poll_event(),
            Some(crate::dtmf::DtmfEvent::DigitStart {
                digit: DtmfDigit::D5,
                ..
            })
        ));
    }
}
