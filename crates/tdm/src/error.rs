//! Errors: [`TdmError`] is the small `Copy` error of the per-frame path; [`SetupError`] is
//! returned when spans are built, devices opened and channels bound.

use std::io;
use std::path::PathBuf;

/// Error of a per-frame operation (`read_frame`, `write_frame`, ...). `Copy` and allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TdmError {
    /// The caller's buffer is not exactly one frame long.
    #[error("frame buffer holds {got} samples, the channel's frame is {expected}")]
    FrameSize {
        /// Samples (or bytes of law codes) per frame on this channel.
        expected: usize,
        /// Length of the buffer given.
        got: usize,
    },
    /// Law-coded I/O was asked of a linear channel (or the reverse conversion is impossible).
    #[error("law-coded I/O is not available on a linear channel")]
    Unsupported,
    /// The channel has no line signalling (virtual and ALSA channels): it cannot ring.
    #[error("the channel has no line signalling")]
    NoSignalling,
    /// The device reported that the channel is gone (DAHDI `REMOVED` event, ALSA disconnect).
    #[error("channel device disconnected")]
    Disconnected,
    /// A system call failed with this `errno`.
    #[error("device error (errno {0})")]
    Os(i32),
}

/// Error while building spans, opening devices or binding channels.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The span configuration is invalid.
    #[error("span config: {0}")]
    Config(String),
    /// DAHDI rejected the channel number (`DAHDI_SPECIFY` failed with `ENXIO`/`EINVAL`).
    #[error("DAHDI channel {0} does not exist or is not configured")]
    NoSuchChannel(u32),
    /// The DAHDI channel is already open by someone else (`EBUSY`).
    #[error("DAHDI channel {0} is busy")]
    Busy(u32),
    /// The driver did not accept the block size mgw needs for its frame.
    #[error("block size mismatch: asked for {requested} bytes, device uses {actual}")]
    BlockSize {
        /// Bytes per block mgw asked for (one frame of law codes).
        requested: usize,
        /// Bytes per block the device reports.
        actual: usize,
    },
    /// A device or socket call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// Which operation failed.
        what: &'static str,
        /// Device or socket path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// ALSA refused to open or configure the PCM.
    #[error("ALSA {device}: {what}: {message}")]
    Alsa {
        /// PCM name.
        device: String,
        /// Which step failed.
        what: &'static str,
        /// ALSA's message.
        message: String,
    },
}

impl SetupError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SetupError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
