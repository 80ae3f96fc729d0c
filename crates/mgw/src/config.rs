//! The TOML configuration file of `mgw run` (flags override it).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;

/// The file's contents. Every key is optional; absent keys keep the built-in default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) mgcp_bind: Option<SocketAddr>,
    pub(crate) call_agents: Option<Vec<String>>,
    pub(crate) allow_from: Option<Vec<String>>,
    pub(crate) domain: Option<String>,
    pub(crate) rtp_bind: Option<IpAddr>,
    pub(crate) rtp_advertise: Option<IpAddr>,
    pub(crate) rtp_ports: Option<String>,
    pub(crate) workers: Option<usize>,
    pub(crate) pin_workers: Option<bool>,
    pub(crate) backend: Option<String>,
    pub(crate) rtp_latch: Option<bool>,
    pub(crate) ptime: Option<u32>,
    pub(crate) shutdown: Option<String>,
    pub(crate) shutdown_delay_s: Option<u64>,
    pub(crate) http_bind: Option<String>,
    pub(crate) log: Option<String>,
    pub(crate) trace_calls: Option<Vec<String>>,
    pub(crate) bridges: Option<u32>,
    pub(crate) announcement_dir: Option<std::path::PathBuf>,
    pub(crate) tdm: Option<mgw_tdm::TdmConfig>,
    pub(crate) tone_set: Option<String>,
    pub(crate) codecs: Option<Codecs>,
    pub(crate) jitter: Option<Jitter>,
    pub(crate) timers: Option<Timers>,
}

/// Codec options for TDM connections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Codecs {
    pub(crate) opus_rate: Option<u32>,
    pub(crate) opus_complexity: Option<u8>,
    pub(crate) opus_bitrate: Option<u32>,
    pub(crate) opus_fec: Option<bool>,
    pub(crate) opus_dtx: Option<bool>,
    pub(crate) opus_packet_loss_percent: Option<u8>,
}

/// Jitter-buffer delay bounds for TDM connections, ms.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Jitter {
    pub(crate) min_ms: Option<u32>,
    pub(crate) max_ms: Option<u32>,
    pub(crate) initial_ms: Option<u32>,
}

/// Transaction timers, in milliseconds unless named otherwise.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Timers {
    pub(crate) t_hist_ms: Option<u64>,
    pub(crate) initial_rto_ms: Option<u64>,
    pub(crate) max_rto_ms: Option<u64>,
    pub(crate) max1: Option<u32>,
    pub(crate) max2: Option<u32>,
    pub(crate) restart_avalanche_ms: Option<u64>,
    pub(crate) disconnected_initial_ms: Option<u64>,
    pub(crate) disconnected_max_ms: Option<u64>,
}

/// The embedded default configuration (what `mgw run` uses with no file).
pub(crate) const DEFAULT_CONFIG: &str = r#"# mgw default configuration.
# Endpoints: ds/e1-1/1..30 and ds/e1-2/1..30 (two virtual E1 spans, A-law, wired back
# to back) and rtpbridge/1..64 (IP-to-IP relays).
mgcp_bind = "0.0.0.0:2427"
call_agents = ["127.0.0.1:2727"]
allow_from = []                  # more command sources: addresses or networks ("10.0.0.0/24")
# domain = "gw.example.net"      # default: this host's name
# rtp_bind = "192.0.2.10"        # default: the address that reaches the first call agent
# rtp_advertise = "198.51.100.7" # SDP c= address when it differs from rtp_bind (NAT, 0.0.0.0)
rtp_ports = "16384-32767"
# workers = 2                    # default: one per usable core
pin_workers = true
backend = "auto"                 # auto | io_uring | epoll
rtp_latch = false
ptime = 20
shutdown = "forced"              # forced | graceful
shutdown_delay_s = 0
http_bind = "127.0.0.1:9427"     # Prometheus /metrics and the JSON API; "off" to disable
log = "info"                     # tracing filter, e.g. "info,mgw_control=debug"; SIGHUP re-reads it
bridges = 64                     # rtpbridge/1..N IP-to-IP endpoints
announcement_dir = "/usr/share/mgw/announcements"  # A/ann(name) plays <dir>/<name>.wav
tone_set = "etsi"                # call-progress tones: etsi | north-america

# TDM spans: ds/<name>/<channel> endpoints. kind = virtual | dahdi | alsa.
# Two virtual spans with loop = each other are wired back to back like a crossover
# cable. tap = true exposes each virtual channel as a Unix datagram socket (see the tdm
# crate's TAP.md). DAHDI and ALSA spans take device = ... (ALSA endpoints are aaln/N).
[tdm]
ptime_ms = 20

[[tdm.span]]
kind = "virtual"
name = "e1-1"
law = "alaw"
channels = "1-30"
loop = "e1-2"

[[tdm.span]]
kind = "virtual"
name = "e1-2"
law = "alaw"
channels = "1-30"
loop = "e1-1"
# Codecs of TDM connections (the remote's a=fmtp may lower them).
[codecs]
opus_rate = 8000                 # internal Opus rate: 8000, 12000, 16000, 24000, 48000
opus_complexity = 5              # 0..10
opus_bitrate = 24000             # bit/s
opus_fec = false
opus_dtx = false
opus_packet_loss_percent = 0

# Jitter buffer of TDM connections (IP -> TDM), ms.
[jitter]
min_ms = 20
max_ms = 300
initial_ms = 60

[timers]
t_hist_ms = 30000
initial_rto_ms = 200
max_rto_ms = 4000
max1 = 5
max2 = 7
restart_avalanche_ms = 0
disconnected_initial_ms = 15000
disconnected_max_ms = 600000
"#;

/// Reads and parses a file; errors name the file and line.
pub(crate) fn load(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses configuration text.
pub(crate) fn parse(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(l) => format!("line {l}: {}", e.message()),
            None => e.message().to_string(),
        }
    })
}

/// Parses `LOW-HIGH`.
pub(crate) fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("port range {s:?} must look like LOW-HIGH, e.g. 16384-32767"))?;
    let lo: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("bad low port in {s:?}"))?;
    let hi: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("bad high port in {s:?}"))?;
    if lo == 0 || hi <= lo || hi - lo < 1 {
        return Err(format!("port range {s:?} must have 0 < LOW < HIGH"));
    }
    Ok((lo, hi))
}

/// Which configuration key an error message of `build_config` is about (by the words it
/// starts with), for pointing `mgw config check` at the right line.
pub(crate) fn keys_of_error(msg: &str) -> &'static [&'static str] {
    const PREFIXES: &[(&str, &[&str])] = &[
        ("call agent ", &["call_agents"]),
        ("http bind ", &["http_bind"]),
        ("log ", &["log"]),
        ("port range ", &["rtp_ports"]),
        ("bad low port", &["rtp_ports"]),
        ("bad high port", &["rtp_ports"]),
        ("unknown backend", &["backend"]),
        ("ptime ", &["ptime"]),
        ("tone_set ", &["tone_set"]),
        ("opus_rate ", &["opus_rate"]),
        ("opus_complexity ", &["opus_complexity"]),
        ("opus_bitrate ", &["opus_bitrate"]),
        ("opus_packet_loss_percent ", &["opus_packet_loss_percent"]),
        ("jitter: ", &["min_ms", "initial_ms", "max_ms"]),
        ("shutdown ", &["shutdown"]),
        (
            "timers: need 0 < initial_rto_ms",
            &["initial_rto_ms", "max_rto_ms"],
        ),
        ("timers: need 0 < max1", &["max1", "max2"]),
        ("allow_from ", &["allow_from"]),
        ("domain ", &["domain"]),
        ("workers ", &["workers"]),
        ("tdm span ", &["name"]),
        ("tdm: ", &["ptime_ms"]),
        ("bridges ", &["bridges"]),
        ("endpoint ", &["name"]),
        ("trace call id ", &["trace_calls"]),
    ];
    PREFIXES
        .iter()
        .find(|(p, _)| msg.starts_with(p))
        .map_or(&[], |(_, k)| *k)
}

/// The 1-based line where `key = ...` is set in `text` (first match), if any. For span
/// errors (`key` = "name") the line naming the span quoted in `msg` is preferred.
pub(crate) fn line_of(text: &str, key: &str, msg: &str) -> Option<usize> {
    let quoted: Option<&str> = msg.split('"').nth(1);
    let mut first = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix(key) else {
            continue;
        };
        if !rest.trim_start().starts_with('=') {
            continue;
        }
        if key == "name" {
            if let Some(q) = quoted {
                if rest.contains(&format!("\"{q}\"")) {
                    return Some(i + 1);
                }
            }
        }
        first.get_or_insert(i + 1);
    }
    first
}

/// `text` with line `line` (1-based) commented out.
pub(crate) fn comment_out(text: &str, line: usize) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                format!("# {l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_parses() {
        let c = parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(c.rtp_ports.as_deref(), Some("16384-32767"));
        assert_eq!(c.timers.unwrap().max2, Some(7));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("mgcp_bind = \"127.0.0.1:2427\"\nbogus = 1\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse("mgcp_bind = \"nope\"\n").unwrap_err();
        assert!(e.starts_with("line 1:"), "{e}");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("16384-32767").unwrap(), (16384, 32767));
        assert!(parse_port_range("5-").is_err());
        assert!(parse_port_range("100-50").is_err());
        assert!(parse_port_range("0-50").is_err());
    }
}
