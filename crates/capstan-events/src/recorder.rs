//! The non-blocking recorder and the handle on its writer thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::{Error, Event};

/// Hands events to the writer thread. Cheap to clone; [`Recorder::record`] never blocks.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub(crate) tx: mpsc::Sender<Event>,
    pub(crate) counters: Arc<Counters>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) recorded: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Recorder {
    /// Queues an event for the store; when the queue is full the event is dropped and counted.
    pub fn record(&self, e: Event) {
        match self.tx.try_send(e) {
            Ok(()) => self.counters.recorded.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Queues the events of `events` in one reservation when the queue has room
    /// for all of them, else one by one, each that does not fit dropped and
    /// counted. Leaves `events` empty, its room kept for the next ones.
    ///
    /// A producer that gathers its events and hands them over in batches this
    /// way touches the queue's shared state once per batch, not per event.
    pub fn record_many(&self, events: &mut Vec<Event>) {
        let n = events.len();
        if n == 0 {
            return;
        }
        match self.tx.try_reserve_many(n) {
            Ok(permits) => {
                for (permit, e) in permits.zip(events.drain(..)) {
                    permit.send(e);
                }
                self.counters
                    .recorded
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {
                for e in events.drain(..) {
                    self.record(e);
                }
            }
        }
    }

    /// Events dropped because the queue was full (or the writer had stopped).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Events accepted into the queue.
    pub fn recorded(&self) -> u64 {
        self.counters.recorded.load(Ordering::Relaxed)
    }

    /// Events written to the store.
    pub fn stored(&self) -> u64 {
        self.counters.stored.load(Ordering::Relaxed)
    }

    /// Events lost because the store refused their batch (logged as a warning).
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// The most events the queue holds: a batch larger than this is never
    /// taken whole by [`Recorder::try_record_all`].
    pub fn capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Queues all of `events` or none. When none (nothing queued, nothing
    /// counted as dropped), says why: the queue has no room for all of them
    /// now, or the writer thread has stopped and never will take any.
    pub fn try_record_all(&self, events: Vec<Event>) -> Result<(), NotQueued> {
        let n = events.len();
        if n == 0 {
            return Ok(());
        }
        match self.tx.try_reserve_many(n) {
            Ok(permits) => {
                for (permit, e) in permits.zip(events) {
                    permit.send(e);
                }
                self.counters
                    .recorded
                    .fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
            // A batch over the capacity is refused as full before the queue
            // is looked at: ask it whether it is closed too.
            Err(TrySendError::Closed(())) => Err(NotQueued::WriterStopped),
            Err(TrySendError::Full(())) if self.tx.is_closed() => Err(NotQueued::WriterStopped),
            Err(TrySendError::Full(())) => Err(NotQueued::Full),
        }
    }
}

/// Why [`Recorder::try_record_all`] queued nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotQueued {
    /// The queue has no room for all the events now; the writer is draining
    /// it, so the same events may fit later.
    #[error("the event queue is full")]
    Full,
    /// The writer thread has stopped (it ended abnormally): nothing will be
    /// queued or stored again through this recorder, however long one waits.
    #[error("the event writer has stopped; no event can be stored")]
    WriterStopped,
}

/// The writer thread; [`RecorderTask::shutdown`] waits until it has written what is queued.
#[derive(Debug)]
pub struct RecorderTask {
    /// Sent when the thread has written the last of the queue.
    pub(crate) done: tokio::sync::oneshot::Receiver<()>,
    pub(crate) counters: Arc<Counters>,
}

/// What the writer thread did with the events it took, once it has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Events written to the store.
    pub stored: u64,
    /// Events lost because the store refused their batch (each logged as a warning).
    pub failed: u64,
}

impl RecorderTask {
    /// Waits until every [`Recorder`] clone is dropped and the queue is
    /// written; then what was written and what was lost.
    pub async fn shutdown(self) -> Result<Written, Error> {
        self.done
            .await
            .map_err(|_| Error::Recorder("the event writer thread stopped abnormally".into()))?;
        Ok(Written {
            stored: self.counters.stored.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Producers racing for the last places, with batches and single
    /// events, take exactly the queue's capacity, and every other event is
    /// counted as dropped. The queue is not drained meanwhile (no writer
    /// reads it), so the figures are exact whatever the machine's load.
    #[test]
    fn producers_racing_for_the_last_places_take_exactly_the_capacity() {
        let (tx, mut rx) = mpsc::channel::<Event>(1500);
        let rec = Recorder {
            tx,
            counters: Arc::new(Counters::default()),
        };
        let start = Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (rec, start) = (rec.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut batch = Vec::new();
                    for i in 0..1000i64 {
                        let e = Event {
                            time_ms: i,
                            ..Event::default()
                        };
                        if t % 2 == 0 {
                            rec.record(e);
                        } else {
                            batch.push(e);
                            if i % 7 == 6 {
                                rec.record_many(&mut batch);
                            }
                        }
                    }
                    rec.record_many(&mut batch);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((rec.recorded(), rec.dropped()), (1500, 2500));
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 1500);
    }
}
