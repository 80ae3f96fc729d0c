//! The sample encoding of a channel: A-law, µ-law (both ITU-T G.711) or 16-bit linear.

use mgw_media::codec::g711::{self, G711Law};
use serde::Deserialize;

/// How a channel carries its 8 kHz samples on the wire or bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Law {
    /// G.711 A-law, one byte per sample (E1 spans).
    #[serde(alias = "a-law", alias = "pcma")]
    Alaw,
    /// G.711 µ-law, one byte per sample (T1 spans).
    #[serde(alias = "mulaw", alias = "u-law", alias = "pcmu")]
    Ulaw,
    /// Signed 16-bit linear samples (audio devices).
    #[serde(alias = "s16", alias = "l16")]
    Linear,
}

impl Law {
    /// The G.711 law, or `None` for [`Law::Linear`].
    pub fn g711(self) -> Option<G711Law> {
        match self {
            Law::Alaw => Some(G711Law::ALaw),
            Law::Ulaw => Some(G711Law::MuLaw),
            Law::Linear => None,
        }
    }

    /// The code a companded channel sends when it is silent (the code of linear 0:
    /// `0xD5` for A-law, `0xFF` for µ-law). Linear silence is 0, so this returns 0 for it.
    pub fn silence_byte(self) -> u8 {
        match self {
            Law::Alaw => g711::alaw_encode(0),
            Law::Ulaw => g711::ulaw_encode(0),
            Law::Linear => 0,
        }
    }

    /// Encodes `min(pcm.len(), out.len())` samples into law codes; returns how many.
    /// For [`Law::Linear`] nothing is encoded and 0 is returned.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) -> usize {
        match self.g711() {
            Some(l) => g711::encode_slice(l, pcm, out),
            None => 0,
        }
    }

    /// Decodes `min(codes.len(), out.len())` law codes to linear; returns how many.
    /// For [`Law::Linear`] nothing is decoded and 0 is returned.
    pub fn decode(self, codes: &[u8], out: &mut [i16]) -> usize {
        match self.g711() {
            Some(l) => g711::decode_slice(l, codes, out),
            None => 0,
        }
    }

    /// Converts codes of law `self` into codes of law `to` (A↔µ by the G.711 tables, a plain
    /// copy when equal); returns how many. Either side linear converts nothing and returns 0.
    pub fn transcode(self, to: Law, codes: &[u8], out: &mut [u8]) -> usize {
        match (self.g711(), to.g711()) {
            (Some(a), Some(b)) => g711::transcode_slice(a, b, codes, out),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_codes_are_the_g711_idle_codes() {
        assert_eq!(Law::Alaw.silence_byte(), 0xD5);
        assert_eq!(Law::Ulaw.silence_byte(), 0xFF);
        assert_eq!(Law::Alaw.decode(&[0xD5], &mut [1]), 1);
        let mut x = [7i16];
        Law::Ulaw.decode(&[0xFF], &mut x);
        assert_eq!(x[0], 0);
    }

    #[test]
    fn transcode_between_laws_keeps_the_level() {
        let pcm = [1000i16, -1000, 8000, -30000];
        let mut a = [0u8; 4];
        Law::Alaw.encode(&pcm, &mut a);
        let mut u = [0u8; 4];
        assert_eq!(Law::Alaw.transcode(Law::Ulaw, &a, &mut u), 4);
        let mut back = [0i16; 4];
        Law::Ulaw.decode(&u, &mut back);
        for (x, y) in pcm.iter().zip(back) {
            let err = (i32::from(*x) - i32::from(y)).abs();
            assert!(err <= i32::from(x.unsigned_abs()) / 8 + 64, "{x} -> {y}");
        }
        assert_eq!(Law::Linear.encode(&pcm, &mut a), 0);
    }

    #[test]
    fn deserializes_lowercase_names_and_aliases() {
        #[derive(Deserialize)]
        struct W {
            law: Law,
        }
        let w: W = toml::from_str("law = \"alaw\"").unwrap();
        assert_eq!(w.law, Law::Alaw);
        let w: W = toml::from_str("law = \"mulaw\"").unwrap();
        assert_eq!(w.law, Law::Ulaw);
        assert!(toml::from_str::<W>("law = \"gsm\"").is_err());
    }
}
