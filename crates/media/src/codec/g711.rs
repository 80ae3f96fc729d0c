//! ITU-T G.711 A-law and µ-law, by table.
//!
//! Decoding is one lookup in a 256-entry table. Encoding is one lookup in a table indexed by
//! the input's significant bits: µ-law quantises a 14-bit signal, so its table has 16 384
//! entries indexed by `x >> 2`; A-law quantises a 13-bit signal, so its table has 8 192
//! entries indexed by `x >> 3` (24 KiB together, against 128 KiB for two full 64 Ki tables;
//! the `codecs` bench measures both this and the computed segment search). The arithmetic
//! shift of a negative input selects the same code as the one's complement rule G.711 uses
//! for negative values, because each 4- (or 8-) sample block lies inside one quantisation
//! interval; `tests::encode_tables_match_segment_search` checks every `i16`.
//!
//! All tables are built at compile time from the G.711 formulas:
//! - µ-law: a code `c` is stored inverted; with `e = (!c >> 4) & 7` and `m = !c & 15` the
//!   14-bit magnitude is `((2m + 33) << e) - 33` (×4 for 16-bit), sign bit set = positive.
//! - A-law: the code is stored with even bits inverted (`^ 0x55`); with `e`, `m` its segment
//!   and mantissa the 16-bit magnitude is `16m + 8` for `e = 0`, else `(16(m + 16) + 8) << (e - 1)`.
//!
//! The A-law↔µ-law tables ([`ULAW_TO_ALAW`], [`ALAW_TO_ULAW`]) convert code to code without
//! going through linear PCM at run time, in the manner of G.711 Tables 3 and 4: µ→A picks the
//! A-law code of the µ-law level (keeping the sign of the µ-law zeros); A→µ picks, among the
//! µ-law codes that convert back to the same A-law code, the one nearest the A-law level, so
//! `a → µ → a` is exact for every A-law code that is the image of some µ-law code (A-law is
//! denser than µ-law between 256 and 1024, where a few A-law codes have no µ-law twin).

use super::{silence, CodecError, CodecKind, Decoder, Encoder};

/// Which G.711 companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// µ-law (PCMU, RTP payload type 0; North America, Japan).
    MuLaw,
    /// A-law (PCMA, RTP payload type 8; Europe and most of the world).
    ALaw,
}

const fn ulaw_level(code: u8) -> i16 {
    let c = !code;
    let e = (c >> 4) & 7;
    let m = (c & 15) as i32;
    let mag = (((2 * m + 33) << e) - 33) * 4;
    if code & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

const fn alaw_level(code: u8) -> i16 {
    let c = code ^ 0x55;
    let e = ((c >> 4) & 7) as i32;
    let m = (c & 15) as i32;
    let mag = if e == 0 {
        16 * m + 8
    } else {
        (16 * (m + 16) + 8) << (e - 1)
    };
    if c & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

/// µ-law encoding by segment search (G.711 formula); the tables are built from this.
pub const fn ulaw_encode_computed(x: i16) -> u8 {
    let x = x as i32;
    // One's complement for negatives, then drop to 14 bits and add the bias of 33.
    let mag = if x < 0 { !x } else { x };
    let mut biased = (mag >> 2) + 33;
    if biased > 0x1FFF {
        biased = 0x1FFF;
    }
    // Segment = bit length of (biased >> 6): 0..=7.
    let e = 32 - ((biased >> 6) as u32).leading_zeros();
    let m = (biased >> (e + 1)) & 15;
    let body = 0x7F ^ (((e as i32) << 4) | m) as u8;
    if x >= 0 {
        body | 0x80
    } else {
        body
    }
}

/// A-law encoding by segment search (G.711 formula); the tables are built from this.
pub const fn alaw_encode_computed(x: i16) -> u8 {
    let x = x as i32;
    let mag = (if x < 0 { !x } else { x }) >> 4; // 0..=2047
    let body = if mag < 16 {
        mag
    } else {
        // Bit length of mag is 5..=11 -> segment 1..=7.
        let e = 32 - (mag as u32).leading_zeros() - 4;
        let m = (mag >> (e - 1)) & 15;
        ((e as i32) << 4) | m
    };
    let signed = if x >= 0 { body | 0x80 } else { body };
    (signed as u8) ^ 0x55
}

const fn build_decode(law: G711Law) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match law {
            G711Law::MuLaw => ulaw_level(i as u8),
            G711Law::ALaw => alaw_level(i as u8),
        };
        i += 1;
    }
    t
}

/// µ-law code → linear 16-bit sample (G.711 reconstruction levels, ±32124 full scale).
pub static ULAW_TO_LINEAR: [i16; 256] = build_decode(G711Law::MuLaw);
/// A-law code → linear 16-bit sample (G.711 reconstruction levels, ±32256 full scale).
pub static ALAW_TO_LINEAR: [i16; 256] = build_decode(G711Law::ALaw);

const ULAW_ENC_LEN: usize = 1 << 14;
const ALAW_ENC_LEN: usize = 1 << 13;

const fn build_ulaw_encode() -> [u8; ULAW_ENC_LEN] {
    let mut t = [0u8; ULAW_ENC_LEN];
    let mut i = 0;
    while i < ULAW_ENC_LEN {
        let x = ((i as i32 - (ULAW_ENC_LEN as i32 / 2)) << 2) as i16;
        t[i] = ulaw_encode_computed(x);
        i += 1;
    }
    t
}

const fn build_alaw_encode() -> [u8; ALAW_ENC_LEN] {
    let mut t = [0u8; ALAW_ENC_LEN];
    let mut i = 0;
    while i < ALAW_ENC_LEN {
        let x = ((i as i32 - (ALAW_ENC_LEN as i32 / 2)) << 3) as i16;
        t[i] = alaw_encode_computed(x);
        i += 1;
    }
    t
}

static LINEAR14_TO_ULAW: [u8; ULAW_ENC_LEN] = build_ulaw_encode();
static LINEAR13_TO_ALAW: [u8; ALAW_ENC_LEN] = build_alaw_encode();

const fn build_u2a() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut u = 0;
    while u < 256 {
        t[u] = if u == 0x7F {
            // µ-law negative zero keeps its sign: the smallest negative A-law level.
            0x55
        } else {
            alaw_encode_computed(ulaw_level(u as u8))
        };
        u += 1;
    }
    t
}

const fn build_a2u(u2a: &[u8; 256]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut a = 0;
    while a < 256 {
        let target = alaw_level(a as u8) as i32;
        let mut best = ulaw_encode_computed(target as i16);
        let mut best_err = i32::MAX;
        let mut u = 0;
        while u < 256 {
            if u2a[u] as usize == a {
                let err = (ulaw_level(u as u8) as i32 - target).abs();
                if err < best_err {
                    best_err = err;
                    best = u as u8;
                }
            }
            u += 1;
        }
        t[a] = best;
        a += 1;
    }
    t
}

/// µ-law code → A-law code (G.711 Table 3 style transcoding).
pub static ULAW_TO_ALAW: [u8; 256] = build_u2a();
/// A-law code → µ-law code (G.711 Table 4 style transcoding).
pub static ALAW_TO_ULAW: [u8; 256] = build_a2u(&ULAW_TO_ALAW);

/// Encodes one sample to µ-law.
#[inline]
pub fn ulaw_encode(x: i16) -> u8 {
    // (x >> 2) + 8192 is in 0..16384 for every i16, so the index is always in bounds.
    LINEAR14_TO_ULAW[((x >> 2) as i32 + (ULAW_ENC_LEN as i32 / 2)) as usize]
}

/// Encodes one sample to A-law.
#[inline]
pub fn alaw_encode(x: i16) -> u8 {
    // (x >> 3) + 4096 is in 0..8192 for every i16, so the index is always in bounds.
    LINEAR13_TO_ALAW[((x >> 3) as i32 + (ALAW_ENC_LEN as i32 / 2)) as usize]
}

/// Decodes one µ-law code.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TO_LINEAR[code as usize]
}

/// Decodes one A-law code.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

/// Encodes `min(pcm.len(), out.len())` samples with `law`; returns how many.
pub fn encode_slice(law: G711Law, pcm: &[i16], out: &mut [u8]) -> usize {
    let n = pcm.len().min(out.len());
    match law {
        G711Law::MuLaw => {
            for (o, &x) in out[..n].iter_mut().zip(&pcm[..n]) {
                *o = ulaw_encode(x);
            }
        }
        G711Law::ALaw => {
            for (o, &x) in out[..n].iter_mut().zip(&pcm[..n]) {
                *o = alaw_encode(x);
            }
        }
    }
    n
}

/// Decodes `min(codes.len(), out.len())` codes with `law`; returns how many.
pub fn decode_slice(law: G711Law, codes: &[u8], out: &mut [i16]) -> usize {
    let n = codes.len().min(out.len());
    let table = match law {
        G711Law::MuLaw => &ULAW_TO_LINEAR,
        G711Law::ALaw => &ALAW_TO_LINEAR,
    };
    for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
        *o = table[c as usize];
    }
    n
}

/// Converts `min(codes.len(), out.len())` codes from law `from` to the other law (or copies
/// them when `from == to`); returns how many.
pub fn transcode_slice(from: G711Law, to: G711Law, codes: &[u8], out: &mut [u8]) -> usize {
    let n = codes.len().min(out.len());
    let table = match (from, to) {
        (G711Law::MuLaw, G711Law::ALaw) => &ULAW_TO_ALAW,
        (G711Law::ALaw, G711Law::MuLaw) => &ALAW_TO_ULAW,
        _ => {
            out[..n].copy_from_slice(&codes[..n]);
            return n;
        }
    };
    for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
        *o = table[c as usize];
    }
    n
}

/// G.711 encoder (either law), by table.
#[derive(Debug, Clone)]
pub struct G711Encoder {
    law: G711Law,
}

impl G711Encoder {
    /// A new encoder for `law`.
    pub fn new(law: G711Law) -> Self {
        Self { law }
    }
}

impl Encoder for G711Encoder {
    fn kind(&self) -> CodecKind {
        match self.law {
            G711Law::MuLaw => CodecKind::Pcmu,
            G711Law::ALaw => CodecKind::Pcma,
        }
    }
    fn sample_rate(&self) -> u32 {
        8000
    }
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.is_empty() {
            return Err(CodecError::FrameSize { samples: 0 });
        }
        if out.len() < pcm.len() {
            return Err(CodecError::OutputTooSmall { needed: pcm.len() });
        }
        Ok(encode_slice(self.law, pcm, out))
    }
    fn max_payload_len(&self, samples: usize) -> usize {
        samples
    }
    fn reset(&mut self) {}
}

/// G.711 decoder (either law), by table. No concealment of its own.
#[derive(Debug, Clone)]
pub struct G711Decoder {
    law: G711Law,
    last_frame: usize,
}

impl G711Decoder {
    /// A new decoder for `law`.
    pub fn new(law: G711Law) -> Self {
        Self {
            law,
            last_frame: 160,
        }
    }
}

impl Decoder for G711Decoder {
    fn kind(&self) -> CodecKind {
        match self.law {
            G711Law::MuLaw => CodecKind::Pcmu,
            G711Law::ALaw => CodecKind::Pcma,
        }
    }
    fn sample_rate(&self) -> u32 {
        8000
    }
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        if out.len() < payload.len() {
            return Err(CodecError::OutputTooSmall {
                needed: payload.len(),
            });
        }
        if !payload.is_empty() {
            self.last_frame = payload.len();
        }
        Ok(decode_slice(self.law, payload, out))
    }
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        Ok(payload.len())
    }
    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        silence(self.last_frame, out)
    }
    fn has_native_plc(&self) -> bool {
        false
    }
    fn reset(&mut self) {
        self.last_frame = 160;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_values() {
        // G.711 µ-law: 0xFF and 0x7F are the two zeros, 0x80/0x00 the extremes.
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0x7E), -8);
        assert_eq!(ulaw_decode(0xF0), 120); // last level of the first segment
        assert_eq!(ulaw_decode(0xEF), 132); // first level of the second segment
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(32767), 0x80);
        assert_eq!(ulaw_encode(-32768), 0x00);
        assert_eq!(ulaw_encode(1000), 0xCE);
        assert_eq!(ulaw_decode(0xCE), 988);
    }

    #[test]
    fn alaw_reference_values() {
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_decode(0xD4), 24);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(32767), 0xAA);
        assert_eq!(alaw_encode(-32768), 0x2A);
        assert_eq!(alaw_encode(1000), 0xFA);
        assert_eq!(alaw_decode(0xFA), 1008);
    }

    #[test]
    fn encode_tables_match_segment_search() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(x), ulaw_encode_computed(x), "µ-law {x}");
            assert_eq!(alaw_encode(x), alaw_encode_computed(x), "A-law {x}");
        }
    }

    /// Quantisation step (16-bit units) of the segment a code lies in.
    fn ulaw_step(code: u8) -> i32 {
        8 << ((!code >> 4) & 7)
    }

    fn alaw_step(code: u8) -> i32 {
        let e = ((code ^ 0x55) >> 4) & 7;
        16 << e.saturating_sub(1)
    }

    #[test]
    fn decode_of_encode_within_half_step() {
        let (umax, amax) = (i32::from(ulaw_decode(0x80)), i32::from(alaw_decode(0xAA)));
        for x in i16::MIN..=i16::MAX {
            let xi = i32::from(x);
            let c = ulaw_encode(x);
            let err = (i32::from(ulaw_decode(c)) - xi).abs();
            if xi.abs() <= umax + ulaw_step(c) / 2 {
                assert!(err <= ulaw_step(c) / 2, "µ-law {x}: err {err}");
            } else {
                assert_eq!(i32::from(ulaw_decode(c)).abs(), umax, "µ-law saturates {x}");
            }
            let c = alaw_encode(x);
            let err = (i32::from(alaw_decode(c)) - xi).abs();
            if xi.abs() <= amax + alaw_step(c) / 2 {
                assert!(err <= alaw_step(c) / 2, "A-law {x}: err {err}");
            } else {
                assert_eq!(i32::from(alaw_decode(c)).abs(), amax, "A-law saturates {x}");
            }
        }
    }

    #[test]
    fn encode_of_decode_is_identity() {
        for c in 0..=255u8 {
            if c != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(c)), c, "µ-law code {c:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law code {c:#04x}");
        }
        // The µ-law negative zero decodes to 0, which encodes as the positive zero.
        assert_eq!(ulaw_encode(ulaw_decode(0x7F)), 0xFF);
    }

    #[test]
    fn levels_are_monotonic_and_symmetric() {
        let mut u: Vec<i16> = ULAW_TO_LINEAR.to_vec();
        let mut a: Vec<i16> = ALAW_TO_LINEAR.to_vec();
        u.sort_unstable();
        a.sort_unstable();
        u.dedup();
        a.dedup();
        assert_eq!(u.len(), 255, "µ-law has 255 distinct levels");
        assert_eq!(a.len(), 256, "A-law has 256 distinct levels");
        for c in 0..128u8 {
            assert_eq!(ulaw_decode(c), -ulaw_decode(c | 0x80));
            assert_eq!(alaw_decode(c), -alaw_decode(c | 0x80));
        }
    }

    #[test]
    fn transcoding_tables() {
        // µ→A is the A-law code of the µ-law level.
        for u in 0..=255u8 {
            let a = ULAW_TO_ALAW[u as usize];
            if u != 0x7F {
                assert_eq!(a, alaw_encode(ulaw_decode(u)));
            }
            let err = (i32::from(alaw_decode(a)) - i32::from(ulaw_decode(u))).abs();
            assert!(
                err <= alaw_step(a) / 2 + 8,
                "u {u:#04x} -> a {a:#04x}: {err}"
            );
        }
        assert_eq!(ULAW_TO_ALAW[0xFF], 0xD5);
        assert_eq!(ULAW_TO_ALAW[0x7F], 0x55);
        // a→µ→a is exact wherever the A-law code has a µ-law preimage.
        let mut exact = 0;
        for a in 0..=255u8 {
            let defined = ULAW_TO_ALAW.contains(&a);
            let back = ULAW_TO_ALAW[ALAW_TO_ULAW[a as usize] as usize];
            if defined {
                assert_eq!(back, a, "a {a:#04x}");
                exact += 1;
            }
            let u = ALAW_TO_ULAW[a as usize];
            let err = (i32::from(alaw_decode(a)) - i32::from(ulaw_decode(u))).abs();
            assert!(err <= alaw_step(a), "a {a:#04x} -> u {u:#04x}: {err}");
        }
        // A-law is denser than µ-law only between 256 and 1024: a minority of codes.
        println!("{exact} of 256 A-law codes have a µ-law preimage and round-trip");
        assert_eq!(exact, 240);
        // Slices.
        let mut out = [0u8; 3];
        assert_eq!(
            transcode_slice(G711Law::MuLaw, G711Law::ALaw, &[0xFF, 0x7F, 0x80], &mut out),
            3
        );
        assert_eq!(out, [0xD5, 0x55, ULAW_TO_ALAW[0x80]]);
        assert_eq!(
            transcode_slice(G711Law::ALaw, G711Law::ALaw, &[1, 2], &mut out),
            2
        );
        assert_eq!(&out[..2], &[1, 2]);
    }

    #[test]
    fn slices_stop_at_shorter() {
        let mut codes = [0u8; 4];
        assert_eq!(
            encode_slice(G711Law::MuLaw, &[0, 8, -8, 100, 5], &mut codes),
            4
        );
        assert_eq!(codes[..3], [0xFF, 0xFE, 0x7E]);
        let mut pcm = [0i16; 2];
        assert_eq!(
            decode_slice(G711Law::ALaw, &[0xD5, 0x55, 0xD4], &mut pcm),
            2
        );
        assert_eq!(pcm, [8, -8]);
    }
}
