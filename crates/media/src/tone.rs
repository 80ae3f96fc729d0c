//! Tone generation: DTMF digits (ITU-T Q.23) and cadenced call-progress tones
//! (ITU-T E.180 / Q.35, ETSI/CEPT and North American tone plans).
//!
//! Everything is produced by one engine, [`ToneGenerator`], which plays a list of
//! *steps* (a set of up to four frequencies, or silence, for a number of samples) and
//! either stops after the last step (a timed signal, MGCP "TO") or loops back to a
//! chosen step forever (a continuous signal, MGCP "BR"/"OO" style until stopped).
//!
//! Oscillators are complex phasors rotated by a fixed unit vector once per sample (four
//! multiplies, no `sin()` per sample) and renormalised at the start of every
//! [`ToneGenerator::fill`] call, so amplitude does not drift however long a tone
//! plays. Phase is continuous within a tone and across steps that keep the same
//! frequencies (e.g. a dial tone looping its single step, or the steady part of a
//! stutter dial tone); a step that changes frequencies starts its sines at phase 0,
//! which avoids clicks.
//!
//! Durations are converted to samples once, at construction: at 8 kHz one millisecond
//! is exactly 8 samples, at 16 kHz exactly 16, so cadences are exact in samples.

use crate::dtmf::DtmfDigit;

/// Peak amplitude (16-bit linear) of a 0 dBm0 sine.
///
/// G.711 µ-law reaches +3.17 dBm0 at its full scale of 8159 (14-bit), i.e. 32 636 in
/// 16-bit samples; a 0 dBm0 sine therefore peaks at 32 636 · 10^(−3.17/20) ≈ 22 656.
pub const DBM0_PEAK: f32 = 22_656.0;

/// Mean power (in 16-bit sample units squared) of a 0 dBm0 sine: `DBM0_PEAK² / 2`.
pub const DBM0_POWER: f32 = DBM0_PEAK * DBM0_PEAK / 2.0;

/// Converts a level in dBm0 to the peak amplitude of a sine at that level.
pub fn dbm0_to_peak(dbm0: f32) -> f32 {
    DBM0_PEAK * 10f32.powf(dbm0 / 20.0)
}

/// Converts a mean signal power (16-bit sample units squared) to dBm0.
/// Returns `f32::NEG_INFINITY` for zero power.
pub fn power_to_dbm0(power: f32) -> f32 {
    10.0 * (power / DBM0_POWER).log10()
}

/// The two PCM sample rates the TDM side and wideband codecs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleRate {
    /// 8 kHz narrowband (G.711, the TDM format).
    Hz8000,
    /// 16 kHz wideband (G.722, L16/16000).
    Hz16000,
}

impl SampleRate {
    /// Samples per second.
    pub const fn hz(self) -> u32 {
        match self {
            SampleRate::Hz8000 => 8000,
            SampleRate::Hz16000 => 16000,
        }
    }

    /// Samples per millisecond (exact for both rates).
    pub const fn samples_per_ms(self) -> u32 {
        self.hz() / 1000
    }

    /// Number of samples in `ms` milliseconds.
    pub const fn ms_to_samples(self, ms: u32) -> u64 {
        ms as u64 * self.samples_per_ms() as u64
    }
}

/// One step of a cadence: the listed frequencies (all at the cadence's level) for
/// `ms` milliseconds, or silence when `freqs` is empty.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    /// Frequencies in Hz, at most four; empty means silence.
    pub freqs: &'static [f32],
    /// Duration of this step in milliseconds.
    pub ms: u32,
}

impl Segment {
    /// A tone step.
    pub const fn on(freqs: &'static [f32], ms: u32) -> Self {
        Segment { freqs, ms }
    }

    /// A silent step.
    pub const fn off(ms: u32) -> Self {
        Segment { freqs: &[], ms }
    }
}

/// A cadenced multi-frequency tone, as tabulated in a tone plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cadence {
    /// Name as used by the standard the entry comes from.
    pub name: &'static str,
    /// Level of each frequency component, in dBm0.
    pub level_dbm0: f32,
    /// The steps, in order.
    pub segments: &'static [Segment],
    /// After the last step, continue at this step index forever (a continuous signal);
    /// `None` makes the tone timed: it is done after the last step.
    pub repeat_from: Option<usize>,
}

impl Cadence {
    /// Total duration of one pass through all segments, in milliseconds.
    pub fn pass_ms(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.ms)).sum()
    }
}

/// The call-progress tones a [`ToneSet`] can hold (MGCP line package names in
/// brackets, RFC 3660).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallProgressTone {
    /// Dial tone (`L/dl`).
    Dial,
    /// Ringback / ringing tone (`L/rt`, `G/rt`).
    Ringback,
    /// Busy tone (`L/bz`).
    Busy,
    /// Congestion tone, "reorder" in North America (`L/ro`, `G/cg`).
    Congestion,
    /// Call-waiting tone (`L/wt`).
    CallWaiting,
    /// Stutter dial tone / special dial tone (`L/sl`; message waiting).
    StutterDial,
    /// Confirmation tone (`L/cf`).
    Confirmation,
}

impl CallProgressTone {
    /// All tones, in declaration order.
    pub const ALL: [CallProgressTone; 7] = [
        CallProgressTone::Dial,
        CallProgressTone::Ringback,
        CallProgressTone::Busy,
        CallProgressTone::Congestion,
        CallProgressTone::CallWaiting,
        CallProgressTone::StutterDial,
        CallProgressTone::Confirmation,
    ];
}

/// A national or regional tone plan: a table of cadences by tone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToneSet {
    /// Name of the plan.
    pub name: &'static str,
    /// The tones this plan defines.
    pub entries: &'static [(CallProgressTone, Cadence)],
}

impl ToneSet {
    /// The cadence for `tone`, if the plan defines one.
    pub fn cadence(&self, tone: CallProgressTone) -> Option<&'static Cadence> {
        self.entries
            .iter()
            .find(|(t, _)| *t == tone)
            .map(|(_, c)| c)
    }

    /// ITU-T E.180 / CEPT (ETSI TR 101 041) recommended tones, 425 Hz based, as used in
    /// most of Europe. Level −10 dBm0. No confirmation tone is recommended, so none is
    /// defined.
    pub const ETSI: ToneSet = ToneSet {
        name: "ITU-T E.180 / CEPT 425 Hz",
        entries: &[
            (
                CallProgressTone::Dial,
                Cadence {
                    name: "dial tone (425 Hz continuous)",
                    level_dbm0: -10.0,
                    segments: &[Segment::on(&[425.0], 1000)],
                    repeat_from: Some(0),
                },
            ),
            (
                CallProgressTone::Ringback,
                Cadence {
                    name: "ringing tone (425 Hz, 1 s on / 4 s off)",
                    level_dbm0: -10.0,
                    segments: &[Segment::on(&[425.0], 1000), Segment::off(4000)],
                    repeat_from: Some(0),
                },
            ),
            (
                CallProgressTone::Busy,
                Cadence {
                    name: "busy tone (425 Hz, 0.5 s on / 0.5 s off)",
                    level_dbm0: -10.0,
                    segments: &[Segment::on(&[425.0], 500), Segment::off(500)],
                    repeat_from: Some(0),
                },
            ),
            (
                CallProgressTone::Congestion,
                Cadence {
                    name: "congestion tone (425 Hz, 0.2 s on / 0.2 s off)",
                    level_dbm0: -10.0,
                    segments: &[Segment::on(&[425.0], 200), Segment::off(200)],
                    repeat_from: Some(0),
                },
            ),
            (
                CallProgressTone::CallWaiting,
                Cadence {
                    name: "call waiting tone (425 Hz, 0.2 on / 0.2 off / 0.2 on)",
                    level_dbm0: -10.0,
                    segments: &[
                        Segment::on(&[425.0], 200),
                        Segment::off(200),
                        Segment::on(&[425.0], 200),
                    ],
                    repeat_from: None,
                },
            ),
            (
                CallProgressTone::StutterDial,
                Cadence {
                    name: "special dial tone (425 Hz, 0.4 s on / 0.04 s off)",
                    level_dbm0: -10.0,
                    segments: &[Segment::on(&[425.0], 400), Segment::off(40)],
                    repeat_from: Some(0),
                },
            ),
        ],
    };

    /// North American precise tone plan (350/440/480/620 Hz).
    pub const NORTH_AMERICA: ToneSet = ToneSet {
        name: "North American precise tone plan",
        entries: &[
            (
                CallProgressTone::Dial,
                Cadence {
                    name: "dial tone (350+440 Hz continuous)",
                    level_dbm0: -13.0,
                    segments: &[Segment::on(&[350.0, 440.0], 1000)],
                    repeat_from: Some(0),
                },
            ),
            (
                CallProgressTone::Ringback,
                Cadence {
                    name: "audible ringing (440+480 Hz, 2 s on / 4 s off)",
                    level_dbm0: -19.0,
                    segments: &[Segment::on(&[440.0, 480.0], 2000), Segment::off(4000)],
                    repeat_from: Some(0),
                },
            ),
            (
                CallProgressTone::Busy,
                Cadence {
                    name: "line busy (480+620 Hz, 0.5 s on / 0.5 s off)",
                    level_dbm0: -24.0,
                    segments: &[Segment::on(&[480.0, 620.0], 500), Segment::off(500)],
                    repeat_from: Some(0),
                },
            ),
            (
                CallProgressTone::Congestion,
                Cadence {
                    name: "reorder (480+620 Hz, 0.25 s on / 0.25 s off)",
                    level_dbm0: -24.0,
                    segments: &[Segment::on(&[480.0, 620.0], 250), Segment::off(250)],
                    repeat_from: Some(0),
                },
            ),
            (
                CallProgressTone::CallWaiting,
                Cadence {
                    name: "call waiting (440 Hz, 0.3 s)",
                    level_dbm0: -13.0,
                    segments: &[Segment::on(&[440.0], 300)],
                    repeat_from: None,
                },
            ),
            (
                CallProgressTone::StutterDial,
                Cadence {
                    name: "stutter dial (350+440 Hz, 10 × 0.1/0.1 s, then steady)",
                    level_dbm0: -13.0,
                    segments: &[
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 1000),
                    ],
                    repeat_from: Some(20),
                },
            ),
            (
                CallProgressTone::Confirmation,
                Cadence {
                    name: "confirmation (350+440 Hz, 3 × 0.1/0.1 s)",
                    level_dbm0: -13.0,
                    segments: &[
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                        Segment::on(&[350.0, 440.0], 100),
                        Segment::off(100),
                    ],
                    repeat_from: None,
                },
            ),
        ],
    };
}

/// Level and timing of generated DTMF digits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DtmfToneParams {
    /// Level of the low-group frequency, dBm0.
    pub low_dbm0: f32,
    /// Level of the high-group frequency, dBm0 (usually 1–2 dB above the low group,
    /// to offset line loss at higher frequencies).
    pub high_dbm0: f32,
    /// Tone-on time per digit, milliseconds.
    pub on_ms: u32,
    /// Silence after each digit, milliseconds.
    pub off_ms: u32,
}

impl Default for DtmfToneParams {
    /// −10 dBm0 low group, −8 dBm0 high group, 100 ms on, 100 ms off.
    fn default() -> Self {
        DtmfToneParams {
            low_dbm0: -10.0,
            high_dbm0: -8.0,
            on_ms: 100,
            off_ms: 100,
        }
    }
}

/// Continuity test tone, Hz (MGCP `T/co1`, RFC 3660; the "go" tone of the dual-tone
/// continuity procedure).
pub const CONTINUITY_HZ: u32 = 2010;

/// Continuity return tone, Hz (MGCP `T/co2`: the answer in the dual-tone procedure).
pub const CONTINUITY_RETURN_HZ: u32 = 1780;

/// Level of generated continuity tones, dBm0.
pub const CONTINUITY_LEVEL_DBM0: f32 = -10.0;

/// Maximum number of simultaneous frequencies in one step.
pub const MAX_COMPONENTS: usize = 4;

/// One compiled step: oscillator parameters and a length in samples.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Step {
    /// (cos ω, sin ω, amplitude) per component.
    comps: [(f64, f64, f64); MAX_COMPONENTS],
    n: usize,
    samples: u64,
}

impl Step {
    fn new(freqs_levels: &[(f32, f32)], samples: u64, rate: SampleRate) -> Step {
        let mut comps = [(1.0, 0.0, 0.0); MAX_COMPONENTS];
        let mut n = 0;
        for &(hz, dbm0) in freqs_levels.iter().take(MAX_COMPONENTS) {
            let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(rate.hz());
            comps[n] = (w.cos(), w.sin(), f64::from(dbm0_to_peak(dbm0)));
            n += 1;
        }
        Step { comps, n, samples }
    }

    fn same_sound(&self, other: &Step) -> bool {
        self.n == other.n && self.comps[..self.n] == other.comps[..other.n]
    }
}

/// A phasor oscillator: `(re, im)` rotated by `(c, s)` each sample; outputs `amp·im`.
#[derive(Clone, Copy, Debug)]
struct Osc {
    re: f64,
    im: f64,
    c: f64,
    s: f64,
    amp: f64,
}

impl Osc {
    const SILENT: Osc = Osc {
        re: 1.0,
        im: 0.0,
        c: 1.0,
        s: 0.0,
        amp: 0.0,
    };

    #[inline]
    fn next(&mut self) -> f64 {
        let out = self.im * self.amp;
        let re = self.re * self.c - self.im * self.s;
        let im = self.re * self.s + self.im * self.c;
        self.re = re;
        self.im = im;
        out
    }

    fn renormalise(&mut self) {
        let m = (self.re * self.re + self.im * self.im).sqrt();
        if m > 0.0 {
            self.re /= m;
            self.im /= m;
        } else {
            self.re = 1.0;
            self.im = 0.0;
        }
    }
}

/// Plays DTMF digits or a call-progress cadence into caller-supplied sample buffers.
///
/// Allocation happens only at construction; [`fill`](Self::fill) and
/// [`mix`](Self::mix) never allocate.
#[derive(Clone, Debug)]
pub struct ToneGenerator {
    steps: Vec<Step>,
    repeat_from: Option<usize>,
    idx: usize,
    left: u64,
    oscs: [Osc; MAX_COMPONENTS],
    done: bool,
    rate: SampleRate,
    produced: u64,
}

impl ToneGenerator {
    fn from_steps(steps: Vec<Step>, repeat_from: Option<usize>, rate: SampleRate) -> Self {
        let total: u64 = steps.iter().map(|s| s.samples).sum();
        let loop_len: u64 = match repeat_from {
            Some(i) => steps.iter().skip(i).map(|s| s.samples).sum(),
            None => 0,
        };
        let repeat_from = repeat_from.filter(|&i| i < steps.len() && loop_len > 0);
        let mut g = ToneGenerator {
            steps,
            repeat_from,
            idx: 0,
            left: 0,
            oscs: [Osc::SILENT; MAX_COMPONENTS],
            done: total == 0,
            rate,
            produced: 0,
        };
        if !g.done {
            g.enter(0, None);
        }
        g
    }

    /// Enters step `idx` (which must exist); skips zero-length steps.
    fn enter(&mut self, mut idx: usize, prev: Option<Step>) {
        // Bounded: from_steps guarantees at least one non-empty step is reachable
        // (total > 0, and a loop has a non-zero length), so this loop ends.
        loop {
            match self.steps.get(idx) {
                Some(s) if s.samples > 0 => break,
                Some(_) => idx += 1,
                None => match self.repeat_from {
                    Some(r) => idx = r,
                    None => {
                        self.done = true;
                        return;
                    }
                },
            }
        }
        let step = self.steps[idx];
        self.idx = idx;
        self.left = step.samples;
        let keep = prev.is_some_and(|p| p.same_sound(&step));
        if !keep {
            for (k, osc) in self.oscs.iter_mut().enumerate() {
                *osc = if k < step.n {
                    let (c, s, amp) = step.comps[k];
                    Osc {
                        re: 1.0,
                        im: 0.0,
                        c,
                        s,
                        amp,
                    }
                } else {
                    Osc::SILENT
                };
            }
        }
    }

    fn advance(&mut self) {
        let prev = self.steps[self.idx];
        let next = self.idx + 1;
        if next < self.steps.len() {
            self.enter(next, Some(prev));
        } else if let Some(r) = self.repeat_from {
            self.enter(r, Some(prev));
        } else {
            self.done = true;
        }
    }

    /// A generator for a tabulated cadence.
    pub fn from_cadence(cadence: &Cadence, rate: SampleRate) -> Self {
        let steps = cadence
            .segments
            .iter()
            .map(|seg| {
                let mut fl = [(0.0f32, 0.0f32); MAX_COMPONENTS];
                let n = seg.freqs.len().min(MAX_COMPONENTS);
                for (slot, &f) in fl.iter_mut().zip(seg.freqs.iter()) {
                    *slot = (f, cadence.level_dbm0);
                }
                Step::new(&fl[..n], rate.ms_to_samples(seg.ms), rate)
            })
            .collect();
        Self::from_steps(steps, cadence.repeat_from, rate)
    }

    /// A generator for `tone` from `set`, or `None` if the set does not define it.
    pub fn call_progress(set: &ToneSet, tone: CallProgressTone, rate: SampleRate) -> Option<Self> {
        set.cadence(tone).map(|c| Self::from_cadence(c, rate))
    }

    fn dtmf_step(digit: DtmfDigit, p: &DtmfToneParams, ms: u32, rate: SampleRate) -> Step {
        let (lo, hi) = digit.frequencies();
        Step::new(
            &[(lo, p.low_dbm0), (hi, p.high_dbm0)],
            rate.ms_to_samples(ms),
            rate,
        )
    }

    /// One DTMF digit: `on_ms` of tone, then `off_ms` of silence, then done.
    pub fn dtmf(digit: DtmfDigit, params: &DtmfToneParams, rate: SampleRate) -> Self {
        Self::dtmf_sequence(&[digit], params, rate)
    }

    /// A string of DTMF digits, each `on_ms` of tone followed by `off_ms` of silence.
    pub fn dtmf_sequence(digits: &[DtmfDigit], params: &DtmfToneParams, rate: SampleRate) -> Self {
        let mut steps = Vec::with_capacity(digits.len() * 2);
        for &d in digits {
            steps.push(Self::dtmf_step(d, params, params.on_ms, rate));
            steps.push(Step::new(&[], rate.ms_to_samples(params.off_ms), rate));
        }
        Self::from_steps(steps, None, rate)
    }

    /// A DTMF digit played until [`stop`](Self::stop) is called (for playing out
    /// RFC 4733 events, whose end is not known in advance). `on_ms`/`off_ms` of
    /// `params` are ignored.
    pub fn dtmf_continuous(digit: DtmfDigit, params: &DtmfToneParams, rate: SampleRate) -> Self {
        let steps = vec![Self::dtmf_step(digit, params, 1000, rate)];
        Self::from_steps(steps, Some(0), rate)
    }

    /// A single frequency at `level_dbm0`, played until [`stop`](Self::stop) is called
    /// (e.g. a continuity tone, [`CONTINUITY_HZ`] at [`CONTINUITY_LEVEL_DBM0`]).
    pub fn steady(hz: f32, level_dbm0: f32, rate: SampleRate) -> Self {
        let steps = vec![Step::new(
            &[(hz, level_dbm0)],
            rate.ms_to_samples(1000),
            rate,
        )];
        Self::from_steps(steps, Some(0), rate)
    }

    /// True once a timed signal has played completely, or after [`stop`](Self::stop).
    /// Continuous signals are never done on their own.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// True for a timed signal (ends by itself, MGCP "TO"), false for a continuous
    /// one that plays until stopped.
    pub fn is_timed(&self) -> bool {
        self.repeat_from.is_none()
    }

    /// Stops the signal: later calls produce silence and [`is_done`](Self::is_done)
    /// returns true.
    pub fn stop(&mut self) {
        self.done = true;
    }

    /// Samples produced so far (tone and silence steps alike).
    pub fn position(&self) -> u64 {
        self.produced
    }

    /// The sample rate this generator was built for.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Writes the next `out.len()` samples into `out`, overwriting it; once the signal
    /// is done the rest of `out` is zero. Returns how many samples belonged to the
    /// signal (less than `out.len()` only when it ended inside this buffer).
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        self.render(out, |_, v| v)
    }

    /// Like [`fill`](Self::fill) but adds the signal to what `out` already holds
    /// (saturating), e.g. to play a tone over speech.
    pub fn mix(&mut self, out: &mut [i16]) -> usize {
        self.render(out, |old, v| old + v)
    }

    fn render(&mut self, out: &mut [i16], combine: impl Fn(f64, f64) -> f64) -> usize {
        for osc in &mut self.oscs {
            osc.renormalise();
        }
        let mut i = 0;
        while i < out.len() && !self.done {
            let step = self.steps[self.idx];
            let run = (out.len() - i).min(usize::try_from(self.left).unwrap_or(usize::MAX));
            for o in &mut out[i..i + run] {
                let mut v = 0.0;
                for osc in &mut self.oscs[..step.n] {
                    v += osc.next();
                }
                let y = combine(f64::from(*o), v).round();
                *o = y.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
            }
            i += run;
            self.produced += run as u64;
            self.left -= run as u64;
            if self.left == 0 {
                self.advance();
            }
        }
        let generated = i;
        for o in &mut out[i..] {
            *o = combine(f64::from(*o), 0.0) as i16;
        }
        generated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power estimate of a tone at `hz` by Goertzel over `x`: returns the amplitude.
    fn goertzel_amp(x: &[i16], hz: f64, rate: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * hz / rate;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let p = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        2.0 * p.max(0.0).sqrt() / x.len() as f64
    }

    /// Frequency of the strongest component near `nominal` (±5 %), by a 0.25 Hz sweep.
    fn peak_freq(x: &[i16], nominal: f64, rate: f64) -> f64 {
        let mut best = (0.0, nominal);
        let mut f = nominal * 0.95;
        while f <= nominal * 1.05 {
            let a = goertzel_amp(x, f, rate);
            if a > best.0 {
                best = (a, f);
            }
            f += 0.25;
        }
        best.1
    }

    fn amp_to_dbm0(a: f64) -> f64 {
        20.0 * (a / f64::from(DBM0_PEAK)).log10()
    }

    fn render(g: &mut ToneGenerator, n: usize, frame: usize) -> Vec<i16> {
        let mut out = vec![0i16; n];
        for chunk in out.chunks_mut(frame) {
            g.fill(chunk);
        }
        out
    }

    #[test]
    fn dtmf_frequencies_and_levels() {
        for rate in [SampleRate::Hz8000, SampleRate::Hz16000] {
            let r = f64::from(rate.hz());
            for d in DtmfDigit::ALL {
                let p = DtmfToneParams {
                    on_ms: 1000,
                    ..DtmfToneParams::default()
                };
                let mut g = ToneGenerator::dtmf(d, &p, rate);
                let x = render(&mut g, rate.hz() as usize, 160);
                let (lo, hi) = d.frequencies();
                for (f, lvl) in [(lo, p.low_dbm0), (hi, p.high_dbm0)] {
                    let f = f64::from(f);
                    let m = peak_freq(&x, f, r);
                    assert!((m - f).abs() <= f * 0.01, "{d:?} {f} measured {m}");
                    let a = amp_to_dbm0(goertzel_amp(&x, f, r));
                    assert!((a - f64::from(lvl)).abs() <= 0.5, "{d:?} {f} level {a}");
                }
            }
        }
    }

    #[test]
    fn dtmf_timing_exact_and_done() {
        let p = DtmfToneParams {
            on_ms: 70,
            off_ms: 30,
            ..DtmfToneParams::default()
        };
        let mut g = ToneGenerator::dtmf(DtmfDigit::D5, &p, SampleRate::Hz8000);
        assert!(g.is_timed());
        let mut out = vec![0i16; 1000];
        // Frames of odd size to check step boundaries inside frames.
        let mut n = 0;
        for chunk in out.chunks_mut(37) {
            n += g.fill(chunk);
        }
        assert_eq!(n, 800, "70 + 30 ms at 8 kHz");
        assert!(g.is_done());
        assert!(out[560..].iter().all(|&v| v == 0));
        // Last 8 samples of the tone are not all zero; tone starts at phase 0.
        assert_eq!(out[0], 0);
        assert!(out[552..560].iter().any(|&v| v != 0));
    }

    #[test]
    fn dtmf_sequence_is_phase_continuous_within_tone() {
        let p = DtmfToneParams::default();
        let mut g = ToneGenerator::dtmf(DtmfDigit::D1, &p, SampleRate::Hz8000);
        // Generate in 1-sample frames and compare with one big frame.
        let mut a = vec![0i16; 1600];
        for s in a.chunks_mut(1) {
            g.fill(s);
        }
        let mut g2 = ToneGenerator::dtmf(DtmfDigit::D1, &p, SampleRate::Hz8000);
        let mut b = vec![0i16; 1600];
        g2.fill(&mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((i32::from(*x) - i32::from(*y)).abs() <= 1);
        }
    }

    /// Runs `g` for `n` samples and returns (on?, run length) runs.
    fn runs(g: &mut ToneGenerator, n: usize) -> Vec<(bool, usize)> {
        let x = render(g, n, 160);
        let mut runs: Vec<(bool, usize)> = Vec::new();
        // A sample is "on" if it is inside a step with frequencies; sines cross zero,
        // so classify by a 2-sample look-around instead of by the value alone.
        let on: Vec<bool> = (0..x.len())
            .map(|i| {
                let lo = i.saturating_sub(1);
                let hi = (i + 2).min(x.len());
                x[lo..hi].iter().any(|&v| v != 0)
            })
            .collect();
        for &o in &on {
            match runs.last_mut() {
                Some((b, len)) if *b == o => *len += 1,
                _ => runs.push((o, 1)),
            }
        }
        runs
    }

    #[test]
    fn busy_cadences_exact_in_samples() {
        let mut g = ToneGenerator::call_progress(
            &ToneSet::NORTH_AMERICA,
            CallProgressTone::Busy,
            SampleRate::Hz8000,
        )
        .unwrap();
        assert!(!g.is_timed());
        let r = runs(&mut g, 8000 * 3);
        // The edge classification blurs each boundary by one sample either way;
        // inner runs must be 4000 ± 1 samples (0.5 s).
        for &(_, len) in &r[1..r.len() - 1] {
            assert!((3999..=4001).contains(&len), "{r:?}");
        }
        assert!(!g.is_done());
    }

    #[test]
    fn cadence_boundaries_exact() {
        // Exact check without zero-crossing ambiguity: render step by step and compare
        // the generator's position with the expected boundaries.
        for set in [ToneSet::ETSI, ToneSet::NORTH_AMERICA] {
            for &(tone, cad) in set.entries {
                for rate in [SampleRate::Hz8000, SampleRate::Hz16000] {
                    let mut g = ToneGenerator::from_cadence(&cad, rate);
                    let pass = cad.pass_ms() * u64::from(rate.samples_per_ms());
                    let mut buf = vec![0i16; usize::try_from(pass).unwrap()];
                    let n = g.fill(&mut buf);
                    assert_eq!(n as u64, pass, "{tone:?} {}", set.name);
                    // Check each segment: silent segments are all zero; tone segments
                    // are non-zero somewhere and their level matches.
                    let mut at = 0usize;
                    for seg in cad.segments {
                        let len = usize::try_from(rate.ms_to_samples(seg.ms)).unwrap();
                        let part = &buf[at..at + len];
                        if seg.freqs.is_empty() {
                            assert!(part.iter().all(|&v| v == 0), "{tone:?} silent step");
                        } else {
                            assert_eq!(part[0], 0, "starts at phase 0 or continues");
                            let r = f64::from(rate.hz());
                            for &f in seg.freqs {
                                let a = amp_to_dbm0(goertzel_amp(part, f64::from(f), r));
                                assert!(
                                    (a - f64::from(cad.level_dbm0)).abs() <= 0.5,
                                    "{tone:?} {f} Hz at {a} dBm0 in {}",
                                    set.name
                                );
                            }
                        }
                        at += len;
                    }
                    assert_eq!(g.is_done(), cad.repeat_from.is_none(), "{tone:?}");
                }
            }
        }
    }

    #[test]
    fn call_progress_frequencies_within_one_percent() {
        let rate = SampleRate::Hz8000;
        for set in [ToneSet::ETSI, ToneSet::NORTH_AMERICA] {
            for &(tone, cad) in set.entries {
                let seg = cad.segments.iter().find(|s| !s.freqs.is_empty()).unwrap();
                // Play a steady version of the first tone step for 1 s.
                let steady = Cadence {
                    name: "steady",
                    level_dbm0: cad.level_dbm0,
                    segments: std::slice::from_ref(seg),
                    repeat_from: Some(0),
                };
                let mut g = ToneGenerator::from_cadence(&steady, rate);
                let x = render(&mut g, 8000, 160);
                for &f in seg.freqs {
                    let f = f64::from(f);
                    let m = peak_freq(&x, f, 8000.0);
                    assert!((m - f).abs() <= f * 0.01, "{tone:?} {f} -> {m}");
                }
            }
        }
    }

    #[test]
    fn single_tone_zero_crossings() {
        // 425 Hz for 2 s: 850 cycles → 1700 zero crossings (±2).
        let mut g = ToneGenerator::call_progress(
            &ToneSet::ETSI,
            CallProgressTone::Dial,
            SampleRate::Hz8000,
        )
        .unwrap();
        let x = render(&mut g, 16000, 160);
        let zc = x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count() as f64;
        let f = zc / 2.0 / 2.0;
        assert!((f - 425.0).abs() <= 4.25, "{f}");
        // RMS level: −10 dBm0.
        let p: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
        let dbm0 = f64::from(power_to_dbm0(p as f32));
        assert!((dbm0 + 10.0).abs() <= 0.5, "{dbm0}");
    }

    #[test]
    fn long_continuous_tone_does_not_drift() {
        let mut g = ToneGenerator::call_progress(
            &ToneSet::NORTH_AMERICA,
            CallProgressTone::Dial,
            SampleRate::Hz8000,
        )
        .unwrap();
        let mut buf = [0i16; 160];
        // 10 minutes.
        for _ in 0..(8000 * 600 / 160) {
            g.fill(&mut buf);
        }
        let x = render(&mut g, 8000, 160);
        let a = amp_to_dbm0(goertzel_amp(&x, 350.0, 8000.0));
        assert!((a + 13.0).abs() <= 0.5, "{a}");
        assert!(!g.is_done());
        assert_eq!(g.position(), 8000 * 601);
    }

    #[test]
    fn stutter_dial_then_steady() {
        let mut g = ToneGenerator::call_progress(
            &ToneSet::NORTH_AMERICA,
            CallProgressTone::StutterDial,
            SampleRate::Hz8000,
        )
        .unwrap();
        // 10 × (100 + 100) ms = 2 s of stutter, then steady.
        let x = render(&mut g, 8000 * 5, 160);
        assert!(x[800..1600].iter().all(|&v| v == 0), "first gap");
        assert!(x[15200..16000].iter().all(|&v| v == 0), "last gap");
        // Steady: no 100-sample run of silence after 2 s.
        let steady = &x[16000..];
        assert!(steady.windows(4).all(|w| w.iter().any(|&v| v != 0)));
    }

    #[test]
    fn stop_and_mix() {
        let p = DtmfToneParams::default();
        let mut g = ToneGenerator::dtmf_continuous(DtmfDigit::Hash, &p, SampleRate::Hz8000);
        assert!(!g.is_timed());
        let mut buf = [100i16; 160];
        assert_eq!(g.mix(&mut buf), 160);
        assert_eq!(buf[0], 100, "phase 0 plus the existing 100");
        g.stop();
        assert!(g.is_done());
        let mut buf = [7i16; 16];
        assert_eq!(g.mix(&mut buf), 0);
        assert!(buf.iter().all(|&v| v == 7));
        assert_eq!(g.fill(&mut buf), 0);
        assert!(buf.iter().all(|&v| v == 0));
    }

    #[test]
    fn confirmation_absent_from_etsi_present_in_na() {
        assert!(ToneSet::ETSI
            .cadence(CallProgressTone::Confirmation)
            .is_none());
        let c = ToneSet::NORTH_AMERICA
            .cadence(CallProgressTone::Confirmation)
            .unwrap();
        assert_eq!(c.pass_ms(), 600);
        for t in CallProgressTone::ALL {
            assert!(ToneSet::NORTH_AMERICA.cadence(t).is_some(), "{t:?}");
        }
    }

    #[test]
    fn steady_continuity_tones() {
        for hz in [CONTINUITY_HZ, CONTINUITY_RETURN_HZ] {
            let f = hz as f32;
            let mut g = ToneGenerator::steady(f, CONTINUITY_LEVEL_DBM0, SampleRate::Hz8000);
            assert!(!g.is_timed());
            // 3 s: across the 1 s step boundary twice, with no phase jump.
            let x = render(&mut g, 24000, 160);
            assert!(!g.is_done());
            let m = peak_freq(&x[8000..16000], f64::from(f), 8000.0);
            assert!((m - f64::from(f)).abs() <= 1.0, "{hz}: {m}");
            for part in x.chunks(8000) {
                let a = amp_to_dbm0(goertzel_amp(part, f64::from(f), 8000.0));
                assert!((a + 10.0).abs() <= 0.2, "{hz}: {a} dBm0");
            }
            let around = &x[7990..8010];
            let w = 2.0 * std::f64::consts::PI * f64::from(f) / 8000.0;
            let peak = f64::from(dbm0_to_peak(CONTINUITY_LEVEL_DBM0));
            for (i, &v) in around.iter().enumerate() {
                let want = peak * (w * (7990 + i) as f64).sin();
                assert!((f64::from(v) - want).abs() < 4.0, "{hz}: continuous at 1 s");
            }
            g.stop();
            assert!(g.is_done());
        }
    }

    #[test]
    fn empty_cadence_is_done() {
        const EMPTY: &[Segment] = &[Segment::off(0)];
        let c = Cadence {
            name: "empty",
            level_dbm0: 0.0,
            segments: EMPTY,
            repeat_from: Some(0),
        };
        let mut g = ToneGenerator::from_cadence(&c, SampleRate::Hz8000);
        assert!(g.is_done());
        let mut b = [1i16; 8];
        assert_eq!(g.fill(&mut b), 0);
    }
}
