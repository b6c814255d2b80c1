//! The one interface between the engine and a database.
//!
//! Only the modules behind this trait know a concrete client (`tokio-postgres`,
//! `rusqlite`); the engine decides *what* runs, a driver decides *how*.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::fleet::{Instance, InstanceRow};
use crate::source::{Migration, Section};
use crate::split::{Dialect, Statement};

/// A row of capstan's history table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedRow {
    /// Migration version.
    pub version: u64,
    /// Migration name.
    pub name: String,
    /// Checksum of the whole file when it was applied (kept as it was, so
    /// that a binary built with an older capstan still reads it).
    pub checksum: String,
    /// Hash of the up section that ran ([`crate::source::section_checksum`]);
    /// `None` in a row an older capstan wrote, until the next `up` or `down`
    /// records it.
    pub up_checksum: Option<String>,
    /// Hash of the down section as last recorded (`None`: no down section,
    /// or a row an older capstan wrote).
    pub down_checksum: Option<String>,
    /// Phase when it was applied.
    pub phase: String,
    /// `applied` or `dirty`.
    pub state: String,
    /// When (UTC, RFC 3339).
    pub applied_at: String,
    /// Who (`user@host`).
    pub applied_by: String,
    /// Which binary (`capstan 0.1.0`, `chirpy 1.2.0`).
    pub binary_version: String,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// Ran outside a transaction.
    pub no_transaction: bool,
    /// For a dirty row: the error that left it dirty. Otherwise a note, if any.
    pub error: Option<String>,
}

impl AppliedRow {
    /// True when the row records a failed no-transaction migration.
    pub fn is_dirty(&self) -> bool {
        self.state == "dirty"
    }

    /// True when the row is dirty because a down section failed part-way
    /// (its error starts with [`ROLLING_BACK`]).
    pub fn is_dirty_going_down(&self) -> bool {
        self.is_dirty()
            && self
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with(ROLLING_BACK))
    }
}

/// How the error of a history row that a no-transaction down section made
/// dirty begins (followed by `: ` and the failure, once there is one).
pub const ROLLING_BACK: &str = "rolling back";

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// Columns of capstan's history table newer than [`HISTORY_COLUMNS`]: a
/// table an older capstan made lacks them until `ensure_schema` adds them,
/// and they read as NULL until then.
pub(crate) const SECTION_COLUMNS: [&str; 2] = ["up_checksum", "down_checksum"];

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// Checks the [`SECTION_COLUMNS`] cells of history row `n` and stores them.
pub(crate) fn section_cells(
    table: &str,
    n: usize,
    row: &mut AppliedRow,
    cells: [Cell; 2],
) -> Result<(), DbError> {
    let [up, down] = cells;
    let mut out = [None, None];
    for (i, cell) in [up, down].into_iter().enumerate() {
        out[i] = match cell {
            Cell::Null => None,
            Cell::Text(t) => Some(t),
            other => {
                let found = match other {
                    Cell::Int(i) => format!("the number {i}"),
                    Cell::Bool(b) => format!("the boolean {b}"),
                    Cell::Other(kind) => format!("a {kind}"),
                    _ => "something else".into(),
                };
                return Err(bad_history(
                    table,
                    format!(
                        "column {} of row {n} (version {}) is {found}, not text",
                        SECTION_COLUMNS[i], row.version
                    ),
                ));
            }
        };
    }
    let [up, down] = out;
    row.up_checksum = up;
    row.down_checksum = down;
    Ok(())
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// The columns of capstan's history table, in the order drivers read them,
/// with the type each has on Postgres.
pub(crate) const HISTORY_COLUMNS: [(&str, &str); 11] = [
    ("version", "bigint"),
    ("name", "text"),
    ("checksum", "text"),
    ("phase", "text"),
    ("state", "text"),
    ("applied_at", "timestamp with time zone"),
    ("applied_by", "text"),
    ("binary_version", "text"),
    ("duration_ms", "bigint"),
    ("no_transaction", "boolean"),
    ("error", "text"),
];

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// A value of the history table as a driver read it, before any check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    /// A value of a type capstan never writes there (named).
    Other(&'static str),
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// An error about capstan's history table `table`: `what` names the column
/// and the row.
pub(crate) fn bad_history(table: &str, what: impl std::fmt::Display) -> DbError {
    DbError::new(
        FailureKind::BadHistory,
        format!(
            "capstan's history table {table} holds something capstan never writes: {what}. Nothing was run. \
             Someone edited the table by hand; restore it from a backup, or fix the row (its file's name, checksum and phase are in the migration directory)"
        ),
    )
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// Builds history row `n` (1-based, in version order) from its cells in
/// [`HISTORY_COLUMNS`] order, refusing NULLs, negative numbers, unknown
/// phases and states, and values of the wrong type.
pub(crate) fn history_row(table: &str, n: usize, cells: Vec<Cell>) -> Result<AppliedRow, DbError> {
    let version = match cells.first() {
        Some(Cell::Int(v)) => Some(*v),
        _ => None,
    };
    let at = |column: &str| match version {
        Some(v) => format!("column {column} of row {n} (version {v})"),
        None => format!("column {column} of row {n}"),
    };
    let mut text = Vec::new();
    let mut ints = Vec::new();
    let mut no_transaction = false;
    let mut error = None;
    for ((column, _), cell) in HISTORY_COLUMNS.iter().zip(cells) {
        match (*column, cell) {
            ("error", Cell::Null) => {}
            ("error", Cell::Text(t)) => error = Some(t),
            (_, Cell::Null) => return Err(bad_history(table, format!("{} is NULL", at(column)))),
            ("version" | "duration_ms", Cell::Int(i)) if i < 0 => {
                return Err(bad_history(
                    table,
                    format!("{} is negative ({i})", at(column)),
                ))
            }
            ("version" | "duration_ms", Cell::Int(i)) => ints.push(i),
            ("no_transaction", Cell::Bool(b)) => no_transaction = b,
            ("no_transaction", Cell::Int(i @ (0 | 1))) => no_transaction = i == 1,
            ("version" | "duration_ms" | "no_transaction" | "error", other)
            | (_, other @ (Cell::Int(_) | Cell::Bool(_) | Cell::Other(_))) => {
                let found = match other {
                    Cell::Int(i) => format!("the number {i}"),
                    Cell::Text(t) => format!("the text {t:?}"),
                    Cell::Bool(b) => format!("the boolean {b}"),
                    Cell::Other(kind) => format!("a {kind}"),
                    Cell::Null => "NULL".into(),
                };
                let want = match *column {
                    "version" | "duration_ms" => "a whole number",
                    "no_transaction" => "a boolean",
                    _ => "text",
                };
                return Err(bad_history(
                    table,
                    format!("{} is {found}, not {want}", at(column)),
                ));
            }
            (_, Cell::Text(t)) => text.push(t),
        }
    }
    let [name, checksum, phase, state, applied_at, applied_by, binary_version]: [String; 7] = text
        .try_into()
        .map_err(|_| bad_history(table, format!("row {n} has missing columns")))?;
    let [version, duration_ms]: [i64; 2] = ints
        .try_into()
        .map_err(|_| bad_history(table, format!("row {n} has missing columns")))?;
    if crate::source::Phase::parse(&phase).is_none() {
        return Err(bad_history(
            table,
            format!("{} is {phase:?}, not expand or contract", at("phase")),
        ));
    }
    if !matches!(state.as_str(), "applied" | "dirty") {
        return Err(bad_history(
            table,
            format!("{} is {state:?}, not applied or dirty", at("state")),
        ));
    }
    Ok(AppliedRow {
        version: version as u64,
        name,
        checksum,
        phase,
        state,
        applied_at,
        applied_by,
        binary_version,
        duration_ms,
        no_transaction,
        error,
        up_checksum: None,
        down_checksum: None,
    })
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// An error about capstan's fleet registry `table`: `what` names the row and
/// the column.
pub(crate) fn bad_fleet(table: &str, what: impl std::fmt::Display) -> DbError {
    DbError::new(
        FailureKind::BadHistory,
        format!(
            "capstan's fleet registry {table} holds something capstan never writes: {what}. Nothing was run. \
             Someone edited the table by hand; delete the row (a live instance registers again on its next heartbeat)"
        ),
    )
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// Refuses a version recorded twice (rows in version order).
pub(crate) fn check_unique(table: &str, rows: &[AppliedRow]) -> Result<(), DbError> {
    match rows.windows(2).find(|w| w[0].version == w[1].version) {
        Some(w) => Err(bad_history(
            table,
            format!("version {} is recorded more than once", w[0].version),
        )),
        None => Ok(()),
    }
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
            .or_else(user_from_passwd)
            .unwrap_or_else(|| "unknown".into());
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Identity {
            applied_by: format!("{user}@{host}"),
            binary_version: binary_version.into(),
        }
    }
}

/// The name of the current uid in /etc/passwd (containers often have no $USER).
fn user_from_passwd() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
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
pub fn statement_line(job: &Job<'_>, i: usize) -> usize {
    job.section.first_line + job.statements.get(i).map_or(0, |s| s.line_offset)
}

/// The 1-based number of statement `i` among the section's own statements,
/// not counting the archive copies spliced in before some of them (those
/// carry the line of the statement they protect, and that statement follows).
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

/// The first wait between two attempts at the runner lock.
const LOCK_POLL_FIRST: Duration = Duration::from_millis(10);
/// The longest wait between two attempts at the runner lock.
const LOCK_POLL_MAX: Duration = Duration::from_millis(250);

/// A change to history that runs no migration SQL.
#[derive(Debug, Clone)]
pub enum Record<'a> {
    /// Record migrations as applied without running them (`baseline`, `repair --applied`).
    MarkApplied {
        /// The migrations.
        migrations: Vec<&'a Migration>,
        /// Who.
        identity: &'a Identity,
        /// Why, recorded in the log.
        action: &'a str,
    },
    /// Record the section hashes of applied migrations as they are in their
    /// files now (each row's `checksum` too when `whole`), with a log entry
    /// for each that has an `action`.
    Sections {
        /// The rows to change.
        updates: Vec<SectionUpdate<'a>>,
        /// Who.
        identity: &'a Identity,
    },
    /// Remove a history row (`repair --rolled-back`).
    Forget {
        /// The version.
        version: u64,
        /// Its name (for the log).
        name: &'a str,
        /// Who.
        identity: &'a Identity,
        /// Why, recorded in the log.
        action: &'a str,
    },
}

/// One history row [`Record::Sections`] changes.
#[derive(Debug, Clone)]
pub struct SectionUpdate<'a> {
    /// The migration, as its file is now.
    pub migration: &'a Migration,
    /// Also record the whole file's checksum (an accepted edit).
    pub whole: bool,
    /// The log entry's action (`down edited`, `accept`); `None` writes no
    /// log entry (an older row given its section hashes).
    pub action: Option<String>,
    /// The log entry's detail.
    pub detail: Option<String>,
}

/// A catalog snapshot: `object key → definition`, compared by `verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot(pub BTreeMap<String, String>);

impl Snapshot {
    /// Every difference between `self` (before) and `after`, one line each.
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            match after.0.get(k) {
                None => out.push(format!("{k}: missing (was {v})")),
                Some(w) if w != v => out.push(format!("{k}: was {v}, now {w}")),
                _ => {}
            }
        }
        for (k, v) in &after.0 {
            if !self.0.contains_key(k) {
                out.push(format!("{k}: unexpected ({v})"));
            }
        }
        out
    }
}

/// A database capstan can run migrations on.
#[async_trait]
pub trait Driver: Send {
    /// Which SQL dialect statements are split for.
    fn dialect(&self) -> Dialect;
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
        let mut wait = LOCK_POLL_FIRST;
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
            // A little jitter, so that waiting runners do not poll in step.
            let jitter = Duration::from_millis(rand::random::<u64>() % 10);
            tokio::time::sleep((wait + jitter).min(deadline - now)).await;
            wait = (wait * 2).min(LOCK_POLL_MAX);
        }
    }
    /// Every index the database marks invalid on the application's tables
    /// (a failed `CREATE INDEX CONCURRENTLY` leaves one); none on SQLite.
    async fn invalid_indexes(&mut self) -> Result<Vec<crate::indexes::InvalidIndex>, DbError> {
        Ok(Vec::new())
    }
    /// Table sizes and the session time zone, for linting what is about to
    /// run against the database as it is; a table without an estimate is
    /// counted up to `count_up_to + 1` rows. Empty by default.
    async fn live(&mut self, count_up_to: u64) -> Result<crate::live::LiveDb, DbError> {
        let _ = count_up_to;
        Ok(crate::live::LiveDb::default())
    }
    /// Which other runner holds the runner lock now (`None`: nobody else,
    /// or unknown).
    async fn lock_holder(&mut self) -> Result<Option<LockHolder>, DbError> {
        Ok(None)
    }
    /// Releases the runner lock.
    async fn unlock(&mut self) -> Result<(), DbError>;
    /// Creates capstan's history tables if missing (call under the lock).
    async fn ensure_schema(&mut self) -> Result<(), DbError>;
    /// The history rows, oldest first; empty if capstan never ran here.
    async fn history(&mut self) -> Result<Vec<AppliedRow>, DbError>;
    /// Runs one section and records it, atomically when the job is transactional.
    async fn execute(&mut self, job: &Job<'_>) -> Result<ExecOutcome, ExecFailure>;
    /// Changes history without running migration SQL, in one transaction.
    async fn record(&mut self, change: Record<'_>) -> Result<(), DbError>;
    /// A snapshot of the user's schema (capstan's own tables excluded).
    async fn snapshot(&mut self) -> Result<Snapshot, DbError>;
    /// Creates an empty scratch database on the same server (for `verify`).
    async fn create_scratch(&mut self) -> Result<Box<dyn Driver>, DbError>;
    /// Drops the scratch database made by `create_scratch` (after it is closed).
    async fn drop_scratch(&mut self, scratch: Box<dyn Driver>) -> Result<(), DbError>;
    /// Registers or refreshes an instance in the fleet registry (creates
    /// capstan's tables if missing).
    async fn fleet_register(&mut self, instance: &Instance) -> Result<(), DbError>;
    /// Marks an instance departed (clean shutdown).
    async fn fleet_depart(&mut self, instance_id: &str) -> Result<(), DbError>;
    /// Every registry row, live or not, with its age by the database's clock.
    async fn fleet_list(&mut self) -> Result<Vec<InstanceRow>, DbError>;
    /// Runs one query and returns its rows, every value as text (NULL as `None`).
    /// Used for catalog reads and the archive; it never runs migration SQL.
    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError>;
    /// Runs `statements` in one transaction (all or nothing) and returns how many
    /// rows each one changed. Used by `archive restore` and `archive purge`.
    async fn transact(&mut self, statements: &[String]) -> Result<Vec<u64>, DbError>;
    /// The rows of another migration tool's history table `table` (a name
    /// or `schema.name`, as the user wrote it), read with
    /// [`Tool::history_query`](crate::import::Tool::history_query); `None`
    /// when there is no such table. Read-only; used by `baseline --from`.
    async fn tool_history(
        &mut self,
        tool: crate::import::Tool,
        table: &str,
    ) -> Result<Option<Vec<crate::import::ToolHistoryRow>>, DbError>;
    /// For a scratch database: its name (Postgres) or file (SQLite).
    fn scratch_name(&self) -> Option<String> {
        None
    }
}
