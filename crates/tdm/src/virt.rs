//! Virtual channels: an in-memory TDM bus.
//!
//! Each [`VirtualChannel`] holds one frame slot per direction, as law-coded bytes (like a
//! real TDM bus, so the companding law is really applied). `write_*` fills the transmit slot;
//! `read_*` returns the receive slot. [`crossover`] is the bus clock: once per frame it moves
//! each channel's transmit slot into the partner's receive slot (transcoding A↔µ if the two
//! spans use different laws) and clears the transmit slots, so what one side writes in frame
//! `k` is what the other side reads in frame `k + 1` — exactly one frame of delay whatever
//! order the two sides run in. A channel whose partner wrote nothing (or that has no
//! partner) reads the law's silence and reports 0 samples from the line.

use crate::channel::{check_len, ChannelIo, ChannelStats, CodedScratch};
use crate::error::TdmError;
use crate::law::Law;
use crate::line::LineSignalling;

/// One in-memory channel with a frame slot per direction.
pub struct VirtualChannel {
    law: Law,
    rx: Vec<u8>,
    rx_live: bool,
    tx: Vec<u8>,
    tx_live: bool,
    scratch: CodedScratch,
    stats: ChannelStats,
}

impl VirtualChannel {
    /// A silent channel of `law` with frames of `samples_per_frame` samples. `law` must be
    /// A-law or µ-law; [`Law::Linear`] is stored as A-law.
    pub fn new(law: Law, samples_per_frame: usize) -> Self {
        let law = if law == Law::Linear { Law::Alaw } else { law };
        let idle = law.silence_byte();
        VirtualChannel {
            law,
            rx: vec![idle; samples_per_frame],
            rx_live: false,
            tx: vec![idle; samples_per_frame],
            tx_live: false,
            scratch: CodedScratch::new(samples_per_frame),
            stats: ChannelStats::default(),
        }
    }

    /// Bus clock for a channel without partner: it hears silence next frame.
    pub fn tick_alone(&mut self) {
        self.rx.fill(self.law.silence_byte());
        self.rx_live = false;
        self.tx_live = false;
    }
}

/// Bus clock for two channels wired back to back: `a`'s transmit slot becomes `b`'s receive
/// slot and the reverse; both transmit slots are then empty. Frame sizes must match (they
/// do for spans built together); otherwise the shorter length is moved and the rest is silence.
pub fn crossover(a: &mut VirtualChannel, b: &mut VirtualChannel) {
    pass(a, b);
    pass(b, a);
}

fn pass(from: &mut VirtualChannel, to: &mut VirtualChannel) {
    to.rx.fill(to.law.silence_byte());
    to.rx_live = from.tx_live;
    if from.tx_live {
        from.law.transcode(to.law, &from.tx, &mut to.rx);
    }
    from.tx.fill(from.law.silence_byte());
    from.tx_live = false;
}

/// No line signalling: an in-memory channel has no hook and no ringer.
impl LineSignalling for VirtualChannel {}

impl ChannelIo for VirtualChannel {
    fn law(&self) -> Law {
        self.law
    }

    fn samples_per_frame(&self) -> usize {
        self.rx.len()
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<usize, TdmError> {
        let mut s = self.scratch.take();
        let r = s.read_linear(self, out);
        self.scratch = s;
        r
    }

    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), TdmError> {
        let mut s = self.scratch.take();
        let r = s.write_linear(self, pcm);
        self.scratch = s;
        r
    }

    fn read_coded(&mut self, out: &mut [u8]) -> Result<usize, TdmError> {
        check_len(self.rx.len(), out.len())?;
        out.copy_from_slice(&self.rx);
        if self.rx_live {
            self.stats.frames_read += 1;
            Ok(self.rx.len())
        } else {
            self.stats.underruns += 1;
            Ok(0)
        }
    }

    fn write_coded(&mut self, codes: &[u8]) -> Result<(), TdmError> {
        check_len(self.tx.len(), codes.len())?;
        self.tx.copy_from_slice(codes);
        self.tx_live = true;
        self.stats.frames_written += 1;
        Ok(())
    }

    fn stats(&self) -> ChannelStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, amp: f64, hz: f64, phase0: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (i + phase0) as f64 / 8000.0;
                (amp * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn one_frame_delay_in_both_orders() {
        let mut a = VirtualChannel::new(Law::Alaw, 160);
        let mut b = VirtualChannel::new(Law::Alaw, 160);
        let mut out = vec![0i16; 160];
        let f0 = tone(160, 8000.0, 1000.0, 0);
        let f1 = tone(160, 8000.0, 1000.0, 160);
        // Frame 0: a writes before b reads: b must still hear silence this frame.
        a.write_frame(&f0).unwrap();
        assert_eq!(b.read_frame(&mut out).unwrap(), 0);
        // A-law has no zero level: its silence code 0xD5 decodes to +8.
        assert!(out.iter().all(|&x| x == 8));
        crossover(&mut a, &mut b);
        // Frame 1: b reads first, gets frame 0 (A-law quantised); a writes after.
        assert_eq!(b.read_frame(&mut out).unwrap(), 160);
        let mut q = vec![0u8; 160];
        Law::Alaw.encode(&f0, &mut q);
        let mut expect = vec![0i16; 160];
        Law::Alaw.decode(&q, &mut expect);
        assert_eq!(out, expect);
        assert_ne!(out, f0, "A-law quantisation must really be applied");
        a.write_frame(&f1).unwrap();
        crossover(&mut a, &mut b);
        assert_eq!(b.read_frame(&mut out).unwrap(), 160);
        Law::Alaw.encode(&f1, &mut q);
        Law::Alaw.decode(&q, &mut expect);
        assert_eq!(out, expect);
        // Frame 3: nothing written in frame 2 → silence again.
        crossover(&mut a, &mut b);
        assert_eq!(b.read_frame(&mut out).unwrap(), 0);
        assert_eq!(b.stats().underruns, 2);
        assert_eq!(b.stats().frames_read, 2);
        assert_eq!(a.stats().frames_written, 2);
    }

    #[test]
    fn crossover_between_laws_transcodes_and_reverse_direction_works() {
        let mut e1 = VirtualChannel::new(Law::Alaw, 80);
        let mut t1 = VirtualChannel::new(Law::Ulaw, 80);
        let f = tone(80, 12000.0, 440.0, 0);
        t1.write_frame(&f).unwrap();
        crossover(&mut e1, &mut t1);
        let mut codes = vec![0u8; 80];
        assert_eq!(e1.read_coded(&mut codes).unwrap(), 80);
        let mut got = vec![0i16; 80];
        Law::Alaw.decode(&codes, &mut got);
        for (x, y) in f.iter().zip(&got) {
            assert!((i32::from(*x) - i32::from(*y)).abs() <= 600, "{x} vs {y}");
        }
        // Idle µ-law channel reads µ-law silence codes.
        t1.read_coded(&mut codes).unwrap();
        assert!(codes.iter().all(|&c| c == 0xFF));
    }

    #[test]
    fn wrong_frame_length_is_an_error() {
        let mut a = VirtualChannel::new(Law::Ulaw, 160);
        assert_eq!(
            a.write_frame(&[0; 159]),
            Err(TdmError::FrameSize {
                expected: 160,
                got: 159
            })
        );
        assert!(a.read_frame(&mut [0; 161]).is_err());
        assert!(a.read_coded(&mut [0; 1]).is_err());
    }
}
