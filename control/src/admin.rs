//! The operator's view: JSON snapshots of endpoints, connections and calls, and the
//! Prometheus/OpenMetrics text. Built on the control task from its own state and sent to
//! the HTTP task as owned data (no shared locks).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

/// One endpoint.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Full name, `local@domain`.
    pub name: String,
    /// `ds` or `rtpbridge`.
    pub kind: String,
    /// `idle` or `active` (has connections).
    pub state: String,
    /// Number of connections.
    pub connections: usize,
    /// Current RequestIdentifier, if a request is active.
    pub request_id: Option<String>,
    /// NotifiedEntity.
    pub notified_entity: Option<String>,
}

/// RTP statistics of a connection.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct RtpStats {
    /// Packets sent.
    pub packets_sent: u64,
    /// Octets sent.
    pub octets_sent: u64,
    /// Packets received.
    pub packets_received: u64,
    /// Octets received.
    pub octets_received: u64,
    /// Packets lost.
    pub packets_lost: u64,
    /// Interarrival jitter, ms.
    pub jitter_ms: u64,
    /// Round-trip latency, ms.
    pub latency_ms: u64,
    /// Dropped by the source check.
    pub dropped_source: u64,
    /// Dropped by the mode or for lack of a destination.
    pub dropped_mode: u64,
    /// Dropped as invalid.
    pub dropped_invalid: u64,
    /// TDM connections: jitter-buffer delay now, ms.
    pub jitter_buffer_ms: u64,
    /// TDM connections: packets too late for playout.
    pub late: u64,
    /// TDM connections: frames concealed (lost or late).
    pub concealed: u64,
}

/// One connection.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Endpoint name.
    pub endpoint: String,
    /// ConnectionId.
    pub id: String,
    /// CallId.
    pub call_id: String,
    /// Mode.
    pub mode: String,
    /// Local RTP port.
    pub local_port: u16,
    /// Remote RTP address, once known.
    pub remote: Option<String>,
    /// Negotiated codecs, `NAME/RATE` with payload type.
    pub codecs: Vec<String>,
    /// Live RTP statistics.
    pub rtp: RtpStats,
}

/// One call (connections sharing a CallId).
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CallInfo {
    /// CallId.
    pub call_id: String,
    /// `endpoint/connection-id` of each leg.
    pub legs: Vec<String>,
}

/// Gateway status.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct StatusInfo {
    /// mgw version.
    pub version: String,
    /// Domain.
    pub domain: String,
    /// MGCP address.
    pub mgcp: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// `restarting`, `connected` or `disconnected`.
    pub link: String,
    /// Current call agent.
    pub call_agent: String,
    /// Dataplane backend.
    pub backend: String,
    /// Dataplane workers.
    pub workers: usize,
    /// Endpoints configured.
    pub endpoints: usize,
    /// Live connections.
    pub connections: usize,
    /// Live calls.
    pub calls: usize,
}

/// Groups connections into calls.
pub fn calls_of(conns: &[ConnectionInfo]) -> Vec<CallInfo> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in conns {
        m.entry(c.call_id.to_ascii_lowercase())
            .or_default()
            .push(format!("{}/{}", c.endpoint, c.id));
    }
    m.into_iter()
        .map(|(call_id, legs)| CallInfo { call_id, legs })
        .collect()
}

/// Writes OpenMetrics text: `# TYPE` lines and samples.
#[derive(Default)]
pub struct Metrics {
    out: String,
}

impl Metrics {
    /// Starts a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn name_and_labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
    }

    /// One sample with labels.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.name_and_labels(name, labels);
        let _ = writeln!(self.out, " {value}");
    }

    /// A gauge family with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A counter family (`name`) with one unlabelled sample (`name_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(&format!("{name}_total"), &[], value);
    }

    /// One sample with a fractional value.
    pub fn sample_f(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.name_and_labels(name, labels);
        let _ = writeln!(self.out, " {value:.6}");
    }

    /// The finished text (with the OpenMetrics `# EOF`).
    pub fn finish(mut self) -> String {
        self.out.push_str("# EOF\n");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text() {
        let mut m = Metrics::default();
        m.family("mgw_x_total", "counter", "things");
        m.sample("mgw_x_total", &[("verb", "CRCX"), ("code", "200")], 3);
        m.sample("mgw_x_total", &[("q", "a\"b")], 1);
        m.sample_f("mgw_load", &[("worker", "0")], 0.25);
        let t = m.finish();
        assert!(t.contains("mgw_x_total{verb=\"CRCX\",code=\"200\"} 3\n"));
        assert!(t.contains("{q=\"a\\\"b\"} 1"));
        assert!(t.contains("mgw_load{worker=\"0\"} 0.250000\n"), "{t}");
        assert!(t.ends_with("# EOF\n"));
    }

    #[test]
    fn calls_group_legs() {
        let c = |ep: &str, id: &str, call: &str| ConnectionInfo {
            endpoint: ep.into(),
            id: id.into(),
            call_id: call.into(),
            mode: "sendrecv".into(),
            local_port: 1,
            remote: None,
            codecs: vec![],
            rtp: RtpStats::default(),
        };
        let calls = calls_of(&[c("a", "1", "X"), c("b", "2", "x"), c("c", "3", "y")]);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].legs, vec!["a/1", "b/2"]);
    }
}
