//! The epoll fallback backend: level-triggered epoll, `recvmmsg` per readable socket,
//! `sendmmsg` per destination socket, eventfd wake, and the epoll timeout as the tick.
//!
//! Every receive slot of the batch has a control buffer for `IP_PKTINFO`/`IPV6_PKTINFO`
//! (the local address of wildcard binds), and every queued send one for the source
//! address it must leave from; both are fixed arrays owned by the worker.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use socket2::SockAddr;

use crate::api::DataplaneCmd;
use crate::relay::{Fanout, Relay};
use crate::rtp::write_header;
use crate::stats::WorkerCounts;
use crate::sys::{encode_pktinfo, parse_pktinfo, sockaddr_from_bytes, CmsgBuf, CMSG_BUF};
use crate::tdm::TxBatch;
use crate::worker::{WorkerCtx, WorkerMsg, STOP_GRACE, TICK};

const BATCH: usize = 32;
const BUF: usize = 2048;
const NAME: usize = std::mem::size_of::<libc::sockaddr_storage>();
const WAKE_TOKEN: u64 = u64::MAX;
/// Receive batches per readable socket per pass (fairness between sockets).
const BATCHES_PER_SOCKET: usize = 4;

fn token(slot: usize, rtcp: bool) -> u64 {
    ((slot as u64) << 1) | u64::from(rtcp)
}

struct OutQueue {
    fds: [RawFd; BATCH],
    lens: [usize; BATCH],
    /// Control data (source address) per queued datagram; 0 = none.
    ctrl_lens: [usize; BATCH],
    ctrls: Box<[CmsgBuf; BATCH]>,
    addrs: Vec<SockAddr>,
    bufs: Box<[[u8; BUF]; BATCH]>,
    n: usize,
}

/// One epoll worker.
pub(crate) struct EpollWorker {
    ctx: WorkerCtx,
    relay: Relay,
    epfd: OwnedFd,
    bufs: Box<[[u8; BUF]; BATCH]>,
    names: Box<[[u8; NAME]; BATCH]>,
    ctrls: Box<[CmsgBuf; BATCH]>,
    /// What the last receive batch returned, per datagram.
    lens: [Received; BATCH],
    out: OutQueue,
    fanout: Fanout,
    /// RTP packets of the last TDM frame pass.
    tdm_tx: TxBatch,
    next_tick: Instant,
}

/// Lengths and flags of one datagram of a receive batch.
#[derive(Clone, Copy, Debug, Default)]
struct Received {
    len: usize,
    namelen: usize,
    ctrllen: usize,
    flags: libc::c_int,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl EpollWorker {
    pub(crate) fn new(ctx: WorkerCtx) -> io::Result<EpollWorker> {
        // SAFETY: no pointer arguments; the result is checked.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor owned by nothing else.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let relay = ctx.relay();
        let w = EpollWorker {
            relay,
            epfd,
            bufs: Box::new([[0; BUF]; BATCH]),
            names: Box::new([[0; NAME]; BATCH]),
            ctrls: Box::new([CmsgBuf::new(); BATCH]),
            lens: [Received::default(); BATCH],
            out: OutQueue {
                fds: [-1; BATCH],
                lens: [0; BATCH],
                ctrl_lens: [0; BATCH],
                ctrls: Box::new([CmsgBuf::new(); BATCH]),
                addrs: Vec::with_capacity(BATCH),
                bufs: Box::new([[0; BUF]; BATCH]),
                n: 0,
            },
            fanout: Fanout::new(),
            tdm_tx: TxBatch::new(),
            next_tick: Instant::now() + TICK,
            ctx,
        };
        w.ctl(libc::EPOLL_CTL_ADD, w.ctx.waker.fd(), WAKE_TOKEN)?;
        Ok(w)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: data,
        };
        // SAFETY: `ev` is a live epoll_event; both descriptors are open.
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
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
                    let Some((rtp, rtcp)) = self.relay.fds(slot) else {
                        return;
                    };
                    let r = self
                        .ctl(libc::EPOLL_CTL_ADD, rtp, token(slot, false))
                        .and_then(|()| self.ctl(libc::EPOLL_CTL_ADD, rtcp, token(slot, true)));
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "cannot register connection sockets");
                    }
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
            if bytes.len() > BUF {
                self.relay.counts.send_failed(libc::EMSGSIZE);
                continue;
            }
            if self.out.n == BATCH {
                flush(&mut self.out, &mut self.relay.counts);
            }
            let k = self.out.n;
            self.out.bufs[k][..bytes.len()].copy_from_slice(bytes);
            self.out.fds[k] = fd;
            self.out.lens[k] = bytes.len();
            self.out.ctrl_lens[k] = match tx.src {
                Some(ip) => encode_pktinfo(&mut self.out.ctrls[k], ip),
                None => 0,
            };
            self.out.addrs.push(SockAddr::from(tx.to));
            self.out.n += 1;
        }
        flush(&mut self.out, &mut self.relay.counts);
        self.ctx.publish_frames(&self.relay);
    }

    fn remove(&mut self, key: crate::api::ConnKey) {
        match self.relay.begin_remove(key) {
            Some(slot) => {
                if let Some((rtp, rtcp)) = self.relay.fds(slot) {
                    let _ = self.ctl(libc::EPOLL_CTL_DEL, rtp, 0);
                    let _ = self.ctl(libc::EPOLL_CTL_DEL, rtcp, 0);
                }
                self.relay.finish_remove(slot);
            }
            None => self.relay.removed_unknown(key),
        }
    }

    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut more_cmds = false;
        self.ctx.publish(&self.relay);
        loop {
            if self.ctx.stopping() {
                break;
            }
            self.relay.counts.loop_passes = self.relay.counts.loop_passes.wrapping_add(1);
            let now = Instant::now();
            if now >= self.next_tick {
                self.tick(now);
            }
            self.frames(now);
            let timeout_ms = if more_cmds {
                0
            } else {
                let mut until = self.next_tick;
                if let Some(frame) = self.relay.tdm.deadline() {
                    until = until.min(frame);
                }
                let left = until.saturating_duration_since(Instant::now());
                // Rounded up: waking early would only spin until the deadline.
                let ms = left.as_micros().div_ceil(1000);
                i32::try_from(ms).unwrap_or(100)
            };
            // SAFETY: `events` is a live array of the length passed.
            let n = unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout_ms,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let ready = &events[..n as usize];
            // Commands before packets: a packet that arrives right after a CRCX/MDCX
            // answer must meet the connection as that command left it. The eventfd is
            // read before the wake flag is cleared, so a wake written after the clear is
            // never swallowed.
            if ready.iter().any(|ev| ev.u64 == WAKE_TOKEN) {
                self.ctx.waker.drain();
            }
            self.ctx.waker.clear();
            let mut cmds = Vec::new();
            more_cmds = self.ctx.drain(|c| cmds.push(c));
            for c in cmds {
                self.handle_cmd(c, now);
            }
            for ev in ready {
                let data = ev.u64;
                if data == WAKE_TOKEN {
                    continue;
                }
                let slot = (data >> 1) as usize;
                self.recv_socket(slot, data & 1 == 1, now);
            }
        }
        // Stopping: close every connection (Removed is reported for each).
        let slots: Vec<usize> = self.relay.slots().collect();
        let deadline = Instant::now() + STOP_GRACE;
        for slot in slots {
            if let Some((rtp, rtcp)) = self.relay.fds(slot) {
                let _ = self.ctl(libc::EPOLL_CTL_DEL, rtp, 0);
                let _ = self.ctl(libc::EPOLL_CTL_DEL, rtcp, 0);
            }
            self.relay.finish_remove(slot);
            if Instant::now() > deadline {
                break;
            }
        }
        self.ctx.publish(&self.relay);
        Ok(())
    }

    fn tick(&mut self, now: Instant) {
        self.next_tick = now + TICK;
        let relay = &mut self.relay;
        let mut reports: Vec<(usize, SocketAddr, Vec<u8>)> = Vec::new();
        relay.tick(now, |slot, to, bytes| {
            reports.push((slot, to, bytes.to_vec()))
        });
        for (slot, to, bytes) in reports {
            if let Some((_, rtcp)) = relay.fds(slot) {
                let src = relay.rtcp_source(slot);
                match send_one(rtcp, to, src, &bytes, &mut self.out.ctrls[0]) {
                    Ok(n) => relay.counts.sent(n, true),
                    Err(e) => {
                        tracing::trace!(error = %e, "rtcp send failed");
                        relay.counts.send_failed(e.raw_os_error().unwrap_or(0));
                    }
                }
            }
        }
        self.ctx.publish(&self.relay);
    }

    fn recv_socket(&mut self, slot: usize, rtcp: bool, now: Instant) {
        let Some((rtp_fd, rtcp_fd)) = self.relay.fds(slot) else {
            return;
        };
        let fd = if rtcp { rtcp_fd } else { rtp_fd };
        for _ in 0..BATCHES_PER_SOCKET {
            let n = match self.recv_batch(fd) {
                Ok(n) => n,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::trace!(error = %e, "recvmmsg failed");
                    }
                    break;
                }
            };
            for i in 0..n {
                let r = self.lens[i];
                self.relay.counts.received(r.len, rtcp);
                let from = sockaddr_from_bytes(&self.names[i][..r.namelen.min(NAME)]);
                let Some(from) = from.filter(|_| r.flags & libc::MSG_TRUNC == 0) else {
                    self.relay.count_invalid(slot);
                    continue;
                };
                let local = if r.flags & libc::MSG_CTRUNC == 0 {
                    parse_pktinfo(&self.ctrls[i].0[..r.ctrllen.min(CMSG_BUF)])
                } else {
                    None
                };
                let pkt = &self.bufs[i][..r.len.min(BUF)];
                if rtcp {
                    self.relay.on_rtcp_via(slot, from, local, pkt, now);
                    continue;
                }
                self.relay
                    .on_rtp_via(slot, from, local, pkt, now, &mut self.fanout);
                for tx in self.fanout.iter() {
                    if self.out.n == BATCH {
                        flush(&mut self.out, &mut self.relay.counts);
                    }
                    let Some((fd, _)) = self.relay.fds(tx.slot) else {
                        self.relay.counts.send_failed(libc::EBADF);
                        continue;
                    };
                    let k = self.out.n;
                    self.out.bufs[k][..pkt.len()].copy_from_slice(pkt);
                    if let Some(h) = &tx.header {
                        write_header(&mut self.out.bufs[k][..pkt.len()], h);
                    }
                    self.out.fds[k] = fd;
                    self.out.lens[k] = pkt.len();
                    self.out.ctrl_lens[k] = match tx.src {
                        Some(ip) => encode_pktinfo(&mut self.out.ctrls[k], ip),
                        None => 0,
                    };
                    self.out.addrs.push(SockAddr::from(tx.to));
                    self.out.n += 1;
                }
            }
            flush(&mut self.out, &mut self.relay.counts);
            if n < BATCH {
                break;
            }
        }
    }
}

impl EpollWorker {
    /// `recvmmsg` into the batch buffers; lengths land in `self.lens`.
    fn recv_batch(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: all-zero is a valid bit pattern for these plain C structs.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iov[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = BUF;
            hdrs[i].msg_hdr.msg_name = self.names[i].as_mut_ptr().cast();
            hdrs[i].msg_hdr.msg_namelen = NAME as libc::socklen_t;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_control = self.ctrls[i].0.as_mut_ptr().cast();
            hdrs[i].msg_hdr.msg_controllen = CMSG_BUF as _;
        }
        // SAFETY: every header points at live buffers of the stated sizes, owned by self
        // or this frame, for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().take(n).enumerate() {
            // `msg_controllen` is `size_t` on glibc but `socklen_t` on musl.
            #[allow(clippy::unnecessary_cast)]
            let ctrllen = h.msg_hdr.msg_controllen as usize;
            self.lens[i] = Received {
                len: h.msg_len as usize,
                namelen: h.msg_hdr.msg_namelen as usize,
                ctrllen,
                flags: h.msg_hdr.msg_flags,
            };
        }
        Ok(n)
    }
}

/// Sends one datagram with `sendmsg`, from source address `src` when given (`ctrl`
/// holds its pktinfo message for the duration of the call).
fn send_one(
    fd: RawFd,
    to: SocketAddr,
    src: Option<IpAddr>,
    bytes: &[u8],
    ctrl: &mut CmsgBuf,
) -> io::Result<usize> {
    let addr = SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
    hdr.msg_namelen = addr.len();
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if let Some(ip) = src {
        let n = encode_pktinfo(ctrl, ip);
        hdr.msg_control = ctrl.0.as_mut_ptr().cast();
        hdr.msg_controllen = n as _;
    }
    // SAFETY: the header points at the live address, iovec (over `bytes`, which the
    // kernel only reads) and control buffer for the duration of the call.
    let r = unsafe { libc::sendmsg(fd, &hdr, libc::MSG_DONTWAIT) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Sends the queued packets, one `sendmmsg` per run of the same socket, counting each
/// datagram as sent or failed.
fn flush(q: &mut OutQueue, counts: &mut WorkerCounts) {
    let mut start = 0;
    while start < q.n {
        let fd = q.fds[start];
        let mut end = start + 1;
        while end < q.n && q.fds[end] == fd {
            end += 1;
        }
        // SAFETY: all-zero is a valid bit pattern for these plain C structs.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let count = end - start;
        for j in 0..count {
            let k = start + j;
            iov[j].iov_base = q.bufs[k].as_mut_ptr().cast();
            iov[j].iov_len = q.lens[k];
            hdrs[j].msg_hdr.msg_name = q.addrs[k].as_ptr() as *mut libc::c_void;
            hdrs[j].msg_hdr.msg_namelen = q.addrs[k].len();
            hdrs[j].msg_hdr.msg_iov = &mut iov[j];
            hdrs[j].msg_hdr.msg_iovlen = 1;
            if q.ctrl_lens[k] > 0 {
                hdrs[j].msg_hdr.msg_control = q.ctrls[k].0.as_mut_ptr().cast();
                hdrs[j].msg_hdr.msg_controllen = q.ctrl_lens[k] as _;
            }
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: headers point at live buffers/addresses in `q` and `iov` for the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                let e = io::Error::last_os_error();
                tracing::trace!(error = %e, "sendmmsg failed");
                counts.send_failed(e.raw_os_error().unwrap_or(0));
                sent += 1; // skip the failing datagram
            } else {
                for h in hdrs.iter().skip(sent).take(r as usize) {
                    counts.sent(h.msg_len as usize, false);
                }
                sent += r as usize;
            }
        }
        start = end;
    }
    q.n = 0;
    q.addrs.clear();
}
