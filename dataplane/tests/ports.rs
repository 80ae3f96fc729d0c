//! PortPool churn, and ports coming back after the dataplane removes a connection.

mod common;

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mgw_dataplane::{
    BackendChoice, ConnCounters, ConnKey, ConnSpec, DataplaneCmd, DataplaneEvent, GroupId, Mode,
    PortPool, SourceCheck,
};

fn find_free_range(pairs: u16, start: u16) -> (u16, u16) {
    // Each test searches its own area (tests run in parallel), below the ephemeral ports.
    for base in (start..start + 4000).step_by(100) {
        let all_free = (base..base + 2 * pairs).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return (base, base + 2 * pairs - 1);
        }
    }
    panic!("no free port range");
}

#[test]
fn churn_leaks_nothing() {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let (low, high) = find_free_range(16, 10000);
    let mut pool = PortPool::new(ip, low, high).unwrap();
    assert_eq!(pool.capacity(), 16);
    let mut held = Vec::new();
    for cycle in 0..5000 {
        let p = pool.allocate().expect("a free pair");
        assert_eq!(p.port % 2, 0);
        assert_eq!(p.rtcp.local_addr().unwrap().port(), p.port + 1);
        held.push(p);
        if held.len() > 8 || cycle % 3 == 0 {
            let p = held.remove(0);
            let port = p.port;
            drop(p);
            pool.release(port);
        }
    }
    for p in held.drain(..) {
        let port = p.port;
        drop(p);
        pool.release(port);
    }
    assert_eq!(pool.in_use(), 0);
    // Every pair can be taken at once, then the range is exhausted.
    let all: Vec<_> = (0..16).map(|_| pool.allocate().unwrap()).collect();
    assert!(pool.allocate().is_err());
    drop(all);
}

#[test]
fn skips_ports_bound_elsewhere() {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let (low, high) = find_free_range(4, 14000);
    let blocker = UdpSocket::bind(("127.0.0.1", low + 1)).unwrap(); // RTCP of the first pair
    let mut pool = PortPool::new(ip, low, high).unwrap();
    let p = pool.allocate().unwrap();
    assert_eq!(p.port, low + 2);
    drop(blocker);
}

fn dataplane_churn(backend: BackendChoice) {
    let dp = start(backend);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let start = if backend == BackendChoice::Epoll {
        18000
    } else {
        22000
    };
    let (low, high) = find_free_range(4, start);
    let mut pool = PortPool::new(ip, low, high).unwrap();
    for i in 0..300u32 {
        let ports = pool.allocate().expect("pair free again after Removed");
        let port = ports.port;
        let key = ConnKey(1000 + i);
        let spec = ConnSpec {
            key,
            group: GroupId(i),
            rtp: ports.rtp,
            rtcp: ports.rtcp,
            mode: Mode::SendRecv,
            remote_rtp: None,
            remote_rtcp: None,
            source_check: SourceCheck::Latch,
            payloads: vec![pcmu(0)],
            ssrc: i,
            rtp_timeout: None,
            counters: Arc::new(ConnCounters::default()),
            channel: None,
            ptime_ms: 20,
            fmtp: Vec::new(),
            dtmf: Default::default(),
        };
        dp.send(DataplaneCmd::Add(Box::new(spec))).unwrap();
        if i % 10 == 0 {
            // Some traffic so receives and sends are in flight around the removal.
            let p = peer();
            p.send_to(&rtp(0, 1, 1, 1, b"x"), ("127.0.0.1", port))
                .unwrap();
        }
        dp.send(DataplaneCmd::Remove {
            key,
            group: GroupId(i),
        })
        .unwrap();
        assert!(wait_event(
            &dp,
            &DataplaneEvent::Removed { key },
            Duration::from_secs(5)
        ));
        UdpSocket::bind(("127.0.0.1", port)).expect("socket closed after Removed");
        pool.release(port);
    }
    assert_eq!(pool.in_use(), 0);
    dp.shutdown();
}
both_backends!(dataplane_churn, super::dataplane_churn);
