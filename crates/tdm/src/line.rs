//! Analog line signalling (the MGCP L package on the line side): hook events from the
//! line, ringing toward it.
//!
//! [`LineSignalling`] is implemented by every channel type. Tap channels carry it as short
//! ASCII control datagrams beside the audio frames (see [`TapControl`] and `TAP.md`); DAHDI
//! channels map hook events and use the `DAHDI_HOOK` ioctl; virtual and ALSA channels have
//! no signalling.

use crate::error::TdmError;

/// A hook-state change reported by a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookEvent {
    /// The line went off hook (L/hd).
    OffHook,
    /// The line went on hook (L/hu).
    OnHook,
    /// A hook flash (L/hf).
    Flash,
}

/// Line signalling of a channel. Non-blocking; events are collected while the channel is
/// read (once per frame), so the owner polls them after its frame pass.
pub trait LineSignalling {
    /// Whether this channel carries line signalling at all. When `false`,
    /// [`poll_line_event`](Self::poll_line_event) never returns an event and
    /// [`set_ringing`](Self::set_ringing) fails with [`TdmError::NoSignalling`].
    fn supports_signalling(&self) -> bool {
        false
    }

    /// The next hook event seen on the line, oldest first.
    fn poll_line_event(&mut self) -> Option<HookEvent> {
        None
    }

    /// Starts (`true`) or stops (`false`) ringing the line.
    fn set_ringing(&mut self, on: bool) -> Result<(), TdmError> {
        let _ = on;
        Err(TdmError::NoSignalling)
    }
}

/// Longest control datagram on a tap socket, in bytes. Audio frames are at least 80
/// bytes (10 ms), so the two can never have the same length.
pub const TAP_CONTROL_MAX: usize = 15;

/// A control datagram of the tap protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapControl {
    /// Peer → mgw: `HOOK OFF`.
    HookOff,
    /// Peer → mgw: `HOOK ON`.
    HookOn,
    /// Peer → mgw: `FLASH`.
    Flash,
    /// mgw → peer: `RING ON`.
    RingOn,
    /// mgw → peer: `RING OFF`.
    RingOff,
}

/// How a datagram that is not exactly one audio frame was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapControlError {
    /// Not a control datagram: empty, longer than [`TAP_CONTROL_MAX`], not starting with
    /// an ASCII letter, or holding bytes other than printable ASCII and whitespace.
    NotControl,
    /// Shaped like a control datagram, but not a known command.
    Unknown,
}

impl TapControl {
    /// The exact bytes mgw sends for this message (no terminator).
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            TapControl::HookOff => b"HOOK OFF",
            TapControl::HookOn => b"HOOK ON",
            TapControl::Flash => b"FLASH",
            TapControl::RingOn => b"RING ON",
            TapControl::RingOff => b"RING OFF",
        }
    }

    /// The ringing command for `on`.
    pub fn ring(on: bool) -> TapControl {
        if on {
            TapControl::RingOn
        } else {
            TapControl::RingOff
        }
    }

    /// Parses a datagram that is not exactly one audio frame long: 1 to
    /// [`TAP_CONTROL_MAX`] bytes, first byte an ASCII letter, every byte printable ASCII
    /// or ASCII whitespace. Words are compared case-insensitively and may be separated
    /// (and followed) by any ASCII whitespace, so `hook off\n` is `HOOK OFF`.
    pub fn parse(datagram: &[u8]) -> Result<TapControl, TapControlError> {
        let shaped = !datagram.is_empty()
            && datagram.len() <= TAP_CONTROL_MAX
            && datagram[0].is_ascii_alphabetic()
            && datagram
                .iter()
                .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
        if !shaped {
            return Err(TapControlError::NotControl);
        }
        let mut words = datagram
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let first = words.next().unwrap_or_default();
        let second = words.next();
        if words.next().is_some() {
            return Err(TapControlError::Unknown);
        }
        let is = |w: &[u8], s: &str| w.eq_ignore_ascii_case(s.as_bytes());
        match second {
            None if is(first, "FLASH") => Ok(TapControl::Flash),
            Some(w) if is(first, "HOOK") && is(w, "OFF") => Ok(TapControl::HookOff),
            Some(w) if is(first, "HOOK") && is(w, "ON") => Ok(TapControl::HookOn),
            Some(w) if is(first, "RING") && is(w, "ON") => Ok(TapControl::RingOn),
            Some(w) if is(first, "RING") && is(w, "OFF") => Ok(TapControl::RingOff),
            _ => Err(TapControlError::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_words_parse_and_emit() {
        for c in [
            TapControl::HookOff,
            TapControl::HookOn,
            TapControl::Flash,
            TapControl::RingOn,
            TapControl::RingOff,
        ] {
            assert!(c.as_bytes().len() <= TAP_CONTROL_MAX);
            assert_eq!(TapControl::parse(c.as_bytes()), Ok(c));
        }
        assert_eq!(TapControl::parse(b"hook off\n"), Ok(TapControl::HookOff));
        assert_eq!(TapControl::parse(b"Hook  On\r\n"), Ok(TapControl::HookOn));
        assert_eq!(TapControl::parse(b"flash "), Ok(TapControl::Flash));
        assert_eq!(TapControl::ring(true), TapControl::RingOn);
        assert_eq!(TapControl::ring(false).as_bytes(), b"RING OFF");
    }

    #[test]
    fn non_control_and_unknown_datagrams() {
        use TapControlError::*;
        assert_eq!(TapControl::parse(b""), Err(NotControl));
        assert_eq!(TapControl::parse(&[1, 2, 3]), Err(NotControl));
        assert_eq!(TapControl::parse(b" HOOK OFF"), Err(NotControl));
        assert_eq!(TapControl::parse(b"HOOK OFF AND ON!"), Err(NotControl));
        assert_eq!(TapControl::parse(b"HOOK\xD5OFF"), Err(NotControl));
        assert_eq!(TapControl::parse(b"HOOK"), Err(Unknown));
        assert_eq!(TapControl::parse(b"HOOK UP"), Err(Unknown));
        assert_eq!(TapControl::parse(b"FLASH FLASH"), Err(Unknown));
        assert_eq!(TapControl::parse(b"HOOK OFF NOW"), Err(Unknown));
        assert_eq!(TapControl::parse(b"NORING"), Err(Unknown));
    }
}
