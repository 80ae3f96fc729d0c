//! ALSA port through the `null` and `file` plugins, configured by an `.asoundrc` in a
//! temporary HOME. One test function: ALSA reads its configuration once per process and the
//! environment is process-wide. Needs libasound2 at run time.

use std::f64::consts::PI;
use std::fs;

use mgw_tdm::{AlsaChannel, ChannelIo, LineSignalling, SetupError, TdmError};

fn tone(n: usize, phase0: usize) -> Vec<i16> {
    (0..n)
        .map(|i| (10000.0 * (2.0 * PI * 1000.0 * (i + phase0) as f64 / 8000.0).sin()) as i16)
        .collect()
}

#[test]
fn alsa_null_and_file_plugins() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("out.raw");
    let input = home.path().join("in.raw");
    // 10 frames of a known ramp as capture input, S16_LE mono.
    let ramp: Vec<i16> = (0..1600).map(|i| (i * 7 - 5000) as i16).collect();
    let bytes: Vec<u8> = ramp.iter().flat_map(|s| s.to_le_bytes()).collect();
    fs::write(&input, &bytes).unwrap();
    // The file plugin tees whatever passes through it into `file`, in both directions, so
    // playback and capture get separate PCMs; capture reads `infile`.
    let tee = home.path().join("captured.raw");
    let rc = format!(
        "pcm.mgwplay {{ type file; slave.pcm \"null\"; file \"{}\"; format \"raw\" }}\n\
         pcm.mgwcap {{ type file; slave.pcm \"null\"; file \"{}\"; infile \"{}\"; format \"raw\" }}\n",
        out.display(),
        tee.display(),
        input.display()
    );
    fs::write(home.path().join(".asoundrc"), rc).unwrap();
    // Only this test runs in this binary, before any ALSA call.
    std::env::set_var("HOME", home.path());

    // Playback through the file plugin: the bytes land in out.raw.
    let mut ch = AlsaChannel::open("mgwplay", Some("mgwcap"), 160).unwrap();
    // A sound card has no hook switch and no ringer.
    assert!(!ch.supports_signalling());
    assert_eq!(ch.set_ringing(true), Err(TdmError::NoSignalling));
    assert_eq!(ch.poll_line_event(), None);
    assert_eq!(ch.law(), mgw_tdm::Law::Linear);
    let mut played = Vec::new();
    for k in 0..25 {
        let f = tone(160, k * 160);
        ch.write_frame(&f).unwrap();
        played.extend_from_slice(&f);
    }
    assert_eq!(ch.stats().frames_written, 25);
    assert_eq!(ch.read_coded(&mut [0; 160]), Err(TdmError::Unsupported));
    assert!(matches!(
        ch.write_frame(&[0; 10]),
        Err(TdmError::FrameSize { .. })
    ));

    // Capture through the file plugin's infile.
    let mut got = Vec::new();
    let mut frame = vec![0i16; 160];
    for _ in 0..10 {
        let n = ch.read_frame(&mut frame).unwrap();
        got.extend_from_slice(&frame[..n]);
    }
    ch.drain();
    drop(ch);
    let written = fs::read(&out).unwrap();
    let samples: Vec<i16> = written
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert!(
        samples.len() >= 24 * 160,
        "file plugin wrote {} samples",
        samples.len()
    );
    assert!(
        samples[..] == played[..samples.len()],
        "played bytes differ in the file"
    );
    eprintln!("capture got {} samples", got.len());
    assert!(!got.is_empty());
    assert!(got.len() <= ramp.len());
    assert!(
        got[..] == ramp[..got.len()],
        "captured samples differ from infile"
    );

    // Plain null: playback accepted, capture gives silence.
    let mut null = AlsaChannel::open("null", Some("null"), 160).unwrap();
    null.write_frame(&tone(160, 0)).unwrap();
    let mut f = vec![1i16; 160];
    let n = null.read_frame(&mut f).unwrap();
    assert!(
        f.iter().all(|&x| x == 0),
        "null capture is silence ({n} samples)"
    );

    // A device that does not exist fails cleanly.
    assert!(matches!(
        AlsaChannel::open("mgw_no_such_pcm", None, 160),
        Err(SetupError::Alsa { .. })
    ));
    assert!(matches!(
        AlsaChannel::open("bad\0name", None, 160),
        Err(SetupError::Config(_))
    ));
}
