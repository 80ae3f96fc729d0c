//! Packet-loss concealment for linear PCM (G.711 after decoding, L16), after the algorithm
//! described in ITU-T G.711 Appendix I.
//!
//! Every frame of the stream goes through one [`Plc`]: received frames through
//! [`Plc::good_frame`], lost ones through [`Plc::conceal`]. The output is the input delayed by
//! [`Plc::delay`] samples (3.75 ms); that look-ahead lets the start of a loss be blended in
//! before it is heard.
//!
//! ## Algorithm
//! - A history of the last 48.75 ms (3 × the longest pitch period + ¼ of it) is kept.
//! - At the first lost frame the pitch period `P` (5–15 ms, i.e. 66–200 Hz) is found by
//!   normalised cross-correlation over the last 20 ms of history (coarse search at 4 kHz
//!   resolution, then refined). The last `P/4` not-yet-output samples are cross-faded into
//!   the signal one period earlier, so the jump to the repeated period is smooth.
//! - The concealment repeats the last period; after 10 ms it cycles over the last two periods
//!   and after 20 ms over three, to avoid a buzzy tone. Each wrap of the cycle is cross-faded
//!   over `P/4` samples.
//! - The gain is 1 for the first 10 ms, then falls linearly by 20 % per 10 ms to silence at
//!   60 ms.
//! - The first good frame after a loss is cross-faded from the continued concealment into the
//!   real signal over `P/4` plus 4 ms per extra 10 ms of loss (at most 10 ms).
//!
//! Nothing here allocates after [`Plc::new`].

/// Sample rates accepted by [`Plc::new`] are clamped to this range (Hz).
pub const RATE_RANGE: (u32, u32) = (8000, 48000);

/// Packet-loss concealer for one mono linear-PCM stream.
#[derive(Debug, Clone)]
pub struct Plc {
    rate: u32,
    /// Ring of the last `hist.len()` stream samples (the last `delay` not yet output).
    hist: Box<[i16]>,
    pos: usize,
    delay: usize,
    pitch_min: usize,
    pitch_max: usize,
    /// Linear copy of the history taken when a loss starts (pitch search and pitch buffer).
    lin: Box<[i16]>,
    /// Concealment in progress.
    erasing: bool,
    /// Samples synthesised since the loss started.
    erased: usize,
    period: usize,
    ola: usize,
    /// Number of periods in the cycle (1..=3).
    periods: usize,
    /// Read position in `lin`.
    ptr: usize,
}

impl Plc {
    /// Creates a concealer for `rate` Hz (8000 for G.711, 16000 for wideband L16; clamped to
    /// [`RATE_RANGE`]).
    pub fn new(rate: u32) -> Self {
        let rate = rate.clamp(RATE_RANGE.0, RATE_RANGE.1);
        let pitch_min = ms_to_samples(rate, 5.0);
        let pitch_max = ms_to_samples(rate, 15.0);
        let delay = pitch_max / 4;
        let len = 3 * pitch_max + pitch_max / 4;
        Plc {
            rate,
            hist: vec![0; len].into_boxed_slice(),
            pos: 0,
            delay,
            pitch_min,
            pitch_max,
            lin: vec![0; len].into_boxed_slice(),
            erasing: false,
            erased: 0,
            period: pitch_min,
            ola: pitch_min / 4,
            periods: 1,
            ptr: 0,
        }
    }

    /// Sample rate in Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Delay, in samples, of the output relative to the input.
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// Whether the previous frame was concealed.
    pub fn is_concealing(&self) -> bool {
        self.erasing
    }

    /// Forgets the history (new call or stream).
    pub fn reset(&mut self) {
        self.hist.iter_mut().for_each(|s| *s = 0);
        self.pos = 0;
        self.erasing = false;
        self.erased = 0;
    }

    /// Records a received frame and replaces it in place with the output (delayed by
    /// [`Plc::delay`] samples; blended with the concealment if the previous frame was lost).
    pub fn good_frame(&mut self, pcm: &mut [i16]) {
        let mut merge = 0;
        if self.erasing {
            // 1/4 period plus 4 ms per 10 ms of loss beyond the first, at most 10 ms.
            let extra_10ms = self.erased.saturating_sub(1) / ms_to_samples(self.rate, 10.0);
            merge = (self.ola + extra_10ms * ms_to_samples(self.rate, 4.0))
                .min(ms_to_samples(self.rate, 10.0))
                .min(pcm.len());
            self.erasing = false;
        }
        for (i, sample) in pcm.iter_mut().enumerate() {
            let mut x = *sample;
            if i < merge {
                let w = (i + 1) as f32 / (merge + 1) as f32;
                let s = f32::from(self.synth());
                x = sat((1.0 - w) * s + w * f32::from(x));
            }
            *sample = self.emit(x);
        }
        self.erased = 0;
    }

    /// Produces a concealment frame into `out` (the output stream, delayed like
    /// [`Plc::good_frame`]'s).
    pub fn conceal(&mut self, out: &mut [i16]) {
        if !self.erasing {
            self.start_erasure();
        }
        for sample in out.iter_mut() {
            let s = self.synth();
            *sample = self.emit(s);
        }
    }

    /// Appends `x` to the stream and returns the sample `delay` positions earlier.
    fn emit(&mut self, x: i16) -> i16 {
        let n = self.hist.len();
        self.hist[self.pos] = x;
        self.pos = (self.pos + 1) % n;
        self.hist[(self.pos + n - 1 - self.delay) % n]
    }

    fn start_erasure(&mut self) {
        let n = self.hist.len();
        for i in 0..n {
            self.lin[i] = self.hist[(self.pos + i) % n];
        }
        self.period = find_pitch(
            &self.lin,
            self.pitch_min,
            self.pitch_max,
            ms_to_samples(self.rate, 20.0),
        );
        self.ola = (self.period / 4).max(1);
        self.periods = 1;
        self.erasing = true;
        self.erased = 0;
        // Rewrite the last `ola` samples (not output yet) as the start of the concealment:
        // read from the cross-fade zone at the end of the one-period cycle.
        self.ptr = n - self.ola;
        self.pos = (self.pos + n - self.ola) % n;
        for _ in 0..self.ola {
            let s = self.next_cycle_sample();
            self.hist[self.pos] = s;
            self.pos = (self.pos + 1) % n;
        }
    }

    /// Next sample of the periodic continuation, without gain.
    fn next_cycle_sample(&mut self) -> i16 {
        let n = self.lin.len();
        let zone = n - self.ola;
        if self.ptr == zone {
            // Widen the cycle at 10 ms and 20 ms of loss, before its closing cross-fade so the
            // fade already leads into the wider cycle's start.
            let want = 1 + self.erased / ms_to_samples(self.rate, 10.0);
            self.periods = want.clamp(self.periods, 3);
        }
        let cycle = self.periods * self.period;
        let v = if self.ptr >= zone {
            // Cross-fade the end of the cycle into the samples preceding its start.
            let w = (self.ptr - zone + 1) as f32 / (self.ola + 1) as f32;
            let a = f32::from(self.lin[self.ptr]);
            let b = f32::from(self.lin[self.ptr - cycle]);
            sat((1.0 - w) * a + w * b)
        } else {
            self.lin[self.ptr]
        };
        self.ptr += 1;
        if self.ptr == n {
            self.ptr = n - cycle;
        }
        v
    }

    /// Next concealment sample, attenuated.
    fn synth(&mut self) -> i16 {
        let ten_ms = ms_to_samples(self.rate, 10.0);
        let v = self.next_cycle_sample();
        let gain = if self.erased < ten_ms {
            1.0
        } else {
            (1.0 - (self.erased - ten_ms) as f32 / (5 * ten_ms) as f32).max(0.0)
        };
        self.erased += 1;
        sat(f32::from(v) * gain)
    }
}

fn ms_to_samples(rate: u32, ms: f32) -> usize {
    (rate as f32 * ms / 1000.0).round() as usize
}

fn sat(v: f32) -> i16 {
    v.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// Pitch period in `[min, max]` maximising the normalised cross-correlation between the last
/// `window` samples of `x` and the samples one period earlier.
fn find_pitch(x: &[i16], min: usize, max: usize, window: usize) -> usize {
    let n = x.len();
    let window = window.min(n.saturating_sub(max));
    if window == 0 || min >= max {
        return min;
    }
    let end = &x[n - window..];
    let score = |lag: usize, step: usize| -> f64 {
        let past = &x[n - window - lag..n - lag];
        let (mut c, mut e) = (0.0f64, 0.0f64);
        for i in (0..window).step_by(step) {
            let p = f64::from(past[i]);
            c += f64::from(end[i]) * p;
            e += p * p;
        }
        if e <= 0.0 {
            0.0
        } else {
            c / e.sqrt()
        }
    };
    // Coarse pass on every `coarse`-th lag and sample (4 kHz resolution), then refined.
    let coarse = (min / 20).max(2);
    let mut best = min;
    let mut best_score = f64::MIN;
    for lag in (min..=max).step_by(coarse) {
        let s = score(lag, coarse);
        if s > best_score {
            best_score = s;
            best = lag;
        }
    }
    let (lo, hi) = (
        best.saturating_sub(coarse - 1).max(min),
        (best + coarse - 1).min(max),
    );
    best_score = f64::MIN;
    let centre = best;
    for lag in lo..=hi {
        let s = score(lag, 1);
        // Prefer the coarse winner on ties (exactly periodic input).
        if s > best_score || (s == best_score && lag == centre) {
            best_score = s;
            best = lag;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Voiced-like test signal: harmonics 1..=5 of `f0` with amplitude 6000/k.
    fn voiced(f0: f64, rate: u32, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| {
                let t = n as f64 / f64::from(rate);
                let v: f64 = (1..=5)
                    .map(|k| {
                        6000.0 / k as f64
                            * (2.0 * std::f64::consts::PI * f0 * k as f64 * t + k as f64).sin()
                    })
                    .sum();
                v.round() as i16
            })
            .collect()
    }

    /// Runs `x` through a concealer in frames of `frame`, losing the frames in `lost`.
    fn run(x: &[i16], rate: u32, frame: usize, lost: &[usize]) -> Vec<i16> {
        let mut plc = Plc::new(rate);
        let mut y = Vec::with_capacity(x.len());
        for (i, chunk) in x.chunks(frame).enumerate() {
            let mut buf = chunk.to_vec();
            if lost.contains(&i) {
                plc.conceal(&mut buf);
            } else {
                plc.good_frame(&mut buf);
            }
            y.extend_from_slice(&buf);
        }
        y
    }

    fn snr_db(truth: &[i16], test: &[i16]) -> f64 {
        let (mut s, mut e) = (0.0, 0.0);
        for (&a, &b) in truth.iter().zip(test) {
            s += f64::from(a).powi(2);
            e += (f64::from(a) - f64::from(b)).powi(2);
        }
        10.0 * (s / e.max(1e-9)).log10()
    }

    fn max_step(x: &[i16]) -> i32 {
        x.windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn good_frames_pass_through_delayed() {
        let x = voiced(140.0, 8000, 1600);
        let plc = Plc::new(8000);
        let d = plc.delay();
        assert_eq!(d, 30);
        let y = run(&x, 8000, 160, &[]);
        assert!(y[..d].iter().all(|&s| s == 0));
        assert_eq!(&y[d..], &x[..x.len() - d]);
        // Frame size does not matter.
        assert_eq!(run(&x, 8000, 1, &[]), y);
        assert_eq!(run(&x, 8000, 1000, &[]), y);
        assert_eq!(Plc::new(16000).delay(), 60);
    }

    #[test]
    fn pitch_search_finds_the_period() {
        for (f0, period) in [
            (200.0, 40.0),
            (150.0, 53.333),
            (125.0, 64.0),
            (80.0, 100.0),
            (70.0, 114.29),
        ] {
            let x = voiced(f0, 8000, 390);
            let p = find_pitch(&x, 40, 120, 160) as f64;
            let ok = (1..=3).any(|k| (p - k as f64 * period).abs() <= 1.0);
            assert!(ok, "f0 {f0}: found {p}, period {period}");
        }
        let x = voiced(150.0, 16000, 780);
        let p = find_pitch(&x, 80, 240, 320) as f64;
        assert!(
            (p - 106.67).abs() <= 1.0 || (p - 213.33).abs() <= 1.0,
            "{p}"
        );
    }

    fn one_lost_frame(f0: f64, rate: u32) {
        let frame = rate as usize / 50;
        let x = voiced(f0, rate, frame * 20);
        let lost = 10;
        let y = run(&x, rate, frame, &[lost]);
        let d = Plc::new(rate).delay();
        let span = lost * frame..(lost + 1) * frame;
        let truth = &x[span.start - d..span.end - d];
        let concealed = &y[span.clone()];
        let snr = snr_db(truth, concealed);
        let zeroed = snr_db(truth, &vec![0; frame]);
        assert!(
            snr > 15.0 && snr > zeroed + 15.0,
            "f0 {f0} @ {rate}: SNR {snr:.1} dB vs zeroing {zeroed:.1} dB"
        );
        // The concealed frame repeats at the true pitch period.
        let period = (f64::from(rate) / f0).round() as usize;
        let best = (period / 2..=period * 3 / 2)
            .max_by_key(|&lag| {
                let c: i64 = (lag..frame)
                    .map(|n| i64::from(concealed[n]) * i64::from(concealed[n - lag]))
                    .sum();
                c / (frame - lag) as i64
            })
            .unwrap();
        assert!(
            best.abs_diff(period) <= 1,
            "pitch of concealment {best}, expected {period}"
        );
    }

    #[test]
    fn one_lost_frame_matches_pitch_8k() {
        one_lost_frame(200.0, 8000);
        one_lost_frame(120.0, 8000);
    }

    #[test]
    fn one_lost_frame_matches_pitch_16k() {
        one_lost_frame(200.0, 16000);
        one_lost_frame(110.0, 16000);
    }

    #[test]
    fn long_loss_decays_to_silence() {
        let frame = 160;
        let x = voiced(150.0, 8000, frame * 20);
        let lost: Vec<usize> = (5..10).collect();
        let y = run(&x, 8000, frame, &lost);
        let d = 30;
        let start = 5 * frame;
        // Full level for the first 10 ms, then decaying, silent from 60 ms.
        let energy =
            |r: std::ops::Range<usize>| y[r].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        let blocks: Vec<f64> = (0..6)
            .map(|b| energy(start + d + 80 * b..start + d + 80 * (b + 1)))
            .collect();
        for w in blocks.windows(2).skip(1) {
            assert!(w[1] < w[0], "not decaying: {blocks:?}");
        }
        assert!(blocks[0] > 0.0);
        assert!(y[start + d + 480..10 * frame].iter().all(|&s| s == 0));
        // Concealment into silence and back: no spike when speech resumes.
        assert!(
            max_step(&y[d..]) <= max_step(&x) * 11 / 10,
            "{} > {}",
            max_step(&y[d..]),
            max_step(&x)
        );
        // After the loss the real signal is back (delayed).
        let tail = 12 * frame..20 * frame;
        assert_eq!(&y[tail.clone()], &x[tail.start - d..tail.end - d]);
    }

    #[test]
    fn merge_has_no_discontinuity() {
        for rate in [8000u32, 16000] {
            let frame = rate as usize / 50;
            for f0 in [95.0, 180.0, 233.0] {
                let x = voiced(f0, rate, frame * 60);
                let bound = max_step(&x);
                for lost in [
                    vec![10],
                    vec![10, 11],
                    vec![10, 11, 12],
                    vec![10, 11, 12, 13, 14, 15],
                    vec![10, 12, 14],
                ] {
                    let y = run(&x, rate, frame, &lost);
                    // (The output starts with `delay` zeros before the signal.)
                    let step = max_step(&y[Plc::new(rate).delay()..]);
                    assert!(
                        f64::from(step) <= 1.1 * f64::from(bound),
                        "rate {rate} f0 {f0} lost {lost:?}: step {step} vs signal {bound}"
                    );
                }
            }
        }
    }

    #[test]
    fn merge_without_overlap_add_would_click() {
        // Sanity check of the test above: splicing the real signal straight after the
        // concealment (no overlap-add) gives a step well above the signal's own.
        let frame = 160;
        let x = voiced(95.0, 8000, frame * 30);
        let y = run(&x, 8000, frame, &[10, 11, 12]);
        let d = 30;
        let mut spliced = y[..13 * frame + d].to_vec();
        spliced.extend_from_slice(&x[13 * frame..]);
        assert!(
            max_step(&spliced[d..]) > max_step(&x) * 3 / 2,
            "{} vs {}",
            max_step(&spliced[d..]),
            max_step(&x)
        );
        assert!(max_step(&y[d..]) <= max_step(&x) * 11 / 10);
    }

    #[test]
    fn concealment_without_history_and_odd_sizes() {
        let mut plc = Plc::new(8000);
        let mut out = [123i16; 160];
        plc.conceal(&mut out);
        assert!(out.iter().all(|&s| s == 0));
        assert!(plc.is_concealing());
        let mut one = [1000i16; 1];
        plc.good_frame(&mut one);
        assert!(!plc.is_concealing());
        let mut big = vec![500i16; 5000];
        plc.conceal(&mut big);
        plc.good_frame(&mut big);
        plc.conceal(&mut []);
        plc.good_frame(&mut []);
        let mut full = [i16::MAX; 400];
        plc.good_frame(&mut full);
        plc.conceal(&mut full);
        assert!(full.iter().all(|&s| s >= 0));
        plc.reset();
        assert!(!plc.is_concealing());
        assert_eq!(Plc::new(1).rate(), 8000);
    }
}
