//! Test support: runs the real `mgw` binary on loopback and plays the call agent.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mgcp::{parse_datagram, Message, Response};

/// A running `mgw run`, killed on drop.
pub struct Gateway {
    pub child: Child,
    pub mgcp: SocketAddr,
    pub ca: CallAgent,
    pub domain: String,
    /// The admin HTTP address.
    pub http: Option<SocketAddr>,
}

static NEXT_RANGE: AtomicU32 = AtomicU32::new(0);

/// A port range unlikely to collide with other tests running at the same time.
pub fn port_range() -> (u16, u16) {
    let slot = NEXT_RANGE.fetch_add(1, Ordering::Relaxed);
    // Below the kernel's ephemeral ports (32768+), so sockets bound to port 0 by tests
    // never sit in a gateway's range.
    let base = 13_000 + ((std::process::id() % 25) * 700) as u16 + (slot as u16 % 5) * 140;
    (base, base + 139)
}

impl Gateway {
    /// Starts the gateway with a fresh call agent socket; extra flags appended.
    pub fn start(extra: &[&str]) -> Gateway {
        let ca = CallAgent::bind("127.0.0.1:0");
        Self::start_with(ca, extra)
    }

    /// Starts the gateway pointed at an existing call agent socket.
    pub fn start_with(ca: CallAgent, extra: &[&str]) -> Gateway {
        Self::start_opts(ca, extra, None)
    }

    /// Starts the gateway with its log (stderr) written to `log`, answers the startup RSIP.
    pub fn start_logged(extra: &[&str], log: &std::path::Path) -> Gateway {
        let ca = CallAgent::bind("127.0.0.1:0");
        let gw = Self::start_opts(ca, extra, Some(log));
        let (rsip, from) = gw
            .ca
            .recv_command(Duration::from_secs(5))
            .expect("startup RSIP");
        gw.ca.reply(from, &format!("200 {} OK\r\n", rsip.tid));
        gw
    }

    fn start_opts(ca: CallAgent, extra: &[&str], log: Option<&std::path::Path>) -> Gateway {
        let (lo, hi) = port_range();
        let ca_addr = ca.addr().to_string();
        let range = format!("{lo}-{hi}");
        let mut args = vec![
            "run",
            "--mgcp-bind",
            "127.0.0.1:0",
            "--domain",
            "mgw",
            "--rtp-bind",
            "127.0.0.1",
            "--rtp-ports",
            &range,
            "--workers",
            "1",
            "--no-pin",
            "--http-bind",
            "127.0.0.1:0",
        ];
        // With --config and no --call-agent, the file names the call agents.
        let has_ca = extra.contains(&"--call-agent") || extra.contains(&"--config");
        if !has_ca {
            args.push("--call-agent");
            args.push(&ca_addr);
        }
        args.extend_from_slice(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_mgw"))
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("MGW_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(match log {
                Some(p) => Stdio::from(std::fs::File::create(p).expect("log file")),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("spawn mgw");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut http = None;
        let mgcp = loop {
            let line = lines
                .next()
                .expect("mgw exited before it was ready")
                .expect("read");
            if let Some(a) = line.strip_prefix("mgw: admin HTTP on ") {
                http = a.trim().parse().ok();
            }
            if let Some(a) = line.strip_prefix("mgw: MGCP listening on ") {
                break a.trim().parse().expect("address");
            }
        };
        Gateway {
            child,
            mgcp,
            ca,
            domain: "mgw".into(),
            http,
        }
    }

    /// Starts, answers the startup RSIP, and returns the gateway.
    pub fn start_ready(extra: &[&str]) -> Gateway {
        let gw = Self::start(extra);
        let (rsip, from) = gw
            .ca
            .recv_command(Duration::from_secs(5))
            .expect("startup RSIP");
        assert_eq!(rsip.verb, mgcp::Verb::Rsip);
        gw.ca.reply(from, &format!("200 {} OK\r\n", rsip.tid));
        gw
    }

    /// Sends a command text and waits for its final response.
    pub fn cmd(&self, text: &str) -> Response {
        self.ca.request(self.mgcp, text)
    }

    /// Sends SIGTERM.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    /// Waits for exit (bounded).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET on loopback; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The call-agent side: a UDP socket speaking MGCP.
pub struct CallAgent {
    pub sock: UdpSocket,
}

static NEXT_TID: AtomicU32 = AtomicU32::new(1000);

/// A fresh transaction id.
pub fn tid() -> u32 {
    NEXT_TID.fetch_add(1, Ordering::Relaxed)
}

impl CallAgent {
    pub fn bind(addr: &str) -> CallAgent {
        let sock = UdpSocket::bind(addr).expect("bind call agent");
        CallAgent { sock }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("addr")
    }

    pub fn send(&self, to: SocketAddr, text: &str) {
        self.sock.send_to(text.as_bytes(), to).expect("send");
    }

    pub fn reply(&self, to: SocketAddr, text: &str) {
        self.send(to, text);
    }

    /// Receives one datagram's messages (bounded wait).
    pub fn recv(&self, limit: Duration) -> Option<(Vec<Message>, SocketAddr, String)> {
        self.sock.set_read_timeout(Some(limit)).ok()?;
        let mut buf = [0u8; 65536];
        let (n, from) = self.sock.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let msgs = parse_datagram(&buf[..n])
            .into_iter()
            .map(|m| m.expect("gateway sent something unparsable"))
            .collect();
        Some((msgs, from, text))
    }

    /// Waits for a command from the gateway, skipping responses.
    pub fn recv_command(&self, limit: Duration) -> Option<(mgcp::Command, SocketAddr)> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            let (msgs, from, _) = self.recv(
                limit
                    .saturating_sub(t0.elapsed())
                    .max(Duration::from_millis(1)),
            )?;
            for m in msgs {
                if let Message::Command(c) = m {
                    return Some((c, from));
                }
            }
        }
        None
    }

    /// Sends `text` and waits for the final response with the same transaction id,
    /// retransmitting like a call agent would (every 500 ms, 6 tries).
    pub fn request(&self, to: SocketAddr, text: &str) -> Response {
        let want: u32 = text
            .split_whitespace()
            .nth(1)
            .and_then(|t| t.parse().ok())
            .expect("command text has a transaction id");
        for _ in 0..6 {
            self.send(to, text);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_millis(500) {
                let Some((msgs, from, _)) = self.recv(Duration::from_millis(500)) else {
                    break;
                };
                for m in msgs {
                    match m {
                        Message::Response(r) if r.tid.get() == want && r.code.is_final() => {
                            return r
                        }
                        Message::Command(c) if c.verb == mgcp::Verb::Rsip => {
                            // A late startup RSIP: answer it.
                            self.reply(from, &format!("200 {} OK\r\n", c.tid));
                        }
                        _ => {}
                    }
                }
            }
        }
        panic!("no response to:\n{text}");
    }
}

/// A minimal RTP packet.
pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + payload.len());
    v.push(0x80);
    v.push(pt & 0x7f);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// The `m=audio` port of an SDP body.
pub fn sdp_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("m=audio port")
}

/// A minimal RFC 3435-style remote SDP pointing at `port` on 127.0.0.1.
pub fn remote_sdp(port: u16, pts: &str) -> String {
    format!("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio {port} RTP/AVP {pts}\r\n")
}

/// A UDP socket on loopback standing in for an RTP peer.
pub fn rtp_peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind rtp peer");
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    s
}
