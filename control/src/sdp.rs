//! Session descriptions: reading the call agent's remote SDP (via `sdp-types`), choosing
//! codecs, and writing our local SDP.

use std::net::{IpAddr, SocketAddr};

use mgcp::Error;
use mgw_dataplane::{Codec, PayloadBinding};

/// A codec this gateway can carry, with its static payload type when it has one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KnownCodec {
    pub(crate) name: &'static str,
    pub(crate) clock_rate: u32,
    pub(crate) channels: u8,
    pub(crate) static_pt: Option<u8>,
}

/// Codecs mgw understands (RFC 3551 static types and the dynamic ones we support).
pub(crate) const KNOWN_CODECS: &[KnownCodec] = &[
    KnownCodec {
        name: "PCMU",
        clock_rate: 8000,
        channels: 1,
        static_pt: Some(0),
    },
    KnownCodec {
        name: "PCMA",
        clock_rate: 8000,
        channels: 1,
        static_pt: Some(8),
    },
    KnownCodec {
        name: "GSM",
        clock_rate: 8000,
        channels: 1,
        static_pt: Some(3),
    },
    KnownCodec {
        name: "G723",
        clock_rate: 8000,
        channels: 1,
        static_pt: Some(4),
    },
    KnownCodec {
        name: "G722",
        clock_rate: 8000,
        channels: 1,
        static_pt: Some(9),
    },
    KnownCodec {
        name: "G729",
        clock_rate: 8000,
        channels: 1,
        static_pt: Some(18),
    },
    KnownCodec {
        name: "CN",
        clock_rate: 8000,
        channels: 1,
        static_pt: Some(13),
    },
    KnownCodec {
        name: "L16",
        clock_rate: 8000,
        channels: 1,
        static_pt: None,
    },
    KnownCodec {
        name: "L16",
        clock_rate: 16000,
        channels: 1,
        static_pt: None,
    },
    KnownCodec {
        name: "OPUS",
        clock_rate: 48000,
        channels: 2,
        static_pt: None,
    },
    KnownCodec {
        name: "TELEPHONE-EVENT",
        clock_rate: 8000,
        channels: 1,
        static_pt: None,
    },
];

/// Looks a static payload type up (RFC 3551 table 4, the audio ones we know).
pub(crate) fn static_codec(pt: u8) -> Option<Codec> {
    KNOWN_CODECS
        .iter()
        .find(|k| k.static_pt == Some(pt))
        .map(|k| Codec {
            name: k.name.into(),
            clock_rate: k.clock_rate,
            channels: k.channels,
        })
}

/// Finds a codec by the name used in `L: a:` or an rtpmap, with an optional rate.
pub(crate) fn codec_by_name(name: &str, rate: Option<u32>) -> Option<Codec> {
    let upper = name.to_ascii_uppercase();
    // G.722's RTP clock is 8000 although it samples at 16 kHz (RFC 3551 §4.5.2).
    KNOWN_CODECS
        .iter()
        .find(|k| k.name == upper && rate.is_none_or(|r| r == k.clock_rate))
        .map(|k| Codec {
            name: k.name.into(),
            clock_rate: k.clock_rate,
            channels: k.channels,
        })
}

/// Which codecs an endpoint accepts.
#[derive(Clone, Debug)]
pub(crate) enum CodecPolicy {
    /// Any codec: the endpoint relays IP to IP without touching the payload.
    Relay,
    /// A TDM channel: the codecs the media engine decodes and encodes; the first (the
    /// channel's own law) is offered first.
    Transcode(Vec<&'static str>),
}

/// Codecs the media engine transcodes to and from a TDM channel, A-law first.
pub(crate) const TRANSCODABLE_ALAW: &[&str] = &["PCMA", "PCMU", "G722", "L16", "OPUS"];
/// The same, µ-law first.
pub(crate) const TRANSCODABLE_ULAW: &[&str] = &["PCMU", "PCMA", "G722", "L16", "OPUS"];

impl CodecPolicy {
    fn allows(&self, c: &Codec) -> bool {
        match self {
            CodecPolicy::Relay => true,
            CodecPolicy::Transcode(names) => {
                names.iter().any(|n| *n == c.name) || c.name == "TELEPHONE-EVENT" || c.name == "CN"
            }
        }
    }

    /// The default offer when the call agent names no codec.
    fn default_offer(&self) -> Vec<&'static str> {
        match self {
            CodecPolicy::Relay => vec!["PCMU", "PCMA", "TELEPHONE-EVENT"],
            // The channel's own law first, then the other G.711 law.
            CodecPolicy::Transcode(names) => {
                let mut v: Vec<&'static str> = names.iter().copied().take(2).collect();
                v.push("TELEPHONE-EVENT");
                v
            }
        }
    }
}

/// What we learned from a remote SDP.
#[derive(Clone, Debug)]
pub(crate) struct RemoteMedia {
    /// Where to send RTP; `None` when the port is 0 or the address is unspecified (hold).
    pub(crate) rtp: Option<SocketAddr>,
    /// Where to send RTCP.
    pub(crate) rtcp: Option<SocketAddr>,
    /// Payload types as the remote numbers them, in preference order.
    pub(crate) payloads: Vec<PayloadBinding>,
    /// Packetization time, if given.
    pub(crate) ptime: Option<u32>,
    /// `a=fmtp` parameters by payload type.
    pub(crate) fmtp: Vec<(u8, String)>,
}

/// Parses the call agent's RemoteConnectionDescriptor (first audio stream).
pub(crate) fn parse_remote(text: &str) -> Result<RemoteMedia, Error> {
    // RFC 3435 allows two session descriptions separated by an empty line; the first
    // one describes this connection.
    let first = first_description(text);
    let session = sdp_types::Session::parse(first.as_bytes())
        .map_err(|e| Error::BadRemoteDescriptor(e.to_string()))?;
    let media = session
        .medias
        .iter()
        .find(|m| m.media.eq_ignore_ascii_case("audio"))
        .ok_or_else(|| Error::UnsupportedRemoteDescriptor("no audio stream".into()))?;
    if !media.proto.eq_ignore_ascii_case("RTP/AVP") && !media.proto.eq_ignore_ascii_case("RTP/AVPF")
    {
        return Err(Error::UnsupportedRemoteDescriptor(format!(
            "transport {}",
            media.proto
        )));
    }
    let conn = media
        .connections
        .first()
        .or(session.connection.as_ref())
        .ok_or_else(|| Error::BadRemoteDescriptor("no c= line".into()))?;
    let ip: IpAddr = conn.try_address().map(|a| a.ip).map_err(|_| {
        Error::BadRemoteDescriptor(format!("bad address {:?}", conn.connection_address))
    })?;
    let rtp = (media.port != 0 && !ip.is_unspecified()).then_some(SocketAddr::new(ip, media.port));
    let rtcp = match media.get_first_attribute_value("rtcp") {
        Some(Some(v)) => {
            let port: u16 = v
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| Error::BadRemoteDescriptor(format!("bad a=rtcp:{v}")))?;
            rtp.map(|a| SocketAddr::new(a.ip(), port))
        }
        _ => rtp.map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1))),
    };
    let mut payloads = Vec::new();
    for fmt in media.fmt.split_whitespace() {
        let pt: u8 = fmt
            .parse()
            .ok()
            .filter(|p| *p < 128)
            .ok_or_else(|| Error::BadRemoteDescriptor(format!("bad payload type {fmt:?}")))?;
        let mapped = media
            .get_attribute_values("rtpmap")
            .flatten()
            .find_map(|v| parse_rtpmap(v).filter(|(p, _)| *p == pt).map(|(_, c)| c));
        let codec = match mapped {
            Some(c) => Some(c),
            None => static_codec(pt),
        };
        if let Some(codec) = codec {
            payloads.push(PayloadBinding { pt, codec });
        }
    }
    let ptime = media
        .get_first_attribute_value("ptime")
        .flatten()
        .and_then(|v| v.trim().parse().ok());
    let fmtp = media
        .get_attribute_values("fmtp")
        .flatten()
        .filter_map(|v| {
            let (pt, rest) = v.trim().split_once(char::is_whitespace)?;
            Some((
                pt.parse::<u8>().ok().filter(|p| *p < 128)?,
                rest.trim().to_string(),
            ))
        })
        .collect();
    Ok(RemoteMedia {
        rtp,
        rtcp,
        payloads,
        ptime,
        fmtp,
    })
}

fn first_description(text: &str) -> String {
    let mut out = String::new();
    let mut seen_content = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if seen_content {
                break;
            }
            continue;
        }
        seen_content = true;
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// `96 opus/48000/2` → (96, OPUS/48000/2).
fn parse_rtpmap(v: &str) -> Option<(u8, Codec)> {
    let (pt, rest) = v.trim().split_once(char::is_whitespace)?;
    let pt: u8 = pt.parse().ok().filter(|p| *p < 128)?;
    let mut parts = rest.trim().split('/');
    let name = parts.next()?.to_ascii_uppercase();
    let clock_rate: u32 = parts.next()?.parse().ok()?;
    let channels: u8 = match parts.next() {
        Some(c) => c.parse().ok()?,
        None => 1,
    };
    Some((
        pt,
        Codec {
            name,
            clock_rate,
            channels,
        },
    ))
}

/// Chooses this connection's payload types.
///
/// With a remote description: the remote's payload types we (and `L: a:`, when given)
/// accept, in the remote's order and numbering. Without: our offer from `L: a:` or the
/// endpoint's default list.
pub(crate) fn negotiate(
    policy: &CodecPolicy,
    lco_codecs: &[String],
    remote: Option<&RemoteMedia>,
) -> Result<Vec<PayloadBinding>, Error> {
    let wanted: Vec<Codec> = lco_codecs
        .iter()
        .map(|n| {
            let (name, rate) = match n.split_once('/') {
                Some((a, b)) => (a, b.parse().ok()),
                None => (n.as_str(), None),
            };
            codec_by_name(name, rate)
                .ok_or_else(|| Error::CodecNegotiation(format!("unknown codec {n:?}")))
        })
        .collect::<Result<_, _>>()?;
    let chosen: Vec<PayloadBinding> = match remote {
        Some(r) => r
            .payloads
            .iter()
            .filter(|p| policy.allows(&p.codec))
            .filter(|p| {
                wanted.is_empty()
                    || p.codec.name == "TELEPHONE-EVENT"
                    || wanted
                        .iter()
                        .any(|w| w.name == p.codec.name && w.clock_rate == p.codec.clock_rate)
            })
            .cloned()
            .collect(),
        None => {
            let list: Vec<Codec> = if wanted.is_empty() {
                policy
                    .default_offer()
                    .into_iter()
                    .filter_map(|n| codec_by_name(n, None))
                    .collect()
            } else {
                wanted
            };
            let mut next_dynamic = 96u8;
            list.into_iter()
                .filter(|c| policy.allows(c))
                .map(|codec| {
                    let pt = KNOWN_CODECS
                        .iter()
                        .find(|k| k.name == codec.name && k.clock_rate == codec.clock_rate)
                        .and_then(|k| k.static_pt)
                        .unwrap_or_else(|| {
                            let p = next_dynamic;
                            next_dynamic = next_dynamic.saturating_add(1).min(127);
                            p
                        });
                    PayloadBinding { pt, codec }
                })
                .collect()
        }
    };
    if !chosen
        .iter()
        .any(|p| p.codec.name != "TELEPHONE-EVENT" && p.codec.name != "CN")
    {
        return Err(Error::CodecNegotiation("no audio codec in common".into()));
    }
    Ok(chosen)
}

/// Writes the LocalConnectionDescriptor.
pub(crate) fn local_sdp(
    session_id: u64,
    version: u64,
    addr: IpAddr,
    port: u16,
    payloads: &[PayloadBinding],
    ptime: u32,
) -> String {
    use std::fmt::Write;
    let family = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(256);
    let fmts: Vec<String> = payloads.iter().map(|p| p.pt.to_string()).collect();
    // Writing into a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- {session_id} {version} IN {family} {addr}\r\ns=-\r\nc=IN {family} {addr}\r\nt=0 0\r\nm=audio {port} RTP/AVP {}\r\n",
        fmts.join(" ")
    );
    for p in payloads {
        let name = match p.codec.name.as_str() {
            "OPUS" => "opus",
            "TELEPHONE-EVENT" => "telephone-event",
            other => other,
        };
        if p.codec.channels > 1 {
            let _ = write!(
                s,
                "a=rtpmap:{} {}/{}/{}\r\n",
                p.pt, name, p.codec.clock_rate, p.codec.channels
            );
        } else {
            let _ = write!(s, "a=rtpmap:{} {}/{}\r\n", p.pt, name, p.codec.clock_rate);
        }
        if p.codec.name == "TELEPHONE-EVENT" {
            let _ = write!(s, "a=fmtp:{} 0-15\r\n", p.pt);
        }
    }
    let _ = write!(s, "a=ptime:{ptime}\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n";

    #[test]
    fn minimal_rfc3435_sdp() {
        let r = parse_remote(MINIMAL).unwrap();
        assert_eq!(r.rtp, Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(r.rtcp, Some("127.0.0.1:4001".parse().unwrap()));
        assert_eq!(r.payloads.len(), 1);
        assert_eq!(r.payloads[0].codec.name, "PCMU");
    }

    #[test]
    fn dynamic_types_and_rtcp_attribute() {
        let sdp = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 127.0.0.2\nt=0 0\nm=audio 5004 RTP/AVP 96 101\na=rtpmap:96 opus/48000/2\na=rtpmap:101 telephone-event/8000\na=rtcp:6000\na=ptime:20\n";
        let r = parse_remote(sdp).unwrap();
        assert_eq!(r.rtcp, Some("127.0.0.2:6000".parse().unwrap()));
        assert_eq!(r.payloads[0].codec.name, "OPUS");
        assert_eq!(r.payloads[1].pt, 101);
        assert_eq!(r.ptime, Some(20));
    }

    #[test]
    fn hold_address() {
        let r = parse_remote("v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 8\r\n").unwrap();
        assert_eq!(r.rtp, None);
    }

    #[test]
    fn negotiation() {
        let r =
            parse_remote("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 18 0 8\r\n").unwrap();
        let only_a = CodecPolicy::Transcode(TRANSCODABLE_ALAW.to_vec());
        let got = negotiate(&only_a, &[], Some(&r)).unwrap();
        assert_eq!(got.iter().map(|p| p.pt).collect::<Vec<_>>(), vec![0, 8]);
        let only_g729 =
            parse_remote("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 18\r\n").unwrap();
        assert_eq!(
            negotiate(&CodecPolicy::Relay, &[], Some(&only_g729)).unwrap()[0].pt,
            18
        );
        assert!(matches!(
            negotiate(&only_a, &[], Some(&only_g729)),
            Err(Error::CodecNegotiation(_))
        ));
        let unknown =
            parse_remote("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 97\r\n").unwrap();
        assert!(matches!(
            negotiate(&CodecPolicy::Relay, &[], Some(&unknown)),
            Err(Error::CodecNegotiation(_))
        ));
        let offer = negotiate(&CodecPolicy::Relay, &["PCMA".into(), "opus".into()], None).unwrap();
        assert_eq!(offer[0].pt, 8);
        assert_eq!(offer[1].pt, 96);
        assert!(negotiate(&CodecPolicy::Relay, &["AMR".into()], None).is_err());
        let sdp = local_sdp(1, 1, "127.0.0.1".parse().unwrap(), 16384, &offer, 20);
        let back = parse_remote(&sdp).unwrap();
        assert_eq!(back.payloads, offer);
    }

    #[test]
    fn garbage_is_a_descriptor_error() {
        assert!(matches!(
            parse_remote("hello"),
            Err(Error::BadRemoteDescriptor(_))
        ));
        assert!(matches!(
            parse_remote("v=0\r\nc=IN IP4 127.0.0.1\r\nm=video 4000 RTP/AVP 31\r\n"),
            Err(Error::UnsupportedRemoteDescriptor(_))
        ));
    }
}
