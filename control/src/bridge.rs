//! Dataplane events into the tokio loop, one wake-up per batch.
//!
//! The workers report events on a bounded crossbeam channel (`try_send` only). The server
//! loop takes them straight from that channel on every pass ([`DpEvents::drain`]); a
//! small bridge thread only rings a doorbell ([`tokio::sync::Notify`]) when events wait
//! while the loop sleeps. After ringing, the bridge parks until the loop has drained the
//! channel, so a burst of events (a batch of `Removed` after a batch of DLCX) costs one
//! ring instead of one cross-thread hand-over per event.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};

use crossbeam_channel::{Receiver, Select, TryRecvError};
use mgw_dataplane::DataplaneEvent;
use tokio::sync::Notify;

/// Most events taken per pass of the server loop (the rest wait for the next pass).
const DRAIN_MAX: usize = 1024;

/// State shared by the loop and the bridge thread.
#[derive(Debug, Default)]
struct Shared {
    /// The bridge rang and parked; the loop unparks it after draining.
    waiting: AtomicBool,
    /// The bridge thread must end.
    stop: AtomicBool,
}

/// The loop's end: the event channel and the doorbell.
pub(crate) struct DpEvents {
    rx: Receiver<DataplaneEvent>,
    bell: Arc<Notify>,
    shared: Arc<Shared>,
    bridge: Thread,
}

/// The owner's handle on the bridge thread.
pub(crate) struct Bridge {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

/// Starts the bridge thread for `rx`.
pub(crate) fn start(rx: Receiver<DataplaneEvent>) -> io::Result<(DpEvents, Bridge)> {
    let bell = Arc::new(Notify::new());
    let shared = Arc::new(Shared::default());
    let thread = {
        let (rx, bell, shared) = (rx.clone(), Arc::clone(&bell), Arc::clone(&shared));
        std::thread::Builder::new()
            .name("mgw-dp-events".into())
            .spawn(move || ring_loop(&rx, &bell, &shared))?
    };
    let events = DpEvents {
        rx,
        bell,
        shared: Arc::clone(&shared),
        bridge: thread.thread().clone(),
    };
    Ok((events, Bridge { shared, thread }))
}

fn ring_loop(rx: &Receiver<DataplaneEvent>, bell: &Notify, shared: &Shared) {
    let mut sel = Select::new();
    sel.recv(rx);
    loop {
        // Blocks until an event waits (or every sender is gone) without taking it.
        sel.ready();
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        shared.waiting.store(true, Ordering::Release);
        bell.notify_one();
        // Until the loop has drained the channel (a spurious wake-up only costs a
        // redundant ring).
        while shared.waiting.load(Ordering::Acquire) && !shared.stop.load(Ordering::Acquire) {
            std::thread::park();
        }
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
    }
}

impl DpEvents {
    /// Resolves when the bridge rang (events may wait; call [`DpEvents::drain`]).
    pub(crate) async fn rung(&self) {
        self.bell.notified().await;
    }

    /// Hands waiting events to `f` (at most [`DRAIN_MAX`]), then lets the bridge watch the
    /// channel again. Returns false once every sender is gone and the channel is empty.
    pub(crate) fn drain(&self, mut f: impl FnMut(DataplaneEvent)) -> bool {
        let mut open = true;
        for _ in 0..DRAIN_MAX {
            match self.rx.try_recv() {
                Ok(ev) => f(ev),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if open && self.shared.waiting.swap(false, Ordering::AcqRel) {
            self.bridge.unpark();
        }
        open
    }
}

impl Bridge {
    /// Stops the bridge thread and waits for it. Call after the dataplane has shut down
    /// (its senders are gone, so a bridge blocked on the channel wakes up).
    pub(crate) fn stop(self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgw_dataplane::ConnKey;
    use std::time::Duration;

    #[test]
    fn rings_once_per_batch_and_stops() {
        let (tx, rx) = crossbeam_channel::bounded(64);
        let (events, bridge) = start(rx).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            for round in 0..50u32 {
                for i in 0..5 {
                    tx.try_send(DataplaneEvent::Removed {
                        key: ConnKey(round * 10 + i),
                    })
                    .unwrap();
                }
                tokio::time::timeout(Duration::from_secs(5), events.rung())
                    .await
                    .expect("the bridge rings when events wait");
                let mut got = Vec::new();
                assert!(events.drain(|ev| got.push(ev)));
                // Events that arrived while the bell was answered are taken too; none is lost.
                while got.len() < 5 {
                    tokio::time::timeout(Duration::from_secs(5), events.rung())
                        .await
                        .expect("rings again for the rest");
                    events.drain(|ev| got.push(ev));
                }
                let keys: Vec<u32> = got
                    .iter()
                    .map(|ev| match ev {
                        DataplaneEvent::Removed { key } => key.0,
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect();
                let want: Vec<u32> = (0..5).map(|i| round * 10 + i).collect();
                assert_eq!(keys, want);
            }
        });
        drop(tx);
        assert!(
            !events.drain(|_| {}),
            "disconnected once the senders are gone"
        );
        bridge.stop();
    }

    #[test]
    fn stop_while_waiting_on_an_open_channel() {
        let (tx, rx) = crossbeam_channel::bounded::<DataplaneEvent>(4);
        let (_events, bridge) = start(rx).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // The bridge sits in `ready()`; the senders go away as the dataplane stops.
        drop(tx);
        bridge.stop();
    }
}
