//! capstan's history: the row type and its checks, and the store each
//! driver implements for it.

use async_trait::async_trait;
use serde::Serialize;

use super::{DbError, Identity};
use crate::source::{Migration, Phase};

/// The state of a history row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowState {
    /// The migration ran to the end.
    Applied,
    /// A no-transaction migration stopped part-way; only `repair` clears it.
    Dirty,
}

impl RowState {
    /// The stored name (`applied`, `dirty`).
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Applied => "applied",
            RowState::Dirty => "dirty",
        }
    }

    /// The state stored as `name`; `None` for anything capstan never writes.
    pub fn parse(name: &str) -> Option<RowState> {
        [RowState::Applied, RowState::Dirty]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for RowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

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
    pub phase: Phase,
    /// Applied, or dirty (a no-transaction migration stopped part-way).
    pub state: RowState,
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
        self.state == RowState::Dirty
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
    /// Only Postgres has a boolean type (SQLite stores 0 or 1, an `Int`).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Bool(bool),
    /// A value of a type capstan never writes there (named).
    Other(&'static str),
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// An error about capstan's history table `table`: `what` names the column
/// and the row.
pub(crate) fn bad_history(table: &str, what: impl std::fmt::Display) -> DbError {
    DbError::new(
        super::FailureKind::BadHistory,
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
    let Some(phase) = Phase::parse(&phase) else {
        return Err(bad_history(
            table,
            format!("{} is {phase:?}, not expand or contract", at("phase")),
        ));
    };
    let Some(state) = RowState::parse(&state) else {
        return Err(bad_history(
            table,
            format!("{} is {state:?}, not applied or dirty", at("state")),
        ));
    };
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

/// capstan's history tables, as each driver stores them.
#[async_trait]
pub trait HistoryStore: Send {
    /// Creates capstan's history tables if missing (call under the lock).
    async fn ensure_schema(&mut self) -> Result<(), DbError>;
    /// The history rows, oldest first; empty if capstan never ran here.
    async fn history(&mut self) -> Result<Vec<AppliedRow>, DbError>;
    /// Changes history without running migration SQL, in one transaction.
    async fn record(&mut self, change: Record<'_>) -> Result<(), DbError>;
    /// The rows of another migration tool's history table `table` (a name
    /// or `schema.name`, as the user wrote it), read with
    /// [`Tool::history_query`](crate::import::Tool::history_query); `None`
    /// when there is no such table. Read-only; used by `baseline --from`.
    async fn tool_history(
        &mut self,
        tool: crate::import::Tool,
        table: &str,
    ) -> Result<Option<Vec<crate::import::ToolHistoryRow>>, DbError>;
}
