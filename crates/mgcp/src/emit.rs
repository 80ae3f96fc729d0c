//! Writing [`Message`]s as MGCP text (RFC 3435 §3).
//!
//! Output is canonical: CRLF line ends, upper-case verbs and parameter codes, one space
//! between header tokens, `Name: value` parameter lines (`Name:` when the value is empty),
//! and, when there is a session description, one empty line followed by the description
//! with its line ends normalised to CRLF. A response line omits the commentary when it is
//! empty (`250 1204`).
//!
//! Values are written as stored; a CR or LF inside a header token, commentary or parameter
//! value (which the parser never produces) is written as a space so that it cannot inject
//! lines. For every message [`crate::parse_message`] returns, parsing the output gives the
//! same message back.

use crate::message::{Command, Message, Params, Response};

/// Appends `s` with any CR/LF replaced by a space.
fn put_line_text(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

fn put_params(out: &mut Vec<u8>, params: &Params) {
    for (name, value) in params.iter() {
        put_line_text(out, name.code());
        out.push(b':');
        if !value.is_empty() {
            out.push(b' ');
            put_line_text(out, value);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes the blank line and the session description, CRLF-normalised, when there is one.
fn put_sdp(out: &mut Vec<u8>, sdp: Option<&str>) {
    let Some(sdp) = sdp else { return };
    let body = sdp.trim_end_matches(['\r', '\n']);
    if body.is_empty() {
        return;
    }
    out.extend_from_slice(b"\r\n");
    for line in body.split('\n') {
        out.extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

impl Command {
    /// Appends the wire form of the command to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.verb.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.tid.to_string().as_bytes());
        out.push(b' ');
        put_line_text(out, &self.endpoint.to_string());
        out.push(b' ');
        put_line_text(out, &self.version.protocol);
        out.push(b' ');
        put_line_text(out, &self.version.version);
        out.extend_from_slice(b"\r\n");
        put_params(out, &self.params);
        put_sdp(out, self.sdp.as_deref());
    }
}

impl Response {
    /// Appends the wire form of the response to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.code.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.tid.to_string().as_bytes());
        let comment = self.comment.trim_matches([' ', '\t']);
        if !comment.is_empty() {
            out.push(b' ');
            put_line_text(out, comment);
        }
        out.extend_from_slice(b"\r\n");
        put_params(out, &self.params);
        put_sdp(out, self.sdp.as_deref());
    }
}

impl Message {
    /// Appends the wire form of the message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Command(c) => c.encode(out),
            Message::Response(r) => r.encode(out),
        }
    }

    /// The wire form of the message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode(&mut out);
        out
    }
}

/// Appends several messages as one piggybacked datagram, separated by `.` lines
/// (RFC 3435 §3.1).
pub fn encode_piggyback(msgs: &[Message], out: &mut Vec<u8>) {
    for (i, m) in msgs.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b".\r\n");
        }
        m.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::ReturnCode;
    use crate::message::{ParamName, TransactionId, Verb};
    use crate::name::EndpointName;
    use crate::parse::{parse_datagram, parse_message};

    fn tid(v: u32) -> TransactionId {
        TransactionId::new(v).unwrap()
    }

    fn text(m: &Message) -> String {
        String::from_utf8(m.to_bytes()).unwrap()
    }

    #[test]
    fn command_bytes() {
        let mut c = Command::new(
            Verb::Crcx,
            tid(1),
            EndpointName::parse("rtpbridge/*@mgw").unwrap(),
        );
        c.params.push(ParamName::CallId, "4242");
        c.params
            .push(ParamName::LocalConnectionOptions, "p:20, a:PCMU, nt:IN");
        c.params.push(ParamName::ConnectionMode, "recvonly");
        c.params.push(ParamName::RequestedInfo, "");
        c.sdp = Some("v=0\nc=IN IP4 127.0.0.1\n".into());
        assert_eq!(
            text(&Message::Command(c)),
            "CRCX 1 rtpbridge/*@mgw MGCP 1.0\r\nC: 4242\r\nL: p:20, a:PCMU, nt:IN\r\n\
             M: recvonly\r\nF:\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\n"
        );
    }

    #[test]
    fn response_bytes() {
        let r = Response::new(ReturnCode::OK, tid(1204));
        assert_eq!(text(&Message::Response(r.clone())), "200 1204 OK\r\n");
        let r = r.with_comment("");
        assert_eq!(text(&Message::Response(r)), "200 1204\r\n");
        let mut r = Response::new(ReturnCode::RESPONSE_ACK, tid(7)).with_comment("bad\r\nX: 1");
        r.params.push(ParamName::Extension("X-Foo".into()), "a\nb");
        assert_eq!(
            text(&Message::Response(r)),
            "000 7 bad  X: 1\r\nX-Foo: a b\r\n"
        );
    }

    #[test]
    fn piggyback_bytes_and_back() {
        let a = Message::Response(Response::new(ReturnCode::OK, tid(5)));
        let mut b = Command::new(
            Verb::Ntfy,
            tid(6),
            EndpointName::parse("aaln/1@gw").unwrap(),
        );
        b.params.push(ParamName::ObservedEvents, "L/hd");
        let b = Message::Command(b);
        let mut out = Vec::new();
        encode_piggyback(&[a.clone(), b.clone()], &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "200 5 OK\r\n.\r\nNTFY 6 aaln/1@gw MGCP 1.0\r\nO: L/hd\r\n"
        );
        let back: Vec<Message> = parse_datagram(&out)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(back, vec![a, b]);
    }

    #[test]
    fn round_trip_parse_emit_parse() {
        let inputs: &[&str] = &[
            "crcx 1204 aaln/1@rgw.whatever.net mgcp 1.0 NCS  1.0\nc: A3C47F21456789F0\nl: p:10, a:PCMU\nm: recvonly\nx-Vendor:  on \n\nv=0\no=- 25678 753849 IN IP4 128.96.41.1\ns=-\nc=IN IP4 128.96.41.1\nt=0 0\nm=audio 3456 RTP/AVP 0\n\n",
            "200 1204 OK\r\nI: FDE234C8\r\n\r\nv=0\r\nm=audio 1 RTP/AVP 0\r\n\r\nv=0\r\nm=audio 2 RTP/AVP 0\r\n",
            "250 1206\r\nP: PS=1245, OS=62345, PR=780, OR=45123, PL=10, JI=27, LA=48\r\n",
            "RQNT 1205 aaln/1@rgw MGCP 1.0\r\nN: ca@ca1.whatever.net:5678\r\nX: 0123456789AC\r\nR: L/hd(N)\r\nS: L/rg\r\nQ: process,loop\r\n",
            "401 1207   Phone off hook  \r\n",
            "000 33\r\n",
            "RSIP 5 *@rgw MGCP 1.0\r\nRM: restart\r\nRD: 0\r\n",
            "AUEP 9 aaln/$@gw MGCP 1.0\r\nF:\r\n",
        ];
        for input in inputs {
            let m1 = parse_message(input).unwrap();
            let bytes = m1.to_bytes();
            let m2 = parse_message(std::str::from_utf8(&bytes).unwrap()).unwrap();
            assert_eq!(m1, m2, "{input:?}");
            assert_eq!(bytes, m2.to_bytes());
        }
    }

    /// A tiny xorshift generator, so the property test is deterministic.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[(self.next() % xs.len() as u64) as usize]
        }
    }

    #[test]
    fn round_trip_property_on_generated_messages() {
        let heads = [
            "CRCX 1 aaln/1@gw MGCP 1.0",
            "mdcx  22\taaln/*@[::1] mgcp 1.0 NCS 1.0",
            "200 5 OK",
            "250 999999999",
            "510 3  bad  thing ",
            "000 4",
            "RSIP 7 *@gw MGCP 1.0",
            "ntfy 8 x@y MGCP 1.0",
            "XXXX 9 a@b MGCP 1.0",
            "CRCX 9 a@b MGCP 2.0",
            "200 0 OK",
        ];
        let names = [
            "C", "i", "L", "m", "R", "s", "x-Foo", "X+Bar", "Q", "z2", "W", "K", "  P ", "X-a b",
        ];
        let values = [
            "",
            " 1 ",
            "p:20, a:PCMU",
            "L/hd(N)",
            ":x:",
            "a\tb",
            "E(R(x))",
        ];
        let seps = ["\r\n", "\n"];
        let bodies = [
            "",
            "v=0",
            "v=0\nm=audio 1 RTP/AVP 0",
            " ",
            "v=0\r\n\r\nv=0\n\n",
        ];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut parsed_ok = 0;
        for _ in 0..4000 {
            let nl = rng.pick(&seps);
            let mut text = String::from(rng.pick(&heads));
            text.push_str(nl);
            for _ in 0..rng.next() % 5 {
                text.push_str(rng.pick(&names));
                text.push(':');
                text.push_str(rng.pick(&values));
                text.push_str(nl);
            }
            if rng.next() & 1 == 0 {
                text.push_str(nl);
                text.push_str(&rng.pick(&bodies).replace('\n', nl));
            }
            if let Ok(m) = parse_message(&text) {
                parsed_ok += 1;
                let bytes = m.to_bytes();
                let again = parse_message(std::str::from_utf8(&bytes).unwrap());
                assert_eq!(again.as_ref(), Ok(&m), "{text:?}");
                assert_eq!(again.unwrap().to_bytes(), bytes);
            }
        }
        assert!(
            parsed_ok > 200,
            "only {parsed_ok} generated messages parsed"
        );
    }
}
