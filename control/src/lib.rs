//! # mgw-control — the MGCP control plane
//!
//! This crate speaks MGCP to call agents and owns everything the protocol talks about:
//! endpoints, connections, calls, notified entities, requested events and signals.
//! It drives the dataplane through typed commands and hears back through typed events;
//! the two planes share no locks.
//!
//! ## Modules
//! - [`server`](crate::server) — the tokio loop: one UDP socket (port 2427 by default),
//!   the sans-IO transaction layer [`mgcp::txn::Agent`] (at-most-once execution,
//!   retransmission, restart and disconnected procedures), timers, signals.
//! - [`core`] — [`Core`]: executes the nine commands (RFC 3435 §2.3) against the
//!   endpoint registry. Synchronous, no sockets; every command is validated completely
//!   before anything changes, so failures leave no half-applied state.
//! - [`endpoint`] — endpoint kinds (`ds/e1-S/C` TDM channels, `rtpbridge/N`), the registry,
//!   connection records.
//! - `events` — RFC 3660 package catalog and the per-endpoint notification state
//!   machine (requested events, actions, digit maps, quarantine).
//! - `sdp` — remote SDP reading (`sdp-types`), codec negotiation, local SDP writing.
//!
//! ## Data flow
//! ```text
//!  UDP 2427 ─▶ Agent (dedup, acks, retransmit) ─▶ Core::execute ─▶ Response ─▶ Agent ─▶ UDP
//!                                                    │  ▲
//!                         DataplaneCmd (crossbeam) ──┘  └── DataplaneEvent (bridge thread)
//!                                                    │
//!                               NTFY (Outgoing) ─▶ Agent::send_command
//! ```
//! ## Threading contract
//! One tokio task owns the socket, the agent and the core (a current-thread runtime is
//! enough). The dataplane workers are separate pinned threads; commands go to them with
//! non-blocking `try_send`, events come back over a bounded channel.

pub mod admin;
mod announce;
mod bridge;
pub mod core;
pub mod endpoint;
mod events;
mod http;
mod sdp;
mod server;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mgw_dataplane::{Dataplane, DataplaneCmd, DataplaneConfig, PortPool, RtpPorts, SourceCheck};
use tokio::sync::mpsc;
use tracing::info;

pub use crate::core::{Core, CoreConfig, MediaPlane};
pub use crate::endpoint::{
    default_endpoints, default_tdm, endpoints_for, EndpointKind, EndpointSpec, Law,
};

/// Most released RTP/RTCP port pairs kept bound for reuse (at most half the range, so
/// that a port rests between calls).
const RECYCLED_PAIRS: usize = 256;

/// How the gateway says goodbye on SIGTERM/SIGINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMethod {
    /// RSIP `RM: forced` at once: connections are dropped.
    Forced,
    /// RSIP `RM: graceful` with `RD:` = the delay; new connections are refused, and at
    /// the delay (or when the last connection goes) RSIP forced follows.
    Graceful(Duration),
}

/// Everything `mgw run` needs.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// MGCP listen address (default 0.0.0.0:2427).
    pub mgcp_bind: SocketAddr,
    /// Call agents: first primary, the rest backups. Commands are accepted only from
    /// their IP addresses.
    pub call_agents: Vec<SocketAddr>,
    /// Our domain name.
    pub domain: String,
    /// Address RTP sockets bind to and SDP advertises; `None` = the address that
    /// reaches the primary call agent.
    pub rtp_bind: Option<IpAddr>,
    /// Address put in SDP `c=` when it differs from the bind address (NAT, or a wildcard
    /// bind); `None` = the bind address, or for a wildcard bind the address that reaches
    /// the primary call agent.
    pub rtp_advertise: Option<IpAddr>,
    /// RTP port range (even ports RTP, odd RTCP).
    pub rtp_ports: (u16, u16),
    /// Endpoints (see [`endpoints_for`]; they must match `tdm`).
    pub endpoints: Vec<EndpointSpec>,
    /// TDM spans run by the dataplane.
    pub tdm: mgw_tdm::TdmConfig,
    /// Transaction-layer timers.
    pub transactions: mgcp::txn::Config,
    /// Dataplane settings.
    pub dataplane: DataplaneConfig,
    /// Shutdown behaviour.
    pub shutdown: ShutdownMethod,
    /// How long to wait for the final RSIP's answer.
    pub leave_timeout: Duration,
    /// Latch RTP to the first source (NAT) instead of the negotiated address only.
    pub rtp_latch: bool,
    /// Packetization period offered by default (ms).
    pub default_ptime: u32,
    /// Admin HTTP server (metrics and JSON API); `None` = off.
    pub http_bind: Option<SocketAddr>,
    /// Call ids whose MGCP and media events are traced from the start.
    pub trace_calls: Vec<String>,
    /// Where plain announcement names (`A/ann(welcome)`) are looked up.
    pub announcement_dir: std::path::PathBuf,
    /// Further sources whose commands are obeyed besides the call agents' addresses.
    pub allow_from: Vec<mgcp::txn::AllowNet>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            mgcp_bind: SocketAddr::from(([0, 0, 0, 0], 2427)),
            call_agents: vec![SocketAddr::from(([127, 0, 0, 1], 2727))],
            domain: "localhost".into(),
            rtp_bind: None,
            rtp_advertise: None,
            rtp_ports: (16384, 32767),
            endpoints: default_endpoints(),
            tdm: default_tdm(),
            transactions: mgcp::txn::Config::default(),
            dataplane: DataplaneConfig::default(),
            shutdown: ShutdownMethod::Forced,
            leave_timeout: Duration::from_secs(3),
            rtp_latch: false,
            default_ptime: 20,
            http_bind: Some(SocketAddr::from(([127, 0, 0, 1], 9427))),
            trace_calls: Vec::new(),
            announcement_dir: "/usr/share/mgw/announcements".into(),
            allow_from: Vec::new(),
        }
    }
}

/// A configuration change applied to a running gateway (SIGHUP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reload {
    /// The new call agents (first primary).
    pub call_agents: Vec<SocketAddr>,
    /// The new extra command sources.
    pub allow_from: Vec<mgcp::txn::AllowNet>,
}

/// Errors that stop the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The MGCP socket could not be bound.
    #[error("cannot bind the MGCP socket {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// The admin HTTP socket could not be bound.
    #[error("cannot bind the admin HTTP socket {addr}: {source} (set --http-bind to another address, or off)")]
    BindHttp {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// The configuration does not hold together.
    #[error("configuration: {0}")]
    Config(String),
    /// The dataplane could not start.
    #[error("dataplane: {0}")]
    Dataplane(io::Error),
}

/// Most dataplane commands [`RealMedia`] holds back between flushes; beyond that a
/// command is refused like one that finds a worker's queue full.
const HELD_COMMANDS: usize = 256;

/// The real media plane: the dataplane workers and the RTP port pool.
///
/// Commands are held back (in order, at most [`HELD_COMMANDS`]) until the server's loop
/// flushes them at the end of a pass: every command wakes its worker, and on a busy core
/// each wake-up is a switch to the worker and back, so a batch of CRCX/DLCX costs one.
pub struct RealMedia {
    dataplane: Dataplane,
    ports: PortPool,
    held: std::collections::VecDeque<DataplaneCmd>,
}

impl RealMedia {
    /// Hands held commands to the workers, in order, until one does not fit.
    fn push_held(&mut self) {
        while let Some(cmd) = self.held.pop_front() {
            if let Err(cmd) = self.dataplane.send(cmd) {
                self.held.push_front(cmd);
                break;
            }
        }
    }
}

impl MediaPlane for RealMedia {
    fn allocate(&mut self) -> io::Result<RtpPorts> {
        self.ports.allocate()
    }

    fn release(&mut self, port: u16) {
        self.ports.release(port);
    }

    fn send(&mut self, cmd: DataplaneCmd) -> Result<(), DataplaneCmd> {
        if self.held.len() >= HELD_COMMANDS {
            self.push_held();
            if self.held.len() >= HELD_COMMANDS {
                return Err(cmd);
            }
        }
        self.held.push_back(cmd);
        Ok(())
    }

    fn flush(&mut self) {
        self.push_held();
    }

    fn backend_name(&self) -> String {
        match self.dataplane.backend() {
            mgw_dataplane::Backend::IoUring => "io_uring".into(),
            mgw_dataplane::Backend::Epoll => "epoll".into(),
        }
    }

    fn worker_count(&self) -> usize {
        self.dataplane.workers()
    }

    fn dropped_events(&self) -> u64 {
        self.dataplane.dropped_events()
    }

    fn ports_in_use(&self) -> usize {
        self.ports.in_use()
    }

    fn worker_stats(&self) -> Vec<mgw_dataplane::WorkerStats> {
        self.dataplane.worker_stats()
    }
}

/// Runs the gateway until `shutdown` completes, then says goodbye (RSIP) and returns.
///
/// `on_ready` is called with the bound MGCP address and the admin HTTP address (when
/// enabled) once the sockets are up.
pub async fn run(
    cfg: GatewayConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(SocketAddr, Option<SocketAddr>),
    reloads: mpsc::Receiver<Reload>,
) -> Result<(), RunError> {
    if cfg.call_agents.is_empty() {
        return Err(RunError::Config("at least one call agent is needed".into()));
    }
    let rtp_ip = match cfg.rtp_bind {
        Some(ip) => ip,
        None if !cfg.mgcp_bind.ip().is_unspecified() => cfg.mgcp_bind.ip(),
        None => server::local_ip_towards(cfg.call_agents[0]).ok_or_else(|| {
            RunError::Config("cannot find a local address; set --rtp-bind".into())
        })?,
    };
    let advertise = match cfg.rtp_advertise {
        Some(ip) => ip,
        None if rtp_ip.is_unspecified() => server::local_ip_towards(cfg.call_agents[0])
            .ok_or_else(|| {
                RunError::Config("cannot find an address to advertise; set --rtp-advertise".into())
            })?,
        None => rtp_ip,
    };
    let mut ports = PortPool::new(rtp_ip, cfg.rtp_ports.0, cfg.rtp_ports.1)
        .map_err(|e| RunError::Config(e.to_string()))?;
    // Reuse released port pairs instead of closing and binding new sockets: most of a
    // CRCX/DLCX pair's system calls otherwise (see `mgw_dataplane::PortPool`).
    ports.set_recycling(RECYCLED_PAIRS.min(ports.capacity() / 2));
    let socket = tokio::net::UdpSocket::bind(cfg.mgcp_bind)
        .await
        .map_err(|source| RunError::Bind {
            addr: cfg.mgcp_bind,
            source,
        })?;
    let local = socket.local_addr().map_err(|source| RunError::Bind {
        addr: cfg.mgcp_bind,
        source,
    })?;
    let mut dp_cfg = cfg.dataplane.clone();
    dp_cfg.tdm = Some(cfg.tdm.clone());
    let dataplane = Dataplane::start(dp_cfg).map_err(RunError::Dataplane)?;
    info!(
        mgcp = %local,
        rtp = %rtp_ip,
        advertised = %advertise,
        ports = ?cfg.rtp_ports,
        backend = ?dataplane.backend(),
        workers = dataplane.workers(),
        endpoints = cfg.endpoints.len(),
        call_agents = ?cfg.call_agents,
        domain = %cfg.domain,
        "mgw running"
    );

    let mut alias_domains = vec![format!("[{}]", local.ip())];
    if !local.ip().is_unspecified() {
        alias_domains.push(local.ip().to_string());
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9)
        ^ u64::from(std::process::id());
    let core = Core::new(
        CoreConfig {
            domain: cfg.domain.clone(),
            alias_domains,
            rtp_addr: advertise,
            default_ptime: cfg.default_ptime,
            source_check: if cfg.rtp_latch {
                SourceCheck::Latch
            } else {
                SourceCheck::Strict
            },
            seed,
            digit_timer_short: Duration::from_secs(4),
            digit_timer_long: Duration::from_secs(16),
            announcement_dir: cfg.announcement_dir.clone(),
        },
        cfg.endpoints.clone(),
        RealMedia {
            dataplane,
            ports,
            held: std::collections::VecDeque::with_capacity(HELD_COMMANDS),
        },
    );
    let mut core = core;
    core.activate_lines();
    for call in &cfg.trace_calls {
        core.trace_call(call, true)
            .map_err(|e| RunError::Config(format!("trace call {call:?}: {e}")))?;
    }
    let mut agent = mgcp::txn::Agent::new(
        cfg.transactions.clone(),
        cfg.domain.clone(),
        cfg.call_agents.clone(),
        seed,
    );
    agent.set_allowed(cfg.allow_from.clone());
    let (admin_tx, admin_rx) = mpsc::channel(64);
    let http = match cfg.http_bind {
        Some(bind) => {
            let (addr, task) = http::serve(bind, admin_tx)
                .await
                .map_err(|source| RunError::BindHttp { addr: bind, source })?;
            info!(%addr, "admin HTTP: /metrics, /api/status, /api/endpoints, /api/connections, /api/calls");
            Some((addr, task))
        }
        None => {
            drop(admin_tx);
            None
        }
    };
    // Dataplane events: taken by the loop, with a doorbell thread for when it sleeps
    // (started last, so that no early return leaves it behind).
    let (dp_events, bridge) =
        bridge::start(core.media().dataplane.events().clone()).map_err(RunError::Dataplane)?;
    on_ready(local, http.as_ref().map(|(a, _)| *a));
    let server = server::Server {
        socket,
        agent,
        core,
        dp_events,
        shutdown_method: cfg.shutdown,
        leave_timeout: cfg.leave_timeout,
        admin: admin_rx,
        cpu_samples: Vec::new(),
        reloads,
        started: std::time::Instant::now(),
        mgcp_addr: local,
        domain: cfg.domain.clone(),
    };
    let core = server.run_to_end(shutdown).await;
    if let Some((_, task)) = http {
        task.abort();
    }
    // Stop the workers, then the bridge (it may be waiting on their channel).
    let mut media = core.into_media();
    media.flush();
    let RealMedia { dataplane, .. } = media;
    dataplane.shutdown();
    bridge.stop();
    info!("mgw stopped");
    Ok(())
}
