//! Incoming commands: the at-most-once response cache (RFC 3435 §3.5.1–3.5.2), provisional
//! responses and the `000` response ack for final-after-provisional responses (§3.5.6).
//!
//! Each (source address, transaction id) goes through
//! `InProgress` → `Answered` → `Confirmed` (by `K:` or `000`) → forgotten at T-HIST
//! after the answer.
//!
//! At tens of thousands of transactions per second T-HIST (30 s) holds around a million
//! answered entries, so an entry is kept small: the response bytes in an exact-size box,
//! the rarely used retransmission state boxed, and the expiry queue naming the source by
//! a 4-byte id ([`Sources`]) instead of a 32-byte address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{encode, parse_response_ack, Agent, Event, Timer};
use crate::code::{Error, ReturnCode};
use crate::message::{Command, Message, ParamName, Response, TransactionId};

/// The T-HIST deadline of one answered entry.
#[derive(Clone, Copy, Debug)]
pub(super) struct Expiry {
    /// When the entry is forgotten.
    pub(super) at: Instant,
    /// Its source, in [`Sources`].
    source: u32,
    tid: TransactionId,
    /// The entry's generation (a replaced entry has a newer one).
    gen: u64,
}

/// Source addresses named by the expiry queue, each stored once and counted by the
/// records that name it; an id is reused only after its last record expired.
#[derive(Debug, Default)]
pub(super) struct Sources {
    ids: HashMap<SocketAddr, u32>,
    /// (address, number of expiry records naming it)
    slots: Vec<(SocketAddr, u32)>,
    free: Vec<u32>,
}

impl Sources {
    /// The id of `addr`, counting one more record.
    fn acquire(&mut self, addr: SocketAddr) -> u32 {
        if let Some(&id) = self.ids.get(&addr) {
            if let Some(slot) = self.slots.get_mut(id as usize) {
                slot.1 = slot.1.saturating_add(1);
            }
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(slot) = self.slots.get_mut(id as usize) {
                    *slot = (addr, 1);
                }
                id
            }
            None => {
                // One id per distinct source with entries alive: far below u32::MAX (each
                // holds at least one remembered transaction).
                let id = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push((addr, 1));
                id
            }
        };
        self.ids.insert(addr, id);
        id
    }

    /// The address of `id`, counting one record less.
    fn release(&mut self, id: u32) -> Option<SocketAddr> {
        let slot = self.slots.get_mut(id as usize)?;
        let addr = slot.0;
        slot.1 = slot.1.saturating_sub(1);
        if slot.1 == 0 {
            self.ids.remove(&addr);
            self.free.push(id);
        }
        Some(addr)
    }
}

/// One remembered incoming transaction.
#[derive(Debug)]
pub(super) struct Entry {
    state: State,
    /// Digest of the command (without `K:`), to tell a retransmission from a new command
    /// that reuses the transaction id; 0 when unknown (unparseable commands).
    fingerprint: u64,
    /// Identifies this entry in the expiry queue (an entry replaced later has a new one).
    gen: u64,
}

#[derive(Debug)]
enum State {
    /// Delivered, not yet answered.
    InProgress { provisional_sent: bool },
    /// Answered; `bytes` is the exact datagram, re-sent to duplicates.
    Answered {
        bytes: Box<[u8]>,
        /// Set while a final-after-provisional response waits for its `000`.
        retx: Option<Box<Retx>>,
    },
    /// The call agent confirmed the response; duplicates are dropped.
    Confirmed,
}

#[derive(Debug)]
struct Retx {
    rto: Duration,
    count: u32,
    timer_at: Option<Instant>,
}

/// A digest of a command without its `K:` line (never 0).
fn fingerprint(cmd: &Command) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cmd.verb.as_str().hash(&mut h);
    cmd.endpoint.hash(&mut h);
    for (name, value) in cmd.params.iter() {
        if *name != ParamName::ResponseAck {
            name.code().to_ascii_uppercase().hash(&mut h);
            value.hash(&mut h);
        }
    }
    cmd.sdp.hash(&mut h);
    h.finish().max(1)
}

/// What to do with a duplicate, decided while the cache is borrowed.
enum Duplicate {
    Provisional,
    Resend(Vec<u8>),
    Drop,
}

impl Agent {
    pub(super) fn handle_command(&mut self, now: Instant, from: SocketAddr, mut cmd: Command) {
        self.stats.commands_received += 1;
        let tid = cmd.tid;
        let fp = fingerprint(&cmd);
        if self.answer_duplicate(from, tid, fp) {
            return;
        }
        if let Some(k) = cmd.params.remove(&ParamName::ResponseAck) {
            match parse_response_ack(&k) {
                Ok(ranges) => self.confirm(from, &ranges),
                Err(e) => {
                    self.insert_in_progress(from, tid, fp);
                    self.respond(now, from, Response::new(e.return_code(), tid));
                    return;
                }
            }
        }
        self.insert_in_progress(from, tid, fp);
        self.stats.commands_delivered += 1;
        self.events.push_back(Event::Command { from, command: cmd });
        self.command_while_disconnected(now, from);
    }

    /// An unparseable command whose transaction id could be read: answered with the
    /// error's return code, and cached like any response.
    pub(super) fn handle_parse_error(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: TransactionId,
        error: &Error,
    ) {
        if self.answer_duplicate(from, tid, 0) {
            return;
        }
        self.stats.parse_errors_answered += 1;
        self.insert_in_progress(from, tid, 0);
        self.respond(now, from, Response::new(error.return_code(), tid));
    }

    /// Handles a repeat of a known transaction; `false` when the transaction is new.
    ///
    /// A command that reuses a remembered transaction id but differs from the command
    /// stored under it is not a retransmission (a retransmission repeats the command; only
    /// its `K:` may change). That happens when a call agent restarts and numbers its
    /// transactions from 1 again within T-HIST; replaying old answers would silently
    /// execute nothing, so the old entry is forgotten and the command runs.
    fn answer_duplicate(&mut self, from: SocketAddr, tid: TransactionId, fp: u64) -> bool {
        let Some(entry) = self.cache.get_mut(&from).and_then(|m| m.get_mut(&tid)) else {
            return false;
        };
        if fp != 0 && entry.fingerprint != 0 && fp != entry.fingerprint {
            self.stats.transaction_ids_reused += 1;
            if let Some(m) = self.cache.get_mut(&from) {
                m.remove(&tid);
            }
            return false;
        }
        let action = match &mut entry.state {
            State::InProgress { provisional_sent } => {
                *provisional_sent = true;
                Duplicate::Provisional
            }
            State::Answered { bytes, .. } => Duplicate::Resend(bytes.to_vec()),
            State::Confirmed => Duplicate::Drop,
        };
        match action {
            Duplicate::Provisional => {
                self.stats.duplicates_in_progress += 1;
                self.stats.provisionals_sent += 1;
                let r = Response::new(ReturnCode::TRANSACTION_IN_PROGRESS, tid);
                self.send(from, encode(Message::Response(r)));
            }
            Duplicate::Resend(bytes) => {
                self.stats.duplicates_answered += 1;
                self.send(from, bytes);
            }
            Duplicate::Drop => self.stats.duplicates_after_ack += 1,
        }
        true
    }

    fn insert_in_progress(&mut self, from: SocketAddr, tid: TransactionId, fingerprint: u64) {
        let gen = self.next_gen();
        self.cache.entry(from).or_default().insert(
            tid,
            Entry {
                state: State::InProgress {
                    provisional_sent: false,
                },
                fingerprint,
                gen,
            },
        );
    }

    fn next_gen(&mut self) -> u64 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    /// The final response to a command delivered by [`Event::Command`] (`to` is the
    /// event's `from`). It is cached for T-HIST and re-sent to retransmissions. If a
    /// provisional response was sent for the transaction, the response gets an empty `K:`
    /// and is retransmitted until the `000` arrives. A response too big for
    /// [`super::Config::max_datagram`] is replaced by `533`. A `1xx` here acts like
    /// [`Agent::send_provisional`]. Answering a transaction twice is ignored (counted).
    pub fn respond(&mut self, now: Instant, to: SocketAddr, mut response: Response) {
        let tid = response.tid;
        if !response.code.is_final() {
            if response.code.is_provisional() {
                self.provisional(to, response);
            } else {
                self.stats.responses_ignored += 1;
            }
            return;
        }
        let provisional_sent = match self.cache.get(&to).and_then(|m| m.get(&tid)) {
            Some(Entry {
                state: State::InProgress { provisional_sent },
                ..
            }) => *provisional_sent,
            Some(_) => {
                self.stats.responses_ignored += 1;
                return;
            }
            None => false,
        };
        if provisional_sent {
            response.params.set(ParamName::ResponseAck, "");
        }
        let mut bytes = encode(Message::Response(response));
        if bytes.len() > self.config.max_datagram {
            self.stats.responses_too_big += 1;
            let mut small = Response::new(ReturnCode::RESPONSE_TOO_BIG, tid);
            if provisional_sent {
                small.params.set(ParamName::ResponseAck, "");
            }
            bytes = encode(Message::Response(small));
        }
        self.stats.responses_sent += 1;
        let kept: Box<[u8]> = Box::from(bytes.as_slice());
        self.send(to, bytes);
        let retx = if provisional_sent {
            let rto = self.config.initial_rto;
            let at = now + self.jittered(rto);
            self.timers.insert((at, Timer::ResponseRetx(to, tid)));
            Some(Box::new(Retx {
                rto,
                count: 0,
                timer_at: Some(at),
            }))
        } else {
            None
        };
        let gen = self.next_gen();
        let fingerprint = self
            .cache
            .get(&to)
            .and_then(|m| m.get(&tid))
            .map_or(0, |e| e.fingerprint);
        let old = self.cache.entry(to).or_default().insert(
            tid,
            Entry {
                state: State::Answered { bytes: kept, retx },
                fingerprint,
                gen,
            },
        );
        debug_assert!(old.is_none_or(|e| matches!(e.state, State::InProgress { .. })));
        let source = self.sources.acquire(to);
        self.expiry.push_back(Expiry {
            at: now + self.config.t_hist,
            source,
            tid,
            gen,
        });
    }

    /// Sends `100` (transaction being executed) for a command still executing, so that
    /// the call agent stops retransmitting. The final response will then carry `K:`.
    /// Ignored when the transaction is unknown or already answered.
    pub fn send_provisional(&mut self, now: Instant, to: SocketAddr, tid: TransactionId) {
        let _ = now;
        self.provisional(to, Response::new(ReturnCode::TRANSACTION_IN_PROGRESS, tid));
    }

    fn provisional(&mut self, to: SocketAddr, response: Response) {
        match self
            .cache
            .get_mut(&to)
            .and_then(|m| m.get_mut(&response.tid))
        {
            Some(Entry {
                state: State::InProgress { provisional_sent },
                ..
            }) => *provisional_sent = true,
            _ => {
                self.stats.responses_ignored += 1;
                return;
            }
        }
        self.stats.provisionals_sent += 1;
        self.send(to, encode(Message::Response(response)));
    }

    /// A `K:` list from `from`: those responses reached the call agent.
    fn confirm(&mut self, from: SocketAddr, ranges: &[(TransactionId, TransactionId)]) {
        let Some(map) = self.cache.get_mut(&from) else {
            return;
        };
        for &(lo, hi) in ranges {
            for (&tid, entry) in map.range_mut(lo..=hi) {
                if let State::Answered { retx, .. } = &entry.state {
                    if let Some(at) = retx.as_ref().and_then(|r| r.timer_at) {
                        self.timers.remove(&(at, Timer::ResponseRetx(from, tid)));
                    }
                    entry.state = State::Confirmed;
                    self.stats.responses_confirmed += 1;
                }
            }
        }
    }

    /// A `000` from `from` for our final response `tid`.
    pub(super) fn response_ack_received(&mut self, from: SocketAddr, tid: TransactionId) {
        let entry = self.cache.get_mut(&from).and_then(|m| m.get_mut(&tid));
        match entry {
            Some(e) if matches!(e.state, State::Answered { .. }) => {
                if let State::Answered { retx: Some(r), .. } = &e.state {
                    if let Some(at) = r.timer_at {
                        self.timers.remove(&(at, Timer::ResponseRetx(from, tid)));
                    }
                }
                e.state = State::Confirmed;
                self.stats.response_acks_received += 1;
            }
            _ => self.stats.stray_responses += 1,
        }
    }

    pub(super) fn response_retx_timer(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        tid: TransactionId,
    ) {
        let (max2, max_rto) = (self.config.max2, self.config.max_rto);
        let Some(Entry {
            state: State::Answered { bytes, retx },
            ..
        }) = self.cache.get_mut(&addr).and_then(|m| m.get_mut(&tid))
        else {
            return;
        };
        let Some(r) = retx.as_mut() else { return };
        r.timer_at = None;
        if r.count >= max2 {
            *retx = None;
            self.stats.response_ack_timeouts += 1;
            return;
        }
        r.count += 1;
        r.rto = r.rto.saturating_mul(2).min(max_rto);
        let base = r.rto;
        let bytes = bytes.to_vec();
        let at = now + self.jittered(base);
        if let Some(Entry {
            state: State::Answered { retx: Some(r), .. },
            ..
        }) = self.cache.get_mut(&addr).and_then(|m| m.get_mut(&tid))
        {
            r.timer_at = Some(at);
        }
        self.timers.insert((at, Timer::ResponseRetx(addr, tid)));
        self.stats.response_retransmissions += 1;
        self.send(addr, bytes);
    }

    /// T-HIST expiry of one cache entry, if it is still the same entry.
    pub(super) fn expire_entry(&mut self, e: Expiry) {
        let Some(addr) = self.sources.release(e.source) else {
            return;
        };
        let (tid, gen) = (e.tid, e.gen);
        let Some(map) = self.cache.get_mut(&addr) else {
            return;
        };
        if map.get(&tid).is_some_and(|e| e.gen == gen) {
            if let Some(Entry {
                state: State::Answered { retx: Some(r), .. },
                ..
            }) = map.remove(&tid)
            {
                if let Some(at) = r.timer_at {
                    self.timers.remove(&(at, Timer::ResponseRetx(addr, tid)));
                }
            }
        }
        if map.is_empty() {
            self.cache.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Sources;
    use std::net::SocketAddr;

    #[test]
    fn source_ids_are_counted_and_reused_only_when_free() {
        let a: SocketAddr = "10.0.0.1:2727".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:2727".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:2727".parse().unwrap();
        let mut s = Sources::default();
        let ia = s.acquire(a);
        assert_eq!(s.acquire(a), ia, "one id per address");
        let ib = s.acquire(b);
        assert_ne!(ia, ib);
        assert_eq!(s.release(ia), Some(a));
        // `a` still has one record: its id is not handed to `c`.
        let ic = s.acquire(c);
        assert_ne!(ic, ia);
        assert_eq!(s.release(ia), Some(a));
        // Now it is free and reused.
        assert_eq!(s.acquire(c), ic);
        let id = s.acquire("10.0.0.4:1".parse().unwrap());
        assert_eq!(id, ia);
        assert_eq!(s.release(ib), Some(b));
        assert_eq!(s.release(99), None);
    }
}
