//! Per-channel media engine cost: one 20 ms tick (plus the one RTP packet that arrived for
//! it) for a channel with one connection — PCMU or Opus (8 kHz, complexity 5) — receive
//! only, send only and full duplex, with the TDM DTMF detector on; and full-duplex PCMU
//! with the detector off, to show its share.
//!
//! Run: `cargo bench -p mgw-benches --bench engine -- --warm-up-time 1 --measurement-time 2`

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mgw_media::codec::{Codec, CodecConfig, CodecKind, Encoder};
use mgw_media::engine::rtp::RtpHeader;
use mgw_media::engine::{ChannelEngine, ConnParams, EngineConfig, MediaMode};

/// Speech-like test signal: two tones plus deterministic noise.
fn signal(n: usize) -> Vec<i16> {
    let mut seed = 0x1234_5678u32;
    (0..n)
        .map(|i| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = f64::from((seed >> 16) as i16 as i32 >> 4);
            let t = i as f64 / 8000.0;
            let tone = 6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 3000.0 * (2.0 * std::f64::consts::PI * 1330.0 * t).sin();
            (tone + noise) as i16
        })
        .collect()
}

/// One second of 20 ms RTP packets of `kind` (header fields rewritten per use).
fn packets(kind: CodecKind, pt: u8) -> Vec<Vec<u8>> {
    let mut codec = Codec::new(kind, &CodecConfig::default()).expect("codec");
    let pcm = signal(8000);
    pcm.chunks(160)
        .map(|frame| {
            let mut p = vec![0u8; 12 + 4000];
            let n = codec.encoder.encode(frame, &mut p[12..]).expect("encode");
            p.truncate(12 + n);
            RtpHeader {
                marker: false,
                payload_type: pt,
                sequence: 0,
                timestamp: 0,
                ssrc: 0x1234,
            }
            .write(&mut p)
            .expect("header");
            p
        })
        .collect()
}

fn bench_one(c: &mut Criterion, name: &str, kind: CodecKind, mode: MediaMode, detect: bool) {
    let pt = kind.static_payload_type().unwrap_or(111);
    let mut eng = ChannelEngine::new(EngineConfig {
        dtmf_detection: detect,
        ..EngineConfig::default()
    });
    let mut params = ConnParams::new(kind, pt);
    params.mode = mode;
    eng.add_connection(1, params).expect("connection");
    let mut pkts = packets(kind, pt);
    let tdm_in = signal(160 * 50);
    let mut tdm_out = [0i16; 160];
    let t0 = Instant::now();
    let step = kind.rtp_ticks(160, kind.audio_rate(&CodecConfig::default()));
    let mut k: u32 = 0;
    let mut sent = 0usize;
    c.bench_function(name, |b| {
        b.iter(|| {
            let i = (k % 50) as usize;
            let now = t0 + Duration::from_micros(u64::from(k) * 20_000);
            let p = &mut pkts[i];
            p[2..4].copy_from_slice(&(k as u16).to_be_bytes());
            p[4..8].copy_from_slice(&k.wrapping_mul(step).to_be_bytes());
            eng.on_rtp(1, now + Duration::from_millis(5), black_box(p));
            eng.tick(
                now,
                black_box(&tdm_in[i * 160..(i + 1) * 160]),
                &mut tdm_out,
                &mut |_, pkt| sent += pkt.len(),
            );
            while eng.poll_event().is_some() {}
            k = k.wrapping_add(1);
        })
    });
    black_box(sent);
}

fn engine(c: &mut Criterion) {
    for (codec, kind) in [("pcmu", CodecKind::Pcmu), ("opus8k_c5", CodecKind::Opus)] {
        for (mode_name, mode) in [
            ("recv", MediaMode::RecvOnly),
            ("send", MediaMode::SendOnly),
            ("duplex", MediaMode::SendRecv),
        ] {
            bench_one(
                c,
                &format!("engine_tick/{codec}/{mode_name}"),
                kind,
                mode,
                true,
            );
        }
    }
    bench_one(
        c,
        "engine_tick/pcmu/duplex_no_dtmf_detector",
        CodecKind::Pcmu,
        MediaMode::SendRecv,
        false,
    );
}

criterion_group!(benches, engine);
criterion_main!(benches);
