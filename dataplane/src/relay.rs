//! The backend-independent worker core: connection slab, groups, the per-packet
//! forward decision and the periodic tick. No sockets are read or written here (the
//! backends do that); time comes in as `now`.
//!
//! Drop accounting: every datagram this core refuses is counted under exactly one
//! reason — on the connection's [`ConnCounters`] when a connection is known, and in
//! the worker's totals ([`crate::stats::DropCounts`]) always, so a worker's
//! `source_check`/`mode`/`invalid` equal the sums over its connections (plus
//! datagrams that found no connection).
//!
//! Local addresses: on a wildcard-bound socket the backends pass the address each
//! datagram was sent to (`IP_PKTINFO`/`IPV6_PKTINFO`); an accepted datagram records it
//! per connection, and every [`Tx`] towards that connection's remote carries it as
//! [`Tx::src`], so replies leave from the address the remote talks to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use rtp_types::RtpPacket;

use crate::api::{
    Codec, ConnCounters, ConnKey, ConnSpec, ConnUpdate, DataplaneEvent, GroupId, Mode,
    PayloadBinding, SourceCheck,
};
use crate::rtcp::{build_report, parse_rtcp, ReportData, SenderData};
use crate::rtp::{to_rtp_units, Header, OutStream, RecvStats, SeqVerdict};
use crate::stats::{DropCounts, WorkerCounts};
use crate::tdm::{TdmLink, TdmMedia, TdmRunner, TdmSlice, TxBatch};

/// Most destinations one received packet can be forwarded to (legs in a group - 1).
pub const MAX_FANOUT: usize = 16;
const NO_CODEC: u16 = u16::MAX;
/// `Conn::group` of a connection that terminates on a TDM channel (in no relay group).
const NO_GROUP: usize = usize::MAX;
/// Clock rate assumed when a connection has no payload table.
const DEFAULT_CLOCK: u32 = 8000;
/// Mean RTCP report interval (RFC 3550 minimum), randomised by ±50 %.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Seconds between 1900-01-01 (NTP) and 1970-01-01 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// One send the backend must perform for a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tx {
    /// Slot of the connection whose RTP socket sends.
    pub slot: usize,
    /// Destination address.
    pub to: SocketAddr,
    /// Header to write; `None` sends the packet back unchanged (echo modes).
    pub header: Option<Header>,
    /// Source address to send from (`IP_PKTINFO`/`IPV6_PKTINFO`): the local address
    /// the destination's remote talks to, once known on a wildcard-bound socket;
    /// `None` leaves the choice to the kernel.
    pub src: Option<IpAddr>,
}

/// The sends decided for one packet (fixed capacity, no allocation).
#[derive(Clone, Debug)]
pub struct Fanout {
    len: usize,
    txs: [Option<Tx>; MAX_FANOUT],
}

impl Default for Fanout {
    fn default() -> Self {
        Fanout {
            len: 0,
            txs: [None; MAX_FANOUT],
        }
    }
}

impl Fanout {
    /// Empty.
    pub fn new() -> Fanout {
        Fanout::default()
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, tx: Tx) -> bool {
        match self.txs.get_mut(self.len) {
            Some(s) => {
                *s = Some(tx);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Number of sends.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The `i`-th send.
    pub fn get(&self, i: usize) -> Option<&Tx> {
        self.txs[..self.len].get(i)?.as_ref()
    }

    /// Whether the packet goes nowhere.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sends, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Tx> + '_ {
        self.txs[..self.len].iter().flatten()
    }
}

/// Worker-local copies of the counters (single writer; published with relaxed stores).
#[derive(Debug, Default)]
struct Counts {
    packets_sent: u64,
    octets_sent: u64,
    packets_recv: u64,
    octets_recv: u64,
    dropped_source: u64,
    dropped_mode: u64,
    dropped_invalid: u64,
}

fn bump(local: &mut u64, shared: &AtomicU64, by: u64) {
    *local = local.wrapping_add(by);
    shared.store(*local, Ordering::Relaxed);
}

/// Why a datagram was refused (exactly one per drop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    Source,
    Mode,
    Invalid,
}

/// Counts one drop: on the connection when known, and in the worker totals.
fn count_drop(conn: Option<&mut Conn>, drops: &mut DropCounts, why: Why) {
    let total = match why {
        Why::Source => &mut drops.source_check,
        Why::Mode => &mut drops.mode,
        Why::Invalid => &mut drops.invalid,
    };
    *total = total.wrapping_add(1);
    if let Some(c) = conn {
        let (local, shared) = match why {
            Why::Source => (&mut c.c.dropped_source, &c.counters.dropped_source),
            Why::Mode => (&mut c.c.dropped_mode, &c.counters.dropped_mode),
            Why::Invalid => (&mut c.c.dropped_invalid, &c.counters.dropped_invalid),
        };
        bump(local, shared, 1);
    }
}

#[derive(Debug)]
struct Conn {
    key: ConnKey,
    group: usize,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    mode: Mode,
    remote_rtp: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    source_check: SourceCheck,
    latched: Option<SocketAddr>,
    rtcp_latched: Option<SocketAddr>,
    /// Local address the remote sends RTP to (wildcard binds only).
    local_rtp: Option<IpAddr>,
    /// Local address the remote sends RTCP to (wildcard binds only).
    local_rtcp: Option<IpAddr>,
    has_payloads: bool,
    pt_codec: [u16; 128],
    pt_clock: [u32; 128],
    codec_pt: Vec<(u16, u8)>,
    out: OutStream,
    out_clock: u32,
    stats: RecvStats,
    rtp_timeout: Option<Duration>,
    last_activity: Instant,
    timed_out: bool,
    got_first: bool,
    counters: Arc<ConnCounters>,
    c: Counts,
    next_rtcp: Instant,
    last_sr: Option<(u32, Instant)>,
    closing: bool,
    /// The TDM channel this connection terminates on (`None`: relayed in its group).
    tdm: Option<TdmLink>,
}

impl Conn {
    fn rtp_dest(&self) -> Option<SocketAddr> {
        match self.source_check {
            SourceCheck::Latch => self.latched.or(self.remote_rtp),
            SourceCheck::Strict => self.remote_rtp,
        }
    }

    fn rtcp_dest(&self) -> Option<SocketAddr> {
        self.rtcp_latched.or(self.remote_rtcp).or_else(|| {
            self.rtp_dest().map(|mut a| {
                a.set_port(a.port().wrapping_add(1));
                a
            })
        })
    }

    fn set_payloads(&mut self, payloads: &[PayloadBinding], codecs: &mut HashMap<Codec, u16>) {
        self.pt_codec = [NO_CODEC; 128];
        self.pt_clock = [DEFAULT_CLOCK; 128];
        self.codec_pt.clear();
        self.has_payloads = false;
        for b in payloads {
            let i = usize::from(b.pt);
            if i >= 128 {
                continue;
            }
            let next = u16::try_from(codecs.len()).unwrap_or(NO_CODEC - 1);
            let id = *codecs.entry(b.codec.clone()).or_insert(next);
            if self.pt_codec[i] == NO_CODEC {
                self.pt_codec[i] = id;
                self.pt_clock[i] = b.codec.clock_rate.max(1);
            }
            if !self.codec_pt.iter().any(|(c, _)| *c == id) {
                self.codec_pt.push((id, b.pt));
            }
            self.has_payloads = true;
        }
    }
}

#[derive(Debug)]
struct Group {
    id: GroupId,
    members: Vec<usize>,
}

fn emit(events: &Sender<DataplaneEvent>, dropped: &AtomicU64, ev: DataplaneEvent) {
    if events.try_send(ev).is_err() {
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// All state of one worker's connections.
#[derive(Debug)]
pub struct Relay {
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    keys: HashMap<ConnKey, usize>,
    groups: Vec<Option<Group>>,
    free_groups: Vec<usize>,
    group_ids: HashMap<GroupId, usize>,
    codecs: HashMap<Codec, u16>,
    events: Sender<DataplaneEvent>,
    dropped_events: Arc<AtomicU64>,
    epoch: Instant,
    epoch_ntp: u64,
    rng: u64,
    rtcp_buf: [u8; 512],
    /// This worker's TDM channels and their engines.
    pub(crate) tdm: TdmRunner,
    /// This worker's counters (plain integers; the backend publishes them on the tick).
    pub(crate) counts: WorkerCounts,
}

fn duration_to_ntp(d: Duration) -> u64 {
    (d.as_secs() << 32) + ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

impl Relay {
    /// A worker core. `now` and `wall` anchor the monotonic clock to NTP time for RTCP.
    pub fn new(
        events: Sender<DataplaneEvent>,
        dropped_events: Arc<AtomicU64>,
        now: Instant,
        wall: SystemTime,
    ) -> Relay {
        let since_unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let epoch_ntp = duration_to_ntp(since_unix + Duration::from_secs(NTP_UNIX_OFFSET));
        let tdm = TdmRunner::new(events.clone(), Arc::clone(&dropped_events));
        Relay {
            tdm,
            conns: Vec::new(),
            free: Vec::new(),
            keys: HashMap::new(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            group_ids: HashMap::new(),
            codecs: HashMap::new(),
            events,
            dropped_events,
            epoch: now,
            epoch_ntp,
            rng: (epoch_ntp ^ 0x9e37_79b9_7f4a_7c15) | 1,
            rtcp_buf: [0; 512],
            counts: WorkerCounts::default(),
        }
    }

    /// A relay whose events go nowhere (they are counted as dropped): for benchmarks
    /// and tests that drive the core without a [`crate::Dataplane`].
    pub fn detached(now: Instant) -> Relay {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        Relay::new(tx, Arc::new(AtomicU64::new(0)), now, SystemTime::now())
    }

    /// This worker's drop totals by reason (see [`crate::stats::DropCounts`]).
    pub fn drop_counts(&self) -> DropCounts {
        self.counts.drops
    }

    fn random(&mut self) -> u64 {
        // xorshift64: cheap jitter for RTCP timing and RTP starting points, not for security.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn random_interval(&mut self) -> Duration {
        let frac = (self.random() % 1000) as u32; // 0..1000 → 0.5..1.5 × interval
        RTCP_INTERVAL / 2 + RTCP_INTERVAL * frac / 1000
    }

    fn ntp(&self, now: Instant) -> u64 {
        self.epoch_ntp
            .wrapping_add(duration_to_ntp(now.saturating_duration_since(self.epoch)))
    }

    fn emit(&self, ev: DataplaneEvent) {
        emit(&self.events, &self.dropped_events, ev);
    }

    /// Number of live (or closing) connections.
    pub fn len(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    /// Whether there are no connections.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Upper bound (exclusive) of the slot indices in use.
    pub fn slot_bound(&self) -> usize {
        self.conns.len()
    }

    /// The RTP and RTCP descriptors of a slot.
    pub fn fds(&self, slot: usize) -> Option<(RawFd, RawFd)> {
        let c = self.conns.get(slot)?.as_ref()?;
        Some((c.rtp.as_raw_fd(), c.rtcp.as_raw_fd()))
    }

    /// Whether the slot holds a connection that is being removed.
    pub fn is_closing(&self, slot: usize) -> bool {
        matches!(self.conns.get(slot), Some(Some(c)) if c.closing)
    }

    /// Takes a new connection; returns its slot, or gives the spec back if the key is
    /// already running here.
    pub fn add(&mut self, spec: Box<ConnSpec>, now: Instant) -> Result<usize, Box<ConnSpec>> {
        if self.keys.contains_key(&spec.key) {
            return Err(spec);
        }
        let group = match self.group_ids.get(&spec.group) {
            _ if spec.channel.is_some() => NO_GROUP,
            Some(&g) => g,
            None => {
                let g = Group {
                    id: spec.group,
                    members: Vec::new(),
                };
                let idx = match self.free_groups.pop() {
                    Some(i) => {
                        self.groups[i] = Some(g);
                        i
                    }
                    None => {
                        self.groups.push(Some(g));
                        self.groups.len() - 1
                    }
                };
                self.group_ids.insert(spec.group, idx);
                idx
            }
        };
        let next_rtcp = now + self.random_interval();
        let seed = self.random();
        let mut spec = *spec;
        let media = spec.channel.take().map(|channel| TdmMedia {
            channel,
            payloads: spec.payloads.clone(),
            fmtp: std::mem::take(&mut spec.fmtp),
            ptime_ms: spec.ptime_ms,
            dtmf: spec.dtmf,
            mode: spec.mode,
            ssrc: spec.ssrc,
        });
        let mut conn = Conn {
            key: spec.key,
            group,
            rtp: spec.rtp,
            rtcp: spec.rtcp,
            mode: spec.mode,
            remote_rtp: spec.remote_rtp,
            remote_rtcp: spec.remote_rtcp,
            source_check: spec.source_check,
            latched: None,
            rtcp_latched: None,
            local_rtp: None,
            local_rtcp: None,
            has_payloads: false,
            pt_codec: [NO_CODEC; 128],
            pt_clock: [DEFAULT_CLOCK; 128],
            codec_pt: Vec::new(),
            out: OutStream::new(spec.ssrc),
            out_clock: DEFAULT_CLOCK,
            stats: RecvStats::new(),
            rtp_timeout: spec.rtp_timeout,
            last_activity: now,
            timed_out: false,
            got_first: false,
            counters: spec.counters,
            c: Counts::default(),
            next_rtcp,
            last_sr: None,
            closing: false,
            tdm: None,
        };
        conn.set_payloads(&spec.payloads, &mut self.codecs);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if let Some(m) = media {
            // Random starting points (RFC 3550 §5.1) from the worker's generator.
            let link = self.tdm.attach(slot, m, seed as u16, (seed >> 32) as u32);
            conn.out_clock = link.clock;
            conn.tdm = Some(link);
        }
        self.conns[slot] = Some(conn);
        self.keys.insert(spec.key, slot);
        if let Some(Some(g)) = self.groups.get_mut(group) {
            g.members.push(slot);
        }
        Ok(slot)
    }

    /// Applies a modification; returns the slot, or `None` for an unknown key.
    pub fn modify(&mut self, key: ConnKey, update: &ConnUpdate, now: Instant) -> Option<usize> {
        let slot = *self.keys.get(&key)?;
        let conn = self.conns.get_mut(slot)?.as_mut()?;
        if let Some(m) = update.mode {
            conn.mode = m;
        }
        if let Some(r) = update.remote_rtp {
            if conn.remote_rtp.map(|old| old.ip()) != Some(r.ip()) {
                // A different remote may reach us on another local address.
                conn.local_rtp = None;
                conn.local_rtcp = None;
            }
            conn.remote_rtp = Some(r);
            conn.latched = None;
            conn.rtcp_latched = None;
            conn.last_activity = now;
        }
        if let Some(r) = update.remote_rtcp {
            conn.remote_rtcp = Some(r);
        }
        if let Some(p) = &update.payloads {
            conn.set_payloads(p, &mut self.codecs);
        }
        if let Some(t) = update.rtp_timeout {
            conn.rtp_timeout = t;
            conn.last_activity = now;
            conn.timed_out = false;
        }
        if conn.tdm.is_some() {
            if let Some(link) = self.tdm.update(slot, update, conn.mode) {
                conn.out_clock = link.clock;
                conn.tdm = Some(link);
            }
        }
        Some(slot)
    }

    /// Starts removing a connection: it stops relaying at once and leaves its group.
    /// The backend closes it with [`Relay::finish_remove`] once no I/O refers to its
    /// sockets. Returns `None` for an unknown key.
    pub fn begin_remove(&mut self, key: ConnKey) -> Option<usize> {
        let slot = self.keys.remove(&key)?;
        let conn = self.conns.get_mut(slot)?.as_mut()?;
        conn.closing = true;
        if let Some(link) = conn.tdm {
            self.tdm.detach(slot, link);
        }
        let g = conn.group;
        if let Some(Some(group)) = self.groups.get_mut(g) {
            group.members.retain(|&m| m != slot);
            if group.members.is_empty() {
                self.group_ids.remove(&group.id);
                self.groups[g] = None;
                self.free_groups.push(g);
            }
        }
        Some(slot)
    }

    /// Closes the sockets of a slot started by [`Relay::begin_remove`], frees the slot
    /// and reports [`DataplaneEvent::Removed`].
    pub fn finish_remove(&mut self, slot: usize) {
        if let Some(entry) = self.conns.get_mut(slot) {
            if let Some(conn) = entry.take() {
                let key = conn.key;
                drop(conn); // closes both sockets
                self.free.push(slot);
                self.emit(DataplaneEvent::Removed { key });
            }
        }
    }

    /// Reports [`DataplaneEvent::Removed`] for a key this worker does not hold (so the
    /// control plane can always release the connection's ports).
    pub fn removed_unknown(&self, key: ConnKey) {
        self.emit(DataplaneEvent::Removed { key });
    }

    /// The key of a slot's connection.
    pub fn key_of(&self, slot: usize) -> Option<ConnKey> {
        Some(self.conns.get(slot)?.as_ref()?.key)
    }

    /// Live slots (for shutdown).
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| i)
    }

    /// The per-packet path: decides what to do with an RTP datagram received on
    /// connection `slot` from `from`, updating statistics; the sends are left in `out`
    /// (the backend writes each [`Tx::header`] into its copy of the packet). Same as
    /// [`Relay::on_rtp_via`] without a known local address.
    pub fn on_rtp(
        &mut self,
        slot: usize,
        from: SocketAddr,
        pkt: &[u8],
        now: Instant,
        out: &mut Fanout,
    ) {
        self.on_rtp_via(slot, from, None, pkt, now, out);
    }

    /// [`Relay::on_rtp`] for a datagram that arrived on local address `local` (from
    /// `IP_PKTINFO`/`IPV6_PKTINFO` on a wildcard-bound socket). An accepted datagram
    /// records `local` as the connection's local address: later sends to its remote
    /// carry it as [`Tx::src`].
    pub fn on_rtp_via(
        &mut self,
        slot: usize,
        from: SocketAddr,
        local: Option<IpAddr>,
        pkt: &[u8],
        now: Instant,
        out: &mut Fanout,
    ) {
        out.clear();
        let epoch = self.epoch;
        let drops = &mut self.counts.drops;
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            count_drop(None, drops, Why::Invalid);
            return;
        };
        if conn.closing {
            count_drop(Some(conn), drops, Why::Mode);
            return;
        }
        // RTCP sent to the RTP port (types 200..=204 read as marker + PT 72..=76).
        let rtcp_like = matches!(pkt.get(1), Some(200..=204));
        let parsed = if rtcp_like {
            None
        } else {
            RtpPacket::parse(pkt).ok()
        };
        let Some(p) = parsed else {
            count_drop(Some(conn), drops, Why::Invalid);
            return;
        };
        let accepted = match conn.source_check {
            SourceCheck::Strict => conn.remote_rtp == Some(from),
            SourceCheck::Latch => match conn.latched {
                Some(l) => l == from,
                None => {
                    conn.latched = Some(from);
                    true
                }
            },
        };
        if !accepted {
            count_drop(Some(conn), drops, Why::Source);
            return;
        }
        if local.is_some() {
            conn.local_rtp = local;
        }
        let pt = usize::from(p.payload_type());
        let (codec, clock) = match (conn.pt_codec.get(pt), conn.pt_clock.get(pt)) {
            (Some(&c), Some(&k)) => (c, k),
            _ => (NO_CODEC, DEFAULT_CLOCK),
        };
        if conn.has_payloads && codec == NO_CODEC {
            count_drop(Some(conn), drops, Why::Invalid);
            return;
        }
        let (ssrc, seq, ts) = (p.ssrc(), p.sequence_number(), p.timestamp());
        let payload_len = p.payload_len() as u64;
        let arrival = to_rtp_units(now.saturating_duration_since(epoch), clock);
        let verdict = conn.stats.update(ssrc, seq, ts, arrival);
        bump(&mut conn.c.packets_recv, &conn.counters.packets_recv, 1);
        bump(
            &mut conn.c.octets_recv,
            &conn.counters.octets_recv,
            payload_len,
        );
        let lost = conn.stats.cumulative_lost().max(0) as u64;
        conn.counters.packets_lost.store(lost, Ordering::Relaxed);
        let jitter_us = u64::from(conn.stats.jitter()) * 1_000_000 / u64::from(clock.max(1));
        conn.counters.jitter_us.store(jitter_us, Ordering::Relaxed);
        conn.last_activity = now;
        conn.timed_out = false;
        if !conn.got_first {
            conn.got_first = true;
            emit(
                &self.events,
                &self.dropped_events,
                DataplaneEvent::FirstPacket { key: conn.key },
            );
        }
        if verdict == SeqVerdict::Bad {
            tracing::trace!(key = conn.key.0, seq, "sequence jump held back");
        }
        if let Some(link) = conn.tdm {
            // Terminates on a TDM channel: the engine decodes it (or loops it back).
            if link.active && (conn.mode.receives() || conn.mode.echoes()) {
                self.tdm.on_rtp(link, slot, now, pkt);
            } else {
                count_drop(Some(conn), drops, Why::Mode);
            }
            return;
        }
        if conn.mode.echoes() {
            out.push(Tx {
                slot,
                to: from,
                header: None,
                src: conn.local_rtp,
            });
            bump(&mut conn.c.packets_sent, &conn.counters.packets_sent, 1);
            bump(
                &mut conn.c.octets_sent,
                &conn.counters.octets_sent,
                payload_len,
            );
            return;
        }
        if !conn.mode.receives() {
            count_drop(Some(conn), drops, Why::Mode);
            return;
        }
        let (src_key, src_has_payloads, src_pt, group) =
            (conn.key.0, conn.has_payloads, pt as u8, conn.group);
        let mut pt_miss = false;
        if let Some(Some(g)) = self.groups.get(group) {
            for &m in &g.members {
                if m == slot {
                    continue;
                }
                let Some(Some(dst)) = self.conns.get_mut(m) else {
                    continue;
                };
                if !dst.mode.sends() {
                    continue;
                }
                let Some(to) = dst.rtp_dest() else {
                    continue;
                };
                let out_pt = if src_has_payloads && dst.has_payloads {
                    match dst.codec_pt.iter().find(|(c, _)| *c == codec) {
                        Some(&(_, pt)) => pt,
                        None => {
                            pt_miss = true;
                            continue;
                        }
                    }
                } else {
                    src_pt
                };
                let (oseq, ots) = dst.out.map(src_key, ssrc, seq, ts, clock, now);
                dst.out_clock = clock;
                let header = Header {
                    pt: out_pt,
                    seq: oseq,
                    ts: ots,
                    ssrc: dst.out.ssrc,
                };
                if out.push(Tx {
                    slot: m,
                    to,
                    header: Some(header),
                    src: dst.local_rtp,
                }) {
                    bump(&mut dst.c.packets_sent, &dst.counters.packets_sent, 1);
                    bump(
                        &mut dst.c.octets_sent,
                        &dst.counters.octets_sent,
                        payload_len,
                    );
                } else {
                    // More legs than MAX_FANOUT: this copy is not sent.
                    self.counts.send_queue_full();
                }
            }
        }
        if out.is_empty() {
            let why = if pt_miss { Why::Invalid } else { Why::Mode };
            let conn = self.conns.get_mut(slot).and_then(Option::as_mut);
            count_drop(conn, &mut self.counts.drops, why);
        }
    }

    /// Counts a datagram received on `slot` that could not be read properly
    /// (truncated, no decodable sender): the backends call this instead of
    /// [`Relay::on_rtp`]/[`Relay::on_rtcp`].
    pub fn count_invalid(&mut self, slot: usize) {
        let conn = self.conns.get_mut(slot).and_then(Option::as_mut);
        count_drop(conn, &mut self.counts.drops, Why::Invalid);
    }

    /// Handles an RTCP datagram received on connection `slot`: records sender reports
    /// (for our LSR/DLSR) and the round-trip time. RTCP is never relayed. Same as
    /// [`Relay::on_rtcp_via`] without a known local address.
    pub fn on_rtcp(&mut self, slot: usize, from: SocketAddr, pkt: &[u8], now: Instant) {
        self.on_rtcp_via(slot, from, None, pkt, now);
    }

    /// [`Relay::on_rtcp`] for a datagram that arrived on local address `local`; an
    /// accepted report records it as the source for this connection's RTCP reports
    /// ([`Relay::rtcp_source`]).
    pub fn on_rtcp_via(
        &mut self,
        slot: usize,
        from: SocketAddr,
        local: Option<IpAddr>,
        pkt: &[u8],
        now: Instant,
    ) {
        let arrival = (self.ntp(now) >> 16) as u32;
        let drops = &mut self.counts.drops;
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            count_drop(None, drops, Why::Invalid);
            return;
        };
        if conn.closing {
            count_drop(Some(conn), drops, Why::Mode);
            return;
        }
        let ip = from.ip();
        let known = [conn.remote_rtp, conn.remote_rtcp, conn.latched];
        let ok = known.iter().flatten().any(|a| a.ip() == ip)
            || (conn.source_check == SourceCheck::Latch && conn.latched.is_none());
        if !ok {
            count_drop(Some(conn), drops, Why::Source);
            return;
        }
        let Some(info) = parse_rtcp(pkt, conn.out.ssrc, arrival) else {
            count_drop(Some(conn), drops, Why::Invalid);
            return;
        };
        if local.is_some() {
            conn.local_rtcp = local;
        }
        if conn.source_check == SourceCheck::Latch && conn.remote_rtcp.is_none() {
            conn.rtcp_latched = Some(from);
        }
        if let Some((_, mid)) = info.sr {
            conn.last_sr = Some((mid, now));
        }
        if let Some(rtt) = info.rtt_us {
            conn.counters.rtt_us.store(rtt, Ordering::Relaxed);
        }
    }

    /// The source address for RTCP sent from `slot`'s RTCP socket: the local address
    /// its remote sends RTCP to, else the one it sends RTP to (`None`: the kernel
    /// chooses).
    pub fn rtcp_source(&self, slot: usize) -> Option<IpAddr> {
        let c = self.conns.get(slot)?.as_ref()?;
        c.local_rtcp.or(c.local_rtp)
    }

    /// Takes ownership of a TDM slice handed over by the control side.
    pub(crate) fn adopt_tdm(&mut self, slice: TdmSlice, now: Instant) {
        self.tdm.adopt(slice, now);
    }

    /// Runs the TDM frames due at `now`. The RTP packets the channel engines produce are
    /// left in `batch` (cleared first) for the backend to send from each connection's RTP
    /// socket; the connections' counters and RTCP sender state are updated here. Returns
    /// the number of frames run.
    pub(crate) fn run_frames(&mut self, now: Instant, batch: &mut TxBatch) -> u32 {
        batch.clear();
        let conns = &mut self.conns;
        self.tdm.run(now, &mut |id, pkt| {
            let Some(Some(c)) = conns.get_mut(id as usize) else {
                return;
            };
            if c.closing {
                return;
            }
            let Some(to) = c.rtp_dest() else {
                return;
            };
            let Ok(p) = RtpPacket::parse(pkt) else {
                return;
            };
            if c.tdm.is_some_and(|l| l.audio_pt == p.payload_type()) {
                c.out.record(p.sequence_number(), p.timestamp(), now);
            }
            let payload_len = p.payload_len() as u64;
            batch.push(id as usize, to, c.local_rtp, pkt);
            bump(&mut c.c.packets_sent, &c.counters.packets_sent, 1);
            bump(&mut c.c.octets_sent, &c.counters.octets_sent, payload_len);
        })
    }

    /// The periodic tick (call every ~100 ms): RTP timeouts and due RTCP reports. Each
    /// report is handed to `send(slot, to, bytes)` for the slot's RTCP socket.
    pub fn tick(&mut self, now: Instant, mut send: impl FnMut(usize, SocketAddr, &[u8])) {
        // Publish the media engines' jitter-buffer and concealment figures of TDM
        // connections (once per tick, not per packet).
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_ref() else {
                continue;
            };
            let Some(link) = c.tdm.as_ref() else {
                continue;
            };
            if let Some(st) = self.tdm.media_stats(slot, link) {
                let k = &c.counters;
                let delay_us = (st.jitter.current_delay_ms.max(0.0) * 1000.0) as u64;
                k.jb_delay_us.store(delay_us, Ordering::Relaxed);
                k.jb_late.store(st.jitter.late, Ordering::Relaxed);
                k.jb_lost.store(st.jitter.lost, Ordering::Relaxed);
                k.plc_frames.store(st.concealed_frames, Ordering::Relaxed);
            }
        }
        for slot in 0..self.conns.len() {
            let ntp = self.ntp(now);
            let due = match &mut self.conns[slot] {
                Some(c) if !c.closing => {
                    if let Some(t) = c.rtp_timeout {
                        if !c.timed_out && now.saturating_duration_since(c.last_activity) >= t {
                            c.timed_out = true;
                            emit(
                                &self.events,
                                &self.dropped_events,
                                DataplaneEvent::RtpTimeout { key: c.key },
                            );
                        }
                    }
                    now >= c.next_rtcp
                }
                _ => false,
            };
            if !due {
                continue;
            }
            let interval = self.random_interval();
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            c.next_rtcp = now + interval;
            let Some(to) = c.rtcp_dest() else {
                continue;
            };
            let report = c.stats.ssrc().map(|ssrc| {
                let (lsr, dlsr) = match c.last_sr {
                    Some((mid, at)) => {
                        let d = duration_to_ntp(now.saturating_duration_since(at));
                        (mid, (d >> 16) as u32)
                    }
                    None => (0, 0),
                };
                ReportData {
                    ssrc,
                    fraction_lost: c.stats.take_fraction_lost(),
                    cumulative_lost: c.stats.cumulative_lost(),
                    ext_max: c.stats.extended_max() as u32,
                    jitter: c.stats.jitter(),
                    lsr,
                    dlsr,
                }
            });
            let sender = c.out.started().then(|| SenderData {
                ntp,
                rtp_ts: c.out.rtp_time_at(now, c.out_clock),
                packets: c.c.packets_sent as u32,
                octets: c.c.octets_sent as u32,
            });
            let cname = format!("mgw-{:08x}", c.out.ssrc);
            if let Some(n) = build_report(&mut self.rtcp_buf, c.out.ssrc, &cname, sender, report) {
                send(slot, to, &self.rtcp_buf[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ConnCounters;

    fn spec(key: u32, pt: u8, remote: &str) -> Box<ConnSpec> {
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
        Box::new(ConnSpec {
            key: ConnKey(key),
            group: GroupId(1),
            rtp: bind(),
            rtcp: bind(),
            mode: Mode::SendRecv,
            remote_rtp: Some(remote.parse().unwrap()),
            remote_rtcp: None,
            source_check: SourceCheck::Strict,
            payloads: vec![
                PayloadBinding {
                    pt,
                    codec: Codec {
                        name: "PCMU".into(),
                        clock_rate: 8000,
                        channels: 1,
                    },
                },
                PayloadBinding {
                    pt: 101,
                    codec: Codec {
                        name: "TELEPHONE-EVENT".into(),
                        clock_rate: 8000,
                        channels: 1,
                    },
                },
            ],
            ssrc: 0x100 + key,
            rtp_timeout: None,
            counters: Arc::new(ConnCounters::default()),
            channel: None,
            ptime_ms: 20,
            fmtp: Vec::new(),
            dtmf: Default::default(),
        })
    }

    #[test]
    fn decides_and_maps() {
        let now = Instant::now();
        let mut r = Relay::detached(now);
        let a = r.add(spec(1, 0, "127.0.0.1:7000"), now).unwrap();
        let b = r.add(spec(2, 96, "127.0.0.1:7002"), now).unwrap();
        assert!(
            r.add(spec(1, 0, "127.0.0.1:7000"), now).is_err(),
            "duplicate key"
        );
        let from: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let pkt = [0x80, 0x80, 0, 5, 0, 0, 0, 9, 0, 0, 0, 7, 1, 2];
        let mut out = Fanout::new();
        r.on_rtp(a, from, &pkt, now, &mut out);
        assert_eq!(out.len(), 1);
        let tx = *out.get(0).unwrap();
        assert_eq!(tx.slot, b);
        assert_eq!(tx.to, "127.0.0.1:7002".parse::<SocketAddr>().unwrap());
        assert_eq!(
            tx.header,
            Some(Header {
                pt: 96,
                seq: 5,
                ts: 9,
                ssrc: 0x102
            })
        );
        // telephone-event keeps its own PT mapping.
        let ev = [0x80, 101, 0, 6, 0, 0, 0, 9, 0, 0, 0, 7, 1, 2, 3, 4];
        r.on_rtp(a, from, &ev, now, &mut out);
        assert_eq!(out.get(0).and_then(|t| t.header).map(|h| h.pt), Some(101));
        // Unknown PT, RTCP on the RTP port, a stranger, a short packet: all dropped.
        let bad_pt = [0x80, 8, 0, 7, 0, 0, 0, 9, 0, 0, 0, 7];
        r.on_rtp(a, from, &bad_pt, now, &mut out);
        assert!(out.is_empty());
        r.on_rtp(a, from, &[0x80, 200, 0, 6, 0, 0, 0, 1], now, &mut out);
        assert!(out.is_empty());
        r.on_rtp(a, "127.0.0.1:9".parse().unwrap(), &pkt, now, &mut out);
        assert!(out.is_empty());
        r.on_rtp(a, from, &pkt[..5], now, &mut out);
        assert!(out.is_empty());
        let c = r.conns[a].as_ref().unwrap().counters.snapshot();
        assert_eq!(
            (c.packets_recv, c.dropped_invalid, c.dropped_source),
            (2, 3, 1)
        );
        // Removal: the slot stays until finished, then is reused.
        assert_eq!(r.begin_remove(ConnKey(2)), Some(b));
        r.on_rtp(a, from, &pkt, now, &mut out);
        assert!(out.is_empty(), "no other leg left");
        r.finish_remove(b);
        assert_eq!(r.len(), 1);
        assert_eq!(r.add(spec(3, 0, "127.0.0.1:7004"), now).unwrap(), b);
    }

    #[test]
    fn learns_local_addresses_and_counts_drops() {
        let now = Instant::now();
        let mut r = Relay::detached(now);
        let a = r.add(spec(1, 0, "127.0.0.1:7000"), now).unwrap();
        let b = r.add(spec(2, 0, "127.0.0.1:7002"), now).unwrap();
        let (fa, fb): (SocketAddr, SocketAddr) = (
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:7002".parse().unwrap(),
        );
        let (la, lb): (IpAddr, IpAddr) =
            ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let pkt = [0x80, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0, 7, 1, 2];
        let mut out = Fanout::new();
        // Nothing known yet: the kernel chooses.
        r.on_rtp_via(a, fa, Some(la), &pkt, now, &mut out);
        assert_eq!(out.get(0).map(|t| (t.slot, t.src)), Some((b, None)));
        // B's remote talks to 127.0.0.3: sends to it carry that source from now on...
        r.on_rtp_via(b, fb, Some(lb), &pkt, now, &mut out);
        assert_eq!(out.get(0).map(|t| (t.slot, t.src)), Some((a, Some(la))));
        r.on_rtp_via(a, fa, None, &pkt, now, &mut out);
        assert_eq!(out.get(0).map(|t| t.src), Some(Some(lb)));
        // ...but a refused packet teaches nothing.
        let stranger: SocketAddr = "127.0.0.1:9".parse().unwrap();
        r.on_rtp_via(
            b,
            stranger,
            Some("127.0.0.9".parse().unwrap()),
            &pkt,
            now,
            &mut out,
        );
        assert!(out.is_empty());
        r.on_rtp_via(a, fa, None, &pkt, now, &mut out);
        assert_eq!(out.get(0).map(|t| t.src), Some(Some(lb)));
        // RTCP reports go out from the RTCP local address, else the RTP one.
        assert_eq!(r.rtcp_source(a), Some(la));
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        let from_rtcp: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let l4: IpAddr = "127.0.0.4".parse().unwrap();
        r.on_rtcp_via(a, from_rtcp, Some(l4), &rr, now);
        assert_eq!(r.rtcp_source(a), Some(l4));
        // A new remote address forgets what the old remote used.
        let upd = ConnUpdate {
            remote_rtp: Some("127.0.0.5:7000".parse().unwrap()),
            ..ConnUpdate::default()
        };
        r.modify(ConnKey(1), &upd, now);
        assert_eq!(r.rtcp_source(a), None);
        // Drops: exactly one reason each, on the connection and in the worker totals.
        r.on_rtcp_via(a, stranger, None, &rr, now); // unknown RTCP source
        r.on_rtcp_via(b, fb, None, &[1, 2, 3], now); // malformed RTCP
        r.on_rtp(a, fa, &pkt, now, &mut out); // old remote: source check
        r.on_rtp(b, fb, &pkt[..3], now, &mut out); // short
        r.count_invalid(b); // truncated datagram (backend)
        r.on_rtp(99, fb, &pkt, now, &mut out); // no connection: worker only
        r.begin_remove(ConnKey(1));
        r.on_rtp(a, fa, &pkt, now, &mut out); // closing: mode
        r.on_rtp(b, fb, &pkt, now, &mut out); // alone in its group: mode
        let (ca, cb) = (
            r.conns[a].as_ref().unwrap().counters.snapshot(),
            r.conns[b].as_ref().unwrap().counters.snapshot(),
        );
        assert_eq!(
            (ca.dropped_source, ca.dropped_invalid, ca.dropped_mode),
            (2, 0, 1)
        );
        assert_eq!(
            (cb.dropped_source, cb.dropped_invalid, cb.dropped_mode),
            (1, 3, 1)
        );
        let d = r.drop_counts();
        assert_eq!((d.source_check, d.invalid, d.mode), (3, 4, 2));
        assert_eq!(d.total(), 9);
    }
}
