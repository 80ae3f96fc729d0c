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
//!   normalised cross-correlation over the last 20 ms of history (coarse search on every second
//!   lag and sample, then refined). The last `P/4` not-yet-output samples are cross-faded into
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
        self.period = find_pitch(&self.lin, self.pitch_min, self.pitch_max, ms_to_samples(self.rate, 20.0));
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
    let coarse = 2;
    let mut best = min;
    let mut best_score = f64::MIN;
    for lag in (min..=max).step_by(coarse) {
        let s = score(lag, coarse);
        if s > best_score {
            best_score = s;
            best = lag;
        }
    }
    let (lo, hi) = (best.saturating_sub(coarse - 1).max(min), (best + coarse - 1).min(max));
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
