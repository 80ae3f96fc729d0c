//! The MGCP server: one tokio task owning the UDP socket, the transaction layer
//! ([`mgcp::txn::Agent`]) and the [`Core`]. Dataplane events reach it through a small
//! bridge thread that turns the crossbeam receiver into a tokio channel.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mgcp::params::RestartMethod;
use mgcp::txn::{Agent, Destination, Event as TxnEvent};
use mgcp::Verb;
use mgw_dataplane::DataplaneEvent;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::core::{Core, MediaPlane};
use crate::ShutdownMethod;

/// Most datagrams handled per wake-up before the loop polls timers again.
const RECV_BATCH: usize = 64;

/// What made the loop stop.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// Shut down on request.
    Requested,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Graceful shutdown: no new connections; forced RSIP at the deadline or when idle.
    Draining {
        until: Instant,
    },
    /// Final RSIP sent; waiting for its answer (or the deadline).
    Leaving {
        until: Instant,
    },
}

pub(crate) struct Server<M: MediaPlane> {
    pub(crate) socket: UdpSocket,
    pub(crate) agent: Agent,
    pub(crate) core: Core<M>,
    pub(crate) dp_events: mpsc::Receiver<DataplaneEvent>,
    pub(crate) shutdown_method: ShutdownMethod,
    pub(crate) leave_timeout: Duration,
}

impl<M: MediaPlane> Server<M> {
    /// Runs until shut down and hands the core back.
    pub(crate) async fn run_to_end(mut self, shutdown: impl Future<Output = ()>) -> Core<M> {
        let _stopped = self.run_loop(shutdown).await;
        self.core
    }

    async fn run_loop(&mut self, shutdown: impl Future<Output = ()>) -> Stopped {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; 65_536];
        let mut phase = Phase::Running;
        let mut shutdown_seen = false;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.agent
            .restart(Instant::now(), RestartMethod::Restart, None);
        self.flush().await;
        loop {
            let wake = self
                .agent
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = &mut shutdown, if !shutdown_seen => {
                    shutdown_seen = true;
                    let now = Instant::now();
                    phase = match self.shutdown_method {
                        ShutdownMethod::Graceful(delay) if !delay.is_zero() => {
                            info!(delay_s = delay.as_secs(), "graceful shutdown: sending RSIP graceful");
                            self.agent.restart(now, RestartMethod::Graceful, Some(delay));
                            self.core.set_draining(true);
                            Phase::Draining { until: now + delay }
                        }
                        _ => self.leave(now),
                    };
                }
                r = self.socket.recv_from(&mut buf) => {
                    let now = Instant::now();
                    match r {
                        Ok((n, from)) => self.agent.handle_datagram(now, from, &buf[..n]),
                        Err(e) => debug!(error = %e, "MGCP receive error"),
                    }
                    for _ in 1..RECV_BATCH {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, from)) => self.agent.handle_datagram(now, from, &buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
                Some(ev) = self.dp_events.recv() => {
                    self.core.on_dataplane_event(ev);
                    while let Ok(ev) = self.dp_events.try_recv() {
                        self.core.on_dataplane_event(ev);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    self.agent.handle_timeout(Instant::now());
                }
                _ = tick.tick() => {
                    self.core.tick();
                }
            }
            let now = Instant::now();
            if self.process_events(now, &phase) && matches!(phase, Phase::Leaving { .. }) {
                debug!("final RSIP done");
                self.flush().await;
                return Stopped::Requested;
            }
            match phase {
                Phase::Draining { until } if now >= until || self.core.connection_count() == 0 => {
                    phase = self.leave(now);
                }
                Phase::Leaving { until } if now >= until => {
                    warn!("no answer to the final RSIP; exiting anyway");
                    self.flush().await;
                    return Stopped::Requested;
                }
                _ => {}
            }
            self.flush().await;
        }
    }

    /// Sends the forced RSIP and deletes every connection.
    fn leave(&mut self, now: Instant) -> Phase {
        let n = self.core.delete_all();
        info!(connections = n, "shutting down: RSIP forced");
        self.agent.restart(now, RestartMethod::Forced, None);
        Phase::Leaving {
            until: now + self.leave_timeout,
        }
    }

    /// Runs the transaction layer's events through the core. Returns whether an RSIP
    /// transaction ended (answered or abandoned) while leaving.
    fn process_events(&mut self, now: Instant, phase: &Phase) -> bool {
        let leaving = matches!(phase, Phase::Leaving { .. });
        let mut rsip_done = false;
        while let Some(ev) = self.agent.poll_event() {
            match ev {
                TxnEvent::Command { from, command } => {
                    let resp = self.core.execute(from, &command);
                    debug!(verb = %command.verb, tid = %command.tid, endpoint = %command.endpoint, code = %resp.code, %from, "command executed");
                    self.agent.respond(now, from, resp);
                }
                TxnEvent::Response {
                    tid,
                    command,
                    response,
                } => {
                    debug!(%tid, verb = %command.verb, code = %response.code, "call agent answered");
                    if command.verb == Verb::Rsip && leaving {
                        rsip_done = true;
                    }
                }
                TxnEvent::Failed { tid, command } => {
                    warn!(%tid, verb = %command.verb, endpoint = %command.endpoint, "call agent did not answer; command abandoned");
                    if command.verb == Verb::Rsip && leaving {
                        rsip_done = true;
                    }
                }
                TxnEvent::LinkUp { call_agent } => {
                    info!(%call_agent, "call agent link up");
                    rsip_done |= leaving;
                }
                TxnEvent::LinkDown => {
                    warn!("call agent unreachable: disconnected procedure");
                    rsip_done |= leaving;
                }
            }
        }
        while let Some(out) = self.core.poll_outgoing() {
            let dest = match out.dest {
                Some(a) => Destination::Addr(a),
                None => Destination::CallAgent,
            };
            self.agent.send_command(now, out.command, dest);
        }
        rsip_done
    }

    async fn flush(&mut self) {
        while let Some(t) = self.agent.poll_transmit() {
            if let Err(e) = self.socket.send_to(&t.payload, t.dest).await {
                debug!(dest = %t.dest, error = %e, "MGCP send failed");
            }
        }
    }
}

/// The address the kernel would use to reach `peer` (no packet is sent).
pub(crate) fn local_ip_towards(peer: SocketAddr) -> Option<std::net::IpAddr> {
    let bind: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(peer).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}
