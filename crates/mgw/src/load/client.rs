//! The call-agent side of MGCP transactions (RFC 3435 §3.5, §4), sans-IO: commands go out
//! with fresh transaction ids and are retransmitted (initial 200 ms, doubling, capped at
//! 4 s) until a final response or `max_retransmits`; a provisional response stretches the
//! timer to the cap; a final response with an empty `K:` is acknowledged with `000`; and
//! commands from the gateway (its restart RSIP, NTFY) are answered `200`.
//!
//! Drive it with [`Client::handle_datagram`] and [`Client::handle_timeout`], then drain
//! [`Client::poll_transmit`] and [`Client::poll_event`]; sleep until [`Client::poll_timeout`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mgcp::{parse_datagram, Command, Message, ParamName, Response, TransactionId, Verb};

/// Retransmission settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timers {
    /// First retransmission timeout.
    pub(crate) initial_rto: Duration,
    /// Largest timeout.
    pub(crate) max_rto: Duration,
    /// Retransmissions before giving up.
    pub(crate) max_retransmits: u32,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            initial_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(4),
            max_retransmits: 7,
        }
    }
}

#[derive(Debug)]
struct Pending {
    tag: u64,
    verb: Verb,
    bytes: Vec<u8>,
    first_sent: Instant,
    next: Instant,
    rto: Duration,
    retransmits: u32,
}

/// Something the caller must act on.
#[derive(Debug)]
pub(crate) enum ClientEvent {
    /// The final response to the command sent with `tag`.
    Response {
        /// The caller's tag.
        tag: u64,
        /// The command's verb.
        verb: Verb,
        /// The response.
        response: Response,
        /// First transmission to final response.
        latency: Duration,
        /// How often the command was retransmitted.
        retransmits: u32,
    },
    /// No final response after every retransmission.
    Timeout {
        /// The caller's tag.
        tag: u64,
        /// The command's verb.
        verb: Verb,
        /// How often the command was retransmitted.
        retransmits: u32,
    },
    /// The gateway sent a command (already answered `200`).
    GatewayCommand(Verb),
    /// A datagram that did not parse.
    Garbage,
}

/// Call-agent transaction state.
#[derive(Debug)]
pub(crate) struct Client {
    timers: Timers,
    next_tid: TransactionId,
    pending: HashMap<TransactionId, Pending>,
    /// (destination, `None` = the gateway) and bytes.
    transmit: VecDeque<(Option<SocketAddr>, Vec<u8>)>,
    events: VecDeque<ClientEvent>,
}

impl Client {
    /// A client whose first transaction id is `first_tid` (1..=999 999 999).
    pub(crate) fn new(timers: Timers, first_tid: u32) -> Self {
        Client {
            timers,
            next_tid: TransactionId::new(first_tid).unwrap_or(TransactionId::FIRST),
            pending: HashMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Sends `cmd` (its transaction id is replaced by a fresh one); `tag` comes back with
    /// the outcome. Returns the transaction id used.
    pub(crate) fn send(&mut self, now: Instant, mut cmd: Command, tag: u64) -> TransactionId {
        while self.pending.contains_key(&self.next_tid) {
            self.next_tid = self.next_tid.next();
        }
        let tid = self.next_tid;
        self.next_tid = tid.next();
        cmd.tid = tid;
        let bytes = Message::Command(cmd.clone()).to_bytes();
        self.transmit.push_back((None, bytes.clone()));
        self.pending.insert(
            tid,
            Pending {
                tag,
                verb: cmd.verb,
                bytes,
                first_sent: now,
                next: now + self.timers.initial_rto,
                rto: self.timers.initial_rto,
                retransmits: 0,
            },
        );
        tid
    }

    /// Transactions still waiting for a final response.
    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Processes a datagram from `from`.
    pub(crate) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        for msg in parse_datagram(bytes) {
            match msg {
                Ok(Message::Response(r)) => self.on_response(now, r),
                Ok(Message::Command(c)) => {
                    // RSIP at start-up, NTFY for events: accept them all.
                    let ok = Response::new(mgcp::ReturnCode(200), c.tid).with_comment("OK");
                    self.transmit
                        .push_back((Some(from), Message::Response(ok).to_bytes()));
                    self.events.push_back(ClientEvent::GatewayCommand(c.verb));
                }
                Err(_) => self.events.push_back(ClientEvent::Garbage),
            }
        }
    }

    fn on_response(&mut self, now: Instant, r: Response) {
        if r.code.0 == 0 {
            return; // a response ack is not for us
        }
        if !r.code.is_final() {
            if let Some(p) = self.pending.get_mut(&r.tid) {
                // Provisional: the command arrived; wait longer before retransmitting.
                p.rto = self.timers.max_rto;
                p.next = now + p.rto;
            }
            return;
        }
        if r.params.contains(&ParamName::ResponseAck) {
            // Also for a repeat of a response already handled: our ack may have been lost.
            self.transmit
                .push_back((None, format!("000 {}\r\n", r.tid).into_bytes()));
        }
        if let Some(p) = self.pending.remove(&r.tid) {
            self.events.push_back(ClientEvent::Response {
                tag: p.tag,
                verb: p.verb,
                latency: now.saturating_duration_since(p.first_sent),
                retransmits: p.retransmits,
                response: r,
            });
        }
    }

    /// Retransmits what is due and gives up on what has run out of retransmissions.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let mut dead = Vec::new();
        for (tid, p) in self.pending.iter_mut() {
            if p.next > now {
                continue;
            }
            if p.retransmits >= self.timers.max_retransmits {
                dead.push(*tid);
                continue;
            }
            p.retransmits += 1;
            p.rto = (p.rto * 2).min(self.timers.max_rto);
            p.next = now + p.rto;
            self.transmit.push_back((None, p.bytes.clone()));
        }
        for tid in dead {
            if let Some(p) = self.pending.remove(&tid) {
                self.events.push_back(ClientEvent::Timeout {
                    tag: p.tag,
                    verb: p.verb,
                    retransmits: p.retransmits,
                });
            }
        }
    }

    /// When [`Client::handle_timeout`] is next needed.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.next).min()
    }

    /// The next datagram to send: (`None` = to the gateway, or this address; bytes).
    pub(crate) fn poll_transmit(&mut self) -> Option<(Option<SocketAddr>, Vec<u8>)> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub(crate) fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgcp::EndpointName;

    fn cmd(verb: Verb) -> Command {
        Command::new(
            verb,
            TransactionId::FIRST,
            EndpointName::parse("rtpbridge/1@mgw").unwrap(),
        )
    }

    fn drain(c: &mut Client) -> Vec<(Option<SocketAddr>, String)> {
        std::iter::from_fn(|| c.poll_transmit())
            .map(|(a, b)| (a, String::from_utf8(b).unwrap()))
            .collect()
    }

    #[test]
    fn retransmits_with_backoff_then_times_out() {
        let t0 = Instant::now();
        let mut c = Client::new(Timers::default(), 500);
        let tid = c.send(t0, cmd(Verb::Crcx), 7);
        assert_eq!(tid.get(), 500);
        let first = drain(&mut c);
        assert_eq!(first.len(), 1);
        assert!(first[0]
            .1
            .starts_with("CRCX 500 rtpbridge/1@mgw MGCP 1.0\r\n"));
        // Retransmissions at 200, 600, 1400, 3000, 6200, 10200, 14200 ms (200 ms doubling, 4 s cap).
        let mut at = Vec::new();
        let mut t = t0;
        while c.outstanding() > 0 {
            t = c.poll_timeout().unwrap();
            c.handle_timeout(t);
            if !drain(&mut c).is_empty() {
                at.push(t.duration_since(t0).as_millis());
            }
        }
        assert_eq!(at, vec![200, 600, 1400, 3000, 6200, 10200, 14200]);
        assert_eq!(t.duration_since(t0).as_millis(), 18200);
        match c.poll_event() {
            Some(ClientEvent::Timeout {
                tag: 7,
                verb: Verb::Crcx,
                retransmits: 7,
            }) => {}
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn final_response_provisional_and_ack() {
        let t0 = Instant::now();
        let gw: SocketAddr = "127.0.0.1:2427".parse().unwrap();
        let mut c = Client::new(Timers::default(), 1);
        let tid = c.send(t0, cmd(Verb::Dlcx), 3);
        drain(&mut c);
        // Provisional: next retransmission only after the 4 s cap.
        c.handle_datagram(
            t0 + Duration::from_millis(50),
            gw,
            format!("100 {tid} pending\r\n").as_bytes(),
        );
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(4050)));
        // Final with an empty K: is acknowledged with 000.
        c.handle_datagram(
            t0 + Duration::from_millis(80),
            gw,
            format!("250 {tid} bye\r\nK:\r\nP: PS=10, OS=1600\r\n").as_bytes(),
        );
        assert_eq!(drain(&mut c), vec![(None, format!("000 {tid}\r\n"))]);
        match c.poll_event() {
            Some(ClientEvent::Response {
                tag: 3,
                response,
                latency,
                retransmits: 0,
                ..
            }) => {
                assert_eq!(response.code.0, 250);
                assert_eq!(latency, Duration::from_millis(80));
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(c.outstanding(), 0);
        // A repeat of the same response is acked again but not reported twice.
        c.handle_datagram(t0, gw, format!("250 {tid}\r\nK:\r\n").as_bytes());
        assert_eq!(drain(&mut c).len(), 1);
        assert!(c.poll_event().is_none());
    }

    #[test]
    fn gateway_commands_are_answered_and_garbage_survives() {
        let gw: SocketAddr = "127.0.0.1:2427".parse().unwrap();
        let mut c = Client::new(Timers::default(), 1);
        c.handle_datagram(
            Instant::now(),
            gw,
            b"RSIP 77 *@mgw MGCP 1.0\r\nRM: restart\r\n",
        );
        let out = drain(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, Some(gw));
        assert!(out[0].1.starts_with("200 77"));
        assert!(matches!(
            c.poll_event(),
            Some(ClientEvent::GatewayCommand(Verb::Rsip))
        ));
        c.handle_datagram(Instant::now(), gw, b"\xff\xfe garbage");
        c.handle_datagram(Instant::now(), gw, b"000 5\r\n");
        assert!(matches!(c.poll_event(), Some(ClientEvent::Garbage)));
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn transaction_ids_wrap_and_skip_pending() {
        let t0 = Instant::now();
        let mut c = Client::new(Timers::default(), TransactionId::MAX);
        assert_eq!(c.send(t0, cmd(Verb::Auep), 0).get(), TransactionId::MAX);
        assert_eq!(c.send(t0, cmd(Verb::Auep), 0).get(), 1);
        assert_eq!(
            Client::new(Timers::default(), 0)
                .send(t0, cmd(Verb::Auep), 0)
                .get(),
            1
        );
    }
}
