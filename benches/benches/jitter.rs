#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Jitter buffer and packet-loss concealment costs: one RTP packet pushed plus one 20 ms tick
//! popped (in order, and with 0–60 ms jitter so packets reorder), and one concealed frame
//! (pitch search + synthesis) after a good one, at 8 and 16 kHz.
//!
//! Run: `cargo bench -p mgw-benches --bench jitter -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mgw_media::jitter::{JitterBuffer, JitterConfig, Playout};
use mgw_media::plc::Plc;

/// Voiced-like signal: harmonics of 140 Hz.
fn voiced(rate: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let v: f64 = (1..=5)
                .map(|k| {
                    5000.0 / k as f64 * (2.0 * std::f64::consts::PI * 140.0 * k as f64 * t).sin()
                })
                .sum();
            v as i16
        })
        .collect()
}

fn jitter(c: &mut Criterion) {
    let mut g = c.benchmark_group("jitter_push_pop");
    g.throughput(Throughput::Elements(1));
    // Arrival offsets (µs) for packet k: 0 (in order) or pseudo-random 0–60 ms.
    let mut seed = 0x2545_F491u32;
    let jittered: Vec<u64> = (0..4096)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            u64::from(seed >> 8) % 60_000
        })
        .collect();
    for (name, offsets) in [("in_order", vec![0u64; 4096]), ("jitter_0_60ms", jittered)] {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(JitterConfig::new(8000, 20));
            let payload = [0xD5u8; 160];
            // Packets are pushed in arrival order: a small reorder window sorted up front.
            let mut k: u64 = 0;
            let mut pending: Vec<(u64, u64)> = Vec::with_capacity(8);
            b.iter(|| {
                // Send packet k; deliver every pending packet that has arrived by tick k.
                pending.push((k * 20_000 + 20_000 + offsets[(k % 4096) as usize], k));
                let tick = k * 20_000 + 7_000;
                pending.sort_unstable();
                while let Some(&(at, seq)) = pending.first() {
                    if at > tick {
                        break;
                    }
                    pending.remove(0);
                    let r = jb.push(
                        t0 + Duration::from_micros(at),
                        seq as u16,
                        (seq * 160) as u32,
                        false,
                        &payload,
                    );
                    black_box(r);
                }
                let out = jb.pop(t0 + Duration::from_micros(tick));
                black_box(matches!(out, Playout::Frame { .. }));
                k += 1;
            })
        });
    }
    g.finish();
}

fn plc(c: &mut Criterion) {
    let mut g = c.benchmark_group("plc_20ms");
    for rate in [8000u32, 16000] {
        let n = rate as usize / 50;
        let x = voiced(rate, n * 50);
        g.bench_function(BenchmarkId::new("good_frame", rate), |b| {
            let mut plc = Plc::new(rate);
            let mut buf = vec![0i16; n];
            let mut i = 0;
            b.iter(|| {
                buf.copy_from_slice(&x[i * n..(i + 1) * n]);
                plc.good_frame(black_box(&mut buf));
                i = (i + 1) % 50;
            })
        });
        g.bench_function(BenchmarkId::new("good_then_conceal", rate), |b| {
            let mut plc = Plc::new(rate);
            let mut buf = vec![0i16; n];
            let mut i = 0;
            b.iter(|| {
                buf.copy_from_slice(&x[i * n..(i + 1) * n]);
                plc.good_frame(black_box(&mut buf));
                plc.conceal(black_box(&mut buf));
                i = (i + 1) % 50;
            })
        });
    }
    g.finish();
}

criterion_group!(benches, jitter, plc);
criterion_main!(benches);
