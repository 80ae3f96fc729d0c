//! Digit maps and digit accumulation (RFC 3435 §2.1.5, grammar in Appendix A).
//!
//! A call agent loads a digit map (the `D:` parameter) so that the gateway can collect a
//! whole dialled number before notifying, instead of one NTFY per digit. The map is a
//! list of alternatives in an egrep-like syntax:
//!
//! ```text
//! (0T|00T|[1-7]xxx|8xxxxxxx|#xxxxxxx|*xx|91xxxxxxxxxx|9011x.T)
//! ```
//!
//! [`DigitMap::parse`] compiles the text once; a [`DigitCollector`] per endpoint then
//! follows the procedure of §2.1.5: every detected event (a DTMF symbol, or the timer `T`)
//! is appended to the *current dial string*, which is matched against every alternative.
//! While the string is a prefix of some alternative (under-qualified) collection goes
//! on; when it matches an alternative, or no continuation could ever match
//! (over-qualified), collection ends and the caller notifies the call agent.
//!
//! ## Syntax accepted
//! - letters `0`–`9`, `#`, `*`, `A`–`D` (case-insensitive) match that DTMF event;
//! - `x` / `X` matches any digit `0`–`9`;
//! - `[...]` matches any one of its letters; `d-d` inside brackets is a digit subrange;
//! - `.` after a position matches zero or more occurrences of it;
//! - `T` matches the inter-digit timer expiring. Two extension letters are supported as
//!   timer positions that also choose the timer: `S` (the short timer) and `L` (the long
//!   timer) — both match a timer expiry like `T` does, see [`DigitCollector::timer`];
//! - spaces and tabs are ignored.
//!
//! ## Errors (and so return codes)
//! - Malformed text (unbalanced `(`/`[`, `|` outside parentheses, an empty alternative,
//!   a `.` with nothing before it, a reversed subrange, a character outside the grammar):
//!   [`Error::Protocol`] → 510. RFC 3661 reserves 537 for *extensions*, and a syntax
//!   error in a parameter value is a protocol error.
//! - An extension digit-map letter we do not support (`E`–`Z` other than `L`, `S`, `T`,
//!   `X`): [`Error::DigitMap`] → 537, as §2.1.5 asks ("SHOULD return error code 537").
//! - A map larger than [`MAX_MAP_LEN`] characters or [`MAX_ALTERNATIVES`] alternatives:
//!   [`Error::InsufficientResources`] → 502. The map comes from the network, so its size
//!   is bounded.
//!
//! ## Matching cost
//! Each alternative is a sequence of positions, simulated as an NFA (a set of live
//! positions, no backtracking): one event costs O(size of the map), never exponential.
//! The dial string is capped at [`MAX_DIAL_LEN`] events.
//!
//! Sans-IO: the collector never reads a clock. [`DigitCollector::timer`] says which
//! inter-digit timer the caller should (re)start after each event, and the caller calls
//! [`DigitCollector::timeout`] when it fires.

use std::fmt;
use std::time::Duration;

use crate::code::Error;

/// The longest digit map text accepted, in bytes.
pub const MAX_MAP_LEN: usize = 2048;
/// The most alternatives accepted in one digit map.
pub const MAX_ALTERNATIVES: usize = 64;
/// The longest current dial string kept; an event beyond it ends collection with
/// [`MatchResult::NoMatch`].
pub const MAX_DIAL_LEN: usize = 128;

/// Bit index of the timer event in a position's symbol set (bits 0–15 are DTMF symbols).
const TIMER_BIT: u32 = 16;
/// All ten digits `0`–`9`.
const DIGITS_MASK: u32 = 0x3ff;

/// The event alphabet: the bit for a DTMF symbol or the timer, or `None`.
fn symbol_bit(c: char) -> Option<u32> {
    let bit = match c.to_ascii_uppercase() {
        d @ '0'..='9' => d as u32 - '0' as u32,
        '#' => 10,
        '*' => 11,
        l @ 'A'..='D' => 12 + (l as u32 - 'A' as u32),
        'T' => TIMER_BIT,
        _ => return None,
    };
    Some(bit)
}

/// One position of an alternative: the events it matches and whether it repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    /// Bit set over the event alphabet (see [`symbol_bit`]).
    set: u32,
    /// Followed by `.`: zero or more occurrences.
    repeat: bool,
    /// An explicit timer choice from the `S` / `L` letters (only if `set` has the timer bit).
    timer: Option<DigitTimer>,
}

impl Position {
    fn matches(&self, bit: u32) -> bool {
        self.set & (1 << bit) != 0
    }
}

/// A compiled digit map (RFC 3435 §2.1.5). Owns its text and its compiled form.
///
/// Invariant (established by [`DigitMap::parse`], the only constructor): at least one
/// alternative, every alternative non-empty, and the `(start, len)` ranges tile
/// `positions`. NFA state `k` of alternative `a` lives at index `base(a) + k` with
/// `k` in `0..=len`, so every index the collector computes is in bounds.
#[derive(Clone, PartialEq, Eq)]
pub struct DigitMap {
    text: String,
    /// All positions of all alternatives, back to back.
    positions: Vec<Position>,
    /// `(start, len)` of each alternative in `positions`.
    alternatives: Vec<(usize, usize)>,
}

impl fmt::Debug for DigitMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DigitMap").field(&self.text).finish()
    }
}

impl fmt::Display for DigitMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn syntax(msg: impl fmt::Display) -> Error {
    Error::Protocol(format!("digit map syntax: {msg}"))
}

/// Classify one digit-map letter (not `[`, `]`, `.`, `-`, `(`, `)`, `|`): the set of
/// events it matches, and the explicit timer choice of `S` / `L`.
fn letter(c: char) -> Result<(u32, Option<DigitTimer>), Error> {
    if let Some(bit) = symbol_bit(c) {
        return Ok((1 << bit, None));
    }
    match c.to_ascii_uppercase() {
        'X' => Ok((DIGITS_MASK, None)),
        'S' => Ok((1 << TIMER_BIT, Some(DigitTimer::Short))),
        'L' => Ok((1 << TIMER_BIT, Some(DigitTimer::Long))),
        'E'..='Z' => Err(Error::DigitMap(format!(
            "unsupported digit map extension letter {c:?}"
        ))),
        _ => Err(syntax(format_args!("unexpected character {c:?}"))),
    }
}

/// Merge an explicit timer choice into a position: the short timer wins over the long one.
fn merge_timer(a: Option<DigitTimer>, b: Option<DigitTimer>) -> Option<DigitTimer> {
    match (a, b) {
        (Some(DigitTimer::Short), _) | (_, Some(DigitTimer::Short)) => Some(DigitTimer::Short),
        (Some(DigitTimer::Long), _) | (_, Some(DigitTimer::Long)) => Some(DigitTimer::Long),
        _ => None,
    }
}

/// Compile one alternative (a `DigitString`) onto `out`; returns its length in positions.
fn compile_string(s: &str, out: &mut Vec<Position>) -> Result<usize, Error> {
    let start = out.len();
    let mut chars = s.chars().filter(|c| !matches!(c, ' ' | '\t')).peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                // `.` applies to the position just before it, within this alternative.
                if out.len() == start {
                    return Err(syntax("'.' with no position before it"));
                }
                match out.last_mut() {
                    Some(p) if !p.repeat => p.repeat = true,
                    _ => return Err(syntax("'..'")),
                }
            }
            '[' => {
                let mut set = 0u32;
                let mut timer = None;
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '0'..='9' if chars.peek() == Some(&'-') => {
                            chars.next();
                            let hi = match chars.next() {
                                Some(h @ '0'..='9') => h,
                                _ => return Err(syntax("subrange needs a digit after '-'")),
                            };
                            if hi < c {
                                return Err(syntax(format_args!("reversed subrange {c}-{hi}")));
                            }
                            for d in c..=hi {
                                if let Some(bit) = symbol_bit(d) {
                                    set |= 1 << bit;
                                }
                            }
                        }
                        '[' | '(' | ')' | '|' | '.' | '-' => {
                            return Err(syntax(format_args!("{c:?} inside a range")))
                        }
                        other => {
                            let (bits, t) = letter(other)?;
                            set |= bits;
                            timer = merge_timer(timer, t);
                        }
                    }
                }
                if !closed {
                    return Err(syntax("unterminated '['"));
                }
                if set == 0 {
                    return Err(syntax("empty range '[]'"));
                }
                out.push(Position {
                    set,
                    repeat: false,
                    timer,
                });
            }
            ']' => return Err(syntax("']' without '['")),
            '(' | ')' => return Err(syntax("unbalanced parenthesis")),
            '|' => return Err(syntax("'|' outside parentheses")),
            '-' => return Err(syntax("'-' outside a range")),
            other => {
                let (set, timer) = letter(other)?;
                out.push(Position {
                    set,
                    repeat: false,
                    timer,
                });
            }
        }
    }
    let len = out.len() - start;
    if len == 0 {
        return Err(syntax("empty alternative"));
    }
    Ok(len)
}

impl DigitMap {
    /// Parse and compile a digit map: either one digit string (`xxxx`) or a parenthesised
    /// list of alternatives (`(0T|[1-7]xxx)`). See the module docs for the errors.
    pub fn parse(s: &str) -> Result<DigitMap, Error> {
        if s.len() > MAX_MAP_LEN {
            return Err(Error::InsufficientResources(format!(
                "digit map longer than {MAX_MAP_LEN} characters"
            )));
        }
        let trimmed = s.trim_matches(|c| c == ' ' || c == '\t');
        let list = if let Some(rest) = trimmed.strip_prefix('(') {
            match rest.strip_suffix(')') {
                Some(inner) => inner,
                None => return Err(syntax("unbalanced parenthesis")),
            }
        } else {
            trimmed
        };
        let mut positions = Vec::new();
        let mut alternatives = Vec::new();
        for alt in list.split('|') {
            if alternatives.len() >= MAX_ALTERNATIVES {
                return Err(Error::InsufficientResources(format!(
                    "digit map has more than {MAX_ALTERNATIVES} alternatives"
                )));
            }
            let start = positions.len();
            let len = compile_string(alt, &mut positions)?;
            alternatives.push((start, len));
        }
        if list.len() == trimmed.len() && alternatives.len() > 1 {
            // Without parentheses a digit map is one DigitString (Appendix A).
            return Err(syntax("'|' outside parentheses"));
        }
        Ok(DigitMap {
            text: s.to_owned(),
            positions,
            alternatives,
        })
    }

    /// The digit map as it was received.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How many alternatives (numbering schemes) the map has.
    pub fn alternatives(&self) -> usize {
        self.alternatives.len()
    }

    /// Total number of NFA states: one per position plus one accepting state per alternative.
    fn state_count(&self) -> usize {
        self.positions.len() + self.alternatives.len()
    }
}

/// The outcome of matching the current dial string against a digit map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchResult {
    /// Under-qualified: a prefix of at least one alternative and a match of none. Keep
    /// collecting (and run [`DigitCollector::timer`]).
    Partial,
    /// The dial string matches an alternative and no alternative could take more events:
    /// notify now.
    Full,
    /// The dial string matches an alternative but another (or a `.` repetition) could take
    /// more events. RFC 3435 §2.1.5 asks for the *shortest possible match*, so a strict
    /// gateway notifies now, and map writers disambiguate with `T` (`0T|00T`); a caller
    /// that prefers to wait runs [`DigitCollector::timer`] and calls
    /// [`DigitCollector::timeout`], which then reports [`MatchResult::Full`].
    FullAndPartial,
    /// Over-qualified: no continuation of the dial string can match. Notify what was
    /// collected (the call agent sees an unmatched number).
    NoMatch,
}

impl MatchResult {
    /// Whether collection is over and the caller should notify the call agent.
    pub fn is_final(self) -> bool {
        matches!(self, MatchResult::Full | MatchResult::NoMatch)
    }
}

/// Which inter-digit timer the caller should run while collecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigitTimer {
    /// The short (critical) timer: at least one event has been collected and more may
    /// follow; or the map says `S` at this point.
    Short,
    /// The long timer: nothing has been entered yet; or the map says `L` at this point.
    Long,
}

impl DigitTimer {
    /// The default duration: 4 s for the short timer, 16 s for the long one.
    pub fn default_duration(self) -> Duration {
        match self {
            DigitTimer::Short => Duration::from_secs(4),
            DigitTimer::Long => Duration::from_secs(16),
        }
    }
}

/// Accumulates dialled events against a [`DigitMap`] (RFC 3435 §2.1.5).
///
/// Feed DTMF events with [`push`](Self::push) and timer expiry with
/// [`timeout`](Self::timeout). Once a final result ([`MatchResult::Full`] or
/// [`MatchResult::NoMatch`]) is reached, further events are ignored and the same result
/// is returned until [`reset`](Self::reset).
#[derive(Clone, Debug)]
pub struct DigitCollector {
    map: DigitMap,
    /// The current dial string (upper-case DTMF symbols and `T`).
    digits: String,
    /// Live NFA states, one flag per state (see [`DigitMap::state_count`]).
    live: Vec<bool>,
    /// Scratch buffer for the next state set, kept to avoid allocating per event.
    next: Vec<bool>,
    /// The last result; final results stick until `reset`.
    last: MatchResult,
}

impl DigitCollector {
    /// A collector with an empty dial string.
    pub fn new(map: DigitMap) -> Self {
        let n = map.state_count();
        let mut c = DigitCollector {
            map,
            digits: String::new(),
            live: vec![false; n],
            next: vec![false; n],
            last: MatchResult::Partial,
        };
        c.reset();
        c
    }

    /// The digit map in use.
    pub fn map(&self) -> &DigitMap {
        &self.map
    }

    /// Forget the dial string and start again.
    pub fn reset(&mut self) {
        self.digits.clear();
        self.live.iter_mut().for_each(|s| *s = false);
        let mut state = 0;
        for &(_, len) in &self.map.alternatives {
            self.live[state] = true;
            state += len + 1;
        }
        close(&self.map, &mut self.live);
        self.last = MatchResult::Partial;
    }

    /// The current dial string: upper-case DTMF symbols, and `T` for a timer expiry that
    /// was matched by the map.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The last result (initially [`MatchResult::Partial`]).
    pub fn result(&self) -> MatchResult {
        self.last
    }

    /// Feed one detected event: `0`–`9`, `#`, `*`, `A`–`D` (case-insensitive), or `T`
    /// (same as [`timeout`](Self::timeout)). Any other character is an event no digit map
    /// position can match: collection ends with [`MatchResult::NoMatch`] and the
    /// character is not recorded.
    pub fn push(&mut self, digit: char) -> MatchResult {
        if self.last.is_final() {
            return self.last;
        }
        match symbol_bit(digit) {
            Some(TIMER_BIT) => self.timeout(),
            Some(bit) => self.step(bit, digit.to_ascii_uppercase()),
            None => {
                self.live.iter_mut().for_each(|s| *s = false);
                self.last = MatchResult::NoMatch;
                self.last
            }
        }
    }

    /// The inter-digit timer fired. The timer event `T` is added to the dial string when
    /// the map can match it; if it cannot but the string already matched an alternative
    /// (a [`MatchResult::FullAndPartial`] the caller chose to wait on), that match is
    /// final: [`MatchResult::Full`] with the dial string unchanged.
    pub fn timeout(&mut self) -> MatchResult {
        if self.last.is_final() {
            return self.last;
        }
        let was_full = self.last == MatchResult::FullAndPartial;
        let can_take_timer = self.live_positions().any(|p| p.matches(TIMER_BIT));
        if !can_take_timer && was_full {
            self.last = MatchResult::Full;
            return self.last;
        }
        match self.step(TIMER_BIT, 'T') {
            // A timer ends the wait: whatever could continue, a match is now final.
            MatchResult::FullAndPartial => {
                self.last = MatchResult::Full;
                self.last
            }
            r => r,
        }
    }

    /// Which inter-digit timer should run now, or `None` once collection is over.
    ///
    /// The default is [`DigitTimer::Long`] while nothing has been entered and
    /// [`DigitTimer::Short`] after that. If a live alternative is waiting on an `S` or `L`
    /// timer position, that timer is used instead (`S` wins, as the earliest expiry that
    /// can complete a match).
    pub fn timer(&self) -> Option<DigitTimer> {
        if self.last.is_final() {
            return None;
        }
        let mut explicit = None;
        for p in self.live_positions() {
            if p.matches(TIMER_BIT) {
                explicit = merge_timer(explicit, p.timer);
            }
        }
        Some(explicit.unwrap_or(if self.digits.is_empty() {
            DigitTimer::Long
        } else {
            DigitTimer::Short
        }))
    }

    /// The positions at which some alternative is waiting for its next event.
    fn live_positions(&self) -> impl Iterator<Item = &Position> + '_ {
        let map = &self.map;
        let live = &self.live;
        let mut state = 0;
        map.alternatives.iter().flat_map(move |&(start, len)| {
            let base = state;
            state += len + 1;
            (0..len).filter_map(move |i| {
                if live.get(base + i).copied().unwrap_or(false) {
                    map.positions.get(start + i)
                } else {
                    None
                }
            })
        })
    }

    /// Advance the NFA by one event and classify the result.
    fn step(&mut self, bit: u32, symbol: char) -> MatchResult {
        if self.digits.len() >= MAX_DIAL_LEN {
            self.live.iter_mut().for_each(|s| *s = false);
            self.last = MatchResult::NoMatch;
            return self.last;
        }
        self.next.iter_mut().for_each(|s| *s = false);
        let mut state = 0;
        for &(start, len) in &self.map.alternatives {
            for i in 0..len {
                if !self.live[state + i] {
                    continue;
                }
                let p = &self.map.positions[start + i];
                if p.matches(bit) {
                    // A repeated position may match again; either way it may be left.
                    if p.repeat {
                        self.next[state + i] = true;
                    }
                    self.next[state + i + 1] = true;
                }
            }
            state += len + 1;
        }
        close(&self.map, &mut self.next);
        std::mem::swap(&mut self.live, &mut self.next);
        self.digits.push(symbol);
        self.last = self.classify();
        self.last
    }

    /// Classify the live state set: any accepting state, any state that can go on.
    fn classify(&self) -> MatchResult {
        let mut full = false;
        let mut partial = false;
        let mut state = 0;
        for &(_, len) in &self.map.alternatives {
            full |= self.live[state + len];
            partial |= self.live[state..state + len].iter().any(|&s| s);
            state += len + 1;
        }
        match (full, partial) {
            (true, true) => MatchResult::FullAndPartial,
            (true, false) => MatchResult::Full,
            (false, true) => MatchResult::Partial,
            (false, false) => MatchResult::NoMatch,
        }
    }
}

/// Epsilon closure: a live repeated position may be skipped (zero occurrences).
fn close(map: &DigitMap, states: &mut [bool]) {
    let mut state = 0;
    for &(start, len) in &map.alternatives {
        // Positions are in order, so one forward pass reaches every skip chain.
        for i in 0..len {
            if states[state + i] && map.positions[start + i].repeat {
                states[state + i + 1] = true;
            }
        }
        state += len + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::ReturnCode;

    const RFC_MAP: &str = "(0T|00T|[1-7]xxx|8xxxxxxx|#xxxxxxx|*xx|91xxxxxxxxxx|9011x.T)";

    fn collector(map: &str) -> DigitCollector {
        DigitCollector::new(DigitMap::parse(map).unwrap())
    }

    /// Push every character of `s`; return the result after each one.
    fn feed(c: &mut DigitCollector, s: &str) -> Vec<MatchResult> {
        s.chars().map(|d| c.push(d)).collect()
    }

    use MatchResult::{Full, FullAndPartial, NoMatch, Partial};

    #[test]
    fn rfc_map_parses_and_keeps_text() {
        let m = DigitMap::parse(RFC_MAP).unwrap();
        assert_eq!(m.as_str(), RFC_MAP);
        assert_eq!(m.alternatives(), 8);
        assert_eq!(m.to_string(), RFC_MAP);
    }

    #[test]
    fn rfc_local_extension_is_full_at_fourth_digit() {
        let mut c = collector(RFC_MAP);
        assert_eq!(feed(&mut c, "1234"), vec![Partial, Partial, Partial, Full]);
        assert_eq!(c.digits(), "1234");
        assert_eq!(c.timer(), None);
    }

    #[test]
    fn rfc_operator_needs_timer() {
        let mut c = collector(RFC_MAP);
        assert_eq!(c.push('0'), Partial);
        assert_eq!(c.timer(), Some(DigitTimer::Short));
        assert_eq!(c.timeout(), Full);
        assert_eq!(c.digits(), "0T");

        let mut c = collector(RFC_MAP);
        assert_eq!(feed(&mut c, "00"), vec![Partial, Partial]);
        assert_eq!(c.timeout(), Full);
        assert_eq!(c.digits(), "00T");
    }

    #[test]
    fn rfc_local_and_corporate_and_star_numbers() {
        let mut c = collector(RFC_MAP);
        let r = feed(&mut c, "81234567");
        assert_eq!(r[..7], [Partial; 7]);
        assert_eq!(r[7], Full);

        let mut c = collector(RFC_MAP);
        assert_eq!(feed(&mut c, "#1234567").last(), Some(&Full));

        let mut c = collector(RFC_MAP);
        assert_eq!(feed(&mut c, "*69"), vec![Partial, Partial, Full]);
        assert_eq!(c.digits(), "*69");
    }

    #[test]
    fn rfc_long_distance_and_international() {
        let mut c = collector(RFC_MAP);
        let r = feed(&mut c, "914085551212");
        assert_eq!(r[..11], [Partial; 11]);
        assert_eq!(r[11], Full);

        // 9011 + any number of digits, ended by the timer.
        let mut c = collector(RFC_MAP);
        let r = feed(&mut c, "9011441234567890");
        assert!(r.iter().all(|&x| x == Partial), "{r:?}");
        assert_eq!(c.timeout(), Full);
        assert_eq!(c.digits(), "9011441234567890T");
    }

    #[test]
    fn rfc_over_qualified_is_no_match() {
        let mut c = collector(RFC_MAP);
        assert_eq!(feed(&mut c, "01"), vec![Partial, NoMatch]);
        // Sticky until reset.
        assert_eq!(c.push('2'), NoMatch);
        assert_eq!(c.digits(), "01");
        assert_eq!(c.timer(), None);
        // Timer where only digits could follow: no match either.
        let mut c = collector(RFC_MAP);
        assert_eq!(feed(&mut c, "91"), vec![Partial, Partial]);
        assert_eq!(c.timeout(), NoMatch);
        assert_eq!(c.digits(), "91T");
    }

    #[test]
    fn x_and_ranges() {
        let mut c = collector("[1-7]x");
        assert_eq!(feed(&mut c, "70"), vec![Partial, Full]);
        let mut c = collector("[1-7]x");
        assert_eq!(c.push('8'), NoMatch);
        let mut c = collector("[1-7]x");
        assert_eq!(feed(&mut c, "1#"), vec![Partial, NoMatch]);
        // A range with letters and several subranges; case-insensitive.
        let mut c = collector("[0-2a#7-8]X");
        assert_eq!(feed(&mut c, "A9"), vec![Partial, Full]);
        assert_eq!(c.digits(), "A9");
        let mut c = collector("[0-2a#7-8]X");
        assert_eq!(c.push('5'), NoMatch);
        let mut c = collector("[0-2a#7-8]X");
        assert_eq!(feed(&mut c, "#8"), vec![Partial, Full]);
    }

    #[test]
    fn x_does_not_match_letters_or_star() {
        for d in ['*', '#', 'A', 'D'] {
            let mut c = collector("x");
            assert_eq!(c.push(d), NoMatch, "{d}");
        }
    }

    #[test]
    fn dot_is_zero_or_more() {
        // Zero occurrences: "1T" matches "1x.T".
        let mut c = collector("1x.T");
        assert_eq!(c.push('1'), Partial);
        assert_eq!(c.timeout(), Full);
        let mut c = collector("1x.T");
        assert_eq!(feed(&mut c, "1234567"), vec![Partial; 7]);
        assert_eq!(c.timeout(), Full);
        // Repetition in the middle, then a fixed tail.
        let mut c = collector("*x.#");
        assert_eq!(feed(&mut c, "*#"), vec![Partial, Full]);
        let mut c = collector("*x.#");
        assert_eq!(feed(&mut c, "*12#"), vec![Partial, Partial, Partial, Full]);
    }

    #[test]
    fn trailing_repetition_is_full_and_partial() {
        let mut c = collector("xx.");
        assert_eq!(feed(&mut c, "123"), vec![FullAndPartial; 3]);
        assert_eq!(c.timer(), Some(DigitTimer::Short));
        // No T in the map: the timer makes the match final without recording T.
        assert_eq!(c.timeout(), Full);
        assert_eq!(c.digits(), "123");
        assert_eq!(c.push('4'), Full);
        assert_eq!(c.digits(), "123");
    }

    #[test]
    fn ambiguous_prefix_is_full_and_partial() {
        let mut c = collector("(0|00)");
        assert_eq!(c.push('0'), FullAndPartial);
        assert_eq!(c.push('0'), Full);
        assert_eq!(c.digits(), "00");

        let mut c = collector("(0|00)");
        assert_eq!(c.push('0'), FullAndPartial);
        assert_eq!(c.timeout(), Full);
        assert_eq!(c.digits(), "0");

        // With a T alternative the timer is recorded.
        let mut c = collector("(1|1T|1xx)");
        assert_eq!(c.push('1'), FullAndPartial);
        assert_eq!(c.timeout(), Full);
        assert_eq!(c.digits(), "1T");
    }

    #[test]
    fn timer_selection_default_and_explicit() {
        let c = collector(RFC_MAP);
        assert_eq!(c.timer(), Some(DigitTimer::Long));
        let mut c = collector("(11S|1xxxxL|2x.T)");
        assert_eq!(c.timer(), Some(DigitTimer::Long));
        c.push('1');
        assert_eq!(c.timer(), Some(DigitTimer::Short));
        c.push('1');
        // "11" waits on S.
        assert_eq!(c.timer(), Some(DigitTimer::Short));
        assert_eq!(c.timeout(), Full);
        assert_eq!(c.digits(), "11T");

        let mut c = collector("(11S|1xxxxL)");
        assert_eq!(feed(&mut c, "12345"), vec![Partial; 5]);
        assert_eq!(c.timer(), Some(DigitTimer::Long));
        assert_eq!(c.timeout(), Full);

        // Both S and L waiting: S wins.
        let mut c = collector("(1S|1L)");
        c.push('1');
        assert_eq!(c.timer(), Some(DigitTimer::Short));
        assert_eq!(DigitTimer::Short.default_duration(), Duration::from_secs(4));
        assert_eq!(DigitTimer::Long.default_duration(), Duration::from_secs(16));
    }

    #[test]
    fn timer_in_the_middle_and_push_t() {
        // A timer position need not be last.
        let mut c = collector("1T2");
        assert_eq!(c.push('1'), Partial);
        assert_eq!(c.push('t'), Partial);
        assert_eq!(c.push('2'), Full);
        assert_eq!(c.digits(), "1T2");
    }

    #[test]
    fn single_string_without_parens_and_whitespace() {
        let mut c = collector("  9 x x ");
        assert_eq!(feed(&mut c, "912"), vec![Partial, Partial, Full]);
        let mut c = collector("( 0T | *xx )");
        assert_eq!(feed(&mut c, "*12"), vec![Partial, Partial, Full]);
    }

    #[test]
    fn letters_and_case_folding() {
        let mut c = collector("(ab*#|d.C)");
        assert_eq!(feed(&mut c, "aB*#"), vec![Partial, Partial, Partial, Full]);
        assert_eq!(c.digits(), "AB*#");
        let mut c = collector("(ab*#|d.C)");
        assert_eq!(feed(&mut c, "dddc"), vec![Partial, Partial, Partial, Full]);
    }

    #[test]
    fn reset_starts_over() {
        let mut c = collector(RFC_MAP);
        feed(&mut c, "1234");
        assert_eq!(c.result(), Full);
        c.reset();
        assert_eq!(c.digits(), "");
        assert_eq!(c.result(), Partial);
        assert_eq!(feed(&mut c, "*69"), vec![Partial, Partial, Full]);
    }

    #[test]
    fn unknown_event_ends_collection() {
        let mut c = collector(RFC_MAP);
        assert_eq!(c.push('1'), Partial);
        assert_eq!(c.push('!'), NoMatch);
        assert_eq!(c.digits(), "1");
        assert_eq!(c.push('2'), NoMatch);
    }

    #[test]
    fn dial_string_is_bounded() {
        let mut c = collector("x.T");
        for _ in 0..MAX_DIAL_LEN {
            assert_eq!(c.push('5'), Partial);
        }
        assert_eq!(c.push('5'), NoMatch);
        assert_eq!(c.digits().len(), MAX_DIAL_LEN);
    }

    fn code_of(map: &str) -> ReturnCode {
        DigitMap::parse(map).unwrap_err().return_code()
    }

    #[test]
    fn syntax_errors_are_protocol_errors() {
        for bad in [
            "", "()", "(1|)", "(|1)", "(1||2)", "(1", "1)", "((1))", "[12", "12]", "[]", "[1-]",
            "[-1]", "[9-1]", "[1.]", "[[1]]", ".1", "(1|.2)", "1..", "1|2", "1-2", "1 2 ?", "1,2",
            "é", "(1)(2)", "(1)2",
        ] {
            assert_eq!(code_of(bad), ReturnCode::PROTOCOL_ERROR, "{bad:?}");
        }
    }

    #[test]
    fn unsupported_extension_letters_are_537() {
        for bad in ["1E", "(0T|[1F]x)", "Z", "xxxxY"] {
            assert_eq!(
                code_of(bad),
                ReturnCode::UNKNOWN_DIGIT_MAP_EXTENSION,
                "{bad:?}"
            );
        }
        // The supported ones parse.
        for ok in ["xS", "xL", "[1S]", "X"] {
            DigitMap::parse(ok).unwrap();
        }
    }

    #[test]
    fn size_limits() {
        let long = "x".repeat(MAX_MAP_LEN + 1);
        assert_eq!(code_of(&long), ReturnCode::INSUFFICIENT_RESOURCES);
        let many = format!("({})", vec!["1"; MAX_ALTERNATIVES + 1].join("|"));
        assert_eq!(code_of(&many), ReturnCode::INSUFFICIENT_RESOURCES);
        let max = format!("({})", vec!["1"; MAX_ALTERNATIVES].join("|"));
        assert_eq!(
            DigitMap::parse(&max).unwrap().alternatives(),
            MAX_ALTERNATIVES
        );
    }

    #[test]
    fn pathological_map_matches_in_linear_time() {
        // Classic backtracking killer: many optional positions before a fixed tail.
        let alt = format!("{}1", "x.".repeat(300));
        let map = format!("({alt}|{alt}|{alt})");
        let mut c = collector(&map);
        for _ in 0..MAX_DIAL_LEN {
            assert_eq!(c.push('0'), Partial);
        }
        assert_eq!(c.push('1'), NoMatch);
    }
}
