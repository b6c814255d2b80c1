//! capstan's archive on SQLite: copies in `capstan_archive_*` tables,
//! entries in `capstan_archives`. A copy follows the catalog before the
//! migration, as the planner modelled it; its entry is counted and sized on
//! the source first, so a copy over the limit is refused before it exists.

use async_trait::async_trait;

use super::SqliteDriver;
use crate::driver::archive::{
    columns_of, counted, entry_from_row, preview_sql, purge_sql, unfinished,
};
use crate::driver::sql::{
    archive_base, fill, ident, lit, opt_lit, restore_statements, table_ref, ENTRY_COLUMNS,
};
use crate::driver::{
    ArchiveEntry, ArchiveStore, ColumnInfo, CopyRequest, CopySpec, DbError, Direction, FailureKind,
    RestoreRequest, Scope, TableInfo, UnfinishedCopy, UnfinishedQuery, RESTORE_GUARD,
};
use crate::split::Dialect;

/// Where the archive entries live.
const ENTRIES: &str = "capstan_archives";

/// The time of an entry (whole seconds, UTC).
const ARCHIVE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

/// The bytes of `columns` summed over a table's rows (an aggregate).
fn payload(columns: &[String]) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| format!("coalesce(length(CAST({} AS BLOB)), 0)", ident(c)))
        .collect();
    if parts.is_empty() {
        parts.push("0".into());
    }
    format!("coalesce(sum({}), 0)", parts.join(" + "))
}

/// The bytes a whole table's rows take (their records' payload, as
/// `dbstat` counts it), whatever its columns are called when it runs.
fn table_size(table: &str) -> String {
    format!(
        "(SELECT coalesce(sum(payload), 0) FROM dbstat WHERE name = {})",
        lit(table)
    )
}

/// The entry for a copy of `copy` from `info`, counted and sized on the
/// source.
fn entry_sql(
    req: &CopyRequest<'_>,
    info: &TableInfo,
    copy: &CopySpec,
    stored: &str,
    source: &str,
    service: &str,
) -> String {
    let (columns, key, size) = match copy.scope {
        // Every column, as the table is when the statement runs (an earlier
        // statement of the migration may have renamed one): read then.
        Scope::Rows => {
            let table = lit(&info.name);
            (
                format!(
                    "(SELECT json_group_array(json_object('name', name, 'type', type, 'not_null', json(CASE WHEN \"notnull\" THEN 'true' ELSE 'false' END))) \
                     FROM (SELECT * FROM pragma_table_info({table}) ORDER BY cid))"
                ),
                format!(
                    "(SELECT json_group_array(name) FROM (SELECT name FROM pragma_table_info({table}) WHERE pk > 0 ORDER BY pk))"
                ),
                table_size(&info.name),
            )
        }
        Scope::Columns => (
            lit(&serde_json::to_string(&copy.columns).expect("columns serialize")),
            lit(&serde_json::to_string(&info.primary_key).expect("key serializes")),
            format!("(SELECT {} FROM {source})", payload(&copy.select)),
        ),
    };
    let template = format!(
        "INSERT INTO {ENTRIES} ({ENTRY_COLUMNS}, service) \
         SELECT @ID@, @VERSION@, @NAME@, @DIR@, @LINE@, @TEXT@, @KIND@, @SCOPE@, @SCHEMA@, @TABLE@, @COLUMNS@, @KEY@, @STORED@, \
           (SELECT count(*) FROM @SOURCE@), @SIZE@, @MAX@, {ARCHIVE_NOW}, @BY@, @BINARY@, @SERVICE@",
    );
    fill(
        &req.entry,
        &template,
        vec![
            ("@SCOPE@", lit(copy.scope.as_str())),
            ("@SCHEMA@", lit(&info.schema)),
            ("@TABLE@", lit(&info.name)),
            ("@COLUMNS@", columns),
            ("@KEY@", key),
            ("@STORED@", lit(stored)),
            ("@SOURCE@", source.to_string()),
            ("@SIZE@", size),
            ("@SERVICE@", lit(service)),
        ],
    )
}

#[async_trait]
impl ArchiveStore for SqliteDriver {
    fn copies_at_run_time(&self) -> bool {
        false
    }

    fn archive_copy_sql(&self, req: &CopyRequest<'_>) -> Vec<String> {
        let (Some(info), Some(copy)) = (req.info, req.copy) else {
            return Vec::new();
        };
        let stored = format!(
            "capstan_archive_{}",
            archive_base(req.entry.id, req.table, req.destroyed)
        );
        let archive = ident(&stored);
        // The entry first, counted and sized on the source (the same rows:
        // nothing else writes while the migration holds the write lock), so
        // a copy over the limit is refused before it exists, also in a
        // no-transaction migration where the two statements do not roll
        // back together. A copy of no rows is dropped once the migration is
        // done ([`ArchiveStore::drop_empty_copy`]).
        let source = table_ref(Dialect::Sqlite, &info.schema, &info.name);
        let select = match copy.scope {
            Scope::Rows => "*".to_string(),
            // Qualified, so a name that does not resolve is an error, never
            // SQLite's fallback to a string literal.
            Scope::Columns => {
                let select: Vec<String> = copy
                    .select
                    .iter()
                    .map(|c| format!("s.{}", ident(c)))
                    .collect();
                select.join(", ")
            }
        };
        vec![
            entry_sql(req, info, copy, &stored, &source, &self.service),
            format!("CREATE TABLE {archive} AS SELECT {select} FROM {source} AS s"),
        ]
    }

    fn supersede_sql(&self, id: i64, stored_table: &str) -> Vec<String> {
        let mut sql = Vec::new();
        if !stored_table.is_empty() {
            sql.push(format!("DROP TABLE IF EXISTS {}", ident(stored_table)));
        }
        sql.push(format!("DELETE FROM {ENTRIES} WHERE id = {id}"));
        sql
    }

    /// After the highest id ever used (the runner holds the write lock, so
    /// no other runner races).
    async fn next_archive_id(&mut self, previous: Option<i64>) -> Result<i64, DbError> {
        if let Some(p) = previous {
            return Ok(p + 1);
        }
        self.rows("SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'capstan_archives'), 0), coalesce((SELECT max(id) FROM capstan_archives), 0)) + 1")?
            .first()
            .and_then(|r| r[0].as_deref())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| DbError::new(FailureKind::Sql, "cannot allocate an archive entry id"))
    }

    async fn unfinished_copies(
        &mut self,
        q: &UnfinishedQuery<'_>,
    ) -> Result<Vec<UnfinishedCopy>, DbError> {
        let direction = match q.direction {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        // Entries have whole seconds, the log milliseconds.
        let mine = self.mine()?;
        let rows = self.rows(&format!(
            "SELECT id, archive_table, columns FROM {ENTRIES} WHERE {mine} AND version = {version} AND direction = {dir} AND line = {line} \
             AND kind = {kind} AND table_schema = {schema} AND table_name = {table} \
             AND restored_at IS NULL \
             AND archived_at > coalesce((SELECT strftime('%Y-%m-%dT%H:%M:%SZ', max(at)) FROM capstan_log WHERE {mine} AND version = {version} AND action = {dir}), '') \
             ORDER BY id DESC",
            version = q.version,
            dir = lit(direction),
            line = q.line,
            kind = lit(q.kind.as_str()),
            schema = lit(q.schema),
            table = lit(q.table),
        ))?;
        Ok(unfinished(rows))
    }

    async fn drop_empty_copy(&mut self, id: i64) -> Result<(), DbError> {
        let rows = self.rows(&format!(
            "SELECT archive_table FROM {ENTRIES} WHERE id = {id} AND row_count = 0 AND archive_table <> ''"
        ))?;
        if let Some(stored) = rows.first().and_then(|r| r[0].clone()) {
            self.transact(&[
                format!("DROP TABLE IF EXISTS {}", ident(&stored)),
                format!("UPDATE {ENTRIES} SET archive_table = '' WHERE id = {id}"),
            ])?;
        }
        Ok(())
    }

    async fn archive_entries(&mut self, id: Option<i64>) -> Result<Vec<ArchiveEntry>, DbError> {
        if !self.has_table(ENTRIES)? {
            return Ok(Vec::new());
        }
        let mine = self.mine()?;
        let filter = id.map_or_else(
            || format!("WHERE {mine}"),
            |id| format!("WHERE {mine} AND id = {id}"),
        );
        let rows = self.rows(&format!(
            "SELECT id, version, migration, direction, line, statement, kind, scope, table_schema, table_name, columns, primary_key, archive_table, row_count, size_bytes, \
               archived_at, archived_by, binary_version, restored_at, restored_by, (julianday('now') - julianday(archived_at)) * 86400.0 \
             FROM {ENTRIES} {filter} ORDER BY id"
        ))?;
        rows.iter()
            .enumerate()
            .map(|(n, r)| entry_from_row(ENTRIES, n + 1, r, str::to_string))
            .collect()
    }

    async fn copy_columns(
        &mut self,
        entry: &ArchiveEntry,
    ) -> Result<Option<Vec<(String, String)>>, DbError> {
        let rows = self.rows(&format!(
            "SELECT name, type FROM pragma_table_info({}) ORDER BY cid",
            lit(&entry.stored_table)
        ))?;
        Ok(columns_of(rows))
    }

    async fn archive_preview(
        &mut self,
        entry: &ArchiveEntry,
        _cast: &[&ColumnInfo],
        limit: usize,
    ) -> Result<Vec<Vec<Option<String>>>, DbError> {
        let cols: Vec<String> = entry.copied_columns().iter().map(|c| ident(c)).collect();
        self.rows(&preview_sql(Dialect::Sqlite, entry, &cols, limit))
    }

    async fn estimate_copy(
        &mut self,
        info: &TableInfo,
        spec: &CopySpec,
    ) -> Result<(Option<u64>, Option<u64>), DbError> {
        let source = table_ref(Dialect::Sqlite, &info.schema, &info.name);
        // What `up` will measure.
        let size = match spec.scope {
            Scope::Rows => table_size(&info.name),
            Scope::Columns => payload(&spec.select),
        };
        let rows = self.rows(&format!("SELECT count(*), {size} FROM {source}"))?;
        Ok(counted(&rows))
    }

    async fn restore_archive(&mut self, req: &RestoreRequest<'_>) -> Result<u64, DbError> {
        let entry = req.entry;
        let target = table_ref(Dialect::Sqlite, &entry.table_schema, &entry.table_name);
        let mut sql = Vec::new();
        if let Some(rows) = req.guard_rows {
            // Check, inside the transaction (which holds the write lock),
            // that no row came or went (a CHECK on a temporary table turns a
            // mismatch into an error).
            sql.push("DROP TABLE IF EXISTS temp.capstan_restore_guard".to_string());
            sql.push(format!(
                "CREATE TEMP TABLE capstan_restore_guard (rows bigint CONSTRAINT {RESTORE_GUARD} CHECK (rows = {rows}))"
            ));
            sql.push(format!(
                "INSERT INTO capstan_restore_guard SELECT count(*) FROM {target}"
            ));
        }
        sql.extend(restore_statements(
            Dialect::Sqlite,
            entry,
            req.steps,
            req.cast,
        ));
        let write = sql.len().checked_sub(1);
        sql.push(format!(
            "UPDATE {ENTRIES} SET restored_at = {ARCHIVE_NOW}, restored_by = {} WHERE id = {}",
            opt_lit(Some(req.restored_by)),
            entry.id
        ));
        if req.guard_rows.is_some() {
            sql.push("DROP TABLE temp.capstan_restore_guard".to_string());
        }
        let counts = self.transact(&sql)?;
        Ok(write.and_then(|w| counts.get(w)).copied().unwrap_or(0))
    }

    async fn purge_archives(&mut self, entries: &[ArchiveEntry]) -> Result<(), DbError> {
        let sql = purge_sql(Dialect::Sqlite, ENTRIES, entries);
        self.transact(&sql).map(drop)
    }
}
