//! # mgw-media — voice processing for the dataplane (sans-IO)
//!
//! Pure functions and small state machines over sample buffers; no sockets, no threads,
//! no clock reads (time is a sample count or an argument). The dataplane owns instances
//! per channel/connection and calls them from its worker thread; nothing here allocates
//! per frame once constructed.
//!
//! ## Modules
//! - [`codec`] — G.711 A-law/µ-law, L16, G.722 and Opus behind one [`codec::Codec`]
//!   interface: encode 8/16 kHz linear PCM frames to RTP payloads and back.
//! - [`jitter`] — adaptive jitter buffer for IP→TDM, with statistics.
//! - [`plc`] — packet-loss concealment for codecs without their own.
//! - [`tone`] — DTMF and call-progress tone generation (ITU-T/ETSI and North American sets).
//! - [`dtmf`] — in-band DTMF detection within ITU-T Q.24 limits.
//! - [`engine`] — the per-channel media engine: TDM frame ↔ RTP connections (codecs,
//!   jitter buffer, PLC, mixing, DTMF/RFC 4733, comfort noise, signals), one per channel.
//! - [`rfc4733`] — telephone-event payloads (RFC 4733): parse, build, and the sender and
//!   receiver state machines.

pub mod codec;
pub mod dtmf;
pub mod engine;
pub mod jitter;
pub mod plc;
pub mod rfc4733;
pub mod tone;
