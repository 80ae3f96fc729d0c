//! TDM channels in the workers: placement, the frame loop and the bridge between a
//! channel's [`ChannelEngine`] and its RTP connections.
//!
//! ## Placement: slices adopted by the worker that first names them
//! A crossover pair shares a bus, so both of its channels N must be driven by one thread,
//! but which worker runs a channel is decided by the control plane's `GroupId`
//! (`group % workers`), which the dataplane only learns from commands. So
//! [`crate::Dataplane::start`] cuts the TDM configuration into *slices* — channel index
//! `k` of a lone span, or channel index `k` of both spans of a crossover pair — and builds
//! one [`TdmPorts`] per slice (each device and tap socket is opened exactly once, at start,
//! so configuration errors surface there). The slices wait in a pool on the control side;
//! the first command naming one of a slice's channels (`Add` with
//! [`crate::ConnSpec::channel`], or `Signal`) hands the whole slice to the worker that
//! command is routed to, ahead of the command on the same queue. From then on the slice
//! lives on that worker. The control plane must therefore give both channels of a pair the
//! same group (it does: `ds/e1-1/N` and `ds/e1-2/N` are group `1000 + N`); a command for a
//! placed slice routed to another worker is logged and its connection runs inactive.
//!
//! ## The frame loop
//! A worker that owns at least one slice keeps a [`FrameClock`] started when it adopted
//! its first slice. Each pass it asks the clock how many frames are due; for each, every
//! channel of every owned slice is read, ticked through its engine (which encodes and
//! hands RTP packets to the send callback) and written, then each slice's bus is ticked.
//! Every channel of an owned slice has an engine from adoption on, so in-band digits are
//! detected on a line even before it has a connection. The backends wait no longer than
//! [`TdmRunner::deadline`].
//!
//! ## Line signalling
//! After a channel's frame is read and written, its hook events
//! ([`LineSignalling::poll_line_event`]: tap control datagrams, DAHDI hook events) are
//! reported as [`DataplaneEvent::Line`] (`try_send`; dropped and counted when the event
//! channel is full). [`ChannelSignal::Ring`] goes to [`LineSignalling::set_ringing`]; on a
//! channel without signalling (virtual, ALSA) it is logged at debug and counted in
//! `tdm_setup_errors`, a device failure is logged and counted in `tdm_io_errors`. A slice
//! is only run once a command has named one of its channels, so a line's hook events are
//! seen from its first command on.
//!
//! ## Connections
//! A connection with a channel is attached to that channel's engine under its relay slot
//! number; its codec comes from [`conn_params`]. A connection whose channel is not run by
//! this worker, or whose codec the engine cannot build, is kept (its sockets, statistics
//! and RTCP work) but is *inactive*: received media is dropped (counted as `mode`) and
//! nothing is sent; the failure is logged and counted in `tdm_setup_errors`.

use mgw_media::codec::CodecConfig;
use mgw_media::engine::JitterSettings;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use mgw_media::codec::CodecError;
use mgw_media::dtmf::DtmfDigit;
use mgw_media::engine::{
    ChannelEngine, ConnParams, DigitSource, DtmfTransport, EngineConfig, EngineError, EngineEvent,
    MediaMode, Signal, SignalDirection,
};
use mgw_media::tone::{CallProgressTone, ToneSet, CONTINUITY_HZ, CONTINUITY_RETURN_HZ};
use mgw_tdm::{
    ChannelId, ChannelIo, ChannelRange, FrameClock, HookEvent, LineSignalling, SetupError,
    SpanConfig, TdmConfig, TdmError, TdmPorts,
};

use crate::api::{
    ChannelSignal, ConnUpdate, DataplaneEvent, DigitOrigin, DtmfMode, LineEvent, Mode,
    PayloadBinding, ToneKind,
};

/// One independently clocked piece of the TDM configuration (see the module docs).
pub(crate) struct TdmSlice {
    ports: TdmPorts,
    /// Its channels and their endpoint names (lower case).
    chans: Vec<(ChannelId, String)>,
}

impl std::fmt::Debug for TdmSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdmSlice")
            .field("chans", &self.chans)
            .finish_non_exhaustive()
    }
}

/// Cuts `cfg` into slices and opens every channel once. An empty span list means the
/// default virtual spans, as in [`TdmPorts::build`].
pub(crate) fn build_slices(cfg: &TdmConfig) -> Result<Vec<TdmSlice>, SetupError> {
    cfg.samples_per_frame()?;
    let spans = if cfg.spans.is_empty() {
        SpanConfig::default_virtual()
    } else {
        cfg.spans.clone()
    };
    for (i, s) in spans.iter().enumerate() {
        if spans[..i].iter().any(|d| d.name == s.name) {
            return Err(SetupError::Config(format!(
                "span {:?} defined twice",
                s.name
            )));
        }
    }
    let mut done = vec![false; spans.len()];
    let mut out: Vec<TdmSlice> = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    for i in 0..spans.len() {
        if done[i] {
            continue;
        }
        done[i] = true;
        let partner = spans[i]
            .loop_with
            .as_ref()
            .and_then(|p| spans.iter().position(|d| &d.name == p))
            .filter(|&j| j != i && !done[j]);
        let members: Vec<usize> = match partner {
            Some(j) => {
                done[j] = true;
                vec![i, j]
            }
            None => vec![i],
        };
        let len = members
            .iter()
            .map(|&m| spans[m].channels.len())
            .max()
            .unwrap_or(0);
        for k in 0..len {
            let present: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&m| k < spans[m].channels.len())
                .collect();
            let mut sub = Vec::with_capacity(present.len());
            for &m in &present {
                let mut c = spans[m].clone();
                // k < channels.len() <= u16::MAX, and first + k <= last.
                let n = c.channels.first() + k as u16;
                c.channels = ChannelRange::new(n, n).map_err(SetupError::Config)?;
                if present.len() == 1 && members.len() == 2 {
                    // The partner span is shorter: this channel has no crossover peer.
                    c.loop_with = None;
                }
                sub.push(c);
            }
            let ports = TdmPorts::build(&TdmConfig {
                ptime_ms: cfg.ptime_ms,
                spans: sub,
            })?;
            let chans: Vec<(ChannelId, String)> = ports
                .endpoints()
                .map(|(id, name)| (id, name.to_ascii_lowercase()))
                .collect();
            for (_, name) in &chans {
                if seen.insert(name.clone(), ()).is_some() {
                    return Err(SetupError::Config(format!("endpoint {name} defined twice")));
                }
            }
            out.push(TdmSlice { ports, chans });
        }
    }
    Ok(out)
}

/// The slices not yet handed to a worker, and where the others went (control side).
#[derive(Debug)]
pub(crate) struct TdmPool {
    names: HashMap<String, usize>,
    slots: Vec<(Option<Box<TdmSlice>>, Option<usize>)>,
}

/// What [`TdmPool::place`] decided for a command naming a channel.
#[derive(Debug)]
pub(crate) enum Placement {
    /// No such channel (the worker will say so).
    Unknown,
    /// The slice is already on the command's worker.
    Placed,
    /// The slice is on another worker (misrouted command).
    Elsewhere(usize),
    /// First use: hand this slice (pool index) to the worker before the command.
    Adopt(usize, Box<TdmSlice>),
}

impl TdmPool {
    /// A pool of unplaced slices.
    pub(crate) fn new(slices: Vec<TdmSlice>) -> TdmPool {
        let mut names = HashMap::new();
        let mut slots = Vec::with_capacity(slices.len());
        for (i, s) in slices.into_iter().enumerate() {
            for (_, n) in &s.chans {
                names.insert(n.clone(), i);
            }
            slots.push((Some(Box::new(s)), None));
        }
        TdmPool { names, slots }
    }

    /// Decides where the slice of `channel` goes for a command routed to `worker`.
    pub(crate) fn place(&mut self, channel: &str, worker: usize) -> Placement {
        let Some(&i) = self.names.get(&channel.to_ascii_lowercase()) else {
            return Placement::Unknown;
        };
        let Some(slot) = self.slots.get_mut(i) else {
            return Placement::Unknown;
        };
        match slot.1 {
            Some(w) if w == worker => Placement::Placed,
            Some(w) => Placement::Elsewhere(w),
            None => match slot.0.take() {
                Some(s) => {
                    slot.1 = Some(worker);
                    Placement::Adopt(i, s)
                }
                None => Placement::Unknown,
            },
        }
    }

    /// Puts back a slice whose hand-over could not be queued.
    pub(crate) fn unplace(&mut self, index: usize, slice: Box<TdmSlice>) {
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = (Some(slice), None);
        }
    }
}

/// Parses a tone-plan name (`etsi`, `north-america`).
pub(crate) fn tone_set(name: &str) -> Option<ToneSet> {
    match name.to_ascii_lowercase().as_str() {
        "etsi" | "itu" | "europe" => Some(ToneSet::ETSI),
        "north-america" | "na" | "us" => Some(ToneSet::NORTH_AMERICA),
        _ => None,
    }
}

fn media_mode(m: Mode) -> MediaMode {
    match m {
        Mode::Inactive => MediaMode::Inactive,
        Mode::SendOnly => MediaMode::SendOnly,
        Mode::RecvOnly => MediaMode::RecvOnly,
        Mode::SendRecv => MediaMode::SendRecv,
        Mode::Confrnce => MediaMode::Conference,
        Mode::Loopback => MediaMode::Loopback,
        Mode::ContTest => MediaMode::ContTest,
        Mode::NetwLoop => MediaMode::NetworkLoopback,
        Mode::NetwTest => MediaMode::NetworkTest,
    }
}

/// The engine's signal for a tone, played toward the line: a call-progress tone of the
/// configured plan, or a steady continuity tone.
fn tone_signal(k: ToneKind) -> Signal {
    let cp = |tone| Signal::Tone {
        tone,
        set: None,
        toward: SignalDirection::Tdm,
    };
    let steady = |freq_hz| Signal::Continuity {
        freq_hz,
        toward: SignalDirection::Tdm,
    };
    match k {
        ToneKind::Dial => cp(CallProgressTone::Dial),
        ToneKind::Ringback => cp(CallProgressTone::Ringback),
        ToneKind::Busy => cp(CallProgressTone::Busy),
        ToneKind::Congestion => cp(CallProgressTone::Congestion),
        ToneKind::CallWaiting => cp(CallProgressTone::CallWaiting),
        ToneKind::StutterDial => cp(CallProgressTone::StutterDial),
        ToneKind::Confirmation => cp(CallProgressTone::Confirmation),
        ToneKind::Continuity => steady(CONTINUITY_HZ),
        ToneKind::ContinuityReturn => steady(CONTINUITY_RETURN_HZ),
    }
}

/// The continuity tone the engine detected at `freq_hz`, if it is one.
fn detected_tone(freq_hz: u32) -> Option<ToneKind> {
    match freq_hz {
        CONTINUITY_HZ => Some(ToneKind::Continuity),
        CONTINUITY_RETURN_HZ => Some(ToneKind::ContinuityReturn),
        _ => None,
    }
}

/// The engine's signal for a [`ChannelSignal`], played toward the line. Characters that
/// are not DTMF digits are skipped; PCM is shared with the command, not copied.
pub(crate) fn engine_signal(s: &ChannelSignal) -> Option<Signal> {
    Some(match s {
        ChannelSignal::Digits(d) => Signal::Dtmf {
            digits: d.chars().filter_map(DtmfDigit::from_char).collect(),
            toward: SignalDirection::Tdm,
        },
        ChannelSignal::Tone(k) => tone_signal(*k),
        ChannelSignal::Play(pcm) => Signal::Play {
            pcm: Arc::clone(pcm),
            toward: SignalDirection::Tdm,
        },
        ChannelSignal::Stop => Signal::Stop,
        ChannelSignal::Ring(_) => return None,
    })
}

fn is_named(b: &PayloadBinding, name: &str) -> bool {
    b.codec.name.eq_ignore_ascii_case(name)
}

/// What a TDM connection negotiated (kept to rebuild its engine parameters on modify).
#[derive(Clone, Debug)]
pub(crate) struct TdmMedia {
    /// Endpoint local name of the channel.
    pub(crate) channel: String,
    /// Payload types, preferred first.
    pub(crate) payloads: Vec<PayloadBinding>,
    /// `a=fmtp` by payload type.
    pub(crate) fmtp: Vec<(u8, String)>,
    /// Our packetization period, ms (0: the default 20).
    pub(crate) ptime_ms: u32,
    /// DTMF toward the IP side.
    pub(crate) dtmf: DtmfMode,
    /// Connection mode.
    pub(crate) mode: Mode,
    /// Our SSRC.
    pub(crate) ssrc: u32,
}

/// The engine parameters for a connection: the first payload that is neither
/// telephone-event nor CN is the audio codec; telephone-event and CN payload types are
/// taken when present; `fmtp` of the audio payload type applies (Opus options).
pub(crate) fn conn_params(m: &TdmMedia) -> Result<ConnParams, EngineError> {
    let audio = m
        .payloads
        .iter()
        .find(|b| !is_named(b, "telephone-event") && !is_named(b, "CN"))
        .ok_or(EngineError::Codec(CodecError::Unsupported))?;
    let fmtp = m
        .fmtp
        .iter()
        .find(|(pt, _)| *pt == audio.pt)
        .map(|(_, f)| f.as_str());
    let channels = (audio.codec.channels > 0).then_some(u16::from(audio.codec.channels));
    let mut p = ConnParams::from_sdp(
        &audio.codec.name,
        audio.codec.clock_rate,
        channels,
        fmtp,
        audio.pt,
    )?;
    let te = m.payloads.iter().find(|b| is_named(b, "telephone-event"));
    if let Some(te) = te {
        p.telephone_event_pt = Some(te.pt);
        p.telephone_event_rate = te.codec.clock_rate;
    }
    p.cn_pt = m.payloads.iter().find(|b| is_named(b, "CN")).map(|b| b.pt);
    p.ptime_ms = if m.ptime_ms == 0 { 20 } else { m.ptime_ms };
    p.mode = media_mode(m.mode);
    p.ssrc = m.ssrc;
    p.dtmf = match (m.dtmf, te.is_some()) {
        (DtmfMode::Auto | DtmfMode::Rfc4733, true) => DtmfTransport::Rfc4733,
        _ => DtmfTransport::Inband,
    };
    Ok(p)
}

/// A relay connection's tie to its channel (copied into the connection; checked once
/// per received packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TdmLink {
    /// Attached to an engine; `false`: inactive (unknown channel or codec).
    pub(crate) active: bool,
    slice: u16,
    chan: u16,
    /// Payload type of the audio packets the engine sends (for the RTCP clock).
    pub(crate) audio_pt: u8,
    /// RTP clock rate of the audio codec.
    pub(crate) clock: u32,
}

impl TdmLink {
    const INACTIVE: TdmLink = TdmLink {
        active: false,
        slice: 0,
        chan: 0,
        audio_pt: 0,
        clock: 8000,
    };
}

/// RTP packets produced by one frame pass, waiting for the backend to send them.
/// Reused: it allocates only while growing to its high-water mark.
#[derive(Debug, Default)]
pub(crate) struct TxBatch {
    data: Vec<u8>,
    items: Vec<TdmTx>,
}

/// One packet of a [`TxBatch`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct TdmTx {
    /// Slot of the connection whose RTP socket sends.
    pub(crate) slot: usize,
    /// Destination.
    pub(crate) to: SocketAddr,
    /// Source address to send from, when known (wildcard binds).
    pub(crate) src: Option<IpAddr>,
    start: usize,
    len: usize,
}

impl TxBatch {
    /// An empty batch with room for a typical pass.
    pub(crate) fn new() -> TxBatch {
        TxBatch {
            data: Vec::with_capacity(64 * 1024),
            items: Vec::with_capacity(256),
        }
    }

    pub(crate) fn push(&mut self, slot: usize, to: SocketAddr, src: Option<IpAddr>, pkt: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(pkt);
        self.items.push(TdmTx {
            slot,
            to,
            src,
            start,
            len: pkt.len(),
        });
    }

    /// Number of packets.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Packet `i` and its bytes.
    pub(crate) fn get(&self, i: usize) -> Option<(TdmTx, &[u8])> {
        let t = *self.items.get(i)?;
        let end = t.start.checked_add(t.len)?;
        Some((t, self.data.get(t.start..end)?))
    }

    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }
}

struct RunChan {
    name: String,
    id: ChannelId,
    engine: ChannelEngine,
}

struct RunSlice {
    ports: TdmPorts,
    chans: Vec<RunChan>,
}

/// Counters of a worker's TDM side (published with the worker statistics).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TdmCounts {
    /// Frames run.
    pub(crate) frames: u64,
    /// Frames skipped because the worker was too late to catch up.
    pub(crate) skipped: u64,
    /// Channels owned.
    pub(crate) channels: u64,
    /// Connections that could not be attached (unknown channel, unsupported codec).
    pub(crate) setup_errors: u64,
    /// Channel read/write errors.
    pub(crate) io_errors: u64,
}

/// A worker's TDM channels: owned slices, their engines and the frame clock.
pub(crate) struct TdmRunner {
    slices: Vec<RunSlice>,
    names: HashMap<String, (u16, u16)>,
    clock: Option<FrameClock>,
    tone_set: ToneSet,
    codec_base: CodecConfig,
    jitter: JitterSettings,
    media: HashMap<usize, TdmMedia>,
    inbuf: Vec<i16>,
    outbuf: Vec<i16>,
    events: Sender<DataplaneEvent>,
    dropped_events: Arc<AtomicU64>,
    pub(crate) counts: TdmCounts,
}

impl std::fmt::Debug for TdmRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdmRunner")
            .field("slices", &self.slices.len())
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

fn emit(events: &Sender<DataplaneEvent>, dropped: &AtomicU64, ev: DataplaneEvent) {
    if events.try_send(ev).is_err() {
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The control-plane form of a port's hook event.
fn line_event(e: HookEvent) -> LineEvent {
    match e {
        HookEvent::OffHook => LineEvent::OffHook,
        HookEvent::OnHook => LineEvent::OnHook,
        HookEvent::Flash => LineEvent::Flash,
    }
}

/// Reports a channel's pending hook events.
fn drain_line_events(
    name: &str,
    ch: &mut impl LineSignalling,
    events: &Sender<DataplaneEvent>,
    dropped: &AtomicU64,
) {
    while let Some(e) = ch.poll_line_event() {
        let ev = DataplaneEvent::Line {
            channel: name.to_owned(),
            event: line_event(e),
        };
        tracing::debug!(?ev, "tdm line event");
        emit(events, dropped, ev);
    }
}

/// Reports a channel engine's pending events.
fn drain_events(c: &mut RunChan, events: &Sender<DataplaneEvent>, dropped: &AtomicU64) {
    while let Some(e) = c.engine.poll_event() {
        let ev = match e {
            EngineEvent::DigitDetected { digit, source } => DataplaneEvent::Digit {
                channel: c.name.clone(),
                digit: digit.to_char(),
                origin: match source {
                    DigitSource::Tdm => DigitOrigin::Tdm,
                    DigitSource::Rfc4733 { .. } => DigitOrigin::Rfc4733,
                },
            },
            EngineEvent::SignalDone => DataplaneEvent::SignalDone {
                channel: c.name.clone(),
            },
            EngineEvent::ToneDetected { freq_hz } => match detected_tone(freq_hz) {
                Some(tone) => DataplaneEvent::ToneDetected {
                    channel: c.name.clone(),
                    tone,
                },
                None => continue,
            },
            // MediaStart is reported by the relay as FirstPacket (the same packet).
            _ => continue,
        };
        tracing::debug!(?ev, "tdm event");
        emit(events, dropped, ev);
    }
}

impl TdmRunner {
    /// No channels yet.
    pub(crate) fn new(events: Sender<DataplaneEvent>, dropped_events: Arc<AtomicU64>) -> Self {
        TdmRunner {
            slices: Vec::new(),
            names: HashMap::new(),
            clock: None,
            tone_set: ToneSet::ETSI,
            codec_base: CodecConfig::default(),
            jitter: JitterSettings::default(),
            media: HashMap::new(),
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            events,
            dropped_events,
            counts: TdmCounts::default(),
        }
    }

    /// Sets the tone plan for engines created from now on.
    pub(crate) fn set_tone_set(&mut self, set: ToneSet) {
        self.tone_set = set;
    }

    /// Codec options and jitter-buffer bounds for the engines and connections.
    pub(crate) fn set_media_options(&mut self, codec: CodecConfig, jitter: JitterSettings) {
        self.codec_base = codec;
        self.jitter = jitter;
    }

    /// Takes ownership of a slice; starts the frame clock with the first one.
    pub(crate) fn adopt(&mut self, slice: TdmSlice, now: Instant) {
        let TdmSlice { ports, chans } = slice;
        let spf = ports.samples_per_frame();
        let Ok(si) = u16::try_from(self.slices.len()) else {
            tracing::error!("too many TDM slices on one worker");
            return;
        };
        let cfg = EngineConfig {
            frame_samples: spf,
            tone_set: self.tone_set,
            jitter: self.jitter,
            ..EngineConfig::default()
        };
        let mut run = Vec::with_capacity(chans.len());
        for (ci, (id, name)) in chans.into_iter().enumerate() {
            let Ok(ci) = u16::try_from(ci) else { break };
            tracing::debug!(channel = %name, "worker runs TDM channel");
            self.names.insert(name.clone(), (si, ci));
            run.push(RunChan {
                name,
                id,
                engine: ChannelEngine::new(cfg),
            });
        }
        self.counts.channels = self.counts.channels.wrapping_add(run.len() as u64);
        self.slices.push(RunSlice { ports, chans: run });
        if self.inbuf.len() < spf {
            self.inbuf.resize(spf, 0);
            self.outbuf.resize(spf, 0);
        }
        if self.clock.is_none() {
            let spf = u32::try_from(spf).unwrap_or(160);
            self.clock = Some(FrameClock::new(now, spf));
        }
    }

    fn chan_mut(&mut self, slice: u16, chan: u16) -> Option<&mut RunChan> {
        self.slices
            .get_mut(usize::from(slice))?
            .chans
            .get_mut(usize::from(chan))
    }

    /// The engine's media statistics of connection `slot` (jitter buffer, concealment).
    pub(crate) fn media_stats(
        &self,
        slot: usize,
        link: &TdmLink,
    ) -> Option<mgw_media::engine::ConnMediaStats> {
        if !link.active {
            return None;
        }
        let c = self
            .slices
            .get(usize::from(link.slice))?
            .chans
            .get(usize::from(link.chan))?;
        c.engine.stats(u32::try_from(slot).ok()?)
    }

    /// Attaches connection `slot` to its channel's engine. Always returns a link; an
    /// inactive one when the channel is not here or the codec cannot be built.
    pub(crate) fn attach(&mut self, slot: usize, m: TdmMedia, seq: u16, ts: u32) -> TdmLink {
        let link = self.connect(slot, &m, Some((seq, ts)));
        self.media.insert(slot, m);
        link
    }

    /// (Re)connects `slot` with `m`: modifies its engine connection when it has one,
    /// adds it otherwise (`seed`: initial sequence number and timestamp).
    fn connect(&mut self, slot: usize, m: &TdmMedia, seed: Option<(u16, u32)>) -> TdmLink {
        let Some(&(si, ci)) = self.names.get(&m.channel.to_ascii_lowercase()) else {
            self.counts.setup_errors = self.counts.setup_errors.wrapping_add(1);
            tracing::warn!(channel = %m.channel, "TDM channel not run by this worker; connection inactive");
            return TdmLink::INACTIVE;
        };
        let id = slot as u32;
        let base = self.codec_base;
        let params = conn_params(m).map(|mut p| {
            // The configured options, lowered by what the remote's fmtp asks for.
            p.codec_config = base;
            if let Some(f) = m
                .fmtp
                .iter()
                .find(|(pt, _)| *pt == p.payload_type)
                .map(|(_, f)| f.as_str())
            {
                p.codec_config.apply_opus_fmtp(f);
            }
            if let Some((seq, ts)) = seed {
                p.initial_seq = seq;
                p.initial_timestamp = ts;
            }
            p
        });
        let Some(c) = self.chan_mut(si, ci) else {
            return TdmLink::INACTIVE;
        };
        let r = params.and_then(|p| {
            let r = if c.engine.connection_params(id).is_some() {
                c.engine.modify_connection(id, p)
            } else {
                c.engine.add_connection(id, p)
            };
            r.map(|()| p)
        });
        match r {
            Ok(p) => TdmLink {
                active: true,
                slice: si,
                chan: ci,
                audio_pt: p.payload_type,
                clock: p.codec.rtp_clock_rate(),
            },
            Err(e) => {
                c.engine.remove_connection(id);
                self.counts.setup_errors = self.counts.setup_errors.wrapping_add(1);
                tracing::warn!(channel = %m.channel, error = %e, "TDM connection media not supported; connection inactive");
                TdmLink::INACTIVE
            }
        }
    }

    /// Applies a modification to connection `slot` (its mode already updated to `mode`).
    pub(crate) fn update(&mut self, slot: usize, u: &ConnUpdate, mode: Mode) -> Option<TdmLink> {
        let mut m = self.media.remove(&slot)?;
        m.mode = mode;
        if let Some(p) = &u.payloads {
            m.payloads.clone_from(p);
        }
        if let Some(f) = &u.fmtp {
            m.fmtp.clone_from(f);
        }
        if let Some(p) = u.ptime_ms {
            m.ptime_ms = p;
        }
        let link = self.connect(slot, &m, None);
        self.media.insert(slot, m);
        Some(link)
    }

    /// Detaches connection `slot` from its engine.
    pub(crate) fn detach(&mut self, slot: usize, link: TdmLink) {
        self.media.remove(&slot);
        if link.active {
            if let Some(c) = self.chan_mut(link.slice, link.chan) {
                c.engine.remove_connection(slot as u32);
            }
        }
    }

    /// An accepted RTP packet for connection `slot`.
    pub(crate) fn on_rtp(&mut self, link: TdmLink, slot: usize, now: Instant, pkt: &[u8]) {
        let Some(c) = self
            .slices
            .get_mut(usize::from(link.slice))
            .and_then(|s| s.chans.get_mut(usize::from(link.chan)))
        else {
            return;
        };
        c.engine.on_rtp(slot as u32, now, pkt);
        drain_events(c, &self.events, &self.dropped_events);
    }

    /// Plays (or stops) a signal on a channel toward the line.
    pub(crate) fn signal(&mut self, channel: &str, s: &ChannelSignal) {
        let Some(&(si, ci)) = self.names.get(&channel.to_ascii_lowercase()) else {
            self.counts.setup_errors = self.counts.setup_errors.wrapping_add(1);
            tracing::warn!(%channel, "signal for a TDM channel this worker does not run");
            return;
        };
        if let ChannelSignal::Ring(on) = *s {
            self.ring(si, ci, channel, on);
            return;
        }
        let (events, dropped) = (self.events.clone(), Arc::clone(&self.dropped_events));
        let Some(c) = self.chan_mut(si, ci) else {
            return;
        };
        let Some(sig) = engine_signal(s) else {
            return;
        };
        if let Err(e) = c.engine.play_signal(sig) {
            tracing::warn!(%channel, error = %e, "signal not played");
        }
        drain_events(c, &events, &dropped);
    }

    /// Rings (or stops ringing) the line of channel `ci` of slice `si`.
    fn ring(&mut self, si: u16, ci: u16, channel: &str, on: bool) {
        let Some(slice) = self.slices.get_mut(usize::from(si)) else {
            return;
        };
        let Some(id) = slice.chans.get(usize::from(ci)).map(|c| c.id) else {
            return;
        };
        let Some(ch) = slice.ports.channel_mut(id) else {
            return;
        };
        match ch.set_ringing(on) {
            Ok(()) => tracing::debug!(%channel, on, "ringing"),
            Err(TdmError::NoSignalling) => {
                self.counts.setup_errors = self.counts.setup_errors.wrapping_add(1);
                tracing::debug!(%channel, "ringing asked of a channel without line signalling");
            }
            Err(e) => {
                self.counts.io_errors = self.counts.io_errors.wrapping_add(1);
                tracing::warn!(%channel, on, error = %e, "ringing failed");
            }
        }
    }

    /// When the next frame is due (`None`: no channels here).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.clock.as_ref().map(FrameClock::next_deadline)
    }

    /// Runs the frames due at `now`; engine packets go to `send(slot, bytes)`. Returns
    /// the number of frames run.
    pub(crate) fn run(&mut self, now: Instant, send: &mut dyn FnMut(u32, &[u8])) -> u32 {
        let Some(clock) = self.clock.as_mut() else {
            return 0;
        };
        let due = clock.poll(now);
        if due.run == 0 {
            return 0;
        }
        if due.skipped > 0 {
            self.counts.skipped = self.counts.skipped.wrapping_add(due.skipped);
            tracing::debug!(skipped = due.skipped, "TDM worker late; frames skipped");
        }
        let first = clock.frames().saturating_sub(u64::from(due.run));
        let (start, frame) = (clock.start(), clock.frame_duration());
        let spf = self.inbuf.len();
        for f in 0..due.run {
            // This frame's nominal time: the engine's jitter buffers see a steady clock.
            let k = u32::try_from(first + u64::from(f) + 1).unwrap_or(u32::MAX);
            let t = frame
                .checked_mul(k)
                .and_then(|d| start.checked_add(d))
                .map_or(now, |t| t.min(now));
            for s in &mut self.slices {
                for c in &mut s.chans {
                    let Some(ch) = s.ports.channel_mut(c.id) else {
                        continue;
                    };
                    if ch.read_frame(&mut self.inbuf[..spf]).is_err() {
                        self.counts.io_errors = self.counts.io_errors.wrapping_add(1);
                        self.inbuf.fill(0);
                    }
                    c.engine
                        .tick(t, &self.inbuf[..spf], &mut self.outbuf[..spf], send);
                    if ch.write_frame(&self.outbuf[..spf]).is_err() {
                        self.counts.io_errors = self.counts.io_errors.wrapping_add(1);
                    }
                    drain_line_events(&c.name, ch, &self.events, &self.dropped_events);
                    drain_events(c, &self.events, &self.dropped_events);
                }
                s.ports.tick();
            }
        }
        self.counts.frames = self.counts.frames.wrapping_add(u64::from(due.run));
        due.run
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Codec;

    fn b(pt: u8, name: &str, rate: u32, ch: u8) -> PayloadBinding {
        PayloadBinding {
            pt,
            codec: Codec {
                name: name.into(),
                clock_rate: rate,
                channels: ch,
            },
        }
    }

    fn media(payloads: Vec<PayloadBinding>) -> TdmMedia {
        TdmMedia {
            channel: "ds/e1-1/1".into(),
            payloads,
            fmtp: vec![(111, "useinbandfec=1".into())],
            ptime_ms: 20,
            dtmf: DtmfMode::Auto,
            mode: Mode::SendRecv,
            ssrc: 7,
        }
    }

    #[test]
    fn negotiation_picks_audio_event_and_cn() {
        let m = media(vec![
            b(101, "TELEPHONE-EVENT", 48000, 1),
            b(13, "CN", 8000, 1),
            b(111, "OPUS", 48000, 2),
            b(0, "PCMU", 8000, 1),
        ]);
        let p = conn_params(&m).unwrap();
        assert_eq!(p.codec, mgw_media::codec::CodecKind::Opus);
        assert_eq!(p.payload_type, 111);
        assert_eq!(p.telephone_event_pt, Some(101));
        assert_eq!(p.telephone_event_rate, 48000);
        assert_eq!(p.cn_pt, Some(13));
        assert_eq!(p.dtmf, DtmfTransport::Rfc4733);
        assert_eq!((p.ssrc, p.ptime_ms, p.mode), (7, 20, MediaMode::SendRecv));
        let mut m = media(vec![
            b(8, "PCMA", 8000, 1),
            b(101, "telephone-event", 8000, 1),
        ]);
        m.dtmf = DtmfMode::InBand;
        m.ptime_ms = 0;
        let p = conn_params(&m).unwrap();
        assert_eq!(
            (p.payload_type, p.dtmf, p.ptime_ms),
            (8, DtmfTransport::Inband, 20)
        );
        let m = media(vec![b(0, "PCMU", 8000, 1)]);
        assert_eq!(conn_params(&m).unwrap().dtmf, DtmfTransport::Inband);
        // Nothing usable: an error, not a panic.
        assert!(conn_params(&media(vec![b(18, "G729", 8000, 1)])).is_err());
        assert!(conn_params(&media(vec![b(101, "telephone-event", 8000, 1)])).is_err());
        assert!(conn_params(&media(vec![])).is_err());
    }

    #[test]
    fn slices_pair_channels_and_place_once() {
        let slices = build_slices(&TdmConfig::default()).unwrap();
        assert_eq!(slices.len(), 30 + 24);
        let s = &slices[2];
        let names: Vec<&str> = s.chans.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["ds/e1-1/3", "ds/e1-2/3"]);
        let mut pool = TdmPool::new(slices);
        assert!(matches!(pool.place("DS/E1-2/3", 1), Placement::Adopt(2, _)));
        assert!(matches!(pool.place("ds/e1-1/3", 1), Placement::Placed));
        assert!(matches!(
            pool.place("ds/e1-1/3", 0),
            Placement::Elsewhere(1)
        ));
        assert!(matches!(pool.place("ds/e1-9/3", 0), Placement::Unknown));
        // Unequal pair: the extra channels of the longer span run alone.
        let mut a = SpanConfig::virtual_span("a", mgw_tdm::Law::Alaw, 3);
        let mut b = SpanConfig::virtual_span("b", mgw_tdm::Law::Ulaw, 2);
        a.loop_with = Some("b".into());
        b.loop_with = Some("a".into());
        let cfg = TdmConfig {
            ptime_ms: 20,
            spans: vec![a.clone(), b],
        };
        let s = build_slices(&cfg).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[2].chans.len(), 1);
        a.loop_with = Some("nowhere".into());
        let bad = TdmConfig {
            ptime_ms: 20,
            spans: vec![a],
        };
        assert!(build_slices(&bad).is_err());
    }

    #[test]
    fn signals_map_to_the_line() {
        match engine_signal(&ChannelSignal::Digits("5x#".into())).unwrap() {
            Signal::Dtmf { digits, toward } => {
                assert_eq!(
                    digits,
                    [
                        DtmfDigit::from_char('5').unwrap(),
                        DtmfDigit::from_char('#').unwrap()
                    ]
                );
                assert_eq!(toward, SignalDirection::Tdm);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            engine_signal(&ChannelSignal::Tone(ToneKind::Busy)).unwrap(),
            Signal::Tone {
                tone: CallProgressTone::Busy,
                set: None,
                toward: SignalDirection::Tdm
            }
        ));
        assert_eq!(engine_signal(&ChannelSignal::Stop), Some(Signal::Stop));
        for (k, hz) in [
            (ToneKind::Continuity, 2010),
            (ToneKind::ContinuityReturn, 1780),
        ] {
            assert_eq!(
                engine_signal(&ChannelSignal::Tone(k)).unwrap(),
                Signal::Continuity {
                    freq_hz: hz,
                    toward: SignalDirection::Tdm
                }
            );
            assert_eq!(detected_tone(hz), Some(k));
        }
        assert_eq!(detected_tone(2100), None);
        let pcm: Arc<[i16]> = Arc::from(vec![1i16, 2, 3]);
        match engine_signal(&ChannelSignal::Play(Arc::clone(&pcm))).unwrap() {
            Signal::Play { pcm: p, toward } => {
                assert!(Arc::ptr_eq(&p, &pcm), "shared, not copied");
                assert_eq!(toward, SignalDirection::Tdm);
            }
            other => panic!("{other:?}"),
        }
        // Ringing is line signalling, not audio: no engine signal.
        assert_eq!(engine_signal(&ChannelSignal::Ring(true)), None);
        assert_eq!(line_event(HookEvent::OffHook), LineEvent::OffHook);
        assert_eq!(line_event(HookEvent::OnHook), LineEvent::OnHook);
        assert_eq!(line_event(HookEvent::Flash), LineEvent::Flash);
        assert!(tone_set("North-America").is_some());
        assert!(tone_set("mars").is_none());
    }
}
