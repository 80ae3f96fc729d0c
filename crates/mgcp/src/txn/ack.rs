//! The `K:` ResponseAck parameter (RFC 3435 §3.2.2, §3.5): a comma-separated list of
//! transaction ids and inclusive ranges, e.g. `K: 6234-6255, 6257, 19030-19044`.
//!
//! An *empty* `K:` in a final response is different: it says "a provisional response was
//! sent for this transaction, please confirm with `000`" (§3.5.6).

use crate::code::Error;
use crate::message::TransactionId;

/// Parses a ResponseAck value into inclusive `(low, high)` ranges, in wire order.
///
/// An empty (or all-blank) value gives an empty list. Every id must be a valid
/// [`TransactionId`] and every range must have `low <= high`; anything else is
/// [`Error::InvalidParameter`].
pub fn parse_response_ack(value: &str) -> Result<Vec<(TransactionId, TransactionId)>, Error> {
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |why: &str| Error::InvalidParameter(format!("K: {why} in {value:?}"));
    let mut out = Vec::new();
    for item in value.split(',') {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() {
            return Err(bad("empty list item"));
        }
        let (lo, hi) = match item.split_once('-') {
            Some((lo, hi)) => (
                tid(lo).ok_or_else(|| bad("bad id"))?,
                tid(hi).ok_or_else(|| bad("bad id"))?,
            ),
            None => {
                let t = tid(item).ok_or_else(|| bad("bad id"))?;
                (t, t)
            }
        };
        if lo > hi {
            return Err(bad("descending range"));
        }
        out.push((lo, hi));
    }
    Ok(out)
}

fn tid(s: &str) -> Option<TransactionId> {
    let s = s.trim_matches([' ', '\t']);
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    TransactionId::new(s.parse().ok()?)
}

/// Formats transaction ids as a ResponseAck value: sorted, de-duplicated, consecutive ids
/// folded into ranges (`[6234, 6235, 6236, 6257]` → `"6234-6236, 6257"`).
pub fn format_response_ack(tids: &[TransactionId]) -> String {
    let mut v: Vec<u32> = tids.iter().map(|t| t.get()).collect();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let lo = v[i];
        let mut hi = lo;
        while i + 1 < v.len() && v[i + 1] == hi.saturating_add(1) {
            i += 1;
            hi = v[i];
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        if lo == hi {
            out.push_str(&lo.to_string());
        } else {
            out.push_str(&format!("{lo}-{hi}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: u32) -> TransactionId {
        TransactionId::new(v).unwrap()
    }

    #[test]
    fn parses_rfc_example() {
        let r = parse_response_ack("6234-6255, 6257, 19030-19044").unwrap();
        assert_eq!(
            r,
            vec![(t(6234), t(6255)), (t(6257), t(6257)), (t(19030), t(19044))]
        );
        assert_eq!(parse_response_ack("  ").unwrap(), vec![]);
        assert_eq!(parse_response_ack("7 - 9").unwrap(), vec![(t(7), t(9))]);
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            "1,,2",
            "0",
            "1000000000",
            "5-3",
            "a",
            "1-",
            "-1",
            "1-2-3",
            ",",
            "12 34",
        ] {
            let e = parse_response_ack(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidParameter(_)), "{bad:?}");
        }
    }

    #[test]
    fn formats_ranges() {
        let ids = [t(6257), t(6234), t(6235), t(6236), t(6236), t(1)];
        assert_eq!(format_response_ack(&ids), "1, 6234-6236, 6257");
        assert_eq!(format_response_ack(&[]), "");
        let max = t(TransactionId::MAX);
        assert_eq!(
            format_response_ack(&[max, t(TransactionId::MAX - 1)]),
            "999999998-999999999"
        );
        let round = parse_response_ack(&format_response_ack(&ids)).unwrap();
        assert_eq!(
            round,
            vec![(t(1), t(1)), (t(6234), t(6236)), (t(6257), t(6257))]
        );
    }
}
