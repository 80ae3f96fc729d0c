//! # mgcp — a sans-IO MGCP 1.0 library (RFC 3435)
//!
//! This crate owns the protocol and nothing else: it never opens a socket and never reads
//! a clock. Time comes in as an argument (`now: Instant`), datagrams come in as bytes, and
//! what must be sent comes out of `poll_transmit()`.
//!
//! ## Modules
//! - [`message`] — the owned message model: [`Command`], [`Response`], [`Params`], [`Verb`],
//!   [`TransactionId`].
//! - [`parse`] / [`emit`] — text ⇄ messages; piggybacked datagrams (`.` separator), CRLF or
//!   LF, case-insensitive verbs and parameter names, `X-` extension parameters kept.
//! - [`params`] — typed views of parameter values: LocalConnectionOptions, ConnectionMode,
//!   RequestedEvents, SignalRequests, ObservedEvents, RestartMethod, RequestedInfo,
//!   QuarantineHandling, ConnectionParameters and the rest.
//! - [`digitmap`] — digit maps (RFC 3435 §2.1.5) and digit accumulation.
//! - [`code`] — return codes and [`Error`]; [`Error::return_code`] is the one mapping.
//! - [`name`] — endpoint names and wildcards.
//! - [`txn`] — the transaction layer ([`txn::Agent`]): at-most-once execution of incoming
//!   commands with a response cache per (call agent, transaction id) kept for T-HIST,
//!   provisional responses, response acks (`K:` / `000`); retransmission of
//!   gateway-originated commands with exponential backoff and jitter, Max1/Max2, failover
//!   to backup call agents, and the restart and disconnected procedures (§4.3–4.4).
//!
//! ## Run loop (driven by the control plane)
//! ```text
//!  socket ──bytes──▶ Agent::handle_datagram(now, from, bytes)
//!  timer  ─────────▶ Agent::handle_timeout(now)
//!                    Agent::poll_event()     → new command to execute / response / state change
//!  handler ────────▶ Agent::respond(now, to, response)
//!                    Agent::poll_transmit()  → datagrams to send
//!                    Agent::poll_timeout()   → when to call handle_timeout next
//! ```
//! Everything is single-threaded and deterministic given its inputs (the jitter in
//! retransmission timers comes from a seeded generator), which is what lets the
//! simulated-time tests in `tests/` replay loss, duplication and reordering exactly.

pub mod code;
pub mod digitmap;
pub mod emit;
pub mod message;
pub mod name;
pub mod params;
pub mod parse;
pub mod txn;

pub use code::{Error, ReturnCode};
pub use message::{
    Command, Message, ParamName, Params, ProtocolVersion, Response, TransactionId, Verb,
};
pub use name::{EndpointName, Wildcard};
pub use parse::{parse_datagram, parse_message, ParseError};
