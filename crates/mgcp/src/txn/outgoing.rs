//! Gateway-originated commands: retransmission with backoff and jitter, Max1 failover to
//! backup call agents, Max2 give-up (RFC 3435 §4.3), provisional responses and response
//! acknowledgement (`K:` in our next command, or `000` when asked for, §3.5.6).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{encode, format_response_ack, Agent, Destination, Event, Timer};
use crate::code::ReturnCode;
use crate::message::{Command, Message, ParamName, Response, TransactionId};

/// Most response acks remembered per call agent for the next command's `K:`.
const MAX_PENDING_ACKS: usize = 256;

/// Why a command was sent: decides what its outcome does to the link state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Purpose {
    /// Sent by the control plane.
    User,
    /// The restart RSIP.
    Restart,
    /// The disconnected RSIP.
    Disconnected,
    /// A restart/disconnected RSIP replaced by a newer [`Agent::restart`].
    Superseded,
}

#[derive(Clone, Copy, Debug)]
enum Target {
    /// Through the call agent list: `index` is the address in use, `tried` how many
    /// addresses have been used so far.
    CallAgent { index: usize, tried: usize },
    /// A fixed address.
    Addr,
}

/// One of our commands awaiting its final response.
#[derive(Debug)]
pub(super) struct Outgoing {
    command: Command,
    target: Target,
    addr: SocketAddr,
    bytes: Vec<u8>,
    retx_total: u32,
    retx_at_addr: u32,
    rto: Duration,
    provisional: bool,
    timer_at: Option<Instant>,
    pub(super) purpose: Purpose,
}

impl Agent {
    /// Sends a gateway-originated command (NTFY, DLCX, RSIP ...). The agent assigns the
    /// transaction id (returned; any `tid` in `command` is replaced) and adds a `K:` with
    /// the final responses from that call agent not yet acknowledged. The outcome arrives
    /// as [`Event::Response`] or [`Event::Failed`]. A failure while connected starts the
    /// disconnected procedure.
    pub fn send_command(
        &mut self,
        now: Instant,
        command: Command,
        dest: Destination,
    ) -> TransactionId {
        let (tid, sent) = self.start_command(now, command, dest, Purpose::User);
        if !sent {
            self.after_failure(now, Purpose::User);
        }
        tid
    }

    /// Starts a transaction. Returns its id and whether it was sent: with no call agent
    /// configured it fails at once ([`Event::Failed`] is queued; the caller handles the
    /// link consequences).
    pub(super) fn start_command(
        &mut self,
        now: Instant,
        mut command: Command,
        dest: Destination,
        purpose: Purpose,
    ) -> (TransactionId, bool) {
        let tid = self.alloc_tid();
        command.tid = tid;
        command.params.remove(&ParamName::ResponseAck);
        let (target, addr) = match dest {
            Destination::Addr(a) => (Target::Addr, a),
            Destination::CallAgent => match self.call_agents.get(self.current_ca) {
                Some(&a) => (
                    Target::CallAgent {
                        index: self.current_ca,
                        tried: 1,
                    },
                    a,
                ),
                None => {
                    self.stats.failures += 1;
                    self.events.push_back(Event::Failed { tid, command });
                    return (tid, false);
                }
            },
        };
        let bytes = self.encode_with_acks(&command, addr);
        self.stats.commands_sent += 1;
        self.send(addr, bytes.clone());
        let rto = self.config.initial_rto;
        let at = now + self.jittered(rto);
        self.timers.insert((at, Timer::Outgoing(tid)));
        self.outgoing.insert(
            tid,
            Outgoing {
                command,
                target,
                addr,
                bytes,
                retx_total: 0,
                retx_at_addr: 0,
                rto,
                provisional: false,
                timer_at: Some(at),
                purpose,
            },
        );
        (tid, true)
    }

    /// The command's bytes for `addr`, with the pending response acks for `addr` in `K:`.
    fn encode_with_acks(&mut self, command: &Command, addr: SocketAddr) -> Vec<u8> {
        let mut c = command.clone();
        if let Some(acks) = self.pending_acks.remove(&addr) {
            if !acks.is_empty() {
                c.params
                    .push(ParamName::ResponseAck, format_response_ack(&acks));
            }
        }
        encode(Message::Command(c))
    }

    pub(super) fn set_outgoing_purpose(&mut self, tid: TransactionId, purpose: Purpose) {
        if let Some(o) = self.outgoing.get_mut(&tid) {
            o.purpose = purpose;
        }
    }

    /// The retransmission timer (or the provisional wait) of `tid` expired.
    pub(super) fn outgoing_timer(&mut self, now: Instant, tid: TransactionId) {
        let Some(mut o) = self.outgoing.remove(&tid) else {
            return;
        };
        o.timer_at = None;
        o.provisional = false;
        if o.retx_total >= self.config.max2 {
            self.fail(now, tid, o);
            return;
        }
        let mut switched = false;
        if o.retx_at_addr >= self.config.max1 {
            if let Target::CallAgent { index, tried } = o.target {
                let n = self.call_agents.len();
                if tried < n {
                    let next = (index + 1) % n;
                    if let Some(&addr) = self.call_agents.get(next) {
                        o.target = Target::CallAgent {
                            index: next,
                            tried: tried + 1,
                        };
                        o.addr = addr;
                        o.bytes = self.encode_with_acks(&o.command, addr);
                        o.retx_at_addr = 0;
                        o.rto = self.config.initial_rto;
                        self.stats.failovers += 1;
                        switched = true;
                    }
                }
            }
        }
        if !switched {
            o.retx_at_addr += 1;
            o.rto = o.rto.saturating_mul(2).min(self.config.max_rto);
        }
        o.retx_total += 1;
        self.stats.retransmissions_sent += 1;
        self.send(o.addr, o.bytes.clone());
        let at = now + self.jittered(o.rto);
        o.timer_at = Some(at);
        self.timers.insert((at, Timer::Outgoing(tid)));
        self.outgoing.insert(tid, o);
    }

    fn fail(&mut self, now: Instant, tid: TransactionId, o: Outgoing) {
        if let Some(at) = o.timer_at {
            self.timers.remove(&(at, Timer::Outgoing(tid)));
        }
        self.stats.failures += 1;
        self.events.push_back(Event::Failed {
            tid,
            command: o.command,
        });
        self.after_failure(now, o.purpose);
    }

    /// Any response (including `000` acks for our own responses).
    pub(super) fn handle_response(&mut self, now: Instant, from: SocketAddr, resp: Response) {
        let tid = resp.tid;
        if resp.code == ReturnCode::RESPONSE_ACK {
            self.response_ack_received(from, tid);
            return;
        }
        let from_ok = match self.outgoing.get(&tid) {
            Some(o) => o.addr.ip() == from.ip() || self.is_call_agent(from),
            None => false,
        };
        if !from_ok || !(resp.code.is_provisional() || resp.code.is_final()) {
            match self.completed.get(&tid) {
                Some(&(_, addr)) if addr.ip() == from.ip() && resp.code.is_final() => {
                    // A retransmitted final response: the call agent may still want its 000.
                    self.stats.duplicate_responses += 1;
                    if resp.params.contains(&ParamName::ResponseAck) {
                        self.send_response_ack(from, tid);
                    }
                }
                _ => self.stats.stray_responses += 1,
            }
            return;
        }
        if resp.code.is_provisional() {
            self.stats.provisionals_received += 1;
            let wait = self.config.provisional_wait;
            if let Some(o) = self.outgoing.get_mut(&tid) {
                if let Some(at) = o.timer_at.take() {
                    self.timers.remove(&(at, Timer::Outgoing(tid)));
                }
                o.provisional = true;
                let at = now + wait;
                o.timer_at = Some(at);
                self.timers.insert((at, Timer::Outgoing(tid)));
            }
            return;
        }
        let Some(o) = self.outgoing.remove(&tid) else {
            return;
        };
        if let Some(at) = o.timer_at {
            self.timers.remove(&(at, Timer::Outgoing(tid)));
        }
        self.stats.responses_received += 1;
        if resp.params.contains(&ParamName::ResponseAck) {
            self.send_response_ack(from, tid);
        } else {
            let acks = self.pending_acks.entry(o.addr).or_default();
            if acks.len() >= MAX_PENDING_ACKS {
                acks.remove(0);
            }
            acks.push(tid);
        }
        let expires = now + self.config.t_hist;
        self.completed.insert(tid, (expires, o.addr));
        self.completed_fifo.push_back((expires, tid));
        if let Target::CallAgent { index, .. } = o.target {
            if index < self.call_agents.len() {
                self.current_ca = index;
            }
        }
        let (purpose, addr) = (o.purpose, o.addr);
        self.events.push_back(Event::Response {
            tid,
            command: o.command,
            response: resp,
        });
        self.after_success(now, purpose, tid, addr);
    }

    fn send_response_ack(&mut self, to: SocketAddr, tid: TransactionId) {
        self.stats.response_acks_sent += 1;
        let ack = Response::new(ReturnCode::RESPONSE_ACK, tid);
        self.send(to, encode(Message::Response(ack)));
    }
}
