//! The archive's entries and the store each driver implements for them:
//! the copy SQL spliced into a migration, and the reads and writes of
//! `list`, `show`, `restore` and `purge`. The planner (`crate::archive`)
//! decides what to copy and restore; only the drivers write SQL for it.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ColumnInfo, DbError, Direction, Identity, TableInfo};

/// What a statement does to data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `ALTER TABLE … DROP COLUMN`.
    DropColumn,
    /// `DROP TABLE`.
    DropTable,
    /// `TRUNCATE`.
    Truncate,
    /// `DELETE` without `WHERE`.
    Delete,
    /// `UPDATE` without `WHERE`.
    Update,
    /// `ALTER COLUMN … TYPE` to a type that may not hold every old value.
    AlterType,
}

impl Kind {
    /// The stable name (`drop-column`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DropColumn => "drop-column",
            Kind::DropTable => "drop-table",
            Kind::Truncate => "truncate",
            Kind::Delete => "delete",
            Kind::Update => "update",
            Kind::AlterType => "alter-type",
        }
    }

    /// True when the statement destroys some columns of every row, not rows.
    pub fn destroys_columns(self) -> bool {
        matches!(self, Kind::DropColumn | Kind::Update | Kind::AlterType)
    }

    /// The kind called `name` (`drop-column`, …).
    pub fn parse(name: &str) -> Option<Kind> {
        [
            Kind::DropColumn,
            Kind::DropTable,
            Kind::Truncate,
            Kind::Delete,
            Kind::Update,
            Kind::AlterType,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What an archive copy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The primary key and the destroyed columns, restored by key.
    Columns,
    /// Every column of every row, restored whole.
    Rows,
}

impl Scope {
    /// The stored name (`columns`, `rows`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Columns => "columns",
            Scope::Rows => "rows",
        }
    }

    /// The scope stored as `name`.
    pub fn parse(name: &str) -> Option<Scope> {
        [Scope::Columns, Scope::Rows]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// `users.name`, `users.a,b`, `users`, or `audit.events` outside the default
/// schema (`public`, SQLite's `main`).
pub(crate) fn object_label(schema: Option<&str>, table: &str, columns: &[&str]) -> String {
    let table = match schema {
        Some(s) if s != "public" && s != "main" => format!("{s}.{table}"),
        _ => table.to_string(),
    };
    if columns.is_empty() {
        table
    } else {
        format!("{table}.{}", columns.join(","))
    }
}

/// An archive entry: what was copied, from where, when, and whether it was restored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchiveEntry {
    /// Its id (`capstan archive show ID`).
    pub id: i64,
    /// The migration that destroyed the data.
    pub version: u64,
    /// Its name.
    pub migration: String,
    /// Which section destroyed it.
    pub direction: Direction,
    /// The file line of the destroying statement.
    pub line: Option<u64>,
    /// The destroying statement.
    pub statement: String,
    /// What it did (`drop-column`, …).
    pub kind: Kind,
    /// Key and columns (restored by key), or whole rows.
    pub scope: Scope,
    /// The table's schema.
    pub table_schema: String,
    /// The table.
    pub table_name: String,
    /// Archived columns besides the key (columns scope), or every column (rows).
    pub columns: Vec<ColumnInfo>,
    /// The primary key then (empty: none).
    pub primary_key: Vec<String>,
    /// Where the copy is (`capstan_archive.a1_users_name`); `None` when no
    /// row was copied (the entry alone records the destruction).
    pub archive_table: Option<String>,
    /// Rows copied.
    pub row_count: u64,
    /// Size of the copy in bytes.
    pub size_bytes: u64,
    /// When (UTC, RFC 3339).
    pub archived_at: String,
    /// Who ran the migration.
    pub archived_by: String,
    /// Which binary.
    pub binary_version: String,
    /// When it was last restored.
    pub restored_at: Option<String>,
    /// Who restored it.
    pub restored_by: Option<String>,
    /// Seconds since it was archived, by the database's clock.
    pub age_secs: f64,
    /// The copy's table name as stored (empty: no copy).
    #[serde(skip)]
    pub(crate) stored_table: String,
}

impl ArchiveEntry {
    /// `users.name` (columns scope) or `users`.
    pub fn object(&self) -> String {
        let columns: Vec<&str> = match self.scope {
            Scope::Columns => self.columns.iter().map(|c| c.name.as_str()).collect(),
            Scope::Rows => Vec::new(),
        };
        object_label(Some(&self.table_schema), &self.table_name, &columns)
    }

    /// A table without a primary key archived whole for a column change: it
    /// can only go back whole, replacing the table's rows.
    #[cfg(feature = "cli")]
    pub(crate) fn whole_for_columns(&self) -> bool {
        self.scope == Scope::Rows && self.kind.destroys_columns()
    }

    /// The columns of the copy, in its order.
    #[cfg(any(feature = "postgres", feature = "sqlite", feature = "cli"))]
    pub(crate) fn copied_columns(&self) -> Vec<String> {
        let mut names = match self.scope {
            Scope::Columns => self.primary_key.clone(),
            Scope::Rows => Vec::new(),
        };
        names.extend(self.columns.iter().map(|c| c.name.clone()));
        names
    }

    /// Whether a copy holds rows (an entry of no rows has none).
    #[cfg(any(feature = "postgres", feature = "sqlite", feature = "cli"))]
    pub(crate) fn has_copy(&self) -> bool {
        !self.stored_table.is_empty()
    }

    /// Where the copy is, for messages.
    pub fn copy_name(&self) -> &str {
        self.archive_table.as_deref().unwrap_or("no copy (no rows)")
    }

    /// `0003_drop_users_name`.
    pub fn label(&self) -> String {
        capstan_format::label(self.version, &self.migration).to_string()
    }
}

/// What a copy takes, decided ahead of the run from the catalog (SQLite;
/// Postgres decides it when the statement runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// Key and columns, or whole rows.
    pub scope: Scope,
    /// Archived columns besides the key (columns scope) or every column (rows).
    pub columns: Vec<ColumnInfo>,
    /// The columns the copy selects.
    pub select: Vec<String>,
}

/// What an archive entry records about the migration and its statement.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// The entry id ([`ArchiveStore::next_archive_id`]).
    pub id: i64,
    /// The migration's version.
    pub version: u64,
    /// Its name.
    pub migration: &'a str,
    /// The section that destroys.
    pub direction: Direction,
    /// The file line of the destroying statement.
    pub line: usize,
    /// The statement (its first 2000 characters).
    pub statement: &'a str,
    /// What it destroys.
    pub kind: Kind,
    /// The size limit the entry's CHECK enforces (`None`: none).
    pub max_bytes: Option<u64>,
    /// Who runs the migration.
    pub identity: &'a Identity,
}

/// One copy to splice into a migration, before the statement it protects.
#[derive(Debug, Clone)]
pub struct CopyRequest<'a> {
    /// The entry it records.
    pub entry: NewEntry<'a>,
    /// The table's schema, as the statement names it.
    pub schema: Option<&'a str>,
    /// The table, as the statement names it.
    pub table: &'a str,
    /// The columns the statement destroys (empty: whole rows).
    pub destroyed: &'a [String],
    /// The table as the catalog has it right before the statement, if it exists.
    pub info: Option<&'a TableInfo>,
    /// What to copy, when decided ahead of the run.
    pub copy: Option<&'a CopySpec>,
    /// The migration runs in one transaction (so a table lock holds until it ends).
    pub transactional: bool,
}

/// The entries an earlier, unfinished run of a no-transaction migration
/// may have left for the same statement and table.
#[derive(Debug, Clone)]
pub struct UnfinishedQuery<'a> {
    /// The migration's version.
    pub version: u64,
    /// The section.
    pub direction: Direction,
    /// The statement's file line.
    pub line: usize,
    /// What it destroys.
    pub kind: Kind,
    /// The table's schema.
    pub schema: &'a str,
    /// The table.
    pub table: &'a str,
}

/// An entry [`ArchiveStore::unfinished_copies`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedCopy {
    /// Its id.
    pub id: i64,
    /// Its copy's table as stored (empty: no copy).
    pub stored_table: String,
    /// The columns it recorded.
    pub columns: Vec<ColumnInfo>,
}

/// One step of a restore, in order; the driver writes its SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreStep {
    /// Add a dropped column back.
    AddColumn(ColumnInfo),
    /// Write the archived columns back into the rows whose key matches.
    UpdateByKey {
        /// The columns to write.
        columns: Vec<String>,
        /// The primary key.
        key: Vec<String>,
    },
    /// Create a dropped table again (columns in order, then the key).
    CreateTable {
        /// Its columns.
        columns: Vec<ColumnInfo>,
        /// Its primary key (empty: none).
        key: Vec<String>,
    },
    /// Empty the table (a whole restore replaces its rows).
    DeleteAll,
    /// Insert the archived rows; with a key, only those whose key is free.
    Insert {
        /// The columns to write.
        columns: Vec<String>,
        /// Skip rows whose key exists (`None`: insert every row).
        unless_key: Option<Vec<String>>,
    },
}

/// A planned restore of one entry, for [`ArchiveStore::restore_archive`].
#[derive(Debug, Clone)]
pub struct RestoreRequest<'a> {
    /// The entry.
    pub entry: &'a ArchiveEntry,
    /// The steps, in order; the last one writes the rows back, if any does.
    pub steps: &'a [RestoreStep],
    /// Columns the copy holds as text, with the type to cast them back to.
    pub cast: &'a BTreeMap<String, String>,
    /// A whole restore: hold off writers and require this many rows in the
    /// table, or fail with an error naming [`RESTORE_GUARD`].
    pub guard_rows: Option<u64>,
    /// Recorded as who restored it.
    pub restored_by: &'a str,
}

/// The constraint that stops a whole-table restore when rows came or went.
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "cli"))]
pub const RESTORE_GUARD: &str = "rows_unchanged_since_archive";

/// capstan's archive, as each driver stores it.
#[async_trait]
pub trait ArchiveStore: Send {
    /// True when a copy decides what it takes when its statement runs
    /// (Postgres); false when the planner decides from the catalog (SQLite).
    fn copies_at_run_time(&self) -> bool;
    /// The SQL of one copy and its entry, run right before the statement it
    /// protects (empty: nothing to copy).
    fn archive_copy_sql(&self, request: &CopyRequest<'_>) -> Vec<String>;
    /// The SQL that discards entry `id` (and its copy `stored_table`) that
    /// an unfinished earlier run made, when a fresh copy replaces it.
    fn supersede_sql(&self, id: i64, stored_table: &str) -> Vec<String>;
    /// The next entry id; `previous` is the last one this run allocated.
    async fn next_archive_id(&mut self, previous: Option<i64>) -> Result<i64, DbError>;
    /// Entries not restored, made after the migration last completed in
    /// this direction, for the same statement and table; newest first.
    async fn unfinished_copies(
        &mut self,
        query: &UnfinishedQuery<'_>,
    ) -> Result<Vec<UnfinishedCopy>, DbError>;
    /// After a migration is done: drops the copy of entry `id` if it holds
    /// no rows (its entry alone records the destruction).
    async fn drop_empty_copy(&mut self, id: i64) -> Result<(), DbError> {
        let _ = id;
        Ok(())
    }
    /// The entries, oldest first (only entry `id` when given); empty when
    /// capstan never archived here.
    async fn archive_entries(&mut self, id: Option<i64>) -> Result<Vec<ArchiveEntry>, DbError>;
    /// The columns of an entry's copy as the catalog has them now (name,
    /// type); `None` when the copy is gone.
    async fn copy_columns(
        &mut self,
        entry: &ArchiveEntry,
    ) -> Result<Option<Vec<(String, String)>>, DbError>;
    /// The first `limit` rows of an entry's copy, every value as text, the
    /// columns of `cast` cast back to their type first.
    async fn archive_preview(
        &mut self,
        entry: &ArchiveEntry,
        cast: &[&ColumnInfo],
        limit: usize,
    ) -> Result<Vec<Vec<Option<String>>>, DbError>;
    /// Rows and bytes a copy of `spec` from `info` would take now.
    async fn estimate_copy(
        &mut self,
        info: &TableInfo,
        spec: &CopySpec,
    ) -> Result<(Option<u64>, Option<u64>), DbError>;
    /// Runs a restore in one transaction, marking the entry restored;
    /// returns the rows its last step wrote.
    async fn restore_archive(&mut self, request: &RestoreRequest<'_>) -> Result<u64, DbError>;
    /// Drops `entries` and their copies, in one transaction.
    async fn purge_archives(&mut self, entries: &[ArchiveEntry]) -> Result<(), DbError>;
}

/// An error about capstan's archive table `table`: `what` names the row and
/// the column.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn bad_archive(table: &str, what: impl fmt::Display) -> DbError {
    DbError::new(
        super::FailureKind::BadHistory,
        format!(
            "capstan's archive table {table} holds something capstan never writes: {what}. Nothing was run. \
             Someone edited the table by hand; restore it from a backup, or fix the row"
        ),
    )
}

/// Builds entry row `n` (1-based) from the columns both drivers read, in
/// order (`id` … `age`), every value as text; `shown` names a stored copy.
/// The stored direction, kind and scope become enums here, refusing what
/// capstan never writes.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn entry_from_row(
    table: &str,
    n: usize,
    r: &[Option<String>],
    shown: impl Fn(&str) -> String,
) -> Result<ArchiveEntry, DbError> {
    let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    let num = |i: usize| {
        r.get(i)
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let id: i64 = r
        .first()
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let bad = |column: &str, value: String, want: &str| {
        bad_archive(
            table,
            format!("column {column} of row {n} (entry {id}) is {value:?}, not {want}"),
        )
    };
    let direction = match text(3).as_str() {
        "up" => Direction::Up,
        "down" => Direction::Down,
        other => return Err(bad("direction", other.to_string(), "up or down")),
    };
    let kind = Kind::parse(&text(6)).ok_or_else(|| {
        bad(
            "kind",
            text(6),
            "drop-column, drop-table, truncate, delete, update or alter-type",
        )
    })?;
    let scope = Scope::parse(&text(7)).ok_or_else(|| bad("scope", text(7), "columns or rows"))?;
    let stored = text(12);
    Ok(ArchiveEntry {
        id,
        version: num(1).unwrap_or_default(),
        migration: text(2),
        direction,
        line: num(4),
        statement: text(5),
        kind,
        scope,
        table_schema: text(8),
        table_name: text(9),
        columns: serde_json::from_str(&text(10)).unwrap_or_default(),
        primary_key: serde_json::from_str(&text(11)).unwrap_or_default(),
        archive_table: (!stored.is_empty()).then(|| shown(&stored)),
        row_count: num(13).unwrap_or_default(),
        size_bytes: num(14).unwrap_or_default(),
        archived_at: text(15),
        archived_by: text(16),
        binary_version: text(17),
        restored_at: r.get(18).cloned().flatten(),
        restored_by: r.get(19).cloned().flatten(),
        age_secs: r
            .get(20)
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        stored_table: stored,
    })
}

/// The entries of an unfinished-copy query's rows (id, stored table,
/// columns); rows that do not read as such are skipped.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn unfinished(rows: Vec<Vec<Option<String>>>) -> Vec<UnfinishedCopy> {
    rows.iter()
        .filter_map(|r| {
            Some(UnfinishedCopy {
                id: r.first()?.as_deref()?.parse().ok()?,
                stored_table: r.get(1)?.clone()?,
                columns: serde_json::from_str(r.get(2)?.as_deref()?).ok()?,
            })
        })
        .collect()
}

/// A copy's columns (name, type) from catalog rows; `None` for no rows
/// (no such table).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn columns_of(rows: Vec<Vec<Option<String>>>) -> Option<Vec<(String, String)>> {
    if rows.is_empty() {
        return None;
    }
    Some(
        rows.into_iter()
            .filter_map(|r| Some((r[0].clone()?, r[1].clone().unwrap_or_default())))
            .collect(),
    )
}

/// The two numbers of a `SELECT count(*), size` row.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn counted(rows: &[Vec<Option<String>>]) -> (Option<u64>, Option<u64>) {
    let num = |i: usize| {
        rows.first()
            .and_then(|r| r[i].as_deref())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|f| f as u64)
    };
    (num(0), num(1))
}

/// The first `limit` rows of an entry's copy, selecting `cols`, in key order.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn preview_sql(
    dialect: crate::split::Dialect,
    entry: &ArchiveEntry,
    cols: &[String],
    limit: usize,
) -> String {
    use super::sql::{archive_ref, ident};
    let order = if entry.primary_key.is_empty() {
        String::new()
    } else {
        let key: Vec<String> = entry.primary_key.iter().map(|k| ident(k)).collect();
        format!(" ORDER BY {}", key.join(", "))
    };
    format!(
        "SELECT {} FROM {}{order} LIMIT {limit}",
        cols.join(", "),
        archive_ref(dialect, &entry.stored_table)
    )
}

/// Drops `entries`' copies, then the entries from `table`.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn purge_sql(
    dialect: crate::split::Dialect,
    table: &str,
    entries: &[ArchiveEntry],
) -> Vec<String> {
    let mut sql = Vec::new();
    for e in entries.iter().filter(|e| e.has_copy()) {
        sql.push(format!(
            "DROP TABLE IF EXISTS {}",
            super::sql::archive_ref(dialect, &e.stored_table)
        ));
    }
    for e in entries {
        sql.push(format!("DELETE FROM {table} WHERE id = {}", e.id));
    }
    sql
}
