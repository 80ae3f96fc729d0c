//! Spans and the port set the dataplane owns.

use std::path::Path;

use crate::audio::AlsaChannel;
use crate::channel::{ChannelIo, ChannelStats};
use crate::config::{SpanConfig, SpanKind, TdmConfig, DAHDI_CHANNEL_DEVICE};
use crate::dahdi::{DahdiChannel, DahdiDevice, SysDahdi};
use crate::error::{SetupError, TdmError};
use crate::law::Law;
use crate::line::{HookEvent, LineSignalling};
use crate::tap::TapChannel;
use crate::virt::{crossover, VirtualChannel};

/// A boxed DAHDI device, so the real one and the fake can sit in the same port set.
pub type BoxedDahdi = Box<dyn DahdiDevice + Send>;

impl<T: DahdiDevice + ?Sized> DahdiDevice for Box<T> {
    fn open(&mut self, path: &Path) -> std::io::Result<()> {
        (**self).open(path)
    }
    fn specify(&mut self, channo: u32) -> std::io::Result<()> {
        (**self).specify(channo)
    }
    fn set_blocksize(&mut self, bytes: usize) -> std::io::Result<()> {
        (**self).set_blocksize(bytes)
    }
    fn blocksize(&mut self) -> std::io::Result<usize> {
        (**self).blocksize()
    }
    fn set_law(&mut self, law: Law) -> std::io::Result<()> {
        (**self).set_law(law)
    }
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (**self).read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (**self).write(buf)
    }
    fn get_event(&mut self) -> std::io::Result<i32> {
        (**self).get_event()
    }
    fn hook(&mut self, value: i32) -> std::io::Result<()> {
        (**self).hook(value)
    }
}

/// Any channel a span can hold. Dispatch is one `match` per call.
pub enum AnyChannel {
    /// In-memory channel (crossover partner or idle).
    Virtual(VirtualChannel),
    /// Virtual channel whose line side is a Unix datagram socket.
    Tap(TapChannel),
    /// DAHDI card channel.
    Dahdi(DahdiChannel<BoxedDahdi>),
    /// ALSA audio device.
    Alsa(AlsaChannel),
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            AnyChannel::Virtual($c) => $e,
            AnyChannel::Tap($c) => $e,
            AnyChannel::Dahdi($c) => $e,
            AnyChannel::Alsa($c) => $e,
        }
    };
}

impl ChannelIo for AnyChannel {
    fn law(&self) -> Law {
        dispatch!(self, c => c.law())
    }
    fn samples_per_frame(&self) -> usize {
        dispatch!(self, c => c.samples_per_frame())
    }
    fn read_frame(&mut self, out: &mut [i16]) -> Result<usize, TdmError> {
        dispatch!(self, c => c.read_frame(out))
    }
    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), TdmError> {
        dispatch!(self, c => c.write_frame(pcm))
    }
    fn read_coded(&mut self, out: &mut [u8]) -> Result<usize, TdmError> {
        dispatch!(self, c => c.read_coded(out))
    }
    fn write_coded(&mut self, codes: &[u8]) -> Result<(), TdmError> {
        dispatch!(self, c => c.write_coded(codes))
    }
    fn stats(&self) -> ChannelStats {
        dispatch!(self, c => c.stats())
    }
}

/// Tap and DAHDI channels signal; virtual (untapped) and ALSA channels do not.
impl LineSignalling for AnyChannel {
    fn supports_signalling(&self) -> bool {
        dispatch!(self, c => c.supports_signalling())
    }
    fn poll_line_event(&mut self) -> Option<HookEvent> {
        dispatch!(self, c => c.poll_line_event())
    }
    fn set_ringing(&mut self, on: bool) -> Result<(), TdmError> {
        dispatch!(self, c => c.set_ringing(on))
    }
}

/// A named group of channels with one backend and law.
pub struct Span {
    config: SpanConfig,
    channels: Vec<AnyChannel>,
}

impl Span {
    /// The span's configuration.
    pub fn config(&self) -> &SpanConfig {
        &self.config
    }

    /// Span name (`e1-1`).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Backend.
    pub fn kind(&self) -> SpanKind {
        self.config.kind
    }

    /// Law on the span.
    pub fn law(&self) -> Law {
        self.config.law
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// True if the span has no channels (never, for a span built from a valid config).
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Channel by 0-based index.
    pub fn channel_mut(&mut self, index: usize) -> Option<&mut AnyChannel> {
        self.channels.get_mut(index)
    }

    /// Channel by 0-based index.
    pub fn channel(&self, index: usize) -> Option<&AnyChannel> {
        self.channels.get(index)
    }

    /// Endpoint local name of the channel at `index`.
    pub fn endpoint_name(&self, index: usize) -> Option<String> {
        let n = u16::try_from(index).ok()?;
        (index < self.channels.len())
            .then(|| self.config.endpoint_name(self.config.channels.first() + n))
    }
}

/// Where a channel is in a [`TdmPorts`]: span index and 0-based channel index in the span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    /// Index of the span in [`TdmPorts::spans`].
    pub span: u16,
    /// 0-based channel index within the span.
    pub index: u16,
}

/// All TDM and audio ports of a gateway, owned by one dataplane worker.
///
/// Per frame (as counted by [`FrameClock`](crate::FrameClock)), the worker reads and writes
/// one frame on each active channel (in any order), then calls [`tick`](Self::tick) once.
pub struct TdmPorts {
    spans: Vec<Span>,
    pairs: Vec<(usize, usize)>,
    samples_per_frame: usize,
}

impl TdmPorts {
    /// Builds every span of `config` (opening DAHDI channels with [`SysDahdi`]). An empty
    /// span list means [`SpanConfig::default_virtual`].
    pub fn build(config: &TdmConfig) -> Result<Self, SetupError> {
        Self::build_with(config, &mut || Box::new(SysDahdi::new()))
    }

    /// Like [`build`](Self::build), taking DAHDI devices from `dahdi` (one per channel).
    pub fn build_with(
        config: &TdmConfig,
        dahdi: &mut dyn FnMut() -> BoxedDahdi,
    ) -> Result<Self, SetupError> {
        let spf = config.samples_per_frame()?;
        let defaults;
        let cfgs: &[SpanConfig] = if config.spans.is_empty() {
            defaults = SpanConfig::default_virtual();
            &defaults
        } else {
            &config.spans
        };
        if cfgs.len() > usize::from(u16::MAX) {
            return Err(SetupError::Config("too many spans".into()));
        }
        for (i, c) in cfgs.iter().enumerate() {
            c.validate()?;
            for d in &cfgs[..i] {
                if d.name == c.name {
                    return Err(SetupError::Config(format!(
                        "span {:?} defined twice",
                        c.name
                    )));
                }
                if d.kind == SpanKind::Alsa
                    && c.kind == SpanKind::Alsa
                    && d.channels.first() <= c.channels.last()
                    && c.channels.first() <= d.channels.last()
                {
                    return Err(SetupError::Config(format!(
                        "alsa spans {:?} and {:?} both claim aaln/{}",
                        d.name,
                        c.name,
                        c.channels.first().max(d.channels.first())
                    )));
                }
            }
        }
        let mut pairs = Vec::new();
        for (i, c) in cfgs.iter().enumerate() {
            let Some(peer) = &c.loop_with else { continue };
            let j = cfgs.iter().position(|d| &d.name == peer).ok_or_else(|| {
                SetupError::Config(format!("span {:?}: loop to unknown span {peer:?}", c.name))
            })?;
            let d = &cfgs[j];
            if j == i || d.kind != SpanKind::Virtual || d.loop_with.as_deref() != Some(&c.name) {
                return Err(SetupError::Config(format!(
                    "span {:?}: loop partner {peer:?} must be another virtual span looping back",
                    c.name
                )));
            }
            if i < j {
                pairs.push((i, j));
            }
        }
        let mut spans = Vec::with_capacity(cfgs.len());
        for c in cfgs {
            let mut channels = Vec::with_capacity(c.channels.len());
            for n in c.channels.first()..=c.channels.last() {
                channels.push(Self::open_channel(c, n, spf, dahdi)?);
            }
            spans.push(Span {
                config: c.clone(),
                channels,
            });
        }
        Ok(TdmPorts {
            spans,
            pairs,
            samples_per_frame: spf,
        })
    }

    fn open_channel(
        c: &SpanConfig,
        n: u16,
        spf: usize,
        dahdi: &mut dyn FnMut() -> BoxedDahdi,
    ) -> Result<AnyChannel, SetupError> {
        Ok(match c.kind {
            SpanKind::Virtual if c.tap => {
                // validate() guaranteed tap_dir is set.
                let path = c
                    .tap_path(n)
                    .ok_or_else(|| SetupError::Config("tap without tap_dir".into()))?;
                AnyChannel::Tap(TapChannel::bind(&path, c.law, spf)?)
            }
            SpanKind::Virtual => AnyChannel::Virtual(VirtualChannel::new(c.law, spf)),
            SpanKind::Dahdi => {
                let dev = c.device.as_deref().unwrap_or(DAHDI_CHANNEL_DEVICE);
                let base = c.dahdi_first_channel.unwrap_or(1);
                let channo = base
                    .checked_add(u32::from(n - c.channels.first()))
                    .ok_or_else(|| SetupError::Config("DAHDI channel number overflow".into()))?;
                AnyChannel::Dahdi(DahdiChannel::bind(
                    dahdi(),
                    Path::new(dev),
                    channo,
                    c.law,
                    spf,
                )?)
            }
            SpanKind::Alsa => {
                let play = c.device.as_deref().unwrap_or("default");
                let cap = c.capture_device.as_deref().unwrap_or(play);
                AnyChannel::Alsa(AlsaChannel::open(play, Some(cap), spf)?)
            }
        })
    }

    /// Samples per frame on every channel.
    pub fn samples_per_frame(&self) -> usize {
        self.samples_per_frame
    }

    /// The spans, in configuration order.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// A span by index.
    pub fn span_mut(&mut self, index: usize) -> Option<&mut Span> {
        self.spans.get_mut(index)
    }

    /// The channel serving an endpoint local name (`ds/e1-1/7`, `aaln/1`; case-insensitive).
    pub fn resolve(&self, endpoint: &str) -> Option<ChannelId> {
        self.spans.iter().enumerate().find_map(|(s, span)| {
            let index = span.config.match_endpoint(endpoint)?;
            Some(ChannelId {
                span: u16::try_from(s).ok()?,
                index: u16::try_from(index).ok()?,
            })
        })
    }

    /// The endpoint local name of a channel.
    pub fn endpoint_name(&self, id: ChannelId) -> Option<String> {
        self.spans
            .get(usize::from(id.span))?
            .endpoint_name(usize::from(id.index))
    }

    /// Every channel with its endpoint name, in configuration order.
    pub fn endpoints(&self) -> impl Iterator<Item = (ChannelId, String)> + '_ {
        self.spans.iter().enumerate().flat_map(|(s, span)| {
            (0..span.len()).filter_map(move |i| {
                let id = ChannelId {
                    span: u16::try_from(s).ok()?,
                    index: u16::try_from(i).ok()?,
                };
                Some((id, span.endpoint_name(i)?))
            })
        })
    }

    /// A channel by id.
    pub fn channel_mut(&mut self, id: ChannelId) -> Option<&mut AnyChannel> {
        self.spans
            .get_mut(usize::from(id.span))?
            .channels
            .get_mut(usize::from(id.index))
    }

    /// The bus clock: call once after every frame. Moves what each looped virtual channel
    /// wrote this frame to its partner (readable next frame) and resets unpaired virtual
    /// channels to silence. Other backends are clocked by their devices and ignore it.
    pub fn tick(&mut self) {
        for &(i, j) in &self.pairs {
            // i < j by construction.
            let (lo, hi) = self.spans.split_at_mut(j);
            let (a, b) = (&mut lo[i], &mut hi[0]);
            let n = a.channels.len().max(b.channels.len());
            for k in 0..n {
                match (a.channels.get_mut(k), b.channels.get_mut(k)) {
                    (Some(AnyChannel::Virtual(x)), Some(AnyChannel::Virtual(y))) => crossover(x, y),
                    (Some(AnyChannel::Virtual(x)), _) | (_, Some(AnyChannel::Virtual(x))) => {
                        x.tick_alone()
                    }
                    _ => {}
                }
            }
        }
        for (s, span) in self.spans.iter_mut().enumerate() {
            if span.config.kind != SpanKind::Virtual
                || self.pairs.iter().any(|&(i, j)| i == s || j == s)
            {
                continue;
            }
            for ch in &mut span.channels {
                if let AnyChannel::Virtual(v) = ch {
                    v.tick_alone();
                }
            }
        }
    }
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("name", &self.config.name)
            .field("kind", &self.config.kind)
            .field("law", &self.config.law)
            .field("channels", &self.config.channels)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TdmPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdmPorts")
            .field("spans", &self.spans)
            .field("pairs", &self.pairs)
            .field("samples_per_frame", &self.samples_per_frame)
            .finish()
    }
}
