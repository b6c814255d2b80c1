//! Progress on stderr while migrations run: an "applying …" line before each
//! migration, then a live spinner on a terminal, or a "still applying …" line
//! every few seconds otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use super::output::program;
use crate::archive;
use crate::driver::Direction;
use crate::migrator::Event;
use crate::source::parse_duration;

/// How often a running migration reports its elapsed time when stderr is not
/// a terminal: `CAPSTAN_PROGRESS_INTERVAL` (a duration like `5s`), default 5 s.
fn progress_interval() -> Duration {
    std::env::var("CAPSTAN_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(5))
}

/// Prints "still applying X (12 s)" every interval while a migration runs.
/// The thread ends when the sender is dropped.
fn spawn_ticker(interval: Duration) -> std::sync::mpsc::Sender<Option<String>> {
    let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        let mut running: Option<(String, std::time::Instant)> = None;
        loop {
            match rx.recv_timeout(interval) {
                Ok(next) => running = next.map(|what| (what, std::time::Instant::now())),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Some((what, since)) = &running {
                        eprintln!("still {what} ({} s)", since.elapsed().as_secs());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    tx
}

/// Progress on stderr: an "applying …" line before each migration, and then a
/// live spinner on a terminal, or a "still applying …" line every few seconds
/// otherwise.
pub(crate) struct Progress {
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<std::sync::mpsc::Sender<Option<String>>>,
}

impl Progress {
    /// `quiet`: print nothing (`--json` or `-q`).
    pub(crate) fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (tty && !quiet).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        let ticker = (!tty && !quiet).then(|| spawn_ticker(progress_interval()));
        Progress { quiet, bar, ticker }
    }

    fn line(&self, s: String) {
        match &self.bar {
            Some(b) => b.println(s),
            None if !self.quiet => eprintln!("{s}"),
            None => {}
        }
    }

    /// Renders one event of the engine.
    pub(crate) fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Start {
                migration,
                direction,
            } => {
                let verb = if direction == Direction::Up {
                    "applying"
                } else {
                    "rolling back"
                };
                let what = format!("{verb} {}", migration.label());
                self.line(format!("{what} …"));
                if let Some(t) = &self.ticker {
                    let _ = t.send(Some(what.clone()));
                }
                if let Some(b) = &self.bar {
                    b.set_message(what);
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    b.reset_elapsed();
                }
            }
            Event::Retry {
                migration,
                attempt,
                wait,
                message,
            } => self.line(format!(
                "{}: {message}; attempt {attempt} failed, retrying in {} ms",
                migration.label(),
                wait.as_millis()
            )),
            Event::Notice {
                migration,
                notice,
                line,
            } => {
                let at = line.map(|l| format!(":{l}")).unwrap_or_default();
                self.line(format!(
                    "{}{at}: {}: {}",
                    migration.path.display(),
                    notice.severity,
                    notice.message
                ));
            }
            Event::LockWait => self.line(
                "another runner holds the migration lock; waiting for it to finish".to_string(),
            ),
            Event::Waiting {
                migration,
                blockers,
            } => self.line(format!(
                "waiting before contract migration {}: live instances still need what it removes: {}",
                migration.label(),
                blockers.iter().map(|b| b.describe()).collect::<Vec<_>>().join(", ")
            )),
            Event::Forced {
                migration,
                blockers,
            } => {
                let msg = format!(
                    "WARNING: forcing contract migration {} although live instances do not embed it: {}. They may fail on the changed schema. This is recorded in history.",
                    migration.label(),
                    blockers.iter().map(|b| b.describe()).collect::<Vec<_>>().join(", ")
                );
                match &self.bar {
                    Some(b) => b.println(msg),
                    None => eprintln!("{msg}"),
                }
            }
            Event::Archived { migration, entry } if entry.archive_table.is_none() => {
                self.line(format!(
                    "{}:{}: recorded {} before {}: no rows, so no copy (entry {})",
                    migration.path.display(),
                    entry.line.unwrap_or(0),
                    entry.object(),
                    entry.kind,
                    entry.id
                ))
            }
            Event::Archived { migration, entry } => self.line(format!(
                "{}:{}: archived {} before {}: {} rows ({}) in {} (entry {}; `{} archive restore {}` puts it back)",
                migration.path.display(),
                entry.line.unwrap_or(0),
                entry.object(),
                entry.kind,
                entry.row_count,
                archive::human_bytes(entry.size_bytes),
                entry.copy_name(),
                entry.id,
                program(),
                entry.id
            )),
            Event::Done {
                migration,
                direction,
                duration,
                done_here,
            } => {
                if let Some(t) = &self.ticker {
                    let _ = t.send(None);
                }
                let verb = match (direction, done_here) {
                    (_, false) => "done by another runner",
                    (Direction::Up, true) => "applied",
                    (Direction::Down, true) => "rolled back",
                };
                self.line(format!(
                    "{verb} {} ({} ms)",
                    migration.label(),
                    duration.as_millis()
                ));
            }
        }
    }

    /// Stops the spinner or the ticker.
    pub(crate) fn finish(&mut self) {
        self.ticker = None;
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
