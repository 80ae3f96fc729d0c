//! Per-worker statistics for the metrics endpoint.
//!
//! Each worker counts into plain worker-local integers (`WorkerCounts`, owned by its
//! [`crate::relay::Relay`]) on the packet path, and publishes them once per tick (and
//! when it stops) into its own cache-line aligned block of atomics (`SharedStats`)
//! with relaxed stores. The block has exactly one writer; [`crate::Dataplane::worker_stats`]
//! reads every block into plain [`WorkerStats`] snapshots. The worker's CPU time is read
//! with `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` on the same tick, together with the
//! wall time since the worker started, so a reader computes load as Δcpu / Δwall.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::tdm::TdmCounts;

/// Dropped datagrams by reason. Every drop is counted under exactly one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// RTP/RTCP from a source the connection does not accept. Per worker this is the
    /// sum of its connections' [`crate::ConnCounters::dropped_source`] (live and removed).
    pub source_check: u64,
    /// RTP the connection's mode (or the lack of a destination) does not let through,
    /// and datagrams for a connection being removed. Per worker: the sum of its
    /// connections' [`crate::ConnCounters::dropped_mode`].
    pub mode: u64,
    /// Malformed or truncated datagrams, unknown payload types, payload types the
    /// destination did not negotiate. Per worker: the sum of its connections'
    /// [`crate::ConnCounters::dropped_invalid`] plus datagrams with no connection.
    pub invalid: u64,
    /// A send failed with `ENOBUFS`/`EAGAIN` (an empty io_uring buffer ring on receive
    /// is not a drop: see [`WorkerStats::rx_ring_empty`]).
    pub no_buffer: u64,
    /// A send could not be queued: all io_uring copy slots (fan-out copies, TDM, RTCP)
    /// still in flight after the queued sends were reaped, the submission queue full,
    /// or a fan-out beyond [`crate::relay::MAX_FANOUT`].
    pub send_queue_full: u64,
    /// A send failed with any other error.
    pub send_error: u64,
}

impl DropCounts {
    /// All reasons together.
    pub fn total(&self) -> u64 {
        self.source_check
            .wrapping_add(self.mode)
            .wrapping_add(self.invalid)
            .wrapping_add(self.no_buffer)
            .wrapping_add(self.send_queue_full)
            .wrapping_add(self.send_error)
    }
}

/// A snapshot of one worker's statistics (see [`crate::Dataplane::worker_stats`]).
/// Counters are monotonic for the life of the dataplane; values are as of the
/// worker's last tick (at most ~100 ms old).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Worker index (`0..Dataplane::workers()`).
    pub worker: usize,
    /// Datagrams received on RTP and RTCP sockets (before any check).
    pub rx_packets: u64,
    /// Bytes of those datagrams (UDP payload, RTP header included).
    pub rx_bytes: u64,
    /// Datagrams the kernel accepted for sending (RTP relayed or echoed, RTCP reports).
    pub tx_packets: u64,
    /// Bytes of those datagrams.
    pub tx_bytes: u64,
    /// Of `rx_packets`, those received on RTCP sockets.
    pub rtcp_rx_packets: u64,
    /// Of `tx_packets`, RTCP reports.
    pub rtcp_tx_packets: u64,
    /// io_uring receives that found the provided-buffer ring empty (`ENOBUFS`). Not a
    /// drop: the datagram waits in the socket and is read when the receive is re-armed
    /// (the kernel drops it only if the socket buffer overflows meanwhile).
    pub rx_ring_empty: u64,
    /// Drops by reason.
    pub drops: DropCounts,
    /// Connections on this worker (including ones being removed).
    pub connections: u64,
    /// Control-plane commands handled.
    pub commands: u64,
    /// Passes of the run loop.
    pub loop_passes: u64,
    /// CPU time of the worker thread (`CLOCK_THREAD_CPUTIME_ID`), nanoseconds.
    pub cpu_ns: u64,
    /// Wall time since the worker started, nanoseconds, read together with `cpu_ns`:
    /// load = Δ`cpu_ns` / Δ`wall_ns` between two snapshots.
    pub wall_ns: u64,
    /// TDM channels this worker runs.
    pub tdm_channels: u64,
    /// TDM frames run (published after every frame pass, not only on the tick).
    pub tdm_frames: u64,
    /// TDM frames skipped because the worker fell too far behind the frame clock.
    pub tdm_frames_skipped: u64,
    /// TDM connections left inactive: channel not run by this worker, or media the
    /// channel engine cannot handle (unsupported codec, ptime, payload types); also
    /// signals for channels not run here.
    pub tdm_setup_errors: u64,
    /// TDM channel read/write errors.
    pub tdm_io_errors: u64,
}

/// Worker-local counters: plain integers on the packet path, published on the tick.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WorkerCounts {
    pub(crate) rx_packets: u64,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_packets: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) rtcp_rx_packets: u64,
    pub(crate) rtcp_tx_packets: u64,
    pub(crate) rx_ring_empty: u64,
    pub(crate) drops: DropCounts,
    pub(crate) commands: u64,
    pub(crate) loop_passes: u64,
}

impl WorkerCounts {
    /// One datagram received (`rtcp`: on an RTCP socket).
    pub(crate) fn received(&mut self, bytes: usize, rtcp: bool) {
        self.rx_packets = self.rx_packets.wrapping_add(1);
        self.rx_bytes = self.rx_bytes.wrapping_add(bytes as u64);
        if rtcp {
            self.rtcp_rx_packets = self.rtcp_rx_packets.wrapping_add(1);
        }
    }

    /// One datagram sent (`rtcp`: an RTCP report).
    pub(crate) fn sent(&mut self, bytes: usize, rtcp: bool) {
        self.tx_packets = self.tx_packets.wrapping_add(1);
        self.tx_bytes = self.tx_bytes.wrapping_add(bytes as u64);
        if rtcp {
            self.rtcp_tx_packets = self.rtcp_tx_packets.wrapping_add(1);
        }
    }

    /// A send that failed with `errno`: `ENOBUFS`/`EAGAIN` count as `no_buffer`,
    /// anything else as `send_error`.
    pub(crate) fn send_failed(&mut self, errno: i32) {
        if errno == libc::ENOBUFS || errno == libc::EAGAIN || errno == libc::EWOULDBLOCK {
            self.drops.no_buffer = self.drops.no_buffer.wrapping_add(1);
        } else {
            self.drops.send_error = self.drops.send_error.wrapping_add(1);
        }
    }

    /// A send that could not be queued.
    pub(crate) fn send_queue_full(&mut self) {
        self.drops.send_queue_full = self.drops.send_queue_full.wrapping_add(1);
    }
}

/// The published copy: one writer (the worker), any readers. Aligned to 128 bytes so
/// workers' blocks never share a cache line (or an adjacent-line prefetch pair).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct SharedStats {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rtcp_rx_packets: AtomicU64,
    rtcp_tx_packets: AtomicU64,
    rx_ring_empty: AtomicU64,
    source_check: AtomicU64,
    mode: AtomicU64,
    invalid: AtomicU64,
    no_buffer: AtomicU64,
    send_queue_full: AtomicU64,
    send_error: AtomicU64,
    connections: AtomicU64,
    commands: AtomicU64,
    loop_passes: AtomicU64,
    cpu_ns: AtomicU64,
    wall_ns: AtomicU64,
    tdm_channels: AtomicU64,
    tdm_frames: AtomicU64,
    tdm_frames_skipped: AtomicU64,
    tdm_setup_errors: AtomicU64,
    tdm_io_errors: AtomicU64,
}

impl SharedStats {
    /// Publishes the worker's counters (called by the owning worker only).
    pub(crate) fn publish(
        &self,
        c: &WorkerCounts,
        tdm: &TdmCounts,
        connections: usize,
        cpu_ns: u64,
        wall_ns: u64,
    ) {
        let w = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        w(&self.tdm_channels, tdm.channels);
        w(&self.tdm_frames_skipped, tdm.skipped);
        w(&self.tdm_setup_errors, tdm.setup_errors);
        w(&self.tdm_io_errors, tdm.io_errors);
        self.publish_frames(tdm.frames);
        w(&self.rx_packets, c.rx_packets);
        w(&self.rx_bytes, c.rx_bytes);
        w(&self.tx_packets, c.tx_packets);
        w(&self.tx_bytes, c.tx_bytes);
        w(&self.rtcp_rx_packets, c.rtcp_rx_packets);
        w(&self.rtcp_tx_packets, c.rtcp_tx_packets);
        w(&self.rx_ring_empty, c.rx_ring_empty);
        w(&self.source_check, c.drops.source_check);
        w(&self.mode, c.drops.mode);
        w(&self.invalid, c.drops.invalid);
        w(&self.no_buffer, c.drops.no_buffer);
        w(&self.send_queue_full, c.drops.send_queue_full);
        w(&self.send_error, c.drops.send_error);
        w(&self.connections, connections as u64);
        w(&self.commands, c.commands);
        w(&self.loop_passes, c.loop_passes);
        w(&self.cpu_ns, cpu_ns);
        w(&self.wall_ns, wall_ns);
    }

    /// Publishes the TDM frame count (after every frame pass).
    pub(crate) fn publish_frames(&self, frames: u64) {
        self.tdm_frames.store(frames, Ordering::Relaxed);
    }

    /// A plain copy (each field read once, relaxed).
    pub(crate) fn snapshot(&self, worker: usize) -> WorkerStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerStats {
            worker,
            rx_packets: r(&self.rx_packets),
            rx_bytes: r(&self.rx_bytes),
            tx_packets: r(&self.tx_packets),
            tx_bytes: r(&self.tx_bytes),
            rtcp_rx_packets: r(&self.rtcp_rx_packets),
            rtcp_tx_packets: r(&self.rtcp_tx_packets),
            rx_ring_empty: r(&self.rx_ring_empty),
            drops: DropCounts {
                source_check: r(&self.source_check),
                mode: r(&self.mode),
                invalid: r(&self.invalid),
                no_buffer: r(&self.no_buffer),
                send_queue_full: r(&self.send_queue_full),
                send_error: r(&self.send_error),
            },
            connections: r(&self.connections),
            commands: r(&self.commands),
            loop_passes: r(&self.loop_passes),
            cpu_ns: r(&self.cpu_ns),
            wall_ns: r(&self.wall_ns),
            tdm_channels: r(&self.tdm_channels),
            tdm_frames: r(&self.tdm_frames),
            tdm_frames_skipped: r(&self.tdm_frames_skipped),
            tdm_setup_errors: r(&self.tdm_setup_errors),
            tdm_io_errors: r(&self.tdm_io_errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_snapshot() {
        assert_eq!(std::mem::align_of::<SharedStats>(), 128);
        let mut c = WorkerCounts::default();
        c.received(100, false);
        c.received(60, true);
        c.sent(100, false);
        c.send_failed(libc::ENOBUFS);
        c.send_failed(libc::EAGAIN);
        c.send_failed(libc::ECONNREFUSED);
        c.send_queue_full();
        c.drops.mode += 1;
        c.commands = 3;
        c.loop_passes = 9;
        let s = SharedStats::default();
        let tdm = TdmCounts {
            frames: 50,
            skipped: 1,
            channels: 2,
            setup_errors: 3,
            io_errors: 4,
        };
        s.publish(&c, &tdm, 2, 5_000, 10_000);
        let snap = s.snapshot(1);
        assert_eq!(
            (
                snap.tdm_frames,
                snap.tdm_frames_skipped,
                snap.tdm_channels,
                snap.tdm_setup_errors,
                snap.tdm_io_errors
            ),
            (50, 1, 2, 3, 4)
        );
        s.publish_frames(51);
        assert_eq!(s.snapshot(1).tdm_frames, 51);
        assert_eq!(
            (
                snap.worker,
                snap.rx_packets,
                snap.rx_bytes,
                snap.rtcp_rx_packets
            ),
            (1, 2, 160, 1)
        );
        assert_eq!(
            (snap.tx_packets, snap.tx_bytes, snap.rtcp_tx_packets),
            (1, 100, 0)
        );
        assert_eq!(
            snap.drops,
            DropCounts {
                source_check: 0,
                mode: 1,
                invalid: 0,
                no_buffer: 2,
                send_queue_full: 1,
                send_error: 1,
            }
        );
        assert_eq!(snap.drops.total(), 5);
        assert_eq!(
            (
                snap.connections,
                snap.commands,
                snap.loop_passes,
                snap.cpu_ns,
                snap.wall_ns
            ),
            (2, 3, 9, 5_000, 10_000)
        );
    }
}
