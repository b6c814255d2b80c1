//! Archive before destroying: a migration that drops a column or a table,
//! truncates, deletes or updates every row, or changes a column's type in a
//! way that can lose information first copies what it destroys into capstan's
//! archive, in the same transaction, so `capstan archive restore` can put it
//! back.
//!
//! The engine does not parse SQL: a [`Detector`] (the linter's parser and
//! schema model, see `capstan_lint::Archivist`) says which statements destroy
//! what. This module reads the live catalog for the table's columns and
//! primary key, writes the copy (Postgres: a table in the `capstan_archive`
//! schema; SQLite: a `capstan_archive_*` table), records an entry
//! (`capstan.archive` / `capstan_archives`: migration, statement, object, rows,
//! size, time), and restores and purges entries.
//!
//! Two scopes: **columns** (a dropped, retyped or updated column of a table
//! with a primary key: the key and the column are copied, restored by key) and
//! **rows** (a dropped, truncated or emptied table, or any table without a
//! primary key: every column of every row, restored whole).
//!
//! A copy takes the table as its statement finds it, never the catalog from
//! before the migration alone (an earlier statement may have dropped the key
//! or renamed a column), holds values of the application's own types as
//! text (so it depends on no object a migration may drop), and is not kept
//! when it holds no rows. See `docs/archive.md`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::driver::{DbError, Direction, Driver};
use crate::source::MigrationSet;
use crate::split::Dialect;

mod plan;
#[cfg(feature = "cli")]
mod restore;

pub use crate::driver::{ArchiveEntry, Kind};
pub(crate) use plan::{estimate, finish, model, prepare, resolve, splice, PrepareContext};
#[cfg(feature = "cli")]
pub use restore::{preview, purge, restore};

/// Default per-object size limit: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The constraint that enforces the size limit on an archive entry.
pub(crate) const SIZE_CONSTRAINT: &str = "archive_within_max_size";

/// One statement that destroys data, as a [`Detector`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destruction {
    /// Index of the statement in its section (as split for the dialect).
    pub statement: usize,
    /// What it does.
    pub kind: Kind,
    /// The table's schema, when the statement names one.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
    /// The columns it destroys (empty for whole rows).
    pub columns: Vec<String>,
    /// `TRUNCATE … CASCADE`: tables referencing it by foreign key are emptied too.
    pub cascade: bool,
}

impl Destruction {
    /// `users.name`, `users.a,b` or `users` (schema-qualified outside `public`).
    pub fn object(&self) -> String {
        let columns: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        crate::driver::archive::object_label(self.schema.as_deref(), &self.table, &columns)
    }

    /// True when `--no-archive NAME` names this object: the table (`users`,
    /// `public.users`) or one of its destroyed columns (`users.name`).
    pub fn named_by(&self, name: &str) -> bool {
        let tables = [
            self.table.clone(),
            format!(
                "{}.{}",
                self.schema.as_deref().unwrap_or("public"),
                self.table
            ),
        ];
        tables
            .iter()
            .any(|t| name == t || self.columns.iter().any(|c| name == format!("{t}.{c}")))
    }
}

/// The destroying statements of a migration set, by migration and direction.
pub type Detected = BTreeMap<(u64, Direction), Vec<Destruction>>;

/// Finds the statements that destroy data. The engine has no SQL parser; the
/// `capstan` binary plugs the linter's in (`capstan_lint::Archivist`).
pub trait Detector: Send + Sync + fmt::Debug {
    /// The destroying statements of the sections `wanted` of `set`, with
    /// statement indices as `Section::statements(dialect)` splits them.
    fn detect(
        &self,
        set: &MigrationSet,
        dialect: Dialect,
        wanted: &[(u64, Direction)],
    ) -> Result<Detected, String>;
}

/// Every archive entry, oldest first (empty when capstan never archived here).
pub async fn list(driver: &mut dyn Driver) -> Result<Vec<ArchiveEntry>, DbError> {
    driver.archive_entries(None).await
}

/// One entry.
pub async fn get(driver: &mut dyn Driver, id: i64) -> Result<Option<ArchiveEntry>, DbError> {
    Ok(driver.archive_entries(Some(id)).await?.into_iter().next())
}

/// Why an archive operation did nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// No entry has this id.
    #[error("archive entry {0} does not exist (see `capstan archive list`)")]
    NotFound(i64),
    /// A faithful restore is impossible; nothing was changed.
    #[error("cannot restore archive entry {id} ({object}): {reason}; nothing was changed")]
    Refused {
        /// The entry.
        id: i64,
        /// Its object.
        object: String,
        /// Why.
        reason: String,
    },
    /// `--no-archive` names nothing the run destroys.
    #[error("--no-archive {name}: nothing this run destroys is called that (it destroys: {}); nothing was run", if known.is_empty() { "nothing".to_string() } else { known.join(", ") })]
    UnknownObject {
        /// The name given.
        name: String,
        /// What the run destroys.
        known: Vec<String>,
    },
    /// The detector could not read the migrations.
    #[error("cannot find the statements that destroy data: {0}")]
    Detector(String),
    /// `purge` was given no age and no retention is configured.
    #[error("purge needs --older-than DURATION, or `retention` in the [archive] table of capstan.toml; nothing was purged")]
    NoRetention,
    /// The database failed.
    #[error("{0}")]
    Db(#[from] DbError),
}

/// What `restore` did.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The entry.
    pub id: i64,
    /// Its object.
    pub object: String,
    /// The table was re-created (it had been dropped).
    pub table_created: bool,
    /// Columns re-added (they had been dropped).
    pub columns_added: Vec<String>,
    /// Rows written back.
    pub rows_restored: u64,
    /// Archived rows not written back: their key is gone (columns), or a row
    /// with their key exists again and was kept (rows).
    pub rows_not_restored: u64,
}

/// What `plan` says a pending migration would archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedArchive {
    /// The file line of the destroying statement.
    pub line: usize,
    /// What it does.
    pub kind: Kind,
    /// `users.name` or `users`.
    pub object: String,
    /// `columns` or `rows`; `None` when the table does not exist yet.
    pub scope: Option<String>,
    /// Rows that would be copied, as of now (`None`: the table does not exist yet).
    pub rows: Option<u64>,
    /// Estimated size of the copy in bytes, as of now.
    pub bytes: Option<u64>,
    /// Excluded with `--no-archive`.
    pub skipped: bool,
    /// Over the size limit: `up` would refuse unless `--no-archive` names it.
    pub over_limit: bool,
}

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// Parses `1GiB`, `500 MB`, `1048576`.
#[cfg(feature = "cli")]
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a size ({e}); write it like 1GiB, 500MB or 1048576"))
}

#[cfg(test)]
mod tests;
