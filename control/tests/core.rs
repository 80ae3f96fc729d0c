//! The gateway core against a fake media plane: resource failures, atomicity, and the
//! notification state machine, without sockets for MGCP.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use mgcp::{parse_message, Command, Message, ParamName, Response};
use mgw_control::{default_endpoints, Core, CoreConfig, MediaPlane};
use mgw_dataplane::{ConnKey, DataplaneCmd, DataplaneEvent, RtpPorts, SourceCheck};

/// A media plane with a fixed number of ports whose queue can be made to refuse.
#[derive(Default)]
struct Fake {
    ports_left: usize,
    in_use: Vec<u16>,
    queue_full: bool,
    sent: Vec<String>,
    adds: Vec<ConnKey>,
}

impl MediaPlane for Fake {
    fn allocate(&mut self) -> io::Result<RtpPorts> {
        if self.ports_left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "RTP port range exhausted",
            ));
        }
        self.ports_left -= 1;
        let rtp = UdpSocket::bind("127.0.0.1:0")?;
        let rtcp = UdpSocket::bind("127.0.0.1:0")?;
        let port = rtp.local_addr()?.port();
        self.in_use.push(port);
        Ok(RtpPorts { rtp, rtcp, port })
    }

    fn release(&mut self, port: u16) {
        self.in_use.retain(|p| *p != port);
        self.ports_left += 1;
    }

    fn send(&mut self, cmd: DataplaneCmd) -> Result<(), DataplaneCmd> {
        if self.queue_full {
            return Err(cmd);
        }
        match &cmd {
            DataplaneCmd::Add(spec) => {
                self.adds.push(spec.key);
                self.sent.push(format!("add {}", spec.key.0));
            }
            DataplaneCmd::Modify { key, .. } => self.sent.push(format!("modify {}", key.0)),
            DataplaneCmd::Remove { key, .. } => self.sent.push(format!("remove {}", key.0)),
            DataplaneCmd::Signal {
                channel, signal, ..
            } => self.sent.push(format!("signal {channel} {signal:?}")),
        }
        Ok(())
    }
}

fn core(ports: usize) -> Core<Fake> {
    Core::new(
        CoreConfig {
            domain: "gw".into(),
            alias_domains: vec![],
            rtp_addr: "127.0.0.1".parse().unwrap(),
            default_ptime: 20,
            source_check: SourceCheck::Strict,
            seed: 7,
            digit_timer_short: std::time::Duration::from_millis(40),
            digit_timer_long: std::time::Duration::from_millis(160),
            announcement_dir: std::env::temp_dir(),
        },
        default_endpoints(),
        Fake {
            ports_left: ports,
            ..Default::default()
        },
    )
}

fn cmd(text: &str) -> Command {
    match parse_message(&text.replace('\n', "\r\n")) {
        Ok(Message::Command(c)) => c,
        other => panic!("not a command: {other:?}"),
    }
}

const CA: &str = "127.0.0.1:2727";

fn exec(core: &mut Core<Fake>, text: &str) -> Response {
    core.execute(CA.parse::<SocketAddr>().unwrap(), &cmd(text))
}

#[test]
fn port_exhaustion_is_502_and_allocates_nothing() {
    let mut c = core(1);
    let ok = exec(
        &mut c,
        "CRCX 1 rtpbridge/1@gw MGCP 1.0\nC: 1\nM: recvonly\n",
    );
    assert_eq!(ok.code.0, 200);
    let r = exec(
        &mut c,
        "CRCX 2 rtpbridge/2@gw MGCP 1.0\nC: 1\nM: recvonly\n",
    );
    assert_eq!(r.code.0, 502, "{r:?}");
    assert_eq!(c.connection_count(), 1);
    assert_eq!(c.media_mut().adds.len(), 1);
}

#[test]
fn full_dataplane_queue_is_400_and_returns_the_port() {
    let mut c = core(4);
    c.media_mut().queue_full = true;
    let r = exec(
        &mut c,
        "CRCX 1 rtpbridge/1@gw MGCP 1.0\nC: 1\nM: recvonly\n",
    );
    assert_eq!(r.code.0, 400, "{r:?}");
    assert_eq!(c.connection_count(), 0);
    assert_eq!(c.media_mut().ports_left, 4, "port given back");
    assert!(c.media_mut().in_use.is_empty());
    // Once the queue drains the same command works.
    c.media_mut().queue_full = false;
    assert_eq!(
        exec(
            &mut c,
            "CRCX 2 rtpbridge/1@gw MGCP 1.0\nC: 1\nM: recvonly\n"
        )
        .code
        .0,
        200
    );
}

#[test]
fn ports_return_only_after_the_dataplane_closed_the_sockets() {
    let mut c = core(2);
    let r = exec(
        &mut c,
        "CRCX 1 rtpbridge/1@gw MGCP 1.0\nC: 1\nM: recvonly\n",
    );
    let i = r.params.get(&ParamName::ConnectionId).unwrap().to_string();
    let key = *c.media_mut().adds.last().unwrap();
    let d = exec(&mut c, &format!("DLCX 2 rtpbridge/1@gw MGCP 1.0\nI: {i}\n"));
    assert_eq!(d.code.0, 250);
    assert_eq!(c.connection_count(), 0);
    assert_eq!(c.media_mut().ports_left, 1, "still held until Removed");
    assert_eq!(c.removals_pending(), 1);
    c.on_dataplane_event(DataplaneEvent::Removed { key });
    assert_eq!(c.media_mut().ports_left, 2);
    assert_eq!(c.removals_pending(), 0);
}

#[test]
fn remove_that_finds_a_full_queue_is_retried() {
    let mut c = core(2);
    exec(
        &mut c,
        "CRCX 1 rtpbridge/1@gw MGCP 1.0\nC: 1\nM: recvonly\n",
    );
    c.media_mut().queue_full = true;
    assert_eq!(exec(&mut c, "DLCX 2 rtpbridge/1@gw MGCP 1.0\n").code.0, 250);
    assert!(!c.media_mut().sent.iter().any(|s| s.starts_with("remove")));
    c.media_mut().queue_full = false;
    c.tick();
    assert!(c.media_mut().sent.iter().any(|s| s.starts_with("remove")));
}

#[test]
fn failed_mdcx_changes_nothing() {
    let mut c = core(2);
    let r = exec(
        &mut c,
        "CRCX 1 rtpbridge/1@gw MGCP 1.0\nC: 1\nM: recvonly\n",
    );
    let i = r.params.get(&ParamName::ConnectionId).unwrap().to_string();
    let sent_before = c.media_mut().sent.len();
    // Valid mode but a bad SDP: nothing may be applied, not even the mode.
    let bad = exec(
        &mut c,
        &format!("MDCX 2 rtpbridge/1@gw MGCP 1.0\nC: 1\nI: {i}\nM: sendrecv\n\nv=0\nc=IN IP4 127.0.0.1\nm=audio x RTP/AVP 0\n"),
    );
    assert!(bad.code.is_error(), "{bad:?}");
    assert_eq!(
        c.media_mut().sent.len(),
        sent_before,
        "no dataplane command"
    );
    let au = exec(
        &mut c,
        &format!("AUCX 3 rtpbridge/1@gw MGCP 1.0\nI: {i}\nF: M\n"),
    );
    assert_eq!(au.params.get(&ParamName::ConnectionMode), Some("recvonly"));
}

#[test]
fn rtp_timeout_notifies_once_then_quarantines_until_next_request() {
    let mut c = core(2);
    let r = exec(
        &mut c,
        "CRCX 1 rtpbridge/1@gw MGCP 1.0\nC: 1\nM: recvonly\nX: 10\nR: R/rto(500)\n",
    );
    assert_eq!(r.code.0, 200);
    let key = *c.media_mut().adds.last().unwrap();
    c.on_dataplane_event(DataplaneEvent::RtpTimeout { key });
    let n = c.poll_outgoing().expect("NTFY");
    assert_eq!(n.command.verb, mgcp::Verb::Ntfy);
    assert_eq!(
        n.command.params.get(&ParamName::RequestIdentifier),
        Some("10")
    );
    assert_eq!(
        n.dest,
        Some(CA.parse().unwrap()),
        "defaults to the requesting call agent"
    );
    // Step mode: a second timeout waits in quarantine.
    c.on_dataplane_event(DataplaneEvent::RtpTimeout { key });
    assert!(c.poll_outgoing().is_none());
    // A new request processes the quarantined event (Q: process is the default).
    assert_eq!(
        exec(
            &mut c,
            "RQNT 2 rtpbridge/1@gw MGCP 1.0\nX: 11\nR: R/rto(500)\n"
        )
        .code
        .0,
        200
    );
    let n = c.poll_outgoing().expect("NTFY for the quarantined event");
    assert_eq!(
        n.command.params.get(&ParamName::RequestIdentifier),
        Some("11")
    );
    // Q: discard drops quarantined events.
    c.on_dataplane_event(DataplaneEvent::RtpTimeout { key });
    assert!(c.poll_outgoing().is_none());
    assert_eq!(
        exec(
            &mut c,
            "RQNT 3 rtpbridge/1@gw MGCP 1.0\nX: 12\nQ: discard\nR: R/rto(500)\n"
        )
        .code
        .0,
        200
    );
    assert!(c.poll_outgoing().is_none());
}

#[test]
fn loop_mode_notifies_every_event_and_ignore_action_suppresses() {
    let mut c = core(2);
    exec(
        &mut c,
        "CRCX 1 rtpbridge/1@gw MGCP 1.0\nC: 1\nM: recvonly\n",
    );
    let key = *c.media_mut().adds.last().unwrap();
    assert_eq!(
        exec(
            &mut c,
            "RQNT 2 rtpbridge/1@gw MGCP 1.0\nX: 1\nQ: process,loop\nR: R/ma, R/rto(I)(500)\n"
        )
        .code
        .0,
        200
    );
    c.on_dataplane_event(DataplaneEvent::FirstPacket { key });
    c.on_dataplane_event(DataplaneEvent::RtpTimeout { key });
    c.on_dataplane_event(DataplaneEvent::FirstPacket { key });
    let mut n = 0;
    while let Some(o) = c.poll_outgoing() {
        let obs = o
            .command
            .params
            .get(&ParamName::ObservedEvents)
            .unwrap()
            .to_ascii_lowercase();
        assert!(obs.contains("r/ma"), "{obs}");
        n += 1;
    }
    assert_eq!(n, 2, "two media starts notified, the ignored timeout not");
}

#[test]
fn notified_entity_from_n_parameter() {
    let mut c = core(2);
    let r = exec(
        &mut c,
        "RQNT 1 rtpbridge/1@gw MGCP 1.0\nX: 1\nN: ca@[127.0.0.5]:2799\nR: R/ma\n",
    );
    assert_eq!(r.code.0, 200);
    exec(
        &mut c,
        "CRCX 2 rtpbridge/1@gw MGCP 1.0\nC: 1\nM: recvonly\n",
    );
    let key = *c.media_mut().adds.last().unwrap();
    c.on_dataplane_event(DataplaneEvent::FirstPacket { key });
    let n = c.poll_outgoing().unwrap();
    assert_eq!(n.dest, Some("127.0.0.5:2799".parse().unwrap()));
    assert_eq!(
        n.command.params.get(&ParamName::NotifiedEntity),
        Some("ca@[127.0.0.5]:2799")
    );
}

#[test]
fn wildcard_dlcx_clears_every_endpoint() {
    let mut c = core(8);
    for ep in ["rtpbridge/1", "rtpbridge/2", "ds/e1-1/1"] {
        assert_eq!(
            exec(
                &mut c,
                &format!("CRCX 1 {ep}@gw MGCP 1.0\nC: 9\nM: recvonly\n")
            )
            .code
            .0,
            200
        );
    }
    assert_eq!(exec(&mut c, "DLCX 5 rtpbridge/*@gw MGCP 1.0\n").code.0, 250);
    assert_eq!(c.connection_count(), 1);
    assert_eq!(exec(&mut c, "DLCX 6 *@gw MGCP 1.0\nC: 9\n").code.0, 250);
    assert_eq!(c.connection_count(), 0);
}

fn digit(c: &mut Core<Fake>, ch: &str, d: char) {
    c.on_dataplane_event(DataplaneEvent::Digit {
        channel: ch.into(),
        digit: d,
        origin: mgw_dataplane::DigitOrigin::Tdm,
    });
}

#[test]
fn digits_accumulate_by_digit_map_and_notify_once() {
    let mut c = core(2);
    let r = exec(
        &mut c,
        "RQNT 1 ds/e1-2/3@gw MGCP 1.0\nX: 77\nD: (1xx|911|0T)\nR: D/[0-9](D)\n",
    );
    assert_eq!(r.code.0, 200, "{r:?}");
    digit(&mut c, "ds/e1-2/3", '9');
    digit(&mut c, "ds/e1-2/3", '1');
    assert!(c.poll_outgoing().is_none(), "9 1 is only a partial match");
    digit(&mut c, "ds/e1-2/3", '1');
    let n = c.poll_outgoing().expect("911 completes the map");
    assert_eq!(
        n.command.params.get(&ParamName::RequestIdentifier),
        Some("77")
    );
    let o = n
        .command
        .params
        .get(&ParamName::ObservedEvents)
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(o.replace(' ', ""), "d/9,d/1,d/1");
    // Digits on another channel do not count.
    digit(&mut c, "ds/e1-1/3", '5');
    assert!(c.poll_outgoing().is_none());
}

#[test]
fn digit_map_timer_completes_a_match() {
    let mut c = core(2);
    exec(
        &mut c,
        "RQNT 1 ds/e1-2/4@gw MGCP 1.0\nX: 5\nD: (0T|00T)\nR: D/[0-9T](D)\n",
    );
    let t0 = std::time::Instant::now();
    digit(&mut c, "ds/e1-2/4", '0');
    c.tick_at(t0);
    assert!(c.poll_outgoing().is_none());
    // The short timer (40 ms here) fires: "0T" matches.
    c.tick_at(t0 + std::time::Duration::from_millis(50));
    let n = c.poll_outgoing().expect("timer completes 0T");
    assert!(n
        .command
        .params
        .get(&ParamName::ObservedEvents)
        .unwrap()
        .to_ascii_lowercase()
        .contains("d/0"));
}

#[test]
fn signals_go_to_the_channel_and_unknown_ones_are_refused() {
    let mut c = core(2);
    assert_eq!(
        exec(&mut c, "RQNT 1 ds/e1-1/4@gw MGCP 1.0\nX: 1\nS: D/5, D/#\n")
            .code
            .0,
        200
    );
    let sent = &c.media_mut().sent;
    assert!(
        sent.iter().any(|s| s == "signal ds/e1-1/4 Stop"),
        "{sent:?}"
    );
    assert!(
        sent.iter().any(|s| s == "signal ds/e1-1/4 Digits(\"5#\")"),
        "{sent:?}"
    );
    assert_eq!(
        exec(&mut c, "RQNT 2 ds/e1-1/4@gw MGCP 1.0\nX: 2\nS: G/rt\n")
            .code
            .0,
        200
    );
    assert!(c
        .media_mut()
        .sent
        .iter()
        .any(|s| s.contains("Tone(Ringback)")));
    // Known but not generated here: 513; unknown: 522; IP endpoints generate nothing.
    assert_eq!(
        exec(&mut c, "RQNT 3 ds/e1-1/4@gw MGCP 1.0\nX: 3\nS: T/bz\n")
            .code
            .0,
        513
    );
    assert_eq!(
        exec(&mut c, "RQNT 4 ds/e1-1/4@gw MGCP 1.0\nX: 4\nS: G/zz\n")
            .code
            .0,
        522
    );
    assert_eq!(
        exec(&mut c, "RQNT 5 rtpbridge/1@gw MGCP 1.0\nX: 5\nS: G/rt\n")
            .code
            .0,
        513
    );
    // A finished timed signal is G/oc when requested.
    assert_eq!(
        exec(
            &mut c,
            "RQNT 6 ds/e1-1/4@gw MGCP 1.0\nX: 6\nR: G/oc\nS: D/1\n"
        )
        .code
        .0,
        200
    );
    c.on_dataplane_event(DataplaneEvent::SignalDone {
        channel: "ds/e1-1/4".into(),
    });
    let n = c.poll_outgoing().expect("G/oc");
    assert!(n
        .command
        .params
        .get(&ParamName::ObservedEvents)
        .unwrap()
        .to_ascii_lowercase()
        .contains("g/oc"));
}

#[test]
fn tdm_connections_name_their_channel_and_transcode() {
    let mut c = core(4);
    // PCMU on an A-law E1 channel is fine now: the engine transcodes.
    let r = exec(
        &mut c,
        "CRCX 1 ds/e1-1/9@gw MGCP 1.0\nC: 1\nM: sendrecv\n\nv=0\nc=IN IP4 127.0.0.1\nm=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n",
    );
    assert_eq!(r.code.0, 200, "{r:?}");
    assert!(r.sdp.as_deref().unwrap().contains("RTP/AVP 0 101"));
    // Without a remote description the channel's own law is offered first.
    let r = exec(&mut c, "CRCX 2 ds/e1-1/10@gw MGCP 1.0\nC: 1\nM: recvonly\n");
    assert!(
        r.sdp.as_deref().unwrap().contains("RTP/AVP 8 0 "),
        "{:?}",
        r.sdp
    );
    // A codec the engine cannot carry is 534.
    let r = exec(
        &mut c,
        "CRCX 3 ds/e1-1/11@gw MGCP 1.0\nC: 1\nM: recvonly\nL: a:G729\n",
    );
    assert_eq!(r.code.0, 534);
}

#[test]
fn continuity_tones_and_announcements() {
    let mut c = core(2);
    // T/co1 toward the line, and its detection on a channel.
    assert_eq!(
        exec(&mut c, "RQNT 1 ds/e1-1/2@gw MGCP 1.0\nX: 1\nS: T/co1\n")
            .code
            .0,
        200
    );
    assert!(c
        .media_mut()
        .sent
        .iter()
        .any(|s| s.contains("Tone(Continuity)")));
    assert_eq!(
        exec(&mut c, "RQNT 2 ds/e1-2/2@gw MGCP 1.0\nX: 2\nR: T/co1\n")
            .code
            .0,
        200
    );
    c.on_dataplane_event(DataplaneEvent::ToneDetected {
        channel: "ds/e1-2/2".into(),
        tone: mgw_dataplane::ToneKind::Continuity,
    });
    let n = c.poll_outgoing().expect("T/co1 notified");
    assert!(n
        .command
        .params
        .get(&ParamName::ObservedEvents)
        .unwrap()
        .to_ascii_lowercase()
        .contains("t/co1"));
    // A/ann: a WAV file plays; its end is A/oc; a missing file is 514.
    let dir = std::env::temp_dir();
    let name = format!("mgw-core-ann-{}", std::process::id());
    let path = dir.join(format!("{name}.wav"));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..800 {
        w.write_sample(((i % 16) * 1000) as i16).unwrap();
    }
    w.finalize().unwrap();
    let r = exec(
        &mut c,
        &format!("RQNT 3 ds/e1-1/3@gw MGCP 1.0\nX: 3\nR: A/oc\nS: A/ann({name})\n"),
    );
    assert_eq!(r.code.0, 200, "{r:?}");
    assert!(c
        .media_mut()
        .sent
        .iter()
        .any(|s| s.starts_with("signal ds/e1-1/3 Play")));
    c.on_dataplane_event(DataplaneEvent::SignalDone {
        channel: "ds/e1-1/3".into(),
    });
    let n = c.poll_outgoing().expect("A/oc");
    assert!(n
        .command
        .params
        .get(&ParamName::ObservedEvents)
        .unwrap()
        .to_ascii_lowercase()
        .contains("a/oc"));
    let r = exec(
        &mut c,
        "RQNT 4 ds/e1-1/3@gw MGCP 1.0\nX: 4\nS: A/ann(no-such-file)\n",
    );
    assert_eq!(r.code.0, 514, "{r:?}");
    let r = exec(
        &mut c,
        "RQNT 5 ds/e1-1/3@gw MGCP 1.0\nX: 5\nS: A/ann(../../etc/passwd)\n",
    );
    assert_eq!(r.code.0, 514, "{r:?}");
    let _ = std::fs::remove_file(&path);
}

fn core_with(endpoints: Vec<mgw_control::EndpointSpec>) -> Core<Fake> {
    Core::new(
        CoreConfig {
            domain: "gw".into(),
            alias_domains: vec![],
            rtp_addr: "127.0.0.1".parse().unwrap(),
            default_ptime: 20,
            source_check: SourceCheck::Strict,
            seed: 7,
            digit_timer_short: std::time::Duration::from_millis(40),
            digit_timer_long: std::time::Duration::from_millis(160),
            announcement_dir: std::env::temp_dir(),
        },
        endpoints,
        Fake {
            ports_left: 4,
            ..Default::default()
        },
    )
}

#[test]
fn line_package_hook_events_ringing_and_ring_trip() {
    let mut line = mgw_tdm::SpanConfig::virtual_span("fxs-1", mgw_tdm::Law::Ulaw, 4);
    line.tap = true;
    let mut alsa = mgw_tdm::SpanConfig::virtual_span("snd", mgw_tdm::Law::Linear, 1);
    alsa.kind = mgw_tdm::SpanKind::Alsa;
    let tdm = mgw_tdm::TdmConfig {
        ptime_ms: 20,
        spans: vec![line, alsa],
    };
    let mut c = core_with(mgw_control::endpoints_for(&tdm, 1));
    // Ring the line and wait for off-hook.
    let r = exec(
        &mut c,
        "RQNT 1 ds/fxs-1/2@gw MGCP 1.0\nX: 1\nR: L/hd(N)\nS: L/rg\n",
    );
    assert_eq!(r.code.0, 200, "{r:?}");
    assert!(c
        .media_mut()
        .sent
        .iter()
        .any(|s| s == "signal ds/fxs-1/2 Ring(true)"));
    c.on_dataplane_event(DataplaneEvent::Line {
        channel: "ds/fxs-1/2".into(),
        event: mgw_dataplane::LineEvent::OffHook,
    });
    let n = c.poll_outgoing().expect("NTFY L/hd");
    assert!(n
        .command
        .params
        .get(&ParamName::ObservedEvents)
        .unwrap()
        .to_ascii_lowercase()
        .contains("l/hd"));
    assert!(
        c.media_mut()
            .sent
            .iter()
            .any(|s| s == "signal ds/fxs-1/2 Ring(false)"),
        "ring trip"
    );
    let es = exec(&mut c, "AUEP 2 ds/fxs-1/2@gw MGCP 1.0\nF: ES\n");
    assert_eq!(es.params.get(&ParamName::EventStates), Some("L/hd"));
    // Dial tone is a line tone; on-hook is persistent (notified without being asked).
    assert_eq!(
        exec(&mut c, "RQNT 3 ds/fxs-1/2@gw MGCP 1.0\nX: 3\nS: L/dl\n")
            .code
            .0,
        200
    );
    assert!(c.media_mut().sent.iter().any(|s| s.contains("Tone(Dial)")));
    c.on_dataplane_event(DataplaneEvent::Line {
        channel: "ds/fxs-1/2".into(),
        event: mgw_dataplane::LineEvent::OnHook,
    });
    let n = c.poll_outgoing().expect("persistent L/hu");
    assert!(n
        .command
        .params
        .get(&ParamName::ObservedEvents)
        .unwrap()
        .to_ascii_lowercase()
        .contains("l/hu"));
    // An audio device line: tones yes, ringing and hook events no (nothing to signal with).
    assert_eq!(
        exec(&mut c, "RQNT 4 aaln/1@gw MGCP 1.0\nX: 4\nS: L/dl\n")
            .code
            .0,
        200
    );
    assert_eq!(
        exec(&mut c, "RQNT 5 aaln/1@gw MGCP 1.0\nX: 5\nS: L/rg\n")
            .code
            .0,
        513
    );
    assert_eq!(
        exec(&mut c, "RQNT 6 aaln/1@gw MGCP 1.0\nX: 6\nR: L/hd\n")
            .code
            .0,
        512
    );
    // A trunk without line signalling has no L package.
    let mut c = core(2);
    assert_eq!(
        exec(&mut c, "RQNT 7 ds/e1-1/1@gw MGCP 1.0\nX: 7\nR: L/hd\n")
            .code
            .0,
        518
    );
}
