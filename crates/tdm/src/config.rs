//! Span configuration (deserialized by the control plane from TOML) and endpoint naming.
//!
//! ```toml
//! ptime_ms = 20
//!
//! [[span]]
//! kind = "virtual"          # virtual | dahdi | alsa
//! name = "e1-1"             # endpoints ds/e1-1/1 .. ds/e1-1/30
//! law = "alaw"              # alaw | ulaw | linear
//! channels = "1-30"
//! loop = "e1-2"             # crossover partner (virtual only)
//!
//! [[span]]
//! kind = "virtual"
//! name = "e1-2"
//! law = "alaw"
//! channels = "1-30"
//! tap = true                # each channel is a Unix datagram socket instead
//! tap_dir = "/run/mgw/tap"  # socket of channel 7: /run/mgw/tap/e1-2-7.sock
//!
//! [[span]]
//! kind = "dahdi"
//! name = "t1-1"
//! law = "ulaw"
//! channels = "1-24"
//! device = "/dev/dahdi/channel"
//! dahdi_first_channel = 1   # DAHDI channel number of endpoint channel 1
//!
//! [[span]]
//! kind = "alsa"
//! name = "sound0"
//! law = "linear"
//! channels = "1"            # endpoint aaln/1
//! device = "default"        # playback PCM
//! capture_device = "default"
//! ```
//!
//! Endpoint names (RFC 3435 §2.1.1 local names, matched case-insensitively): `virtual` and
//! `dahdi` spans give `ds/<name>/<channel>`; `alsa` spans give `aaln/<channel>`.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::SetupError;
use crate::law::Law;

/// Which backend drives a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// In-memory span: crossover to a partner span, or tap sockets, or idle.
    Virtual,
    /// DAHDI telephony card channels through `/dev/dahdi/channel`.
    Dahdi,
    /// ALSA PCM audio device (an analog line endpoint `aaln/N`).
    Alsa,
}

/// An inclusive range of channel numbers, written `"1-30"` or `7` in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRange")]
pub struct ChannelRange {
    first: u16,
    last: u16,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRange {
    One(u16),
    Text(String),
}

impl TryFrom<RawRange> for ChannelRange {
    type Error = String;
    fn try_from(raw: RawRange) -> Result<Self, String> {
        match raw {
            RawRange::One(n) => ChannelRange::new(n, n),
            RawRange::Text(s) => s.parse(),
        }
    }
}

impl std::str::FromStr for ChannelRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |t: &str| {
            t.trim()
                .parse::<u16>()
                .map_err(|_| format!("bad channel number {t:?} in range {s:?}"))
        };
        match s.split_once('-') {
            Some((a, b)) => ChannelRange::new(num(a)?, num(b)?),
            None => {
                let n = num(s)?;
                ChannelRange::new(n, n)
            }
        }
    }
}

impl ChannelRange {
    /// `first..=last`; channel numbers start at 1 and `first <= last`.
    pub fn new(first: u16, last: u16) -> Result<Self, String> {
        if first == 0 || first > last {
            return Err(format!(
                "channel range {first}-{last} must satisfy 1 <= first <= last"
            ));
        }
        Ok(ChannelRange { first, last })
    }

    /// First channel number.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// Last channel number (inclusive).
    pub fn last(&self) -> u16 {
        self.last
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// Always false (a range holds at least one channel); here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Index (0-based) of channel number `n`, if in range.
    pub fn index_of(&self, n: u16) -> Option<usize> {
        (self.first..=self.last)
            .contains(&n)
            .then(|| usize::from(n - self.first))
    }
}

impl fmt::Display for ChannelRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// One span (a group of channels sharing a backend, a law and an endpoint prefix).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanConfig {
    /// Backend.
    pub kind: SpanKind,
    /// Span name, used in endpoint names (`ds/<name>/<channel>`): `[a-z0-9-]`, e.g. `e1-1`.
    pub name: String,
    /// Sample encoding on the span (`alaw`/`ulaw` for virtual and DAHDI, `linear` for ALSA).
    pub law: Law,
    /// Channel numbers of the span.
    pub channels: ChannelRange,
    /// Virtual only: name of the partner span wired back to back with this one.
    #[serde(rename = "loop", default)]
    pub loop_with: Option<String>,
    /// Virtual only: expose each channel as a Unix datagram socket (see `TAP.md`).
    #[serde(default)]
    pub tap: bool,
    /// Directory of the tap sockets (`<tap_dir>/<name>-<channel>.sock`).
    #[serde(default)]
    pub tap_dir: Option<PathBuf>,
    /// DAHDI: channel selector device (default `/dev/dahdi/channel`); ALSA: playback PCM name.
    #[serde(default)]
    pub device: Option<String>,
    /// ALSA: capture PCM name (defaults to `device`).
    #[serde(default)]
    pub capture_device: Option<String>,
    /// DAHDI: DAHDI channel number of the span's first channel.
    #[serde(default)]
    pub dahdi_first_channel: Option<u32>,
}

/// Default DAHDI channel selector device.
pub const DAHDI_CHANNEL_DEVICE: &str = "/dev/dahdi/channel";

impl SpanConfig {
    /// A virtual span with the given name, law and channel count, not yet paired.
    pub fn virtual_span(name: &str, law: Law, channels: u16) -> Self {
        SpanConfig {
            kind: SpanKind::Virtual,
            name: name.to_owned(),
            law,
            channels: ChannelRange {
                first: 1,
                last: channels.max(1),
            },
            loop_with: None,
            tap: false,
            tap_dir: None,
            device: None,
            capture_device: None,
            dahdi_first_channel: None,
        }
    }

    /// A virtual E1 span: 30 A-law channels.
    pub fn virtual_e1(name: &str) -> Self {
        Self::virtual_span(name, Law::Alaw, 30)
    }

    /// A virtual T1 span: 24 µ-law channels.
    pub fn virtual_t1(name: &str) -> Self {
        Self::virtual_span(name, Law::Ulaw, 24)
    }

    /// The embedded default: `e1-1` ↔ `e1-2` and `t1-1` ↔ `t1-2`, each pair back to back.
    pub fn default_virtual() -> Vec<SpanConfig> {
        let pair = |mk: fn(&str) -> SpanConfig, a: &str, b: &str| {
            let mut x = mk(a);
            let mut y = mk(b);
            x.loop_with = Some(b.to_owned());
            y.loop_with = Some(a.to_owned());
            [x, y]
        };
        let mut v = Vec::with_capacity(4);
        v.extend(pair(Self::virtual_e1, "e1-1", "e1-2"));
        v.extend(pair(Self::virtual_t1, "t1-1", "t1-2"));
        v
    }

    /// Checks the fields that make sense for `kind` on their own (pairing is checked when
    /// the spans are built together).
    pub fn validate(&self) -> Result<(), SetupError> {
        let bad = |m: String| Err(SetupError::Config(format!("span {:?}: {m}", self.name)));
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("name must be non-empty [a-z0-9-]".into());
        }
        match self.kind {
            SpanKind::Virtual | SpanKind::Dahdi if self.law == Law::Linear => {
                return bad("virtual and dahdi spans carry alaw or ulaw".into());
            }
            SpanKind::Alsa if self.law != Law::Linear => {
                return bad("alsa spans are linear".into());
            }
            _ => {}
        }
        if self.kind != SpanKind::Virtual && (self.tap || self.loop_with.is_some()) {
            return bad("loop and tap are for virtual spans".into());
        }
        if self.tap && self.loop_with.is_some() {
            return bad("a span is either looped or tapped, not both".into());
        }
        if self.tap && self.tap_dir.is_none() {
            return bad("tap = true needs tap_dir".into());
        }
        if self.kind == SpanKind::Dahdi && self.dahdi_first_channel.is_none() {
            return bad("dahdi spans need dahdi_first_channel".into());
        }
        if self.kind == SpanKind::Alsa {
            if self.device.is_none() {
                return bad("alsa spans need device".into());
            }
            if self.channels.len() != 1 {
                return bad("an alsa span is one channel".into());
            }
        }
        Ok(())
    }

    /// Endpoint name prefix: `ds/<name>` or `aaln`.
    pub fn endpoint_prefix(&self) -> String {
        match self.kind {
            SpanKind::Alsa => "aaln".to_owned(),
            _ => format!("ds/{}", self.name),
        }
    }

    /// Endpoint local name of channel number `channel` (`ds/e1-1/7`, `aaln/1`).
    pub fn endpoint_name(&self, channel: u16) -> String {
        format!("{}/{}", self.endpoint_prefix(), channel)
    }

    /// If `endpoint` (a local name, case-insensitive) is one of this span's channels,
    /// its 0-based index.
    pub fn match_endpoint(&self, endpoint: &str) -> Option<usize> {
        let (prefix, chan) = endpoint.rsplit_once('/')?;
        let ok = match self.kind {
            SpanKind::Alsa => prefix.eq_ignore_ascii_case("aaln"),
            _ => {
                let (ds, name) = prefix.split_once('/')?;
                ds.eq_ignore_ascii_case("ds") && name.eq_ignore_ascii_case(&self.name)
            }
        };
        if !ok || chan.is_empty() || !chan.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.channels.index_of(chan.parse().ok()?)
    }

    /// Tap socket path of channel number `channel`, when tapped.
    pub fn tap_path(&self, channel: u16) -> Option<PathBuf> {
        let dir = self.tap_dir.as_ref()?;
        Some(dir.join(format!("{}-{}.sock", self.name, channel)))
    }
}

/// The TDM section of the gateway configuration: frame size and spans.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdmConfig {
    /// Frame duration in ms (default 20 → 160 samples).
    #[serde(default = "default_ptime")]
    pub ptime_ms: u32,
    /// Spans (`[[span]]` tables). Empty means [`SpanConfig::default_virtual`].
    #[serde(default, rename = "span")]
    pub spans: Vec<SpanConfig>,
}

fn default_ptime() -> u32 {
    20
}

impl Default for TdmConfig {
    fn default() -> Self {
        TdmConfig {
            ptime_ms: default_ptime(),
            spans: SpanConfig::default_virtual(),
        }
    }
}

impl TdmConfig {
    /// Samples per frame (`8 · ptime_ms`), if ptime is one of 10, 20, 30, 40, 50, 60 ms.
    pub fn samples_per_frame(&self) -> Result<usize, SetupError> {
        match self.ptime_ms {
            10 | 20 | 30 | 40 | 50 | 60 => Ok(self.ptime_ms as usize * 8),
            p => Err(SetupError::Config(format!(
                "ptime_ms {p} (expected 10, 20, 30, 40, 50 or 60)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let doc = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| {
                l.strip_prefix("//!")
                    .unwrap_or(l)
                    .strip_prefix(' ')
                    .unwrap_or("")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c: TdmConfig = toml::from_str(&doc).unwrap();
        assert_eq!(c.ptime_ms, 20);
        assert_eq!(c.spans.len(), 4);
        assert_eq!(c.spans[0].loop_with.as_deref(), Some("e1-2"));
        assert_eq!(c.spans[0].channels.len(), 30);
        assert!(c.spans[1].tap);
        assert_eq!(
            c.spans[1].tap_path(7).unwrap(),
            PathBuf::from("/run/mgw/tap/e1-2-7.sock")
        );
        assert_eq!(c.spans[2].kind, SpanKind::Dahdi);
        assert_eq!(c.spans[3].channels, ChannelRange::new(1, 1).unwrap());
        for s in &c.spans {
            s.validate().unwrap();
        }
    }

    #[test]
    fn endpoint_names_map_both_ways() {
        let e1 = SpanConfig::virtual_e1("e1-1");
        assert_eq!(e1.endpoint_name(7), "ds/e1-1/7");
        assert_eq!(e1.match_endpoint("ds/e1-1/7"), Some(6));
        assert_eq!(e1.match_endpoint("DS/E1-1/30"), Some(29));
        assert_eq!(e1.match_endpoint("ds/e1-1/31"), None);
        assert_eq!(e1.match_endpoint("ds/e1-1/0"), None);
        assert_eq!(e1.match_endpoint("ds/e1-1/+7"), None);
        assert_eq!(e1.match_endpoint("ds/e1-2/7"), None);
        assert_eq!(e1.match_endpoint("aaln/1"), None);
        assert_eq!(e1.match_endpoint("ds/e1-1/99999999999"), None);
        let mut a = SpanConfig::virtual_span("snd", Law::Linear, 1);
        a.kind = SpanKind::Alsa;
        a.device = Some("null".into());
        a.validate().unwrap();
        assert_eq!(a.endpoint_name(1), "aaln/1");
        assert_eq!(a.match_endpoint("aaln/1"), Some(0));
        assert_eq!(a.match_endpoint("aaln/2"), None);
    }

    #[test]
    fn rejects_inconsistent_spans() {
        let mut s = SpanConfig::virtual_e1("e1-1");
        s.law = Law::Linear;
        assert!(s.validate().is_err());
        let mut s = SpanConfig::virtual_e1("E1 1");
        assert!(s.validate().is_err());
        s.name = "e1-1".into();
        s.tap = true;
        assert!(s.validate().is_err(), "tap without tap_dir");
        s.tap_dir = Some("/tmp".into());
        s.validate().unwrap();
        s.loop_with = Some("e1-2".into());
        assert!(s.validate().is_err(), "tap and loop");
        let mut d = SpanConfig::virtual_t1("t1-1");
        d.kind = SpanKind::Dahdi;
        assert!(d.validate().is_err(), "dahdi without first channel");
        assert!("5-2".parse::<ChannelRange>().is_err());
        assert!("0-2".parse::<ChannelRange>().is_err());
        assert!("x".parse::<ChannelRange>().is_err());
        assert!(toml::from_str::<SpanConfig>(
            "kind='virtual'\nname='a'\nlaw='alaw'\nchannels='1-2'\nbogus=1"
        )
        .is_err());
        let c = TdmConfig {
            ptime_ms: 25,
            spans: vec![],
        };
        assert!(c.samples_per_frame().is_err());
        assert_eq!(TdmConfig::default().samples_per_frame().unwrap(), 160);
    }
}
