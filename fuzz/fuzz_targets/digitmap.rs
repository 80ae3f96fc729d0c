//! Fuzz digit-map parsing and digit collection (RFC 3435 §2.1.5).
//!
//! Input: the digit map text up to the first `\n` (lossy UTF-8), then one event per byte:
//! `0x00` is a timer expiry (`timeout()`), any other byte is pushed as a character.
//! Properties: nothing panics; an accepted map keeps its text; a final result sticks;
//! `timer()` is `None` exactly when the result is final; the dial string stays bounded
//! and holds only DTMF symbols and `T`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mgcp::digitmap::{DigitCollector, DigitMap, MatchResult, MAX_DIAL_LEN};

fuzz_target!(|data: &[u8]| {
    let (map_bytes, events) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(map_bytes);
    let Ok(map) = DigitMap::parse(&text) else {
        return;
    };
    assert_eq!(map.as_str(), text);
    // Parsing the accepted text again gives the same map.
    assert_eq!(DigitMap::parse(map.as_str()).as_ref(), Ok(&map));

    let mut c = DigitCollector::new(map);
    assert!(c.timer().is_some());
    let mut last = MatchResult::Partial;
    for &b in events {
        let before = c.digits().to_owned();
        let r = if b == 0 {
            c.timeout()
        } else {
            c.push(b as char)
        };
        if last.is_final() {
            assert_eq!(r, last, "a final result must stick");
            assert_eq!(
                c.digits(),
                before,
                "no event is recorded after a final result"
            );
        }
        assert_eq!(r, c.result());
        assert_eq!(c.timer().is_none(), r.is_final());
        assert!(c.digits().len() <= MAX_DIAL_LEN);
        assert!(c
            .digits()
            .chars()
            .all(|d| matches!(d, '0'..='9' | '#' | '*' | 'A'..='D' | 'T')));
        last = r;
    }
    c.reset();
    assert_eq!(c.digits(), "");
    assert_eq!(c.result(), MatchResult::Partial);
});
