//! The RTP side of `mgw load`: one sender thread and one receiver thread for all legs.
//!
//! * The **sender** keeps every leg's next send deadline in a min-heap (absolute times:
//!   `start + k·ptime`, so lateness never accumulates) and sleeps until the earliest one
//!   while waiting for commands. Payloads come pre-encoded ([`super::audio::Frames`]).
//! * The **receiver** waits on all leg sockets with one `mio` poll, stamps each packet on
//!   arrival and computes RFC 3550 statistics, one-way delay and audio level per leg.
//! * What crosses between them is each leg's [`SendLog`]: a ring of atomics indexed by
//!   sequence number holding the send instant and a payload hash. The payload itself is
//!   never altered. A gateway that rewrites sequence numbers (mgw does, for continuity)
//!   keeps them at a constant offset per stream; the receiver learns that offset from the
//!   first packet of each SSRC (preferring an identical sequence number, then the most
//!   recent send with the same payload, then the most recent send).
//!
//! The main thread talks to both with bounded channels and gets [`RtpEvent`]s back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::audio::{AudioReport, Frames, Meter};
use super::stats::{Histogram, SeqStats, SeqVerdict};

/// Send-log slots per leg (a power of two: 81 s of history at 20 ms).
const LOG_SLOTS: usize = 4096;
/// How many past sends the offset search looks at.
const OFFSET_SEARCH: u64 = 500;

/// Send instants and payload hashes of one leg's packets, indexed by sequence number.
#[derive(Debug)]
pub(crate) struct SendLog {
    epoch: Instant,
    /// Nanoseconds since `epoch` + 1 (0 = empty).
    at: Box<[AtomicU64]>,
    /// `seq << 32 | hash`.
    meta: Box<[AtomicU64]>,
    /// Last sequence number sent + (1 << 32) once any was sent, plus the count in the
    /// upper bits: `count << 17 | 1 << 16 | seq`.
    last: AtomicU64,
}

impl SendLog {
    /// An empty log; instants are stored relative to `epoch`.
    pub(crate) fn new(epoch: Instant) -> Self {
        SendLog {
            epoch,
            at: (0..LOG_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            meta: (0..LOG_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            last: AtomicU64::new(0),
        }
    }

    fn record(&self, seq: u16, hash: u32, at: Instant) {
        let i = usize::from(seq) % LOG_SLOTS;
        let ns = at.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.meta[i].store(u64::from(seq) << 32 | u64::from(hash), Ordering::Relaxed);
        self.at[i].store(ns + 1, Ordering::Release);
        let count = (self.last.load(Ordering::Relaxed) >> 17) + 1;
        self.last
            .store(count << 17 | 1 << 16 | u64::from(seq), Ordering::Release);
    }

    /// (send instant, payload hash) of `seq`, if it is still in the log.
    fn lookup(&self, seq: u16) -> Option<(Instant, u32)> {
        let i = usize::from(seq) % LOG_SLOTS;
        let at = self.at[i].load(Ordering::Acquire);
        let meta = self.meta[i].load(Ordering::Relaxed);
        if at == 0 || (meta >> 32) as u16 != seq {
            return None;
        }
        Some((self.epoch + Duration::from_nanos(at - 1), meta as u32))
    }

    /// The last sequence number sent and how many were sent.
    fn last(&self) -> Option<(u16, u64)> {
        let v = self.last.load(Ordering::Acquire);
        (v & 1 << 16 != 0).then_some((v as u16, v >> 17))
    }
}

/// FNV-1a over a payload.
fn hash(payload: &[u8]) -> u32 {
    payload.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Packets of a new stream for which an offset found only by recency (not by an
/// identical payload) is used without being kept.
const LEARN_TRIES: u32 = 25;

/// Learns the sequence-number offset (received − sent) from a packet of a new stream:
/// `(offset, true)` when a send with the same payload was found, `(offset, false)` for
/// the most recent send before the arrival.
fn learn_offset(
    log: &SendLog,
    seq: u16,
    payload_hash: u32,
    arrival: Instant,
) -> Option<(u16, bool)> {
    if let Some((at, h)) = log.lookup(seq) {
        if h == payload_hash && at <= arrival && arrival - at < Duration::from_secs(2) {
            return Some((0, true));
        }
    }
    let (last, count) = log.last()?;
    let mut newest = None;
    for back in 0..count.min(OFFSET_SEARCH) {
        let s = last.wrapping_sub(back as u16);
        let Some((at, h)) = log.lookup(s) else {
            continue;
        };
        if at > arrival {
            continue;
        }
        if h == payload_hash {
            return Some((seq.wrapping_sub(s), true));
        }
        newest.get_or_insert((seq.wrapping_sub(s), false));
    }
    newest
}

/// A leg to start sending on.
#[derive(Debug)]
pub(crate) struct TxSpec {
    /// Leg id.
    pub(crate) id: u32,
    /// The leg's socket (a clone; the receiver has the other).
    pub(crate) sock: UdpSocket,
    /// Where to send (the gateway's port for this leg).
    pub(crate) dest: SocketAddr,
    /// Payload type.
    pub(crate) pt: u8,
    /// SSRC.
    pub(crate) ssrc: u32,
    /// Packet interval.
    pub(crate) ptime: Duration,
    /// Pre-encoded audio.
    pub(crate) frames: Arc<Frames>,
    /// Where sends are logged.
    pub(crate) log: Arc<SendLog>,
}

/// Commands to the sender thread.
#[derive(Debug)]
pub(crate) enum TxCmd {
    /// Start sending.
    Start(Box<TxSpec>),
    /// Stop sending and report.
    Stop(u32),
    /// Exit.
    Shutdown,
}

/// What the sender did on one leg.
#[derive(Debug, Clone, Default)]
pub(crate) struct TxReport {
    /// Packets sent.
    pub(crate) packets: u64,
    /// Payload bytes sent.
    pub(crate) bytes: u64,
    /// Send errors.
    pub(crate) errors: u64,
    /// Lateness of each send against its deadline, µs.
    pub(crate) late_us: Histogram,
}

struct TxLeg {
    spec: TxSpec,
    seq: u16,
    ts: u32,
    frame: usize,
    deadline: Instant,
    report: TxReport,
}

/// A leg to start receiving on.
#[derive(Debug)]
pub(crate) struct RxSpec {
    /// Leg id.
    pub(crate) id: u32,
    /// The leg's socket.
    pub(crate) sock: UdpSocket,
    /// The send log of the leg whose packets arrive here.
    pub(crate) peer_log: Arc<SendLog>,
    /// RTP clock rate of what arrives.
    pub(crate) clock_rate: u32,
    /// Decodes what arrives.
    pub(crate) meter: Meter,
}

/// Commands to the receiver thread.
#[derive(Debug)]
pub(crate) enum RxCmd {
    /// Start receiving.
    Start(Box<RxSpec>),
    /// Stop receiving and report.
    Finish(u32),
    /// Exit.
    Shutdown,
}

/// What one leg received.
#[derive(Debug, Clone, Default)]
pub(crate) struct RxReport {
    /// Datagrams received (all).
    pub(crate) datagrams: u64,
    /// Not RTP (too short, wrong version).
    pub(crate) malformed: u64,
    /// RTP packets counted once each.
    pub(crate) received: u64,
    /// Expected from the sequence range.
    pub(crate) expected: u64,
    /// Lost (expected − received).
    pub(crate) lost: u64,
    /// Duplicates.
    pub(crate) duplicates: u64,
    /// Reordered.
    pub(crate) reordered: u64,
    /// Interarrival jitter, ms.
    pub(crate) jitter_ms: f64,
    /// Largest jitter estimate seen, ms.
    pub(crate) jitter_max_ms: f64,
    /// One-way delay, µs.
    pub(crate) delay_us: Histogram,
    /// Packets whose send instant could not be found.
    pub(crate) unmatched: u64,
    /// Packets whose payload differs from the one sent (e.g. transcoded).
    pub(crate) payload_changed: u64,
    /// SSRCs seen.
    pub(crate) ssrcs: u32,
    /// Sequence offset learned for the last SSRC (received − sent).
    pub(crate) seq_offset: Option<u16>,
    /// Payload types seen (first few).
    pub(crate) payload_types: Vec<u8>,
    /// Decoded audio.
    pub(crate) audio: AudioReport,
}

struct RxLeg {
    sock: mio::net::UdpSocket,
    peer_log: Arc<SendLog>,
    clock_rate: u32,
    meter: Meter,
    stats: SeqStats,
    ssrc: Option<u32>,
    offset: Option<u16>,
    /// Whether `offset` is settled for this stream.
    offset_kept: bool,
    /// Packets of this stream tried for the offset.
    learn_tries: u32,
    report: RxReport,
    /// Loss counted into the totals so far.
    lost_reported: u64,
}

/// Per-second aggregate from the receiver.
#[derive(Debug, Clone)]
pub(crate) struct Tick {
    /// Seconds since the start of the run.
    pub(crate) second: u64,
    /// Packets received in the interval.
    pub(crate) packets: u64,
    /// Packets found lost in the interval.
    pub(crate) lost: u64,
    /// Packets received in total.
    pub(crate) total_received: u64,
    /// Packets lost in total.
    pub(crate) total_lost: u64,
    /// Delays in the interval, µs.
    pub(crate) delay_us: Histogram,
}

/// What the threads report to the main thread.
#[derive(Debug)]
pub(crate) enum RtpEvent {
    /// A leg's sender stopped.
    Sent(u32, Box<TxReport>),
    /// A leg's receiver stopped.
    Received(u32, Box<RxReport>),
    /// Once a second.
    Tick(Box<Tick>),
    /// A thread hit an I/O error it cannot continue from.
    Fatal(String),
}

/// Runs the sender until [`TxCmd::Shutdown`] or the channel closes.
pub(crate) fn sender(cmds: Receiver<TxCmd>, events: SyncSender<RtpEvent>) {
    let mut legs: HashMap<u32, TxLeg> = HashMap::new();
    let mut heap: BinaryHeap<Reverse<(Instant, u32)>> = BinaryHeap::new();
    let mut buf = Vec::with_capacity(2048);
    loop {
        let now = Instant::now();
        let wait = heap
            .peek()
            .map_or(Duration::from_millis(100), |Reverse((d, _))| {
                d.saturating_duration_since(now)
            });
        match cmds.recv_timeout(wait) {
            Ok(TxCmd::Start(spec)) => {
                let now = Instant::now();
                let id = spec.id;
                legs.insert(
                    id,
                    TxLeg {
                        seq: (spec.ssrc >> 8) as u16,
                        ts: spec.ssrc.rotate_left(11),
                        frame: 0,
                        deadline: now,
                        report: TxReport::default(),
                        spec: *spec,
                    },
                );
                heap.push(Reverse((now, id)));
            }
            Ok(TxCmd::Stop(id)) => {
                let report = legs.remove(&id).map(|l| l.report).unwrap_or_default();
                let _ = events.send(RtpEvent::Sent(id, Box::new(report)));
            }
            Ok(TxCmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        while let Some(&Reverse((deadline, id))) = heap.peek() {
            if deadline > now {
                break;
            }
            heap.pop();
            let Some(leg) = legs.get_mut(&id) else {
                continue; // stopped
            };
            if leg.deadline != deadline {
                continue;
            }
            send_one(leg, &mut buf);
            // Absolute deadlines; if we fell more than a second behind, resynchronise.
            let mut next = deadline + leg.spec.ptime;
            if now.saturating_duration_since(next) > Duration::from_secs(1) {
                next = now + leg.spec.ptime;
            }
            leg.deadline = next;
            heap.push(Reverse((next, id)));
        }
    }
}

fn send_one(leg: &mut TxLeg, buf: &mut Vec<u8>) {
    let frames = &leg.spec.frames;
    let Some(payload) = frames
        .payloads
        .get(leg.frame % frames.payloads.len().max(1))
    else {
        return;
    };
    buf.clear();
    buf.push(0x80);
    let marker = if leg.report.packets == 0 { 0x80 } else { 0 };
    buf.push(marker | (leg.spec.pt & 0x7f));
    buf.extend_from_slice(&leg.seq.to_be_bytes());
    buf.extend_from_slice(&leg.ts.to_be_bytes());
    buf.extend_from_slice(&leg.spec.ssrc.to_be_bytes());
    buf.extend_from_slice(payload);
    let at = Instant::now();
    leg.spec.log.record(leg.seq, hash(payload), at);
    match leg.spec.sock.send_to(buf, leg.spec.dest) {
        Ok(_) => {
            leg.report.packets += 1;
            leg.report.bytes += payload.len() as u64;
        }
        Err(_) => leg.report.errors += 1,
    }
    leg.report
        .late_us
        .record(at.saturating_duration_since(leg.deadline).as_micros() as u64);
    leg.seq = leg.seq.wrapping_add(1);
    leg.ts = leg.ts.wrapping_add(frames.ts_step);
    leg.frame += 1;
}

/// The receiver's command side: a channel plus a waker for the poll.
#[derive(Debug)]
pub(crate) struct RxHandle {
    /// Commands.
    pub(crate) tx: SyncSender<RxCmd>,
    /// Wakes the poll.
    pub(crate) waker: Arc<mio::Waker>,
}

impl RxHandle {
    /// Sends a command and wakes the receiver.
    pub(crate) fn send(&self, cmd: RxCmd) -> Result<(), String> {
        self.tx
            .send(cmd)
            .map_err(|_| "the RTP receiver thread has stopped".to_string())?;
        self.waker.wake().map_err(|e| format!("wake: {e}"))
    }
}

const WAKER: mio::Token = mio::Token(usize::MAX);

/// Creates the receiver's poll and handle; run [`receiver`] on a thread with the poll.
pub(crate) fn receiver_setup(
    cap: usize,
) -> std::io::Result<(mio::Poll, RxHandle, Receiver<RxCmd>)> {
    let poll = mio::Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = std::sync::mpsc::sync_channel(cap);
    Ok((poll, RxHandle { tx, waker }, rx))
}

/// Runs the receiver until [`RxCmd::Shutdown`] or the channel closes. `epoch` is the start
/// of the run (for per-second ticks).
pub(crate) fn receiver(
    mut poll: mio::Poll,
    cmds: Receiver<RxCmd>,
    events: SyncSender<RtpEvent>,
    epoch: Instant,
) {
    let mut legs: HashMap<usize, RxLeg> = HashMap::new();
    let mut mio_events = mio::Events::with_capacity(256);
    let mut buf = vec![0u8; 65_536];
    let mut tick = Tick {
        second: 1,
        packets: 0,
        lost: 0,
        total_received: 0,
        total_lost: 0,
        delay_us: Histogram::default(),
    };
    loop {
        let next_tick = epoch + Duration::from_secs(tick.second);
        let wait = next_tick.saturating_duration_since(Instant::now());
        if let Err(e) = poll.poll(&mut mio_events, Some(wait)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                let _ = events.send(RtpEvent::Fatal(format!("poll: {e}")));
                return;
            }
        }
        for ev in mio_events.iter() {
            if ev.token() == WAKER {
                continue;
            }
            let Some(leg) = legs.get_mut(&ev.token().0) else {
                continue;
            };
            let mut errors = 0u32;
            loop {
                let (n, _from) = match leg.sock.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    // Readiness is edge-triggered: read on past transient errors (ICMP
                    // errors surfacing, EINTR) until WouldBlock, but not for ever.
                    Err(_) if errors < 64 => {
                        errors += 1;
                        continue;
                    }
                    Err(_) => break,
                };
                let now = Instant::now();
                on_packet(leg, buf.get(..n).unwrap_or(&[]), now, epoch, &mut tick);
            }
        }
        // Commands (after the sockets, so a Finish sees everything already queued).
        while let Ok(cmd) = cmds.try_recv() {
            match cmd {
                RxCmd::Start(spec) => {
                    let spec = *spec;
                    let token = spec.id as usize;
                    if spec.sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let mut sock = mio::net::UdpSocket::from_std(spec.sock);
                    if let Err(e) = poll.registry().register(
                        &mut sock,
                        mio::Token(token),
                        mio::Interest::READABLE,
                    ) {
                        let _ = events.send(RtpEvent::Fatal(format!("register: {e}")));
                        continue;
                    }
                    legs.insert(
                        token,
                        RxLeg {
                            sock,
                            peer_log: spec.peer_log,
                            clock_rate: spec.clock_rate.max(1),
                            meter: spec.meter,
                            stats: SeqStats::default(),
                            ssrc: None,
                            offset: None,
                            offset_kept: false,
                            learn_tries: 0,
                            report: RxReport::default(),
                            lost_reported: 0,
                        },
                    );
                }
                RxCmd::Finish(id) => {
                    let report = match legs.remove(&(id as usize)) {
                        Some(mut leg) => {
                            // Drain what is already queued.
                            while let Ok((n, _)) = leg.sock.recv_from(&mut buf) {
                                let now = Instant::now();
                                on_packet(
                                    &mut leg,
                                    buf.get(..n).unwrap_or(&[]),
                                    now,
                                    epoch,
                                    &mut tick,
                                );
                            }
                            let _ = poll.registry().deregister(&mut leg.sock);
                            let mut r = leg.report;
                            fill_stats(&mut r, &leg.stats, leg.clock_rate);
                            r.audio = leg.meter.report();
                            r.seq_offset = leg.offset;
                            r
                        }
                        None => RxReport::default(),
                    };
                    let _ = events.send(RtpEvent::Received(id, Box::new(report)));
                }
                RxCmd::Shutdown => return,
            }
        }
        let now = Instant::now();
        if now >= next_tick {
            for leg in legs.values_mut() {
                let lost = leg.stats.lost();
                tick.lost += lost.saturating_sub(leg.lost_reported);
                tick.total_lost += lost.saturating_sub(leg.lost_reported);
                leg.lost_reported = lost;
            }
            let out = Tick {
                second: tick.second,
                packets: tick.packets,
                lost: tick.lost,
                total_received: tick.total_received,
                total_lost: tick.total_lost,
                delay_us: std::mem::take(&mut tick.delay_us),
            };
            // The main thread may be busy; a missed tick is only a missed progress line.
            if let Err(TrySendError::Disconnected(_)) =
                events.try_send(RtpEvent::Tick(Box::new(out)))
            {
                return;
            }
            tick.packets = 0;
            tick.lost = 0;
            tick.second = now.saturating_duration_since(epoch).as_secs() + 1;
        }
    }
}

fn fill_stats(r: &mut RxReport, s: &SeqStats, clock: u32) {
    r.received = s.received();
    r.expected = s.expected();
    r.lost = s.lost();
    r.duplicates = s.duplicates();
    r.reordered = s.reordered();
    r.jitter_ms = s.jitter() * 1000.0 / f64::from(clock);
}

/// Parses an RTP header: (payload type, seq, timestamp, ssrc, payload).
fn parse_rtp(p: &[u8]) -> Option<(u8, u16, u32, u32, &[u8])> {
    let b0 = *p.first()?;
    if b0 >> 6 != 2 {
        return None;
    }
    let pt = *p.get(1)? & 0x7f;
    let seq = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]);
    let ts = u32::from_be_bytes(p.get(4..8)?.try_into().ok()?);
    let ssrc = u32::from_be_bytes(p.get(8..12)?.try_into().ok()?);
    let mut start = 12usize.checked_add(4 * usize::from(b0 & 0x0f))?;
    if b0 & 0x10 != 0 {
        let words = u16::from_be_bytes([*p.get(start + 2)?, *p.get(start + 3)?]);
        start = start.checked_add(4 + 4 * usize::from(words))?;
    }
    let mut end = p.len();
    if b0 & 0x20 != 0 {
        let pad = usize::from(*p.last()?);
        end = end.checked_sub(pad)?;
    }
    Some((pt, seq, ts, ssrc, p.get(start..end)?))
}

fn on_packet(leg: &mut RxLeg, p: &[u8], now: Instant, epoch: Instant, tick: &mut Tick) {
    leg.report.datagrams += 1;
    let Some((pt, seq, ts, ssrc, payload)) = parse_rtp(p) else {
        leg.report.malformed += 1;
        return;
    };
    if leg.report.payload_types.len() < 4 && !leg.report.payload_types.contains(&pt) {
        leg.report.payload_types.push(pt);
    }
    let h = hash(payload);
    if leg.ssrc != Some(ssrc) {
        leg.ssrc = Some(ssrc);
        leg.report.ssrcs += 1;
        leg.offset = None;
        leg.offset_kept = false;
        leg.learn_tries = 0;
        if leg.report.ssrcs > 1 {
            // A new source: carry the old stream's counts and start again.
            let mut r = RxReport::default();
            fill_stats(&mut r, &leg.stats, leg.clock_rate);
            leg.report.received += r.received;
            leg.report.expected += r.expected;
            leg.report.lost += r.lost;
            leg.report.duplicates += r.duplicates;
            leg.report.reordered += r.reordered;
            leg.stats = SeqStats::default();
            leg.lost_reported = 0;
        }
    }
    if !leg.offset_kept {
        // A gateway that originates its own stream (a clocked TDM path) may send frames
        // (silence) before ours reach it: keep trying until a payload matches.
        leg.learn_tries += 1;
        let found = learn_offset(&leg.peer_log, seq, h, now);
        leg.offset = found.map(|(o, _)| o);
        leg.offset_kept =
            found.is_some_and(|(_, by_hash)| by_hash) || leg.learn_tries >= LEARN_TRIES;
    }
    let since = now.saturating_duration_since(epoch);
    let arrival = (since.as_nanos() * u128::from(leg.clock_rate) / 1_000_000_000) as u32;
    let verdict = leg.stats.on_packet(seq, ts, arrival);
    let jitter_ms = leg.stats.jitter() * 1000.0 / f64::from(leg.clock_rate);
    leg.report.jitter_max_ms = leg.report.jitter_max_ms.max(jitter_ms);
    if verdict == SeqVerdict::Duplicate {
        return;
    }
    tick.packets += 1;
    tick.total_received += 1;
    leg.meter.feed(payload);
    let sent = leg
        .offset
        .and_then(|off| leg.peer_log.lookup(seq.wrapping_sub(off)));
    match sent {
        Some((at, sent_hash)) if at <= now => {
            let us = (now - at).as_micros() as u64;
            leg.report.delay_us.record(us);
            tick.delay_us.record(us);
            if sent_hash != h {
                leg.report.payload_changed += 1;
            }
        }
        _ => leg.report.unmatched += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::audio::{encode_loop, Source};
    use mgw_media::codec::CodecKind;

    #[test]
    fn rtp_header_parsing() {
        let mut p = vec![0x80, 0x88, 0, 5, 0, 0, 1, 0, 0, 0, 0, 9, 1, 2, 3];
        assert_eq!(parse_rtp(&p), Some((8, 5, 256, 9, &[1u8, 2, 3][..])));
        p[0] = 0xA0; // padding of 3 (last byte is 3)
        assert_eq!(parse_rtp(&p).map(|x| x.4.len()), Some(0));
        p[0] = 0xA0;
        let last = p.len() - 1;
        p[last] = 200; // padding longer than the packet
        assert_eq!(parse_rtp(&p), None);
        p[0] = 0x90; // extension header missing
        assert_eq!(parse_rtp(&p), None);
        p[0] = 0x8f; // 15 CSRCs missing
        assert_eq!(parse_rtp(&p), None);
        assert_eq!(parse_rtp(&[0x40; 20]), None);
        assert_eq!(parse_rtp(&[0x80; 5]), None);
        let ext = [
            0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 1, 9, 9, 9, 9, 7,
        ];
        assert_eq!(parse_rtp(&ext).map(|x| x.4), Some(&[7u8][..]));
    }

    #[test]
    fn send_log_and_offset_learning() {
        let t0 = Instant::now();
        let log = SendLog::new(t0);
        assert!(log.last().is_none());
        for i in 0..100u16 {
            let seq = 65_500u16.wrapping_add(i);
            log.record(
                seq,
                u32::from(i % 10),
                t0 + Duration::from_millis(20 * u64::from(i)),
            );
        }
        assert_eq!(log.last(), Some((65_500u16.wrapping_add(99), 100)));
        let (at, h) = log.lookup(65_510).unwrap();
        assert_eq!((at - t0, h), (Duration::from_millis(200), 0));
        assert!(log.lookup(1000).is_none());
        // Same sequence numbers: offset 0.
        let arrival = t0 + Duration::from_millis(20 * 50 + 1);
        assert_eq!(
            learn_offset(&log, 65_500u16.wrapping_add(50), 0, arrival),
            Some((0, true))
        );
        // Rewritten sequence numbers: the most recent send with the same payload hash.
        assert_eq!(
            learn_offset(&log, 7, 3, arrival),
            Some((7u16.wrapping_sub(65_500u16.wrapping_add(43)), true))
        );
        // No hash matches: the most recent send before arrival.
        assert_eq!(
            learn_offset(&log, 7, 99, arrival),
            Some((7u16.wrapping_sub(65_500u16.wrapping_add(50)), false))
        );
        assert_eq!(learn_offset(&SendLog::new(t0), 7, 99, arrival), None);
    }

    /// Two legs on loopback sending to each other's sockets directly (no gateway): every
    /// packet arrives, in order, with a small delay, and the tone decodes back.
    #[test]
    fn sender_and_receiver_threads_loopback() {
        let epoch = Instant::now();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let frames = Arc::new(encode_loop(CodecKind::Pcma, 20, &Source::Tone(1000.0)).unwrap());
        let (ev_tx, ev_rx) = std::sync::mpsc::sync_channel(64);
        let (tx_cmd, tx_rx) = std::sync::mpsc::sync_channel(16);
        let ev2 = ev_tx.clone();
        let st = std::thread::spawn(move || sender(tx_rx, ev2));
        let (poll, rxh, rx_rx) = receiver_setup(16).unwrap();
        let rt = std::thread::spawn(move || receiver(poll, rx_rx, ev_tx, epoch));
        let logs = [Arc::new(SendLog::new(epoch)), Arc::new(SendLog::new(epoch))];
        for (id, (sock, peer)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
            rxh.send(RxCmd::Start(Box::new(RxSpec {
                id: id as u32,
                sock: sock.try_clone().unwrap(),
                peer_log: logs[1 - id].clone(),
                clock_rate: 8000,
                meter: Meter::new(CodecKind::Pcma, Some(1000.0)).unwrap(),
            })))
            .unwrap();
            tx_cmd
                .send(TxCmd::Start(Box::new(TxSpec {
                    id: id as u32,
                    sock: sock.try_clone().unwrap(),
                    dest: peer.local_addr().unwrap(),
                    pt: 8,
                    ssrc: 0x1234_0000 + id as u32,
                    ptime: Duration::from_millis(20),
                    frames: frames.clone(),
                    log: logs[id].clone(),
                })))
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
        tx_cmd.send(TxCmd::Stop(0)).unwrap();
        tx_cmd.send(TxCmd::Stop(1)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        rxh.send(RxCmd::Finish(0)).unwrap();
        rxh.send(RxCmd::Finish(1)).unwrap();
        let (mut sent, mut recv) = (HashMap::new(), HashMap::new());
        while sent.len() < 2 || recv.len() < 2 {
            match ev_rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                RtpEvent::Sent(id, r) => {
                    sent.insert(id, r);
                }
                RtpEvent::Received(id, r) => {
                    recv.insert(id, r);
                }
                RtpEvent::Tick(_) => {}
                RtpEvent::Fatal(e) => panic!("{e}"),
            }
        }
        tx_cmd.send(TxCmd::Shutdown).unwrap();
        rxh.send(RxCmd::Shutdown).unwrap();
        st.join().unwrap();
        rt.join().unwrap();
        for id in 0..2u32 {
            let s = &sent[&(1 - id)];
            let r = &recv[&id];
            // 500 ms at 20 ms: about 26 packets.
            assert!((20..=30).contains(&s.packets), "{}", s.packets);
            assert_eq!(r.received, s.packets);
            assert_eq!(
                (r.lost, r.duplicates, r.reordered, r.unmatched),
                (0, 0, 0, 0)
            );
            assert_eq!(r.seq_offset, Some(0));
            assert_eq!(r.delay_us.count(), r.received);
            assert!(r.delay_us.max() < 50_000, "{}", r.delay_us.max());
            assert_eq!(r.audio.frames_decoded, r.received);
            assert!(r.audio.tone_ratio.unwrap() > 0.8);
            // Pacing: sends within a few ms of their deadlines.
            assert!(
                s.late_us.quantile(0.5) < 5_000,
                "{}",
                s.late_us.quantile(0.5)
            );
        }
    }
}
