//! The io_uring backend: one ring per worker (SINGLE_ISSUER + DEFER_TASKRUN when the
//! kernel has them), a provided buffer ring, multishot `RecvMsgMulti` per socket,
//! `Send` (destination address in the SQE) or `SendMsg` (when a pktinfo control message
//! names the source) per datagram, and an eventfd read as the control-plane wake-up.
//!
//! Waiting: one `io_uring_enter` per pass submits everything queued and waits with an
//! absolute bound (the next tick or TDM frame). While traffic flows the wait asks for
//! [`WAIT_BATCH`] completions more than are already due, with a *minimum wait*
//! (`IORING_FEAT_MIN_TIMEOUT`, kernel 6.12+) of [`MIN_WAIT`]: the kernel returns once the
//! batch is there, or after `MIN_WAIT` as soon as anything is. Multishot receives post
//! their completions through deferred task work with lazy wake-ups, so a busy worker is
//! woken once per batch instead of once per datagram. After a pass that received
//! nothing the wait is for one new completion (no added delay for the first packet after
//! a quiet spell); an idle worker sleeps in the kernel until the tick.
//!
//! Memory named in a submission stays alive until its completion: the buffer ring, the
//! shared receive `msghdr`, the send metadata, the copy buffers and the eventfd buffer
//! are boxed (never moved) and live as long as the worker. A received buffer forwarded in
//! place is sent straight from the buffer ring, with the send's address (and `msghdr`)
//! kept in a metadata slot indexed by the buffer id, so such sends can never run out of
//! slots; the buffer goes back to the ring only when the send completes. Copies (further
//! legs of a fan-out, TDM frames, RTCP reports) use a pool of slots with their own
//! buffers; when it is exhausted the queued sends are submitted and their completions
//! reaped on the spot before anything is dropped.
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
use std::time::{Duration, Instant};

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
/// Send slots with their own buffer (copies: fan-out legs after the first, TDM, RTCP).
const COPY_SLOTS: usize = 1024;
/// Completions a busy worker waits for beyond those already due (see the module docs).
const WAIT_BATCH: usize = 32;
/// The longest a busy worker waits for a full batch once anything is due.
const MIN_WAIT: Duration = Duration::from_micros(50);

const KIND_SHIFT: u32 = 56;
const K_RECV_RTP: u64 = 1;
const K_RECV_RTCP: u64 = 2;
/// An in-place send of provided buffer `idx` (its metadata slot is `idx`).
const K_SEND_BUF: u64 = 3;
const K_CANCEL: u64 = 4;
/// Reserved `user_data`: the eventfd read.
const UD_WAKE: u64 = 5 << KIND_SHIFT;
/// A send from copy slot `idx`.
const K_SEND_COPY: u64 = 6;

fn ud(kind: u64, idx: usize) -> u64 {
    (kind << KIND_SHIFT) | (idx as u64 & ((1 << KIND_SHIFT) - 1))
}

/// Checks that a ring can be created here (EPERM under seccomp, ENOSYS on old kernels).
pub(crate) fn probe() -> io::Result<()> {
    IoUring::new(8).map(drop)
}

/// Builds the worker's ring; the flag says whether SINGLE_ISSUER + DEFER_TASKRUN are on.
fn build_ring() -> io::Result<(IoUring, bool)> {
    let mut b = IoUring::builder();
    b.setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun();
    match b.build(SQ_ENTRIES) {
        Ok(r) => Ok((r, true)),
        Err(e) => {
            tracing::debug!(error = %e, "SINGLE_ISSUER/DEFER_TASKRUN unavailable, plain ring");
            let r = IoUring::builder()
                .setup_cqsize(CQ_ENTRIES)
                .setup_coop_taskrun()
                .build(SQ_ENTRIES)
                .or_else(|_| {
                    IoUring::builder()
                        .setup_cqsize(CQ_ENTRIES)
                        .build(SQ_ENTRIES)
                })?;
            Ok((r, false))
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

/// What the kernel reads for one in-flight send besides the payload, alive until the
/// send's completion.
struct SendMeta {
    /// Used only for `SendMsg` (a control message is attached).
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: SockAddr,
    /// `IP_PKTINFO`/`IPV6_PKTINFO` naming the source address, when known.
    ctrl: CmsgBuf,
    /// Connection whose socket sends.
    conn: usize,
    /// An RTCP report (for the statistics).
    rtcp: bool,
}

impl SendMeta {
    fn new() -> SendMeta {
        SendMeta {
            // SAFETY: all-zero is a valid msghdr/iovec.
            hdr: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            iov: unsafe { std::mem::zeroed() },
            addr: SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))),
            ctrl: CmsgBuf::new(),
            conn: 0,
            rtcp: false,
        }
    }

    /// Fills in the destination (and source) of a send of `len` bytes at `data` from
    /// `fd` and returns its submission entry: `Send` with the address in the SQE, or
    /// `SendMsg` when a pktinfo control message must go along.
    ///
    /// # Safety
    /// `self` and the `len` bytes at `data` must stay valid and unchanged until the
    /// completion carrying `user_data` is reaped.
    unsafe fn entry(
        &mut self,
        fd: i32,
        to: SocketAddr,
        src: Option<IpAddr>,
        data: *mut u8,
        len: usize,
        user_data: u64,
    ) -> squeue::Entry {
        // Every payload lives in a buffer of BUF_SIZE bytes; the cast below is lossless.
        let len = len.min(BUF_SIZE);
        self.addr = SockAddr::from(to);
        let Some(ip) = src else {
            return opcode::Send::new(types::Fd(fd), data, len as u32)
                .dest_addr(self.addr.as_ptr().cast::<libc::sockaddr>())
                .dest_addr_len(self.addr.len())
                .build()
                .user_data(user_data);
        };
        self.iov = libc::iovec {
            iov_base: data.cast(),
            iov_len: len,
        };
        // SAFETY: all-zero is a valid msghdr.
        self.hdr = unsafe { std::mem::zeroed() };
        self.hdr.msg_name = self.addr.as_ptr() as *mut libc::c_void;
        self.hdr.msg_namelen = self.addr.len();
        self.hdr.msg_iov = &mut self.iov;
        self.hdr.msg_iovlen = 1;
        let n = encode_pktinfo(&mut self.ctrl, ip);
        self.hdr.msg_control = self.ctrl.0.as_mut_ptr().cast();
        self.hdr.msg_controllen = n as _;
        opcode::SendMsg::new(types::Fd(fd), &self.hdr)
            .build()
            .user_data(user_data)
    }
}

/// A send slot with its own buffer.
struct CopySlot {
    meta: SendMeta,
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

/// A completion copied out of the ring: `(user_data, result, flags)`.
type Cqe = (u64, i32, u32);

/// One io_uring worker. Field order matters: the ring is dropped before the memory it
/// refers to.
pub(crate) struct UringWorker {
    ring: IoUring,
    bufs: BufRing,
    recv_hdr: Box<libc::msghdr>,
    /// Metadata of the in-place send of each provided buffer, indexed by buffer id.
    buf_sends: Box<[SendMeta]>,
    copies: Box<[CopySlot]>,
    free_copies: Vec<usize>,
    wake_buf: Box<u64>,
    wake_armed: bool,
    /// The kernel supports the minimum wait (batched wake-ups, see the module docs).
    min_wait: bool,
    ops: Vec<SlotOps>,
    rearm_list: Vec<usize>,
    /// Completions to handle: those of the current pass, plus any found while sends
    /// were reaped early (in a pass, or by a tick or frame pass before the wait).
    cqes: Vec<Cqe>,
    /// Scratch for completions reaped while the pass runs.
    reaped: Vec<Cqe>,
    /// Datagrams received in the last pass (0: quiet, wait for the next one at once).
    received_last_pass: usize,
    /// Sends queued since the last submit: each completes (posts its completion)
    /// during the submit that carries it.
    queued_sends: usize,
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
        let (ring, deferred) = build_ring()?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without IORING_FEAT_EXT_ARG (kernel < 5.11)",
            ));
        }
        let min_wait = ring.params().is_feature_min_timeout();
        tracing::debug!(
            single_issuer_defer_taskrun = deferred,
            min_wait,
            "io_uring worker ring"
        );
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
        let buf_sends: Vec<SendMeta> = (0..RING_BUFS).map(|_| SendMeta::new()).collect();
        let copies: Vec<CopySlot> = (0..COPY_SLOTS)
            .map(|_| CopySlot {
                meta: SendMeta::new(),
                buf: [0; BUF_SIZE],
            })
            .collect();
        let relay = ctx.relay();
        Ok(UringWorker {
            ring,
            bufs,
            recv_hdr: hdr,
            buf_sends: buf_sends.into_boxed_slice(),
            copies: copies.into_boxed_slice(),
            free_copies: (0..COPY_SLOTS).rev().collect(),
            wake_buf: Box::new(0),
            wake_armed: false,
            min_wait,
            ops: Vec::new(),
            rearm_list: Vec::new(),
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            reaped: Vec::with_capacity(CQ_ENTRIES as usize),
            received_last_pass: 0,
            queued_sends: 0,
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
        self.submit_now();
        // SAFETY: as above.
        unsafe { self.ring.submission().push(e) }.is_ok()
    }

    /// Submits what is queued without waiting (sends complete during the call).
    fn submit_now(&mut self) {
        if let Err(err) = self.ring.submit() {
            tracing::warn!(error = %err, "io_uring submit failed");
        }
        self.queued_sends = 0;
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

    /// Sends `len` bytes of copy slot `s`'s buffer from `fd` to `to` (from source
    /// address `src` when given); the slot goes back to the pool on completion.
    fn send_copy(&mut self, s: usize, fd: i32, to: SocketAddr, src: Option<IpAddr>, len: usize) {
        let conn = self.copies[s].meta.conn;
        let slot = &mut self.copies[s];
        let data = slot.buf.as_mut_ptr();
        // SAFETY: the slot (metadata and buffer) is not reused until this send's
        // completion: it is off the free list until then.
        let e = unsafe {
            slot.meta
                .entry(fd, to, src, data, len.min(BUF_SIZE), ud(K_SEND_COPY, s))
        };
        // SAFETY: as above.
        if unsafe { self.push(&e) } {
            self.ops[conn].sends += 1;
            self.queued_sends += 1;
        } else {
            self.relay.counts.send_queue_full();
            self.free_copies.push(s);
        }
    }

    /// Sends received buffer `bid` in place (`len` bytes at `data`, inside the buffer)
    /// from connection `conn`'s socket `fd`. Returns false (the caller keeps the buffer)
    /// when the entry could not be queued.
    #[allow(clippy::too_many_arguments)]
    fn send_in_place(
        &mut self,
        bid: u16,
        conn: usize,
        fd: i32,
        to: SocketAddr,
        src: Option<IpAddr>,
        data: *mut u8,
        len: usize,
    ) -> bool {
        let idx = usize::from(bid % RING_BUFS);
        let meta = &mut self.buf_sends[idx];
        meta.conn = conn;
        meta.rtcp = false;
        // SAFETY: buffer `bid` is ours (handed over by its receive completion) and is
        // recycled only when this send completes; its metadata slot is used by no other
        // send meanwhile (one slot per buffer id).
        let e = unsafe { meta.entry(fd, to, src, data, len, ud(K_SEND_BUF, idx)) };
        // SAFETY: as above.
        if unsafe { self.push(&e) } {
            self.ops[conn].sends += 1;
            self.queued_sends += 1;
            true
        } else {
            self.relay.counts.send_queue_full();
            false
        }
    }

    /// A free copy slot for `conn`. When all are in flight, the queued sends are
    /// submitted and completions reaped first; counts `send_queue_full` if none frees up.
    fn take_copy(&mut self, conn: usize, rtcp: bool) -> Option<usize> {
        if self.free_copies.is_empty() {
            self.reap_now();
        }
        let Some(s) = self.free_copies.pop() else {
            self.relay.counts.send_queue_full();
            return None;
        };
        self.copies[s].meta.conn = conn;
        self.copies[s].meta.rtcp = rtcp;
        Some(s)
    }

    /// Submits what is queued and reaps the completion queue in the middle of a pass:
    /// send completions are handled at once (freeing their slots), everything else is
    /// appended to this pass's completions.
    fn reap_now(&mut self) {
        self.submit_now();
        self.reaped.clear();
        for cqe in self.ring.completion() {
            self.reaped
                .push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
        for i in 0..self.reaped.len() {
            let (user_data, res, flags) = self.reaped[i];
            match user_data >> KIND_SHIFT {
                K_SEND_BUF | K_SEND_COPY => self.on_send(user_data, res),
                _ => self.cqes.push((user_data, res, flags)),
            }
        }
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
            let n = bytes.len();
            let Some((fd, _)) = self.relay.fds(tx.slot) else {
                self.relay.counts.send_failed(libc::EBADF);
                continue;
            };
            if n > BUF_SIZE {
                self.relay.counts.send_failed(libc::EMSGSIZE);
                continue;
            }
            let Some(s) = self.take_copy(tx.slot, false) else {
                continue;
            };
            // `bytes` borrows `tdm_tx`, a field apart from the send slots.
            if let Some((_, bytes)) = self.tdm_tx.get(i) {
                self.copies[s].buf[..n].copy_from_slice(bytes);
            }
            self.send_copy(s, fd, tx.to, tx.src, n);
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

    /// Drains up to [`crate::worker::CMDS_PER_PASS`] commands; returns whether more wait.
    fn commands(&mut self, cmds: &mut Vec<WorkerMsg>, now: Instant) -> bool {
        let more = self.ctx.drain(|c| cmds.push(c));
        for c in cmds.drain(..) {
            self.handle_cmd(c, now);
        }
        more
    }

    pub(crate) fn run(mut self) -> io::Result<()> {
        self.ctx.publish(&self.relay);
        self.arm_wake();
        let mut more_cmds = false;
        let mut cmds = Vec::new();
        loop {
            self.relay.counts.loop_passes = self.relay.counts.loop_passes.wrapping_add(1);
            let now = Instant::now();
            self.ctx.waker.clear();
            if more_cmds || !self.ctx.rx.is_empty() {
                more_cmds = self.commands(&mut cmds, now);
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
                if self.relay.is_empty() && !self.wake_armed {
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
            match self.wait(more_cmds) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) => return Err(e),
            }
            // Appended: completions reaped early (by a tick or frame pass before the
            // wait) are still queued ahead of these.
            for cqe in self.ring.completion() {
                self.cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
            }
            let now = Instant::now();
            // Commands before packets: a packet that arrives right after a CRCX/MDCX
            // answer must meet the connection as that command left it.
            if !self.ctx.rx.is_empty() {
                more_cmds = self.commands(&mut cmds, now);
            }
            self.received_last_pass = 0;
            // By index: sends reaped early append the other completions they find.
            let mut i = 0;
            while let Some(&(user_data, res, flags)) = self.cqes.get(i) {
                self.on_cqe(user_data, res, flags, now);
                i += 1;
            }
            self.cqes.clear();
        }
    }

    /// Submits everything queued and waits for completions (see the module docs),
    /// bounded by the next tick or TDM frame; does not block when commands or
    /// completions reaped early are waiting.
    fn wait(&mut self, more_cmds: bool) -> io::Result<()> {
        let mut until = self.next_tick;
        if let Some(frame) = self.relay.tdm.deadline() {
            until = until.min(frame);
        }
        let bound = until.saturating_duration_since(Instant::now());
        // Completions due when the wait starts: those not reaped yet, and one per queued
        // send. The kernel counts what it waits for in units of deferred work items (a
        // multishot receive delivering several datagrams is one), so a wait for more
        // than one is always bounded by the minimum wait, never left to the timeout.
        let due = self.ring.completion().len() + self.queued_sends;
        let poll = more_cmds || !self.cqes.is_empty();
        let (want, min_wait) = if poll || bound.is_zero() {
            // Poll: run deferred work and return at once (a zero bound times out).
            (1, Duration::ZERO)
        } else if !self.min_wait || bound <= MIN_WAIT {
            // Any single new completion ends the wait.
            (self.ring.completion().len() + 1, Duration::ZERO)
        } else if self.received_last_pass > 0 {
            (due + WAIT_BATCH, MIN_WAIT)
        } else {
            (due + 1, MIN_WAIT)
        };
        let bound = if poll { Duration::ZERO } else { bound };
        let ts = types::Timespec::from(bound);
        let args = types::SubmitArgs::new()
            .timespec(&ts)
            .min_wait_usec(min_wait.as_micros() as u32);
        self.queued_sends = 0;
        self.ring
            .submitter()
            .submit_with_args(want.min(CQ_ENTRIES as usize), &args)
            .map(drop)
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
        let e = opcode::AsyncCancel::new(UD_WAKE)
            .build()
            .user_data(ud(K_CANCEL, 0));
        // SAFETY: a cancel names no memory.
        let _ = unsafe { self.push(&e) };
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
        if !stopping && !self.wake_armed {
            self.arm_wake();
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
            let Some(s) = self.take_copy(slot, true) else {
                continue;
            };
            let n = bytes.len().min(BUF_SIZE);
            self.copies[s].buf[..n].copy_from_slice(&bytes[..n]);
            let src = self.relay.rtcp_source(slot);
            self.send_copy(s, fd, to, src, n);
        }
        self.ctx.publish(&self.relay);
    }

    fn on_cqe(&mut self, user_data: u64, res: i32, flags: u32, now: Instant) {
        if user_data == UD_WAKE {
            self.wake_armed = false;
            return;
        }
        let kind = user_data >> KIND_SHIFT;
        let idx = (user_data & ((1 << KIND_SHIFT) - 1)) as usize;
        match kind {
            K_RECV_RTP | K_RECV_RTCP => {
                self.on_recv(idx, usize::from(kind == K_RECV_RTCP), res, flags, now)
            }
            K_SEND_BUF | K_SEND_COPY => self.on_send(user_data, res),
            _ => {} // cancel results
        }
    }

    /// A send completed: count it, free its slot (or give its buffer back to the ring)
    /// and finish its connection's removal if that waited for it.
    fn on_send(&mut self, user_data: u64, res: i32) {
        let kind = user_data >> KIND_SHIFT;
        let idx = (user_data & ((1 << KIND_SHIFT) - 1)) as usize;
        let meta = if kind == K_SEND_BUF {
            self.buf_sends.get(idx)
        } else {
            self.copies.get(idx).map(|c| &c.meta)
        };
        let Some((conn, rtcp)) = meta.map(|m| (m.conn, m.rtcp)) else {
            return;
        };
        if res < 0 {
            tracing::trace!(errno = -res, "send failed");
            self.relay.counts.send_failed(-res);
        } else {
            self.relay.counts.sent(res as usize, rtcp);
        }
        if kind == K_SEND_BUF {
            // idx < RING_BUFS (checked by the lookup above), so it fits a buffer id.
            self.bufs.recycle(idx as u16);
        } else {
            self.free_copies.push(idx);
        }
        if let Some(o) = self.ops.get_mut(conn) {
            o.sends = o.sends.saturating_sub(1);
        }
        if self.relay.is_closing(conn) {
            self.maybe_finish(conn);
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
                // The ring ran dry; the datagram stays in the socket until the re-arm.
                let c = &mut self.relay.counts;
                c.rx_ring_empty = c.rx_ring_empty.wrapping_add(1);
            } else if -res != libc::ECANCELED {
                tracing::debug!(errno = -res, slot, "multishot receive ended");
            }
        } else if let Some(bid) = bid {
            self.received_last_pass += 1;
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
            let Some(s) = self.take_copy(tx.slot, false) else {
                continue;
            };
            let out = &mut self.copies[s].buf[..plen];
            out.copy_from_slice(pkt);
            if let Some(h) = &tx.header {
                write_header(out, h);
            }
            self.send_copy(s, fd, tx.to, tx.src, plen);
        }
        let mut sent_in_place = false;
        if let Some(tx) = self.fanout.get(0).copied() {
            match self.relay.fds(tx.slot) {
                None => self.relay.counts.send_failed(libc::EBADF),
                Some((fd, _)) => {
                    if let Some(h) = &tx.header {
                        write_header(pkt, h);
                    }
                    let data = pkt.as_mut_ptr();
                    sent_in_place = self.send_in_place(bid, tx.slot, fd, tx.to, tx.src, data, plen);
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
