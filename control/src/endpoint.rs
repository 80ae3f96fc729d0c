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

/// The default endpoints: two back-to-back virtual E1 spans and 64 RTP bridges.
pub fn default_endpoints() -> Vec<EndpointSpec> {
    let mut v = Vec::new();
    for span in 1..=2u16 {
        for ch in 1..=30u16 {
            v.push(EndpointSpec {
                local_name: format!("ds/e1-{span}/{ch}"),
                kind: EndpointKind::Ds {
                    span: format!("e1-{span}"),
                    channel: ch,
                    law: Law::Alaw,
                },
                // Channel N of span 1 and span 2 are wired to each other.
                group: GroupId(1000 + u32::from(ch)),
                max_connections: 2,
            });
        }
    }
    for n in 1..=64u32 {
        v.push(EndpointSpec {
            local_name: format!("rtpbridge/{n}"),
            kind: EndpointKind::RtpBridge(n),
            group: GroupId(n),
            max_connections: 2,
        });
    }
    v
}
