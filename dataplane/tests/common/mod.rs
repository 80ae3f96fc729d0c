//! Shared helpers for the loopback tests.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mgw_dataplane::{
    BackendChoice, Codec, ConnCounters, ConnKey, ConnSpec, ConnUpdate, Dataplane, DataplaneCmd,
    DataplaneConfig, DataplaneEvent, GroupId, Mode, PayloadBinding, SourceCheck,
};

pub fn start(backend: BackendChoice) -> Dataplane {
    Dataplane::start(DataplaneConfig {
        workers: Some(2),
        pin: false,
        backend,
        cmd_capacity: 1024,
        event_capacity: 4096,
        ..DataplaneConfig::default()
    })
    .expect("dataplane starts")
}

pub fn pcmu(pt: u8) -> PayloadBinding {
    PayloadBinding {
        pt,
        codec: Codec {
            name: "PCMU".into(),
            clock_rate: 8000,
            channels: 1,
        },
    }
}

pub fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

pub struct Leg {
    pub key: ConnKey,
    pub group: GroupId,
    pub rtp_addr: SocketAddr,
    pub rtcp_addr: SocketAddr,
    pub counters: Arc<ConnCounters>,
    pub ssrc: u32,
}

pub struct LegOpts {
    pub mode: Mode,
    pub remote: Option<SocketAddr>,
    pub check: SourceCheck,
    pub payloads: Vec<PayloadBinding>,
    pub timeout: Option<Duration>,
}

impl Default for LegOpts {
    fn default() -> Self {
        LegOpts {
            mode: Mode::SendRecv,
            remote: None,
            check: SourceCheck::Strict,
            payloads: vec![pcmu(0)],
            timeout: None,
        }
    }
}

pub fn add_leg(dp: &Dataplane, key: u32, group: u32, o: LegOpts) -> Leg {
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtcp = UdpSocket::bind("127.0.0.1:0").unwrap();
    rtp.set_nonblocking(true).unwrap();
    rtcp.set_nonblocking(true).unwrap();
    let counters = Arc::new(ConnCounters::default());
    let ssrc = 0x5000_0000 + key;
    let leg = Leg {
        key: ConnKey(key),
        group: GroupId(group),
        rtp_addr: rtp.local_addr().unwrap(),
        rtcp_addr: rtcp.local_addr().unwrap(),
        counters: Arc::clone(&counters),
        ssrc,
    };
    let spec = ConnSpec {
        key: ConnKey(key),
        group: GroupId(group),
        rtp,
        rtcp,
        mode: o.mode,
        remote_rtp: o.remote,
        remote_rtcp: None,
        source_check: o.check,
        payloads: o.payloads,
        ssrc,
        rtp_timeout: o.timeout,
        counters,
        channel: None,
        ptime_ms: 20,
        fmtp: Vec::new(),
        dtmf: Default::default(),
    };
    dp.send(DataplaneCmd::Add(Box::new(spec)))
        .expect("queue has room");
    leg
}

pub fn modify(dp: &Dataplane, leg: &Leg, update: ConnUpdate) {
    dp.send(DataplaneCmd::Modify {
        key: leg.key,
        group: leg.group,
        update: Box::new(update),
    })
    .expect("queue has room");
    // Commands and packets travel different paths: give the worker time to apply it.
    std::thread::sleep(Duration::from_millis(50));
}

pub fn remove(dp: &Dataplane, leg: &Leg) {
    dp.send(DataplaneCmd::Remove {
        key: leg.key,
        group: leg.group,
    })
    .expect("queue has room");
}

/// Waits for the worker to have applied earlier Add commands.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, pt & 0x7f];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hdr {
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub len: usize,
}

pub fn hdr(b: &[u8]) -> Hdr {
    Hdr {
        pt: b[1] & 0x7f,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        len: b.len(),
    }
}

/// Receives up to `n` datagrams within `timeout` (stops early at `n`).
pub fn recv_n(s: &UdpSocket, n: usize, timeout: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while out.len() < n && Instant::now() < deadline {
        if let Ok((len, from)) = s.recv_from(&mut buf) {
            out.push((buf[..len].to_vec(), from));
        }
    }
    out
}

/// Counts datagrams arriving within `window` (for "nothing arrives" checks).
pub fn drain_for(s: &UdpSocket, window: Duration) -> usize {
    recv_n(s, usize::MAX, window).len()
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

pub fn wait_event(dp: &Dataplane, want: &DataplaneEvent, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match dp.events().recv_timeout(left) {
            Ok(ev) if &ev == want => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

/// Generates one test per backend.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            #[test]
            fn epoll() {
                $body(mgw_dataplane::BackendChoice::Epoll);
            }
            #[test]
            fn io_uring() {
                $body(mgw_dataplane::BackendChoice::IoUring);
            }
        }
    };
}
