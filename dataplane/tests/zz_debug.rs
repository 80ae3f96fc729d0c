mod common;
use std::time::Duration;
use common::*;
use mgw_dataplane::BackendChoice;
#[test]
fn dbg() {
    let dp = start(BackendChoice::IoUring);
    let (pa, pb) = (peer(), peer());
    let opts = |p: &std::net::UdpSocket| LegOpts { remote: Some(p.local_addr().unwrap()), ..LegOpts::default() };
    let a = add_leg(&dp, 31, 3, opts(&pa));
    let _b = add_leg(&dp, 32, 3, opts(&pb));
    settle();
    const N: usize = 2000;
    let pb2 = pb.try_clone().unwrap();
    let rx = std::thread::spawn(move || recv_n(&pb2, N, Duration::from_secs(3)));
    for i in 0..N {
        pa.send_to(&rtp(0, i as u16, 160 * i as u32, 1, &[0xd5; 160]), a.rtp_addr).unwrap();
        if i % 20 == 19 { std::thread::sleep(Duration::from_millis(1)); }
    }
    let got = rx.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    eprintln!("got {} stats {:#?}", got.len(), dp.worker_stats());
}
