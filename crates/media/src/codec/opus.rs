//! Opus (RFC 6716) in RTP (RFC 7587) through libopus (`opus` crate, bundled libopus).
//!
//! SDP always names `opus/48000/2` and the RTP clock is 48 kHz, but encoder and decoder run
//! mono at the rate the path needs — 8 kHz (narrowband) for a TDM path, 16 kHz (wideband) for
//! a 16 kHz path — so nothing is resampled through 48 kHz. A mono decoder accepts stereo
//! packets (libopus downmixes), as RFC 7587 §3.4 requires of receivers.
//!
//! Frames: 2.5, 5, 10, 20, 40 or 60 ms of audio per [`Encoder::encode`] call.
//! Loss: [`Decoder::conceal`] runs libopus PLC; [`Decoder::decode_fec`] recovers the lost
//! frame from the in-band FEC (LBRR) data in the packet after it, when the sender enabled FEC
//! (`CodecConfig::opus_fec`, fmtp `useinbandfec=1`), and falls back to PLC otherwise.

use opus::{Application, Bitrate, Channels, ErrorCode};

use super::{CodecConfig, CodecError, CodecKind, Decoder, Encoder};

/// Largest Opus packet libopus emits for one frame (RFC 6716 §3.2.1: 1275 bytes per frame,
/// up to three 20 ms frames in a 60 ms packet, plus framing).
pub const MAX_PACKET: usize = 4000;
/// Largest PCM frame, 120 ms at 48 kHz (the longest packet duration RFC 6716 allows).
const MAX_FRAME: usize = 5760;
/// Payloads longer than this are rejected before reaching libopus.
const MAX_PAYLOAD: usize = 16 * 1024;

fn map_err(e: opus::Error) -> CodecError {
    match e.code() {
        ErrorCode::InvalidPacket => CodecError::MalformedPayload,
        ErrorCode::BufferTooSmall => CodecError::OutputTooSmall { needed: MAX_PACKET },
        code => CodecError::Opus(code as i32),
    }
}

fn check_rate(rate: u32) -> Result<u32, CodecError> {
    match rate {
        8000 | 12000 | 16000 | 24000 | 48000 => Ok(rate),
        _ => Err(CodecError::InvalidConfig),
    }
}

/// Whether `samples` is an Opus frame duration (2.5/5/10/20/40/60 ms) at `rate`.
fn valid_frame(rate: u32, samples: usize) -> bool {
    // samples / rate in units of 2.5 ms = samples * 400 / rate.
    let units = samples as u64 * 400;
    units % u64::from(rate) == 0 && matches!(units / u64::from(rate), 1 | 2 | 4 | 8 | 16 | 24)
}

/// Opus encoder (mono, VoIP application).
pub struct OpusEncoder {
    inner: opus::Encoder,
    rate: u32,
    config: CodecConfig,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("rate", &self.rate)
            .field("config", &self.config)
            .finish()
    }
}

impl OpusEncoder {
    /// A new encoder at `config.opus_rate` with the configured complexity, bitrate, FEC,
    /// DTX and expected loss. Out-of-range values give [`CodecError::InvalidConfig`].
    pub fn new(config: &CodecConfig) -> Result<Self, CodecError> {
        let rate = check_rate(config.opus_rate)?;
        if config.opus_complexity > 10
            || !(6000..=510_000).contains(&config.opus_bitrate)
            || config.opus_packet_loss_perc > 100
        {
            return Err(CodecError::InvalidConfig);
        }
        let inner = opus::Encoder::new(rate, Channels::Mono, Application::Voip).map_err(map_err)?;
        let mut enc = Self {
            inner,
            rate,
            config: *config,
        };
        enc.apply()?;
        Ok(enc)
    }

    fn apply(&mut self) -> Result<(), CodecError> {
        let c = self.config;
        self.inner
            .set_complexity(i32::from(c.opus_complexity))
            .map_err(map_err)?;
        // Checked range 6000..=510000 in `new`, so the cast cannot wrap.
        self.inner
            .set_bitrate(Bitrate::Bits(c.opus_bitrate as i32))
            .map_err(map_err)?;
        self.inner.set_inband_fec(c.opus_fec).map_err(map_err)?;
        self.inner
            .set_packet_loss_perc(i32::from(c.opus_packet_loss_perc))
            .map_err(map_err)?;
        self.inner.set_dtx(c.opus_dtx).map_err(map_err)?;
        Ok(())
    }

    /// Changes the expected loss (e.g. from RTCP receiver reports) without a new encoder.
    pub fn set_packet_loss_perc(&mut self, percent: u8) -> Result<(), CodecError> {
        if percent > 100 {
            return Err(CodecError::InvalidConfig);
        }
        self.config.opus_packet_loss_perc = percent;
        self.inner
            .set_packet_loss_perc(i32::from(percent))
            .map_err(map_err)
    }

    /// Changes the target bitrate (6000..=510000 bit/s).
    pub fn set_bitrate(&mut self, bits_per_second: u32) -> Result<(), CodecError> {
        if !(6000..=510_000).contains(&bits_per_second) {
            return Err(CodecError::InvalidConfig);
        }
        self.config.opus_bitrate = bits_per_second;
        // Range checked above: fits in i32.
        self.inner
            .set_bitrate(Bitrate::Bits(bits_per_second as i32))
            .map_err(map_err)
    }

    /// Encoder look-ahead in samples at the encoder rate (part of the codec delay).
    pub fn lookahead(&mut self) -> Result<usize, CodecError> {
        let l = self.inner.get_lookahead().map_err(map_err)?;
        Ok(usize::try_from(l).unwrap_or(0))
    }
}

impl Encoder for OpusEncoder {
    fn kind(&self) -> CodecKind {
        CodecKind::Opus
    }
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if !valid_frame(self.rate, pcm.len()) {
            return Err(CodecError::FrameSize { samples: pcm.len() });
        }
        // libopus cannot produce a packet in fewer than 2 bytes' room (TOC + DTX/empty frame).
        if out.len() < 2 {
            return Err(CodecError::OutputTooSmall { needed: MAX_PACKET });
        }
        let cap = out.len().min(MAX_PACKET);
        self.inner.encode(pcm, &mut out[..cap]).map_err(map_err)
    }
    fn max_payload_len(&self, _samples: usize) -> usize {
        MAX_PACKET
    }
    fn reset(&mut self) {
        // Reset only fails on a freed encoder, which the owned handle rules out.
        let _ = self.inner.reset_state();
    }
}

/// Opus decoder (mono) with libopus packet-loss concealment and in-band FEC.
pub struct OpusDecoder {
    inner: opus::Decoder,
    rate: u32,
    last_frame: usize,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("rate", &self.rate)
            .field("last_frame", &self.last_frame)
            .finish()
    }
}

impl OpusDecoder {
    /// A new mono decoder producing audio at `rate` (8000, 12000, 16000, 24000 or 48000).
    pub fn new(rate: u32) -> Result<Self, CodecError> {
        let rate = check_rate(rate)?;
        let inner = opus::Decoder::new(rate, Channels::Mono).map_err(map_err)?;
        Ok(Self {
            inner,
            rate,
            last_frame: rate as usize / 50,
        })
    }

    /// Output slice for a concealed/FEC frame of `last_frame` samples.
    fn frame_out<'a>(&self, out: &'a mut [i16]) -> Result<&'a mut [i16], CodecError> {
        let n = self.last_frame;
        out.get_mut(..n)
            .ok_or(CodecError::OutputTooSmall { needed: n })
    }
}

impl Decoder for OpusDecoder {
    fn kind(&self) -> CodecKind {
        CodecKind::Opus
    }
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let n = self.samples_in(payload)?;
        let dst = out
            .get_mut(..n)
            .ok_or(CodecError::OutputTooSmall { needed: n })?;
        let got = self.inner.decode(payload, dst, false).map_err(map_err)?;
        if got > 0 {
            self.last_frame = got;
        }
        Ok(got)
    }
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        // An empty payload would mean "lost" to libopus; loss goes through `conceal`.
        if payload.is_empty() || payload.len() > MAX_PAYLOAD {
            return Err(CodecError::MalformedPayload);
        }
        let n = opus::packet::get_nb_samples(payload, self.rate)
            .map_err(|_| CodecError::MalformedPayload)?;
        if n == 0 || n > MAX_FRAME {
            return Err(CodecError::MalformedPayload);
        }
        Ok(n)
    }
    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        let dst = self.frame_out(out)?;
        self.inner.decode(&[], dst, false).map_err(map_err)
    }
    fn decode_fec(&mut self, next_payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        if next_payload.is_empty() || next_payload.len() > MAX_PAYLOAD {
            return self.conceal(out);
        }
        let dst = self.frame_out(out)?;
        self.inner.decode(next_payload, dst, true).map_err(map_err)
    }
    fn has_native_plc(&self) -> bool {
        true
    }
    fn reset(&mut self) {
        // Reset only fails on a freed decoder, which the owned handle rules out.
        let _ = self.inner.reset_state();
        self.last_frame = self.rate as usize / 50;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn cfg(rate: u32) -> CodecConfig {
        CodecConfig {
            opus_rate: rate,
            ..Default::default()
        }
    }

    #[test]
    fn frame_sizes() {
        assert!(valid_frame(8000, 160));
        assert!(valid_frame(8000, 20));
        assert!(valid_frame(8000, 480));
        assert!(!valid_frame(8000, 161));
        assert!(!valid_frame(8000, 0));
        assert!(!valid_frame(8000, 640), "80 ms is not one Opus frame");
        assert!(valid_frame(48000, 960));
        let mut e = OpusEncoder::new(&cfg(8000)).unwrap();
        let mut out = [0u8; MAX_PACKET];
        assert_eq!(
            e.encode(&[0; 150], &mut out),
            Err(CodecError::FrameSize { samples: 150 })
        );
        assert_eq!(
            e.encode(&[0; 320], &mut out).map(|n| n > 0),
            Ok(true),
            "40 ms"
        );
        assert_eq!(
            e.encode(&[0; 160], &mut out[..1]),
            Err(CodecError::OutputTooSmall { needed: MAX_PACKET })
        );
    }

    #[test]
    fn config_errors() {
        let bad = [
            CodecConfig {
                opus_rate: 44100,
                ..Default::default()
            },
            CodecConfig {
                opus_complexity: 11,
                ..Default::default()
            },
            CodecConfig {
                opus_bitrate: 1000,
                ..Default::default()
            },
            CodecConfig {
                opus_packet_loss_perc: 101,
                ..Default::default()
            },
        ];
        for c in bad {
            assert_eq!(
                OpusEncoder::new(&c).err(),
                Some(CodecError::InvalidConfig),
                "{c:?}"
            );
        }
        assert_eq!(
            OpusDecoder::new(11025).err(),
            Some(CodecError::InvalidConfig)
        );
        let mut e = OpusEncoder::new(&cfg(16000)).unwrap();
        assert_eq!(e.set_bitrate(100), Err(CodecError::InvalidConfig));
        assert_eq!(e.set_bitrate(16000), Ok(()));
        assert_eq!(e.set_packet_loss_perc(200), Err(CodecError::InvalidConfig));
        assert_eq!(e.set_packet_loss_perc(10), Ok(()));
        assert!(e.lookahead().unwrap() > 0);
    }

    #[test]
    fn malformed_payloads_do_not_panic() {
        let mut d = OpusDecoder::new(8000).unwrap();
        let mut out = [0i16; MAX_FRAME];
        assert_eq!(d.decode(&[], &mut out), Err(CodecError::MalformedPayload));
        // Code 3 packet (TOC 0x03) with a frame count byte of 0: invalid.
        assert_eq!(
            d.decode(&[0x03, 0x00], &mut out),
            Err(CodecError::MalformedPayload)
        );
        // Every one-byte and a sample of two-byte payloads: errors or audio, never a panic.
        for a in 0..=255u8 {
            let _ = d.decode(&[a], &mut out);
            let _ = d.decode(&[a, a.wrapping_mul(37)], &mut out);
            let _ = d.decode(&[a, 0xFF, 0xFF, 0x00, 0x12], &mut out[..40]);
        }
        // A 20 ms packet does not fit in 10 ms of output.
        let mut e = OpusEncoder::new(&cfg(8000)).unwrap();
        let mut pkt = [0u8; MAX_PACKET];
        let n = e.encode(&[0; 160], &mut pkt).unwrap();
        assert_eq!(
            d.decode(&pkt[..n], &mut out[..80]),
            Err(CodecError::OutputTooSmall { needed: 160 })
        );
    }

    #[test]
    fn dtx_sends_tiny_payloads_in_silence() {
        let mut e = OpusEncoder::new(&CodecConfig {
            opus_dtx: true,
            ..cfg(8000)
        })
        .unwrap();
        let mut out = [0u8; MAX_PACKET];
        let sizes: Vec<usize> = (0..50)
            .map(|_| e.encode(&[0; 160], &mut out).unwrap())
            .collect();
        assert!(
            sizes[10..].iter().filter(|&&n| n <= 2).count() > 30,
            "{sizes:?}"
        );
        let mut e = OpusEncoder::new(&cfg(8000)).unwrap();
        let n = (0..50)
            .map(|_| e.encode(&[0; 160], &mut out).unwrap())
            .min();
        assert!(n > Some(2), "without DTX every frame is coded");
    }

    #[test]
    fn decoder_at_8k_takes_48k_stereo_packets() {
        let mut enc = opus::Encoder::new(48000, Channels::Stereo, Application::Audio).unwrap();
        let pcm = vec![1000i16; 960 * 2];
        let mut pkt = [0u8; MAX_PACKET];
        let n = enc.encode(&pcm, &mut pkt).unwrap();
        let mut d = OpusDecoder::new(8000).unwrap();
        let mut out = [0i16; 160];
        assert_eq!(d.decode(&pkt[..n], &mut out), Ok(160));
    }

    /// Encodes 1 s of a 1 kHz sine, loses frame `lost`, and returns (all decoded audio,
    /// the energy of the concealed frame relative to the original's).
    fn lose_one(fec: bool, lost: usize) -> (Vec<i16>, f64) {
        let c = CodecConfig {
            opus_fec: fec,
            opus_packet_loss_perc: if fec { 20 } else { 0 },
            ..cfg(8000)
        };
        let mut e = OpusEncoder::new(&c).unwrap();
        let mut d = OpusDecoder::new(8000).unwrap();
        let input = sine(8000, 1000.0, 8000.0, 160 * 50);
        let packets: Vec<Vec<u8>> = input
            .chunks(160)
            .map(|f| {
                let mut p = vec![0u8; MAX_PACKET];
                let n = e.encode(f, &mut p).unwrap();
                p.truncate(n);
                p
            })
            .collect();
        let mut out = Vec::new();
        let mut frame = [0i16; 160];
        let mut concealed_energy = 0.0;
        for (i, p) in packets.iter().enumerate() {
            let n = if i == lost {
                let n = if fec {
                    d.decode_fec(&packets[i + 1], &mut frame).unwrap()
                } else {
                    d.conceal(&mut frame).unwrap()
                };
                concealed_energy = frame[..n]
                    .iter()
                    .map(|&s| f64::from(s).powi(2))
                    .sum::<f64>();
                n
            } else {
                d.decode(p, &mut frame).unwrap()
            };
            assert_eq!(n, 160);
            out.extend_from_slice(&frame[..n]);
        }
        let orig: f64 = input[lost * 160..(lost + 1) * 160]
            .iter()
            .map(|&s| f64::from(s).powi(2))
            .sum();
        (out, concealed_energy / orig)
    }

    #[test]
    fn plc_produces_audio_for_a_lost_frame() {
        let (_, ratio) = lose_one(false, 25);
        println!("Opus PLC energy ratio {ratio:.2}");
        assert!(ratio > 0.1, "PLC frame is near silent: {ratio}");
    }

    #[test]
    fn fec_recovers_a_lost_frame() {
        let (out, ratio) = lose_one(true, 25);
        println!("Opus FEC energy ratio {ratio:.2}");
        assert!(ratio > 0.25, "FEC frame is near silent: {ratio}");
        // The recovered frame resembles the neighbouring decoded audio, not noise.
        let input = sine(8000, 1000.0, 8000.0, 160 * 50);
        let (lag, snr) = best_snr(&input, &out, 160, 800);
        println!("Opus with one FEC frame: lag {lag} SNR {snr:.1} dB");
        assert!(snr > 5.0);
    }
}
