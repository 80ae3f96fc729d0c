//! Tap channels: a virtual channel exposed as a Unix datagram socket, so an outside program
//! can be the telephone side. The wire format is in `TAP.md` and the crate docs:
//! each datagram is exactly one frame of the span's law codes (160 bytes at 20 ms), nothing
//! else. mgw binds the socket at the configured path; the peer binds its own socket and sends
//! to mgw's path; mgw sends its frames to the address the last good frame came from.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};

use crate::channel::{check_len, ChannelIo, ChannelStats, CodedScratch};
use crate::error::{SetupError, TdmError};
use crate::law::Law;

/// How many datagrams one read may discard (wrong size) before giving up for this frame.
const MAX_SKIP_PER_READ: usize = 8;

/// A channel whose line side is a Unix datagram socket.
pub struct TapChannel {
    law: Law,
    frame: usize,
    sock: UnixDatagram,
    path: PathBuf,
    peer: Option<SocketAddr>,
    /// One byte longer than a frame, so an oversized datagram is seen as such.
    rxbuf: Vec<u8>,
    scratch: CodedScratch,
    stats: ChannelStats,
}

impl TapChannel {
    /// Binds a non-blocking datagram socket at `path` (creating the parent directory, and
    /// replacing a stale socket file left by an earlier run; any other existing file is an
    /// error). `law` must be A-law or µ-law.
    pub fn bind(path: &Path, law: Law, samples_per_frame: usize) -> Result<Self, SetupError> {
        if law == Law::Linear {
            return Err(SetupError::Config(format!(
                "tap {}: taps carry alaw or ulaw",
                path.display()
            )));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SetupError::io("create tap dir", dir, e))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
                .map_err(|e| SetupError::io("remove stale tap socket", path, e))?,
            Ok(_) => {
                return Err(SetupError::io(
                    "tap path exists and is not a socket",
                    path,
                    io::Error::from(io::ErrorKind::AlreadyExists),
                ))
            }
            Err(_) => {}
        }
        let sock = UnixDatagram::bind(path).map_err(|e| SetupError::io("bind tap", path, e))?;
        sock.set_nonblocking(true)
            .map_err(|e| SetupError::io("set tap non-blocking", path, e))?;
        Ok(TapChannel {
            law,
            frame: samples_per_frame,
            sock,
            path: path.to_owned(),
            peer: None,
            rxbuf: vec![0; samples_per_frame + 1],
            scratch: CodedScratch::new(samples_per_frame),
            stats: ChannelStats::default(),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The peer's socket path, once a frame has arrived from a bound peer.
    pub fn peer(&self) -> Option<&Path> {
        self.peer.as_ref().and_then(|a| a.as_pathname())
    }
}

impl Drop for TapChannel {
    fn drop(&mut self) {
        // Best effort: the socket file is ours; leaving it would only be a stale file.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ChannelIo for TapChannel {
    fn law(&self) -> Law {
        self.law
    }

    fn samples_per_frame(&self) -> usize {
        self.frame
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
        check_len(self.frame, out.len())?;
        for _ in 0..MAX_SKIP_PER_READ {
            match self.sock.recv_from(&mut self.rxbuf) {
                Ok((n, from)) if n == self.frame => {
                    out.copy_from_slice(&self.rxbuf[..n]);
                    if from.as_pathname().is_some() {
                        self.peer = Some(from);
                    }
                    self.stats.frames_read += 1;
                    return Ok(n);
                }
                Ok(_) => self.stats.bad_frames += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TdmError::Os(e.raw_os_error().unwrap_or(libc::EIO))),
            }
        }
        out.fill(self.law.silence_byte());
        self.stats.underruns += 1;
        Ok(0)
    }

    fn write_coded(&mut self, codes: &[u8]) -> Result<(), TdmError> {
        check_len(self.frame, codes.len())?;
        let Some(peer) = &self.peer else {
            self.stats.dropped_writes += 1;
            return Ok(());
        };
        match self.sock.send_to_addr(codes, peer) {
            Ok(_) => self.stats.frames_written += 1,
            Err(e) => {
                self.stats.dropped_writes += 1;
                match e.kind() {
                    // The peer's queue is full: drop this frame, keep the peer.
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
                    // The peer went away (ECONNREFUSED, ENOENT): forget it until it sends again.
                    _ => self.peer = None,
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> ChannelStats {
        self.stats
    }
}
