//! `ChannelEngine` end to end on simulated time: a far-end peer encodes and packetises
//! audio and telephone-events, a simulated network delays, drops, reorders and duplicates
//! them, and the TDM side is driven one 20 ms frame per tick. What comes out (TDM samples,
//! RTP packets) is decoded and measured: frequency, SNR, digits, cadence, delay.

use std::time::{Duration, Instant};

use mgw_media::codec::{Codec, CodecConfig, CodecKind, Decoder, Encoder};
use mgw_media::dtmf::{DtmfDetector, DtmfDigit, DtmfEvent};
use mgw_media::engine::rtp::RtpHeader;
use mgw_media::engine::{
    ChannelEngine, ConnParams, DigitSource, DtmfTransport, EngineConfig, EngineEvent,
    JitterSettings, MediaMode, Signal, SignalDirection,
};
use mgw_media::rfc4733::EventBlock;
use mgw_media::tone::{CallProgressTone, DtmfToneParams, SampleRate, ToneGenerator};

const FRAME: usize = 160;
const TICK_US: u64 = 20_000;

// ------------------------------------------------------------------------------------------
// Signal analysis

fn sine(rate: u32, freq: f64, amp: f64, start: usize, n: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (amp * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
        })
        .collect()
}

/// Least-squares fit of a sine at `f`: (power of the fit, power of the residual).
fn fit(x: &[i16], rate: f64, f: f64) -> (f64, f64) {
    let n = x.len() as f64;
    let w = 2.0 * std::f64::consts::PI * f / rate;
    let (mut s, mut c, mut mean) = (0.0, 0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let v = f64::from(v);
        s += v * (w * i as f64).sin();
        c += v * (w * i as f64).cos();
        mean += v;
    }
    let (a, b, mean) = (2.0 * s / n, 2.0 * c / n, mean / n);
    let mut resid = 0.0;
    for (i, &v) in x.iter().enumerate() {
        let y = a * (w * i as f64).sin() + b * (w * i as f64).cos() + mean;
        resid += (f64::from(v) - y).powi(2);
    }
    ((a * a + b * b) / 2.0, resid / n)
}

/// Frequency of the strongest sine in `lo..hi` Hz (0.25 Hz resolution).
fn peak_freq(x: &[i16], rate: f64, lo: f64, hi: f64) -> f64 {
    let mut best = (lo, f64::MIN);
    let mut f = lo;
    while f <= hi {
        let (p, _) = fit(x, rate, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 0.25;
    }
    best.0
}

/// (frequency, SNR in dB against the best-fitting sine).
fn tone_quality(x: &[i16], rate: f64, lo: f64, hi: f64) -> (f64, f64) {
    let f = peak_freq(x, rate, lo, hi);
    let (sig, noise) = fit(x, rate, f);
    (f, 10.0 * (sig / noise.max(1e-9)).log10())
}

fn detect_digits(x: &[i16]) -> String {
    let mut det = DtmfDetector::new(SampleRate::Hz8000);
    det.process(x);
    det.process(&[0; 800]);
    let mut s = String::new();
    while let Some(e) = det.poll_event() {
        if let DtmfEvent::DigitStart { digit, .. } = e {
            s.push(digit.to_char());
        }
    }
    s
}

fn digits(s: &str) -> Vec<DtmfDigit> {
    s.chars()
        .map(|c| DtmfDigit::from_char(c).unwrap())
        .collect()
}

/// Longest run of exactly-zero samples in `x`.
fn longest_zero_run(x: &[i16]) -> usize {
    let (mut best, mut run) = (0, 0);
    for &v in x {
        run = if v == 0 { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

// ------------------------------------------------------------------------------------------
// Simulation harness

/// Deterministic pseudo-random numbers (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1e6 < p
    }
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    RtpHeader {
        marker,
        payload_type: pt,
        sequence: seq,
        timestamp: ts,
        ssrc,
    }
    .write(&mut b)
    .unwrap();
    b.extend_from_slice(payload);
    b
}

/// A sent packet, parsed.
#[derive(Debug, Clone)]
struct Sent {
    header: RtpHeader,
    payload: Vec<u8>,
}

struct Sim {
    eng: ChannelEngine,
    t0: Instant,
    tick: u64,
    /// (arrival µs, connection, datagram), delivered before the tick that follows.
    net: Vec<(u64, u32, Vec<u8>)>,
    sent: Vec<(u32, Sent)>,
    out: Vec<i16>,
    events: Vec<EngineEvent>,
}

impl Sim {
    fn new(cfg: EngineConfig) -> Self {
        Sim {
            eng: ChannelEngine::new(cfg),
            t0: Instant::now(),
            tick: 0,
            net: Vec::new(),
            sent: Vec::new(),
            out: Vec::new(),
            events: Vec::new(),
        }
    }

    fn at(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    fn deliver(&mut self, arrival_us: u64, id: u32, pkt: Vec<u8>) {
        self.net.push((arrival_us, id, pkt));
    }

    /// Delivers what has arrived, then runs one tick with `tdm_in`.
    fn step(&mut self, tdm_in: &[i16]) {
        let now_us = self.tick * TICK_US;
        self.net.sort_by_key(|p| p.0);
        let due = self.net.partition_point(|p| p.0 <= now_us);
        for (arr, id, pkt) in self.net.drain(..due).collect::<Vec<_>>() {
            let at = self.t0 + Duration::from_micros(arr);
            self.eng.on_rtp(id, at, &pkt);
        }
        let mut out = [0i16; FRAME];
        let mut sent = Vec::new();
        self.eng
            .tick(self.at(now_us), tdm_in, &mut out, &mut |id, p| {
                let (header, payload) = RtpHeader::parse(p).unwrap();
                sent.push((
                    id,
                    Sent {
                        header,
                        payload: payload.to_vec(),
                    },
                ));
            });
        self.sent.extend(sent);
        self.out.extend_from_slice(&out);
        while let Some(e) = self.eng.poll_event() {
            self.events.push(e);
        }
        self.tick += 1;
    }

    fn sent_on(&self, id: u32, pt: u8) -> Vec<Sent> {
        self.sent
            .iter()
            .filter(|(i, s)| *i == id && s.header.payload_type == pt)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

/// Decodes a packet stream with a fresh codec; returns audio at the codec rate.
fn decode_all(kind: CodecKind, cfg: &CodecConfig, pkts: &[Sent]) -> Vec<i16> {
    let mut c = Codec::new(kind, cfg).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0i16; 5760];
    for p in pkts {
        let n = c.decoder.decode(&p.payload, &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Checks RTP header continuity of an audio stream: one SSRC, sequence +1, timestamp
/// +`ts_step`, marker on the first packet only.
fn check_stream(pkts: &[Sent], ssrc: u32, ts_step: u32) {
    assert!(!pkts.is_empty());
    assert!(pkts[0].header.marker, "marker on the first packet");
    for w in pkts.windows(2) {
        let (a, b) = (&w[0].header, &w[1].header);
        assert_eq!(b.ssrc, ssrc);
        assert!(!b.marker);
        assert_eq!(b.sequence, a.sequence.wrapping_add(1));
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(ts_step));
    }
}

/// A far-end sender of one audio stream.
struct Peer {
    codec: Codec,
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    ptime_samples: usize,
    ts_step: u32,
    pos: usize,
    freq: f64,
}

impl Peer {
    fn new(kind: CodecKind, pt: u8, ptime_ms: usize, freq: f64) -> Self {
        let cfg = CodecConfig::default();
        let codec = Codec::new(kind, &cfg).unwrap();
        let rate = codec.encoder.sample_rate();
        let ptime_samples = rate as usize * ptime_ms / 1000;
        Peer {
            ts_step: kind.rtp_ticks(ptime_samples as u32, rate),
            codec,
            pt,
            ssrc: 0xFA12_0001,
            seq: 1000,
            ts: 77_777,
            ptime_samples,
            pos: 0,
            freq,
        }
    }

    /// The next packet (a sine continuing from the last).
    fn next(&mut self) -> Vec<u8> {
        let rate = self.codec.encoder.sample_rate();
        let pcm = sine(rate, self.freq, 10_000.0, self.pos, self.ptime_samples);
        let mut payload = vec![0u8; 4000];
        let n = self.codec.encoder.encode(&pcm, &mut payload).unwrap();
        let p = rtp(
            self.pt,
            self.seq,
            self.ts,
            self.ssrc,
            self.pos == 0,
            &payload[..n],
        );
        self.pos += self.ptime_samples;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.ts_step);
        p
    }
}

fn conn(kind: CodecKind, pt: u8, ssrc: u32) -> ConnParams {
    ConnParams {
        ssrc,
        initial_seq: 5000,
        initial_timestamp: 1_000_000,
        ..ConnParams::new(kind, pt)
    }
}

// ------------------------------------------------------------------------------------------
// 1. Transcoding: PCMU in → TDM; TDM → PCMA and Opus

#[test]
fn tone_through_pcmu_pcma_and_opus() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.eng
        .add_connection(1, conn(CodecKind::Pcmu, 0, 0xA))
        .unwrap();
    sim.eng
        .add_connection(2, conn(CodecKind::Pcma, 8, 0xB))
        .unwrap();
    sim.eng
        .add_connection(3, conn(CodecKind::Opus, 111, 0xC))
        .unwrap();
    assert_eq!(
        sim.eng.add_connection(3, conn(CodecKind::Pcmu, 0, 1)),
        Err(mgw_media::engine::EngineError::DuplicateConnection(3))
    );
    let mut peer = Peer::new(CodecKind::Pcmu, 0, 20, 1000.0);
    let ticks = 150u64; // 3 s
    for k in 0..ticks {
        // Sent every 20 ms, 7 ms network delay.
        sim.deliver(k * TICK_US + 7_000, 1, peer.next());
        let tin = sine(8000, 600.0, 8000.0, k as usize * FRAME, FRAME);
        sim.step(&tin);
    }

    // IP → TDM: silence until the jitter buffer starts (initial target 60 ms).
    let first = sim.out.iter().position(|&s| s != 0).unwrap();
    println!("first output sample at {} ms", first / 8);
    assert!((60 * 8..120 * 8).contains(&first), "start at {first}");
    let (f, snr) = tone_quality(&sim.out[4000..], 8000.0, 950.0, 1050.0);
    println!("PCMU → TDM: {f:.2} Hz, SNR {snr:.1} dB");
    assert!((f - 1000.0).abs() < 0.5, "{f}");
    assert!(snr > 30.0, "{snr}");
    assert!(sim.events.contains(&EngineEvent::MediaStart { id: 1 }));
    let st = sim.eng.stats(1).unwrap();
    // The last packet is still in flight.
    assert_eq!(st.packets_in, ticks - 1);
    assert_eq!(
        (st.jitter.lost, st.jitter.late, st.decode_errors),
        (0, 0, 0)
    );

    // TDM → PCMA on connection 2.
    let pcma = sim.sent_on(2, 8);
    assert_eq!(pcma.len() as u64, ticks);
    check_stream(&pcma, 0xB, 160);
    assert_eq!(
        (pcma[0].header.sequence, pcma[0].header.timestamp),
        (5000, 1_000_000)
    );
    let audio = decode_all(CodecKind::Pcma, &CodecConfig::default(), &pcma);
    let (f, snr) = tone_quality(&audio[800..], 8000.0, 550.0, 650.0);
    println!("TDM → PCMA: {f:.2} Hz, SNR {snr:.1} dB");
    // Measured 39.3 dB.
    assert!((f - 600.0).abs() < 0.5 && snr > 36.0, "{f} {snr}");

    // TDM → Opus on connection 3: 48 kHz RTP clock.
    let opus = sim.sent_on(3, 111);
    assert_eq!(opus.len() as u64, ticks);
    check_stream(&opus, 0xC, 960);
    let audio = decode_all(CodecKind::Opus, &CodecConfig::default(), &opus);
    let (f, snr) = tone_quality(&audio[1600..], 8000.0, 550.0, 650.0);
    println!("TDM → Opus: {f:.2} Hz, SNR {snr:.1} dB");
    // Measured 29.9 dB (8 kHz, 24 kbit/s, complexity 5).
    assert!((f - 600.0).abs() < 1.0 && snr > 26.0, "{f} {snr}");
    // Nothing but audio was sent (connection 1 sends the TDM tone too).
    assert_eq!(sim.sent.len() as u64, 3 * ticks);
}

// ------------------------------------------------------------------------------------------
// 2. Loss, reordering, duplication

#[test]
fn loss_reorder_and_duplicates_stay_continuous() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.eng
        .add_connection(7, conn(CodecKind::Pcmu, 0, 0x77))
        .unwrap();
    let mut peer = Peer::new(CodecKind::Pcmu, 0, 20, 440.0);
    let mut rng = Rng(2024);
    let (mut dropped, mut dups) = (0u64, 0u64);
    let ticks = 1500u64; // 30 s
    for k in 0..ticks {
        let pkt = peer.next();
        let send_us = k * TICK_US;
        if rng.chance(0.05) {
            dropped += 1;
        } else {
            // 5–45 ms delay: consecutive packets overtake each other now and then.
            let arr = send_us + 5_000 + rng.below(40_000);
            if rng.chance(0.05) {
                dups += 1;
                sim.deliver(arr + rng.below(10_000), 7, pkt.clone());
            }
            sim.deliver(arr, 7, pkt);
        }
        sim.step(&[0; FRAME]);
    }
    let st = sim.eng.stats(7).unwrap();
    println!("sent {ticks}, dropped {dropped}, duplicated {dups}: {st:?}");
    let j = st.jitter;
    assert!(j.reordered > 10, "{j:?}");
    assert!(j.duplicates + 5 >= dups && j.duplicates <= dups, "{j:?}");
    assert!(j.lost + j.late >= dropped, "{j:?}");
    assert!(j.lost + j.late <= dropped + 60, "{j:?}");
    assert!(st.concealed_frames >= dropped, "{st:?}");
    // All but what is still in flight at the end.
    let delivered = ticks - dropped + dups;
    assert!(
        st.packets_in <= delivered && st.packets_in + 3 >= delivered,
        "{st:?}"
    );
    // Continuous audio: a 440 Hz sine at 8 kHz never has two zero samples in a row, and
    // concealment covers every single loss, so no gap appears after the start.
    let first = sim.out.iter().position(|&s| s != 0).unwrap();
    let body = &sim.out[first..sim.out.len() - 800];
    let run = longest_zero_run(body);
    assert!(run <= 2, "zero run of {run} samples");
    // And the tone is still the tone. The SNR is low because one sine is fitted to all
    // 30 s: every frame the jitter buffer drops or inserts to adapt shifts the phase.
    let (f, snr) = tone_quality(body, 8000.0, 430.0, 450.0);
    println!("440 Hz through 5 % loss: {f:.2} Hz, SNR {snr:.1} dB");
    assert!((f - 440.0).abs() < 0.5 && snr > 10.0, "{f} {snr}");
}

// ------------------------------------------------------------------------------------------
// 3. DTMF both ways

/// Telephone-event blocks of the packets in `pkts`, grouped by event timestamp.
fn event_groups(pkts: &[Sent]) -> Vec<Vec<(bool, EventBlock)>> {
    let mut groups: Vec<(u32, Vec<(bool, EventBlock)>)> = Vec::new();
    for p in pkts {
        let b = EventBlock::parse(&p.payload).unwrap();
        match groups.iter_mut().find(|g| g.0 == p.header.timestamp) {
            Some(g) => g.1.push((p.header.marker, b)),
            None => groups.push((p.header.timestamp, vec![(p.header.marker, b)])),
        }
    }
    groups.into_iter().map(|g| g.1).collect()
}

#[test]
fn dtmf_from_tdm_goes_out_as_rfc4733_and_inband() {
    let mut sim = Sim::new(EngineConfig::default());
    let rfc = conn(CodecKind::Pcmu, 0, 0x4733).with_telephone_event(101);
    assert_eq!(rfc.dtmf, DtmfTransport::Rfc4733);
    sim.eng.add_connection(1, rfc).unwrap();
    sim.eng
        .add_connection(2, conn(CodecKind::Pcma, 8, 0x1B))
        .unwrap();
    let keys = "159#";
    let mut gen = ToneGenerator::dtmf_sequence(
        &digits(keys),
        &DtmfToneParams::default(),
        SampleRate::Hz8000,
    );
    let mut tin = [0i16; FRAME];
    for _ in 0..10 {
        sim.step(&[0; FRAME]);
    }
    for _ in 0..75 {
        gen.fill(&mut tin);
        sim.step(&tin);
    }

    // Events: each digit once, in order, from the TDM side.
    let detected: String = sim
        .events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::DigitDetected {
                digit,
                source: DigitSource::Tdm,
            } => Some(digit.to_char()),
            _ => None,
        })
        .collect();
    assert_eq!(detected, keys);
    let durations: Vec<u32> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::DigitEnded { duration_ms, .. } => Some(*duration_ms),
            _ => None,
        })
        .collect();
    assert_eq!(durations.len(), 4);
    assert!(
        durations.iter().all(|d| (85..=115).contains(d)),
        "{durations:?}"
    );

    // RFC 4733 on connection 1: one group per digit.
    let ev = sim.sent_on(1, 101);
    let groups = event_groups(&ev);
    assert_eq!(groups.len(), 4, "{groups:?}");
    for (g, key) in groups.iter().zip(digits(keys)) {
        assert!(g[0].0, "marker on the first packet");
        assert!(g[1..].iter().all(|(m, _)| !m));
        assert!(g.iter().all(|(_, b)| b.event == key.event_code()));
        let ends: Vec<&EventBlock> = g.iter().map(|(_, b)| b).filter(|b| b.end).collect();
        assert_eq!(ends.len(), 3, "three end packets");
        assert!(ends.iter().all(|b| b.duration == ends[0].duration));
        let d = ends[0].duration;
        assert!((680..=920).contains(&d), "duration {d}");
        let updates: Vec<u16> = g
            .iter()
            .filter(|(_, b)| !b.end)
            .map(|(_, b)| b.duration)
            .collect();
        assert!(updates.len() >= 3);
        assert!(updates.windows(2).all(|w| w[1] > w[0]), "{updates:?}");
        assert!(g.last().unwrap().1.end);
    }
    // Sequence numbers are shared by audio and events and never repeat.
    let mut seqs: Vec<u16> = sim
        .sent
        .iter()
        .filter(|(id, _)| *id == 1)
        .map(|(_, s)| s.header.sequence)
        .collect();
    let n = seqs.len();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    seqs.dedup();
    assert_eq!(seqs.len(), n);
    // Its audio has the digits muted.
    let audio = decode_all(CodecKind::Pcmu, &CodecConfig::default(), &sim.sent_on(1, 0));
    assert_eq!(detect_digits(&audio), "");
    let peak = audio.iter().map(|&s| i32::from(s).abs()).max().unwrap();
    println!("RFC 4733 connection: in-band residue peak {peak}");

    // Connection 2 (in-band) carries them in its audio, and no events.
    let audio = decode_all(CodecKind::Pcma, &CodecConfig::default(), &sim.sent_on(2, 8));
    assert_eq!(detect_digits(&audio), keys);
    assert_eq!(sim.sent.iter().filter(|(id, _)| *id == 2).count(), 85);
}

#[test]
fn rfc4733_in_is_played_inband_to_tdm() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.eng
        .add_connection(9, conn(CodecKind::Pcmu, 0, 0x99).with_telephone_event(101))
        .unwrap();
    let ssrc = 0xBEEF;
    let mut seq = 100u16;
    let silence = [0xFFu8; 160];
    // Digits "7" and "*": 120 ms each, 200 ms apart, with µ-law silence as the audio.
    let plan = [(10u64, DtmfDigit::D7), (30u64, DtmfDigit::Star)];
    for k in 0..60u64 {
        let ts = 160 * k as u32;
        let send = |sim: &mut Sim, pkt: Vec<u8>| sim.deliver(k * TICK_US + 5_000, 9, pkt);
        let mut event_pkts = Vec::new();
        for &(start, d) in &plan {
            let ev_ts = 160 * start as u32;
            if (start..start + 6).contains(&k) {
                let dur = 160 * (k - start + 1) as u16;
                let b = EventBlock {
                    event: d.event_code(),
                    end: false,
                    volume: 10,
                    duration: dur,
                };
                event_pkts.push(rtp(101, 0, ev_ts, ssrc, k == start, &b.to_bytes().unwrap()));
            } else if (start + 6..start + 9).contains(&k) {
                let b = EventBlock {
                    event: d.event_code(),
                    end: true,
                    volume: 10,
                    duration: 960,
                };
                event_pkts.push(rtp(101, 0, ev_ts, ssrc, false, &b.to_bytes().unwrap()));
            }
        }
        for mut p in event_pkts {
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            seq = seq.wrapping_add(1);
            send(&mut sim, p);
        }
        send(&mut sim, rtp(0, seq, ts, ssrc, k == 0, &silence));
        seq = seq.wrapping_add(1);
        sim.step(&[0; FRAME]);
    }
    for _ in 0..20 {
        sim.step(&[0; FRAME]);
    }
    assert_eq!(detect_digits(&sim.out), "7*");
    let got: Vec<(char, u32)> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::DigitEnded {
                digit,
                source: DigitSource::Rfc4733 { id: 9 },
                duration_ms,
            } => Some((digit.to_char(), *duration_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![('7', 120), ('*', 120)]);
    // The rendered tone lasts the event's duration (120 ms = 960 samples).
    let loud: Vec<bool> = sim
        .out
        .chunks(80)
        .map(|c| c.iter().any(|&s| i32::from(s).abs() > 1000))
        .collect();
    let mut bursts = Vec::new();
    let mut run = 0;
    for l in loud.iter().chain([false].iter()) {
        if *l {
            run += 1;
        } else if run > 0 {
            bursts.push(run * 10);
            run = 0;
        }
    }
    assert_eq!(bursts, vec![120, 120], "ms of tone per digit");
    let st = sim.eng.stats(9).unwrap();
    assert_eq!(st.events_in, 18);
    assert_eq!(st.jitter.lost, 0, "events do not look like audio loss");
}

// ------------------------------------------------------------------------------------------
// 4. Local signals

#[test]
fn ringback_cadence_and_dtmf_signal() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.eng
        .add_connection(1, conn(CodecKind::Pcmu, 0, 1))
        .unwrap();
    sim.eng
        .play_signal(Signal::Tone {
            tone: CallProgressTone::Ringback,
            set: None,
            toward: SignalDirection::Tdm,
        })
        .unwrap();
    for _ in 0..550 {
        sim.step(&[0; FRAME]); // 11 s
    }
    // 10 ms blocks: on/off runs.
    let on: Vec<bool> = sim
        .out
        .chunks(80)
        .map(|c| c.iter().any(|&s| s != 0))
        .collect();
    let mut runs: Vec<(bool, usize)> = Vec::new();
    for &b in &on {
        match runs.last_mut() {
            Some((v, n)) if *v == b => *n += 1,
            _ => runs.push((b, 1)),
        }
    }
    let runs_ms: Vec<(bool, usize)> = runs.iter().map(|&(b, n)| (b, n * 10)).collect();
    assert_eq!(
        runs_ms,
        vec![
            (true, 1000),
            (false, 4000),
            (true, 1000),
            (false, 4000),
            (true, 1000)
        ]
    );
    let (f, snr) = tone_quality(&sim.out[800..7200], 8000.0, 400.0, 450.0);
    println!("ringback: {f:.2} Hz, SNR {snr:.1} dB");
    assert!((f - 425.0).abs() < 0.5 && snr > 40.0);
    // Toward TDM only: the IP side heard silence.
    let audio = decode_all(CodecKind::Pcmu, &CodecConfig::default(), &sim.sent_on(1, 0));
    assert!(audio.iter().all(|&s| s.abs() < 10));
    assert!(sim.eng.signal_active());
    assert!(!sim.events.contains(&EngineEvent::SignalDone));

    // DTMF digits toward both sides replace the ringback.
    sim.eng
        .play_signal(Signal::Dtmf {
            digits: digits("42"),
            toward: SignalDirection::Both,
        })
        .unwrap();
    let start = sim.out.len();
    let sent_before = sim.sent.len();
    for _ in 0..30 {
        sim.step(&[0; FRAME]);
    }
    assert_eq!(detect_digits(&sim.out[start..]), "42");
    assert!(sim.events.contains(&EngineEvent::SignalDone));
    assert!(!sim.eng.signal_active());
    let ip: Vec<Sent> = sim.sent[sent_before..]
        .iter()
        .map(|(_, s)| s.clone())
        .collect();
    let audio = decode_all(CodecKind::Pcmu, &CodecConfig::default(), &ip);
    assert_eq!(detect_digits(&audio), "42");
    // After the signal: silence.
    assert!(sim.out[sim.out.len() - 800..].iter().all(|&s| s == 0));
    // A tone the set does not define.
    assert_eq!(
        sim.eng.play_signal(Signal::Tone {
            tone: CallProgressTone::Confirmation,
            set: None,
            toward: SignalDirection::Tdm,
        }),
        Err(mgw_media::engine::EngineError::UnknownTone)
    );
    sim.eng
        .play_signal(Signal::Tone {
            tone: CallProgressTone::Busy,
            set: None,
            toward: SignalDirection::Tdm,
        })
        .unwrap();
    sim.eng.play_signal(Signal::Stop).unwrap();
    assert!(!sim.eng.signal_active());
}

// ------------------------------------------------------------------------------------------
// 5. ptime 10/30/40 ms and 16 kHz codecs, round trip through the network and back

fn round_trip(kind: CodecKind, pt: u8, ptime: u32, codec_config: CodecConfig) -> (f64, f64) {
    let mut sim = Sim::new(EngineConfig::default());
    let mut p = conn(kind, pt, 0x5EC0);
    p.ptime_ms = ptime;
    p.codec_config = codec_config;
    sim.eng.add_connection(1, p).unwrap();
    let ticks = 150u64;
    for k in 0..ticks {
        let tin = sine(8000, 1000.0, 8000.0, k as usize * FRAME, FRAME);
        let before = sim.sent.len();
        sim.step(&tin);
        // Echo every packet back 3 ms later (a network loop).
        let echoed: Vec<Vec<u8>> = sim.sent[before..]
            .iter()
            .map(|(_, s)| {
                rtp(
                    s.header.payload_type,
                    s.header.sequence,
                    s.header.timestamp,
                    0xFEED,
                    s.header.marker,
                    &s.payload,
                )
            })
            .collect();
        for e in echoed {
            sim.deliver(k * TICK_US + 3_000, 1, e);
        }
    }
    let pkts = sim.sent_on(1, pt);
    let rate = kind.audio_rate(&codec_config);
    let samples = rate * ptime / 1000;
    let ts_step = kind.rtp_ticks(samples, rate);
    check_stream(&pkts, 0x5EC0, ts_step);
    assert_eq!(
        pkts.len() as u64,
        ticks * 20 / u64::from(ptime),
        "{kind:?} {ptime}"
    );
    let st = sim.eng.stats(1).unwrap();
    assert_eq!(
        (st.decode_errors, st.jitter.lost, st.rx_ptime_changes),
        (0, 0, 0),
        "{st:?}"
    );
    assert_eq!(st.rx_ptime_ms, ptime);
    let body = &sim.out[sim.out.len() - 8000..];
    assert!(longest_zero_run(body) <= 2, "{kind:?} {ptime}");
    let (f, snr) = tone_quality(body, 8000.0, 950.0, 1050.0);
    println!(
        "{kind:?} ptime {ptime} ms: {} bytes/packet, {f:.2} Hz, SNR {snr:.1} dB",
        pkts[1].payload.len()
    );
    (f, snr)
}

#[test]
fn ptimes_and_wideband_codecs_round_trip() {
    let d = CodecConfig::default();
    for (kind, pt, ptime, floor) in [
        (CodecKind::Pcmu, 0, 10, 30.0),
        (CodecKind::Pcma, 8, 30, 30.0),
        (CodecKind::Pcmu, 0, 40, 30.0),
        (CodecKind::G722, 9, 20, 30.0),
        (CodecKind::G722, 9, 30, 30.0),
        (CodecKind::L16 { rate: 16000 }, 96, 20, 40.0),
        (CodecKind::L16 { rate: 16000 }, 96, 10, 40.0),
        (CodecKind::L16 { rate: 8000 }, 97, 30, 40.0),
    ] {
        let (f, snr) = round_trip(kind, pt, ptime, d);
        assert!((f - 1000.0).abs() < 0.5, "{kind:?} {ptime}: {f}");
        assert!(snr > floor, "{kind:?} {ptime}: {snr}");
    }
    // Opus at 16 kHz with 40 ms packets (wideband through the 2:1 converters).
    let wide = CodecConfig {
        opus_rate: 16000,
        opus_bitrate: 32_000,
        ..CodecConfig::default()
    };
    let (f, snr) = round_trip(CodecKind::Opus, 111, 40, wide);
    assert!((f - 1000.0).abs() < 1.0 && snr > 12.0, "{f} {snr}");
}

#[test]
fn receive_side_follows_the_peers_ptime() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.eng
        .add_connection(1, conn(CodecKind::Pcmu, 0, 1))
        .unwrap();
    // We send 20 ms; the peer sends 30 ms.
    let mut peer = Peer::new(CodecKind::Pcmu, 0, 30, 1000.0);
    let mut next_send = 0u64;
    for k in 0..300u64 {
        while next_send <= k * TICK_US {
            sim.deliver(next_send + 4_000, 1, peer.next());
            next_send += 30_000;
        }
        sim.step(&[0; FRAME]);
    }
    let st = sim.eng.stats(1).unwrap();
    assert_eq!((st.rx_ptime_ms, st.rx_ptime_changes), (30, 1), "{st:?}");
    let body = &sim.out[8000..];
    assert!(longest_zero_run(body) <= 2);
    let (f, snr) = tone_quality(body, 8000.0, 950.0, 1050.0);
    assert!((f - 1000.0).abs() < 0.5 && snr > 30.0, "{f} {snr}");
    // What we send stays at 20 ms.
    assert!(sim.sent_on(1, 0).iter().all(|s| s.payload.len() == 160));
}

// ------------------------------------------------------------------------------------------
// 6. Clock drift over an hour

#[test]
fn one_hour_with_sender_clock_100ppm_fast() {
    let cfg = EngineConfig {
        dtmf_detection: false,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(cfg);
    let mut p = conn(CodecKind::Pcmu, 0, 1);
    p.mode = MediaMode::RecvOnly;
    sim.eng.add_connection(1, p).unwrap();
    let mut peer = Peer::new(CodecKind::Pcmu, 0, 20, 1000.0);
    let mut rng = Rng(5);
    // The sender's 20 ms are 19.998 ms of ours.
    let period_ns = 20_000_000.0 * (1.0 - 100e-6);
    let mut sent = 0u64;
    let ticks = 180_000u64;
    let (mut max_delay, mut max_buffered) = (0.0f64, 0usize);
    let mut out = [0i16; FRAME];
    let mut zero_frames_after_start = 0u64;
    let mut started = false;
    for k in 0..ticks {
        let now_us = k * TICK_US;
        while (sent as f64 * period_ns / 1000.0) as u64 <= now_us {
            let send_us = (sent as f64 * period_ns / 1000.0) as u64;
            let pkt = peer.next();
            let at = sim.at(send_us + 10_000 + rng.below(10_000));
            sim.eng.on_rtp(1, at, &pkt);
            sent += 1;
        }
        sim.eng
            .tick(sim.at(now_us), &[0; FRAME], &mut out, &mut |_, _| {
                panic!("recvonly sends nothing")
            });
        started |= out.iter().any(|&s| s != 0);
        if started && longest_zero_run(&out) > 2 {
            zero_frames_after_start += 1;
        }
        if k % 500 == 0 && k > 1000 {
            let s = sim.eng.stats(1).unwrap();
            max_delay = max_delay.max(s.jitter.current_delay_ms);
            max_buffered = max_buffered.max(s.jitter.buffered);
        }
    }
    let s = sim.eng.stats(1).unwrap();
    println!("1 h at +100 ppm: max delay {max_delay:.1} ms, max buffered {max_buffered}, {s:?}");
    // 3600 s × 100 ppm = 360 ms = 18 frames dropped to keep the delay.
    assert!((15..=25).contains(&s.jitter.frames_dropped), "{s:?}");
    assert!(max_delay < 100.0, "delay grew to {max_delay} ms");
    assert!(max_buffered <= 8, "{max_buffered}");
    assert_eq!(s.fifo_overflow, 0);
    assert!(
        zero_frames_after_start <= 25,
        "{zero_frames_after_start} frames with gaps"
    );
    assert_eq!(s.jitter.resyncs, 0);
}

// ------------------------------------------------------------------------------------------
// Modes, modify, robustness

#[test]
fn modify_keeps_ssrc_sequence_and_timestamp() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.eng
        .add_connection(4, conn(CodecKind::Pcmu, 0, 0x4444))
        .unwrap();
    for _ in 0..10 {
        sim.step(&[100; FRAME]);
    }
    // Mode change only: sendonly → stays on the same stream.
    let mut p = conn(CodecKind::Pcmu, 0, 0x9999);
    p.mode = MediaMode::RecvOnly;
    sim.eng.modify_connection(4, p).unwrap();
    for _ in 0..5 {
        sim.step(&[100; FRAME]);
    }
    assert_eq!(sim.sent.len(), 10, "recvonly does not send");
    // Back to sending, now with Opus: same SSRC, sequence continues, timestamp advanced
    // by the elapsed time on the new clock, marker set.
    let mut p = conn(CodecKind::Opus, 111, 0x9999);
    p.mode = MediaMode::SendRecv;
    sim.eng.modify_connection(4, p).unwrap();
    for _ in 0..5 {
        sim.step(&[100; FRAME]);
    }
    let all: Vec<&Sent> = sim.sent.iter().map(|(_, s)| s).collect();
    assert_eq!(all.len(), 15);
    let (last_pcmu, first_opus) = (&all[9].header, &all[10].header);
    assert_eq!(first_opus.ssrc, 0x4444);
    assert_eq!(first_opus.sequence, last_pcmu.sequence.wrapping_add(1));
    assert!(first_opus.marker);
    // 6 frames (120 ms) after the last PCMU packet on the 8 kHz clock; from there on the
    // 48 kHz clock.
    assert_eq!(
        first_opus.timestamp,
        last_pcmu.timestamp.wrapping_add(160 * 6)
    );
    assert_eq!(first_opus.payload_type, 111);
    assert_eq!(
        all[11].header.timestamp,
        first_opus.timestamp.wrapping_add(960)
    );
    assert_eq!(
        sim.eng.modify_connection(99, conn(CodecKind::Pcmu, 0, 1)),
        Err(mgw_media::engine::EngineError::UnknownConnection(99))
    );
    sim.eng.remove_connection(4);
    assert_eq!(sim.eng.connection_count(), 0);
    assert!(sim.eng.stats(4).is_none());
}

#[test]
fn network_loopback_conference_and_circuit_loopback() {
    let mut sim = Sim::new(EngineConfig::default());
    let mut nl = conn(CodecKind::Pcmu, 0, 0x1);
    nl.mode = MediaMode::NetworkLoopback;
    sim.eng.add_connection(1, nl).unwrap();
    let mut peer = Peer::new(CodecKind::Pcmu, 0, 20, 1000.0);
    for k in 0..100u64 {
        sim.deliver(k * TICK_US + 2_000, 1, peer.next());
        sim.step(&[3000; FRAME]);
    }
    // The peer's tone comes back to it, the TDM input does not, and TDM hears nothing.
    let back = decode_all(CodecKind::Pcmu, &CodecConfig::default(), &sim.sent_on(1, 0));
    let (f, snr) = tone_quality(&back[2400..], 8000.0, 950.0, 1050.0);
    assert!((f - 1000.0).abs() < 0.5 && snr > 30.0, "{f} {snr}");
    assert!(sim.out.iter().all(|&s| s == 0));

    // Circuit loopback: TDM in → TDM out.
    let mut lb = conn(CodecKind::Pcmu, 0, 0x2);
    lb.mode = MediaMode::Loopback;
    sim.eng.modify_connection(1, lb).unwrap();
    let tin = sine(8000, 800.0, 5000.0, 0, FRAME);
    let sent = sim.sent.len();
    sim.step(&tin);
    assert_eq!(&sim.out[sim.out.len() - FRAME..], &tin[..]);
    assert_eq!(sim.sent.len(), sent);

    // Conference: each conference connection hears the TDM side and the others.
    let mut sim = Sim::new(EngineConfig::default());
    for id in 1..=3u32 {
        let mut p = conn(CodecKind::L16 { rate: 8000 }, 96, id);
        p.mode = MediaMode::Conference;
        sim.eng.add_connection(id, p).unwrap();
    }
    let mut peers: Vec<Peer> = [500.0, 700.0]
        .iter()
        .map(|&f| Peer::new(CodecKind::L16 { rate: 8000 }, 96, 20, f))
        .collect();
    for k in 0..100u64 {
        for (i, p) in peers.iter_mut().enumerate() {
            sim.deliver(k * TICK_US + 1_000, i as u32 + 1, p.next());
        }
        sim.step(&sine(8000, 300.0, 5000.0, k as usize * FRAME, FRAME));
    }
    let heard = |sim: &Sim, id: u32| {
        decode_all(
            CodecKind::L16 { rate: 8000 },
            &CodecConfig::default(),
            &sim.sent_on(id, 96),
        )
    };
    let power = |x: &[i16], f: f64| fit(&x[4000..], 8000.0, f).0;
    let c1 = heard(&sim, 1);
    let c3 = heard(&sim, 3);
    assert!(power(&c1, 300.0) > 1e6 && power(&c1, 700.0) > 1e6 && power(&c1, 500.0) < 1e3);
    assert!(power(&c3, 300.0) > 1e6 && power(&c3, 500.0) > 1e6 && power(&c3, 700.0) > 1e6);
    // TDM hears both peers.
    assert!(power(&sim.out, 500.0) > 1e6 && power(&sim.out, 700.0) > 1e6);
}

#[test]
fn comfort_noise_fills_silence() {
    let mut sim = Sim::new(EngineConfig::default());
    let mut p = conn(CodecKind::Pcmu, 0, 1);
    p.cn_pt = Some(13);
    sim.eng.add_connection(1, p).unwrap();
    let mut peer = Peer::new(CodecKind::Pcmu, 0, 20, 1000.0);
    // 1 s of tone, then one CN packet at −50 dBov and 2 s of silence.
    for k in 0..150u64 {
        if k < 50 {
            sim.deliver(k * TICK_US + 2_000, 1, peer.next());
        } else if k == 50 {
            let cn = rtp(13, peer.seq, peer.ts, peer.ssrc, false, &[50]);
            sim.deliver(k * TICK_US + 2_000, 1, cn);
        }
        sim.step(&[0; FRAME]);
    }
    let tail = &sim.out[sim.out.len() - 8000..];
    let rms = (tail.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
    let dbov = 20.0 * (rms / 32767.0).log10();
    println!("comfort noise at {dbov:.1} dBov");
    assert!((dbov + 50.0).abs() < 1.0, "{dbov}");
    let st = sim.eng.stats(1).unwrap();
    assert_eq!((st.cn_in, st.cn_level), (1, Some(50)));
    assert_eq!(st.jitter.lost, 0, "CN keeps its place in the sequence");

    // With comfort noise off the same is silent.
    let cfg = EngineConfig {
        comfort_noise: false,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(cfg);
    sim.eng.add_connection(1, p).unwrap();
    sim.deliver(0, 1, rtp(13, 1, 0, 9, false, &[30]));
    for _ in 0..50 {
        sim.step(&[0; FRAME]);
    }
    assert!(sim.out.iter().all(|&s| s == 0));
}

#[test]
fn hostile_packets_are_counted_not_fatal() {
    let mut sim = Sim::new(EngineConfig::default());
    let mut p = conn(CodecKind::Opus, 111, 1).with_telephone_event(101);
    p.cn_pt = Some(13);
    sim.eng.add_connection(1, p).unwrap();
    sim.eng
        .add_connection(2, conn(CodecKind::G722, 9, 2))
        .unwrap();
    let mut rng = Rng(77);
    for k in 0..400u64 {
        for _ in 0..5 {
            let len = rng.below(300) as usize;
            let mut pkt: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= 2 && rng.chance(0.7) {
                pkt[0] = 0x80;
                pkt[1] =
                    [0u8, 9, 13, 101, 111, 5][rng.below(6) as usize] | ((rng.next() as u8) & 0x80);
            }
            let id = 1 + rng.below(3) as u32;
            sim.deliver(k * TICK_US + rng.below(20_000), id, pkt);
        }
        sim.step(&[0; FRAME]);
    }
    for id in [1, 2] {
        let s = sim.eng.stats(id).unwrap();
        println!("garbage on {id}: {s:?}");
        assert!(s.malformed > 0 && s.wrong_pt > 0, "{s:?}");
    }
    // Invalid parameters are refused.
    let mut bad = conn(CodecKind::Opus, 111, 1);
    bad.ptime_ms = 30;
    assert!(sim.eng.add_connection(5, bad).is_err());
    let mut bad = conn(CodecKind::Pcmu, 0, 1);
    bad.cn_pt = Some(0);
    assert!(sim.eng.add_connection(5, bad).is_err());
    let bad = ConnParams::from_sdp("G729", 8000, None, None, 18);
    assert!(bad.is_err());
    let ok = ConnParams::from_sdp("opus", 48000, Some(2), Some("useinbandfec=1"), 111).unwrap();
    assert!(ok.codec_config.opus_fec);
}

// ------------------------------------------------------------------------------------------
// 8b. Opus in-band FEC

/// SNR in dB of `x` against `reference` (same length).
fn snr_db(reference: &[i16], x: &[i16]) -> f64 {
    let sig: f64 = reference.iter().map(|&v| f64::from(v).powi(2)).sum();
    let err: f64 = reference
        .iter()
        .zip(x)
        .map(|(&r, &v)| (f64::from(r) - f64::from(v)).powi(2))
        .sum();
    10.0 * (sig / err.max(1e-9)).log10()
}

#[test]
fn opus_fec_recovers_a_lost_packet_better_than_plc() {
    // SILK codes FEC (LBRR) only for frames its voice activity detector calls active, and it
    // learns a steady tone as background after ~0.75 s (libopus 1.6: LBRR in the first 38
    // packets of this stream, none after). The loss is in the middle of that stretch.
    const PKTS: usize = 40;
    const LOST: usize = 20;
    let cc = CodecConfig {
        opus_fec: true,
        opus_packet_loss_perc: 20,
        ..CodecConfig::default()
    };
    // The far end: a steady 1 kHz tone, 20 ms Opus packets with FEC.
    let input = sine(8000, 1000.0, 10_000.0, 0, FRAME * PKTS);
    let mut enc = Codec::new(CodecKind::Opus, &cc).unwrap();
    let payloads: Vec<Vec<u8>> = input
        .chunks(FRAME)
        .map(|f| {
            let mut p = vec![0u8; 1500];
            let n = enc.encoder.encode(f, &mut p).unwrap();
            p.truncate(n);
            p
        })
        .collect();

    // A fixed 60 ms playout delay: no frame is dropped or inserted, so the engine's output
    // lines up sample for sample with a reference decode.
    let cfg = EngineConfig {
        jitter: JitterSettings {
            min_delay_ms: 60,
            max_delay_ms: 300,
            initial_delay_ms: 60,
        },
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(cfg);
    let mut p = conn(CodecKind::Opus, 111, 0xF);
    p.codec_config = cc;
    sim.eng.add_connection(1, p).unwrap();
    for (k, payload) in payloads.iter().enumerate() {
        if k != LOST {
            let pkt = rtp(
                111,
                3000 + k as u16,
                5000 + 960 * k as u32,
                0xFEC,
                k == 0,
                payload,
            );
            sim.deliver(k as u64 * TICK_US + 7_000, 1, pkt);
        }
        sim.step(&[0; FRAME]);
    }
    for _ in 0..5 {
        sim.step(&[0; FRAME]);
    }
    let st = sim.eng.stats(1).unwrap();
    println!("{st:?}");
    assert_eq!(st.jitter.lost, 1, "{st:?}");
    assert_eq!(st.fec_recovered, 1, "{st:?}");

    // Reference decodes with a fresh decoder: no loss, plain PLC, FEC.
    let decode = |lost: Option<bool>| {
        let mut c = Codec::new(CodecKind::Opus, &cc).unwrap();
        let mut out = Vec::new();
        let mut buf = [0i16; FRAME];
        for (k, p) in payloads.iter().enumerate() {
            let n = match lost {
                Some(fec) if k == LOST => {
                    if fec {
                        c.decoder.decode_fec(&payloads[k + 1], &mut buf).unwrap()
                    } else {
                        c.decoder.conceal(&mut buf).unwrap()
                    }
                }
                _ => c.decoder.decode(p, &mut buf).unwrap(),
            };
            assert_eq!(n, FRAME);
            out.extend_from_slice(&buf);
        }
        out
    };
    let (clean, plc, fec) = (decode(None), decode(Some(false)), decode(Some(true)));

    // Where the engine's output starts: it matches the clean decode exactly up to the loss.
    let head = FRAME * LOST;
    let off = (0..sim.out.len() - head)
        .find(|&o| sim.out[o..o + head] == clean[..head])
        .expect("engine output matches the reference decode");
    // The engine played the FEC-recovered frame, then decoded on from the same state.
    let got = &sim.out[off..off + FRAME * PKTS];
    assert_eq!(got, &fec[..], "engine output differs from an FEC decode");

    // The codec delay: the lag that best aligns the clean decode with the input.
    let lag = (0..FRAME)
        .max_by(|&a, &b| {
            let s = |l: usize| {
                snr_db(
                    &input[5 * FRAME..LOST * FRAME],
                    &clean[5 * FRAME + l..LOST * FRAME + l],
                )
            };
            s(a).total_cmp(&s(b))
        })
        .unwrap();
    let at = LOST * FRAME;
    let original = &input[at..at + FRAME];
    let snr = |x: &[i16]| snr_db(original, &x[at + lag..at + lag + FRAME]);
    let (s_clean, s_plc, s_fec) = (snr(&clean), snr(&plc), snr(got));
    println!("lost frame vs original (lag {lag}): clean {s_clean:.1} dB, PLC {s_plc:.1} dB, FEC {s_fec:.1} dB");
    // Measured: clean 21.6 dB, PLC 8.2 dB, FEC 20.6 dB.
    assert!(s_fec > s_plc + 3.0, "FEC {s_fec:.1} dB, PLC {s_plc:.1} dB");
}

// ------------------------------------------------------------------------------------------
// 9. Continuity tones (T/co1, T/co2) and announcements (A/ann)

use mgw_media::codec::g711::{decode_slice, encode_slice};
use mgw_media::codec::G711Law;
use mgw_media::tone::{dbm0_to_peak, power_to_dbm0, ToneSet, CONTINUITY_HZ, CONTINUITY_RETURN_HZ};
use std::sync::Arc;

/// What an E1 does to a frame: A-law in, A-law out.
fn through_alaw(x: &[i16]) -> Vec<i16> {
    let mut codes = vec![0u8; x.len()];
    encode_slice(G711Law::ALaw, x, &mut codes);
    let mut out = vec![0i16; x.len()];
    decode_slice(G711Law::ALaw, &codes, &mut out);
    out
}

/// (tick index, frequency) of every `ToneDetected` event of `sim`, in order, given the
/// tick at which each event was polled.
fn tone_events(events: &[(u64, EngineEvent)]) -> Vec<(u64, u32)> {
    events
        .iter()
        .filter_map(|&(t, e)| match e {
            EngineEvent::ToneDetected { freq_hz } => Some((t, freq_hz)),
            _ => None,
        })
        .collect()
}

/// Feeds `input` to a fresh engine (configured by `cfg`) frame by frame, through A-law;
/// returns every event with the tick it was raised in.
fn feed(cfg: EngineConfig, input: &[i16]) -> Vec<(u64, EngineEvent)> {
    let mut eng = ChannelEngine::new(cfg);
    let t0 = Instant::now();
    let mut out = [0i16; FRAME];
    let mut events = Vec::new();
    for (k, frame) in input.chunks(FRAME).enumerate() {
        let at = t0 + Duration::from_micros(k as u64 * TICK_US);
        eng.tick(at, &through_alaw(frame), &mut out, &mut |_, _| {});
        while let Some(e) = eng.poll_event() {
            events.push((k as u64, e));
        }
    }
    events
}

fn steady(hz: u32, dbm0: f32, ms: usize) -> Vec<i16> {
    let mut g = ToneGenerator::steady(hz as f32, dbm0, SampleRate::Hz8000);
    let mut x = vec![0i16; ms * 8];
    g.fill(&mut x);
    x
}

#[test]
fn continuity_tone_played_by_one_engine_is_detected_by_the_other() {
    for hz in [CONTINUITY_HZ, CONTINUITY_RETURN_HZ] {
        // A plays the tone toward its line; the line (A-law) is B's input.
        let mut a = Sim::new(EngineConfig::default());
        a.eng
            .add_connection(1, conn(CodecKind::Pcma, 8, 1))
            .unwrap();
        a.eng
            .play_signal(Signal::Continuity {
                freq_hz: hz,
                toward: SignalDirection::Both,
            })
            .unwrap();
        let mut b = ChannelEngine::new(EngineConfig::default());
        let mut events = Vec::new();
        let mut out = [0i16; FRAME];
        for k in 0..100u64 {
            a.step(&[0; FRAME]);
            let line = through_alaw(&a.out[a.out.len() - FRAME..]);
            b.tick(a.at(k * TICK_US), &line, &mut out, &mut |_, _| {});
            while let Some(e) = b.poll_event() {
                events.push((k, e));
            }
        }
        // Continuous: still playing, no SignalDone; reported once, 60 ms after the onset
        // (the tone fills tick 0 onwards: blocks 0..6 end with tick 2).
        assert!(a.eng.signal_active());
        assert!(!a.events.contains(&EngineEvent::SignalDone));
        assert_eq!(events, vec![(2, EngineEvent::ToneDetected { freq_hz: hz })]);
        // Frequency and level on the line, and in-band toward IP.
        let (f, snr) = tone_quality(
            &a.out[800..8800],
            8000.0,
            hz as f64 - 20.0,
            hz as f64 + 20.0,
        );
        assert!(
            (f - f64::from(hz)).abs() < 0.5 && snr > 40.0,
            "{hz}: {f} {snr}"
        );
        let p = a.out[800..8800]
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            / 8000.0;
        let level = power_to_dbm0(p as f32);
        assert!((level + 10.0).abs() < 0.2, "{hz}: {level} dBm0");
        let ip = decode_all(CodecKind::Pcma, &CodecConfig::default(), &a.sent_on(1, 8));
        let (f, snr) = tone_quality(&ip[800..8800], 8000.0, hz as f64 - 20.0, hz as f64 + 20.0);
        assert!(
            (f - f64::from(hz)).abs() < 0.5 && snr > 30.0,
            "IP {hz}: {f} {snr}"
        );
        a.eng.play_signal(Signal::Stop).unwrap();
        assert!(!a.eng.signal_active());
    }
}

#[test]
fn continuity_onsets_are_debounced() {
    let gap = |ms: usize| vec![0i16; ms * 8];
    let mut input = Vec::new();
    input.extend(gap(100)); // ticks 0..5
    input.extend(steady(CONTINUITY_HZ, -10.0, 300)); // ticks 5..20
    input.extend(gap(200)); // 20..30
                            // A 20 ms dropout in the middle of the second tone does not report it twice.
    input.extend(steady(CONTINUITY_HZ, -10.0, 200)); // 30..40
    input.extend(gap(20)); // 40
    input.extend(steady(CONTINUITY_HZ, -10.0, 200)); // 41..51
    input.extend(gap(200)); // 51..61
                            // Weak (−30 dBm0) return tone.
    input.extend(steady(CONTINUITY_RETURN_HZ, -30.0, 300)); // 61..76
                                                            // A tone changing straight to the other tone.
    input.extend(steady(CONTINUITY_HZ, -10.0, 300)); // 76..91
                                                     // Too short: 40 ms.
    input.extend(gap(200)); // 91..101
    input.extend(steady(CONTINUITY_RETURN_HZ, -10.0, 40)); // 101..103
    input.extend(gap(200));
    let ev = tone_events(&feed(EngineConfig::default(), &input));
    assert_eq!(
        ev,
        vec![
            (7, CONTINUITY_HZ),
            (32, CONTINUITY_HZ),
            (63, CONTINUITY_RETURN_HZ),
            (78, CONTINUITY_HZ)
        ]
    );
    // With detection off, nothing.
    let cfg = EngineConfig {
        continuity_detection: false,
        ..EngineConfig::default()
    };
    assert!(tone_events(&feed(cfg, &input)).is_empty());
}

/// A crude voiced-speech model: a glottal pulse train with a gliding pitch through three
/// formant resonators that move every syllable, with a syllable envelope and pauses.
fn speech_like(seconds: usize, seed: u64) -> Vec<i16> {
    let mut rng = Rng(seed);
    let n = seconds * 8000;
    let mut out = Vec::with_capacity(n);
    // (F1, F2, F3) of some vowels, Hz.
    const VOWELS: [(f64, f64, f64); 6] = [
        (730.0, 1090.0, 2440.0),
        (270.0, 2290.0, 3010.0),
        (530.0, 1840.0, 2480.0),
        (660.0, 1720.0, 2410.0),
        (300.0, 870.0, 2240.0),
        (390.0, 1990.0, 2550.0),
    ];
    let mut res = [(0.0f64, 0.0f64); 3];
    let mut phase = 0.0f64;
    let mut i = 0;
    while i < n {
        let syl = 1200 + rng.below(1600) as usize; // 150–350 ms
        let (f1, f2, f3) = VOWELS[rng.below(6) as usize];
        let pitch0 = 90.0 + rng.below(160) as f64;
        let glide = (rng.below(80) as f64 - 40.0) / syl as f64;
        let voiced = rng.chance(0.8);
        for j in 0..syl.min(n - i) {
            let pitch = pitch0 + glide * j as f64;
            phase += pitch / 8000.0;
            let exc = if voiced {
                if phase >= 1.0 {
                    phase -= 1.0;
                    1.0
                } else {
                    0.0
                }
            } else {
                (rng.below(2001) as f64 - 1000.0) / 3000.0
            };
            let mut y = 0.0;
            for (k, &(f, bw)) in [(f1, 80.0), (f2, 120.0), (f3, 160.0)].iter().enumerate() {
                let r = (-std::f64::consts::PI * bw / 8000.0).exp();
                let c = 2.0 * r * (2.0 * std::f64::consts::PI * f / 8000.0).cos();
                let (y1, y2) = res[k];
                let v = exc + c * y1 - r * r * y2;
                res[k] = (v, y1);
                y += v / (k + 1) as f64;
            }
            let env = (std::f64::consts::PI * j as f64 / syl as f64).sin();
            out.push((y * env * 1500.0).clamp(-32768.0, 32767.0) as i16);
        }
        i += syl;
        // A pause between some syllables.
        if rng.chance(0.3) {
            let p = (rng.below(1600) as usize).min(n.saturating_sub(i));
            out.extend(std::iter::repeat_n(0, p));
            i += p;
        }
    }
    out.truncate(n);
    out
}

#[test]
fn no_continuity_detection_on_dtmf_progress_tones_noise_or_speech() {
    let mut input: Vec<i16> = Vec::new();
    // All sixteen digits, at the default levels and with the low or the high tone 2–4 dB
    // stronger, 1 s each (so that a single tone of the pair would have ample time).
    for (low, high) in [(-10.0, -8.0), (-8.0, -10.0), (-14.0, -10.0)] {
        let p = DtmfToneParams {
            low_dbm0: low,
            high_dbm0: high,
            on_ms: 1000,
            off_ms: 100,
        };
        input.extend(
            render_gen(ToneGenerator::dtmf_sequence(
                &DtmfDigit::ALL,
                &p,
                SampleRate::Hz8000,
            ))
            .iter(),
        );
    }
    let dtmf_len = input.len();
    // Every call-progress tone of both plans, 6 s each (cadences included).
    for set in [ToneSet::ETSI, ToneSet::NORTH_AMERICA] {
        for t in CallProgressTone::ALL {
            if let Some(mut g) = ToneGenerator::call_progress(&set, t, SampleRate::Hz8000) {
                let mut x = vec![0i16; 48_000];
                g.fill(&mut x);
                input.extend_from_slice(&x);
            }
        }
    }
    // White noise at −10, −20 and −30 dBm0, 10 s each.
    let mut rng = Rng(2010);
    for dbm0 in [-10.0f32, -20.0, -30.0] {
        // Uniform noise of peak a has power a²/3.
        let a = f64::from(dbm0_to_peak(dbm0)) / 2f64.sqrt() * 3f64.sqrt();
        for _ in 0..80_000 {
            let u = (rng.below(2_000_001) as f64 - 1_000_000.0) / 1_000_000.0;
            input.push((u * a) as i16);
        }
    }
    // 60 s of speech-like sound, at its level and 12 dB louder.
    let speech = speech_like(30, 7);
    input.extend_from_slice(&speech);
    input.extend(speech.iter().map(|&v| v.saturating_mul(4)));
    // Neighbours of the continuity tones: fax answer tone 2100 Hz, 1900 Hz, 1650 Hz.
    for hz in [2100, 1900, 1650] {
        input.extend(steady(hz, -10.0, 2000));
    }

    let events = feed(EngineConfig::default(), &input);
    assert_eq!(tone_events(&events), vec![], "no continuity tone");
    // The input did reach the detectors: the digits were all found, in the DTMF part.
    let found: String = events
        .iter()
        .filter_map(|&(t, e)| match e {
            EngineEvent::DigitDetected { digit, .. } if (t as usize) * FRAME < dtmf_len + 800 => {
                Some(digit.to_char())
            }
            _ => None,
        })
        .collect();
    assert_eq!(found, "0123456789*#ABCD".repeat(3));
}

fn render_gen(mut g: ToneGenerator) -> Vec<i16> {
    let mut out = Vec::new();
    let mut buf = [0i16; FRAME];
    while !g.is_done() {
        let n = g.fill(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn play_plays_exactly_the_samples_then_signal_done() {
    // 0.5 s plus 37 samples: the last frame is partly filled.
    let len = 4000 + 37;
    let pcm: Arc<[i16]> = (0..len)
        .map(|i| ((i as i32 * 7919) % 20_001 - 10_000) as i16)
        .collect();
    let mut sim = Sim::new(EngineConfig::default());
    sim.eng
        .add_connection(1, conn(CodecKind::Pcma, 8, 1))
        .unwrap();
    sim.eng
        .play_signal(Signal::Play {
            pcm: Arc::clone(&pcm),
            toward: SignalDirection::Both,
        })
        .unwrap();
    assert_eq!(Arc::strong_count(&pcm), 2, "shared, not copied");
    let mut done_at = None;
    for k in 0..40 {
        sim.step(&[0; FRAME]);
        if done_at.is_none() && sim.events.contains(&EngineEvent::SignalDone) {
            done_at = Some(k);
        }
    }
    // Raised in the tick that played the last sample, once.
    assert_eq!(done_at, Some(len / FRAME));
    assert_eq!(
        sim.events
            .iter()
            .filter(|e| **e == EngineEvent::SignalDone)
            .count(),
        1
    );
    assert!(!sim.eng.signal_active());
    assert_eq!(Arc::strong_count(&pcm), 1, "released when done");
    // Toward the line: the samples, exactly, then silence.
    assert_eq!(&sim.out[..len], &pcm[..]);
    assert!(sim.out[len..].iter().all(|&s| s == 0));
    // Toward IP: the same samples through A-law.
    let ip = decode_all(CodecKind::Pcma, &CodecConfig::default(), &sim.sent_on(1, 8));
    assert_eq!(&ip[..len], &through_alaw(&pcm)[..]);
    assert!(ip[len..].iter().all(|&s| s.abs() <= 8));

    // Stopped half-way: no SignalDone; an empty buffer is done at once; a bad steady
    // frequency is refused.
    let mut sim = Sim::new(EngineConfig::default());
    sim.eng
        .play_signal(Signal::Play {
            pcm: Arc::clone(&pcm),
            toward: SignalDirection::Tdm,
        })
        .unwrap();
    for _ in 0..5 {
        sim.step(&[0; FRAME]);
    }
    sim.eng.play_signal(Signal::Stop).unwrap();
    for _ in 0..30 {
        sim.step(&[0; FRAME]);
    }
    assert_eq!(&sim.out[..800], &pcm[..800]);
    assert!(sim.out[800..].iter().all(|&s| s == 0));
    assert!(!sim.events.contains(&EngineEvent::SignalDone));
    sim.eng
        .play_signal(Signal::Play {
            pcm: Arc::from(Vec::new()),
            toward: SignalDirection::Tdm,
        })
        .unwrap();
    assert_eq!(sim.eng.poll_event(), Some(EngineEvent::SignalDone));
    for freq_hz in [0, 4000, 10_000] {
        assert_eq!(
            sim.eng.play_signal(Signal::Continuity {
                freq_hz,
                toward: SignalDirection::Tdm
            }),
            Err(mgw_media::engine::EngineError::UnknownTone)
        );
    }
}
