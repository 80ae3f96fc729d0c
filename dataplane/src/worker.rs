//! Worker threads: backend choice, pinning, and the command handling both backends
//! share.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use crate::api::{Backend, BackendChoice, DataplaneCmd, DataplaneEvent};
use crate::relay::Relay;
use crate::stats::SharedStats;
use crate::sys::Waker;
use crate::tdm::TdmSlice;

/// Commands handled per loop pass at most (the rest wait for the next pass).
pub const CMDS_PER_PASS: usize = 256;
/// Period of the housekeeping tick (timeouts, RTCP).
pub const TICK: Duration = Duration::from_millis(100);
/// How long a stopping worker waits for outstanding I/O to complete.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(2);

/// What travels on a worker's queue: control-plane commands, and TDM slices handed
/// over ahead of the first command that names one of their channels.
#[derive(Debug)]
pub(crate) enum WorkerMsg {
    /// A command from the control plane.
    Cmd(DataplaneCmd),
    /// Take ownership of (and from now on clock) these TDM channels.
    Adopt(Box<TdmSlice>),
}

/// What a worker thread is given.
pub(crate) struct WorkerCtx {
    pub(crate) index: usize,
    pub(crate) rx: Receiver<WorkerMsg>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) events: Sender<DataplaneEvent>,
    pub(crate) dropped_events: Arc<AtomicU64>,
    /// Where this worker publishes its statistics.
    pub(crate) stats: Arc<SharedStats>,
    /// When the worker was created (the origin of [`crate::WorkerStats::wall_ns`]).
    pub(crate) started: Instant,
    /// Tone plan of the TDM channel engines.
    pub(crate) tone_set: mgw_media::tone::ToneSet,
    /// Codec options and jitter-buffer bounds for TDM connections.
    pub(crate) media: (
        mgw_media::codec::CodecConfig,
        mgw_media::engine::JitterSettings,
    ),
}

impl WorkerCtx {
    pub(crate) fn relay(&self) -> Relay {
        let mut r = Relay::new(
            self.events.clone(),
            Arc::clone(&self.dropped_events),
            Instant::now(),
            SystemTime::now(),
        );
        r.tdm.set_tone_set(self.tone_set);
        r.tdm.set_media_options(self.media.0, self.media.1);
        r
    }

    /// Publishes the relay's counters, the connection count and this thread's CPU
    /// time. Call from the worker thread, once per tick (and when stopping).
    pub(crate) fn publish(&self, relay: &Relay) {
        let cpu = crate::sys::thread_cpu_ns();
        let wall = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats
            .publish(&relay.counts, &relay.tdm.counts, relay.len(), cpu, wall);
    }

    /// Publishes the TDM frame count (after each frame pass; see `WorkerStats::tdm_frames`).
    pub(crate) fn publish_frames(&self, relay: &Relay) {
        self.stats.publish_frames(relay.tdm.counts.frames);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Takes up to [`CMDS_PER_PASS`] commands; returns whether more are waiting.
    pub(crate) fn drain(&self, mut f: impl FnMut(WorkerMsg)) -> bool {
        for _ in 0..CMDS_PER_PASS {
            match self.rx.try_recv() {
                Ok(cmd) => f(cmd),
                Err(_) => return false,
            }
        }
        !self.rx.is_empty()
    }
}

/// Resolves [`BackendChoice`]: `Auto` probes io_uring and falls back to epoll.
pub(crate) fn choose_backend(choice: BackendChoice) -> io::Result<Backend> {
    match choice {
        BackendChoice::Epoll => Ok(Backend::Epoll),
        BackendChoice::IoUring => crate::uring::probe().map(|()| Backend::IoUring),
        BackendChoice::Auto => match crate::uring::probe() {
            Ok(()) => Ok(Backend::IoUring),
            Err(e) => {
                tracing::info!(error = %e, "io_uring unavailable, using epoll");
                Ok(Backend::Epoll)
            }
        },
    }
}

/// Thread body: pin, build the backend, report readiness, run until stopped.
pub(crate) fn run(
    ctx: WorkerCtx,
    backend: Backend,
    core: Option<core_affinity::CoreId>,
    ready: Sender<io::Result<()>>,
) {
    if let Some(core) = core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(worker = ctx.index, core = core.id, "could not pin worker");
        }
    }
    let result = match backend {
        Backend::IoUring => crate::uring::UringWorker::new(ctx).map(|w| Runner::Uring(Box::new(w))),
        Backend::Epoll => crate::epoll::EpollWorker::new(ctx).map(|w| Runner::Epoll(Box::new(w))),
    };
    match result {
        Ok(runner) => {
            let _ = ready.send(Ok(()));
            let r = match runner {
                Runner::Uring(w) => w.run(),
                Runner::Epoll(w) => w.run(),
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "dataplane worker failed");
            }
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

enum Runner {
    Uring(Box<crate::uring::UringWorker>),
    Epoll(Box<crate::epoll::EpollWorker>),
}
