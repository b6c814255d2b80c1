//! A request whose handling panics: answered and recorded as the proxy's
//! failure, not lost as a client's cancellation.
//!
//! Left to the runtime, a panic in a connection's task ends the task: the
//! client's connection drops without an answer, and the request's future is
//! dropped later, when nothing tells that drop from a client that went away.

use std::cell::Cell;
use std::future::Future;
use std::task::Poll;

thread_local! {
    /// Set while [`unless_panicked`] drops a future that panicked.
    static PANICKED: Cell<bool> = const { Cell::new(false) };
}

/// Whether what is being dropped on this thread goes because a request's
/// handling panicked, not because its client went away: dropped by the
/// unwinding itself (an `async` block's locals are), or by
/// [`unless_panicked`] dropping the future that panicked.
pub(crate) fn handling_panicked() -> bool {
    std::thread::panicking() || PANICKED.get()
}

/// Runs `fut`; `None` if a poll of it panicked. The future is dropped right
/// then, on this thread, with [`handling_panicked`] true while it drops.
pub(crate) async fn unless_panicked<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(Some(fut));
    std::future::poll_fn(|cx| {
        let Some(inner) = fut.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(polled) => polled.map(Some),
            Err(_) => {
                // Cleared by a guard: a destructor that panics in turn
                // must not leave every later drop on this thread marked.
                struct Clear;
                impl Drop for Clear {
                    fn drop(&mut self) {
                        PANICKED.set(false);
                    }
                }
                PANICKED.set(true);
                let _clear = Clear;
                fut.set(None);
                Poll::Ready(None)
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Notes, when dropped, whether it was dropped for a panic.
    struct Probe(Arc<Mutex<Vec<bool>>>);

    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(handling_panicked());
        }
    }

    #[tokio::test]
    async fn a_panicking_future_is_dropped_as_panicked_and_gives_none() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe(seen.clone());
        let out = unless_panicked(async move {
            let _held = probe;
            tokio::task::yield_now().await;
            panic!("a bug in the request path");
        })
        .await;
        let out: Option<()> = out;
        assert_eq!(out, None);
        assert_eq!(*seen.lock().unwrap(), [true]);
        assert!(!handling_panicked(), "the mark is cleared after the drop");
    }

    /// A hand-written future that panics when polled, holding `T`:
    /// unwinding does not drop its fields, dropping it does.
    struct Panics<T>(#[allow(dead_code)] T);

    impl<T> Future for Panics<T> {
        type Output = ();
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<()> {
            panic!("a bug in a hand-written future");
        }
    }

    #[tokio::test]
    async fn a_panicking_hand_written_future_is_dropped_as_panicked() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        assert_eq!(unless_panicked(Panics(Probe(seen.clone()))).await, None);
        assert_eq!(*seen.lock().unwrap(), [true]);
        assert!(!handling_panicked());
    }

    /// Panics in its destructor too.
    struct PanicsWhenDropped;

    impl Drop for PanicsWhenDropped {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("a destructor with a bug");
            }
        }
    }

    #[test]
    fn a_destructor_that_panics_too_leaves_the_mark_cleared() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let twice = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(unless_panicked(Panics(PanicsWhenDropped)))
        }));
        assert!(twice.is_err(), "the destructor's panic goes on");
        assert!(!handling_panicked(), "the mark is cleared all the same");
    }

    #[tokio::test]
    async fn a_finished_or_cancelled_future_is_not_marked() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe(seen.clone());
        let out = unless_panicked(async move {
            let _held = probe;
            tokio::task::yield_now().await;
            7
        })
        .await;
        assert_eq!(out, Some(7));
        // Cancelled: dropped before it ends, as when a client goes away.
        let probe = Probe(seen.clone());
        let cancelled = unless_panicked(async move {
            let _held = probe;
            std::future::pending::<()>().await;
        });
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(1), cancelled)
                .await
                .is_err()
        );
        assert_eq!(*seen.lock().unwrap(), [false, false]);
    }
}
