//! Media through the default back-to-back E1 spans of the real binary: transcoding,
//! DTMF signals and detection, RFC 4733 to in-band.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use mgcp::{ParamName, Verb};
use mgw_media::codec::{Codec, CodecConfig, Decoder, Encoder};
use support::*;

fn crcx(gw: &Gateway, ep: &str, call: &str, sdp: &str) -> (String, u16) {
    let r = gw.cmd(&format!(
        "CRCX {} {ep}@mgw MGCP 1.0\r\nC: {call}\r\nM: sendrecv\r\n\r\n{sdp}",
        tid()
    ));
    assert_eq!(r.code.0, 200, "{r:?}");
    let id = r.params.get(&ParamName::ConnectionId).unwrap().to_string();
    (id, sdp_port(r.sdp.as_deref().unwrap()))
}

fn sdp_for(port: u16, pt: u8, rtpmap: Option<&str>) -> String {
    let mut s = format!("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio {port} RTP/AVP {pt}\r\n");
    if let Some(m) = rtpmap {
        s.push_str(&format!("a=rtpmap:{pt} {m}\r\n"));
    }
    s
}

/// Frequency (by zero crossings, ±10 Hz over 100 ms) and SNR against the best-fitting
/// sine at the expected frequency `fit` (amplitude and phase free).
fn analyse(x: &[i16], rate: f64, fit: f64) -> (f64, f64) {
    let crossings = x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let freq = crossings as f64 / 2.0 / (x.len() as f64 / rate);
    // Least-squares fit of a·sin + b·cos at `fit`.
    let w = 2.0 * std::f64::consts::PI * fit / rate;
    let (mut ss, mut cc, mut sc, mut xs, mut xc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (n, v) in x.iter().enumerate() {
        let (s, c) = (w * n as f64).sin_cos();
        let v = f64::from(*v);
        ss += s * s;
        cc += c * c;
        sc += s * c;
        xs += v * s;
        xc += v * c;
    }
    let det = ss * cc - sc * sc;
    let a = (xs * cc - xc * sc) / det;
    let b = (xc * ss - xs * sc) / det;
    let (mut sig, mut err) = (0.0, 0.0);
    for (n, v) in x.iter().enumerate() {
        let (s, c) = (w * n as f64).sin_cos();
        let fit = a * s + b * c;
        sig += fit * fit;
        err += (f64::from(*v) - fit).powi(2);
    }
    (freq, 10.0 * (sig / err.max(1e-9)).log10())
}

fn tone(freq: f64, start: usize, n: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// Receives RTP on `sock` until `until`, decoding payloads of type `pt` with `dec`.
fn collect(sock: &UdpSocket, pt: u8, dec: &mut Codec, until: Instant) -> Vec<i16> {
    let mut pcm = Vec::new();
    let mut buf = [0u8; 2048];
    let mut out = vec![0i16; 2880];
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    while Instant::now() < until {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n > 12 && buf[1] & 0x7f == pt {
                if let Ok(k) = dec.decoder.decode(&buf[12..n], &mut out) {
                    pcm.extend_from_slice(&out[..k]);
                }
            }
        }
    }
    pcm
}

#[test]
fn pcmu_into_span_1_comes_out_of_span_2_as_pcma_and_opus() {
    let gw = Gateway::start_ready(&[]);
    let a = rtp_peer();
    let b = rtp_peer();
    let c = rtp_peer();
    let port = |s: &UdpSocket| s.local_addr().unwrap().port();
    let (_, pa) = crcx(&gw, "ds/e1-1/5", "aa", &sdp_for(port(&a), 0, None));
    crcx(&gw, "ds/e1-2/5", "bb", &sdp_for(port(&b), 8, None));
    crcx(
        &gw,
        "ds/e1-2/5",
        "bb",
        &sdp_for(port(&c), 96, Some("opus/48000/2")),
    );
    let cfg = CodecConfig::default();
    let mut enc = Codec::from_rtpmap("PCMU/8000", &cfg).unwrap();
    let mut dec_b = Codec::from_rtpmap("PCMA/8000", &cfg).unwrap();
    let mut dec_c = Codec::from_rtpmap("opus/48000/2", &cfg).unwrap();
    let sender = {
        let a = a.try_clone().unwrap();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut payload = [0u8; 160];
            for i in 0..100u32 {
                let pcm = tone(1004.0, i as usize * 160, 160);
                let n = enc.encoder.encode(&pcm, &mut payload).unwrap();
                let pkt = rtp(0, i as u16, i * 160, 0xabc, &payload[..n]);
                a.send_to(&pkt, ("127.0.0.1", pa)).unwrap();
                let next = t0 + Duration::from_millis(20 * (u64::from(i) + 1));
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    let until = Instant::now() + Duration::from_millis(2300);
    let c2 = c.try_clone().unwrap();
    let opus = std::thread::spawn(move || collect(&c2, 96, &mut dec_c, until));
    let pcma = collect(&b, 8, &mut dec_b, until);
    let opus = opus.join().unwrap();
    sender.join().unwrap();
    // The gateway sends its own clocked stream: silence before the tone arrives and after
    // it ends, and the jitter buffer may drop or insert a frame while it settles (a phase
    // jump). So: 100 ms windows, only those carrying the tone, median of the figures.
    for (name, pcm, floor) in [("PCMA", &pcma, 25.0), ("Opus", &opus, 10.0)] {
        let mut freqs = Vec::new();
        let mut snrs = Vec::new();
        for w in pcm.chunks_exact(800) {
            let energy: f64 = w.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / 800.0;
            if energy.sqrt() < 1000.0 {
                continue; // silence around the tone
            }
            let (f, snr) = analyse(w, 8000.0, 1004.0);
            freqs.push(f);
            snrs.push(snr);
        }
        assert!(
            snrs.len() >= 15,
            "{name}: only {} windows carry the tone",
            snrs.len()
        );
        snrs.sort_by(|a, b| a.total_cmp(b));
        freqs.sort_by(|a, b| a.total_cmp(b));
        let (f, snr) = (freqs[freqs.len() / 2], snrs[snrs.len() / 2]);
        eprintln!(
            "{name}: {f:.1} Hz, median SNR {snr:.1} dB over {} tone windows",
            snrs.len()
        );
        assert!((f - 1004.0).abs() < 15.0, "{name}: {f} Hz");
        assert!(snr > floor, "{name}: SNR {snr} dB");
    }
}

fn expect_digits(gw: &Gateway, want: &str, limit: Duration) -> String {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let Some((n, from)) = gw.ca.recv_command(limit.saturating_sub(t0.elapsed())) else {
            break;
        };
        gw.ca.reply(from, &format!("200 {} OK\r\n", n.tid));
        if n.verb == Verb::Ntfy {
            let o = n
                .params
                .get(&ParamName::ObservedEvents)
                .unwrap_or("")
                .to_ascii_uppercase();
            assert!(o.contains(want), "NTFY {o} lacks {want}");
            return o;
        }
    }
    panic!("no NTFY with {want}");
}

#[test]
fn dtmf_signal_on_span_1_is_notified_on_span_2() {
    let gw = Gateway::start_ready(&[]);
    // A call on both channels (the detector runs for channels in use).
    let a = rtp_peer();
    let b = rtp_peer();
    crcx(
        &gw,
        "ds/e1-1/6",
        "1",
        &sdp_for(a.local_addr().unwrap().port(), 8, None),
    );
    crcx(
        &gw,
        "ds/e1-2/6",
        "2",
        &sdp_for(b.local_addr().unwrap().port(), 8, None),
    );
    let r = gw.cmd(&format!(
        "RQNT {} ds/e1-2/6@mgw MGCP 1.0\r\nX: 61\r\nR: D/[0-9#*](N)\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 200);
    let r = gw.cmd(&format!(
        "RQNT {} ds/e1-1/6@mgw MGCP 1.0\r\nX: 62\r\nS: D/5\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 200, "{r:?}");
    expect_digits(&gw, "D/5", Duration::from_secs(3));
}

#[test]
fn digit_map_collects_a_number_played_on_the_other_span() {
    let gw = Gateway::start_ready(&[]);
    let a = rtp_peer();
    let b = rtp_peer();
    crcx(
        &gw,
        "ds/e1-1/7",
        "1",
        &sdp_for(a.local_addr().unwrap().port(), 8, None),
    );
    crcx(
        &gw,
        "ds/e1-2/7",
        "2",
        &sdp_for(b.local_addr().unwrap().port(), 8, None),
    );
    let r = gw.cmd(&format!(
        "RQNT {} ds/e1-2/7@mgw MGCP 1.0\r\nX: 71\r\nD: (911|1xxx)\r\nR: D/[0-9#*T](D)\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 200);
    let r = gw.cmd(&format!(
        "RQNT {} ds/e1-1/7@mgw MGCP 1.0\r\nX: 72\r\nS: D/1, D/2, D/3, D/4\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 200);
    let o = expect_digits(&gw, "D/4", Duration::from_secs(4));
    assert_eq!(o.replace(' ', ""), "D/1,D/2,D/3,D/4");
}

#[test]
fn rfc4733_in_becomes_inband_and_is_detected_on_the_far_span() {
    let gw = Gateway::start_ready(&[]);
    let a = rtp_peer();
    let b = rtp_peer();
    let sdp_a = format!(
        "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio {} RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        a.local_addr().unwrap().port()
    );
    let (_, pa) = crcx(&gw, "ds/e1-1/8", "1", &sdp_a);
    crcx(
        &gw,
        "ds/e1-2/8",
        "2",
        &sdp_for(b.local_addr().unwrap().port(), 8, None),
    );
    let r = gw.cmd(&format!(
        "RQNT {} ds/e1-2/8@mgw MGCP 1.0\r\nX: 81\r\nR: D/[0-9#*](N)\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 200);
    // Some audio first (A-law silence), then digit 7 as telephone-event for 160 ms.
    let t0 = Instant::now();
    let mut seq = 0u16;
    for i in 0..10u32 {
        a.send_to(&rtp(8, seq, i * 160, 9, &[0xd5; 160]), ("127.0.0.1", pa))
            .unwrap();
        seq += 1;
        std::thread::sleep(
            (t0 + Duration::from_millis(20 * u64::from(i + 1)))
                .saturating_duration_since(Instant::now()),
        );
    }
    let ts = 1600u32;
    for k in 1..=8u16 {
        let end = k == 8;
        let dur = k * 160;
        let payload = [
            7u8,
            if end { 0x80 | 10 } else { 10 },
            (dur >> 8) as u8,
            dur as u8,
        ];
        let mut pkt = rtp(101, seq, ts, 9, &payload);
        if k == 1 {
            pkt[1] |= 0x80;
        }
        seq += 1;
        let copies = if end { 3 } else { 1 };
        for _ in 0..copies {
            a.send_to(&pkt, ("127.0.0.1", pa)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    expect_digits(&gw, "D/7", Duration::from_secs(3));
}

#[test]
fn continuity_tone_and_announcement_through_the_spans() {
    let gw = Gateway::start_ready(&[]);
    // T/co1 played on span 1 channel 9 is detected on span 2 channel 9.
    let r = gw.cmd(&format!(
        "RQNT {} ds/e1-2/9@mgw MGCP 1.0\r\nX: 91\r\nR: T/co1\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 200, "{r:?}");
    let r = gw.cmd(&format!(
        "RQNT {} ds/e1-1/9@mgw MGCP 1.0\r\nX: 92\r\nS: T/co1\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 200, "{r:?}");
    expect_digits(&gw, "T/CO1", Duration::from_secs(3));
    // A/ann plays a WAV file and reports A/oc at its end (0.3 s of a 440 Hz tone).
    let path = std::env::temp_dir().join(format!("mgw-ann-test-{}.wav", std::process::id()));
    let samples: Vec<i16> = tone(440.0, 0, 2400);
    let mut wav = Vec::new();
    let data_len = (samples.len() * 2) as u32;
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in &samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(&path, &wav).unwrap();
    let r = gw.cmd(&format!(
        "RQNT {} ds/e1-1/10@mgw MGCP 1.0\r\nX: 93\r\nR: A/oc\r\nS: A/ann(file://{})\r\n",
        tid(),
        path.display()
    ));
    assert_eq!(r.code.0, 200, "{r:?}");
    let t0 = Instant::now();
    expect_digits(&gw, "A/OC", Duration::from_secs(3));
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "A/oc came before the announcement could play"
    );
    // A missing file is refused up front.
    let r = gw.cmd(&format!(
        "RQNT {} ds/e1-1/10@mgw MGCP 1.0\r\nX: 94\r\nS: A/ann(file:///nonexistent.wav)\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 514);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn analog_line_over_a_tap_socket_rings_and_reports_off_hook() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("mgw-tap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = CallAgent::bind("127.0.0.1:0");
    let cfg = dir.join("mgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "call_agents = [\"{}\"]\n[tdm]\n[[tdm.span]]\nkind = \"virtual\"\nname = \"line\"\nlaw = \"ulaw\"\nchannels = \"1-2\"\ntap = true\ntap_dir = \"{}\"\n",
            ca.addr(),
            dir.display()
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let gw = Gateway::start_with(ca, &["--config", &cfg_s]);
    let (rsip, from) = gw.ca.recv_command(Duration::from_secs(5)).unwrap();
    gw.ca.reply(from, &format!("200 {} OK\r\n", rsip.tid));
    // The telephone: a datagram socket of its own talking to the line's tap socket.
    let phone = UnixDatagram::bind(dir.join("phone.sock")).unwrap();
    phone
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let tap = dir.join("line-1.sock");
    let t0 = Instant::now();
    while !tap.exists() && t0.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    phone.send_to(b"HOOK ON", &tap).unwrap(); // introduces the phone as the peer
    let r = gw.cmd(&format!(
        "RQNT {} ds/line/1@mgw MGCP 1.0\r\nX: 11\r\nR: L/hd(N)\r\nS: L/rg\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 200, "{r:?}");
    // The phone hears the ringing command (audio frames are 160 bytes; control is short).
    let mut buf = [0u8; 512];
    let mut rang = false;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) && !rang {
        if let Ok(n) = phone.recv(&mut buf) {
            rang = &buf[..n] == b"RING ON";
        }
    }
    assert!(rang, "the phone was not rung");
    phone.send_to(b"HOOK OFF", &tap).unwrap();
    let o = expect_digits(&gw, "L/HD", Duration::from_secs(3));
    assert!(o.contains("L/HD"));
    // Ring trip: answering stops the ringing.
    let mut stopped = false;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) && !stopped {
        if let Ok(n) = phone.recv(&mut buf) {
            stopped = &buf[..n] == b"RING OFF";
        }
    }
    assert!(stopped, "ringing did not stop on answer");
    let es = gw.cmd(&format!(
        "AUEP {} ds/line/1@mgw MGCP 1.0\r\nF: ES\r\n",
        tid()
    ));
    assert_eq!(es.params.get(&ParamName::EventStates), Some("L/hd"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jitter_buffer_and_concealment_show_in_metrics_and_api() {
    let gw = Gateway::start_ready(&[]);
    let http = gw.http.expect("admin HTTP");
    let a = rtp_peer();
    let (_, pa) = crcx(
        &gw,
        "ds/e1-1/12",
        "c12",
        &sdp_for(a.local_addr().unwrap().port(), 8, None),
    );
    // 1.2 s of A-law with every fifth packet missing.
    let t0 = Instant::now();
    for i in 0..60u32 {
        if i % 5 != 4 {
            a.send_to(
                &rtp(8, i as u16, i * 160, 77, &[0x55; 160]),
                ("127.0.0.1", pa),
            )
            .unwrap();
        }
        std::thread::sleep(
            (t0 + Duration::from_millis(20 * u64::from(i + 1)))
                .saturating_duration_since(Instant::now()),
        );
    }
    std::thread::sleep(Duration::from_millis(400));
    let (_, metrics) = http_get(http, "/metrics");
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(value("mgw_plc_frames ") >= 5, "{metrics}");
    assert!(value("mgw_jitter_buffer_lost_frames ") >= 5, "{metrics}");
    assert!(value("mgw_jitter_buffer_delay_max_microseconds ") > 0);
    let (_, conns) = http_get(http, "/api/connections");
    let conns: serde_json::Value = serde_json::from_str(&conns).unwrap();
    let c = &conns[0]["rtp"];
    assert!(c["concealed"].as_u64().unwrap() >= 5, "{c}");
    assert!(c["jitter_buffer_ms"].as_u64().unwrap() > 0, "{c}");
}
