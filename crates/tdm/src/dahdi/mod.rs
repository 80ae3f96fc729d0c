//! DAHDI telephony-card channels.
//!
//! A channel is bound by opening the channel selector `/dev/dahdi/channel`, then
//! `DAHDI_SPECIFY` (the DAHDI channel number), `DAHDI_SET_BLOCKSIZE` (one frame of law
//! codes: 160 bytes at 20 ms; read back with `DAHDI_GET_BLOCKSIZE` and checked) and
//! `DAHDI_SETLAW`. After that each `read`/`write` moves one block of law codes. The fd is
//! non-blocking: `EAGAIN` means no block yet (the caller gets silence, counted as an
//! underrun). While the channel has signalling events queued (alarm, hook, DTMF...) the
//! driver fails `read`/`write` with `ELAST` (500); the events are then fetched with
//! `DAHDI_GETEVENT` until it returns `DAHDI_EVENT_NONE`, queued for [`DahdiChannel::poll_event`],
//! and the I/O is retried once.
//!
//! Line signalling ([`LineSignalling`]): `ONHOOK` → [`HookEvent::OnHook`], `RINGOFFHOOK` →
//! [`HookEvent::OffHook`], `WINKFLASH` → [`HookEvent::Flash`], queued apart from the other
//! events so [`DahdiChannel::poll_event`] still sees everything. This is the reading for an
//! FXS port (a telephone attached; DAHDI configures it with FXO signalling, `fxoks`/`fxols`),
//! where mgw is the exchange: there `RINGOFFHOOK` means the telephone went off hook. (On an
//! FXO port the same code means ringing was detected; mgw does not drive FXO ports as
//! L-package lines.) Ringing is `DAHDI_HOOK` with `DAHDI_RING` / `DAHDI_RINGOFF`; the driver
//! stops ringing by itself when the telephone answers (ring trip).
//!
//! All device calls go through [`DahdiDevice`]; [`SysDahdi`] is the real implementation
//! (`libc::ioctl`, numbers in [`sys`]) and [`FakeDahdi`] an in-memory one that models the
//! driver's observable behaviour. **The real path has not been run against hardware or the
//! DAHDI kernel driver** (it cannot be loaded on the build machines); everything above the
//! trait is tested against the fake.

mod fake;
pub mod sys;

use std::collections::VecDeque;
use std::io;
use std::path::Path;

pub use self::fake::{FakeDahdi, FakeRead};
pub use self::sys::SysDahdi;
use crate::channel::{check_len, ChannelIo, ChannelStats, CodedScratch};
use crate::error::{SetupError, TdmError};
use crate::law::Law;
use crate::line::{HookEvent, LineSignalling};

/// `errno` DAHDI uses on `read`/`write` to say "events pending, call `DAHDI_GETEVENT`".
pub const ELAST: i32 = 500;

/// The device calls a DAHDI channel needs. Errors are `io::Error`s carrying the `errno`
/// (`raw_os_error`), as the kernel would return them.
pub trait DahdiDevice {
    /// Opens the channel selector device (non-blocking, read/write).
    fn open(&mut self, path: &Path) -> io::Result<()>;
    /// `DAHDI_SPECIFY`: binds the open fd to DAHDI channel `channo`.
    fn specify(&mut self, channo: u32) -> io::Result<()>;
    /// `DAHDI_SET_BLOCKSIZE`: bytes per read/write block.
    fn set_blocksize(&mut self, bytes: usize) -> io::Result<()>;
    /// `DAHDI_GET_BLOCKSIZE`.
    fn blocksize(&mut self) -> io::Result<usize>;
    /// `DAHDI_SETLAW` (A-law or µ-law; linear is refused with `EINVAL`).
    fn set_law(&mut self, law: Law) -> io::Result<()>;
    /// Reads at most one block.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one block.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// `DAHDI_GETEVENT`: the next raw event code, 0 (`DAHDI_EVENT_NONE`) when none.
    fn get_event(&mut self) -> io::Result<i32>;
    /// `DAHDI_HOOK`: sets the hook/ringer state to `value` (`DAHDI_RING`,
    /// `DAHDI_RINGOFF`, ... in [`sys`]).
    fn hook(&mut self, value: i32) -> io::Result<()>;
}

/// A DAHDI signalling event (codes from `dahdi/user.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DahdiEvent {
    /// `DAHDI_EVENT_ONHOOK` (1).
    OnHook,
    /// `DAHDI_EVENT_RINGOFFHOOK` (2): went off hook, or ringing detected.
    RingOffHook,
    /// `DAHDI_EVENT_WINKFLASH` (3).
    WinkFlash,
    /// `DAHDI_EVENT_ALARM` (4): the span entered an alarm state.
    Alarm,
    /// `DAHDI_EVENT_NOALARM` (5): the alarm cleared.
    NoAlarm,
    /// `DAHDI_EVENT_DIALCOMPLETE` (9).
    DialComplete,
    /// `DAHDI_EVENT_RINGBEGIN` (18).
    RingBegin,
    /// `DAHDI_EVENT_REMOVED` (20): the channel is gone; it should be closed.
    Removed,
    /// `DAHDI_EVENT_DTMFDOWN | digit` (bit 17).
    DtmfDown(u8),
    /// `DAHDI_EVENT_DTMFUP | digit` (bit 18).
    DtmfUp(u8),
    /// `DAHDI_EVENT_PULSEDIGIT | digit` (bit 16).
    PulseDigit(u8),
    /// Any other event code.
    Other(i32),
}

impl DahdiEvent {
    /// Decodes a raw `DAHDI_GETEVENT` value; `None` for `DAHDI_EVENT_NONE` (0).
    pub fn from_raw(code: i32) -> Option<Self> {
        const PULSEDIGIT: i32 = 1 << 16;
        const DTMFDOWN: i32 = 1 << 17;
        const DTMFUP: i32 = 1 << 18;
        let digit = (code & 0xFF) as u8;
        Some(match code {
            0 => return None,
            1 => DahdiEvent::OnHook,
            2 => DahdiEvent::RingOffHook,
            3 => DahdiEvent::WinkFlash,
            4 => DahdiEvent::Alarm,
            5 => DahdiEvent::NoAlarm,
            9 => DahdiEvent::DialComplete,
            18 => DahdiEvent::RingBegin,
            20 => DahdiEvent::Removed,
            c if c & DTMFUP != 0 => DahdiEvent::DtmfUp(digit),
            c if c & DTMFDOWN != 0 => DahdiEvent::DtmfDown(digit),
            c if c & PULSEDIGIT != 0 => DahdiEvent::PulseDigit(digit),
            c => DahdiEvent::Other(c),
        })
    }
}

/// Most events fetched in one drain (the driver queues at most 64, `DAHDI_MAX_EVENTSIZE`).
const MAX_EVENTS_PER_DRAIN: usize = 64;
/// Events kept for [`DahdiChannel::poll_event`]; older ones are dropped (and counted) beyond it.
const EVENT_QUEUE: usize = 32;

/// A bound DAHDI channel over a [`DahdiDevice`].
pub struct DahdiChannel<D> {
    dev: D,
    channo: u32,
    law: Law,
    block: usize,
    events: VecDeque<DahdiEvent>,
    events_dropped: u64,
    line: VecDeque<HookEvent>,
    ringing: bool,
    alarm: bool,
    removed: bool,
    scratch: CodedScratch,
    stats: ChannelStats,
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl<D: DahdiDevice> DahdiChannel<D> {
    /// Opens `path` on `dev`, binds DAHDI channel `channo`, sets the block size to one
    /// frame (`samples_per_frame` bytes) and checks it, and sets `law`.
    pub fn bind(
        mut dev: D,
        path: &Path,
        channo: u32,
        law: Law,
        samples_per_frame: usize,
    ) -> Result<Self, SetupError> {
        if law == Law::Linear {
            return Err(SetupError::Config(format!(
                "DAHDI channel {channo}: law must be alaw or ulaw"
            )));
        }
        dev.open(path)
            .map_err(|e| SetupError::io("open", path, e))?;
        dev.specify(channo).map_err(|e| match errno(&e) {
            libc::ENXIO | libc::EINVAL | libc::ENODEV | libc::ENOENT => {
                SetupError::NoSuchChannel(channo)
            }
            libc::EBUSY => SetupError::Busy(channo),
            _ => SetupError::io("DAHDI_SPECIFY", path, e),
        })?;
        dev.set_blocksize(samples_per_frame)
            .map_err(|e| SetupError::io("DAHDI_SET_BLOCKSIZE", path, e))?;
        let actual = dev
            .blocksize()
            .map_err(|e| SetupError::io("DAHDI_GET_BLOCKSIZE", path, e))?;
        if actual != samples_per_frame {
            return Err(SetupError::BlockSize {
                requested: samples_per_frame,
                actual,
            });
        }
        dev.set_law(law)
            .map_err(|e| SetupError::io("DAHDI_SETLAW", path, e))?;
        Ok(DahdiChannel {
            dev,
            channo,
            law,
            block: samples_per_frame,
            events: VecDeque::with_capacity(EVENT_QUEUE),
            events_dropped: 0,
            line: VecDeque::with_capacity(EVENT_QUEUE),
            ringing: false,
            alarm: false,
            removed: false,
            scratch: CodedScratch::new(samples_per_frame),
            stats: ChannelStats::default(),
        })
    }

    /// The DAHDI channel number.
    pub fn channo(&self) -> u32 {
        self.channo
    }

    /// True between an `ALARM` event and the next `NOALARM`.
    pub fn in_alarm(&self) -> bool {
        self.alarm
    }

    /// True once the driver reported the channel `REMOVED`; all I/O then fails with
    /// [`TdmError::Disconnected`].
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// The next queued signalling event.
    pub fn poll_event(&mut self) -> Option<DahdiEvent> {
        self.events.pop_front()
    }

    /// Events dropped because the queue was full (the owner did not poll them).
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Whether the line is being rung (set by [`LineSignalling::set_ringing`], cleared by
    /// an off-hook event).
    pub fn is_ringing(&self) -> bool {
        self.ringing
    }

    /// The device (tests reach the fake through this).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// Fetches all pending events (bounded) into the queue.
    fn drain_events(&mut self) {
        for _ in 0..MAX_EVENTS_PER_DRAIN {
            let code = match self.dev.get_event() {
                Ok(c) => c,
                Err(_) => break,
            };
            let Some(ev) = DahdiEvent::from_raw(code) else {
                break;
            };
            self.stats.events += 1;
            let hook = match ev {
                DahdiEvent::Alarm => {
                    self.alarm = true;
                    None
                }
                DahdiEvent::NoAlarm => {
                    self.alarm = false;
                    None
                }
                DahdiEvent::Removed => {
                    self.removed = true;
                    None
                }
                DahdiEvent::OnHook => Some(HookEvent::OnHook),
                DahdiEvent::RingOffHook => Some(HookEvent::OffHook),
                DahdiEvent::WinkFlash => Some(HookEvent::Flash),
                _ => None,
            };
            if let Some(h) = hook {
                if h == HookEvent::OffHook {
                    // Ring trip: the driver stops the ringer when the line answers.
                    self.ringing = false;
                }
                self.stats.line_events += 1;
                if self.line.len() == EVENT_QUEUE {
                    self.line.pop_front();
                }
                self.line.push_back(h);
            }
            if self.events.len() == EVENT_QUEUE {
                self.events.pop_front();
                self.events_dropped += 1;
            }
            self.events.push_back(ev);
        }
    }
}

impl<D: DahdiDevice> LineSignalling for DahdiChannel<D> {
    fn supports_signalling(&self) -> bool {
        true
    }

    fn poll_line_event(&mut self) -> Option<HookEvent> {
        self.line.pop_front()
    }

    /// `DAHDI_HOOK` with `DAHDI_RING` or `DAHDI_RINGOFF`. The driver refuses ringing on
    /// ports that cannot ring (FXO ports, digital spans) with `EINVAL`.
    fn set_ringing(&mut self, on: bool) -> Result<(), TdmError> {
        if self.removed {
            return Err(TdmError::Disconnected);
        }
        let value = if on {
            sys::DAHDI_RING
        } else {
            sys::DAHDI_RINGOFF
        };
        // Two attempts: EINTR is retried once.
        for _ in 0..2 {
            match self.dev.hook(value) {
                Ok(()) => {
                    self.ringing = on;
                    return Ok(());
                }
                Err(e) if errno(&e) == libc::EINTR => {}
                Err(e) => return Err(TdmError::Os(errno(&e))),
            }
        }
        Err(TdmError::Os(libc::EINTR))
    }
}

impl<D: DahdiDevice> ChannelIo for DahdiChannel<D> {
    fn law(&self) -> Law {
        self.law
    }

    fn samples_per_frame(&self) -> usize {
        self.block
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<usize, TdmError> {
        let mut s = self.scratch.take();
        let r = s.read_linear(self, out);
        self.scratch = s;
        r
    }

    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), TdmError> {
        let mut s = self.scratch.take();
        let r = s.write_linear(self, pcm);
        self.scratch = s;
        r
    }

    fn read_coded(&mut self, out: &mut [u8]) -> Result<usize, TdmError> {
        check_len(self.block, out.len())?;
        let silence = self.law.silence_byte();
        // Two attempts: the second follows an ELAST (events drained) or EINTR.
        for _ in 0..2 {
            if self.removed {
                return Err(TdmError::Disconnected);
            }
            match self.dev.read(out) {
                Ok(n) if n >= self.block => {
                    self.stats.frames_read += 1;
                    return Ok(self.block);
                }
                Ok(0) => break,
                Ok(n) => {
                    out[n..].fill(silence);
                    self.stats.short_reads += 1;
                    return Ok(n);
                }
                Err(e) => match errno(&e) {
                    ELAST => self.drain_events(),
                    libc::EINTR => {}
                    libc::EAGAIN => break,
                    code => return Err(TdmError::Os(code)),
                },
            }
        }
        if self.removed {
            return Err(TdmError::Disconnected);
        }
        out.fill(silence);
        self.stats.underruns += 1;
        Ok(0)
    }

    fn write_coded(&mut self, codes: &[u8]) -> Result<(), TdmError> {
        check_len(self.block, codes.len())?;
        for _ in 0..2 {
            if self.removed {
                return Err(TdmError::Disconnected);
            }
            match self.dev.write(codes) {
                Ok(n) if n == codes.len() => {
                    self.stats.frames_written += 1;
                    return Ok(());
                }
                Ok(_) => {
                    // A partial block cannot be completed later without shifting the
                    // stream; count it as dropped.
                    self.stats.dropped_writes += 1;
                    return Ok(());
                }
                Err(e) => match errno(&e) {
                    ELAST => self.drain_events(),
                    libc::EINTR => {}
                    libc::EAGAIN => break,
                    code => return Err(TdmError::Os(code)),
                },
            }
        }
        if self.removed {
            return Err(TdmError::Disconnected);
        }
        self.stats.dropped_writes += 1;
        Ok(())
    }

    fn stats(&self) -> ChannelStats {
        self.stats
    }
}

#[cfg(test)]
mod tests;
