//! The real DAHDI device: `open(2)`, `ioctl(2)`, `read(2)`, `write(2)` on
//! `/dev/dahdi/channel`.
//!
//! ioctl numbers, from DAHDI's user header `include/dahdi/user.h` (dahdi-linux):
//! `DAHDI_CODE` is `0xDA` and
//!
//! | request               | definition                    | value        |
//! |-----------------------|-------------------------------|--------------|
//! | `DAHDI_GET_BLOCKSIZE` | `_IOR(DAHDI_CODE, 1, int)`    | `0x8004_DA01` |
//! | `DAHDI_SET_BLOCKSIZE` | `_IOW(DAHDI_CODE, 1, int)`    | `0x4004_DA01` |
//! | `DAHDI_HOOK`          | `_IOW(DAHDI_CODE, 7, int)`    | `0x4004_DA07` |
//! | `DAHDI_GETEVENT`      | `_IOR(DAHDI_CODE, 8, int)`    | `0x8004_DA08` |
//! | `DAHDI_SPECIFY`       | `_IOW(DAHDI_CODE, 38, int)`   | `0x4004_DA26` |
//! | `DAHDI_SETLAW`        | `_IOW(DAHDI_CODE, 39, int)`   | `0x4004_DA27` |
//!
//! with the Linux generic encoding `_IOC(dir, type, nr, size) = dir << 30 | size << 16 |
//! type << 8 | nr`, `_IOW` = dir 1 (user writes), `_IOR` = dir 2, `size = sizeof(int) = 4`.
//! That encoding holds on x86, x86-64, ARM, AArch64 and RISC-V; PowerPC, MIPS and SPARC
//! use other direction bits, so this module refuses to issue ioctls there. Law values:
//! `DAHDI_LAW_MULAW` = 1, `DAHDI_LAW_ALAW` = 2. `DAHDI_HOOK` values: `DAHDI_ONHOOK` = 0,
//! `DAHDI_OFFHOOK` = 1, `DAHDI_WINK` = 2, `DAHDI_FLASH` = 3, `DAHDI_START` = 4,
//! `DAHDI_RING` = 5, `DAHDI_RINGOFF` = 6. `ELAST` = 500.
//!
//! Not run against hardware: the DAHDI kernel modules cannot be loaded on the machines
//! this was written on.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::DahdiDevice;
use crate::law::Law;

const fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | (ty << 8) | nr
}
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;
const DAHDI_CODE: u32 = 0xDA;
const INT: u32 = 4;

/// `DAHDI_GET_BLOCKSIZE`.
pub const DAHDI_GET_BLOCKSIZE: u32 = ioc(IOC_READ, DAHDI_CODE, 1, INT);
/// `DAHDI_SET_BLOCKSIZE`.
pub const DAHDI_SET_BLOCKSIZE: u32 = ioc(IOC_WRITE, DAHDI_CODE, 1, INT);
/// `DAHDI_HOOK`: set the hook/ringer state.
pub const DAHDI_HOOK: u32 = ioc(IOC_WRITE, DAHDI_CODE, 7, INT);
/// `DAHDI_GETEVENT`.
pub const DAHDI_GETEVENT: u32 = ioc(IOC_READ, DAHDI_CODE, 8, INT);
/// `DAHDI_SPECIFY`.
pub const DAHDI_SPECIFY: u32 = ioc(IOC_WRITE, DAHDI_CODE, 38, INT);
/// `DAHDI_SETLAW`.
pub const DAHDI_SETLAW: u32 = ioc(IOC_WRITE, DAHDI_CODE, 39, INT);
/// `DAHDI_LAW_MULAW`.
pub const DAHDI_LAW_MULAW: i32 = 1;
/// `DAHDI_LAW_ALAW`.
pub const DAHDI_LAW_ALAW: i32 = 2;
/// `DAHDI_HOOK` value: ring the line.
pub const DAHDI_RING: i32 = 5;
/// `DAHDI_HOOK` value: stop ringing.
pub const DAHDI_RINGOFF: i32 = 6;

const GENERIC_IOCTL_ENCODING: bool = cfg!(any(
    target_arch = "x86",
    target_arch = "x86_64",
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "riscv32",
    target_arch = "riscv64"
));

/// The real device: a non-blocking fd on the DAHDI channel selector.
#[derive(Debug, Default)]
pub struct SysDahdi {
    file: Option<File>,
}

impl SysDahdi {
    /// An unopened device.
    pub fn new() -> Self {
        SysDahdi { file: None }
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// ioctl with a pointer to one `int`, in or out.
    fn ioctl_int(&mut self, request: u32, value: &mut libc::c_int) -> io::Result<()> {
        if !GENERIC_IOCTL_ENCODING {
            return Err(io::Error::from_raw_os_error(libc::ENOTTY));
        }
        let fd = self.file()?.as_raw_fd();
        // SAFETY: `fd` is an open descriptor owned by `self.file` for the duration of the
        // call; every request used here is `_IOR`/`_IOW` of a single `int`, and `value`
        // points to a live, aligned `c_int` the kernel may read or write.
        let r = unsafe { libc::ioctl(fd, request as _, value as *mut libc::c_int) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl DahdiDevice for SysDahdi {
    fn open(&mut self, path: &Path) -> io::Result<()> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        self.file = Some(f);
        Ok(())
    }

    fn specify(&mut self, channo: u32) -> io::Result<()> {
        let mut v = libc::c_int::try_from(channo)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.ioctl_int(DAHDI_SPECIFY, &mut v)
    }

    fn set_blocksize(&mut self, bytes: usize) -> io::Result<()> {
        let mut v =
            libc::c_int::try_from(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.ioctl_int(DAHDI_SET_BLOCKSIZE, &mut v)
    }

    fn blocksize(&mut self) -> io::Result<usize> {
        let mut v: libc::c_int = 0;
        self.ioctl_int(DAHDI_GET_BLOCKSIZE, &mut v)?;
        usize::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    fn set_law(&mut self, law: Law) -> io::Result<()> {
        let mut v = match law {
            Law::Alaw => DAHDI_LAW_ALAW,
            Law::Ulaw => DAHDI_LAW_MULAW,
            Law::Linear => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        self.ioctl_int(DAHDI_SETLAW, &mut v)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file()?.read(buf)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file()?.write(buf)
    }

    fn get_event(&mut self) -> io::Result<i32> {
        let mut v: libc::c_int = 0;
        self.ioctl_int(DAHDI_GETEVENT, &mut v)?;
        Ok(v)
    }

    fn hook(&mut self, value: i32) -> io::Result<()> {
        let mut v: libc::c_int = value;
        self.ioctl_int(DAHDI_HOOK, &mut v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_header_derivation() {
        assert_eq!(DAHDI_GET_BLOCKSIZE, 0x8004_DA01);
        assert_eq!(DAHDI_SET_BLOCKSIZE, 0x4004_DA01);
        assert_eq!(DAHDI_GETEVENT, 0x8004_DA08);
        assert_eq!(DAHDI_HOOK, 0x4004_DA07);
        assert_eq!(DAHDI_SPECIFY, 0x4004_DA26);
        assert_eq!(DAHDI_SETLAW, 0x4004_DA27);
    }

    #[test]
    fn unopened_or_missing_device_fails_cleanly() {
        let mut d = SysDahdi::new();
        assert_eq!(d.specify(1).unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(
            d.read(&mut [0; 4]).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        let err = d
            .open(Path::new("/dev/dahdi/channel-does-not-exist"))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn ioctl_on_a_non_dahdi_fd_is_refused_by_the_kernel() {
        // /dev/null accepts open but not DAHDI ioctls: the kernel answers ENOTTY, which
        // exercises the real ioctl path without the driver.
        let mut d = SysDahdi::new();
        d.open(Path::new("/dev/null")).unwrap();
        assert_eq!(d.specify(1).unwrap_err().raw_os_error(), Some(libc::ENOTTY));
        assert_eq!(
            d.get_event().unwrap_err().raw_os_error(),
            Some(libc::ENOTTY)
        );
        assert_eq!(
            d.hook(DAHDI_RING).unwrap_err().raw_os_error(),
            Some(libc::ENOTTY)
        );
        assert_eq!(d.write(&[0xD5; 160]).unwrap(), 160);
    }
}
