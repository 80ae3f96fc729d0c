//! The per-channel I/O contract shared by every backend.

use crate::error::TdmError;
use crate::law::Law;

/// Counters a channel keeps (plain integers, read by the owner for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelStats {
    /// Frames read that carried at least one sample from the line.
    pub frames_read: u64,
    /// Frames handed to the line.
    pub frames_written: u64,
    /// Reads that found nothing (the caller got silence).
    pub underruns: u64,
    /// Reads that found less than a frame (the rest was filled with silence).
    pub short_reads: u64,
    /// Frames the line could not take (device full, tap peer unknown or gone).
    pub dropped_writes: u64,
    /// Tap datagrams of the wrong size, dropped.
    pub bad_frames: u64,
    /// Device events seen (DAHDI).
    pub events: u64,
    /// Hook events reported by the line (tap control datagrams, DAHDI hook events).
    pub line_events: u64,
    /// Tap control datagrams ignored: shaped like one but not a known command, or a hook
    /// command that does not change the hook state (`HOOK OFF` while off hook, `FLASH`
    /// while on hook, ...).
    pub bad_control: u64,
}

/// One 8 kHz voice channel, driven one frame at a time by the dataplane worker that owns it.
///
/// A *frame* is [`samples_per_frame`](Self::samples_per_frame) samples (160 at 20 ms). Every
/// call is non-blocking. Reads always fill the whole buffer: what did not come from the line
/// is the law's silence, and the return value says how many samples did come from the line
/// (0 = nothing arrived, counted as an underrun).
pub trait ChannelIo {
    /// The channel's native encoding.
    fn law(&self) -> Law;

    /// Samples per frame.
    fn samples_per_frame(&self) -> usize;

    /// Reads one frame as linear PCM. `out.len()` must equal the frame size.
    fn read_frame(&mut self, out: &mut [i16]) -> Result<usize, TdmError>;

    /// Writes one frame of linear PCM. `pcm.len()` must equal the frame size.
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), TdmError>;

    /// Reads one frame as codes of [`law`](Self::law) (no conversion on A-law/µ-law
    /// channels). Linear channels return [`TdmError::Unsupported`].
    fn read_coded(&mut self, out: &mut [u8]) -> Result<usize, TdmError>;

    /// Writes one frame of codes of [`law`](Self::law). Linear channels return
    /// [`TdmError::Unsupported`].
    fn write_coded(&mut self, codes: &[u8]) -> Result<(), TdmError>;

    /// The channel's counters.
    fn stats(&self) -> ChannelStats;
}

/// Fails with [`TdmError::FrameSize`] unless `got == expected`.
#[inline]
pub(crate) fn check_len(expected: usize, got: usize) -> Result<(), TdmError> {
    if expected == got {
        Ok(())
    } else {
        Err(TdmError::FrameSize { expected, got })
    }
}

/// Implements the linear half of [`ChannelIo`] for a law-coded channel in terms of its coded
/// half, through a per-channel scratch buffer (allocated once at construction).
pub(crate) struct CodedScratch {
    buf: Vec<u8>,
}

impl CodedScratch {
    pub(crate) fn new(samples_per_frame: usize) -> Self {
        CodedScratch {
            buf: vec![0; samples_per_frame],
        }
    }

    /// `read_coded` into the scratch, then decode into `out`.
    pub(crate) fn read_linear<C: ChannelIo + ?Sized>(
        &mut self,
        ch: &mut C,
        out: &mut [i16],
    ) -> Result<usize, TdmError> {
        check_len(self.buf.len(), out.len())?;
        let n = ch.read_coded(&mut self.buf)?;
        ch.law().decode(&self.buf, out);
        Ok(n)
    }

    /// Encode `pcm` into the scratch, then `write_coded`.
    pub(crate) fn write_linear<C: ChannelIo + ?Sized>(
        &mut self,
        ch: &mut C,
        pcm: &[i16],
    ) -> Result<(), TdmError> {
        check_len(self.buf.len(), pcm.len())?;
        ch.law().encode(pcm, &mut self.buf);
        ch.write_coded(&self.buf)
    }

    /// Moves the scratch out so the channel can be borrowed mutably beside it.
    pub(crate) fn take(&mut self) -> CodedScratch {
        CodedScratch {
            buf: std::mem::take(&mut self.buf),
        }
    }
}
