//! RFC 4733 telephone-events: payload parse/build and the sender and receiver state
//! machines (sans-IO: time is a sample count passed in by the caller).
//!
//! ## Payload (RFC 4733 §2.3)
//! Each event block is four octets: event code (8 bits), E (end) bit, R (reserved)
//! bit, volume (6 bits, −dBm0), duration (16 bits, timestamp units). A payload holds
//! one or more blocks; [`EventPayload::new_checked`] accepts only a non-zero multiple of
//! four octets. When a payload carries several blocks (§2.5.1.5) this module takes
//! the first to start at the packet's RTP timestamp and each following one to start
//! where the previous ended (timestamp plus the sum of the previous durations).
//!
//! ## Sender
//! [`EventSender`] turns "digit started at sample S" / "digit ended at sample E" (as
//! reported by [`crate::dtmf::DtmfDetector`]) into the packet sequence of §2.5.1:
//! the first packet has the marker bit, every packet of an event carries the event's
//! start as its timestamp, the duration grows with each update (one per `ptime`), and
//! the final duration is sent in three packets with the E bit. An event longer than
//! 0xFFFF timestamp units is split into segments (§2.5.1.3): a segment closes at
//! duration 0xFFFF and the next one starts at the old timestamp plus 0xFFFF, without
//! the marker bit.
//!
//! ## Receiver
//! [`EventReceiver`] turns incoming payloads — lost, duplicated, reordered, with
//! redundant end packets — into exactly one [`ReceivedEvent::Start`] and one
//! [`ReceivedEvent::End`] per event. Events are told apart by their timestamp;
//! segments of a long event are joined; an event whose end never arrives ends when
//! nothing has been heard of it for the configured timeout.
//!
//! Sample positions (`u64`) and RTP timestamps share units: the telephone-event clock
//! rate must equal the audio sample rate (8000 for narrowband, RFC 4733 §2.1).

use std::collections::VecDeque;

/// Length of one event block in octets.
pub const BLOCK_LEN: usize = 4;
/// Largest duration one segment can express.
pub const MAX_DURATION: u16 = 0xFFFF;
/// Largest volume value (−63 dBm0).
pub const MAX_VOLUME: u8 = 63;

/// Errors from payload parsing and building.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rfc4733Error {
    /// The payload has no event block.
    #[error("empty telephone-event payload")]
    Empty,
    /// The payload length is not a multiple of four octets.
    #[error("telephone-event payload length {0} is not a multiple of 4")]
    BadLength(usize),
    /// The output buffer cannot hold the payload.
    #[error("output buffer too small for telephone-event payload")]
    BufferTooSmall,
    /// A volume above 63 cannot be encoded.
    #[error("telephone-event volume {0} above 63")]
    BadVolume(u8),
}

/// One event block (validated form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventBlock {
    /// Event code (0–15 are the DTMF digits, see [`crate::dtmf::DtmfDigit`]).
    pub event: u8,
    /// The E bit: this block reports the end of the event.
    pub end: bool,
    /// Power level in −dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl EventBlock {
    /// Parses the first four octets of `b`.
    pub fn parse(b: &[u8]) -> Result<Self, Rfc4733Error> {
        match b {
            [event, flags, d0, d1, ..] => Ok(EventBlock {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3F,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            [] => Err(Rfc4733Error::Empty),
            _ => Err(Rfc4733Error::BadLength(b.len())),
        }
    }

    /// Writes the block into the first four octets of `out`; the R bit is zero.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Rfc4733Error> {
        if self.volume > MAX_VOLUME {
            return Err(Rfc4733Error::BadVolume(self.volume));
        }
        let out = out
            .get_mut(..BLOCK_LEN)
            .ok_or(Rfc4733Error::BufferTooSmall)?;
        let d = self.duration.to_be_bytes();
        out.copy_from_slice(&[
            self.event,
            (u8::from(self.end) << 7) | self.volume,
            d[0],
            d[1],
        ]);
        Ok(BLOCK_LEN)
    }

    /// The block as four octets.
    pub fn to_bytes(&self) -> Result<[u8; BLOCK_LEN], Rfc4733Error> {
        let mut b = [0u8; BLOCK_LEN];
        self.emit(&mut b)?;
        Ok(b)
    }
}

/// A checked, zero-copy view of a telephone-event payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPayload<'a> {
    bytes: &'a [u8],
}

impl<'a> EventPayload<'a> {
    /// Checks that `bytes` is a non-empty whole number of event blocks.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, Rfc4733Error> {
        if bytes.is_empty() {
            return Err(Rfc4733Error::Empty);
        }
        if bytes.len() % BLOCK_LEN != 0 {
            return Err(Rfc4733Error::BadLength(bytes.len()));
        }
        Ok(EventPayload { bytes })
    }

    /// Number of blocks (at least one).
    pub fn len(&self) -> usize {
        self.bytes.len() / BLOCK_LEN
    }

    /// Always false for a checked payload; present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Block `i`, if present.
    pub fn get(&self, i: usize) -> Option<EventBlock> {
        let start = i.checked_mul(BLOCK_LEN)?;
        let chunk = self.bytes.get(start..start.checked_add(BLOCK_LEN)?)?;
        EventBlock::parse(chunk).ok()
    }

    /// The blocks in order.
    pub fn iter(&self) -> impl Iterator<Item = EventBlock> + 'a {
        self.bytes
            .chunks_exact(BLOCK_LEN)
            .filter_map(|c| EventBlock::parse(c).ok())
    }
}

/// Writes `blocks` as one payload into `out`; returns the length written.
pub fn emit_payload(blocks: &[EventBlock], out: &mut [u8]) -> Result<usize, Rfc4733Error> {
    if blocks.is_empty() {
        return Err(Rfc4733Error::Empty);
    }
    let need = blocks
        .len()
        .checked_mul(BLOCK_LEN)
        .ok_or(Rfc4733Error::BufferTooSmall)?;
    if out.len() < need {
        return Err(Rfc4733Error::BufferTooSmall);
    }
    for (b, chunk) in blocks.iter().zip(out.chunks_exact_mut(BLOCK_LEN)) {
        b.emit(chunk)?;
    }
    Ok(need)
}

/// Is timestamp `a` after `b` (RTP wrap-around arithmetic)?
fn ts_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

// ---------------------------------------------------------------------------------
// Sender

/// Sender settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Interval between updates, in timestamp units (160 = 20 ms at 8 kHz).
    pub ptime: u32,
    /// Volume to report, −dBm0 (0–63).
    pub volume: u8,
    /// How many packets carry the final (E bit) report (RFC 4733 recommends three).
    pub end_repeats: u8,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            ptime: 160,
            volume: 10,
            end_repeats: 3,
        }
    }
}

/// One telephone-event packet to send. The RTP layer adds the header: marker bit,
/// a fresh sequence number, and `base.wrapping_add(timestamp as u32)` as timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPacket {
    /// RTP marker bit (first packet of an event).
    pub marker: bool,
    /// Start of the event (or segment), in sample units.
    pub timestamp: u64,
    /// The event block.
    pub block: EventBlock,
}

impl EventPacket {
    /// RTP timestamp of this packet for a stream whose sample 0 has timestamp `base`.
    pub fn rtp_timestamp(&self, base: u32) -> u32 {
        // Truncation is RTP's modulo-2^32 arithmetic.
        base.wrapping_add(self.timestamp as u32)
    }
}

#[derive(Clone, Copy, Debug)]
struct SendActive {
    event: u8,
    seg_start: u64,
    marker_pending: bool,
    next_due: u64,
}

/// RFC 4733 sender for one stream.
#[derive(Clone, Debug)]
pub struct EventSender {
    cfg: SenderConfig,
    active: Option<SendActive>,
    /// Scheduled packets (segment closes and end reports): (due, packet).
    queue: VecDeque<(u64, EventPacket)>,
}

impl EventSender {
    /// A sender; a volume above 63 is clamped to 63 and a zero `ptime` raised to 1.
    pub fn new(mut cfg: SenderConfig) -> Self {
        cfg.volume = cfg.volume.min(MAX_VOLUME);
        cfg.ptime = cfg.ptime.max(1);
        EventSender {
            cfg,
            active: None,
            queue: VecDeque::with_capacity(8),
        }
    }

    /// True when no event is in progress and nothing is left to send.
    pub fn is_idle(&self) -> bool {
        self.active.is_none() && self.queue.is_empty()
    }

    /// The event in progress, if any.
    pub fn current_event(&self) -> Option<u8> {
        self.active.map(|a| a.event)
    }

    /// An event began at sample `start` (≤ `now`). If another event is still in
    /// progress it is ended at `start` first.
    pub fn start(&mut self, event: u8, start: u64, now: u64) {
        if self.active.is_some() {
            self.end(start, now);
        }
        self.active = Some(SendActive {
            event,
            seg_start: start,
            marker_pending: true,
            next_due: now,
        });
    }

    /// The event in progress ended at sample `end` (≤ `now`): schedules the segment
    /// closes a long event needs and the redundant end reports.
    pub fn end(&mut self, end: u64, now: u64) {
        let Some(mut a) = self.active.take() else {
            return;
        };
        let end = end.max(a.seg_start);
        let block = |duration, end| EventBlock {
            event: a.event,
            end,
            volume: self.cfg.volume,
            duration,
        };
        while end - a.seg_start > u64::from(MAX_DURATION) {
            self.queue.push_back((
                now,
                EventPacket {
                    marker: a.marker_pending,
                    timestamp: a.seg_start,
                    block: block(MAX_DURATION, false),
                },
            ));
            a.marker_pending = false;
            a.seg_start += u64::from(MAX_DURATION);
        }
        // In range: the loop above leaves at most MAX_DURATION.
        let duration = u16::try_from(end - a.seg_start).unwrap_or(MAX_DURATION);
        for i in 0..self.cfg.end_repeats.max(1) {
            self.queue.push_back((
                now + u64::from(i) * u64::from(self.cfg.ptime),
                EventPacket {
                    marker: a.marker_pending && i == 0,
                    timestamp: a.seg_start,
                    block: block(duration, true),
                },
            ));
        }
    }

    /// When [`poll_packet`](Self::poll_packet) next has something, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        let q = self.queue.iter().map(|(d, _)| *d).min();
        let a = self.active.map(|a| a.next_due);
        match (q, a) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    /// The next packet due at or before `now`. Call until it returns `None`.
    pub fn poll_packet(&mut self, now: u64) -> Option<EventPacket> {
        if let Some(i) = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, (due, _))| *due <= now)
            .min_by_key(|(_, (due, _))| *due)
            .map(|(i, _)| i)
        {
            return self.queue.remove(i).map(|(_, p)| p);
        }
        let volume = self.cfg.volume;
        let ptime = u64::from(self.cfg.ptime);
        let a = self.active.as_mut()?;
        if a.next_due > now {
            return None;
        }
        let elapsed = now.saturating_sub(a.seg_start);
        let marker = std::mem::take(&mut a.marker_pending);
        let timestamp = a.seg_start;
        let duration = if elapsed >= u64::from(MAX_DURATION) {
            // Close this segment; the next one is reported at once.
            a.seg_start += u64::from(MAX_DURATION);
            MAX_DURATION
        } else {
            a.next_due += ptime;
            if a.next_due <= now {
                a.next_due = now + ptime;
            }
            // elapsed < MAX_DURATION here.
            elapsed as u16
        };
        Some(EventPacket {
            marker,
            timestamp,
            block: EventBlock {
                event: a.event,
                end: false,
                volume,
                duration,
            },
        })
    }
}

// ---------------------------------------------------------------------------------
// Receiver

/// Receiver settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// An event with no news for this many samples is ended.
    pub timeout: u64,
}

impl Default for ReceiverConfig {
    /// 200 ms at 8 kHz.
    fn default() -> Self {
        ReceiverConfig { timeout: 1600 }
    }
}

/// What the receiver reports: one start and one end per event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceivedEvent {
    /// An event began.
    Start {
        /// Event code.
        event: u8,
        /// RTP timestamp of the event's start.
        timestamp: u32,
        /// Local time (samples) when it was recognised.
        at: u64,
    },
    /// The event ended.
    End {
        /// Event code.
        event: u8,
        /// RTP timestamp of the event's start.
        timestamp: u32,
        /// Total duration heard, in timestamp units (all segments).
        duration: u64,
        /// Local time (samples) when the end was recognised.
        at: u64,
        /// True when no end report arrived and the event ended by timeout or because
        /// a newer event began.
        timed_out: bool,
    },
}

#[derive(Clone, Copy, Debug)]
struct RecvActive {
    event: u8,
    start_ts: u32,
    seg_ts: u32,
    base: u64,
    seg_dur: u16,
    last_seen: u64,
}

/// How many finished segment timestamps are remembered to drop late packets.
const RECENT: usize = 8;

/// RFC 4733 receiver for one stream.
#[derive(Clone, Debug)]
pub struct EventReceiver {
    cfg: ReceiverConfig,
    active: Option<RecvActive>,
    recent: [Option<u32>; RECENT],
    recent_next: usize,
    last_ended: Option<u32>,
    events: VecDeque<ReceivedEvent>,
}

impl EventReceiver {
    /// A receiver.
    pub fn new(cfg: ReceiverConfig) -> Self {
        EventReceiver {
            cfg,
            active: None,
            recent: [None; RECENT],
            recent_next: 0,
            last_ended: None,
            events: VecDeque::with_capacity(8),
        }
    }

    /// The event in progress, if any.
    pub fn current_event(&self) -> Option<u8> {
        self.active.map(|a| a.event)
    }

    /// Next pending report.
    pub fn poll_event(&mut self) -> Option<ReceivedEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.active
            .map(|a| a.last_seen.saturating_add(self.cfg.timeout))
    }

    /// Ends an event that has been silent for the timeout.
    pub fn handle_timeout(&mut self, now: u64) {
        if let Some(a) = self.active {
            if now >= a.last_seen.saturating_add(self.cfg.timeout) {
                self.finish(a, now, true);
            }
        }
    }

    /// Handles one telephone-event RTP packet: its marker bit, RTP timestamp and
    /// payload, received at local time `now`. A malformed payload changes nothing.
    pub fn handle_packet(
        &mut self,
        now: u64,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), Rfc4733Error> {
        let p = EventPayload::new_checked(payload)?;
        self.handle_timeout(now);
        let mut ts = timestamp;
        for (i, block) in p.iter().enumerate() {
            self.handle_block(now, marker && i == 0, ts, block);
            ts = ts.wrapping_add(u32::from(block.duration));
        }
        Ok(())
    }

    fn remember(&mut self, ts: u32) {
        self.recent[self.recent_next] = Some(ts);
        self.recent_next = (self.recent_next + 1) % RECENT;
    }

    fn finish(&mut self, a: RecvActive, now: u64, timed_out: bool) {
        self.events.push_back(ReceivedEvent::End {
            event: a.event,
            timestamp: a.start_ts,
            duration: a.base + u64::from(a.seg_dur),
            at: now,
            timed_out,
        });
        self.remember(a.seg_ts);
        self.last_ended = Some(a.seg_ts);
        self.active = None;
    }

    fn begin(&mut self, now: u64, ts: u32, b: EventBlock) {
        let a = RecvActive {
            event: b.event,
            start_ts: ts,
            seg_ts: ts,
            base: 0,
            seg_dur: b.duration,
            last_seen: now,
        };
        self.events.push_back(ReceivedEvent::Start {
            event: b.event,
            timestamp: ts,
            at: now,
        });
        if b.end {
            self.finish(a, now, false);
        } else {
            self.active = Some(a);
        }
    }

    fn handle_block(&mut self, now: u64, marker: bool, ts: u32, b: EventBlock) {
        if self.recent.contains(&Some(ts)) {
            // Duplicate, redundant end, or a straggler of a finished event/segment.
            return;
        }
        match self.active {
            Some(mut a) if a.seg_ts == ts => {
                if a.event != b.event {
                    return;
                }
                a.seg_dur = a.seg_dur.max(b.duration);
                a.last_seen = a.last_seen.max(now);
                if b.end {
                    self.finish(a, now, false);
                } else {
                    self.active = Some(a);
                }
            }
            Some(mut a) if a.event == b.event && !marker && self.continues(&a, ts) => {
                let step = ts.wrapping_sub(a.seg_ts);
                self.remember(a.seg_ts);
                a.base += u64::from(step);
                a.seg_ts = ts;
                a.seg_dur = b.duration;
                a.last_seen = a.last_seen.max(now);
                if b.end {
                    self.finish(a, now, false);
                } else {
                    self.active = Some(a);
                }
            }
            Some(a) if ts_after(ts, a.seg_ts) => {
                self.finish(a, now, true);
                self.begin(now, ts, b);
            }
            Some(_) => {}
            None => {
                if self.last_ended.is_some_and(|l| !ts_after(ts, l)) {
                    return;
                }
                self.begin(now, ts, b);
            }
        }
    }

    /// Is a block at `ts` the next segment of the long event `a` (RFC 4733
    /// §2.5.2.3)? It must start where the segment ended: 0xFFFF after it, or exactly
    /// at the end heard so far.
    fn continues(&self, a: &RecvActive, ts: u32) -> bool {
        let step = ts.wrapping_sub(a.seg_ts);
        step == u32::from(MAX_DURATION) || (a.seg_dur > 0 && step == u32::from(a.seg_dur))
    }
}

impl Default for EventReceiver {
    fn default() -> Self {
        Self::new(ReceiverConfig::default())
    }
}

impl Default for EventSender {
    fn default() -> Self {
        Self::new(SenderConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{DtmfDetector, DtmfDigit, DtmfEvent};
    use crate::tone::{DtmfToneParams, SampleRate, ToneGenerator};

    fn blk(event: u8, end: bool, volume: u8, duration: u16) -> EventBlock {
        EventBlock {
            event,
            end,
            volume,
            duration,
        }
    }

    #[test]
    fn block_bytes() {
        let b = blk(11, true, 10, 1600);
        assert_eq!(b.to_bytes().unwrap(), [11, 0x8A, 0x06, 0x40]);
        assert_eq!(EventBlock::parse(&[11, 0x8A, 0x06, 0x40]).unwrap(), b);
        // R bit ignored on parse.
        assert_eq!(
            EventBlock::parse(&[5, 0x40 | 7, 0, 160]).unwrap(),
            blk(5, false, 7, 160)
        );
        assert_eq!(EventBlock::parse(&[]), Err(Rfc4733Error::Empty));
        assert_eq!(
            EventBlock::parse(&[1, 2, 3]),
            Err(Rfc4733Error::BadLength(3))
        );
        assert_eq!(
            blk(1, false, 64, 0).to_bytes(),
            Err(Rfc4733Error::BadVolume(64))
        );
        assert_eq!(b.emit(&mut [0u8; 3]), Err(Rfc4733Error::BufferTooSmall));
    }

    #[test]
    fn payload_checked_lengths_and_multi() {
        for n in [0usize, 1, 2, 3, 5, 6, 7, 9] {
            assert!(EventPayload::new_checked(&vec![0u8; n]).is_err(), "{n}");
        }
        let blocks = [blk(1, true, 10, 800), blk(2, false, 12, 320)];
        let mut buf = [0u8; 8];
        assert_eq!(emit_payload(&blocks, &mut buf), Ok(8));
        let p = EventPayload::new_checked(&buf).unwrap();
        assert_eq!(p.len(), 2);
        assert!(!p.is_empty());
        assert_eq!(p.iter().collect::<Vec<_>>(), blocks);
        assert_eq!(p.get(1), Some(blocks[1]));
        assert_eq!(p.get(2), None);
        assert_eq!(
            emit_payload(&blocks, &mut [0u8; 7]),
            Err(Rfc4733Error::BufferTooSmall)
        );
        assert_eq!(emit_payload(&[], &mut buf), Err(Rfc4733Error::Empty));
    }

    #[test]
    fn parse_never_panics_on_any_short_input() {
        let mut r = EventReceiver::default();
        for len in 0..64usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let _ = r.handle_packet(len as u64, len % 2 == 0, len as u32 * 1000, &bytes);
            if let Ok(p) = EventPayload::new_checked(&bytes) {
                let v: Vec<_> = p.iter().collect();
                let mut out = vec![0u8; bytes.len()];
                let v2: Vec<_> = v
                    .iter()
                    .map(|b| EventBlock {
                        volume: b.volume,
                        ..*b
                    })
                    .collect();
                emit_payload(&v2, &mut out).unwrap();
                // Round trip equal except the R bit.
                let masked: Vec<u8> = bytes
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| if i % 4 == 1 { b & !0x40 } else { b })
                    .collect();
                assert_eq!(out, masked);
            }
        }
    }

    /// Runs the sender for a digit from `start` to `end`, polling every `step`
    /// samples until idle.
    fn send(
        s: &mut EventSender,
        ev: u8,
        start: u64,
        detect_at: u64,
        end: u64,
        step: u64,
    ) -> Vec<(u64, EventPacket)> {
        let mut out = Vec::new();
        let mut now = detect_at;
        s.start(ev, start, now);
        loop {
            if now >= end && s.current_event().is_some() {
                s.end(end, now);
            }
            while let Some(p) = s.poll_packet(now) {
                out.push((now, p));
            }
            if s.is_idle() {
                return out;
            }
            now += step;
        }
    }

    #[test]
    fn sender_sequence() {
        let mut s = EventSender::default();
        // Digit 5 from sample 1000 to 1800, detected at 1200, polled each 20 ms.
        let pk = send(&mut s, 5, 1000, 1200, 1800, 160);
        let durs: Vec<(bool, bool, u16)> = pk
            .iter()
            .map(|(_, p)| (p.marker, p.block.end, p.block.duration))
            .collect();
        assert_eq!(
            durs,
            vec![
                (true, false, 200),
                (false, false, 360),
                (false, false, 520),
                (false, false, 680),
                (false, true, 800),
                (false, true, 800),
                (false, true, 800),
            ]
        );
        assert!(pk
            .iter()
            .all(|(_, p)| p.timestamp == 1000 && p.block.event == 5));
        // The three end reports go out one ptime apart.
        let t: Vec<u64> = pk[4..].iter().map(|(t, _)| *t).collect();
        assert_eq!(t, vec![1840, 2000, 2160]);
        assert!(s.is_idle());
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(pk[0].1.rtp_timestamp(u32::MAX), 999);
    }

    #[test]
    fn sender_very_short_event_gets_marker_on_end() {
        let mut s = EventSender::default();
        s.start(1, 0, 0);
        s.end(400, 400);
        let mut v = Vec::new();
        for now in [400, 560, 720] {
            while let Some(p) = s.poll_packet(now) {
                v.push(p);
            }
        }
        assert_eq!(v.len(), 3);
        assert!(v[0].marker && !v[1].marker && !v[2].marker);
        assert!(v.iter().all(|p| p.block.end && p.block.duration == 400));
    }

    #[test]
    fn sender_new_event_ends_previous() {
        let mut s = EventSender::default();
        s.start(1, 0, 0);
        assert!(s.poll_packet(0).is_some());
        s.start(2, 800, 800);
        let mut v = Vec::new();
        for now in (800..2000).step_by(160) {
            while let Some(p) = s.poll_packet(now) {
                v.push(p);
            }
        }
        let ends1 = v
            .iter()
            .filter(|p| p.block.event == 1 && p.block.end)
            .count();
        assert_eq!(ends1, 3);
        assert!(v
            .iter()
            .any(|p| p.block.event == 2 && p.marker && p.timestamp == 800));
        assert_eq!(s.current_event(), Some(2));
        assert_eq!(s.poll_timeout(), Some(2080));
    }

    #[test]
    fn sender_long_event_splits_at_ffff() {
        let mut s = EventSender::default();
        let end = 3 * 65_535 + 1000;
        let pk = send(&mut s, 0, 0, 0, end, 160);
        let segs: Vec<u64> = {
            let mut v: Vec<u64> = pk.iter().map(|(_, p)| p.timestamp).collect();
            v.dedup();
            v
        };
        assert_eq!(segs, vec![0, 65_535, 131_070, 196_605]);
        // Each of the first three segments closes with exactly 0xFFFF, no E bit.
        for &ts in &segs[..3] {
            let last = pk.iter().rfind(|(_, p)| p.timestamp == ts).unwrap().1;
            assert_eq!(last.block.duration, MAX_DURATION);
            assert!(!last.block.end);
        }
        assert_eq!(pk.iter().filter(|(_, p)| p.marker).count(), 1);
        let ends: Vec<_> = pk.iter().filter(|(_, p)| p.block.end).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends
            .iter()
            .all(|(_, p)| p.timestamp == 196_605 && p.block.duration == 1000));
        // Durations never decrease within a segment.
        for w in pk.windows(2) {
            if w[0].1.timestamp == w[1].1.timestamp {
                assert!(w[1].1.block.duration >= w[0].1.block.duration);
            }
        }
    }

    #[test]
    fn sender_end_of_long_event_without_updates() {
        // Ended before any poll: the closes come from end() itself.
        let mut s = EventSender::default();
        s.start(9, 0, 0);
        s.end(2 * 65_535 + 5, 2 * 65_535 + 5);
        let mut v = Vec::new();
        let mut now = 2 * 65_535 + 5;
        while !s.is_idle() {
            while let Some(p) = s.poll_packet(now) {
                v.push(p);
            }
            now += 160;
        }
        let d: Vec<(u64, u16, bool, bool)> = v
            .iter()
            .map(|p| (p.timestamp, p.block.duration, p.block.end, p.marker))
            .collect();
        assert_eq!(
            d,
            vec![
                (0, 65_535, false, true),
                (65_535, 65_535, false, false),
                (131_070, 5, true, false),
                (131_070, 5, true, false),
                (131_070, 5, true, false),
            ]
        );
    }

    fn rx_all(r: &mut EventReceiver) -> Vec<ReceivedEvent> {
        std::iter::from_fn(|| r.poll_event()).collect()
    }

    fn pkt(ev: u8, end: bool, dur: u16) -> [u8; 4] {
        blk(ev, end, 10, dur).to_bytes().unwrap()
    }

    #[test]
    fn receiver_basic_with_redundant_ends() {
        let mut r = EventReceiver::default();
        r.handle_packet(0, true, 5000, &pkt(3, false, 160)).unwrap();
        r.handle_packet(160, false, 5000, &pkt(3, false, 320))
            .unwrap();
        r.handle_packet(320, false, 5000, &pkt(3, true, 480))
            .unwrap();
        r.handle_packet(480, false, 5000, &pkt(3, true, 480))
            .unwrap();
        r.handle_packet(640, false, 5000, &pkt(3, true, 480))
            .unwrap();
        assert_eq!(
            rx_all(&mut r),
            vec![
                ReceivedEvent::Start {
                    event: 3,
                    timestamp: 5000,
                    at: 0
                },
                ReceivedEvent::End {
                    event: 3,
                    timestamp: 5000,
                    duration: 480,
                    at: 320,
                    timed_out: false
                },
            ]
        );
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn receiver_loss_dup_reorder() {
        let mut r = EventReceiver::default();
        // Marker packet lost; an update arrives first, then a duplicate, then a late
        // older update, then the end, then more ends, then a stale update.
        r.handle_packet(0, false, 100, &pkt(7, false, 320)).unwrap();
        r.handle_packet(1, false, 100, &pkt(7, false, 320)).unwrap();
        r.handle_packet(2, true, 100, &pkt(7, false, 160)).unwrap();
        r.handle_packet(300, false, 100, &pkt(7, true, 640))
            .unwrap();
        r.handle_packet(301, false, 100, &pkt(7, false, 480))
            .unwrap();
        r.handle_packet(302, false, 100, &pkt(7, true, 640))
            .unwrap();
        let ev = rx_all(&mut r);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(matches!(
            ev[1],
            ReceivedEvent::End {
                duration: 640,
                timed_out: false,
                ..
            }
        ));
        // Only end packets of the next event arrive (all updates lost).
        r.handle_packet(2000, false, 2000, &pkt(8, true, 800))
            .unwrap();
        r.handle_packet(2001, false, 2000, &pkt(8, true, 800))
            .unwrap();
        let ev = rx_all(&mut r);
        assert_eq!(
            ev,
            vec![
                ReceivedEvent::Start {
                    event: 8,
                    timestamp: 2000,
                    at: 2000
                },
                ReceivedEvent::End {
                    event: 8,
                    timestamp: 2000,
                    duration: 800,
                    at: 2000,
                    timed_out: false
                },
            ]
        );
        // A very late packet of the first event is ignored.
        r.handle_packet(2100, false, 100, &pkt(7, false, 160))
            .unwrap();
        assert!(rx_all(&mut r).is_empty());
    }

    #[test]
    fn receiver_same_digit_twice_told_apart_by_timestamp() {
        let mut r = EventReceiver::default();
        r.handle_packet(0, true, 0, &pkt(1, false, 160)).unwrap();
        // End packets of the first press all lost; the second press begins.
        r.handle_packet(1600, true, 1600, &pkt(1, false, 160))
            .unwrap();
        r.handle_packet(1760, false, 1600, &pkt(1, true, 320))
            .unwrap();
        let ev = rx_all(&mut r);
        let starts = ev
            .iter()
            .filter(|e| matches!(e, ReceivedEvent::Start { .. }))
            .count();
        let ends: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e, ReceivedEvent::End { .. }))
            .collect();
        assert_eq!(starts, 2);
        assert_eq!(ends.len(), 2);
        assert!(matches!(
            ends[0],
            ReceivedEvent::End {
                timestamp: 0,
                timed_out: true,
                ..
            }
        ));
        assert!(matches!(
            ends[1],
            ReceivedEvent::End {
                timestamp: 1600,
                timed_out: false,
                ..
            }
        ));
    }

    #[test]
    fn receiver_timeout() {
        let mut r = EventReceiver::new(ReceiverConfig { timeout: 800 });
        r.handle_packet(0, true, 0, &pkt(4, false, 160)).unwrap();
        r.handle_packet(160, false, 0, &pkt(4, false, 320)).unwrap();
        assert_eq!(r.poll_timeout(), Some(960));
        r.handle_timeout(959);
        assert_eq!(r.current_event(), Some(4));
        r.handle_timeout(960);
        assert_eq!(r.current_event(), None);
        let ev = rx_all(&mut r);
        assert_eq!(
            ev[1],
            ReceivedEvent::End {
                event: 4,
                timestamp: 0,
                duration: 320,
                at: 960,
                timed_out: true
            }
        );
        // The real end arriving afterwards changes nothing.
        r.handle_packet(1000, false, 0, &pkt(4, true, 800)).unwrap();
        assert!(rx_all(&mut r).is_empty());
    }

    #[test]
    fn receiver_bad_payload_is_error_without_effect() {
        let mut r = EventReceiver::default();
        assert_eq!(
            r.handle_packet(0, true, 0, &[1, 2, 3]),
            Err(Rfc4733Error::BadLength(3))
        );
        assert_eq!(r.handle_packet(0, true, 0, &[]), Err(Rfc4733Error::Empty));
        assert!(rx_all(&mut r).is_empty());
    }

    #[test]
    fn receiver_multiple_events_in_one_packet() {
        let mut r = EventReceiver::default();
        let mut buf = [0u8; 8];
        emit_payload(&[blk(1, true, 10, 800), blk(2, false, 10, 160)], &mut buf).unwrap();
        r.handle_packet(0, true, 10_000, &buf).unwrap();
        let ev = rx_all(&mut r);
        assert_eq!(
            ev,
            vec![
                ReceivedEvent::Start {
                    event: 1,
                    timestamp: 10_000,
                    at: 0
                },
                ReceivedEvent::End {
                    event: 1,
                    timestamp: 10_000,
                    duration: 800,
                    at: 0,
                    timed_out: false
                },
                ReceivedEvent::Start {
                    event: 2,
                    timestamp: 10_800,
                    at: 0
                },
            ]
        );
        // The same packet again (redundancy) changes nothing.
        r.handle_packet(10, false, 10_000, &buf).unwrap();
        assert!(rx_all(&mut r).is_empty());
    }

    #[test]
    fn receiver_timestamp_wraparound() {
        let mut r = EventReceiver::default();
        let t0 = u32::MAX - 100;
        r.handle_packet(0, true, t0, &pkt(1, true, 160)).unwrap();
        r.handle_packet(2000, true, t0.wrapping_add(1600), &pkt(2, true, 160))
            .unwrap();
        let starts = rx_all(&mut r)
            .iter()
            .filter(|e| matches!(e, ReceivedEvent::Start { .. }))
            .count();
        assert_eq!(starts, 2);
    }

    /// Simple deterministic PRNG for network simulation.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn long_event_through_lossy_network() {
        let mut s = EventSender::default();
        let end = 2 * 65_535 + 4000;
        let pk = send(&mut s, 6, 0, 0, end, 160);
        for seed in 0..20u64 {
            let mut rng = Rng(seed);
            // 20 % loss, 10 % duplication, reordering by swapping neighbours.
            let mut net: Vec<(u64, EventPacket)> = Vec::new();
            for p in &pk {
                if rng.next() % 10 < 2 {
                    continue;
                }
                net.push(*p);
                if rng.next() % 10 == 0 {
                    net.push(*p);
                }
            }
            for i in 1..net.len() {
                if rng.next() % 5 == 0 {
                    net.swap(i - 1, i);
                }
            }
            let mut r = EventReceiver::default();
            let mut arrival = 0;
            for (t, p) in &net {
                // Reordered packets arrive late: local time never goes back.
                arrival = (*t).max(arrival);
                let b = p.block.to_bytes().unwrap();
                r.handle_packet(arrival, p.marker, p.rtp_timestamp(1234), &b)
                    .unwrap();
            }
            r.handle_timeout(u64::MAX);
            let ev = rx_all(&mut r);
            let starts = ev
                .iter()
                .filter(|e| matches!(e, ReceivedEvent::Start { .. }))
                .count();
            let ends: Vec<_> = ev
                .iter()
                .filter_map(|e| match e {
                    ReceivedEvent::End {
                        duration,
                        timestamp,
                        ..
                    } => Some((*duration, *timestamp)),
                    _ => None,
                })
                .collect();
            assert_eq!(starts, 1, "seed {seed}: {ev:?}");
            assert_eq!(ends.len(), 1, "seed {seed}: {ev:?}");
            assert_eq!(ends[0].1, 1234, "seed {seed}");
            // Duration is the true one unless every end packet was lost.
            assert!(
                ends[0].0 <= end && ends[0].0 + 1000 >= end,
                "seed {seed}: {ends:?}"
            );
        }
    }

    fn digits_of(ev: &[DtmfEvent]) -> String {
        ev.iter()
            .filter_map(|e| match e {
                DtmfEvent::DigitStart { digit, .. } => Some(digit.to_char()),
                _ => None,
            })
            .collect()
    }

    /// In-band tones → detector → sender → lossy network → receiver → tone
    /// generator → detector: the same digits come out.
    #[test]
    fn round_trip_through_rfc4733_and_back_to_tones() {
        let rate = SampleRate::Hz8000;
        let digits = [
            DtmfDigit::D1,
            DtmfDigit::D9,
            DtmfDigit::Star,
            DtmfDigit::D0,
            DtmfDigit::D0,
            DtmfDigit::Hash,
            DtmfDigit::A,
            DtmfDigit::D,
        ];
        let params = DtmfToneParams {
            on_ms: 90,
            off_ms: 60,
            ..DtmfToneParams::default()
        };
        for seed in 0..5u64 {
            let mut rng = Rng(seed + 100);
            let mut src = ToneGenerator::dtmf_sequence(&digits, &params, rate);
            let mut det_in = DtmfDetector::new(rate);
            let mut tx = EventSender::default();
            let mut rx = EventReceiver::default();
            let mut received = Vec::new();
            let mut in_digits = String::new();
            let mut frame = [0i16; 160];
            // Network: (deliver_at, packet); 10 % loss, 0–2 frames of jitter.
            let mut net: Vec<(u64, EventPacket)> = Vec::new();
            let mut now = 0u64;
            while now < 8000 * 3 {
                // Near end: tones in, DTMF detected, RFC 4733 out.
                src.fill(&mut frame);
                det_in.process(&frame);
                now += 160;
                while let Some(e) = det_in.poll_event() {
                    match e {
                        DtmfEvent::DigitStart { digit, sample } => {
                            in_digits.push(digit.to_char());
                            tx.start(digit.event_code(), sample, now);
                        }
                        DtmfEvent::DigitEnd { sample, .. } => tx.end(sample, now),
                    }
                }
                while let Some(p) = tx.poll_packet(now) {
                    if rng.next() % 10 != 0 {
                        net.push((now + 160 * (rng.next() % 3), p));
                    }
                }
                // Far end: receive what is due.
                net.sort_by_key(|(t, _)| *t);
                while net.first().is_some_and(|(t, _)| *t <= now) {
                    let (_, p) = net.remove(0);
                    let b = p.block.to_bytes().unwrap();
                    rx.handle_packet(now, p.marker, p.rtp_timestamp(0), &b)
                        .unwrap();
                }
                rx.handle_timeout(now);
                while let Some(e) = rx.poll_event() {
                    if let ReceivedEvent::End {
                        event,
                        timestamp,
                        duration,
                        ..
                    } = e
                    {
                        received.push((event, timestamp, duration));
                    }
                }
            }
            // Far-end playout by timestamp (as a jitter buffer would), then detection.
            let mut audio = vec![0i16; 8000 * 3 + 2000];
            for &(event, ts, dur) in &received {
                let d = DtmfDigit::from_event_code(event).unwrap();
                let mut g = ToneGenerator::dtmf_continuous(d, &params, rate);
                let at = ts as usize;
                g.fill(&mut audio[at..at + dur as usize]);
            }
            let mut det_out = DtmfDetector::new(rate);
            det_out.process(&audio);
            let out_events: Vec<DtmfEvent> = std::iter::from_fn(|| det_out.poll_event()).collect();
            let want: String = digits.iter().map(|d| d.to_char()).collect();
            assert_eq!(in_digits, want, "near-end detection, seed {seed}");
            assert_eq!(
                digits_of(&out_events),
                want,
                "far-end detection, seed {seed}"
            );
        }
    }
}
