//! `mgw load` against the real gateway on loopback: the load tool is the gateway's call
//! agent, places calls in bridge and TDM mode, and its JSON report must show every call
//! completed with no loss and sane delays.

mod support;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Gateway;

/// A free loopback UDP port for the load tool's call-agent socket (bound, read, released).
fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// Runs `mgw load` with `extra` against `gw` from `ca`; returns (exit code, JSON, stdout).
fn load(gw: &Gateway, ca: &str, extra: &[&str]) -> (i32, Value, String) {
    let dir = std::env::temp_dir().join(format!("mgw-load-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let json = dir.join("report.json");
    let svg = dir.join("report.svg");
    let gateway = gw.mgcp.to_string();
    let mut args = vec![
        "load",
        "--gateway",
        &gateway,
        "--ca-bind",
        ca,
        "--domain",
        "mgw",
        "--quiet",
        "--deadline",
        "15",
    ];
    let (j, s) = (
        json.to_string_lossy().to_string(),
        svg.to_string_lossy().to_string(),
    );
    args.extend_from_slice(&["--json", &j, "--svg", &s]);
    args.extend_from_slice(extra);
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mgw"))
        .args(&args)
        .output()
        .expect("run mgw load");
    assert!(
        t0.elapsed() < Duration::from_secs(18),
        "mgw load took too long"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    }))
    .expect("valid JSON");
    let svg_text = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(svg_text.starts_with("<svg") && svg_text.trim_end().ends_with("</svg>"));
    assert!(svg_text.contains("Delay histogram"));
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.code().unwrap_or(-1), report, stdout)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// The checks both modes share: 4 calls, all completed, every packet through, sane delay.
/// `relayed` is true where the gateway forwards our packets as they are (a bridge): then
/// every packet must come back exactly once and match its send. A TDM path re-originates
/// the stream from its own clock (silence before our audio arrives and after it stops),
/// so there received ≈ sent is the test.
fn check_clean_run(code: i32, r: &Value, stdout: &str, codec: &str, relayed: bool) {
    let s = &r["summary"];
    assert_eq!(code, 0, "exit code; report:\n{stdout}");
    assert_eq!(u(&s["calls_attempted"]), 4, "{stdout}");
    assert_eq!(u(&s["calls_completed"]), 4, "{stdout}");
    assert_eq!(u(&s["calls_failed"]), 0, "{stdout}");
    let sent = u(&s["packets_sent"]);
    let recv = u(&s["packets_received"]);
    // 4 calls × 2 directions × 2 s at 50 packets/s ≈ 800.
    assert!((700..=900).contains(&sent), "sent {sent}");
    assert_eq!(u(&s["rfc3550_lost"]), 0, "{stdout}");
    assert_eq!(u(&s["duplicates"]), 0);
    assert_eq!(u(&s["decode_errors"]), 0);
    let d = &s["delay_ms"];
    let (p50, p95, p99, max) = (f(&d["p50"]), f(&d["p95"]), f(&d["p99"]), f(&d["max"]));
    assert!(p50 > 0.0 && p50 <= p95 && p95 <= p99 && p99 <= max, "{d}");
    assert!(max < 1000.0, "max delay {max} ms");
    if relayed {
        assert_eq!(recv, sent, "{stdout}");
        assert_eq!(u(&s["packets_lost"]), 0);
        assert_eq!(u(&s["unmatched"]), 0, "every packet matched to its send");
        assert_eq!(u(&d["count"]), recv);
        assert!(p50 < 20.0, "loopback median delay {p50} ms");
    } else {
        assert!(recv * 10 >= sent * 9 && recv * 10 <= sent * 13, "{stdout}");
        assert!(u(&s["packets_lost"]) * 20 <= sent, "{stdout}");
        assert!(
            u(&d["count"]) * 4 >= recv * 3,
            "most packets matched: {stdout}"
        );
        assert!(p50 < 150.0, "median delay {p50} ms (G.114 budget)");
    }
    let mos = f(&s["mos_min"]);
    assert!(mos > 4.0, "MOS {mos}");
    // MGCP: 8 CRCX and 8 DLCX, all successful, with latency percentiles.
    let crcx = &r["mgcp"]["verbs"]["CRCX"];
    let dlcx = &r["mgcp"]["verbs"]["DLCX"];
    assert_eq!((u(&crcx["count"]), u(&crcx["ok"])), (8, 8), "{crcx}");
    assert_eq!((u(&dlcx["count"]), u(&dlcx["ok"])), (8, 8), "{dlcx}");
    assert!(f(&crcx["latency_ms"]["p99"]) > 0.0);
    assert!(r["mgcp"]["failures"]
        .as_array()
        .expect("failures")
        .is_empty());
    // Per call: both directions with audio that decodes back to the tone, and the
    // gateway's own counters from the DLCX response.
    let calls = r["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 4);
    for c in calls {
        assert_eq!(c["state"], "completed", "{c}");
        let dirs = c["directions"].as_array().expect("directions");
        assert_eq!(dirs.len(), 2);
        for d in dirs {
            if relayed {
                assert_eq!(u(&d["lost"]), 0, "{d}");
            }
            assert!(u(&d["sent"]) > 80, "{d}");
            assert!(f(&d["audio"]["tone_ratio"]) > 0.9, "{d}");
            assert!(f(&d["jitter_ms"]) < 20.0, "{d}");
        }
        for leg in c["legs"].as_array().expect("legs") {
            assert_eq!(leg["codec"], codec);
            let st = &leg["gateway_stats"];
            assert!(u(&st["PR"]) > 80 && u(&st["PS"]) > 80, "gateway P: {st}");
        }
    }
    // The timeline has one point per second with traffic.
    let tl = r["timeline"].as_array().expect("timeline");
    assert!(tl.iter().any(|p| u(&p["pps"]) > 0), "{tl:?}");
    assert!(!r["delay_histogram"]
        .as_array()
        .expect("histogram")
        .is_empty());
}

#[test]
fn load_bridge_and_tdm_against_mgw() {
    let ca_port = free_port();
    let ca = format!("127.0.0.1:{ca_port}");
    let gw = Gateway::start(&["--call-agent", &ca]);

    let (code, r, out) = load(
        &gw,
        &ca,
        &[
            "--calls", "4", "--rate", "10", "--hold", "2", "--mode", "bridge",
        ],
    );
    check_clean_run(code, &r, &out, "PCMU", true);
    // The gateway's start-up RSIP reached the load tool (it retransmits until answered)
    // or had been answered before; either way the tool never failed on it.
    assert_eq!(r["config"]["mode"], "bridge");

    let (code, r, out) = load(
        &gw,
        &ca,
        &[
            "--calls",
            "4",
            "--rate",
            "10",
            "--hold",
            "2",
            "--mode",
            "tdm",
            "--codec-a",
            "PCMA",
            "--codec-b",
            "PCMA",
        ],
    );
    check_clean_run(code, &r, &out, "PCMA", false);
    let eps: Vec<&str> = r["calls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["legs"].as_array().unwrap().iter())
        .filter_map(|l| l["endpoint"].as_str())
        .collect();
    assert!(
        eps.contains(&"ds/e1-1/1@mgw") && eps.contains(&"ds/e1-2/1@mgw"),
        "{eps:?}"
    );
}

#[test]
fn load_reports_failures_and_exits_non_zero() {
    let ca_port = free_port();
    let ca = format!("127.0.0.1:{ca_port}");
    let gw = Gateway::start(&["--call-agent", &ca]);
    // Endpoints the gateway does not have: every CRCX is refused (500, unknown endpoint).
    let bad = [
        "--calls",
        "2",
        "--rate",
        "20",
        "--hold",
        "1",
        "--wildcard",
        "none",
        "--endpoint-prefix",
        "nosuch/",
    ];
    let (code, r, out) = load(&gw, &ca, &bad);
    assert_eq!(code, 1, "{out}");
    assert_eq!(u(&r["summary"]["calls_failed"]), 2);
    assert_eq!(u(&r["summary"]["packets_sent"]), 0);
    let fails = r["mgcp"]["failures"].as_array().unwrap();
    assert_eq!(fails.len(), 2);
    assert_eq!(u(&fails[0]["code"]), 500, "{fails:?}");
    assert_eq!(u(&r["mgcp"]["verbs"]["CRCX"]["return_codes"]["500"]), 2);
    assert!(out.contains("CRCX leg A: 500"), "{out}");
    // Allowing the failures makes it a pass.
    let (code, _, out) = load(
        &gw,
        &ca,
        &[
            "--calls",
            "2",
            "--rate",
            "20",
            "--hold",
            "1",
            "--mode",
            "tdm",
            "--max-failures",
            "2",
        ],
    );
    assert_eq!(code, 0, "{out}");
}
