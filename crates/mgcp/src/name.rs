//! Endpoint names (RFC 3435 §2.1.1, §3.2.1.3): `local-name@domain`.
//!
//! The local name is a `/`-separated hierarchy whose terms may be the wildcards `*`
//! ("all") or `$` ("any one"). The domain is a host name or an `[IP]` literal. Both are
//! compared case-insensitively.

use std::fmt;

use crate::code::Error;

/// How a local-name term matches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wildcard {
    /// No wildcard in the name.
    None,
    /// `*`: every matching endpoint.
    All,
    /// `$`: any one matching endpoint (the gateway chooses).
    Any,
}

/// An endpoint name.
#[derive(Clone, Debug)]
pub struct EndpointName {
    local: String,
    domain: String,
}

impl EndpointName {
    /// Longest accepted name, in bytes (RFC 3435 limits names to 255 characters).
    pub const MAX_LEN: usize = 255;

    /// Parses `local@domain`. Fails with [`Error::Protocol`] when malformed.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.len() > Self::MAX_LEN {
            return Err(Error::Protocol("endpoint name too long".into()));
        }
        let (local, domain) = s
            .rsplit_once('@')
            .ok_or_else(|| Error::Protocol(format!("endpoint name {s:?} has no '@domain'")))?;
        Self::new(local, domain)
    }

    /// Builds a name from its two halves, checking their syntax.
    pub fn new(local: &str, domain: &str) -> Result<Self, Error> {
        if local.is_empty() || domain.is_empty() {
            return Err(Error::Protocol(format!(
                "endpoint name {local:?}@{domain:?} has an empty part"
            )));
        }
        if local.split('/').any(|t| t.is_empty()) {
            return Err(Error::Protocol(format!(
                "endpoint local name {local:?} has an empty term"
            )));
        }
        let ok_char = |c: char| c.is_ascii_graphic() && c != '@';
        if !local.chars().all(ok_char) {
            return Err(Error::Protocol(format!(
                "bad character in endpoint local name {local:?}"
            )));
        }
        if let Some(inner) = domain.strip_prefix('[') {
            let ip = inner
                .strip_suffix(']')
                .ok_or_else(|| Error::Protocol(format!("unterminated IP domain {domain:?}")))?;
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(Error::Protocol(format!(
                    "bad IP address in domain {domain:?}"
                )));
            }
        } else if !domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
        {
            return Err(Error::Protocol(format!(
                "bad character in domain {domain:?}"
            )));
        }
        Ok(EndpointName {
            local: local.to_string(),
            domain: domain.to_string(),
        })
    }

    /// The local name as sent.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain as sent.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The wildcard kind of the name: `*` anywhere wins over `$`.
    pub fn wildcard(&self) -> Wildcard {
        let mut w = Wildcard::None;
        for t in self.local.split('/') {
            if t == "*" {
                return Wildcard::All;
            }
            if t == "$" {
                w = Wildcard::Any;
            }
        }
        w
    }

    /// Whether the domain equals `domain`, case-insensitively.
    pub fn domain_is(&self, domain: &str) -> bool {
        self.domain.eq_ignore_ascii_case(domain)
    }

    /// Whether the (possibly wildcarded) local name matches the concrete local name `other`.
    ///
    /// `*` and `$` match one term each; a trailing `*` also matches any number of
    /// further terms (RFC 3435 §2.1.1: `ds/*` names every endpoint under `ds`).
    pub fn local_matches(&self, other: &str) -> bool {
        let mut pat = self.local.split('/').peekable();
        let mut it = other.split('/');
        loop {
            match (pat.next(), it.next()) {
                (None, None) => return true,
                (Some("*"), Some(_)) if pat.peek().is_none() => return true,
                (Some(p), Some(t)) => {
                    if !(p == "*" || p == "$" || p.eq_ignore_ascii_case(t)) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }
}

impl PartialEq for EndpointName {
    fn eq(&self, other: &Self) -> bool {
        self.local.eq_ignore_ascii_case(&other.local)
            && self.domain.eq_ignore_ascii_case(&other.domain)
    }
}

impl Eq for EndpointName {}

impl std::hash::Hash for EndpointName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.local.bytes().chain([b'@']).chain(self.domain.bytes()) {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl fmt::Display for EndpointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares_case_insensitively() {
        let a = EndpointName::parse("ds/E1-1/1@GW.example").unwrap();
        let b = EndpointName::parse("ds/e1-1/1@gw.EXAMPLE").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.wildcard(), Wildcard::None);
        assert_eq!(a.to_string(), "ds/E1-1/1@GW.example");
    }

    #[test]
    fn wildcards() {
        let all = EndpointName::parse("ds/e1-1/*@gw").unwrap();
        assert_eq!(all.wildcard(), Wildcard::All);
        assert!(all.local_matches("ds/e1-1/7"));
        assert!(!all.local_matches("ds/e1-2/7"));
        let star = EndpointName::parse("*@gw").unwrap();
        assert!(star.local_matches("rtpbridge/1"));
        let any = EndpointName::parse("rtpbridge/$@gw").unwrap();
        assert_eq!(any.wildcard(), Wildcard::Any);
        assert!(any.local_matches("RTPBRIDGE/12"));
        assert!(!any.local_matches("rtpbridge/12/3"));
    }

    #[test]
    fn ip_domain() {
        assert!(EndpointName::parse("aaln/1@[127.0.0.1]").is_ok());
        assert!(EndpointName::parse("aaln/1@[::1]").is_ok());
        assert!(EndpointName::parse("aaln/1@[300.0.0.1]").is_err());
        assert!(EndpointName::parse("aaln/1@[127.0.0.1").is_err());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "@gw",
            "aaln/1@",
            "aaln/1",
            "aaln//1@gw",
            "a b@gw",
            "a@g w",
        ] {
            assert!(EndpointName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
