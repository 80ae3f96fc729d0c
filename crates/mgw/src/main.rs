//! `mgw` — a software media gateway: MGCP 1.0 control, RTP dataplane.
//!
//! `mgw run` starts the gateway (on the embedded default configuration unless
//! `--config` names a file; flags win over the file). See `mgw run --help`.

mod config;
mod ctl;
mod load;
mod status;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mgw_control::{GatewayConfig, ShutdownMethod};
use mgw_dataplane::BackendChoice;

#[derive(Parser, Debug)]
#[command(
    name = "mgw",
    version,
    about = "mgw: an MGCP (RFC 3435) media gateway with an RTP dataplane"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the gateway.
    Run(RunArgs),
    /// Send an MGCP command to a gateway (as a call agent would) and print the response.
    Ctl(ctl::CtlArgs),
    /// Load-test an MGCP gateway: N concurrent calls with RTP, then a report.
    Load(load::LoadArgs),
    /// Show the gateway's endpoints, connections and calls (from its admin HTTP server).
    Status(status::StatusArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        what: ConfigCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Print the embedded default configuration.
    Default,
    /// Check a configuration file and report every error with its line.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(clap::Args, Debug, Default, Clone)]
struct RunArgs {
    /// TOML configuration file (flags override it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// MGCP listen address [default: 0.0.0.0:2427].
    #[arg(long, value_name = "IP:PORT")]
    mgcp_bind: Option<SocketAddr>,
    /// Call agent; repeat for backups, first is primary [default: 127.0.0.1:2727].
    #[arg(long = "call-agent", value_name = "HOST:PORT")]
    call_agents: Vec<String>,
    /// Also obey commands from this address or network (repeatable), e.g. 10.0.0.0/24.
    #[arg(long = "allow-from", value_name = "ADDR[/PREFIX]")]
    allow_from: Vec<String>,
    /// Domain name of this gateway's endpoints [default: the host name].
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
    /// Address RTP binds to and advertises in SDP [default: the address that reaches the call agent].
    #[arg(long, value_name = "IP")]
    rtp_bind: Option<IpAddr>,
    /// Address to advertise in SDP when it is not the bind address (NAT) [default: the bind address].
    #[arg(long, value_name = "IP")]
    rtp_advertise: Option<IpAddr>,
    /// RTP port range; RTP on even ports, RTCP on RTP+1 [default: 16384-32767].
    #[arg(long, value_name = "LOW-HIGH")]
    rtp_ports: Option<String>,
    /// Dataplane worker threads [default: one per usable core].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Dataplane I/O backend: auto, io_uring or epoll [default: auto].
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,
    /// Do not pin dataplane workers to cores.
    #[arg(long)]
    no_pin: bool,
    /// Latch RTP to the first source seen (NAT) instead of only the negotiated address.
    #[arg(long)]
    rtp_latch: bool,
    /// On SIGTERM/SIGINT: send RSIP graceful with this delay (seconds), then forced. 0 = forced at once.
    #[arg(long, value_name = "SECONDS")]
    graceful: Option<u64>,
    /// Admin HTTP server (Prometheus /metrics and the JSON API), or `off` [default: 127.0.0.1:9427].
    #[arg(long, value_name = "IP:PORT|off")]
    http_bind: Option<String>,
    /// Trace every MGCP command and media event of this call id (repeatable; also
    /// PUT/DELETE /api/trace/CALLID on the admin server).
    #[arg(long = "trace-call", value_name = "CALLID")]
    trace_calls: Vec<String>,
    /// Log format: text or json [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Log filter (tracing EnvFilter syntax), e.g. info or mgw_control=debug. Also RUST_LOG.
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
}

fn resolve(s: &str) -> Result<SocketAddr, String> {
    let with_port = if s.parse::<SocketAddr>().is_ok()
        || s.rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        s.to_string()
    } else {
        format!("{s}:2727")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("call agent {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("call agent {s:?} resolves to no address"))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn parse_http_bind(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("http bind {s:?} must be IP:PORT or off"))
}

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    match s.to_ascii_lowercase().as_str() {
        "auto" => Ok(BackendChoice::Auto),
        "io_uring" | "io-uring" | "uring" => Ok(BackendChoice::IoUring),
        "epoll" => Ok(BackendChoice::Epoll),
        other => Err(format!(
            "unknown backend {other:?} (use auto, io_uring or epoll)"
        )),
    }
}

/// Validates a configuration file and lists every error with its line: syntax errors
/// come from the TOML parser (which stops at the first); each value error is found by
/// validating, commenting out the offending line and validating again.
fn check_config_file(path: &std::path::Path) -> Result<(), Vec<String>> {
    let mut text = std::fs::read_to_string(path).map_err(|e| vec![e.to_string()])?;
    let mut errors = Vec::new();
    for _ in 0..32 {
        if let Err(e) = config::parse(&text) {
            errors.push(e);
            break;
        }
        let tmp = std::env::temp_dir().join(format!("mgw-check-{}.toml", std::process::id()));
        if std::fs::write(&tmp, &text).is_err() {
            errors.push("cannot write a temporary file".into());
            break;
        }
        let r = build_config(&RunArgs {
            config: Some(tmp.clone()),
            ..RunArgs::default()
        });
        let _ = std::fs::remove_file(&tmp);
        let Err(msg) = r else { break };
        let msg = msg.replace(&format!("{}: ", tmp.display()), "");
        let line = config::keys_of_error(&msg)
            .iter()
            .find_map(|k| config::line_of(&text, k, &msg));
        match line {
            Some(l) => {
                errors.push(format!("line {l}: {msg}"));
                text = config::comment_out(&text, l);
            }
            None => {
                errors.push(msg);
                break;
            }
        }
    }
    let line_no = |e: &String| {
        e.strip_prefix("line ")
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
    errors.sort_by_key(line_no);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn build_config(args: &RunArgs) -> Result<GatewayConfig, String> {
    let file = match &args.config {
        Some(p) => config::load(p)?,
        None => config::parse(config::DEFAULT_CONFIG)?,
    };
    if let Some(l) = &file.log {
        tracing_subscriber::EnvFilter::try_new(l).map_err(|e| format!("log {l:?}: {e}"))?;
    }
    let mut cfg = GatewayConfig {
        domain: host_name(),
        ..GatewayConfig::default()
    };
    if let Some(a) = file.mgcp_bind {
        cfg.mgcp_bind = a;
    }
    if let Some(cas) = &file.call_agents {
        cfg.call_agents = cas.iter().map(|s| resolve(s)).collect::<Result<_, _>>()?;
    }
    if let Some(d) = file.domain {
        cfg.domain = d;
    }
    cfg.rtp_bind = file.rtp_bind;
    cfg.rtp_advertise = file.rtp_advertise;
    if let Some(r) = &file.rtp_ports {
        cfg.rtp_ports = config::parse_port_range(r)?;
    }
    cfg.dataplane.workers = file.workers;
    if let Some(p) = file.pin_workers {
        cfg.dataplane.pin = p;
    }
    if let Some(b) = &file.backend {
        cfg.dataplane.backend = parse_backend(b)?;
    }
    cfg.rtp_latch = file.rtp_latch.unwrap_or(false);
    if let Some(p) = file.ptime {
        if !(10..=200).contains(&p) || p % 10 != 0 {
            return Err(format!(
                "ptime {p} must be a multiple of 10 between 10 and 200"
            ));
        }
        cfg.default_ptime = p;
    }
    let delay = Duration::from_secs(file.shutdown_delay_s.unwrap_or(0));
    cfg.shutdown = match file.shutdown.as_deref() {
        None | Some("forced") => ShutdownMethod::Forced,
        Some("graceful") => ShutdownMethod::Graceful(delay),
        Some(o) => return Err(format!("shutdown {o:?} must be forced or graceful")),
    };
    if let Some(t) = file.timers {
        let tx = &mut cfg.transactions;
        let ms = Duration::from_millis;
        if let Some(v) = t.t_hist_ms {
            tx.t_hist = ms(v);
        }
        if let Some(v) = t.initial_rto_ms {
            tx.initial_rto = ms(v);
        }
        if let Some(v) = t.max_rto_ms {
            tx.max_rto = ms(v);
        }
        if let Some(v) = t.max1 {
            tx.max1 = v;
        }
        if let Some(v) = t.max2 {
            tx.max2 = v;
        }
        if let Some(v) = t.restart_avalanche_ms {
            tx.restart_avalanche = ms(v);
        }
        if let Some(v) = t.disconnected_initial_ms {
            tx.disconnected_initial = ms(v);
        }
        if let Some(v) = t.disconnected_max_ms {
            tx.disconnected_max = ms(v);
        }
        if tx.initial_rto.is_zero() || tx.max_rto < tx.initial_rto {
            return Err("timers: need 0 < initial_rto_ms <= max_rto_ms".into());
        }
        if tx.max1 == 0 || tx.max2 < tx.max1 {
            return Err("timers: need 0 < max1 <= max2".into());
        }
    }
    // Flags win.
    if let Some(a) = args.mgcp_bind {
        cfg.mgcp_bind = a;
    }
    if !args.call_agents.is_empty() {
        cfg.call_agents = args
            .call_agents
            .iter()
            .map(|s| resolve(s))
            .collect::<Result<_, _>>()?;
    }
    let allow: Vec<String> = if args.allow_from.is_empty() {
        file.allow_from.clone().unwrap_or_default()
    } else {
        args.allow_from.clone()
    };
    cfg.allow_from = allow
        .iter()
        .map(|a| {
            mgcp::txn::AllowNet::parse(a)
                .map_err(|_| format!("allow_from {a:?} is not an address or ADDR/PREFIX network"))
        })
        .collect::<Result<_, _>>()?;
    if let Some(d) = &args.domain {
        cfg.domain = d.clone();
    }
    if mgcp::EndpointName::new("x", &cfg.domain).is_err() {
        return Err(format!(
            "domain {:?} is not a valid MGCP domain name",
            cfg.domain
        ));
    }
    if args.rtp_bind.is_some() {
        cfg.rtp_bind = args.rtp_bind;
    }
    if args.rtp_advertise.is_some() {
        cfg.rtp_advertise = args.rtp_advertise;
    }
    if let Some(r) = &args.rtp_ports {
        cfg.rtp_ports = config::parse_port_range(r)?;
    }
    if args.workers.is_some() {
        cfg.dataplane.workers = args.workers;
    }
    if cfg.dataplane.workers == Some(0) {
        return Err("workers must be at least 1".into());
    }
    if let Some(b) = &args.backend {
        cfg.dataplane.backend = parse_backend(b)?;
    }
    if args.no_pin {
        cfg.dataplane.pin = false;
    }
    if args.rtp_latch {
        cfg.rtp_latch = true;
    }
    if let Some(mut tdm) = file.tdm.clone() {
        if tdm.spans.is_empty() {
            tdm.spans = mgw_control::default_tdm().spans;
        }
        tdm.samples_per_frame().map_err(|e| format!("tdm: {e}"))?;
        for span in &tdm.spans {
            span.validate()
                .map_err(|e| format!("tdm span {:?}: {e}", span.name))?;
            if let Some(p) = &span.loop_with {
                if !tdm.spans.iter().any(|s| &s.name == p) {
                    return Err(format!(
                        "tdm span {:?}: loop names unknown span {p:?}",
                        span.name
                    ));
                }
            }
        }
        cfg.tdm = tdm;
    }
    if let Some(d) = &file.announcement_dir {
        cfg.announcement_dir = d.clone();
    }
    if let Some(t) = &file.tone_set {
        let ok = matches!(
            t.to_ascii_lowercase().as_str(),
            "etsi" | "itu" | "europe" | "north-america" | "na" | "us"
        );
        if !ok {
            return Err(format!("tone_set {t:?} must be etsi or north-america"));
        }
        cfg.dataplane.tone_set = t.clone();
    }
    if let Some(c) = &file.codecs {
        let o = &mut cfg.dataplane.codec;
        if let Some(v) = c.opus_rate {
            if ![8000, 12000, 16000, 24000, 48000].contains(&v) {
                return Err(format!(
                    "opus_rate {v} must be 8000, 12000, 16000, 24000 or 48000"
                ));
            }
            o.opus_rate = v;
        }
        if let Some(v) = c.opus_complexity {
            if v > 10 {
                return Err(format!("opus_complexity {v} must be 0..=10"));
            }
            o.opus_complexity = v;
        }
        if let Some(v) = c.opus_bitrate {
            if !(6000..=510_000).contains(&v) {
                return Err(format!("opus_bitrate {v} must be 6000..=510000"));
            }
            o.opus_bitrate = v;
        }
        if let Some(v) = c.opus_fec {
            o.opus_fec = v;
        }
        if let Some(v) = c.opus_dtx {
            o.opus_dtx = v;
        }
        if let Some(v) = c.opus_packet_loss_percent {
            if v > 100 {
                return Err(format!("opus_packet_loss_percent {v} must be 0..=100"));
            }
            o.opus_packet_loss_perc = v;
        }
    }
    if let Some(j) = &file.jitter {
        let b = &mut cfg.dataplane.jitter;
        b.min_delay_ms = j.min_ms.unwrap_or(b.min_delay_ms);
        b.max_delay_ms = j.max_ms.unwrap_or(b.max_delay_ms);
        b.initial_delay_ms = j.initial_ms.unwrap_or(b.initial_delay_ms);
        if b.min_delay_ms > b.initial_delay_ms
            || b.initial_delay_ms > b.max_delay_ms
            || b.max_delay_ms > 2000
        {
            return Err("jitter: need min_ms <= initial_ms <= max_ms <= 2000".into());
        }
    }
    let bridges = file.bridges.unwrap_or(64);
    if bridges > 10_000 {
        return Err(format!("bridges {bridges} is too many (at most 10000)"));
    }
    cfg.endpoints = mgw_control::endpoints_for(&cfg.tdm, bridges);
    let mut seen = std::collections::HashSet::new();
    for e in &cfg.endpoints {
        if !seen.insert(e.local_name.to_ascii_lowercase()) {
            return Err(format!(
                "endpoint {} is defined twice (two spans with one name?)",
                e.local_name
            ));
        }
    }
    cfg.trace_calls = file.trace_calls.clone().unwrap_or_default();
    cfg.trace_calls.extend(args.trace_calls.iter().cloned());
    for c in &cfg.trace_calls {
        mgcp::params::CallId::parse(c)
            .map_err(|_| format!("trace call id {c:?} is not a hex call id"))?;
    }
    if let Some(h) = args.http_bind.as_deref().or(file.http_bind.as_deref()) {
        cfg.http_bind = parse_http_bind(h)?;
    }
    if let Some(g) = args.graceful {
        cfg.shutdown = if g == 0 {
            ShutdownMethod::Forced
        } else {
            ShutdownMethod::Graceful(Duration::from_secs(g))
        };
    }
    Ok(cfg)
}

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// The log filter: `--log`, else the file's `log`, else `RUST_LOG`, else `info`.
fn log_filter(
    args: &RunArgs,
    file_log: Option<&str>,
) -> Result<tracing_subscriber::EnvFilter, String> {
    use tracing_subscriber::EnvFilter;
    match (&args.log, file_log) {
        (Some(f), _) => EnvFilter::try_new(f).map_err(|e| format!("--log {f:?}: {e}")),
        (None, Some(f)) => EnvFilter::try_new(f).map_err(|e| format!("log {f:?}: {e}")),
        (None, None) => {
            Ok(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        }
    }
}

fn init_logging(args: &RunArgs, file_log: Option<&str>) -> Result<FilterHandle, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(args, file_log)?);
    let registry = tracing_subscriber::registry().with(filter);
    match args.log_format.as_deref().unwrap_or("text") {
        "text" => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        "json" => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        other => return Err(format!("--log-format {other:?} must be text or json")),
    }
    .map_err(|e| format!("logging: {e}"))?;
    Ok(handle)
}

/// The `log` key of the configuration file, if any.
fn file_log_level(args: &RunArgs) -> Option<String> {
    args.config
        .as_ref()
        .and_then(|p| config::load(p).ok())
        .and_then(|f| f.log)
}

/// Settings that a SIGHUP cannot change on a running gateway.
fn needs_restart(old: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.mgcp_bind != new.mgcp_bind {
        v.push("mgcp_bind");
    }
    if old.domain != new.domain {
        v.push("domain");
    }
    if old.rtp_bind != new.rtp_bind {
        v.push("rtp_bind");
    }
    if old.rtp_ports != new.rtp_ports {
        v.push("rtp_ports");
    }
    if old.dataplane.workers != new.dataplane.workers
        || old.dataplane.pin != new.dataplane.pin
        || old.dataplane.backend != new.dataplane.backend
    {
        v.push("workers/pin_workers/backend");
    }
    if old.http_bind != new.http_bind {
        v.push("http_bind");
    }
    if old.transactions != new.transactions {
        v.push("timers");
    }
    if old.dataplane.codec != new.dataplane.codec
        || old.dataplane.jitter != new.dataplane.jitter
        || old.dataplane.tone_set != new.dataplane.tone_set
    {
        v.push("codecs/jitter/tone_set");
    }
    if old.tdm != new.tdm || old.endpoints.len() != new.endpoints.len() {
        v.push("tdm/bridges");
    }
    if old.rtp_latch != new.rtp_latch || old.default_ptime != new.default_ptime {
        v.push("rtp_latch/ptime (applies to new connections after a restart)");
    }
    v
}

/// Waits for SIGHUP and re-reads the configuration: call agents and the log filter
/// change at once; other changed settings are reported as needing a restart.
async fn reload_loop(
    args: RunArgs,
    mut current: GatewayConfig,
    filter: FilterHandle,
    tx: tokio::sync::mpsc::Sender<mgw_control::Reload>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        let new = match build_config(&args) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reload failed; the running configuration is unchanged");
                continue;
            }
        };
        match log_filter(&args, file_log_level(&args).as_deref()) {
            Ok(f) => {
                if let Err(e) = filter.reload(f) {
                    tracing::warn!(error = %e, "log filter not changed");
                }
            }
            Err(e) => tracing::error!(error = %e, "log filter not changed"),
        }
        let restart = needs_restart(&current, &new);
        if !restart.is_empty() {
            tracing::warn!(settings = ?restart, "changed settings take effect only after a restart");
        }
        if new.call_agents != current.call_agents || new.allow_from != current.allow_from {
            tracing::info!(call_agents = ?new.call_agents, allow_from = ?new.allow_from, "call agents changed");
            let reload = mgw_control::Reload {
                call_agents: new.call_agents.clone(),
                allow_from: new.allow_from.clone(),
            };
            if tx.send(reload).await.is_err() {
                return;
            }
        }
        current = new;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let cfg = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mgw: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match init_logging(&args, file_log_level(&args).as_deref()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("mgw: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mgw: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let result = rt.block_on(async {
        let reloader = tokio::spawn(reload_loop(args, cfg.clone(), filter, reload_tx));
        let r = mgw_control::run(
            cfg,
            shutdown_signal(),
            |addr, http| {
                // Stable lines for scripts and tests that bind port 0.
                if let Some(h) = http {
                    println!("mgw: admin HTTP on {h}");
                }
                println!("mgw: MGCP listening on {addr}");
            },
            reload_rx,
        )
        .await;
        reloader.abort();
        r
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mgw: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::Status(args) => match status::run(args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mgw status: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::Ctl(args) => ExitCode::from(ctl::run(args)),
        Cmd::Load(args) => ExitCode::from(load::run(args)),
        Cmd::Config {
            what: ConfigCmd::Default,
        } => {
            print!("{}", config::DEFAULT_CONFIG);
            ExitCode::SUCCESS
        }
        Cmd::Config {
            what: ConfigCmd::Check { file },
        } => match check_config_file(&file) {
            Ok(()) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("mgw: {}: {e}", file.display());
                }
                eprintln!("mgw: {}: {} error(s)", file.display(), errors.len());
                ExitCode::from(1)
            }
        },
    }
}
