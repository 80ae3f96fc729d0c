//! `mgw status`: the admin API as terminal tables.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use mgw_control::admin::{ConnectionInfo, EndpointInfo, StatusInfo};

/// Arguments of `mgw status`.
#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    /// The gateway's admin HTTP address.
    #[arg(long, default_value = "127.0.0.1:9427", value_name = "HOST:PORT")]
    http: String,
    /// Also list every endpoint (not only the active ones).
    #[arg(long)]
    all: bool,
}

/// GET `path` from `addr`; the body of a 200 response.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| {
        format!("cannot reach the admin server at {addr}: {e} (is mgw running with --http-bind?)")
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("{path}: HTTP {status}"));
    }
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if !chunked {
        return Ok(body.to_string());
    }
    // Decode a chunked body.
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).map_err(|_| "bad chunk size")?;
        if n == 0 {
            break;
        }
        let chunk = after.get(..n).ok_or("short chunk")?;
        out.push_str(chunk);
        rest = after.get(n + 2..).unwrap_or("");
    }
    Ok(out)
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

pub(crate) fn run(args: StatusArgs) -> Result<String, String> {
    let addr = args
        .http
        .to_socket_addrs()
        .map_err(|e| format!("{:?}: {e}", args.http))?
        .next()
        .ok_or("no address")?;
    let parse = |p: &str| -> Result<String, String> { get(addr, p) };
    let status: StatusInfo =
        serde_json::from_str(&parse("/api/status")?).map_err(|e| e.to_string())?;
    let conns: Vec<ConnectionInfo> =
        serde_json::from_str(&parse("/api/connections")?).map_err(|e| e.to_string())?;
    let eps: Vec<EndpointInfo> =
        serde_json::from_str(&parse("/api/endpoints")?).map_err(|e| e.to_string())?;
    let mut out = format!(
        "mgw {} — domain {}, MGCP {}, up {} s\ncall agent {} ({}), dataplane {} × {} workers\n{} endpoints, {} connections, {} calls\n\n",
        status.version,
        status.domain,
        status.mgcp,
        status.uptime_s,
        status.call_agent,
        status.link,
        status.backend,
        status.workers,
        status.endpoints,
        status.connections,
        status.calls
    );
    let rows: Vec<Vec<String>> = eps
        .iter()
        .filter(|e| args.all || e.connections > 0)
        .map(|e| {
            vec![
                e.name.clone(),
                e.kind.clone(),
                e.state.clone(),
                e.connections.to_string(),
                e.request_id.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["ENDPOINT", "KIND", "STATE", "CONNS", "REQUEST"],
        &rows,
    ));
    out.push('\n');
    let rows: Vec<Vec<String>> = conns
        .iter()
        .map(|c| {
            vec![
                c.endpoint.clone(),
                c.id.clone(),
                c.call_id.clone(),
                c.mode.clone(),
                c.local_port.to_string(),
                c.remote.clone().unwrap_or_else(|| "-".into()),
                c.codecs.first().cloned().unwrap_or_default(),
                c.rtp.packets_received.to_string(),
                c.rtp.packets_sent.to_string(),
                c.rtp.packets_lost.to_string(),
                c.rtp.jitter_ms.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ENDPOINT", "CONN", "CALL", "MODE", "PORT", "REMOTE", "CODEC", "RX", "TX", "LOST",
            "JIT(ms)",
        ],
        &rows,
    ));
    Ok(out)
}
