//! Typed views of parameter values (RFC 3435 §3.2.2).
//!
//! Every type here has a `parse` (or a `parse_*` function) that returns the [`Error`]
//! variant whose return code the RFC asks for, and a `Display` that writes the canonical
//! wire form, which parses back to an equal value. Names and keywords are matched
//! case-insensitively.
//!
//! Decisions worth knowing:
//! - **LocalConnectionOptions** (RFC 3435 §3.2.2, RFC 3661): a malformed item or value
//!   (no `:`, `p:abc`, `e:maybe`, `t:1ff`) is [`Error::LcoInvalid`] (541); a range whose
//!   low end exceeds its high end (`p:30-10`) or an option given twice is
//!   [`Error::LcoInconsistent`] (524); an option name that is neither known nor an
//!   extension (`zz:1`) is [`Error::LcoUnknownExtension`] (525). Extensions (`x-name`,
//!   `x+name`, `package/name`) are kept in [`LocalConnectionOptions::extensions`]; whether
//!   the gateway supports a mandatory `x+` one, and whether a codec or value is supported
//!   ([`Error::LcoUnsupportedValue`], 532), is for the caller to decide.
//! - **RequestedEvents** (§3.2.2.4): `name`, `name(actions)` or `name(actions)(params)`;
//!   no parentheses means Notify. As a convenience, a single parenthesised group that
//!   cannot be actions (`R/rto(100)`, `x(a=1)`) is read as event parameters with Notify;
//!   output always writes the actions explicitly. Actions: at most one of N, A, D, I;
//!   I combines only with K; each action at most once; anything else is
//!   [`Error::UnknownAction`] (523). Embedded requests nest at most [`MAX_NESTING`] deep.
//! - **SignalRequests** / **ObservedEvents**: `name` or `name(params)`; the parameters
//!   (e.g. `+`/`-` for on/off signals, `to=3000`, quoted URLs) are kept raw.
//! - Syntax errors in event/signal lists are [`Error::Protocol`] (510); other malformed
//!   values are [`Error::InvalidParameter`] (539) unless a more specific code exists.

use std::fmt;
use std::net::IpAddr;

use crate::code::Error;
use crate::message::{ParamName, TransactionId};

/// Deepest nesting of embedded requests (`E(R(x(E(R(...)))))`) that is parsed.
pub const MAX_NESTING: usize = 8;

impl ParamName {
    /// Maps a parameter code (`"k"`, `"Z2"`, `"rm"`, ...) to its name, case-insensitively.
    /// Extension names (`X-...`) are not codes and give `None`.
    pub fn from_code(code: &str) -> Option<ParamName> {
        const TABLE: [(&str, ParamName); 26] = [
            ("K", ParamName::ResponseAck),
            ("B", ParamName::BearerInformation),
            ("C", ParamName::CallId),
            ("I", ParamName::ConnectionId),
            ("N", ParamName::NotifiedEntity),
            ("X", ParamName::RequestIdentifier),
            ("L", ParamName::LocalConnectionOptions),
            ("M", ParamName::ConnectionMode),
            ("R", ParamName::RequestedEvents),
            ("S", ParamName::SignalRequests),
            ("D", ParamName::DigitMap),
            ("O", ParamName::ObservedEvents),
            ("P", ParamName::ConnectionParameters),
            ("E", ParamName::ReasonCode),
            ("Z", ParamName::SpecificEndpointId),
            ("Z2", ParamName::SecondEndpointId),
            ("I2", ParamName::SecondConnectionId),
            ("F", ParamName::RequestedInfo),
            ("Q", ParamName::QuarantineHandling),
            ("T", ParamName::DetectEvents),
            ("RM", ParamName::RestartMethod),
            ("RD", ParamName::RestartDelay),
            ("A", ParamName::Capabilities),
            ("ES", ParamName::EventStates),
            ("PL", ParamName::PackageList),
            ("MD", ParamName::MaxMgcpDatagram),
        ];
        TABLE
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(code))
            .map(|(_, n)| n.clone())
    }
}

fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

fn is_ext_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 2 && (b[0] == b'x' || b[0] == b'X') && (b[1] == b'-' || b[1] == b'+')
}

fn is_package_ext(s: &str) -> bool {
    match s.split_once('/') {
        Some((p, n)) => {
            let ok = |t: &str| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            ok(p) && ok(n)
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------------------
// Identifiers

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted identifier, in hex digits.
            pub const MAX_LEN: usize = 32;

            /// Parses 1..=32 hexadecimal digits; anything else is [`Error::InvalidParameter`].
            pub fn parse(s: &str) -> Result<Self, Error> {
                let s = trim(s);
                if s.is_empty() || s.len() > Self::MAX_LEN || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Error::InvalidParameter(format!("{} {s:?}", $what)));
                }
                Ok($name(s.to_string()))
            }

            /// An identifier from a number, written in upper-case hex.
            pub fn from_number(n: u128) -> Self {
                $name(format!("{n:X}"))
            }

            /// The identifier as sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.eq_ignore_ascii_case(&other.0)
            }
        }

        impl Eq for $name {}

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                for b in self.0.bytes() {
                    state.write_u8(b.to_ascii_lowercase());
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

hex_id!(
    /// A call identifier (`C:`), 1..=32 hex digits, compared case-insensitively.
    CallId,
    "call-id"
);
hex_id!(
    /// A connection identifier (`I:`), 1..=32 hex digits, compared case-insensitively.
    ConnectionId,
    "connection-id"
);

// ---------------------------------------------------------------------------------------
// ConnectionMode

/// A connection mode (`M:`, RFC 3435 §3.2.2).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ConnectionMode {
    /// `sendonly`.
    SendOnly,
    /// `recvonly`.
    RecvOnly,
    /// `sendrecv`.
    SendRecv,
    /// `confrnce`.
    Confrnce,
    /// `inactive`.
    Inactive,
    /// `loopback`.
    Loopback,
    /// `conttest`.
    ContTest,
    /// `netwloop`.
    NetwLoop,
    /// `netwtest`.
    NetwTest,
    /// `data`.
    Data,
    /// An extension mode (`X-name`, `X+name` or `package/name`), kept as sent.
    Extension(String),
}

impl ConnectionMode {
    const NAMED: [(&'static str, ConnectionMode); 10] = [
        ("sendonly", ConnectionMode::SendOnly),
        ("recvonly", ConnectionMode::RecvOnly),
        ("sendrecv", ConnectionMode::SendRecv),
        ("confrnce", ConnectionMode::Confrnce),
        ("inactive", ConnectionMode::Inactive),
        ("loopback", ConnectionMode::Loopback),
        ("conttest", ConnectionMode::ContTest),
        ("netwloop", ConnectionMode::NetwLoop),
        ("netwtest", ConnectionMode::NetwTest),
        ("data", ConnectionMode::Data),
    ];

    /// Parses a mode; unknown modes are [`Error::InvalidMode`] (517).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = trim(s);
        if let Some((_, m)) = Self::NAMED.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Ok(m.clone());
        }
        if is_ext_name(s) || is_package_ext(s) {
            return Ok(ConnectionMode::Extension(s.to_string()));
        }
        Err(Error::InvalidMode(s.to_string()))
    }

    /// The wire form (lower case for the standard modes).
    pub fn as_str(&self) -> &str {
        match self {
            ConnectionMode::Extension(s) => s,
            m => Self::NAMED
                .iter()
                .find(|(_, n)| n == m)
                .map_or("", |(s, _)| s),
        }
    }
}

impl fmt::Display for ConnectionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Splitting helpers for lists with nested parentheses and quoted strings

/// Splits `s` at top-level `sep` characters (outside parentheses, brackets and double
/// quotes). Unbalanced input is a [`Error::Protocol`].
fn split_top(s: &str, sep: u8) -> Result<Vec<&str>, Error> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if quoted {
            if b == b'"' {
                quoted = false;
            }
            continue;
        }
        match b {
            b'"' => quoted = true,
            b'(' | b'[' => depth += 1,
            b')' | b']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| Error::Protocol(format!("unbalanced ')' in {s:?}")))?;
            }
            _ if b == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted || depth != 0 {
        return Err(Error::Protocol(format!(
            "unbalanced quotes or parentheses in {s:?}"
        )));
    }
    out.push(&s[start..]);
    Ok(out)
}

/// Splits a comma-separated list into trimmed, non-empty items; an empty (or blank)
/// list gives no items.
fn list_items(s: &str) -> Result<Vec<&str>, Error> {
    if trim(s).is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<&str> = split_top(s, b',')?.into_iter().map(trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(Error::Protocol(format!("empty item in list {s:?}")));
    }
    Ok(items)
}

/// Splits `name(g1)(g2)...` into the name and the group contents (trimmed).
fn split_groups(item: &str) -> Result<(&str, Vec<&str>), Error> {
    let bad = || Error::Protocol(format!("malformed item {item:?}"));
    let mut name_end = None;
    let mut groups = Vec::new();
    let mut depth = 0usize;
    let mut bracket = 0usize;
    let mut quoted = false;
    let mut group_start = 0;
    let mut after_group = false;
    for (i, b) in item.bytes().enumerate() {
        if quoted {
            if b == b'"' {
                quoted = false;
            }
            continue;
        }
        if depth == 0 && after_group && !matches!(b, b'(' | b' ' | b'\t') {
            return Err(bad());
        }
        match b {
            b'"' if depth > 0 => quoted = true,
            b'[' if depth == 0 => bracket += 1,
            b']' if depth == 0 => bracket = bracket.checked_sub(1).ok_or_else(bad)?,
            b'(' if bracket == 0 => {
                if depth == 0 {
                    name_end.get_or_insert(i);
                    group_start = i + 1;
                }
                depth += 1;
            }
            b')' if bracket == 0 => {
                depth = depth.checked_sub(1).ok_or_else(bad)?;
                if depth == 0 {
                    groups.push(trim(&item[group_start..i]));
                    after_group = true;
                }
            }
            _ => {}
        }
    }
    if quoted || depth != 0 || bracket != 0 {
        return Err(bad());
    }
    let name = trim(&item[..name_end.unwrap_or(item.len())]);
    Ok((name, groups))
}

// ---------------------------------------------------------------------------------------
// Event names

/// An event or signal name (RFC 3435 §2.1.7, §3.2.2.4): `[package/]event[@connection]`.
///
/// The event part may be a name (`hd`), a DTMF symbol (`0`, `#`, `*`), a wildcard (`*`,
/// `all`) or a range (`[0-9#*T]`); the package may be `*`; the connection may be a
/// connection id, `$` or `*`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct EventName {
    /// Package name, if given (`L`, `D`, `*`).
    pub package: Option<String>,
    /// Event or signal name, or a range in brackets.
    pub event: String,
    /// The connection after `@`, if given.
    pub connection: Option<String>,
}

impl EventName {
    /// Parses a name (no parameters); syntax errors are [`Error::Protocol`].
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = trim(s);
        let bad = || Error::Protocol(format!("malformed event name {s:?}"));
        let (rest, connection) = match s.split_once('@') {
            Some((r, c)) => {
                let ok = c == "$"
                    || c == "*"
                    || (!c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric()));
                if !ok {
                    return Err(bad());
                }
                (r, Some(c.to_string()))
            }
            None => (s, None),
        };
        let (package, event) = match rest.split_once('/') {
            Some((p, e)) => {
                let ok = p == "*"
                    || (!p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                if !ok {
                    return Err(bad());
                }
                (Some(p.to_string()), e)
            }
            None => (None, rest),
        };
        let event_ok = if let Some(inner) = event.strip_prefix('[') {
            inner.strip_suffix(']').is_some_and(|r| {
                !r.is_empty()
                    && r.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"[]()@/,\"".contains(&b))
            })
        } else {
            !event.is_empty()
                && event.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'#' | b'*' | b'.')
                })
        };
        if !event_ok {
            return Err(bad());
        }
        Ok(EventName {
            package,
            event: event.to_string(),
            connection,
        })
    }

    /// Whether the package matches `pkg` case-insensitively (no package never matches).
    pub fn package_is(&self, pkg: &str) -> bool {
        self.package
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(pkg))
    }

    /// Whether the event part equals `event`, case-insensitively.
    pub fn event_is(&self, event: &str) -> bool {
        self.event.eq_ignore_ascii_case(event)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.package {
            write!(f, "{p}/")?;
        }
        f.write_str(&self.event)?;
        if let Some(c) = &self.connection {
            write!(f, "@{c}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Requested events, signals, observed events

/// What to do when a requested event occurs (RFC 3435 §2.3.3).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    /// `N`: notify the call agent.
    Notify,
    /// `A`: accumulate.
    Accumulate,
    /// `D`: accumulate according to the digit map.
    AccumulateDigitMap,
    /// `S`: swap audio.
    Swap,
    /// `I`: ignore.
    Ignore,
    /// `K`: keep signals active.
    KeepActive,
    /// `E(...)`: embedded notification request.
    Embedded(EmbeddedRequest),
}

/// An embedded notification request `E(R(...),S(...),D(...))`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct EmbeddedRequest {
    /// The new requested events, `R(...)`.
    pub requested_events: Option<Vec<RequestedEvent>>,
    /// The new signals, `S(...)`.
    pub signals: Option<Vec<SignalRequest>>,
    /// The new digit map, `D(...)`, raw.
    pub digit_map: Option<String>,
}

/// One entry of `R:`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestedEvent {
    /// The event.
    pub name: EventName,
    /// The actions (never empty once parsed; Notify when none was given).
    pub actions: Vec<Action>,
    /// Event parameters, raw, without the parentheses.
    pub params: Option<String>,
}

/// One entry of `S:` (or of an embedded `S(...)`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignalRequest {
    /// The signal.
    pub name: EventName,
    /// Signal parameters, raw, without the parentheses (`+`, `-`, `to=3000`, a URL...).
    pub params: Option<String>,
}

/// One entry of `O:`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ObservedEvent {
    /// The event.
    pub name: EventName,
    /// Event parameters, raw, without the parentheses.
    pub params: Option<String>,
}

/// Whether a parenthesised group reads as an action list rather than event parameters.
fn looks_like_actions(group: &str) -> bool {
    if group.is_empty() {
        return true;
    }
    match split_top(group, b',') {
        Ok(items) => items.iter().map(|i| trim(i)).all(|i| {
            let b = i.as_bytes();
            (!b.is_empty() && b.len() <= 2 && b.iter().all(|c| c.is_ascii_alphabetic()))
                || is_package_ext(i)
                || ((b.first() == Some(&b'E') || b.first() == Some(&b'e'))
                    && trim(&i[1..]).starts_with('('))
        }),
        Err(_) => false,
    }
}

fn parse_actions(s: &str, depth: usize) -> Result<Vec<Action>, Error> {
    let items = list_items(s)?;
    if items.is_empty() {
        return Err(Error::Protocol("empty action list".into()));
    }
    let mut actions = Vec::with_capacity(items.len());
    for item in items {
        let a = match item.to_ascii_uppercase().as_str() {
            "N" => Action::Notify,
            "A" => Action::Accumulate,
            "D" => Action::AccumulateDigitMap,
            "S" => Action::Swap,
            "I" => Action::Ignore,
            "K" => Action::KeepActive,
            _ => {
                let (name, groups) = split_groups(item)?;
                if !name.eq_ignore_ascii_case("E") || groups.is_empty() {
                    return Err(Error::UnknownAction(item.to_string()));
                }
                if groups.len() != 1 {
                    return Err(Error::Protocol(format!(
                        "malformed embedded request {item:?}"
                    )));
                }
                Action::Embedded(parse_embedded(groups[0], depth + 1)?)
            }
        };
        let dup = actions
            .iter()
            .any(|x: &Action| std::mem::discriminant(x) == std::mem::discriminant(&a));
        if dup {
            return Err(Error::UnknownAction(format!("{item} repeated")));
        }
        actions.push(a);
    }
    let exclusive = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Notify | Action::Accumulate | Action::AccumulateDigitMap | Action::Ignore
            )
        })
        .count();
    if exclusive > 1 {
        return Err(Error::UnknownAction(format!("illegal combination {s:?}")));
    }
    if actions.contains(&Action::Ignore)
        && actions
            .iter()
            .any(|a| !matches!(a, Action::Ignore | Action::KeepActive))
    {
        return Err(Error::UnknownAction(format!("illegal combination {s:?}")));
    }
    Ok(actions)
}

fn parse_embedded(s: &str, depth: usize) -> Result<EmbeddedRequest, Error> {
    if depth > MAX_NESTING {
        return Err(Error::Protocol(
            "embedded requests nested too deeply".into(),
        ));
    }
    let items = list_items(s)?;
    if items.is_empty() {
        return Err(Error::Protocol("empty embedded request".into()));
    }
    let mut e = EmbeddedRequest::default();
    for item in items {
        let (name, groups) = split_groups(item)?;
        let [body] = groups[..] else {
            return Err(Error::Protocol(format!("malformed embedded item {item:?}")));
        };
        let dup = || Error::Protocol(format!("embedded {name} repeated"));
        match name.to_ascii_uppercase().as_str() {
            "R" if e.requested_events.is_none() => {
                e.requested_events = Some(parse_requested_events_at(body, depth)?)
            }
            "S" if e.signals.is_none() => e.signals = Some(parse_signals_at(body, depth)?),
            "D" if e.digit_map.is_none() => e.digit_map = Some(body.to_string()),
            "R" | "S" | "D" => return Err(dup()),
            _ => return Err(Error::Protocol(format!("unknown embedded item {item:?}"))),
        }
    }
    Ok(e)
}

fn parse_requested_events_at(s: &str, depth: usize) -> Result<Vec<RequestedEvent>, Error> {
    if depth > MAX_NESTING {
        return Err(Error::Protocol(
            "embedded requests nested too deeply".into(),
        ));
    }
    list_items(s)?
        .into_iter()
        .map(|item| {
            let (name, groups) = split_groups(item)?;
            let name = EventName::parse(name)?;
            let (actions, params) = match groups[..] {
                [] => (vec![Action::Notify], None),
                [g] if looks_like_actions(g) => (parse_actions(g, depth)?, None),
                [g] => (vec![Action::Notify], Some(g.to_string())),
                [a, p] => (parse_actions(a, depth)?, Some(p.to_string())),
                _ => return Err(Error::Protocol(format!("too many groups in {item:?}"))),
            };
            Ok(RequestedEvent {
                name,
                actions,
                params,
            })
        })
        .collect()
}

fn parse_signals_at(s: &str, depth: usize) -> Result<Vec<SignalRequest>, Error> {
    if depth > MAX_NESTING {
        return Err(Error::Protocol(
            "embedded requests nested too deeply".into(),
        ));
    }
    parse_named_list(s).map(|v| {
        v.into_iter()
            .map(|(name, params)| SignalRequest { name, params })
            .collect()
    })
}

/// `name` or `name(params)` items.
fn parse_named_list(s: &str) -> Result<Vec<(EventName, Option<String>)>, Error> {
    list_items(s)?
        .into_iter()
        .map(|item| {
            let (name, groups) = split_groups(item)?;
            let params = match groups[..] {
                [] => None,
                [p] => Some(p.to_string()),
                _ => return Err(Error::Protocol(format!("too many groups in {item:?}"))),
            };
            Ok((EventName::parse(name)?, params))
        })
        .collect()
}

/// Parses a `R:` value (possibly empty, meaning no events requested).
pub fn parse_requested_events(s: &str) -> Result<Vec<RequestedEvent>, Error> {
    parse_requested_events_at(s, 0)
}

/// Parses a `S:` value (possibly empty, meaning stop all signals).
pub fn parse_signal_requests(s: &str) -> Result<Vec<SignalRequest>, Error> {
    parse_signals_at(s, 0)
}

/// Parses an `O:` value.
pub fn parse_observed_events(s: &str) -> Result<Vec<ObservedEvent>, Error> {
    parse_named_list(s).map(|v| {
        v.into_iter()
            .map(|(name, params)| ObservedEvent { name, params })
            .collect()
    })
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Notify => f.write_str("N"),
            Action::Accumulate => f.write_str("A"),
            Action::AccumulateDigitMap => f.write_str("D"),
            Action::Swap => f.write_str("S"),
            Action::Ignore => f.write_str("I"),
            Action::KeepActive => f.write_str("K"),
            Action::Embedded(e) => write!(f, "E({e})"),
        }
    }
}

impl fmt::Display for EmbeddedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(r) = &self.requested_events {
            write!(f, "R({})", List(r))?;
            sep = ",";
        }
        if let Some(s) = &self.signals {
            write!(f, "{sep}S({})", List(s))?;
            sep = ",";
        }
        if let Some(d) = &self.digit_map {
            write!(f, "{sep}D({d})")?;
        }
        Ok(())
    }
}

impl fmt::Display for RequestedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        if self.actions.is_empty() {
            f.write_str("N")?;
        }
        f.write_str(")")?;
        if let Some(p) = &self.params {
            write!(f, "({p})")?;
        }
        Ok(())
    }
}

impl fmt::Display for SignalRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some(p) = &self.params {
            write!(f, "({p})")?;
        }
        Ok(())
    }
}

impl fmt::Display for ObservedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some(p) = &self.params {
            write!(f, "({p})")?;
        }
        Ok(())
    }
}

/// Displays a slice as a comma-separated list: `List(&events).to_string()` is the wire
/// form of an `R:`, `S:` or `O:` value.
pub struct List<'a, T>(pub &'a [T]);

impl<T: fmt::Display> fmt::Display for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, x) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{x}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// LocalConnectionOptions

/// LocalConnectionOptions (`L:`, RFC 3435 §3.2.2). See the module docs for the error
/// mapping.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct LocalConnectionOptions {
    /// `p:` packetization period in ms, or a range.
    pub packetization: Option<(u32, Option<u32>)>,
    /// `a:` codec names in order of preference.
    pub codecs: Vec<String>,
    /// `b:` bandwidth in kbit/s, or a range.
    pub bandwidth: Option<(u32, Option<u32>)>,
    /// `e:` echo cancellation.
    pub echo_cancel: Option<bool>,
    /// `gc:` gain control (`auto` or a dB value).
    pub gain_control: Option<String>,
    /// `s:` silence suppression.
    pub silence_suppression: Option<bool>,
    /// `t:` type of service (one byte, hex on the wire).
    pub type_of_service: Option<u8>,
    /// `r:` resource reservation (`g`, `cl`, `be`).
    pub resource_reservation: Option<String>,
    /// `k:` encryption key.
    pub encryption: Option<String>,
    /// `nt:` network type (`IN`, `ATM`, `LOCAL`, ...).
    pub network_type: Option<String>,
    /// Extension options (`x-name`, `x+name`, `package/name`) with their values (empty
    /// when the option had no `:value`).
    pub extensions: Vec<(String, String)>,
}

fn parse_range(key: &str, v: &str) -> Result<(u32, Option<u32>), Error> {
    let num = |t: &str| -> Result<u32, Error> {
        let t = trim(t);
        if t.is_empty() || t.len() > 9 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::LcoInvalid(format!("{key}:{v}")));
        }
        t.parse()
            .map_err(|_| Error::LcoInvalid(format!("{key}:{v}")))
    };
    match v.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo > hi {
                return Err(Error::LcoInconsistent(format!("{key}:{v}")));
            }
            Ok((lo, Some(hi)))
        }
        None => Ok((num(v)?, None)),
    }
}

fn parse_on_off(key: &str, v: &str) -> Result<bool, Error> {
    if v.eq_ignore_ascii_case("on") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("off") {
        Ok(false)
    } else {
        Err(Error::LcoInvalid(format!("{key}:{v}")))
    }
}

impl LocalConnectionOptions {
    /// Parses an `L:` value such as `p:20, a:PCMU;G729, nt:IN` (spaces after commas and
    /// around `:` tolerated). An empty value gives the default (nothing set).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut lco = LocalConnectionOptions::default();
        let items = list_items(s).map_err(|e| Error::LcoInvalid(e.to_string()))?;
        let mut seen: Vec<String> = Vec::new();
        for item in items {
            let (key, value) = match item.split_once(':') {
                Some((k, v)) => (trim(k), trim(v)),
                None => (item, ""),
            };
            let lower = key.to_ascii_lowercase();
            if seen.contains(&lower) {
                return Err(Error::LcoInconsistent(format!("{key} given twice")));
            }
            seen.push(lower.clone());
            if is_ext_name(key) || is_package_ext(key) {
                lco.extensions.push((key.to_string(), value.to_string()));
                continue;
            }
            let known = matches!(
                lower.as_str(),
                "p" | "a" | "b" | "e" | "gc" | "s" | "t" | "r" | "k" | "nt"
            );
            if !known {
                return Err(Error::LcoUnknownExtension(key.to_string()));
            }
            if value.is_empty() {
                return Err(Error::LcoInvalid(format!("{key} has no value")));
            }
            let invalid = || Error::LcoInvalid(format!("{key}:{value}"));
            match lower.as_str() {
                "p" => lco.packetization = Some(parse_range(key, value)?),
                "b" => lco.bandwidth = Some(parse_range(key, value)?),
                "a" => {
                    lco.codecs = value.split(';').map(|c| trim(c).to_string()).collect();
                    if lco.codecs.iter().any(|c| c.is_empty()) {
                        return Err(invalid());
                    }
                }
                "e" => lco.echo_cancel = Some(parse_on_off(key, value)?),
                "s" => lco.silence_suppression = Some(parse_on_off(key, value)?),
                "gc" => {
                    let digits = value.strip_prefix('-').unwrap_or(value);
                    let ok = value.eq_ignore_ascii_case("auto")
                        || (!digits.is_empty()
                            && digits.len() <= 4
                            && digits.bytes().all(|b| b.is_ascii_digit()));
                    if !ok {
                        return Err(invalid());
                    }
                    lco.gain_control = Some(value.to_string());
                }
                "t" => {
                    if value.len() > 2 {
                        return Err(invalid());
                    }
                    lco.type_of_service =
                        Some(u8::from_str_radix(value, 16).map_err(|_| invalid())?);
                }
                "r" => lco.resource_reservation = Some(value.to_string()),
                "k" => lco.encryption = Some(value.to_string()),
                _ => lco.network_type = Some(value.to_string()),
            }
        }
        Ok(lco)
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == LocalConnectionOptions::default()
    }
}

fn write_range(f: &mut fmt::Formatter<'_>, r: (u32, Option<u32>)) -> fmt::Result {
    match r {
        (lo, Some(hi)) => write!(f, "{lo}-{hi}"),
        (v, None) => write!(f, "{v}"),
    }
}

impl fmt::Display for LocalConnectionOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut next = |f: &mut fmt::Formatter<'_>, key: &str, colon: bool| -> fmt::Result {
            let r = write!(f, "{sep}{key}{}", if colon { ":" } else { "" });
            sep = ", ";
            r
        };
        if let Some(p) = self.packetization {
            next(f, "p", true)?;
            write_range(f, p)?;
        }
        if !self.codecs.is_empty() {
            next(f, "a", true)?;
            f.write_str(&self.codecs.join(";"))?;
        }
        if let Some(b) = self.bandwidth {
            next(f, "b", true)?;
            write_range(f, b)?;
        }
        let on_off = |b: bool| if b { "on" } else { "off" };
        if let Some(e) = self.echo_cancel {
            next(f, "e", true)?;
            f.write_str(on_off(e))?;
        }
        if let Some(g) = &self.gain_control {
            next(f, "gc", true)?;
            f.write_str(g)?;
        }
        if let Some(s) = self.silence_suppression {
            next(f, "s", true)?;
            f.write_str(on_off(s))?;
        }
        if let Some(t) = self.type_of_service {
            next(f, "t", true)?;
            write!(f, "{t:02x}")?;
        }
        if let Some(r) = &self.resource_reservation {
            next(f, "r", true)?;
            f.write_str(r)?;
        }
        if let Some(k) = &self.encryption {
            next(f, "k", true)?;
            f.write_str(k)?;
        }
        if let Some(nt) = &self.network_type {
            next(f, "nt", true)?;
            f.write_str(nt)?;
        }
        for (k, v) in &self.extensions {
            next(f, k, !v.is_empty())?;
            f.write_str(v)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// RestartMethod

/// RestartMethod (`RM:`, RFC 3435 §2.3.12, §3.2.2).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum RestartMethod {
    /// `graceful`.
    Graceful,
    /// `forced`.
    Forced,
    /// `restart`.
    Restart,
    /// `disconnected`.
    Disconnected,
    /// `cancel-graceful`.
    CancelGraceful,
    /// An extension method (`X-name` or `package/name`), kept as sent.
    Extension(String),
}

impl RestartMethod {
    const NAMED: [(&'static str, RestartMethod); 5] = [
        ("graceful", RestartMethod::Graceful),
        ("forced", RestartMethod::Forced),
        ("restart", RestartMethod::Restart),
        ("disconnected", RestartMethod::Disconnected),
        ("cancel-graceful", RestartMethod::CancelGraceful),
    ];

    /// Parses a method; unknown ones are [`Error::UnknownRestartMethod`] (536).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = trim(s);
        if let Some((_, m)) = Self::NAMED.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Ok(m.clone());
        }
        if is_ext_name(s) || is_package_ext(s) {
            return Ok(RestartMethod::Extension(s.to_string()));
        }
        Err(Error::UnknownRestartMethod(s.to_string()))
    }

    /// The wire form.
    pub fn as_str(&self) -> &str {
        match self {
            RestartMethod::Extension(s) => s,
            m => Self::NAMED
                .iter()
                .find(|(_, n)| n == m)
                .map_or("", |(s, _)| s),
        }
    }
}

impl fmt::Display for RestartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// RequestedInfo

/// One item of `F:` (RequestedInfo, RFC 3435 §3.2.2).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum InfoCode {
    /// A parameter, by its name.
    Param(ParamName),
    /// `RC`: the RemoteConnectionDescriptor.
    RemoteConnectionDescriptor,
    /// `LC`: the LocalConnectionDescriptor.
    LocalConnectionDescriptor,
}

impl InfoCode {
    /// The wire code.
    pub fn code(&self) -> &str {
        match self {
            InfoCode::Param(p) => p.code(),
            InfoCode::RemoteConnectionDescriptor => "RC",
            InfoCode::LocalConnectionDescriptor => "LC",
        }
    }
}

impl fmt::Display for InfoCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// RequestedInfo: the list of `F:` items.
pub type RequestedInfo = Vec<InfoCode>;

/// Parses an `F:` value (possibly empty); unknown codes are [`Error::InvalidParameter`].
pub fn parse_requested_info(s: &str) -> Result<RequestedInfo, Error> {
    let items = list_items(s).map_err(|e| Error::InvalidParameter(e.to_string()))?;
    items
        .into_iter()
        .map(|i| {
            if i.eq_ignore_ascii_case("RC") {
                Ok(InfoCode::RemoteConnectionDescriptor)
            } else if i.eq_ignore_ascii_case("LC") {
                Ok(InfoCode::LocalConnectionDescriptor)
            } else if let Some(p) = ParamName::from_code(i) {
                Ok(InfoCode::Param(p))
            } else if is_ext_name(i) {
                Ok(InfoCode::Param(ParamName::Extension(i.to_string())))
            } else {
                Err(Error::InvalidParameter(format!("requested info {i:?}")))
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// QuarantineHandling

/// QuarantineHandling (`Q:`, RFC 3435 §3.2.2). Defaults: `process`, `step`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct QuarantineHandling {
    /// `discard` (true) or `process` (false).
    pub discard: bool,
    /// `loop` (true) or `step` (false).
    pub loop_: bool,
}

impl QuarantineHandling {
    /// Parses `process`/`discard` and `step`/`loop`, each at most once, in any order.
    /// Anything else is [`Error::UnknownQuarantineHandling`] (508).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = || Error::UnknownQuarantineHandling(s.to_string());
        let items = list_items(s).map_err(|_| bad())?;
        if items.is_empty() {
            return Err(bad());
        }
        let (mut q, mut disp, mut step) = (QuarantineHandling::default(), false, false);
        for i in items {
            let i = i.to_ascii_lowercase();
            match i.as_str() {
                "process" | "discard" if !disp => {
                    disp = true;
                    q.discard = i == "discard";
                }
                "step" | "loop" if !step => {
                    step = true;
                    q.loop_ = i == "loop";
                }
                _ => return Err(bad()),
            }
        }
        Ok(q)
    }
}

impl fmt::Display for QuarantineHandling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = if self.discard { "discard" } else { "process" };
        let l = if self.loop_ { "loop" } else { "step" };
        write!(f, "{d},{l}")
    }
}

// ---------------------------------------------------------------------------------------
// ConnectionParameters

/// ConnectionParameters (`P:`, RFC 3435 §3.2.2): `PS=1245, OS=62345, ...`.
///
/// Standard names (PS OS PR OR PL JI LA) are stored upper-case; extension names
/// (`X-...`) as sent. Values are integers.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ConnectionParameters(pub Vec<(String, i64)>);

impl ConnectionParameters {
    const STANDARD: [&'static str; 7] = ["PS", "OS", "PR", "OR", "PL", "JI", "LA"];

    /// Parses a `P:` value; malformed items are [`Error::InvalidParameter`].
    pub fn parse(s: &str) -> Result<Self, Error> {
        let items = list_items(s).map_err(|e| Error::InvalidParameter(e.to_string()))?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let bad = || Error::InvalidParameter(format!("connection parameter {item:?}"));
            let (k, v) = item.split_once('=').ok_or_else(bad)?;
            let (k, v) = (trim(k), trim(v));
            let name = if let Some(std) = Self::STANDARD.iter().find(|n| n.eq_ignore_ascii_case(k))
            {
                (*std).to_string()
            } else if is_ext_name(k) || is_package_ext(k) {
                k.to_string()
            } else {
                return Err(bad());
            };
            let v: i64 = v.parse().map_err(|_| bad())?;
            if out
                .iter()
                .any(|(n, _): &(String, i64)| n.eq_ignore_ascii_case(&name))
            {
                return Err(bad());
            }
            out.push((name, v));
        }
        Ok(ConnectionParameters(out))
    }

    /// The value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<i64> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl fmt::Display for ConnectionParameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// ReasonCode, BearerInformation, NotifiedEntity, numbers, ResponseAck

/// ReasonCode (`E:`, RFC 3435 §3.2.2): `900 Endpoint malfunctioning`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReasonCode {
    /// Three-digit code.
    pub code: u16,
    /// Commentary (may be empty).
    pub text: String,
}

impl ReasonCode {
    /// Parses `code [text]`; a code that is not three digits is [`Error::InvalidParameter`].
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = trim(s);
        let (code, text) = s.split_once([' ', '\t']).unwrap_or((s, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidParameter(format!("reason code {s:?}")));
        }
        let code = code
            .parse()
            .map_err(|_| Error::InvalidParameter(format!("reason code {s:?}")))?;
        Ok(ReasonCode {
            code,
            text: trim(text).to_string(),
        })
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.code)?;
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// The bearer encoding in BearerInformation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BearerEncoding {
    /// `e:A` — G.711 A-law.
    ALaw,
    /// `e:mu` — G.711 µ-law.
    MuLaw,
}

/// BearerInformation (`B:`, RFC 3435 §3.2.2): `e:A` or `e:mu`, plus extensions.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct BearerInformation {
    /// The encoding, if given.
    pub encoding: Option<BearerEncoding>,
    /// Extension attributes (`x-name[:value]`), value empty when absent.
    pub extensions: Vec<(String, String)>,
}

impl BearerInformation {
    /// Parses a `B:` value; unknown attributes or encodings are [`Error::InvalidParameter`].
    pub fn parse(s: &str) -> Result<Self, Error> {
        let items = list_items(s).map_err(|e| Error::InvalidParameter(e.to_string()))?;
        let mut b = BearerInformation::default();
        for item in items {
            let (k, v) = item
                .split_once(':')
                .map_or((item, ""), |(k, v)| (trim(k), trim(v)));
            let bad = || Error::InvalidParameter(format!("bearer information {item:?}"));
            if k.eq_ignore_ascii_case("e") && b.encoding.is_none() {
                b.encoding = Some(if v.eq_ignore_ascii_case("A") {
                    BearerEncoding::ALaw
                } else if v.eq_ignore_ascii_case("mu") {
                    BearerEncoding::MuLaw
                } else {
                    return Err(bad());
                });
            } else if is_ext_name(k) || is_package_ext(k) {
                b.extensions.push((k.to_string(), v.to_string()));
            } else {
                return Err(bad());
            }
        }
        Ok(b)
    }
}

impl fmt::Display for BearerInformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(e) = self.encoding {
            f.write_str(match e {
                BearerEncoding::ALaw => "e:A",
                BearerEncoding::MuLaw => "e:mu",
            })?;
            sep = ",";
        }
        for (k, v) in &self.extensions {
            if v.is_empty() {
                write!(f, "{sep}{k}")?;
            } else {
                write!(f, "{sep}{k}:{v}")?;
            }
            sep = ",";
        }
        Ok(())
    }
}

/// NotifiedEntity (`N:`, RFC 3435 §2.1.4, §3.2.2): `[local@]host[:port]`.
///
/// `host` is kept as sent, so an IP literal keeps its brackets (`[::1]`); see
/// [`NotifiedEntity::ip`]. The default port (2727) is the caller's business.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NotifiedEntity {
    /// The part before `@`, if any.
    pub local: Option<String>,
    /// Domain name or `[IP]`.
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
}

impl NotifiedEntity {
    /// Parses a notified entity; malformed values are [`Error::InvalidParameter`].
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = trim(s);
        let bad = || Error::InvalidParameter(format!("notified entity {s:?}"));
        let (local, hostport) = match s.rsplit_once('@') {
            Some((l, h)) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_graphic()) => {
                (Some(l.to_string()), h)
            }
            Some(_) => return Err(bad()),
            None => (None, s),
        };
        let (host, port) = if hostport.starts_with('[') {
            let close = hostport.find(']').ok_or_else(bad)?;
            let (h, rest) = hostport.split_at(close + 1);
            h[1..h.len() - 1].parse::<IpAddr>().map_err(|_| bad())?;
            let port = match rest {
                "" => None,
                r => Some(r.strip_prefix(':').ok_or_else(bad)?),
            };
            (h, port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let host_ok = host.starts_with('[')
            || (!host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
        if !host_ok {
            return Err(bad());
        }
        let port = match port {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().map_err(|_| bad())?)
            }
            Some(_) => return Err(bad()),
            None => None,
        };
        Ok(NotifiedEntity {
            local,
            host: host.to_string(),
            port,
        })
    }

    /// The host as an IP address, when it is one (`[1.2.3.4]`, `[::1]` or a bare IPv4).
    pub fn ip(&self) -> Option<IpAddr> {
        let h = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        h.parse().ok()
    }
}

impl fmt::Display for NotifiedEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

fn parse_u32(what: &str, s: &str) -> Result<u32, Error> {
    let s = trim(s);
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidParameter(format!("{what} {s:?}")));
    }
    s.parse()
        .map_err(|_| Error::InvalidParameter(format!("{what} {s:?}")))
}

/// RestartDelay (`RD:`), in seconds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct RestartDelay(pub u32);

impl RestartDelay {
    /// Parses a decimal number of seconds; otherwise [`Error::InvalidParameter`].
    pub fn parse(s: &str) -> Result<Self, Error> {
        parse_u32("restart delay", s).map(RestartDelay)
    }
}

impl fmt::Display for RestartDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// MaxMGCPDatagram (`MD:`), in bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct MaxMgcpDatagram(pub u32);

impl MaxMgcpDatagram {
    /// Parses a decimal byte count; otherwise [`Error::InvalidParameter`].
    pub fn parse(s: &str) -> Result<Self, Error> {
        parse_u32("max datagram", s).map(MaxMgcpDatagram)
    }
}

impl fmt::Display for MaxMgcpDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses a ResponseAck (`K:`, RFC 3435 §3.2.2, §3.5): a possibly empty list of
/// transaction ids or ranges `low-high`. Malformed values are [`Error::InvalidParameter`].
pub fn parse_response_ack(s: &str) -> Result<Vec<(TransactionId, TransactionId)>, Error> {
    let items = list_items(s).map_err(|e| Error::InvalidParameter(e.to_string()))?;
    items
        .into_iter()
        .map(|i| {
            let bad = || Error::InvalidParameter(format!("response ack {i:?}"));
            let one = |t: &str| {
                let t = trim(t);
                if t.is_empty() || t.len() > 9 || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                t.parse().ok().and_then(TransactionId::new).ok_or_else(bad)
            };
            let (lo, hi) = match i.split_once('-') {
                Some((a, b)) => (one(a)?, one(b)?),
                None => (one(i)?, one(i)?),
            };
            if lo > hi {
                return Err(bad());
            }
            Ok((lo, hi))
        })
        .collect()
}

/// Writes a ResponseAck value: `5, 7-9`.
pub fn format_response_ack(ranges: &[(TransactionId, TransactionId)]) -> String {
    ranges
        .iter()
        .map(|(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::ReturnCode;

    fn ev(s: &str) -> EventName {
        EventName::parse(s).unwrap()
    }

    /// Display then parse gives the same value back.
    fn rt_events(s: &str) -> Vec<RequestedEvent> {
        let v = parse_requested_events(s).unwrap();
        let again = parse_requested_events(&List(&v).to_string()).unwrap();
        assert_eq!(v, again, "{s}");
        v
    }

    #[test]
    fn param_codes_from_code() {
        assert_eq!(
            ParamName::from_code("z2"),
            Some(ParamName::SecondEndpointId)
        );
        assert_eq!(ParamName::from_code("Rm"), Some(ParamName::RestartMethod));
        assert_eq!(ParamName::from_code("md"), Some(ParamName::MaxMgcpDatagram));
        assert_eq!(ParamName::from_code("X-foo"), None);
        assert_eq!(ParamName::from_code(""), None);
        for code in [
            "K", "B", "C", "I", "N", "X", "L", "M", "R", "S", "D", "O", "P", "E", "Z", "Z2", "I2",
            "F", "Q", "T", "RM", "RD", "A", "ES", "PL", "MD",
        ] {
            assert_eq!(ParamName::from_code(code).unwrap().code(), code);
        }
    }

    #[test]
    fn call_and_connection_ids() {
        let a = CallId::parse("A3C47F21456789F0").unwrap();
        assert_eq!(a, CallId::parse("a3c47f21456789f0").unwrap());
        assert_eq!(a.as_str(), "A3C47F21456789F0");
        assert_eq!(
            ConnectionId::from_number(0xfde234c8).to_string(),
            "FDE234C8"
        );
        for bad in ["", "xyz", "0123456789abcdef0123456789abcdef0", "12 34"] {
            let e = ConnectionId::parse(bad).unwrap_err();
            assert_eq!(e.return_code(), ReturnCode::INVALID_PARAMETER, "{bad:?}");
        }
        use std::collections::HashSet;
        let set: HashSet<_> = [CallId::parse("ab").unwrap(), CallId::parse("AB").unwrap()].into();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn connection_modes() {
        for m in [
            "sendonly", "RECVONLY", "SendRecv", "confrnce", "inactive", "loopback", "conttest",
            "netwloop", "netwtest", "data",
        ] {
            let mode = ConnectionMode::parse(m).unwrap();
            assert_eq!(mode.to_string(), m.to_ascii_lowercase());
            assert_eq!(ConnectionMode::parse(&mode.to_string()).unwrap(), mode);
        }
        assert_eq!(
            ConnectionMode::parse("X-Osmux").unwrap(),
            ConnectionMode::Extension("X-Osmux".into())
        );
        let e = ConnectionMode::parse("sendandreceive").unwrap_err();
        assert_eq!(e.return_code(), ReturnCode::INVALID_MODE);
    }

    #[test]
    fn lco_osmo_and_rfc() {
        let l = LocalConnectionOptions::parse("p:20, a:PCMU, nt:IN").unwrap();
        assert_eq!(l.packetization, Some((20, None)));
        assert_eq!(l.codecs, vec!["PCMU"]);
        assert_eq!(l.network_type.as_deref(), Some("IN"));
        assert_eq!(l.to_string(), "p:20, a:PCMU, nt:IN");

        let s = "p:10-30, a:G729;PCMU, b:32-64, e:on, gc:-6, s:off, t:b8, r:g, k:clear:abc, \
                 nt:ATM, x-foo:bar, X+must, osmux/cid:3";
        let l = LocalConnectionOptions::parse(s).unwrap();
        assert_eq!(l.packetization, Some((10, Some(30))));
        assert_eq!(l.codecs, vec!["G729", "PCMU"]);
        assert_eq!(l.bandwidth, Some((32, Some(64))));
        assert_eq!(l.echo_cancel, Some(true));
        assert_eq!(l.gain_control.as_deref(), Some("-6"));
        assert_eq!(l.silence_suppression, Some(false));
        assert_eq!(l.type_of_service, Some(0xb8));
        assert_eq!(l.resource_reservation.as_deref(), Some("g"));
        assert_eq!(l.encryption.as_deref(), Some("clear:abc"));
        assert_eq!(
            l.extensions,
            vec![
                ("x-foo".to_string(), "bar".to_string()),
                ("X+must".to_string(), String::new()),
                ("osmux/cid".to_string(), "3".to_string()),
            ]
        );
        assert_eq!(LocalConnectionOptions::parse(&l.to_string()).unwrap(), l);
        assert!(LocalConnectionOptions::parse("").unwrap().is_empty());
        // Case-insensitive keys, spaces around ':'.
        let l = LocalConnectionOptions::parse("P : 20 ,A:pcma").unwrap();
        assert_eq!(
            (l.packetization, l.codecs),
            (Some((20, None)), vec!["pcma".to_string()])
        );
    }

    #[test]
    fn lco_errors() {
        let code = |s: &str| LocalConnectionOptions::parse(s).unwrap_err().return_code();
        assert_eq!(code("p:30-10"), ReturnCode::INTERNAL_INCONSISTENCY_LCO);
        assert_eq!(code("b:64-32"), ReturnCode::INTERNAL_INCONSISTENCY_LCO);
        assert_eq!(code("p:20, p:30"), ReturnCode::INTERNAL_INCONSISTENCY_LCO);
        assert_eq!(code("zz:1"), ReturnCode::UNKNOWN_EXTENSION_LCO);
        for bad in [
            "p:abc",
            "p:",
            "e:maybe",
            "s:1",
            "t:1ff",
            "t:zz",
            "gc:loud",
            "a:PCMU;;G729",
            "p:20,,a:PCMU",
            "p:99999999999",
        ] {
            assert_eq!(code(bad), ReturnCode::INVALID_LCO, "{bad}");
        }
    }

    #[test]
    fn event_names() {
        assert_eq!(
            ev("L/hd@A3C4"),
            EventName {
                package: Some("L".into()),
                event: "hd".into(),
                connection: Some("A3C4".into())
            }
        );
        assert_eq!(
            ev("hd"),
            EventName {
                package: None,
                event: "hd".into(),
                connection: None
            }
        );
        for s in [
            "D/[0-9#*T]",
            "*/*",
            "L/*",
            "D/X",
            "R/rto",
            "D/#",
            "L/all",
            "R/foo@$",
            "R/foo@*",
        ] {
            assert_eq!(ev(s).to_string(), s);
        }
        assert!(ev("l/HD").package_is("L") && ev("l/HD").event_is("hd"));
        for bad in [
            "", "L/", "/hd", "L/h d", "L/hd@", "L/[0-9", "L/[]", "a/b/c", "L/hd@x y",
        ] {
            let e = EventName::parse(bad).unwrap_err();
            assert_eq!(e.return_code(), ReturnCode::PROTOCOL_ERROR, "{bad:?}");
        }
    }

    #[test]
    fn requested_events_rfc_examples() {
        let v = rt_events("L/hu(N), L/hf(S,N), L/[0-9#*T](D)");
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].actions, vec![Action::Notify]);
        assert_eq!(v[1].actions, vec![Action::Swap, Action::Notify]);
        assert_eq!(v[2].name.event, "[0-9#*T]");
        assert_eq!(v[2].actions, vec![Action::AccumulateDigitMap]);

        let v = rt_events("hd, L/oc@0A3F, */*(K,N)");
        assert_eq!(v[0].actions, vec![Action::Notify]);
        assert_eq!(v[1].name.connection.as_deref(), Some("0A3F"));
        assert_eq!(v[2].actions, vec![Action::KeepActive, Action::Notify]);
        assert!(parse_requested_events("").unwrap().is_empty());
        assert!(parse_requested_events("  ").unwrap().is_empty());
    }

    #[test]
    fn requested_events_embedded() {
        let v = rt_events("L/hd(A, E(S(L/dl),R(L/oc(N),L/hu(N)),D([0-9].T)))");
        let [Action::Accumulate, Action::Embedded(e)] = &v[0].actions[..] else {
            panic!("{:?}", v[0].actions)
        };
        assert_eq!(e.signals.as_ref().unwrap()[0].name, ev("L/dl"));
        assert_eq!(e.requested_events.as_ref().unwrap().len(), 2);
        assert_eq!(e.digit_map.as_deref(), Some("[0-9].T"));
        assert_eq!(
            List(&v).to_string(),
            "L/hd(A,E(R(L/oc(N),L/hu(N)),S(L/dl),D([0-9].T)))"
        );
        // Embedded digit map with its own parentheses and alternation.
        let v = rt_events("L/hd(E(D((0T|00T|[1-7]xxx|9011x.T)),R(D/[0-9#*T](D))))");
        let Action::Embedded(e) = &v[0].actions[0] else {
            panic!()
        };
        assert_eq!(e.digit_map.as_deref(), Some("(0T|00T|[1-7]xxx|9011x.T)"));
    }

    #[test]
    fn requested_events_params() {
        let v = rt_events("R/rto(100), L/hd(N)(x=1, \"a,b)\")");
        assert_eq!(v[0].actions, vec![Action::Notify]);
        assert_eq!(v[0].params.as_deref(), Some("100"));
        assert_eq!(v[1].params.as_deref(), Some("x=1, \"a,b)\""));
        assert_eq!(List(&v).to_string(), "R/rto(N)(100),L/hd(N)(x=1, \"a,b)\")");
    }

    #[test]
    fn requested_events_errors() {
        let code = |s: &str| parse_requested_events(s).unwrap_err().return_code();
        for s in [
            "L/hd(N,I)",
            "L/hd(A,D)",
            "L/hd(N,N)",
            "L/hd(Q)",
            "L/hd(I,S)",
            "L/hd(ZZ)",
            "L/hd(E(R(L/hu)),E(S(L/rg)))",
            "L/hd(N,X/y)",
        ] {
            assert_eq!(code(s), ReturnCode::UNKNOWN_ACTION, "{s}");
        }
        assert!(parse_requested_events("L/hd(I,K)").is_ok());
        for s in [
            "L/hd(",
            "L/hd)",
            "L/hd(N)x",
            "L/hd(N)(1)(2)",
            "L/hd,,L/hu",
            "L/hd()",
            "L/hd(E())",
            "L/hd(E(Q(x)))",
            "L/hd(E(R(a),R(b)))",
            "L/h d",
        ] {
            assert_eq!(code(s), ReturnCode::PROTOCOL_ERROR, "{s}");
        }
        // Nesting is bounded.
        let deep = format!("{}L/hu{}", "L/hd(E(R(".repeat(20), ")))".repeat(20));
        assert_eq!(code(&deep), ReturnCode::PROTOCOL_ERROR);
        let mut ok = "L/hu".to_string();
        for _ in 0..MAX_NESTING {
            ok = format!("L/hd(E(R({ok})))");
        }
        assert!(parse_requested_events(&ok).is_ok());
        // Pathological input does not overflow the stack.
        let huge = "E(R(".repeat(10_000);
        assert!(parse_requested_events(&format!("L/hd({huge}")).is_err());
    }

    #[test]
    fn signals() {
        let v = parse_signal_requests(
            "L/rg, L/vmwi(+), A/ann(http://x.net/a.au, 3), G/rt(to=3000), D/1",
        )
        .unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v[0].params, None);
        assert_eq!(v[1].params.as_deref(), Some("+"));
        assert_eq!(v[2].params.as_deref(), Some("http://x.net/a.au, 3"));
        assert_eq!(v[3].params.as_deref(), Some("to=3000"));
        let text = List(&v).to_string();
        assert_eq!(
            text,
            "L/rg,L/vmwi(+),A/ann(http://x.net/a.au, 3),G/rt(to=3000),D/1"
        );
        assert_eq!(parse_signal_requests(&text).unwrap(), v);
        assert!(parse_signal_requests("").unwrap().is_empty());
        assert_eq!(
            parse_signal_requests("L/rg(1)(2)")
                .unwrap_err()
                .return_code(),
            ReturnCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn observed_events() {
        let v = parse_observed_events("L/hu, D/1, D/2, 0, #, R/rto(100)").unwrap();
        assert_eq!(v.len(), 6);
        assert_eq!(v[4].name.event, "#");
        assert_eq!(v[5].params.as_deref(), Some("100"));
        assert_eq!(parse_observed_events(&List(&v).to_string()).unwrap(), v);
        assert!(parse_observed_events("L/hu(").is_err());
    }

    #[test]
    fn restart_methods() {
        for m in [
            "graceful",
            "forced",
            "restart",
            "disconnected",
            "cancel-graceful",
        ] {
            let r = RestartMethod::parse(&m.to_ascii_uppercase()).unwrap();
            assert_eq!(r.to_string(), m);
        }
        assert_eq!(
            RestartMethod::parse("X-cold").unwrap(),
            RestartMethod::Extension("X-cold".into())
        );
        assert_eq!(
            RestartMethod::parse("reboot").unwrap_err().return_code(),
            ReturnCode::UNKNOWN_RESTART_METHOD
        );
    }

    #[test]
    fn requested_info() {
        let f = parse_requested_info("R, S, D, X, N, I, C, L, M, RC, LC, rm, x-foo").unwrap();
        assert_eq!(f.len(), 13);
        assert_eq!(f[9], InfoCode::RemoteConnectionDescriptor);
        assert_eq!(f[10], InfoCode::LocalConnectionDescriptor);
        assert_eq!(f[11], InfoCode::Param(ParamName::RestartMethod));
        assert_eq!(List(&f).to_string(), "R,S,D,X,N,I,C,L,M,RC,LC,RM,x-foo");
        assert!(parse_requested_info("").unwrap().is_empty());
        for bad in ["R, WW", "R,,S"] {
            assert_eq!(
                parse_requested_info(bad).unwrap_err().return_code(),
                ReturnCode::INVALID_PARAMETER
            );
        }
    }

    #[test]
    fn quarantine() {
        let q = QuarantineHandling::parse("process,loop").unwrap();
        assert_eq!(
            q,
            QuarantineHandling {
                discard: false,
                loop_: true
            }
        );
        let q = QuarantineHandling::parse("Step, DISCARD").unwrap();
        assert_eq!(
            q,
            QuarantineHandling {
                discard: true,
                loop_: false
            }
        );
        assert_eq!(q.to_string(), "discard,step");
        assert_eq!(
            QuarantineHandling::parse("loop").unwrap().to_string(),
            "process,loop"
        );
        for bad in ["", "keep", "process,discard", "loop,loop"] {
            assert_eq!(
                QuarantineHandling::parse(bad).unwrap_err().return_code(),
                ReturnCode::UNKNOWN_QUARANTINE_HANDLING
            );
        }
    }

    #[test]
    fn connection_parameters() {
        let s = "PS=1245, OS=62345, PR=780, OR=45123, PL=10, JI=27, LA=48";
        let p = ConnectionParameters::parse(s).unwrap();
        assert_eq!(p.get("os"), Some(62345));
        assert_eq!(p.get("LA"), Some(48));
        assert_eq!(p.to_string(), s);
        let p = ConnectionParameters::parse("ps=1, X-Osmo-CP=-3").unwrap();
        assert_eq!(
            p.0,
            vec![("PS".to_string(), 1), ("X-Osmo-CP".to_string(), -3)]
        );
        for bad in ["PS", "PS=x", "ZZ=1", "PS=1, ps=2"] {
            assert_eq!(
                ConnectionParameters::parse(bad).unwrap_err().return_code(),
                ReturnCode::INVALID_PARAMETER
            );
        }
    }

    #[test]
    fn reason_bearer_numbers() {
        let r = ReasonCode::parse("900 Endpoint malfunctioning").unwrap();
        assert_eq!((r.code, r.text.as_str()), (900, "Endpoint malfunctioning"));
        assert_eq!(r.to_string(), "900 Endpoint malfunctioning");
        assert_eq!(
            ReasonCode::parse("0").unwrap_err().return_code(),
            ReturnCode::INVALID_PARAMETER
        );
        assert_eq!(ReasonCode::parse("000").unwrap().to_string(), "000");

        assert_eq!(
            BearerInformation::parse("e:A").unwrap().encoding,
            Some(BearerEncoding::ALaw)
        );
        let b = BearerInformation::parse("E:MU, x-y:1").unwrap();
        assert_eq!(b.encoding, Some(BearerEncoding::MuLaw));
        assert_eq!(b.to_string(), "e:mu,x-y:1");
        assert!(BearerInformation::parse("e:G729").is_err());
        assert!(BearerInformation::parse("q:1").is_err());

        assert_eq!(RestartDelay::parse(" 300 ").unwrap(), RestartDelay(300));
        assert_eq!(MaxMgcpDatagram::parse("4000").unwrap().to_string(), "4000");
        for bad in ["", "-1", "99999999999", "1e3"] {
            assert!(RestartDelay::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn notified_entities() {
        let n = NotifiedEntity::parse("ca@ca1.whatever.net:5678").unwrap();
        assert_eq!(n.local.as_deref(), Some("ca"));
        assert_eq!((n.host.as_str(), n.port), ("ca1.whatever.net", Some(5678)));
        assert_eq!(n.ip(), None);
        let n = NotifiedEntity::parse("[127.0.0.1]:2727").unwrap();
        assert_eq!(
            (n.local, n.host.as_str(), n.port),
            (None, "[127.0.0.1]", Some(2727))
        );
        let n = NotifiedEntity::parse("ca@[::1]:2727").unwrap();
        assert_eq!(n.ip(), Some("::1".parse().unwrap()));
        assert_eq!(n.to_string(), "ca@[::1]:2727");
        let n = NotifiedEntity::parse("ca.example.net").unwrap();
        assert_eq!((n.port, n.to_string().as_str()), (None, "ca.example.net"));
        for bad in [
            "", "@h", "ca@", "h:", "h:99999", "[::1", "[nope]:1", "[::1]x", "a b@h",
        ] {
            assert_eq!(
                NotifiedEntity::parse(bad).unwrap_err().return_code(),
                ReturnCode::INVALID_PARAMETER,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn response_ack() {
        let r = parse_response_ack("5, 7-9").unwrap();
        assert_eq!(format_response_ack(&r), "5, 7-9");
        assert!(parse_response_ack("").unwrap().is_empty());
        for bad in ["9-7", "0", "x", "1-", "1000000000"] {
            assert!(parse_response_ack(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_never_panic_and_round_trip() {
        let alphabet = b"LDR/hd0#*[]()@,NAKSIE\"=x- +:p2;ae";
        let mut state: u64 = 0x1234_5678_9abc_def1;
        let mut ok = 0;
        for _ in 0..20_000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for _ in 0..state % 24 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push(alphabet[(state % alphabet.len() as u64) as usize] as char);
            }
            if let Ok(v) = parse_requested_events(&s) {
                ok += 1;
                assert_eq!(
                    parse_requested_events(&List(&v).to_string()).unwrap(),
                    v,
                    "{s:?}"
                );
            }
            if let Ok(v) = parse_signal_requests(&s) {
                assert_eq!(
                    parse_signal_requests(&List(&v).to_string()).unwrap(),
                    v,
                    "{s:?}"
                );
            }
            if let Ok(v) = parse_observed_events(&s) {
                assert_eq!(
                    parse_observed_events(&List(&v).to_string()).unwrap(),
                    v,
                    "{s:?}"
                );
            }
            if let Ok(l) = LocalConnectionOptions::parse(&s) {
                assert_eq!(
                    LocalConnectionOptions::parse(&l.to_string()).unwrap(),
                    l,
                    "{s:?}"
                );
            }
            let _ = NotifiedEntity::parse(&s);
            let _ = ConnectionParameters::parse(&s);
            let _ = BearerInformation::parse(&s);
            let _ = QuarantineHandling::parse(&s);
            let _ = parse_requested_info(&s);
        }
        assert!(ok > 100, "only {ok} requested-event lists parsed");
    }
}
