//! MGCP behaviour of the real `mgw` binary on loopback, with this test as the call agent.

mod support;

use std::time::Duration;

use mgcp::{Message, ParamName, Verb};
use support::*;

fn code(gw: &Gateway, text: &str) -> u16 {
    gw.cmd(text).code.0
}

#[test]
fn startup_rsip_is_retransmitted_until_answered() {
    let gw = Gateway::start(&[]);
    let (first, from) = gw.ca.recv_command(Duration::from_secs(5)).expect("RSIP");
    assert_eq!(first.verb, Verb::Rsip);
    assert_eq!(first.endpoint.local(), "*");
    assert_eq!(first.endpoint.domain(), "mgw");
    assert_eq!(first.params.get(&ParamName::RestartMethod), Some("restart"));
    assert_eq!(from, gw.mgcp);
    // Not answered: the same transaction comes again.
    let (again, _) = gw
        .ca
        .recv_command(Duration::from_secs(5))
        .expect("retransmitted RSIP");
    assert_eq!(again.tid, first.tid);
    gw.ca.reply(from, &format!("200 {} OK\r\n", first.tid));
    // Answered: no more RSIPs for a while.
    let more = gw.ca.recv_command(Duration::from_millis(1500));
    assert!(
        more.is_none(),
        "RSIP kept coming after the answer: {more:?}"
    );
}

#[test]
fn audit_endpoint_single_and_wildcard() {
    let gw = Gateway::start_ready(&[]);
    let r = gw.cmd(&format!(
        "AUEP {} rtpbridge/1@mgw MGCP 1.0\r\nF: A, I, X, R, N\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 200, "{r:?}");
    let caps = r.params.get(&ParamName::Capabilities).expect("A:");
    assert!(caps.contains("a:PCMU"), "{caps}");
    assert_eq!(r.params.get(&ParamName::ConnectionId), Some(""));

    let all = gw.cmd(&format!("AUEP {} *@mgw MGCP 1.0\r\n", tid()));
    assert_eq!(all.code.0, 200);
    let z: Vec<&str> = all
        .params
        .iter()
        .filter(|(n, _)| **n == ParamName::SpecificEndpointId)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(z.len(), 124, "60 ds + 64 rtpbridge endpoints");
    assert!(z.contains(&"ds/e1-2/30@mgw"));
    assert!(z.contains(&"rtpbridge/64@mgw"));

    let span = gw.cmd(&format!("AUEP {} ds/e1-1/*@mgw MGCP 1.0\r\n", tid()));
    assert_eq!(
        span.params
            .iter()
            .filter(|(n, _)| **n == ParamName::SpecificEndpointId)
            .count(),
        30
    );

    assert_eq!(
        code(
            &gw,
            &format!("AUEP {} rtpbridge/65@mgw MGCP 1.0\r\n", tid())
        ),
        500
    );
    assert_eq!(
        code(
            &gw,
            &format!("AUEP {} rtpbridge/1@elsewhere MGCP 1.0\r\n", tid())
        ),
        500
    );
    // Mixed case verbs, names and LF-only line ends.
    assert_eq!(
        code(
            &gw,
            &format!("auep {} RTPBRIDGE/1@MGW mgcp 1.0\nf: a\n", tid())
        ),
        200
    );
}

fn crcx(
    gw: &Gateway,
    ep: &str,
    call: &str,
    mode: &str,
    sdp: Option<&str>,
    extra: &str,
) -> mgcp::Response {
    let mut text = format!(
        "CRCX {} {ep}@mgw MGCP 1.0\r\nC: {call}\r\nM: {mode}\r\n{extra}",
        tid()
    );
    if let Some(s) = sdp {
        text.push_str("\r\n");
        text.push_str(s);
    }
    gw.cmd(&text)
}

#[test]
fn bridge_call_relays_rtp_and_reports_stats() {
    let gw = Gateway::start_ready(&[]);
    let a = rtp_peer();
    let b = rtp_peer();
    let ra = crcx(
        &gw,
        "rtpbridge/3",
        "c0ffee",
        "sendrecv",
        Some(&remote_sdp(a.local_addr().unwrap().port(), "0")),
        "L: p:20, a:PCMU, nt:IN\r\n",
    );
    assert_eq!(ra.code.0, 200, "{ra:?}");
    let ia = ra.params.get(&ParamName::ConnectionId).unwrap().to_string();
    let pa = sdp_port(ra.sdp.as_deref().unwrap());
    // Second leg without remote SDP first (recvonly), then MDCX it in.
    let rb = crcx(
        &gw,
        "rtpbridge/3",
        "c0ffee",
        "recvonly",
        None,
        "L: a:PCMU\r\n",
    );
    assert_eq!(rb.code.0, 200, "{rb:?}");
    let ib = rb.params.get(&ParamName::ConnectionId).unwrap().to_string();
    let pb = sdp_port(rb.sdp.as_deref().unwrap());
    assert_ne!(pa, pb);
    let m = gw.cmd(&format!(
        "MDCX {} rtpbridge/3@mgw MGCP 1.0\r\nC: c0ffee\r\nI: {ib}\r\nM: sendrecv\r\n\r\n{}",
        tid(),
        remote_sdp(b.local_addr().unwrap().port(), "0")
    ));
    assert_eq!(m.code.0, 200, "{m:?}");

    // A → gateway port A → relayed out of port B to peer B.
    let mut got = 0;
    for i in 0..50u16 {
        a.send_to(
            &rtp(0, i, u32::from(i) * 160, 0x1234, &[0xff; 160]),
            ("127.0.0.1", pa),
        )
        .unwrap();
        let mut buf = [0u8; 2048];
        if let Ok((n, from)) = b.recv_from(&mut buf) {
            assert_eq!(from.port(), pb, "relayed from the other leg's port");
            assert_eq!(n, 172);
            assert_eq!(buf[1] & 0x7f, 0);
            got += 1;
        }
    }
    assert_eq!(got, 50, "zero loss at this rate");

    let au = gw.cmd(&format!(
        "AUCX {} rtpbridge/3@mgw MGCP 1.0\r\nI: {ia}\r\nF: C, M, P, LC, RC\r\n",
        tid()
    ));
    assert_eq!(au.code.0, 200, "{au:?}");
    assert_eq!(
        au.params
            .get(&ParamName::CallId)
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("c0ffee")
    );
    assert_eq!(au.params.get(&ParamName::ConnectionMode), Some("sendrecv"));
    let p = au.params.get(&ParamName::ConnectionParameters).unwrap();
    assert!(p.contains("PR=50"), "{p}");
    let bodies = au.sdp.unwrap();
    assert_eq!(bodies.matches("v=0").count(), 2, "LC and RC: {bodies}");

    let d = gw.cmd(&format!(
        "DLCX {} rtpbridge/3@mgw MGCP 1.0\r\nC: c0ffee\r\nI: {ia}\r\n",
        tid()
    ));
    assert_eq!(d.code.0, 250);
    let p = d.params.get(&ParamName::ConnectionParameters).unwrap();
    assert!(p.contains("PR=50") && p.contains("OR=8000"), "{p}");
    let d = gw.cmd(&format!(
        "DLCX {} rtpbridge/3@mgw MGCP 1.0\r\nC: c0ffee\r\n",
        tid()
    ));
    assert_eq!(d.code.0, 250);
    let au = gw.cmd(&format!(
        "AUEP {} rtpbridge/3@mgw MGCP 1.0\r\nF: I\r\n",
        tid()
    ));
    assert_eq!(au.params.get(&ParamName::ConnectionId), Some(""));
}

#[test]
fn back_to_back_e1_channels_carry_alaw() {
    let gw = Gateway::start_ready(&[]);
    let a = rtp_peer();
    let b = rtp_peer();
    let r1 = crcx(
        &gw,
        "ds/e1-1/7",
        "1",
        "sendrecv",
        Some(&remote_sdp(a.local_addr().unwrap().port(), "8")),
        "",
    );
    assert_eq!(r1.code.0, 200, "{r1:?}");
    let r2 = crcx(
        &gw,
        "ds/e1-2/7",
        "2",
        "sendrecv",
        Some(&remote_sdp(b.local_addr().unwrap().port(), "8")),
        "",
    );
    assert_eq!(r2.code.0, 200, "{r2:?}");
    assert!(r1.sdp.as_deref().unwrap().contains("RTP/AVP 8"));
    let p1 = sdp_port(r1.sdp.as_deref().unwrap());
    let mut got = 0;
    for i in 0..20u16 {
        a.send_to(
            &rtp(8, i, u32::from(i) * 160, 7, &[0xd5; 160]),
            ("127.0.0.1", p1),
        )
        .unwrap();
        let mut buf = [0u8; 2048];
        if b.recv_from(&mut buf).is_ok() {
            got += 1;
        }
    }
    assert_eq!(got, 20);
    // A codec the channel cannot transcode is 534 (G.729 is relayed by bridges only).
    let r3 = crcx(
        &gw,
        "ds/e1-1/8",
        "3",
        "sendrecv",
        Some(&remote_sdp(4000, "18")),
        "",
    );
    assert_eq!(r3.code.0, 534);
    // EPCF: A-law is what it is; µ-law is refused.
    assert_eq!(
        code(
            &gw,
            &format!("EPCF {} ds/e1-1/8@mgw MGCP 1.0\r\nB: e:A\r\n", tid())
        ),
        200
    );
    assert_eq!(
        code(
            &gw,
            &format!("EPCF {} ds/e1-1/8@mgw MGCP 1.0\r\nB: e:mu\r\n", tid())
        ),
        507
    );
}

#[test]
fn wildcard_any_crcx_picks_a_free_endpoint() {
    let gw = Gateway::start_ready(&[]);
    let r = crcx(&gw, "rtpbridge/$", "abc", "recvonly", None, "");
    assert_eq!(r.code.0, 200);
    let z1 = r
        .params
        .get(&ParamName::SpecificEndpointId)
        .unwrap()
        .to_string();
    let r = crcx(&gw, "rtpbridge/$", "abd", "recvonly", None, "");
    let z2 = r
        .params
        .get(&ParamName::SpecificEndpointId)
        .unwrap()
        .to_string();
    assert_ne!(z1, z2);
    assert!(z1.starts_with("rtpbridge/") && z1.ends_with("@mgw"));
    // `*` in CRCX (as libosmo-mgcp-client sends it) also means "any free one".
    let r = crcx(&gw, "rtpbridge/*", "abe", "recvonly", None, "");
    assert_eq!(r.code.0, 200);
    let z3 = r
        .params
        .get(&ParamName::SpecificEndpointId)
        .unwrap()
        .to_string();
    assert!(z3 != z1 && z3 != z2);
    // Fill the remaining bridges; then every one is busy: 503.
    let mut n = 3;
    loop {
        let r = crcx(&gw, "rtpbridge/$", "abf", "recvonly", None, "");
        if r.code.0 != 200 {
            assert_eq!(r.code.0, 503, "{r:?}");
            break;
        }
        n += 1;
        assert!(n <= 64);
    }
    assert_eq!(n, 64);
}

#[test]
fn retransmitted_command_executes_once_and_gets_the_same_response() {
    let gw = Gateway::start_ready(&[]);
    let t = tid();
    let text = format!("CRCX {t} rtpbridge/9@mgw MGCP 1.0\r\nC: 99\r\nM: recvonly\r\n");
    let r1 = gw.cmd(&text);
    let r2 = gw.cmd(&text);
    let r3 = gw.cmd(&text);
    assert_eq!(r1.code.0, 200);
    assert_eq!(r1, r2);
    assert_eq!(r2, r3);
    let au = gw.cmd(&format!(
        "AUEP {} rtpbridge/9@mgw MGCP 1.0\r\nF: I\r\n",
        tid()
    ));
    let ids = au.params.get(&ParamName::ConnectionId).unwrap();
    assert_eq!(
        ids.split(',').filter(|s| !s.trim().is_empty()).count(),
        1,
        "executed once: {ids}"
    );
    // Once the call agent acknowledges the response (K:), the history is freed; the
    // acknowledging command itself works as usual.
    let ack = gw.cmd(&format!(
        "AUEP {} rtpbridge/9@mgw MGCP 1.0\r\nK: {t}\r\nF: I\r\n",
        tid()
    ));
    assert_eq!(ack.code.0, 200);
}

#[test]
fn piggybacked_commands_each_get_a_response() {
    let gw = Gateway::start_ready(&[]);
    let (t1, t2, t3) = (tid(), tid(), tid());
    let text = format!(
        "AUEP {t1} rtpbridge/1@mgw MGCP 1.0\r\n.\r\nAUEP {t2} rtpbridge/2@mgw MGCP 1.0\r\n.\r\nAUEP {t3} rtpbridge/999@mgw MGCP 1.0\r\n"
    );
    gw.ca.send(gw.mgcp, &text);
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 3 {
        let (msgs, _, _) = gw.ca.recv(Duration::from_secs(3)).expect("responses");
        for m in msgs {
            if let Message::Response(r) = m {
                seen.insert(r.tid.get(), r.code.0);
            }
        }
    }
    assert_eq!(seen[&t1], 200);
    assert_eq!(seen[&t2], 200);
    assert_eq!(seen[&t3], 500);
}

#[test]
fn notification_request_and_rtp_timeout_notify() {
    let gw = Gateway::start_ready(&[]);
    let r = crcx(&gw, "rtpbridge/5", "77", "recvonly", None, "");
    let conn = r.params.get(&ParamName::ConnectionId).unwrap().to_string();
    let ok = gw.cmd(&format!(
        "RQNT {} rtpbridge/5@mgw MGCP 1.0\r\nX: 1a2b\r\nN: ca@{}\r\nR: R/rto(300)\r\n",
        tid(),
        gw.ca.addr()
    ));
    assert_eq!(ok.code.0, 200, "{ok:?}");
    // No RTP arrives: after ~300 ms the gateway notifies.
    let (ntfy, from) = gw.ca.recv_command(Duration::from_secs(5)).expect("NTFY");
    assert_eq!(ntfy.verb, Verb::Ntfy);
    assert_eq!(ntfy.endpoint.local(), "rtpbridge/5");
    assert_eq!(ntfy.params.get(&ParamName::RequestIdentifier), Some("1a2b"));
    let o = ntfy
        .params
        .get(&ParamName::ObservedEvents)
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        o.contains("r/rto") && o.contains(&conn.to_ascii_lowercase()),
        "{o}"
    );
    gw.ca.reply(from, &format!("200 {} OK\r\n", ntfy.tid));
    // The request is audited back.
    let au = gw.cmd(&format!(
        "AUEP {} rtpbridge/5@mgw MGCP 1.0\r\nF: X, N\r\n",
        tid()
    ));
    assert_eq!(au.params.get(&ParamName::RequestIdentifier), Some("1a2b"));
}

#[test]
fn unanswered_notify_is_retransmitted() {
    let gw = Gateway::start_ready(&[]);
    crcx(&gw, "rtpbridge/6", "78", "recvonly", None, "");
    gw.cmd(&format!(
        "RQNT {} rtpbridge/6@mgw MGCP 1.0\r\nX: 9\r\nR: R/rto(200)\r\n",
        tid()
    ));
    let (n1, _) = gw.ca.recv_command(Duration::from_secs(5)).expect("NTFY");
    let (n2, from) = gw
        .ca
        .recv_command(Duration::from_secs(5))
        .expect("NTFY again");
    assert_eq!(n1.tid, n2.tid);
    assert_eq!(n2.verb, Verb::Ntfy);
    gw.ca.reply(from, &format!("200 {} OK\r\n", n2.tid));
}

#[test]
fn error_paths_get_the_right_codes() {
    let gw = Gateway::start_ready(&[]);
    let t = tid;
    let cases: Vec<(String, u16)> = vec![
        (format!("CRCX {} rtpbridge/99@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\n", t()), 500),
        (format!("FOOX {} rtpbridge/1@mgw MGCP 1.0\r\n", t()), 504),
        (format!("NTFY {} rtpbridge/1@mgw MGCP 1.0\r\nX: 1\r\nO: L/hd\r\n", t()), 504),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC 1\r\nM: sendrecv\r\n", t()), 510),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nM: sendrecv\r\n", t()), 510),
        (format!("MDCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nI: FFFF\r\nM: sendrecv\r\n", t()), 515),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nM: sideways\r\n", t()), 517),
        (format!("RQNT {} rtpbridge/1@mgw MGCP 1.0\r\nX: 1\r\nR: Q/zz\r\n", t()), 518),
        (format!("RQNT {} rtpbridge/1@mgw MGCP 1.0\r\nX: 1\r\nR: L/hd\r\n", t()), 518),
        (format!("RQNT {} rtpbridge/1@mgw MGCP 1.0\r\nX: 1\r\nR: R/nosuch\r\n", t()), 522),
        (format!("RQNT {} ds/e1-1/1@mgw MGCP 1.0\r\nX: 1\r\nR: D/[0-9](D)\r\n", t()), 519),
        (format!("RQNT {} rtpbridge/1@mgw MGCP 1.0\r\nX: 1\r\nR: R/rto(N,I)\r\n", t()), 523),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\nL: p:30-10\r\n", t()), 524),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 2.0\r\nC: 1\r\nM: sendrecv\r\n", t()), 528),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\nL: nt:ATM\r\n", t()), 532),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\nL: a:NOSUCH\r\n", t()), 534),
        (format!("RQNT {} rtpbridge/1@mgw MGCP 1.0\r\nX: 1\r\nR: R/rto(abc)\r\n", t()), 538),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\nQQ: 1\r\n", t()), 539),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\nO: L/hd\r\n", t()), 539),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\nL: zz:1\r\n", t()), 525),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\nL: e:maybe\r\n", t()), 541),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\n\r\nv=0\r\nc=IN IP4 nope\r\nm=audio 1 RTP/AVP 0\r\n", t()), 509),
        (format!("CRCX {} rtpbridge/1@mgw MGCP 1.0\r\nC: 1\r\nM: sendrecv\r\nX+Vendor: 1\r\n", t()), 511),
        (format!("RQNT {} ds/e1-1/1@mgw MGCP 1.0\r\nX: 1\r\nS: T/bz\r\n", t()), 513),
        (format!("RQNT {} ds/e1-1/1@mgw MGCP 1.0\r\nX: 1\r\nR: T/tdd\r\n", t()), 512),
    ];
    for (text, want) in &cases {
        let r = gw.cmd(text);
        assert_eq!(r.code.0, *want, "for:\n{text}\ngot {r:?}");
    }
    // None of the failed CRCXs left a connection behind.
    for ep in ["rtpbridge/1", "rtpbridge/99"] {
        let au = gw.cmd(&format!("AUEP {} {ep}@mgw MGCP 1.0\r\nF: I\r\n", tid()));
        if au.code.0 == 200 {
            assert_eq!(au.params.get(&ParamName::ConnectionId), Some(""), "{ep}");
        }
    }
    // Connection limit and call-id mismatch.
    let r = crcx(&gw, "rtpbridge/2", "aa", "recvonly", None, "");
    let i = r.params.get(&ParamName::ConnectionId).unwrap().to_string();
    crcx(&gw, "rtpbridge/2", "aa", "recvonly", None, "");
    assert_eq!(
        crcx(&gw, "rtpbridge/2", "aa", "recvonly", None, "").code.0,
        540
    );
    assert_eq!(
        code(
            &gw,
            &format!(
                "MDCX {} rtpbridge/2@mgw MGCP 1.0\r\nC: bb\r\nI: {i}\r\nM: inactive\r\n",
                tid()
            )
        ),
        516
    );
    assert_eq!(
        code(
            &gw,
            &format!("DLCX {} rtpbridge/2@mgw MGCP 1.0\r\nC: bb\r\n", tid())
        ),
        516
    );
    // A failed MDCX changes nothing: the mode is still recvonly.
    assert_eq!(code(&gw, &format!("MDCX {} rtpbridge/2@mgw MGCP 1.0\r\nC: aa\r\nI: {i}\r\nM: sendrecv\r\nL: p:30-10\r\n", tid())), 524);
    let au = gw.cmd(&format!(
        "AUCX {} rtpbridge/2@mgw MGCP 1.0\r\nI: {i}\r\nF: M\r\n",
        tid()
    ));
    assert_eq!(au.params.get(&ParamName::ConnectionMode), Some("recvonly"));
}

#[test]
fn garbage_never_stops_the_server() {
    let gw = Gateway::start_ready(&[]);
    let junk: [&[u8]; 6] = [
        b"",
        b"\xff\xfe\x00",
        b"CRCX",
        b"200",
        b"CRCX 0 x@mgw MGCP 1.0\r\n",
        &[b'A'; 9000],
    ];
    for j in junk {
        gw.ca.sock.send_to(j, gw.mgcp).unwrap();
    }
    // Still answering.
    assert_eq!(
        code(&gw, &format!("AUEP {} rtpbridge/1@mgw MGCP 1.0\r\n", tid())),
        200
    );
}

#[test]
fn commands_from_strangers_are_ignored() {
    let gw = Gateway::start_ready(&[]);
    // 127.0.0.2 is loopback too, but not a configured call agent.
    let stranger = CallAgent::bind("127.0.0.2:0");
    stranger.send(
        gw.mgcp,
        &format!("AUEP {} rtpbridge/1@mgw MGCP 1.0\r\n", tid()),
    );
    assert!(
        stranger.recv(Duration::from_millis(700)).is_none(),
        "a stranger got an answer"
    );
    assert_eq!(
        code(&gw, &format!("AUEP {} rtpbridge/1@mgw MGCP 1.0\r\n", tid())),
        200
    );
}

#[test]
fn sigterm_sends_rsip_forced_and_exits_cleanly() {
    let mut gw = Gateway::start_ready(&[]);
    crcx(&gw, "rtpbridge/4", "1", "recvonly", None, "");
    gw.terminate();
    let (rsip, from) = gw
        .ca
        .recv_command(Duration::from_secs(5))
        .expect("RSIP on shutdown");
    assert_eq!(rsip.verb, Verb::Rsip);
    assert_eq!(rsip.params.get(&ParamName::RestartMethod), Some("forced"));
    gw.ca.reply(from, &format!("200 {} OK\r\n", rsip.tid));
    let status = gw.wait_exit(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "{status:?}");
}

#[test]
fn graceful_shutdown_announces_the_delay() {
    let mut gw = Gateway::start_ready(&["--graceful", "1"]);
    crcx(&gw, "rtpbridge/4", "1", "recvonly", None, "");
    gw.terminate();
    let (rsip, from) = gw
        .ca
        .recv_command(Duration::from_secs(5))
        .expect("RSIP graceful");
    assert_eq!(rsip.params.get(&ParamName::RestartMethod), Some("graceful"));
    assert_eq!(rsip.params.get(&ParamName::RestartDelay), Some("1"));
    gw.ca.reply(from, &format!("200 {} OK\r\n", rsip.tid));
    // New connections are refused while draining.
    assert_eq!(
        crcx(&gw, "rtpbridge/8", "2", "recvonly", None, "").code.0,
        520
    );
    let (forced, from) = gw
        .ca
        .recv_command(Duration::from_secs(5))
        .expect("RSIP forced");
    assert_eq!(forced.params.get(&ParamName::RestartMethod), Some("forced"));
    gw.ca.reply(from, &format!("200 {} OK\r\n", forced.tid));
    assert!(gw
        .wait_exit(Duration::from_secs(5))
        .expect("exited")
        .success());
}

#[test]
fn backup_call_agent_takes_over() {
    // The primary is a socket nobody reads; the backup answers.
    let dead = CallAgent::bind("127.0.0.1:0");
    let backup = CallAgent::bind("127.0.0.1:0");
    let dead_addr = dead.addr().to_string();
    let backup_addr = backup.addr().to_string();
    let gw = Gateway::start_with(
        backup,
        &[
            "--call-agent",
            &dead_addr,
            "--call-agent",
            &backup_addr,
            "--config",
            &timers_file(),
        ],
    );
    let (rsip, from) = gw
        .ca
        .recv_command(Duration::from_secs(10))
        .expect("RSIP reaches the backup");
    assert_eq!(rsip.verb, Verb::Rsip);
    gw.ca.reply(from, &format!("200 {} OK\r\n", rsip.tid));
    drop(dead);
}

/// A config file with short retransmission timers.
fn timers_file() -> String {
    let path = std::env::temp_dir().join(format!("mgw-test-timers-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[timers]\ninitial_rto_ms = 50\nmax_rto_ms = 200\nmax1 = 2\nmax2 = 4\n",
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn reused_transaction_id_with_a_new_command_is_executed() {
    // A restarted call agent numbering from 1 again must not get stale answers.
    let gw = Gateway::start_ready(&[]);
    let t = tid();
    let crcx_text = format!("CRCX {t} rtpbridge/12@mgw MGCP 1.0\r\nC: 5\r\nM: recvonly\r\n");
    let first = gw.cmd(&crcx_text);
    assert_eq!(first.code.0, 200);
    // A true retransmission (only K: differs) still gets the remembered response.
    let again = gw.cmd(&format!(
        "CRCX {t} rtpbridge/12@mgw MGCP 1.0\r\nK: 1\r\nC: 5\r\nM: recvonly\r\n"
    ));
    assert_eq!(again, first);
    // The same id on a different command runs it.
    let dl = gw.cmd(&format!("DLCX {t} rtpbridge/12@mgw MGCP 1.0\r\nC: 5\r\n"));
    assert_eq!(dl.code.0, 250, "{dl:?}");
    let au = gw.cmd(&format!(
        "AUEP {} rtpbridge/12@mgw MGCP 1.0\r\nF: I\r\n",
        tid()
    ));
    assert_eq!(au.params.get(&ParamName::ConnectionId), Some(""));
}
