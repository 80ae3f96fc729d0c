//! What `mgw load` measured: collected while running ([`Recorder`]), then written as a
//! JSON document ([`Report`], via serde), a text summary ([`text`]) and an SVG chart
//! ([`svg`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use mgcp::{Response, Verb};
use serde::Serialize;

use super::audio::AudioReport;
use super::rtp::{RxReport, Tick, TxReport};
use super::stats::{codec_impairment, emodel, Histogram, Percentiles};
use super::LoadArgs;

/// Most failures listed one by one.
const MAX_FAILURES_LISTED: usize = 200;

/// One leg as the main thread saw it at the end of its call.
#[derive(Debug, Clone)]
pub(crate) struct LegOutcome {
    pub(crate) endpoint: Option<String>,
    pub(crate) connection_id: Option<String>,
    pub(crate) codec: String,
    pub(crate) payload_type: u8,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) gateway_media: Option<SocketAddr>,
    pub(crate) tx: Option<TxReport>,
    pub(crate) rx: Option<RxReport>,
    pub(crate) gateway_stats: Option<BTreeMap<String, i64>>,
}

/// One call at its end.
#[derive(Debug, Clone)]
pub(crate) struct CallOutcome {
    pub(crate) index: usize,
    pub(crate) call_id: String,
    pub(crate) start_s: f64,
    pub(crate) setup_ms: Option<f64>,
    pub(crate) media_s: Option<f64>,
    pub(crate) error: Option<String>,
    pub(crate) legs: Vec<LegOutcome>,
    pub(crate) ptime_ms: u32,
}

/// The run's settings, as recorded in the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConfigReport {
    gateway: String,
    call_agent: String,
    domain: String,
    mode: super::Mode,
    calls: u32,
    total: Option<u32>,
    rate: f64,
    hold_s: f64,
    duration_s: Option<f64>,
    codec_a: String,
    codec_b: String,
    ptime_ms: u32,
    audio: String,
    wildcard: String,
}

/// MGCP statistics of one verb.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct VerbReport {
    /// Transactions.
    pub(crate) count: u64,
    /// With a 2xx response.
    pub(crate) ok: u64,
    /// With an error response or none.
    pub(crate) failed: u64,
    /// Without any final response.
    pub(crate) timeouts: u64,
    /// Retransmissions.
    pub(crate) retransmissions: u64,
    /// Return codes seen and how often.
    pub(crate) return_codes: BTreeMap<String, u64>,
    /// Latency from first transmission to final response, ms.
    pub(crate) latency_ms: Percentiles,
    #[serde(skip)]
    latency_us: Histogram,
}

/// A failed transaction.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FailureReport {
    call_id: String,
    verb: String,
    /// The return code, or `None` when no response came.
    code: Option<u16>,
    comment: String,
}

/// MGCP totals.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct MgcpReport {
    /// Per verb.
    pub(crate) verbs: BTreeMap<String, VerbReport>,
    /// Failed transactions (the first 200).
    pub(crate) failures: Vec<FailureReport>,
    /// Commands from the gateway (RSIP, NTFY), answered 200.
    pub(crate) gateway_commands: BTreeMap<String, u64>,
    /// Datagrams that did not parse.
    pub(crate) unparsable: u64,
}

/// One direction of a call's media.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct DirectionReport {
    /// `a->b` or `b->a`.
    pub(crate) direction: String,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    /// Sent but never received.
    pub(crate) lost: u64,
    pub(crate) loss_pct: f64,
    /// RFC 3550 loss over the received sequence range.
    pub(crate) rfc3550_lost: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    pub(crate) jitter_ms: f64,
    pub(crate) jitter_max_ms: f64,
    pub(crate) delay_ms: Percentiles,
    /// Received packets whose send instant was not found.
    pub(crate) unmatched: u64,
    /// Received payloads that differ from the ones sent (transcoding).
    pub(crate) payload_changed: u64,
    pub(crate) ssrcs: u32,
    pub(crate) seq_offset: Option<u16>,
    pub(crate) payload_types: Vec<u8>,
    pub(crate) audio: AudioReport,
    /// E-model R factor and MOS (delay = median network delay + ptime).
    pub(crate) r_factor: f64,
    pub(crate) mos: f64,
    /// Sender lateness against the pacing deadlines, ms.
    pub(crate) pacing_late_ms: Percentiles,
}

/// One leg as reported.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LegReport {
    endpoint: Option<String>,
    connection_id: Option<String>,
    codec: String,
    payload_type: u8,
    local: Option<SocketAddr>,
    gateway_media: Option<SocketAddr>,
    /// The gateway's `P:` statistics from the DLCX response.
    gateway_stats: Option<BTreeMap<String, i64>>,
}

/// One call as reported.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CallReport {
    index: usize,
    call_id: String,
    /// `completed` or `failed`.
    state: String,
    error: Option<String>,
    start_s: f64,
    setup_ms: Option<f64>,
    media_s: Option<f64>,
    legs: Vec<LegReport>,
    directions: Vec<DirectionReport>,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TimelinePoint {
    pub(crate) t_s: u64,
    pub(crate) calls_active: usize,
    pub(crate) calls_up: u64,
    pub(crate) pps: u64,
    pub(crate) lost: u64,
    pub(crate) delay_p50_ms: f64,
    pub(crate) delay_p99_ms: f64,
    pub(crate) delay_max_ms: f64,
}

/// Totals.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Summary {
    pub(crate) elapsed_s: f64,
    pub(crate) calls_attempted: u64,
    pub(crate) calls_completed: u64,
    pub(crate) calls_failed: u64,
    pub(crate) setup_ms: Percentiles,
    pub(crate) packets_sent: u64,
    pub(crate) packets_received: u64,
    pub(crate) packets_lost: u64,
    pub(crate) loss_pct: f64,
    pub(crate) rfc3550_lost: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    pub(crate) unmatched: u64,
    pub(crate) payload_changed: u64,
    pub(crate) decode_errors: u64,
    pub(crate) jitter_ms_mean: f64,
    pub(crate) jitter_ms_max: f64,
    pub(crate) delay_ms: Percentiles,
    pub(crate) mos_min: f64,
    pub(crate) mos_mean: f64,
    pub(crate) pacing_late_ms: Percentiles,
}

/// A delay histogram bucket.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bucket {
    /// Inclusive upper bound, ms.
    pub(crate) le_ms: f64,
    pub(crate) count: u64,
}

/// The whole report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) tool: &'static str,
    pub(crate) version: &'static str,
    pub(crate) config: ConfigReport,
    pub(crate) summary: Summary,
    pub(crate) mgcp: MgcpReport,
    pub(crate) timeline: Vec<TimelinePoint>,
    pub(crate) delay_histogram: Vec<Bucket>,
    pub(crate) calls: Vec<CallReport>,
}

/// Collects everything while the run goes.
#[derive(Debug)]
pub(crate) struct Recorder {
    config: ConfigReport,
    mgcp: MgcpReport,
    timeline: Vec<TimelinePoint>,
    calls: Vec<CallOutcome>,
    calls_up: u64,
    done: u64,
    failed: u64,
    /// Unparsable datagrams from the gateway.
    pub(crate) garbage: u64,
}

impl Recorder {
    /// A recorder for a run with `args`.
    pub(crate) fn new(args: &LoadArgs, gateway: SocketAddr) -> Self {
        Recorder {
            config: ConfigReport {
                gateway: gateway.to_string(),
                call_agent: args.ca_bind.to_string(),
                domain: args.domain.clone(),
                mode: args.mode,
                calls: args.calls,
                total: args.total,
                rate: args.rate,
                hold_s: args.hold,
                duration_s: args.duration,
                codec_a: args.codec_a.clone(),
                codec_b: args.codec_b.clone(),
                ptime_ms: args.ptime,
                audio: match &args.audio {
                    Some(p) => p.display().to_string(),
                    None => format!("tone {} Hz", args.tone),
                },
                wildcard: args.wildcard.clone(),
            },
            mgcp: MgcpReport::default(),
            timeline: Vec::new(),
            calls: Vec::new(),
            calls_up: 0,
            done: 0,
            failed: 0,
            garbage: 0,
        }
    }

    /// A call's media started.
    pub(crate) fn call_up(&mut self) {
        self.calls_up += 1;
    }

    /// A call ended.
    pub(crate) fn call_done(&mut self, c: CallOutcome) {
        if c.error.is_some() {
            self.failed += 1;
        } else {
            self.done += 1;
        }
        self.calls.push(c);
    }

    /// A transaction ended (`response` is `None` after the last retransmission).
    pub(crate) fn transaction(
        &mut self,
        verb: Verb,
        response: Option<&Response>,
        latency: Duration,
        retransmits: u32,
    ) {
        let v = self
            .mgcp
            .verbs
            .entry(verb.as_str().to_string())
            .or_default();
        v.count += 1;
        v.retransmissions += u64::from(retransmits);
        match response {
            Some(r) => {
                *v.return_codes.entry(r.code.to_string()).or_default() += 1;
                v.latency_us.record(latency.as_micros() as u64);
                if r.code.is_success() {
                    v.ok += 1;
                } else {
                    v.failed += 1;
                }
            }
            None => {
                v.failed += 1;
                v.timeouts += 1;
            }
        }
    }

    /// A transaction failed with an error code.
    pub(crate) fn failure(&mut self, call_id: &str, verb: Verb, r: &Response) {
        if self.mgcp.failures.len() < MAX_FAILURES_LISTED {
            self.mgcp.failures.push(FailureReport {
                call_id: call_id.to_string(),
                verb: verb.as_str().to_string(),
                code: Some(r.code.0),
                comment: r.comment.clone(),
            });
        }
    }

    /// A transaction got no response.
    pub(crate) fn timeout(&mut self, call_id: &str, verb: Verb) {
        if self.mgcp.failures.len() < MAX_FAILURES_LISTED {
            self.mgcp.failures.push(FailureReport {
                call_id: call_id.to_string(),
                verb: verb.as_str().to_string(),
                code: None,
                comment: "no response".into(),
            });
        }
    }

    /// The gateway sent a command.
    pub(crate) fn gateway_command(&mut self, verb: Verb) {
        *self
            .mgcp
            .gateway_commands
            .entry(verb.as_str().to_string())
            .or_default() += 1;
    }

    /// Records a per-second tick and returns the progress line.
    pub(crate) fn tick(&mut self, t: &Tick, active: usize) -> String {
        let expected = t.packets + t.lost;
        let loss = if expected == 0 {
            0.0
        } else {
            100.0 * t.lost as f64 / expected as f64
        };
        let p = t.delay_us.summary_ms();
        self.timeline.push(TimelinePoint {
            t_s: t.second,
            calls_active: active,
            calls_up: self.calls_up,
            pps: t.packets,
            lost: t.lost,
            delay_p50_ms: p.p50,
            delay_p99_ms: p.p99,
            delay_max_ms: p.max,
        });
        format!(
            "[{:>4}s] calls up {} active {} done {} failed {} | rx {} pps, loss {:.2}% ({} total), p99 delay {:.2} ms",
            t.second, self.calls_up, active, self.done, self.failed, t.packets, loss, t.total_lost, p.p99
        )
    }

    /// Builds the report.
    pub(crate) fn finish(mut self, elapsed: Duration) -> Report {
        let mut s = Summary {
            elapsed_s: elapsed.as_secs_f64(),
            ..Summary::default()
        };
        let mut delay = Histogram::default();
        let mut late = Histogram::default();
        let mut setup = Histogram::default();
        let (mut mos_sum, mut mos_n, mut jit_sum) = (0.0, 0u64, 0.0);
        s.mos_min = f64::NAN;
        self.calls.sort_by_key(|c| c.index);
        let mut calls = Vec::with_capacity(self.calls.len());
        for c in &self.calls {
            s.calls_attempted += 1;
            if c.error.is_some() {
                s.calls_failed += 1;
            } else {
                s.calls_completed += 1;
            }
            if let Some(ms) = c.setup_ms {
                setup.record((ms * 1000.0) as u64);
            }
            let mut directions = Vec::new();
            for (from, to, name) in [(0usize, 1usize, "a->b"), (1, 0, "b->a")] {
                let (Some(tx), Some(rx)) = (&c.legs[from].tx, &c.legs[to].rx) else {
                    continue;
                };
                let d = direction(
                    name,
                    tx,
                    rx,
                    &c.legs[from].codec,
                    &c.legs[to].codec,
                    c.ptime_ms,
                );
                s.packets_sent += d.sent;
                s.packets_received += d.received;
                s.packets_lost += d.lost;
                s.rfc3550_lost += d.rfc3550_lost;
                s.duplicates += d.duplicates;
                s.reordered += d.reordered;
                s.unmatched += d.unmatched;
                s.payload_changed += d.payload_changed;
                s.decode_errors += d.audio.decode_errors;
                s.jitter_ms_max = s.jitter_ms_max.max(d.jitter_max_ms);
                jit_sum += d.jitter_ms;
                s.mos_min = if s.mos_min.is_nan() {
                    d.mos
                } else {
                    s.mos_min.min(d.mos)
                };
                mos_sum += d.mos;
                mos_n += 1;
                delay.merge(&rx.delay_us);
                late.merge(&tx.late_us);
                directions.push(d);
            }
            calls.push(CallReport {
                index: c.index,
                call_id: c.call_id.clone(),
                state: if c.error.is_some() {
                    "failed"
                } else {
                    "completed"
                }
                .into(),
                error: c.error.clone(),
                start_s: c.start_s,
                setup_ms: c.setup_ms,
                media_s: c.media_s,
                legs: c
                    .legs
                    .iter()
                    .map(|l| LegReport {
                        endpoint: l.endpoint.clone(),
                        connection_id: l.connection_id.clone(),
                        codec: l.codec.clone(),
                        payload_type: l.payload_type,
                        local: l.local,
                        gateway_media: l.gateway_media,
                        gateway_stats: l.gateway_stats.clone(),
                    })
                    .collect(),
                directions,
            });
        }
        if s.mos_min.is_nan() {
            s.mos_min = 0.0;
        }
        if mos_n > 0 {
            s.mos_mean = mos_sum / mos_n as f64;
            s.jitter_ms_mean = jit_sum / mos_n as f64;
        }
        s.loss_pct = pct(s.packets_lost, s.packets_sent);
        s.delay_ms = delay.summary_ms();
        s.pacing_late_ms = late.summary_ms();
        s.setup_ms = setup.summary_ms();
        for v in self.mgcp.verbs.values_mut() {
            v.latency_ms = v.latency_us.summary_ms();
        }
        self.mgcp.unparsable = self.garbage;
        Report {
            tool: "mgw load",
            version: env!("CARGO_PKG_VERSION"),
            config: self.config,
            summary: s,
            mgcp: self.mgcp,
            timeline: self.timeline,
            delay_histogram: delay
                .buckets()
                .into_iter()
                .map(|(le, count)| Bucket {
                    le_ms: le as f64 / 1000.0,
                    count,
                })
                .collect(),
            calls,
        }
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn direction(
    name: &str,
    tx: &TxReport,
    rx: &RxReport,
    codec_from: &str,
    codec_to: &str,
    ptime_ms: u32,
) -> DirectionReport {
    let lost = tx.packets.saturating_sub(rx.received);
    let loss_pct = pct(lost, tx.packets);
    let delay = rx.delay_us.summary_ms();
    // Tandem coding adds impairments; robustness is the weaker codec's.
    let (ie_a, bpl_a) = codec_impairment(codec_from);
    let (ie_b, bpl_b) = codec_impairment(codec_to);
    let (ie, bpl) = if codec_from.eq_ignore_ascii_case(codec_to) {
        (ie_a, bpl_a)
    } else {
        (ie_a + ie_b, bpl_a.min(bpl_b))
    };
    let (r, mos) = emodel(delay.p50 + f64::from(ptime_ms), loss_pct, ie, bpl);
    DirectionReport {
        direction: name.to_string(),
        sent: tx.packets,
        received: rx.received,
        lost,
        loss_pct,
        rfc3550_lost: rx.lost,
        duplicates: rx.duplicates,
        reordered: rx.reordered,
        jitter_ms: rx.jitter_ms,
        jitter_max_ms: rx.jitter_max_ms,
        delay_ms: delay,
        unmatched: rx.unmatched,
        payload_changed: rx.payload_changed,
        ssrcs: rx.ssrcs,
        seq_offset: rx.seq_offset,
        payload_types: rx.payload_types.clone(),
        audio: rx.audio,
        r_factor: r,
        mos,
        pacing_late_ms: tx.late_us.summary_ms(),
    }
}

/// The text report printed at the end.
pub(crate) fn text(r: &Report) -> String {
    let s = &r.summary;
    let mut o = String::new();
    let c = &r.config;
    let _ = writeln!(
        o,
        "mgw load: {} mode against {} ({} / {}, ptime {} ms, {})",
        match c.mode {
            super::Mode::Bridge => "bridge",
            super::Mode::Tdm => "tdm",
        },
        c.gateway,
        c.codec_a,
        c.codec_b,
        c.ptime_ms,
        c.audio
    );
    let _ = writeln!(
        o,
        "calls: {} attempted, {} completed, {} failed in {:.1} s; setup p50 {:.2} ms p99 {:.2} ms",
        s.calls_attempted,
        s.calls_completed,
        s.calls_failed,
        s.elapsed_s,
        s.setup_ms.p50,
        s.setup_ms.p99
    );
    let _ = writeln!(
        o,
        "rtp: {} sent, {} received, {} lost ({:.3}%), rfc3550 lost {}, {} duplicates, {} reordered, {} unmatched",
        s.packets_sent, s.packets_received, s.packets_lost, s.loss_pct, s.rfc3550_lost, s.duplicates, s.reordered, s.unmatched
    );
    let d = &s.delay_ms;
    let _ = writeln!(
        o,
        "delay ms: p50 {:.3} p95 {:.3} p99 {:.3} max {:.3} mean {:.3}; jitter mean {:.3} ms max {:.3} ms",
        d.p50, d.p95, d.p99, d.max, d.mean, s.jitter_ms_mean, s.jitter_ms_max
    );
    let _ = writeln!(
        o,
        "quality: MOS mean {:.2} min {:.2}; pacing late p50 {:.3} ms p99 {:.3} ms; decode errors {}",
        s.mos_mean, s.mos_min, s.pacing_late_ms.p50, s.pacing_late_ms.p99, s.decode_errors
    );
    let _ = writeln!(o, "mgcp:");
    for (verb, v) in &r.mgcp.verbs {
        let codes: Vec<String> = v
            .return_codes
            .iter()
            .map(|(c, n)| format!("{c}x{n}"))
            .collect();
        let _ = writeln!(
            o,
            "  {verb}: {} ({} ok, {} failed, {} timeouts, {} retransmissions) latency p50 {:.3} p95 {:.3} p99 {:.3} max {:.3} ms; codes {}",
            v.count, v.ok, v.failed, v.timeouts, v.retransmissions, v.latency_ms.p50, v.latency_ms.p95, v.latency_ms.p99, v.latency_ms.max, codes.join(" ")
        );
    }
    for f in r.mgcp.failures.iter().take(10) {
        let code = f.code.map_or("---".to_string(), |c| format!("{c:03}"));
        let _ = writeln!(
            o,
            "  failed: call {} {} {} {}",
            f.call_id, f.verb, code, f.comment
        );
    }
    for call in r.calls.iter().filter(|c| c.error.is_some()).take(10) {
        let _ = writeln!(
            o,
            "  call {} ({}): {}",
            call.index,
            call.call_id,
            call.error.as_deref().unwrap_or("")
        );
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum ≥ `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

const W: f64 = 900.0;
const PH: f64 = 200.0;
const ML: f64 = 70.0;
const MR: f64 = 20.0;

/// Draws one panel's frame and axis labels; returns the plot rectangle (x0, y0, w, h).
fn panel(
    o: &mut String,
    top: f64,
    title: &str,
    ymax: f64,
    yunit: &str,
    xlabel: &str,
    xmax: f64,
) -> (f64, f64, f64, f64) {
    let (x0, y0, w, h) = (ML, top + 30.0, W - ML - MR, PH - 60.0);
    let _ = writeln!(
        o,
        r#"<text x="{ML}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        top + 18.0,
        esc(title)
    );
    let _ = writeln!(
        o,
        r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="#fafafa" stroke="#999"/>"##
    );
    for i in 0..=4 {
        let y = y0 + h - h * f64::from(i) / 4.0;
        let v = ymax * f64::from(i) / 4.0;
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            x0 + w
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{} {}</text>"#,
            x0 - 4.0,
            y + 3.0,
            fmt_num(v),
            yunit
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{x0}" y="{:.1}" font-size="10">0</text>"#,
        y0 + h + 12.0
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{} {}</text>"#,
        x0 + w,
        y0 + h + 12.0,
        fmt_num(xmax),
        esc(xlabel)
    );
    (x0, y0, w, h)
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Delay over time (p50, p99, max per second), loss over time (packets per second) and
/// the delay histogram, as one SVG document.
pub(crate) fn svg(r: &Report) -> String {
    let mut o = String::new();
    let height = 3.0 * PH + 20.0;
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{height}" fill="white"/>"#);
    let tl = &r.timeline;
    let tmax = tl.iter().map(|p| p.t_s).max().unwrap_or(1).max(1) as f64;
    // Delay over time.
    let dmax = nice(tl.iter().map(|p| p.delay_max_ms).fold(0.0, f64::max));
    let (x0, y0, w, h) = panel(
        &mut o,
        0.0,
        "One-way delay per second (p50 blue, p99 orange, max red)",
        dmax,
        "ms",
        "s",
        tmax,
    );
    for (key, colour) in [(0usize, "#1f77b4"), (1, "#ff7f0e"), (2, "#d62728")] {
        let pts: Vec<String> = tl
            .iter()
            .filter(|p| p.pps > 0)
            .map(|p| {
                let v = [p.delay_p50_ms, p.delay_p99_ms, p.delay_max_ms][key];
                format!(
                    "{:.1},{:.1}",
                    x0 + w * p.t_s as f64 / tmax,
                    y0 + h - h * (v / dmax).min(1.0)
                )
            })
            .collect();
        if !pts.is_empty() {
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                pts.join(" ")
            );
        }
    }
    // Loss over time.
    let lmax = nice(tl.iter().map(|p| p.lost as f64).fold(0.0, f64::max));
    let (x0, y0, w, h) = panel(&mut o, PH, "Packets lost per second", lmax, "", "s", tmax);
    let bw = (w / tmax).clamp(1.0, 20.0);
    for p in tl.iter().filter(|p| p.lost > 0) {
        let bh = h * (p.lost as f64 / lmax).min(1.0);
        let _ = writeln!(
            o,
            r##"<rect x="{:.1}" y="{:.1}" width="{bw:.1}" height="{bh:.1}" fill="#d62728"/>"##,
            x0 + w * p.t_s as f64 / tmax - bw,
            y0 + h - bh
        );
    }
    if tl.iter().all(|p| p.lost == 0) {
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">no loss</text>"#,
            x0 + w / 2.0,
            y0 + h / 2.0
        );
    }
    // Delay histogram.
    let hist = &r.delay_histogram;
    let xmax = nice(hist.iter().map(|b| b.le_ms).fold(0.0, f64::max));
    let cmax = nice(hist.iter().map(|b| b.count as f64).fold(0.0, f64::max));
    let (x0, y0, w, h) = panel(&mut o, 2.0 * PH, "Delay histogram", cmax, "", "ms", xmax);
    let mut prev = 0.0;
    for b in hist {
        let xa = x0 + w * (prev / xmax);
        let xb = x0 + w * (b.le_ms / xmax);
        let bh = h * (b.count as f64 / cmax).min(1.0);
        let _ = writeln!(
            o,
            r##"<rect x="{xa:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#1f77b4"/>"##,
            y0 + h - bh,
            (xb - xa).max(1.0)
        );
        prev = b.le_ms;
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(0.37), 0.5);
        assert_eq!(nice(3.0), 5.0);
        assert_eq!(nice(101.0), 200.0);
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(20.0), "20");
    }

    #[test]
    fn direction_maths() {
        let mut tx = TxReport {
            packets: 100,
            ..TxReport::default()
        };
        tx.late_us.record(100);
        let mut rx = RxReport {
            received: 99,
            ..RxReport::default()
        };
        for _ in 0..99 {
            rx.delay_us.record(500);
        }
        let d = direction("a->b", &tx, &rx, "PCMA", "PCMA", 20);
        assert_eq!((d.lost, d.loss_pct), (1, 1.0));
        assert!((d.delay_ms.p50 - 0.5).abs() < 0.02);
        // G.711, 1 % loss, ~20 ms: R ≈ 93.2 − 0.5 − 3.65.
        assert!((d.r_factor - 89.0).abs() < 0.2, "{}", d.r_factor);
        let t = direction("a->b", &tx, &rx, "PCMU", "opus", 20);
        assert!(t.r_factor < d.r_factor);
    }
}
