//! The engine: compares a migration set with a database's history and runs
//! what is needed, under the runner lock, with lock timeouts and retries.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::archive::{self, ArchiveEntry, ArchiveError, Destruction, Detected, Detector};
use crate::driver::{
    AppliedRow, DbError, Direction, Driver, ExecFailure, FailureKind, Identity, Job, Notice,
    Record, SectionUpdate,
};
use crate::fleet::{blockers, InstanceRow};
use crate::indexes::InvalidIndex;
use crate::source::{Migration, MigrationSet, Phase, SourceError};
use crate::url::{DatabaseUrl, UrlError};

/// How migrations run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `lock_timeout` for DDL unless a migration says otherwise (zero: none).
    pub lock_timeout: Duration,
    /// How many times a migration that hit the lock timeout is tried again.
    pub lock_retries: u32,
    /// First wait before a retry; doubles each time up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// Longest wait between retries.
    pub retry_backoff_max: Duration,
    /// `statement_timeout` unless a migration says otherwise (zero: none).
    pub statement_timeout: Duration,
    /// An instance not seen for this long no longer counts as live in the fleet.
    pub fleet_ttl: Duration,
    /// Archive what a migration destroys before it runs (needs a [`Detector`]).
    pub archive: bool,
    /// Largest archive copy of one object; a bigger one refuses the migration
    /// unless `--no-archive` names the object (`None`: no limit).
    pub archive_max_bytes: Option<u64>,
    /// How long archive entries are kept before `archive purge` removes them.
    pub archive_retention: Option<Duration>,
    /// How long a runner waits for another runner to release the runner
    /// lock before giving up (zero: try once).
    pub runner_lock_timeout: Duration,
    /// The database URL leads to a transaction-mode pool (PgBouncer
    /// `pool_mode = transaction`), as declared in `[migrate] pooler`: runs
    /// are refused at once (capstan also detects such a pool by itself).
    pub transaction_pooler: bool,
}

/// The default [`Settings::runner_lock_timeout`].
pub const DEFAULT_RUNNER_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_timeout: Duration::from_secs(3),
            lock_retries: 10,
            retry_backoff: Duration::from_millis(500),
            retry_backoff_max: Duration::from_secs(10),
            statement_timeout: Duration::ZERO,
            fleet_ttl: crate::fleet::DEFAULT_TTL,
            archive: true,
            archive_max_bytes: Some(archive::DEFAULT_MAX_BYTES),
            archive_retention: None,
            runner_lock_timeout: DEFAULT_RUNNER_LOCK_TIMEOUT,
            transaction_pooler: false,
        }
    }
}

/// A migration's state, comparing the set with the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// In both, same checksum.
    Applied,
    /// In the set, not in the database.
    Pending,
    /// In the database, not in the set.
    Ahead,
    /// In both, under the same name, but the up section differs from what ran.
    Drifted,
    /// In both, but a different migration ran under this version: the
    /// names and the up sections differ (two branches took the same number).
    Collision,
    /// A no-transaction migration failed part-way; see `repair`.
    Dirty,
    /// A no-transaction migration a live runner is running now (its row is
    /// marked dirty until it finishes, and that runner holds the lock).
    #[serde(rename = "in-progress")]
    InProgress,
}

impl State {
    /// The JSON/text name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Ahead => "ahead",
            State::Drifted => "drifted",
            State::Collision => "collision",
            State::Dirty => "dirty",
            State::InProgress => "in-progress",
        }
    }
}

/// The outcome of the fleet check for one contract migration.
enum Gate {
    Clear,
    Forced(Vec<InstanceRow>),
    Held(HeldBack),
}

/// One line of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Phase (from the file, or from history for an ahead migration).
    pub phase: String,
    /// State.
    pub state: State,
    /// The file, when the set has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The history row, when the database has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedRow>,
    /// Applied, and the file's down section differs from the one recorded
    /// (allowed: the next `up` or `down` records it, and `down` runs the file's).
    pub down_changed: bool,
}

impl Entry {
    /// `0007_drop_name`.
    pub fn label(&self) -> String {
        capstan_format::label(self.version, &self.name).to_string()
    }
}

/// How a history row compares with the file of the same version: the pure
/// core of [`compare`]. A row holds the hash of the up section that ran;
/// a row an older capstan wrote holds only the whole file's checksum, which
/// is compared instead. A different up section under another name is
/// another migration (a collision); under the same name, an edit (drift).
pub fn classify(m: &Migration, row: &AppliedRow) -> State {
    if row.is_dirty() {
        return State::Dirty;
    }
    let same = match &row.up_checksum {
        Some(up) => *up == m.up_checksum,
        None => m.matches_file_checksum(&row.checksum),
    };
    if same {
        State::Applied
    } else if row.name != m.name {
        State::Collision
    } else {
        State::Drifted
    }
}

/// Compares a set with history rows: the pure heart of `status`, `up` and the gate.
pub fn compare(set: &MigrationSet, history: &[AppliedRow]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut rows = history.iter().peekable();
    let mut files = set.migrations().iter().peekable();
    loop {
        let next_row = rows.peek().map(|r| r.version);
        let next_file = files.peek().map(|m| m.version);
        match (next_file, next_row) {
            (None, None) => break,
            (Some(f), r) if r.is_none_or(|r| f < r) => {
                let m = files.next().expect("peeked");
                out.push(Entry {
                    version: m.version,
                    name: m.name.clone(),
                    phase: m.phase.to_string(),
                    state: State::Pending,
                    file: Some(m.path.clone()),
                    applied: None,
                    down_changed: false,
                });
            }
            (f, Some(r)) if f.is_none_or(|f| r < f) => {
                let row = rows.next().expect("peeked");
                out.push(Entry {
                    version: row.version,
                    name: row.name.clone(),
                    phase: row.phase.clone(),
                    state: if row.is_dirty() {
                        State::Dirty
                    } else {
                        State::Ahead
                    },
                    file: None,
                    applied: Some(row.clone()),
                    down_changed: false,
                });
            }
            _ => {
                let m = files.next().expect("peeked");
                let row = rows.next().expect("peeked");
                let state = classify(m, row);
                out.push(Entry {
                    version: m.version,
                    name: m.name.clone(),
                    phase: m.phase.to_string(),
                    state,
                    file: Some(m.path.clone()),
                    applied: Some(row.clone()),
                    down_changed: state == State::Applied
                        && row.up_checksum.is_some()
                        && row.down_checksum != m.down_checksum,
                });
            }
        }
    }
    out
}

/// The result of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Every migration known to the set or the database, by version.
    pub migrations: Vec<Entry>,
    /// Indexes Postgres marks invalid on the application's tables (a failed
    /// `CREATE INDEX CONCURRENTLY` left them: unused, enforcing nothing).
    pub invalid_indexes: Vec<InvalidIndex>,
}

impl Status {
    /// Entries in `state`.
    pub fn in_state(&self, state: State) -> impl Iterator<Item = &Entry> {
        self.migrations.iter().filter(move |e| e.state == state)
    }
}

/// Something the engine did, reported as it happens (for progress output).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Another runner holds the migration lock; this one waits for it.
    LockWait,
    /// A migration section starts.
    Start {
        /// The migration.
        migration: &'a Migration,
        /// Up or down.
        direction: Direction,
    },
    /// A lock was not granted in time; the migration will be tried again.
    Retry {
        /// The migration.
        migration: &'a Migration,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// How long capstan waits before the next attempt.
        wait: Duration,
        /// The server's message.
        message: &'a str,
    },
    /// The server sent a notice.
    Notice {
        /// The migration.
        migration: &'a Migration,
        /// The notice.
        notice: &'a Notice,
        /// The file line of the statement that raised it, when known.
        line: Option<usize>,
    },
    /// Live instances block a contract migration; `up` waits for them to leave.
    Waiting {
        /// The contract migration.
        migration: &'a Migration,
        /// The instances whose binary does not embed it.
        blockers: &'a [InstanceRow],
    },
    /// A contract migration runs although live instances do not embed it.
    Forced {
        /// The contract migration.
        migration: &'a Migration,
        /// The instances overridden.
        blockers: &'a [InstanceRow],
    },
    /// What a statement is about to destroy was copied into the archive
    /// (reported once the migration committed).
    Archived {
        /// The migration.
        migration: &'a Migration,
        /// The archive entry.
        entry: &'a ArchiveEntry,
    },
    /// A migration section finished.
    Done {
        /// The migration.
        migration: &'a Migration,
        /// Up or down.
        direction: Direction,
        /// Time taken.
        duration: Duration,
        /// False when another runner had already done it.
        done_here: bool,
    },
}

/// One migration run by `up` or `down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ran {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Up or down.
    pub direction: Direction,
    /// Milliseconds.
    pub duration_ms: u64,
}

/// A contract migration `up` stopped before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldBack {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Why it did not run.
    pub reason: String,
    /// The live instances whose binary does not embed it.
    pub blockers: Vec<InstanceRow>,
}

/// What `up` or `down` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    /// Migrations run, in order.
    pub ran: Vec<Ran>,
    /// Migrations another runner did first (SQLite's concurrent runners).
    pub done_by_other_runner: Vec<u64>,
    /// The contract migration `up` stopped before, if it did.
    pub held_back: Option<HeldBack>,
    /// What the migrations destroyed and capstan archived first.
    pub archived: Vec<ArchiveEntry>,
}

/// What `up` does with a contract migration that live instances still need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContractPolicy {
    /// Apply it only when no live instance blocks it; otherwise stop before it.
    #[default]
    Fleet,
    /// Wait up to this long for the blocking instances to leave, then stop.
    Wait(Duration),
    /// Apply it anyway; recorded in history with the instances it overrode.
    Force,
}

/// Options of `up`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// Apply up to and including this version.
    pub to: Option<u64>,
    /// Contract migrations and the fleet.
    pub contract: ContractPolicy,
    /// Notes recorded in history with these versions (e.g. lint errors overridden).
    pub notes: std::collections::BTreeMap<u64, String>,
    /// Objects (`users.name`, `users`) destroyed without an archive copy
    /// (recorded in history).
    pub no_archive: Vec<String>,
}

/// One step of `plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanStep {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Phase.
    pub phase: Phase,
    /// Runs outside a transaction.
    pub no_transaction: bool,
    /// The file.
    pub file: PathBuf,
    /// The SQL that would run.
    pub sql: String,
    /// Lock timeout that would apply, in milliseconds.
    pub lock_timeout_ms: u64,
    /// What it would archive before destroying it.
    pub archive: Vec<archive::PlannedArchive>,
}

/// What `up` would do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Steps `up` would run, in order.
    pub steps: Vec<PlanStep>,
    /// The contract migration `up` would stop before (if the fleet stays as it is).
    pub held_back: Option<HeldBack>,
}

/// A dirty migration, as `repair` explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirtyInfo {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// The recorded error.
    pub error: Option<String>,
    /// Which section failed part-way: `up`, or `down` (a rollback that
    /// stopped: the migration is neither applied nor rolled back).
    pub direction: Direction,
    /// When it started.
    pub started_at: String,
    /// Who ran it.
    pub applied_by: String,
    /// Invalid indexes the migration creates (its failed `CREATE INDEX
    /// CONCURRENTLY` left them); drop each before running it again.
    pub invalid_indexes: Vec<InvalidIndex>,
}

/// A version under which the database ran a different migration than the
/// file of that number (two branches took the same number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollisionInfo {
    /// The version both claim.
    pub version: u64,
    /// The file's migration, `0005_add_bio`: it did not run.
    pub file_label: String,
    /// The file.
    pub file: PathBuf,
    /// The migration that ran as this version, `0005_add_email` (from history).
    pub applied_label: String,
    /// When it ran.
    pub applied_at: String,
    /// Who ran it.
    pub applied_by: String,
    /// From which binary.
    pub binary_version: String,
}

impl CollisionInfo {
    fn of(e: &Entry) -> Option<CollisionInfo> {
        let row = e.applied.as_ref()?;
        Some(CollisionInfo {
            version: e.version,
            file_label: e.label(),
            file: e.file.clone()?,
            applied_label: capstan_format::label(row.version, &row.name).to_string(),
            applied_at: row.applied_at.clone(),
            applied_by: row.applied_by.clone(),
            binary_version: row.binary_version.clone(),
        })
    }
}

impl fmt::Display for CollisionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{v:04} is {applied} in the database (applied {at} by {by}, {bin}), but {file} is {mine}: a different migration, never run (two branches took number {v:04}). Renumber yours after it with `capstan migrate rebase {file}`, and bring {applied}.sql into this directory (merge the branch that added it)",
            v = self.version,
            applied = self.applied_label,
            at = self.applied_at,
            by = self.applied_by,
            bin = self.binary_version,
            file = self.file.display(),
            mine = self.file_label,
        )
    }
}

/// What `migrate hash --accept` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// False when history already matched the file: nothing was recorded.
    pub recorded: bool,
    /// The up section's hash before (from history; `None` in a row an
    /// older capstan wrote).
    pub previous_up_checksum: Option<String>,
    /// The up section's hash now recorded.
    pub up_checksum: String,
}

/// What the operator says happened to a dirty migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairAction {
    /// Its effects are complete (finished by hand): record it applied.
    MarkApplied(u64),
    /// Its effects are undone (reverted by hand): forget it so `up` runs it again.
    MarkRolledBack(u64),
}

/// The outcome of one migration under `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyStep {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Whether down-then-up was checked (false: no down section).
    pub down_checked: bool,
    /// Every schema difference found; empty when the step is sound.
    pub differences: Vec<String>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Steps, in order.
    pub steps: Vec<VerifyStep>,
    /// Invalid indexes on the application's tables in the database `verify`
    /// was pointed at (not the scratch one): each fails `verify`.
    pub invalid_indexes: Vec<InvalidIndex>,
}

impl VerifyReport {
    /// True when no step found a difference and no index is invalid.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.differences.is_empty()) && self.invalid_indexes.is_empty()
    }
}

/// A migration that failed while running.
#[derive(Debug, Clone)]
pub struct MigrationFailure {
    /// `0003_add_index`.
    pub label: String,
    /// The file.
    pub file: PathBuf,
    /// Line of the failing statement (or of the error position) in the file.
    pub line: Option<usize>,
    /// Up or down.
    pub direction: Direction,
    /// What the database said.
    pub failure: ExecFailure,
    /// Attempts made.
    pub attempts: u32,
    /// Whether the migration ran outside a transaction (it is now dirty).
    pub no_transaction: bool,
    /// What had been done before the failure.
    pub report: RunReport,
}

impl fmt::Display for MigrationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        let fl = &self.failure;
        write!(f, ": {}", fl.message)?;
        if let Some(code) = &fl.code {
            write!(f, " (SQLSTATE {code})")?;
        }
        if let Some(d) = &fl.detail {
            write!(f, "\n  detail: {d}")?;
        }
        if let Some(h) = &fl.hint {
            write!(f, "\n  hint: {h}")?;
        }
        if fl.kind.retryable() {
            write!(
                f,
                "\n  gave up after {} attempts: another transaction holds a lock this migration needs; find it in pg_stat_activity, or raise lock-timeout / lock_retries",
                self.attempts
            )?;
        }
        match (self.direction, self.no_transaction) {
            (Direction::Up, true) => write!(
                f,
                "\n  {} ran outside a transaction and is now dirty: statements before the failing one stay applied; see `capstan migrate repair`",
                self.label
            ),
            (Direction::Up, false) => write!(
                f,
                "\n  {} was rolled back: nothing of it is applied",
                self.label
            ),
            (Direction::Down, true) => write!(
                f,
                "\n  the down section of {} ran outside a transaction and stopped part-way: the down statements before the failing one are done, the rest are not, so {} is now dirty (neither applied nor rolled back); see `capstan migrate repair`",
                self.label, self.label
            ),
            (Direction::Down, false) => write!(
                f,
                "\n  the down section of {} was undone: {} is still applied, as before the rollback",
                self.label, self.label
            ),
        }
    }
}

/// Why the engine refused or failed. Nothing was changed unless the variant says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A migration file or the directory is invalid.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The database URL is invalid.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Connecting, locking or reading history failed.
    #[error("{0}")]
    Db(#[from] DbError),
    /// Dirty migrations must be repaired first.
    #[error("{} is dirty (a no-transaction migration failed part-way{}); nothing was run. Inspect the database, then run `capstan migrate repair`", .0.iter().map(|d| capstan_format::label(d.version, &d.name).to_string()).collect::<Vec<_>>().join(", "), .0.first().and_then(|d| d.error.as_deref()).map(|e| format!(": {e}")).unwrap_or_default())]
    Dirty(Vec<DirtyInfo>),
    /// Applied migrations whose up sections changed.
    #[error("applied migrations were edited after they ran: {}; nothing was run. Their up sections differ from what ran (an edited down section, line endings or trailing spaces would not count). Restore the files (git checkout), or, if the edit is intended, record it with `capstan migrate hash --accept VERSION --reason \"...\"`", .0.join(", "))]
    Drift(Vec<String>),
    /// A different migration ran under a version than the file of that number.
    #[error("{}; nothing was run", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Collision(Vec<CollisionInfo>),
    /// `hash --accept` named a migration the database has not applied.
    #[error("{0} is not applied to the database, so there is no applied edit to accept; nothing was changed (`capstan migrate hash` updates capstan.sum, and `up` runs it)")]
    NotApplied(String),
    /// `hash --accept` without a reason.
    #[error("--accept needs --reason \"...\": why the edit of an applied migration is intended (recorded in history); nothing was changed")]
    MissingReason,
    /// A pending migration is older than an applied one.
    #[error("{pending} is pending but the newer {applied} is already applied; nothing was run. Renumber it after the newest with `capstan migrate rebase {pending_file}`")]
    OutOfOrder {
        /// The pending migration.
        pending: String,
        /// Its file.
        pending_file: String,
        /// The newer applied one.
        applied: String,
    },
    /// `down` asked for migrations that cannot be rolled back.
    #[error("cannot roll back {}; nothing was run", .0.join("; "))]
    NoDown(Vec<String>),
    /// `baseline` on a database that already has history at or below N.
    #[error("baseline refused: the database already records {}; baseline only adopts a database capstan has never run on", .0.join(", "))]
    AlreadyRecorded(Vec<String>),
    /// A version that is not in the set.
    #[error("migration {0:04} is not in the migration directory")]
    UnknownVersion(u64),
    /// `baseline --from TOOL` could not map the old tool's history.
    #[error("baseline --from {tool} refused: {message}")]
    ToolHistory {
        /// The tool.
        tool: crate::import::Tool,
        /// What is wrong, naming versions and files.
        message: String,
    },
    /// `repair` named a migration that is not dirty.
    #[error("migration {0:04} is not dirty; nothing to repair")]
    NotDirty(u64),
    /// A migration failed while running.
    #[error("{0}")]
    Failed(Box<MigrationFailure>),
    /// An archive operation refused or failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// SIGINT or SIGTERM stopped the run between two migrations; every
    /// migration it ran is complete, nothing is dirty.
    #[error("stopped by {signal} before {next}: {}", match direction { Direction::Up => "the migrations before it are applied, nothing is half-applied; run `up` again to continue", Direction::Down => "the migrations before it are rolled back, nothing is half-rolled-back; run `down` again to continue" })]
    Interrupted {
        /// Up or down.
        direction: Direction,
        /// `SIGTERM` or `SIGINT`.
        signal: &'static str,
        /// The migration that did not start.
        next: String,
        /// What had been done.
        report: Box<RunReport>,
    },
}

/// An open database connection (Postgres or SQLite).
pub struct Database {
    driver: Box<dyn Driver>,
}

impl Database {
    /// Opens `url`. SQLite files are created if missing.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, Error> {
        Self::open(url, true).await
    }

    /// Opens `url` for reading: a missing SQLite file reads as an empty database
    /// and is not created.
    pub async fn connect_read_only(url: &DatabaseUrl) -> Result<Self, Error> {
        Self::open(url, false).await
    }

    // Without the driver features every arm returns, which is fine.
    #[allow(unreachable_code, unused_variables)]
    async fn open(url: &DatabaseUrl, create: bool) -> Result<Self, Error> {
        let driver: Box<dyn Driver> = match url {
            #[cfg(feature = "postgres")]
            DatabaseUrl::Postgres { raw } => {
                Box::new(crate::postgres::connect(raw, &url.to_string()).await?)
            }
            #[cfg(feature = "sqlite")]
            DatabaseUrl::Sqlite { path } => Box::new(crate::sqlite::connect(path, create)?),
            #[allow(unreachable_patterns)]
            _ => {
                let _ = create;
                return Err(Error::Db(DbError::new(
                    FailureKind::Connection,
                    format!("{url}: this build of capstan has no driver for it"),
                )));
            }
        };
        Ok(Database { driver })
    }

    /// Wraps a driver.
    pub fn from_driver(driver: Box<dyn Driver>) -> Self {
        Database { driver }
    }

    /// The driver, for advanced use.
    pub fn driver(&mut self) -> &mut dyn Driver {
        self.driver.as_mut()
    }

    /// The target, for messages (password redacted).
    pub fn describe(&self) -> String {
        self.driver.describe()
    }

    /// History rows, oldest first.
    pub async fn history(&mut self) -> Result<Vec<AppliedRow>, Error> {
        Ok(self.driver.history().await?)
    }
}

/// What [`Migrator::baseline_from`] recorded.
#[derive(Debug, Clone, Serialize)]
pub struct ToolBaseline {
    /// The tool whose history was read.
    pub tool: crate::import::Tool,
    /// Its history table.
    pub table: String,
    /// The rows that table holds.
    pub rows: usize,
    /// The capstan versions recorded as applied (empty: the tool applied nothing).
    pub baselined: Vec<u64>,
}

/// Runs a migration set against databases.
#[derive(Debug, Clone)]
pub struct Migrator {
    set: MigrationSet,
    settings: Settings,
    identity: Identity,
    detector: Option<Arc<dyn Detector>>,
}

fn no_events(_: Event<'_>) {}

impl Migrator {
    /// A migrator for `set`, with default settings, recorded as `capstan <version>`.
    pub fn new(set: MigrationSet) -> Self {
        Migrator {
            set,
            settings: Settings::default(),
            identity: Identity::current(concat!("capstan ", env!("CARGO_PKG_VERSION"))),
            detector: None,
        }
    }

    /// Finds data-destroying statements with `detector`, so `up` and `down`
    /// archive what they destroy (see [`crate::archive`]).
    pub fn with_detector(mut self, detector: Arc<dyn Detector>) -> Self {
        self.detector = Some(detector);
        self
    }

    /// Refuses `--no-archive` names that match nothing this run would
    /// archive (a typo would otherwise go unnoticed until the size limit
    /// refuses again). Only checked when archiving applies.
    async fn check_no_archive(
        &self,
        db: &mut Database,
        history: &[AppliedRow],
        detected: &Detected,
        names: &[String],
    ) -> Result<(), Error> {
        if names.is_empty() || !self.archives(history) {
            return Ok(());
        }
        let mut all = Vec::new();
        for found in detected.values() {
            all.extend(
                archive::resolve(db.driver.as_mut(), found)
                    .await?
                    .into_iter()
                    .map(|(d, _)| d),
            );
        }
        for name in names {
            if !all.iter().any(|d| d.named_by(name)) {
                let mut known: Vec<String> = all.iter().map(Destruction::object).collect();
                known.sort();
                known.dedup();
                return Err(Error::Archive(ArchiveError::UnknownObject {
                    name: name.clone(),
                    known,
                }));
            }
        }
        Ok(())
    }

    /// Whether this run archives: a detector is set, archiving is on, and
    /// the database holds data (something is applied).
    fn archives(&self, history: &[AppliedRow]) -> bool {
        self.detector.is_some() && self.settings.archive && !history.is_empty()
    }

    /// The destroying statements of `todo` in `direction`, when this run
    /// [archives](Migrator::archives).
    fn detect(
        &self,
        history: &[AppliedRow],
        todo: &[&Migration],
        direction: Direction,
        dialect: crate::split::Dialect,
    ) -> Result<Detected, Error> {
        let Some(detector) = self.detector.as_ref().filter(|_| self.archives(history)) else {
            return Ok(Detected::new());
        };
        if todo.is_empty() {
            return Ok(Detected::new());
        }
        let wanted: Vec<(u64, Direction)> = todo.iter().map(|m| (m.version, direction)).collect();
        detector
            .detect(&self.set, dialect, &wanted)
            .map_err(|e| Error::Archive(ArchiveError::Detector(e)))
    }

    /// Sets how migrations run.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Sets the binary version recorded in history (`myapp 1.4.2`).
    pub fn with_binary_version(mut self, version: impl Into<String>) -> Self {
        self.identity.binary_version = version.into();
        self
    }

    /// The set.
    pub fn set(&self) -> &MigrationSet {
        &self.set
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The fleet registry, live and departed instances. Changes nothing.
    pub async fn fleet(&self, db: &mut Database) -> Result<Vec<InstanceRow>, Error> {
        Ok(db.driver.fleet_list().await?)
    }

    /// Every migration's state. Changes nothing.
    pub async fn status(&self, db: &mut Database) -> Result<Status, Error> {
        let history = db.driver.history().await?;
        let mut migrations = compare(&self.set, &history);
        mark_in_progress(db, &mut migrations).await?;
        let invalid_indexes = db.driver.invalid_indexes().await?;
        Ok(Status {
            migrations,
            invalid_indexes,
        })
    }

    /// What `up` would run, with its SQL. Changes nothing.
    pub async fn plan(&self, db: &mut Database, opts: &UpOptions) -> Result<Plan, Error> {
        self.plan_with(db, opts, true).await
    }

    /// The versions `up` would run (contract migrations included whatever the
    /// fleet says), without sizing archive copies. Changes nothing.
    pub async fn pending_versions(
        &self,
        db: &mut Database,
        opts: &UpOptions,
    ) -> Result<Vec<u64>, Error> {
        let opts = UpOptions {
            contract: ContractPolicy::Force,
            ..opts.clone()
        };
        let plan = self.plan_with(db, &opts, false).await?;
        Ok(plan.steps.iter().map(|s| s.version).collect())
    }

    /// The versions `down` with this `to` would roll back, newest first (the
    /// ones in this directory; `down` itself refuses the others).
    pub async fn reverting(&self, db: &mut Database, to: Option<u64>) -> Result<Vec<u64>, Error> {
        let history = db.driver.history().await?;
        let applied: Vec<u64> = compare(&self.set, &history)
            .iter()
            .filter(|e| matches!(e.state, State::Applied | State::Ahead))
            .map(|e| e.version)
            .collect();
        let Some(&newest) = applied.last() else {
            return Ok(Vec::new());
        };
        let to = to.unwrap_or(newest.saturating_sub(1));
        Ok(applied
            .into_iter()
            .rev()
            .filter(|v| *v > to && self.set.get(*v).is_some())
            .collect())
    }

    /// [`Migrator::plan`]; `size_archive` false skips reading the tables
    /// whose data the steps would archive.
    async fn plan_with(
        &self,
        db: &mut Database,
        opts: &UpOptions,
        size_archive: bool,
    ) -> Result<Plan, Error> {
        let history = db.driver.history().await?;
        let mut todo = self.pending(&history, opts)?;
        let fleet = db.driver.fleet_list().await?;
        let mut held_back = None;
        if let Some(i) = todo.iter().position(|m| {
            m.phase == Phase::Contract && !blockers(&fleet, m, self.settings.fleet_ttl).is_empty()
        }) {
            if opts.contract != ContractPolicy::Force {
                held_back = Some(self.held_back(todo[i], &fleet, None));
                todo.truncate(i);
            }
        }
        let detected = if size_archive {
            self.detect(&history, &todo, Direction::Up, db.driver.dialect())?
        } else {
            Detected::new()
        };
        let mut steps = Vec::new();
        for m in todo {
            let mut planned = Vec::new();
            if let Some(found) = detected.get(&(m.version, Direction::Up)) {
                let statements = m.up.statements(db.driver.dialect()).unwrap_or_default();
                let work = archive::model(archive::resolve(db.driver.as_mut(), found).await?);
                for (d, info) in &work {
                    let line =
                        m.up.first_line + statements.get(d.statement).map_or(0, |s| s.line_offset);
                    planned.push(
                        archive::estimate(
                            db.driver.as_mut(),
                            d,
                            info.as_ref(),
                            line,
                            self.settings.archive_max_bytes,
                            &opts.no_archive,
                        )
                        .await?,
                    );
                }
            }
            steps.push(PlanStep {
                version: m.version,
                name: m.name.clone(),
                phase: m.phase,
                no_transaction: m.no_transaction,
                file: m.path.clone(),
                sql: m.up.sql.clone(),
                lock_timeout_ms: m
                    .lock_timeout
                    .unwrap_or(self.settings.lock_timeout)
                    .as_millis() as u64,
                archive: planned,
            });
        }
        Ok(Plan { steps, held_back })
    }

    /// Applies pending migrations (expand only; see [`Migrator::up_with`] for contract).
    pub async fn up(&self, db: &mut Database) -> Result<RunReport, Error> {
        self.up_with(db, &UpOptions::default(), &mut no_events)
            .await
    }

    /// Applies pending migrations with options, reporting progress to `events`.
    pub async fn up_with(
        &self,
        db: &mut Database,
        opts: &UpOptions,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<RunReport, Error> {
        self.lock(db, events).await?;
        let result = self.up_holding_lock(db, opts, events).await;
        let unlocked = db.driver.unlock().await;
        let report = result?;
        unlocked?;
        Ok(report)
    }

    /// Takes the runner lock, waiting up to [`Settings::runner_lock_timeout`]
    /// for another runner (announced with [`Event::LockWait`]). Pair with
    /// [`Migrator::unlock`].
    pub async fn lock(
        &self,
        db: &mut Database,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<(), Error> {
        if self.settings.transaction_pooler
            && db.driver.dialect() == crate::split::Dialect::Postgres
        {
            return Err(Error::Db(DbError::new(
                FailureKind::Connection,
                format!(
                    "capstan.toml says {} is a transaction-mode pool ([migrate] pooler = \"transaction\"): capstan needs one server session for a whole run, so nothing was run. Use a direct URL to Postgres, or a session-mode pool",
                    db.describe()
                ),
            )));
        }
        if !db.driver.try_lock().await? {
            events(Event::LockWait);
            db.driver.lock(self.settings.runner_lock_timeout).await?;
        }
        Ok(())
    }

    /// Releases the runner lock taken by [`Migrator::lock`].
    pub async fn unlock(&self, db: &mut Database) -> Result<(), Error> {
        Ok(db.driver.unlock().await?)
    }

    /// [`Migrator::up_with`] for a caller that holds the runner lock (taken
    /// with [`Migrator::lock`]), so that what it checked first under the lock
    /// (e.g. the pending migrations it linted) is what runs.
    pub async fn up_holding_lock(
        &self,
        db: &mut Database,
        opts: &UpOptions,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<RunReport, Error> {
        db.driver.ensure_schema().await?;
        let history = db.driver.history().await?;
        let todo = self.pending(&history, opts)?;
        self.record_sections(db, &history).await?;
        let detected = self.detect(&history, &todo, Direction::Up, db.driver.dialect())?;
        self.check_no_archive(db, &history, &detected, &opts.no_archive)
            .await?;
        let mut report = RunReport::default();
        for m in todo {
            stop_if_asked(m, Direction::Up, &mut report)?;
            let mut note = None;
            if m.phase == Phase::Contract {
                match self.contract_gate(db, m, opts.contract, events).await? {
                    Gate::Clear => {}
                    Gate::Forced(over) => {
                        note = Some(format!(
                            "forced past live instances that do not embed it: {}",
                            over.iter()
                                .map(InstanceRow::describe)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    Gate::Held(h) => {
                        report.held_back = Some(h);
                        break;
                    }
                }
            }
            let note = match (note, opts.notes.get(&m.version)) {
                (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                (a, b) => a.or_else(|| b.cloned()),
            };
            let archive = detected
                .get(&(m.version, Direction::Up))
                .map(|found| (found.as_slice(), opts.no_archive.as_slice()));
            self.run(
                db,
                m,
                Direction::Up,
                note.as_deref(),
                archive,
                &mut report,
                events,
            )
            .await?;
        }
        Ok(report)
    }

    /// Decides whether contract migration `m` may run now, waiting if asked.
    async fn contract_gate(
        &self,
        db: &mut Database,
        m: &Migration,
        policy: ContractPolicy,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Gate, Error> {
        let deadline = match policy {
            ContractPolicy::Wait(d) => Some(tokio::time::Instant::now() + d),
            _ => None,
        };
        let mut announced = false;
        loop {
            let fleet = db.driver.fleet_list().await?;
            let blocking = blockers(&fleet, m, self.settings.fleet_ttl);
            if blocking.is_empty() {
                return Ok(Gate::Clear);
            }
            let owned: Vec<InstanceRow> = blocking.into_iter().cloned().collect();
            match (policy, deadline) {
                (ContractPolicy::Force, _) => {
                    events(Event::Forced {
                        migration: m,
                        blockers: &owned,
                    });
                    return Ok(Gate::Forced(owned));
                }
                (_, Some(deadline)) if tokio::time::Instant::now() < deadline => {
                    if !announced {
                        events(Event::Waiting {
                            migration: m,
                            blockers: &owned,
                        });
                        announced = true;
                    }
                    let poll = (self.settings.fleet_ttl / 10)
                        .clamp(Duration::from_millis(100), Duration::from_secs(1));
                    tokio::time::sleep(poll).await;
                }
                _ => {
                    let waited = match policy {
                        ContractPolicy::Wait(d) => Some(d),
                        _ => None,
                    };
                    return Ok(Gate::Held(self.held_back(m, &fleet, waited)));
                }
            }
        }
    }

    /// Why `m` does not run now; `waited` is how long `--wait` waited, if it did.
    fn held_back(
        &self,
        m: &Migration,
        fleet: &[InstanceRow],
        waited: Option<Duration>,
    ) -> HeldBack {
        let blocking: Vec<InstanceRow> = blockers(fleet, m, self.settings.fleet_ttl)
            .into_iter()
            .cloned()
            .collect();
        HeldBack {
            version: m.version,
            name: m.name.clone(),
            reason: format!(
                "contract migration {} removes or changes something that running instances still use: {}. {}",
                m.label(),
                blocking.iter().map(InstanceRow::describe).collect::<Vec<_>>().join(", "),
                match waited {
                    Some(d) => format!(
                        "They were still live after waiting {}; it runs once they are gone (deploy the new release first, or wait longer with --timeout), or use --force-contract to override",
                        humantime::format_duration(d)
                    ),
                    None => "It runs once they are gone (deploy the new release first); use --wait to wait for them, or --force-contract to override".to_string(),
                }
            ),
            blockers: blocking,
        }
    }

    /// Refuses dirty, drifted and out-of-order states; returns the migrations
    /// `up` would run, in order (contract ones are gated later, by the fleet).
    fn pending<'s>(
        &'s self,
        history: &[AppliedRow],
        opts: &UpOptions,
    ) -> Result<Vec<&'s Migration>, Error> {
        let entries = compare(&self.set, history);
        check_clean(&entries)?;
        let newest_applied = entries
            .iter()
            .filter(|e| e.state != State::Pending)
            .map(|e| e.version)
            .max();
        let mut todo = Vec::new();
        for e in entries.iter().filter(|e| e.state == State::Pending) {
            if let Some(newest) = newest_applied.filter(|n| *n > e.version) {
                let applied = entries
                    .iter()
                    .find(|x| x.version == newest)
                    .map(Entry::label)
                    .unwrap_or_default();
                return Err(Error::OutOfOrder {
                    pending: e.label(),
                    pending_file: e
                        .file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    applied,
                });
            }
            if opts.to.is_some_and(|to| e.version > to) {
                break;
            }
            let m = self
                .set
                .get(e.version)
                .ok_or(Error::UnknownVersion(e.version))?;
            todo.push(m);
        }
        Ok(todo)
    }

    /// Runs one section. `archive` holds its destroying statements and the
    /// objects the operator excluded from archiving.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        db: &mut Database,
        m: &Migration,
        direction: Direction,
        note: Option<&str>,
        archive: Option<(&[Destruction], &[String])>,
        report: &mut RunReport,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<(), Error> {
        let section = match direction {
            Direction::Up => &m.up,
            Direction::Down => m
                .down
                .as_ref()
                .ok_or_else(|| Error::NoDown(vec![format!("{}: no down section", m.label())]))?,
        };
        let statements = section
            .statements(db.driver.dialect())
            .map_err(|e| SourceError::Sql {
                path: m.path.clone(),
                line: section.first_line + e.line_offset,
                message: format!("{} is never closed", e.what),
            })?;
        events(Event::Start {
            migration: m,
            direction,
        });
        // Archive copies go right before the statements they protect, in the
        // same transaction; the catalog is read now, under the runner lock.
        let mut prepared = Vec::new();
        let mut notes: Vec<String> = note.map(str::to_string).into_iter().collect();
        if let Some((found, skip)) = archive.filter(|(f, _)| !f.is_empty()) {
            let cx = archive::PrepareContext {
                version: m.version,
                name: &m.name,
                direction,
                section,
                statements: &statements,
                identity: &self.identity,
                max_bytes: self.settings.archive_max_bytes,
                skip,
                transactional: !m.no_transaction,
            };
            let (copies, skipped) = archive::prepare(db.driver.as_mut(), &cx, found).await?;
            prepared = copies;
            notes.extend(skipped);
        }
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        let note = note.as_deref();
        let own_len = section.sql.len();
        let spliced = archive::splice(section, &statements, &prepared);
        let origin = spliced.origin;
        let section = &spliced.section;
        let statements = spliced.statements;
        let mut job = Job {
            migration: m,
            direction,
            section,
            statements: &statements,
            own_len,
            transactional: !m.no_transaction,
            resume_from: 0,
            resumed: false,
            lock_timeout: m.lock_timeout.unwrap_or(self.settings.lock_timeout),
            statement_timeout: m
                .statement_timeout
                .unwrap_or(self.settings.statement_timeout),
            identity: &self.identity,
            note,
        };
        let line_of = |f: &ExecFailure| -> Option<usize> {
            let base = section.first_line;
            match (f.line_offset, f.statement) {
                (Some(l), _) => Some(base + l),
                (None, Some(i)) => statements.get(i).map(|s| base + s.line_offset),
                _ => None,
            }
        };
        let mut attempt = 1;
        loop {
            match db.driver.execute(&job).await {
                Ok(outcome) => {
                    for n in &outcome.notices {
                        let line = n
                            .statement
                            .and_then(|i| statements.get(i))
                            .map(|s| section.first_line + s.line_offset);
                        events(Event::Notice {
                            migration: m,
                            notice: n,
                            line,
                        });
                    }
                    if outcome.done_here {
                        for p in &prepared {
                            archive::finish(db.driver.as_mut(), p.id).await?;
                            if let Some(entry) = archive::get(db.driver.as_mut(), p.id).await? {
                                events(Event::Archived {
                                    migration: m,
                                    entry: &entry,
                                });
                                report.archived.push(entry);
                            }
                        }
                    }
                    events(Event::Done {
                        migration: m,
                        direction,
                        duration: outcome.duration,
                        done_here: outcome.done_here,
                    });
                    if outcome.done_here {
                        report.ran.push(Ran {
                            version: m.version,
                            name: m.name.clone(),
                            direction,
                            duration_ms: outcome.duration.as_millis() as u64,
                        });
                    } else {
                        report.done_by_other_runner.push(m.version);
                    }
                    return Ok(());
                }
                Err(f) if f.kind.retryable() && attempt <= self.settings.lock_retries => {
                    let wait = self
                        .settings
                        .retry_backoff
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(self.settings.retry_backoff_max);
                    events(Event::Retry {
                        migration: m,
                        attempt,
                        wait,
                        message: &f.message,
                    });
                    if !job.transactional {
                        job.resume_from = f.statement.unwrap_or(job.resume_from);
                        // A failure with no statement came before the history mark.
                        job.resumed |= f.statement.is_some();
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(mut f) => {
                    if let Some(p) = f
                        .statement
                        .and_then(|i| origin.get(i).copied().flatten())
                        .and_then(|i| prepared.get(i))
                    {
                        f.message = if f.message.contains(archive::SIZE_CONSTRAINT) {
                            format!(
                                "the archive copy of {} is larger than the archive limit ({}); the statement here would destroy it without a copy. Rerun with `--no-archive {}` to go ahead without one (recorded in history), or raise `max_size` in the [archive] table of capstan.toml",
                                p.object,
                                self.settings
                                    .archive_max_bytes
                                    .map_or_else(|| "none".into(), archive::human_bytes),
                                p.object
                            )
                        } else {
                            format!(
                                "archiving {} before this statement failed: {}",
                                p.object, f.message
                            )
                        };
                        f.line_offset = None;
                    }
                    for n in &f.notices {
                        let line = n
                            .statement
                            .and_then(|i| statements.get(i))
                            .map(|s| section.first_line + s.line_offset);
                        events(Event::Notice {
                            migration: m,
                            notice: n,
                            line,
                        });
                    }
                    return Err(Error::Failed(Box::new(MigrationFailure {
                        label: m.label(),
                        file: m.path.clone(),
                        line: line_of(&f),
                        direction,
                        attempts: attempt,
                        no_transaction: m.no_transaction,
                        failure: f,
                        report: std::mem::take(report),
                    })));
                }
            }
        }
    }

    /// Rolls back applied migrations newer than `to` (default: the newest one),
    /// newest first. Refuses before touching anything if one has no down section.
    pub async fn down(
        &self,
        db: &mut Database,
        to: Option<u64>,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<RunReport, Error> {
        self.down_with(db, to, &[], events).await
    }

    /// [`Migrator::down`], destroying the objects named in `no_archive`
    /// without an archive copy (recorded in history).
    pub async fn down_with(
        &self,
        db: &mut Database,
        to: Option<u64>,
        no_archive: &[String],
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<RunReport, Error> {
        self.lock(db, events).await?;
        let result = self.down_locked(db, to, no_archive, events).await;
        let unlocked = db.driver.unlock().await;
        let report = result?;
        unlocked?;
        Ok(report)
    }

    async fn down_locked(
        &self,
        db: &mut Database,
        to: Option<u64>,
        no_archive: &[String],
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<RunReport, Error> {
        let history = db.driver.history().await?;
        let entries = compare(&self.set, &history);
        check_clean(&entries)?;
        if self.sections_to_record(&history).next().is_some() {
            db.driver.ensure_schema().await?;
            self.record_sections(db, &history).await?;
        }
        let applied: Vec<&Entry> = entries
            .iter()
            .filter(|e| matches!(e.state, State::Applied | State::Ahead))
            .collect();
        let Some(newest) = applied.last() else {
            return Ok(RunReport::default());
        };
        let to = to.unwrap_or(newest.version.saturating_sub(1));
        let targets: Vec<&Entry> = applied
            .iter()
            .rev()
            .filter(|e| e.version > to)
            .copied()
            .collect();
        let mut problems = Vec::new();
        for e in &targets {
            match e.state {
                State::Ahead => problems.push(format!(
                    "{}: applied but not in this migration directory (an older directory or binary?)",
                    e.label()
                )),
                _ => {
                    let m = self.set.get(e.version).ok_or(Error::UnknownVersion(e.version))?;
                    if m.down.is_none() {
                        problems.push(format!("{}: no `-- capstan:down` section", e.label()));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::NoDown(problems));
        }
        let todo: Vec<&Migration> = targets
            .iter()
            .map(|e| {
                self.set
                    .get(e.version)
                    .ok_or(Error::UnknownVersion(e.version))
            })
            .collect::<Result<_, _>>()?;
        let detected = self.detect(&history, &todo, Direction::Down, db.driver.dialect())?;
        self.check_no_archive(db, &history, &detected, no_archive)
            .await?;
        if !detected.values().all(Vec::is_empty) {
            db.driver.ensure_schema().await?;
        }
        let mut report = RunReport::default();
        for m in todo {
            stop_if_asked(m, Direction::Down, &mut report)?;
            let archive = detected
                .get(&(m.version, Direction::Down))
                .map(|found| (found.as_slice(), no_archive));
            self.run(db, m, Direction::Down, None, archive, &mut report, events)
                .await?;
        }
        Ok(report)
    }

    /// The applied migrations whose history row lacks the section hashes of
    /// its file (a row an older capstan wrote) or records another down
    /// section (an edit, which is allowed), each with its log action.
    fn sections_to_record<'a>(
        &'a self,
        history: &'a [AppliedRow],
    ) -> impl Iterator<Item = SectionUpdate<'a>> + 'a {
        history.iter().filter_map(move |row| {
            let m = self.set.get(row.version)?;
            if classify(m, row) != State::Applied {
                return None;
            }
            match &row.up_checksum {
                None => Some(SectionUpdate {
                    migration: m,
                    whole: false,
                    action: None,
                    detail: None,
                }),
                Some(_) if row.down_checksum != m.down_checksum => Some(SectionUpdate {
                    migration: m,
                    whole: false,
                    action: Some("down edited".into()),
                    detail: Some(format!(
                        "the down section changed after the migration ran (sha256 {} -> {}); `down` runs the new one",
                        row.down_checksum.as_deref().unwrap_or("none"),
                        m.down_checksum.as_deref().unwrap_or("none")
                    )),
                }),
                Some(_) => None,
            }
        })
    }

    /// Records [`Migrator::sections_to_record`] (call under the runner lock,
    /// after `ensure_schema`), in one transaction.
    async fn record_sections(
        &self,
        db: &mut Database,
        history: &[AppliedRow],
    ) -> Result<(), Error> {
        let updates: Vec<SectionUpdate<'_>> = self.sections_to_record(history).collect();
        if updates.is_empty() {
            return Ok(());
        }
        db.driver
            .record(Record::Sections {
                updates,
                identity: &self.identity,
            })
            .await?;
        Ok(())
    }

    /// Records an intended edit of applied migration `version`: history
    /// takes the hashes of its file as it is now, and the log says who, when
    /// and `reason`. Refuses an empty reason, a version with no file or no
    /// history row, a dirty one, and a different migration that ran under
    /// the same number, changing nothing.
    pub async fn accept(
        &self,
        db: &mut Database,
        version: u64,
        reason: &str,
    ) -> Result<Accepted, Error> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::MissingReason);
        }
        let m = self
            .set
            .get(version)
            .ok_or(Error::UnknownVersion(version))?;
        db.driver.lock(self.settings.runner_lock_timeout).await?;
        let result = async {
            let history = db.driver.history().await?;
            let row = history
                .iter()
                .find(|r| r.version == version)
                .ok_or_else(|| Error::NotApplied(m.label()))?;
            let entry = compare(&self.set, std::slice::from_ref(row))
                .into_iter()
                .find(|e| e.version == version)
                .ok_or(Error::UnknownVersion(version))?;
            match entry.state {
                State::Dirty => return Err(Error::Dirty(vec![DirtyInfo::from(row)])),
                State::Collision => {
                    return Err(Error::Collision(
                        CollisionInfo::of(&entry).into_iter().collect(),
                    ))
                }
                _ => {}
            }
            let matches = row.up_checksum.as_deref() == Some(m.up_checksum.as_str())
                && row.down_checksum == m.down_checksum
                && row.checksum == m.checksum;
            let accepted = Accepted {
                version,
                name: m.name.clone(),
                recorded: !matches,
                previous_up_checksum: row.up_checksum.clone(),
                up_checksum: m.up_checksum.clone(),
            };
            if matches {
                return Ok(accepted);
            }
            db.driver.ensure_schema().await?;
            let detail = format!(
                "reason: {reason}; up section sha256 {} -> {}; down section sha256 {} -> {}; file sha256 {} -> {}",
                row.up_checksum.as_deref().unwrap_or("not recorded"),
                m.up_checksum,
                row.down_checksum.as_deref().unwrap_or("none"),
                m.down_checksum.as_deref().unwrap_or("none"),
                row.checksum,
                m.checksum
            );
            db.driver
                .record(Record::Sections {
                    updates: vec![SectionUpdate {
                        migration: m,
                        whole: true,
                        action: Some("accept".into()),
                        detail: Some(detail),
                    }],
                    identity: &self.identity,
                })
                .await?;
            Ok(accepted)
        }
        .await;
        let unlocked = db.driver.unlock().await;
        let accepted = result?;
        unlocked?;
        Ok(accepted)
    }

    /// The versions under which the database ran a different migration
    /// than this set's file of that number. Changes nothing.
    pub async fn collisions(&self, db: &mut Database) -> Result<Vec<CollisionInfo>, Error> {
        let history = db.driver.history().await?;
        Ok(compare(&self.set, &history)
            .iter()
            .filter(|e| e.state == State::Collision)
            .filter_map(CollisionInfo::of)
            .collect())
    }

    /// Records migrations up to `version` as applied without running them, to
    /// adopt a database whose schema already matches them.
    pub async fn baseline(&self, db: &mut Database, version: u64) -> Result<Vec<u64>, Error> {
        if self.set.get(version).is_none() {
            return Err(Error::UnknownVersion(version));
        }
        db.driver.lock(self.settings.runner_lock_timeout).await?;
        let result = async {
            db.driver.ensure_schema().await?;
            let history = db.driver.history().await?;
            if !history.is_empty() {
                return Err(Error::AlreadyRecorded(
                    history
                        .iter()
                        .map(|r| capstan_format::label(r.version, &r.name).to_string())
                        .collect(),
                ));
            }
            let migrations: Vec<&Migration> = self
                .set
                .migrations()
                .iter()
                .filter(|m| m.version <= version)
                .collect();
            let versions = migrations.iter().map(|m| m.version).collect();
            db.driver
                .record(Record::MarkApplied {
                    migrations,
                    identity: &self.identity,
                    action: "baseline",
                })
                .await?;
            Ok(versions)
        }
        .await;
        let unlocked = db.driver.unlock().await;
        let versions = result?;
        unlocked?;
        Ok(versions)
    }

    /// Adopts a database another tool migrated: reads `tool`'s history table
    /// (`table`, or the tool's default) and records as applied, without
    /// running them, the migrations imported from the versions it applied
    /// (see [`crate::import::map_history`]). Records nothing when the tool
    /// applied nothing.
    pub async fn baseline_from(
        &self,
        db: &mut Database,
        tool: crate::import::Tool,
        table: Option<&str>,
    ) -> Result<ToolBaseline, Error> {
        let table = table.unwrap_or(tool.history_table()).to_string();
        let refuse = |message: String| Error::ToolHistory { tool, message };
        let rows = db
            .driver
            .tool_history(tool, &table)
            .await?
            .ok_or_else(|| {
                refuse(format!(
                    "the database has no table {table}: is this the database {tool} migrated? (name another with --table)"
                ))
            })?;
        let imported: Vec<crate::import::Imported> = self
            .set
            .migrations()
            .iter()
            .map(|m| crate::import::Imported {
                version: m.version,
                file_name: m.file_name.clone(),
                from: crate::import::imported_from(&m.text),
            })
            .collect();
        let target = crate::import::map_history(tool, &imported, &rows).map_err(refuse)?;
        let baselined = match target {
            Some(v) => self.baseline(db, v).await?,
            None => Vec::new(),
        };
        Ok(ToolBaseline {
            tool,
            table,
            rows: rows.len(),
            baselined,
        })
    }

    /// The dirty migrations, explained. Changes nothing.
    pub async fn dirty(&self, db: &mut Database) -> Result<Vec<DirtyInfo>, Error> {
        let history = db.driver.history().await?;
        let mut dirty = dirty_of(&history);
        if !dirty.is_empty() {
            let invalid = db.driver.invalid_indexes().await?;
            for d in &mut dirty {
                let Some(m) = self.set.get(d.version) else {
                    continue;
                };
                let statements = m.up.statements(db.driver.dialect()).unwrap_or_default();
                let names = crate::indexes::created_index_names(
                    statements.iter().map(|s| &m.up.sql[s.range.clone()]),
                );
                d.invalid_indexes = invalid
                    .iter()
                    .filter(|x| names.iter().any(|n| x.named_by(n)))
                    .cloned()
                    .collect();
            }
        }
        Ok(dirty)
    }

    /// Resolves a dirty migration as the operator says.
    pub async fn repair(&self, db: &mut Database, action: RepairAction) -> Result<(), Error> {
        db.driver.lock(self.settings.runner_lock_timeout).await?;
        let result = async {
            let history = db.driver.history().await?;
            let version = match action {
                RepairAction::MarkApplied(v) | RepairAction::MarkRolledBack(v) => v,
            };
            let Some(row) = history
                .iter()
                .find(|r| r.version == version && r.is_dirty())
            else {
                // Not dirty, but maybe what `repair` is asked about: a
                // different migration that ran under this number.
                let collisions: Vec<CollisionInfo> = compare(&self.set, &history)
                    .iter()
                    .filter(|e| e.version == version && e.state == State::Collision)
                    .filter_map(CollisionInfo::of)
                    .collect();
                if !collisions.is_empty() {
                    return Err(Error::Collision(collisions));
                }
                return Err(Error::NotDirty(version));
            };
            db.driver.ensure_schema().await?;
            match action {
                RepairAction::MarkApplied(_) => {
                    let m = self
                        .set
                        .get(version)
                        .ok_or(Error::UnknownVersion(version))?;
                    db.driver
                        .record(Record::MarkApplied {
                            migrations: vec![m],
                            identity: &self.identity,
                            action: "repair: marked applied",
                        })
                        .await?;
                }
                RepairAction::MarkRolledBack(_) => {
                    db.driver
                        .record(Record::Forget {
                            version,
                            name: &row.name,
                            identity: &self.identity,
                            action: "repair: marked rolled back",
                        })
                        .await?;
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        let unlocked = db.driver.unlock().await;
        result?;
        unlocked?;
        Ok(())
    }

    /// On a scratch database next to `db`: applies every migration and checks
    /// that each down section restores the schema and that up runs again.
    pub async fn verify(
        &self,
        db: &mut Database,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<VerifyReport, Error> {
        let scratch = db.driver.create_scratch().await?;
        let mut scratch = Database { driver: scratch };
        let result = self.verify_on(&mut scratch, events).await;
        let dropped = db.driver.drop_scratch(scratch.driver).await;
        let mut report = result?;
        dropped?;
        report.invalid_indexes = db.driver.invalid_indexes().await?;
        Ok(report)
    }

    async fn verify_on(
        &self,
        db: &mut Database,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<VerifyReport, Error> {
        db.driver.ensure_schema().await?;
        let mut steps = Vec::new();
        let mut report = RunReport::default();
        for m in self.set.migrations() {
            let before = db.driver.snapshot().await?;
            self.run(db, m, Direction::Up, None, None, &mut report, events)
                .await?;
            let after = db.driver.snapshot().await?;
            let (differences, stop) = if m.down.is_some() {
                self.round_trip(db, m, &before, &after, &mut report, events)
                    .await?
            } else {
                (Vec::new(), false)
            };
            steps.push(VerifyStep {
                version: m.version,
                name: m.name.clone(),
                down_checked: m.down.is_some(),
                differences,
            });
            if stop {
                // The schema is in an unknown state: later steps would mislead.
                break;
            }
        }
        Ok(VerifyReport {
            steps,
            invalid_indexes: Vec::new(),
        })
    }

    /// Runs `m`'s down section, compares with `before`, runs up again and
    /// compares with `after`. Returns the differences, and true when a section
    /// failed (the scratch schema is then in an unknown state).
    async fn round_trip(
        &self,
        db: &mut Database,
        m: &Migration,
        before: &crate::driver::Snapshot,
        after: &crate::driver::Snapshot,
        report: &mut RunReport,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<(Vec<String>, bool), Error> {
        let mut differences = Vec::new();
        let legs = [
            (
                Direction::Down,
                before,
                "the down section fails",
                "after down",
            ),
            (
                Direction::Up,
                after,
                "up fails when run again after down",
                "after down and up again",
            ),
        ];
        for (direction, expected, failed, context) in legs {
            match self.run(db, m, direction, None, None, report, events).await {
                Err(Error::Failed(f)) => {
                    differences.push(format!("{failed}: {f}"));
                    return Ok((differences, true));
                }
                other => other?,
            }
            let now = db.driver.snapshot().await?;
            differences.extend(
                expected
                    .diff(&now)
                    .into_iter()
                    .map(|d| format!("{context}, {d}")),
            );
        }
        Ok((differences, false))
    }
}

/// Stops before `next` once SIGINT or SIGTERM asked to (see [`crate::interrupt`]).
fn stop_if_asked(
    next: &Migration,
    direction: Direction,
    report: &mut RunReport,
) -> Result<(), Error> {
    if crate::interrupt::stop_between_migrations() {
        return Err(Error::Interrupted {
            direction,
            signal: crate::interrupt::signal_name().unwrap_or("a signal"),
            next: next.label(),
            report: Box::new(std::mem::take(report)),
        });
    }
    Ok(())
}

/// Reports a dirty migration as in progress while another runner holds the
/// runner lock: its row says dirty only until that runner finishes it.
/// (A runner that died released the lock, so its dirty row stays dirty.)
pub async fn mark_in_progress(db: &mut Database, entries: &mut [Entry]) -> Result<(), Error> {
    if !entries.iter().any(|e| e.state == State::Dirty) {
        return Ok(());
    }
    if db.driver.lock_holder().await?.is_some() {
        for e in entries.iter_mut().filter(|e| e.state == State::Dirty) {
            e.state = State::InProgress;
        }
    }
    Ok(())
}

fn dirty_of(history: &[AppliedRow]) -> Vec<DirtyInfo> {
    history
        .iter()
        .filter(|r| r.is_dirty())
        .map(DirtyInfo::from)
        .collect()
}

impl From<&AppliedRow> for DirtyInfo {
    fn from(r: &AppliedRow) -> Self {
        DirtyInfo {
            version: r.version,
            name: r.name.clone(),
            error: r.error.clone(),
            direction: if r.is_dirty_going_down() {
                Direction::Down
            } else {
                Direction::Up
            },
            started_at: r.applied_at.clone(),
            applied_by: r.applied_by.clone(),
            invalid_indexes: Vec::new(),
        }
    }
}

/// Refuses dirty and drifted states.
fn check_clean(entries: &[Entry]) -> Result<(), Error> {
    let dirty: Vec<DirtyInfo> = entries
        .iter()
        .filter(|e| e.state == State::Dirty)
        .filter_map(|e| e.applied.as_ref())
        .map(DirtyInfo::from)
        .collect();
    if !dirty.is_empty() {
        return Err(Error::Dirty(dirty));
    }
    let collisions: Vec<CollisionInfo> = entries
        .iter()
        .filter(|e| e.state == State::Collision)
        .filter_map(CollisionInfo::of)
        .collect();
    if !collisions.is_empty() {
        return Err(Error::Collision(collisions));
    }
    let drifted: Vec<String> = entries
        .iter()
        .filter(|e| e.state == State::Drifted)
        .map(|e| {
            let file = e
                .file
                .as_ref()
                .map_or_else(|| e.label(), |p| p.display().to_string());
            match e.applied.as_ref().filter(|a| a.up_checksum.is_none()) {
                Some(_) => format!(
                    "{file} (recorded by an older capstan as a whole-file checksum, so an edit of only its down section cannot be told apart)"
                ),
                None => file,
            }
        })
        .collect();
    if !drifted.is_empty() {
        return Err(Error::Drift(drifted));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::parse_migration;
    use std::path::Path;

    fn set(n: u64) -> MigrationSet {
        MigrationSet::new(
            (1..=n)
                .map(|v| {
                    parse_migration(
                        Path::new(&format!("{v:04}_m{v}.sql")),
                        format!("-- capstan:up\nSELECT {v};").as_bytes(),
                    )
                    .unwrap()
                })
                .collect(),
        )
        .unwrap()
    }

    fn row(m: &Migration, state: &str) -> AppliedRow {
        AppliedRow {
            version: m.version,
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            up_checksum: Some(m.up_checksum.clone()),
            down_checksum: m.down_checksum.clone(),
            phase: "expand".into(),
            state: state.into(),
            applied_at: String::new(),
            applied_by: String::new(),
            binary_version: String::new(),
            duration_ms: 0,
            no_transaction: false,
            error: None,
        }
    }

    #[test]
    fn compare_classifies_every_state() {
        let s = set(4);
        let ms = s.migrations();
        let mut drifted = row(&ms[1], "applied");
        drifted.up_checksum = Some("x".into());
        let mut ahead = row(&ms[0], "applied");
        ahead.version = 9;
        let history = vec![row(&ms[0], "applied"), drifted, row(&ms[2], "dirty"), ahead];
        let states: Vec<(u64, State)> = compare(&s, &history)
            .iter()
            .map(|e| (e.version, e.state))
            .collect();
        assert_eq!(
            states,
            vec![
                (1, State::Applied),
                (2, State::Drifted),
                (3, State::Dirty),
                (4, State::Pending),
                (9, State::Ahead)
            ]
        );
    }

    #[test]
    fn another_name_with_another_up_section_is_a_collision_and_old_rows_compare_whole_files() {
        let s = set(2);
        let ms = s.migrations();
        let mut other = row(&ms[1], "applied");
        other.name = "theirs".into();
        other.up_checksum = Some("x".into());
        assert_eq!(classify(&ms[1], &other), State::Collision);
        // Renamed, same up section: the same migration.
        other.up_checksum = Some(ms[1].up_checksum.clone());
        assert_eq!(classify(&ms[1], &other), State::Applied);
        // A row an older capstan wrote: the whole file decides.
        let mut old = row(&ms[0], "applied");
        old.up_checksum = None;
        old.down_checksum = None;
        assert_eq!(classify(&ms[0], &old), State::Applied);
        old.checksum = "x".into();
        assert_eq!(classify(&ms[0], &old), State::Drifted);
        let e = compare(&s, &[old, row(&ms[1], "applied")]);
        match check_clean(&e) {
            Err(Error::Drift(d)) => assert!(d[0].contains("older capstan"), "{d:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pending_refuses_out_of_order_and_holds_back_contract() {
        let s = set(3);
        let m = Migrator::new(s.clone());
        let history = vec![row(&s.migrations()[2], "applied")];
        assert!(matches!(
            m.pending(&history, &UpOptions::default()),
            Err(Error::OutOfOrder { .. })
        ));
        let todo = m
            .pending(
                &[],
                &UpOptions {
                    to: Some(2),
                    ..UpOptions::default()
                },
            )
            .unwrap();
        assert_eq!(todo.len(), 2);
    }
}
