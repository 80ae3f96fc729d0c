//! The port set: default virtual spans, endpoint naming, crossover through `tick`,
//! tap sockets with a real peer, DAHDI spans over the fake device.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use mgw_tdm::{
    AnyChannel, ChannelId, ChannelIo, FakeDahdi, FakeRead, FrameClock, Law, SetupError, SpanConfig,
    SpanKind, TdmConfig, TdmPorts,
};

fn sine(n: usize, hz: f64, amp: f64, phase0: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (i + phase0) as f64 / 8000.0;
            (amp * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}

fn quantised(law: Law, pcm: &[i16]) -> Vec<i16> {
    let mut c = vec![0u8; pcm.len()];
    law.encode(pcm, &mut c);
    let mut out = vec![0i16; pcm.len()];
    law.decode(&c, &mut out);
    out
}

#[test]
fn ports_are_send() {
    fn is_send<T: Send>() {}
    is_send::<TdmPorts>();
}

#[test]
fn default_virtual_spans_and_endpoint_names() {
    let ports = TdmPorts::build(&TdmConfig::default()).unwrap();
    assert_eq!(ports.samples_per_frame(), 160);
    let names: Vec<_> = ports
        .spans()
        .iter()
        .map(|s| (s.name().to_owned(), s.len(), s.law()))
        .collect();
    assert_eq!(
        names,
        [
            ("e1-1".to_owned(), 30, Law::Alaw),
            ("e1-2".to_owned(), 30, Law::Alaw),
            ("t1-1".to_owned(), 24, Law::Ulaw),
            ("t1-2".to_owned(), 24, Law::Ulaw)
        ]
    );
    assert_eq!(ports.endpoints().count(), 108);
    let id = ports.resolve("ds/t1-2/24").unwrap();
    assert_eq!(id, ChannelId { span: 3, index: 23 });
    assert_eq!(ports.endpoint_name(id).as_deref(), Some("ds/t1-2/24"));
    assert_eq!(
        ports.resolve("DS/E1-1/1"),
        Some(ChannelId { span: 0, index: 0 })
    );
    assert_eq!(ports.resolve("ds/e1-1/31"), None);
    assert_eq!(ports.resolve("ds/e1-3/1"), None);
    assert_eq!(ports.endpoint_name(ChannelId { span: 9, index: 0 }), None);
    // An empty span list means the defaults too.
    let empty = TdmConfig {
        ptime_ms: 10,
        spans: vec![],
    };
    let p = TdmPorts::build(&empty).unwrap();
    assert_eq!(p.spans().len(), 4);
    assert_eq!(p.samples_per_frame(), 80);
}

#[test]
fn crossover_cable_with_one_frame_delay_driven_by_the_clock() {
    let mut ports = TdmPorts::build(&TdmConfig::default()).unwrap();
    let a = ports.resolve("ds/e1-1/7").unwrap();
    let b = ports.resolve("ds/e1-2/7").unwrap();
    let other = ports.resolve("ds/e1-2/8").unwrap();
    let t0 = Instant::now();
    let mut clock = FrameClock::with_ptime_ms(t0, 20);
    let mut frame = 0usize;
    let mut got = vec![0i16; 160];
    let mut prev_sent_a: Option<Vec<i16>> = None;
    let mut prev_sent_b: Option<Vec<i16>> = None;
    // 1 simulated second, polled every 40 ms: two frames per poll.
    for step in 1..=25u64 {
        let due = clock.poll(t0 + Duration::from_millis(40 * step));
        assert_eq!(due.run, 2);
        for _ in 0..due.run {
            let sa = sine(160, 1000.0, 9000.0, frame * 160);
            let sb = sine(160, 400.0, 5000.0, frame * 160);
            // b reads what a wrote last frame (and the reverse), A-law quantised.
            let n = ports.channel_mut(b).unwrap().read_frame(&mut got).unwrap();
            match &prev_sent_a {
                Some(p) => {
                    assert_eq!(n, 160);
                    assert_eq!(got, quantised(Law::Alaw, p));
                }
                None => assert_eq!(n, 0),
            }
            ports.channel_mut(a).unwrap().write_frame(&sa).unwrap();
            ports.channel_mut(b).unwrap().write_frame(&sb).unwrap();
            let n = ports.channel_mut(a).unwrap().read_frame(&mut got).unwrap();
            match &prev_sent_b {
                Some(p) => {
                    assert_eq!(n, 160);
                    assert_eq!(got, quantised(Law::Alaw, p));
                }
                None => assert_eq!(n, 0),
            }
            // Other channels stay idle.
            let mut codes = [0u8; 160];
            assert_eq!(
                ports
                    .channel_mut(other)
                    .unwrap()
                    .read_coded(&mut codes)
                    .unwrap(),
                0
            );
            assert!(codes.iter().all(|&c| c == 0xD5));
            ports.tick();
            prev_sent_a = Some(sa);
            prev_sent_b = Some(sb);
            frame += 1;
        }
    }
    assert_eq!(frame, 50);
    let s = ports.channel_mut(b).unwrap().stats();
    assert_eq!((s.frames_read, s.underruns, s.frames_written), (49, 1, 50));
    // T1 pair carries µ-law codes unchanged.
    let t1a = ports.resolve("ds/t1-1/24").unwrap();
    let t1b = ports.resolve("ds/t1-2/24").unwrap();
    let codes: Vec<u8> = (0..160).map(|i| i as u8).collect();
    ports.channel_mut(t1a).unwrap().write_coded(&codes).unwrap();
    ports.tick();
    let mut back = [0u8; 160];
    assert_eq!(
        ports
            .channel_mut(t1b)
            .unwrap()
            .read_coded(&mut back)
            .unwrap(),
        160
    );
    assert_eq!(&back[..], &codes[..]);
    assert_eq!(ports.channel_mut(t1b).unwrap().law(), Law::Ulaw);
}

#[test]
fn mixed_law_pair_and_unpaired_span() {
    let mut e1 = SpanConfig::virtual_e1("e1-1");
    let mut t1 = SpanConfig::virtual_t1("t1-1");
    e1.loop_with = Some("t1-1".into());
    t1.loop_with = Some("e1-1".into());
    let lone = SpanConfig::virtual_e1("e1-9");
    let cfg = TdmConfig {
        ptime_ms: 20,
        spans: vec![e1, t1, lone],
    };
    let mut ports = TdmPorts::build(&cfg).unwrap();
    let a = ports.resolve("ds/t1-1/3").unwrap();
    let b = ports.resolve("ds/e1-1/3").unwrap();
    let hi = ports.resolve("ds/e1-1/30").unwrap(); // no partner channel on a 24-channel T1
    let l = ports.resolve("ds/e1-9/1").unwrap();
    let f = sine(160, 700.0, 10000.0, 0);
    ports.channel_mut(a).unwrap().write_frame(&f).unwrap();
    ports.channel_mut(hi).unwrap().write_frame(&f).unwrap();
    ports.channel_mut(l).unwrap().write_frame(&f).unwrap();
    ports.tick();
    let mut got = vec![0i16; 160];
    assert_eq!(
        ports.channel_mut(b).unwrap().read_frame(&mut got).unwrap(),
        160
    );
    for (x, y) in f.iter().zip(&got) {
        assert!((i32::from(*x) - i32::from(*y)).abs() <= 700, "{x} vs {y}");
    }
    assert_eq!(
        ports.channel_mut(hi).unwrap().read_frame(&mut got).unwrap(),
        0
    );
    assert_eq!(
        ports.channel_mut(l).unwrap().read_frame(&mut got).unwrap(),
        0
    );
}

#[test]
fn bad_span_sets_are_rejected() {
    let build = |spans: Vec<SpanConfig>| {
        TdmPorts::build(&TdmConfig {
            ptime_ms: 20,
            spans,
        })
    };
    let mut a = SpanConfig::virtual_e1("e1-1");
    a.loop_with = Some("e1-2".into());
    assert!(
        matches!(build(vec![a.clone()]), Err(SetupError::Config(_))),
        "unknown partner"
    );
    let b = SpanConfig::virtual_e1("e1-2");
    assert!(
        matches!(build(vec![a.clone(), b]), Err(SetupError::Config(_))),
        "not mutual"
    );
    let mut self_loop = SpanConfig::virtual_e1("e1-1");
    self_loop.loop_with = Some("e1-1".into());
    assert!(build(vec![self_loop]).is_err());
    assert!(build(vec![
        SpanConfig::virtual_e1("x"),
        SpanConfig::virtual_t1("x")
    ])
    .is_err());
    let r = TdmPorts::build(&TdmConfig {
        ptime_ms: 7,
        spans: vec![],
    });
    assert!(r.is_err());
}

#[test]
fn tap_span_talks_to_a_real_socket_peer() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SpanConfig::virtual_e1("e1-1");
    cfg.channels = "1-2".parse().unwrap();
    cfg.tap = true;
    cfg.tap_dir = Some(dir.path().join("tap"));
    let mut ports = TdmPorts::build(&TdmConfig {
        ptime_ms: 20,
        spans: vec![cfg],
    })
    .unwrap();
    let sock_path = dir.path().join("tap/e1-1-2.sock");
    assert!(sock_path.exists());
    let id = ports.resolve("ds/e1-1/2").unwrap();
    let peer_path = dir.path().join("phone.sock");
    let phone = UnixDatagram::bind(&peer_path).unwrap();
    phone
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();

    // Nothing sent yet: silence, and mgw's frame has nowhere to go.
    let mut codes = [0u8; 160];
    let ch = ports.channel_mut(id).unwrap();
    assert_eq!(ch.read_coded(&mut codes).unwrap(), 0);
    assert!(codes.iter().all(|&c| c == 0xD5));
    ch.write_coded(&[0x55; 160]).unwrap();
    assert_eq!(ch.stats().dropped_writes, 1);

    // The phone sends one A-law frame; a wrong-sized datagram before it is dropped.
    let tone = sine(160, 1000.0, 8000.0, 0);
    let mut alaw = [0u8; 160];
    Law::Alaw.encode(&tone, &mut alaw);
    phone.send_to(&[1, 2, 3], &sock_path).unwrap();
    phone.send_to(&alaw, &sock_path).unwrap();
    let mut pcm = vec![0i16; 160];
    assert_eq!(ch.read_frame(&mut pcm).unwrap(), 160);
    assert_eq!(pcm, quantised(Law::Alaw, &tone));
    assert_eq!(ch.stats().bad_frames, 1);
    if let AnyChannel::Tap(t) = ch {
        assert_eq!(t.peer(), Some(peer_path.as_path()));
    } else {
        panic!("expected a tap channel");
    }

    // mgw's frames now reach the phone, one datagram per frame.
    let out = sine(160, 300.0, 4000.0, 0);
    ch.write_frame(&out).unwrap();
    ch.write_coded(&[0x2A; 160]).unwrap();
    let mut buf = [0u8; 400];
    let n = phone.recv(&mut buf).unwrap();
    assert_eq!(n, 160);
    let mut expect = [0u8; 160];
    Law::Alaw.encode(&out, &mut expect);
    assert_eq!(&buf[..n], &expect[..]);
    assert_eq!(phone.recv(&mut buf).unwrap(), 160);
    assert!(buf[..160].iter().all(|&b| b == 0x2A));

    // Phone hangs up (socket closed and removed): frames are dropped, not errors.
    drop(phone);
    std::fs::remove_file(&peer_path).unwrap();
    ch.write_coded(&[0; 160]).unwrap();
    ch.write_coded(&[0; 160]).unwrap();
    assert_eq!(ch.stats().frames_written, 2);
    assert_eq!(ch.stats().dropped_writes, 3);
    assert!(matches!(ch, AnyChannel::Tap(t) if t.peer().is_none()));

    // Dropping the ports removes the socket files.
    drop(ports);
    assert!(!sock_path.exists());
}

#[test]
fn dahdi_span_over_the_fake_device() {
    let cfg: TdmConfig = toml::from_str(
        r#"
        [[span]]
        kind = "dahdi"
        name = "t1-1"
        law = "ulaw"
        channels = "1-4"
        dahdi_first_channel = 25
        "#,
    )
    .unwrap();
    assert_eq!(cfg.spans[0].kind, SpanKind::Dahdi);
    let mut ports = TdmPorts::build_with(&cfg, &mut || {
        let mut f = FakeDahdi::with_channels(48);
        f.rx.push_back(FakeRead::Data(vec![0x7F; 160]));
        Box::new(f)
    })
    .unwrap();
    let id = ports.resolve("ds/t1-1/4").unwrap();
    let ch = ports.channel_mut(id).unwrap();
    let AnyChannel::Dahdi(d) = ch else {
        panic!("expected dahdi")
    };
    assert_eq!(d.channo(), 28);
    let mut codes = [0u8; 160];
    assert_eq!(d.read_coded(&mut codes).unwrap(), 160);
    assert!(codes.iter().all(|&c| c == 0x7F));
    assert_eq!(d.read_coded(&mut codes).unwrap(), 0);

    // Channel numbers past what the driver has → NoSuchChannel.
    let r = TdmPorts::build_with(&cfg, &mut || Box::new(FakeDahdi::with_channels(26)));
    assert!(matches!(r, Err(SetupError::NoSuchChannel(27))));
    // Where the real device is absent (no DAHDI driver): a clean I/O error, no panic.
    if std::path::Path::new(mgw_tdm::DAHDI_CHANNEL_DEVICE).exists() {
        return;
    }
    let r = TdmPorts::build(&cfg);
    assert!(
        matches!(r, Err(SetupError::Io { what: "open", .. })),
        "{r:?}"
    );
}
