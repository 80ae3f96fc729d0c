//! Fuzz the typed parameter parsers of `mgcp::params` (and the digit map parser).
//!
//! Every parser runs on the same input text (lossy UTF-8). Properties: nothing panics,
//! and for every value a parser accepts, its canonical wire form (`Display`, or the
//! crate's formatter) parses back to an equal value that writes the same text again
//! (emit → parse is stable).
#![no_main]

use std::fmt::{Debug, Display};

use libfuzzer_sys::fuzz_target;
use mgcp::digitmap::DigitMap;
use mgcp::params::{
    format_response_ack, parse_observed_events, parse_requested_events, parse_requested_info,
    parse_response_ack, parse_signal_requests, BearerInformation, CallId, ConnectionId,
    ConnectionMode, ConnectionParameters, EventName, List, LocalConnectionOptions, MaxMgcpDatagram,
    NotifiedEntity, QuarantineHandling, ReasonCode, RestartDelay, RestartMethod,
};
use mgcp::{Error, ParamName};

/// `parse(s)`, and if accepted: `parse(emit(v)) == v` and `emit` is stable.
fn roundtrip<T, P, E>(what: &str, s: &str, parse: P, emit: E)
where
    T: PartialEq + Debug,
    P: Fn(&str) -> Result<T, Error>,
    E: Fn(&T) -> String,
{
    let Ok(v) = parse(s) else { return };
    let text = emit(&v);
    match parse(&text) {
        Ok(v2) => {
            assert_eq!(
                v, v2,
                "{what}: parse(emit(v)) != v; input {s:?}, emitted {text:?}"
            );
            assert_eq!(text, emit(&v2), "{what}: emit not stable; input {s:?}");
        }
        Err(e) => panic!("{what}: emitted {text:?} (from {s:?}) does not parse: {e}"),
    }
}

fn display<T: Display>(v: &T) -> String {
    v.to_string()
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();

    roundtrip("ConnectionMode", s, ConnectionMode::parse, display);
    roundtrip("EventName", s, EventName::parse, display);
    roundtrip("RequestedEvents", s, parse_requested_events, |v| {
        List(v).to_string()
    });
    roundtrip("SignalRequests", s, parse_signal_requests, |v| {
        List(v).to_string()
    });
    roundtrip("ObservedEvents", s, parse_observed_events, |v| {
        List(v).to_string()
    });
    roundtrip(
        "LocalConnectionOptions",
        s,
        LocalConnectionOptions::parse,
        display,
    );
    roundtrip("RestartMethod", s, RestartMethod::parse, display);
    roundtrip("RequestedInfo", s, parse_requested_info, |v| {
        List(v).to_string()
    });
    roundtrip("QuarantineHandling", s, QuarantineHandling::parse, display);
    roundtrip(
        "ConnectionParameters",
        s,
        ConnectionParameters::parse,
        display,
    );
    roundtrip("ReasonCode", s, ReasonCode::parse, display);
    roundtrip("BearerInformation", s, BearerInformation::parse, display);
    roundtrip("NotifiedEntity", s, NotifiedEntity::parse, display);
    roundtrip("RestartDelay", s, RestartDelay::parse, display);
    roundtrip("MaxMgcpDatagram", s, MaxMgcpDatagram::parse, display);
    roundtrip("CallId", s, CallId::parse, display);
    roundtrip("ConnectionId", s, ConnectionId::parse, display);
    roundtrip("ResponseAck", s, parse_response_ack, |v| {
        format_response_ack(v)
    });
    roundtrip("DigitMap", s, DigitMap::parse, |m| m.as_str().to_owned());

    if let Some(p) = ParamName::from_code(s) {
        assert_eq!(
            ParamName::from_code(p.code()),
            Some(p.clone()),
            "ParamName code {s:?}"
        );
    }
});
