//! Test audio for `mgw load`: a sine tone or a WAV file, encoded once per codec into a
//! loop of RTP payloads that every leg using that codec replays (so the sender thread only
//! copies bytes and its CPU use stays bounded), and a receive-side meter that decodes
//! what comes back.

use std::path::Path;

use mgw_media::codec::{AnyDecoder, AnyEncoder};
use mgw_media::codec::{CodecConfig, CodecKind, Decoder, Encoder};

/// Where the audio comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A sine of this frequency (Hz) at −10 dBov.
    Tone(f64),
    /// Mono 16-bit samples at `rate` (read from a WAV file).
    Pcm {
        /// Sample rate of `samples`.
        rate: u32,
        /// The samples.
        samples: Vec<i16>,
    },
}

/// Peak amplitude of the tone: −10 dBov.
const TONE_PEAK: f64 = 32767.0 * 0.316;
/// RMS (relative to full scale) below which a frame is silence: −50 dBov.
const SILENCE_RMS: f64 = 0.003_162;
/// Longest WAV replayed, in seconds (the loop repeats it).
const MAX_WAV_SECONDS: u32 = 60;

/// Reads a RIFF/WAVE file with 16-bit PCM samples (any rate, any channel count; the
/// channels are averaged).
pub(crate) fn read_wav(path: &Path) -> Result<Source, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_wav(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Parses WAV bytes (see [`read_wav`]).
pub(crate) fn parse_wav(b: &[u8]) -> Result<Source, String> {
    if b.get(0..4) != Some(b"RIFF") || b.get(8..12) != Some(b"WAVE") {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut at = 12usize;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while let (Some(id), Some(len)) = (b.get(at..at + 4), le32(b, at + 4)) {
        let body = at + 8;
        let end = body
            .checked_add(len as usize)
            .ok_or("chunk length overflows")?;
        match id {
            b"fmt " => {
                let f = (|| {
                    Some((
                        le16(b, body)?,
                        le16(b, body + 2)?,
                        le32(b, body + 4)?,
                        le16(b, body + 14)?,
                    ))
                })()
                .ok_or("short fmt chunk")?;
                fmt = Some(f);
            }
            b"data" => {
                let (format, channels, rate, bits) = fmt.ok_or("data chunk before fmt chunk")?;
                if !(format == 1 || format == 0xFFFE) || bits != 16 {
                    return Err(format!(
                        "only 16-bit PCM is supported (format {format}, {bits} bits)"
                    ));
                }
                if channels == 0 || !(1000..=192_000).contains(&rate) {
                    return Err(format!("bad channel count {channels} or rate {rate}"));
                }
                let data = b.get(body..end.min(b.len())).unwrap_or(&[]);
                let frame = 2 * usize::from(channels);
                let max = rate as usize * MAX_WAV_SECONDS as usize;
                let samples: Vec<i16> = data
                    .chunks_exact(frame)
                    .take(max)
                    .map(|f| {
                        let sum: i32 = f
                            .chunks_exact(2)
                            .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
                            .sum();
                        (sum / i32::from(channels)) as i16
                    })
                    .collect();
                if samples.is_empty() {
                    return Err("no samples".into());
                }
                return Ok(Source::Pcm { rate, samples });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = end
            .checked_add(len as usize & 1)
            .ok_or("chunk length overflows")?;
    }
    Err("no data chunk".into())
}

/// Linear-interpolation resampling (simple; good enough for test speech).
pub(crate) fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let n = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let step = f64::from(from) / f64::from(to);
    (0..n)
        .map(|i| {
            let x = i as f64 * step;
            let j = x as usize;
            let f = x - j as f64;
            let a = f64::from(input.get(j).copied().unwrap_or(0));
            let b = f64::from(input.get(j + 1).copied().unwrap_or(input[input.len() - 1]));
            (a + (b - a) * f).round() as i16
        })
        .collect()
}

/// A loop of encoded frames for one codec and packetisation.
#[derive(Debug)]
pub(crate) struct Frames {
    /// Payloads, replayed in order and then from the start.
    pub(crate) payloads: Vec<Vec<u8>>,
    /// RTP timestamp increment per frame.
    pub(crate) ts_step: u32,
}

/// Samples of `source` at `rate`: the tone for `seconds`, or the whole (resampled) file.
fn pcm_at(source: &Source, rate: u32, seconds: u32) -> Vec<i16> {
    match source {
        Source::Tone(f) => {
            let n = rate as usize * seconds as usize;
            let w = 2.0 * std::f64::consts::PI * f / f64::from(rate);
            (0..n)
                .map(|i| (TONE_PEAK * (w * i as f64).sin()).round() as i16)
                .collect()
        }
        Source::Pcm { rate: r, samples } => resample(samples, *r, rate),
    }
}

/// Encodes `source` with `kind` in frames of `ptime_ms`. The tone loop is 3 s (a whole
/// number of frames for every ptime that divides 3000 ms, and of periods for integer
/// frequencies); a file is padded with silence to whole frames.
pub(crate) fn encode_loop(
    kind: CodecKind,
    ptime_ms: u32,
    source: &Source,
) -> Result<Frames, String> {
    let cfg = CodecConfig::default();
    let mut enc =
        AnyEncoder::new(kind, &cfg).map_err(|e| format!("{}: {e}", kind.encoding_name()))?;
    let rate = enc.sample_rate();
    let frame = (rate * ptime_ms / 1000) as usize;
    if frame == 0 || 3000 % ptime_ms != 0 {
        return Err(format!("ptime {ptime_ms} ms does not divide 3000 ms"));
    }
    let mut pcm = pcm_at(source, rate, 3);
    let rem = pcm.len() % frame;
    if rem != 0 {
        pcm.resize(pcm.len() + frame - rem, 0);
    }
    let mut out = vec![0u8; enc.max_payload_len(frame)];
    let mut payloads = Vec::with_capacity(pcm.len() / frame);
    for chunk in pcm.chunks_exact(frame) {
        let n = enc
            .encode(chunk, &mut out)
            .map_err(|e| format!("{} at {ptime_ms} ms: {e}", kind.encoding_name()))?;
        payloads.push(out.get(..n).unwrap_or(&[]).to_vec());
    }
    Ok(Frames {
        payloads,
        ts_step: kind.rtp_ticks(frame as u32, rate),
    })
}

/// Decodes received payloads and measures level and, for a tone, how much of the energy
/// is at the tone's frequency (Goertzel): ≈1 when the tone comes back intact.
pub(crate) struct Meter {
    dec: AnyDecoder,
    tone_hz: Option<f64>,
    pcm: Vec<i16>,
    /// Frames decoded.
    pub(crate) frames: u64,
    /// Payloads the decoder rejected.
    pub(crate) errors: u64,
    energy: f64,
    samples: u64,
    tone_ratio_sum: f64,
    tone_frames: u64,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("frames", &self.frames)
            .finish()
    }
}

/// What a [`Meter`] found.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct AudioReport {
    /// Frames decoded.
    pub(crate) frames_decoded: u64,
    /// Payloads that failed to decode.
    pub(crate) decode_errors: u64,
    /// RMS level of everything decoded, dBov (−100 for silence).
    pub(crate) level_dbov: f64,
    /// Mean fraction of each frame's energy at the tone frequency, over frames above
    /// −50 dBov (tone mode only).
    pub(crate) tone_ratio: Option<f64>,
}

impl Meter {
    /// A meter decoding `kind`.
    pub(crate) fn new(kind: CodecKind, tone_hz: Option<f64>) -> Result<Self, String> {
        let dec = AnyDecoder::new(kind, &CodecConfig::default())
            .map_err(|e| format!("{}: {e}", kind.encoding_name()))?;
        Ok(Meter {
            dec,
            tone_hz,
            pcm: vec![0; 5760],
            frames: 0,
            errors: 0,
            energy: 0.0,
            samples: 0,
            tone_ratio_sum: 0.0,
            tone_frames: 0,
        })
    }

    /// Decodes and measures one payload.
    pub(crate) fn feed(&mut self, payload: &[u8]) {
        let n = match self.dec.decode(payload, &mut self.pcm) {
            Ok(n) => n.min(self.pcm.len()),
            Err(_) => {
                self.errors += 1;
                return;
            }
        };
        self.frames += 1;
        let x = &self.pcm[..n];
        let e: f64 = x.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        self.energy += e;
        self.samples += n as u64;
        // Frames below −50 dBov (silence a gateway fills gaps with) do not count.
        let loud = n > 0 && e / n as f64 > (32768.0 * SILENCE_RMS) * (32768.0 * SILENCE_RMS);
        if let (Some(f), true) = (self.tone_hz, loud) {
            let w = 2.0 * std::f64::consts::PI * f / f64::from(self.dec.sample_rate());
            let coeff = 2.0 * w.cos();
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for &v in x {
                let s0 = f64::from(v) + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
            self.tone_ratio_sum += (2.0 * power / (n as f64 * e)).min(1.5);
            self.tone_frames += 1;
        }
    }

    /// The findings so far.
    pub(crate) fn report(&self) -> AudioReport {
        let level = if self.samples == 0 || self.energy <= 0.0 {
            -100.0
        } else {
            let rms = (self.energy / self.samples as f64).sqrt();
            20.0 * (rms / 32768.0).log10()
        };
        AudioReport {
            frames_decoded: self.frames,
            decode_errors: self.errors,
            level_dbov: level,
            tone_ratio: (self.tone_frames > 0)
                .then(|| self.tone_ratio_sum / self.tone_frames as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let data_len = (samples.len() * 2) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data_len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        v.extend_from_slice(&(2 * channels).to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"LIST");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(b"abc\0");
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v
    }

    #[test]
    fn wav_parse_and_mixdown() {
        let Source::Pcm { rate, samples } =
            parse_wav(&wav(16000, 2, &[100, 300, -10, -30])).unwrap()
        else {
            panic!("not pcm")
        };
        assert_eq!((rate, samples), (16000, vec![200, -20]));
        assert!(parse_wav(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(parse_wav(b"junk").is_err());
        let mut bad = wav(8000, 1, &[1, 2]);
        bad[20] = 3; // float format
        assert!(parse_wav(&bad).is_err());
        // Truncated data is read as far as it goes; a huge chunk length does not panic.
        let mut t = wav(8000, 1, &[1, 2, 3]);
        t.truncate(t.len() - 2);
        assert!(parse_wav(&t).is_ok());
        let mut h = wav(8000, 1, &[1]);
        let n = h.len();
        h[n - 6..n - 2].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_wav(&h).is_ok());
    }

    #[test]
    fn resample_lengths() {
        let x: Vec<i16> = (0..160).map(|i| i * 10).collect();
        assert_eq!(resample(&x, 8000, 16000).len(), 320);
        let y = resample(&x, 16000, 8000);
        assert_eq!(y.len(), 80);
        assert_eq!(y[1], 20);
        assert_eq!(resample(&x, 8000, 8000), x);
    }

    #[test]
    fn tone_loops_decode_back_to_the_tone() {
        for (kind, ptime, step) in [
            (CodecKind::Pcmu, 20, 160),
            (CodecKind::Pcma, 30, 240),
            (CodecKind::Opus, 20, 960),
            (CodecKind::G722, 20, 160),
        ] {
            let f = encode_loop(kind, ptime, &Source::Tone(1000.0)).unwrap();
            assert_eq!(f.ts_step, step, "{kind:?}");
            assert_eq!(f.payloads.len() as u32, 3000 / ptime);
            let mut m = Meter::new(kind, Some(1000.0)).unwrap();
            for p in &f.payloads {
                m.feed(p);
            }
            let r = m.report();
            assert_eq!(r.decode_errors, 0);
            assert!(
                (r.level_dbov + 13.0).abs() < 1.5,
                "{kind:?} {}",
                r.level_dbov
            );
            assert!(r.tone_ratio.unwrap() > 0.8, "{kind:?} {:?}", r.tone_ratio);
        }
        assert!(encode_loop(CodecKind::Pcmu, 70, &Source::Tone(1000.0)).is_err());
        let m = Meter::new(CodecKind::Opus, None).unwrap();
        assert_eq!(m.report().level_dbov, -100.0);
    }

    #[test]
    fn wav_source_encodes() {
        let src = Source::Pcm {
            rate: 16000,
            samples: (0..16000).map(|i| ((i % 50) * 100) as i16).collect(),
        };
        let f = encode_loop(CodecKind::Pcma, 20, &src).unwrap();
        assert_eq!(f.payloads.len(), 50);
    }
}
