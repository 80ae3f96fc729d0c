//! A deterministic simulated-time world for the MGCP transaction layer: one gateway
//! [`Agent`], scripted call agents and a seeded network that drops, duplicates, delays
//! and (through random delays) reorders datagrams. Time is virtual: `base + offset`,
//! advanced from one due event to the next; nothing sleeps.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mgcp::txn::{Agent, Config, Event};
use mgcp::{parse_datagram, Command, Message, ParamName, Response, ReturnCode, TransactionId};

/// A small xorshift64* generator for the network model.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo).as_nanos() as u64;
        lo + Duration::from_nanos(self.next_u64() % (span + 1))
    }
}

/// A datagram handed to the network.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Offset from the world's base when it was sent.
    pub sent: Duration,
    /// When it arrives (if it is not lost).
    pub deliver: Duration,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

impl Packet {
    pub fn messages(&self) -> Vec<Message> {
        parse_datagram(&self.bytes)
            .into_iter()
            .map(|r| r.expect("the gateway sends well-formed MGCP"))
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// The network model.
pub struct Net {
    pub rng: Rng,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub dup: f64,
    /// One-way delay range; a wide range reorders datagrams.
    pub delay_min: Duration,
    pub delay_max: Duration,
    in_flight: Vec<Packet>,
    /// Every datagram sent (before loss), in send order.
    pub sent: Vec<Packet>,
    /// Every datagram delivered, in delivery order.
    pub delivered: Vec<Packet>,
}

impl Net {
    fn new(seed: u64) -> Self {
        Net {
            rng: Rng::new(seed),
            loss: 0.0,
            dup: 0.0,
            delay_min: Duration::from_millis(5),
            delay_max: Duration::from_millis(5),
            in_flight: Vec::new(),
            sent: Vec::new(),
            delivered: Vec::new(),
        }
    }

    fn send(&mut self, now: Duration, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        let d = self.rng.between(self.delay_min, self.delay_max);
        let p = Packet {
            sent: now,
            deliver: now + d,
            from,
            to,
            bytes,
        };
        self.sent.push(p.clone());
        if self.rng.unit() < self.loss {
            return;
        }
        if self.rng.unit() < self.dup {
            let mut q = p.clone();
            q.deliver = now + self.rng.between(self.delay_min, self.delay_max);
            self.in_flight.push(q);
        }
        self.in_flight.push(p);
    }

    fn next_delivery(&self) -> Option<Duration> {
        self.in_flight.iter().map(|p| p.deliver).min()
    }

    /// Removes and returns the earliest packet due at or before `now`.
    fn pop_due(&mut self, now: Duration) -> Option<Packet> {
        let i = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, p)| p.deliver <= now)
            .min_by_key(|(i, p)| (p.deliver, *i))
            .map(|(i, _)| i)?;
        Some(self.in_flight.remove(i))
    }
}

/// A scripted call agent.
pub struct Ca {
    pub addr: SocketAddr,
    /// A dead call agent receives (recorded) but never answers.
    pub alive: bool,
    /// Answer the gateway's commands with `200` (cached per tid, so repeats get the same).
    pub auto_answer: bool,
    /// Send `000` for final responses that carry `K:`.
    pub send_000: bool,
    /// Messages received (only while alive), with arrival time.
    pub received: Vec<(Duration, Message)>,
    answers: HashMap<TransactionId, Vec<u8>>,
}

/// What the gateway application does with commands.
pub struct Executor {
    /// Time from `Event::Command` to `respond`.
    pub delay: Duration,
    /// Every execution: (time, source, command).
    pub executions: Vec<(Duration, SocketAddr, Command)>,
    pending: Vec<(Duration, SocketAddr, Response)>,
}

pub struct World {
    pub base: Instant,
    pub now: Duration,
    pub net: Net,
    pub gw: Agent,
    pub gw_addr: SocketAddr,
    pub cas: Vec<Ca>,
    pub exec: Executor,
    /// Gateway events with the time they were polled.
    pub events: Vec<(Duration, Event)>,
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

pub const GW: &str = "10.0.0.2:2427";
pub const CA1: &str = "10.0.0.1:2727";
pub const CA2: &str = "10.0.1.1:2727";

impl World {
    /// A world with the given call agents (all alive, auto-answering, sending 000).
    pub fn new(config: Config, cas: &[&str], seed: u64) -> World {
        let cas: Vec<SocketAddr> = cas.iter().map(|s| addr(s)).collect();
        let gw = Agent::new(config, "gw.example".into(), cas.clone(), seed);
        World {
            base: Instant::now(),
            now: Duration::ZERO,
            net: Net::new(seed ^ 0xABCD),
            gw,
            gw_addr: addr(GW),
            cas: cas
                .into_iter()
                .map(|addr| Ca {
                    addr,
                    alive: true,
                    auto_answer: true,
                    send_000: true,
                    received: Vec::new(),
                    answers: HashMap::new(),
                })
                .collect(),
            exec: Executor {
                delay: Duration::ZERO,
                executions: Vec::new(),
                pending: Vec::new(),
            },
            events: Vec::new(),
        }
    }

    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// Sends raw bytes from `from` to the gateway through the network.
    pub fn inject(&mut self, from: SocketAddr, bytes: &[u8]) {
        let gw = self.gw_addr;
        self.net.send(self.now, from, gw, bytes.to_vec());
    }

    /// Lets the gateway act at the current instant (after calling an `Agent` method).
    pub fn flush(&mut self) {
        while let Some(t) = self.gw.poll_transmit() {
            let gw = self.gw_addr;
            self.net.send(self.now, gw, t.dest, t.payload);
        }
        while let Some(e) = self.gw.poll_event() {
            if let Event::Command { from, command } = &e {
                self.exec
                    .executions
                    .push((self.now, *from, command.clone()));
                let r = Response::new(ReturnCode::OK, command.tid);
                self.exec
                    .pending
                    .push((self.now + self.exec.delay, *from, r));
            }
            self.events.push((self.now, e));
        }
    }

    /// Runs the world until `until` (offset from base).
    pub fn run_until(&mut self, until: Duration) {
        for _ in 0..1_000_000 {
            self.flush();
            let next = [
                self.gw
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(self.base)),
                self.net.next_delivery(),
                self.exec.pending.iter().map(|p| p.0).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            while let Some(p) = self.net.pop_due(self.now) {
                self.deliver(p);
                self.flush();
            }
            let now = self.instant();
            if self.gw.poll_timeout().is_some_and(|t| t <= now) {
                self.gw.handle_timeout(now);
            }
            let due: Vec<_> = {
                let n = self.now;
                let (due, rest) = self.exec.pending.drain(..).partition(|p| p.0 <= n);
                self.exec.pending = rest;
                due
            };
            for (_, to, r) in due {
                self.gw.respond(now, to, r);
            }
        }
        panic!("simulation did not settle");
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn deliver(&mut self, p: Packet) {
        self.net.delivered.push(p.clone());
        if p.to == self.gw_addr {
            let now = self.instant();
            self.gw.handle_datagram(now, p.from, &p.bytes);
            return;
        }
        let now = self.now;
        let gw = self.gw_addr;
        let Some(ca) = self.cas.iter_mut().find(|c| c.addr == p.to) else {
            return;
        };
        if !ca.alive {
            return;
        }
        let mut replies = Vec::new();
        for m in p.messages() {
            match &m {
                Message::Command(c) if ca.auto_answer => {
                    let bytes = ca
                        .answers
                        .entry(c.tid)
                        .or_insert_with(|| {
                            Message::Response(Response::new(ReturnCode::OK, c.tid)).to_bytes()
                        })
                        .clone();
                    replies.push(bytes);
                }
                Message::Response(r)
                    if ca.send_000 && r.params.contains(&ParamName::ResponseAck) =>
                {
                    replies.push(
                        Message::Response(Response::new(ReturnCode::RESPONSE_ACK, r.tid))
                            .to_bytes(),
                    );
                }
                _ => {}
            }
            ca.received.push((now, m));
        }
        let from = ca.addr;
        for r in replies {
            self.net.send(now, from, gw, r);
        }
    }

    /// Datagrams the gateway sent to `to`, in order.
    pub fn sent_to(&self, to: SocketAddr) -> Vec<&Packet> {
        self.net
            .sent
            .iter()
            .filter(|p| p.from == self.gw_addr && p.to == to)
            .collect()
    }

    /// Responses received by call agent `i`.
    pub fn responses_at(&self, i: usize) -> Vec<(Duration, Response)> {
        self.cas[i]
            .received
            .iter()
            .filter_map(|(t, m)| match m {
                Message::Response(r) => Some((*t, r.clone())),
                _ => None,
            })
            .collect()
    }

    /// Commands received by call agent `i`.
    pub fn commands_at(&self, i: usize) -> Vec<(Duration, Command)> {
        self.cas[i]
            .received
            .iter()
            .filter_map(|(t, m)| match m {
                Message::Command(c) => Some((*t, c.clone())),
                _ => None,
            })
            .collect()
    }

    /// How many times the gateway application executed `tid` from `from`.
    pub fn executions_of(&self, from: SocketAddr, tid: u32) -> usize {
        self.exec
            .executions
            .iter()
            .filter(|(_, f, c)| *f == from && c.tid.get() == tid)
            .count()
    }

    /// Events matching `f`, with their times.
    pub fn events_where(&self, f: impl Fn(&Event) -> bool) -> Vec<(Duration, Event)> {
        self.events.iter().filter(|(_, e)| f(e)).cloned().collect()
    }
}

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

pub fn secs(v: u64) -> Duration {
    Duration::from_secs(v)
}
