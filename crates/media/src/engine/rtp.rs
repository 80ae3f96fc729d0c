//! The few RTP header operations the engine needs (RFC 3550 §5.1): a checked parse that
//! locates the payload (skipping CSRCs, the header extension and padding), and writing the
//! fixed 12-byte header of the packets we send (no CSRC, no extension, no padding).

/// Length of the fixed RTP header, and of every header the engine writes.
pub const HEADER_LEN: usize = 12;

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the header it announces.
    #[error("truncated RTP packet")]
    Truncated,
    /// The version field is not 2.
    #[error("RTP version {0} is not 2")]
    Version(u8),
    /// The padding count is zero or longer than the payload.
    #[error("invalid RTP padding")]
    Padding,
}

/// The fields of an RTP header the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Parses `packet`; returns the header and the payload (without padding).
    pub fn parse(packet: &[u8]) -> Result<(Self, &[u8]), RtpError> {
        let fixed: &[u8; HEADER_LEN] = packet
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(RtpError::Truncated)?;
        let version = fixed[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let padding = fixed[0] & 0x20 != 0;
        let extension = fixed[0] & 0x10 != 0;
        let csrc_count = usize::from(fixed[0] & 0x0F);
        let mut start = HEADER_LEN + 4 * csrc_count;
        if extension {
            let ext = packet.get(start..start + 4).ok_or(RtpError::Truncated)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            start += 4 + 4 * words;
        }
        let mut body = packet.get(start..).ok_or(RtpError::Truncated)?;
        if padding {
            let pad = usize::from(*body.last().ok_or(RtpError::Padding)?);
            if pad == 0 || pad > body.len() {
                return Err(RtpError::Padding);
            }
            body = &body[..body.len() - pad];
        }
        let header = RtpHeader {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7F,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        };
        Ok((header, body))
    }

    /// Writes the 12-byte header (V=2, no padding/extension/CSRC) into `out[..12]`.
    /// Returns `None` if `out` is shorter than [`HEADER_LEN`].
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        let out = out.get_mut(..HEADER_LEN)?;
        out[0] = 0x80;
        out[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7F);
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Some(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse() {
        let h = RtpHeader {
            marker: true,
            payload_type: 101,
            sequence: 0xFFFE,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x0102_0304,
        };
        let mut buf = [0u8; 16];
        assert_eq!(h.write(&mut buf), Some(12));
        buf[12..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            &buf[..12],
            &[0x80, 0xE5, 0xFF, 0xFE, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4]
        );
        let (p, payload) = RtpHeader::parse(&buf).unwrap();
        assert_eq!(p, h);
        assert_eq!(payload, &[1, 2, 3, 4]);
        assert_eq!(h.write(&mut [0u8; 11]), None);
    }

    #[test]
    fn csrc_extension_and_padding_are_skipped() {
        // 2 CSRCs, extension of 1 word, 2 bytes of padding.
        let mut p = vec![0xB2, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[0xAA; 8]); // CSRCs
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // extension
        p.extend_from_slice(&[7, 8, 9, 0, 2]); // payload + padding (last byte = 2)
        let (h, payload) = RtpHeader::parse(&p).unwrap();
        assert_eq!((h.sequence, h.timestamp, h.ssrc), (1, 2, 3));
        assert_eq!(payload, &[7, 8, 9]);
    }

    #[test]
    fn malformed_never_panics() {
        assert_eq!(RtpHeader::parse(&[0x80; 11]), Err(RtpError::Truncated));
        assert_eq!(RtpHeader::parse(&[0x40; 12]), Err(RtpError::Version(1)));
        // CSRC count beyond the end.
        assert_eq!(RtpHeader::parse(&[0x8F; 20]), Err(RtpError::Truncated));
        // Extension header missing.
        assert_eq!(
            RtpHeader::parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Truncated)
        );
        // Padding: no payload, zero count, count too large.
        let mut p = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(RtpHeader::parse(&p[..12]), Err(RtpError::Padding));
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::Padding));
        p[13] = 3;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::Padding));
        p[13] = 2;
        assert_eq!(RtpHeader::parse(&p).map(|(_, b)| b.len()), Ok(0));
        // Exhaustive short inputs with every first byte.
        for b0 in 0..=255u8 {
            for len in 0..40usize {
                let mut v = vec![0xFFu8; len];
                if let Some(x) = v.first_mut() {
                    *x = b0;
                }
                let _ = RtpHeader::parse(&v);
            }
        }
    }
}
