//! RTCP on the odd port: parsing incoming reports for the round-trip time (RFC 3550
//! §6.4.1) and building our periodic SR/RR + SDES compound packets. No I/O, no clock.

use rtcp_types::{
    Compound, Packet, ReceiverReport, ReportBlock, RtcpPacketWriterExt, Sdes, SdesChunk, SdesItem,
    SenderReport,
};

/// What one incoming RTCP compound packet told us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcpInfo {
    /// From a sender report: (sender SSRC, middle 32 bits of its NTP timestamp).
    pub sr: Option<(u32, u32)>,
    /// Round-trip time in microseconds from a report block about our SSRC.
    pub rtt_us: Option<u64>,
}

/// Parses an incoming compound packet. `our_ssrc` selects the report block about our
/// stream; `arrival_ntp32` is the arrival time as the middle 32 bits of NTP time.
/// Malformed input gives `None`.
pub fn parse_rtcp(data: &[u8], our_ssrc: u32, arrival_ntp32: u32) -> Option<RtcpInfo> {
    let compound = Compound::parse(data).ok()?;
    let mut info = RtcpInfo::default();
    let mut any = false;
    for packet in compound {
        let packet = packet.ok()?;
        any = true;
        match packet {
            Packet::Sr(sr) => {
                info.sr = Some((sr.ssrc(), (sr.ntp_timestamp() >> 16) as u32));
                rtt_from_blocks(sr.report_blocks(), our_ssrc, arrival_ntp32, &mut info);
            }
            Packet::Rr(rr) => {
                rtt_from_blocks(rr.report_blocks(), our_ssrc, arrival_ntp32, &mut info)
            }
            _ => {}
        }
    }
    any.then_some(info)
}

fn rtt_from_blocks<'a>(
    blocks: impl Iterator<Item = ReportBlock<'a>>,
    our_ssrc: u32,
    arrival: u32,
    info: &mut RtcpInfo,
) {
    for b in blocks {
        if b.ssrc() != our_ssrc {
            continue;
        }
        let lsr = b.last_sender_report_timestamp();
        if lsr == 0 {
            continue;
        }
        let dlsr = b.delay_since_last_sender_report_timestamp();
        // RTT = A - LSR - DLSR in 1/65536 s units (wrapping NTP arithmetic).
        let rtt = arrival.wrapping_sub(lsr).wrapping_sub(dlsr);
        if rtt < 0x8000_0000 {
            info.rtt_us = Some(u64::from(rtt) * 1_000_000 / 65_536);
        }
    }
}

/// One report block's worth of reception data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportData {
    /// SSRC of the source reported on.
    pub ssrc: u32,
    /// Fraction lost since the last report (1/256).
    pub fraction_lost: u8,
    /// Cumulative loss (clamped to the 24-bit signed field).
    pub cumulative_lost: i64,
    /// Extended highest sequence number.
    pub ext_max: u32,
    /// Jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP time (0 if none).
    pub lsr: u32,
    /// Delay since that SR in 1/65536 s (0 if none).
    pub dlsr: u32,
}

/// Sender information for an SR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderData {
    /// 64-bit NTP time of the report.
    pub ntp: u64,
    /// The RTP timestamp corresponding to `ntp`.
    pub rtp_ts: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

/// Writes an SR (when `sender` is given) or RR, plus an SDES CNAME, into `out`.
/// Returns the length written, or `None` if `out` is too small.
pub fn build_report(
    out: &mut [u8],
    ssrc: u32,
    cname: &str,
    sender: Option<SenderData>,
    report: Option<ReportData>,
) -> Option<usize> {
    let block = report.map(|r| {
        let lost = r.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as i32;
        ReportBlock::builder(r.ssrc)
            .fraction_lost(r.fraction_lost)
            .cumulative_lost((lost as u32) & 0x00ff_ffff)
            .extended_sequence_number(r.ext_max)
            .interarrival_jitter(r.jitter)
            .last_sender_report_timestamp(r.lsr)
            .delay_since_last_sender_report_timestamp(r.dlsr)
    });
    let sdes = Sdes::builder()
        .add_chunk(SdesChunk::builder(ssrc).add_item(SdesItem::builder(SdesItem::CNAME, cname)));
    let compound = match sender {
        Some(s) => {
            let mut sr = SenderReport::builder(ssrc)
                .ntp_timestamp(s.ntp)
                .rtp_timestamp(s.rtp_ts)
                .packet_count(s.packets)
                .octet_count(s.octets);
            if let Some(b) = block {
                sr = sr.add_report_block(b);
            }
            Compound::builder().add_packet(sr).add_packet(sdes)
        }
        None => {
            let mut rr = ReceiverReport::builder(ssrc);
            if let Some(b) = block {
                rr = rr.add_report_block(b);
            }
            Compound::builder().add_packet(rr).add_packet(sdes)
        }
    };
    compound.write_into(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sr_roundtrip_and_rtt() {
        let mut buf = [0u8; 256];
        let rd = ReportData {
            ssrc: 0x1111,
            fraction_lost: 12,
            cumulative_lost: 3,
            ext_max: 70000,
            jitter: 40,
            lsr: 0x0001_0000,
            dlsr: 0x0000_8000,
        };
        let sd = SenderData {
            ntp: 0x0002_0003_0004_0005,
            rtp_ts: 9,
            packets: 5,
            octets: 800,
        };
        let n = build_report(&mut buf, 0x2222, "mgw", Some(sd), Some(rd)).unwrap();
        // We are 0x1111 here: the block reports on us. Arrival 0x0001_C000 → RTT = 0x4000 = 250 ms.
        let info = parse_rtcp(&buf[..n], 0x1111, 0x0001_C000).unwrap();
        assert_eq!(info.sr, Some((0x2222, 0x0003_0004)));
        assert_eq!(info.rtt_us, Some(250_000));
        // RR without blocks parses too, and garbage does not.
        let n = build_report(&mut buf, 0x3333, "mgw", None, None).unwrap();
        assert_eq!(parse_rtcp(&buf[..n], 1, 0), Some(RtcpInfo::default()));
        assert_eq!(parse_rtcp(&[0x80, 0x00, 0xff], 1, 0), None);
    }

    #[test]
    fn negative_loss_is_24_bit() {
        let mut buf = [0u8; 128];
        let rd = ReportData {
            ssrc: 1,
            fraction_lost: 0,
            cumulative_lost: -2,
            ext_max: 1,
            jitter: 0,
            lsr: 0,
            dlsr: 0,
        };
        let n = build_report(&mut buf, 2, "x", None, Some(rd)).unwrap();
        // RR header 8 bytes, then the block: ssrc(4), fraction(1), cumulative(3).
        assert_eq!(&buf[12..16], &[0, 0xff, 0xff, 0xfe]);
        assert!(n > 32);
    }
}
