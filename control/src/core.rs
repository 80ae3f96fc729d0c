//! The gateway core: executes MGCP commands against the endpoint registry and drives
//! the dataplane. Synchronous and free of sockets — the server feeds it commands and
//! dataplane events and drains the notifications it wants sent.
//!
//! Every command is validated completely before anything is changed, so a failing
//! command leaves no trace (a failed CRCX allocates nothing).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use mgcp::digitmap::DigitMap;
use mgcp::params::{
    parse_requested_events, parse_requested_info, parse_signal_requests, CallId, ConnectionId,
    ConnectionMode, EventName, InfoCode, LocalConnectionOptions, NotifiedEntity, ObservedEvent,
    QuarantineHandling,
};
use mgcp::{Command, EndpointName, Error, ParamName, Params, Response, ReturnCode, Verb, Wildcard};
use mgw_dataplane::{
    ChannelSignal, ConnCounters, ConnKey, ConnSpec, ConnUpdate, DataplaneCmd, DataplaneEvent,
    DtmfMode, LineEvent, Mode, RtpPorts, SourceCheck, ToneKind,
};

use crate::endpoint::{Connection, EndpointKind, EndpointSpec, Law, Registry};
use crate::events::{Catalog, NewRequest, PendingNotify};
use crate::sdp::{self, RemoteMedia};

/// What the core needs from the dataplane: ports and a command queue.
pub trait MediaPlane {
    /// Binds a fresh RTP/RTCP port pair.
    fn allocate(&mut self) -> io::Result<RtpPorts>;
    /// Returns a port pair to the pool.
    fn release(&mut self, port: u16);
    /// Queues a command for a worker without blocking; gives it back when the queue is full.
    /// An implementation may hold commands back until [`MediaPlane::flush`] (in order).
    fn send(&mut self, cmd: DataplaneCmd) -> Result<(), DataplaneCmd>;
    /// Hands over commands held back by [`MediaPlane::send`]. The server calls it once per
    /// pass of its loop, so that a batch of MGCP commands wakes a worker once.
    fn flush(&mut self) {}
    /// The I/O backend's name, for status.
    fn backend_name(&self) -> String {
        "none".into()
    }
    /// Number of dataplane workers.
    fn worker_count(&self) -> usize {
        0
    }
    /// Dataplane events dropped because the event channel was full.
    fn dropped_events(&self) -> u64 {
        0
    }
    /// RTP port pairs in use.
    fn ports_in_use(&self) -> usize {
        0
    }
    /// Per-worker statistics.
    fn worker_stats(&self) -> Vec<mgw_dataplane::WorkerStats> {
        Vec::new()
    }
}

/// Settings of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Our domain name (endpoint names are `local@domain`).
    pub domain: String,
    /// Other domains we answer to (e.g. `[127.0.0.1]`).
    pub alias_domains: Vec<String>,
    /// Address advertised in SDP `c=`.
    pub rtp_addr: IpAddr,
    /// Packetization period offered when the call agent does not say (ms).
    pub default_ptime: u32,
    /// RTP source policy for new connections.
    pub source_check: SourceCheck,
    /// Seed for SSRCs and session ids.
    pub seed: u64,
    /// Inter-digit timer while more digits may follow (RFC 3435 §2.1.5: 4 s).
    pub digit_timer_short: Duration,
    /// Inter-digit timer before the first digit (16 s).
    pub digit_timer_long: Duration,
    /// Where plain announcement names are looked up.
    pub announcement_dir: std::path::PathBuf,
}

/// A command the gateway wants to send to a call agent (NTFY, or DLCX of its own).
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The command (its transaction id is assigned by the transaction layer).
    pub command: Command,
    /// Where to send it; `None` = the current call agent.
    pub dest: Option<SocketAddr>,
}

/// Counters kept by the core.
#[derive(Clone, Debug, Default)]
pub struct CoreStats {
    /// Commands executed, by verb and return code.
    pub commands: HashMap<(Verb, u16), u64>,
    /// Notifications queued.
    pub notifies: u64,
    /// Dataplane command queue was full.
    pub dataplane_full: u64,
}

/// The gateway core.
pub struct Core<M: MediaPlane> {
    cfg: CoreConfig,
    reg: Registry,
    media: M,
    next_key: u32,
    next_conn: u64,
    rng: u64,
    /// Keys being removed in the dataplane, with their port (freed on `Removed`).
    removing: HashMap<ConnKey, u16>,
    /// Remove commands that did not fit in a worker queue yet.
    retry: VecDeque<DataplaneCmd>,
    outgoing: VecDeque<Outgoing>,
    /// Per-endpoint RTP timeout from `R/rto`.
    rto: HashMap<usize, Duration>,
    /// Graceful shutdown in progress: no new connections.
    draining: bool,
    /// Call ids (lower case) whose MGCP and media events are traced.
    traced: std::collections::HashSet<String>,
    /// Announcements read from disk, by file path (bounded).
    announcements: HashMap<std::path::PathBuf, Arc<[i16]>>,
    /// Endpoints playing an announcement (their SignalDone is A/oc).
    announcing: std::collections::HashSet<usize>,
    /// Lines being rung.
    ringing: std::collections::HashSet<usize>,
    /// Lines off hook (for ring trip and the ES audit).
    off_hook: std::collections::HashSet<usize>,
    stats: CoreStats,
}

fn missing(p: &str) -> Error {
    Error::Protocol(format!("missing mandatory parameter {p}"))
}

fn to_dp_mode(m: &ConnectionMode) -> Result<Mode, Error> {
    Ok(match m {
        ConnectionMode::SendOnly => Mode::SendOnly,
        ConnectionMode::RecvOnly => Mode::RecvOnly,
        ConnectionMode::SendRecv => Mode::SendRecv,
        ConnectionMode::Confrnce => Mode::Confrnce,
        ConnectionMode::Inactive => Mode::Inactive,
        ConnectionMode::Loopback => Mode::Loopback,
        ConnectionMode::ContTest => Mode::ContTest,
        ConnectionMode::NetwLoop => Mode::NetwLoop,
        ConnectionMode::NetwTest => Mode::NetwTest,
        other => return Err(Error::InvalidMode(other.to_string())),
    })
}

/// Parameters each verb accepts (besides `K:` and extensions).
fn allowed(verb: Verb) -> &'static [ParamName] {
    use ParamName::*;
    match verb {
        Verb::Epcf => &[BearerInformation],
        Verb::Crcx => &[
            CallId,
            NotifiedEntity,
            LocalConnectionOptions,
            ConnectionMode,
            RequestIdentifier,
            RequestedEvents,
            SignalRequests,
            DigitMap,
            DetectEvents,
            QuarantineHandling,
            SecondEndpointId,
            BearerInformation,
        ],
        Verb::Mdcx => &[
            CallId,
            ConnectionId,
            NotifiedEntity,
            LocalConnectionOptions,
            ConnectionMode,
            RequestIdentifier,
            RequestedEvents,
            SignalRequests,
            DigitMap,
            DetectEvents,
            QuarantineHandling,
        ],
        Verb::Dlcx => &[
            CallId,
            ConnectionId,
            NotifiedEntity,
            RequestIdentifier,
            RequestedEvents,
            SignalRequests,
            DigitMap,
            DetectEvents,
            QuarantineHandling,
            ReasonCode,
        ],
        Verb::Rqnt => &[
            NotifiedEntity,
            RequestIdentifier,
            RequestedEvents,
            SignalRequests,
            DigitMap,
            DetectEvents,
            QuarantineHandling,
            BearerInformation,
        ],
        Verb::Auep => &[RequestedInfo],
        Verb::Aucx => &[ConnectionId, RequestedInfo],
        Verb::Ntfy | Verb::Rsip => &[],
    }
}

impl<M: MediaPlane> Core<M> {
    /// A core over the given endpoints.
    pub fn new(cfg: CoreConfig, endpoints: Vec<EndpointSpec>, media: M) -> Self {
        let rng = cfg.seed | 1;
        Core {
            cfg,
            reg: Registry::new(endpoints),
            media,
            next_key: 1,
            next_conn: 1,
            rng,
            removing: HashMap::new(),
            retry: VecDeque::new(),
            outgoing: VecDeque::new(),
            rto: HashMap::new(),
            draining: false,
            traced: std::collections::HashSet::new(),
            announcements: HashMap::new(),
            announcing: std::collections::HashSet::new(),
            ringing: std::collections::HashSet::new(),
            off_hook: std::collections::HashSet::new(),
            stats: CoreStats::default(),
        }
    }

    /// Hands every line with signalling (tap peers, DAHDI) to its worker now, so hook
    /// events are seen before any command names the line. Call once after start.
    pub fn activate_lines(&mut self) {
        let lines: Vec<(mgw_dataplane::GroupId, String)> = self
            .reg
            .endpoints
            .iter()
            .filter(|e| e.spec.line.signalling)
            .map(|e| (e.spec.group, e.spec.local_name.clone()))
            .collect();
        for (group, channel) in lines {
            self.send_dp(DataplaneCmd::Signal {
                group,
                channel,
                signal: ChannelSignal::Stop,
            });
        }
    }

    /// Refuses (520) new connections while a graceful shutdown drains the gateway.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// Counters.
    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    /// Number of endpoints.
    pub fn endpoint_count(&self) -> usize {
        self.reg.len()
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.reg.endpoints.iter().map(|e| e.connections.len()).sum()
    }

    /// Connections whose sockets the dataplane has not closed yet.
    pub fn removals_pending(&self) -> usize {
        self.removing.len()
    }

    /// The media plane.
    pub fn media(&self) -> &M {
        &self.media
    }

    /// Gives the media plane back (shutdown).
    pub fn into_media(self) -> M {
        self.media
    }

    /// The media plane (for tests and shutdown).
    pub fn media_mut(&mut self) -> &mut M {
        &mut self.media
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Executes one command and returns its response. Never panics on any input.
    pub fn execute(&mut self, from: SocketAddr, cmd: &Command) -> Response {
        // The call this command concerns, before it runs (a DLCX removes the connection).
        let call_before = self.call_of(cmd);
        let result = self.dispatch(from, cmd);
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                let code = e.return_code();
                let text = e.to_string().replace(['\r', '\n'], " ");
                Response::new(code, cmd.tid).with_comment(text)
            }
        };
        *self
            .stats
            .commands
            .entry((cmd.verb, resp.code.0))
            .or_default() += 1;
        if !self.traced.is_empty() {
            let call = call_before.or_else(|| self.call_of(cmd));
            if let Some(call) = call.filter(|c| self.traced.contains(c)) {
                let text = String::from_utf8_lossy(&mgcp::Message::Command(cmd.clone()).to_bytes())
                    .into_owned();
                let answer =
                    String::from_utf8_lossy(&mgcp::Message::Response(resp.clone()).to_bytes())
                        .into_owned();
                tracing::info!(
                    target: "mgw::calltrace",
                    call_id = %call,
                    %from,
                    verb = %cmd.verb,
                    tid = %cmd.tid,
                    endpoint = %cmd.endpoint,
                    code = %resp.code,
                    command = %text.trim_end(),
                    response = %answer.trim_end(),
                    "MGCP"
                );
            }
        }
        resp
    }

    /// Starts or stops the per-call trace of a call id (MGCP commands and media events of
    /// that call are logged at info level under the `mgw::calltrace` target).
    pub fn trace_call(&mut self, call: &str, on: bool) -> Result<(), Error> {
        let id = CallId::parse(call)?;
        let key = id.as_str().to_ascii_lowercase();
        if on {
            self.traced.insert(key);
        } else {
            self.traced.remove(&key);
        }
        Ok(())
    }

    /// Call ids being traced.
    pub fn traced_calls(&self) -> Vec<String> {
        let mut v: Vec<String> = self.traced.iter().cloned().collect();
        v.sort();
        v
    }

    /// The (lower-case) call id a command concerns: its `C:`, or the call of its `I:`.
    fn call_of(&self, cmd: &Command) -> Option<String> {
        if let Some(c) = cmd.params.get(&ParamName::CallId) {
            return Some(c.to_ascii_lowercase());
        }
        let id = ConnectionId::parse(cmd.params.get(&ParamName::ConnectionId)?).ok()?;
        let eis = self.reg.resolve(&cmd.endpoint).ok()?;
        let ep = &self.reg.endpoints[*eis.first()?];
        let ci = ep.conn_index(&id)?;
        Some(ep.connections[ci].call.as_str().to_ascii_lowercase())
    }

    /// The next command the gateway wants to send.
    pub fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.outgoing.pop_front()
    }

    /// Retries dataplane commands that found a full queue. Call periodically.
    pub fn tick(&mut self) {
        for _ in 0..self.retry.len() {
            let Some(cmd) = self.retry.pop_front() else {
                break;
            };
            if let Err(cmd) = self.media.send(cmd) {
                self.retry.push_front(cmd);
                break;
            }
        }
    }

    fn dispatch(&mut self, from: SocketAddr, cmd: &Command) -> Result<Response, Error> {
        if matches!(cmd.verb, Verb::Ntfy | Verb::Rsip) {
            return Err(Error::UnknownCommand(format!(
                "{} is not accepted by a gateway",
                cmd.verb
            )));
        }
        for (name, _) in cmd.params.iter() {
            let ok = matches!(name, ParamName::ResponseAck | ParamName::Extension(_))
                || allowed(cmd.verb).contains(name);
            if !ok {
                return Err(Error::InvalidParameter(format!(
                    "{} is not a parameter of {}",
                    name.code(),
                    cmd.verb
                )));
            }
        }
        self.check_domain(&cmd.endpoint)?;
        match cmd.verb {
            Verb::Crcx => self.crcx(from, cmd),
            Verb::Mdcx => self.mdcx(from, cmd),
            Verb::Dlcx => self.dlcx(from, cmd),
            Verb::Rqnt => self.rqnt(from, cmd),
            Verb::Auep => self.auep(cmd),
            Verb::Aucx => self.aucx(cmd),
            Verb::Epcf => self.epcf(cmd),
            Verb::Ntfy | Verb::Rsip => Err(Error::UnknownCommand(cmd.verb.to_string())),
        }
    }

    fn check_domain(&self, name: &EndpointName) -> Result<(), Error> {
        if name.domain_is(&self.cfg.domain)
            || self.cfg.alias_domains.iter().any(|d| name.domain_is(d))
        {
            Ok(())
        } else {
            Err(Error::EndpointUnknown(format!(
                "{name}: not this gateway's domain"
            )))
        }
    }

    fn full_name(&self, ei: usize) -> String {
        format!(
            "{}@{}",
            self.reg.endpoints[ei].spec.local_name, self.cfg.domain
        )
    }

    /// One concrete endpoint (no wildcard allowed).
    fn one_endpoint(&self, name: &EndpointName) -> Result<usize, Error> {
        if name.wildcard() != Wildcard::None {
            return Err(Error::Protocol(format!(
                "wildcard not allowed here: {name}"
            )));
        }
        Ok(self.reg.resolve(name)?[0])
    }

    // ----- notified entity and embedded notification requests -------------------

    fn resolve_notified_entity(&self, text: &str) -> Result<SocketAddr, Error> {
        let ne = NotifiedEntity::parse(text)?;
        let port = ne.port.unwrap_or(2727);
        let host = ne.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::InvalidParameter(format!("N: cannot resolve {host:?}")))
    }

    /// Validates the RQNT parameters of a command (RQNT itself or embedded in
    /// CRCX/MDCX/DLCX) against endpoint `ei`. `Ok(None)` when there are none.
    fn validate_request(
        &self,
        ei: usize,
        params: &Params,
        required: bool,
    ) -> Result<Option<NewRequest>, Error> {
        let x = params.get(&ParamName::RequestIdentifier);
        let has_any = x.is_some()
            || params.contains(&ParamName::RequestedEvents)
            || params.contains(&ParamName::SignalRequests)
            || params.contains(&ParamName::DigitMap)
            || params.contains(&ParamName::DetectEvents);
        if !has_any && !required {
            return Ok(None);
        }
        let request_id = x.ok_or_else(|| missing("X (RequestIdentifier)"))?;
        if request_id.is_empty()
            || request_id.len() > 32
            || !request_id.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(Error::InvalidParameter(format!(
                "X: bad request identifier {request_id:?}"
            )));
        }
        let ep = &self.reg.endpoints[ei];
        let cat = Catalog::new(&ep.spec);
        let events = match params.get(&ParamName::RequestedEvents) {
            Some(v) if !v.trim().is_empty() => parse_requested_events(v)?,
            _ => Vec::new(),
        };
        let digit_map = match params.get(&ParamName::DigitMap) {
            Some(v) if !v.trim().is_empty() => Some(DigitMap::parse(v)?),
            _ => None,
        };
        for ev in &events {
            let wants_map = ev
                .actions
                .iter()
                .any(|a| matches!(a, mgcp::params::Action::AccumulateDigitMap));
            if wants_map && digit_map.is_none() && ep.notify.digit_map.is_none() {
                return Err(Error::NoDigitMap);
            }
            cat.check_event(&ev.name)?;
            if ev.name.event.eq_ignore_ascii_case("rto") {
                if let Some(p) = ev.params.as_deref() {
                    let ok = p
                        .trim()
                        .parse::<u64>()
                        .is_ok_and(|v| (100..=3_600_000).contains(&v));
                    if !ok {
                        return Err(Error::EventSignalParameter(format!(
                            "R/rto({p}): the timeout must be 100..=3600000 ms"
                        )));
                    }
                }
            }
            if let Some(mgcp::params::Action::Embedded(e)) = ev
                .actions
                .iter()
                .find(|a| matches!(a, mgcp::params::Action::Embedded(_)))
            {
                for inner in e.requested_events.iter().flatten() {
                    cat.check_event(&inner.name)?;
                }
                for s in e.signals.iter().flatten() {
                    cat.check_signal(&s.name)?;
                }
                if let Some(m) = &e.digit_map {
                    DigitMap::parse(m)?;
                }
            }
        }
        let signals = match params.get(&ParamName::SignalRequests) {
            Some(v) if !v.trim().is_empty() => parse_signal_requests(v)?,
            _ => Vec::new(),
        };
        for s in &signals {
            cat.check_signal(&s.name)?;
            if s.name.event.eq_ignore_ascii_case("ann") {
                let param = s.params.as_deref().unwrap_or("");
                let path = crate::announce::resolve(&self.cfg.announcement_dir, param)?;
                if !self.announcements.contains_key(&path) {
                    crate::announce::load(&path)?;
                }
            }
        }
        let detect = match params.get(&ParamName::DetectEvents) {
            Some(v) if !v.trim().is_empty() => parse_requested_events(v)?
                .into_iter()
                .map(|r| r.name)
                .collect(),
            _ => Vec::new(),
        };
        for d in &detect {
            cat.check_event(d)?;
        }
        let quarantine = params
            .get(&ParamName::QuarantineHandling)
            .map(QuarantineHandling::parse)
            .transpose()?;
        Ok(Some(NewRequest {
            request_id: request_id.to_string(),
            events,
            signals,
            detect,
            digit_map,
            quarantine,
        }))
    }

    /// The RTP timeout requested by `R/rto(ms)` in a request.
    fn rto_of(req: &NewRequest) -> Option<Duration> {
        req.events.iter().find_map(|e| {
            let is_rto = e.name.event.eq_ignore_ascii_case("rto")
                && e.name
                    .package
                    .as_deref()
                    .is_none_or(|p| p.eq_ignore_ascii_case("R"));
            if !is_rto {
                return None;
            }
            let ms = e
                .params
                .as_deref()
                .and_then(|p| p.trim().parse::<u64>().ok())
                .unwrap_or(10_000)
                .clamp(100, 3_600_000);
            Some(Duration::from_millis(ms))
        })
    }

    fn apply_request(
        &mut self,
        ei: usize,
        from: SocketAddr,
        ne: Option<(String, SocketAddr)>,
        req: NewRequest,
    ) {
        let rto = Self::rto_of(&req);
        let old_rto = self.rto.get(&ei).copied();
        match rto {
            Some(d) => {
                self.rto.insert(ei, d);
            }
            None => {
                self.rto.remove(&ei);
            }
        }
        if rto != old_rto {
            let keys: Vec<_> = self.reg.endpoints[ei]
                .connections
                .iter()
                .map(|c| c.key)
                .collect();
            let group = self.reg.endpoints[ei].spec.group;
            for key in keys {
                let update = ConnUpdate {
                    rtp_timeout: Some(rto),
                    ..Default::default()
                };
                self.send_dp(DataplaneCmd::Modify {
                    key,
                    group,
                    update: Box::new(update),
                });
            }
        }
        let ep = &mut self.reg.endpoints[ei];
        if let Some(ne) = ne {
            ep.notified_entity = Some(ne);
        } else if ep.notified_entity.is_none() {
            ep.notified_entity = Some((from.to_string(), from));
        }
        let cat_spec = ep.spec.clone();
        let cat = Catalog::new(&cat_spec);
        let notes = ep.notify.apply(&cat, req);
        for n in notes {
            self.queue_notify(ei, n);
        }
        self.play_signals(ei);
    }

    fn queue_notify(&mut self, ei: usize, n: PendingNotify) {
        let Ok(endpoint) = EndpointName::parse(&self.full_name(ei)) else {
            return;
        };
        let tid = mgcp::TransactionId::FIRST;
        let mut command = Command::new(Verb::Ntfy, tid, endpoint);
        let ep = &self.reg.endpoints[ei];
        if let Some((text, _)) = &ep.notified_entity {
            command.params.push(ParamName::NotifiedEntity, text.clone());
        }
        command
            .params
            .push(ParamName::RequestIdentifier, n.request_id.clone());
        let observed: Vec<String> = n.observed.iter().map(|o| o.to_string()).collect();
        command
            .params
            .push(ParamName::ObservedEvents, observed.join(","));
        let dest = ep.notified_entity.as_ref().map(|(_, a)| *a);
        self.stats.notifies += 1;
        self.outgoing.push_back(Outgoing { command, dest });
    }

    // ----- dataplane ---------------------------------------------------------------

    fn send_dp(&mut self, cmd: DataplaneCmd) {
        if let Err(cmd) = self.media.send(cmd) {
            self.stats.dataplane_full += 1;
            self.retry.push_back(cmd);
        }
    }

    /// Handles an event from the dataplane.
    pub fn on_dataplane_event(&mut self, ev: DataplaneEvent) {
        match ev {
            DataplaneEvent::Removed { key } => {
                if let Some(port) = self.removing.remove(&key) {
                    self.media.release(port);
                }
            }
            DataplaneEvent::FirstPacket { key } => self.connection_event(key, "ma"),
            DataplaneEvent::RtpTimeout { key } => self.connection_event(key, "rto"),
            DataplaneEvent::Digit { channel, digit, .. } => {
                self.channel_event(&channel, "D", &digit.to_ascii_lowercase().to_string())
            }
            DataplaneEvent::SignalDone { channel } => {
                // An announcement's end is A/oc; any other timed signal's is G/oc.
                let ei = EndpointName::new(&channel, &self.cfg.domain)
                    .ok()
                    .and_then(|n| self.reg.resolve(&n).ok())
                    .and_then(|v| v.first().copied());
                if ei.is_some_and(|ei| self.announcing.remove(&ei)) {
                    self.channel_event(&channel, "A", "oc");
                } else {
                    self.channel_event(&channel, "G", "oc");
                }
            }
            DataplaneEvent::Line { channel, event } => {
                let ei = EndpointName::new(&channel, &self.cfg.domain)
                    .ok()
                    .and_then(|n| self.reg.resolve(&n).ok())
                    .and_then(|v| v.first().copied());
                let ev = match event {
                    LineEvent::OffHook => "hd",
                    LineEvent::OnHook => "hu",
                    LineEvent::Flash => "hf",
                };
                if let Some(ei) = ei {
                    match event {
                        LineEvent::OffHook => {
                            self.off_hook.insert(ei);
                            // Ring trip: answering stops the ringing.
                            if self.ringing.remove(&ei) {
                                let group = self.reg.endpoints[ei].spec.group;
                                self.send_dp(DataplaneCmd::Signal {
                                    group,
                                    channel: channel.clone(),
                                    signal: ChannelSignal::Ring(false),
                                });
                            }
                        }
                        LineEvent::OnHook => {
                            self.off_hook.remove(&ei);
                        }
                        LineEvent::Flash => {}
                    }
                }
                self.channel_event(&channel, "L", ev);
            }
            DataplaneEvent::ToneDetected { channel, tone } => {
                let ev = match tone {
                    ToneKind::ContinuityReturn => "co2",
                    _ => "co1",
                };
                self.channel_event(&channel, "T", ev);
            }
        }
    }

    /// An announcement's samples, from the cache or the file.
    fn announcement(&mut self, param: &str) -> Result<Arc<[i16]>, Error> {
        let path = crate::announce::resolve(&self.cfg.announcement_dir, param)?;
        if let Some(pcm) = self.announcements.get(&path) {
            return Ok(Arc::clone(pcm));
        }
        let pcm = crate::announce::load(&path)?;
        if self.announcements.len() >= 64 {
            self.announcements.clear();
        }
        self.announcements.insert(path, Arc::clone(&pcm));
        Ok(pcm)
    }

    /// The TDM channel an endpoint's connections terminate on (`None` for IP endpoints).
    fn channel_of(&self, ei: usize) -> Option<String> {
        let ep = &self.reg.endpoints[ei];
        matches!(ep.spec.kind, EndpointKind::Ds { .. }).then(|| ep.spec.local_name.clone())
    }

    /// An event on a TDM channel (a digit, a finished signal) for the endpoint's request.
    fn channel_event(&mut self, channel: &str, package: &str, event: &str) {
        let Ok(name) = EndpointName::new(channel, &self.cfg.domain) else {
            return;
        };
        let Some(ei) = self
            .reg
            .resolve(&name)
            .ok()
            .and_then(|v| v.first().copied())
        else {
            return;
        };
        let ep = &mut self.reg.endpoints[ei];
        let kind = ep.spec.clone();
        let cat = Catalog::new(&kind);
        let ev = ObservedEvent {
            name: EventName {
                package: Some(package.into()),
                event: event.into(),
                connection: None,
            },
            params: None,
        };
        if let Some(n) = ep.notify.observe(&cat, ev) {
            self.queue_notify(ei, n);
        }
    }

    /// Runs the inter-digit timers of digit-map collection (RFC 3435 §2.1.5): started
    /// when digits are pending, a notification when one fires and the map decides.
    pub fn tick_at(&mut self, now: std::time::Instant) {
        self.tick();
        let mut fired = Vec::new();
        for (ei, ep) in self.reg.endpoints.iter_mut().enumerate() {
            match (ep.notify.digit_timer(), ep.notify.digit_deadline) {
                (None, _) => ep.notify.digit_deadline = None,
                (Some(t), None) => {
                    let d = match t {
                        mgcp::digitmap::DigitTimer::Short => self.cfg.digit_timer_short,
                        mgcp::digitmap::DigitTimer::Long => self.cfg.digit_timer_long,
                    };
                    ep.notify.digit_deadline = Some(now + d);
                }
                (Some(_), Some(at)) if now >= at => {
                    if let Some(n) = ep.notify.digit_timeout() {
                        fired.push((ei, n));
                    }
                }
                _ => {}
            }
        }
        for (ei, n) in fired {
            self.queue_notify(ei, n);
        }
    }

    /// Sends the request's signals to the endpoint's TDM channel (or stops them).
    fn play_signals(&mut self, ei: usize) {
        let Some(channel) = self.channel_of(ei) else {
            return;
        };
        let group = self.reg.endpoints[ei].spec.group;
        let signals = self.reg.endpoints[ei].notify.signals.clone();
        let kind = self.reg.endpoints[ei].spec.clone();
        let cat = Catalog::new(&kind);
        let mut digits = String::new();
        let mut cmds = vec![ChannelSignal::Stop];
        let mut announcing = false;
        let mut failed_announcement = false;
        let mut ring = false;
        for sig in &signals {
            let (pkg, ev) = cat.qualify(&sig.name);
            match (pkg.as_str(), ev.as_str()) {
                ("D", d) if d.len() == 1 => digits.push_str(&d.to_ascii_uppercase()),
                ("G", "rt") => cmds.push(ChannelSignal::Tone(ToneKind::Ringback)),
                ("G", "cg") => cmds.push(ChannelSignal::Tone(ToneKind::Congestion)),
                ("G", "cf") => cmds.push(ChannelSignal::Tone(ToneKind::Confirmation)),
                ("L", "dl") => cmds.push(ChannelSignal::Tone(ToneKind::Dial)),
                ("L", "rt") => cmds.push(ChannelSignal::Tone(ToneKind::Ringback)),
                ("L", "bz") => cmds.push(ChannelSignal::Tone(ToneKind::Busy)),
                ("L", "ro") => cmds.push(ChannelSignal::Tone(ToneKind::Congestion)),
                ("L", "wt") => cmds.push(ChannelSignal::Tone(ToneKind::CallWaiting)),
                ("L", "sl") => cmds.push(ChannelSignal::Tone(ToneKind::StutterDial)),
                ("L", "cf") => cmds.push(ChannelSignal::Tone(ToneKind::Confirmation)),
                ("L", "rg") => ring = true,
                ("T", "co1") => cmds.push(ChannelSignal::Tone(ToneKind::Continuity)),
                ("T", "co2") => cmds.push(ChannelSignal::Tone(ToneKind::ContinuityReturn)),
                ("A", "ann") => {
                    let param = sig.params.as_deref().unwrap_or("");
                    match self.announcement(param) {
                        Ok(pcm) => {
                            announcing = true;
                            cmds.push(ChannelSignal::Play(pcm));
                        }
                        // Checked when the request was accepted; the file went away since.
                        Err(e) => {
                            tracing::warn!(error = %e, "announcement cannot be played");
                            failed_announcement = true;
                        }
                    }
                }
                _ => {}
            }
        }
        if !digits.is_empty() {
            cmds.push(ChannelSignal::Digits(digits));
        }
        for signal in cmds {
            self.send_dp(DataplaneCmd::Signal {
                group,
                channel: channel.clone(),
                signal,
            });
        }
        if announcing {
            self.announcing.insert(ei);
        } else {
            self.announcing.remove(&ei);
        }
        // Ringing is on/off state on the line: start it, or stop it when the new request
        // no longer asks for it (RFC 3435: signals not repeated are stopped).
        let was_ringing = self.ringing.contains(&ei);
        if ring && !was_ringing && !self.off_hook.contains(&ei) {
            self.ringing.insert(ei);
            self.send_dp(DataplaneCmd::Signal {
                group,
                channel: channel.clone(),
                signal: ChannelSignal::Ring(true),
            });
        } else if !ring && was_ringing {
            self.ringing.remove(&ei);
            self.send_dp(DataplaneCmd::Signal {
                group,
                channel: channel.clone(),
                signal: ChannelSignal::Ring(false),
            });
        }
        if failed_announcement {
            self.channel_event(&channel, "A", "of");
        }
    }

    fn connection_event(&mut self, key: ConnKey, event: &str) {
        let Some((ei, ci)) = self.reg.find_key(key) else {
            return;
        };
        if !self.traced.is_empty() {
            let c = &self.reg.endpoints[ei].connections[ci];
            let call = c.call.as_str().to_ascii_lowercase();
            if self.traced.contains(&call) {
                let s = c.counters.snapshot();
                tracing::info!(
                    target: "mgw::calltrace",
                    call_id = %call,
                    endpoint = %self.full_name(ei),
                    connection_id = %c.id.as_str(),
                    event,
                    packets_in = s.packets_recv,
                    packets_out = s.packets_sent,
                    "media"
                );
            }
        }
        let conn_id = self.reg.endpoints[ei].connections[ci]
            .id
            .as_str()
            .to_string();
        let ep = &mut self.reg.endpoints[ei];
        let kind = ep.spec.clone();
        let cat = Catalog::new(&kind);
        let ev = ObservedEvent {
            name: EventName {
                package: Some("R".into()),
                event: event.into(),
                connection: Some(conn_id),
            },
            params: None,
        };
        if let Some(n) = ep.notify.observe(&cat, ev) {
            self.queue_notify(ei, n);
        }
    }

    fn remove_connection(&mut self, ei: usize, ci: usize) -> Connection {
        let conn = self.reg.endpoints[ei].connections.remove(ci);
        let group = self.reg.endpoints[ei].spec.group;
        self.removing.insert(conn.key, conn.port);
        self.send_dp(DataplaneCmd::Remove {
            key: conn.key,
            group,
        });
        conn
    }

    // ----- commands ----------------------------------------------------------------

    fn parse_lco(params: &Params) -> Result<Option<(LocalConnectionOptions, String)>, Error> {
        let Some(text) = params.get(&ParamName::LocalConnectionOptions) else {
            return Ok(None);
        };
        let lco = LocalConnectionOptions::parse(text)?;
        if let Some((lo, hi)) = lco.packetization {
            let hi = hi.unwrap_or(lo);
            if lo == 0 || hi < lo {
                return Err(Error::LcoInconsistent(format!("p:{lo}-{hi}")));
            }
            if !(10..=200).contains(&lo) && !(10..=200).contains(&hi) {
                return Err(Error::Packetization(format!("p:{lo}")));
            }
        }
        if let Some(nt) = &lco.network_type {
            if !nt.eq_ignore_ascii_case("IN") {
                return Err(Error::LcoUnsupportedValue(format!("nt:{nt}")));
            }
        }
        if lco.encryption.is_some() {
            return Err(Error::LcoUnsupportedValue(
                "k: (encryption) is not supported".into(),
            ));
        }
        Ok(Some((lco, text.to_string())))
    }

    fn ptime_of(&self, lco: Option<&LocalConnectionOptions>, remote: Option<&RemoteMedia>) -> u32 {
        if let Some((lo, hi)) = lco.and_then(|l| l.packetization) {
            let hi = hi.unwrap_or(lo);
            let p = self.cfg.default_ptime.clamp(lo, hi);
            return (p / 10).max(1) * 10;
        }
        remote
            .and_then(|r| r.ptime)
            .unwrap_or(self.cfg.default_ptime)
    }

    fn crcx(&mut self, from: SocketAddr, cmd: &Command) -> Result<Response, Error> {
        let p = &cmd.params;
        if self.draining {
            return Err(Error::EndpointRestarting);
        }
        let call = CallId::parse(
            p.get(&ParamName::CallId)
                .ok_or_else(|| missing("C (CallId)"))?,
        )?;
        let mode = ConnectionMode::parse(
            p.get(&ParamName::ConnectionMode)
                .ok_or_else(|| missing("M (ConnectionMode)"))?,
        )?;
        let dp_mode = to_dp_mode(&mode)?;
        if p.contains(&ParamName::SecondEndpointId) {
            return Err(Error::Unsupported(
                "Z2 (connections between two local endpoints)".into(),
            ));
        }
        let lco = Self::parse_lco(p)?;
        let remote = match cmd.sdp.as_deref() {
            Some(s) if !s.trim().is_empty() => Some(sdp::parse_remote(s)?),
            _ => None,
        };
        let ne = p
            .get(&ParamName::NotifiedEntity)
            .map(|t| self.resolve_notified_entity(t).map(|a| (t.to_string(), a)))
            .transpose()?;
        // Pick the endpoint.
        let wildcard = cmd.endpoint.wildcard();
        let ei = match wildcard {
            Wildcard::None => self.reg.resolve(&cmd.endpoint)?[0],
            // "All of" makes no sense for CRCX; call agents such as libosmo-mgcp-client
            // send `rtpbridge/*@gw` meaning "any free one", so it is treated like `$`.
            Wildcard::All | Wildcard::Any => {
                let cands = self.reg.resolve(&cmd.endpoint)?;
                if cands.is_empty() {
                    return Err(Error::EndpointUnknown(cmd.endpoint.to_string()));
                }
                *cands
                    .iter()
                    .find(|i| self.reg.endpoints[**i].connections.is_empty())
                    .ok_or(Error::AllEndpointsBusy)?
            }
        };
        let ep = &self.reg.endpoints[ei];
        if ep.connections.len() >= ep.spec.max_connections {
            return Err(Error::ConnectionLimit);
        }
        let lco_codecs: Vec<String> = lco
            .as_ref()
            .map(|(l, _)| l.codecs.clone())
            .unwrap_or_default();
        let payloads = sdp::negotiate(&ep.policy, &lco_codecs, remote.as_ref())?;
        let request = self.validate_request(ei, p, false)?;
        let ptime = self.ptime_of(lco.as_ref().map(|(l, _)| l), remote.as_ref());

        // Everything is valid: allocate, then commit.
        let ports = self
            .media
            .allocate()
            .map_err(|e| Error::InsufficientResources(format!("no RTP port: {e}")))?;
        let port = ports.port;
        let key = ConnKey(self.next_key);
        let ssrc = self.random() as u32;
        let session_id = self.random() >> 1 & 0x7fff_ffff_ffff;
        let counters = Arc::new(ConnCounters::default());
        let group = self.reg.endpoints[ei].spec.group;
        let spec = ConnSpec {
            key,
            group,
            rtp: ports.rtp,
            rtcp: ports.rtcp,
            mode: dp_mode,
            remote_rtp: remote.as_ref().and_then(|r| r.rtp),
            remote_rtcp: remote.as_ref().and_then(|r| r.rtcp),
            source_check: self.cfg.source_check,
            payloads: payloads.clone(),
            ssrc,
            rtp_timeout: self.rto.get(&ei).copied(),
            counters: Arc::clone(&counters),
            channel: self.channel_of(ei),
            ptime_ms: ptime,
            fmtp: remote.as_ref().map(|r| r.fmtp.clone()).unwrap_or_default(),
            dtmf: DtmfMode::Auto,
        };
        if let Err(cmd_back) = self.media.send(DataplaneCmd::Add(Box::new(spec))) {
            // Nothing committed yet: the sockets close with the command, the port goes back.
            drop(cmd_back);
            self.media.release(port);
            self.stats.dataplane_full += 1;
            return Err(Error::Transient("dataplane queue full".into()));
        }
        self.next_key = self.next_key.wrapping_add(1).max(1);
        let id_num = self.next_conn;
        self.next_conn += 1;
        let id = ConnectionId::from_number(u128::from(id_num));
        let local_sdp = sdp::local_sdp(session_id, 1, self.cfg.rtp_addr, port, &payloads, ptime);
        let conn = Connection {
            id: id.clone(),
            call,
            key,
            mode,
            port,
            lco: lco.as_ref().map(|(l, _)| l.clone()),
            lco_text: lco.map(|(_, t)| t),
            remote,
            remote_sdp: cmd.sdp.clone(),
            payloads,
            local_sdp: local_sdp.clone(),
            sdp_version: 1,
            session_id,
            counters,
            notified_entity: ne.as_ref().map(|(t, _)| t.clone()),
        };
        self.reg.endpoints[ei].connections.push(conn);
        if let Some(req) = request {
            self.apply_request(ei, from, ne, req);
        } else if let Some(ne) = ne {
            self.reg.endpoints[ei].notified_entity = Some(ne);
        }
        let mut resp = Response::new(ReturnCode::OK, cmd.tid);
        resp.params.push(ParamName::ConnectionId, id.as_str());
        if wildcard != Wildcard::None {
            resp.params
                .push(ParamName::SpecificEndpointId, self.full_name(ei));
        }
        resp.sdp = Some(local_sdp);
        Ok(resp)
    }

    fn find_conn(&self, ei: usize, p: &Params, call_required: bool) -> Result<usize, Error> {
        let id = ConnectionId::parse(
            p.get(&ParamName::ConnectionId)
                .ok_or_else(|| missing("I (ConnectionId)"))?,
        )?;
        let call = match p.get(&ParamName::CallId) {
            Some(c) => Some(CallId::parse(c)?),
            None if call_required => return Err(missing("C (CallId)")),
            None => None,
        };
        let ep = &self.reg.endpoints[ei];
        let ci = ep
            .conn_index(&id)
            .ok_or_else(|| Error::IncorrectConnectionId(id.as_str().to_string()))?;
        if let Some(call) = call {
            if ep.connections[ci].call != call {
                return Err(Error::UnknownCallId(call.as_str().to_string()));
            }
        }
        Ok(ci)
    }

    fn mdcx(&mut self, from: SocketAddr, cmd: &Command) -> Result<Response, Error> {
        let p = &cmd.params;
        let ei = self.one_endpoint(&cmd.endpoint)?;
        let ci = self.find_conn(ei, p, true)?;
        let mode = p
            .get(&ParamName::ConnectionMode)
            .map(ConnectionMode::parse)
            .transpose()?;
        let dp_mode = mode.as_ref().map(to_dp_mode).transpose()?;
        let lco = Self::parse_lco(p)?;
        let remote = match cmd.sdp.as_deref() {
            Some(s) if !s.trim().is_empty() => Some(sdp::parse_remote(s)?),
            _ => None,
        };
        let ne = p
            .get(&ParamName::NotifiedEntity)
            .map(|t| self.resolve_notified_entity(t).map(|a| (t.to_string(), a)))
            .transpose()?;
        let ep = &self.reg.endpoints[ei];
        let conn = &ep.connections[ci];
        let renegotiate = remote.is_some() || lco.is_some();
        let payloads = if renegotiate {
            let codecs: Vec<String> = lco
                .as_ref()
                .map(|(l, _)| l.codecs.clone())
                .or_else(|| conn.lco.as_ref().map(|l| l.codecs.clone()))
                .unwrap_or_default();
            let r = remote.as_ref().or(conn.remote.as_ref());
            Some(sdp::negotiate(&ep.policy, &codecs, r)?)
        } else {
            None
        };
        let request = self.validate_request(ei, p, false)?;
        let ptime = self.ptime_of(
            lco.as_ref().map(|(l, _)| l).or(conn.lco.as_ref()),
            remote.as_ref().or(conn.remote.as_ref()),
        );

        // Commit.
        let group = ep.spec.group;
        let key = conn.key;
        let update = ConnUpdate {
            mode: dp_mode,
            remote_rtp: remote.as_ref().and_then(|r| r.rtp),
            remote_rtcp: remote.as_ref().and_then(|r| r.rtcp),
            payloads: payloads.clone(),
            rtp_timeout: None,
            ptime_ms: renegotiate.then_some(ptime),
            fmtp: remote.as_ref().map(|r| r.fmtp.clone()),
        };
        self.send_dp(DataplaneCmd::Modify {
            key,
            group,
            update: Box::new(update),
        });
        let rtp_addr = self.cfg.rtp_addr;
        let conn = &mut self.reg.endpoints[ei].connections[ci];
        if let Some(m) = mode {
            conn.mode = m;
        }
        if let Some((l, t)) = lco {
            conn.lco = Some(l);
            conn.lco_text = Some(t);
        }
        if let Some(r) = remote {
            conn.remote = Some(r);
            conn.remote_sdp = cmd.sdp.clone();
        }
        if let Some(pl) = payloads {
            conn.payloads = pl;
        }
        if let Some((t, _)) = &ne {
            conn.notified_entity = Some(t.clone());
        }
        conn.sdp_version += 1;
        conn.local_sdp = sdp::local_sdp(
            conn.session_id,
            conn.sdp_version,
            rtp_addr,
            conn.port,
            &conn.payloads,
            ptime,
        );
        let local_sdp = conn.local_sdp.clone();
        if let Some(req) = request {
            self.apply_request(ei, from, ne, req);
        } else if let Some(ne) = ne {
            self.reg.endpoints[ei].notified_entity = Some(ne);
        }
        let mut resp = Response::new(ReturnCode::OK, cmd.tid);
        resp.sdp = Some(local_sdp);
        Ok(resp)
    }

    fn stats_param(c: &Connection) -> String {
        let s = c.counters.snapshot();
        format!(
            "PS={}, OS={}, PR={}, OR={}, PL={}, JI={}, LA={}",
            s.packets_sent,
            s.octets_sent,
            s.packets_recv,
            s.octets_recv,
            s.packets_lost,
            s.jitter_us / 1000,
            s.rtt_us / 1000
        )
    }

    fn dlcx(&mut self, from: SocketAddr, cmd: &Command) -> Result<Response, Error> {
        let p = &cmd.params;
        let call = p.get(&ParamName::CallId).map(CallId::parse).transpose()?;
        let has_id = p.contains(&ParamName::ConnectionId);
        if has_id {
            // One connection.
            let ei = self.one_endpoint(&cmd.endpoint)?;
            let ci = self.find_conn(ei, p, false)?;
            let request = self.validate_request(ei, p, false)?;
            let conn = self.remove_connection(ei, ci);
            if let Some(req) = request {
                self.apply_request(ei, from, None, req);
            }
            let mut resp = Response::new(ReturnCode::CONNECTION_DELETED, cmd.tid);
            resp.params
                .push(ParamName::ConnectionParameters, Self::stats_param(&conn));
            return Ok(resp);
        }
        // All connections of a call, or of the endpoint(s).
        let eps = self.reg.resolve(&cmd.endpoint)?;
        if cmd.endpoint.wildcard() == Wildcard::Any {
            return Err(Error::Protocol(
                "the \"any\" wildcard cannot be used with DLCX".into(),
            ));
        }
        let request = match eps.as_slice() {
            [one] => self.validate_request(*one, p, false)?,
            _ if p.contains(&ParamName::RequestIdentifier) => {
                return Err(Error::InvalidParameter(
                    "notification request with a wildcarded DLCX".into(),
                ))
            }
            _ => None,
        };
        let mut victims = Vec::new();
        for &ei in &eps {
            for (ci, c) in self.reg.endpoints[ei].connections.iter().enumerate() {
                if call.as_ref().is_none_or(|k| *k == c.call) {
                    victims.push((ei, ci));
                }
            }
        }
        if let Some(call) = &call {
            if victims.is_empty() {
                return Err(Error::UnknownCallId(call.as_str().to_string()));
            }
        }
        let deleted = !victims.is_empty();
        // Remove from the back so indices stay valid.
        victims.sort_unstable_by(|a, b| b.cmp(a));
        for (ei, ci) in victims {
            self.remove_connection(ei, ci);
        }
        if let (Some(req), [one]) = (request, eps.as_slice()) {
            self.apply_request(*one, from, None, req);
        }
        // 250 when connections went away; plain 200 when there was nothing to delete.
        let code = if deleted {
            ReturnCode::CONNECTION_DELETED
        } else {
            ReturnCode::OK
        };
        Ok(Response::new(code, cmd.tid))
    }

    fn rqnt(&mut self, from: SocketAddr, cmd: &Command) -> Result<Response, Error> {
        let eps = self.reg.resolve(&cmd.endpoint)?;
        if eps.is_empty() {
            return Err(Error::EndpointUnknown(cmd.endpoint.to_string()));
        }
        if cmd.endpoint.wildcard() == Wildcard::Any {
            return Err(Error::Protocol(
                "the \"any\" wildcard cannot be used with RQNT".into(),
            ));
        }
        let ne = cmd
            .params
            .get(&ParamName::NotifiedEntity)
            .map(|t| self.resolve_notified_entity(t).map(|a| (t.to_string(), a)))
            .transpose()?;
        // Validate for every endpoint first, then apply to all.
        let mut reqs = Vec::with_capacity(eps.len());
        for &ei in &eps {
            let req = self.validate_request(ei, &cmd.params, true)?;
            reqs.push((ei, req));
        }
        for (ei, req) in reqs {
            if let Some(req) = req {
                self.apply_request(ei, from, ne.clone(), req);
            }
        }
        Ok(Response::new(ReturnCode::OK, cmd.tid))
    }

    fn epcf(&mut self, cmd: &Command) -> Result<Response, Error> {
        let eps = self.reg.resolve(&cmd.endpoint)?;
        if eps.is_empty() {
            return Err(Error::EndpointUnknown(cmd.endpoint.to_string()));
        }
        if let Some(b) = cmd.params.get(&ParamName::BearerInformation) {
            let bi = mgcp::params::BearerInformation::parse(b)?;
            for &ei in &eps {
                let ep = &self.reg.endpoints[ei];
                if let (EndpointKind::Ds { law, .. }, Some(enc)) = (&ep.spec.kind, bi.encoding) {
                    let want = match enc {
                        mgcp::params::BearerEncoding::ALaw => Law::Alaw,
                        mgcp::params::BearerEncoding::MuLaw => Law::Ulaw,
                    };
                    if want != *law {
                        return Err(Error::Unsupported(format!(
                            "{} carries {:?}; changing the law needs transcoding",
                            ep.spec.local_name, law
                        )));
                    }
                }
            }
            for &ei in &eps {
                self.reg.endpoints[ei].bearer = Some(b.to_string());
            }
        }
        Ok(Response::new(ReturnCode::OK, cmd.tid))
    }

    fn capabilities(&self, ei: usize) -> String {
        let ep = &self.reg.endpoints[ei];
        let codecs = match &ep.policy {
            sdp::CodecPolicy::Relay => {
                "PCMU;PCMA;G722;G729;GSM;G723;L16;opus;telephone-event".to_string()
            }
            sdp::CodecPolicy::Transcode(v) => format!("{};telephone-event", v.join(";")),
        };
        let pkgs = Catalog::new(&ep.spec).packages().join(";");
        format!(
            "a:{codecs}, p:10-200, e:off, s:off, v:{pkgs}, m:sendonly;recvonly;sendrecv;inactive;loopback;conttest;netwloop;netwtest, nt:IN"
        )
    }

    fn auep(&mut self, cmd: &Command) -> Result<Response, Error> {
        let eps = self.reg.resolve(&cmd.endpoint)?;
        let info = cmd
            .params
            .get(&ParamName::RequestedInfo)
            .map(parse_requested_info)
            .transpose()?
            .unwrap_or_default();
        let mut resp = Response::new(ReturnCode::OK, cmd.tid);
        if cmd.endpoint.wildcard() != Wildcard::None {
            if eps.is_empty() {
                return Err(Error::EndpointUnknown(cmd.endpoint.to_string()));
            }
            // A wildcarded audit lists the endpoints it names (RFC 3435 §2.3.10).
            for ei in eps {
                resp.params
                    .push(ParamName::SpecificEndpointId, self.full_name(ei));
            }
            return Ok(resp);
        }
        let ei = eps[0];
        let ep = &self.reg.endpoints[ei];
        for code in info {
            match code {
                InfoCode::Param(ParamName::RequestedEvents) => {
                    let v: Vec<String> = ep.notify.events.iter().map(|e| e.to_string()).collect();
                    resp.params.push(ParamName::RequestedEvents, v.join(","));
                }
                InfoCode::Param(ParamName::SignalRequests) => {
                    let v: Vec<String> = ep.notify.signals.iter().map(|e| e.to_string()).collect();
                    resp.params.push(ParamName::SignalRequests, v.join(","));
                }
                InfoCode::Param(ParamName::DetectEvents) => {
                    let v: Vec<String> = ep.notify.detect.iter().map(|e| e.to_string()).collect();
                    resp.params.push(ParamName::DetectEvents, v.join(","));
                }
                InfoCode::Param(ParamName::DigitMap) => {
                    let v = ep
                        .notify
                        .digit_map
                        .as_ref()
                        .map(|d| d.as_str().to_string())
                        .unwrap_or_default();
                    resp.params.push(ParamName::DigitMap, v);
                }
                InfoCode::Param(ParamName::RequestIdentifier) => {
                    resp.params.push(
                        ParamName::RequestIdentifier,
                        ep.notify.request_id.clone().unwrap_or_default(),
                    );
                }
                InfoCode::Param(ParamName::NotifiedEntity) => {
                    let v = ep
                        .notified_entity
                        .as_ref()
                        .map(|(t, _)| t.clone())
                        .unwrap_or_default();
                    resp.params.push(ParamName::NotifiedEntity, v);
                }
                InfoCode::Param(ParamName::ConnectionId) => {
                    let v: Vec<&str> = ep.connections.iter().map(|c| c.id.as_str()).collect();
                    resp.params.push(ParamName::ConnectionId, v.join(", "));
                }
                InfoCode::Param(ParamName::ObservedEvents) => {
                    let v: Vec<String> = ep.notify.observed.iter().map(|e| e.to_string()).collect();
                    resp.params.push(ParamName::ObservedEvents, v.join(","));
                }
                InfoCode::Param(ParamName::QuarantineHandling) => {
                    let v = ep
                        .notify
                        .quarantine_handling
                        .as_ref()
                        .map(|q| q.to_string())
                        .unwrap_or_else(|| "process,step".into());
                    resp.params.push(ParamName::QuarantineHandling, v);
                }
                InfoCode::Param(ParamName::EventStates) => {
                    // The hook state of a line with signalling (RFC 3660: L/hd or L/hu).
                    let v = if ep.spec.line.signalling {
                        if self.off_hook.contains(&ei) {
                            "L/hd"
                        } else {
                            "L/hu"
                        }
                    } else {
                        ""
                    };
                    resp.params.push(ParamName::EventStates, v);
                }
                InfoCode::Param(ParamName::BearerInformation) => {
                    let v = ep.bearer.clone().unwrap_or_else(|| match ep.spec.kind {
                        EndpointKind::Ds { law: Law::Alaw, .. } => "e:A".into(),
                        EndpointKind::Ds { law: Law::Ulaw, .. } => "e:mu".into(),
                        EndpointKind::RtpBridge(_) => String::new(),
                    });
                    resp.params.push(ParamName::BearerInformation, v);
                }
                InfoCode::Param(ParamName::RestartMethod) => {
                    resp.params.push(ParamName::RestartMethod, "restart")
                }
                InfoCode::Param(ParamName::RestartDelay) => {
                    resp.params.push(ParamName::RestartDelay, "0")
                }
                InfoCode::Param(ParamName::ReasonCode) => {
                    resp.params.push(ParamName::ReasonCode, "000")
                }
                InfoCode::Param(ParamName::Capabilities) => resp
                    .params
                    .push(ParamName::Capabilities, self.capabilities(ei)),
                InfoCode::Param(ParamName::PackageList) => {
                    let v: Vec<String> = Catalog::new(&ep.spec)
                        .packages()
                        .iter()
                        .map(|p| format!("{p}:0"))
                        .collect();
                    resp.params.push(ParamName::PackageList, v.join(","));
                }
                InfoCode::Param(ParamName::MaxMgcpDatagram) => {
                    resp.params.push(ParamName::MaxMgcpDatagram, "4000")
                }
                other => {
                    return Err(Error::InvalidParameter(format!(
                        "F: {other} cannot be audited on an endpoint"
                    )));
                }
            }
        }
        Ok(resp)
    }

    fn aucx(&mut self, cmd: &Command) -> Result<Response, Error> {
        let ei = self.one_endpoint(&cmd.endpoint)?;
        let ci = self.find_conn(ei, &cmd.params, false)?;
        let info = cmd
            .params
            .get(&ParamName::RequestedInfo)
            .map(parse_requested_info)
            .transpose()?
            .unwrap_or_default();
        let conn = &self.reg.endpoints[ei].connections[ci];
        let mut resp = Response::new(ReturnCode::OK, cmd.tid);
        let mut lc = None;
        let mut rc = None;
        for code in info {
            match code {
                InfoCode::Param(ParamName::CallId) => {
                    resp.params.push(ParamName::CallId, conn.call.as_str())
                }
                InfoCode::Param(ParamName::NotifiedEntity) => resp.params.push(
                    ParamName::NotifiedEntity,
                    conn.notified_entity.clone().unwrap_or_default(),
                ),
                InfoCode::Param(ParamName::LocalConnectionOptions) => resp.params.push(
                    ParamName::LocalConnectionOptions,
                    conn.lco_text.clone().unwrap_or_default(),
                ),
                InfoCode::Param(ParamName::ConnectionMode) => resp
                    .params
                    .push(ParamName::ConnectionMode, conn.mode.to_string()),
                InfoCode::Param(ParamName::ConnectionParameters) => resp
                    .params
                    .push(ParamName::ConnectionParameters, Self::stats_param(conn)),
                InfoCode::LocalConnectionDescriptor => lc = Some(conn.local_sdp.clone()),
                InfoCode::RemoteConnectionDescriptor => {
                    rc = Some(conn.remote_sdp.clone().unwrap_or_default())
                }
                other => {
                    return Err(Error::InvalidParameter(format!(
                        "F: {other} cannot be audited on a connection"
                    )));
                }
            }
        }
        // Both descriptors: local first, then remote, separated by an empty line.
        resp.sdp = match (lc, rc) {
            (Some(l), Some(r)) => Some(format!("{}\r\n{}", l, r.trim_end())),
            (Some(l), None) => Some(l),
            (None, Some(r)) => Some(r),
            (None, None) => None,
        };
        Ok(resp)
    }

    /// Deletes every connection (on shutdown or restart). Returns how many.
    pub fn delete_all(&mut self) -> usize {
        let mut n = 0;
        for ei in 0..self.reg.endpoints.len() {
            while !self.reg.endpoints[ei].connections.is_empty() {
                let last = self.reg.endpoints[ei].connections.len() - 1;
                self.remove_connection(ei, last);
                n += 1;
            }
            self.reg.endpoints[ei].notify.clear();
        }
        n
    }
}

impl<M: MediaPlane> Core<M> {
    /// Every endpoint, for the admin API.
    pub fn endpoints_info(&self) -> Vec<crate::admin::EndpointInfo> {
        (0..self.reg.endpoints.len())
            .map(|ei| {
                let ep = &self.reg.endpoints[ei];
                crate::admin::EndpointInfo {
                    name: self.full_name(ei),
                    kind: match ep.spec.kind {
                        EndpointKind::Ds { .. } => "ds".into(),
                        EndpointKind::RtpBridge(_) => "rtpbridge".into(),
                    },
                    state: if ep.connections.is_empty() {
                        "idle".into()
                    } else {
                        "active".into()
                    },
                    connections: ep.connections.len(),
                    request_id: ep.notify.request_id.clone(),
                    notified_entity: ep.notified_entity.as_ref().map(|(t, _)| t.clone()),
                }
            })
            .collect()
    }

    /// Every connection with live statistics, for the admin API.
    pub fn connections_info(&self) -> Vec<crate::admin::ConnectionInfo> {
        let mut v = Vec::new();
        for (ei, ep) in self.reg.endpoints.iter().enumerate() {
            for c in &ep.connections {
                let s = c.counters.snapshot();
                v.push(crate::admin::ConnectionInfo {
                    endpoint: self.full_name(ei),
                    id: c.id.as_str().to_string(),
                    call_id: c.call.as_str().to_string(),
                    mode: c.mode.to_string(),
                    local_port: c.port,
                    remote: c.remote.as_ref().and_then(|r| r.rtp).map(|a| a.to_string()),
                    codecs: c
                        .payloads
                        .iter()
                        .map(|p| format!("{} {}/{}", p.pt, p.codec.name, p.codec.clock_rate))
                        .collect(),
                    rtp: crate::admin::RtpStats {
                        packets_sent: s.packets_sent,
                        octets_sent: s.octets_sent,
                        packets_received: s.packets_recv,
                        octets_received: s.octets_recv,
                        packets_lost: s.packets_lost,
                        jitter_ms: s.jitter_us / 1000,
                        latency_ms: s.rtt_us / 1000,
                        dropped_source: s.dropped_source,
                        dropped_mode: s.dropped_mode,
                        dropped_invalid: s.dropped_invalid,
                        jitter_buffer_ms: s.jb_delay_us / 1000,
                        late: s.jb_late,
                        concealed: s.plc_frames,
                    },
                });
            }
        }
        v
    }

    /// Adds the core's metric families.
    pub fn write_metrics(&self, m: &mut crate::admin::Metrics) {
        m.family(
            "mgw_mgcp_commands",
            "counter",
            "MGCP commands executed, by verb and return code",
        );
        let mut cmds: Vec<_> = self.stats.commands.iter().collect();
        cmds.sort_by_key(|((v, c), _)| (v.as_str(), *c));
        for ((verb, code), n) in cmds {
            m.sample(
                "mgw_mgcp_commands_total",
                &[("verb", verb.as_str()), ("code", &format!("{code:03}"))],
                *n,
            );
        }
        m.counter(
            "mgw_notifications",
            "Notifications (NTFY) queued",
            self.stats.notifies,
        );
        m.counter(
            "mgw_dataplane_queue_full",
            "Dataplane commands that found a full worker queue",
            self.stats.dataplane_full,
        );
        let mut by_state: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        let mut by_mode: BTreeMap<String, u64> = BTreeMap::new();
        let mut drops = [0u64; 3];
        let (mut pin, mut pout, mut bin, mut bout, mut lost) = (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut max_jitter = 0u64;
        let (mut jb_late, mut jb_lost, mut plc, mut jb_max) = (0u64, 0u64, 0u64, 0u64);
        for ep in &self.reg.endpoints {
            let kind = match ep.spec.kind {
                EndpointKind::Ds { .. } => "ds",
                EndpointKind::RtpBridge(_) => "rtpbridge",
            };
            let state = if ep.connections.is_empty() {
                "idle"
            } else {
                "active"
            };
            *by_state.entry((kind, state)).or_default() += 1;
            for c in &ep.connections {
                *by_mode.entry(c.mode.to_string()).or_default() += 1;
                let s = c.counters.snapshot();
                drops[0] += s.dropped_source;
                drops[1] += s.dropped_mode;
                drops[2] += s.dropped_invalid;
                pin += s.packets_recv;
                pout += s.packets_sent;
                bin += s.octets_recv;
                bout += s.octets_sent;
                lost += s.packets_lost;
                max_jitter = max_jitter.max(s.jitter_us);
                jb_late += s.jb_late;
                jb_lost += s.jb_lost;
                plc += s.plc_frames;
                jb_max = jb_max.max(s.jb_delay_us);
            }
        }
        m.family("mgw_endpoints", "gauge", "Endpoints by kind and state");
        for ((kind, state), n) in by_state {
            m.sample("mgw_endpoints", &[("kind", kind), ("state", state)], n);
        }
        m.family("mgw_connections", "gauge", "Live connections by mode");
        for (mode, n) in &by_mode {
            m.sample("mgw_connections", &[("mode", mode)], *n);
        }
        m.family(
            "mgw_rtp_packets",
            "gauge",
            "RTP packets of live connections",
        );
        m.sample("mgw_rtp_packets", &[("direction", "in")], pin);
        m.sample("mgw_rtp_packets", &[("direction", "out")], pout);
        m.family(
            "mgw_rtp_octets",
            "gauge",
            "RTP payload octets of live connections",
        );
        m.sample("mgw_rtp_octets", &[("direction", "in")], bin);
        m.sample("mgw_rtp_octets", &[("direction", "out")], bout);
        m.gauge(
            "mgw_rtp_lost_packets",
            "RTP packets lost on live connections (RFC 3550)",
            lost,
        );
        m.gauge(
            "mgw_rtp_jitter_max_microseconds",
            "Largest interarrival jitter among live connections",
            max_jitter,
        );
        m.gauge(
            "mgw_jitter_buffer_late_packets",
            "Packets too late for playout, TDM connections now live",
            jb_late,
        );
        m.gauge(
            "mgw_jitter_buffer_lost_frames",
            "Frames that never arrived, TDM connections now live",
            jb_lost,
        );
        m.gauge(
            "mgw_jitter_buffer_delay_max_microseconds",
            "Largest jitter-buffer delay among live TDM connections",
            jb_max,
        );
        m.gauge(
            "mgw_plc_frames",
            "Frames produced by packet-loss concealment, TDM connections now live",
            plc,
        );
        m.family(
            "mgw_rtp_dropped_packets",
            "gauge",
            "RTP packets dropped on live connections, by reason",
        );
        m.sample(
            "mgw_rtp_dropped_packets",
            &[("reason", "source_check")],
            drops[0],
        );
        m.sample("mgw_rtp_dropped_packets", &[("reason", "mode")], drops[1]);
        m.sample(
            "mgw_rtp_dropped_packets",
            &[("reason", "invalid")],
            drops[2],
        );
    }
}
