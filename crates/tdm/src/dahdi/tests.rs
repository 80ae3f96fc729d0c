use super::*;
use crate::line::{HookEvent, LineSignalling};
use std::path::Path;

const DEV: &str = "/dev/dahdi/channel";

fn bind(fake: FakeDahdi, channo: u32) -> Result<DahdiChannel<FakeDahdi>, SetupError> {
    DahdiChannel::bind(fake, Path::new(DEV), channo, Law::Ulaw, 160)
}

#[test]
fn bind_sets_up_the_channel() {
    let mut ch = bind(FakeDahdi::with_channels(24), 5).unwrap();
    assert_eq!(ch.channo(), 5);
    let d = ch.device_mut();
    assert_eq!(d.opened.as_deref(), Some(Path::new(DEV)));
    assert_eq!(d.specified, Some(5));
    assert_eq!(d.blocksize, 160);
    assert_eq!(d.law, Some(Law::Ulaw));
}

#[test]
fn binding_errors_are_classified() {
    assert!(matches!(
        bind(FakeDahdi::with_channels(24), 25),
        Err(SetupError::NoSuchChannel(25))
    ));
    let mut f = FakeDahdi::with_channels(24);
    f.busy.push(3);
    assert!(matches!(bind(f, 3), Err(SetupError::Busy(3))));
    let mut f = FakeDahdi::with_channels(24);
    f.open_error = Some(libc::ENOENT);
    assert!(matches!(
        bind(f, 1),
        Err(SetupError::Io { what: "open", .. })
    ));
    let mut f = FakeDahdi::with_channels(24);
    f.max_blocksize = Some(80);
    assert!(matches!(
        bind(f, 1),
        Err(SetupError::BlockSize {
            requested: 160,
            actual: 80
        })
    ));
    assert!(matches!(
        DahdiChannel::bind(
            FakeDahdi::with_channels(2),
            Path::new(DEV),
            1,
            Law::Linear,
            160
        ),
        Err(SetupError::Config(_))
    ));
}

#[test]
fn full_short_and_missing_blocks() {
    let mut ch = bind(FakeDahdi::with_channels(24), 1).unwrap();
    let mut block = vec![0u8; 160];
    Law::Ulaw.encode(&[4000; 160], &mut block);
    ch.device_mut().rx.push_back(FakeRead::Data(block.clone()));
    ch.device_mut()
        .rx
        .push_back(FakeRead::Data(block[..100].to_vec()));
    let mut out = vec![0i16; 160];
    assert_eq!(ch.read_frame(&mut out).unwrap(), 160);
    assert!(out.iter().all(|&x| (x - 4000).abs() < 200));
    // Short read: 100 samples from the line, the rest is silence.
    assert_eq!(ch.read_frame(&mut out).unwrap(), 100);
    assert!(out[..100].iter().all(|&x| x > 3000));
    assert!(out[100..].iter().all(|&x| x == 0));
    // Nothing queued: EAGAIN → silence, underrun.
    let mut codes = vec![0u8; 160];
    assert_eq!(ch.read_coded(&mut codes).unwrap(), 0);
    assert!(codes.iter().all(|&c| c == 0xFF));
    let s = ch.stats();
    assert_eq!((s.frames_read, s.short_reads, s.underruns), (1, 1, 1));
    // Hard error is reported.
    ch.device_mut().rx.push_back(FakeRead::Error(libc::EIO));
    assert_eq!(ch.read_coded(&mut codes), Err(TdmError::Os(libc::EIO)));
    // EINTR is retried.
    ch.device_mut().rx.push_back(FakeRead::Error(libc::EINTR));
    ch.device_mut().rx.push_back(FakeRead::Data(block.clone()));
    assert_eq!(ch.read_coded(&mut codes).unwrap(), 160);
    assert_eq!(codes, block);
}

#[test]
fn elast_drains_events_then_retries_the_read() {
    let mut ch = bind(FakeDahdi::with_channels(24), 1).unwrap();
    let d = ch.device_mut();
    d.events
        .extend([4, (1 << 17) | i32::from(b'5'), (1 << 18) | i32::from(b'5')]);
    d.rx.push_back(FakeRead::Data(vec![0x80; 160]));
    let mut codes = vec![0u8; 160];
    assert_eq!(ch.read_coded(&mut codes).unwrap(), 160);
    assert!(ch.in_alarm());
    assert_eq!(ch.poll_event(), Some(DahdiEvent::Alarm));
    assert_eq!(ch.poll_event(), Some(DahdiEvent::DtmfDown(b'5')));
    assert_eq!(ch.poll_event(), Some(DahdiEvent::DtmfUp(b'5')));
    assert_eq!(ch.poll_event(), None);
    assert_eq!(ch.stats().events, 3);
    // Alarm clears on NOALARM, seen on a write this time.
    ch.device_mut().events.push_back(5);
    ch.write_coded(&[0xFF; 160]).unwrap();
    assert!(!ch.in_alarm());
    assert_eq!(ch.poll_event(), Some(DahdiEvent::NoAlarm));
    assert_eq!(ch.device_mut().tx.len(), 1);
}

#[test]
fn removed_channel_disconnects() {
    let mut ch = bind(FakeDahdi::with_channels(24), 1).unwrap();
    ch.device_mut().events.push_back(20);
    let mut codes = vec![0u8; 160];
    assert_eq!(ch.read_coded(&mut codes), Err(TdmError::Disconnected));
    assert!(ch.is_removed());
    assert_eq!(ch.write_coded(&codes), Err(TdmError::Disconnected));
    assert_eq!(ch.poll_event(), Some(DahdiEvent::Removed));
}

#[test]
fn event_queue_is_bounded() {
    let mut ch = bind(FakeDahdi::with_channels(1), 1).unwrap();
    ch.device_mut().events.extend(std::iter::repeat_n(3, 40));
    let mut codes = vec![0u8; 160];
    assert_eq!(ch.read_coded(&mut codes).unwrap(), 0);
    assert_eq!(ch.events_dropped(), 40 - EVENT_QUEUE as u64);
    let mut n = 0;
    while ch.poll_event().is_some() {
        n += 1;
    }
    assert_eq!(n, EVENT_QUEUE);
}

#[test]
fn write_paths() {
    let mut ch = bind(FakeDahdi::with_channels(24), 2).unwrap();
    let pcm = vec![-2000i16; 160];
    ch.write_frame(&pcm).unwrap();
    let mut expect = vec![0u8; 160];
    Law::Ulaw.encode(&pcm, &mut expect);
    assert_eq!(ch.device_mut().tx[0], expect);
    ch.device_mut().write_errors.push_back(libc::EAGAIN);
    ch.write_frame(&pcm).unwrap();
    assert_eq!(ch.stats().dropped_writes, 1);
    ch.device_mut().write_errors.push_back(libc::EPIPE);
    assert_eq!(ch.write_frame(&pcm), Err(TdmError::Os(libc::EPIPE)));
    assert!(matches!(
        ch.write_frame(&pcm[..10]),
        Err(TdmError::FrameSize { .. })
    ));
    assert_eq!(ch.stats().frames_written, 1);
}

#[test]
fn event_codes_decode() {
    assert_eq!(DahdiEvent::from_raw(0), None);
    assert_eq!(DahdiEvent::from_raw(1), Some(DahdiEvent::OnHook));
    assert_eq!(DahdiEvent::from_raw(2), Some(DahdiEvent::RingOffHook));
    assert_eq!(DahdiEvent::from_raw(20), Some(DahdiEvent::Removed));
    assert_eq!(
        DahdiEvent::from_raw((1 << 16) | 3),
        Some(DahdiEvent::PulseDigit(3))
    );
    assert_eq!(DahdiEvent::from_raw(27), Some(DahdiEvent::Other(27)));
}

#[test]
fn hook_events_become_line_events_and_all_events_stay_visible() {
    let mut ch = bind(FakeDahdi::with_channels(4), 2).unwrap();
    assert!(ch.supports_signalling());
    assert_eq!(ch.poll_line_event(), None);
    let d = ch.device_mut();
    d.inject(DahdiEvent::RingOffHook);
    d.inject(DahdiEvent::DtmfDown(b'1'));
    d.inject(DahdiEvent::WinkFlash);
    d.inject(DahdiEvent::OnHook);
    d.inject(DahdiEvent::Alarm);
    let mut codes = vec![0u8; 160];
    // The events surface on the next read (ELAST → GETEVENT), as with the driver.
    assert_eq!(ch.read_coded(&mut codes).unwrap(), 0);
    assert_eq!(ch.poll_line_event(), Some(HookEvent::OffHook));
    assert_eq!(ch.poll_line_event(), Some(HookEvent::Flash));
    assert_eq!(ch.poll_line_event(), Some(HookEvent::OnHook));
    assert_eq!(ch.poll_line_event(), None);
    assert_eq!(ch.stats().line_events, 3);
    assert_eq!(ch.stats().events, 5);
    // The general queue still has every event, in order.
    let all: Vec<_> = std::iter::from_fn(|| ch.poll_event()).collect();
    assert_eq!(
        all,
        [
            DahdiEvent::RingOffHook,
            DahdiEvent::DtmfDown(b'1'),
            DahdiEvent::WinkFlash,
            DahdiEvent::OnHook,
            DahdiEvent::Alarm
        ]
    );
}

#[test]
fn ringing_uses_dahdi_hook_and_stops_on_ring_trip() {
    let mut ch = bind(FakeDahdi::with_channels(4), 1).unwrap();
    ch.set_ringing(true).unwrap();
    assert!(ch.is_ringing());
    assert!(ch.device_mut().ringing);
    ch.set_ringing(false).unwrap();
    assert!(!ch.device_mut().ringing);
    ch.set_ringing(true).unwrap();
    assert_eq!(
        ch.device_mut().hook_calls,
        [sys::DAHDI_RING, sys::DAHDI_RINGOFF, sys::DAHDI_RING]
    );
    // The telephone answers: the driver stops the ringer and reports off hook.
    ch.device_mut().inject(DahdiEvent::RingOffHook);
    assert!(!ch.device_mut().ringing);
    ch.write_coded(&[0xFF; 160]).unwrap();
    assert!(!ch.is_ringing());
    assert_eq!(ch.poll_line_event(), Some(HookEvent::OffHook));
}

#[test]
fn ringing_errors_are_reported() {
    let mut ch = bind(FakeDahdi::with_channels(4), 1).unwrap();
    // A port that cannot ring (FXO, digital): the driver says EINVAL.
    ch.device_mut().hook_errors.push_back(libc::EINVAL);
    assert_eq!(ch.set_ringing(true), Err(TdmError::Os(libc::EINVAL)));
    assert!(!ch.is_ringing());
    // EINTR is retried once.
    ch.device_mut().hook_errors.push_back(libc::EINTR);
    assert_eq!(ch.set_ringing(true), Ok(()));
    assert!(ch.is_ringing());
    ch.device_mut()
        .hook_errors
        .extend([libc::EINTR, libc::EINTR]);
    assert_eq!(ch.set_ringing(false), Err(TdmError::Os(libc::EINTR)));
    // A removed channel cannot ring.
    ch.device_mut().inject(DahdiEvent::Removed);
    let mut codes = vec![0u8; 160];
    assert_eq!(ch.read_coded(&mut codes), Err(TdmError::Disconnected));
    assert_eq!(ch.set_ringing(true), Err(TdmError::Disconnected));
    // The fake refuses DAHDI_HOOK values the driver does not know.
    let mut f = FakeDahdi::with_channels(1);
    f.open(Path::new(DEV)).unwrap();
    f.specify(1).unwrap();
    assert_eq!(f.hook(7).unwrap_err().raw_os_error(), Some(libc::EINVAL));
    f.hook(sys::DAHDI_RING).unwrap();
    assert!(f.ringing);
}
