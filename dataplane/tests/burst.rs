//! Bursts and idleness, on both backends: a wide fan-out burst is relayed without a
//! single send-side drop, and a worker with nothing to do uses (almost) no CPU.

mod common;

use std::time::Duration;

use common::*;
use mgw_dataplane::{BackendChoice, Dataplane, Mode, WorkerStats};

const T: Duration = Duration::from_secs(10);

fn sum(dp: &Dataplane, f: impl Fn(&WorkerStats) -> u64) -> u64 {
    dp.worker_stats().iter().map(f).sum()
}

/// Sixteen conference legs, all sending at once, back to back: every packet received
/// goes to the fifteen other legs, so one pass can need far more sends in flight than
/// the io_uring backend has copy slots (they must be recycled on the spot). Whatever
/// the relay sockets accept is sent fifteen times, without a single send-side drop
/// (the peers do not read: what their sockets drop is not the relay's business).
fn wide_fanout_burst(backend: BackendChoice) {
    const LEGS: usize = 16;
    const N: usize = 200;
    let dp = start(backend);
    let peers: Vec<_> = (0..LEGS).map(|_| peer()).collect();
    let legs: Vec<Leg> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            add_leg(
                &dp,
                700 + i as u32,
                70,
                LegOpts {
                    mode: Mode::Confrnce,
                    remote: Some(p.local_addr().unwrap()),
                    payloads: vec![pcmu(96 + i as u8)],
                    ..LegOpts::default()
                },
            )
        })
        .collect();
    settle();
    for i in 0..N {
        for (k, (p, leg)) in peers.iter().zip(&legs).enumerate() {
            let seq = i as u16;
            p.send_to(
                &rtp(
                    96 + k as u8,
                    seq,
                    160 * u32::from(seq),
                    0xb0,
                    &[i as u8; 160],
                ),
                leg.rtp_addr,
            )
            .unwrap();
        }
    }
    // Settled when the statistics (published on the ~100 ms tick) stop moving.
    let mut last = (u64::MAX, u64::MAX);
    assert!(wait_until(T, || {
        std::thread::sleep(Duration::from_millis(150));
        let now = (sum(&dp, |w| w.rx_packets), sum(&dp, |w| w.tx_packets));
        std::mem::replace(&mut last, now) == now
    }));
    let (rx, tx) = last;
    assert!(rx >= 256, "a real burst reached the relay ({rx} datagrams)");
    let d = sum(&dp, |w| {
        w.drops.no_buffer + w.drops.send_queue_full + w.drops.send_error
    });
    let detail: Vec<_> = dp.worker_stats().iter().map(|w| w.drops).collect();
    assert_eq!(d, 0, "no send-side drops: {detail:?}");
    assert_eq!(
        tx,
        rx * (LEGS as u64 - 1),
        "every datagram to every other leg"
    );
    dp.shutdown();
}
both_backends!(wide_fanout_burst, super::wide_fanout_burst);

/// After traffic stops, a worker sleeps: over a second of idleness it uses well under
/// 5 % of a core (it wakes for the 100 ms tick only).
fn idle_worker_sleeps(backend: BackendChoice) {
    let dp = start(backend);
    let (pa, pb) = (peer(), peer());
    let opts = |p: &std::net::UdpSocket| LegOpts {
        remote: Some(p.local_addr().unwrap()),
        ..LegOpts::default()
    };
    let a = add_leg(&dp, 801, 80, opts(&pa));
    let _b = add_leg(&dp, 802, 80, opts(&pb));
    settle();
    for seq in 0..200u16 {
        pa.send_to(
            &rtp(0, seq, 160 * u32::from(seq), 0xc0, &[1; 160]),
            a.rtp_addr,
        )
        .unwrap();
        if seq % 20 == 19 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(recv_n(&pb, 200, T).len(), 200);
    // Let the last pass and a tick go by, then measure a quiet second.
    std::thread::sleep(Duration::from_millis(300));
    let (cpu0, wall0) = (sum(&dp, |w| w.cpu_ns), sum(&dp, |w| w.wall_ns));
    std::thread::sleep(Duration::from_secs(1));
    let (cpu1, wall1) = (sum(&dp, |w| w.cpu_ns), sum(&dp, |w| w.wall_ns));
    assert!(wall1 > wall0, "statistics are published while idle");
    let (cpu, wall) = (cpu1 - cpu0, wall1 - wall0);
    assert!(
        cpu * 20 < wall,
        "idle workers used {cpu} ns of CPU in {wall} ns of wall time"
    );
    dp.shutdown();
}
both_backends!(idle_worker_sleeps, super::idle_worker_sleeps);
