//! Fuzz the MGCP datagram parser and emitter.
//!
//! Properties, for any input bytes:
//! - `parse_datagram` never panics;
//! - every message it accepts re-emits (`to_bytes`) to text that parses back to an equal
//!   message, and emitting that again gives the same bytes (parse → emit → parse is stable);
//! - the accepted messages piggybacked into one datagram parse back to the same list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mgcp::{emit::encode_piggyback, parse_datagram, Message};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_datagram(data);
    let mut ok: Vec<Message> = Vec::new();
    for m in parsed.into_iter().flatten() {
        let bytes = m.to_bytes();
        let again = parse_datagram(&bytes);
        assert_eq!(
            again.len(),
            1,
            "emitted one message, parsed {} from {:?}",
            again.len(),
            String::from_utf8_lossy(&bytes)
        );
        let m2 = match again.into_iter().next() {
            Some(Ok(m2)) => m2,
            other => panic!(
                "emitted message does not parse: {other:?}\n{}",
                String::from_utf8_lossy(&bytes)
            ),
        };
        assert_eq!(
            m,
            m2,
            "parse(emit(m)) != m for {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(bytes, m2.to_bytes(), "emit is not stable");
        ok.push(m);
    }
    if ok.len() > 1 {
        let mut datagram = Vec::new();
        encode_piggyback(&ok, &mut datagram);
        let back: Vec<Message> = parse_datagram(&datagram)
            .into_iter()
            .map(|r| match r {
                Ok(m) => m,
                Err(e) => panic!(
                    "piggybacked datagram does not parse: {e:?}\n{}",
                    String::from_utf8_lossy(&datagram)
                ),
            })
            .collect();
        assert_eq!(ok, back, "piggyback round trip differs");
    }
});
