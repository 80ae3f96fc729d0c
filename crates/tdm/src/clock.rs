//! The frame clock: when frames are due, at exactly 8000 samples per second.
//!
//! Frame `k` (counting from 0) holds samples `k·N .. (k+1)·N` (N = samples per frame) and is
//! due once all of them have elapsed, i.e. at `start + (k+1)·N·125 µs`. The number of frames
//! due at `now` is computed from the integer nanoseconds elapsed since `start`
//! (`elapsed_ns / (N · 125_000)`), so nothing accumulates: there is no per-tick rounding and
//! no float, and after any number of hours the sample count is exact to the nanosecond
//! resolution of [`Instant`].
//!
//! A caller that comes late gets every due frame, up to [`FrameClock::max_burst`]; if it is
//! further behind than that, the oldest frames are skipped (not run), the skip is counted as
//! a *slip*, and the sample counter still advances over them so timestamps derived from it
//! stay locked to real time.
//!
//! The clock reads no clock itself: `now` is always an argument.

use std::time::{Duration, Instant};

/// Nanoseconds per sample at 8 kHz (exact).
pub const NANOS_PER_SAMPLE: u64 = 125_000;
/// Samples per second on a TDM channel.
pub const SAMPLE_RATE: u32 = 8000;

/// What [`FrameClock::poll`] says to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// Frames to run now (0 ..= `max_burst`).
    pub run: u32,
    /// Frames that were due but are skipped because the caller fell too far behind.
    pub skipped: u64,
}

/// Counts frames due at 8000 samples per second from a start instant.
#[derive(Debug, Clone)]
pub struct FrameClock {
    start: Instant,
    samples_per_frame: u32,
    frame_ns: u64,
    /// Frames accounted for (run or skipped) since `start`.
    frames_done: u64,
    max_burst: u32,
    slips: u64,
    skipped_frames: u64,
}

impl FrameClock {
    /// Default cap on frames run in one [`poll`](Self::poll): 5 (100 ms at 20 ms ptime).
    pub const DEFAULT_MAX_BURST: u32 = 5;

    /// A clock starting at `start` with frames of `samples_per_frame` samples
    /// (160 for 20 ms). `samples_per_frame` of 0 is treated as 1.
    pub fn new(start: Instant, samples_per_frame: u32) -> Self {
        let spf = samples_per_frame.max(1);
        FrameClock {
            start,
            samples_per_frame: spf,
            frame_ns: u64::from(spf) * NANOS_PER_SAMPLE,
            frames_done: 0,
            max_burst: Self::DEFAULT_MAX_BURST,
            slips: 0,
            skipped_frames: 0,
        }
    }

    /// A clock for a packetisation time in milliseconds (8 samples per ms).
    pub fn with_ptime_ms(start: Instant, ptime_ms: u32) -> Self {
        Self::new(start, ptime_ms.saturating_mul(SAMPLE_RATE / 1000))
    }

    /// Sets the most frames one [`poll`](Self::poll) returns (at least 1).
    pub fn set_max_burst(&mut self, max_burst: u32) {
        self.max_burst = max_burst.max(1);
    }

    /// The most frames one [`poll`](Self::poll) returns.
    pub fn max_burst(&self) -> u32 {
        self.max_burst
    }

    /// Samples per frame.
    pub fn samples_per_frame(&self) -> u32 {
        self.samples_per_frame
    }

    /// Duration of one frame.
    pub fn frame_duration(&self) -> Duration {
        Duration::from_nanos(self.frame_ns)
    }

    /// Total frames due at `now` since the start (before any capping).
    pub fn due_total(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        // elapsed / frame_ns fits u64 for any realistic span (u64 frames of >= 125 µs).
        u64::try_from(elapsed / u128::from(self.frame_ns)).unwrap_or(u64::MAX)
    }

    /// How many frames to run at `now`; marks them (and any skipped ones) as done.
    pub fn poll(&mut self, now: Instant) -> Due {
        let due = self.due_total(now);
        let behind = due.saturating_sub(self.frames_done);
        self.frames_done = self.frames_done.max(due);
        if behind <= u64::from(self.max_burst) {
            // behind <= max_burst (a u32), so the conversion is exact.
            Due {
                run: u32::try_from(behind).unwrap_or(self.max_burst),
                skipped: 0,
            }
        } else {
            let skipped = behind - u64::from(self.max_burst);
            self.slips += 1;
            self.skipped_frames = self.skipped_frames.saturating_add(skipped);
            Due {
                run: self.max_burst,
                skipped,
            }
        }
    }

    /// The instant at which the next frame becomes due.
    pub fn next_deadline(&self) -> Instant {
        let ns = self
            .frames_done
            .saturating_add(1)
            .saturating_mul(self.frame_ns);
        self.start + Duration::from_nanos(ns)
    }

    /// Time from `now` until the next frame is due (zero if one is due already).
    pub fn time_until_next(&self, now: Instant) -> Duration {
        self.next_deadline().saturating_duration_since(now)
    }

    /// Frames accounted for so far (run plus skipped).
    pub fn frames(&self) -> u64 {
        self.frames_done
    }

    /// Samples accounted for so far (`frames() · samples_per_frame`), the TDM sample clock.
    pub fn samples(&self) -> u64 {
        self.frames_done
            .saturating_mul(u64::from(self.samples_per_frame))
    }

    /// Times the caller was so late that frames had to be skipped.
    pub fn slips(&self) -> u64 {
        self.slips
    }

    /// Frames skipped over all slips.
    pub fn skipped_frames(&self) -> u64 {
        self.skipped_frames
    }

    /// The start instant.
    pub fn start(&self) -> Instant {
        self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_simulated_hours_give_the_exact_sample_count() {
        let t0 = Instant::now();
        let mut c = FrameClock::with_ptime_ms(t0, 20);
        c.set_max_burst(u32::MAX);
        // Poll at irregular, jittery instants (like a real loop waking a bit late),
        // never on frame boundaries.
        let mut now = t0;
        let mut run: u64 = 0;
        let step_ns = [
            19_999_937u64,
            20_000_011,
            20_113_000,
            19_000_001,
            21_000_050,
        ];
        let end = t0 + Duration::from_secs(10 * 3600);
        let mut i = 0;
        while now < end {
            now += Duration::from_nanos(step_ns[i % step_ns.len()]);
            i += 1;
            let d = c.poll(now.min(end));
            assert_eq!(d.skipped, 0);
            run += u64::from(d.run);
        }
        assert_eq!(run, 10 * 3600 * 50);
        assert_eq!(c.samples(), 10 * 3600 * 8000);
        assert_eq!(c.slips(), 0);
        // Exactly on the boundary the next frame is due one frame later.
        assert_eq!(c.next_deadline(), end + Duration::from_millis(20));
    }

    #[test]
    fn frames_are_due_when_their_last_sample_has_elapsed() {
        let t0 = Instant::now();
        let mut c = FrameClock::new(t0, 160);
        assert_eq!(c.poll(t0).run, 0);
        assert_eq!(c.time_until_next(t0), Duration::from_millis(20));
        let just_before = t0 + Duration::from_nanos(19_999_999);
        assert_eq!(c.poll(just_before).run, 0);
        assert_eq!(c.poll(t0 + Duration::from_millis(20)).run, 1);
        assert_eq!(c.poll(t0 + Duration::from_millis(20)).run, 0);
        assert_eq!(c.poll(t0 + Duration::from_millis(61)).run, 2);
        assert_eq!(c.frames(), 3);
        assert_eq!(
            c.time_until_next(t0 + Duration::from_millis(61)),
            Duration::from_millis(19)
        );
    }

    #[test]
    fn late_caller_gets_a_burst_then_a_counted_slip() {
        let t0 = Instant::now();
        let mut c = FrameClock::new(t0, 160);
        c.set_max_burst(4);
        // 3 frames late: all three are run.
        assert_eq!(
            c.poll(t0 + Duration::from_millis(60)),
            Due { run: 3, skipped: 0 }
        );
        assert_eq!(c.slips(), 0);
        // 1 s stall: 50 frames due, 4 run, 46 skipped, one slip.
        let d = c.poll(t0 + Duration::from_millis(1060));
        assert_eq!(
            d,
            Due {
                run: 4,
                skipped: 46
            }
        );
        assert_eq!(c.slips(), 1);
        assert_eq!(c.skipped_frames(), 46);
        // The sample clock kept real time across the slip.
        assert_eq!(c.samples(), 53 * 160);
        assert_eq!(c.poll(t0 + Duration::from_millis(1080)).run, 1);
    }

    #[test]
    fn time_going_backwards_runs_nothing() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut c = FrameClock::new(t0, 80);
        assert_eq!(c.poll(t0 - Duration::from_millis(500)), Due::default());
        assert_eq!(c.poll(t0 + Duration::from_millis(10)).run, 1);
        assert_eq!(c.poll(t0 + Duration::from_millis(5)).run, 0);
    }
}
