//! ALSA PCM ports: an audio device as a linear 8 kHz channel (endpoint `aaln/N`).
//!
//! Playback and capture PCMs are opened non-blocking with S16_LE, mono, 8000 Hz,
//! interleaved, period = one frame and a buffer of four frames. Hardware that cannot do
//! that directly needs a converting PCM name (`plug:hw:0`, or `default`, which normally
//! includes `plug`). mgw keeps time itself with [`FrameClock`](crate::FrameClock): each
//! frame is one `writei` and one `readi` of exactly one frame; nothing here waits. That
//! matters for ALSA's `null` and `file` plugins, which never block and do not pace.
//!
//! Underruns and overruns (`EPIPE`) are recovered with `snd_pcm_recover` and the I/O is
//! retried once; `EAGAIN` (device full / no data yet) drops the frame or returns silence
//! and is counted.

use alsa::pcm::{Access, Format, HwParams, State, PCM};
use alsa::{Direction, ValueOr};

use crate::channel::{check_len, ChannelIo, ChannelStats};
use crate::clock::SAMPLE_RATE;
use crate::error::{SetupError, TdmError};
use crate::law::Law;
use crate::line::LineSignalling;

/// Frames of buffering asked of ALSA (period = one frame).
const BUFFER_FRAMES: usize = 4;

/// An ALSA playback PCM plus optional capture PCM, as one linear channel.
pub struct AlsaChannel {
    playback: PCM,
    capture: Option<PCM>,
    frame: usize,
    /// One frame of S16_LE bytes.
    bytes: Vec<u8>,
    stats: ChannelStats,
}

fn alsa_err(device: &str, what: &'static str, e: alsa::Error) -> SetupError {
    SetupError::Alsa {
        device: device.to_owned(),
        what,
        message: e.to_string(),
    }
}

fn open(device: &str, dir: Direction, frame: usize) -> Result<PCM, SetupError> {
    if device.contains('\0') {
        return Err(SetupError::Config(format!(
            "ALSA device name {device:?} contains NUL"
        )));
    }
    let pcm = PCM::new(device, dir, true).map_err(|e| alsa_err(device, "open", e))?;
    let period = alsa::pcm::Frames::try_from(frame)
        .map_err(|_| SetupError::Config(format!("frame of {frame} samples")))?;
    {
        let hw = HwParams::any(&pcm).map_err(|e| alsa_err(device, "hw_params_any", e))?;
        hw.set_access(Access::RWInterleaved)
            .map_err(|e| alsa_err(device, "access", e))?;
        hw.set_format(Format::S16LE)
            .map_err(|e| alsa_err(device, "format S16_LE", e))?;
        hw.set_channels(1)
            .map_err(|e| alsa_err(device, "mono", e))?;
        hw.set_rate(SAMPLE_RATE, ValueOr::Nearest)
            .map_err(|e| alsa_err(device, "rate 8000 (try a plug: device)", e))?;
        hw.set_period_size_near(period, ValueOr::Nearest)
            .map_err(|e| alsa_err(device, "period size", e))?;
        hw.set_buffer_size_near(period * BUFFER_FRAMES as alsa::pcm::Frames)
            .map_err(|e| alsa_err(device, "buffer size", e))?;
        pcm.hw_params(&hw)
            .map_err(|e| alsa_err(device, "hw_params", e))?;
    }
    {
        let sw = pcm
            .sw_params_current()
            .map_err(|e| alsa_err(device, "sw_params_current", e))?;
        sw.set_avail_min(period)
            .map_err(|e| alsa_err(device, "avail_min", e))?;
        if dir == Direction::Playback {
            sw.set_start_threshold(period)
                .map_err(|e| alsa_err(device, "start_threshold", e))?;
        }
        pcm.sw_params(&sw)
            .map_err(|e| alsa_err(device, "sw_params", e))?;
    }
    Ok(pcm)
}

impl AlsaChannel {
    /// Opens `playback` (and `capture`, if given) for frames of `samples_per_frame` samples.
    pub fn open(
        playback: &str,
        capture: Option<&str>,
        samples_per_frame: usize,
    ) -> Result<Self, SetupError> {
        let p = open(playback, Direction::Playback, samples_per_frame)?;
        let c = match capture {
            Some(name) => Some(open(name, Direction::Capture, samples_per_frame)?),
            None => None,
        };
        Ok(AlsaChannel {
            playback: p,
            capture: c,
            frame: samples_per_frame,
            bytes: vec![0; samples_per_frame * 2],
            stats: ChannelStats::default(),
        })
    }

    /// Stops playback, discarding anything still buffered (`snd_pcm_drop`). Called on drop;
    /// explicit use is for a clean end of a call.
    pub fn stop(&mut self) {
        // Best effort: a PCM that is already stopped returns an error we do not need.
        let _ = self.playback.drop();
        if let Some(c) = &self.capture {
            let _ = c.drop();
        }
    }

    /// Plays out what is buffered and stops (`snd_pcm_drain`). The PCM is non-blocking, so
    /// this returns at once; the plugins used in tests write everything immediately.
    pub fn drain(&mut self) {
        let _ = self.playback.drain();
    }
}

impl Drop for AlsaChannel {
    fn drop(&mut self) {
        self.stop();
    }
}

fn os(e: &alsa::Error) -> TdmError {
    TdmError::Os(e.errno())
}

/// No line signalling: a sound card has no hook switch and no ringer.
impl LineSignalling for AlsaChannel {}

impl ChannelIo for AlsaChannel {
    fn law(&self) -> Law {
        Law::Linear
    }

    fn samples_per_frame(&self) -> usize {
        self.frame
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<usize, TdmError> {
        check_len(self.frame, out.len())?;
        out.fill(0);
        let Some(cap) = &self.capture else {
            self.stats.underruns += 1;
            return Ok(0);
        };
        // Some PCMs (the null plugin) report a successful read without writing the buffer:
        // start from silence so stale playback bytes never come back as capture.
        self.bytes.fill(0);
        let mut got = 0usize;
        for _ in 0..2 {
            let r = cap.io_bytes().readi(&mut self.bytes);
            match r {
                Ok(n) => {
                    got = n.min(self.frame);
                    break;
                }
                Err(e) if e.errno() == libc::EAGAIN => break,
                Err(e) => {
                    // Overrun (EPIPE) or suspend (ESTRPIPE): recover and retry once.
                    cap.try_recover(e, true).map_err(|e| os(&e))?;
                    if cap.state() == State::Prepared {
                        cap.start().map_err(|e| os(&e))?;
                    }
                }
            }
        }
        for (o, b) in out[..got].iter_mut().zip(self.bytes.chunks_exact(2)) {
            *o = i16::from_le_bytes([b[0], b[1]]);
        }
        match got {
            0 => self.stats.underruns += 1,
            n if n < self.frame => self.stats.short_reads += 1,
            _ => self.stats.frames_read += 1,
        }
        Ok(got)
    }

    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), TdmError> {
        check_len(self.frame, pcm.len())?;
        for (b, s) in self.bytes.chunks_exact_mut(2).zip(pcm) {
            b.copy_from_slice(&s.to_le_bytes());
        }
        for _ in 0..2 {
            let r = self.playback.io_bytes().writei(&self.bytes);
            match r {
                Ok(n) if n == self.frame => {
                    self.stats.frames_written += 1;
                    return Ok(());
                }
                Ok(_) => break,
                Err(e) if e.errno() == libc::EAGAIN => break,
                // Underrun (EPIPE) or suspend (ESTRPIPE): recover and retry once.
                Err(e) => self.playback.try_recover(e, true).map_err(|e| os(&e))?,
            }
        }
        self.stats.dropped_writes += 1;
        Ok(())
    }

    fn read_coded(&mut self, _out: &mut [u8]) -> Result<usize, TdmError> {
        Err(TdmError::Unsupported)
    }

    fn write_coded(&mut self, _codes: &[u8]) -> Result<(), TdmError> {
        Err(TdmError::Unsupported)
    }

    fn stats(&self) -> ChannelStats {
        self.stats
    }
}
