//! Line signalling through the port set: tap control datagrams with a real socket peer,
//! DAHDI hook events and ringing over the fake device, and channels without signalling.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mgw_tdm::{
    AnyChannel, ChannelIo, DahdiDevice, DahdiEvent, FakeDahdi, HookEvent, Law, LineSignalling,
    SpanConfig, TdmConfig, TdmError, TdmPorts,
};

fn tap_ports(dir: &Path, channels: &str) -> TdmPorts {
    let mut cfg = SpanConfig::virtual_e1("e1-1");
    cfg.channels = channels.parse().unwrap();
    cfg.tap = true;
    cfg.tap_dir = Some(dir.join("tap"));
    TdmPorts::build(&TdmConfig {
        ptime_ms: 20,
        spans: vec![cfg],
    })
    .unwrap()
}

fn phone(path: &Path) -> UnixDatagram {
    let s = UnixDatagram::bind(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// One frame pass as the dataplane does it: read, write, then the hook events.
fn pass(ch: &mut AnyChannel, out: u8) -> (usize, Vec<HookEvent>) {
    let mut codes = [0u8; 160];
    let n = ch.read_coded(&mut codes).unwrap();
    ch.write_coded(&[out; 160]).unwrap();
    (n, std::iter::from_fn(|| ch.poll_line_event()).collect())
}

#[test]
fn tap_hook_events_ringing_and_audio_share_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut ports = tap_ports(dir.path(), "1-2");
    let mgw = dir.path().join("tap/e1-1-1.sock");
    let id = ports.resolve("ds/e1-1/1").unwrap();
    let ch = ports.channel_mut(id).unwrap();
    assert!(ch.supports_signalling());

    // Ringing before any peer is known: kept, and told to the peer when it appears.
    ch.set_ringing(true).unwrap();
    let p = phone(&dir.path().join("phone.sock"));
    let mut buf = [0u8; 400];

    // The phone answers: HOOK OFF, then an audio frame that happens to be ASCII letters
    // (a frame is decided by its length, not its content).
    p.send_to(b"HOOK OFF", &mgw).unwrap();
    let ascii = [b'H'; 160];
    p.send_to(&ascii, &mgw).unwrap();
    let mut codes = [0u8; 160];
    assert_eq!(ch.read_coded(&mut codes).unwrap(), 160);
    assert_eq!(codes, ascii);
    assert_eq!(ch.poll_line_event(), Some(HookEvent::OffHook));
    assert_eq!(ch.poll_line_event(), None);
    // The new peer learns that the line rings, before mgw's first audio frame.
    ch.write_coded(&[0x2A; 160]).unwrap();
    let n = p.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"RING ON");
    assert_eq!(p.recv(&mut buf).unwrap(), 160);
    assert!(buf[..160].iter().all(|&b| b == 0x2A));

    // Ringing stopped by the owner: RING OFF goes out at once.
    ch.set_ringing(false).unwrap();
    let n = p.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"RING OFF");

    // Flash, a repeated HOOK OFF (ignored), an unknown word (ignored), garbage (bad frame),
    // lower case with a newline (accepted), with audio in between.
    p.send_to(b"FLASH", &mgw).unwrap();
    p.send_to(&[0xD5; 160], &mgw).unwrap();
    p.send_to(b"HOOK OFF", &mgw).unwrap();
    p.send_to(b"HELLO", &mgw).unwrap();
    p.send_to(&[0x80, 0x81], &mgw).unwrap();
    p.send_to(b"hook on\n", &mgw).unwrap();
    p.send_to(&[0x55; 160], &mgw).unwrap();
    assert_eq!(pass(ch, 0x11), (160, vec![HookEvent::Flash]));
    assert_eq!(pass(ch, 0x11), (160, vec![HookEvent::OnHook]));
    assert_eq!(pass(ch, 0x11), (0, vec![]));
    let s = ch.stats();
    assert_eq!(s.line_events, 3);
    assert_eq!(s.bad_control, 2, "repeated HOOK OFF and HELLO");
    assert_eq!(s.bad_frames, 1);
    assert_eq!(s.frames_read, 3);
    // The three frames written reached the phone.
    for _ in 0..3 {
        assert_eq!(p.recv(&mut buf).unwrap(), 160);
    }
    // A flash while on hook means nothing.
    p.send_to(b"FLASH", &mgw).unwrap();
    assert_eq!(pass(ch, 0x11), (0, vec![]));
    assert_eq!(ch.stats().bad_control, 3);
    if let AnyChannel::Tap(t) = ch {
        assert!(!t.is_off_hook());
        assert!(!t.is_ringing());
    } else {
        panic!("expected a tap channel");
    }

    // The other channel's socket is independent.
    let id2 = ports.resolve("ds/e1-1/2").unwrap();
    let ch2 = ports.channel_mut(id2).unwrap();
    assert_eq!(ch2.poll_line_event(), None);
    // Ringing it with no peer and then stopping: nothing is owed to a later peer.
    ch2.set_ringing(true).unwrap();
    ch2.set_ringing(false).unwrap();
    let p2 = phone(&dir.path().join("phone2.sock"));
    p2.send_to(b"HOOK OFF", dir.path().join("tap/e1-1-2.sock"))
        .unwrap();
    assert_eq!(pass(ch2, 0x22), (0, vec![HookEvent::OffHook]));
    assert_eq!(p2.recv(&mut buf).unwrap(), 160, "audio, no RING OFF");
}

#[test]
fn tap_peer_that_goes_away_while_ringing_is_told_on_return() {
    let dir = tempfile::tempdir().unwrap();
    let mut ports = tap_ports(dir.path(), "1");
    let mgw = dir.path().join("tap/e1-1-1.sock");
    let id = ports.resolve("ds/e1-1/1").unwrap();
    let ch = ports.channel_mut(id).unwrap();
    let path = dir.path().join("phone.sock");
    let p = phone(&path);
    p.send_to(&[0xD5; 160], &mgw).unwrap();
    pass(ch, 0);
    let mut buf = [0u8; 400];
    assert_eq!(p.recv(&mut buf).unwrap(), 160);
    // The phone disappears; ringing starts while it is gone.
    drop(p);
    std::fs::remove_file(&path).unwrap();
    ch.set_ringing(true).unwrap();
    pass(ch, 0);
    // It comes back (same path, new socket) and sends: it is told RING ON first.
    let p = phone(&path);
    p.send_to(b"HOOK ON", &mgw).unwrap();
    assert_eq!(pass(ch, 0), (0, vec![]), "already on hook");
    let n = p.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"RING ON");
    assert_eq!(p.recv(&mut buf).unwrap(), 160);
}

/// A fake device the test keeps a handle on after the port set boxed it.
struct Shared(Arc<Mutex<FakeDahdi>>);

impl DahdiDevice for Shared {
    fn open(&mut self, path: &Path) -> io::Result<()> {
        self.0.lock().unwrap().open(path)
    }
    fn specify(&mut self, channo: u32) -> io::Result<()> {
        self.0.lock().unwrap().specify(channo)
    }
    fn set_blocksize(&mut self, bytes: usize) -> io::Result<()> {
        self.0.lock().unwrap().set_blocksize(bytes)
    }
    fn blocksize(&mut self) -> io::Result<usize> {
        self.0.lock().unwrap().blocksize()
    }
    fn set_law(&mut self, law: Law) -> io::Result<()> {
        self.0.lock().unwrap().set_law(law)
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.lock().unwrap().read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }
    fn get_event(&mut self) -> io::Result<i32> {
        self.0.lock().unwrap().get_event()
    }
    fn hook(&mut self, value: i32) -> io::Result<()> {
        self.0.lock().unwrap().hook(value)
    }
}

#[test]
fn dahdi_span_signals_through_any_channel() {
    let cfg: TdmConfig = toml::from_str(
        r#"
        [[span]]
        kind = "dahdi"
        name = "fxs"
        law = "ulaw"
        channels = "1-2"
        dahdi_first_channel = 1
        "#,
    )
    .unwrap();
    let mut fakes = Vec::new();
    let mut ports = TdmPorts::build_with(&cfg, &mut || {
        let f = Arc::new(Mutex::new(FakeDahdi::with_channels(2)));
        fakes.push(Arc::clone(&f));
        Box::new(Shared(f))
    })
    .unwrap();
    let fake = Arc::clone(&fakes[1]);
    let id = ports.resolve("ds/fxs/2").unwrap();
    let ch = ports.channel_mut(id).unwrap();
    assert!(ch.supports_signalling());
    ch.set_ringing(true).unwrap();
    assert!(fake.lock().unwrap().ringing);
    assert!(!fakes[0].lock().unwrap().ringing, "only channel 2 rings");
    fake.lock().unwrap().inject(DahdiEvent::RingOffHook);
    fake.lock().unwrap().inject(DahdiEvent::WinkFlash);
    assert_eq!(pass(ch, 0xFF).1, [HookEvent::OffHook, HookEvent::Flash]);
    assert!(!fake.lock().unwrap().ringing, "ring trip");
    assert!(matches!(ch, AnyChannel::Dahdi(d) if !d.is_ringing()));
    fake.lock().unwrap().inject(DahdiEvent::OnHook);
    assert_eq!(pass(ch, 0xFF).1, [HookEvent::OnHook]);
    ch.set_ringing(false).unwrap();
    assert_eq!(
        fake.lock().unwrap().hook_calls,
        [
            mgw_tdm::dahdi::sys::DAHDI_RING,
            mgw_tdm::dahdi::sys::DAHDI_RINGOFF
        ]
    );
}

#[test]
fn virtual_channels_have_no_signalling() {
    let mut ports = TdmPorts::build(&TdmConfig::default()).unwrap();
    let id = ports.resolve("ds/e1-1/1").unwrap();
    let ch = ports.channel_mut(id).unwrap();
    assert!(!ch.supports_signalling());
    assert_eq!(ch.set_ringing(true), Err(TdmError::NoSignalling));
    assert_eq!(pass(ch, 0xD5).1, []);
}
