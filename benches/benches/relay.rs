#![allow(missing_docs)] // criterion_group! generates undocumented items
//! The dataplane's per-packet path as pure functions on a buffer: RTP parse, RFC 3550
//! statistics update, and the forward decision with the in-place header rewrite.

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mgw_dataplane::relay::{Fanout, Relay};
use mgw_dataplane::rtp::{write_header, RecvStats};
use mgw_dataplane::{
    Codec, ConnCounters, ConnKey, ConnSpec, GroupId, Mode, PayloadBinding, SourceCheck,
};

fn packet(payload: usize) -> Vec<u8> {
    let mut v = vec![0x80, 96, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef];
    v.resize(12 + payload, 0xd5);
    v
}

fn spec(key: u32, pt: u8, remote: SocketAddr) -> Box<ConnSpec> {
    // Bound once at set-up; the benchmark never touches the sockets.
    let bind = || UdpSocket::bind("127.0.0.1:0").expect("loopback socket");
    Box::new(ConnSpec {
        key: ConnKey(key),
        group: GroupId(1),
        rtp: bind(),
        rtcp: bind(),
        mode: Mode::SendRecv,
        remote_rtp: Some(remote),
        remote_rtcp: None,
        source_check: SourceCheck::Strict,
        payloads: vec![PayloadBinding {
            pt,
            codec: Codec {
                name: "PCMU".into(),
                clock_rate: 8000,
                channels: 1,
            },
        }],
        ssrc: 0x1000 + key,
        rtp_timeout: None,
        counters: Arc::new(ConnCounters::default()),
        channel: None,
        ptime_ms: 20,
        fmtp: Vec::new(),
        dtmf: Default::default(),
    })
}

fn parse(c: &mut Criterion) {
    let pkt = packet(160);
    c.bench_function("rtp_parse", |b| {
        b.iter(|| {
            let p = mgw_dataplane::rtp::RtpPacket::parse(black_box(&pkt)).expect("valid");
            black_box((
                p.payload_type(),
                p.sequence_number(),
                p.timestamp(),
                p.ssrc(),
            ))
        })
    });
}

fn stats(c: &mut Criterion) {
    let mut s = RecvStats::new();
    let mut seq = 0u16;
    let mut ts = 0u32;
    c.bench_function("rfc3550_stats_update", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            black_box(s.update(7, seq, ts, ts.wrapping_add(u32::from(seq & 7))))
        })
    });
}

fn forward(c: &mut Criterion) {
    let now = Instant::now();
    let a_remote: SocketAddr = "127.0.0.1:40000".parse().expect("literal address");
    let b_remote: SocketAddr = "127.0.0.1:40002".parse().expect("literal address");
    let mut relay = Relay::detached(now);
    let a = relay.add(spec(1, 96, a_remote), now).expect("new key");
    relay.add(spec(2, 97, b_remote), now).expect("new key");
    let mut fanout = Fanout::new();
    let mut group = c.benchmark_group("forward_rewrite");
    for payload in [80usize, 160, 480] {
        let mut buf = packet(payload);
        let mut seq = 0u16;
        let mut t = now;
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(payload), &payload, |b, _| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                t += Duration::from_micros(20);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                relay.on_rtp(a, a_remote, &buf, t, &mut fanout);
                if let Some(tx) = fanout.get(0) {
                    if let Some(h) = &tx.header {
                        write_header(&mut buf, h);
                    }
                }
                // Restore the input PT/SSRC for the next iteration.
                buf[1] = 96;
                buf[8..12].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
                black_box(fanout.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse, stats, forward);
criterion_main!(benches);
