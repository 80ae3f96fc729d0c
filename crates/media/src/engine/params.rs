//! Configuration, connection parameters, signals, events, statistics and errors of the
//! engine: the owned values that cross from the control plane and back.

use std::sync::Arc;

use crate::codec::{CodecConfig, CodecError, CodecKind};
use crate::dtmf::{DtmfConfig, DtmfDigit};
use crate::jitter::JitterStats;
use crate::tone::{CallProgressTone, DtmfToneParams, ToneSet};

/// Errors of engine set-up calls. Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The codec cannot be built (unsupported name/rate, bad options).
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// The ptime is not a multiple of 10 ms in 10..=120 ms, or not an Opus frame size.
    #[error("unsupported ptime {0} ms")]
    Ptime(u32),
    /// A payload type is above 127, or two roles share one number.
    #[error("invalid payload type {0}")]
    PayloadType(u8),
    /// The telephone-event clock rate is zero or not a multiple of 8000.
    #[error("unsupported telephone-event rate {0}")]
    EventRate(u32),
    /// A connection with this id exists already.
    #[error("connection {0} exists")]
    DuplicateConnection(u32),
    /// No connection with this id.
    #[error("no connection {0}")]
    UnknownConnection(u32),
    /// The tone set has no such call-progress tone, or a steady tone's frequency is
    /// not between 1 Hz and 3999 Hz.
    #[error("tone not defined in the tone set")]
    UnknownTone,
}

/// Jitter-buffer delay bounds used for every connection (see [`crate::jitter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterSettings {
    /// Lower bound of the target delay, ms.
    pub min_delay_ms: u32,
    /// Upper bound of the target delay, ms.
    pub max_delay_ms: u32,
    /// Target delay before the jitter estimate has settled, ms.
    pub initial_delay_ms: u32,
}

impl Default for JitterSettings {
    /// 20–300 ms, starting at 60 ms.
    fn default() -> Self {
        JitterSettings {
            min_delay_ms: 20,
            max_delay_ms: 300,
            initial_delay_ms: 60,
        }
    }
}

/// Per-channel settings, fixed for the engine's life.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Samples per tick at 8 kHz: a multiple of 80 (10 ms) in 80..=480. Default 160 (20 ms).
    pub frame_samples: usize,
    /// Tone plan for [`Signal::Tone`] without an explicit set.
    pub tone_set: ToneSet,
    /// Run the in-band DTMF detector on the TDM input.
    pub dtmf_detection: bool,
    /// Detector limits.
    pub dtmf_config: DtmfConfig,
    /// Level and timing of generated digits (signals, and RFC 4733 events played out).
    pub dtmf_tones: DtmfToneParams,
    /// Delay, in frames (0–4), of the audio sent on connections whose DTMF goes out as
    /// RFC 4733 only. The detector needs ~30 ms to recognise a digit; delaying these
    /// connections' audio lets the whole in-band digit be muted. Default 1.
    pub dtmf_mute_delay_frames: usize,
    /// Jitter-buffer delay bounds.
    pub jitter: JitterSettings,
    /// Play comfort noise at the level of received CN packets (RFC 3389) during silence;
    /// when false, silence is silent.
    pub comfort_noise: bool,
    /// Capacity of the event queue; events beyond it are counted and dropped.
    pub event_capacity: usize,
    /// Run the continuity-tone detector (2010 Hz and 1780 Hz, `T/co1` and `T/co2`) on the
    /// TDM input and report [`EngineEvent::ToneDetected`]. Default on.
    pub continuity_detection: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            frame_samples: 160,
            tone_set: ToneSet::ETSI,
            dtmf_detection: true,
            dtmf_config: DtmfConfig::default(),
            dtmf_tones: DtmfToneParams::default(),
            dtmf_mute_delay_frames: 1,
            jitter: JitterSettings::default(),
            comfort_noise: true,
            event_capacity: 64,
            continuity_detection: true,
        }
    }
}

/// Connection mode (RFC 3435 §3.2.2.6). What each does in this engine:
/// - `SendRecv`/`Conference`: TDM audio goes out, received audio is mixed into the TDM
///   output. A `Conference` connection also receives the audio of the other `Conference`
///   connections of the channel (each hears everyone but itself).
/// - `SendOnly`, `RecvOnly`, `Inactive`: one direction, or neither.
/// - `Loopback`, `ContTest`: the circuit is looped — the TDM input is returned to the TDM
///   output (a loopback-type continuity test). Nothing is sent or received on IP.
/// - `NetworkLoopback`, `NetworkTest`: the connection's received audio is decoded and sent
///   back to it re-encoded; nothing reaches the TDM side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaMode {
    /// `sendrecv`.
    SendRecv,
    /// `sendonly`.
    SendOnly,
    /// `recvonly`.
    RecvOnly,
    /// `inactive`.
    Inactive,
    /// `confrnce`.
    Conference,
    /// `loopback`.
    Loopback,
    /// `conttest`.
    ContTest,
    /// `netwloop`.
    NetworkLoopback,
    /// `netwtest`.
    NetworkTest,
}

impl MediaMode {
    /// Whether TDM audio is sent to IP on this connection.
    pub fn sends(self) -> bool {
        matches!(
            self,
            MediaMode::SendRecv | MediaMode::SendOnly | MediaMode::Conference
        )
    }

    /// Whether received IP audio is mixed into the TDM output.
    pub fn receives(self) -> bool {
        matches!(
            self,
            MediaMode::SendRecv | MediaMode::RecvOnly | MediaMode::Conference
        )
    }

    /// Whether received audio is echoed back to the network.
    pub fn network_loop(self) -> bool {
        matches!(self, MediaMode::NetworkLoopback | MediaMode::NetworkTest)
    }

    /// Whether the TDM circuit is looped back on itself.
    pub fn circuit_loop(self) -> bool {
        matches!(self, MediaMode::Loopback | MediaMode::ContTest)
    }
}

/// How DTMF from the TDM side reaches a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtmfTransport {
    /// RFC 4733 telephone-events; the in-band digit is muted from the audio.
    Rfc4733,
    /// Left in the audio.
    Inband,
    /// Both: events are sent and the audio is left untouched.
    Both,
}

/// What a connection negotiated. Owned and `Copy`: it crosses planes in a command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnParams {
    /// The audio codec.
    pub codec: CodecKind,
    /// Codec options (Opus rate, complexity, FEC, … with the peer's fmtp applied).
    pub codec_config: CodecConfig,
    /// Payload type of the audio codec (0–127).
    pub payload_type: u8,
    /// Payload type of `telephone-event`, if negotiated.
    pub telephone_event_pt: Option<u8>,
    /// Clock rate of `telephone-event` (a multiple of 8000; RFC 4733 asks for the audio
    /// codec's clock, e.g. 48000 with Opus).
    pub telephone_event_rate: u32,
    /// Payload type of comfort noise (`CN`), if negotiated.
    pub cn_pt: Option<u8>,
    /// Packet duration we send, ms (multiple of 10, 10..=120; Opus: 10, 20, 40 or 60). The
    /// receive side starts with it and follows what the peer actually sends.
    pub ptime_ms: u32,
    /// Connection mode.
    pub mode: MediaMode,
    /// Our SSRC (kept by [`ChannelEngine::modify_connection`](super::ChannelEngine::modify_connection)).
    pub ssrc: u32,
    /// First sequence number (random per RFC 3550; chosen by the caller).
    pub initial_seq: u16,
    /// First timestamp (random per RFC 3550; chosen by the caller).
    pub initial_timestamp: u32,
    /// DTMF transport toward this connection.
    pub dtmf: DtmfTransport,
}

impl ConnParams {
    /// Parameters for `codec` on `payload_type` with defaults: 20 ms, sendrecv, no
    /// telephone-event or CN, in-band DTMF, SSRC/sequence/timestamp 0.
    pub fn new(codec: CodecKind, payload_type: u8) -> Self {
        ConnParams {
            codec,
            codec_config: CodecConfig::default(),
            payload_type,
            telephone_event_pt: None,
            telephone_event_rate: codec.rtp_clock_rate(),
            cn_pt: None,
            ptime_ms: 20,
            mode: MediaMode::SendRecv,
            ssrc: 0,
            initial_seq: 0,
            initial_timestamp: 0,
            dtmf: DtmfTransport::Inband,
        }
    }

    /// Parameters from SDP: an `rtpmap` encoding name, clock rate and channels, the peer's
    /// `fmtp` for it (applied to Opus), and its payload type.
    pub fn from_sdp(
        name: &str,
        clock_rate: u32,
        channels: Option<u16>,
        fmtp: Option<&str>,
        payload_type: u8,
    ) -> Result<Self, EngineError> {
        let codec = CodecKind::from_sdp(name, clock_rate, channels)?;
        let mut p = ConnParams::new(codec, payload_type);
        if let (CodecKind::Opus, Some(f)) = (codec, fmtp) {
            p.codec_config.apply_opus_fmtp(f);
        }
        Ok(p)
    }

    /// Adds `telephone-event` on `pt` at the codec's clock rate, with RFC 4733 transport.
    pub fn with_telephone_event(mut self, pt: u8) -> Self {
        self.telephone_event_pt = Some(pt);
        self.telephone_event_rate = self.codec.rtp_clock_rate();
        self.dtmf = DtmfTransport::Rfc4733;
        self
    }

    /// Checks payload types, ptime and event rate.
    pub(super) fn validate(&self) -> Result<(), EngineError> {
        let pts = [Some(self.payload_type), self.telephone_event_pt, self.cn_pt];
        for (i, pt) in pts.iter().enumerate() {
            let Some(pt) = *pt else { continue };
            if pt > 127 || pts[..i].contains(&Some(pt)) {
                return Err(EngineError::PayloadType(pt));
            }
        }
        let p = self.ptime_ms;
        let ok = match self.codec {
            CodecKind::Opus => matches!(p, 10 | 20 | 40 | 60),
            _ => p % 10 == 0 && (10..=120).contains(&p),
        };
        if !ok {
            return Err(EngineError::Ptime(p));
        }
        let r = self.telephone_event_rate;
        if self.telephone_event_pt.is_some() && (r == 0 || r % 8000 != 0 || r > 48000) {
            return Err(EngineError::EventRate(r));
        }
        Ok(())
    }
}

/// Where a locally generated signal is played.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalDirection {
    /// Toward the TDM side only.
    Tdm,
    /// As in-band audio toward every sending IP connection only.
    Ip,
    /// Both.
    Both,
}

impl SignalDirection {
    pub(super) fn to_tdm(self) -> bool {
        matches!(self, SignalDirection::Tdm | SignalDirection::Both)
    }

    pub(super) fn to_ip(self) -> bool {
        matches!(self, SignalDirection::Ip | SignalDirection::Both)
    }
}

/// A signal to play ([`ChannelEngine::play_signal`](super::ChannelEngine::play_signal)).
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// DTMF digits, each `on_ms`/`off_ms` of [`EngineConfig::dtmf_tones`]; timed.
    Dtmf {
        /// The digits, in order.
        digits: Vec<DtmfDigit>,
        /// Where to play them.
        toward: SignalDirection,
    },
    /// A call-progress tone from `set` (the engine's tone set when `None`); continuous
    /// tones play until stopped, timed ones end with [`EngineEvent::SignalDone`].
    Tone {
        /// The tone.
        tone: CallProgressTone,
        /// Tone plan, or the configured one.
        set: Option<ToneSet>,
        /// Where to play it.
        toward: SignalDirection,
    },
    /// A steady tone at `freq_hz`, [`CONTINUITY_LEVEL_DBM0`](crate::tone::CONTINUITY_LEVEL_DBM0)
    /// (−10 dBm0), played until stopped: the continuity tones
    /// [`CONTINUITY_HZ`](crate::tone::CONTINUITY_HZ) (2010 Hz, `T/co1`) and
    /// [`CONTINUITY_RETURN_HZ`](crate::tone::CONTINUITY_RETURN_HZ) (1780 Hz, `T/co2`).
    /// Frequencies outside 1..=3999 Hz are refused ([`EngineError::UnknownTone`]).
    Continuity {
        /// Frequency, Hz.
        freq_hz: u32,
        /// Where to play it.
        toward: SignalDirection,
    },
    /// 8 kHz linear PCM played once, sample for sample, then
    /// [`EngineEvent::SignalDone`] (an announcement, `A/ann`). The samples are shared,
    /// not copied.
    Play {
        /// The samples.
        pcm: Arc<[i16]>,
        /// Where to play them.
        toward: SignalDirection,
    },
    /// Stops whatever is playing.
    Stop,
}

/// Where a digit was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigitSource {
    /// In-band, in the TDM input.
    Tdm,
    /// A telephone-event received on connection `id` (and played to TDM in-band).
    Rfc4733 {
        /// The connection.
        id: u32,
    },
}

/// What the engine reports ([`ChannelEngine::poll_event`](super::ChannelEngine::poll_event)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineEvent {
    /// A digit began.
    DigitDetected {
        /// The digit.
        digit: DtmfDigit,
        /// Where it came from.
        source: DigitSource,
    },
    /// A digit ended.
    DigitEnded {
        /// The digit.
        digit: DtmfDigit,
        /// Where it came from.
        source: DigitSource,
        /// Its duration, ms.
        duration_ms: u32,
    },
    /// A timed signal (digits, timed tone, PCM) played to its end.
    SignalDone,
    /// A continuity tone began on the TDM input (reported once per onset, after it has
    /// lasted 60 ms; see [`EngineConfig::continuity_detection`]).
    ToneDetected {
        /// Its frequency: [`CONTINUITY_HZ`](crate::tone::CONTINUITY_HZ) (2010) or
        /// [`CONTINUITY_RETURN_HZ`](crate::tone::CONTINUITY_RETURN_HZ) (1780).
        freq_hz: u32,
    },
    /// The first media packet arrived on connection `id`.
    MediaStart {
        /// The connection.
        id: u32,
    },
    /// The peer's SSRC changed on connection `id` (the receive path restarted).
    SsrcChanged {
        /// The connection.
        id: u32,
        /// The new SSRC.
        ssrc: u32,
    },
}

/// Per-connection media counters ([`ChannelEngine::stats`](super::ChannelEngine::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConnMediaStats {
    /// Jitter buffer counters and delay estimates. `lost` excludes the sequence numbers
    /// used by received telephone-event packets (estimated as `lost − events_in`).
    pub jitter: JitterStats,
    /// RTP packets received (all payload types, while the mode receives or not).
    pub packets_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// RTP packets sent (audio and telephone-event).
    pub packets_out: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Datagrams that are not valid RTP.
    pub malformed: u64,
    /// Packets with a payload type not negotiated on the connection.
    pub wrong_pt: u64,
    /// Packets dropped because the mode does not receive.
    pub ignored: u64,
    /// Telephone-event packets received.
    pub events_in: u64,
    /// Telephone-event packets sent.
    pub events_out: u64,
    /// Comfort-noise packets received.
    pub cn_in: u64,
    /// Last received comfort-noise level, −dBov.
    pub cn_level: Option<u8>,
    /// Payloads the decoder rejected (concealed instead).
    pub decode_errors: u64,
    /// Frames the encoder failed on (not sent).
    pub encode_errors: u64,
    /// Frames concealed (codec PLC or G.711 Appendix I PLC).
    pub concealed_frames: u64,
    /// Lost Opus frames decoded with in-band FEC from the packet that follows them, which
    /// had already arrived, instead of being concealed. Not included in `concealed_frames`.
    /// When that packet carries no FEC data (the sender has FEC off, or its SILK encoder saw
    /// no voice activity) libopus conceals inside the FEC decode, and it is still counted.
    pub fec_recovered: u64,
    /// Peer SSRC changes.
    pub ssrc_changes: u64,
    /// Times the receive side followed a change of the peer's packet duration.
    pub rx_ptime_changes: u64,
    /// Packet duration the peer sends, ms.
    pub rx_ptime_ms: u32,
    /// Decoded samples dropped because the receive FIFO was full.
    pub fifo_overflow: u64,
}
