//! Operating the real binary: metrics, the JSON admin API, `mgw status`, `mgw ctl`,
//! `mgw config`.

mod support;

use std::process::Command;
use std::time::Duration;

use mgcp::ParamName;
use support::*;

fn mgw(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mgw"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mgw");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn metrics_and_admin_api_after_a_call() {
    let gw = Gateway::start_ready(&[]);
    let http = gw.http.expect("admin HTTP address");
    let a = rtp_peer();
    let b = rtp_peer();
    let ra = gw.cmd(&format!(
        "CRCX {} rtpbridge/10@mgw MGCP 1.0\r\nC: abc1\r\nM: sendrecv\r\n\r\n{}",
        tid(),
        remote_sdp(a.local_addr().unwrap().port(), "8")
    ));
    let rb = gw.cmd(&format!(
        "CRCX {} rtpbridge/10@mgw MGCP 1.0\r\nC: abc1\r\nM: sendrecv\r\n\r\n{}",
        tid(),
        remote_sdp(b.local_addr().unwrap().port(), "8")
    ));
    assert_eq!(ra.code.0, 200);
    assert_eq!(rb.code.0, 200);
    let pa = sdp_port(ra.sdp.as_deref().unwrap());
    for i in 0..30u16 {
        a.send_to(
            &rtp(8, i, u32::from(i) * 160, 5, &[0xd5; 160]),
            ("127.0.0.1", pa),
        )
        .unwrap();
        let mut buf = [0u8; 512];
        let _ = b.recv_from(&mut buf);
    }
    // A bad command too, so a 5xx shows in the metrics.
    assert_eq!(
        gw.cmd(&format!(
            "CRCX {} rtpbridge/10@mgw MGCP 1.0\r\nC: 1\r\nM: x\r\n",
            tid()
        ))
        .code
        .0,
        517
    );

    // Workers publish their counters every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let (status, metrics) = http_get(http, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("mgw_mgcp_commands_total{verb=\"CRCX\",code=\"200\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mgw_mgcp_commands_total{verb=\"CRCX\",code=\"517\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mgw_connections{mode=\"sendrecv\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mgw_endpoints{kind=\"rtpbridge\",state=\"active\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mgw_rtp_packets{direction=\"in\"} 30"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mgw_rtp_packets{direction=\"out\"} 30"),
        "{metrics}"
    );
    assert!(metrics.contains("mgw_rtp_ports_in_use 2"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"));
    // Per-worker figures (one worker in tests): the 30 relayed packets in and out.
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
    };
    assert!(value("mgw_worker_packets_total{worker=\"0\",direction=\"rx\"}") >= 30.0);
    assert!(value("mgw_worker_packets_total{worker=\"0\",direction=\"tx\"}") >= 30.0);
    assert_eq!(value("mgw_worker_connections{worker=\"0\"}"), 2.0);
    assert_eq!(
        value("mgw_worker_drops_total{worker=\"0\",reason=\"source_check\"}"),
        0.0
    );
    let load = value("mgw_worker_cpu_load{worker=\"0\"}");
    assert!((0.0..=1.0).contains(&load), "{load}");
    assert!(value("mgw_worker_cpu_seconds_total{worker=\"0\"}") > 0.0);

    let (_, conns) = http_get(http, "/api/connections");
    let conns: serde_json::Value = serde_json::from_str(&conns).unwrap();
    let conns = conns.as_array().unwrap();
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[0]["endpoint"], "rtpbridge/10@mgw");
    assert_eq!(
        conns[0]["call_id"].as_str().unwrap().to_ascii_lowercase(),
        "abc1"
    );
    let rx: u64 = conns
        .iter()
        .map(|c| c["rtp"]["packets_received"].as_u64().unwrap())
        .sum();
    assert_eq!(rx, 30);
    let (_, calls) = http_get(http, "/api/calls");
    let calls: serde_json::Value = serde_json::from_str(&calls).unwrap();
    assert_eq!(calls.as_array().unwrap().len(), 1);
    assert_eq!(calls[0]["legs"].as_array().unwrap().len(), 2);
    let (_, eps) = http_get(http, "/api/endpoints");
    let eps: serde_json::Value = serde_json::from_str(&eps).unwrap();
    assert_eq!(eps.as_array().unwrap().len(), 124);
    let (_, st) = http_get(http, "/api/status");
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["connections"], 2);
    assert_eq!(st["link"], "connected");
    assert_eq!(http_get(http, "/nope").0, 404);

    // `mgw status` renders the same as tables.
    let (code, out, err) = mgw(&["status", "--http", &http.to_string()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rtpbridge/10@mgw"), "{out}");
    assert!(out.contains("2 connections, 1 calls"), "{out}");
}

#[test]
fn ctl_talks_to_the_real_gateway() {
    let gw = Gateway::start_ready(&[]);
    // mgw ctl from 127.0.0.1 (a configured call agent's address).
    let (code, out, err) = mgw(
        &[
            "ctl",
            "--gateway",
            &gw.mgcp.to_string(),
            "--bind",
            "127.0.0.1:0",
        ],
        Some("CRCX * rtpbridge/11@mgw MGCP 1.0\nC: 77\nM: recvonly\nL: a:PCMA\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("200 "), "{out}");
    assert!(
        out.contains("m=audio ") && out.contains("RTP/AVP 8"),
        "{out}"
    );
    let (code, out, _) = mgw(
        &[
            "ctl",
            "--gateway",
            &gw.mgcp.to_string(),
            "--bind",
            "127.0.0.1:0",
        ],
        Some("DLCX * rtpbridge/11@mgw MGCP 1.0\nC: 77\n"),
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("250 "), "{out}");
    // Nobody there: a clear error and exit 1, bounded in time.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    let t0 = std::time::Instant::now();
    let (code, _, err) = mgw(
        &["ctl", "--gateway", &addr, "--timeout", "1"],
        Some("AUEP * x@y MGCP 1.0\n"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("no response"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let (code, _, err) = mgw(&["ctl", "--gateway", &addr], Some("garbage\n"));
    assert_eq!(code, 1);
    assert!(err.contains("not an MGCP command line"), "{err}");
}

#[test]
fn config_default_check_and_bad_files() {
    let (code, default, _) = mgw(&["config", "default"], None);
    assert_eq!(code, 0);
    let dir = std::env::temp_dir().join(format!("mgw-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, &default).unwrap();
    let (code, out, err) = mgw(&["config", "check", good.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"));
    for (text, want) in [
        ("mgcp_bind = \"127.0.0.1:2427\"\nnonsense = 1\n", "line 2"),
        ("workers = \"many\"\n", "line 1"),
        ("rtp_ports = \"9-3\"\n", "port range"),
        ("backend = \"dpdk\"\n", "unknown backend"),
        ("[timers]\nmax1 = 9\nmax2 = 3\n", "max1"),
        ("ptime = 20\nmgcp_bind = = 1\n", "line 2"),
        ("ptime = 15\n", "ptime"),
    ] {
        let f = dir.join("bad.toml");
        std::fs::write(&f, text).unwrap();
        let (code, _, err) = mgw(&["config", "check", f.to_str().unwrap()], None);
        assert_eq!(code, 1, "{text}");
        assert!(err.contains(want), "{text:?} → {err}");
    }
    // Every value error is reported, each with its line.
    let f = dir.join("many.toml");
    std::fs::write(
        &f,
        "mgcp_bind = \"127.0.0.1:2427\"\nrtp_ports = \"9-3\"\nbackend = \"dpdk\"\nptime = 15\nallow_from = [\"10.0.0.0/77\"]\n",
    )
    .unwrap();
    let (code, _, err) = mgw(&["config", "check", f.to_str().unwrap()], None);
    assert_eq!(code, 1);
    for want in [
        "line 2: port range",
        "line 3: unknown backend",
        "line 4: ptime",
        "line 5: allow_from",
        "4 error(s)",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    // A bad flag value is a clear error, not a panic.
    let (code, _, err) = mgw(&["run", "--rtp-ports", "abc"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("LOW-HIGH"), "{err}");
}

#[test]
fn auep_returns_capabilities_for_ds_endpoints() {
    let gw = Gateway::start_ready(&[]);
    let r = gw.cmd(&format!(
        "AUEP {} ds/e1-2/30@mgw MGCP 1.0\r\nF: A, B\r\n",
        tid()
    ));
    assert_eq!(r.code.0, 200);
    assert!(r
        .params
        .get(&ParamName::Capabilities)
        .unwrap()
        .contains("a:PCMA"));
    assert_eq!(r.params.get(&ParamName::BearerInformation), Some("e:A"));
}

#[test]
fn sighup_reloads_call_agents() {
    // Start with the call agent on 127.0.0.1; a second one on 127.0.0.3 is not obeyed yet.
    let dir = std::env::temp_dir().join(format!("mgw-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("mgw.toml");
    let ca = CallAgent::bind("127.0.0.1:0");
    let other = CallAgent::bind("127.0.0.3:0");
    std::fs::write(&cfg, format!("call_agents = [\"{}\"]\n", ca.addr())).unwrap();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let gw = Gateway::start_with(ca, &["--config", &cfg_s]);
    let (rsip, from) = gw.ca.recv_command(Duration::from_secs(5)).unwrap();
    gw.ca.reply(from, &format!("200 {} OK\r\n", rsip.tid));
    let probe = || format!("AUEP {} rtpbridge/1@mgw MGCP 1.0\r\n", tid());
    other.send(gw.mgcp, &probe());
    assert!(
        other.recv(Duration::from_millis(600)).is_none(),
        "not a call agent yet"
    );
    // Add it and reload.
    std::fs::write(
        &cfg,
        format!(
            "call_agents = [\"{}\", \"{}\"]\n",
            gw.ca.addr(),
            other.addr()
        ),
    )
    .unwrap();
    let pid = gw.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let mut answered = false;
    for _ in 0..20 {
        other.send(gw.mgcp, &probe());
        if let Some((msgs, _, _)) = other.recv(Duration::from_millis(250)) {
            answered = msgs
                .iter()
                .any(|m| matches!(m, mgcp::Message::Response(r) if r.code.0 == 200));
            if answered {
                break;
            }
        }
    }
    assert!(answered, "the reloaded call agent is obeyed");
    // A broken file on reload keeps the running configuration.
    std::fs::write(&cfg, "call_agents = [\n").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gw.cmd(&probe()).code.0, 200);
}

#[test]
fn per_call_trace_logs_mgcp_and_media_of_that_call_only() {
    let log = std::env::temp_dir().join(format!("mgw-trace-{}.log", std::process::id()));
    let gw = Gateway::start_logged(
        &[
            "--log",
            "warn,mgw::calltrace=info",
            "--log-format",
            "json",
            "--trace-call",
            "feed",
        ],
        &log,
    );
    let http = gw.http.unwrap();
    // Traced from the command line: call feed. Turned on at run time: call beef.
    let put = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(http).unwrap();
        write!(s, "PUT /api/trace/BEEF HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    };
    assert!(put.starts_with("HTTP/1.1 200"), "{put}");
    let (_, list) = http_get(http, "/api/trace");
    assert!(list.contains("feed") && list.contains("beef"), "{list}");
    for call in ["feed", "beef", "cafe"] {
        let r = gw.cmd(&format!(
            "CRCX {} rtpbridge/20@mgw MGCP 1.0\r\nC: {call}\r\nM: recvonly\r\n",
            tid()
        ));
        assert_eq!(r.code.0, 200);
        let i = r.params.get(&ParamName::ConnectionId).unwrap().to_string();
        // DLCX by connection id only: the trace still knows the call.
        assert_eq!(
            gw.cmd(&format!(
                "DLCX {} rtpbridge/20@mgw MGCP 1.0\r\nI: {i}\r\n",
                tid()
            ))
            .code
            .0,
            250
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(&log).unwrap();
    let traced: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["target"] == "mgw::calltrace")
        .collect();
    let calls: Vec<&str> = traced
        .iter()
        .filter_map(|v| v["fields"]["call_id"].as_str())
        .collect();
    assert_eq!(calls.iter().filter(|c| **c == "feed").count(), 2, "{text}");
    assert_eq!(calls.iter().filter(|c| **c == "beef").count(), 2, "{text}");
    assert!(!calls.contains(&"cafe"), "untraced call logged: {text}");
    let crcx = traced
        .iter()
        .find(|v| v["fields"]["verb"] == "CRCX")
        .unwrap();
    assert!(crcx["fields"]["command"]
        .as_str()
        .unwrap()
        .contains("C: feed"));
    assert!(crcx["fields"]["response"]
        .as_str()
        .unwrap()
        .starts_with("200 "));
    // A bad call id is a 400 from the API.
    let bad = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(http).unwrap();
        write!(s, "PUT /api/trace/not-hex! HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    };
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn allow_from_admits_extra_command_sources() {
    let gw = Gateway::start_ready(&["--allow-from", "127.0.0.4/31"]);
    let probe = || format!("AUEP {} rtpbridge/1@mgw MGCP 1.0\r\n", tid());
    for ip in ["127.0.0.4", "127.0.0.5"] {
        let other = CallAgent::bind(&format!("{ip}:0"));
        other.send(gw.mgcp, &probe());
        let got = other.recv(Duration::from_secs(2));
        assert!(
            got.is_some(),
            "{ip} is inside 127.0.0.4/31 and must be answered"
        );
    }
    let stranger = CallAgent::bind("127.0.0.6:0");
    stranger.send(gw.mgcp, &probe());
    assert!(
        stranger.recv(Duration::from_millis(600)).is_none(),
        "127.0.0.6 is outside"
    );
    // A bad network is a clear start-up error.
    let (code, _, err) = mgw(&["run", "--allow-from", "10.0.0.0/99"], None);
    assert_eq!(code, 2);
    assert!(err.contains("allow_from"), "{err}");
}
