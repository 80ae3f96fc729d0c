//! `mgw ctl`: a call-agent command tool. Sends MGCP commands to a gateway, retransmits
//! them as RFC 3435 §4.3 asks (200 ms doubling, capped at 4 s, 7 retransmissions at most),
//! and prints the final response.

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mgcp::{parse_datagram, Message};

/// Arguments of `mgw ctl`.
#[derive(clap::Args, Debug)]
pub(crate) struct CtlArgs {
    /// The gateway's MGCP address.
    #[arg(
        long,
        short = 'g',
        default_value = "127.0.0.1:2427",
        value_name = "HOST:PORT"
    )]
    gateway: String,
    /// Local address to send from (a gateway only obeys its configured call agents).
    #[arg(long, default_value = "0.0.0.0:0", value_name = "IP:PORT")]
    bind: SocketAddr,
    /// Give up after this many seconds without a final response.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// A file with the command text (`-` or nothing = standard input). LF line ends are
    /// sent as CRLF; a transaction id of `*` is replaced by a fresh one.
    file: Option<PathBuf>,
}

fn fresh_tid() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(13))
        .unwrap_or(1);
    (t ^ std::process::id().rotate_left(7)) % 999_999_998 + 1
}

/// Normalises command text: CRLF line ends; `*` as the transaction id becomes a fresh one.
pub(crate) fn prepare(text: &str) -> Result<(String, u32), String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    while lines.first().is_some_and(|l| l.trim().is_empty()) {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let header = lines.first_mut().ok_or("no command text")?;
    let mut toks: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    if toks.len() < 2 {
        return Err(format!(
            "{header:?} is not an MGCP command line (VERB TID ENDPOINT MGCP 1.0)"
        ));
    }
    let tid = if toks[1] == "*" {
        let t = fresh_tid();
        toks[1] = t.to_string();
        t
    } else {
        toks[1]
            .parse()
            .map_err(|_| format!("transaction id {:?} is not a number (or *)", toks[1]))?
    };
    *header = toks.join(" ");
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    Ok((out, tid))
}

pub(crate) fn run(args: CtlArgs) -> Result<String, String> {
    let mut text = String::new();
    match &args.file {
        Some(p) if p.as_os_str() != "-" => {
            text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("stdin: {e}"))?;
        }
    }
    let (wire, tid) = prepare(&text)?;
    let gw = args
        .gateway
        .to_socket_addrs()
        .map_err(|e| format!("gateway {:?}: {e}", args.gateway))?
        .next()
        .ok_or_else(|| format!("gateway {:?} has no address", args.gateway))?;
    let sock = UdpSocket::bind(args.bind).map_err(|e| format!("bind {}: {e}", args.bind))?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut rto = Duration::from_millis(200);
    let mut sent = 0u32;
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        if sent <= 7 {
            sock.send_to(wire.as_bytes(), gw)
                .map_err(|e| format!("send to {gw}: {e}"))?;
            sent += 1;
        }
        let until = (Instant::now() + rto).min(deadline);
        while let Some(left) = until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        {
            sock.set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                break;
            };
            for m in parse_datagram(&buf[..n]).into_iter().flatten() {
                if let Message::Response(r) = m {
                    if r.tid.get() == tid && r.code.is_final() {
                        let _ = from;
                        // Acknowledge a final response that asks for it (empty K:).
                        if r.params.contains(&mgcp::ParamName::ResponseAck) {
                            let _ = sock.send_to(format!("000 {tid}\r\n").as_bytes(), gw);
                        }
                        return Ok(String::from_utf8_lossy(&buf[..n]).replace("\r\n", "\n"));
                    }
                }
            }
        }
        rto = (rto * 2).min(Duration::from_secs(4));
    }
    Err(format!(
        "no response from {gw} within {} s ({sent} transmissions)",
        args.timeout
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_normalises() {
        let (w, t) = prepare("\nAUEP 12 x@gw MGCP 1.0\nF: A\n\n").unwrap();
        assert_eq!(w, "AUEP 12 x@gw MGCP 1.0\r\nF: A\r\n");
        assert_eq!(t, 12);
        let (w, t) = prepare("AUEP * x@gw MGCP 1.0\n").unwrap();
        assert!(w.starts_with(&format!("AUEP {t} ")));
        assert!(prepare("").is_err());
        assert!(prepare("AUEP").is_err());
        assert!(prepare("AUEP x y").is_err());
    }
}
