//! Simulated-time tests of the MGCP transaction layer (RFC 3435 §3.5, §4): at-most-once
//! execution, provisional responses and response acks, retransmission backoff, failover,
//! and the restart and disconnected procedures, on a virtual clock with a lossy network.

mod support;

use std::time::Duration;

use mgcp::params::RestartMethod;
use mgcp::txn::{Config, Destination, Event, LinkState};
use mgcp::{Command, EndpointName, Message, ParamName, ReturnCode, TransactionId, Verb};
use support::{addr, ms, secs, World, CA1, CA2};

fn rqnt(tid: u32) -> String {
    format!("RQNT {tid} aaln/1@gw.example MGCP 1.0\r\nX: 0123\r\nR: L/hd(N)\r\n")
}

fn ntfy() -> Command {
    let mut c = Command::new(
        Verb::Ntfy,
        TransactionId::new(1).unwrap(),
        EndpointName::parse("aaln/1@gw.example").unwrap(),
    );
    c.params.push(ParamName::RequestIdentifier, "0123");
    c.params.push(ParamName::ObservedEvents, "L/hd");
    c
}

fn is_link_up(e: &Event) -> bool {
    matches!(e, Event::LinkUp { .. })
}

/// Checks that consecutive instants follow the backoff `bases` (each gap in
/// `[base, 1.25 * base]`, the configured jitter).
fn assert_backoff(instants: &[Duration], bases_ms: &[u64]) {
    assert_eq!(instants.len(), bases_ms.len() + 1, "instants {instants:?}");
    for (w, base) in instants.windows(2).zip(bases_ms) {
        let gap = w[1] - w[0];
        let lo = ms(*base);
        let hi = lo + lo / 4;
        assert!(
            gap >= lo && gap <= hi,
            "gap {gap:?} not in [{lo:?}, {hi:?}] ({instants:?})"
        );
    }
}

// ---------------------------------------------------------------- at-most-once

#[test]
fn duplicated_commands_under_reordering_execute_once() {
    let mut w = World::new(Config::default(), &[CA1], 1);
    let ca = addr(CA1);
    w.net.delay_min = ms(1);
    w.net.delay_max = ms(80); // copies overtake each other
    for _ in 0..5 {
        w.inject(ca, rqnt(1001).as_bytes());
        w.run_for(ms(5));
        w.inject(ca, rqnt(1002).as_bytes());
        w.run_for(ms(5));
    }
    w.run_for(secs(1));
    let tid_of = |p: &support::Packet| p.bytes[5..9].to_vec();
    let sent: Vec<_> = w
        .net
        .sent
        .iter()
        .filter(|p| p.from == ca)
        .map(tid_of)
        .collect();
    let got: Vec<_> = w
        .net
        .delivered
        .iter()
        .filter(|p| p.from == ca)
        .map(tid_of)
        .collect();
    assert_ne!(sent, got, "the network reordered the copies");

    assert_eq!(w.executions_of(ca, 1001), 1);
    assert_eq!(w.executions_of(ca, 1002), 1);
    let resps = w.responses_at(0);
    assert_eq!(resps.len(), 10, "every copy is answered");
    assert!(resps.iter().all(|(_, r)| r.code == ReturnCode::OK));
    for tid in [1001, 1002] {
        let copies: Vec<_> = w
            .sent_to(ca)
            .into_iter()
            .filter(|p| p.messages()[0].tid().get() == tid)
            .map(|p| p.bytes.clone())
            .collect();
        assert_eq!(copies.len(), 5);
        assert!(
            copies.iter().all(|b| *b == copies[0]),
            "byte-identical responses"
        );
    }
    let s = w.gw.stats();
    assert_eq!(s.commands_received, 10);
    assert_eq!(s.commands_delivered, 2);
    assert_eq!(s.duplicates_answered, 8);
    assert_eq!(s.responses_sent, 2);
}

#[test]
fn duplicate_in_progress_gets_100_and_final_is_retransmitted_until_000() {
    let mut w = World::new(Config::default(), &[CA1], 2);
    let ca = addr(CA1);
    w.exec.delay = ms(1000);
    w.cas[0].send_000 = false;
    w.inject(
        ca,
        b"CRCX 42 aaln/1@gw.example MGCP 1.0\r\nC: A3C47F21456789F0\r\nM: recvonly\r\n",
    );
    w.run_for(ms(300));
    w.inject(
        ca,
        b"CRCX 42 aaln/1@gw.example MGCP 1.0\r\nC: A3C47F21456789F0\r\nM: recvonly\r\n",
    );
    w.run_for(ms(100));
    let r = w.responses_at(0);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1.code, ReturnCode::TRANSACTION_IN_PROGRESS);
    assert_eq!(w.gw.stats().duplicates_in_progress, 1);

    // The final response (at ~1005 ms) carries an empty K: and, with no 000 coming back,
    // is retransmitted with the same backoff.
    w.run_for(ms(2500)); // now ~2.9 s
    let finals: Vec<_> = w.sent_to(ca).into_iter().skip(1).collect();
    let first = &finals[0];
    let Message::Response(resp) = &first.messages()[0] else {
        panic!("response expected")
    };
    assert_eq!(resp.code, ReturnCode::OK);
    assert_eq!(resp.params.get(&ParamName::ResponseAck), Some(""));
    assert!(
        finals.iter().all(|p| p.bytes == first.bytes),
        "retransmissions are identical"
    );
    let instants: Vec<_> = finals.iter().map(|p| p.sent).collect();
    assert_backoff(&instants, &[200, 400, 800]);
    assert_eq!(w.executions_of(ca, 42), 1);

    // Now the call agent acknowledges: the next retransmission draws a 000 and stops it.
    w.cas[0].send_000 = true;
    w.run_for(secs(10));
    let total = w.sent_to(ca).len() - 1;
    assert_eq!(total, 5, "one more copy, then silence");
    let s = w.gw.stats();
    assert_eq!(s.response_acks_received, 1);
    assert_eq!(s.response_retransmissions, 4);
    assert_eq!(w.gw.poll_timeout().map(|t| t > w.instant()), Some(true));

    // After the 000 the transaction is confirmed: a stray copy is dropped silently.
    w.inject(
        ca,
        b"CRCX 42 aaln/1@gw.example MGCP 1.0\r\nC: A3C47F21456789F0\r\nM: recvonly\r\n",
    );
    w.run_for(secs(1));
    assert_eq!(w.sent_to(ca).len() - 1, 5);
    assert_eq!(w.gw.stats().duplicates_after_ack, 1);
    assert_eq!(w.executions_of(ca, 42), 1);
}

#[test]
fn final_after_provisional_gives_up_after_max2() {
    let mut w = World::new(Config::default(), &[CA1], 3);
    let ca = addr(CA1);
    w.exec.delay = ms(500);
    w.cas[0].send_000 = false;
    w.inject(ca, rqnt(7).as_bytes());
    w.run_for(ms(100));
    let now = w.instant();
    w.gw.send_provisional(now, ca, TransactionId::new(7).unwrap());
    w.flush();
    w.run_for(secs(60));
    // 1 provisional + 1 final + Max2 (7) retransmissions.
    assert_eq!(w.sent_to(ca).len(), 9);
    let s = w.gw.stats();
    assert_eq!(s.provisionals_sent, 1);
    assert_eq!(s.response_retransmissions, 7);
    assert_eq!(s.response_ack_timeouts, 1);
}

#[test]
fn k_in_later_command_purges_the_cache() {
    let mut w = World::new(Config::default(), &[CA1], 4);
    let ca = addr(CA1);
    w.inject(ca, rqnt(2001).as_bytes());
    w.inject(ca, rqnt(2002).as_bytes());
    w.run_for(ms(100));
    // 2003 confirms the response to 2001 (and a range that includes unknown ids).
    let with_k = "RQNT 2003 aaln/1@gw.example MGCP 1.0\r\nK: 1990-2001\r\nX: 1\r\n";
    w.inject(ca, with_k.as_bytes());
    w.run_for(ms(100));
    assert_eq!(w.gw.stats().responses_confirmed, 1);
    // The K: was consumed before delivery.
    let (_, _, delivered) = w.exec.executions.last().unwrap();
    assert!(!delivered.params.contains(&ParamName::ResponseAck));
    let before = w.sent_to(ca).len();
    assert_eq!(before, 3);
    // A late copy of 2001 is dropped (not executed, not answered); 2002 is still answered.
    w.inject(ca, rqnt(2001).as_bytes());
    w.inject(ca, rqnt(2002).as_bytes());
    w.run_for(ms(100));
    assert_eq!(w.sent_to(ca).len(), before + 1);
    let last = w.responses_at(0).last().unwrap().1.clone();
    assert_eq!(last.tid.get(), 2002);
    assert_eq!(w.executions_of(ca, 2001), 1);
    assert_eq!(w.executions_of(ca, 2002), 1);
    let s = w.gw.stats();
    assert_eq!(s.duplicates_after_ack, 1);
    assert_eq!(s.duplicates_answered, 1);

    // A malformed K: is answered with 539 and the command is not executed.
    w.inject(ca, b"RQNT 2004 aaln/1@gw.example MGCP 1.0\r\nK: 9-3\r\n");
    w.run_for(ms(100));
    let last = w.responses_at(0).last().unwrap().1.clone();
    assert_eq!(
        (last.tid.get(), last.code),
        (2004, ReturnCode::INVALID_PARAMETER)
    );
    assert_eq!(w.executions_of(ca, 2004), 0);
}

#[test]
fn t_hist_expiry_forgets_the_transaction() {
    let mut w = World::new(Config::default(), &[CA1], 5);
    let ca = addr(CA1);
    w.inject(ca, rqnt(3001).as_bytes());
    w.run_until(secs(29));
    w.inject(ca, rqnt(3001).as_bytes());
    w.run_until(secs(30) - ms(100));
    assert_eq!(
        w.executions_of(ca, 3001),
        1,
        "still remembered within T-HIST"
    );
    assert_eq!(w.gw.stats().duplicates_answered, 1);
    w.run_until(secs(31));
    assert_eq!(w.gw.poll_timeout(), None, "nothing left to expire");
    w.inject(ca, rqnt(3001).as_bytes());
    w.run_until(secs(32));
    assert_eq!(
        w.executions_of(ca, 3001),
        2,
        "forgotten after T-HIST: a new transaction"
    );
    assert_eq!(w.responses_at(0).len(), 3);
}

#[test]
fn piggybacked_commands_are_each_handled() {
    let mut w = World::new(Config::default(), &[CA1], 6);
    let ca = addr(CA1);
    let d = format!("{}.\r\n{}", rqnt(11), rqnt(12));
    w.inject(ca, d.as_bytes());
    w.run_for(ms(100));
    assert_eq!(w.executions_of(ca, 11), 1);
    assert_eq!(w.executions_of(ca, 12), 1);
    let tids: Vec<u32> = w.responses_at(0).iter().map(|(_, r)| r.tid.get()).collect();
    assert_eq!(tids, vec![11, 12]);
}

// ---------------------------------------------------------------- errors, sources

#[test]
fn parse_errors_with_tid_get_their_code_and_foreign_sources_are_ignored() {
    let mut w = World::new(Config::default(), &[CA1], 7);
    let ca = addr(CA1);
    let cases: [(&[u8], u16); 4] = [
        (b"CRCX 77 aaln/1@gw.example MGCP 2.0\r\nC: 1\r\n", 528),
        (b"FROB 78 aaln/1@gw.example MGCP 1.0\r\n", 504),
        (b"CRCX 79 aaln/1@gw.example MGCP 1.0\r\nQQ: x\r\n", 539),
        (
            b"CRCX 80 aaln/1@gw.example MGCP 1.0\r\nthis line has no colon\r\n",
            510,
        ),
    ];
    for (text, _) in &cases {
        w.inject(ca, text);
        w.run_for(ms(50));
    }
    let got: Vec<(u32, u16)> = w
        .responses_at(0)
        .iter()
        .map(|(_, r)| (r.tid.get(), r.code.0))
        .collect();
    assert_eq!(got, vec![(77, 528), (78, 504), (79, 539), (80, 510)]);
    assert_eq!(w.gw.stats().parse_errors_answered, 4);
    assert!(w.exec.executions.is_empty());

    // A repeat of a bad message gets the identical cached answer.
    w.inject(ca, cases[0].0);
    w.run_for(ms(50));
    let sent = w.sent_to(ca);
    assert_eq!(sent.len(), 5);
    assert_eq!(sent[4].bytes, sent[0].bytes);

    // No tid, garbage, or a malformed response: dropped, counted, never answered.
    w.inject(ca, b"CRCX x aaln/1@gw.example MGCP 1.0\r\n");
    w.inject(ca, b"\xff\xfe garbage");
    w.inject(ca, b"200 55 OK\r\nno colon here\r\n");
    w.run_for(ms(50));
    assert_eq!(w.sent_to(ca).len(), 5);
    assert_eq!(w.gw.stats().parse_errors_dropped, 3);

    // A valid command from a source that is not a call agent: no response, no event.
    let stranger = addr("10.9.9.9:2727");
    w.inject(stranger, rqnt(90).as_bytes());
    w.inject(stranger, b"CRCX 91 aaln/1@gw.example MGCP 9.9\r\n");
    w.run_for(ms(50));
    assert!(w.sent_to(stranger).is_empty());
    assert!(w.exec.executions.is_empty());
    assert!(w.events.is_empty());
    assert_eq!(w.gw.stats().rejected_sources, 2);

    // The same call agent host from another port is accepted (sources are checked by IP).
    w.inject(addr("10.0.0.1:3000"), rqnt(92).as_bytes());
    w.run_for(ms(50));
    assert_eq!(w.exec.executions.len(), 1);
    assert_eq!(w.sent_to(addr("10.0.0.1:3000")).len(), 1);
}

// ---------------------------------------------------------------- outgoing

#[test]
fn silent_call_agents_backoff_failover_then_failure() {
    let mut w = World::new(Config::default(), &[CA1, CA2], 8);
    let (p, b) = (addr(CA1), addr(CA2));
    w.cas[0].alive = false;
    w.cas[1].alive = false;
    let now = w.instant();
    let tid = w.gw.send_command(now, ntfy(), Destination::CallAgent);
    w.run_for(secs(60));

    let to_p: Vec<_> = w.sent_to(p).iter().map(|x| x.sent).collect();
    let to_b: Vec<_> = w.sent_to(b).iter().map(|x| x.sent).collect();
    // Original + Max1 (5) retransmissions to the primary, doubling from 200 ms and capped
    // at 4 s; then the backup, starting again from 200 ms; Max2 (7) in all.
    assert_backoff(&to_p, &[200, 400, 800, 1600, 3200]);
    assert_eq!(to_b.len(), 2);
    assert_backoff(&[to_p[5], to_b[0], to_b[1]], &[4000, 200]);
    let all_same = w.sent_to(p).iter().chain(w.sent_to(b).iter()).all(
        |x| matches!(&x.messages()[0], Message::Command(c) if c.tid == tid && c.verb == Verb::Ntfy),
    );
    assert!(all_same);

    let failed = w.events_where(|e| matches!(e, Event::Failed { .. }));
    assert_eq!(failed.len(), 1);
    let (t_fail, Event::Failed { tid: ftid, command }) = &failed[0] else {
        unreachable!()
    };
    assert_eq!(*ftid, tid);
    assert_eq!(command.verb, Verb::Ntfy);
    let gap = *t_fail - to_b[1];
    assert!(
        gap >= ms(400) && gap <= ms(500),
        "gave up {gap:?} after the last copy"
    );
    let s = w.gw.stats();
    assert_eq!((s.retransmissions_sent, s.failovers, s.failures), (7, 1, 1));
}

#[test]
fn single_call_agent_gets_max2_retransmissions() {
    let mut w = World::new(Config::default(), &[CA1], 9);
    let p = addr(CA1);
    w.cas[0].alive = false;
    let now = w.instant();
    w.gw.send_command(now, ntfy(), Destination::Addr(p));
    w.run_for(secs(60));
    let to_p: Vec<_> = w.sent_to(p).iter().map(|x| x.sent).collect();
    assert_backoff(&to_p, &[200, 400, 800, 1600, 3200, 4000, 4000]);
    assert_eq!(
        w.events_where(|e| matches!(e, Event::Failed { .. })).len(),
        1
    );
}

#[test]
fn ntfy_gets_through_30_percent_loss_and_acks_ride_in_k() {
    let mut w = World::new(Config::default(), &[CA1], 10);
    let ca = addr(CA1);
    w.net.loss = 0.3;
    w.net.delay_min = ms(5);
    w.net.delay_max = ms(60);
    let mut tids = Vec::new();
    for _ in 0..10 {
        let now = w.instant();
        tids.push(w.gw.send_command(now, ntfy(), Destination::CallAgent));
        w.run_for(secs(30));
    }
    let answered: Vec<_> = w
        .events_where(|e| matches!(e, Event::Response { .. }))
        .into_iter()
        .map(|(_, e)| match e {
            Event::Response { tid, response, .. } => (tid, response.code),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(answered.len(), 10, "every NTFY got through");
    assert!(answered
        .iter()
        .zip(&tids)
        .all(|((t, c), u)| t == u && *c == ReturnCode::OK));
    let retx = w.gw.stats().retransmissions_sent;
    assert!(retx > 0, "loss forced retransmissions");
    assert_eq!(w.sent_to(ca).len() as u64, 10 + retx);
    assert!(
        w.net.sent.len() > w.net.delivered.len(),
        "datagrams were lost"
    );
    // Each later NTFY carries K: confirming the earlier responses.
    let ks: Vec<String> = w
        .commands_at(0)
        .iter()
        .filter_map(|(_, c)| c.params.get(&ParamName::ResponseAck).map(str::to_string))
        .collect();
    assert!(!ks.is_empty());
    let acked: Vec<u32> = ks
        .iter()
        .flat_map(|k| mgcp::txn::parse_response_ack(k).unwrap())
        .flat_map(|(lo, hi)| lo.get()..=hi.get())
        .collect();
    for t in &tids[..9] {
        assert!(acked.contains(&t.get()), "tid {t} acknowledged in a K:");
    }
}

#[test]
fn provisional_stops_retransmission_then_final_is_acked() {
    let mut w = World::new(Config::default(), &[CA1], 11);
    let ca = addr(CA1);
    w.cas[0].auto_answer = false;
    let now = w.instant();
    let tid = w.gw.send_command(now, ntfy(), Destination::CallAgent);
    w.run_for(ms(100));
    w.inject(ca, format!("100 {tid} in progress\r\n").as_bytes());
    w.run_for(secs(5));
    assert_eq!(w.sent_to(ca).len(), 1, "no retransmission after the 100");
    w.inject(ca, format!("200 {tid} OK\r\nK:\r\n").as_bytes());
    w.run_for(ms(100));
    let sent = w.sent_to(ca);
    assert_eq!(sent.len(), 2);
    let Message::Response(ack) = &sent[1].messages()[0] else {
        panic!("000 expected")
    };
    assert_eq!((ack.code, ack.tid), (ReturnCode::RESPONSE_ACK, tid));
    assert_eq!(
        w.events_where(|e| matches!(e, Event::Response { .. }))
            .len(),
        1
    );
    // The call agent repeats its final: it gets another 000, no second event.
    w.inject(ca, format!("200 {tid} OK\r\nK:\r\n").as_bytes());
    w.run_for(ms(100));
    assert_eq!(w.sent_to(ca).len(), 3);
    assert_eq!(
        w.events_where(|e| matches!(e, Event::Response { .. }))
            .len(),
        1
    );
    assert_eq!(w.gw.stats().duplicate_responses, 1);
}

// ---------------------------------------------------------------- restart

#[test]
fn restart_answered_gives_link_up() {
    let mut w = World::new(Config::default(), &[CA1], 12);
    let ca = addr(CA1);
    assert_eq!(w.gw.state(), LinkState::Restarting);
    let now = w.instant();
    w.gw.restart(now, RestartMethod::Restart, None);
    w.run_for(secs(1));
    let cmds = w.commands_at(0);
    assert_eq!(cmds.len(), 1);
    let rsip = &cmds[0].1;
    assert_eq!(rsip.verb, Verb::Rsip);
    assert_eq!(rsip.endpoint.to_string(), "*@gw.example");
    assert_eq!(rsip.params.get(&ParamName::RestartMethod), Some("restart"));
    assert!(!rsip.params.contains(&ParamName::RestartDelay));
    assert_eq!(w.gw.state(), LinkState::Connected);
    let ups = w.events_where(is_link_up);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].1, Event::LinkUp { call_agent: ca });

    // Graceful with a delay carries RD: in seconds.
    let now = w.instant();
    w.gw.restart(now, RestartMethod::Graceful, Some(secs(300)));
    w.run_for(secs(1));
    let rsip = w.commands_at(0).last().unwrap().1.clone();
    assert_eq!(rsip.params.get(&ParamName::RestartMethod), Some("graceful"));
    assert_eq!(rsip.params.get(&ParamName::RestartDelay), Some("300"));
    // ...and confirms the first RSIP's response in K:.
    let k = rsip.params.get(&ParamName::ResponseAck).unwrap();
    assert_eq!(k, cmds[0].1.tid.to_string());
}

#[test]
fn restart_avalanche_wait_is_random_and_bounded() {
    let mut starts = Vec::new();
    for seed in 0..8 {
        let cfg = Config {
            restart_avalanche: secs(10),
            ..Config::default()
        };
        let mut w = World::new(cfg, &[CA1], seed);
        let now = w.instant();
        w.gw.restart(now, RestartMethod::Restart, None);
        assert_eq!(w.gw.poll_timeout().map(|t| t <= now + secs(10)), Some(true));
        w.run_for(secs(12));
        let first = w.sent_to(addr(CA1))[0].sent;
        assert!(first <= secs(10));
        starts.push(first);
        assert_eq!(w.gw.state(), LinkState::Connected);
    }
    starts.sort();
    starts.dedup();
    assert!(
        starts.len() >= 6,
        "waits differ between gateways: {starts:?}"
    );
}

#[test]
fn unanswered_restart_runs_the_disconnected_procedure_until_the_ca_returns() {
    let cfg = Config {
        disconnected_max: secs(60),
        ..Config::default()
    };
    let mut w = World::new(cfg, &[CA1], 13);
    let ca = addr(CA1);
    w.cas[0].alive = false;
    let now = w.instant();
    w.gw.restart(now, RestartMethod::Restart, None);
    w.run_until(secs(300));
    assert_eq!(w.gw.state(), LinkState::Disconnected);
    assert_eq!(w.events_where(|e| *e == Event::LinkDown).len(), 1);

    // Each RSIP transaction: its first copy, and the Failed event that ends it.
    let rsips: Vec<(Duration, String)> = w
        .sent_to(ca)
        .iter()
        .filter_map(|p| match &p.messages()[0] {
            Message::Command(c) => Some((
                p.sent,
                c.tid,
                c.params.get(&ParamName::RestartMethod).unwrap().to_string(),
            )),
            _ => None,
        })
        .fold(
            Vec::<(Duration, TransactionId, String)>::new(),
            |mut v, (t, tid, m)| {
                if v.last().is_none_or(|l| l.1 != tid) {
                    v.push((t, tid, m));
                }
                v
            },
        )
        .into_iter()
        .map(|(t, _, m)| (t, m))
        .collect();
    let fails: Vec<Duration> = w
        .events_where(|e| matches!(e, Event::Failed { .. }))
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(rsips[0].1, "restart");
    assert!(rsips[1..].iter().all(|(_, m)| m == "disconnected"));
    assert!(rsips.len() >= 5, "{rsips:?}");
    // Waits between a failure and the next disconnected RSIP: random in [1 s, Tdinit],
    // then doubling, capped at Tdmax.
    let waits: Vec<Duration> = rsips[1..]
        .iter()
        .zip(&fails)
        .map(|((start, _), fail)| *start - *fail)
        .collect();
    assert!(waits[0] >= secs(1) && waits[0] <= secs(15), "{waits:?}");
    for pair in waits.windows(2) {
        assert_eq!(pair[1], (pair[0] * 2).min(secs(60)), "{waits:?}");
    }
    assert!(waits.contains(&secs(60)), "the cap is reached: {waits:?}");

    // The call agent comes back: the next disconnected RSIP is answered.
    w.cas[0].alive = true;
    w.run_until(secs(500));
    assert_eq!(w.gw.state(), LinkState::Connected);
    let ups = w.events_where(is_link_up);
    assert_eq!(ups.len(), 1);
    let answered = w.commands_at(0);
    assert_eq!(answered.len(), 1);
    assert_eq!(
        answered[0].1.params.get(&ParamName::RestartMethod),
        Some("disconnected")
    );
}

#[test]
fn command_from_ca_while_disconnected_sends_rsip_at_once() {
    let mut w = World::new(Config::default(), &[CA1], 14);
    let ca = addr(CA1);
    w.cas[0].alive = false;
    let now = w.instant();
    w.gw.restart(now, RestartMethod::Restart, None);
    while w.gw.state() != LinkState::Disconnected {
        assert!(w.now < secs(30), "the restart RSIP fails within ~23 s");
        w.run_for(ms(100));
    }
    // Now waiting (at least 1 s) before the first disconnected RSIP.
    let sent_before = w.sent_to(ca).len();
    w.cas[0].alive = true;
    w.inject(ca, b"AUEP 500 aaln/1@gw.example MGCP 1.0\r\n");
    w.run_for(ms(50));
    assert_eq!(
        w.executions_of(ca, 500),
        1,
        "commands are executed while disconnected"
    );
    assert_eq!(w.gw.state(), LinkState::Connected);
    let new: Vec<_> = w.sent_to(ca).into_iter().skip(sent_before).collect();
    let rsip = new.iter().find_map(|p| match &p.messages()[0] {
        Message::Command(c) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(
        rsip.unwrap().params.get(&ParamName::RestartMethod),
        Some("disconnected")
    );
}

#[test]
fn restart_fails_over_to_the_backup_when_the_primary_is_dead() {
    let mut w = World::new(Config::default(), &[CA1, CA2], 15);
    let (p, b) = (addr(CA1), addr(CA2));
    w.cas[0].alive = false;
    let now = w.instant();
    w.gw.restart(now, RestartMethod::Restart, None);
    w.run_for(secs(30));
    assert_eq!(w.sent_to(p).len(), 6, "original + Max1 to the primary");
    assert_eq!(w.sent_to(b).len(), 1);
    assert_eq!(w.gw.state(), LinkState::Connected);
    assert_eq!(
        w.events_where(is_link_up)[0].1,
        Event::LinkUp { call_agent: b }
    );
    assert_eq!(w.gw.call_agent(), b);
    // Later commands go straight to the backup.
    let now = w.instant();
    w.gw.send_command(now, ntfy(), Destination::CallAgent);
    w.run_for(secs(1));
    assert_eq!(w.sent_to(p).len(), 6);
    assert_eq!(w.sent_to(b).len(), 2);
    assert_eq!(
        w.events_where(|e| matches!(e, Event::Response { .. }))
            .len(),
        2
    );
}

#[test]
fn mutated_datagrams_never_panic_and_are_all_accounted_for() {
    let mut w = World::new(Config::default(), &[CA1], 16);
    let ca = addr(CA1);
    let stranger = addr("10.9.9.9:1");
    let seeds: [&[u8]; 4] = [
        b"CRCX 1 aaln/1@gw.example MGCP 1.0\r\nC: 1\r\nK: 3-7, 9\r\nM: sendrecv\r\n\r\nv=0\r\n",
        b"200 5 OK\r\nK:\r\n",
        b"RQNT 2 aaln/*@gw.example MGCP 1.0\r\n.\r\n000 3\r\n.\r\n100 4\r\n",
        b"DLCX 8 aaln/1@gw.example MGCP 1.0\r\nK: 1\r\n",
    ];
    let mut rng = support::Rng::new(99);
    let n = 5000u64;
    for i in 0..n {
        let mut d = seeds[(rng.next_u64() % 4) as usize].to_vec();
        for _ in 0..(rng.next_u64() % 4) {
            let at = (rng.next_u64() as usize) % d.len();
            d[at] = rng.next_u64() as u8;
        }
        let from = if i % 10 == 0 { stranger } else { ca };
        let now = w.instant();
        w.gw.handle_datagram(now, from, &d);
        w.flush();
        w.now += ms(1);
    }
    w.run_for(secs(60));
    // Plus the call agent's own replies (000 acks for final-after-provisional responses).
    let replies = w.net.delivered.iter().filter(|p| p.to == w.gw_addr).count() as u64;
    assert_eq!(w.gw.stats().datagrams_received, n + replies);
    assert!(
        w.sent_to(stranger).is_empty(),
        "nothing is ever sent to a stranger"
    );
    assert!(w.gw.stats().rejected_sources > 0);
    assert!(!w.exec.executions.is_empty());
    assert!(w.gw.stats().parse_errors_answered + w.gw.stats().parse_errors_dropped > 0);
    assert_eq!(w.gw.poll_timeout(), None, "all state expires after T-HIST");
}
