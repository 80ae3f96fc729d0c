//! Requested events, signals and notifications for one endpoint (RFC 3435 §2.3.3,
//! §4.4.1 quarantine; RFC 3660 packages).
//!
//! [`Catalog`] says which packages, events and signals exist and which this endpoint can
//! really detect or generate, so that an RQNT gets 518 (unknown package), 522 (no such
//! event or signal), 512 (cannot detect) or 513 (cannot generate) instead of a promise
//! we would not keep. [`NotificationState`] is the per-endpoint state machine: the
//! current request, accumulated observed events, the digit map, quarantine.

use mgcp::digitmap::{DigitCollector, DigitMap, DigitTimer, MatchResult};
use mgcp::params::{
    Action, EventName, ObservedEvent, QuarantineHandling, RequestedEvent, SignalRequest,
};
use mgcp::Error;

use crate::endpoint::{EndpointKind, EndpointSpec, LineCaps};

/// Known packages and their events/signals (RFC 3660).
const PACKAGES: &[(&str, &[&str], &[&str])] = &[
    // (package, events, signals)
    (
        "G",
        &["mt", "ft", "ld", "pt", "oc", "of", "it", "cg", "cf", "rt"],
        &["cf", "cg", "it", "pt", "rt"],
    ),
    (
        "D",
        &[
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "a", "b", "c", "d", "t",
            "x", "l", "oc", "of",
        ],
        &[
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "a", "b", "c", "d", "l",
        ],
    ),
    (
        "L",
        &[
            "hd", "hu", "hf", "aw", "bz", "dl", "ot", "rg", "ro", "rt", "sl", "wt", "oc", "of",
            "nbz", "s", "osi",
        ],
        &[
            "aw", "bz", "cf", "ci", "dl", "ro", "rg", "rt", "sl", "wt", "vmwi", "ot", "r0", "osi",
            "s",
        ],
    ),
    (
        "T",
        &["co1", "co2", "oc", "of", "tdd", "ft", "mt", "ld"],
        &["co1", "co2", "ro", "bz"],
    ),
    (
        "R",
        &[
            "ma", "rto", "uc", "sr", "ji", "pl", "qa", "co1", "co2", "iu",
        ],
        &["co1", "co2"],
    ),
    ("A", &["oc", "of"], &["ann"]),
];

/// Persistent events (RFC 3660): always detected, and notified even when not requested.
const PERSISTENT: &[(&str, &str)] = &[("L", "hd"), ("L", "hu"), ("L", "hf")];

/// Events every endpoint can detect: media start and RTP timeout (the dataplane).
const DETECTABLE: &[(&str, &str)] = &[("R", "ma"), ("R", "rto")];

/// The DTMF keys a TDM channel both detects (in-band and RFC 4733) and generates.
const DTMF_KEYS: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "a", "b", "c", "d",
];

fn is_dtmf_key(pkg: &str, ev: &str) -> bool {
    pkg == "D" && DTMF_KEYS.contains(&ev)
}

/// Events a TDM channel can detect besides the [`DTMF_KEYS`]: digit patterns and the
/// timer, and completion of timed signals.
const DETECTABLE_TDM: &[(&str, &str)] = &[
    ("D", "x"),
    ("D", "t"),
    ("G", "oc"),
    ("D", "oc"),
    ("T", "co1"),
    ("T", "co2"),
    ("A", "oc"),
    ("A", "of"),
];

/// Hook events of lines with signalling (tap peers, DAHDI).
const DETECTABLE_LINE: &[(&str, &str)] = &[
    ("L", "hd"),
    ("L", "hu"),
    ("L", "hf"),
    ("L", "oc"),
    ("L", "of"),
];

/// L package tones an analog line endpoint plays (ringing, `L/rg`, needs signalling).
const LINE_TONES: &[(&str, &str)] = &[
    ("L", "dl"),
    ("L", "rt"),
    ("L", "bz"),
    ("L", "ro"),
    ("L", "wt"),
    ("L", "sl"),
    ("L", "cf"),
];

/// Signals a TDM channel can generate toward the line besides the [`DTMF_KEYS`].
const GENERATED_TDM: &[(&str, &str)] = &[
    ("G", "rt"),
    ("G", "cg"),
    ("G", "cf"),
    ("T", "co1"),
    ("T", "co2"),
    ("A", "ann"),
];

/// What an endpoint supports.
pub(crate) struct Catalog<'a> {
    kind: &'a EndpointKind,
    line: LineCaps,
}

impl<'a> Catalog<'a> {
    pub(crate) fn new(spec: &'a EndpointSpec) -> Self {
        Catalog {
            kind: &spec.kind,
            line: spec.line,
        }
    }

    /// Packages this kind of endpoint offers (first is the default package).
    pub(crate) fn packages(&self) -> &'static [&'static str] {
        match self.kind {
            EndpointKind::Ds { .. } if self.line.analog => &["G", "D", "L", "T", "R", "A"],
            EndpointKind::Ds { .. } => &["G", "D", "T", "R", "A"],
            EndpointKind::RtpBridge(_) => &["G", "R"],
        }
    }

    fn package_of(&self, name: &EventName) -> Result<&'static str, Error> {
        match &name.package {
            Some(p) if p == "*" => Ok("*"),
            Some(p) => {
                let known = PACKAGES
                    .iter()
                    .find(|(n, _, _)| n.eq_ignore_ascii_case(p))
                    .map(|(n, _, _)| *n)
                    .ok_or_else(|| Error::UnknownPackage(p.clone()))?;
                if self.packages().contains(&known) {
                    Ok(known)
                } else {
                    Err(Error::UnknownPackage(p.clone()))
                }
            }
            // No package: the first supported package that has the event.
            None => self
                .packages()
                .iter()
                .copied()
                .find(|pk| {
                    PACKAGES.iter().any(|(n, ev, sig)| {
                        n == pk
                            && (ev.contains(&lower(&name.event).as_str())
                                || sig.contains(&lower(&name.event).as_str()))
                    })
                })
                .ok_or_else(|| Error::NoSuchEventOrSignal(name.event.clone())),
        }
    }

    /// Checks a requested event: exists (522/518) and can be detected here (512).
    pub(crate) fn check_event(&self, name: &EventName) -> Result<(), Error> {
        let pkg = self.package_of(name)?;
        if pkg == "*" {
            return Ok(());
        }
        let ev = lower(&name.event);
        let (_, events, _) = PACKAGES
            .iter()
            .find(|(n, _, _)| *n == pkg)
            .ok_or_else(|| Error::UnknownPackage(pkg.into()))?;
        let is_pattern = ev == "*" || ev.contains('[') || ev == "x";
        if !is_pattern && !events.contains(&ev.as_str()) {
            return Err(Error::NoSuchEventOrSignal(format!("{pkg}/{}", name.event)));
        }
        if ev == "*" || is_pattern {
            // "All events of the package" or a digit pattern: fine when we detect at least
            // one event of the package.
            return if self.detectable().any(|(p, _)| *p == pkg) {
                Ok(())
            } else {
                Err(Error::CantDetectEvent(format!("{pkg}/{}", name.event)))
            };
        }
        if self.detectable().any(|(p, e)| *p == pkg && *e == ev)
            || (self.is_tdm() && is_dtmf_key(pkg, &ev))
        {
            Ok(())
        } else {
            Err(Error::CantDetectEvent(format!("{pkg}/{}", name.event)))
        }
    }

    fn is_tdm(&self) -> bool {
        matches!(self.kind, EndpointKind::Ds { .. })
    }

    fn detectable(&self) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
        let tdm: &'static [(&str, &str)] = if self.is_tdm() { DETECTABLE_TDM } else { &[] };
        let line: &'static [(&str, &str)] = if self.line.signalling {
            DETECTABLE_LINE
        } else {
            &[]
        };
        DETECTABLE.iter().chain(tdm.iter()).chain(line.iter())
    }

    /// Checks a requested signal: exists (522/518) and can be generated here (513).
    pub(crate) fn check_signal(&self, name: &EventName) -> Result<(), Error> {
        let pkg = self.package_of(name)?;
        let sig = lower(&name.event);
        let known = PACKAGES
            .iter()
            .find(|(n, _, _)| *n == pkg)
            .is_some_and(|(_, _, sigs)| sigs.contains(&sig.as_str()));
        if !known {
            return Err(Error::NoSuchEventOrSignal(format!("{pkg}/{}", name.event)));
        }
        let line_tone = self.line.analog && LINE_TONES.iter().any(|(p, e)| *p == pkg && *e == sig);
        let ring = self.line.signalling && pkg == "L" && sig == "rg";
        if line_tone
            || ring
            || (self.is_tdm()
                && (is_dtmf_key(pkg, &sig)
                    || GENERATED_TDM.iter().any(|(p, e)| *p == pkg && *e == sig)))
        {
            Ok(())
        } else {
            Err(Error::CantGenerateSignal(format!("{pkg}/{}", name.event)))
        }
    }

    /// Canonical `package/event` of an observed event.
    pub(crate) fn qualify(&self, name: &EventName) -> (String, String) {
        let pkg = self.package_of(name).unwrap_or("G");
        (pkg.to_string(), lower(&name.event))
    }
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// A notification the endpoint must send (NTFY).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingNotify {
    pub(crate) request_id: String,
    pub(crate) observed: Vec<ObservedEvent>,
}

/// Per-endpoint notification state.
#[derive(Debug, Default)]
pub(crate) struct NotificationState {
    pub(crate) request_id: Option<String>,
    pub(crate) events: Vec<RequestedEvent>,
    pub(crate) signals: Vec<SignalRequest>,
    pub(crate) detect: Vec<EventName>,
    pub(crate) digit_map: Option<DigitMap>,
    collector: Option<DigitCollector>,
    pub(crate) observed: Vec<ObservedEvent>,
    pub(crate) quarantine: Vec<ObservedEvent>,
    pub(crate) quarantine_handling: Option<QuarantineHandling>,
    /// A notification was sent in step mode: further events wait for the next RQNT.
    pub(crate) awaiting_request: bool,
    /// When the running inter-digit timer fires (set by the core, which owns time).
    pub(crate) digit_deadline: Option<std::time::Instant>,
}

/// A validated RQNT (or embedded request), ready to apply.
#[derive(Debug, Default)]
pub(crate) struct NewRequest {
    pub(crate) request_id: String,
    pub(crate) events: Vec<RequestedEvent>,
    pub(crate) signals: Vec<SignalRequest>,
    pub(crate) detect: Vec<EventName>,
    pub(crate) digit_map: Option<DigitMap>,
    pub(crate) quarantine: Option<QuarantineHandling>,
}

/// Whether the requested event `req` covers the observed event `obs` (both qualified).
fn covers(cat: &Catalog<'_>, req: &EventName, obs: &EventName) -> bool {
    let (rp, re) = match &req.package {
        Some(p) if p == "*" => ("*".to_string(), lower(&req.event)),
        _ => cat.qualify(req),
    };
    let (op, oe) = cat.qualify(obs);
    if rp != "*" && rp != op {
        return false;
    }
    if let (Some(rc), Some(oc)) = (&req.connection, &obs.connection) {
        if rc != "*" && rc != "$" && !rc.eq_ignore_ascii_case(oc) {
            return false;
        }
    }
    if re == "*" || re == oe {
        return true;
    }
    // Digit ranges such as [0-9#*] and x (any digit).
    if re == "x" {
        return oe.len() == 1 && oe.as_bytes()[0].is_ascii_digit();
    }
    if let Some(set) = re.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let Some(c) = oe.chars().next().filter(|_| oe.chars().count() == 1) else {
            return false;
        };
        let b: Vec<char> = set.chars().collect();
        let mut i = 0;
        while i < b.len() {
            if i + 2 < b.len() && b[i + 1] == '-' {
                if (b[i]..=b[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if b[i].eq_ignore_ascii_case(&c) {
                    return true;
                }
                i += 1;
            }
        }
    }
    false
}

impl NotificationState {
    /// Replaces the current request with `req`, then runs quarantined events through it
    /// when the quarantine handling says "process" (the default).
    pub(crate) fn apply(&mut self, cat: &Catalog<'_>, req: NewRequest) -> Vec<PendingNotify> {
        self.request_id = Some(req.request_id);
        self.events = req.events;
        self.signals = req.signals;
        self.detect = req.detect;
        if req.digit_map.is_some() {
            self.digit_map = req.digit_map;
        }
        self.collector = None;
        self.observed.clear();
        self.awaiting_request = false;
        let discard = req.quarantine.as_ref().is_some_and(|q| q.discard);
        self.quarantine_handling = req.quarantine;
        let held = std::mem::take(&mut self.quarantine);
        let mut out = Vec::new();
        if !discard {
            for ev in held {
                out.extend(self.observe(cat, ev));
            }
        }
        out
    }

    /// Processes one observed event; returns the notification to send, if any.
    pub(crate) fn observe(
        &mut self,
        cat: &Catalog<'_>,
        ev: ObservedEvent,
    ) -> Option<PendingNotify> {
        if self.awaiting_request {
            self.quarantine.push(ev);
            return None;
        }
        let req = match self.events.iter().find(|r| covers(cat, &r.name, &ev.name)) {
            Some(r) => r.clone(),
            None => {
                let (p, e) = cat.qualify(&ev.name);
                if !PERSISTENT.iter().any(|(pp, pe)| *pp == p && *pe == e) {
                    return None;
                }
                // A persistent event nobody asked about is notified all the same.
                RequestedEvent {
                    name: ev.name.clone(),
                    actions: vec![Action::Notify],
                    params: None,
                }
            }
        };
        let mut notify = false;
        let actions = if req.actions.is_empty() {
            vec![Action::Notify]
        } else {
            req.actions.clone()
        };
        for action in &actions {
            match action {
                Action::Notify => {
                    self.observed.push(ev.clone());
                    notify = true;
                }
                Action::Accumulate => self.observed.push(ev.clone()),
                Action::AccumulateDigitMap => {
                    self.observed.push(ev.clone());
                    if let Some(map) = &self.digit_map {
                        let collector = self
                            .collector
                            .get_or_insert_with(|| DigitCollector::new(map.clone()));
                        let digit = ev.name.event.chars().next().unwrap_or('?');
                        self.digit_deadline = None;
                        match collector.push(digit) {
                            MatchResult::Full | MatchResult::NoMatch => notify = true,
                            MatchResult::Partial | MatchResult::FullAndPartial => {}
                        }
                    }
                }
                Action::Ignore | Action::KeepActive | Action::Swap => {}
                Action::Embedded(embedded) => {
                    self.observed.push(ev.clone());
                    if let Some(events) = &embedded.requested_events {
                        self.events = events.clone();
                    }
                    if let Some(signals) = &embedded.signals {
                        self.signals = signals.clone();
                    }
                    // Validated when the request was accepted.
                    if let Some(map) = embedded
                        .digit_map
                        .as_deref()
                        .and_then(|m| DigitMap::parse(m).ok())
                    {
                        self.digit_map = Some(map);
                        self.collector = None;
                    }
                }
            }
        }
        if !notify {
            return None;
        }
        Some(self.notify_now())
    }

    /// Builds the notification of what was observed and moves to the post-notify state.
    fn notify_now(&mut self) -> PendingNotify {
        let step = !self.quarantine_handling.as_ref().is_some_and(|q| q.loop_);
        let n = PendingNotify {
            request_id: self.request_id.clone().unwrap_or_else(|| "0".into()),
            observed: std::mem::take(&mut self.observed),
        };
        self.collector = None;
        self.digit_deadline = None;
        if step {
            // Step mode: one notification per request; the list is emptied and events
            // are quarantined until the next RQNT.
            self.events.clear();
            self.awaiting_request = true;
        }
        n
    }

    /// Which inter-digit timer should run while digits are being collected.
    pub(crate) fn digit_timer(&self) -> Option<DigitTimer> {
        self.collector.as_ref().and_then(DigitCollector::timer)
    }

    /// The inter-digit timer fired: the digit map decides (RFC 3435 §2.1.5).
    pub(crate) fn digit_timeout(&mut self) -> Option<PendingNotify> {
        self.digit_deadline = None;
        let c = self.collector.as_mut()?;
        match c.timeout() {
            MatchResult::Full | MatchResult::NoMatch => Some(self.notify_now()),
            MatchResult::Partial | MatchResult::FullAndPartial => None,
        }
    }

    /// Clears everything (endpoint reset).
    pub(crate) fn clear(&mut self) {
        *self = NotificationState {
            digit_map: self.digit_map.take(),
            ..Default::default()
        };
    }
}
