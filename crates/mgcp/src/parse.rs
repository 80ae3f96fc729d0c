//! Parsing MGCP text into [`Message`]s (RFC 3435 §3, §3.1, Appendix A).
//!
//! # What is accepted
//! - Line ends CRLF or bare LF (mixed too). A message's header is the first non-blank
//!   line; parameter lines follow until the first blank line (a line holding only
//!   spaces/tabs counts as blank); everything after it is the session description.
//! - Verbs and parameter names are case-insensitive; spaces and tabs around tokens and
//!   around parameter values are ignored.
//! - Command line: `VERB tid endpoint MGCP 1.0 [profile...]`. Per RFC 3435 §3.2.1.1
//!   the version may be followed by a profile name (`MGCP 1.0 NCS 1.0`); the profile is
//!   kept in [`ProtocolVersion::version`] with its tokens joined by one space. The protocol
//!   name is matched case-insensitively and stored as `MGCP`; any version other than `1.0`
//!   is [`Error::IncompatibleVersion`] (528).
//! - Response line: `code tid [commentary]`, code exactly three digits. The commentary
//!   (which for 8xx codes may start with `/package`) is kept trimmed in
//!   [`Response::comment`].
//! - Session descriptions are kept raw but **normalised to CRLF**: each line has its
//!   `\r` stripped and is re-terminated with `\r\n`; trailing blank lines are dropped,
//!   blank lines inside (two descriptions, as in an AUCX response with `F: RC,LC`) are
//!   kept. An SDP part holding only blank lines gives `sdp: None`.
//!
//! # Errors
//! - unreadable or out-of-range transaction id → `tid: None`, [`Error::Protocol`];
//! - unknown verb → [`Error::UnknownCommand`]; malformed endpoint → [`Error::Protocol`];
//! - parameter line without `:` → [`Error::Protocol`]; unknown name →
//!   [`Error::UnknownParameter`]; `X+name` → [`Error::UnrecognizedExtension`]; `X-name` is
//!   kept as [`ParamName::Extension`]; a repeated name → [`Error::InvalidParameter`];
//! - invalid UTF-8, oversize input (> [`MAX_DATAGRAM`]), more than [`MAX_PARAMS`]
//!   parameter lines → [`Error::Protocol`].
//!
//! Nothing here panics on any input; work is bounded by [`MAX_DATAGRAM`] and
//! [`MAX_PIGGYBACK`].

use crate::code::{Error, ReturnCode};
use crate::message::{
    Command, Message, ParamName, Params, ProtocolVersion, Response, TransactionId, Verb,
};
use crate::name::EndpointName;

/// Largest datagram (and message) the parser looks at, in bytes.
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// Most messages parsed out of one piggybacked datagram.
pub const MAX_PIGGYBACK: usize = 64;

/// Most parameter lines accepted in one message.
pub const MAX_PARAMS: usize = 128;

/// A message that could not be parsed, with its transaction id when it could be read,
/// so that an error response can still be sent.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ParseError {
    /// The transaction id, when the header line got that far.
    pub tid: Option<TransactionId>,
    /// What is wrong; its return code is what the response carries.
    pub error: Error,
}

impl ParseError {
    fn new(tid: Option<TransactionId>, error: Error) -> Self {
        ParseError { tid, error }
    }

    fn protocol(tid: Option<TransactionId>, what: impl Into<String>) -> Self {
        ParseError::new(tid, Error::Protocol(what.into()))
    }
}

/// Parses one datagram, which may hold several piggybacked messages separated by a line
/// holding a single `.` (RFC 3435 §3.1).
///
/// Each message is parsed on its own, so one bad message does not hide the others. Blank
/// segments (e.g. after a trailing `.`) are skipped; a datagram with no message at all
/// gives one error. At most [`MAX_PIGGYBACK`] messages are parsed; if there are more, one
/// further error (without a transaction id) ends the list.
pub fn parse_datagram(bytes: &[u8]) -> Vec<Result<Message, ParseError>> {
    if bytes.len() > MAX_DATAGRAM {
        return vec![Err(ParseError::protocol(None, "datagram too large"))];
    }
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut pos = 0usize;
    let mut segments: Vec<&[u8]> = Vec::new();
    // Split at lines holding only "." (surrounding spaces, tabs and CR tolerated).
    while pos < bytes.len() {
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| pos + i);
        let line = &bytes[pos..end];
        if line.trim_ascii() == b"." {
            segments.push(&bytes[start..pos]);
            start = end.saturating_add(1).min(bytes.len());
        }
        pos = end.saturating_add(1);
    }
    segments.push(&bytes[start..]);

    for seg in segments {
        if seg.trim_ascii().is_empty() {
            continue;
        }
        if out.len() >= MAX_PIGGYBACK {
            out.push(Err(ParseError::protocol(
                None,
                "too many piggybacked messages",
            )));
            break;
        }
        out.push(match std::str::from_utf8(seg) {
            Ok(text) => parse_message(text),
            Err(_) => Err(ParseError::protocol(
                tid_of_invalid_utf8(seg),
                "message is not valid UTF-8",
            )),
        });
    }
    if out.is_empty() {
        out.push(Err(ParseError::protocol(None, "empty datagram")));
    }
    out
}

/// Best effort: the transaction id from the header line of a message whose body is not
/// UTF-8, so that a 510 can still be sent.
fn tid_of_invalid_utf8(seg: &[u8]) -> Option<TransactionId> {
    let first = seg
        .split(|&b| b == b'\n')
        .find(|l| !l.trim_ascii().is_empty())?;
    let line = std::str::from_utf8(first).ok()?;
    let mut toks = line.split_ascii_whitespace();
    toks.next()?;
    parse_tid(toks.next()?)
}

/// Parses a transaction id token: 1 to 9 decimal digits, value 1..=999_999_999.
fn parse_tid(tok: &str) -> Option<TransactionId> {
    if tok.is_empty() || tok.len() > 9 || !tok.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    TransactionId::new(tok.parse().ok()?)
}

/// Splits on `\n`, stripping one trailing `\r` from each line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l))
}

fn is_blank(line: &str) -> bool {
    line.trim_matches([' ', '\t']).is_empty()
}

/// Parses a single message (no piggybacking).
pub fn parse_message(text: &str) -> Result<Message, ParseError> {
    if text.len() > MAX_DATAGRAM {
        return Err(ParseError::protocol(None, "message too large"));
    }
    // A carriage return that does not end a line is not a line end; it is read as a
    // space, which is also how the emitter writes one (so parse → emit → parse is stable).
    let normalised;
    let text = if text.contains('\r') {
        normalised = text.replace("\r\n", "\n").replace('\r', " ");
        normalised.as_str()
    } else {
        text
    };
    let mut it = lines(text).skip_while(|l| is_blank(l));
    let header = it
        .next()
        .ok_or_else(|| ParseError::protocol(None, "empty message"))?;
    let toks: Vec<&str> = header
        .split([' ', '\t'])
        .filter(|t| !t.is_empty())
        .collect();
    let first = toks.first().copied().unwrap_or("");

    if first.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        let tid = toks.get(1).and_then(|t| parse_tid(t));
        let tid = tid.ok_or_else(|| {
            ParseError::protocol(None, "missing or invalid transaction id in response")
        })?;
        if first.len() != 3 || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::protocol(
                Some(tid),
                format!("response code {first:?} is not three digits"),
            ));
        }
        let code: u16 = first
            .parse()
            .map_err(|_| ParseError::protocol(Some(tid), "bad response code"))?;
        let comment = comment_after(header, 2);
        let (params, sdp) = parse_rest(it, tid, true)?;
        return Ok(Message::Response(Response {
            code: ReturnCode(code),
            tid,
            comment: comment.to_string(),
            params,
            sdp,
        }));
    }

    let tid = toks.get(1).and_then(|t| parse_tid(t)).ok_or_else(|| {
        ParseError::protocol(None, "missing or invalid transaction id in command")
    })?;
    let verb = Verb::from_token(first)
        .ok_or_else(|| ParseError::new(Some(tid), Error::UnknownCommand(first.to_string())))?;
    let endpoint = toks
        .get(2)
        .ok_or_else(|| ParseError::protocol(Some(tid), "missing endpoint name"))
        .and_then(|e| EndpointName::parse(e).map_err(|err| ParseError::new(Some(tid), err)))?;
    let version =
        parse_version(&toks[3.min(toks.len())..]).map_err(|e| ParseError::new(Some(tid), e))?;
    let (params, sdp) = parse_rest(it, tid, false)?;
    Ok(Message::Command(Command {
        verb,
        tid,
        endpoint,
        version,
        params,
        sdp,
    }))
}

/// The text of `line` after its first `n` whitespace-separated tokens, trimmed.
fn comment_after(line: &str, n: usize) -> &str {
    let mut rest = line.trim_start_matches([' ', '\t']);
    for _ in 0..n {
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        rest = rest[end..].trim_start_matches([' ', '\t']);
    }
    rest.trim_end_matches([' ', '\t'])
}

/// `MGCP 1.0 [profile...]` (RFC 3435 §3.2.1.1).
fn parse_version(toks: &[&str]) -> Result<ProtocolVersion, Error> {
    let (proto, ver) = match toks {
        [p, v, ..] => (*p, *v),
        _ => return Err(Error::Protocol("missing protocol version".into())),
    };
    if !proto.eq_ignore_ascii_case("MGCP") || ver != "1.0" {
        return Err(Error::IncompatibleVersion(toks.join(" ")));
    }
    Ok(ProtocolVersion {
        protocol: "MGCP".into(),
        version: toks[1..].join(" "),
    })
}

/// Parameter lines, then (after a blank line) the session description.
///
/// In a response, `Z:` may repeat: a wildcarded AuditEndpoint answers with one `Z:` line
/// per endpoint (RFC 3435 §2.3.10).
fn parse_rest<'a>(
    mut it: impl Iterator<Item = &'a str>,
    tid: TransactionId,
    is_response: bool,
) -> Result<(Params, Option<String>), ParseError> {
    let mut params = Params::new();
    for line in it.by_ref() {
        if is_blank(line) {
            break;
        }
        if params.len() >= MAX_PARAMS {
            return Err(ParseError::protocol(Some(tid), "too many parameter lines"));
        }
        let (name, value) = line.split_once(':').ok_or_else(|| {
            ParseError::protocol(Some(tid), format!("parameter line {line:?} has no ':'"))
        })?;
        let name = param_name(name.trim_matches([' ', '\t']))
            .map_err(|e| ParseError::new(Some(tid), e))?;
        let may_repeat = is_response && name == ParamName::SpecificEndpointId;
        if !may_repeat
            && params
                .iter()
                .any(|(n, _)| n.code().eq_ignore_ascii_case(name.code()))
        {
            return Err(ParseError::new(
                Some(tid),
                Error::InvalidParameter(format!("{} repeated", name.code())),
            ));
        }
        params.push(name, value.trim_matches([' ', '\t']));
    }
    let mut sdp = String::new();
    let mut pending_blank = 0usize;
    for line in it {
        if is_blank(line) {
            pending_blank += 1;
            continue;
        }
        if !sdp.is_empty() {
            for _ in 0..pending_blank {
                sdp.push_str("\r\n");
            }
        }
        pending_blank = 0;
        sdp.push_str(line);
        sdp.push_str("\r\n");
    }
    Ok((params, (!sdp.is_empty()).then_some(sdp)))
}

/// Resolves a parameter name from a parameter line.
fn param_name(name: &str) -> Result<ParamName, Error> {
    if let Some(p) = ParamName::from_code(name) {
        return Ok(p);
    }
    let b = name.as_bytes();
    let ext_chars = b
        .iter()
        .skip(2)
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if b.len() > 2 && (b[0] == b'X' || b[0] == b'x') && ext_chars {
        match b[1] {
            b'-' => return Ok(ParamName::Extension(name.to_string())),
            b'+' => return Err(Error::UnrecognizedExtension(name.to_string())),
            _ => {}
        }
    }
    if name.is_empty() {
        return Err(Error::Protocol("empty parameter name".into()));
    }
    Err(Error::UnknownParameter(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(text: &str) -> Command {
        match parse_message(text) {
            Ok(Message::Command(c)) => c,
            other => panic!("expected command, got {other:?}"),
        }
    }

    fn resp(text: &str) -> Response {
        match parse_message(text) {
            Ok(Message::Response(r)) => r,
            other => panic!("expected response, got {other:?}"),
        }
    }

    fn err(text: &str) -> ParseError {
        match parse_message(text) {
            Err(e) => e,
            Ok(m) => panic!("expected error, got {m:?}"),
        }
    }

    fn tid(v: u32) -> Option<TransactionId> {
        TransactionId::new(v)
    }

    #[test]
    fn crcx_from_rfc_with_sdp() {
        let text = "CRCX 1204 aaln/1@rgw-2567.whatever.net MGCP 1.0\r\n\
                    C: A3C47F21456789F0\r\n\
                    L: p:10, a:PCMU\r\n\
                    M: recvonly\r\n\
                    \r\n\
                    v=0\r\n\
                    c=IN IP4 128.96.41.1\r\n\
                    m=audio 3456 RTP/AVP 0\r\n";
        let c = cmd(text);
        assert_eq!(c.verb, Verb::Crcx);
        assert_eq!(c.tid.get(), 1204);
        assert_eq!(c.endpoint.to_string(), "aaln/1@rgw-2567.whatever.net");
        assert_eq!(c.version, ProtocolVersion::default());
        assert_eq!(c.params.get(&ParamName::CallId), Some("A3C47F21456789F0"));
        assert_eq!(
            c.params.get(&ParamName::LocalConnectionOptions),
            Some("p:10, a:PCMU")
        );
        assert_eq!(c.params.get(&ParamName::ConnectionMode), Some("recvonly"));
        assert_eq!(
            c.sdp.as_deref(),
            Some("v=0\r\nc=IN IP4 128.96.41.1\r\nm=audio 3456 RTP/AVP 0\r\n")
        );
    }

    #[test]
    fn every_verb_lf_only_and_mixed_case() {
        for (i, v) in Verb::ALL.iter().enumerate() {
            let lower = v.as_str().to_ascii_lowercase();
            let text = format!("{lower} {} aaln/1@gw mgcp 1.0\nx: 12\n", i + 1);
            let c = cmd(&text);
            assert_eq!(c.verb, *v);
            assert_eq!(c.tid.get() as usize, i + 1);
            assert_eq!(c.version.protocol, "MGCP");
            assert_eq!(c.params.get(&ParamName::RequestIdentifier), Some("12"));
            assert_eq!(c.sdp, None);
        }
    }

    #[test]
    fn extra_whitespace_and_trailing_blank_line() {
        let c = cmd("  RQNT\t 77   aaln/1@gw \tMGCP   1.0  \r\n  n :  ca@ca1:5678 \r\nR:\r\n\r\n");
        assert_eq!(c.verb, Verb::Rqnt);
        assert_eq!(
            c.params.get(&ParamName::NotifiedEntity),
            Some("ca@ca1:5678")
        );
        assert_eq!(c.params.get(&ParamName::RequestedEvents), Some(""));
        assert_eq!(c.sdp, None);
    }

    #[test]
    fn all_param_codes_case_insensitive() {
        let codes = [
            "K", "B", "C", "I", "N", "X", "L", "M", "R", "S", "D", "O", "P", "E", "Z", "Z2", "I2",
            "F", "Q", "T", "RM", "RD", "A", "ES", "PL", "MD",
        ];
        let mut text = String::from("AUEP 5 aaln/1@gw MGCP 1.0\r\n");
        for c in codes {
            text.push_str(&format!("{}: v{c}\r\n", c.to_ascii_lowercase()));
        }
        let c = cmd(&text);
        assert_eq!(c.params.len(), codes.len());
        for ((name, value), code) in c.params.iter().zip(codes) {
            assert_eq!(name.code(), code);
            assert_eq!(value, format!("v{code}"));
        }
    }

    #[test]
    fn profile_suffix_kept() {
        let c = cmd("NTFY 9 aaln/1@gw MGCP 1.0 NCS 1.0\r\nO: L/hd\r\n");
        assert_eq!(c.version.version, "1.0 NCS 1.0");
    }

    #[test]
    fn responses() {
        let r = resp("200 1204 OK\r\nI: FDE234C8\r\n\r\nv=0\r\nc=IN IP4 128.96.63.25\r\n");
        assert_eq!(r.code, ReturnCode::OK);
        assert_eq!(r.tid.get(), 1204);
        assert_eq!(r.comment, "OK");
        assert_eq!(r.params.get(&ParamName::ConnectionId), Some("FDE234C8"));
        assert_eq!(r.sdp.as_deref(), Some("v=0\r\nc=IN IP4 128.96.63.25\r\n"));

        let r = resp("250 1206\n");
        assert_eq!(r.code, ReturnCode::CONNECTION_DELETED);
        assert_eq!(r.comment, "");

        let r = resp("000 1206\r\n");
        assert_eq!(r.code, ReturnCode::RESPONSE_ACK);

        let r = resp("801 17 /X  vendor   says no  \r\nZ: aaln/1@gw\r\nK: 5-9\r\n");
        assert_eq!(r.code.0, 801);
        assert_eq!(r.comment, "/X  vendor   says no");
        assert_eq!(
            r.params.get(&ParamName::SpecificEndpointId),
            Some("aaln/1@gw")
        );
    }

    #[test]
    fn two_session_descriptions_keep_inner_blank_line() {
        let r =
            resp("200 3 OK\nC: 1\n\nv=0\nm=audio 1 RTP/AVP 0\n\nv=0\nm=audio 2 RTP/AVP 0\n\n\n");
        assert_eq!(
            r.sdp.as_deref(),
            Some("v=0\r\nm=audio 1 RTP/AVP 0\r\n\r\nv=0\r\nm=audio 2 RTP/AVP 0\r\n")
        );
    }

    #[test]
    fn bad_tids_give_no_tid() {
        for text in [
            "CRCX aaln/1@gw MGCP 1.0\r\n",
            "CRCX 0 aaln/1@gw MGCP 1.0\r\n",
            "CRCX 1000000000 aaln/1@gw MGCP 1.0\r\n",
            "CRCX 12a aaln/1@gw MGCP 1.0\r\n",
            "CRCX -1 aaln/1@gw MGCP 1.0\r\n",
            "200 x OK\r\n",
            "200\r\n",
            "",
            "\r\n\r\n",
        ] {
            let e = err(text);
            assert_eq!(e.tid, None, "{text:?}");
            assert_eq!(
                e.error.return_code(),
                ReturnCode::PROTOCOL_ERROR,
                "{text:?}"
            );
        }
        assert_eq!(err("CRCX 999999999 @@ MGCP 1.0\r\n").tid, tid(999_999_999));
    }

    #[test]
    fn unknown_verb_is_504() {
        let e = err("XYZW 42 aaln/1@gw MGCP 1.0\r\n");
        assert_eq!(e.tid, tid(42));
        assert_eq!(e.error, Error::UnknownCommand("XYZW".into()));
        assert_eq!(e.error.return_code(), ReturnCode::UNKNOWN_COMMAND);
    }

    #[test]
    fn bad_version_is_528() {
        for text in [
            "CRCX 42 aaln/1@gw MGCP 0.1\r\n",
            "CRCX 42 aaln/1@gw SGCP 1.0\r\n",
            "CRCX 42 aaln/1@gw MGCP 1.1\r\n",
        ] {
            let e = err(text);
            assert_eq!(e.tid, tid(42));
            assert_eq!(
                e.error.return_code(),
                ReturnCode::INCOMPATIBLE_VERSION,
                "{text}"
            );
        }
        let e = err("CRCX 42 aaln/1@gw\r\n");
        assert_eq!(e.error.return_code(), ReturnCode::PROTOCOL_ERROR);
    }

    #[test]
    fn bad_endpoint_is_510() {
        for text in [
            "CRCX 42 aaln/1 MGCP 1.0\r\n",
            "CRCX 42\r\n",
            "CRCX 42 a//b@gw MGCP 1.0\n",
        ] {
            let e = err(text);
            assert_eq!(e.tid, tid(42));
            assert_eq!(e.error.return_code(), ReturnCode::PROTOCOL_ERROR, "{text}");
        }
    }

    #[test]
    fn bad_response_code() {
        for text in ["20 5 OK\r\n", "2000 5 OK\r\n", "2x0 5\r\n"] {
            let e = err(text);
            assert_eq!(e.tid, tid(5), "{text}");
            assert_eq!(e.error.return_code(), ReturnCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn parameter_errors() {
        let base = "MDCX 8 aaln/1@gw MGCP 1.0\r\nC: 1\r\n";
        let e = err(&format!("{base}this line has no colon\r\n"));
        assert_eq!(
            (e.tid, e.error.return_code()),
            (tid(8), ReturnCode::PROTOCOL_ERROR)
        );

        let e = err(&format!("{base}W: 1\r\n"));
        assert_eq!(e.error, Error::UnknownParameter("W".into()));
        assert_eq!(e.error.return_code(), ReturnCode::INVALID_PARAMETER);

        let e = err(&format!("{base}X+Foo: 1\r\n"));
        assert_eq!(e.error, Error::UnrecognizedExtension("X+Foo".into()));
        assert_eq!(e.error.return_code(), ReturnCode::UNRECOGNIZED_EXTENSION);

        let e = err(&format!("{base}c: 2\r\n"));
        assert!(matches!(e.error, Error::InvalidParameter(_)));
        assert_eq!(e.error.return_code(), ReturnCode::INVALID_PARAMETER);

        let e = err(&format!("{base}X-a: 1\r\nx-A: 2\r\n"));
        assert!(matches!(e.error, Error::InvalidParameter(_)));

        let e = err(&format!("{base}: 2\r\n"));
        assert_eq!(e.error.return_code(), ReturnCode::PROTOCOL_ERROR);

        let e = err(&format!("{base}X-a b: 1\r\n"));
        assert_eq!(e.error, Error::UnknownParameter("X-a b".into()));

        let many: String = (0..=MAX_PARAMS).map(|i| format!("X-p{i}: 1\r\n")).collect();
        let e = err(&format!("{base}{many}"));
        assert_eq!(
            (e.tid, e.error.return_code()),
            (tid(8), ReturnCode::PROTOCOL_ERROR)
        );

        let c = cmd(&format!("{base}X-Osmo-CP: C: 1\r\n"));
        assert_eq!(
            c.params.get(&ParamName::Extension("X-Osmo-CP".into())),
            Some("C: 1")
        );
    }

    #[test]
    fn invalid_utf8() {
        let mut bytes = b"CRCX 31 aaln/1@gw MGCP 1.0\r\nC: ".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(b"\r\n");
        let r = parse_datagram(&bytes);
        assert_eq!(r.len(), 1);
        let e = r[0].clone().unwrap_err();
        assert_eq!(
            (e.tid, e.error.return_code()),
            (tid(31), ReturnCode::PROTOCOL_ERROR)
        );
        let r = parse_datagram(&[0xc3, 0x28, b' ', b'1']);
        assert_eq!(r[0].clone().unwrap_err().tid, None);
    }

    #[test]
    fn piggybacked_datagram() {
        let dg = b"200 1203 OK\r\n.\r\nDLCX 1210 aaln/1@gw MGCP 1.0\r\nC: 1\r\nI: 2\r\n.\n\
                   BOGUS 1211 aaln/1@gw MGCP 1.0\n . \r\n250 1204\r\nP: PS=1\r\n\r\nv=0\r\n.\r\n";
        let r = parse_datagram(dg);
        assert_eq!(r.len(), 4);
        assert!(matches!(&r[0], Ok(Message::Response(x)) if x.tid.get() == 1203));
        assert!(
            matches!(&r[1], Ok(Message::Command(x)) if x.verb == Verb::Dlcx && x.params.len() == 2)
        );
        assert_eq!(r[2].clone().unwrap_err().tid, tid(1211));
        assert!(matches!(&r[3], Ok(Message::Response(x)) if x.sdp.as_deref() == Some("v=0\r\n")));
    }

    #[test]
    fn datagram_bounds() {
        assert_eq!(parse_datagram(b"").len(), 1);
        assert!(parse_datagram(b"\r\n.\r\n").iter().all(|r| r.is_err()));
        let big = vec![b'a'; MAX_DATAGRAM + 1];
        assert_eq!(parse_datagram(&big).len(), 1);
        let mut many = Vec::new();
        for i in 1..=100 {
            many.extend_from_slice(format!("200 {i} OK\r\n.\r\n").as_bytes());
        }
        let r = parse_datagram(&many);
        assert_eq!(r.len(), MAX_PIGGYBACK + 1);
        assert!(r[..MAX_PIGGYBACK].iter().all(|m| m.is_ok()));
        assert!(r[MAX_PIGGYBACK].is_err());
    }

    #[test]
    fn never_panics_on_junk() {
        // A small deterministic generator over a hostile alphabet.
        let alphabet = b"CRX01 9:.\r\n@/*$[]()-+MGCPa\xff\t";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let mut buf = Vec::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 80) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                buf.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let r = parse_datagram(&buf);
            assert!(!r.is_empty());
        }
    }
}

#[cfg(test)]
mod bare_cr_tests {
    use super::*;

    #[test]
    fn bare_carriage_returns_read_as_spaces_and_round_trip() {
        for input in [
            "200 1 a\rb\n",
            "200 1 OK\n\nv=0\r\r\n",
            "200 1 a\r\n",
            "\r200 1 x\n",
        ] {
            let m = parse_message(input).unwrap();
            let again = parse_message(std::str::from_utf8(&m.to_bytes()).unwrap()).unwrap();
            assert_eq!(m, again, "{input:?}");
        }
        match parse_message("200 1 a\rb\n").unwrap() {
            Message::Response(r) => assert_eq!(r.comment, "a b"),
            other => panic!("{other:?}"),
        }
    }
}
