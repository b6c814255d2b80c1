//! Stopping a run on SIGINT or SIGTERM without leaving a half-applied migration.
//!
//! The first signal asks the engine to stop after the migration it is
//! running (a transactional one commits or rolls back as a whole, a
//! no-transaction one runs to its end), so nothing is left dirty. A second
//! signal stops a no-transaction migration at the next statement boundary:
//! the statement running finishes, the migration is recorded dirty with the
//! reason, and `repair` explains it. Either way `up` reports what it applied
//! and exits with code 130.

use std::sync::atomic::{AtomicU8, Ordering};

static SIGNALS: AtomicU8 = AtomicU8::new(0);
static LAST: AtomicU8 = AtomicU8::new(0);

/// Records one more stop request (a signal); `signal` is its number.
#[cfg(feature = "cli")]
pub fn request(signal: u8) {
    LAST.store(signal, Ordering::SeqCst);
    let _ = SIGNALS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
        Some(n.saturating_add(1))
    });
}

/// True once a stop was requested: no new migration starts.
pub fn stop_between_migrations() -> bool {
    SIGNALS.load(Ordering::SeqCst) >= 1
}

/// True once a second stop was requested: a no-transaction migration stops
/// before its next statement.
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "cli"))]
pub fn stop_between_statements() -> bool {
    SIGNALS.load(Ordering::SeqCst) >= 2
}

/// The name of the last signal received (`SIGTERM`, `SIGINT`), if any.
pub fn signal_name() -> Option<&'static str> {
    match LAST.load(Ordering::SeqCst) {
        0 => None,
        2 => Some("SIGINT"),
        15 => Some("SIGTERM"),
        _ => Some("a signal"),
    }
}

/// Installs SIGINT and SIGTERM handlers that call [`request`] (call once,
/// before a run starts). They run on a thread of their own, so a statement
/// that keeps the caller's thread busy (SQLite runs on it) does not delay
/// them.
#[cfg(feature = "cli")]
pub fn install() {
    use std::sync::Once;
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("capstan-signals".into())
            .spawn(|| {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(listen());
            });
        if let Err(e) = spawned {
            eprintln!("capstan: cannot watch for SIGINT/SIGTERM: {e}");
        }
    });
}

#[cfg(feature = "cli")]
async fn listen() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("capstan: cannot watch for SIGINT/SIGTERM");
        return;
    };
    loop {
        let number = tokio::select! {
            _ = int.recv() => 2u8,
            _ = term.recv() => 15u8,
        };
        request(number);
        if SIGNALS.load(Ordering::SeqCst) >= 3 {
            eprintln!("capstan: third signal: exiting now, as if killed");
            std::process::exit(130);
        }
        let message = if stop_between_statements() {
            "stopping at the next statement boundary; a no-transaction migration will be left dirty (recorded)"
        } else {
            "stopping after the current migration (signal again to stop at the next statement boundary)"
        };
        eprintln!(
            "capstan: {} received: {message}",
            signal_name().unwrap_or("signal")
        );
    }
}
