//! One MGCP transaction from the call agent's side over a blocking UDP socket.
//!
//! The command is sent, then retransmitted as RFC 3435 §3.5.3 asks: the first timer is
//! 200 ms, it doubles on every retransmission up to 4 s, and at most 7 retransmissions
//! follow the first send. A provisional response (`1xx`, §3.5.6) stops the
//! retransmissions: the gateway has the command and is working on it, so the tool only
//! waits for the final response until the overall timeout. A final response that carries
//! an empty `K:` (it followed a provisional one) is acknowledged with `000`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mgcp::{parse_datagram, Message, ParamName, Response, ReturnCode, TransactionId};

/// First retransmission timer (RFC 3435 §3.5.3).
const INITIAL_RTO: Duration = Duration::from_millis(200);
/// Cap of the doubling retransmission timer.
const MAX_RTO: Duration = Duration::from_secs(4);
/// Retransmissions after the first transmission, at most.
const MAX_RETRANSMISSIONS: u32 = 7;

/// How a transaction ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The final response arrived.
    Final {
        /// The parsed response.
        response: Response,
        /// The response as text (the datagram's text when it held only this response).
        text: String,
        /// Whether a `000` response acknowledgement was sent for it.
        acked: bool,
    },
    /// No final response before the deadline.
    NoResponse {
        /// Transmissions of the command, the first one included.
        sent: u32,
        /// Whether a provisional response had been received.
        provisional: bool,
    },
}

/// Sends `wire` (a command with transaction id `tid`) to `gateway` and waits up to
/// `timeout` for its final response. Only socket errors are `Err`.
pub(crate) fn transact(
    sock: &UdpSocket,
    gateway: SocketAddr,
    wire: &[u8],
    tid: TransactionId,
    timeout: Duration,
) -> io::Result<Outcome> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut rto = INITIAL_RTO;
    let mut next_send = start;
    let mut sent = 0u32;
    let mut provisional = false;
    let mut buf = vec![0u8; 65_536];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Outcome::NoResponse { sent, provisional });
        }
        let retransmitting = !provisional && sent <= MAX_RETRANSMISSIONS;
        if retransmitting && now >= next_send {
            sock.send_to(wire, gateway)?;
            sent += 1;
            next_send = now + rto;
            rto = (rto * 2).min(MAX_RTO);
        }
        let until = if !provisional && sent <= MAX_RETRANSMISSIONS {
            next_send.min(deadline)
        } else {
            deadline
        };
        let Some(left) = until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            continue;
        };
        sock.set_read_timeout(Some(left))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            // A stray ICMP error (e.g. port unreachable) on some platforms; keep waiting.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        let msgs: Vec<Message> = parse_datagram(&buf[..n])
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        let single = msgs.len() == 1;
        for m in msgs {
            let Message::Response(r) = m else { continue };
            if r.tid != tid {
                continue;
            }
            if r.code.is_provisional() {
                provisional = true;
                continue;
            }
            if !r.code.is_final() {
                continue;
            }
            // An empty `K:` asks for a response acknowledgement (RFC 3435 §3.5.6).
            let acked = r.params.contains(&ParamName::ResponseAck);
            if acked {
                let ack = Message::Response(
                    Response::new(ReturnCode::RESPONSE_ACK, tid).with_comment(""),
                );
                sock.send_to(&ack.to_bytes(), from)?;
            }
            let text = if single {
                String::from_utf8_lossy(&buf[..n]).into_owned()
            } else {
                String::from_utf8_lossy(&Message::Response(r.clone()).to_bytes()).into_owned()
            };
            return Ok(Outcome::Final {
                response: r,
                text: text.replace("\r\n", "\n"),
                acked,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        (a, b)
    }

    #[test]
    fn retransmits_then_takes_the_final_response() {
        let (ca, gw) = pair();
        let gw_addr = gw.local_addr().unwrap();
        let tid = TransactionId::new(42).unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            // Ignore the first transmission; answer the retransmission.
            let (n1, _) = gw.recv_from(&mut buf).unwrap();
            let first = buf[..n1].to_vec();
            let (n2, from) = gw.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n2], &first[..], "retransmission is byte-identical");
            gw.send_to(b"200 41 wrong tid\r\n", from).unwrap();
            gw.send_to(b"200 42 OK\r\nI: 7\r\n", from).unwrap();
        });
        let out = transact(
            &ca,
            gw_addr,
            b"AUEP 42 x@gw MGCP 1.0\r\n",
            tid,
            Duration::from_secs(3),
        )
        .unwrap();
        t.join().unwrap();
        match out {
            Outcome::Final {
                response,
                text,
                acked,
            } => {
                assert_eq!(response.code, ReturnCode::OK);
                assert_eq!(response.params.get(&ParamName::ConnectionId), Some("7"));
                assert_eq!(text, "200 42 OK\nI: 7\n");
                assert!(!acked);
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn provisional_stops_retransmission_and_final_with_k_is_acked() {
        let (ca, gw) = pair();
        let gw_addr = gw.local_addr().unwrap();
        let tid = TransactionId::new(7).unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let (_, from) = gw.recv_from(&mut buf).unwrap();
            gw.send_to(b"100 7 in progress\r\n", from).unwrap();
            // Nothing more may arrive for a while: no retransmissions after the 100.
            gw.set_read_timeout(Some(Duration::from_millis(900)))
                .unwrap();
            assert!(
                gw.recv_from(&mut buf).is_err(),
                "retransmitted after a provisional"
            );
            gw.send_to(b"200 7 OK\r\nK:\r\n", from).unwrap();
            gw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let (n, _) = gw.recv_from(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let out = transact(
            &ca,
            gw_addr,
            b"AUEP 7 x@gw MGCP 1.0\r\n",
            tid,
            Duration::from_secs(5),
        )
        .unwrap();
        let ack = t.join().unwrap();
        assert_eq!(ack, "000 7\r\n");
        assert!(matches!(out, Outcome::Final { acked: true, .. }), "{out:?}");
    }

    #[test]
    fn silence_is_no_response_after_the_timeout() {
        let (ca, gw) = pair();
        let t0 = Instant::now();
        let out = transact(
            &ca,
            gw.local_addr().unwrap(),
            b"AUEP 9 x@gw MGCP 1.0\r\n",
            TransactionId::new(9).unwrap(),
            Duration::from_millis(1000),
        )
        .unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(1000));
        assert!(t0.elapsed() < Duration::from_secs(2));
        // Sends at 0, 200 and 600 ms.
        assert!(
            matches!(
                out,
                Outcome::NoResponse {
                    sent: 3,
                    provisional: false
                }
            ),
            "{out:?}"
        );
    }
}
