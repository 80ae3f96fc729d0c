//! Measurement maths for `mgw load`, free of I/O and clocks: RFC 3550 receive statistics
//! (extended sequence numbers, loss, duplicates, reordering, interarrival jitter), a
//! log-linear histogram for delays and latencies, and the simplified ITU-T G.107 E-model.

use serde::Serialize;

/// How far back (in packets) duplicates are recognised.
const WINDOW: u64 = 1024;

/// RFC 3550 receive statistics for one received stream.
///
/// Sequence numbers are widened to `u64` with a rollover count (A.1) and never compared
/// as raw `u16`. Loss is `expected - received` over the extended range (A.3); jitter is
/// the A.8 estimator in RTP timestamp units.
#[derive(Debug, Clone)]
pub(crate) struct SeqStats {
    /// Extended sequence number of the first packet, `None` before any.
    base: Option<u64>,
    /// Highest extended sequence number seen.
    max_ext: u64,
    /// Packets counted once each.
    received: u64,
    duplicates: u64,
    reordered: u64,
    /// Bit `e % WINDOW` set when extended number `e` (within the window) was seen.
    seen: [u64; (WINDOW / 64) as usize],
    jitter: f64,
    last_transit: Option<u32>,
}

impl Default for SeqStats {
    fn default() -> Self {
        SeqStats {
            base: None,
            max_ext: 0,
            received: 0,
            duplicates: 0,
            reordered: 0,
            seen: [0; (WINDOW / 64) as usize],
            jitter: 0.0,
            last_transit: None,
        }
    }
}

/// What [`SeqStats::on_packet`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqVerdict {
    /// In order (possibly after a gap).
    InOrder,
    /// Older than the highest seen, not seen before.
    Reordered,
    /// Seen before.
    Duplicate,
}

impl SeqStats {
    fn bit(&self, e: u64) -> bool {
        let i = (e % WINDOW) as usize;
        self.seen[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_bit(&mut self, e: u64) {
        let i = (e % WINDOW) as usize;
        self.seen[i / 64] |= 1 << (i % 64);
    }

    fn clear_bit(&mut self, e: u64) {
        let i = (e % WINDOW) as usize;
        self.seen[i / 64] &= !(1 << (i % 64));
    }

    /// Accounts one packet with sequence number `seq` and RTP timestamp `rtp_ts`, which
    /// arrived at `arrival` (the arrival time in RTP timestamp units, wrapping).
    pub(crate) fn on_packet(&mut self, seq: u16, rtp_ts: u32, arrival: u32) -> SeqVerdict {
        let Some(_) = self.base else {
            // Start the extended space one cycle up so that early reordering cannot
            // go below zero.
            let e = (1u64 << 16) + u64::from(seq);
            self.base = Some(e);
            self.max_ext = e;
            self.received = 1;
            self.set_bit(e);
            self.jitter_update(rtp_ts, arrival);
            return SeqVerdict::InOrder;
        };
        let max16 = self.max_ext as u16;
        let delta = i64::from(seq.wrapping_sub(max16) as i16);
        let Some(e) = self.max_ext.checked_add_signed(delta) else {
            // Before the start of the extended space: too old to place.
            self.reordered += 1;
            return SeqVerdict::Reordered;
        };
        if e > self.max_ext {
            let gap = e - self.max_ext;
            if gap >= WINDOW {
                self.seen = [0; (WINDOW / 64) as usize];
            } else {
                for x in self.max_ext + 1..=e {
                    self.clear_bit(x);
                }
            }
            self.max_ext = e;
            self.set_bit(e);
            self.received += 1;
            self.jitter_update(rtp_ts, arrival);
            return SeqVerdict::InOrder;
        }
        if self.max_ext - e < WINDOW && self.bit(e) {
            self.duplicates += 1;
            return SeqVerdict::Duplicate;
        }
        if self.max_ext - e < WINDOW {
            self.set_bit(e);
        }
        if self.base.is_some_and(|b| e < b) {
            self.base = Some(e);
        }
        self.received += 1;
        self.reordered += 1;
        self.jitter_update(rtp_ts, arrival);
        SeqVerdict::Reordered
    }

    /// RFC 3550 A.8.
    fn jitter_update(&mut self, rtp_ts: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(last) = self.last_transit {
            let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Packets received, each counted once.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected from the extended sequence range (A.3).
    pub(crate) fn expected(&self) -> u64 {
        self.base.map_or(0, |b| self.max_ext - b + 1)
    }

    /// Cumulative loss (expected − received), never negative.
    pub(crate) fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Duplicates.
    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets that arrived after a higher sequence number.
    pub(crate) fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Interarrival jitter in RTP timestamp units.
    pub(crate) fn jitter(&self) -> f64 {
        self.jitter
    }
}

/// Sub-buckets per power of two (≈3 % resolution).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// A log-linear histogram of non-negative integers (microseconds here), exact below 32
/// and within ~3 % above; exact count, sum, minimum and maximum.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
    ((e - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// Inclusive value range of bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i);
    }
    let e = i / SUB - 1 + u64::from(SUB_BITS);
    let sub = i % SUB;
    let lo = (1u64 << e) + (sub << (e - u64::from(SUB_BITS)));
    let width = 1u64 << (e - u64::from(SUB_BITS));
    (lo, lo.saturating_add(width - 1))
}

impl Histogram {
    /// Adds one value.
    pub(crate) fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(bucket_of(v)) {
            *c += 1;
        }
        self.count += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds every value of `other`.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of values.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Largest value (0 when empty).
    #[cfg(test)]
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// Mean (0 when empty).
    pub(crate) fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0..=1): the midpoint of its bucket, clamped to the
    /// observed minimum and maximum. 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank >= self.count {
            return self.max;
        }
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = bucket_range(i);
                return (lo + (hi - lo) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Non-empty buckets as (inclusive upper bound, count).
    pub(crate) fn buckets(&self) -> Vec<(u64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (bucket_range(i).1, *c))
            .collect()
    }

    /// Percentile summary in milliseconds (values recorded in microseconds).
    pub(crate) fn summary_ms(&self) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: self.count,
            mean: self.mean() / 1000.0,
            p50: ms(self.quantile(0.50)),
            p95: ms(self.quantile(0.95)),
            p99: ms(self.quantile(0.99)),
            max: ms(self.max),
        }
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(crate) struct Percentiles {
    /// Number of samples.
    pub(crate) count: u64,
    /// Mean.
    pub(crate) mean: f64,
    /// Median.
    pub(crate) p50: f64,
    /// 95th percentile.
    pub(crate) p95: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// Maximum.
    pub(crate) max: f64,
}

/// Equipment impairment factor `Ie` and packet-loss robustness `Bpl` of a codec (ITU-T
/// G.113 Appendix I values for G.711 with PLC; the others are narrowband estimates).
pub(crate) fn codec_impairment(name: &str) -> (f64, f64) {
    match name.to_ascii_uppercase().as_str() {
        "PCMU" | "PCMA" | "L16" => (0.0, 25.1),
        "G722" => (0.0, 25.1),
        "OPUS" => (10.0, 20.0),
        _ => (0.0, 10.0),
    }
}

/// The simplified E-model (ITU-T G.107): R = 93.2 − Id(d) − Ie,eff(Ie, Bpl, Ppl), with
/// random loss (BurstR = 1) and the usual linear-plus-knee approximation of the delay
/// impairment. `delay_ms` is the one-way mouth-to-ear delay, `loss_pct` in percent.
/// Returns (R, MOS).
pub(crate) fn emodel(delay_ms: f64, loss_pct: f64, ie: f64, bpl: f64) -> (f64, f64) {
    let d = delay_ms.max(0.0);
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = loss_pct.clamp(0.0, 100.0);
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    let r = 93.2 - id - ie_eff;
    (r, r_to_mos(r))
}

/// G.107 Annex B: R → MOS(CQE).
pub(crate) fn r_to_mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_with_gap_is_loss() {
        let mut s = SeqStats::default();
        for seq in [10u16, 11, 12, 14, 15] {
            assert_eq!(s.on_packet(seq, 0, 0), SeqVerdict::InOrder);
        }
        assert_eq!((s.expected(), s.received(), s.lost()), (6, 5, 1));
        // The late 13 fills the gap.
        assert_eq!(s.on_packet(13, 0, 0), SeqVerdict::Reordered);
        assert_eq!((s.lost(), s.reordered(), s.duplicates()), (0, 1, 0));
        assert_eq!(s.on_packet(13, 0, 0), SeqVerdict::Duplicate);
        assert_eq!(s.on_packet(15, 0, 0), SeqVerdict::Duplicate);
        assert_eq!((s.received(), s.duplicates()), (6, 2));
    }

    #[test]
    fn rollover_extends() {
        let mut s = SeqStats::default();
        let mut seq = 65_530u16;
        for _ in 0..20 {
            s.on_packet(seq, 0, 0);
            seq = seq.wrapping_add(1);
        }
        assert_eq!((s.expected(), s.received(), s.lost()), (20, 20, 0));
        // Reordering across the wrap: 65535 after 0.
        let mut s = SeqStats::default();
        for seq in [65_534u16, 0, 65_535, 1] {
            s.on_packet(seq, 0, 0);
        }
        assert_eq!((s.expected(), s.lost(), s.reordered()), (4, 0, 1));
        // Reordered before the very first packet moves the base down.
        let mut s = SeqStats::default();
        for seq in [5u16, 4, 6] {
            s.on_packet(seq, 0, 0);
        }
        assert_eq!((s.expected(), s.lost()), (3, 0));
    }

    #[test]
    fn jitter_a8() {
        // Constant transit: zero jitter.
        let mut s = SeqStats::default();
        for i in 0..10u32 {
            s.on_packet(i as u16, i * 160, 1000 + i * 160);
        }
        assert_eq!(s.jitter(), 0.0);
        // Every other packet 80 units late: J converges towards 80.
        let mut s = SeqStats::default();
        for i in 0..400u32 {
            let late = if i % 2 == 1 { 80 } else { 0 };
            s.on_packet(i as u16, i * 160, i * 160 + late);
        }
        assert!((s.jitter() - 80.0).abs() < 1.0, "{}", s.jitter());
        // Timestamps wrapping modulo 2^32 do not disturb it.
        let mut s = SeqStats::default();
        let t0 = u32::MAX - 320;
        for i in 0..5u32 {
            s.on_packet(
                i as u16,
                t0.wrapping_add(i * 160),
                7u32.wrapping_add(i * 160),
            );
        }
        assert_eq!(s.jitter(), 0.0);
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=1000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 500.0).abs() / 500.0 < 0.04, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.04, "{p99}");
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(h.max(), 1000);
        assert!((h.mean() - 500.5).abs() < 1e-9);
        for i in 0..BUCKETS {
            let (lo, hi) = bucket_range(i);
            assert_eq!(bucket_of(lo), i);
            assert_eq!(bucket_of(hi), i);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        let mut g = Histogram::default();
        g.record(5_000_000);
        g.merge(&h);
        assert_eq!((g.count(), g.max()), (1001, 5_000_000));
        assert_eq!(g.buckets().iter().map(|b| b.1).sum::<u64>(), 1001);
        let s = g.summary_ms();
        assert_eq!(s.max, 5000.0);
    }

    #[test]
    fn emodel_values() {
        // G.711 at low delay and no loss: the default R of 93.2 → MOS ≈ 4.41.
        let (r, mos) = emodel(0.0, 0.0, 0.0, 25.1);
        assert!((r - 93.2).abs() < 1e-9);
        assert!((mos - 4.41).abs() < 0.01, "{mos}");
        // 1 % random loss costs ≈ 3.6 R points with Bpl 25.1.
        let (r1, _) = emodel(0.0, 1.0, 0.0, 25.1);
        assert!((r - r1 - 3.65).abs() < 0.05, "{r1}");
        // Delay beyond 177.3 ms has the steeper slope.
        let (r200, _) = emodel(200.0, 0.0, 0.0, 25.1);
        assert!((93.2 - r200 - (4.8 + 0.11 * 22.7)).abs() < 1e-9);
        assert_eq!(r_to_mos(-5.0), 1.0);
        assert_eq!(r_to_mos(120.0), 4.5);
        let (_, bad) = emodel(0.0, 50.0, 0.0, 25.1);
        assert!(bad < 2.0, "{bad}");
        assert_eq!(codec_impairment("pcma"), (0.0, 25.1));
    }
}
