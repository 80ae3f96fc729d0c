//! RTP/RTCP port pairs: an even RTP port and the odd RTCP port above it, taken
//! round-robin from a configured range, with the socket options media sockets need
//! (non-blocking, close-on-exec, DSCP EF, 1 MiB buffers where the sysctl limits allow,
//! and `IP_PKTINFO`/`IPV6_RECVPKTINFO` on wildcard binds: the backends read each
//! datagram's local address and send to that remote from the same address).

use std::collections::HashSet;
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
    in_use: HashSet<u16>,
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
            in_use: HashSet::new(),
        })
    }

    /// Pairs currently handed out.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Pairs in the range.
    pub fn capacity(&self) -> usize {
        usize::from(self.pairs)
    }

    /// Binds the next free pair (skipping ports in use by anyone, `EADDRINUSE`).
    pub fn allocate(&mut self) -> io::Result<RtpPorts> {
        for _ in 0..self.pairs {
            let idx = self.next;
            self.next = (self.next + 1) % self.pairs;
            let port = self.first + 2 * idx;
            if self.in_use.contains(&port) {
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
            self.in_use.insert(port);
            return Ok(RtpPorts { rtp, rtcp, port });
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "RTP port range exhausted",
        ))
    }

    /// Returns a pair (after its sockets were closed, i.e. after `Removed`).
    pub fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }

    fn bind_one(&self, port: u16) -> io::Result<UdpSocket> {
        let addr = SocketAddr::new(self.bind, port);
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_nonblocking(true)?;
        sock.set_cloexec(true)?;
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
}
