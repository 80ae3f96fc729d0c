//! Adaptive jitter buffer for the IP→TDM direction (sans-IO).
//!
//! RTP payloads arrive with network jitter, loss, duplication and reordering; the TDM side pulls
//! exactly one frame (one packet duration, `ptime`) per tick from its own clock. The caller
//! passes every arrival time and every tick time; nothing here reads a clock.
//!
//! ```text
//! on every RTP packet:   jb.push(arrival, seq, ts, marker, payload)
//! on every TDM tick:     match jb.pop(now) { Frame{..} => decode, Missing{..} => conceal, Empty => silence }
//! ```
//!
//! ## Storage
//! Payloads are copied into a fixed ring of `capacity` slots of `max_payload` bytes allocated
//! once in [`JitterBuffer::new`]; a slot is chosen by the extended sequence number modulo the
//! capacity, and only packets within `capacity` of the next sequence to play are stored, so
//! memory is bounded whatever arrives. Sequence numbers are widened to `u64` with a rollover
//! count ([`SeqExtender`]); raw `u16` values are never compared with `<`.
//!
//! ## Delay model
//! For each packet the *relative transit* `d = arrival − ts/rate` is computed on our clock.
//! The smallest `d` over the last ~10 s (`min_d`) is the fastest path through the network; a
//! packet's *excess* `x = d − min_d` is its jitter. Playout runs on a fixed grid: the slot with
//! timestamp `T` plays at `P0 + T/rate`, so the fastest packets wait `D = P0 − min_d` (the
//! *current delay*) and a packet is on time iff `x ≤ D`.
//!
//! The *target delay* is the 99th percentile of `x` from an exponentially forgetting histogram
//! (time constant ~500 packets), clamped to `[min_delay, max_delay]`; until 50 packets have been
//! seen it is at least `initial_delay`.
//!
//! ## Adaptation
//! - At a talkspurt start (sequence contiguous but timestamp jumped, or marker bit) and after a
//!   long silence or loss, playout is re-anchored so that the first packet waits exactly the
//!   target delay: silences are stretched or shortened, speech is untouched.
//! - Within a talkspurt the delay moves one frame at a time: when `D` exceeds the target by
//!   more than a frame (plus a small hysteresis) one frame is dropped (at most every
//!   [`DROP_INTERVAL`] ticks, or every tick while `D > max_delay`); when `D` falls below the
//!   target one concealed frame is inserted ([`Playout::Missing`], at most every
//!   [`INSERT_INTERVAL`] ticks).
//! - Clock drift between sender and receiver shows up as a slow trend of `min_d` and is handled
//!   by the same mechanism; an adjustment made while the target has moved by less than half a
//!   frame since the previous one is counted as a *drift correction*.
//!
//! ## Resynchronisation
//! A forward sequence jump of more than [`MAX_DROPOUT`], two consecutive packets more than the
//! misorder limit behind, a timestamp going backwards while the sequence advances, or a forward
//! timestamp jump of more than 30 s restarts the buffer on the new packet. Call
//! [`JitterBuffer::resync`] when the SSRC changes.

use std::time::Instant;

/// Forward sequence jump (in packets) beyond which the stream is treated as restarted.
pub const MAX_DROPOUT: u64 = 3000;
/// Minimum number of ticks between two frame drops within a talkspurt.
pub const DROP_INTERVAL: u64 = 10;
/// Minimum number of ticks between two frame insertions within a talkspurt.
pub const INSERT_INTERVAL: u64 = 5;

/// Histogram bucket width of the excess-delay estimator, in microseconds.
const BUCKET_US: i64 = 2_000;
/// Number of histogram buckets (covers 0..1024 ms of jitter).
const BUCKETS: usize = 512;
/// Per-packet forgetting factor of the histogram (time constant 500 packets).
const FORGET: f64 = 1.0 - 1.0 / 500.0;
/// Quantile of the excess delay that the target delay covers.
const QUANTILE: f64 = 0.99;
/// Packets needed before the estimate may lower the target below `initial_delay`.
const WARMUP_PACKETS: u64 = 50;
/// Packets per block of the sliding minimum of the relative transit.
const MIN_BLOCK: u32 = 64;
/// Number of completed blocks kept by the sliding minimum.
const MIN_BLOCKS: usize = 8;
/// Forward timestamp jump (seconds) treated as a restarted stream.
const MAX_TS_JUMP_S: i64 = 30;

/// Configuration of one [`JitterBuffer`] (one RTP stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream in Hz (8000 for G.711).
    pub clock_rate: u32,
    /// Duration of one packet and of one playout tick, in RTP timestamp units (160 for 20 ms
    /// at 8 kHz).
    pub frame_samples: u32,
    /// Lower bound of the target delay, in milliseconds.
    pub min_delay_ms: u32,
    /// Upper bound of the target delay, in milliseconds.
    pub max_delay_ms: u32,
    /// Target delay used until the jitter estimate has enough samples, in milliseconds.
    pub initial_delay_ms: u32,
    /// Number of payload slots.
    pub capacity: usize,
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
    /// Consecutive ticks reported as [`Playout::Missing`] when nothing arrives before the
    /// buffer declares silence and reports [`Playout::Empty`].
    pub missing_limit: u32,
}

impl JitterConfig {
    /// Defaults for a stream with the given clock rate and packet duration: delay bounds
    /// 20–300 ms starting at 60 ms, 320-byte payloads, concealment for up to 60 ms, and enough
    /// slots for twice the maximum delay.
    pub fn new(clock_rate: u32, ptime_ms: u32) -> Self {
        let clock_rate = clock_rate.max(1000);
        let ptime_ms = ptime_ms.clamp(1, 200);
        let frame_samples = (u64::from(clock_rate) * u64::from(ptime_ms) / 1000).max(1) as u32;
        let max_delay_ms = 300;
        let capacity = ((2 * max_delay_ms / ptime_ms) as usize + 16).max(32);
        let missing_limit = (60 / ptime_ms).max(1);
        JitterConfig {
            clock_rate,
            frame_samples,
            min_delay_ms: 20,
            max_delay_ms,
            initial_delay_ms: 60,
            capacity,
            max_payload: 320,
            missing_limit,
        }
    }
}

/// Outcome of [`JitterBuffer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushResult {
    /// Stored for playout.
    Accepted,
    /// Same sequence number already received; dropped.
    Duplicate,
    /// Arrived after its playout time (or is a stray far behind the stream); dropped.
    TooLate,
    /// Too far ahead of playout or the buffer is full; dropped.
    Overflow,
    /// Payload larger than [`JitterConfig::max_payload`]; dropped.
    TooLarge,
}

/// What the TDM side plays for one tick, from [`JitterBuffer::pop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout<'a> {
    /// A received payload to decode.
    Frame {
        /// The encoded payload as received.
        payload: &'a [u8],
        /// Its RTP sequence number.
        seq: u16,
        /// Its RTP timestamp.
        ts: u32,
        /// Its RTP marker bit.
        marker: bool,
    },
    /// Nothing to play for this slot although speech is expected (lost, not yet arrived, or a
    /// frame inserted to grow the delay): the caller conceals.
    Missing {
        /// RTP timestamp of the slot.
        ts: u32,
    },
    /// No stream to play: before the first packet, or during silence.
    Empty,
}

/// Counters and estimates reported by [`JitterBuffer::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets pushed (all outcomes).
    pub received: u64,
    /// Frames returned as [`Playout::Frame`].
    pub played: u64,
    /// Sequence numbers skipped by playout that never arrived.
    pub lost: u64,
    /// Packets that arrived after their playout slot.
    pub late: u64,
    /// Duplicate packets dropped.
    pub duplicates: u64,
    /// Packets that arrived with a sequence number below the highest already seen.
    pub reordered: u64,
    /// Packets dropped because the buffer was full or they were too far ahead.
    pub overflow: u64,
    /// Oversized payloads dropped.
    pub too_large: u64,
    /// Ticks answered with [`Playout::Missing`].
    pub concealed: u64,
    /// Frames dropped to shrink the delay (including drift corrections).
    pub frames_dropped: u64,
    /// Concealed frames inserted to grow the delay (including drift corrections).
    pub frames_inserted: u64,
    /// Drops or insertions made while the target delay was stable (clock drift).
    pub drift_corrections: u64,
    /// Times the buffer restarted on a sequence/timestamp jump or [`JitterBuffer::resync`].
    pub resyncs: u64,
    /// Buffered packets discarded by a resynchronisation.
    pub flushed: u64,
    /// Packets currently buffered.
    pub buffered: usize,
    /// Current playout delay of the fastest packets, in milliseconds.
    pub current_delay_ms: f64,
    /// Target playout delay, in milliseconds.
    pub target_delay_ms: f64,
    /// RFC 3550 interarrival jitter estimate, in milliseconds.
    pub jitter_ms: f64,
    /// Largest RFC 3550 interarrival jitter estimate seen, in milliseconds.
    pub max_jitter_ms: f64,
}

/// Widens 16-bit RTP sequence numbers to `u64` by counting rollovers.
///
/// The first value is placed in cycle 1 so that packets reordered before it stay positive.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    /// Extends `seq` relative to the highest value seen so far (the nearest value modulo
    /// 2^16), and records it if it is the new highest.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let ext = self.peek(seq);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// Extends `seq` without recording it.
    pub fn peek(&self, seq: u16) -> u64 {
        match self.highest {
            None => (1 << 16) | u64::from(seq),
            Some(h) => {
                let delta = i64::from(seq.wrapping_sub(h as u16) as i16);
                h.saturating_add_signed(delta)
            }
        }
    }

    /// The highest extended value seen, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

/// Sliding minimum over the last `MIN_BLOCKS` blocks of `MIN_BLOCK` samples.
#[derive(Debug, Clone)]
struct SlidingMin {
    blocks: [i64; MIN_BLOCKS],
    filled: usize,
    next: usize,
    current: i64,
    in_current: u32,
}

impl SlidingMin {
    fn new() -> Self {
        SlidingMin {
            blocks: [i64::MAX; MIN_BLOCKS],
            filled: 0,
            next: 0,
            current: i64::MAX,
            in_current: 0,
        }
    }

    fn push(&mut self, v: i64) {
        self.current = self.current.min(v);
        self.in_current += 1;
        if self.in_current == MIN_BLOCK {
            self.blocks[self.next] = self.current;
            self.next = (self.next + 1) % MIN_BLOCKS;
            self.filled = (self.filled + 1).min(MIN_BLOCKS);
            self.current = i64::MAX;
            self.in_current = 0;
        }
    }

    fn get(&self) -> Option<i64> {
        let m = self.blocks[..self.filled]
            .iter()
            .copied()
            .fold(self.current, i64::min);
        (m != i64::MAX).then_some(m)
    }
}

/// Exponentially forgetting histogram of the excess delay.
#[derive(Debug, Clone)]
struct DelayHistogram {
    buckets: Box<[f64]>,
    total: f64,
    increment: f64,
    top: usize,
    samples: u64,
}

impl DelayHistogram {
    fn new() -> Self {
        DelayHistogram {
            buckets: vec![0.0; BUCKETS].into_boxed_slice(),
            total: 0.0,
            increment: 1.0,
            top: 0,
            samples: 0,
        }
    }

    fn add(&mut self, excess_us: i64) {
        let b = usize::try_from(excess_us.max(0) / BUCKET_US)
            .unwrap_or(BUCKETS)
            .min(BUCKETS - 1);
        // Forgetting: instead of scaling every bucket by FORGET, grow the weight of new samples.
        self.increment /= FORGET;
        if self.increment > 1e200 {
            let k = 1.0 / self.increment;
            self.buckets.iter_mut().for_each(|w| *w *= k);
            self.total *= k;
            self.increment = 1.0;
        }
        self.buckets[b] += self.increment;
        self.total += self.increment;
        self.top = self.top.max(b);
        self.samples += 1;
    }

    /// Upper edge (µs) of the bucket holding the `QUANTILE` point, or `None` when empty.
    fn quantile_us(&self) -> Option<i64> {
        if self.samples == 0 {
            return None;
        }
        let tail = (1.0 - QUANTILE) * self.total;
        let mut above = 0.0;
        for b in (0..=self.top).rev() {
            above += self.buckets[b];
            if above > tail {
                return Some((b as i64 + 1) * BUCKET_US);
            }
        }
        Some(BUCKET_US)
    }
}

/// Metadata of one payload slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Extended sequence number, or `u64::MAX` when free.
    seq: u64,
    ts: i64,
    raw_ts: u32,
    len: u16,
    marker: bool,
    arrival_us: i64,
}

const FREE: Slot = Slot {
    seq: u64::MAX,
    ts: 0,
    raw_ts: 0,
    len: 0,
    marker: false,
    arrival_us: 0,
};

/// Playout state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not playing: waiting for a packet (start, silence, after a long loss) and re-anchoring
    /// on the earliest buffered packet once it has waited the target delay.
    Idle,
    /// Playing a talkspurt on the fixed grid.
    Playing,
}

/// Adaptive jitter buffer for one RTP stream. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    frame_us: i64,
    slots: Box<[Slot]>,
    data: Box<[u8]>,
    /// Extended sequence number received at `seen[seq % len]` (duplicate and loss detection).
    seen: Box<[u64]>,
    count: usize,
    epoch: Option<Instant>,

    seq_ext: SeqExtender,
    /// Highest extended timestamp and its raw value (for timestamp extension).
    ts_high: i64,
    ts_high_raw: u32,
    /// No packet played since the last (re)start.
    fresh: bool,
    /// Lowest sequence number that may be stored while `fresh`.
    fresh_lo: u64,
    /// Next sequence number to play (valid when `!fresh`).
    next_seq: u64,
    /// Sequence number of the first packet played since the last (re)start.
    first_played: u64,
    /// Extended timestamp of the next slot to play.
    play_ts: i64,
    /// Candidate restart after a big backward sequence jump.
    probation: Option<u16>,

    state: State,
    conceal_budget: u32,
    ticks: u64,
    last_adjust_tick: u64,
    target_at_adjust: i64,

    min_transit: SlidingMin,
    hist: DelayHistogram,
    target_us: i64,
    current_us: i64,
    last_arrival: Option<(i64, i64)>,
    jitter_us: f64,
    max_jitter_us: f64,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Creates a buffer, allocating all storage. Out-of-range settings are clamped: at least
    /// 4 slots, `min_delay ≤ initial_delay ≤ max_delay`, payloads of at most 65535 bytes.
    pub fn new(cfg: JitterConfig) -> Self {
        let mut cfg = cfg;
        cfg.clock_rate = cfg.clock_rate.max(1000);
        cfg.frame_samples = cfg.frame_samples.max(1);
        cfg.capacity = cfg.capacity.clamp(4, 1 << 16);
        cfg.max_payload = cfg.max_payload.min(usize::from(u16::MAX));
        cfg.max_delay_ms = cfg.max_delay_ms.max(cfg.min_delay_ms);
        cfg.initial_delay_ms = cfg
            .initial_delay_ms
            .clamp(cfg.min_delay_ms, cfg.max_delay_ms);
        let seen_len = (4 * cfg.capacity).max(1024);
        let frame_us = ts_to_us(i64::from(cfg.frame_samples), cfg.clock_rate).max(1);
        let target_us = i64::from(cfg.initial_delay_ms) * 1000;
        JitterBuffer {
            cfg,
            frame_us,
            slots: vec![FREE; cfg.capacity].into_boxed_slice(),
            data: vec![0; cfg.capacity * cfg.max_payload].into_boxed_slice(),
            seen: vec![u64::MAX; seen_len].into_boxed_slice(),
            count: 0,
            epoch: None,
            seq_ext: SeqExtender::default(),
            ts_high: 0,
            ts_high_raw: 0,
            fresh: true,
            fresh_lo: 0,
            next_seq: 0,
            first_played: 0,
            play_ts: 0,
            probation: None,
            state: State::Idle,
            conceal_budget: 0,
            ticks: 0,
            last_adjust_tick: 0,
            target_at_adjust: target_us,
            min_transit: SlidingMin::new(),
            hist: DelayHistogram::new(),
            target_us,
            current_us: 0,
            last_arrival: None,
            jitter_us: 0.0,
            max_jitter_us: 0.0,
            stats: JitterStats::default(),
        }
    }

    /// The configuration in use (after clamping).
    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    /// Number of packets currently buffered.
    pub fn buffered(&self) -> usize {
        self.count
    }

    /// Counters and delay estimates.
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.buffered = self.count;
        s.current_delay_ms = self.current_us as f64 / 1000.0;
        s.target_delay_ms = self.target_us as f64 / 1000.0;
        s.jitter_ms = self.jitter_us / 1000.0;
        s.max_jitter_ms = self.max_jitter_us / 1000.0;
        s
    }

    /// Drops everything buffered and restarts on the next packet (call on an SSRC change).
    /// The jitter statistics are kept.
    pub fn resync(&mut self) {
        self.stats.flushed += self.count as u64;
        self.slots.iter_mut().for_each(|s| *s = FREE);
        self.seen.iter_mut().for_each(|s| *s = u64::MAX);
        self.count = 0;
        self.seq_ext = SeqExtender::default();
        self.fresh = true;
        self.probation = None;
        self.state = State::Idle;
        self.conceal_budget = 0;
        self.min_transit = SlidingMin::new();
        self.last_arrival = None;
        self.stats.resyncs += 1;
    }

    fn micros(&mut self, t: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(t);
        match t.checked_duration_since(epoch) {
            Some(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            None => -i64::try_from(epoch.duration_since(t).as_micros()).unwrap_or(i64::MAX),
        }
    }

    fn ts_us(&self, ts: i64) -> i64 {
        ts_to_us(ts, self.cfg.clock_rate)
    }

    fn extend_ts(&self, ts: u32) -> i64 {
        self.ts_high + i64::from(ts.wrapping_sub(self.ts_high_raw) as i32)
    }

    fn seen_idx(&self, seq: u64) -> usize {
        (seq % self.seen.len() as u64) as usize
    }

    fn slot_idx(&self, seq: u64) -> usize {
        (seq % self.cfg.capacity as u64) as usize
    }

    /// Offers one received RTP packet. `arrival` is when it was received on our clock.
    pub fn push(
        &mut self,
        arrival: Instant,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> PushResult {
        let now = self.micros(arrival);
        self.stats.received += 1;
        if payload.len() > self.cfg.max_payload {
            self.stats.too_large += 1;
            return PushResult::TooLarge;
        }

        // Sequence and timestamp extension, with jump detection.
        let restart = match self.seq_ext.highest() {
            None => true,
            Some(high) => {
                let s = self.seq_ext.peek(seq);
                let ts = self.extend_ts(timestamp);
                let misorder = (self.cfg.capacity as u64).max(100);
                if s > high.saturating_add(MAX_DROPOUT) {
                    true
                } else if s.saturating_add(misorder) < high {
                    if self.probation == Some(seq) {
                        true
                    } else {
                        self.probation = Some(seq.wrapping_add(1));
                        self.stats.late += 1;
                        return PushResult::TooLate;
                    }
                } else {
                    let half = i64::from(self.cfg.frame_samples / 2);
                    let max_jump = MAX_TS_JUMP_S * i64::from(self.cfg.clock_rate);
                    s > high && (ts < self.ts_high - half || ts > self.ts_high + max_jump)
                }
            }
        };
        self.probation = None;
        if restart {
            if self.seq_ext.highest().is_some() {
                self.resync();
            }
            self.ts_high = i64::from(timestamp);
            self.ts_high_raw = timestamp;
            let s = self.seq_ext.extend(seq);
            self.fresh = true;
            self.fresh_lo = s.saturating_sub(self.cfg.capacity as u64 / 4);
        }
        let high_before = self.seq_ext.highest().unwrap_or(0);
        let s = self.seq_ext.extend(seq);
        let ts = self.extend_ts(timestamp);
        // A reordered packet may not move the reference far (it is not checked for jumps).
        let max_jump = MAX_TS_JUMP_S * i64::from(self.cfg.clock_rate);
        if ts > self.ts_high && ts - self.ts_high <= max_jump {
            self.ts_high = ts;
            self.ts_high_raw = timestamp;
        }

        let si = self.seen_idx(s);
        if self.seen[si] == s {
            self.stats.duplicates += 1;
            return PushResult::Duplicate;
        }
        if s < high_before {
            self.stats.reordered += 1;
        }
        self.seen[si] = s;
        self.observe_transit(now, ts);

        let lo = if self.fresh {
            self.fresh_lo
        } else {
            self.next_seq
        };
        let half = i64::from(self.cfg.frame_samples / 2);
        if s < lo || (!self.fresh && ts < self.play_ts - half) {
            self.stats.late += 1;
            if !self.fresh && s < self.next_seq && s >= self.first_played {
                // It was counted as lost when playout skipped it.
                self.stats.lost = self.stats.lost.saturating_sub(1);
            }
            return PushResult::TooLate;
        }
        if s >= lo + self.cfg.capacity as u64 {
            if self.count == 0 && !self.fresh {
                // Nothing buffered: slide the window forward (the gap is counted when played).
                self.skip_to(s);
            } else if self.count == 0 {
                self.fresh_lo = s.saturating_sub(self.cfg.capacity as u64 / 4);
            } else {
                self.stats.overflow += 1;
                return PushResult::Overflow;
            }
        }

        let idx = self.slot_idx(s);
        let start = idx * self.cfg.max_payload;
        self.data[start..start + payload.len()].copy_from_slice(payload);
        // `payload.len() <= max_payload <= u16::MAX` was checked above.
        let len = payload.len() as u16;
        self.slots[idx] = Slot {
            seq: s,
            ts,
            raw_ts: timestamp,
            len,
            marker,
            arrival_us: now,
        };
        self.count += 1;
        PushResult::Accepted
    }

    /// Updates the jitter estimators with one arrival.
    fn observe_transit(&mut self, now: i64, ts: i64) {
        let transit = now - self.ts_us(ts);
        if let Some((prev_now, prev_ts)) = self.last_arrival {
            // RFC 3550 §6.4.1 / A.8 interarrival jitter.
            let dev = ((now - prev_now) - (self.ts_us(ts) - self.ts_us(prev_ts))).abs() as f64;
            self.jitter_us += (dev - self.jitter_us) / 16.0;
            self.max_jitter_us = self.max_jitter_us.max(self.jitter_us);
        }
        self.last_arrival = Some((now, ts));
        self.min_transit.push(transit);
        if let Some(min) = self.min_transit.get() {
            let excess = transit - min;
            // Packets later than the largest allowed delay would be late whatever the target,
            // so they do not pull it up (one would otherwise pin it at the maximum).
            if excess <= i64::from(self.cfg.max_delay_ms) * 1000 {
                self.hist.add(excess);
            }
        }
        self.update_target();
    }

    fn update_target(&mut self) {
        let min = i64::from(self.cfg.min_delay_ms) * 1000;
        let max = i64::from(self.cfg.max_delay_ms) * 1000;
        let mut t = self.hist.quantile_us().unwrap_or(0);
        if self.hist.samples < WARMUP_PACKETS {
            t = t.max(i64::from(self.cfg.initial_delay_ms) * 1000);
        }
        self.target_us = t.clamp(min, max);
    }

    /// Counts the never-received sequence numbers in `[next_seq, to)` as lost and moves
    /// `next_seq` to `to`.
    fn skip_to(&mut self, to: u64) {
        if to <= self.next_seq {
            return;
        }
        let window = self.seen.len() as u64;
        let from = self.next_seq.max(to.saturating_sub(window));
        self.stats.lost += from - self.next_seq;
        for s in from..to {
            if self.seen[self.seen_idx(s)] != s {
                self.stats.lost += 1;
            }
        }
        self.next_seq = to;
    }

    /// The buffered packet with the lowest sequence number, as a slot index.
    fn earliest(&self) -> Option<usize> {
        if self.count == 0 {
            return None;
        }
        let lo = if self.fresh {
            self.fresh_lo
        } else {
            self.next_seq
        };
        (lo..lo + self.cfg.capacity as u64)
            .map(|s| self.slot_idx(s))
            .find(|&i| self.slots[i].seq != u64::MAX)
    }

    fn take(&mut self, idx: usize) -> Slot {
        let slot = self.slots[idx];
        self.slots[idx].seq = u64::MAX;
        self.count -= 1;
        slot
    }

    /// Nothing to play this tick: conceal while the budget lasts (consuming the slot when
    /// `advance`), then report silence.
    fn nothing(&mut self, advance: bool) -> Playout<'static> {
        if self.conceal_budget > 0 {
            self.conceal_budget -= 1;
            self.stats.concealed += 1;
            let ts = self.play_ts;
            if advance {
                self.play_ts += i64::from(self.cfg.frame_samples);
            }
            Playout::Missing { ts: ts as u32 }
        } else {
            Playout::Empty
        }
    }

    fn record_adjust(&mut self) {
        if (self.target_us - self.target_at_adjust).abs() < self.frame_us / 2 {
            self.stats.drift_corrections += 1;
        }
        self.target_at_adjust = self.target_us;
        self.last_adjust_tick = self.ticks;
    }

    /// Returns what to play for the tick at `now` (call once per packet duration).
    pub fn pop(&mut self, now: Instant) -> Playout<'_> {
        let now = self.micros(now);
        self.ticks += 1;
        let half = i64::from(self.cfg.frame_samples / 2);
        let frame = i64::from(self.cfg.frame_samples);

        if self.state == State::Idle {
            let Some(idx) = self.earliest() else {
                return self.nothing(true);
            };
            let c = self.slots[idx];
            let anchor = self
                .min_transit
                .get()
                .unwrap_or(c.arrival_us - self.ts_us(c.ts));
            let start = (self.ts_us(c.ts) + anchor + self.target_us).max(c.arrival_us);
            if now < start {
                return self.nothing(false);
            }
            if self.fresh {
                self.fresh = false;
                self.next_seq = c.seq;
                self.first_played = c.seq;
            }
            self.play_ts = c.ts;
            self.state = State::Playing;
            self.target_at_adjust = self.target_us;
            self.last_adjust_tick = self.ticks;
        }

        // Within a talkspurt: move the delay by at most one frame.
        let min_d = self.min_transit.get().unwrap_or(0);
        self.current_us = now - self.ts_us(self.play_ts) - min_d;
        let since = self.ticks - self.last_adjust_tick;
        let max_us = i64::from(self.cfg.max_delay_ms) * 1000;
        let drop_at = self.target_us + self.frame_us + self.frame_us / 4;
        if self.current_us > drop_at
            && (since >= DROP_INTERVAL || self.current_us > max_us + self.frame_us)
        {
            if let Some(idx) = self.earliest() {
                if (self.slots[idx].ts - self.play_ts).abs() <= half {
                    let slot = self.take(idx);
                    self.skip_to(slot.seq + 1);
                }
            }
            self.play_ts += frame;
            self.current_us -= self.frame_us;
            self.stats.frames_dropped += 1;
            self.record_adjust();
        } else if self.current_us < self.target_us && since >= INSERT_INTERVAL {
            self.stats.frames_inserted += 1;
            self.stats.concealed += 1;
            self.record_adjust();
            return Playout::Missing {
                ts: self.play_ts as u32,
            };
        }

        loop {
            let Some(idx) = self.earliest() else {
                if self.conceal_budget == 0 {
                    self.state = State::Idle;
                    return Playout::Empty;
                }
                return self.nothing(true);
            };
            let c = self.slots[idx];
            if c.ts < self.play_ts - half {
                // Its slot has passed (timestamps not monotonic with sequence numbers).
                self.take(idx);
                self.next_seq = self.next_seq.max(c.seq + 1);
                self.stats.late += 1;
                continue;
            }
            if c.ts <= self.play_ts + half {
                let slot = self.take(idx);
                self.skip_to(slot.seq);
                self.next_seq = slot.seq + 1;
                self.play_ts = slot.ts + frame;
                self.conceal_budget = self.cfg.missing_limit;
                self.stats.played += 1;
                let start = idx * self.cfg.max_payload;
                return Playout::Frame {
                    payload: &self.data[start..start + usize::from(slot.len)],
                    seq: slot.seq as u16,
                    ts: slot.raw_ts,
                    marker: slot.marker,
                };
            }
            // The earliest packet is in the future.
            let gap = (c.ts - self.play_ts + half) / frame;
            if c.seq == self.next_seq {
                // Sequence contiguous, timestamp jumped: the sender was silent.
                self.conceal_budget = 0;
                self.state = State::Idle;
                return Playout::Empty;
            }
            if c.marker || gap > i64::from(self.cfg.missing_limit) {
                // Talkspurt start after losses, or a long loss: re-anchor on it.
                self.state = State::Idle;
                return self.nothing(false);
            }
            let ts = self.play_ts;
            self.play_ts += frame;
            self.stats.concealed += 1;
            return Playout::Missing { ts: ts as u32 };
        }
    }

    /// The payload of the packet that plays right after a [`Playout::Missing`] slot, without
    /// taking it: call it after [`pop`](Self::pop) returned `Missing` to recover the slot
    /// from redundancy carried in the next packet (Opus in-band FEC).
    ///
    /// Returns `Some` only when that packet has already arrived, is the one the next tick
    /// will play (its timestamp is the slot right after the missing one), and its sequence
    /// number immediately follows one that was never played (the missing slot was a lost
    /// packet, not a frame inserted to grow the delay).
    pub fn peek_next(&self) -> Option<&[u8]> {
        if self.fresh || self.state != State::Playing {
            return None;
        }
        let idx = self.earliest()?;
        let c = self.slots[idx];
        let half = i64::from(self.cfg.frame_samples / 2);
        if c.seq <= self.next_seq || (c.ts - self.play_ts).abs() > half {
            return None;
        }
        let start = idx * self.cfg.max_payload;
        self.data.get(start..start + usize::from(c.len))
    }
}

/// Converts RTP timestamp units to microseconds.
fn ts_to_us(ts: i64, rate: u32) -> i64 {
    (i128::from(ts) * 1_000_000 / i128::from(rate.max(1))) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Deterministic pseudo-random numbers (SplitMix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in `[0, n)`.
        fn below(&mut self, n: u64) -> u64 {
            if n == 0 {
                0
            } else {
                self.next() % n
            }
        }
    }

    /// Owned copy of a [`Playout`], with the tick time.
    #[derive(Debug, Clone, PartialEq)]
    enum Out {
        Frame {
            seq: u16,
            ts: u32,
            payload: Vec<u8>,
            tick_us: i64,
        },
        Missing {
            ts: u32,
        },
        Empty,
    }

    #[derive(Debug, Clone)]
    struct Pkt {
        arrival_us: i64,
        seq: u16,
        ts: u32,
        marker: bool,
    }

    /// Virtual clock: `t0 + us`.
    struct Sim {
        t0: Instant,
        jb: JitterBuffer,
    }

    impl Sim {
        fn new(cfg: JitterConfig) -> Self {
            Sim {
                t0: Instant::now(),
                jb: JitterBuffer::new(cfg),
            }
        }
        fn at(&self, us: i64) -> Instant {
            self.t0 + Duration::from_micros(us as u64)
        }
        fn push(&mut self, p: &Pkt) -> PushResult {
            let payload = p.seq.to_be_bytes();
            let at = self.at(p.arrival_us);
            self.jb.push(at, p.seq, p.ts, p.marker, &payload)
        }
        fn pop(&mut self, us: i64) -> Out {
            let at = self.at(us);
            match self.jb.pop(at) {
                Playout::Frame {
                    payload, seq, ts, ..
                } => Out::Frame {
                    seq,
                    ts,
                    payload: payload.to_vec(),
                    tick_us: us,
                },
                Playout::Missing { ts } => Out::Missing { ts },
                Playout::Empty => Out::Empty,
            }
        }
        /// Delivers `pkts` (any order; sorted by arrival here) and ticks every 20 ms at
        /// `phase_us + k·20 ms` until `end_us`, calling `each` after every tick.
        fn run(
            &mut self,
            pkts: &mut [Pkt],
            phase_us: i64,
            end_us: i64,
            mut each: impl FnMut(&Out, &JitterStats),
        ) {
            pkts.sort_by_key(|p| p.arrival_us);
            let mut i = 0;
            let mut tick = phase_us;
            while tick <= end_us {
                while i < pkts.len() && pkts[i].arrival_us <= tick {
                    self.push(&pkts[i].clone());
                    i += 1;
                }
                let out = self.pop(tick);
                each(&out, &self.jb.stats());
                tick += 20_000;
            }
        }
    }

    /// A 20 ms G.711 stream: packet `k` is sent at `k·20 ms·(1 − ppm·1e-6)` on our clock and
    /// delayed by `base_us + U[0, jitter_us)`.
    fn stream(
        n: usize,
        first_seq: u16,
        first_ts: u32,
        base_us: i64,
        jitter_us: u64,
        ppm: f64,
        seed: u64,
    ) -> Vec<Pkt> {
        let mut rng = Rng(seed);
        (0..n)
            .map(|k| {
                let sent = (k as f64 * 20_000.0 / (1.0 + ppm * 1e-6)).round() as i64;
                Pkt {
                    arrival_us: sent + base_us + rng.below(jitter_us) as i64,
                    seq: first_seq.wrapping_add(k as u16),
                    ts: first_ts.wrapping_add(160 * k as u32),
                    marker: k == 0,
                }
            })
            .collect()
    }

    fn fixed_cfg(delay_ms: u32) -> JitterConfig {
        JitterConfig {
            min_delay_ms: delay_ms,
            initial_delay_ms: delay_ms,
            ..JitterConfig::new(8000, 20)
        }
    }

    fn played_seqs(outs: &[Out]) -> Vec<u16> {
        outs.iter()
            .filter_map(|o| match o {
                Out::Frame { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn seq_extender_rolls_over_and_tolerates_reordering() {
        let mut e = SeqExtender::default();
        assert_eq!(e.extend(65534), 0x1_FFFE);
        assert_eq!(e.extend(65535), 0x1_FFFF);
        assert_eq!(e.extend(1), 0x2_0001);
        assert_eq!(
            e.extend(0),
            0x2_0000,
            "late packet from before the wrap of the low byte"
        );
        assert_eq!(e.extend(65535), 0x1_FFFF, "reordered across the rollover");
        assert_eq!(e.highest(), Some(0x2_0001));
        let mut e = SeqExtender::default();
        assert_eq!(e.extend(3), 0x1_0003);
        assert_eq!(
            e.extend(65530),
            0x0_FFFA,
            "before the first packet stays positive"
        );
    }

    #[test]
    fn config_defaults_and_clamping() {
        let c = JitterConfig::new(8000, 20);
        assert_eq!(c.frame_samples, 160);
        assert_eq!(c.missing_limit, 3);
        assert!(c.capacity as u32 * 20 >= 2 * c.max_delay_ms);
        let jb = JitterBuffer::new(JitterConfig {
            min_delay_ms: 100,
            initial_delay_ms: 10,
            max_delay_ms: 50,
            capacity: 1,
            ..c
        });
        assert_eq!(jb.config().max_delay_ms, 100);
        assert_eq!(jb.config().initial_delay_ms, 100);
        assert_eq!(jb.config().capacity, 4);
        assert_eq!(JitterConfig::new(16000, 10).frame_samples, 160);
    }

    #[test]
    fn in_order_plays_every_frame_at_constant_delay() {
        let mut sim = Sim::new(fixed_cfg(40));
        let mut pkts = stream(500, 1000, 12345, 30_000, 0, 0.0, 1);
        let arrivals: Vec<i64> = pkts.iter().map(|p| p.arrival_us).collect();
        let mut outs = Vec::new();
        sim.run(&mut pkts, 7_000, 500 * 20_000 + 200_000, |o, _| {
            outs.push(o.clone())
        });
        let frames: Vec<&Out> = outs
            .iter()
            .filter(|o| matches!(o, Out::Frame { .. }))
            .collect();
        assert_eq!(frames.len(), 500);
        let mut delays = Vec::new();
        for (k, f) in frames.iter().enumerate() {
            let Out::Frame {
                seq,
                ts,
                payload,
                tick_us,
            } = f
            else {
                unreachable!()
            };
            assert_eq!(*seq, 1000u16.wrapping_add(k as u16));
            assert_eq!(*ts, 12345 + 160 * k as u32);
            assert_eq!(payload.as_slice(), &seq.to_be_bytes());
            delays.push(tick_us - arrivals[k]);
        }
        assert!(
            delays.iter().all(|&d| d == delays[0]),
            "delay not constant: {:?}",
            &delays[..5]
        );
        assert!((40_000..60_000).contains(&delays[0]), "delay {}", delays[0]);
        // Before the first frame only Empty; between frames nothing else.
        let first = outs
            .iter()
            .position(|o| matches!(o, Out::Frame { .. }))
            .unwrap();
        assert!(outs[..first].iter().all(|o| *o == Out::Empty));
        assert!(outs[first..first + 500]
            .iter()
            .all(|o| matches!(o, Out::Frame { .. })));
        let s = sim.jb.stats();
        // The end of the stream looks like a loss: `missing_limit` ticks are concealed.
        assert_eq!(
            (s.received, s.played, s.lost, s.late, s.concealed),
            (500, 500, 0, 0, 3)
        );
        assert_eq!(
            outs[first + 500..first + 503],
            [
                Out::Missing {
                    ts: 12345 + 160 * 500
                },
                Out::Missing {
                    ts: 12345 + 160 * 501
                },
                Out::Missing {
                    ts: 12345 + 160 * 502
                }
            ]
        );
        assert!(outs[first + 503..].iter().all(|o| *o == Out::Empty));
        assert_eq!(
            (
                s.frames_dropped,
                s.frames_inserted,
                s.duplicates,
                s.reordered
            ),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn reordered_packets_play_in_order() {
        let mut sim = Sim::new(fixed_cfg(60));
        let mut pkts = stream(400, 7, 0, 20_000, 0, 0.0, 1);
        // Every odd packet overtakes its predecessor by 10 ms; every 10th is 35 ms late.
        for (k, p) in pkts.iter_mut().enumerate() {
            if k % 2 == 1 {
                p.arrival_us -= 30_000;
            } else if k % 10 == 0 {
                p.arrival_us += 35_000;
            }
        }
        let mut outs = Vec::new();
        sim.run(&mut pkts, 3_000, 400 * 20_000 + 300_000, |o, _| {
            outs.push(o.clone())
        });
        let seqs = played_seqs(&outs);
        let expect: Vec<u16> = (0..400u16).map(|k| 7 + k).collect();
        assert_eq!(seqs, expect);
        let s = sim.jb.stats();
        assert!(s.reordered >= 200, "{s:?}");
        assert_eq!((s.late, s.lost, s.concealed), (0, 0, 3), "{s:?}");
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let mut sim = Sim::new(fixed_cfg(40));
        let mut pkts = stream(200, 100, 0, 10_000, 0, 0.0, 1);
        let dups: Vec<Pkt> = pkts
            .iter()
            .map(|p| Pkt {
                arrival_us: p.arrival_us + 3_000,
                ..p.clone()
            })
            .collect();
        pkts.extend(dups);
        // Direct check of the result code.
        let p = pkts[0].clone();
        assert_eq!(sim.push(&p), PushResult::Accepted);
        assert_eq!(sim.push(&p), PushResult::Duplicate);
        let mut outs = Vec::new();
        sim.run(&mut pkts[1..], 0, 200 * 20_000 + 200_000, |o, _| {
            outs.push(o.clone())
        });
        assert_eq!(played_seqs(&outs), (100..300).collect::<Vec<u16>>());
        let s = sim.jb.stats();
        assert_eq!(s.duplicates, 201);
        assert_eq!((s.played, s.lost, s.late), (200, 0, 0));
    }

    #[test]
    fn loss_gives_missing_at_the_right_slot() {
        let mut sim = Sim::new(fixed_cfg(40));
        let mut pkts = stream(100, 0, 0, 10_000, 0, 0.0, 1);
        pkts.retain(|p| p.seq != 10 && !(20..24).contains(&p.seq));
        let mut outs = Vec::new();
        sim.run(&mut pkts, 5_000, 100 * 20_000 + 200_000, |o, _| {
            outs.push(o.clone())
        });
        let first = outs
            .iter()
            .position(|o| matches!(o, Out::Frame { .. }))
            .unwrap();
        let talk = &outs[first..first + 100];
        for (k, o) in talk.iter().enumerate() {
            let ts = 160 * k as u32;
            if k == 10 || (20..24).contains(&k) {
                assert_eq!(*o, Out::Missing { ts }, "slot {k}");
            } else {
                assert!(
                    matches!(o, Out::Frame { seq, ts: t, .. } if *seq == k as u16 && *t == ts),
                    "slot {k}: {o:?}"
                );
            }
        }
        let s = sim.jb.stats();
        // Five losses plus the end of the stream.
        assert_eq!((s.lost, s.concealed, s.played, s.late), (5, 8, 95, 0));
    }

    #[test]
    fn late_packet_is_counted_not_lost() {
        let mut sim = Sim::new(fixed_cfg(40));
        let mut pkts = stream(100, 0, 0, 10_000, 0, 0.0, 1);
        let late = pkts[30].clone();
        pkts.remove(30);
        let mut outs = Vec::new();
        let mut late_result = None;
        let late_at = late.arrival_us + 500_000;
        pkts.sort_by_key(|p| p.arrival_us);
        let mut i = 0;
        let mut tick = 5_000;
        while tick < 100 * 20_000 + 200_000 {
            while i < pkts.len() && pkts[i].arrival_us <= tick {
                sim.push(&pkts[i].clone());
                i += 1;
            }
            if late_result.is_none() && late_at <= tick {
                late_result = Some(sim.push(&Pkt {
                    arrival_us: late_at,
                    ..late.clone()
                }));
            }
            outs.push(sim.pop(tick));
            tick += 20_000;
        }
        assert_eq!(late_result, Some(PushResult::TooLate));
        assert!(outs.contains(&Out::Missing { ts: 30 * 160 }));
        let s = sim.jb.stats();
        assert_eq!((s.late, s.lost, s.played), (1, 0, 99), "{s:?}");
    }

    /// Runs `pkts` and returns (stats at end, late packets while the network was in this phase).
    fn late_rate(s: &JitterStats) -> f64 {
        s.late as f64 / s.received as f64
    }

    #[test]
    fn delay_follows_jitter_up_and_down() {
        let cfg = JitterConfig::new(8000, 20);
        let mut sim = Sim::new(cfg);
        // Phase 1: 5 minutes of 0-60 ms uniform jitter.
        let n1 = 15_000;
        let mut pkts = stream(n1, 0, 0, 20_000, 60_000, 0.0, 42);
        let end1 = n1 as i64 * 20_000;
        let mut samples = Vec::new();
        sim.run(&mut pkts, 11_000, end1, |_, s| samples.push(*s));
        let s1 = sim.jb.stats();
        assert!(late_rate(&s1) < 0.01, "late rate {} {s1:?}", late_rate(&s1));
        assert!(
            s1.target_delay_ms >= 50.0 && s1.target_delay_ms <= 70.0,
            "{s1:?}"
        );
        assert!(
            s1.current_delay_ms >= 50.0 && s1.current_delay_ms <= 100.0,
            "{s1:?}"
        );
        assert!(s1.max_jitter_ms > 10.0, "{s1:?}");
        // Phase 2: 3 minutes of 0-5 ms jitter, continuing the same stream.
        let n2 = 9_000;
        let mut rng = Rng(7);
        let mut pkts: Vec<Pkt> = (n1..n1 + n2)
            .map(|k| Pkt {
                arrival_us: k as i64 * 20_000 + 20_000 + rng.below(5_000) as i64,
                seq: k as u16,
                ts: 160 * k as u32,
                marker: false,
            })
            .collect();
        let mut last = JitterStats::default();
        let late_before = s1.late;
        sim.run(
            &mut pkts,
            end1 + 11_000,
            (n1 + n2) as i64 * 20_000,
            |_, s| last = *s,
        );
        assert!(last.target_delay_ms <= 25.0, "{last:?}");
        assert!(
            last.current_delay_ms <= 50.0 && last.current_delay_ms >= 20.0,
            "{last:?}"
        );
        assert!(last.frames_dropped >= 2, "{last:?}");
        assert!(last.late - late_before < 20, "{last:?}");
        assert!(
            last.played + last.frames_dropped + last.late + 10 >= last.received,
            "{last:?}"
        );
    }

    fn drift_run(ppm: f64) -> (JitterStats, i64, i64) {
        let cfg = JitterConfig::new(8000, 20);
        let mut sim = Sim::new(cfg);
        let n = 180_000; // one hour
        let mut pkts = stream(n, 40_000, 999, 30_000, 10_000, ppm, 5);
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        let mut ticks = 0u64;
        sim.run(&mut pkts, 13_000, n as i64 * 20_000 - 200_000, |o, s| {
            ticks += 1;
            if ticks > 500 && matches!(o, Out::Frame { .. }) {
                let d = (s.current_delay_ms - s.target_delay_ms).round() as i64;
                lo = lo.min(d);
                hi = hi.max(d);
            }
        });
        (sim.jb.stats(), lo, hi)
    }

    #[test]
    fn sender_clock_fast_by_100ppm_for_an_hour() {
        let (s, lo, hi) = drift_run(100.0);
        // 3600 s × 100 ppm = 360 ms = 18 frames to drop.
        assert!((15..=25).contains(&s.frames_dropped), "{s:?}");
        assert!(s.drift_corrections >= 15, "{s:?}");
        assert!(
            lo >= -21 && hi <= 26,
            "delay excess out of band: {lo}..{hi} ms, {s:?}"
        );
        assert!(late_rate(&s) < 0.001, "{s:?}");
        assert_eq!(s.resyncs, 0);
    }

    #[test]
    fn sender_clock_slow_by_100ppm_for_an_hour() {
        let (s, lo, hi) = drift_run(-100.0);
        assert!((15..=25).contains(&s.frames_inserted), "{s:?}");
        assert!(s.drift_corrections >= 15, "{s:?}");
        assert!(
            lo >= -21 && hi <= 26,
            "delay excess out of band: {lo}..{hi} ms, {s:?}"
        );
        assert!(late_rate(&s) < 0.001, "{s:?}");
        assert_eq!(s.resyncs, 0);
    }

    #[test]
    fn sequence_and_timestamp_rollover() {
        let mut sim = Sim::new(fixed_cfg(40));
        let mut pkts = stream(
            300,
            65_400,
            u32::MAX - 160 * 100 + 1,
            10_000,
            15_000,
            0.0,
            3,
        );
        let mut outs = Vec::new();
        sim.run(&mut pkts, 5_000, 300 * 20_000 + 200_000, |o, _| {
            outs.push(o.clone())
        });
        let expect: Vec<u16> = (0..300u16).map(|k| 65_400u16.wrapping_add(k)).collect();
        assert_eq!(played_seqs(&outs), expect);
        let s = sim.jb.stats();
        assert_eq!(
            (s.lost, s.late, s.resyncs, s.played),
            (0, 0, 0, 300),
            "{s:?}"
        );
    }

    #[test]
    fn flood_is_bounded() {
        let cfg = JitterConfig::new(8000, 20);
        let mut sim = Sim::new(cfg);
        // 100 000 in-order packets in the same instant and no playout.
        let mut accepted = 0;
        for k in 0..100_000u32 {
            let r = sim
                .jb
                .push(sim.at(1000), k as u16, k * 160, false, &[0u8; 160]);
            if r == PushResult::Accepted {
                accepted += 1;
            }
            assert!(sim.jb.buffered() <= cfg.capacity);
        }
        let s = sim.jb.stats();
        assert!(accepted <= cfg.capacity);
        assert_eq!(
            s.overflow + s.duplicates + s.late + accepted as u64,
            s.received,
            "{s:?}"
        );
        assert!(s.overflow > 90_000);
        // Random garbage: any sequence, timestamp, size and time; nothing panics.
        let mut rng = Rng(99);
        let payload = [0x55u8; 2000];
        for i in 0..200_000i64 {
            let len = rng.below(400) as usize;
            let at = sim.at(i * 97 + rng.below(50_000) as i64);
            let r = sim.jb.push(
                at,
                rng.next() as u16,
                rng.next() as u32,
                rng.below(2) == 0,
                &payload[..len],
            );
            if len > cfg.max_payload {
                assert_eq!(r, PushResult::TooLarge);
            }
            if i % 3 == 0 {
                let _ = sim.jb.pop(sim.at(i * 97));
            }
            assert!(sim.jb.buffered() <= cfg.capacity);
        }
        assert!(sim.jb.stats().resyncs > 0);
    }

    #[test]
    fn timestamp_or_sequence_jump_resynchronises() {
        let mut sim = Sim::new(fixed_cfg(40));
        let mut a = stream(100, 500, 1_000_000, 10_000, 0, 0.0, 1);
        // Sender restarts its timestamp (backwards) while the sequence continues.
        let mut b = stream(100, 600, 7, 10_000 + 2_100_000, 0, 0.0, 1);
        b[0].marker = true;
        // Then the sequence jumps far ahead (new source).
        let mut c = stream(100, 30_000, 500_000, 10_000 + 4_300_000, 0, 0.0, 1);
        a.append(&mut b);
        a.append(&mut c);
        let mut outs = Vec::new();
        sim.run(&mut a, 5_000, 6_600_000, |o, _| outs.push(o.clone()));
        let s = sim.jb.stats();
        assert_eq!(s.resyncs, 2, "{s:?}");
        assert_eq!(s.played, 300, "{s:?}");
        assert_eq!((s.late, s.lost), (0, 0), "{s:?}");
        // An explicit resync (SSRC change) drops what is buffered.
        sim.push(&Pkt {
            arrival_us: 6_700_000,
            seq: 30_100,
            ts: 500_000 + 160 * 200,
            marker: true,
        });
        assert_eq!(sim.jb.buffered(), 1);
        sim.jb.resync();
        assert_eq!(sim.jb.buffered(), 0);
        assert_eq!(sim.jb.stats().flushed, 1);
        assert_eq!(sim.pop(6_720_000), Out::Empty);
    }

    #[test]
    fn stray_packet_far_behind_does_not_resync() {
        let mut sim = Sim::new(fixed_cfg(40));
        let mut pkts = stream(200, 10_000, 0, 10_000, 0, 0.0, 1);
        pkts.push(Pkt {
            arrival_us: 1_000_000,
            seq: 2_000,
            ts: 5,
            marker: false,
        });
        let mut outs = Vec::new();
        sim.run(&mut pkts, 5_000, 200 * 20_000 + 200_000, |o, _| {
            outs.push(o.clone())
        });
        let s = sim.jb.stats();
        assert_eq!((s.resyncs, s.played, s.late), (0, 200, 1), "{s:?}");
    }

    #[test]
    fn silence_between_talkspurts() {
        let mut sim = Sim::new(fixed_cfg(40));
        let mut pkts = stream(50, 0, 0, 10_000, 0, 0.0, 1);
        // Second talkspurt after 1 s of silence: sequence continues, timestamp jumps.
        let mut b = stream(50, 50, 160 * 100, 10_000 + 2_000_000, 0, 0.0, 1);
        b[0].marker = true;
        pkts.append(&mut b);
        let mut outs = Vec::new();
        sim.run(&mut pkts, 5_000, 3_200_000, |o, _| outs.push(o.clone()));
        assert_eq!(played_seqs(&outs), (0..100).collect::<Vec<u16>>());
        let s = sim.jb.stats();
        // The end of a talkspurt cannot be told from loss: at most `missing_limit` concealed.
        assert!(s.concealed <= 6, "{s:?}");
        assert_eq!((s.lost, s.late), (0, 0));
        // Both talkspurts start after the target delay.
        let starts: Vec<i64> = outs
            .iter()
            .filter_map(|o| match o {
                Out::Frame {
                    seq: 0 | 50,
                    tick_us,
                    ..
                } => Some(*tick_us),
                _ => None,
            })
            .collect();
        assert_eq!(starts.len(), 2);
        assert!((50_000..70_000).contains(&starts[0]));
        assert!((2_050_000..2_070_000).contains(&starts[1]), "{starts:?}");
    }

    #[test]
    fn talkspurt_start_shrinks_delay_after_jitter_falls() {
        // Jitter high then low, with silences: the delay is re-set at each talkspurt start
        // rather than by dropping speech frames.
        let mut sim = Sim::new(JitterConfig::new(8000, 20));
        let mut pkts = Vec::new();
        let mut rng = Rng(11);
        let mut seq = 0u16;
        for spurt in 0..60i64 {
            let jitter = if spurt < 30 { 80_000 } else { 2_000 };
            for k in 0..100i64 {
                let slot = spurt * 150 + k; // 100 frames of speech, 50 of silence
                pkts.push(Pkt {
                    arrival_us: slot * 20_000 + 20_000 + rng.below(jitter) as i64,
                    seq,
                    ts: 160 * slot as u32,
                    marker: k == 0,
                });
                seq = seq.wrapping_add(1);
            }
        }
        let mut high = JitterStats::default();
        let mut low = JitterStats::default();
        let mut ticks = 0;
        sim.run(&mut pkts, 9_000, 60 * 150 * 20_000, |_, s| {
            ticks += 1;
            if ticks == 30 * 150 {
                high = *s;
            }
            low = *s;
        });
        assert!(high.target_delay_ms >= 70.0, "{high:?}");
        assert!(low.target_delay_ms <= 25.0, "{low:?}");
        assert!(late_rate(&low) < 0.01, "{low:?}");
        assert_eq!(low.played + low.late + low.frames_dropped, 6000, "{low:?}");
    }

    /// Ticks a steady 20 ms stream (arrival 5 ms after sending, fixed 40 ms delay) without
    /// the packets in `lost`, recording each tick's playout and what `peek_next` showed
    /// after a `Missing`.
    fn peek_run(n: u16, lost: &[u16]) -> Vec<(Out, Option<Vec<u8>>)> {
        let mut sim = Sim::new(fixed_cfg(40));
        let mut pkts: Vec<Pkt> = stream(n.into(), 0, 0, 5_000, 1, 0.0, 1)
            .into_iter()
            .filter(|p| !lost.contains(&p.seq))
            .collect();
        pkts.sort_by_key(|p| p.arrival_us);
        let mut outs = Vec::new();
        let mut i = 0;
        for k in 0..i64::from(n) + 10 {
            let tick = 1_000 + k * 20_000;
            while i < pkts.len() && pkts[i].arrival_us <= tick {
                sim.push(&pkts[i].clone());
                i += 1;
            }
            let out = sim.pop(tick);
            let peeked = match out {
                Out::Missing { .. } => sim.jb.peek_next().map(<[u8]>::to_vec),
                _ => None,
            };
            outs.push((out, peeked));
        }
        outs
    }

    #[test]
    fn peek_next_shows_the_packet_after_a_lost_one() {
        let outs = peek_run(40, &[10, 20, 21]);
        let missing: Vec<(u32, Option<Vec<u8>>)> = outs
            .iter()
            .filter_map(|(o, p)| match o {
                Out::Missing { ts } => Some((*ts, p.clone())),
                _ => None,
            })
            .collect();
        // One loss: the next packet is there. Two in a row: nothing for the first slot
        // (its successor is lost too), the packet after the pair for the second. Then the
        // stream ends: nothing follows the last packet.
        let (gaps, end) = missing.split_at(3);
        assert!(end.iter().all(|(ts, p)| *ts >= 40 * 160 && p.is_none()));
        assert_eq!(
            gaps,
            [
                (1600, Some(11u16.to_be_bytes().to_vec())),
                (3200, None),
                (3360, Some(22u16.to_be_bytes().to_vec())),
            ]
        );
        // Peeking takes nothing: every received packet still plays, in order.
        let played = outs
            .iter()
            .filter_map(|(o, _)| match o {
                Out::Frame { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect::<Vec<_>>();
        let expect: Vec<u16> = (0..40).filter(|s| ![10, 20, 21].contains(s)).collect();
        assert_eq!(played, expect);
    }

    #[test]
    fn peek_next_is_none_without_a_following_packet() {
        // The stream ends: the missing ticks after the last packet have nothing to show.
        let outs = peek_run(20, &[]);
        let tail: Vec<_> = outs
            .iter()
            .filter(|(o, _)| matches!(o, Out::Missing { .. }))
            .collect();
        assert!(!tail.is_empty());
        assert!(tail.iter().all(|(_, p)| p.is_none()));
        // Nor before anything has played.
        let jb = JitterBuffer::new(fixed_cfg(40));
        assert_eq!(jb.peek_next(), None);
    }
}
