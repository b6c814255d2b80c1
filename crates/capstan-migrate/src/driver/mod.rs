//! The one interface between the engine and a database.
//!
//! Only the modules behind this trait know a concrete client (`tokio-postgres`,
//! `rusqlite`); the engine decides *what* runs, a driver decides *how*.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::backoff::Backoff;
use crate::source::{Migration, Section};
use crate::split::{Dialect, Statement};

pub(crate) mod archive;
pub(crate) mod catalog;
pub(crate) mod fleet;
pub(crate) mod history;
pub(crate) mod services;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) mod sql;

#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use archive::UnfinishedCopy;
pub use archive::{
    ArchiveEntry, ArchiveStore, CopyRequest, CopySpec, Kind, NewEntry, Scope, UnfinishedQuery,
};
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "cli"))]
pub use archive::{RestoreRequest, RestoreStep, RESTORE_GUARD};
#[cfg(feature = "postgres")]
pub use catalog::ForeignKey;
#[cfg(any(feature = "postgres", feature = "cli"))]
pub use catalog::MoveFacts;
pub use catalog::{CatalogStore, ColumnInfo, OnDelete, Snapshot, TableInfo};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) use fleet::bad_fleet;
pub use fleet::{FleetStore, Instance, InstanceRow};
#[cfg(feature = "postgres")]
pub(crate) use history::bad_history;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use history::ROLLING_BACK;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) use history::{
    check_unique, history_row, section_cells, Cell, HISTORY_COLUMNS, SECTION_COLUMNS,
};
pub use history::{AppliedRow, HistoryStore, Record, RowState, SectionUpdate};
pub use services::ServiceStore;

/// The service every row of capstan's tables belongs to when none is named:
/// a project that declares no service, and every row an older capstan wrote.
pub const DEFAULT_SERVICE: &str = "default";

/// The layout of capstan's own tables this build writes and reads: 1 the
/// first tables, 2 with section hashes in history, 3 with a `service` column
/// in every table (history keyed by service and version), the fleet's
/// `address` and the registry of services. Recorded in capstan's meta table;
/// older layouts are upgraded in place, a newer one is refused.
pub const LAYOUT: i64 = 3;

/// The message for a database whose tables a newer capstan laid out.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn newer_layout(target: &str, found: i64) -> DbError {
    DbError::new(
        FailureKind::BadHistory,
        format!(
            "{target}: capstan's tables have layout {found}, and this capstan knows layouts up to {LAYOUT}: a newer capstan upgraded them. Nothing was run. Use that capstan (or a newer one) for this database"
        ),
    )
}

/// Who runs migrations, recorded in history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `user@host`.
    pub applied_by: String,
    /// `capstan 0.1.0`, or the embedding application's name and version.
    pub binary_version: String,
}

impl Identity {
    /// The current OS user and host, and `binary_version`.
    pub fn current(binary_version: impl Into<String>) -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| whoami::username().ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "unknown".into());
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Identity {
            applied_by: format!("{user}@{host}"),
            binary_version: binary_version.into(),
        }
    }
}

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Run the up section and record the migration.
    Up,
    /// Run the down section and remove the record.
    Down,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Direction::Up => "up",
            Direction::Down => "down",
        })
    }
}

/// One migration section to run.
#[derive(Debug)]
pub struct Job<'a> {
    /// The migration.
    pub migration: &'a Migration,
    /// Up or down.
    pub direction: Direction,
    /// The section to run.
    pub section: &'a Section,
    /// Its statements, split for the driver's dialect (archive copies
    /// included, see [`crate::archive`]).
    pub statements: &'a [Statement],
    /// Length of the migration's own SQL at the start of `section.sql`;
    /// statements starting after it are archive copies.
    pub own_len: usize,
    /// Run in one transaction with the history change.
    pub transactional: bool,
    /// For a no-transaction job resumed after a lock timeout: the first statement to run.
    pub resume_from: usize,
    /// For a no-transaction job tried again: history already marks it
    /// dirty, on this runner's behalf.
    pub resumed: bool,
    /// `lock_timeout` for the DDL (zero: none).
    pub lock_timeout: Duration,
    /// `statement_timeout` (zero: none).
    pub statement_timeout: Duration,
    /// Recorded in history.
    pub identity: &'a Identity,
    /// A note recorded in history with the row (e.g. a forced contract).
    pub note: Option<&'a str>,
}

/// The file line of statement `i` of a job.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub fn statement_line(job: &Job<'_>, i: usize) -> usize {
    job.section.first_line + job.statements.get(i).map_or(0, |s| s.line_offset)
}

/// The 1-based number of statement `i` among the section's own statements,
/// not counting the archive copies spliced in before some of them (those
/// carry the line of the statement they protect, and that statement follows).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub fn own_number(job: &Job<'_>, i: usize) -> usize {
    let copies = job.statements[..i.min(job.statements.len())]
        .iter()
        .filter(|s| s.range.start >= job.own_len)
        .count();
    i + 1 - copies
}

/// A message the server sent while a job ran (Postgres `NOTICE`, `WARNING`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// `NOTICE`, `WARNING`, …
    pub severity: String,
    /// The message.
    pub message: String,
    /// Index of the statement that raised it, when known.
    pub statement: Option<usize>,
}

/// What a finished job reports.
#[derive(Debug, Clone, Default)]
pub struct ExecOutcome {
    /// False when another runner had already done this job (seen under the lock).
    pub done_here: bool,
    /// Server time spent.
    pub duration: Duration,
    /// Notices raised.
    pub notices: Vec<Notice>,
}

/// What kind of failure a job hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// A lock was not granted within `lock_timeout` (or SQLite stayed busy): retryable.
    LockTimeout,
    /// A deadlock was detected: retryable.
    Deadlock,
    /// `statement_timeout` cancelled the statement.
    StatementTimeout,
    /// The role lacks a privilege.
    PermissionDenied,
    /// The connection broke.
    Connection,
    /// Any other SQL error.
    Sql,
    /// SIGINT or SIGTERM stopped the run (see [`crate::interrupt`]).
    Interrupted,
    /// capstan's schema holds something another role controls (an owner
    /// capstan's role is not a member of, a trigger, rule or policy capstan
    /// did not create): using it could run that role's code with capstan's
    /// privileges, so nothing is used.
    Untrusted,
    /// capstan's history table holds a row capstan cannot have written (a
    /// NULL, a negative version, an unknown phase or state, a retyped column).
    BadHistory,
}

impl FailureKind {
    /// True when running the job again later may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, FailureKind::LockTimeout | FailureKind::Deadlock)
    }
}

/// A failed job. A transactional job that fails has changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecFailure {
    /// The kind.
    pub kind: FailureKind,
    /// The server's message.
    pub message: String,
    /// SQLSTATE, when the server gave one.
    pub code: Option<String>,
    /// DETAIL.
    pub detail: Option<String>,
    /// HINT.
    pub hint: Option<String>,
    /// Index of the failing statement in the job, when known.
    pub statement: Option<usize>,
    /// Line offset inside the section, when the server gave a position.
    pub line_offset: Option<usize>,
    /// Notices raised before the failure.
    pub notices: Vec<Notice>,
}

impl ExecFailure {
    /// A failure with only a kind and a message.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        ExecFailure {
            kind,
            message: message.into(),
            code: None,
            detail: None,
            hint: None,
            statement: None,
            line_offset: None,
            notices: Vec::new(),
        }
    }
}

/// A database error outside a migration (connecting, reading history, locking).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    /// The kind.
    pub kind: FailureKind,
    /// The message (never holds a password).
    pub message: String,
}

impl DbError {
    /// A new error.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        DbError {
            kind,
            message: message.into(),
        }
    }
}

/// Who holds the runner lock, as far as the database can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    /// The holder's process: the server backend on Postgres, the runner's
    /// process on SQLite.
    pub pid: Option<i64>,
    /// Its `application_name` (Postgres) or `capstan` (SQLite).
    pub application_name: Option<String>,
    /// Its client address and user (`app@10.0.0.7`), when known.
    pub client: Option<String>,
    /// Since when it holds the lock, or at least since when its session
    /// exists (UTC, RFC 3339).
    pub since: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(pid) = self.pid {
            parts.push(format!("pid {pid}"));
        }
        if let Some(a) = self.application_name.as_deref().filter(|a| !a.is_empty()) {
            parts.push(format!("application_name {a:?}"));
        }
        if let Some(c) = &self.client {
            parts.push(format!("client {c}"));
        }
        if let Some(s) = &self.since {
            parts.push(format!("since {s}"));
        }
        if parts.is_empty() {
            return write!(f, "an unknown runner");
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// The waits between two attempts at the runner lock.
const LOCK_POLL: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(250));
/// The random part of each wait, so that waiting runners do not poll in step.
const LOCK_POLL_JITTER: Duration = Duration::from_millis(10);

/// A database capstan can run migrations on: the runner lock and jobs here,
/// capstan's tables and the catalog through the stores each driver
/// implements with its own SQL.
#[async_trait]
pub trait Driver:
    HistoryStore + FleetStore + CatalogStore + ArchiveStore + ServiceStore + Send
{
    /// Which SQL dialect statements are split for.
    fn dialect(&self) -> Dialect;
    /// The service whose rows this connection reads and writes, and whose
    /// runner lock it takes ([`DEFAULT_SERVICE`] until set).
    fn service(&self) -> &str;
    /// Acts for `service` from now on (call before taking the runner lock).
    fn set_service(&mut self, service: &str);
    /// The target, for messages (password redacted).
    fn describe(&self) -> String;
    /// Takes the runner lock if it is free; false when another runner holds it.
    async fn try_lock(&mut self) -> Result<bool, DbError>;
    /// Takes the runner lock, waiting up to `timeout` for another runner to
    /// finish. The wait polls [`Driver::try_lock`] with backoff from an idle
    /// session, so a waiting runner holds no snapshot (a `CREATE INDEX
    /// CONCURRENTLY` run by the holder would otherwise wait for it). On
    /// timeout the error names the holder.
    async fn lock(&mut self, timeout: Duration) -> Result<(), DbError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            if self.try_lock().await? {
                return Ok(());
            }
            if crate::interrupt::stop_between_migrations() {
                return Err(DbError::new(
                    FailureKind::Interrupted,
                    format!(
                        "stopped by {} while waiting for the migration lock; nothing was run",
                        crate::interrupt::signal_name().unwrap_or("a signal")
                    ),
                ));
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                let holder = self.lock_holder().await.ok().flatten();
                return Err(DbError::new(
                    FailureKind::LockTimeout,
                    format!(
                        "another runner held the migration lock on {} for longer than the runner lock timeout ({}): {}; nothing was run. Wait for it to finish, or raise --runner-lock-timeout",
                        self.describe(),
                        humantime::format_duration(timeout),
                        holder.map_or_else(|| "it has gone since".to_string(), |h| h.to_string())
                    ),
                ));
            }
            let wait = LOCK_POLL.jittered(attempt, LOCK_POLL_JITTER);
            tokio::time::sleep(wait.min(deadline - now)).await;
            attempt += 1;
        }
    }
    /// Which other runner holds the runner lock now (`None`: nobody else,
    /// or unknown).
    async fn lock_holder(&mut self) -> Result<Option<LockHolder>, DbError> {
        Ok(None)
    }
    /// Releases the runner lock.
    async fn unlock(&mut self) -> Result<(), DbError>;
    /// Runs one section and records it, atomically when the job is transactional.
    async fn execute(&mut self, job: &Job<'_>) -> Result<ExecOutcome, ExecFailure>;
    /// Creates an empty scratch database on the same server (for `verify`).
    async fn create_scratch(&mut self) -> Result<Box<dyn Driver>, DbError>;
    /// Drops the scratch database made by `create_scratch` (after it is closed).
    async fn drop_scratch(&mut self, scratch: Box<dyn Driver>) -> Result<(), DbError>;
    /// For a scratch database: its name (Postgres) or file (SQLite).
    fn scratch_name(&self) -> Option<String> {
        None
    }
}
