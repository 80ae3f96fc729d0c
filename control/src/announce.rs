//! Announcements (RFC 3660 A package, `A/ann(url)`): WAV files read into 8 kHz linear
//! PCM for the dataplane to play toward the line.
//!
//! Names resolve to files: `file:///abs/path.wav`, `/abs/path.wav`, or a plain name
//! looked up in the announcement directory (`welcome` → `<dir>/welcome.wav`). Plain names
//! may not climb out of the directory. Files are 8/16-bit integer PCM WAV, mono or
//! stereo (mixed down), 8–48 kHz (resampled to 8 kHz by linear interpolation), at most
//! five minutes.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use mgcp::Error;

/// Longest announcement, in seconds.
pub(crate) const MAX_SECONDS: u32 = 300;

/// The file an announcement parameter names.
pub(crate) fn resolve(dir: &Path, param: &str) -> Result<PathBuf, Error> {
    let first = param
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    if first.is_empty() {
        return Err(Error::EventSignalParameter(
            "A/ann needs an announcement name or URL".into(),
        ));
    }
    if let Some(rest) = first.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    if first.contains("://") {
        return Err(Error::CantSendAnnouncement(format!(
            "{first}: only file:// URLs are supported"
        )));
    }
    let p = Path::new(first);
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::CantSendAnnouncement(format!(
            "{first}: not a plain announcement name"
        )));
    }
    let mut path = dir.join(p);
    if path.extension().is_none() {
        path.set_extension("wav");
    }
    Ok(path)
}

/// Reads an announcement file into 8 kHz mono PCM.
pub(crate) fn load(path: &Path) -> Result<Arc<[i16]>, Error> {
    let fail = |what: String| Error::CantSendAnnouncement(format!("{}: {what}", path.display()));
    let mut reader = hound::WavReader::open(path).map_err(|e| fail(e.to_string()))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || !matches!(spec.bits_per_sample, 8 | 16) {
        return Err(fail(format!(
            "{}-bit {:?} samples; need 8- or 16-bit integer PCM",
            spec.bits_per_sample, spec.sample_format
        )));
    }
    if !(1..=2).contains(&spec.channels) || !(8000..=48000).contains(&spec.sample_rate) {
        return Err(fail(format!(
            "{} channels at {} Hz; need mono or stereo at 8–48 kHz",
            spec.channels, spec.sample_rate
        )));
    }
    if reader.duration() > MAX_SECONDS * spec.sample_rate {
        return Err(fail(format!("longer than {MAX_SECONDS} s")));
    }
    let shift = if spec.bits_per_sample == 8 { 8 } else { 0 };
    let mut mono = Vec::with_capacity(reader.duration() as usize);
    let mut acc = 0i32;
    for (i, s) in reader.samples::<i16>().enumerate() {
        let v = i32::from(s.map_err(|e| fail(e.to_string()))?) << shift;
        if spec.channels == 1 {
            mono.push(v as i16);
        } else if i % 2 == 0 {
            acc = v;
        } else {
            mono.push(((acc + v) / 2) as i16);
        }
    }
    Ok(resample_to_8k(&mono, spec.sample_rate).into())
}

/// Linear-interpolation resampling to 8 kHz (announcements only: speech, not hi-fi).
fn resample_to_8k(x: &[i16], rate: u32) -> Vec<i16> {
    if rate == 8000 || x.is_empty() {
        return x.to_vec();
    }
    let n_out = (x.len() as u64 * 8000 / u64::from(rate)) as usize;
    let step = f64::from(rate) / 8000.0;
    (0..n_out)
        .map(|i| {
            let pos = i as f64 * step;
            let k = pos as usize;
            let frac = pos - k as f64;
            let a = f64::from(x[k.min(x.len() - 1)]);
            let b = f64::from(x[(k + 1).min(x.len() - 1)]);
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, rate: u32, channels: u16, secs: f32) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let n = (rate as f32 * secs) as usize;
        for i in 0..n {
            let v = (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
                as i16;
            for _ in 0..channels {
                w.write_sample(v).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn names_resolve_safely() {
        let d = Path::new("/ann");
        assert_eq!(
            resolve(d, "welcome").unwrap(),
            PathBuf::from("/ann/welcome.wav")
        );
        assert_eq!(
            resolve(d, "file:///x/y.wav").unwrap(),
            PathBuf::from("/x/y.wav")
        );
        assert_eq!(
            resolve(d, "\"a.wav\",2").unwrap(),
            PathBuf::from("/ann/a.wav")
        );
        assert!(matches!(
            resolve(d, "../etc/passwd"),
            Err(Error::CantSendAnnouncement(_))
        ));
        assert!(matches!(
            resolve(d, "http://x/y.wav"),
            Err(Error::CantSendAnnouncement(_))
        ));
        assert!(resolve(d, "").is_err());
    }

    #[test]
    fn loads_and_resamples() {
        let dir = std::env::temp_dir().join(format!("mgw-ann-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s.wav");
        write_wav(&f, 16000, 2, 0.5);
        let pcm = load(&f).unwrap();
        assert_eq!(pcm.len(), 4000);
        write_wav(&f, 8000, 1, 0.25);
        assert_eq!(load(&f).unwrap().len(), 2000);
        std::fs::write(&f, b"not a wav").unwrap();
        assert!(matches!(load(&f), Err(Error::CantSendAnnouncement(_))));
        assert!(load(&dir.join("missing.wav")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
