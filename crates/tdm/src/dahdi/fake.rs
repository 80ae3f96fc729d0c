//! An in-memory [`DahdiDevice`] that behaves like the driver as seen from user space.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

use super::sys::{DAHDI_RING, DAHDI_RINGOFF};
use super::{DahdiDevice, DahdiEvent, ELAST};
use crate::law::Law;

/// What the next `read` of a [`FakeDahdi`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeRead {
    /// These bytes (truncated to the caller's buffer).
    Data(Vec<u8>),
    /// This `errno`.
    Error(i32),
}

/// In-memory DAHDI channel selector: configurable channels, scripted reads, queued events.
///
/// Like the driver, `read` and `write` fail with `ELAST` while events are queued, `read`
/// fails with `EAGAIN` when nothing is queued, and every call before `DAHDI_SPECIFY` fails
/// with `EINVAL`.
#[derive(Debug, Default)]
pub struct FakeDahdi {
    /// Channel numbers that exist.
    pub channels: Vec<u32>,
    /// Channel numbers already open elsewhere (`DAHDI_SPECIFY` → `EBUSY`).
    pub busy: Vec<u32>,
    /// Largest block size the "driver" accepts; larger requests are clamped to it.
    pub max_blocksize: Option<usize>,
    /// Path given to `open`.
    pub opened: Option<PathBuf>,
    /// `errno` for `open`, if it should fail.
    pub open_error: Option<i32>,
    /// Bound channel.
    pub specified: Option<u32>,
    /// Current block size.
    pub blocksize: usize,
    /// Current law.
    pub law: Option<Law>,
    /// Scripted results of `read`.
    pub rx: VecDeque<FakeRead>,
    /// Queued raw event codes.
    pub events: VecDeque<i32>,
    /// Blocks written.
    pub tx: Vec<Vec<u8>>,
    /// Scripted `errno`s for the next writes.
    pub write_errors: VecDeque<i32>,
    /// Every `DAHDI_HOOK` value accepted, in order.
    pub hook_calls: Vec<i32>,
    /// Whether the ringer is on (`DAHDI_RING` / `DAHDI_RINGOFF`; an off-hook event
    /// injected with [`inject`](Self::inject) stops it, like the driver's ring trip).
    pub ringing: bool,
    /// Scripted `errno`s for the next `DAHDI_HOOK` calls.
    pub hook_errors: VecDeque<i32>,
}

impl FakeDahdi {
    /// A selector on which channels `1..=n` exist.
    pub fn with_channels(n: u32) -> Self {
        FakeDahdi {
            channels: (1..=n).collect(),
            blocksize: 1024, // DAHDI_DEFAULT_BLOCKSIZE
            ..Default::default()
        }
    }

    /// Queues a signalling event as the driver would (raw code, see [`DahdiEvent`]).
    /// `RINGOFFHOOK` also stops the ringer (ring trip).
    pub fn inject(&mut self, event: DahdiEvent) {
        let code = match event {
            DahdiEvent::OnHook => 1,
            DahdiEvent::RingOffHook => {
                self.ringing = false;
                2
            }
            DahdiEvent::WinkFlash => 3,
            DahdiEvent::Alarm => 4,
            DahdiEvent::NoAlarm => 5,
            DahdiEvent::DialComplete => 9,
            DahdiEvent::RingBegin => 18,
            DahdiEvent::Removed => 20,
            DahdiEvent::PulseDigit(d) => (1 << 16) | i32::from(d),
            DahdiEvent::DtmfDown(d) => (1 << 17) | i32::from(d),
            DahdiEvent::DtmfUp(d) => (1 << 18) | i32::from(d),
            DahdiEvent::Other(c) => c,
        };
        self.events.push_back(code);
    }

    fn bound(&self) -> io::Result<()> {
        if self.specified.is_some() {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
    }
}

impl DahdiDevice for FakeDahdi {
    fn open(&mut self, path: &Path) -> io::Result<()> {
        if let Some(e) = self.open_error {
            return Err(io::Error::from_raw_os_error(e));
        }
        self.opened = Some(path.to_owned());
        Ok(())
    }

    fn specify(&mut self, channo: u32) -> io::Result<()> {
        if self.opened.is_none() {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        if self.specified.is_some() {
            return Err(io::Error::from_raw_os_error(libc::EALREADY));
        }
        if self.busy.contains(&channo) {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        if !self.channels.contains(&channo) {
            return Err(io::Error::from_raw_os_error(libc::ENXIO));
        }
        self.specified = Some(channo);
        Ok(())
    }

    fn set_blocksize(&mut self, bytes: usize) -> io::Result<()> {
        self.bound()?;
        if bytes == 0 || bytes > 8192 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.blocksize = self.max_blocksize.map_or(bytes, |m| bytes.min(m));
        Ok(())
    }

    fn blocksize(&mut self) -> io::Result<usize> {
        self.bound()?;
        Ok(self.blocksize)
    }

    fn set_law(&mut self, law: Law) -> io::Result<()> {
        self.bound()?;
        if law == Law::Linear {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.law = Some(law);
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.bound()?;
        if !self.events.is_empty() {
            return Err(io::Error::from_raw_os_error(ELAST));
        }
        match self.rx.pop_front() {
            None => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
            Some(FakeRead::Error(e)) => Err(io::Error::from_raw_os_error(e)),
            Some(FakeRead::Data(d)) => {
                let n = d.len().min(buf.len()).min(self.blocksize);
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bound()?;
        if !self.events.is_empty() {
            return Err(io::Error::from_raw_os_error(ELAST));
        }
        if let Some(e) = self.write_errors.pop_front() {
            return Err(io::Error::from_raw_os_error(e));
        }
        let n = buf.len().min(self.blocksize);
        self.tx.push(buf[..n].to_vec());
        Ok(n)
    }

    fn get_event(&mut self) -> io::Result<i32> {
        self.bound()?;
        Ok(self.events.pop_front().unwrap_or(0))
    }

    /// Accepts `DAHDI_ONHOOK` (0) through `DAHDI_RINGOFF` (6), like the driver on an FXS
    /// port; anything else is `EINVAL`.
    fn hook(&mut self, value: i32) -> io::Result<()> {
        self.bound()?;
        if let Some(e) = self.hook_errors.pop_front() {
            return Err(io::Error::from_raw_os_error(e));
        }
        match value {
            DAHDI_RING => self.ringing = true,
            DAHDI_RINGOFF => self.ringing = false,
            0..=4 => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
        self.hook_calls.push(value);
        Ok(())
    }
}
