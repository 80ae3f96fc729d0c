//! TDM channels run by the workers, over real loopback sockets, on both backends: the
//! default virtual E1 pair (`ds/e1-1/N` wired to `ds/e1-2/N`), transcoding between a
//! channel and its RTP connection, signals and digit detection across the crossover,
//! RFC 4733 events played in-band, the frame clock, and line signalling (hook events and
//! ringing) through a tap socket.

mod common;

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mgw_dataplane::{
    BackendChoice, ChannelSignal, Codec, ConnCounters, ConnKey, ConnSpec, Dataplane, DataplaneCmd,
    DataplaneConfig, DataplaneEvent, DigitOrigin, DtmfMode, GroupId, LineEvent, Mode,
    PayloadBinding, SourceCheck, ToneKind,
};
use mgw_media::codec::{Codec as MediaCodec, CodecConfig, CodecKind, Decoder, Encoder};

const T: Duration = Duration::from_secs(5);

fn start_tdm(backend: BackendChoice) -> Dataplane {
    Dataplane::start(DataplaneConfig {
        workers: Some(2),
        pin: false,
        backend,
        tdm: Some(mgw_tdm::TdmConfig::default()),
        ..DataplaneConfig::default()
    })
    .expect("dataplane starts")
}

fn binding(pt: u8, name: &str, rate: u32, channels: u8) -> PayloadBinding {
    PayloadBinding {
        pt,
        codec: Codec {
            name: name.into(),
            clock_rate: rate,
            channels,
        },
    }
}

/// The control plane's grouping: channel N of both E1 spans is group 1000 + N.
fn group_of(channel: &str) -> u32 {
    1000 + channel.rsplit('/').next().unwrap().parse::<u32>().unwrap()
}

/// Adds a connection on `channel` whose remote is `peer`.
fn tdm_leg(
    dp: &Dataplane,
    key: u32,
    channel: &str,
    payloads: Vec<PayloadBinding>,
    peer: &UdpSocket,
) -> Leg {
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtcp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let counters = Arc::new(ConnCounters::default());
    let group = group_of(channel);
    let leg = Leg {
        key: ConnKey(key),
        group: GroupId(group),
        rtp_addr: rtp.local_addr().unwrap(),
        rtcp_addr: rtcp.local_addr().unwrap(),
        counters: Arc::clone(&counters),
        ssrc: 0x7d00_0000 + key,
    };
    let spec = ConnSpec {
        key: ConnKey(key),
        group: GroupId(group),
        rtp,
        rtcp,
        mode: Mode::SendRecv,
        remote_rtp: Some(peer.local_addr().unwrap()),
        remote_rtcp: None,
        source_check: SourceCheck::Strict,
        payloads,
        ssrc: leg.ssrc,
        rtp_timeout: None,
        counters,
        channel: Some(channel.into()),
        ptime_ms: 20,
        fmtp: Vec::new(),
        dtmf: DtmfMode::Auto,
    };
    dp.send(DataplaneCmd::Add(Box::new(spec)))
        .expect("queue has room");
    leg
}

fn signal(dp: &Dataplane, channel: &str, s: ChannelSignal) {
    dp.send(DataplaneCmd::Signal {
        group: GroupId(group_of(channel)),
        channel: channel.into(),
        signal: s,
    })
    .expect("queue has room");
}

/// The 1 kHz test tone: 1004 Hz as in line testing, so that G.711 quantisation error
/// is not periodic with the tone (an exact 1000 Hz repeats every 8 samples).
const TONE_HZ: f64 = 1004.0;

/// Sends `n` packets of the 1 kHz tone as PCMU (PT 0), one every 20 ms on an absolute
/// schedule, from `from` to `to`.
fn send_tone(from: UdpSocket, to: std::net::SocketAddr, n: usize) {
    let mut enc = MediaCodec::new(CodecKind::Pcmu, &CodecConfig::default()).unwrap();
    let t0 = Instant::now();
    let mut payload = [0u8; 160];
    for i in 0..n {
        let pcm: Vec<i16> = (0..160)
            .map(|k| {
                let t = (i * 160 + k) as f64 / 8000.0;
                (8000.0 * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16
            })
            .collect();
        let len = enc.encoder.encode(&pcm, &mut payload).unwrap();
        let pkt = rtp(
            0,
            100 + i as u16,
            5000 + 160 * i as u32,
            0xabcd,
            &payload[..len],
        );
        let at = t0 + Duration::from_millis(20 * i as u64);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        from.send_to(&pkt, to).unwrap();
    }
}

/// Decodes the audio packets (payload type `pt`) of `packets` in arrival order.
fn decode(packets: &[(Vec<u8>, std::net::SocketAddr)], kind: CodecKind, pt: u8) -> Vec<i16> {
    let mut codec = MediaCodec::new(kind, &CodecConfig::default()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0i16; 960];
    for (p, _) in packets {
        let h = hdr(p);
        if h.pt != pt {
            continue;
        }
        assert_eq!(p[0] & 0x0f, 0, "no CSRCs");
        let n = codec.decoder.decode(&p[12..], &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Signal-to-noise ratio (dB) of `x` against its best-fitting `freq` sinusoid.
fn snr_db(x: &[i16], freq: f64) -> f64 {
    // Least-squares fit of a cos + b sin; everything else is noise.
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let n = x.len() as f64;
    let (mut a, mut b) = (0.0, 0.0);
    for (i, &s) in x.iter().enumerate() {
        a += f64::from(s) * (w * i as f64).cos();
        b += f64::from(s) * (w * i as f64).sin();
    }
    let (a, b) = (2.0 * a / n, 2.0 * b / n);
    let (mut sig, mut noise) = (0.0, 0.0);
    for (i, &s) in x.iter().enumerate() {
        let fit = a * (w * i as f64).cos() + b * (w * i as f64).sin();
        sig += fit * fit;
        noise += (f64::from(s) - fit).powi(2);
    }
    10.0 * (sig / noise.max(1e-9)).log10()
}

/// A (PCMU) on `ds/e1-1/N` gets a 1 kHz tone; B (`b_codec`) on `ds/e1-2/N` must send it.
fn transcode(backend: BackendChoice, n: u32, b_binding: PayloadBinding, b_kind: CodecKind) {
    let dp = start_tdm(backend);
    let (pa, pb) = (peer(), peer());
    let ch_a = format!("ds/e1-1/{n}");
    let ch_b = format!("ds/e1-2/{n}");
    let b_pt = b_binding.pt;
    let a = tdm_leg(&dp, 10 * n + 1, &ch_a, vec![pcmu(0)], &pa);
    let b = tdm_leg(&dp, 10 * n + 2, &ch_b, vec![b_binding], &pb);
    settle();
    let pb2 = pb.try_clone().unwrap();
    // 2 s of tone; B sends 50 packets a second from the moment it exists.
    let rx = std::thread::spawn(move || recv_n(&pb2, 120, Duration::from_secs(6)));
    send_tone(pa.try_clone().unwrap(), a.rtp_addr, 100);
    let got = rx.join().unwrap();
    assert!(got.len() >= 100, "B sent {} packets", got.len());
    assert!(
        got.iter().all(|(_, from)| *from == b.rtp_addr),
        "from B's RTP socket"
    );
    let h = hdr(&got[0].0);
    assert_eq!((h.pt, h.ssrc), (b_pt, b.ssrc));
    let pcm = decode(&got, b_kind, b_pt);
    // 100 ms windows where the tone is present, without the first and last (onset and
    // end of the tone). The jitter buffer starts at a 60 ms target and, after 50 packets
    // of a steady stream, steps down to its 20 ms minimum one dropped frame at a time:
    // those two windows hold a phase jump. All others must be the clean tone.
    let win = 800;
    let rms =
        |c: &[i16]| (c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
    let toned: Vec<&[i16]> = pcm.chunks_exact(win).filter(|c| rms(c) > 1000.0).collect();
    assert!(toned.len() >= 12, "{} windows with the tone", toned.len());
    let inner = &toned[1..toned.len() - 2];
    let snrs: Vec<f64> = inner.iter().map(|c| snr_db(c, TONE_HZ)).collect();
    let mut sorted = snrs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let bad = snrs.iter().filter(|&&x| x <= 25.0).count();
    eprintln!("{b_kind:?}: 1 kHz SNR median {median:.1} dB, windows {snrs:.1?}");
    assert!(
        median > 25.0 && bad <= 3,
        "1 kHz SNR median {median:.1} dB, {bad} windows at or below 25 dB: {snrs:.1?}"
    );
    // The fit is the tone, not a lucky fit: at 1.5 kHz the same audio is all noise.
    assert!(snr_db(inner[0], 1500.0) < 0.0);
    // Counters: A received the tone, B sent packets; statistics of both are live.
    let sa = a.counters.snapshot();
    let sb = b.counters.snapshot();
    assert_eq!(sa.packets_recv, 100);
    assert!(sb.packets_sent >= got.len() as u64, "{sb:?}");
    assert!(sb.octets_sent > 0);
    remove(&dp, &a);
    remove(&dp, &b);
    assert!(wait_event(&dp, &DataplaneEvent::Removed { key: b.key }, T));
    dp.shutdown();
}

fn pcmu_to_pcma(backend: BackendChoice) {
    transcode(backend, 3, binding(8, "PCMA", 8000, 1), CodecKind::Pcma);
}
both_backends!(pcmu_to_pcma_across_the_crossover, crate::pcmu_to_pcma);

fn pcmu_to_opus(backend: BackendChoice) {
    transcode(backend, 8, binding(111, "OPUS", 48000, 2), CodecKind::Opus);
}
both_backends!(pcmu_to_opus_across_the_crossover, crate::pcmu_to_opus);

/// Waits for a `Digit` event on `channel`, skipping other events.
fn wait_digit(dp: &Dataplane, channel: &str, digit: char, origin: DigitOrigin) -> bool {
    wait_event(
        dp,
        &DataplaneEvent::Digit {
            channel: channel.into(),
            digit,
            origin,
        },
        T,
    )
}

fn signal_digit_detected_across(backend: BackendChoice) {
    let dp = start_tdm(backend);
    signal(&dp, "ds/e1-1/4", ChannelSignal::Digits("5".into()));
    assert!(
        wait_digit(&dp, "ds/e1-2/4", '5', DigitOrigin::Tdm),
        "digit played on e1-1/4 detected on e1-2/4"
    );
    assert!(wait_event(
        &dp,
        &DataplaneEvent::SignalDone {
            channel: "ds/e1-1/4".into()
        },
        T
    ));
    // A tone is played too (continuous: no SignalDone), then stopped; nothing breaks.
    signal(
        &dp,
        "ds/e1-1/4",
        ChannelSignal::Tone(mgw_dataplane::ToneKind::Dial),
    );
    signal(&dp, "ds/e1-1/4", ChannelSignal::Stop);
    signal(&dp, "ds/e1-2/4", ChannelSignal::Digits("#".into()));
    assert!(wait_digit(&dp, "ds/e1-1/4", '#', DigitOrigin::Tdm));
    dp.shutdown();
}
both_backends!(
    signal_digits_cross_the_pair,
    crate::signal_digit_detected_across
);

/// RFC 4733 packet for `event` with `duration` (8 kHz units).
fn te(seq: u16, ts: u32, event: u8, end: bool, duration: u16, marker: bool) -> Vec<u8> {
    let mut p = rtp(
        101,
        seq,
        ts,
        0x4733,
        &[event, if end { 0x80 } else { 0 } | 10],
    );
    p.extend_from_slice(&duration.to_be_bytes());
    if marker {
        p[1] |= 0x80;
    }
    p
}

fn rfc4733_in_band_on_the_line(backend: BackendChoice) {
    let dp = start_tdm(backend);
    let pa = peer();
    let a = tdm_leg(
        &dp,
        51,
        "ds/e1-1/5",
        vec![pcmu(0), binding(101, "telephone-event", 8000, 1)],
        &pa,
    );
    settle();
    // Digit 7: 200 ms, updates every 20 ms, then three end packets.
    let t0 = Instant::now();
    let mut seq = 1u16;
    for i in 1..=10u16 {
        pa.send_to(&te(seq, 8000, 7, false, 160 * i, i == 1), a.rtp_addr)
            .unwrap();
        seq += 1;
        let at = t0 + Duration::from_millis(20 * u64::from(i));
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
    }
    for _ in 0..3 {
        pa.send_to(&te(seq, 8000, 7, true, 1600, false), a.rtp_addr)
            .unwrap();
        seq += 1;
    }
    assert!(
        wait_digit(&dp, "ds/e1-2/5", '7', DigitOrigin::Tdm),
        "RFC 4733 digit on e1-1/5 heard in-band on e1-2/5"
    );
    assert!(wait_until(T, || a.counters.snapshot().packets_recv == 13));
    dp.shutdown();
}
both_backends!(
    rfc4733_event_goes_in_band,
    crate::rfc4733_in_band_on_the_line
);

fn frames_follow_the_clock(backend: BackendChoice) {
    let dp = start_tdm(backend);
    // Group 1006 → worker 0 of 2: the first command adopts the channel there.
    signal(&dp, "ds/e1-1/6", ChannelSignal::Stop);
    let frames = || dp.worker_stats()[0].tdm_frames;
    assert!(wait_until(T, || frames() > 0), "frames start");
    assert_eq!(dp.worker_stats()[1].tdm_frames, 0, "worker 1 runs no TDM");
    // Observe at frame edges (the moment the count changes), so the observation itself
    // adds at most the polling interval to the error.
    let edge = || {
        let f = frames();
        loop {
            std::thread::sleep(Duration::from_micros(200));
            let g = frames();
            if g != f {
                return (g, Instant::now());
            }
        }
    };
    let (f0, t0) = edge();
    std::thread::sleep(Duration::from_secs(2));
    let (f1, t1) = edge();
    let expected = (t1 - t0).as_secs_f64() / 0.020;
    let ran = (f1 - f0) as f64;
    assert!(
        (ran - expected).abs() <= 1.0,
        "{ran} frames in {:?} (expected {expected:.1})",
        t1 - t0
    );
    let s = dp.worker_stats()[0];
    assert_eq!(s.tdm_channels, 2, "ds/e1-1/6 and ds/e1-2/6");
    assert_eq!(s.tdm_frames_skipped, 0);
    dp.shutdown();
}
both_backends!(frame_clock, crate::frames_follow_the_clock);

fn unsupported_codec_is_inactive(backend: BackendChoice) {
    let dp = start_tdm(backend);
    let (pa, pb) = (peer(), peer());
    // G.729 is not supported by the engine: the connection exists but stays inactive.
    let a = tdm_leg(
        &dp,
        71,
        "ds/e1-1/7",
        vec![binding(18, "G729", 8000, 1)],
        &pa,
    );
    // An unknown channel: also inactive.
    let b = tdm_leg(&dp, 72, "ds/e1-1/99", vec![pcmu(0)], &pb);
    settle();
    pa.send_to(&rtp(18, 1, 0, 1, &[0; 20]), a.rtp_addr).unwrap();
    pb.send_to(&rtp(0, 1, 0, 1, &[0; 160]), b.rtp_addr).unwrap();
    assert!(wait_until(T, || a.counters.snapshot().dropped_mode == 1
        && b.counters.snapshot().dropped_mode == 1));
    assert_eq!(
        drain_for(&pa, Duration::from_millis(200)),
        0,
        "nothing sent"
    );
    let errors: u64 = dp.worker_stats().iter().map(|s| s.tdm_setup_errors).sum();
    assert_eq!(errors, 2);
    remove(&dp, &a);
    remove(&dp, &b);
    assert!(wait_event(&dp, &DataplaneEvent::Removed { key: a.key }, T));
    dp.shutdown();
}
both_backends!(unsupported_codec, crate::unsupported_codec_is_inactive);

fn continuity_tones_cross_the_pair(backend: BackendChoice) {
    let dp = start_tdm(backend);
    // T/co1 played toward the line of e1-1/6 is heard on e1-2/6 (the crossover)...
    signal(&dp, "ds/e1-1/6", ChannelSignal::Tone(ToneKind::Continuity));
    assert!(
        wait_event(
            &dp,
            &DataplaneEvent::ToneDetected {
                channel: "ds/e1-2/6".into(),
                tone: ToneKind::Continuity,
            },
            T
        ),
        "2010 Hz on e1-1/6 detected on e1-2/6"
    );
    // ... and the far end answers with T/co2, which comes back to e1-1/6.
    signal(&dp, "ds/e1-1/6", ChannelSignal::Stop);
    signal(
        &dp,
        "ds/e1-2/6",
        ChannelSignal::Tone(ToneKind::ContinuityReturn),
    );
    assert!(
        wait_event(
            &dp,
            &DataplaneEvent::ToneDetected {
                channel: "ds/e1-1/6".into(),
                tone: ToneKind::ContinuityReturn,
            },
            T
        ),
        "1780 Hz on e1-2/6 detected on e1-1/6"
    );
    // A continuous tone: no SignalDone, and one detection per onset.
    signal(&dp, "ds/e1-2/6", ChannelSignal::Stop);
    let mut later = Vec::new();
    while let Ok(ev) = dp.events().recv_timeout(Duration::from_millis(300)) {
        later.push(ev);
    }
    assert!(
        !later.iter().any(|e| matches!(
            e,
            DataplaneEvent::SignalDone { .. } | DataplaneEvent::ToneDetected { .. }
        )),
        "{later:?}"
    );
    dp.shutdown();
}
both_backends!(continuity_tone, crate::continuity_tones_cross_the_pair);

fn play_announcement_across(backend: BackendChoice) {
    let dp = start_tdm(backend);
    let pb = peer();
    let b = tdm_leg(&dp, 72, "ds/e1-2/7", vec![binding(8, "PCMA", 8000, 1)], &pb);
    settle();
    // 0.5 s of the 1 kHz tone.
    let pcm: Arc<[i16]> = (0..4000)
        .map(|i| {
            let t = f64::from(i) / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16
        })
        .collect();
    let pb2 = pb.try_clone().unwrap();
    // 1.5 s of B's packets, from before the announcement to well after it.
    let rx = std::thread::spawn(move || recv_n(&pb2, 75, Duration::from_secs(4)));
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    signal(&dp, "ds/e1-1/7", ChannelSignal::Play(Arc::clone(&pcm)));
    assert!(wait_event(
        &dp,
        &DataplaneEvent::SignalDone {
            channel: "ds/e1-1/7".into()
        },
        T
    ));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(440) && took < Duration::from_millis(1500),
        "SignalDone after {took:?}"
    );
    let got = rx.join().unwrap();
    assert!(got.len() >= 70, "B sent {} packets", got.len());
    assert!(got.iter().all(|(_, from)| *from == b.rtp_addr));
    let audio = decode(&got, CodecKind::Pcma, 8);
    let rms =
        |c: &[i16]| (c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
    // The announcement plays once: 25 packets (0.5 s) carry it, in one run.
    let toned: Vec<usize> = audio
        .chunks_exact(160)
        .enumerate()
        .filter(|(_, c)| rms(c) > 1000.0)
        .map(|(i, _)| i)
        .collect();
    assert!(
        (24..=26).contains(&toned.len()),
        "{} packets with the tone",
        toned.len()
    );
    assert_eq!(
        toned[toned.len() - 1] - toned[0] + 1,
        toned.len(),
        "one run"
    );
    let inner = &audio[(toned[0] + 1) * 160..toned[toned.len() - 1] * 160];
    let snr = snr_db(inner, TONE_HZ);
    assert!(snr > 25.0, "1 kHz SNR {snr:.1} dB");
    assert_eq!(
        Arc::strong_count(&pcm),
        1,
        "the worker let go of the samples"
    );
    remove(&dp, &b);
    assert!(wait_event(&dp, &DataplaneEvent::Removed { key: b.key }, T));
    dp.shutdown();
}
both_backends!(play_announcement, crate::play_announcement_across);

/// A directory for tap sockets, removed on drop (short path: socket paths are limited).
struct TapDir(PathBuf);

impl TapDir {
    fn new(tag: &str) -> TapDir {
        let d = std::env::temp_dir().join(format!("mgw-line-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TapDir(d)
    }
}

impl Drop for TapDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A dataplane whose only TDM span is `line`: 2 A-law channels, each a tap socket.
fn start_tap(backend: BackendChoice, dir: &Path) -> Dataplane {
    let mut span = mgw_tdm::SpanConfig::virtual_e1("line");
    span.channels = "1-2".parse().unwrap();
    span.tap = true;
    span.tap_dir = Some(dir.join("tap"));
    Dataplane::start(DataplaneConfig {
        workers: Some(2),
        pin: false,
        backend,
        tdm: Some(mgw_tdm::TdmConfig {
            ptime_ms: 20,
            spans: vec![span],
        }),
        ..DataplaneConfig::default()
    })
    .expect("dataplane starts")
}

fn line_event(channel: &str, event: LineEvent) -> DataplaneEvent {
    DataplaneEvent::Line {
        channel: channel.into(),
        event,
    }
}

fn rms(pcm: &[i16]) -> f64 {
    (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
}

/// What the phone heard in a while: control datagrams, and the loudest audio frame.
#[derive(Default)]
struct Heard {
    control: Vec<String>,
    frames: usize,
    loudest: f64,
}

/// The phone's side for `for_`: answers each audio frame with one frame of a 1 kHz
/// tone (A-law), records control datagrams.
fn phone_talks(phone: &UnixDatagram, mgw: &Path, for_: Duration, phase: &mut usize) -> Heard {
    let mut heard = Heard::default();
    let deadline = Instant::now() + for_;
    let mut buf = [0u8; 512];
    let mut pcm = [0i16; 160];
    while Instant::now() < deadline {
        let Ok(n) = phone.recv(&mut buf) else {
            continue;
        };
        if n == 160 {
            heard.frames += 1;
            mgw_tdm::Law::Alaw.decode(&buf[..160], &mut pcm);
            heard.loudest = heard.loudest.max(rms(&pcm));
            let tone: Vec<i16> = (0..160)
                .map(|k| {
                    let t = (*phase + k) as f64 / 8000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16
                })
                .collect();
            *phase += 160;
            let mut frame = [0u8; 160];
            mgw_tdm::Law::Alaw.encode(&tone, &mut frame);
            phone.send_to(&frame, mgw).unwrap();
        } else {
            heard
                .control
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    heard
}

fn tap_line_signalling(backend: BackendChoice) {
    let dir = TapDir::new(&format!("{backend:?}"));
    let dp = start_tap(backend, &dir.0);
    let ch = "ds/line/1";
    let mgw = dir.0.join("tap/line-1.sock");
    assert!(mgw.exists());
    // An RTP connection on the line adopts its slice on a worker.
    let pa = peer();
    let a = tdm_leg(&dp, 81, ch, vec![pcmu(0)], &pa);
    settle();
    let phone = UnixDatagram::bind(dir.0.join("phone.sock")).unwrap();
    phone
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    // The handset is lifted.
    phone.send_to(b"HOOK OFF", &mgw).unwrap();
    assert!(
        wait_event(&dp, &line_event(ch, LineEvent::OffHook), T),
        "HOOK OFF reported as L/hd"
    );

    // Ringing on: the phone hears RING ON; meanwhile audio flows both ways: the phone
    // answers mgw's frames with a tone, and the IP side sends a tone.
    signal(&dp, ch, ChannelSignal::Ring(true));
    let pa2 = pa.try_clone().unwrap();
    let to = a.rtp_addr;
    let ip_side = std::thread::spawn(move || send_tone(pa2, to, 60));
    let mut phase = 0;
    let heard = phone_talks(&phone, &mgw, Duration::from_millis(1500), &mut phase);
    ip_side.join().unwrap();
    assert_eq!(heard.control, ["RING ON"]);
    assert!(
        heard.frames >= 50,
        "{} frames reached the phone",
        heard.frames
    );
    assert!(
        heard.loudest > 2000.0,
        "the IP side's tone reached the phone (rms {:.0})",
        heard.loudest
    );
    // The phone's tone reached the IP side.
    let got = recv_n(&pa, 200, Duration::from_millis(300));
    let from_line = decode(&got, CodecKind::Pcmu, 0);
    let loud = from_line
        .chunks_exact(160)
        .filter(|c| rms(c) > 2000.0)
        .count();
    assert!(
        loud >= 20,
        "{loud} loud packets of {} from the line",
        got.len()
    );

    // Ringing off, then flash and hang up.
    signal(&dp, ch, ChannelSignal::Ring(false));
    phone.send_to(b"FLASH", &mgw).unwrap();
    assert!(wait_event(&dp, &line_event(ch, LineEvent::Flash), T));
    phone.send_to(b"hook on\n", &mgw).unwrap();
    assert!(wait_event(&dp, &line_event(ch, LineEvent::OnHook), T));
    let heard = phone_talks(&phone, &mgw, Duration::from_millis(200), &mut phase);
    assert_eq!(heard.control, ["RING OFF"]);
    assert_eq!(
        dp.worker_stats()
            .iter()
            .map(|s| s.tdm_setup_errors)
            .sum::<u64>(),
        0
    );
    remove(&dp, &a);
    assert!(wait_event(&dp, &DataplaneEvent::Removed { key: a.key }, T));
    dp.shutdown();
}
both_backends!(tap_line_signalling, crate::tap_line_signalling);

fn ringing_without_signalling(backend: BackendChoice) {
    let dp = start_tdm(backend);
    // A virtual crossover channel has no ringer: debug log and a setup error, nothing else.
    signal(&dp, "ds/e1-1/9", ChannelSignal::Ring(true));
    let errors = || {
        dp.worker_stats()
            .iter()
            .map(|s| s.tdm_setup_errors)
            .sum::<u64>()
    };
    assert!(wait_until(T, || errors() == 1));
    // The channel still runs (the slice was adopted) and signals still play on it.
    signal(&dp, "ds/e1-1/9", ChannelSignal::Digits("3".into()));
    assert!(wait_digit(&dp, "ds/e1-2/9", '3', DigitOrigin::Tdm));
    assert_eq!(errors(), 1);
    dp.shutdown();
}
both_backends!(ring_needs_signalling, crate::ringing_without_signalling);
