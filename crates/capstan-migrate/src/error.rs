//! Why the engine refused or failed.

use std::fmt;
use std::path::PathBuf;

use crate::archive::ArchiveError;
use crate::driver::{DbError, Direction, ExecFailure};
use crate::migrator::report::{CollisionInfo, DirtyInfo, RunReport};
use crate::source::SourceError;
use crate::url::UrlError;

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
    /// Another service registered in the database (from another
    /// capstan.toml) owns something this service claims.
    #[error("service `{service}` owns `{entry}`, and service `{other_service}`, registered in the database, owns `{other_entry}`: every schema and table has at most one owner. Nothing was run. Give the object to one of them in its capstan.toml")]
    ServiceOverlap {
        /// The service the command acts for.
        service: String,
        /// Its entry.
        entry: String,
        /// The registered service.
        other_service: String,
        /// Its entry.
        other_entry: String,
    },
}
