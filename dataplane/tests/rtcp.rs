//! RTCP on the odd port: our periodic SR, and the round-trip time from the peer's RR.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mgw_dataplane::{BackendChoice, SourceCheck};
use rtcp_types::{Compound, Packet, ReceiverReport, ReportBlock, RtcpPacketWriterExt};

fn rtt_from_rr(backend: BackendChoice) {
    let dp = start(backend);
    let (pa, pb) = (peer(), peer());
    let pa_rtcp = peer();
    // A's RTCP goes to pa_rtcp (remote RTCP = pa's RTP port + 1 is not ours to choose,
    // so point A at pa and set RTCP explicitly through a Modify).
    let a = add_leg(
        &dp,
        11,
        1,
        LegOpts {
            remote: Some(pa.local_addr().unwrap()),
            check: SourceCheck::Strict,
            ..LegOpts::default()
        },
    );
    let _b = add_leg(
        &dp,
        12,
        1,
        LegOpts {
            remote: Some(pb.local_addr().unwrap()),
            ..LegOpts::default()
        },
    );
    settle();
    modify(
        &dp,
        &a,
        mgw_dataplane::ConnUpdate {
            remote_rtcp: Some(pa_rtcp.local_addr().unwrap()),
            ..Default::default()
        },
    );
    // B -> A: A sends RTP to pa, so A's reports are SRs.
    for i in 0..5u16 {
        pb.send_to(&rtp(0, i, u32::from(i) * 160, 0x77, &[0; 160]), _b.rtp_addr)
            .unwrap();
    }
    // pa -> A too, so A's SR carries a report block about pa's stream.
    for i in 0..5u16 {
        pa.send_to(&rtp(0, i, u32::from(i) * 160, 0x88, &[0; 160]), a.rtp_addr)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sr = None;
    let mut buf = [0u8; 1500];
    pa_rtcp
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while sr.is_none() && Instant::now() < deadline {
        if let Ok((n, from)) = pa_rtcp.recv_from(&mut buf) {
            assert_eq!(from, a.rtcp_addr);
            let compound = Compound::parse(&buf[..n]).expect("valid compound RTCP");
            for p in compound {
                if let Ok(Packet::Sr(s)) = p {
                    assert_eq!(s.ssrc(), a.ssrc);
                    assert_eq!(s.packet_count(), 5);
                    assert_eq!(s.octet_count(), 800);
                    let blocks: Vec<_> = s
                        .report_blocks()
                        .map(|b| (b.ssrc(), b.extended_sequence_number()))
                        .collect();
                    assert_eq!(blocks, vec![(0x88, 4)]);
                    sr = Some((s.ntp_timestamp() >> 16) as u32);
                }
            }
        }
    }
    let lsr = sr.expect("an SR within 10 s");
    // Answer 100 ms later claiming DLSR = 0: the RTT seen is ~100 ms.
    std::thread::sleep(Duration::from_millis(100));
    let rr = ReceiverReport::builder(0x88)
        .add_report_block(ReportBlock::builder(a.ssrc).last_sender_report_timestamp(lsr));
    let mut out = [0u8; 64];
    let n = rr.write_into(&mut out).unwrap();
    pa_rtcp.send_to(&out[..n], a.rtcp_addr).unwrap();
    assert!(wait_until(Duration::from_secs(5), || a
        .counters
        .snapshot()
        .rtt_us
        != 0));
    let rtt = a.counters.snapshot().rtt_us;
    assert!((90_000..1_000_000).contains(&rtt), "rtt {rtt} us");
    dp.shutdown();
}
both_backends!(rtt_from_rr, super::rtt_from_rr);
