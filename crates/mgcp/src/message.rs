//! The MGCP message model: commands, responses and their parameter lists.
//!
//! These are owned, validated representations. Parsing lives in [`crate::parse`],
//! emitting in [`crate::emit`].

use std::fmt;

use crate::code::ReturnCode;
use crate::name::EndpointName;

/// A transaction identifier, 1..=999_999_999 (RFC 3435 §3.2.1.2).
///
/// The range is checked once, when the value is built.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct TransactionId(u32);

impl TransactionId {
    /// Largest valid transaction id.
    pub const MAX: u32 = 999_999_999;

    /// The smallest id, 1 (also a placeholder for commands whose id the transaction
    /// layer assigns when it sends them).
    pub const FIRST: TransactionId = TransactionId(1);

    /// Builds a transaction id, or `None` when `v` is 0 or above [`Self::MAX`].
    pub const fn new(v: u32) -> Option<Self> {
        if v == 0 || v > Self::MAX {
            None
        } else {
            Some(Self(v))
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The next id, wrapping from [`Self::MAX`] back to 1.
    pub const fn next(self) -> Self {
        if self.0 >= Self::MAX {
            Self(1)
        } else {
            Self(self.0 + 1)
        }
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The nine MGCP 1.0 commands (RFC 3435 §2.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Verb {
    /// EndpointConfiguration.
    Epcf,
    /// CreateConnection.
    Crcx,
    /// ModifyConnection.
    Mdcx,
    /// DeleteConnection.
    Dlcx,
    /// NotificationRequest.
    Rqnt,
    /// Notify.
    Ntfy,
    /// AuditEndpoint.
    Auep,
    /// AuditConnection.
    Aucx,
    /// RestartInProgress.
    Rsip,
}

impl Verb {
    /// All verbs, in RFC order.
    pub const ALL: [Verb; 9] = [
        Verb::Epcf,
        Verb::Crcx,
        Verb::Mdcx,
        Verb::Dlcx,
        Verb::Rqnt,
        Verb::Ntfy,
        Verb::Auep,
        Verb::Aucx,
        Verb::Rsip,
    ];

    /// The four-letter wire form, upper case.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Epcf => "EPCF",
            Verb::Crcx => "CRCX",
            Verb::Mdcx => "MDCX",
            Verb::Dlcx => "DLCX",
            Verb::Rqnt => "RQNT",
            Verb::Ntfy => "NTFY",
            Verb::Auep => "AUEP",
            Verb::Aucx => "AUCX",
            Verb::Rsip => "RSIP",
        }
    }

    /// Parses a verb token, case-insensitively.
    pub fn from_token(s: &str) -> Option<Verb> {
        Verb::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parameter name (RFC 3435 §3.2.2). Names are case-insensitive on the wire
/// and emitted in their canonical upper-case form.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ParamName {
    /// `K` ResponseAck.
    ResponseAck,
    /// `B` BearerInformation.
    BearerInformation,
    /// `C` CallId.
    CallId,
    /// `I` ConnectionId.
    ConnectionId,
    /// `N` NotifiedEntity.
    NotifiedEntity,
    /// `X` RequestIdentifier.
    RequestIdentifier,
    /// `L` LocalConnectionOptions.
    LocalConnectionOptions,
    /// `M` ConnectionMode.
    ConnectionMode,
    /// `R` RequestedEvents.
    RequestedEvents,
    /// `S` SignalRequests.
    SignalRequests,
    /// `D` DigitMap.
    DigitMap,
    /// `O` ObservedEvents.
    ObservedEvents,
    /// `P` ConnectionParameters.
    ConnectionParameters,
    /// `E` ReasonCode.
    ReasonCode,
    /// `Z` SpecificEndPointId.
    SpecificEndpointId,
    /// `Z2` SecondEndPointId.
    SecondEndpointId,
    /// `I2` SecondConnectionId.
    SecondConnectionId,
    /// `F` RequestedInfo.
    RequestedInfo,
    /// `Q` QuarantineHandling.
    QuarantineHandling,
    /// `T` DetectEvents.
    DetectEvents,
    /// `RM` RestartMethod.
    RestartMethod,
    /// `RD` RestartDelay.
    RestartDelay,
    /// `A` Capabilities.
    Capabilities,
    /// `ES` EventStates.
    EventStates,
    /// `PL` PackageList.
    PackageList,
    /// `MD` MaxMGCPDatagram.
    MaxMgcpDatagram,
    /// An extension parameter (`X-...` or `X+...`, RFC 3435 §3.2.2), kept verbatim
    /// as it appeared on the wire (case preserved).
    Extension(String),
}

impl ParamName {
    /// The canonical wire code (`"K"`, `"Z2"`, ...) or the extension's name.
    pub fn code(&self) -> &str {
        match self {
            ParamName::ResponseAck => "K",
            ParamName::BearerInformation => "B",
            ParamName::CallId => "C",
            ParamName::ConnectionId => "I",
            ParamName::NotifiedEntity => "N",
            ParamName::RequestIdentifier => "X",
            ParamName::LocalConnectionOptions => "L",
            ParamName::ConnectionMode => "M",
            ParamName::RequestedEvents => "R",
            ParamName::SignalRequests => "S",
            ParamName::DigitMap => "D",
            ParamName::ObservedEvents => "O",
            ParamName::ConnectionParameters => "P",
            ParamName::ReasonCode => "E",
            ParamName::SpecificEndpointId => "Z",
            ParamName::SecondEndpointId => "Z2",
            ParamName::SecondConnectionId => "I2",
            ParamName::RequestedInfo => "F",
            ParamName::QuarantineHandling => "Q",
            ParamName::DetectEvents => "T",
            ParamName::RestartMethod => "RM",
            ParamName::RestartDelay => "RD",
            ParamName::Capabilities => "A",
            ParamName::EventStates => "ES",
            ParamName::PackageList => "PL",
            ParamName::MaxMgcpDatagram => "MD",
            ParamName::Extension(s) => s,
        }
    }
}

/// An ordered list of `name: value` parameter lines. Values are stored trimmed.
///
/// A name may appear once per message; the parser rejects repeats.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Params(pub Vec<(ParamName, String)>);

impl Params {
    /// An empty list.
    pub const fn new() -> Self {
        Params(Vec::new())
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &ParamName) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is present (possibly with an empty value).
    pub fn contains(&self, name: &ParamName) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// Appends a parameter (does not check for duplicates).
    pub fn push(&mut self, name: ParamName, value: impl Into<String>) {
        self.0.push((name, value.into()));
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn set(&mut self, name: ParamName, value: impl Into<String>) {
        let value = value.into();
        if let Some(slot) = self.0.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.0.push((name, value));
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &ParamName) -> Option<String> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(i).1)
    }

    /// Iterates the parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&ParamName, &str)> {
        self.0.iter().map(|(n, v)| (n, v.as_str()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The protocol name and version on a command line, e.g. `MGCP 1.0`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProtocolVersion {
    /// Protocol name as sent (`MGCP`, compared case-insensitively).
    pub protocol: String,
    /// Version string (`1.0`); profile suffixes such as `1.0 NCS 1.0` are kept here.
    pub version: String,
}

impl Default for ProtocolVersion {
    fn default() -> Self {
        ProtocolVersion {
            protocol: "MGCP".into(),
            version: "1.0".into(),
        }
    }
}

/// An MGCP command.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Command {
    /// The verb.
    pub verb: Verb,
    /// Transaction identifier.
    pub tid: TransactionId,
    /// The endpoint the command addresses (may contain wildcards).
    pub endpoint: EndpointName,
    /// Protocol and version.
    pub version: ProtocolVersion,
    /// Parameter lines.
    pub params: Params,
    /// Session description(s) after the blank line, raw text, if any.
    pub sdp: Option<String>,
}

impl Command {
    /// A command with no parameters, `MGCP 1.0`.
    pub fn new(verb: Verb, tid: TransactionId, endpoint: EndpointName) -> Self {
        Command {
            verb,
            tid,
            endpoint,
            version: ProtocolVersion::default(),
            params: Params::new(),
            sdp: None,
        }
    }
}

/// An MGCP response (including provisional responses and the `000` response ack).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Response {
    /// Return code.
    pub code: ReturnCode,
    /// Transaction identifier being answered.
    pub tid: TransactionId,
    /// Commentary text after the transaction id (may be empty).
    pub comment: String,
    /// Parameter lines.
    pub params: Params,
    /// Session description(s), raw text, if any.
    pub sdp: Option<String>,
}

impl Response {
    /// A response with no parameters whose comment is the code's standard text.
    pub fn new(code: ReturnCode, tid: TransactionId) -> Self {
        Response {
            code,
            tid,
            comment: code.reason().to_string(),
            params: Params::new(),
            sdp: None,
        }
    }

    /// Replaces the comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = comment.into();
        self
    }
}

/// One message: a command or a response.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// A command.
    Command(Command),
    /// A response.
    Response(Response),
}

impl Message {
    /// The transaction id of either kind.
    pub fn tid(&self) -> TransactionId {
        match self {
            Message::Command(c) => c.tid,
            Message::Response(r) => r.tid,
        }
    }
}
