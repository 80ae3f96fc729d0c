//! Voice codecs behind one interface: G.711 A-law/µ-law, L16, G.722 and Opus.
//!
//! The gateway transcodes between a TDM channel (8 kHz linear, A-law or µ-law) and each IP
//! connection's negotiated codec. Per connection the dataplane holds a [`Codec`] — an
//! [`AnyEncoder`] and an [`AnyDecoder`], plain enums (no boxing, no allocation per frame) that
//! implement the [`Encoder`] and [`Decoder`] traits. Build one from what SDP negotiated:
//!
//! ```
//! use mgw_media::codec::{Codec, CodecConfig, CodecKind, Decoder, Encoder};
//! let kind = CodecKind::from_rtpmap("PCMA/8000").unwrap();
//! let mut codec = Codec::new(kind, &CodecConfig::default()).unwrap();
//! let pcm = [0i16; 160]; // 20 ms at codec.encoder.sample_rate() = 8000
//! let mut payload = [0u8; 160];
//! let n = codec.encoder.encode(&pcm, &mut payload).unwrap();
//! let mut back = [0i16; 160];
//! assert_eq!(codec.decoder.decode(&payload[..n], &mut back).unwrap(), 160);
//! ```
//!
//! ## Rates
//! Each codec runs at its *audio rate* ([`Encoder::sample_rate`]), which is not always the
//! RTP clock rate SDP names ([`CodecKind::rtp_clock_rate`]):
//! - PCMU/PCMA/L16-8k: 8 kHz audio, 8 kHz clock.
//! - L16/16000: 16 kHz audio, 16 kHz clock. Big-endian 16-bit samples (RFC 3551 §4.5.11).
//! - G.722: **16 kHz audio but an 8 kHz RTP clock** (RFC 3551 §4.5.2, kept for historical
//!   reasons): 20 ms is 320 samples, 160 payload bytes, and advances the timestamp by 160.
//! - Opus: SDP always says `opus/48000/2` and the RTP clock is 48 kHz (RFC 7587), but the
//!   encoder and decoder run at the rate the path needs ([`CodecConfig::opus_rate`], 8 kHz by
//!   default for a TDM path) with no resampling; one 20 ms frame at 8 kHz is 160 samples and
//!   advances the timestamp by 960. Use [`CodecKind::rtp_ticks`] for the conversion.
//!
//! The TDM side is 8 kHz, so the 16 kHz codecs need the 2:1 / 1:2 converters in
//! [`resample`].
//!
//! ## Loss
//! [`Decoder::conceal`] produces one frame for a lost packet. Opus has real concealment and
//! in-band FEC ([`Decoder::decode_fec`]); for the others ([`Decoder::has_native_plc`] is
//! false) `conceal` returns silence, and the dataplane should use the `plc` module instead.

pub mod g711;
mod g722;
mod l16;
mod opus;
pub mod resample;

pub use self::g711::{G711Decoder, G711Encoder, G711Law};
pub use self::g722::{G722Decoder, G722Encoder};
pub use self::l16::{L16Decoder, L16Encoder};
pub use self::opus::{OpusDecoder, OpusEncoder, MAX_PACKET as OPUS_MAX_PACKET};

/// Errors from codec construction, encoding and decoding. Small and `Copy` for the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The codec name, clock rate or channel count is not supported (MGCP maps this to 534).
    #[error("unsupported codec")]
    Unsupported,
    /// A configuration value is out of range (e.g. Opus complexity 11, rate 44100).
    #[error("invalid codec configuration")]
    InvalidConfig,
    /// The PCM frame length is not one this codec can encode.
    #[error("invalid frame size of {samples} samples")]
    FrameSize {
        /// Samples offered.
        samples: usize,
    },
    /// The output buffer is too small; `needed` elements would fit.
    #[error("output buffer too small, {needed} needed")]
    OutputTooSmall {
        /// Elements (bytes or samples) needed.
        needed: usize,
    },
    /// The payload is malformed for this codec.
    #[error("malformed payload")]
    MalformedPayload,
    /// libopus reported an error (its negative error code).
    #[error("opus error {0}")]
    Opus(i32),
}

/// A codec as negotiated, independent of payload-type numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// G.711 µ-law, `PCMU/8000`.
    Pcmu,
    /// G.711 A-law, `PCMA/8000`.
    Pcma,
    /// Linear 16-bit big-endian, `L16/8000` or `L16/16000` (mono).
    L16 {
        /// Sample rate and RTP clock: 8000 or 16000.
        rate: u32,
    },
    /// G.722 at 64 kbit/s, `G722/8000` (16 kHz audio).
    G722,
    /// Opus, `opus/48000/2`.
    Opus,
}

impl CodecKind {
    /// Looks up a codec by its SDP `rtpmap` encoding name (case-insensitive), clock rate and
    /// optional channel count. Returns [`CodecError::Unsupported`] for anything else.
    pub fn from_sdp(
        name: &str,
        clock_rate: u32,
        channels: Option<u16>,
    ) -> Result<Self, CodecError> {
        let mono = matches!(channels, None | Some(1));
        let kind = if name.eq_ignore_ascii_case("PCMU") && clock_rate == 8000 && mono {
            CodecKind::Pcmu
        } else if name.eq_ignore_ascii_case("PCMA") && clock_rate == 8000 && mono {
            CodecKind::Pcma
        } else if name.eq_ignore_ascii_case("L16") && matches!(clock_rate, 8000 | 16000) && mono {
            CodecKind::L16 { rate: clock_rate }
        } else if name.eq_ignore_ascii_case("G722") && clock_rate == 8000 && mono {
            CodecKind::G722
        } else if name.eq_ignore_ascii_case("opus") && clock_rate == 48000 && channels == Some(2) {
            // RFC 7587 §7: the media subtype is always opus/48000/2.
            CodecKind::Opus
        } else {
            return Err(CodecError::Unsupported);
        };
        Ok(kind)
    }

    /// Parses the encoding part of an `a=rtpmap` value: `PCMU/8000`, `opus/48000/2`.
    pub fn from_rtpmap(s: &str) -> Result<Self, CodecError> {
        let mut parts = s.trim().split('/');
        let name = parts.next().unwrap_or("");
        let rate = parts
            .next()
            .and_then(|r| r.parse::<u32>().ok())
            .ok_or(CodecError::Unsupported)?;
        let channels = match parts.next() {
            Some(c) => Some(c.parse::<u16>().map_err(|_| CodecError::Unsupported)?),
            None => None,
        };
        if parts.next().is_some() {
            return Err(CodecError::Unsupported);
        }
        Self::from_sdp(name, rate, channels)
    }

    /// The codec of a static RTP payload type (RFC 3551 Table 4), if we support it.
    pub fn from_static_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(CodecKind::Pcmu),
            8 => Some(CodecKind::Pcma),
            9 => Some(CodecKind::G722),
            _ => None,
        }
    }

    /// The static RTP payload type, if the codec has one (L16 mono at 8/16 kHz and Opus do not).
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            CodecKind::Pcmu => Some(0),
            CodecKind::Pcma => Some(8),
            CodecKind::G722 => Some(9),
            CodecKind::L16 { .. } | CodecKind::Opus => None,
        }
    }

    /// The `rtpmap` encoding name.
    pub fn encoding_name(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::L16 { .. } => "L16",
            CodecKind::G722 => "G722",
            CodecKind::Opus => "opus",
        }
    }

    /// The RTP clock rate as SDP states it.
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722 => 8000,
            CodecKind::L16 { rate } => rate,
            CodecKind::Opus => 48000,
        }
    }

    /// The `rtpmap` channel count (2 for Opus per RFC 7587, 1 otherwise).
    pub fn rtp_channels(self) -> u16 {
        match self {
            CodecKind::Opus => 2,
            _ => 1,
        }
    }

    /// The audio rate the encoder and decoder run at under `config`.
    pub fn audio_rate(self, config: &CodecConfig) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma => 8000,
            CodecKind::L16 { rate } => rate,
            CodecKind::G722 => 16000,
            CodecKind::Opus => config.opus_rate,
        }
    }

    /// RTP timestamp increment for `samples` of audio at `audio_rate`.
    pub fn rtp_ticks(self, samples: u32, audio_rate: u32) -> u32 {
        let clock = u64::from(self.rtp_clock_rate());
        let ticks = u64::from(samples) * clock / u64::from(audio_rate.max(1));
        // RTP timestamps wrap modulo 2^32.
        ticks as u32
    }
}

/// Per-connection codec settings. Only the Opus fields matter today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecConfig {
    /// Opus internal audio rate: 8000 (narrowband, default, TDM paths), 12000, 16000
    /// (wideband), 24000 or 48000.
    pub opus_rate: u32,
    /// Opus encoder complexity 0..=10 (default 5).
    pub opus_complexity: u8,
    /// Opus target bitrate in bit/s, 6000..=510000 (default 24000).
    pub opus_bitrate: u32,
    /// Opus in-band FEC (LBRR) in the encoder (default off; RFC 7587 `useinbandfec`).
    pub opus_fec: bool,
    /// Opus discontinuous transmission (default off; RFC 7587 `usedtx`). With DTX on, encode
    /// returns payloads of at most 2 bytes during silence, which need not be sent.
    pub opus_dtx: bool,
    /// Expected packet loss in percent 0..=100, which sizes the FEC (default 0).
    pub opus_packet_loss_perc: u8,
}

impl Default for CodecConfig {
    fn default() -> Self {
        Self {
            opus_rate: 8000,
            opus_complexity: 5,
            opus_bitrate: 24_000,
            opus_fec: false,
            opus_dtx: false,
            opus_packet_loss_perc: 0,
        }
    }
}

impl CodecConfig {
    /// Applies the remote side's Opus `a=fmtp` parameters (RFC 7587 §6.1) to the encoder
    /// settings: `useinbandfec=1` turns FEC on, `usedtx=1` turns DTX on,
    /// `maxaveragebitrate` caps the bitrate (not below 6000), and `maxplaybackrate` lowers
    /// [`CodecConfig::opus_rate`] to the highest Opus rate not above it (not below 8000).
    /// Unknown parameters and malformed values are ignored, as RFC 7587 asks.
    pub fn apply_opus_fmtp(&mut self, fmtp: &str) {
        for param in fmtp.split(';') {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let Ok(n) = value.parse::<u32>() else {
                continue;
            };
            if key.eq_ignore_ascii_case("useinbandfec") {
                self.opus_fec = n == 1;
            } else if key.eq_ignore_ascii_case("usedtx") {
                self.opus_dtx = n == 1;
            } else if key.eq_ignore_ascii_case("maxaveragebitrate") {
                self.opus_bitrate = self.opus_bitrate.min(n.clamp(6000, 510_000));
            } else if key.eq_ignore_ascii_case("maxplaybackrate") {
                let cap = [48000, 24000, 16000, 12000, 8000]
                    .into_iter()
                    .find(|&r| r <= n)
                    .unwrap_or(8000);
                self.opus_rate = self.opus_rate.min(cap);
            }
        }
    }
}

/// Encodes linear PCM frames at [`Encoder::sample_rate`] into RTP payloads.
pub trait Encoder {
    /// Which codec this is.
    fn kind(&self) -> CodecKind;
    /// Audio rate of the PCM this encoder takes.
    fn sample_rate(&self) -> u32;
    /// Encodes one frame of mono PCM into `out`; returns the payload length.
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError>;
    /// An `out` size that always suffices for a frame of `samples`.
    fn max_payload_len(&self, samples: usize) -> usize;
    /// Forgets all history (new stream).
    fn reset(&mut self);
}

/// Decodes RTP payloads into linear PCM at [`Decoder::sample_rate`].
pub trait Decoder {
    /// Which codec this is.
    fn kind(&self) -> CodecKind;
    /// Audio rate of the PCM this decoder produces.
    fn sample_rate(&self) -> u32;
    /// Decodes one payload into `out`; returns the number of samples written.
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError>;
    /// How many samples `payload` decodes to, without decoding it.
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError>;
    /// Produces one frame (as long as the last decoded one; 20 ms before any) for a lost
    /// packet; returns the number of samples written.
    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError>;
    /// Recovers a lost frame from the packet that follows it, using in-band FEC where the
    /// codec has it; otherwise the same as [`Decoder::conceal`]. Then decode `next_payload`
    /// itself normally with [`Decoder::decode`].
    fn decode_fec(&mut self, next_payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let _ = next_payload;
        self.conceal(out)
    }
    /// Whether [`Decoder::conceal`] does real concealment (else it returns silence).
    fn has_native_plc(&self) -> bool;
    /// Forgets all history (new stream).
    fn reset(&mut self);
}

/// Fills the start of `out` with `frame` zero samples (the conceal of codecs without PLC).
fn silence(frame: usize, out: &mut [i16]) -> Result<usize, CodecError> {
    let dst = out
        .get_mut(..frame)
        .ok_or(CodecError::OutputTooSmall { needed: frame })?;
    dst.fill(0);
    Ok(frame)
}

macro_rules! dispatch {
    ($self:ident, $e:ident => $body:expr) => {
        match $self {
            Self::G711($e) => $body,
            Self::L16($e) => $body,
            Self::G722($e) => $body,
            Self::Opus($e) => $body,
        }
    };
}

/// Any encoder, as an enum: what the dataplane stores per connection.
#[derive(Debug)]
pub enum AnyEncoder {
    /// PCMU or PCMA.
    G711(G711Encoder),
    /// L16 at 8 or 16 kHz.
    L16(L16Encoder),
    /// G.722 (boxed: its state is a few hundred bytes; allocated once per connection).
    G722(Box<G722Encoder>),
    /// Opus.
    Opus(OpusEncoder),
}

impl AnyEncoder {
    /// Creates the encoder for `kind`.
    pub fn new(kind: CodecKind, config: &CodecConfig) -> Result<Self, CodecError> {
        Ok(match kind {
            CodecKind::Pcmu => Self::G711(G711Encoder::new(G711Law::MuLaw)),
            CodecKind::Pcma => Self::G711(G711Encoder::new(G711Law::ALaw)),
            CodecKind::L16 { rate } => Self::L16(L16Encoder::new(rate)?),
            CodecKind::G722 => Self::G722(Box::default()),
            CodecKind::Opus => Self::Opus(OpusEncoder::new(config)?),
        })
    }
}

impl Encoder for AnyEncoder {
    fn kind(&self) -> CodecKind {
        dispatch!(self, e => e.kind())
    }
    fn sample_rate(&self) -> u32 {
        dispatch!(self, e => e.sample_rate())
    }
    #[inline]
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        dispatch!(self, e => e.encode(pcm, out))
    }
    fn max_payload_len(&self, samples: usize) -> usize {
        dispatch!(self, e => e.max_payload_len(samples))
    }
    fn reset(&mut self) {
        dispatch!(self, e => e.reset())
    }
}

/// Any decoder, as an enum: what the dataplane stores per connection.
#[derive(Debug)]
pub enum AnyDecoder {
    /// PCMU or PCMA.
    G711(G711Decoder),
    /// L16 at 8 or 16 kHz.
    L16(L16Decoder),
    /// G.722 (boxed: its state is a few hundred bytes; allocated once per connection).
    G722(Box<G722Decoder>),
    /// Opus.
    Opus(OpusDecoder),
}

impl AnyDecoder {
    /// Creates the decoder for `kind`.
    pub fn new(kind: CodecKind, config: &CodecConfig) -> Result<Self, CodecError> {
        Ok(match kind {
            CodecKind::Pcmu => Self::G711(G711Decoder::new(G711Law::MuLaw)),
            CodecKind::Pcma => Self::G711(G711Decoder::new(G711Law::ALaw)),
            CodecKind::L16 { rate } => Self::L16(L16Decoder::new(rate)?),
            CodecKind::G722 => Self::G722(Box::default()),
            CodecKind::Opus => Self::Opus(OpusDecoder::new(config.opus_rate)?),
        })
    }
}

impl Decoder for AnyDecoder {
    fn kind(&self) -> CodecKind {
        dispatch!(self, d => d.kind())
    }
    fn sample_rate(&self) -> u32 {
        dispatch!(self, d => d.sample_rate())
    }
    #[inline]
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        dispatch!(self, d => d.decode(payload, out))
    }
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        dispatch!(self, d => d.samples_in(payload))
    }
    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        dispatch!(self, d => d.conceal(out))
    }
    fn decode_fec(&mut self, next_payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        dispatch!(self, d => d.decode_fec(next_payload, out))
    }
    fn has_native_plc(&self) -> bool {
        dispatch!(self, d => d.has_native_plc())
    }
    fn reset(&mut self) {
        dispatch!(self, d => d.reset())
    }
}

/// One connection's codec: both directions.
#[derive(Debug)]
pub struct Codec {
    /// PCM → payload (toward the IP peer).
    pub encoder: AnyEncoder,
    /// Payload → PCM (from the IP peer).
    pub decoder: AnyDecoder,
}

impl Codec {
    /// Creates encoder and decoder for `kind`.
    pub fn new(kind: CodecKind, config: &CodecConfig) -> Result<Self, CodecError> {
        Ok(Self {
            encoder: AnyEncoder::new(kind, config)?,
            decoder: AnyDecoder::new(kind, config)?,
        })
    }

    /// Creates the codec an SDP `rtpmap` names (`PCMU/8000`, `opus/48000/2`, …).
    pub fn from_rtpmap(rtpmap: &str, config: &CodecConfig) -> Result<Self, CodecError> {
        Self::new(CodecKind::from_rtpmap(rtpmap)?, config)
    }

    /// Which codec this is.
    pub fn kind(&self) -> CodecKind {
        self.encoder.kind()
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    /// `n` samples of a sine of `freq` Hz and peak `amp` at `rate`.
    pub(crate) fn sine(rate: u32, freq: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (amp * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    /// SNR in dB of `out` against `reference` delayed by `lag`, over `reference[skip..]`.
    pub(crate) fn snr_at(reference: &[i16], out: &[i16], lag: usize, skip: usize) -> f64 {
        let (mut sig, mut noise) = (0.0f64, 0.0f64);
        let pairs = reference
            .iter()
            .zip(out.get(lag..).unwrap_or(&[]))
            .skip(skip);
        for (&x, &y) in pairs {
            let x = f64::from(x);
            sig += x * x;
            noise += (x - f64::from(y)).powi(2);
        }
        10.0 * (sig / noise.max(1e-9)).log10()
    }

    /// The best (lag, SNR) over lags `0..=max_lag`: aligns the codec's delay.
    pub(crate) fn best_snr(
        reference: &[i16],
        out: &[i16],
        max_lag: usize,
        skip: usize,
    ) -> (usize, f64) {
        (0..=max_lag)
            .map(|lag| {
                (
                    lag,
                    snr_at(&reference[..reference.len() - max_lag], out, lag, skip),
                )
            })
            .fold((0, f64::NEG_INFINITY), |b, c| if c.1 > b.1 { c } else { b })
    }

    /// Peak absolute sample of `x`.
    pub(crate) fn peak(x: &[i16]) -> i32 {
        x.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn sdp_names() {
        assert_eq!(CodecKind::from_rtpmap("PCMU/8000"), Ok(CodecKind::Pcmu));
        assert_eq!(CodecKind::from_rtpmap("pcma/8000"), Ok(CodecKind::Pcma));
        assert_eq!(
            CodecKind::from_rtpmap("L16/8000"),
            Ok(CodecKind::L16 { rate: 8000 })
        );
        assert_eq!(
            CodecKind::from_rtpmap("L16/16000/1"),
            Ok(CodecKind::L16 { rate: 16000 })
        );
        assert_eq!(CodecKind::from_rtpmap("G722/8000"), Ok(CodecKind::G722));
        assert_eq!(CodecKind::from_rtpmap("opus/48000/2"), Ok(CodecKind::Opus));
        assert_eq!(CodecKind::from_rtpmap("OPUS/48000/2"), Ok(CodecKind::Opus));
        for bad in [
            "G729/8000",
            "PCMU/16000",
            "PCMU/8000/2",
            "L16/44100",
            "L16/8000/2",
            "G722/16000",
            "opus/48000",
            "opus/16000/1",
            "PCMU",
            "PCMU/x",
            "PCMU/8000/1/1",
            "",
            "/",
        ] {
            assert_eq!(
                CodecKind::from_rtpmap(bad),
                Err(CodecError::Unsupported),
                "{bad}"
            );
        }
        assert!(matches!(
            Codec::from_rtpmap("iLBC/8000", &CodecConfig::default()),
            Err(CodecError::Unsupported)
        ));
        for kind in [CodecKind::Pcmu, CodecKind::Pcma, CodecKind::G722] {
            let pt = kind.static_payload_type().unwrap();
            assert_eq!(CodecKind::from_static_payload_type(pt), Some(kind));
            let map = format!("{}/{}", kind.encoding_name(), kind.rtp_clock_rate());
            assert_eq!(CodecKind::from_rtpmap(&map), Ok(kind));
        }
        assert_eq!(CodecKind::from_static_payload_type(18), None);
        assert_eq!(CodecKind::Opus.static_payload_type(), None);
        assert_eq!(CodecKind::Opus.rtp_channels(), 2);
    }

    #[test]
    fn opus_fmtp() {
        let mut c = CodecConfig {
            opus_rate: 16000,
            ..Default::default()
        };
        c.apply_opus_fmtp("maxplaybackrate=8000; sprop-maxcapturerate=16000;useinbandfec=1; usedtx=1;maxaveragebitrate=20000");
        assert_eq!(
            (c.opus_rate, c.opus_fec, c.opus_dtx, c.opus_bitrate),
            (8000, true, true, 20000)
        );
        let mut c = CodecConfig {
            opus_rate: 16000,
            ..Default::default()
        };
        c.apply_opus_fmtp(
            "maxplaybackrate=11025;maxaveragebitrate=100;stereo=1;junk;useinbandfec=x",
        );
        assert_eq!(
            (c.opus_rate, c.opus_fec, c.opus_bitrate),
            (8000, false, 6000)
        );
        let mut c = CodecConfig::default();
        c.apply_opus_fmtp("maxplaybackrate=48000;useinbandfec=0;maxaveragebitrate=64000");
        assert_eq!(
            c,
            CodecConfig::default(),
            "never raises the path rate or bitrate"
        );
        assert!(OpusEncoder::new(&c).is_ok());
    }

    #[test]
    fn rates_and_ticks() {
        let cfg = CodecConfig::default();
        assert_eq!(CodecKind::G722.audio_rate(&cfg), 16000);
        assert_eq!(CodecKind::G722.rtp_ticks(320, 16000), 160);
        assert_eq!(CodecKind::Opus.rtp_ticks(160, 8000), 960);
        assert_eq!(CodecKind::Opus.rtp_ticks(320, 16000), 960);
        assert_eq!(CodecKind::Pcmu.rtp_ticks(160, 8000), 160);
        assert_eq!(CodecKind::L16 { rate: 16000 }.rtp_ticks(320, 16000), 320);
        let all = [
            "PCMU/8000",
            "PCMA/8000",
            "L16/8000",
            "L16/16000",
            "G722/8000",
            "opus/48000/2",
        ];
        for name in all {
            let c = Codec::from_rtpmap(name, &cfg).unwrap();
            assert_eq!(c.encoder.sample_rate(), c.kind().audio_rate(&cfg), "{name}");
            assert_eq!(c.decoder.sample_rate(), c.kind().audio_rate(&cfg), "{name}");
            assert_eq!(c.decoder.kind(), c.kind());
        }
    }

    /// Round-trips `secs` of a 1 kHz sine through `codec`; returns (lag, SNR dB).
    fn sine_round_trip(name: &str, cfg: &CodecConfig, amp: f64) -> (usize, f64) {
        let mut c = Codec::from_rtpmap(name, cfg).unwrap();
        let rate = c.encoder.sample_rate();
        let frame = rate as usize / 50;
        let input = sine(rate, 1000.0, amp, frame * 50);
        let mut out = Vec::with_capacity(input.len());
        let mut payload = vec![0u8; c.encoder.max_payload_len(frame)];
        let mut pcm = vec![0i16; frame];
        for chunk in input.chunks(frame) {
            let n = c.encoder.encode(chunk, &mut payload).unwrap();
            assert_eq!(
                c.decoder.samples_in(&payload[..n]).unwrap(),
                frame,
                "{name}"
            );
            let m = c.decoder.decode(&payload[..n], &mut pcm).unwrap();
            assert_eq!(m, frame, "{name}");
            out.extend_from_slice(&pcm[..m]);
        }
        best_snr(&input, &out, frame, frame * 5)
    }

    #[test]
    fn g711_and_l16_sine_snr() {
        let cfg = CodecConfig::default();
        // A 1 kHz tone at 8 kHz repeats every 8 samples, so the quantisation error is the
        // same few values over and over: measured 37.1 dB (µ-law) and 49.5 dB (A-law).
        for (name, floor) in [("PCMU/8000", 35.0), ("PCMA/8000", 45.0)] {
            let (lag, snr) = sine_round_trip(name, &cfg, 10_000.0);
            println!("{name}: lag {lag} SNR {snr:.1} dB");
            assert_eq!(lag, 0);
            assert!(snr > floor, "{name}: {snr}");
        }
        for name in ["L16/8000", "L16/16000"] {
            let (lag, snr) = sine_round_trip(name, &cfg, 10_000.0);
            assert_eq!(lag, 0);
            assert!(snr > 90.0, "{name}: {snr}");
        }
    }

    #[test]
    fn g722_sine_snr() {
        let (lag, snr) = sine_round_trip("G722/8000", &CodecConfig::default(), 10_000.0);
        // Measured 47.5 dB. The lag is only known modulo the 16-sample period of the tone.
        println!("G.722: lag {lag} SNR {snr:.1} dB");
        assert!(snr > 42.0, "{snr}");
    }

    #[test]
    fn opus_sine_snr() {
        // Measured 20.7 dB (8 kHz, 24 kbit/s) and 20.5 dB (16 kHz, 32 kbit/s), complexity 5.
        for (rate, bitrate, floor) in [(8000, 24_000, 17.0), (16000, 32_000, 17.0)] {
            let cfg = CodecConfig {
                opus_rate: rate,
                opus_bitrate: bitrate,
                ..Default::default()
            };
            let (lag, snr) = sine_round_trip("opus/48000/2", &cfg, 10_000.0);
            println!("Opus {rate} Hz {bitrate} bit/s: lag {lag} SNR {snr:.1} dB");
            assert!(snr > floor, "{rate}: {snr}");
        }
    }

    #[test]
    fn g711_frame_errors_and_silence_conceal() {
        let mut c = Codec::new(CodecKind::Pcmu, &CodecConfig::default()).unwrap();
        assert_eq!(
            c.encoder.encode(&[], &mut [0; 10]),
            Err(CodecError::FrameSize { samples: 0 })
        );
        assert_eq!(
            c.encoder.encode(&[0; 160], &mut [0; 80]),
            Err(CodecError::OutputTooSmall { needed: 160 })
        );
        assert_eq!(
            c.decoder.decode(&[0xFF; 160], &mut [0; 80]),
            Err(CodecError::OutputTooSmall { needed: 160 })
        );
        let mut out = [1i16; 240];
        assert_eq!(c.decoder.decode(&[0x80; 80], &mut out), Ok(80));
        assert!(!c.decoder.has_native_plc());
        assert_eq!(c.decoder.conceal(&mut out), Ok(80));
        assert!(out[..80].iter().all(|&s| s == 0));
        assert_eq!(c.decoder.decode_fec(&[0xFF; 80], &mut out), Ok(80));
        assert_eq!(
            c.decoder.conceal(&mut [0; 10]),
            Err(CodecError::OutputTooSmall { needed: 80 })
        );
        assert_eq!(peak(&out[80..]), 1, "untouched beyond the frame");
    }
}
