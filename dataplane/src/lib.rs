//! # mgw-dataplane — pinned workers relaying RTP
//!
//! (Design and implementation being written; see `api` for the interface the control
//! plane uses.)

pub mod api;

pub use api::*;
