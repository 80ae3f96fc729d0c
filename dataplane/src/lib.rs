//! # mgw-dataplane — pinned workers relaying RTP and running TDM channels
//!
//! ## What this crate owns
//! The media sockets (handed over in [`ConnSpec`]), one I/O ring (or epoll instance) per
//! worker thread, all per-connection media state (source checks, RTP header rewriting,
//! RFC 3550 receive statistics, periodic RTCP reports) and, when
//! [`DataplaneConfig::tdm`] is set, the TDM channels (`mgw_tdm`) with one media engine
//! (`mgw_media::engine::ChannelEngine`) per channel, transcoding between the line and the
//! channel's RTP connections. It knows nothing of MGCP; the control plane talks to it only
//! through the owned messages in [`api`].
//!
//! ## Threading contract
//! [`Dataplane::start`] spawns N workers (default: one per core in the process's
//! affinity mask, each pinned when [`DataplaneConfig::pin`]). A connection lives on
//! worker `group % N`, so every leg of a group is on one thread and a packet is relayed
//! without locks. Control → worker: a bounded crossbeam channel per worker plus an
//! eventfd wake (an atomic flag skips redundant wakes); [`Dataplane::send`] never
//! blocks and hands the command back when the queue is full. Worker → control: one
//! bounded event channel, written with `try_send` only; events that do not fit are
//! counted ([`Dataplane::dropped_events`]) and dropped. The only shared memory is
//! [`ConnCounters`] and each worker's statistics block ([`Dataplane::worker_stats`]):
//! relaxed atomic stores by the owning worker, reads by anyone.
//!
//! ## The run loop (per worker)
//! 1. drain at most [`worker::CMDS_PER_PASS`] commands (Add/Modify/Remove/Signal, and
//!    TDM slices handed over);
//! 2. run the 100 ms tick when due (RTP timeouts, RTCP reports every ~5 s, randomised);
//! 3. run the TDM frames due (if the worker owns channels): per frame, every owned channel
//!    is read, ticked through its engine and written, then the crossover buses tick; the
//!    RTP packets the engines produce are sent from their connections' sockets;
//! 4. io_uring: push submissions (re-arms, sends), one `io_uring_enter` that submits and
//!    waits (bounded by the next tick or TDM frame through the timeout argument; while
//!    traffic flows it waits for a batch of completions with a 50 µs minimum wait, so a
//!    busy worker wakes once per batch, not once per datagram), then drain the whole
//!    completion queue, dispatching on `user_data` (slot, socket kind, op; the eventfd
//!    has a reserved value). Forwarded datagrams are sent in place from the provided
//!    buffer they arrived in; send slots never run out on that path. epoll: `epoll_wait`
//!    (its timeout bounded by the next tick or frame deadline, rounded up to the
//!    millisecond), then `recvmmsg` per readable socket and `sendmmsg` per destination
//!    socket.
//!
//! The per-packet decision ([`relay::Relay::on_rtp`]) is backend independent and does
//! not allocate: parse, source check, payload-type mapping, statistics, mode rules, and
//! for each destination the rewritten header (its own SSRC, re-based sequence number and
//! timestamp so the far end sees one stream). A removed connection's outstanding ring
//! operations are cancelled and its slot is reused only after their completions arrive;
//! its sockets are closed before [`DataplaneEvent::Removed`] is sent.
//!
//! ## TDM channels
//! A connection with [`ConnSpec::channel`] terminates on that channel instead of being
//! relayed: it joins no relay group; a received packet passes the same source check and
//! statistics and then goes to the channel's engine (`on_rtp`) — the only cost on the
//! relay path is one branch on the connection. Its codec comes from
//! [`ConnSpec::payloads`] (first entry that is not telephone-event or CN; telephone-event
//! and CN payload types when present), [`ConnSpec::fmtp`], [`ConnSpec::ptime_ms`] and
//! [`ConnSpec::dtmf`]; a codec the engine cannot run leaves the connection inactive
//! (logged, counted in [`WorkerStats::tdm_setup_errors`], its packets dropped as `mode`).
//! Engine packets update the connection's [`ConnCounters`] and RTCP sender state and are
//! sent from its RTP socket (with its source address), through a reused batch buffer.
//! [`DataplaneCmd::Signal`] plays digits or a tone toward the line; the engines' digit and
//! signal-done events become [`DataplaneEvent::Digit`] and [`DataplaneEvent::SignalDone`].
//!
//! Placement: the configuration is cut at start into *slices* (channel index k of a lone
//! span, or of both spans of a crossover pair), each opened once. The first command that
//! names a channel hands its slice to the worker that command is routed to (ahead of the
//! command, on the same queue); the slice stays there. Both channels of a pair must
//! therefore be given the same group by the control plane (`ds/e1-1/N` and `ds/e1-2/N`:
//! group `1000 + N`). Every channel of an owned slice has an engine, so digits are
//! detected on a line before it has a connection. A worker's frames follow a drift-free
//! `mgw_tdm::FrameClock` started at its first slice ([`WorkerStats::tdm_frames`]).
//!
//! ## Local addresses on wildcard binds
//! A [`PortPool`] on `0.0.0.0`/`::` enables `IP_PKTINFO`/`IPV6_RECVPKTINFO`. Both
//! backends read the control data of every datagram (io_uring: the multishot `msghdr`
//! template reserves `msg_controllen` bytes, so the control data sits in each provided
//! buffer between the source address and the payload; epoll: one control buffer per
//! `recvmmsg` slot). An *accepted* datagram records its destination address per
//! connection (`local_ip`, RTP and RTCP separately; forgotten when the remote's address
//! changes), and every send towards that connection's remote carries an `IP_PKTINFO`
//! (`ipi_spec_dst`) or `IPV6_PKTINFO` (`ipi6_addr`) control message naming it, so the
//! remote hears from the address it talks to. The control-message bytes live in the
//! send slot (io_uring) or the send queue (epoll) until the send completes; nothing is
//! allocated per packet. Until the remote has spoken, the kernel chooses the source.
//!
//! ## Statistics and drop accounting
//! [`Dataplane::worker_stats`] returns a [`WorkerStats`] per worker: datagrams and bytes
//! received and sent (RTCP shown separately), drops by reason ([`DropCounts`]: source
//! check, mode, invalid, no buffer, send queue full, send error), live connections,
//! commands handled, loop passes, and the worker thread's CPU time with the wall time
//! since it started (load = Δcpu / Δwall). On the packet path a worker counts into plain
//! worker-local integers; once per tick (and when stopping) it reads
//! `CLOCK_THREAD_CPUTIME_ID` and publishes everything with relaxed stores into its own
//! 128-byte aligned block of atomics ([`stats`]), which only it writes.
//!
//! Every dropped datagram is counted under exactly one reason. Where a connection is
//! known (source check, mode, invalid — RTP and RTCP alike, including datagrams for a
//! connection being removed) its [`ConnCounters`] field is incremented; the worker keeps
//! the same three reasons as running totals (so they survive connection removal and
//! equal the sums of its connections' counters, plus datagrams that found no
//! connection). Send-side failures (`no_buffer` for `ENOBUFS`/`EAGAIN`, `send_queue_full` when every io_uring copy slot is still in
//! flight after the queued sends were submitted and reaped, `send_error` otherwise) are counted per worker only. Events to the control plane are
//! only ever sent with `try_send`; those that do not fit are counted in
//! [`Dataplane::dropped_events`].

#![warn(missing_docs)]

pub mod api;
mod epoll;
pub mod ports;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod stats;
mod sys;
mod tdm;
mod uring;
pub mod worker;

pub use api::*;
pub use ports::{PortPool, PortRangeError, RtpPorts};
pub use stats::{DropCounts, WorkerStats};

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::sys::Waker;
use crate::tdm::{Placement, TdmPool};
use crate::worker::WorkerMsg;

struct WorkerHandle {
    tx: Sender<WorkerMsg>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    stats: Arc<stats::SharedStats>,
    join: Option<JoinHandle<()>>,
}

/// The running dataplane: N worker threads and the channels to them.
pub struct Dataplane {
    workers: Vec<WorkerHandle>,
    events: Receiver<DataplaneEvent>,
    dropped_events: Arc<AtomicU64>,
    backend: Backend,
    /// TDM slices not yet handed to a worker, and where the others went. Locked only by
    /// [`Dataplane::send`] for commands that name a channel; workers never see it.
    tdm: Option<Mutex<TdmPool>>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("workers", &self.workers.len())
            .field("backend", &self.backend)
            .finish()
    }
}

fn cmd_group(cmd: &DataplaneCmd) -> GroupId {
    match cmd {
        DataplaneCmd::Add(spec) => spec.group,
        DataplaneCmd::Modify { group, .. }
        | DataplaneCmd::Remove { group, .. }
        | DataplaneCmd::Signal { group, .. } => *group,
    }
}

/// The TDM channel a command names, if any.
fn cmd_channel(cmd: &DataplaneCmd) -> Option<&str> {
    match cmd {
        DataplaneCmd::Add(spec) => spec.channel.as_deref(),
        DataplaneCmd::Signal { channel, .. } => Some(channel),
        DataplaneCmd::Modify { .. } | DataplaneCmd::Remove { .. } => None,
    }
}

impl Dataplane {
    /// Chooses the backend, spawns (and optionally pins) the workers and waits until each
    /// has set up its ring or epoll instance.
    pub fn start(config: DataplaneConfig) -> io::Result<Dataplane> {
        let backend = worker::choose_backend(config.backend)?;
        match Self::start_with(&config, backend) {
            // `auto` also falls back when the probe passed but the real rings could not be
            // set up (e.g. ENOMEM from a low RLIMIT_MEMLOCK for the buffer rings).
            Err(e) if config.backend == BackendChoice::Auto && backend == Backend::IoUring => {
                tracing::warn!(error = %e, "io_uring workers failed to start; falling back to epoll");
                Self::start_with(&config, Backend::Epoll)
            }
            r => r,
        }
    }

    fn start_with(config: &DataplaneConfig, backend: Backend) -> io::Result<Dataplane> {
        let tone_set = tdm::tone_set(&config.tone_set).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "unknown tone set {:?} (etsi, north-america)",
                    config.tone_set
                ),
            )
        })?;
        let tdm = match &config.tdm {
            Some(cfg) => {
                let slices = tdm::build_slices(cfg)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                Some(Mutex::new(TdmPool::new(slices)))
            }
            None => None,
        };
        let cores = if config.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let n = config
            .workers
            .unwrap_or_else(|| {
                if cores.is_empty() {
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                } else {
                    cores.len()
                }
            })
            .max(1);
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(config.event_capacity.max(1));
        let dropped_events = Arc::new(AtomicU64::new(0));
        let mut dp = Dataplane {
            workers: Vec::with_capacity(n),
            events: ev_rx,
            dropped_events,
            backend,
            tdm,
        };
        let mut pinned = 0;
        for index in 0..n {
            let (tx, rx) = crossbeam_channel::bounded(config.cmd_capacity.max(1));
            let waker = Arc::new(Waker::new()?);
            let stop = Arc::new(AtomicBool::new(false));
            let stats = Arc::new(stats::SharedStats::default());
            let core = cores.get(index % cores.len().max(1)).copied();
            if core.is_some() {
                pinned += 1;
            }
            let ctx = worker::WorkerCtx {
                index,
                rx,
                waker: Arc::clone(&waker),
                stop: Arc::clone(&stop),
                events: ev_tx.clone(),
                dropped_events: Arc::clone(&dp.dropped_events),
                stats: Arc::clone(&stats),
                started: std::time::Instant::now(),
                tone_set,
                media: (config.codec, config.jitter),
            };
            let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
            let join = std::thread::Builder::new()
                .name(format!("mgw-dp-{index}"))
                .spawn(move || worker::run(ctx, backend, core, ready_tx))?;
            dp.workers.push(WorkerHandle {
                tx,
                waker,
                stop,
                stats,
                join: Some(join),
            });
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e), // Drop stops the workers started so far
                Err(_) => return Err(io::Error::other("dataplane worker died during start-up")),
            }
        }
        tracing::info!(?backend, workers = n, pinned, "dataplane started");
        Ok(dp)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Queues a command for the worker owning its group (`group % workers`) and wakes
    /// it. Never blocks: gives the command back when that worker's queue is full.
    ///
    /// The first command naming a TDM channel (an `Add` with [`ConnSpec::channel`], or a
    /// `Signal`) first hands that channel's slice (the channel and its crossover partner)
    /// to the same worker, which runs it from then on (see the crate docs).
    pub fn send(&self, cmd: DataplaneCmd) -> Result<(), DataplaneCmd> {
        let n = self.workers.len().max(1);
        let idx = cmd_group(&cmd).0 as usize % n;
        let Some(w) = self.workers.get(idx) else {
            return Err(cmd);
        };
        if let (Some(pool), Some(channel)) = (&self.tdm, cmd_channel(&cmd)) {
            let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
            match pool.place(channel, idx) {
                Placement::Adopt(i, slice) => {
                    if let Err(e) = w.tx.try_send(WorkerMsg::Adopt(slice)) {
                        if let WorkerMsg::Adopt(slice) = e.into_inner() {
                            pool.unplace(i, slice);
                        }
                        return Err(cmd);
                    }
                    w.waker.wake();
                }
                Placement::Elsewhere(other) => tracing::warn!(
                    %channel,
                    worker = idx,
                    runs_on = other,
                    "command for a TDM channel routed to another worker than its slice \
                     (give both channels of a crossover pair the same group)"
                ),
                Placement::Placed | Placement::Unknown => {}
            }
        }
        match w.tx.try_send(WorkerMsg::Cmd(cmd)) {
            Ok(()) => {
                w.waker.wake();
                Ok(())
            }
            Err(e) => match e.into_inner() {
                WorkerMsg::Cmd(c) => Err(c),
                // Not reachable: a command was sent.
                WorkerMsg::Adopt(_) => Ok(()),
            },
        }
    }

    /// Events from all workers.
    pub fn events(&self) -> &Receiver<DataplaneEvent> {
        &self.events
    }

    /// Events dropped because the event channel was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events.load(Ordering::Relaxed)
    }

    /// A snapshot of every worker's statistics, in worker order (see [`WorkerStats`]:
    /// values as of each worker's last ~100 ms tick). Lock-free: relaxed loads of
    /// atomics only the owning worker writes.
    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| w.stats.snapshot(i))
            .collect()
    }

    /// Stops and joins the workers (their connections are closed).
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for w in &self.workers {
            w.stop.store(true, Ordering::Release);
            w.waker.force_wake();
        }
        for w in &mut self.workers {
            if let Some(j) = w.join.take() {
                if j.join().is_err() {
                    tracing::error!("dataplane worker panicked");
                }
            }
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop_all();
    }
}
