//! Thin system-call helpers: the eventfd waker, socket options socket2 lacks, the
//! worker thread's CPU clock, socket-address decoding from raw kernel bytes, and the
//! `IP_PKTINFO`/`IPV6_PKTINFO` control messages (parsed and built as plain bytes, in the
//! kernel's `cmsghdr` layout, without allocation).
//!
//! This is one of the three modules (with `uring` and `epoll`) allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
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

/// Enables `IP_PKTINFO` (IPv4) or `IPV6_RECVPKTINFO` (IPv6) on a socket, so the local
/// address each datagram of a wildcard-bound socket was sent to is known per packet.
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

/// CPU time consumed by the calling thread, in nanoseconds (0 if the clock is
/// unavailable). Called once per tick by each worker, never per packet.
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec into a live local.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Room for one control message: an `in6_pktinfo` (the larger of the two) needs 40
/// bytes on 64-bit targets.
pub(crate) const CMSG_BUF: usize = 64;

/// A control-message buffer, aligned like `cmsghdr`. Lives with the memory of the
/// receive or send it belongs to.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(8))]
pub(crate) struct CmsgBuf(pub(crate) [u8; CMSG_BUF]);

impl CmsgBuf {
    /// All zero.
    pub(crate) const fn new() -> CmsgBuf {
        CmsgBuf([0; CMSG_BUF])
    }
}

/// Width of `cmsghdr.cmsg_len` (`size_t` in the kernel ABI) and the `CMSG_ALIGN` unit.
const CMSG_W: usize = std::mem::size_of::<usize>();
/// Kernel `CMSG_ALIGN`.
const fn cmsg_align(n: usize) -> usize {
    (n + CMSG_W - 1) & !(CMSG_W - 1)
}
/// Aligned size of a `cmsghdr` (`size_t len; int level; int type;`).
const CMSG_HDR: usize = cmsg_align(CMSG_W + 8);
/// `sizeof(struct in_pktinfo)`: ifindex, spec_dst, addr.
const IN_PKTINFO: usize = 12;
/// `sizeof(struct in6_pktinfo)`: addr, ifindex.
const IN6_PKTINFO: usize = 20;

fn usable_v4(a: Ipv4Addr) -> bool {
    !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast()
}

/// Finds the local (destination) address of a received datagram in its control data:
/// `IP_PKTINFO` (`ipi_spec_dst`, else `ipi_addr`) or `IPV6_PKTINFO` (`ipi6_addr`).
/// Pure byte parsing: malformed, truncated or unusable (unspecified, broadcast,
/// multicast) data gives `None`.
pub(crate) fn parse_pktinfo(control: &[u8]) -> Option<IpAddr> {
    let mut off = 0usize;
    loop {
        let hdr = control.get(off..off.checked_add(CMSG_HDR)?)?;
        let len = usize::from_ne_bytes(hdr.get(..CMSG_W)?.try_into().ok()?);
        let level = i32::from_ne_bytes(hdr.get(CMSG_W..CMSG_W + 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(hdr.get(CMSG_W + 4..CMSG_W + 8)?.try_into().ok()?);
        if len < CMSG_HDR {
            return None;
        }
        let data = control.get(off + CMSG_HDR..off.checked_add(len)?)?;
        if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
            let quad = |r: std::ops::Range<usize>| -> Option<Ipv4Addr> {
                let b: [u8; 4] = data.get(r)?.try_into().ok()?;
                Some(Ipv4Addr::from(b))
            };
            let spec_dst = quad(4..8).filter(|a| usable_v4(*a));
            let addr = quad(8..12).filter(|a| usable_v4(*a));
            return spec_dst.or(addr).map(IpAddr::V4);
        }
        if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
            let b: [u8; 16] = data.get(..16)?.try_into().ok()?;
            let a = Ipv6Addr::from(b);
            let usable = !a.is_unspecified() && !a.is_multicast();
            return usable.then_some(IpAddr::V6(a));
        }
        off = off.checked_add(cmsg_align(len))?;
    }
}

/// Writes an `IP_PKTINFO` (IPv4: `ipi_spec_dst` = `src`) or `IPV6_PKTINFO` (IPv6:
/// `ipi6_addr` = `src`) control message asking the kernel to send from `src`; returns
/// the `msg_controllen` to use (`CMSG_SPACE` of the payload).
pub(crate) fn encode_pktinfo(buf: &mut CmsgBuf, src: IpAddr) -> usize {
    let (level, kind, data_len) = match src {
        IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_PKTINFO, IN_PKTINFO),
        IpAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, IN6_PKTINFO),
    };
    let len = CMSG_HDR + data_len;
    let space = cmsg_align(len);
    let b = &mut buf.0[..space];
    b.fill(0);
    b[..CMSG_W].copy_from_slice(&len.to_ne_bytes());
    b[CMSG_W..CMSG_W + 4].copy_from_slice(&level.to_ne_bytes());
    b[CMSG_W + 4..CMSG_W + 8].copy_from_slice(&kind.to_ne_bytes());
    match src {
        // in_pktinfo: ifindex 0 (routing decides), spec_dst = source, addr unused.
        IpAddr::V4(a) => b[CMSG_HDR + 4..CMSG_HDR + 8].copy_from_slice(&a.octets()),
        // in6_pktinfo: addr = source, ifindex 0.
        IpAddr::V6(a) => b[CMSG_HDR..CMSG_HDR + 16].copy_from_slice(&a.octets()),
    }
    space
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

    #[test]
    fn pktinfo_layout_matches_libc() {
        // SAFETY: CMSG_LEN/CMSG_SPACE are pure arithmetic.
        let (len4, space4, len6, space6) = unsafe {
            (
                libc::CMSG_LEN(IN_PKTINFO as u32) as usize,
                libc::CMSG_SPACE(IN_PKTINFO as u32) as usize,
                libc::CMSG_LEN(IN6_PKTINFO as u32) as usize,
                libc::CMSG_SPACE(IN6_PKTINFO as u32) as usize,
            )
        };
        assert_eq!(CMSG_HDR + IN_PKTINFO, len4);
        assert_eq!(std::mem::size_of::<libc::in_pktinfo>(), IN_PKTINFO);
        assert_eq!(std::mem::size_of::<libc::in6_pktinfo>(), IN6_PKTINFO);
        assert_eq!(std::mem::size_of::<libc::cmsghdr>(), CMSG_HDR);
        assert!(space6 <= CMSG_BUF);
        let mut b = CmsgBuf::new();
        let v4: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(encode_pktinfo(&mut b, v4), space4);
        assert_eq!(
            usize::from_ne_bytes(b.0[..CMSG_W].try_into().unwrap()),
            len4
        );
        assert_eq!(parse_pktinfo(&b.0[..space4]), Some(v4));
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(encode_pktinfo(&mut b, v6), space6);
        assert_eq!(
            usize::from_ne_bytes(b.0[..CMSG_W].try_into().unwrap()),
            len6
        );
        assert_eq!(parse_pktinfo(&b.0[..space6]), Some(v6));
    }

    #[test]
    fn pktinfo_rejects_garbage() {
        let mut b = CmsgBuf::new();
        let space = encode_pktinfo(&mut b, "10.0.0.1".parse().unwrap());
        // Truncated, empty, a zero-length header, a bogus huge length: no panic, no address.
        for n in 0..space - 4 {
            assert_eq!(parse_pktinfo(&b.0[..n]), None, "truncated at {n}");
        }
        assert_eq!(parse_pktinfo(&[]), None);
        assert_eq!(parse_pktinfo(&[0u8; CMSG_BUF]), None);
        let mut huge = b;
        huge.0[..CMSG_W].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(parse_pktinfo(&huge.0), None);
        // Multicast/unspecified destinations are not usable as a source.
        encode_pktinfo(&mut b, "224.0.0.1".parse().unwrap());
        assert_eq!(parse_pktinfo(&b.0[..space]), None);
        encode_pktinfo(&mut b, "0.0.0.0".parse().unwrap());
        assert_eq!(parse_pktinfo(&b.0[..space]), None);
        // An unrelated message first, then IP_PKTINFO: the second one is found.
        let mut two = [0u8; 2 * CMSG_BUF];
        let other_len = CMSG_HDR + 4;
        two[..CMSG_W].copy_from_slice(&other_len.to_ne_bytes());
        two[CMSG_W..CMSG_W + 4].copy_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
        two[CMSG_W + 4..CMSG_W + 8].copy_from_slice(&libc::IP_TOS.to_ne_bytes());
        let at = cmsg_align(other_len);
        encode_pktinfo(&mut b, "10.0.0.9".parse().unwrap());
        two[at..at + space].copy_from_slice(&b.0[..space]);
        assert_eq!(
            parse_pktinfo(&two[..at + space]),
            Some("10.0.0.9".parse().unwrap())
        );
    }

    #[test]
    fn thread_cpu_clock_advances() {
        let a = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_ns() > a, "{x}");
    }
}
