//! The per-channel media engine: one TDM channel (8 kHz linear, one frame per tick) joined
//! to zero or more RTP connections, each with its own codec, payload types, ptime and mode.
//!
//! Sans-IO: the dataplane worker owns one [`ChannelEngine`] per TDM channel and drives it;
//! the engine reads no clock (time is an argument), opens no socket, starts no thread and,
//! after [`ChannelEngine::add_connection`], allocates nothing per packet or frame (except
//! inside the G.722 codec crate, see [`crate::codec`]).
//!
//! ```text
//! on every RTP datagram for connection id:  engine.on_rtp(id, now, bytes)
//! once per frame (20 ms):                   engine.tick(now, tdm_in, tdm_out, &mut |id, pkt| send(id, pkt))
//! after each call:                          while let Some(e) = engine.poll_event() { … }
//! control commands:                         add/modify/remove_connection, play_signal, stop_signals
//! ```
//!
//! ## IP → TDM (per tick)
//! For every connection whose mode receives, the engine pops its jitter buffer
//! ([`crate::jitter`]) until its 8 kHz FIFO holds a frame — once per tick at 20 ms ptime,
//! twice at 10 ms, every other tick at 40 ms — passing as the pop time the moment that
//! packet starts to play, so a connection's ptime need not equal the frame. Each pop is
//! decoded at the codec's rate, concealed when missing (Opus by its own PLC; the others by
//! [`crate::plc::Plc`], which also sees every good frame), brought to 8 kHz
//! ([`crate::codec::resample`]) and queued. The receive side follows a peer that sends
//! another ptime than ours (after three packets the jitter buffer is rebuilt for it).
//!
//! Comfort-noise packets (RFC 3389) go through the jitter buffer with the audio (so they
//! keep their place in the sequence); when one plays, noise at its level replaces silence
//! until audio resumes. Only the level byte is used (white noise, no spectral shaping).
//!
//! Telephone-events (RFC 4733) are handled on arrival by [`crate::rfc4733::EventReceiver`]:
//! a digit start is reported ([`EngineEvent::DigitDetected`] with [`DigitSource::Rfc4733`])
//! and played in-band toward TDM, replacing the connection's audio, until the event's total
//! duration has been played; the connection's audio stays muted for the jitter-buffer delay
//! after that, so an in-band copy of the digit from the peer is not heard twice. The digit
//! is played when the event arrives, i.e. ahead of the audio by the jitter-buffer delay.
//!
//! All received connections are mixed (saturating) with the local signal, if it is
//! played toward TDM, into the TDM output.
//!
//! ## TDM → IP (per tick)
//! The TDM input goes through the DTMF detector ([`crate::dtmf`], when enabled). Digits are
//! reported as events and, on every sending connection with a negotiated telephone-event
//! payload type and [`DtmfTransport::Rfc4733`] or [`DtmfTransport::Both`], start and end
//! an [`crate::rfc4733::EventSender`] (marker on the first packet, growing duration, three
//! end packets; the event timestamp is the digit's detected start). With `Rfc4733` the digit
//! is muted from that connection's audio: the detector needs ~30 ms to decide, so those
//! connections' audio is delayed by [`EngineConfig::dtmf_mute_delay_frames`] frames and a
//! frame is muted when a digit is active in it or in the frames after it.
//!
//! The audio for each sending connection — the TDM input, plus the local signal when played
//! toward IP, plus for a `Conference` connection the other conference connections' received
//! audio — is brought to the codec rate, queued and encoded one ptime at a time. Packets
//! carry V=2, our SSRC, the marker on the first packet of a stream (after creation, a codec
//! change, or a return to a sending mode; also after Opus DTX), sequence numbers shared with
//! telephone-events, and timestamps derived from the engine's sample position at the codec's
//! RTP clock (48 kHz for Opus, 8 kHz for G.722), so they keep advancing while a connection
//! is not sending. [`ChannelEngine::modify_connection`] keeps SSRC, sequence and timestamp.
//!
//! ## Modes and loopback
//! See [`MediaMode`]: `loopback`/`conttest` loop the TDM input back to the TDM output (the
//! circuit loopback of RFC 3435, i.e. a loopback-type continuity test); `netwloop`/
//! `netwtest` send a connection's own decoded audio back to it re-encoded.
//!
//! ## Signals
//! [`ChannelEngine::play_signal`] plays DTMF digits, a call-progress tone
//! ([`crate::tone::ToneGenerator`]), a steady continuity tone (2010 Hz / 1780 Hz) or a
//! shared buffer of PCM (an announcement, played once sample for sample) toward TDM, IP
//! (in-band, every sending connection) or both; a new signal replaces the current one; a
//! timed one (digits, timed tone, PCM) ends with [`EngineEvent::SignalDone`].
//!
//! ## Continuity tones
//! When [`EngineConfig::continuity_detection`] is on, the TDM input also goes through a
//! detector of the continuity tones (Goertzel at 2010 Hz and 1780 Hz on 10 ms blocks, an
//! energy-ratio test and a 60 ms minimum duration; see `tonedet.rs`), which reports each
//! tone onset once as [`EngineEvent::ToneDetected`].

mod conn;
mod dsp;
mod params;
pub mod rtp;
mod tonedet;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub use self::params::{
    ConnMediaStats, ConnParams, DigitSource, DtmfTransport, EngineConfig, EngineError, EngineEvent,
    JitterSettings, MediaMode, Signal, SignalDirection,
};

use self::conn::Conn;
use self::dsp::mix_into;
use crate::dtmf::{DtmfDetector, DtmfEvent};
use crate::tone::{SampleRate, ToneGenerator, CONTINUITY_LEVEL_DBM0};

use self::tonedet::ContinuityDetector;

/// Most frames the in-band-digit mute may delay audio by.
const MAX_MUTE_DELAY: usize = 4;

/// Bounded event queue: events beyond the capacity are counted and dropped.
#[derive(Debug)]
pub(crate) struct EventQueue {
    q: VecDeque<EngineEvent>,
    cap: usize,
    dropped: u64,
}

impl EventQueue {
    fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        EventQueue {
            q: VecDeque::with_capacity(cap),
            cap,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, e: EngineEvent) {
        if self.q.len() < self.cap {
            self.q.push_back(e);
        } else {
            self.dropped += 1;
        }
    }
}

/// Where the samples of the signal being played come from.
// One per channel, replaced only by `play_signal`: the size difference costs nothing, and
// boxing the generator would add an allocation per signal.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum SignalSource {
    /// Digits and tones.
    Gen(ToneGenerator),
    /// Shared PCM, played from `at` on.
    Pcm { pcm: Arc<[i16]>, at: usize },
}

impl SignalSource {
    /// Overwrites `out` with the next samples (zeros after the end).
    fn fill(&mut self, out: &mut [i16]) {
        match self {
            SignalSource::Gen(g) => {
                g.fill(out);
            }
            SignalSource::Pcm { pcm, at } => {
                let rest = pcm.get(*at..).unwrap_or(&[]);
                let n = rest.len().min(out.len());
                out[..n].copy_from_slice(&rest[..n]);
                out[n..].fill(0);
                *at += n;
            }
        }
    }

    fn is_done(&self) -> bool {
        match self {
            SignalSource::Gen(g) => g.is_done(),
            SignalSource::Pcm { pcm, at } => *at >= pcm.len(),
        }
    }

    fn is_timed(&self) -> bool {
        match self {
            SignalSource::Gen(g) => g.is_timed(),
            SignalSource::Pcm { .. } => true,
        }
    }
}

/// The signal being played.
#[derive(Debug)]
struct ActiveSignal {
    src: SignalSource,
    toward: SignalDirection,
}

/// The media engine of one TDM channel. See the [module documentation](self).
#[derive(Debug)]
pub struct ChannelEngine {
    cfg: EngineConfig,
    frame: usize,
    /// Engine position: samples (8 kHz) ticked so far.
    pos: u64,
    epoch: Option<Instant>,
    conns: Vec<Conn>,
    detector: Option<DtmfDetector>,
    tone_detector: Option<ContinuityDetector>,
    signal: Option<ActiveSignal>,
    /// Direction of the signal samples in `sig_buf` this tick, if any.
    sig_now: Option<SignalDirection>,
    sig_buf: Box<[i16]>,
    tin: Box<[i16]>,
    mix: Box<[i16]>,
    txbuf: Box<[i16]>,
    /// The last `mute_delay + 1` TDM input frames, and whether a digit was active in each.
    hist: Box<[i16]>,
    hist_digit: [bool; MAX_MUTE_DELAY + 1],
    mute_delay: usize,
    ticks: u64,
    events: EventQueue,
}

impl ChannelEngine {
    /// A channel with no connections. `frame_samples` is rounded down to a multiple of 80
    /// within 80..=480 and `dtmf_mute_delay_frames` capped at 4.
    pub fn new(cfg: EngineConfig) -> Self {
        let frame = (cfg.frame_samples / 80).clamp(1, 6) * 80;
        let mute_delay = cfg.dtmf_mute_delay_frames.min(MAX_MUTE_DELAY);
        let cfg = EngineConfig {
            frame_samples: frame,
            dtmf_mute_delay_frames: mute_delay,
            ..cfg
        };
        ChannelEngine {
            frame,
            pos: 0,
            epoch: None,
            conns: Vec::with_capacity(4),
            detector: cfg
                .dtmf_detection
                .then(|| DtmfDetector::with_config(SampleRate::Hz8000, cfg.dtmf_config)),
            tone_detector: cfg.continuity_detection.then(ContinuityDetector::new),
            signal: None,
            sig_now: None,
            sig_buf: vec![0; frame].into_boxed_slice(),
            tin: vec![0; frame].into_boxed_slice(),
            mix: vec![0; frame].into_boxed_slice(),
            txbuf: vec![0; frame].into_boxed_slice(),
            hist: vec![0; frame * (mute_delay + 1)].into_boxed_slice(),
            hist_digit: [false; MAX_MUTE_DELAY + 1],
            mute_delay,
            ticks: 0,
            events: EventQueue::new(cfg.event_capacity),
            cfg,
        }
    }

    /// The configuration in use (after rounding).
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Samples per tick.
    pub fn frame_samples(&self) -> usize {
        self.frame
    }

    /// Number of connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Events dropped because the queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.events.dropped
    }

    /// Adds connection `id`, building its codec and buffers (the only allocation).
    pub fn add_connection(&mut self, id: u32, params: ConnParams) -> Result<(), EngineError> {
        if self.conns.iter().any(|c| c.id == id) {
            return Err(EngineError::DuplicateConnection(id));
        }
        let conn = Conn::new(id, params, &self.cfg, self.frame, self.pos)?;
        self.conns.push(conn);
        Ok(())
    }

    /// Changes connection `id`: mode and DTMF transport in place; a new codec, payload
    /// type or ptime rebuilds its media path. SSRC (`params.ssrc` is ignored), sequence
    /// number and timestamp continue.
    pub fn modify_connection(&mut self, id: u32, params: ConnParams) -> Result<(), EngineError> {
        let (cfg, frame, pos) = (self.cfg, self.frame, self.pos);
        let conn = self
            .conns
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or(EngineError::UnknownConnection(id))?;
        conn.modify(params, &cfg, frame, pos)
    }

    /// Removes connection `id` (nothing if unknown).
    pub fn remove_connection(&mut self, id: u32) {
        self.conns.retain(|c| c.id != id);
    }

    /// The parameters of connection `id`.
    pub fn connection_params(&self, id: u32) -> Option<ConnParams> {
        self.conns.iter().find(|c| c.id == id).map(|c| c.params)
    }

    /// Counters of connection `id`.
    pub fn stats(&self, id: u32) -> Option<ConnMediaStats> {
        self.conns.iter().find(|c| c.id == id).map(Conn::stats)
    }

    /// Plays `sig`, replacing any signal in progress.
    pub fn play_signal(&mut self, sig: Signal) -> Result<(), EngineError> {
        let rate = SampleRate::Hz8000;
        let (src, toward) = match sig {
            Signal::Stop => {
                self.stop_signals();
                return Ok(());
            }
            Signal::Dtmf { digits, toward } => (
                SignalSource::Gen(ToneGenerator::dtmf_sequence(
                    &digits,
                    &self.cfg.dtmf_tones,
                    rate,
                )),
                toward,
            ),
            Signal::Tone { tone, set, toward } => {
                let set = set.unwrap_or(self.cfg.tone_set);
                let gen = ToneGenerator::call_progress(&set, tone, rate)
                    .ok_or(EngineError::UnknownTone)?;
                (SignalSource::Gen(gen), toward)
            }
            Signal::Continuity { freq_hz, toward } => {
                if !(1..rate.hz() / 2).contains(&freq_hz) {
                    return Err(EngineError::UnknownTone);
                }
                let gen = ToneGenerator::steady(freq_hz as f32, CONTINUITY_LEVEL_DBM0, rate);
                (SignalSource::Gen(gen), toward)
            }
            Signal::Play { pcm, toward } => (SignalSource::Pcm { pcm, at: 0 }, toward),
        };
        if src.is_done() {
            // Nothing to play (no digits, no samples): done at once.
            self.signal = None;
            self.events.push(EngineEvent::SignalDone);
        } else {
            self.signal = Some(ActiveSignal { src, toward });
        }
        Ok(())
    }

    /// Stops the signal in progress (no [`EngineEvent::SignalDone`]).
    pub fn stop_signals(&mut self) {
        self.signal = None;
    }

    /// Whether a signal is playing.
    pub fn signal_active(&self) -> bool {
        self.signal.is_some()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.q.pop_front()
    }

    /// `now` as 8 kHz samples since the first time the engine was given.
    fn clock8(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        let us = now
            .checked_duration_since(epoch)
            .map_or(0, |d| d.as_micros());
        u64::try_from(us * 8 / 1000).unwrap_or(u64::MAX)
    }

    /// Handles one RTP datagram received for connection `id` at `now`. Unknown ids and
    /// malformed packets are ignored (the latter counted).
    pub fn on_rtp(&mut self, id: u32, now: Instant, packet: &[u8]) {
        let now8 = self.clock8(now);
        if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
            c.on_rtp(now, now8, packet, &mut self.events);
        }
    }

    /// Processes one frame: `tdm_in` is what the telephone side sent, `tdm_out` receives
    /// what it will hear, and every RTP packet due is passed to `send(connection id, bytes)`.
    /// Both slices should hold [`frame_samples`](Self::frame_samples) samples; a shorter
    /// input is zero-padded, and only `tdm_out.len().min(frame)` samples are written.
    pub fn tick(
        &mut self,
        now: Instant,
        tdm_in: &[i16],
        tdm_out: &mut [i16],
        send: &mut dyn FnMut(u32, &[u8]),
    ) {
        let now8 = self.clock8(now);
        let frame = self.frame;
        let pos = self.pos;
        let n_in = tdm_in.len().min(frame);
        self.tin[..n_in].copy_from_slice(&tdm_in[..n_in]);
        self.tin[n_in..].fill(0);

        let digit_active = self.detect_digits(pos);
        if let Some(det) = self.tone_detector.as_mut() {
            let events = &mut self.events;
            det.process(&self.tin, &mut |freq_hz| {
                events.push(EngineEvent::ToneDetected { freq_hz });
            });
        }
        self.render_signal();

        // Receive side.
        for c in &mut self.conns {
            if c.listens() {
                c.rx_tick(now, now8, pos, &self.cfg, &mut self.events);
            } else {
                c.rx_frame.fill(0);
            }
        }

        // TDM output.
        self.mix.fill(0);
        let mut circuit_loop = false;
        for c in &self.conns {
            if c.params.mode.receives() {
                mix_into(&mut self.mix, &c.rx_frame);
            }
            circuit_loop |= c.params.mode.circuit_loop();
        }
        if circuit_loop {
            mix_into(&mut self.mix, &self.tin);
        }
        let sig_tdm = self.signal_toward(true);
        if sig_tdm {
            mix_into(&mut self.mix, &self.sig_buf);
        }
        let n_out = tdm_out.len().min(frame);
        tdm_out[..n_out].copy_from_slice(&self.mix[..n_out]);

        // Delay line for connections that mute in-band digits.
        let slots = self.mute_delay + 1;
        let slot = (self.ticks % slots as u64) as usize;
        self.hist[slot * frame..(slot + 1) * frame].copy_from_slice(&self.tin);
        self.hist_digit[slot] = digit_active;
        let oldest = (slot + 1) % slots;
        let mute = self.hist_digit[..slots].iter().any(|&d| d);

        // Send side.
        let sig_ip = self.signal_toward(false);
        let end = pos + frame as u64;
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if !c.transmits() {
                continue;
            }
            if c.params.mode.network_loop() {
                self.txbuf.copy_from_slice(&c.rx_frame);
            } else {
                if c.mutes_inband() {
                    if mute {
                        self.txbuf.fill(0);
                    } else {
                        self.txbuf
                            .copy_from_slice(&self.hist[oldest * frame..(oldest + 1) * frame]);
                    }
                } else {
                    self.txbuf.copy_from_slice(&self.tin);
                }
                if sig_ip {
                    mix_into(&mut self.txbuf, &self.sig_buf);
                }
                if c.params.mode == MediaMode::Conference {
                    for (j, other) in self.conns.iter().enumerate() {
                        if j != i && other.params.mode == MediaMode::Conference {
                            mix_into(&mut self.txbuf, &other.rx_frame);
                        }
                    }
                }
            }
            let c = &mut self.conns[i];
            if c.sends_events() {
                c.send_events(end, send);
            }
            c.tx_tick(pos, &self.txbuf, send);
        }

        self.pos = end;
        self.ticks += 1;
    }

    /// Runs the detector on this frame; reports digits and drives the RFC 4733 senders.
    /// Returns whether a digit was active during the frame.
    fn detect_digits(&mut self, pos: u64) -> bool {
        let Some(det) = self.detector.as_mut() else {
            return false;
        };
        det.process(&self.tin);
        let now = pos + self.frame as u64;
        let mut active = det.current_digit().is_some();
        while let Some(e) = det.poll_event() {
            active = true;
            match e {
                DtmfEvent::DigitStart { digit, sample } => {
                    self.events.push(EngineEvent::DigitDetected {
                        digit,
                        source: DigitSource::Tdm,
                    });
                    for c in self.conns.iter_mut().filter(|c| c.sends_events()) {
                        c.digit_start(digit, sample.min(now), now);
                    }
                }
                DtmfEvent::DigitEnd {
                    digit,
                    sample,
                    duration,
                } => {
                    self.events.push(EngineEvent::DigitEnded {
                        digit,
                        source: DigitSource::Tdm,
                        duration_ms: u32::try_from(duration / 8).unwrap_or(u32::MAX),
                    });
                    for c in self.conns.iter_mut().filter(|c| c.sends_events()) {
                        c.digit_end(sample.min(now), now);
                    }
                }
            }
        }
        active
    }

    /// Generates this frame of the local signal into `sig_buf`.
    fn render_signal(&mut self) {
        let Some(s) = self.signal.as_mut() else {
            self.sig_now = None;
            return;
        };
        s.src.fill(&mut self.sig_buf);
        self.sig_now = Some(s.toward);
        if s.src.is_done() {
            if s.src.is_timed() {
                self.events.push(EngineEvent::SignalDone);
            }
            // Its last samples are in `sig_buf` and still play this tick.
            self.signal = None;
        }
    }

    /// Whether this tick's signal samples go toward TDM (`tdm`) or toward IP (`!tdm`).
    fn signal_toward(&self, tdm: bool) -> bool {
        self.sig_now
            .is_some_and(|d| if tdm { d.to_tdm() } else { d.to_ip() })
    }
}
