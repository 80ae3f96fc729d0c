//! Wildcard binds: packets leave from the local address the remote talks to
//! (`IP_PKTINFO`/`IPV6_PKTINFO`), on both backends.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mgw_dataplane::{
    BackendChoice, ConnCounters, ConnKey, ConnSpec, ConnUpdate, Dataplane, DataplaneCmd, GroupId,
    Mode, PayloadBinding, PortPool, RtpPorts, SourceCheck,
};

const T: Duration = Duration::from_secs(3);

/// A range of `pairs` RTP/RTCP pairs free on the wildcard address of `bind`, searched
/// from `start` (each test its own area; tests run in parallel).
fn free_range(bind: IpAddr, pairs: u16, start: u16) -> (u16, u16) {
    for base in (start..start + 1000).step_by(10) {
        let all_free = (base..base + 2 * pairs).all(|p| UdpSocket::bind((bind, p)).is_ok());
        if all_free {
            return (base, base + 2 * pairs - 1);
        }
    }
    panic!("no free port range");
}

/// Adds a connection on pre-bound ports with a strict remote.
fn add(dp: &Dataplane, key: u32, ports: RtpPorts, remote: SocketAddr, pt: PayloadBinding) {
    let spec = ConnSpec {
        key: ConnKey(key),
        group: GroupId(7),
        rtp: ports.rtp,
        rtcp: ports.rtcp,
        mode: Mode::SendRecv,
        remote_rtp: Some(remote),
        remote_rtcp: None,
        source_check: SourceCheck::Strict,
        payloads: vec![pt],
        ssrc: 0x7000 + key,
        rtp_timeout: None,
        counters: Arc::new(ConnCounters::default()),
        channel: None,
        ptime_ms: 20,
        fmtp: Vec::new(),
        dtmf: Default::default(),
    };
    dp.send(DataplaneCmd::Add(Box::new(spec)))
        .expect("queue has room");
}

/// Sends one RTP packet from `from` to `to` and returns where the relayed copy
/// arriving at `at` came from.
fn relay_once(from: &UdpSocket, to: SocketAddr, pt: u8, seq: u16, at: &UdpSocket) -> SocketAddr {
    from.send_to(&rtp(pt, seq, u32::from(seq) * 160, 0xabc, &[1; 160]), to)
        .unwrap();
    let got = recv_n(at, 1, T);
    assert_eq!(got.len(), 1, "packet relayed");
    got[0].1
}

fn wildcard_v4(backend: BackendChoice) {
    let dp = start(backend);
    let any: IpAddr = "0.0.0.0".parse().unwrap();
    let start_port = if backend == BackendChoice::Epoll {
        26000
    } else {
        27000
    };
    let (low, high) = free_range(any, 2, start_port);
    let mut pool = PortPool::new(any, low, high).unwrap();
    let (x, y) = (pool.allocate().unwrap(), pool.allocate().unwrap());
    let (px, py) = (x.port, y.port);
    let (pa, pb) = (peer(), peer());
    add(&dp, 1, x, pa.local_addr().unwrap(), pcmu(96));
    add(&dp, 2, y, pb.local_addr().unwrap(), pcmu(97));
    settle();
    // A talks to X on 127.0.0.2, B to Y on 127.0.0.3 (loopback holds all of 127/8).
    let x_addr: SocketAddr = ([127, 0, 0, 2], px).into();
    let y_addr: SocketAddr = ([127, 0, 0, 3], py).into();

    // B talks first: X has not heard from A yet, so the kernel picks the source
    // (127.0.0.1 towards 127.0.0.1) — what every packet did before pktinfo was used.
    let from = relay_once(&pb, y_addr, 97, 1, &pa);
    assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], px)));
    // A talks: relayed to B from the address B talks to.
    let from = relay_once(&pa, x_addr, 96, 1, &pb);
    assert_eq!(from, y_addr, "to B from 127.0.0.3");
    // B again: now to A from the address A talks to.
    let from = relay_once(&pb, y_addr, 97, 2, &pa);
    assert_eq!(from, x_addr, "to A from 127.0.0.2");
    for seq in 3..20 {
        assert_eq!(relay_once(&pa, x_addr, 96, seq, &pb), y_addr);
        assert_eq!(relay_once(&pb, y_addr, 97, seq, &pa), x_addr);
    }
    // Echo modes answer from the address the packet came in on.
    dp.send(DataplaneCmd::Modify {
        key: ConnKey(1),
        group: GroupId(7),
        update: Box::new(ConnUpdate {
            mode: Some(Mode::Loopback),
            ..ConnUpdate::default()
        }),
    })
    .unwrap();
    settle();
    assert_eq!(
        relay_once(&pa, x_addr, 96, 50, &pa),
        x_addr,
        "echo from 127.0.0.2"
    );
    // Every relayed packet was sent (a bad control message would fail with EINVAL).
    assert!(wait_until(T, || {
        let s = dp.worker_stats();
        s.iter()
            .map(|w| w.tx_packets - w.rtcp_tx_packets)
            .sum::<u64>()
            == 38
    }));
    assert_eq!(
        dp.worker_stats()
            .iter()
            .map(|w| w.drops.total())
            .sum::<u64>(),
        0
    );
    dp.shutdown();
}
both_backends!(wildcard_v4, super::wildcard_v4);

fn wildcard_v6(backend: BackendChoice) {
    let Ok(pa6) = UdpSocket::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    pa6.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let dp = start(backend);
    let any: IpAddr = "::".parse().unwrap();
    let start_port = if backend == BackendChoice::Epoll {
        28000
    } else {
        29000
    };
    let (low, high) = free_range(any, 2, start_port);
    let mut pool = PortPool::new(any, low, high).unwrap();
    let (x, y) = (pool.allocate().unwrap(), pool.allocate().unwrap());
    let (px, py) = (x.port, y.port);
    // A over IPv6; B over IPv4 to the same (dual-stack) wildcard socket family.
    let dual = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
        .map(|s| s.trim() == "0")
        .unwrap_or(false);
    let pb = peer();
    let pb_remote: SocketAddr = if dual {
        format!("[::ffff:127.0.0.1]:{}", pb.local_addr().unwrap().port())
            .parse()
            .unwrap()
    } else {
        "[::1]:9".parse().unwrap()
    };
    add(&dp, 1, x, pa6.local_addr().unwrap(), pcmu(96));
    add(&dp, 2, y, pb_remote, pcmu(97));
    settle();
    let x_addr: SocketAddr = format!("[::1]:{px}").parse().unwrap();
    if dual {
        let y_addr: SocketAddr = ([127, 0, 0, 3], py).into();
        relay_once(&pb, y_addr, 97, 1, &pa6);
        // To A (IPv6) from ::1 with an IPV6_PKTINFO source; to B (IPv4 through the
        // IPv6 socket) from the v4-mapped local address B talks to.
        assert_eq!(relay_once(&pa6, x_addr, 96, 1, &pb), y_addr);
        assert_eq!(relay_once(&pb, y_addr, 97, 2, &pa6), x_addr);
        assert_eq!(relay_once(&pa6, x_addr, 96, 2, &pb), y_addr);
    } else {
        // v6-only host: A's packets still go out with an IPV6_PKTINFO source (echo).
        dp.send(DataplaneCmd::Modify {
            key: ConnKey(1),
            group: GroupId(7),
            update: Box::new(ConnUpdate {
                mode: Some(Mode::Loopback),
                ..ConnUpdate::default()
            }),
        })
        .unwrap();
        settle();
        assert_eq!(relay_once(&pa6, x_addr, 96, 1, &pa6), x_addr);
        assert_eq!(relay_once(&pa6, x_addr, 96, 2, &pa6), x_addr);
    }
    dp.shutdown();
}
both_backends!(wildcard_v6, super::wildcard_v6);
