//! In-band DTMF detection within ITU-T Q.24 limits.
//!
//! ## Method
//! Analysis windows of 102 samples (12.75 ms) at 8 kHz — 204 at 16 kHz — advance by
//! half a window (the *hop*, 6.375 ms). Each window is Hamming-weighted (sidelobes
//! −43 dB, so one DTMF tone does not leak into the other tone's filter) and fed to
//! eight complex-output Goertzel filters at the exact DTMF frequencies. For the
//! strongest filter of each group the detector then
//!
//! 1. **measures the frequency**: two consecutive windows see a stationary tone at
//!    `f` rotated by `2π·f·hop/fs`; the phase difference against the nominal rotation
//!    gives the offset `δ` unambiguously within ±78 Hz. `|δ|` above the tolerance
//!    (default 2.5 %, between the Q.24 "accept 1.5 %" and "reject 3.5 %") invalidates
//!    the window. A window only partly filled with tone has a shifted centroid and a
//!    wildly wrong phase, so this check also rejects tone edges and speech glides;
//! 2. **corrects the level** for the window's response at `δ` (a table computed at
//!    construction), and checks each tone against the minimum level (default
//!    −35 dBm0), the normal and reverse twist limits (8 dB / 4 dB), and that the two
//!    tones carry at least 80 % of the window's total energy (speech and noise
//!    rejection: speech spreads energy over formants and harmonics).
//!
//! A digit starts after 4 consecutive valid hops with the same digit (a tone needs
//! 28–35 ms, depending on alignment, to produce them: 40 ms tones are always accepted,
//! 23 ms ones never) and ends after 5 consecutive hops without it (breaks shorter than
//! 20 ms never split a digit, pauses of 26 ms or more always separate two, so the Q.24
//! 10 ms interruption and 40 ms pause are met with margin). One key press therefore
//! yields exactly one [`DtmfEvent::DigitStart`] and one [`DtmfEvent::DigitEnd`].
//!
//! Reported sample positions count from the first sample given to the detector and
//! are accurate to about one hop; events are reported when decided, i.e. a little
//! after the position they name.

use std::collections::VecDeque;
use std::f32::consts::PI;

use crate::tone::{SampleRate, DBM0_POWER};

/// A DTMF key: 0–9, `*`, `#` and A–D (ITU-T Q.23).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DtmfDigit {
    /// Key 0.
    D0,
    /// Key 1.
    D1,
    /// Key 2.
    D2,
    /// Key 3.
    D3,
    /// Key 4.
    D4,
    /// Key 5.
    D5,
    /// Key 6.
    D6,
    /// Key 7.
    D7,
    /// Key 8.
    D8,
    /// Key 9.
    D9,
    /// Key `*`.
    Star,
    /// Key `#`.
    Hash,
    /// Key A.
    A,
    /// Key B.
    B,
    /// Key C.
    C,
    /// Key D.
    D,
}

/// Low-group (row) frequencies, Hz.
pub const LOW_GROUP_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// High-group (column) frequencies, Hz.
pub const HIGH_GROUP_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// Keypad layout: `KEYPAD[row][column]`.
const KEYPAD: [[DtmfDigit; 4]; 4] = [
    [DtmfDigit::D1, DtmfDigit::D2, DtmfDigit::D3, DtmfDigit::A],
    [DtmfDigit::D4, DtmfDigit::D5, DtmfDigit::D6, DtmfDigit::B],
    [DtmfDigit::D7, DtmfDigit::D8, DtmfDigit::D9, DtmfDigit::C],
    [
        DtmfDigit::Star,
        DtmfDigit::D0,
        DtmfDigit::Hash,
        DtmfDigit::D,
    ],
];

impl DtmfDigit {
    /// All sixteen digits in RFC 4733 event-code order (0–9, `*`, `#`, A–D).
    pub const ALL: [DtmfDigit; 16] = [
        DtmfDigit::D0,
        DtmfDigit::D1,
        DtmfDigit::D2,
        DtmfDigit::D3,
        DtmfDigit::D4,
        DtmfDigit::D5,
        DtmfDigit::D6,
        DtmfDigit::D7,
        DtmfDigit::D8,
        DtmfDigit::D9,
        DtmfDigit::Star,
        DtmfDigit::Hash,
        DtmfDigit::A,
        DtmfDigit::B,
        DtmfDigit::C,
        DtmfDigit::D,
    ];

    /// (row, column) on the keypad, indexes into [`LOW_GROUP_HZ`] / [`HIGH_GROUP_HZ`].
    pub fn row_col(self) -> (usize, usize) {
        for (r, row) in KEYPAD.iter().enumerate() {
            for (c, &d) in row.iter().enumerate() {
                if d == self {
                    return (r, c);
                }
            }
        }
        // Every digit appears in KEYPAD; this is unreachable but harmless.
        (0, 0)
    }

    /// The (low, high) frequency pair in Hz.
    pub fn frequencies(self) -> (f32, f32) {
        let (r, c) = self.row_col();
        (LOW_GROUP_HZ[r], HIGH_GROUP_HZ[c])
    }

    /// The RFC 4733 event code (0–15).
    pub fn event_code(self) -> u8 {
        match self {
            DtmfDigit::D0 => 0,
            DtmfDigit::D1 => 1,
            DtmfDigit::D2 => 2,
            DtmfDigit::D3 => 3,
            DtmfDigit::D4 => 4,
            DtmfDigit::D5 => 5,
            DtmfDigit::D6 => 6,
            DtmfDigit::D7 => 7,
            DtmfDigit::D8 => 8,
            DtmfDigit::D9 => 9,
            DtmfDigit::Star => 10,
            DtmfDigit::Hash => 11,
            DtmfDigit::A => 12,
            DtmfDigit::B => 13,
            DtmfDigit::C => 14,
            DtmfDigit::D => 15,
        }
    }

    /// The digit for an RFC 4733 event code, if it is a DTMF event (0–15).
    pub fn from_event_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The character used in MGCP digit maps and `D/x` event names
    /// (`0`–`9`, `*`, `#`, `A`–`D`).
    pub fn to_char(self) -> char {
        b"0123456789*#ABCD"[usize::from(self.event_code())] as char
    }

    /// Parses a digit character (case-insensitive for A–D).
    pub fn from_char(c: char) -> Option<Self> {
        let code = match c.to_ascii_uppercase() {
            c @ '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            c @ 'A'..='D' => c as u8 - b'A' + 12,
            _ => return None,
        };
        Self::from_event_code(code)
    }
}

/// What the detector reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfEvent {
    /// A digit began at `sample`.
    DigitStart {
        /// The digit.
        digit: DtmfDigit,
        /// Position of the start, in samples since the detector was created/reset.
        sample: u64,
    },
    /// The digit ended at `sample` after `duration` samples.
    DigitEnd {
        /// The digit.
        digit: DtmfDigit,
        /// Position of the end, in samples.
        sample: u64,
        /// Tone duration in samples (`sample` minus the start position).
        duration: u64,
    },
}

/// Detection limits. The defaults sit inside ITU-T Q.24.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DtmfConfig {
    /// Minimum level of each tone, dBm0.
    pub min_level_dbm0: f32,
    /// Maximum normal twist (high group louder than low group), dB.
    pub max_normal_twist_db: f32,
    /// Maximum reverse twist (low group louder than high group), dB.
    pub max_reverse_twist_db: f32,
    /// Frequency tolerance as a fraction of the nominal frequency.
    pub freq_tolerance: f32,
    /// Minimum share of the window's energy the two tones must carry.
    pub min_energy_ratio: f32,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        DtmfConfig {
            min_level_dbm0: -35.0,
            max_normal_twist_db: 8.0,
            max_reverse_twist_db: 4.0,
            freq_tolerance: 0.025,
            min_energy_ratio: 0.8,
        }
    }
}

/// Consecutive valid hops needed to start a digit.
const START_HOPS: u32 = 4;
/// Consecutive hops without the digit needed to end it.
const END_HOPS: u32 = 5;
/// Half-range of the window-gain table, Hz (beyond the measurable ±78 Hz).
const GAIN_TABLE_HZ: i32 = 100;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Cplx {
    re: f32,
    im: f32,
}

/// One analysis window in progress: position and Goertzel states.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// Samples consumed; negative while the window has not started yet.
    pos: isize,
    s1: [f32; 8],
    s2: [f32; 8],
    energy: f32,
}

impl Window {
    fn new(pos: isize) -> Self {
        Window {
            pos,
            s1: [0.0; 8],
            s2: [0.0; 8],
            energy: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Active {
    digit: DtmfDigit,
    start: u64,
    last_end: u64,
    misses: u32,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    digit: DtmfDigit,
    start: u64,
    hits: u32,
}

/// Streaming DTMF detector for one channel. Feed it samples in frames of any size;
/// drain [`DtmfEvent`]s with [`poll_event`](Self::poll_event).
#[derive(Clone, Debug)]
pub struct DtmfDetector {
    cfg: DtmfConfig,
    fs: f32,
    n: usize,
    hop: usize,
    hamming: Vec<f32>,
    sum_w: f32,
    sum_w2: f32,
    freqs: [f32; 8],
    coeff: [f32; 8],
    cos_w: [f32; 8],
    sin_w: [f32; 8],
    hop_phase: [f32; 8],
    gain: Vec<f32>,
    min_power: f32,
    windows: [Window; 2],
    prev_y: Option<[Cplx; 8]>,
    samples: u64,
    active: Option<Active>,
    candidate: Option<Candidate>,
    events: VecDeque<DtmfEvent>,
}

fn wrap_pi(mut a: f32) -> f32 {
    while a > PI {
        a -= 2.0 * PI;
    }
    while a < -PI {
        a += 2.0 * PI;
    }
    a
}

impl DtmfDetector {
    /// A detector with the default limits.
    pub fn new(rate: SampleRate) -> Self {
        Self::with_config(rate, DtmfConfig::default())
    }

    /// A detector with the given limits.
    pub fn with_config(rate: SampleRate, cfg: DtmfConfig) -> Self {
        let fs = rate.hz() as f32;
        let n = match rate {
            SampleRate::Hz8000 => 102,
            SampleRate::Hz16000 => 204,
        };
        let hop = n / 2;
        let hamming: Vec<f32> = (0..n)
            .map(|i| 0.54 - 0.46 * (2.0 * PI * i as f32 / (n - 1) as f32).cos())
            .collect();
        let sum_w: f32 = hamming.iter().sum();
        let sum_w2: f32 = hamming.iter().map(|w| w * w).sum();
        let mut freqs = [0.0; 8];
        freqs[..4].copy_from_slice(&LOW_GROUP_HZ);
        freqs[4..].copy_from_slice(&HIGH_GROUP_HZ);
        let mut coeff = [0.0; 8];
        let mut cos_w = [0.0; 8];
        let mut sin_w = [0.0; 8];
        let mut hop_phase = [0.0; 8];
        for k in 0..8 {
            let w = 2.0 * PI * freqs[k] / fs;
            cos_w[k] = w.cos();
            sin_w[k] = w.sin();
            coeff[k] = 2.0 * cos_w[k];
            hop_phase[k] = wrap_pi(w * hop as f32);
        }
        // Window power response at offsets −100..=100 Hz, 1 Hz apart, normalised to 1
        // at 0 Hz.
        let gain = (-GAIN_TABLE_HZ..=GAIN_TABLE_HZ)
            .map(|d| {
                let w = 2.0 * std::f64::consts::PI * f64::from(d) / f64::from(fs);
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for (i, &h) in hamming.iter().enumerate() {
                    re += f64::from(h) * (w * i as f64).cos();
                    im -= f64::from(h) * (w * i as f64).sin();
                }
                ((re * re + im * im) / f64::from(sum_w).powi(2)) as f32
            })
            .collect();
        let min_power = DBM0_POWER * 10f32.powf(cfg.min_level_dbm0 / 10.0);
        DtmfDetector {
            cfg,
            fs,
            n,
            hop,
            hamming,
            sum_w,
            sum_w2,
            freqs,
            coeff,
            cos_w,
            sin_w,
            hop_phase,
            gain,
            min_power,
            windows: [Window::new(0), Window::new(-(hop as isize))],
            prev_y: None,
            samples: 0,
            active: None,
            candidate: None,
            events: VecDeque::with_capacity(8),
        }
    }

    /// Forgets all state (and restarts sample counting at 0); keeps the configuration.
    pub fn reset(&mut self) {
        self.windows = [Window::new(0), Window::new(-(self.hop as isize))];
        self.prev_y = None;
        self.samples = 0;
        self.active = None;
        self.candidate = None;
        self.events.clear();
    }

    /// Samples processed since creation or [`reset`](Self::reset).
    pub fn samples_processed(&self) -> u64 {
        self.samples
    }

    /// The digit currently held down, if any.
    pub fn current_digit(&self) -> Option<DtmfDigit> {
        self.active.map(|a| a.digit)
    }

    /// Next pending event.
    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        self.events.pop_front()
    }

    /// Processes a frame of linear PCM at the detector's rate.
    pub fn process(&mut self, samples: &[i16]) {
        for &x in samples {
            let x = f32::from(x);
            for slot in 0..2 {
                let win = &mut self.windows[slot];
                if win.pos >= 0 {
                    // pos < n always holds here: a window is evaluated and restarted
                    // as soon as pos reaches n.
                    let xw = x * self.hamming[win.pos as usize];
                    win.energy += xw * xw;
                    for k in 0..8 {
                        let s = xw + self.coeff[k] * win.s1[k] - win.s2[k];
                        win.s2[k] = win.s1[k];
                        win.s1[k] = s;
                    }
                }
                win.pos += 1;
            }
            self.samples += 1;
            for slot in 0..2 {
                if self.windows[slot].pos == self.n as isize {
                    let w = self.windows[slot];
                    self.windows[slot] = Window::new(0);
                    self.window_done(&w);
                }
            }
        }
    }

    fn window_done(&mut self, w: &Window) {
        let mut y = [Cplx::default(); 8];
        for (k, yk) in y.iter_mut().enumerate() {
            yk.re = w.s1[k] - self.cos_w[k] * w.s2[k];
            yk.im = self.sin_w[k] * w.s2[k];
        }
        let verdict = self
            .prev_y
            .and_then(|prev| self.classify(&y, &prev, w.energy));
        self.prev_y = Some(y);
        // This window covers [samples - n, samples); with the previous one the span is
        // [samples - n - hop, samples).
        let end = self.samples;
        let start = end.saturating_sub((self.n + self.hop) as u64);
        self.step(verdict, start, end);
    }

    fn gain_at(&self, df: f32) -> f32 {
        let x = (df + GAIN_TABLE_HZ as f32).clamp(0.0, (2 * GAIN_TABLE_HZ) as f32);
        let i = x.floor() as usize;
        let frac = x - i as f32;
        let a = self.gain.get(i).copied().unwrap_or(1.0);
        let b = self.gain.get(i + 1).copied().unwrap_or(a);
        (a + (b - a) * frac).max(1e-3)
    }

    /// The digit this window shows, if every check passes.
    fn classify(&self, y: &[Cplx; 8], prev: &[Cplx; 8], energy: f32) -> Option<DtmfDigit> {
        let pow = |c: &Cplx| c.re * c.re + c.im * c.im;
        let argmax = |r: std::ops::Range<usize>| {
            r.fold(None, |best: Option<usize>, k| match best {
                Some(b) if pow(&y[b]) >= pow(&y[k]) => Some(b),
                _ => Some(k),
            })
        };
        let row = argmax(0..4)?;
        let col = argmax(4..8)?;
        let mut p = [0.0f32; 2];
        for (i, &k) in [row, col].iter().enumerate() {
            // Phase advance between the two windows, one hop apart.
            let re = y[k].re * prev[k].re + y[k].im * prev[k].im;
            let im = y[k].im * prev[k].re - y[k].re * prev[k].im;
            let dphi = wrap_pi(im.atan2(re) - self.hop_phase[k]);
            let df = dphi * self.fs / (2.0 * PI * self.hop as f32);
            if df.is_nan() || df.abs() > self.cfg.freq_tolerance * self.freqs[k] {
                return None;
            }
            // Mean power of a sine A: A²/2 = 2|X|²/(Σw)², corrected for the offset.
            p[i] = 2.0 * pow(&y[k]) / (self.sum_w * self.sum_w) / self.gain_at(df);
        }
        let [p_row, p_col] = p;
        if p_row < self.min_power || p_col < self.min_power {
            return None;
        }
        let twist_db = 10.0 * (p_col / p_row).log10();
        if twist_db > self.cfg.max_normal_twist_db || -twist_db > self.cfg.max_reverse_twist_db {
            return None;
        }
        let total = energy / self.sum_w2;
        if p_row + p_col < self.cfg.min_energy_ratio * total {
            return None;
        }
        Some(KEYPAD[row][col - 4])
    }

    fn step(&mut self, verdict: Option<DtmfDigit>, start: u64, end: u64) {
        if let Some(a) = &mut self.active {
            if verdict == Some(a.digit) {
                a.last_end = end;
                a.misses = 0;
                return;
            }
            a.misses += 1;
            if a.misses < END_HOPS {
                return;
            }
            self.events.push_back(DtmfEvent::DigitEnd {
                digit: a.digit,
                sample: a.last_end,
                duration: a.last_end - a.start,
            });
            self.active = None;
            self.candidate = None;
            return;
        }
        let Some(d) = verdict else {
            self.candidate = None;
            return;
        };
        let c = match self.candidate {
            Some(c) if c.digit == d => Candidate {
                hits: c.hits + 1,
                ..c
            },
            _ => Candidate {
                digit: d,
                start,
                hits: 1,
            },
        };
        if c.hits >= START_HOPS {
            self.events.push_back(DtmfEvent::DigitStart {
                digit: d,
                sample: c.start,
            });
            self.active = Some(Active {
                digit: d,
                start: c.start,
                last_end: end,
                misses: 0,
            });
            self.candidate = None;
        } else {
            self.candidate = Some(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{DtmfToneParams, ToneGenerator};

    /// Deterministic white noise (xorshift), uniform in ±`amp`.
    pub(crate) struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
    }

    /// A two-tone signal with arbitrary frequencies/levels, `ms` long, after `pre` and
    /// followed by `post` samples of silence.
    fn two_tone(f: (f32, f32), lv: (f32, f32), len: usize, pre: usize, post: usize) -> Vec<i16> {
        let mut v = vec![0i16; pre + len + post];
        let a1 = crate::tone::dbm0_to_peak(lv.0);
        let a2 = crate::tone::dbm0_to_peak(lv.1);
        for i in 0..len {
            let t = i as f32 / 8000.0;
            let s = a1 * (2.0 * PI * f.0 * t).sin() + a2 * (2.0 * PI * f.1 * t).sin();
            v[pre + i] = s.round() as i16;
        }
        v
    }

    fn detect(x: &[i16], rate: SampleRate) -> Vec<DtmfEvent> {
        let mut d = DtmfDetector::new(rate);
        let mut ev = Vec::new();
        for frame in x.chunks(160) {
            d.process(frame);
            while let Some(e) = d.poll_event() {
                ev.push(e);
            }
        }
        // Flush with silence so a trailing digit ends.
        d.process(&vec![0; 2000]);
        while let Some(e) = d.poll_event() {
            ev.push(e);
        }
        ev
    }

    fn digits(ev: &[DtmfEvent]) -> String {
        ev.iter()
            .filter_map(|e| match e {
                DtmfEvent::DigitStart { digit, .. } => Some(digit.to_char()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn digit_mapping() {
        for (i, d) in DtmfDigit::ALL.iter().enumerate() {
            assert_eq!(usize::from(d.event_code()), i);
            assert_eq!(DtmfDigit::from_char(d.to_char()), Some(*d));
            assert_eq!(DtmfDigit::from_event_code(i as u8), Some(*d));
        }
        assert_eq!(DtmfDigit::from_event_code(16), None);
        assert_eq!(DtmfDigit::from_char('x'), None);
        assert_eq!(DtmfDigit::from_char('b'), Some(DtmfDigit::B));
        assert_eq!(DtmfDigit::Star.frequencies(), (941.0, 1209.0));
        assert_eq!(DtmfDigit::D.frequencies(), (941.0, 1633.0));
        assert_eq!(DtmfDigit::D5.frequencies(), (770.0, 1336.0));
    }

    #[test]
    fn every_digit_from_generator_8k_and_16k() {
        for rate in [SampleRate::Hz8000, SampleRate::Hz16000] {
            let mut g =
                ToneGenerator::dtmf_sequence(&DtmfDigit::ALL, &DtmfToneParams::default(), rate);
            let mut x = vec![0i16; 16 * 200 * rate.samples_per_ms() as usize];
            g.fill(&mut x);
            let ev = detect(&x, rate);
            assert_eq!(digits(&ev), "0123456789*#ABCD", "{rate:?}");
            assert_eq!(ev.len(), 32);
            // Start/end positions within a hop or two of the truth; durations ~100 ms.
            let spm = u64::from(rate.samples_per_ms());
            for (i, pair) in ev.chunks(2).enumerate() {
                let (
                    DtmfEvent::DigitStart { sample: s, .. },
                    DtmfEvent::DigitEnd {
                        sample: e,
                        duration,
                        ..
                    },
                ) = (pair[0], pair[1])
                else {
                    panic!("unpaired {pair:?}");
                };
                let t0 = i as u64 * 200 * spm;
                assert!(s.abs_diff(t0) <= 10 * spm, "start {s} vs {t0}");
                assert!(e.abs_diff(t0 + 100 * spm) <= 10 * spm, "end {e}");
                assert_eq!(duration, e - s);
            }
        }
    }

    #[test]
    fn frequency_tolerance() {
        for d in DtmfDigit::ALL {
            let (lo, hi) = d.frequencies();
            for (sl, sh, expect) in [
                (1.015, 1.015, true),
                (0.985, 0.985, true),
                (1.015, 0.985, true),
                (1.035, 1.0, false),
                (0.965, 1.0, false),
                (1.0, 1.035, false),
                (1.0, 0.965, false),
            ] {
                let x = two_tone((lo * sl, hi * sh), (-10.0, -8.0), 800, 100, 0);
                let found = digits(&detect(&x, SampleRate::Hz8000));
                if expect {
                    assert_eq!(found, d.to_char().to_string(), "{d:?} ×{sl} ×{sh}");
                } else {
                    assert_eq!(found, "", "{d:?} ×{sl} ×{sh} must be rejected");
                }
            }
        }
    }

    #[test]
    fn twist_limits() {
        for d in [DtmfDigit::D1, DtmfDigit::Star, DtmfDigit::D, DtmfDigit::D9] {
            let (lo, hi) = d.frequencies();
            // (low level, high level, accepted?)
            for (l, h, ok) in [
                (-20.0, -13.0, true),  // normal twist 7 dB
                (-20.0, -10.5, false), // normal twist 9.5 dB
                (-10.0, -13.0, true),  // reverse twist 3 dB
                (-10.0, -15.0, false), // reverse twist 5 dB
            ] {
                let x = two_tone((lo, hi), (l, h), 800, 0, 0);
                let found = digits(&detect(&x, SampleRate::Hz8000));
                assert_eq!(found.len(), usize::from(ok), "{d:?} {l}/{h}");
            }
        }
    }

    #[test]
    fn level_floor() {
        let (lo, hi) = DtmfDigit::D8.frequencies();
        let ok = two_tone((lo, hi), (-30.0, -30.0), 800, 0, 0);
        assert_eq!(digits(&detect(&ok, SampleRate::Hz8000)), "8");
        let low = two_tone((lo, hi), (-40.0, -40.0), 800, 0, 0);
        assert_eq!(digits(&detect(&low, SampleRate::Hz8000)), "");
    }

    #[test]
    fn durations_at_every_alignment() {
        let (lo, hi) = DtmfDigit::D0.frequencies();
        for pre in 0..60 {
            let x = two_tone((lo, hi), (-10.0, -8.0), 320, pre, 0);
            assert_eq!(
                digits(&detect(&x, SampleRate::Hz8000)),
                "0",
                "40 ms at +{pre}"
            );
            let x = two_tone((lo, hi), (-10.0, -8.0), 184, pre, 0);
            assert_eq!(
                digits(&detect(&x, SampleRate::Hz8000)),
                "",
                "23 ms at +{pre}"
            );
            let x = two_tone((lo, hi), (-10.0, -8.0), 160, pre, 0);
            assert_eq!(
                digits(&detect(&x, SampleRate::Hz8000)),
                "",
                "20 ms at +{pre}"
            );
        }
    }

    #[test]
    fn pause_and_interruption() {
        let p = DtmfToneParams {
            on_ms: 50,
            off_ms: 40,
            ..DtmfToneParams::default()
        };
        for pre in (0..51).step_by(7) {
            // 50 ms on / 40 ms off: every digit separate.
            let mut g = ToneGenerator::dtmf_sequence(
                &[DtmfDigit::D1, DtmfDigit::D1, DtmfDigit::D2, DtmfDigit::D2],
                &p,
                SampleRate::Hz8000,
            );
            let mut x = vec![0i16; pre + 4 * 720];
            g.fill(&mut x[pre..]);
            assert_eq!(digits(&detect(&x, SampleRate::Hz8000)), "1122", "pre {pre}");
            // A 15 ms drop-out inside a 200 ms tone does not split it (Q.24: 10 ms).
            let (lo, hi) = DtmfDigit::D7.frequencies();
            let mut x = two_tone((lo, hi), (-10.0, -8.0), 1600, pre, 0);
            for v in &mut x[pre + 700..pre + 820] {
                *v = 0;
            }
            assert_eq!(
                digits(&detect(&x, SampleRate::Hz8000)),
                "7",
                "15 ms gap, pre {pre}"
            );
        }
    }

    #[test]
    fn white_noise_snr_15db() {
        let p = DtmfToneParams::default();
        let mut noise = Noise(0x1234_5678_9abc_def1);
        for d in DtmfDigit::ALL {
            let mut g = ToneGenerator::dtmf(d, &p, SampleRate::Hz8000);
            let mut x = vec![0i16; 1600];
            g.fill(&mut x);
            // Signal power of the on part (both tones), noise at −15 dB relative.
            let ps = crate::tone::dbm0_to_peak(p.low_dbm0).powi(2) / 2.0
                + crate::tone::dbm0_to_peak(p.high_dbm0).powi(2) / 2.0;
            let pn = ps / 10f32.powf(1.5);
            // Uniform in ±a has power a²/3.
            let a = (3.0 * pn).sqrt();
            for v in x.iter_mut() {
                *v = (f32::from(*v) + a * noise.next()).round() as i16;
            }
            let ev = detect(&x, SampleRate::Hz8000);
            assert_eq!(digits(&ev), d.to_char().to_string(), "{d:?}");
        }
        // Noise alone: nothing.
        let x: Vec<i16> = (0..80_000)
            .map(|_| (8000.0 * noise.next()) as i16)
            .collect();
        assert!(detect(&x, SampleRate::Hz8000).is_empty());
    }

    /// Local G.711 µ-law and A-law quantisers (sign, 3-bit segment, 4-bit mantissa;
    /// decode to the middle of the interval), so this test does not depend on the
    /// codec module.
    fn ulaw_roundtrip(x: i16) -> i16 {
        const BIAS: i32 = 0x84;
        let sign = x < 0;
        let mag = i32::from(x).abs().min(32635) + BIAS;
        let seg = (31 - (mag as u32).leading_zeros() as i32 - 7).clamp(0, 7);
        let mant = (mag >> (seg + 3)) & 0x0F;
        let t = (((mant << 3) + BIAS) << seg) - BIAS;
        let t = t as i16;
        if sign {
            -t
        } else {
            t
        }
    }

    fn alaw_roundtrip(x: i16) -> i16 {
        let sign = x < 0;
        let mag = (if sign {
            -(i32::from(x)) - 1
        } else {
            i32::from(x)
        }) >> 3;
        let (seg, mant) = if mag < 32 {
            (0, mag >> 1)
        } else {
            let seg = (31 - (mag as u32).leading_zeros() as i32 - 4).clamp(1, 7);
            (seg, (mag >> seg) & 0x0F)
        };
        let t = if seg == 0 {
            (mant << 4) + 8
        } else {
            ((mant << 4) + 0x108) << (seg - 1)
        };
        let t = t as i16;
        if sign {
            -t
        } else {
            t
        }
    }

    #[test]
    fn local_quantisers_are_sane() {
        for x in [-30000i16, -1000, -10, 0, 10, 1000, 30000] {
            for q in [ulaw_roundtrip(x), alaw_roundtrip(x)] {
                let err = (i32::from(q) - i32::from(x)).abs();
                assert!(err <= (i32::from(x).abs() / 16).max(16), "{x} -> {q}");
            }
        }
    }

    #[test]
    fn g711_round_trip() {
        let mut g = ToneGenerator::dtmf_sequence(
            &DtmfDigit::ALL,
            &DtmfToneParams::default(),
            SampleRate::Hz8000,
        );
        let mut x = vec![0i16; 16 * 1600];
        g.fill(&mut x);
        let u: Vec<i16> = x.iter().map(|&v| ulaw_roundtrip(v)).collect();
        let a: Vec<i16> = x.iter().map(|&v| alaw_roundtrip(v)).collect();
        assert_eq!(digits(&detect(&u, SampleRate::Hz8000)), "0123456789*#ABCD");
        assert_eq!(digits(&detect(&a, SampleRate::Hz8000)), "0123456789*#ABCD");
        // Quieter digits, where quantisation noise matters more.
        let p = DtmfToneParams {
            low_dbm0: -25.0,
            high_dbm0: -23.0,
            ..DtmfToneParams::default()
        };
        let mut g = ToneGenerator::dtmf_sequence(&DtmfDigit::ALL, &p, SampleRate::Hz8000);
        g.fill(&mut x);
        let u: Vec<i16> = x.iter().map(|&v| ulaw_roundtrip(v)).collect();
        assert_eq!(digits(&detect(&u, SampleRate::Hz8000)), "0123456789*#ABCD");
    }

    #[test]
    fn single_tones_and_call_progress_are_not_digits() {
        use crate::tone::ToneSet;
        for f in [697.0, 941.0, 1209.0, 1633.0, 1000.0] {
            let x = two_tone((f, 0.0), (-10.0, -200.0), 8000, 0, 0);
            assert!(detect(&x, SampleRate::Hz8000).is_empty(), "{f}");
        }
        for set in [ToneSet::ETSI, ToneSet::NORTH_AMERICA] {
            for &(t, _) in set.entries {
                let mut g = ToneGenerator::call_progress(&set, t, SampleRate::Hz8000).unwrap();
                let mut x = vec![0i16; 80_000];
                g.fill(&mut x);
                assert!(detect(&x, SampleRate::Hz8000).is_empty(), "{t:?}");
            }
        }
    }

    #[test]
    fn reset_restarts_counting() {
        let mut d = DtmfDetector::new(SampleRate::Hz8000);
        let mut g = ToneGenerator::dtmf(
            DtmfDigit::D3,
            &DtmfToneParams::default(),
            SampleRate::Hz8000,
        );
        let mut x = [0i16; 800];
        g.fill(&mut x);
        d.process(&x);
        assert_eq!(d.current_digit(), Some(DtmfDigit::D3));
        d.reset();
        assert_eq!(d.samples_processed(), 0);
        assert_eq!(d.current_digit(), None);
        assert_eq!(d.poll_event(), None);
    }
}
