//! Building MGCP commands from `mgw ctl` verb arguments, with every value checked by the
//! `mgcp` crate's parsers so that what is sent is valid MGCP.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use mgcp::params::{
    parse_requested_events, parse_requested_info, parse_signal_requests, BearerInformation, CallId,
    ConnectionId, ConnectionMode, LocalConnectionOptions, NotifiedEntity,
};
use mgcp::{Command, EndpointName, ParamName, TransactionId, Verb};

/// A codec given with `--codec`: `NAME[/RATE[/CHANNELS]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Codec {
    /// Encoding name as given (`PCMU`, `telephone-event`).
    pub(crate) name: String,
    /// Clock rate, if given.
    pub(crate) rate: Option<u32>,
    /// Channels, if given.
    pub(crate) channels: Option<u8>,
}

/// Static payload types (RFC 3551 table 4) by encoding name, with their clock rate.
const STATIC_PTS: [(&str, u8, u32); 8] = [
    ("PCMU", 0, 8000),
    ("GSM", 3, 8000),
    ("G723", 4, 8000),
    ("PCMA", 8, 8000),
    ("G722", 9, 8000),
    ("CN", 13, 8000),
    ("G728", 15, 8000),
    ("G729", 18, 8000),
];

/// Usual clock rate (and channels) of common dynamic encodings.
const DYNAMIC_RATES: [(&str, u32, Option<u8>); 8] = [
    ("telephone-event", 8000, None),
    ("opus", 48000, Some(2)),
    ("AMR", 8000, None),
    ("AMR-WB", 16000, None),
    ("iLBC", 8000, None),
    ("speex", 8000, None),
    ("G726-32", 8000, None),
    ("L16", 8000, None),
];

/// Parses one `--codec` value.
pub(crate) fn parse_codec(s: &str) -> Result<Codec, String> {
    let bad = |why: &str| format!("bad codec {s:?}: {why} (want NAME[/RATE[/CHANNELS]])");
    let mut parts = s.trim().split('/');
    let name = parts.next().unwrap_or_default();
    if name.is_empty()
        || name.len() > 32
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad("the name must be letters, digits, '-', '_' or '.'"));
    }
    let rate = match parts.next() {
        Some(r) => Some(
            r.parse::<u32>()
                .ok()
                .filter(|r| (1000..=1_000_000).contains(r))
                .ok_or_else(|| bad("the rate must be a number of Hz"))?,
        ),
        None => None,
    };
    let channels = match parts.next() {
        Some(c) => Some(
            c.parse::<u8>()
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| bad("the channel count must be 1-255"))?,
        ),
        None => None,
    };
    if parts.next().is_some() {
        return Err(bad("too many '/'"));
    }
    Ok(Codec {
        name: name.to_string(),
        rate,
        channels,
    })
}

/// Parses a list of `--codec` values; each may itself be a `;`-separated list.
pub(crate) fn parse_codecs(values: &[String]) -> Result<Vec<Codec>, String> {
    values
        .iter()
        .flat_map(|v| v.split(';'))
        .map(parse_codec)
        .collect()
}

/// Payload types for `codecs` in order: static ones from RFC 3551, dynamic ones from 96
/// up, with the `a=rtpmap` (and for telephone-event `a=fmtp`) lines the dynamic ones need.
pub(crate) fn payload_types(codecs: &[Codec]) -> Result<(Vec<u8>, Vec<String>), String> {
    let mut pts = Vec::new();
    let mut attrs = Vec::new();
    let mut next_dynamic = 96u8;
    for c in codecs {
        let stat = STATIC_PTS
            .iter()
            .find(|(n, _, r)| n.eq_ignore_ascii_case(&c.name) && c.rate.is_none_or(|x| x == *r));
        if let Some((_, pt, _)) = stat {
            pts.push(*pt);
            continue;
        }
        let known = DYNAMIC_RATES
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(&c.name));
        let rate = c.rate.or(known.map(|k| k.1)).ok_or_else(|| {
            format!(
                "codec {:?}: no known clock rate; give it as {}/RATE",
                c.name, c.name
            )
        })?;
        let channels = c.channels.or(known.and_then(|k| k.2));
        if next_dynamic > 127 {
            return Err("too many dynamic codecs (payload types 96-127)".into());
        }
        let pt = next_dynamic;
        next_dynamic += 1;
        pts.push(pt);
        let ch = channels.map(|c| format!("/{c}")).unwrap_or_default();
        attrs.push(format!("a=rtpmap:{pt} {}/{rate}{ch}", c.name));
        if c.name.eq_ignore_ascii_case("telephone-event") {
            attrs.push(format!("a=fmtp:{pt} 0-15"));
        }
    }
    Ok((pts, attrs))
}

/// A session description offering `codecs` at `remote` (RFC 4566 lines in RFC 3435's
/// order, CRLF line ends).
pub(crate) fn remote_sdp(
    remote: SocketAddr,
    codecs: &[Codec],
    ptime: Option<u32>,
    session: u32,
) -> Result<String, String> {
    let (pts, attrs) = payload_types(codecs)?;
    let ip = remote.ip();
    let family = match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let pts: Vec<String> = pts.iter().map(u8::to_string).collect();
    let mut lines = vec![
        "v=0".to_string(),
        format!("o=- {session} 1 IN {family} {ip}"),
        "s=-".to_string(),
        format!("c=IN {family} {ip}"),
        "t=0 0".to_string(),
        format!("m=audio {} RTP/AVP {}", remote.port(), pts.join(" ")),
    ];
    lines.extend(attrs);
    if let Some(p) = ptime {
        lines.push(format!("a=ptime:{p}"));
    }
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    Ok(s)
}

/// Reads a session description from a file (`-` = standard input) and checks that it
/// looks like one.
pub(crate) fn read_sdp(path: &Path) -> Result<String, String> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("stdin: {e}"))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
    };
    let body = text.trim_matches(['\r', '\n', ' ', '\t']);
    if !body.starts_with("v=") {
        return Err(format!(
            "{}: not a session description (it must start with \"v=\")",
            path.display()
        ));
    }
    if body.lines().any(|l| l.trim_end_matches('\r').is_empty()) {
        return Err(format!(
            "{}: a session description may not contain empty lines",
            path.display()
        ));
    }
    Ok(format!("{body}\r\n"))
}

/// Starts a command, checking the endpoint name.
pub(crate) fn command(verb: Verb, tid: TransactionId, endpoint: &str) -> Result<Command, String> {
    let ep = EndpointName::parse(endpoint)
        .map_err(|e| format!("bad endpoint name {endpoint:?} (want local@domain): {e}"))?;
    Ok(Command::new(verb, tid, ep))
}

/// Adds a parameter, refusing a second value for the same name.
pub(crate) fn add(cmd: &mut Command, name: ParamName, value: String) -> Result<(), String> {
    if cmd.params.contains(&name) {
        return Err(format!("parameter {} given twice", name.code()));
    }
    cmd.params.push(name, value);
    Ok(())
}

/// `--call`.
pub(crate) fn call_id(s: &str) -> Result<String, String> {
    CallId::parse(s)
        .map(|c| c.as_str().to_string())
        .map_err(|_| format!("bad call id {s:?}: want 1-32 hex digits"))
}

/// `--conn`.
pub(crate) fn conn_id(s: &str) -> Result<String, String> {
    ConnectionId::parse(s)
        .map(|c| c.as_str().to_string())
        .map_err(|_| format!("bad connection id {s:?}: want 1-32 hex digits"))
}

/// `--request-id`: 1-32 hex digits (RFC 3435 §3.2.2).
pub(crate) fn request_id(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("bad request id {s:?}: want 1-32 hex digits"));
    }
    Ok(t.to_string())
}

/// `--mode`.
pub(crate) fn mode(s: &str) -> Result<String, String> {
    ConnectionMode::parse(s)
        .map(|m| m.to_string())
        .map_err(|_| {
            format!(
                "bad connection mode {s:?}: want sendonly, recvonly, sendrecv, confrnce, \
                 inactive, loopback, conttest, netwloop, netwtest, data or an X- extension"
            )
        })
}

/// `--notify`.
pub(crate) fn notified_entity(s: &str) -> Result<String, String> {
    NotifiedEntity::parse(s)
        .map(|n| n.to_string())
        .map_err(|e| format!("bad notified entity {s:?} (want [name@]host[:port]): {e}"))
}

/// `L:` from `--lco`, `--ptime` and `--codec` (the flags win over `--lco`); `None` when
/// nothing was asked for.
pub(crate) fn lco(
    extra: Option<&str>,
    ptime: Option<u32>,
    codecs: &[Codec],
) -> Result<Option<String>, String> {
    let mut l = match extra {
        Some(s) => LocalConnectionOptions::parse(s)
            .map_err(|e| format!("bad local connection options {s:?}: {e}"))?,
        None => LocalConnectionOptions::default(),
    };
    if let Some(p) = ptime {
        if p == 0 || p > 1000 {
            return Err(format!("bad packetization period {p} ms (want 1-1000)"));
        }
        l.packetization = Some((p, None));
    }
    if !codecs.is_empty() {
        l.codecs = codecs.iter().map(|c| c.name.clone()).collect();
    }
    Ok((!l.is_empty()).then(|| l.to_string()))
}

/// `--events` (R:).
pub(crate) fn events(s: &str) -> Result<String, String> {
    parse_requested_events(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| format!("bad requested events {s:?}: {e}"))
}

/// `--signals` (S:).
pub(crate) fn signals(s: &str) -> Result<String, String> {
    parse_signal_requests(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| format!("bad signal requests {s:?}: {e}"))
}

/// `--digit-map` (D:).
pub(crate) fn digit_map(s: &str) -> Result<String, String> {
    mgcp::digitmap::DigitMap::parse(s)
        .map(|d| d.as_str().to_string())
        .map_err(|e| format!("bad digit map {s:?}: {e}"))
}

/// `--info` (F:).
pub(crate) fn info(s: &str) -> Result<String, String> {
    parse_requested_info(s)
        .map(|v| {
            v.iter()
                .map(|i| i.code().to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .map_err(|e| format!("bad requested info {s:?}: {e}"))
}

/// `--bearer` (B:).
pub(crate) fn bearer(s: &str) -> Result<String, String> {
    BearerInformation::parse(s)
        .map(|b| b.to_string())
        .map_err(|e| format!("bad bearer information {s:?} (want e:A or e:mu): {e}"))
}

/// A `--param 'NAME: VALUE'` line: a known parameter code or an `X-`/`X+` extension.
pub(crate) fn param(s: &str) -> Result<(ParamName, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("bad --param {s:?}: want 'NAME: VALUE'"))?;
    let name = name.trim();
    let pname = ParamName::from_code(name)
        .or_else(|| {
            let b = name.as_bytes();
            let ext =
                b.len() > 2 && b[0].eq_ignore_ascii_case(&b'x') && matches!(b[1], b'-' | b'+');
            let ok = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'_'));
            (ext && ok).then(|| ParamName::Extension(name.to_string()))
        })
        .ok_or_else(|| {
            format!("bad --param {s:?}: {name:?} is not an MGCP parameter code or X- extension")
        })?;
    let value = value.trim();
    if value.contains(['\r', '\n']) {
        return Err(format!(
            "bad --param {s:?}: the value may not contain line breaks"
        ));
    }
    Ok((pname, value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_and_payload_types() {
        let cs =
            parse_codecs(&["PCMU".into(), "pcma;telephone-event".into(), "opus".into()]).unwrap();
        let (pts, attrs) = payload_types(&cs).unwrap();
        assert_eq!(pts, [0, 8, 96, 97]);
        assert_eq!(
            attrs,
            [
                "a=rtpmap:96 telephone-event/8000",
                "a=fmtp:96 0-15",
                "a=rtpmap:97 opus/48000/2"
            ]
        );
        assert_eq!(
            parse_codec("G722/8000").unwrap(),
            Codec {
                name: "G722".into(),
                rate: Some(8000),
                channels: None
            }
        );
        // A static name at another rate is dynamic.
        let (pts, attrs) = payload_types(&[parse_codec("G722/16000").unwrap()]).unwrap();
        assert_eq!(
            (pts, attrs),
            (vec![96], vec!["a=rtpmap:96 G722/16000".to_string()])
        );
        for bad in ["", "PC MU", "PCMU/x", "PCMU/8000/0", "a/8000/1/2", "PCMU/5"] {
            assert!(parse_codec(bad).is_err(), "{bad:?}");
        }
        assert!(payload_types(&[parse_codec("FOO").unwrap()])
            .unwrap_err()
            .contains("FOO/RATE"));
        assert!(payload_types(&[parse_codec("FOO/16000").unwrap()]).is_ok());
    }

    #[test]
    fn sdp_for_a_remote_address() {
        let cs = parse_codecs(&["PCMA".into(), "telephone-event".into()]).unwrap();
        let s = remote_sdp("127.0.0.1:4000".parse().unwrap(), &cs, Some(20), 5).unwrap();
        assert_eq!(
            s,
            "v=0\r\no=- 5 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 8 96\r\na=rtpmap:96 telephone-event/8000\r\n\
             a=fmtp:96 0-15\r\na=ptime:20\r\n"
        );
        let s6 = remote_sdp("[::1]:5000".parse().unwrap(), &cs[..1], None, 5).unwrap();
        assert!(s6.contains("c=IN IP6 ::1\r\n") && s6.contains("m=audio 5000 RTP/AVP 8\r\n"));
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(mode("RecvOnly").unwrap(), "recvonly");
        assert!(mode("sideways").is_err());
        assert_eq!(call_id("1a").unwrap(), "1a");
        assert!(call_id("xyz").is_err());
        assert!(conn_id("").is_err());
        assert!(request_id("12g").is_err());
        assert_eq!(
            notified_entity("ca@127.0.0.1:2727").unwrap(),
            "ca@127.0.0.1:2727"
        );
        assert!(notified_entity("a b").is_err());
        let cs = parse_codecs(&["PCMU".into(), "PCMA".into()]).unwrap();
        assert_eq!(
            lco(None, Some(20), &cs).unwrap().as_deref(),
            Some("p:20, a:PCMU;PCMA")
        );
        assert_eq!(
            lco(Some("e:on, a:G729"), None, &cs).unwrap().as_deref(),
            Some("a:PCMU;PCMA, e:on")
        );
        assert_eq!(lco(None, None, &[]).unwrap(), None);
        assert!(lco(Some("zz:1"), None, &[]).is_err());
        assert!(lco(None, Some(0), &[]).is_err());
        assert_eq!(events(" D/[0-9](N)").unwrap(), "D/[0-9](N)");
        assert!(events("D/[0-9](N").is_err());
        assert!(signals("D/5,").is_err());
        assert_eq!(digit_map("(xx|911)").unwrap(), "(xx|911)");
        assert!(digit_map("(xx|").is_err());
        assert_eq!(info("a, i ,R").unwrap(), "A,I,R");
        assert!(info("QQ").is_err());
        assert_eq!(bearer("e:A").unwrap(), "e:A");
        assert!(bearer("e:B").is_err());
        assert_eq!(
            param("X-Foo: bar").unwrap(),
            (ParamName::Extension("X-Foo".into()), "bar".into())
        );
        assert_eq!(
            param("q: loop").unwrap(),
            (ParamName::QuarantineHandling, "loop".into())
        );
        assert!(param("Foo: bar").is_err());
        assert!(param("nocolon").is_err());
        assert!(command(Verb::Auep, TransactionId::FIRST, "nodomain").is_err());
        assert!(command(Verb::Auep, TransactionId::FIRST, "a//b@gw").is_err());
        let mut c = command(Verb::Auep, TransactionId::FIRST, "rtpbridge/1@mgw").unwrap();
        add(&mut c, ParamName::RequestedInfo, "A".into()).unwrap();
        assert!(add(&mut c, ParamName::RequestedInfo, "A".into()).is_err());
    }

    #[test]
    fn sdp_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("mgw-ctl-sdp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.sdp");
        std::fs::write(&good, "v=0\nc=IN IP4 127.0.0.1\nm=audio 4000 RTP/AVP 0\n\n").unwrap();
        assert_eq!(
            read_sdp(&good).unwrap(),
            "v=0\nc=IN IP4 127.0.0.1\nm=audio 4000 RTP/AVP 0\r\n"
        );
        let bad = dir.join("bad.sdp");
        std::fs::write(&bad, "hello\n").unwrap();
        assert!(read_sdp(&bad).is_err());
        std::fs::write(&bad, "v=0\n\nm=audio 1 RTP/AVP 0\n").unwrap();
        assert!(read_sdp(&bad).is_err());
        assert!(read_sdp(&dir.join("missing.sdp")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
