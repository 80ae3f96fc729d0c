//! 2:1 and 1:2 sample-rate conversion between 16 kHz and 8 kHz (TDM) with one half-band FIR.
//!
//! The filter is a 63-tap linear-phase low-pass with cutoff at a quarter of the 16 kHz rate
//! (4 kHz): a Kaiser-windowed sinc (β = 7, about 70 dB stop-band) whose taps at even
//! distances from the centre are exactly zero, so only the centre tap (½) and 32 odd taps
//! (16 distinct values, by symmetry) are multiplied. Transition band ≈ 3.45–4.55 kHz: the
//! pass band keeps the telephone band (300–3400 Hz) within ±0.1 dB, and content above
//! ≈ 4.6 kHz is attenuated by more than 60 dB before it can alias (decimation) or survive as
//! an image (interpolation). As with any half-band design, 4 kHz itself is at −6 dB.
//!
//! - [`Downsampler2`] (16 → 8 kHz): filter, keep every second sample; output sample `m`
//!   is aligned with input sample `2m - 30`: a delay of 15 output samples (1.875 ms).
//! - [`Upsampler2`] (8 → 16 kHz): polyphase — even outputs copy the input, odd outputs are
//!   the 32-tap half-band interpolation; output sample `k` is aligned with input time
//!   `k/2 - 16`: a delay of 32 output samples (2 ms).
//!
//! A round trip 8 → 16 → 8 kHz is therefore a delay of 31 samples at 8 kHz.
//!
//! Both keep their history in a fixed array (no allocation), work on any block length
//! (the decimator carries an odd leftover sample to the next call) and round and saturate to
//! `i16`. Sans-IO: no clock, no threads.

use super::CodecError;

/// Distinct non-zero off-centre taps (the filter has `4 * HALF - 1` = 63 taps).
const HALF: usize = 16;
/// Filter length.
const TAPS: usize = 4 * HALF - 1;
/// Kaiser window β.
const BETA: f64 = 7.0;

/// Zeroth-order modified Bessel function of the first kind (power series).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term) = (1.0, 1.0);
    let q = x * x / 4.0;
    for k in 1..50 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// The 16 odd taps `g[j] = h[centre ± (2j + 1)]`, normalised so that the DC gain is 1
/// (centre ½ + 2·Σg = 1).
fn half_band_taps() -> [f32; HALF] {
    let centre = (TAPS - 1) as f64 / 2.0;
    let mut g = [0f64; HALF];
    for (j, gj) in g.iter_mut().enumerate() {
        let d = (2 * j + 1) as f64;
        let sinc = (std::f64::consts::PI * d / 2.0).sin() / (std::f64::consts::PI * d);
        let r = d / centre;
        let w = bessel_i0(BETA * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(BETA);
        *gj = sinc * w;
    }
    let sum: f64 = g.iter().sum();
    let mut out = [0f32; HALF];
    for (o, gj) in out.iter_mut().zip(g) {
        *o = (gj * 0.25 / sum) as f32;
    }
    out
}

fn to_i16(x: f32) -> i16 {
    // `as` saturates float → int casts, and NaN cannot arise from finite inputs.
    x.round() as i16
}

/// A delay line of `N` samples kept twice over so the newest `N` are always contiguous.
#[derive(Debug, Clone)]
struct DelayLine<const N: usize, const N2: usize> {
    buf: [f32; N2],
    pos: usize,
}

impl<const N: usize, const N2: usize> DelayLine<N, N2> {
    fn new() -> Self {
        Self {
            buf: [0.0; N2],
            pos: 0,
        }
    }

    fn push(&mut self, x: f32) {
        self.buf[self.pos] = x;
        self.buf[self.pos + N] = x;
        self.pos = if self.pos + 1 == N { 0 } else { self.pos + 1 };
    }

    /// The newest `N` samples, oldest first.
    fn window(&self) -> &[f32] {
        &self.buf[self.pos..self.pos + N]
    }
}

/// 16 kHz → 8 kHz decimator.
#[derive(Debug, Clone)]
pub struct Downsampler2 {
    g: [f32; HALF],
    line: DelayLine<TAPS, { 2 * TAPS }>,
    /// Whether one input sample of the current pair has been pushed already.
    odd: bool,
}

impl Downsampler2 {
    /// A new decimator with zeroed history.
    pub fn new() -> Self {
        Self {
            g: half_band_taps(),
            line: DelayLine::new(),
            odd: false,
        }
    }

    /// Group delay in output (8 kHz) samples.
    pub const DELAY: usize = (TAPS - 3) / 4;

    /// Filters `input` (16 kHz) into `out` (8 kHz); returns the samples written. `out` must
    /// hold `(input.len() + c) / 2` samples, where `c` is 1 if the previous call left an odd
    /// sample over and 0 otherwise (so `input.len() / 2` for even-length blocks).
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> Result<usize, CodecError> {
        let needed = (input.len() + usize::from(self.odd)) / 2;
        if out.len() < needed {
            return Err(CodecError::OutputTooSmall { needed });
        }
        let mut n = 0;
        for &x in input {
            self.line.push(f32::from(x));
            self.odd = !self.odd;
            if self.odd {
                continue;
            }
            let w = self.line.window();
            let c = (TAPS - 1) / 2;
            let mut acc = 0.5 * w[c];
            for (j, &g) in self.g.iter().enumerate() {
                acc += g * (w[c - 2 * j - 1] + w[c + 2 * j + 1]);
            }
            out[n] = to_i16(acc);
            n += 1;
        }
        Ok(n)
    }

    /// Clears the history.
    pub fn reset(&mut self) {
        self.line = DelayLine::new();
        self.odd = false;
    }
}

impl Default for Downsampler2 {
    fn default() -> Self {
        Self::new()
    }
}

/// 8 kHz → 16 kHz interpolator.
#[derive(Debug, Clone)]
pub struct Upsampler2 {
    g2: [f32; HALF],
    line: DelayLine<{ 2 * HALF }, { 4 * HALF }>,
}

impl Upsampler2 {
    /// A new interpolator with zeroed history.
    pub fn new() -> Self {
        let mut g2 = half_band_taps();
        // Zero-stuffing halves the level; each polyphase branch gets gain 2.
        g2.iter_mut().for_each(|g| *g *= 2.0);
        Self {
            g2,
            line: DelayLine::new(),
        }
    }

    /// Group delay in output (16 kHz) samples.
    pub const DELAY: usize = 2 * HALF;

    /// Interpolates `input` (8 kHz) into `out` (16 kHz); returns the samples written
    /// (`2 * input.len()`, which `out` must hold).
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> Result<usize, CodecError> {
        let needed = input.len().checked_mul(2).ok_or(CodecError::FrameSize {
            samples: input.len(),
        })?;
        let dst = out
            .get_mut(..needed)
            .ok_or(CodecError::OutputTooSmall { needed })?;
        for (&x, pair) in input.iter().zip(dst.chunks_exact_mut(2)) {
            self.line.push(f32::from(x));
            let w = self.line.window();
            // The newest 2·HALF inputs; the output pair sits between w[HALF-1] and w[HALF].
            let mut acc = 0.0;
            for (j, &g) in self.g2.iter().enumerate() {
                acc += g * (w[HALF - 1 - j] + w[HALF + j]);
            }
            pair[0] = to_i16(w[HALF - 1]);
            pair[1] = to_i16(acc);
        }
        Ok(needed)
    }

    /// Clears the history.
    pub fn reset(&mut self) {
        self.line = DelayLine::new();
    }
}

impl Default for Upsampler2 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// RMS of `x` after skipping the filter's start-up.
    fn rms(x: &[i16]) -> f64 {
        let x = &x[200..];
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    fn down(freq: f64) -> (Vec<i16>, Vec<i16>) {
        let input = sine(16000, freq, 16000.0, 3200);
        let mut out = vec![0i16; 1600];
        let mut d = Downsampler2::new();
        // Odd block sizes exercise the carried sample.
        let mut n = 0;
        for chunk in input.chunks(321) {
            n += d.process(chunk, &mut out[n..]).unwrap();
        }
        assert_eq!(n, 1600);
        (input, out)
    }

    fn up(freq: f64) -> (Vec<i16>, Vec<i16>) {
        let input = sine(8000, freq, 16000.0, 1600);
        let mut out = vec![0i16; 3200];
        let mut u = Upsampler2::new();
        let mut n = 0;
        for chunk in input.chunks(160) {
            n += u.process(chunk, &mut out[n..]).unwrap();
        }
        assert_eq!(n, 3200);
        (input, out)
    }

    #[test]
    fn taps_are_a_half_band_with_unit_dc_gain() {
        let g = half_band_taps();
        let dc = 0.5 + 2.0 * g.iter().map(|&x| f64::from(x)).sum::<f64>();
        assert!((dc - 1.0).abs() < 1e-6, "{dc}");
        assert!(g[0] > 0.3 && g[1] < 0.0, "sinc shape: {g:?}");
    }

    #[test]
    fn passband_gain() {
        let in_rms = 16000.0 / 2f64.sqrt();
        for f in [300.0, 1000.0, 2000.0, 3000.0, 3400.0] {
            let g_down = db(rms(&down(f).1) / in_rms);
            let g_up = db(rms(&up(f).1) / in_rms);
            println!("{f} Hz: down {g_down:.3} dB, up {g_up:.3} dB");
            assert!(g_down.abs() < 0.1, "down {f}: {g_down}");
            assert!(g_up.abs() < 0.1, "up {f}: {g_up}");
        }
    }

    #[test]
    fn aliasing_and_images_are_suppressed() {
        let in_rms = 16000.0 / 2f64.sqrt();
        // 5 and 6 kHz at 16 kHz would alias to 3 and 2 kHz at 8 kHz.
        for f in [4700.0, 5000.0, 6000.0, 7500.0] {
            let a = db(rms(&down(f).1) / in_rms);
            println!("alias of {f} Hz: {a:.1} dB");
            assert!(a < -60.0, "{f}: {a}");
        }
        // A tone at 8 kHz must not leave its image (8 kHz - f) at 16 kHz: compare the
        // interpolator's output with the same tone generated at 16 kHz.
        for f in [1000.0, 2900.0, 3300.0] {
            let (_, out) = up(f);
            let delay = Upsampler2::DELAY;
            let clean = sine(16000, f, 16000.0, 3200);
            let snr = snr_at(&clean[..3200 - delay], &out, delay, 200);
            println!("upsampled {f} Hz: {snr:.1} dB against a clean 16 kHz sine");
            assert!(snr > 60.0, "{f}: {snr}");
        }
    }

    #[test]
    fn delays_line_up() {
        let (input, out) = down(1000.0);
        // Output sample m is aligned with input sample 2m - 2·DELAY: compare against the
        // sine sampled at 8 kHz and delayed by DELAY.
        let offset = Downsampler2::DELAY as f64;
        let expect: Vec<i16> = (0..1600)
            .map(|m| {
                let t = (m as f64 - offset) / 8000.0;
                (16000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()).round() as i16
            })
            .collect();
        let snr = snr_at(&expect, &out, 0, 100);
        assert!(snr > 60.0, "{snr}");
        assert_eq!(input.len(), 2 * out.len());
        // Round trip down(up(x)) is a pure delay of DELAY 8 kHz samples for in-band audio.
        let x = sine(8000, 700.0, 12000.0, 1600);
        let mut u = Upsampler2::new();
        let mut d = Downsampler2::new();
        let mut wide = vec![0i16; 3200];
        let mut back = vec![0i16; 1600];
        u.process(&x, &mut wide).unwrap();
        assert_eq!(d.process(&wide, &mut back), Ok(1600));
        let lag = Upsampler2::DELAY / 2 + Downsampler2::DELAY;
        assert_eq!(lag, 31);
        let snr = snr_at(&x[..1500], &back, lag, 100);
        assert!(snr > 55.0, "{snr}");
    }

    #[test]
    fn saturates_and_checks_sizes() {
        let mut u = Upsampler2::new();
        let loud = [i16::MAX, i16::MIN].repeat(100);
        let mut out = vec![0i16; 400];
        assert_eq!(u.process(&loud, &mut out), Ok(400));
        assert_eq!(
            u.process(&loud, &mut out[..10]),
            Err(CodecError::OutputTooSmall { needed: 400 })
        );
        let mut d = Downsampler2::new();
        assert_eq!(
            d.process(&[1; 5], &mut [0; 1]),
            Err(CodecError::OutputTooSmall { needed: 2 })
        );
        assert_eq!(d.process(&[1; 5], &mut [0; 2]), Ok(2), "one sample carried");
        assert_eq!(
            d.process(&[1; 3], &mut [0; 1]),
            Err(CodecError::OutputTooSmall { needed: 2 })
        );
        assert_eq!(
            d.process(&[1], &mut [0; 1]),
            Ok(1),
            "carried sample completes a pair"
        );
        assert_eq!(d.process(&[1; 3], &mut [0; 1]), Ok(1));
        d.reset();
        u.reset();
        assert_eq!(d.process(&[0; 4], &mut [9; 2]), Ok(2));
    }
}
