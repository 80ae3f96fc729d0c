//! Per-packet RTP maths, free of I/O and clocks (time comes in as arguments).
//!
//! * [`RecvStats`]: RFC 3550 receive statistics — extended sequence numbers with
//!   rollover (A.1), cumulative and interval loss (A.3), interarrival jitter (A.8).
//! * [`OutStream`]: the outgoing stream of one connection — its own SSRC, and sequence
//!   and timestamp offsets re-based whenever the input stream changes so the far end
//!   sees one continuous stream.
//! * [`write_header`]: the in-place header rewrite.

use std::time::{Duration, Instant};

/// The zero-copy RTP view used on the receive path (re-exported for benchmarks).
pub use rtp_types::RtpPacket;

/// RFC 3550 A.1: a jump larger than this is treated as a restart candidate.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: packets this far behind are treated as reordered/duplicates.
const MAX_MISORDER: u16 = 100;
/// One sequence-number cycle.
const SEQ_MOD: u64 = 1 << 16;

/// Wrapping difference `a - b` of 16-bit sequence numbers as a signed distance.
/// Never compare raw sequence numbers with `Ord`.
pub fn seq_delta(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// RFC 3550 receive statistics for the one source a connection receives from.
#[derive(Clone, Debug, Default)]
pub struct RecvStats {
    ssrc: Option<u32>,
    base_seq: u64,
    max_seq: u16,
    cycles: u64,
    /// Sequence number expected after a suspected restart (A.1 `bad_seq`).
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Loss carried over from earlier sources (SSRC changes).
    lost_carry: i64,
    transit: Option<u32>,
    /// Jitter scaled by 16 (A.8 integer form).
    jitter16: u32,
}

/// What [`RecvStats::update`] made of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In sequence (or within the reorder window): counted.
    Valid,
    /// A very large jump: not counted until the next packet confirms a restart.
    Bad,
}

impl RecvStats {
    /// Fresh statistics.
    pub fn new() -> RecvStats {
        RecvStats::default()
    }

    /// The SSRC currently tracked.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u64::from(seq);
        self.max_seq = seq;
        self.bad_seq = None;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// Updates the statistics for one packet. `arrival` is the arrival time expressed in
    /// RTP timestamp units of the payload's clock (any origin, wrapping).
    pub fn update(&mut self, ssrc: u32, seq: u16, ts: u32, arrival: u32) -> SeqVerdict {
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.lost_carry = self.lost_carry.saturating_add(self.lost_current());
            }
            self.ssrc = Some(ssrc);
            self.init_seq(seq);
            self.transit = None;
            self.received = 1;
            self.update_jitter(ts, arrival);
            return SeqVerdict::Valid;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            // In order, with permissible gap.
            if seq < self.max_seq {
                // Wrapped around (the raw comparison is only used to detect the wrap
                // after the wrapping distance said "ahead").
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER {
            // A very large jump.
            if self.bad_seq == Some(seq) {
                // Two sequential packets: the source restarted.
                self.init_seq(seq);
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                return SeqVerdict::Bad;
            }
        }
        // else: duplicate or reordered packet, counted below.
        self.received += 1;
        self.update_jitter(ts, arrival);
        SeqVerdict::Valid
    }

    fn update_jitter(&mut self, ts: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(ts);
        if let Some(prev) = self.transit {
            let d = (transit.wrapping_sub(prev) as i32).unsigned_abs();
            // J += (|D| - J) / 16, in the scaled integer form of A.8.
            self.jitter16 = self
                .jitter16
                .wrapping_add(d)
                .wrapping_sub((self.jitter16.wrapping_add(8)) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Extended highest sequence number received (cycles in the top 16 bits).
    pub fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// Packets received (this source, counted by A.1 rules).
    pub fn received(&self) -> u64 {
        self.received
    }

    fn expected(&self) -> u64 {
        if self.ssrc.is_none() {
            return 0;
        }
        (self.extended_max() + 1).saturating_sub(self.base_seq)
    }

    fn lost_current(&self) -> i64 {
        let e = i64::try_from(self.expected()).unwrap_or(i64::MAX);
        let r = i64::try_from(self.received).unwrap_or(i64::MAX);
        e.saturating_sub(r)
    }

    /// Cumulative packets lost (A.3; negative with duplicates), across SSRC changes.
    pub fn cumulative_lost(&self) -> i64 {
        self.lost_carry.saturating_add(self.lost_current())
    }

    /// Fraction lost since the previous call, in 1/256 units (A.3); advances the interval.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            u8::try_from((lost_interval << 8) / expected_interval).unwrap_or(u8::MAX)
        }
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter16 >> 4
    }
}

/// Converts a time since an origin to RTP timestamp units of `clock_rate` (wrapping).
pub fn to_rtp_units(since: Duration, clock_rate: u32) -> u32 {
    let units = since.as_micros().saturating_mul(u128::from(clock_rate)) / 1_000_000;
    units as u32 // wrapping by design: RTP timestamps are modulo 2^32
}

/// The outgoing RTP stream of one connection.
#[derive(Clone, Debug)]
pub struct OutStream {
    /// SSRC written into every packet sent on this connection.
    pub ssrc: u32,
    /// The input currently mapped: (source connection key, source SSRC).
    source: Option<(u32, u32)>,
    seq_off: u16,
    ts_off: u32,
    /// Highest sequence number sent.
    last_seq: u16,
    /// Timestamp of the latest packet sent and when it was sent.
    last_ts: u32,
    last_at: Option<Instant>,
}

impl OutStream {
    /// A stream that has sent nothing yet.
    pub fn new(ssrc: u32) -> OutStream {
        OutStream {
            ssrc,
            source: None,
            seq_off: 0,
            ts_off: 0,
            last_seq: 0,
            last_ts: 0,
            last_at: None,
        }
    }

    /// Whether anything has been sent.
    pub fn started(&self) -> bool {
        self.last_at.is_some()
    }

    /// Maps an input packet (from connection `src_key`, SSRC `in_ssrc`) to the output
    /// sequence number and timestamp. When the input changes, the offsets are re-based so
    /// that the output sequence continues at +1 and the timestamp advances by the wall
    /// time elapsed since the previous output packet.
    pub fn map(
        &mut self,
        src_key: u32,
        in_ssrc: u32,
        in_seq: u16,
        in_ts: u32,
        clock_rate: u32,
        now: Instant,
    ) -> (u16, u32) {
        if self.source != Some((src_key, in_ssrc)) {
            if let Some(at) = self.last_at {
                let next_seq = self.last_seq.wrapping_add(1);
                let step = to_rtp_units(now.saturating_duration_since(at), clock_rate).max(1);
                let next_ts = self.last_ts.wrapping_add(step);
                self.seq_off = next_seq.wrapping_sub(in_seq);
                self.ts_off = next_ts.wrapping_sub(in_ts);
            }
            self.source = Some((src_key, in_ssrc));
        }
        let seq = in_seq.wrapping_add(self.seq_off);
        let ts = in_ts.wrapping_add(self.ts_off);
        if self.last_at.is_none() || seq_delta(seq, self.last_seq) > 0 {
            self.last_seq = seq;
        }
        self.last_ts = ts;
        self.last_at = Some(now);
        (seq, ts)
    }

    /// Records a packet sent with sequence number `seq` and timestamp `ts` at `now` by a
    /// source that numbers its own packets (a TDM channel's engine), for sender reports.
    pub fn record(&mut self, seq: u16, ts: u32, now: Instant) {
        if self.last_at.is_none() || seq_delta(seq, self.last_seq) > 0 {
            self.last_seq = seq;
        }
        self.last_ts = ts;
        self.last_at = Some(now);
    }

    /// The RTP timestamp corresponding to `now` (for sender reports).
    pub fn rtp_time_at(&self, now: Instant, clock_rate: u32) -> u32 {
        match self.last_at {
            Some(at) => self
                .last_ts
                .wrapping_add(to_rtp_units(now.saturating_duration_since(at), clock_rate)),
            None => 0,
        }
    }
}

/// The header fields written into a forwarded packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload type (7 bits).
    pub pt: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
}

/// Rewrites PT, sequence number, timestamp and SSRC in place, keeping the marker bit.
/// Returns `false` (and writes nothing) if `buf` is shorter than an RTP header.
pub fn write_header(buf: &mut [u8], h: &Header) -> bool {
    let Some(hdr) = buf.get_mut(..12) else {
        return false;
    };
    hdr[1] = (hdr[1] & 0x80) | (h.pt & 0x7f);
    hdr[2..4].copy_from_slice(&h.seq.to_be_bytes());
    hdr[4..8].copy_from_slice(&h.ts.to_be_bytes());
    hdr[8..12].copy_from_slice(&h.ssrc.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_rollover() {
        let mut s = RecvStats::new();
        let mut seq: u16 = 65530;
        for i in 0..20u32 {
            if i == 10 || i == 11 {
                seq = seq.wrapping_add(1);
                continue; // two lost
            }
            assert_eq!(s.update(7, seq, i * 160, i * 160), SeqVerdict::Valid);
            seq = seq.wrapping_add(1);
        }
        assert_eq!(s.cumulative_lost(), 2);
        assert_eq!(s.extended_max(), 65536 + u64::from(seq.wrapping_sub(1)));
        assert_eq!(s.take_fraction_lost(), (2 * 256 / 20) as u8);
        assert_eq!(s.take_fraction_lost(), 0);
        assert_eq!(s.jitter(), 0);
    }

    #[test]
    fn duplicates_and_reorder_do_not_advance() {
        let mut s = RecvStats::new();
        s.update(1, 100, 0, 0);
        s.update(1, 102, 320, 320);
        s.update(1, 101, 160, 160);
        s.update(1, 101, 160, 160);
        assert_eq!(s.extended_max(), 102);
        assert_eq!(s.cumulative_lost(), -1);
    }

    #[test]
    fn restart_needs_two_sequential() {
        let mut s = RecvStats::new();
        s.update(1, 10, 0, 0);
        assert_eq!(s.update(1, 30000, 0, 0), SeqVerdict::Bad);
        assert_eq!(s.update(1, 30001, 0, 0), SeqVerdict::Valid);
        assert_eq!(s.extended_max(), 30001);
    }

    #[test]
    fn jitter_follows_a8() {
        let mut s = RecvStats::new();
        // Transit alternates by 16 units: J converges towards 16.
        for i in 0..400u32 {
            let arrival = i * 160 + if i % 2 == 0 { 0 } else { 16 };
            s.update(1, i as u16, i * 160, arrival);
        }
        assert!((14..=16).contains(&s.jitter()), "jitter {}", s.jitter());
    }

    #[test]
    fn out_stream_rebases_on_new_source() {
        let t0 = Instant::now();
        let mut o = OutStream::new(0xabcd);
        assert_eq!(o.map(1, 5, 1000, 8000, 8000, t0), (1000, 8000));
        assert_eq!(o.map(1, 5, 1001, 8160, 8000, t0), (1001, 8160));
        let t1 = t0 + Duration::from_millis(20);
        let (seq, ts) = o.map(2, 9, 7, 555, 8000, t1);
        assert_eq!(seq, 1002);
        assert_eq!(ts, 8160 + 160);
        assert_eq!(o.map(2, 9, 8, 715, 8000, t1), (1003, 8480));
    }

    #[test]
    fn header_rewrite_keeps_marker() {
        let mut b = [0x80u8, 0x80, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xff];
        let h = Header {
            pt: 97,
            seq: 0x1234,
            ts: 0x01020304,
            ssrc: 0xdeadbeef,
        };
        assert!(write_header(&mut b, &h));
        assert_eq!(b[1], 0x80 | 97);
        assert_eq!(&b[2..12], &[0x12, 0x34, 1, 2, 3, 4, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(b[12], 0xff);
        assert!(!write_header(&mut b[..5], &h));
    }

    #[test]
    fn seq_delta_wraps() {
        assert_eq!(seq_delta(1, 65535), 2);
        assert_eq!(seq_delta(65535, 1), -2);
    }
}
