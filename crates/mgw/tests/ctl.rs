//! `mgw ctl` against the real gateway and against scripted fake gateways: the verb
//! subcommands, `--json`, exit codes, provisional responses and response acks, raw mode.

mod support;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Runs `mgw` with `args` (and `stdin`); returns (exit code, stdout, stderr).
fn mgw(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mgw"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mgw");
    let input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        let mut input = input;
        input.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `mgw ctl --gateway GW --bind 127.0.0.1:0 ARGS...`.
fn ctl(gw: &Gateway, args: &[&str]) -> (i32, String, String) {
    let addr = gw.mgcp.to_string();
    let mut all = vec!["ctl", "--gateway", &addr, "--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    mgw(&all, None)
}

/// Like [`ctl`] with `--json`; parses the output.
fn ctl_json(gw: &Gateway, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = ctl(gw, &all);
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}, stderr {err:?}"));
    (code, v)
}

#[test]
fn crcx_mdcx_aucx_dlcx_with_json_and_a_working_bridge() {
    let gw = Gateway::start_ready(&[]);
    let (peer_a, peer_b) = (rtp_peer(), rtp_peer());
    let a_addr = peer_a.local_addr().unwrap().to_string();
    let b_addr = peer_b.local_addr().unwrap().to_string();

    // First connection, receive-only, no remote yet.
    let (code, r) = ctl_json(
        &gw,
        &[
            "--tid",
            "4711",
            "crcx",
            "rtpbridge/3@mgw",
            "--call",
            "C0FFEE",
            "--mode",
            "recvonly",
            "--codec",
            "PCMA",
            "--ptime",
            "20",
            "--param",
            "X-Test: yes",
        ],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["code"], 200);
    assert_eq!(r["tid"], 4711);
    assert!(r["comment"].is_string());
    let conn_a = r["params"]["I"]
        .as_str()
        .expect("I: in the CRCX response")
        .to_string();
    let sdp_a = r["sdp"].as_str().expect("SDP in the CRCX response");
    assert!(sdp_a.contains("RTP/AVP 8"), "{sdp_a}");
    let port_a = sdp_port(sdp_a);

    // Point it at peer A and make it send/receive.
    let (code, r) = ctl_json(
        &gw,
        &[
            "mdcx",
            "rtpbridge/3@mgw",
            "--call",
            "C0FFEE",
            "--conn",
            &conn_a,
            "--mode",
            "sendrecv",
            "--codec",
            "PCMA",
            "--remote",
            &a_addr,
        ],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["code"], 200);

    // Second connection straight to peer B.
    let (code, out, err) = ctl(
        &gw,
        &[
            "--json",
            "--print-request",
            "crcx",
            "rtpbridge/3@mgw",
            "--call",
            "C0FFEE",
            "--mode",
            "sendrecv",
            "--codec",
            "PCMA",
            "--remote",
            &b_addr,
        ],
    );
    assert_eq!(code, 0, "{err}");
    // The request shown has the blank line before its SDP.
    assert!(err.contains("> M: sendrecv\n>\n> v=0\n"), "{err}");
    assert!(
        err.contains(&format!(
            "> m=audio {} RTP/AVP 8\n",
            peer_b.local_addr().unwrap().port()
        )),
        "{err}"
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let port_b = sdp_port(r["sdp"].as_str().expect("SDP"));

    // The SDP that mgw ctl built works: RTP from A reaches B and back.
    let payload = [0xd5u8; 160];
    let mut got_b = false;
    for seq in 0..20u16 {
        peer_a
            .send_to(
                &rtp(8, seq, u32::from(seq) * 160, 0x1234, &payload),
                ("127.0.0.1", port_a),
            )
            .unwrap();
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = peer_b.recv_from(&mut buf) {
            assert!(n >= 12 + 160, "short packet");
            assert_eq!(buf[1] & 0x7f, 8);
            got_b = true;
            break;
        }
    }
    assert!(got_b, "no RTP relayed from A to B");
    peer_b
        .send_to(&rtp(8, 1, 160, 0x5678, &payload), ("127.0.0.1", port_b))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        peer_a.recv_from(&mut buf).is_ok(),
        "no RTP relayed from B to A"
    );

    // Audit the first connection.
    let (code, r) = ctl_json(
        &gw,
        &[
            "aucx",
            "rtpbridge/3@mgw",
            "--conn",
            &conn_a,
            "--info",
            "C,M,P",
        ],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["code"], 200);
    assert!(
        r["params"]["C"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("c0ffee"),
        "{r}"
    );
    assert_eq!(r["params"]["M"], "sendrecv");
    assert!(r["params"]["P"].as_str().unwrap().contains("PS="), "{r}");

    // Delete the call's connections: 250.
    let (code, r) = ctl_json(&gw, &["dlcx", "rtpbridge/3@mgw", "--call", "C0FFEE"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["code"], 250);
    // Auditing a deleted connection is an error response: exit 1, still printed.
    let (code, r) = ctl_json(&gw, &["aucx", "rtpbridge/3@mgw", "--conn", &conn_a]);
    assert_eq!(code, 1, "{r}");
    assert!(r["code"].as_u64().unwrap() >= 500, "{r}");
}

#[test]
fn rqnt_auep_epcf_round_trips() {
    let gw = Gateway::start_ready(&[]);
    let (code, out, err) = ctl(
        &gw,
        &[
            "--print-request",
            "rqnt",
            "ds/e1-1/1@mgw",
            "--request-id",
            "1a",
            "--events",
            "D/[0-9](N)",
            "--signals",
            "D/5",
            "--digit-map",
            "(xx|911)",
            "--notify",
            &format!("ca@{}", gw.ca.addr()),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("200 "), "{out}");
    // --print-request shows what went out, on stderr.
    assert!(err.contains("> RQNT "), "{err}");
    for line in ["> X: 1a", "> R: D/[0-9](N)", "> S: D/5", "> D: (xx|911)"] {
        assert!(err.contains(line), "{line} missing from {err}");
    }

    let (code, r) = ctl_json(&gw, &["auep", "rtpbridge/1@mgw", "--info", "A"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["code"], 200);
    assert!(r["params"]["A"].as_str().unwrap().contains("PCMU"), "{r}");
    assert!(r["sdp"].is_null());

    let (code, out, err) = ctl(&gw, &["epcf", "rtpbridge/1@mgw", "--bearer", "e:A"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("200 "), "{out}");

    // The gateway refuses a package the endpoint lacks: exit 1, response printed.
    let (code, out, _) = ctl(
        &gw,
        &[
            "rqnt",
            "rtpbridge/1@mgw",
            "--request-id",
            "2",
            "--events",
            "D/[0-9](N)",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("518 "), "{out}");
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    // No gateway is needed: everything is refused before sending.
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["crcx", "no-domain", "--call", "1"], "bad endpoint name"),
        (
            &["crcx", "x@gw", "--call", "1", "--mode", "sideways"],
            "bad connection mode",
        ),
        (
            &["crcx", "x@gw", "--call", "1", "--codec", "PC MU"],
            "bad codec",
        ),
        (
            &[
                "crcx",
                "x@gw",
                "--call",
                "1",
                "--codec",
                "FOO",
                "--remote",
                "127.0.0.1:4000",
            ],
            "clock rate",
        ),
        (&["crcx", "x@gw", "--call", "xyz"], "bad call id"),
        (&["crcx", "x@gw"], "--call"),
        (
            &["crcx", "x@gw", "--call", "1", "--remote", "nowhere"],
            "--remote",
        ),
        (
            &["crcx", "x@gw", "--call", "1", "--sdp", "/nonexistent/x.sdp"],
            "x.sdp",
        ),
        (
            &["mdcx", "x@gw", "--call", "1", "--conn", "g"],
            "bad connection id",
        ),
        (
            &["rqnt", "x@gw", "--request-id", "1", "--events", "D/[0-9](N"],
            "bad requested events",
        ),
        (
            &["rqnt", "x@gw", "--request-id", "1", "--digit-map", "(xx|"],
            "bad digit map",
        ),
        (&["auep", "x@gw", "--info", "QQ"], "bad requested info"),
        (&["epcf", "x@gw", "--bearer", "e:B"], "bad bearer"),
        (&["auep", "x@gw", "--param", "Nonsense: 1"], "bad --param"),
        (
            &["auep", "x@gw", "--info", "A", "--param", "F: R"],
            "given twice",
        ),
        (&["--tid", "0", "auep", "x@gw"], "--tid"),
        (&["--timeout=0", "auep", "x@gw"], "--timeout"),
        (&["frob", "x@gw"], ""),
    ];
    for (args, want) in cases {
        let mut all = vec!["ctl", "--gateway", &addr];
        all.extend_from_slice(args);
        let (code, out, err) = mgw(&all, None);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    // Nothing was sent.
    dead.set_nonblocking(true).unwrap();
    assert!(dead.recv_from(&mut [0u8; 100]).is_err());
}

#[test]
fn dry_run_prints_the_command() {
    let (code, out, err) = mgw(
        &[
            "ctl",
            "--dry-run",
            "--tid",
            "12",
            "crcx",
            "ds/e1-1/1@gw",
            "--call",
            "1",
            "--mode",
            "recvonly",
            "--codec",
            "PCMU",
            "--codec",
            "telephone-event",
            "--ptime",
            "20",
            "--notify",
            "ca@127.0.0.1:2727",
            "--remote",
            "127.0.0.1:4000",
            "--param",
            "X-Foo: bar",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "CRCX 12 ds/e1-1/1@gw MGCP 1.0\nC: 1\nN: ca@127.0.0.1:2727\nL: p:20, a:PCMU;telephone-event\n\
         M: recvonly\nX-Foo: bar\n\nv=0\no=- 12 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\n\
         t=0 0\nm=audio 4000 RTP/AVP 0 96\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15\n\
         a=ptime:20\n"
    );
    // The output is valid MGCP, and it can be fed back to raw mode.
    let msg = mgcp::parse_message(&out).expect("valid MGCP");
    assert_eq!(msg.tid().get(), 12);
    let (code, again, _) = mgw(&["ctl", "--dry-run", "raw"], Some(&out));
    assert_eq!(code, 0);
    assert_eq!(again, out);

    // An SDP from a file, and the other verbs.
    let dir = std::env::temp_dir().join(format!("mgw-ctl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sdp = dir.join("offer.sdp");
    std::fs::write(&sdp, "v=0\nc=IN IP4 127.0.0.1\nm=audio 4000 RTP/AVP 0\n").unwrap();
    let (code, out, err) = mgw(
        &[
            "ctl",
            "--dry-run",
            "--tid",
            "13",
            "mdcx",
            "x@gw",
            "--call",
            "1",
            "--conn",
            "2",
            "--sdp",
            sdp.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "MDCX 13 x@gw MGCP 1.0\nC: 1\nI: 2\n\nv=0\nc=IN IP4 127.0.0.1\nm=audio 4000 RTP/AVP 0\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
    for (args, want) in [
        (
            &["dlcx", "x@gw", "--call", "1", "--conn", "2"][..],
            "DLCX 14 x@gw MGCP 1.0\nC: 1\nI: 2\n",
        ),
        (&["dlcx", "x@gw"][..], "DLCX 14 x@gw MGCP 1.0\n"),
        (
            &["auep", "x@gw", "--info", "a,i,r"][..],
            "AUEP 14 x@gw MGCP 1.0\nF: A,I,R\n",
        ),
        (
            &["aucx", "x@gw", "--conn", "5", "--info", "C,M,P,LC,RC"][..],
            "AUCX 14 x@gw MGCP 1.0\nI: 5\nF: C,M,P,LC,RC\n",
        ),
        (
            &["epcf", "x@gw", "--bearer", "e:mu"][..],
            "EPCF 14 x@gw MGCP 1.0\nB: e:mu\n",
        ),
    ] {
        let mut all = vec!["ctl", "--dry-run", "--tid", "14"];
        all.extend_from_slice(args);
        let (code, out, err) = mgw(&all, None);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(out, want, "{args:?}");
    }
}

#[test]
fn a_silent_gateway_gives_exit_3_within_the_timeout() {
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    let t0 = Instant::now();
    let (code, out, err) = mgw(
        &["ctl", "--gateway", &addr, "--timeout", "1", "auep", "x@gw"],
        None,
    );
    let took = t0.elapsed();
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("no response"), "{err}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // It retransmitted: sends at 0, 0.2 and 0.6 s, byte-identical.
    dead.set_nonblocking(true).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1000];
    while let Ok((n, _)) = dead.recv_from(&mut buf) {
        seen.push(buf[..n].to_vec());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|s| s == &seen[0]));
}

/// A scripted gateway: answers the first command with a provisional `100`, then (unless
/// `final_text` is `None`) the final response; returns every datagram it received after
/// the first.
fn scripted_gateway(
    final_text: Option<&'static str>,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    let h = std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let tid: u32 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        sock.send_to(format!("100 {tid} working\r\n").as_bytes(), from)
            .unwrap();
        // Stay silent for a second: no retransmission may arrive meanwhile.
        sock.set_read_timeout(Some(Duration::from_millis(1000)))
            .unwrap();
        let mut later = Vec::new();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            later.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        if let Some(f) = final_text {
            let f = f.replace("TID", &tid.to_string());
            sock.send_to(f.as_bytes(), from).unwrap();
        }
        sock.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            later.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        later
    });
    (addr, h)
}

#[test]
fn provisional_then_final_with_k_is_acknowledged() {
    let (addr, h) = scripted_gateway(Some("200 TID OK\r\nK:\r\nI: 9\r\n"));
    let (code, out, err) = mgw(
        &[
            "ctl",
            "--gateway",
            &addr,
            "--tid",
            "321",
            "--json",
            "--print-request",
            "auep",
            "x@gw",
        ],
        None,
    );
    let later = h.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["code"], 200);
    assert_eq!(r["params"]["I"], "9");
    assert_eq!(r["params"]["K"], "");
    assert!(err.starts_with("> AUEP 321 x@gw MGCP 1.0\n>\n"), "{err}");
    assert!(err.contains("> 000 321\n"), "{err}");
    // No retransmission after the 100; exactly one `000` after the final response.
    assert_eq!(later, ["000 321\r\n"], "{later:?}");
}

#[test]
fn provisional_without_final_gives_exit_3() {
    let (addr, h) = scripted_gateway(None);
    let (code, _, err) = mgw(
        &[
            "ctl",
            "--gateway",
            &addr,
            "--timeout",
            "1.5",
            "auep",
            "x@gw",
        ],
        None,
    );
    let later = h.join().unwrap();
    assert_eq!(code, 3);
    assert!(err.contains("100"), "{err}");
    assert!(
        later.is_empty(),
        "retransmitted after a provisional: {later:?}"
    );
}

#[test]
fn raw_mode_still_works() {
    let gw = Gateway::start_ready(&[]);
    let addr = gw.mgcp.to_string();
    // The plain form, text on stdin.
    let (code, out, err) = mgw(
        &["ctl", "--gateway", &addr, "--bind", "127.0.0.1:0"],
        Some("AUEP * rtpbridge/2@mgw MGCP 1.0\nF: A\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("200 ") && out.contains("\nA: "), "{out}");
    // `raw` with a file, a chosen transaction id and JSON.
    let dir = std::env::temp_dir().join(format!("mgw-ctl-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("cmd.txt");
    std::fs::write(
        &f,
        "CRCX * rtpbridge/2@mgw MGCP 1.0\nC: 5\nM: recvonly\nL: a:PCMU\n",
    )
    .unwrap();
    let (code, out, err) = mgw(
        &[
            "ctl",
            "--gateway",
            &addr,
            "--bind",
            "127.0.0.1:0",
            "--tid",
            "999",
            "--json",
            "raw",
            f.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["code"].as_u64(), r["tid"].as_u64()),
        (Some(200), Some(999))
    );
    assert!(r["sdp"].as_str().unwrap().contains("RTP/AVP 0"), "{r}");
    // The plain form with a file argument; an error response exits 1 and is printed.
    std::fs::write(&f, "DLCX * rtpbridge/2@mgw MGCP 1.0\nC: 5\nI: FFFF\n").unwrap();
    let (code, out, _) = mgw(
        &[
            "ctl",
            "--gateway",
            &addr,
            "--bind",
            "127.0.0.1:0",
            f.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("515 "), "{out}");
    // `raw` has the documented usage exit code; the plain form keeps exit 1.
    let (code, _, err) = mgw(&["ctl", "--gateway", &addr, "raw"], Some("garbage\n"));
    assert_eq!(code, 2);
    assert!(err.contains("not an MGCP command line"), "{err}");
    let (code, _, _) = mgw(&["ctl", "--gateway", &addr], Some("garbage\n"));
    assert_eq!(code, 1);
    let (code, out, _) = ctl(&gw, &["dlcx", "rtpbridge/2@mgw", "--call", "5"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("250 "), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
