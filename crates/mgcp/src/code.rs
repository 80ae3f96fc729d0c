//! Return codes (RFC 3435 §2.4, RFC 3661) and the crate's error type.
//!
//! [`Error::return_code`] is the one place where an error becomes a return code.

use std::fmt;

/// A three-digit MGCP return code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ReturnCode(pub u16);

macro_rules! codes {
    ($($name:ident = $val:expr, $text:expr;)*) => {
        impl ReturnCode {
            $(
                #[doc = $text]
                pub const $name: ReturnCode = ReturnCode($val);
            )*

            /// The standard reason text for the code (empty for codes we do not know).
            pub fn reason(self) -> &'static str {
                match self.0 {
                    $($val => $text,)*
                    _ => "",
                }
            }
        }
    };
}

codes! {
    RESPONSE_ACK = 0, "Response Acknowledgement";
    TRANSACTION_IN_PROGRESS = 100, "Transaction being executed";
    TRANSACTION_QUEUED = 101, "Transaction queued";
    OK = 200, "OK";
    CONNECTION_DELETED = 250, "Connection was deleted";
    TRANSIENT_ERROR = 400, "Transient error";
    PHONE_OFF_HOOK = 401, "Phone already off hook";
    PHONE_ON_HOOK = 402, "Phone already on hook";
    NO_RESOURCES_NOW = 403, "Insufficient resources available now";
    INSUFFICIENT_BANDWIDTH_NOW = 404, "Insufficient bandwidth now";
    ENDPOINT_RESTARTING_TRANSIENT = 405, "Endpoint is restarting";
    TRANSACTION_TIMEOUT = 406, "Transaction timeout";
    TRANSACTION_ABORTED = 407, "Transaction aborted";
    OVERLOAD = 409, "Internal overload";
    NO_ENDPOINT_AVAILABLE = 410, "No endpoint available";
    ENDPOINT_UNKNOWN = 500, "Endpoint unknown";
    ENDPOINT_NOT_READY = 501, "Endpoint not ready";
    INSUFFICIENT_RESOURCES = 502, "Insufficient resources";
    ALL_ENDPOINTS_BUSY = 503, "All of wildcarded endpoints busy";
    UNKNOWN_COMMAND = 504, "Unknown or unsupported command";
    UNSUPPORTED_REMOTE_DESCRIPTOR = 505, "Unsupported RemoteConnectionDescriptor";
    UNABLE_TO_SATISFY_LCO_AND_RCD = 506, "Unable to satisfy both LocalConnectionOptions and RemoteConnectionDescriptor";
    UNSUPPORTED_FUNCTIONALITY = 507, "Unsupported functionality";
    UNKNOWN_QUARANTINE_HANDLING = 508, "Unknown or unsupported quarantine handling";
    ERROR_IN_REMOTE_DESCRIPTOR = 509, "Error in RemoteConnectionDescriptor";
    PROTOCOL_ERROR = 510, "Protocol error";
    UNRECOGNIZED_EXTENSION = 511, "Unrecognized extension";
    CANT_DETECT_EVENT = 512, "Unable to detect requested event";
    CANT_GENERATE_SIGNAL = 513, "Unable to generate signal";
    CANT_SEND_ANNOUNCEMENT = 514, "Unable to send announcement";
    INCORRECT_CONNECTION_ID = 515, "Incorrect connection-id";
    UNKNOWN_CALL_ID = 516, "Unknown call-id";
    INVALID_MODE = 517, "Unsupported or invalid mode";
    UNKNOWN_PACKAGE = 518, "Unsupported or unknown package";
    NO_DIGIT_MAP = 519, "Endpoint does not have a digit map";
    ENDPOINT_RESTARTING = 520, "Endpoint is restarting";
    ENDPOINT_REDIRECTED = 521, "Endpoint redirected to another Call Agent";
    NO_SUCH_EVENT_OR_SIGNAL = 522, "No such event or signal";
    UNKNOWN_ACTION = 523, "Unknown action or illegal combination of actions";
    INTERNAL_INCONSISTENCY_LCO = 524, "Internal inconsistency in LocalConnectionOptions";
    UNKNOWN_EXTENSION_LCO = 525, "Unknown extension in LocalConnectionOptions";
    INSUFFICIENT_BANDWIDTH = 526, "Insufficient bandwidth";
    MISSING_REMOTE_DESCRIPTOR = 527, "Missing RemoteConnectionDescriptor";
    INCOMPATIBLE_VERSION = 528, "Incompatible protocol version";
    HARDWARE_FAILURE = 529, "Internal hardware failure";
    CAS_ERROR = 530, "CAS signaling protocol error";
    TRUNK_GROUP_FAILURE = 531, "Failure of a grouping of trunks";
    UNSUPPORTED_LCO_VALUE = 532, "Unsupported value(s) in LocalConnectionOptions";
    RESPONSE_TOO_BIG = 533, "Response too big";
    CODEC_NEGOTIATION_FAILURE = 534, "Codec negotiation failure";
    PACKETIZATION_NOT_SUPPORTED = 535, "Packetization period not supported";
    UNKNOWN_RESTART_METHOD = 536, "Unknown or unsupported RestartMethod";
    UNKNOWN_DIGIT_MAP_EXTENSION = 537, "Unknown or unsupported digit map extension";
    EVENT_SIGNAL_PARAMETER_ERROR = 538, "Event/signal parameter error";
    INVALID_PARAMETER = 539, "Invalid or unsupported command parameter";
    CONNECTION_LIMIT = 540, "Per endpoint connection limit exceeded";
    INVALID_LCO = 541, "Invalid or unsupported LocalConnectionOptions";
}

impl ReturnCode {
    /// 100–199: provisional.
    pub fn is_provisional(self) -> bool {
        (100..200).contains(&self.0)
    }

    /// 200–299: success.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// 400–599 (and the 800 package-specific range): failure.
    pub fn is_error(self) -> bool {
        self.0 >= 400
    }

    /// Whether this is a final response (not provisional and not a response ack).
    pub fn is_final(self) -> bool {
        self.0 >= 200
    }
}

impl fmt::Display for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}

/// Everything that can go wrong in handling an MGCP command, from parsing to execution.
///
/// The control plane uses these too, so that every failure is mapped to a return code
/// by [`Error::return_code`] and nowhere else.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum Error {
    /// The message could not be parsed (bad header line, bad parameter line, bad syntax).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The verb is not one of the nine commands.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// The protocol version is not MGCP 1.0.
    #[error("incompatible protocol version {0:?}")]
    IncompatibleVersion(String),
    /// A parameter name is not known and not an `X-` extension.
    #[error("unknown parameter {0:?}")]
    UnknownParameter(String),
    /// An `X+` (mandatory) extension parameter we do not support.
    #[error("unrecognized extension {0:?}")]
    UnrecognizedExtension(String),
    /// A parameter value is malformed, repeated, or not allowed for this command.
    #[error("invalid parameter {0}")]
    InvalidParameter(String),
    /// The endpoint does not exist here.
    #[error("endpoint unknown: {0}")]
    EndpointUnknown(String),
    /// The endpoint exists but cannot take the command now.
    #[error("endpoint not ready: {0}")]
    EndpointNotReady(String),
    /// The endpoint is restarting.
    #[error("endpoint is restarting")]
    EndpointRestarting,
    /// No ports or memory for the request.
    #[error("insufficient resources: {0}")]
    InsufficientResources(String),
    /// All endpoints matched by an `$` wildcard are busy.
    #[error("all wildcarded endpoints busy")]
    AllEndpointsBusy,
    /// Connection-id not known on that endpoint.
    #[error("incorrect connection-id {0:?}")]
    IncorrectConnectionId(String),
    /// Call-id not known on that endpoint or mismatching the connection.
    #[error("unknown call-id {0:?}")]
    UnknownCallId(String),
    /// Bad or unsupported connection mode.
    #[error("unsupported or invalid mode {0:?}")]
    InvalidMode(String),
    /// Package not supported on that endpoint.
    #[error("unsupported or unknown package {0:?}")]
    UnknownPackage(String),
    /// Event or signal unknown within its package.
    #[error("no such event or signal {0:?}")]
    NoSuchEventOrSignal(String),
    /// The endpoint cannot detect the requested event.
    #[error("cannot detect event {0:?}")]
    CantDetectEvent(String),
    /// The announcement cannot be played (missing or unreadable file).
    #[error("cannot send announcement: {0}")]
    CantSendAnnouncement(String),
    /// The endpoint cannot generate the requested signal.
    #[error("cannot generate signal {0:?}")]
    CantGenerateSignal(String),
    /// Unknown action or illegal combination of actions in `R:`.
    #[error("unknown action or illegal combination {0:?}")]
    UnknownAction(String),
    /// Quarantine handling value not understood.
    #[error("unknown quarantine handling {0:?}")]
    UnknownQuarantineHandling(String),
    /// A parameter on an event or signal is wrong.
    #[error("event/signal parameter error {0:?}")]
    EventSignalParameter(String),
    /// Digit map syntax error or unsupported extension.
    #[error("digit map error {0:?}")]
    DigitMap(String),
    /// Accumulate-according-to-digit-map requested with no digit map.
    #[error("endpoint does not have a digit map")]
    NoDigitMap,
    /// LocalConnectionOptions are internally inconsistent.
    #[error("internal inconsistency in LocalConnectionOptions: {0}")]
    LcoInconsistent(String),
    /// LocalConnectionOptions contain an unknown extension.
    #[error("unknown extension in LocalConnectionOptions: {0}")]
    LcoUnknownExtension(String),
    /// LocalConnectionOptions contain an unsupported value.
    #[error("unsupported value in LocalConnectionOptions: {0}")]
    LcoUnsupportedValue(String),
    /// LocalConnectionOptions are invalid (syntax).
    #[error("invalid LocalConnectionOptions: {0}")]
    LcoInvalid(String),
    /// The remote session description is malformed.
    #[error("error in RemoteConnectionDescriptor: {0}")]
    BadRemoteDescriptor(String),
    /// The remote session description is valid but unsupported.
    #[error("unsupported RemoteConnectionDescriptor: {0}")]
    UnsupportedRemoteDescriptor(String),
    /// No codec in common.
    #[error("codec negotiation failure: {0}")]
    CodecNegotiation(String),
    /// Packetization period not supported.
    #[error("packetization period not supported: {0}")]
    Packetization(String),
    /// Unknown RestartMethod.
    #[error("unknown restart method {0:?}")]
    UnknownRestartMethod(String),
    /// Too many connections on the endpoint.
    #[error("per endpoint connection limit exceeded")]
    ConnectionLimit,
    /// A feature we do not implement.
    #[error("unsupported functionality: {0}")]
    Unsupported(String),
    /// The gateway is overloaded; try again.
    #[error("transient error: {0}")]
    Transient(String),
    /// The response would not fit in a datagram.
    #[error("response too big")]
    ResponseTooBig,
}

impl Error {
    /// The return code for this error. This is the only error-to-code mapping in mgw.
    pub fn return_code(&self) -> ReturnCode {
        match self {
            Error::Protocol(_) => ReturnCode::PROTOCOL_ERROR,
            Error::UnknownCommand(_) => ReturnCode::UNKNOWN_COMMAND,
            Error::IncompatibleVersion(_) => ReturnCode::INCOMPATIBLE_VERSION,
            Error::UnknownParameter(_) => ReturnCode::INVALID_PARAMETER,
            Error::UnrecognizedExtension(_) => ReturnCode::UNRECOGNIZED_EXTENSION,
            Error::InvalidParameter(_) => ReturnCode::INVALID_PARAMETER,
            Error::EndpointUnknown(_) => ReturnCode::ENDPOINT_UNKNOWN,
            Error::EndpointNotReady(_) => ReturnCode::ENDPOINT_NOT_READY,
            Error::EndpointRestarting => ReturnCode::ENDPOINT_RESTARTING,
            Error::InsufficientResources(_) => ReturnCode::INSUFFICIENT_RESOURCES,
            Error::AllEndpointsBusy => ReturnCode::ALL_ENDPOINTS_BUSY,
            Error::IncorrectConnectionId(_) => ReturnCode::INCORRECT_CONNECTION_ID,
            Error::UnknownCallId(_) => ReturnCode::UNKNOWN_CALL_ID,
            Error::InvalidMode(_) => ReturnCode::INVALID_MODE,
            Error::UnknownPackage(_) => ReturnCode::UNKNOWN_PACKAGE,
            Error::NoSuchEventOrSignal(_) => ReturnCode::NO_SUCH_EVENT_OR_SIGNAL,
            Error::CantDetectEvent(_) => ReturnCode::CANT_DETECT_EVENT,
            Error::CantGenerateSignal(_) => ReturnCode::CANT_GENERATE_SIGNAL,
            Error::CantSendAnnouncement(_) => ReturnCode::CANT_SEND_ANNOUNCEMENT,
            Error::UnknownAction(_) => ReturnCode::UNKNOWN_ACTION,
            Error::UnknownQuarantineHandling(_) => ReturnCode::UNKNOWN_QUARANTINE_HANDLING,
            Error::EventSignalParameter(_) => ReturnCode::EVENT_SIGNAL_PARAMETER_ERROR,
            Error::DigitMap(_) => ReturnCode::UNKNOWN_DIGIT_MAP_EXTENSION,
            Error::NoDigitMap => ReturnCode::NO_DIGIT_MAP,
            Error::LcoInconsistent(_) => ReturnCode::INTERNAL_INCONSISTENCY_LCO,
            Error::LcoUnknownExtension(_) => ReturnCode::UNKNOWN_EXTENSION_LCO,
            Error::LcoUnsupportedValue(_) => ReturnCode::UNSUPPORTED_LCO_VALUE,
            Error::LcoInvalid(_) => ReturnCode::INVALID_LCO,
            Error::BadRemoteDescriptor(_) => ReturnCode::ERROR_IN_REMOTE_DESCRIPTOR,
            Error::UnsupportedRemoteDescriptor(_) => ReturnCode::UNSUPPORTED_REMOTE_DESCRIPTOR,
            Error::CodecNegotiation(_) => ReturnCode::CODEC_NEGOTIATION_FAILURE,
            Error::Packetization(_) => ReturnCode::PACKETIZATION_NOT_SUPPORTED,
            Error::UnknownRestartMethod(_) => ReturnCode::UNKNOWN_RESTART_METHOD,
            Error::ConnectionLimit => ReturnCode::CONNECTION_LIMIT,
            Error::Unsupported(_) => ReturnCode::UNSUPPORTED_FUNCTIONALITY,
            Error::Transient(_) => ReturnCode::TRANSIENT_ERROR,
            Error::ResponseTooBig => ReturnCode::RESPONSE_TOO_BIG,
        }
    }
}
