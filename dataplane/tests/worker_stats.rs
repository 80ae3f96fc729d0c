//! Per-worker statistics against the per-connection counters, on both backends.

mod common;

use std::time::Duration;

use common::*;
use mgw_dataplane::{BackendChoice, ConnStats, ConnUpdate, Dataplane, Mode, WorkerStats};

const T: Duration = Duration::from_secs(5);

fn sum(dp: &Dataplane, f: impl Fn(&WorkerStats) -> u64) -> u64 {
    dp.worker_stats().iter().map(f).sum()
}

fn stats_match_connections(backend: BackendChoice) {
    let dp = start(backend);
    assert_eq!(dp.worker_stats().len(), dp.workers());
    let (pa, pb, stranger) = (peer(), peer(), peer());
    let group = 5u32;
    let opts = |remote: &std::net::UdpSocket, pt| LegOpts {
        remote: Some(remote.local_addr().unwrap()),
        payloads: vec![pcmu(pt)],
        ..LegOpts::default()
    };
    let a = add_leg(&dp, 51, group, opts(&pa, 96));
    let b = add_leg(&dp, 52, group, opts(&pb, 97));
    settle();

    // Relayed both ways.
    let payload = [7u8; 160];
    for seq in 0..200u16 {
        pa.send_to(&rtp(96, seq, u32::from(seq) * 160, 1, &payload), a.rtp_addr)
            .unwrap();
    }
    for seq in 0..50u16 {
        pb.send_to(&rtp(97, seq, u32::from(seq) * 160, 2, &payload), b.rtp_addr)
            .unwrap();
    }
    assert_eq!(recv_n(&pb, 200, T).len(), 200);
    assert_eq!(recv_n(&pa, 50, T).len(), 50);
    // Dropped: 5 from a stranger, 3 with an unknown PT, 2 too short.
    for seq in 0..5u16 {
        stranger
            .send_to(&rtp(96, seq, 0, 3, &payload), a.rtp_addr)
            .unwrap();
    }
    for seq in 200..203u16 {
        pa.send_to(&rtp(8, seq, 0, 1, &payload), a.rtp_addr)
            .unwrap();
    }
    pa.send_to(&[0x80, 96, 0], a.rtp_addr).unwrap();
    pa.send_to(&[0x80], a.rtp_addr).unwrap();
    // A stops sending to its remote: B's packets are accepted, then dropped by mode.
    modify(
        &dp,
        &a,
        ConnUpdate {
            mode: Some(Mode::RecvOnly),
            ..ConnUpdate::default()
        },
    );
    for seq in 50..54u16 {
        pb.send_to(&rtp(97, seq, u32::from(seq) * 160, 2, &payload), b.rtp_addr)
            .unwrap();
    }
    assert!(wait_until(T, || b.counters.snapshot().dropped_mode == 4));

    let conns = || -> ConnStats {
        let (x, y) = (a.counters.snapshot(), b.counters.snapshot());
        ConnStats {
            packets_sent: x.packets_sent + y.packets_sent,
            octets_sent: x.octets_sent + y.octets_sent,
            packets_recv: x.packets_recv + y.packets_recv,
            octets_recv: x.octets_recv + y.octets_recv,
            dropped_source: x.dropped_source + y.dropped_source,
            dropped_mode: x.dropped_mode + y.dropped_mode,
            dropped_invalid: x.dropped_invalid + y.dropped_invalid,
            ..ConnStats::default()
        }
    };
    let c = conns();
    assert_eq!(
        (
            c.packets_recv,
            c.packets_sent,
            c.dropped_source,
            c.dropped_mode,
            c.dropped_invalid
        ),
        (254, 250, 5, 4, 5)
    );
    // The workers publish on their ~100 ms tick.
    let rtp_rx = |w: &WorkerStats| w.rx_packets - w.rtcp_rx_packets;
    assert!(wait_until(T, || sum(&dp, rtp_rx) == 264));
    let stats = dp.worker_stats();
    let total = |f: &dyn Fn(&WorkerStats) -> u64| stats.iter().map(f).sum::<u64>();
    // Every received RTP datagram was accepted or dropped for its source or as invalid
    // (mode drops happen after acceptance).
    assert_eq!(
        total(&rtp_rx),
        c.packets_recv + c.dropped_source + c.dropped_invalid
    );
    assert_eq!(total(&|w| w.rtcp_rx_packets), 0);
    // Bytes are whole datagrams: payload octets plus the 12-byte headers, plus the drops.
    let dropped_bytes = 5 * 172 + 3 * 172 + 3 + 1;
    assert_eq!(
        total(&|w| w.rx_bytes),
        c.octets_recv + 12 * c.packets_recv + dropped_bytes
    );
    // Every decided send left (no send drops); RTCP reports may have joined.
    assert_eq!(total(&|w| w.tx_packets - w.rtcp_tx_packets), c.packets_sent);
    let tx_rtp_bytes = c.octets_sent + 12 * c.packets_sent;
    if total(&|w| w.rtcp_tx_packets) == 0 {
        assert_eq!(total(&|w| w.tx_bytes), tx_rtp_bytes);
    } else {
        assert!(total(&|w| w.tx_bytes) > tx_rtp_bytes);
    }
    // Drops by reason: the worker totals equal the connections' counters.
    assert_eq!(total(&|w| w.drops.source_check), c.dropped_source);
    assert_eq!(total(&|w| w.drops.mode), c.dropped_mode);
    assert_eq!(total(&|w| w.drops.invalid), c.dropped_invalid);
    assert_eq!(
        total(&|w| w.drops.no_buffer + w.drops.send_queue_full + w.drops.send_error),
        0
    );
    // Both legs live on worker `group % workers`; the other worker saw nothing.
    let owner = group as usize % dp.workers();
    for w in &stats {
        if w.worker == owner {
            assert_eq!((w.connections, w.commands), (2, 3));
        } else {
            assert_eq!((w.connections, w.commands, w.rx_packets), (0, 0, 0));
        }
        assert!(w.loop_passes > 0);
        assert!(w.wall_ns > 0);
        // One thread cannot use more CPU than wall time (allowing clock granularity).
        assert!(w.cpu_ns <= w.wall_ns + 1_000_000, "{w:?}");
    }
    let busy = &stats[owner];
    assert!(busy.cpu_ns > 0);
    // CPU time and wall time advance between snapshots (load = Δcpu / Δwall).
    std::thread::sleep(Duration::from_millis(250));
    let later = dp.worker_stats()[owner];
    assert!(later.wall_ns > busy.wall_ns);
    assert!(later.cpu_ns >= busy.cpu_ns);

    // Removal: the counts stay (monotonic), the connection count drops.
    remove(&dp, &a);
    remove(&dp, &b);
    assert!(wait_until(T, || {
        let w = dp.worker_stats()[owner];
        w.connections == 0 && w.commands == 5
    }));
    assert_eq!(sum(&dp, |w| w.drops.source_check), 5);
    dp.shutdown();
}
both_backends!(stats_match_connections, super::stats_match_connections);
