//! `mgw ctl`: a curl-like call-agent command tool.
//!
//! It sends one MGCP command to a gateway, retransmits it as RFC 3435 §3.5 asks (200 ms
//! doubling, capped at 4 s, 7 retransmissions at most; none after a provisional `100`),
//! acknowledges a final response that carries an empty `K:` with `000`, and prints the
//! final response (as text, or as JSON with `--json`).
//!
//! The command comes either from a verb subcommand that builds it (`crcx`, `mdcx`, `dlcx`,
//! `rqnt`, `auep`, `aucx`, `epcf`), or as raw text from a file or standard input (`raw`,
//! or the plain form with no verb).
//!
//! Exit codes: 0 for a 2xx final response, 1 for an error response (4xx/5xx; it is
//! printed too), 2 for usage errors, 3 when no final response arrived. The plain form
//! (`mgw ctl [FILE]`) keeps its historical contract and exits 1 for every failure.

mod build;
mod transact;
mod verbs;

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mgcp::{parse_message, Message, Response, TransactionId};

use transact::Outcome;
use verbs::VerbCmd;

/// Exit code: a 2xx final response.
const EXIT_OK: u8 = 0;
/// Exit code: an error response (4xx/5xx), or any failure in the plain form.
const EXIT_ERROR_RESPONSE: u8 = 1;
/// Exit code: bad arguments or input.
const EXIT_USAGE: u8 = 2;
/// Exit code: no final response (or the socket failed).
const EXIT_NO_RESPONSE: u8 = 3;

/// Arguments of `mgw ctl`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Without a verb, the command text is read from FILE or standard input \
                  (the plain form; it exits 1 on any failure).\n\n\
                  Exit codes: 0 = 2xx response, 1 = error response (printed), \
                  2 = usage error, 3 = no response.\n\n\
                  Examples:\n  \
                  mgw ctl -g 127.0.0.1:2427 crcx 'rtpbridge/*@mgw' --call 1 --mode recvonly --codec PCMU --ptime 20\n  \
                  mgw ctl mdcx rtpbridge/1@mgw --call 1 --conn 1 --mode sendrecv --remote 10.0.0.5:4000\n  \
                  mgw ctl --json aucx rtpbridge/1@mgw --conn 1 --info C,M,P,LC\n  \
                  mgw ctl dlcx rtpbridge/1@mgw --call 1\n  \
                  printf 'AUEP * rtpbridge/1@mgw MGCP 1.0\\nF: A\\n' | mgw ctl"
)]
pub(crate) struct CtlArgs {
    #[command(flatten)]
    opts: Opts,
    #[command(subcommand)]
    verb: Option<VerbCmd>,
    /// A file with the command text (`-` or nothing = standard input). LF line ends are
    /// sent as CRLF; a transaction id of `*` is replaced by `--tid` or a fresh one.
    file: Option<PathBuf>,
}

/// Options every form takes (before or after the verb).
#[derive(clap::Args, Debug)]
struct Opts {
    /// The gateway's MGCP address.
    #[arg(
        long,
        short = 'g',
        default_value = "127.0.0.1:2427",
        value_name = "HOST:PORT",
        global = true
    )]
    gateway: String,
    /// Local address to send from (a gateway only obeys its configured call agents).
    #[arg(
        long,
        default_value = "0.0.0.0:0",
        value_name = "IP:PORT",
        global = true
    )]
    bind: SocketAddr,
    /// Give up after this many seconds without a final response (fractions allowed).
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_timeout, global = true)]
    timeout: Duration,
    /// Transaction id to use [default: a fresh one].
    #[arg(long, value_name = "N", value_parser = parse_tid, global = true)]
    tid: Option<TransactionId>,
    /// Show the command sent (on standard error, lines prefixed with "> ").
    #[arg(long, global = true)]
    print_request: bool,
    /// Print the response as JSON: {code, tid, comment, params: {NAME: value}, sdp}.
    #[arg(long, global = true)]
    json: bool,
    /// Print the command that would be sent and exit without sending it.
    #[arg(long, global = true)]
    dry_run: bool,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v > 0.0 && v <= 86_400.0) {
        return Err(format!("{s:?}: want more than 0 and at most 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_tid(s: &str) -> Result<TransactionId, String> {
    s.parse()
        .ok()
        .and_then(TransactionId::new)
        .ok_or_else(|| format!("{s:?}: want 1 to {}", TransactionId::MAX))
}

fn fresh_tid() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(13))
        .unwrap_or(1);
    (t ^ std::process::id().rotate_left(7)) % 999_999_998 + 1
}

/// Normalises command text: CRLF line ends; the transaction id becomes `tid` when given,
/// and a fresh one when it is `*`.
pub(crate) fn prepare(text: &str, tid: Option<TransactionId>) -> Result<(String, u32), String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    while lines.first().is_some_and(|l| l.trim().is_empty()) {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let header = lines.first_mut().ok_or("no command text")?;
    let mut toks: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    if toks.len() < 2 {
        return Err(format!(
            "{header:?} is not an MGCP command line (VERB TID ENDPOINT MGCP 1.0)"
        ));
    }
    let tid = if let Some(t) = tid {
        toks[1] = t.to_string();
        t.get()
    } else if toks[1] == "*" {
        let t = fresh_tid();
        toks[1] = t.to_string();
        t
    } else {
        toks[1]
            .parse()
            .map_err(|_| format!("transaction id {:?} is not a number (or *)", toks[1]))?
    };
    *header = toks.join(" ");
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    Ok((out, tid))
}

/// A failure before a final response: the message and the exit code.
struct Failure(u8, String);

fn usage(msg: String) -> Failure {
    Failure(EXIT_USAGE, msg)
}

/// Runs `mgw ctl`: prints the response (stdout) or the problem (stderr) and returns the
/// exit code.
pub(crate) fn run(args: CtlArgs) -> u8 {
    let plain = args.verb.is_none();
    match execute(&args) {
        Ok(code) => {
            if plain && code != EXIT_OK {
                EXIT_ERROR_RESPONSE
            } else {
                code
            }
        }
        Err(Failure(code, msg)) => {
            eprintln!("mgw ctl: {msg}");
            if plain {
                EXIT_ERROR_RESPONSE
            } else {
                code
            }
        }
    }
}

fn read_text(file: Option<&Path>) -> Result<String, Failure> {
    let mut text = String::new();
    match file {
        Some(p) if p.as_os_str() != "-" => {
            text = std::fs::read_to_string(p).map_err(|e| usage(format!("{}: {e}", p.display())))?
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| usage(format!("stdin: {e}")))?;
        }
    }
    Ok(text)
}

/// The wire text of the command and its transaction id.
fn command_text(args: &CtlArgs) -> Result<(String, TransactionId), Failure> {
    let raw_file = match &args.verb {
        None => Some(args.file.as_deref()),
        Some(VerbCmd::Raw { file }) => Some(file.as_deref()),
        Some(_) => None,
    };
    if let Some(file) = raw_file {
        let (wire, tid) = prepare(&read_text(file)?, args.opts.tid).map_err(usage)?;
        let tid = TransactionId::new(tid).ok_or_else(|| {
            usage(format!(
                "transaction id {tid} is out of range (1 to {})",
                TransactionId::MAX
            ))
        })?;
        return Ok((wire, tid));
    }
    let tid = match args.opts.tid {
        Some(t) => t,
        // fresh_tid() is in 1..=999_999_998 by construction.
        None => TransactionId::new(fresh_tid()).unwrap_or(TransactionId::FIRST),
    };
    let cmd = match args.verb.as_ref().and_then(|v| v.to_command(tid)) {
        Some(r) => r.map_err(usage)?,
        None => return Err(usage("no command".into())),
    };
    let wire = String::from_utf8_lossy(&Message::Command(cmd).to_bytes()).into_owned();
    // What the builders produce must parse back; anything else is a value they let through.
    parse_message(&wire)
        .map_err(|e| usage(format!("the command would be invalid: {}", e.error)))?;
    Ok((wire, tid))
}

fn execute(args: &CtlArgs) -> Result<u8, Failure> {
    let (wire, tid) = command_text(args)?;
    let opts = &args.opts;
    if opts.dry_run {
        print!("{}", wire.replace("\r\n", "\n"));
        return Ok(EXIT_OK);
    }
    if opts.print_request {
        for line in wire.trim_end_matches("\r\n").split("\r\n") {
            eprintln!("{}", format!("> {line}").trim_end());
        }
        eprintln!(">");
    }
    let gw = opts
        .gateway
        .to_socket_addrs()
        .map_err(|e| usage(format!("gateway {:?}: {e}", opts.gateway)))?
        .next()
        .ok_or_else(|| usage(format!("gateway {:?} has no address", opts.gateway)))?;
    let sock = UdpSocket::bind(opts.bind).map_err(|e| usage(format!("bind {}: {e}", opts.bind)))?;
    let outcome = transact::transact(&sock, gw, wire.as_bytes(), tid, opts.timeout)
        .map_err(|e| Failure(EXIT_NO_RESPONSE, format!("socket: {e}")))?;
    match outcome {
        Outcome::Final {
            response,
            text,
            acked,
        } => {
            if acked && opts.print_request {
                eprintln!("> {} {tid}", mgcp::ReturnCode::RESPONSE_ACK);
                eprintln!(">");
            }
            if opts.json {
                println!("{}", to_json(&response));
            } else {
                print!("{text}");
            }
            Ok(if response.code.is_success() {
                EXIT_OK
            } else {
                EXIT_ERROR_RESPONSE
            })
        }
        Outcome::NoResponse { sent, provisional } => Err(Failure(
            EXIT_NO_RESPONSE,
            format!(
                "no response from {gw} within {:.1} s ({sent} transmissions{})",
                opts.timeout.as_secs_f64(),
                if provisional {
                    "; the gateway answered 100 but sent no final response"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// The response as JSON: code, tid, comment, params (an object by parameter code), sdp.
fn to_json(r: &Response) -> serde_json::Value {
    let params: serde_json::Map<String, serde_json::Value> = r
        .params
        .iter()
        .map(|(n, v)| (n.code().to_string(), serde_json::Value::from(v)))
        .collect();
    serde_json::json!({
        "code": r.code.0,
        "tid": r.tid.get(),
        "comment": r.comment,
        "params": params,
        "sdp": r.sdp.as_ref().map(|s| s.replace("\r\n", "\n")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_normalises() {
        let (w, t) = prepare("\nAUEP 12 x@gw MGCP 1.0\nF: A\n\n", None).unwrap();
        assert_eq!(w, "AUEP 12 x@gw MGCP 1.0\r\nF: A\r\n");
        assert_eq!(t, 12);
        let (w, t) = prepare("AUEP * x@gw MGCP 1.0\n", None).unwrap();
        assert!(w.starts_with(&format!("AUEP {t} ")));
        let (w, t) = prepare("AUEP 5 x@gw MGCP 1.0\n", TransactionId::new(77)).unwrap();
        assert_eq!((w.as_str(), t), ("AUEP 77 x@gw MGCP 1.0\r\n", 77));
        assert!(prepare("", None).is_err());
        assert!(prepare("AUEP", None).is_err());
        assert!(prepare("AUEP x y", None).is_err());
    }

    #[test]
    fn options_parse() {
        assert_eq!(parse_timeout("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("nan").is_err());
        assert!(parse_timeout("x").is_err());
        assert_eq!(parse_tid("9").unwrap().get(), 9);
        assert!(parse_tid("0").is_err());
        assert!(parse_tid("1000000000").is_err());
    }

    #[test]
    fn json_has_every_part() {
        let m = parse_message("200 5 OK\r\nI: 1A\r\nX-Foo: bar\r\n\r\nv=0\r\nc=IN IP4 1.2.3.4\r\n")
            .unwrap();
        let Message::Response(r) = m else {
            panic!("not a response")
        };
        let j = to_json(&r);
        assert_eq!(j["code"], 200);
        assert_eq!(j["tid"], 5);
        assert_eq!(j["comment"], "OK");
        assert_eq!(j["params"]["I"], "1A");
        assert_eq!(j["params"]["X-Foo"], "bar");
        assert_eq!(j["sdp"], "v=0\nc=IN IP4 1.2.3.4\n");
    }
}
