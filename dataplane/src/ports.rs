//! RTP/RTCP port pairs: an even RTP port and the odd RTCP port above it, taken
//! round-robin from a configured range, with the socket options media sockets need
//! (non-blocking, close-on-exec, DSCP EF, 1 MiB buffers where the sysctl limits allow,
//! and `IP_PKTINFO`/`IPV6_RECVPKTINFO` on wildcard binds: the backends read each
//! datagram's local address and send to that remote from the same address).
//!
//! ## Recycling
//! Creating, configuring, binding and later closing two sockets is most of the system
//! calls (and much of the kernel time) a CRCX/DLCX pair costs. With
//! [`PortPool::set_recycling`] the pool keeps its own descriptor (a `dup`) of every pair it
//! hands out. When the dataplane has closed its copies and the pair is
//! [released](PortPool::release), the still-bound sockets wait in a FIFO of idle pairs,
//! and a later [`PortPool::allocate`] hands out fresh duplicates of the oldest idle pair
//! after discarding whatever datagrams reached it while idle (so no media of the previous
//! call leaks into the next one). The oldest idle pair is reused first, so a port rests
//! for as long as the FIFO is deep before it is used again, like the round-robin order of
//! fresh binds. This relies on the dataplane's contract that a connection's sockets are
//! closed, and no operation refers to them any more, before `Removed` is reported. Beyond
//! the configured number of idle pairs (and whenever a descriptor cannot be duplicated,
//! e.g. at the descriptor limit) pairs are closed as before; the pool holds copies of at
//! most twice that many pairs (idle or in use), so recycling `n` pairs costs at most
//! `4 n` descriptors.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// DSCP EF (46) in the IP TOS byte.
const TOS_EF: u32 = 0xb8;
/// Socket buffer size for media sockets.
const SOCK_BUF: usize = 1 << 20;

/// A bad port range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortRangeError {
    /// `low` is above `high`.
    #[error("port range {low}-{high} is empty")]
    Empty {
        /// Low end.
        low: u16,
        /// High end.
        high: u16,
    },
    /// The range holds no even/odd pair.
    #[error("port range {low}-{high} holds no RTP/RTCP pair")]
    NoPair {
        /// Low end.
        low: u16,
        /// High end.
        high: u16,
    },
}

/// A bound RTP/RTCP socket pair.
#[derive(Debug)]
pub struct RtpPorts {
    /// RTP socket on the even port.
    pub rtp: UdpSocket,
    /// RTCP socket on `port + 1`.
    pub rtcp: UdpSocket,
    /// The RTP port.
    pub port: u16,
}

/// Most datagrams discarded from an idle pair's socket before it is reused; more than
/// that and the pair is closed instead (someone is flooding it).
const DRAIN_MAX: usize = 256;

/// The pool's own copies of a pair's sockets (see the module docs on recycling).
#[derive(Debug)]
struct Kept {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

/// Hands out even/odd port pairs from a range, round-robin.
#[derive(Debug)]
pub struct PortPool {
    bind: IpAddr,
    /// First even port of the range.
    first: u16,
    /// Number of pairs in the range.
    pairs: u16,
    /// Next pair index to try.
    next: u16,
    /// Pairs handed out, with the pool's copies when recycling.
    in_use: HashMap<u16, Option<Kept>>,
    /// Released pairs still bound, oldest first.
    idle: VecDeque<(u16, Kept)>,
    /// The ports in `idle`.
    idle_ports: HashSet<u16>,
    /// Most idle pairs kept (0: recycling off).
    recycle_max: usize,
    /// Pairs the pool holds copies of (in use or idle); at most twice `recycle_max`, so
    /// that recycling adds a bounded number of descriptors.
    kept: usize,
}

impl PortPool {
    /// A pool over `low..=high` on `bind`; RTP ports are the even ports `p` of the range
    /// with `p + 1` also in it.
    pub fn new(bind: IpAddr, low: u16, high: u16) -> Result<PortPool, PortRangeError> {
        if low > high {
            return Err(PortRangeError::Empty { low, high });
        }
        let first = low
            .checked_add(low % 2)
            .ok_or(PortRangeError::NoPair { low, high })?;
        if first >= high {
            return Err(PortRangeError::NoPair { low, high });
        }
        // Pairs p = first, first + 2, ... with p + 1 <= high (first < high here).
        let pairs = (high - 1 - first) / 2 + 1;
        Ok(PortPool {
            bind,
            first,
            pairs,
            next: 0,
            in_use: HashMap::new(),
            idle: VecDeque::new(),
            idle_ports: HashSet::new(),
            recycle_max: 0,
            kept: 0,
        })
    }

    /// Keeps up to `max_idle` released pairs bound for reuse (0, the default, turns
    /// recycling off: released pairs are closed). See the module docs. Lowering the
    /// limit closes the idle pairs above it.
    pub fn set_recycling(&mut self, max_idle: usize) {
        self.recycle_max = max_idle;
        while self.idle.len() > max_idle {
            if let Some((port, _)) = self.idle.pop_front() {
                self.idle_ports.remove(&port);
                self.kept = self.kept.saturating_sub(1);
            }
        }
    }

    /// Released pairs kept bound for reuse.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }

    /// Pairs currently handed out.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Pairs in the range.
    pub fn capacity(&self) -> usize {
        usize::from(self.pairs)
    }

    /// Hands out a pair: the oldest idle one when recycling, else binds the next free
    /// pair (skipping ports in use by anyone, `EADDRINUSE`).
    pub fn allocate(&mut self) -> io::Result<RtpPorts> {
        while let Some((port, kept)) = self.idle.pop_front() {
            self.idle_ports.remove(&port);
            self.kept = self.kept.saturating_sub(1);
            if let Some(ports) = self.reuse(port, kept) {
                return Ok(ports);
            }
        }
        for _ in 0..self.pairs {
            let idx = self.next;
            self.next = (self.next + 1) % self.pairs;
            let port = self.first + 2 * idx;
            if self.in_use.contains_key(&port) || self.idle_ports.contains(&port) {
                continue;
            }
            let rtp = match self.bind_one(port) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            };
            let rtcp = match self.bind_one(port + 1) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            };
            let kept = if self.kept < self.recycle_max.saturating_mul(2) {
                keep(&rtp, &rtcp)
            } else {
                None
            };
            self.kept += usize::from(kept.is_some());
            self.in_use.insert(port, kept);
            return Ok(RtpPorts { rtp, rtcp, port });
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "RTP port range exhausted",
        ))
    }

    /// Hands out an idle pair again: discards what arrived while it was idle and gives
    /// the caller fresh duplicates. `None` (the pair is closed) when that fails.
    fn reuse(&mut self, port: u16, kept: Kept) -> Option<RtpPorts> {
        if !drain(&kept.rtp) || !drain(&kept.rtcp) {
            return None;
        }
        let rtp = kept.rtp.try_clone().ok()?;
        let rtcp = kept.rtcp.try_clone().ok()?;
        self.kept += 1;
        self.in_use.insert(port, Some(kept));
        Some(RtpPorts { rtp, rtcp, port })
    }

    /// Returns a pair (after its sockets were closed, i.e. after `Removed`). When
    /// recycling, the pair stays bound and waits for reuse.
    pub fn release(&mut self, port: u16) {
        let Some(kept) = self.in_use.remove(&port) else {
            return;
        };
        if let Some(kept) = kept {
            if self.idle.len() < self.recycle_max {
                self.idle_ports.insert(port);
                self.idle.push_back((port, kept));
            } else {
                self.kept = self.kept.saturating_sub(1);
            }
        }
    }

    fn bind_one(&self, port: u16) -> io::Result<UdpSocket> {
        let addr = SocketAddr::new(self.bind, port);
        // Non-blocking and close-on-exec from the start: no fcntl calls.
        let sock = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )?;
        if addr.is_ipv4() {
            sock.set_tos_v4(TOS_EF)?;
        } else {
            sock.set_tclass_v6(TOS_EF)?;
        }
        // Buffer sizes are best effort (capped by net.core.*mem_max).
        let _ = sock.set_recv_buffer_size(SOCK_BUF);
        let _ = sock.set_send_buffer_size(SOCK_BUF);
        if self.bind.is_unspecified() {
            crate::sys::set_pktinfo(sock.as_raw_fd(), addr.is_ipv6())?;
        }
        sock.bind(&addr.into())?;
        Ok(sock.into())
    }
}

/// The pool's own duplicates of a pair just bound; `None` when a descriptor cannot be
/// duplicated (the pair is then simply not recycled).
fn keep(rtp: &UdpSocket, rtcp: &UdpSocket) -> Option<Kept> {
    Some(Kept {
        rtp: rtp.try_clone().ok()?,
        rtcp: rtcp.try_clone().ok()?,
    })
}

/// Discards every queued datagram of a non-blocking socket; false when the socket keeps
/// delivering (flooded) or fails.
fn drain(sock: &UdpSocket) -> bool {
    // A one-byte buffer is enough: a UDP receive discards the rest of the datagram.
    let mut buf = [0u8; 1];
    for _ in 0..DRAIN_MAX {
        match sock.recv(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            // ICMP errors (ECONNREFUSED) are consumed by the read that reports them.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_validation() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(PortPool::new(ip, 10, 5).is_err());
        assert!(PortPool::new(ip, 11, 11).is_err());
        assert!(PortPool::new(ip, 11, 12).is_err());
        assert_eq!(PortPool::new(ip, 10, 11).unwrap().capacity(), 1);
        assert_eq!(PortPool::new(ip, 16384, 32767).unwrap().capacity(), 8192);
        assert_eq!(PortPool::new(ip, 16384, 32766).unwrap().capacity(), 8191);
        assert_eq!(PortPool::new(ip, 65534, 65535).unwrap().capacity(), 1);
    }

    /// A free range of `pairs` pairs, searched from `start` (each test its own area).
    fn free_range(pairs: u16, start: u16) -> (u16, u16) {
        for base in (start..start + 4000).step_by(50) {
            let free = (base..base + 2 * pairs).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
            if free {
                return (base, base + 2 * pairs - 1);
            }
        }
        panic!("no free port range");
    }

    #[test]
    fn recycled_pairs_are_reused_oldest_first_and_drained() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (low, high) = free_range(4, 30000);
        let mut pool = PortPool::new(ip, low, high).unwrap();
        pool.set_recycling(8);
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        let (pa, pb) = (a.port, b.port);
        // The "dataplane" closes its copies; the pool keeps the ports bound.
        drop(a);
        drop(b);
        pool.release(pa);
        pool.release(pb);
        assert_eq!(pool.in_use(), 0);
        assert_eq!(pool.idle(), 2);
        assert!(
            UdpSocket::bind(("127.0.0.1", pa)).is_err(),
            "idle pair stays bound"
        );
        // Stale media reaches the idle pair.
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"stale-rtp", ("127.0.0.1", pa)).unwrap();
        peer.send_to(b"stale-rtcp", ("127.0.0.1", pa + 1)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = pool.allocate().unwrap();
        assert_eq!(again.port, pa, "the oldest idle pair first");
        assert_eq!(again.rtcp.local_addr().unwrap().port(), pa + 1);
        assert_eq!(pool.idle(), 1);
        // Nothing stale is left; new datagrams arrive on the handed-out copies.
        let mut buf = [0u8; 64];
        assert_eq!(
            again.rtp.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(
            again.rtcp.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        peer.send_to(b"fresh", ("127.0.0.1", pa)).unwrap();
        again.rtp.set_nonblocking(false).unwrap();
        again
            .rtp
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let n = again.rtp.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"fresh");
        // The next one is the other idle pair, then fresh binds.
        assert_eq!(pool.allocate().unwrap().port, pb);
        assert_eq!(pool.idle(), 0);
        let fresh = pool.allocate().unwrap();
        assert!(fresh.port != pa && fresh.port != pb);
    }

    #[test]
    fn recycling_is_bounded_and_can_be_turned_off() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (low, high) = free_range(4, 32000);
        let mut pool = PortPool::new(ip, low, high).unwrap();
        pool.set_recycling(1);
        let held: Vec<_> = (0..4).map(|_| pool.allocate().unwrap()).collect();
        assert!(pool.allocate().is_err(), "four pairs in the range");
        let ports: Vec<u16> = held.iter().map(|p| p.port).collect();
        drop(held);
        for &p in &ports {
            pool.release(p);
        }
        // One kept idle, the other three closed at once.
        assert_eq!(pool.idle(), 1);
        for &p in &ports[1..] {
            UdpSocket::bind(("127.0.0.1", p)).expect("closed beyond the idle limit");
        }
        // Releasing an unknown port changes nothing.
        pool.release(ports[1]);
        assert_eq!(pool.idle(), 1);
        pool.set_recycling(0);
        assert_eq!(pool.idle(), 0);
        UdpSocket::bind(("127.0.0.1", ports[0])).expect("closed when recycling stops");
        // Without recycling, a released pair is closed (the default).
        let p = pool.allocate().unwrap();
        let port = p.port;
        drop(p);
        pool.release(port);
        assert_eq!(pool.idle(), 0);
        UdpSocket::bind(("127.0.0.1", port)).expect("closed without recycling");
    }
}
