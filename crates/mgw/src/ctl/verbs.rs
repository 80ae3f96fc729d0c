//! The verb subcommands of `mgw ctl` and the commands they build.

use std::net::SocketAddr;
use std::path::PathBuf;

use mgcp::{Command, ParamName, TransactionId, Verb};

use super::build::{self, add};

/// A verb subcommand of `mgw ctl`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum VerbCmd {
    /// Send raw command text (like the plain form, with the documented exit codes).
    Raw {
        /// A file with the command text (`-` or nothing = standard input). LF line ends
        /// are sent as CRLF; a transaction id of `*` is replaced by `--tid` or a fresh one.
        file: Option<PathBuf>,
    },
    /// CreateConnection: create a connection on an endpoint.
    Crcx {
        #[command(flatten)]
        common: Common,
        /// Call id (C:), hex.
        #[arg(long, value_name = "ID")]
        call: String,
        #[command(flatten)]
        media: Media,
    },
    /// ModifyConnection: change a connection's mode, codecs or remote address.
    Mdcx {
        #[command(flatten)]
        common: Common,
        /// Call id (C:), hex.
        #[arg(long, value_name = "ID")]
        call: String,
        /// Connection id (I:), hex.
        #[arg(long, value_name = "ID")]
        conn: String,
        #[command(flatten)]
        media: Media,
    },
    /// DeleteConnection: delete one connection, a call's connections or all of them.
    Dlcx {
        #[command(flatten)]
        common: Common,
        /// Call id (C:), hex.
        #[arg(long, value_name = "ID")]
        call: Option<String>,
        /// Connection id (I:), hex.
        #[arg(long, value_name = "ID")]
        conn: Option<String>,
    },
    /// NotificationRequest: request events, play signals, set a digit map.
    Rqnt {
        #[command(flatten)]
        common: Common,
        /// Request identifier (X:), hex.
        #[arg(long, value_name = "ID")]
        request_id: String,
        /// Requested events (R:), e.g. 'D/[0-9](N), L/hu(N)'; empty = none.
        #[arg(long, value_name = "EVENTS")]
        events: Option<String>,
        /// Signal requests (S:), e.g. 'D/5' or 'L/rg'; empty = stop signals.
        #[arg(long, value_name = "SIGNALS")]
        signals: Option<String>,
        /// Digit map (D:), e.g. '(xx|911)'.
        #[arg(long, value_name = "MAP")]
        digit_map: Option<String>,
        /// Notified entity (N:), [name@]host[:port].
        #[arg(long, value_name = "ENTITY")]
        notify: Option<String>,
    },
    /// AuditEndpoint: ask an endpoint for information.
    Auep {
        #[command(flatten)]
        common: Common,
        /// Requested info (F:), e.g. 'A,I,R'.
        #[arg(long, value_name = "CODES")]
        info: Option<String>,
    },
    /// AuditConnection: ask about one connection.
    Aucx {
        #[command(flatten)]
        common: Common,
        /// Connection id (I:), hex.
        #[arg(long, value_name = "ID")]
        conn: String,
        /// Requested info (F:), e.g. 'C,M,P,LC,RC'.
        #[arg(long, value_name = "CODES")]
        info: Option<String>,
    },
    /// EndpointConfiguration: set an endpoint's bearer encoding.
    Epcf {
        #[command(flatten)]
        common: Common,
        /// Bearer information (B:), 'e:A' or 'e:mu'.
        #[arg(long, value_name = "BEARER")]
        bearer: String,
    },
}

/// What every verb takes.
#[derive(clap::Args, Debug)]
pub(crate) struct Common {
    /// The endpoint, local@domain (e.g. rtpbridge/1@mgw, ds/e1-1/1@gw, rtpbridge/*@mgw).
    endpoint: String,
    /// An extra parameter line, 'NAME: VALUE' (a parameter code or an X- extension);
    /// repeatable.
    #[arg(long = "param", value_name = "'NAME: VALUE'")]
    params: Vec<String>,
}

/// The media options of CRCX and MDCX.
#[derive(clap::Args, Debug)]
pub(crate) struct Media {
    /// Connection mode (M:): sendonly, recvonly, sendrecv, inactive, loopback, ...
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// A codec, NAME[/RATE[/CHANNELS]] (PCMU, PCMA, G722, G729, telephone-event, opus,
    /// ...); repeat for more, in order of preference. Goes into L: a: and the SDP.
    #[arg(long, value_name = "CODEC")]
    codec: Vec<String>,
    /// Packetization period in ms (L: p:, and a=ptime in the SDP).
    #[arg(long, value_name = "MS")]
    ptime: Option<u32>,
    /// Further local connection options, e.g. 'e:on, nt:IN' (--codec/--ptime win).
    #[arg(long, value_name = "LCO")]
    lco: Option<String>,
    /// Send this session description (`-` = standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "remote")]
    sdp: Option<PathBuf>,
    /// Build a session description offering the codecs (PCMU when none) at this address.
    #[arg(long, value_name = "IP:PORT")]
    remote: Option<SocketAddr>,
    /// Notified entity (N:), [name@]host[:port].
    #[arg(long, value_name = "ENTITY")]
    notify: Option<String>,
}

impl Media {
    fn apply(&self, cmd: &mut Command) -> Result<(), String> {
        let codecs = build::parse_codecs(&self.codec)?;
        if let Some(n) = &self.notify {
            add(cmd, ParamName::NotifiedEntity, build::notified_entity(n)?)?;
        }
        if let Some(l) = build::lco(self.lco.as_deref(), self.ptime, &codecs)? {
            add(cmd, ParamName::LocalConnectionOptions, l)?;
        }
        if let Some(m) = &self.mode {
            add(cmd, ParamName::ConnectionMode, build::mode(m)?)?;
        }
        if let Some(p) = &self.sdp {
            cmd.sdp = Some(build::read_sdp(p)?);
        } else if let Some(r) = self.remote {
            let offer = if codecs.is_empty() {
                build::parse_codecs(&["PCMU".to_string()])?
            } else {
                codecs
            };
            cmd.sdp = Some(build::remote_sdp(r, &offer, self.ptime, cmd.tid.get())?);
        }
        Ok(())
    }
}

impl Common {
    fn start(&self, verb: Verb, tid: TransactionId) -> Result<Command, String> {
        build::command(verb, tid, &self.endpoint)
    }

    fn finish(&self, cmd: &mut Command) -> Result<(), String> {
        for p in &self.params {
            let (name, value) = build::param(p)?;
            add(cmd, name, value)?;
        }
        Ok(())
    }
}

impl VerbCmd {
    /// Builds the command; `None` for `raw`, whose text comes from a file.
    pub(crate) fn to_command(&self, tid: TransactionId) -> Option<Result<Command, String>> {
        let r = match self {
            VerbCmd::Raw { .. } => return None,
            VerbCmd::Crcx {
                common,
                call,
                media,
            } => common.start(Verb::Crcx, tid).and_then(|mut c| {
                add(&mut c, ParamName::CallId, build::call_id(call)?)?;
                media.apply(&mut c)?;
                common.finish(&mut c).map(|()| c)
            }),
            VerbCmd::Mdcx {
                common,
                call,
                conn,
                media,
            } => common.start(Verb::Mdcx, tid).and_then(|mut c| {
                add(&mut c, ParamName::CallId, build::call_id(call)?)?;
                add(&mut c, ParamName::ConnectionId, build::conn_id(conn)?)?;
                media.apply(&mut c)?;
                common.finish(&mut c).map(|()| c)
            }),
            VerbCmd::Dlcx { common, call, conn } => {
                common.start(Verb::Dlcx, tid).and_then(|mut c| {
                    if let Some(call) = call {
                        add(&mut c, ParamName::CallId, build::call_id(call)?)?;
                    }
                    if let Some(conn) = conn {
                        add(&mut c, ParamName::ConnectionId, build::conn_id(conn)?)?;
                    }
                    common.finish(&mut c).map(|()| c)
                })
            }
            VerbCmd::Rqnt {
                common,
                request_id,
                events,
                signals,
                digit_map,
                notify,
            } => common.start(Verb::Rqnt, tid).and_then(|mut c| {
                if let Some(n) = notify {
                    add(
                        &mut c,
                        ParamName::NotifiedEntity,
                        build::notified_entity(n)?,
                    )?;
                }
                add(
                    &mut c,
                    ParamName::RequestIdentifier,
                    build::request_id(request_id)?,
                )?;
                if let Some(e) = events {
                    add(&mut c, ParamName::RequestedEvents, build::events(e)?)?;
                }
                if let Some(s) = signals {
                    add(&mut c, ParamName::SignalRequests, build::signals(s)?)?;
                }
                if let Some(d) = digit_map {
                    add(&mut c, ParamName::DigitMap, build::digit_map(d)?)?;
                }
                common.finish(&mut c).map(|()| c)
            }),
            VerbCmd::Auep { common, info } => common.start(Verb::Auep, tid).and_then(|mut c| {
                if let Some(f) = info {
                    add(&mut c, ParamName::RequestedInfo, build::info(f)?)?;
                }
                common.finish(&mut c).map(|()| c)
            }),
            VerbCmd::Aucx { common, conn, info } => {
                common.start(Verb::Aucx, tid).and_then(|mut c| {
                    add(&mut c, ParamName::ConnectionId, build::conn_id(conn)?)?;
                    if let Some(f) = info {
                        add(&mut c, ParamName::RequestedInfo, build::info(f)?)?;
                    }
                    common.finish(&mut c).map(|()| c)
                })
            }
            VerbCmd::Epcf { common, bearer } => common.start(Verb::Epcf, tid).and_then(|mut c| {
                add(&mut c, ParamName::BearerInformation, build::bearer(bearer)?)?;
                common.finish(&mut c).map(|()| c)
            }),
        };
        Some(r)
    }
}
