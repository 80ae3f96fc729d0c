//! Tap channels: a virtual channel exposed as a Unix datagram socket, so an outside program
//! can be the telephone side. The wire format is in `TAP.md` and the crate docs: a datagram
//! of exactly one frame of the span's law codes (160 bytes at 20 ms) is audio; a datagram of
//! 1 to 15 bytes starting with an ASCII letter is a line-signalling control message
//! (`HOOK OFF`, `HOOK ON`, `FLASH` from the peer; `RING ON`, `RING OFF` from mgw); anything
//! else is dropped. mgw binds the socket at the configured path; the peer binds its own
//! socket and sends to mgw's path; mgw sends to the address the last good datagram came from.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};

use crate::channel::{check_len, ChannelIo, ChannelStats, CodedScratch};
use crate::error::{SetupError, TdmError};
use crate::law::Law;
use crate::line::{HookEvent, LineSignalling, TapControl, TapControlError, TAP_CONTROL_MAX};

/// How many non-audio datagrams (control or wrong size) one read may consume before giving
/// up on an audio frame for this frame.
const MAX_SKIP_PER_READ: usize = 8;
/// Hook events kept for [`LineSignalling::poll_line_event`]; the oldest is dropped beyond.
const LINE_QUEUE: usize = 16;

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
    /// Hook state as the peer last reported it (starts on hook).
    off_hook: bool,
    /// Hook events not yet polled.
    line: VecDeque<HookEvent>,
    /// Ringing as last set by the owner.
    ringing: bool,
    /// The ringing state still has to be sent to the peer (no peer yet, or its queue was full).
    ring_pending: bool,
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
            off_hook: false,
            line: VecDeque::with_capacity(LINE_QUEUE),
            ringing: false,
            ring_pending: false,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The peer's socket path, once a frame or control datagram has arrived from a bound peer.
    pub fn peer(&self) -> Option<&Path> {
        self.peer.as_ref().and_then(|a| a.as_pathname())
    }

    /// Whether the peer last reported the line off hook.
    pub fn is_off_hook(&self) -> bool {
        self.off_hook
    }

    /// Whether the line is being rung (as last set with [`LineSignalling::set_ringing`]).
    pub fn is_ringing(&self) -> bool {
        self.ringing
    }

    /// Remembers the sender of a good datagram. A new peer that appears while the line
    /// rings is told so.
    fn learn_peer(&mut self, from: SocketAddr) {
        let Some(path) = from.as_pathname() else {
            return;
        };
        let known = self.peer.as_ref().and_then(|a| a.as_pathname()) == Some(path);
        if !known {
            self.peer = Some(from);
            if self.ringing {
                self.ring_pending = true;
            }
        }
    }

    /// Applies a control datagram from the peer (`n` bytes in `rxbuf`).
    fn on_control(&mut self, n: usize, from: SocketAddr) {
        let ev = match TapControl::parse(self.rxbuf.get(..n).unwrap_or_default()) {
            Err(TapControlError::NotControl) => {
                self.stats.bad_frames += 1;
                return;
            }
            Err(TapControlError::Unknown) => None,
            Ok(TapControl::HookOff) if !self.off_hook => Some(HookEvent::OffHook),
            Ok(TapControl::HookOn) if self.off_hook => Some(HookEvent::OnHook),
            Ok(TapControl::Flash) if self.off_hook => Some(HookEvent::Flash),
            // Repeats of the current state, a flash on hook, or mgw's own words.
            Ok(_) => None,
        };
        self.learn_peer(from);
        let Some(ev) = ev else {
            self.stats.bad_control += 1;
            return;
        };
        match ev {
            HookEvent::OffHook => self.off_hook = true,
            HookEvent::OnHook => self.off_hook = false,
            HookEvent::Flash => {}
        }
        self.stats.line_events += 1;
        if self.line.len() == LINE_QUEUE {
            self.line.pop_front();
        }
        self.line.push_back(ev);
    }

    /// Sends the current ringing state to the peer if it is still owed. Returns whether
    /// the peer's queue was full (the state stays owed).
    fn flush_ring(&mut self) -> bool {
        if !self.ring_pending {
            return false;
        }
        let Some(peer) = &self.peer else {
            return false;
        };
        match self
            .sock
            .send_to_addr(TapControl::ring(self.ringing).as_bytes(), peer)
        {
            Ok(_) => {
                self.ring_pending = false;
                false
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => true,
                _ => {
                    // The peer is gone: forget it; a new one is told on arrival.
                    self.peer = None;
                    self.ring_pending = self.ringing;
                    false
                }
            },
        }
    }
}

impl LineSignalling for TapChannel {
    fn supports_signalling(&self) -> bool {
        true
    }

    fn poll_line_event(&mut self) -> Option<HookEvent> {
        self.line.pop_front()
    }

    /// Sends `RING ON` / `RING OFF` to the peer. Without a peer yet the state is kept (a
    /// peer that appears while ringing gets `RING ON`); if the peer's queue is full it is
    /// retried with each frame written. Never fails.
    fn set_ringing(&mut self, on: bool) -> Result<(), TdmError> {
        self.ringing = on;
        self.ring_pending = self.peer.is_some() || on;
        self.flush_ring();
        Ok(())
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
                    self.learn_peer(from);
                    self.stats.frames_read += 1;
                    return Ok(n);
                }
                Ok((n, from)) if n <= TAP_CONTROL_MAX => self.on_control(n, from),
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
        if self.flush_ring() {
            // The peer's queue is full: the audio frame would not fit either.
            self.stats.dropped_writes += 1;
            return Ok(());
        }
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
                    // The peer went away (ECONNREFUSED, ENOENT): forget it until it sends
                    // again; if the line rings, the next peer is told.
                    _ => {
                        self.peer = None;
                        self.ring_pending = self.ringing;
                    }
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> ChannelStats {
        self.stats
    }
}
