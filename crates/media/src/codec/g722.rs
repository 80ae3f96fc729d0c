//! G.722 at 64 kbit/s (mode 1) through `ezk-g722`'s port of the SpanDSP codec.
//!
//! Audio is 16 kHz; every payload byte carries two samples (one low-band and one high-band
//! ADPCM code), so 20 ms = 320 samples = 160 bytes. The RTP clock is nonetheless 8000 Hz
//! (RFC 3551 §4.5.2): the timestamp advances by 160 per 20 ms.
//!
//! Known cost: `ezk-g722` returns a fresh `Vec` from each encode/decode call, so this codec,
//! unlike the others, allocates once per frame (the result is copied into the caller's buffer).

use ezk_g722::libg722::{decoder, encoder, Bitrate};

use super::{silence, CodecError, CodecKind, Decoder, Encoder};

/// G.722 encoder, 16 kHz mono in, 64 kbit/s out.
pub struct G722Encoder {
    inner: encoder::Encoder,
}

impl std::fmt::Debug for G722Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("G722Encoder")
    }
}

impl G722Encoder {
    /// A new encoder (64 kbit/s, unpacked, 16 kHz input).
    pub fn new() -> Self {
        Self {
            inner: encoder::Encoder::new(Bitrate::Mode1_64000, false, false),
        }
    }
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder for G722Encoder {
    fn kind(&self) -> CodecKind {
        CodecKind::G722
    }
    fn sample_rate(&self) -> u32 {
        16000
    }
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        // Two samples per byte: the frame must hold an even, non-zero number of samples.
        if pcm.is_empty() || pcm.len() % 2 != 0 {
            return Err(CodecError::FrameSize { samples: pcm.len() });
        }
        let needed = pcm.len() / 2;
        let dst = out
            .get_mut(..needed)
            .ok_or(CodecError::OutputTooSmall { needed })?;
        let bytes = self.inner.encode(pcm);
        if bytes.len() != needed {
            return Err(CodecError::FrameSize { samples: pcm.len() });
        }
        dst.copy_from_slice(&bytes);
        Ok(needed)
    }
    fn max_payload_len(&self, samples: usize) -> usize {
        samples.div_ceil(2)
    }
    fn reset(&mut self) {
        *self = Self::new();
    }
}

/// G.722 decoder, 64 kbit/s in, 16 kHz mono out. No concealment of its own.
pub struct G722Decoder {
    inner: decoder::Decoder,
    last_frame: usize,
}

impl std::fmt::Debug for G722Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G722Decoder")
            .field("last_frame", &self.last_frame)
            .finish()
    }
}

impl G722Decoder {
    /// A new decoder (64 kbit/s, unpacked, 16 kHz output).
    pub fn new() -> Self {
        Self {
            inner: decoder::Decoder::new(Bitrate::Mode1_64000, false, false),
            last_frame: 320,
        }
    }
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for G722Decoder {
    fn kind(&self) -> CodecKind {
        CodecKind::G722
    }
    fn sample_rate(&self) -> u32 {
        16000
    }
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let n = self.samples_in(payload)?;
        let dst = out
            .get_mut(..n)
            .ok_or(CodecError::OutputTooSmall { needed: n })?;
        if n == 0 {
            return Ok(0);
        }
        let pcm = self.inner.decode(payload);
        if pcm.len() != n {
            return Err(CodecError::MalformedPayload);
        }
        dst.copy_from_slice(&pcm);
        self.last_frame = n;
        Ok(n)
    }
    fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        payload
            .len()
            .checked_mul(2)
            .ok_or(CodecError::MalformedPayload)
    }
    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        silence(self.last_frame, out)
    }
    fn has_native_plc(&self) -> bool {
        false
    }
    fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes() {
        let mut e = G722Encoder::new();
        let mut out = [0u8; 160];
        assert_eq!(
            e.encode(&[0; 319], &mut out),
            Err(CodecError::FrameSize { samples: 319 })
        );
        assert_eq!(
            e.encode(&[], &mut out),
            Err(CodecError::FrameSize { samples: 0 })
        );
        assert_eq!(
            e.encode(&[0; 322], &mut out),
            Err(CodecError::OutputTooSmall { needed: 161 })
        );
        assert_eq!(e.encode(&[0; 320], &mut out), Ok(160));
        let mut d = G722Decoder::new();
        let mut pcm = [0i16; 320];
        assert_eq!(
            d.decode(&[0; 161], &mut pcm),
            Err(CodecError::OutputTooSmall { needed: 322 })
        );
        assert_eq!(d.decode(&out, &mut pcm), Ok(320));
        assert_eq!(d.decode(&out[..80], &mut pcm), Ok(160));
        assert_eq!(d.conceal(&mut pcm), Ok(160));
        assert_eq!(d.decode(&[], &mut pcm), Ok(0));
    }

    #[test]
    fn any_bytes_decode_without_panic() {
        let mut d = G722Decoder::new();
        let payload: Vec<u8> = (0..=255u8).collect();
        let mut pcm = [0i16; 512];
        assert_eq!(d.decode(&payload, &mut pcm), Ok(512));
    }
}
