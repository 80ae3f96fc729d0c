//! L16: uncompressed 16-bit linear PCM in network (big-endian) byte order, RFC 3551 §4.5.11.
//! Mono at 8 or 16 kHz; the RTP clock equals the sample rate.

use super::{silence, CodecError, CodecKind, Decoder, Encoder};

fn check_rate(rate: u32) -> Result<u32, CodecError> {
    match rate {
        8000 | 16000 => Ok(rate),
        _ => Err(CodecError::Unsupported),
    }
}

/// L16 encoder: host `i16` → big-endian bytes.
#[derive(Debug, Clone)]
pub struct L16Encoder {
    rate: u32,
}

impl L16Encoder {
    /// A new encoder at 8000 or 16000 Hz.
    pub fn new(rate: u32) -> Result<Self, CodecError> {
        Ok(Self {
            rate: check_rate(rate)?,
        })
    }
}

impl Encoder for L16Encoder {
    fn kind(&self) -> CodecKind {
        CodecKind::L16 { rate: self.rate }
    }
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.is_empty() {
            return Err(CodecError::FrameSize { samples: 0 });
        }
        let needed = pcm
            .len()
            .checked_mul(2)
            .ok_or(CodecError::FrameSize { samples: pcm.len() })?;
        let dst = out
            .get_mut(..needed)
            .ok_or(CodecError::OutputTooSmall { needed })?;
        for (o, &s) in dst.chunks_exact_mut(2).zip(pcm) {
            o.copy_from_slice(&s.to_be_bytes());
        }
        Ok(needed)
    }
    fn max_payload_len(&self, samples: usize) -> usize {
        samples.saturating_mul(2)
    }
    fn reset(&mut self) {}
}

/// L16 decoder: big-endian bytes → host `i16`. No concealment of its own.
#[derive(Debug, Clone)]
pub struct L16Decoder {
    rate: u32,
    last_frame: usize,
}

impl L16Decoder {
    /// A new decoder at 8000 or 16000 Hz.
    pub fn new(rate: u32) -> Result<Self, CodecError> {
        let rate = check_rate(rate)?;
        Ok(Self {
            rate,
            last_frame: rate as usize / 50,
        })
    }
}

impl Decoder for L16Decoder {
    fn kind(&self) -> CodecKind {
        CodecKind::L16 { rate: self.rate }
    }
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let n = self.samples_in(payload)?;
        let dst = out
            .get_mut(..n)
            .ok_or(CodecError::OutputTooSmall { needed: n })?;
        for (o, b) in dst.iter_mut().zip(payload.chunks_exact(2)) {
            *o = i16::from_be_bytes([b[0], b[1]]);
        }
        if n > 0 {
            self.last_frame = n;
        }
        Ok(n)
    }
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        if payload.len() % 2 != 0 {
            return Err(CodecError::MalformedPayload);
        }
        Ok(payload.len() / 2)
    }
    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        silence(self.last_frame, out)
    }
    fn has_native_plc(&self) -> bool {
        false
    }
    fn reset(&mut self) {
        self.last_frame = self.rate as usize / 50;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_bytes() {
        let mut e = L16Encoder::new(8000).unwrap();
        let mut out = [0u8; 6];
        assert_eq!(e.encode(&[0x0102, -2, i16::MIN], &mut out), Ok(6));
        assert_eq!(out, [0x01, 0x02, 0xFF, 0xFE, 0x80, 0x00]);
        let mut d = L16Decoder::new(8000).unwrap();
        let mut pcm = [0i16; 3];
        assert_eq!(d.decode(&out, &mut pcm), Ok(3));
        assert_eq!(pcm, [0x0102, -2, i16::MIN]);
    }

    #[test]
    fn errors() {
        assert_eq!(L16Encoder::new(44100).err(), Some(CodecError::Unsupported));
        assert_eq!(L16Decoder::new(0).err(), Some(CodecError::Unsupported));
        let mut e = L16Encoder::new(16000).unwrap();
        assert_eq!(
            e.encode(&[1, 2, 3], &mut [0; 5]),
            Err(CodecError::OutputTooSmall { needed: 6 })
        );
        assert_eq!(
            e.encode(&[], &mut [0; 5]),
            Err(CodecError::FrameSize { samples: 0 })
        );
        let mut d = L16Decoder::new(16000).unwrap();
        assert_eq!(
            d.decode(&[1, 2, 3], &mut [0; 5]),
            Err(CodecError::MalformedPayload)
        );
        assert_eq!(
            d.decode(&[0; 12], &mut [0; 5]),
            Err(CodecError::OutputTooSmall { needed: 6 })
        );
        let mut out = [7i16; 400];
        assert_eq!(
            d.conceal(&mut out),
            Ok(320),
            "20 ms at 16 kHz before any packet"
        );
        assert!(out[..320].iter().all(|&s| s == 0));
        assert_eq!(out[320], 7);
    }
}
