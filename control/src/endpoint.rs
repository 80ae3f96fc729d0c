//! The endpoint registry: which endpoints exist, their connections and their state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mgcp::params::{CallId, ConnectionId, ConnectionMode, LocalConnectionOptions};
use mgcp::{EndpointName, Error, Wildcard};
use mgw_dataplane::{ConnCounters, ConnKey, GroupId, PayloadBinding};

use crate::events::NotificationState;
use crate::sdp::{CodecPolicy, RemoteMedia};

/// Voice-channel companding law of a TDM span.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Law {
    /// A-law (E1).
    Alaw,
    /// µ-law (T1).
    Ulaw,
}

/// What an endpoint is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointKind {
    /// A TDM channel `ds/<span>/<channel>` carrying `law`.
    Ds {
        /// Span name, e.g. `e1-1`.
        span: String,
        /// Channel number, from 1.
        channel: u16,
        /// Companding law.
        law: Law,
    },
    /// An IP-to-IP bridge `rtpbridge/<n>` whose connections relay to each other.
    RtpBridge(u32),
}

/// Static description of one endpoint, from configuration.
#[derive(Clone, Debug)]
pub struct EndpointSpec {
    /// Local name (`ds/e1-1/1`, `rtpbridge/7`).
    pub local_name: String,
    /// Kind.
    pub kind: EndpointKind,
    /// Dataplane group: endpoints whose media meet (a bridge; two back-to-back channels)
    /// share one.
    pub group: GroupId,
    /// Maximum simultaneous connections.
    pub max_connections: usize,
    /// What the line side offers: hook events and ringing (tap and DAHDI channels), and
    /// whether the endpoint is an analog line (`aaln/N`, the L package).
    pub line: LineCaps,
}

/// Line-signalling capabilities of an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineCaps {
    /// Hook events and ringing reach the line (tap peers, DAHDI channels).
    pub signalling: bool,
    /// An analog line endpoint (the L package's tones are offered).
    pub analog: bool,
}

/// A live connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: ConnectionId,
    pub(crate) call: CallId,
    pub(crate) key: ConnKey,
    pub(crate) mode: ConnectionMode,
    pub(crate) port: u16,
    pub(crate) lco: Option<LocalConnectionOptions>,
    pub(crate) lco_text: Option<String>,
    pub(crate) remote: Option<RemoteMedia>,
    pub(crate) remote_sdp: Option<String>,
    pub(crate) payloads: Vec<PayloadBinding>,
    pub(crate) local_sdp: String,
    pub(crate) sdp_version: u64,
    pub(crate) session_id: u64,
    pub(crate) counters: Arc<ConnCounters>,
    pub(crate) notified_entity: Option<String>,
}

/// An endpoint and its state.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) spec: EndpointSpec,
    pub(crate) policy: CodecPolicy,
    pub(crate) connections: Vec<Connection>,
    pub(crate) notify: NotificationState,
    /// `N:` given by the call agent, as text, and its resolved address.
    pub(crate) notified_entity: Option<(String, SocketAddr)>,
    pub(crate) bearer: Option<String>,
}

impl Endpoint {
    pub(crate) fn new(spec: EndpointSpec) -> Self {
        let policy = match &spec.kind {
            EndpointKind::Ds { law: Law::Alaw, .. } => {
                CodecPolicy::Transcode(crate::sdp::TRANSCODABLE_ALAW.to_vec())
            }
            EndpointKind::Ds { law: Law::Ulaw, .. } => {
                CodecPolicy::Transcode(crate::sdp::TRANSCODABLE_ULAW.to_vec())
            }
            EndpointKind::RtpBridge(_) => CodecPolicy::Relay,
        };
        Endpoint {
            spec,
            policy,
            connections: Vec::new(),
            notify: NotificationState::default(),
            notified_entity: None,
            bearer: None,
        }
    }

    pub(crate) fn conn_index(&self, id: &ConnectionId) -> Option<usize> {
        self.connections.iter().position(|c| c.id == *id)
    }
}

/// All endpoints, found by name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) endpoints: Vec<Endpoint>,
    by_name: HashMap<String, usize>,
}

impl Registry {
    pub(crate) fn new(specs: Vec<EndpointSpec>) -> Self {
        let mut r = Registry::default();
        for spec in specs {
            r.by_name
                .insert(spec.local_name.to_ascii_lowercase(), r.endpoints.len());
            r.endpoints.push(Endpoint::new(spec));
        }
        r
    }

    pub(crate) fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Indices of the endpoints a name denotes. A concrete name yields one index or
    /// [`Error::EndpointUnknown`]; wildcards yield every match (possibly none).
    pub(crate) fn resolve(&self, name: &EndpointName) -> Result<Vec<usize>, Error> {
        match name.wildcard() {
            Wildcard::None => self
                .by_name
                .get(&name.local().to_ascii_lowercase())
                .map(|i| vec![*i])
                .ok_or_else(|| Error::EndpointUnknown(name.to_string())),
            Wildcard::All | Wildcard::Any => Ok(self
                .endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| name.local_matches(&e.spec.local_name))
                .map(|(i, _)| i)
                .collect()),
        }
    }

    /// Finds a connection by its dataplane key.
    pub(crate) fn find_key(&self, key: ConnKey) -> Option<(usize, usize)> {
        self.endpoints.iter().enumerate().find_map(|(ei, e)| {
            e.connections
                .iter()
                .position(|c| c.key == key)
                .map(|ci| (ei, ci))
        })
    }
}

/// The TDM configuration `mgw run` uses when none is given: two virtual E1 spans
/// (`e1-1`, `e1-2`, 30 A-law channels each) wired back to back.
pub fn default_tdm() -> mgw_tdm::TdmConfig {
    let mut a = mgw_tdm::SpanConfig::virtual_e1("e1-1");
    let mut b = mgw_tdm::SpanConfig::virtual_e1("e1-2");
    a.loop_with = Some("e1-2".into());
    b.loop_with = Some("e1-1".into());
    mgw_tdm::TdmConfig {
        ptime_ms: 20,
        spans: vec![a, b],
    }
}

/// Endpoints for the TDM spans of `tdm` plus `bridges` RTP bridges.
///
/// Channel N of two spans wired to each other share a dataplane group (so both run on
/// one worker: their audio meets on the virtual cable); every other channel has its own.
pub fn endpoints_for(tdm: &mgw_tdm::TdmConfig, bridges: u32) -> Vec<EndpointSpec> {
    let mut v = Vec::new();
    let mut next_base = 1000u32;
    let mut bases: HashMap<String, u32> = HashMap::new();
    for span in &tdm.spans {
        let base = match span.loop_with.as_ref().and_then(|p| bases.get(p)) {
            Some(b) => *b,
            None => {
                let b = next_base;
                next_base += 1000;
                b
            }
        };
        bases.insert(span.name.clone(), base);
        let law = match span.law {
            mgw_tdm::Law::Ulaw => Law::Ulaw,
            _ => Law::Alaw,
        };
        for ch in span.channels.first()..=span.channels.last() {
            let signalling = span.tap || span.kind == mgw_tdm::SpanKind::Dahdi;
            v.push(EndpointSpec {
                local_name: span.endpoint_name(ch),
                kind: EndpointKind::Ds {
                    span: span.name.clone(),
                    channel: ch,
                    law,
                },
                group: GroupId(base + u32::from(ch)),
                max_connections: 2,
                line: LineCaps {
                    signalling,
                    analog: signalling || span.kind == mgw_tdm::SpanKind::Alsa,
                },
            });
        }
    }
    for n in 1..=bridges {
        v.push(EndpointSpec {
            local_name: format!("rtpbridge/{n}"),
            kind: EndpointKind::RtpBridge(n),
            group: GroupId(n),
            max_connections: 2,
            line: LineCaps::default(),
        });
    }
    v
}

/// The default endpoints: two back-to-back virtual E1 spans and 64 RTP bridges.
pub fn default_endpoints() -> Vec<EndpointSpec> {
    endpoints_for(&default_tdm(), 64)
}
