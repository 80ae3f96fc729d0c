//! Thin system-call helpers: the eventfd waker, socket options socket2 lacks, and
//! socket-address decoding from raw kernel bytes.
//!
//! This is one of the three modules (with `uring` and `epoll`) allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Wakes a worker blocked in `io_uring_enter` or `epoll_wait`.
///
/// `pending` skips redundant writes: the sender sets it and writes the eventfd only when
/// it was clear; the worker clears it right before draining its command channel.
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    /// A new non-blocking eventfd.
    pub(crate) fn new() -> io::Result<Waker> {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            pending: AtomicBool::new(false),
        })
    }

    /// The eventfd descriptor (for registering with the ring or epoll).
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Wakes the worker unless a wake is already pending.
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.force_wake();
        }
    }

    /// Writes the eventfd unconditionally.
    pub(crate) fn force_wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local u64 to an eventfd we own. EAGAIN (counter
        // saturated) means a wake is already pending, so the result can be ignored.
        let _ = unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    /// Called by the worker before draining its queue: later sends will wake it again.
    pub(crate) fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }

    /// Reads (resets) the eventfd counter without blocking (epoll backend).
    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local u64; the fd is non-blocking.
        let _ = unsafe { libc::read(self.fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// Enables `IP_PKTINFO` on an IPv4 socket (so the local address of a wildcard-bound
/// socket is known per packet).
pub(crate) fn set_pktinfo(fd: RawFd, v6: bool) -> io::Result<()> {
    let on: libc::c_int = 1;
    let (level, opt) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Decodes a `sockaddr_in`/`sockaddr_in6` written by the kernel. Pure byte parsing: any
/// other family or a short buffer gives `None`.
pub(crate) fn sockaddr_from_bytes(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if family == libc::AF_INET as u16 {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if family == libc::AF_INET6 as u16 {
        let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flow,
            scope,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_v4_sockaddr() {
        let sa = socket2::SockAddr::from("127.0.0.1:4000".parse::<SocketAddr>().unwrap());
        // SAFETY: test-only view of the storage bytes socket2 filled in.
        let bytes =
            unsafe { std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), sa.len() as usize) };
        assert_eq!(
            sockaddr_from_bytes(bytes),
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(sockaddr_from_bytes(&[0, 0]), None);
    }

    #[test]
    fn waker_roundtrip() {
        let w = Waker::new().unwrap();
        w.wake();
        w.wake();
        w.drain();
        w.clear();
    }
}
