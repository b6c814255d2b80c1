//! Archive before destroying: a migration that drops a column or a table,
//! truncates, deletes or updates every row, or changes a column's type in a
//! way that can lose information first copies what it destroys into capstan's
//! archive, in the same transaction, so `capstan archive restore` can put it
//! back.
//!
//! The engine does not parse SQL: a [`Detector`] (the linter's parser and
//! schema model, see `capstan_lint::hooks`) says which statements destroy
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

use serde::{Deserialize, Serialize};

use crate::driver::{DbError, Direction, Driver, FailureKind, Identity};
use crate::source::{MigrationSet, Section};
use crate::split::{Dialect, Statement};

/// Default per-object size limit: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The constraint that stops a whole-table restore when rows came or went.
const RESTORE_GUARD: &str = "rows_unchanged_since_archive";

/// The constraint that enforces the size limit on an archive entry.
pub(crate) const SIZE_CONSTRAINT: &str = "archive_within_max_size";

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

/// `users.name`, `users.a,b`, `users`, or `audit.events` outside the default
/// schema (`public`, SQLite's `main`).
fn object_label(schema: Option<&str>, table: &str, columns: &[&str]) -> String {
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
        object_label(self.schema.as_deref(), &self.table, &columns)
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
/// `capstan` binary plugs the linter's in (`capstan_lint::hooks::Archivist`).
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

/// A column as the live catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Type as the database spells it (`text`, `numeric(10,2)`, `INTEGER`).
    #[serde(rename = "type")]
    pub ty: String,
    /// Declared NOT NULL.
    pub not_null: bool,
    /// How the archive copy holds the values when not in `ty` itself:
    /// `text` for a type of the application's own (an enum, a domain, a
    /// composite, an extension's type, or an array of one), so the copy
    /// depends on no object a later migration may drop. `show` and `restore`
    /// cast the text back to `ty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_as: Option<String>,
}

/// A table as the live catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    /// Its schema (`main` on SQLite).
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnInfo>,
    /// Primary key columns in key order (empty: none).
    pub primary_key: Vec<String>,
    /// Columns the database computes (`GENERATED ALWAYS AS (…) STORED`):
    /// copied like any other, but never written back.
    pub generated: Vec<String>,
}

impl TableInfo {
    /// The column called `name`; failing an exact match, the one column
    /// whose name differs only in case (SQLite compares identifiers without
    /// case, and the parser folds unquoted ones to lower case).
    fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name).or_else(|| {
            let mut like = self
                .columns
                .iter()
                .filter(|c| c.name.eq_ignore_ascii_case(name));
            match (like.next(), like.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        })
    }
}

/// Quotes an identifier (both dialects).
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a string literal (both dialects; standard_conforming_strings on).
pub(crate) fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn opt_lit(s: Option<&str>) -> String {
    s.map_or_else(|| "NULL".into(), lit)
}

fn table_ref(dialect: Dialect, schema: &str, name: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("{}.{}", ident(schema), ident(name)),
        Dialect::Sqlite => ident(name),
    }
}

/// Where the archive entries live.
fn entries_table(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "capstan.archive",
        Dialect::Sqlite => "capstan_archives",
    }
}

fn now_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "now()",
        Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
    }
}

/// The archive table of entry `id` (unquoted name, and how to refer to it).
fn archive_table(dialect: Dialect, id: i64, d: &Destruction) -> (String, String) {
    let mut base: String = format!("a{id}_{}_{}", d.table, d.columns.join("_"))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    base = base.trim_end_matches('_').to_string();
    base.truncate(48);
    match dialect {
        Dialect::Postgres => (base.clone(), format!("capstan_archive.{}", ident(&base))),
        Dialect::Sqlite => {
            let name = format!("capstan_archive_{base}");
            (name.clone(), ident(&name))
        }
    }
}

fn archive_ref(dialect: Dialect, stored: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("capstan_archive.{}", ident(stored)),
        Dialect::Sqlite => ident(stored),
    }
}

/// Reads a table's columns and primary key from the live catalog; `None`
/// when there is no such table.
pub async fn table_info(
    driver: &mut dyn Driver,
    schema: Option<&str>,
    table: &str,
) -> Result<Option<TableInfo>, DbError> {
    match driver.dialect() {
        Dialect::Postgres => {
            let name = match schema {
                Some(s) => format!("{}.{}", ident(s), ident(table)),
                None => ident(table),
            };
            let rows = driver
                .query(&format!(
                    "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                       (SELECT k.ord FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                         WHERE i.indrelid = c.oid AND i.indisprimary AND k.attnum = a.attnum), \
                       a.attgenerated <> '' \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid \
                     WHERE c.oid = to_regclass({}) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
                     ORDER BY a.attnum",
                    lit(&name)
                ))
                .await?;
            Ok(info_from_rows(rows, |r| {
                (
                    r[0].clone().unwrap_or_default(),
                    r[1].clone().unwrap_or_default(),
                    ColumnInfo {
                        name: r[2].clone().unwrap_or_default(),
                        ty: r[3].clone().unwrap_or_default(),
                        not_null: r[4].as_deref() == Some("t"),
                        stored_as: None,
                    },
                    r[5].as_deref().and_then(|k| k.parse().ok()),
                    r[6].as_deref() == Some("t"),
                )
            }))
        }
        Dialect::Sqlite => {
            // SQLite compares table names without case: `DROP TABLE users`
            // drops `Users`, and the catalog's spelling is the one to keep.
            let kind = driver
                .query(&format!(
                    "SELECT type, name FROM sqlite_master WHERE name = {} COLLATE NOCASE",
                    lit(table)
                ))
                .await?;
            let Some(stored) = kind
                .first()
                .filter(|r| r[0].as_deref() == Some("table"))
                .and_then(|r| r[1].clone())
            else {
                return Ok(None);
            };
            let rows = driver
                .query(&format!(
                    "SELECT name, type, \"notnull\", pk FROM pragma_table_info({}) ORDER BY cid",
                    lit(&stored)
                ))
                .await?;
            Ok(info_from_rows(rows, |r| {
                (
                    "main".to_string(),
                    stored.clone(),
                    ColumnInfo {
                        name: r[0].clone().unwrap_or_default(),
                        ty: r[1].clone().unwrap_or_default(),
                        not_null: r[2].as_deref() == Some("1"),
                        stored_as: None,
                    },
                    r[3].as_deref()
                        .and_then(|k| k.parse::<i64>().ok())
                        .filter(|k| *k > 0),
                    false,
                )
            }))
        }
    }
}

type CatalogRow = (String, String, ColumnInfo, Option<i64>, bool);

fn info_from_rows(
    rows: Vec<Vec<Option<String>>>,
    read: impl Fn(&[Option<String>]) -> CatalogRow,
) -> Option<TableInfo> {
    let mut info: Option<TableInfo> = None;
    let mut keys = Vec::new();
    for r in &rows {
        let (schema, name, col, key, generated) = read(r);
        if let Some(k) = key {
            keys.push((k, col.name.clone()));
        }
        let table = info.get_or_insert_with(|| TableInfo {
            schema,
            name,
            columns: Vec::new(),
            primary_key: Vec::new(),
            generated: Vec::new(),
        });
        if generated {
            table.generated.push(col.name.clone());
        }
        table.columns.push(col);
    }
    keys.sort();
    if let Some(i) = info.as_mut() {
        i.primary_key = keys.into_iter().map(|(_, n)| n).collect();
    }
    info
}

/// The data a statement destroys in *other* tables through foreign keys
/// (Postgres): `TRUNCATE … CASCADE` empties every referencing table; an
/// unbounded `DELETE` deletes the referencing rows of `ON DELETE CASCADE`
/// keys and rewrites the key columns of `ON DELETE SET NULL / SET DEFAULT`
/// ones. Followed transitively; each becomes a destruction of its own.
/// (SQLite enforces foreign keys only with `PRAGMA foreign_keys`, which
/// capstan's connection leaves off, so nothing cascades there.)
async fn dependents(
    driver: &mut dyn Driver,
    d: &Destruction,
    info: &TableInfo,
) -> Result<Vec<Destruction>, DbError> {
    let truncate = d.kind == Kind::Truncate && d.cascade;
    if driver.dialect() != Dialect::Postgres || !(truncate || d.kind == Kind::Delete) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut seen = vec![(info.schema.clone(), info.name.clone())];
    let mut queue = vec![(info.schema.clone(), info.name.clone())];
    while let Some((schema, table)) = queue.pop() {
        let rows = driver
            .query(&format!(
                "SELECT n.nspname, c.relname, con.confdeltype, \
                   (SELECT json_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a \
                     WHERE a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey))::text \
                 FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
                   JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE con.contype = 'f' AND con.confrelid = to_regclass({}) \
                 ORDER BY n.nspname, c.relname",
                lit(&table_ref(Dialect::Postgres, &schema, &table))
            ))
            .await?;
        for r in rows {
            let child = (
                r[0].clone().unwrap_or_default(),
                r[1].clone().unwrap_or_default(),
            );
            let action = r[2].as_deref().unwrap_or("");
            let (kind, columns) = match (truncate, action) {
                (true, _) | (false, "c") => (d.kind, Vec::new()),
                (false, "n" | "d") => (
                    Kind::Update,
                    serde_json::from_str(r[3].as_deref().unwrap_or("[]")).unwrap_or_default(),
                ),
                _ => continue,
            };
            if seen.contains(&child) {
                continue;
            }
            seen.push(child.clone());
            if kind != Kind::Update {
                queue.push(child.clone());
            }
            out.push(Destruction {
                statement: d.statement,
                kind,
                schema: Some(child.0),
                table: child.1,
                columns,
                cascade: false,
            });
        }
    }
    Ok(out)
}

/// `found`, each followed by what it destroys through foreign keys, with
/// its table as the live catalog has it now (`None`: no such table yet).
pub(crate) async fn resolve(
    driver: &mut dyn Driver,
    found: &[Destruction],
) -> Result<Vec<(Destruction, Option<TableInfo>)>, DbError> {
    let mut work = Vec::new();
    for d in found {
        let info = table_info(driver, d.schema.as_deref(), &d.table).await?;
        let children = match &info {
            Some(info) => dependents(driver, d, info).await?,
            None => Vec::new(),
        };
        work.push((d.clone(), info));
        for child in children {
            let info = table_info(driver, child.schema.as_deref(), &child.table).await?;
            work.push((child, info));
        }
    }
    Ok(work)
}

/// `work` (from [`resolve`], in statement order) with each table as it is
/// right before its statement: the catalog as it was before the section,
/// less what earlier destructions of the same section took away (a dropped
/// column, and the primary key with it; a dropped table: `None`).
pub(crate) fn model(
    work: Vec<(Destruction, Option<TableInfo>)>,
) -> Vec<(Destruction, Option<TableInfo>)> {
    let mut now: Vec<((String, String), Option<TableInfo>)> = Vec::new();
    work.into_iter()
        .map(|(d, info)| {
            let Some(info) = info else {
                return (d, None);
            };
            let key = (info.schema.clone(), info.name.clone());
            let current = match now.iter().find(|(k, _)| *k == key) {
                Some((_, t)) => t.clone(),
                None => Some(info),
            };
            let after = match (&current, d.kind) {
                (Some(_), Kind::DropTable) => None,
                (Some(t), Kind::DropColumn) => {
                    let mut t = t.clone();
                    let gone: Vec<String> = d
                        .columns
                        .iter()
                        .filter_map(|c| t.column(c).map(|c| c.name.clone()))
                        .collect();
                    if t.primary_key.iter().any(|k| gone.contains(k)) {
                        t.primary_key.clear();
                    }
                    t.columns.retain(|c| !gone.contains(&c.name));
                    t.generated.retain(|g| !gone.contains(g));
                    Some(t)
                }
                (t, _) => t.clone(),
            };
            match now.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = after,
                None => now.push((key, after)),
            }
            (d, current)
        })
        .collect()
}

/// What gets copied for one destruction.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Copy {
    scope: &'static str,
    /// Archived columns besides the key (columns scope) or every column (rows).
    columns: Vec<ColumnInfo>,
    /// The columns the copy selects.
    select: Vec<String>,
}

/// Decides what to copy; `None` when nothing the statement names exists.
fn copy_of(d: &Destruction, info: &TableInfo) -> Option<Copy> {
    let destroyed: Vec<ColumnInfo> = d
        .columns
        .iter()
        .filter_map(|c| info.column(c).cloned())
        .collect();
    let by_key = d.kind.destroys_columns()
        && !info.primary_key.is_empty()
        && !destroyed.iter().any(|c| info.primary_key.contains(&c.name));
    if d.kind.destroys_columns() && destroyed.is_empty() {
        return None;
    }
    if by_key {
        let mut select = info.primary_key.clone();
        select.extend(destroyed.iter().map(|c| c.name.clone()));
        Some(Copy {
            scope: "columns",
            columns: destroyed,
            select,
        })
    } else {
        Some(Copy {
            scope: "rows",
            columns: info.columns.clone(),
            select: info.columns.iter().map(|c| c.name.clone()).collect(),
        })
    }
}

/// SQLite: the bytes of `columns` summed over a table's rows (an aggregate).
fn sqlite_payload(columns: &[String]) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| format!("coalesce(length(CAST({} AS BLOB)), 0)", ident(c)))
        .collect();
    if parts.is_empty() {
        parts.push("0".into());
    }
    format!("coalesce(sum({}), 0)", parts.join(" + "))
}

/// SQLite: the bytes a whole table's rows take (their records' payload, as
/// `dbstat` counts it), whatever its columns are called when it runs.
fn sqlite_table_size(table: &str) -> String {
    format!(
        "(SELECT coalesce(sum(payload), 0) FROM dbstat WHERE name = {})",
        lit(table)
    )
}

/// The expression that sizes an archive table's contents.
fn size_sql(dialect: Dialect, table: &str, columns: &[String]) -> String {
    match dialect {
        Dialect::Postgres => format!("pg_total_relation_size({})", lit(table)),
        Dialect::Sqlite => format!("(SELECT {} FROM {table})", sqlite_payload(columns)),
    }
}

/// One archive copy spliced into a migration, before the statement it protects.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// Index of the destroying statement in the section.
    pub statement: usize,
    /// `users.name`.
    pub object: String,
    /// The entry id.
    pub id: i64,
    /// The SQL, run in order right before the statement.
    pub sql: Vec<String>,
}

/// Everything [`prepare`] needs to know about the migration.
pub(crate) struct PrepareContext<'a> {
    pub version: u64,
    pub name: &'a str,
    pub direction: Direction,
    pub section: &'a Section,
    pub statements: &'a [Statement],
    pub identity: &'a Identity,
    pub max_bytes: Option<u64>,
    pub skip: &'a [String],
    /// The migration runs in one transaction (so a table lock holds until it ends).
    pub transactional: bool,
}

/// Reads the catalog and writes the archive SQL for `found`. Returns the
/// copies and, for objects the operator excluded with `--no-archive`, the
/// notes to record in history.
///
/// On Postgres each copy decides at run time, from the catalog as its
/// statement finds it (earlier statements of the same migration may have
/// dropped the key, renamed or dropped columns): see [`pg_copy`]. On SQLite
/// the copy follows the catalog before the migration, less what earlier
/// destroying statements of the same section removed ([`model`]).
pub(crate) async fn prepare(
    driver: &mut dyn Driver,
    cx: &PrepareContext<'_>,
    found: &[Destruction],
) -> Result<(Vec<Prepared>, Vec<String>), DbError> {
    let dialect = driver.dialect();
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut last_id = None;
    for (d, info) in &model(resolve(driver, found).await?) {
        let Some(stmt) = cx.statements.get(d.statement) else {
            continue;
        };
        let line = cx.section.first_line + stmt.line_offset;
        if let Some(name) = cx.skip.iter().find(|n| d.named_by(n)) {
            notes.push(format!(
                "not archived (--no-archive {name}): {} of {} at line {line}",
                d.kind,
                d.object()
            ));
            continue;
        }
        let copy = info.as_ref().and_then(|i| {
            let copy = copy_of(d, i);
            // SQLite: after an earlier `ALTER` of the same section (a
            // rename, a rebuilt table renamed into place), the key or the
            // column may not be called what the catalog said before the run:
            // copy the table whole, as it is when the statement runs.
            let altered_before = dialect == Dialect::Sqlite
                && cx.statements[..d.statement.min(cx.statements.len())]
                    .iter()
                    .any(|s| s.keyword == "ALTER");
            if altered_before
                && d.kind.destroys_columns()
                && copy.as_ref().is_none_or(|c| c.scope == "columns")
            {
                return Some((
                    i,
                    Copy {
                        scope: "rows",
                        columns: i.columns.clone(),
                        select: i.columns.iter().map(|c| c.name.clone()).collect(),
                    },
                ));
            }
            Some((i, copy?))
        });
        if dialect == Dialect::Sqlite && copy.is_none() {
            continue;
        }
        // A no-transaction migration that stopped between this copy and the
        // statement it protects (a crash, then `repair`) made an entry that
        // no completed run followed: the run again is the same run, so it
        // keeps one entry, not two.
        let mut supersede = Vec::new();
        if let (false, Some((info, copy))) = (cx.transactional, &copy) {
            if let Some((old_id, old_table)) =
                unfinished_copy(driver, dialect, cx, d, info, line, &copy.columns).await?
            {
                if matches!(d.kind, Kind::Truncate | Kind::Delete | Kind::Update) {
                    // The rows may already be gone: the first copy is the one
                    // that holds them.
                    notes.push(format!(
                        "archive entry {old_id} (made by an earlier, unfinished run of this migration) kept as the copy of {} of {} at line {line}",
                        d.kind,
                        d.object()
                    ));
                    continue;
                }
                // The object still exists (the catalog named it), so the
                // statement did not run: a fresh copy replaces the old one.
                if !old_table.is_empty() {
                    supersede.push(format!(
                        "DROP TABLE IF EXISTS {}",
                        archive_ref(dialect, &old_table)
                    ));
                }
                supersede.push(format!(
                    "DELETE FROM {} WHERE id = {old_id}",
                    entries_table(dialect)
                ));
            }
        }
        let id = next_id(driver, dialect, last_id).await?;
        last_id = Some(id);
        let (stored, archive) = archive_table(dialect, id, d);
        let text = cx.section.sql[stmt.range.clone()].trim();
        let text: String = text.chars().take(2000).collect();
        let entry = EntryValues {
            id,
            cx,
            line,
            text: &text,
            kind: d.kind,
        };
        let mut sql = supersede;
        match (dialect, &copy) {
            (Dialect::Postgres, _) => {
                let target = match info {
                    Some(i) => table_ref(dialect, &i.schema, &i.name),
                    None => match &d.schema {
                        Some(s) => format!("{}.{}", ident(s), ident(&d.table)),
                        None => ident(&d.table),
                    },
                };
                sql.push(pg_copy(&entry, d, &target, &stored, &archive));
            }
            (Dialect::Sqlite, Some((info, copy))) => {
                // The entry first, counted and sized on the source (the same
                // rows: nothing else writes while the migration holds the
                // write lock), so a copy over the limit is refused before it
                // exists, also in a no-transaction migration where the two
                // statements do not roll back together. A copy of no rows
                // is dropped once the migration is done ([`finish`]).
                let source = table_ref(dialect, &info.schema, &info.name);
                let select = match copy.scope {
                    "rows" => "*".to_string(),
                    // Qualified, so a name that does not resolve is an
                    // error, never SQLite's fallback to a string literal.
                    _ => {
                        let select: Vec<String> = copy
                            .select
                            .iter()
                            .map(|c| format!("s.{}", ident(c)))
                            .collect();
                        select.join(", ")
                    }
                };
                sql.push(sqlite_entry(&entry, info, copy, &stored, &source));
                sql.push(format!(
                    "CREATE TABLE {archive} AS SELECT {select} FROM {source} AS s"
                ));
            }
            (Dialect::Sqlite, None) => continue,
        }
        out.push(Prepared {
            statement: d.statement,
            object: d.object(),
            id,
            sql,
        });
    }
    Ok((out, notes))
}

/// What an archive entry records about the migration and its statement.
struct EntryValues<'a> {
    id: i64,
    cx: &'a PrepareContext<'a>,
    line: usize,
    text: &'a str,
    kind: Kind,
}

impl EntryValues<'_> {
    /// The literal values of the entry's columns, by placeholder.
    fn literals(&self) -> Vec<(&'static str, String)> {
        let cx = self.cx;
        vec![
            ("@ID@", self.id.to_string()),
            ("@VERSION@", cx.version.to_string()),
            ("@NAME@", lit(cx.name)),
            (
                "@DIR@",
                lit(match cx.direction {
                    Direction::Up => "up",
                    Direction::Down => "down",
                }),
            ),
            ("@LINE@", self.line.to_string()),
            ("@TEXT@", lit(self.text)),
            ("@KIND@", lit(self.kind.as_str())),
            (
                "@MAX@",
                cx.max_bytes
                    .map_or_else(|| "NULL".into(), |m| m.to_string()),
            ),
            ("@BY@", lit(&cx.identity.applied_by)),
            ("@BINARY@", lit(&cx.identity.binary_version)),
        ]
    }

    /// `template` with the entry's placeholders and `extra` filled in, in
    /// one pass, so a value that holds a placeholder's text (the statement,
    /// a column name) is never expanded.
    fn fill(&self, template: &str, extra: Vec<(&'static str, String)>) -> String {
        let mut values = self.literals();
        values.extend(extra);
        let mut out = String::new();
        let mut rest = template;
        while let Some(at) = rest.find('@') {
            let hit = values.iter().find(|(k, _)| rest[at..].starts_with(k));
            match hit {
                Some((k, v)) => {
                    out.push_str(&rest[..at]);
                    out.push_str(v);
                    rest = &rest[at + k.len()..];
                }
                None => {
                    out.push_str(&rest[..=at]);
                    rest = &rest[at + 1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

const ENTRY_COLUMNS: &str = "id, version, migration, direction, line, statement, kind, scope, table_schema, table_name, columns, primary_key, archive_table, row_count, size_bytes, max_bytes, archived_at, archived_by, binary_version";

/// The SQLite entry for a copy of `copy` from `info`, counted and sized on
/// the source.
fn sqlite_entry(
    entry: &EntryValues<'_>,
    info: &TableInfo,
    copy: &Copy,
    stored: &str,
    source: &str,
) -> String {
    let (columns, key, size) = if copy.scope == "rows" {
        // Every column, as the table is when the statement runs (an earlier
        // statement of the migration may have renamed one): read then.
        let table = lit(&info.name);
        (
            format!(
                "(SELECT json_group_array(json_object('name', name, 'type', type, 'not_null', json(CASE WHEN \"notnull\" THEN 'true' ELSE 'false' END))) \
                 FROM (SELECT * FROM pragma_table_info({table}) ORDER BY cid))"
            ),
            format!(
                "(SELECT json_group_array(name) FROM (SELECT name FROM pragma_table_info({table}) WHERE pk > 0 ORDER BY pk))"
            ),
            sqlite_table_size(&info.name),
        )
    } else {
        (
            lit(&serde_json::to_string(&copy.columns).expect("columns serialize")),
            lit(&serde_json::to_string(&info.primary_key).expect("key serializes")),
            size_sql(Dialect::Sqlite, source, &copy.select),
        )
    };
    let template = format!(
        "INSERT INTO capstan_archives ({ENTRY_COLUMNS}) \
         SELECT @ID@, @VERSION@, @NAME@, @DIR@, @LINE@, @TEXT@, @KIND@, @SCOPE@, @SCHEMA@, @TABLE@, @COLUMNS@, @KEY@, @STORED@, \
           (SELECT count(*) FROM @SOURCE@), @SIZE@, @MAX@, {now}, @BY@, @BINARY@",
        now = now_sql(Dialect::Sqlite),
    );
    entry.fill(
        &template,
        vec![
            ("@SCOPE@", lit(copy.scope)),
            ("@SCHEMA@", lit(&info.schema)),
            ("@TABLE@", lit(&info.name)),
            ("@COLUMNS@", columns),
            ("@KEY@", key),
            ("@STORED@", lit(stored)),
            ("@SOURCE@", source.to_string()),
            ("@SIZE@", size),
        ],
    )
}

/// The Postgres copy for `d`: one `DO` block that finds the table `target`
/// as the statement will find it (`to_regclass` at run time), its primary
/// key and columns *then*, decides the scope as [`copy_of`] does, holds off
/// writers (`SHARE` lock, in a transactional migration), copies — values of
/// the application's own types as text, so the copy depends on nothing a
/// later migration may drop — makes the copy private, and records the
/// entry. A copy of no rows is dropped again: the entry alone records it.
/// A table that does not exist at that point, or none of whose named
/// columns does, is not archived.
fn pg_copy(
    entry: &EntryValues<'_>,
    d: &Destruction,
    target: &str,
    stored: &str,
    archive: &str,
) -> String {
    let destroyed: Vec<String> = d.columns.iter().map(|c| lit(c)).collect();
    let lock = if entry.cx.transactional {
        "EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE', capstan_src::regclass);"
    } else {
        ""
    };
    let template = r#"
DECLARE
  capstan_src oid; capstan_nsp text; capstan_rel text;
  capstan_key text[]; capstan_all text[]; capstan_cols text[]; capstan_scope text;
  capstan_destroyed text[] := ARRAY[@DESTROYED@]::text[];
  capstan_info jsonb := '[]'; capstan_select text[] := '{}';
  capstan_copied bigint; capstan_size bigint := 0; capstan_stored text := @STORED@;
  capstan_grantee oid; capstan_c record;
BEGIN
  SELECT c.oid, n.nspname, c.relname INTO capstan_src, capstan_nsp, capstan_rel
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = pg_catalog.to_regclass(@TARGET@) AND c.relkind IN ('r', 'p');
  IF capstan_src IS NULL THEN RETURN; END IF;
  @LOCK@
  SELECT coalesce(array_agg(a.attname::text ORDER BY k.ord), '{}') INTO capstan_key
    FROM pg_catalog.pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
   WHERE i.indrelid = capstan_src AND i.indisprimary;
  SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') INTO capstan_all
    FROM pg_catalog.pg_attribute a WHERE a.attrelid = capstan_src AND a.attnum > 0 AND NOT a.attisdropped;
  IF @BY_COLUMNS@ THEN
    SELECT coalesce(array_agg(u.name ORDER BY u.ord), '{}') INTO capstan_cols
      FROM unnest(capstan_destroyed) WITH ORDINALITY AS u(name, ord) WHERE u.name = ANY (capstan_all);
    IF cardinality(capstan_cols) = 0 THEN RETURN; END IF;
  END IF;
  IF @BY_COLUMNS@ AND cardinality(capstan_key) > 0 AND NOT capstan_key && capstan_cols THEN
    capstan_scope := 'columns';
  ELSE
    capstan_scope := 'rows';
    capstan_cols := capstan_all;
  END IF;
  FOR capstan_c IN
    SELECT u.name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS ty, a.attnotnull AS nn,
           t.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace AS own, u.ord <= cardinality(capstan_key) AS is_key
      FROM unnest(CASE WHEN capstan_scope = 'columns' THEN capstan_key || capstan_cols ELSE capstan_cols END)
             WITH ORDINALITY AS u(name, ord)
      JOIN pg_catalog.pg_attribute a ON a.attrelid = capstan_src AND a.attname = u.name
      JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     ORDER BY u.ord
  LOOP
    capstan_select := capstan_select || CASE WHEN capstan_c.own
      THEN pg_catalog.format('%I::text AS %I', capstan_c.name, capstan_c.name)
      ELSE pg_catalog.format('%I', capstan_c.name) END;
    IF capstan_scope = 'rows' OR NOT capstan_c.is_key THEN
      capstan_info := capstan_info || jsonb_build_array(
        jsonb_build_object('name', capstan_c.name, 'type', capstan_c.ty, 'not_null', capstan_c.nn)
        || CASE WHEN capstan_c.own THEN '{"stored_as": "text"}'::jsonb ELSE '{}'::jsonb END);
    END IF;
  END LOOP;
  EXECUTE pg_catalog.format('CREATE TABLE capstan_archive.%I AS SELECT %s FROM %s',
    capstan_stored, array_to_string(capstan_select, ', '), capstan_src::regclass);
  GET DIAGNOSTICS capstan_copied = ROW_COUNT;
  IF capstan_copied = 0 THEN
    EXECUTE pg_catalog.format('DROP TABLE capstan_archive.%I', capstan_stored);
    capstan_stored := '';
  ELSE
    @PRIVATE@;
    capstan_size := pg_catalog.pg_total_relation_size(@ARCHIVE@::regclass);
  END IF;
  INSERT INTO capstan.archive (@ENTRY_COLUMNS@)
  VALUES (@ID@, @VERSION@, @NAME@, @DIR@, @LINE@, @TEXT@, @KIND@, capstan_scope, capstan_nsp, capstan_rel,
          capstan_info::text, to_jsonb(capstan_key)::text, capstan_stored, capstan_copied, capstan_size,
          @MAX@, now(), @BY@, @BINARY@);
END"#;
    let by_columns = if d.kind.destroys_columns() {
        "true"
    } else {
        "false"
    };
    let body = entry.fill(
        template,
        vec![
            ("@DESTROYED@", destroyed.join(", ")),
            ("@STORED@", lit(stored)),
            ("@TARGET@", lit(target)),
            ("@LOCK@", lock.to_string()),
            ("@BY_COLUMNS@", by_columns.to_string()),
            ("@PRIVATE@", private_sql(archive)),
            ("@ARCHIVE@", lit(archive)),
            ("@ENTRY_COLUMNS@", ENTRY_COLUMNS.to_string()),
        ],
    );
    // A dollar-quote tag the body does not contain.
    let mut tag = "$capstan_archive$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$capstan_archive{n}$");
    }
    format!("DO {tag}{body}\n{tag}")
}

/// After a migration is done: drops the SQLite copy of entry `id` when it
/// holds no rows (its entry alone records the destruction). Postgres drops
/// such a copy in the block that made it.
pub(crate) async fn finish(driver: &mut dyn Driver, id: i64) -> Result<(), DbError> {
    if driver.dialect() != Dialect::Sqlite {
        return Ok(());
    }
    let rows = driver
        .query(&format!(
            "SELECT archive_table FROM capstan_archives WHERE id = {id} AND row_count = 0 AND archive_table <> ''"
        ))
        .await?;
    if let Some(stored) = rows.first().and_then(|r| r[0].clone()) {
        driver
            .transact(&[
                format!("DROP TABLE IF EXISTS {}", ident(&stored)),
                format!("UPDATE capstan_archives SET archive_table = '' WHERE id = {id}"),
            ])
            .await?;
    }
    Ok(())
}

/// The entry (id, stored archive table) an unfinished earlier run of this
/// no-transaction migration made for the same statement and object: not
/// restored, and made after the migration last completed in this direction.
async fn unfinished_copy(
    driver: &mut dyn Driver,
    dialect: Dialect,
    cx: &PrepareContext<'_>,
    d: &Destruction,
    info: &TableInfo,
    line: usize,
    columns: &[ColumnInfo],
) -> Result<Option<(i64, String)>, DbError> {
    // SQLite's entries have whole seconds, its log milliseconds.
    let (log, last, floor) = match dialect {
        Dialect::Postgres => ("capstan.log", "max(at)", "'-infinity'::timestamptz"),
        Dialect::Sqlite => (
            "capstan_log",
            "strftime('%Y-%m-%dT%H:%M:%SZ', max(at))",
            "''",
        ),
    };
    let direction = match cx.direction {
        Direction::Up => "up",
        Direction::Down => "down",
    };
    let rows = driver
        .query(&format!(
            "SELECT id, archive_table, columns FROM {entries} WHERE version = {version} AND direction = {dir} AND line = {line} \
             AND kind = {kind} AND table_schema = {schema} AND table_name = {table} \
             AND restored_at IS NULL \
             AND archived_at > coalesce((SELECT {last} FROM {log} WHERE version = {version} AND action = {dir}), {floor}) \
             ORDER BY id DESC",
            entries = entries_table(dialect),
            version = cx.version,
            dir = lit(direction),
            kind = lit(d.kind.as_str()),
            schema = lit(&info.schema),
            table = lit(&info.name),
        ))
        .await?;
    // The same columns (by name: Postgres records the types it found at
    // run time, and how it stored them).
    let names = |c: &[ColumnInfo]| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    Ok(rows.iter().find_map(|r| {
        let id = r.first()?.as_deref()?.parse().ok()?;
        let table = r.get(1)?.clone()?;
        let had: Vec<ColumnInfo> = serde_json::from_str(r.get(2)?.as_deref()?).ok()?;
        (names(&had) == names(columns)).then_some((id, table))
    }))
}

/// PL/pgSQL (with `capstan_grantee oid` declared) that revokes every privilege on the Postgres table `table`
/// (an archive copy, named by capstan: no `$` or quote in it) from every
/// role but its owner, PUBLIC included: `CREATE TABLE … AS` gives a new table
/// the schema's default privileges, not the source table's grants or its
/// row-level security, so a reader could otherwise see a dropped column or
/// rows a policy hid from it.
pub(crate) fn private_sql(table: &str) -> String {
    format!(
        "FOR capstan_grantee IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a \
           WHERE c.oid = '{table}'::regclass AND a.grantee <> c.relowner LOOP \
           IF capstan_grantee = 0 THEN EXECUTE 'REVOKE ALL ON {table} FROM PUBLIC'; \
           ELSE EXECUTE format('REVOKE ALL ON {table} FROM %I', pg_catalog.pg_get_userbyid(capstan_grantee)); END IF; \
         END LOOP"
    )
}

/// The next entry id: a sequence on Postgres; on SQLite, after the highest
/// id ever used (the runner holds the write lock, so no other runner races).
async fn next_id(
    driver: &mut dyn Driver,
    dialect: Dialect,
    previous: Option<i64>,
) -> Result<i64, DbError> {
    let sql = match (dialect, previous) {
        (Dialect::Sqlite, Some(p)) => return Ok(p + 1),
        (Dialect::Postgres, _) => "SELECT nextval('capstan.archive_ids')",
        (Dialect::Sqlite, None) => "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'capstan_archives'), 0), coalesce((SELECT max(id) FROM capstan_archives), 0)) + 1",
    };
    driver
        .query(sql)
        .await?
        .first()
        .and_then(|r| r[0].as_deref())
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| DbError::new(FailureKind::Sql, "cannot allocate an archive entry id"))
}

/// A migration section with its archive copies spliced in before the
/// statements they protect. `origin[i]` is the copy that augmented statement
/// `i` belongs to, `None` for the migration's own statements.
pub(crate) struct Spliced {
    pub section: Section,
    pub statements: Vec<Statement>,
    pub origin: Vec<Option<usize>>,
}

/// Splices `prepared` into `section`: the copy's SQL is appended to the text
/// (so ranges stay valid) and its statements are listed before the one they
/// protect, carrying that statement's line.
pub(crate) fn splice(
    section: &Section,
    statements: &[Statement],
    prepared: &[Prepared],
) -> Spliced {
    let mut sql = section.sql.clone();
    let mut out = Vec::new();
    let mut origin = Vec::new();
    for (i, stmt) in statements.iter().enumerate() {
        for (p_index, p) in prepared
            .iter()
            .enumerate()
            .filter(|(_, p)| p.statement == i)
        {
            for text in &p.sql {
                sql.push('\n');
                let start = sql.len();
                sql.push_str(text);
                out.push(Statement {
                    range: start..sql.len(),
                    line_offset: stmt.line_offset,
                    column: stmt.column,
                    keyword: text.split_whitespace().next().unwrap_or("").to_uppercase(),
                });
                origin.push(Some(p_index));
            }
        }
        out.push(stmt.clone());
        origin.push(None);
    }
    Spliced {
        section: Section {
            sql,
            first_line: section.first_line,
        },
        statements: out,
        origin,
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
    /// `up` or `down`.
    pub direction: String,
    /// The file line of the destroying statement.
    pub line: Option<u64>,
    /// The destroying statement.
    pub statement: String,
    /// What it did (`drop-column`, …).
    pub kind: String,
    /// `columns` (key and columns, restored by key) or `rows` (whole rows).
    pub scope: String,
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
    #[serde(skip)]
    stored_table: String,
}

impl ArchiveEntry {
    /// `users.name` (columns scope) or `users`.
    pub fn object(&self) -> String {
        let columns: Vec<&str> = match self.scope.as_str() {
            "columns" => self.columns.iter().map(|c| c.name.as_str()).collect(),
            _ => Vec::new(),
        };
        object_label(Some(&self.table_schema), &self.table_name, &columns)
    }

    /// A table without a primary key archived whole for a column change: it
    /// can only go back whole, replacing the table's rows.
    fn whole_for_columns(&self) -> bool {
        self.scope == "rows" && Kind::parse(&self.kind).is_some_and(Kind::destroys_columns)
    }

    /// The columns of the copy, in its order.
    fn copied_columns(&self) -> Vec<String> {
        let mut names = match self.scope.as_str() {
            "columns" => self.primary_key.clone(),
            _ => Vec::new(),
        };
        names.extend(self.columns.iter().map(|c| c.name.clone()));
        names
    }

    /// Whether a copy holds rows (an entry of no rows has none).
    fn has_copy(&self) -> bool {
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

async fn has_entries_table(driver: &mut dyn Driver) -> Result<bool, DbError> {
    let sql = match driver.dialect() {
        Dialect::Postgres => "SELECT to_regclass('capstan.archive') IS NOT NULL",
        Dialect::Sqlite => {
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'capstan_archives'"
        }
    };
    let rows = driver.query(sql).await?;
    Ok(matches!(
        rows.first().and_then(|r| r[0].as_deref()),
        Some("t") | Some("1")
    ))
}

/// Every archive entry, oldest first (empty when capstan never archived here).
pub async fn list(driver: &mut dyn Driver) -> Result<Vec<ArchiveEntry>, DbError> {
    list_where(driver, "").await
}

/// One entry.
pub async fn get(driver: &mut dyn Driver, id: i64) -> Result<Option<ArchiveEntry>, DbError> {
    Ok(list_where(driver, &format!("WHERE id = {id}"))
        .await?
        .into_iter()
        .next())
}

async fn list_where(driver: &mut dyn Driver, filter: &str) -> Result<Vec<ArchiveEntry>, DbError> {
    if !has_entries_table(driver).await? {
        return Ok(Vec::new());
    }
    let dialect = driver.dialect();
    let sql = match dialect {
        Dialect::Postgres => format!(
            "SELECT id, version, migration, direction, line, statement, kind, scope, table_schema, table_name, columns, primary_key, archive_table, row_count, size_bytes, \
               to_char(archived_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), archived_by, binary_version, \
               to_char(restored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), restored_by, extract(epoch FROM now() - archived_at) \
             FROM capstan.archive {filter} ORDER BY id"
        ),
        Dialect::Sqlite => format!(
            "SELECT id, version, migration, direction, line, statement, kind, scope, table_schema, table_name, columns, primary_key, archive_table, row_count, size_bytes, \
               archived_at, archived_by, binary_version, restored_at, restored_by, (julianday('now') - julianday(archived_at)) * 86400.0 \
             FROM capstan_archives {filter} ORDER BY id"
        ),
    };
    let rows = driver.query(&sql).await?;
    let text = |r: &[Option<String>], i: usize| r[i].clone().unwrap_or_default();
    let num = |r: &[Option<String>], i: usize| r[i].as_deref().and_then(|v| v.parse::<u64>().ok());
    Ok(rows
        .iter()
        .map(|r| {
            let stored = text(r, 12);
            ArchiveEntry {
                id: r[0]
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_default(),
                version: num(r, 1).unwrap_or_default(),
                migration: text(r, 2),
                direction: text(r, 3),
                line: num(r, 4),
                statement: text(r, 5),
                kind: text(r, 6),
                scope: text(r, 7),
                table_schema: text(r, 8),
                table_name: text(r, 9),
                columns: serde_json::from_str(&text(r, 10)).unwrap_or_default(),
                primary_key: serde_json::from_str(&text(r, 11)).unwrap_or_default(),
                archive_table: match dialect {
                    _ if stored.is_empty() => None,
                    Dialect::Postgres => Some(format!("capstan_archive.{stored}")),
                    Dialect::Sqlite => Some(stored.clone()),
                },
                row_count: num(r, 13).unwrap_or_default(),
                size_bytes: num(r, 14).unwrap_or_default(),
                archived_at: text(r, 15),
                archived_by: text(r, 16),
                binary_version: text(r, 17),
                restored_at: r[18].clone(),
                restored_by: r[19].clone(),
                age_secs: r[20].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0.0),
                stored_table: stored,
            }
        })
        .collect())
}

/// The first rows of an entry's copy (column names, then rows), for `show`,
/// with values stored as text cast back to their type. Refuses when the copy
/// was damaged outside capstan or a type it needs no longer exists.
pub async fn preview(
    driver: &mut dyn Driver,
    entry: &ArchiveEntry,
    limit: usize,
) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), ArchiveError> {
    let dialect = driver.dialect();
    let names = entry.copied_columns();
    if names.is_empty() || !entry.has_copy() {
        return Ok((names, Vec::new()));
    }
    check_copy(driver, entry).await?;
    let cast: Vec<&ColumnInfo> = entry
        .columns
        .iter()
        .filter(|c| c.stored_as.is_some())
        .collect();
    check_types(driver, entry, &cast).await?;
    let cols: Vec<String> = names
        .iter()
        .map(|c| match dialect {
            Dialect::Postgres => match cast.iter().find(|k| &k.name == c) {
                Some(k) => format!("({}::{})::text", ident(c), k.ty),
                None => format!("{}::text", ident(c)),
            },
            Dialect::Sqlite => ident(c),
        })
        .collect();
    let order = if entry.primary_key.is_empty() {
        String::new()
    } else {
        let key: Vec<String> = entry.primary_key.iter().map(|k| ident(k)).collect();
        format!(" ORDER BY {}", key.join(", "))
    };
    let rows = driver
        .query(&format!(
            "SELECT {} FROM {}{order} LIMIT {limit}",
            cols.join(", "),
            archive_ref(dialect, &entry.stored_table)
        ))
        .await?;
    Ok((names, rows))
}

/// The columns of an entry's copy as the catalog has them now (name, type),
/// refusing when the copy, or one of the columns it should hold, is gone:
/// something outside capstan dropped it (a `DROP TYPE … CASCADE` drops the
/// columns of that type, in copies made before such values were stored as
/// text).
async fn check_copy(
    driver: &mut dyn Driver,
    entry: &ArchiveEntry,
) -> Result<Vec<(String, String)>, ArchiveError> {
    let refuse = |reason: String| ArchiveError::Refused {
        id: entry.id,
        object: entry.object(),
        reason,
    };
    let rows = match driver.dialect() {
        Dialect::Postgres => {
            driver
                .query(&format!(
                    "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) \
                     FROM (SELECT pg_catalog.to_regclass({}) AS r) c \
                     LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.r AND a.attnum > 0 AND NOT a.attisdropped \
                     WHERE c.r IS NOT NULL ORDER BY a.attnum",
                    lit(&archive_ref(Dialect::Postgres, &entry.stored_table))
                ))
                .await?
        }
        Dialect::Sqlite => {
            driver
                .query(&format!(
                    "SELECT name, type FROM pragma_table_info({}) ORDER BY cid",
                    lit(&entry.stored_table)
                ))
                .await?
        }
    };
    if rows.is_empty() {
        return Err(refuse(format!(
            "its copy {} no longer exists: something outside capstan dropped it",
            entry.copy_name()
        )));
    }
    let have: Vec<(String, String)> = rows
        .into_iter()
        .filter_map(|r| Some((r[0].clone()?, r[1].clone().unwrap_or_default())))
        .collect();
    if let Some(lost) = entry
        .copied_columns()
        .into_iter()
        .find(|c| !have.iter().any(|(n, _)| n == c))
    {
        return Err(refuse(format!(
            "its copy {} no longer has column {lost}: something outside capstan dropped it (`DROP TYPE … CASCADE` drops the columns of that type, also in copies made before capstan stored such values as text)",
            entry.copy_name()
        )));
    }
    Ok(have)
}

/// Refuses when the type of one of `columns` no longer exists (Postgres:
/// the copy holds their values as text, and they cannot be cast back).
async fn check_types(
    driver: &mut dyn Driver,
    entry: &ArchiveEntry,
    columns: &[&ColumnInfo],
) -> Result<(), ArchiveError> {
    if driver.dialect() != Dialect::Postgres || columns.is_empty() {
        return Ok(());
    }
    let types: Vec<String> = columns.iter().map(|c| lit(&c.ty)).collect();
    let rows = driver
        .query(&format!(
            "SELECT t FROM unnest(ARRAY[{}]::text[]) AS t WHERE pg_catalog.to_regtype(t) IS NULL",
            types.join(", ")
        ))
        .await?;
    let Some(ty) = rows.first().and_then(|r| r[0].clone()) else {
        return Ok(());
    };
    let cols: Vec<&str> = columns
        .iter()
        .filter(|c| c.ty == ty)
        .map(|c| c.name.as_str())
        .collect();
    Err(ArchiveError::Refused {
        id: entry.id,
        object: entry.object(),
        reason: format!(
            "type {ty} (of {}) no longer exists, so the archived values cannot be cast back to it; create the type again (e.g. `capstan migrate down` of the migration that dropped it), then retry. The values are kept as text in {}",
            cols.join(", "),
            entry.copy_name()
        ),
    })
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

fn same_type(dialect: Dialect, a: &str, b: &str) -> bool {
    match dialect {
        Dialect::Postgres => a == b,
        Dialect::Sqlite => a.eq_ignore_ascii_case(b),
    }
}

/// The copy's value of column `name` (row alias `a`), cast back to its
/// type when the copy holds it as text.
fn copied(cast: &BTreeMap<String, String>, name: &str) -> String {
    match cast.get(name) {
        Some(ty) => format!("a.{}::{ty}", ident(name)),
        None => format!("a.{}", ident(name)),
    }
}

fn key_match(key: &[String], left: &str, cast: &BTreeMap<String, String>) -> String {
    key.iter()
        .map(|k| format!("{left}.{} = {}", ident(k), copied(cast, k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The restore of `entry` into the table as it is now (`current`), as SQL for
/// one transaction, or why it would not be faithful. Pure.
fn restore_plan(
    dialect: Dialect,
    entry: &ArchiveEntry,
    current: Option<&TableInfo>,
    cast: &BTreeMap<String, String>,
) -> Result<(Vec<String>, RestoreReport), String> {
    // An entry of no rows has no copy: the table or columns come back, empty.
    let data = entry.has_copy();
    let target = table_ref(dialect, &entry.table_schema, &entry.table_name);
    let archive = archive_ref(dialect, &entry.stored_table);
    let mut report = RestoreReport {
        id: entry.id,
        object: entry.object(),
        table_created: false,
        columns_added: Vec::new(),
        rows_restored: 0,
        rows_not_restored: 0,
    };
    let mut sql = Vec::new();
    let add_column = |c: &ColumnInfo| {
        format!(
            "ALTER TABLE {target} ADD COLUMN {} {}",
            ident(&c.name),
            c.ty
        )
    };
    let check_key = |t: &TableInfo| -> Result<(), String> {
        if t.primary_key != entry.primary_key {
            return Err(format!(
                "the primary key of {} is ({}) now but was ({}) when archived, so archived rows cannot be matched to today's",
                entry.table_name,
                t.primary_key.join(", "),
                entry.primary_key.join(", ")
            ));
        }
        Ok(())
    };
    let check_type = |t: &TableInfo, c: &ColumnInfo| -> Result<bool, String> {
        match t.column(&c.name) {
            None => Ok(false),
            Some(now) if same_type(dialect, &now.ty, &c.ty) => Ok(true),
            Some(now) => Err(format!(
                "{}.{} is {} now but held {} values when archived; change its type back first (e.g. `capstan migrate down` of the migration that changed it), then restore",
                entry.table_name, c.name, now.ty, c.ty
            )),
        }
    };
    // Rows go back with their archived identity values (`OVERRIDING SYSTEM
    // VALUE`, or a `GENERATED ALWAYS AS IDENTITY` key refuses them), and
    // without the columns the table computes now.
    let overriding = match dialect {
        Dialect::Postgres => " OVERRIDING SYSTEM VALUE",
        Dialect::Sqlite => "",
    };
    let writable = |t: Option<&TableInfo>| -> Vec<&ColumnInfo> {
        entry
            .columns
            .iter()
            .filter(|c| t.is_none_or(|t| !t.generated.iter().any(|g| g == &c.name)))
            .collect()
    };
    let insert = |t: Option<&TableInfo>, from: &str, filter: &str| -> String {
        let cols: Vec<&ColumnInfo> = writable(t);
        let into: Vec<String> = cols.iter().map(|c| ident(&c.name)).collect();
        let select: Vec<String> = cols.iter().map(|c| copied(cast, &c.name)).collect();
        format!(
            "INSERT INTO {target} ({}){overriding} SELECT {} FROM {from} AS a{filter}",
            into.join(", "),
            select.join(", ")
        )
    };
    match (entry.scope.as_str(), current) {
        ("columns", None) => {
            return Err(format!(
                "table {} does not exist; re-create it first (e.g. `capstan migrate down`), then restore",
                entry.table_name
            ))
        }
        ("columns", Some(t)) => {
            check_key(t)?;
            for c in &entry.columns {
                if !check_type(t, c)? {
                    sql.push(add_column(c));
                    report.columns_added.push(c.name.clone());
                }
            }
            let set: Vec<String> = entry
                .columns
                .iter()
                .map(|c| format!("{} = {}", ident(&c.name), copied(cast, &c.name)))
                .collect();
            if data {
                sql.push(format!(
                    "UPDATE {target} AS t SET {} FROM {archive} AS a WHERE {}",
                    set.join(", "),
                    key_match(&entry.primary_key, "t", cast)
                ));
            }
        }
        (_, None) => {
            let mut defs: Vec<String> = entry
                .columns
                .iter()
                .map(|c| {
                    format!(
                        "{} {}{}",
                        ident(&c.name),
                        c.ty,
                        if c.not_null { " NOT NULL" } else { "" }
                    )
                })
                .collect();
            if !entry.primary_key.is_empty() {
                let key: Vec<String> = entry.primary_key.iter().map(|k| ident(k)).collect();
                defs.push(format!("PRIMARY KEY ({})", key.join(", ")));
            }
            sql.push(format!("CREATE TABLE {target} ({})", defs.join(", ")));
            report.table_created = true;
            if data {
                sql.push(insert(None, &archive, ""));
            }
        }
        (_, Some(t)) => {
            check_key(t)?;
            let mut missing = Vec::new();
            for c in &entry.columns {
                if !check_type(t, c)? {
                    missing.push(c);
                }
            }
            if entry.whole_for_columns() {
                // A table without a primary key, archived whole for a column
                // change: put every row back as it was, if no row came or went.
                // A column added since holds values the copy does not have.
                if let Some(extra) = t.columns.iter().find(|now| {
                    !t.generated.contains(&now.name)
                        && !entry.columns.iter().any(|c| c.name == now.name)
                }) {
                    return Err(format!(
                        "{} had no primary key, so it can only be restored whole, and {}.{} came since: its values would be lost. The copy is in {}",
                        entry.table_name, entry.table_name, extra.name, entry.copy_name()
                    ));
                }
                for c in &missing {
                    sql.push(add_column(c));
                    report.columns_added.push(c.name.clone());
                }
                sql.push(format!("DELETE FROM {target}"));
                if data {
                    sql.push(insert(Some(t), &archive, ""));
                }
            } else {
                if let Some(c) = missing.first() {
                    return Err(format!(
                        "{}.{} no longer exists; add it back first, then restore",
                        entry.table_name, c.name
                    ));
                }
                if entry.primary_key.is_empty() {
                    if let Some(at) = &entry.restored_at {
                        return Err(format!(
                            "it was restored already ({at}), and {} has no primary key to tell its rows from the archived ones, so restoring again would insert every row a second time",
                            entry.table_name
                        ));
                    }
                }
                let filter = if entry.primary_key.is_empty() {
                    String::new()
                } else {
                    format!(
                        " WHERE NOT EXISTS (SELECT 1 FROM {target} AS x WHERE {})",
                        key_match(&entry.primary_key, "x", cast)
                    )
                };
                if data {
                    sql.push(insert(Some(t), &archive, &filter));
                }
            }
        }
    }
    Ok((sql, report))
}

/// Puts entry `id` back, in one transaction, and marks it restored. Refuses,
/// changing nothing, when today's schema makes a faithful restore impossible.
pub async fn restore(
    driver: &mut dyn Driver,
    id: i64,
    identity: &Identity,
) -> Result<RestoreReport, ArchiveError> {
    let dialect = driver.dialect();
    let entry = get(driver, id).await?.ok_or(ArchiveError::NotFound(id))?;
    let refuse = |reason: String| ArchiveError::Refused {
        id,
        object: entry.object(),
        reason,
    };
    let current = table_info(driver, Some(&entry.table_schema), &entry.table_name).await?;
    let whole_for_columns = current.is_some() && entry.whole_for_columns();
    // Values the copy holds as text go back cast to their type, which must
    // exist (so must the type of a column or table re-created).
    let have = if entry.has_copy() {
        check_copy(driver, &entry).await?
    } else {
        Vec::new()
    };
    let all: Vec<&ColumnInfo> = entry.columns.iter().collect();
    check_types(driver, &entry, &all).await?;
    let mut cast: BTreeMap<String, String> = entry
        .columns
        .iter()
        .filter(|c| c.stored_as.is_some())
        .map(|c| (c.name.clone(), c.ty.clone()))
        .collect();
    if let (Dialect::Postgres, Some(t), "columns") = (dialect, &current, entry.scope.as_str()) {
        for k in &entry.primary_key {
            let stored = have.iter().find(|(n, _)| n == k).map(|(_, ty)| ty.as_str());
            if let (Some("text"), Some(now)) = (stored, t.column(k)) {
                if now.ty != "text" {
                    cast.insert(k.clone(), now.ty.clone());
                }
            }
        }
    }
    let (plan, mut report) =
        restore_plan(dialect, &entry, current.as_ref(), &cast).map_err(refuse)?;
    // A whole restore replaces the table's rows: inside the transaction, hold
    // off writers and check that no row came or went since the archive (a
    // CHECK on a temporary table turns a mismatch into an error).
    let mut sql = Vec::new();
    if whole_for_columns {
        let target = table_ref(dialect, &entry.table_schema, &entry.table_name);
        let guard = format!(
            "(rows bigint CONSTRAINT {RESTORE_GUARD} CHECK (rows = {}))",
            entry.row_count
        );
        match dialect {
            Dialect::Postgres => {
                sql.push(format!("LOCK TABLE {target} IN EXCLUSIVE MODE"));
                sql.push(format!(
                    "CREATE TEMP TABLE capstan_restore_guard {guard} ON COMMIT DROP"
                ));
            }
            Dialect::Sqlite => {
                sql.push("DROP TABLE IF EXISTS temp.capstan_restore_guard".to_string());
                sql.push(format!("CREATE TEMP TABLE capstan_restore_guard {guard}"));
            }
        }
        sql.push(format!(
            "INSERT INTO capstan_restore_guard SELECT count(*) FROM {target}"
        ));
    }
    sql.extend(plan);
    // The statement that writes the rows back, last of the plan (an entry
    // of no rows has none).
    let write = sql.len().checked_sub(1);
    sql.push(format!(
        "UPDATE {} SET restored_at = {}, restored_by = {} WHERE id = {id}",
        entries_table(dialect),
        now_sql(dialect),
        opt_lit(Some(&identity.applied_by)),
    ));
    if whole_for_columns && dialect == Dialect::Sqlite {
        sql.push("DROP TABLE temp.capstan_restore_guard".to_string());
    }
    let counts = match driver.transact(&sql).await {
        Ok(c) => c,
        Err(e) if e.message.contains(RESTORE_GUARD) => {
            let target = table_ref(dialect, &entry.table_schema, &entry.table_name);
            let rows = driver
                .query(&format!("SELECT count(*) FROM {target}"))
                .await?;
            let now = rows.first().and_then(|r| r[0].as_deref()).unwrap_or("?");
            return Err(refuse(format!(
                "{} had no primary key, so it was archived whole ({} rows) and can only be restored whole; it has {now} rows now, so rows came or went since and would be lost. The copy is in {}",
                entry.table_name, entry.row_count, entry.copy_name()
            )));
        }
        // The database refused the restore (a constraint, a cast): nothing
        // was changed, as for any other refusal.
        Err(e) if e.kind == FailureKind::Sql => {
            return Err(refuse(format!("the database refused it: {}", e.message)))
        }
        Err(e) => return Err(e.into()),
    };
    report.rows_restored = match entry.has_copy() {
        true => write.and_then(|w| counts.get(w)).copied().unwrap_or(0),
        false => 0,
    };
    report.rows_not_restored = entry.row_count.saturating_sub(report.rows_restored);
    Ok(report)
}

/// Drops the entries archived at least `older_than` ago, in one transaction;
/// returns them.
pub async fn purge(
    driver: &mut dyn Driver,
    older_than: std::time::Duration,
) -> Result<Vec<ArchiveEntry>, ArchiveError> {
    let dialect = driver.dialect();
    let old: Vec<ArchiveEntry> = list(driver)
        .await?
        .into_iter()
        .filter(|e| e.age_secs >= older_than.as_secs_f64())
        .collect();
    if old.is_empty() {
        return Ok(old);
    }
    let mut sql = Vec::new();
    for e in old.iter().filter(|e| e.has_copy()) {
        sql.push(format!(
            "DROP TABLE IF EXISTS {}",
            archive_ref(dialect, &e.stored_table)
        ));
    }
    for e in &old {
        sql.push(format!(
            "DELETE FROM {} WHERE id = {}",
            entries_table(dialect),
            e.id
        ));
    }
    driver.transact(&sql).await?;
    Ok(old)
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

/// Sizes what `d` would archive from its table `info` as it is now.
pub(crate) async fn estimate(
    driver: &mut dyn Driver,
    d: &Destruction,
    info: Option<&TableInfo>,
    line: usize,
    max_bytes: Option<u64>,
    skip: &[String],
) -> Result<PlannedArchive, DbError> {
    let dialect = driver.dialect();
    let mut planned = PlannedArchive {
        line,
        kind: d.kind,
        object: d.object(),
        scope: None,
        rows: None,
        bytes: None,
        skipped: skip.iter().any(|n| d.named_by(n)),
        over_limit: false,
    };
    let Some((info, copy)) = info.and_then(|i| Some((i, copy_of(d, i)?))) else {
        return Ok(planned);
    };
    let source = table_ref(dialect, &info.schema, &info.name);
    let size = match dialect {
        Dialect::Postgres if copy.scope == "rows" => {
            format!("pg_total_relation_size({})", lit(&source))
        }
        Dialect::Postgres => {
            let parts: Vec<String> = copy
                .select
                .iter()
                .map(|c| format!("coalesce(pg_column_size({}), 0)", ident(c)))
                .collect();
            format!("coalesce(sum({} + 24), 0)", parts.join(" + "))
        }
        // What `up` will measure.
        Dialect::Sqlite if copy.scope == "rows" => sqlite_table_size(&info.name),
        Dialect::Sqlite => sqlite_payload(&copy.select),
    };
    let rows = driver
        .query(&format!("SELECT count(*), {size} FROM {source}"))
        .await?;
    let num = |i: usize| {
        rows.first()
            .and_then(|r| r[i].as_deref())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|f| f as u64)
    };
    planned.scope = Some(copy.scope.to_string());
    planned.rows = num(0);
    planned.bytes = num(1);
    planned.over_limit =
        !planned.skipped && matches!((planned.bytes, max_bytes), (Some(b), Some(m)) if b > m);
    Ok(planned)
}

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// Parses `1GiB`, `500 MB`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a size ({e}); write it like 1GiB, 500MB or 1048576"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(scope: &str, kind: &str, columns: Vec<ColumnInfo>, key: &[&str]) -> ArchiveEntry {
        ArchiveEntry {
            id: 1,
            version: 3,
            migration: "drop_name".into(),
            direction: "up".into(),
            line: Some(7),
            statement: "ALTER TABLE users DROP COLUMN name".into(),
            kind: kind.into(),
            scope: scope.into(),
            table_schema: "public".into(),
            table_name: "users".into(),
            columns,
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            archive_table: Some("capstan_archive.a1_users_name".into()),
            row_count: 3,
            size_bytes: 100,
            archived_at: String::new(),
            archived_by: String::new(),
            binary_version: String::new(),
            restored_at: None,
            restored_by: None,
            age_secs: 0.0,
            stored_table: "a1_users_name".into(),
        }
    }

    fn col(name: &str, ty: &str) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            ty: ty.into(),
            not_null: false,
            stored_as: None,
        }
    }

    fn table(columns: Vec<ColumnInfo>, key: &[&str]) -> TableInfo {
        TableInfo {
            schema: "public".into(),
            name: "users".into(),
            columns,
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            generated: Vec::new(),
        }
    }

    #[test]
    fn a_dropped_column_is_re_added_and_refilled_by_key() {
        let e = entry("columns", "drop-column", vec![col("name", "text")], &["id"]);
        let now = table(vec![col("id", "bigint")], &["id"]);
        let (sql, report) =
            restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap();
        assert_eq!(report.columns_added, vec!["name"]);
        assert_eq!(
            sql,
            vec![
                r#"ALTER TABLE "public"."users" ADD COLUMN "name" text"#,
                r#"UPDATE "public"."users" AS t SET "name" = a."name" FROM capstan_archive."a1_users_name" AS a WHERE t."id" = a."id""#,
            ]
        );
    }

    #[test]
    fn a_changed_primary_key_refuses() {
        let e = entry("columns", "drop-column", vec![col("name", "text")], &["id"]);
        let now = table(vec![col("id", "bigint"), col("uuid", "uuid")], &["uuid"]);
        let err = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap_err();
        assert!(
            err.contains("primary key of users is (uuid) now but was (id)"),
            "{err}"
        );
    }

    #[test]
    fn a_retyped_column_refuses_until_its_type_is_back() {
        let e = entry(
            "columns",
            "alter-type",
            vec![col("age", "numeric(10,2)")],
            &["id"],
        );
        let now = table(vec![col("id", "bigint"), col("age", "integer")], &["id"]);
        let err = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap_err();
        assert!(err.contains("users.age is integer now"), "{err}");
    }

    #[test]
    fn a_dropped_table_is_re_created_with_its_key() {
        let e = entry(
            "rows",
            "drop-table",
            vec![col("id", "INTEGER"), col("name", "TEXT")],
            &["id"],
        );
        let (sql, report) = restore_plan(Dialect::Sqlite, &e, None, &BTreeMap::new()).unwrap();
        assert!(report.table_created);
        assert_eq!(
            sql[0],
            r#"CREATE TABLE "users" ("id" INTEGER, "name" TEXT, PRIMARY KEY ("id"))"#
        );
    }

    #[test]
    fn truncated_rows_go_back_where_their_key_is_free() {
        let e = entry(
            "rows",
            "truncate",
            vec![col("id", "bigint"), col("name", "text")],
            &["id"],
        );
        let now = table(vec![col("id", "bigint"), col("name", "text")], &["id"]);
        let (sql, _) = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap();
        assert!(
            sql[0].ends_with(
                r#"WHERE NOT EXISTS (SELECT 1 FROM "public"."users" AS x WHERE x."id" = a."id")"#
            ),
            "{}",
            sql[0]
        );
    }

    #[test]
    fn identity_keys_are_overridden_and_generated_columns_left_to_the_table() {
        let e = entry(
            "rows",
            "truncate",
            vec![col("id", "bigint"), col("name", "text"), col("up", "text")],
            &["id"],
        );
        let mut now = table(
            vec![col("id", "bigint"), col("name", "text"), col("up", "text")],
            &["id"],
        );
        now.generated = vec!["up".into()];
        let (sql, _) = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap();
        assert!(
            sql[0].starts_with(
                r#"INSERT INTO "public"."users" ("id", "name") OVERRIDING SYSTEM VALUE SELECT a."id", a."name" FROM"#
            ),
            "{}",
            sql[0]
        );
    }

    #[test]
    fn rows_without_a_key_are_not_restored_twice() {
        let mut e = entry("rows", "delete", vec![col("line", "text")], &[]);
        let now = table(vec![col("line", "text")], &[]);
        assert!(restore_plan(Dialect::Sqlite, &e, Some(&now), &BTreeMap::new()).is_ok());
        e.restored_at = Some("2024-01-01T00:00:00Z".into());
        let err = restore_plan(Dialect::Sqlite, &e, Some(&now), &BTreeMap::new()).unwrap_err();
        assert!(err.contains("restored already"), "{err}");
    }

    #[test]
    fn a_whole_restore_refuses_when_a_column_came_since() {
        let e = entry(
            "rows",
            "drop-column",
            vec![col("line", "text"), col("level", "int")],
            &[],
        );
        let now = table(vec![col("line", "text"), col("source", "text")], &[]);
        let err = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap_err();
        assert!(err.contains("users.source came since"), "{err}");
    }

    #[test]
    fn columns_match_without_case_when_only_case_differs() {
        let t = table(vec![col("id", "INTEGER"), col("Name", "TEXT")], &["id"]);
        assert_eq!(t.column("name").map(|c| c.name.as_str()), Some("Name"));
        let both = table(vec![col("name", "TEXT"), col("Name", "TEXT")], &[]);
        assert_eq!(both.column("NAME"), None);
        assert_eq!(both.column("Name").map(|c| c.name.as_str()), Some("Name"));
    }

    fn destruction(kind: Kind, columns: &[&str]) -> Destruction {
        Destruction {
            statement: 0,
            kind,
            schema: None,
            table: "users".into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            cascade: false,
        }
    }

    #[test]
    fn the_model_follows_earlier_drops_of_the_same_section() {
        let info = table(
            vec![
                col("id", "bigint"),
                col("name", "text"),
                col("d", "timestamp"),
            ],
            &["id"],
        );
        let m = model(vec![
            (destruction(Kind::DropColumn, &["id"]), Some(info.clone())),
            (destruction(Kind::AlterType, &["d"]), Some(info.clone())),
            (destruction(Kind::DropTable, &[]), Some(info.clone())),
            (destruction(Kind::Truncate, &[]), Some(info.clone())),
        ]);
        assert_eq!(m[0].1.as_ref(), Some(&info));
        let keyless = m[1].1.as_ref().expect("the table is still there");
        assert!(
            keyless.primary_key.is_empty(),
            "the key went with its column"
        );
        let names: Vec<&str> = keyless.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["name", "d"]);
        let copy = copy_of(&m[1].0, keyless).unwrap();
        assert_eq!(copy.scope, "rows");
        assert_eq!(copy.select, ["name", "d"]);
        assert!(m[2].1.is_some());
        assert_eq!(m[3].1, None, "nothing is left after the drop");
    }

    #[test]
    fn a_placeholder_inside_a_value_is_not_expanded() {
        let section = Section {
            sql: String::new(),
            first_line: 1,
        };
        let identity = Identity {
            applied_by: "a@b".into(),
            binary_version: "x 1".into(),
        };
        let cx = PrepareContext {
            version: 2,
            name: "n",
            direction: Direction::Up,
            section: &section,
            statements: &[],
            identity: &identity,
            max_bytes: None,
            skip: &[],
            transactional: true,
        };
        let e = EntryValues {
            id: 7,
            cx: &cx,
            line: 3,
            text: "UPDATE t SET a = '@ID@ @X@'",
            kind: Kind::Update,
        };
        assert_eq!(
            e.fill("@TEXT@ @ID@ @X@ @BY@ a@b", vec![("@X@", "x@ID@".into())]),
            "'UPDATE t SET a = ''@ID@ @X@''' 7 x@ID@ 'a@b' a@b"
        );
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("500 MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn no_archive_names_the_table_or_a_column() {
        let d = Destruction {
            statement: 0,
            kind: Kind::DropColumn,
            schema: None,
            table: "users".into(),
            columns: vec!["name".into()],
            cascade: false,
        };
        assert!(d.named_by("users.name"));
        assert!(d.named_by("users"));
        assert!(d.named_by("public.users.name"));
        assert!(!d.named_by("users.email"));
        assert!(!d.named_by("chirps"));
    }
}
