//! DTMF talk-off and talk-down against real (synthesised) speech.
//!
//! Speech is generated at test time with `espeak-ng` (several voices, speeds and
//! pitches, lots of spoken numbers) and resampled to 8 kHz and 16 kHz mono 16-bit with
//! `sox`, into a temporary directory. Nothing is committed.
//!
//! * Talk-off: over more than 60 s of speech, at its natural level and normalised to
//!   near full scale, the detector must report no digit at all.
//! * Talk-down: DTMF digits mixed into the same speech must all be found, in order.
//!
//! Both tools are required: when one is missing the test fails and says how to
//! install it (Debian/Ubuntu: `apt-get install espeak-ng sox`).

use std::path::{Path, PathBuf};
use std::process::Command;

use mgw_media::dtmf::{DtmfDetector, DtmfDigit, DtmfEvent};
use mgw_media::tone::{power_to_dbm0, DtmfToneParams, SampleRate, ToneGenerator};

const TEXTS: &[&str] = &[
    "Hello, this is the operator. Please dial one, two, three, four, five, six, seven, \
     eight, nine, zero. Your account number is four four seven nine two one eight.",
    "The meeting moved to room three hundred and twelve, at half past nine on Tuesday \
     the twenty-third. Bring the quarterly figures: eleven million, four hundred thousand.",
    "Call me back on oh two oh, seven nine four six, one three eight eight, or press \
     star, then hash, to return to the main menu. Thank you for calling.",
    "She sells sea shells by the sea shore. Oooh, eeeh, aaah. Whistling wind, weeping \
     willows, and a very, very long vowel: eeeeeeeeeeeeeeee.",
    "Flight six seven two to Amsterdam departs from gate fifty-five at eighteen forty. \
     Passengers in rows one to nineteen may now board. Final call, final call.",
    "Nine hundred ninety nine thousand, nine hundred and ninety nine. Zero point \
     seven five. Sixteen, seventeen, eighteen, nineteen, twenty, thirty, forty, fifty.",
];

/// (voice, words per minute, pitch 0–99)
const VOICES: &[(&str, u32, u32)] = &[
    ("en-us", 160, 50),
    ("en-us+f3", 170, 70),
    ("en-gb", 150, 40),
    ("en-gb-scotland+m3", 140, 30),
    ("en-029+f4", 180, 85),
    ("en-gb-x-rp+f2", 130, 60),
];

fn require(tool: &str, probe_arg: &str) {
    let ok = Command::new(tool)
        .arg(probe_arg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the DTMF talk-off test needs `{tool}`, which is not installed or does not run.\n\
         Install it with: sudo apt-get install -y espeak-ng sox\n\
         (Debian/Ubuntu packages `espeak-ng` and `sox`; CI installs both.)"
    );
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("mgw-talkoff-{}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Speaks `text` and returns it as mono 16-bit PCM at `rate`.
fn speak(
    dir: &Path,
    idx: usize,
    voice: &str,
    wpm: u32,
    pitch: u32,
    text: &str,
    rate: u32,
) -> Vec<i16> {
    let wav = dir.join(format!("s{idx}.wav"));
    let raw = dir.join(format!("s{idx}-{rate}.raw"));
    let st = Command::new("espeak-ng")
        .args([
            "-v",
            voice,
            "-s",
            &wpm.to_string(),
            "-p",
            &pitch.to_string(),
            "-w",
        ])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("run espeak-ng");
    assert!(st.success(), "espeak-ng failed for voice {voice}");
    let st = Command::new("sox")
        .arg("-G")
        .arg(&wav)
        .args([
            "-r",
            &rate.to_string(),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            "-t",
            "raw",
        ])
        .arg(&raw)
        .status()
        .expect("run sox");
    assert!(st.success(), "sox failed");
    let bytes = std::fs::read(&raw).expect("read raw");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// All voices × all texts, concatenated, at `rate`.
fn corpus(dir: &Path, rate: u32) -> Vec<i16> {
    let mut all = Vec::new();
    let mut idx = 0;
    for &(voice, wpm, pitch) in VOICES {
        for text in TEXTS {
            all.extend(speak(dir, idx, voice, wpm, pitch, text, rate));
            idx += 1;
        }
    }
    all
}

fn run(det: &mut DtmfDetector, x: &[i16], frame: usize) -> Vec<DtmfEvent> {
    let mut ev = Vec::new();
    for f in x.chunks(frame) {
        det.process(f);
        while let Some(e) = det.poll_event() {
            ev.push(e);
        }
    }
    det.process(&vec![0; 4000]);
    while let Some(e) = det.poll_event() {
        ev.push(e);
    }
    ev
}

fn starts(ev: &[DtmfEvent]) -> Vec<(DtmfDigit, u64)> {
    ev.iter()
        .filter_map(|e| match *e {
            DtmfEvent::DigitStart { digit, sample } => Some((digit, sample)),
            _ => None,
        })
        .collect()
}

fn scaled(x: &[i16], gain: f32) -> Vec<i16> {
    x.iter()
        .map(|&v| (f32::from(v) * gain).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Mean power of the active (non-silent) 20 ms frames, in dBm0.
fn active_level_dbm0(x: &[i16]) -> f32 {
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for f in x.chunks(160) {
        let p = f.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / f.len() as f64;
        if p > 1e4 {
            sum += p;
            n += 1;
        }
    }
    power_to_dbm0((sum / n.max(1) as f64) as f32)
}

#[test]
fn talk_off_and_talk_down() {
    require("espeak-ng", "--version");
    require("sox", "--version");
    let dir = TempDir::new();

    let s8 = corpus(&dir.0, 8000);
    let secs = s8.len() as f64 / 8000.0;
    assert!(secs >= 60.0, "only {secs:.1} s of speech generated");
    let peak = s8
        .iter()
        .map(|&v| i32::from(v).abs())
        .max()
        .unwrap_or(1)
        .max(1);
    let level = active_level_dbm0(&s8);
    eprintln!("talk-off: {secs:.1} s of speech, peak {peak}, active level {level:.1} dBm0");

    // Talk-off at the natural level, normalised to −1 dBFS peak, and 12 dB quieter.
    let norm = 29_000.0 / peak as f32;
    for (name, gain) in [("natural", 1.0), ("normalised", norm), ("-12 dB", 0.25)] {
        let x = scaled(&s8, gain);
        for frame in [160, 80] {
            let ev = run(&mut DtmfDetector::new(SampleRate::Hz8000), &x, frame);
            let found = starts(&ev);
            assert!(
                found.is_empty(),
                "talk-off ({name}, 8 kHz, {frame}-sample frames): {} false digits: {found:?}",
                found.len()
            );
        }
    }

    // The same speech at 16 kHz through the wideband detector.
    let s16 = corpus(&dir.0, 16000);
    let ev = run(&mut DtmfDetector::new(SampleRate::Hz16000), &s16, 320);
    let found = starts(&ev);
    assert!(found.is_empty(), "talk-off (16 kHz): {found:?}");

    // Talk-down: digits at −10/−8 dBm0 (−5.9 dBm0 together), 80 ms on, one every
    // 0.75 s, laid over the speech wherever it falls. Speech levels are the power of
    // active speech; the minimum detection rate is required at each.
    for (speech_dbm0, min_rate) in [(-23.0f32, 1.0f64), (-20.0, 0.99), (-17.0, 0.95)] {
        let (sent, found, missed) = talk_down(&s8, level, speech_dbm0);
        let rate = 1.0 - missed.len() as f64 / sent.len() as f64;
        eprintln!(
            "talk-down at speech {speech_dbm0} dBm0: {} sent, {} detected, {} missed",
            sent.len(),
            found.len(),
            missed.len()
        );
        assert!(sent.len() >= 80, "too few digits mixed in");
        assert!(
            rate >= min_rate,
            "talk-down at speech {speech_dbm0} dBm0: {:.1} % found, need {:.1} %; missed {missed:?}",
            rate * 100.0,
            min_rate * 100.0
        );
        // Every detection must be one of the digits sent, near where it was sent.
        for (d, t) in &found {
            assert!(
                sent.iter().any(|(sd, st)| sd == d && st.abs_diff(*t) < 400),
                "talk-down at speech {speech_dbm0} dBm0: spurious {d:?} at {t}"
            );
        }
    }
}

type Hits = Vec<(DtmfDigit, u64)>;

fn talk_down(s8: &[i16], level: f32, speech_dbm0: f32) -> (Hits, Hits, Hits) {
    let gain = 10f32.powf((speech_dbm0 - level) / 20.0);
    let mut x = scaled(s8, gain);
    let p = DtmfToneParams {
        on_ms: 80,
        off_ms: 0,
        ..DtmfToneParams::default()
    };
    let mut sent = Vec::new();
    let mut at = 4000usize;
    let mut k = 0usize;
    while at + 640 < x.len() {
        let d = DtmfDigit::ALL[k % 16];
        let mut g = ToneGenerator::dtmf(d, &p, SampleRate::Hz8000);
        g.mix(&mut x[at..at + 640]);
        sent.push((d, at as u64));
        at += 6000;
        k += 1;
    }
    let ev = run(&mut DtmfDetector::new(SampleRate::Hz8000), &x, 160);
    let found = starts(&ev);
    let missed = sent
        .iter()
        .copied()
        .filter(|(d, t)| {
            !found
                .iter()
                .any(|(fd, ft)| fd == d && ft.abs_diff(*t) < 400)
        })
        .collect();
    (sent, found, missed)
}
