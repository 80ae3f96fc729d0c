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

/// Sixteen conference legs: every packet from the first goes to fifteen others, so a
/// back-to-back burst needs far more sends in flight than one pass usually has (the
/// io_uring backend's copy slots run out and must be recycled on the spot).
fn wide_fanout_burst(backend: BackendChoice) {
    const LEGS: usize = 16;
    const N: usize = 300;
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
    // Receivers run while the burst is sent, so no peer socket overflows.
    let rx: Vec<_> = peers[1..]
        .iter()
        .map(|p| {
            let p = p.try_clone().unwrap();
            std::thread::spawn(move || recv_n(&p, N, T))
        })
        .collect();
    for i in 0..N {
        let seq = i as u16;
        peers[0]
            .send_to(
                &rtp(96, seq, 160 * u32::from(seq), 0xb0, &[i as u8; 160]),
                legs[0].rtp_addr,
            )
            .unwrap();
    }
    for (k, h) in rx.into_iter().enumerate() {
        let got = h.join().unwrap();
        assert_eq!(got.len(), N, "leg {} got every packet", k + 1);
        let first = hdr(&got[0].0);
        for (i, (pkt, from)) in got.iter().enumerate() {
            let h = hdr(pkt);
            assert_eq!(*from, legs[k + 1].rtp_addr);
            assert_eq!((h.pt, h.ssrc), (97 + k as u8, legs[k + 1].ssrc));
            assert_eq!(h.seq, first.seq.wrapping_add(i as u16));
            assert_eq!(&pkt[12..], &[i as u8; 160][..]);
        }
    }
    // The statistics are published on the ~100 ms tick.
    let want = (N * (LEGS - 1)) as u64;
    assert!(wait_until(T, || sum(&dp, |w| w.tx_packets) >= want));
    let d = sum(&dp, |w| w.drops.no_buffer + w.drops.send_queue_full + w.drops.send_error);
    assert_eq!(d, 0, "no send-side drops");
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
    for seq in 0..500u16 {
        pa.send_to(&rtp(0, seq, 160 * u32::from(seq), 0xc0, &[1; 160]), a.rtp_addr)
            .unwrap();
    }
    assert_eq!(recv_n(&pb, 500, T).len(), 500);
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
