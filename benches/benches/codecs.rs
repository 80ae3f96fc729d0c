#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Codec costs per 20 ms frame: G.711 (table vs segment search), A↔µ transcoding, L16,
//! G.722, Opus at 8/16/48 kHz and complexity 5/9, and the 8↔16 kHz half-band converters.
//!
//! Run: `cargo bench -p mgw-benches --bench codecs -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mgw_media::codec::g711::{self, G711Law};
use mgw_media::codec::resample::{Downsampler2, Upsampler2};
use mgw_media::codec::{Codec, CodecConfig, CodecKind, Decoder, Encoder};

/// Speech-like test signal: two tones plus deterministic noise, `n` samples at `rate`.
fn signal(rate: u32, n: usize) -> Vec<i16> {
    let mut seed = 0x1234_5678u32;
    (0..n)
        .map(|i| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = f64::from((seed >> 16) as i16 as i32 >> 4);
            let t = i as f64 / f64::from(rate);
            let tone = 6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 3000.0 * (2.0 * std::f64::consts::PI * 1330.0 * t).sin();
            (tone + noise) as i16
        })
        .collect()
}

fn g711(c: &mut Criterion) {
    let pcm = signal(8000, 160);
    let mut codes = [0u8; 160];
    let mut out = [0i16; 160];
    let mut g = c.benchmark_group("g711_160");
    g.throughput(Throughput::Elements(160));
    for (name, law) in [("ulaw", G711Law::MuLaw), ("alaw", G711Law::ALaw)] {
        g.bench_function(format!("encode_table_{name}"), |b| {
            b.iter(|| g711::encode_slice(law, black_box(&pcm), &mut codes))
        });
        g.bench_function(format!("encode_segment_search_{name}"), |b| {
            b.iter(|| {
                for (o, &x) in codes.iter_mut().zip(black_box(&pcm)) {
                    *o = match law {
                        G711Law::MuLaw => g711::ulaw_encode_computed(x),
                        G711Law::ALaw => g711::alaw_encode_computed(x),
                    };
                }
            })
        });
        g711::encode_slice(law, &pcm, &mut codes);
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| g711::decode_slice(law, black_box(&codes), &mut out))
        });
    }
    let src = codes;
    g.bench_function("transcode_ulaw_to_alaw", |b| {
        b.iter(|| g711::transcode_slice(G711Law::MuLaw, G711Law::ALaw, black_box(&src), &mut codes))
    });
    g.bench_function("transcode_alaw_to_ulaw", |b| {
        b.iter(|| g711::transcode_slice(G711Law::ALaw, G711Law::MuLaw, black_box(&src), &mut codes))
    });
    // Through the per-connection enum, as the dataplane calls it.
    let mut codec = Codec::new(CodecKind::Pcma, &CodecConfig::default()).expect("PCMA");
    g.bench_function("codec_enum_encode_pcma", |b| {
        b.iter(|| codec.encoder.encode(black_box(&pcm), &mut codes))
    });
    g.finish();
}

/// Encodes and decodes 20 ms frames of `kind`, cycling through one second of signal.
fn bench_codec(c: &mut Criterion, group: &str, label: &str, kind: CodecKind, cfg: &CodecConfig) {
    let mut codec = Codec::new(kind, cfg).expect("codec");
    let rate = codec.encoder.sample_rate();
    let frame = rate as usize / 50;
    let pcm = signal(rate, frame * 50);
    let frames: Vec<&[i16]> = pcm.chunks(frame).collect();
    let mut buf = vec![0u8; codec.encoder.max_payload_len(frame)];
    let packets: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let n = codec.encoder.encode(f, &mut buf).expect("encode");
            buf[..n].to_vec()
        })
        .collect();
    let mut out = vec![0i16; frame];
    let mut g = c.benchmark_group(group);
    let mut i = 0;
    g.bench_function(BenchmarkId::new("encode", label), |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            codec.encoder.encode(black_box(frames[i]), &mut buf)
        })
    });
    g.bench_function(BenchmarkId::new("decode", label), |b| {
        b.iter(|| {
            i = (i + 1) % packets.len();
            codec.decoder.decode(black_box(&packets[i]), &mut out)
        })
    });
    g.finish();
}

fn opus(c: &mut Criterion) {
    for rate in [8000, 16000, 48000] {
        for complexity in [5, 9] {
            let bitrate = match rate {
                8000 => 24_000,
                16000 => 32_000,
                _ => 64_000,
            };
            let cfg = CodecConfig {
                opus_rate: rate,
                opus_complexity: complexity,
                opus_bitrate: bitrate,
                ..Default::default()
            };
            bench_codec(
                c,
                "opus_20ms",
                &format!("{}k_c{complexity}", rate / 1000),
                CodecKind::Opus,
                &cfg,
            );
        }
    }
    let cfg = CodecConfig {
        opus_fec: true,
        opus_packet_loss_perc: 10,
        ..Default::default()
    };
    bench_codec(c, "opus_20ms", "8k_c5_fec", CodecKind::Opus, &cfg);
}

fn others(c: &mut Criterion) {
    let cfg = CodecConfig::default();
    bench_codec(c, "g722_20ms", "16k", CodecKind::G722, &cfg);
    bench_codec(c, "l16_20ms", "16k", CodecKind::L16 { rate: 16000 }, &cfg);

    let narrow = signal(8000, 160);
    let wide = signal(16000, 320);
    let mut up = Upsampler2::new();
    let mut down = Downsampler2::new();
    let mut out = [0i16; 320];
    let mut g = c.benchmark_group("resample_20ms");
    g.bench_function("up_8k_to_16k", |b| {
        b.iter(|| up.process(black_box(&narrow), &mut out))
    });
    g.bench_function("down_16k_to_8k", |b| {
        b.iter(|| down.process(black_box(&wide), &mut out))
    });
    g.finish();
}

criterion_group!(benches, g711, opus, others);
criterion_main!(benches);
