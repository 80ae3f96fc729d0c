//! One IP connection of a channel: its receive pipeline (RTP → jitter buffer → decoder →
//! concealment → 8 kHz FIFO, RFC 4733 → in-band digit, CN → noise) and its send pipeline
//! (8 kHz frame → codec rate → FIFO → encoder per ptime → RTP; detector digits → RFC 4733).

use std::time::{Duration, Instant};

use super::dsp::{DualTone, Noise, PcmFifo};
use super::params::{
    ConnMediaStats, ConnParams, DigitSource, DtmfTransport, EngineConfig, EngineError, EngineEvent,
    JitterSettings,
};
use super::rtp::{RtpHeader, HEADER_LEN};
use super::EventQueue;
use crate::codec::resample::{Downsampler2, Upsampler2};
use crate::codec::{Codec, CodecError, CodecKind, Decoder, Encoder};
use crate::dtmf::DtmfDigit;
use crate::jitter::{JitterBuffer, JitterConfig, Playout, PushResult};
use crate::plc::Plc;
use crate::rfc4733::{EventReceiver, EventSender, ReceivedEvent, ReceiverConfig, SenderConfig};

/// First byte of a jitter-buffer entry: what the rest is.
const TAG_AUDIO: u8 = 0;
const TAG_CN: u8 = 1;
/// Longest packet duration handled, ms.
const MAX_PTIME_MS: usize = 120;
/// Largest Opus payload accepted on receive.
const OPUS_MAX_RX_PAYLOAD: usize = 1500;
/// Consecutive packets of a new duration before the receive side follows it.
const PTIME_CONFIRM: u8 = 3;
/// An RFC 4733 event with no news for this long ends (samples at 8 kHz: 200 ms).
const EVENT_TIMEOUT_8K: u64 = 1600;
/// Safety bound on jitter-buffer pops per tick.
const MAX_POPS_PER_TICK: usize = 32;

/// A received telephone-event being played toward TDM.
#[derive(Debug, Clone, Copy)]
struct RxDigit {
    digit: DtmfDigit,
    tone: DualTone,
    played: u64,
    /// Total samples to play, once the end is known.
    total: Option<u64>,
}

/// What one jitter-buffer pop produced.
enum Got {
    Decoded(usize),
    /// A lost frame decoded from the next packet's in-band FEC.
    Recovered(usize),
    ComfortNoise(u8),
    Conceal,
    Silence,
}

/// One connection's media state.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) id: u32,
    pub(super) params: ConnParams,
    codec: Codec,
    audio_rate: u32,
    /// RTP clock / 8000 (1, 2 or 6).
    clock_k: u64,
    /// telephone-event clock / 8000.
    te_k: u64,

    jb: JitterBuffer,
    rx_ptime_ms: u32,
    ptime_seen: (u32, u8),
    rx_scratch: Box<[u8]>,
    plc: Option<Plc>,
    down: Option<Downsampler2>,
    dec: Box<[i16]>,
    dec8: Box<[i16]>,
    rx_fifo: PcmFifo,
    /// This tick's received audio at 8 kHz (zero when the mode does not receive).
    pub(super) rx_frame: Box<[i16]>,
    remote_ssrc: Option<u32>,
    media_started: bool,
    cn_active: bool,
    noise: Noise,
    ev_rx: EventReceiver,
    rx_digit: Option<RxDigit>,
    /// Received audio is muted until this engine position (tail of a played event).
    mute_rx_until: u64,

    up: Option<Upsampler2>,
    up_buf: Box<[i16]>,
    tx_fifo: PcmFifo,
    enc_in: Box<[i16]>,
    pkt: Box<[u8]>,
    seq: u16,
    ts_origin: u32,
    pos_origin: u64,
    /// Engine position of the first sample waiting in `tx_fifo`; `None` while not sending.
    tx_pos: Option<u64>,
    marker_pending: bool,
    ev_tx: EventSender,
    stats: ConnMediaStats,
}

fn jitter_config(
    s: &JitterSettings,
    clock: u32,
    ptime_ms: u32,
    max_payload: usize,
) -> JitterConfig {
    let mut jc = JitterConfig::new(clock, ptime_ms);
    jc.min_delay_ms = s.min_delay_ms;
    jc.max_delay_ms = s.max_delay_ms.max(s.min_delay_ms);
    jc.initial_delay_ms = s.initial_delay_ms;
    jc.capacity = ((2 * jc.max_delay_ms / ptime_ms.max(1)) as usize + 16).max(32);
    // One byte for the entry tag.
    jc.max_payload = max_payload + 1;
    jc
}

/// Largest payload accepted for `ptime_ms` (twice the nominal size, for peers that send
/// longer packets until the receive side follows).
fn max_rx_payload(codec: &Codec, audio_rate: u32, ptime_ms: u32) -> usize {
    match codec.kind() {
        CodecKind::Opus => OPUS_MAX_RX_PAYLOAD,
        _ => {
            let samples = (audio_rate as usize * ptime_ms as usize / 1000) * 2;
            codec.encoder.max_payload_len(samples)
        }
    }
}

impl Conn {
    pub(super) fn new(
        id: u32,
        params: ConnParams,
        cfg: &EngineConfig,
        frame8: usize,
        pos: u64,
    ) -> Result<Self, EngineError> {
        params.validate()?;
        let codec = Codec::new(params.codec, &params.codec_config)?;
        let audio_rate = codec.encoder.sample_rate();
        if !matches!(audio_rate, 8000 | 16000) {
            // Only the 2:1 converter exists; a TDM path runs Opus at 8 or 16 kHz.
            return Err(EngineError::Codec(CodecError::InvalidConfig));
        }
        let clock = params.codec.rtp_clock_rate();
        let ratio = audio_rate as usize / 8000;
        let ptime = params.ptime_ms as usize;
        let max_payload = max_rx_payload(&codec, audio_rate, params.ptime_ms);
        let jb = JitterBuffer::new(jitter_config(
            &cfg.jitter,
            clock,
            params.ptime_ms,
            max_payload,
        ));
        let plc = (!codec.decoder.has_native_plc()).then(|| Plc::new(audio_rate));
        let wide = audio_rate == 16000;
        let max_dec = audio_rate as usize * MAX_PTIME_MS / 1000;
        let enc_samples = audio_rate as usize * ptime / 1000;
        let pkt_len = HEADER_LEN + codec.encoder.max_payload_len(enc_samples).max(16);
        let te_rate = if params.telephone_event_pt.is_some() {
            params.telephone_event_rate
        } else {
            8000
        };
        let te_k = u64::from(te_rate / 8000).max(1);
        Ok(Conn {
            id,
            params,
            audio_rate,
            clock_k: u64::from(clock / 8000).max(1),
            te_k,
            jb,
            rx_ptime_ms: params.ptime_ms,
            ptime_seen: (params.ptime_ms, 0),
            rx_scratch: vec![0; max_payload + 1].into_boxed_slice(),
            plc,
            down: wide.then(Downsampler2::new),
            dec: vec![0; max_dec].into_boxed_slice(),
            dec8: vec![0; max_dec / ratio + 1].into_boxed_slice(),
            rx_fifo: PcmFifo::new(frame8 + 8 * MAX_PTIME_MS + 160),
            rx_frame: vec![0; frame8].into_boxed_slice(),
            remote_ssrc: None,
            media_started: false,
            cn_active: false,
            noise: Noise::new(id.wrapping_mul(0x9E37_79B9) ^ 0x5EED),
            ev_rx: EventReceiver::new(ReceiverConfig {
                timeout: EVENT_TIMEOUT_8K,
            }),
            rx_digit: None,
            mute_rx_until: 0,
            up: wide.then(Upsampler2::new),
            up_buf: vec![0; frame8 * ratio].into_boxed_slice(),
            tx_fifo: PcmFifo::new(2 * (frame8 + 8 * ptime) * ratio),
            enc_in: vec![0; enc_samples].into_boxed_slice(),
            pkt: vec![0; pkt_len].into_boxed_slice(),
            seq: params.initial_seq,
            ts_origin: params.initial_timestamp,
            pos_origin: pos,
            tx_pos: None,
            marker_pending: true,
            ev_tx: EventSender::new(SenderConfig {
                ptime: params.ptime_ms * te_rate / 1000,
                ..SenderConfig::default()
            }),
            codec,
            stats: ConnMediaStats::default(),
        })
    }

    /// Applies new parameters, keeping SSRC, sequence and timestamp continuity. The codec
    /// path is rebuilt only when codec, payload types or ptime change.
    pub(super) fn modify(
        &mut self,
        mut params: ConnParams,
        cfg: &EngineConfig,
        frame8: usize,
        pos: u64,
    ) -> Result<(), EngineError> {
        params.validate()?;
        params.ssrc = self.params.ssrc;
        let old = self.params;
        let same_media = old.codec == params.codec
            && old.codec_config == params.codec_config
            && old.payload_type == params.payload_type
            && old.telephone_event_pt == params.telephone_event_pt
            && old.telephone_event_rate == params.telephone_event_rate
            && old.cn_pt == params.cn_pt
            && old.ptime_ms == params.ptime_ms;
        if !same_media {
            let mut fresh = Conn::new(self.id, params, cfg, frame8, pos)?;
            fresh.seq = self.seq;
            fresh.ts_origin = self.ts_at(pos);
            fresh.pos_origin = pos;
            fresh.remote_ssrc = self.remote_ssrc;
            fresh.media_started = self.media_started;
            fresh.stats = self.stats;
            *self = fresh;
            return Ok(());
        }
        self.params = params;
        if !self.transmits() {
            self.tx_pos = None;
            self.tx_fifo.clear();
        }
        if !(old.mode.receives() || old.mode.network_loop()) && self.listens() {
            self.jb.resync();
            self.rx_fifo.clear();
        }
        Ok(())
    }

    /// Whether the send pipeline runs (sending or network loopback modes).
    pub(super) fn transmits(&self) -> bool {
        self.params.mode.sends() || self.params.mode.network_loop()
    }

    /// Whether the receive pipeline runs.
    pub(super) fn listens(&self) -> bool {
        self.params.mode.receives() || self.params.mode.network_loop()
    }

    /// Whether TDM digits go out as RFC 4733 events on this connection.
    pub(super) fn sends_events(&self) -> bool {
        self.params.mode.sends()
            && self.params.telephone_event_pt.is_some()
            && self.params.dtmf != DtmfTransport::Inband
    }

    /// Whether in-band digits are muted from this connection's audio.
    pub(super) fn mutes_inband(&self) -> bool {
        self.sends_events() && self.params.dtmf == DtmfTransport::Rfc4733
    }

    pub(super) fn stats(&self) -> ConnMediaStats {
        let mut s = self.stats;
        s.jitter = self.jb.stats();
        // Telephone-event packets share the sequence space; the jitter buffer, which sees
        // only audio and CN, counts their numbers as lost.
        s.jitter.lost = s.jitter.lost.saturating_sub(s.events_in);
        s.rx_ptime_ms = self.rx_ptime_ms;
        s
    }

    /// RTP timestamp of engine position `pos` (8 kHz samples).
    fn ts_at(&self, pos: u64) -> u32 {
        let ticks = pos
            .saturating_sub(self.pos_origin)
            .wrapping_mul(self.clock_k);
        // RTP timestamps are modulo 2^32.
        self.ts_origin.wrapping_add(ticks as u32)
    }

    // ----------------------------------------------------------------------------------
    // IP → engine

    pub(super) fn on_rtp(
        &mut self,
        now: Instant,
        now8: u64,
        packet: &[u8],
        events: &mut EventQueue,
    ) {
        let Ok((h, payload)) = RtpHeader::parse(packet) else {
            self.stats.malformed += 1;
            return;
        };
        self.stats.packets_in += 1;
        self.stats.bytes_in += payload.len() as u64;
        let pt = Some(h.payload_type);
        let is_audio = h.payload_type == self.params.payload_type;
        let is_event = pt == self.params.telephone_event_pt;
        let is_cn = pt == self.params.cn_pt;
        if !(is_audio || is_event || is_cn) {
            self.stats.wrong_pt += 1;
            return;
        }
        if !self.listens() {
            self.stats.ignored += 1;
            return;
        }
        if self.remote_ssrc != Some(h.ssrc) {
            if self.remote_ssrc.is_some() {
                self.stats.ssrc_changes += 1;
                self.restart_receive();
                events.push(EngineEvent::SsrcChanged {
                    id: self.id,
                    ssrc: h.ssrc,
                });
            }
            self.remote_ssrc = Some(h.ssrc);
        }
        if is_event {
            self.stats.events_in += 1;
            if self
                .ev_rx
                .handle_packet(now8, h.marker, h.timestamp, payload)
                .is_err()
            {
                self.stats.malformed += 1;
            }
            return;
        }
        let tag = if is_cn {
            self.stats.cn_in += 1;
            let Some(&level) = payload.first() else {
                self.stats.malformed += 1;
                return;
            };
            self.stats.cn_level = Some(level & 0x7F);
            TAG_CN
        } else {
            self.follow_ptime(payload);
            TAG_AUDIO
        };
        let result = match self.rx_scratch.get_mut(1..payload.len() + 1) {
            Some(dst) => {
                dst.copy_from_slice(payload);
                self.rx_scratch[0] = tag;
                let entry = &self.rx_scratch[..payload.len() + 1];
                self.jb.push(now, h.sequence, h.timestamp, h.marker, entry)
            }
            // Larger than any entry: the buffer rejects and counts it.
            None => self
                .jb
                .push(now, h.sequence, h.timestamp, h.marker, payload),
        };
        if result == PushResult::Accepted && !self.media_started {
            self.media_started = true;
            events.push(EngineEvent::MediaStart { id: self.id });
        }
    }

    /// A new peer stream: forget the old one's playout and codec history.
    fn restart_receive(&mut self) {
        self.jb.resync();
        self.codec.decoder.reset();
        if let Some(p) = &mut self.plc {
            p.reset();
        }
        self.cn_active = false;
    }

    /// Follows the peer's packet duration when it differs from ours (asymmetric ptime)
    /// for [`PTIME_CONFIRM`] packets in a row: the jitter buffer is rebuilt for it.
    fn follow_ptime(&mut self, payload: &[u8]) {
        let Ok(n) = self.codec.decoder.samples_in(payload) else {
            return;
        };
        let rate = self.audio_rate as usize;
        if n == 0 || (n * 1000) % rate != 0 {
            return;
        }
        let ms = (n * 1000 / rate) as u32;
        if ms == self.rx_ptime_ms || ms % 10 != 0 || ms as usize > MAX_PTIME_MS {
            self.ptime_seen = (self.rx_ptime_ms, 0);
            return;
        }
        if self.ptime_seen.0 == ms {
            self.ptime_seen.1 += 1;
        } else {
            self.ptime_seen = (ms, 1);
        }
        if self.ptime_seen.1 >= PTIME_CONFIRM {
            let clock = self.params.codec.rtp_clock_rate();
            let max_payload = max_rx_payload(&self.codec, self.audio_rate, ms);
            let old = self.jb.config();
            let settings = JitterSettings {
                min_delay_ms: old.min_delay_ms,
                max_delay_ms: old.max_delay_ms,
                initial_delay_ms: old.initial_delay_ms,
            };
            let jc = jitter_config(&settings, clock, ms, max_payload);
            // Allocation on a change of the peer's ptime only, not per packet.
            self.jb = JitterBuffer::new(jc);
            if self.rx_scratch.len() < max_payload + 1 {
                self.rx_scratch = vec![0; max_payload + 1].into_boxed_slice();
            }
            self.rx_ptime_ms = ms;
            self.ptime_seen = (ms, 0);
            self.stats.rx_ptime_changes += 1;
        }
    }

    // ----------------------------------------------------------------------------------
    // Receive side of a tick

    /// Produces this tick's received audio in `rx_frame`.
    pub(super) fn rx_tick(
        &mut self,
        now: Instant,
        now8: u64,
        pos: u64,
        cfg: &EngineConfig,
        events: &mut EventQueue,
    ) {
        self.poll_received_events(now8, cfg, events);
        let frame = self.rx_frame.len();
        let mut pops = 0;
        while self.rx_fifo.len() < frame && pops < MAX_POPS_PER_TICK {
            pops += 1;
            // The popped packet starts playing after what the FIFO still holds.
            let ahead = Duration::from_micros(self.rx_fifo.len() as u64 * 125);
            self.produce(now + ahead, cfg.comfort_noise);
        }
        let got = self.rx_fifo.pop(&mut self.rx_frame);
        self.rx_frame[got..].fill(0);
        self.render_event(pos);
    }

    fn poll_received_events(&mut self, now8: u64, cfg: &EngineConfig, events: &mut EventQueue) {
        self.ev_rx.handle_timeout(now8);
        let source = DigitSource::Rfc4733 { id: self.id };
        while let Some(e) = self.ev_rx.poll_event() {
            match e {
                ReceivedEvent::Start { event, .. } => {
                    let Some(digit) = DtmfDigit::from_event_code(event) else {
                        continue;
                    };
                    self.rx_digit = Some(RxDigit {
                        digit,
                        tone: DualTone::new(digit, &cfg.dtmf_tones, 8000),
                        played: 0,
                        total: None,
                    });
                    events.push(EngineEvent::DigitDetected { digit, source });
                }
                ReceivedEvent::End {
                    event, duration, ..
                } => {
                    let Some(digit) = DtmfDigit::from_event_code(event) else {
                        continue;
                    };
                    if let Some(r) = self.rx_digit.as_mut().filter(|r| r.digit == digit) {
                        r.total = Some(duration / self.te_k);
                    }
                    let ms = duration.saturating_mul(1000) / (8000 * self.te_k);
                    events.push(EngineEvent::DigitEnded {
                        digit,
                        source,
                        duration_ms: u32::try_from(ms).unwrap_or(u32::MAX),
                    });
                }
            }
        }
    }

    /// Replaces the received audio by the digit being played out (and mutes the tail of
    /// the sender's audio that the jitter buffer still delays).
    fn render_event(&mut self, pos: u64) {
        let frame = self.rx_frame.len();
        let Some(r) = self.rx_digit.as_mut() else {
            if pos < self.mute_rx_until {
                self.rx_frame.fill(0);
            }
            return;
        };
        let left = r.total.map_or(u64::MAX, |t| t.saturating_sub(r.played));
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(frame);
        r.tone.fill(&mut self.rx_frame[..n]);
        self.rx_frame[n..].fill(0);
        r.played += n as u64;
        if r.total.is_some_and(|t| r.played >= t) {
            self.rx_digit = None;
            let delay8 = (self.jb.stats().current_delay_ms.max(0.0) * 8.0) as u64;
            self.mute_rx_until = pos + (frame as u64) * 2 + delay8;
        }
    }

    /// Pops one packet's worth from the jitter buffer into the receive FIFO.
    fn produce(&mut self, at: Instant, comfort_noise: bool) {
        let pkt_samples = (self.audio_rate * self.rx_ptime_ms / 1000) as usize;
        let pkt_samples = pkt_samples.min(self.dec.len());
        let got = match self.jb.pop(at) {
            Playout::Frame { payload, .. } => match payload.split_first() {
                Some((&TAG_CN, rest)) => Got::ComfortNoise(rest.first().copied().unwrap_or(127)),
                Some((_, audio)) => match self.codec.decoder.decode(audio, &mut self.dec) {
                    Ok(n) if n > 0 => Got::Decoded(n),
                    _ => {
                        self.stats.decode_errors += 1;
                        Got::Conceal
                    }
                },
                None => Got::Conceal,
            },
            Playout::Missing { .. } => {
                // Opus: the next packet may carry this frame as in-band FEC (LBRR).
                let next = match self.jb.peek_next() {
                    Some([TAG_AUDIO, next @ ..]) if self.params.codec == CodecKind::Opus => next,
                    _ => &[],
                };
                if next.is_empty() {
                    Got::Conceal
                } else {
                    match self.codec.decoder.decode_fec(next, &mut self.dec) {
                        Ok(n) if n > 0 => Got::Recovered(n),
                        _ => Got::Conceal,
                    }
                }
            }
            Playout::Empty => Got::Silence,
        };
        let n = match got {
            Got::Recovered(n) => {
                self.cn_active = false;
                self.stats.fec_recovered += 1;
                n
            }
            Got::Decoded(n) => {
                self.cn_active = false;
                if let Some(plc) = &mut self.plc {
                    plc.good_frame(&mut self.dec[..n]);
                }
                n
            }
            Got::Conceal => {
                self.stats.concealed_frames += 1;
                match &mut self.plc {
                    Some(plc) => {
                        plc.conceal(&mut self.dec[..pkt_samples]);
                        pkt_samples
                    }
                    None => match self.codec.decoder.conceal(&mut self.dec) {
                        Ok(n) => n,
                        Err(_) => {
                            self.dec[..pkt_samples].fill(0);
                            pkt_samples
                        }
                    },
                }
            }
            Got::ComfortNoise(level) => {
                self.cn_active = true;
                self.noise.set_level(level);
                self.silence(pkt_samples, comfort_noise)
            }
            Got::Silence => self.silence(pkt_samples, comfort_noise),
        };
        let n = n.min(self.dec.len());
        let dropped = match &mut self.down {
            Some(d) => {
                let m = d.process(&self.dec[..n], &mut self.dec8).unwrap_or(0);
                self.rx_fifo.push(&self.dec8[..m])
            }
            None => self.rx_fifo.push(&self.dec[..n]),
        };
        self.stats.fifo_overflow += dropped as u64;
    }

    /// Silence (or comfort noise) for one packet, through the PLC history.
    fn silence(&mut self, n: usize, comfort_noise: bool) -> usize {
        let buf = &mut self.dec[..n];
        if self.cn_active && comfort_noise {
            self.noise.fill(buf);
        } else {
            buf.fill(0);
        }
        if let Some(plc) = &mut self.plc {
            plc.good_frame(buf);
        }
        n
    }

    // ----------------------------------------------------------------------------------
    // Send side of a tick

    /// A TDM digit began at engine sample `start`; now is `now`.
    pub(super) fn digit_start(&mut self, digit: DtmfDigit, start: u64, now: u64) {
        self.ev_tx
            .start(digit.event_code(), start * self.te_k, now * self.te_k);
    }

    /// The TDM digit ended at engine sample `end`.
    pub(super) fn digit_end(&mut self, end: u64, now: u64) {
        self.ev_tx.end(end * self.te_k, now * self.te_k);
    }

    /// Sends the telephone-event packets due at engine position `now`.
    pub(super) fn send_events(&mut self, now: u64, send: &mut dyn FnMut(u32, &[u8])) {
        let Some(pt) = self.params.telephone_event_pt else {
            return;
        };
        while let Some(p) = self.ev_tx.poll_packet(now * self.te_k) {
            let ts = self.ts_at(p.timestamp / self.te_k);
            let Ok(n) = p.block.emit(&mut self.pkt[HEADER_LEN..]) else {
                continue;
            };
            let h = RtpHeader {
                marker: p.marker,
                payload_type: pt,
                sequence: self.seq,
                timestamp: ts,
                ssrc: self.params.ssrc,
            };
            if h.write(&mut self.pkt).is_none() {
                continue;
            }
            self.seq = self.seq.wrapping_add(1);
            self.stats.events_out += 1;
            self.stats.packets_out += 1;
            self.stats.bytes_out += n as u64;
            send(self.id, &self.pkt[..HEADER_LEN + n]);
        }
    }

    /// Feeds one 8 kHz frame (starting at engine position `pos`) to the encoder and sends
    /// every complete packet.
    pub(super) fn tx_tick(&mut self, pos: u64, audio8: &[i16], send: &mut dyn FnMut(u32, &[u8])) {
        if self.tx_pos.is_none() {
            self.tx_pos = Some(pos);
            self.tx_fifo.clear();
            self.marker_pending = true;
        }
        match &mut self.up {
            Some(u) => {
                let m = u.process(audio8, &mut self.up_buf).unwrap_or(0);
                self.tx_fifo.push(&self.up_buf[..m]);
            }
            None => {
                self.tx_fifo.push(audio8);
            }
        }
        let n = self.enc_in.len();
        let n8 = (n as u64 * 8000) / u64::from(self.audio_rate);
        let dtx = self.params.codec == CodecKind::Opus && self.params.codec_config.opus_dtx;
        while n > 0 && self.tx_fifo.len() >= n {
            self.tx_fifo.pop(&mut self.enc_in);
            let start = self.tx_pos.unwrap_or(pos);
            self.tx_pos = Some(start + n8);
            let len = match self
                .codec
                .encoder
                .encode(&self.enc_in, &mut self.pkt[HEADER_LEN..])
            {
                Ok(len) => len,
                Err(_) => {
                    self.stats.encode_errors += 1;
                    continue;
                }
            };
            if dtx && len <= 2 {
                // Opus DTX: nothing to send; the next packet starts a talkspurt.
                self.marker_pending = true;
                continue;
            }
            let h = RtpHeader {
                marker: std::mem::take(&mut self.marker_pending),
                payload_type: self.params.payload_type,
                sequence: self.seq,
                timestamp: self.ts_at(start),
                ssrc: self.params.ssrc,
            };
            if h.write(&mut self.pkt).is_none() {
                continue;
            }
            self.seq = self.seq.wrapping_add(1);
            self.stats.packets_out += 1;
            self.stats.bytes_out += len as u64;
            send(self.id, &self.pkt[..HEADER_LEN + len]);
        }
    }
}
