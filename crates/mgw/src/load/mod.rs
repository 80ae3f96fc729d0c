//! `mgw load`: a SIPp-style load generator for MGCP media gateways.
//!
//! It plays the call agent (one UDP socket, [`client`]) and both RTP peers of every call
//! (one UDP socket per leg, [`rtp`]): calls are set up at `--rate` per second up to
//! `--calls` at once, stream real audio ([`audio`]) for `--hold` seconds, and are torn
//! down with DLCX, whose `P:` statistics are kept. Everything measured ([`stats`]) ends in
//! a text report, a JSON file and an SVG chart ([`report`]).
//!
//! Threads: the main thread runs the call state machine and the MGCP socket; one sender
//! thread paces every leg's packets on absolute deadlines; one receiver thread polls every
//! leg's socket. They exchange owned messages over bounded channels; the only shared
//! state is each leg's append-only send log of atomics.
//!
//! Modes: `bridge` puts both legs of a call on one IP-to-IP endpoint (`rtpbridge/$@gw`,
//! or `rtpbridge/*@mgw` for osmo-mgw, whose `Z:` names the endpoint for the second leg);
//! `tdm` goes IP → `ds/e1-1/n` → `ds/e1-2/n` → IP through back-to-back spans.

pub(crate) mod audio;
pub(crate) mod client;
pub(crate) mod report;
pub(crate) mod rtp;
pub(crate) mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mgcp::params::ConnectionParameters;
use mgcp::{Command, EndpointName, ParamName, Response, TransactionId, Verb};
use mgw_media::codec::CodecKind;

use self::audio::{Frames, Meter, Source};
use self::client::{Client, ClientEvent, Timers};
use self::report::{CallOutcome, LegOutcome, Recorder};
use self::rtp::{RtpEvent, RxCmd, RxHandle, RxReport, RxSpec, SendLog, TxCmd, TxReport, TxSpec};

/// How calls cross the gateway.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Two connections on one IP-to-IP bridge endpoint.
    Bridge,
    /// IP → ds/e1-1/n → ds/e1-2/n → IP.
    Tdm,
}

/// Arguments of `mgw load`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct LoadArgs {
    /// The gateway's MGCP address.
    #[arg(
        long,
        short = 'g',
        default_value = "127.0.0.1:2427",
        value_name = "HOST:PORT"
    )]
    pub(crate) gateway: String,
    /// Local MGCP address (the gateway must list it as its call agent).
    #[arg(long, default_value = "127.0.0.1:2727", value_name = "IP:PORT")]
    pub(crate) ca_bind: SocketAddr,
    /// Domain part of the gateway's endpoint names.
    #[arg(long, default_value = "mgw")]
    pub(crate) domain: String,
    /// Address the RTP peers bind to and advertise.
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub(crate) rtp_ip: IpAddr,
    /// Calls up at the same time (at most).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) calls: u32,
    /// Calls to place in all [default: --calls, or unlimited with --duration].
    #[arg(long, value_name = "N")]
    pub(crate) total: Option<u32>,
    /// New calls per second.
    #[arg(long, default_value_t = 10.0, value_name = "R")]
    pub(crate) rate: f64,
    /// How long each call streams audio, seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub(crate) hold: f64,
    /// Keep placing calls for this long, seconds.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) duration: Option<f64>,
    /// bridge (rtpbridge endpoints) or tdm (ds/e1-1/n to ds/e1-2/n).
    #[arg(long, value_enum, default_value_t = Mode::Bridge)]
    pub(crate) mode: Mode,
    /// Codec of leg A: PCMU, PCMA, G722, L16 or opus.
    #[arg(long, default_value = "PCMU", value_name = "NAME")]
    pub(crate) codec_a: String,
    /// Codec of leg B.
    #[arg(long, default_value = "PCMU", value_name = "NAME")]
    pub(crate) codec_b: String,
    /// Packetisation, ms (must divide 3000).
    #[arg(long, default_value_t = 20, value_name = "MS")]
    pub(crate) ptime: u32,
    /// Tone frequency, Hz (unless --audio).
    #[arg(long, default_value_t = 1000.0, value_name = "HZ")]
    pub(crate) tone: f64,
    /// A WAV file (16-bit PCM, any rate, resampled) to stream instead of the tone.
    #[arg(long, value_name = "FILE")]
    pub(crate) audio: Option<PathBuf>,
    /// Local-name prefix of bridge endpoints.
    #[arg(long, default_value = "rtpbridge/", value_name = "PREFIX")]
    pub(crate) endpoint_prefix: String,
    /// Wildcard for the first CRCX of a bridge call: `$` (RFC 3435 "any"), `*` (osmo-mgw),
    /// or `none` to number endpoints 1..=--endpoints ourselves.
    #[arg(long, default_value = "$", value_name = "$|*|none")]
    pub(crate) wildcard: String,
    /// With --wildcard none: how many bridge endpoints there are.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub(crate) endpoints: u32,
    /// With --wildcard none: write endpoint numbers in hex (osmo-mgw).
    #[arg(long)]
    pub(crate) hex: bool,
    /// TDM mode: local-name prefixes of the two spans and their channel count.
    #[arg(long, default_value = "ds/e1-1/", value_name = "PREFIX")]
    pub(crate) span_a: String,
    /// TDM mode: the second span.
    #[arg(long, default_value = "ds/e1-2/", value_name = "PREFIX")]
    pub(crate) span_b: String,
    /// TDM mode: channels per span.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub(crate) channels: u32,
    /// Wait this long after the last packet before reading the statistics and DLCX, ms.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub(crate) drain_ms: u64,
    /// Exit non-zero when more calls than this fail.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) max_failures: u32,
    /// Also exit non-zero when more than this percentage of packets is lost.
    #[arg(long, value_name = "PCT")]
    pub(crate) max_loss: Option<f64>,
    /// Give up after this many seconds in all [default: the planned time + 30 s].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) deadline: Option<f64>,
    /// MGCP retransmissions before a transaction fails (RFC 3435 Max2 is 7).
    #[arg(long, default_value_t = 7, value_name = "N")]
    pub(crate) retransmits: u32,
    /// Write the full report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Draw delay and loss over time and a delay histogram as SVG here.
    #[arg(long, value_name = "FILE")]
    pub(crate) svg: Option<PathBuf>,
    /// No progress lines.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
}

/// A checked codec choice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodecChoice {
    kind: CodecKind,
    /// The payload type we offer.
    pt: u8,
}

fn parse_codec(s: &str) -> Result<CodecChoice, String> {
    let kind = match s.to_ascii_uppercase().as_str() {
        "PCMU" => CodecKind::Pcmu,
        "PCMA" => CodecKind::Pcma,
        "G722" => CodecKind::G722,
        "L16" => CodecKind::L16 { rate: 8000 },
        "OPUS" => CodecKind::Opus,
        _ => return Err(format!("codec {s:?}: use PCMU, PCMA, G722, L16 or opus")),
    };
    let pt = kind.static_payload_type().unwrap_or(match kind {
        CodecKind::Opus => 96,
        _ => 97,
    });
    Ok(CodecChoice { kind, pt })
}

fn rtpmap(kind: CodecKind) -> String {
    let mut s = format!("{}/{}", kind.encoding_name(), kind.rtp_clock_rate());
    if kind.rtp_channels() > 1 {
        s.push_str(&format!("/{}", kind.rtp_channels()));
    }
    s
}

/// Where the gateway wants a leg's RTP and which payload type it chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SdpAnswer {
    addr: SocketAddr,
    pt: Option<u8>,
}

/// Reads `c=` and `m=audio` from an SDP answer; picks the payload type the answer maps to
/// `kind` (by rtpmap, else by static number).
pub(crate) fn parse_sdp_answer(sdp: &str, kind: CodecKind) -> Result<SdpAnswer, String> {
    let mut ip: Option<IpAddr> = None;
    let mut media: Option<(u16, Vec<u8>)> = None;
    let mut maps: Vec<(u8, String)> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("c=") {
            let addr = c.split_whitespace().nth(2).unwrap_or("");
            // Session-level or media-level: the last one wins (one audio stream).
            if let Ok(a) = addr.split('/').next().unwrap_or("").parse() {
                ip = Some(a);
            }
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            let mut it = m.split_whitespace();
            let port = it
                .next()
                .and_then(|p| p.split('/').next()?.parse().ok())
                .ok_or_else(|| format!("bad m= line {line:?}"))?;
            let pts = it.skip(1).filter_map(|p| p.parse().ok()).collect();
            media = Some((port, pts));
        } else if let Some(r) = line.strip_prefix("a=rtpmap:") {
            if let Some((pt, enc)) = r.split_once(' ') {
                if let Ok(pt) = pt.parse() {
                    maps.push((pt, enc.trim().to_string()));
                }
            }
        }
    }
    let ip = ip.ok_or("SDP answer has no c= address")?;
    let (port, pts) = media.ok_or("SDP answer has no m=audio line")?;
    let by_map = maps
        .iter()
        .find(|(pt, enc)| pts.contains(pt) && CodecKind::from_rtpmap(enc) == Ok(kind))
        .map(|(pt, _)| *pt);
    let by_static = kind.static_payload_type().filter(|pt| pts.contains(pt));
    Ok(SdpAnswer {
        addr: SocketAddr::new(ip, port),
        pt: by_map.or(by_static),
    })
}

/// A small xorshift generator for call ids and SSRCs (not for anything secret).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9);
        Rng(t ^ u64::from(std::process::id()).rotate_left(32) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first CRCX.
    CrcxA,
    /// Waiting for the second CRCX.
    CrcxB,
    /// Streaming until the instant.
    Holding(Instant),
    /// Senders stopped; waiting for packets in flight until the instant.
    Draining(Instant),
    /// DLCX sent and/or reports awaited.
    Deleting,
    /// Finished.
    Done,
}

#[derive(Debug)]
struct Leg {
    id: u32,
    sock: UdpSocket,
    /// Holds RTP+1 so the gateway's RTCP for this leg arrives nowhere else.
    _rtcp: UdpSocket,
    codec: CodecChoice,
    log: Arc<SendLog>,
    endpoint: Option<String>,
    conn_id: Option<String>,
    gateway_media: Option<SocketAddr>,
    pt: u8,
    rtp_started: bool,
    tx: Option<TxReport>,
    rx: Option<RxReport>,
    gw_stats: Option<Vec<(String, i64)>>,
}

#[derive(Debug)]
struct Call {
    index: usize,
    call_id: String,
    slot: Option<u32>,
    phase: Phase,
    started: Instant,
    established: Option<Instant>,
    ended: Option<Instant>,
    legs: [Leg; 2],
    /// Teardown asked for while a CRCX was outstanding.
    stop_asked: bool,
    dlcx_pending: u8,
    reports_pending: u8,
    error: Option<String>,
}

/// Transaction tags: call index × 4 + kind.
const TAG_CRCX_A: u64 = 0;
const TAG_CRCX_B: u64 = 1;
const TAG_DLCX_A: u64 = 2;

struct Run {
    args: LoadArgs,
    mode: Mode,
    codecs: [CodecChoice; 2],
    frames: [Arc<Frames>; 2],
    tone: Option<f64>,
    wildcard: Option<char>,
    epoch: Instant,
    sock: UdpSocket,
    gateway: SocketAddr,
    client: Client,
    calls: Vec<Call>,
    free_slots: BTreeSet<u32>,
    rng: Rng,
    tx: SyncSender<TxCmd>,
    rx: RxHandle,
    events: Receiver<RtpEvent>,
    rec: Recorder,
    stopping: bool,
}

impl Run {
    fn active(&self) -> usize {
        self.calls.iter().filter(|c| c.phase != Phase::Done).count()
    }

    fn endpoint(&self, local: &str) -> Result<EndpointName, String> {
        EndpointName::new(local, &self.args.domain).map_err(|e| e.to_string())
    }

    fn start_call(&mut self, now: Instant) -> Result<(), String> {
        let index = self.calls.len();
        let slot = match (self.mode, self.wildcard) {
            (Mode::Bridge, Some(_)) => None,
            _ => Some(self.free_slots.pop_first().ok_or("no free endpoint")?),
        };
        let ep_a = match (self.mode, slot, self.wildcard) {
            (Mode::Tdm, Some(n), _) => format!("{}{n}", self.args.span_a),
            (Mode::Bridge, Some(n), _) if self.args.hex => {
                format!("{}{n:x}", self.args.endpoint_prefix)
            }
            (Mode::Bridge, Some(n), _) => format!("{}{n}", self.args.endpoint_prefix),
            (_, _, w) => format!("{}{}", self.args.endpoint_prefix, w.unwrap_or('$')),
        };
        let mut legs = Vec::with_capacity(2);
        for i in 0..2u32 {
            let (sock, rtcp) = bind_rtp_pair(self.args.rtp_ip)
                .map_err(|e| format!("bind RTP on {}: {e}", self.args.rtp_ip))?;
            let codec = self.codecs[i as usize];
            legs.push(Leg {
                id: index as u32 * 2 + i,
                sock,
                _rtcp: rtcp,
                codec,
                log: Arc::new(SendLog::new(self.epoch)),
                endpoint: None,
                conn_id: None,
                gateway_media: None,
                pt: codec.pt,
                rtp_started: false,
                tx: None,
                rx: None,
                gw_stats: None,
            });
        }
        let (Some(b), Some(a)) = (legs.pop(), legs.pop()) else {
            return Err("internal: two legs".into());
        };
        let call_id = format!("{:x}", self.rng.next() >> 8 | 1 << 40);
        let call = Call {
            index,
            call_id,
            slot,
            phase: Phase::CrcxA,
            started: now,
            established: None,
            ended: None,
            legs: [a, b],
            stop_asked: false,
            dlcx_pending: 0,
            reports_pending: 0,
            error: None,
        };
        self.calls.push(call);
        self.send_crcx(now, index, 0, &ep_a)
    }

    fn send_crcx(
        &mut self,
        now: Instant,
        ci: usize,
        leg: usize,
        local: &str,
    ) -> Result<(), String> {
        let ep = self.endpoint(local)?;
        let ptime = self.args.ptime;
        let ip = self.args.rtp_ip;
        let session = self.rng.next() >> 12;
        if !local.contains(['$', '*']) {
            self.calls[ci].legs[leg].endpoint = Some(ep.to_string());
        }
        let call = &self.calls[ci];
        let l = &call.legs[leg];
        let port = l.sock.local_addr().map_err(|e| e.to_string())?.port();
        let kind = l.codec.kind;
        let mut cmd = Command::new(Verb::Crcx, TransactionId::FIRST, ep);
        cmd.params.push(ParamName::CallId, call.call_id.clone());
        cmd.params.push(
            ParamName::LocalConnectionOptions,
            format!("p:{ptime}, a:{}", kind.encoding_name()),
        );
        cmd.params.push(ParamName::ConnectionMode, "sendrecv");
        let ipv = if ip.is_ipv6() { "IP6" } else { "IP4" };
        cmd.sdp = Some(format!(
            "v=0\r\no=- {session} 1 IN {ipv} {ip}\r\ns=-\r\nc=IN {ipv} {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {map}\r\na=ptime:{ptime}\r\n",
            pt = l.codec.pt,
            map = rtpmap(kind),
        ));
        self.client.send(
            now,
            cmd,
            (ci as u64) << 2 | if leg == 0 { TAG_CRCX_A } else { TAG_CRCX_B },
        );
        Ok(())
    }

    fn send_dlcx(&mut self, now: Instant, ci: usize, leg: usize) {
        let call = &self.calls[ci];
        let l = &call.legs[leg];
        let (Some(ep), Some(conn)) = (l.endpoint.as_deref(), l.conn_id.clone()) else {
            return;
        };
        let Ok(ep) = EndpointName::parse(ep) else {
            return;
        };
        let mut cmd = Command::new(Verb::Dlcx, TransactionId::FIRST, ep);
        cmd.params.push(ParamName::CallId, call.call_id.clone());
        cmd.params.push(ParamName::ConnectionId, conn);
        self.client
            .send(now, cmd, (ci as u64) << 2 | (TAG_DLCX_A + leg as u64));
        self.calls[ci].dlcx_pending += 1;
    }

    fn fail(&mut self, ci: usize, why: String) {
        let c = &mut self.calls[ci];
        if c.error.is_none() {
            c.error = Some(why);
        }
    }

    /// Starts tearing a call down from wherever it is.
    fn teardown(&mut self, now: Instant, ci: usize) {
        match self.calls[ci].phase {
            Phase::CrcxA | Phase::CrcxB => self.calls[ci].stop_asked = true,
            Phase::Holding(_) => {
                for leg in 0..2 {
                    let id = self.calls[ci].legs[leg].id;
                    if self.tx.send(TxCmd::Stop(id)).is_ok() {
                        self.calls[ci].reports_pending += 1;
                    }
                }
                let drain = Duration::from_millis(self.args.drain_ms);
                self.calls[ci].phase = Phase::Draining(now + drain);
                self.calls[ci].ended = Some(now);
            }
            Phase::Draining(_) => {
                for leg in 0..2 {
                    if self.calls[ci].legs[leg].rtp_started {
                        let id = self.calls[ci].legs[leg].id;
                        if self.rx.send(RxCmd::Finish(id)).is_ok() {
                            self.calls[ci].reports_pending += 1;
                        }
                    }
                }
                self.calls[ci].phase = Phase::Deleting;
                for leg in 0..2 {
                    self.send_dlcx(now, ci, leg);
                }
                self.maybe_done(ci);
            }
            Phase::Deleting | Phase::Done => {}
        }
    }

    fn maybe_done(&mut self, ci: usize) {
        let c = &mut self.calls[ci];
        if c.phase == Phase::Deleting && c.dlcx_pending == 0 && c.reports_pending == 0 {
            c.phase = Phase::Done;
            if let Some(s) = c.slot.take() {
                self.free_slots.insert(s);
            }
            let outcome = CallOutcome::from_call(self, ci);
            self.rec.call_done(outcome);
        }
    }

    /// After a CRCX failed or a teardown came during setup: delete what exists.
    fn abandon_setup(&mut self, now: Instant, ci: usize) {
        self.calls[ci].phase = Phase::Deleting;
        for leg in 0..2 {
            self.send_dlcx(now, ci, leg);
        }
        self.maybe_done(ci);
    }

    fn on_crcx(&mut self, now: Instant, ci: usize, leg: usize, r: Response) {
        if !r.code.is_success() {
            self.fail(
                ci,
                format!("CRCX leg {}: {} {}", ["A", "B"][leg], r.code, r.comment),
            );
            return self.abandon_setup(now, ci);
        }
        let kind = self.calls[ci].legs[leg].codec.kind;
        let answer = r
            .sdp
            .as_deref()
            .ok_or_else(|| "no SDP in the CRCX response".to_string())
            .and_then(|s| parse_sdp_answer(s, kind));
        let conn = r.params.get(&ParamName::ConnectionId).map(str::to_string);
        let specific = r
            .params
            .get(&ParamName::SpecificEndpointId)
            .map(str::to_string);
        {
            let l = &mut self.calls[ci].legs[leg];
            l.conn_id = conn.clone();
            if let Some(z) = &specific {
                l.endpoint = Some(z.clone());
            }
        }
        let answer = match (answer, conn) {
            (Ok(a), Some(_)) => a,
            (Err(e), _) => {
                self.fail(ci, format!("CRCX leg {}: {e}", ["A", "B"][leg]));
                return self.abandon_setup(now, ci);
            }
            (_, None) => {
                self.fail(
                    ci,
                    format!("CRCX leg {}: no I: in the response", ["A", "B"][leg]),
                );
                return self.abandon_setup(now, ci);
            }
        };
        let l = &mut self.calls[ci].legs[leg];
        l.gateway_media = Some(answer.addr);
        if let Some(pt) = answer.pt {
            l.pt = pt;
        }
        if self.calls[ci].stop_asked {
            return self.abandon_setup(now, ci);
        }
        if leg == 0 {
            let local_b = match (self.mode, &self.calls[ci].legs[0].endpoint) {
                (Mode::Tdm, _) => {
                    format!("{}{}", self.args.span_b, self.calls[ci].slot.unwrap_or(0))
                }
                (Mode::Bridge, Some(ep)) => match EndpointName::parse(ep) {
                    Ok(e) => e.local().to_string(),
                    Err(e) => {
                        self.fail(ci, format!("bad endpoint name {ep:?}: {e}"));
                        return self.abandon_setup(now, ci);
                    }
                },
                (Mode::Bridge, None) => {
                    self.fail(ci, "CRCX to a wildcard returned no Z: endpoint".into());
                    return self.abandon_setup(now, ci);
                }
            };
            self.calls[ci].phase = Phase::CrcxB;
            if let Err(e) = self.send_crcx(now, ci, 1, &local_b) {
                self.fail(ci, e);
                self.abandon_setup(now, ci);
            }
            return;
        }
        if let Err(e) = self.start_rtp(ci) {
            self.fail(ci, e);
            return self.abandon_setup(now, ci);
        }
        let hold = Duration::from_secs_f64(self.args.hold.max(0.0));
        let c = &mut self.calls[ci];
        c.established = Some(now);
        c.phase = Phase::Holding(now + hold);
        self.rec.call_up();
    }

    fn start_rtp(&mut self, ci: usize) -> Result<(), String> {
        for leg in 0..2 {
            let (me, peer) = (&self.calls[ci].legs[leg], &self.calls[ci].legs[1 - leg]);
            let dest = me.gateway_media.ok_or("no gateway media address")?;
            let rx_sock = me.sock.try_clone().map_err(|e| e.to_string())?;
            let tx_sock = me.sock.try_clone().map_err(|e| e.to_string())?;
            let kind = me.codec.kind;
            let spec = RxSpec {
                id: me.id,
                sock: rx_sock,
                peer_log: peer.log.clone(),
                clock_rate: kind.rtp_clock_rate(),
                meter: Meter::new(kind, self.tone)?,
            };
            let tx = TxSpec {
                id: me.id,
                sock: tx_sock,
                dest,
                pt: me.pt,
                ssrc: self.rng.next() as u32,
                ptime: Duration::from_millis(u64::from(self.args.ptime)),
                frames: self.frames[leg].clone(),
                log: me.log.clone(),
            };
            self.rx.send(RxCmd::Start(Box::new(spec)))?;
            self.tx
                .send(TxCmd::Start(Box::new(tx)))
                .map_err(|_| "the RTP sender thread has stopped".to_string())?;
            self.calls[ci].legs[leg].rtp_started = true;
        }
        Ok(())
    }

    fn on_dlcx(&mut self, ci: usize, leg: usize, r: Option<Response>) {
        let c = &mut self.calls[ci];
        c.dlcx_pending = c.dlcx_pending.saturating_sub(1);
        match r {
            Some(r) if r.code.is_success() => {
                if let Some(p) = r.params.get(&ParamName::ConnectionParameters) {
                    c.legs[leg].gw_stats = ConnectionParameters::parse(p).ok().map(|p| p.0);
                }
            }
            Some(r) => {
                let why = format!("DLCX leg {}: {} {}", ["A", "B"][leg], r.code, r.comment);
                self.fail(ci, why);
            }
            None => self.fail(ci, format!("DLCX leg {}: no response", ["A", "B"][leg])),
        }
        self.maybe_done(ci);
    }

    fn on_client_event(&mut self, now: Instant, ev: ClientEvent) {
        let (tag, verb, resp) = match ev {
            ClientEvent::Response {
                tag,
                verb,
                response,
                latency,
                retransmits,
            } => {
                self.rec
                    .transaction(verb, Some(&response), latency, retransmits);
                (tag, verb, Some(response))
            }
            ClientEvent::Timeout {
                tag,
                verb,
                retransmits,
            } => {
                self.rec
                    .transaction(verb, None, Duration::ZERO, retransmits);
                (tag, verb, None)
            }
            ClientEvent::GatewayCommand(v) => {
                self.rec.gateway_command(v);
                return;
            }
            ClientEvent::Garbage => {
                self.rec.garbage += 1;
                return;
            }
        };
        let ci = (tag >> 2) as usize;
        if ci >= self.calls.len() {
            return;
        }
        if let Some(r) = &resp {
            if !r.code.is_success() {
                self.rec.failure(&self.calls[ci].call_id, verb, r);
            }
        } else {
            self.rec.timeout(&self.calls[ci].call_id, verb);
        }
        match (tag & 3, resp) {
            (TAG_CRCX_A, Some(r)) => self.on_crcx(now, ci, 0, r),
            (TAG_CRCX_B, Some(r)) => self.on_crcx(now, ci, 1, r),
            (k @ (TAG_CRCX_A | TAG_CRCX_B), None) => {
                self.fail(
                    ci,
                    format!("CRCX leg {}: no response", ["A", "B"][k as usize]),
                );
                self.abandon_setup(now, ci);
            }
            (k, r) => self.on_dlcx(ci, (k - TAG_DLCX_A) as usize, r),
        }
    }

    fn on_rtp_event(&mut self, ev: RtpEvent) -> Result<(), String> {
        match ev {
            RtpEvent::Sent(id, r) => {
                let (ci, leg) = ((id / 2) as usize, (id % 2) as usize);
                if let Some(c) = self.calls.get_mut(ci) {
                    c.legs[leg].tx = Some(*r);
                    c.reports_pending = c.reports_pending.saturating_sub(1);
                    self.maybe_done(ci);
                }
            }
            RtpEvent::Received(id, r) => {
                let (ci, leg) = ((id / 2) as usize, (id % 2) as usize);
                if let Some(c) = self.calls.get_mut(ci) {
                    c.legs[leg].rx = Some(*r);
                    c.reports_pending = c.reports_pending.saturating_sub(1);
                    self.maybe_done(ci);
                }
            }
            RtpEvent::Tick(t) => {
                let line = self.rec.tick(&t, self.active());
                if !self.args.quiet {
                    eprintln!("{line}");
                }
            }
            RtpEvent::Fatal(e) => return Err(e),
        }
        Ok(())
    }

    fn pump_client(&mut self, now: Instant) {
        while let Some((to, bytes)) = self.client.poll_transmit() {
            let _ = self.sock.send_to(&bytes, to.unwrap_or(self.gateway));
        }
        while let Some(ev) = self.client.poll_event() {
            self.on_client_event(now, ev);
            while let Some((to, bytes)) = self.client.poll_transmit() {
                let _ = self.sock.send_to(&bytes, to.unwrap_or(self.gateway));
            }
        }
    }
}

/// Installs a Ctrl-C/SIGTERM watcher that sets the returned flag.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                f.store(true, Ordering::SeqCst);
            }
        });
    });
    flag
}

/// Runs `mgw load`; returns the process exit code: 0 when no more than `--max-failures`
/// calls failed (and loss stayed within `--max-loss`), 1 otherwise, 2 for bad arguments
/// or set-up errors, 130 when interrupted.
pub(crate) fn run(args: LoadArgs) -> u8 {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mgw load: {e}");
            2
        }
    }
}

fn run_inner(args: LoadArgs) -> Result<u8, String> {
    let codecs = [parse_codec(&args.codec_a)?, parse_codec(&args.codec_b)?];
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err("--rate must be positive".into());
    }
    if !(args.hold >= 0.0 && args.hold.is_finite()) {
        return Err("--hold must be zero or more".into());
    }
    if args.calls == 0 {
        return Err("--calls must be at least 1".into());
    }
    if args.ptime == 0 || 3000 % args.ptime != 0 {
        return Err("--ptime must divide 3000 ms".into());
    }
    let wildcard = match args.wildcard.as_str() {
        "$" => Some('$'),
        "*" => Some('*'),
        "none" => None,
        w => return Err(format!("--wildcard {w:?}: use $, * or none")),
    };
    EndpointName::new("x", &args.domain).map_err(|e| format!("--domain: {e}"))?;
    let source = match &args.audio {
        Some(p) => audio::read_wav(p)?,
        None => Source::Tone(args.tone),
    };
    let tone = matches!(source, Source::Tone(_)).then_some(args.tone);
    let f_a = Arc::new(audio::encode_loop(codecs[0].kind, args.ptime, &source)?);
    let f_b = if codecs[1].kind == codecs[0].kind {
        f_a.clone()
    } else {
        Arc::new(audio::encode_loop(codecs[1].kind, args.ptime, &source)?)
    };
    let gateway = args
        .gateway
        .to_socket_addrs()
        .map_err(|e| format!("gateway {:?}: {e}", args.gateway))?
        .next()
        .ok_or_else(|| format!("gateway {:?} has no address", args.gateway))?;
    let sock = UdpSocket::bind(args.ca_bind).map_err(|e| format!("bind {}: {e}", args.ca_bind))?;
    let slots = match (args.mode, wildcard) {
        (Mode::Tdm, _) => args.channels,
        (Mode::Bridge, None) => args.endpoints,
        (Mode::Bridge, Some(_)) => 0,
    };
    let total = args
        .total
        .map(u64::from)
        .unwrap_or(if args.duration.is_some() {
            u64::MAX
        } else {
            u64::from(args.calls)
        });
    let planned = args.duration.unwrap_or(0.0)
        + if total == u64::MAX {
            0.0
        } else {
            total as f64 / args.rate
        }
        + args.hold
        + 2.0;
    let deadline_s = args.deadline.unwrap_or(planned + 30.0);
    let epoch = Instant::now();
    let (ev_tx, ev_rx) = sync_channel::<RtpEvent>(4096);
    let (tx_cmd, tx_rx) = sync_channel::<TxCmd>(4096);
    let (poll, rxh, rx_rx) = rtp::receiver_setup(4096).map_err(|e| format!("poll: {e}"))?;
    let ev2 = ev_tx.clone();
    let sender = std::thread::Builder::new()
        .name("load-tx".into())
        .spawn(move || rtp::sender(tx_rx, ev2))
        .map_err(|e| e.to_string())?;
    let receiver = std::thread::Builder::new()
        .name("load-rx".into())
        .spawn(move || rtp::receiver(poll, rx_rx, ev_tx, epoch))
        .map_err(|e| e.to_string())?;
    let mut rng = Rng::seeded();
    let first_tid = (rng.next() % 900_000_000) as u32 + 1;
    let timers = Timers {
        max_retransmits: args.retransmits,
        ..Timers::default()
    };
    let rec = Recorder::new(&args, gateway);
    let interrupted = interrupt_flag();
    let mut run = Run {
        mode: args.mode,
        codecs,
        frames: [f_a, f_b],
        tone,
        wildcard,
        epoch,
        sock,
        gateway,
        client: Client::new(timers, first_tid),
        calls: Vec::new(),
        free_slots: (1..=slots).collect(),
        rng,
        tx: tx_cmd,
        rx: rxh,
        events: ev_rx,
        rec,
        stopping: false,
        args,
    };
    let result = main_loop(&mut run, &interrupted, deadline_s, total);
    let _ = run.tx.send(TxCmd::Shutdown);
    let _ = run.rx.send(RxCmd::Shutdown);
    let _ = sender.join();
    let _ = receiver.join();
    result?;
    // Calls that never finished (deadline) are reported as failed.
    for ci in 0..run.calls.len() {
        if run.calls[ci].phase != Phase::Done {
            run.fail(ci, "did not finish before the deadline".into());
            let outcome = CallOutcome::from_call(&run, ci);
            run.rec.call_done(outcome);
        }
    }
    let report = run.rec.finish(epoch.elapsed());
    print!("{}", report::text(&report));
    if let Some(p) = &run.args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(p, json).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = &run.args.svg {
        std::fs::write(p, report::svg(&report)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if interrupted.load(Ordering::SeqCst) {
        return Ok(130);
    }
    let code = verdict(&report.summary, run.args.max_failures, run.args.max_loss);
    if code != 0 && report.summary.calls_failed <= u64::from(run.args.max_failures) {
        eprintln!(
            "mgw load: {:.3}% of packets lost (more than --max-loss)",
            report.summary.loss_pct
        );
    }
    Ok(code)
}

/// 1 when more than `max_failures` calls failed or more than `max_loss` percent of the
/// packets were lost, else 0.
fn verdict(s: &report::Summary, max_failures: u32, max_loss: Option<f64>) -> u8 {
    let failed = s.calls_failed > u64::from(max_failures);
    let lossy = max_loss.is_some_and(|m| s.loss_pct > m);
    u8::from(failed || lossy)
}

fn main_loop(
    run: &mut Run,
    interrupted: &AtomicBool,
    deadline_s: f64,
    total: u64,
) -> Result<(), String> {
    let epoch = run.epoch;
    let deadline = epoch + Duration::from_secs_f64(deadline_s.max(1.0));
    let stop_placing = run
        .args
        .duration
        .map(|d| epoch + Duration::from_secs_f64(d.max(0.0)));
    let interval = Duration::from_secs_f64(1.0 / run.args.rate);
    let mut next_start = epoch;
    let mut placed: u64 = 0;
    let mut hard_stop: Option<Instant> = None;
    let mut buf = vec![0u8; 65_536];
    loop {
        let now = Instant::now();
        if !run.stopping && (interrupted.load(Ordering::SeqCst) || now >= deadline) {
            run.stopping = true;
            hard_stop = Some(now + Duration::from_secs(5));
            if !run.args.quiet {
                eprintln!("mgw load: stopping, deleting every connection");
            }
            for ci in 0..run.calls.len() {
                if let Phase::Holding(_) = run.calls[ci].phase {
                    run.teardown(now, ci);
                }
                if matches!(run.calls[ci].phase, Phase::CrcxA | Phase::CrcxB) {
                    run.calls[ci].stop_asked = true;
                }
            }
        }
        if hard_stop.is_some_and(|h| now >= h) {
            return Ok(());
        }
        // Place calls.
        let placing_open = !run.stopping && stop_placing.is_none_or(|s| now < s) && placed < total;
        while placing_open
            && now >= next_start
            && run.active() < run.args.calls as usize
            && placed < total
        {
            let needs_slot = run.mode == Mode::Tdm || run.wildcard.is_none();
            if needs_slot && run.free_slots.is_empty() {
                break;
            }
            placed += 1;
            run.start_call(now)?;
            next_start += interval;
            if now.saturating_duration_since(next_start) > Duration::from_secs(1) {
                next_start = now; // do not burst after a stall
            }
        }
        // Timers of calls.
        for ci in 0..run.calls.len() {
            match run.calls[ci].phase {
                Phase::Holding(t) | Phase::Draining(t) if t <= now => run.teardown(now, ci),
                _ => {}
            }
        }
        run.client.handle_timeout(now);
        run.pump_client(now);
        while let Ok(ev) = run.events.try_recv() {
            run.on_rtp_event(ev)?;
        }
        let finished_placing =
            run.stopping || placed >= total || stop_placing.is_some_and(|s| now >= s);
        if finished_placing && run.active() == 0 {
            return Ok(());
        }
        // Wait for MGCP (or 5 ms, for the call timers and RTP events).
        let mut wake = now + Duration::from_millis(5);
        if let Some(t) = run.client.poll_timeout() {
            wake = wake.min(t);
        }
        let wait = wake
            .saturating_duration_since(Instant::now())
            .max(Duration::from_micros(100));
        run.sock
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        if let Ok((n, from)) = run.sock.recv_from(&mut buf) {
            let now = Instant::now();
            run.client
                .handle_datagram(now, from, buf.get(..n).unwrap_or(&[]));
            // More may be queued: read without waiting.
            run.sock.set_nonblocking(true).map_err(|e| e.to_string())?;
            while let Ok((n, from)) = run.sock.recv_from(&mut buf) {
                run.client
                    .handle_datagram(Instant::now(), from, buf.get(..n).unwrap_or(&[]));
            }
            run.sock.set_nonblocking(false).map_err(|e| e.to_string())?;
            run.pump_client(now);
        }
    }
}

impl CallOutcome {
    fn from_call(run: &Run, ci: usize) -> CallOutcome {
        let c = &run.calls[ci];
        let legs = c
            .legs
            .iter()
            .map(|l| LegOutcome {
                endpoint: l.endpoint.clone(),
                connection_id: l.conn_id.clone(),
                codec: l.codec.kind.encoding_name().to_string(),
                payload_type: l.pt,
                local: l.sock.local_addr().ok(),
                gateway_media: l.gateway_media,
                tx: l.tx.clone(),
                rx: l.rx.clone(),
                gateway_stats: l
                    .gw_stats
                    .clone()
                    .map(|v| v.into_iter().collect::<BTreeMap<_, _>>()),
            })
            .collect();
        CallOutcome {
            index: c.index,
            call_id: c.call_id.clone(),
            start_s: c.started.saturating_duration_since(run.epoch).as_secs_f64(),
            setup_ms: c
                .established
                .map(|e| e.saturating_duration_since(c.started).as_secs_f64() * 1000.0),
            media_s: match (c.established, c.ended) {
                (Some(a), Some(b)) => Some(b.saturating_duration_since(a).as_secs_f64()),
                _ => None,
            },
            error: c.error.clone(),
            legs,
            ptime_ms: run.args.ptime,
        }
    }
}

/// An RTP socket on an even port with the odd port above it held too (so that the
/// gateway's RTCP, sent to RTP+1, never lands on another leg's RTP socket).
fn bind_rtp_pair(ip: std::net::IpAddr) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let mut last = None;
    for _ in 0..128 {
        let rtp = UdpSocket::bind((ip, 0))?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        match UdpSocket::bind((ip, port + 1)) {
            Ok(rtcp) => return Ok((rtp, rtcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free even/odd port pair")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_answer_parsing() {
        let mgw = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 16384 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n";
        let a = parse_sdp_answer(mgw, CodecKind::Pcmu).unwrap();
        assert_eq!(a.addr, "127.0.0.1:16384".parse().unwrap());
        assert_eq!(a.pt, Some(0));
        // osmo-mgw style: dynamic opus type, no rtpmap for the static one.
        let osmo = "v=0\no=- 1 23 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.2\nt=0 0\n\
                    m=audio 16002 RTP/AVP 112 8\na=rtpmap:112 opus/48000/2\n";
        let a = parse_sdp_answer(osmo, CodecKind::Opus).unwrap();
        assert_eq!((a.addr.port(), a.pt), (16002, Some(112)));
        assert_eq!(a.addr.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(parse_sdp_answer(osmo, CodecKind::Pcma).unwrap().pt, Some(8));
        assert_eq!(parse_sdp_answer(osmo, CodecKind::G722).unwrap().pt, None);
        assert!(parse_sdp_answer("v=0\nm=audio 5 RTP/AVP 0\n", CodecKind::Pcmu).is_err());
        assert!(parse_sdp_answer("v=0\nc=IN IP4 1.2.3.4\n", CodecKind::Pcmu).is_err());
        assert!(
            parse_sdp_answer("c=IN IP4 1.2.3.4\nm=audio x RTP/AVP 0\n", CodecKind::Pcmu).is_err()
        );
    }

    #[test]
    fn exit_verdict() {
        let mut s = report::Summary::default();
        assert_eq!(verdict(&s, 0, None), 0);
        s.calls_failed = 2;
        assert_eq!(verdict(&s, 1, None), 1);
        assert_eq!(verdict(&s, 2, None), 0);
        s.loss_pct = 0.5;
        assert_eq!(verdict(&s, 2, Some(1.0)), 0);
        assert_eq!(verdict(&s, 2, Some(0.1)), 1);
    }

    #[test]
    fn codec_names() {
        assert_eq!(parse_codec("pcma").unwrap().pt, 8);
        assert_eq!(parse_codec("OPUS").unwrap().pt, 96);
        assert_eq!(parse_codec("L16").unwrap().pt, 97);
        assert!(parse_codec("G729").is_err());
        assert_eq!(rtpmap(CodecKind::Opus), "opus/48000/2");
        assert_eq!(rtpmap(CodecKind::Pcmu), "PCMU/8000");
    }
}
