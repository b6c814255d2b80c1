//! Per-worker gathering of events: each worker thread queues the events it
//! records to the recorder in batches, so the workers touch its shared
//! queue once per batch instead of contending for it on every request.

use std::cell::RefCell;
use std::time::Duration;

use capstan_events::{Event, Recorder};

/// Events a worker thread has recorded and not yet queued for the store.
struct LocalEvents {
    recorder: Recorder,
    events: Vec<Event>,
}

/// Events gathered per worker before they are queued.
const LOCAL_EVENTS: usize = 64;

thread_local! {
    /// Set on the proxy's worker threads only.
    static LOCAL: RefCell<Option<LocalEvents>> = const { RefCell::new(None) };
}

/// Queues the events this thread has gathered.
pub(crate) fn flush_local_events() {
    LOCAL.with(|l| {
        if let Some(l) = l.borrow_mut().as_mut() {
            l.recorder.record_many(&mut l.events);
        }
    });
}

/// How often a worker queues what it has gathered even when it never waits
/// for I/O (a long transfer keeps it busy): an event's longest stay.
pub(crate) const LOCAL_EVENTS_EVERY: Duration = Duration::from_millis(100);

/// Gathering on this thread while it lives: the thread's recorded events
/// are queued to the recorder in batches, at [`LOCAL_EVENTS`] and whenever
/// [`flush_local_events`] runs (the worker calls it before it waits for
/// I/O, so no event waits on more traffic, and every
/// [`LOCAL_EVENTS_EVERY`]). The workers then touch the recorder's shared
/// queue once per batch instead of contending for it on every request.
///
/// Dropped, it queues what the thread has gathered and stops gathering
/// (its recorder handle dropped, so the writer can finish), also when the
/// worker unwinds from a panic.
pub(crate) struct LocalEventsGuard(());

impl LocalEventsGuard {
    /// Makes this thread gather the events it records until the guard is dropped.
    pub(crate) fn start(recorder: Recorder) -> Self {
        LOCAL.with(|l| {
            *l.borrow_mut() = Some(LocalEvents {
                recorder,
                events: Vec::with_capacity(LOCAL_EVENTS),
            })
        });
        LocalEventsGuard(())
    }
}

impl Drop for LocalEventsGuard {
    fn drop(&mut self) {
        flush_local_events();
        LOCAL.with(|l| l.borrow_mut().take());
    }
}

/// Records `e`: gathered when this thread gathers, else queued at once.
pub(crate) fn record(recorder: &Recorder, e: Event) {
    LOCAL.with(|l| match l.borrow_mut().as_mut() {
        Some(l) => {
            l.events.push(e);
            if l.events.len() >= LOCAL_EVENTS {
                l.recorder.record_many(&mut l.events);
            }
        }
        None => recorder.record(e),
    });
}
