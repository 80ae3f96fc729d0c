//! The restart and disconnected procedures (RFC 3435 §4.4.3–4.4.4).
//!
//! - [`Agent::restart`] waits a random time in `[0, restart_avalanche]` (so that many
//!   gateways restarting together do not flood the call agent), then sends
//!   `RSIP *@domain` with `RM:` (and `RD:` when a delay is given). A final response of any
//!   code means a call agent is there: [`Event::LinkUp`], [`LinkState::Connected`].
//! - When that RSIP (or any command while connected) fails, the gateway is
//!   disconnected ([`Event::LinkDown`]): it waits a random time in
//!   `[min(1 s, Tdinit), Tdinit]`, sends `RSIP` with `RM: disconnected`, and after each
//!   further failure doubles the wait, up to Tdmax, until an RSIP is answered.
//! - A command that arrives from a call agent while disconnected is executed normally,
//!   and the disconnected RSIP is sent at once to that call agent instead of waiting
//!   for the timer (the call agent is evidently reachable again).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::outgoing::Purpose;
use super::{Agent, Destination, Event, LinkState, Timer, FIRST_TID};
use crate::message::{Command, ParamName, TransactionId, Verb};
use crate::params::RestartMethod;

#[derive(Debug)]
pub(super) enum Link {
    /// Before the first [`Agent::restart`].
    Idle,
    /// Waiting the avalanche delay before the restart RSIP.
    RestartWait {
        method: String,
        delay: Option<Duration>,
    },
    /// The restart RSIP is outstanding.
    RestartSent { tid: TransactionId },
    /// An RSIP was answered.
    Connected,
    /// Disconnected, waiting `wait` before the next disconnected RSIP.
    DisconnectedWait { wait: Duration },
    /// The disconnected RSIP (sent after waiting `wait`) is outstanding.
    DisconnectedSent { tid: TransactionId, wait: Duration },
}

impl Link {
    pub(super) fn state(&self) -> LinkState {
        match self {
            Link::Idle | Link::RestartWait { .. } | Link::RestartSent { .. } => {
                LinkState::Restarting
            }
            Link::Connected => LinkState::Connected,
            Link::DisconnectedWait { .. } | Link::DisconnectedSent { .. } => {
                LinkState::Disconnected
            }
        }
    }
}

impl Agent {
    /// Starts the restart procedure: after a random wait in `[0, restart_avalanche]`,
    /// `RSIP *@domain` with `RM: <method>` (and `RD: <seconds>` when `delay` is given,
    /// as for `graceful`) goes to the current call agent, failing over to the backups.
    /// Success gives [`Event::LinkUp`]; failure [`Event::LinkDown`] and the disconnected
    /// procedure. A restart or disconnected RSIP still outstanding is superseded: its
    /// outcome is still reported as an event but no longer changes the link state.
    pub fn restart(&mut self, now: Instant, method: RestartMethod, delay: Option<Duration>) {
        self.supersede_link_rsip();
        let wait = self
            .rng
            .duration_between(Duration::ZERO, self.config.restart_avalanche);
        self.link = Link::RestartWait {
            method: method.to_string(),
            delay,
        };
        if wait.is_zero() {
            self.link_timer_fired(now);
        } else {
            self.arm_link(Some(now + wait));
        }
    }

    fn supersede_link_rsip(&mut self) {
        if let Link::RestartSent { tid } | Link::DisconnectedSent { tid, .. } = self.link {
            self.set_outgoing_purpose(tid, Purpose::Superseded);
        }
        self.arm_link(None);
    }

    fn arm_link(&mut self, at: Option<Instant>) {
        let old = self.link_timer;
        self.set_timer(old, Timer::Link, at);
        self.link_timer = at;
    }

    pub(super) fn link_timer_fired(&mut self, now: Instant) {
        match std::mem::replace(&mut self.link, Link::Idle) {
            Link::RestartWait { method, delay } => {
                let (tid, sent) = self.send_rsip(now, method, delay, Purpose::Restart);
                self.link = Link::RestartSent { tid };
                if !sent {
                    self.after_failure(now, Purpose::Restart);
                }
            }
            Link::DisconnectedWait { wait } => {
                let method = RestartMethod::Disconnected.to_string();
                let (tid, sent) = self.send_rsip(now, method, None, Purpose::Disconnected);
                self.link = Link::DisconnectedSent { tid, wait };
                if !sent {
                    self.after_failure(now, Purpose::Disconnected);
                }
            }
            other => self.link = other,
        }
    }

    fn send_rsip(
        &mut self,
        now: Instant,
        method: String,
        delay: Option<Duration>,
        purpose: Purpose,
    ) -> (TransactionId, bool) {
        let mut cmd = Command::new(Verb::Rsip, FIRST_TID, self.rsip_endpoint.clone());
        cmd.params.push(ParamName::RestartMethod, method);
        if let Some(d) = delay {
            cmd.params
                .push(ParamName::RestartDelay, d.as_secs().to_string());
        }
        self.start_command(now, cmd, Destination::CallAgent, purpose)
    }

    /// A command of ours got its final response.
    pub(super) fn after_success(
        &mut self,
        _now: Instant,
        purpose: Purpose,
        tid: TransactionId,
        addr: SocketAddr,
    ) {
        let ours = match self.link {
            Link::RestartSent { tid: t } => purpose == Purpose::Restart && t == tid,
            Link::DisconnectedSent { tid: t, .. } => purpose == Purpose::Disconnected && t == tid,
            _ => false,
        };
        if ours {
            self.link = Link::Connected;
            self.events.push_back(Event::LinkUp { call_agent: addr });
        }
    }

    /// A command of ours was given up.
    pub(super) fn after_failure(&mut self, now: Instant, purpose: Purpose) {
        match (purpose, &self.link) {
            (Purpose::Restart, Link::RestartSent { .. }) => self.enter_disconnected(now),
            (Purpose::User, Link::Connected) => self.enter_disconnected(now),
            (Purpose::Disconnected, &Link::DisconnectedSent { wait, .. }) => {
                let wait = wait.saturating_mul(2).min(self.config.disconnected_max);
                self.link = Link::DisconnectedWait { wait };
                self.arm_link(Some(now + wait));
            }
            _ => {}
        }
    }

    fn enter_disconnected(&mut self, now: Instant) {
        let tdinit = self.config.disconnected_initial;
        let wait = self
            .rng
            .duration_between(Duration::from_secs(1).min(tdinit), tdinit);
        self.link = Link::DisconnectedWait { wait };
        self.arm_link(Some(now + wait));
        self.events.push_back(Event::LinkDown);
    }

    /// A new command arrived from `from`: if we are waiting to send the disconnected
    /// RSIP, send it now, to that call agent.
    pub(super) fn command_while_disconnected(&mut self, now: Instant, from: SocketAddr) {
        if !matches!(self.link, Link::DisconnectedWait { .. }) {
            return;
        }
        if let Some(i) = self.call_agents.iter().position(|a| a.ip() == from.ip()) {
            self.current_ca = i;
        }
        self.arm_link(None);
        self.link_timer_fired(now);
    }
}
