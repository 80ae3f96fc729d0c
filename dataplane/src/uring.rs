//! The io_uring backend: one ring per worker (SINGLE_ISSUER + DEFER_TASKRUN when the
//! kernel has them), a provided buffer ring, multishot `RecvMsgMulti` per socket,
//! `SendMsg` from a fixed pool of send slots, an eventfd read and a timeout as wake-ups.
//!
//! Memory named in a submission stays alive until its completion: the buffer ring, the
//! shared receive `msghdr`, the send pool and the eventfd buffer are boxed (never moved)
//! and live as long as the worker; a received buffer that is sent in place goes back to
//! the buffer ring only when the send completes.
//!
//! Local addresses: the multishot `msghdr` template asks for [`CMSG_BUF`] bytes of
//! control data, so every provided buffer holds `io_uring_recvmsg_out`, the source
//! address, the control data (`IP_PKTINFO`/`IPV6_PKTINFO` on wildcard binds) and then
//! the payload. Each send slot owns a control buffer, filled with a pktinfo message
//! when the connection's local address is known, alive until the send completes.
#![allow(unsafe_code)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Instant;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use socket2::SockAddr;

use crate::api::{ConnKey, DataplaneCmd};
use crate::relay::{Fanout, Relay};
use crate::rtp::write_header;
use crate::sys::{encode_pktinfo, parse_pktinfo, sockaddr_from_bytes, CmsgBuf, CMSG_BUF};
use crate::tdm::TxBatch;
use crate::worker::{WorkerCtx, WorkerMsg, STOP_GRACE, TICK};

const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 8192;
/// Provided receive buffers (power of two) and their size.
const RING_BUFS: u16 = 2048;
const BUF_SIZE: usize = 2048;
const BGID: u16 = 0;
/// Send slots (in-flight sends per worker).
const SEND_SLOTS: usize = 1024;

const KIND_SHIFT: u32 = 56;
const K_RECV_RTP: u64 = 1;
const K_RECV_RTCP: u64 = 2;
const K_SEND: u64 = 3;
const K_CANCEL: u64 = 4;
/// Reserved `user_data`: the eventfd read.
const UD_WAKE: u64 = 5 << KIND_SHIFT;
/// Reserved `user_data`: the tick timeout.
const UD_TIMER: u64 = 6 << KIND_SHIFT;

fn ud(kind: u64, idx: usize) -> u64 {
    (kind << KIND_SHIFT) | (idx as u64 & ((1 << KIND_SHIFT) - 1))
}

/// Checks that a ring can be created here (EPERM under seccomp, ENOSYS on old kernels).
pub(crate) fn probe() -> io::Result<()> {
    IoUring::new(8).map(drop)
}

fn build_ring() -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun();
    match b.build(SQ_ENTRIES) {
        Ok(r) => Ok(r),
        Err(e) => {
            tracing::debug!(error = %e, "SINGLE_ISSUER/DEFER_TASKRUN unavailable, plain ring");
            IoUring::builder()
                .setup_cqsize(CQ_ENTRIES)
                .build(SQ_ENTRIES)
        }
    }
}

/// The provided-buffer ring and its buffers.
struct BufRing {
    entries: *mut types::BufRingEntry,
    entries_layout: Layout,
    data: *mut u8,
    data_layout: Layout,
    tail: u16,
}

impl BufRing {
    fn new() -> io::Result<BufRing> {
        let n = usize::from(RING_BUFS);
        let entries_layout =
            Layout::from_size_align(n * std::mem::size_of::<types::BufRingEntry>(), 4096)
                .map_err(io::Error::other)?;
        let data_layout = Layout::from_size_align(n * BUF_SIZE, 64).map_err(io::Error::other)?;
        // SAFETY: both layouts have non-zero size.
        let entries = unsafe { alloc_zeroed(entries_layout) }.cast::<types::BufRingEntry>();
        // SAFETY: as above.
        let data = unsafe { alloc_zeroed(data_layout) };
        if entries.is_null() || data.is_null() {
            // SAFETY: only non-null pointers from the allocations above are freed.
            unsafe {
                if !entries.is_null() {
                    dealloc(entries.cast(), entries_layout);
                }
                if !data.is_null() {
                    dealloc(data, data_layout);
                }
            }
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut r = BufRing {
            entries,
            entries_layout,
            data,
            data_layout,
            tail: 0,
        };
        for bid in 0..RING_BUFS {
            r.recycle(bid);
        }
        r.publish();
        Ok(r)
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        // SAFETY: bid < RING_BUFS, so the offset stays inside the data allocation.
        unsafe { self.data.add(usize::from(bid % RING_BUFS) * BUF_SIZE) }
    }

    /// Queues buffer `bid` for the kernel again (visible after `publish`).
    fn recycle(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (RING_BUFS - 1));
        // SAFETY: idx < RING_BUFS; the kernel only reads entries below the published tail,
        // and this one is at or past it, so we have exclusive access.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(self.buf_ptr(bid) as u64);
        e.set_len(BUF_SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: `entries` is the page-aligned base of the ring; its tail field is a u16
        // the kernel reads concurrently, hence the atomic release store.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the ring that used them is gone
        // (it is declared before this field in `UringWorker`, so dropped first).
        unsafe {
            dealloc(self.entries.cast(), self.entries_layout);
            dealloc(self.data, self.data_layout);
        }
    }
}

/// One in-flight send: everything the kernel reads until the completion.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: SockAddr,
    /// Receive buffer sent in place (returned to the ring on completion).
    bid: Option<u16>,
    /// Connection whose socket sends.
    conn: usize,
    /// An RTCP report (for the statistics).
    rtcp: bool,
    /// `IP_PKTINFO`/`IPV6_PKTINFO` naming the source address, when known.
    ctrl: CmsgBuf,
    buf: [u8; BUF_SIZE],
}

#[derive(Clone, Copy, Debug, Default)]
struct SlotOps {
    /// Multishot receive armed on [RTP, RTCP].
    armed: [bool; 2],
    /// The multishot ended and must be re-armed.
    rearm: [bool; 2],
    sends: u32,
}

/// One io_uring worker. Field order matters: the ring is dropped before the memory it
/// refers to.
pub(crate) struct UringWorker {
    ring: IoUring,
    bufs: BufRing,
    recv_hdr: Box<libc::msghdr>,
    sends: Box<[SendSlot]>,
    free_sends: Vec<usize>,
    wake_buf: Box<u64>,
    timer: Box<types::Timespec>,
    wake_armed: bool,
    timer_armed: bool,
    ops: Vec<SlotOps>,
    rearm_list: Vec<usize>,
    cqes: Vec<(u64, i32, u32)>,
    fanout: Fanout,
    /// RTP packets of the last TDM frame pass.
    tdm_tx: TxBatch,
    relay: Relay,
    ctx: WorkerCtx,
    next_tick: Instant,
    stop_deadline: Option<Instant>,
}

impl UringWorker {
    pub(crate) fn new(ctx: WorkerCtx) -> io::Result<UringWorker> {
        let ring = build_ring()?;
        let bufs = BufRing::new()?;
        // SAFETY: the ring memory stays valid until the ring is dropped (field order).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries as u64,
                RING_BUFS,
                BGID,
                0,
            )?;
        }
        // SAFETY: all-zero is a valid msghdr.
        let mut hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // Room for the pktinfo control message in every provided buffer (the kernel only
        // reads the lengths of the template; no control pointer is needed).
        hdr.msg_controllen = CMSG_BUF as _;
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let sends: Vec<SendSlot> = (0..SEND_SLOTS)
            .map(|_| SendSlot {
                // SAFETY: all-zero is a valid msghdr/iovec.
                hdr: unsafe { std::mem::zeroed() },
                // SAFETY: as above.
                iov: unsafe { std::mem::zeroed() },
                addr: SockAddr::from(unspecified),
                bid: None,
                conn: 0,
                rtcp: false,
                ctrl: CmsgBuf::new(),
                buf: [0; BUF_SIZE],
            })
            .collect();
        let relay = ctx.relay();
        Ok(UringWorker {
            ring,
            bufs,
            recv_hdr: hdr,
            sends: sends.into_boxed_slice(),
            free_sends: (0..SEND_SLOTS).rev().collect(),
            wake_buf: Box::new(0),
            timer: Box::new(types::Timespec::from(TICK)),
            wake_armed: false,
            timer_armed: false,
            ops: Vec::new(),
            rearm_list: Vec::new(),
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            fanout: Fanout::new(),
            tdm_tx: TxBatch::new(),
            relay,
            ctx,
            next_tick: Instant::now() + TICK,
            stop_deadline: None,
        })
    }

    /// Pushes one entry, submitting first if the SQ is full.
    ///
    /// # Safety
    /// Every buffer the entry names must stay valid until its completion is reaped.
    unsafe fn push(&mut self, e: &squeue::Entry) -> bool {
        // SAFETY: forwarded from the caller's contract.
        if unsafe { self.ring.submission().push(e) }.is_ok() {
            return true;
        }
        if let Err(err) = self.ring.submit() {
            tracing::warn!(error = %err, "io_uring submit failed");
        }
        // SAFETY: as above.
        unsafe { self.ring.submission().push(e) }.is_ok()
    }

    fn arm_recv(&mut self, slot: usize, k: usize) {
        let Some((rtp, rtcp)) = self.relay.fds(slot) else {
            return;
        };
        let (fd, kind) = if k == 0 {
            (rtp, K_RECV_RTP)
        } else {
            (rtcp, K_RECV_RTCP)
        };
        let e = opcode::RecvMsgMulti::new(types::Fd(fd), &*self.recv_hdr, BGID)
            .build()
            .user_data(ud(kind, slot));
        // SAFETY: `recv_hdr` and the buffer ring live as long as the ring.
        if unsafe { self.push(&e) } {
            self.ops[slot].armed[k] = true;
        }
    }

    fn arm_wake(&mut self) {
        let ptr: *mut u64 = &mut *self.wake_buf;
        let e = opcode::Read::new(types::Fd(self.ctx.waker.fd()), ptr.cast(), 8)
            .build()
            .user_data(UD_WAKE);
        // SAFETY: `wake_buf` is boxed and lives as long as the ring.
        self.wake_armed = unsafe { self.push(&e) };
    }

    fn arm_timer(&mut self) {
        let e = opcode::Timeout::new(&*self.timer)
            .build()
            .user_data(UD_TIMER);
        // SAFETY: `timer` is boxed and lives as long as the ring.
        self.timer_armed = unsafe { self.push(&e) };
    }

    /// Sends `len` bytes at `data` from `conn`'s RTP (or RTCP) socket using send slot
    /// `s`, from source address `src` when given.
    fn submit_send(
        &mut self,
        s: usize,
        fd: i32,
        to: SocketAddr,
        src: Option<IpAddr>,
        data: *mut u8,
        len: usize,
    ) {
        let conn = self.sends[s].conn;
        let slot = &mut self.sends[s];
        slot.addr = SockAddr::from(to);
        slot.iov = libc::iovec {
            iov_base: data.cast(),
            iov_len: len,
        };
        // SAFETY: all-zero is a valid msghdr.
        slot.hdr = unsafe { std::mem::zeroed() };
        slot.hdr.msg_name = slot.addr.as_ptr() as *mut libc::c_void;
        slot.hdr.msg_namelen = slot.addr.len();
        slot.hdr.msg_iov = &mut slot.iov;
        slot.hdr.msg_iovlen = 1;
        if let Some(ip) = src {
            let n = encode_pktinfo(&mut slot.ctrl, ip);
            slot.hdr.msg_control = slot.ctrl.0.as_mut_ptr().cast();
            slot.hdr.msg_controllen = n as _;
        }
        let e = opcode::SendMsg::new(types::Fd(fd), &slot.hdr)
            .build()
            .user_data(ud(K_SEND, s));
        // SAFETY: the slot (header, iovec, address, and its buffer or the ring buffer it
        // names) is not reused or recycled until this send's completion.
        if unsafe { self.push(&e) } {
            self.ops[conn].sends += 1;
        } else {
            self.relay.counts.send_queue_full();
            self.release_send(s);
        }
    }

    /// A free send slot for `conn`; counts `send_queue_full` when all are in flight.
    fn take_send(&mut self, conn: usize, rtcp: bool) -> Option<usize> {
        let Some(s) = self.free_sends.pop() else {
            self.relay.counts.send_queue_full();
            return None;
        };
        self.sends[s].conn = conn;
        self.sends[s].rtcp = rtcp;
        self.sends[s].bid = None;
        Some(s)
    }

    fn release_send(&mut self, s: usize) {
        if let Some(bid) = self.sends[s].bid.take() {
            self.bufs.recycle(bid);
        }
        self.free_sends.push(s);
    }

    fn handle_cmd(&mut self, msg: WorkerMsg, now: Instant) {
        let cmd = match msg {
            WorkerMsg::Cmd(c) => c,
            WorkerMsg::Adopt(slice) => return self.relay.adopt_tdm(*slice, now),
        };
        self.relay.counts.commands = self.relay.counts.commands.wrapping_add(1);
        match cmd {
            DataplaneCmd::Add(spec) => match self.relay.add(spec, now) {
                Ok(slot) => {
                    if self.ops.len() <= slot {
                        self.ops.resize(slot + 1, SlotOps::default());
                    }
                    self.ops[slot] = SlotOps::default();
                    self.arm_recv(slot, 0);
                    self.arm_recv(slot, 1);
                }
                Err(spec) => tracing::warn!(key = spec.key.0, "duplicate connection key ignored"),
            },
            DataplaneCmd::Modify { key, update, .. } => {
                if self.relay.modify(key, &update, now).is_none() {
                    tracing::debug!(key = key.0, "modify for unknown connection");
                }
            }
            DataplaneCmd::Remove { key, .. } => self.remove(key),
            DataplaneCmd::Signal {
                channel, signal, ..
            } => self.relay.tdm.signal(&channel, &signal),
        }
    }

    /// Runs the TDM frames due and sends the packets they produced.
    fn frames(&mut self, now: Instant) {
        if self.relay.run_frames(now, &mut self.tdm_tx) == 0 {
            return;
        }
        for i in 0..self.tdm_tx.len() {
            let Some((tx, bytes)) = self.tdm_tx.get(i) else {
                continue;
            };
            let Some((fd, _)) = self.relay.fds(tx.slot) else {
                self.relay.counts.send_failed(libc::EBADF);
                continue;
            };
            let n = bytes.len();
            if n > BUF_SIZE {
                self.relay.counts.send_failed(libc::EMSGSIZE);
                continue;
            }
            let Some(s) = self.take_send(tx.slot, false) else {
                continue;
            };
            // `bytes` borrows `tdm_tx`, a field apart from the send slots.
            if let Some((_, bytes)) = self.tdm_tx.get(i) {
                self.sends[s].buf[..n].copy_from_slice(bytes);
            }
            let ptr = self.sends[s].buf.as_mut_ptr();
            self.submit_send(s, fd, tx.to, tx.src, ptr, n);
        }
        self.ctx.publish_frames(&self.relay);
    }

    fn remove(&mut self, key: ConnKey) {
        let Some(slot) = self.relay.begin_remove(key) else {
            self.relay.removed_unknown(key);
            return;
        };
        for (k, kind) in [(0, K_RECV_RTP), (1, K_RECV_RTCP)] {
            if self.ops[slot].armed[k] {
                let e = opcode::AsyncCancel::new(ud(kind, slot))
                    .build()
                    .user_data(ud(K_CANCEL, slot));
                // SAFETY: a cancel names no memory.
                if !unsafe { self.push(&e) } {
                    tracing::warn!(slot, "could not queue a cancel");
                }
            }
        }
        self.maybe_finish(slot);
    }

    /// Closes a removed connection once no operation refers to its sockets.
    fn maybe_finish(&mut self, slot: usize) {
        let ops = self.ops[slot];
        if self.relay.is_closing(slot) && !ops.armed[0] && !ops.armed[1] && ops.sends == 0 {
            self.relay.finish_remove(slot);
            self.ops[slot] = SlotOps::default();
        }
    }

    pub(crate) fn run(mut self) -> io::Result<()> {
        self.ctx.publish(&self.relay);
        self.arm_wake();
        self.arm_timer();
        let mut more_cmds = false;
        let mut cmds = Vec::new();
        loop {
            self.relay.counts.loop_passes = self.relay.counts.loop_passes.wrapping_add(1);
            let now = Instant::now();
            self.ctx.waker.clear();
            more_cmds = more_cmds || !self.ctx.rx.is_empty();
            if more_cmds {
                more_cmds = self.ctx.drain(|c| cmds.push(c));
                for c in cmds.drain(..) {
                    self.handle_cmd(c, now);
                }
            }
            if self.ctx.stopping() && self.stop_deadline.is_none() {
                self.begin_stop(now);
            }
            if now >= self.next_tick {
                self.tick(now);
            }
            self.frames(now);
            self.rearm();
            self.bufs.publish();
            if let Some(deadline) = self.stop_deadline {
                if self.relay.is_empty() && !self.wake_armed && !self.timer_armed {
                    self.ctx.publish(&self.relay);
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        "io_uring worker stopped with operations outstanding; leaking its memory"
                    );
                    self.ctx.publish(&self.relay);
                    std::mem::forget(self);
                    return Ok(());
                }
            }
            let want = usize::from(!more_cmds);
            // The next TDM frame bounds the wait (the 100 ms timer op covers the tick).
            let frame_wait = self
                .relay
                .tdm
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let r = if self.stop_deadline.is_some() || frame_wait.is_some() {
                // Bounded waits while stopping, so the grace deadline is always checked.
                let wait = frame_wait.map_or(TICK, |d| d.min(TICK));
                let ts = types::Timespec::from(wait);
                let args = types::SubmitArgs::new().timespec(&ts);
                let want = if wait.is_zero() { 0 } else { want };
                self.ring.submitter().submit_with_args(want, &args)
            } else {
                self.ring.submit_and_wait(want)
            };
            match r {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) => return Err(e),
            }
            self.cqes.clear();
            for cqe in self.ring.completion() {
                self.cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
            }
            let now = Instant::now();
            // Commands before packets: a packet that arrives right after a CRCX/MDCX
            // answer must meet the connection as that command left it.
            if !self.ctx.rx.is_empty() {
                more_cmds = self.ctx.drain(|c| cmds.push(c));
                for c in cmds.drain(..) {
                    self.handle_cmd(c, now);
                }
            }
            for i in 0..self.cqes.len() {
                let (ud, res, flags) = self.cqes[i];
                self.on_cqe(ud, res, flags, now);
            }
        }
    }

    fn begin_stop(&mut self, now: Instant) {
        self.stop_deadline = Some(now + STOP_GRACE);
        let keys: Vec<ConnKey> = self
            .relay
            .slots()
            .filter_map(|s| self.relay.key_of(s))
            .collect();
        for key in keys {
            self.remove(key);
        }
        for u in [UD_WAKE, UD_TIMER] {
            let e = opcode::AsyncCancel::new(u)
                .build()
                .user_data(ud(K_CANCEL, 0));
            // SAFETY: a cancel names no memory.
            let _ = unsafe { self.push(&e) };
        }
    }

    fn rearm(&mut self) {
        let stopping = self.stop_deadline.is_some();
        while let Some(slot) = self.rearm_list.pop() {
            for k in 0..2 {
                if self.ops[slot].rearm[k] {
                    self.ops[slot].rearm[k] = false;
                    if !self.relay.is_closing(slot) && self.relay.fds(slot).is_some() {
                        self.arm_recv(slot, k);
                    }
                }
            }
            self.maybe_finish(slot);
        }
        if !stopping {
            if !self.wake_armed {
                self.arm_wake();
            }
            if !self.timer_armed {
                self.arm_timer();
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        self.next_tick = now + TICK;
        let mut reports: Vec<(usize, SocketAddr, Vec<u8>)> = Vec::new();
        self.relay.tick(now, |slot, to, bytes| {
            reports.push((slot, to, bytes.to_vec()))
        });
        for (slot, to, bytes) in reports {
            let Some((_, fd)) = self.relay.fds(slot) else {
                continue;
            };
            let Some(s) = self.take_send(slot, true) else {
                continue;
            };
            let n = bytes.len().min(BUF_SIZE);
            self.sends[s].buf[..n].copy_from_slice(&bytes[..n]);
            let ptr = self.sends[s].buf.as_mut_ptr();
            let src = self.relay.rtcp_source(slot);
            self.submit_send(s, fd, to, src, ptr, n);
        }
        self.ctx.publish(&self.relay);
    }

    fn on_cqe(&mut self, user_data: u64, res: i32, flags: u32, now: Instant) {
        match user_data {
            UD_WAKE => {
                self.wake_armed = false;
                return;
            }
            UD_TIMER => {
                self.timer_armed = false;
                return;
            }
            _ => {}
        }
        let kind = user_data >> KIND_SHIFT;
        let idx = (user_data & ((1 << KIND_SHIFT) - 1)) as usize;
        match kind {
            K_RECV_RTP | K_RECV_RTCP => {
                self.on_recv(idx, usize::from(kind == K_RECV_RTCP), res, flags, now)
            }
            K_SEND => {
                let Some((conn, rtcp)) = self.sends.get(idx).map(|s| (s.conn, s.rtcp)) else {
                    return;
                };
                if res < 0 {
                    tracing::trace!(errno = -res, "send failed");
                    self.relay.counts.send_failed(-res);
                } else {
                    self.relay.counts.sent(res as usize, rtcp);
                }
                self.release_send(idx);
                if let Some(o) = self.ops.get_mut(conn) {
                    o.sends = o.sends.saturating_sub(1);
                }
                if self.relay.is_closing(conn) {
                    self.maybe_finish(conn);
                }
            }
            _ => {} // cancel results
        }
    }

    fn on_recv(&mut self, slot: usize, k: usize, res: i32, flags: u32, now: Instant) {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        if slot >= self.ops.len() {
            // No such connection (cannot happen: slots are sized on Add). Give the
            // buffer back rather than leak it, and count the datagram.
            if let Some(bid) = bid {
                self.relay.counts.received(0, k == 1);
                self.relay.count_invalid(slot);
                self.bufs.recycle(bid);
            }
            return;
        }
        if res < 0 {
            if -res == libc::ENOBUFS {
                let d = &mut self.relay.counts.drops;
                d.no_buffer = d.no_buffer.wrapping_add(1);
            } else if -res != libc::ECANCELED {
                tracing::debug!(errno = -res, slot, "multishot receive ended");
            }
        } else if let Some(bid) = bid {
            self.on_buffer(slot, k, bid, res as usize, now);
        }
        if !more {
            self.ops[slot].armed[k] = false;
            self.ops[slot].rearm[k] = true;
            self.rearm_list.push(slot);
        }
    }

    fn on_buffer(&mut self, slot: usize, k: usize, bid: u16, len: usize, now: Instant) {
        let rtcp = k == 1;
        let base = self.bufs.buf_ptr(bid);
        let len = len.min(BUF_SIZE);
        // SAFETY: the kernel handed buffer `bid` to us with this completion; it is ours
        // until recycled, and `len` is clamped to the buffer size.
        let buf = unsafe { std::slice::from_raw_parts_mut(base, len) };
        let parsed = match types::RecvMsgOut::parse(buf, &self.recv_hdr) {
            Ok(out) => {
                let size = out.incoming_payload_len() as usize;
                self.relay.counts.received(size, rtcp);
                if out.is_payload_truncated() || out.is_name_data_truncated() {
                    None
                } else {
                    let from = sockaddr_from_bytes(out.name_data());
                    let local = if out.is_control_data_truncated() {
                        None
                    } else {
                        parse_pktinfo(out.control_data())
                    };
                    let off = out.payload_data().as_ptr() as usize - buf.as_ptr() as usize;
                    from.map(|f| (f, local, off, out.payload_data().len()))
                }
            }
            Err(()) => {
                self.relay.counts.received(0, rtcp);
                None
            }
        };
        let pkt = parsed.and_then(|(from, local, off, plen)| {
            let end = off.checked_add(plen)?;
            Some((from, local, buf.get_mut(off..end)?))
        });
        let Some((from, local, pkt)) = pkt else {
            self.relay.count_invalid(slot);
            self.bufs.recycle(bid);
            return;
        };
        let plen = pkt.len();
        if rtcp {
            self.relay.on_rtcp_via(slot, from, local, pkt, now);
            self.bufs.recycle(bid);
            return;
        }
        self.relay
            .on_rtp_via(slot, from, local, pkt, now, &mut self.fanout);
        let n = self.fanout.len();
        // Copies first (from the untouched bytes), then the in-place send of the first.
        for i in 1..n {
            let Some(tx) = self.fanout.get(i).copied() else {
                continue;
            };
            let Some((fd, _)) = self.relay.fds(tx.slot) else {
                self.relay.counts.send_failed(libc::EBADF);
                continue;
            };
            let Some(s) = self.take_send(tx.slot, false) else {
                continue;
            };
            let out = &mut self.sends[s].buf[..plen];
            out.copy_from_slice(pkt);
            if let Some(h) = &tx.header {
                write_header(out, h);
            }
            let ptr = out.as_mut_ptr();
            self.submit_send(s, fd, tx.to, tx.src, ptr, plen);
        }
        let mut sent_in_place = false;
        if let Some(tx) = self.fanout.get(0).copied() {
            match self.relay.fds(tx.slot) {
                None => self.relay.counts.send_failed(libc::EBADF),
                Some((fd, _)) => {
                    if let Some(s) = self.take_send(tx.slot, false) {
                        if let Some(h) = &tx.header {
                            write_header(pkt, h);
                        }
                        self.sends[s].bid = Some(bid);
                        self.submit_send(s, fd, tx.to, tx.src, pkt.as_mut_ptr(), plen);
                        sent_in_place = true;
                    }
                }
            }
        }
        if !sent_in_place {
            self.bufs.recycle(bid);
        }
    }
}

impl Drop for UringWorker {
    fn drop(&mut self) {
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}
