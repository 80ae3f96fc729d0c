//! mgw TDM and audio-device ports.
//!
//! # What this crate owns
//!
//! The line side of the gateway: 8 kHz voice channels on TDM spans (E1/T1) and audio
//! devices, each consumed and produced one *frame* at a time (one ptime: 20 ms = 160
//! samples by default). It owns the devices and sockets of those channels and nothing of
//! RTP or MGCP. Backends:
//!
//! - **virtual** ([`VirtualChannel`]) — the embedded default. [`SpanConfig::default_virtual`]
//!   gives two E1 spans (`e1-1`, `e1-2`: 30 A-law channels) and two T1 spans (`t1-1`,
//!   `t1-2`: 24 µ-law channels), each pair wired back to back like a crossover cable: what
//!   `e1-1` channel N writes in frame k is what `e1-2` channel N reads in frame k+1, and the
//!   reverse. The bus stores law-coded bytes, so companding is really applied (and A↔µ
//!   transcoded by the G.711 tables if two spans of different laws are paired). An idle
//!   channel reads the law's silence (A-law `0xD5`, µ-law `0xFF`).
//! - **tap** ([`TapChannel`]) — a virtual channel whose other end is a Unix datagram socket
//!   at `<tap_dir>/<span>-<channel>.sock`, so an outside program can be the telephone.
//!   **Frame format: each datagram is exactly one frame of the span's law codes — 8 × ptime
//!   bytes (160 at 20 ms), A-law for E1 spans, µ-law for T1 — with no header.** Short ASCII
//!   datagrams beside them carry line signalling (below). mgw reads at most one audio frame
//!   per frame (other datagrams of the wrong length are dropped and counted) and sends
//!   each frame it writes to the socket address the last good datagram came from
//!   (the peer must bind its own socket; until it has sent, mgw's frames are dropped). mgw
//!   is the clock master: a peer that answers each received frame with one frame stays in
//!   step. Details and an example in `TAP.md`.
//! - **dahdi** ([`DahdiChannel`]) — telephony cards through `/dev/dahdi/channel`
//!   (`DAHDI_SPECIFY`, `DAHDI_SET_BLOCKSIZE` = one frame, `DAHDI_SETLAW`, then one block per
//!   read/write; `ELAST` → `DAHDI_GETEVENT` for alarms, hook and DTMF events). All device
//!   calls go through the [`DahdiDevice`] trait: [`SysDahdi`] is the real `libc::ioctl`
//!   implementation, [`FakeDahdi`] an in-memory one everything above the trait is tested
//!   with. **The real DAHDI path has not been run on hardware** (the driver cannot be loaded
//!   where this was written).
//! - **alsa** ([`AlsaChannel`]) — an audio device as an analog line `aaln/N`: S16_LE mono
//!   8 kHz, period = one frame, non-blocking. Tested through ALSA's `null` and `file`
//!   plugins; needs `libasound2` at run time (`libasound2-dev` to build).
//!
//! # Line signalling
//!
//! Every channel implements [`LineSignalling`] (the line side of the MGCP L package): hook
//! events ([`HookEvent`]: off hook, on hook, flash) are collected while the channel is read
//! and polled with `poll_line_event`; `set_ringing` rings the line. **Tap** channels carry
//! it as short ASCII control datagrams beside the audio frames — `HOOK OFF`, `HOOK ON`,
//! `FLASH` from the peer, `RING ON`, `RING OFF` from mgw; a datagram of exactly one frame
//! is always audio, one of 1–15 bytes starting with an ASCII letter is control (see
//! [`TapControl`] and `TAP.md`). **DAHDI** channels map `ONHOOK`/`RINGOFFHOOK`/`WINKFLASH`
//! events and ring with the `DAHDI_HOOK` ioctl (`DAHDI_RING`/`DAHDI_RINGOFF`). Virtual
//! (untapped) and ALSA channels have none: `supports_signalling()` is false and
//! `set_ringing` fails with [`TdmError::NoSignalling`].
//!
//! # Endpoints
//!
//! Virtual and DAHDI channels are `ds/<span>/<channel>` (`ds/e1-1/7`, `ds/t1-2/24`); ALSA
//! ports are `aaln/<channel>`. [`TdmPorts::resolve`] maps a name (case-insensitively) to a
//! [`ChannelId`]; [`TdmPorts::endpoints`] lists them all.
//!
//! # Run loop and threading contract
//!
//! One dataplane worker owns a [`TdmPorts`] (it is `Send`, holds no locks and shares
//! nothing) and a [`FrameClock`]. Each pass:
//!
//! ```text
//! let due = clock.poll(now);                  // frames due at 8000 samples/s, capped
//! // due.skipped > 0: the worker was late; advance RTP timestamps by skipped frames
//! for _ in 0..due.run {
//!     for each active channel id:
//!         ports.channel_mut(id).read_frame(&mut pcm)   // line → RTP
//!         ports.channel_mut(id).write_frame(&pcm_out)  // RTP → line
//!         while let Some(ev) = ports.channel_mut(id).poll_line_event() { .. } // hook events
//!     ports.tick();                           // bus clock of the virtual spans
//! }
//! sleep/wait until clock.next_deadline()
//! ```
//!
//! Every call is non-blocking and allocation-free after construction. Reads always fill a
//! whole frame (silence where the line gave nothing) and return how many samples came from
//! the line. When the RTP codec is the channel's own law, `read_coded`/`write_coded` move
//! the law bytes without any conversion. Per-frame errors are the small `Copy`
//! [`TdmError`]; construction errors are [`SetupError`].
//!
//! [`FrameClock`] reads no clock itself: `now` is an argument, so it is tested on simulated
//! time.

#![warn(missing_docs)]

mod audio;
mod channel;
mod clock;
mod config;
pub mod dahdi;
mod error;
mod law;
mod line;
mod span;
mod tap;
mod virt;

pub use crate::audio::AlsaChannel;
pub use crate::channel::{ChannelIo, ChannelStats};
pub use crate::clock::{Due, FrameClock, NANOS_PER_SAMPLE, SAMPLE_RATE};
pub use crate::config::{ChannelRange, SpanConfig, SpanKind, TdmConfig, DAHDI_CHANNEL_DEVICE};
pub use crate::dahdi::{DahdiChannel, DahdiDevice, DahdiEvent, FakeDahdi, FakeRead, SysDahdi};
pub use crate::error::{SetupError, TdmError};
pub use crate::law::Law;
pub use crate::line::{HookEvent, LineSignalling, TapControl, TapControlError, TAP_CONTROL_MAX};
pub use crate::span::{AnyChannel, BoxedDahdi, ChannelId, Span, TdmPorts};
pub use crate::tap::TapChannel;
pub use crate::virt::{crossover, VirtualChannel};
