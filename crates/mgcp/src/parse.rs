//! Parsing MGCP text into [`Message`]s. (Being written.)

use crate::code::Error;
use crate::message::{Message, TransactionId};

/// A message that could not be parsed, with its transaction id when it could be read,
/// so that an error response can still be sent.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ParseError {
    /// The transaction id, when the header line got that far.
    pub tid: Option<TransactionId>,
    /// What is wrong; its return code is what the response carries.
    pub error: Error,
}

/// Parses one datagram, which may hold several piggybacked messages separated by a line
/// holding a single `.`.
pub fn parse_datagram(bytes: &[u8]) -> Vec<Result<Message, ParseError>> {
    let _ = bytes;
    Vec::new()
}

/// Parses a single message (no piggybacking).
pub fn parse_message(text: &str) -> Result<Message, ParseError> {
    let _ = text;
    Err(ParseError {
        tid: None,
        error: Error::Protocol("parser not written yet".into()),
    })
}
