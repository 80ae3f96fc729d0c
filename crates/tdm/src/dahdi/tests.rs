use super::*;
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
