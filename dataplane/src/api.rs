//! The typed interface between the control plane and the dataplane.
//!
//! Everything here is owned data that crosses a bounded crossbeam channel. The only
//! shared memory is [`ConnCounters`]: plain atomics written by the one worker that owns
//! the connection and read by the control plane for AUCX/DLCX statistics (no locks).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Identifies a connection across the planes. Assigned by the control plane, unique
/// for the life of the process.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnKey(pub u32);

/// Connections that must live on the same worker (the two connections of an
/// `rtpbridge` endpoint, or a TDM channel pair and their connections). The worker is
/// chosen as `group % workers`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct GroupId(pub u32);

/// RFC 3435 connection modes (§3.2.2.6).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Mode {
    /// Neither send nor receive.
    Inactive,
    /// Send only (media from the group goes out to this connection's remote).
    SendOnly,
    /// Receive only (media from this connection's remote goes into the group).
    RecvOnly,
    /// Both.
    SendRecv,
    /// Conference: like sendrecv, mixing with the other conference legs.
    Confrnce,
    /// Endpoint-side loopback: what the connection receives is sent back to its remote.
    Loopback,
    /// Continuity test (trunk side); on IP-only endpoints behaves as loopback.
    ContTest,
    /// Network loopback: media received is echoed back to the sender.
    NetwLoop,
    /// Network continuity test: media received is echoed back to the sender.
    NetwTest,
}

impl Mode {
    /// Whether media received from this connection's remote goes on to the other legs.
    pub fn receives(self) -> bool {
        matches!(self, Mode::RecvOnly | Mode::SendRecv | Mode::Confrnce)
    }

    /// Whether media from the other legs is sent to this connection's remote.
    pub fn sends(self) -> bool {
        matches!(self, Mode::SendOnly | Mode::SendRecv | Mode::Confrnce)
    }

    /// Whether received media is echoed straight back to the remote.
    pub fn echoes(self) -> bool {
        matches!(
            self,
            Mode::Loopback | Mode::ContTest | Mode::NetwLoop | Mode::NetwTest
        )
    }
}

/// Which RTP sources a connection accepts (RTP-bleed protection).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SourceCheck {
    /// Only the negotiated remote address; nothing before a remote is known.
    Strict,
    /// NAT mode: latch to the first source seen (or the negotiated remote if it sends
    /// first) and then hold it.
    Latch,
}

/// A codec as negotiated, independent of payload-type numbering.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Codec {
    /// Encoding name, upper case (`PCMU`, `PCMA`, `OPUS`, `TELEPHONE-EVENT`, ...).
    pub name: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channels (1 unless stated).
    pub channels: u8,
}

/// One payload type as this connection's remote numbers it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PayloadBinding {
    /// The RTP payload type number used on this connection's wire.
    pub pt: u8,
    /// The codec it stands for.
    pub codec: Codec,
}

/// Everything a worker needs to run a new connection.
#[derive(Debug)]
pub struct ConnSpec {
    /// The connection's key.
    pub key: ConnKey,
    /// Its group (decides the worker).
    pub group: GroupId,
    /// Bound RTP socket (even port), owned by the dataplane from now on.
    pub rtp: UdpSocket,
    /// Bound RTCP socket (RTP port + 1).
    pub rtcp: UdpSocket,
    /// Connection mode.
    pub mode: Mode,
    /// Remote RTP address, once known (from the remote SDP).
    pub remote_rtp: Option<SocketAddr>,
    /// Remote RTCP address (default: remote RTP port + 1).
    pub remote_rtcp: Option<SocketAddr>,
    /// Source check policy.
    pub source_check: SourceCheck,
    /// Payload types negotiated on this connection, preferred first.
    pub payloads: Vec<PayloadBinding>,
    /// The SSRC this connection sends with; kept across modifications so the far end
    /// sees one stream.
    pub ssrc: u32,
    /// Report [`DataplaneEvent::RtpTimeout`] when no RTP arrives for this long.
    pub rtp_timeout: Option<Duration>,
    /// Statistics shared with the control plane.
    pub counters: Arc<ConnCounters>,
    /// The TDM channel this connection terminates on, by endpoint local name
    /// (`ds/e1-1/7`, `aaln/1`). `Some`: the connection's media is decoded into and encoded
    /// from that channel (transcoding, jitter buffer, DTMF). `None`: it is relayed RTP-to-RTP
    /// within its group.
    pub channel: Option<String>,
    /// Packetization period of our outgoing media, ms (10..=60; TDM connections).
    pub ptime_ms: u32,
    /// `a=fmtp` parameters the remote gave, by payload type (e.g. Opus options).
    pub fmtp: Vec<(u8, String)>,
    /// How DTMF is sent toward this connection's remote (TDM connections).
    pub dtmf: DtmfMode,
}

/// How DTMF reaches the IP side of a TDM connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum DtmfMode {
    /// RFC 4733 telephone-events when negotiated, else in-band audio.
    #[default]
    Auto,
    /// In-band audio only.
    InBand,
    /// RFC 4733 only (in-band digits muted); falls back to in-band when not negotiated.
    Rfc4733,
}

/// A call-progress tone (RFC 3660 signal names in brackets).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ToneKind {
    /// Dial tone (L/dl).
    Dial,
    /// Ringback (G/rt, L/rt).
    Ringback,
    /// Busy (L/bz).
    Busy,
    /// Congestion / reorder (G/cg, L/ro).
    Congestion,
    /// Call waiting (L/wt).
    CallWaiting,
    /// Stutter dial (L/sl).
    StutterDial,
    /// Confirmation (G/cf, L/cf).
    Confirmation,
    /// Continuity test tone, 2010 Hz (T/co1; also the "go" tone of the dual-tone test).
    Continuity,
    /// Continuity return tone, 1780 Hz (T/co2 answer in the dual-tone procedure).
    ContinuityReturn,
}

/// A signal played on a TDM channel, toward the line (the telephone side).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ChannelSignal {
    /// DTMF digits (`0-9 * # A-D`), timed.
    Digits(String),
    /// A call-progress tone; timed tones end with [`DataplaneEvent::SignalDone`].
    Tone(ToneKind),
    /// Ring the line (L/rg) on or off: DAHDI FXS ringing, or a `RING ON`/`RING OFF` control
    /// message to a tap peer.
    Ring(bool),
    /// Play 8 kHz linear PCM toward the line once (A/ann), then SignalDone.
    Play(std::sync::Arc<[i16]>),
    /// Stop whatever is playing.
    Stop,
}

/// Hook state changes of an analog line (RFC 3660 L package).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LineEvent {
    /// Off-hook (L/hd).
    OffHook,
    /// On-hook (L/hu).
    OnHook,
    /// Hook flash (L/hf).
    Flash,
}

/// Where a detected digit came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DigitOrigin {
    /// In-band, on the TDM side.
    Tdm,
    /// An RFC 4733 telephone-event from an IP connection.
    Rfc4733,
}

/// A change to an existing connection. `None` fields are left as they are.
#[derive(Debug, Default)]
pub struct ConnUpdate {
    /// New packetization period (TDM connections).
    pub ptime_ms: Option<u32>,
    /// New `a=fmtp` parameters.
    pub fmtp: Option<Vec<(u8, String)>>,
    /// New mode.
    pub mode: Option<Mode>,
    /// New remote RTP address.
    pub remote_rtp: Option<SocketAddr>,
    /// New remote RTCP address.
    pub remote_rtcp: Option<SocketAddr>,
    /// New payload types.
    pub payloads: Option<Vec<PayloadBinding>>,
    /// New RTP timeout (`Some(None)` disables it).
    pub rtp_timeout: Option<Option<Duration>>,
}

/// Commands from the control plane to a worker.
#[derive(Debug)]
pub enum DataplaneCmd {
    /// Start running a connection.
    Add(Box<ConnSpec>),
    /// Change a connection.
    Modify {
        /// Which.
        key: ConnKey,
        /// Its group (routes the command).
        group: GroupId,
        /// What changes.
        update: Box<ConnUpdate>,
    },
    /// Play (or stop) a signal on a TDM channel.
    Signal {
        /// The channel's group (routes the command).
        group: GroupId,
        /// Endpoint local name of the channel (`ds/e1-1/7`).
        channel: String,
        /// What to play.
        signal: ChannelSignal,
    },
    /// Stop a connection and close its sockets. A [`DataplaneEvent::Removed`] follows.
    Remove {
        /// Which.
        key: ConnKey,
        /// Its group.
        group: GroupId,
    },
}

/// Events from the workers to the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataplaneEvent {
    /// The first RTP packet arrived on a connection (R/ma, media start).
    FirstPacket {
        /// Which connection.
        key: ConnKey,
    },
    /// No RTP for the connection's `rtp_timeout` (R/rto).
    RtpTimeout {
        /// Which connection.
        key: ConnKey,
    },
    /// A DTMF digit began on a TDM channel (D/x).
    Digit {
        /// Endpoint local name of the channel.
        channel: String,
        /// The digit (`0-9 * # A-D`).
        digit: char,
        /// In-band on the line, or RFC 4733 from IP.
        origin: DigitOrigin,
    },
    /// A continuity tone was detected on the line side of a TDM channel (T/co1 = 2010 Hz,
    /// T/co2 = 1780 Hz).
    ToneDetected {
        /// Endpoint local name of the channel.
        channel: String,
        /// Which tone.
        tone: ToneKind,
    },
    /// A line-signalling event on a TDM channel (L/hd, L/hu, L/hf): from DAHDI hook
    /// events or a tap peer's control messages.
    Line {
        /// Endpoint local name of the channel.
        channel: String,
        /// What happened.
        event: LineEvent,
    },
    /// A timed signal finished playing on a TDM channel (G/oc).
    SignalDone {
        /// Endpoint local name of the channel.
        channel: String,
    },
    /// A connection has been removed and its sockets closed (its ports may be reused).
    Removed {
        /// Which connection.
        key: ConnKey,
    },
}

/// Per-connection statistics, single writer (the owning worker), any reader.
///
/// Values follow RFC 3550 (loss, interarrival jitter in timestamp units) and RFC 3435
/// `P:` (PS, OS, PR, OR, PL, JI, LA).
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Packets sent to the remote.
    pub packets_sent: AtomicU64,
    /// Payload octets sent.
    pub octets_sent: AtomicU64,
    /// Packets received from the remote (accepted).
    pub packets_recv: AtomicU64,
    /// Payload octets received.
    pub octets_recv: AtomicU64,
    /// Cumulative packets lost (RFC 3550 A.3; may go negative with duplicates, clamped at 0).
    pub packets_lost: AtomicU64,
    /// Interarrival jitter, in microseconds.
    pub jitter_us: AtomicU64,
    /// Round-trip latency from RTCP, in microseconds (0 when unknown).
    pub rtt_us: AtomicU64,
    /// RTP/RTCP datagrams dropped by the source check.
    pub dropped_source: AtomicU64,
    /// RTP packets dropped because the mode forbids them or no destination is known,
    /// and datagrams that arrive while the connection is being removed.
    pub dropped_mode: AtomicU64,
    /// Datagrams dropped as invalid: malformed or truncated RTP/RTCP, an unknown payload
    /// type, or one no destination negotiated.
    pub dropped_invalid: AtomicU64,
    /// TDM connections: current jitter-buffer delay, in microseconds.
    pub jb_delay_us: AtomicU64,
    /// TDM connections: packets that arrived after their playout time.
    pub jb_late: AtomicU64,
    /// TDM connections: frames that never arrived (played as concealment).
    pub jb_lost: AtomicU64,
    /// TDM connections: frames produced by packet-loss concealment.
    pub plc_frames: AtomicU64,
}

/// A plain copy of [`ConnCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// See [`ConnCounters::packets_sent`].
    pub packets_sent: u64,
    /// See [`ConnCounters::octets_sent`].
    pub octets_sent: u64,
    /// See [`ConnCounters::packets_recv`].
    pub packets_recv: u64,
    /// See [`ConnCounters::octets_recv`].
    pub octets_recv: u64,
    /// See [`ConnCounters::packets_lost`].
    pub packets_lost: u64,
    /// See [`ConnCounters::jitter_us`].
    pub jitter_us: u64,
    /// See [`ConnCounters::rtt_us`].
    pub rtt_us: u64,
    /// See [`ConnCounters::dropped_source`].
    pub dropped_source: u64,
    /// See [`ConnCounters::dropped_mode`].
    pub dropped_mode: u64,
    /// See [`ConnCounters::dropped_invalid`].
    pub dropped_invalid: u64,
    /// See [`ConnCounters::jb_delay_us`].
    pub jb_delay_us: u64,
    /// See [`ConnCounters::jb_late`].
    pub jb_late: u64,
    /// See [`ConnCounters::jb_lost`].
    pub jb_lost: u64,
    /// See [`ConnCounters::plc_frames`].
    pub plc_frames: u64,
}

impl ConnCounters {
    /// A consistent-enough copy for reporting (each field read once, relaxed).
    pub fn snapshot(&self) -> ConnStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnStats {
            packets_sent: r(&self.packets_sent),
            octets_sent: r(&self.octets_sent),
            packets_recv: r(&self.packets_recv),
            octets_recv: r(&self.octets_recv),
            packets_lost: r(&self.packets_lost),
            jitter_us: r(&self.jitter_us),
            rtt_us: r(&self.rtt_us),
            dropped_source: r(&self.dropped_source),
            dropped_mode: r(&self.dropped_mode),
            dropped_invalid: r(&self.dropped_invalid),
            jb_delay_us: r(&self.jb_delay_us),
            jb_late: r(&self.jb_late),
            jb_lost: r(&self.jb_lost),
            plc_frames: r(&self.plc_frames),
        }
    }
}

/// Which I/O backend the workers use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    /// io_uring with multishot receive and a provided buffer ring.
    IoUring,
    /// epoll with recvmmsg/sendmmsg.
    Epoll,
}

/// What backend to use.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum BackendChoice {
    /// io_uring when the kernel allows it, else epoll.
    #[default]
    Auto,
    /// io_uring or fail.
    IoUring,
    /// epoll.
    Epoll,
}

/// Dataplane start-up settings.
#[derive(Clone, Debug)]
pub struct DataplaneConfig {
    /// Number of workers; `None` = one per core the process may use.
    pub workers: Option<usize>,
    /// Pin each worker to a core.
    pub pin: bool,
    /// Backend selection.
    pub backend: BackendChoice,
    /// Capacity of each worker's command channel.
    pub cmd_capacity: usize,
    /// Capacity of the shared event channel.
    pub event_capacity: usize,
    /// TDM spans and channels the workers run (`None`: no TDM channels).
    pub tdm: Option<mgw_tdm::TdmConfig>,
    /// Tone plan for call-progress signals: `etsi` or `north-america`.
    pub tone_set: String,
    /// Codec options for TDM connections (Opus rate, complexity, bitrate, FEC, DTX); the
    /// remote's `a=fmtp` may lower them.
    pub codec: mgw_media::codec::CodecConfig,
    /// Jitter-buffer delay bounds for TDM connections.
    pub jitter: mgw_media::engine::JitterSettings,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            workers: None,
            pin: true,
            backend: BackendChoice::Auto,
            cmd_capacity: 4096,
            event_capacity: 16384,
            tdm: None,
            tone_set: "etsi".into(),
            codec: mgw_media::codec::CodecConfig::default(),
            jitter: mgw_media::engine::JitterSettings::default(),
        }
    }
}
