//! The MGCP server: one tokio task owning the UDP socket, the transaction layer
//! ([`mgcp::txn::Agent`]) and the [`Core`]. Dataplane events are taken straight from the
//! workers' channel on every pass; a small bridge thread wakes the loop when they arrive
//! while it sleeps (see `bridge`).

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mgcp::params::RestartMethod;
use mgcp::txn::{Agent, Destination, Event as TxnEvent};
use mgcp::Verb;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::admin::{calls_of, Metrics, StatusInfo};
use crate::bridge::DpEvents;
use crate::core::{Core, MediaPlane};
use crate::http::{AdminQuery, AdminReply, AdminRequest};
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
    pub(crate) dp_events: DpEvents,
    pub(crate) shutdown_method: ShutdownMethod,
    pub(crate) leave_timeout: Duration,
    pub(crate) admin: mpsc::Receiver<AdminRequest>,
    /// (cpu_ns, wall_ns) per worker at the previous scrape, for the load gauge.
    pub(crate) cpu_samples: Vec<(u64, u64)>,
    pub(crate) reloads: mpsc::Receiver<crate::Reload>,
    pub(crate) started: Instant,
    pub(crate) mgcp_addr: SocketAddr,
    pub(crate) domain: String,
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
                // Drained below, like on every pass.
                _ = self.dp_events.rung() => {}
                _ = tokio::time::sleep_until(wake) => {
                    self.agent.handle_timeout(Instant::now());
                }
                _ = tick.tick() => {
                    self.core.tick_at(Instant::now());
                }
                Some(r) = self.reloads.recv() => {
                    if r.call_agents.is_empty() {
                        warn!("reload with no call agent ignored");
                    } else {
                        info!(call_agents = ?r.call_agents, allow_from = ?r.allow_from, "call agents reloaded");
                        self.agent.set_call_agents(r.call_agents);
                        self.agent.set_allowed(r.allow_from);
                    }
                }
                Some(req) = self.admin.recv() => {
                    let reply = self.admin_reply(req.query);
                    let _ = req.reply.send(reply);
                }
            }
            let core = &mut self.core;
            self.dp_events.drain(|ev| core.on_dataplane_event(ev));
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

    fn admin_reply(&mut self, q: AdminQuery) -> AdminReply {
        let json = |v: Result<serde_json::Value, serde_json::Error>| {
            AdminReply::Json(v.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })))
        };
        match q {
            AdminQuery::Metrics => AdminReply::Text(self.metrics()),
            AdminQuery::Trace(change) => {
                if let Some((call, on)) = change {
                    if let Err(e) = self.core.trace_call(&call, on) {
                        return AdminReply::BadRequest(e.to_string());
                    }
                    info!(call_id = %call, on, "per-call trace changed");
                }
                json(serde_json::to_value(self.core.traced_calls()))
            }
            AdminQuery::Endpoints => json(serde_json::to_value(self.core.endpoints_info())),
            AdminQuery::Connections => json(serde_json::to_value(self.core.connections_info())),
            AdminQuery::Calls => json(serde_json::to_value(calls_of(
                &self.core.connections_info(),
            ))),
            AdminQuery::Status => {
                let conns = self.core.connections_info();
                let status = StatusInfo {
                    version: env!("CARGO_PKG_VERSION").into(),
                    domain: self.domain.clone(),
                    mgcp: self.mgcp_addr.to_string(),
                    uptime_s: self.started.elapsed().as_secs(),
                    link: format!("{:?}", self.agent.state()).to_ascii_lowercase(),
                    call_agent: self.agent.call_agent().to_string(),
                    backend: self.core.media().backend_name(),
                    workers: self.core.media().worker_count(),
                    endpoints: self.core.endpoint_count(),
                    connections: conns.len(),
                    calls: calls_of(&conns).len(),
                };
                json(serde_json::to_value(status))
            }
        }
    }

    fn metrics(&mut self) -> String {
        let mut m = Metrics::default();
        self.core.write_metrics(&mut m);
        let s = self.agent.stats();
        m.counter(
            "mgw_mgcp_retransmissions",
            "Gateway-originated commands retransmitted",
            s.retransmissions_sent,
        );
        m.family(
            "mgw_mgcp_duplicates",
            "counter",
            "Retransmitted commands answered from the response history",
        );
        m.sample(
            "mgw_mgcp_duplicates_total",
            &[("state", "answered")],
            s.duplicates_answered,
        );
        m.sample(
            "mgw_mgcp_duplicates_total",
            &[("state", "in_progress")],
            s.duplicates_in_progress,
        );
        m.sample(
            "mgw_mgcp_duplicates_total",
            &[("state", "after_ack")],
            s.duplicates_after_ack,
        );
        m.counter(
            "mgw_mgcp_response_retransmissions",
            "Final responses retransmitted while waiting for a 000 ack",
            s.response_retransmissions,
        );
        m.counter(
            "mgw_mgcp_failovers",
            "Switches to a backup call agent",
            s.failovers,
        );
        m.counter(
            "mgw_mgcp_failures",
            "Gateway-originated commands abandoned",
            s.failures,
        );
        m.counter(
            "mgw_mgcp_rejected_sources",
            "Datagrams from addresses that are not call agents",
            s.rejected_sources,
        );
        m.family(
            "mgw_mgcp_parse_errors",
            "counter",
            "Unparsable messages, answered or dropped",
        );
        m.sample(
            "mgw_mgcp_parse_errors_total",
            &[("action", "answered")],
            s.parse_errors_answered,
        );
        m.sample(
            "mgw_mgcp_parse_errors_total",
            &[("action", "dropped")],
            s.parse_errors_dropped,
        );
        m.gauge(
            "mgw_mgcp_transactions_in_flight",
            "Gateway-originated transactions awaiting a response",
            self.agent.outstanding() as u64,
        );
        m.gauge(
            "mgw_mgcp_response_history",
            "Responses remembered for retransmitted commands",
            self.agent.history_len() as u64,
        );
        m.counter(
            "mgw_dataplane_dropped_events",
            "Dataplane events dropped because the channel was full",
            self.core.media().dropped_events(),
        );
        m.gauge(
            "mgw_rtp_ports_in_use",
            "RTP/RTCP port pairs in use",
            self.core.media().ports_in_use() as u64,
        );
        let workers = self.core.media().worker_stats();
        m.family(
            "mgw_worker_packets",
            "counter",
            "UDP datagrams per dataplane worker and direction (RTP and RTCP)",
        );
        for w in &workers {
            let id = w.worker.to_string();
            m.sample(
                "mgw_worker_packets_total",
                &[("worker", &id), ("direction", "rx")],
                w.rx_packets,
            );
            m.sample(
                "mgw_worker_packets_total",
                &[("worker", &id), ("direction", "tx")],
                w.tx_packets,
            );
        }
        m.family(
            "mgw_worker_bytes",
            "counter",
            "UDP payload bytes per dataplane worker and direction",
        );
        for w in &workers {
            let id = w.worker.to_string();
            m.sample(
                "mgw_worker_bytes_total",
                &[("worker", &id), ("direction", "rx")],
                w.rx_bytes,
            );
            m.sample(
                "mgw_worker_bytes_total",
                &[("worker", &id), ("direction", "tx")],
                w.tx_bytes,
            );
        }
        m.family(
            "mgw_worker_drops",
            "counter",
            "Packets dropped per dataplane worker, by reason",
        );
        for w in &workers {
            let id = w.worker.to_string();
            let d = &w.drops;
            for (reason, n) in [
                ("source_check", d.source_check),
                ("mode", d.mode),
                ("invalid", d.invalid),
                ("no_buffer", d.no_buffer),
                ("send_queue_full", d.send_queue_full),
                ("send_error", d.send_error),
            ] {
                m.sample(
                    "mgw_worker_drops_total",
                    &[("worker", &id), ("reason", reason)],
                    n,
                );
            }
        }
        m.family(
            "mgw_worker_rx_ring_empty",
            "counter",
            "io_uring receives that found the buffer ring empty (datagrams wait in the socket; not drops)",
        );
        for w in &workers {
            m.sample(
                "mgw_worker_rx_ring_empty_total",
                &[("worker", &w.worker.to_string())],
                w.rx_ring_empty,
            );
        }
        m.family(
            "mgw_worker_connections",
            "gauge",
            "Connections per dataplane worker",
        );
        for w in &workers {
            m.sample(
                "mgw_worker_connections",
                &[("worker", &w.worker.to_string())],
                w.connections,
            );
        }
        m.family(
            "mgw_worker_cpu_seconds",
            "counter",
            "CPU time used by each dataplane worker thread (microsecond resolution)",
        );
        for w in &workers {
            // Whole microseconds, exported as a decimal number of seconds.
            m.sample_f(
                "mgw_worker_cpu_seconds_total",
                &[("worker", &w.worker.to_string())],
                w.cpu_ns as f64 / 1e9,
            );
        }
        m.family(
            "mgw_worker_cpu_load",
            "gauge",
            "Share of one core each worker used since the previous scrape (0..1)",
        );
        let prev = std::mem::take(&mut self.cpu_samples);
        for (i, w) in workers.iter().enumerate() {
            let load = match prev.get(i) {
                Some(&(c0, t0)) if w.wall_ns > t0 => {
                    (w.cpu_ns.saturating_sub(c0)) as f64 / (w.wall_ns - t0) as f64
                }
                _ if w.wall_ns > 0 => w.cpu_ns as f64 / w.wall_ns as f64,
                _ => 0.0,
            };
            m.sample_f(
                "mgw_worker_cpu_load",
                &[("worker", &w.worker.to_string())],
                load.clamp(0.0, 1.0),
            );
        }
        self.cpu_samples = workers.iter().map(|w| (w.cpu_ns, w.wall_ns)).collect();
        m.gauge(
            "mgw_uptime_seconds",
            "Seconds since start",
            self.started.elapsed().as_secs(),
        );
        m.finish()
    }

    /// Hands held dataplane commands to the workers, then sends every queued datagram:
    /// a command is in its worker's queue before the call agent sees the answer (a call
    /// agent may send media the moment an MDCX is answered).
    async fn flush(&mut self) {
        self.core.media_mut().flush();
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
