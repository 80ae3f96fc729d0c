//! Relay behaviour over real loopback sockets, on both backends.

mod common;

use std::time::Duration;

use common::*;
use mgw_dataplane::{BackendChoice, ConnUpdate, DataplaneEvent, Mode, SourceCheck};

const T: Duration = Duration::from_secs(5);

/// Two legs of one group: A (peer `pa`, PT 96) and B (peer `pb`, PT 97), same codec.
fn two_legs(
    dp: &mgw_dataplane::Dataplane,
    group: u32,
    pa: &std::net::UdpSocket,
    pb: &std::net::UdpSocket,
) -> (Leg, Leg) {
    let a = add_leg(
        dp,
        group * 10 + 1,
        group,
        LegOpts {
            remote: Some(pa.local_addr().unwrap()),
            payloads: vec![pcmu(96)],
            ..LegOpts::default()
        },
    );
    let b = add_leg(
        dp,
        group * 10 + 2,
        group,
        LegOpts {
            remote: Some(pb.local_addr().unwrap()),
            payloads: vec![pcmu(97)],
            ..LegOpts::default()
        },
    );
    settle();
    (a, b)
}

fn bulk_relay(backend: BackendChoice) {
    let dp = start(backend);
    let (pa, pb) = (peer(), peer());
    let (a, b) = two_legs(&dp, 3, &pa, &pb);
    const N: usize = 2000;
    let pb2 = pb.try_clone().unwrap();
    let rx = std::thread::spawn(move || recv_n(&pb2, N, Duration::from_secs(15)));
    let payload = [0xd5u8; 160];
    for i in 0..N {
        let seq = 65000u16.wrapping_add(i as u16); // crosses the rollover
        pa.send_to(
            &rtp(96, seq, 1000 + 160 * i as u32, 0x1111, &payload),
            a.rtp_addr,
        )
        .unwrap();
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let got = rx.join().unwrap();
    assert_eq!(got.len(), N, "zero loss");
    let first = hdr(&got[0].0);
    assert_eq!(got[0].1, b.rtp_addr, "sent from B's socket");
    for (i, (pkt, _)) in got.iter().enumerate() {
        let h = hdr(pkt);
        assert_eq!(h.pt, 97, "PT mapped 96 -> 97");
        assert_eq!(h.ssrc, b.ssrc, "B's own SSRC");
        assert_eq!(
            h.seq,
            first.seq.wrapping_add(i as u16),
            "sequence continuity"
        );
        assert_eq!(h.ts, first.ts.wrapping_add(160 * i as u32));
        assert_eq!(h.len, 12 + 160);
        assert_eq!(&pkt[12..], &payload[..]);
    }
    assert!(wait_until(T, || a.counters.snapshot().packets_recv == N as u64));
    let sa = a.counters.snapshot();
    let sb = b.counters.snapshot();
    assert_eq!(sa.octets_recv, 160 * N as u64);
    assert_eq!(sa.packets_lost, 0);
    assert_eq!(sb.packets_sent, N as u64);
    assert_eq!(sb.octets_sent, 160 * N as u64);
    // And back: B -> A uses A's PT and SSRC.
    pb.send_to(&rtp(97, 7, 7, 0x2222, &payload), b.rtp_addr)
        .unwrap();
    let back = recv_n(&pa, 1, T);
    assert_eq!(back.len(), 1);
    let h = hdr(&back[0].0);
    assert_eq!((h.pt, h.ssrc), (96, a.ssrc));
    dp.shutdown();
}
both_backends!(bulk_relay_two_legs, super::bulk_relay);

fn modes(backend: BackendChoice) {
    let dp = start(backend);
    let (pa, pb) = (peer(), peer());
    let (a, b) = two_legs(&dp, 4, &pa, &pb);
    let w = Duration::from_millis(150);
    let mut seq_a = 0u16;
    let mut seq_b = 0u16;
    // (mode of A, A->B forwarded, B->A forwarded, A echoed)
    let cases = [
        (Mode::SendRecv, true, true, false),
        (Mode::SendOnly, false, true, false),
        (Mode::RecvOnly, true, false, false),
        (Mode::Inactive, false, false, false),
        (Mode::Confrnce, true, true, false),
        (Mode::Loopback, false, false, true),
        (Mode::ContTest, false, false, true),
        (Mode::NetwLoop, false, false, true),
        (Mode::NetwTest, false, false, true),
    ];
    for (mode, a_to_b, b_to_a, echo) in cases {
        modify(
            &dp,
            &a,
            ConnUpdate {
                mode: Some(mode),
                ..ConnUpdate::default()
            },
        );
        let dropped_before = a.counters.snapshot().dropped_mode;
        for _ in 0..3 {
            let p = rtp(96, seq_a, u32::from(seq_a) * 160, 0xaaaa, b"xyz");
            pa.send_to(&p, a.rtp_addr).unwrap();
            seq_a = seq_a.wrapping_add(1);
        }
        let at_b = drain_for(&pb, w);
        let at_a = recv_n(&pa, 3, w);
        assert_eq!(at_b, if a_to_b { 3 } else { 0 }, "{mode:?}: A->B");
        assert_eq!(at_a.len(), if echo { 3 } else { 0 }, "{mode:?}: echo");
        for (p, from) in &at_a {
            // Echo is unchanged and comes from A's own socket.
            assert_eq!(hdr(p).ssrc, 0xaaaa);
            assert_eq!(hdr(p).pt, 96);
            assert_eq!(*from, a.rtp_addr);
        }
        if !a_to_b && !echo {
            assert_eq!(
                a.counters.snapshot().dropped_mode,
                dropped_before + 3,
                "{mode:?}"
            );
        }
        for _ in 0..3 {
            let p = rtp(97, seq_b, u32::from(seq_b) * 160, 0xbbbb, b"xyz");
            pb.send_to(&p, b.rtp_addr).unwrap();
            seq_b = seq_b.wrapping_add(1);
        }
        assert_eq!(
            drain_for(&pa, w),
            if b_to_a { 3 } else { 0 },
            "{mode:?}: B->A"
        );
    }
    dp.shutdown();
}
both_backends!(all_modes, super::modes);

fn source_checks(backend: BackendChoice) {
    let dp = start(backend);
    let (pa, pb, stranger, stranger2) = (peer(), peer(), peer(), peer());
    // Strict: only pa.
    let (a, _b) = two_legs(&dp, 5, &pa, &pb);
    stranger
        .send_to(&rtp(96, 1, 1, 9, b"x"), a.rtp_addr)
        .unwrap();
    pa.send_to(&rtp(96, 1, 1, 9, b"x"), a.rtp_addr).unwrap();
    assert_eq!(recv_n(&pb, 2, Duration::from_millis(300)).len(), 1);
    let s = a.counters.snapshot();
    assert_eq!((s.dropped_source, s.packets_recv), (1, 1));

    // Latch: no remote known; the first source wins and is held.
    let l = add_leg(
        &dp,
        61,
        6,
        LegOpts {
            check: SourceCheck::Latch,
            ..LegOpts::default()
        },
    );
    let m = add_leg(
        &dp,
        62,
        6,
        LegOpts {
            remote: Some(pb.local_addr().unwrap()),
            ..LegOpts::default()
        },
    );
    settle();
    stranger
        .send_to(&rtp(0, 1, 1, 9, b"x"), l.rtp_addr)
        .unwrap();
    assert_eq!(recv_n(&pb, 1, T).len(), 1);
    stranger2
        .send_to(&rtp(0, 2, 2, 9, b"x"), l.rtp_addr)
        .unwrap();
    assert_eq!(drain_for(&pb, Duration::from_millis(200)), 0);
    assert_eq!(l.counters.snapshot().dropped_source, 1);
    // Media for the latched leg goes to the latched address.
    pb.send_to(&rtp(0, 1, 1, 3, b"y"), m.rtp_addr).unwrap();
    assert_eq!(recv_n(&stranger, 1, T).len(), 1);
    assert_eq!(drain_for(&stranger2, Duration::from_millis(100)), 0);
    // Malformed RTP and unknown payload types are counted as invalid.
    stranger.send_to(&[0x80, 0x00, 0x01], l.rtp_addr).unwrap();
    stranger
        .send_to(&rtp(8, 3, 3, 9, b"x"), l.rtp_addr)
        .unwrap();
    assert!(wait_until(T, || l.counters.snapshot().dropped_invalid == 2));
    dp.shutdown();
}
both_backends!(source_checks, super::source_checks);

fn modify_keeps_continuity(backend: BackendChoice) {
    let dp = start(backend);
    let (pa, pa2, pb) = (peer(), peer(), peer());
    let (a, b) = two_legs(&dp, 7, &pa, &pb);
    for i in 0..10u16 {
        pa.send_to(
            &rtp(96, 100 + i, 8000 + 160 * u32::from(i), 0x1, b"a"),
            a.rtp_addr,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let first = recv_n(&pb, 10, T);
    assert_eq!(first.len(), 10);
    let last = hdr(&first[9].0);
    // MDCX points A elsewhere; the new source starts an unrelated stream.
    modify(
        &dp,
        &a,
        ConnUpdate {
            remote_rtp: Some(pa2.local_addr().unwrap()),
            ..ConnUpdate::default()
        },
    );
    pa.send_to(&rtp(96, 110, 9600, 0x1, b"a"), a.rtp_addr)
        .unwrap(); // old source: dropped
    for i in 0..10u16 {
        pa2.send_to(
            &rtp(96, 40000 + i, 777 + 160 * u32::from(i), 0x2, b"b"),
            a.rtp_addr,
        )
        .unwrap();
    }
    let second = recv_n(&pb, 11, Duration::from_millis(800));
    assert_eq!(second.len(), 10);
    let h0 = hdr(&second[0].0);
    assert_eq!(h0.ssrc, b.ssrc);
    assert_eq!(h0.seq, last.seq.wrapping_add(1), "sequence continues");
    let dt = h0.ts.wrapping_sub(last.ts);
    assert!(
        dt > 0 && dt < 8000 * 2,
        "timestamp advances by elapsed time, got {dt}"
    );
    for (i, (p, _)) in second.iter().enumerate() {
        let h = hdr(p);
        assert_eq!(h.seq, h0.seq.wrapping_add(i as u16));
        assert_eq!(h.ts, h0.ts.wrapping_add(160 * i as u32));
        assert_eq!(&p[12..], b"b");
    }
    assert_eq!(a.counters.snapshot().dropped_source, 1);
    dp.shutdown();
}
both_backends!(modify_keeps_continuity, super::modify_keeps_continuity);

fn counters(backend: BackendChoice) {
    let dp = start(backend);
    let (pa, pb) = (peer(), peer());
    let (a, _b) = two_legs(&dp, 8, &pa, &pb);
    // 0..10, then 15..20: 5 lost (10..=14).
    for seq in (0..10u16).chain(15..20) {
        pa.send_to(
            &rtp(96, seq, u32::from(seq) * 160, 0x9, &[0; 160]),
            a.rtp_addr,
        )
        .unwrap();
    }
    assert!(wait_until(T, || a.counters.snapshot().packets_recv == 15));
    assert_eq!(a.counters.snapshot().packets_lost, 5);
    assert_eq!(a.counters.snapshot().octets_recv, 15 * 160);
    // Jittered input: constant timestamp steps, irregular sending times.
    for i in 0..30u16 {
        let seq = 20 + i;
        pa.send_to(
            &rtp(96, seq, u32::from(seq) * 160, 0x9, &[0; 160]),
            a.rtp_addr,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(if i % 2 == 0 { 2 } else { 25 }));
    }
    assert!(wait_until(T, || a.counters.snapshot().packets_recv == 45));
    let s = a.counters.snapshot();
    assert!(s.jitter_us > 1000, "jitter {} us", s.jitter_us);
    assert_eq!(s.packets_lost, 5);
    dp.shutdown();
}
both_backends!(counters, super::counters);

fn events(backend: BackendChoice) {
    let dp = start(backend);
    let (pa, pb) = (peer(), peer());
    let a = add_leg(
        &dp,
        91,
        9,
        LegOpts {
            remote: Some(pa.local_addr().unwrap()),
            timeout: Some(Duration::from_millis(300)),
            ..LegOpts::default()
        },
    );
    let b = add_leg(
        &dp,
        92,
        9,
        LegOpts {
            remote: Some(pb.local_addr().unwrap()),
            ..LegOpts::default()
        },
    );
    settle();
    pa.send_to(&rtp(0, 1, 1, 1, b"x"), a.rtp_addr).unwrap();
    assert!(wait_event(
        &dp,
        &DataplaneEvent::FirstPacket { key: a.key },
        T
    ));
    assert!(wait_event(
        &dp,
        &DataplaneEvent::RtpTimeout { key: a.key },
        T
    ));
    let port = a.rtp_addr;
    let rtcp_port = a.rtcp_addr;
    remove(&dp, &a);
    assert!(wait_event(&dp, &DataplaneEvent::Removed { key: a.key }, T));
    // The sockets are closed: the ports can be bound again.
    std::net::UdpSocket::bind(port).expect("RTP port free after Removed");
    std::net::UdpSocket::bind(rtcp_port).expect("RTCP port free after Removed");
    // B keeps running alone; traffic to it has nowhere to go.
    pb.send_to(&rtp(0, 1, 1, 1, b"x"), b.rtp_addr).unwrap();
    assert!(wait_until(T, || b.counters.snapshot().dropped_mode == 1));
    assert_eq!(dp.dropped_events(), 0);
    dp.shutdown();
}
both_backends!(events, super::events);

fn three_leg_fanout(backend: BackendChoice) {
    let dp = start(backend);
    let (pa, pb, pc) = (peer(), peer(), peer());
    let legs: Vec<Leg> = [(&pa, 96u8), (&pb, 97), (&pc, 98)]
        .iter()
        .enumerate()
        .map(|(i, (p, pt))| {
            add_leg(
                &dp,
                121 + i as u32,
                12,
                LegOpts {
                    mode: Mode::Confrnce,
                    remote: Some(p.local_addr().unwrap()),
                    payloads: vec![pcmu(*pt)],
                    ..LegOpts::default()
                },
            )
        })
        .collect();
    settle();
    for i in 0..200u16 {
        pa.send_to(
            &rtp(96, i, u32::from(i) * 160, 0xa, &[i as u8; 40]),
            legs[0].rtp_addr,
        )
        .unwrap();
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for (p, leg, pt) in [(&pb, &legs[1], 97u8), (&pc, &legs[2], 98)] {
        let got = recv_n(p, 200, T);
        assert_eq!(got.len(), 200);
        for (i, (pkt, _)) in got.iter().enumerate() {
            let h = hdr(pkt);
            assert_eq!((h.pt, h.ssrc), (pt, leg.ssrc));
            assert_eq!(h.seq, hdr(&got[0].0).seq.wrapping_add(i as u16));
            assert_eq!(&pkt[12..], &[i as u8; 40]);
        }
    }
    assert_eq!(
        drain_for(&pa, Duration::from_millis(100)),
        0,
        "no echo to the sender"
    );
    dp.shutdown();
}
both_backends!(three_leg_fanout, super::three_leg_fanout);
