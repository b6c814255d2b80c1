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
pub(crate) async fn prepare(
    driver: &mut dyn Driver,
    cx: &PrepareContext<'_>,
    found: &[Destruction],
) -> Result<(Vec<Prepared>, Vec<String>), DbError> {
    let dialect = driver.dialect();
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut last_id = None;
    for (d, info) in &resolve(driver, found).await? {
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
        let Some((info, copy)) = info.as_ref().and_then(|i| Some((i, copy_of(d, i)?))) else {
            continue;
        };
        let columns = serde_json::to_string(&copy.columns).expect("columns serialize");
        // A no-transaction migration that stopped between this copy and the
        // statement it protects (a crash, then `repair`) made an entry that
        // no completed run followed: the run again is the same run, so it
        // keeps one entry, not two.
        let mut supersede = Vec::new();
        if !cx.transactional {
            if let Some((old_id, old_table)) =
                unfinished_copy(driver, dialect, cx, d, info, line, &columns).await?
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
                supersede.push(format!(
                    "DROP TABLE IF EXISTS {}",
                    archive_ref(dialect, &old_table)
                ));
                supersede.push(format!(
                    "DELETE FROM {} WHERE id = {old_id}",
                    entries_table(dialect)
                ));
            }
        }
        let id = next_id(driver, dialect, last_id).await?;
        last_id = Some(id);
        let (stored, archive) = archive_table(dialect, id, d);
        let source = table_ref(dialect, &info.schema, &info.name);
        let select: Vec<String> = copy.select.iter().map(|c| ident(c)).collect();
        let mut sql = supersede;
        // No write may slip in between the copy and the statement that
        // destroys what was copied (reads go on). SQLite's migration
        // transaction already holds the database's write lock.
        if dialect == Dialect::Postgres && cx.transactional {
            sql.push(format!("LOCK TABLE {source} IN SHARE MODE"));
        }
        let copy_sql = format!(
            "CREATE TABLE {archive} AS SELECT {} FROM {source}",
            select.join(", ")
        );
        let text = cx.section.sql[stmt.range.clone()].trim();
        let text: String = text.chars().take(2000).collect();
        let key = serde_json::to_string(&info.primary_key).expect("key serializes");
        let entry = |rows: &str, sized: &str| {
            format!(
                "INSERT INTO {entries} (id, version, migration, direction, line, statement, kind, scope, table_schema, table_name, columns, primary_key, archive_table, row_count, size_bytes, max_bytes, archived_at, archived_by, binary_version) \
                 SELECT {id}, {version}, {name}, {direction}, {line}, {text}, {kind}, {scope}, {schema}, {table}, {columns}, {key}, {stored}, {rows}, {size}, {max}, {now}, {by}, {binary}",
                entries = entries_table(dialect),
                version = cx.version,
                name = lit(cx.name),
                direction = lit(match cx.direction {
                    Direction::Up => "up",
                    Direction::Down => "down",
                }),
                text = lit(&text),
                kind = lit(d.kind.as_str()),
                scope = lit(copy.scope),
                schema = lit(&info.schema),
                table = lit(&info.name),
                columns = lit(&columns),
                key = lit(&key),
                stored = lit(&stored),
                size = size_sql(dialect, sized, &copy.select),
                max = cx.max_bytes.map_or_else(|| "NULL".into(), |m| m.to_string()),
                now = now_sql(dialect),
                by = lit(&cx.identity.applied_by),
                binary = lit(&cx.identity.binary_version),
            )
        };
        // On Postgres the copy reports its own row count (GET DIAGNOSTICS),
        // so the entry needs no second scan of the copy. `use_column`: a
        // column called `copied` is the table's, not the row-count variable
        // (PL/pgSQL would otherwise call the copy's reference ambiguous).
        // The copy is readable by its owner alone, whatever default
        // privileges the archive schema's tables would get, and in the same
        // transaction as the copy (see `private_sql`).
        const TAG: &str = "$capstan_archive$";
        let body = format!(
            "#variable_conflict use_column DECLARE copied bigint; capstan_grantee oid; BEGIN {copy_sql}; GET DIAGNOSTICS copied = ROW_COUNT; {}; {}; END",
            private_sql(&archive),
            entry("copied", &archive)
        );
        match dialect {
            Dialect::Postgres if !body.contains(TAG) => {
                sql.push(format!("DO {TAG} {body} {TAG}"));
            }
            Dialect::Postgres => {
                sql.push(copy_sql);
                sql.push(format!(
                    "DO $$ DECLARE capstan_grantee oid; BEGIN {}; END $$",
                    private_sql(&archive)
                ));
                sql.push(entry(
                    &format!("(SELECT count(*) FROM {archive})"),
                    &archive,
                ));
            }
            Dialect::Sqlite => {
                // The entry first, counted and sized on the source (the same
                // rows: nothing else writes while the migration holds the
                // write lock), so a copy over the limit is refused before it
                // exists, also in a no-transaction migration where the two
                // statements do not roll back together.
                sql.push(entry(&format!("(SELECT count(*) FROM {source})"), &source));
                sql.push(copy_sql);
            }
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
    columns: &str,
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
            "SELECT id, archive_table FROM {entries} WHERE version = {version} AND direction = {dir} AND line = {line} \
             AND kind = {kind} AND table_schema = {schema} AND table_name = {table} AND columns = {columns} \
             AND restored_at IS NULL \
             AND archived_at > coalesce((SELECT {last} FROM {log} WHERE version = {version} AND action = {dir}), {floor}) \
             ORDER BY id DESC LIMIT 1",
            entries = entries_table(dialect),
            version = cx.version,
            dir = lit(direction),
            kind = lit(d.kind.as_str()),
            schema = lit(&info.schema),
            table = lit(&info.name),
            columns = lit(columns),
        ))
        .await?;
    Ok(rows.first().and_then(|r| {
        let id = r.first()?.as_deref()?.parse().ok()?;
        let table = r.get(1)?.clone()?;
        Some((id, table))
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
    /// Where the copy is (`capstan_archive.a1_users_name`).
    pub archive_table: String,
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

    /// `0003_drop_users_name`.
    pub fn label(&self) -> String {
        format!("{:04}_{}", self.version, self.migration)
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
                    Dialect::Postgres => format!("capstan_archive.{stored}"),
                    Dialect::Sqlite => stored.clone(),
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

/// The first rows of an entry's copy (column names, then rows), for `show`.
pub async fn preview(
    driver: &mut dyn Driver,
    entry: &ArchiveEntry,
    limit: usize,
) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), DbError> {
    let dialect = driver.dialect();
    let names = entry.copied_columns();
    let cols: Vec<String> = names
        .iter()
        .map(|c| match dialect {
            Dialect::Postgres => format!("{}::text", ident(c)),
            Dialect::Sqlite => ident(c),
        })
        .collect();
    if cols.is_empty() {
        return Ok((names, Vec::new()));
    }
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

fn key_match(key: &[String], left: &str, right: &str) -> String {
    key.iter()
        .map(|k| format!("{left}.{} = {right}.{}", ident(k), ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The restore of `entry` into the table as it is now (`current`), as SQL for
/// one transaction, or why it would not be faithful. Pure.
fn restore_plan(
    dialect: Dialect,
    entry: &ArchiveEntry,
    current: Option<&TableInfo>,
) -> Result<(Vec<String>, RestoreReport), String> {
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
        let select: Vec<String> = cols
            .iter()
            .map(|c| format!("a.{}", ident(&c.name)))
            .collect();
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
                .map(|c| format!("{} = a.{}", ident(&c.name), ident(&c.name)))
                .collect();
            sql.push(format!(
                "UPDATE {target} AS t SET {} FROM {archive} AS a WHERE {}",
                set.join(", "),
                key_match(&entry.primary_key, "t", "a")
            ));
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
            sql.push(insert(None, &archive, ""));
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
                        entry.table_name, entry.table_name, extra.name, entry.archive_table
                    ));
                }
                for c in &missing {
                    sql.push(add_column(c));
                    report.columns_added.push(c.name.clone());
                }
                sql.push(format!("DELETE FROM {target}"));
                sql.push(insert(Some(t), &archive, ""));
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
                        key_match(&entry.primary_key, "x", "a")
                    )
                };
                sql.push(insert(Some(t), &archive, &filter));
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
    let (plan, mut report) = restore_plan(dialect, &entry, current.as_ref()).map_err(refuse)?;
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
    let write = sql.len() - 1;
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
                entry.table_name, entry.row_count, entry.archive_table
            )));
        }
        Err(e) => return Err(e.into()),
    };
    report.rows_restored = counts.get(write).copied().unwrap_or(0);
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
    for e in &old {
        sql.push(format!(
            "DROP TABLE IF EXISTS {}",
            archive_ref(dialect, &e.stored_table)
        ));
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
        // What `up` will measure, summed in the same scan as the count.
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
            archive_table: "capstan_archive.a1_users_name".into(),
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
        let (sql, report) = restore_plan(Dialect::Postgres, &e, Some(&now)).unwrap();
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
        let err = restore_plan(Dialect::Postgres, &e, Some(&now)).unwrap_err();
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
        let err = restore_plan(Dialect::Postgres, &e, Some(&now)).unwrap_err();
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
        let (sql, report) = restore_plan(Dialect::Sqlite, &e, None).unwrap();
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
        let (sql, _) = restore_plan(Dialect::Postgres, &e, Some(&now)).unwrap();
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
        let (sql, _) = restore_plan(Dialect::Postgres, &e, Some(&now)).unwrap();
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
        assert!(restore_plan(Dialect::Sqlite, &e, Some(&now)).is_ok());
        e.restored_at = Some("2024-01-01T00:00:00Z".into());
        let err = restore_plan(Dialect::Sqlite, &e, Some(&now)).unwrap_err();
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
        let err = restore_plan(Dialect::Postgres, &e, Some(&now)).unwrap_err();
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
