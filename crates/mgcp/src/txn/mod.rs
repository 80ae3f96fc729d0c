//! The MGCP transaction layer, gateway side (RFC 3435 §3.5, §4): [`Agent`].
//!
//! # What it does
//! - **Incoming commands, at most once** (`incoming.rs`): every command from a configured
//!   call agent is delivered once as [`Event::Command`]; the response given to
//!   [`Agent::respond`] is cached per (source address, transaction id) for T-HIST and
//!   re-sent byte-identical to retransmissions. A retransmission that arrives while the
//!   command is still executing gets `100`. A final response that follows a provisional one
//!   carries an empty `K:` and is retransmitted until the `000` response ack arrives
//!   (at most Max2 times, and never past T-HIST). `K:` lists in incoming commands
//!   confirm responses: their cached copies are dropped and the transaction id is kept as
//!   a tombstone until T-HIST, so a stray late copy of a confirmed command is discarded
//!   silently rather than executed twice. After T-HIST a transaction is forgotten.
//! - **Outgoing commands** (`outgoing.rs`): retransmitted with exponential backoff from
//!   `initial_rto`, doubling to `max_rto`, each timer stretched by a random 0–25 % from a
//!   seeded generator. A `1xx` stops retransmission for `provisional_wait`, after which it
//!   resumes. After Max1 retransmissions to one address the next call agent address is
//!   tried; after Max2 retransmissions in all (or when no address is left) the command
//!   fails ([`Event::Failed`]). Final responses are confirmed in the `K:` of the next
//!   command to that call agent, or at once with `000` when they carry `K:` themselves.
//! - **Restart and disconnected procedures** (`link.rs`, §4.4.3–4.4.4): see
//!   [`Agent::restart`].
//!
//! Sources: commands are accepted only from the IP addresses of the configured call
//! agents; responses are accepted for our own outstanding transactions from those
//! addresses or from the address the command was sent to.
//!
//! Not done: `521` redirection (a `521` is reported as an ordinary [`Event::Response`]),
//! and piggybacking of our own replies (each response goes in its own datagram).

mod ack;
mod incoming;
mod link;
mod outgoing;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub use ack::{format_response_ack, parse_response_ack};

use crate::message::{Command, Message, Response, TransactionId};
use crate::name::EndpointName;
use crate::parse::parse_datagram;

/// Transaction id 1, built at compile time.
const FIRST_TID: TransactionId = match TransactionId::new(1) {
    Some(t) => t,
    None => panic!("1 is a valid transaction id"),
};

/// Timers and limits of the transaction layer. `Default` gives the RFC 3435 values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long responses (and transaction ids) are remembered: T-HIST, 30 s.
    pub t_hist: Duration,
    /// First retransmission timer, 200 ms.
    pub initial_rto: Duration,
    /// Cap of the exponential backoff, 4 s.
    pub max_rto: Duration,
    /// Retransmissions to one address before trying the next call agent address (5).
    pub max1: u32,
    /// Retransmissions of one command in all before giving up (7).
    pub max2: u32,
    /// How long to wait for the final response after a provisional one before
    /// retransmitting again (10 s).
    pub provisional_wait: Duration,
    /// Largest random wait before the first RSIP after [`Agent::restart`] (§4.4.3);
    /// 0 disables the wait.
    pub restart_avalanche: Duration,
    /// Tdinit: bound of the first random wait of the disconnected procedure, 15 s.
    pub disconnected_initial: Duration,
    /// Tdmax: cap of the doubling disconnected wait, 600 s.
    pub disconnected_max: Duration,
    /// Largest response we send; a bigger one is replaced by `533` (4000 bytes).
    pub max_datagram: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            t_hist: Duration::from_secs(30),
            initial_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(4),
            max1: 5,
            max2: 7,
            provisional_wait: Duration::from_secs(10),
            restart_avalanche: Duration::ZERO,
            disconnected_initial: Duration::from_secs(15),
            disconnected_max: Duration::from_secs(600),
            max_datagram: 4000,
        }
    }
}

/// Where a gateway-originated command goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Destination {
    /// The current call agent, failing over to the backups after Max1 retransmissions.
    CallAgent,
    /// One fixed address (e.g. a NotifiedEntity); no failover.
    Addr(SocketAddr),
}

/// A datagram to send.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Transmit {
    /// Where to.
    pub dest: SocketAddr,
    /// The MGCP text.
    pub payload: Vec<u8>,
}

/// What the control plane must act on.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// A new command: execute it, then call [`Agent::respond`] with `to = from`.
    /// A `K:` parameter has already been consumed and removed.
    Command {
        /// Source of the command.
        from: SocketAddr,
        /// The command.
        command: Command,
    },
    /// A command we sent got its final response.
    Response {
        /// Its transaction id.
        tid: TransactionId,
        /// The command as sent (without `K:`).
        command: Command,
        /// The final response.
        response: Response,
    },
    /// A command we sent was given up (Max2 reached or no call agent address left).
    Failed {
        /// Its transaction id.
        tid: TransactionId,
        /// The command.
        command: Command,
    },
    /// A restart or disconnected RSIP was answered: the gateway is in service with this
    /// call agent.
    LinkUp {
        /// The call agent that answered.
        call_agent: SocketAddr,
    },
    /// The call agents are unreachable; the disconnected procedure runs.
    LinkDown,
}

/// The state of the association with the call agents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LinkState {
    /// Before the restart RSIP has been answered (also the state of a new [`Agent`],
    /// until [`Agent::restart`] is called).
    Restarting,
    /// The last restart or disconnected RSIP was answered.
    Connected,
    /// The call agents could not be reached; the disconnected procedure is running.
    Disconnected,
}

/// Counters, for monitoring and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Datagrams handed to `handle_datagram`.
    pub datagrams_received: u64,
    /// Command messages received from accepted sources (including duplicates).
    pub commands_received: u64,
    /// New commands delivered as [`Event::Command`].
    pub commands_delivered: u64,
    /// Duplicates answered with the cached response.
    pub duplicates_answered: u64,
    /// Commands that reused a remembered transaction id with different content (a
    /// restarted call agent) and were executed as new.
    pub transaction_ids_reused: u64,
    /// Duplicates of a command still executing (answered with `100`).
    pub duplicates_in_progress: u64,
    /// Duplicates of a confirmed (acknowledged) transaction, dropped silently.
    pub duplicates_after_ack: u64,
    /// Provisional responses sent (automatic or by `send_provisional`).
    pub provisionals_sent: u64,
    /// Final responses sent (first copies).
    pub responses_sent: u64,
    /// Retransmissions of final-after-provisional responses.
    pub response_retransmissions: u64,
    /// Final-after-provisional responses given up without a `000`.
    pub response_ack_timeouts: u64,
    /// `000` response acks received for our responses.
    pub response_acks_received: u64,
    /// Cached responses confirmed by a `K:` list.
    pub responses_confirmed: u64,
    /// Responses that were too big and were replaced by `533`.
    pub responses_too_big: u64,
    /// Calls to `respond` for a transaction already answered (ignored).
    pub responses_ignored: u64,
    /// Commands sent (first copies).
    pub commands_sent: u64,
    /// Retransmissions of our commands.
    pub retransmissions_sent: u64,
    /// Switches to another call agent address after Max1.
    pub failovers: u64,
    /// Our commands given up.
    pub failures: u64,
    /// Provisional responses received for our commands.
    pub provisionals_received: u64,
    /// Final responses received for our commands.
    pub responses_received: u64,
    /// Repeated final responses to commands already completed.
    pub duplicate_responses: u64,
    /// Responses matching no transaction of ours (or from a wrong source).
    pub stray_responses: u64,
    /// `000` acks we sent.
    pub response_acks_sent: u64,
    /// Messages from a source that is not a configured call agent, dropped.
    pub rejected_sources: u64,
    /// Unparseable commands with a readable tid, answered with an error code.
    pub parse_errors_answered: u64,
    /// Unparseable messages without a usable tid (or unparseable responses), dropped.
    pub parse_errors_dropped: u64,
}

/// The timers kept in one ordered set.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Timer {
    /// Retransmission (or provisional wait) of one of our commands.
    Outgoing(TransactionId),
    /// Retransmission of a final-after-provisional response awaiting `000`.
    ResponseRetx(SocketAddr, TransactionId),
    /// The restart avalanche wait or the disconnected wait.
    Link,
}

/// A small xorshift64* generator: deterministic jitter from the seed given to
/// [`Agent::new`].
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let s = seed ^ 0x9E37_79B9_7F4A_7C15;
        Rng(if s == 0 { 0x2545_F491_4F6C_DD1D } else { s })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..=n` (modulo bias is irrelevant here).
    fn upto(&mut self, n: u64) -> u64 {
        match n.checked_add(1) {
            Some(m) => self.next_u64() % m,
            None => self.next_u64(),
        }
    }

    /// Uniform duration in `[lo, hi]` at nanosecond resolution.
    fn duration_between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let span = u64::try_from((hi - lo).as_nanos()).unwrap_or(u64::MAX);
        lo + Duration::from_nanos(self.upto(span))
    }
}

/// An address or network (`10.0.0.0/24`, `2001:db8::/32`, or one address) commands may
/// come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl AllowNet {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Result<AllowNet, crate::Error> {
        let bad = || {
            crate::Error::InvalidParameter(format!(
                "{s:?} is not an address or ADDR/PREFIX network"
            ))
        };
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(AllowNet { addr, prefix })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let bits = |a: std::net::IpAddr| -> (u128, u8) {
            match a {
                std::net::IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                std::net::IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let (x, wx) = bits(self.addr);
        let (y, wy) = bits(ip);
        if wx != wy {
            return false;
        }
        // Both are left-aligned in 128 bits: keep the top `prefix` bits.
        let mask = match self.prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p)),
        };
        (x & mask) == (y & mask)
    }
}

/// The gateway side of MGCP: a sans-IO state machine. See the module docs.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    call_agents: Vec<SocketAddr>,
    current_ca: usize,
    rsip_endpoint: EndpointName,
    rng: Rng,
    next_tid: TransactionId,
    stats: AgentStats,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    timers: BTreeSet<(Instant, Timer)>,
    // Incoming side.
    cache: HashMap<SocketAddr, BTreeMap<TransactionId, incoming::Entry>>,
    /// T-HIST deadlines of answered entries, in the order they were answered.
    expiry: VecDeque<incoming::Expiry>,
    /// Source addresses named by `expiry` (32-byte addresses stored once, not per entry).
    sources: incoming::Sources,
    generation: u64,
    // Outgoing side.
    outgoing: HashMap<TransactionId, outgoing::Outgoing>,
    pending_acks: HashMap<SocketAddr, Vec<TransactionId>>,
    completed: HashMap<TransactionId, (Instant, SocketAddr)>,
    completed_fifo: VecDeque<(Instant, TransactionId)>,
    // Restart / disconnected procedure.
    link: link::Link,
    link_timer: Option<Instant>,
    /// Extra command sources (see [`Agent::set_allowed`]).
    allowed: Vec<AllowNet>,
}

impl Agent {
    /// A new agent. `call_agents[0]` is the primary call agent, the rest are backups;
    /// commands are accepted only from these IP addresses. `domain` names the gateway in
    /// the RSIP endpoint `*@domain`; a domain that is not a valid endpoint domain is
    /// replaced by `localhost` (use [`Agent::try_new`] to reject it). `seed` drives the
    /// jitter, the random waits and the first transaction id.
    pub fn new(config: Config, domain: String, call_agents: Vec<SocketAddr>, seed: u64) -> Agent {
        let rsip_endpoint = EndpointName::new("*", &domain).unwrap_or_else(|_| {
            // "*@localhost" is a constant, valid name; this cannot fail.
            EndpointName::new("*", "localhost").unwrap_or_else(|_| unreachable!())
        });
        Self::build(config, rsip_endpoint, call_agents, seed)
    }

    /// Like [`Agent::new`] but fails when `domain` is not a valid endpoint domain.
    pub fn try_new(
        config: Config,
        domain: &str,
        call_agents: Vec<SocketAddr>,
        seed: u64,
    ) -> Result<Agent, crate::code::Error> {
        let rsip_endpoint = EndpointName::new("*", domain)?;
        Ok(Self::build(config, rsip_endpoint, call_agents, seed))
    }

    fn build(
        config: Config,
        rsip_endpoint: EndpointName,
        call_agents: Vec<SocketAddr>,
        seed: u64,
    ) -> Agent {
        let mut rng = Rng::new(seed);
        let first = u32::try_from(rng.upto(u64::from(TransactionId::MAX - 1))).unwrap_or(0) + 1;
        let next_tid = TransactionId::new(first).unwrap_or(FIRST_TID);
        Agent {
            config,
            call_agents,
            current_ca: 0,
            rsip_endpoint,
            rng,
            next_tid,
            stats: AgentStats::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timers: BTreeSet::new(),
            cache: HashMap::new(),
            expiry: VecDeque::new(),
            sources: incoming::Sources::default(),
            generation: 0,
            outgoing: HashMap::new(),
            pending_acks: HashMap::new(),
            completed: HashMap::new(),
            completed_fifo: VecDeque::new(),
            link: link::Link::Idle,
            link_timer: None,
            allowed: Vec::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one received datagram (possibly several piggybacked messages).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_received += 1;
        let results = parse_datagram(bytes);
        let kinds = segment_kinds(bytes);
        let kinds_valid = kinds.len() == results.len();
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(Message::Command(cmd)) => {
                    if !self.is_call_agent(from) {
                        self.stats.rejected_sources += 1;
                        continue;
                    }
                    self.handle_command(now, from, cmd);
                }
                Ok(Message::Response(resp)) => self.handle_response(now, from, resp),
                Err(err) => {
                    let looks_like_response = kinds_valid && kinds[i];
                    match err.tid {
                        Some(tid) if !looks_like_response => {
                            if !self.is_call_agent(from) {
                                self.stats.rejected_sources += 1;
                                continue;
                            }
                            self.handle_parse_error(now, from, tid, &err.error);
                        }
                        _ => self.stats.parse_errors_dropped += 1,
                    }
                }
            }
        }
    }

    /// Runs every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, timer));
            match timer {
                Timer::Outgoing(tid) => self.outgoing_timer(now, tid),
                Timer::ResponseRetx(addr, tid) => self.response_retx_timer(now, addr, tid),
                Timer::Link => {
                    self.link_timer = None;
                    self.link_timer_fired(now);
                }
            }
        }
    }

    /// The next event for the control plane, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`Agent::handle_timeout`] must be called next (the earliest of all
    /// retransmission timers, T-HIST expiries and procedure waits).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.first().map(|(at, _)| *at),
            self.expiry.front().map(|e| e.at),
            self.completed_fifo.front().map(|e| e.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The link state.
    pub fn state(&self) -> LinkState {
        self.link.state()
    }

    /// The current call agent (`0.0.0.0:0` when none is configured).
    pub fn call_agent(&self) -> SocketAddr {
        self.call_agents
            .get(self.current_ca)
            .copied()
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    }

    /// Replaces the call agent list (first = primary). Commands in flight keep their
    /// current address and fail over within the new list.
    pub fn set_call_agents(&mut self, cas: Vec<SocketAddr>) {
        self.call_agents = cas;
        self.current_ca = 0;
    }

    /// Gateway-originated transactions still waiting for their final response.
    pub fn outstanding(&self) -> usize {
        self.outgoing.len()
    }

    /// Responses remembered for retransmitted commands (all call agents).
    pub fn history_len(&self) -> usize {
        self.cache.values().map(BTreeMap::len).sum()
    }

    /// Counters.
    pub fn stats(&self) -> &AgentStats {
        &self.stats
    }

    fn is_call_agent(&self, from: SocketAddr) -> bool {
        self.call_agents.iter().any(|a| a.ip() == from.ip())
            || self.allowed.iter().any(|n| n.contains(from.ip()))
    }

    /// Further sources whose commands are obeyed besides the call agents' addresses
    /// (e.g. the other nodes of a call-agent cluster).
    pub fn set_allowed(&mut self, nets: Vec<AllowNet>) {
        self.allowed = nets;
    }

    fn send(&mut self, dest: SocketAddr, payload: Vec<u8>) {
        self.transmits.push_back(Transmit { dest, payload });
    }

    fn alloc_tid(&mut self) -> TransactionId {
        loop {
            let t = self.next_tid;
            self.next_tid = t.next();
            if !self.outgoing.contains_key(&t) {
                return t;
            }
        }
    }

    /// A backoff timer: `base` stretched by a random 0–25 %.
    fn jittered(&mut self, base: Duration) -> Duration {
        self.rng.duration_between(base, base + base / 4)
    }

    fn set_timer(&mut self, slot_at: Option<Instant>, timer: Timer, at: Option<Instant>) {
        if let Some(old) = slot_at {
            self.timers.remove(&(old, timer));
        }
        if let Some(at) = at {
            self.timers.insert((at, timer));
        }
    }

    /// Drops cache entries and completed-transaction records older than T-HIST.
    fn expire(&mut self, now: Instant) {
        while let Some(&e) = self.expiry.front() {
            if e.at > now {
                break;
            }
            self.expiry.pop_front();
            self.expire_entry(e);
        }
        while let Some(&(at, tid)) = self.completed_fifo.front() {
            if at > now {
                break;
            }
            self.completed_fifo.pop_front();
            if self.completed.get(&tid).map(|c| c.0) == Some(at) {
                self.completed.remove(&tid);
            }
        }
    }
}

/// For each non-blank piggybacked segment of `bytes` (split the way the parser splits,
/// at lines holding only `.`), whether it looks like a response (first token starts with
/// a digit). Used to avoid answering an unparseable *response* with an error response.
fn segment_kinds(bytes: &[u8]) -> Vec<bool> {
    let mut kinds = Vec::new();
    let mut segment_first: Option<bool> = None;
    let mut any_text = false;
    for line in bytes.split(|&b| b == b'\n') {
        let t = line.trim_ascii();
        if t == b"." {
            if any_text {
                kinds.push(segment_first.unwrap_or(false));
            }
            segment_first = None;
            any_text = false;
            continue;
        }
        if !t.is_empty() && !any_text {
            any_text = true;
            segment_first = Some(t.first().is_some_and(|b| b.is_ascii_digit()));
        }
    }
    if any_text {
        kinds.push(segment_first.unwrap_or(false));
    }
    kinds
}

/// Encodes one message to bytes.
fn encode(msg: Message) -> Vec<u8> {
    msg.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_kinds_follow_piggyback_split() {
        let d = b"200 1 OK\r\n.\r\nNTFY 2 a@b MGCP 1.0\r\n.\r\n\r\n";
        assert_eq!(segment_kinds(d), vec![true, false]);
        assert_eq!(segment_kinds(b"\r\n  \r\n"), Vec::<bool>::new());
        assert_eq!(segment_kinds(b"xyz\n"), vec![false]);
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.duration_between(Duration::from_millis(200), Duration::from_millis(250));
            assert_eq!(
                x,
                b.duration_between(Duration::from_millis(200), Duration::from_millis(250))
            );
            assert!(x >= Duration::from_millis(200) && x <= Duration::from_millis(250));
        }
        assert_eq!(a.upto(0), 0);
        let _ = Rng::new(0x9E37_79B9_7F4A_7C15).next_u64();
    }
}

#[cfg(test)]
mod allow_tests {
    use super::AllowNet;

    #[test]
    fn networks() {
        let n = AllowNet::parse("10.1.2.0/24").unwrap();
        assert!(n.contains("10.1.2.77".parse().unwrap()));
        assert!(!n.contains("10.1.3.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let one = AllowNet::parse("127.0.0.5").unwrap();
        assert!(one.contains("127.0.0.5".parse().unwrap()));
        assert!(!one.contains("127.0.0.6".parse().unwrap()));
        assert!(AllowNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        let v6 = AllowNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        for bad in ["x", "10.0.0.0/33", "::/129", "1.2.3.4/"] {
            assert!(AllowNet::parse(bad).is_err(), "{bad}");
        }
    }
}
